//! A ready session: the client's commands, one at a time.
//!
//! MySQL is half-duplex — a client sends one command and reads its whole
//! answer before the next — so one task runs the session: read a command,
//! decide it, forward it (once its statement event is durable in the
//! store), relay the answer through `results.rs`, and read the next.
//!
//! Every statement passes the decide hook: COM_QUERY text (which may hold
//! several statements; the policy decides them all), COM_STMT_EXECUTE with
//! its decoded parameters (the text was seen at COM_STMT_PREPARE, which
//! runs nothing and is forwarded as is), COM_INIT_DB as `USE`,
//! COM_FIELD_LIST as `SHOW COLUMNS`, COM_PROCESS_INFO as `SHOW
//! PROCESSLIST`. A refusal is an ERR packet (1142, SQLSTATE 42000, naming
//! the rule) and the session goes on. `KILL [QUERY] n` is decided by
//! sluice: allowed for threads of the identity's own sessions
//! ([`crate::kill`]), refused otherwise. COM_CHANGE_USER is relayed like
//! a login and the session goes on under a policy made for the new user
//! (`change_user.rs`; refused with credential injection). Commands sluice
//! cannot inspect (binlog and replication commands) are refused with a
//! clear error; the database never sees them.
use std::{collections::HashMap, sync::Arc, time::Instant};

use bytes::{Bytes, BytesMut};
use sluice_mywire::{
    CodecError, Packet,
    command::{Command, Execute},
    response::{ColumnDef, ErrPacket},
};
use sluice_pgproxy::{
    Decision, Metrics, Route, SessionConfig, SessionPolicy, Settled, Statement, Summary, io::Conn,
};
use sluice_store::{SessionLog, event::Param};
use tokio::{io::AsyncReadExt, sync::Notify};

use crate::{
    KillRegistry, MyError, codes,
    kill::{KillCheck, kill_target},
    record,
    results::Answer,
    startup::{self, Ready},
};

/// Client input buffered while a statement is held for approval.
const HOLD_BUFFER: usize = 1024 * 1024;

/// What a session needs from its surroundings.
pub(crate) struct Context<'a> {
    pub(crate) config: &'a SessionConfig,
    pub(crate) log: Option<&'a SessionLog>,
    pub(crate) kills: &'a KillRegistry,
    pub(crate) route: &'a Route<'a>,
    /// Woken by a permitted `KILL` of this session's thread.
    pub(crate) killed: Arc<Notify>,
}

/// A prepared statement, as far as sluice needs it.
#[derive(Default)]
pub(crate) struct Prepared {
    pub(crate) sql: String,
    pub(crate) params: usize,
    /// Parameter types from the last execute that sent them.
    pub(crate) types: Vec<(u8, bool)>,
    /// Parameters sent with COM_STMT_SEND_LONG_DATA since the last
    /// execute or reset, with their lengths.
    pub(crate) long: Vec<Option<usize>>,
    /// The columns of its result (from the prepare answer, updated by
    /// each execute's answer), for COM_STMT_FETCH.
    pub(crate) columns: Vec<ColumnDef>,
}

/// One session's state.
pub(crate) struct Session<'a> {
    pub(crate) client: Conn,
    pub(crate) upstream: Conn,
    pub(crate) cbuf: BytesMut,
    pub(crate) ubuf: BytesMut,
    pub(crate) caps: u64,
    pub(crate) policy: Box<dyn SessionPolicy>,
    pub(crate) rewriter: Option<Box<dyn sluice_pgproxy::Rewriter>>,
    pub(crate) ctx: Context<'a>,
    pub(crate) stmts: HashMap<u32, Prepared>,
    /// Bytes for the client, written at the end of each answer or when
    /// large.
    pub(crate) out: BytesMut,
    /// The next sequence id of the answer being sent to the client.
    pub(crate) cseq: u8,
    pub(crate) max: usize,
    pub(crate) summary: &'a mut Summary,
}

pub(crate) async fn run(
    ready: Ready,
    ctx: Context<'_>,
    summary: &mut Summary,
) -> Result<(), MyError> {
    let Ready {
        client,
        upstream,
        cbuf,
        ubuf,
        caps,
        thread: _,
        mut policy,
    } = ready;
    let rewriter = policy.rewriter();
    let max = ctx.config.max_message;
    let mut s = Session {
        client,
        upstream,
        cbuf,
        ubuf,
        caps,
        policy,
        rewriter,
        ctx,
        stmts: HashMap::new(),
        out: BytesMut::with_capacity(64 * 1024),
        cseq: 1,
        max,
        summary,
    };
    loop {
        let packet = match startup::read(&mut s.client, &mut s.cbuf, s.max, "client").await {
            Ok(p) => p,
            Err(MyError::Io {
                leg: "client",
                source,
            }) if source.kind() == std::io::ErrorKind::UnexpectedEof && s.cbuf.is_empty() => {
                s.summary.end_reason = Some("client disconnected");
                return Ok(());
            }
            Err(MyError::Protocol {
                leg: "client",
                source: source @ CodecError::TooLarge { .. },
            }) => {
                // The rest of the packet cannot be skipped reliably: say
                // why and end.
                let message = format!("sluice: {source} (proxy.max_message_bytes)");
                s.cseq = 1;
                s.err(codes::TOO_LARGE, "08S01", &message);
                s.flush().await?;
                return Err(MyError::Ended(message));
            }
            Err(e) => return Err(e),
        };
        s.summary.bytes_up += packet.raw.len() as u64;
        s.cseq = packet.seq.wrapping_add(1);
        match s.command(packet).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(
                e @ MyError::Io {
                    leg: "upstream", ..
                },
            ) => {
                // The database went away (restart, crash, network): the
                // client hears it from sluice rather than from a reset.
                s.out.clear();
                s.err(
                    codes::LOST_DATABASE,
                    "08S01",
                    "sluice: lost the connection to the database",
                );
                let _ = s.flush().await;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
}

impl Session<'_> {
    /// One command and its answer; false when the session is over.
    async fn command(&mut self, packet: Packet) -> Result<bool, MyError> {
        let command = match Command::parse(&packet.payload) {
            Ok(c) => c,
            Err(e) => {
                self.err(
                    codes::MALFORMED,
                    "08S01",
                    &format!("sluice: malformed command: {e}"),
                );
                self.flush().await?;
                return Ok(true);
            }
        };
        match command {
            Command::Quit => {
                self.summary.end_reason = Some("client terminated");
                let _ = startup::write(&mut self.upstream, &packet.raw, "upstream").await;
                return Ok(false);
            }
            Command::Query(sql) => {
                let sql = String::from_utf8_lossy(sql).into_owned();
                match kill_target(&sql) {
                    Some((_, thread)) => self.kill(&packet, &sql, thread).await?,
                    None => {
                        self.statement(&packet, "query", &sql, &[], Vec::new(), Answer::Query)
                            .await?
                    }
                }
            }
            Command::InitDb(db) => {
                let sql = format!("USE `{}`", String::from_utf8_lossy(db).replace('`', "``"));
                self.statement(&packet, "init_db", &sql, &[], Vec::new(), Answer::Simple)
                    .await?;
            }
            Command::FieldList(body) => {
                let table = body.split(|b| *b == 0).next().unwrap_or_default();
                let sql = format!(
                    "SHOW COLUMNS FROM `{}`",
                    String::from_utf8_lossy(table).replace('`', "``")
                );
                self.statement(
                    &packet,
                    "field_list",
                    &sql,
                    &[],
                    Vec::new(),
                    Answer::FieldList,
                )
                .await?;
            }
            Command::ProcessInfo => {
                self.statement(
                    &packet,
                    "process_info",
                    "SHOW PROCESSLIST",
                    &[],
                    Vec::new(),
                    Answer::Query,
                )
                .await?;
            }
            Command::ProcessKill(thread) => {
                self.kill(&packet, &format!("KILL {thread}"), thread)
                    .await?;
            }
            Command::Ping | Command::Statistics | Command::SetOption(_) => {
                self.forward(&packet).await?;
                self.answer(Answer::Simple, None, Instant::now()).await?;
            }
            Command::ResetConnection => {
                self.stmts.clear();
                self.forward(&packet).await?;
                self.answer(Answer::Simple, None, Instant::now()).await?;
            }
            Command::StmtPrepare(sql) => {
                // Nothing runs at prepare time: the text is decided, with
                // its parameters, at each execute. Only an over-long text
                // is refused now (it is never parsed).
                let sql = String::from_utf8_lossy(sql).into_owned();
                if let Some(rule) = self.ctx.config.limits.statement_too_long(&sql) {
                    self.too_long("prepare", &sql, &rule);
                    return self.flush().await.map(|()| true);
                }
                self.forward(&packet).await?;
                self.answer(Answer::Prepare(sql), None, Instant::now())
                    .await?;
            }
            Command::StmtExecute(body) => self.execute(&packet, body).await?,
            Command::StmtSendLongData {
                statement_id,
                param,
                data,
            } => {
                if let Some(stmt) = self.stmts.get_mut(&statement_id)
                    && let Some(slot) = stmt.long.get_mut(param as usize)
                {
                    *slot = Some(slot.unwrap_or(0) + data.len());
                }
                // No answer, ever (errors come with the execute).
                self.forward(&packet).await?;
            }
            Command::StmtClose(id) => {
                self.stmts.remove(&id);
                self.forward(&packet).await?;
            }
            Command::StmtReset(id) => {
                if let Some(stmt) = self.stmts.get_mut(&id) {
                    stmt.long.iter_mut().for_each(|l| *l = None);
                }
                self.forward(&packet).await?;
                self.answer(Answer::Simple, None, Instant::now()).await?;
            }
            Command::StmtFetch { statement_id, .. } => {
                if !self.stmts.contains_key(&statement_id) {
                    self.unknown_statement(statement_id);
                    self.flush().await?;
                } else {
                    self.forward(&packet).await?;
                    self.answer(Answer::Fetch(statement_id), None, Instant::now())
                        .await?;
                }
            }
            Command::ChangeUser(body) => self.change_user(&packet, body).await?,
            other => {
                let name = other.name();
                self.err(
                    codes::NOT_SUPPORTED,
                    "0A000",
                    &format!("sluice: {name} is not allowed through sluice"),
                );
                self.flush().await?;
            }
        }
        Ok(true)
    }

    /// COM_STMT_EXECUTE: decode the parameters, decide the prepared text
    /// with them, then forward or refuse.
    async fn execute(&mut self, packet: &Packet, body: &[u8]) -> Result<(), MyError> {
        let id = body
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        let Some(stmt) = self.stmts.get_mut(&id) else {
            self.unknown_statement(id);
            return self.flush().await;
        };
        let long: Vec<bool> = stmt.long.iter().map(Option::is_some).collect();
        let parsed = Execute::parse(body, stmt.params, &stmt.types, &long);
        let (execute, types) = match parsed {
            Ok(x) => x,
            Err(e) => {
                self.err(
                    codes::MALFORMED,
                    "08S01",
                    &format!("sluice: malformed COM_STMT_EXECUTE: {e}"),
                );
                return self.flush().await;
            }
        };
        stmt.types = types;
        let sql = stmt.sql.clone();
        let mut values = Vec::with_capacity(execute.params.len());
        let mut recorded = Vec::with_capacity(execute.params.len());
        for (i, p) in execute.params.iter().enumerate() {
            let long = stmt.long.get(i).copied().flatten();
            recorded.push(record::param(p, long));
            values.push(p.display().map(Bytes::from));
        }
        stmt.long.iter_mut().for_each(|l| *l = None);
        self.statement(
            packet,
            "execute",
            &sql,
            &values,
            recorded,
            Answer::Execute(id),
        )
        .await
    }

    fn unknown_statement(&mut self, id: u32) {
        self.err(
            codes::UNKNOWN_STMT,
            "HY000",
            &format!("sluice: unknown prepared statement {id} on this connection"),
        );
    }

    /// `KILL [QUERY] n`, decided by sluice: only threads of this
    /// identity's own sessions.
    async fn kill(&mut self, packet: &Packet, sql: &str, thread: u32) -> Result<(), MyError> {
        let route = self.ctx.route;
        let check = self.ctx.kills.check(route.original, thread, route.identity);
        let (allow, rule) = match check {
            KillCheck::Own => (
                true,
                "builtin.kill: a thread of the identity's own session".to_string(),
            ),
            KillCheck::Other(who) => (
                false,
                format!("builtin.kill: thread {thread} belongs to another identity ({who})"),
            ),
            KillCheck::Unknown => (
                false,
                format!(
                    "builtin.kill: thread {thread} is not a session of this identity through sluice"
                ),
            ),
        };
        let seq = self
            .ctx
            .log
            .map(|log| log.record(&record::builtin("kill", sql, allow, &rule)));
        if allow {
            self.summary.statements_allowed += 1;
            Metrics::add(&self.ctx.config.metrics.statements_allowed, 1);
            self.forward(packet).await?;
            self.answer(Answer::Simple, seq, Instant::now()).await
        } else {
            self.summary.statements_denied += 1;
            Metrics::add(&self.ctx.config.metrics.statements_denied, 1);
            self.err(codes::DENIED, "42000", &format!("sluice: refused: {rule}"));
            self.flush().await
        }
    }

    /// Refuse an over-long statement text unparsed: recorded clipped as
    /// denied by `proxy.max_statement_bytes`, answered with ERR 1142.
    fn too_long(&mut self, protocol: &'static str, text: &str, rule: &str) {
        if let Some(log) = self.ctx.log {
            let clipped = sluice_pgproxy::limits::clipped(text);
            log.record(&record::builtin(protocol, &clipped, false, rule));
        }
        self.summary.statements_denied += 1;
        Metrics::add(&self.ctx.config.metrics.statements_denied, 1);
        tracing::info!(event = "statement_refused", protocol, reason = %rule, "statement refused");
        self.err(codes::DENIED, "42000", &format!("sluice: refused: {rule}"));
    }

    /// Decide a statement, record it, and forward it (answering it) or
    /// refuse it.
    async fn statement(
        &mut self,
        packet: &Packet,
        protocol: &'static str,
        text: &str,
        params: &[Option<Bytes>],
        recorded: Vec<Param>,
        answer: Answer,
    ) -> Result<(), MyError> {
        if let Some(rule) = self.ctx.config.limits.statement_too_long(text) {
            self.too_long(protocol, text, &rule);
            return self.flush().await;
        }
        let decision = self.policy.decide(&Statement {
            text,
            params,
            protocol,
        });
        let seq = self
            .ctx
            .log
            .map(|log| log.record(&record::statement(protocol, text, recorded, &decision)));
        let metrics = Arc::clone(&self.ctx.config.metrics);
        // A statement that changes nothing runs while its record is made
        // durable; only its answer waits for the record.
        let early = decision.is_allow() && self.policy.reads_only();
        let verdict = match decision {
            Decision::Allow => Ok(()),
            Decision::Deny { rule } => {
                Err((codes::DENIED, format!("sluice: refused by policy: {rule}")))
            }
            Decision::Hold(hold) => {
                Metrics::add(&metrics.statements_held, 1);
                tracing::info!(event = "statement_held", approval = %hold.id, rule = %hold.rule, "statement held for approval");
                let started = Instant::now();
                let Some(settled) = self.wait(hold.wait).await? else {
                    self.summary.end_reason =
                        Some("client disconnected while a statement was held");
                    return Ok(());
                };
                tracing::info!(
                    event = "statement_settled",
                    approval = %hold.id,
                    outcome = settled.outcome,
                    by = %settled.by.join(","),
                    "held statement settled"
                );
                if let Some(log) = self.ctx.log {
                    log.record(&record::approval(
                        seq,
                        &hold.id,
                        &settled,
                        started.elapsed(),
                    ));
                }
                if settled.allow {
                    Metrics::add(&metrics.held_allowed, 1);
                    Ok(())
                } else {
                    Metrics::add(&metrics.held_refused, 1);
                    let code = if settled.outcome == "canceled" {
                        codes::INTERRUPTED
                    } else {
                        codes::DENIED
                    };
                    Err((code, format!("sluice: refused: {}", settled.reason)))
                }
            }
        };
        match verdict {
            Ok(()) => {
                self.summary.statements_allowed += 1;
                Metrics::add(&metrics.statements_allowed, 1);
                if early {
                    startup::write(&mut self.upstream, &packet.raw, "upstream").await?;
                    self.durable().await?;
                } else {
                    self.forward(packet).await?;
                }
                self.answer(answer, seq, Instant::now()).await
            }
            Err((code, message)) => {
                self.summary.statements_denied += 1;
                Metrics::add(&metrics.statements_denied, 1);
                tracing::info!(event = "statement_refused", protocol, reason = %message, "statement refused");
                self.err(code, "42000", &message);
                self.flush().await
            }
        }
    }

    /// Wait for a held statement's decision. A `KILL QUERY` of this thread
    /// withdraws it; a client that leaves ends the wait (None).
    async fn wait(
        &mut self,
        mut wait: std::pin::Pin<Box<dyn std::future::Future<Output = Settled> + Send>>,
    ) -> Result<Option<Settled>, MyError> {
        let killed = Arc::clone(&self.ctx.killed);
        let kill = killed.notified();
        tokio::pin!(kill);
        loop {
            if self.cbuf.capacity() - self.cbuf.len() < 4096 {
                self.cbuf.reserve(16 * 1024);
            }
            tokio::select! {
                settled = &mut wait => return Ok(Some(settled)),
                () = &mut kill => {
                    return Ok(Some(Settled {
                        allow: false,
                        outcome: "canceled",
                        by: Vec::new(),
                        reason: "interrupted by KILL QUERY while it waited for approval".into(),
                    }));
                }
                read = self.client.read_buf(&mut self.cbuf), if self.cbuf.len() < HOLD_BUFFER => match read {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(source) => return Err(MyError::Io { leg: "client", source }),
                },
            }
        }
    }

    /// Send a command to the database once its events are durable. If the
    /// store cannot record, the client is told and the session ends
    /// (fail closed).
    pub(crate) async fn forward(&mut self, packet: &Packet) -> Result<(), MyError> {
        self.durable().await?;
        startup::write(&mut self.upstream, &packet.raw, "upstream").await
    }

    /// Wait until the session's events are on disk. If the store cannot
    /// record, the client is told, nothing more of the database's reaches
    /// it, and the session ends (fail closed).
    async fn durable(&mut self) -> Result<(), MyError> {
        if let Some(log) = self.ctx.log
            && let Err(e) = log.durable().await
        {
            let message = format!(
                "sluice: the audit store cannot record this session ({e}); refusing (fail closed)"
            );
            self.err(codes::DENIED, "HY000", &message);
            self.flush().await?;
            return Err(MyError::Ended(message));
        }
        Ok(())
    }

    /// Queue an ERR packet for the client at the answer's next sequence id.
    pub(crate) fn err(&mut self, code: u16, state: &str, message: &str) {
        let payload = ErrPacket::new(code, state, message.to_owned()).encode();
        self.put(&payload);
    }

    /// Queue a packet for the client at the answer's next sequence id.
    pub(crate) fn put(&mut self, payload: &[u8]) {
        self.cseq = sluice_mywire::packet::encode(self.cseq, payload, &mut self.out);
    }

    /// Queue a packet from the database unchanged (its own bytes, when its
    /// sequence id is the one the client expects).
    pub(crate) fn pass(&mut self, p: &Packet) {
        if p.seq == self.cseq && p.raw.len() == p.payload.len() + 4 {
            self.out.extend_from_slice(&p.raw);
            self.cseq = self.cseq.wrapping_add(1);
        } else {
            self.put(&p.payload.clone());
        }
    }

    /// Write what is queued for the client.
    pub(crate) async fn flush(&mut self) -> Result<(), MyError> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.summary.bytes_down += self.out.len() as u64;
        let out = self.out.split();
        startup::write(&mut self.client, &out, "client").await
    }
}
