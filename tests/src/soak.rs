//! `cargo xtask soak [--minutes N]`: 32 clients with mixed statements
//! through sluice full (policy, masking and content detectors, the durable
//! audit store) in the gateway lab for N minutes (default 10), while
//! sluice's resident memory and open descriptors are sampled from `/proc`.
//!
//! The rule, stated in the report: after a warm-up (a fifth of the run, at
//! most 2 minutes), the median of the last minute's samples may exceed the
//! median of the first minute after warm-up by at most 4 descriptors (not
//! counting the store's files, which follow its size) and by
//! at most max(8 MiB, 5 %) of resident memory plus 16 MiB, the store's
//! memtable budget (RocksDB holds recent events in memory until it flushes
//! them; the two windows may catch it at different fill levels); and once
//! the clients have gone, sluice holds no more sockets than it held before
//! they came. A clear PAN in any answer, or any error but the expected
//! refusal, fails too. The growth rate after warm-up (least squares, KiB a
//! minute) is reported beside it.
//!
//! Writes `bench/results/soak.json` and `bench/results/soak.md` (not part
//! of `bench/REPORT.md`; the soak is not a benchmark suite).
use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader},
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::{
    bench_report::{machine, machine_line, results_dir},
    faults::{fds, fds_under, rss_kib, settle_sockets, wal_bytes},
    postgres::{self, conninfo},
    python::{self, field},
    scenario,
};

const CLIENTS: usize = 32;
/// Statements a second per client.
const RATE: f64 = 10.0;
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const LAB_INDEX: u8 = 60;

/// One sample of the daemon.
#[derive(Clone, Copy, Debug)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: usize,
    /// Of which on the store's files (tables, logs).
    store_fds: usize,
    sockets: usize,
    /// Bytes in the store's write-ahead log files.
    wal: u64,
}

/// The store's memtable budget (`db_write_buffer_size` in
/// `sluice-store`'s writer), in KiB.
const MEMTABLES_KIB: u64 = 16 * 1024;

/// Least-squares slope of VmRSS over time, in KiB a minute.
fn slope_kib_per_min<'a>(samples: impl Iterator<Item = &'a Sample>) -> f64 {
    let pts: Vec<(f64, f64)> = samples.map(|s| (s.t / 60.0, s.rss_kib as f64)).collect();
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    if v.is_empty() { 0 } else { v[v.len() / 2] }
}

pub fn run(minutes: u32) -> anyhow::Result<()> {
    if minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    let Some(py) = python::interpreter("soak") else {
        bail!("the lab's Python venv is missing: run `cargo xtask setup`");
    };
    let seconds = u64::from(minutes) * 60;
    let warmup = (seconds / 5).min(120);
    println!(
        "soak: {CLIENTS} clients at {RATE} statements/s each for {minutes} min through sluice full; \
         warm-up {warmup} s; sampling every {} s",
        SAMPLE_EVERY.as_secs()
    );
    let run = scenario::start_with_test_policy("soak", LAB_INDEX);
    run.pg.sql(&format!(
        "CREATE TABLE soak_items (id bigserial primary key, client int, v int); \
         CREATE INDEX ON soak_items (client); \
         CREATE TABLE soak_counters (client int primary key, n bigint); \
         INSERT INTO soak_counters SELECT c, 0 FROM generate_series(1, {CLIENTS}) c; \
         GRANT SELECT, INSERT ON soak_items TO {0}; GRANT USAGE ON SEQUENCE soak_items_id_seq TO {0}; \
         GRANT SELECT, UPDATE ON soak_counters TO {0}",
        postgres::USER
    ));
    let pid = run.daemon.pid();
    let (ok, _, err) = run.agent_psql(&run.lab.db_ip, "select 1");
    if !ok {
        bail!("a first statement through sluice failed: {err}");
    }
    let idle = fds(pid);
    let idle_rss = rss_kib(pid);
    println!(
        "soak: sluice pid {pid}: idle VmRSS {idle_rss} KiB, {} fds ({} sockets)",
        idle.total, idle.sockets
    );

    let script = python::script("soak_clients.py");
    let info = conninfo(&run.lab.db_ip, 5432);
    let mut child = run
        .lab
        .agent
        .command(&[
            "timeout",
            "-k",
            "5",
            &(seconds + 120).to_string(),
            py.to_str().unwrap(),
            script.to_str().unwrap(),
            &info,
            &CLIENTS.to_string(),
            &seconds.to_string(),
            &RATE.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the soak clients")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let store = crate::daemon::store_dir(&run.scratch.0);
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut output = Vec::new();
    let mut last_progress = String::new();
    let mut next_print = Duration::ZERO;
    loop {
        let s = fds(pid);
        let sample = Sample {
            t: start.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid),
            fds: s.total,
            store_fds: fds_under(pid, &store),
            sockets: s.sockets,
            wal: wal_bytes(&store),
        };
        samples.push(sample);
        while let Ok(line) = lines.try_recv() {
            if line.starts_with("progress") {
                last_progress = line.clone();
            }
            output.push(line);
        }
        if start.elapsed() >= next_print {
            next_print += Duration::from_secs(30);
            println!(
                "soak: {:>4.0} s  VmRSS {:>7} KiB  fds {:>4} (sockets {:>3})  {}",
                sample.t, sample.rss_kib, sample.fds, sample.sockets, last_progress
            );
        }
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(seconds + 150) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the soak clients did not finish in time");
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
        output.push(line);
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let out = output.join("\n") + "\n";
    let num = |k: &str| -> u64 { field(&out, k).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let (ok_n, denied, errors, leaks, sessions) = (
        num("ok"),
        num("denied"),
        num("errors"),
        num("leaks"),
        num("sessions"),
    );
    if ok_n == 0 {
        bail!("the soak clients ran nothing:\n{out}\n{stderr}");
    }

    // Once the clients are gone, the sockets go too.
    let after = settle_sockets(pid, idle.sockets, Duration::from_secs(20));
    let after_rss = rss_kib(pid);

    // The rule.
    let w = warmup as f64;
    let first: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= w && s.t < w + 60.0)
        .collect();
    let end = samples.last().map_or(0.0, |s| s.t);
    let last: Vec<&Sample> = samples.iter().filter(|s| s.t >= end - 60.0).collect();
    let med = |v: &[&Sample], f: fn(&Sample) -> u64| median(v.iter().map(|s| f(s)).collect());
    let rss_first = med(&first, |s| s.rss_kib);
    let rss_last = med(&last, |s| s.rss_kib);
    // Descriptors but the store's files: RocksDB keeps every table file
    // open, so those follow the store's size (reported, not judged).
    let fds_first = med(&first, |s| (s.fds - s.store_fds) as u64);
    let fds_last = med(&last, |s| (s.fds - s.store_fds) as u64);
    let store_first = med(&first, |s| s.store_fds as u64);
    let store_last = med(&last, |s| s.store_fds as u64);
    // The store's memtables (16 MiB in all, `db_write_buffer_size`) may be
    // at different fill levels in the two windows.
    let wal_growth_kib = med(&last, |s| s.wal / 1024).saturating_sub(med(&first, |s| s.wal / 1024));
    let rss_tolerance = (8 * 1024).max(rss_first / 20) + MEMTABLES_KIB;
    let slope = slope_kib_per_min(samples.iter().filter(|s| s.t >= w));
    let rss_ok = rss_last <= rss_first + rss_tolerance;
    let fds_ok = fds_last <= fds_first + 4;
    let sockets_ok = after.sockets <= idle.sockets;
    let clients_ok = errors == 0 && leaks == 0 && denied > 0;
    let passed = rss_ok && fds_ok && sockets_ok && clients_ok;
    let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let max_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);

    let store_stats = run.daemon.cli(&[
        "audit",
        "stats",
        "--store",
        crate::daemon::store_dir(&run.scratch.0).to_str().unwrap(),
    ]);
    let stats = String::from_utf8_lossy(&store_stats.stdout).into_owned();

    let verdict = if passed { "PASS" } else { "FAIL" };
    let m = machine();
    let mut md = String::new();
    writeln!(md, "## Soak: {CLIENTS} clients for {minutes} minutes\n")?;
    writeln!(
        md,
        "`cargo xtask soak --minutes {minutes}`: {CLIENTS} psycopg 3 clients on the agent host \
         (`tests/python/soak_clients.py`), each paced to {RATE} statements a second, through \
         sluice full (the test policy refusing `DROP TABLE`, content detectors masking PANs, \
         the durable audit store) to PostgreSQL 15. Each client runs, in every 20 statements: \
         6 inserts, 2 counter updates, 8 reads of its own rows, 3 reads of the card table \
         (PANs masked) and one `DROP TABLE` that policy refuses; it reconnects every 500 \
         statements. sluice's `VmRSS` (`/proc/<pid>/status`) and open descriptors \
         (`/proc/<pid>/fd`) are sampled every {} s.\n",
        SAMPLE_EVERY.as_secs()
    )?;
    writeln!(md, "{}\n", machine_line(&m, "soak"))?;
    writeln!(
        md,
        "**Rule**: after a warm-up of {warmup} s, the median of the last minute's samples may \
         exceed the median of the first minute after warm-up by at most 4 descriptors (not \
         counting the store's own files, which RocksDB keeps open and which follow the store's \
         size) and by at \
         most max(8 MiB, 5 %) of resident memory plus 16 MiB, the store's memtable budget \
         (RocksDB holds recent events in memory until it flushes them, and the two windows \
         may catch it at different fill levels); once the clients have gone, sluice holds no more sockets than it held before they came; no answer holds a clear PAN and no \
         statement fails but the refused one.\n"
    )?;
    writeln!(md, "**Verdict: {verdict}**\n")?;
    writeln!(md, "| measure | value | judged |")?;
    writeln!(md, "|---|---:|---|")?;
    writeln!(
        md,
        "| statements answered / refused / failed | {ok_n} / {denied} / {errors} | {} |",
        if clients_ok { "ok" } else { "FAIL" }
    )?;
    writeln!(md, "| sessions opened | {sessions} | |")?;
    writeln!(
        md,
        "| clear PANs in answers | {leaks} | {} |",
        if leaks == 0 { "ok" } else { "FAIL" }
    )?;
    writeln!(md, "| VmRSS idle before | {idle_rss} KiB | |")?;
    writeln!(
        md,
        "| VmRSS median, first minute after warm-up → last minute | {rss_first} → {rss_last} KiB (tolerance +{rss_tolerance} KiB) | {} |",
        if rss_ok { "ok" } else { "FAIL" }
    )?;
    writeln!(
        md,
        "| VmRSS growth rate after warm-up (least squares) | {slope:.0} KiB/min | |"
    )?;
    writeln!(
        md,
        "| store write-ahead log, first minute after warm-up → last minute | +{wal_growth_kib} KiB | |"
    )?;
    writeln!(md, "| VmRSS peak | {max_rss} KiB | |")?;
    writeln!(md, "| VmRSS after the clients left | {after_rss} KiB | |")?;
    writeln!(
        md,
        "| fds but the store's files, median, first minute after warm-up → last minute | {fds_first} → {fds_last} (tolerance +4) | {} |",
        if fds_ok { "ok" } else { "FAIL" }
    )?;
    writeln!(
        md,
        "| the store's open files, median, first minute after warm-up → last minute | {store_first} → {store_last} | |"
    )?;
    writeln!(md, "| fds peak | {max_fds} | |")?;
    writeln!(
        md,
        "| sockets idle before → after the clients left | {} → {} | {} |",
        idle.sockets,
        after.sockets,
        if sockets_ok { "ok" } else { "FAIL" }
    )?;
    writeln!(md, "\n### Samples, one a minute\n")?;
    writeln!(
        md,
        "| t (s) | VmRSS (KiB) | fds | sockets | store files | store WAL (KiB) |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|")?;
    let mut next = 0.0;
    for s in &samples {
        if s.t >= next {
            writeln!(
                md,
                "| {:.0} | {} | {} | {} | {} | {} |",
                s.t,
                s.rss_kib,
                s.fds,
                s.sockets,
                s.store_fds,
                s.wal / 1024
            )?;
            next += 60.0;
        }
    }
    writeln!(md, "\n### The store afterwards (`sluice audit stats`)\n")?;
    writeln!(md, "```\n{}```", stats)?;

    let data = json!({
        "suite": "soak",
        "minutes": minutes,
        "clients": CLIENTS,
        "rate_per_client": RATE,
        "warmup_s": warmup,
        "rule": "after warm-up: median(last minute) - median(first minute after warm-up) <= 4 fds and <= max(8 MiB, 5%) + 16 MiB (the store's memtable budget) VmRSS; sockets back to at most idle after the clients leave; no PAN leak; no error but the refusals",
        "verdict": verdict,
        "statements": {"ok": ok_n, "denied": denied, "errors": errors, "leaks": leaks, "sessions": sessions},
        "wal_growth_kib": wal_growth_kib,
        "rss_slope_kib_per_min_after_warmup": slope,
        "rss_kib": {"idle": idle_rss, "first_after_warmup": rss_first, "last_minute": rss_last, "tolerance": rss_tolerance, "peak": max_rss, "after": after_rss},
        "store_fds": {"first_after_warmup": store_first, "last_minute": store_last},
        "fds_but_store": {"first_after_warmup": fds_first, "last_minute": fds_last},
        "fds": {"idle": idle.total, "peak": max_fds, "after": after.total},
        "sockets": {"idle": idle.sockets, "after": after.sockets},
        "samples": samples.iter().map(|s| json!([ (s.t * 10.0).round() / 10.0, s.rss_kib, s.fds, s.sockets, s.store_fds, s.wal / 1024])).collect::<Vec<_>>(),
        "samples_columns": ["t_s", "rss_kib", "fds", "sockets", "store_fds", "wal_kib"],
        "machine": m,
    });
    let dir = results_dir()?;
    fs::write(
        dir.join("soak.json"),
        serde_json::to_string_pretty(&data)? + "\n",
    )?;
    fs::write(dir.join("soak.md"), &md)?;
    println!("written: bench/results/soak.json, bench/results/soak.md");
    println!(
        "soak: {verdict}: {ok_n} statements, {denied} refused, {errors} errors, {leaks} leaks; \
         VmRSS {rss_first} → {rss_last} KiB, fds {fds_first} → {fds_last}, sockets {} → {}",
        idle.sockets, after.sockets
    );
    if !passed {
        bail!("the soak failed its rule; see bench/results/soak.md\n{stderr}");
    }
    Ok(())
}
