//! A ready session: the two directions, each on its own task so neither can
//! block the other (a client that writes a long pipeline while not yet
//! reading must not deadlock the proxy).
//!
//! Client → database: every message is decoded; statements pass the
//! policy. A refused simple query never reaches the database; the client
//! gets ErrorResponse (42501) and ReadyForQuery. A refusal inside an
//! extended-query batch discards the batch's remaining messages up to Sync,
//! as PostgreSQL does after an error; if part of the batch already went
//! upstream, a Sync is sent to close that part and the refusal is reported
//! in place of its ReadyForQuery.
//!
//! Database → client: responses are forwarded frame by frame (batched per
//! read). Because refusals are answered by sluice while earlier statements
//! may still be running upstream, every expected ReadyForQuery is a slot in
//! an ordered queue, and injected responses wait their turn behind them.
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
};

use bytes::{BufMut, BytesMut};
use sluice_pgwire::{BackendMessage, Frame, FrameReader, FrontendMessage};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::Notify,
};

use crate::{Decision, PgError, SessionConfig, Statement, Summary};

/// One expected answer, in the order the client will see it.
enum Slot {
    /// A ReadyForQuery will come from upstream. If `refusal` is set, the
    /// client gets it just before that ReadyForQuery (a batch that was cut
    /// short by a refusal after part of it went upstream).
    Upstream { refusal: Option<BackendMessage> },
    /// sluice answers itself: these messages, then ReadyForQuery with the
    /// current transaction status.
    Injected(BackendMessage),
}

struct Shared {
    slots: Mutex<VecDeque<Slot>>,
    wake: Notify,
    /// Transaction status of the last ReadyForQuery from upstream.
    tx_status: AtomicU8,
    /// The client sent Terminate (an upstream EOF is then expected).
    terminated: AtomicBool,
}

impl Shared {
    fn push(&self, slot: Slot) {
        // Only an injected answer may need the database-side task to act
        // without upstream input; an upstream slot is served when its
        // ReadyForQuery arrives, so waking the task for it would be wasted
        // work on every statement.
        let wake = matches!(slot, Slot::Injected(_));
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(slot);
        if wake {
            self.wake.notify_one();
        }
    }
}

pub(crate) async fn run(
    client: TcpStream,
    upstream: TcpStream,
    cbuf: BytesMut,
    ubuf: BytesMut,
    config: &SessionConfig,
    summary: &mut Summary,
) -> Result<(), PgError> {
    let shared = Arc::new(Shared {
        slots: Mutex::new(VecDeque::new()),
        wake: Notify::new(),
        tx_status: AtomicU8::new(b'I'),
        terminated: AtomicBool::new(false),
    });
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let reader = FrameReader::new(config.max_message);
    let mut front = Frontend {
        config,
        shared: &shared,
        statements: HashMap::new(),
        failed_batch: None,
        batch_forwarded: false,
        summary: SummaryCounts::default(),
    };
    let up = front.run(cr, uw, cbuf, reader);
    let down = backend(ur, cw, ubuf, reader, &shared);
    let (up, down) = tokio::join!(up, down);
    summary.statements_allowed = front.summary.allowed;
    summary.statements_denied = front.summary.denied;
    summary.bytes_up = front.summary.bytes;
    let (down_bytes, down_result) = down;
    summary.bytes_down = down_bytes;
    up.and(down_result)
}

#[derive(Default)]
struct SummaryCounts {
    allowed: u64,
    denied: u64,
    bytes: u64,
}

struct Frontend<'a> {
    config: &'a SessionConfig,
    shared: &'a Shared,
    /// Prepared statement texts by name ("" = unnamed), for Bind decisions.
    statements: HashMap<String, String>,
    /// A refusal in the current extended batch: discard until Sync.
    failed_batch: Option<BackendMessage>,
    /// Part of the current extended batch already went upstream.
    batch_forwarded: bool,
    summary: SummaryCounts,
}

impl Frontend<'_> {
    async fn run(
        &mut self,
        mut cr: OwnedReadHalf,
        mut uw: OwnedWriteHalf,
        mut buf: BytesMut,
        reader: FrameReader,
    ) -> Result<(), PgError> {
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            loop {
                let frame = match reader.next_tagged(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(source) => {
                        self.refuse_and_close(&mut uw, &out).await;
                        return Err(PgError::Protocol {
                            leg: "client",
                            source,
                        });
                    }
                };
                let tag = frame.tag;
                if self.handle(frame, &mut out)? && tag == b'X' {
                    self.shared.terminated.store(true, Ordering::Release);
                    uw.write_all(&out).await.map_err(|source| PgError::Io {
                        leg: "upstream",
                        source,
                    })?;
                    let _ = uw.shutdown().await;
                    return Ok(());
                }
            }
            if !out.is_empty() {
                self.summary.bytes += out.len() as u64;
                uw.write_all(&out).await.map_err(|source| PgError::Io {
                    leg: "upstream",
                    source,
                })?;
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
                let _ = uw.shutdown().await;
                return Ok(());
            }
        }
    }

    /// A malformed client message: tell upstream nothing more is coming.
    async fn refuse_and_close(&self, uw: &mut OwnedWriteHalf, pending: &BytesMut) {
        let _ = uw.write_all(pending).await;
        self.shared
            .push(Slot::Injected(BackendMessage::ErrorResponse(vec![
                (b'S', "FATAL".into()),
                (b'V', "FATAL".into()),
                (b'C', "08P01".into()),
                (
                    b'M',
                    "sluice: invalid message from client; closing the session".into(),
                ),
            ])));
        let _ = uw.shutdown().await;
    }

    /// Decide and forward one client message into `out`. Returns true if it
    /// was forwarded.
    fn handle(&mut self, frame: Frame, out: &mut BytesMut) -> Result<bool, PgError> {
        // Only statement-bearing messages need decoding; the rest are
        // forwarded (or discarded) by type byte alone.
        match frame.tag {
            b'Q' | b'P' | b'B' | b'F' | b'C' => {}
            b'S' => return Ok(self.sync(frame, out)),
            b'd' | b'c' | b'f' | b'X' => {
                put_frame(out, &frame);
                return Ok(true);
            }
            _ => return Ok(self.extended(frame, out)),
        }
        let msg = FrontendMessage::decode(frame.clone()).map_err(|source| PgError::Protocol {
            leg: "client",
            source,
        })?;
        match &msg {
            FrontendMessage::Query(text) => {
                if self.failed_batch.is_some() {
                    return Ok(false);
                }
                match self.decide(text, &[], "simple") {
                    Decision::Allow => {
                        put_frame(out, &frame);
                        self.shared.push(Slot::Upstream { refusal: None });
                        Ok(true)
                    }
                    Decision::Deny { rule } => {
                        self.shared.push(Slot::Injected(refusal(&rule)));
                        Ok(false)
                    }
                }
            }
            FrontendMessage::Parse { name, query, .. } => {
                if self.failed_batch.is_some() {
                    return Ok(false);
                }
                match self.decide(query, &[], "extended") {
                    Decision::Allow => {
                        self.statements.insert(name.clone(), query.clone());
                        Ok(self.extended(frame, out))
                    }
                    Decision::Deny { rule } => {
                        self.fail_batch(refusal(&rule), out);
                        Ok(false)
                    }
                }
            }
            FrontendMessage::Bind {
                statement, params, ..
            } => {
                if self.failed_batch.is_some() {
                    return Ok(false);
                }
                // A statement prepared on another path (or before sluice)
                // has no text here: decide on what is known.
                let text = self.statements.get(statement).cloned().unwrap_or_default();
                match self.decide(&text, params, "extended") {
                    Decision::Allow => Ok(self.extended(frame, out)),
                    Decision::Deny { rule } => {
                        self.fail_batch(refusal(&rule), out);
                        Ok(false)
                    }
                }
            }
            FrontendMessage::FunctionCall { oid, args, .. } => {
                let text = format!("-- fast-path function call, oid {oid}");
                match self.decide(&text, args, "function-call") {
                    Decision::Allow => {
                        put_frame(out, &frame);
                        self.shared.push(Slot::Upstream { refusal: None });
                        Ok(true)
                    }
                    Decision::Deny { rule } => {
                        self.shared.push(Slot::Injected(refusal(&rule)));
                        Ok(false)
                    }
                }
            }
            FrontendMessage::Close { name, target, .. } => {
                if *target == sluice_pgwire::frontend::Target::Statement {
                    self.statements.remove(name);
                }
                Ok(self.extended(frame, out))
            }
            _ => Ok(self.extended(frame, out)),
        }
    }

    fn decide(
        &mut self,
        text: &str,
        params: &[Option<bytes::Bytes>],
        protocol: &'static str,
    ) -> Decision {
        let d = self.config.policy.decide(&Statement {
            text,
            params,
            protocol,
        });
        match &d {
            Decision::Allow => self.summary.allowed += 1,
            Decision::Deny { rule } => {
                self.summary.denied += 1;
                tracing::info!(event = "statement_denied", rule = %rule, protocol, statement = %truncate(text, 200), "statement refused");
            }
        }
        d
    }

    /// An extended-protocol message other than Sync: forwarded unless the
    /// batch has failed.
    fn extended(&mut self, frame: Frame, out: &mut BytesMut) -> bool {
        if self.failed_batch.is_some() {
            return false;
        }
        put_frame(out, &frame);
        self.batch_forwarded = true;
        true
    }

    /// Refuse the rest of the current extended batch.
    fn fail_batch(&mut self, error: BackendMessage, out: &mut BytesMut) {
        if self.batch_forwarded {
            // Close what already went upstream; the refusal replaces
            // nothing but precedes that part's ReadyForQuery.
            let mut sync = BytesMut::new();
            FrontendMessage::Sync.encode(&mut sync);
            out.put_slice(&sync);
            self.shared.push(Slot::Upstream {
                refusal: Some(error),
            });
            self.failed_batch = Some(BackendMessage::NoData); // marker: answered already
        } else {
            self.failed_batch = Some(error);
        }
    }

    fn sync(&mut self, frame: Frame, out: &mut BytesMut) -> bool {
        self.batch_forwarded = false;
        match self.failed_batch.take() {
            None => {
                put_frame(out, &frame);
                self.shared.push(Slot::Upstream { refusal: None });
                true
            }
            Some(BackendMessage::NoData) => false,
            Some(error) => {
                self.shared.push(Slot::Injected(error));
                false
            }
        }
    }
}

fn refusal(rule: &str) -> BackendMessage {
    BackendMessage::ErrorResponse(vec![
        (b'S', "ERROR".into()),
        (b'V', "ERROR".into()),
        (b'C', "42501".into()),
        (b'M', "sluice: statement refused by policy".into()),
        (b'D', format!("Rule: {rule}.")),
    ])
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

/// Database → client. Returns the bytes sent to the client and how it ended.
///
/// The common case costs one frame-header scan per message and no copy:
/// complete frames are written to the client straight from the read
/// buffer. Only where sluice owes the client something (a refusal before a
/// ReadyForQuery, an injected answer after one) is the run split.
async fn backend(
    mut ur: OwnedReadHalf,
    mut cw: OwnedWriteHalf,
    mut buf: BytesMut,
    reader: FrameReader,
    shared: &Shared,
) -> (u64, Result<(), PgError>) {
    let mut sent = 0u64;
    let mut extra = BytesMut::new();
    let result = 'session: loop {
        // Answer whatever sluice owes that is not waiting behind upstream.
        drain_injected(shared, &mut extra);
        if !extra.is_empty() {
            sent += extra.len() as u64;
            if let Err(source) = cw.write_all(&extra).await {
                break Err(PgError::Io {
                    leg: "client",
                    source,
                });
            }
            extra.clear();
        }
        let mut pos = 0;
        let mut written = 0;
        loop {
            let (tag, total) = match reader.peek_tagged(&buf[pos..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(source) => {
                    let _ = cw.write_all(&buf[written..pos]).await;
                    break 'session Err(PgError::Protocol {
                        leg: "upstream",
                        source,
                    });
                }
            };
            if tag == b'Z' && total == 6 {
                let status = buf[pos + 5];
                shared.tx_status.store(status, Ordering::Release);
                let front = shared
                    .slots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
                let mut before = BytesMut::new();
                match front {
                    Some(Slot::Upstream { refusal: Some(err) }) => err.encode(&mut before),
                    Some(Slot::Upstream { refusal: None }) | None => {}
                    Some(Slot::Injected(_)) => {
                        tracing::warn!(
                            "protocol order lost: an injected answer was due before upstream's ReadyForQuery"
                        );
                    }
                }
                drain_injected(shared, &mut extra);
                if !before.is_empty() || !extra.is_empty() {
                    let pieces: [&[u8]; 4] =
                        [&buf[written..pos], &before, &buf[pos..pos + total], &extra];
                    for piece in pieces {
                        sent += piece.len() as u64;
                        if let Err(source) = cw.write_all(piece).await {
                            break 'session Err(PgError::Io {
                                leg: "client",
                                source,
                            });
                        }
                    }
                    extra.clear();
                    written = pos + total;
                }
            }
            pos += total;
            if pos - written >= 256 * 1024 {
                // Stream large results instead of scanning them all first.
                break;
            }
        }
        if pos > written {
            sent += (pos - written) as u64;
            if let Err(source) = cw.write_all(&buf[written..pos]).await {
                break Err(PgError::Io {
                    leg: "client",
                    source,
                });
            }
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
                Ok(0) => {
                    lost_database(&mut cw).await;
                    break Ok(());
                }
                Err(source) => {
                    lost_database(&mut cw).await;
                    break Err(PgError::Io { leg: "upstream", source });
                }
                Ok(_) => {}
            },
            () = shared.wake.notified() => {}
        }
    };
    let _ = cw.shutdown().await;
    (sent, result)
}

/// Move injected answers at the head of the queue into `out`.
fn drain_injected(shared: &Shared, out: &mut BytesMut) {
    let mut slots = shared.slots.lock().unwrap_or_else(|e| e.into_inner());
    while matches!(slots.front(), Some(Slot::Injected(_))) {
        if let Some(Slot::Injected(msg)) = slots.pop_front() {
            msg.encode(out);
            BackendMessage::ReadyForQuery(shared.tx_status.load(Ordering::Acquire)).encode(out);
        }
    }
}

/// The database closed the connection under a live session: say so.
async fn lost_database(cw: &mut OwnedWriteHalf) {
    let mut out = BytesMut::new();
    BackendMessage::ErrorResponse(vec![
        (b'S', "FATAL".into()),
        (b'V', "FATAL".into()),
        (b'C', "08006".into()),
        (b'M', "sluice: the database closed the connection".into()),
    ])
    .encode(&mut out);
    let _ = cw.write_all(&out).await;
}
