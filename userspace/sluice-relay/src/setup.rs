//! Everything sessions need that is built once from the configuration: the
//! statement policy, TLS for both legs, the vaulted credentials. `sluice
//! run` builds it before attaching any program, and `sluice config check`
//! builds it to prove the files it names are usable.
use std::{collections::HashMap, sync::Arc};

use sluice_config::{AuthMode, Config, ConfigError, secrets::Secrets};
use sluice_pgproxy::{
    CancelRegistry, ClientTls, SessionConfig, TargetAuth, TargetSettings, TlsSetupError,
    UpstreamTls,
};

use crate::RelaySettings;

/// Why the session settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The policy does not compile.
    #[error("{0}")]
    Policy(#[from] sluice_policy::engine::CompileError),
    /// The token key file is unusable.
    #[error("masking.token_key_file {path}: {why}")]
    TokenKey {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        why: String,
    },
    /// Client-leg TLS material is unusable.
    #[error("[tls]: {0}")]
    ClientTls(TlsSetupError),
    /// A target's database-leg TLS settings are unusable.
    #[error("targets `{target}`: upstream TLS: {source}")]
    UpstreamTls {
        /// The target's name.
        target: String,
        /// What was wrong.
        source: TlsSetupError,
    },
    /// The secrets file is missing, readable by others, or invalid.
    #[error("proxy.secrets_file: {0}")]
    Secrets(ConfigError),
}

/// The store options a configuration asks for.
pub fn store_options(config: &sluice_config::StoreConfig) -> sluice_store::StoreOptions {
    use std::time::Duration;
    sluice_store::StoreOptions {
        path: config.path.clone(),
        key: config.signing_key.clone(),
        durability: match config.durability {
            sluice_config::Durability::Sync => sluice_store::Durability::Sync,
            sluice_config::Durability::Batch => sluice_store::Durability::Batch {
                window: Duration::from_millis(config.batch_window_ms),
            },
        },
        checkpoint_interval: Duration::from_millis(config.checkpoint_interval_ms),
        retention: Duration::from_secs(u64::from(config.retention_days) * 86_400),
    }
}

impl RelaySettings {
    /// Build the relay's settings from a validated configuration, loading
    /// every file it names (certificates, keys, CA bundles, secrets).
    pub fn from_config(config: &Config) -> Result<RelaySettings, SetupError> {
        let approvals = config
            .approvals
            .as_ref()
            .map(|a| sluice_approvals::Broker::new(a.clone()));
        RelaySettings::with_approvals(config, approvals)
    }

    /// [`RelaySettings::from_config`] with an existing approvals broker
    /// (a reload keeps the requests that are waiting).
    pub fn with_approvals(
        config: &Config,
        approvals: Option<Arc<sluice_approvals::Broker>>,
    ) -> Result<RelaySettings, SetupError> {
        let engine = sluice_policy::engine::Engine::new(&config.policy, &config.masking)?;
        let token_key = config
            .masking
            .token_key_file
            .as_ref()
            .map(|path| token_key(path))
            .transpose()?;
        let policy = Arc::new(crate::policy::RulePolicy::new(
            engine,
            token_key.as_deref(),
            approvals.clone(),
        ));
        let client_tls = config
            .tls
            .as_ref()
            .map(|t| {
                sluice_pgproxy::tls::acceptor(&t.cert, &t.key).map(|acceptor| ClientTls {
                    acceptor,
                    require: t.require,
                })
            })
            .transpose()
            .map_err(SetupError::ClientTls)?;
        let secrets = match &config.proxy.secrets_file {
            Some(path) if config.targets.iter().any(|t| t.auth == AuthMode::Inject) => Some(
                Arc::new(Secrets::load(path, config).map_err(SetupError::Secrets)?),
            ),
            _ => None,
        };
        if let Some(s) = &secrets {
            for c in s.unrestricted() {
                tracing::warn!(
                    target_name = %c.target,
                    user = %c.user,
                    "credential usable by any workload that reaches the target: restrict it with clients, uids or token_sha256"
                );
            }
        }
        let mut targets = HashMap::new();
        for t in &config.targets {
            let tls = UpstreamTls::new(
                t.upstream_tls,
                t.upstream_ca.as_deref(),
                t.upstream_server_name.as_deref(),
            )
            .map_err(|source| SetupError::UpstreamTls {
                target: t.name.clone(),
                source,
            })?;
            let auth = match (t.auth, &secrets) {
                (AuthMode::Inject, Some(s)) => TargetAuth::Inject(Arc::clone(s)),
                // Validation guarantees a secrets file for inject targets.
                _ => TargetAuth::Passthrough,
            };
            targets.insert(
                t.name.clone(),
                Arc::new(TargetSettings {
                    name: t.name.clone(),
                    tls,
                    auth,
                }),
            );
        }
        Ok(RelaySettings {
            rules: Arc::clone(&policy),
            config: Arc::new(config.clone()),
            postgres: SessionConfig {
                max_message: config.proxy.max_message_bytes,
                policy: policy as Arc<dyn sluice_pgproxy::Policy>,
                cancels: CancelRegistry::default(),
                client_tls,
                // Opened by `sluice run` (it holds the store's lock).
                store: None,
                metrics: Arc::default(),
                limits: sluice_pgproxy::limits::Limits {
                    startup_timeout: config.proxy.startup_timeout(),
                    max_statement: config.proxy.max_statement_bytes,
                    logins: Arc::new(sluice_pgproxy::limits::LoginLimiter::new(
                        config.proxy.auth_failures_per_minute,
                    )),
                    connections: Arc::new(sluice_pgproxy::limits::ConnectionCaps::new(
                        config.proxy.max_connections_per_identity,
                    )),
                },
            },
            targets,
            upstream_mark: config.proxy.upstream_mark,
            connect_timeout: config.proxy.connect_timeout(),
            max_connections: config.proxy.max_connections,
            identities: sluice_identity::Resolver::new(&config.identities),
            approvals,
        })
    }
}

/// Read the token key: at least 32 bytes, readable by its owner only.
fn token_key(path: &std::path::Path) -> Result<Vec<u8>, SetupError> {
    use std::os::unix::fs::MetadataExt;
    let err = |why: String| SetupError::TokenKey {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(err(format!(
            "mode {:o} lets others read it; chmod 600",
            meta.mode() & 0o777
        )));
    }
    let key = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if key.len() < 32 {
        return Err(err(format!(
            "{} bytes; a token key needs at least 32 random bytes (head -c 32 /dev/urandom > file)",
            key.len()
        )));
    }
    Ok(key)
}
