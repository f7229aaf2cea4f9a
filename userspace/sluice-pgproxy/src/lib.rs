//! The PostgreSQL session engine: one intercepted client connection and its
//! upstream connection, understood message by message in both directions.
//!
//! Layout: [`hooks`] is what later layers plug in (a statement `decide`
//! hook, a per-message `rewrite` hook) plus the pattern policy that proves
//! them; [`cancel`] maps the synthetic cancel keys sluice hands clients to
//! real backends; [`tls`] builds the rustls settings of both legs;
//! `startup.rs` runs the startup and authentication exchange, with
//! `inject.rs` for credential injection; `io.rs` is the plain-or-TLS
//! stream; `pipeline.rs` runs the two directions of a ready session,
//! keeping injected responses (refusals) in protocol order with upstream's;
//! `results.rs` works out, with no I/O, which columns each row holds, for
//! the rewrite hook; `record.rs` is what a session records in the audit
//! store, and when; [`limits`] holds the limits against hostile clients
//! both engines apply (startup timeout, statement size, failed logins per
//! source and identity, sessions per identity).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cancel;
pub mod hooks;
mod inject;
pub mod io;
pub mod limits;
mod pipeline;
mod record;
mod results;
mod startup;
pub mod tls;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

pub use cancel::CancelRegistry;
pub use hooks::{
    Column, ColumnOrigin, CopyFormat, Decision, Fields, Format, Hold, Notification, PatternPolicy,
    Policy, Rewrite, RewriteOrDrop, Rewriter, SessionInfo, SessionPolicy, Settled, Statement,
    Value,
};
pub use inject::token_hash;
use sluice_config::secrets::Secrets;
use sluice_pgwire::CodecError;
pub use startup::run as serve;
pub use tls::{TlsSetupError, UpstreamTls};

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Socket error on either leg.
    #[error("{leg}: {source}")]
    Io {
        /// "client" or "upstream".
        leg: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A peer sent bytes that are not PostgreSQL protocol 3.0 (or a
    /// rewrite hook produced a message that is not).
    #[error("{leg} sent an invalid message: {source}")]
    Protocol {
        /// "client", "upstream", or "rewriter".
        leg: &'static str,
        /// What was wrong.
        source: CodecError,
    },
    /// The client left before the session was established.
    #[error("client closed the connection during startup")]
    ClientGone,
    /// A TLS handshake failed.
    #[error("{leg}: TLS handshake: {source}")]
    Tls {
        /// "client" or "upstream".
        leg: &'static str,
        /// rustls' reason, as an I/O error.
        source: std::io::Error,
    },
    /// sluice refused the session (the client was told this message).
    #[error("refused: {0}")]
    Refused(String),
    /// A rewriter ended the session (a limit); the client was told.
    #[error("ended by policy: {0}")]
    Ended(String),
}

/// 64 unpredictable bits: std's per-process random hasher seed over the
/// current time and `salt`. Enough for cancel keys and poison markers
/// without a CSPRNG dependency.
pub(crate) fn random_u64(salt: &[u64]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    for s in salt {
        h.write_u64(*s);
    }
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// What the session engine needs from the rest of sluice.
#[derive(Clone)]
pub struct SessionConfig {
    /// Largest message accepted from either side.
    pub max_message: usize,
    /// The statement policy.
    pub policy: Arc<dyn Policy>,
    /// Cancel-key mapping shared by all sessions.
    pub cancels: CancelRegistry,
    /// TLS for the client leg; None answers SSLRequest with `N`.
    pub client_tls: Option<ClientTls>,
    /// Where sessions are recorded; None records nothing (the relay
    /// benchmark, in-process tests).
    pub store: Option<sluice_store::Store>,
    /// Counters every session adds to (for `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Limits against hostile clients (`proxy.startup_timeout_ms`,
    /// `max_statement_bytes`, `auth_failures_per_minute`,
    /// `max_connections_per_identity`).
    pub limits: limits::Limits,
}

/// Counters of every PostgreSQL session, for the admin API's `/metrics`.
/// Updated as statements are decided and results end.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Statements let through as decided.
    pub statements_allowed: std::sync::atomic::AtomicU64,
    /// Statements refused by policy.
    pub statements_denied: std::sync::atomic::AtomicU64,
    /// Statements held for approval.
    pub statements_held: std::sync::atomic::AtomicU64,
    /// Held statements let through (approved or granted).
    pub held_allowed: std::sync::atomic::AtomicU64,
    /// Held statements refused (denied, expired, not held).
    pub held_refused: std::sync::atomic::AtomicU64,
    /// Values the rewriter masked.
    pub masked_values: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// Add `n` to one of the counters.
    pub fn add(counter: &std::sync::atomic::AtomicU64, n: u64) {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// TLS that sluice terminates for clients.
#[derive(Clone)]
pub struct ClientTls {
    /// Holds the certificate and key.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Refuse clients that stay in plain text.
    pub require: bool,
}

/// How sluice reaches and logs in to one target.
#[derive(Clone)]
pub struct TargetSettings {
    /// The `[[targets]]` name (credentials refer to it).
    pub name: String,
    /// TLS to the database.
    pub tls: UpstreamTls,
    /// Who authenticates.
    pub auth: TargetAuth,
}

/// Who authenticates to the database.
#[derive(Clone)]
pub enum TargetAuth {
    /// The client, through sluice.
    Passthrough,
    /// sluice, with a credential from the secrets file.
    Inject(Arc<Secrets>),
}

/// Who the session belongs to, as far as the engine needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The client's address (a remote agent, or a local process's socket).
    pub addr: IpAddr,
    /// The local uid for a jump-host session.
    pub uid: Option<u32>,
}

/// One session's destination.
#[derive(Clone, Copy)]
pub struct Route<'a> {
    /// The address the client dialled.
    pub original: SocketAddr,
    /// The target it belongs to.
    pub target: &'a TargetSettings,
    /// Who is connecting.
    pub workload: Workload,
    /// The workload identity the session is recorded under.
    pub identity: &'a str,
    /// The identity's groups.
    pub groups: &'a [String],
    /// The facts it was derived from, as recorded.
    pub facts: &'a sluice_store::event::Facts,
}

/// What a finished session reports for its close log line.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Database user from the startup message.
    pub user: Option<String>,
    /// Database name from the startup message.
    pub database: Option<String>,
    /// The role sluice logged in as (credential injection).
    pub upstream_user: Option<String>,
    /// The client leg was TLS.
    pub client_tls: bool,
    /// The database leg was TLS.
    pub upstream_tls: bool,
    /// Statements allowed to reach the database.
    pub statements_allowed: u64,
    /// Statements refused by policy.
    pub statements_denied: u64,
    /// Bytes client → database.
    pub bytes_up: u64,
    /// Bytes database → client.
    pub bytes_down: u64,
    /// The session was a cancel request, routed to this backend.
    pub cancel_routed: bool,
    /// The client's connection broke mid-session (the socket error).
    pub client_lost: Option<String>,
    /// `application_name` from the startup message.
    pub application: Option<String>,
    /// Why a ready session ended ("client terminated", …).
    pub end_reason: Option<&'static str>,
    /// The session's id in the store.
    pub session_id: Option<u64>,
    /// Why the database refused the login (SQLSTATE or error code, and
    /// its message), for the record.
    pub login_error: Option<String>,
}

impl Summary {
    /// The session start event for a session of `protocol` ("postgres",
    /// "mysql").
    pub fn start_event(
        &self,
        protocol: &str,
        route: &Route<'_>,
    ) -> sluice_store::event::SessionStart {
        sluice_store::event::SessionStart {
            protocol: protocol.into(),
            identity: route.identity.to_owned(),
            groups: route.groups.to_vec(),
            facts: route.facts.clone(),
            original: route.original.to_string(),
            target: route.target.name.clone(),
            user: self.user.clone(),
            database: self.database.clone(),
            application: self.application.clone(),
            client_tls: self.client_tls,
            upstream_tls: self.upstream_tls,
            auth: match route.target.auth {
                TargetAuth::Passthrough => "passthrough",
                TargetAuth::Inject(_) => "inject",
            }
            .into(),
            upstream_user: self.upstream_user.clone(),
        }
    }

    /// The session end event, with the counts.
    pub fn end_event(
        &self,
        reason: String,
        lasted: std::time::Duration,
    ) -> sluice_store::event::Event {
        sluice_store::event::Event::SessionEnd(sluice_store::event::SessionEnd {
            reason,
            statements: self.statements_allowed,
            denied: self.statements_denied,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            duration_ms: lasted.as_millis() as u64,
        })
    }
}

impl SessionConfig {
    /// Record a session that never became ready (a refused login): its
    /// start and its end.
    pub fn record_refused(&self, protocol: &str, route: &Route<'_>, summary: &Summary, why: &str) {
        if let Some(store) = &self.store {
            let log = store.begin(summary.start_event(protocol, route));
            log.record(&sluice_store::event::Event::SessionEnd(
                sluice_store::event::SessionEnd {
                    reason: why.to_owned(),
                    ..Default::default()
                },
            ));
        }
    }
}
