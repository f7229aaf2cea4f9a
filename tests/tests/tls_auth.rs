//! TLS on each leg and both together, and credential injection, through the
//! transparent gateway with real psql and PostgreSQL 15. Certificates come
//! from throwaway CAs (`sluice_lab::pki`): a "gateway" CA the agents trust
//! for sluice's client leg, a "db" CA that issued the database's
//! certificate.
use std::{fs, os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

use sluice_lab::{
    netns,
    pki::Ca,
    postgres::{PASSWORD, Postgres, USER},
    require_privileged,
    scenario::{Custom, GatewayRun, start_custom},
};

/// Run psql on the agent host with `conninfo`; (success, stdout, stderr).
fn psql(s: &GatewayRun, conninfo: &str, sql: &str) -> (bool, String, String) {
    let out = s.lab.agent.try_run(
        &["psql", "-X", "-Atw", conninfo, "-c", sql],
        Duration::from_secs(20),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lab role's connection string to `host` with `extra` libpq options.
fn info(host: &str, extra: &str) -> String {
    format!(
        "host={host} port=5432 user={USER} password={PASSWORD} dbname=postgres connect_timeout=5 {extra}"
    )
}

/// Turn on TLS in the database with a certificate from `ca` for its
/// addresses; returns once the server reports `ssl = on`.
fn database_tls(pg: &Postgres, ca: &Ca, sans: &[&str]) {
    let leaf = ca.issue("database", sans);
    let cert = pg.dir.join("server.crt");
    let key = pg.dir.join("server.key");
    fs::copy(&leaf.cert, &cert).unwrap();
    fs::copy(&leaf.key, &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    for f in [&cert, &key] {
        netns::run(&["chown", "postgres:postgres", f.to_str().unwrap()]);
    }
    pg.sql(&format!(
        "ALTER SYSTEM SET ssl_cert_file = '{}'",
        cert.display()
    ));
    pg.sql(&format!(
        "ALTER SYSTEM SET ssl_key_file = '{}'",
        key.display()
    ));
    pg.sql("ALTER SYSTEM SET ssl = on");
    pg.sql("SELECT pg_reload_conf()");
    let on = sluice_lab::wait_for(Duration::from_secs(10), || {
        (pg.sql("SHOW ssl") == "on").then_some(())
    });
    assert!(on.is_some(), "the database did not turn TLS on");
}

/// Roles the database authenticates with MD5 (`legacy`, password
/// `legacy-secret`) and with a cleartext password (`plain`, `plain-secret`),
/// both allowed to read `cards`.
fn md5_and_cleartext_roles(pg: &Postgres) {
    pg.sql("SET password_encryption = 'md5'; CREATE ROLE legacy LOGIN PASSWORD 'legacy-secret'");
    pg.sql("CREATE ROLE plain LOGIN PASSWORD 'plain-secret'");
    pg.sql("GRANT SELECT ON cards TO legacy, plain");
    pg.hba_first("host all legacy all md5\nhost all plain all password\n");
}

#[test]
fn client_leg_tls_for_prefer_require_and_verify_full_with_plain_still_allowed() {
    if !require_privileged("client_leg_tls") {
        return;
    }
    let mut ca_cert = PathBuf::new();
    let s = start_custom("t1", 23, |p| {
        let ca = Ca::new(&p.scratch.path("pki"), "gateway");
        let leaf = ca.issue("sluice", &[&p.lab.db_ip, &p.lab.db_ip6]);
        ca_cert = ca.cert.clone();
        Custom {
            sections: format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                leaf.cert.display(),
                leaf.key.display()
            ),
            ..Custom::default()
        }
    });
    let db = s.lab.db_ip.clone();
    let root = format!("sslrootcert={}", ca_cert.display());
    for mode in [
        "sslmode=prefer".to_owned(),
        "sslmode=require".to_owned(),
        format!("sslmode=verify-full {root}"),
    ] {
        let (ok, out, err) = psql(&s, &info(&db, &mode), "\\conninfo");
        assert!(ok, "{mode}: {err}");
        assert!(
            out.contains("SSL connection (protocol: TLSv1.3"),
            "{mode}: {out}"
        );
        let (ok, out, err) = psql(
            &s,
            &info(&db, &mode),
            "select holder from cards where id = 1",
        );
        assert!(ok && out == "Ada Lovelace", "{mode}: {out}{err}");
    }
    // IPv6 too: the certificate names both addresses.
    let (ok, out, err) = psql(
        &s,
        &info(&s.lab.db_ip6, &format!("sslmode=verify-full {root}")),
        "\\conninfo",
    );
    assert!(ok && out.contains("SSL connection"), "{out}{err}");
    // A client that trusts another CA refuses sluice's certificate.
    let other = Ca::new(&s.scratch.path("other"), "other");
    let (ok, _, err) = psql(
        &s,
        &info(
            &db,
            &format!("sslmode=verify-full sslrootcert={}", other.cert.display()),
        ),
        "select 1",
    );
    assert!(!ok && err.contains("certificate verify failed"), "{err}");
    // Plain clients keep working where TLS is optional.
    let (ok, out, err) = psql(&s, &info(&db, "sslmode=disable"), "\\conninfo");
    assert!(ok && !out.contains("SSL connection"), "{out}{err}");
    // Passthrough relays MD5 and cleartext-password exchanges too, over
    // either kind of client leg.
    md5_and_cleartext_roles(&s.pg);
    for (user, password) in [("legacy", "legacy-secret"), ("plain", "plain-secret")] {
        for mode in ["sslmode=disable", "sslmode=require"] {
            let conninfo = format!(
                "host={db} port=5432 user={user} password={password} dbname=postgres connect_timeout=5 {mode}"
            );
            let (ok, out, err) = psql(&s, &conninfo, "select current_user");
            assert!(ok && out == user, "{user} {mode}: {out}{err}");
            let wrong = conninfo.replace(password, "wrong");
            let (ok, _, err) = psql(&s, &wrong, "select 1");
            assert!(
                !ok && err.contains("password authentication failed"),
                "{user} {mode}: {err}"
            );
        }
    }
    // The close line is written just after psql exits.
    let logged = sluice_lab::wait_for(Duration::from_secs(5), || {
        let log = s.daemon.log_text();
        (log.contains("client_tls=true") && log.contains("client_tls=false")).then_some(())
    });
    assert!(logged.is_some(), "{}", s.daemon.log_text());
}

#[test]
fn required_client_tls_refuses_plain_clients_with_a_clear_error() {
    if !require_privileged("required_client_tls") {
        return;
    }
    let s = start_custom("t2", 24, |p| {
        let ca = Ca::new(&p.scratch.path("pki"), "gateway");
        let leaf = ca.issue("sluice", &[&p.lab.db_ip]);
        Custom {
            sections: format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\nrequire = true\n",
                leaf.cert.display(),
                leaf.key.display()
            ),
            ..Custom::default()
        }
    });
    let db = s.lab.db_ip.clone();
    let (ok, _, err) = psql(&s, &info(&db, "sslmode=disable"), "select 1");
    assert!(!ok && err.contains("only accepts TLS connections"), "{err}");
    let (ok, out, err) = psql(&s, &info(&db, "sslmode=require"), "select 1");
    assert!(ok && out == "1", "{out}{err}");
}

#[test]
fn database_leg_tls_is_verified_and_both_legs_work_together() {
    if !require_privileged("database_leg_tls") {
        return;
    }
    let mut gw_ca = PathBuf::new();
    let s = start_custom("t3", 25, |p| {
        let db_ca = Ca::new(&p.scratch.path("pki"), "db");
        database_tls(p.pg, &db_ca, &[&p.lab.db_ip, &p.lab.db_ip6]);
        let gw = Ca::new(&p.scratch.path("pki"), "gateway");
        let leaf = gw.issue("sluice", &[&p.lab.db_ip, &p.lab.db_ip6]);
        gw_ca = gw.cert.clone();
        Custom {
            sections: format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                leaf.cert.display(),
                leaf.key.display()
            ),
            // IPv4: verified against the database's CA. IPv6: checked
            // against the wrong CA, so it must fail, never fall back.
            target_v4: format!(
                "upstream_tls = \"verify-full\"\nupstream_ca = \"{}\"",
                db_ca.cert.display()
            ),
            target_v6: format!(
                "upstream_tls = \"verify-full\"\nupstream_ca = \"{}\"",
                gw.cert.display()
            ),
            ..Custom::default()
        }
    });
    let db = s.lab.db_ip.clone();
    let upstream_ssl = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    // Database leg only.
    let (ok, out, err) = psql(&s, &info(&db, "sslmode=disable"), upstream_ssl);
    assert!(ok && out == "t", "database leg not encrypted: {out}{err}");
    // Both legs. A client on TLS would offer SCRAM channel binding, which
    // cannot cross a TLS-terminating proxy: sluice says so, and the
    // client connects once it does not insist on it.
    let verify = format!("sslmode=verify-full sslrootcert={}", gw_ca.display());
    let (ok, _, err) = psql(&s, &info(&db, &verify), "select 1");
    assert!(
        !ok && err.contains("channel binding cannot cross sluice's TLS termination"),
        "{err}"
    );
    let both = format!("{verify} channel_binding=disable");
    let (ok, out, err) = psql(
        &s,
        &info(&db, &both),
        &format!("\\conninfo\n{upstream_ssl}"),
    );
    assert!(ok, "{err}");
    let (ok2, out2, err2) = psql(&s, &info(&db, &both), upstream_ssl);
    assert!(
        ok2 && out2 == "t" && out.contains("SSL connection"),
        "{out}{out2}{err2}"
    );
    // The wrong CA for the database: a clear error, and no plain fallback.
    let (ok, _, err) = psql(&s, &info(&s.lab.db_ip6, "sslmode=disable"), "select 1");
    assert!(
        !ok && err.contains("TLS to the database failed (upstream_tls = verify-full)"),
        "{err}"
    );
    let logged = sluice_lab::wait_for(Duration::from_secs(5), || {
        s.daemon
            .log_text()
            .contains("upstream_tls=true")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", s.daemon.log_text());
}

#[test]
fn credential_injection_logs_in_with_vaulted_passwords_the_workload_never_holds() {
    if !require_privileged("credential_injection") {
        return;
    }
    const TOKEN: &str = "workload-token-7f3a";
    let token_hash = sha256_hex(TOKEN);
    let s = start_custom("t4", 26, |p| {
        // Roles authenticated three ways: SCRAM (the lab role), MD5, and
        // cleartext password.
        md5_and_cleartext_roles(p.pg);
        // Both legs encrypted: the database's certificate is not checked
        // (upstream_tls = "require", libpq's meaning).
        database_tls(
            p.pg,
            &Ca::new(&p.scratch.path("pki"), "db"),
            &[&p.lab.db_ip],
        );
        let ca = Ca::new(&p.scratch.path("pki"), "gateway");
        let leaf = ca.issue("sluice", &[&p.lab.db_ip]);
        let agent = &p.lab.agent_ip;
        let secrets = p.scratch.path("secrets.toml");
        fs::write(
            &secrets,
            format!(
                "[[credentials]]\ntarget = \"lab-pg\"\nuser = \"ai-agent\"\nupstream_user = \"{USER}\"\npassword = \"{PASSWORD}\"\nclients = [\"{agent}/32\"]\n\n\
                 [[credentials]]\ntarget = \"lab-pg\"\nuser = \"legacy\"\npassword = \"legacy-secret\"\nclients = [\"{agent}\"]\n\n\
                 [[credentials]]\ntarget = \"lab-pg\"\nuser = \"plain\"\npassword = \"plain-secret\"\nclients = [\"{agent}\"]\n\n\
                 [[credentials]]\ntarget = \"lab-pg\"\nuser = \"elsewhere\"\nupstream_user = \"{USER}\"\npassword = \"{PASSWORD}\"\nclients = [\"192.0.2.0/24\"]\n\n\
                 [[credentials]]\ntarget = \"lab-pg\"\nuser = \"tokened\"\nupstream_user = \"{USER}\"\npassword = \"{PASSWORD}\"\ntoken_sha256 = \"{token_hash}\"\n\n\
                 [[credentials]]\ntarget = \"lab-pg\"\nuser = \"stale\"\nupstream_user = \"{USER}\"\npassword = \"rotated-away-secret\"\nclients = [\"{agent}\"]\n"
            ),
        )
        .unwrap();
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
        Custom {
            proxy: format!("secrets_file = \"{}\"", secrets.display()),
            sections: format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                leaf.cert.display(),
                leaf.key.display()
            ),
            target_v4: "auth = \"inject\"\nupstream_tls = \"require\"".into(),
            ..Custom::default()
        }
    });
    let db = s.lab.db_ip.clone();
    // No password anywhere on the agent's side.
    let as_user = |user: &str, extra: &str| {
        format!("host={db} port=5432 user={user} dbname=postgres connect_timeout=5 {extra}")
    };
    let (ok, out, err) = psql(
        &s,
        &as_user("ai-agent", "sslmode=disable"),
        "select current_user, (select count(*) from cards)",
    );
    assert!(
        ok && out == format!("{USER}|2"),
        "SCRAM injection: {out}{err}"
    );
    for (user, role) in [("legacy", "legacy"), ("plain", "plain")] {
        let (ok, out, err) = psql(&s, &as_user(user, "sslmode=disable"), "select current_user");
        assert!(ok && out == role, "{user}: {out}{err}");
    }
    // Refusals, each with a reason the workload can act on.
    let cases = [
        (
            "nobody",
            "sslmode=disable",
            "no credential for user \"nobody\"",
        ),
        ("elsewhere", "sslmode=disable", "may not use the credential"),
        ("tokened", "sslmode=disable", "only accepted over TLS"),
        (
            "tokened",
            "sslmode=require password=wrong",
            "token authentication failed",
        ),
        (
            "stale",
            "sslmode=disable",
            "could not log in to the database",
        ),
    ];
    for (user, extra, expected) in cases {
        let (ok, _, err) = psql(&s, &as_user(user, extra), "select 1");
        assert!(!ok && err.contains(expected), "{user} {extra}: {err}");
    }
    let (ok, out, err) = psql(
        &s,
        &as_user("tokened", &format!("sslmode=require password={TOKEN}")),
        "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert!(ok && out == format!("{USER}|t"), "token: {out}{err}");
    let log = s.daemon.log_text();
    assert!(log.contains("credential_injected"), "{log}");
    assert!(log.contains("credential_rejected"), "{log}");
    for secret in [
        PASSWORD,
        "legacy-secret",
        "plain-secret",
        "rotated-away-secret",
        TOKEN,
    ] {
        assert!(
            !log.contains(secret),
            "the daemon log carries a secret: {secret}"
        );
    }
}

/// SHA-256 of `token` in hex, computed by coreutils' sha256sum: an oracle
/// independent of sluice's own hashing.
fn sha256_hex(token: &str) -> String {
    use std::process::Command;
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
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
