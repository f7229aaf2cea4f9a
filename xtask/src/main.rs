//! `cargo xtask`: sluice's developer and CI tasks — bootstrap a machine, run the
//! whole test suite, drive the lab and dispatch benchmarks.
//!
//! Layout: `setup` installs and checks what the project needs on the host;
//! `test` is the single command CI runs; `fuzz` builds and runs the
//! cargo-fuzz targets in tests/fuzz; `lab` delegates `lab`, `demo` and
//! `bench` to the `sluice-lab` binary; `dist` makes the release tarball and
//! .deb; `context` holds what they share (the
//! workspace root, target directory, `PATH` and how child processes are run).

mod context;
mod deny;
mod dist;
mod fuzz;
mod lab;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::Context;

/// sluice's developer and CI tasks.
///
/// Every task runs from the workspace root and uses the workspace's single
/// `target/` directory (or `CARGO_TARGET_DIR` when set). All of them act on
/// this machine as root (packages, network namespaces, eBPF programs); each
/// task's `--help` says what it touches. CI runs `cargo xtask test`.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Bootstrap this machine (Debian 12, root) for building and testing sluice.
    ///
    /// Idempotent: each step prints `already present` or `installing` and then
    /// `ok`. It installs missing Debian packages with apt-get (LLVM 22 for
    /// bpf-linker, clang, bpftool, iproute2, iptables, nftables, PostgreSQL 15,
    /// pgbouncer, psycopg2, tcpdump, ...), then stops any host PostgreSQL
    /// cluster the package started and sets it to manual start (the lab runs
    /// its own servers inside network namespaces). It adds the Rust release
    /// pinned in ebpf/toolchain.txt with rust-src through rustup (it builds
    /// the eBPF programs, and the fuzz targets) and checks its LLVM is
    /// bpf-linker's, installs bpf-linker, cargo-nextest, cargo-fuzz and
    /// cargo-deny (pinned) into ~/.cargo/bin with `cargo install`, and creates the
    /// lab's Python venv at /var/lib/sluice-lab/venv with psycopg 3 from PyPI
    /// (python3-venv). Finally it checks
    /// the kernel: mounts bpffs at /sys/fs/bpf if it is not mounted, and reports
    /// where cgroup v2 is mounted and whether /sys/kernel/btf/vmlinux exists
    /// (those two only warn). Needs root and network access to the package
    /// registries; needs no terminal.
    Setup,

    /// Run the whole test suite the way CI does: setup, deny, build, nextest, fuzz.
    ///
    /// Runs `setup` first (so it needs root), then `cargo xtask deny` (licences,
    /// bans and sources of every dependency), then `cargo build --workspace`
    /// (which builds the eBPF object through the userspace build script;
    /// `sluice-ebpf` itself is excluded, it only builds for the BPF target),
    /// then `cargo nextest run --workspace --no-fail-fast --test-threads 1` with
    /// `SLUICE_REQUIRE_PRIVILEGED=1`, so a privileged test that cannot run
    /// fails instead of skipping. Tests run one at a time because the
    /// privileged ones create network namespaces, cgroups, policy routes and
    /// pinned eBPF programs that share kernel state. Then, whatever nextest
    /// said, `cargo xtask fuzz --time 60`: every fuzz target for a minute,
    /// two at a time (about 3 minutes, plus building them). Prints the time
    /// of each phase; exits non-zero if any phase fails. Arguments after
    /// `--` go to nextest, e.g. `cargo xtask test -- gateway` to run
    /// matching tests only; `--fuzz-time 0` leaves the fuzzers out.
    Test(test::Args),

    /// Build the cargo-fuzz targets (tests/fuzz) and run each for a while.
    ///
    /// Builds the fuzz crate with `cargo fuzz build` (optimised, debug
    /// assertions and overflow checks on, no sanitizer) using the Rust
    /// release pinned in ebpf/toolchain.txt with `RUSTC_BOOTSTRAP=1`, into
    /// target/fuzz. Then runs every target (or those named) for `--time`
    /// seconds each, two at a time, under libFuzzer: new inputs go to a
    /// scratch corpus under target/fuzz-corpus (the seeds in
    /// tests/fuzz/corpus are only read), crash inputs to
    /// target/fuzz-artifacts/<target>/, output to target/fuzz-logs/. Prints
    /// each target's executions and corpus size; on a crash, the input and
    /// the command that reproduces it, and exits non-zero. Needs
    /// cargo-fuzz (`cargo xtask setup` installs it); not root.
    Fuzz(fuzz::Args),

    /// Review the dependencies with cargo deny (deny.toml).
    ///
    /// Licences (permissive only), banned and wildcard versions, sources
    /// (crates.io only) must pass; so must RustSec's advisories when its
    /// database (a git repository on github.com) can be fetched, and when it
    /// cannot, says so and leaves that check to a machine that can. Needs
    /// cargo-deny (`cargo xtask setup` installs it); not root.
    Deny,

    /// Bring the lab topology up or down, or show it (delegates to `sluice-lab`).
    ///
    /// Builds the `sluice` and `sluice-lab` packages (debug) and then runs
    /// `sluice-lab lab <up|down|status>`. The lab creates network namespaces,
    /// veth pairs, policy routes, cgroups and a PostgreSQL server on
    /// this machine, and loads sluice's eBPF programs; `down` removes all of
    /// it. Needs root.
    Lab(lab::LabArgs),

    /// Run the end-to-end demo in the lab (delegates to `sluice-lab demo`).
    ///
    /// Runs `setup` first, builds `sluice` and `sluice-lab` (debug), then runs
    /// `sluice-lab demo`, which brings a lab up (two agent hosts, a gateway
    /// running sluice and an OpenID provider, a database host with
    /// PostgreSQL 15 and MariaDB 10.11), and tells the story with unmodified
    /// agents (a Python script, psql, mysql): masked card numbers, a refused
    /// DELETE, a migration approved through the admin API, failed bypasses,
    /// failing closed on a crash, and the audit record exported, verified and
    /// replayed. Every claim is checked; it exits non-zero if one fails. The
    /// lab is torn down again unless `--keep` is given (`cargo xtask lab down`
    /// removes it then). Needs root.
    Demo(lab::DemoArgs),

    /// Run the benchmarks and write bench/REPORT.md (delegates to
    /// `sluice-lab bench`).
    ///
    /// Builds `sluice` and `sluice-lab` in release mode and runs
    /// `sluice-lab bench [SUITE] [ARGS...]`. With no suite, every suite of
    /// the report runs in one go (pgbench, large, connect, mysql, micro,
    /// scale: about 15 minutes; `--quick` about 3) and bench/REPORT.md is
    /// rebuilt with its charts. `cargo xtask bench help` lists the suites,
    /// `cargo xtask bench <SUITE> --help` their options. Benchmarks use the
    /// lab's network namespaces and servers on this machine only. Needs
    /// root.
    Bench(lab::BenchArgs),

    /// Soak sluice for a while and check its memory and descriptors stay
    /// flat (delegates to `sluice-lab soak`).
    ///
    /// Builds `sluice` and `sluice-lab` in release mode and runs 32 clients
    /// with mixed statements (reads, writes, a refused statement, masked
    /// reads) through sluice full in the lab for `--minutes` (default 10),
    /// sampling sluice's RSS and open descriptors every 5 s. Writes
    /// bench/results/soak.{json,md}; fails if either grows beyond the
    /// tolerance stated there after the warm-up. Needs root.
    Soak(lab::SoakArgs),

    /// Build the release artifacts: a tarball and a Debian package.
    ///
    /// Builds `sluice` in release mode (unless `--binary` names one), makes
    /// its shell completions and man pages with it, and writes
    /// `dist/sluice-<version>-<arch>-linux.tar.gz` (the binary, deploy/,
    /// docs/, README.md, completions/, man/; run `deploy/install.sh` from
    /// inside it) and `dist/sluice_<version>_<debarch>.deb` (built with
    /// `dpkg-deb --root-owner-group`; Depends from `dpkg-shlibdeps`).
    /// Prints each artifact's path and size. Needs tar, gzip and dpkg-deb;
    /// not root.
    Dist(dist::DistArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Context::new().and_then(|ctx| match cli.task {
        Task::Setup => setup::run(&ctx),
        Task::Test(args) => test::run(&ctx, &args),
        Task::Fuzz(args) => fuzz::run(&ctx, &args),
        Task::Deny => deny::run(&ctx),
        Task::Lab(args) => lab::lab(&ctx, &args),
        Task::Demo(args) => lab::demo(&ctx, &args),
        Task::Bench(args) => lab::bench(&ctx, &args),
        Task::Soak(args) => lab::soak(&ctx, &args),
        Task::Dist(args) => dist::run(&ctx, &args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
