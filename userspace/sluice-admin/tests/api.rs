//! The admin API in process, on 127.0.0.1:0: a real server on its own
//! thread, a real approvals broker, and a table of fixed bearer tokens in
//! place of the OpenID provider (the lab's end-to-end test uses the real
//! one). Every test checks what was recorded as well as what was answered.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sluice_admin::{
    AdminHandle, AdminState, Authenticate, Limits, Principal, SessionQuery,
    api::{ApproveStatus, NewGrant},
    auth::AuthFuture,
    client::{Client, ClientError},
};
use sluice_approvals::{ApprovalsConfig, Broker, NewRequest, Ticket, Verdict};
use sluice_config::AdminConfig;
use sluice_oidc::Role;
use sluice_store::event::AdminEvent;

/// Fixed tokens → principals.
struct Tokens(HashMap<&'static str, Principal>);

impl Tokens {
    fn new() -> Tokens {
        let p = |name: &str, roles: &[Role]| Principal {
            name: name.into(),
            roles: roles.to_vec(),
        };
        Tokens(HashMap::from([
            ("tok-admin", p("root@example.test", &[Role::Admin])),
            ("tok-ann", p("ann@example.test", &[Role::Approver])),
            ("tok-bob", p("bob@example.test", &[Role::Approver])),
            ("tok-auditor", p("audrey@example.test", &[Role::Auditor])),
            // An approver whose name is the held statement's identity.
            ("tok-agent", p("agent", &[Role::Approver])),
            ("tok-nobody", p("nobody@example.test", &[])),
        ]))
    }
}

impl Authenticate for Tokens {
    fn authenticate<'a>(&'a self, bearer: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            self.0
                .get(bearer)
                .cloned()
                .ok_or_else(|| "the token's signature does not verify with the issuer's key".into())
        })
    }
}

struct Api {
    handle: Option<AdminHandle>,
    url: String,
    broker: Arc<Broker>,
    events: Arc<Mutex<Vec<AdminEvent>>>,
    queries: Arc<Mutex<Vec<SessionQuery>>>,
}

impl Api {
    fn start(approvals: Option<ApprovalsConfig>) -> Api {
        Api::start_with(approvals, Limits::default(), Ok("nothing changed".into()))
    }

    fn start_with(
        approvals: Option<ApprovalsConfig>,
        limits: Limits,
        reload: Result<String, String>,
    ) -> Api {
        let broker = Broker::new(approvals.clone().unwrap_or_default());
        let events = Arc::new(Mutex::new(Vec::new()));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let state = AdminState {
            auth: Arc::new(Tokens::new()),
            broker: approvals.map(|_| Arc::clone(&broker)),
            metrics: Arc::new(|| "# TYPE sluice_up gauge\nsluice_up 1\n".into()),
            sessions: {
                let queries = Arc::clone(&queries);
                Arc::new(move |q: &SessionQuery| {
                    queries.lock().unwrap().push(q.clone());
                    json!({"sessions": [{"id": 7, "identity": "agent"}]})
                })
            },
            reload: Arc::new(move || reload.clone()),
            record: {
                let events = Arc::clone(&events);
                Arc::new(move |e| events.lock().unwrap().push(e))
            },
        };
        let config = AdminConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: None,
            key: None,
        };
        let handle = sluice_admin::spawn_with(&config, state, limits).unwrap();
        Api {
            url: handle.url(),
            handle: Some(handle),
            broker,
            events,
            queries,
        }
    }

    fn client(&self, token: &str) -> Client {
        Client::new(&self.url, token, None).unwrap()
    }

    fn events(&self) -> Vec<AdminEvent> {
        self.events.lock().unwrap().clone()
    }

    fn last_event(&self) -> AdminEvent {
        self.events()
            .last()
            .cloned()
            .expect("an event was recorded")
    }

    fn hold(&self, identity: &str) -> Ticket {
        self.broker.submit(NewRequest {
            identity: identity.into(),
            target: "pg".into(),
            user: "app".into(),
            database: "shop".into(),
            statement: "DROP TABLE orders".into(),
            classes: vec!["ddl".into()],
            rule: "policy.rules[0]".into(),
            reason: "ddl needs approval".into(),
            ..Default::default()
        })
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn approvals(required: u32) -> Option<ApprovalsConfig> {
    Some(ApprovalsConfig {
        approvers_required: required,
        ..Default::default()
    })
}

fn api_status(e: &ClientError) -> u16 {
    match e {
        ClientError::Api { status, .. } => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn healthz_and_metrics_need_no_token_and_are_not_recorded() {
    let api = Api::start(None);
    let r = http()
        .get(format!("{}/healthz", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = http()
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(r.text().await.unwrap().contains("sluice_up 1"));
    let r = http()
        .post(format!("{}/healthz", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(api.events().is_empty(), "{:?}", api.events());
}

#[tokio::test]
async fn missing_or_bad_tokens_get_401_with_a_challenge() {
    let api = Api::start(approvals(1));
    let cases: &[(Option<&str>, &str)] = &[
        (None, "needs `Authorization: Bearer"),
        (Some("Bearer not-a-known-token-SECRET"), "not accepted"),
        (Some("Basic dXNlcjpwYXNz"), "is not `Bearer"),
    ];
    for (header, says) in cases {
        let mut req = http().get(format!("{}/api/approvals", api.url));
        if let Some(h) = header {
            req = req.header("authorization", *h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{header:?}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        assert!(!error.contains("SECRET"), "the token was echoed: {error}");
        let e = api.last_event();
        assert_eq!(e.principal, "anonymous");
        assert_eq!(e.action, "GET /api/approvals");
        assert!(e.result.starts_with("unauthenticated"), "{}", e.result);
        assert!(!e.result.contains("SECRET"));
        assert!(e.detail.unwrap().contains("from 127.0.0.1:"));
    }
    // Unknown paths ask for a token too: nothing is revealed without one.
    let r = http()
        .get(format!("{}/api/nothing", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(api.events().len(), 4);

    // Every route but /healthz and /metrics, with its own method, asks for
    // a token before it does anything.
    let routes = [
        ("GET", "/api/sessions"),
        ("GET", "/api/approvals"),
        ("POST", "/api/approvals/a1/approve"),
        ("POST", "/api/approvals/a1/deny"),
        ("GET", "/api/grants"),
        ("POST", "/api/grants"),
        ("DELETE", "/api/grants/g1"),
        ("POST", "/api/config/reload"),
    ];
    for (method, path) in routes {
        let r = http()
            .request(method.parse().unwrap(), format!("{}{path}", api.url))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        let e = api.last_event();
        assert_eq!(e.principal, "anonymous", "{method} {path}");
        assert!(e.result.starts_with("unauthenticated"), "{}", e.result);
    }
    assert_eq!(api.events().len(), 4 + routes.len());
    for open in ["/healthz", "/metrics"] {
        let r = http()
            .get(format!("{}{open}", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }

    // The client explains what to do.
    let e = api.client("unknown").approvals().await.unwrap_err();
    assert_eq!(api_status(&e), 401);
    assert!(e.to_string().contains("sluice login"), "{e}");
    assert!(!e.is_refusal());
}

#[tokio::test]
async fn wrong_roles_get_403_and_are_recorded_as_denied() {
    let api = Api::start(approvals(1));
    let t = api.hold("agent");
    let id = t.id().unwrap().to_owned();
    let cases: &[(&str, &str)] = &[
        ("tok-auditor", "approve"),
        ("tok-nobody", "approvals"),
        ("tok-nobody", "sessions"),
        ("tok-ann", "reload"),
        ("tok-auditor", "grant"),
    ];
    for (token, what) in cases {
        let c = api.client(token);
        let e = match *what {
            "approve" => c.approve(&id).await.map(|_| ()),
            "approvals" => c.approvals().await.map(|_| ()),
            "sessions" => c.sessions(&SessionQuery::default()).await.map(|_| ()),
            "reload" => c.reload().await.map(|_| ()),
            "grant" => c
                .grant(&NewGrant {
                    identity: "agent".into(),
                    target: None,
                    classes: vec!["ddl".into()],
                    minutes: Some(5),
                    seconds: None,
                    reason: "x".into(),
                })
                .await
                .map(|_| ()),
            _ => unreachable!(),
        }
        .unwrap_err();
        assert_eq!(api_status(&e), 403, "{token} {what}");
        assert!(e.is_refusal());
        assert!(e.to_string().contains("needs the role"), "{e}");
        let ev = api.last_event();
        assert_eq!(ev.result, "denied", "{token} {what}");
        assert_ne!(ev.principal, "anonymous");
    }
    assert_eq!(api.events().len(), cases.len());
    // Nothing was decided.
    assert!(api.broker.get(&id).is_some());
    // An auditor may read what is pending.
    assert_eq!(
        api.client("tok-auditor")
            .approvals()
            .await
            .unwrap()
            .approvals
            .len(),
        1
    );
}

#[tokio::test]
async fn approve_releases_the_statement_and_separation_of_duties_holds() {
    let api = Api::start(approvals(1));
    let ticket = api.hold("agent");
    let id = ticket.id().unwrap().to_owned();

    let list = api.client("tok-ann").approvals().await.unwrap().approvals;
    assert_eq!(list.len(), 1);
    let r = &list[0];
    assert_eq!(r.id, id);
    assert_eq!(r.submitted.statement, "DROP TABLE orders");
    assert_eq!(r.submitted.identity, "agent");
    assert_eq!(r.submitted.target, "pg");
    assert_eq!(r.submitted.rule, "policy.rules[0]");
    assert_eq!(r.submitted.reason, "ddl needs approval");
    assert!(r.expires > r.created);
    assert!(r.approved_by.is_empty());

    // The statement's own identity cannot approve it.
    let e = api.client("tok-agent").approve(&id).await.unwrap_err();
    assert_eq!(api_status(&e), 403);
    assert!(e.to_string().contains("separation of duties"), "{e}");
    let ev = api.last_event();
    assert_eq!(
        (ev.principal.as_str(), ev.action.as_str()),
        ("agent", "approval.approve")
    );
    assert_eq!(ev.subject.as_deref(), Some(id.as_str()));
    assert!(ev.result.contains("separation of duties"));

    let reply = api.client("tok-ann").approve(&id).await.unwrap();
    assert_eq!(reply.status, ApproveStatus::Approved);
    assert_eq!(reply.approved_by, ["ann@example.test"]);
    assert_eq!((reply.approvals, reply.required), (1, 1));
    assert_eq!(
        ticket.wait().await,
        Verdict::Approved {
            by: vec!["ann@example.test".into()]
        }
    );
    let ev = api.last_event();
    assert_eq!(ev.principal, "ann@example.test");
    assert_eq!(ev.roles, ["approver"]);
    assert_eq!(ev.result, "ok");
    assert_eq!(ev.subject.as_deref(), Some(id.as_str()));

    // Decided: gone.
    let e = api.client("tok-bob").approve(&id).await.unwrap_err();
    assert_eq!(api_status(&e), 404);
    let e = api
        .client("tok-bob")
        .approve("apr-000000-999")
        .await
        .unwrap_err();
    assert_eq!(api_status(&e), 404);
    assert_eq!(api.events().len(), 5);
}

#[tokio::test]
async fn two_approvers_and_a_repeated_approval_is_409() {
    let api = Api::start(approvals(2));
    let ticket = api.hold("agent");
    let id = ticket.id().unwrap().to_owned();
    let first = api.client("tok-ann").approve(&id).await.unwrap();
    assert_eq!(first.status, ApproveStatus::WaitingForMore);
    assert_eq!((first.approvals, first.required), (1, 2));
    assert!(api.last_event().detail.unwrap().contains("1 of 2"));
    let e = api.client("tok-ann").approve(&id).await.unwrap_err();
    assert_eq!(api_status(&e), 409);
    let second = api.client("tok-admin").approve(&id).await.unwrap();
    assert_eq!(second.status, ApproveStatus::Approved);
    assert_eq!(
        second.approved_by,
        ["ann@example.test", "root@example.test"]
    );
    assert!(ticket.wait().await.allows());
    assert_eq!(api.events().len(), 3);
}

#[tokio::test]
async fn deny_needs_a_reason_and_refuses_the_statement() {
    let api = Api::start(approvals(1));
    let ticket = api.hold("agent");
    let id = ticket.id().unwrap().to_owned();
    let c = api.client("tok-ann");
    for reason in ["", "   "] {
        let e = c.deny(&id, reason).await.unwrap_err();
        assert_eq!(api_status(&e), 400, "{reason:?}");
        assert!(e.to_string().contains("reason"), "{e}");
    }
    // No body at all.
    let r = http()
        .post(format!("{}/api/approvals/{id}/deny", api.url))
        .bearer_auth("tok-ann")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let reply = c.deny(&id, "not during the freeze").await.unwrap();
    assert_eq!(reply.status, "denied");
    assert_eq!(reply.by, "ann@example.test");
    assert_eq!(
        ticket.wait().await,
        Verdict::Denied {
            by: "ann@example.test".into(),
            reason: "not during the freeze".into()
        }
    );
    let ev = api.last_event();
    assert_eq!(ev.action, "approval.deny");
    assert_eq!(ev.result, "ok");
    assert!(ev.detail.unwrap().contains("reason: not during the freeze"));
    let e = c.deny(&id, "again").await.unwrap_err();
    assert_eq!(api_status(&e), 404);
    assert_eq!(api.events().len(), 5);
}

#[tokio::test]
async fn grants_are_made_listed_used_and_revoked() {
    let api = Api::start(approvals(1));
    let c = api.client("tok-ann");
    let new = NewGrant {
        identity: "agent".into(),
        target: Some("pg".into()),
        classes: vec!["ddl".into()],
        minutes: Some(30),
        seconds: None,
        reason: "migration window".into(),
    };
    let g = c.grant(&new).await.unwrap();
    assert_eq!(g.identity, "agent");
    assert_eq!(g.by, "ann@example.test");
    assert_eq!(g.expires - g.created, 30 * 60);
    let ev = api.last_event();
    assert_eq!(ev.action, "grant.create");
    assert_eq!(ev.subject.as_deref(), Some(g.id.as_str()));
    let detail = ev.detail.unwrap();
    assert!(
        detail.contains("agent may run ddl on pg for 1800s"),
        "{detail}"
    );

    let listed = api.client("tok-auditor").grants().await.unwrap().grants;
    assert_eq!(listed, vec![g.clone()]);
    // A held statement the grant covers runs at once.
    assert_eq!(
        api.hold("agent").immediate(),
        Some(&Verdict::Granted {
            grant: g.id.clone()
        })
    );

    // Granting yourself, bad durations and unknown fields are refused.
    let e = api.client("tok-agent").grant(&new).await.unwrap_err();
    assert_eq!(api_status(&e), 403);
    for bad in [
        NewGrant {
            minutes: None,
            ..new.clone()
        },
        NewGrant {
            seconds: Some(60),
            ..new.clone()
        },
        NewGrant {
            minutes: Some(100_000),
            ..new.clone()
        },
        NewGrant {
            classes: vec![],
            ..new.clone()
        },
    ] {
        let e = c.grant(&bad).await.unwrap_err();
        assert_eq!(api_status(&e), 400, "{bad:?}");
    }
    let r = http()
        .post(format!("{}/api/grants", api.url))
        .bearer_auth("tok-ann")
        .json(&json!({"identity": "agent", "classes": ["ddl"], "minutes": 5, "reason": "r", "color": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("color"), "{body}");

    let revoked = c.revoke(&g.id).await.unwrap();
    assert_eq!(revoked.status, "revoked");
    assert_eq!(revoked.grant.id, g.id);
    assert!(c.grants().await.unwrap().grants.is_empty());
    let e = c.revoke(&g.id).await.unwrap_err();
    assert_eq!(api_status(&e), 404);
    assert_eq!(api.last_event().action, "grant.revoke");
    // grant, list, self-grant, 4 bad, unknown field, revoke, list, revoke
    assert_eq!(api.events().len(), 11);
}

#[tokio::test]
async fn reload_is_for_admins_only() {
    let api = Api::start(None);
    let ok = api.client("tok-admin").reload().await.unwrap();
    assert_eq!(ok.status, "reloaded");
    assert_eq!(ok.detail, "nothing changed");
    let e = api.client("tok-ann").reload().await.unwrap_err();
    assert_eq!(api_status(&e), 403);
    let events = api.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].action, "config.reload");
    assert_eq!(events[0].result, "ok");
    assert_eq!(events[1].result, "denied");

    let broken = Api::start_with(None, Limits::default(), Err("policy.rules[0]: bad".into()));
    let e = broken.client("tok-admin").reload().await.unwrap_err();
    assert_eq!(api_status(&e), 422);
    assert!(e.to_string().contains("unchanged"), "{e}");
    assert!(broken.last_event().result.contains("policy.rules[0]"));
}

#[tokio::test]
async fn sessions_pass_the_query_to_the_daemon() {
    let api = Api::start(None);
    let q = SessionQuery {
        live: true,
        limit: 5,
        identity: Some("host:10.0.0.2".into()),
    };
    let v = api.client("tok-auditor").sessions(&q).await.unwrap();
    assert_eq!(v["sessions"][0]["id"], 7);
    assert_eq!(api.queries.lock().unwrap().as_slice(), [q]);
    let r = http()
        .get(format!("{}/api/sessions?limit=0", api.url))
        .bearer_auth("tok-auditor")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(api.events().len(), 2);
    assert_eq!(api.events()[0].action, "GET /api/sessions");
}

#[tokio::test]
async fn without_approvals_the_endpoints_say_so() {
    let api = Api::start(None);
    let c = api.client("tok-admin");
    for e in [
        c.approvals().await.map(|_| ()).unwrap_err(),
        c.approve("apr-x-1").await.map(|_| ()).unwrap_err(),
        c.grants().await.map(|_| ()).unwrap_err(),
        c.revoke("grt-x-1").await.map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(api_status(&e), 404);
        assert!(e.to_string().contains("[approvals] is absent"), "{e}");
    }
    assert_eq!(api.events().len(), 4);
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let api = Api::start(approvals(1));
    let r = http()
        .get(format!("{}/api/nothing", api.url))
        .bearer_auth("tok-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(api.last_event().action, "GET /api/nothing");
    let r = http()
        .put(format!("{}/api/grants", api.url))
        .bearer_auth("tok-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
    assert_eq!(api.events().len(), 2);
}

#[tokio::test]
async fn large_bodies_get_413() {
    let api = Api::start(approvals(1));
    let huge = json!({"identity": "agent", "classes": ["ddl"], "minutes": 5, "reason": "x".repeat(100 * 1024)});
    let r = http()
        .post(format!("{}/api/grants", api.url))
        .bearer_auth("tok-ann")
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Chunked, so no Content-Length to go by.
    let addr = api.handle.as_ref().unwrap().local_addr();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"POST /api/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-ann\r\n\
              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let chunk = format!("2000\r\n{}\r\n", " ".repeat(0x2000));
        for _ in 0..20 {
            s.write_all(chunk.as_bytes()).unwrap();
        }
        s.write_all(b"0\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let events = api.events();
    assert_eq!(events.len(), 2);
    assert!(
        events[0].result.contains("larger than 65536"),
        "{}",
        events[0].result
    );
    assert!(api.broker.grants().is_empty());
}

#[test]
fn a_slow_client_is_cut_off_and_the_connection_cap_holds() {
    let limits = Limits {
        max_connections: 1,
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let api = Api::start_with(None, limits, Ok(String::new()));
    let addr: SocketAddr = api.handle.as_ref().unwrap().local_addr();

    // A slowloris client: half a request head, then nothing.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // It holds the only slot, so another client waits until it is cut off.
    let started = Instant::now();
    let mut other = TcpStream::connect(addr).unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "served after {:?}, before the slow client's timeout",
        started.elapsed()
    );

    // The slow client was disconnected (possibly after a 408).
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn a_port_in_use_is_a_startup_error_and_stop_frees_it() {
    let api = Api::start(None);
    let addr = api.handle.as_ref().unwrap().local_addr();
    let state = AdminState {
        auth: Arc::new(Tokens::new()),
        broker: None,
        metrics: Arc::new(String::new),
        sessions: Arc::new(|_| Value::Null),
        reload: Arc::new(|| Ok(String::new())),
        record: Arc::new(|_| {}),
    };
    let config = AdminConfig {
        listen: addr,
        cert: None,
        key: None,
    };
    let e = sluice_admin::spawn(&config, state.clone())
        .err()
        .expect("the port is in use");
    let text = e.to_string();
    assert!(
        text.contains("admin.listen") && text.contains(&addr.to_string()),
        "{text}"
    );

    let mut api = api;
    let started = Instant::now();
    api.handle.take().unwrap().stop();
    assert!(started.elapsed() < Duration::from_secs(3));
    let again = sluice_admin::spawn(&config, state).expect("the port is free after stop");
    again.stop();
}

#[tokio::test]
async fn https_with_the_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("sluice-admin-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("admin.crt"), dir.join("admin.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let events = Arc::new(Mutex::new(Vec::new()));
    let state = AdminState {
        auth: Arc::new(Tokens::new()),
        broker: Some(Broker::new(ApprovalsConfig::default())),
        metrics: Arc::new(String::new),
        sessions: Arc::new(|_| Value::Null),
        reload: Arc::new(|| Ok(String::new())),
        record: {
            let events = Arc::clone(&events);
            Arc::new(move |e| events.lock().unwrap().push(e))
        },
    };
    let config = AdminConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: Some(cert_path.clone()),
        key: Some(key_path.clone()),
    };
    let handle = sluice_admin::spawn(&config, state.clone()).unwrap();
    assert!(handle.url().starts_with("https://127.0.0.1:"));

    // Trusting the certificate: works.
    let c = Client::new(&handle.url(), "tok-ann", Some(cert.pem().as_bytes())).unwrap();
    assert!(c.approvals().await.unwrap().approvals.is_empty());
    // Without it: refused, with a hint about --ca.
    let c = Client::new(&handle.url(), "tok-ann", None).unwrap();
    let e = c.approvals().await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("--ca"), "{e}");
    // Plain HTTP to the TLS port gets nothing.
    let plain = http()
        .get(format!("http://{}/healthz", handle.local_addr()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    handle.stop();
    assert_eq!(events.lock().unwrap().len(), 1);

    // A key that is not a key: the error names the file.
    std::fs::write(&key_path, "not a key").unwrap();
    let e = sluice_admin::spawn(&config, state).err().expect("bad key");
    assert!(e.to_string().contains("admin.key"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn connection_errors_say_what_to_do() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Client::new(&format!("http://127.0.0.1:{port}"), "tok", None).unwrap();
    let e = c.approvals().await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("sluice run"), "{e}");
}
