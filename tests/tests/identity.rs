//! Workload identity end to end: `[[identities]]` rules turn what the
//! kernel saw into a named workload with groups, and the policy applies
//! that identity's rules — for an agent host behind the gateway (source
//! address and ingress interface) and for local processes on a jump host
//! (cgroup path and command name). A workload no rule matches is
//! `unknown`, and gets nothing.
use std::time::Duration;

use sluice_lab::{
    daemon::{Daemon, store_dir},
    postgres::conninfo,
    require_privileged,
    scenario::{self, Custom},
};

/// The recorded sessions, as `sluice audit list --json` lines, once
/// `want` of them have ended (bounded wait).
fn recorded(daemon: &Daemon, scratch: &std::path::Path, want: usize) -> Vec<serde_json::Value> {
    let store = store_dir(scratch);
    let mut last = Vec::new();
    sluice_lab::wait_for(Duration::from_secs(15), || {
        let out = daemon.cli(&[
            "audit",
            "list",
            "--store",
            store.to_str().unwrap(),
            "--json",
        ]);
        last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
        let ended = last.iter().filter(|s| !s["end"].is_null()).count();
        (ended >= want).then_some(())
    });
    last
}

#[test]
fn i1_an_agent_host_is_named_by_its_network_and_interface_and_gets_its_groups_rules() {
    if !require_privileged("i1") {
        return;
    }
    let run = scenario::start_custom("i1", 33, |p| Custom {
        sections: format!(
            r#"
[[identities]]
name = "reporting-agent"
groups = ["readers"]
sources = ["{}/32"]
interfaces = ["{}"]

[policy]
default = "deny"
[[policy.rules]]
name = "readers read"
action = "allow"
identities = ["group:readers"]
classes = ["read"]
"#,
            p.lab.agent_ip, p.lab.gw_agent_if
        ),
        ..Custom::default()
    });
    let (ok, out, err) = run.agent_psql(&run.lab.db_ip, "select holder from cards order by id");
    assert!(ok, "a read by a reader must pass: {err}");
    assert_eq!(out, "Ada Lovelace\nAlan Turing");
    let (ok, _, err) = run.agent_psql(&run.lab.db_ip, "insert into cards values (3, 'x', 'y')");
    assert!(!ok, "a write is not among the readers' rules");
    assert!(
        err.contains("policy.default"),
        "the refusal names the deciding rule: {err}"
    );
    let log = run.daemon.log_text();
    assert!(
        log.contains("identity=reporting-agent") && log.contains("matched_by=identities[0]"),
        "{log}"
    );
    let sessions = recorded(&run.daemon, &run.scratch.0, 2);
    for s in &sessions {
        assert_eq!(s["identity"], "reporting-agent", "{s}");
    }
}

#[test]
fn j3_local_processes_are_named_by_cgroup_and_command_and_unknown_ones_get_nothing() {
    if !require_privileged("j3") {
        return;
    }
    // The cgroup JumpLab makes, as /proc/PID/cgroup shows it.
    let cgroup = "/sluice-lab-j3";
    let run = scenario::start_jump(
        "j3",
        &format!(
            r#"
[[identities]]
name = "psql-operator"
groups = ["operators"]
cgroups = ["{cgroup}"]
comms = ["psql"]

[policy]
default = "allow"
"#
        ),
    );
    let (daemon, lab) = (&run.daemon, &run.lab);
    let info = conninfo(&lab.db_ip, 5432);
    // psql in the agents' cgroup: psql-operator, and the default allows it.
    let out = lab
        .in_cgroup(&[
            "timeout",
            "20",
            "psql",
            "-X",
            "-Atq",
            &info,
            "-c",
            "select 40 + 2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql-operator's read failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log_text()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // Python in the same cgroup matches no rule: unknown, deny-all, even
    // though the configured default is allow.
    let script = format!(
        "import psycopg2\n\
         c = psycopg2.connect({info:?})\n\
         try:\n\
         \x20   c.cursor().execute('select 1')\n\
         \x20   print('ran')\n\
         except Exception as e:\n\
         \x20   print('refused', str(e).splitlines()[0])\n"
    );
    let out = lab
        .in_cgroup(&["timeout", "20", "/usr/bin/python3", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("refused") && text.contains("statement refused by policy"),
        "an unknown workload must get nothing: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = daemon.log_text();
    assert!(log.contains("identity=psql-operator"), "{log}");
    assert!(
        log.contains("identity=unknown") && log.contains("matched_by=unmatched"),
        "{log}"
    );
    let sessions = recorded(daemon, &run.scratch.0, 2);
    let names: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["identity"].as_str())
        .collect();
    assert!(
        names.contains(&"psql-operator") && names.contains(&"unknown"),
        "{sessions:?}"
    );
}
