//! The approvals webhook: every [`Notice`] of the broker (a statement held,
//! approved in part, decided, withdrawn; a grant made or revoked) is POSTed
//! as JSON to `[approvals] webhook`, e.g. a chat bridge that pings the
//! approvers.
//!
//! Delivery never holds up approvals: the broker publishes into a broadcast
//! channel and moves on; this task reads it and delivers each notice in its
//! own task (at most [`MAX_IN_FLIGHT`] at once). Each delivery is bounded:
//! [`TIMEOUT`] per attempt, [`RETRIES`] retries after the first attempt with
//! doubling backoff, then a `warn!` and the notice is dropped. A receiver
//! that answers 4xx (other than 408 and 429) is not retried: it will not
//! change its mind. Notices the task could not keep up with (more than the
//! channel holds) are counted in a warning.
//!
//! Redirects are not followed (the webhook cannot be bounced to another
//! address), and logs name only the URL's scheme and host: webhook URLs
//! often carry a secret in their path.

use std::{sync::Arc, time::Duration};

use reqwest::{StatusCode, header::CONTENT_TYPE, redirect::Policy};
use sluice_approvals::{Broker, Notice};
use tokio::{
    runtime::Handle,
    sync::{Semaphore, broadcast::error::RecvError},
    task::JoinHandle,
};

use crate::AdminError;

/// One delivery attempt may take this long, connect included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after the first attempt.
pub const RETRIES: u32 = 3;
/// Wait before the first retry; doubled for each further one.
pub const BACKOFF: Duration = Duration::from_millis(500);
/// Deliveries in progress at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// How deliveries are paced (tests shorten the backoff).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
}

const PACING: Pacing = Pacing {
    timeout: TIMEOUT,
    retries: RETRIES,
    backoff: BACKOFF,
};

/// Subscribes to `broker` now (no notice published after this call is
/// missed) and delivers every notice to `url` from a task on `runtime` —
/// the admin API's ([`AdminHandle::runtime`](crate::AdminHandle::runtime))
/// or the daemon's. The task ends when the broker is dropped or the
/// returned handle is aborted.
pub fn spawn_webhook(
    url: String,
    broker: &Arc<Broker>,
    runtime: &Handle,
) -> Result<JoinHandle<()>, AdminError> {
    spawn_paced(url, broker, runtime, PACING)
}

pub(crate) fn spawn_paced(
    url: String,
    broker: &Arc<Broker>,
    runtime: &Handle,
    pacing: Pacing,
) -> Result<JoinHandle<()>, AdminError> {
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| AdminError::Webhook(format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AdminError::Webhook(
            "expected an http:// or https:// URL".into(),
        ));
    }
    let shown = format!(
        "{}://{}",
        parsed.scheme(),
        parsed.host_str().unwrap_or_default()
    );
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(Policy::none())
        .timeout(pacing.timeout)
        .connect_timeout(pacing.timeout)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AdminError::Webhook(format!("cannot build the HTTP client: {e}")))?;
    let mut notices = broker.subscribe();
    let target = Arc::new(Target {
        client,
        url: parsed,
        shown,
        pacing,
    });
    Ok(runtime.spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        loop {
            let notice = match notices.recv().await {
                Ok(n) => n,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        webhook = %target.shown,
                        missed,
                        "approvals webhook fell behind; notices were not delivered"
                    );
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let target = Arc::clone(&target);
            tokio::spawn(async move {
                target.deliver(&notice).await;
                drop(slot);
            });
        }
    }))
}

struct Target {
    client: reqwest::Client,
    url: reqwest::Url,
    /// Scheme and host only, for logs.
    shown: String,
    pacing: Pacing,
}

impl Target {
    async fn deliver(&self, notice: &Notice) {
        let body = match serde_json::to_vec(notice) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "approvals webhook: notice not serialisable");
                return;
            }
        };
        let what = describe(notice);
        let mut wait = self.pacing.backoff;
        for attempt in 0..=self.pacing.retries {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            let sent = self
                .client
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let problem = match sent {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(webhook = %self.shown, notice = %what, "approvals webhook delivered");
                    return;
                }
                Ok(r) if !retryable(r.status()) => {
                    tracing::warn!(
                        webhook = %self.shown,
                        notice = %what,
                        status = r.status().as_u16(),
                        "approvals webhook refused the notice; not retrying"
                    );
                    return;
                }
                Ok(r) => format!("answered {}", r.status()),
                // Without the URL: it may hold a secret.
                Err(e) => e.without_url().to_string(),
            };
            tracing::debug!(webhook = %self.shown, notice = %what, attempt, problem, "approvals webhook attempt failed");
            if attempt == self.pacing.retries {
                tracing::warn!(
                    webhook = %self.shown,
                    notice = %what,
                    attempts = attempt + 1,
                    problem,
                    "approvals webhook not delivered; giving up on this notice"
                );
            }
        }
    }
}

/// 5xx, 408 and 429 may pass; other answers will not change.
fn retryable(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
}

/// `requested apr-…`, for logs.
fn describe(n: &Notice) -> String {
    match n {
        Notice::Requested { request } => format!("requested {}", request.id),
        Notice::ApprovedInPart { id, .. } => format!("approved_in_part {id}"),
        Notice::Decided { id, verdict, .. } => format!("decided {id} {}", verdict.as_str()),
        Notice::Withdrawn { id } => format!("withdrawn {id}"),
        Notice::Granted { grant } => format!("granted {}", grant.id),
        Notice::Revoked { grant, .. } => format!("revoked {}", grant.id),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        net::SocketAddr,
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use hyper::{Response, server::conn::http1, service::service_fn};
    use hyper_util::rt::TokioIo;
    use serde_json::Value;
    use sluice_approvals::{ApprovalsConfig, NewRequest};
    use tokio::sync::mpsc;

    use super::*;

    #[test]
    fn what_is_retried() {
        for (code, want) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (404, false),
            (401, false),
        ] {
            assert_eq!(
                retryable(StatusCode::from_u16(code).unwrap()),
                want,
                "{code}"
            );
        }
    }

    /// What the receiver saw: content type and body, per POST.
    type Seen = mpsc::UnboundedReceiver<(String, Value)>;

    /// A webhook receiver on 127.0.0.1: answers the statuses in `answers`
    /// in turn (then 200), and reports every POST it gets.
    async fn receiver(answers: Vec<u16>) -> (String, Seen, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let hits = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let counted = Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, answers, hits) = (tx.clone(), Arc::clone(&answers), Arc::clone(&counted));
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (tx, answers, hits) =
                            (tx.clone(), Arc::clone(&answers), Arc::clone(&hits));
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            let ct = req
                                .headers()
                                .get("content-type")
                                .map(|v| v.to_str().unwrap_or_default().to_owned())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = answers.lock().unwrap().next().unwrap_or(200);
                            if status == 200 {
                                let _ = tx.send((ct, serde_json::from_slice(&body).unwrap()));
                            }
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (format!("http://{addr}/hooks/SECRET-PATH"), rx, hits)
    }

    fn fast() -> Pacing {
        Pacing {
            timeout: Duration::from_secs(2),
            retries: RETRIES,
            backoff: Duration::from_millis(10),
        }
    }

    fn held(broker: &Arc<Broker>) -> sluice_approvals::Ticket {
        broker.submit(NewRequest {
            identity: "agent".into(),
            target: "pg".into(),
            statement: "DROP TABLE orders".into(),
            classes: vec!["ddl".into()],
            rule: "policy.rules[0]".into(),
            ..Default::default()
        })
    }

    async fn next(seen: &mut Seen) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("a webhook POST within 10 s")
            .unwrap()
    }

    #[tokio::test]
    async fn notices_are_posted_as_json_from_the_admin_runtime() {
        let (url, mut seen, _) = receiver(vec![]).await;
        let broker = Broker::new(ApprovalsConfig::default());
        // The wiring the daemon uses: the webhook runs on the API's runtime.
        let state = crate::AdminState {
            auth: Arc::new(NoAuth),
            broker: Some(Arc::clone(&broker)),
            metrics: Arc::new(String::new),
            sessions: Arc::new(|_| Value::Null),
            reload: Arc::new(|| Ok(String::new())),
            record: Arc::new(|_| {}),
        };
        let config = sluice_config::AdminConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: None,
            key: None,
        };
        let admin = crate::spawn(&config, state).unwrap();
        let task = spawn_webhook(url, &broker, admin.runtime()).unwrap();

        let ticket = held(&broker);
        let id = ticket.id().unwrap().to_owned();
        let (ct, body) = next(&mut seen).await;
        assert_eq!(ct, "application/json");
        assert_eq!(body["event"], "requested");
        assert_eq!(body["request"]["id"], id.as_str());
        assert_eq!(body["request"]["statement"], "DROP TABLE orders");
        broker.approve(&id, "ann").unwrap();
        let (_, body) = next(&mut seen).await;
        assert_eq!(body["event"], "decided");
        assert_eq!(body["verdict"]["outcome"], "approved");
        task.abort();
        admin.stop();
    }

    #[tokio::test]
    async fn failed_deliveries_are_retried_with_backoff() {
        let (url, mut seen, hits) = receiver(vec![500, 503]).await;
        let broker = Broker::new(ApprovalsConfig::default());
        let _task = spawn_paced(url, &broker, &Handle::current(), fast()).unwrap();
        let _t = held(&broker);
        let (_, body) = next(&mut seen).await;
        assert_eq!(body["event"], "requested");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_refusals_not_retried() {
        let (url, mut seen, hits) = receiver(vec![500; 10]).await;
        let broker = Broker::new(ApprovalsConfig::default());
        let _task = spawn_paced(url, &broker, &Handle::current(), fast()).unwrap();
        let _t = held(&broker);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1 + RETRIES as usize);
        assert!(seen.try_recv().is_err());

        let (url, _seen, hits) = receiver(vec![400]).await;
        let broker = Broker::new(ApprovalsConfig::default());
        let _task = spawn_paced(url, &broker, &Handle::current(), fast()).unwrap();
        let _t = held(&broker);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_webhook_never_holds_up_approvals() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let broker = Broker::new(ApprovalsConfig::default());
        let task = spawn_paced(
            format!("http://127.0.0.1:{port}/"),
            &broker,
            &Handle::current(),
            fast(),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let ticket = held(&broker);
        let id = ticket.id().unwrap().to_owned();
        broker.approve(&id, "ann").unwrap();
        assert!(ticket.wait().await.allows());
        assert!(started.elapsed() < Duration::from_millis(200));
        task.abort();
    }

    #[test]
    fn bad_urls_are_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let broker = Broker::new(ApprovalsConfig::default());
        for url in ["not a url", "ftp://example.test/x"] {
            let e = spawn_webhook(url.into(), &broker, rt.handle()).unwrap_err();
            assert!(e.to_string().starts_with("approvals.webhook"), "{e}");
        }
    }

    struct NoAuth;
    impl crate::Authenticate for NoAuth {
        fn authenticate<'a>(&'a self, _: &'a str) -> crate::auth::AuthFuture<'a> {
            Box::pin(async { Err("no".into()) })
        }
    }
}
