//! `KILL` routing. Every MySQL session through sluice holds one database
//! thread, and its id (from the greeting) is the id clients see through
//! `CONNECTION_ID()`: sluice hands it on unchanged, so `KILL QUERY n` sent
//! on another connection reaches the right thread by itself. What sluice
//! adds is the check: a session may kill only threads held by sessions of
//! its own identity (a workload cannot interrupt another's work), and a
//! kill wakes the target session, so a statement it holds for approval is
//! withdrawn as a running query would be interrupted.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

/// Shared by all MySQL sessions.
#[derive(Clone, Default)]
pub struct KillRegistry {
    inner: Arc<Mutex<HashMap<(SocketAddr, u32), Entry>>>,
}

struct Entry {
    identity: String,
    signal: Arc<Notify>,
}

/// What a `KILL` of a thread may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillCheck {
    /// A thread of a session with the same identity.
    Own,
    /// A thread of another identity's session.
    Other(String),
    /// No session through sluice holds it.
    Unknown,
}

/// Removes a session's thread when it ends.
pub struct Registered {
    registry: KillRegistry,
    key: (SocketAddr, u32),
    signal: Arc<Notify>,
}

impl Registered {
    /// Woken (`notify_waiters`) when a permitted `KILL` names this thread.
    pub fn signal(&self) -> Arc<Notify> {
        Arc::clone(&self.signal)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

impl KillRegistry {
    /// Record that a session of `identity` holds `thread` on `server`.
    pub fn register(&self, server: SocketAddr, thread: u32, identity: &str) -> Registered {
        let signal = Arc::new(Notify::new());
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).insert(
            (server, thread),
            Entry {
                identity: identity.to_owned(),
                signal: Arc::clone(&signal),
            },
        );
        Registered {
            registry: self.clone(),
            key: (server, thread),
            signal,
        }
    }

    /// May a session of `identity` kill `thread` on `server`? A permitted
    /// kill wakes the target session.
    pub fn check(&self, server: SocketAddr, thread: u32, identity: &str) -> KillCheck {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&(server, thread)) {
            Some(e) if e.identity == identity => {
                e.signal.notify_waiters();
                KillCheck::Own
            }
            Some(e) => KillCheck::Other(e.identity.clone()),
            None => KillCheck::Unknown,
        }
    }
}

/// The thread a `KILL [QUERY | CONNECTION] n` statement names, if the text
/// is exactly that (comments and a trailing `;` allowed).
pub fn kill_target(sql: &str) -> Option<(bool, u32)> {
    let mut words = sql
        .trim()
        .trim_end_matches(';')
        .split_ascii_whitespace()
        .map(|w| w.to_ascii_uppercase());
    if words.next()? != "KILL" {
        return None;
    }
    let mut next = words.next()?;
    let mut query_only = false;
    match next.as_str() {
        "HARD" | "SOFT" => next = words.next()?,
        _ => {}
    }
    match next.as_str() {
        "QUERY" => {
            query_only = true;
            next = words.next()?;
        }
        "CONNECTION" => next = words.next()?,
        _ => {}
    }
    let id = next.parse().ok()?;
    words.next().is_none().then_some((query_only, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per case: SQL → (query only, thread).
    #[test]
    fn kill_statements() {
        let cases = [
            ("KILL QUERY 12", Some((true, 12))),
            ("kill 7;", Some((false, 7))),
            ("KILL CONNECTION 9", Some((false, 9))),
            ("KILL HARD QUERY 3", Some((true, 3))),
            ("KILL QUERY ID 3", None),
            ("KILL USER bob", None),
            ("KILL 1; DROP TABLE t", None),
            ("SELECT 1", None),
        ];
        for (sql, want) in cases {
            assert_eq!(kill_target(sql), want, "{sql}");
        }
    }

    #[test]
    fn only_own_identity_may_kill_and_the_target_is_woken() {
        let reg = KillRegistry::default();
        let db: SocketAddr = "10.0.0.5:3306".parse().unwrap();
        let a = reg.register(db, 40, "ci");
        let signal = a.signal();
        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        assert_eq!(reg.check(db, 40, "agent"), KillCheck::Other("ci".into()));
        assert_eq!(reg.check(db, 41, "ci"), KillCheck::Unknown);
        assert_eq!(reg.check(db, 40, "ci"), KillCheck::Own);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(woken.as_mut().poll(&mut cx).is_ready());
        drop(a);
        assert_eq!(reg.check(db, 40, "ci"), KillCheck::Unknown);
    }
}
