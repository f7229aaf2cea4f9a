//! Bytes as the audit store holds them: what a reader decodes from a
//! store directory someone else could have written to.
//!
//! - Stored event and checkpoint values (`codec::StoredEvent`,
//!   `StoredCheckpoint`) and event keys decode without panicking, and
//!   whatever decodes encodes back to the same bytes.
//! - Event, checkpoint and session-summary JSON reads back equal after
//!   writing it again (readers and writers agree on format version 1).
//! - The verifier, fed the decoded event and checkpoint, reports rather
//!   than panics.
//! - The other text a reader parses (public keys, hex hashes, `--since`
//!   times) parses without panicking, and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_store::{
    PublicKey, SessionSummary,
    checkpoint::Checkpoint,
    codec::{self, StoredCheckpoint, StoredEvent},
    event::Event,
    read::{RecordedCheckpoint, RecordedEvent},
    time,
    verify::{Scope, Verifier},
};

/// A key nobody holds the private half of: every signature fails, which
/// the verifier must report.
const KEY: PublicKey = PublicKey([7; 32]);

fn json_round_trips(body: &[u8]) {
    if let Ok(e) = serde_json::from_slice::<Event>(body) {
        let again: Event = serde_json::from_slice(&e.to_json()).expect("own event JSON reads");
        assert_eq!(again, e, "event JSON round trip");
    }
    if let Ok(c) = serde_json::from_slice::<Checkpoint>(body) {
        let text = serde_json::to_vec(&c).expect("checkpoint serialises");
        let again: Checkpoint = serde_json::from_slice(&text).expect("own checkpoint reads");
        assert_eq!(again, c, "checkpoint JSON round trip");
    }
    if let Ok(s) = serde_json::from_slice::<SessionSummary>(body) {
        let text = serde_json::to_vec(&s).expect("summary serialises");
        let again: SessionSummary = serde_json::from_slice(&text).expect("own summary reads");
        assert_eq!(again, s, "session summary JSON round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut v = Verifier::new(KEY);
    if let Ok(c) = StoredCheckpoint::decode(data) {
        assert_eq!(c.encode(), data, "checkpoint value round trip");
        json_round_trips(c.body);
        v.checkpoint(&RecordedCheckpoint {
            n: 1,
            signature: c.signature,
            body: c.body.to_vec(),
        });
    }
    if let Some(key) = data.get(..12) {
        let (session, seq) = codec::split_event_key(key).expect("12 bytes are an event key");
        assert_eq!(codec::event_key(session, seq), key);
        let _ = codec::index_session(data);
        if let Ok(e) = StoredEvent::decode(&data[12..]) {
            assert_eq!(e.encode(), &data[12..], "event value round trip");
            json_round_trips(e.body);
            // The event and, if it chains, a second copy after it.
            let recorded = RecordedEvent {
                session,
                seq,
                global: e.global,
                time_us: e.time_us,
                hash: e.hash,
                body: e.body.to_vec(),
            };
            v.event(&recorded);
            v.event(&RecordedEvent {
                seq: seq.wrapping_add(1),
                ..recorded
            });
            let _ = time::rfc3339(e.time_us);
        }
    }
    json_round_trips(data);
    let report = v.finish(&Scope::Everything);
    let _ = report.problems.iter().map(ToString::to_string).count();

    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(k) = PublicKey::parse(text) {
            assert_eq!(PublicKey::parse(&k.to_text()), Some(k));
        }
        if let Some(h) = codec::unhex::<32>(text) {
            assert_eq!(codec::unhex::<32>(&codec::hex(&h)), Some(h));
        }
        let _ = time::parse(text, 1_790_000_000_000_000);
    }
});
