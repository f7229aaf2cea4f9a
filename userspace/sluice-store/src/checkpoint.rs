//! Signed checkpoints: every so often (and at shutdown, after a crash, and
//! when retention removes sessions) the writer signs the chain heads of
//! every session that changed since the previous checkpoint, the store-wide
//! event count, and the hash of the previous checkpoint.
//!
//! Anything covered by a checkpoint can no longer change unseen: an edited,
//! inserted, removed or reordered event breaks its session's chain or no
//! longer leads to the signed head; a truncated session lacks the signed
//! head; a removed checkpoint breaks the checkpoint chain. Retention is
//! itself a checkpoint (`expired`), so expired sessions are absent by
//! signature, not by tampering.
use serde::{Deserialize, Serialize};

/// One session's chain head: session, seq of its last event, that event's hash (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head(pub u64, pub u32, pub String);

/// A checkpoint's signed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Checkpoint number, from 1, without gaps.
    pub n: u64,
    /// When it was made, µs since the epoch.
    pub time_us: u64,
    /// The last global event sequence number written before it.
    pub global: u64,
    /// Hex SHA-256 of the previous checkpoint's signed bytes ("" for the first).
    pub prev: String,
    /// Fingerprint of the key that signed it.
    pub key: String,
    /// Why: "interval", "shutdown", "recovery" or "expiry".
    pub reason: String,
    /// Sessions that changed since the previous checkpoint, by session id.
    pub heads: Vec<Head>,
    /// Sessions removed by retention with this checkpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<u64>,
    /// Events removed with them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expired_events: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
