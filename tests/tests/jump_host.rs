//! Jump-host mode, end to end: cgroup/connect4|6, getpeername4|6 and sockops
//! in a real kernel, a real PostgreSQL 15, unmodified psql and Python.
//!
//! Everything runs in a namespace the test made, whose only interfaces are
//! `lo` and a veth pair (both ends inside) holding the database's address: a packet that
//! escaped interception still could not leave the machine.
use std::{process::Output, time::Duration};

use sluice_lab::{
    postgres::{Postgres, conninfo},
    require_privileged,
    scenario::{self, JumpRun},
};

type Setup = JumpRun;

fn setup(tag: &str) -> Setup {
    scenario::start_jump(tag, "")
}

/// Python in the agents' cgroup: connect, report the peer as the process
/// sees it, and run one query through the PostgreSQL protocol.
fn python_in_cgroup(s: &Setup, host: &str, as_nobody: bool) -> Output {
    let script = format!(
        "import socket, psycopg2\n\
         fam = socket.AF_INET6 if ':' in {host:?} else socket.AF_INET\n\
         sock = socket.create_connection(({host:?}, 5432), timeout=3)\n\
         print('peer', sock.getpeername()[0], sock.getpeername()[1])\n\
         sock.close()\n\
         c = psycopg2.connect({:?})\n\
         cur = c.cursor(); cur.execute('select 40 + 2'); print('answer', cur.fetchone()[0])\n",
        conninfo(host, 5432)
    );
    let mut argv: Vec<&str> = Vec::new();
    if as_nobody {
        argv.extend([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]);
    }
    argv.extend(["timeout", "20", "/usr/bin/python3", "-c", &script]);
    s.lab.in_cgroup(&argv).output().unwrap()
}

fn connections_received(pg: &Postgres) -> usize {
    pg.log_text()
        .lines()
        .filter(|l| l.contains("connection received"))
        .count()
}

#[test]
fn local_processes_in_the_cgroup_are_intercepted_and_others_are_not() {
    if !require_privileged("local_processes_in_the_cgroup_are_intercepted") {
        return;
    }
    let s = setup("j1");

    // Unmodified psql in the cgroup, dialling the database's own address.
    let info = conninfo(&s.lab.db_ip, 5432);
    let out = s
        .lab
        .in_cgroup(&[
            "timeout",
            "20",
            "psql",
            "-X",
            "-Atq",
            &info,
            "-c",
            "select 'through-sluice'",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql in cgroup failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.daemon.log_text()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "through-sluice"
    );
    let log = s.daemon.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("session opened") && l.contains("comm=\"psql\""))
        .unwrap_or_else(|| panic!("no psql session in the log:\n{log}"));
    assert!(
        line.contains(&format!("original_dst={}:5432", s.lab.db_ip)),
        "{line}"
    );
    assert!(line.contains("uid=0"), "{line}");
    assert!(line.contains("pid="), "{line}");
    assert!(
        line.contains("sluice-lab-j1"),
        "cgroup path missing: {line}"
    );
    assert!(
        line.contains("cmdline=") && line.contains("psql -X -Atq"),
        "cmdline missing: {line}"
    );
    assert!(
        !log.contains(sluice_lab::postgres::PASSWORD),
        "a password reached the log: {line}"
    );

    // Python as an unprivileged user: sees the database as its peer
    // (getpeername rewritten), and its uid is recorded.
    let out = python_in_cgroup(&s, &s.lab.db_ip, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python in cgroup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("peer {} 5432", s.lab.db_ip)),
        "{stdout}"
    );
    assert!(stdout.contains("answer 42"), "{stdout}");
    let log = s.daemon.log_text();
    assert!(
        log.lines().any(|l| l.contains("session opened")
            && l.contains("uid=65534")
            && l.contains("comm=\"python3\"")
            // Another user's executable: read with the CAP_SYS_PTRACE the
            // daemon keeps in jump-host mode.
            && l.contains("exe=\"/usr/bin/python3")),
        "{log}"
    );

    // Serving, every thread holds only CAP_NET_ADMIN (12), CAP_SYS_PTRACE
    // (19) and CAP_BPF (39); it was started as root with them all.
    let serving = (1u64 << 12) | (1u64 << 19) | (1u64 << 39);
    for (name, eff, prm, bnd) in s.daemon.thread_caps() {
        assert!(
            eff == serving && prm == serving && bnd == serving,
            "thread {name} holds CapEff {eff:x} CapPrm {prm:x} CapBnd {bnd:x}, want {serving:x}"
        );
    }

    // IPv6 target through the IPv6 listener.
    let out = python_in_cgroup(&s, &s.lab.db_ip6, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "IPv6 python in cgroup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("peer {} 5432", s.lab.db_ip6)),
        "{stdout}"
    );
    assert!(
        s.daemon
            .log_text()
            .contains(&format!("original_dst=[{}]:5432", s.lab.db_ip6))
    );

    // A process outside the cgroup is not intercepted.
    let sessions_before = s.daemon.log_text().matches("session opened").count();
    let out = s.lab.ns.try_run(
        &["psql", "-X", "-Atq", &info, "-c", "select 'direct'"],
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "direct psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.daemon.log_text().matches("session opened").count(),
        sessions_before,
        "a process outside the cgroup was intercepted"
    );
}

#[test]
fn jump_host_fails_closed_while_down_and_cleans_up() {
    if !require_privileged("jump_host_fails_closed_while_down") {
        return;
    }
    let mut s = setup("j2");
    let info = conninfo(&s.lab.db_ip, 5432);
    let psql = |s: &Setup| {
        s.lab
            .in_cgroup(&[
                "timeout", "20", "psql", "-X", "-Atq", &info, "-c", "select 1",
            ])
            .output()
            .unwrap()
    };
    assert!(psql(&s).status.success(), "baseline failed");

    s.daemon.kill9();
    let before = connections_received(&s.pg);
    let out = psql(&s);
    assert!(
        !out.status.success(),
        "psql in cgroup succeeded while sluice was down"
    );
    assert_eq!(
        connections_received(&s.pg),
        before,
        "a connection reached the database while sluice was down"
    );

    s.daemon.restart(Some(&s.lab.cgroup.clone()));
    assert!(
        psql(&s).status.success(),
        "psql after restart failed:\n{}",
        s.daemon.log_text()
    );

    let status = s.daemon.stop();
    assert!(status.success(), "{}", s.daemon.log_text());
    assert!(!s.bpffs.exists(), "pins left behind");
    let attached = s
        .lab
        .ns
        .run(&["bpftool", "cgroup", "show", s.lab.cgroup.to_str().unwrap()]);
    assert!(
        !attached.contains("sluice"),
        "programs left on the cgroup:\n{attached}"
    );
}
