//! `cargo xtask bench micro`: the criterion micro-benchmarks of the
//! userspace crates, built with `cargo bench --no-run`, run, read back
//! from criterion's JSON and judged against issue 5's targets.
//!
//! The benches (each a `[[bench]]` of its crate, `harness = false`):
//! - `policy` (sluice-policy): a decision for a statement seen before
//!   (same text, and same shape with a new literal: the fingerprint
//!   cache) and a cold parse + decide, for five typical statements;
//! - `scan` (sluice-policy): the content detectors over typical values, and
//!   over the same values as a stream of DataRow messages (framing, value
//!   splitting and detectors: what the proxy does to every row);
//! - `pgwire` (sluice-pgwire): walking and decoding a result, encoding a
//!   DataRow, decoding Query messages;
//! - `mywire` (sluice-mywire): decoding a text result set, encoding a text
//!   row, decoding `COM_QUERY` packets;
//! - `store` (sluice-store): appending statement events, and a statement's
//!   record-and-wait with batch and with sync durability.
//!
//! No lab is needed: everything runs in this process's children, on this
//! machine's CPU and disk. Criterion writes its figures under
//! `<target>/criterion/` (`CRITERION_HOME` is set to it, so the suite knows
//! where to read): per bench, `new/estimates.json` (the median time per
//! iteration, ns), `new/benchmark.json` (its id and throughput) and
//! `new/sample.json` (every sample, kept as the raw data).
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::bench_report::{self, BarChart, Headline, Series};

/// The bench targets, in the order they run: (bench name, crate).
const TARGETS: &[(&str, &str)] = &[
    ("policy", "sluice-policy"),
    ("scan", "sluice-policy"),
    ("pgwire", "sluice-pgwire"),
    ("mywire", "sluice-mywire"),
    ("store", "sluice-store"),
];

/// The five statements of `userspace/sluice-policy/benches/policy.rs`
/// (`STATEMENTS`, by index), as the tables name them.
const STATEMENTS: &[&str] = &[
    "point SELECT (pgbench -S)",
    "UPDATE … WHERE (pgbench -N)",
    "JOIN with a PAN column, LIMIT",
    "INSERT … VALUES (pgbench history)",
    "CTE, GROUP BY, JOIN, ORDER BY",
];

/// What each throughput bench is, for the tables: (id, label for charts,
/// description).
const THROUGHPUT: &[(&str, &str, &str)] = &[
    (
        "scan/datarow_stream",
        "DataRow+scan",
        "DataRow stream: frames, values split, default detectors (no hits)",
    ),
    (
        "scan/no_hits",
        "scan",
        "values back to back, default detectors (PAN, track, CVV), no hits",
    ),
    (
        "scan/one_percent_pans",
        "scan 1% PAN",
        "the same, one value in 100 a PAN (masked)",
    ),
    (
        "scan/all_detectors",
        "scan all det.",
        "values, every detector on (email, SSN, IBAN too)",
    ),
    (
        "pgwire/scan_result",
        "pg walk",
        "PostgreSQL: 1,000-row result, frame headers + DataRow values borrowed",
    ),
    (
        "pgwire/decode_result",
        "pg decode",
        "PostgreSQL: the same result decoded into owned messages",
    ),
    (
        "pgwire/encode_data_row",
        "pg encode",
        "PostgreSQL: one five-value DataRow encoded",
    ),
    (
        "mywire/decode_result",
        "my decode",
        "MySQL: 1,000-row text result set, packets + row values borrowed",
    ),
    (
        "mywire/encode_text_row",
        "my encode",
        "MySQL: one five-value text row encoded and framed",
    ),
];

/// Per-message benches: (id, description).
const MESSAGES: &[(&str, &str)] = &[
    (
        "pgwire/decode_queries",
        "PostgreSQL Query message framed and decoded",
    ),
    (
        "mywire/decode_queries",
        "MySQL COM_QUERY packet framed and parsed",
    ),
];

/// The store benches: (id, description).
const STORE: &[(&str, &str)] = &[
    (
        "store/append",
        "append a statement event (batch durability, written, no fsync per event)",
    ),
    (
        "store/statement_batch",
        "record statement, wait until written, record outcome (batch durability)",
    ),
    (
        "store/statement_sync",
        "the same with sync durability: one fsync per statement, one session",
    ),
];

/// Longest a build of the benches may take (RocksDB in release included).
const BUILD_LIMIT: Duration = Duration::from_secs(45 * 60);
/// Longest one bench target may run.
const RUN_LIMIT: Duration = Duration::from_secs(10 * 60);

/// One benchmark's figures, as criterion wrote them.
struct Bench {
    /// Criterion's full id, e.g. `scan/no_hits` or `decide_cold/2`.
    id: String,
    /// The bench target that ran it.
    target: &'static str,
    /// Median time per iteration, ns.
    median_ns: f64,
    /// 95% confidence interval of the median, ns.
    median_ci_ns: (f64, f64),
    /// Mean time per iteration, ns.
    mean_ns: f64,
    /// Bytes per iteration, if criterion was told.
    bytes: Option<u64>,
    /// Elements per iteration, if criterion was told.
    elements: Option<u64>,
    /// Every sample's time per iteration, ns.
    samples_ns: Vec<f64>,
}

impl Bench {
    /// 10⁹ bytes per second (bytes per ns).
    fn gb_per_s(&self) -> Option<f64> {
        self.bytes.map(|b| b as f64 / self.median_ns)
    }

    /// Time per element (or per iteration), ns.
    fn ns_per_unit(&self) -> f64 {
        self.median_ns / self.elements.unwrap_or(1).max(1) as f64
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "target": self.target,
            "median_ns": self.median_ns,
            "median_ci95_ns": [self.median_ci_ns.0, self.median_ci_ns.1],
            "mean_ns": self.mean_ns,
            "throughput_bytes": self.bytes,
            "throughput_elements": self.elements,
            "gb_per_s": self.gb_per_s(),
            "per_second": 1e9 / self.ns_per_unit(),
            "samples_ns_per_iter": self.samples_ns,
        })
    }
}

/// Run the suite.
pub fn run(quick: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let cargo = find_cargo()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .context("the workspace root")?;
    let home = crate::target_dir().join("criterion");
    // --quick: shorter windows, and fewer bootstrap resamples for the
    // confidence intervals (their analysis is a good part of a short run).
    let (warm_up, measurement) = if quick { (0.2, 0.6) } else { (1.0, 2.0) };
    let mut criterion_args = vec![
        "--warm-up-time".to_owned(),
        format!("{warm_up}"),
        "--measurement-time".to_owned(),
        format!("{measurement}"),
        "--noplot".to_owned(),
    ];
    if quick {
        criterion_args.extend(["--nresamples".to_owned(), "20000".to_owned()]);
    }
    let machine = bench_report::machine();
    let governor = governor();
    let load_before = bench_report::loadavg();
    println!(
        "micro: cargo {}, criterion home {}, CPU governor {governor}, load {load_before}",
        cargo.display(),
        home.display()
    );

    // Build every bench first, so the runs below time benchmarks, not
    // compilation (the bench profile inherits release: RocksDB and the
    // rest are shared with `cargo build --release`). Cargo's JSON messages
    // name each bench's executable.
    let mut build = vec![
        "bench",
        "--workspace",
        "--exclude",
        "sluice-ebpf",
        "--no-run",
        "--message-format",
        "json-render-diagnostics",
    ];
    for (name, _) in TARGETS {
        build.extend(["--bench", name]);
    }
    println!("[build] cargo {}", build.join(" "));
    let t = Instant::now();
    let messages = run_limited(
        Command::new(&cargo).args(&build).current_dir(&root),
        true,
        BUILD_LIMIT,
    )
    .context("building the micro benches")?;
    let executables = bench_executables(&messages)?;
    let build_seconds = t.elapsed().as_secs_f64();
    println!("[build] done in {build_seconds:.0} s");

    // Then run each executable as `cargo bench` would (`<exe> --bench`,
    // in its crate's directory), but without cargo: a run never waits for
    // the build directory's lock while other builds hold it.
    let mut benches: Vec<Bench> = Vec::new();
    let mut runs = Vec::new();
    for (i, &(name, package)) in TARGETS.iter().enumerate() {
        let (exe, dir) = executables
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, exe, dir)| (exe, dir))
            .with_context(|| format!("cargo built no executable for the {name} bench"))?;
        let mut args = vec!["--bench"];
        args.extend(criterion_args.iter().map(String::as_str));
        println!(
            "[{}/{}] {package}: {} {}",
            i + 1,
            TARGETS.len(),
            exe.display(),
            args.join(" ")
        );
        let since = SystemTime::now();
        let t = Instant::now();
        let load = bench_report::loadavg();
        run_limited(
            Command::new(exe)
                .args(&args)
                .current_dir(dir)
                .env("CRITERION_HOME", &home),
            false,
            RUN_LIMIT,
        )
        .with_context(|| format!("running the {name} bench of {package}"))?;
        let seconds = t.elapsed().as_secs_f64();
        let found = collect(&home, since, name)
            .with_context(|| format!("reading criterion's results for the {name} bench"))?;
        if found.is_empty() {
            bail!(
                "the {name} bench ran but criterion wrote no results under {} (is CRITERION_HOME honoured?)",
                home.display()
            );
        }
        println!(
            "[{}/{}] {name}: {} benchmarks in {seconds:.0} s (load average {load} before)",
            i + 1,
            TARGETS.len(),
            found.len()
        );
        runs.push(json!({
            "target": name,
            "package": package,
            "seconds": seconds,
            "benchmarks": found.len(),
            "loadavg_before": load,
        }));
        benches.extend(found);
    }
    let load_after = bench_report::loadavg();

    let by_id = |id: &str| -> anyhow::Result<&Bench> {
        benches
            .iter()
            .find(|b| b.id == id)
            .with_context(|| format!("criterion has no fresh result for {id}"))
    };
    let cached_ids: Vec<String> = (0..STATEMENTS.len())
        .map(|i| format!("decide_cached/{i}"))
        .chain(["decide_same_shape_new_literal".to_owned()])
        .collect();
    let cold_ids: Vec<String> = (0..STATEMENTS.len())
        .map(|i| format!("decide_cold/{i}"))
        .collect();
    let worst = |ids: &[String]| -> anyhow::Result<&Bench> {
        let mut worst: Option<&Bench> = None;
        for id in ids {
            let b = by_id(id)?;
            if worst.is_none_or(|w| b.median_ns > w.median_ns) {
                worst = Some(b);
            }
        }
        worst.context("no decision benches")
    };
    let cached_worst = worst(&cached_ids)?;
    let cold_worst = worst(&cold_ids)?;
    let stream = by_id("scan/datarow_stream")?;
    let stream_gbs = stream
        .gb_per_s()
        .context("scan/datarow_stream has no byte throughput")?;
    for (id, _, _) in THROUGHPUT {
        by_id(id)?
            .gb_per_s()
            .with_context(|| format!("{id} has no byte throughput"))?;
    }
    for (id, _) in MESSAGES.iter().chain(STORE) {
        by_id(id)?;
    }

    let us = |ns: f64| ns / 1000.0;
    let headlines = vec![
        Headline::judged(
            format!(
                "policy decision, statement shape seen before (worst of {}: {})",
                cached_ids.len(),
                cached_worst.id
            ),
            format!("{:.2} µs", us(cached_worst.median_ns)),
            "< 2 µs",
            cached_worst.median_ns < 2000.0,
        ),
        Headline::judged(
            format!(
                "cold parse + decide, typical statements (worst of {}: {})",
                cold_ids.len(),
                cold_worst.id
            ),
            format!("{:.1} µs", us(cold_worst.median_ns)),
            "< 50 µs",
            cold_worst.median_ns < 50_000.0,
        ),
        Headline::judged(
            "content scanning of DataRow payloads, one core (frames + values + detectors)",
            format!("{stream_gbs:.2} GB/s"),
            "≥ 1 GB/s",
            stream_gbs >= 1.0,
        ),
        Headline::info(
            "PostgreSQL result walk (frames + DataRow values), one core",
            format!(
                "{:.2} GB/s",
                by_id("pgwire/scan_result")?.gb_per_s().unwrap_or(0.0)
            ),
        ),
        Headline::info(
            "store append, batch durability, one session",
            format!(
                "{:.0}k events/s",
                1e6 / by_id("store/append")?.ns_per_unit()
            ),
        ),
    ];

    // The section.
    let mut md = String::new();
    writeln!(md, "# Micro-benchmarks (criterion)\n")?;
    let cpus = machine.get("cpus").and_then(Value::as_u64).unwrap_or(0);
    let first_load = |r: &Value| -> Option<f64> {
        r["loadavg_before"]
            .as_str()?
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
    };
    let per_target: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "`{}` {:.0} s (load {})",
                r["target"].as_str().unwrap_or("?"),
                r["seconds"].as_f64().unwrap_or(0.0),
                first_load(r).map_or("?".into(), |l| format!("{l:.1}"))
            )
        })
        .collect();
    writeln!(
        md,
        "- **Command**: `sluice-lab bench micro{}`. It builds the bench targets {} with `cargo bench --workspace \
         --exclude sluice-ebpf --no-run --bench <name>…` from the workspace root (criterion 0.5, `bench` profile: \
         release with `debug = 1`), then runs each executable as `cargo bench --bench <name> -- {}` would, in its \
         crate's directory.",
        if quick { " --quick" } else { "" },
        TARGETS
            .iter()
            .map(|(n, p)| format!("`{n}` ({p})"))
            .collect::<Vec<_>>()
            .join(", "),
        criterion_args.join(" "),
    )?;
    writeln!(
        md,
        "- **Figures**: each benchmark warms up for {warm_up} s, then criterion takes its samples (100; 50 for \
         `scan/*`, 20 for `store/statement_sync`) over about {measurement} s. Every figure is the **median of \
         those samples** (criterion's median estimate); its 95% confidence interval and every sample are in \
         `bench/results/micro.json`. One thread; no lab, no network."
    )?;
    writeln!(
        md,
        "- **Machine**: {cpus} CPUs ({}), CPU frequency governor: {governor}. 1-minute load average before each \
         target: {}; {load_after} after. This machine's numbers.",
        machine.get("cpu").and_then(Value::as_str).unwrap_or("?"),
        per_target.join(", "),
    )?;
    writeln!(
        md,
        "- **Time**: {:.0} s in all, of which {build_seconds:.0} s building the benches.\n",
        started.elapsed().as_secs_f64(),
    )?;
    let busiest = runs.iter().filter_map(first_load).fold(0.0_f64, f64::max);
    if cpus > 0 && busiest >= cpus as f64 {
        writeln!(
            md,
            "**The machine was busy during this run** (1-minute load up to {busiest:.1} on {cpus} CPUs): \
             other work competed for the cores, so these figures are pessimistic; the samples in the JSON \
             show the spread.\n"
        )?;
    }

    writeln!(md, "## Issue 5's targets\n")?;
    writeln!(md, "| what | measured | target | met |\n|---|---:|---|---|")?;
    for h in headlines.iter().filter(|h| h.target.is_some()) {
        writeln!(
            md,
            "| {} | {} | {} | {} |",
            h.what,
            h.measured,
            h.target.as_deref().unwrap_or(""),
            if h.met == Some(true) { "yes" } else { "**no**" }
        )?;
    }
    writeln!(md)?;

    writeln!(md, "## Policy decision (sluice-policy)\n")?;
    writeln!(
        md,
        "An engine with three rules and a masked PAN column (`benches/policy.rs`). *Cached*: the same text \
         decided again; *same shape, new literal*: `SELECT abalance … WHERE aid = n` with a new `n` each time, \
         found by its fingerprint; *cold*: a fresh engine per decision, so the statement is parsed and analysed.\n"
    )?;
    writeln!(
        md,
        "| statement | cached (µs) | cold: parse + decide (µs) | cold decisions/s |\n|---|---:|---:|---:|"
    )?;
    for (i, what) in STATEMENTS.iter().enumerate() {
        let cached = by_id(&format!("decide_cached/{i}"))?;
        let cold = by_id(&format!("decide_cold/{i}"))?;
        writeln!(
            md,
            "| {i}: {what} | {:.2} | {:.1} | {:.0} |",
            us(cached.median_ns),
            us(cold.median_ns),
            1e9 / cold.median_ns
        )?;
    }
    let shape = by_id("decide_same_shape_new_literal")?;
    writeln!(
        md,
        "| 0 with a new literal each time (fingerprint cache; includes formatting the SQL) | {:.2} | | |\n",
        us(shape.median_ns)
    )?;
    let cached_chart = BarChart {
        file: "micro-decision-cached.png".into(),
        title: "Policy decision, statement seen before (µs, lower is better)".into(),
        y_label: "µs per decision".into(),
        groups: (0..STATEMENTS.len())
            .map(|i| format!("stmt {i}"))
            .chain(["0, new literal".to_owned()])
            .collect(),
        series: vec![Series {
            name: "cached".into(),
            values: cached_ids
                .iter()
                .map(|id| by_id(id).map(|b| us(b.median_ns)))
                .collect::<anyhow::Result<_>>()?,
        }],
    };
    let cold_chart = BarChart {
        file: "micro-decision-cold.png".into(),
        title: "Cold parse + decide (µs, lower is better; target < 50)".into(),
        y_label: "µs per decision".into(),
        groups: (0..STATEMENTS.len()).map(|i| format!("stmt {i}")).collect(),
        series: vec![Series {
            name: "cold".into(),
            values: cold_ids
                .iter()
                .map(|id| by_id(id).map(|b| us(b.median_ns)))
                .collect::<anyhow::Result<_>>()?,
        }],
    };
    writeln!(md, "{}\n", cached_chart.draw()?)?;
    writeln!(md, "{}\n", cold_chart.draw()?)?;

    writeln!(md, "## Content scanning and codecs: bytes per second\n")?;
    writeln!(
        md,
        "One core. GB is 10⁹ bytes. The scanning benches count bytes of values (about 1 MiB of typical \
         30-byte values: names, emails, dates, amounts, UUIDs, JSON…), except `datarow_stream`, which counts \
         the wire bytes of the DataRow messages carrying the same values. The codec benches count wire bytes.\n"
    )?;
    writeln!(
        md,
        "| benchmark | what | bytes per iteration | median time per iteration | GB/s |\n|---|---|---:|---:|---:|"
    )?;
    let mut labels = Vec::new();
    let mut rates = Vec::new();
    for (id, label, what) in THROUGHPUT {
        let b = by_id(id)?;
        let gbs = b.gb_per_s().unwrap_or(0.0);
        writeln!(
            md,
            "| `{id}` | {what} | {} | {} | {gbs:.2} |",
            b.bytes.unwrap_or(0),
            duration(b.median_ns)
        )?;
        labels.push((*label).to_owned());
        rates.push(gbs);
    }
    writeln!(md)?;
    let rate_chart = BarChart {
        file: "micro-throughput.png".into(),
        title: "Content scanning and codecs, one core (GB/s, higher is better)".into(),
        y_label: "GB/s".into(),
        groups: labels,
        series: vec![Series {
            name: "GB/s".into(),
            values: rates,
        }],
    };
    writeln!(md, "{}\n", rate_chart.draw()?)?;

    writeln!(md, "## Codecs: per message\n")?;
    writeln!(
        md,
        "1,000 messages per iteration (pgbench -S and sysbench point-select statements).\n"
    )?;
    writeln!(
        md,
        "| benchmark | what | ns per message | messages/s |\n|---|---|---:|---:|"
    )?;
    for (id, what) in MESSAGES {
        let b = by_id(id)?;
        writeln!(
            md,
            "| `{id}` | {what} | {:.0} | {:.2}M |",
            b.ns_per_unit(),
            1e3 / b.ns_per_unit()
        )?;
    }
    writeln!(md)?;

    writeln!(md, "## Store append (sluice-store)\n")?;
    writeln!(
        md,
        "One session on a store under /var/tmp (this machine's disk), removed afterwards. \
         `cargo xtask bench store` measures many concurrent sessions; this is the single-session path.\n"
    )?;
    writeln!(
        md,
        "| benchmark | what | median per event or statement | per second |\n|---|---|---:|---:|"
    )?;
    for (id, what) in STORE {
        let b = by_id(id)?;
        writeln!(
            md,
            "| `{id}` | {what} | {} | {:.0} |",
            duration(b.ns_per_unit()),
            1e9 / b.ns_per_unit()
        )?;
    }
    writeln!(md)?;

    let data = json!({
        "quick": quick,
        "command": format!(
            "cargo bench --workspace --exclude sluice-ebpf --no-run --bench <each>; then <bench executable> --bench {}",
            criterion_args.join(" ")
        ),
        "warm_up_s": warm_up,
        "measurement_s": measurement,
        "cpu_governor": governor,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "build_seconds": build_seconds,
        "total_seconds": started.elapsed().as_secs_f64(),
        "runs": runs,
        "benchmarks": benches.iter().map(Bench::to_json).collect::<Vec<_>>(),
        "machine": machine,
    });
    for h in &headlines {
        println!(
            "micro: {}: {}{}",
            h.what,
            h.measured,
            match (&h.target, h.met) {
                (Some(t), Some(met)) =>
                    format!(" (target {t}: {})", if met { "met" } else { "NOT met" }),
                _ => String::new(),
            }
        );
    }
    bench_report::write_suite("micro", data, &md, &headlines)
}

/// A time in the unit that reads best.
fn duration(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The CPU frequency governor, or why there is none (a virtual machine
/// often exposes no cpufreq).
fn governor() -> String {
    match fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") {
        Ok(g) => g.trim().to_owned(),
        Err(_) => "none exposed (no cpufreq in /sys: frequency set by the host)".to_owned(),
    }
}

/// The cargo to run: `$CARGO` (set when run under cargo, as by
/// `cargo xtask bench`), else `cargo` on `PATH`, else rustup's
/// `~/.cargo/bin/cargo` (root's `PATH` may lack it under sudo).
fn find_cargo() -> anyhow::Result<PathBuf> {
    let from_env = std::env::var_os("CARGO").map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("cargo"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/cargo"));
    from_env
        .into_iter()
        .chain(on_path)
        .chain(home)
        .chain([PathBuf::from("/root/.cargo/bin/cargo")])
        .find(|p| p.is_file())
        .context(
            "the micro suite needs cargo (it builds and runs the criterion benches with `cargo bench`), \
             and none was found: not in $CARGO, on PATH, nor in ~/.cargo/bin. Install the toolchain \
             (`cargo xtask setup` expects rustup) or run with cargo on PATH",
        )
}

/// Run `cmd` (its stderr, and its stdout unless `capture`, going to
/// ours); return what it wrote to stdout if captured. It runs in a process
/// group of its own, killed whole if it outlives `limit`.
fn run_limited(cmd: &mut Command, capture: bool, limit: Duration) -> anyhow::Result<String> {
    use std::io::Read as _;
    use std::os::unix::process::CommandExt as _;
    let what = format!(
        "`{} {}`",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    // Read stdout on a thread, so a full pipe never stalls the child.
    let reader = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        })
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            break status;
        }
        if Instant::now() > deadline {
            let pgid = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
            let _ = child.wait();
            bail!(
                "{what} ran longer than {} s and was stopped",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = reader
        .map(|r| r.join().unwrap_or_default())
        .unwrap_or_default();
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(out)
}

/// From cargo's JSON messages, each bench target's name, executable and
/// crate directory.
fn bench_executables(messages: &str) -> anyhow::Result<Vec<(String, PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    for line in messages.lines() {
        let Ok(m) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if m["reason"] != "compiler-artifact" {
            continue;
        }
        let is_bench = m["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bench"));
        let (Some(name), Some(exe), Some(manifest)) = (
            m["target"]["name"].as_str(),
            m["executable"].as_str(),
            m["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if is_bench {
            let dir = Path::new(manifest)
                .parent()
                .context("a manifest path without a directory")?;
            out.push((name.to_owned(), PathBuf::from(exe), dir.to_path_buf()));
        }
    }
    Ok(out)
}

/// The benchmarks criterion wrote under `home` since `since`: every
/// `new/benchmark.json` (at most four levels down: group, function,
/// value, `new`) with its estimates and samples.
fn collect(home: &Path, since: SystemTime, target: &'static str) -> anyhow::Result<Vec<Bench>> {
    let mut found = Vec::new();
    let mut dirs = vec![(home.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let meta = path.join("benchmark.json");
                let fresh = fs::metadata(&meta)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since);
                if fresh {
                    found.push(read_bench(&path, target)?);
                }
            } else if depth < 4 {
                dirs.push((path, depth + 1));
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// One benchmark from criterion's `new/` directory.
fn read_bench(new: &Path, target: &'static str) -> anyhow::Result<Bench> {
    let meta = read_json(&new.join("benchmark.json"))?;
    let est = read_json(&new.join("estimates.json"))?;
    let sample = read_json(&new.join("sample.json"))?;
    let id = meta
        .get("full_id")
        .and_then(Value::as_str)
        .with_context(|| format!("{}: no full_id", new.display()))?
        .to_owned();
    let number = |v: &Value, path: &[&str]| -> anyhow::Result<f64> {
        path.iter()
            .try_fold(v, |v, k| v.get(*k))
            .and_then(Value::as_f64)
            .with_context(|| format!("{id}: no {} in criterion's estimates", path.join(".")))
    };
    let median_ns = number(&est, &["median", "point_estimate"])?;
    if !(median_ns.is_finite() && median_ns > 0.0) {
        bail!("{id}: criterion's median is {median_ns} ns");
    }
    let throughput = meta.get("throughput");
    let floats = |k: &str| -> Vec<f64> {
        sample
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let samples_ns = floats("times")
        .iter()
        .zip(floats("iters"))
        .map(|(t, n)| t / n)
        .collect();
    Ok(Bench {
        median_ns,
        median_ci_ns: (
            number(&est, &["median", "confidence_interval", "lower_bound"])?,
            number(&est, &["median", "confidence_interval", "upper_bound"])?,
        ),
        mean_ns: number(&est, &["mean", "point_estimate"])?,
        bytes: throughput
            .and_then(|t| t.get("Bytes"))
            .and_then(Value::as_u64),
        elements: throughput
            .and_then(|t| t.get("Elements"))
            .and_then(Value::as_u64),
        samples_ns,
        target,
        id,
    })
}
