//! Builds the eBPF object (nightly, bpfel-unknown-none, bpf-linker) so the
//! loader can embed it with `include_bytes_aligned!`. `cargo xtask setup`
//! installs what this needs.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let meta = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = meta.join("../../ebpf/sluice-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    aya_build::build_ebpf(
        [Package { name: "sluice-ebpf", root_dir: root, ..Default::default() }],
        Toolchain::default(),
    )
    .context("building the eBPF programs failed; run `cargo xtask setup` (needs nightly rust-src and bpf-linker)")
}
