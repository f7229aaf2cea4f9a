//! The README's first command, `cargo xtask demo`, run the way CI runs it:
//! non-interactive, checking its own story. It fails if any claim the demo
//! prints does not hold (masked values seen, the DELETE refused, the
//! migration held and approved, no bypass leaking, fail-closed on a crash,
//! the export verifying and its tampered copy not).
use sluice_lab::require_privileged;

#[test]
fn demo_tells_the_whole_story() {
    if !require_privileged("demo") {
        return;
    }
    sluice_lab::demo::run(false).expect("the demo's story holds");
}
