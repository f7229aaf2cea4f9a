//! sluice's admin API: health, Prometheus metrics, sessions, just-in-time
//! approvals and time-window grants, and configuration reload, over HTTP/1.1
//! (HTTPS with rustls when `[admin]` names a certificate).
//!
//! The API runs on **its own OS thread and current-thread tokio runtime**
//! ([`spawn`]): however busy the data plane is, an approver can still reach
//! it, and however many API calls arrive, they never take a worker from the
//! sessions. The listener is bound before [`spawn`] returns, so a port in use
//! is a startup error rather than a log line.
//!
//! Every call except `/healthz` and `/metrics` needs an OIDC ID token as a
//! bearer token ([`Authenticate`], [`OidcAuth`]), is authorised by role
//! (admin, approver, auditor), and is recorded — exactly once, refusals
//! included — through [`AdminState::record`] as an
//! [`AdminEvent`](sluice_store::event::AdminEvent).
//!
//! | endpoint | roles |
//! |---|---|
//! | `GET /healthz`, `GET /metrics` | none (no token) |
//! | `GET /api/sessions?live=true&limit=50&identity=x` | auditor, approver, admin |
//! | `GET /api/approvals`, `GET /api/grants` | auditor, approver, admin |
//! | `POST /api/approvals/{id}/approve`, `POST /api/approvals/{id}/deny` | approver, admin |
//! | `POST /api/grants`, `DELETE /api/grants/{id}` | approver, admin |
//! | `POST /api/config/reload` | admin |
//!
//! Layout:
//! - [`auth`]: [`Authenticate`] (who holds a bearer token), [`Principal`],
//!   [`OidcAuth`] (the real one, over [`sluice_oidc::Verifier`]);
//! - [`api`]: the JSON bodies, shared by the server and [`client`];
//! - `routes`: method and path → endpoint, and the roles each allows; pure;
//! - `handler`: one request: authenticate, route, authorise, read the body
//!   (bounded), act, answer, record;
//! - `server`: the listener, TLS, connection cap, timeouts, shutdown;
//! - [`webhook`]: POSTs every approvals [`Notice`](sluice_approvals::Notice)
//!   to a URL ([`spawn_webhook`]);
//! - [`client`]: the API client behind `sluice approvals`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod client;
mod handler;
mod routes;
mod server;
mod tls;
pub mod webhook;

use std::{net::SocketAddr, sync::Arc, thread::JoinHandle, time::Duration};

use sluice_config::AdminConfig;
use tokio::sync::watch;

pub use auth::{Authenticate, OidcAuth, Principal};
pub use webhook::spawn_webhook;

/// What the API serves, handed over by the daemon. The callbacks run on the
/// admin runtime's blocking pool (`metrics`, `sessions`, `reload`) or inline
/// (`record`), so they may block briefly but should not wait on the data
/// plane for long.
#[derive(Clone)]
pub struct AdminState {
    /// Who holds a bearer token ([`OidcAuth`] in the daemon).
    pub auth: Arc<dyn Authenticate>,
    /// The approvals broker; `None` when `[approvals]` is absent, and the
    /// approvals and grants endpoints then answer 404 saying so.
    pub broker: Option<Arc<sluice_approvals::Broker>>,
    /// The Prometheus text exposition (format 0.0.4), rendered by the daemon.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Live or recorded sessions as JSON, for `GET /api/sessions`.
    pub sessions: Arc<dyn Fn(&SessionQuery) -> serde_json::Value + Send + Sync>,
    /// Reloads the configuration: `Ok(what changed)` or `Err(why not)`.
    pub reload: Arc<dyn Fn() -> Result<String, String> + Send + Sync>,
    /// Records one admin event in the store. Called exactly once per API
    /// call (not for `/healthz` and `/metrics`), whatever its outcome.
    pub record: Arc<dyn Fn(sluice_store::event::AdminEvent) + Send + Sync>,
}

/// `GET /api/sessions` query: `live` (default false: recorded sessions),
/// `limit` (1–1000, default 50), `identity` (exact workload identity).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionQuery {
    /// Sessions open now rather than recorded ones.
    pub live: bool,
    /// At most this many, newest first.
    pub limit: usize,
    /// Only this workload identity.
    pub identity: Option<String>,
}

impl Default for SessionQuery {
    fn default() -> Self {
        SessionQuery {
            live: false,
            limit: 50,
            identity: None,
        }
    }
}

/// Bounds on what one client can make the API hold. The defaults suit a
/// production daemon; tests shorten the timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; further clients wait in the kernel's
    /// accept queue.
    pub max_connections: usize,
    /// Request bodies larger than this are refused (413).
    pub max_body: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request's head must arrive within this (also how long an idle
    /// keep-alive connection is kept): a slowloris client cannot hold a
    /// connection slot by trickling bytes.
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// Checking a bearer token (which may fetch the provider's keys) must
    /// finish within this; otherwise 503.
    pub auth_timeout: Duration,
    /// A connection is closed (gracefully) after this long, however busy.
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            max_body: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(15),
            connection_lifetime: Duration::from_secs(300),
        }
    }
}

/// Why the API could not start. Names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address cannot be bound (in use, not local, no permission).
    #[error("admin.listen {addr}: cannot listen: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `admin.cert` / `admin.key` cannot be used.
    #[error("{0}")]
    Tls(String),
    /// The API's thread or runtime could not be started.
    #[error("cannot start the admin API: {0}")]
    Runtime(std::io::Error),
    /// The webhook's HTTP client could not be built.
    #[error("approvals.webhook: {0}")]
    Webhook(String),
}

/// The running API. [`AdminHandle::stop`] (or dropping the handle) stops
/// accepting, lets requests in flight finish for a few seconds, and joins
/// the thread.
pub struct AdminHandle {
    local_addr: SocketAddr,
    tls: bool,
    runtime: tokio::runtime::Handle,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminHandle {
    /// The address the API listens on (the real port when `listen` said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://addr` or `http://addr`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.local_addr
        )
    }

    /// The API's runtime, to run companions such as [`spawn_webhook`] on it.
    /// Tasks spawned here run while the API runs and end when it stops.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Stops the API and waits for its thread: at most about ten seconds
    /// (requests in flight get five, then the daemon's callbacks still
    /// running get five). It blocks, so inside async code call it from
    /// `spawn_blocking` or at shutdown.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the admin API thread panicked");
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Starts the API as `config` says, with the default [`Limits`].
pub fn spawn(config: &AdminConfig, state: AdminState) -> Result<AdminHandle, AdminError> {
    spawn_with(config, state, Limits::default())
}

/// Starts the API with explicit [`Limits`].
///
/// Binds `config.listen` and loads the TLS material here, on the caller's
/// thread, so every configuration problem is returned; then serves on a
/// thread named `sluice-admin` with a current-thread runtime (and at most
/// four blocking threads for the daemon's callbacks).
pub fn spawn_with(
    config: &AdminConfig,
    state: AdminState,
    limits: Limits,
) -> Result<AdminHandle, AdminError> {
    let tls = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(AdminError::Tls(
                "admin.cert and admin.key go together: set both (HTTPS) or neither".into(),
            ));
        }
    };
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| AdminError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| AdminError::Bind {
        addr: config.listen,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| AdminError::Bind {
            addr: config.listen,
            source,
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_name("sluice-admin-blocking")
        .build()
        .map_err(AdminError::Runtime)?;
    let registered = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)
    };
    let listener = match registered {
        Ok(l) => l,
        Err(source) => {
            // Dropping a runtime blocks, which panics inside the daemon's
            // own runtime; this one has nothing to wait for.
            runtime.shutdown_background();
            return Err(AdminError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    let (shutdown, stopped) = watch::channel(false);
    let handle = runtime.handle().clone();
    let is_tls = tls.is_some();
    let ctx = Arc::new(handler::Ctx { state, limits });
    let thread = std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || {
            runtime.block_on(server::serve(listener, tls, ctx, stopped));
            // Blocking callbacks still running get a moment to finish.
            runtime.shutdown_timeout(Duration::from_secs(5));
        })
        .map_err(AdminError::Runtime)?;
    tracing::info!(
        listen = %local_addr,
        tls = is_tls,
        "admin API listening"
    );
    Ok(AdminHandle {
        local_addr,
        tls: is_tls,
        runtime: handle,
        shutdown,
        thread: Some(thread),
    })
}
