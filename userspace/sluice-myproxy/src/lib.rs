//! The MySQL and MariaDB session engine: one intercepted client connection
//! and its database connection, understood packet by packet.
//!
//! Layout: `startup.rs` runs the handshake — the database's greeting
//! relayed with the capabilities sluice cannot honour struck out, TLS
//! terminated for the client and originated to the database, the
//! authentication exchange relayed with sequence ids renumbered between
//! the legs, or with `auth = "inject"` both handshakes run by sluice
//! (`inject.rs`: the workload admitted by network, uid and token, the
//! database logged in to with the vaulted credential); `session.rs` runs
//! the ready session's commands one at a time (the protocol is
//! half-duplex): every statement passes the decide hook
//! before it can reach the database, refusals are answered with ERR
//! packets and the session stays usable; `change_user.rs` relays
//! `COM_CHANGE_USER`'s authentication and remakes the session's policy
//! for the new user; `results.rs` follows the
//! database's answers — result sets in the text and binary protocols,
//! prepared-statement metadata — and passes every row through the rewrite
//! hook; [`kill`] knows which database thread each session holds, so a
//! `KILL QUERY` can be checked and can withdraw a held statement;
//! `record.rs` is what a session records in the audit store.
//!
//! The policy, rewrite and recording interfaces are the PostgreSQL engine's
//! ([`sluice_pgproxy::hooks`]): one policy and one masking engine serve
//! both protocols.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod change_user;
mod inject;
pub mod kill;
mod record;
mod results;
mod session;
mod startup;

pub use kill::KillRegistry;
use sluice_mywire::CodecError;
pub use startup::run as serve;

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum MyError {
    /// Socket error on either leg.
    #[error("{leg}: {source}")]
    Io {
        /// "client" or "upstream".
        leg: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A peer sent bytes that are not the MySQL protocol.
    #[error("{leg} sent an invalid packet: {source}")]
    Protocol {
        /// "client" or "upstream".
        leg: &'static str,
        /// What was wrong.
        source: CodecError,
    },
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
    /// The session ended by policy (a limit, the store); the client was told.
    #[error("ended by policy: {0}")]
    Ended(String),
    /// The client closed the connection before sending a byte of its
    /// handshake response (a port probe).
    #[error("client closed the connection before its handshake response")]
    ClientGone,
}

/// MySQL error codes sluice answers with.
pub(crate) mod codes {
    /// ER_TABLEACCESS_DENIED_ERROR: a statement refused by policy.
    pub const DENIED: u16 = 1142;
    /// ER_NOT_SUPPORTED_YET: a command or protocol feature sluice refuses.
    pub const NOT_SUPPORTED: u16 = 1235;
    /// ER_QUERY_INTERRUPTED: a held statement withdrawn by KILL QUERY.
    pub const INTERRUPTED: u16 = 1317;
    /// ER_ACCESS_DENIED_ERROR: the session itself is refused.
    pub const ACCESS_DENIED: u16 = 1045;
    /// ER_UNKNOWN_STMT_HANDLER: an execute of a statement sluice never saw
    /// prepared.
    pub const UNKNOWN_STMT: u16 = 1243;
    /// ER_NET_PACKETS_OUT_OF_ORDER / malformed packets.
    pub const MALFORMED: u16 = 1156;
    /// CR_CONN_HOST_ERROR, as a client library would report it: the
    /// database could not be reached.
    pub const UNREACHABLE: u16 = 2003;
    /// ER_NET_PACKET_TOO_LARGE.
    pub const TOO_LARGE: u16 = 1153;
    /// CR_SERVER_LOST, as a client library would report it: the database
    /// closed the connection mid-session.
    pub const LOST_DATABASE: u16 = 2013;
    /// ER_UNKNOWN_CHARACTER_SET: a client character set sluice refuses.
    pub const CHARSET: u16 = 1115;
    /// ER_HOST_IS_BLOCKED: too many failed logins from this source (or
    /// as this identity and user).
    pub const HOST_BLOCKED: u16 = 1129;
    /// ER_TOO_MANY_USER_CONNECTIONS: the identity is at its session cap.
    pub const TOO_MANY_USER_CONNECTIONS: u16 = 1203;
    /// ER_ACCESS_DENIED_NO_PASSWORD_ERROR: a login refused for its
    /// credentials (MySQL's `auth_socket` and friends).
    pub const ACCESS_DENIED_NO_PASSWORD: u16 = 1698;
}
