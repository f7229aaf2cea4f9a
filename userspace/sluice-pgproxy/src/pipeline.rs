//! A ready session: the two directions, each on its own task so neither can
//! block the other (a client that writes a long pipeline while not yet
//! reading must not deadlock the proxy).
//!
//! Client → database: every statement-bearing message (Query, Parse, Bind,
//! FunctionCall) is decoded and passes the policy. A refused statement never
//! reaches the database: in its place sluice sends a *poison* statement, a
//! syntax error carrying a per-refusal marker. The database fails it exactly
//! where the refused statement stood, so everything PostgreSQL does after an
//! error happens for real and in order: the rest of an extended batch is
//! discarded up to Sync, an implicit transaction rolls back, an explicit one
//! becomes aborted, pipelines keep their order, and ReadyForQuery carries the
//! true transaction status.
//!
//! Database → client, without a rewriter (the fast path): frames are
//! written straight from the read buffer after a header scan. Only an
//! ErrorResponse carrying a poison marker is touched: it is replaced by
//! sluice's refusal (SQLSTATE 42501). If an earlier statement of the same
//! batch failed first, the database never reached the poison and the client
//! sees that earlier error, as it would without sluice.
//!
//! With a rewriter (`SessionPolicy::rewriter`), the client → database task also
//! queues, for every message the database will answer, what it is (a
//! `results::Request`: the very messages sent, poison statements included)
//! before the bytes leave; the database → client task follows the answers
//! with `results::Results` and hands each DataRow, CopyData, notice,
//! notification and error to the rewriter with its result context. Frames
//! the rewriter keeps are still written from the read buffer; replacements
//! are encoded in their place, in order, in the same write.
//!
//! With a session log (the audit store), every decision is recorded as it
//! is made and a batch leaves only once its events are durable — unless
//! everything decided in it changes nothing (reads the policy calls
//! `reads_only`, and refusals, which reach the database as poison): such a
//! batch leaves at once and the database → client task waits for the
//! record before it writes a byte of the answer. Either way nothing reaches
//! the client, and nothing changes in the database, that is not on disk. The
//! database → client loop's observer records each command's outcome
//! (`record.rs`). If the store cannot write, nothing of the batch is sent
//! and the session ends with the reason (fail closed).
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use bytes::{BufMut, Bytes, BytesMut};
use sluice_pgwire::{
    BackendMessage, CodecError, Frame, FrameReader, FrontendMessage,
    backend::{Fields, data_row_values},
    frontend::Target,
    wire::{put_list16, put_message, put_value},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Notify,
};

use sluice_store::SessionLog;

use crate::{
    Decision, PgError, SessionConfig, SessionPolicy, Settled, Statement, Summary,
    hooks::{Notification, Rewrite, RewriteOrDrop, Rewriter, Value},
    io::{Conn, ReadHalf, WriteHalf},
    record::{self, Exec, Execs, Observer},
    results::{Request, Results},
};

/// Every poison statement starts with this, then the session's nonce and
/// the refusal's sequence number. Not valid SQL: the server's parser fails
/// on it before anything runs.
const POISON: &str = "SLUICE_REFUSED_";

struct Shared {
    /// Refusals waiting for their poison's error, by marker: the fields of
    /// the ErrorResponse that replaces it.
    refusals: Mutex<HashMap<String, Fields>>,
    /// What the database will answer, in order, not yet taken by the
    /// database → client task (only with a rewriter).
    requests: Mutex<Vec<Request>>,
    /// The session's random part of every marker.
    nonce: String,
    /// A fatal error for the client (malformed client input).
    fatal: Mutex<Option<BackendMessage>>,
    wake: Notify,
    /// The database → client task has ended (the database closed, the
    /// client stopped reading): the client → database task stops too, so a
    /// session never outlives its database waiting for an idle client.
    ended: Notify,
    /// The client sent Terminate (an upstream EOF is then expected).
    terminated: AtomicBool,
    /// Executions and sync points the database will answer (recording only).
    execs: Execs,
    /// Why the session ended, when it was not the client's Terminate.
    ended_by: Mutex<Option<&'static str>>,
    /// Counters shared by every session.
    metrics: Arc<crate::Metrics>,
    /// Batches sent before their record was durable (see the module doc):
    /// the database → client task waits for the record before it writes
    /// any answer once this moves.
    early: AtomicU64,
}

impl Shared {
    fn ended_by(&self, why: &'static str) {
        self.ended_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
    }
}

/// Both legs of a ready session, with what was read past the startup.
pub(crate) struct Legs {
    pub(crate) client: Conn,
    pub(crate) upstream: Conn,
    pub(crate) cbuf: BytesMut,
    pub(crate) ubuf: BytesMut,
    /// Woken by the client's cancel requests.
    pub(crate) canceled: Option<Arc<Notify>>,
}

pub(crate) async fn run(
    legs: Legs,
    config: &SessionConfig,
    mut policy: Box<dyn SessionPolicy>,
    log: Option<&SessionLog>,
    summary: &mut Summary,
) -> Result<(), PgError> {
    let Legs {
        client,
        upstream,
        cbuf,
        ubuf,
        canceled,
    } = legs;
    let rewriter = policy.rewriter();
    let shared = Arc::new(Shared {
        refusals: Mutex::new(HashMap::new()),
        requests: Mutex::new(Vec::new()),
        nonce: nonce(),
        fatal: Mutex::new(None),
        wake: Notify::new(),
        ended: Notify::new(),
        terminated: AtomicBool::new(false),
        execs: Execs::default(),
        ended_by: Mutex::new(None),
        metrics: Arc::clone(&config.metrics),
        early: AtomicU64::new(0),
    });
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    let reader = FrameReader::new(config.max_message);
    let mut front = Frontend {
        policy,
        shared: &shared,
        statements: HashMap::new(),
        batch_refused: false,
        next_refusal: 0,
        counts: Counts::default(),
        track: rewriter.is_some(),
        requests: Vec::new(),
        copy_run: false,
        log,
        unsynced: false,
        must_wait: false,
        execs: Vec::new(),
        portals: HashMap::new(),
        canceled,
        limits: &config.limits,
    };
    let up = async {
        tokio::select! {
            r = front.run(cr, uw, cbuf, reader) => r,
            () = shared.ended.notified() => Ok(()),
        }
    };
    // Two instances of the database → client loop: the one without a
    // rewriter compiles to the bare header scan.
    let observer = log.map(|log| Observer::new(log, &shared.execs));
    let (up, (bytes_down, down)) = match rewriter {
        None => tokio::join!(
            up,
            backend(ur, cw, ubuf, reader, &shared, Forward, observer)
        ),
        Some(rewriter) => {
            let rewriting = Rewriting {
                rewriter,
                results: Results::default(),
            };
            tokio::join!(
                up,
                backend(ur, cw, ubuf, reader, &shared, rewriting, observer)
            )
        }
    };
    summary.end_reason = Some(if shared.terminated.load(Ordering::Acquire) {
        "client terminated"
    } else {
        shared
            .ended_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or("client disconnected")
    });
    summary.statements_allowed = front.counts.allowed;
    summary.statements_denied = front.counts.denied;
    summary.bytes_up = front.counts.bytes;
    summary.bytes_down = bytes_down;
    up.and(down)
}

#[derive(Default)]
struct Counts {
    allowed: u64,
    denied: u64,
    bytes: u64,
}

struct Frontend<'a> {
    /// The session's policy.
    policy: Box<dyn SessionPolicy>,
    shared: &'a Shared,
    /// Prepared statement texts by name ("" = unnamed), for Bind decisions.
    statements: HashMap<String, String>,
    /// The current extended batch already hit a refusal: the database is
    /// discarding up to Sync, so the rest needs no decision.
    batch_refused: bool,
    next_refusal: u64,
    counts: Counts,
    /// A rewriter needs result context: queue a [`Request`] for every
    /// message the database answers.
    track: bool,
    /// Requests of the messages in `out`, queued before `out` is sent.
    requests: Vec<Request>,
    /// The last request queued was CopyData (only the first of a run is).
    copy_run: bool,
    /// The session's record: statements are recorded as they are decided.
    log: Option<&'a SessionLog>,
    /// Events were recorded since the last durability wait.
    unsynced: bool,
    /// One of them was not a reads-only statement or a refusal: the batch
    /// waits for them before it leaves.
    must_wait: bool,
    /// Executions of the messages in `out` (recording only).
    execs: Vec<Exec>,
    /// The statement event (Bind) behind each portal, for its Executes.
    portals: HashMap<String, Option<u32>>,
    /// Woken by the client's cancel requests (a held statement is then
    /// withdrawn).
    canceled: Option<Arc<Notify>>,
    /// `proxy.max_statement_bytes` and friends.
    limits: &'a crate::limits::Limits,
}

impl Frontend<'_> {
    async fn run(
        &mut self,
        mut cr: ReadHalf,
        mut uw: WriteHalf,
        mut buf: BytesMut,
        reader: FrameReader,
    ) -> Result<(), PgError> {
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            loop {
                let frame = match reader.next_tagged(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(source) => return Err(self.fatal(&mut uw, &out, source).await),
                };
                let terminate = frame.tag == b'X';
                let held = match self.handle(frame, &mut out) {
                    Ok(held) => held,
                    Err(source) => return Err(self.fatal(&mut uw, &out, source).await),
                };
                if let Some(held) = held {
                    // What came before it leaves now; only this statement
                    // (and what follows it) waits.
                    if !out.is_empty() {
                        self.forward(&mut uw, &out).await?;
                        out.clear();
                    }
                    let started = std::time::Instant::now();
                    let Some(settled) = self.wait(held.wait, &mut cr, &mut buf).await? else {
                        self.shared
                            .ended_by("client disconnected while a statement awaited approval");
                        let _ = uw.shutdown().await;
                        return Ok(());
                    };
                    self.settle(held.held, settled, started.elapsed(), &mut out);
                }
                if terminate {
                    self.shared.terminated.store(true, Ordering::Release);
                    self.forward(&mut uw, &out).await?;
                    let _ = uw.shutdown().await;
                    return Ok(());
                }
            }
            if !out.is_empty() {
                self.forward(&mut uw, &out).await?;
                out.clear();
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(64 * 1024);
            }
            let n = cr.read_buf(&mut buf).await.map_err(|source| PgError::Io {
                leg: "client",
                source,
            })?;
            if n == 0 {
                // The client went away without Terminate (killed, network
                // loss): close upstream so the backend ends too.
                self.shared.ended_by("client disconnected");
                let _ = uw.shutdown().await;
                return Ok(());
            }
        }
    }

    /// Send what was decided: once its events are durable, with the
    /// answers it will get queued for the other task first (they may be
    /// back at once).
    async fn forward(&mut self, uw: &mut WriteHalf, out: &[u8]) -> Result<(), PgError> {
        if self.unsynced
            && let Some(log) = self.log
        {
            self.unsynced = false;
            if std::mem::take(&mut self.must_wait) {
                if let Err(e) = log.durable().await {
                    return Err(self.store_failed(uw, e).await);
                }
            } else {
                // Changes nothing: it runs while its record is written;
                // the answer waits for it (in `backend`).
                self.shared.early.fetch_add(1, Ordering::Release);
            }
        }
        self.counts.bytes += out.len() as u64;
        self.queue_requests();
        self.shared.execs.extend(&mut self.execs);
        send(uw, out, "upstream").await
    }

    /// The store could not record: nothing of the batch reaches the
    /// database, the client is told why, and the session ends (fail closed).
    async fn store_failed(&self, uw: &mut WriteHalf, e: sluice_store::StoreError) -> PgError {
        tracing::error!(error = %e, "statement refused: the audit store could not record it");
        self.shared.ended_by("audit store failure");
        *self.shared.fatal.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(BackendMessage::ErrorResponse(vec![
                (b'S', "FATAL".into()),
                (b'V', "FATAL".into()),
                (b'C', "58030".into()),
                (
                    b'M',
                    "sluice: the audit store could not record this statement, so it was not sent to the database; closing the session".into(),
                ),
                (b'D', e.to_string()),
            ]));
        self.shared.wake.notify_one();
        // Only now: the database's EOF must not overtake the reason.
        let _ = uw.shutdown().await;
        PgError::Refused(format!("audit store failure: {e}"))
    }

    /// Malformed client input: flush what was accepted, have the other task
    /// tell the client, and end the session.
    async fn fatal(
        &mut self,
        uw: &mut WriteHalf,
        pending: &BytesMut,
        source: sluice_pgwire::CodecError,
    ) -> PgError {
        if let Err(e) = self.forward(uw, pending).await {
            return e;
        }
        let _ = uw.shutdown().await;
        self.shared.ended_by("invalid message from the client");
        let message =
            format!("sluice: invalid message from the client ({source}); closing the session");
        *self.shared.fatal.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(BackendMessage::ErrorResponse(vec![
                (b'S', "FATAL".into()),
                (b'V', "FATAL".into()),
                (b'C', "08P01".into()),
                (b'M', message),
            ]));
        self.shared.wake.notify_one();
        PgError::Protocol {
            leg: "client",
            source,
        }
    }

    /// Decide and forward one client message into `out`; a held
    /// statement is returned instead, to be settled once decided.
    fn handle(
        &mut self,
        frame: Frame,
        out: &mut BytesMut,
    ) -> Result<Option<HeldHold>, sluice_pgwire::CodecError> {
        let undecided = match frame.tag {
            b'Q' | b'F' => false,
            // The database discards these until Sync in a refused batch;
            // keep its state exactly as without sluice by letting it do so.
            b'P' | b'B' | b'C' => self.batch_refused,
            b'S' => {
                self.batch_refused = false;
                true
            }
            // Everything else needs no decision: forwarded by type byte.
            _ => true,
        };
        if undecided {
            if self.track {
                self.track_undecided(&frame)?;
            }
            if self.log.is_some() {
                self.track_execution(&frame)?;
            }
            put_frame(out, &frame);
            return Ok(None);
        }
        let msg = FrontendMessage::decode(frame.clone())?;
        let (decision, seq) = match &msg {
            FrontendMessage::Query(text) => self.decide(text, &[], &[], "simple", "simple"),
            FrontendMessage::Parse { query, .. } => {
                self.decide(query, &[], &[], "extended", "parse")
            }
            FrontendMessage::Bind {
                statement,
                param_formats,
                params,
                ..
            } => {
                // A statement prepared on another path has no text here:
                // decide on what is known (an empty text).
                let text = self.statements.get(statement).cloned().unwrap_or_default();
                self.decide(&text, params, param_formats, "extended", "bind")
            }
            FrontendMessage::FunctionCall {
                oid,
                args,
                arg_formats,
                ..
            } => self.decide(
                &format!("-- fast-path function call, oid {oid}"),
                args,
                arg_formats,
                "function-call",
                "function_call",
            ),
            FrontendMessage::Close {
                target: Target::Statement,
                name,
            } => {
                self.statements.remove(name);
                (Decision::Allow, None)
            }
            _ => (Decision::Allow, None),
        };
        let verdict = match decision {
            Decision::Allow => Ok(()),
            Decision::Deny { rule } => Err(rule),
            Decision::Hold(hold) => {
                return Ok(Some(HeldHold {
                    held: Held {
                        frame,
                        msg,
                        seq,
                        id: hold.id,
                    },
                    wait: hold.wait,
                }));
            }
        };
        self.apply(frame, msg, seq, verdict, out);
        Ok(None)
    }

    /// Forward a decided message into `out`, or its poison if refused.
    fn apply(
        &mut self,
        frame: Frame,
        msg: FrontendMessage,
        seq: Option<u32>,
        verdict: Result<(), String>,
        out: &mut BytesMut,
    ) {
        match &msg {
            FrontendMessage::Query(_) | FrontendMessage::FunctionCall { .. } => {
                self.executes(seq, true)
            }
            FrontendMessage::Parse { name, query, .. } if verdict.is_ok() => {
                self.statements.insert(name.clone(), query.clone());
            }
            FrontendMessage::Bind { portal, .. } if self.log.is_some() => {
                self.portals.insert(portal.clone(), seq);
            }
            _ => {}
        }
        match verdict {
            Ok(()) => {
                put_frame(out, &frame);
                if self.track {
                    self.track(&msg);
                }
            }
            Err(rule) => {
                let marker = self.refusal(rule);
                let poison = match msg {
                    FrontendMessage::Query(_) | FrontendMessage::FunctionCall { .. } => {
                        FrontendMessage::Query(marker)
                    }
                    _ => {
                        self.batch_refused = true;
                        FrontendMessage::Parse {
                            name: "sluice_refused".into(),
                            query: marker,
                            param_types: vec![],
                        }
                    }
                };
                poison.encode(out);
                if self.track {
                    // The database answers the poison, not the refused message.
                    self.track(&poison);
                }
            }
        }
    }

    /// Wait for a held statement's decision. Meanwhile the client may
    /// send more (it is buffered, up to a bound, and handled after); a
    /// client that goes away ends the wait (None), which withdraws the
    /// request.
    async fn wait(
        &mut self,
        mut wait: std::pin::Pin<Box<dyn std::future::Future<Output = Settled> + Send>>,
        cr: &mut ReadHalf,
        buf: &mut BytesMut,
    ) -> Result<Option<Settled>, PgError> {
        let canceled = self.canceled.clone();
        let cancel = async {
            match &canceled {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cancel);
        loop {
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            tokio::select! {
                settled = &mut wait => return Ok(Some(settled)),
                () = &mut cancel => {
                    // Dropping `wait` withdraws the request.
                    return Ok(Some(Settled {
                        allow: false,
                        outcome: "canceled",
                        by: Vec::new(),
                        reason: "canceled by the client while it waited for approval".into(),
                    }));
                }
                read = cr.read_buf(buf), if buf.len() < HOLD_BUFFER => match read {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(source) => return Err(PgError::Io { leg: "client", source }),
                },
            }
        }
    }

    /// A held statement was decided: count and record how, then forward
    /// it or its refusal.
    fn settle(
        &mut self,
        held: Held,
        settled: Settled,
        waited: std::time::Duration,
        out: &mut BytesMut,
    ) {
        tracing::info!(
            event = "statement_settled",
            approval = %held.id,
            outcome = settled.outcome,
            by = %settled.by.join(","),
            waited_ms = waited.as_millis() as u64,
            "held statement settled"
        );
        if let Some(log) = self.log {
            self.unsynced = true;
            self.must_wait = true;
            log.record(&record::approval(held.seq, &held.id, &settled, waited));
        }
        let m = &self.shared.metrics;
        let verdict = if settled.allow {
            self.counts.allowed += 1;
            crate::Metrics::add(&m.held_allowed, 1);
            Ok(())
        } else {
            self.counts.denied += 1;
            crate::Metrics::add(&m.held_refused, 1);
            Err(settled.reason.clone())
        };
        self.apply(held.frame, held.msg, held.seq, verdict, out);
    }

    /// Queue the request a message sent to the database makes.
    fn track(&mut self, sent: &FrontendMessage) {
        if let Some(request) = Request::from_frontend(sent) {
            self.push_request(request);
        }
    }

    /// Queue the request of a message forwarded without a decision.
    fn track_undecided(&mut self, frame: &Frame) -> Result<(), sluice_pgwire::CodecError> {
        let request = match frame.tag {
            b'S' => Request::Sync,
            b'd' => Request::CopyData,
            b'c' | b'f' => Request::CopyEnd,
            // Describe, Execute, and Parse, Bind, Close in a refused batch.
            b'D' | b'E' | b'P' | b'B' | b'C' => {
                match Request::from_frontend(&FrontendMessage::decode(frame.clone())?) {
                    Some(r) => r,
                    None => return Ok(()),
                }
            }
            // Flush and Terminate are not answered; an unknown type ends
            // the session at the database.
            _ => return Ok(()),
        };
        self.push_request(request);
        Ok(())
    }

    fn push_request(&mut self, request: Request) {
        let copy_data = request == Request::CopyData;
        if !(copy_data && self.copy_run) {
            self.requests.push(request);
        }
        self.copy_run = copy_data;
    }

    /// Hand the requests of what is about to be sent to the other task.
    fn queue_requests(&mut self) {
        if !self.requests.is_empty() {
            self.shared
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut self.requests);
        }
    }

    /// Decide a statement and, when recording, record it; returns the
    /// decision and the statement event's seq.
    fn decide(
        &mut self,
        text: &str,
        params: &[Option<Bytes>],
        formats: &[i16],
        protocol: &'static str,
        record_as: &'static str,
    ) -> (Decision, Option<u32>) {
        // An over-long text is refused unparsed, and recorded clipped.
        let too_long = matches!(record_as, "simple" | "parse")
            .then(|| self.limits.statement_too_long(text))
            .flatten();
        let clipped;
        let (d, text) = match too_long {
            Some(rule) => {
                clipped = crate::limits::clipped(text);
                (Decision::Deny { rule }, clipped.as_ref())
            }
            None => (
                self.policy.decide(&Statement {
                    text,
                    params,
                    protocol,
                }),
                text,
            ),
        };
        let m = &self.shared.metrics;
        match &d {
            Decision::Allow => {
                self.counts.allowed += 1;
                crate::Metrics::add(&m.statements_allowed, 1);
            }
            Decision::Deny { rule } => {
                self.counts.denied += 1;
                crate::Metrics::add(&m.statements_denied, 1);
                tracing::info!(event = "statement_denied", rule = %rule, protocol, statement = %truncate(text, 200), "statement refused");
            }
            // Counted as allowed or denied when settled.
            Decision::Hold(h) => {
                crate::Metrics::add(&m.statements_held, 1);
                tracing::info!(event = "statement_held", approval = %h.id, rule = %h.rule, protocol, statement = %truncate(text, 200), "statement held for approval");
            }
        }
        let seq = self.log.map(|log| {
            self.unsynced = true;
            let changes_nothing = match &d {
                Decision::Allow => self.policy.reads_only(),
                Decision::Deny { .. } => true,
                Decision::Hold(_) => false,
            };
            self.must_wait |= !changes_nothing;
            log.record(&record::statement(record_as, text, params, formats, &d))
        });
        (d, seq)
    }

    /// A simple query or function call: one execution, then ReadyForQuery.
    fn executes(&mut self, statement: Option<u32>, simple: bool) {
        if self.log.is_some() {
            self.execs.push(Exec::Run {
                statement,
                simple,
                sent: std::time::Instant::now(),
                done: 0,
            });
            if simple {
                self.execs.push(Exec::Ready);
            }
        }
    }

    /// Execute and Sync, which pass undecided (and Bind in a refused batch).
    fn track_execution(&mut self, frame: &Frame) -> Result<(), sluice_pgwire::CodecError> {
        match frame.tag {
            // The database discards it; its portal's Executes belong to no
            // recorded statement (not to an earlier Bind of the same name).
            b'B' => {
                if let FrontendMessage::Bind { portal, .. } =
                    FrontendMessage::decode(frame.clone())?
                {
                    self.portals.insert(portal, None);
                }
            }
            b'E' => {
                if let FrontendMessage::Execute { portal, .. } =
                    FrontendMessage::decode(frame.clone())?
                {
                    let statement = self.portals.get(&portal).copied().flatten();
                    self.executes(statement, false);
                }
            }
            b'S' => self.execs.push(Exec::Ready),
            _ => {}
        }
        Ok(())
    }

    /// Register a refusal; returns the poison statement that stands in for it.
    fn refusal(&mut self, rule: String) -> String {
        self.next_refusal += 1;
        let marker = format!("{POISON}{}_{}", self.shared.nonce, self.next_refusal);
        // An over-long statement is a program limit (54000), not a
        // privilege matter.
        let (sqlstate, message) = if rule.starts_with(crate::limits::STATEMENT_TOO_LONG) {
            ("54000", "sluice: statement too long")
        } else {
            ("42501", "sluice: statement refused by policy")
        };
        let error = vec![
            (b'S', "ERROR".into()),
            (b'V', "ERROR".into()),
            (b'C', sqlstate.into()),
            (b'M', message.into()),
            (b'D', format!("Rule: {rule}.")),
        ];
        let mut refusals = self
            .shared
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A poison the database never reached (an earlier error in its batch)
        // leaves its entry behind; keep the map from growing without bound.
        if refusals.len() >= 1024 {
            refusals.clear();
        }
        refusals.insert(marker.clone(), error);
        marker
    }
}

/// Most bytes read from a client while one of its statements is held.
const HOLD_BUFFER: usize = 1024 * 1024;

/// A held message, to be forwarded or refused once decided.
struct Held {
    frame: Frame,
    msg: FrontendMessage,
    /// Its statement event.
    seq: Option<u32>,
    /// The approval request's id.
    id: String,
}

/// A held message and the decision it waits for.
struct HeldHold {
    held: Held,
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = Settled> + Send>>,
}

/// What the database → client loop does with one complete frame.
enum Action<'a> {
    /// Send it as it is, from the read buffer.
    Forward,
    /// Send nothing.
    Drop,
    /// Send a DataRow with these values instead.
    Row(Vec<Value<'a>>),
    /// Send this message instead.
    Message(BackendMessage),
}

impl Action<'_> {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Action::Forward | Action::Drop => {}
            Action::Row(values) => put_message(out, b'D', |b| {
                put_list16(b, values, |b, v| put_value(b, v.as_deref()));
            }),
            Action::Message(msg) => msg.encode(out),
        }
    }
}

/// The per-frame part of the database → client loop.
trait Downstream {
    /// Whether frames are inspected beyond their header: then nothing may
    /// reach the client without passing [`Downstream::frame`].
    const INSPECTS: bool;

    /// Before each scan of the read buffer.
    fn begin(&mut self, _shared: &Shared) {}

    /// One complete frame (header included) of type `tag`.
    fn frame<'a>(
        &mut self,
        shared: &Shared,
        tag: u8,
        frame: &'a [u8],
    ) -> Result<Action<'a>, PgError>;

    /// A result ended or paused: values masked since the last call, by
    /// column, for the record.
    fn end_of_result(&mut self, suspended: bool) -> Vec<(String, u64)> {
        let _ = suspended;
        Vec::new()
    }
}

/// No rewriter: only a poison statement's error is replaced.
struct Forward;

impl Downstream for Forward {
    const INSPECTS: bool = false;

    #[inline]
    fn frame<'a>(
        &mut self,
        shared: &Shared,
        tag: u8,
        frame: &'a [u8],
    ) -> Result<Action<'a>, PgError> {
        if tag == b'E'
            && let Some(refusal) = poison_answer(shared, frame)
        {
            return Ok(Action::Message(BackendMessage::ErrorResponse(refusal)));
        }
        Ok(Action::Forward)
    }
}

/// A rewriter, and the result context it is given.
struct Rewriting {
    rewriter: Box<dyn Rewriter>,
    results: Results,
}

impl Downstream for Rewriting {
    const INSPECTS: bool = true;

    fn end_of_result(&mut self, suspended: bool) -> Vec<(String, u64)> {
        self.rewriter.end_of_result(suspended)
    }

    fn begin(&mut self, shared: &Shared) {
        // Every answer in the buffer was read after its request was queued.
        let mut requests = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        for request in requests.drain(..) {
            self.results.push(request);
        }
    }

    fn frame<'a>(
        &mut self,
        shared: &Shared,
        tag: u8,
        frame: &'a [u8],
    ) -> Result<Action<'a>, PgError> {
        let body = &frame[5..];
        self.results.response(tag, body).map_err(upstream)?;
        let action = match tag {
            b'D' => {
                let values = data_row_values(body).map_err(upstream)?;
                match self.rewriter.data_row(self.results.row_columns(), &values) {
                    Rewrite::Keep => Action::Forward,
                    Rewrite::End(why) => return Err(PgError::Ended(why)),
                    Rewrite::Replace(new) if new.len() == values.len() => Action::Row(new),
                    Rewrite::Replace(new) => {
                        return Err(invalid_rewrite(
                            "DataRow",
                            format!("{} values for a row of {}", new.len(), values.len()),
                        ));
                    }
                }
            }
            b'd' => match self.rewriter.copy_data(self.results.copy_format(), body) {
                Rewrite::Keep => Action::Forward,
                Rewrite::End(why) => return Err(PgError::Ended(why)),
                Rewrite::Replace(data) => {
                    Action::Message(BackendMessage::CopyData(Bytes::from(data)))
                }
            },
            b'N' => {
                let BackendMessage::NoticeResponse(fields) = decode(tag, body)? else {
                    return Err(upstream(CodecError::malformed(
                        "NoticeResponse",
                        "wrong type",
                    )));
                };
                match self.rewriter.notice(&fields) {
                    RewriteOrDrop::Keep => Action::Forward,
                    RewriteOrDrop::Drop => Action::Drop,
                    RewriteOrDrop::Replace(fields) => {
                        check_fields("NoticeResponse", &fields)?;
                        Action::Message(BackendMessage::NoticeResponse(fields))
                    }
                }
            }
            b'A' => {
                let BackendMessage::NotificationResponse {
                    pid,
                    channel,
                    payload,
                } = decode(tag, body)?
                else {
                    return Err(upstream(CodecError::malformed(
                        "NotificationResponse",
                        "wrong type",
                    )));
                };
                let seen = Notification {
                    pid,
                    channel,
                    payload,
                };
                match self.rewriter.notification(&seen) {
                    RewriteOrDrop::Keep => Action::Forward,
                    RewriteOrDrop::Drop => Action::Drop,
                    RewriteOrDrop::Replace(n) => {
                        if n.channel.contains('\0') || n.payload.contains('\0') {
                            return Err(invalid_rewrite(
                                "NotificationResponse",
                                "a string holds a NUL byte".into(),
                            ));
                        }
                        Action::Message(BackendMessage::NotificationResponse {
                            pid: n.pid,
                            channel: n.channel,
                            payload: n.payload,
                        })
                    }
                }
            }
            b'E' => {
                // sluice's refusal stands in for its poison's error, and is
                // what the rewriter sees.
                let (fields, refusal) = match poison_answer(shared, frame) {
                    Some(refusal) => (refusal, true),
                    None => {
                        let BackendMessage::ErrorResponse(fields) = decode(tag, body)? else {
                            return Err(upstream(CodecError::malformed(
                                "ErrorResponse",
                                "wrong type",
                            )));
                        };
                        (fields, false)
                    }
                };
                match self.rewriter.error(&fields) {
                    Rewrite::Keep if refusal => {
                        Action::Message(BackendMessage::ErrorResponse(fields))
                    }
                    Rewrite::Keep => Action::Forward,
                    Rewrite::End(why) => return Err(PgError::Ended(why)),
                    Rewrite::Replace(fields) => {
                        check_fields("ErrorResponse", &fields)?;
                        Action::Message(BackendMessage::ErrorResponse(fields))
                    }
                }
            }
            _ => Action::Forward,
        };
        Ok(action)
    }
}

fn decode(tag: u8, body: &[u8]) -> Result<BackendMessage, PgError> {
    BackendMessage::decode_lossy(Frame {
        tag,
        body: Bytes::copy_from_slice(body),
    })
    .map_err(upstream)
}

fn upstream(source: CodecError) -> PgError {
    PgError::Protocol {
        leg: "upstream",
        source,
    }
}

fn invalid_rewrite(what: &'static str, reason: String) -> PgError {
    PgError::Protocol {
        leg: "rewriter",
        source: CodecError::malformed(what, reason),
    }
}

/// Replacement notice or error fields must encode as valid fields.
fn check_fields(what: &'static str, fields: &Fields) -> Result<(), PgError> {
    match fields
        .iter()
        .find(|(code, value)| *code == 0 || value.contains('\0'))
    {
        Some((code, _)) => Err(invalid_rewrite(
            what,
            format!(
                "field {:?} is a NUL code or holds a NUL byte",
                *code as char
            ),
        )),
        None => Ok(()),
    }
}

/// Largest frame a rewrite may produce: its length must fit the Int32
/// length field.
const MAX_REWRITTEN: usize = i32::MAX as usize;

/// How far one scan of the read buffer got.
struct Scan {
    /// End of the complete frames scanned.
    pos: usize,
    /// Frames from here to `pos` go to the client as they are, after `out`.
    written: usize,
    /// Why the scan stopped early, ending the session.
    failed: Option<PgError>,
}

/// Pass the complete frames at the start of `buf` through `down`. What
/// precedes a replaced or dropped frame, and its replacement, are appended
/// to `out`; the client is then sent `out` followed by `buf[written..pos]`.
/// Stops after about 256 KiB so large results stream.
fn scan<D: Downstream>(
    down: &mut D,
    shared: &Shared,
    reader: FrameReader,
    buf: &[u8],
    out: &mut BytesMut,
    observer: &mut Option<Observer<'_>>,
) -> Scan {
    let mut pos = 0;
    let mut written = 0;
    let mut failed = None;
    loop {
        let (tag, total) = match reader.peek_tagged(&buf[pos..]) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(source) => {
                failed = Some(upstream(source));
                break;
            }
        };
        let action = down.frame(shared, tag, &buf[pos..pos + total]);
        let masked = if matches!(tag, b'C' | b'I' | b's' | b'E') {
            let masked = down.end_of_result(tag == b's');
            let n: u64 = masked.iter().map(|(_, n)| n).sum();
            if n > 0 {
                crate::Metrics::add(&shared.metrics.masked_values, n);
            }
            masked
        } else {
            Vec::new()
        };
        if let (Some(o), Ok(action)) = (observer.as_mut(), &action) {
            let replaced = match action {
                Action::Message(BackendMessage::ErrorResponse(f)) => Some(f),
                _ => None,
            };
            o.frame(tag, &buf[pos..pos + total], replaced, masked);
        }
        match action {
            Ok(Action::Forward) => {}
            Ok(action) => {
                out.extend_from_slice(&buf[written..pos]);
                let start = out.len();
                action.encode(out);
                if out.len() - start > MAX_REWRITTEN {
                    out.truncate(start);
                    failed = Some(invalid_rewrite(
                        sluice_pgwire::backend::name(tag),
                        "the replacement is too large for one message".into(),
                    ));
                    break;
                }
                written = pos + total;
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        pos += total;
        if pos - written + out.len() >= 256 * 1024 {
            break;
        }
    }
    Scan {
        pos,
        written,
        failed,
    }
}

/// Database → client. Returns the bytes sent to the client and how it ended.
///
/// One frame-header scan per message, and `down` per frame. Frames it
/// forwards go to the client straight from the read buffer, with no copy;
/// once a frame is replaced or dropped, what precedes it in the buffer and
/// the replacement are gathered in `out` so that the run still leaves in
/// one write, in order.
async fn backend<D: Downstream>(
    mut ur: ReadHalf,
    mut cw: WriteHalf,
    mut buf: BytesMut,
    reader: FrameReader,
    shared: &Shared,
    mut down: D,
    mut observer: Option<Observer<'_>>,
) -> (u64, Result<(), PgError>) {
    let log = observer.as_ref().map(Observer::log);
    let mut sent = 0u64;
    // The last of `shared.early`'s batches whose record is known durable.
    let mut durable_early = 0u64;
    let mut out = BytesMut::new();
    let result = loop {
        let fatal = shared
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(msg) = fatal {
            let mut out = BytesMut::new();
            msg.encode(&mut out);
            // What the database already said, unless it may answer a batch
            // whose record is not known durable.
            if !D::INSPECTS && shared.early.load(Ordering::Acquire) == durable_early {
                let _ = cw.write_all(&buf).await; // what the database already said
            }
            let _ = send(&mut cw, &out, "client").await;
            break Ok(());
        }
        down.begin(shared);
        let Scan {
            pos,
            written,
            failed,
        } = scan(&mut down, shared, reader, &buf, &mut out, &mut observer);
        let pending = &buf[written..pos];
        let chunk = if out.is_empty() {
            pending
        } else {
            out.extend_from_slice(pending);
            &out[..]
        };
        if !chunk.is_empty() {
            // An answer to a batch sent before its record was durable
            // leaves only once the record is.
            let early = shared.early.load(Ordering::Acquire);
            if early != durable_early
                && let Some(log) = log
            {
                if let Err(e) = log.durable().await {
                    break Err(store_failed_late(&mut cw, shared, e).await);
                }
                durable_early = early;
            }
            sent += chunk.len() as u64;
            if let Err(source) = cw.write_all(chunk).await {
                break Err(PgError::Io {
                    leg: "client",
                    source,
                });
            }
        }
        if out.capacity() > 1024 * 1024 {
            out = BytesMut::new();
        } else {
            out.clear();
        }
        if let Some(e) = failed {
            if let PgError::Ended(why) = &e {
                // A limit: the client learns which, and gets nothing more.
                tracing::warn!(event = "session_ended_by_policy", reason = %why, "ending the session");
                shared.ended_by("ended by policy (limit)");
                let mut msg = BytesMut::new();
                BackendMessage::ErrorResponse(vec![
                    (b'S', "FATAL".into()),
                    (b'V', "FATAL".into()),
                    (b'C', "54000".into()),
                    (b'M', format!("sluice: {why}")),
                ])
                .encode(&mut msg);
                let _ = send(&mut cw, &msg, "client").await;
            } else if matches!(
                e,
                PgError::Protocol {
                    leg: "rewriter",
                    ..
                }
            ) {
                // Fail closed: the client learns why, and gets nothing more.
                tracing::error!(error = %e, "a rewrite hook broke the protocol; closing the session");
                let mut msg = BytesMut::new();
                BackendMessage::ErrorResponse(vec![
                    (b'S', "FATAL".into()),
                    (b'V', "FATAL".into()),
                    (b'C', "XX000".into()),
                    (
                        b'M',
                        "sluice: a rewrite hook produced an invalid message; closing the session"
                            .into(),
                    ),
                ])
                .encode(&mut msg);
                let _ = send(&mut cw, &msg, "client").await;
            } else {
                let _ = cw.flush().await;
            }
            break Err(e);
        }
        if let Err(source) = cw.flush().await {
            break Err(PgError::Io {
                leg: "client",
                source,
            });
        }
        bytes::Buf::advance(&mut buf, pos);
        if reader.peek_tagged(&buf).ok().flatten().is_some() {
            continue;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            read = ur.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) if shared.terminated.load(Ordering::Acquire) => break Ok(()),
                // sluice closed the database side itself (malformed client
                // input, audit store failure): the loop's top tells the
                // client why.
                Ok(0) | Err(_) if has_fatal(shared) => {}
                Ok(0) => {
                    shared.ended_by("the database closed the connection");
                    lost_database(&mut cw).await;
                    break Ok(());
                }
                Err(source) => {
                    shared.ended_by("the database connection failed");
                    lost_database(&mut cw).await;
                    break Err(PgError::Io { leg: "upstream", source });
                }
                Ok(_) => {}
            },
            () = shared.wake.notified() => {}
        }
    };
    let _ = cw.shutdown().await;
    shared.ended.notify_one();
    (sent, result)
}

/// The record of a batch already sent could not be made durable: its
/// answer never reaches the client, who is told why, and the session ends
/// (fail closed).
async fn store_failed_late(
    cw: &mut WriteHalf,
    shared: &Shared,
    e: sluice_store::StoreError,
) -> PgError {
    tracing::error!(error = %e, "answer withheld: the audit store could not record its statement");
    shared.ended_by("audit store failure");
    let mut msg = BytesMut::new();
    BackendMessage::ErrorResponse(vec![
        (b'S', "FATAL".into()),
        (b'V', "FATAL".into()),
        (b'C', "58030".into()),
        (
            b'M',
            "sluice: the audit store could not record this statement, so its answer was withheld; closing the session".into(),
        ),
        (b'D', e.to_string()),
    ])
    .encode(&mut msg);
    let _ = send(cw, &msg, "client").await;
    PgError::Refused(format!("audit store failure: {e}"))
}

fn has_fatal(shared: &Shared) -> bool {
    shared
        .fatal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
}

/// If this ErrorResponse frame answers a poison statement, the refusal that
/// replaces it.
fn poison_answer(shared: &Shared, frame: &[u8]) -> Option<Fields> {
    let mut refusals = shared.refusals.lock().unwrap_or_else(|e| e.into_inner());
    if refusals.is_empty() {
        return None;
    }
    let body = &frame[5..];
    let start = find(body, POISON.as_bytes())?;
    let end = body[start..]
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .map_or(body.len(), |n| start + n);
    // PostgreSQL folds unquoted identifiers to lower case in its messages.
    let marker = String::from_utf8_lossy(&body[start..end]).to_uppercase();
    let key = refusals
        .keys()
        .find(|k| k.to_uppercase() == marker)?
        .clone();
    refusals.remove(&key)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// A random session nonce for poison markers (upper-case hex, so the
/// server's error text can be matched whatever case it reports).
fn nonce() -> String {
    format!("{:016X}", crate::random_u64(&[]))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn put_frame(out: &mut BytesMut, frame: &Frame) {
    out.put_u8(frame.tag);
    out.put_i32(frame.body.len() as i32 + 4);
    out.put_slice(&frame.body);
}

/// The database closed the connection under a live session: say so.
async fn lost_database(cw: &mut WriteHalf) {
    let mut out = BytesMut::new();
    BackendMessage::ErrorResponse(vec![
        (b'S', "FATAL".into()),
        (b'V', "FATAL".into()),
        (b'C', "08006".into()),
        (b'M', "sluice: the database closed the connection".into()),
    ])
    .encode(&mut out);
    let _ = send(cw, &out, "client").await;
}

/// Write and flush (a TLS leg holds written bytes until flushed).
pub(crate) async fn send(
    w: &mut WriteHalf,
    bytes: &[u8],
    leg: &'static str,
) -> Result<(), PgError> {
    let written = match w.write_all(bytes).await {
        Ok(()) => w.flush().await,
        Err(e) => Err(e),
    };
    written.map_err(|source| PgError::Io { leg, source })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::hooks::Column;

    fn shared() -> Shared {
        Shared {
            refusals: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            nonce: "ABC".into(),
            fatal: Mutex::new(None),
            wake: Notify::new(),
            ended: Notify::new(),
            terminated: AtomicBool::new(false),
            execs: Execs::default(),
            ended_by: Mutex::new(None),
            metrics: Arc::default(),
            early: AtomicU64::new(0),
        }
    }

    /// Uppercases text values of `holder`, rewrites notices and errors,
    /// withholds notifications on channel "quiet", and records what it saw.
    #[derive(Default)]
    struct Upper {
        seen: Vec<String>,
        /// Return a row with one value too many.
        break_rows: bool,
    }

    impl Rewriter for Upper {
        fn data_row<'v>(
            &mut self,
            columns: Option<&[Column]>,
            values: &[Option<&'v [u8]>],
        ) -> Rewrite<Vec<Value<'v>>> {
            let Some(columns) = columns else {
                self.seen.push("row ?".into());
                return Rewrite::Keep;
            };
            self.seen.push(format!("row {}", columns.len()));
            if self.break_rows {
                return Rewrite::Replace(vec![None; values.len() + 1]);
            }
            Rewrite::Replace(
                values
                    .iter()
                    .zip(columns)
                    .map(|(v, c)| match v {
                        Some(v) if c.name == "holder" => Some(Cow::Owned(v.to_ascii_uppercase())),
                        v => v.map(Cow::Borrowed),
                    })
                    .collect(),
            )
        }
        fn notice(&mut self, _fields: &[(u8, String)]) -> RewriteOrDrop<Fields> {
            self.seen.push("notice".into());
            RewriteOrDrop::Replace(vec![(b'S', "NOTICE".into()), (b'M', "rewritten".into())])
        }
        fn notification(&mut self, n: &Notification) -> RewriteOrDrop<Notification> {
            self.seen.push(format!("notify {}", n.channel));
            if n.channel == "quiet" {
                RewriteOrDrop::Drop
            } else {
                RewriteOrDrop::Keep
            }
        }
        fn error(&mut self, fields: &[(u8, String)]) -> Rewrite<Fields> {
            let code = fields
                .iter()
                .find(|(c, _)| *c == b'C')
                .map(|(_, v)| v.clone());
            self.seen
                .push(format!("error {}", code.unwrap_or_default()));
            Rewrite::Replace(
                fields
                    .iter()
                    .map(|(c, v)| {
                        (
                            *c,
                            if *c == b'M' {
                                format!("{v} (seen)")
                            } else {
                                v.clone()
                            },
                        )
                    })
                    .collect(),
            )
        }
    }

    fn holder_description() -> BackendMessage {
        let field = |name: &str, type_oid| sluice_pgwire::backend::FieldDescription {
            name: name.into(),
            table_oid: 16384,
            column: 1,
            type_oid,
            type_size: -1,
            type_modifier: -1,
            format: 0,
        };
        BackendMessage::RowDescription(vec![field("id", 23), field("holder", 25)])
    }

    fn row(id: &'static str, holder: &'static str) -> BackendMessage {
        BackendMessage::DataRow(vec![
            Some(Bytes::from_static(id.as_bytes())),
            Some(Bytes::from_static(holder.as_bytes())),
        ])
    }

    fn notification(channel: &str) -> BackendMessage {
        BackendMessage::NotificationResponse {
            pid: 7,
            channel: channel.into(),
            payload: "p".into(),
        }
    }

    fn encode(msgs: &[BackendMessage]) -> BytesMut {
        let mut buf = BytesMut::new();
        for m in msgs {
            m.encode(&mut buf);
        }
        buf
    }

    /// Scan `buf` once; returns what the client is sent, decoded.
    fn scan_all<D: Downstream>(
        down: &mut D,
        shared: &Shared,
        buf: &[u8],
    ) -> (Vec<BackendMessage>, Option<PgError>) {
        let mut out = BytesMut::new();
        down.begin(shared);
        let scan = scan(
            down,
            shared,
            FrameReader::default(),
            buf,
            &mut out,
            &mut None,
        );
        out.extend_from_slice(&buf[scan.written..scan.pos]);
        let mut msgs = Vec::new();
        while let Some(frame) = FrameReader::default().next_tagged(&mut out).unwrap() {
            msgs.push(BackendMessage::decode(frame).unwrap());
        }
        (msgs, scan.failed)
    }

    #[test]
    fn without_a_rewriter_every_frame_is_forwarded_from_the_buffer() {
        let shared = shared();
        let buf = encode(&[
            holder_description(),
            row("1", "ada"),
            BackendMessage::NoticeResponse(vec![(b'M', "hi".into())]),
            BackendMessage::CommandComplete("SELECT 1".into()),
            BackendMessage::ReadyForQuery(b'I'),
        ]);
        let mut out = BytesMut::new();
        let scan = scan(
            &mut Forward,
            &shared,
            FrameReader::default(),
            &buf,
            &mut out,
            &mut None,
        );
        assert!(out.is_empty() && scan.failed.is_none());
        assert_eq!((scan.written, scan.pos), (0, buf.len()));
    }

    #[test]
    fn rewriter_replaces_in_place_and_in_order() {
        let shared = shared();
        shared.requests.lock().unwrap().push(Request::Query);
        let mut down = Rewriting {
            rewriter: Box::new(Upper::default()),
            results: Results::default(),
        };
        let done = BackendMessage::CommandComplete("SELECT 2".into());
        let buf = encode(&[
            holder_description(),
            row("1", "ada"),
            notification("quiet"),
            row("2", "bob"),
            BackendMessage::NoticeResponse(vec![(b'M', "hi".into())]),
            done.clone(),
            notification("loud"),
            BackendMessage::ReadyForQuery(b'I'),
        ]);
        let (sent, failed) = scan_all(&mut down, &shared, &buf);
        assert!(failed.is_none());
        assert_eq!(
            sent,
            [
                holder_description(),
                row("1", "ADA"),
                row("2", "BOB"),
                BackendMessage::NoticeResponse(vec![
                    (b'S', "NOTICE".into()),
                    (b'M', "rewritten".into())
                ]),
                done,
                notification("loud"),
                BackendMessage::ReadyForQuery(b'I'),
            ]
        );
    }

    #[test]
    fn refusals_pass_the_error_hook() {
        let shared = shared();
        let refusal = vec![(b'C', "42501".to_string()), (b'M', "refused".into())];
        shared
            .refusals
            .lock()
            .unwrap()
            .insert(format!("{POISON}ABC_1"), refusal);
        shared.requests.lock().unwrap().push(Request::Query);
        shared.requests.lock().unwrap().push(Request::Query);
        let mut down = Rewriting {
            rewriter: Box::new(Upper::default()),
            results: Results::default(),
        };
        let buf = encode(&[
            BackendMessage::error("42601", "syntax error at or near \"sluice_refused_abc_1\""),
            BackendMessage::ReadyForQuery(b'I'),
            BackendMessage::error("22012", "division by zero"),
            BackendMessage::ReadyForQuery(b'I'),
        ]);
        let (sent, failed) = scan_all(&mut down, &shared, &buf);
        assert!(failed.is_none());
        assert_eq!(sent[0].field(b'C'), Some("42501"));
        assert_eq!(sent[0].field(b'M'), Some("refused (seen)"));
        assert_eq!(sent[2].field(b'M'), Some("division by zero (seen)"));
    }

    /// Fail closed: a replacement that breaks the protocol ends the
    /// session; nothing from that frame on reaches the client.
    #[test]
    fn a_rewrite_that_breaks_the_protocol_stops_the_stream() {
        let shared = shared();
        shared.requests.lock().unwrap().push(Request::Query);
        let mut down = Rewriting {
            rewriter: Box::new(Upper {
                break_rows: true,
                ..Upper::default()
            }),
            results: Results::default(),
        };
        let buf = encode(&[holder_description(), row("1", "ada"), row("2", "bob")]);
        let (sent, failed) = scan_all(&mut down, &shared, &buf);
        assert_eq!(sent, [holder_description()]);
        assert!(matches!(
            failed,
            Some(PgError::Protocol {
                leg: "rewriter",
                ..
            })
        ));
    }

    #[test]
    fn malformed_rows_from_the_database_are_protocol_errors() {
        let shared = shared();
        shared.requests.lock().unwrap().push(Request::Query);
        let mut down = Rewriting {
            rewriter: Box::new(Upper::default()),
            results: Results::default(),
        };
        let mut buf = encode(&[holder_description()]);
        buf.extend_from_slice(b"D\x00\x00\x00\x0a\x00\x01\x00\x00\x00\x09");
        let (sent, failed) = scan_all(&mut down, &shared, &buf);
        assert_eq!(sent, [holder_description()]);
        assert!(matches!(
            failed,
            Some(PgError::Protocol {
                leg: "upstream",
                source: CodecError::Malformed { .. }
            })
        ));
    }

    #[test]
    fn poison_errors_are_recognised_in_any_case_and_only_once() {
        let shared = shared();
        let refusal = vec![(b'C', "42501".to_string()), (b'M', "refused".into())];
        shared
            .refusals
            .lock()
            .unwrap()
            .insert(format!("{POISON}ABC_1"), refusal.clone());
        let frame = |text: &str| {
            let mut b = BytesMut::new();
            BackendMessage::ErrorResponse(vec![(b'C', "42601".into()), (b'M', text.into())])
                .encode(&mut b);
            b
        };
        assert_eq!(
            poison_answer(&shared, &frame("relation \"x\" does not exist")),
            None
        );
        assert_eq!(
            poison_answer(
                &shared,
                &frame("syntax error at or near \"sluice_refused_abc_1\"")
            ),
            Some(refusal)
        );
        assert_eq!(
            poison_answer(
                &shared,
                &frame("syntax error at or near \"sluice_refused_abc_1\"")
            ),
            None
        );
    }
}
