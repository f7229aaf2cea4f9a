//! A real PostgreSQL 15 server (Debian's binaries) inside a lab namespace.
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{netns::Netns, wait_for};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const USER: &str = "agent";
pub const PASSWORD: &str = "agent-secret";

/// A running server; stopped (fast shutdown) on drop.
pub struct Postgres {
    child: Option<Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    ns_path: String,
}

impl Postgres {
    /// initdb + start in `ns`, listening on all of its addresses, with
    /// SCRAM password auth for TCP clients and `log_connections` on.
    pub fn start(ns: &Netns, scratch: &std::path::Path, port: u16) -> Postgres {
        let dir = scratch.join("pg");
        let data = dir.join("data");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(scratch, fs::Permissions::from_mode(0o755)).unwrap();
        crate::netns::run(&["chown", "-R", "postgres:postgres", dir.to_str().unwrap()]);
        let pwfile = dir.join("pw");
        fs::write(&pwfile, "postgres-secret\n").unwrap();
        crate::netns::run(&["chown", "postgres:postgres", pwfile.to_str().unwrap()]);
        as_postgres(&[
            &format!("{BIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            &format!("--pwfile={}", pwfile.display()),
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        let conf = format!(
            "listen_addresses = '*'\nport = {port}\nunix_socket_directories = '{}'\nlog_connections = on\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\nmax_connections = 200\n",
            dir.display()
        );
        let mut pgconf = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pgconf.push_str(&conf);
        fs::write(data.join("postgresql.conf"), pgconf).unwrap();
        let hba = "local all all trust\nhost all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n";
        fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let log = dir.join("postgres.log");
        fs::File::create(&log).unwrap();
        let mut pg = Postgres {
            child: None,
            dir,
            log,
            port,
            ns_path: ns.path(),
        };
        pg.child = Some(pg.spawn());
        pg.wait_ready("start");
        pg.sql(&format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"));
        pg.sql(&format!("GRANT pg_read_all_stats TO {USER}"));
        pg
    }

    /// Put `rules` (pg_hba lines, each ending in a newline) before every
    /// existing rule, and reload: the first matching rule wins.
    pub fn hba_first(&self, rules: &str) {
        let hba = self.dir.join("data/pg_hba.conf");
        let old = fs::read_to_string(&hba).unwrap();
        fs::write(&hba, format!("{rules}{old}")).unwrap();
        assert_eq!(self.sql("SELECT pg_reload_conf()"), "t");
    }

    /// Run SQL as the superuser over the Unix socket (never through sluice).
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-Atq",
                "-h",
                self.dir.to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The server log (connections are logged with their client address).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn ns_path(&self) -> &str {
        &self.ns_path
    }

    /// Stop the server (fast shutdown: every backend gets FATAL 57P01 and its
    /// connection closes) and start it again on the same data directory,
    /// as an operator's restart does. Returns when it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(self.spawn());
        self.wait_ready("restart");
    }

    /// The postmaster, in the server's namespace as the postgres user,
    /// appending to the log.
    fn spawn(&self) -> Child {
        let logfile = fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .args([
                "--",
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(format!("{BIN}/postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("start postgres")
    }

    fn wait_ready(&self, what: &str) {
        let ready = wait_for(Duration::from_secs(30), || {
            let out = Command::new(format!("{BIN}/pg_isready"))
                .args([
                    "-q",
                    "-h",
                    self.dir.to_str().unwrap(),
                    "-p",
                    &self.port.to_string(),
                ])
                .status()
                .ok()?;
            out.success().then_some(())
        });
        assert!(
            ready.is_some(),
            "postgres did not {what}: {}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGINT (fast shutdown) and wait, bounded; SIGKILL if it lingers.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            if wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten()).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn as_postgres(argv: &[&str]) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .args(argv)
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A libpq connection string for the lab's agent role.
pub fn conninfo(host: &str, port: u16) -> String {
    format!(
        "host={host} port={port} user={USER} password={PASSWORD} dbname=postgres connect_timeout=3 application_name=sluice-lab"
    )
}
