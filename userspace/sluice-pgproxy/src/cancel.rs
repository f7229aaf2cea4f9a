//! Cancel routing. sluice gives each client a synthetic BackendKeyData and
//! remembers which real backend (address, pid, key) it stands for. A
//! CancelRequest arriving on a new connection is looked up by the synthetic
//! key and forwarded to the right server with the real key; an unknown key
//! is dropped, as PostgreSQL itself does. A cancel also wakes the session
//! behind the key ([`CancelRegistry::cancel_signal`]): a statement held for
//! approval is then withdrawn, as a running query would be cancelled.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

/// The real backend behind a synthetic key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealBackend {
    /// The database server.
    pub addr: SocketAddr,
    /// Its backend process id.
    pub pid: i32,
    /// Its secret key.
    pub key: i32,
}

/// Shared by all sessions.
#[derive(Clone, Default)]
pub struct CancelRegistry {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    next_pid: i32,
    map: HashMap<(i32, i32), (RealBackend, Arc<tokio::sync::Notify>)>,
}

impl CancelRegistry {
    /// Register a backend; returns the synthetic (pid, key) for the client.
    pub fn register(&self, real: RealBackend) -> (i32, i32) {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.next_pid = r.next_pid.wrapping_add(1).max(1);
        let pid = r.next_pid;
        let key = random_key(real);
        r.map
            .insert((pid, key), (real, Arc::new(tokio::sync::Notify::new())));
        (pid, key)
    }

    /// Woken (`notify_waiters`) whenever a cancel request arrives for this
    /// synthetic key.
    pub fn cancel_signal(&self, synthetic: (i32, i32)) -> Option<Arc<tokio::sync::Notify>> {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.map.get(&synthetic).map(|(_, n)| Arc::clone(n))
    }

    /// Forget a session's key when it ends.
    pub fn unregister(&self, synthetic: (i32, i32)) {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.map.remove(&synthetic);
    }

    /// The real backend for a synthetic key; wakes the session's
    /// [`CancelRegistry::cancel_signal`] waiters.
    pub fn lookup(&self, pid: i32, key: i32) -> Option<RealBackend> {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.map.get(&(pid, key)).map(|(real, signal)| {
            signal.notify_waiters();
            *real
        })
    }
}

/// An unguessable key, so one client cannot cancel another's queries by
/// guessing.
fn random_key(real: RealBackend) -> i32 {
    crate::random_u64(&[real.pid as u64, real.key as u64]) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_keys_map_back_and_are_forgotten() {
        let reg = CancelRegistry::default();
        let real = RealBackend {
            addr: "10.0.0.1:5432".parse().unwrap(),
            pid: 4321,
            key: 99,
        };
        let (pid, key) = reg.register(real);
        assert_ne!(
            (pid, key),
            (4321, 99),
            "the real key must not leak to the client"
        );
        assert_eq!(reg.lookup(pid, key), Some(real));
        assert_eq!(reg.lookup(pid, key.wrapping_add(1)), None);
        reg.unregister((pid, key));
        assert_eq!(reg.lookup(pid, key), None);
    }
}
