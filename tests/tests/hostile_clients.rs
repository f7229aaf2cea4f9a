//! Hostile clients through the gateway (issue 10), one lab per protocol:
//! garbage and lying length fields, messages over `proxy.max_message_bytes`,
//! slowloris startups dropped by `proxy.startup_timeout_ms`, a TLS
//! ClientHello and an HTTP request sent straight to the database port,
//! failed-login brute force limited per source and per identity
//! (`proxy.auth_failures_per_minute`), a session cap per identity
//! (`proxy.max_connections_per_identity`) and statements over
//! `proxy.max_statement_bytes`. Every case checks what the client is told,
//! that the attempt is recorded with its reason, and that an ordinary
//! session opened before the first case still works after each one.
//!
//! Two workload identities by source: `agent-a` is the agent host's IPv4
//! address (and a second IPv4 address added to it), `agent-b` its IPv6
//! address. Raw protocol sessions log in as a role/user that needs no
//! password (`trusty`), so garbage can follow a real login.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, ChildStdin, ChildStdout, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sluice_lab::{
    daemon::export_until,
    netns::Netns,
    packets::in_netns,
    postgres::{self, conninfo},
    python, require_privileged,
    scenario::{self, Custom},
    topology::GatewayLab,
};

/// The limits both labs run with.
const PROXY: &str = "max_connections = 8\nstartup_timeout_ms = 2000\nmax_message_bytes = 262144\n\
                     max_statement_bytes = 65536\nauth_failures_per_minute = 3\n\
                     max_connections_per_identity = 3\n";
/// The configured startup timeout.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The agent host's second IPv4 address (same identity, another source).
fn second_v4(lab: &GatewayLab) -> String {
    let (net, _) = lab.agent_ip.rsplit_once('.').unwrap();
    format!("{net}.3")
}

/// The agent host's third IPv4 address, which no identity rule names
/// (`unknown`).
fn third_v4(lab: &GatewayLab) -> String {
    let (net, _) = lab.agent_ip.rsplit_once('.').unwrap();
    format!("{net}.4")
}

/// Add [`second_v4`] and [`third_v4`] to the agent host and name both
/// identities.
fn identities(lab: &GatewayLab, tag: &str) -> String {
    let second = second_v4(lab);
    for ip in [&second, &third_v4(lab)] {
        lab.agent.run(&[
            "ip",
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &format!("sl{tag}a"),
        ]);
    }
    format!(
        "[[identities]]\nname = \"agent-a\"\nsources = [\"{}/32\", \"{second}/32\"]\n\n\
         [[identities]]\nname = \"agent-b\"\nsources = [\"{}/128\"]\n",
        lab.agent_ip, lab.agent_ip6
    )
}

/// A TCP connection from `ns` (from `src` when given) to `dst`, with a
/// 10 s read timeout.
fn connect(ns: &Netns, src: Option<&str>, dst: SocketAddr) -> TcpStream {
    let src = src.map(str::to_owned);
    in_netns(&ns.path(), move || {
        let s = match src {
            None => TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect"),
            Some(src) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let sock = tokio::net::TcpSocket::new_v4().unwrap();
                    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
                    let s = tokio::time::timeout(Duration::from_secs(5), sock.connect(dst))
                        .await
                        .expect("connect timed out")
                        .expect("connect");
                    s.into_std().unwrap()
                })
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    })
}

/// Wait (at most `limit`) for the peer to close: the time it took, or
/// None if it stayed open. Whatever it sent meanwhile is discarded.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// Six silent connections to `dst`: three from the agent's address
/// (agent-a), three from [`third_v4`] (`unknown`).
fn stall(lab: &GatewayLab, dst: SocketAddr) -> Vec<TcpStream> {
    let third = third_v4(lab);
    let mut out: Vec<TcpStream> = (0..3).map(|_| connect(&lab.agent, None, dst)).collect();
    out.extend((0..3).map(|_| connect(&lab.agent, Some(&third), dst)));
    out
}

/// Sessions in an export: id → events in order.
fn sessions(export: &str) -> BTreeMap<u64, Vec<Value>> {
    let mut out: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in export.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["type"] == "event" {
            let id = v["session"].as_u64().unwrap_or_default();
            out.entry(id).or_default().push(v["event"].clone());
        }
    }
    out
}

/// The end reasons of recorded sessions.
fn end_reasons(export: &str) -> Vec<String> {
    sessions(export)
        .values()
        .filter_map(|events| events.last())
        .filter(|e| e["kind"] == "session_end")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Ended sessions whose reason contains `needle`.
fn ended_with(export: &str, needle: &str) -> usize {
    end_reasons(export)
        .iter()
        .filter(|r| r.contains(needle))
        .count()
}

/// Denied statement events whose rule contains `needle`: their texts.
fn denied_texts(export: &str, needle: &str) -> Vec<String> {
    sessions(export)
        .values()
        .flatten()
        .filter(|e| {
            e["kind"] == "statement"
                && e["decision"] == "deny"
                && e["rule"].as_str().is_some_and(|r| r.contains(needle))
        })
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The daemon log's last lines, for failure messages.
fn log_tail(daemon: &sluice_lab::daemon::Daemon) -> String {
    let text = daemon.log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn sluice_alive(daemon: &sluice_lab::daemon::Daemon) -> bool {
    std::path::Path::new(&format!("/proc/{}", daemon.pid())).exists()
}

// ---- PostgreSQL -------------------------------------------------------

fn pg_startup(user: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", "postgres")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

/// The next backend message, None at EOF or on a read error.
fn pg_read(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let len = i32::from_be_bytes(head[1..5].try_into().unwrap());
    assert!((4..1 << 20).contains(&len), "bad length {len}");
    let mut body = vec![0u8; len as usize - 4];
    s.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

/// An ErrorResponse's SQLSTATE and message.
fn pg_error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    (code, message)
}

/// Read until an ErrorResponse (its SQLSTATE and message), ReadyForQuery
/// or EOF (None); bounded to 256 messages.
fn pg_error(s: &mut TcpStream) -> Option<(String, String)> {
    for _ in 0..256 {
        match pg_read(s)? {
            (b'E', body) => return Some(pg_error_fields(&body)),
            (b'Z', _) => return None,
            _ => {}
        }
    }
    None
}

/// A ready raw session as `trusty` (no password) from `src` on `ns`.
fn pg_login(ns: &Netns, src: Option<&str>, dst: SocketAddr) -> TcpStream {
    let mut s = connect(ns, src, dst);
    s.write_all(&pg_startup("trusty")).unwrap();
    for _ in 0..64 {
        match pg_read(&mut s) {
            Some((b'Z', _)) => return s,
            Some((b'E', body)) => panic!("login as trusty: {:?}", pg_error_fields(&body)),
            Some(_) => {}
            None => panic!("login as trusty: connection closed"),
        }
    }
    panic!("login as trusty: no ReadyForQuery");
}

/// psql on `ns` with `info`, bounded to 20 s: (success, stdout, stderr).
fn psql(ns: &Netns, info: &str, sql: &str) -> (bool, String, String) {
    let out = ns.try_run(
        &["psql", "-X", "-Atq", info, "-c", sql],
        Duration::from_secs(20),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pg_info(host: &str, password: &str) -> String {
    format!(
        "host={host} port=5432 user={} password={password} dbname=postgres connect_timeout=10 sslmode=disable",
        postgres::USER
    )
}

/// The ordinary session: tokio-postgres from agent-b, opened before the
/// first case and used after each.
struct Ordinary {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Ordinary {
    fn open(lab: &GatewayLab) -> Ordinary {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let std = connect(
            &lab.agent,
            None,
            format!("[{}]:5432", lab.db_ip6).parse().unwrap(),
        );
        std.set_nonblocking(true).unwrap();
        let config: tokio_postgres::Config = conninfo(&lab.db_ip6, 5432).parse().unwrap();
        let client = rt.block_on(async {
            let stream = tokio::net::TcpStream::from_std(std).unwrap();
            let (client, connection) = config
                .connect_raw(stream, tokio_postgres::NoTls)
                .await
                .expect("the ordinary session logs in");
            tokio::spawn(connection);
            client
        });
        Ordinary { rt, client }
    }

    /// `select 41 + n`, which must answer.
    fn check(&self, n: i32, after: &str) {
        let rows = self
            .rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    self.client.query_one("select 41 + $1::int", &[&n]),
                )
                .await
            })
            .unwrap_or_else(|_| panic!("ordinary session timed out after {after}"))
            .unwrap_or_else(|e| panic!("ordinary session failed after {after}: {e}"));
        assert_eq!(rows.get::<_, i32>(0), 41 + n, "after {after}");
    }
}

#[test]
fn hc1_postgres_hostile_clients() {
    if !require_privileged("hc1") {
        return;
    }
    let tag = "hc1";
    let run = scenario::start_custom(tag, 54, |p| {
        // `trusty` logs in without a password, so raw sessions get past
        // the login to send what a hostile client sends next.
        p.pg.sql("CREATE ROLE trusty LOGIN");
        p.pg.hba_first("host all trusty 0.0.0.0/0 trust\nhost all trusty ::/0 trust\n");
        Custom {
            proxy: PROXY.into(),
            sections: identities(p.lab, tag),
            ..Custom::default()
        }
    });
    let lab = &run.lab;
    let v4: SocketAddr = format!("{}:5432", lab.db_ip).parse().unwrap();
    let second = second_v4(lab);
    let ordinary = Ordinary::open(lab);
    ordinary.check(1, "start");

    // 1. Garbage and lying lengths before and after the login: a FATAL
    // 08P01 from sluice, then the connection closes.
    let before_login: [(&str, Vec<u8>); 4] = [
        (
            "garbage",
            b"\x00\x00\x00\x10\xde\xad\xbe\xef\x01\x02\x03\x04\x05\x06\x07\x08".to_vec(),
        ),
        ("huge length", b"\x7f\xff\xff\xff\x00\x03\x00\x00".to_vec()),
        (
            "negative length",
            b"\xff\xff\xff\xf0\x00\x03\x00\x00".to_vec(),
        ),
        ("length below the header", b"\x00\x00\x00\x02".to_vec()),
    ];
    for (what, bytes) in &before_login {
        let mut s = connect(&lab.agent, None, v4);
        s.write_all(bytes).unwrap();
        let (code, message) = pg_error(&mut s).unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(code, "08P01", "{what}: {message}");
        assert!(
            message.contains("invalid startup packet"),
            "{what}: {message}"
        );
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).is_some(),
            "{what}"
        );
    }
    let after_login: [(&str, Vec<u8>); 3] = [
        // Over max_message_bytes (256 KiB): refused from the header.
        ("oversized query", {
            let mut m = b"Q".to_vec();
            m.extend_from_slice(&(1i32 << 20).to_be_bytes());
            m
        }),
        ("negative query length", b"Q\xff\xff\xff\x00".to_vec()),
        (
            "query length below the header",
            b"Q\x00\x00\x00\x02".to_vec(),
        ),
    ];
    for (what, bytes) in &after_login {
        let mut s = pg_login(&lab.agent, None, v4);
        s.write_all(bytes).unwrap();
        let (code, message) = pg_error(&mut s).unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(code, "08P01", "{what}: {message}");
        assert!(
            message.contains("invalid message from the client"),
            "{what}: {message}"
        );
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).is_some(),
            "{what}"
        );
    }
    ordinary.check(2, "malformed messages");

    // 2. Protocol confusion: a TLS ClientHello (no SSLRequest first) and
    // an HTTP request, straight to the database port.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0x5a; 32]);
    let confusion: [(&str, Vec<u8>, &str); 2] = [
        ("TLS ClientHello", hello, "TLS ClientHello"),
        (
            "HTTP request",
            format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", lab.db_ip).into_bytes(),
            "HTTP request",
        ),
    ];
    for (what, bytes, named) in &confusion {
        let mut s = connect(&lab.agent, None, v4);
        s.write_all(bytes).unwrap();
        let (code, message) = pg_error(&mut s).unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(code, "08P01", "{what}: {message}");
        assert!(message.contains(named), "{what}: {message}");
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).is_some(),
            "{what}"
        );
    }
    ordinary.check(3, "protocol confusion");

    // 3. Slowloris: with the ordinary session (on IPv6), seven stalled
    // connections on IPv4 fill max_connections = 8: six silent ones, then
    // one dribbling its startup packet a byte every 500 ms. A new client on
    // IPv6 waits until the startup timeout drops them, then gets in. The
    // cap counts sessions across both listeners, not permits held by an
    // idle accept loop: were it the latter, the IPv6 loop would keep a
    // slot free for the new client and the dribbler would be the one kept
    // waiting.
    let mut stalled = stall(lab, v4);
    let dribbler = connect(&lab.agent, None, v4);
    let started = Instant::now();
    let dribble = std::thread::spawn(move || {
        let mut s = dribbler;
        let startup = pg_startup("agent");
        let mut sent = 0;
        for b in &startup {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            if closed_within(&mut s, Duration::from_millis(500)).is_some() {
                return (sent, Some(started.elapsed()));
            }
        }
        (
            sent,
            closed_within(&mut s, Duration::from_secs(10)).map(|_| started.elapsed()),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let waited = Instant::now();
    let late = psql(
        &lab.agent,
        &pg_info(&lab.db_ip6, postgres::PASSWORD),
        "select 'late'",
    );
    let late_wait = waited.elapsed();
    assert!(late.0 && late.1 == "late", "{late:?}");
    for s in &mut stalled {
        assert!(
            closed_within(s, Duration::from_secs(10)).is_some(),
            "a silent client is dropped"
        );
    }
    let (dribbled, dribble_closed) = dribble.join().unwrap();
    let dribble_closed = dribble_closed.expect("the dribbling client is dropped");
    eprintln!(
        "slowloris: new client waited {late_wait:?}; silent ones closed by {:?}; the dribbler after {dribbled} bytes at {dribble_closed:?}",
        started.elapsed()
    );
    assert!(
        late_wait >= Duration::from_millis(1000),
        "the new client did not wait for a slot ({late_wait:?}): the cap was not full"
    );
    assert!(
        late_wait < TIMEOUT + Duration::from_secs(5),
        "{late_wait:?}"
    );
    assert!(
        dribble_closed >= TIMEOUT - Duration::from_millis(300)
            && dribble_closed < TIMEOUT + Duration::from_secs(3),
        "{dribble_closed:?}"
    );
    assert!(dribbled < pg_startup("agent").len(), "{dribbled}");
    ordinary.check(4, "slowloris");

    // 4. Statements over max_statement_bytes (64 KiB), simple and
    // extended: 54000, recorded as denied, and the session goes on.
    let big = format!("select '{}'", "x".repeat(70_000));
    let err = ordinary
        .rt
        .block_on(ordinary.client.simple_query(&big))
        .expect_err("an over-long simple query is refused");
    assert_eq!(err.code().map(|c| c.code()), Some("54000"), "{err}");
    ordinary.check(5, "an over-long simple query");
    let big_param = format!("select $1::text || '{}'", "y".repeat(70_000));
    let err = ordinary
        .rt
        .block_on(ordinary.client.query(&big_param, &[&"a"]))
        .expect_err("an over-long Parse is refused");
    assert_eq!(err.code().map(|c| c.code()), Some("54000"), "{err}");
    assert!(
        format!("{err:?}").contains("proxy.max_statement_bytes"),
        "{err:?}"
    );
    ordinary.check(6, "an over-long Parse");

    // 5. Sessions per identity (3): agent-a's fourth is refused with
    // 53300 while agent-b still connects; closing one frees its slot.
    let mut held: Vec<TcpStream> = (0..3).map(|_| pg_login(&lab.agent, None, v4)).collect();
    let mut fourth = connect(&lab.agent, None, v4);
    fourth.write_all(&pg_startup("trusty")).unwrap();
    let (code, message) = pg_error(&mut fourth).expect("the fourth session is refused");
    assert_eq!(code, "53300", "{message}");
    assert!(
        message.contains("too many connections for identity \"agent-a\""),
        "{message}"
    );
    let other = psql(
        &lab.agent,
        &pg_info(&lab.db_ip6, postgres::PASSWORD),
        "select 'b'",
    );
    assert!(other.0 && other.1 == "b", "{other:?}");
    let first = held.remove(0);
    drop(first);
    let freed = (0..20).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let mut s = connect(&lab.agent, None, v4);
        s.write_all(&pg_startup("trusty")).unwrap();
        pg_error(&mut s).is_none().then_some(s)
    });
    assert!(freed.is_some(), "a closed session's slot is given back");
    drop(held);
    drop(freed);
    ordinary.check(7, "the identity cap");

    // 6. Brute force: psql with a wrong password from agent-a, three
    // times (the database refuses: 28P01); the fourth attempt, and then
    // even the right password, are refused by sluice at once without
    // dialling the database. The same identity from its other address is
    // refused too (per identity and user); agent-b logs in.
    let wrong = pg_info(&lab.db_ip, "wrong-password");
    for i in 0..3 {
        let r = psql(&lab.agent, &wrong, "select 1");
        assert!(
            !r.0 && r.2.contains("password authentication failed"),
            "{i}: {r:?}"
        );
    }
    let dials = |run: &scenario::GatewayRun| {
        let needle = format!("host={}", run.lab.gw_db_ip);
        run.pg
            .log_text()
            .lines()
            .filter(|l| l.contains("connection received") && l.contains(&needle))
            .count()
    };
    let dialled = dials(&run);
    let refused_at = Instant::now();
    let r = psql(&lab.agent, &wrong, "select 1");
    let refused_in = refused_at.elapsed();
    assert!(
        !r.0 && r.2.contains("too many failed logins from source"),
        "{r:?}"
    );
    let r = psql(
        &lab.agent,
        &pg_info(&lab.db_ip, postgres::PASSWORD),
        "select 1",
    );
    assert!(
        !r.0 && r.2.contains("too many failed logins from source"),
        "{r:?}"
    );
    let mut s = connect(&lab.agent, Some(&second), v4);
    s.write_all(&pg_startup(postgres::USER)).unwrap();
    let (code, message) = pg_error(&mut s).expect("the identity is refused too");
    assert_eq!(code, "28000", "{message}");
    assert!(
        message.contains("identity agent-a as user \"agent\""),
        "{message}"
    );
    assert_eq!(
        dials(&run),
        dialled,
        "a refused attempt never reaches the database"
    );
    let b = psql(
        &lab.agent,
        &pg_info(&lab.db_ip6, postgres::PASSWORD),
        "select 'b ok'",
    );
    assert!(b.0 && b.1 == "b ok", "{b:?}");
    eprintln!("brute force: refused by sluice in {refused_in:?}");
    ordinary.check(8, "brute force");
    assert!(sluice_alive(&run.daemon), "the daemon is still running");

    // The record of each case, with its reason.
    let export = export_until(&run.daemon, &run.scratch.0, |e| {
        ended_with(e, "too many failed logins") >= 3
            && ended_with(e, "startup did not complete within 2 s") >= 7
    });
    for (needle, at_least) in [
        ("invalid startup packet", 0),
        ("client sent an invalid message", 4),
        ("exceeds the maximum of 262144", 1),
        (
            "startup did not complete within 2 s (proxy.startup_timeout_ms)",
            7,
        ),
        ("too many connections for identity \"agent-a\"", 1),
        ("login refused by the database: 28P01", 3),
        ("too many failed logins from source", 2),
        ("too many failed logins from identity agent-a", 1),
    ] {
        let n = ended_with(&export, needle);
        assert!(
            n >= at_least,
            "{needle}: {n} < {at_least}: {:#?}",
            end_reasons(&export)
        );
    }
    // Garbage before the login, and the confused protocols, are recorded
    // with the client's words.
    assert!(
        end_reasons(&export)
            .iter()
            .filter(|r| r.contains("client sent an invalid message"))
            .count()
            >= before_login.len() + confusion.len() + after_login.len(),
        "{:#?}",
        end_reasons(&export)
    );
    let denied = denied_texts(&export, "proxy.max_statement_bytes");
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(
        denied
            .iter()
            .all(|t| t.len() < 1200 && t.contains("clipped by sluice")),
        "{denied:?}"
    );
}

// ---- MySQL ------------------------------------------------------------

/// Parallel guesses: twelve raw sessions from one source start at once as
/// `guessme` (cleartext password auth) and each waits a second after the
/// database asks for the password before it sends a wrong one. Every login
/// holds its place in the failed-login budget until the database's
/// verdict, so `auth_failures_per_minute` (3) of them reach the database
/// and the other nine wait at sluice, then are refused once the three
/// have failed. (Before, all twelve passed the check while no failure was
/// counted yet, and all twelve guesses reached the database.) Then a pool
/// from the other identity opens ten sessions at once with the right
/// password, more than the limit in flight: every one logs in.
#[test]
fn hc3_parallel_guesses_reach_the_database_at_most_the_limit() {
    if !require_privileged("hc3") {
        return;
    }
    let tag = "hc3";
    let run = scenario::start_custom(tag, 62, |p| {
        p.pg.sql("CREATE ROLE guessme LOGIN PASSWORD 'right-password'");
        p.pg.hba_first("host all guessme 0.0.0.0/0 password\nhost all guessme ::/0 password\n");
        Custom {
            proxy: "auth_failures_per_minute = 3\n".into(),
            sections: identities(p.lab, tag),
            ..Custom::default()
        }
    });
    let lab = &run.lab;
    let v4: SocketAddr = format!("{}:5432", lab.db_ip).parse().unwrap();
    let guesses_in_db = || {
        run.pg
            .log_text()
            .matches("password authentication failed for user \"guessme\"")
            .count()
    };
    assert_eq!(guesses_in_db(), 0);

    let go = Instant::now() + Duration::from_secs(1);
    let outcomes: Vec<(bool, String, String)> = std::thread::scope(|scope| {
        let guesses: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(|| {
                    let mut s = connect(&lab.agent, None, v4);
                    s.write_all(&pg_startup("guessme")).unwrap();
                    match pg_read(&mut s) {
                        // AuthenticationCleartextPassword: the database asks.
                        Some((b'R', body)) if body == 3i32.to_be_bytes() => {}
                        Some((b'E', body)) => {
                            let (code, message) = pg_error_fields(&body);
                            return (false, code, message);
                        }
                        other => panic!("unexpected first answer: {other:?}"),
                    }
                    std::thread::sleep(go.saturating_duration_since(Instant::now()));
                    let mut msg = vec![b'p'];
                    msg.extend_from_slice(&(4 + 15i32).to_be_bytes());
                    msg.extend_from_slice(b"wrong-password\0");
                    s.write_all(&msg).unwrap();
                    let (code, message) = pg_error(&mut s).expect("the guess is refused");
                    (true, code, message)
                })
            })
            .collect();
        guesses.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let asked = outcomes.iter().filter(|o| o.0).count();
    eprintln!(
        "parallel guesses: {asked} asked for a password by the database, {} refused by sluice",
        12 - asked
    );
    for (by_db, code, message) in &outcomes {
        if *by_db {
            assert_eq!(code, "28P01", "{message}");
        } else {
            assert_eq!(code, "28000", "{message}");
            assert!(message.contains("too many failed logins from"), "{message}");
        }
    }
    assert_eq!(asked, 3, "{outcomes:?}");
    // The database's own count agrees: three guesses got there.
    let in_db = sluice_lab::wait_for(Duration::from_secs(5), || {
        let n = guesses_in_db();
        (n >= 3).then_some(n)
    })
    .expect("the database logged its refusals");
    assert_eq!(in_db, 3, "{}", run.pg.log_text());

    // A pool from agent-b: ten logins at once, more than the limit.
    let good = pg_info(&lab.db_ip6, postgres::PASSWORD);
    let children: Vec<_> = (0..10)
        .map(|i| {
            lab.agent
                .command(&[
                    "psql",
                    "-X",
                    "-Atq",
                    &good,
                    "-c",
                    &format!("select 'pool {i}'"),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn psql")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        // connect_timeout=10 bounds each client.
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim() == format!("pool {i}"),
            "pool session {i}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(sluice_alive(&run.daemon), "the daemon is still running");
}

/// The next packet (sequence id, payload), None at EOF or on an error.
fn my_read(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).ok()?;
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((head[3], payload))
}

fn my_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut p = len.to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

/// An ERR packet's code and message (skipping the SQLSTATE marker).
fn my_err(payload: &[u8]) -> Option<(u16, String)> {
    if payload.first() != Some(&0xff) || payload.len() < 3 {
        return None;
    }
    let code = u16::from_le_bytes([payload[1], payload[2]]);
    let rest = &payload[3..];
    let rest = if rest.first() == Some(&b'#') && rest.len() >= 6 {
        &rest[6..]
    } else {
        rest
    };
    Some((code, String::from_utf8_lossy(rest).into_owned()))
}

/// HandshakeResponse41 for `user` with an empty password.
fn my_response(user: &str) -> Vec<u8> {
    // LONG_PASSWORD | CONNECT_WITH_DB | PROTOCOL_41 | TRANSACTIONS |
    // SECURE_CONNECTION | PLUGIN_AUTH
    let caps: u32 = 0x1 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x80000;
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(0);
    p.extend_from_slice(b"shop\0mysql_native_password\0");
    p
}

/// A ready raw session as `trusty` (no password).
fn my_login(ns: &Netns, dst: SocketAddr) -> TcpStream {
    let mut s = connect(ns, None, dst);
    let (_, greeting) = my_read(&mut s).expect("a greeting");
    assert!(my_err(&greeting).is_none(), "{:?}", my_err(&greeting));
    s.write_all(&my_packet(1, &my_response("trusty"))).unwrap();
    let (_, ok) = my_read(&mut s).expect("an answer to the login");
    assert_eq!(ok.first(), Some(&0), "login as trusty: {:?}", my_err(&ok));
    s
}

/// Run one command (sequence id 0) and read its whole answer: the ERR,
/// or OK, or a text result set up to its closing EOF. Bounded.
fn my_command(s: &mut TcpStream, command: u8, body: &[u8]) -> Result<usize, (u16, String)> {
    let mut payload = vec![command];
    payload.extend_from_slice(body);
    s.write_all(&my_packet(0, &payload)).unwrap();
    let (_, first) = my_read(s).expect("an answer");
    if let Some(e) = my_err(&first) {
        return Err(e);
    }
    if first.first() == Some(&0) {
        return Ok(0);
    }
    // Column definitions, EOF, rows, EOF.
    let mut eofs = 0;
    let mut packets = 0;
    for _ in 0..10_000 {
        let (_, p) = my_read(s).expect("the rest of the result");
        packets += 1;
        if p.first() == Some(&0xfe) && p.len() < 9 {
            eofs += 1;
            if eofs == 2 {
                return Ok(packets);
            }
        }
        if let Some(e) = my_err(&p) {
            return Err(e);
        }
    }
    panic!("no end of the result");
}

/// The ordinary MySQL session: PyMySQL from agent-b, fed statements.
struct MyOrdinary {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl MyOrdinary {
    fn open(lab: &GatewayLab, python: &std::path::Path) -> MyOrdinary {
        let script = python::script("hostile_mysql.py");
        let mut child = lab
            .agent
            .command(&[
                "timeout",
                "300",
                python.to_str().unwrap(),
                script.to_str().unwrap(),
                "hold",
                &lab.db_ip6,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the ordinary MySQL client");
        let input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the ordinary session logs in");
        MyOrdinary {
            child,
            input,
            output,
        }
    }

    fn run(&mut self, sql: &str) -> String {
        writeln!(self.input, "{sql}").unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    fn check(&mut self, n: i32, after: &str) {
        let got = self.run(&format!("SELECT 41 + {n}"));
        assert_eq!(got, format!("result={}", 41 + n), "after {after}");
    }
}

impl Drop for MyOrdinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pymysql_login(
    run: &scenario::MysqlRun,
    python: &std::path::Path,
    host: &str,
    password: &str,
) -> String {
    let r = run.agent_script(
        python,
        "hostile_mysql.py",
        &["login", host, sluice_lab::mariadb::USER, password],
        Duration::from_secs(30),
    );
    format!("{}{}", r.1, r.2)
}

/// MySQL's server speaks first, so sluice dials the database before a
/// client says anything. Eight silent connections from one source, with
/// `auth_failures_per_minute = 3`: each login holds a place in its
/// source's budget from before the dial, so three are dialled (and get the
/// database's greeting) and five wait in sluice with no database
/// connection, until the startup timeout drops them all. Before, all eight
/// held a database connection. A client from the same source then logs in.
#[test]
fn hc4_silent_mysql_clients_hold_at_most_the_limit_of_database_connections() {
    if !require_privileged("hc4") {
        return;
    }
    let tag = "hc4";
    let run = scenario::start_mysql(tag, 63, |p| Custom {
        proxy: "auth_failures_per_minute = 3\nstartup_timeout_ms = 5000\n".into(),
        sections: identities(p.lab, tag),
        ..Custom::default()
    });
    let lab = &run.lab;
    let v4: SocketAddr = format!("{}:3306", lab.db_ip).parse().unwrap();
    let mut silent: Vec<TcpStream> = (0..8).map(|_| connect(&lab.agent, None, v4)).collect();
    let handshakes_in_db = || {
        run.db
            .sql(&format!(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE host LIKE '{}:%'",
                lab.gw_db_ip
            ))
            .parse::<usize>()
            .unwrap()
    };
    // Greeted ones were dialled (sluice relays the database's greeting).
    let started = Instant::now();
    let mut greeted = 0;
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_millis(150)))
            .unwrap();
        if my_read(s).is_some() {
            greeted += 1;
        }
    }
    let in_db = handshakes_in_db();
    eprintln!(
        "hc4: {greeted} of 8 greeted, {in_db} handshakes at the database after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "read before the timeout"
    );
    assert_eq!(greeted, 3);
    assert_eq!(in_db, 3);
    // The startup timeout ends them all; the source logs in again.
    let freed = sluice_lab::wait_for(Duration::from_secs(10), || {
        let r = run.agent_mysql(&lab.db_ip, "SELECT 'after the silent ones'");
        (r.0 && r.1.contains("after the silent ones")).then_some(())
    });
    assert!(
        freed.is_some(),
        "the source could not log in after the timeout"
    );
    drop(silent);
    assert!(sluice_alive(&run.daemon), "the daemon is still running");
}

#[test]
fn hc2_mysql_hostile_clients() {
    if !require_privileged("hc2") {
        return;
    }
    let Some(python) = python::mysql_interpreter("hc2") else {
        return;
    };
    let tag = "hc2";
    let run = scenario::start_mysql(tag, 55, |p| {
        p.db.sql("CREATE USER 'trusty'@'%'; GRANT SELECT ON shop.* TO 'trusty'@'%'");
        Custom {
            proxy: PROXY.into(),
            sections: identities(p.lab, tag),
            ..Custom::default()
        }
    });
    let lab = &run.lab;
    let v4: SocketAddr = format!("{}:3306", lab.db_ip).parse().unwrap();
    let second = second_v4(lab);
    let mut ordinary = MyOrdinary::open(lab, &python);
    ordinary.check(1, "start");

    // 1. Garbage for a handshake response: ERR 1156, closed.
    for (what, bytes, named) in [
        ("garbage", b"hello, sluice\r\n".to_vec(), ""),
        (
            "TLS ClientHello",
            [
                0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
            ]
            .to_vec(),
            "TLS ClientHello",
        ),
        (
            "HTTP request",
            format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", lab.db_ip).into_bytes(),
            "HTTP request",
        ),
    ] {
        let mut s = connect(&lab.agent, None, v4);
        let (_, greeting) = my_read(&mut s).expect("a greeting");
        assert!(my_err(&greeting).is_none(), "{what}");
        s.write_all(&bytes).unwrap();
        let (_, answer) = my_read(&mut s).unwrap_or_else(|| panic!("{what}: no answer"));
        let (code, message) = my_err(&answer).unwrap_or_else(|| panic!("{what}: not an ERR"));
        assert_eq!(code, 1156, "{what}: {message}");
        assert!(
            message.contains("invalid handshake packet") && message.contains(named),
            "{what}: {message}"
        );
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).is_some(),
            "{what}"
        );
    }
    // After the login: an empty command is refused and the session goes
    // on; a packet over max_message_bytes ends it with ERR 1153.
    let mut s = my_login(&lab.agent, v4);
    let empty = my_command(&mut s, 0x03, b"").err();
    assert!(empty.is_some(), "an empty COM_QUERY is refused");
    s.write_all(&my_packet(0, &[])).unwrap();
    let (_, answer) = my_read(&mut s).expect("an answer to an empty packet");
    assert_eq!(my_err(&answer).map(|e| e.0), Some(1156), "{answer:?}");
    assert!(
        my_command(&mut s, 0x03, b"SELECT 1").is_ok(),
        "the session goes on"
    );
    s.write_all(&[0x00, 0x00, 0x10, 0x00, 0x03]).unwrap(); // 1 MiB declared
    let (_, answer) = my_read(&mut s).expect("an answer to an oversized packet");
    let (code, message) = my_err(&answer).expect("ERR");
    assert_eq!(code, 1153, "{message}");
    assert!(message.contains("proxy.max_message_bytes"), "{message}");
    assert!(closed_within(&mut s, Duration::from_secs(5)).is_some());
    ordinary.check(2, "malformed packets");

    // 2. Statements over max_statement_bytes: COM_QUERY and
    // COM_STMT_PREPARE refused (1142), the session goes on.
    let mut s = my_login(&lab.agent, v4);
    let big = format!("SELECT '{}'", "x".repeat(70_000));
    let (code, message) = my_command(&mut s, 0x03, big.as_bytes()).expect_err("refused");
    assert_eq!(code, 1142, "{message}");
    assert!(message.contains("proxy.max_statement_bytes"), "{message}");
    let (code, message) = my_command(&mut s, 0x16, big.as_bytes()).expect_err("refused");
    assert_eq!(code, 1142, "{message}");
    assert!(
        my_command(&mut s, 0x03, b"SELECT 2").is_ok(),
        "the session goes on"
    );
    drop(s);
    let got = ordinary.run("BIG 70000");
    assert!(
        got.starts_with("error=1142") && got.contains("proxy.max_statement_bytes"),
        "{got}"
    );
    ordinary.check(3, "over-long statements");

    // 3. Slowloris: seven stalled connections and the ordinary session
    // fill max_connections = 8 (as in hc1); a new client waits until the
    // startup timeout drops them. Three silent ones are agent-a's (its
    // cap), three `unknown`'s, and the dribbler is agent-b's: a fourth of
    // one identity would be refused at once.
    let mut stalled = stall(lab, v4);
    let v6: SocketAddr = format!("[{}]:3306", lab.db_ip6).parse().unwrap();
    let dribbler = connect(&lab.agent, None, v6);
    let started = Instant::now();
    let dribble = std::thread::spawn(move || {
        let mut s = dribbler;
        let _ = my_read(&mut s);
        let response = my_packet(1, &my_response("trusty"));
        let mut sent = 0;
        for b in &response {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            if closed_within(&mut s, Duration::from_millis(500)).is_some() {
                return (sent, Some(started.elapsed()));
            }
        }
        (
            sent,
            closed_within(&mut s, Duration::from_secs(10)).map(|_| started.elapsed()),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let waited = Instant::now();
    let late = pymysql_login(&run, &python, &lab.db_ip6, sluice_lab::mariadb::PASSWORD);
    let late_wait = waited.elapsed();
    assert!(late.contains("outcome=ok"), "{late}");
    for s in &mut stalled {
        assert!(
            closed_within(s, Duration::from_secs(10)).is_some(),
            "a silent client is dropped"
        );
    }
    let (dribbled, dribble_closed) = dribble.join().unwrap();
    let dribble_closed = dribble_closed.expect("the dribbling client is dropped");
    eprintln!(
        "slowloris (mysql): new client waited {late_wait:?}; the dribbler closed after {dribbled} bytes at {dribble_closed:?}"
    );
    assert!(late_wait >= Duration::from_millis(1000), "{late_wait:?}");
    assert!(
        dribble_closed >= TIMEOUT - Duration::from_millis(300)
            && dribble_closed < TIMEOUT + Duration::from_secs(3),
        "{dribble_closed:?}"
    );
    ordinary.check(4, "slowloris");

    // 4. Sessions per identity (3): agent-a's fourth gets ERR 1203 in
    // place of the greeting; agent-b still connects.
    let held: Vec<TcpStream> = (0..3).map(|_| my_login(&lab.agent, v4)).collect();
    let mut fourth = connect(&lab.agent, None, v4);
    let (seq, answer) =
        my_read(&mut fourth).unwrap_or_else(|| panic!("no answer:\n{}", log_tail(&run.daemon)));
    let (code, message) = my_err(&answer).expect("ERR in place of the greeting");
    assert_eq!((seq, code), (0, 1203), "{message}");
    assert!(
        message.contains("too many connections for identity \"agent-a\""),
        "{message}"
    );
    // The mariadb CLI hears it as a server's refusal (no SQLSTATE marker
    // in the text before the handshake).
    let cli = run.agent_mysql(&lab.db_ip, "SELECT 1");
    assert!(
        !cli.0
            && cli.2.contains("ERROR 1203")
            && cli.2.contains("sluice: too many connections for identity")
            && !cli.2.contains("#42000"),
        "{cli:?}"
    );
    let b = pymysql_login(&run, &python, &lab.db_ip6, sluice_lab::mariadb::PASSWORD);
    assert!(b.contains("outcome=ok"), "{b}");
    drop(held);
    ordinary.check(5, "the identity cap");

    // 5. Brute force with PyMySQL: three wrong passwords (1045 from the
    // database), then 1129 from sluice before the database is dialled,
    // even with the right password; the identity from its other address
    // is refused once it names the user; agent-b logs in.
    for i in 0..3 {
        let r = pymysql_login(&run, &python, &lab.db_ip, "wrong-password");
        assert!(r.contains("code=1045"), "{i}: {r}");
    }
    let dialled = run.db.connections_from(&lab.gw_db_ip);
    let r = pymysql_login(&run, &python, &lab.db_ip, "wrong-password");
    assert!(
        r.contains("code=1129") && r.contains("too many failed logins from source"),
        "{r}"
    );
    let r = pymysql_login(&run, &python, &lab.db_ip, sluice_lab::mariadb::PASSWORD);
    assert!(r.contains("code=1129"), "{r}");
    let cli = run.agent_mysql(&lab.db_ip, "SELECT 1");
    assert!(
        !cli.0
            && cli.2.contains("ERROR 1129")
            && cli.2.contains("sluice: too many failed logins from source")
            && !cli.2.contains("#HY000"),
        "{cli:?}"
    );
    assert_eq!(
        run.db.connections_from(&lab.gw_db_ip),
        dialled,
        "a blocked source never reaches the database"
    );
    let mut s = connect(&lab.agent, Some(&second), v4);
    let (_, greeting) = my_read(&mut s).expect("a greeting for a new source");
    assert!(my_err(&greeting).is_none());
    s.write_all(&my_packet(1, &my_response(sluice_lab::mariadb::USER)))
        .unwrap();
    let (_, answer) = my_read(&mut s).expect("an answer");
    let (code, message) = my_err(&answer).expect("ERR");
    assert_eq!(code, 1129, "{message}");
    assert!(
        message.contains("identity agent-a as user \"agent\""),
        "{message}"
    );
    let b = pymysql_login(&run, &python, &lab.db_ip6, sluice_lab::mariadb::PASSWORD);
    assert!(b.contains("outcome=ok"), "{b}");
    ordinary.check(6, "brute force");
    assert!(sluice_alive(&run.daemon), "the daemon is still running");

    let export = export_until(&run.daemon, &run.scratch.0, |e| {
        ended_with(e, "too many failed logins") >= 3
            && ended_with(e, "handshake did not complete within 2 s") >= 7
    });
    for (needle, at_least) in [
        ("invalid handshake packet", 0),
        ("client sent an invalid packet", 3),
        ("proxy.max_message_bytes", 1),
        (
            "handshake did not complete within 2 s (proxy.startup_timeout_ms)",
            7,
        ),
        ("too many connections for identity \"agent-a\"", 1),
        ("login refused by the database: 1045", 3),
        ("too many failed logins from source", 2),
        ("too many failed logins from identity agent-a", 1),
    ] {
        let n = ended_with(&export, needle);
        assert!(
            n >= at_least,
            "{needle}: {n} < {at_least}: {:#?}",
            end_reasons(&export)
        );
    }
    let denied = denied_texts(&export, "proxy.max_statement_bytes");
    assert_eq!(denied.len(), 3, "{denied:?}");
    assert!(
        denied.iter().all(|t| t.contains("clipped by sluice")),
        "{denied:?}"
    );
}
