//! Credential injection (`auth = "inject"`) for MySQL through the real
//! gateway: MariaDB 10.11 on the database host with accounts only sluice
//! knows the passwords of, sluice holding them in its secrets file, and
//! unmodified clients on the agent host — the `mariadb` CLI, PyMySQL and
//! mysqlclient — that log in with a user name and any password (or none),
//! or with a token. The database sees the vaulted upstream user coming
//! from the gateway; the password never reaches the agent, sluice's log or
//! the audit record.
use std::{collections::BTreeMap, fs, os::unix::fs::PermissionsExt, time::Duration};

use serde_json::Value;
use sluice_lab::{
    daemon::export_until,
    pki::Ca,
    python, require_privileged,
    scenario::{Custom, MysqlRun, start_mysql_with},
};

/// The upstream account with `mysql_native_password`, and its password:
/// only sluice's secrets file holds it.
const UPSTREAM: &str = "app_rw";
const VAULTED: &str = "vaulted-Pa55-9c1e";
/// The upstream account with MariaDB's ed25519 plugin, and its password.
const UPSTREAM_ED: &str = "app_ed";
const VAULTED_ED: &str = "vaulted-Ed-5ecret-41d7";
/// A password the database no longer accepts (a rotated credential).
const STALE: &str = "rotated-away-b83f";
/// The token the `tokened` workload presents; the secrets file holds only
/// its SHA-256.
const TOKEN: &str = "workload-token-7f3a-e2c9";
/// Everything that must never leave sluice.
const SECRETS: [&str; 4] = [VAULTED, VAULTED_ED, STALE, TOKEN];

/// How the CLI's client leg runs.
enum Leg<'a> {
    Plain,
    /// TLS, sluice's certificate verified against this CA.
    Tls(&'a str),
    /// Plain, the client beginning with another plugin than the greeting
    /// names (`--default-auth`).
    PlainWith(&'a str),
}

/// The `mariadb` CLI on the agent host as `user`, with `password` (None:
/// no password at all), database `shop`, batch mode, bounded to 20 s;
/// returns (success, stdout, stderr). Unlike the lab's `agent_mysql`, the
/// argument list carries no password the agent should not have.
fn cli(
    run: &MysqlRun,
    host: &str,
    user: &str,
    password: Option<&str>,
    leg: Leg<'_>,
    sql: &str,
) -> (bool, String, String) {
    let password = password.map(|p| format!("--password={p}"));
    let (ca, plugin) = match leg {
        Leg::Plain => (None, None),
        Leg::Tls(ca) => (Some(format!("--ssl-ca={ca}")), None),
        Leg::PlainWith(p) => (None, Some(format!("--default-auth={p}"))),
    };
    let mut argv = vec![
        "mariadb",
        "--no-defaults",
        "--protocol=tcp",
        "-h",
        host,
        "-P",
        "3306",
        "-u",
        user,
        "--connect-timeout=5",
        "-N",
        "-B",
    ];
    for arg in [&password, &plugin].into_iter().flatten() {
        argv.push(arg);
    }
    match &ca {
        None => argv.push("--skip-ssl"),
        Some(ca) => argv.extend([ca.as_str(), "--ssl-verify-server-cert"]),
    }
    argv.extend(["-e", sql, "shop"]);
    let out = run.lab.agent.try_run(&argv, Duration::from_secs(20));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Everything the client printed, both streams.
fn both(r: &(bool, String, String)) -> String {
    format!("{}{}", r.1, r.2)
}

/// SHA-256 of `token` in hex, computed by coreutils' sha256sum: an oracle
/// independent of sluice's own hashing.
fn sha256_hex(token: &str) -> String {
    use std::{io::Write, process::Command, process::Stdio};
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The scenario: MariaDB with TLS and the two upstream accounts; sluice
/// with a client-leg certificate, both targets on `auth = "inject"` — the
/// IPv4 one reaching the database over verified TLS, the IPv6 one in
/// plain TCP — and the secrets file. Returns the run and sluice's CA.
fn setup(tag: &str, index: u8) -> (MysqlRun, String) {
    let mut sluice_ca = String::new();
    let run = start_mysql_with(tag, index, true, |p| {
        p.db.sql(&format!(
            "CREATE USER '{UPSTREAM}'@'%' IDENTIFIED WITH mysql_native_password USING PASSWORD('{VAULTED}');
             CREATE USER '{UPSTREAM_ED}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{VAULTED_ED}');
             GRANT SELECT ON shop.* TO '{UPSTREAM}'@'%', '{UPSTREAM_ED}'@'%';"
        ));
        let ca = Ca::new(&p.scratch.path("pki"), "gateway");
        let leaf = ca.issue("sluice", &[&p.lab.db_ip, &p.lab.db_ip6]);
        sluice_ca = ca.cert.to_str().unwrap().to_owned();
        let (agent, agent6) = (&p.lab.agent_ip, &p.lab.agent_ip6);
        let token_hash = sha256_hex(TOKEN);
        let secrets = p.scratch.path("secrets.toml");
        let cred = |target: &str, user: &str, upstream: &str, password: &str, more: &str| {
            format!(
                "[[credentials]]\ntarget = \"{target}\"\nuser = \"{user}\"\nupstream_user = \"{upstream}\"\npassword = \"{password}\"\n{more}\n\n"
            )
        };
        let text = [
            cred(
                "lab-my",
                "ai-agent",
                UPSTREAM,
                VAULTED,
                &format!("clients = [\"{agent}/32\"]"),
            ),
            cred(
                "lab-my",
                "ed-agent",
                UPSTREAM_ED,
                VAULTED_ED,
                &format!("clients = [\"{agent}\"]"),
            ),
            cred(
                "lab-my",
                "elsewhere",
                UPSTREAM,
                VAULTED,
                "clients = [\"192.0.2.0/24\"]",
            ),
            cred(
                "lab-my",
                "tokened",
                UPSTREAM,
                VAULTED,
                &format!("token_sha256 = \"{token_hash}\""),
            ),
            cred(
                "lab-my",
                "stale",
                UPSTREAM,
                STALE,
                &format!("clients = [\"{agent}\"]"),
            ),
            cred(
                "lab-my6",
                "ai-agent",
                UPSTREAM,
                VAULTED,
                &format!("clients = [\"{agent6}/128\"]"),
            ),
        ]
        .concat();
        fs::write(&secrets, text).unwrap();
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
        Custom {
            proxy: format!("secrets_file = \"{}\"", secrets.display()),
            sections: format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                leaf.cert.display(),
                leaf.key.display()
            ),
            target_v4: format!(
                "auth = \"inject\"\nupstream_tls = \"verify-full\"\nupstream_ca = \"{}\"",
                p.db_ca.expect("database CA").display()
            ),
            target_v6: "auth = \"inject\"\nupstream_tls = \"disable\"".into(),
            ..Custom::default()
        }
    });
    (run, sluice_ca)
}

/// The recorded sessions of an export: per session, its events' JSON.
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

#[test]
fn myi1_workloads_log_in_as_the_vaulted_user_without_its_password() {
    if !require_privileged("myi1") {
        return;
    }
    let (run, ca) = setup("myi1", 46);
    let lab = &run.lab;
    let who = "SELECT CURRENT_USER(), DATABASE(), (SELECT count(*) FROM cards)";
    let rw = format!("{UPSTREAM}@%\tshop\t2");

    // (1) Admitted by network: any password, or none, on either client
    // leg; the database authenticates the vaulted upstream user.
    for (password, leg) in [
        (None, Leg::Plain),
        (Some("anything-at-all"), Leg::Plain),
        (Some(""), Leg::Tls(&ca)),
        (Some("not-the-password"), Leg::Tls(&ca)),
        // A client that begins with caching_sha2 is switched to native.
        (Some("x"), Leg::PlainWith("caching_sha2_password")),
    ] {
        let r = cli(&run, &lab.db_ip, "ai-agent", password, leg, who);
        assert!(r.0 && r.1 == rw, "{password:?}: {}", both(&r));
    }
    // The database leg: verified TLS on IPv4, plain TCP on IPv6 (from the
    // agent's IPv6 address, which its credential names).
    let cipher = "SHOW SESSION STATUS LIKE 'Ssl_cipher'";
    let r = cli(&run, &lab.db_ip, "ai-agent", None, Leg::Plain, cipher);
    assert!(r.0 && r.1.starts_with("Ssl_cipher\tTLS_"), "{}", both(&r));
    let r = cli(
        &run,
        &lab.db_ip6,
        "ai-agent",
        None,
        Leg::Plain,
        &format!("{who}; {cipher}"),
    );
    assert!(r.0, "{}", both(&r));
    // (The empty cipher's tab is trimmed with the output.)
    assert_eq!(r.1, format!("{rw}\nSsl_cipher"), "{}", both(&r));
    // ed25519 upstream: sluice follows the database's switch to
    // client_ed25519 and signs its nonce with the vaulted password.
    let r = cli(
        &run,
        &lab.db_ip,
        "ed-agent",
        Some("x"),
        Leg::Plain,
        "SELECT CURRENT_USER()",
    );
    assert!(r.0 && r.1 == format!("{UPSTREAM_ED}@%"), "{}", both(&r));

    // The Python drivers, unmodified, with a password that is not the
    // database's.
    let python = python::mysql_interpreter("myi1");
    if let Some(python) = &python {
        for (driver, tls) in [
            ("pymysql", vec!["--no-tls"]),
            ("pymysql", vec!["--tls-ca", ca.as_str()]),
            ("mysqlclient", vec!["--no-tls"]),
        ] {
            let mut args = vec![
                "--driver",
                driver,
                "--host",
                &lab.db_ip,
                "--user",
                "ai-agent",
                "--password",
                "whatever",
            ];
            args.extend(&tls);
            let r = run.agent_script(python, "mysql_inject.py", &args, Duration::from_secs(60));
            let field = |k| python::field(&r.1, k).unwrap_or("");
            assert!(r.0, "{driver} {tls:?}: {}", both(&r));
            assert_eq!(field("current_user"), format!("{UPSTREAM}@%"), "{}", r.1);
            assert_eq!(
                field("user"),
                format!("{UPSTREAM}@{}", lab.gw_db_ip),
                "{}",
                r.1
            );
            assert_eq!(field("cards"), "2", "{}", r.1);
            assert_eq!(field("database"), "shop", "{}", r.1);
            assert!(field("tls").starts_with("TLS_"), "{}", r.1);
            assert_eq!(field("after"), "1", "{}", r.1);
        }
    }

    // (2) Refusals, each ERR 1045 (28000) with a reason the workload can
    // act on; nothing reaches the database as the workload.
    let elsewhere = format!(
        "workload {} may not use the credential for user \"elsewhere\"",
        lab.agent_ip
    );
    let refusals = [
        ("elsewhere", None, Leg::Plain, elsewhere.as_str()),
        (
            "nobody",
            Some("x"),
            Leg::Plain,
            "no credential for user \"nobody\"",
        ),
        // (3) A token: never in plain text, and only the right one.
        (
            "tokened",
            Some(TOKEN),
            Leg::Plain,
            "tokens are only accepted over TLS: connect with --ssl",
        ),
        (
            "tokened",
            Some("wrong-token"),
            Leg::Tls(&ca),
            "token authentication failed for user \"tokened\"",
        ),
        (
            "tokened",
            None,
            Leg::Tls(&ca),
            "token authentication failed for user \"tokened\"",
        ),
        // The database refuses a stale credential: the workload hears
        // that sluice could not log in, the operator reads why.
        (
            "stale",
            None,
            Leg::Plain,
            "could not log in to the database for user \"stale\"",
        ),
    ];
    for (user, password, leg, expected) in refusals {
        let r = cli(&run, &lab.db_ip, user, password, leg, "SELECT 1");
        assert!(!r.0, "{user}: {}", both(&r));
        assert!(
            r.2.contains("ERROR 1045 (28000)") && r.2.contains(expected),
            "{user}: {}",
            both(&r)
        );
    }
    // The right token over TLS logs in as the upstream user.
    let r = cli(
        &run,
        &lab.db_ip,
        "tokened",
        Some(TOKEN),
        Leg::Tls(&ca),
        "SELECT CURRENT_USER()",
    );
    assert!(r.0 && r.1 == format!("{UPSTREAM}@%"), "{}", both(&r));
    if let Some(python) = &python {
        let token = |password: &str, tls: &[&str]| {
            let mut args = vec![
                "--driver",
                "pymysql",
                "--host",
                &lab.db_ip,
                "--user",
                "tokened",
                "--password",
                password,
            ];
            args.extend(tls);
            run.agent_script(python, "mysql_inject.py", &args, Duration::from_secs(60))
        };
        let r = token(TOKEN, &["--tls-ca", &ca]);
        assert!(r.0, "{}", both(&r));
        assert_eq!(
            python::field(&r.1, "current_user"),
            Some("app_rw@%"),
            "{}",
            r.1
        );
        for (password, tls, expected) in [
            (
                "wrong-token",
                ["--tls-ca", ca.as_str()].as_slice(),
                "token authentication failed",
            ),
            (TOKEN, ["--no-tls"].as_slice(), "only accepted over TLS"),
        ] {
            let r = token(password, tls);
            let error = python::field(&r.1, "connect_error").unwrap_or("");
            assert!(
                !r.0 && error.starts_with("1045:") && error.contains(expected),
                "{password} {tls:?}: {}",
                both(&r)
            );
        }
        let r = run.agent_script(
            python,
            "mysql_inject.py",
            &["--host", &lab.db_ip, "--user", "elsewhere", "--no-tls"],
            Duration::from_secs(60),
        );
        let error = python::field(&r.1, "connect_error").unwrap_or("");
        assert!(
            !r.0 && error.starts_with("1045:") && error.contains("may not use the credential"),
            "{}",
            both(&r)
        );
    }

    // The database saw only the upstream users, only from the gateway:
    // never the workload's names, never the agent's address.
    let connects: Vec<_> = run
        .db
        .connects()
        .into_iter()
        .filter(|c| c.host != "localhost")
        .collect();
    assert!(!connects.is_empty());
    for c in &connects {
        assert!(
            (c.user == UPSTREAM || c.user == UPSTREAM_ED)
                && (c.host == lab.gw_db_ip || c.host == lab.gw_db_ip6),
            "{c:?}"
        );
    }
    assert_eq!(run.direct_connections_from(&lab.agent_ip), 0);
    assert!(
        connects
            .iter()
            .any(|c| c.host == lab.gw_db_ip && c.transport == "SSL/TLS")
            && connects
                .iter()
                .any(|c| c.host == lab.gw_db_ip6 && c.transport == "TCP/IP"),
        "{connects:?}"
    );

    // The record: sessions started as the workload's user with the auth
    // mode and the upstream user; refusals recorded with their reason.
    let export = export_until(&run.daemon, &run.scratch.0, |e| {
        e.contains("could not log in to the database")
            && e.matches("\"upstream_user\":\"app_rw\"").count() >= 8
    });
    let recorded = sessions(&export);
    let starts: Vec<&Value> = recorded
        .values()
        .filter_map(|events| events.first())
        .filter(|e| e["kind"] == "session_start")
        .collect();
    let ai = starts
        .iter()
        .find(|s| s["user"] == "ai-agent")
        .expect("a recorded ai-agent session");
    assert_eq!(ai["protocol"], "mysql", "{ai}");
    assert_eq!(ai["auth"], "inject", "{ai}");
    assert_eq!(ai["upstream_user"], UPSTREAM, "{ai}");
    assert_eq!(ai["database"], "shop", "{ai}");
    assert!(
        starts
            .iter()
            .any(|s| s["user"] == "ed-agent" && s["upstream_user"] == UPSTREAM_ED),
        "{export}"
    );
    let end_of = |user: &str| -> Vec<String> {
        recorded
            .values()
            .filter(|events| events.first().is_some_and(|s| s["user"] == user))
            .filter_map(|events| events.last())
            .filter(|e| e["kind"] == "session_end")
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let elsewhere = end_of("elsewhere");
    assert!(
        !elsewhere.is_empty()
            && elsewhere
                .iter()
                .all(|r| r.contains("may not use the credential for user \"elsewhere\"")),
        "{elsewhere:?}"
    );
    let tokened = end_of("tokened");
    assert!(
        tokened.iter().any(|r| r.contains("only accepted over TLS"))
            && tokened
                .iter()
                .any(|r| r.contains("token authentication failed")),
        "{tokened:?}"
    );
    assert!(
        end_of("stale")
            .iter()
            .any(|r| r.contains("could not log in to the database")),
        "{export}"
    );

    // sluice's log: the injections and the rejected credential (with the
    // database's reason, for the operator); no secret anywhere.
    let log = run.daemon.log_text();
    assert!(log.contains("credential_injected"), "{log}");
    assert!(
        log.contains("credential_rejected") && log.contains("Access denied for user 'app_rw'"),
        "{log}"
    );
    for secret in SECRETS {
        assert!(!log.contains(secret), "sluice's log holds a secret");
        assert!(!export.contains(secret), "the audit export holds a secret");
    }
}
