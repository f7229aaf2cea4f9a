//! The PostgreSQL session engine against real clients, at volume and under
//! failure, through the transparent gateway: psycopg 3 from PyPI
//! (server-side cursors, COPY both ways, pipeline mode with a refusal in the
//! middle, binary results), a million-row result at constant proxy memory,
//! 64 sessions at once, a client killed mid-result, a database restart under
//! live sessions, and a newer client's startup answered with
//! NegotiateProtocolVersion.
//!
//! The Python clients are scripts under `tests/python/`, run on the agent
//! host with the venv's interpreter (`cargo xtask setup` creates the venv;
//! see `sluice_lab::python`). They print `key=value` lines the tests assert on.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use sluice_lab::{
    packets::in_netns,
    postgres::conninfo,
    python::{self, field},
    require_privileged,
    scenario::{self, GatewayRun},
    wait_for,
};

const REFUSED: &str = "sluice: statement refused by policy";
/// What the daemon logs once per session that ended normally.
const CLOSED: &str = "session closed";
/// What the daemon logs once per session that ended with an error.
const ENDED_WITH_ERROR: &str = "session ended with an error";

fn setup(tag: &str, index: u8) -> GatewayRun {
    scenario::start_with_test_policy(tag, index)
}

/// The agent's connection string through sluice, tagged so the database's
/// `pg_stat_activity` tells the sessions apart.
fn info(s: &GatewayRun, app: &str) -> String {
    format!("{} application_name={app}", conninfo(&s.lab.db_ip, 5432))
}

/// Run a script to completion on the agent host; (success, stdout, stderr).
fn run_script(
    s: &GatewayRun,
    python: &Path,
    script: &str,
    args: &[&str],
    limit: Duration,
) -> (bool, String, String) {
    let script = python::script(script);
    let mut argv = vec![python.to_str().unwrap(), script.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = s.lab.agent.try_run(&argv, limit);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A script started in the background on the agent host, its stdout read
/// line by line on a thread. `nsenter` execs the interpreter, so the child
/// *is* the Python process and a kill reaches it directly.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    fn start(s: &GatewayRun, python: &Path, script: &str, args: &[&str]) -> Background {
        let script = python::script(script);
        let mut argv = vec![python.to_str().unwrap(), script.to_str().unwrap()];
        argv.extend_from_slice(args);
        let mut child = s
            .lab
            .agent
            .command(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a Python client");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait (bounded) for a line starting with `prefix`; returns it.
    fn expect_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "no `{prefix}` line within {limit:?}; stdout so far:\n{}\nstderr:\n{}",
            self.seen.join("\n"),
            self.stderr()
        );
    }

    /// Wait (bounded) for the process to exit; returns all of its stdout.
    fn finish(&mut self, limit: Duration) -> String {
        let status = wait_for(limit, || self.child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "the client did not finish within {limit:?} (a hang); stdout so far:\n{}\nstderr:\n{}",
                self.seen.join("\n"),
                self.stderr()
            );
        }
        // The reader thread ends at EOF; collect what it still holds.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        self.seen.join("\n") + "\n"
    }

    fn stderr(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// `key=N` from a tracing line.
fn log_number(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn psycopg3_server_cursors_copy_pipelines_and_binary_results() {
    if !require_privileged("psycopg3_features") {
        return;
    }
    let Some(py) = python::interpreter("psycopg3_features") else {
        return;
    };
    let s = setup("p5", 15);
    s.pg.sql(&format!(
        "CREATE TABLE items (id int primary key, label text); GRANT ALL ON items TO {}",
        sluice_lab::postgres::USER
    ));
    let conn = info(&s, "sluice-psycopg3");
    let (ok, out, err) = run_script(
        &s,
        &py,
        "psycopg_features.py",
        &[&conn],
        Duration::from_secs(120),
    );
    assert!(ok, "psycopg_features.py failed:\n{out}\n{err}");
    let expected = [
        // Server-side cursor: 50 FETCHes of 1000, the cursor open on the
        // server between them.
        ("named_rows", "50000"),
        ("named_batches", "50"),
        ("named_sum", "1250025000"),
        ("named_open_cursors", "1"),
        // COPY in (text, binary), an abandoned COPY that leaves nothing,
        // COPY out (binary rows, text blocks).
        ("copy_in_text", "20000"),
        ("copy_in_binary", "1000"),
        ("after_copy_fail_count", "21000"),
        ("copy_out_binary_rows", "21000"),
        ("copy_out_binary_sum", "220510500"),
        ("copy_out_binary_last", "binary-21000"),
        ("copy_out_text_lines", "21000"),
        // Pipeline: the refusal lands on the DROP, with SQLSTATE 42501;
        // the statement before it answered, the insert in the same block
        // rolled back, the statement after it was skipped, the next block ran.
        ("pipe_error_type", "InsufficientPrivilege"),
        ("pipe_error_sqlstate", "42501"),
        ("pipe_error_message", REFUSED),
        ("pipe_a", "a"),
        ("pipe_c", "no-result"),
        ("pipe_d", "d"),
        ("pipe_insert_kept", "0"),
        ("after_pipeline", "after"),
        ("executemany_count", "500"),
        ("pipe2_error_sqlstate", "42501"),
        ("pipe2_error_message", REFUSED),
        ("pipe2_x", "x"),
        ("pipe2_count", "21500"),
        // Binary results: every column in binary format, decoded right.
        ("binary_formats", "1,1,1,1,1,1,1"),
        ("binary_row", "(1, 'x', 2.5, b'\\xde\\xad\\xbe\\xef', 42)"),
        ("binary_array", "[1, 2, 3]"),
        ("binary_date", "2024-02-29"),
        ("binary_many_rows", "10000"),
        ("binary_many_sum", "50005000"),
        ("binary_many_half_sum", "25002500.0"),
        ("prepared_sum", "55"),
        ("final", "still usable"),
    ];
    for (key, want) in expected {
        assert_eq!(
            field(&out, key),
            Some(want),
            "{key}: psycopg output:\n{out}\n{err}"
        );
    }
    // The client's exception when it abandoned the COPY is its own (psycopg
    // sent CopyFail and re-raised it), not a protocol error.
    assert_eq!(field(&out, "copy_fail_type"), Some("RuntimeError"), "{out}");
    // Neither refused statement reached the database.
    assert_eq!(s.pg.sql("select count(*) from items"), "21500");
    let log = s.daemon.log_text();
    assert_eq!(count_lines(&log, "statement_denied"), 2, "{log}");
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// Run `f` while sampling the daemon's VmRSS every 10 ms; returns its
/// result and the largest sample.
fn peak_rss_during<T>(pid: u32, f: impl FnOnce() -> T) -> (T, u64) {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while !done.load(Ordering::Acquire) {
                peak = peak.max(memory_kib(pid).0);
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(memory_kib(pid).0)
        });
        let value = f();
        done.store(true, Ordering::Release);
        (value, sampler.join().unwrap())
    })
}

#[test]
fn a_million_row_result_streams_at_constant_proxy_memory() {
    if !require_privileged("million_rows_constant_memory") {
        return;
    }
    let Some(py) = python::interpreter("million_rows_constant_memory") else {
        return;
    };
    let s = setup("p6", 16);
    let pid = s.daemon.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sluice", "the daemon's pid is sluice itself");
    let conn = info(&s, "sluice-stream");
    let stream = |rows: u64| {
        let (ok, out, err) = run_script(
            &s,
            &py,
            "stream_rows.py",
            &[&conn, &rows.to_string(), "100"],
            Duration::from_secs(120),
        );
        assert!(ok, "stream of {rows} rows failed:\n{out}\n{err}");
        // Every row arrived, in full.
        assert_eq!(
            field(&out, "rows"),
            Some(rows.to_string().as_str()),
            "{out}"
        );
        let sum = rows * (rows + 1) / 2;
        assert_eq!(field(&out, "sum"), Some(sum.to_string().as_str()), "{out}");
        let chars = rows * 100;
        assert_eq!(
            field(&out, "chars"),
            Some(chars.to_string().as_str()),
            "{out}"
        );
    };
    // Warm up the allocator and the runtime with one small session.
    stream(1000);
    let (baseline, hwm_before) = memory_kib(pid);
    let ((), peak_100k) = peak_rss_during(pid, || stream(100_000));
    // Reset VmHWM to the current RSS (clear_refs 5, Linux >= 4.0), so the
    // high-water mark after the run is this run's own peak, sampled or not.
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let hwm_reset = memory_kib(pid).1;
    let ((), peak_1m) = peak_rss_during(pid, || stream(1_000_000));
    let (after, hwm_after) = memory_kib(pid);
    eprintln!(
        "sluice memory (KiB): baseline VmRSS {baseline}, peak during 100k rows {peak_100k}, \
         peak during 1M rows {peak_1m}, after {after}; VmHWM {hwm_before}, reset to \
         {hwm_reset} (reset worked: {reset}), after 1M rows {hwm_after}"
    );
    // The 1M-row result is ~107 MiB on the wire (it went through sluice: the
    // close line counts it). The proxy must stay within a few MiB of its
    // baseline, and ten times the rows must not cost more than the 100k run.
    let log = s.daemon.log_text();
    let biggest = log
        .lines()
        .filter(|l| l.contains(CLOSED))
        .filter_map(|l| log_number(l, "bytes_down"))
        .max()
        .unwrap_or(0);
    assert!(biggest > 100_000_000, "bytes_down {biggest}:\n{log}");
    const MIB: u64 = 1024;
    assert!(
        peak_1m <= baseline + 8 * MIB,
        "VmRSS grew from {baseline} KiB to {peak_1m} KiB during a 1M-row result"
    );
    assert!(
        peak_1m <= peak_100k + 4 * MIB,
        "VmRSS peaked at {peak_1m} KiB for 1M rows against {peak_100k} KiB for 100k rows"
    );
    let hwm_bound = if reset { baseline } else { hwm_before } + 8 * MIB;
    assert!(
        hwm_after <= hwm_bound,
        "VmHWM reached {hwm_after} KiB during the 1M-row result (bound {hwm_bound} KiB)"
    );
}

#[test]
fn sixty_four_sessions_at_once() {
    if !require_privileged("sixty_four_sessions") {
        return;
    }
    let Some(py) = python::interpreter("sixty_four_sessions") else {
        return;
    };
    let s = setup("p7", 17);
    let conn = conninfo(&s.lab.db_ip, 5432);
    let (ok, out, err) = run_script(
        &s,
        &py,
        "concurrent_sessions.py",
        &[&conn, "64"],
        Duration::from_secs(180),
    );
    assert!(ok, "concurrent_sessions.py failed:\n{out}\n{err}");
    assert_eq!(field(&out, "failed"), Some("0"), "{out}\n{err}");
    assert_eq!(field(&out, "ok"), Some("64"), "{out}\n{err}");
    // 64 different backends, and each session saw all 64 open at once.
    assert_eq!(field(&out, "distinct_backends"), Some("64"), "{out}");
    assert_eq!(field(&out, "min_seen"), Some("64"), "{out}");
    assert_eq!(field(&out, "refusals"), Some("64"), "{out}");
    let closed = wait_for(Duration::from_secs(20), || {
        let log = s.daemon.log_text();
        (count_lines(&log, CLOSED) >= 64).then_some(log)
    });
    let log = closed.unwrap_or_else(|| s.daemon.log_text());
    assert_eq!(count_lines(&log, CLOSED), 64, "{log}");
    assert_eq!(count_lines(&log, ENDED_WITH_ERROR), 0, "{log}");
    assert_eq!(count_lines(&log, "statement_denied"), 64, "{log}");
    assert_eq!(count_lines(&log, "postgres session ended"), 64, "{log}");
    assert_eq!(s.pg.sql("select count(*) from cards"), "2");
}

#[test]
fn a_client_killed_mid_result_ends_its_backend() {
    if !require_privileged("client_killed_mid_result") {
        return;
    }
    let Some(py) = python::interpreter("client_killed_mid_result") else {
        return;
    };
    let s = setup("p8", 18);
    let conn = info(&s, "sluice-dying");
    // 50M rows of 100 bytes: far more than arrives before the kill.
    let mut client = Background::start(
        &s,
        &py,
        "stream_rows.py",
        &[&conn, "50000000", "100", "200000"],
    );
    let backend = client.expect_line("backend_pid=", Duration::from_secs(30));
    let backend = backend.trim_start_matches("backend_pid=").to_owned();
    client.expect_line("progress=", Duration::from_secs(60));
    let state = format!("select state from pg_stat_activity where pid = {backend}");
    assert_eq!(s.pg.sql(&state), "active", "the result is still streaming");
    client.child.kill().expect("SIGKILL the client");
    let _ = client.child.wait();
    let killed = Instant::now();
    let gone = wait_for(Duration::from_secs(15), || {
        let n = s.pg.sql(&format!(
            "select count(*) from pg_stat_activity where pid = {backend}"
        ));
        (n == "0").then_some(())
    });
    assert!(
        gone.is_some(),
        "backend {backend} still there 15 s after its client died: {}\ndaemon log:\n{}",
        s.pg.sql(&state),
        s.daemon.log_text()
    );
    eprintln!(
        "backend gone {:?} after the client's SIGKILL",
        killed.elapsed()
    );
    let ended = wait_for(Duration::from_secs(10), || {
        let log = s.daemon.log_text();
        let ends: Vec<String> = log
            .lines()
            .filter(|l| l.contains(CLOSED) || l.contains(ENDED_WITH_ERROR))
            .map(str::to_owned)
            .collect();
        (!ends.is_empty()).then_some(ends)
    });
    let ended = ended.unwrap_or_else(|| panic!("no session end logged:\n{}", s.daemon.log_text()));
    eprintln!("sluice logged: {}", ended.join("\n"));
    // A new session works.
    let (ok, out, err) = s.agent_psql(&s.lab.db_ip, "select count(*) from cards");
    assert!(ok && out == "2", "{out}{err}");
}

#[test]
fn a_database_restart_gives_live_sessions_a_clean_error() {
    if !require_privileged("database_restart_mid_session") {
        return;
    }
    let Some(py) = python::interpreter("database_restart_mid_session") else {
        return;
    };
    let mut s = setup("p9", 19);
    let go = s.scratch.path("go");
    let go_arg = go.to_str().unwrap().to_owned();
    // One session idle between two statements, one inside pg_sleep(60).
    let idle_conn = info(&s, "sluice-idle");
    let busy_conn = info(&s, "sluice-busy");
    let mut idle = Background::start(&s, &py, "hold_session.py", &[&idle_conn, "idle", &go_arg]);
    let mut busy = Background::start(&s, &py, "hold_session.py", &[&busy_conn, "busy", &go_arg]);
    idle.expect_line("ready", Duration::from_secs(30));
    busy.expect_line("ready", Duration::from_secs(30));
    let sleeping = wait_for(Duration::from_secs(10), || {
        let n = s.pg.sql(
            "select count(*) from pg_stat_activity where application_name = 'sluice-busy' \
             and state = 'active' and query like '%pg_sleep%'",
        );
        (n == "1").then_some(())
    });
    assert!(
        sleeping.is_some(),
        "the busy session never started pg_sleep"
    );

    let restarted = Instant::now();
    s.pg.restart();
    eprintln!("PostgreSQL restarted in {:?}", restarted.elapsed());

    // The statement in flight fails at once with the server's or sluice's
    // error, not after its 60 s and not with a protocol complaint.
    let busy_out = busy.finish(Duration::from_secs(20));
    assert_clean_disconnect("busy", &busy_out);
    let elapsed: f64 = field(&busy_out, "elapsed").unwrap().parse().unwrap();
    assert!(elapsed < 20.0, "pg_sleep ran {elapsed} s:\n{busy_out}");

    eprintln!("busy client:\n{busy_out}");
    // The idle session's next statement fails cleanly too.
    std::fs::write(&go, "go").unwrap();
    let idle_out = idle.finish(Duration::from_secs(20));
    assert_clean_disconnect("idle", &idle_out);
    eprintln!("idle client:\n{idle_out}");

    // Both sessions are over for sluice as well.
    let ended = wait_for(Duration::from_secs(10), || {
        let log = s.daemon.log_text();
        (count_lines(&log, CLOSED) + count_lines(&log, ENDED_WITH_ERROR) >= 2).then_some(())
    });
    assert!(
        ended.is_some(),
        "sessions not ended:\n{}",
        s.daemon.log_text()
    );

    // A new session after the restart works.
    let (ok, out, err) = s.agent_psql(&s.lab.db_ip, "select count(*) from cards");
    assert!(ok && out == "2", "{out}{err}");
}

#[test]
fn a_database_restart_ends_idle_sessions_in_sluice_too() {
    if !require_privileged("database_restart_ends_idle_sessions") {
        return;
    }
    let Some(py) = python::interpreter("database_restart_ends_idle_sessions") else {
        return;
    };
    let mut s = setup("p12", 22);
    let go = s.scratch.path("go");
    let go_arg = go.to_str().unwrap().to_owned();
    let conn = info(&s, "sluice-idle");
    let mut idle = Background::start(&s, &py, "hold_session.py", &[&conn, "idle", &go_arg]);
    idle.expect_line("ready", Duration::from_secs(30));
    s.pg.restart();
    // PostgreSQL has ended the backend and closed its socket; the client
    // has not spoken since. Without sluice nothing is left of the session
    // on the database side; through sluice, the session must end as well
    // (its close line is the audit record of when it ended).
    let ended = wait_for(Duration::from_secs(10), || {
        let log = s.daemon.log_text();
        (count_lines(&log, CLOSED) + count_lines(&log, ENDED_WITH_ERROR) >= 1).then_some(())
    });
    let sockets = s.lab.gw.run(&["ss", "-tan"]);
    std::fs::write(&go, "go").unwrap();
    let out = idle.finish(Duration::from_secs(20));
    assert_clean_disconnect("idle", &out);
    assert!(
        ended.is_some(),
        "sluice still holds the session 10 s after the database closed it; \
         gateway sockets:\n{sockets}\ndaemon log:\n{}",
        s.daemon.log_text()
    );
}

/// The client got an ErrorResponse with SQLSTATE 57P01 (PostgreSQL's
/// "terminating connection due to administrator command") or 08006
/// (sluice's "the database closed the connection"), and libpq saw no
/// protocol desync.
fn assert_clean_disconnect(who: &str, out: &str) {
    assert_eq!(field(out, "outcome"), Some("error"), "{who}:\n{out}");
    let sqlstate = field(out, "sqlstate").unwrap_or("");
    assert!(
        ["57P01", "08006"].contains(&sqlstate),
        "{who}: SQLSTATE {sqlstate:?}, expected 57P01 or 08006:\n{out}"
    );
    let message = field(out, "message").unwrap_or("").to_lowercase();
    for desync in [
        "lost synchronization",
        "unexpected response",
        "invalid message",
        "message type",
        "protocol",
    ] {
        assert!(!message.contains(desync), "{who}: {message}");
    }
    assert_eq!(field(out, "broken"), Some("True"), "{who}:\n{out}");
}

/// A raw startup case: name, protocol version, `_pq_.` options sent, and
/// the options sluice must decline.
type NegotiationCase<'a> = (&'a str, i32, &'a [(&'a str, &'a str)], &'a [&'a str]);

/// What a raw client saw of one session started with a newer protocol.
#[derive(Debug)]
struct Negotiated {
    /// The first message's type.
    first: char,
    /// NegotiateProtocolVersion's version field (-1 if none came).
    newest_version: i32,
    unrecognized: Vec<String>,
    /// The authentication request (3 = cleartext password).
    auth: i32,
    auth_ok: bool,
    row: Vec<String>,
    ready: usize,
}

fn startup_message(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![tag];
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(body);
    msg
}

fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).expect("read a message header");
    let len = i32::from_be_bytes(head[1..5].try_into().unwrap());
    assert!((4..1 << 20).contains(&len), "bad length {len}");
    let mut body = vec![0u8; len as usize - 4];
    stream.read_exact(&mut body).expect("read a message body");
    (head[0], body)
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}

fn cstrings(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(nul) = b.iter().position(|&c| c == 0) {
        out.push(String::from_utf8_lossy(&b[..nul]).into_owned());
        b = &b[nul + 1..];
    }
    out
}

/// One raw session: StartupMessage with `version` and `params`, cleartext
/// password authentication, one simple query, Terminate.
fn raw_session(addr: &str, version: i32, params: &[(&str, &str)], password: &str) -> Negotiated {
    let mut stream = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
        .expect("connect through sluice");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&startup_message(version, params)).unwrap();
    let (first, body) = read_message(&mut stream);
    let mut seen = Negotiated {
        first: first as char,
        newest_version: -1,
        unrecognized: Vec::new(),
        auth: -1,
        auth_ok: false,
        row: Vec::new(),
        ready: 0,
    };
    let auth = if first == b'v' {
        seen.newest_version = be_i32(&body);
        let count = be_i32(&body[4..]);
        seen.unrecognized = cstrings(&body[8..]);
        assert_eq!(count as usize, seen.unrecognized.len(), "{seen:?}");
        read_message(&mut stream)
    } else {
        (first, body)
    };
    assert_eq!(auth.0, b'R', "expected an authentication request: {seen:?}");
    seen.auth = be_i32(&auth.1);
    if seen.auth != 3 {
        return seen;
    }
    let mut pw = password.as_bytes().to_vec();
    pw.push(0);
    stream.write_all(&tagged(b'p', &pw)).unwrap();
    // Bounded: auth ok, a burst of ParameterStatus, BackendKeyData, ready.
    for _ in 0..64 {
        let (tag, body) = read_message(&mut stream);
        match tag {
            b'R' => seen.auth_ok = be_i32(&body) == 0,
            b'E' => panic!("error during startup: {:?}", cstrings(&body)),
            b'Z' => {
                seen.ready += 1;
                break;
            }
            _ => {}
        }
    }
    stream
        .write_all(&tagged(
            b'Q',
            b"select 41 + 1, current_user, current_setting('application_name')\0",
        ))
        .unwrap();
    for _ in 0..64 {
        let (tag, body) = read_message(&mut stream);
        match tag {
            b'D' => {
                let n = u16::from_be_bytes([body[0], body[1]]);
                let mut at = 2;
                for _ in 0..n {
                    let len = be_i32(&body[at..]);
                    at += 4;
                    let len = usize::try_from(len).expect("no NULLs in this row");
                    seen.row
                        .push(String::from_utf8_lossy(&body[at..at + len]).into_owned());
                    at += len;
                }
            }
            b'E' => panic!("query failed: {:?}", cstrings(&body)),
            b'Z' => {
                seen.ready += 1;
                break;
            }
            _ => {}
        }
    }
    stream.write_all(&tagged(b'X', &[])).unwrap();
    seen
}

/// A role with cleartext password authentication, first in pg_hba so it
/// wins, so that the raw client needs no SCRAM implementation. Returns
/// (role, password).
fn cleartext_role(s: &GatewayRun) -> (&'static str, &'static str) {
    let (role, password) = ("plainagent", "plain-secret");
    s.pg.sql(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"));
    s.pg.hba_first(&format!("host all {role} 0.0.0.0/0 password\n"));
    (role, password)
}

const V3_0: i32 = 3 << 16;
const V3_2: i32 = (3 << 16) | 2;

/// [`raw_session`] from the namespace at `ns_path`, as `role`. The pg_hba
/// reload is asynchronous: until it lands the server asks for SCRAM (10),
/// so retry, bounded, until it asks for a cleartext password (3).
fn negotiate(
    ns_path: &str,
    addr: &str,
    version: i32,
    options: &[(&str, &str)],
    (role, password): (&str, &str),
) -> Negotiated {
    let mut params = vec![
        ("user", role),
        ("database", "postgres"),
        ("application_name", "sluice-npv"),
    ];
    params.extend_from_slice(options);
    wait_for(Duration::from_secs(5), || {
        let seen = in_netns(ns_path, || raw_session(addr, version, &params, password));
        (seen.auth == 3).then_some(seen)
    })
    .unwrap_or_else(|| panic!("{addr}: the server never asked for a cleartext password"))
}

#[test]
fn a_newer_client_gets_negotiate_protocol_version_then_a_normal_session() {
    if !require_privileged("negotiate_protocol_version") {
        return;
    }
    let s = setup("p10", 20);
    let login = cleartext_role(&s);
    let addr = format!("{}:5432", s.lab.db_ip);
    // (name, version, `_pq_.` options sent, options expected back as declined)
    let cases: [NegotiationCase; 3] = [
        ("protocol 3.2", V3_2, &[], &[]),
        (
            "protocol 3.0 with a _pq_ option",
            V3_0,
            &[("_pq_.sluice_probe", "on")],
            &["_pq_.sluice_probe"],
        ),
        (
            "protocol 3.2 with two _pq_ options",
            V3_2,
            &[("_pq_.a", "1"), ("_pq_.b", "2")],
            &["_pq_.a", "_pq_.b"],
        ),
    ];
    for (name, version, options, declined) in cases {
        let seen = negotiate(&s.lab.agent.path(), &addr, version, options, login);
        // NegotiateProtocolVersion comes first, naming exactly the declined
        // options; then authentication and a query run as on 3.0. (Its
        // version field is compared with PostgreSQL's own in the next test.)
        assert_eq!(seen.first, 'v', "{name}: {seen:?}");
        assert_eq!(seen.unrecognized, declined, "{name}: {seen:?}");
        assert!(seen.auth_ok, "{name}: {seen:?}");
        assert_eq!(seen.row, ["42", login.0, "sluice-npv"], "{name}: {seen:?}");
        assert_eq!(seen.ready, 2, "{name}: {seen:?}");
    }
    // The close lines follow Terminate by a moment.
    let ended = wait_for(Duration::from_secs(10), || {
        let log = s.daemon.log_text();
        (count_lines(&log, "postgres session ended") >= 3).then_some(log)
    });
    let log = ended.unwrap_or_else(|| s.daemon.log_text());
    assert_eq!(count_lines(&log, "postgres session ended"), 3, "{log}");
}

#[test]
fn negotiate_protocol_version_matches_postgresql_and_libpq_18_accepts_it() {
    if !require_privileged("negotiate_protocol_version_libpq18") {
        return;
    }
    let Some(py) = python::interpreter("negotiate_protocol_version_libpq18") else {
        return;
    };
    let s = setup("p11", 21);
    let login = cleartext_role(&s);
    // PostgreSQL's own answer to a 3.2 startup with a `_pq_.` option, asked
    // directly on the database host (not intercepted), and sluice's.
    let options = [("_pq_.sluice_probe", "on")];
    let direct = negotiate(&s.lab.db.path(), "127.0.0.1:5432", V3_2, &options, login);
    let proxied = negotiate(
        &s.lab.agent.path(),
        &format!("{}:5432", s.lab.db_ip),
        V3_2,
        &options,
        login,
    );
    assert_eq!(direct.first, 'v', "{direct:?}");
    // PostgreSQL puts its newest *full* version (3.0 = 196608) in the
    // field the docs call "newest minor version", and libpq 18 checks it
    // as such.
    assert_eq!(direct.newest_version, V3_0, "{direct:?}");
    assert_eq!(
        (proxied.first, proxied.newest_version, &proxied.unrecognized),
        (direct.first, direct.newest_version, &direct.unrecognized),
        "sluice's NegotiateProtocolVersion differs from PostgreSQL's"
    );

    // A real client: libpq 18 (psycopg's bundled one) asked for protocol
    // 3.2 negotiates down to 3.0 through sluice and works normally.
    let conn = format!("{} max_protocol_version=3.2", info(&s, "sluice-libpq-32"));
    let script = "import sys, psycopg\n\
                  c = psycopg.connect(sys.argv[1])\n\
                  print(f'protocol={c.pgconn.full_protocol_version}')\n\
                  print(f'answer={c.execute(\"select 6 * 7\").fetchone()[0]}')\n";
    let out = s.lab.agent.try_run(
        &[py.to_str().unwrap(), "-c", script, &conn],
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "libpq 18 with max_protocol_version=3.2 through sluice: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field(&text, "protocol"), Some("30000"), "{text}");
    assert_eq!(field(&text, "answer"), Some("42"), "{text}");
}
