//! The proxy's data plane.
//!
//! Layout: [`listen`] creates the listening sockets (transparent for the
//! gateway); [`Relay::serve`] runs one accept loop, a task per connection
//! inside a span carrying the session id, capped by a semaphore; `session.rs`
//! resolves the original destination and identity facts, dials upstream with
//! the upstream mark and relays bytes both ways. Protocol-aware sessions
//! (PostgreSQL, MySQL) run their session engines instead of the byte relay
//! (`sluice-pgproxy`, `sluice-myproxy`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod listen;
pub mod policy;
mod session;
mod setup;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use listen::{bind_jump, bind_transparent};
pub use setup::{SetupError, store_options};
use sluice_intercept::FlowFacts;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

/// How a listener's flows reached the proxy, which decides where the
/// original destination comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// tc steering: the accepted socket's local address *is* the original
    /// destination.
    Gateway,
    /// connect() rewriting: the original destination comes from the kernel's
    /// facts map, keyed by the client's address.
    JumpHost,
}

/// Settings the relay needs from the configuration.
#[derive(Clone)]
pub struct RelaySettings {
    /// The configuration (targets pick each flow's protocol).
    pub config: std::sync::Arc<sluice_config::Config>,
    /// The PostgreSQL session engine's settings (policy, cancel keys,
    /// client-leg TLS).
    pub postgres: sluice_pgproxy::SessionConfig,
    /// Per target (by name): database-leg TLS and who authenticates.
    pub targets: std::collections::HashMap<String, Arc<sluice_pgproxy::TargetSettings>>,
    /// Mark on upstream sockets (never redirected by the jump-host programs).
    pub upstream_mark: u32,
    /// Upstream dial timeout.
    pub connect_timeout: Duration,
    /// Connections handled at once.
    pub max_connections: u32,
    /// `[[identities]]`: facts → workload identity.
    pub identities: sluice_identity::Resolver,
    /// Held statements and grants (`[approvals]`), shared with the admin
    /// API.
    pub approvals: Option<Arc<sluice_approvals::Broker>>,
    /// The rules and masking behind `postgres.policy` (a reload hands its
    /// own to these).
    pub rules: Arc<policy::RulePolicy>,
}

/// Shared state of every accept loop.
pub struct Relay {
    settings: RelaySettings,
    /// What a config reload may change: the policy and the identity rules.
    /// Each session takes the current ones when it starts.
    live_rules: std::sync::RwLock<LiveRules>,
    facts: FlowFacts,
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    live: std::sync::Mutex<std::collections::BTreeMap<u64, LiveSession>>,
    connections_total: AtomicU64,
    /// Which database thread each MySQL session holds (`KILL` checks).
    kills: sluice_myproxy::KillRegistry,
}

#[derive(Clone)]
struct LiveRules {
    policy: Arc<dyn sluice_pgproxy::Policy>,
    identities: sluice_identity::Resolver,
}

/// A session in progress, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveSession {
    /// The relay's session number (log lines carry it as `id`).
    pub id: u64,
    /// Workload identity.
    pub identity: String,
    /// Target name ("" when the flow's target is unknown).
    pub target: String,
    /// Client address.
    pub client: String,
    /// Where it was going.
    pub original_dst: String,
    /// When it started (Unix seconds).
    pub started: u64,
}

/// Removes a session from the live list when it ends.
pub(crate) struct LiveGuard<'a> {
    relay: &'a Relay,
    id: u64,
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.relay
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Why an accepted flow could not be served.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Jump-host flow whose facts were not found: refusing rather than
    /// guessing where it was going.
    #[error("no original destination recorded for client {0}; refusing (fail closed)")]
    NoFacts(std::net::SocketAddr),
    /// A flow to an address and port no target protects: it was not
    /// steered here, so it is not served (fail closed).
    #[error("{0} is not a protected target; refusing (fail closed)")]
    NoTarget(std::net::SocketAddr),
    /// The database could not be reached.
    #[error("upstream {addr}: {source}")]
    Upstream {
        /// Where we dialled.
        addr: std::net::SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Upstream dial took too long.
    #[error("upstream {0}: connect timed out")]
    UpstreamTimeout(std::net::SocketAddr),
    /// A socket call failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Marking the upstream socket failed.
    #[error("{0}")]
    Intercept(#[from] sluice_intercept::InterceptError),
    /// The PostgreSQL session ended with an error.
    #[error("postgres session: {0}")]
    Postgres(#[from] sluice_pgproxy::PgError),
    /// The MySQL session ended with an error.
    #[error("mysql session: {0}")]
    Mysql(#[from] sluice_myproxy::MyError),
}

impl Relay {
    /// A relay for flows whose facts live in `facts`. `shutdown` flips to
    /// true when the daemon stops accepting.
    pub fn new(
        settings: RelaySettings,
        facts: FlowFacts,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Relay> {
        let permits = Arc::new(Semaphore::new(settings.max_connections as usize));
        let live_rules = std::sync::RwLock::new(LiveRules {
            policy: Arc::clone(&settings.postgres.policy),
            identities: settings.identities.clone(),
        });
        Arc::new(Relay {
            settings,
            live_rules,
            facts,
            permits,
            next_id: AtomicU64::new(1),
            shutdown,
            live: Default::default(),
            connections_total: AtomicU64::new(0),
            kills: Default::default(),
        })
    }

    /// Take the policy, masking and identity rules of `new` (a reloaded
    /// configuration's settings). New sessions start under them; sessions
    /// in progress take the policy and masking at their next statement
    /// (`policy.rs`) and keep the identity they were resolved to.
    pub fn reload(&self, new: &RelaySettings) {
        self.settings.rules.adopt(&new.rules);
        self.live_rules
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .identities = new.identities.clone();
    }

    fn rules(&self) -> LiveRules {
        self.live_rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sessions in progress, oldest first.
    pub fn live_sessions(&self) -> Vec<LiveSession> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.connections_total.load(Ordering::Relaxed)
    }

    /// The PostgreSQL session engine's counters.
    pub fn metrics(&self) -> &Arc<sluice_pgproxy::Metrics> {
        &self.settings.postgres.metrics
    }

    pub(crate) fn register(&self, session: LiveSession) -> LiveGuard<'_> {
        let id = session.id;
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, session);
        LiveGuard { relay: self, id }
    }

    /// Accept on `listener` until shutdown. Each accepted flow is served
    /// once it holds one of the `max_connections` permits; while it waits
    /// for one this loop stops accepting, so the flows behind it wait in
    /// the kernel's backlog. Permits are held by sessions only, never by an
    /// idle accept loop, so the cap is exact however many listeners share it.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mode: Mode) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    tracing::debug!(%peer, "max_connections reached; the flow waits for a slot");
                    tokio::select! {
                        p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                        _ = shutdown.changed() => return,
                    }
                }
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            self.connections_total.fetch_add(1, Ordering::Relaxed);
            let relay = Arc::clone(&self);
            tokio::spawn(async move {
                session::run(&relay, stream, peer, mode, id).await;
                drop(permit);
            });
        }
    }

    /// Wait until every session has ended, or `grace` has passed; returns
    /// how many were still running.
    pub async fn drain(&self, grace: Duration) -> usize {
        let total = self.settings.max_connections;
        let waited = tokio::time::timeout(grace, self.permits.acquire_many(total)).await;
        match waited {
            Ok(Ok(_all)) => 0,
            _ => total as usize - self.permits.available_permits(),
        }
    }
}
