//! The store's on-disk encoding, format version 1. Everything an auditor's
//! tool needs to read or re-verify a store is defined here; see
//! `docs/audit-format.md` for the same in prose.
//!
//! Column families and keys (integers big-endian, so keys sort by number):
//!
//! | family        | key                                   | value |
//! |---------------|---------------------------------------|-------|
//! | `events`      | session u64 · seq u32                 | [`StoredEvent`] |
//! | `sessions`    | session u64                           | JSON session summary |
//! | `indexes`     | kind byte · fields (see [`index_key`])| empty |
//! | `checkpoints` | number u64                            | [`StoredCheckpoint`] |
//! | `approvals`   | reserved for just-in-time approvals   | |
//! | `admin`       | reserved for admin API actions        | |
//! | `default`     | `meta/…` names                        | counters, public key, format |
//!
//! Each session is a hash chain. Event `n`'s hash is
//! `SHA-256(hash(n-1) ‖ canonical(n))`, with `hash(-1) = SHA-256("sluice.session.v1\0" ‖ session)`
//! and `canonical = "sluice.event.v1\0" ‖ session ‖ seq ‖ global ‖ time_us ‖ body`.
//! `body` is the event's JSON exactly as stored: it is hashed as bytes,
//! never re-serialised, so a reader need not reproduce any JSON layout.
//!
//! A checkpoint is signed with ed25519 over `"sluice.checkpoint.v1\0" ‖ body`,
//! where `body` is its JSON (see [`crate::checkpoint::Checkpoint`]).
use ring::digest;

/// The format version written in every stored event and checkpoint.
pub const FORMAT: u8 = 1;

/// Column family names.
pub const CF_EVENTS: &str = "events";
/// Session summaries, for listing without reading events.
pub const CF_SESSIONS: &str = "sessions";
/// Secondary indexes.
pub const CF_INDEXES: &str = "indexes";
/// Signed checkpoints.
pub const CF_CHECKPOINTS: &str = "checkpoints";
/// Approval requests and decisions (written by the approvals feature).
pub const CF_APPROVALS: &str = "approvals";
/// Admin API actions (written by the admin API).
pub const CF_ADMIN: &str = "admin";
/// Every family, in the order they are opened.
pub const FAMILIES: [&str; 6] = [
    CF_EVENTS,
    CF_SESSIONS,
    CF_INDEXES,
    CF_CHECKPOINTS,
    CF_APPROVALS,
    CF_ADMIN,
];

/// `default` family: the store's format version (one byte).
pub const META_FORMAT: &[u8] = b"meta/format";
/// `default` family: the last global sequence number written (u64).
pub const META_GLOBAL: &[u8] = b"meta/global";
/// `default` family: the next session id to hand out (u64).
pub const META_NEXT_SESSION: &[u8] = b"meta/next-session";
/// `default` family: the checkpoint signing public key (32 bytes).
pub const META_PUBLIC_KEY: &[u8] = b"meta/public-key";

/// Index kinds: the first byte of an `indexes` key.
pub mod index {
    /// By start time: `t · started_us · session`.
    pub const TIME: u8 = b't';
    /// By identity: `i · identity · 0 · started_us · session`.
    pub const IDENTITY: u8 = b'i';
    /// By target: `g · target · 0 · started_us · session`.
    pub const TARGET: u8 = b'g';
    /// By decision: `d · decision · 0 · started_us · session`, once per
    /// session that had a statement with that (non-allow) decision.
    pub const DECISION: u8 = b'd';
    /// Session still open: `o · session`. Left behind by a crash; the next
    /// start closes such sessions with an "interrupted" end event.
    pub const OPEN: u8 = b'o';
    /// Session has events not yet covered by a checkpoint: `x · session`.
    pub const UNSIGNED: u8 = b'x';
}

/// An `events` key.
pub fn event_key(session: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&session.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Split an `events` key.
pub fn split_event_key(key: &[u8]) -> Option<(u64, u32)> {
    let key: &[u8; 12] = key.try_into().ok()?;
    Some((
        u64::from_be_bytes(key[..8].try_into().ok()?),
        u32::from_be_bytes(key[8..].try_into().ok()?),
    ))
}

/// An `indexes` key: kind, an optional text field, the start time, the
/// session.
pub fn index_key(kind: u8, field: Option<&str>, started_us: u64, session: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + field.map_or(0, |f| f.len() + 1) + 16);
    k.push(kind);
    if let Some(f) = field {
        // A NUL inside the field would end it early; identities and target
        // names never hold one, but never let it confuse a prefix scan.
        k.extend(f.bytes().map(|b| if b == 0 { b'?' } else { b }));
        k.push(0);
    }
    k.extend_from_slice(&started_us.to_be_bytes());
    k.extend_from_slice(&session.to_be_bytes());
    k
}

/// The session id at the end of an index key.
pub fn index_session(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// A key holding only a kind and a session (`o`, `x`).
pub fn marker_key(kind: u8, session: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = kind;
    k[1..].copy_from_slice(&session.to_be_bytes());
    k
}

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The hash a session's chain starts from.
pub fn genesis(session: u64) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"sluice.session.v1\0");
    ctx.update(&session.to_be_bytes());
    finish(ctx)
}

/// Where an event sits: what its hash covers besides its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Session id.
    pub session: u64,
    /// Index of the event within its session, from 0.
    pub seq: u32,
    /// Store-wide sequence number, from 1.
    pub global: u64,
    /// When it was written, microseconds since the Unix epoch.
    pub time_us: u64,
}

/// An event's chain hash.
pub fn link(prev: &Hash, at: &Position, body: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(b"sluice.event.v1\0");
    ctx.update(&at.session.to_be_bytes());
    ctx.update(&at.seq.to_be_bytes());
    ctx.update(&at.global.to_be_bytes());
    ctx.update(&at.time_us.to_be_bytes());
    ctx.update(body);
    finish(ctx)
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(bytes);
    finish(ctx)
}

fn finish(ctx: digest::Context) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(ctx.finish().as_ref());
    h
}

/// An `events` value: `format u8 · global u64 · time_us u64 · hash [32] · body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    /// Store-wide sequence number.
    pub global: u64,
    /// Write time, µs since the epoch.
    pub time_us: u64,
    /// The chain hash.
    pub hash: Hash,
    /// The event's JSON.
    pub body: &'a [u8],
}

const EVENT_HEADER: usize = 1 + 8 + 8 + 32;

impl<'a> StoredEvent<'a> {
    /// Encode for the `events` family.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(EVENT_HEADER + self.body.len());
        v.push(FORMAT);
        v.extend_from_slice(&self.global.to_be_bytes());
        v.extend_from_slice(&self.time_us.to_be_bytes());
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(self.body);
        v
    }

    /// Decode an `events` value.
    pub fn decode(value: &'a [u8]) -> Result<StoredEvent<'a>, String> {
        if value.len() < EVENT_HEADER {
            return Err(format!("stored event is {} bytes, too short", value.len()));
        }
        if value[0] != FORMAT {
            return Err(format!("unknown event format {}", value[0]));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&value[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&value[17..49]);
        Ok(StoredEvent {
            global: u64_at(1),
            time_us: u64_at(9),
            hash,
            body: &value[EVENT_HEADER..],
        })
    }
}

/// A `checkpoints` value: `format u8 · signature [64] · body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint<'a> {
    /// ed25519 signature over the signed bytes.
    pub signature: [u8; 64],
    /// The checkpoint's JSON.
    pub body: &'a [u8],
}

impl<'a> StoredCheckpoint<'a> {
    /// Encode for the `checkpoints` family.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(65 + self.body.len());
        v.push(FORMAT);
        v.extend_from_slice(&self.signature);
        v.extend_from_slice(self.body);
        v
    }

    /// Decode a `checkpoints` value.
    pub fn decode(value: &'a [u8]) -> Result<StoredCheckpoint<'a>, String> {
        if value.len() < 65 {
            return Err(format!(
                "stored checkpoint is {} bytes, too short",
                value.len()
            ));
        }
        if value[0] != FORMAT {
            return Err(format!("unknown checkpoint format {}", value[0]));
        }
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&value[1..65]);
        Ok(StoredCheckpoint {
            signature,
            body: &value[65..],
        })
    }
}

/// The bytes a checkpoint's signature covers.
pub fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(21 + body.len());
    v.extend_from_slice(b"sluice.checkpoint.v1\0");
    v.extend_from_slice(body);
    v
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parse hex of an exact length.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nibble(s[2 * i])? << 4 | nibble(s[2 * i + 1])?;
    }
    Some(out)
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_values_round_trip() {
        let e = StoredEvent {
            global: 7,
            time_us: 1_700_000_000_000_000,
            hash: [9; 32],
            body: br#"{"kind":"statement"}"#,
        };
        let v = e.encode();
        assert_eq!(StoredEvent::decode(&v).unwrap(), e);
        assert!(StoredEvent::decode(&v[..10]).is_err());
        let mut bad = v.clone();
        bad[0] = 2;
        assert!(StoredEvent::decode(&bad).unwrap_err().contains("format 2"));
    }

    #[test]
    fn keys_sort_by_session_then_seq() {
        assert!(event_key(1, 300) < event_key(2, 0));
        assert!(event_key(2, 9) < event_key(2, 10));
        assert_eq!(split_event_key(&event_key(5, 6)), Some((5, 6)));
        let k = index_key(index::IDENTITY, Some("ci-job"), 10, 42);
        assert_eq!(index_session(&k), Some(42));
        assert!(
            index_key(index::IDENTITY, Some("a"), 99, 1)
                < index_key(index::IDENTITY, Some("ab"), 0, 0)
        );
    }

    #[test]
    fn the_chain_covers_position_and_body() {
        let at = Position {
            session: 1,
            seq: 0,
            global: 1,
            time_us: 5,
        };
        let g = genesis(1);
        let h = link(&g, &at, b"x");
        assert_ne!(h, link(&g, &Position { seq: 1, ..at }, b"x"));
        assert_ne!(h, link(&g, &Position { global: 2, ..at }, b"x"));
        assert_ne!(h, link(&g, &at, b"y"));
        assert_ne!(h, link(&genesis(2), &at, b"x"));
        assert_eq!(unhex::<32>(&hex(&h)), Some(h));
        assert_eq!(unhex::<2>("zz00"), None);
    }
}
