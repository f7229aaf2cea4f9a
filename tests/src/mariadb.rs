//! A real MariaDB 10.11 server (Debian 12's binaries) inside a lab namespace,
//! with the `shop.cards` table the MySQL tests read and two agent accounts.
//!
//! The server runs with `--no-defaults` (nothing from /etc/mysql), as the
//! `mysql` user, on its own data directory, socket and port, listening on
//! every address of its namespace. Its general query log records every
//! connection with the client's address ([`MariaDb::connects`]), which is
//! how tests tell a connection that came straight from the agent from one
//! sluice made from the gateway.
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{netns::Netns, wait_for};

/// The agent account with `mysql_native_password`.
pub const USER: &str = "agent";
/// The agent account with MariaDB's `ed25519` plugin (client_ed25519).
pub const ED_USER: &str = "agent_ed";
/// Both agent accounts' password.
pub const PASSWORD: &str = "agent-secret";
/// The database holding `cards`; both agents have ALL on it.
pub const DATABASE: &str = "shop";
/// The PANs in `cards`, by id (Luhn-valid test numbers); `pan_num` holds the
/// same digits as a BIGINT.
pub const PANS: [&str; 2] = ["4111111111111111", "5500005555555559"];
/// The holders in `cards`, by id.
pub const HOLDERS: [&str; 2] = ["Ada Lovelace", "Alan Turing"];

/// How to start the server.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// TLS for clients: (certificate, key) PEM files, e.g. from
    /// [`crate::pki::Ca::issue`]. They are copied into the server's
    /// directory (the `mysql` user cannot read the originals' 0600 key).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// No general query log (benchmarks: it logs every statement). Then
    /// [`MariaDb::connects`] and [`MariaDb::connections_from`] panic.
    pub no_general_log: bool,
    /// More `mariadbd` arguments, e.g. `--max-allowed-packet=64M`.
    pub extra_args: Vec<String>,
}

/// One connection the general log recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The server's thread id (what `CONNECTION_ID()` answers).
    pub thread_id: u64,
    pub user: String,
    /// The client's address as the server saw it (IPv4 clients of the dual
    /// stack listener appear as plain IPv4), or `localhost` for the socket.
    pub host: String,
    /// "SSL/TLS", "TCP/IP" or "Socket".
    pub transport: String,
}

/// A running server; shut down on drop (bounded, then killed).
pub struct MariaDb {
    child: Option<Child>,
    /// The server's directory: data directory, socket, logs, TLS files.
    pub dir: PathBuf,
    /// The server's error log (its stderr: startup, shutdown, warnings).
    pub log: PathBuf,
    pub port: u16,
    ns_path: String,
    socket: PathBuf,
    general_log: Option<PathBuf>,
    /// The `mariadbd` arguments after `--no-defaults` (kept for restarts).
    args: Vec<String>,
}

impl MariaDb {
    /// Initialise and start a server in `ns` on `port` with default
    /// [`Options`] (no TLS, general log on), and create the agents and
    /// `shop.cards`.
    pub fn start(ns: &Netns, scratch: &Path, port: u16) -> MariaDb {
        MariaDb::start_with(ns, scratch, port, Options::default())
    }

    /// [`MariaDb::start`] with `options`.
    pub fn start_with(ns: &Netns, scratch: &Path, port: u16, options: Options) -> MariaDb {
        let dir = scratch.join("mariadb");
        let data = dir.join("data");
        fs::create_dir_all(&dir).unwrap();
        // The mysql user must reach its directory through the scratch dir.
        fs::set_permissions(scratch, fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("mysqld.sock");
        let log = dir.join("error.log");
        fs::File::create(&log).unwrap();
        let general_log = (!options.no_general_log).then(|| dir.join("general.log"));

        let mut args: Vec<String> = vec![
            format!("--datadir={}", data.display()),
            format!("--socket={}", socket.display()),
            format!("--pid-file={}", dir.join("mysqld.pid").display()),
            format!("--port={port}"),
            // `*`: IPv4 and IPv6. (`::` makes an IPv6-only socket.)
            "--bind-address=*".into(),
            "--skip-name-resolve".into(),
            // What Debian's packaged config sets (the compiled-in default
            // is latin1).
            "--character-set-server=utf8mb4".into(),
            "--collation-server=utf8mb4_general_ci".into(),
            "--max-connections=500".into(),
            // Small and fast; durability does not matter in the lab.
            "--innodb-buffer-pool-size=32M".into(),
            "--innodb-log-file-size=16M".into(),
            "--innodb-flush-log-at-trx-commit=0".into(),
            "--innodb-doublewrite=0".into(),
            "--innodb-flush-method=nosync".into(),
            "--performance-schema=OFF".into(),
        ];
        if let Some(general) = &general_log {
            args.push("--general-log".into());
            args.push(format!("--general-log-file={}", general.display()));
        }
        if let Some((cert, key)) = &options.tls {
            let (c, k) = (dir.join("server-cert.pem"), dir.join("server-key.pem"));
            fs::copy(cert, &c).expect("copy the server certificate");
            fs::copy(key, &k).expect("copy the server key");
            fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
            args.push(format!("--ssl-cert={}", c.display()));
            args.push(format!("--ssl-key={}", k.display()));
        }
        args.extend(options.extra_args.iter().cloned());
        crate::netns::run(&["chown", "-R", "mysql:mysql", dir.to_str().unwrap()]);

        // System tables only: no test database, root@localhost without a
        // password (the socket is in the scratch dir, only root reaches it).
        let mut install = vec![
            "mariadb-install-db".to_owned(),
            "--no-defaults".to_owned(),
            format!("--datadir={}", data.display()),
            "--auth-root-authentication-method=normal".to_owned(),
            "--skip-test-db".to_owned(),
            "--skip-name-resolve".to_owned(),
        ];
        install.extend(
            args.iter()
                .filter(|a| a.starts_with("--innodb-") || a.starts_with("--character-set"))
                .cloned(),
        );
        as_mysql(&install);

        let mut db = MariaDb {
            child: None,
            dir,
            log,
            port,
            ns_path: ns.path(),
            socket,
            general_log,
            args,
        };
        db.child = Some(db.spawn());
        db.wait_ready("start");
        db.sql(&format!(
            "INSTALL SONAME 'auth_ed25519';
             CREATE USER '{USER}'@'%' IDENTIFIED WITH mysql_native_password USING PASSWORD('{PASSWORD}');
             CREATE USER '{ED_USER}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{PASSWORD}');
             CREATE DATABASE {DATABASE};
             CREATE TABLE {DATABASE}.cards (id int primary key, holder varchar(64), pan varchar(32),
                 cvv varchar(4), expires date, amount decimal(10,2), pan_num bigint);
             INSERT INTO {DATABASE}.cards VALUES
                 (1, '{h1}', '{p1}', '123', '2030-01-31', 12.50, {p1}),
                 (2, '{h2}', '{p2}', '456', '2029-12-31', 99.99, {p2});
             GRANT ALL ON {DATABASE}.* TO '{USER}'@'%', '{ED_USER}'@'%';
             GRANT PROCESS ON *.* TO '{USER}'@'%', '{ED_USER}'@'%';",
            h1 = HOLDERS[0],
            h2 = HOLDERS[1],
            p1 = PANS[0],
            p2 = PANS[1],
        ));
        db
    }

    /// Run SQL (one or more statements) as root over the Unix socket, never
    /// through sluice; returns the batch-mode output (tab-separated, no
    /// column names), trimmed. Panics with the client's stderr on failure.
    pub fn sql(&self, sql: &str) -> String {
        let out = self.client(&["-N", "-B", "-e", sql]);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The `mariadb` client as root over the socket with `args`, bounded
    /// to 30 s.
    fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new("timeout")
            .args(["-k", "2", "30", "mariadb", "--no-defaults"])
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-u", "root", "--connect-timeout=5"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb")
    }

    /// The server's error log.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The general query log (every connection and statement).
    pub fn general_log_text(&self) -> String {
        let path = self
            .general_log
            .as_ref()
            .expect("this server runs without a general log (Options::no_general_log)");
        fs::read_to_string(path).unwrap_or_default()
    }

    /// Every connection the general log recorded, in order (the socket
    /// connections of [`MariaDb::sql`] included).
    pub fn connects(&self) -> Vec<Connect> {
        parse_connects(&self.general_log_text())
    }

    /// Connections the server logged as coming from `ip`: straight from an
    /// agent when `ip` is the agent's, proxied when it is the gateway's.
    pub fn connections_from(&self, ip: &str) -> usize {
        self.connects().iter().filter(|c| c.host == ip).count()
    }

    pub fn ns_path(&self) -> &str {
        &self.ns_path
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Shut the server down (every session's connection closes) and start
    /// it again on the same data directory, as an operator's restart does.
    /// Returns when it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(self.spawn());
        self.wait_ready("restart");
    }

    /// `mariadbd` in the server's namespace as the mysql user, its stderr
    /// appended to the error log.
    fn spawn(&self) -> Child {
        let logfile = fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .args([
                "--",
                "setpriv",
                "--reuid=mysql",
                "--regid=mysql",
                "--init-groups",
                "--",
                "mariadbd",
                "--no-defaults",
            ])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("start mariadbd")
    }

    /// `mariadb-admin ping` over the socket until it answers (≤ 30 s), or
    /// the server exits.
    fn wait_ready(&mut self, what: &str) {
        let mut exited = None;
        let ready = wait_for(Duration::from_secs(30), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                exited = Some(status);
                return Some(false);
            }
            let ok = Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-u", "root", "--connect-timeout=2", "ping"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(true)
        });
        assert_eq!(
            ready,
            Some(true),
            "mariadb did not {what} (exit: {exited:?}):\n{}",
            self.log_text()
        );
    }

    /// `mariadb-admin shutdown` (≤ 15 s), then SIGTERM, then SIGKILL; each
    /// wait bounded.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("timeout")
            .args(["-k", "2", "15", "mariadb-admin", "--no-defaults"])
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-u", "root", "--connect-timeout=2", "shutdown"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let gone = |child: &mut Child, secs| {
            wait_for(Duration::from_secs(secs), || {
                child.try_wait().ok().flatten()
            })
            .is_some()
        };
        if gone(&mut child, 10) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if !gone(&mut child, 10) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run `argv` as the mysql user; panics with its output on failure.
fn as_mysql(argv: &[String]) {
    let out = Command::new("setpriv")
        .args(["--reuid=mysql", "--regid=mysql", "--init-groups", "--"])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `Connect` entries of a general log. Lines look like
/// `261122 17:05:16\t     3 Connect\tagent@10.77.83.2 on shop using SSL/TLS`
/// (the time only on the first line of each second). A refused login adds
/// a second `Connect` line, `Access denied for user 'agent'@'…'`, which is
/// not a new connection and is skipped.
pub fn parse_connects(log: &str) -> Vec<Connect> {
    log.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let i = fields.iter().position(|f| {
                let mut words = f.split_whitespace();
                matches!(
                    (words.next(), words.next(), words.next()),
                    (Some(id), Some("Connect"), None) if id.parse::<u64>().is_ok()
                )
            })?;
            let thread_id = fields[i].split_whitespace().next()?.parse().ok()?;
            let arg = fields.get(i + 1..)?.join("\t");
            let (principal, rest) = arg.split_once(' ')?;
            let (user, host) = principal.split_once('@')?;
            if user.starts_with('\'') || host.is_empty() {
                return None;
            }
            let transport = rest
                .rsplit_once(" using ")
                .map(|(_, t)| t.trim().to_owned())
                .unwrap_or_default();
            Some(Connect {
                thread_id,
                user: user.to_owned(),
                host: host.to_owned(),
                transport,
            })
        })
        .collect()
}

/// The policy the MySQL gateway tests run with: reads and writes allowed,
/// DELETE without WHERE refused, DDL held for approval (2 s), the card
/// columns of `shop.cards` masked.
pub const TEST_POLICY: &str = r#"
[policy]
default = "deny"

[[policy.rules]]
name = "agents"
action = "allow"
classes = ["read", "write", "transaction", "utility"]

[[policy.rules]]
name = "no bulk delete"
action = "deny"
without_where = true

[[policy.rules]]
name = "ddl needs a human"
action = "approve"
classes = ["ddl"]

[approvals]
timeout_secs = 2

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
column = "holder"
format = "redact"

[[masking.columns]]
table = "cards"
column = "pan_num"
format = "pci"
"#;

#[cfg(test)]
mod tests {
    use super::{Connect, parse_connects};

    #[test]
    fn general_log_connects() {
        let log = "/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1-log (Debian 12). started with:\n\
                   Tcp port: 3306  Unix socket: /tmp/x/mysqld.sock\n\
                   Time\t\t    Id Command\tArgument\n\
                   261122 17:05:03\t     6 Connect\troot@localhost on  using Socket\n\
                   \t\t     6 Query\tSELECT 1\n\
                   \t\t     7 Connect\tagent_ed@fd77:83::2 on shop using TCP/IP\n\
                   261122 17:05:16\t     8 Connect\tagent@10.77.82.2 on shop using SSL/TLS\n\
                   \t\t     9 Connect\tagent@10.77.82.2 on  using TCP/IP\n\
                   \t\t     9 Connect\tAccess denied for user 'agent'@'10.77.82.2' (using password: YES)\n\
                   \t\t     9 Query\tSELECT 'x Connect\tfoo@bar on'\n";
        let got = parse_connects(log);
        let c = |id, user: &str, host: &str, t: &str| Connect {
            thread_id: id,
            user: user.into(),
            host: host.into(),
            transport: t.into(),
        };
        assert_eq!(
            got,
            vec![
                c(6, "root", "localhost", "Socket"),
                c(7, "agent_ed", "fd77:83::2", "TCP/IP"),
                c(8, "agent", "10.77.82.2", "SSL/TLS"),
                c(9, "agent", "10.77.82.2", "TCP/IP"),
            ]
        );
    }
}
