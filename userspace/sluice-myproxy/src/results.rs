//! The database's answers, followed packet by packet and passed to the
//! client — through the rewrite hook for every row and error.
//!
//! A text result set is a column count, that many column definitions, an
//! EOF (unless `CLIENT_DEPRECATE_EOF`), rows, and an EOF or OK ending it;
//! its status says whether another result follows (multi-statements,
//! procedures). Binary result sets (prepared statements) have the same
//! shape with binary rows, which the rewriter sees in their text form
//! (what the text protocol would have sent): a string value it replaces
//! is re-encoded in place, any other replaced value becomes NULL, so the
//! row stays valid for its column types. An execute that opens a cursor
//! (`CURSOR_TYPE_READ_ONLY`) answers with the column definitions only;
//! its rows come, masked alike, with each COM_STMT_FETCH. Each column
//! carries its origin (database, table, column) from the definition,
//! which lets masking confirm lineage by name whatever the query called
//! the column.
//!
//! A `LOCAL INFILE` request from the database (which sluice never lets a
//! client agree to) is answered with an empty file and the client gets an
//! error; the client's files are never read.
use std::{borrow::Cow, time::Instant};

use sluice_mywire::{
    Packet, caps,
    command::PrepareOk,
    response::{self, ColumnDef, ErrPacket, OkPacket},
    types,
};
use sluice_pgproxy::{Column, ColumnOrigin, Format, Rewrite};

use crate::{
    MyError, codes, record,
    record::Tally,
    session::{Prepared, Session},
    startup,
};

/// What a command's answer looks like.
pub(crate) enum Answer {
    /// One packet: OK, ERR, EOF or a string (COM_STATISTICS).
    Simple,
    /// Text result sets or OKs, several with multi-statements.
    Query,
    /// A prepared statement's execution: binary result sets or OKs.
    Execute(u32),
    /// Rows of an open cursor.
    Fetch(u32),
    /// COM_FIELD_LIST: column definitions ending in EOF.
    FieldList,
    /// COM_STMT_PREPARE (with its text): PREPARE_OK and definitions.
    Prepare(String),
}

/// How a result set ended.
enum End {
    /// OK or EOF, with the server status.
    Done(u16),
    /// ERR: nothing more follows.
    Failed,
}

impl Session<'_> {
    /// Relay the answer to the command just sent. `statement` is its event
    /// (outcomes are recorded against it).
    pub(crate) async fn answer(
        &mut self,
        answer: Answer,
        statement: Option<u32>,
        sent: Instant,
    ) -> Result<(), MyError> {
        match answer {
            Answer::Simple => {
                let p = self.up().await?;
                if response::is_err(&p.payload) {
                    self.error(&p, statement, Tally::default(), sent)?;
                } else {
                    self.pass(&p);
                }
            }
            Answer::FieldList => loop {
                let p = self.up().await?;
                let last = response::is_eof(&p.payload) || response::is_err(&p.payload);
                self.pass(&p);
                if last {
                    break;
                }
                self.flush_if_full().await?;
            },
            Answer::Prepare(sql) => self.prepare(sql).await?,
            Answer::Query => self.results(statement, sent, None).await?,
            Answer::Execute(id) => self.results(statement, sent, Some(id)).await?,
            Answer::Fetch(id) => {
                let defs = self
                    .stmts
                    .get(&id)
                    .map(|s| s.columns.clone())
                    .unwrap_or_default();
                self.rows(statement, sent, &defs, true).await?;
            }
        }
        self.flush().await
    }

    /// Result sets (or OKs) until one says no more follow.
    async fn results(
        &mut self,
        statement: Option<u32>,
        sent: Instant,
        binary: Option<u32>,
    ) -> Result<(), MyError> {
        // Bounded by the database: each result is read whole.
        loop {
            let first = self.up().await?;
            match first.payload.first() {
                Some(0x00) => {
                    let ok = OkPacket::parse(&first.payload, self.caps).map_err(|source| {
                        MyError::Protocol {
                            leg: "upstream",
                            source,
                        }
                    })?;
                    self.pass(&first);
                    self.outcome(record::ok(
                        statement,
                        Some(&ok),
                        Tally::default(),
                        micros(sent),
                    ));
                    if ok.status & response::status::MORE_RESULTS_EXISTS == 0 {
                        return Ok(());
                    }
                }
                Some(0xFF) => return self.error(&first, statement, Tally::default(), sent),
                Some(0xFB) if binary.is_none() => return self.local_infile(first, statement).await,
                _ => {
                    let n = response::column_count(&first.payload).map_err(|source| {
                        MyError::Protocol {
                            leg: "upstream",
                            source,
                        }
                    })?;
                    self.pass(&first);
                    let mut defs = Vec::with_capacity(n.min(4096) as usize);
                    for _ in 0..n {
                        let p = self.up().await?;
                        defs.push(ColumnDef::parse(&p.payload).map_err(|source| {
                            MyError::Protocol {
                                leg: "upstream",
                                source,
                            }
                        })?);
                        self.pass(&p);
                    }
                    let mut cursor = false;
                    if self.caps & caps::DEPRECATE_EOF == 0 {
                        let eof = self.up().await?;
                        cursor = binary.is_some()
                            && status_of(&eof.payload, self.caps) & response::status::CURSOR_EXISTS
                                != 0;
                        self.pass(&eof);
                    }
                    if let Some(id) = binary
                        && let Some(stmt) = self.stmts.get_mut(&id)
                    {
                        stmt.columns = defs.clone();
                    }
                    if cursor {
                        // An execute that opened a cursor
                        // (CURSOR_TYPE_READ_ONLY): its EOF says so, and
                        // no rows follow; they come with COM_STMT_FETCH.
                        // (Under CLIENT_DEPRECATE_EOF that EOF is the OK
                        // that `rows` reads as the end of an empty result.)
                        let tally = Tally {
                            columns: defs
                                .iter()
                                .map(|d| String::from_utf8_lossy(&d.name).into_owned())
                                .collect(),
                            ..Tally::default()
                        };
                        self.outcome(record::ok(statement, None, tally, micros(sent)));
                        return Ok(());
                    }
                    match self.rows(statement, sent, &defs, binary.is_some()).await? {
                        End::Done(status)
                            if status & response::status::MORE_RESULTS_EXISTS != 0 => {}
                        _ => return Ok(()),
                    }
                }
            }
            self.flush_if_full().await?;
        }
    }

    /// Rows until the result's end, each through the rewriter.
    async fn rows(
        &mut self,
        statement: Option<u32>,
        sent: Instant,
        defs: &[ColumnDef],
        binary: bool,
    ) -> Result<End, MyError> {
        let columns: Vec<Column> = defs.iter().map(column).collect();
        let mut tally = Tally {
            columns: columns.iter().map(|c| c.name.clone()).collect(),
            ..Tally::default()
        };
        loop {
            let p = self.up().await?;
            if self.ends_result(&p.payload) {
                let status = status_of(&p.payload, self.caps);
                self.pass(&p);
                if let Some(rw) = self.rewriter.as_mut() {
                    tally.masked = rw.end_of_result(false);
                }
                let rows = tally.rows;
                let mut event = record::ok(statement, None, tally, micros(sent));
                if let sluice_store::event::Event::Outcome(o) = &mut event {
                    o.rows = Some(rows);
                }
                self.outcome(event);
                return Ok(End::Done(status));
            }
            if response::is_err(&p.payload) {
                if let Some(rw) = self.rewriter.as_mut() {
                    tally.masked = rw.end_of_result(false);
                }
                self.error(&p, statement, tally, sent)?;
                return Ok(End::Failed);
            }
            tally.rows += 1;
            tally.bytes += p.payload.len() as u64;
            self.row(&p, &columns, defs, binary)?;
            self.flush_if_full().await?;
        }
    }

    /// Whether a packet inside a result set ends it (EOF, or OK with the
    /// EOF header under `CLIENT_DEPRECATE_EOF`) rather than being a row.
    fn ends_result(&self, payload: &[u8]) -> bool {
        if payload.first() != Some(&0xFE) {
            return false;
        }
        if self.caps & caps::DEPRECATE_EOF != 0 {
            payload.len() < sluice_mywire::packet::MAX_CHUNK
        } else {
            payload.len() < 9
        }
    }

    /// One row, masked as the rewriter says.
    fn row(
        &mut self,
        p: &Packet,
        columns: &[Column],
        defs: &[ColumnDef],
        binary: bool,
    ) -> Result<(), MyError> {
        let Some(rw) = self.rewriter.as_mut() else {
            self.pass(p);
            return Ok(());
        };
        let bad = |source| MyError::Protocol {
            leg: "upstream",
            source,
        };
        let raw = if binary {
            response::binary_row(&p.payload, defs).map_err(bad)?
        } else {
            response::text_row(&p.payload, defs.len()).map_err(bad)?
        };
        // The rewriter sees text: the binary protocol's values rendered as
        // the text protocol would send them.
        let text: Vec<Option<Cow<'_, [u8]>>> = if binary {
            raw.iter()
                .zip(defs)
                .map(|(v, d)| {
                    v.map(|v| {
                        if types::is_text_like(d.column_type) {
                            Cow::Borrowed(v)
                        } else {
                            Cow::Owned(
                                response::binary_value_text(d, v)
                                    .unwrap_or_default()
                                    .into_bytes(),
                            )
                        }
                    })
                })
                .collect()
        } else {
            raw.iter().map(|v| v.map(Cow::Borrowed)).collect()
        };
        let refs: Vec<Option<&[u8]>> = text.iter().map(|v| v.as_deref()).collect();
        match rw.data_row(Some(columns), &refs) {
            Rewrite::Keep => self.pass(p),
            Rewrite::Replace(values) => {
                if values.len() != defs.len() {
                    return Err(self.end(format!(
                        "the masking rewriter returned {} values for a row of {}",
                        values.len(),
                        defs.len()
                    )));
                }
                let payload = if binary {
                    let out: Vec<Option<&[u8]>> = values
                        .iter()
                        .zip(defs)
                        .zip(&raw)
                        .zip(&refs)
                        .map(|(((new, d), old), shown)| match (new, shown) {
                            (Some(n), Some(s)) if n.as_ref() == *s => *old,
                            (None, None) => None,
                            (Some(n), _) if types::is_text_like(d.column_type) => Some(n.as_ref()),
                            // A number or date the rewriter changed: its
                            // masked form is not a valid value of the type.
                            _ => None,
                        })
                        .collect();
                    response::encode_binary_row(defs, &out)
                } else {
                    let out: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
                    response::encode_text_row(&out)
                };
                self.put(&payload);
            }
            Rewrite::End(message) => return Err(self.end(message)),
        }
        Ok(())
    }

    /// A rewriter ended the session: the client is told why after what it
    /// already has; nothing unrewritten follows.
    fn end(&mut self, message: String) -> MyError {
        self.err(codes::DENIED, "HY000", &format!("sluice: {message}"));
        MyError::Ended(message)
    }

    /// An ERR from the database, passed through the rewriter (the message
    /// may echo a value) and recorded.
    fn error(
        &mut self,
        p: &Packet,
        statement: Option<u32>,
        tally: Tally,
        sent: Instant,
    ) -> Result<(), MyError> {
        let err = ErrPacket::parse(&p.payload).map_err(|source| MyError::Protocol {
            leg: "upstream",
            source,
        })?;
        let fields = vec![
            (b'C', String::from_utf8_lossy(&err.sql_state).into_owned()),
            (b'M', err.message.clone()),
        ];
        let sent_err = match self.rewriter.as_mut().map(|rw| rw.error(&fields)) {
            None | Some(Rewrite::Keep) => {
                self.pass(p);
                err
            }
            Some(Rewrite::Replace(f)) => {
                let get = |code: u8| f.iter().find(|(c, _)| *c == code).map(|(_, v)| v.clone());
                let state = get(b'C')
                    .unwrap_or_else(|| String::from_utf8_lossy(&err.sql_state).into_owned());
                let replaced = ErrPacket::new(err.code, &state, get(b'M').unwrap_or_default());
                self.put(&replaced.encode());
                replaced
            }
            Some(Rewrite::End(message)) => return Err(self.end(message)),
        };
        self.outcome(record::error(statement, &sent_err, tally, micros(sent)));
        Ok(())
    }

    /// The database asked for a client file: it gets an empty one, the
    /// client an error.
    async fn local_infile(
        &mut self,
        request: Packet,
        statement: Option<u32>,
    ) -> Result<(), MyError> {
        let mut empty = bytes::BytesMut::new();
        sluice_mywire::packet::encode(request.seq.wrapping_add(1), &[], &mut empty);
        startup::write(&mut self.upstream, &empty, "upstream").await?;
        let reply = self.up().await?;
        let more = reply.payload.first() == Some(&0x00)
            && OkPacket::parse(&reply.payload, self.caps)
                .is_ok_and(|ok| ok.status & response::status::MORE_RESULTS_EXISTS != 0);
        let err = ErrPacket::new(
            codes::NOT_SUPPORTED,
            "42000",
            "sluice: LOAD DATA LOCAL INFILE is not allowed through sluice (files on the client are never sent)".to_owned(),
        );
        self.put(&err.encode());
        self.outcome(record::error(statement, &err, Tally::default(), 0));
        if more {
            // The client stopped at the error; the database has more to
            // say. The two cannot be brought back in step.
            self.flush().await?;
            return Err(MyError::Ended(
                "results followed a refused LOCAL INFILE in a multi-statement query".into(),
            ));
        }
        Ok(())
    }

    /// COM_STMT_PREPARE's answer: PREPARE_OK, parameter and column
    /// definitions (each list followed by EOF unless deprecated).
    async fn prepare(&mut self, sql: String) -> Result<(), MyError> {
        let first = self.up().await?;
        if response::is_err(&first.payload) {
            return self.error(&first, None, Tally::default(), Instant::now());
        }
        let ok = PrepareOk::parse(&first.payload).map_err(|source| MyError::Protocol {
            leg: "upstream",
            source,
        })?;
        self.pass(&first);
        let eof = self.caps & caps::DEPRECATE_EOF == 0;
        for _ in 0..ok.params {
            let p = self.up().await?;
            self.pass(&p);
        }
        if ok.params > 0 && eof {
            let p = self.up().await?;
            self.pass(&p);
        }
        let mut columns = Vec::with_capacity(ok.columns as usize);
        for _ in 0..ok.columns {
            let p = self.up().await?;
            columns.push(
                ColumnDef::parse(&p.payload).map_err(|source| MyError::Protocol {
                    leg: "upstream",
                    source,
                })?,
            );
            self.pass(&p);
        }
        if ok.columns > 0 && eof {
            let p = self.up().await?;
            self.pass(&p);
        }
        self.stmts.insert(
            ok.statement_id,
            Prepared {
                sql,
                params: ok.params as usize,
                types: Vec::new(),
                long: vec![None; ok.params as usize],
                columns,
            },
        );
        Ok(())
    }

    /// The next packet from the database.
    async fn up(&mut self) -> Result<Packet, MyError> {
        startup::read(&mut self.upstream, &mut self.ubuf, self.max, "upstream").await
    }

    async fn flush_if_full(&mut self) -> Result<(), MyError> {
        if self.out.len() >= 64 * 1024 {
            self.flush().await?;
        }
        Ok(())
    }

    fn outcome(&self, event: sluice_store::event::Event) {
        if let Some(log) = self.ctx.log {
            log.record(&event);
        }
    }
}

/// The status flags of a result's last packet (EOF or OK).
fn status_of(payload: &[u8], capabilities: u64) -> u16 {
    if payload.len() < 9 && payload.len() >= 5 {
        // EOF: header, warnings, status.
        u16::from_le_bytes([payload[3], payload[4]])
    } else {
        OkPacket::parse(payload, capabilities).map_or(0, |ok| ok.status)
    }
}

fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}

/// A column as the rewrite hook sees it. The type is given as the
/// PostgreSQL type that behaves alike for masking: strings as text (a
/// masked form is still a valid value), everything else as numbers or
/// dates (a masked form is not, and becomes NULL).
fn column(d: &ColumnDef) -> Column {
    let type_oid = match d.column_type {
        t if types::is_text_like(t) => 25,
        types::TINY | types::SHORT | types::LONG | types::INT24 | types::LONGLONG | types::YEAR => {
            20
        }
        types::FLOAT | types::DOUBLE => 701,
        types::DECIMAL | types::NEWDECIMAL => 1700,
        types::DATE => 1082,
        types::TIME => 1083,
        _ => 1114,
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Column {
        name: text(&d.name),
        table_oid: 0,
        column: 0,
        type_oid,
        type_size: -1,
        type_modifier: -1,
        format: Format::Text,
        origin: (!d.org_table.is_empty() && !d.org_name.is_empty()).then(|| ColumnOrigin {
            schema: text(&d.schema),
            table: text(&d.org_table),
            column: text(&d.org_name),
        }),
    }
}
