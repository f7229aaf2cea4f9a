//! Builds the eBPF object (bpfel-unknown-none, `-Z build-std=core`,
//! bpf-linker) so the loader can embed it with `include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs.
//!
//! The toolchain is pinned in `ebpf/toolchain.txt`, not "nightly": rustc
//! hands bpf-linker LLVM bitcode, and bpf-linker (built against Debian's
//! LLVM 22) cannot read bitcode from a newer LLVM ("Not an int attribute").
//! A nightly moves to a new LLVM without notice; the pinned stable release
//! does not. `RUSTC_BOOTSTRAP=1` lets it take `-Z build-std` and aya-ebpf's
//! `asm_experimental_arch`, for this child build only.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let meta = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = meta.join("../../ebpf/sluice-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let pin = meta.join("../../ebpf/toolchain.txt");
    println!("cargo:rerun-if-changed={}", pin.display());
    let toolchain =
        std::fs::read_to_string(&pin).with_context(|| format!("cannot read {}", pin.display()))?;
    let toolchain = toolchain.trim();
    // SAFETY: the build script is single-threaded; the variable is read by
    // aya-build and inherited by the cargo it runs for the eBPF crate.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("RUSTC_BOOTSTRAP", "1")
    };
    aya_build::build_ebpf(
        [Package {
            name: "sluice-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Custom(toolchain),
    )
    .with_context(|| {
        format!(
            "building the eBPF programs with Rust {toolchain} failed; run `cargo xtask setup` \
             (needs that toolchain with rust-src, and bpf-linker)"
        )
    })
}
