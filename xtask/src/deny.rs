//! `cargo xtask deny`: the dependency review — `cargo deny` against
//! `deny.toml` (licences, banned and duplicate crates, sources, and
//! RustSec advisories). `cargo xtask test` runs it as its first check.

use anyhow::{Result, bail};

use crate::context::{self, Context};

/// The cargo-deny release `cargo xtask setup` installs (`--locked`).
pub const CARGO_DENY_VERSION: &str = "0.20.2";

/// What `cargo deny` prints when it cannot fetch the advisory database.
const NO_DATABASE: &str = "failed to fetch advisory database";

/// Licences, bans and sources must pass. Advisories must pass too when
/// RustSec's database (a git repository on github.com) can be fetched; a
/// machine that cannot reach it is told so, loudly, and the check is left
/// to one that can.
pub fn run(ctx: &Context) -> Result<()> {
    context::run(&mut ctx.cargo(["deny", "check", "licenses", "bans", "sources"]))?;
    let Some(out) = context::capture(&mut ctx.cargo(["deny", "check", "advisories"])) else {
        bail!("cannot run `cargo deny`: run `cargo xtask setup`");
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        println!("deny: advisories ok");
        return Ok(());
    }
    if stderr.contains(NO_DATABASE) {
        println!(
            "deny: advisories NOT CHECKED: RustSec's advisory database (github.com/RustSec/advisory-db) \
             cannot be fetched from this machine; run `cargo deny check advisories` where it can"
        );
        return Ok(());
    }
    eprint!("{stderr}");
    bail!("`cargo deny check advisories` found advisories for the dependencies (above)")
}
