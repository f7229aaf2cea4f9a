//! Any byte stream through framing and decoding must not panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sluice_pgwire::exercise(data);
});
