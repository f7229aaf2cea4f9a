//! The demo's world: two agent hosts and a database host behind the
//! gateway, PostgreSQL 15 and MariaDB 10.11 holding a small cardholder
//! schema, an OpenID provider on the gateway's loopback, and sluice with
//! the sample policy of [`config`].
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use crate::{
    Scratch,
    daemon::{Daemon, store_dir},
    mariadb::MariaDb,
    netns::Netns,
    oidc::{Options, Provider},
    postgres::{self, Postgres, conninfo},
    topology::{AgentHost, GatewayLab},
};

pub const TAG: &str = "demo";
/// The lab index (addresses 10.77.80.0/24 and 10.77.81.0/24, 10.79.80.0/24).
pub const INDEX: u8 = 40;
/// Where the admin API listens, on the gateway's loopback.
pub const API: &str = "127.0.0.1:9443";
/// Luhn-valid test PANs (card brands' published test numbers).
pub const PANS: [&str; 4] = [
    "4111111111111111",
    "5500005555555559",
    "340000000000009",
    "6011000990139424",
];
/// The MariaDB fixture's PANs (see [`crate::mariadb::PANS`]).
pub use crate::mariadb::PANS as MARIADB_PANS;

/// Everything the demo runs. Fields drop in order: sluice (its cleanup runs
/// in the gateway namespace), the provider, the databases, the hosts, and
/// last the scratch directory with the logs, data and the store.
pub struct DemoLab {
    pub daemon: Daemon,
    pub provider: Provider,
    pub pg: Postgres,
    pub mariadb: MariaDb,
    /// The AI agent's host.
    pub agent_a: AgentView,
    /// The legacy job host.
    pub agent_b: AgentHost,
    pub lab: GatewayLab,
    pub bpffs: PathBuf,
    pub scratch: Scratch,
}

/// The first agent host of the [`GatewayLab`], named like [`AgentHost`].
pub struct AgentView {
    pub ip: String,
    pub gw_if: String,
}

impl DemoLab {
    pub fn start() -> anyhow::Result<DemoLab> {
        let scratch = Scratch::new(TAG);
        let lab = GatewayLab::up(TAG, INDEX);
        let agent_b = lab.add_agent(TAG, INDEX);
        let pg = Postgres::start(&lab.db, &scratch.0, 5432);
        pg.sql(&format!(
            "CREATE TABLE cards (id int primary key, holder text, pan text, expires date);
             INSERT INTO cards VALUES
               (1, 'Ada Lovelace', '{}', '2030-01-31'),
               (2, 'Alan Turing', '{}', '2029-12-31'),
               (3, 'Grace Hopper', '{}', '2031-06-30'),
               (4, 'Edsger Dijkstra', '{}', '2028-03-31');
             ALTER TABLE cards OWNER TO {user};",
            PANS[0],
            PANS[1],
            PANS[2],
            PANS[3],
            user = postgres::USER
        ));
        let mariadb = MariaDb::start(&lab.db, &scratch.0, 3306);
        let Some(provider) = Provider::start_with(
            TAG,
            Options {
                netns: Some(lab.gw.path()),
                ..Options::default()
            },
        ) else {
            anyhow::bail!(
                "the OpenID provider harness is not installed (tests/oidc/node_modules): run `cargo xtask setup`"
            );
        };
        let bpffs = PathBuf::from(format!("/sys/fs/bpf/sluice-lab-{TAG}"));
        let agent_a = AgentView {
            ip: lab.agent_ip.clone(),
            gw_if: lab.gw_agent_if.clone(),
        };
        let cfg_path = scratch.path("sluice.toml");
        fs::write(
            &cfg_path,
            config(
                &bpffs,
                &scratch.0,
                &lab,
                &agent_a,
                &agent_b,
                provider.issuer(),
            ),
        )?;
        let daemon = Daemon::start(&lab.gw.path(), &cfg_path, &scratch.path("sluice.log"), None);
        Ok(DemoLab {
            daemon,
            provider,
            pg,
            mariadb,
            agent_a,
            agent_b,
            lab,
            bpffs,
            scratch,
        })
    }

    pub fn config_path(&self) -> &Path {
        &self.daemon.config
    }

    pub fn store(&self) -> PathBuf {
        store_dir(&self.scratch.0)
    }

    /// psql on an agent host, against the database's own address.
    pub fn psql(&self, ns: &Netns, sql: &str) -> (bool, String) {
        let info = conninfo(&self.lab.db_ip, 5432);
        let out = ns.try_run(
            &["psql", "-X", "-q", "-A", "-F", " | ", &info, "-c", sql],
            Duration::from_secs(20),
        );
        both(&out)
    }

    /// The `mariadb` client on an agent host, against the database's own
    /// address (table output, as a person would see it).
    pub fn mysql(&self, ns: &Netns, sql: &str) -> (bool, String) {
        let password = format!("--password={}", crate::mariadb::PASSWORD);
        let out = ns.try_run(
            &[
                "mariadb",
                "--no-defaults",
                "--protocol=tcp",
                "--skip-ssl",
                "-h",
                &self.lab.db_ip,
                "-u",
                crate::mariadb::USER,
                &password,
                "--connect-timeout=5",
                "--table",
                "-e",
                sql,
                crate::mariadb::DATABASE,
            ],
            Duration::from_secs(20),
        );
        both(&out)
    }

    /// The legacy Python agent (`tests/python/demo_agent.py`, psycopg2) on
    /// the AI agent's host.
    pub fn python_agent(&self, mode: &str) -> Command {
        let script = crate::python::script("demo_agent.py");
        let mut cmd = self.lab.agent.command(&[
            "timeout",
            "90",
            "/usr/bin/python3",
            script.to_str().unwrap(),
            mode,
            &conninfo(&self.lab.db_ip, 5432),
        ]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `sluice <args>` in the gateway namespace, as the person holding
    /// `token` (the admin API is on the gateway's loopback).
    pub fn sluice_as(&self, token: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.lab.gw.path()))
            .arg("--")
            .arg(crate::sluice_bin())
            .args(args)
            .env("SLUICE_TOKEN", token)
            .output()
            .expect("run sluice")
    }

    /// `sluice audit <args> --store <the store>`.
    pub fn audit(&self, args: &[&str]) -> Output {
        let store = self.store();
        let mut argv = vec!["audit"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--store", store.to_str().unwrap()]);
        self.daemon.cli(&argv)
    }

    /// How to try the running lab by hand (`--keep`).
    pub fn print_howto(&self) {
        let gw = &self.lab.gw.name;
        println!("The demo lab is still up:");
        println!(
            "  AI agent host      netns {:<18} {}",
            self.lab.agent.name, self.agent_a.ip
        );
        println!(
            "  legacy job host    netns {:<18} {}",
            self.agent_b.ns.name, self.agent_b.ip
        );
        println!(
            "  gateway            netns {:<18} sluice, admin API on {API}, OpenID provider on {}",
            gw,
            self.provider.issuer()
        );
        println!(
            "  database host      netns {:<18} {}: PostgreSQL 15 on 5432, MariaDB 10.11 on 3306",
            self.lab.db.name, self.lab.db_ip
        );
        println!();
        println!("Try it as an agent (unmodified clients dialling the database's own address):");
        println!(
            "  nsenter --net=/run/netns/{} psql \"{}\" -c 'select * from cards'",
            self.agent_b.ns.name,
            conninfo(&self.lab.db_ip, 5432)
        );
        println!(
            "  nsenter --net=/run/netns/{} mariadb --skip-ssl -h {} -u {} -p{} {} -e 'select * from cards'",
            self.agent_b.ns.name,
            self.lab.db_ip,
            crate::mariadb::USER,
            crate::mariadb::PASSWORD,
            crate::mariadb::DATABASE
        );
        println!(
            "  nsenter --net=/run/netns/{} psql \"{}\" -c 'create table t (id int)'   # waits for approval",
            self.lab.agent.name,
            conninfo(&self.lab.db_ip, 5432)
        );
        println!("Approve it as bob (an approver of the demo's OpenID provider):");
        println!(
            "  export SLUICE_TOKEN=$(cat {})",
            self.scratch.path("bob.token").display()
        );
        println!(
            "  nsenter --net=/run/netns/{gw} {} approvals list --api http://{API}",
            crate::sluice_bin().display()
        );
        println!(
            "  nsenter --net=/run/netns/{gw} {} approvals approve <id> --api http://{API}",
            crate::sluice_bin().display()
        );
        println!("Read the evidence:");
        println!(
            "  {} audit list --store {}",
            crate::sluice_bin().display(),
            self.store().display()
        );
        println!("sluice's log:   tail -f {}", self.daemon.log.display());
        println!("Its config:     {}", self.config_path().display());
        println!("Take it down:   cargo xtask lab down");
    }

    /// The namespaces, for `cargo xtask lab down`.
    pub fn namespaces(&self) -> Vec<String> {
        vec![
            self.lab.agent.name.clone(),
            self.agent_b.ns.name.clone(),
            self.lab.gw.name.clone(),
            self.lab.db.name.clone(),
        ]
    }
}

fn both(out: &Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The demo's configuration: both agent-facing interfaces intercepted, the
/// two databases protected, one identity per agent host, and the sample
/// policy ([`POLICY`]).
fn config(
    bpffs: &Path,
    state: &Path,
    lab: &GatewayLab,
    a: &AgentView,
    b: &AgentHost,
    issuer: &str,
) -> String {
    format!(
        r#"# sluice demo: a gateway between two agent hosts and a database host.
[proxy]
bpffs_dir = "{bpffs}"
connect_timeout_ms = 3000

[gateway]
interfaces = ["{a_if}", "{b_if}"]
listen_port = 15432

[store]
path = "{store}"
signing_key = "{key}"

[[targets]]
name = "payments-pg"
address = "{db}/32"
port = 5432

[[targets]]
name = "payments-mariadb"
address = "{db}/32"
port = 3306

[[identities]]
name = "payments-ai"
groups = ["agents"]
sources = ["{a_ip}/32"]

[[identities]]
name = "nightly-report"
groups = ["legacy-jobs"]
sources = ["{b_ip}/32"]

{admin}
{POLICY}"#,
        admin = crate::oidc::admin_sections(issuer, API),
        bpffs = bpffs.display(),
        a_if = a.gw_if,
        b_if = b.gw_if,
        store = store_dir(state).display(),
        key = state.join("audit.key").display(),
        db = lab.db_ip,
        a_ip = a.ip,
        b_ip = b.ip,
    )
}

/// The sample policy the demo tells its story with.
pub const POLICY: &str = r#"
[policy]
default = "deny"

[[policy.rules]]
name = "agents read and write"
action = "allow"
identities = ["group:agents", "group:legacy-jobs"]
classes = ["read", "write", "transaction", "utility"]

[[policy.rules]]
name = "no unbounded delete or update"
action = "deny"
without_where = true
reason = "DELETE and UPDATE need a WHERE clause"

[[policy.rules]]
name = "schema changes need a human"
action = "approve"
identities = ["group:agents"]
classes = ["ddl"]

[approvals]
timeout_secs = 60

[masking]
laundering = "mask"
probing = "deny"
stored = "deny"

[[masking.columns]]
table = "cards"
column = "pan"
format = "pci"

[[masking.columns]]
table = "cards"
column = "pan_num"
format = "pci"

[[masking.columns]]
table = "cards"
column = "cvv"
format = "redact"
"#;
