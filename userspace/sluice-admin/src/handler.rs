//! One request, start to finish: answer `/healthz` and `/metrics` at once;
//! otherwise authenticate the bearer token, route, authorise by role, read
//! the body (bounded in size and time), act, answer in JSON, and record the
//! call exactly once, whatever the outcome.
//!
//! Authentication comes before routing and before any body is read: a
//! caller without a valid token learns nothing about which paths exist and
//! cannot make the API buffer anything.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE},
};
use serde::{Serialize, de::DeserializeOwned};
use sluice_approvals::{Broker, DecideError, GrantSpec, Verdict};
use sluice_store::event::AdminEvent;

use crate::{
    AdminState, Limits, SessionQuery,
    api::{
        ApprovalList, ApproveReply, ApproveStatus, DenyBody, DenyReply, ErrorBody, GrantList,
        NewGrant, ReloadReply, RevokeReply,
    },
    auth::{Bearer, Principal, bearer},
    routes::{Endpoint, Routed, route, unknown_action},
};

/// What every request needs.
pub(crate) struct Ctx {
    pub(crate) state: AdminState,
    pub(crate) limits: Limits,
}

/// The response type of every request.
pub(crate) type Reply = Response<Full<Bytes>>;

/// Longest reason (deny, grant) accepted, in bytes.
const MAX_REASON: usize = 1024;
/// A body larger than the limit is read and discarded up to this many
/// bytes, so the client gets its 413 (see [`read_json`]).
const MAX_DRAIN: usize = 1024 * 1024;
/// Most sessions one call may ask for.
const MAX_LIMIT: usize = 1000;

/// A call that succeeded: status, JSON body, and what to add to the record.
struct Done {
    status: StatusCode,
    body: serde_json::Value,
    /// The record's subject, when the call made it (a new grant's id).
    subject: Option<String>,
    /// The record's detail (a reason, a grant's terms).
    detail: Option<String>,
}

impl Done {
    fn ok(body: impl Serialize) -> Done {
        Done {
            status: StatusCode::OK,
            body: serde_json::to_value(body).unwrap_or_default(),
            subject: None,
            detail: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Done {
        self.detail = Some(detail.into());
        self
    }
}

/// A call that failed: the status, the message the caller gets, and the
/// result recorded.
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    message: String,
    /// The record's result ("denied" for a missing role, else the message).
    result: String,
    /// The record's detail (what the caller asked for, when it helps).
    detail: Option<String>,
    /// `WWW-Authenticate` value, for 401.
    challenge: Option<&'static str>,
    /// `Allow` value, for 405.
    allow: Option<&'static str>,
}

impl Fail {
    fn new(status: StatusCode, message: impl Into<String>) -> Fail {
        let message = message.into();
        Fail {
            status,
            result: message.clone(),
            message,
            detail: None,
            challenge: None,
            allow: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Fail {
        Fail::new(StatusCode::BAD_REQUEST, message)
    }

    fn unauthenticated(message: impl Into<String>, challenge: &'static str) -> Fail {
        let mut f = Fail::new(StatusCode::UNAUTHORIZED, message);
        f.result = format!("unauthenticated: {}", f.message);
        f.challenge = Some(challenge);
        f
    }

    fn detail(mut self, detail: impl Into<String>) -> Fail {
        self.detail = Some(detail.into());
        self
    }
}

impl From<DecideError> for Fail {
    fn from(e: DecideError) -> Fail {
        let status = match e {
            DecideError::NotFound(_) => StatusCode::NOT_FOUND,
            DecideError::SelfApproval(_) => StatusCode::FORBIDDEN,
            DecideError::AlreadyApproved(_) => StatusCode::CONFLICT,
            DecideError::NoReason | DecideError::BadGrant(_) => StatusCode::BAD_REQUEST,
        };
        Fail::new(status, e.to_string())
    }
}

/// Answers one request. Never fails: errors become JSON error responses.
pub(crate) async fn handle(req: Request<Incoming>, peer: SocketAddr, ctx: Arc<Ctx>) -> Reply {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
            return text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into());
        }
        (&Method::GET, "/metrics") => {
            let metrics = Arc::clone(&ctx.state.metrics);
            return match tokio::task::spawn_blocking(move || metrics()).await {
                Ok(body) => text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                ),
                Err(_) => error_reply(&Fail::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the metrics could not be rendered",
                )),
            };
        }
        (_, "/healthz" | "/metrics") => {
            let mut f = Fail::new(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            f.allow = Some("GET");
            return error_reply(&f);
        }
        _ => {}
    }

    let routed = route(req.method(), req.uri().path());
    let mut event = AdminEvent {
        principal: "anonymous".into(),
        action: match &routed {
            Routed::Found(e) => e.action().to_owned(),
            _ => unknown_action(req.method(), req.uri().path()),
        },
        subject: match &routed {
            Routed::Found(e) => e.subject().map(str::to_owned),
            _ => None,
        },
        ..AdminEvent::default()
    };
    let outcome = call(req, routed, &ctx, &mut event).await;
    let (reply, result, detail) = match outcome {
        Ok(done) => {
            if done.subject.is_some() {
                event.subject = done.subject.clone();
            }
            (json(done.status, &done.body), "ok".to_owned(), done.detail)
        }
        Err(fail) => (error_reply(&fail), fail.result.clone(), fail.detail.clone()),
    };
    event.result = result;
    event.detail = Some(match detail {
        Some(d) => format!("{d}; from {peer}"),
        None => format!("from {peer}"),
    });
    tracing::info!(
        event = "admin_call",
        principal = %event.principal,
        action = %event.action,
        subject = event.subject.as_deref().unwrap_or(""),
        result = %event.result,
        status = reply.status().as_u16(),
        %peer,
        "admin API call"
    );
    (ctx.state.record)(event);
    reply
}

/// Authenticate, authorise, act.
async fn call(
    req: Request<Incoming>,
    routed: Routed,
    ctx: &Ctx,
    event: &mut AdminEvent,
) -> Result<Done, Fail> {
    let principal = authenticate(&req, ctx).await?;
    event.principal = principal.name.clone();
    event.roles = principal.role_names();

    let endpoint = match routed {
        Routed::Found(e) => e,
        Routed::WrongMethod(allow) => {
            let mut f = Fail::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("this endpoint answers {allow} only"),
            );
            f.allow = Some(allow);
            return Err(f);
        }
        Routed::NotFound => {
            return Err(Fail::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; see docs/admin-api.md",
            ));
        }
    };
    if !endpoint.roles().iter().any(|r| principal.has(*r)) {
        let needed: Vec<&str> = endpoint.roles().iter().map(|r| r.as_str()).collect();
        let mut f = Fail::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} needs the role {} (your roles: {})",
                endpoint.action(),
                needed.join(" or "),
                if principal.roles.is_empty() {
                    "none".to_owned()
                } else {
                    principal.role_names().join(", ")
                }
            ),
        );
        f.result = "denied".into();
        return Err(f);
    }
    let broker = match (&ctx.state.broker, endpoint.needs_broker()) {
        (Some(b), true) => Some(Arc::clone(b)),
        (None, true) => {
            return Err(Fail::new(
                StatusCode::NOT_FOUND,
                "approvals are not enabled ([approvals] is absent)",
            ));
        }
        (_, false) => None,
    };
    let broker = || broker.clone().expect("checked above");

    match endpoint {
        Endpoint::Sessions => {
            let query = session_query(req.uri().query().unwrap_or(""))?;
            let sessions = Arc::clone(&ctx.state.sessions);
            let detail = format!(
                "live={} limit={}{}",
                query.live,
                query.limit,
                query
                    .identity
                    .as_deref()
                    .map(|i| format!(" identity={i}"))
                    .unwrap_or_default()
            );
            let body = tokio::task::spawn_blocking(move || sessions(&query))
                .await
                .map_err(|_| {
                    Fail::new(StatusCode::INTERNAL_SERVER_ERROR, "listing sessions failed")
                })?;
            Ok(Done::ok(body).detail(detail))
        }
        Endpoint::Approvals => Ok(Done::ok(ApprovalList {
            approvals: broker().pending(),
        })),
        Endpoint::Approve(id) => approve(&broker(), &id, &principal),
        Endpoint::Deny(id) => {
            let body: DenyBody = read_json(req, &ctx.limits).await?;
            deny(&broker(), &id, &principal, &body.reason)
        }
        Endpoint::Grants => Ok(Done::ok(GrantList {
            grants: broker().grants(),
        })),
        Endpoint::CreateGrant => {
            let body: NewGrant = read_json(req, &ctx.limits).await?;
            create_grant(&broker(), body, &principal)
        }
        Endpoint::Revoke(id) => {
            let grant = broker().revoke(&id, &principal.name)?;
            Ok(Done::ok(RevokeReply {
                status: "revoked".into(),
                grant,
            }))
        }
        Endpoint::Reload => {
            let reload = Arc::clone(&ctx.state.reload);
            match tokio::task::spawn_blocking(move || reload()).await {
                Ok(Ok(detail)) => Ok(Done::ok(ReloadReply {
                    status: "reloaded".into(),
                    detail: detail.clone(),
                })
                .detail(detail)),
                Ok(Err(why)) => Err(Fail::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("reload failed, the running configuration is unchanged: {why}"),
                )),
                Err(_) => Err(Fail::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reload failed",
                )),
            }
        }
    }
}

/// The caller, or 401 (no or bad token), or 503 (the token could not be
/// checked in time).
async fn authenticate(req: &Request<Incoming>, ctx: &Ctx) -> Result<Principal, Fail> {
    const MISSING: &str = r#"Bearer realm="sluice""#;
    const INVALID: &str = r#"Bearer realm="sluice", error="invalid_token""#;
    let token = match bearer(req.headers()) {
        Bearer::Token(t) => t,
        Bearer::Missing => {
            return Err(Fail::unauthenticated(
                "this endpoint needs `Authorization: Bearer <ID token>`; run `sluice login`",
                MISSING,
            ));
        }
        Bearer::Malformed => {
            return Err(Fail::unauthenticated(
                "the Authorization header is not `Bearer <ID token>`",
                INVALID,
            ));
        }
    };
    match tokio::time::timeout(ctx.limits.auth_timeout, ctx.state.auth.authenticate(token)).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(why)) => Err(Fail::unauthenticated(
            format!("the bearer token is not accepted: {why}"),
            INVALID,
        )),
        Err(_) => Err(Fail::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the bearer token could not be checked in time (is the OpenID provider reachable?); try again",
        )),
    }
}

fn approve(broker: &Broker, id: &str, who: &Principal) -> Result<Done, Fail> {
    let before = broker.get(id);
    let reply = match broker.approve(id, &who.name)? {
        Some(Verdict::Approved { by }) => ApproveReply {
            status: ApproveStatus::Approved,
            id: id.to_owned(),
            approvals: by.len() as u32,
            required: before.map_or(by.len() as u32, |r| r.approvers_required),
            approved_by: by,
        },
        // approve() only ever answers Approved; anything else is a
        // decision all the same.
        Some(other) => {
            return Err(Fail::new(
                StatusCode::CONFLICT,
                format!("the request was already decided: {}", other.as_str()),
            ));
        }
        None => {
            // Look again: the request holds this approval now (unless it
            // expired in between; then report from what was seen before).
            let now = broker.get(id).or(before);
            let (mut approved_by, required) =
                now.map_or((Vec::new(), 0), |r| (r.approved_by, r.approvers_required));
            if !approved_by.contains(&who.name) {
                approved_by.push(who.name.clone());
            }
            ApproveReply {
                status: ApproveStatus::WaitingForMore,
                id: id.to_owned(),
                approvals: approved_by.len() as u32,
                required,
                approved_by,
            }
        }
    };
    let detail = match reply.status {
        ApproveStatus::Approved => format!("approved ({} of {})", reply.approvals, reply.required),
        ApproveStatus::WaitingForMore => format!(
            "waiting for more approvers ({} of {})",
            reply.approvals, reply.required
        ),
    };
    Ok(Done::ok(reply).detail(detail))
}

fn deny(broker: &Broker, id: &str, who: &Principal, reason: &str) -> Result<Done, Fail> {
    let reason = checked_reason(reason)?;
    broker
        .deny(id, &who.name, reason)
        .map_err(|e| Fail::from(e).detail(format!("reason: {reason}")))?;
    Ok(Done::ok(DenyReply {
        status: "denied".into(),
        id: id.to_owned(),
        by: who.name.clone(),
        reason: reason.to_owned(),
    })
    .detail(format!("reason: {reason}")))
}

fn create_grant(broker: &Broker, g: NewGrant, who: &Principal) -> Result<Done, Fail> {
    let seconds = match (g.minutes, g.seconds) {
        (Some(m), None) => m.saturating_mul(60),
        (None, Some(s)) => s,
        _ => {
            return Err(Fail::bad_request(
                "give the grant's duration as either \"minutes\" or \"seconds\"",
            ));
        }
    };
    let reason = checked_reason(&g.reason)?;
    let spec = GrantSpec {
        identity: g.identity.trim().to_owned(),
        target: g.target.unwrap_or_default().trim().to_owned(),
        classes: g.classes.iter().map(|c| c.trim().to_owned()).collect(),
        seconds,
        reason: reason.to_owned(),
    };
    let terms = format!(
        "{} may run {} on {} for {}s; reason: {}",
        spec.identity,
        spec.classes.join(","),
        if spec.target.is_empty() {
            "*"
        } else {
            &spec.target
        },
        spec.seconds,
        reason
    );
    let grant = broker
        .grant(spec, &who.name)
        .map_err(|e| Fail::from(e).detail(terms.clone()))?;
    let mut done = Done::ok(&grant).detail(terms);
    done.status = StatusCode::CREATED;
    done.subject = Some(grant.id);
    Ok(done)
}

/// A reason, trimmed: required, and at most [`MAX_REASON`] bytes.
fn checked_reason(reason: &str) -> Result<&str, Fail> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Fail::bad_request(
            "a reason is required, for the record: send {\"reason\": \"...\"}",
        ));
    }
    if reason.len() > MAX_REASON {
        return Err(Fail::bad_request(format!(
            "the reason is longer than {MAX_REASON} bytes"
        )));
    }
    Ok(reason)
}

/// Parses `live`, `limit`, `identity`; anything else is refused by name.
fn session_query(query: &str) -> Result<SessionQuery, Fail> {
    let mut q = SessionQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()).take(16) {
        match &*key {
            "live" => {
                q.live = match &*value {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(Fail::bad_request("live: expected true or false")),
                }
            }
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Fail::bad_request(format!("limit: expected a number from 1 to {MAX_LIMIT}"))
                    })?;
            }
            "identity" => {
                if value.is_empty() || value.len() > 256 {
                    return Err(Fail::bad_request(
                        "identity: expected a workload identity (1-256 bytes)",
                    ));
                }
                q.identity = Some(value.into_owned());
            }
            other => {
                let shown: String = other.chars().take(32).filter(|c| !c.is_control()).collect();
                return Err(Fail::bad_request(format!(
                    "unknown query parameter {shown:?}; expected live, limit, identity"
                )));
            }
        }
    }
    Ok(q)
}

/// Reads and parses a JSON body: at most `limits.max_body` bytes (413), in
/// `limits.body_timeout` (408).
///
/// A body that is too large is still read (and thrown away) up to
/// [`MAX_DRAIN`] bytes before the 413 goes out: closing a socket with
/// unread data in it makes the kernel answer with a reset, and the client
/// would see "connection reset" instead of the 413 that explains.
async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
    limits: &Limits,
) -> Result<T, Fail> {
    let too_large = || {
        Fail::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {} bytes", limits.max_body),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DRAIN as u64) {
        // Not worth draining: refuse now; the connection is closed.
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    let read = tokio::time::timeout(limits.body_timeout, async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| Fail::bad_request("the request body could not be read"))?;
            if let Ok(data) = frame.into_data() {
                seen = seen.saturating_add(data.len());
                if seen <= limits.max_body {
                    bytes.extend_from_slice(&data);
                } else if seen > MAX_DRAIN {
                    break;
                }
            }
        }
        Ok(())
    })
    .await;
    match read {
        Err(_) => {
            return Err(Fail::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}",
                    seconds(limits.body_timeout)
                ),
            ));
        }
        Ok(Err(fail)) => return Err(fail),
        Ok(Ok(())) => {}
    }
    if seen > limits.max_body {
        return Err(too_large());
    }
    if bytes.is_empty() {
        return Err(Fail::bad_request("this endpoint needs a JSON body"));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Fail::bad_request(format!(
            "the JSON body is not what this endpoint takes: {e}"
        ))
    })
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f32())
}

fn json(status: StatusCode, body: &serde_json::Value) -> Reply {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error_reply(f: &Fail) -> Reply {
    let body = serde_json::to_value(ErrorBody {
        error: f.message.clone(),
    })
    .unwrap_or_default();
    let mut r = json(f.status, &body);
    if let Some(c) = f.challenge {
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    if let Some(a) = f.allow {
        r.headers_mut().insert(ALLOW, HeaderValue::from_static(a));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_queries() {
        let ok = |q: &str| session_query(q).unwrap();
        assert_eq!(ok(""), SessionQuery::default());
        assert_eq!(
            ok("live=true&limit=5&identity=host%3A10.0.0.2"),
            SessionQuery {
                live: true,
                limit: 5,
                identity: Some("host:10.0.0.2".into())
            }
        );
        assert!(!ok("live=0").live);
        for bad in [
            "live=maybe",
            "limit=0",
            "limit=1001",
            "limit=x",
            "identity=",
            "color=red",
        ] {
            let e = session_query(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn decide_errors_map_to_statuses() {
        let cases = [
            (DecideError::NotFound("a".into()), StatusCode::NOT_FOUND),
            (DecideError::SelfApproval("a".into()), StatusCode::FORBIDDEN),
            (
                DecideError::AlreadyApproved("a".into()),
                StatusCode::CONFLICT,
            ),
            (DecideError::NoReason, StatusCode::BAD_REQUEST),
            (DecideError::BadGrant("x".into()), StatusCode::BAD_REQUEST),
        ];
        for (e, want) in cases {
            assert_eq!(Fail::from(e.clone()).status, want, "{e:?}");
        }
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(checked_reason("  ").is_err());
        assert_eq!(checked_reason(" freeze ").unwrap(), "freeze");
        assert!(checked_reason(&"x".repeat(MAX_REASON + 1)).is_err());
    }
}
