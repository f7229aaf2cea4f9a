//! The daemon's control plane: what the admin API reads (metrics, sessions)
//! and does (reload), and the admin session that records every admin action
//! and every approval in the store.
use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use sluice_approvals::{Broker, Notice};
use sluice_config::Config;
use sluice_intercept::Counters;
use sluice_relay::{Relay, RelaySettings};
use sluice_store::{
    SessionLog, Store,
    event::{AdminEvent, Event, SessionEnd, SessionStart},
    read::{Filter, Reader},
};

/// Shared by the admin API's callbacks.
pub(super) struct Control {
    pub(super) relay: Arc<Relay>,
    pub(super) broker: Option<Arc<Broker>>,
    pub(super) counters: Counters,
    pub(super) admin_log: Option<Arc<SessionLog>>,
    pub(super) store_path: Option<PathBuf>,
    /// The audit store writer's health (None: the store is off).
    pub(super) store_health: Option<Arc<sluice_store::Health>>,
    pub(super) config_path: PathBuf,
    /// The configuration in force (reloads compare against it).
    pub(super) config: Mutex<Config>,
}

/// The admin session: one per daemon run, recording admin API calls and
/// approval events. None without a store.
pub(super) fn admin_session(store: Option<&Store>, config: &Config) -> Option<Arc<SessionLog>> {
    let store = store?;
    (config.admin.is_some() || config.approvals.is_some()).then(|| {
        Arc::new(
            store.begin(SessionStart {
                protocol: "admin".into(),
                identity: "sluice".into(),
                target: "admin".into(),
                original: config
                    .admin
                    .as_ref()
                    .map(|a| a.listen.to_string())
                    .unwrap_or_default(),
                auth: "oidc".into(),
                ..Default::default()
            }),
        )
    })
}

/// Record every approval notice in the admin session, as it happens.
pub(super) fn record_notices(broker: &Arc<Broker>, log: Arc<SessionLog>) {
    let mut rx = broker.subscribe();
    tokio::spawn(async move {
        loop {
            let notice = match rx.recv().await {
                Ok(n) => n,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(
                        lost = n,
                        "approval notices were lost before they could be recorded"
                    );
                    log.record(&Event::Admin(AdminEvent {
                        principal: "sluice".into(),
                        action: "approval.notices_lost".into(),
                        result: "error".into(),
                        detail: Some(format!("{n} notices lost")),
                        ..Default::default()
                    }));
                    continue;
                }
                Err(_) => return,
            };
            let (action, subject) = match &notice {
                Notice::Requested { request } => ("approval.requested", request.id.clone()),
                Notice::ApprovedInPart { id, .. } => ("approval.approved_in_part", id.clone()),
                Notice::Decided { id, .. } => ("approval.decided", id.clone()),
                Notice::Withdrawn { id } => ("approval.withdrawn", id.clone()),
                Notice::Granted { grant } => ("grant.created", grant.id.clone()),
                Notice::Revoked { grant, .. } => ("grant.revoked", grant.id.clone()),
            };
            log.record(&Event::Admin(AdminEvent {
                principal: "sluice".into(),
                action: action.into(),
                subject: Some(subject),
                result: "ok".into(),
                detail: Some(
                    sluice_store::redact::mask_pans(
                        &serde_json::to_string(&notice).unwrap_or_default(),
                    )
                    .into_owned(),
                ),
                ..Default::default()
            }));
            if let Err(e) = log.durable().await {
                tracing::error!(error = %e, "an approval notice could not be recorded");
            }
        }
    });
}

/// End the admin session's record.
pub(super) async fn end_admin_session(log: &SessionLog) {
    log.record(&Event::SessionEnd(SessionEnd {
        reason: "daemon stopped".into(),
        ..Default::default()
    }));
    let _ = log.durable().await;
}

impl Control {
    /// Record one admin action.
    pub(super) fn record(&self, event: AdminEvent) {
        match &self.admin_log {
            Some(log) => {
                log.record(&Event::Admin(event));
            }
            None => tracing::info!(
                event = "admin",
                principal = %event.principal,
                action = %event.action,
                result = %event.result,
                "admin call (not recorded: the store is off)"
            ),
        }
    }

    /// Prometheus text exposition.
    pub(super) fn metrics(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let m = self.relay.metrics();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        metric(
            "sluice_connections_total",
            "counter",
            "Intercepted connections accepted.",
            &[("", self.relay.connections_total())],
        );
        metric(
            "sluice_sessions_active",
            "gauge",
            "Sessions in progress.",
            &[("", self.relay.live_sessions().len() as u64)],
        );
        metric(
            "sluice_statements_total",
            "counter",
            "Statements by decision (held ones also count once settled).",
            &[
                ("{decision=\"allow\"}", m.statements_allowed.load(Relaxed)),
                ("{decision=\"deny\"}", m.statements_denied.load(Relaxed)),
                ("{decision=\"approve\"}", m.statements_held.load(Relaxed)),
            ],
        );
        metric(
            "sluice_held_statements_settled_total",
            "counter",
            "Held statements by how they were settled.",
            &[
                ("{outcome=\"allowed\"}", m.held_allowed.load(Relaxed)),
                ("{outcome=\"refused\"}", m.held_refused.load(Relaxed)),
            ],
        );
        metric(
            "sluice_masked_values_total",
            "counter",
            "Values masked on their way to clients.",
            &[("", m.masked_values.load(Relaxed))],
        );
        metric(
            "sluice_approvals_pending",
            "gauge",
            "Statements waiting for approval.",
            &[(
                "",
                self.broker.as_ref().map_or(0, |b| b.pending().len() as u64),
            )],
        );
        if let Some(h) = &self.store_health {
            metric(
                "sluice_store_failing",
                "gauge",
                "1 while the audit store cannot write (a full disk, an I/O error): every session is refused until it writes again.",
                &[("", u64::from(h.failing()))],
            );
            metric(
                "sluice_store_write_failures_total",
                "counter",
                "Audit store writes and fsyncs that failed.",
                &[("", h.write_failures())],
            );
            metric(
                "sluice_store_fsyncs_total",
                "counter",
                "fsyncs of the audit store's log.",
                &[("", h.syncs())],
            );
        }
        let ebpf: Vec<(String, u64)> = self
            .counters
            .snapshot()
            .into_iter()
            .map(|(k, v)| (format!("{{counter=\"{k}\"}}"), v))
            .collect();
        let ebpf: Vec<(&str, u64)> = ebpf.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        metric(
            "sluice_ebpf_events_total",
            "counter",
            "Kernel program counters (steered packets, new flows, drops, fail-open passes, errors).",
            &ebpf,
        );
        out
    }

    /// Sessions: live ones from the relay, recorded ones from the store.
    pub(super) fn sessions(
        &self,
        live: bool,
        limit: usize,
        identity: Option<&str>,
    ) -> serde_json::Value {
        let limit = limit.clamp(1, 1000);
        if live {
            let sessions: Vec<_> = self
                .relay
                .live_sessions()
                .into_iter()
                .filter(|s| identity.is_none_or(|i| s.identity == i))
                .take(limit)
                .collect();
            return serde_json::json!({ "live": sessions });
        }
        let Some(path) = &self.store_path else {
            return serde_json::json!({ "error": "the store is off: no sessions are recorded" });
        };
        let filter = Filter {
            identity: identity.map(str::to_owned),
            ..Default::default()
        };
        match Reader::open(path).and_then(|r| r.sessions(&filter)) {
            Ok(mut sessions) => {
                // Newest first.
                sessions.reverse();
                sessions.truncate(limit);
                serde_json::json!({ "recorded": sessions })
            }
            Err(e) => serde_json::json!({ "error": format!("reading the store: {e}") }),
        }
    }

    /// Re-read the configuration; apply its policy and masking to every
    /// session (those in progress at their next statement) and its identity
    /// rules to sessions that start from now on. Anything else that changed
    /// needs a restart, and the reload is refused rather than half-applied.
    pub(super) fn reload(&self) -> Result<String, String> {
        let new = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let mut current = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let fixed = [
            ("proxy", current.proxy == new.proxy),
            ("gateway", current.gateway == new.gateway),
            ("jump_host", current.jump_host == new.jump_host),
            ("targets", current.targets == new.targets),
            ("tls", current.tls == new.tls),
            ("store", current.store == new.store),
            ("approvals", current.approvals == new.approvals),
            ("oidc", current.oidc == new.oidc),
            ("admin", current.admin == new.admin),
        ];
        let changed: Vec<&str> = fixed
            .iter()
            .filter(|(_, same)| !same)
            .map(|(k, _)| *k)
            .collect();
        if !changed.is_empty() {
            return Err(format!(
                "[{}] changed, which only a restart applies; nothing was reloaded",
                changed.join("], [")
            ));
        }
        let settings =
            RelaySettings::with_approvals(&new, self.broker.clone()).map_err(|e| e.to_string())?;
        self.relay.reload(&settings);
        let summary = format!(
            "reloaded: {} rules, {} sensitive columns, {} identity rules; open sessions take the rules and masking at their next statement",
            new.policy.rules.len(),
            new.masking.columns.len(),
            new.identities.len()
        );
        tracing::info!(event = "reload", "{summary}");
        *current = new;
        Ok(summary)
    }
}

/// OIDC for the admin API, discovered on first use (and retried on each
/// call until it succeeds): an unreachable provider at start costs the API
/// its authentication, never the data plane. Until then every call is
/// refused (fail closed).
pub(super) struct LazyOidc {
    config: sluice_config::OidcConfig,
    verifier: tokio::sync::Mutex<Option<sluice_oidc::Verifier>>,
}

impl LazyOidc {
    pub(super) fn new(config: sluice_config::OidcConfig) -> LazyOidc {
        LazyOidc {
            config,
            verifier: tokio::sync::Mutex::new(None),
        }
    }

    /// Discover now; the daemon calls this at start so the provider's
    /// problems show in its log.
    pub(super) async fn warm(&self) {
        if let Err(e) = self.verifier().await {
            tracing::warn!(error = %e, "OIDC discovery failed; admin API calls are refused until it succeeds");
        }
    }

    async fn verifier(&self) -> Result<sluice_oidc::Verifier, String> {
        let mut slot = self.verifier.lock().await;
        if let Some(v) = &*slot {
            return Ok(v.clone());
        }
        let v = sluice_oidc::Verifier::discover(&self.config)
            .await
            .map_err(|e| format!("the identity provider is unreachable: {e}"))?;
        tracing::info!(issuer = %self.config.issuer, "OIDC provider discovered");
        *slot = Some(v.clone());
        Ok(v)
    }
}

impl sluice_admin::Authenticate for LazyOidc {
    fn authenticate<'a>(&'a self, bearer: &'a str) -> sluice_admin::auth::AuthFuture<'a> {
        Box::pin(async move {
            let verifier = self.verifier().await?;
            sluice_admin::OidcAuth(verifier).authenticate(bearer).await
        })
    }
}

/// Start the admin API (and the approvals webhook) as the config says.
pub(super) async fn start_admin(
    config: &Config,
    control: &Arc<Control>,
) -> anyhow::Result<Option<sluice_admin::AdminHandle>> {
    if let (Some(url), Some(broker)) = (
        config.approvals.as_ref().and_then(|a| a.webhook.clone()),
        &control.broker,
    ) {
        sluice_admin::spawn_webhook(url.clone(), broker, &tokio::runtime::Handle::current())?;
        tracing::info!(webhook = %url, "approval notices are posted to the webhook");
    }
    let (Some(admin), Some(oidc)) = (&config.admin, &config.oidc) else {
        return Ok(None);
    };
    let auth = Arc::new(LazyOidc::new(oidc.clone()));
    auth.warm().await;
    let (m, s, r, rec) = (
        Arc::clone(control),
        Arc::clone(control),
        Arc::clone(control),
        Arc::clone(control),
    );
    let state = sluice_admin::AdminState {
        auth,
        broker: control.broker.clone(),
        metrics: Arc::new(move || m.metrics()),
        sessions: Arc::new(move |q: &sluice_admin::SessionQuery| {
            s.sessions(q.live, q.limit, q.identity.as_deref())
        }),
        reload: Arc::new(move || r.reload()),
        record: Arc::new(move |e| rec.record(e)),
    };
    let handle = sluice_admin::spawn(admin, state)?;
    tracing::info!(url = %handle.url(), "admin API listening");
    Ok(Some(handle))
}
