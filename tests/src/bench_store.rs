//! `cargo xtask bench store`: the session store alone, as the proxy uses
//! it. Each of N concurrent sessions records a statement event, waits until
//! it is durable (what the proxy does before a statement may leave), then
//! records its outcome; repeated for the duration. Reports the sustained
//! append rate and the durability wait — the latency recording adds to
//! each statement — at p50 and p99, with `durability = "sync"` (and
//! `"batch"` for comparison). The store is on this machine's disk
//! (/var/tmp), not tmpfs. Writes `bench/results/store.{json,md}`.
use std::{
    fmt::Write as _,
    fs,
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_store::{
    Durability, Store, StoreOptions,
    event::{Event, Facts, Outcome, SessionStart, StatementEvent},
};

/// One measured point.
struct Point {
    sessions: usize,
    durability: &'static str,
    seconds: f64,
    events: u64,
    statements: u64,
    wait_p50_us: u128,
    wait_p99_us: u128,
}

fn run_point(sessions: usize, durability: Durability, seconds: u64) -> anyhow::Result<Point> {
    let dir = std::path::PathBuf::from("/var/tmp/sluice-bench-store");
    let _ = fs::remove_dir_all(&dir);
    let mut options = StoreOptions::new(dir.join("store"));
    options.key = dir.join("audit.key");
    options.durability = durability;
    let store = Store::open(&options)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let (events, mut waits) = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let log = Arc::new(store.begin(SessionStart {
                    protocol: "postgres".into(),
                    identity: format!("bench-{i}"),
                    facts: Facts {
                        client: "10.0.0.2:40000".into(),
                        ..Facts::default()
                    },
                    target: "bench".into(),
                    auth: "passthrough".into(),
                    ..SessionStart::default()
                }));
                let mut waits = Vec::new();
                let mut events = 1u64;
                while Instant::now() < deadline {
                    let seq = log.record(&Event::Statement(StatementEvent {
                        protocol: "simple".into(),
                        text: "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;".into(),
                        decision: "allow".into(),
                        ..StatementEvent::default()
                    }));
                    let t = Instant::now();
                    log.durable()
                        .await
                        .expect("the store failed under the benchmark");
                    waits.push(t.elapsed());
                    log.record(&Event::Outcome(Outcome {
                        statement: Some(seq),
                        status: "ok".into(),
                        tag: Some("SELECT 1".into()),
                        rows: Some(1),
                        duration_us: 80,
                        ..Outcome::default()
                    }));
                    events += 2;
                }
                (events, waits)
            }));
        }
        let mut all = Vec::new();
        let mut events = 0;
        for t in tasks {
            let (e, w) = t.await.expect("benchmark task");
            events += e;
            all.extend(w);
        }
        (events, all)
    });
    let seconds = started.elapsed().as_secs_f64();
    store.close();
    let _ = fs::remove_dir_all(&dir);
    waits.sort();
    let pct = |p: f64| {
        waits
            .get(((waits.len() as f64 * p) as usize).min(waits.len().saturating_sub(1)))
            .map_or(0, |d| d.as_micros())
    };
    Ok(Point {
        sessions,
        durability: match durability {
            Durability::Sync => "sync",
            Durability::Batch { .. } => "batch",
        },
        seconds,
        events,
        statements: waits.len() as u64,
        wait_p50_us: pct(0.50),
        wait_p99_us: pct(0.99),
    })
}

/// Median of three runs, by append rate.
fn median_point(sessions: usize, durability: Durability, seconds: u64) -> anyhow::Result<Point> {
    let mut runs = (0..3)
        .map(|_| run_point(sessions, durability, seconds))
        .collect::<anyhow::Result<Vec<_>>>()?;
    runs.sort_by(|a, b| (a.events as f64 / a.seconds).total_cmp(&(b.events as f64 / b.seconds)));
    Ok(runs.swap_remove(1))
}

pub fn store(duration: u32, sessions: &[usize]) -> anyhow::Result<()> {
    let seconds = u64::from(duration.max(1));
    let mut points = Vec::new();
    for &n in sessions {
        let p = median_point(n, Durability::Sync, seconds)?;
        println!(
            "sync  {n:>4} sessions: {:>9.0} events/s, durability wait p50 {} us, p99 {} us",
            p.events as f64 / p.seconds,
            p.wait_p50_us,
            p.wait_p99_us
        );
        points.push(p);
    }
    let batch = Durability::Batch {
        window: Duration::from_millis(10),
    };
    let p = median_point(32, batch, seconds)?;
    println!(
        "batch   32 sessions: {:>9.0} events/s, wait p50 {} us, p99 {} us",
        p.events as f64 / p.seconds,
        p.wait_p50_us,
        p.wait_p99_us
    );
    points.push(p);
    write_results(duration, &points)
}

fn write_results(duration: u32, points: &[Point]) -> anyhow::Result<()> {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    writeln!(md, "# Session store: append rate and durability wait\n")?;
    writeln!(
        md,
        "`cargo xtask bench store --duration {duration}`: N sessions each record a statement event, wait until it is durable, record an outcome; \
         median of 3 runs of {duration} s per point; store on /var/tmp (ext4); kernel {}, {cpus} CPUs. This machine's numbers.\n",
        kernel.trim()
    )?;
    writeln!(
        md,
        "Targets (issue 4): ≥ 100,000 events/s sustained with `durability = \"sync\"`; added latency per statement (the durability wait) p99 < 1 ms at 32 clients.\n"
    )?;
    writeln!(
        md,
        "| durability | sessions | events/s | statements/s | wait p50 (µs) | wait p99 (µs) |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|")?;
    let mut json = String::from("{\n  \"suite\": \"store\",\n  \"points\": [\n");
    for (i, p) in points.iter().enumerate() {
        writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {} | {} |",
            p.durability,
            p.sessions,
            p.events as f64 / p.seconds,
            p.statements as f64 / p.seconds,
            p.wait_p50_us,
            p.wait_p99_us
        )?;
        writeln!(
            json,
            "    {{\"durability\": \"{}\", \"sessions\": {}, \"seconds\": {:.2}, \"events\": {}, \"statements\": {}, \"events_per_s\": {:.0}, \"wait_p50_us\": {}, \"wait_p99_us\": {}}}{}",
            p.durability,
            p.sessions,
            p.seconds,
            p.events,
            p.statements,
            p.events as f64 / p.seconds,
            p.wait_p50_us,
            p.wait_p99_us,
            if i + 1 < points.len() { "," } else { "" }
        )?;
    }
    json.push_str("  ]\n}\n");
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("store.md"), md)?;
    fs::write(dir.join("store.json"), json)?;
    println!("written to bench/results/store.json and store.md");
    Ok(())
}
