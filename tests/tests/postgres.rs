//! The PostgreSQL session engine through the transparent gateway: real
//! PostgreSQL 15, unmodified psql, pgbench and tokio-postgres, with a
//! pattern policy that refuses `DROP TABLE` and `DELETE` without WHERE.
use std::time::Duration;

use sluice_lab::{
    packets::in_netns,
    postgres::{PASSWORD, USER, conninfo},
    require_privileged,
    scenario::{self, GatewayRun},
};

fn setup(tag: &str, index: u8) -> GatewayRun {
    scenario::start_with_test_policy(tag, index)
}

fn psql(s: &GatewayRun, args: &[&str]) -> (bool, String, String) {
    let info = conninfo(&s.lab.db_ip, 5432);
    let mut argv = vec!["psql", "-X", "-At", "-v", "ON_ERROR_STOP=0", info.as_str()];
    argv.extend_from_slice(args);
    let out = s.lab.agent.try_run(&argv, Duration::from_secs(30));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refused_statements_get_42501_and_the_session_stays_usable() {
    if !require_privileged("refused_statements_get_42501") {
        return;
    }
    let s = setup("p1", 11);
    let (_, out, err) = psql(
        &s,
        &[
            "-c",
            "select 'before'",
            "-c",
            "drop table cards",
            "-c",
            "delete from cards",
            "-c",
            "select count(*) from cards",
            "-c",
            "delete from cards where id = 999",
        ],
    );
    assert!(out.contains("before"), "{out}{err}");
    assert_eq!(
        err.matches("sluice: statement refused by policy").count(),
        2,
        "two refusals expected:\n{err}"
    );
    assert!(
        out.contains("\n2\n") || out.ends_with("2\n") || out.contains("2\nDELETE 0"),
        "count after refusals: {out}"
    );
    // Nothing refused reached the database: the table and its rows are there.
    assert_eq!(s.pg.sql("select count(*) from cards"), "2");
    let log = s.daemon.log_text();
    assert!(log.contains("statement_denied"), "{log}");
    // Inside a transaction block a refusal aborts the transaction, exactly
    // as a failing statement would: the next statement is refused by the
    // database itself (25P02) and ROLLBACK ends it.
    let (_, out, err) = psql(
        &s,
        &[
            "-c",
            "begin",
            "-c",
            "drop table cards",
            "-c",
            "select 'after'",
            "-c",
            "rollback",
            "-c",
            "select 'clean'",
        ],
    );
    assert!(err.contains("current transaction is aborted"), "{err}");
    assert!(!out.contains("after") && out.contains("clean"), "{out}");
    // SQLSTATE is 42501 (psql shows it with VERBOSITY verbose).
    let (_, _, err) = psql(&s, &["-v", "VERBOSITY=verbose", "-c", "drop table cards"]);
    assert!(err.contains("42501"), "{err}");
}

#[test]
fn extended_protocol_and_pipelines_keep_their_order_with_refusals() {
    if !require_privileged("extended_protocol_and_pipelines") {
        return;
    }
    let s = setup("p2", 12);
    let conn = format!(
        "host={} port=5432 user={USER} password={PASSWORD} dbname=postgres",
        s.lab.db_ip
    );
    let results = in_netns(&s.lab.agent.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .expect("connect through sluice");
            tokio::spawn(connection);
            // Extended protocol with a bound parameter.
            let row = client
                .query_one("select $1::int + 1", &[&41i32])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i32>(0), 42);
            // A pipeline: tokio-postgres sends these before reading any
            // answer; the refusal in the middle must land on its own query.
            let a = client.query_one("select 'a'::text", &[]);
            let b = client.query("drop table cards", &[]);
            let c = client.query_one("select $1::text", &[&"c"]);
            let (a, b, c) = futures_util::join!(a, b, c);
            let a: String = a.unwrap().get(0);
            let c: String = c.unwrap().get(0);
            let code = b.unwrap_err().code().cloned();
            // Prepared statement reused after a refusal.
            let stmt = client
                .prepare("select count(*) from cards where id > $1")
                .await
                .unwrap();
            let n: i64 = client.query_one(&stmt, &[&0i32]).await.unwrap().get(0);
            (a, code, c, n)
        })
    });
    assert_eq!(results.0, "a");
    assert_eq!(
        results.1,
        Some(tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    assert_eq!(results.2, "c");
    assert_eq!(results.3, 2);
    assert_eq!(s.pg.sql("select count(*) from cards"), "2");
}

#[test]
fn pgbench_simple_extended_and_prepared_through_sluice() {
    if !require_privileged("pgbench_through_sluice") {
        return;
    }
    let s = setup("p3", 13);
    let init = std::process::Command::new("pgbench")
        .args([
            "-q",
            "-i",
            "-s",
            "1",
            "-h",
            s.pg.dir.to_str().unwrap(),
            "-U",
            "postgres",
            "postgres",
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    s.pg.sql(&format!(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO {USER}"
    ));
    for mode in ["simple", "extended", "prepared"] {
        let pw = format!("PGPASSWORD={PASSWORD}");
        let out = s.lab.agent.try_run(
            &[
                "env",
                &pw,
                "pgbench",
                "-n",
                "-M",
                mode,
                "-c",
                "4",
                "-j",
                "2",
                "-T",
                "2",
                "-h",
                &s.lab.db_ip,
                "-U",
                USER,
                "postgres",
            ],
            Duration::from_secs(60),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pgbench -M {mode}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("number of failed transactions: 0"),
            "pgbench -M {mode}:\n{text}"
        );
    }
}

#[test]
fn copy_both_ways_and_cancel() {
    if !require_privileged("copy_both_ways_and_cancel") {
        return;
    }
    let s = setup("p4", 14);
    s.pg.sql(&format!(
        "CREATE TABLE imported (id int, pan text); GRANT ALL ON imported TO {USER}"
    ));
    let csv = s.scratch.path("cards.csv");
    std::fs::write(
        &csv,
        (1..=1000)
            .map(|i| format!("{i},4111111111111111\n"))
            .collect::<String>(),
    )
    .unwrap();
    let (ok, out, err) = psql(
        &s,
        &[
            "-c",
            &format!("\\copy imported from '{}' with (format csv)", csv.display()),
        ],
    );
    assert!(ok && out.contains("COPY 1000"), "{out}{err}");
    let export = s.scratch.path("export.csv");
    let (ok, out, err) = psql(
        &s,
        &[
            "-c",
            &format!(
                "\\copy imported to '{}' with (format csv)",
                export.display()
            ),
        ],
    );
    assert!(ok && out.contains("COPY 1000"), "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(&export).unwrap().lines().count(),
        1000
    );

    // Cancel: psql sends a CancelRequest on SIGINT; sluice routes it by its
    // synthetic key to the real backend.
    let info = conninfo(&s.lab.db_ip, 5432);
    let mut child = s
        .lab
        .agent
        .command(&["psql", "-X", "-At", &info, "-c", "select pg_sleep(30)"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let started = std::time::Instant::now();
    let status = sluice_lab::wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten());
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        status.is_some(),
        "psql did not stop after SIGINT: the cancel did not reach the backend"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains("canceling statement due to user request"),
        "{err}"
    );
    assert!(
        s.daemon.log_text().contains("cancel request routed"),
        "{}",
        s.daemon.log_text()
    );
}
