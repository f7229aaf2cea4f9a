//! The PostgreSQL session engine: one intercepted client connection and its
//! upstream connection, understood message by message in both directions.
//!
//! Layout: [`hooks`] is what later layers plug in (a statement `decide`
//! hook, a per-message `rewrite` hook) plus the pattern policy that proves
//! them; [`cancel`] maps the synthetic cancel keys sluice hands clients to
//! real backends; `startup.rs` runs the startup and authentication exchange;
//! `pipeline.rs` runs the two directions of a ready session, keeping
//! injected responses (refusals) in protocol order with upstream's;
//! `results.rs` works out, with no I/O, which columns each row holds, for
//! the rewrite hook.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cancel;
pub mod hooks;
mod io;
mod pipeline;
mod results;
mod startup;

use std::sync::Arc;

pub use cancel::CancelRegistry;
pub use hooks::{
    Column, CopyFormat, Decision, Fields, Format, Notification, PatternPolicy, Policy, Rewrite,
    RewriteOrDrop, Rewriter, Statement, Value,
};
use sluice_pgwire::CodecError;
pub use startup::run as serve;

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
}

/// What a finished session reports for its close log line.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Database user from the startup message.
    pub user: Option<String>,
    /// Database name from the startup message.
    pub database: Option<String>,
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
}
