//! An exported audit file (JSONL) through `sluice audit verify --export`'s
//! parser and verifier: an auditor verifies files they did not write, so
//! whatever the file holds must give a report or an error, never a panic.
//!
//! Verified twice: trusting the key in the file's own header, and trusting
//! a key nobody holds (every checkpoint must then fail, and be reported).
//! Reading it in small pieces (`read_line` across buffer boundaries) gives
//! the same outcome as reading it whole.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use sluice_store::{PublicKey, export::verify_jsonl};

const KEY: PublicKey = PublicKey([7; 32]);

fuzz_target!(|data: &[u8]| {
    let own = verify_jsonl(&mut &data[..], None);
    if let Ok((report, info)) = &own {
        let _ = report.problems.iter().map(ToString::to_string).count();
        let _ = (info.public_key, info.sessions.len());
    }

    let theirs = verify_jsonl(&mut &data[..], Some(KEY));
    if let Ok((report, _)) = &theirs
        && report.checkpoints > 0
    {
        assert!(!report.ok(), "checkpoints verified with a key nobody holds");
    }

    let small = verify_jsonl(&mut BufReader::with_capacity(7, data), None);
    match (&own, &small) {
        (Ok((a, _)), Ok((b, _))) => {
            assert_eq!(a.problems, b.problems);
            assert_eq!((a.events, a.checkpoints), (b.events, b.checkpoints));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("reading in pieces changed the outcome: {own:?} / {small:?}"),
    }
});
