//! Server-side prepared statements through the real gateway: the binary
//! protocol (COM_STMT_PREPARE, EXECUTE, SEND_LONG_DATA, RESET, CLOSE,
//! FETCH) from MySQL Connector/Python's prepared cursor, against MariaDB
//! 10.11 behind sluice. Every parameter type survives the round trip,
//! binary rows are masked like text rows, a refused execute leaves the
//! session usable, and the record holds each execute with its parameters,
//! cardholder data masked.
use std::{path::PathBuf, process::Command, time::Duration};

use sluice_lab::{
    daemon::{export_until, statements_in},
    leaks::leak,
    mariadb::PANS,
    python, require_privileged,
    scenario::{Custom, MysqlRun, agent_script_in, start_mysql},
};

use sluice_lab::mariadb::TEST_POLICY as POLICY;

/// A column of every MySQL type family, created as root before the test
/// (the agent's policy holds DDL for approval); `c_long` takes the value
/// sent with COM_STMT_SEND_LONG_DATA.
const TYPES_TABLE: &str = "CREATE TABLE shop.types (id int primary key,
    c_tiny tinyint, c_small smallint, c_medium mediumint, c_int int, c_big bigint,
    c_ubig bigint unsigned, c_float float, c_double double, c_decimal decimal(12,3),
    c_date date, c_time time, c_datetime datetime(6), c_timestamp timestamp NULL,
    c_year year, c_char char(8), c_varchar varchar(32), c_text text, c_blob blob,
    c_varbinary varbinary(16), c_enum enum('a','b'), c_set set('x','y'), c_json json,
    c_bit bit(8), c_null int, c_bool tinyint(1), c_long longblob);
    GRANT ALL ON shop.* TO 'agent'@'%'";

/// What the script binds, read back through the binary protocol (Python
/// reprs; `mysql_prepared.py` has the values).
const ROUND_TRIPS: &[(&str, &str)] = &[
    ("c_tiny", "-128"),
    ("c_small", "32767"),
    ("c_medium", "-8388608"),
    ("c_int", "2147483647"),
    ("c_big", "-9223372036854775808"),
    ("c_ubig", "9223372036854775808"),
    ("c_float", "1.5"),
    ("c_double", "-2.5e-07"),
    ("c_decimal", "Decimal('-123456789.125')"),
    ("c_date", "datetime.date(2024, 2, 29)"),
    ("c_time", "datetime.timedelta(days=1, seconds=21784)"),
    (
        "c_datetime",
        "datetime.datetime(2024, 2, 29, 1, 2, 3, 123456)",
    ),
    ("c_timestamp", "datetime.datetime(2024, 2, 29, 23, 59, 58)"),
    ("c_year", "2024"),
    ("c_char", "'ünï'"),
    ("c_varchar", r#"'O\'Reilly "€" \\ ✓'"#),
    ("c_text", r"'línea 1\nline 2\ttab 🐬'"),
    ("c_varbinary", r"b'\x00\xff\x10'"),
    ("c_enum", "'b'"),
    ("c_set", "'x,y'"),
    ("c_json", r#"'{"k": [1, 2, "ü"]}'"#),
    ("c_bit", r"b'\xa5'"),
    ("c_null", "None"),
    ("c_bool", "1"),
];

/// The venv's interpreter, if it imports MySQL Connector/Python (see
/// `cargo xtask setup`); under `SLUICE_REQUIRE_PRIVILEGED=1` its absence
/// fails the test.
fn connector_python(test: &str) -> Option<PathBuf> {
    let python = python::mysql_interpreter(test)?;
    let out = Command::new(&python)
        .args(["-c", "import mysql.connector"])
        .output()
        .expect("run the venv's python");
    if out.status.success() {
        return Some(python);
    }
    let problem = format!(
        "{} cannot import mysql.connector: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    if std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{test}: {problem}; run `cargo xtask setup`");
    }
    eprintln!("SKIP {test}: {problem}; run `cargo xtask setup`");
    None
}

fn both(r: &(bool, String, String)) -> String {
    format!("{}{}", r.1, r.2)
}

/// The value of `key` in a script's output; panics if it has none.
fn get<'a>(out: &'a str, key: &str) -> &'a str {
    python::field(out, key).unwrap_or_else(|| panic!("no {key}= in\n{out}"))
}

/// The `v_<col>=` lines of a run.
fn round_trips(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("v_")).collect()
}

/// The store's export once it holds at least `statements` statement events.
fn export(run: &MysqlRun, statements: usize) -> String {
    export_until(&run.daemon, &run.scratch.0, |e| {
        statements_in(e) >= statements
    })
}

#[test]
fn my5_prepared_statements_round_trip_masked_and_recorded() {
    if !require_privileged("my5") {
        return;
    }
    let run = start_mysql("my5", 45, |_| Custom {
        sections: POLICY.into(),
        ..Custom::default()
    });
    let Some(python) = connector_python("my5") else {
        return;
    };
    run.db.sql(TYPES_TABLE);
    let lab = &run.lab;
    let limit = Duration::from_secs(90);

    // Straight to the database, on its own host: what the driver reads
    // back without sluice in the way (row 2).
    let direct = agent_script_in(
        &lab.db,
        &python,
        "mysql_prepared.py",
        &[
            "--host",
            "127.0.0.1",
            "--no-tls",
            "--id",
            "2",
            "--types-only",
        ],
        limit,
    );
    assert!(direct.0, "direct: {}", both(&direct));

    // Through sluice (row 1).
    let r = run.agent_script(
        &python,
        "mysql_prepared.py",
        &["--host", &lab.db_ip, "--no-tls", "--id", "1"],
        limit,
    );
    let out = &r.1;
    assert!(r.0, "{}", both(&r));
    let field = |k: &str| get(out, k);
    assert_eq!(field("cext"), "0", "{out}");

    // Every type, as bound, through the binary protocol both ways; and
    // exactly what the driver reads straight from the database.
    for (col, want) in ROUND_TRIPS {
        assert_eq!(get(out, &format!("v_{col}")), *want, "{col}: {out}");
    }
    assert!(
        field("v_c_blob").starts_with(r"b'\x00\x01\x02")
            && field("v_c_blob").ends_with(r"\xfe\xff'"),
        "{out}"
    );
    assert_eq!(field("types_mismatch"), "", "{out}");
    assert_eq!(round_trips(out), round_trips(&direct.1), "{out}");
    let stored = run.db.sql(
        "SELECT c_ubig, c_decimal, c_datetime, c_time, c_year, HEX(c_bit), c_char \
         FROM shop.types WHERE id = 1",
    );
    assert_eq!(
        stored,
        "9223372036854775808\t-123456789.125\t2024-02-29 01:02:03.123456\t30:03:04\t2024\tA5\tünï"
    );

    // Binary rows masked like text rows: PAN in PCI display, the holder
    // redacted, the bigint PAN NULL; other columns as stored.
    assert_eq!(field("pans"), "411111******1111,550000******5559", "{out}");
    assert_eq!(field("holders"), "****,****", "{out}");
    assert_eq!(field("pan_nums"), "None,None", "{out}");
    assert_eq!(field("amounts"), "12.50,99.99", "{out}");
    assert_eq!(field("expires"), "2030-01-31,2029-12-31", "{out}");
    assert_eq!(
        field("cursor_pans"),
        "411111******1111,550000******5559",
        "{out}"
    );

    // The refused execute is an ERR 1142 naming the rule; the database
    // never saw it and the session goes on.
    let delete = field("delete_error");
    assert!(
        delete.starts_with("1142:") && delete.contains("no bulk delete"),
        "{out}"
    );
    assert_eq!(field("after_error"), "1", "{out}");
    assert_eq!(run.db.sql("SELECT count(*) FROM shop.cards"), "2");

    assert_eq!(field("long_data"), "300000:1", "{out}");
    assert_eq!(field("repeat"), "****,****", "{out}");
    assert_eq!(field("pan_param"), "1", "{out}");
    assert_eq!(field("binary_param"), "18", "{out}");
    assert!(leak(out, &PANS).is_none(), "{out}");
    // Through sluice: the database saw no connection from the agent.
    assert_eq!(run.direct_connections_from(&lab.agent_ip), 0);

    // The record: each execute with its parameters as text, cardholder
    // data masked; a value that is not text by its length only; no PAN
    // anywhere.
    let export = export(&run, 12);
    let executes: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("\"statement\"") && l.contains("\"protocol\":\"execute\""))
        .collect();
    assert!(executes.len() >= 10, "{export}");
    let find = |needle: &str| {
        executes
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no execute event with {needle}:\n{export}"))
    };
    let insert = find("INSERT INTO types");
    for param in [
        "\"-128\"",
        "\"9223372036854775808\"",
        "\"-123456789.125\"",
        "\"'2024-02-29 01:02:03.123456'\"",
        "\"'30:03:04'\"",
        "\"'ünï'\"",
        "null",
        "{\"binary_bytes\":256}",
        "{\"binary_bytes\":3}",
    ] {
        assert!(insert.contains(param), "{param} not in {insert}");
    }
    let delete = find("DELETE FROM cards");
    assert!(
        delete.contains("\"decision\":\"deny\"") && delete.contains("no bulk delete"),
        "{delete}"
    );
    assert!(
        find("UPDATE types SET c_long").contains("{\"binary_bytes\":300000}"),
        "{export}"
    );
    assert!(
        find("IS NOT NULL").contains("\"'411111******1111'\""),
        "{export}"
    );
    assert!(
        find("SELECT LENGTH(?)").contains("{\"binary_bytes\":18}"),
        "{export}"
    );
    // No PAN in any form in what the sessions recorded (the events, not
    // the export's own timestamps, which can pass Luhn), and none in the
    // clear anywhere.
    for line in export.lines().filter(|l| l.contains("\"type\":\"event\"")) {
        let event = &line[line.find("\"event\":").unwrap_or(0)..];
        assert!(
            leak(event, &PANS).is_none(),
            "{:?}: {line}",
            leak(event, &PANS)
        );
    }
    for pan in PANS {
        assert!(!export.contains(pan), "the record holds {pan}");
    }
}
