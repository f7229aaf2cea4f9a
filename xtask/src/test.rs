//! `cargo xtask test`: the one command CI runs — setup, the dependency
//! review (`cargo deny`), a full build, the whole suite under nextest, one
//! test at a time, then every fuzz target for a bounded time, with each
//! phase timed.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::context::{self, Context};
use crate::{deny, fuzz, setup};

/// Workspace members that only build for the BPF target. `sluice-ebpf` is
/// built by the userspace crate's build script (aya-build, the Rust
/// release pinned in `ebpf/toolchain.txt`,
/// `bpfel-unknown-none`); built for the host it cannot link, so `--workspace`
/// runs leave it out here just as the root manifest's `default-members` does.
const BPF_ONLY_PACKAGES: &[&str] = &["sluice-ebpf"];

/// Arguments for `cargo xtask test`.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds each fuzz target runs in the fuzz phase (0: no fuzz phase).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    fuzz_time: u64,
    /// Passed to `cargo nextest run` as they are: a test filter, `--no-capture`,
    /// `-E 'test(/gateway/)'`, ... Put them after `--`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "NEXTEST_ARGS"
    )]
    nextest_args: Vec<String>,
}

pub fn run(ctx: &Context, args: &Args) -> Result<()> {
    let mut timer = PhaseTimer::default();
    let result = run_phases(ctx, args, &mut timer);
    timer.summary();
    result
}

fn run_phases(ctx: &Context, args: &Args, timer: &mut PhaseTimer) -> Result<()> {
    timer.phase("setup", || setup::run(ctx))?;

    // The dependency review needs no build; its verdict joins the others'
    // at the end, so a licence problem does not hide the tests' results.
    let reviewed = timer.phase("deny", || deny::run(ctx));

    timer.phase("build", || {
        let mut build = ctx.cargo(["build", "--workspace"]);
        build.args(excludes());
        context::run(&mut build)
    })?;

    let tested = timer.phase("test", || {
        let mut nextest = ctx.cargo([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            // Privileged tests share kernel state (namespaces, cgroups,
            // policy routes, bpffs pins): run them one at a time.
            "--test-threads",
            "1",
        ]);
        nextest
            .args(excludes())
            .args(&args.nextest_args)
            // With this set, a privileged test that cannot run fails instead
            // of skipping: on CI a skip would hide a broken machine.
            .env("SLUICE_REQUIRE_PRIVILEGED", "1");
        context::run(&mut nextest)
    });

    // The fuzzers run whatever nextest said: both verdicts are worth
    // having from one CI run.
    let fuzzed = if args.fuzz_time > 0 {
        timer.phase("fuzz", || {
            fuzz::run(ctx, &fuzz::Args::all_for(args.fuzz_time))
        })
    } else {
        Ok(())
    };
    reviewed.and(tested).and(fuzzed)
}

fn excludes() -> impl Iterator<Item = &'static str> {
    BPF_ONLY_PACKAGES.iter().flat_map(|pkg| ["--exclude", pkg])
}

/// Times each phase and prints a one-line summary at the end.
#[derive(Default)]
struct PhaseTimer {
    done: Vec<(&'static str, Duration, bool)>,
}

impl PhaseTimer {
    fn phase(&mut self, name: &'static str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        println!("xtask test: {name} ...");
        let started = Instant::now();
        let result = f();
        let took = started.elapsed();
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        println!("xtask test: {name} {verdict} in {}", secs(took));
        self.done.push((name, took, result.is_ok()));
        result
    }

    fn summary(&self) {
        let total: Duration = self.done.iter().map(|(_, took, _)| *took).sum();
        let phases: Vec<String> = self
            .done
            .iter()
            .map(|(name, took, ok)| {
                let failed = if *ok { "" } else { " (failed)" };
                format!("{name} {}{failed}", secs(*took))
            })
            .collect();
        println!("xtask test: {} — total {}", phases.join(", "), secs(total));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
