//! `cargo xtask bench scale`: many concurrent idle PostgreSQL sessions
//! through sluice — what each costs in sluice's memory, and what having
//! them all open does to the latency of the statements that follow.
//!
//! The lab: the agent host dials the database's protected address; tc
//! steers the flows into sluice on the gateway, whose PostgreSQL engine
//! dials one upstream connection per client. PostgreSQL itself cannot hold
//! 5,000 backends here (about 2 MB each, `max_connections = 200` in the
//! lab), so the database host runs Debian's pgbouncer (transaction pooling)
//! on the protected address's port 5432 in front of PostgreSQL, which is
//! moved to loopback. sluice's 5,000 upstream connections land on pgbouncer,
//! which serves them from 20 server connections — as a deployment with many
//! mostly idle agents would.
//!
//! Each round runs on a freshly started sluice (the allocator keeps what
//! earlier sessions freed, so rounds on one daemon are not independent):
//! 1,000 statements through sluice and 1,000 directly, in alternating
//! blocks (the baseline, nothing else open); then a Python asyncio client
//! (psycopg 3, the lab's venv) opens N sessions through sluice, 64
//! connecting at a time, each fully started up and SCRAM-authenticated, and
//! leaves them idle; sluice's RSS, file descriptors, threads and CPU time
//! are read from /proc once it settles; then the first 1,000 statements
//! after they are all open, through sluice and directly; then every idle
//! session runs one query (its PAN must come back masked, which only sluice
//! does) and all are closed. sluice's log and pgbouncer's `SHOW CLIENTS`
//! must both count exactly N sessions.
//!
//! "Direct" dials a second, unprotected address of the database host, where
//! the same pgbouncer listens: plain forwarding through the same gateway,
//! so sluice − direct is sluice's own cost.
use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use crate::{
    bench::percentile,
    bench_report::{self, BarChart, Headline, Series, median, ratio, write_suite},
    postgres, python, scenario,
};

const TAG: &str = "scale";
/// The gateway lab index no other suite or test uses.
const INDEX: u8 = 53;
/// Idle sessions held open by the full and the quick run.
const IDLE: usize = 5000;
const IDLE_QUICK: usize = 1000;
/// Rounds (open N, measure, close) of the full and the quick run; figures
/// are their medians.
const ROUNDS: usize = 3;
const ROUNDS_QUICK: usize = 1;
/// Statements per route and phase (pgbench, one client).
const STATEMENTS: u32 = 1000;
/// They run in this many blocks, alternating sluice and direct (sluice
/// first), each block on a fresh connection: a burst of load from other
/// jobs on the machine then hits both routes rather than one.
const BLOCKS: u32 = 5;
/// Sessions the client connects at once.
const OPEN_CONCURRENCY: usize = 64;
/// The file-descriptor limit given to sluice, pgbouncer and the client
/// (at most the hard limit this process may grant without
/// CAP_SYS_RESOURCE): sluice holds two sockets per session and does not
/// raise its own limit (the systemd unit sets `LimitNOFILE`).
const NOFILE: u64 = 65_536;
/// Longest time any phase of the client (open, check, close) may take.
const PHASE_LIMIT: Duration = Duration::from_secs(240);
/// pgbouncer's server connections to PostgreSQL.
const POOL_SIZE: u32 = 20;

/// The statement timed: a point select returning a card number, which
/// sluice masks.
const STATEMENT: &str = "SELECT id, holder, pan FROM cards WHERE id = 1;\n";
const RAW_PAN: &str = "4111111111111111";
const MASKED_PAN: &str = "411111******1111";

/// A deployment's policy: default deny, an allow rule for the agents, the
/// card number column masked. Every statement is parsed and decided, every
/// value passes the content detectors.
const POLICY: &str = "[policy]\ndefault = \"deny\"\n\n\
[[policy.rules]]\nname = \"agents\"\naction = \"allow\"\nclasses = [\"read\", \"write\", \"transaction\", \"utility\"]\n\n\
[[masking.columns]]\ntable = \"cards\"\ncolumn = \"pan\"\nformat = \"pci\"\n";
/// The store records every session; batch durability (fsync every 10 ms)
/// keeps the disk's fsync time out of the per-statement latency.
const STORE: &str = "durability = \"batch\"";

/// Run the suite: N = 5,000 idle sessions over 3 rounds, or 1,000 in one
/// round with `quick`.
pub fn run(quick: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let (idle, rounds) = if quick {
        (IDLE_QUICK, ROUNDS_QUICK)
    } else {
        (IDLE, ROUNDS)
    };
    let python = python::interpreter("bench scale").ok_or_else(|| {
        anyhow!(
            "the scale suite needs the lab's Python venv with psycopg 3: run `cargo xtask setup`"
        )
    })?;
    let load_start = bench_report::loadavg();
    println!(
        "scale: {idle} idle sessions through sluice, {rounds} round(s) on a freshly started sluice each, \
         {STATEMENTS} statements per route before and with them open"
    );

    let nofile = nofile_to_grant(idle)?;
    let sluice_max = idle + 1000;
    let mut r = scenario::start_custom(TAG, INDEX, |_| scenario::Custom {
        proxy: format!("max_connections = {sluice_max}"),
        sections: POLICY.into(),
        store: STORE.into(),
        ..scenario::Custom::default()
    });
    let lab = Lab::prepare(&mut r, idle, nofile)?;
    let sluice_nofile_before = nofile_limit(r.daemon.pid())?;
    println!(
        "sluice's open-file limit {sluice_nofile_before}, set to {nofile}; pgbouncer (transaction pooling, {POOL_SIZE} server connections) on {}:5432 and {}:5432",
        r.lab.db_ip, lab.direct_ip
    );

    // Correctness before anything is measured: sluice masks, direct does not.
    let pan_query = "SELECT pan FROM cards WHERE id = 1";
    let via_sluice = r.agent_psql(&r.lab.db_ip, pan_query);
    let via_direct = r.agent_psql(&lab.direct_ip, pan_query);
    if via_sluice.1 != MASKED_PAN || via_direct.1 != RAW_PAN {
        bail!(
            "routes are not what they should be: through sluice the PAN reads {:?} (want {MASKED_PAN}), directly {:?} (want {RAW_PAN}); {}{}",
            via_sluice.1,
            via_direct.1,
            via_sluice.2,
            via_direct.2
        );
    }

    let mut progress = Progress {
        step: 0,
        steps: rounds * 5,
    };
    let mut all = Vec::new();
    for round in 1..=rounds {
        let tag = format!("round {round}/{rounds}");
        // Each round starts from a freshly started sluice, so its memory
        // figures are independent of the rounds before (the allocator
        // keeps what earlier sessions freed).
        if round > 1 {
            let status = r.daemon.stop();
            if !status.success() {
                bail!("sluice exited with {status} on SIGTERM between rounds");
            }
            r.daemon.restart(None);
        }
        let sluice_pid = r.daemon.pid();
        raise_nofile(sluice_pid, nofile)?;
        // Not reported: the policy's statement cache and the connections
        // pgbouncer keeps to PostgreSQL warm up.
        for host in [&r.lab.db_ip, &lab.direct_ip] {
            lab.pgbench(&r, host, 200)?;
        }
        let (base_sluice, base_direct) = lab.latency(&r)?;
        progress.line(&format!(
            "{tag} nothing else open: sluice {}, direct {}",
            base_sluice.short(),
            base_direct.short()
        ));

        lab.quiesce(&r)?;
        let sluice_before = settled_stats(sluice_pid)?;
        let bouncer_before = proc_stats(lab.bouncer.pid())?;
        let mark = r.daemon.log_text().len();
        progress.line(&format!(
            "{tag} opening {idle} idle sessions through sluice, {OPEN_CONCURRENCY} at a time …"
        ));
        let mut client = IdleClient::spawn(&r, &python, idle, round, nofile)?;
        let opened = client.wait_ready()?;
        let sluice_open = settled_stats(sluice_pid)?;
        let bouncer_open = proc_stats(lab.bouncer.pid())?;
        let client_open = proc_stats(client.pid())?;
        // Every session went through sluice and is still open there; and
        // pgbouncer sees them all coming from the gateway.
        let counts = wait_sessions(&r, mark, |c| c.opened >= idle, Duration::from_secs(20));
        if counts.opened != idle || counts.ended() != 0 {
            bail!(
                "sluice logged {} sessions opened and {} ended since the client started, want {idle} open and none ended",
                counts.opened,
                counts.ended()
            );
        }
        let bouncer_clients = lab
            .bouncer
            .clients_from(&r, &lab.direct_ip, &r.lab.gw_db_ip)?;
        if bouncer_clients != idle {
            bail!(
                "pgbouncer sees {bouncer_clients} clients from the gateway ({}), want {idle}",
                r.lab.gw_db_ip
            );
        }
        progress.line(&format!(
            "{tag} {idle} open in {:.1} s ({:.0}/s); sluice RSS {} → {} ({:.1} KiB per session), {} fds, {} threads; \
             sluice logged {} sessions, pgbouncer counts {bouncer_clients} clients from the gateway",
            opened,
            per_second(idle, opened),
            mib(sluice_before.rss_kib),
            mib(sluice_open.rss_kib),
            per_conn(sluice_open.rss_kib, sluice_before.rss_kib, idle),
            sluice_open.fds,
            sluice_open.threads,
            counts.opened
        ));

        let (load_sluice, load_direct) = lab.latency(&r)?;
        progress.line(&format!(
            "{tag} {idle} idle open: sluice {}, direct {}",
            load_sluice.short(),
            load_direct.short()
        ));

        let (checked_ok, masked) = client.check()?;
        if checked_ok != idle || masked != idle {
            bail!(
                "of the {idle} idle sessions {checked_ok} answered and {masked} returned the PAN masked; want all"
            );
        }
        // Still open, each having run one query with a masked result.
        let sluice_used = settled_stats(sluice_pid)?;
        let closing = Instant::now();
        client.close()?;
        let closed_in = closing.elapsed().as_secs_f64();
        // The idle sessions plus the latency blocks through sluice.
        let want = idle + BLOCKS as usize;
        let counts = wait_sessions(&r, mark, |c| c.ended() >= want, Duration::from_secs(60));
        if counts.ended() < want {
            bail!(
                "after the client closed, sluice logged {} of {want} sessions ended",
                counts.ended()
            );
        }
        let sluice_closed = settled_stats(sluice_pid)?;
        let bouncer_closed = proc_stats(lab.bouncer.pid())?;
        progress.line(&format!(
            "{tag} all {idle} answered with the PAN masked (sluice RSS then {}); closed in {closed_in:.1} s; \
             sluice RSS after closing {}, {} fds; {} sessions ended with an error",
            mib(sluice_used.rss_kib),
            mib(sluice_closed.rss_kib),
            sluice_closed.fds,
            counts.errors
        ));
        all.push(Round {
            opened_s: opened,
            closed_s: closed_in,
            sluice_before,
            sluice_open,
            sluice_used,
            sluice_closed,
            bouncer_before,
            bouncer_open,
            bouncer_closed,
            client_open,
            sluice_sessions: counts.opened,
            session_errors: counts.errors,
            bouncer_clients,
            masked,
            latency: [base_sluice, base_direct, load_sluice, load_direct],
        });
    }
    let meta = Meta {
        quick,
        idle,
        rounds,
        sluice_nofile_before,
        nofile,
        sluice_max,
        direct_ip: lab.direct_ip.clone(),
        load_start,
        load_end: bench_report::loadavg(),
        seconds: started.elapsed().as_secs_f64(),
    };
    drop(lab);
    drop(r);
    report(&meta, &all)
}

/// `[3/15] …` progress lines.
struct Progress {
    step: usize,
    steps: usize,
}

impl Progress {
    fn line(&mut self, what: &str) {
        self.step += 1;
        eprintln!("  [{:>2}/{}] {what}", self.step, self.steps);
    }
}

/// What the suite adds to the gateway scenario: pgbouncer in front of
/// PostgreSQL on the database host, the direct address, the timed script.
struct Lab {
    bouncer: Bouncer,
    direct_ip: String,
    script: PathBuf,
    logs: PathBuf,
}

impl Lab {
    fn prepare(r: &mut scenario::GatewayRun, idle: usize, nofile: u64) -> anyhow::Result<Lab> {
        // PostgreSQL gives the protected address's port to pgbouncer.
        let conf = r.pg.dir.join("data/postgresql.conf");
        let mut text =
            fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
        text.push_str("listen_addresses = '127.0.0.1'\n");
        fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        r.pg.restart();
        let direct_ip = r.lab.add_db_address(3);
        // Many sockets from one address each way: a wider ephemeral range
        // than the default 28k, in the lab's namespaces only.
        for ns in [&r.lab.agent, &r.lab.gw] {
            ns.run(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"]);
        }
        let bouncer = Bouncer::start(r, &[&r.lab.db_ip, &direct_ip], idle, nofile)?;
        let script = r.scratch.path("statement.sql");
        fs::write(&script, STATEMENT).context("writing the pgbench script")?;
        Ok(Lab {
            bouncer,
            direct_ip,
            script,
            logs: r.scratch.path("pgbench-logs"),
        })
    }

    /// Run `count` statements on one fresh connection to `host`:5432 from
    /// the agent host (pgbench, one client, simple protocol); returns each
    /// statement's time in µs.
    fn pgbench(
        &self,
        r: &scenario::GatewayRun,
        host: &str,
        count: u32,
    ) -> anyhow::Result<Vec<u32>> {
        let _ = fs::remove_dir_all(&self.logs);
        fs::create_dir_all(&self.logs)
            .with_context(|| format!("creating {}", self.logs.display()))?;
        let prefix = format!("--log-prefix={}", self.logs.join("tx").display());
        let script = self
            .script
            .to_str()
            .ok_or_else(|| anyhow!("scratch path is not UTF-8"))?;
        let count_s = count.to_string();
        let argv = [
            "env",
            &format!("PGPASSWORD={}", postgres::PASSWORD),
            "PGSSLMODE=disable",
            "pgbench",
            "-n",
            "-c",
            "1",
            "-j",
            "1",
            "-t",
            &count_s,
            "-f",
            script,
            "--log",
            &prefix,
            "-h",
            host,
            "-p",
            "5432",
            "-U",
            postgres::USER,
            "postgres",
        ];
        let out = r.lab.agent.try_run(&argv, Duration::from_secs(120));
        if !out.status.success() {
            bail!(
                "pgbench to {host} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut times = Vec::new();
        for entry in
            fs::read_dir(&self.logs).with_context(|| format!("reading {}", self.logs.display()))?
        {
            let path = entry?.path();
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            // `client tx_no time script epoch us`; time in µs.
            times.extend(
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u32>().ok()),
            );
        }
        let _ = fs::remove_dir_all(&self.logs);
        if times.len() != count as usize {
            bail!(
                "pgbench to {host} logged {} of {count} statements",
                times.len()
            );
        }
        Ok(times)
    }

    /// [`STATEMENTS`] statements through sluice and as many directly, in
    /// [`BLOCKS`] alternating blocks: (sluice, direct).
    fn latency(&self, r: &scenario::GatewayRun) -> anyhow::Result<(Latency, Latency)> {
        let (mut sluice, mut direct) = (Vec::new(), Vec::new());
        for _ in 0..BLOCKS {
            sluice.extend(self.pgbench(r, &r.lab.db_ip, STATEMENTS / BLOCKS)?);
            direct.extend(self.pgbench(r, &self.direct_ip, STATEMENTS / BLOCKS)?);
        }
        sluice.sort_unstable();
        direct.sort_unstable();
        Ok((Latency::of(&sluice), Latency::of(&direct)))
    }

    /// Wait (bounded) until every session sluice logged as opened has also
    /// ended, so a log mark taken next sees only what follows.
    fn quiesce(&self, r: &scenario::GatewayRun) -> anyhow::Result<()> {
        let c = wait_sessions(r, 0, |c| c.ended() >= c.opened, Duration::from_secs(10));
        if c.ended() < c.opened {
            bail!(
                "sluice still has {} sessions open before the idle ones start",
                c.opened - c.ended()
            );
        }
        Ok(())
    }
}

/// Sessions sluice logged since a log offset.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SessionCounts {
    opened: usize,
    closed: usize,
    errors: usize,
}

impl SessionCounts {
    fn ended(self) -> usize {
        self.closed + self.errors
    }
}

fn session_counts(r: &scenario::GatewayRun, mark: usize) -> SessionCounts {
    let text = r.daemon.log_text();
    let new = text.get(mark..).unwrap_or("");
    SessionCounts {
        opened: new.matches("session opened").count(),
        closed: new.matches("session closed").count(),
        errors: new.matches("session ended with an error").count(),
    }
}

/// The session counts once `done` holds, or when `limit` has passed.
fn wait_sessions(
    r: &scenario::GatewayRun,
    mark: usize,
    done: impl Fn(SessionCounts) -> bool,
    limit: Duration,
) -> SessionCounts {
    let start = Instant::now();
    loop {
        let c = session_counts(r, mark);
        if done(c) || start.elapsed() > limit {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Debian's pgbouncer on the database host in transaction pooling mode:
/// the many client connections, few server connections. Stopped on drop.
struct Bouncer {
    child: Child,
}

impl Bouncer {
    fn start(
        r: &scenario::GatewayRun,
        listen: &[&str],
        idle: usize,
        nofile: u64,
    ) -> anyhow::Result<Bouncer> {
        let dir = r.scratch.path("pgbouncer");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The role's SCRAM verifier, as PostgreSQL stores it: pgbouncer then
        // checks clients without recomputing PBKDF2 for each, and logs in to
        // PostgreSQL with the client's proof.
        let verifier = r.pg.sql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
            postgres::USER
        ));
        if !verifier.starts_with("SCRAM-SHA-256$") {
            bail!("the agent role has no SCRAM verifier: {verifier:?}");
        }
        let users = dir.join("userlist.txt");
        fs::write(&users, format!("\"{}\" \"{verifier}\"\n", postgres::USER))
            .with_context(|| format!("writing {}", users.display()))?;
        let log = dir.join("pgbouncer.log");
        let ini = format!(
            "[databases]\npostgres = host=127.0.0.1 port=5432 dbname=postgres\n\n[pgbouncer]\n\
             listen_addr = {listen}\nlisten_port = 5432\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {users}\nadmin_users = {user}\n\
             pool_mode = transaction\nmax_client_conn = {max}\ndefault_pool_size = {POOL_SIZE}\n\
             log_connections = 0\nlog_disconnections = 0\nlogfile = {log}\n",
            listen = listen.join(","),
            users = users.display(),
            user = postgres::USER,
            max = idle + 500,
            log = log.display(),
        );
        let ini_path = dir.join("pgbouncer.ini");
        fs::write(&ini_path, ini).with_context(|| format!("writing {}", ini_path.display()))?;
        let dir_s = dir
            .to_str()
            .ok_or_else(|| anyhow!("scratch path is not UTF-8"))?;
        crate::netns::run(&["chown", "-R", "postgres:postgres", dir_s]);
        let nofile = format!("--nofile={nofile}:{nofile}");
        // pgbouncer refuses to run as root; its limit is raised first.
        let child = r
            .lab
            .db
            .command(&[
                "prlimit",
                &nofile,
                "--",
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
                "pgbouncer",
                "-q",
            ])
            .arg(&ini_path)
            .stdin(Stdio::null())
            .spawn()
            .context("starting pgbouncer")?;
        let bouncer = Bouncer { child };
        let up = crate::wait_for(Duration::from_secs(10), || {
            let out = r.lab.db.try_run(
                &[
                    "pg_isready",
                    "-q",
                    "-h",
                    listen[listen.len() - 1],
                    "-p",
                    "5432",
                ],
                Duration::from_secs(3),
            );
            out.status.success().then_some(())
        });
        if up.is_none() {
            bail!(
                "pgbouncer did not start on {}:5432: {}",
                listen.join(", "),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Ok(bouncer)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Client connections pgbouncer holds from `ip` (`SHOW CLIENTS` on its
    /// admin console, reached at `admin_host` from the database host).
    fn clients_from(
        &self,
        r: &scenario::GatewayRun,
        admin_host: &str,
        ip: &str,
    ) -> anyhow::Result<usize> {
        let info = format!(
            "host={admin_host} port=5432 user={} password={} dbname=pgbouncer sslmode=disable connect_timeout=5",
            postgres::USER,
            postgres::PASSWORD
        );
        let out = r.lab.db.try_run(
            &["psql", "-X", "-Atq", &info, "-c", "SHOW CLIENTS"],
            Duration::from_secs(30),
        );
        if !out.status.success() {
            bail!(
                "SHOW CLIENTS on pgbouncer failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let needle = format!("|{ip}|");
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&needle))
            .count())
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python client holding the idle sessions (`tests/python/
/// idle_connections.py`), driven line by line; killed on drop.
struct IdleClient {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl IdleClient {
    fn spawn(
        r: &scenario::GatewayRun,
        python: &Path,
        idle: usize,
        round: usize,
        nofile: u64,
    ) -> anyhow::Result<IdleClient> {
        let script = python::script("idle_connections.py");
        let conninfo = format!(
            "host={} port=5432 user={} password={} dbname=postgres sslmode=disable connect_timeout=30 application_name=sluice-scale",
            r.lab.db_ip,
            postgres::USER,
            postgres::PASSWORD
        );
        let stderr = r.scratch.path(&format!("idle-client-{round}.err"));
        let err_file =
            fs::File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?;
        let nofile = format!("--nofile={nofile}:{nofile}");
        let mut child = r
            .lab
            .agent
            .command(&["prlimit", &nofile, "--"])
            .arg(python)
            .arg(&script)
            .arg(&conninfo)
            .arg(idle.to_string())
            .arg(OPEN_CONCURRENCY.to_string())
            .arg(PHASE_LIMIT.as_secs().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn()
            .context("starting the idle-session client")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(IdleClient {
            child,
            stdin,
            lines,
            stderr,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines up to the first starting with one of `wanted`, which is
    /// returned; `error=` lines are collected and make it fail; progress
    /// lines are shown.
    fn expect(&mut self, wanted: &[&str]) -> anyhow::Result<String> {
        let deadline = Instant::now() + PHASE_LIMIT + Duration::from_secs(30);
        let mut errors = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "the idle-session client said nothing for {} s",
                        PHASE_LIMIT.as_secs() + 30
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                    "the idle-session client exited ({:?}){}: {}",
                    self.child.try_wait().ok().flatten(),
                    errors_text(&errors),
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            };
            if let Some(p) = line.strip_prefix("progress ") {
                eprintln!("         {p}");
            } else if let Some(e) = line.strip_prefix("error=") {
                errors.push(e.to_owned());
            } else if line.starts_with("failed ") {
                bail!(
                    "the idle-session client failed: {line}{}",
                    errors_text(&errors)
                );
            } else if wanted.iter().any(|w| line.starts_with(w)) {
                if !errors.is_empty() {
                    bail!(
                        "the idle-session client reported errors{}",
                        errors_text(&errors)
                    );
                }
                return Ok(line);
            }
        }
    }

    fn send(&mut self, command: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{command}").context("writing to the idle-session client")?;
        self.stdin
            .flush()
            .context("writing to the idle-session client")
    }

    /// Wait until every session is open; returns how long opening took (s).
    fn wait_ready(&mut self) -> anyhow::Result<f64> {
        let line = self.expect(&["ready "])?;
        field::<f64>(&line, "seconds").ok_or_else(|| anyhow!("no seconds in {line:?}"))
    }

    /// One query on every idle session: (answered, PAN masked).
    fn check(&mut self) -> anyhow::Result<(usize, usize)> {
        self.send("check")?;
        let line = self.expect(&["checked "])?;
        let count = |k| field::<usize>(&line, k).ok_or_else(|| anyhow!("no {k} in {line:?}"));
        Ok((count("ok")?, count("masked")?))
    }

    /// Close every session and wait (bounded) for the client to exit.
    fn close(&mut self) -> anyhow::Result<()> {
        self.send("close")?;
        self.expect(&["closed="])?;
        let exited = crate::wait_for(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        match exited {
            Some(s) if s.success() => Ok(()),
            Some(s) => bail!("the idle-session client exited with {s}"),
            None => bail!("the idle-session client did not exit within 30 s of closing"),
        }
    }
}

impl Drop for IdleClient {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn errors_text(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!("; errors: {}", errors.join("; "))
    }
}

/// The number after `key=` in a `k=v k=v` line.
fn field<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// A process's resident memory, open files and threads.
#[derive(Clone, Copy, Default)]
struct ProcStats {
    rss_kib: u64,
    fds: usize,
    threads: u64,
    /// User + system CPU time since the process started, ms.
    cpu_ms: f64,
}

impl ProcStats {
    fn to_json(self) -> Value {
        json!({"rss_kib": self.rss_kib, "fds": self.fds, "threads": self.threads, "cpu_ms": self.cpu_ms})
    }
}

/// Clock ticks per second, for /proc/<pid>/stat's CPU times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        bench_report::command_line(&["getconf", "CLK_TCK"])
            .parse()
            .unwrap_or(100.0)
    })
}

fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let value = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
    };
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("reading /proc/{pid}/fd"))?
        .count();
    // utime and stime: fields 14 and 15, counted after the `(comm)`.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after_comm
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    if ticks.len() != 2 {
        bail!("no CPU times in /proc/{pid}/stat");
    }
    Ok(ProcStats {
        rss_kib: value("VmRSS:")?,
        fds,
        threads: value("Threads:")?,
        cpu_ms: (ticks[0] + ticks[1]) * 1000.0 / clock_ticks(),
    })
}

/// [`proc_stats`] once RSS stops moving: sampled every 250 ms until two
/// samples in a row differ by under 64 KiB, for at most 5 s.
fn settled_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let start = Instant::now();
    let mut last = proc_stats(pid)?;
    let mut steady = 0;
    while start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(250));
        let now = proc_stats(pid)?;
        if now.rss_kib.abs_diff(last.rss_kib) < 64 {
            steady += 1;
            if steady >= 2 {
                return Ok(now);
            }
        } else {
            steady = 0;
        }
        last = now;
    }
    Ok(last)
}

/// The soft open-file limit of a process.
fn nofile_limit(pid: u32) -> anyhow::Result<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))
        .with_context(|| format!("reading /proc/{pid}/limits"))?;
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no open-file limit in /proc/{pid}/limits"))
}

/// The open-file limit to give sluice, pgbouncer and the client:
/// [`NOFILE`], or this process's hard limit if lower (raising past it needs
/// CAP_SYS_RESOURCE), which must leave room for two sockets per session.
fn nofile_to_grant(idle: usize) -> anyhow::Result<u64> {
    let limits = fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let hard = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().nth(1))
        .map_or(Ok(u64::MAX), |v| {
            if v == "unlimited" {
                Ok(u64::MAX)
            } else {
                v.parse()
            }
        })
        .context("parsing the open-file limit in /proc/self/limits")?;
    let grant = NOFILE.min(hard);
    let need = 2 * idle as u64 + 1024;
    if grant < need {
        bail!(
            "{idle} sessions need about {need} open files in sluice, but this process's hard limit is {hard}: \
             raise it (ulimit -Hn) or run with fewer sessions"
        );
    }
    Ok(grant)
}

/// Give the running daemon `nofile` open files (it keeps its inherited
/// limit; under systemd the unit's `LimitNOFILE` does this).
fn raise_nofile(pid: u32, nofile: u64) -> anyhow::Result<()> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "sluice" {
        bail!("pid {pid} is {:?}, not the sluice daemon", comm.trim());
    }
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={nofile}:{nofile}"),
        ])
        .output()
        .context("running prlimit")?;
    if !out.status.success() {
        bail!(
            "prlimit on sluice failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let now = nofile_limit(pid)?;
    if now < nofile {
        bail!("sluice's open-file limit is {now} after prlimit, want {nofile}");
    }
    Ok(())
}

/// One latency run's summary, µs.
#[derive(Clone, Copy)]
struct Latency {
    count: usize,
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Latency {
    /// From sorted statement times.
    fn of(sorted: &[u32]) -> Latency {
        let n = sorted.len();
        #[expect(clippy::cast_precision_loss, reason = "a thousand values")]
        let mean = sorted.iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64;
        Latency {
            count: n,
            p50: percentile(sorted, 0.50),
            p99: percentile(sorted, 0.99),
            max: sorted.last().copied().map_or(0.0, f64::from),
            mean,
        }
    }

    fn short(&self) -> String {
        format!(
            "p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            self.p50, self.p99, self.max
        )
    }

    fn to_json(self) -> Value {
        json!({"statements": self.count, "p50_us": self.p50, "p99_us": self.p99, "max_us": self.max, "mean_us": self.mean})
    }
}

/// The order of [`Round::latency`].
const LATENCY_RUNS: [(&str, &str); 4] = [
    ("sluice", "none open"),
    ("direct", "none open"),
    ("sluice", "idle open"),
    ("direct", "idle open"),
];

/// One round's measurements.
struct Round {
    opened_s: f64,
    closed_s: f64,
    sluice_before: ProcStats,
    /// All open, none has run a statement yet.
    sluice_open: ProcStats,
    /// All open, each has run one query.
    sluice_used: ProcStats,
    sluice_closed: ProcStats,
    bouncer_before: ProcStats,
    bouncer_open: ProcStats,
    bouncer_closed: ProcStats,
    /// The client once all are open (its CPU time is all of opening).
    client_open: ProcStats,
    sluice_sessions: usize,
    session_errors: usize,
    bouncer_clients: usize,
    masked: usize,
    /// In [`LATENCY_RUNS`] order.
    latency: [Latency; 4],
}

struct Meta {
    quick: bool,
    idle: usize,
    rounds: usize,
    sluice_nofile_before: u64,
    nofile: u64,
    sluice_max: usize,
    direct_ip: String,
    load_start: String,
    load_end: String,
    seconds: f64,
}

#[expect(clippy::cast_precision_loss, reason = "KiB and counts far below 2^52")]
fn per_conn(open_kib: u64, before_kib: u64, idle: usize) -> f64 {
    (open_kib as f64 - before_kib as f64) / idle.max(1) as f64
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[expect(clippy::cast_precision_loss, reason = "KiB far below 2^52")]
fn mib_f(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", mib_f(kib))
}

/// A median of KiB figures in MiB.
fn mib_of(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// The median over rounds of `f`.
fn med(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    median(&rounds.iter().map(f).collect::<Vec<_>>())
}

#[expect(clippy::cast_precision_loss, reason = "KiB and counts far below 2^52")]
fn report(meta: &Meta, rounds: &[Round]) -> anyhow::Result<()> {
    let n = meta.idle;
    let lat = |i: usize, f: fn(&Latency) -> f64| med(rounds, |r| f(&r.latency[i]));
    let p50 = |i| lat(i, |l| l.p50);
    let p99 = |i| lat(i, |l| l.p99);
    let max = |i| lat(i, |l| l.max);
    let (sb, db, sl, dl) = (0, 1, 2, 3);
    let rss_per_conn = med(rounds, |r| {
        per_conn(r.sluice_open.rss_kib, r.sluice_before.rss_kib, n)
    });
    let used_per_conn = med(rounds, |r| {
        per_conn(r.sluice_used.rss_kib, r.sluice_before.rss_kib, n)
    });
    let rss_before = med(rounds, |r| r.sluice_before.rss_kib as f64);
    // pgbouncer runs through all rounds: its memory is read from the
    // first, the only one that starts it fresh.
    let first = rounds.first().ok_or_else(|| anyhow!("no round ran"))?;
    let bouncer_per_conn = per_conn(first.bouncer_open.rss_kib, first.bouncer_before.rss_kib, n);
    let client_per_conn = med(rounds, |r| r.client_open.rss_kib as f64 / n as f64);
    let added_load = p50(sl) - p50(sb);
    let added_direct = p50(sl) - p50(dl);
    let open_s = med(rounds, |r| r.opened_s);
    let fds_open = med(rounds, |r| r.sluice_open.fds as f64);
    let fds_before = med(rounds, |r| r.sluice_before.fds as f64);
    let threads_open = med(rounds, |r| r.sluice_open.threads as f64);
    let threads_before = med(rounds, |r| r.sluice_before.threads as f64);

    let mut md = String::new();
    writeln!(md, "# Scale: {n} idle connections\n")?;
    writeln!(
        md,
        "`cargo xtask bench scale{}`: {n} PostgreSQL sessions held open and idle through sluice at once, {} round(s) \
         (open {n}, measure, close); figures are the median over rounds. Run took {:.0} s; load average {} at the \
         start, {} at the end. This machine's numbers: compare rows within this run.\n",
        if meta.quick { " --quick" } else { "" },
        meta.rounds,
        meta.seconds,
        meta.load_start,
        meta.load_end
    )?;
    writeln!(md, "How it was run:\n")?;
    writeln!(
        md,
        "- **Sessions**: a Python asyncio client (psycopg 3) on the agent host opens {n} sessions to the database's \
         protected address, {OPEN_CONCURRENCY} connecting at a time; tc steers each into sluice on the gateway, whose \
         PostgreSQL engine dials one upstream connection per session. Each session is fully started up and \
         SCRAM-authenticated (psycopg returns at ReadyForQuery), then left idle."
    )?;
    writeln!(
        md,
        "- **Database host**: PostgreSQL 15 cannot hold {n} backends in the lab (`max_connections = 200`), so Debian's \
         pgbouncer (transaction pooling, {POOL_SIZE} server connections, the role's SCRAM verifier in its auth file) \
         listens on the protected address's port 5432 in front of PostgreSQL (moved to loopback). Every route ends \
         at this pgbouncer."
    )?;
    writeln!(
        md,
        "- **Routes**: *sluice* = the protected address (tc steering + sluice's PostgreSQL engine); *direct* = a \
         second, unprotected address of the database host ({}), plain forwarding through the same gateway to the \
         same pgbouncer.",
        meta.direct_ip
    )?;
    writeln!(
        md,
        "- **sluice's config**: release build; a deployment's policy (default deny, an allow rule for read, write, \
         transaction and utility statements, `cards.pan` masked in PCI form), content detectors on every value; \
         the session store on with `durability = \"batch\"` (fsync every 10 ms, so the disk's fsync time stays out \
         of the statement latency); `[proxy] max_connections = {}`. sluice does not raise its own open-file limit \
         (the systemd unit sets `LimitNOFILE`); it inherited {} here and the suite set it to {} with \
         `prlimit` (pgbouncer and the client too).",
        meta.sluice_max, meta.sluice_nofile_before, meta.nofile
    )?;
    writeln!(
        md,
        "- **Latency**: {STATEMENTS} statements `{}` per route (pgbench, one client, simple protocol, per-statement \
         log in µs), in {BLOCKS} blocks of {} alternating sluice and direct, each block on a fresh connection, so a \
         burst of load from other jobs hits both routes: first with nothing else open, then — the first \
         {STATEMENTS} statements after all {n} are open — with them idle. *Added p50* = sluice with {n} open − sluice with none open; \
         sluice − direct is measured with {n} open.",
        STATEMENT.trim(),
        STATEMENTS / BLOCKS
    )?;
    writeln!(
        md,
        "- **Memory**: each round starts a fresh sluice (SIGTERM, start again, 200 warm-up statements per route), \
         so rounds are independent. `VmRSS` of sluice from /proc once it stops moving: before the round opens \
         anything, with {n} open and idle, again once each has run one query, and after all closed; *RSS per idle \
         session* = (with {n} open − before) / {n}. Kernel socket buffers are not in RSS. Open file descriptors, \
         threads and CPU time from /proc too."
    )?;
    let total_masked: usize = rounds.iter().map(|r| r.masked).sum();
    writeln!(
        md,
        "- **Checks**: in every round sluice's log counted {n} sessions opened and none ended while they were open; \
         pgbouncer's `SHOW CLIENTS` counted {n} clients from the gateway's address; and after the latency runs each \
         idle session ran `SELECT pan FROM cards WHERE id = 1` and got the PAN masked ({total_masked} of {} \
         answers) — only sluice masks. {} sessions ended with an error in sluice's log.\n",
        n * rounds.len(),
        rounds.iter().map(|r| r.session_errors).sum::<usize>()
    )?;

    writeln!(md, "## Headline\n")?;
    writeln!(md, "| figure | value |\n|---|---:|")?;
    writeln!(
        md,
        "| sluice RSS per idle session ({n} open) | {rss_per_conn:.1} KiB |"
    )?;
    writeln!(
        md,
        "| added p50, {n} idle sessions open (sluice: {n} open − none open) | {added_load:+.0} µs |"
    )?;
    writeln!(
        md,
        "| added p99, {n} idle sessions open | {:+.0} µs |",
        p99(sl) - p99(sb)
    )?;
    writeln!(
        md,
        "| sluice − direct p50, {n} open | {added_direct:+.0} µs |"
    )?;
    writeln!(
        md,
        "| sluice / direct p50, none open / {n} open | {:.2}× / {:.2}× |",
        ratio(p50(sb), p50(db)),
        ratio(p50(sl), p50(dl))
    )?;
    writeln!(
        md,
        "| opening {n} sessions through sluice ({OPEN_CONCURRENCY} at a time) | {open_s:.1} s ({:.0}/s) |\n",
        per_second(n, open_s)
    )?;

    let lat_chart = BarChart {
        file: "scale-latency.png".into(),
        title: format!("{STATEMENTS} point selects, one connection: none open vs {n} idle open"),
        y_label: "µs".into(),
        groups: vec!["p50".into(), "p99".into()],
        series: vec![
            Series {
                name: "direct, none open".into(),
                values: vec![p50(db), p99(db)],
            },
            Series {
                name: "sluice, none open".into(),
                values: vec![p50(sb), p99(sb)],
            },
            Series {
                name: format!("direct, {n} open"),
                values: vec![p50(dl), p99(dl)],
            },
            Series {
                name: format!("sluice, {n} open"),
                values: vec![p50(sl), p99(sl)],
            },
        ],
    }
    .draw()?;
    writeln!(md, "## Latency\n")?;
    writeln!(md, "{lat_chart}\n")?;
    writeln!(md, "Ratios to direct, same moment:\n")?;
    writeln!(
        md,
        "| | sluice / direct p50 | sluice / direct p99 | sluice − direct p50 |\n|---|---:|---:|---:|"
    )?;
    let idle_label = format!("{n} idle open");
    for (label, s, d) in [("none open", sb, db), (idle_label.as_str(), sl, dl)] {
        writeln!(
            md,
            "| {label} | {:.2}× | {:.2}× | {:+.0} µs |",
            ratio(p50(s), p50(d)),
            ratio(p99(s), p99(d)),
            p50(s) - p50(d)
        )?;
    }
    writeln!(md, "\nAbsolute, µs (this machine):\n")?;
    writeln!(
        md,
        "| route | open idle sessions | p50 | p99 | max |\n|---|---:|---:|---:|---:|"
    )?;
    for (i, (route, phase)) in LATENCY_RUNS.iter().enumerate() {
        let open = if *phase == "none open" { 0 } else { n };
        writeln!(
            md,
            "| {route} | {open} | {:.0} | {:.0} | {:.0} |",
            p50(i),
            p99(i),
            max(i)
        )?;
    }

    let mib_med = |f: fn(&Round) -> u64| med(rounds, |r| f(r) as f64) / 1024.0;
    let rss_chart = BarChart {
        file: "scale-rss.png".into(),
        title: format!("Resident memory with {n} sessions: idle, after one query each, closed"),
        y_label: "MiB".into(),
        groups: vec![
            "none open".into(),
            format!("{n} open, idle"),
            format!("{n} open, one query each"),
            "all closed".into(),
        ],
        series: vec![
            Series {
                name: "pgbouncer (database host)".into(),
                values: vec![
                    mib_f(first.bouncer_before.rss_kib),
                    mib_f(first.bouncer_open.rss_kib),
                    f64::NAN,
                    mib_f(first.bouncer_closed.rss_kib),
                ],
            },
            Series {
                name: "sluice".into(),
                values: vec![
                    mib_med(|r| r.sluice_before.rss_kib),
                    mib_med(|r| r.sluice_open.rss_kib),
                    mib_med(|r| r.sluice_used.rss_kib),
                    mib_med(|r| r.sluice_closed.rss_kib),
                ],
            },
        ],
    }
    .draw()?;
    writeln!(md, "\n## Memory and resources\n")?;
    writeln!(md, "{rss_chart}\n")?;
    writeln!(
        md,
        "pgbouncer holds the same {n} client connections (sluice's upstream ones) on the database host: the \
         well-known peer's cost per idle client, for scale (it was not sampled after the queries). It runs through \
         all rounds, so its memory is the first round's, when it started fresh. CPU time is what \
         each process spent while the {n} sessions were being opened (the client: all of its life until then).\n"
    )?;
    let cpu = |f: fn(&Round) -> f64| med(rounds, f) * 1000.0 / n as f64;
    writeln!(
        md,
        "| | per session | with {n} open | none open |\n|---|---:|---:|---:|"
    )?;
    writeln!(
        md,
        "| sluice RSS, idle (never queried) | {rss_per_conn:.1} KiB | {} | {} |",
        mib_of(med(rounds, |r| r.sluice_open.rss_kib as f64)),
        mib_of(rss_before)
    )?;
    writeln!(
        md,
        "| sluice RSS, each ran one query | {used_per_conn:.1} KiB | {} | {} |",
        mib_of(med(rounds, |r| r.sluice_used.rss_kib as f64)),
        mib_of(rss_before)
    )?;
    writeln!(
        md,
        "| sluice open files | {:.2} | {fds_open:.0} | {fds_before:.0} |",
        (fds_open - fds_before) / n as f64
    )?;
    writeln!(
        md,
        "| sluice threads | — | {threads_open:.0} | {threads_before:.0} |"
    )?;
    writeln!(
        md,
        "| sluice CPU to open | {:.0} µs | — | — |",
        cpu(|r| r.sluice_open.cpu_ms - r.sluice_before.cpu_ms)
    )?;
    writeln!(
        md,
        "| pgbouncer RSS | {bouncer_per_conn:.1} KiB | {} | {} |",
        mib(first.bouncer_open.rss_kib),
        mib(first.bouncer_before.rss_kib)
    )?;
    writeln!(
        md,
        "| pgbouncer CPU to open | {:.0} µs | — | — |",
        cpu(|r| r.bouncer_open.cpu_ms - r.bouncer_before.cpu_ms)
    )?;
    writeln!(
        md,
        "| client RSS (Python, psycopg 3; ÷ sessions, interpreter included) | {client_per_conn:.1} KiB | {} | — |",
        mib_of(med(rounds, |r| r.client_open.rss_kib as f64))
    )?;
    writeln!(
        md,
        "| client CPU to open | {:.0} µs | — | — |",
        cpu(|r| r.client_open.cpu_ms)
    )?;

    writeln!(md, "\nPer round (sluice):\n")?;
    writeln!(
        md,
        "| round | RSS before | RSS {n} open | RSS after one query each | RSS after closing | per idle session | open s | close s |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for (i, r) in rounds.iter().enumerate() {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.1} KiB | {:.1} | {:.1} |",
            i + 1,
            mib(r.sluice_before.rss_kib),
            mib(r.sluice_open.rss_kib),
            mib(r.sluice_used.rss_kib),
            mib(r.sluice_closed.rss_kib),
            per_conn(r.sluice_open.rss_kib, r.sluice_before.rss_kib, n),
            r.opened_s,
            r.closed_s
        )?;
    }
    writeln!(
        md,
        "\nsluice's RSS does not fall back when the sessions close: glibc's allocator keeps what they freed for \
         reuse rather than returning it to the system, and a later batch of sessions reuses most of it."
    )?;

    let data = json!({
        "quick": meta.quick,
        "idle_sessions": n,
        "rounds_run": meta.rounds,
        "statements_per_route_and_phase": STATEMENTS,
        "latency_blocks": BLOCKS,
        "statement": STATEMENT.trim(),
        "open_concurrency": OPEN_CONCURRENCY,
        "pgbouncer": {"pool_mode": "transaction", "default_pool_size": POOL_SIZE},
        "sluice_config": {
            "policy": POLICY,
            "store": STORE,
            "max_connections": meta.sluice_max,
            "nofile_inherited": meta.sluice_nofile_before,
            "nofile_set": meta.nofile,
        },
        "direct_address": meta.direct_ip,
        "loadavg_start": meta.load_start,
        "loadavg_end": meta.load_end,
        "seconds": meta.seconds,
        "medians": {
            "sluice_rss_per_idle_session_kib": rss_per_conn,
            "sluice_rss_per_session_after_one_query_kib": used_per_conn,
            "pgbouncer_rss_per_idle_client_kib": bouncer_per_conn,
            "client_rss_per_session_kib": client_per_conn,
            "added_p50_us_idle_open": added_load,
            "added_p99_us_idle_open": p99(sl) - p99(sb),
            "sluice_minus_direct_p50_us_idle_open": added_direct,
            "sluice_minus_direct_p50_us_none_open": p50(sb) - p50(db),
            "open_seconds": open_s,
        },
        "rounds": rounds.iter().map(|r| json!({
            "open_seconds": r.opened_s,
            "close_seconds": r.closed_s,
            "sluice_before": r.sluice_before.to_json(),
            "sluice_open": r.sluice_open.to_json(),
            "sluice_open_after_one_query_each": r.sluice_used.to_json(),
            "sluice_after_close": r.sluice_closed.to_json(),
            "pgbouncer_before": r.bouncer_before.to_json(),
            "pgbouncer_open": r.bouncer_open.to_json(),
            "pgbouncer_after_close": r.bouncer_closed.to_json(),
            "client_open": r.client_open.to_json(),
            "sluice_sessions_logged": r.sluice_sessions,
            "sluice_session_errors": r.session_errors,
            "pgbouncer_clients_from_gateway": r.bouncer_clients,
            "pan_masked_answers": r.masked,
            "latency": LATENCY_RUNS.iter().zip(r.latency).map(|((route, phase), l)| {
                let mut v = l.to_json();
                v["route"] = json!(route);
                v["idle_open"] = json!(if *phase == "none open" { 0 } else { n });
                v
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let headline = [
        Headline::info(
            format!("sluice RSS per idle session, {n} open"),
            format!("{rss_per_conn:.1} KiB"),
        ),
        Headline::info(
            format!("added p50 with {n} idle sessions open (sluice vs sluice with none)"),
            format!("{added_load:+.0} µs"),
        ),
        Headline::info(
            format!("sluice − direct p50 with {n} idle sessions open"),
            format!("{added_direct:+.0} µs"),
        ),
    ];
    println!("\n{md}");
    write_suite("scale", data, &md, &headline)
}
