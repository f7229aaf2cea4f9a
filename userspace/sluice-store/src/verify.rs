//! Verification: from a store or an export, with only the public key.
//!
//! Feed it every checkpoint in order, then every event in (session, seq)
//! order; [`Verifier::finish`] reports every problem, first bad event
//! first. What it checks:
//!
//! - checkpoints: numbered 1, 2, … without gaps, each signed by the key,
//!   each naming the hash of the one before;
//! - each session: seqs 0, 1, … without gaps; every stored hash is the
//!   hash of the event's content and position chained to the previous one;
//! - every signed head is present and equal: nothing after it was cut, and
//!   nothing before it was replaced;
//! - every event the newest checkpoint counts (global ≤ its `global`) lies
//!   within a signed head: nothing was added after signing;
//! - for a whole store: events present plus events expired equal the count
//!   the newest checkpoint signed, and every signed session is present
//!   unless a signed expiry removed it.
//!
//! Events written after the newest checkpoint are reported as unsigned:
//! their chain is checked, but nothing signed vouches for them yet. A
//! store the daemon has closed (or recovered after a crash) has none, so
//! `sluice audit verify` fails on them unless told the store is live: an
//! unsigned tail on a closed store means newer checkpoints were removed.
//! Each session must also end at its `session_end`: anything after it was
//! added.
use std::collections::{HashMap, HashSet};

use crate::{
    PublicKey,
    checkpoint::Checkpoint,
    codec::{self, Hash, Position},
    read::{RecordedCheckpoint, RecordedEvent},
};

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The session, if the problem is in one.
    pub session: Option<u64>,
    /// The first event concerned.
    pub seq: Option<u32>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.session, self.seq) {
            (Some(s), Some(q)) => write!(f, "session {s} event {q}: {}", self.what),
            (Some(s), None) => write!(f, "session {s}: {}", self.what),
            _ => write!(f, "{}", self.what),
        }
    }
}

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// The newest checkpoint: number, time (µs), hash of its signed bytes.
    pub newest: Option<(u64, u64, String)>,
    /// Sessions checked.
    pub sessions: u64,
    /// Events checked.
    pub events: u64,
    /// Events newer than the newest checkpoint (chained, not yet signed).
    pub unsigned_events: u64,
    /// Sessions removed by signed retention.
    pub expired_sessions: u64,
    /// Signed sessions outside a filtered export (not checked).
    pub outside_scope: u64,
    /// Problems, checkpoint problems first, then by session and event.
    pub problems: Vec<Problem>,
}

impl Report {
    /// No problem found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Which sessions the input is meant to hold.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The whole store: a signed session missing is a problem.
    Everything,
    /// Only these sessions (a filtered export).
    Sessions(HashSet<u64>),
}

/// Incremental verifier.
pub struct Verifier {
    key: PublicKey,
    report: Report,
    checkpoint_problems: Vec<Problem>,
    prev_checkpoint: String,
    next_n: u64,
    /// The newest checkpoint's global count.
    signed_global: u64,
    expired_events: u64,
    /// The newest signed head of each session: seq, hash, checkpoint n. A
    /// matching head pins every event before it through the chain.
    signed: HashMap<u64, (u32, Hash, u64)>,
    expired: HashSet<u64>,
    /// Events present with global ≤ signed_global (for the count check).
    counted: u64,
    current: Option<Walk>,
    seen_sessions: HashSet<u64>,
    last_key: Option<(u64, u32)>,
}

/// The session being walked.
struct Walk {
    session: u64,
    next_seq: u32,
    prev: Hash,
    /// (seq, stored hash, global) of every event, in seq order.
    events: Vec<(u32, Hash, u64)>,
    /// Seq of its `session_end`, once seen.
    ended: Option<u32>,
}

impl Verifier {
    /// A verifier trusting `key`.
    pub fn new(key: PublicKey) -> Verifier {
        Verifier {
            key,
            report: Report::default(),
            checkpoint_problems: Vec::new(),
            prev_checkpoint: String::new(),
            next_n: 1,
            signed_global: 0,
            expired_events: 0,
            signed: HashMap::new(),
            expired: HashSet::new(),
            counted: 0,
            current: None,
            seen_sessions: HashSet::new(),
            last_key: None,
        }
    }

    fn cp_problem(&mut self, what: String) {
        self.checkpoint_problems.push(Problem {
            session: None,
            seq: None,
            what,
        });
    }

    /// The next checkpoint (in order; all of them before any event).
    pub fn checkpoint(&mut self, c: &RecordedCheckpoint) {
        self.report.checkpoints += 1;
        if self.last_key.is_some() {
            self.cp_problem(format!(
                "checkpoint {} comes after events: checkpoints must all come first (moved)",
                c.n
            ));
        }
        let signed = codec::signed_bytes(&c.body);
        let hash = codec::hex(&codec::sha256(&signed));
        if c.n != self.next_n {
            self.cp_problem(format!(
                "checkpoint {} found where checkpoint {} was expected: checkpoints were removed or inserted",
                c.n, self.next_n
            ));
        }
        self.next_n = c.n.saturating_add(1);
        if !self.key.verify(&signed, &c.signature) {
            self.cp_problem(format!(
                "checkpoint {}: the signature does not verify with key {} (edited, or signed by another key)",
                c.n,
                self.key.fingerprint()
            ));
            self.prev_checkpoint = hash;
            return;
        }
        let cp: Checkpoint = match serde_json::from_slice(&c.body) {
            Ok(cp) => cp,
            Err(e) => {
                self.cp_problem(format!("checkpoint {}: signed but unreadable: {e}", c.n));
                return;
            }
        };
        if cp.n != c.n {
            self.cp_problem(format!(
                "checkpoint stored as {} says it is number {}",
                c.n, cp.n
            ));
        }
        if cp.prev != self.prev_checkpoint {
            self.cp_problem(format!(
                "checkpoint {}: does not follow the checkpoint before it (a checkpoint was removed or replaced)",
                c.n
            ));
        }
        if cp.global < self.signed_global {
            self.cp_problem(format!(
                "checkpoint {}: its event count went backwards",
                c.n
            ));
        }
        self.report.newest = Some((c.n, cp.time_us, hash.clone()));
        self.prev_checkpoint = hash;
        self.signed_global = cp.global;
        self.expired_events = self.expired_events.saturating_add(cp.expired_events);
        for head in &cp.heads {
            match codec::unhex::<32>(&head.2) {
                Some(h) => {
                    let newer = self
                        .signed
                        .get(&head.0)
                        .is_none_or(|(s, _, _)| head.1 >= *s);
                    if newer {
                        self.signed.insert(head.0, (head.1, h, cp.n));
                    }
                }
                None => self.cp_problem(format!(
                    "checkpoint {}: head of session {} is not a hash",
                    c.n, head.0
                )),
            }
        }
        for s in &cp.expired {
            if self.expired.insert(*s) {
                self.report.expired_sessions += 1;
            }
        }
    }

    fn problem(&mut self, session: u64, seq: Option<u32>, what: String) {
        self.report.problems.push(Problem {
            session: Some(session),
            seq,
            what,
        });
    }

    /// The next event, in (session, seq) order.
    pub fn event(&mut self, e: &RecordedEvent) {
        self.report.events += 1;
        if let Some(last) = self.last_key
            && (e.session, e.seq) <= last
        {
            self.problem(
                e.session,
                Some(e.seq),
                format!(
                    "out of order: comes after session {} event {}",
                    last.0, last.1
                ),
            );
            return;
        }
        self.last_key = Some((e.session, e.seq));
        if self.current.as_ref().is_none_or(|w| w.session != e.session) {
            self.close_session();
            self.seen_sessions.insert(e.session);
            self.current = Some(Walk {
                session: e.session,
                next_seq: 0,
                prev: codec::genesis(e.session),
                events: Vec::new(),
                ended: None,
            });
        }
        let Some(mut walk) = self.current.take() else {
            return;
        };
        if e.seq != walk.next_seq {
            self.problem(
                e.session,
                Some(walk.next_seq),
                format!(
                    "missing: the next event present is {} (events were deleted)",
                    e.seq
                ),
            );
        }
        if let Some(end) = walk.ended {
            self.problem(
                e.session,
                Some(e.seq),
                format!("comes after the session's end (event {end}): added"),
            );
        }
        let at = Position {
            session: e.session,
            seq: e.seq,
            global: e.global,
            time_us: e.time_us,
        };
        if codec::link(&walk.prev, &at, &e.body) != e.hash {
            self.problem(
                e.session,
                Some(e.seq),
                "its hash does not match its content and place in the chain (edited, moved, or inserted)"
                    .into(),
            );
        }
        if e.global <= self.signed_global {
            self.counted += 1;
        } else {
            self.report.unsigned_events += 1;
        }
        // Writers put `kind` first; an end event is the session's last.
        if e.body.starts_with(br#"{"kind":"session_end""#) && walk.ended.is_none() {
            walk.ended = Some(e.seq);
        }
        walk.prev = e.hash;
        walk.next_seq = e.seq.saturating_add(1);
        walk.events.push((e.seq, e.hash, e.global));
        self.current = Some(walk);
    }

    fn close_session(&mut self) {
        let Some(walk) = self.current.take() else {
            return;
        };
        self.report.sessions += 1;
        let last_signed = match self.signed.remove(&walk.session) {
            None => None,
            Some((seq, hash, n)) => {
                match walk.events.binary_search_by_key(&seq, |(s, _, _)| *s) {
                    Err(_) if walk.events.last().is_none_or(|(s, _, _)| *s < seq) => self.problem(
                        walk.session,
                        Some(walk.next_seq),
                        format!(
                            "missing: checkpoint {n} signed events up to {seq}, the session ends at {} (truncated)",
                            walk.next_seq.saturating_sub(1)
                        ),
                    ),
                    Err(_) => self.problem(
                        walk.session,
                        Some(seq),
                        format!("missing: checkpoint {n} signed this event (deleted)"),
                    ),
                    Ok(i) if walk.events[i].1 != hash => self.problem(
                        walk.session,
                        Some(seq),
                        format!("differs from what checkpoint {n} signed (replaced)"),
                    ),
                    Ok(_) => {}
                }
                Some(seq)
            }
        };
        // Counted by the newest checkpoint but beyond its signed head:
        // added after signing.
        if let Some(&(seq, _, _)) = walk
            .events
            .iter()
            .filter(|(s, _, _)| last_signed.is_none_or(|l| *s > l))
            .find(|(_, _, g)| *g <= self.signed_global)
        {
            self.problem(
                walk.session,
                Some(seq),
                "not covered by the checkpoint that counts it (added after signing)".into(),
            );
        }
    }

    /// Finish: check what was never seen, sort, and report.
    pub fn finish(mut self, scope: &Scope) -> Report {
        self.close_session();
        // Heads left: sessions whose events never came.
        let mut left: Vec<(u64, u64)> = self.signed.iter().map(|(s, (_, _, n))| (*s, *n)).collect();
        left.sort_unstable();
        for (session, n) in left {
            if self.expired.contains(&session) {
                continue;
            }
            let expected = match scope {
                Scope::Everything => true,
                Scope::Sessions(s) => s.contains(&session),
            };
            if expected {
                self.problem(
                    session,
                    Some(0),
                    format!("missing: the whole session is gone, though checkpoint {n} signed it"),
                );
            } else {
                self.report.outside_scope += 1;
            }
        }
        if let Scope::Sessions(s) = scope {
            let mut absent: Vec<u64> = s.difference(&self.seen_sessions).copied().collect();
            absent.sort_unstable();
            for session in absent {
                if !self.expired.contains(&session) {
                    self.problem(
                        session,
                        None,
                        "listed in the export header but has no events".into(),
                    );
                }
            }
        }
        self.report
            .problems
            .sort_by_key(|p| (p.session, p.seq.unwrap_or(0)));
        let mut problems = std::mem::take(&mut self.checkpoint_problems);
        problems.append(&mut self.report.problems);
        // Last: the store-wide count, which only says that something is
        // missing when the events above already say where.
        if matches!(scope, Scope::Everything)
            // Saturating: a checkpoint from a hostile export may claim any
            // number of expired events; it must not overflow the sum.
            && self.counted.saturating_add(self.expired_events) != self.signed_global
        {
            problems.push(Problem {
                session: None,
                seq: None,
                what: format!(
                    "the newest checkpoint counts {} events; the store holds {} of them and retention removed {}",
                    self.signed_global, self.counted, self.expired_events
                ),
            });
        }
        self.report.problems = problems;
        self.report
    }
}
