//! Any byte stream through framing and every parser must not panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sluice_mywire::exercise(data);
});
