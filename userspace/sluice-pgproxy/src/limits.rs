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

use tokio::sync::Notify;

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
///
/// A login is an [`Attempt`] from before it reaches the database until its
/// verdict, and attempts in flight count against the same budget as
/// failures: with `f` recent failures, at most `limit - f` logins of a key
/// are in flight at once, and more wait (within the startup timeout) for
/// one to end. So parallel guesses cannot all pass the check before the
/// first failure is counted, while a pool opening many sessions at once
/// with good credentials only queues briefly behind its own logins.
pub struct LoginLimiter {
    limit: u32,
    window: Duration,
    keys: Mutex<HashMap<LoginKey, Entry>>,
    /// Woken when an attempt ends (a budget may have freed).
    ended: Notify,
}

/// One key's recent failures and logins in flight.
#[derive(Default)]
struct Entry {
    failures: VecDeque<Instant>,
    in_flight: u32,
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
            keys: Mutex::new(HashMap::new()),
            ended: Notify::new(),
        }
    }

    /// Begin a login from `source` by `identity` as database `user`:
    /// refused when its source, or its identity and user, reached the
    /// limit of failures; otherwise it waits until both have budget for
    /// one more login in flight. Call [`Attempt::failed`] when the
    /// credentials are refused; dropping the attempt ends it otherwise.
    pub async fn attempt(
        self: &Arc<Self>,
        source: &Workload,
        identity: &str,
        user: &str,
    ) -> Result<Attempt, Blocked> {
        let keys = [
            (
                LoginKey::Source(Source::of(source)),
                Source::describe(source),
            ),
            identity_key(identity, user),
        ];
        self.reserve(&keys).await?;
        Ok(Attempt {
            limiter: Arc::clone(self),
            keys: keys.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// Begin a login from `source` before its user is known (MySQL, whose
    /// server speaks first: before the database is dialled), so a source
    /// holds at most the limit's worth of database connections in
    /// handshakes at once. [`Attempt::identify`] adds the identity and
    /// user once the client names them. A remote client counts by its
    /// address, a local process (jump host) by its uid.
    pub async fn attempt_source(self: &Arc<Self>, source: &Workload) -> Result<Attempt, Blocked> {
        let key = LoginKey::Source(Source::of(source));
        self.reserve(&[(key.clone(), Source::describe(source))])
            .await?;
        Ok(Attempt {
            limiter: Arc::clone(self),
            keys: vec![key],
        })
    }

    /// Take a place in flight under every key at once, waiting for room;
    /// refused when a key reached the limit of failures (`what` names it).
    async fn reserve(&self, keys: &[(LoginKey, String)]) -> Result<(), Blocked> {
        let mut waited = false;
        loop {
            let ended = {
                let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                for (key, what) in keys {
                    self.blocked(&map, key, || what.clone())?;
                }
                let now = Instant::now();
                let room = |k: &LoginKey| {
                    map.get(k).is_none_or(|e| {
                        self.recent(e, now) + (e.in_flight as usize) < self.limit as usize
                    })
                };
                if keys.iter().all(|(k, _)| room(k)) {
                    for (k, _) in keys {
                        if let Some(e) = self.entry(&mut map, k, now) {
                            e.in_flight += 1;
                        }
                    }
                    return Ok(());
                }
                // Registered before the lock is let go: an attempt ending
                // from here on wakes it.
                self.ended.notified()
            };
            if !waited {
                waited = true;
                tracing::debug!(
                    keys = ?keys.iter().map(|(_, what)| what.as_str()).collect::<Vec<_>>(),
                    "login waits: earlier logins of its source or identity are in flight"
                );
            }
            ended.await;
        }
    }

    /// End a login: give back its places in flight, count its failure.
    fn settle(&self, keys: &[LoginKey], in_flight: bool, failed: bool) {
        let now = Instant::now();
        {
            let mut map = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            for key in keys {
                let Some(e) = self.entry(&mut map, key, now) else {
                    continue;
                };
                if in_flight {
                    e.in_flight = e.in_flight.saturating_sub(1);
                }
                if failed {
                    if e.failures.len() >= self.limit as usize {
                        e.failures.pop_front();
                    }
                    e.failures.push_back(now);
                }
                while e.failures.front().is_some_and(|t| now - *t >= self.window) {
                    e.failures.pop_front();
                }
                if e.in_flight == 0 && e.failures.is_empty() {
                    map.remove(key);
                }
            }
        }
        self.ended.notify_waiters();
    }

    /// `key`'s entry, made if missing while the table has room (expired
    /// keys are dropped first); None when it is full.
    fn entry<'m>(
        &self,
        map: &'m mut HashMap<LoginKey, Entry>,
        key: &LoginKey,
        now: Instant,
    ) -> Option<&'m mut Entry> {
        if !map.contains_key(key) && map.len() >= MAX_KEYS {
            map.retain(|_, e| e.in_flight > 0 || self.recent(e, now) > 0);
            if map.len() >= MAX_KEYS {
                tracing::warn!(
                    keys = map.len(),
                    "failed-login table full: this login is not counted"
                );
                return None;
            }
        }
        Some(map.entry(key.clone()).or_default())
    }

    /// Failures of `e` within the window.
    fn recent(&self, e: &Entry, now: Instant) -> usize {
        e.failures
            .iter()
            .filter(|t| now - **t < self.window)
            .count()
    }

    fn blocked(
        &self,
        map: &HashMap<LoginKey, Entry>,
        key: &LoginKey,
        what: impl FnOnce() -> String,
    ) -> Result<(), Blocked> {
        let Some(e) = map.get(key) else {
            return Ok(());
        };
        let now = Instant::now();
        if self.recent(e, now) < self.limit as usize {
            return Ok(());
        }
        let oldest = e.failures.front().copied().unwrap_or(now);
        Err(Blocked {
            what: what(),
            limit: self.limit,
            retry_after: self.window.saturating_sub(now - oldest),
        })
    }
}

/// An identity and database user's key, and its name in words.
fn identity_key(identity: &str, user: &str) -> (LoginKey, String) {
    (
        LoginKey::Identity(identity.to_owned(), user.to_owned()),
        format!("identity {identity} as user \"{user}\""),
    )
}

/// One login from before it reaches the database until its verdict (see
/// [`LoginLimiter`]); dropped, it ends without counting a failure.
pub struct Attempt {
    limiter: Arc<LoginLimiter>,
    /// The keys it holds a place under (none once settled).
    keys: Vec<LoginKey>,
}

impl Attempt {
    /// The client named its identity's user: take a place under that key
    /// too (waiting for room), or refused when it reached the limit of
    /// failures. The source's place is kept meanwhile.
    pub async fn identify(&mut self, identity: &str, user: &str) -> Result<(), Blocked> {
        let key = identity_key(identity, user);
        self.limiter.reserve(std::slice::from_ref(&key)).await?;
        self.keys.push(key.0);
        Ok(())
    }

    /// The credentials were refused: count the failure.
    pub fn failed(mut self) {
        let keys = std::mem::take(&mut self.keys);
        self.limiter.settle(&keys, true, true);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.keys.is_empty() {
            let keys = std::mem::take(&mut self.keys);
            self.limiter.settle(&keys, true, false);
        }
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

    /// A login that must not wait: refused, or ended at once (failed).
    fn check(l: &Arc<LoginLimiter>, src: &str, identity: &str, user: &str) -> Result<(), Blocked> {
        block_on(async {
            tokio::time::timeout(Duration::from_secs(1), l.attempt(&ip(src), identity, user))
                .await
                .expect("the login does not wait")
                .map(drop)
        })
    }

    /// A login from `source` that must not wait, before its user is known:
    /// refused, or ended at once.
    fn check_source(l: &Arc<LoginLimiter>, source: &Workload) -> Result<(), Blocked> {
        block_on(async {
            tokio::time::timeout(Duration::from_secs(1), l.attempt_source(source))
                .await
                .expect("the login does not wait")
                .map(drop)
        })
    }

    /// Count a failed login of `source` as `identity` and `user`, as an
    /// attempt's verdict does.
    fn fail(l: &LoginLimiter, source: &Workload, identity: &str, user: &str) {
        let keys = [
            LoginKey::Source(Source::of(source)),
            identity_key(identity, user).0,
        ];
        l.settle(&keys, false, true);
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_source_is_blocked_after_the_limit_and_others_are_not() {
        let l = Arc::new(LoginLimiter::new(3));
        for _ in 0..3 {
            assert!(check(&l, "10.0.0.2", "a", "app").is_ok());
            fail(&l, &ip("10.0.0.2"), "a", "app");
        }
        let b = check_source(&l, &ip("10.0.0.2")).unwrap_err();
        assert!(b.to_string().contains("source 10.0.0.2"), "{b}");
        assert!(b.retry_after <= Duration::from_secs(60));
        // Another source, another identity: unaffected.
        assert!(check(&l, "10.0.0.3", "b", "app").is_ok());
        // Another source, the same identity and user: blocked by identity.
        let b = check(&l, "10.0.0.3", "a", "app").unwrap_err();
        assert!(b.to_string().contains("identity a as user \"app\""), "{b}");
        // The same identity as another user: only the source counts.
        assert!(check(&l, "10.0.0.3", "a", "other").is_ok());
    }

    #[test]
    fn failures_leave_the_window() {
        let l = Arc::new(LoginLimiter::with_window(2, Duration::from_millis(50)));
        fail(&l, &ip("10.0.0.2"), "a", "u");
        fail(&l, &ip("10.0.0.2"), "a", "u");
        assert!(check_source(&l, &ip("10.0.0.2")).is_err());
        std::thread::sleep(Duration::from_millis(80));
        assert!(check(&l, "10.0.0.2", "a", "u").is_ok());
        // Nothing is kept for a key with no failures and nothing in flight.
        assert!(l.keys.lock().unwrap().is_empty());
    }

    /// Parallel guesses: every login in flight holds a place in the
    /// budget, so no more than `limit` ever reach the database, however
    /// many start at once.
    #[test]
    fn parallel_failing_logins_reach_the_database_at_most_limit_times() {
        let l = Arc::new(LoginLimiter::new(3));
        let reached = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let refused = block_on(async {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let (l, reached) = (Arc::clone(&l), Arc::clone(&reached));
                    tokio::spawn(async move {
                        match l.attempt(&ip("10.0.0.2"), "a", "u").await {
                            Ok(attempt) => {
                                reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                attempt.failed();
                                false
                            }
                            Err(_) => true,
                        }
                    })
                })
                .collect();
            let mut refused = 0;
            for t in tasks {
                refused += u32::from(t.await.unwrap());
            }
            refused
        });
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(refused, 17);
    }

    /// A pool opening more sessions at once than the limit, with good
    /// credentials: every login goes through, the later ones after a
    /// short wait for the earlier ones to end.
    #[test]
    fn parallel_good_logins_all_go_through() {
        let l = Arc::new(LoginLimiter::new(3));
        let done = block_on(async {
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let l = Arc::clone(&l);
                    tokio::spawn(async move {
                        let attempt = l.attempt(&ip("10.0.0.2"), "a", "u").await?;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        drop(attempt);
                        Ok::<_, Blocked>(())
                    })
                })
                .collect();
            let mut done = 0;
            for t in tasks {
                t.await.unwrap().unwrap();
                done += 1;
            }
            done
        });
        assert_eq!(done, 16);
        assert!(l.keys.lock().unwrap().is_empty());
    }

    /// One failure among logins in flight: the budget shrinks by one, and
    /// a login waiting for room is refused once failures reach the limit.
    #[test]
    fn a_waiting_login_is_refused_when_the_failures_in_flight_reach_the_limit() {
        let l = Arc::new(LoginLimiter::new(2));
        block_on(async {
            let a = l.attempt(&ip("10.0.0.2"), "a", "u").await.unwrap();
            let b = l.attempt(&ip("10.0.0.2"), "a", "u").await.unwrap();
            let waiting = {
                let l = Arc::clone(&l);
                tokio::spawn(async move { l.attempt(&ip("10.0.0.2"), "a", "u").await.map(drop) })
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!waiting.is_finished(), "no room: it waits");
            a.failed();
            b.failed();
            let r = tokio::time::timeout(Duration::from_secs(1), waiting)
                .await
                .expect("woken when the attempts end")
                .unwrap();
            assert!(
                r.unwrap_err()
                    .to_string()
                    .contains("too many failed logins")
            );
        });
    }

    /// MySQL: a source's place is taken before the dial, the identity's
    /// once the client names its user. A source holds at most `limit`
    /// handshakes at once whether or not they name a user; a refused
    /// identity gives its source place back.
    #[test]
    fn a_source_place_comes_first_and_the_identity_joins_later() {
        let l = Arc::new(LoginLimiter::new(2));
        block_on(async {
            let mut a = l.attempt_source(&ip("10.0.0.2")).await.unwrap();
            let b = l.attempt_source(&ip("10.0.0.2")).await.unwrap();
            // A third handshake from the source waits for room.
            let third =
                tokio::time::timeout(Duration::from_millis(50), l.attempt_source(&ip("10.0.0.2")))
                    .await;
            assert!(third.is_err(), "a third handshake waits");
            // Another source is not held up.
            let other = l.attempt_source(&ip("10.0.0.3")).await.unwrap();
            a.identify("a", "u").await.unwrap();
            a.failed();
            drop(other);
            // One failure, one handshake in flight: the source's budget of
            // two is used up until the one in flight ends.
            let waiting = {
                let l = Arc::clone(&l);
                tokio::spawn(async move { l.attempt_source(&ip("10.0.0.2")).await.map(drop) })
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!waiting.is_finished());
            drop(b);
            tokio::time::timeout(Duration::from_secs(1), waiting)
                .await
                .expect("room once the handshake ends")
                .unwrap()
                .unwrap();
        });
        // The identity's failure was counted once, against it and its source.
        let map = l.keys.lock().unwrap();
        assert_eq!(map.len(), 2, "source and identity keys");
        assert!(
            map.values()
                .all(|e| e.failures.len() == 1 && e.in_flight == 0)
        );
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_mapped_v4_as_v4() {
        let l = Arc::new(LoginLimiter::new(1));
        fail(&l, &ip("fd00:1:2:3::10"), "a", "u");
        assert!(check_source(&l, &ip("fd00:1:2:3::99")).is_err());
        assert!(check_source(&l, &ip("fd00:1:2:4::10")).is_ok());
        fail(&l, &ip("::ffff:10.0.0.9"), "b", "u");
        assert!(check_source(&l, &ip("10.0.0.9")).is_err());
    }

    #[test]
    fn local_processes_count_by_uid() {
        let l = Arc::new(LoginLimiter::new(1));
        let local = |uid| Workload {
            addr: "127.0.0.1".parse().unwrap(),
            uid: Some(uid),
        };
        fail(&l, &local(1000), "a", "u");
        let b = check_source(&l, &local(1000)).unwrap_err();
        assert!(b.to_string().contains("source uid 1000"), "{b}");
        assert!(check_source(&l, &local(1001)).is_ok());
    }

    #[test]
    fn memory_per_key_is_bounded() {
        let l = LoginLimiter::new(4);
        for _ in 0..1000 {
            fail(&l, &ip("10.0.0.2"), "a", "u");
        }
        let map = l.keys.lock().unwrap();
        assert!(map.values().all(|e| e.failures.len() == 4));
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
