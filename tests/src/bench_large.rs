//! `cargo xtask bench large`: one large result holding card numbers, read in
//! full by psql on the agent host, directly and through sluice "full";
//! wall time per read, and sluice's resident memory while it streams the
//! result.
//!
//! The table (`big`, generated server-side with `generate_series`) has one
//! row per id: a holder name, a Luhn-valid 16-digit Visa-style PAN built in
//! SQL (`4`, the id zero-padded to 14 digits, the Luhn check digit: every
//! row's PAN is distinct), a 3-digit CVV, an email, and a free-text memo
//! that repeats the PAN (`card <pan> on file`). sluice "full" is the
//! production-like configuration: default-deny policy with an allow rule
//! for reads (and a deny rule for unbounded writes), `big.pan` declared
//! sensitive with the `pci` mask, the content detectors (always on: PAN and
//! track data; CVV by column name, on by default; email, SSN and IBAN off,
//! their defaults) and the audit store on with `durability = "sync"`. So
//! the declared column is masked by the SQL analysis, the memo's PAN and
//! the CVV by the detectors, on every one of the result's values.
//!
//! Both routes cross the same gateway namespace: "direct" dials a second,
//! unprotected address of the database host (plain forwarding, as the relay
//! bench does); "sluice" dials the protected address (tc steering into the
//! proxy). The client is unmodified psql (`-X -At -o /dev/null -c "SELECT *
//! FROM big"`): psql (libpq) buffers the whole result in its own memory
//! before printing it, which is client-side and the same on both routes.
//! Plain SELECT rather than COPY, which a policy may refuse.
//!
//! Memory: a thread reads `/proc/<sluice>/status` every 20 ms during each
//! read (VmRSS), and VmHWM is reset before each read (`clear_refs`) so that
//! afterwards it is the read's exact peak; the report shows how much
//! sluice's resident set grew while the result went through it, next to the
//! result's size: a streaming proxy grows by a bounded amount, not by the
//! result. The same sampling runs during the direct reads as a control.
//! psql drains its socket as fast as it can, so a last read through sluice
//! comes from a minimal client in this process (protocol 3.0, a lab-only
//! role with trust authentication) that takes bytes off its socket at
//! [`SLOW_RATE`]: the result backs up, and sluice must apply TCP
//! backpressure to the database instead of holding rows.
//!
//! Correctness, checked before timing (and failing the suite otherwise):
//! one untimed read per route, streamed into this process, counts clear
//! (Luhn-valid 13-19 digit) PANs and `pci`-masked ones. Direct must show
//! every PAN clear (which also proves the SQL built Luhn-valid numbers);
//! sluice must show none clear and every one masked.
use std::{
    fmt::Write as _,
    io::{self, BufRead as _, BufReader, Read, Write as _},
    net::{SocketAddr, TcpStream},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::{
    bench_report::{self, BarChart, Headline, Series, median, ratio},
    postgres, scenario,
};

/// The lab's gateway index (no other suite or test uses it).
const INDEX: u8 = 51;
const TAG: &str = "large";
const SUITE: &str = "large";

/// The query every read runs.
const QUERY: &str = "SELECT * FROM big";

/// The role the slow reader logs in as, with trust authentication (a line
/// put first in pg_hba.conf, lab only) so that a few lines of Rust can
/// speak the protocol without SCRAM.
const SLOW_USER: &str = "benchslow";
/// How fast the slow reader takes bytes off its socket: well below what
/// psql and sluice manage, so the result backs up towards the database.
const SLOW_RATE: f64 = 20.0 * 1024.0 * 1024.0;

/// The policy sluice "full" runs with: what a deployment would have.
const POLICY: &str = "[policy]\ndefault = \"deny\"\n\n\
[[policy.rules]]\nname = \"agents\"\naction = \"allow\"\nclasses = [\"read\", \"write\", \"transaction\", \"utility\"]\n\n\
[[policy.rules]]\nname = \"no unbounded writes\"\naction = \"deny\"\nwithout_where = true\n\n\
[[masking.columns]]\ntable = \"big\"\ncolumn = \"pan\"\nformat = \"pci\"\n";

/// Completes a digit string with its Luhn check digit: the payload's
/// rightmost digit is doubled, and so on every second digit leftwards.
const LUHN_FN: &str = "CREATE FUNCTION luhn_complete(body text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ \
SELECT body || ((10 - sum(CASE WHEN k % 2 = 0 THEN (d * 2) % 10 + (d * 2) / 10 ELSE d END) % 10) % 10)::text \
FROM (SELECT k, substr(body, length(body) - k, 1)::int AS d FROM generate_series(0, length(body) - 1) AS k) AS digits $$";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Sluice,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Sluice => "sluice full",
        }
    }
}

/// What the run's sizes are.
struct Plan {
    rows: u64,
    runs: usize,
}

/// One timed read.
struct Run {
    route: Route,
    run: usize,
    wall_s: f64,
    /// sluice's VmRSS just before the read, KiB.
    rss_before_kib: u64,
    /// The largest VmRSS seen during the read, KiB.
    rss_peak_kib: u64,
    rss_after_kib: u64,
    hwm_before_kib: u64,
    hwm_after_kib: u64,
    samples: usize,
    /// CPU time sluice used during the read (user + system), seconds.
    sluice_cpu_s: f64,
}

impl Run {
    fn growth_kib(&self) -> u64 {
        self.rss_peak_kib.saturating_sub(self.rss_before_kib)
    }

    fn to_json(&self) -> Value {
        json!({
            "route": self.route.name(),
            "run": self.run,
            "wall_s": self.wall_s,
            "sluice_rss_before_kib": self.rss_before_kib,
            "sluice_rss_peak_kib": self.rss_peak_kib,
            "sluice_rss_after_kib": self.rss_after_kib,
            "sluice_rss_growth_kib": self.growth_kib(),
            "sluice_hwm_before_kib": self.hwm_before_kib,
            "sluice_hwm_after_kib": self.hwm_after_kib,
            "rss_samples": self.samples,
            "sluice_cpu_s": self.sluice_cpu_s,
        })
    }
}

/// sluice's memory over one read.
#[derive(Clone, Copy, Default)]
struct Mem {
    before_kib: u64,
    peak_kib: u64,
    samples: usize,
}

impl Mem {
    fn growth_kib(self) -> u64 {
        self.peak_kib.saturating_sub(self.before_kib)
    }

    fn to_json(self) -> Value {
        json!({
            "sluice_rss_before_kib": self.before_kib,
            "sluice_rss_peak_kib": self.peak_kib,
            "sluice_rss_growth_kib": self.growth_kib(),
            "rss_samples": self.samples,
        })
    }
}

/// What the slow reader did.
struct Slow {
    rows: u64,
    /// Protocol bytes received after the query was sent.
    bytes: u64,
    seconds: f64,
    mem: Mem,
}

/// What an untimed, scanned read found in psql's output.
#[derive(Default)]
struct Scan {
    rows: u64,
    bytes: u64,
    /// Luhn-valid runs of 13-19 digits.
    clear_pans: u64,
    /// `dddddd******dddd`: a 16-digit PAN in PCI display form.
    masked_pans: u64,
    /// CVV fields (the 4th column) that are all digits.
    clear_cvvs: u64,
    first_row: String,
    /// sluice's memory during the read.
    mem: Mem,
}

impl Scan {
    fn to_json(&self) -> Value {
        json!({
            "rows": self.rows,
            "psql_output_bytes": self.bytes,
            "clear_pans": self.clear_pans,
            "masked_pans": self.masked_pans,
            "clear_cvvs": self.clear_cvvs,
            "first_row": self.first_row,
            "memory": self.mem.to_json(),
        })
    }
}

/// Run the suite: 1,000,000 rows and 3 reads per route, or with `quick`
/// 200,000 rows and one read per route.
pub fn run(quick: bool) -> anyhow::Result<()> {
    let plan = if quick {
        Plan {
            rows: 200_000,
            runs: 1,
        }
    } else {
        Plan {
            rows: 1_000_000,
            runs: 3,
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
    let pid = r.daemon.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ensure!(
        comm.trim() == "sluice",
        "process {pid} is {comm:?}, not the sluice daemon: its memory cannot be sampled"
    );
    let rss_start = status_kib(pid, "VmRSS:").context("sluice's VmRSS")?;
    let hwm_start = status_kib(pid, "VmHWM:").context("sluice's VmHWM")?;

    // The unprotected address "direct" dials: plain forwarding through the
    // gateway, not in sluice's targets.
    let direct_ip = r.lab.add_db_address(3);

    println!("generating {} rows server-side …", plan.rows);
    let t = Instant::now();
    r.pg.sql(LUHN_FN);
    r.pg.sql(&format!(
        "CREATE TABLE big AS SELECT id, 'Holder ' || id AS holder, pan, lpad((id % 1000)::text, 3, '0') AS cvv, \
         'holder' || id || '@example.com' AS email, 'card ' || pan || ' on file' AS memo \
         FROM (SELECT i AS id, luhn_complete('4' || lpad(i::text, 14, '0')) AS pan FROM generate_series(1, {}) AS i) AS g",
        plan.rows
    ));
    r.pg.sql("ALTER TABLE big ADD PRIMARY KEY (id)");
    r.pg.sql("VACUUM ANALYZE big");
    r.pg.sql(&format!("GRANT SELECT ON big TO {}", postgres::USER));
    // The slow reader's role, trusted from anywhere (first matching line
    // wins), in the lab's database only.
    let hba = r.pg.dir.join("data").join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).context("reading pg_hba.conf")?;
    std::fs::write(
        &hba,
        format!("host all {SLOW_USER} 0.0.0.0/0 trust\n{rules}"),
    )
    .context("writing pg_hba.conf")?;
    r.pg.sql(&format!("CREATE ROLE {SLOW_USER} LOGIN"));
    r.pg.sql(&format!("GRANT SELECT ON big TO {SLOW_USER}"));
    r.pg.sql("SELECT pg_reload_conf()");
    // What the result weighs on the wire: each DataRow is 'D', a length, a
    // column count and per column a length and the text value.
    let wire_bytes: u64 = r
        .pg
        .sql(
            "SELECT sum(7 + 6 * 4 + octet_length(id::text) + octet_length(holder) + octet_length(pan) \
             + octet_length(cvv) + octet_length(email) + octet_length(memo)) FROM big",
        )
        .parse()
        .context("the result's wire size")?;
    let table_bytes: u64 =
        r.pg.sql("SELECT pg_table_size('big')")
            .parse()
            .context("the table's size")?;
    println!(
        "  {} rows in {:.1} s: result {:.1} MiB on the wire, table {:.1} MiB",
        plan.rows,
        t.elapsed().as_secs_f64(),
        mib(wire_bytes),
        mib(table_bytes)
    );

    let bench = Bench {
        r: &r,
        pid,
        direct_ip,
        limit: Duration::from_secs(30 + plan.rows / 5_000),
        clk_tck: clock_ticks(),
    };

    // Correctness first (these reads also warm the page cache and sluice).
    eprintln!("  checking masking: one untimed read per route, scanned …");
    let direct_scan = bench.scan(Route::Direct)?;
    eprintln!(
        "    direct: {} rows, {} clear PANs, {} masked, {} clear CVVs",
        direct_scan.rows, direct_scan.clear_pans, direct_scan.masked_pans, direct_scan.clear_cvvs
    );
    let sluice_scan = bench.scan(Route::Sluice)?;
    eprintln!(
        "    sluice: {} rows, {} clear PANs, {} masked, {} clear CVVs",
        sluice_scan.rows, sluice_scan.clear_pans, sluice_scan.masked_pans, sluice_scan.clear_cvvs
    );
    let pans = 2 * plan.rows;
    ensure!(
        direct_scan.rows == plan.rows && sluice_scan.rows == plan.rows,
        "expected {} rows on both routes, got {} direct and {} through sluice",
        plan.rows,
        direct_scan.rows,
        sluice_scan.rows
    );
    ensure!(
        direct_scan.clear_pans == pans,
        "direct shows {} clear PANs, expected {pans} (two per row): the generated PANs are not what the suite assumes",
        direct_scan.clear_pans
    );
    if sluice_scan.clear_pans > 0 {
        bail!(
            "sluice let {} clear PANs through (first row: {})",
            sluice_scan.clear_pans,
            sluice_scan.first_row
        );
    }
    ensure!(
        sluice_scan.masked_pans == pans,
        "sluice masked {} PANs, expected {pans} (the pan column and the memo of every row)",
        sluice_scan.masked_pans
    );
    ensure!(
        sluice_scan.clear_cvvs == 0,
        "sluice let {} clear CVVs through",
        sluice_scan.clear_cvvs
    );
    // The session ends (and is logged) just after psql exits.
    let logged = crate::wait_for(Duration::from_secs(5), || {
        r.daemon
            .log_text()
            .contains("postgres session ended")
            .then_some(())
    });
    if logged.is_none() {
        bail!(
            "sluice logged no PostgreSQL session for the read through it:\n{}",
            r.daemon.log_text()
        );
    }

    let total = plan.runs * 2;
    let mut runs = Vec::new();
    for i in 0..plan.runs {
        // Alternate which route goes first, so neither always follows the
        // other's read.
        let order = if i % 2 == 0 {
            [Route::Direct, Route::Sluice]
        } else {
            [Route::Sluice, Route::Direct]
        };
        for route in order {
            eprint!(
                "  [{}/{total}] {:<11} run {}, {} rows … ",
                runs.len() + 1,
                route.name(),
                i + 1,
                plan.rows
            );
            let run = bench.timed(route, i + 1)?;
            eprintln!(
                "{:.2} s  sluice CPU {:.2} s, RSS {:.1} → peak {:.1} MiB ({:+.1})",
                run.wall_s,
                run.sluice_cpu_s,
                kib_mib(run.rss_before_kib),
                kib_mib(run.rss_peak_kib),
                kib_mib(run.growth_kib())
            );
            runs.push(run);
        }
    }
    eprint!(
        "  [slow reader] sluice full, {} rows read at {:.0} MiB/s … ",
        plan.rows,
        SLOW_RATE / (1024.0 * 1024.0)
    );
    let slow = bench.slow()?;
    eprintln!(
        "{:.1} s, {} rows  sluice RSS {:.1} → peak {:.1} MiB ({:+.1})",
        slow.seconds,
        slow.rows,
        kib_mib(slow.mem.before_kib),
        kib_mib(slow.mem.peak_kib),
        kib_mib(slow.mem.growth_kib())
    );
    ensure!(
        slow.rows == plan.rows,
        "the slow reader got {} rows, expected {}",
        slow.rows,
        plan.rows
    );
    drop(r);
    println!("  done in {:.0} s", started.elapsed().as_secs_f64());

    report(&Report {
        plan: &plan,
        runs: &runs,
        direct_scan: &direct_scan,
        sluice_scan: &sluice_scan,
        slow: &slow,
        wire_bytes,
        table_bytes,
        rss_start,
        hwm_start,
        load_start,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The lab and where each route goes.
struct Bench<'a> {
    r: &'a scenario::GatewayRun,
    pid: u32,
    direct_ip: String,
    /// Longest a single read may take.
    limit: Duration,
    /// Clock ticks per second of /proc/<pid>/stat's CPU times.
    clk_tck: f64,
}

impl Bench<'_> {
    fn host(&self, route: Route) -> &str {
        match route {
            Route::Direct => &self.direct_ip,
            Route::Sluice => &self.r.lab.db_ip,
        }
    }

    /// One timed read to /dev/null, sampling sluice's memory meanwhile.
    fn timed(&self, route: Route, run: usize) -> anyhow::Result<Run> {
        let info = postgres::conninfo(self.host(route), 5432);
        let rss_before_kib = status_kib(self.pid, "VmRSS:").context("sluice's VmRSS")?;
        reset_hwm(self.pid)?;
        let hwm_before_kib = status_kib(self.pid, "VmHWM:").context("sluice's VmHWM")?;
        let cpu_before = cpu_ticks(self.pid).context("sluice's CPU time")?;
        let sampler = Sampler::start(self.pid, self.limit);
        let t = Instant::now();
        let out = self.r.lab.agent.try_run(
            &[
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-o",
                "/dev/null",
                &info,
                "-c",
                QUERY,
            ],
            self.limit,
        );
        let wall_s = t.elapsed().as_secs_f64();
        let (rss_peak_kib, samples) = sampler.stop();
        let cpu = cpu_ticks(self.pid)
            .unwrap_or(cpu_before)
            .saturating_sub(cpu_before);
        let hwm_after_kib = status_kib(self.pid, "VmHWM:").unwrap_or(0);
        if !out.status.success() {
            bail!(
                "psql via {} failed ({}): {}",
                route.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Run {
            route,
            run,
            wall_s,
            rss_before_kib,
            rss_peak_kib: rss_peak_kib.max(rss_before_kib).max(hwm_after_kib),
            rss_after_kib: status_kib(self.pid, "VmRSS:").unwrap_or(0),
            hwm_before_kib,
            hwm_after_kib,
            samples,
            #[expect(clippy::cast_precision_loss, reason = "ticks far below 2^52")]
            sluice_cpu_s: cpu as f64 / self.clk_tck,
        })
    }

    /// One read whose output streams into this process and is scanned for
    /// clear and masked card numbers.
    fn scan(&self, route: Route) -> anyhow::Result<Scan> {
        let info = postgres::conninfo(self.host(route), 5432);
        let secs = self.limit.as_secs().to_string();
        let before_kib = status_kib(self.pid, "VmRSS:").context("sluice's VmRSS")?;
        reset_hwm(self.pid)?;
        let sampler = Sampler::start(self.pid, self.limit);
        let mut child = self
            .r
            .lab
            .agent
            .command(&[
                "timeout",
                "-k",
                "2",
                &secs,
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                &info,
                "-c",
                QUERY,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting psql")?;
        let stdout = child.stdout.take().context("psql's stdout")?;
        let mut scan = Scan::default();
        let mut reader = BufReader::with_capacity(1 << 16, stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .context("reading psql's output")?;
            if n == 0 {
                break;
            }
            scan.bytes += n as u64;
            let row = line.strip_suffix(b"\n").unwrap_or(&line);
            if scan.rows == 0 {
                scan.first_row = String::from_utf8_lossy(row).into_owned();
            }
            scan.rows += 1;
            let (clear, masked) = count_pans(row);
            scan.clear_pans += clear;
            scan.masked_pans += masked;
            if row
                .split(|&b| b == b'|')
                .nth(3)
                .is_some_and(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
            {
                scan.clear_cvvs += 1;
            }
        }
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child.wait().context("waiting for psql")?;
        let (peak_kib, samples) = sampler.stop();
        let hwm = status_kib(self.pid, "VmHWM:").unwrap_or(0);
        scan.mem = Mem {
            before_kib,
            peak_kib: peak_kib.max(before_kib).max(hwm),
            samples,
        };
        if !status.success() {
            bail!("psql via {} failed ({status}): {err}", route.name());
        }
        Ok(scan)
    }

    /// The whole result through sluice to a client that takes it off its
    /// socket at [`SLOW_RATE`]: TCP backpressure reaches sluice, which must
    /// slow its reads from the database rather than hold the result.
    fn slow(&self) -> anyhow::Result<Slow> {
        let addr: SocketAddr = format!("{}:5432", self.r.lab.db_ip)
            .parse()
            .context("the database's address")?;
        let before_kib = status_kib(self.pid, "VmRSS:").context("sluice's VmRSS")?;
        reset_hwm(self.pid)?;
        let sampler = Sampler::start(self.pid, self.limit);
        let t = Instant::now();
        let limit = self.limit;
        let out = crate::packets::in_netns(&self.r.lab.agent.path(), || slow_read(addr, limit));
        let seconds = t.elapsed().as_secs_f64();
        let (peak_kib, samples) = sampler.stop();
        let hwm = status_kib(self.pid, "VmHWM:").unwrap_or(0);
        let (rows, bytes) = out.context("the slow reader")?;
        Ok(Slow {
            rows,
            bytes,
            seconds,
            mem: Mem {
                before_kib,
                peak_kib: peak_kib.max(before_kib).max(hwm),
                samples,
            },
        })
    }
}

/// Reads at most `rate` bytes per second from `inner` (on average since
/// the first read), sleeping before a read that would go faster.
struct Paced {
    inner: TcpStream,
    rate: f64,
    start: Instant,
    total: u64,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[expect(clippy::cast_precision_loss, reason = "bytes far below 2^52")]
        let due = self.total as f64 / self.rate;
        let ahead = due - self.start.elapsed().as_secs_f64();
        if ahead > 0.0 {
            thread::sleep(Duration::from_secs_f64(ahead));
        }
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        Ok(n)
    }
}

/// A minimal PostgreSQL client (protocol 3.0, trust authentication, simple
/// query) that reads `SELECT * FROM big` at [`SLOW_RATE`]; returns the
/// DataRow count and the bytes received after the query. Runs in the
/// caller's network namespace.
fn slow_read(addr: SocketAddr, limit: Duration) -> anyhow::Result<(u64, u64)> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).context("connecting")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone().context("the socket's write half")?;
    let mut r = BufReader::with_capacity(
        16 * 1024,
        Paced {
            inner: stream,
            rate: SLOW_RATE,
            start: Instant::now(),
            total: 0,
        },
    );
    let params =
        format!("user\0{SLOW_USER}\0database\0postgres\0application_name\0sluice-bench-slow\0\0");
    let mut startup = Vec::new();
    startup.extend_from_slice(&u32::try_from(8 + params.len())?.to_be_bytes());
    startup.extend_from_slice(&196_608_u32.to_be_bytes());
    startup.extend_from_slice(params.as_bytes());
    w.write_all(&startup)
        .context("sending the StartupMessage")?;
    let mut body = Vec::new();
    loop {
        match read_message(&mut r, &mut body).context("reading the login's answer")? {
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0][..]) => {
                bail!(
                    "{SLOW_USER} is asked to authenticate ({body:?}): pg_hba.conf's trust line is not in effect"
                )
            }
            b'E' => bail!("login refused: {}", String::from_utf8_lossy(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    let query = format!("{QUERY}\0");
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&u32::try_from(4 + query.len())?.to_be_bytes());
    msg.extend_from_slice(query.as_bytes());
    w.write_all(&msg).context("sending the query")?;
    let start = Instant::now();
    let (mut rows, mut bytes) = (0u64, 0u64);
    loop {
        ensure!(
            start.elapsed() < limit,
            "the slow read took longer than {limit:?}"
        );
        let tag = read_message(&mut r, &mut body).context("reading the result")?;
        bytes += 5 + body.len() as u64;
        match tag {
            b'D' => rows += 1,
            b'E' => bail!("the query failed: {}", String::from_utf8_lossy(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    w.write_all(&[b'X', 0, 0, 0, 4])
        .context("sending Terminate")?;
    Ok((rows, bytes))
}

/// One backend message: its type byte, its body into `body`.
fn read_message(r: &mut impl Read, body: &mut Vec<u8>) -> io::Result<u8> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=1 << 24).contains(&len) {
        return Err(io::Error::other(format!("message length {len}")));
    }
    body.resize(len - 4, 0);
    r.read_exact(body)?;
    Ok(head[0])
}

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th and stime the 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if it cannot
/// be asked).
fn clock_ticks() -> f64 {
    bench_report::command_line(&["getconf", "CLK_TCK"])
        .parse()
        .unwrap_or(100.0)
}

/// Samples a process's VmRSS every 20 ms on a thread of its own until
/// stopped (or `limit` passes), keeping the largest.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(u64, usize)>,
}

impl Sampler {
    fn start(pid: u32, limit: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let (mut peak, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) && start.elapsed() < limit {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    peak = peak.max(kib);
                    samples += 1;
                }
                thread::sleep(Duration::from_millis(20));
            }
            (peak, samples)
        });
        Sampler { stop, handle }
    }

    /// The peak VmRSS (KiB) and how many samples were taken.
    fn stop(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0))
    }
}

/// Reset a process's VmHWM (peak resident set) to its current VmRSS
/// (`/proc/<pid>/clear_refs`, value 5, Linux 4.0+), so that VmHWM read
/// after a read is that read's exact peak, however brief.
fn reset_hwm(pid: u32) -> anyhow::Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").with_context(|| format!("resetting sluice's VmHWM ({path})"))
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`).
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clear PANs (maximal runs of 13-19 digits passing Luhn) and PCI-masked
/// 16-digit PANs (six digits, six `*`, four digits, as a maximal run of
/// digits and `*`) in one line.
fn count_pans(line: &[u8]) -> (u64, u64) {
    let (mut clear, mut masked) = (0, 0);
    let mut i = 0;
    while i < line.len() {
        if !(line[i].is_ascii_digit() || line[i] == b'*') {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && (line[i].is_ascii_digit() || line[i] == b'*') {
            i += 1;
        }
        let token = &line[start..i];
        if token.len() == 16
            && token[..6].iter().all(u8::is_ascii_digit)
            && token[6..12].iter().all(|&b| b == b'*')
            && token[12..].iter().all(u8::is_ascii_digit)
        {
            masked += 1;
        }
        for run in token.split(|&b| b == b'*') {
            if (13..=19).contains(&run.len()) && luhn_valid(run) {
                clear += 1;
            }
        }
    }
    (clear, masked)
}

/// The Luhn check over ASCII digits.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[expect(clippy::cast_precision_loss, reason = "sizes far below 2^52")]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[expect(clippy::cast_precision_loss, reason = "sizes far below 2^52")]
fn kib_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// "1M", "200k".
fn rows_label(rows: u64) -> String {
    if rows >= 1_000_000 && rows.is_multiple_of(1_000_000) {
        format!("{}M", rows / 1_000_000)
    } else if rows >= 1000 && rows.is_multiple_of(1000) {
        format!("{}k", rows / 1000)
    } else {
        rows.to_string()
    }
}

/// Everything the report is written from.
struct Report<'a> {
    plan: &'a Plan,
    runs: &'a [Run],
    direct_scan: &'a Scan,
    sluice_scan: &'a Scan,
    slow: &'a Slow,
    wire_bytes: u64,
    table_bytes: u64,
    /// sluice's VmRSS and VmHWM once started, before any read.
    rss_start: u64,
    hwm_start: u64,
    load_start: String,
    elapsed_s: f64,
}

/// A markdown table cell holding `text` as code.
fn code_cell(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

#[expect(clippy::too_many_lines, reason = "one section, written top to bottom")]
fn report(rep: &Report<'_>) -> anyhow::Result<()> {
    let plan = rep.plan;
    let label = rows_label(plan.rows);
    let of = |route: Route| -> Vec<&Run> { rep.runs.iter().filter(|r| r.route == route).collect() };
    let (direct, sluice) = (of(Route::Direct), of(Route::Sluice));
    let wall = |runs: &[&Run]| median(&runs.iter().map(|r| r.wall_s).collect::<Vec<_>>());
    let cpu = |runs: &[&Run]| median(&runs.iter().map(|r| r.sluice_cpu_s).collect::<Vec<_>>());
    let (d_wall, s_wall) = (wall(&direct), wall(&sluice));
    let wall_ratio = ratio(s_wall, d_wall);
    #[expect(clippy::cast_precision_loss, reason = "KiB far below 2^52")]
    let growth = |runs: &[&Run]| {
        median(
            &runs
                .iter()
                .map(|r| r.growth_kib() as f64)
                .collect::<Vec<_>>(),
        )
    };
    let (d_growth, s_growth) = (growth(&direct), growth(&sluice));
    let s_growth_max = sluice.iter().map(|r| r.growth_kib()).max().unwrap_or(0);
    let s_peak = sluice.iter().map(|r| r.rss_peak_kib).max().unwrap_or(0);
    // The headline: the largest growth of any read through sluice after
    // the first (timed psql reads and the slow reader).
    let worst_kib = s_growth_max.max(rep.slow.mem.growth_kib());
    #[expect(clippy::cast_precision_loss, reason = "sizes far below 2^52")]
    let rows_per_s = |s: f64| if s > 0.0 { plan.rows as f64 / s } else { 0.0 };
    let wire_mib = mib(rep.wire_bytes);
    let first = rep.sluice_scan.mem;

    let chart = BarChart {
        file: "large-wall.png".into(),
        title: format!("psql reads a {label}-row result with PANs: wall time"),
        y_label: "seconds (lower is better)".into(),
        groups: vec![format!(
            "SELECT * FROM big ({label} rows, {wire_mib:.0} MiB)"
        )],
        series: vec![
            Series {
                name: "direct".into(),
                values: vec![d_wall],
            },
            Series {
                name: "sluice full".into(),
                values: vec![s_wall],
            },
        ],
    }
    .draw()?;
    let rss_chart = BarChart {
        file: "large-rss.png".into(),
        title: format!("sluice's resident memory and a {label}-row result"),
        y_label: "MiB".into(),
        groups: vec![
            "result (wire)".into(),
            "RSS at start".into(),
            "peak, 1st read".into(),
            "peak, psql reads".into(),
            "peak, slow reader".into(),
        ],
        series: vec![Series {
            name: "MiB".into(),
            values: vec![
                wire_mib,
                kib_mib(rep.rss_start),
                kib_mib(first.peak_kib),
                kib_mib(s_peak),
                kib_mib(rep.slow.mem.peak_kib),
            ],
        }],
    }
    .draw()?;

    let mut md = String::new();
    writeln!(md, "# Large result: {label} rows with PANs\n")?;
    writeln!(
        md,
        "Command: `sluice-lab bench large{}` ({} rows, {} timed read{} per route, alternating which goes \
         first, the median reported; this run took {:.0} s). The agent host runs unmodified psql, `psql -X -At -o /dev/null -c \"{QUERY}\"`, \
         which reads the whole result (libpq buffers it in the client before printing; the same on both routes). \
         Wall time is the whole psql invocation: connect, authenticate (SCRAM), query, receive, exit.\n",
        if plan.runs == 1 { " --quick" } else { "" },
        plan.rows,
        plan.runs,
        if plan.runs == 1 { "" } else { "s" },
        rep.elapsed_s
    )?;
    writeln!(
        md,
        "- **direct**: a second, unprotected address of the database host, plain forwarding through the gateway.\n\
         - **sluice full**: the protected address, steered by the tc program into sluice (release build). Policy \
         default deny with an allow rule for reads (and a deny rule for unbounded writes); `big.pan` declared \
         sensitive, `format = \"pci\"`; content detectors on every value (PAN and track data, always on; CVV by \
         column name, on by default; email, SSN and IBAN off, their defaults); audit store on, `durability = \"sync\"`.\n"
    )?;
    writeln!(
        md,
        "The table `big(id, holder, pan, cvv, email, memo)` is generated server-side with `generate_series`: each \
         row's PAN is distinct and Luhn-valid, built in SQL (`4`, the id zero-padded to 14 digits, the check digit); \
         `memo` repeats it in free text (`card <pan> on file`), so the declared column is masked by the SQL analysis \
         and the memo's PAN by the content detectors. The result is {:.1} MiB on the wire ({} bytes of DataRow \
         messages; the table is {:.1} MiB on disk).\n",
        wire_mib,
        rep.wire_bytes,
        mib(rep.table_bytes)
    )?;
    writeln!(
        md,
        "Memory: a thread samples `/proc/<sluice>/status` every 20 ms during each read; growth is the peak VmRSS \
         during a read minus VmRSS just before it (the same sampling during the direct reads is the control). \
         psql takes the result off the wire as fast as it comes, so a proxy that held the result would grow by its \
         size. A last read through sluice is made by a minimal client in the bench (protocol 3.0, a role with trust \
         authentication, simple query) that takes bytes off its socket at only {:.0} MiB/s: the result then backs \
         up, and sluice must slow its reads from the database (TCP backpressure) rather than hold it.\n",
        SLOW_RATE / (1024.0 * 1024.0)
    )?;

    writeln!(md, "## Ratio\n")?;
    writeln!(md, "| what | measured |\n|---|---:|")?;
    writeln!(
        md,
        "| sluice full / direct, wall time, {label} rows | {wall_ratio:.2}× |"
    )?;
    writeln!(
        md,
        "| sluice RSS growth, largest of the psql reads and the slow reader / result size | {:.1}% ({:+.1} MiB of \
         {wire_mib:.1} MiB) |\n",
        ratio(kib_mib(worst_kib), wire_mib) * 100.0,
        kib_mib(worst_kib)
    )?;
    writeln!(md, "{chart}\n")?;

    writeln!(md, "## Absolute numbers (this machine's)\n")?;
    writeln!(
        md,
        "| route | wall time (median) | rows/s | MiB/s (wire) | runs (s) | sluice CPU per read (median) | sluice RSS growth (median) |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---|---:|---:|")?;
    for (route, runs, w, g) in [
        (Route::Direct, &direct, d_wall, d_growth),
        (Route::Sluice, &sluice, s_wall, s_growth),
    ] {
        let each: Vec<String> = runs.iter().map(|r| format!("{:.2}", r.wall_s)).collect();
        writeln!(
            md,
            "| {} | {w:.2} s | {:.0} | {:.1} | {} | {:.2} s | {:+.1} MiB{} |",
            route.name(),
            rows_per_s(w),
            ratio(wire_mib, w),
            each.join(", "),
            cpu(runs),
            g / 1024.0,
            if route == Route::Direct {
                " (control)"
            } else {
                ""
            }
        )?;
    }
    writeln!(
        md,
        "\nsluice CPU is its user + system time over the read (`/proc/<pid>/stat`): the cost of relaying, decoding, \
         masking and scanning every value, which can overlap with the client's own work on another CPU.\n"
    )?;

    writeln!(md, "### sluice's memory\n")?;
    writeln!(
        md,
        "| read | result | VmRSS before | peak VmRSS | growth |\n|---|---:|---:|---:|---:|"
    )?;
    let row = |md: &mut String, what: &str, m: Mem| {
        writeln!(
            md,
            "| {what} | {wire_mib:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.1} MiB |",
            kib_mib(m.before_kib),
            kib_mib(m.peak_kib),
            kib_mib(m.growth_kib())
        )
    };
    row(
        &mut md,
        "first read after start (the masking check, psql)",
        first,
    )?;
    for r in &sluice {
        row(
            &mut md,
            &format!("timed psql read {}", r.run),
            Mem {
                before_kib: r.rss_before_kib,
                peak_kib: r.rss_peak_kib,
                samples: r.samples,
            },
        )?;
    }
    row(
        &mut md,
        &format!(
            "slow reader, {:.0} MiB/s ({:.1} s)",
            SLOW_RATE / (1024.0 * 1024.0),
            rep.slow.seconds
        ),
        rep.slow.mem,
    )?;
    writeln!(
        md,
        "\nThe peak is the larger of the 20 ms samples and VmHWM, which is reset to VmRSS before each read \
         (`/proc/<pid>/clear_refs`, 5), so it is the exact peak of that read, however brief. At start (before any \
         read) VmRSS was {:.1} MiB and VmHWM {:.1} MiB (loading the eBPF programs). The first read after start \
         also pays one-time allocations (buffers, caches, the store's first writes), so the steady-state figure is \
         the later reads'.\n",
        kib_mib(rep.rss_start),
        kib_mib(rep.hwm_start)
    )?;
    writeln!(md, "{rss_chart}\n")?;

    writeln!(md, "## Masking check\n")?;
    writeln!(
        md,
        "One untimed read per route before the timed ones, its output streamed into the bench and scanned: a clear \
         PAN is a run of 13-19 digits passing Luhn, a masked one is `dddddd******dddd`. The suite fails if sluice \
         lets one clear PAN or CVV through, or masks fewer than two PANs per row.\n"
    )?;
    writeln!(
        md,
        "| route | rows | clear PANs | masked PANs | clear CVVs | first row |\n|---|---:|---:|---:|---:|---|"
    )?;
    for (route, s) in [
        (Route::Direct, rep.direct_scan),
        (Route::Sluice, rep.sluice_scan),
    ] {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            route.name(),
            s.rows,
            s.clear_pans,
            s.masked_pans,
            s.clear_cvvs,
            code_cell(&s.first_row)
        )?;
    }
    writeln!(
        md,
        "\nLoad average at the start: {}; at the end: {}.",
        rep.load_start,
        bench_report::loadavg()
    )?;

    let headline = [
        Headline::info(
            format!("sluice / direct wall time, {label} rows"),
            format!("{wall_ratio:.2}×"),
        ),
        Headline::info(
            "sluice peak RSS growth",
            format!("{:+.1} MiB (result {wire_mib:.0} MiB)", kib_mib(worst_kib)),
        ),
    ];
    let data = json!({
        "rows": plan.rows,
        "runs_per_route": plan.runs,
        "query": QUERY,
        "client": "psql -X -At -o /dev/null (libpq buffers the whole result client-side)",
        "table": "big(id, holder, pan, cvv, email, memo): generate_series; pan = luhn_complete('4' || lpad(id, 14, '0')), distinct and Luhn-valid; memo = 'card ' || pan || ' on file'",
        "sluice_config": {
            "policy": "default deny; allow classes read, write, transaction, utility; deny without_where",
            "masking_columns": [{"table": "big", "column": "pan", "format": "pci"}],
            "detectors": "defaults: PAN and track (always), CVV on, email/ssn/iban off",
            "store": "enabled, durability sync",
        },
        "result_wire_bytes": rep.wire_bytes,
        "table_bytes": rep.table_bytes,
        "check": {
            "direct": rep.direct_scan.to_json(),
            "sluice": rep.sluice_scan.to_json(),
        },
        "runs": rep.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
        "slow_reader": {
            "rate_bytes_per_s": SLOW_RATE,
            "rows": rep.slow.rows,
            "bytes": rep.slow.bytes,
            "seconds": rep.slow.seconds,
            "memory": rep.slow.mem.to_json(),
        },
        "median": {
            "direct_wall_s": d_wall,
            "sluice_wall_s": s_wall,
            "sluice_over_direct": wall_ratio,
            "sluice_cpu_s": cpu(&sluice),
            "sluice_rss_growth_kib": s_growth,
            "sluice_rss_growth_kib_during_direct": d_growth,
        },
        "sluice_rss_growth_kib_max_after_first_read": worst_kib,
        "sluice_rss_start_kib": rep.rss_start,
        "sluice_hwm_start_kib": rep.hwm_start,
        "loadavg_start": rep.load_start,
        "loadavg_end": bench_report::loadavg(),
        "elapsed_s": rep.elapsed_s,
    });
    println!("\n{md}");
    bench_report::write_suite(SUITE, data, &md, &headline)
}

#[cfg(test)]
mod tests {
    use super::{count_pans, luhn_valid, rows_label};

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"5500005555555559"));
        assert!(!luhn_valid(b"4111111111111112"));
    }

    #[test]
    fn pans_in_a_row() {
        let clear = b"1|Holder 1|4111111111111111|001|h@example.com|card 4111111111111111 on file";
        assert_eq!(count_pans(clear), (2, 0));
        let masked = b"1|Holder 1|411111******1111|***|h@example.com|card 411111******1111 on file";
        assert_eq!(count_pans(masked), (0, 2));
        assert_eq!(count_pans(b"123456789|x"), (0, 0));
    }

    #[test]
    fn labels() {
        assert_eq!(rows_label(1_000_000), "1M");
        assert_eq!(rows_label(200_000), "200k");
        assert_eq!(rows_label(1234), "1234");
    }
}
