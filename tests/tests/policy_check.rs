//! `sluice policy check`: the policy author's tool explains decisions and
//! masking plans with the shipped example configuration, and its exit
//! status says allow (0), deny (1) or approval (3).
use std::process::Command;

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/examples/jump-host.toml"
);

fn check(identity: &str, sql: &str) -> (i32, String) {
    run(&["-c", CONFIG, "-i", identity, sql])
}

/// `sluice policy check` with these arguments: exit status, output.
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(sluice_lab::sluice_bin())
        .args(["policy", "check"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn policy_check_explains_decisions_and_masking() {
    // One line per case: identity, SQL → exit status, text the output shows.
    let cases = [
        (
            "operator-psql",
            "select id, pan from cards limit 5",
            0,
            "pan              = cards.pan  → mask pci",
        ),
        (
            "operator-psql",
            "select reverse(pan) as r from cards limit 5",
            0,
            "computed from cards.pan  → mask redact",
        ),
        (
            "operator-psql",
            "select * from cards limit 1",
            0,
            "→ mask holder: redact, pan: pci",
        ),
        (
            "operator-psql",
            "delete from orders",
            1,
            "DENY by policy.rules[1] \"no unbounded delete or update\"",
        ),
        (
            "operator-psql",
            "select 1; delete from orders",
            1,
            "DENY by policy.rules[1]",
        ),
        (
            "operator-psql",
            "create table t (a int)",
            3,
            "APPROVE by policy.rules[2] \"schema changes need a human\"",
        ),
        (
            "operator-psql",
            "select id from cards where pan like '4%'",
            1,
            "DENY by masking.probing",
        ),
        (
            "operator-psql",
            "select pg_read_file('/etc/shadow')",
            1,
            "DENY by policy.rules[3]",
        ),
        ("operator-psql", "selec 1", 1, "DENY by policy.unparseable"),
        ("uid:4242", "select 1", 1, "DENY by policy.default"),
    ];
    for (identity, sql, status, shows) in cases {
        let (code, out) = check(identity, sql);
        assert_eq!(code, status, "{identity} {sql}:\n{out}");
        assert!(
            out.contains(shows),
            "{identity} {sql}: expected {shows:?} in\n{out}"
        );
    }
    // A target that does not exist is an error (2), not a decision.
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/jump-host.toml"
    );
    let out = Command::new(sluice_lab::sluice_bin())
        .args([
            "policy",
            "check",
            "-c",
            config,
            "-i",
            "operator-psql",
            "-t",
            "nope",
            "select 1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no target is named \"nope\""));
}

#[test]
fn policy_check_reads_mysql() {
    // One line per case: dialect, SQL → exit status, text the output shows.
    let cases = [
        (
            "mysql",
            "select id, pan from cards limit 5",
            0,
            "pan              = cards.pan  → mask pci",
        ),
        // An executable comment is code to MySQL: the probe inside is seen.
        (
            "mysql",
            "select id from cards where id = 1 /*!50000 or pan like '4%' */ limit 5",
            1,
            "DENY by masking.probing",
        ),
        // PostgreSQL reads the same text as a comment.
        (
            "postgres",
            "select id from cards where id = 1 /*!50000 or pan like '4%' */ limit 5",
            0,
            "ALLOW by policy.rules[0]",
        ),
        (
            "mysql",
            "select 1 /*!, pan from cards*/ limit 1",
            0,
            "pan              = cards.pan  → mask pci",
        ),
        (
            "mysql",
            "select pan from cards into outfile '/tmp/cards.csv'",
            1,
            "DENY by builtin.file_io",
        ),
        (
            "mysql",
            "load data local infile '/etc/passwd' into table orders",
            1,
            "DENY by builtin.file_io",
        ),
        (
            "mysql",
            "set @p = (select pan from cards limit 1)",
            1,
            "DENY by masking.laundering",
        ),
        (
            "mysql",
            "select reverse(pan) from cards limit 5",
            0,
            "reverse(pan)     computed from cards.pan  → mask redact",
        ),
        (
            "mysql",
            "prepare s from @q",
            1,
            "DENY by builtin.dynamic_sql",
        ),
        (
            "mysql",
            "select 1; delete from orders",
            1,
            "DENY by policy.rules[1]",
        ),
    ];
    for (dialect, sql, status, shows) in cases {
        let (code, out) = run(&[
            "-c",
            CONFIG,
            "-i",
            "operator-psql",
            "--dialect",
            dialect,
            sql,
        ]);
        assert_eq!(code, status, "{dialect} {sql}:\n{out}");
        assert!(
            out.contains(shows),
            "{dialect} {sql}: expected {shows:?} in\n{out}"
        );
    }
    // Without --dialect, a MySQL target's statements are read as MySQL.
    let scratch = sluice_lab::Scratch::new("policy-check-mysql");
    let config = scratch.path("sluice.toml");
    let text = std::fs::read_to_string(CONFIG).unwrap()
        + "\n[[targets]]\nname = \"shop-db\"\naddress = \"10.20.1.5\"\nport = 3306\nprotocol = \"mysql\"\n";
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let sql = "select id from cards where id = 1 /*! or pan like '4%' */ limit 5";
    let (code, out) = run(&["-c", config, "-i", "operator-psql", "-t", "shop-db", sql]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("target shop-db (mysql)") && out.contains("DENY by masking.probing"),
        "{out}"
    );
    let (code, out) = run(&[
        "-c",
        config,
        "-i",
        "operator-psql",
        "-t",
        "payments-db",
        sql,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("target payments-db (postgres)"), "{out}");
    // An unknown dialect is an error (2).
    let (code, out) = run(&[
        "-c",
        CONFIG,
        "-i",
        "operator-psql",
        "-d",
        "oracle",
        "select 1",
    ]);
    assert_eq!(code, 2, "{out}");
}

/// Rules that name database `users` apply when `--user` matches one of
/// their globs; without `--user` they are left out, and the output says
/// so.
#[test]
fn policy_check_applies_rules_for_a_database_user() {
    let dir = std::env::temp_dir().join(format!("sluice-policy-user-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sluice.toml");
    let base = std::fs::read_to_string(CONFIG).unwrap();
    std::fs::write(
        &config,
        format!(
            "{base}\n[[policy.rules]]\nname = \"reporting users only read\"\naction = \"deny\"\n\
             classes = [\"write\"]\nusers = [\"report*\"]\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let sql = "update orders set status = 'x' where id = 1";
    let (code, out) = run(&["-c", config, "-i", "operator-psql", "-u", "report_ro", sql]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("reporting users only read"), "{out}");
    assert!(out.contains("database user report_ro"), "{out}");
    let (code, out) = run(&["-c", config, "-i", "operator-psql", "-u", "app", sql]);
    assert_ne!(code, 1, "a user the globs do not match was refused: {out}");
    let (code, out) = run(&["-c", config, "-i", "operator-psql", sql]);
    assert_ne!(code, 1, "{out}");
    assert!(
        out.contains("note: 1 rule applies only to some database users"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
