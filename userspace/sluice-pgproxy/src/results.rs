//! Result context: which columns each DataRow holds and which format each
//! CopyData is in. A pure state machine with no I/O, fed with what the
//! client sent (in the order it reached the database) and with every frame
//! the database sends back.
//!
//! The database answers requests strictly in order, so the engine keeps a
//! queue of what it expects answers to ([`Request`], pushed by the client →
//! database task before the bytes leave) and replays, from the answers, the
//! server state that decides what a row is:
//!
//! - **simple Query**: the RowDescription before the rows, formats as sent
//!   (all text, except FETCH from a BINARY cursor);
//! - **prepared statements**: Describe S answers ParameterDescription then
//!   RowDescription or NoData; a statement is (re)defined by its
//!   ParseComplete, so a description always belongs to one definition (the
//!   unnamed statement is replaced by the next Parse, and destroyed by a
//!   simple Query);
//! - **portals**: BindComplete creates one from a statement and Bind's
//!   result-format codes (none = all text, one = all columns, n = per
//!   column); Describe P gives its RowDescription with the real formats.
//!   Execute's rows use the portal, also when it is suspended and resumed.
//!   Close S (with the portals made from it) and Close P drop them; the end
//!   of a transaction (ReadyForQuery `I`, or a COMMIT, ROLLBACK, CLOSE or
//!   DISCARD command) drops all portals, DEALLOCATE and DISCARD ALL all
//!   statements;
//! - **errors**: after an ErrorResponse to an extended-protocol message the
//!   database discards everything up to Sync, so the queue drops it too;
//! - **COPY**: CopyOutResponse gives the format of the CopyData that
//!   follows; during COPY FROM STDIN the database ignores Sync, so a Sync
//!   the client sent before its first copy message (libpq and tokio-postgres
//!   pipeline one with the Execute) expects no answer.
//!
//! Effects are applied when the database confirms them (ParseComplete,
//! BindComplete, …), never when the request is sent, so whatever the
//! database skipped after an error leaves no trace here.
//!
//! When in doubt the engine forgets: a row whose columns cannot be known
//! gets `None`, and a frame that does not fit the queue (which would mean
//! this model is wrong) puts the session in a *lost* state where every row
//! is `None` and statements and portals are forgotten, until a
//! ReadyForQuery leaves nothing outstanding.
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use bytes::Bytes;
use sluice_pgwire::{
    BackendMessage, CodecError, Frame, FrontendMessage, backend::FieldDescription, frontend::Target,
};

use crate::hooks::{Column, CopyFormat, Format};

/// A client message as far as result context needs it: what the database
/// will answer, or (COPY messages) what changes how it reads the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Simple query: answered up to ReadyForQuery.
    Query,
    /// Fast-path function call: answered up to ReadyForQuery.
    FunctionCall,
    /// Parse into `statement`.
    Parse { statement: String },
    /// Bind `portal` from `statement` with these result-format codes.
    Bind {
        portal: String,
        statement: String,
        formats: Vec<i16>,
    },
    /// Describe a statement or portal.
    Describe { target: Target, name: String },
    /// Execute `portal`.
    Execute { portal: String },
    /// Close a statement or portal.
    Close { target: Target, name: String },
    /// Sync.
    Sync,
    /// The first CopyData of a run from the client (the rest are not
    /// queued: only its position matters).
    CopyData,
    /// CopyDone or CopyFail.
    CopyEnd,
}

impl Request {
    /// The request a frontend message makes, if the database answers it or
    /// it changes how later ones are read. Flush, Terminate and
    /// authentication messages make none.
    pub(crate) fn from_frontend(msg: &FrontendMessage) -> Option<Request> {
        Some(match msg {
            FrontendMessage::Query(_) => Request::Query,
            FrontendMessage::FunctionCall { .. } => Request::FunctionCall,
            FrontendMessage::Parse { name, .. } => Request::Parse {
                statement: name.clone(),
            },
            FrontendMessage::Bind {
                portal,
                statement,
                result_formats,
                ..
            } => Request::Bind {
                portal: portal.clone(),
                statement: statement.clone(),
                formats: result_formats.clone(),
            },
            FrontendMessage::Describe { target, name } => Request::Describe {
                target: *target,
                name: name.clone(),
            },
            FrontendMessage::Execute { portal, .. } => Request::Execute {
                portal: portal.clone(),
            },
            FrontendMessage::Close { target, name } => Request::Close {
                target: *target,
                name: name.clone(),
            },
            FrontendMessage::Sync => Request::Sync,
            FrontendMessage::CopyData(_) => Request::CopyData,
            FrontendMessage::CopyDone | FrontendMessage::CopyFail(_) => Request::CopyEnd,
            FrontendMessage::Flush
            | FrontendMessage::Terminate
            | FrontendMessage::AuthResponse(_) => return None,
        })
    }

    /// Requests whose answer ends with ReadyForQuery.
    fn ends_with_ready(&self) -> bool {
        matches!(self, Request::Query | Request::FunctionCall | Request::Sync)
    }
}

/// One definition of a prepared statement.
#[derive(Debug)]
struct Statement {
    /// Tells this definition apart from an earlier or later one of the
    /// same name (the unnamed statement is redefined all the time).
    generation: u64,
    /// From Describe S, formats not yet known (all text here).
    columns: Option<Arc<[Column]>>,
}

#[derive(Debug)]
struct Portal {
    statement: String,
    /// The statement definition it was bound from, if it was known.
    generation: Option<u64>,
    /// Bind's result-format codes.
    formats: Vec<i16>,
    /// Resolved columns, with their real formats.
    columns: Option<Arc<[Column]>>,
}

/// What the client will see in each row: see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Results {
    queue: VecDeque<Request>,
    statements: HashMap<String, Statement>,
    portals: HashMap<String, Portal>,
    next_generation: u64,
    /// Columns of the result being streamed; `None` until worked out for
    /// this result (at its RowDescription, or its first DataRow).
    result: Option<Option<Arc<[Column]>>>,
    /// Format of the COPY TO STDOUT in progress.
    copy: Option<CopyFormat>,
    /// The database discards extended-protocol messages until Sync.
    skipping: bool,
    /// The database entered COPY FROM STDIN and ignores Sync until the
    /// client's first copy message.
    copy_in: bool,
    /// A frame did not fit the queue: everything is unknown until the
    /// database has answered all that is queued.
    lost: bool,
}

impl Results {
    /// Queue what the database will answer (in the order it was sent).
    pub(crate) fn push(&mut self, request: Request) {
        self.queue.push_back(request);
    }

    /// Queue the request `msg` makes, if any.
    #[cfg(test)]
    pub(crate) fn request(&mut self, msg: &FrontendMessage) {
        if let Some(r) = Request::from_frontend(msg) {
            self.push(r);
        }
    }

    /// The columns of the DataRow just passed to [`Results::response`],
    /// `None` if they cannot be known.
    pub(crate) fn row_columns(&self) -> Option<&[Column]> {
        if self.lost {
            return None;
        }
        self.result.as_ref()?.as_deref()
    }

    /// The format of the CopyData just passed to [`Results::response`].
    pub(crate) fn copy_format(&self) -> Option<&CopyFormat> {
        self.copy.as_ref()
    }

    /// Whether the session lost track of what the database answers.
    #[cfg(test)]
    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }

    /// One frame from the database, in order: its type byte and its body
    /// (after the 5-byte header). Errors only on a malformed body.
    pub(crate) fn response(&mut self, tag: u8, body: &[u8]) -> Result<(), CodecError> {
        match tag {
            // Asynchronous: may come at any time and answer nothing.
            b'N' | b'A' | b'S' => return Ok(()),
            b'H' | b'W' => {
                let (BackendMessage::CopyOutResponse {
                    format,
                    column_formats: columns,
                }
                | BackendMessage::CopyBothResponse {
                    format,
                    column_formats: columns,
                }) = decode(tag, body)?
                else {
                    return Err(CodecError::malformed("CopyOutResponse", "wrong type"));
                };
                self.copy = Some(CopyFormat {
                    format: Format::from_code(i16::from(format)),
                    columns: columns.into_iter().map(Format::from_code).collect(),
                });
                if tag == b'W' {
                    self.copy_in = true;
                }
            }
            b'c' | b'C' | b'E' | b'Z' | b'I' => self.copy = None,
            b'G' => self.copy_in = true,
            _ => {}
        }
        if self.lost {
            if tag == b'Z' {
                self.ready_while_lost();
            }
            return Ok(());
        }
        self.normalize();
        match tag {
            b'1' => {
                if let Some(Request::Parse { statement }) =
                    self.take(tag, |r| matches!(r, Request::Parse { .. }))
                {
                    let generation = self.generation();
                    self.statements.insert(
                        statement,
                        Statement {
                            generation,
                            columns: None,
                        },
                    );
                }
            }
            b'2' => {
                if let Some(Request::Bind {
                    portal,
                    statement,
                    formats,
                }) = self.take(tag, |r| matches!(r, Request::Bind { .. }))
                {
                    let (generation, columns) = match self.statements.get(&statement) {
                        Some(s) => (
                            Some(s.generation),
                            s.columns.as_ref().and_then(|c| with_formats(c, &formats)),
                        ),
                        None => (None, None),
                    };
                    self.portals.insert(
                        portal,
                        Portal {
                            statement,
                            generation,
                            formats,
                            columns,
                        },
                    );
                }
            }
            b'3' => match self.take(tag, |r| matches!(r, Request::Close { .. })) {
                Some(Request::Close {
                    target: Target::Statement,
                    name,
                }) => {
                    if let Some(s) = self.statements.remove(&name) {
                        // Closing a statement closes the portals made from it.
                        self.portals.retain(|_, p| {
                            !(p.statement == name && p.generation == Some(s.generation))
                        });
                    }
                }
                Some(Request::Close {
                    target: Target::Portal,
                    name,
                }) => {
                    self.portals.remove(&name);
                }
                _ => {}
            },
            b't' => self.expect(tag, |r| {
                matches!(
                    r,
                    Request::Describe {
                        target: Target::Statement,
                        ..
                    }
                )
            }),
            b'T' | b'n' => {
                let columns: Arc<[Column]> = if tag == b'T' {
                    let BackendMessage::RowDescription(fields) = decode(tag, body)? else {
                        return Err(CodecError::malformed("RowDescription", "wrong type"));
                    };
                    fields.into_iter().map(column).collect()
                } else {
                    Arc::from(Vec::new())
                };
                if tag == b'T' && self.queue.front() == Some(&Request::Query) {
                    self.result = Some(Some(columns));
                } else if let Some(Request::Describe { target, name }) =
                    self.take(tag, |r| matches!(r, Request::Describe { .. }))
                {
                    self.described(target, name, columns);
                }
            }
            b'D' => {
                let count = match body {
                    [a, b, ..] => i16::from_be_bytes([*a, *b]),
                    _ => return Err(CodecError::malformed("DataRow", "no value count")),
                };
                if self.result.is_none() {
                    self.result = Some(match self.queue.front() {
                        Some(Request::Execute { portal }) => {
                            let portal = portal.clone();
                            self.portal_columns(&portal)
                        }
                        // A simple query's rows follow their RowDescription.
                        _ => None,
                    });
                }
                let expected = match &self.result {
                    Some(Some(columns)) => Some(columns.len()),
                    _ => None,
                };
                self.expect(tag, |r| {
                    matches!(r, Request::Query | Request::Execute { .. })
                });
                if expected.is_some_and(|n| usize::try_from(count) != Ok(n)) {
                    tracing::warn!(
                        values = count,
                        columns = expected,
                        "result context: a DataRow does not match its description"
                    );
                    self.lose(tag);
                }
            }
            b'C' | b'I' | b's' => {
                self.result = None;
                if tag == b'C' {
                    self.command_complete(body);
                }
                match self.queue.front() {
                    Some(Request::Query) if tag != b's' => {}
                    _ => {
                        self.take(tag, |r| matches!(r, Request::Execute { .. }));
                    }
                }
            }
            b'E' => {
                self.result = None;
                match self.queue.front() {
                    // Nothing outstanding: an asynchronous error (a FATAL
                    // before the database closes the session).
                    None => {}
                    // ReadyForQuery follows.
                    Some(Request::Query | Request::FunctionCall | Request::Sync) => {}
                    Some(_) => {
                        self.queue.pop_front();
                        self.skipping = true;
                    }
                }
            }
            b'Z' => {
                self.result = None;
                let status = *body
                    .first()
                    .ok_or_else(|| CodecError::malformed("ReadyForQuery", "no status"))?;
                match self.take(tag, Request::ends_with_ready) {
                    Some(Request::Query) => {
                        // A simple query destroys the unnamed statement and
                        // portal.
                        self.statements.remove("");
                        self.portals.remove("");
                    }
                    Some(_) => {}
                    // Counts as the ReadyForQuery of the first request that
                    // ends with one, as every later one while lost.
                    None => self.ready_while_lost(),
                }
                self.skipping = false;
                self.copy_in = false;
                if status == b'I' {
                    // Out of any transaction: every portal is gone.
                    self.portals.clear();
                }
            }
            b'V' => self.expect(tag, |r| *r == Request::FunctionCall),
            // Copy responses and data (handled above), and anything else:
            // answers nothing by itself.
            _ => {}
        }
        Ok(())
    }

    /// Drop what the database will not answer: copy markers, a Sync it
    /// ignores in COPY FROM STDIN, and everything up to Sync after an
    /// extended-protocol error.
    fn normalize(&mut self) {
        while let Some(front) = self.queue.front() {
            match front {
                Request::CopyData | Request::CopyEnd => self.copy_in = false,
                Request::Sync if self.copy_in => {}
                Request::Sync => break,
                _ if self.skipping => {}
                _ => break,
            }
            self.queue.pop_front();
        }
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// A Describe's answer: RowDescription, or NoData (no columns).
    fn described(&mut self, target: Target, name: String, columns: Arc<[Column]>) {
        match target {
            Target::Statement => match self.statements.get_mut(&name) {
                Some(s) => s.columns = Some(columns),
                None => {
                    // Prepared with SQL PREPARE: known from now on.
                    let generation = self.generation();
                    self.statements.insert(
                        name,
                        Statement {
                            generation,
                            columns: Some(columns),
                        },
                    );
                }
            },
            // A portal's RowDescription carries the real formats.
            Target::Portal => match self.portals.get_mut(&name) {
                Some(p) => p.columns = Some(columns),
                None => {
                    // A cursor opened with SQL DECLARE.
                    self.portals.insert(
                        name,
                        Portal {
                            statement: String::new(),
                            generation: None,
                            formats: Vec::new(),
                            columns: Some(columns),
                        },
                    );
                }
            },
        }
    }

    /// The columns of `name`'s rows: its own description, or its
    /// statement's (the definition it was bound from) with Bind's formats.
    fn portal_columns(&mut self, name: &str) -> Option<Arc<[Column]>> {
        let portal = self.portals.get_mut(name)?;
        if portal.columns.is_none() {
            let statement = self.statements.get(&portal.statement)?;
            if portal.generation != Some(statement.generation) {
                return None;
            }
            portal.columns = with_formats(statement.columns.as_ref()?, &portal.formats);
        }
        portal.columns.clone()
    }

    /// Commands that end transactions or drop cursors and prepared
    /// statements behind the protocol's back. The tag does not say which
    /// ones, so all are forgotten (later rows of those are then `None`).
    fn command_complete(&mut self, body: &[u8]) {
        let tag = body.split(|b| *b == 0).next().unwrap_or_default();
        match tag {
            b"COMMIT"
            | b"ROLLBACK"
            | b"PREPARE TRANSACTION"
            | b"CLOSE CURSOR"
            | b"CLOSE CURSOR ALL" => self.portals.clear(),
            b"DEALLOCATE" | b"DEALLOCATE ALL" => self.statements.clear(),
            b"DISCARD ALL" => {
                self.portals.clear();
                self.statements.clear();
            }
            _ => {}
        }
    }

    /// Pop the head if the frame `tag` answers it (`fits`); if not, lose
    /// track, leaving the queue as it is.
    fn take(&mut self, tag: u8, fits: impl FnOnce(&Request) -> bool) -> Option<Request> {
        if self.queue.front().is_some_and(fits) {
            self.queue.pop_front()
        } else {
            self.lose(tag);
            None
        }
    }

    /// Lose track unless the frame `tag` is part of the answer to the head.
    fn expect(&mut self, tag: u8, fits: impl FnOnce(&Request) -> bool) {
        if !self.queue.front().is_some_and(fits) {
            self.lose(tag);
        }
    }

    /// A frame that does not fit what is queued: forget everything.
    fn lose(&mut self, tag: u8) {
        if self.lost {
            return;
        }
        tracing::warn!(
            frame = sluice_pgwire::backend::name(tag),
            expected_answer_to = ?self.queue.front(),
            "result context lost: rows are passed to the rewriter without columns until the database has answered everything outstanding"
        );
        self.lost = true;
        self.result = None;
        self.statements.clear();
        self.portals.clear();
    }

    /// ReadyForQuery while lost: it answers (at best) the first request
    /// that ends with one. Once nothing is outstanding, start afresh.
    fn ready_while_lost(&mut self) {
        while let Some(r) = self.queue.pop_front() {
            if r.ends_with_ready() {
                break;
            }
        }
        if self.queue.is_empty() {
            tracing::info!("result context found again");
            *self = Results {
                next_generation: self.next_generation,
                copy: self.copy.take(),
                ..Results::default()
            };
        }
    }
}

fn decode(tag: u8, body: &[u8]) -> Result<BackendMessage, CodecError> {
    BackendMessage::decode_lossy(Frame {
        tag,
        body: Bytes::copy_from_slice(body),
    })
}

fn column(f: FieldDescription) -> Column {
    Column {
        name: f.name,
        table_oid: f.table_oid,
        column: f.column,
        type_oid: f.type_oid,
        type_size: f.type_size,
        type_modifier: f.type_modifier,
        format: Format::from_code(f.format),
        origin: None,
    }
}

/// A statement's columns with Bind's result-format codes applied: none =
/// all text, one = every column, else one per column. `None` if the codes
/// do not fit the columns (the database would have refused the Bind).
fn with_formats(columns: &Arc<[Column]>, codes: &[i16]) -> Option<Arc<[Column]>> {
    let format = |i: usize| match codes {
        [] => Format::Text,
        [one] => Format::from_code(*one),
        many => Format::from_code(many[i]),
    };
    if codes.len() > 1 && codes.len() != columns.len() {
        return None;
    }
    if (0..columns.len()).all(|i| columns[i].format == format(i)) {
        return Some(columns.clone());
    }
    Some(
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| Column {
                format: format(i),
                ..c.clone()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_pgwire::BackendMessage as B;
    use sluice_pgwire::FrontendMessage as F;

    // ---- client messages

    fn query(sql: &str) -> F {
        F::Query(sql.into())
    }
    fn parse(name: &str, sql: &str) -> F {
        F::Parse {
            name: name.into(),
            query: sql.into(),
            param_types: vec![],
        }
    }
    fn bind(portal: &str, statement: &str, formats: &[i16]) -> F {
        F::Bind {
            portal: portal.into(),
            statement: statement.into(),
            param_formats: vec![],
            params: vec![],
            result_formats: formats.to_vec(),
        }
    }
    fn describe(target: Target, name: &str) -> F {
        F::Describe {
            target,
            name: name.into(),
        }
    }
    fn execute(portal: &str, max_rows: i32) -> F {
        F::Execute {
            portal: portal.into(),
            max_rows,
        }
    }
    fn close(target: Target, name: &str) -> F {
        F::Close {
            target,
            name: name.into(),
        }
    }
    use Target::{Portal as P, Statement as S};

    // ---- database messages

    /// RowDescription of `spec`: "name:format" per column, format 0 or 1;
    /// type int4 for names starting with "id", text otherwise.
    fn desc(spec: &str) -> B {
        B::RowDescription(
            spec.split_whitespace()
                .map(|c| {
                    let (name, format) = c.split_once(':').unwrap_or((c, "0"));
                    FieldDescription {
                        name: name.into(),
                        table_oid: 16384,
                        column: 1,
                        type_oid: if name.starts_with("id") { 23 } else { 25 },
                        type_size: -1,
                        type_modifier: -1,
                        format: format.parse().unwrap(),
                    }
                })
                .collect(),
        )
    }
    fn row(n: usize) -> B {
        B::DataRow(vec![Some(Bytes::from_static(b"v")); n])
    }
    fn done(tag: &str) -> B {
        B::CommandComplete(tag.into())
    }
    fn ready(status: u8) -> B {
        B::ReadyForQuery(status)
    }
    fn error() -> B {
        B::error("42601", "syntax error")
    }
    fn copy_out(format: i8, n: usize) -> B {
        B::CopyOutResponse {
            format,
            column_formats: vec![i16::from(format); n],
        }
    }
    fn copy_in() -> B {
        B::CopyInResponse {
            format: 0,
            column_formats: vec![0],
        }
    }
    fn data(s: &'static str) -> B {
        B::CopyData(Bytes::from_static(s.as_bytes()))
    }

    fn send(r: &mut Results, msgs: &[F]) {
        for m in msgs {
            r.request(m);
        }
    }

    /// Feed the database's answers; returns, for each DataRow and
    /// CopyData, what a rewriter would be told: "name:T name:B" columns
    /// (T text, B binary), "?" for unknown, "copy:T"/"copy:B"/"copy:?".
    fn answer(r: &mut Results, msgs: &[B]) -> Vec<String> {
        let mut seen = Vec::new();
        for m in msgs {
            let mut buf = bytes::BytesMut::new();
            m.encode(&mut buf);
            r.response(buf[0], &buf[5..]).expect("well-formed");
            let fmt = |f: Format| if f == Format::Text { "T" } else { "B" };
            match m {
                B::DataRow(_) => seen.push(match r.row_columns() {
                    Some(cols) => cols
                        .iter()
                        .map(|c| format!("{}:{}", c.name, fmt(c.format)))
                        .collect::<Vec<_>>()
                        .join(" "),
                    None => "?".into(),
                }),
                B::CopyData(_) => seen.push(match r.copy_format() {
                    Some(c) => format!("copy:{}", fmt(c.format)),
                    None => "copy:?".into(),
                }),
                _ => {}
            }
        }
        seen
    }

    #[test]
    fn simple_query_rows_follow_their_row_description() {
        let mut r = Results::default();
        send(&mut r, &[query("select id, holder from cards")]);
        let seen = answer(
            &mut r,
            &[
                desc("id holder"),
                row(2),
                row(2),
                done("SELECT 2"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["id:T holder:T", "id:T holder:T"]);
        assert!(!r.is_lost());
    }

    #[test]
    fn multi_statement_simple_query_switches_description_per_statement() {
        let mut r = Results::default();
        send(&mut r, &[query("select 1; insert ...; select 'a','b'; ;")]);
        let seen = answer(
            &mut r,
            &[
                desc("one"),
                row(1),
                done("SELECT 1"),
                done("INSERT 0 1"),
                desc("a b"),
                row(2),
                done("SELECT 1"),
                B::EmptyQueryResponse,
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["one:T", "a:T b:T"]);
        assert!(!r.is_lost());
    }

    #[test]
    fn fetch_from_a_binary_cursor_uses_the_row_description_formats() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                query("begin; declare c binary cursor for select id, holder from cards"),
                query("fetch 3 from c"),
                query("fetch 3 from c"),
            ],
        );
        let mut seen = answer(
            &mut r,
            &[done("BEGIN"), done("DECLARE CURSOR"), ready(b'T')],
        );
        for _ in 0..2 {
            seen.extend(answer(
                &mut r,
                &[
                    desc("id:1 holder:1"),
                    row(2),
                    row(2),
                    row(2),
                    done("FETCH 3"),
                    ready(b'T'),
                ],
            ));
        }
        assert_eq!(seen, vec!["id:B holder:B"; 6]);
    }

    #[test]
    fn error_in_a_simple_query_ends_it_at_ready_for_query() {
        let mut r = Results::default();
        send(
            &mut r,
            &[query("select 1; select 1/0; select 2"), query("select 3")],
        );
        let seen = answer(
            &mut r,
            &[
                desc("a"),
                row(1),
                done("SELECT 1"),
                desc("b"),
                error(),
                ready(b'I'),
                desc("c"),
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["a:T", "c:T"]);
        assert!(!r.is_lost());
    }

    /// Bind's result-format codes: none = all text, one = all, n = each.
    #[test]
    fn described_statement_with_bind_formats() {
        let cases: &[(&[i16], &str)] = &[
            (&[], "id:T holder:T"),
            (&[0], "id:T holder:T"),
            (&[1], "id:B holder:B"),
            (&[1, 0], "id:B holder:T"),
            (&[0, 1], "id:T holder:B"),
        ];
        for (formats, expected) in cases {
            let mut r = Results::default();
            send(
                &mut r,
                &[
                    parse("s1", "select id, holder from cards"),
                    describe(S, "s1"),
                    F::Sync,
                    bind("", "s1", formats),
                    execute("", 0),
                    F::Sync,
                ],
            );
            let seen = answer(
                &mut r,
                &[
                    B::ParseComplete,
                    B::ParameterDescription(vec![]),
                    desc("id holder"),
                    ready(b'I'),
                    B::BindComplete,
                    row(2),
                    done("SELECT 1"),
                    ready(b'I'),
                ],
            );
            assert_eq!(seen, [*expected], "formats {formats:?}");
        }
    }

    /// libpq's PQexecParams: Parse, Bind, Describe P, Execute, Sync.
    #[test]
    fn portal_description_gives_the_real_formats() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("", "select id, holder from cards"),
                bind("", "", &[1, 0]),
                describe(P, ""),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::BindComplete,
                desc("id:1 holder:0"),
                row(2),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["id:B holder:T"]);
    }

    /// tokio-postgres' query_typed: Describe S comes after Bind.
    #[test]
    fn statement_described_after_bind_still_resolves_the_portal() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("", "select id, holder from cards"),
                bind("", "", &[1]),
                describe(S, ""),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::BindComplete,
                B::ParameterDescription(vec![]),
                desc("id holder"),
                row(2),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["id:B holder:B"]);
    }

    #[test]
    fn execute_without_any_description_is_unknown() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("", "select id from cards"),
                bind("", "", &[]),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::BindComplete,
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["?"]);
        assert!(!r.is_lost(), "unknown is not lost");
    }

    /// A statement prepared once (and described once) is reused by later
    /// batches without Describe, as pgjdbc and tokio-postgres do.
    #[test]
    fn named_statement_reused_across_batches() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("s1", "select holder from cards"),
                describe(S, "s1"),
                F::Sync,
            ],
        );
        answer(
            &mut r,
            &[
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder"),
                ready(b'I'),
            ],
        );
        for formats in [&[1][..], &[0][..], &[1][..]] {
            send(&mut r, &[bind("", "s1", formats), execute("", 0), F::Sync]);
            let seen = answer(
                &mut r,
                &[B::BindComplete, row(1), done("SELECT 1"), ready(b'I')],
            );
            let expected = if formats == [1] {
                "holder:B"
            } else {
                "holder:T"
            };
            assert_eq!(seen, [expected]);
        }
    }

    /// The unnamed statement is redefined by every Parse: a description of
    /// an earlier definition never applies to a later one, and a portal
    /// keeps the definition it was bound from.
    #[test]
    fn unnamed_statement_redefinitions_are_kept_apart() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("", "select holder from cards"),
                describe(S, ""),
                F::Sync,
                // Redefined, never described: unknown.
                parse("", "select pan, holder from cards"),
                bind("", "", &[]),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder"),
                ready(b'I'),
                B::ParseComplete,
                B::BindComplete,
                row(2),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["?"]);

        // Bound from definition 1, then the name is redefined and
        // described before the portal runs: the portal is definition 1's.
        send(
            &mut r,
            &[
                parse("", "select holder from cards"),
                describe(S, ""),
                bind("p", "", &[]),
                parse("", "select id, pan, holder from cards"),
                describe(S, ""),
                execute("p", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder"),
                B::BindComplete,
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("id pan holder"),
                row(1),
                done("SELECT 1"),
                ready(b'T'),
            ],
        );
        assert_eq!(seen, ["holder:T"]);
    }

    /// A pipeline of several batches sent before any answer.
    #[test]
    fn pipelined_batches_each_get_their_own_columns() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("a", "select id from t"),
                describe(S, "a"),
                parse("b", "select holder, pan from t"),
                describe(S, "b"),
                F::Sync,
                bind("", "a", &[1]),
                execute("", 0),
                F::Sync,
                bind("", "b", &[]),
                execute("", 0),
                F::Sync,
                query("select 42 as answer"),
                bind("", "a", &[]),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("id"),
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder pan"),
                ready(b'I'),
                B::BindComplete,
                row(1),
                row(1),
                done("SELECT 2"),
                ready(b'I'),
                B::BindComplete,
                row(2),
                done("SELECT 1"),
                ready(b'I'),
                desc("answer"),
                row(1),
                done("SELECT 1"),
                ready(b'I'),
                B::BindComplete,
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["id:B", "id:B", "holder:T pan:T", "answer:T", "id:T"]);
        assert!(!r.is_lost());
    }

    /// After an error the database discards up to Sync: what it skipped
    /// (here a Parse that would redefine "s1", and a Query) has no effect
    /// and expects no answer.
    #[test]
    fn error_mid_batch_discards_up_to_sync() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("s1", "select holder from t"),
                describe(S, "s1"),
                F::Sync,
                bind("", "s1", &[]),
                execute("", 0),
                close(S, "s1"),
                parse("s1", "select pan, holder from t"),
                query("select 1"),
                bind("", "s1", &[]),
                execute("", 0),
                F::Sync,
                bind("", "s1", &[1]),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder"),
                ready(b'I'),
                B::BindComplete,
                row(1),
                error(), // division by zero in the second row
                ready(b'I'),
                B::BindComplete,
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["holder:T", "holder:B"]);
        assert!(!r.is_lost());
    }

    /// An error answering Sync itself (a deferred constraint failing at
    /// the implicit commit) starts no discarding.
    #[test]
    fn error_at_sync_is_followed_by_ready_for_query() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("", "insert ..."),
                bind("", "", &[]),
                execute("", 0),
                F::Sync,
                query("select 1 as one"),
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::BindComplete,
                done("INSERT 0 1"),
                error(),
                ready(b'I'),
                desc("one"),
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["one:T"]);
        assert!(!r.is_lost());
    }

    /// A server-side cursor: Execute with a row limit, PortalSuspended,
    /// resumed in later batches of the same transaction.
    #[test]
    fn suspended_portal_keeps_its_columns_until_the_transaction_ends() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                query("begin"),
                parse("s", "select id, holder from generate_series(1,10)"),
                describe(S, "s"),
                F::Sync,
                bind("c", "s", &[1]),
                F::Sync,
            ],
        );
        answer(
            &mut r,
            &[
                done("BEGIN"),
                ready(b'T'),
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("id holder"),
                ready(b'T'),
                B::BindComplete,
                ready(b'T'),
            ],
        );
        let mut seen = Vec::new();
        for last in [false, false, false, true] {
            send(&mut r, &[execute("c", 3), F::Sync]);
            let rows = if last { 1 } else { 3 };
            let mut msgs = vec![row(2); rows];
            msgs.push(if last {
                done("SELECT 1")
            } else {
                B::PortalSuspended
            });
            msgs.push(ready(b'T'));
            seen.extend(answer(&mut r, &msgs));
        }
        assert_eq!(seen, vec!["id:B holder:B"; 10]);
        // The transaction ends: the portal is gone.
        send(&mut r, &[query("commit"), execute("c", 3), F::Sync]);
        let seen = answer(
            &mut r,
            &[
                done("COMMIT"),
                ready(b'I'),
                row(2),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["?"]);
    }

    #[test]
    fn portals_are_dropped_at_transaction_end_and_by_close() {
        let mut r = Results::default();
        let setup = |r: &mut Results| {
            send(
                r,
                &[
                    parse("s", "select holder from t"),
                    describe(S, "s"),
                    bind("p", "s", &[]),
                    F::Sync,
                ],
            );
            answer(
                r,
                &[
                    B::ParseComplete,
                    B::ParameterDescription(vec![]),
                    desc("holder"),
                    B::BindComplete,
                    ready(b'T'),
                ],
            );
        };
        let run = |r: &mut Results| {
            send(r, &[execute("p", 0), F::Sync]);
            answer(r, &[row(1), done("SELECT 1"), ready(b'T')])
        };
        setup(&mut r);
        assert_eq!(run(&mut r), ["holder:T"]);
        // Close P.
        send(&mut r, &[close(P, "p"), F::Sync]);
        answer(&mut r, &[B::CloseComplete, ready(b'T')]);
        assert_eq!(run(&mut r), ["?"]);
        // Close S closes the portals made from it.
        send(&mut r, &[close(S, "s"), F::Sync]);
        answer(&mut r, &[B::CloseComplete, ready(b'T')]);
        setup(&mut r);
        send(&mut r, &[close(S, "s"), F::Sync]);
        answer(&mut r, &[B::CloseComplete, ready(b'T')]);
        assert_eq!(run(&mut r), ["?"]);
        // SQL that ends the transaction or closes cursors behind the
        // protocol's back.
        for tag in ["COMMIT", "ROLLBACK", "CLOSE CURSOR ALL", "DISCARD ALL"] {
            send(&mut r, &[close(S, "s"), F::Sync]);
            answer(&mut r, &[B::CloseComplete, ready(b'T')]);
            setup(&mut r);
            send(&mut r, &[query("…")]);
            answer(&mut r, &[done(tag), ready(b'T')]);
            assert_eq!(run(&mut r), ["?"], "{tag}");
        }
    }

    #[test]
    fn simple_query_destroys_the_unnamed_statement_and_deallocate_forgets() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("", "select holder from t"),
                describe(S, ""),
                parse("n", "select holder from t"),
                describe(S, "n"),
                F::Sync,
                query("select 1"),
            ],
        );
        answer(
            &mut r,
            &[
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder"),
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder"),
                ready(b'I'),
                desc("x"),
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        // The unnamed statement is gone (a Bind on it would fail anyway);
        // "n" is still known.
        assert!(!r.statements.contains_key(""));
        send(&mut r, &[bind("", "n", &[]), execute("", 0), F::Sync]);
        let seen = answer(
            &mut r,
            &[B::BindComplete, row(1), done("SELECT 1"), ready(b'I')],
        );
        assert_eq!(seen, ["holder:T"]);
        // DEALLOCATE (which one, the tag does not say) forgets them all.
        send(
            &mut r,
            &[
                query("deallocate n"),
                bind("", "n", &[]),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                done("DEALLOCATE"),
                ready(b'I'),
                B::BindComplete,
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["?"]);
    }

    /// A statement prepared with SQL PREPARE is known once described.
    #[test]
    fn sql_prepared_statement_is_known_once_described() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                query("prepare q as select holder from t"),
                describe(S, "q"),
                bind("", "q", &[1]),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                done("PREPARE"),
                ready(b'I'),
                B::ParameterDescription(vec![]),
                desc("holder"),
                B::BindComplete,
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["holder:B"]);
    }

    #[test]
    fn copy_out_data_gets_the_copy_format() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                query("copy t to stdout"),
                query("copy t to stdout (format binary)"),
            ],
        );
        let seen = answer(
            &mut r,
            &[
                copy_out(0, 2),
                data("1\tada\n"),
                data("2\tbob\n"),
                B::CopyDone,
                done("COPY 2"),
                ready(b'I'),
                copy_out(1, 2),
                data("PGCOPY"),
                B::CopyDone,
                done("COPY 2"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["copy:T", "copy:T", "copy:B"]);
        // Extended protocol: Execute of a COPY.
        send(
            &mut r,
            &[
                parse("", "copy t to stdout"),
                bind("", "", &[]),
                describe(P, ""),
                execute("", 0),
                F::Sync,
                query("select 1 as one"),
            ],
        );
        let seen = answer(
            &mut r,
            &[
                B::ParseComplete,
                B::BindComplete,
                B::NoData,
                copy_out(0, 2),
                data("1\tada\n"),
                B::CopyDone,
                done("COPY 1"),
                ready(b'I'),
                desc("one"),
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["copy:T", "one:T"]);
        assert!(!r.is_lost());
    }

    /// libpq and tokio-postgres send Sync with the Execute of a COPY FROM
    /// STDIN, then the data, CopyDone (or CopyFail) and another Sync. The
    /// database ignores the first Sync during the copy.
    #[test]
    fn copy_in_ignores_the_sync_sent_before_the_data() {
        for (end, ok) in [(F::CopyDone, true), (F::CopyFail("no".into()), false)] {
            let mut r = Results::default();
            send(
                &mut r,
                &[
                    parse("", "copy t from stdin"),
                    bind("", "", &[]),
                    describe(P, ""),
                    execute("", 0),
                    F::Sync,
                ],
            );
            answer(
                &mut r,
                &[B::ParseComplete, B::BindComplete, B::NoData, copy_in()],
            );
            send(
                &mut r,
                &[
                    F::CopyData(Bytes::from_static(b"1\n")),
                    F::CopyData(Bytes::from_static(b"2\n")),
                    end,
                    F::Sync,
                    query("select 1 as one"),
                ],
            );
            let outcome = if ok { done("COPY 2") } else { error() };
            let seen = answer(
                &mut r,
                &[
                    outcome,
                    ready(b'I'),
                    desc("one"),
                    row(1),
                    done("SELECT 1"),
                    ready(b'I'),
                ],
            );
            assert_eq!(seen, ["one:T"], "copy ok: {ok}");
            assert!(!r.is_lost());
            assert!(r.queue.is_empty());
        }
        // Simple query: no Sync at all.
        let mut r = Results::default();
        send(
            &mut r,
            &[
                query("copy t from stdin"),
                F::CopyData(Bytes::from_static(b"1\n")),
                F::CopyDone,
                query("select 1 as one"),
            ],
        );
        let seen = answer(
            &mut r,
            &[
                copy_in(),
                done("COPY 1"),
                ready(b'I'),
                desc("one"),
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["one:T"]);
        assert!(!r.is_lost() && r.queue.is_empty());
    }

    /// What pipeline.rs sends for refusals: a Query in place of a refused
    /// Query or FunctionCall, a Parse "sluice_refused" in place of a
    /// refused Parse or Bind; the database fails each with an error.
    #[test]
    fn poison_statements_fail_where_the_refused_ones_stood() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                query("SLUICE_REFUSED_X_1"),
                parse("s", "select holder from t"),
                describe(S, "s"),
                F::Sync,
                // A refused Bind: the rest of its batch is discarded.
                parse("sluice_refused", "SLUICE_REFUSED_X_2"),
                execute("", 0),
                F::Sync,
                bind("", "s", &[1]),
                execute("", 0),
                F::Sync,
            ],
        );
        let seen = answer(
            &mut r,
            &[
                error(),
                ready(b'I'),
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder"),
                ready(b'I'),
                error(),
                ready(b'I'),
                B::BindComplete,
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["holder:B"]);
        assert!(!r.statements.contains_key("sluice_refused"));
        assert!(!r.is_lost());
    }

    #[test]
    fn function_call_and_asynchronous_messages() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                F::FunctionCall {
                    oid: 1598,
                    arg_formats: vec![],
                    args: vec![],
                    result_format: 1,
                },
                query("select holder from t"),
            ],
        );
        let notice = B::NoticeResponse(vec![(b'M', "hi".into())]);
        let notification = B::NotificationResponse {
            pid: 1,
            channel: "c".into(),
            payload: "p".into(),
        };
        let status = B::ParameterStatus {
            name: "TimeZone".into(),
            value: "UTC".into(),
        };
        let seen = answer(
            &mut r,
            &[
                notice.clone(),
                B::FunctionCallResponse(None),
                ready(b'I'),
                status,
                desc("holder"),
                notice,
                row(1),
                notification.clone(),
                row(1),
                done("SELECT 2"),
                ready(b'I'),
                notification,
            ],
        );
        assert_eq!(seen, ["holder:T", "holder:T"]);
        assert!(!r.is_lost());
    }

    /// A frame that does not fit the queue means this model is wrong:
    /// everything is unknown (and forgotten) until nothing is outstanding.
    #[test]
    fn lost_track_fails_closed_until_nothing_is_outstanding() {
        let mut r = Results::default();
        send(
            &mut r,
            &[
                parse("s", "select holder from t"),
                describe(S, "s"),
                F::Sync,
            ],
        );
        answer(
            &mut r,
            &[
                B::ParseComplete,
                B::ParameterDescription(vec![]),
                desc("holder"),
                ready(b'I'),
            ],
        );
        send(&mut r, &[query("select holder from t"), query("select 2")]);
        // A BindComplete nobody asked for.
        let seen = answer(
            &mut r,
            &[
                B::BindComplete,
                desc("holder"),
                row(1),
                done("SELECT 1"),
                ready(b'I'),
            ],
        );
        assert_eq!(seen, ["?"]);
        assert!(r.is_lost() && r.statements.is_empty());
        let seen = answer(
            &mut r,
            &[desc("two"), row(1), done("SELECT 1"), ready(b'I')],
        );
        assert_eq!(seen, ["?"]);
        // Nothing outstanding any more: found again.
        assert!(!r.is_lost());
        send(&mut r, &[query("select 3")]);
        let seen = answer(
            &mut r,
            &[desc("three"), row(1), done("SELECT 1"), ready(b'I')],
        );
        assert_eq!(seen, ["three:T"]);
    }

    #[test]
    fn a_row_that_does_not_match_its_description_is_unknown() {
        let mut r = Results::default();
        send(&mut r, &[query("select a, b")]);
        let seen = answer(&mut r, &[desc("a b"), row(2), row(3), row(2)]);
        assert_eq!(seen, ["a:T b:T", "?", "?"]);
        assert!(r.is_lost());
    }

    #[test]
    fn malformed_bodies_are_codec_errors() {
        for (tag, body) in [
            (b'T', &b"\x00\x01col"[..]),
            (b'D', b"\x00"),
            (b'Z', b""),
            (b'H', b"\x00\x00"),
        ] {
            let mut r = Results::default();
            r.push(Request::Query);
            assert!(
                matches!(r.response(tag, body), Err(CodecError::Malformed { .. })),
                "{}",
                tag as char
            );
        }
    }
}
