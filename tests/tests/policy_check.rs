//! `sluice policy check`: the policy author's tool explains decisions and
//! masking plans with the shipped example configuration, and its exit
//! status says allow (0), deny (1) or approval (3).
use std::process::Command;

fn check(identity: &str, sql: &str) -> (i32, String) {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/jump-host.toml"
    );
    let out = Command::new(sluice_lab::sluice_bin())
        .args(["policy", "check", "-c", config, "-i", identity, sql])
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
