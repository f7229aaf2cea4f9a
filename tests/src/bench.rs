//! `cargo xtask bench relay`: pgbench select-only through sluice (PostgreSQL
//! engine, statement policy active), directly, and through pgbouncer, side
//! by side in one run on one lab; writes `bench/results/relay.{json,md}`.
//!
//! All routes cross the same gateway namespace: "direct" dials a second,
//! unprotected address of the database host (plain forwarding); "pgbouncer"
//! dials Debian's pgbouncer (session mode, no inspection) on the gateway,
//! which dials that same unprotected address; "sluice" dials the protected
//! address (tc steering + proxy). Release binaries.
//!
//! sluice runs with a `[policy] deny_patterns` list that never matches
//! pgbench's statements, so every statement is decoded and passes the regex
//! set: the per-statement hook cost is in the numbers. The sum of
//! `statements_allowed` over the sessions a run closed is checked against
//! pgbench's transaction count.
//!
//! Latency: every measured run logs each transaction (`pgbench --log`; the
//! third field is its time in µs), so TPS and p50/p99 come from the same run
//! and every route pays the logging cost alike. One extra unlogged direct run
//! at 8 clients shows what that cost is.
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};

pub(crate) use crate::bench_report::{command_line, loadavg, ratio};
use crate::{pki, postgres, scenario};

/// Realistic guard rails, none of which matches pgbench's statements
/// (`SELECT abalance FROM pgbench_accounts WHERE aid = …`, the scale probe
/// `select count(*) from pgbench_branches`).
/// The policy sluice runs with: what a deployment would have — default
/// deny, an allow rule for the agents, a deny rule, a sensitive column — so
/// every statement is parsed (cached by statement shape) and decided, and every value
/// passes the content detectors.
const BENCH_POLICY: &str = "[policy]\ndefault = \"deny\"\n";
const BENCH_RULES: &str = "[[policy.rules]]\nname = \"agents\"\naction = \"allow\"\nclasses = [\"read\", \"write\", \"transaction\", \"utility\"]\n\n\
[[policy.rules]]\nname = \"no unbounded writes\"\naction = \"deny\"\nwithout_where = true\n\n\
[[masking.columns]]\ntable = \"cards\"\ncolumn = \"pan\"\nformat = \"pci\"\n";

const DENY_PATTERNS: &[&str] = &[
    r"(?i)\bdrop\s+(table|database|schema)\b",
    r"(?i)^\s*truncate\b",
    r"(?i)^\s*delete\s+from\s+\w+\s*;?\s*$",
    r"(?i)\bpg_read_file\b",
    r"(?i)\bcopy\b.*\bto\s+program\b",
];

/// Client count at which the issue's throughput targets are judged.
const TARGET_CLIENTS: u32 = 8;
/// Client count at which added per-query latency is judged: one client
/// isolates the proxy's cost from CPU queueing on a small machine.
const LATENCY_CLIENTS: u32 = 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Pgbouncer,
    Sluice,
    /// sluice with TLS on the client leg (the database leg stays plain).
    SluiceTls,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Pgbouncer => "pgbouncer",
            Route::Sluice => "sluice",
            Route::SluiceTls => "sluice-tls",
        }
    }
}

/// One pgbench workload at one client count.
#[derive(Clone, Copy)]
struct Case {
    /// `-M prepared` rather than the simple protocol.
    prepared: bool,
    /// `-C`: a new connection per transaction.
    connect_per_tx: bool,
    clients: u32,
}

impl Case {
    fn select(clients: u32) -> Case {
        Case {
            prepared: false,
            connect_per_tx: false,
            clients,
        }
    }

    fn label(self) -> &'static str {
        match (self.prepared, self.connect_per_tx) {
            (false, false) => "select-only (-S)",
            (true, false) => "select-only, prepared (-S -M prepared)",
            (_, true) => "select-only, new connection per tx (-S -C)",
        }
    }

    fn short(self) -> &'static str {
        match (self.prepared, self.connect_per_tx) {
            (false, false) => "select-only",
            (true, false) => "prepared",
            (_, true) => "connect/tx",
        }
    }
}

struct Sample {
    case: Case,
    route: Route,
    tps: f64,
    latency_avg_ms: f64,
    /// Transactions in the per-transaction log (the percentiles' population).
    logged_tx: usize,
    p50_us: f64,
    p99_us: f64,
    /// sluice routes: policy decisions (`statements_allowed`) the run's
    /// sessions reported.
    decisions: Option<u64>,
}

/// The lab, the addresses of each route, and where pgbench logs go.
struct Bench<'a> {
    r: &'a scenario::GatewayRun,
    duration: u32,
    direct_ip: String,
    bouncer_ip: String,
    ca_cert: PathBuf,
    logs: PathBuf,
    runs: usize,
    total: usize,
}

/// What one pgbench invocation printed and logged.
struct Outcome {
    tps: f64,
    latency_avg_ms: f64,
    latencies_us: Vec<u32>,
}

impl Bench<'_> {
    fn endpoint(&self, route: Route) -> (&str, u16) {
        match route {
            Route::Direct => (&self.direct_ip, 5432),
            Route::Pgbouncer => (&self.bouncer_ip, PGBOUNCER_PORT),
            Route::Sluice | Route::SluiceTls => (&self.r.lab.db_ip, 5432),
        }
    }

    /// Run pgbench once; `log` turns on per-transaction logging.
    fn pgbench(
        &self,
        case: Case,
        route: Route,
        seconds: u32,
        log: bool,
    ) -> anyhow::Result<Outcome> {
        let (host, port) = self.endpoint(route);
        let dir = self.logs.join("run");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let prefix = format!("--log-prefix={}", dir.join("tx").display());
        let sslmode = if route == Route::SluiceTls {
            "PGSSLMODE=require"
        } else {
            "PGSSLMODE=disable"
        };
        let root = format!("PGSSLROOTCERT={}", self.ca_cert.display());
        let (port_s, c_s, t_s, j_s) = (
            port.to_string(),
            case.clients.to_string(),
            seconds.to_string(),
            case.clients.min(4).to_string(),
        );
        let mut argv = vec![
            "env",
            "PGPASSWORD=agent-secret",
            sslmode,
            &root,
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
            &t_s,
            "-c",
            &c_s,
            "-j",
            &j_s,
        ];
        if case.prepared {
            argv.extend(["-M", "prepared"]);
        }
        if case.connect_per_tx {
            argv.push("-C");
        }
        if log {
            argv.extend(["--log", &prefix]);
        }
        argv.push("postgres");
        let out = self
            .r
            .lab
            .agent
            .try_run(&argv, Duration::from_secs(u64::from(seconds) + 60));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "pgbench via {} failed ({}): {}{}",
                route.name(),
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
        let latencies_us = if log { read_tx_log(&dir)? } else { Vec::new() };
        let _ = fs::remove_dir_all(&dir);
        Ok(Outcome {
            tps: field("tps = ").unwrap_or(0.0),
            latency_avg_ms: field("latency average = ").unwrap_or(0.0),
            latencies_us,
        })
    }

    /// One reported measurement, with a progress line.
    fn measure(&mut self, case: Case, route: Route) -> anyhow::Result<Sample> {
        self.runs += 1;
        eprint!(
            "  [{:>2}/{}] {:<10} {:<12} {:>3} clients, {} s … ",
            self.runs,
            self.total,
            route.name(),
            case.short(),
            case.clients,
            self.duration
        );
        let log_mark = self.r.daemon.log_text().len();
        let out = self.pgbench(case, route, self.duration, true)?;
        let mut lat = out.latencies_us;
        lat.sort_unstable();
        let decisions = match route {
            Route::Sluice | Route::SluiceTls => Some(self.decisions_since(log_mark, case)?),
            Route::Direct | Route::Pgbouncer => None,
        };
        let sample = Sample {
            case,
            route,
            tps: out.tps,
            latency_avg_ms: out.latency_avg_ms,
            logged_tx: lat.len(),
            p50_us: percentile(&lat, 0.50),
            p99_us: percentile(&lat, 0.99),
            decisions,
        };
        eprint!(
            "{:>8.0} tps  p50 {:>6.0} µs  p99 {:>6.0} µs",
            sample.tps, sample.p50_us, sample.p99_us
        );
        match decisions {
            Some(d) => eprintln!("  policy decisions {d} ({:.3}/tx)", per_tx(d, lat.len())),
            None => eprintln!(),
        }
        Ok(sample)
    }

    /// Sum of `statements_allowed` over the sessions closed since byte
    /// `mark` of the daemon's log; waits for the run's sessions to close.
    /// Any denial means a pattern matched pgbench and the run is invalid.
    fn decisions_since(&self, mark: usize, case: Case) -> anyhow::Result<u64> {
        let tally = || {
            let text = self.r.daemon.log_text();
            let new = text.get(mark..).unwrap_or("");
            let (mut sessions, mut allowed, mut denied) = (0u32, 0u64, 0u64);
            for line in new.lines().filter(|l| l.contains("postgres session ended")) {
                sessions += 1;
                allowed += log_field(line, "statements_allowed=");
                denied += log_field(line, "statements_denied=");
            }
            (sessions, allowed, denied)
        };
        // Sessions log as they close, just after pgbench exits: wait until
        // all clients have and the tally stops moving.
        let mut last = tally();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let now = tally();
            if now == last && now.0 >= case.clients {
                break;
            }
            last = now;
        }
        let (_, allowed, denied) = last;
        if denied > 0 {
            bail!(
                "sluice denied {denied} statements: a deny pattern matches pgbench, so the run does not measure an allow-all policy"
            );
        }
        Ok(allowed)
    }
}

/// `audit`: sessions through sluice are recorded in the store (sync
/// durability, as deployed) and the results go to `relay-audit.*`;
/// otherwise the relay alone is measured (`relay.*`).
pub fn relay(duration: u32, clients: &[u32], audit: bool) -> anyhow::Result<()> {
    let load_start = loadavg();
    let mut ca_cert = PathBuf::new();
    let r = scenario::start_custom("bench", 30, |p| {
        let ca = pki::Ca::new(&p.scratch.path("pki"), "bench");
        let leaf = ca.issue("sluice", &[&p.lab.db_ip, &p.lab.db_ip6]);
        ca_cert = ca.cert.clone();
        let patterns: Vec<String> = DENY_PATTERNS.iter().map(|p| format!("'{p}'")).collect();
        scenario::Custom {
            sections: format!(
                "{BENCH_POLICY}deny_patterns = [{}]\n\n{BENCH_RULES}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                patterns.join(", "),
                leaf.cert.display(),
                leaf.key.display()
            ),
            // The relay alone: recording (fsync before each statement) is
            // measured separately.
            store: if audit { "" } else { "enabled = false" }.into(),
            ..scenario::Custom::default()
        }
    });
    let direct_ip = r.lab.add_db_address(3);
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

    // Direct, pgbouncer and sluice side by side, each case's routes back to
    // back so they see the same machine load.
    let mut cases: Vec<Case> = clients.iter().map(|&c| Case::select(c)).collect();
    cases.push(Case {
        prepared: true,
        ..Case::select(TARGET_CLIENTS)
    });
    cases.push(Case {
        connect_per_tx: true,
        ..Case::select(4)
    });
    // The TLS client leg against plain sluice.
    let tls_cases: Vec<Case> = [LATENCY_CLIENTS, TARGET_CLIENTS]
        .into_iter()
        .map(Case::select)
        .collect();
    let mut b = Bench {
        r: &r,
        duration,
        direct_ip,
        bouncer_ip: r.lab.gw_agent_ip.clone(),
        ca_cert,
        logs: r.scratch.path("pgbench-logs"),
        runs: 0,
        total: cases.len() * 3 + tls_cases.len() * 2,
    };
    let secs = (b.total + 1) * duration as usize;
    println!(
        "{} measured runs of {duration} s plus one unlogged calibration run: about {} min",
        b.total,
        secs.div_ceil(60) + 1
    );

    eprintln!("  warming up (3 s per route, not reported) …");
    for route in [Route::Direct, Route::Pgbouncer, Route::Sluice] {
        b.pgbench(Case::select(TARGET_CLIENTS), route, 3, false)?;
    }

    let mut main = Vec::new();
    let mut unlogged = None;
    for &case in &cases {
        if case.clients == TARGET_CLIENTS && !case.prepared && !case.connect_per_tx {
            // What logging costs, right before its logged twin.
            eprint!("  [calibration] direct, {TARGET_CLIENTS} clients, no per-transaction log … ");
            let tps = b.pgbench(case, Route::Direct, duration, false)?.tps;
            eprintln!("{tps:.0} tps");
            unlogged = Some(tps);
        }
        for route in [Route::Direct, Route::Pgbouncer, Route::Sluice] {
            main.push(b.measure(case, route)?);
        }
    }
    let mut tls = Vec::new();
    for &case in &tls_cases {
        for route in [Route::Sluice, Route::SluiceTls] {
            tls.push(b.measure(case, route)?);
        }
    }
    drop(r);
    let meta = Meta {
        duration,
        audit,
        unlogged_direct_tps: unlogged,
        load_start,
        load_end: loadavg(),
    };
    report(&meta, &main, &tls)
}

struct Meta {
    duration: u32,
    /// Sessions through sluice were recorded (durability sync).
    audit: bool,
    /// Direct at [`TARGET_CLIENTS`] without `--log`: the logging cost.
    unlogged_direct_tps: Option<f64>,
    load_start: String,
    load_end: String,
}

/// One of issue 3's targets, judged on this run.
struct Target {
    name: &'static str,
    measured: Option<f64>,
    unit: &'static str,
    threshold: f64,
    /// true: measured must be at least the threshold; false: below it.
    at_least: bool,
}

impl Target {
    fn met(&self) -> Option<bool> {
        self.measured.map(|m| {
            if self.at_least {
                m >= self.threshold
            } else {
                m < self.threshold
            }
        })
    }
}

fn find(samples: &[Sample], case: impl Fn(Case) -> bool, route: Route) -> Option<&Sample> {
    samples.iter().find(|s| case(s.case) && s.route == route)
}

fn targets(main: &[Sample]) -> Vec<Target> {
    let at = |clients: u32| move |c: Case| !c.prepared && !c.connect_per_tx && c.clients == clients;
    let tps = |clients: u32, route| find(main, at(clients), route).map(|s| s.tps);
    let p50 = |clients: u32, route| find(main, at(clients), route).map(|s| s.p50_us);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let added = |clients: u32| {
        p50(clients, Route::Sluice)
            .zip(p50(clients, Route::Direct))
            .map(|(s, d)| s - d)
    };
    vec![
        Target {
            name: "sluice TPS ≥ 0.85× direct, select-only, 8 clients",
            measured: ratio(
                tps(TARGET_CLIENTS, Route::Sluice),
                tps(TARGET_CLIENTS, Route::Direct),
            ),
            unit: "×",
            threshold: 0.85,
            at_least: true,
        },
        Target {
            name: "sluice TPS ≥ pgbouncer TPS, select-only, 8 clients",
            measured: ratio(
                tps(TARGET_CLIENTS, Route::Sluice),
                tps(TARGET_CLIENTS, Route::Pgbouncer),
            ),
            unit: "×",
            threshold: 1.0,
            at_least: true,
        },
        Target {
            name: "added p50 latency < 50 µs (sluice − direct), select-only, 1 client",
            measured: added(LATENCY_CLIENTS),
            unit: " µs",
            threshold: 50.0,
            at_least: false,
        },
    ]
}

fn report(meta: &Meta, main: &[Sample], tls: &[Sample]) -> anyhow::Result<()> {
    let targets = targets(main);
    let logged_direct = find(
        main,
        |c| !c.prepared && !c.connect_per_tx && c.clients == TARGET_CLIENTS,
        Route::Direct,
    )
    .map(|s| s.tps);
    let (decisions, sluice_tx) = main
        .iter()
        .chain(tls)
        .filter_map(|s| s.decisions.map(|d| (d, s.logged_tx)))
        .fold((0, 0), |(d, t), (sd, st)| (d + sd, t + st));

    let mut md = String::new();
    writeln!(
        md,
        "# Relay benchmark: pgbench through sluice, direct and pgbouncer{}\n",
        if meta.audit {
            " — sluice recording every session (store, durability sync)"
        } else {
            " — the relay alone (recording off)"
        }
    )?;
    writeln!(
        md,
        "`cargo xtask bench relay --duration {}{}`, commit {}, {}, {} CPUs; load average {} at the start, {} at the end \
         (other jobs share this machine: compare routes within one run, not runs with each other).\n",
        meta.duration,
        if meta.audit { " --audit" } else { "" },
        command_line(&["git", "describe", "--always", "--dirty", "--abbrev=7"]),
        command_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        meta.load_start,
        meta.load_end
    )?;
    writeln!(
        md,
        "- **Routes**, all through the same gateway namespace: *direct* is plain IP forwarding to the database; \
         *pgbouncer* is Debian's pgbouncer in session mode (no inspection) on the gateway; *sluice* is tc steering \
         plus sluice's PostgreSQL engine (release build)."
    )?;
    let patterns: Vec<String> = DENY_PATTERNS.iter().map(|p| format!("`{p}`")).collect();
    writeln!(
        md,
        "- **Hooks active**: sluice runs with a deployment's policy (default deny, an allow rule for read, write, \
         transaction and utility statements, a deny rule for unbounded writes, a sensitive column) plus \
         `deny_patterns` = {}, and every value returned passes the content detectors. Nothing matches pgbench's \
         statements, so every statement is decoded, parsed (cached by statement shape), decided and allowed. The sluice sessions reported \
         {decisions} policy decisions for {sluice_tx} logged transactions ({:.3} per transaction); no statement was denied.",
        patterns.join(", "),
        per_tx(decisions, sluice_tx)
    )?;
    writeln!(
        md,
        "- **Latency**: every measured run logs each transaction (`pgbench --log`, time in µs); p50/p99 are over \
         all of a run's transactions, and TPS comes from the same run, so every route pays the logging cost alike. \
         Its cost, measured back to back: direct at {TARGET_CLIENTS} clients did {} TPS unlogged, {} logged. \
         *added p50* = sluice p50 − direct p50.",
        meta.unlogged_direct_tps
            .map_or("—".into(), |t| format!("{t:.0}")),
        logged_direct.map_or("—".into(), |t| format!("{t:.0}")),
    )?;
    writeln!(
        md,
        "- **TLS**: sluice has a `[tls]` section throughout; plain rows set `PGSSLMODE=disable` on every route, \
         the TLS rows `PGSSLMODE=require` (client leg only; sluice to the database stays plain, and the database \
         has no TLS, so TLS is compared with plain sluice, not with direct).\n"
    )?;

    writeln!(md, "## Targets (issue 3)\n")?;
    writeln!(md, "| target | measured | met |\n|---|---:|---|")?;
    for t in &targets {
        let measured = t.measured.map_or("not measured".into(), |m| {
            if t.unit == "×" {
                format!("{m:.2}×")
            } else {
                format!("{m:.0}{}", t.unit)
            }
        });
        let met = match t.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        writeln!(md, "| {} | {measured} | {met} |", t.name)?;
    }

    let added_8 = find(
        main,
        |c| !c.prepared && !c.connect_per_tx && c.clients == TARGET_CLIENTS,
        Route::Sluice,
    )
    .zip(find(
        main,
        |c| !c.prepared && !c.connect_per_tx && c.clients == TARGET_CLIENTS,
        Route::Direct,
    ))
    .map_or("—".into(), |(s, d)| {
        format!("{:+.0} µs", s.p50_us - d.p50_us)
    });
    writeln!(
        md,
        "\nAdded latency is judged at {LATENCY_CLIENTS} client, where it is the per-query cost of the extra hop. With \
         {TARGET_CLIENTS} clients on {} CPUs, p50 also holds CPU queueing between pgbench, PostgreSQL and the proxy \
         (added p50 at {TARGET_CLIENTS} clients: {added_8}).",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    )?;

    writeln!(md, "\n## Direct, pgbouncer and sluice\n")?;
    writeln!(
        md,
        "p50 and p99 in µs, per route: direct / pgbouncer / sluice.\n"
    )?;
    writeln!(
        md,
        "| workload | clients | direct tps | pgbouncer tps | sluice tps | sluice/direct | sluice/pgbouncer | p50 µs d / b / s | p99 µs d / b / s | added p50 µs |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in main.chunks(3) {
        let [d, b, s] = row else { continue };
        writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:+.0} |",
            d.case.label(),
            d.case.clients,
            d.tps,
            b.tps,
            s.tps,
            ratio(s.tps, d.tps),
            ratio(s.tps, b.tps),
            d.p50_us,
            b.p50_us,
            s.p50_us,
            d.p99_us,
            b.p99_us,
            s.p99_us,
            s.p50_us - d.p50_us
        )?;
    }
    writeln!(
        md,
        "\nWith `-C` a transaction's time includes connecting (and, for SCRAM, authenticating) through the route.\n"
    )?;

    writeln!(md, "## TLS on the client leg: sluice plain vs sluice TLS\n")?;
    writeln!(
        md,
        "| workload | clients | sluice plain tps | sluice TLS tps | TLS/plain | p50 µs plain / TLS | p99 µs plain / TLS | added p50 µs (TLS − plain) |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in tls.chunks(2) {
        let [p, t] = row else { continue };
        writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.2}× | {:.0} / {:.0} | {:.0} / {:.0} | {:+.0} |",
            p.case.label(),
            p.case.clients,
            p.tps,
            t.tps,
            ratio(t.tps, p.tps),
            p.p50_us,
            t.p50_us,
            p.p99_us,
            t.p99_us,
            t.p50_us - p.p50_us
        )?;
    }

    let json = json(meta, &targets, main, tls);
    println!("\n{md}");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    fs::create_dir_all(&dir)?;
    let name = if meta.audit { "relay-audit" } else { "relay" };
    fs::write(dir.join(format!("{name}.json")), json)?;
    fs::write(dir.join(format!("{name}.md")), md)?;
    println!("written to bench/results/{name}.json and {name}.md");
    Ok(())
}

fn json(meta: &Meta, targets: &[Target], main: &[Sample], tls: &[Sample]) -> String {
    let num = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.4}"));
    let patterns: Vec<String> = DENY_PATTERNS.iter().map(|p| json_str(p)).collect();
    let targets: Vec<String> = targets
        .iter()
        .map(|t| {
            format!(
                "    {{\"target\": {}, \"measured\": {}, \"threshold\": {}, \"at_least\": {}, \"met\": {}}}",
                json_str(t.name),
                num(t.measured),
                t.threshold,
                t.at_least,
                t.met().map_or("null".into(), |m| m.to_string())
            )
        })
        .collect();
    let samples: Vec<String> = main
        .iter()
        .map(|s| ("main", s))
        .chain(tls.iter().map(|s| ("tls", s)))
        .map(|(table, s)| {
            format!(
                "    {{\"table\": \"{table}\", \"route\": \"{}\", \"client_tls\": {}, \"clients\": {}, \"protocol\": \"{}\", \
                 \"connect_per_tx\": {}, \"tps\": {:.1}, \"latency_avg_ms\": {:.4}, \"p50_us\": {:.0}, \"p99_us\": {:.0}, \
                 \"logged_tx\": {}, \"policy_decisions\": {}}}",
                s.route.name(),
                s.route == Route::SluiceTls,
                s.case.clients,
                if s.case.prepared { "prepared" } else { "simple" },
                s.case.connect_per_tx,
                s.tps,
                s.latency_avg_ms,
                s.p50_us,
                s.p99_us,
                s.logged_tx,
                s.decisions.map_or("null".into(), |d| d.to_string())
            )
        })
        .collect();
    format!(
        "{{\n  \"suite\": \"relay\",\n  \"audit_store\": {},\n  \"duration_s\": {},\n  \"workload\": \"pgbench -S, scale 10\",\n  \
         \"latency_source\": \"pgbench --log per-transaction times, every measured run\",\n  \
         \"unlogged_direct_tps_{TARGET_CLIENTS}_clients\": {},\n  \"loadavg_start\": {},\n  \"loadavg_end\": {},\n  \
         \"policy_deny_patterns\": [{}],\n  \"targets\": [\n{}\n  ],\n  \"samples\": [\n{}\n  ]\n}}\n",
        meta.audit,
        meta.duration,
        num(meta.unlogged_direct_tps),
        json_str(&meta.load_start),
        json_str(&meta.load_end),
        patterns.join(", "),
        targets.join(",\n"),
        samples.join(",\n")
    )
}

pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every transaction time (µs) in a run's pgbench logs: one file per
/// worker thread, `client tx_no time script epoch us`; failed ones skipped.
pub(crate) fn read_tx_log(dir: &Path) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let text = fs::read_to_string(entry?.path())?;
        out.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u32>().ok()),
        );
    }
    if out.is_empty() {
        bail!("pgbench wrote no per-transaction log in {}", dir.display());
    }
    Ok(out)
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "p in 0..=1, n far below 2^52"
    )]
    let rank = (p * n as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, n) - 1])
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn per_tx(decisions: u64, tx: usize) -> f64 {
    if tx == 0 {
        0.0
    } else {
        decisions as f64 / tx as f64
    }
}

/// The number after `key` in a log line, 0 if absent.
pub(crate) fn log_field(line: &str, key: &str) -> u64 {
    line.split_once(key)
        .map(|(_, v)| {
            v.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) const PGBOUNCER_PORT: u16 = 6432;

/// Debian's pgbouncer on the gateway, session pooling, no inspection: the
/// well-known peer the relay is measured against. Stopped on drop.
pub(crate) struct Pgbouncer {
    child: std::process::Child,
}

impl Pgbouncer {
    pub(crate) fn start(r: &scenario::GatewayRun, upstream: &str) -> anyhow::Result<Pgbouncer> {
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

#[cfg(test)]
mod tests {
    use super::{log_field, percentile};

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        for (p, want) in [(0.50, 50.0), (0.99, 99.0), (1.0, 100.0), (0.0, 1.0)] {
            assert_eq!(percentile(&v, p), want, "p{p}");
        }
        assert_eq!(percentile(&[7], 0.5), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn session_counts_from_the_log_line() {
        let line = "INFO postgres session ended user=\"agent\" statements_allowed=1234 statements_denied=0 cancel=0";
        assert_eq!(log_field(line, "statements_allowed="), 1234);
        assert_eq!(log_field(line, "statements_denied="), 0);
        assert_eq!(log_field(line, "missing="), 0);
    }
}
