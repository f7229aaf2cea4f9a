//! Statement shapes for the analysis cache.
//!
//! Agents and scripts send the same statement with different literals
//! (`WHERE aid = 42`, `WHERE aid = 43`). [`fingerprint`] replaces the
//! literals that cannot change an analysis with `?`, so such statements
//! share one cached analysis instead of being parsed again each time.
//!
//! Only literals that are operands of an operator are replaced: a number or
//! string right after `=`, `<>`, `!=`, `<`, `>`, `<=`, `>=`, `+`, `-`, `*`,
//! `/` or `%`. Everything an analysis reads stays: LIMIT, OFFSET and FETCH
//! counts (after a keyword), ORDER BY and GROUP BY ordinals (after `BY` or
//! `,`), function arguments (`set_config('role', …)`), identifiers,
//! keywords, comments.
//!
//! When the text holds anything the scanner is not sure of — a backslash in
//! a string (its meaning depends on `standard_conforming_strings`), an
//! unterminated quote or comment, a `$` that does not open a dollar quote
//! or name a parameter, a `?` of its own (which would read as a replaced
//! literal) — there is no fingerprint, and the exact text is the cache key.
//!
//! MySQL ([`fingerprint_in`]) is fingerprinted after it is read the way
//! the server reads it (executable comments unwrapped, comments dropped),
//! so `select 1 /*!, pan from cards*/` never shares a shape with
//! `select 1`. Two more literals stay: those inside a SELECT list (MySQL
//! names an unaliased output column by its text, literals included, and
//! masks follow names) and every literal of a `SET` (the value of
//! `sql_mode` or `character_set_client` decides). Backtick names and
//! double-quoted strings are kept as they are; a number that is not plain
//! digits (`1e5`, `0x1F`, `1abc`, which MySQL may read as a name) is kept.

use crate::{dialect::Dialect, mysql};

/// The statement's shape in a dialect, or `None` when it is not safe to
/// compute (or the text cannot be read).
pub fn fingerprint_in(dialect: Dialect, sql: &str) -> Option<String> {
    match dialect {
        Dialect::Postgres => fingerprint(sql),
        Dialect::MySql => fingerprint_mysql(&mysql::normalize(sql).ok()?.text),
    }
}

/// MySQL text, already normalized (no comments left).
pub(crate) fn fingerprint_mysql(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut prev = Prev::Start;
    // Per parenthesis level: inside a SELECT list there.
    let mut select_list: Vec<bool> = vec![false];
    // The current statement is a SET.
    let mut in_set = false;
    let mut statement_start = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let end = mysql::quoted_end(b, i)?;
                if text[i..end].contains('\\') {
                    return None;
                }
                let replaceable = c == b'\'' && !in_set && !select_list.iter().any(|s| *s);
                if replaceable {
                    literal(&mut out, &prev, text, i..end);
                } else {
                    out.push_str(&text[i..end]);
                }
                prev = Prev::Literal;
                statement_start = false;
                i = end;
            }
            b'`' => {
                let end = mysql::quoted_end(b, i)?;
                out.push_str(&text[i..end]);
                prev = Prev::Word;
                statement_start = false;
                i = end;
            }
            b'0'..=b'9' | b'.' if c != b'.' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let mut end = i;
                while end < b.len()
                    && (b[end].is_ascii_alphanumeric()
                        || b[end] == b'.'
                        || b[end] == b'_'
                        || b[end] == b'$'
                        || b[end] >= 0x80)
                {
                    end += 1;
                }
                let token = &text[i..end];
                let plain = token.bytes().all(|x| x.is_ascii_digit() || x == b'.')
                    && token.bytes().filter(|x| *x == b'.').count() <= 1;
                if plain && !in_set && !select_list.iter().any(|s| *s) {
                    literal(&mut out, &prev, text, i..end);
                    prev = Prev::Literal;
                } else {
                    out.push_str(token);
                    prev = Prev::Word;
                }
                statement_start = false;
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'@' || c >= 0x80 => {
                let mut end = i + 1;
                while end < b.len()
                    && (b[end].is_ascii_alphanumeric()
                        || b[end] == b'_'
                        || b[end] == b'$'
                        || b[end] == b'@'
                        || b[end] >= 0x80)
                {
                    end += 1;
                }
                // x'…', b'…', n'…', _charset'…': kept as the exact text.
                if matches!(b.get(end), Some(b'\'' | b'"')) {
                    return None;
                }
                let word = &text[i..end];
                if statement_start {
                    in_set = word.eq_ignore_ascii_case("set");
                    statement_start = false;
                }
                let level = select_list.last_mut()?;
                if word.eq_ignore_ascii_case("select") {
                    *level = true;
                } else if [
                    "into",
                    "from",
                    "where",
                    "group",
                    "having",
                    "window",
                    "order",
                    "limit",
                    "union",
                    "except",
                    "intersect",
                    "for",
                    "lock",
                    "procedure",
                ]
                .iter()
                .any(|w| word.eq_ignore_ascii_case(w))
                {
                    *level = false;
                }
                out.push_str(word);
                prev = Prev::Word;
                i = end;
            }
            c if c.is_ascii_whitespace() => {
                out.push(c as char);
                i += 1;
            }
            b'(' => {
                select_list.push(false);
                out.push('(');
                prev = Prev::Op(i, i + 1);
                statement_start = false;
                i += 1;
            }
            b')' => {
                if select_list.len() > 1 {
                    select_list.pop();
                }
                out.push(')');
                prev = Prev::Op(i, i + 1);
                i += 1;
            }
            b';' => {
                select_list = vec![false];
                in_set = false;
                statement_start = true;
                out.push(';');
                prev = Prev::Op(i, i + 1);
                i += 1;
            }
            _ => {
                let start = i;
                while i < b.len() && is_operator_byte(b[i]) && b[i] != b'`' {
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
                // Whole characters only.
                while !text.is_char_boundary(i) {
                    i += 1;
                }
                // A prepared statement's placeholder would read as a
                // replaced literal: no shape (see `fingerprint`).
                if text[start..i].contains('?') {
                    return None;
                }
                out.push_str(&text[start..i]);
                prev = Prev::Op(start, i);
                statement_start = false;
            }
        }
    }
    Some(out)
}

/// The statement's shape, or `None` when it is not safe to compute.
pub fn fingerprint(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    // The last significant token: operator byte, or a word's first byte
    // marked as a word.
    let mut prev = Prev::Start;
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = block_comment_end(b, i)?;
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'\'' => {
                let end = string_end(b, i + 1)?;
                literal(&mut out, &prev, sql, i..end);
                prev = Prev::Literal;
                i = end;
            }
            b'"' => {
                let end = quoted_identifier_end(b, i + 1)?;
                out.push_str(&sql[i..end]);
                prev = Prev::Word;
                i = end;
            }
            b'$' => {
                // `$1` parameter, or a dollar quote `$tag$ … $tag$`.
                let rest = &sql[i + 1..];
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 0 {
                    out.push_str(&sql[i..i + 1 + digits]);
                    prev = Prev::Literal;
                    i += 1 + digits;
                    continue;
                }
                let tag_len = rest
                    .bytes()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    .count();
                if rest.as_bytes().get(tag_len) != Some(&b'$') {
                    return None;
                }
                let tag = &sql[i..i + tag_len + 2];
                let body = i + tag.len();
                let close = sql[body..].find(tag)? + body + tag.len();
                out.push_str(&sql[i..close]);
                prev = Prev::Literal;
                i = close;
            }
            b'0'..=b'9' | b'.' if c != b'.' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                // A numeric literal: digits, point, exponent, hex/underscores.
                let mut end = i;
                while end < b.len() {
                    let x = b[end];
                    let exp_sign = (x == b'+' || x == b'-')
                        && end > i
                        && matches!(b[end - 1], b'e' | b'E')
                        && !sql[i..end].starts_with("0x");
                    if x.is_ascii_alphanumeric() || x == b'.' || x == b'_' || exp_sign {
                        end += 1;
                    } else {
                        break;
                    }
                }
                // A token that is no well-formed number (`7abc`: trailing
                // junk, an error in PostgreSQL 15, `7 AS abc` before it) is
                // kept as it is, so it never shares a shape with a number.
                // The same goes for one that runs into a name (`7abcҞ`).
                if well_formed_number(&sql[i..end])
                    && !b.get(end).is_some_and(|x| *x >= 0x80 || *x == b'$')
                {
                    literal(&mut out, &prev, sql, i..end);
                    prev = Prev::Literal;
                } else {
                    out.push_str(&sql[i..end]);
                    prev = Prev::Word;
                }
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let mut end = i;
                while end < b.len()
                    && (b[end].is_ascii_alphanumeric()
                        || b[end] == b'_'
                        || b[end] == b'$'
                        || b[end] >= 0x80)
                {
                    end += 1;
                }
                // E'…' (backslash escapes), U&'…', B'…', X'…', N'…': a
                // prefixed string is kept as it is.
                if b.get(end) == Some(&b'\'')
                    || (b.get(end) == Some(&b'&') && b.get(end + 1) == Some(&b'\''))
                {
                    return None;
                }
                out.push_str(&sql[i..end]);
                prev = Prev::Word;
                i = end;
            }
            c if c.is_ascii_whitespace() => {
                out.push(c as char);
                i += 1;
            }
            _ => {
                // Operators and punctuation, one byte at a time; a run of
                // operator bytes is one operator.
                let start = i;
                while i < b.len()
                    && is_operator_byte(b[i])
                    && !(b[i] == b'-' && b.get(i + 1) == Some(&b'-'))
                    && !(b[i] == b'/' && b.get(i + 1) == Some(&b'*'))
                {
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
                // A `?` of the text itself (a jsonb operator, a driver's
                // placeholder, junk) would read as a replaced literal: the
                // shape would be ambiguous, so there is none.
                if sql[start..i].contains('?') {
                    return None;
                }
                out.push_str(&sql[start..i]);
                prev = Prev::Op(start, i);
            }
        }
    }
    Some(out)
}

/// A PostgreSQL numeric literal: decimal digits with at most one point and
/// an optional exponent (`2.5e-3`), or `0x`/`0o`/`0b` digits; underscores
/// between digits.
fn well_formed_number(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return !rest.is_empty()
                && rest.chars().all(|c| c == '_' || c.is_digit(radix))
                && !rest.starts_with('_')
                && !rest.ends_with('_');
        }
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let digits = |x: &str| {
        !x.is_empty() && x.chars().all(|c| c.is_ascii_digit() || c == '_') && !x.ends_with('_')
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() || digits(int))
                && (frac.is_empty() || digits(frac))
                && !(int.is_empty() && frac.is_empty())
        }
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

/// Write a literal: `?` where it is an operator's operand, else as it is.
fn literal(out: &mut String, prev: &Prev, sql: &str, range: std::ops::Range<usize>) {
    if prev.is_operand_position(sql) {
        out.push('?');
    } else {
        out.push_str(&sql[range]);
    }
}

/// The token before a literal.
enum Prev {
    Start,
    Literal,
    Word,
    /// An operator: its byte range in the text.
    Op(usize, usize),
}

impl Prev {
    /// Is a literal here an operator's operand (replaceable)?
    fn is_operand_position(&self, sql: &str) -> bool {
        match self {
            Prev::Op(start, end) => matches!(
                &sql[*start..*end],
                "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=" | "+" | "-" | "*" | "/" | "%"
            ),
            _ => false,
        }
    }
}

fn is_operator_byte(c: u8) -> bool {
    matches!(
        c,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

/// End of a `'…'` string starting after its quote (`''` is a quote inside).
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'\\' => return None,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn quoted_identifier_end(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'"' if b.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End of a (nested) block comment starting at `i`.
fn block_comment_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per case: SQL → its fingerprint (None: not safe).
    #[test]
    fn fingerprint_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
                Some("SELECT abalance FROM pgbench_accounts WHERE aid = ?;"),
            ),
            (
                "select * from t where a=1 and b<>'x' and c >= 2.5e-3",
                Some("select * from t where a=? and b<>? and c >= ?"),
            ),
            (
                "update t set x = x + -5 where id = 7",
                Some("update t set x = x + -? where id = ?"),
            ),
            ("select * from t limit 10", Some("select * from t limit 10")),
            // Found by fuzzing: `r=?` was its own shape, and that of `r=0`,
            // so one's cached analysis answered for the other.
            ("select x where r=?", None),
            // Found by fuzzing: `7loaddata0` was taken for a number, so the
            // unparseable `id = 7loaddata0` shared a shape with `id = 0`.
            (
                "select a from t where id = 7loaddata0",
                Some("select a from t where id = 7loaddata0"),
            ),
            (
                "select a from t where id = 7ҞX",
                Some("select a from t where id = 7ҞX"),
            ),
            (
                "select a from t where id = 0x1F and b = 1_000 and c = 1.5E+3 and d = .5",
                Some("select a from t where id = ? and b = ? and c = ? and d = ?"),
            ),
            (
                "select a from t where id = 1e",
                Some("select a from t where id = 1e"),
            ),
            ("select doc ? 'k' from t where id = 1", None),
            (
                "select * from t limit 10 offset 20",
                Some("select * from t limit 10 offset 20"),
            ),
            (
                "select * from t fetch first 5 rows only",
                Some("select * from t fetch first 5 rows only"),
            ),
            (
                "select a, b from t order by 2",
                Some("select a, b from t order by 2"),
            ),
            (
                "select a, b from t order by 1, 2",
                Some("select a, b from t order by 1, 2"),
            ),
            (
                "select a from t group by 1",
                Some("select a from t group by 1"),
            ),
            (
                "select set_config('role', 'x', false)",
                Some("select set_config('role', 'x', false)"),
            ),
            (
                "insert into t values (1, 2)",
                Some("insert into t values (1, 2)"),
            ),
            ("select t1.c2 from t1", Some("select t1.c2 from t1")),
            (
                "select \"a=1\" from t where \"b\" = 3",
                Some("select \"a=1\" from t where \"b\" = ?"),
            ),
            (
                "select 1 -- where x = 2\n",
                Some("select 1 -- where x = 2\n"),
            ),
            ("select /* it's = 5 */ 1", Some("select /* it's = 5 */ 1")),
            ("select $1 where a = $2", Some("select $1 where a = $2")),
            (
                "select $$it's$$ where a = 1",
                Some("select $$it's$$ where a = ?"),
            ),
            ("select $q$x$q$", Some("select $q$x$q$")),
            ("select 'a\\'b'", None),
            ("select E'a\\nb'", None),
            ("select U&'x'", None),
            ("select 'unterminated", None),
            ("select /* open", None),
            ("select $x", None),
            (
                "select 0x1F, 1_000 where a = 0x1F",
                Some("select 0x1F, 1_000 where a = ?"),
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(fingerprint(sql).as_deref(), *want, "{sql}");
        }
    }

    /// MySQL, one line per case: SQL → its fingerprint (None: not safe).
    #[test]
    fn mysql_fingerprint_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "SELECT abalance FROM accounts WHERE aid = 42",
                Some("SELECT abalance FROM accounts WHERE aid = ?"),
            ),
            ("select * from t where a = ?", None),
            (
                "select * from t where a='x' and b <> 2.5",
                Some("select * from t where a=? and b <> ?"),
            ),
            (
                "select * from t where a = 1 /* c */",
                Some("select * from t where a = ?  "),
            ),
            (
                "select 1 /*!, pan from cards*/",
                Some("select 1  , pan from cards "),
            ),
            // In a SELECT list the text names the column: literals stay.
            (
                "select pan + 1 from cards",
                Some("select pan + 1 from cards"),
            ),
            (
                "select (select x from t where y = 5) from u where z = 6",
                Some("select (select x from t where y = 5) from u where z = ?"),
            ),
            (
                "select a from (select b from t where c = 1) s where d = 2",
                Some("select a from (select b from t where c = ?) s where d = ?"),
            ),
            // SET: every literal decides (sql_mode, character sets).
            ("set sql_mode = 'ANSI'", Some("set sql_mode = 'ANSI'")),
            (
                "set @a = 1; select 1 from t where x = 2",
                Some("set @a = 1; select 1 from t where x = ?"),
            ),
            (
                "select `a = 1` from t where `b` = 2",
                Some("select `a = 1` from t where `b` = ?"),
            ),
            (
                "select * from t where a = \"x\"",
                Some("select * from t where a = \"x\""),
            ),
            (
                "select * from t where a = 1e5",
                Some("select * from t where a = 1e5"),
            ),
            (
                "select * from t where a = 0x1F",
                Some("select * from t where a = 0x1F"),
            ),
            (
                "select * from t where a = 1abc",
                Some("select * from t where a = 1abc"),
            ),
            (
                "select * from t where a = @v",
                Some("select * from t where a = @v"),
            ),
            ("select * from t limit 10", Some("select * from t limit 10")),
            ("select * from t where a = 'x\\'y'", None),
            ("select * from t where a = x'41'", None),
            ("select * from t where a = _utf8mb4'x'", None),
            ("select 1 /*! , pan", None),
        ];
        for (sql, want) in cases {
            assert_eq!(
                fingerprint_in(Dialect::MySql, sql).as_deref(),
                *want,
                "{sql}"
            );
        }
        assert_eq!(
            fingerprint_in(Dialect::Postgres, "select 1 /*!, pan from cards*/").as_deref(),
            Some("select 1 /*!, pan from cards*/")
        );
    }

    /// Statements whose analyses differ never share a fingerprint.
    #[test]
    fn shapes_that_decide_differently_stay_apart() {
        let pairs = [
            ("select * from t limit 10", "select * from t limit 100000"),
            (
                "select a, b from t order by 1",
                "select a, b from t order by 2",
            ),
            (
                "select set_config('role', 'x', false)",
                "select set_config('app.x', 'x', false)",
            ),
            ("select pan from cards", "select id from cards"),
            ("select 1 from a", "select 1 from b"),
        ];
        for (a, b) in pairs {
            assert_ne!(fingerprint(a), fingerprint(b), "{a} / {b}");
        }
    }
}
