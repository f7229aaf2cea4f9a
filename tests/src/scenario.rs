//! The gateway scenario every gateway test, the demo and the benchmarks
//! start from: the lab, PostgreSQL 15 with a small cardholder table, and
//! sluice protecting the database's IPv4 and IPv6 addresses; its MySQL twin
//! ([`start_mysql`]) with MariaDB 10.11; and the jump-host scenario.
use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    Scratch,
    daemon::{Daemon, gateway_config, jump_config},
    mariadb::{self, MariaDb},
    netns::Netns,
    pki::Ca,
    postgres::{self, Postgres, conninfo},
    topology::{GatewayLab, JumpLab},
};

/// A running scenario. Fields drop in order: the daemon (its cleanup runs
/// inside the gateway namespace) before the database, the namespaces, and
/// last the scratch directory holding the logs and the data directory.
pub struct GatewayRun {
    pub daemon: Daemon,
    pub pg: Postgres,
    pub lab: GatewayLab,
    pub bpffs: PathBuf,
    pub scratch: Scratch,
}

/// Start the scenario; `proxy_extra` is appended to the `[proxy]` section
/// (e.g. `fail_open = true`).
pub fn start(tag: &str, index: u8, proxy_extra: &str) -> GatewayRun {
    start_with(tag, index, proxy_extra, "")
}

/// [`start`], with `sections` appended to the config (e.g. a `[policy]`).
pub fn start_with(tag: &str, index: u8, proxy_extra: &str, sections: &str) -> GatewayRun {
    start_custom(tag, index, |_| Custom {
        proxy: proxy_extra.to_owned(),
        sections: sections.to_owned(),
        ..Custom::default()
    })
}

/// The policy the PostgreSQL tests run with: `DROP TABLE` and `DELETE`
/// without WHERE are refused.
pub const TEST_POLICY: &str = "[policy]\ndefault = \"allow\"\ndeny_patterns = [\"(?i)\\\\bdrop\\\\s+table\\\\b\", \"(?i)^\\\\s*delete\\\\s+from\\\\s+\\\\w+\\\\s*;?\\\\s*$\"]\n";

/// [`start`] with [`TEST_POLICY`], checking the daemon loaded it.
pub fn start_with_test_policy(tag: &str, index: u8) -> GatewayRun {
    let s = start_with(tag, index, "", TEST_POLICY);
    assert!(
        s.daemon.log_text().contains("deny_patterns=2"),
        "{}",
        s.daemon.log_text()
    );
    s
}

/// Additions to the scenario's configuration.
#[derive(Default)]
pub struct Custom {
    /// Appended to `[proxy]`.
    pub proxy: String,
    /// Appended to the file (e.g. `[tls]`, `[policy]`).
    pub sections: String,
    /// Appended to `[store]` (e.g. `enabled = false`).
    pub store: String,
    /// Appended to the IPv4 target `lab-pg`.
    pub target_v4: String,
    /// Appended to the IPv6 target `lab-pg6`.
    pub target_v6: String,
}

/// What a [`start_custom`] callback can use to prepare files (certificates,
/// secrets) before the daemon starts.
pub struct Prepare<'a> {
    pub scratch: &'a Scratch,
    pub lab: &'a GatewayLab,
    pub pg: &'a Postgres,
}

/// [`start`], with the configuration additions `custom` returns; it runs
/// once the lab and the database are up, before the daemon starts.
pub fn start_custom(
    tag: &str,
    index: u8,
    custom: impl FnOnce(&Prepare<'_>) -> Custom,
) -> GatewayRun {
    let scratch = Scratch::new(tag);
    let lab = GatewayLab::up(tag, index);
    let pg = Postgres::start(&lab.db, &scratch.0, 5432);
    pg.sql("CREATE TABLE cards (id int primary key, holder text, pan text)");
    pg.sql("INSERT INTO cards VALUES (1, 'Ada Lovelace', '4111111111111111'), (2, 'Alan Turing', '5500005555555559')");
    pg.sql(&format!("GRANT SELECT ON cards TO {}", postgres::USER));
    let bpffs = PathBuf::from(format!("/sys/fs/bpf/sluice-lab-{tag}"));
    let extra = custom(&Prepare {
        scratch: &scratch,
        lab: &lab,
        pg: &pg,
    });
    let daemon = start_gateway_daemon(&scratch, &lab, &bpffs, ["lab-pg", "lab-pg6"], 5432, &extra);
    GatewayRun {
        daemon,
        pg,
        lab,
        bpffs,
        scratch,
    }
}

/// Write the gateway config protecting the database's IPv4 (`names[0]`)
/// and IPv6 (`names[1]`) addresses on `port`, with `extra`'s additions,
/// and start the daemon in the gateway namespace.
fn start_gateway_daemon(
    scratch: &Scratch,
    lab: &GatewayLab,
    bpffs: &Path,
    names: [&str; 2],
    port: u16,
    extra: &Custom,
) -> Daemon {
    let v4 = format!("{}/32", lab.db_ip);
    let targets = [
        (names[0], v4.as_str(), port),
        (names[1], lab.db_ip6.as_str(), port),
    ];
    let mut cfg = gateway_config(bpffs, &scratch.0, &lab.gw_agent_if, &targets)
        .replace("[proxy]\n", &format!("[proxy]\n{}\n", extra.proxy))
        .replace("[store]\n", &format!("[store]\n{}\n", extra.store));
    for ((name, _, _), more) in targets.iter().zip([&extra.target_v4, &extra.target_v6]) {
        let header = format!("name = \"{name}\"\n");
        cfg = cfg.replace(&header, &format!("{header}{more}\n"));
    }
    cfg = cfg + "\n" + &extra.sections;
    let cfg_path = scratch.path("sluice.toml");
    fs::write(&cfg_path, cfg).expect("write the lab config");
    Daemon::start(&lab.gw.path(), &cfg_path, &scratch.path("sluice.log"), None)
}

impl GatewayRun {
    /// Unmodified psql on the agent host; returns (success, stdout, stderr).
    pub fn agent_psql(&self, host: &str, sql: &str) -> (bool, String, String) {
        let info = conninfo(host, 5432);
        let out = self.lab.agent.try_run(
            &["psql", "-X", "-Atq", &info, "-c", sql],
            Duration::from_secs(15),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Connections PostgreSQL logged as coming straight from `ip` (a proxied
    /// connection comes from the gateway instead).
    pub fn direct_connections_from(&self, ip: &str) -> usize {
        let needle = format!("host={ip}");
        self.pg
            .log_text()
            .lines()
            .filter(|l| l.contains("connection received") && l.contains(&needle))
            .count()
    }

    /// A counter from `sluice status` (works while sluice runs and after a crash).
    pub fn counter(&self, name: &str) -> u64 {
        let out = self
            .daemon
            .cli(&["status", "--config", self.daemon.config.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no counter {name} in `sluice status`:\n{text}"))
    }
}

/// The jump-host scenario: one namespace with PostgreSQL 15 and sluice
/// intercepting the agents' cgroup. Drop order: daemon, database, lab
/// (cgroup, namespace), scratch.
pub struct JumpRun {
    pub daemon: Daemon,
    pub pg: Postgres,
    pub lab: JumpLab,
    pub bpffs: PathBuf,
    pub scratch: Scratch,
}

/// Start the jump-host scenario protecting the database's IPv4 and IPv6
/// addresses; `sections` is appended to the config (e.g. `[[identities]]`).
pub fn start_jump(tag: &str, sections: &str) -> JumpRun {
    let scratch = Scratch::new(tag);
    let lab = JumpLab::up(tag);
    let pg = Postgres::start(&lab.ns, &scratch.0, 5432);
    let bpffs = PathBuf::from(format!("/sys/fs/bpf/sluice-lab-{tag}"));
    let cfg = jump_config(
        &bpffs,
        &scratch.0,
        &lab.cgroup,
        &[("lab-pg", &lab.db_ip, 5432), ("lab-pg6", &lab.db_ip6, 5432)],
    ) + sections;
    let cfg_path = scratch.path("sluice.toml");
    fs::write(&cfg_path, cfg).expect("write the lab config");
    // The daemon runs inside the agents' cgroup too: its own upstream
    // connections to the protected address must not be redirected.
    let daemon = Daemon::start(
        &lab.ns.path(),
        &cfg_path,
        &scratch.path("sluice.log"),
        Some(&lab.cgroup),
    );
    JumpRun {
        daemon,
        pg,
        lab,
        bpffs,
        scratch,
    }
}

/// The MySQL gateway scenario: the gateway lab, MariaDB 10.11 in the
/// database host with `shop.cards` (see [`crate::mariadb`]), and sluice
/// protecting the database's IPv4 and IPv6 addresses on port 3306 (which
/// speaks MySQL by default: the targets name no `protocol`). Fields drop in
/// order, as [`GatewayRun`]'s: the daemon (its cleanup runs inside the
/// gateway namespace), the database, the namespaces, and last the scratch
/// directory holding the logs and the data directory.
pub struct MysqlRun {
    pub daemon: Daemon,
    pub db: MariaDb,
    pub lab: GatewayLab,
    pub bpffs: PathBuf,
    /// The CA that issued the database's certificate, when it has one
    /// ([`start_mysql_with`] with `db_tls`).
    pub db_ca: Option<PathBuf>,
    pub scratch: Scratch,
}

/// What a [`start_mysql`] callback can use to prepare files (certificates,
/// secrets) before the daemon starts.
pub struct MysqlPrepare<'a> {
    pub scratch: &'a Scratch,
    pub lab: &'a GatewayLab,
    pub db: &'a MariaDb,
    /// The database's CA certificate, when it speaks TLS.
    pub db_ca: Option<&'a Path>,
}

/// The MySQL targets' names, IPv4 and IPv6.
pub const MYSQL_TARGETS: [&str; 2] = ["lab-my", "lab-my6"];

/// Start the MySQL scenario with the configuration additions `custom`
/// returns (`target_v4`/`target_v6` go to `lab-my`/`lab-my6`); it runs once
/// the lab and the database are up, before the daemon starts. Without a
/// `[policy]` in `custom.sections` the daemon allows everything.
pub fn start_mysql(
    tag: &str,
    index: u8,
    custom: impl FnOnce(&MysqlPrepare<'_>) -> Custom,
) -> MysqlRun {
    start_mysql_with(tag, index, false, custom)
}

/// [`start_mysql`]; with `db_tls` the database also speaks TLS, with a
/// certificate for both its addresses from a throwaway CA ("db", its
/// certificate at [`MysqlRun::db_ca`]).
pub fn start_mysql_with(
    tag: &str,
    index: u8,
    db_tls: bool,
    custom: impl FnOnce(&MysqlPrepare<'_>) -> Custom,
) -> MysqlRun {
    let scratch = Scratch::new(tag);
    let lab = GatewayLab::up(tag, index);
    let mut options = mariadb::Options::default();
    let mut db_ca = None;
    if db_tls {
        let ca = Ca::new(&scratch.path("pki"), "db");
        let leaf = ca.issue("database", &[&lab.db_ip, &lab.db_ip6]);
        options.tls = Some((leaf.cert, leaf.key));
        db_ca = Some(ca.cert.clone());
    }
    let db = MariaDb::start_with(&lab.db, &scratch.0, 3306, options);
    let bpffs = PathBuf::from(format!("/sys/fs/bpf/sluice-lab-{tag}"));
    let extra = custom(&MysqlPrepare {
        scratch: &scratch,
        lab: &lab,
        db: &db,
        db_ca: db_ca.as_deref(),
    });
    let daemon = start_gateway_daemon(&scratch, &lab, &bpffs, MYSQL_TARGETS, 3306, &extra);
    MysqlRun {
        daemon,
        db,
        lab,
        bpffs,
        db_ca,
        scratch,
    }
}

impl MysqlRun {
    /// The unmodified `mariadb` client on the agent host as the lab's agent
    /// (mysql_native_password) to `host`:3306, database `shop`, batch mode,
    /// without TLS; returns (success, stdout, stderr).
    pub fn agent_mysql(&self, host: &str, sql: &str) -> (bool, String, String) {
        self.agent_mysql_with(host, &["--skip-ssl"], sql)
    }

    /// [`MysqlRun::agent_mysql`] with `args` instead of `--skip-ssl` (TLS
    /// options such as `--ssl-ca=… --ssl-verify-server-cert`, or `--user=…`
    /// to override the agent; later options win).
    pub fn agent_mysql_with(&self, host: &str, args: &[&str], sql: &str) -> (bool, String, String) {
        agent_mysql_cli(&self.lab.agent, host, args, sql)
    }

    /// A script under `tests/python/` run with `python` (see
    /// [`crate::python::mysql_interpreter`]) on the agent host, bounded by
    /// `limit`; returns (success, stdout, stderr).
    pub fn agent_script(
        &self,
        python: &Path,
        script: &str,
        args: &[&str],
        limit: Duration,
    ) -> (bool, String, String) {
        agent_script_in(&self.lab.agent, python, script, args, limit)
    }

    /// Connections MariaDB logged as coming straight from `ip` (a proxied
    /// connection comes from the gateway instead).
    pub fn direct_connections_from(&self, ip: &str) -> usize {
        self.db.connections_from(ip)
    }

    /// A counter from `sluice status` (works while sluice runs and after a crash).
    pub fn counter(&self, name: &str) -> u64 {
        let out = self
            .daemon
            .cli(&["status", "--config", self.daemon.config.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no counter {name} in `sluice status`:\n{text}"))
    }
}

/// The `mariadb` client in `ns` to `host`:3306 as the lab's agent, database
/// `shop`, batch mode (`-N -B`), `--no-defaults` (nothing from /etc/mysql),
/// 5 s connect timeout, then `args`, bounded to 20 s; returns (success,
/// stdout, stderr). MariaDB 10.11's client tries TLS by default whenever the
/// server offers it (without verifying the certificate); pass `--skip-ssl`
/// for plaintext.
pub fn agent_mysql_cli(ns: &Netns, host: &str, args: &[&str], sql: &str) -> (bool, String, String) {
    let password = format!("--password={}", mariadb::PASSWORD);
    let mut argv = vec![
        "mariadb",
        "--no-defaults",
        "--protocol=tcp",
        "-h",
        host,
        "-P",
        "3306",
        "-u",
        mariadb::USER,
        &password,
        "--connect-timeout=5",
        "-N",
        "-B",
    ];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["-e", sql, mariadb::DATABASE]);
    let out = ns.try_run(&argv, Duration::from_secs(20));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A script under `tests/python/` run with `python` in `ns`, bounded by
/// `limit`; returns (success, stdout, stderr).
pub fn agent_script_in(
    ns: &Netns,
    python: &Path,
    script: &str,
    args: &[&str],
    limit: Duration,
) -> (bool, String, String) {
    let script = crate::python::script(script);
    let mut argv = vec![python.to_str().unwrap(), script.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = ns.try_run(&argv, limit);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
