//! `cargo xtask bench connect`: how many new connections per second reach
//! PostgreSQL directly, through sluice by the eBPF redirect (its tc program
//! and `bpf_sk_assign`), and through the same sluice by nftables TPROXY.
//!
//! Routes, all crossing the lab's gateway namespace:
//!
//! - **direct**: the agent host dials a second, unprotected address of the
//!   database host (plain forwarding, as the relay bench does).
//! - **eBPF redirect**: the agent host dials the protected address; the tc
//!   ingress program on the gateway's agent-facing interface assigns the
//!   SYN to sluice's `IP_TRANSPARENT` listener.
//! - **nftables TPROXY**: a second agent host, wired to the gateway exactly
//!   like the first (its own veth pair), dials the same protected address;
//!   its gateway interface has no tc program (it is not in
//!   `gateway.interfaces`), and an nftables prerouting rule on that
//!   interface TPROXYs the flow into the same listener, with a policy-
//!   routing mark and table of its own (not sluice's).
//!
//! Why a second agent host rather than a third address: sluice decides
//! which engine and policy a flow gets by matching its original destination
//! (address and port) against `[[targets]]`, and every target is written to
//! the tc program's steering map, so a TPROXY-only destination would have
//! to be a target that tc does not steer. An address that is not a target
//! would be relayed opaquely (no PostgreSQL engine), and a target on
//! another port is steered by tc like the first. Entering the gateway on an
//! interface without the tc program keeps the destination (and so the
//! target, engine, policy and store) identical to the eBPF route: only the
//! redirect differs.
//!
//! Two measures per route, the median of 3 runs each:
//!
//! - **full PostgreSQL connection setup**: `pgbench -n -C -f select1.sql -c
//!   4 -j 2`: every transaction is a new connection (TCP, startup, SCRAM
//!   authentication, `SELECT 1`, Terminate), so pgbench's tps is
//!   connections per second.
//! - **TCP + startup round trip**: 4 threads of this process, each moved
//!   into the client's namespace, connect, send a StartupMessage, read the
//!   first authentication request and close. sluice dials the database
//!   only once it has the StartupMessage, so this is the shortest exchange
//!   in which every route reaches PostgreSQL (whose postmaster forks a
//!   backend per connection); it leaves out SCRAM, which costs the client
//!   most of a full connect.
//!
//! Every run is checked against where its connections went: sluice's log
//! ("session opened", and for pgbench the statements its PostgreSQL engine
//! allowed, so the sessions were decided, not relayed opaquely) and its
//! eBPF counters (`gateway_steered_packets`), the nftables rule's SYN
//! counter, and PostgreSQL's `log_connections` (which client address each
//! connection came from). A route that did not go where it is named fails
//! the suite.
use std::{
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::{
    bench_report::{self, BarChart, Headline, Series, median, ratio},
    netns::Netns,
    postgres, scenario,
};

/// The lab's gateway index (no other suite or test uses it).
const INDEX: u8 = 52;
const TAG: &str = "connect";
const SUITE: &str = "connect";

/// The TPROXY rule's packet mark and policy-routing table: different from
/// sluice's own `gateway.intercept_mark` (0x5e1c0001) and `route_table`
/// (2571), so the two never meet.
const TPROXY_MARK: u32 = 0x7e57;
const TPROXY_TABLE: u32 = 2600;
/// sluice's transparent listener in the lab config (`gateway.listen_port`).
const LISTEN_PORT: u16 = 15432;

/// Concurrent clients on every route and measure.
const CLIENTS: usize = 4;

/// sluice's policy: what a deployment would have (default deny, an allow
/// rule for the agents, a sensitive column), so each session is decided as
/// in production.
const POLICY: &str = "[policy]\ndefault = \"deny\"\n\n\
[[policy.rules]]\nname = \"agents\"\naction = \"allow\"\nclasses = [\"read\", \"write\", \"transaction\", \"utility\"]\n\n\
[[policy.rules]]\nname = \"no unbounded writes\"\naction = \"deny\"\nwithout_where = true\n\n\
[[masking.columns]]\ntable = \"cards\"\ncolumn = \"pan\"\nformat = \"pci\"\n";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Direct,
    Ebpf,
    Tproxy,
}

const ROUTES: [Route; 3] = [Route::Direct, Route::Ebpf, Route::Tproxy];

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Ebpf => "eBPF redirect",
            Route::Tproxy => "nftables TPROXY",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Ebpf => "ebpf",
            Route::Tproxy => "tproxy",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Measure {
    /// pgbench -C: TCP + startup + SCRAM + SELECT 1 + Terminate.
    Pg,
    /// TCP + StartupMessage + the first authentication request + close.
    Tcp,
}

impl Measure {
    fn name(self) -> &'static str {
        match self {
            Measure::Pg => "full PostgreSQL connect (pgbench -C, SCRAM, SELECT 1)",
            Measure::Tcp => "TCP + startup round trip (no auth)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Measure::Pg => "pgbench -C",
            Measure::Tcp => "tcp+startup",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Measure::Pg => "pgbench_connect",
            Measure::Tcp => "tcp_startup",
        }
    }
}

/// Where each signal of "which way did the connections go" stood.
#[derive(Clone, Copy, Default, Debug)]
struct Probe {
    /// "session opened" lines in sluice's log.
    sessions: u64,
    /// Statements sluice's PostgreSQL engine allowed, summed over the
    /// sessions that ended ("postgres session ended … statements_allowed").
    statements: u64,
    /// sluice's `gateway_steered_packets` (tc program).
    steered: u64,
    /// The nftables TPROXY rule's SYN counter.
    nft_syns: u64,
    /// PostgreSQL connections from the first agent host's address (only
    /// the direct route leaves its source address unchanged).
    pg_from_agent: u64,
    /// PostgreSQL connections from the second agent host (the TPROXY one):
    /// must stay 0, or flows bypassed sluice.
    pg_from_agent2: u64,
    /// PostgreSQL connections from the gateway (sluice's upstream legs).
    pg_from_gateway: u64,
}

impl Probe {
    fn since(self, before: Probe) -> Probe {
        Probe {
            sessions: self.sessions.saturating_sub(before.sessions),
            statements: self.statements.saturating_sub(before.statements),
            steered: self.steered.saturating_sub(before.steered),
            nft_syns: self.nft_syns.saturating_sub(before.nft_syns),
            pg_from_agent: self.pg_from_agent.saturating_sub(before.pg_from_agent),
            pg_from_agent2: self.pg_from_agent2.saturating_sub(before.pg_from_agent2),
            pg_from_gateway: self.pg_from_gateway.saturating_sub(before.pg_from_gateway),
        }
    }

    fn add(&mut self, o: Probe) {
        self.sessions += o.sessions;
        self.statements += o.statements;
        self.steered += o.steered;
        self.nft_syns += o.nft_syns;
        self.pg_from_agent += o.pg_from_agent;
        self.pg_from_agent2 += o.pg_from_agent2;
        self.pg_from_gateway += o.pg_from_gateway;
    }

    fn to_json(self) -> Value {
        json!({
            "sluice_sessions_opened": self.sessions,
            "sluice_statements_allowed": self.statements,
            "gateway_steered_packets": self.steered,
            "nft_tproxy_syns": self.nft_syns,
            "postgres_connections_from_agent": self.pg_from_agent,
            "postgres_connections_from_agent2": self.pg_from_agent2,
            "postgres_connections_from_gateway": self.pg_from_gateway,
        })
    }
}

/// CPU time so far, in clock ticks, of the parties to a connection.
#[derive(Clone, Copy, Default, Debug)]
struct Cpu {
    /// This process's own threads (the TCP measure's clients).
    own: u64,
    /// This process's waited-for children (pgbench).
    children: u64,
    /// The postmaster and the backends it has reaped.
    postgres: u64,
    /// The sluice daemon.
    sluice: u64,
}

/// CPU per connection, milliseconds.
#[derive(Clone, Copy, Default, Debug)]
struct CpuPerConn {
    client: f64,
    postgres: f64,
    sluice: f64,
}

impl CpuPerConn {
    fn total(self) -> f64 {
        self.client + self.postgres + self.sluice
    }
}

/// utime, stime, cutime and cstime of `/proc/<pid>/stat`, in clock ticks.
fn stat_ticks(pid: &str) -> Option<[u64; 4]> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces) the state is the first
    // field; utime, stime, cutime, cstime the 12th to 15th.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some([n(11)?, n(12)?, n(13)?, n(14)?])
}

/// One measured run.
struct Sample {
    measure: Measure,
    route: Route,
    run: usize,
    /// Connections per second.
    rate: f64,
    /// Connections completed.
    connections: u64,
    /// Connections that failed (TCP measure; pgbench fails the run).
    errors: u64,
    seconds: f64,
    /// pgbench's "average connection time", ms.
    connect_ms: Option<f64>,
    seen: Probe,
    cpu: CpuPerConn,
}

impl Sample {
    fn to_json(&self) -> Value {
        json!({
            "measure": self.measure.key(),
            "route": self.route.key(),
            "run": self.run,
            "connections_per_s": self.rate,
            "connections": self.connections,
            "errors": self.errors,
            "seconds": self.seconds,
            "pgbench_average_connection_time_ms": self.connect_ms,
            "cpu_ms_per_connection": {
                "client": self.cpu.client,
                "postgres": self.cpu.postgres,
                "sluice": self.cpu.sluice,
            },
            "seen": self.seen.to_json(),
        })
    }
}

/// What to run.
struct Plan {
    runs: usize,
    pg_seconds: u32,
    tcp_seconds: u32,
}

/// The lab with both agent hosts and the TPROXY rule.
struct Bench<'a> {
    r: &'a scenario::GatewayRun,
    agent2: &'a crate::topology::AgentHost,
    direct_ip: String,
    gw_agent2_if: String,
    script: String,
    /// The postmaster's pid (from postmaster.pid) and sluice's.
    postmaster: String,
    sluice: String,
    /// Clock ticks per second of /proc's CPU times.
    clk_tck: f64,
}

/// Run the suite: 5 s pgbench and 3 s TCP runs, 3 of each per route; with
/// `quick` 3 s and 2 s, one each.
#[expect(clippy::too_many_lines, reason = "the suite's steps, top to bottom")]
pub fn run(quick: bool) -> anyhow::Result<()> {
    let plan = if quick {
        Plan {
            runs: 1,
            pg_seconds: 3,
            tcp_seconds: 2,
        }
    } else {
        Plan {
            runs: 3,
            pg_seconds: 5,
            tcp_seconds: 3,
        }
    };
    let started = Instant::now();
    let load_start = bench_report::loadavg();
    let r = scenario::start_custom(TAG, INDEX, |_| scenario::Custom {
        sections: POLICY.to_owned(),
        store: "durability = \"sync\"".into(),
        ..scenario::Custom::default()
    });
    ensure!(
        r.daemon.log_text().contains(crate::daemon::READY),
        "sluice did not start:\n{}",
        r.daemon.log_text()
    );
    let cfg = fs::read_to_string(&r.daemon.config).context("reading the lab config")?;
    ensure!(
        cfg.contains(&format!("listen_port = {LISTEN_PORT}")),
        "the lab config's gateway.listen_port is not {LISTEN_PORT}:\n{cfg}"
    );

    // The direct route's unprotected address on the database host.
    let direct_ip = r.lab.add_db_address(3);

    // The TPROXY route's client: a second agent host whose gateway
    // interface sluice does not list, so no tc program sees its packets.
    let agent2 = r.lab.add_agent(TAG, INDEX);
    let nft = format!(
        "table ip sluicebench {{\n  chain pre {{\n    type filter hook prerouting priority mangle; policy accept;\n    \
         iifname \"{ifc}\" ip daddr {db} tcp dport 5432 tcp flags & (syn | ack) == syn counter\n    \
         iifname \"{ifc}\" ip daddr {db} tcp dport 5432 tproxy to :{LISTEN_PORT} meta mark set {TPROXY_MARK:#x} accept\n  }}\n}}\n",
        ifc = agent2.gw_if,
        db = r.lab.db_ip,
    );
    let nft_path = r.scratch.path("tproxy.nft");
    fs::write(&nft_path, &nft).context("writing the nftables rules")?;
    let path = nft_path.to_str().context("a UTF-8 scratch path")?;
    checked(&r.lab.gw, &["nft", "-f", path])?;
    let mark = format!("{TPROXY_MARK:#x}");
    let table = TPROXY_TABLE.to_string();
    checked(
        &r.lab.gw,
        &["ip", "rule", "add", "fwmark", &mark, "lookup", &table],
    )?;
    checked(
        &r.lab.gw,
        &[
            "ip",
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            &table,
        ],
    )?;
    // Tens of thousands of short connections per route: reuse TIME_WAIT
    // ports for new connects and widen the port range (lab namespaces only).
    for ns in [&r.lab.agent, &agent2.ns, &r.lab.gw] {
        checked(ns, &["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])?;
        checked(
            ns,
            &["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"],
        )?;
    }

    let script = r.scratch.path("select1.sql");
    fs::write(&script, "SELECT 1;\n").context("writing the pgbench script")?;
    let pidfile = r.pg.dir.join("data").join("postmaster.pid");
    let postmaster = fs::read_to_string(&pidfile)
        .with_context(|| format!("reading {}", pidfile.display()))?
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let b = Bench {
        r: &r,
        agent2: &agent2,
        direct_ip,
        gw_agent2_if: agent2.gw_if.clone(),
        script: script.to_str().context("a UTF-8 scratch path")?.to_owned(),
        postmaster,
        sluice: r.daemon.pid().to_string(),
        clk_tck: bench_report::command_line(&["getconf", "CLK_TCK"])
            .parse()
            .unwrap_or(100.0),
    };
    b.cpu()?;

    println!(
        "routes: direct ({} → {}), eBPF redirect ({} → {}), nftables TPROXY ({} → {} via {}); {} run(s) of \
         {} s pgbench and {} s TCP per route",
        r.lab.agent_ip,
        b.direct_ip,
        r.lab.agent_ip,
        r.lab.db_ip,
        agent2.ip,
        r.lab.db_ip,
        b.gw_agent2_if,
        plan.runs,
        plan.pg_seconds,
        plan.tcp_seconds
    );
    eprintln!("  warming up (1 s pgbench per route, checked, not reported) …");
    for route in ROUTES {
        let before = b.probe()?;
        let out = b.pgbench(route, 1)?;
        let seen = b.settle(before, out.connections, true)?;
        check(route, out.connections, true, &seen)?;
    }

    let total = plan.runs * ROUTES.len() * 2;
    let mut samples = Vec::new();
    for measure in [Measure::Pg, Measure::Tcp] {
        for run in 1..=plan.runs {
            // The order rotates from run to run, so no route always goes
            // first (or right after another's connection churn).
            let mut order = ROUTES;
            order.rotate_left((run - 1) % ROUTES.len());
            for route in order {
                eprint!(
                    "  [{:>2}/{total}] {:<11} {:<16} run {run} … ",
                    samples.len() + 1,
                    measure.short(),
                    route.name()
                );
                let before = b.probe()?;
                let cpu0 = b.cpu()?;
                let sample = match measure {
                    Measure::Pg => {
                        let out = b.pgbench(route, plan.pg_seconds)?;
                        let client = b.cpu()?.children.saturating_sub(cpu0.children);
                        let seen = b.settle(before, out.connections, true)?;
                        Sample {
                            measure,
                            route,
                            run,
                            rate: out.tps,
                            connections: out.connections,
                            errors: 0,
                            seconds: f64::from(plan.pg_seconds),
                            connect_ms: out.connect_ms,
                            seen,
                            cpu: b.per_conn(client, cpu0, out.connections)?,
                        }
                    }
                    Measure::Tcp => {
                        let (ns, host) = b.endpoint(route);
                        let out = tcp_startup(ns, host, f64::from(plan.tcp_seconds))?;
                        let client = b.cpu()?.own.saturating_sub(cpu0.own);
                        let seen = b.settle(before, out.ok, false)?;
                        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
                        let rate = if out.seconds > 0.0 {
                            out.ok as f64 / out.seconds
                        } else {
                            0.0
                        };
                        Sample {
                            measure,
                            route,
                            run,
                            rate,
                            connections: out.ok,
                            errors: out.errors,
                            seconds: out.seconds,
                            connect_ms: None,
                            seen,
                            cpu: b.per_conn(client, cpu0, out.ok)?,
                        }
                    }
                };
                eprintln!(
                    "{:>7.0} conn/s  CPU/conn client {:.2} + PostgreSQL {:.2} + sluice {:.2} ms  ({} connections{}; sluice sessions +{}, statements +{}, tc-steered packets +{}, TPROXY SYNs +{})",
                    sample.rate,
                    sample.cpu.client,
                    sample.cpu.postgres,
                    sample.cpu.sluice,
                    sample.connections,
                    if sample.errors > 0 {
                        format!(", {} failed", sample.errors)
                    } else {
                        String::new()
                    },
                    sample.seen.sessions,
                    sample.seen.statements,
                    sample.seen.steered,
                    sample.seen.nft_syns
                );
                check(
                    route,
                    sample.connections,
                    measure == Measure::Pg,
                    &sample.seen,
                )?;
                ensure!(
                    sample.errors * 100 <= sample.connections,
                    "{} via {}: {} of {} connections failed",
                    measure.short(),
                    route.name(),
                    sample.errors,
                    sample.connections + sample.errors
                );
                samples.push(sample);
            }
        }
    }
    let nft_final =
        checked(&r.lab.gw, &["nft", "list", "table", "ip", "sluicebench"]).unwrap_or_default();
    drop(agent2);
    drop(r);
    println!("  done in {:.0} s", started.elapsed().as_secs_f64());
    report(
        &plan,
        &samples,
        &nft,
        &nft_final,
        &load_start,
        started.elapsed().as_secs_f64(),
    )
}

/// What one pgbench invocation reported.
struct PgOut {
    tps: f64,
    connections: u64,
    connect_ms: Option<f64>,
}

impl Bench<'_> {
    fn endpoint(&self, route: Route) -> (&Netns, &str) {
        match route {
            Route::Direct => (&self.r.lab.agent, &self.direct_ip),
            Route::Ebpf => (&self.r.lab.agent, &self.r.lab.db_ip),
            Route::Tproxy => (&self.agent2.ns, &self.r.lab.db_ip),
        }
    }

    /// `pgbench -n -C -f select1.sql` for `seconds` on `route`.
    fn pgbench(&self, route: Route, seconds: u32) -> anyhow::Result<PgOut> {
        let (ns, host) = self.endpoint(route);
        let (c, t) = (CLIENTS.to_string(), seconds.to_string());
        let out = ns.try_run(
            &[
                "env",
                "PGPASSWORD=agent-secret",
                "PGSSLMODE=disable",
                "pgbench",
                "-n",
                "-C",
                "-f",
                &self.script,
                "-h",
                host,
                "-p",
                "5432",
                "-U",
                postgres::USER,
                "-c",
                &c,
                "-j",
                "2",
                "-T",
                &t,
                "postgres",
            ],
            Duration::from_secs(u64::from(seconds) + 60),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "pgbench -C via {} failed ({}): {text}{}",
                route.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let field = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.split(['/', ' ']).find(|s| !s.is_empty()))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let tps =
            field("tps = ").with_context(|| format!("no tps in pgbench's output:\n{text}"))?;
        let processed = field("number of transactions actually processed: ")
            .with_context(|| format!("no transaction count in pgbench's output:\n{text}"))?;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a count"
        )]
        let connections = processed as u64;
        ensure!(
            connections > 0,
            "pgbench via {} made no connection:\n{text}",
            route.name()
        );
        Ok(PgOut {
            tps,
            connections,
            connect_ms: field("average connection time = "),
        })
    }

    /// CPU time so far of this process, its children, PostgreSQL and sluice.
    fn cpu(&self) -> anyhow::Result<Cpu> {
        let me = stat_ticks("self").context("this process's CPU time")?;
        let pg = stat_ticks(&self.postmaster).context("the postmaster's CPU time")?;
        let sl = stat_ticks(&self.sluice).context("sluice's CPU time")?;
        Ok(Cpu {
            own: me[0] + me[1],
            children: me[2] + me[3],
            postgres: pg.iter().sum(),
            sluice: sl[0] + sl[1],
        })
    }

    /// CPU per connection since `before`: `client_ticks` as measured right
    /// after the run; PostgreSQL and sluice now (after [`Bench::settle`],
    /// so the postmaster has reaped the run's backends).
    fn per_conn(
        &self,
        client_ticks: u64,
        before: Cpu,
        connections: u64,
    ) -> anyhow::Result<CpuPerConn> {
        let now = self.cpu()?;
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let ms = |ticks: u64| {
            if connections == 0 {
                0.0
            } else {
                ticks as f64 * 1000.0 / self.clk_tck / connections as f64
            }
        };
        Ok(CpuPerConn {
            client: ms(client_ticks),
            postgres: ms(now.postgres.saturating_sub(before.postgres)),
            sluice: ms(now.sluice.saturating_sub(before.sluice)),
        })
    }

    /// Where every route signal stands now.
    fn probe(&self) -> anyhow::Result<Probe> {
        let log = self.r.daemon.log_text();
        let pg = self.r.pg.log_text();
        let from = |ip: &str| {
            let needle = format!("host={ip} ");
            pg.lines()
                .filter(|l| l.contains("connection received") && l.contains(&needle))
                .count() as u64
        };
        let statements = log
            .lines()
            .filter(|l| l.contains("postgres session ended"))
            .map(|l| crate::bench::log_field(l, "statements_allowed="))
            .sum();
        Ok(Probe {
            sessions: log.matches("session opened").count() as u64,
            statements,
            steered: self.steered()?,
            nft_syns: self.nft_syns()?,
            pg_from_agent: from(&self.r.lab.agent_ip),
            pg_from_agent2: from(&self.agent2.ip),
            pg_from_gateway: from(&self.r.lab.gw_db_ip),
        })
    }

    /// The signals since `before`, once they stop moving (sluice logs a
    /// session as it opens and its statement count as it ends, PostgreSQL a
    /// connection as it arrives: the log writes may trail the client a
    /// little). `queries`: each connection ran a statement. Waits at most
    /// 3 s.
    fn settle(&self, before: Probe, connections: u64, queries: bool) -> anyhow::Result<Probe> {
        let mut last = self.probe()?.since(before);
        for _ in 0..30 {
            let enough = (last.sessions >= connections
                && (!queries || last.statements >= connections))
                || last.pg_from_agent >= connections;
            thread::sleep(Duration::from_millis(100));
            let now = self.probe()?.since(before);
            if enough
                && now.sessions == last.sessions
                && now.statements == last.statements
                && now.pg_from_agent == last.pg_from_agent
            {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// sluice's `gateway_steered_packets`, from `sluice status`.
    fn steered(&self) -> anyhow::Result<u64> {
        let config = self
            .r
            .daemon
            .config
            .to_str()
            .context("a UTF-8 config path")?;
        let out = self.r.daemon.cli(&["status", "--config", config]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("gateway_steered_packets"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no gateway_steered_packets in `sluice status`:\n{text}"))
    }

    /// The TPROXY rule's SYN counter.
    fn nft_syns(&self) -> anyhow::Result<u64> {
        let text = checked(
            &self.r.lab.gw,
            &["nft", "list", "chain", "ip", "sluicebench", "pre"],
        )?;
        text.lines()
            .find(|l| l.contains("tcp flags") && l.contains("counter packets"))
            .and_then(|l| l.split_once("counter packets "))
            .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no SYN counter in the nftables chain:\n{text}"))
    }
}

/// Fail unless `route`'s connections went the way it is named; with
/// `queries` (pgbench) each of them also ran a statement, which on the
/// sluice routes its PostgreSQL engine must have decided.
fn check(route: Route, connections: u64, queries: bool, seen: &Probe) -> anyhow::Result<()> {
    let why = match route {
        Route::Direct => {
            if seen.sessions > 0 || seen.steered > 0 || seen.nft_syns > 0 {
                Some("sluice (or its redirect) saw direct connections")
            } else if seen.pg_from_agent < connections {
                Some("PostgreSQL did not see every connection come straight from the agent host")
            } else {
                None
            }
        }
        Route::Ebpf => {
            if seen.nft_syns > 0 {
                Some("the TPROXY rule matched eBPF-route connections")
            } else if seen.steered < connections {
                Some("the tc program steered fewer packets than there were connections")
            } else if seen.sessions < connections {
                Some("sluice opened fewer sessions than there were connections")
            } else if queries && seen.statements < connections {
                Some(
                    "sluice's PostgreSQL engine allowed fewer statements than there were connections",
                )
            } else if seen.pg_from_agent > 0 || seen.pg_from_gateway < connections {
                Some("PostgreSQL did not see every connection come from the gateway (sluice)")
            } else {
                None
            }
        }
        Route::Tproxy => {
            if seen.steered > 0 {
                Some("the tc program steered TPROXY-route packets")
            } else if seen.nft_syns < connections {
                Some("the TPROXY rule saw fewer SYNs than there were connections")
            } else if seen.sessions < connections {
                Some("sluice opened fewer sessions than there were connections")
            } else if queries && seen.statements < connections {
                Some(
                    "sluice's PostgreSQL engine allowed fewer statements than there were connections",
                )
            } else if seen.pg_from_agent2 > 0 || seen.pg_from_gateway < connections {
                Some("some connections reached PostgreSQL without passing sluice")
            } else {
                None
            }
        }
    };
    match why {
        Some(why) => bail!(
            "{} route: {why} ({connections} connections; seen {seen:?})",
            route.name()
        ),
        None => Ok(()),
    }
}

/// Run in `ns`, require success, return stdout.
fn checked(ns: &Netns, argv: &[&str]) -> anyhow::Result<String> {
    let out = ns.try_run(argv, Duration::from_secs(20));
    if !out.status.success() {
        bail!(
            "in {}: {argv:?} failed ({}): {}",
            ns.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the TCP measure did.
struct TcpOut {
    ok: u64,
    errors: u64,
    seconds: f64,
}

/// [`CLIENTS`] threads, each in `ns`, connecting to `host`:5432 until
/// `seconds` pass: send a StartupMessage, read the whole first reply (an
/// authentication request, `R`), close. A thread gives up after 100
/// failures.
fn tcp_startup(ns: &Netns, host: &str, seconds: f64) -> anyhow::Result<TcpOut> {
    let addr: SocketAddr = format!("{host}:5432")
        .parse()
        .context("the route's address")?;
    let body = format!(
        "user\0{}\0database\0postgres\0application_name\0sluice-bench\0\0",
        postgres::USER
    );
    let mut startup = Vec::new();
    let len = u32::try_from(8 + body.len()).context("startup length")?;
    startup.extend_from_slice(&len.to_be_bytes());
    startup.extend_from_slice(&196_608_u32.to_be_bytes());
    startup.extend_from_slice(body.as_bytes());
    let ns_path = ns.path();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (ns_path, startup) = (ns_path.clone(), startup.clone());
            // Each client thread runs its loop on a thread of its own that
            // has joined the client's namespace (`setns` is per thread).
            thread::spawn(move || {
                crate::packets::in_netns(&ns_path, || {
                    let (mut ok, mut errors) = (0u64, 0u64);
                    while Instant::now() < deadline && errors < 100 {
                        match startup_round_trip(addr, &startup) {
                            Ok(()) => ok += 1,
                            Err(_) => errors += 1,
                        }
                    }
                    (ok, errors)
                })
            })
        })
        .collect();
    let (mut ok, mut errors) = (0, 0);
    for h in handles {
        let (o, e) = h.join().map_err(|_| {
            anyhow::anyhow!("a TCP client thread panicked (could it enter {ns_path}?)")
        })?;
        ok += o;
        errors += e;
    }
    Ok(TcpOut {
        ok,
        errors,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Connect, send the StartupMessage, read the first reply message whole
/// (so closing sends FIN, not RST) and check it is an authentication
/// request.
fn startup_round_trip(addr: SocketAddr, startup: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_nodelay(true)?;
    s.write_all(startup)?;
    let mut buf = [0u8; 256];
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the first reply"));
        }
        have += n;
        if have >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf[0] != b'R' {
                return Err(std::io::Error::other(
                    "the first reply is not an authentication request",
                ));
            }
            if have > len || have == buf.len() {
                return Ok(());
            }
        }
    }
}

fn report(
    plan: &Plan,
    samples: &[Sample],
    nft: &str,
    nft_final: &str,
    load_start: &str,
    elapsed_s: f64,
) -> anyhow::Result<()> {
    let of = |m: Measure, r: Route| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.measure == m && s.route == r)
            .collect()
    };
    let med = |m: Measure, r: Route| median(&of(m, r).iter().map(|s| s.rate).collect::<Vec<_>>());
    let measures = [Measure::Pg, Measure::Tcp];

    let chart = BarChart {
        file: "connect-rate.png".into(),
        title: "New connections per second by route (higher is better)".into(),
        y_label: "connections/s".into(),
        groups: measures.iter().map(|m| m.short().to_owned()).collect(),
        series: ROUTES
            .iter()
            .map(|&r| Series {
                name: r.name().into(),
                values: measures.iter().map(|&m| med(m, r)).collect(),
            })
            .collect(),
    }
    .draw()?;

    let mut md = String::new();
    writeln!(
        md,
        "# Connection setup: eBPF redirect, nftables TPROXY, direct\n"
    )?;
    writeln!(
        md,
        "Command: `sluice-lab bench connect{}` ({} run{} per route and measure, the median reported; pgbench runs \
         of {} s, TCP runs of {} s; {CLIENTS} concurrent clients; the routes' order rotates from run to run; this run took {:.0} s).\n",
        if plan.runs == 1 { " --quick" } else { "" },
        plan.runs,
        if plan.runs == 1 { "" } else { "s" },
        plan.pg_seconds,
        plan.tcp_seconds,
        elapsed_s
    )?;
    writeln!(
        md,
        "- **direct**: the agent host dials a second, unprotected address of the database host (plain forwarding \
         through the gateway).\n\
         - **eBPF redirect**: the agent host dials the protected address; sluice's tc ingress program assigns each \
         new flow to its `IP_TRANSPARENT` listener (`bpf_sk_assign`) and marks its packets for local delivery.\n\
         - **nftables TPROXY**: a second agent host, wired to the gateway like the first, dials the same protected \
         address; its gateway interface carries no tc program (it is not in `gateway.interfaces`) and this \
         nftables rule set TPROXYs it into the same listener, with `ip rule add fwmark {TPROXY_MARK:#x} lookup \
         {TPROXY_TABLE}` and `ip route add local 0.0.0.0/0 dev lo table {TPROXY_TABLE}` (sluice's own mark and \
         table are 0x5e1c0001 and 2571):\n\n```\n{}```\n",
        nft
    )?;
    writeln!(
        md,
        "Why a second agent host and not a third address: sluice picks a flow's engine and policy by matching its \
         original destination (address and port) against `[[targets]]`, and every target goes into the tc \
         program's steering map. A destination that is not a target is relayed opaquely (no PostgreSQL engine); \
         one that is a target is steered by tc on the agent interface before netfilter sees it, whatever its \
         port. Entering on an interface without the tc program keeps the destination, target, engine, policy and \
         audit store identical to the eBPF route, so only the redirect differs.\n"
    )?;
    writeln!(
        md,
        "sluice (release build) runs the production-like configuration: policy default deny with an allow rule \
         for reads and writes, a masked column, content detectors, and the audit store on with `durability = \
         \"sync\"` (a session's statement waits for its event's fsync, group-committed).\n"
    )?;
    writeln!(
        md,
        "Measures:\n\n\
         - **{}**: `pgbench -n -C -f select1.sql -c {CLIENTS} -j 2 -T <s>` where select1.sql is `SELECT 1;`. \
         Each transaction opens a new connection (TCP, StartupMessage, SCRAM-SHA-256, `SELECT 1`, Terminate), \
         so pgbench's tps is connections per second.\n\
         - **{}**: {CLIENTS} threads of the bench, each moved into the client's namespace (`setns`), loop: \
         connect, send a StartupMessage, read PostgreSQL's first authentication request, close. sluice dials the \
         database when the StartupMessage arrives, so every route reaches PostgreSQL (whose postmaster forks a \
         backend per connection); SCRAM, most of a full connect's client CPU, is left out.\n",
        Measure::Pg.name(),
        Measure::Tcp.name()
    )?;
    writeln!(
        md,
        "Every run is checked against where its connections went (the suite fails otherwise): direct — no \
         sluice session, no tc-steered packet, no TPROXY SYN, and PostgreSQL saw each connection come from the \
         agent host; eBPF — tc-steered packets and sluice sessions at least the connection count, no TPROXY SYN, \
         and PostgreSQL saw them come from the gateway; TPROXY — the nftables rule's SYN counter and sluice \
         sessions at least the connection count, no tc-steered packet, and no connection reached PostgreSQL from \
         the second agent host directly. For pgbench, sluice's PostgreSQL engine must also have allowed at least \
         one statement per connection (the `SELECT 1`s were decided by its policy, not relayed opaquely). Each \
         pgbench invocation also makes one untimed connection of its own first, so sessions run one above the \
         count per run; sluice logs each TCP-measure session as ended by the client during startup, as it was.\n"
    )?;

    writeln!(md, "## Ratios\n")?;
    writeln!(
        md,
        "| measure | eBPF redirect / direct | TPROXY / direct | TPROXY / eBPF redirect |\n|---|---:|---:|---:|"
    )?;
    for m in measures {
        let (d, e, t) = (
            med(m, Route::Direct),
            med(m, Route::Ebpf),
            med(m, Route::Tproxy),
        );
        writeln!(
            md,
            "| {} | {:.2}× | {:.2}× | {:.2}× |",
            m.name(),
            ratio(e, d),
            ratio(t, d),
            ratio(t, e)
        )?;
    }
    writeln!(md, "\n{chart}\n")?;

    writeln!(md, "## Connections per second (this machine's)\n")?;
    writeln!(
        md,
        "| measure | route | median conn/s | runs | pgbench average connection time |\n|---|---|---:|---|---:|"
    )?;
    for m in measures {
        for route in ROUTES {
            let runs = of(m, route);
            let each: Vec<String> = runs.iter().map(|s| format!("{:.0}", s.rate)).collect();
            let connect_ms = median(&runs.iter().filter_map(|s| s.connect_ms).collect::<Vec<_>>());
            writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} |",
                m.short(),
                route.name(),
                med(m, route),
                each.join(", "),
                if m == Measure::Pg {
                    format!("{connect_ms:.2} ms")
                } else {
                    "—".into()
                }
            )?;
        }
    }
    writeln!(
        md,
        "\npgbench's average connection time is per connection and per client, measured by pgbench itself.\n"
    )?;

    writeln!(md, "## CPU per connection (this machine's)\n")?;
    writeln!(
        md,
        "User + system CPU time over each run from `/proc/<pid>/stat`, divided by its connections (median of the \
         runs), in ms: the client (pgbench and its children, or the bench's own threads for the TCP measure), \
         PostgreSQL (the postmaster and the backends it reaped) and sluice. Unlike the rates, these barely depend on \
         what else the machine is doing, so they show where a connection's cost lies. The kernel's packet \
         processing (softirq: forwarding, the tc program, nftables, the gateway's TCP handshake) is charged to no \
         process and is not in them, so they cannot tell the two redirects apart; the rates do.\n"
    )?;
    writeln!(
        md,
        "| measure | route | client | PostgreSQL | sluice | total | total / direct's |\n|---|---|---:|---:|---:|---:|---:|"
    )?;
    let cpu_med = |m: Measure, r: Route, f: fn(&CpuPerConn) -> f64| {
        median(&of(m, r).iter().map(|s| f(&s.cpu)).collect::<Vec<_>>())
    };
    for m in measures {
        let direct_total = cpu_med(m, Route::Direct, |c| c.total());
        for route in ROUTES {
            let total = cpu_med(m, route, |c| c.total());
            writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {total:.2} | {:.2}× |",
                m.short(),
                route.name(),
                cpu_med(m, route, |c| c.client),
                cpu_med(m, route, |c| c.postgres),
                cpu_med(m, route, |c| c.sluice),
                ratio(total, direct_total)
            )?;
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let direct_total = cpu_med(Measure::Pg, Route::Direct, |c| c.total());
    #[expect(clippy::cast_precision_loss, reason = "a handful of CPUs")]
    let cap = ratio(cpus as f64 * 1000.0, direct_total);
    writeln!(
        md,
        "\nWith {cpus} CPUs and {direct_total:.1} ms of CPU per direct full connection (client, PostgreSQL and \
         the kernel's share on top), this machine cannot make more than about {cap:.0} full connections per second \
         on any route: pgbench -C is CPU-bound here, so sluice's CPU per connection shows up in its rates, and so \
         does any other load on the machine (load average below).\n"
    )?;

    writeln!(md, "## Where the connections went (all measured runs)\n")?;
    writeln!(
        md,
        "| route | connections | sluice sessions opened | statements sluice allowed | tc-steered packets | TPROXY rule SYNs | PostgreSQL: from agent host | from gateway (sluice) | from 2nd agent host |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for route in ROUTES {
        let mut seen = Probe::default();
        let mut conns = 0;
        for s in samples.iter().filter(|s| s.route == route) {
            seen.add(s.seen);
            conns += s.connections;
        }
        writeln!(
            md,
            "| {} | {conns} | {} | {} | {} | {} | {} | {} | {} |",
            route.name(),
            seen.sessions,
            seen.statements,
            seen.steered,
            seen.nft_syns,
            seen.pg_from_agent,
            seen.pg_from_gateway,
            seen.pg_from_agent2
        )?;
    }
    writeln!(
        md,
        "\nLoad average at the start: {load_start}; at the end: {}.",
        bench_report::loadavg()
    )?;

    let pg = |r: Route| med(Measure::Pg, r);
    let headline = [
        Headline::info(
            "eBPF redirect / direct, connections/s (pgbench -C)",
            format!("{:.2}×", ratio(pg(Route::Ebpf), pg(Route::Direct))),
        ),
        Headline::info(
            "TPROXY / direct, connections/s (pgbench -C)",
            format!("{:.2}×", ratio(pg(Route::Tproxy), pg(Route::Direct))),
        ),
        Headline::info(
            "sluice CPU per full connection (eBPF redirect)",
            format!(
                "{:.2} ms ({:+.0}% of direct's client + PostgreSQL CPU)",
                cpu_med(Measure::Pg, Route::Ebpf, |c| c.sluice),
                ratio(
                    cpu_med(Measure::Pg, Route::Ebpf, |c| c.sluice),
                    direct_total
                ) * 100.0
            ),
        ),
    ];
    let mut medians = serde_json::Map::new();
    for m in measures {
        let mut per = serde_json::Map::new();
        for route in ROUTES {
            per.insert(route.key().into(), json!(med(m, route)));
        }
        medians.insert(m.key().into(), Value::Object(per));
    }
    let data = json!({
        "runs_per_route": plan.runs,
        "pgbench_seconds": plan.pg_seconds,
        "tcp_seconds": plan.tcp_seconds,
        "clients": CLIENTS,
        "measures": {
            "pgbench_connect": "pgbench -n -C -f select1.sql (SELECT 1;) -c 4 -j 2: TCP + startup + SCRAM + SELECT 1 + Terminate per transaction",
            "tcp_startup": "4 threads: connect, StartupMessage, read the first authentication request, close",
        },
        "routes": {
            "direct": "agent host → unprotected second address of the database host, plain forwarding",
            "ebpf": "agent host → protected address, tc ingress + bpf_sk_assign into sluice's IP_TRANSPARENT listener",
            "tproxy": "second agent host (gateway interface without tc) → protected address, nftables tproxy into the same listener",
        },
        "nftables": nft,
        "nftables_at_end": nft_final,
        "tproxy_mark": TPROXY_MARK,
        "tproxy_table": TPROXY_TABLE,
        "sluice_config": "policy default deny + allow rule, masking cards.pan pci, detectors default, store on (durability sync)",
        "median_connections_per_s": Value::Object(medians),
        "samples": samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
        "loadavg_start": load_start,
        "loadavg_end": bench_report::loadavg(),
        "elapsed_s": elapsed_s,
    });
    println!("\n{md}");
    bench_report::write_suite(SUITE, data, &md, &headline)
}
