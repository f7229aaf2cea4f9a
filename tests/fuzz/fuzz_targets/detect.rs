//! Arbitrary bytes through the content detectors and the masking formats:
//! what every value leaving the database passes.
//!
//! The first byte chooses the column name (CVV context) and which
//! optional detectors are on; the rest is the value.
//!
//! - Scanning and masking must not panic.
//! - A masked value has the value's length, differs only where an ASCII
//!   byte became `*`, and comes with at least one finding.
//! - Masking is final: scanning the masked value again finds no PAN and no
//!   track data. A masked value the detector would still report is a card
//!   number leaving in the clear.
//! - The store's own redaction (statement text, parameters and errors
//!   before they are recorded) is final too: applying it twice changes
//!   nothing more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_policy::{
    detect::{DetectorSet, Kind, Scanner},
    mask::{self, MaskFormat, Masker},
};

const COLUMNS: [Option<&str>; 8] = [
    None,
    Some("cvv"),
    Some("card_cvc2"),
    Some("securityCode"),
    Some("incident_id"),
    Some("pan"),
    Some("notes"),
    Some("CID"),
];

/// The always-on detectors only: PAN and track data.
fn plain() -> Scanner {
    Scanner::new(&DetectorSet {
        cvv: false,
        email: false,
        ssn: false,
        iban: false,
    })
}

fn check_masked(value: &[u8], out: &[u8]) {
    assert_eq!(out.len(), value.len(), "masking keeps the length");
    for (i, (&a, &b)) in value.iter().zip(out).enumerate() {
        if a != b {
            assert!(
                b == b'*' && a.is_ascii(),
                "byte {i} changed from {a:#x} to {b:#x}: only ASCII bytes become `*`"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, value)) = data.split_first() else {
        return;
    };
    let column = COLUMNS[usize::from(pick & 7)];
    let set = DetectorSet {
        cvv: pick & 0x08 == 0,
        email: pick & 0x10 != 0,
        ssn: pick & 0x20 != 0,
        iban: pick & 0x40 != 0,
    };
    let scanner = Scanner::new(&set);

    if let Some((out, findings)) = scanner.scan(value, column) {
        assert!(!findings.is_empty(), "a masked value comes with findings");
        check_masked(value, &out);
        if let Some((again, f)) = plain().scan(&out, None) {
            for k in [Kind::Pan, Kind::Track1, Kind::Track2] {
                assert_eq!(
                    f.get(k),
                    0,
                    "the masked value {:?} of {:?} still holds {}: {:?}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(value),
                    k.as_str(),
                    String::from_utf8_lossy(&again),
                );
            }
        }
    }

    if let Ok(text) = std::str::from_utf8(value) {
        let (masked, findings) = scanner.scan_str(text, column);
        check_masked(value, masked.as_bytes());
        assert_eq!(
            findings.is_empty(),
            matches!(masked, std::borrow::Cow::Borrowed(_))
        );
        let _ = Scanner::is_pan_number(text);

        let stored = sluice_store::redact::mask_pans(text);
        check_masked(value, stored.as_bytes());
        assert_eq!(
            sluice_store::redact::mask_pans(&stored),
            stored,
            "the store's PAN redaction is final"
        );
    }

    // The PCI display form keeps at most ten digits: never a PAN.
    let pci = mask::pci(value);
    assert!(
        plain()
            .scan(&pci, None)
            .is_none_or(|(_, f)| f.get(Kind::Pan) == 0),
        "pci({:?}) = {:?} still holds a PAN",
        String::from_utf8_lossy(value),
        String::from_utf8_lossy(&pci)
    );
    let masker = Masker::new(Some(b"0123456789abcdef0123456789abcdef"));
    for f in [MaskFormat::Pci, MaskFormat::Redact, MaskFormat::Token] {
        let _ = masker.apply(f, value, pick & 0x80 == 0);
    }
});
