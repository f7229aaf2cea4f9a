//! `sluice-lab`: the lab driver behind `cargo xtask lab|demo|bench`.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
