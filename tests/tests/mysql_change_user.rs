//! `COM_CHANGE_USER` through the real gateway against MariaDB 10.11, with
//! real drivers (mysqlclient's `change_user`, Connector/Python's
//! `cmd_change_user`; `tests/python/mysql_change_user.py`).
//!
//! Passthrough (the IPv4 target): the database authenticates the new user
//! and sluice remakes the session's policy for it — a rule naming the
//! `reporter` database user refuses its writes, so the same UPDATE (of
//! `shop.notes`, created here) is
//! allowed before the change, refused after it and allowed again once the
//! session changes back. A wrong password gets the server's own error and
//! the session goes on as the old user (MariaDB keeps it). Statements
//! prepared before a change are gone. Credential injection (the IPv6
//! target): the command is refused with a clear error and the session
//! stays usable. Everything is in the audit export, the auth response
//! never.
use std::{collections::BTreeMap, fs, os::unix::fs::PermissionsExt, time::Duration};

use serde_json::Value;
use sluice_lab::{
    daemon::export_until,
    mariadb::{self, PANS, PASSWORD},
    python, require_privileged,
    scenario::{Custom, agent_script_in, start_mysql},
};

/// The second database user, and its password.
const OTHER: &str = "reporter";
const OTHER_PASSWORD: &str = "reporter-Pw-61c2";

/// The lab's policy, and a rule for the `reporter` database user only.
fn policy() -> String {
    format!(
        "{}\n[[policy.rules]]\nname = \"reporters only read\"\naction = \"deny\"\nusers = [\"{OTHER}\"]\nclasses = [\"write\"]\n",
        mariadb::TEST_POLICY
    )
}

/// Events of the export by session id, in order.
fn sessions(export: &str) -> BTreeMap<u64, Vec<Value>> {
    let mut out: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in export.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["type"] == "event" {
            let id = v["session"].as_u64().unwrap_or_default();
            out.entry(id).or_default().push(v["event"].clone());
        }
    }
    out
}

/// The status of the outcome recorded after each `change_user` event of a
/// session, with the event: (text, decision, outcome status or "none").
fn changes(events: &[Value]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if e["kind"] == "statement" && e["protocol"] == "change_user" {
            let status = events[i + 1..]
                .iter()
                .find(|o| o["kind"] == "outcome" || o["kind"] == "statement")
                .filter(|o| o["kind"] == "outcome")
                .map_or("none".to_owned(), |o| {
                    o["status"].as_str().unwrap_or_default().to_owned()
                });
            out.push((
                e["text"].as_str().unwrap_or_default().to_owned(),
                e["decision"].as_str().unwrap_or_default().to_owned(),
                status,
            ));
        }
    }
    out
}

#[test]
fn mycu1_change_user_remakes_the_policy_and_is_refused_with_injection() {
    if !require_privileged("mycu1") {
        return;
    }
    let Some(py) = python::mysql_interpreter("mycu1") else {
        return;
    };
    let run = start_mysql("mycu1", 48, |p| {
        p.db.sql(&format!(
            "CREATE USER '{OTHER}'@'%' IDENTIFIED WITH mysql_native_password USING PASSWORD('{OTHER_PASSWORD}');
             GRANT ALL ON shop.* TO '{OTHER}'@'%';
             CREATE TABLE shop.notes (id INT PRIMARY KEY, body TEXT);
             INSERT INTO shop.notes VALUES (1, 'n');"
        ));
        let secrets = p.scratch.path("secrets.toml");
        fs::write(
            &secrets,
            format!(
                "[[credentials]]\ntarget = \"lab-my6\"\nuser = \"{}\"\nupstream_user = \"{}\"\npassword = \"{PASSWORD}\"\nclients = [\"{}\"]\n",
                mariadb::USER,
                mariadb::USER,
                p.lab.agent_ip6
            ),
        )
        .unwrap();
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
        Custom {
            proxy: format!("secrets_file = \"{}\"", secrets.display()),
            sections: policy(),
            target_v6: "auth = \"inject\"\nupstream_tls = \"disable\"".into(),
            ..Custom::default()
        }
    });
    let lab = &run.lab;
    let limit = Duration::from_secs(60);
    let get = |out: &str, k: &str| python::field(out, k).unwrap_or("<missing>").to_owned();

    // Passthrough.
    let r = run.agent_script(
        &py,
        "mysql_change_user.py",
        &[
            "--host",
            &lab.db_ip,
            "--other",
            OTHER,
            "--other-password",
            OTHER_PASSWORD,
        ],
        limit,
    );
    let out = format!("{}{}", r.1, r.2);
    assert!(r.0, "{out}");
    let field = |k: &str| get(&r.1, k);
    assert_eq!(field("user_before"), "agent@%", "{out}");
    assert_eq!(field("write_before"), "ok", "{out}");
    // A wrong password: the server's own refusal, and MariaDB keeps the
    // session as the old user.
    let bad = field("bad_change");
    assert!(
        bad.starts_with("1045:") && bad.contains(&format!("'{OTHER}'")),
        "{out}"
    );
    assert_eq!(field("user_after_bad"), "agent@%", "{out}");
    // The change: the database says who, and sluice's policy for the new
    // user refuses the write the old one was allowed.
    assert_eq!(field("change"), "ok", "{out}");
    assert_eq!(field("user_after"), format!("{OTHER}@%"), "{out}");
    let write = field("write_after");
    assert!(
        write.starts_with("1142:") && write.contains("reporters only read"),
        "{out}"
    );
    // Masking still applies to the new user.
    assert_eq!(field("read_after"), "411111******1111", "{out}");
    // And back: the policy is made again for the first user.
    assert_eq!(field("change_back"), "ok", "{out}");
    assert_eq!(field("write_back"), "ok", "{out}");
    // Connector/Python: statements prepared before the change are gone;
    // a new one works, under the new user's policy.
    assert_eq!(field("cp_before"), "1", "{out}");
    assert_eq!(field("cp_change"), "ok", "{out}");
    assert!(field("cp_stale").starts_with("1243:"), "{out}");
    assert_eq!(field("cp_fresh"), "1", "{out}");

    // Straight to the database on its own host, for comparison: what
    // sluice mirrors is what MariaDB does — a failed change keeps the old
    // user on the same connection, and a change (failed or not) drops the
    // prepared statements.
    let direct = agent_script_in(
        &lab.db,
        &py,
        "mysql_change_user.py",
        &[
            "--host",
            "127.0.0.1",
            "--other",
            OTHER,
            "--other-password",
            OTHER_PASSWORD,
        ],
        limit,
    );
    let out_direct = format!("{}{}", direct.1, direct.2);
    assert!(direct.0, "{out_direct}");
    let direct_field = |k: &str| get(&direct.1, k);
    assert!(
        direct_field("bad_change").starts_with("1045:"),
        "{out_direct}"
    );
    for k in [
        "user_after_bad",
        "change",
        "user_after",
        "cp_change",
        "cp_fresh",
    ] {
        assert_eq!(direct_field(k), field(k), "{k}: {out_direct}");
    }
    assert!(
        direct_field("cp_stale").starts_with("1243:"),
        "{out_direct}"
    );
    assert_eq!(direct_field("write_after"), "ok", "{out_direct}");

    // Credential injection: refused, the session still usable.
    let r = run.agent_script(
        &py,
        "mysql_change_user.py",
        &[
            "--host",
            &lab.db_ip6,
            "--password",
            "anything",
            "--other",
            OTHER,
            "--other-password",
            OTHER_PASSWORD,
            "--inject",
        ],
        limit,
    );
    let out6 = format!("{}{}", r.1, r.2);
    assert!(r.0, "{out6}");
    assert_eq!(get(&r.1, "user_before"), "agent@%", "{out6}");
    let refused = get(&r.1, "change");
    assert!(
        refused.starts_with("1045:") && refused.contains("auth = \"inject\""),
        "{out6}"
    );
    assert_eq!(get(&r.1, "after"), "1", "{out6}");

    // The record: every change with its user and database and how it
    // ended; never a password.
    let export = export_until(&run.daemon, &run.scratch.0, |e| {
        e.matches("\"change_user\"").count() >= 5 && e.matches("session_end").count() >= 3
    });
    for secret in [OTHER_PASSWORD, PASSWORD, "not-the-password"] {
        assert!(!export.contains(secret), "the record holds {secret}");
    }
    for pan in PANS {
        assert!(!export.contains(pan), "the record holds {pan}");
    }
    let recorded: Vec<Vec<(String, String, String)>> = sessions(&export)
        .values()
        .map(|events| changes(events))
        .filter(|c| !c.is_empty())
        .collect();
    let to = |user: &str| format!("COM_CHANGE_USER user='{user}' database='shop'");
    let (other, agent) = (to(OTHER), to(mariadb::USER));
    let want_mysqlclient = vec![
        (other.clone(), "allow".to_owned(), "error".to_owned()),
        (other.clone(), "allow".to_owned(), "ok".to_owned()),
        (agent, "allow".to_owned(), "ok".to_owned()),
    ];
    let want_connector = vec![(other.clone(), "allow".to_owned(), "ok".to_owned())];
    let want_inject = vec![(other, "deny".to_owned(), "none".to_owned())];
    for want in [&want_mysqlclient, &want_connector, &want_inject] {
        assert!(
            recorded.contains(want),
            "no session recorded {want:?}: {recorded:?}\n{export}"
        );
    }
    // The refused write is recorded with the rule that refused it.
    assert!(
        export.contains("reporters only read"),
        "the refusal is not recorded:\n{export}"
    );
}
