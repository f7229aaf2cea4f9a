//! `cargo xtask bench pgbench`: pgbench through four routes side by side,
//! in one lab, on one machine load.
//!
//! - *direct*: a second, unprotected address of the database host (plain
//!   forwarding through the gateway);
//! - *pgbouncer*: Debian's pgbouncer on the gateway, session mode, no
//!   inspection, dialling that same unprotected address;
//! - *sluice relay*: a third address of the database host that sluice
//!   protects as a `protocol = "tcp"` target: tc steering and the proxy's
//!   byte relay, no statement seen;
//! - *sluice full*: the database's own address, a `postgres` target: the
//!   PostgreSQL engine with a deployment's policy (default deny, allow
//!   rules, a deny rule), a masked column, the content detectors on every
//!   value, and every statement recorded durably (`durability = "sync"`)
//!   before it may leave.
//!
//! Then *where sluice full's time goes*: sluice restarts twice with one
//! line of its config changed — the store's fsyncs batched
//! (`durability = "batch"`), then the store off — and each workload runs
//! again at the headline client count, alternating with direct.
//!
//! Workloads: `-S` (select-only) and `-N` (simple update: five statements a
//! transaction, three of them writes), each in the simple and the prepared
//! protocol, at each client count. Every point's routes run back to back,
//! round after round, so drifting load falls on each alike; a point's figure
//! is the median of its runs. Latency comes from each run's
//! per-transaction log (`pgbench --log`). Writes
//! `bench/results/pgbench.{json,md}` and a chart per workload.
use std::{fmt::Write as _, fs, time::Duration};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{
    bench::{Pgbouncer, log_field, percentile, read_tx_log},
    bench_report::{self, BarChart, Headline, Series, median, ratio},
    postgres, scenario,
};

/// What to run.
pub struct Options {
    /// Seconds per run.
    pub duration: u32,
    /// Client counts.
    pub clients: Vec<u32>,
    /// Runs per point (the median is reported).
    pub runs: usize,
    /// The short form (recorded in the results).
    pub quick: bool,
}

impl Options {
    /// The defaults, or the quick defaults, overridden by what was given.
    pub fn new(
        quick: bool,
        duration: Option<u32>,
        clients: Option<Vec<u32>>,
        runs: Option<usize>,
    ) -> Options {
        Options {
            duration: duration.unwrap_or(2).max(1),
            clients: clients.unwrap_or_else(|| {
                if quick {
                    vec![4, 16]
                } else {
                    vec![1, 4, 16, 64]
                }
            }),
            runs: runs.unwrap_or(if quick { 1 } else { 3 }).max(1),
            quick,
        }
    }
}

/// sluice full's policy: what a deployment would have. Nothing in it
/// matches pgbench's statements, so each is parsed (cached by statement shape),
/// decided and allowed; a denial invalidates the run.
const FULL_POLICY: &str = "[policy]\ndefault = \"deny\"\n\
deny_patterns = ['(?i)\\bdrop\\s+(table|database|schema)\\b', '(?i)^\\s*truncate\\b', '(?i)\\bpg_read_file\\b']\n\n\
[[policy.rules]]\nname = \"agents\"\naction = \"allow\"\nclasses = [\"read\", \"write\", \"transaction\", \"utility\"]\n\n\
[[policy.rules]]\nname = \"no unbounded writes\"\naction = \"deny\"\nwithout_where = true\n\n\
[[masking.columns]]\ntable = \"cards\"\ncolumn = \"pan\"\nformat = \"pci\"\n";

/// The lab's tag (interface names are `sl<tag>…`, at most 15 bytes).
const TAG: &str = "pgb";
/// Gateway lab index, unique among tests and benchmarks.
const INDEX: u8 = 50;
/// The client count the headline ratios are read at.
const HEADLINE_CLIENTS: u32 = 16;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Direct,
    Pgbouncer,
    Relay,
    Full,
    /// sluice full with `durability = "batch"` (the breakdown).
    FullBatch,
    /// sluice full with the audit store off (the breakdown).
    FullNoStore,
}

const ROUTES: [Route; 4] = [Route::Direct, Route::Pgbouncer, Route::Relay, Route::Full];

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Pgbouncer => "pgbouncer",
            Route::Relay => "sluice relay",
            Route::Full => "sluice full",
            Route::FullBatch => "sluice full, batch",
            Route::FullNoStore => "sluice full, store off",
        }
    }

    /// Through sluice's PostgreSQL engine.
    fn engine(self) -> bool {
        matches!(self, Route::Full | Route::FullBatch | Route::FullNoStore)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    SelectOnly,
    SimpleUpdate,
}

impl Workload {
    fn flag(self) -> &'static str {
        match self {
            Workload::SelectOnly => "-S",
            Workload::SimpleUpdate => "-N",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::SelectOnly => "select-only",
            Workload::SimpleUpdate => "simple-update",
        }
    }

    /// Statements a transaction sends (what sluice full decides).
    fn statements(self) -> u64 {
        match self {
            Workload::SelectOnly => 1,
            // BEGIN, UPDATE accounts, SELECT, INSERT history, END.
            Workload::SimpleUpdate => 5,
        }
    }
}

/// A workload in one protocol at one client count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Point {
    workload: Workload,
    prepared: bool,
    clients: u32,
}

impl Point {
    fn protocol(self) -> &'static str {
        if self.prepared { "prepared" } else { "simple" }
    }

    fn label(self) -> String {
        format!(
            "{} {}{}",
            self.workload.flag(),
            self.protocol(),
            if self.prepared { " (-M prepared)" } else { "" }
        )
    }
}

/// One pgbench run.
#[derive(Clone, Copy, Debug)]
struct Run {
    tps: f64,
    p50_us: f64,
    p99_us: f64,
    transactions: usize,
}

/// A point's runs through one route.
struct Measured {
    point: Point,
    route: Route,
    runs: Vec<Run>,
}

impl Measured {
    fn tps(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.tps).collect::<Vec<_>>())
    }
    fn p50(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.p50_us).collect::<Vec<_>>())
    }
    fn p99(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.p99_us).collect::<Vec<_>>())
    }

    /// The point, the route and the medians, with `runs` as given.
    fn to_json(&self, runs: Value) -> Value {
        json!({
            "workload": self.point.workload.flag(),
            "protocol": self.point.protocol(),
            "clients": self.point.clients,
            "route": self.route.name(),
            "tps": self.tps(),
            "p50_us": self.p50(),
            "p99_us": self.p99(),
            "runs": runs,
        })
    }
}

/// The lab and each route's address.
struct Lab {
    r: scenario::GatewayRun,
    direct_ip: String,
    relay_ip: String,
    _bouncer: Pgbouncer,
}

impl Lab {
    fn start() -> anyhow::Result<Lab> {
        let mut relay_ip = String::new();
        let r = scenario::start_custom(TAG, INDEX, |p| {
            relay_ip = p.lab.add_db_address(4);
            scenario::Custom {
                // Spelled out: the breakdown replaces this line.
                store: "durability = \"sync\"".into(),
                sections: format!(
                    "{FULL_POLICY}\n[[targets]]\nname = \"bench-relay\"\naddress = \"{relay_ip}/32\"\nport = 5432\nprotocol = \"tcp\"\n"
                ),
                ..scenario::Custom::default()
            }
        });
        let direct_ip = r.lab.add_db_address(3);
        println!("initialising pgbench (scale 10, 1M accounts)…");
        let init = std::process::Command::new("pgbench")
            .args(["-q", "-i", "-s", "10", "-h"])
            .arg(&r.pg.dir)
            .args(["-U", "postgres", "postgres"])
            .output()
            .context("running pgbench -i")?;
        if !init.status.success() {
            bail!(
                "pgbench -i failed: {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        r.pg.sql(&format!(
            "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}",
            postgres::USER
        ));
        let bouncer = Pgbouncer::start(&r, &direct_ip)?;
        Ok(Lab {
            r,
            direct_ip,
            relay_ip,
            _bouncer: bouncer,
        })
    }

    fn endpoint(&self, route: Route) -> (&str, u16) {
        match route {
            Route::Direct => (&self.direct_ip, 5432),
            Route::Pgbouncer => (&self.r.lab.gw_agent_ip, crate::bench::PGBOUNCER_PORT),
            Route::Relay => (&self.relay_ip, 5432),
            Route::Full | Route::FullBatch | Route::FullNoStore => (&self.r.lab.db_ip, 5432),
        }
    }

    /// One pgbench run from the agent host; `log` records every
    /// transaction's time for the percentiles.
    fn pgbench(&self, point: Point, route: Route, seconds: u32, log: bool) -> anyhow::Result<Run> {
        let (host, port) = self.endpoint(route);
        let dir = self.r.scratch.path("pgbench-log");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let prefix = format!("--log-prefix={}", dir.join("tx").display());
        let (port, clients, secs, jobs) = (
            port.to_string(),
            point.clients.to_string(),
            seconds.to_string(),
            point.clients.min(4).to_string(),
        );
        let mut argv = vec![
            "env",
            "PGPASSWORD=agent-secret",
            "PGSSLMODE=disable",
            "pgbench",
            "-n",
            point.workload.flag(),
            "-h",
            host,
            "-p",
            &port,
            "-U",
            postgres::USER,
            "-T",
            &secs,
            "-c",
            &clients,
            "-j",
            &jobs,
        ];
        if point.prepared {
            argv.extend(["-M", "prepared"]);
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
                "pgbench {} via {} failed ({}): {text}{}",
                point.label(),
                route.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tps = text
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .with_context(|| format!("no tps in pgbench's output: {text}"))?;
        let mut lat = if log { read_tx_log(&dir)? } else { Vec::new() };
        lat.sort_unstable();
        let _ = fs::remove_dir_all(&dir);
        Ok(Run {
            tps,
            p50_us: percentile(&lat, 0.50),
            p99_us: percentile(&lat, 0.99),
            transactions: lat.len(),
        })
    }

    /// What sluice's log says about the sessions since byte `mark`:
    /// (postgres sessions ended, statements allowed, statements denied,
    /// relay-target sessions opened). Waits until `expected` sessions have
    /// closed (or opened, for the relay) and the tally stops moving.
    fn sluice_tally(&self, mark: usize, expected: u32) -> (u32, u64, u64, u32) {
        let relay_dst = format!("original_dst={}:5432", self.relay_ip);
        let tally = || {
            let text = self.r.daemon.log_text();
            let new = text.get(mark..).unwrap_or("");
            let (mut ended, mut allowed, mut denied, mut relayed) = (0u32, 0u64, 0u64, 0u32);
            for line in new.lines() {
                if line.contains("postgres session ended") {
                    ended += 1;
                    allowed += log_field(line, "statements_allowed=");
                    denied += log_field(line, "statements_denied=");
                } else if line.contains("session opened") && line.contains(&relay_dst) {
                    relayed += 1;
                }
            }
            (ended, allowed, denied, relayed)
        };
        let mut last = tally();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let now = tally();
            if now == last && (now.0 >= expected || now.3 >= expected) {
                break;
            }
            last = now;
        }
        last
    }

    /// Waits (at most 5 s) until sluice's log has stopped growing for
    /// 300 ms: the sessions of unmeasured runs have all logged their end.
    fn settle(&self) {
        let mut len = self.r.daemon.log_text().len();
        let mut quiet = 0;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.r.daemon.log_text().len();
            quiet = if now == len { quiet + 1 } else { 0 };
            len = now;
            if quiet >= 3 {
                break;
            }
        }
    }

    /// A measured run, checked: sluice full must have decided (and allowed)
    /// every statement, the relay route must have gone through sluice, and
    /// the others must not have touched it.
    fn measure(&self, point: Point, route: Route, seconds: u32) -> anyhow::Result<Run> {
        let mark = self.r.daemon.log_text().len();
        let run = self.pgbench(point, route, seconds, true)?;
        // Direct and pgbouncer expect no sluice session: the tally only
        // has to stop moving (waiting for `clients` sessions there cost 5 s
        // a run).
        let expected = if route.engine() || route == Route::Relay {
            point.clients
        } else {
            0
        };
        let (ended, allowed, denied, relayed) = self.sluice_tally(mark, expected);
        let want = run.transactions as u64 * point.workload.statements();
        match route {
            Route::Full | Route::FullBatch | Route::FullNoStore => {
                if denied > 0 {
                    bail!(
                        "sluice full denied {denied} of pgbench's statements: the policy must allow them all"
                    );
                }
                if ended < point.clients || allowed < want {
                    bail!(
                        "{} reported {ended} sessions and {allowed} allowed statements for {} clients and \
                         {want} statements pgbench logged: the run did not go through the PostgreSQL engine",
                        route.name(),
                        point.clients
                    );
                }
            }
            Route::Relay => {
                if relayed < point.clients || ended > 0 {
                    bail!(
                        "the relay route opened {relayed} sluice sessions for {} clients (and {ended} postgres \
                         sessions): it did not go through sluice's byte relay",
                        point.clients
                    );
                }
            }
            Route::Direct | Route::Pgbouncer => {
                if ended > 0 || relayed > 0 {
                    bail!("the {} route went through sluice", route.name());
                }
            }
        }
        Ok(run)
    }

    /// A point through each of `routes`, `opts.runs` rounds of one run per
    /// route, with progress (`done` of `total` runs).
    fn measure_routes(
        &self,
        point: Point,
        routes: &[Route],
        opts: &Options,
        done: &mut usize,
        total: usize,
    ) -> anyhow::Result<Vec<Measured>> {
        let mut by_route: Vec<Measured> = routes
            .iter()
            .map(|&route| Measured {
                point,
                route,
                runs: Vec::new(),
            })
            .collect();
        for _ in 0..opts.runs {
            for m in &mut by_route {
                *done += 1;
                eprint!(
                    "  [{done:>3}/{total}] {:<22} {:>2} clients  {:<22} … ",
                    point.label(),
                    point.clients,
                    m.route.name()
                );
                let run = self.measure(point, m.route, opts.duration)?;
                eprintln!(
                    "{:>7.0} tps  p50 {:>6.0} µs  p99 {:>6.0} µs",
                    run.tps, run.p50_us, run.p99_us
                );
                m.runs.push(run);
            }
        }
        Ok(by_route)
    }

    /// Stop sluice, change one line of its config, start it again.
    fn reconfigure(&mut self, from: &str, to: &str) -> anyhow::Result<()> {
        self.r.daemon.stop();
        let config = fs::read_to_string(&self.r.daemon.config)?;
        let changed = config.replacen(from, to, 1);
        if changed == config {
            bail!("the bench config has no `{from}` line to replace");
        }
        fs::write(&self.r.daemon.config, changed)?;
        self.r.daemon.restart(None);
        Ok(())
    }
}

/// The breakdown's phases: the route, the config line changed, and what
/// it means.
const PHASES: [(Route, &str, &str, &str); 2] = [
    (
        Route::FullBatch,
        "durability = \"sync\"",
        "durability = \"batch\"",
        "the audit store's fsyncs batched",
    ),
    (
        Route::FullNoStore,
        "durability = \"batch\"",
        "enabled = false",
        "the audit store off",
    ),
];

/// Run the suite.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let load_start = bench_report::loadavg();
    let mut lab = Lab::start()?;
    let mut points = Vec::new();
    for workload in [Workload::SelectOnly, Workload::SimpleUpdate] {
        for prepared in [false, true] {
            for &clients in &opts.clients {
                points.push(Point {
                    workload,
                    prepared,
                    clients,
                });
            }
        }
    }
    let at = headline_clients(&opts.clients);
    let breakdown_points: Vec<Point> = points.iter().copied().filter(|p| p.clients == at).collect();
    let total = points.len() * ROUTES.len() * opts.runs
        + PHASES.len() * breakdown_points.len() * 2 * opts.runs;
    println!(
        "{} points × {} routes × {} runs of {} s, then {} points × {} restarts × direct and sluice: about {} min",
        points.len(),
        ROUTES.len(),
        opts.runs,
        opts.duration,
        breakdown_points.len(),
        PHASES.len(),
        (total as u64 * (u64::from(opts.duration) + 1)).div_ceil(60)
    );
    eprintln!("  warming up (2 s per route, not reported) …");
    for route in ROUTES {
        lab.pgbench(
            Point {
                workload: Workload::SelectOnly,
                prepared: false,
                clients: 4,
            },
            route,
            2,
            false,
        )?;
    }
    lab.settle();

    let mut measured: Vec<Measured> = Vec::new();
    let mut done = 0;
    for &point in &points {
        let by_route = lab.measure_routes(point, &ROUTES, opts, &mut done, total)?;
        measured.extend(by_route);
    }

    // Where sluice full's time goes: the same points, each route beside a
    // fresh direct run.
    let mut breakdown: Vec<Measured> = Vec::new();
    for (route, from, to, what) in PHASES {
        eprintln!("  restarting sluice with {what} …");
        lab.reconfigure(from, to)?;
        lab.pgbench(breakdown_points[0], route, 2, false)?;
        lab.settle();
        for &point in &breakdown_points {
            let pair =
                lab.measure_routes(point, &[Route::Direct, route], opts, &mut done, total)?;
            breakdown.extend(pair);
        }
    }
    drop(lab);
    report(opts, &measured, &breakdown, &load_start)
}

/// The client count the headline ratios (and the breakdown) use:
/// [`HEADLINE_CLIENTS`], or the largest count run below it.
fn headline_clients(clients: &[u32]) -> u32 {
    clients
        .iter()
        .copied()
        .filter(|&c| c <= HEADLINE_CLIENTS)
        .max()
        .or_else(|| clients.iter().copied().min())
        .unwrap_or(HEADLINE_CLIENTS)
}

fn find(measured: &[Measured], point: Point, route: Route) -> Option<&Measured> {
    measured
        .iter()
        .find(|m| m.point == point && m.route == route)
}

fn report(
    opts: &Options,
    measured: &[Measured],
    breakdown: &[Measured],
    load_start: &str,
) -> anyhow::Result<()> {
    let machine = bench_report::machine();
    let clients: Vec<String> = opts.clients.iter().map(u32::to_string).collect();
    let mut md = String::new();
    writeln!(
        md,
        "# pgbench: direct, pgbouncer, sluice relay and sluice full\n"
    )?;
    writeln!(
        md,
        "`cargo xtask bench pgbench{}` — {} s per run, median of {} run{} per point, clients {}; pgbench scale 10 \
         from the agent host, through the gateway namespace; release build. Load average {load_start} at the \
         start, {} at the end. {}.\n",
        if opts.quick { " --quick" } else { "" },
        opts.duration,
        opts.runs,
        if opts.runs == 1 { "" } else { "s" },
        clients.join(", "),
        bench_report::loadavg(),
        bench_report::machine_line(&machine, "pgbench"),
    )?;
    writeln!(
        md,
        "- **direct**: plain IP forwarding to PostgreSQL 15. **pgbouncer**: Debian's pgbouncer on the gateway, \
         session mode, no inspection. **sluice relay**: tc steering into sluice, a `protocol = \"tcp\"` target \
         (bytes relayed, no statement seen). **sluice full**: tc steering into sluice's PostgreSQL engine with a \
         deployment's policy (default deny, allow rules by class, a deny rule for unbounded writes, three deny \
         patterns), a masked column, the content detectors on every value returned, and every statement recorded \
         in the audit store and synced to disk before it may leave (`durability = \"sync\"`).\n\
         - **Checked on every run**: sluice full reported a policy decision for every statement pgbench logged \
         and denied none; the relay route's sessions went through sluice's relay; direct and pgbouncer never \
         touched sluice.\n\
         - **Latency**: p50/p99 over every transaction of a run (`pgbench --log`), then the median over runs.\n\
         - `-S` is one `SELECT` a transaction; `-N` is five statements (BEGIN, UPDATE, SELECT, INSERT, END), \
         three of which write: through sluice full each statement waits for its audit record's fsync.\n"
    )?;

    // Ratios first.
    writeln!(md, "## Ratios\n")?;
    writeln!(
        md,
        "| workload | clients | full / direct | full / pgbouncer | relay / direct | pgbouncer / direct |\n|---|---:|---:|---:|---:|---:|"
    )?;
    let points: Vec<Point> = {
        let mut v: Vec<Point> = measured.iter().map(|m| m.point).collect();
        v.dedup();
        v
    };
    let tps = |p: Point, r: Route| find(measured, p, r).map_or(0.0, Measured::tps);
    for &p in &points {
        let d = tps(p, Route::Direct);
        writeln!(
            md,
            "| {} | {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            p.label(),
            p.clients,
            ratio(tps(p, Route::Full), d),
            ratio(tps(p, Route::Full), tps(p, Route::Pgbouncer)),
            ratio(tps(p, Route::Relay), d),
            ratio(tps(p, Route::Pgbouncer), d),
        )?;
    }

    writeln!(md, "\n## TPS and latency (this machine's numbers)\n")?;
    writeln!(
        md,
        "TPS per route: direct / pgbouncer / relay / full. Latency in µs.\n\n\
         | workload | clients | tps d / b / r / f | p50 µs d / b / r / f | p99 µs d / b / r / f | added p50 µs (full − direct) |\n|---|---:|---:|---:|---:|---:|"
    )?;
    for &p in &points {
        let get = |f: fn(&Measured) -> f64| {
            ROUTES
                .iter()
                .map(|&r| find(measured, p, r).map_or("—".into(), |m| format!("{:.0}", f(m))))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let added = find(measured, p, Route::Full)
            .zip(find(measured, p, Route::Direct))
            .map_or("—".into(), |(f, d)| format!("{:+.0}", f.p50() - d.p50()));
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {added} |",
            p.label(),
            p.clients,
            get(Measured::tps),
            get(Measured::p50),
            get(Measured::p99)
        )?;
    }

    if !breakdown.is_empty() {
        breakdown_section(&mut md, measured, breakdown)?;
    }

    writeln!(md, "\n## Charts\n")?;
    for workload in [Workload::SelectOnly, Workload::SimpleUpdate] {
        for prepared in [false, true] {
            let these: Vec<Point> = points
                .iter()
                .copied()
                .filter(|p| p.workload == workload && p.prepared == prepared)
                .collect();
            if these.is_empty() {
                continue;
            }
            let chart = BarChart {
                file: format!(
                    "pgbench-{}-{}.png",
                    workload.name(),
                    if prepared { "prepared" } else { "simple" }
                ),
                title: format!(
                    "pgbench {} ({}), TPS by clients",
                    workload.flag(),
                    these[0].protocol()
                ),
                y_label: "transactions / s".into(),
                groups: these
                    .iter()
                    .map(|p| format!("{} clients", p.clients))
                    .collect(),
                series: ROUTES
                    .iter()
                    .map(|&r| Series {
                        name: r.name().into(),
                        values: these.iter().map(|&p| tps(p, r)).collect(),
                    })
                    .collect(),
            };
            writeln!(md, "{}\n", chart.draw()?)?;
        }
    }

    let headline = headlines(measured, breakdown, &points);
    let data = json!({
        "command": format!("cargo xtask bench pgbench{}", if opts.quick { " --quick" } else { "" }),
        "quick": opts.quick,
        "duration_s": opts.duration,
        "runs_per_point": opts.runs,
        "clients": opts.clients,
        "scale": 10,
        "median_of": "runs, each metric separately",
        "loadavg_start": load_start,
        "loadavg_end": bench_report::loadavg(),
        "machine": machine,
        "sluice_full_config": FULL_POLICY,
        "breakdown": breakdown.iter().map(|m| m.to_json(json!(m.runs.iter().map(|r| r.tps).collect::<Vec<f64>>()))).collect::<Vec<Value>>(),
        "points": measured.iter().map(|m| m.to_json(m.runs.iter().map(|r| json!({
            "tps": r.tps, "p50_us": r.p50_us, "p99_us": r.p99_us, "transactions": r.transactions,
        })).collect())).collect::<Vec<Value>>(),
    });
    println!("\n{md}");
    bench_report::write_suite("pgbench", data, &md, &headline)
}

/// The report's headline figures: the full engine against direct and
/// pgbouncer at [`HEADLINE_CLIENTS`] (or the largest count run), the relay
/// alone, and the added latency at the smallest count.
fn headlines(measured: &[Measured], breakdown: &[Measured], points: &[Point]) -> Vec<Headline> {
    let tps = |p: Point, r: Route| find(measured, p, r).map_or(0.0, Measured::tps);
    let clients: Vec<u32> = points.iter().map(|p| p.clients).collect();
    let at = headline_clients(&clients);
    let least = points.iter().map(|p| p.clients).min().unwrap_or(1);
    let point = |workload, prepared, clients| Point {
        workload,
        prepared,
        clients,
    };
    let mut out = Vec::new();
    for (workload, prepared) in [
        (Workload::SelectOnly, false),
        (Workload::SelectOnly, true),
        (Workload::SimpleUpdate, false),
    ] {
        let p = point(workload, prepared, at);
        if find(measured, p, Route::Direct).is_none() {
            continue;
        }
        let full = ratio(tps(p, Route::Full), tps(p, Route::Direct));
        out.push(Headline::judged(
            format!("sluice full / direct, pgbench {}, {at} clients", p.label()),
            format!("{full:.2}×"),
            "≥ 0.85× (issue 3)",
            full >= 0.85,
        ));
        out.push(Headline::info(
            format!(
                "sluice full / pgbouncer, pgbench {}, {at} clients",
                p.label()
            ),
            format!(
                "{:.2}×",
                ratio(tps(p, Route::Full), tps(p, Route::Pgbouncer))
            ),
        ));
    }
    let p = point(Workload::SelectOnly, false, at);
    if find(measured, p, Route::Direct).is_some() {
        let full = ratio(tps(p, Route::Full), tps(p, Route::Direct));
        out.push(Headline::judged(
            format!(
                "sluice full (masking rules loaded, durability sync) / direct, pgbench {}, {at} clients",
                p.label()
            ),
            format!("{full:.2}×"),
            "≥ 0.8× (issue 5)",
            full >= 0.8,
        ));
        for route in [Route::FullBatch, Route::FullNoStore] {
            if let Some(r) = breakdown_ratio(breakdown, p, route) {
                out.push(Headline::info(
                    format!(
                        "{} / direct, pgbench {}, {at} clients",
                        route.name(),
                        p.label()
                    ),
                    format!("{r:.2}×"),
                ));
            }
        }
        out.push(Headline::info(
            format!("sluice relay / direct, pgbench {}, {at} clients", p.label()),
            format!("{:.2}×", ratio(tps(p, Route::Relay), tps(p, Route::Direct))),
        ));
    }
    let p = point(Workload::SelectOnly, false, least);
    if let (Some(f), Some(d)) = (
        find(measured, p, Route::Full),
        find(measured, p, Route::Direct),
    ) {
        let added = f.p50() - d.p50();
        out.push(Headline::judged(
            format!(
                "added p50 latency, sluice full − direct, pgbench -S simple, {least} client{}",
                if least == 1 { "" } else { "s" }
            ),
            format!("{added:+.0} µs"),
            "< 50 µs (issue 3)",
            added < 50.0,
        ));
    }
    out
}

/// A breakdown route's TPS over the direct run beside it.
fn breakdown_ratio(breakdown: &[Measured], point: Point, route: Route) -> Option<f64> {
    let mut it = breakdown.iter().filter(|m| m.point == point);
    // Each phase adds (direct, route) in that order.
    let mut last_direct = None;
    for m in &mut it {
        if m.route == Route::Direct {
            last_direct = Some(m.tps());
        } else if m.route == route {
            return last_direct.map(|d| ratio(m.tps(), d));
        }
    }
    None
}

/// The breakdown table: sluice full as deployed, with the store's fsyncs
/// batched, and with no store, each against direct.
fn breakdown_section(
    md: &mut String,
    measured: &[Measured],
    breakdown: &[Measured],
) -> anyhow::Result<()> {
    writeln!(md, "\n## Where sluice full's time goes\n")?;
    writeln!(
        md,
        "After the runs above, sluice restarted twice with its policy and masking unchanged: first with \
         `durability = \"batch\"` (each event written to the store's log before the statement or its answer \
         may leave, as with `sync`, but fsynced every `batch_window_ms` rather than before: a crash of sluice \
         loses nothing, a power failure can lose that window), then with the audit store off (`enabled = false`: \
         policy, masking and the content detectors only). Each route ran beside a fresh direct run, alternating. \
         *sync* is sluice full from the table above.\n"
    )?;
    writeln!(
        md,
        "| workload | clients | sync / direct | batch / direct | store off / direct | relay / direct | p50 µs direct / sync / batch / off |\n|---|---:|---:|---:|---:|---:|---:|"
    )?;
    let mut points: Vec<Point> = Vec::new();
    for m in breakdown {
        if !points.contains(&m.point) {
            points.push(m.point);
        }
    }
    for p in points {
        let main = |r: Route| find(measured, p, r);
        let d = main(Route::Direct).map_or(0.0, Measured::tps);
        let cell = |r: Option<f64>| r.map_or("—".into(), |r| format!("{r:.2}×"));
        let p50 = |m: Option<&Measured>| m.map_or("—".into(), |m| format!("{:.0}", m.p50()));
        let in_breakdown = |r: Route| breakdown.iter().find(|m| m.point == p && m.route == r);
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} / {} / {} / {} |",
            p.label(),
            p.clients,
            cell(main(Route::Full).map(|m| ratio(m.tps(), d))),
            cell(breakdown_ratio(breakdown, p, Route::FullBatch)),
            cell(breakdown_ratio(breakdown, p, Route::FullNoStore)),
            cell(main(Route::Relay).map(|m| ratio(m.tps(), d))),
            p50(main(Route::Direct)),
            p50(main(Route::Full)),
            p50(in_breakdown(Route::FullBatch)),
            p50(in_breakdown(Route::FullNoStore)),
        )?;
    }
    writeln!(
        md,
        "\nThe step from *sync* to *batch* is waiting for the fsync (one per round trip at one client, shared by \
         the sessions that meet in a group commit above that); from *batch* to *store off* is recording itself \
         (encoding, hashing, the writer thread's round trip); from *store off* to *relay* is parsing, deciding and \
         scanning every value."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Options;

    #[test]
    fn defaults_and_quick() {
        let d = Options::new(false, None, None, None);
        assert_eq!(
            (d.duration, d.runs, d.clients.as_slice()),
            (2, 3, &[1, 4, 16, 64][..])
        );
        let q = Options::new(true, None, Some(vec![8]), None);
        assert_eq!((q.duration, q.runs, q.clients.as_slice()), (2, 1, &[8][..]));
        assert_eq!(Options::new(false, Some(0), None, Some(0)).runs, 1);
    }
}
