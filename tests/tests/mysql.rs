//! MySQL and MariaDB through the real gateway: MariaDB 10.11 (Debian) on
//! the database host, sluice steering port 3306, and unmodified clients on
//! the agent host — the `mariadb` command-line client, PyMySQL and
//! mysqlclient — with the same guarantees as PostgreSQL: masked cardholder
//! data, refusals as ERR packets on a session that stays usable, statements
//! held for approval, every session recorded; TLS on both legs, both
//! authentication plugins, `KILL QUERY` and large results at constant
//! memory; and a MySQL-flavoured bypass suite.
use std::time::Duration;

use sluice_lab::{
    daemon::{export_until, statements_in, store_dir},
    leaks::leak,
    mariadb::{self, ED_USER, PANS, PASSWORD},
    netns,
    pki::Ca,
    python, require_privileged,
    scenario::{Custom, MysqlRun, start_mysql, start_mysql_with},
};

use sluice_lab::mariadb::TEST_POLICY as POLICY;

fn setup(tag: &str, index: u8) -> MysqlRun {
    start_mysql(tag, index, |_| Custom {
        sections: POLICY.into(),
        ..Custom::default()
    })
}

/// Everything the client printed, both streams.
fn both(r: &(bool, String, String)) -> String {
    format!("{}{}", r.1, r.2)
}

/// The store's export once it holds at least `statements` statement events.
fn export(run: &MysqlRun, statements: usize) -> String {
    export_until(&run.daemon, &run.scratch.0, |e| {
        statements_in(e) >= statements
    })
}

#[test]
fn my1_clients_see_masked_data_and_refusals_through_the_gateway() {
    if !require_privileged("my1") {
        return;
    }
    let run = setup("my1", 42);
    let lab = &run.lab;

    // The mariadb CLI, both address families: masked by the column's
    // origin (holder redacted, PAN in PCI display, the bigint PAN NULL).
    for host in [&lab.db_ip, &lab.db_ip6] {
        let r = run.agent_mysql(
            host,
            "SELECT id, holder, pan, pan_num FROM cards ORDER BY id",
        );
        assert!(r.0, "{host}: {}", both(&r));
        assert_eq!(
            r.1.lines().next(),
            Some("1\t****\t411111******1111\tNULL"),
            "{host}: {}",
            both(&r)
        );
        assert!(leak(&r.1, &PANS).is_none(), "{}", r.1);
    }
    // An alias does not hide the column: its origin comes with the result.
    let r = run.agent_mysql(&lab.db_ip, "SELECT pan AS x FROM cards WHERE id = 2");
    assert_eq!(r.1.trim(), "550000******5559", "{}", both(&r));

    // Refused with the rule named, ERR 1142; the database never saw it.
    let r = run.agent_mysql(&lab.db_ip, "DELETE FROM cards");
    assert!(!r.0);
    assert!(
        r.2.contains("ERROR 1142") && r.2.contains("no bulk delete"),
        "{}",
        both(&r)
    );
    assert_eq!(run.db.sql("SELECT count(*) FROM shop.cards").trim(), "2");

    // DDL is held for approval; nobody decides, so it expires and is
    // refused, saying why.
    let r = run.agent_mysql(&lab.db_ip, "CREATE TABLE t_held (x int)");
    assert!(!r.0);
    assert!(
        r.2.contains("no approver decided within 2 s"),
        "{}",
        both(&r)
    );
    assert_eq!(
        run.db
            .sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 't_held'")
            .trim(),
        "0"
    );

    // ed25519 (MariaDB's client_ed25519 plugin) passes through sluice.
    let r = run.agent_mysql_with(
        &lab.db_ip,
        &[
            "--skip-ssl",
            &format!("--user={ED_USER}"),
            &format!("--password={PASSWORD}"),
        ],
        "SELECT CURRENT_USER()",
    );
    assert!(r.0 && r.1.starts_with(ED_USER), "{}", both(&r));

    // Python drivers, unmodified: masked rows, the refusal as an error on a
    // session that stays usable, multi-statements, parameters.
    if let Some(python) = python::mysql_interpreter("my1") {
        for driver in ["pymysql", "mysqlclient"] {
            let r = run.agent_script(
                &python,
                "mysql_clients.py",
                &[
                    "--driver",
                    driver,
                    "--host",
                    &lab.db_ip,
                    "--no-tls",
                    "--expect-masked",
                ],
                Duration::from_secs(60),
            );
            let out = &r.1;
            assert!(r.0, "{driver}: {}", both(&r));
            let field = |k| python::field(out, k).unwrap_or("");
            assert!(
                field("delete_error").starts_with("1142:"),
                "{driver}: {out}"
            );
            assert_eq!(field("after_error"), "1", "{driver}: {out}");
            assert_eq!(field("multi"), "1,2", "{driver}: {out}");
            assert_eq!(field("param_holder"), "****", "{driver}: {out}");
            assert!(leak(out, &PANS).is_none(), "{driver}: {out}");
        }
    }

    // Every connection went through sluice: none reached the database
    // from the agent's own address.
    assert_eq!(run.direct_connections_from(&lab.agent_ip), 0);
    assert!(run.db.connections_from(&lab.gw_db_ip) >= 4);

    // The record: MySQL sessions, their statements and decisions, the
    // held DDL's expiry, masking counts; no PAN anywhere.
    let export = export(&run, 6);
    assert!(export.contains("\"protocol\":\"mysql\""), "{export}");
    assert!(export.contains("\"protocol\":\"query\""), "{export}");
    assert!(
        export.contains("\"decision\":\"deny\"") && export.contains("no bulk delete"),
        "{export}"
    );
    assert!(export.contains("\"outcome\":\"expired\""), "{export}");
    assert!(export.contains("\"masked\":[["), "{export}");
    for pan in PANS {
        assert!(!export.contains(pan), "the record holds {pan}");
    }
}

/// MySQL-flavoured bypass attempts, one per line, through the mariadb CLI.
const ATTEMPTS: &[&str] = &[
    "SELECT pan FROM cards",
    "SELECT * FROM cards",
    "SELECT c.* FROM cards c",
    "SELECT `pan` FROM `cards`",
    "SELECT shop.cards.pan FROM shop.cards",
    "SELECT PAN FROM CARDS",
    "SELECT pan_num FROM cards",
    "SELECT CAST(pan AS CHAR) FROM cards",
    "SELECT CAST(pan AS UNSIGNED) FROM cards",
    "SELECT CONVERT(pan, CHAR) FROM cards",
    "SELECT CONVERT(pan USING utf8mb4) FROM cards",
    "SELECT pan + 0 FROM cards",
    "SELECT pan_num + 0 FROM cards",
    "SELECT CONCAT(pan) FROM cards",
    "SELECT CONCAT('x', pan) FROM cards",
    "SELECT CONCAT_WS('-', holder, pan) FROM cards",
    "SELECT HEX(pan) FROM cards",
    "SELECT HEX(pan_num) FROM cards",
    "SELECT TO_BASE64(pan) FROM cards",
    "SELECT REVERSE(pan) FROM cards",
    "SELECT SUBSTRING(pan, 1, 8), SUBSTRING(pan, 9) FROM cards",
    "SELECT LEFT(pan, 8), RIGHT(pan, 8) FROM cards",
    "SELECT MID(pan, 5, 8) FROM cards",
    "SELECT LPAD(pan, 20, '0') FROM cards",
    "SELECT REPLACE(pan, '1', '1') FROM cards",
    "SELECT GROUP_CONCAT(pan) FROM cards",
    "SELECT MAX(pan) FROM cards",
    "SELECT JSON_OBJECT('p', pan) FROM cards",
    "SELECT JSON_ARRAYAGG(pan) FROM cards",
    "SELECT ELT(1, pan) FROM cards",
    "SELECT 1 UNION SELECT pan FROM cards",
    "SELECT x FROM (SELECT pan AS x FROM cards) t",
    "WITH t AS (SELECT pan AS x FROM cards) SELECT x FROM t",
    "SELECT (SELECT pan FROM cards WHERE id = 1)",
    // Executable comments: the server runs their content.
    "SELECT 1 /*!50000 , pan */ FROM cards",
    "SELECT /*! pan */ FROM cards",
    "SELECT 1 /*M!100100 , pan */ FROM cards",
    "/*!SELECT pan FROM cards*/",
    // User variables.
    "SELECT @v := pan FROM cards",
    "SET @v = (SELECT pan FROM cards WHERE id = 1)",
    "SELECT pan INTO @v FROM cards WHERE id = 1",
    // Files and dynamic SQL.
    "SELECT pan FROM cards INTO OUTFILE '/tmp/pans.txt'",
    "SELECT pan FROM cards INTO DUMPFILE '/tmp/pans.bin'",
    "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE cards",
    "SET @q = 'SELECT pan FROM cards'",
    "PREPARE s FROM @q",
    "PREPARE s FROM 'SELECT pan FROM cards'",
    "HANDLER cards OPEN",
    // Stored copies and probes.
    "CREATE TABLE leak AS SELECT pan FROM cards",
    "INSERT INTO cards (id, holder, pan) SELECT id + 10, pan, pan FROM cards",
    "CREATE VIEW v AS SELECT pan FROM cards",
    "SELECT id FROM cards WHERE pan = '4111111111111111'",
    "SELECT id FROM cards WHERE pan LIKE '4111%'",
    // Errors that echo values.
    "SELECT CAST(pan AS DATE) FROM cards",
    "SELECT EXTRACTVALUE(1, CONCAT(0x5c, (SELECT pan FROM cards LIMIT 1)))",
    "SELECT * FROM cards WHERE id = (SELECT pan FROM cards LIMIT 1) AND 1 = (SELECT 1 FROM cards HAVING pan)",
    // Comments, quoting, multi-statements.
    "SELECT /* hi */ pan # there\n FROM cards",
    "SELECT pan -- x\n FROM cards",
    "SELECT 1; SELECT pan FROM cards",
    "SELECT 1; DELETE FROM cards",
    "SELECT pan FROM cards WHERE holder = 'a\\' OR 1=1 -- '",
    "SELEC pan FROM cards",
];

#[test]
fn my2_bypass_suite_leaks_no_pan_and_records_every_attempt() {
    if !require_privileged("my2") {
        return;
    }
    let run = setup("my2", 43);
    let mut leaks = Vec::new();
    let (mut refused, mut masked) = (0, 0);
    for sql in ATTEMPTS {
        let r = run.agent_mysql(&run.lab.db_ip, sql);
        // The client echoes a failed statement: that is the agent's own
        // text, not data from the database.
        let out = both(&r).replace(sql, "");
        if let Some(l) = leak(&out, &PANS) {
            leaks.push(format!("{sql}\n  → {l}\n  {}", out.replace('\n', "\n  ")));
        }
        refused += usize::from(out.contains("refused"));
        masked += usize::from(out.contains("****"));
    }
    assert!(
        leaks.is_empty(),
        "{} of {} attempts leaked:\n{}",
        leaks.len(),
        ATTEMPTS.len(),
        leaks.join("\n")
    );
    assert!(
        refused >= 15 && masked >= 15,
        "refused {refused}, masked {masked}"
    );
    // Nothing was written or copied.
    assert_eq!(run.db.sql("SELECT count(*) FROM shop.cards").trim(), "2");
    let tables = run
        .db
        .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop'");
    assert_eq!(tables.trim(), "cards", "{tables}");

    let export = export(&run, ATTEMPTS.len());
    let statements = export
        .lines()
        .filter(|l| l.contains("\"statement\""))
        .count();
    assert!(
        statements >= ATTEMPTS.len(),
        "{statements} statement events for {} attempts",
        ATTEMPTS.len()
    );
    for pan in PANS {
        assert!(!export.contains(pan), "the record holds {pan}");
    }
}

/// TLS on both legs (the client's terminated by sluice with its
/// certificate, the database's originated by sluice and verified), `KILL
/// QUERY` from a second connection, and a large result streamed at
/// constant memory.
#[test]
fn my3_tls_both_legs_kill_query_and_large_results() {
    if !require_privileged("my3") {
        return;
    }
    let mut sluice_ca = std::path::PathBuf::new();
    let run = start_mysql_with("my3", 44, true, |p| {
        let ca = Ca::new(&p.scratch.path("pki"), "gateway");
        let leaf = ca.issue("sluice", &[&p.lab.db_ip, &p.lab.db_ip6]);
        sluice_ca = ca.cert.clone();
        Custom {
            sections: format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[policy]\ndefault = \"allow\"\n",
                leaf.cert.display(),
                leaf.key.display()
            ),
            target_v4: format!(
                "upstream_tls = \"verify-full\"\nupstream_ca = \"{}\"\n",
                p.db_ca.expect("database CA").display()
            ),
            ..Custom::default()
        }
    });
    let lab = &run.lab;
    let ca = sluice_ca.to_str().unwrap();

    // The CLI verifies sluice's certificate for the address it dialled.
    let r = run.agent_mysql_with(
        &lab.db_ip,
        &[&format!("--ssl-ca={ca}"), "--ssl-verify-server-cert"],
        "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
    );
    assert!(r.0, "{}", both(&r));
    assert!(
        r.1.starts_with("Ssl_cipher\tTLS_"),
        "the database leg is not TLS: {}",
        both(&r)
    );
    let gw = run
        .db
        .connects()
        .into_iter()
        .filter(|c| c.host == lab.gw_db_ip)
        .collect::<Vec<_>>();
    assert!(
        !gw.is_empty() && gw.iter().all(|c| c.transport == "SSL/TLS"),
        "{gw:?}"
    );

    let Some(python) = python::mysql_interpreter("my3") else {
        return;
    };
    let r = run.agent_script(
        &python,
        "mysql_clients.py",
        &["--driver", "pymysql", "--host", &lab.db_ip, "--tls-ca", ca],
        Duration::from_secs(60),
    );
    assert!(r.0, "{}", both(&r));
    assert!(
        python::field(&r.1, "tls").is_some_and(|t| t.starts_with("TLS_")),
        "{}",
        r.1
    );

    // KILL QUERY from a second connection reaches the first one's thread.
    let r = run.agent_script(
        &python,
        "mysql_kill.py",
        &["--host", &lab.db_ip, "--no-tls", "--sleep", "20"],
        Duration::from_secs(60),
    );
    assert!(r.0, "{}", both(&r));
    assert_eq!(python::field(&r.1, "a_error"), Some("1317"), "{}", r.1);
    assert_eq!(python::field(&r.1, "a_after"), Some("1"), "{}", r.1);
    let killed_ms: u64 = python::field(&r.1, "killed_after_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(killed_ms < 10_000, "{}", r.1);

    // Two million rows (about 50 MB) stream through; sluice's peak
    // memory grows by far less than the result.
    let hwm = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", run.daemon.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = hwm();
    let r = run.agent_script(
        &python,
        "mysql_stream.py",
        &["--host", &lab.db_ip, "--no-tls", "--rows", "2000000"],
        Duration::from_secs(180),
    );
    assert!(r.0, "{}", both(&r));
    assert_eq!(python::field(&r.1, "rows"), Some("2000000"), "{}", r.1);
    assert_eq!(python::field(&r.1, "in_order"), Some("1"), "{}", r.1);
    let grown = hwm().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "sluice's peak RSS grew by {grown} kB for a 50 MB result"
    );
}

#[test]
fn my4_a_full_audit_store_fails_closed() {
    if !require_privileged("my4") {
        return;
    }
    // The store directory is its own small tmpfs.
    let mut mounted = None;
    let run = start_mysql("my4", 47, |p| {
        mounted = Some(netns::mount_tmpfs(&store_dir(&p.scratch.0), "16m"));
        Custom {
            sections: POLICY.into(),
            ..Custom::default()
        }
    });
    let host = run.lab.db_ip.clone();
    let r = run.agent_mysql(&host, "SELECT 'before the disk filled'");
    assert!(r.0 && r.1.contains("before"), "{}", both(&r));

    // Fill the store's filesystem, then run reads one by one until the
    // store cannot take their events. A read changes nothing, so it runs
    // while its record is being written and the refused one may reach the
    // database — but none of its rows may reach the client.
    let filler = store_dir(&run.scratch.0).join("filler");
    let _ = netns::sh(&[
        "dd",
        "if=/dev/zero",
        &format!("of={}", filler.display()),
        "bs=1M",
        "count=64",
    ]);
    let script = run.scratch.0.join("fill.sql");
    let sql: String = (1..=2000)
        .map(|i| format!("SELECT 'fill-{i}', pan FROM cards WHERE id = 1;\n"))
        .collect();
    std::fs::write(&script, sql).unwrap();
    let cmd = format!(
        "mariadb --no-defaults --protocol=tcp -h {host} -P 3306 -u {} --password={} --skip-ssl -N -B {} < {}",
        mariadb::USER,
        PASSWORD,
        mariadb::DATABASE,
        script.display()
    );
    let out = run
        .lab
        .agent
        .try_run(&["sh", "-c", &cmd], Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "2000 statements ran with the store full"
    );
    assert!(
        stderr.contains("the audit store cannot record this session"),
        "{stderr}"
    );
    // The CLI names the line (= the statement) that was refused.
    let refused: usize = stderr
        .split("at line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line number in {stderr}"));
    let printed: Vec<usize> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("fill-"))
        .filter_map(|l| l.split('\t').next()?.parse().ok())
        .collect();
    assert_eq!(
        printed,
        (1..refused).collect::<Vec<_>>(),
        "rows of statement {refused}, which the store could not record, reached the client"
    );
    assert!(leak(&stdout, &PANS).is_none(), "{stdout}");
    let ran = run
        .db
        .general_log_text()
        .contains(&format!("'fill-{refused}'"));

    // The daemon goes on: other sessions are refused the same way, and a
    // write waits for its record, so it never reaches the database.
    let r = run.agent_mysql(
        &host,
        "UPDATE cards SET holder = 'still full' WHERE id = 99",
    );
    assert!(!r.0 && r.2.contains("audit store"), "{}", both(&r));
    let log = run.db.general_log_text();
    assert!(log.contains("before the disk filled"), "{log}");
    assert!(
        !log.contains("still full"),
        "a write the store could not record ran"
    );
    eprintln!(
        "my4: read {refused} of 2000 refused; the database {} it, its rows never reached the client",
        if ran { "ran" } else { "never saw" }
    );
    drop(run);
    drop(mounted);
}
