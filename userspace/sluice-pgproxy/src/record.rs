//! What a session records in the store, and when.
//!
//! Client → database: every decided statement (simple query, Parse, Bind
//! with its parameters, fast-path call) is recorded with its decision
//! before the bytes carrying it leave; the batch is sent only once
//! [`SessionLog::durable`] says the events are on disk. The frontend also
//! queues an [`Exec`] for every execution the database will answer (a
//! simple query, an Execute, a function call) and a sync point for every
//! ReadyForQuery it will send.
//!
//! Database → client: the [`Observer`] follows the answers — row
//! descriptions, rows, command tags, errors, ReadyForQuery — and records
//! one outcome per completed command, with what the result sent, against
//! the statement event that started it. Executions an earlier error in
//! their batch made the database skip are recorded as skipped.
use std::{collections::VecDeque, sync::Mutex, time::Instant};

use bytes::Bytes;
use sluice_pgwire::backend::Fields;
use sluice_store::{
    SessionLog,
    event::{Event, Outcome, Param, ResultSummary, StatementEvent},
    redact::mask_pans,
};

/// An answer the database owes, in order.
#[derive(Debug)]
pub(crate) enum Exec {
    /// An execution: a simple query (which may complete several commands
    /// and ends at ReadyForQuery), an Execute, or a function call.
    Run {
        /// The statement event that let it through.
        statement: Option<u32>,
        simple: bool,
        sent: Instant,
        /// Outcomes recorded for it so far.
        done: u32,
    },
    /// A ReadyForQuery (after Sync, a simple query, or a function call).
    Ready,
}

/// The queue shared by the two directions.
#[derive(Default)]
pub(crate) struct Execs(Mutex<VecDeque<Exec>>);

impl Execs {
    pub(crate) fn extend(&self, items: &mut Vec<Exec>) {
        if !items.is_empty() {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(items.drain(..));
        }
    }
}

/// The statement event for a decision.
pub(crate) fn statement(
    protocol: &'static str,
    text: &str,
    params: &[Option<Bytes>],
    formats: &[i16],
    decision: &crate::Decision,
) -> Event {
    let (decision, rule, approval) = match decision {
        crate::Decision::Allow => ("allow", None, None),
        crate::Decision::Deny { rule } => ("deny", Some(rule.clone()), None),
        crate::Decision::Hold(h) => ("approve", Some(h.rule.clone()), Some(h.id.clone())),
    };
    Event::Statement(StatementEvent {
        protocol: protocol.into(),
        text: mask_pans(text).into_owned(),
        params: params
            .iter()
            .enumerate()
            .map(|(i, p)| param(p.as_deref(), format_of(formats, i)))
            .collect(),
        decision: decision.into(),
        rule,
        approval,
    })
}

/// How a held statement was settled.
pub(crate) fn approval(
    statement: Option<u32>,
    id: &str,
    settled: &crate::Settled,
    waited: std::time::Duration,
) -> Event {
    Event::Approval(sluice_store::event::ApprovalEvent {
        statement,
        id: id.into(),
        outcome: settled.outcome.into(),
        by: settled.by.clone(),
        reason: (!settled.reason.is_empty()).then(|| mask_pans(&settled.reason).into_owned()),
        waited_ms: waited.as_millis() as u64,
    })
}

/// A Bind's format code for parameter `i` (none: all text; one: all).
fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

fn param(value: Option<&[u8]>, format: i16) -> Param {
    let Some(v) = value else {
        return Param::Null;
    };
    // Text-format values, and binary ones that are plain printable UTF-8
    // (text, varchar and bytea of text send themselves), are recorded with
    // cardholder data masked; anything else by length only: its content
    // cannot be checked, so it is never recorded.
    match std::str::from_utf8(v) {
        Ok(s) if format == 0 || s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') => {
            Param::Text(mask_pans(s).into_owned())
        }
        _ => Param::Binary {
            binary_bytes: v.len(),
        },
    }
}

/// Follows the database's answers and records outcomes.
pub(crate) struct Observer<'a> {
    log: &'a SessionLog,
    execs: &'a Execs,
    columns: Vec<String>,
    rows: u64,
    bytes: u64,
    masked: Vec<(String, u64)>,
}

impl<'a> Observer<'a> {
    /// The session's record this observer writes to.
    pub(crate) fn log(&self) -> &'a SessionLog {
        self.log
    }

    pub(crate) fn new(log: &'a SessionLog, execs: &'a Execs) -> Observer<'a> {
        Observer {
            log,
            execs,
            columns: Vec::new(),
            rows: 0,
            bytes: 0,
            masked: Vec::new(),
        }
    }

    /// One frame as the client receives it; `replaced` is the error that
    /// stands in for it (a refusal), if any.
    /// `masked`: values the rewriter masked in the result this frame ends.
    pub(crate) fn frame(
        &mut self,
        tag: u8,
        frame: &[u8],
        replaced: Option<&Fields>,
        masked: Vec<(String, u64)>,
    ) {
        if !masked.is_empty() {
            self.masked = masked;
        }
        let body = &frame[5.min(frame.len())..];
        match tag {
            b'T' => self.columns = column_names(body),
            b'D' | b'd' => {
                self.rows += u64::from(tag == b'D');
                self.bytes += body.len() as u64;
            }
            b'C' => {
                let tag = cstr(body);
                let rows = tag.rsplit(' ').next().and_then(|n| n.parse().ok());
                self.complete("ok", Some(tag), rows, None);
            }
            b'I' => self.complete("empty", None, None, None),
            b's' => self.complete("suspended", None, None, None),
            b'V' => self.complete("ok", None, None, None),
            b'E' => {
                let fields = match replaced {
                    Some(f) => f.clone(),
                    None => error_fields(body),
                };
                self.complete("error", None, None, Some(&fields));
            }
            b'Z' => self.ready(),
            _ => {}
        }
    }

    fn complete(
        &mut self,
        status: &str,
        tag: Option<String>,
        rows: Option<u64>,
        error: Option<&Fields>,
    ) {
        let masked = std::mem::take(&mut self.masked);
        let result = (!self.columns.is_empty() || self.rows > 0 || !masked.is_empty()).then(|| {
            ResultSummary {
                columns: std::mem::take(&mut self.columns),
                rows: self.rows,
                bytes: self.bytes,
                masked,
            }
        });
        self.rows = 0;
        self.bytes = 0;
        let mut execs = self.execs.0.lock().unwrap_or_else(|e| e.into_inner());
        let (statement, duration_us) = match execs.front_mut() {
            Some(Exec::Run {
                statement,
                simple,
                sent,
                done,
            }) => {
                let at = (*statement, sent.elapsed().as_micros() as u64);
                *done += 1;
                if !*simple {
                    execs.pop_front();
                }
                at
            }
            // An error before any execution (a failed Parse or Bind), or
            // one the server sent unprompted (e.g. an admin shutdown).
            _ => (None, 0),
        };
        drop(execs);
        let field = |code: u8| {
            error.and_then(|f| f.iter().find(|(c, _)| *c == code).map(|(_, v)| v.clone()))
        };
        self.log.record(&Event::Outcome(Outcome {
            statement,
            status: status.into(),
            tag,
            rows,
            sqlstate: field(b'C'),
            message: field(b'M').map(|m| mask_pans(&m).into_owned()),
            duration_us,
            result,
        }));
    }

    /// ReadyForQuery: everything up to its sync point is answered; an
    /// extended execution with no outcome was skipped after an error.
    fn ready(&mut self) {
        let mut skipped = Vec::new();
        {
            let mut execs = self.execs.0.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(e) = execs.pop_front() {
                match e {
                    Exec::Ready => break,
                    // A simple query or function call always answers before
                    // its ReadyForQuery; unanswered, it came while the
                    // database was discarding up to Sync after an error, so
                    // it was dropped with no answer at all, its own
                    // ReadyForQuery included: this one is a later one's.
                    Exec::Run {
                        statement,
                        simple: true,
                        done: 0,
                        ..
                    } => {
                        skipped.push(statement);
                        if matches!(execs.front(), Some(Exec::Ready)) {
                            execs.pop_front();
                        }
                    }
                    Exec::Run {
                        statement,
                        simple: false,
                        done: 0,
                        ..
                    } => skipped.push(statement),
                    Exec::Run { .. } => {}
                }
            }
        }
        for statement in skipped {
            self.log.record(&Event::Outcome(Outcome {
                statement,
                status: "skipped".into(),
                ..Outcome::default()
            }));
        }
        self.columns.clear();
        self.rows = 0;
        self.bytes = 0;
    }
}

fn cstr(body: &[u8]) -> String {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// Column names of a RowDescription (malformed input gives what was read).
fn column_names(body: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    if body.len() < 2 {
        return names;
    }
    let count = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut rest = &body[2..];
    for _ in 0..count {
        let Some(end) = rest.iter().position(|b| *b == 0) else {
            break;
        };
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        // table oid 4, attnum 2, type oid 4, size 2, modifier 4, format 2
        rest = rest.get(end + 1 + 18..).unwrap_or(&[]);
    }
    names
}

fn error_fields(body: &[u8]) -> Fields {
    let mut fields = Vec::new();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        fields.push((code, String::from_utf8_lossy(&tail[..end]).into_owned()));
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_masked_or_reduced_to_a_length() {
        assert_eq!(param(None, 0), Param::Null);
        assert_eq!(
            param(Some(b"4111111111111111"), 0),
            Param::Text("411111******1111".into())
        );
        assert_eq!(
            param(Some(&[0, 0, 0, 42]), 1),
            Param::Binary { binary_bytes: 4 }
        );
        assert_eq!(param(Some(b"plain"), 1), Param::Text("plain".into()));
        assert_eq!(format_of(&[1], 3), 1);
        assert_eq!(format_of(&[0, 1], 1), 1);
    }

    #[test]
    fn row_descriptions_and_errors_decode() {
        let mut t = vec![0, 2];
        for name in ["id", "pan"] {
            t.extend_from_slice(name.as_bytes());
            t.push(0);
            t.extend_from_slice(&[0; 18]);
        }
        assert_eq!(column_names(&t), ["id", "pan"]);
        let e = b"SERROR\0C42501\0Mno\0\0";
        assert_eq!(
            error_fields(e),
            vec![
                (b'S', "ERROR".into()),
                (b'C', "42501".into()),
                (b'M', "no".into())
            ]
        );
    }
}
