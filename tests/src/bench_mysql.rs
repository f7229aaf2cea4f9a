//! `cargo xtask bench mysql`: sysbench OLTP against MariaDB 10.11 through
//! sluice's MySQL engine with everything a deployment turns on — policy,
//! masking, the durable audit store — and directly, side by side in one run
//! on one lab; writes `bench/results/mysql.{json,md}` (a `--quick` run says
//! so in both) and a chart, and rebuilds `bench/REPORT.md`.
//!
//! Both routes cross the same gateway namespace: "direct" dials a second,
//! unprotected address of the database host (plain forwarding, sluice never
//! sees it); "sluice" dials the protected address (tc steering + proxy).
//! Release binaries.
//!
//! Workloads: `oltp_read_only` with sysbench's default server-side prepared
//! statements (the binary protocol: COM_STMT_EXECUTE, binary rows) at each
//! client count; `oltp_point_select` (prepared) and `oltp_read_only` with
//! `--db-ps-mode=disable` (the text protocol: COM_QUERY, text rows) at
//! [`TARGET_CLIENTS`]. The sbtest tables are created as root over the
//! database's socket (never through sluice); the agent account, which has
//! ALL on `shop.*`, runs the workloads.
//!
//! Every point is the median (by TPS) of `runs` runs, the routes alternating
//! run by run (direct first, then sluice first, …) so drift in the
//! machine's load falls on both. Latency comes from sysbench's histogram of
//! the same run (`--histogram`): p50, p95 and p99 per transaction. The CPU
//! time sluice and mariadbd used during each run (from /proc) says where the
//! time goes.
use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    bench::{command_line, json_str, loadavg, log_field, ratio},
    bench_report::{self, BarChart, Headline, Series},
    mariadb,
    scenario::{self, MysqlRun},
};

/// The lab's tag and index (addresses 10.77.62.0/24 and 10.77.63.0/24).
const TAG: &str = "mybench";
const INDEX: u8 = 31;
/// sysbench's data: tables × rows (a few MB, inside the 32 MB buffer pool).
const TABLES: u32 = 4;
const TABLE_SIZE: u32 = 10_000;
/// Client count at which the issue's throughput target is judged.
const TARGET_CLIENTS: u32 = 8;
/// sluice TPS ≥ this × direct TPS at [`TARGET_CLIENTS`].
const TARGET_RATIO: f64 = 0.85;

/// A deployment's policy: allow by default, a deny rule and deny patterns
/// that never match sysbench's statements (every statement is parsed,
/// cached by statement shape, decided and allowed), and a sensitive column, so every
/// row passes the masking rewriter and its content detectors.
const POLICY: &str = "[policy]\ndefault = \"allow\"\n";
const RULES: &str = "[[policy.rules]]\nname = \"no unbounded writes\"\naction = \"deny\"\nwithout_where = true\n\n\
[[masking.columns]]\ntable = \"cards\"\ncolumn = \"pan\"\nformat = \"pci\"\n\n\
[[masking.columns]]\ntable = \"cards\"\ncolumn = \"holder\"\nformat = \"redact\"\n";
const DENY_PATTERNS: &[&str] = &[
    r"(?i)\bdrop\s+(table|database|schema)\b",
    r"(?i)^\s*truncate\b",
    r"(?i)^\s*delete\s+from\s+\w+\s*;?\s*$",
    r"(?i)\bload_file\s*\(",
    r"(?i)\binto\s+(out|dump)file\b",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    /// sluice with the policy, masking and the audit store (durability sync).
    Sluice,
    /// The same sluice with `durability = "batch"` (`--breakdown`).
    SluiceBatch,
    /// The same sluice with the audit store off (`--breakdown`): what
    /// recording costs at all.
    SluiceNoStore,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Sluice => "sluice",
            Route::SluiceBatch => "sluice-batch",
            Route::SluiceNoStore => "sluice-store-off",
        }
    }

    fn via_sluice(self) -> bool {
        self != Route::Direct
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// `oltp_read_only`, server-side prepared statements.
    ReadOnly,
    /// `oltp_point_select`, server-side prepared statements.
    PointSelect,
    /// `oltp_read_only --db-ps-mode=disable`: the text protocol.
    ReadOnlyText,
}

impl Workload {
    fn script(self) -> &'static str {
        match self {
            Workload::ReadOnly | Workload::ReadOnlyText => "oltp_read_only",
            Workload::PointSelect => "oltp_point_select",
        }
    }

    fn ps_mode(self) -> &'static str {
        match self {
            Workload::ReadOnly | Workload::PointSelect => "auto",
            Workload::ReadOnlyText => "disable",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Workload::ReadOnly => "read-only",
            Workload::PointSelect => "point-select",
            Workload::ReadOnlyText => "read-only/text",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Workload::ReadOnly => "oltp_read_only, prepared (binary protocol)",
            Workload::PointSelect => "oltp_point_select, prepared (binary protocol)",
            Workload::ReadOnlyText => "oltp_read_only, --db-ps-mode=disable (text protocol)",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Case {
    workload: Workload,
    clients: u32,
}

/// One sysbench run, and what the processes around it did meanwhile.
#[derive(Clone)]
struct Run {
    tps: f64,
    qps: f64,
    transactions: u64,
    queries: u64,
    errors: u64,
    seconds: f64,
    /// sysbench's own average and 95th percentile (ms).
    avg_ms: f64,
    p95_sysbench_ms: f64,
    /// From the run's latency histogram (ms).
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    /// CPU seconds the sluice process used during the run (sluice route).
    sluice_cpu_s: Option<f64>,
    /// CPU seconds mariadbd used during the run.
    db_cpu_s: f64,
    /// Busy CPU time of the whole machine over the run, in cores.
    busy_cores: f64,
    /// Policy decisions the run's sessions reported (sluice route).
    decisions: Option<u64>,
}

/// A case on a route: every run, and the median one.
struct Point {
    case: Case,
    route: Route,
    runs: Vec<Run>,
}

impl Point {
    /// The median run by TPS (the lower middle one for an even count).
    fn median(&self) -> &Run {
        let mut order: Vec<&Run> = self.runs.iter().collect();
        order.sort_by(|a, b| a.tps.total_cmp(&b.tps));
        order[(order.len() - 1) / 2]
    }
}

/// Options of `sluice-lab bench mysql`.
pub struct Options {
    /// Seconds per run.
    pub duration: u32,
    /// Client counts for `oltp_read_only` (the other workloads run at
    /// [`TARGET_CLIENTS`] only).
    pub clients: Vec<u32>,
    /// Runs per point (the median is reported).
    pub runs: usize,
    /// One run per point at [`TARGET_CLIENTS`] (recorded in the results).
    pub quick: bool,
    /// Then every workload at [`TARGET_CLIENTS`] again, direct against
    /// sluice with the audit store off (the daemon restarted).
    pub breakdown: bool,
    /// Then one more run per workload at [`TARGET_CLIENTS`] through each
    /// sluice route, not reported, with `perf record` sampling the sluice
    /// process: its hottest functions.
    pub perf: bool,
}

/// Where the sluice process spent its CPU during one unreported run.
struct Profile {
    case: Case,
    route: Route,
    /// sysbench's TPS in the profiled run (perf's sampling included).
    tps: f64,
    /// `perf report`'s sample count line.
    samples: String,
    /// (share of samples in %, object, symbol), hottest first.
    top: Vec<(f64, String, String)>,
}

struct Bench<'a> {
    r: &'a MysqlRun,
    direct_ip: String,
    duration: u32,
    db_pid: u32,
    clk_tck: f64,
    done: usize,
    total: usize,
}

impl Bench<'_> {
    fn host(&self, route: Route) -> &str {
        match route {
            Route::Direct => &self.direct_ip,
            Route::Sluice | Route::SluiceBatch | Route::SluiceNoStore => &self.r.lab.db_ip,
        }
    }

    /// sysbench once from the agent host.
    fn sysbench(&self, case: Case, route: Route, seconds: u32) -> anyhow::Result<Run> {
        let host = format!("--mysql-host={}", self.host(route));
        let user = format!("--mysql-user={}", mariadb::USER);
        let password = format!("--mysql-password={}", mariadb::PASSWORD);
        let db = format!("--mysql-db={}", mariadb::DATABASE);
        let tables = format!("--tables={TABLES}");
        let size = format!("--table-size={TABLE_SIZE}");
        let threads = format!("--threads={}", case.clients);
        let time = format!("--time={seconds}");
        let ps = format!("--db-ps-mode={}", case.workload.ps_mode());
        let argv = [
            "sysbench",
            case.workload.script(),
            "--db-driver=mysql",
            &host,
            "--mysql-port=3306",
            &user,
            &password,
            &db,
            "--mysql-ssl=off",
            &tables,
            &size,
            &threads,
            &time,
            "--report-interval=0",
            "--histogram=on",
            "--percentile=95",
            &ps,
            "run",
        ];
        let mark = self.r.daemon.log_text().len();
        let (sluice0, db0, busy0) = (
            self.sluice_cpu(route),
            proc_cpu_ticks(self.db_pid),
            machine_ticks(),
        );
        let started = Instant::now();
        let out = self
            .r
            .lab
            .agent
            .try_run(&argv, Duration::from_secs(u64::from(seconds) + 60));
        let wall = started.elapsed().as_secs_f64();
        let (sluice1, db1, busy1) = (
            self.sluice_cpu(route),
            proc_cpu_ticks(self.db_pid),
            machine_ticks(),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "sysbench {} via {} failed ({}): {}{}",
                case.workload.short(),
                route.name(),
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut run =
            parse_sysbench(&text).with_context(|| format!("reading sysbench's output:\n{text}"))?;
        if run.errors > 0 {
            bail!(
                "sysbench {} via {} ignored {} errors: the run does not measure the workload\n{text}",
                case.workload.short(),
                route.name(),
                run.errors
            );
        }
        run.sluice_cpu_s = sluice0
            .zip(sluice1)
            .map(|(a, b)| b.saturating_sub(a) as f64 / self.clk_tck);
        run.db_cpu_s = db1.saturating_sub(db0) as f64 / self.clk_tck;
        run.busy_cores = busy1.saturating_sub(busy0) as f64 / self.clk_tck / wall;
        if route.via_sluice() {
            run.decisions = Some(self.decisions_since(mark, case)?);
        }
        Ok(run)
    }

    /// One unreported sluice run with `perf record` on the sluice process.
    fn profile(&mut self, case: Case, route: Route, dir: &Path) -> anyhow::Result<Profile> {
        eprint!(
            "  [perf] {:<16} {:<14} {:>2} clients, {} s … ",
            route.name(),
            case.workload.short(),
            case.clients,
            self.duration
        );
        let data = dir.join(format!(
            "perf-{}-{}.data",
            route.name(),
            case.workload.short().replace('/', "-")
        ));
        let mut perf = Command::new("perf")
            .args(["record", "-q", "-F", "499", "-p"])
            .arg(self.r.daemon.pid().to_string())
            .arg("-o")
            .arg(&data)
            .args(["--", "sleep"])
            .arg(self.duration.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting perf record (is perf installed?)")?;
        let run = self.sysbench(case, route, self.duration);
        let ended = crate::wait_for(Duration::from_secs(u64::from(self.duration) + 30), || {
            perf.try_wait().ok().flatten()
        });
        if ended.is_none() {
            let _ = perf.kill();
            let _ = perf.wait();
        }
        let run = run?;
        let out = Command::new("timeout")
            .args(["-k", "2", "120", "perf", "report", "-i"])
            .arg(&data)
            .args([
                "--no-children",
                "--sort",
                "dso,symbol",
                "--stdio",
                "-g",
                "none",
            ])
            .output()
            .context("perf report")?;
        let (samples, top) = parse_perf_report(&String::from_utf8_lossy(&out.stdout));
        let _ = fs::remove_file(&data);
        eprintln!(
            "{:.0} tps; hottest: {}",
            run.tps,
            top.first()
                .map_or("?".into(), |(s, _, f)| format!("{s:.1}% {f}"))
        );
        Ok(Profile {
            case,
            route,
            tps: run.tps,
            samples,
            top,
        })
    }

    fn sluice_cpu(&self, route: Route) -> Option<u64> {
        route
            .via_sluice()
            .then(|| proc_cpu_ticks(self.r.daemon.pid()))
    }

    /// One reported run, with a progress line.
    fn measure(&mut self, case: Case, route: Route) -> anyhow::Result<Run> {
        self.done += 1;
        eprint!(
            "  [{:>2}/{}] {:<16} {:<14} {:>2} clients, {} s … ",
            self.done,
            self.total,
            route.name(),
            case.workload.short(),
            case.clients,
            self.duration
        );
        let run = self.sysbench(case, route, self.duration)?;
        eprintln!(
            "{:.0} tps, {:.0} qps, p50 {:.2} ms, p95 {:.2} ms{}",
            run.tps,
            run.qps,
            run.p50_ms,
            run.p95_ms,
            run.sluice_cpu_s.map_or(String::new(), |c| format!(
                ", sluice {:.2} cores",
                c / run.seconds
            ))
        );
        Ok(run)
    }

    /// Sum of `statements_allowed` over the MySQL sessions closed since byte
    /// `mark` of the daemon's log; waits (bounded) for the run's sessions to
    /// close. A denial means the policy refused part of the workload, and
    /// the run is invalid.
    fn decisions_since(&self, mark: usize, case: Case) -> anyhow::Result<u64> {
        let tally = || {
            let text = self.r.daemon.log_text();
            let new = text.get(mark..).unwrap_or("");
            let (mut sessions, mut allowed, mut denied) = (0u32, 0u64, 0u64);
            for line in new.lines().filter(|l| l.contains("mysql session ended")) {
                sessions += 1;
                allowed += log_field(line, "statements_allowed=");
                denied += log_field(line, "statements_denied=");
            }
            (sessions, allowed, denied)
        };
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
                "sluice denied {denied} statements of sysbench: the run does not measure an allowing policy"
            );
        }
        Ok(allowed)
    }
}

pub fn mysql(opts: &Options) -> anyhow::Result<()> {
    let load_start = loadavg();
    let mut r = scenario::start_mysql(TAG, INDEX, |_| {
        let patterns: Vec<String> = DENY_PATTERNS.iter().map(|p| format!("'{p}'")).collect();
        scenario::Custom {
            sections: format!(
                "{POLICY}deny_patterns = [{}]\n\n{RULES}",
                patterns.join(", ")
            ),
            store: "durability = \"sync\"".into(),
            ..scenario::Custom::default()
        }
    });
    let log = r.daemon.log_text();
    if !log.contains("deny_patterns=5") {
        eprintln!("note: the daemon's log does not show deny_patterns=5; its log:\n{log}");
    }
    // The direct route: a second address of the database host that no
    // target names, so the gateway only forwards.
    let direct_ip = r.lab.add_db_address(3);

    println!("preparing sysbench's tables ({TABLES} × {TABLE_SIZE} rows) as root over the socket…");
    let socket = format!("--mysql-socket={}", r.db.socket().display());
    let prepare = Command::new("timeout")
        .args([
            "-k",
            "2",
            "180",
            "sysbench",
            "oltp_read_only",
            "--db-driver=mysql",
        ])
        .arg(&socket)
        .args(["--mysql-user=root", "--mysql-db=shop"])
        .arg(format!("--tables={TABLES}"))
        .arg(format!("--table-size={TABLE_SIZE}"))
        .arg("prepare")
        .output()
        .context("sysbench prepare")?;
    if !prepare.status.success() {
        bail!(
            "sysbench prepare failed: {}{}",
            String::from_utf8_lossy(&prepare.stdout),
            String::from_utf8_lossy(&prepare.stderr)
        );
    }
    let detectors = check_routes(&r, &direct_ip)?;
    // The general query log writes every statement: off for the runs.
    r.db.sql("SET GLOBAL general_log = OFF");
    let mariadb_version = r.db.sql("SELECT VERSION()");
    let db_pid: u32 = fs::read_to_string(r.db.dir.join("mysqld.pid"))
        .context("mariadbd's pid file")?
        .trim()
        .parse()
        .context("mariadbd's pid")?;
    let clk_tck = command_line(&["getconf", "CLK_TCK"])
        .parse::<f64>()
        .unwrap_or(100.0);

    let mut cases: Vec<Case> = opts
        .clients
        .iter()
        .map(|&clients| Case {
            workload: Workload::ReadOnly,
            clients,
        })
        .collect();
    for workload in [Workload::PointSelect, Workload::ReadOnlyText] {
        cases.push(Case {
            workload,
            clients: TARGET_CLIENTS,
        });
    }
    let breakdown_cases: Vec<Case> = [
        Workload::ReadOnly,
        Workload::PointSelect,
        Workload::ReadOnlyText,
    ]
    .into_iter()
    .map(|workload| Case {
        workload,
        clients: TARGET_CLIENTS,
    })
    .collect();
    let total = (cases.len()
        + if opts.breakdown {
            2 * breakdown_cases.len()
        } else {
            0
        })
        * 2
        * opts.runs;
    let mut b = Bench {
        r: &r,
        direct_ip: direct_ip.clone(),
        duration: opts.duration,
        db_pid,
        clk_tck,
        done: 0,
        total,
    };
    let profiled = if opts.perf {
        breakdown_cases.len() * if opts.breakdown { 3 } else { 1 }
    } else {
        0
    };
    println!(
        "{} measured runs of {} s (median of {} per point){}: about {} min",
        b.total,
        opts.duration,
        opts.runs,
        if profiled > 0 {
            format!(", {profiled} profiled")
        } else {
            String::new()
        },
        ((b.total + profiled) * (opts.duration as usize + 2)).div_ceil(60)
    );

    let warm = Case {
        workload: Workload::ReadOnly,
        clients: TARGET_CLIENTS,
    };
    let warm_s = if opts.quick { 2 } else { 3 };
    eprintln!("  warming up ({warm_s} s per route, not reported) …");
    for route in [Route::Direct, Route::Sluice] {
        b.sysbench(warm, route, warm_s)?;
    }

    let points = measure_points(&mut b, &cases, Route::Sluice, opts.runs)?;
    let perf_dir = r.scratch.path("perf");
    fs::create_dir_all(&perf_dir)?;
    let mut profiles = Vec::new();
    if opts.perf {
        for &case in &breakdown_cases {
            profiles.push(b.profile(case, Route::Sluice, &perf_dir)?);
        }
    }
    let done = b.done;
    let store_bytes = dir_size(&crate::daemon::store_dir(&r.scratch.0));

    let mut breakdown = Vec::new();
    if opts.breakdown {
        // The same sluice with the store's fsyncs batched, then with no
        // store at all; each a restart with one line of the config changed.
        let mut done = done;
        for (route, from, to, what) in [
            (
                Route::SluiceBatch,
                "durability = \"sync\"",
                "durability = \"batch\"",
                "the audit store's fsyncs batched",
            ),
            (
                Route::SluiceNoStore,
                "durability = \"batch\"",
                "enabled = false",
                "the audit store off",
            ),
        ] {
            eprintln!("  restarting sluice with {what} …");
            r.daemon.stop();
            let config = fs::read_to_string(&r.daemon.config)?;
            let changed = config.replace(from, to);
            if changed == config {
                bail!("the bench config has no `{from}` line to replace");
            }
            fs::write(&r.daemon.config, changed)?;
            r.daemon.restart(None);
            let mut b = Bench {
                r: &r,
                direct_ip: direct_ip.clone(),
                duration: opts.duration,
                db_pid,
                clk_tck,
                done,
                total,
            };
            b.sysbench(warm, route, warm_s)?;
            breakdown.extend(measure_points(&mut b, &breakdown_cases, route, opts.runs)?);
            if opts.perf {
                for &case in &breakdown_cases {
                    profiles.push(b.profile(case, route, &perf_dir)?);
                }
            }
            done = b.done;
        }
    }
    drop(r);
    let meta = Meta {
        opts,
        load_start,
        load_end: loadavg(),
        mariadb: mariadb_version,
        store_bytes,
        detectors,
    };
    report(&meta, &points, &breakdown, &profiles)
}

/// Every case, direct against `sluice` (a sluice route), `runs` times
/// each; the order of the two alternates run by run.
fn measure_points(
    b: &mut Bench<'_>,
    cases: &[Case],
    sluice: Route,
    runs: usize,
) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for &case in cases {
        let mut direct = Point {
            case,
            route: Route::Direct,
            runs: Vec::new(),
        };
        let mut proxied = Point {
            case,
            route: sluice,
            runs: Vec::new(),
        };
        for i in 0..runs {
            let order = if i % 2 == 0 {
                [Route::Direct, sluice]
            } else {
                [sluice, Route::Direct]
            };
            for route in order {
                let run = b.measure(case, route)?;
                if route == Route::Direct {
                    direct.runs.push(run);
                } else {
                    proxied.runs.push(run);
                }
            }
        }
        points.push(direct);
        points.push(proxied);
    }
    Ok(points)
}

/// What sluice's content detectors make of sysbench's data: the rows of a
/// range select (`c`, `pad`) as read directly and through sluice.
struct Detectors {
    rows: usize,
    /// Rows whose values differ through sluice (masked).
    changed: usize,
    /// The first row's `c`, direct and through sluice.
    direct_c: String,
    sluice_c: String,
}

/// The direct address reaches the database without sluice, the protected
/// one through it: checked on the general log (the connection's source) and
/// with a statement sysbench's tables answer. Returns what the content
/// detectors did to sysbench's rows.
fn check_routes(r: &MysqlRun, direct_ip: &str) -> anyhow::Result<Detectors> {
    let before_agent = r.direct_connections_from(&r.lab.agent_ip);
    let before_gw = r.direct_connections_from(&r.lab.gw_db_ip);
    for (host, via) in [(direct_ip, "direct"), (r.lab.db_ip.as_str(), "sluice")] {
        let out = r.agent_mysql(host, "SELECT count(*) FROM sbtest1");
        if !out.0 || out.1.trim() != TABLE_SIZE.to_string() {
            bail!(
                "the {via} route does not answer sysbench's table: {}{}",
                out.1,
                out.2
            );
        }
    }
    let from_agent = r.direct_connections_from(&r.lab.agent_ip) - before_agent;
    let from_gw = r.direct_connections_from(&r.lab.gw_db_ip) - before_gw;
    if from_agent != 1 || from_gw != 1 {
        bail!(
            "expected one connection straight from the agent and one from sluice on the gateway, \
             the database saw {from_agent} and {from_gw}"
        );
    }
    let range = "SELECT c, pad FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY id";
    let direct = r.agent_mysql(direct_ip, range);
    let sluiced = r.agent_mysql(&r.lab.db_ip, range);
    if !direct.0 || !sluiced.0 {
        bail!(
            "a range select failed: direct {}{}, sluice {}{}",
            direct.1,
            direct.2,
            sluiced.1,
            sluiced.2
        );
    }
    let (d, s): (Vec<&str>, Vec<&str>) = (direct.1.lines().collect(), sluiced.1.lines().collect());
    let first_c = |rows: &[&str]| {
        rows.first()
            .and_then(|l| l.split('\t').next())
            .unwrap_or("")
            .to_owned()
    };
    Ok(Detectors {
        rows: d.len(),
        changed: d.iter().zip(&s).filter(|(a, b)| a != b).count() + d.len().abs_diff(s.len()),
        direct_c: first_c(&d),
        sluice_c: first_c(&s),
    })
}

/// sysbench's summary and latency histogram.
fn parse_sysbench(text: &str) -> anyhow::Result<Run> {
    // "    transactions:   12345  (1234.56 per sec.)"
    let counted = |key: &str| -> Option<(u64, f64)> {
        let rest = text
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(key))?;
        let count = rest.split_whitespace().next()?.parse().ok()?;
        let rate = rest
            .split_once('(')?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some((count, rate))
    };
    let value = |key: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(key))?
            .trim()
            .trim_end_matches('s')
            .parse()
            .ok()
    };
    let (transactions, tps) = counted("transactions:").context("no transactions line")?;
    let (queries, qps) = counted("queries:").context("no queries line")?;
    let (errors, _) = counted("ignored errors:").context("no ignored errors line")?;
    let mut histogram = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.contains("Latency histogram") {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((v, rest)) = line.split_once('|') else {
            if line.trim().is_empty() && !histogram.is_empty() {
                break;
            }
            continue;
        };
        let (Ok(ms), Some(Ok(n))) = (
            v.trim().parse::<f64>(),
            rest.split_whitespace().last().map(str::parse::<u64>),
        ) else {
            continue;
        };
        histogram.push((ms, n));
    }
    if histogram.is_empty() {
        bail!("no latency histogram");
    }
    Ok(Run {
        tps,
        qps,
        transactions,
        queries,
        errors,
        seconds: value("total time:").context("no total time")?,
        avg_ms: value("avg:").context("no average latency")?,
        p95_sysbench_ms: value("95th percentile:").context("no 95th percentile")?,
        p50_ms: hist_percentile(&histogram, 0.50),
        p95_ms: hist_percentile(&histogram, 0.95),
        p99_ms: hist_percentile(&histogram, 0.99),
        sluice_cpu_s: None,
        db_cpu_s: 0.0,
        busy_cores: 0.0,
        decisions: None,
    })
}

/// `perf report --no-children --sort dso,symbol --stdio -g none`: the
/// sample count, and the 12 hottest (share %, object, symbol).
fn parse_perf_report(text: &str) -> (String, Vec<(f64, String, String)>) {
    let samples = text
        .lines()
        .find_map(|l| l.strip_prefix("# Samples:"))
        .and_then(|s| s.split_whitespace().next())
        .map_or_else(|| "?".into(), |n| format!("{n} samples"));
    let top = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let share = words.next()?.strip_suffix('%')?.parse::<f64>().ok()?;
            let object = words.next()?.to_owned();
            // `[.] user_function` or `[k] kernel_function`; perf pads the
            // column and may add empty ones after it.
            let (kernel, symbol) = match l.split_once("[.] ") {
                Some((_, s)) => (false, s),
                None => (true, l.split_once("[k] ")?.1),
            };
            let symbol = symbol.trim_start().split("  ").next().unwrap_or("").trim();
            let symbol: String = if kernel { "[k] " } else { "" }
                .chars()
                .chain(symbol.chars().take(110))
                .collect();
            Some((share, object, symbol))
        })
        .take(12)
        .collect();
    (samples, top)
}

/// Nearest-rank percentile of a histogram of (value, count), values
/// ascending.
fn hist_percentile(histogram: &[(f64, u64)], p: f64) -> f64 {
    let total: u64 = histogram.iter().map(|&(_, n)| n).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for &(v, n) in histogram {
        seen += n;
        if seen >= rank {
            return v;
        }
    }
    histogram.last().map_or(0.0, |&(v, _)| v)
}

/// utime + stime of a process, in clock ticks (0 if it is gone).
fn proc_cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // After "pid (comm) ": state is field 3; utime and stime are 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    tick(11).unwrap_or(0) + tick(12).unwrap_or(0)
}

/// Busy ticks of the whole machine (all CPUs): everything but idle and
/// iowait, from /proc/stat.
fn machine_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    total.saturating_sub(v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0))
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

struct Meta<'a> {
    opts: &'a Options,
    load_start: String,
    load_end: String,
    mariadb: String,
    /// The audit store's size on disk after the runs.
    store_bytes: u64,
    detectors: Detectors,
}

fn find(points: &[Point], case: Case, route: Route) -> Option<&Point> {
    points.iter().find(|p| p.case == case && p.route == route)
}

/// sluice/direct TPS at the target's point, if measured.
fn target_ratio(points: &[Point]) -> Option<f64> {
    let case = Case {
        workload: Workload::ReadOnly,
        clients: TARGET_CLIENTS,
    };
    let s = find(points, case, Route::Sluice)?.median().tps;
    let d = find(points, case, Route::Direct)?.median().tps;
    Some(ratio(s, d))
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn command(opts: &Options) -> String {
    let clients: Vec<String> = opts.clients.iter().map(u32::to_string).collect();
    format!(
        "cargo xtask bench mysql{} --duration {} --clients {} --runs {}{}{}",
        if opts.quick { " --quick" } else { "" },
        opts.duration,
        clients.join(","),
        opts.runs,
        if opts.breakdown { " --breakdown" } else { "" },
        if opts.perf { " --perf" } else { "" }
    )
}

fn per(value: f64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        value / count as f64
    }
}

fn report(
    meta: &Meta<'_>,
    points: &[Point],
    breakdown: &[Point],
    profiles: &[Profile],
) -> anyhow::Result<()> {
    let opts = meta.opts;
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let sysbench = command_line(&["sysbench", "--version"]);
    let commit = command_line(&["git", "describe", "--always", "--dirty", "--abbrev=7"]);
    let ratio_8 = target_ratio(points);
    let mut md = String::new();
    writeln!(
        md,
        "# MySQL benchmark: sysbench through sluice (policy, masking, audit store) and directly\n"
    )?;
    writeln!(
        md,
        "`{}`, commit {commit}, {}; kernel {}, {} × {cpus} CPUs; MariaDB {}, {sysbench}. \
         Load average {} at the start, {} at the end (other jobs share this machine: compare routes \
         within one run, not runs with each other).\n",
        command(opts),
        command_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        kernel(),
        cpu_model(),
        meta.mariadb,
        meta.load_start,
        meta.load_end
    )?;
    writeln!(
        md,
        "- **Routes**, both from the agent namespace through the same gateway namespace: *direct* dials a \
         second address of the database host that is no protected target (plain forwarding); *sluice* dials \
         the protected address: tc steering plus sluice's MySQL engine (release build)."
    )?;
    let patterns: Vec<String> = DENY_PATTERNS.iter().map(|p| format!("`{p}`")).collect();
    let (decisions, sluice_tx) = points
        .iter()
        .chain(breakdown)
        .filter(|p| p.route.via_sluice())
        .flat_map(|p| &p.runs)
        .fold((0, 0), |(d, t), r| {
            (d + r.decisions.unwrap_or(0), t + r.transactions)
        });
    writeln!(
        md,
        "- **sluice full**: `default = \"allow\"`, a deny rule for unbounded writes, `deny_patterns` = {}, and \
         masking rules for `cards.pan` and `cards.holder`, so every statement is parsed (cached by statement shape) and \
         decided and every row passes the masking rewriter and its content detectors; the audit store records \
         every session and statement with `durability = \"sync\"` (a statement that changes something \
         reaches the database once its event is fsynced; one that changes nothing runs meanwhile and its \
         answer waits for the fsync; RocksDB on ext4, {:.1} MB after the runs). Nothing in the policy matches sysbench: \
         the sluice runs' sessions reported {decisions} policy decisions, none denied, over {sluice_tx} \
         transactions (per workload in the CPU table).",
        patterns.join(", "),
        meta.store_bytes as f64 / 1e6,
    )?;
    writeln!(
        md,
        "- **Workloads**: sysbench {TABLES} tables × {TABLE_SIZE} rows (`oltp_read_only prepare` as root over \
         the database's socket), run as the agent (`--mysql-ssl=off`). `oltp_read_only` is 16 statements per \
         transaction (BEGIN, 10 point selects, 4 range selects, COMMIT); `oltp_point_select` one. *prepared*: \
         sysbench's default server-side prepared statements (COM_STMT_EXECUTE, binary rows); *text*: \
         `--db-ps-mode=disable` (COM_QUERY, text rows)."
    )?;
    writeln!(
        md,
        "- **Runs**: {} s each; every point is the median by TPS of {} run(s), the two routes alternating run \
         by run; one unreported warm-up run per route first. Latency per transaction from the same run's \
         `--histogram` (p50, p95, p99; sysbench's own 95th percentile agrees within a bucket).\n",
        opts.duration, opts.runs
    )?;

    writeln!(md, "## Target (issue)\n")?;
    writeln!(md, "| target | measured | met |\n|---|---:|---|")?;
    writeln!(
        md,
        "| sluice TPS ≥ {TARGET_RATIO}× direct, oltp_read_only (prepared), {TARGET_CLIENTS} clients | {} | {} |\n",
        ratio_8.map_or("not measured".into(), |m| format!("{m:.2}×")),
        match ratio_8 {
            Some(m) if m >= TARGET_RATIO => "yes",
            Some(_) => "**no**",
            None => "—",
        }
    )?;
    let summary = summary(points, breakdown, profiles);
    if !summary.is_empty() {
        writeln!(md, "{summary}\n")?;
    }

    writeln!(md, "## Direct and sluice\n")?;
    writeln!(
        md,
        "Latencies in ms per transaction, direct / sluice. *TPS of each run* lists every run, direct | sluice.\n"
    )?;
    writeln!(
        md,
        "| workload | clients | direct tps | sluice tps | sluice/direct | direct qps | sluice qps | avg ms | p50 ms | p95 ms | p99 ms | TPS of each run |"
    )?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )?;
    for pair in points.chunks(2) {
        let [d, s] = pair else { continue };
        let (dm, sm) = (d.median(), s.median());
        let each = |p: &Point| {
            p.runs
                .iter()
                .map(|r| format!("{:.0}", r.tps))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.2}× | {:.0} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} \\| {} |",
            d.case.workload.label(),
            d.case.clients,
            dm.tps,
            sm.tps,
            ratio(sm.tps, dm.tps),
            dm.qps,
            sm.qps,
            dm.avg_ms,
            sm.avg_ms,
            dm.p50_ms,
            sm.p50_ms,
            dm.p95_ms,
            sm.p95_ms,
            dm.p99_ms,
            sm.p99_ms,
            each(d),
            each(s)
        )?;
    }

    writeln!(md, "\n## Where the time goes\n")?;
    writeln!(
        md,
        "CPU used during the median run, from /proc: the sluice process (all its threads), mariadbd, and the \
         whole machine (everything but idle and iowait, in cores of the {cpus}; the rest is sysbench, the \
         kernel's network path, and other jobs on the machine). Per transaction in µs of CPU; *statements/tx*: \
         policy decisions per transaction the sluice sessions reported.\n"
    )?;
    writeln!(
        md,
        "| workload | clients | route | tps | statements/tx | sluice cores | sluice µs/tx | sluice µs/statement | mariadbd cores | mariadbd µs/tx | machine busy cores |"
    )?;
    writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for p in points.iter().chain(breakdown) {
        let m = p.median();
        let (stmts, cores, per_tx, per_stmt) = match m.sluice_cpu_s {
            Some(c) => (
                format!(
                    "{:.2}",
                    per(m.decisions.unwrap_or(0) as f64, m.transactions)
                ),
                format!("{:.2}", c / m.seconds),
                format!("{:.0}", per(c * 1e6, m.transactions)),
                format!("{:.1}", per(c * 1e6, m.decisions.unwrap_or(0))),
            ),
            None => ("—".into(), "—".into(), "—".into(), "—".into()),
        };
        writeln!(
            md,
            "| {} | {} | {} | {:.0} | {stmts} | {cores} | {per_tx} | {per_stmt} | {:.2} | {:.0} | {:.2} |",
            p.case.workload.short(),
            p.case.clients,
            p.route.name(),
            m.tps,
            m.db_cpu_s / m.seconds,
            per(m.db_cpu_s * 1e6, m.transactions),
            m.busy_cores
        )?;
    }

    if !breakdown.is_empty() {
        writeln!(md, "\n## Breakdown: what recording costs\n")?;
        writeln!(
            md,
            "After the runs above, sluice restarted twice (policy and masking unchanged), each workload at \
             {TARGET_CLIENTS} clients measured again against direct, the routes alternating as above: with \
             `durability = \"batch\"` (an event is written to the store's log at once — a crash of sluice loses \
             nothing — and fsynced within `batch_window_ms` = 10; a power failure can lose that window), then \
             with `[store] enabled = false`. *sync* is sluice full above: a statement that changes something \
             reaches the database only once its event is fsynced; one that changes nothing (a plain SELECT, \
             BEGIN, COMMIT — all of sysbench's) runs meanwhile, its answer held until the event is on disk. \
             Each ratio is against the direct runs of its own phase. Latencies in ms per transaction.\n"
        )?;
        writeln!(
            md,
            "| workload | clients | sync tps | sync/direct | batch tps | batch/direct | store off tps | store off/direct | p50 ms direct / sync / batch / off | sluice cores sync / batch / off |"
        )?;
        writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        let cores = |r: &Run| r.sluice_cpu_s.map_or(0.0, |c| c / r.seconds);
        let phase = |route: Route, case: Case| {
            breakdown
                .chunks(2)
                .find(|pair| pair.len() == 2 && pair[1].route == route && pair[1].case == case)
                .map(|pair| (pair[0].median(), pair[1].median()))
        };
        for &case in breakdown
            .iter()
            .filter(|p| p.route == Route::SluiceNoStore)
            .map(|p| &p.case)
        {
            let sync = find(points, case, Route::Direct)
                .zip(find(points, case, Route::Sluice))
                .map(|(d, s)| (d.median(), s.median()));
            let cells = |m: Option<(&Run, &Run)>| match m {
                Some((d, s)) => (
                    format!("{:.0}", s.tps),
                    format!("{:.2}×", ratio(s.tps, d.tps)),
                ),
                None => ("—".into(), "—".into()),
            };
            let (batch, off) = (
                phase(Route::SluiceBatch, case),
                phase(Route::SluiceNoStore, case),
            );
            let (st, sr) = cells(sync);
            let (bt, br) = cells(batch);
            let (ot, or) = cells(off);
            let lat = |m: Option<(&Run, &Run)>| {
                m.map_or("—".into(), |(_, s)| format!("{:.2}", s.p50_ms))
            };
            let core = |m: Option<(&Run, &Run)>| {
                m.map_or("—".into(), |(_, s)| format!("{:.2}", cores(s)))
            };
            writeln!(
                md,
                "| {} | {} | {st} | {sr} | {bt} | {br} | {ot} | {or} | {} / {} / {} / {} | {} / {} / {} |",
                case.workload.label(),
                case.clients,
                sync.map_or("—".into(), |(d, _)| format!("{:.2}", d.p50_ms)),
                lat(sync),
                lat(batch),
                lat(off),
                core(sync),
                core(batch),
                core(off),
            )?;
        }
    }

    writeln!(md, "\n## sysbench's data and the content detectors\n")?;
    let det = &meta.detectors;
    writeln!(
        md,
        "`SELECT c, pad FROM sbtest1 WHERE id BETWEEN 1 AND 100` read directly and through sluice: {} of {} rows \
         came back changed through sluice. sysbench fills `c` with ten dash-separated groups of 11 digits; the \
         card-number detector judges a grouped run by its spans of whole groups holding 13–19 digits, and \
         groups of 11 hold none, so these values are scanned but not masked (before that rule, most were: \
         windows cutting through groups passed Luhn). First row's `c`, direct: `{}`; through sluice: `{}`.",
        det.changed, det.rows, det.direct_c, det.sluice_c
    )?;

    if !profiles.is_empty() {
        writeln!(
            md,
            "\n## Profile: where the sluice process spends its CPU\n"
        )?;
        writeln!(
            md,
            "One more run per workload and sluice route at {TARGET_CLIENTS} clients, not reported above, with \
             `perf record -F 499 -p <sluice>` for its {} s (no call graphs): the hottest functions by share of \
             the samples in the sluice process (kernel time spent on its behalf included).\n",
            opts.duration
        )?;
        for p in profiles {
            writeln!(
                md,
                "**{}, {}** ({} clients, {:.0} tps while sampled; {}):\n",
                p.case.workload.label(),
                p.route.name(),
                p.case.clients,
                p.tps,
                p.samples
            )?;
            writeln!(md, "| share | object | function |\n|---:|---|---|")?;
            for (share, object, symbol) in &p.top {
                writeln!(md, "| {share:.1}% | {object} | `{symbol}` |")?;
            }
            writeln!(md)?;
        }
    }

    let json = json(
        meta, points, breakdown, profiles, ratio_8, &sysbench, &commit,
    );
    writeln!(md, "\n## Chart\n\n{}", chart(points)?)?;
    println!("\n{md}");
    let data: serde_json::Value =
        serde_json::from_str(&json).context("the MySQL suite's own JSON does not parse")?;
    bench_report::write_suite("mysql", data, &md, &headlines(points, ratio_8))
}

/// TPS per workload and client count, direct beside sluice full.
fn chart(points: &[Point]) -> anyhow::Result<String> {
    let mut cases: Vec<Case> = Vec::new();
    for p in points {
        if !cases.contains(&p.case) {
            cases.push(p.case);
        }
    }
    let tps = |case: Case, route| find(points, case, route).map_or(0.0, |p| p.median().tps);
    BarChart {
        file: "mysql.png".into(),
        title: "sysbench against MariaDB 10.11: direct and sluice full, TPS".into(),
        y_label: "transactions / s".into(),
        groups: cases
            .iter()
            .map(|c| format!("{}, {} cl.", c.workload.short(), c.clients))
            .collect(),
        series: [Route::Direct, Route::Sluice]
            .into_iter()
            .map(|route| Series {
                name: if route == Route::Direct {
                    "direct"
                } else {
                    "sluice full"
                }
                .into(),
                values: cases.iter().map(|&c| tps(c, route)).collect(),
            })
            .collect(),
    }
    .draw()
}

/// The report's headlines: issue 7's target and each other workload's
/// ratio at [`TARGET_CLIENTS`].
fn headlines(points: &[Point], ratio_8: Option<f64>) -> Vec<Headline> {
    let mut out = Vec::new();
    if let Some(r) = ratio_8 {
        out.push(Headline::judged(
            format!(
                "sluice full / direct, sysbench oltp_read_only (prepared), {TARGET_CLIENTS} clients"
            ),
            format!("{r:.2}×"),
            "≥ 0.85× (issue 7)",
            r >= 0.85,
        ));
    }
    for workload in [Workload::PointSelect, Workload::ReadOnlyText] {
        let case = Case {
            workload,
            clients: TARGET_CLIENTS,
        };
        if let (Some(s), Some(d)) = (
            find(points, case, Route::Sluice),
            find(points, case, Route::Direct),
        ) {
            out.push(Headline::info(
                format!(
                    "sluice full / direct, sysbench {}, {TARGET_CLIENTS} clients",
                    workload.short()
                ),
                format!("{:.2}×", ratio(s.median().tps, d.median().tps)),
            ));
        }
    }
    out
}

/// What the breakdown and the profile say about the target's point, in
/// a sentence or two (empty without them).
fn summary(points: &[Point], breakdown: &[Point], profiles: &[Profile]) -> String {
    let case = Case {
        workload: Workload::ReadOnly,
        clients: TARGET_CLIENTS,
    };
    let tps = |set: &[Point], route| find(set, case, route).map(|p| p.median().tps);
    // The breakdown's points come in (direct, sluice) pairs, one phase each.
    let phase = |route: Route| {
        breakdown
            .chunks(2)
            .find(|pair| pair.len() == 2 && pair[1].route == route && pair[1].case == case)
            .map(|pair| ratio(pair[1].median().tps, pair[0].median().tps))
    };
    let mut out = String::new();
    if let (Some(d), Some(f)) = (tps(points, Route::Direct), tps(points, Route::Sluice)) {
        let _ = write!(
            out,
            "At the target's point sluice full did {f:.0} tps against {d:.0} direct ({:.2}×) with \
             `durability = \"sync\"`",
            ratio(f, d)
        );
        if let (Some(b), Some(o)) = (phase(Route::SluiceBatch), phase(Route::SluiceNoStore)) {
            let _ = write!(
                out,
                "; {b:.2}× with `durability = \"batch\"`, and {o:.2}× with the audit store off. Waiting for \
                 each statement's fsync costs the difference between the first two; what remains at {o:.2}× is \
                 the engine itself, on a machine whose 2 cores sysbench and MariaDB already keep busy"
            );
        }
        out.push('.');
    }
    let hottest = |route| {
        profiles
            .iter()
            .find(|p| p.case == case && p.route == route)
            .and_then(|p| p.top.first())
    };
    if let Some((share, _, symbol)) = hottest(Route::SluiceNoStore).or(hottest(Route::Sluice)) {
        let _ = write!(
            out,
            "{}The sluice process's hottest function there is `{symbol}`, {share:.0}% of its samples (see the \
             profile below).",
            if out.is_empty() { "" } else { " " }
        );
    }
    out
}

fn json(
    meta: &Meta<'_>,
    points: &[Point],
    breakdown: &[Point],
    profiles: &[Profile],
    ratio_8: Option<f64>,
    sysbench: &str,
    commit: &str,
) -> String {
    let opts = meta.opts;
    let num = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.4}"));
    let run_json = |r: &Run| {
        format!(
            "{{\"tps\": {:.2}, \"qps\": {:.2}, \"transactions\": {}, \"queries\": {}, \"seconds\": {:.3}, \
             \"latency_avg_ms\": {:.3}, \"latency_p50_ms\": {:.3}, \"latency_p95_ms\": {:.3}, \"latency_p99_ms\": {:.3}, \
             \"sysbench_p95_ms\": {:.3}, \"sluice_cpu_s\": {}, \"mariadbd_cpu_s\": {:.3}, \"machine_busy_cores\": {:.3}, \
             \"policy_decisions\": {}}}",
            r.tps,
            r.qps,
            r.transactions,
            r.queries,
            r.seconds,
            r.avg_ms,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.p95_sysbench_ms,
            num(r.sluice_cpu_s),
            r.db_cpu_s,
            r.busy_cores,
            r.decisions.map_or("null".into(), |d| d.to_string())
        )
    };
    let points: Vec<String> = points
        .iter()
        .map(|p| ("main", p))
        .chain(breakdown.iter().map(|p| ("breakdown", p)))
        .map(|(table, p)| {
            let runs: Vec<String> = p.runs.iter().map(&run_json).collect();
            format!(
                "    {{\"table\": \"{table}\", \"workload\": \"{}\", \"script\": \"{}\", \"db_ps_mode\": \"{}\", \"clients\": {}, \"route\": \"{}\", \
                 \"median\": {},\n     \"runs\": [{}]}}",
                p.case.workload.short(),
                p.case.workload.script(),
                p.case.workload.ps_mode(),
                p.case.clients,
                p.route.name(),
                run_json(p.median()),
                runs.join(", ")
            )
        })
        .collect();
    let patterns: Vec<String> = DENY_PATTERNS.iter().map(|p| json_str(p)).collect();
    let profiles: Vec<String> = profiles
        .iter()
        .map(|p| {
            let top: Vec<String> = p
                .top
                .iter()
                .map(|(share, object, symbol)| {
                    format!(
                        "{{\"share_pct\": {share:.2}, \"object\": {}, \"symbol\": {}}}",
                        json_str(object),
                        json_str(symbol)
                    )
                })
                .collect();
            format!(
                "\n    {{\"workload\": \"{}\", \"clients\": {}, \"route\": \"{}\", \"tps_while_sampled\": {:.1}, \
                 \"samples\": {},\n     \"top\": [{}]}}",
                p.case.workload.short(),
                p.case.clients,
                p.route.name(),
                p.tps,
                json_str(&p.samples),
                top.join(", ")
            )
        })
        .collect();
    let profiles = if profiles.is_empty() {
        String::new()
    } else {
        format!("{}\n  ", profiles.join(","))
    };
    format!(
        "{{\n  \"suite\": \"mysql\",\n  \"command\": {},\n  \"quick\": {},\n  \"duration_s\": {},\n  \"runs_per_point\": {},\n  \
         \"median_of\": \"runs, by tps\",\n  \"tables\": {TABLES},\n  \"table_size\": {TABLE_SIZE},\n  \
         \"latency_source\": \"sysbench --histogram of each run, per transaction\",\n  \
         \"machine\": {},\n  \
         \"versions\": {{\"mariadb\": {}, \"sysbench\": {}, \"commit\": {}}},\n  \
         \"loadavg_start\": {},\n  \"loadavg_end\": {},\n  \
         \"sluice\": {{\"policy_default\": \"allow\", \"deny_rule\": \"without_where\", \"deny_patterns\": [{}], \
         \"masking_columns\": [\"cards.pan\", \"cards.holder\"], \"audit_store\": true, \"durability\": \"sync\", \
         \"store_bytes_after\": {}}},\n  \
         \"target\": {{\"target\": \"sluice TPS >= {TARGET_RATIO}x direct, oltp_read_only prepared, {TARGET_CLIENTS} clients\", \
         \"measured\": {}, \"threshold\": {TARGET_RATIO}, \"met\": {}}},\n  \
         \"detectors_on_sysbench_rows\": {{\"rows\": {}, \"changed_through_sluice\": {}, \"first_c_direct\": {}, \"first_c_sluice\": {}}},\n  \
         \"points\": [\n{}\n  ],\n  \"profiles\": [{}]\n}}\n",
        json_str(&command(opts)),
        opts.quick,
        opts.duration,
        opts.runs,
        crate::bench_report::machine(),
        json_str(&meta.mariadb),
        json_str(sysbench),
        json_str(commit),
        json_str(&meta.load_start),
        json_str(&meta.load_end),
        patterns.join(", "),
        meta.store_bytes,
        num(ratio_8),
        ratio_8.map_or("null".into(), |m| (m >= TARGET_RATIO).to_string()),
        meta.detectors.rows,
        meta.detectors.changed,
        json_str(&meta.detectors.direct_c),
        json_str(&meta.detectors.sluice_c),
        points.join(",\n"),
        profiles
    )
}

#[cfg(test)]
mod tests {
    use super::{hist_percentile, parse_perf_report, parse_sysbench};

    const OUTPUT: &str = "sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)

Running the test with following options:
Number of threads: 8

Latency histogram (values are in milliseconds)
       value  ------------- distribution ------------- count
       1.013 |**                                       10
       2.001 |****************************************  80
       5.000 |**                                       10
 
SQL statistics:
    queries performed:
        read:                            14000
        write:                           0
        other:                           2000
        total:                           16000
    transactions:                        1000   (99.51 per sec.)
    queries:                             16000  (1592.16 per sec.)
    ignored errors:                      0      (0.00 per sec.)
    reconnects:                          0      (0.00 per sec.)

General statistics:
    total time:                          10.0478s
    total number of events:              1000

Latency (ms):
         min:                                    0.93
         avg:                                    2.30
         max:                                    7.45
         95th percentile:                        5.00
         sum:                                 2300.12
";

    #[test]
    fn reads_sysbench_output() {
        let r = parse_sysbench(OUTPUT).unwrap();
        assert_eq!((r.transactions, r.queries, r.errors), (1000, 16000, 0));
        assert!((r.tps - 99.51).abs() < 1e-9 && (r.qps - 1592.16).abs() < 1e-9);
        assert!((r.seconds - 10.0478).abs() < 1e-9);
        assert!((r.avg_ms - 2.30).abs() < 1e-9 && (r.p95_sysbench_ms - 5.0).abs() < 1e-9);
        assert_eq!((r.p50_ms, r.p95_ms, r.p99_ms), (2.001, 5.0, 5.0));
    }

    #[test]
    fn reads_perf_report() {
        let text = "# Samples: 1K of event 'cpu-clock:ppp'\n#\n\
            \x20   55.54%  sluice             [.] sluice_policy::detect::scan_cards               -      -\n\
            \x20   10.00%  [kernel.kallsyms]     [k] _raw_spin_unlock_irqrestore\n\
            \x20    0.44%  sluice  [.] <sluice_relay::policy::Masking as sluice_pgproxy::hooks::Rewriter>::data_row\n";
        let (samples, top) = parse_perf_report(text);
        assert_eq!(samples, "1K samples");
        let top: Vec<(f64, &str, &str)> = top
            .iter()
            .map(|(s, o, f)| (*s, o.as_str(), f.as_str()))
            .collect();
        assert_eq!(
            top,
            [
                (55.54, "sluice", "sluice_policy::detect::scan_cards"),
                (10.0, "[kernel.kallsyms]", "[k] _raw_spin_unlock_irqrestore"),
                (
                    0.44,
                    "sluice",
                    "<sluice_relay::policy::Masking as sluice_pgproxy::hooks::Rewriter>::data_row"
                ),
            ]
        );
    }

    #[test]
    fn histogram_percentiles() {
        let h = [(1.0, 50), (2.0, 49), (3.0, 1)];
        assert_eq!(hist_percentile(&h, 0.5), 1.0);
        assert_eq!(hist_percentile(&h, 0.51), 2.0);
        assert_eq!(hist_percentile(&h, 0.99), 2.0);
        assert_eq!(hist_percentile(&h, 1.0), 3.0);
        assert_eq!(hist_percentile(&[], 0.5), 0.0);
    }
}
