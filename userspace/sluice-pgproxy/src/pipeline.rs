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
//! Database → client: frames are written straight from the read buffer after
//! a header scan. Only an ErrorResponse carrying a poison marker is touched:
//! it is replaced by sluice's refusal (SQLSTATE 42501). If an earlier
//! statement of the same batch failed first, the database never reached the
//! poison and the client sees that earlier error, as it would without sluice.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::{BufMut, Bytes, BytesMut};
use sluice_pgwire::{BackendMessage, Frame, FrameReader, FrontendMessage, frontend::Target};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Notify,
};

use crate::{
    Decision, PgError, SessionConfig, Statement, Summary,
    io::{Conn, ReadHalf, WriteHalf},
};

/// Every poison statement starts with this, then the session's nonce and
/// the refusal's sequence number. Not valid SQL: the server's parser fails
/// on it before anything runs.
const POISON: &str = "SLUICE_REFUSED_";

struct Shared {
    /// Refusals waiting for their poison's error, by marker.
    refusals: Mutex<HashMap<String, BackendMessage>>,
    /// The session's random part of every marker.
    nonce: String,
    /// A fatal error for the client (malformed client input).
    fatal: Mutex<Option<BackendMessage>>,
    wake: Notify,
    /// The client sent Terminate (an upstream EOF is then expected).
    terminated: AtomicBool,
}

pub(crate) async fn run(
    client: Conn,
    upstream: Conn,
    cbuf: BytesMut,
    ubuf: BytesMut,
    config: &SessionConfig,
    summary: &mut Summary,
) -> Result<(), PgError> {
    let shared = Arc::new(Shared {
        refusals: Mutex::new(HashMap::new()),
        nonce: nonce(),
        fatal: Mutex::new(None),
        wake: Notify::new(),
        terminated: AtomicBool::new(false),
    });
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    let reader = FrameReader::new(config.max_message);
    let mut front = Frontend {
        config,
        shared: &shared,
        statements: HashMap::new(),
        batch_refused: false,
        next_refusal: 0,
        counts: Counts::default(),
    };
    let up = front.run(cr, uw, cbuf, reader);
    let down = backend(ur, cw, ubuf, reader, &shared);
    let (up, (bytes_down, down)) = tokio::join!(up, down);
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
    config: &'a SessionConfig,
    shared: &'a Shared,
    /// Prepared statement texts by name ("" = unnamed), for Bind decisions.
    statements: HashMap<String, String>,
    /// The current extended batch already hit a refusal: the database is
    /// discarding up to Sync, so the rest needs no decision.
    batch_refused: bool,
    next_refusal: u64,
    counts: Counts,
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
                if let Err(source) = self.handle(frame, &mut out) {
                    return Err(self.fatal(&mut uw, &out, source).await);
                }
                if terminate {
                    self.shared.terminated.store(true, Ordering::Release);
                    self.counts.bytes += out.len() as u64;
                    send(&mut uw, &out, "upstream").await?;
                    let _ = uw.shutdown().await;
                    return Ok(());
                }
            }
            if !out.is_empty() {
                self.counts.bytes += out.len() as u64;
                send(&mut uw, &out, "upstream").await?;
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

    /// Malformed client input: flush what was accepted, have the other task
    /// tell the client, and end the session.
    async fn fatal(
        &self,
        uw: &mut WriteHalf,
        pending: &BytesMut,
        source: sluice_pgwire::CodecError,
    ) -> PgError {
        let _ = send(uw, pending, "upstream").await;
        let _ = uw.shutdown().await;
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

    /// Decide and forward one client message into `out`.
    fn handle(
        &mut self,
        frame: Frame,
        out: &mut BytesMut,
    ) -> Result<(), sluice_pgwire::CodecError> {
        match frame.tag {
            b'Q' | b'P' | b'B' | b'F' | b'C' => {}
            b'S' => {
                self.batch_refused = false;
                put_frame(out, &frame);
                return Ok(());
            }
            // Everything else needs no decision: forwarded by type byte.
            _ => {
                put_frame(out, &frame);
                return Ok(());
            }
        }
        if self.batch_refused && frame.tag != b'Q' && frame.tag != b'F' {
            // The database discards these until Sync; keep its state
            // exactly as without sluice by letting it do so.
            put_frame(out, &frame);
            return Ok(());
        }
        let msg = FrontendMessage::decode(frame.clone())?;
        let decision = match &msg {
            FrontendMessage::Query(text) => self.decide(text, &[], "simple"),
            FrontendMessage::Parse { name, query, .. } => {
                let d = self.decide(query, &[], "extended");
                if d == Decision::Allow {
                    self.statements.insert(name.clone(), query.clone());
                }
                d
            }
            FrontendMessage::Bind {
                statement, params, ..
            } => {
                // A statement prepared on another path has no text here:
                // decide on what is known (an empty text).
                let text = self.statements.get(statement).cloned().unwrap_or_default();
                self.decide(&text, params, "extended")
            }
            FrontendMessage::FunctionCall { oid, args, .. } => self.decide(
                &format!("-- fast-path function call, oid {oid}"),
                args,
                "function-call",
            ),
            FrontendMessage::Close {
                target: Target::Statement,
                name,
            } => {
                self.statements.remove(name);
                Decision::Allow
            }
            _ => Decision::Allow,
        };
        match decision {
            Decision::Allow => put_frame(out, &frame),
            Decision::Deny { rule } => {
                let marker = self.refusal(rule);
                match msg {
                    FrontendMessage::Query(_) | FrontendMessage::FunctionCall { .. } => {
                        FrontendMessage::Query(marker).encode(out);
                    }
                    _ => {
                        self.batch_refused = true;
                        FrontendMessage::Parse {
                            name: "sluice_refused".into(),
                            query: marker,
                            param_types: vec![],
                        }
                        .encode(out);
                    }
                }
            }
        }
        Ok(())
    }

    fn decide(&mut self, text: &str, params: &[Option<Bytes>], protocol: &'static str) -> Decision {
        let d = self.config.policy.decide(&Statement {
            text,
            params,
            protocol,
        });
        match &d {
            Decision::Allow => self.counts.allowed += 1,
            Decision::Deny { rule } => {
                self.counts.denied += 1;
                tracing::info!(event = "statement_denied", rule = %rule, protocol, statement = %truncate(text, 200), "statement refused");
            }
        }
        d
    }

    /// Register a refusal; returns the poison statement that stands in for it.
    fn refusal(&mut self, rule: String) -> String {
        self.next_refusal += 1;
        let marker = format!("{POISON}{}_{}", self.shared.nonce, self.next_refusal);
        let error = BackendMessage::ErrorResponse(vec![
            (b'S', "ERROR".into()),
            (b'V', "ERROR".into()),
            (b'C', "42501".into()),
            (b'M', "sluice: statement refused by policy".into()),
            (b'D', format!("Rule: {rule}.")),
        ]);
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

/// Database → client. Returns the bytes sent to the client and how it ended.
///
/// One frame-header scan per message and no copy: complete frames go to the
/// client straight from the read buffer. Only an ErrorResponse that answers
/// a poison statement is replaced.
async fn backend(
    mut ur: ReadHalf,
    mut cw: WriteHalf,
    mut buf: BytesMut,
    reader: FrameReader,
    shared: &Shared,
) -> (u64, Result<(), PgError>) {
    let mut sent = 0u64;
    let result = 'session: loop {
        let fatal = shared
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(msg) = fatal {
            let mut out = BytesMut::new();
            msg.encode(&mut out);
            let _ = cw.write_all(&buf).await; // what the database already said
            let _ = send(&mut cw, &out, "client").await;
            break Ok(());
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
            if tag == b'E'
                && let Some(refusal) = poison_answer(shared, &buf[pos..pos + total])
            {
                let mut replacement = BytesMut::new();
                refusal.encode(&mut replacement);
                for piece in [&buf[written..pos], &replacement[..]] {
                    sent += piece.len() as u64;
                    if let Err(e) = cw.write_all(piece).await {
                        break 'session Err(PgError::Io {
                            leg: "client",
                            source: e,
                        });
                    }
                }
                written = pos + total;
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

/// If this ErrorResponse frame answers a poison statement, the refusal that
/// replaces it.
fn poison_answer(shared: &Shared, frame: &[u8]) -> Option<BackendMessage> {
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
    use super::*;

    #[test]
    fn poison_errors_are_recognised_in_any_case_and_only_once() {
        let shared = Shared {
            refusals: Mutex::new(HashMap::new()),
            nonce: "ABC".into(),
            fatal: Mutex::new(None),
            wake: Notify::new(),
            terminated: AtomicBool::new(false),
        };
        let refusal = BackendMessage::error("42501", "refused");
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
