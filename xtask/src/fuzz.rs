//! `cargo xtask fuzz`: build the cargo-fuzz crate in `tests/fuzz` and run
//! each of its targets for a bounded time, two at a time.
//!
//! The crate is built with `cargo fuzz build` by the Rust release pinned in
//! `ebpf/toolchain.txt` with `RUSTC_BOOTSTRAP=1` (the same toolchain and
//! the same way the eBPF programs are built: the machines have no nightly),
//! optimised, with debug assertions and overflow checks, without a
//! sanitizer (sluice's crates have no `unsafe`; the fuzzer's executions
//! count for more in a short run), into `target/fuzz`.
//!
//! Each target's binary is then run directly under libFuzzer with an empty
//! scratch corpus first (`target/fuzz-corpus/<target>`, where it writes
//! what it finds) and the repository's seeds second
//! (`tests/fuzz/corpus/<target>`, only read), so no run ever adds files to
//! the repository. Crash inputs go to `target/fuzz-artifacts/<target>/`,
//! each target's output to `target/fuzz-logs/<target>.log`.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::context::{self, Context};

/// Where the fuzz crate lives, relative to the workspace root.
const FUZZ_DIR: &str = "tests/fuzz";
/// The host triple cargo-fuzz builds for (its default).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// libFuzzer's limit on one input's run: longer is a hang, and a failure.
const INPUT_TIMEOUT_SECS: u64 = 10;
/// libFuzzer's memory limit per target process (two run at once).
const RSS_LIMIT_MB: u64 = 2048;
/// A target still running this long after its time is killed.
const GRACE: Duration = Duration::from_secs(120);

/// Arguments for `cargo xtask fuzz`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Seconds each target runs (libFuzzer's `-max_total_time`).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub time: u64,
    /// Targets run at the same time (each uses one core).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Targets to run (default: every target in tests/fuzz/fuzz_targets).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

impl Args {
    /// Every target, `seconds` each, two at a time: what CI runs.
    pub fn all_for(seconds: u64) -> Args {
        Args {
            time: seconds,
            jobs: 2,
            targets: Vec::new(),
        }
    }
}

pub fn run(ctx: &Context, args: &Args) -> Result<()> {
    let available = targets(ctx)?;
    let wanted = if args.targets.is_empty() {
        available.clone()
    } else {
        for t in &args.targets {
            if !available.contains(t) {
                bail!(
                    "no fuzz target {t:?} in {FUZZ_DIR}/fuzz_targets (there are: {})",
                    available.join(", ")
                );
            }
        }
        args.targets.clone()
    };

    let started = Instant::now();
    build(ctx)?;
    println!(
        "xtask fuzz: fuzz crate built in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let runs = run_all(ctx, args, &wanted)?;
    let failed: Vec<&Run> = runs.iter().filter(|r| !r.ok).collect();
    println!(
        "xtask fuzz: {} targets, {}s each, {} at a time: {} passed, {} failed ({:.1}s in all)",
        runs.len(),
        args.time,
        args.jobs.max(1),
        runs.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|r| r.target.as_str()).collect();
        bail!("fuzz targets failed: {}", names.join(", "));
    }
    Ok(())
}

/// The fuzz targets: the files in `tests/fuzz/fuzz_targets`, sorted.
fn targets(ctx: &Context) -> Result<Vec<String>> {
    let dir = ctx.root.join(FUZZ_DIR).join("fuzz_targets");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no fuzz targets in {}", dir.display());
    }
    Ok(names)
}

/// The Rust release pinned for the eBPF build, which builds the fuzzers
/// too (with `RUSTC_BOOTSTRAP=1` for cargo-fuzz's `-Z` flags).
pub fn toolchain(ctx: &Context) -> Result<String> {
    let pin = ctx.root.join("ebpf/toolchain.txt");
    Ok(fs::read_to_string(&pin)
        .with_context(|| format!("cannot read {}", pin.display()))?
        .trim()
        .to_owned())
}

fn build_dir(ctx: &Context) -> PathBuf {
    ctx.target_dir.join("fuzz")
}

/// `cargo fuzz build`: every target, optimised, with debug assertions.
fn build(ctx: &Context) -> Result<()> {
    let toolchain = toolchain(ctx)?;
    let mut cmd = ctx.command("rustup");
    cmd.current_dir(ctx.root.join(FUZZ_DIR))
        .args(["run", &toolchain, "cargo", "fuzz", "build"])
        .args(["--release", "--debug-assertions", "--sanitizer", "none"])
        .arg("--target-dir")
        .arg(build_dir(ctx))
        // cargo-fuzz's instrumentation flags are unstable; the pinned
        // release takes them this way, as it does for the eBPF build.
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO_TARGET_DIR");
    println!("xtask fuzz: building {FUZZ_DIR} with rust {toolchain} ...");
    context::run(&mut cmd).context(
        "building the fuzz targets failed (the errors are above; `cargo xtask setup` installs cargo-fuzz)",
    )
}

/// One target's run.
struct Run {
    target: String,
    ok: bool,
}

/// A target running.
struct Running {
    target: String,
    child: Child,
    started: Instant,
    log: PathBuf,
    artifacts: PathBuf,
    binary: PathBuf,
}

fn run_all(ctx: &Context, args: &Args, targets: &[String]) -> Result<Vec<Run>> {
    let jobs = args.jobs.max(1);
    let mut queue: Vec<&String> = targets.iter().rev().collect();
    let mut running: Vec<Running> = Vec::new();
    let mut done = Vec::new();
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs
            && let Some(t) = queue.pop()
        {
            running.push(start(ctx, args, t)?);
        }
        thread::sleep(Duration::from_millis(200));
        let mut i = 0;
        while i < running.len() {
            let r = &mut running[i];
            let status = r
                .child
                .try_wait()
                .context("cannot wait for a fuzz target")?;
            let overdue = r.started.elapsed() > Duration::from_secs(args.time) + GRACE;
            if status.is_none() && !overdue {
                i += 1;
                continue;
            }
            let mut r = running.remove(i);
            let ok = match status {
                Some(s) => s.success(),
                None => {
                    // It did not stop: kill it and report it as failed.
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    println!(
                        "xtask fuzz: {}: still running {}s after its time; killed",
                        r.target,
                        GRACE.as_secs()
                    );
                    false
                }
            };
            report(&r, ok);
            done.push(Run {
                target: r.target,
                ok,
            });
        }
    }
    Ok(done)
}

fn start(ctx: &Context, args: &Args, target: &str) -> Result<Running> {
    let binary = build_dir(ctx).join(TRIPLE).join("release").join(target);
    let scratch = ctx.target_dir.join("fuzz-corpus").join(target);
    let artifacts = ctx.target_dir.join("fuzz-artifacts").join(target);
    let logs = ctx.target_dir.join("fuzz-logs");
    // A fresh scratch corpus each run: what a run finds is its own.
    let _ = fs::remove_dir_all(&scratch);
    for dir in [&scratch, &artifacts, &logs] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log = logs.join(format!("{target}.log"));
    let out = fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;

    let mut cmd = ctx.command(&binary);
    cmd.arg(format!("-max_total_time={}", args.time))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // libFuzzer writes new inputs into the first directory only.
        .arg(&scratch);
    let seeds = ctx.root.join(FUZZ_DIR).join("corpus").join(target);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.env("RUST_BACKTRACE", "1")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    println!("xtask fuzz: {target}: running for {}s ...", args.time);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    Ok(Running {
        target: target.to_owned(),
        child,
        started: Instant::now(),
        log,
        artifacts,
        binary,
    })
}

/// What libFuzzer's output says about a finished run.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    execs: Option<u64>,
    execs_per_sec: Option<u64>,
    corpus: Option<(u64, String)>,
    coverage: Option<u64>,
    crash: Option<String>,
}

fn parse_stats(log: &str) -> Stats {
    let mut s = Stats::default();
    let number =
        |line: &str, key: &str| -> Option<u64> { line.strip_prefix(key)?.trim().parse().ok() };
    for line in log.lines() {
        if let Some(n) = number(line, "stat::number_of_executed_units:") {
            s.execs = Some(n);
        } else if let Some(n) = number(line, "stat::average_exec_per_sec:") {
            s.execs_per_sec = Some(n);
        } else if line.starts_with('#') {
            // `#123 NEW    cov: 591 ft: 1773 corp: 595/10495b lim: 38 ...`
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                match w {
                    "cov:" => s.coverage = words.next().and_then(|v| v.parse().ok()),
                    "corp:" => {
                        s.corpus = words.next().and_then(|v| {
                            let (n, size) = v.split_once('/')?;
                            Some((n.parse().ok()?, size.to_owned()))
                        })
                    }
                    _ => {}
                }
            }
        } else if let Some(rest) = line.split_once("Test unit written to ").map(|(_, r)| r) {
            s.crash = Some(rest.trim().to_owned());
        }
    }
    s
}

fn report(r: &Running, ok: bool) {
    let text = fs::read_to_string(&r.log).unwrap_or_default();
    let s = parse_stats(&text);
    let took = r.started.elapsed().as_secs_f64();
    let or_unknown = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let corpus = s.corpus.as_ref().map_or_else(
        || "?".to_owned(),
        |(n, size)| format!("{n} inputs ({size})"),
    );
    println!(
        "xtask fuzz: {}: {} in {took:.0}s: {} execs ({}/s), corpus {corpus}, coverage {}",
        r.target,
        if ok { "ok" } else { "FAILED" },
        or_unknown(s.execs),
        or_unknown(s.execs_per_sec),
        or_unknown(s.coverage),
    );
    if ok {
        return;
    }
    // The end of libFuzzer's output: the panic message and its input.
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(40)..] {
        println!("    {line}");
    }
    match &s.crash {
        Some(artifact) => {
            println!("xtask fuzz: {}: crash input {artifact}", r.target);
            println!(
                "xtask fuzz: {}: reproduce with `{} {artifact}`",
                r.target,
                r.binary.display()
            );
        }
        None => println!(
            "xtask fuzz: {}: no crash input written (see {}; inputs go to {})",
            r.target,
            r.log.display(),
            r.artifacts.display()
        ),
    }
    println!(
        "xtask fuzz: {}: whole output in {}",
        r.target,
        r.log.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_stats_and_crashes() {
        let log = "\
INFO: Seed: 1
#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 26Mb
#78730\tREDUCE cov: 1404 ft: 3850 corp: 574/11903b lim: 68 exec/s: 0 rss: 29Mb L: 60/68 MS: 5
==1== ERROR: libFuzzer: deadly signal
artifact_prefix='/t/'; Test unit written to /t/crash-3943
Base64: Cg==
stat::number_of_executed_units: 2753566
stat::average_exec_per_sec:     131122
stat::new_units_added:          3
";
        assert_eq!(
            parse_stats(log),
            Stats {
                execs: Some(2_753_566),
                execs_per_sec: Some(131_122),
                corpus: Some((574, "11903b".into())),
                coverage: Some(1404),
                crash: Some("/t/crash-3943".into()),
            }
        );
        assert_eq!(parse_stats(""), Stats::default());
    }
}
