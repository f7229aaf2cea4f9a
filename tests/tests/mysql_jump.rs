//! MySQL in jump-host mode: a process in the agents' cgroup runs the
//! unmodified `mariadb` client against port 3306; the kernel's connect
//! hook steers it into sluice, which speaks MySQL to it (the target names
//! no protocol: port 3306 defaults to MySQL), masks the PANs, and records
//! the session under the process's identity facts.
use std::{fs, path::PathBuf};

use sluice_lab::{
    Scratch,
    daemon::{Daemon, export_until, jump_config},
    leaks::leak,
    mariadb::{DATABASE, MariaDb, PANS, PASSWORD, USER},
    require_privileged,
    topology::JumpLab,
};

const POLICY: &str = r#"
[policy]
default = "allow"

[[masking.columns]]
table = "cards"
column = "pan"
format = "pci"
"#;

#[test]
fn mj1_local_mysql_client_is_intercepted_masked_and_recorded() {
    if !require_privileged("mj1") {
        return;
    }
    let scratch = Scratch::new("mj1");
    let lab = JumpLab::up("mj1");
    let _db = MariaDb::start(&lab.ns, &scratch.0, 3306);
    let bpffs = PathBuf::from("/sys/fs/bpf/sluice-lab-mj1");
    let cfg = jump_config(
        &bpffs,
        &scratch.0,
        &lab.cgroup,
        &[("lab-my", &lab.db_ip, 3306), ("lab-my6", &lab.db_ip6, 3306)],
    ) + POLICY;
    let cfg_path = scratch.path("sluice.toml");
    fs::write(&cfg_path, cfg).unwrap();
    let daemon = Daemon::start(
        &lab.ns.path(),
        &cfg_path,
        &scratch.path("sluice.log"),
        Some(&lab.cgroup),
    );

    for host in [&lab.db_ip, &lab.db_ip6] {
        let out = lab
            .in_cgroup(&[
                "timeout",
                "20",
                "mariadb",
                "--no-defaults",
                "--protocol=tcp",
                "-h",
                host,
                "-P",
                "3306",
                "-u",
                USER,
                &format!("--password={PASSWORD}"),
                "--skip-ssl",
                "-N",
                "-B",
                "-e",
                "SELECT pan FROM cards ORDER BY id",
                DATABASE,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{host}: {text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon.log_text()
        );
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            ["411111******1111", "550000******5559"],
            "{host}"
        );
        assert!(leak(&text, &PANS).is_none());
    }

    // Recorded as MySQL sessions of the local process that made them.
    let export = export_until(&daemon, &scratch.0, |e| {
        e.lines().filter(|l| l.contains("\"session_end\"")).count() >= 2
    });
    let starts: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("\"session_start\""))
        .collect();
    assert_eq!(starts.len(), 2, "{export}");
    for s in starts {
        assert!(
            s.contains("\"protocol\":\"mysql\"") && s.contains("\"comm\":\"mariadb\""),
            "{s}"
        );
    }
    for pan in PANS {
        assert!(!export.contains(pan), "the record holds {pan}");
    }
}
