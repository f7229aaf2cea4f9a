//! The MySQL harness itself, with no sluice in the path: the gateway lab
//! with MariaDB 10.11 (TLS on, certificate from a throwaway CA for both of
//! its addresses) in the database host, and the unmodified `mariadb` client,
//! PyMySQL and mysqlclient on the agent host talking straight to it through
//! the gateway's plain forwarding. Proves the fixture (accounts, `shop.cards`,
//! the Sequence engine, KILL), the client scripts under `tests/python/` and
//! the connection counting the through-sluice tests rely on.
use std::time::{Duration, Instant};

use sluice_lab::{
    Scratch,
    mariadb::{self, HOLDERS, MariaDb, Options, PANS},
    pki::Ca,
    python::{self, field},
    require_privileged,
    scenario::{agent_mysql_cli, agent_script_in},
    topology::GatewayLab,
};

/// A script's `key=value` output must hold `want` for `key`.
fn expect(out: &str, key: &str, want: &str, what: &str) {
    assert_eq!(field(out, key), Some(want), "{what}: {key}:\n{out}");
}

#[test]
fn mariadb_fixture_clients_and_tls_straight_to_the_database() {
    if !require_privileged("mariadb_fixture") {
        return;
    }
    let Some(python) = python::mysql_interpreter("mariadb_fixture") else {
        return;
    };
    let started = Instant::now();
    // Drop order (reverse of declaration): database, namespaces, scratch.
    let scratch = Scratch::new("mdb");
    let lab = GatewayLab::up("mdb", 41);
    let ca = Ca::new(&scratch.path("pki"), "db");
    let leaf = ca.issue("database", &[&lab.db_ip, &lab.db_ip6]);
    let db = MariaDb::start_with(
        &lab.db,
        &scratch.0,
        3306,
        Options {
            tls: Some((leaf.cert.clone(), leaf.key.clone())),
            ..Options::default()
        },
    );
    eprintln!("lab and database up in {:.1?}", started.elapsed());
    let ca_arg = format!("--ssl-ca={}", ca.cert.display());
    let ca_path = ca.cert.to_str().unwrap();
    // Every connection the agent makes below, by address family, to check
    // the general log's count against.
    let (mut from_v4, mut from_v6) = (0, 0);

    // The fixture, over the socket.
    assert_eq!(db.sql("SELECT @@have_ssl"), "YES");
    assert_eq!(
        db.sql("SELECT id, holder, pan, cvv, expires, amount, pan_num FROM shop.cards ORDER BY id"),
        format!(
            "1\t{}\t{}\t123\t2030-01-31\t12.50\t{}\n2\t{}\t{}\t456\t2029-12-31\t99.99\t{}",
            HOLDERS[0], PANS[0], PANS[0], HOLDERS[1], PANS[1], PANS[1]
        )
    );
    assert_eq!(
        db.sql("SELECT user, plugin FROM mysql.user WHERE user LIKE 'agent%' ORDER BY user"),
        "agent\tmysql_native_password\nagent_ed\ted25519"
    );

    // The mariadb client: plaintext on request, TLS by default (it
    // negotiates TLS whenever the server offers it), verified TLS over IPv6,
    // the ed25519 account, a wrong password.
    let cli = |host: &str, args: &[&str], sql: &str| {
        let (ok, out, err) = agent_mysql_cli(&lab.agent, host, args, sql);
        assert!(ok, "mariadb {args:?} to {host}: {sql}: {err}");
        out
    };
    let cipher = "SHOW SESSION STATUS LIKE 'Ssl_cipher'";
    let plain = cli(
        &lab.db_ip,
        &["--skip-ssl"],
        &format!("SELECT pan FROM cards ORDER BY id; {cipher}"),
    );
    // (The empty value's tab is trimmed away.)
    assert_eq!(plain, format!("{}\n{}\nSsl_cipher", PANS[0], PANS[1]));
    let default = cli(&lab.db_ip, &[], cipher);
    assert!(default.starts_with("Ssl_cipher\tTLS_"), "{default}");
    let verified = cli(
        &lab.db_ip6,
        &[&ca_arg, "--ssl-verify-server-cert"],
        &format!("SELECT CURRENT_USER(); {cipher}"),
    );
    assert!(
        verified.starts_with("agent@%\nSsl_cipher\tTLS_"),
        "{verified}"
    );
    let ed = cli(
        &lab.db_ip,
        &["--skip-ssl", &format!("--user={}", mariadb::ED_USER)],
        "SELECT CURRENT_USER()",
    );
    assert_eq!(ed, "agent_ed@%");
    let (ok, _, err) = agent_mysql_cli(
        &lab.agent,
        &lab.db_ip,
        &["--skip-ssl", "--password=wrong"],
        "SELECT 1",
    );
    assert!(!ok && err.contains("ERROR 1045"), "{err}");
    from_v4 += 4;
    from_v6 += 1;

    // Both drivers, plaintext over IPv4 and verified TLS over IPv6. The
    // DELETE runs inside a transaction the script rolls back: nothing here
    // refuses it.
    let limit = Duration::from_secs(60);
    for driver in ["pymysql", "mysqlclient"] {
        for (host, tls) in [(&lab.db_ip, None), (&lab.db_ip6, Some(ca_path))] {
            let mut args = vec![
                "--driver",
                driver,
                "--host",
                host,
                "--delete-in-transaction",
            ];
            match tls {
                Some(ca) => args.extend(["--tls-ca", ca]),
                None => args.push("--no-tls"),
            }
            let what = format!("mysql_clients.py {args:?}");
            let (ok, out, err) =
                agent_script_in(&lab.agent, &python, "mysql_clients.py", &args, limit);
            assert!(ok, "{what}:\n{out}\n{err}");
            assert!(
                field(&out, "version")
                    .is_some_and(|v| v.contains("10.11.") && v.contains("MariaDB")),
                "{what}:\n{out}"
            );
            expect(&out, "pans", &PANS.join(","), &what);
            expect(&out, "masked", "0", &what);
            expect(&out, "delete_error", "none", &what);
            expect(&out, "deleted", "2", &what);
            expect(&out, "after_error", "1", &what);
            expect(&out, "multi", "1,2", &what);
            expect(&out, "param_holder", HOLDERS[0], &what);
            let cipher = field(&out, "tls").unwrap_or_default();
            match tls {
                Some(_) => assert!(cipher.starts_with("TLS_"), "{what}:\n{out}"),
                None => assert_eq!(cipher, "none", "{what}:\n{out}"),
            }
        }
        from_v4 += 1;
        from_v6 += 1;
    }
    // The table is as it was (the DELETEs were rolled back).
    assert_eq!(db.sql("SELECT COUNT(*) FROM shop.cards"), "2");

    // With --expect-masked, clear PANs fail the script (exit 3).
    let (ok, out, _) = agent_script_in(
        &lab.agent,
        &python,
        "mysql_clients.py",
        &[
            "--host",
            &lab.db_ip,
            "--no-tls",
            "--delete-in-transaction",
            "--expect-masked",
        ],
        limit,
    );
    assert!(!ok && field(&out, "masked") == Some("0"), "{out}");
    from_v4 += 1;

    // A certificate from another CA: each driver refuses the server during
    // the TLS handshake, before it logs in (so the log has no Connect).
    let stranger = Ca::new(&scratch.path("pki"), "stranger");
    for (driver, code) in [("pymysql", "2003"), ("mysqlclient", "2026")] {
        let args = [
            "--driver",
            driver,
            "--host",
            &lab.db_ip,
            "--tls-ca",
            stranger.cert.to_str().unwrap(),
        ];
        let (ok, out, _) = agent_script_in(&lab.agent, &python, "mysql_clients.py", &args, limit);
        assert!(
            !ok && field(&out, "error").is_some_and(|e| e.starts_with(&format!("{code}:"))),
            "{args:?}:\n{out}"
        );
    }

    // Streaming with the unbuffered cursors, and KILL QUERY across two
    // sessions.
    let rows = 200_000u64;
    for driver in ["pymysql", "mysqlclient"] {
        let args = [
            "--driver",
            driver,
            "--host",
            &lab.db_ip,
            "--no-tls",
            "--rows",
            &rows.to_string(),
        ];
        let what = format!("mysql_stream.py {args:?}");
        let (ok, out, err) = agent_script_in(&lab.agent, &python, "mysql_stream.py", &args, limit);
        assert!(ok, "{what}:\n{out}\n{err}");
        expect(&out, "rows", &rows.to_string(), &what);
        expect(&out, "sum", &(rows * (rows + 1) / 2).to_string(), &what);
        expect(&out, "in_order", "1", &what);
        assert!(
            field(&out, "max_rss_kb")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some(),
            "{what}:\n{out}"
        );
        eprintln!(
            "{driver}: {rows} rows in {} ms, client max RSS {} kB",
            field(&out, "elapsed_ms").unwrap_or("?"),
            field(&out, "max_rss_kb").unwrap_or("?")
        );
        from_v4 += 1;

        let args = [
            "--driver",
            driver,
            "--host",
            &lab.db_ip6,
            "--no-tls",
            "--sleep",
            "20",
        ];
        let what = format!("mysql_kill.py {args:?}");
        let (ok, out, err) = agent_script_in(&lab.agent, &python, "mysql_kill.py", &args, limit);
        assert!(ok, "{what}:\n{out}\n{err}");
        expect(&out, "a_running", "1", &what);
        expect(&out, "a_error", "1317", &what);
        expect(&out, "a_after", "1", &what);
        let after: u64 = field(&out, "killed_after_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}:\n{out}"));
        assert!(after < 5_000, "{what}: KILL took {after} ms:\n{out}");
        from_v6 += 2;
    }

    // The general log saw every connection, each from the agent's own
    // address, none from the gateway (it only forwarded).
    assert_eq!(
        db.connections_from(&lab.agent_ip),
        from_v4,
        "{}",
        db.general_log_text()
    );
    assert_eq!(
        db.connections_from(&lab.agent_ip6),
        from_v6,
        "{}",
        db.general_log_text()
    );
    assert_eq!(db.connections_from(&lab.gw_db_ip), 0);
    let connects = db.connects();
    let tls_from_agent = connects
        .iter()
        .filter(|c| c.host == lab.agent_ip6 && c.transport == "SSL/TLS")
        .count();
    // The verified CLI run and one mysql_clients.py per driver.
    assert_eq!(tls_from_agent, 3, "{connects:#?}");
    eprintln!("mariadb_fixture done in {:.1?}", started.elapsed());
}
