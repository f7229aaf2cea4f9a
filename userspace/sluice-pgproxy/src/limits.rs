//! Limits against hostile clients, shared by the PostgreSQL and MySQL
//! engines: how long a session may take to become ready, the largest
//! statement text decided, failed logins per source address and per
//! identity ([`LoginLimiter`]), and sessions per identity
//! ([`ConnectionCaps`]). No I/O: the engines ask and tell the client.
use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::Workload;

/// The rule name an over-long statement is refused and recorded under.
pub const STATEMENT_TOO_LONG: &str = "proxy.max_statement_bytes";

/// Most bytes of an over-long statement kept in its record.
const RECORDED_PREFIX: usize = 1024;

/// Keys a [`LoginLimiter`] tracks at most; past it, expired ones are
/// dropped first, then new keys are not tracked (logged).
const MAX_KEYS: usize = 65_536;

/// The limits one session runs under (`proxy.*` in the configuration).
#[derive(Clone)]
pub struct Limits {
    /// From connect to a ready session (`proxy.startup_timeout_ms`).
    pub startup_timeout: Duration,
    /// Largest statement text decided (`proxy.max_statement_bytes`).
    pub max_statement: usize,
    /// Failed logins per source and per identity, shared by every session.
    pub logins: Arc<LoginLimiter>,
    /// Sessions per identity, shared by every session.
    pub connections: Arc<ConnectionCaps>,
}

impl Default for Limits {
    /// The configuration's defaults: 60 s, 1 MiB, 10 failed logins a
    /// minute, no per-identity cap.
    fn default() -> Self {
        Limits {
            startup_timeout: Duration::from_secs(60),
            max_statement: 1024 * 1024,
            logins: Arc::new(LoginLimiter::new(10)),
            connections: Arc::new(ConnectionCaps::new(None)),
        }
    }
}

impl Limits {
    /// The rule an over-long statement is refused under, or None when it
    /// fits.
    pub fn statement_too_long(&self, text: &str) -> Option<String> {
        (text.len() > self.max_statement).then(|| {
            format!(
                "{STATEMENT_TOO_LONG}: a statement of {} bytes is over the limit of {} bytes",
                text.len(),
                self.max_statement
            )
        })
    }
}

/// What an over-long statement is recorded as: its first KiB and its
/// length (the record need not grow with what a client sends).
pub fn clipped(text: &str) -> Cow<'_, str> {
    if text.len() <= RECORDED_PREFIX {
        return Cow::Borrowed(text);
    }
    let mut end = RECORDED_PREFIX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [{} bytes in all; clipped by sluice]",
        &text[..end],
        text.len()
    ))
}

/// Rendered for the client and the record, e.g. `2 s` or `500 ms`.
pub fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Where logins come from, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// A remote client's address (IPv6: its /64).
    Addr(IpAddr),
    /// A local process's uid (jump host: every local client shares the
    /// loopback address, so the address would make one user's failures
    /// everyone's).
    Uid(u32),
}

impl Source {
    fn of(workload: &Workload) -> Source {
        match workload.uid {
            Some(uid) => Source::Uid(uid),
            None => Source::Addr(source_key(workload.addr)),
        }
    }

    fn describe(workload: &Workload) -> String {
        match workload.uid {
            Some(uid) => format!("source uid {uid}"),
            None => format!("source {}", workload.addr),
        }
    }
}

/// What a failed-login limit is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LoginKey {
    /// A client (address or local uid).
    Source(Source),
    /// A workload identity and the database user it logs in as.
    Identity(String, String),
}

/// Why a login is refused before it is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// What reached the limit, in words ("source 10.0.0.2", "identity
    /// ci-runner as user app").
    pub what: String,
    /// The limit, failures per minute.
    pub limit: u32,
    /// When the oldest counted failure leaves the window.
    pub retry_after: Duration,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sluice: too many failed logins from {} ({} within a minute, proxy.auth_failures_per_minute); try again in {} s",
            self.what,
            self.limit,
            self.retry_after.as_secs().max(1)
        )
    }
}

/// Failed logins in a sliding window, per source address and per
/// identity and database user. Each key keeps the times of its last
/// `limit` failures, so memory per key is bounded; keys are bounded too.
pub struct LoginLimiter {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<LoginKey, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// At most `per_minute` failures a minute per key (at least 1).
    pub fn new(per_minute: u32) -> LoginLimiter {
        LoginLimiter::with_window(per_minute, Duration::from_secs(60))
    }

    /// At most `limit` failures per `window` (tests use short windows).
    pub fn with_window(limit: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            limit: limit.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Refuse a login from `source` now? (MySQL asks before dialling the
    /// database, when the user is not known yet.) A remote client counts
    /// by its address, a local process (jump host) by its uid.
    pub fn check_source(&self, source: &Workload) -> Result<(), Blocked> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        self.blocked(&map, &LoginKey::Source(Source::of(source)), || {
            Source::describe(source)
        })
    }

    /// Refuse a login from `source` by `identity` as database `user` now?
    pub fn check(&self, source: &Workload, identity: &str, user: &str) -> Result<(), Blocked> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        self.blocked(&map, &LoginKey::Source(Source::of(source)), || {
            Source::describe(source)
        })?;
        self.blocked(
            &map,
            &LoginKey::Identity(identity.to_owned(), user.to_owned()),
            || format!("identity {identity} as user \"{user}\""),
        )
    }

    /// Count a failed login against its source and its identity and user.
    pub fn failed(&self, source: &Workload, identity: &str, user: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in [
            LoginKey::Source(Source::of(source)),
            LoginKey::Identity(identity.to_owned(), user.to_owned()),
        ] {
            if !map.contains_key(&key) && map.len() >= MAX_KEYS {
                let window = self.window;
                map.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
                if map.len() >= MAX_KEYS {
                    tracing::warn!(
                        keys = map.len(),
                        "failed-login table full: this failure is not counted"
                    );
                    continue;
                }
            }
            let times = map.entry(key).or_default();
            if times.len() >= self.limit as usize {
                times.pop_front();
            }
            times.push_back(now);
        }
    }

    fn blocked(
        &self,
        map: &HashMap<LoginKey, VecDeque<Instant>>,
        key: &LoginKey,
        what: impl FnOnce() -> String,
    ) -> Result<(), Blocked> {
        let Some(times) = map.get(key) else {
            return Ok(());
        };
        let now = Instant::now();
        let recent = times.iter().filter(|t| now - **t < self.window).count();
        if recent < self.limit as usize {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        Err(Blocked {
            what: what(),
            limit: self.limit,
            retry_after: self.window.saturating_sub(now - oldest),
        })
    }
}

/// The address a source is counted by: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64, the smallest network a host usually gets.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Sessions per identity, capped at `proxy.max_connections_per_identity`.
pub struct ConnectionCaps {
    cap: Option<u32>,
    held: Mutex<HashMap<String, u32>>,
}

impl ConnectionCaps {
    /// At most `cap` sessions per identity; None: no cap.
    pub fn new(cap: Option<u32>) -> ConnectionCaps {
        ConnectionCaps {
            cap,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Take a session slot for `identity`, held until the [`Slot`] drops;
    /// `Err(cap)` when the identity already holds `cap`.
    pub fn take(self: &Arc<Self>, identity: &str) -> Result<Slot, u32> {
        let Some(cap) = self.cap else {
            return Ok(Slot(None));
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(identity.to_owned()).or_insert(0);
        if *n >= cap {
            return Err(cap);
        }
        *n += 1;
        Ok(Slot(Some((Arc::clone(self), identity.to_owned()))))
    }

    /// Sessions `identity` holds now.
    pub fn held(&self, identity: &str) -> u32 {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(identity).copied().unwrap_or(0)
    }
}

/// One session's place under its identity's cap, given back on drop.
pub struct Slot(Option<(Arc<ConnectionCaps>, String)>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((caps, identity)) = self.0.take() {
            let mut held = caps.held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = held.get_mut(&identity) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    held.remove(&identity);
                }
            }
        }
    }
}

/// Words for a client whose first bytes are another protocol's: a TLS
/// ClientHello or an HTTP request sent to a database port. Empty when
/// they look like nothing in particular.
pub fn confusion_hint(first: &[u8]) -> &'static str {
    const HTTP: [&[u8]; 9] = [
        b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN", b"PRI ",
    ];
    if first.len() >= 2 && first[0] == 0x16 && first[1] == 0x03 {
        " (this looks like a TLS ClientHello: this port expects the database protocol, which asks for TLS in its own handshake)"
    } else if HTTP.iter().any(|m| first.starts_with(m)) {
        " (this looks like an HTTP request: this port speaks a database protocol, not HTTP)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Workload {
        Workload {
            addr: s.parse().unwrap(),
            uid: None,
        }
    }

    #[test]
    fn a_source_is_blocked_after_the_limit_and_others_are_not() {
        let l = LoginLimiter::new(3);
        for _ in 0..3 {
            assert!(l.check(&ip("10.0.0.2"), "a", "app").is_ok());
            l.failed(&ip("10.0.0.2"), "a", "app");
        }
        let b = l.check_source(&ip("10.0.0.2")).unwrap_err();
        assert!(b.to_string().contains("source 10.0.0.2"), "{b}");
        assert!(b.retry_after <= Duration::from_secs(60));
        // Another source, another identity: unaffected.
        assert!(l.check(&ip("10.0.0.3"), "b", "app").is_ok());
        // Another source, the same identity and user: blocked by identity.
        let b = l.check(&ip("10.0.0.3"), "a", "app").unwrap_err();
        assert!(b.to_string().contains("identity a as user \"app\""), "{b}");
        // The same identity as another user: only the source counts.
        assert!(l.check(&ip("10.0.0.3"), "a", "other").is_ok());
    }

    #[test]
    fn failures_leave_the_window() {
        let l = LoginLimiter::with_window(2, Duration::from_millis(50));
        l.failed(&ip("10.0.0.2"), "a", "u");
        l.failed(&ip("10.0.0.2"), "a", "u");
        assert!(l.check_source(&ip("10.0.0.2")).is_err());
        std::thread::sleep(Duration::from_millis(80));
        assert!(l.check(&ip("10.0.0.2"), "a", "u").is_ok());
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_mapped_v4_as_v4() {
        let l = LoginLimiter::new(1);
        l.failed(&ip("fd00:1:2:3::10"), "a", "u");
        assert!(l.check_source(&ip("fd00:1:2:3::99")).is_err());
        assert!(l.check_source(&ip("fd00:1:2:4::10")).is_ok());
        l.failed(&ip("::ffff:10.0.0.9"), "b", "u");
        assert!(l.check_source(&ip("10.0.0.9")).is_err());
    }

    #[test]
    fn local_processes_count_by_uid() {
        let l = LoginLimiter::new(1);
        let local = |uid| Workload {
            addr: "127.0.0.1".parse().unwrap(),
            uid: Some(uid),
        };
        l.failed(&local(1000), "a", "u");
        let b = l.check_source(&local(1000)).unwrap_err();
        assert!(b.to_string().contains("source uid 1000"), "{b}");
        assert!(l.check_source(&local(1001)).is_ok());
    }

    #[test]
    fn memory_per_key_is_bounded() {
        let l = LoginLimiter::new(4);
        for _ in 0..1000 {
            l.failed(&ip("10.0.0.2"), "a", "u");
        }
        let map = l.failures.lock().unwrap();
        assert!(map.values().all(|t| t.len() == 4));
    }

    #[test]
    fn caps_count_per_identity_and_free_on_drop() {
        let caps = Arc::new(ConnectionCaps::new(Some(2)));
        let a1 = caps.take("a").unwrap();
        let _a2 = caps.take("a").unwrap();
        assert_eq!(caps.take("a").err(), Some(2));
        let _b = caps.take("b").unwrap();
        drop(a1);
        assert_eq!(caps.held("a"), 1);
        assert!(caps.take("a").is_ok());
        let none = Arc::new(ConnectionCaps::new(None));
        let slots: Vec<_> = (0..100).map(|_| none.take("a").unwrap()).collect();
        assert_eq!(slots.len(), 100);
        assert_eq!(none.held("a"), 0);
    }

    #[test]
    fn long_statements_are_clipped_for_the_record() {
        let limits = Limits {
            max_statement: 100,
            ..Limits::default()
        };
        assert!(limits.statement_too_long(&"x".repeat(100)).is_none());
        let rule = limits.statement_too_long(&"x".repeat(101)).unwrap();
        assert!(rule.starts_with(STATEMENT_TOO_LONG), "{rule}");
        let text = "é".repeat(2000);
        let c = clipped(&text);
        assert!(c.len() < 1100 && c.ends_with("[4000 bytes in all; clipped by sluice]"));
        assert_eq!(clipped("select 1"), "select 1");
    }

    #[test]
    fn other_protocols_are_named() {
        assert!(confusion_hint(b"\x16\x03\x01\x02\x00").contains("TLS ClientHello"));
        assert!(confusion_hint(b"GET / HTTP/1.1\r\n").contains("HTTP"));
        assert_eq!(confusion_hint(b"\x00\x00\x00\x08"), "");
    }
}
