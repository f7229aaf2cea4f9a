//! Just-in-time approval end to end: an unmodified psql on the agent host
//! runs a DDL statement that policy holds for approval; the client simply
//! waits while approvers, signed in through a real OpenID provider
//! (`oidc-provider` on the gateway's loopback), decide it with `sluice
//! approvals` over the admin API. Approved runs, denied and timed-out ones
//! error with the reason, a self-approval is refused, a time-window grant
//! lets statements through until it ends, the webhook receiver hears of
//! every request, and every step is in the audit store.
use std::{
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use sluice_lab::{
    daemon::store_dir,
    oidc::{Options, Provider},
    postgres::conninfo,
    require_privileged,
    scenario::{self, Custom, GatewayRun},
};

const API: &str = "http://127.0.0.1:9443";

/// `sluice approvals …` in the gateway namespace with `token`.
fn approvals(run: &GatewayRun, token: &str, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", run.lab.gw.path()))
        .arg("--")
        .arg(sluice_lab::sluice_bin())
        .arg("approvals")
        .args(args)
        .args(["--api", API])
        .env("SLUICE_TOKEN", token)
        .output()
        .expect("run sluice approvals")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// psql on the agent host, in the background.
fn agent_psql(run: &GatewayRun, sql: &str) -> Child {
    let info = conninfo(&run.lab.db_ip, 5432);
    run.lab
        .agent
        .command(&["timeout", "30", "psql", "-X", "-Atq", &info, "-c", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psql")
}

/// The pending requests (bounded wait until there are `n`).
fn pending(run: &GatewayRun, token: &str, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let out = approvals(run, token, &["list", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let list: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        let items = list["approvals"].as_array().cloned().unwrap_or_default();
        if items.len() >= n || start.elapsed() > Duration::from_secs(15) {
            assert_eq!(items.len(), n, "pending requests: {list}");
            return items;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().expect("psql ends");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn v1_held_statements_are_approved_denied_timed_out_and_granted_by_oidc_approvers() {
    if !require_privileged("v1") {
        return;
    }
    let mut provider = None;
    let mut hook_log = None;
    let run = scenario::start_custom("v1", 34, |p| {
        let ns = p.lab.gw.path();
        let prov = Provider::start_with(
            "v1",
            Options {
                netns: Some(ns.clone()),
                ..Options::default()
            },
        )
        .expect("provider");
        let issuer = prov.issuer().to_owned();
        provider = Some(prov);
        // A webhook receiver on the gateway's loopback: every POST body is
        // appended to a file.
        let log = p.scratch.path("webhook.jsonl");
        let receiver = format!(
            "import http.server\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_POST(self):\n\
             \x20       n = int(self.headers.get('content-length', 0))\n\
             \x20       body = self.rfile.read(n)\n\
             \x20       open({:?}, 'ab').write(body + b'\\n')\n\
             \x20       self.send_response(204); self.end_headers()\n\
             \x20   def log_message(self, *a): pass\n\
             http.server.HTTPServer(('127.0.0.1', 9555), H).serve_forever()\n",
            log.display()
        );
        let child = p
            .lab
            .gw
            .command(&["timeout", "120", "python3", "-c", &receiver])
            .spawn()
            .expect("webhook receiver");
        hook_log = Some((log, child));
        Custom {
            sections: format!(
                r#"
[[identities]]
name = "alice@example.test"
groups = ["agents"]
sources = ["{agent}/32"]

[policy]
default = "allow"
[[policy.rules]]
name = "ddl needs a human"
action = "approve"
classes = ["ddl"]

[approvals]
timeout_secs = 5
webhook = "http://127.0.0.1:9555/hook"

{admin}
"#,
                agent = p.lab.agent_ip,
                admin = sluice_lab::oidc::admin_sections(&issuer, "127.0.0.1:9443")
            ),
            ..Custom::default()
        }
    });
    let provider = provider.unwrap();
    run.pg.sql(&format!(
        "GRANT CREATE ON SCHEMA public TO {}",
        sluice_lab::postgres::USER
    ));
    let bob = provider.id_token("sluice-cli", "bob");
    let alice = provider.id_token("sluice-cli", "alice");
    let carol = provider.id_token("sluice-cli", "carol");

    // 1. Held, then approved by bob: psql was waiting and now succeeds.
    let psql = agent_psql(&run, "create table approved_one (id int)");
    let items = pending(&run, &bob, 1);
    let id = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(items[0]["identity"], "alice@example.test", "{items:?}");
    assert!(
        items[0]["statement"]
            .as_str()
            .unwrap()
            .contains("create table approved_one"),
        "{items:?}"
    );
    assert!(
        items[0]["rule"]
            .as_str()
            .unwrap()
            .contains("ddl needs a human")
    );
    // The agent's own identity cannot approve it.
    let out = approvals(&run, &alice, &["approve", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("separation of duties"),
        "{}",
        text(&out)
    );
    // Someone without an approver role cannot either.
    let out = approvals(&run, &carol, &["approve", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = approvals(&run, &bob, &["approve", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let (ok, said) = finish(psql);
    assert!(ok, "the approved statement must run: {said}");
    assert_eq!(
        run.pg
            .sql("select count(*) from pg_tables where tablename = 'approved_one'"),
        "1"
    );

    // 2. Held, then denied with a reason: the client hears it.
    let psql = agent_psql(&run, "create table denied_one (id int)");
    let id = pending(&run, &bob, 1)[0]["id"].as_str().unwrap().to_owned();
    let out = approvals(
        &run,
        &bob,
        &["deny", &id, "--reason", "not during the freeze"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (ok, said) = finish(psql);
    assert!(!ok && said.contains("not during the freeze"), "{said}");
    assert_eq!(
        run.pg
            .sql("select count(*) from pg_tables where tablename = 'denied_one'"),
        "0"
    );

    // 3. Nobody decides: refused at the timeout.
    let started = Instant::now();
    let (ok, said) = finish(agent_psql(&run, "create table unanswered (id int)"));
    assert!(!ok && said.contains("no approver decided"), "{said}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // 4. A time-window grant lets DDL through without asking, then ends.
    let out = approvals(
        &run,
        &bob,
        &[
            "grant",
            "--identity",
            "alice@example.test",
            "--class",
            "ddl",
            "--for",
            "4s",
            "--reason",
            "migration window",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (ok, said) = finish(agent_psql(&run, "create table granted (id int)"));
    assert!(ok, "a grant in force lets it through: {said}");
    std::thread::sleep(Duration::from_secs(5));
    let (ok, said) = finish(agent_psql(&run, "create table after_grant (id int)"));
    assert!(
        !ok && said.contains("no approver decided"),
        "the grant ended: {said}"
    );

    // 5. The webhook heard every request and decision.
    let (hook_path, mut receiver) = hook_log.unwrap();
    let hooks = sluice_lab::wait_for(Duration::from_secs(10), || {
        let t = std::fs::read_to_string(&hook_path).unwrap_or_default();
        (t.matches("\"requested\"").count() >= 4).then_some(t)
    })
    .unwrap_or_else(|| std::fs::read_to_string(&hook_path).unwrap_or_default());
    assert!(hooks.matches("\"requested\"").count() >= 4, "{hooks}");
    assert!(hooks.contains("not during the freeze"), "{hooks}");
    let _ = receiver.kill();
    let _ = receiver.wait();

    // 6. The store holds each approval: in the session (the held
    // statement and how it was settled) and in the admin session (who
    // called what).
    let store = store_dir(&run.scratch.0);
    let out = run
        .daemon
        .cli(&["audit", "export", "--store", store.to_str().unwrap()]);
    let export = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "\"decision\":\"approve\"",
        "\"outcome\":\"approved\"",
        "\"outcome\":\"denied\"",
        "\"outcome\":\"expired\"",
        "\"outcome\":\"granted\"",
        "\"action\":\"approval.requested\"",
        "bob@example.test",
    ] {
        assert!(
            export.contains(needle),
            "{needle} missing from the export:\n{export}"
        );
    }
    // 7. The admin API's metrics count what happened: five statements
    // held, two let through (approved, granted), three refused.
    let metrics = http(&run, "GET", "/metrics", None);
    for line in [
        "sluice_statements_total{decision=\"approve\"} 5",
        "sluice_held_statements_settled_total{outcome=\"allowed\"} 2",
        "sluice_held_statements_settled_total{outcome=\"refused\"} 3",
        "sluice_approvals_pending 0",
        // The store wrote everything.
        "sluice_store_failing 0",
        "sluice_store_write_failures_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }

    // 8. A reload without the approval rule applies to new sessions; only
    // an admin may reload.
    let cfg = std::fs::read_to_string(&run.daemon.config).unwrap();
    std::fs::write(
        &run.daemon.config,
        cfg.replace("action = \"approve\"", "action = \"allow\""),
    )
    .unwrap();
    let refused = http(&run, "POST", "/api/config/reload", Some(&alice));
    assert!(refused.starts_with("403"), "{refused}");
    let reloaded = http(&run, "POST", "/api/config/reload", Some(&bob));
    assert!(reloaded.starts_with("200"), "{reloaded}");
    let (ok, said) = finish(agent_psql(&run, "create table after_reload (id int)"));
    assert!(ok, "no longer held after the reload: {said}");
    drop(provider);
}

/// One HTTP call to the admin API from inside the gateway namespace;
/// returns "STATUS BODY".
fn http(run: &GatewayRun, method: &str, path: &str, token: Option<&str>) -> String {
    let script = format!(
        "import urllib.request, urllib.error\n\
         r = urllib.request.Request('{API}{path}', method='{method}', data=b'' if '{method}' == 'POST' else None)\n\
         t = {token:?}\n\
         if t: r.add_header('Authorization', 'Bearer ' + t)\n\
         try:\n\
         \x20   with urllib.request.urlopen(r, timeout=10) as resp: print(resp.status, resp.read().decode())\n\
         except urllib.error.HTTPError as e: print(e.code, e.read().decode())\n",
        token = token.unwrap_or("")
    );
    let out = run
        .lab
        .gw
        .try_run(&["python3", "-c", &script], Duration::from_secs(15));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
