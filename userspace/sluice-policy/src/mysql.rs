//! MySQL and MariaDB text, read the way the server reads it.
//!
//! [`normalize`] turns a client's text into what the server executes,
//! before `sqlparser` sees it:
//!
//! - executable comments (`/*! … */`, `/*!50000 … */`, MariaDB's
//!   `/*M! … */` and `/*M!100100 … */`) are code: their opener, version
//!   and closer become a space and their content stays. A version is read
//!   as the server reads it only when nobody can disagree about where it
//!   ends (five digits, or five or six after `/*M!`); anything else is
//!   refused. A version the server is too old for turns the comment into
//!   an ordinary one: then it ends at the first `*/`, so a `*/` inside a
//!   string, backtick name or line comment within an executable comment
//!   is refused too (the two readings would disagree).
//! - ordinary comments (`/* … */`, optimizer hints `/*+ … */`, `# …`,
//!   `-- ` followed by a space or control character) become one space;
//!   MySQL does not nest comments, so a `/*` inside one is refused, as is
//!   one left open;
//! - `--` *not* followed by a space is two minus signs to MySQL: it is
//!   written `- -` so no later reader can take it for a comment;
//! - a NUL byte outside a string is refused.
//!
//! Quotes follow the server's default `sql_mode`: `'…'` and `"…"` are
//! strings with backslash escapes and doubled quotes, `` `…` `` is a name.
//! (A session that turns on `ANSI_QUOTES` or `NO_BACKSLASH_ESCAPES` would
//! read differently: such `SET sql_mode` statements are refused by the
//! analysis.)
//!
//! [`analyze`] then splits the text at every `;` outside quotes (a `;`
//! in an executable comment ends a statement too) and decides each
//! statement: the MySQL-only forms `sqlparser` does not know are handled
//! here (file I/O, `HANDLER`, `PREPARE … FROM`, `DO`, `TABLE t`,
//! `SELECT … INTO @v`, administrative statements), the rest is parsed
//! with `sqlparser`'s MySQL dialect.
use std::ops::Range;

use sqlparser::{dialect::MySqlDialect, parser::Parser};

use crate::{
    analyze::{
        self, Class, Facts, LabelText, Lineage, Output, ParseError, Refusal, Source, TableName,
    },
    dialect::Dialect,
};

/// Text as the server executes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalized {
    /// Executable comments unwrapped, other comments one space each.
    pub(crate) text: String,
    /// Offsets in `text` of the spaces that stand for comments or comment
    /// markers (sorted): MySQL names an output column by its text without
    /// them.
    pub(crate) synthetic: Vec<usize>,
}

fn err(msg: impl Into<String>) -> ParseError {
    ParseError(msg.into())
}

/// Bytes that start something the normalizer must look at.
fn special(c: u8) -> bool {
    matches!(c, b'\'' | b'"' | b'`' | b'#' | b'-' | b'/' | b'*' | 0)
}

/// End (exclusive) of a quoted string or name opening at `i`: `\` escapes
/// in strings, a doubled quote stands for itself.
pub(crate) fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if c == b'\\' && q != b'`' {
            j += 2;
            continue;
        }
        if c == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return Some(j + 1);
        }
        j += 1;
    }
    None
}

/// Does `--` at `i` open a comment? Only when followed by a space or a
/// control character (or the end of the text).
fn dash_comment(b: &[u8], i: usize) -> bool {
    b.get(i + 2).is_none_or(|&c| c <= b' ' || c == 0x7f)
}

/// Read a client's text the way the server does (see the module's notes).
pub(crate) fn normalize(sql: &str) -> Result<Normalized, ParseError> {
    let b = sql.as_bytes();
    let mut text = String::with_capacity(sql.len());
    let mut synthetic = Vec::new();
    let mut space = |text: &mut String| {
        synthetic.push(text.len());
        text.push(' ');
    };
    // Inside an executable comment.
    let mut exec = false;
    let ambiguous = || {
        err(
            "`*/` inside a string, name or comment within an executable comment: \
             servers that skip the comment end it there, servers that run it do not",
        )
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' | b'`' => {
                let end =
                    quoted_end(b, i).ok_or_else(|| err("unterminated quoted string or name"))?;
                if exec && sql[i..end].contains("*/") {
                    return Err(ambiguous());
                }
                text.push_str(&sql[i..end]);
                i = end;
            }
            b'#' => {
                let end = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                if exec && sql[i..end].contains("*/") {
                    return Err(ambiguous());
                }
                space(&mut text);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                if dash_comment(b, i) {
                    let end = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                    if exec && sql[i..end].contains("*/") {
                        return Err(ambiguous());
                    }
                    space(&mut text);
                    i = end;
                } else {
                    // Two minus signs: keep them apart.
                    text.push('-');
                    space(&mut text);
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let rest = &b[i + 2..];
                let opener = match rest {
                    [b'!', ..] => Some((3, false)),
                    [b'M', b'!', ..] => Some((4, true)),
                    _ => None,
                };
                if exec {
                    return Err(err(
                        "a comment inside an executable comment (MySQL does not nest comments)",
                    ));
                }
                match opener {
                    Some((len, mariadb)) => {
                        let digits = b[i + len..]
                            .iter()
                            .take_while(|c| c.is_ascii_digit())
                            .count();
                        let clear = matches!(digits, 0 | 5) || (mariadb && digits == 6);
                        if !clear {
                            return Err(err(format!(
                                "executable comment with a {digits}-digit version: servers \
                                 disagree on where such a version ends"
                            )));
                        }
                        space(&mut text);
                        i += len + digits;
                        exec = true;
                    }
                    None => {
                        let end = sql[i + 2..]
                            .find("*/")
                            .map(|n| i + 2 + n)
                            .ok_or_else(|| err("unterminated comment"))?;
                        if sql[i + 2..end].contains("/*") {
                            return Err(err(
                                "a comment inside a comment (MySQL does not nest comments)",
                            ));
                        }
                        space(&mut text);
                        i = end + 2;
                    }
                }
            }
            b'*' if exec && b.get(i + 1) == Some(&b'/') => {
                space(&mut text);
                i += 2;
                exec = false;
            }
            0 => return Err(err("NUL byte outside a string")),
            _ => {
                let start = i;
                i += 1;
                while i < b.len() && !special(b[i]) {
                    i += 1;
                }
                text.push_str(&sql[start..i]);
            }
        }
    }
    if exec {
        return Err(err("unterminated executable comment"));
    }
    Ok(Normalized { text, synthetic })
}

/// The statements of normalized text: split at each `;` outside quotes,
/// trimmed, empty ones dropped.
pub(crate) fn split(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut push = |s: usize, e: usize| {
        let piece = &text[s..e];
        let lead = piece.len() - piece.trim_start().len();
        let trimmed = piece.trim();
        if !trimmed.is_empty() {
            out.push(s + lead..s + lead + trimmed.len());
        }
    };
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' | b'`' => i = quoted_end(b, i).unwrap_or(b.len()),
            b';' => {
                push(start, i);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(start, b.len());
    out
}

/// A token of normalized text, for recognizing statement forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A keyword or unquoted name (also numbers).
    Word,
    /// A `` `quoted` `` name.
    QuotedName,
    /// A `'…'` or `"…"` string.
    Str,
    /// `@user`, `@@system.variable`, `@'quoted'`.
    Var,
    /// `(`.
    Open,
    /// `)`.
    Close,
    /// `,`.
    Comma,
    /// `.`.
    Dot,
    /// Anything else: operators, `;`.
    Op,
}

/// One token: kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Tok {
    fn text<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.end]
    }

    /// A keyword (or unquoted name), compared without case.
    pub(crate) fn is(&self, text: &str, word: &str) -> bool {
        self.kind == Kind::Word && self.text(text).eq_ignore_ascii_case(word)
    }

    fn upper(&self, text: &str) -> Option<String> {
        (self.kind == Kind::Word).then(|| self.text(text).to_ascii_uppercase())
    }
}

fn ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Tokens of normalized text (no comments left in it).
pub(crate) fn tokens(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'\'' | b'"' => {
                i = quoted_end(b, i).unwrap_or(b.len());
                Kind::Str
            }
            b'`' => {
                i = quoted_end(b, i).unwrap_or(b.len());
                Kind::QuotedName
            }
            b'@' => {
                i += 1;
                if b.get(i) == Some(&b'@') {
                    i += 1;
                }
                match b.get(i) {
                    Some(b'\'' | b'"' | b'`') => i = quoted_end(b, i).unwrap_or(b.len()),
                    _ => {
                        while i < b.len() && (ident_byte(b[i]) || b[i] == b'.') {
                            i += 1;
                        }
                    }
                }
                Kind::Var
            }
            c if ident_byte(c) => {
                while i < b.len() && ident_byte(b[i]) {
                    i += 1;
                }
                Kind::Word
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b'.' => {
                i += 1;
                Kind::Dot
            }
            _ => {
                i += 1;
                while i < b.len() && b"<>=!:|&^~+-*/%".contains(&b[i]) {
                    i += 1;
                }
                Kind::Op
            }
        };
        out.push(Tok {
            kind,
            start,
            end: i,
        });
    }
    out
}

/// Parenthesis depth before each token.
fn depths(toks: &[Tok]) -> Vec<i32> {
    let mut d = 0;
    toks.iter()
        .map(|t| {
            if t.kind == Kind::Close {
                d -= 1;
            }
            let here = d;
            if t.kind == Kind::Open {
                d += 1;
            }
            here
        })
        .collect()
}

/// Analyze MySQL text (one or more statements).
pub(crate) fn analyze(sql: &str) -> Result<Vec<Facts>, ParseError> {
    analyze_normalized(&normalize(sql)?)
}

/// Analyze text [`normalize`] produced.
pub(crate) fn analyze_normalized(n: &Normalized) -> Result<Vec<Facts>, ParseError> {
    analyze_depth(n, 0)
}

/// How deep `PREPARE … FROM '…'` literals may hold each other.
const MAX_PREPARE_DEPTH: usize = 2;

fn analyze_depth(n: &Normalized, depth: usize) -> Result<Vec<Facts>, ParseError> {
    let mut out = Vec::new();
    let mut error = None;
    for r in split(&n.text) {
        match piece(n, r, depth) {
            Ok(f) => out.extend(f),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    match error {
        None => Ok(out),
        Some(e) => {
            // A statement refused outright stays refused whatever else the
            // text holds: a raw-passthrough rule must not let it through
            // because a neighbour does not parse.
            let refused: Vec<Facts> = out.into_iter().filter(|f| f.refusal.is_some()).collect();
            if refused.is_empty() {
                Err(e)
            } else {
                Ok(refused)
            }
        }
    }
}

fn refused(class: Class, kind: &str, rule: &str, reason: impl Into<String>) -> Facts {
    let mut f = Facts::new(class, kind);
    f.refusal = Some(Refusal {
        rule: rule.to_string(),
        reason: reason.into(),
    });
    f
}

const FILE_IO: &str = "builtin.file_io";

/// Statements that read or write files: refused whoever asks.
fn file_io(text: &str, toks: &[Tok]) -> Option<Facts> {
    let first = toks.first()?;
    if first.is(text, "LOAD")
        && let Some(second) = toks.get(1)
        && (second.is(text, "DATA") || second.is(text, "XML"))
    {
        let kind = if second.is(text, "DATA") {
            "load_data"
        } else {
            "load_xml"
        };
        return Some(refused(
            Class::Write,
            kind,
            FILE_IO,
            "LOAD DATA and LOAD XML read a file on the database server or, with LOCAL, on the client's disk",
        ));
    }
    for w in toks.windows(2) {
        if w[0].is(text, "INTO") && (w[1].is(text, "OUTFILE") || w[1].is(text, "DUMPFILE")) {
            let kind = if w[1].is(text, "OUTFILE") {
                "select_into_outfile"
            } else {
                "select_into_dumpfile"
            };
            return Some(refused(
                Class::Read,
                kind,
                FILE_IO,
                "SELECT … INTO OUTFILE/DUMPFILE writes rows to a file on the database server, where masking cannot follow them",
            ));
        }
        if w[1].kind == Kind::Open
            && matches!(w[0].kind, Kind::Word | Kind::QuotedName)
            && w[0]
                .text(text)
                .trim_matches('`')
                .eq_ignore_ascii_case("load_file")
        {
            return Some(refused(
                Class::Read,
                "select",
                FILE_IO,
                "LOAD_FILE() reads a file on the database server",
            ));
        }
    }
    None
}

/// One statement of normalized text.
fn piece(n: &Normalized, r: Range<usize>, depth: usize) -> Result<Vec<Facts>, ParseError> {
    let text = &n.text[r.clone()];
    let toks = tokens(text);
    if let Some(f) = file_io(text, &toks) {
        return Ok(vec![f]);
    }
    let first = toks.first().and_then(|t| t.upper(text)).unwrap_or_default();
    match first.as_str() {
        "HANDLER" => return handler(text, &toks).map(|f| vec![f]),
        "PREPARE" => return prepare(text, &toks, depth),
        _ => {}
    }
    let mut sql = text.to_string();
    let mut into_variables = false;
    let mut kind = None;
    match first.as_str() {
        "DO" => {
            sql = format!("SELECT {}", &text[toks[0].end..]);
            kind = Some("do");
        }
        "TABLE" => sql = format!("SELECT * FROM {}", &text[toks[0].end..]),
        "UPDATE" | "DELETE" => {
            // Modifiers sqlparser would read as a table name or alias.
            for t in toks.iter().skip(1) {
                let m = t.upper(text).unwrap_or_default();
                let modifier = match first.as_str() {
                    "UPDATE" => matches!(m.as_str(), "LOW_PRIORITY" | "IGNORE"),
                    _ => matches!(m.as_str(), "LOW_PRIORITY" | "QUICK" | "IGNORE"),
                };
                if !modifier {
                    break;
                }
                blank(&mut sql, t.start..t.end);
            }
        }
        "SET" => {
            // `SET @v := …`: the first `:=` of each assignment is `=`.
            let d = depths(&toks);
            let mut seen = false;
            for (t, d) in toks.iter().zip(&d) {
                if *d != 0 {
                    continue;
                }
                match t.kind {
                    Kind::Comma => seen = false,
                    Kind::Op if t.text(text) == ":=" && !seen => {
                        sql.replace_range(t.start..t.end, " =");
                        seen = true;
                    }
                    Kind::Op if t.text(text) == "=" => seen = true,
                    _ => {}
                }
            }
        }
        "SELECT" | "WITH" | "" => {
            let d = depths(&toks);
            // `LOCK IN SHARE MODE` is `FOR SHARE`.
            for (i, w) in toks.windows(4).enumerate() {
                if d[i] == 0
                    && w[0].is(text, "LOCK")
                    && w[1].is(text, "IN")
                    && w[2].is(text, "SHARE")
                    && w[3].is(text, "MODE")
                {
                    let range = w[0].start..w[3].end;
                    let len = range.len();
                    sql.replace_range(range, &format!("{:<len$}", "FOR SHARE"));
                }
            }
            // `INTO @a, @b` anywhere at the top: the row goes to variables.
            let mut i = 0;
            while i < toks.len() {
                if d[i] == 0
                    && toks[i].is(text, "INTO")
                    && toks.get(i + 1).is_some_and(|t| t.kind == Kind::Var)
                {
                    let mut j = i + 1;
                    while toks.get(j).is_some_and(|t| t.kind == Kind::Var)
                        && toks.get(j + 1).is_some_and(|t| t.kind == Kind::Comma)
                        && toks.get(j + 2).is_some_and(|t| t.kind == Kind::Var)
                    {
                        j += 2;
                    }
                    blank(&mut sql, toks[i].start..toks[j].end);
                    into_variables = true;
                    i = j + 1;
                    continue;
                }
                i += 1;
            }
        }
        _ => {}
    }
    let synthetic = if sql.len() == text.len() {
        n.synthetic
            .iter()
            .filter(|&&p| r.contains(&p))
            .map(|p| p - r.start)
            .collect()
    } else {
        Vec::new()
    };
    let mut facts = match parse_one(&sql, synthetic) {
        Ok(f) => f,
        Err(e) => return fallback(text, &toks).map(|f| vec![f]).ok_or(e),
    };
    if into_variables || facts.kind == "select_into_variable" {
        let sources = facts
            .outputs
            .iter()
            .flat_map(|o| o.lineage.sources.iter().cloned())
            .collect::<Vec<_>>();
        facts.assigned.extend(sources);
        facts.outputs.clear();
        facts.limit = None;
        facts.class = if facts.class == Class::Write {
            Class::Write
        } else {
            Class::Read
        };
        facts.kind = "select_into_variable".into();
    }
    if let Some(k) = kind {
        facts.kind = k.into();
        facts.outputs.clear();
        facts.limit = None;
    }
    Ok(vec![facts])
}

/// Replace a range of text by as many spaces.
fn blank(sql: &mut String, r: Range<usize>) {
    let len = r.len();
    sql.replace_range(r, &" ".repeat(len));
}

/// Parse one statement with sqlparser's MySQL dialect and analyze it.
fn parse_one(sql: &str, synthetic: Vec<usize>) -> Result<Facts, ParseError> {
    let _ctx = analyze::enter(
        Dialect::MySql,
        Some(LabelText {
            text: sql.to_string(),
            synthetic,
        }),
    );
    let statements =
        Parser::parse_sql(&MySqlDialect {}, sql).map_err(|e| ParseError(e.to_string()))?;
    match statements.as_slice() {
        [one] => Ok(analyze::statement(one)),
        _ => Err(err(
            "the parser and the statement splitter disagree on where statements end",
        )),
    }
}

/// A name token (`name` or `` `name` ``) as the analysis folds names.
fn name_of(text: &str, t: &Tok) -> Option<String> {
    match t.kind {
        Kind::Word => Some(t.text(text).to_lowercase()),
        Kind::QuotedName => {
            let s = t.text(text);
            Some(s[1..s.len() - 1].replace("``", "`").to_lowercase())
        }
        _ => None,
    }
}

/// `HANDLER t OPEN | READ … | CLOSE`: reads a table without SELECT.
fn handler(text: &str, toks: &[Tok]) -> Result<Facts, ParseError> {
    let bad = || err("HANDLER: expected HANDLER name OPEN | READ … | CLOSE");
    let mut i = 1;
    let first = name_of(text, toks.get(i).ok_or_else(bad)?).ok_or_else(bad)?;
    i += 1;
    let table = if toks.get(i).is_some_and(|t| t.kind == Kind::Dot) {
        let name = name_of(text, toks.get(i + 1).ok_or_else(bad)?).ok_or_else(bad)?;
        i += 2;
        TableName {
            schema: Some(first),
            name,
        }
    } else {
        TableName {
            schema: None,
            name: first,
        }
    };
    let name_text = &text[toks[1].start..toks[i - 1].end];
    let verb = toks.get(i).and_then(|t| t.upper(text)).unwrap_or_default();
    let whole = || {
        vec![Output {
            label: "*".into(),
            lineage: Lineage {
                sources: [Source::AllOf(table.clone())].into(),
                direct: true,
            },
        }]
    };
    match verb.as_str() {
        "OPEN" => {
            let mut f = Facts::new(Class::Read, "handler_open");
            f.tables.insert(table.clone());
            f.outputs = whole();
            Ok(f)
        }
        "CLOSE" => {
            let mut f = Facts::new(Class::Utility, "handler_close");
            f.tables.insert(table);
            Ok(f)
        }
        "READ" => {
            let rest = &toks[i + 1..];
            let d = depths(rest);
            let at = |w: &str| {
                rest.iter()
                    .zip(&d)
                    .position(|(t, d)| *d == 0 && t.is(text, w))
            };
            let (where_at, limit_at) = (at("WHERE"), at("LIMIT"));
            let head_end = where_at.or(limit_at).unwrap_or(rest.len());
            let head = &rest[..head_end];
            if head.is_empty() {
                return Err(bad());
            }
            // READ FIRST / READ NEXT walk the table; anything else walks an
            // index (reads rows in its order, or looks values up in it).
            let indexed =
                !(head.len() == 1 && (head[0].is(text, "FIRST") || head[0].is(text, "NEXT")));
            let mut sql = format!("SELECT * FROM {name_text}");
            if let Some(w) = where_at {
                let end = limit_at.map_or(text.len(), |l| rest[l].start);
                sql.push(' ');
                sql.push_str(&text[rest[w].start..end]);
            }
            if let Some(l) = limit_at {
                sql.push(' ');
                sql.push_str(&text[rest[l].start..]);
            }
            let mut f = parse_one(&sql, Vec::new())?;
            f.class = Class::Read;
            f.kind = "handler_read".into();
            f.outputs = whole();
            if indexed {
                f.predicates.insert(Source::AllOf(table));
            }
            Ok(f)
        }
        _ => Err(bad()),
    }
}

/// MySQL string literal → its value.
fn unescape(lit: &str) -> String {
    let q = lit.chars().next().unwrap_or('\'');
    let body = &lit[1..lit.len().saturating_sub(1).max(1)];
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('0') => out.push('\0'),
                Some('b') => out.push('\u{8}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('Z') => out.push('\u{1a}'),
                // Kept escaped: LIKE patterns.
                Some(c @ ('%' | '_')) => {
                    out.push('\\');
                    out.push(c);
                }
                Some(c) => out.push(c),
                None => out.push('\\'),
            }
        } else if c == q && chars.peek() == Some(&q) {
            chars.next();
            out.push(q);
        } else {
            out.push(c);
        }
    }
    out
}

/// `PREPARE name FROM 'text'` is decided as the statement it holds;
/// `PREPARE name FROM @variable` cannot be known and is refused.
fn prepare(text: &str, toks: &[Tok], depth: usize) -> Result<Vec<Facts>, ParseError> {
    let shape = toks.len() == 4
        && matches!(toks[1].kind, Kind::Word | Kind::QuotedName)
        && toks[2].is(text, "FROM");
    if !shape {
        return Err(err(
            "PREPARE: expected PREPARE name FROM 'statement' or FROM @variable",
        ));
    }
    match toks[3].kind {
        Kind::Var => Ok(vec![refused(
            Class::Utility,
            "prepare",
            "builtin.dynamic_sql",
            "PREPARE … FROM @variable: the statement's text is not known until it runs, so it cannot be decided; prepare a literal",
        )]),
        Kind::Str if depth < MAX_PREPARE_DEPTH => {
            let inner = unescape(toks[3].text(text));
            let facts = analyze_depth(&normalize(&inner)?, depth + 1)?;
            if facts.is_empty() {
                return Err(err("PREPARE of an empty statement"));
            }
            Ok(facts)
        }
        _ => Err(err(
            "PREPARE: expected PREPARE name FROM 'statement' or FROM @variable",
        )),
    }
}

/// Client character sets in which a multibyte character can end in
/// byte 0x5C (`\`): the server would read quotes where sluice does not.
pub(crate) fn risky_charset(name: &str) -> bool {
    matches!(
        name.trim_matches(|c| c == '\'' || c == '"' || c == '`')
            .to_ascii_lowercase()
            .as_str(),
        "big5" | "cp932" | "gbk" | "gb18030" | "sjis"
    )
}

/// The refusal for a client character set sluice cannot read.
pub(crate) fn charset_refusal(name: &str) -> Refusal {
    Refusal {
        rule: "builtin.charset".into(),
        reason: format!(
            "client character set {name}: a multibyte character can end in a backslash byte, \
             so the server would read quotes differently from sluice; use utf8mb4"
        ),
    }
}

/// SQL modes that change how quotes and backslashes are read.
pub(crate) fn changes_quoting(modes: &str) -> bool {
    modes.split(',').any(|m| {
        matches!(
            m.trim().to_ascii_uppercase().as_str(),
            "ANSI"
                | "ANSI_QUOTES"
                | "NO_BACKSLASH_ESCAPES"
                | "DB2"
                | "MAXDB"
                | "MSSQL"
                | "ORACLE"
                | "POSTGRESQL"
        )
    })
}

/// Statements sqlparser does not parse that can be classified by their
/// first words alone: none of them reads a table's rows.
fn fallback(text: &str, toks: &[Tok]) -> Option<Facts> {
    // Anything that may hold a query is not classified by words.
    if toks.iter().enumerate().any(|(i, t)| {
        t.is(text, "SELECT")
            || (t.kind == Kind::Open
                && toks.get(i + 1).is_some_and(|n| {
                    n.is(text, "TABLE") || n.is(text, "VALUES") || n.is(text, "WITH")
                }))
    }) {
        return None;
    }
    let w = |i: usize| toks.get(i).and_then(|t| t.upper(text)).unwrap_or_default();
    let (w0, w1, w2) = (w(0), w(1), w(2));
    let any = |words: &[&str]| toks.iter().any(|t| words.iter().any(|w| t.is(text, w)));
    use Class::*;
    let (class, kind): (Class, String) = match (w0.as_str(), w1.as_str()) {
        ("PURGE", _) => (Admin, "purge".into()),
        ("CHANGE", "MASTER" | "REPLICATION") => (Admin, "change_replication".into()),
        ("INSTALL" | "UNINSTALL", "PLUGIN" | "COMPONENT") => {
            (Admin, format!("{}_plugin", w0.to_lowercase()))
        }
        ("START" | "STOP", "SLAVE" | "REPLICA" | "GROUP_REPLICATION") => {
            (Admin, "replication".into())
        }
        ("RESET", _) => (Admin, "reset".into()),
        ("FLUSH", _) => (Admin, "flush".into()),
        ("OPTIMIZE" | "REPAIR" | "CHECK" | "CHECKSUM", _) => (Admin, "table_maintenance".into()),
        ("SHUTDOWN" | "RESTART" | "CLONE" | "BINLOG" | "IMPORT", _) => (Admin, w0.to_lowercase()),
        ("CACHE", "INDEX") | ("LOAD", "INDEX") => (Admin, "cache_index".into()),
        ("LOCK" | "UNLOCK", "INSTANCE") => (Admin, "lock_instance".into()),
        ("KILL", _) => (Admin, "kill".into()),
        ("XA", _) => (Transaction, "xa".into()),
        ("CREATE" | "DROP" | "ALTER" | "RENAME", "USER" | "ROLE") => {
            (Dcl, format!("{}_{}", w0.to_lowercase(), w1.to_lowercase()))
        }
        ("GRANT", _) => (Dcl, "grant".into()),
        ("REVOKE", _) => (Dcl, "revoke".into()),
        ("SET", "PASSWORD") => (Dcl, "set_password".into()),
        ("SET", "DEFAULT") if w2 == "ROLE" => (Dcl, "set_default_role".into()),
        ("SET", "CHARACTER" | "CHARSET") => {
            let at = if w1 == "CHARACTER" { 3 } else { 2 };
            let name = toks.get(at).map(|t| t.text(text)).unwrap_or_default();
            let mut f = Facts::new(Utility, "set_names");
            if risky_charset(name) {
                f.refusal = Some(charset_refusal(name));
            }
            return Some(f);
        }
        ("SET", "PERSIST" | "PERSIST_ONLY" | "GLOBAL") => {
            if any(&["sql_mode", "character_set_client", "names"]) {
                return None;
            }
            (Admin, "set_global".into())
        }
        ("HELP", _) => (Utility, "help".into()),
        ("SHOW", _) => (Utility, "show".into()),
        ("DEALLOCATE", _) | ("DROP", "PREPARE") => (Utility, "deallocate".into()),
        ("GET", "DIAGNOSTICS" | "CURRENT" | "STACKED") => (Utility, "get_diagnostics".into()),
        _ => return None,
    };
    Some(Facts::new(class, &kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per case: raw text → the text sqlparser is given (Err: the
    /// message starts with this).
    #[test]
    fn normalize_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("select 1", Ok("select 1")),
            (
                "select 1 /*!, pan from cards*/",
                Ok("select 1  , pan from cards "),
            ),
            (
                "select 1 /*!50000 , pan from cards */",
                Ok("select 1   , pan from cards  "),
            ),
            (
                "select 1 /*M!, pan from cards*/",
                Ok("select 1  , pan from cards "),
            ),
            ("select 1 /*M!100100 , pan */", Ok("select 1   , pan  ")),
            ("select 1 /*M!50505 , pan */", Ok("select 1   , pan  ")),
            ("select/*!pan*/from cards", Ok("select pan from cards")),
            (
                "select '/*!, pan from cards*/'",
                Ok("select '/*!, pan from cards*/'"),
            ),
            ("select `/*!x*/`", Ok("select `/*!x*/`")),
            ("select \"it's /*!\"", Ok("select \"it's /*!\"")),
            ("select 'a\\' /*!, pan */'", Ok("select 'a\\' /*!, pan */'")),
            (
                "select /*+ MAX_EXECUTION_TIME(1) */ pan",
                Ok("select   pan"),
            ),
            ("select 1 /* , pan */", Ok("select 1  ")),
            ("select 1 # , pan\n, 2", Ok("select 1  \n, 2")),
            ("select 1 -- , pan\n, 2", Ok("select 1  \n, 2")),
            ("select 1 --1, pan", Ok("select 1 - -1, pan")),
            ("select 1 --", Ok("select 1  ")),
            (
                "select 1; /*! select pan from cards */",
                Ok("select 1;   select pan from cards  "),
            ),
            (
                "select 1 /*! /* x */ */",
                Err("a comment inside an executable"),
            ),
            (
                "select 1 /* /* */ , pan -- */",
                Err("a comment inside a comment"),
            ),
            ("select 1 /*! , pan", Err("unterminated executable")),
            ("select 1 /* x", Err("unterminated comment")),
            ("select 'x", Err("unterminated quoted")),
            (
                "select 1 /*!123 , pan */",
                Err("executable comment with a 3-digit"),
            ),
            (
                "select 1 /*!500001 , pan */",
                Err("executable comment with a 6-digit"),
            ),
            (
                "select 1 /*M!1001001 , pan */",
                Err("executable comment with a 7-digit"),
            ),
            (
                "select 1 /*!99999 ' */ , pan from cards -- ' */",
                Err("`*/` inside"),
            ),
            ("select 1 /*! # */\n, pan */", Err("`*/` inside")),
            ("select 1\0", Err("NUL byte")),
        ];
        for (sql, want) in cases {
            let got = normalize(sql).map(|n| n.text).map_err(|e| e.0);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "{sql:?}"),
                (Err(g), Err(w)) => assert!(g.starts_with(w), "{sql:?}: {g}"),
                (g, w) => panic!("{sql:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn split_respects_quotes() {
        let n = normalize("select ';'; select `;`;; select 1 /*! ; select 2 */").unwrap();
        let pieces: Vec<&str> = split(&n.text).into_iter().map(|r| &n.text[r]).collect();
        assert_eq!(pieces, ["select ';'", "select `;`", "select 1", "select 2"]);
    }

    fn one(sql: &str) -> Facts {
        let mut v = analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(v.len(), 1, "{sql}: {v:?}");
        v.remove(0)
    }

    fn set(items: impl IntoIterator<Item = impl ToString>) -> String {
        items
            .into_iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Outputs as `label=src|src`, `~` for computed values.
    fn outs(f: &Facts) -> String {
        f.outputs
            .iter()
            .map(|o| {
                let s: Vec<String> = o.lineage.sources.iter().map(|s| s.to_string()).collect();
                format!(
                    "{}{}={}",
                    o.label,
                    if o.lineage.direct { "" } else { "~" },
                    s.join("|")
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// One line per case: SQL → class, kind.
    #[test]
    fn classification_table() {
        let cases = [
            ("select 1", "read", "select"),
            ("table cards", "read", "select"),
            ("values row(1, 2)", "read", "select"),
            ("select pan from cards lock in share mode", "read", "select"),
            (
                "select pan into @v from cards",
                "read",
                "select_into_variable",
            ),
            (
                "select pan from cards into @v",
                "read",
                "select_into_variable",
            ),
            ("do sleep(1)", "read", "do"),
            ("show tables", "utility", "show"),
            ("show full processlist", "utility", "show"),
            ("show create user root", "utility", "show"),
            ("show index from cards", "utility", "show"),
            ("describe cards", "utility", "describe"),
            ("desc cards", "utility", "describe"),
            ("explain cards", "utility", "describe"),
            ("explain select pan from cards", "read", "explain"),
            ("explain analyze delete from t", "write", "explain"),
            ("use db", "utility", "use"),
            ("set names utf8mb4", "utility", "set_names"),
            ("set names default", "utility", "set_names"),
            ("set character set utf8mb4", "utility", "set_names"),
            ("set autocommit = 0", "transaction", "set_autocommit"),
            ("set session sql_mode = ''", "utility", "set"),
            ("set @v = 1", "utility", "set"),
            ("set @v := 1", "utility", "set"),
            ("set global max_connections = 10", "admin", "set_global"),
            ("set @@global.max_connections = 10", "admin", "set_global"),
            ("set persist max_connections = 10", "admin", "set_global"),
            ("set sql_log_bin = 0", "admin", "set"),
            (
                "set transaction isolation level read committed",
                "transaction",
                "set_transaction",
            ),
            ("set password = 'x'", "dcl", "set_password"),
            ("set password for 'u'@'%' = 'x'", "dcl", "set_password"),
            ("set default role all to 'u'@'%'", "dcl", "set_default_role"),
            ("kill 12", "admin", "kill"),
            ("kill query 12", "admin", "kill"),
            ("flush privileges", "admin", "flush"),
            ("reset master", "admin", "reset"),
            ("purge binary logs to 'mysql-bin.000010'", "admin", "purge"),
            (
                "change master to master_host = 'x'",
                "admin",
                "change_replication",
            ),
            (
                "change replication source to source_host = 'x'",
                "admin",
                "change_replication",
            ),
            ("install plugin p soname 'p.so'", "admin", "install_plugin"),
            ("start replica", "admin", "replication"),
            ("optimize table t", "admin", "table_maintenance"),
            ("analyze table t", "admin", "analyze"),
            ("shutdown", "admin", "shutdown"),
            ("xa start 'x'", "transaction", "xa"),
            ("grant select on db.* to 'u'@'%'", "dcl", "grant"),
            ("revoke select on db.* from 'u'@'%'", "dcl", "revoke"),
            (
                "create user 'u'@'%' identified by 'p'",
                "dcl",
                "create_user",
            ),
            ("drop user 'u'@'%'", "dcl", "drop_user"),
            ("rename user 'a'@'%' to 'b'@'%'", "dcl", "rename_user"),
            ("create role r", "dcl", "create_role"),
            ("call p()", "admin", "call"),
            ("replace into t values (1)", "write", "replace"),
            ("replace into t select * from u", "write", "replace"),
            (
                "insert into t values (1) on duplicate key update a = 2",
                "write",
                "insert",
            ),
            ("insert into t set a = 1", "write", "insert"),
            ("insert ignore into t values (1)", "write", "insert"),
            (
                "update a join b on a.id = b.id set a.x = b.y",
                "write",
                "update",
            ),
            ("update ignore t set a = 1 where id = 2", "write", "update"),
            ("delete a from a join b on a.id = b.id", "write", "delete"),
            ("delete quick ignore from t where id = 1", "write", "delete"),
            ("lock tables cards read, t write", "utility", "lock_tables"),
            ("unlock tables", "utility", "unlock_tables"),
            ("begin", "transaction", "begin"),
            ("start transaction read only", "transaction", "begin"),
            ("commit", "transaction", "commit"),
            ("prepare s from 'select 1'", "read", "select"),
            ("prepare s from 'delete from t'", "write", "delete"),
            ("prepare s from @q", "utility", "prepare"),
            ("execute s", "utility", "execute"),
            ("execute s using @a, @b", "utility", "execute"),
            ("deallocate prepare s", "utility", "deallocate"),
            ("drop prepare s", "utility", "deallocate"),
            ("handler cards open", "read", "handler_open"),
            ("handler cards open as h", "read", "handler_open"),
            ("handler h read first", "read", "handler_read"),
            ("handler cards read `PRIMARY` = (1)", "read", "handler_read"),
            ("handler cards close", "utility", "handler_close"),
            (
                "create table t2 select pan from cards",
                "ddl",
                "create_table",
            ),
            ("create table t3 like cards", "ddl", "create_table"),
            (
                "load data infile '/etc/passwd' into table t",
                "write",
                "load_data",
            ),
            (
                "load data local infile 'x' into table t",
                "write",
                "load_data",
            ),
            ("load xml infile 'x' into table t", "write", "load_xml"),
            (
                "select pan from cards into outfile '/tmp/x'",
                "read",
                "select_into_outfile",
            ),
            (
                "select pan into dumpfile '/tmp/x' from cards",
                "read",
                "select_into_dumpfile",
            ),
        ];
        for (sql, class, kind) in cases {
            let f = one(sql);
            assert_eq!((f.class.as_str(), f.kind.as_str()), (class, kind), "{sql}");
        }
    }

    /// One line per case: SQL → output labels (as MySQL names the result
    /// columns) and lineage.
    #[test]
    fn lineage_table() {
        let cases = [
            ("select pan from cards", "pan=cards.pan"),
            ("select PAN from cards", "PAN=cards.pan"),
            ("select `PAN` from `Cards`", "PAN=cards.pan"),
            ("select c.pan as P from cards c", "P=cards.pan"),
            ("select (pan) from cards", "pan=cards.pan"),
            ("select * from cards", "*=cards.*"),
            ("select * from db1.cards", "*=db1.cards.*"),
            ("select c.* from db1.cards c", "*=db1.cards.*"),
            ("select db1.cards.pan from db1.cards", "pan=db1.cards.pan"),
            ("table cards", "*=cards.*"),
            ("select reverse(pan) from cards", "reverse(pan)~=cards.pan"),
            (
                "select REVERSE( pan ) from cards",
                "REVERSE( pan )~=cards.pan",
            ),
            (
                "select reverse(pan /* x */) from cards",
                "reverse(pan )~=cards.pan",
            ),
            (
                "select /*!50000 reverse(pan) */ from cards",
                "reverse(pan)~=cards.pan",
            ),
            ("select distinct hex(pan) from cards", "hex(pan)~=cards.pan"),
            (
                "select unhex(hex(pan)) from cards",
                "unhex(hex(pan))~=cards.pan",
            ),
            (
                "select to_base64(pan) from cards",
                "to_base64(pan)~=cards.pan",
            ),
            (
                "select concat(pan, 'x') from cards",
                "concat(pan, 'x')~=cards.pan",
            ),
            (
                "select concat_ws('-', pan) from cards",
                "concat_ws('-', pan)~=cards.pan",
            ),
            (
                "select group_concat(pan separator ',') from cards",
                "group_concat(pan separator ',')~=cards.pan",
            ),
            (
                "select json_object('p', pan) from cards",
                "json_object('p', pan)~=cards.pan",
            ),
            (
                "select json_arrayagg(pan) from cards",
                "json_arrayagg(pan)~=cards.pan",
            ),
            ("select elt(1, pan) from cards", "elt(1, pan)~=cards.pan"),
            (
                "select insert(pan, 1, 2, 'x') from cards",
                "insert(pan, 1, 2, 'x')~=cards.pan",
            ),
            (
                "select lpad(pan, 20, '0') from cards",
                "lpad(pan, 20, '0')~=cards.pan",
            ),
            (
                "select rpad(pan, 20, '0') from cards",
                "rpad(pan, 20, '0')~=cards.pan",
            ),
            (
                "select replace(pan, '4', 'x') from cards",
                "replace(pan, '4', 'x')~=cards.pan",
            ),
            (
                "select mid(pan, 1, 4) from cards",
                "mid(pan, 1, 4)~=cards.pan",
            ),
            (
                "select left(pan, 4), right(pan, 4) from cards",
                "left(pan, 4)~=cards.pan right(pan, 4)~=cards.pan",
            ),
            (
                "select substring(pan, 1, 4) from cards",
                "substring(pan, 1, 4)~=cards.pan",
            ),
            (
                "select substr(pan from 9) from cards",
                "substr(pan from 9)~=cards.pan",
            ),
            (
                "select convert(pan using utf8mb4) from cards",
                "convert(pan using utf8mb4)~=cards.pan",
            ),
            (
                "select cast(pan as char) from cards",
                "cast(pan as char)=cards.pan",
            ),
            ("select binary pan from cards", "binary pan=cards.pan"),
            (
                "select pan collate utf8mb4_bin from cards",
                "pan collate utf8mb4_bin=cards.pan",
            ),
            ("select pan + 1 from cards", "pan + 1~=cards.pan"),
            ("select count(pan) from cards", "count(pan)~="),
            (
                "select match(pan) against ('4111') from cards",
                "match(pan) against ('4111')~=cards.pan",
            ),
            ("select \"pan\" from cards", "pan=cards.pan"),
            ("select 'pan' from cards", "pan~="),
            (
                "select 0x41, x'41', _utf8mb4'a'",
                "0x41~= x'41'~= _utf8mb4'a'~=",
            ),
            (
                "select x from (select pan as X from cards) s",
                "x=cards.pan",
            ),
            (
                "select `reverse(pan)` from (select reverse(pan) from cards) s",
                "reverse(pan)~=cards.pan",
            ),
            ("select 1 /*!, pan from cards*/", "1~= pan=cards.pan"),
            (
                "select 1 /*M!100100 , pan from cards*/",
                "1~= pan=cards.pan",
            ),
            (
                "select id --1, pan from cards",
                "id --1~=cards.id pan=cards.pan",
            ),
            ("select id # , pan\n from cards", "id=cards.id"),
            ("select id -- , pan\n from cards", "id=cards.id"),
            ("select @v", "@v~="),
            ("select @@version", "@@version~="),
            ("select @v := pan from cards", "@v := pan~=cards.pan"),
            ("values row(1, 2)", "column_0~= column_1~="),
            (
                "select *\nfrom (\n  select reverse( pan )\n  from cards\n) s",
                "reverse( pan )~=cards.pan",
            ),
            (
                "select * from (select 'é' e) a, (select hex(pan) from cards) b",
                "e~= hex(pan)~=cards.pan",
            ),
            (
                "prepare s from 'select reverse(pan) from cards'",
                "reverse(pan)~=cards.pan",
            ),
            (
                "prepare s from \"select pan from cards where note = 'it''s'\"",
                "pan=cards.pan",
            ),
            ("handler cards open", "*=cards.*"),
            ("handler db1.cards read next", "*=db1.cards.*"),
        ];
        for (sql, want) in cases {
            assert_eq!(outs(&one(sql)), want, "{sql}");
        }
    }

    /// One line per case: SQL → columns choosing rows, stored, assigned to
    /// variables.
    #[test]
    fn predicates_stored_assigned_table() {
        let cases = [
            (
                "select id from cards where pan like '4%'",
                "cards.pan",
                "",
                "",
            ),
            (
                "select id from cards where pan regexp '^4'",
                "cards.pan",
                "",
                "",
            ),
            (
                "select id from cards where match(pan) against ('4111')",
                "cards.pan",
                "",
                "",
            ),
            (
                "select id from cards where \"pan\" = '1'",
                "cards.pan",
                "",
                "",
            ),
            (
                "select sum(id) over (partition by pan) from cards",
                "cards.pan",
                "",
                "",
            ),
            (
                "select sum(id) over w from cards window w as (order by pan)",
                "cards.pan",
                "",
                "",
            ),
            (
                "show tables where (select pan from cards limit 1) like '4%'",
                "cards.pan",
                "",
                "",
            ),
            (
                "handler cards read first where pan like '4%'",
                "cards.pan",
                "",
                "",
            ),
            ("handler cards read `PRIMARY` = (1)", "cards.*", "", ""),
            ("handler cards read pan_idx first", "cards.*", "", ""),
            ("handler cards read first", "", "", ""),
            ("replace into t select pan from cards", "", "cards.pan", ""),
            (
                "insert into t set a = (select pan from cards limit 1)",
                "",
                "cards.pan",
                "",
            ),
            (
                "insert into t values (1) on duplicate key update a = (select pan from cards limit 1)",
                "",
                "cards.pan",
                "",
            ),
            (
                "insert into cards (pan) values ('1') on duplicate key update pan = values(pan)",
                "",
                "",
                "",
            ),
            (
                "insert into cards (pan) values ('1') as n on duplicate key update pan = n.pan",
                "",
                "",
                "",
            ),
            ("create table t2 select pan from cards", "", "cards.pan", ""),
            (
                "call p((select pan from cards limit 1))",
                "",
                "cards.pan",
                "",
            ),
            ("select @v := pan from cards", "", "", "cards.pan"),
            ("select pan into @v from cards", "", "", "cards.pan"),
            (
                "select pan from cards where id = 1 into @v",
                "cards.id",
                "",
                "cards.pan",
            ),
            (
                "select pan, holder from cards into @a, @b",
                "",
                "",
                "cards.holder,cards.pan",
            ),
            (
                "select (select pan into @v from cards limit 1)",
                "",
                "",
                "cards.pan",
            ),
            (
                "set @v = (select pan from cards limit 1)",
                "",
                "",
                "cards.pan",
            ),
            (
                "set @v := (select pan from cards limit 1)",
                "",
                "",
                "cards.pan",
            ),
            (
                "set @a = 1, @b := (select holder from cards limit 1)",
                "",
                "",
                "cards.holder",
            ),
            (
                "set @@session.sql_select_limit = (select pan from cards limit 1)",
                "",
                "",
                "cards.pan",
            ),
            (
                "do @v := (select pan from cards limit 1)",
                "",
                "",
                "cards.pan",
            ),
            (
                "prepare s from 'set @v = (select pan from cards limit 1)'",
                "",
                "",
                "cards.pan",
            ),
            ("select @v", "", "", ""),
        ];
        for (sql, preds, stored, assigned) in cases {
            let f = one(sql);
            assert_eq!(set(&f.predicates), preds, "predicates of {sql}");
            assert_eq!(set(&f.stored), stored, "stored of {sql}");
            assert_eq!(set(&f.assigned), assigned, "assigned of {sql}");
        }
    }

    /// One line per case: SQL → tables, has WHERE, LIMIT.
    #[test]
    fn extraction_table() {
        let cases = [
            ("select a from t limit 10", "t", true, Some(10)),
            ("select a from t limit 5, 10", "t", true, Some(10)),
            (
                "update a join b on a.id = b.id set a.x = b.y",
                "a,b",
                false,
                None,
            ),
            (
                "update a join b on a.id = b.id set a.x = b.y where a.id = 1",
                "a,b",
                true,
                None,
            ),
            ("update ignore t set a = 1", "t", false, None),
            ("update low_priority ignore t set a = 1", "t", false, None),
            ("delete a from a join b on a.id = b.id", "a,b", false, None),
            (
                "delete a from a join b on a.id = b.id where b.x = 1",
                "a,b",
                true,
                None,
            ),
            (
                "delete from a using a join b on a.id = b.id",
                "a,b",
                false,
                None,
            ),
            ("delete quick from t", "t", false, None),
            ("delete from t order by id limit 1", "t", false, None),
            ("lock tables cards read, t write", "cards,t", true, None),
            ("select pan from `Db1`.`Cards`", "db1.cards", true, None),
        ];
        for (sql, tables, has_where, limit) in cases {
            let f = one(sql);
            assert_eq!(set(&f.tables), tables, "tables of {sql}");
            assert_eq!(f.has_where, has_where, "where of {sql}");
            assert_eq!(f.limit, limit, "limit of {sql}");
        }
    }

    /// One line per case: SQL → the built-in rule refusing it ("" none).
    #[test]
    fn refusals_table() {
        let cases = [
            (
                "select pan into outfile '/tmp/x' from cards",
                "builtin.file_io",
            ),
            (
                "select pan from cards into outfile '/tmp/x' fields terminated by ','",
                "builtin.file_io",
            ),
            (
                "select pan from cards union select pan from cards into outfile '/tmp/x'",
                "builtin.file_io",
            ),
            (
                "select pan from cards into dumpfile '/tmp/x'",
                "builtin.file_io",
            ),
            (
                "select pan from cards into /*! outfile */ '/tmp/x'",
                "builtin.file_io",
            ),
            (
                "load data infile '/etc/passwd' into table t",
                "builtin.file_io",
            ),
            (
                "load data local infile '/home/u/.ssh/id_rsa' into table t",
                "builtin.file_io",
            ),
            ("LOAD XML LOCAL INFILE 'x' INTO TABLE t", "builtin.file_io"),
            ("select load_file('/etc/passwd')", "builtin.file_io"),
            ("select `LOAD_FILE` ('/etc/passwd')", "builtin.file_io"),
            (
                "select 1 /*! , load_file('/etc/passwd')*/",
                "builtin.file_io",
            ),
            (
                "prepare s from 'select load_file(''/etc/shadow'')'",
                "builtin.file_io",
            ),
            ("prepare s from @q", "builtin.dynamic_sql"),
            ("set sql_mode = 'ANSI_QUOTES'", "builtin.sql_mode"),
            (
                "set session sql_mode = 'STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES'",
                "builtin.sql_mode",
            ),
            ("set @@sql_mode = 'ansi'", "builtin.sql_mode"),
            ("set @@local.sql_mode := 'ORACLE'", "builtin.sql_mode"),
            (
                "set sql_mode = concat(@@sql_mode, ',ANSI')",
                "builtin.sql_mode",
            ),
            ("set sql_mode = @m", "builtin.sql_mode"),
            ("set @x = 1, sql_mode = 'ANSI_QUOTES'", "builtin.sql_mode"),
            ("set names gbk", "builtin.charset"),
            ("set names 'sjis'", "builtin.charset"),
            ("set character set big5", "builtin.charset"),
            ("set charset cp932", "builtin.charset"),
            ("set character_set_client = gb18030", "builtin.charset"),
            ("set sql_mode = 'STRICT_TRANS_TABLES'", ""),
            ("set sql_mode = ''", ""),
            ("set sql_mode = default", ""),
            ("set names utf8mb4", ""),
            ("set names latin1", ""),
            ("select into_outfile from t", ""),
            ("select 'into outfile'", ""),
            ("select load_file from t", ""),
            ("prepare s from 'select 1'", ""),
        ];
        for (sql, rule) in cases {
            let f = one(sql);
            assert_eq!(
                f.refusal.as_ref().map_or("", |r| r.rule.as_str()),
                rule,
                "{sql}: {f:?}"
            );
        }
    }

    /// Statements, executable comments and refused text in one string.
    #[test]
    fn multi_statement_and_errors() {
        assert_eq!(analyze("select 1; delete from t").unwrap().len(), 2);
        assert_eq!(analyze("select 1; select 2;").unwrap().len(), 2);
        // A `;` inside an executable comment ends a statement.
        let v = analyze("select 1 /*! ; select pan from cards */").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(outs(&v[1]), "pan=cards.pan");
        // A refused statement survives a neighbour that does not parse.
        let v = analyze("selec 1; load data infile 'x' into table t").unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].refusal.as_ref().unwrap().rule, "builtin.file_io");
        for bad in [
            "selec 1",
            "select 1; selec 2",
            "select 1 /*! , pan from cards",
            "select 1 /*!123 , pan from cards */",
            "select 1 /* /* */ , pan from cards -- */",
            "select * from cards where pan sounds like 'x'",
            "prepare s from concat('select ', 'pan')",
            "prepare s from 'selec 1'",
            "handler cards",
            "handler cards read",
            "create procedure p() begin select 1; end",
            "show tables where (select 1) = 1 lock",
            "select @'x'",
        ] {
            assert!(analyze(bad).is_err(), "{bad}: {:?}", analyze(bad));
        }
        assert!(analyze("").unwrap().is_empty());
        assert!(analyze(" ; -- nothing\n").unwrap().is_empty());
    }

    #[test]
    fn unescape_table() {
        for (lit, want) in [
            ("'select 1'", "select 1"),
            ("'it''s'", "it's"),
            ("'a\\'b'", "a'b"),
            ("\"a\\\"b\"", "a\"b"),
            ("'a\\nb'", "a\nb"),
            ("'\\%'", "\\%"),
        ] {
            assert_eq!(unescape(lit), want, "{lit}");
        }
    }
}
