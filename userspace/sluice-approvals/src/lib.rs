//! Just-in-time approval of single statements inside live sessions.
//!
//! A statement the policy marks "approve" is submitted to the [`Broker`]
//! and held: the session's client simply waits on its [`Ticket`]. An
//! approver (the admin API, `sluice approvals approve`) decides it; the
//! ticket then resolves to a [`Verdict`] and the session lets the
//! statement through or refuses it. Requests expire after the configured
//! timeout (the statement is refused), and a request whose client has gone
//! is withdrawn when its ticket is dropped.
//!
//! Separation of duties: the identity a statement runs as can never approve
//! it, and each approver counts once towards `approvers_required`; one deny
//! decides. Time-window [`Grant`]s let an identity run statements of some
//! classes on a target without asking, until they expire or are revoked.
//!
//! Everything that happens is published as a [`Notice`] ([`Broker::subscribe`])
//! for the log, the webhook, metrics and the audit store. This crate does no
//! I/O of its own.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

/// `[approvals]`: how held statements are decided.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// How long a statement may wait for a decision before it is refused.
    pub timeout_secs: u64,
    /// Distinct approvers needed to let a statement through.
    pub approvers_required: u32,
    /// Most requests pending at once; more are refused at once (a client
    /// cannot fill the proxy with held statements).
    pub max_pending: usize,
    /// Most requests pending at once for one identity.
    pub max_pending_per_identity: usize,
    /// Longest time-window grant, minutes.
    pub max_grant_minutes: u64,
    /// URL that receives a JSON POST for every request and decision.
    pub webhook: Option<String>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            timeout_secs: 300,
            approvers_required: 1,
            max_pending: 1000,
            max_pending_per_identity: 20,
            max_grant_minutes: 8 * 60,
            webhook: None,
        }
    }
}

impl ApprovalsConfig {
    /// Why the settings cannot be used, as (key, reason).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(1..=86_400).contains(&self.timeout_secs) {
            return Some(("timeout_secs", "expected 1-86400 seconds".into()));
        }
        if !(1..=10).contains(&self.approvers_required) {
            return Some(("approvers_required", "expected 1-10 approvers".into()));
        }
        if self.max_pending == 0 || self.max_pending_per_identity == 0 {
            return Some(("max_pending", "expected at least 1".into()));
        }
        if !(1..=7 * 24 * 60).contains(&self.max_grant_minutes) {
            return Some(("max_grant_minutes", "expected 1-10080 minutes".into()));
        }
        if let Some(w) = &self.webhook
            && !(w.starts_with("http://") || w.starts_with("https://"))
        {
            return Some((
                "webhook",
                format!("{w:?} is not an http:// or https:// URL"),
            ));
        }
        None
    }
}

/// What a session submits for approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRequest {
    /// The workload identity the statement runs as.
    pub identity: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// The target's name.
    pub target: String,
    /// Database user and database.
    pub user: String,
    /// Database name.
    pub database: String,
    /// The statement, cardholder data masked.
    pub statement: String,
    /// Its statement classes (`ddl`, `write`, …), for grants.
    pub classes: Vec<String>,
    /// The rule that asked for approval, and why.
    pub rule: String,
    /// Why, in words.
    pub reason: String,
    /// The session's id in the audit store, when recorded.
    pub session: Option<u64>,
}

/// A request as approvers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Its id (`apr-…`).
    pub id: String,
    /// What was submitted.
    #[serde(flatten)]
    pub submitted: NewRequest,
    /// When it was submitted (Unix seconds).
    pub created: u64,
    /// When it expires (Unix seconds).
    pub expires: u64,
    /// Who has approved it so far.
    pub approved_by: Vec<String>,
    /// Approvals needed in all.
    pub approvers_required: u32,
}

/// How a held statement was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verdict {
    /// Enough approvers said yes.
    Approved {
        /// Who.
        by: Vec<String>,
    },
    /// Let through by a time-window grant, without asking.
    Granted {
        /// The grant's id.
        grant: String,
    },
    /// An approver said no.
    Denied {
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
    /// Nobody decided in time.
    Expired,
    /// The proxy could not hold it (too many pending, shutting down).
    Refused {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// The statement may run.
    pub fn allows(&self) -> bool {
        matches!(self, Verdict::Approved { .. } | Verdict::Granted { .. })
    }

    /// A short word for records and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Approved { .. } => "approved",
            Verdict::Granted { .. } => "granted",
            Verdict::Denied { .. } => "denied",
            Verdict::Expired => "expired",
            Verdict::Refused { .. } => "refused",
        }
    }
}

/// A time-window grant: `identity` may run statements of `classes` on
/// `target` without approval until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Its id (`grt-…`).
    pub id: String,
    /// The identity it is for (exact name).
    pub identity: String,
    /// The target (`*`: any).
    pub target: String,
    /// Statement classes it covers (`ddl`, `write`, …; `*`: any).
    pub classes: Vec<String>,
    /// Who granted it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When it was granted (Unix seconds).
    pub created: u64,
    /// When it ends (Unix seconds).
    pub expires: u64,
}

impl Grant {
    fn covers(&self, identity: &str, target: &str, classes: &[String], now: u64) -> bool {
        now < self.expires
            && self.identity == identity
            && (self.target == "*" || self.target == target)
            && !classes.is_empty()
            && classes
                .iter()
                .all(|c| self.classes.iter().any(|g| g == "*" || g == c))
    }
}

/// What a grant asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantSpec {
    /// The identity it is for.
    pub identity: String,
    /// The target (`*`: any).
    pub target: String,
    /// Statement classes.
    pub classes: Vec<String>,
    /// How long, seconds.
    pub seconds: u64,
    /// Why.
    pub reason: String,
}

/// Something that happened, for the log, webhook, metrics and store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Notice {
    /// A statement is waiting for approval.
    Requested {
        /// The request.
        request: Request,
    },
    /// An approver said yes, but more are needed.
    ApprovedInPart {
        /// Request id.
        id: String,
        /// Who.
        by: String,
        /// Approvals so far.
        approvals: u32,
        /// Needed in all.
        required: u32,
    },
    /// A request was decided (or expired, or its client left).
    Decided {
        /// Request id.
        id: String,
        /// The identity it was for.
        identity: String,
        /// The target.
        target: String,
        /// How.
        verdict: Verdict,
    },
    /// A request was withdrawn: its session ended while it waited.
    Withdrawn {
        /// Request id.
        id: String,
    },
    /// A grant was made.
    Granted {
        /// The grant.
        grant: Grant,
    },
    /// A grant was revoked before it ended.
    Revoked {
        /// The grant.
        grant: Grant,
        /// Who revoked it.
        by: String,
    },
}

/// Why an approver's call did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// No pending request has this id (decided, expired or withdrawn).
    #[error("no pending request {0}: it was decided, expired or withdrawn")]
    NotFound(String),
    /// The approver is the identity the statement runs as.
    #[error("{0} cannot approve a statement of their own session (separation of duties)")]
    SelfApproval(String),
    /// The approver already approved this request.
    #[error("{0} has already approved this request; another approver is needed")]
    AlreadyApproved(String),
    /// A deny needs a reason, for the record.
    #[error("a denial needs a reason")]
    NoReason,
    /// A grant asks for something the settings do not allow.
    #[error("{0}")]
    BadGrant(String),
}

struct Pending {
    request: Request,
    answer: Option<oneshot::Sender<Verdict>>,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<String, Pending>,
    grants: BTreeMap<String, Grant>,
}

/// Holds pending requests and grants; shared by every session and the
/// admin API.
pub struct Broker {
    config: ApprovalsConfig,
    state: Mutex<State>,
    next: AtomicU64,
    /// A random part of every id, so ids of different runs differ.
    run: String,
    notices: broadcast::Sender<Notice>,
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Broker {
    /// A broker with these settings.
    pub fn new(config: ApprovalsConfig) -> Arc<Broker> {
        let (notices, _) = broadcast::channel(1024);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Arc::new(Broker {
            config,
            state: Mutex::new(State::default()),
            next: AtomicU64::new(1),
            run: format!("{:06x}", seed % 0xff_ffff),
            notices,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ApprovalsConfig {
        &self.config
    }

    /// Everything that happens from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    fn publish(&self, n: Notice) {
        // Nobody listening is fine.
        let _ = self.notices.send(n);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            self.run,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A grant covering this statement, if one is in force.
    pub fn grant_for(&self, identity: &str, target: &str, classes: &[String]) -> Option<Grant> {
        let now = now();
        let mut state = self.lock();
        state.grants.retain(|_, g| g.expires > now);
        state
            .grants
            .values()
            .find(|g| g.covers(identity, target, classes, now))
            .cloned()
    }

    /// Hold a statement: a grant in force lets it through at once;
    /// otherwise it waits for approvers (or is refused when too many are
    /// waiting).
    pub fn submit(self: &Arc<Self>, new: NewRequest) -> Ticket {
        if let Some(g) = self.grant_for(&new.identity, &new.target, &new.classes) {
            return Ticket::ready(Verdict::Granted { grant: g.id });
        }
        let created = now();
        let expires_at =
            tokio::time::Instant::now() + Duration::from_secs(self.config.timeout_secs);
        let (tx, rx) = oneshot::channel();
        let request = {
            let mut state = self.lock();
            let of_identity = state
                .pending
                .values()
                .filter(|p| p.request.submitted.identity == new.identity)
                .count();
            if state.pending.len() >= self.config.max_pending
                || of_identity >= self.config.max_pending_per_identity
            {
                return Ticket::ready(Verdict::Refused {
                    reason: "too many statements are waiting for approval; try again later".into(),
                });
            }
            let request = Request {
                id: self.id("apr"),
                submitted: new,
                created,
                expires: created + self.config.timeout_secs,
                approved_by: Vec::new(),
                approvers_required: self.config.approvers_required,
            };
            state.pending.insert(
                request.id.clone(),
                Pending {
                    request: request.clone(),
                    answer: Some(tx),
                },
            );
            request
        };
        tracing::info!(
            event = "approval_requested",
            id = %request.id,
            identity = %request.submitted.identity,
            target = %request.submitted.target,
            rule = %request.submitted.rule,
            "statement held for approval"
        );
        let id = request.id.clone();
        self.publish(Notice::Requested { request });
        Ticket {
            id: Some(id),
            broker: Some(Arc::clone(self)),
            rx: Some(rx),
            ready: None,
            expires_at,
        }
    }

    /// Pending requests, oldest first.
    pub fn pending(&self) -> Vec<Request> {
        let mut v: Vec<Request> = self
            .lock()
            .pending
            .values()
            .map(|p| p.request.clone())
            .collect();
        v.sort_by_key(|r| (r.created, r.id.clone()));
        v
    }

    /// One pending request.
    pub fn get(&self, id: &str) -> Option<Request> {
        self.lock().pending.get(id).map(|p| p.request.clone())
    }

    /// `approver` says yes. Returns the verdict once enough approvers have
    /// (None: more are needed).
    pub fn approve(&self, id: &str, approver: &str) -> Result<Option<Verdict>, DecideError> {
        let mut state = self.lock();
        let p = state
            .pending
            .get_mut(id)
            .ok_or_else(|| DecideError::NotFound(id.into()))?;
        let r = &mut p.request;
        if approver == r.submitted.identity {
            return Err(DecideError::SelfApproval(approver.into()));
        }
        if r.approved_by.iter().any(|a| a == approver) {
            return Err(DecideError::AlreadyApproved(approver.into()));
        }
        r.approved_by.push(approver.into());
        let have = r.approved_by.len() as u32;
        if have < r.approvers_required {
            let n = Notice::ApprovedInPart {
                id: id.into(),
                by: approver.into(),
                approvals: have,
                required: r.approvers_required,
            };
            drop(state);
            self.publish(n);
            return Ok(None);
        }
        let verdict = Verdict::Approved {
            by: r.approved_by.clone(),
        };
        let p = state.pending.remove(id).expect("looked up above");
        drop(state);
        self.finish(p, verdict.clone());
        Ok(Some(verdict))
    }

    /// `approver` says no; one denial decides.
    pub fn deny(&self, id: &str, approver: &str, reason: &str) -> Result<Verdict, DecideError> {
        if reason.trim().is_empty() {
            return Err(DecideError::NoReason);
        }
        let p = self
            .lock()
            .pending
            .remove(id)
            .ok_or_else(|| DecideError::NotFound(id.into()))?;
        let verdict = Verdict::Denied {
            by: approver.into(),
            reason: reason.trim().into(),
        };
        self.finish(p, verdict.clone());
        Ok(verdict)
    }

    fn finish(&self, mut p: Pending, verdict: Verdict) {
        tracing::info!(
            event = "approval_decided",
            id = %p.request.id,
            identity = %p.request.submitted.identity,
            verdict = verdict.as_str(),
            "held statement decided"
        );
        if let Some(tx) = p.answer.take() {
            let _ = tx.send(verdict.clone());
        }
        self.publish(Notice::Decided {
            id: p.request.id,
            identity: p.request.submitted.identity,
            target: p.request.submitted.target,
            verdict,
        });
    }

    /// Time out a request (its ticket's deadline passed).
    fn expire(&self, id: &str) {
        let p = self.lock().pending.remove(id);
        if let Some(p) = p {
            self.finish(p, Verdict::Expired);
        }
    }

    /// Withdraw a request whose session went away.
    fn withdraw(&self, id: &str) {
        if self.lock().pending.remove(id).is_some() {
            tracing::info!(
                event = "approval_withdrawn",
                id,
                "held statement withdrawn: its session ended"
            );
            self.publish(Notice::Withdrawn { id: id.into() });
        }
    }

    /// Grant `spec.identity` a time window; `by` cannot grant themselves.
    pub fn grant(&self, spec: GrantSpec, by: &str) -> Result<Grant, DecideError> {
        if spec.identity.is_empty() || spec.identity.contains('*') {
            return Err(DecideError::BadGrant(
                "a grant names one identity exactly".into(),
            ));
        }
        if spec.identity == by {
            return Err(DecideError::SelfApproval(by.into()));
        }
        if spec.classes.is_empty() {
            return Err(DecideError::BadGrant(
                "list the statement classes the grant covers (ddl, write, …)".into(),
            ));
        }
        if spec.seconds == 0 || spec.seconds > self.config.max_grant_minutes * 60 {
            return Err(DecideError::BadGrant(format!(
                "a grant lasts from 1 second to {} minutes",
                self.config.max_grant_minutes
            )));
        }
        if spec.reason.trim().is_empty() {
            return Err(DecideError::NoReason);
        }
        let created = now();
        let grant = Grant {
            id: self.id("grt"),
            identity: spec.identity,
            target: if spec.target.is_empty() {
                "*".into()
            } else {
                spec.target
            },
            classes: spec.classes,
            by: by.into(),
            reason: spec.reason.trim().into(),
            created,
            expires: created + spec.seconds,
        };
        self.lock().grants.insert(grant.id.clone(), grant.clone());
        tracing::info!(event = "grant_created", id = %grant.id, identity = %grant.identity, by, "time-window grant made");
        self.publish(Notice::Granted {
            grant: grant.clone(),
        });
        Ok(grant)
    }

    /// Grants in force.
    pub fn grants(&self) -> Vec<Grant> {
        let now = now();
        let mut state = self.lock();
        state.grants.retain(|_, g| g.expires > now);
        state.grants.values().cloned().collect()
    }

    /// End a grant now.
    pub fn revoke(&self, id: &str, by: &str) -> Result<Grant, DecideError> {
        let grant = self
            .lock()
            .grants
            .remove(id)
            .ok_or_else(|| DecideError::NotFound(id.into()))?;
        tracing::info!(event = "grant_revoked", id, by, "time-window grant revoked");
        self.publish(Notice::Revoked {
            grant: grant.clone(),
            by: by.into(),
        });
        Ok(grant)
    }
}

/// A held statement's place in line. [`Ticket::wait`] resolves to the
/// verdict, or [`Verdict::Expired`] at the deadline. Dropping an
/// unresolved ticket withdraws the request.
pub struct Ticket {
    id: Option<String>,
    broker: Option<Arc<Broker>>,
    rx: Option<oneshot::Receiver<Verdict>>,
    ready: Option<Verdict>,
    expires_at: tokio::time::Instant,
}

impl Ticket {
    fn ready(v: Verdict) -> Ticket {
        Ticket {
            id: None,
            broker: None,
            rx: None,
            ready: Some(v),
            expires_at: tokio::time::Instant::now(),
        }
    }

    /// The request's id (None: decided at once, by a grant or a refusal).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Decided at submission (a grant, or refused): no wait.
    pub fn immediate(&self) -> Option<&Verdict> {
        self.ready.as_ref()
    }

    /// Wait for the decision.
    pub async fn wait(mut self) -> Verdict {
        if let Some(v) = self.ready.take() {
            return v;
        }
        let Some(rx) = self.rx.take() else {
            return Verdict::Refused {
                reason: "ticket already used".into(),
            };
        };
        let v = match tokio::time::timeout_at(self.expires_at, rx).await {
            Ok(Ok(v)) => v,
            // The broker dropped the sender without an answer: cannot
            // happen while the broker lives; refuse.
            Ok(Err(_)) => Verdict::Refused {
                reason: "the approval was lost".into(),
            },
            Err(_) => {
                if let (Some(b), Some(id)) = (&self.broker, &self.id) {
                    b.expire(id);
                }
                Verdict::Expired
            }
        };
        // Resolved: nothing to withdraw on drop.
        self.id = None;
        v
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let (Some(b), Some(id)) = (&self.broker, &self.id) {
            b.withdraw(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(identity: &str, classes: &[&str]) -> NewRequest {
        NewRequest {
            identity: identity.into(),
            target: "pg".into(),
            statement: "drop table t".into(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            rule: "policy.rules[0]".into(),
            reason: "ddl held".into(),
            ..Default::default()
        }
    }

    fn broker(required: u32, timeout: u64) -> Arc<Broker> {
        Broker::new(ApprovalsConfig {
            approvers_required: required,
            timeout_secs: timeout,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn approval_releases_the_waiting_ticket() {
        let b = broker(1, 60);
        let mut notices = b.subscribe();
        let t = b.submit(req("agent", &["ddl"]));
        let id = t.id().unwrap().to_string();
        assert!(matches!(
            notices.recv().await.unwrap(),
            Notice::Requested { .. }
        ));
        assert_eq!(b.pending().len(), 1);
        let waiter = tokio::spawn(t.wait());
        assert_eq!(
            b.approve(&id, "alice@example.com").unwrap(),
            Some(Verdict::Approved {
                by: vec!["alice@example.com".into()]
            })
        );
        assert!(waiter.await.unwrap().allows());
        assert!(b.pending().is_empty());
        assert_eq!(b.approve(&id, "bob"), Err(DecideError::NotFound(id)));
    }

    #[tokio::test]
    async fn separation_of_duties_and_two_approvers() {
        let b = broker(2, 60);
        let t = b.submit(req("alice", &["ddl"]));
        let id = t.id().unwrap().to_string();
        assert_eq!(
            b.approve(&id, "alice"),
            Err(DecideError::SelfApproval("alice".into()))
        );
        assert_eq!(b.approve(&id, "bob"), Ok(None));
        assert_eq!(
            b.approve(&id, "bob"),
            Err(DecideError::AlreadyApproved("bob".into()))
        );
        assert_eq!(b.get(&id).unwrap().approved_by, vec!["bob".to_string()]);
        let v = b.approve(&id, "carol").unwrap().unwrap();
        assert_eq!(
            v,
            Verdict::Approved {
                by: vec!["bob".into(), "carol".into()]
            }
        );
        assert_eq!(t.wait().await, v);
    }

    #[tokio::test]
    async fn one_denial_decides_and_needs_a_reason() {
        let b = broker(2, 60);
        let t = b.submit(req("agent", &["write"]));
        let id = t.id().unwrap().to_string();
        assert_eq!(b.approve(&id, "bob"), Ok(None));
        assert_eq!(b.deny(&id, "carol", "  "), Err(DecideError::NoReason));
        b.deny(&id, "carol", "not during the freeze").unwrap();
        assert_eq!(
            t.wait().await,
            Verdict::Denied {
                by: "carol".into(),
                reason: "not during the freeze".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_requests_expire() {
        let b = broker(1, 5);
        let mut notices = b.subscribe();
        let t = b.submit(req("agent", &["ddl"]));
        let id = t.id().unwrap().to_string();
        assert_eq!(t.wait().await, Verdict::Expired);
        assert!(b.get(&id).is_none());
        let _requested = notices.recv().await.unwrap();
        assert!(matches!(
            notices.recv().await.unwrap(),
            Notice::Decided {
                verdict: Verdict::Expired,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_dropped_ticket_withdraws_its_request() {
        let b = broker(1, 60);
        let t = b.submit(req("agent", &["ddl"]));
        let id = t.id().unwrap().to_string();
        drop(t);
        assert!(b.get(&id).is_none());
    }

    #[tokio::test]
    async fn grants_cover_their_classes_until_revoked() {
        let b = broker(1, 60);
        let spec = GrantSpec {
            identity: "agent".into(),
            target: "pg".into(),
            classes: vec!["ddl".into()],
            seconds: 30 * 60,
            reason: "migration window".into(),
        };
        assert_eq!(
            b.grant(
                GrantSpec {
                    identity: "bob".into(),
                    ..spec.clone()
                },
                "bob"
            ),
            Err(DecideError::SelfApproval("bob".into()))
        );
        let g = b.grant(spec.clone(), "bob").unwrap();
        let t = b.submit(req("agent", &["ddl"]));
        assert_eq!(
            t.immediate(),
            Some(&Verdict::Granted {
                grant: g.id.clone()
            })
        );
        // Another class, or a string with a class not covered, still waits.
        assert!(b.submit(req("agent", &["ddl", "write"])).id().is_some());
        assert!(b.submit(req("other", &["ddl"])).id().is_some());
        b.revoke(&g.id, "bob").unwrap();
        assert!(b.submit(req("agent", &["ddl"])).id().is_some());
        assert!(matches!(
            b.grant(
                GrantSpec {
                    seconds: 100_000_000,
                    ..spec
                },
                "bob"
            ),
            Err(DecideError::BadGrant(_))
        ));
    }

    #[tokio::test]
    async fn pending_requests_are_capped_per_identity() {
        let b = Broker::new(ApprovalsConfig {
            max_pending_per_identity: 2,
            ..Default::default()
        });
        let _a = b.submit(req("agent", &["ddl"]));
        let _b = b.submit(req("agent", &["ddl"]));
        let c = b.submit(req("agent", &["ddl"]));
        assert!(matches!(c.immediate(), Some(Verdict::Refused { .. })));
        assert!(b.submit(req("other", &["ddl"])).id().is_some());
    }
}
