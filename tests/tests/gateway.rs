//! Gateway mode, end to end: real kernel eBPF (tc ingress) in network
//! namespaces, a real PostgreSQL 15, unmodified psql and psycopg2 as agents.
use std::{fs, time::Duration};

use sluice_lab::{
    postgres::conninfo,
    require_privileged,
    scenario::{self, GatewayRun},
};

/// Fields drop in order: the daemon (and its cleanup, which runs inside the
/// gateway namespace) before the database, the namespaces and the scratch dir.
fn setup(tag: &str, index: u8) -> GatewayRun {
    scenario::start(tag, index, "")
}

#[test]
fn agent_reaches_database_through_sluice_with_psql_and_psycopg() {
    if !require_privileged("agent_reaches_database_through_sluice") {
        return;
    }
    let s = setup("g1", 1);

    // Unmodified psql, dialling the database's own address.
    let (ok, out, err) = s.agent_psql(&s.lab.db_ip, "select inet_client_addr()");
    assert!(
        ok,
        "psql through sluice failed: {err}\n{}",
        s.daemon.log_text()
    );
    // The database sees the gateway, not the agent: the flow was proxied.
    assert_eq!(out, s.lab.gw_db_ip, "database saw {out} as the client");
    assert_eq!(
        s.direct_connections_from(&s.lab.agent_ip),
        0,
        "a connection reached the database un-proxied"
    );

    // psycopg2 (Python driver), same address.
    let script = format!(
        "import psycopg2\nc = psycopg2.connect({:?})\ncur = c.cursor()\ncur.execute('select host(inet_client_addr()), count(*) from generate_series(1, 50000)')\nprint(*cur.fetchone())\n",
        conninfo(&s.lab.db_ip, 5432)
    );
    let out = s.lab.agent.try_run(
        &["/usr/bin/python3", "-c", &script],
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "psycopg2 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} 50000", s.lab.gw_db_ip)
    );

    // Attached and serving, sluice holds only CAP_NET_ADMIN (12) and
    // CAP_BPF (39), in every thread: it was started as root with them all.
    let serving = (1u64 << 12) | (1u64 << 39);
    let threads = s.daemon.thread_caps();
    assert!(threads.len() > 2, "{threads:?}");
    for (name, eff, prm, bnd) in &threads {
        assert!(
            *eff == serving && *prm == serving && *bnd == serving,
            "thread {name} holds CapEff {eff:x} CapPrm {prm:x} CapBnd {bnd:x}, want {serving:x}"
        );
    }

    // The store and its signing key are the owner's alone: every file mode
    // 600 or tighter, every directory 700 (the daemon sets umask 077).
    let mut private = vec![s.scratch.0.join("audit.key")];
    let mut dirs = vec![sluice_lab::daemon::store_dir(&s.scratch.0)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path.clone());
            }
            private.push(path);
        }
        private.push(dir);
    }
    assert!(private.len() > 5, "{private:?}");
    for path in &private {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
    }

    // sluice logged who the agent was and where it was going.
    let log = s.daemon.log_text();
    let opened: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session opened"))
        .collect();
    assert!(
        opened.len() >= 2,
        "expected two sessions in the log:\n{log}"
    );
    for line in &opened {
        assert!(
            line.contains(&format!("original_dst={}:5432", s.lab.db_ip)),
            "{line}"
        );
        assert!(
            line.contains(&format!("client={}:", s.lab.agent_ip)),
            "{line}"
        );
        assert!(
            line.contains(&format!("interface={}", s.lab.gw_agent_if)),
            "{line}"
        );
        assert!(!line.contains("mac=?"), "MAC missing: {line}");
    }
    // Close lines follow the client's exit by a moment: wait for them (bounded).
    let closed = sluice_lab::wait_for(Duration::from_secs(5), || {
        let n = s
            .daemon
            .log_text()
            .lines()
            .filter(|l| l.contains("session closed") && l.contains("bytes_down="))
            .count();
        (n >= 2).then_some(n)
    });
    assert!(
        closed.is_some(),
        "expected close lines with byte counts:\n{}",
        s.daemon.log_text()
    );
}

#[test]
fn unprotected_hosts_and_ports_pass_untouched() {
    if !require_privileged("unprotected_hosts_and_ports_pass_untouched") {
        return;
    }
    let s = setup("g2", 2);
    // An HTTP server on the database host, on a port that is not protected.
    let http_log = s.scratch.path("http.log");
    let log = fs::File::create(&http_log).unwrap();
    let mut http = s
        .lab
        .db
        .command(&[
            "/usr/bin/python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "::",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let fetch = format!(
        "import urllib.request, time\nfor i in range(50):\n    try:\n        print(urllib.request.urlopen('http://{}:8080/', timeout=2).status); break\n    except OSError:\n        time.sleep(0.1)\n",
        s.lab.db_ip
    );
    let out = s
        .lab
        .agent
        .try_run(&["/usr/bin/python3", "-c", &fetch], Duration::from_secs(20));
    let _ = http.kill();
    let _ = http.wait();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server saw the agent's own address: not proxied, not rewritten.
    let seen = fs::read_to_string(&http_log).unwrap();
    assert!(seen.contains(&s.lab.agent_ip), "http server log: {seen}");
    assert!(
        !s.daemon.log_text().contains("session opened"),
        "sluice touched an unprotected flow"
    );

    // The gateway's own address on the database port is not a target either:
    // the agent can reach the database host's unprotected port 5432 of a
    // *different* address family only if it is listed; IPv4 target only here.
}

#[test]
fn stopped_sluice_fails_closed_and_restart_recovers_with_no_leftovers() {
    if !require_privileged("stopped_sluice_fails_closed") {
        return;
    }
    let mut s = setup("g3", 3);
    let (ok, _, err) = s.agent_psql(&s.lab.db_ip, "select 1");
    assert!(ok, "baseline through sluice failed: {err}");

    // Crash: the pinned classifier stays and drops protected flows.
    s.daemon.kill9();
    assert!(
        s.bpffs.join("links").exists(),
        "pins should survive a crash"
    );
    let (ok, _, _) = s.agent_psql(&s.lab.db_ip, "select 1");
    assert!(
        !ok,
        "psql succeeded while sluice was down: the flow bypassed it"
    );
    assert_eq!(
        s.direct_connections_from(&s.lab.agent_ip),
        0,
        "a connection reached the database directly"
    );
    // IPv6 fails closed too.
    let (ok, _, _) = s.agent_psql(&s.lab.db_ip6, "select 1");
    assert!(!ok, "IPv6 psql succeeded while sluice was down");
    // ... and the drops were counted by the still-pinned program.
    assert!(
        s.counter("gateway_dropped_no_proxy") > 0,
        "drops while down were not counted"
    );

    // Restart: stale state is found and replaced, and service resumes.
    s.daemon.restart(None);
    assert!(
        s.daemon.log_text().contains("previous run"),
        "restart did not report stale state"
    );
    let (ok, out, err) = s.agent_psql(&s.lab.db_ip, "select inet_client_addr()");
    assert!(ok, "psql after restart failed: {err}");
    assert_eq!(out, s.lab.gw_db_ip);

    // Clean stop: nothing of sluice remains.
    let status = s.daemon.stop();
    assert!(
        status.success(),
        "sluice exited with {status}:\n{}",
        s.daemon.log_text()
    );
    assert!(
        !s.bpffs.exists(),
        "bpffs pins left behind at {}",
        s.bpffs.display()
    );
    let rules = s.lab.gw.run(&["ip", "rule", "show"]);
    assert!(
        !rules.contains("0x5e1c0001"),
        "policy routing rule left behind:\n{rules}"
    );
    let rules6 = s.lab.gw.run(&["ip", "-6", "rule", "show"]);
    assert!(
        !rules6.contains("0x5e1c0001"),
        "IPv6 policy routing rule left behind:\n{rules6}"
    );
    let progs = s
        .lab
        .gw
        .run(&["bpftool", "net", "show", "dev", &s.lab.gw_agent_if]);
    assert!(
        !progs.contains("sluice"),
        "tc program left attached:\n{progs}"
    );
    assert_eq!(s.direct_connections_from(&s.lab.agent_ip), 0);
}

#[test]
fn ipv6_target_in_gateway_mode() {
    if !require_privileged("ipv6_target_in_gateway_mode") {
        return;
    }
    let s = setup("g4", 4);
    let (ok, out, err) = s.agent_psql(&s.lab.db_ip6, "select inet_client_addr()");
    assert!(
        ok,
        "IPv6 psql through sluice failed: {err}\n{}",
        s.daemon.log_text()
    );
    assert_eq!(out, s.lab.gw_db_ip6, "database saw {out}: not proxied");
    let log = s.daemon.log_text();
    assert!(
        log.contains(&format!("original_dst=[{}]:5432", s.lab.db_ip6)),
        "{log}"
    );
    assert!(
        log.contains(&format!("client=[{}]:", s.lab.agent_ip6)),
        "{log}"
    );
    assert_eq!(s.direct_connections_from(&s.lab.agent_ip6), 0);
}

#[test]
fn fail_open_is_explicit_loud_and_counted() {
    if !require_privileged("fail_open_is_explicit_loud_and_counted") {
        return;
    }
    let mut s = scenario::start("g6", 6, "fail_open = true");
    assert!(
        s.daemon.log_text().contains("FAIL-OPEN is configured"),
        "fail_open not announced:\n{}",
        s.daemon.log_text()
    );

    s.daemon.kill9();
    // With fail_open the flow bypasses the dead proxy: the database sees the agent itself.
    let (ok, out, err) = s.agent_psql(&s.lab.db_ip, "select host(inet_client_addr())");
    assert!(ok, "fail-open flow failed: {err}");
    assert_eq!(out, s.lab.agent_ip);
    assert!(
        s.counter("gateway_fail_open") > 0,
        "fail-open passes were not counted"
    );
}

/// An agent that reconnects from the same source port right after sluice
/// closed the previous connection first: the gateway still holds that
/// 4-tuple in TIME_WAIT, and the new SYN must be answered, not left to
/// retransmit until TIME_WAIT expires (a minute of hanging).
#[test]
fn reconnect_from_the_same_source_port_after_sluice_closed_first() {
    if !require_privileged("reconnect_from_the_same_source_port") {
        return;
    }
    let s = setup("g7", 7);
    // A startup packet with protocol version 0.0: PostgreSQL answers with an
    // error and closes, so sluice closes toward the agent first.
    let script = format!(
        "import socket, time\n\
         for round in range(4):\n\
         \x20   s = socket.socket()\n\
         \x20   s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         \x20   s.bind(('{agent}', 40123))\n\
         \x20   s.settimeout(4)\n\
         \x20   s.connect(('{db}', 5432))\n\
         \x20   s.sendall(b'\\x00\\x00\\x00\\x08\\x00\\x00\\x00\\x00')\n\
         \x20   data = b''\n\
         \x20   while True:\n\
         \x20       chunk = s.recv(4096)\n\
         \x20       if not chunk: break\n\
         \x20       data += chunk\n\
         \x20   s.close()\n\
         \x20   print('round', round, 'reply', data[:1])\n",
        agent = s.lab.agent_ip,
        db = s.lab.db_ip
    );
    let out = s.lab.agent.try_run(
        &["/usr/bin/python3", "-c", &script],
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reconnecting from the same source port failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("reply b'E'").count(),
        4,
        "every round should get PostgreSQL's error reply:\n{stdout}"
    );
    assert_eq!(s.direct_connections_from(&s.lab.agent_ip), 0);
}

/// A client that dials the proxy's own listener on the gateway (nothing
/// steered it there) is refused: served, it would be relayed uninspected to
/// where it dialled, which is the listener itself, in a loop.
#[test]
fn a_client_dialling_the_listener_itself_is_refused_not_relayed() {
    if !require_privileged("a_client_dialling_the_listener_itself_is_refused") {
        return;
    }
    let s = setup("g8", 61);
    let script = format!(
        "import socket, time\n\
         s = socket.create_connection(('{gw}', 15432), timeout=5)\n\
         s.sendall(b'\\x00\\x00\\x00\\x08\\x04\\xd2\\x16\\x2f')\n\
         t = time.monotonic()\n\
         data = b''\n\
         try:\n\
         \x20   while True:\n\
         \x20       chunk = s.recv(4096)\n\
         \x20       if not chunk: break\n\
         \x20       data += chunk\n\
         except ConnectionResetError:\n\
         \x20   pass\n\
         print('closed after', round(time.monotonic() - t, 1), 'with', len(data), 'bytes')\n",
        gw = s.lab.gw_agent_ip
    );
    let out = s.lab.agent.try_run(
        &["/usr/bin/python3", "-c", &script],
        Duration::from_secs(20),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("with 0 bytes"),
        "the connection to the listener was not closed at once:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.daemon.log_text()
    );
    // One session, refused; none dialled onward (a loop would open more).
    std::thread::sleep(Duration::from_millis(500));
    let log = s.daemon.log_text();
    assert_eq!(log.matches("session opened").count(), 1, "{log}");
    assert!(
        log.contains(&format!(
            "{}:15432 is not a protected target; refusing (fail closed)",
            s.lab.gw_agent_ip
        )),
        "{log}"
    );
    // The proxy goes on: an ordinary session still works.
    let (ok, out, err) = s.agent_psql(&s.lab.db_ip, "select 'still serving'");
    assert!(ok && out == "still serving", "{out}{err}");
}
