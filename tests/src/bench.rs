//! `cargo xtask bench relay`: pgbench select-only through the sluice relay
//! and directly, side by side in one run on one lab.
//!
//! All routes cross the same gateway namespace: "direct" dials a second,
//! unprotected address of the database host (plain forwarding); "pgbouncer"
//! dials Debian's pgbouncer (session mode, no inspection) on the gateway,
//! which dials that same unprotected address; "sluice" dials the protected
//! address (tc steering + proxy). Release binaries.
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

    let _bouncer = Pgbouncer::start(&r, &direct_ip)?;
    let bouncer_host = r.lab.gw_agent_ip.clone();

    let mut samples = Vec::new();
    let run = |host: &str, port: u16, c: u32, connect: bool| -> anyhow::Result<(f64, f64)> {
        let port_s = port.to_string();
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
            &port_s,
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
        for (route, host, port) in [
            ("direct", direct_ip.as_str(), 5432),
            ("pgbouncer", bouncer_host.as_str(), PGBOUNCER_PORT),
            ("sluice", r.lab.db_ip.as_str(), 5432),
        ] {
            let label = if connect { "connect/tx" } else { "select-only" };
            eprint!("  {route:<9} {label:<11} {c:>3} clients … ");
            let (tps, latency_ms) = run(host, port, c, connect)?;
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
        "| workload | clients | direct tps | pgbouncer tps | sluice tps | sluice/direct | sluice/pgbouncer | direct lat ms | sluice lat ms | added ms |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    for triple in samples.chunks(3) {
        let (d, b, s) = (&triple[0], &triple[1], &triple[2]);
        let workload = if d.connect_per_tx {
            "select-only, new connection per tx (-C)"
        } else {
            "select-only (-S)"
        };
        writeln!(
            md,
            "| {workload} | {} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× | {:.3} | {:.3} | {:.3} |",
            d.clients,
            d.tps,
            b.tps,
            s.tps,
            ratio(s.tps, d.tps),
            ratio(s.tps, b.tps),
            d.latency_ms,
            s.latency_ms,
            s.latency_ms - d.latency_ms
        )?;
        for x in [d, b, s] {
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

const PGBOUNCER_PORT: u16 = 6432;

/// Debian's pgbouncer on the gateway, session pooling, no inspection: the
/// well-known peer the relay is measured against. Stopped on drop.
struct Pgbouncer {
    child: std::process::Child,
}

impl Pgbouncer {
    fn start(r: &scenario::GatewayRun, upstream: &str) -> anyhow::Result<Pgbouncer> {
        let dir = r.scratch.0.join("pgbouncer");
        fs::create_dir_all(&dir)?;
        fs::write(
            dir.join("userlist.txt"),
            format!("\"{}\" \"{}\"\n", postgres::USER, postgres::PASSWORD),
        )?;
        let ini = format!(
            "[databases]\npostgres = host={upstream} port=5432 dbname=postgres\n\n[pgbouncer]\n\
             listen_addr = {listen}\nlisten_port = {PGBOUNCER_PORT}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {users}\npool_mode = session\n\
             max_client_conn = 500\ndefault_pool_size = 100\nlogfile = {log}\n",
            listen = r.lab.gw_agent_ip,
            users = dir.join("userlist.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        fs::write(dir.join("pgbouncer.ini"), ini)?;
        crate::netns::run(&["chown", "-R", "postgres:postgres", dir.to_str().unwrap()]);
        // pgbouncer refuses to run as root.
        let child = r
            .lab
            .gw
            .command(&[
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
                "pgbouncer",
                "-q",
            ])
            .arg(dir.join("pgbouncer.ini"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("starting pgbouncer")?;
        let addr = format!("{}:{PGBOUNCER_PORT}", r.lab.gw_agent_ip);
        let up = crate::wait_for(Duration::from_secs(10), || {
            let out = r.lab.gw.try_run(
                &["pg_isready", "-q", "-h", &r.lab.gw_agent_ip, "-p", "6432"],
                Duration::from_secs(3),
            );
            out.status.success().then_some(())
        });
        if up.is_none() {
            bail!(
                "pgbouncer did not start on {addr}: {}",
                fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
            );
        }
        Ok(Pgbouncer { child })
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
