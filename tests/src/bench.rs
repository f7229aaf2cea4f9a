//! `cargo xtask bench relay`: pgbench select-only through the sluice relay
//! and directly, side by side in one run on one lab.
//!
//! Both routes cross the same gateway namespace: "direct" dials a second,
//! unprotected address of the database host (plain forwarding), "sluice"
//! dials the protected address (tc steering + proxy). Release binaries.
use std::{fmt::Write as _, fs, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};

use crate::{postgres, scenario};

struct Sample {
    route: &'static str,
    clients: u32,
    connect_per_tx: bool,
    tps: f64,
    latency_ms: f64,
}

pub fn relay(duration: u32, clients: &[u32]) -> anyhow::Result<()> {
    let r = scenario::start("bench", 30, "");
    let direct_ip = format!("{}.3", r.lab.db_ip.rsplit_once('.').unwrap().0);
    r.lab.db.run(&[
        "ip",
        "addr",
        "add",
        &format!("{direct_ip}/24"),
        "dev",
        "slbenchd",
    ]);
    println!("initialising pgbench (scale 10)…");
    let init = std::process::Command::new("pgbench")
        .args([
            "-q",
            "-i",
            "-s",
            "10",
            "-h",
            r.pg.dir.to_str().unwrap(),
            "-U",
            "postgres",
            "postgres",
        ])
        .output()
        .context("pgbench -i")?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    r.pg.sql(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}",
        postgres::USER
    ));

    let mut samples = Vec::new();
    let run = |host: &str, c: u32, connect: bool| -> anyhow::Result<(f64, f64)> {
        let (c_s, d_s, j_s) = (c.to_string(), duration.to_string(), c.min(4).to_string());
        let mut argv = vec![
            "env",
            "PGPASSWORD=agent-secret",
            "pgbench",
            "-n",
            "-S",
            "-h",
            host,
            "-p",
            "5432",
            "-U",
            postgres::USER,
            "-T",
            &d_s,
            "-c",
            &c_s,
            "-j",
            &j_s,
        ];
        if connect {
            argv.push("-C");
        }
        argv.push("postgres");
        let out = r
            .lab
            .agent
            .try_run(&argv, Duration::from_secs(u64::from(duration) + 60));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "pgbench against {host} failed ({}): {}{}",
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let field = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        Ok((
            field("tps = ").unwrap_or(0.0),
            field("latency average = ").unwrap_or(0.0),
        ))
    };
    let mut cases: Vec<(u32, bool)> = clients.iter().map(|&c| (c, false)).collect();
    cases.push((4, true));
    for (c, connect) in cases {
        for (route, host) in [
            ("direct", direct_ip.as_str()),
            ("sluice", r.lab.db_ip.as_str()),
        ] {
            let label = if connect { "connect/tx" } else { "select-only" };
            eprint!("  {route:<7} {label:<11} {c:>3} clients … ");
            let (tps, latency_ms) = run(host, c, connect)?;
            eprintln!("{tps:>10.0} tps  {latency_ms:.3} ms");
            samples.push(Sample {
                route,
                clients: c,
                connect_per_tx: connect,
                tps,
                latency_ms,
            });
        }
    }
    drop(r);
    report(&samples, duration)
}

fn report(samples: &[Sample], duration: u32) -> anyhow::Result<()> {
    let mut md = String::new();
    let mut json = String::from("[\n");
    writeln!(
        md,
        "| workload | clients | direct tps | sluice tps | ratio | direct lat ms | sluice lat ms | added ms |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for pair in samples.chunks(2) {
        let (d, s) = (&pair[0], &pair[1]);
        let ratio = if d.tps > 0.0 { s.tps / d.tps } else { 0.0 };
        let workload = if d.connect_per_tx {
            "select-only, new connection per tx (-C)"
        } else {
            "select-only (-S)"
        };
        writeln!(
            md,
            "| {workload} | {} | {:.0} | {:.0} | {ratio:.2}× | {:.3} | {:.3} | {:.3} |",
            d.clients,
            d.tps,
            s.tps,
            d.latency_ms,
            s.latency_ms,
            s.latency_ms - d.latency_ms
        )?;
        for x in [d, s] {
            writeln!(
                json,
                "  {{\"route\": \"{}\", \"clients\": {}, \"connect_per_tx\": {}, \"tps\": {:.1}, \"latency_ms\": {:.4}, \"duration_s\": {duration}}},",
                x.route, x.clients, x.connect_per_tx, x.tps, x.latency_ms
            )?;
        }
    }
    if json.ends_with(",\n") {
        json.truncate(json.len() - 2);
        json.push('\n');
    }
    json.push(']');
    println!("\n{md}");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("relay.json"), json)?;
    fs::write(dir.join("relay.md"), md)?;
    println!("written to bench/results/relay.json and relay.md");
    Ok(())
}
