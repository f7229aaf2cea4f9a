//! The session engine in-process against a real MariaDB on loopback: a
//! private `mariadbd` (Debian's) in a temporary directory, sluice's
//! engine on an ephemeral port in front of it, and the unmodified
//! `mariadb` command-line client. No namespaces or eBPF: the engine alone
//! (the gateway lab tests run the whole path).
use std::{
    net::{SocketAddr, TcpListener as StdListener},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_pgproxy::{
    CancelRegistry, Metrics, PatternPolicy, Route, SessionConfig, TargetAuth, TargetSettings,
    UpstreamTls, Workload,
};

/// A private MariaDB; killed on drop.
struct MariaDb {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start MariaDB, or None (with the reason printed) where it cannot run.
fn mariadb(test: &str) -> Option<MariaDb> {
    let required = std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() == Ok("1");
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let have = std::path::Path::new("/usr/sbin/mariadbd").exists();
    if !root || !have {
        let why = if have {
            "needs root (mariadbd --user=root)"
        } else {
            "MariaDB is not installed"
        };
        assert!(!required, "{test}: {why}; run `cargo xtask setup` as root");
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", data.display()))
        .output()
        .expect("mariadb-install-db");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let socket = dir.path().join("sock");
    let child = Command::new("/usr/sbin/mariadbd")
        .args([
            "--no-defaults",
            "--user=root",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=16M",
            "--skip-log-bin",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mariadbd");
    let db = MariaDb { child, dir, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Command::new("mariadb-admin")
        .arg(format!("--socket={}", socket.display()))
        .args(["-uroot", "ping"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "{test}: mariadbd did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    root_sql(&db, "CREATE USER agent@'%' IDENTIFIED BY 'agent-secret';
        CREATE DATABASE shop; GRANT ALL ON shop.* TO agent@'%';
        CREATE TABLE shop.cards (id int primary key, holder varchar(64), pan varchar(32), pan_num bigint);
        INSERT INTO shop.cards VALUES (1, 'Ada', '4111111111111111', 4111111111111111), (2, 'Alan', '5500005555555559', 5500005555555559);");
    Some(db)
}

fn root_sql(db: &MariaDb, sql: &str) -> String {
    let out = Command::new("mariadb")
        .arg(format!("--socket={}", db.dir.path().join("sock").display()))
        .args(["-uroot", "-N", "-B", "-e", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The engine on an ephemeral port, serving every connection towards `db`.
fn proxy(rt: &tokio::runtime::Runtime, db: u16, policy: PatternPolicy) -> SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let config = SessionConfig {
        max_message: 64 << 20,
        policy: Arc::new(policy),
        cancels: CancelRegistry::default(),
        client_tls: None,
        store: None,
        metrics: Arc::new(Metrics::default()),
        limits: Default::default(),
    };
    let target = Arc::new(TargetSettings {
        name: "db".into(),
        tls: UpstreamTls::new(sluice_config::UpstreamTls::Disable, None, None).unwrap(),
        auth: TargetAuth::Passthrough,
    });
    let kills = sluice_myproxy::KillRegistry::default();
    rt.spawn(async move {
        loop {
            let Ok((client, peer)) = listener.accept().await else {
                return;
            };
            let (config, target, kills) = (config.clone(), Arc::clone(&target), kills.clone());
            tokio::spawn(async move {
                let facts = sluice_store::event::Facts::default();
                let route = Route {
                    original: SocketAddr::from(([127, 0, 0, 1], db)),
                    target: &target,
                    workload: Workload {
                        addr: peer.ip(),
                        uid: None,
                    },
                    identity: "agent",
                    groups: &[],
                    facts: &facts,
                };
                let dial = |a: SocketAddr| tokio::net::TcpStream::connect(a);
                if let Err(e) = sluice_myproxy::serve(client, route, &config, &kills, dial).await {
                    eprintln!("session: {e}");
                }
            });
        }
    });
    addr
}

/// The `mariadb` client through the proxy: (success, stdout, stderr).
/// The SQL goes in on stdin, as a script would (so `--force` goes on
/// after an error, on the same connection).
fn client(addr: SocketAddr, extra: &[&str], sql: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &addr.port().to_string(),
            "-uagent",
            "-pagent-secret",
            "--skip-ssl",
            "-N",
            "-B",
            "--connect-timeout=10",
            "shop",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mariadb_client_through_the_engine() {
    let Some(db) = mariadb("mariadb_client_through_the_engine") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let policy =
        PatternPolicy::new(&["(?i)^\\s*delete\\s+from\\s+\\w+\\s*;?\\s*$".into()]).unwrap();
    let addr = proxy(&rt, db.port, policy);

    let (ok, out, err) = client(addr, &[], "SELECT id, holder FROM cards ORDER BY id");
    assert!(ok, "{err}");
    assert_eq!(out, "1\tAda\n2\tAlan\n");

    // Refused, with the rule named; the next statement on the same
    // connection still runs (--force goes on after errors).
    let (_, out, err) = client(
        addr,
        &["--force"],
        "DELETE FROM cards;\nSELECT count(*) FROM cards;\n",
    );
    assert!(
        err.contains("ERROR 1142") && err.contains("deny_patterns[0]"),
        "{err}"
    );
    assert_eq!(out, "2\n", "{err}");

    // Multi-statements and multiple results in one COM_QUERY (the client
    // sends the text between delimiters as one query).
    let (ok, out, err) = client(
        addr,
        &[],
        "DELIMITER //\nSELECT 1; SELECT 'two'; SELECT pan FROM cards WHERE id = 2//\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "1\ntwo\n5500005555555559\n");

    // An error from the database reaches the client and the session goes on.
    let (_, out, err) = client(addr, &["--force"], "SELECT * FROM nope;\nSELECT 3;\n");
    assert!(err.contains("1146"), "{err}");
    assert_eq!(out, "3\n");

    // A client character set whose multi-byte characters can hide a quote
    // is refused at the handshake, saying why.
    let (ok, _, err) = client(addr, &["--default-character-set=gbk"], "SELECT 1;");
    assert!(!ok);
    assert!(err.contains("1115") && err.contains("use utf8mb4"), "{err}");

    // Compression is not offered: a client that asks for it gets an
    // uncompressed session sluice can read.
    let (ok, out, err) = client(
        addr,
        &["--compress"],
        "SHOW SESSION STATUS LIKE 'Compression';",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "Compression\tOFF\n");
}
