//! sluice's configuration: typed TOML, validated at load, with errors that
//! name the offending key and say what was expected.
//!
//! Layout: [`Config`] is the whole file; [`Config::load`] reads and checks it;
//! [`ConfigError`] says what is wrong and where.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

pub mod identity;
pub mod reference;
pub mod secrets;

pub use identity::IdentityRule;
pub use reference::reference_markdown;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or a key has the wrong type or is unknown.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, which names the key and shows the line.
        message: String,
    },
    /// A value parsed but makes no sense.
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key, e.g. `targets[0].port`.
        key: String,
        /// What is expected.
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Proxy-wide settings.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Gateway mode (forwarded traffic from agent hosts); absent = off.
    pub gateway: Option<GatewayConfig>,
    /// Jump-host mode (local processes); absent = off.
    pub jump_host: Option<JumpHostConfig>,
    /// Protected database targets: at least one. A connection is
    /// intercepted when its destination address lies in a target's
    /// `address` and its port is the target's `port`; when networks
    /// overlap, the most specific one wins.
    #[serde(default)]
    #[schemars(extend("x-sluice-required" = true))]
    pub targets: Vec<Target>,
    /// Workload identities: rules that name a flow's workload from its
    /// facts (`[[identities]]`, first match wins). Without any, workloads
    /// are named by their facts: `host:<ip>` or `uid:<n>`.
    #[serde(default)]
    pub identities: Vec<IdentityRule>,
    /// Statement policy: rules per identity and target (`[policy]`,
    /// `[[policy.rules]]`).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Sensitive columns, masking and content detectors (`[masking]`,
    /// `[[masking.columns]]`).
    #[serde(default)]
    pub masking: MaskingConfig,
    /// TLS on the client leg: sluice terminates it with this certificate.
    /// Absent: clients asking for TLS are told the server has none (`N`).
    pub tls: Option<ClientTlsConfig>,
    /// The session store: where every session is recorded.
    #[serde(default)]
    pub store: StoreConfig,
    /// Just-in-time approvals of statements that rules mark `approve`.
    /// Absent: such statements are refused, saying approvals are off.
    pub approvals: Option<ApprovalsConfig>,
    /// The OpenID provider whose ID tokens identify people (admin API,
    /// approvers, `sluice login`). Workload tokens are not OIDC: see
    /// `token_sha256` in the secrets file.
    pub oidc: Option<OidcConfig>,
    /// The admin API: health, metrics, sessions, approvals, reload.
    /// Absent: no API (approvals can then not be decided).
    pub admin: Option<AdminConfig>,
}

pub use sluice_oidc::{OidcConfig, RoleMap};

/// `[admin]`: the admin API, HTTP on its own port. Every call but
/// `/healthz` and `/metrics` needs an ID token from `[oidc]` as a bearer
/// token, and is recorded.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address and port (default 127.0.0.1:9443).
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain for HTTPS. Required unless `listen` is a
    /// loopback address: bearer tokens never cross a network in clear.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9443))
}

pub use sluice_approvals::ApprovalsConfig;

/// The session store (RocksDB): durable, hash-chained, signed audit
/// evidence of every session.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Record sessions. Turning this off leaves sessions unrecorded, which
    /// PCI DSS requirement 10 does not allow; it exists for benchmarks of
    /// the relay alone.
    pub enabled: bool,
    /// The RocksDB directory (created mode 700).
    pub path: PathBuf,
    /// The ed25519 checkpoint signing key, created on first start (mode
    /// 600); the public key is written beside it as `<key>.pub`.
    pub signing_key: PathBuf,
    /// `"sync"`: a statement reaches the database only once its event is
    /// on disk (fsync, group-committed across sessions); one the policy
    /// knows changes nothing (a plain SELECT, BEGIN, COMMIT; PostgreSQL and
    /// MySQL alike) runs meanwhile and its answer waits for the fsync. A command's
    /// outcome (recorded after its answer left) rides on the next fsync, at
    /// most 20 ms later. `"batch"`: events are written at once and fsynced
    /// every `batch_window_ms`, so a power failure can lose that window (a
    /// crash of sluice alone loses nothing).
    pub durability: Durability,
    /// Longest time between fsyncs with `durability = "batch"`,
    /// milliseconds (1-1000).
    pub batch_window_ms: u64,
    /// Longest time between signed checkpoints while events are written,
    /// milliseconds (10-60000). Events newer than the last checkpoint are
    /// not yet covered by a signature.
    pub checkpoint_interval_ms: u64,
    /// Sessions are removed this many days after they started (PCI DSS:
    /// at least a year of audit history).
    pub retention_days: u32,
}

/// When an event counts as recorded.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync before the statement goes on.
    Sync,
    /// fsync within `batch_window_ms`.
    Batch,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            path: PathBuf::from("/var/lib/sluice/store"),
            signing_key: PathBuf::from("/var/lib/sluice/audit-signing.key"),
            durability: Durability::Sync,
            batch_window_ms: 10,
            checkpoint_interval_ms: 1000,
            retention_days: 400,
        }
    }
}

/// TLS that sluice terminates for clients. The certificate must name the
/// addresses (or DNS names) clients dial, i.e. the protected databases',
/// since clients keep dialling those: issue it from a CA the clients trust
/// (`sslrootcert` for `sslmode=verify-full`).
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Refuse clients that do not use TLS (SQLSTATE 28000).
    #[serde(default)]
    pub require: bool,
}

pub use sluice_policy::engine::{MaskingConfig, PolicyConfig};

/// Proxy-wide settings.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// `SO_MARK` on the proxy's own upstream sockets; the jump-host programs
    /// never redirect a socket carrying it.
    #[schemars(extend("x-sluice-hex" = true))]
    pub upstream_mark: u32,
    /// Connections handled at once; more wait: one per listener accepted
    /// and held by sluice, the rest in the kernel's accept queue.
    pub max_connections: u32,
    /// Upstream dial timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Forward protected flows un-proxied while sluice is down. Off by
    /// default: security defaults fail closed.
    pub fail_open: bool,
    /// Where programs and links are pinned, so a crashed daemon still fails
    /// closed and the next start can clean up.
    pub bpffs_dir: PathBuf,
    /// Largest protocol message accepted from a client or a database, in
    /// bytes (at least 1024); larger ones end the session with an error.
    /// The default is 64 MiB.
    pub max_message_bytes: usize,
    /// Longest a client may take from connecting to a ready session
    /// (PostgreSQL: startup, TLS and authentication up to ReadyForQuery;
    /// MySQL: the handshake up to the first command), milliseconds
    /// (100-3600000). A client that connects and stalls, or dribbles its
    /// startup packet, is dropped then and its slot freed; the ended
    /// attempt is recorded with the reason.
    pub startup_timeout_ms: u64,
    /// Largest statement text sluice decides, in bytes (at least 64):
    /// a longer PostgreSQL Query or Parse, or MySQL COM_QUERY or
    /// COM_STMT_PREPARE, is refused (PostgreSQL SQLSTATE 54000, MySQL
    /// ERR 1142) and recorded as denied by `proxy.max_statement_bytes`,
    /// without being parsed or sent; the session goes on. The default is
    /// 1 MiB.
    pub max_statement_bytes: usize,
    /// Failed logins allowed per minute (a sliding window) from one
    /// source address (an IPv6 client counts by its /64; a local process
    /// in jump-host mode by its uid), and separately
    /// for one workload identity and database user (1-10000). A failure
    /// is a login the database refused for its credentials (PostgreSQL
    /// SQLSTATE class 28, MySQL 1045/1698) or that sluice refused at
    /// admission (`auth = "inject"`). Past the limit, logins from that
    /// source or as that identity and user are refused at once, without
    /// dialling the database (PostgreSQL SQLSTATE 28000, MySQL ERR 1129),
    /// and recorded, until the oldest failure is a minute old. A login in
    /// progress counts too until the database's verdict: with `f` recent
    /// failures, at most `limit − f` logins of one source (or identity and
    /// user) are in flight at once and the next ones wait for a verdict
    /// (within `startup_timeout_ms`), so guesses sent in parallel cannot
    /// all reach the database before the first failure counts. A pool
    /// opening more sessions at once than the limit only waits briefly.
    /// MySQL logins count from before the database is dialled (its server
    /// speaks first), so one source's silent clients hold at most that
    /// many database connections.
    pub auth_failures_per_minute: u32,
    /// Sessions one workload identity may hold at once (each identity
    /// counted on its own; `unknown` is one identity). The next one is
    /// refused (PostgreSQL SQLSTATE 53300, MySQL ERR 1203) and recorded,
    /// while other identities still connect. Not set: no cap beyond
    /// `max_connections`.
    pub max_connections_per_identity: Option<u32>,
    /// Root-only TOML file (owned by root or the daemon's user, mode 600)
    /// of the credentials sluice logs in with for targets with
    /// `auth = "inject"`; its keys are listed under *Secrets file* in the
    /// configuration reference (`docs/operators.md`), and
    /// `deploy/examples/secrets.toml.example` is a commented example.
    pub secrets_file: Option<PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            upstream_mark: 0x5e1c_0002,
            max_connections: 4096,
            connect_timeout_ms: 5000,
            fail_open: false,
            bpffs_dir: PathBuf::from("/sys/fs/bpf/sluice"),
            max_message_bytes: 64 * 1024 * 1024,
            startup_timeout_ms: 60_000,
            max_statement_bytes: 1024 * 1024,
            auth_failures_per_minute: 10,
            max_connections_per_identity: None,
            secrets_file: None,
        }
    }
}

impl ProxyConfig {
    /// The upstream dial timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The startup and authentication timeout.
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_millis(self.startup_timeout_ms)
    }
}

/// Gateway mode: tc ingress steering of forwarded flows.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Agent-facing interfaces: the tc ingress program is attached to
    /// each. List only those; the database-facing side carries sluice's own
    /// upstream connections. At least one.
    pub interfaces: Vec<String>,
    /// Port of the transparent listener, bound on 0.0.0.0 and :: with
    /// `IP_TRANSPARENT`. Clients never dial it (they keep dialling the
    /// databases), but nothing else on the machine may use it.
    #[serde(default = "default_gateway_port")]
    pub listen_port: u16,
    /// Packet mark the tc program puts on steered flows; the policy rule
    /// `fwmark <intercept_mark> lookup <route_table>` matches it. Non-zero,
    /// different from `proxy.upstream_mark`, and used by no other software
    /// on the machine.
    #[serde(default = "default_intercept_mark")]
    #[schemars(extend("x-sluice-hex" = true))]
    pub intercept_mark: u32,
    /// Policy-routing table sluice installs, holding a `local` route for
    /// every destination so marked packets are delivered to this machine.
    /// Must be a table nothing else uses; 0 and 253-255 are the kernel's.
    /// sluice removes the table's route and rule when it stops.
    #[serde(default = "default_route_table")]
    pub route_table: u32,
}

fn default_gateway_port() -> u16 {
    15432
}
fn default_intercept_mark() -> u32 {
    0x5e1c_0001
}
fn default_route_table() -> u32 {
    2571
}

/// Jump-host mode: cgroup connect() rewriting of local processes.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JumpHostConfig {
    /// Cgroup v2 directories (absolute paths on the cgroup2 mount) whose
    /// processes, and those of the cgroups below them, are intercepted. At
    /// least one.
    pub cgroups: Vec<PathBuf>,
    /// Where a connect() to an IPv4 target is rewritten to: sluice's
    /// listener, an IPv4 address and port. Keep it on loopback.
    #[serde(default = "default_jump_listen")]
    pub listen: SocketAddr,
    /// Where IPv6 connects are rewritten to; without it IPv6 targets are
    /// refused for local processes (fail closed).
    pub listen_v6: Option<SocketAddr>,
}

fn default_jump_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 15433))
}

/// A protected database target: a network and a port.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The target's name, unique: logs, audit records, policy rules
    /// (`targets`), `[[masking.columns]]` and the secrets file refer to
    /// the target by it.
    pub name: String,
    /// IPv4 or IPv6 network in CIDR form; a bare address means that single
    /// host (/32 or /128).
    #[serde(deserialize_with = "net_or_addr")]
    #[schemars(with = "String")]
    pub address: IpNet,
    /// TCP port of the database, 1-65535.
    pub port: u16,
    /// Wire protocol: `postgres` or `mysql` (sessions are parsed and
    /// policed) or `tcp` (relayed opaquely, logged as uninspected). When
    /// left out: `mysql` for port 3306, `postgres` otherwise.
    #[serde(default)]
    pub protocol: Protocol,
    /// Who authenticates to the database: the client (`passthrough`) or
    /// sluice with a vaulted credential (`inject`).
    #[serde(default)]
    pub auth: AuthMode,
    /// TLS from sluice to the database.
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// PEM CA bundle the database's certificate must chain to
    /// (`upstream_tls = "verify-full"`).
    pub upstream_ca: Option<PathBuf>,
    /// Name the database's certificate must carry; defaults to the address
    /// sluice dials (an IP address SAN).
    pub upstream_server_name: Option<String>,
}

/// Who authenticates to the database.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The client's own authentication exchange is relayed (cleartext, MD5,
    /// SCRAM-SHA-256; not SCRAM-SHA-256-PLUS, whose channel binding cannot
    /// cross a TLS-terminating proxy).
    #[default]
    Passthrough,
    /// sluice admits the workload by identity (network, uid, optional
    /// token) and logs in with a credential from `proxy.secrets_file`; the
    /// workload never holds the database password.
    Inject,
}

/// TLS from sluice to a database, with libpq's `sslmode` meanings.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain TCP.
    Disable,
    /// TLS if the database offers it, unverified; plain otherwise. The
    /// default, as it is libpq's: a link that was encrypted stays so.
    #[default]
    Prefer,
    /// TLS or no session; the certificate is not verified.
    Require,
    /// TLS with the certificate verified against `upstream_ca` and the name
    /// checked against `upstream_server_name` (or the dialled address).
    VerifyFull,
}

/// How sluice speaks to a target.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// PostgreSQL protocol 3.0.
    #[default]
    Postgres,
    /// The MySQL client/server protocol (MySQL and MariaDB).
    #[serde(alias = "mariadb")]
    Mysql,
    /// An opaque byte relay: no statement is seen, none is policed.
    Tcp,
}

/// MySQL's and MariaDB's registered port: targets on it speak MySQL unless
/// their `protocol` says otherwise.
pub const MYSQL_PORT: u16 = 3306;

impl Config {
    /// The target protecting `dst`, if any (most specific network first).
    pub fn target_for(&self, dst: std::net::SocketAddr) -> Option<&Target> {
        let ip = match dst.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.targets
            .iter()
            .filter(|t| t.port == dst.port() && t.address.contains(&ip))
            .max_by_key(|t| t.address.prefix_len())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpNet::V6(_) => write!(f, "{} ([{}]:{})", self.name, self.address, self.port),
            IpNet::V4(_) => write!(f, "{} ({}:{})", self.name, self.address, self.port),
        }
    }
}

fn net_or_addr<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = String::deserialize(d)?;
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{s}` is not an IP network: expected a CIDR such as \"10.0.0.0/24\" or an address such as \"10.0.0.5\""
        ))
    })
}

impl Config {
    /// Read, parse and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse and validate configuration text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.default_protocols(text);
        config.validate(path)?;
        Ok(config)
    }

    /// A target without `protocol` on MySQL's port speaks MySQL.
    fn default_protocols(&mut self, text: &str) {
        let Ok(raw) = toml::from_str::<toml::Table>(text) else {
            return;
        };
        let given: Vec<bool> = raw
            .get("targets")
            .and_then(|t| t.as_array())
            .map(|ts| ts.iter().map(|t| t.get("protocol").is_some()).collect())
            .unwrap_or_default();
        for (t, given) in self.targets.iter_mut().zip(given) {
            if !given && t.port == MYSQL_PORT {
                t.protocol = Protocol::Mysql;
            }
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.gateway.is_none() && self.jump_host.is_none() {
            return Err(invalid(
                "gateway / jump_host",
                "no interception mode is configured: add a [gateway] section (agent hosts behind \
                 this machine) or a [jump_host] section (processes on this machine), or both"
                    .into(),
            ));
        }
        if self.targets.is_empty() {
            return Err(invalid(
                "targets",
                "no protected targets: add at least one [[targets]] with name, address and port"
                    .into(),
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if t.port == 0 {
                return Err(invalid(
                    &format!("targets[{i}].port"),
                    "expected a port 1-65535".into(),
                ));
            }
            if t.name.trim().is_empty() {
                return Err(invalid(
                    &format!("targets[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if self.targets[..i].iter().any(|o| o.name == t.name) {
                return Err(invalid(
                    &format!("targets[{i}].name"),
                    format!(
                        "`{}` is used by an earlier target; names must be unique (credentials refer to them)",
                        t.name
                    ),
                ));
            }
            if t.upstream_tls == UpstreamTls::VerifyFull && t.upstream_ca.is_none() {
                return Err(invalid(
                    &format!("targets[{i}].upstream_ca"),
                    "upstream_tls = \"verify-full\" needs the CA bundle the database's certificate chains to".into(),
                ));
            }
            if t.upstream_ca.is_some() && t.upstream_tls != UpstreamTls::VerifyFull {
                return Err(invalid(
                    &format!("targets[{i}].upstream_tls"),
                    "upstream_ca is only used with upstream_tls = \"verify-full\"; set that (or drop upstream_ca)".into(),
                ));
            }
            if t.protocol == Protocol::Tcp
                && (t.auth != AuthMode::Passthrough || t.upstream_tls != UpstreamTls::Prefer)
            {
                return Err(invalid(
                    &format!("targets[{i}].protocol"),
                    "auth and upstream_tls need a protocol sluice speaks; a `tcp` target is relayed opaquely".into(),
                ));
            }
            if t.auth == AuthMode::Inject && self.proxy.secrets_file.is_none() {
                return Err(invalid(
                    &format!("targets[{i}].auth"),
                    "auth = \"inject\" needs proxy.secrets_file, the root-only file holding the credentials".into(),
                ));
            }
        }
        for (i, pattern) in self.policy.deny_patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(invalid(
                    &format!("policy.deny_patterns[{i}]"),
                    format!("not a valid regular expression: {e}"),
                ));
            }
        }
        let names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
        // The rules compile as the daemon will compile them.
        if let Err(e) = sluice_policy::engine::Engine::new(&self.policy, &self.masking) {
            return Err(invalid(&e.key(), e.reason()));
        }
        for (i, r) in self.policy.rules.iter().enumerate() {
            for t in &r.targets {
                if !names.contains(&t.as_str()) {
                    return Err(invalid(
                        &format!("policy.rules[{i}].targets"),
                        format!("no target is named {t:?}"),
                    ));
                }
            }
        }
        if let Some(o) = &self.oidc
            && let Err((key, reason)) = o.validate()
        {
            return Err(invalid(&format!("oidc.{key}"), reason));
        }
        if let Some(a) = &self.admin {
            if self.oidc.is_none() {
                return Err(invalid(
                    "admin",
                    "the admin API authenticates callers with ID tokens: add an [oidc] section"
                        .into(),
                ));
            }
            if a.cert.is_some() != a.key.is_some() {
                return Err(invalid(
                    "admin.cert",
                    "cert and key go together: set both (HTTPS) or neither (loopback only)".into(),
                ));
            }
            if a.cert.is_none() && !a.listen.ip().is_loopback() {
                return Err(invalid(
                    "admin.listen",
                    format!(
                        "{} is not a loopback address, so the API needs HTTPS: set admin.cert and admin.key",
                        a.listen
                    ),
                ));
            }
        }
        if let Some(a) = &self.approvals
            && let Some((key, reason)) = a.problem()
        {
            return Err(invalid(&format!("approvals.{key}"), reason));
        }
        for (i, rule) in self.identities.iter().enumerate() {
            if let Some((key, reason)) = rule.problem() {
                return Err(invalid(&format!("identities[{i}].{key}"), reason));
            }
            if self.identities[..i]
                .iter()
                .any(|o| o.name == rule.name && o.groups != rule.groups)
            {
                return Err(invalid(
                    &format!("identities[{i}].groups"),
                    format!(
                        "an earlier rule names `{}` with other groups; one identity has one set of groups",
                        rule.name
                    ),
                ));
            }
        }
        for (i, l) in self.policy.row_limits.iter().enumerate() {
            if l.max_rows == 0 {
                return Err(invalid(
                    &format!("policy.row_limits[{i}].max_rows"),
                    "expected at least 1 row".into(),
                ));
            }
            for t in &l.targets {
                if !names.contains(&t.as_str()) {
                    return Err(invalid(
                        &format!("policy.row_limits[{i}].targets"),
                        format!("no target is named {t:?}"),
                    ));
                }
            }
        }
        for (i, c) in self.masking.columns.iter().enumerate() {
            if let Some(t) = &c.target
                && !names.contains(&t.as_str())
            {
                return Err(invalid(
                    &format!("masking.columns[{i}].target"),
                    format!("no target is named {t:?}"),
                ));
            }
            if c.format == sluice_policy::mask::MaskFormat::Token
                && self.masking.token_key_file.is_none()
            {
                return Err(invalid(
                    &format!("masking.columns[{i}].format"),
                    "format = \"token\" needs masking.token_key_file (32 random bytes or more)"
                        .into(),
                ));
            }
        }
        let st = &self.store;
        if st.retention_days < 1 {
            return Err(invalid(
                "store.retention_days",
                "expected at least 1 day (PCI DSS asks for 365 or more)".into(),
            ));
        }
        if !(1..=1000).contains(&st.batch_window_ms) {
            return Err(invalid(
                "store.batch_window_ms",
                "expected 1-1000 milliseconds".into(),
            ));
        }
        if !(10..=60_000).contains(&st.checkpoint_interval_ms) {
            return Err(invalid(
                "store.checkpoint_interval_ms",
                "expected 10-60000 milliseconds".into(),
            ));
        }
        if st.enabled && st.signing_key.starts_with(&st.path) {
            return Err(invalid(
                "store.signing_key",
                "must be a file outside the store directory".into(),
            ));
        }
        let p = &self.proxy;
        if p.max_message_bytes < 1024 {
            return Err(invalid(
                "proxy.max_message_bytes",
                "expected at least 1024 bytes".into(),
            ));
        }
        if !(100..=3_600_000).contains(&p.startup_timeout_ms) {
            return Err(invalid(
                "proxy.startup_timeout_ms",
                "expected 100-3600000 milliseconds".into(),
            ));
        }
        if p.max_statement_bytes < 64 {
            return Err(invalid(
                "proxy.max_statement_bytes",
                "expected at least 64 bytes".into(),
            ));
        }
        if !(1..=10_000).contains(&p.auth_failures_per_minute) {
            return Err(invalid(
                "proxy.auth_failures_per_minute",
                "expected 1-10000 failed logins per minute".into(),
            ));
        }
        if let Some(n) = p.max_connections_per_identity
            && (n == 0 || n > p.max_connections)
        {
            return Err(invalid(
                "proxy.max_connections_per_identity",
                format!(
                    "expected 1 to proxy.max_connections ({}); leave it out for no per-identity cap",
                    p.max_connections
                ),
            ));
        }
        if p.max_connections == 0 {
            return Err(invalid(
                "proxy.max_connections",
                "expected a number above 0".into(),
            ));
        }
        if p.connect_timeout_ms == 0 {
            return Err(invalid(
                "proxy.connect_timeout_ms",
                "expected milliseconds above 0".into(),
            ));
        }
        if p.upstream_mark == 0 {
            return Err(invalid(
                "proxy.upstream_mark",
                "must be non-zero: it is how the kernel programs recognise the proxy's own sockets"
                    .into(),
            ));
        }
        if !p.bpffs_dir.is_absolute() {
            return Err(invalid(
                "proxy.bpffs_dir",
                "expected an absolute path under a bpffs mount".into(),
            ));
        }
        if let Some(g) = &self.gateway {
            if g.interfaces.is_empty() {
                return Err(invalid(
                    "gateway.interfaces",
                    "list at least one agent-facing interface".into(),
                ));
            }
            for (i, name) in g.interfaces.iter().enumerate() {
                if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                    return Err(invalid(
                        &format!("gateway.interfaces[{i}]"),
                        format!(
                            "`{name}` is not a valid interface name (1-15 characters, no '/' or spaces)"
                        ),
                    ));
                }
            }
            if g.listen_port == 0 {
                return Err(invalid(
                    "gateway.listen_port",
                    "expected a port 1-65535".into(),
                ));
            }
            if g.intercept_mark == 0 || g.intercept_mark == p.upstream_mark {
                return Err(invalid(
                    "gateway.intercept_mark",
                    "must be non-zero and differ from proxy.upstream_mark (upstream packets must \
                     not be routed back to the proxy)"
                        .into(),
                ));
            }
            if matches!(g.route_table, 0 | 253..=255) {
                return Err(invalid(
                    "gateway.route_table",
                    "0, 253 (default), 254 (main) and 255 (local) are the kernel's own tables: pick another".into(),
                ));
            }
        }
        if let Some(j) = &self.jump_host {
            if j.cgroups.is_empty() {
                return Err(invalid(
                    "jump_host.cgroups",
                    "list at least one cgroup v2 directory".into(),
                ));
            }
            for (i, c) in j.cgroups.iter().enumerate() {
                if !c.is_absolute() {
                    return Err(invalid(
                        &format!("jump_host.cgroups[{i}]"),
                        format!(
                            "`{}` must be an absolute path such as /sys/fs/cgroup/agents",
                            c.display()
                        ),
                    ));
                }
            }
            if !j.listen.is_ipv4() || j.listen.port() == 0 {
                return Err(invalid(
                    "jump_host.listen",
                    "expected an IPv4 address and port, e.g. \"127.0.0.1:15433\"".into(),
                ));
            }
            if let Some(v6) = j.listen_v6
                && (!v6.is_ipv6() || v6.port() == 0)
            {
                return Err(invalid(
                    "jump_host.listen_v6",
                    "expected an IPv6 address and port, e.g. \"[::1]:15433\"".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "[[targets]]\nname = \"db\"\naddress = \"10.0.0.5\"\nport = 5432\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn minimal_gateway_config_gets_defaults() {
        let c = parse(&format!("[gateway]\ninterfaces = [\"eth1\"]\n{TARGET}")).unwrap();
        let g = c.gateway.unwrap();
        assert_eq!(g.listen_port, 15432);
        assert_eq!(c.targets[0].address.to_string(), "10.0.0.5/32");
        assert!(!c.proxy.fail_open);
    }

    #[test]
    fn cidr_is_truncated_and_v6_accepted() {
        let c = parse(
            "[jump_host]\ncgroups = [\"/sys/fs/cgroup/a\"]\n[[targets]]\nname = \"x\"\naddress = \"fd00::1/64\"\nport = 5432\n",
        )
        .unwrap();
        assert_eq!(c.targets[0].address.to_string(), "fd00::/64");
    }

    /// One line per target: port and `protocol` as written → what sluice
    /// speaks.
    #[test]
    fn protocol_defaults_by_port() {
        let cases = [
            ("3306", "", Protocol::Mysql),
            ("3306", "protocol = \"tcp\"\n", Protocol::Tcp),
            ("3306", "protocol = \"postgres\"\n", Protocol::Postgres),
            ("5432", "", Protocol::Postgres),
            ("13306", "protocol = \"mysql\"\n", Protocol::Mysql),
            ("13306", "protocol = \"mariadb\"\n", Protocol::Mysql),
            ("13306", "", Protocol::Postgres),
        ];
        for (port, protocol, want) in cases {
            let c = parse(&format!(
                "[gateway]\ninterfaces = [\"eth1\"]\n{TARGET}[[targets]]\nname = \"m\"\naddress = \"10.0.0.6\"\nport = {port}\n{protocol}"
            ))
            .unwrap();
            assert_eq!(c.targets[0].protocol, Protocol::Postgres);
            assert_eq!(c.targets[1].protocol, want, "port {port} {protocol:?}");
        }
    }

    /// Credential injection is available on both protocols sluice speaks.
    #[test]
    fn inject_is_accepted_for_postgres_and_mysql() {
        for port in [5432, 3306] {
            let c = parse(&format!(
                "[gateway]\ninterfaces = [\"eth1\"]\n[proxy]\nsecrets_file = \"/s\"\n[[targets]]\nname = \"m\"\naddress = \"10.0.0.1\"\nport = {port}\nauth = \"inject\"\n"
            ))
            .unwrap_or_else(|e| panic!("port {port}: {e}"));
            assert_eq!(c.targets[0].auth, AuthMode::Inject, "port {port}");
        }
    }

    /// The shipped examples must always load: they are what operators copy.
    #[test]
    fn deploy_examples_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(
            seen >= 2,
            "expected the gateway and jump-host examples in {}",
            dir.display()
        );
    }

    /// One line per bad input: the text, and the key the error must name.
    #[test]
    fn errors_name_the_key() {
        let gw = "[gateway]\ninterfaces = [\"eth1\"]\n";
        let cases: &[(String, &str)] = &[
            (TARGET.to_string(), "gateway / jump_host"),
            (gw.to_string(), "targets"),
            (
                format!("{gw}{TARGET}[proxy]\nmax_connections = 0\n"),
                "proxy.max_connections",
            ),
            (format!("{gw}{TARGET}[proxy]\nbogus = 1\n"), "bogus"),
            (
                format!("{gw}{TARGET}[proxy]\nstartup_timeout_ms = 50\n"),
                "proxy.startup_timeout_ms",
            ),
            (
                format!("{gw}{TARGET}[proxy]\nmax_statement_bytes = 10\n"),
                "proxy.max_statement_bytes",
            ),
            (
                format!("{gw}{TARGET}[proxy]\nauth_failures_per_minute = 0\n"),
                "proxy.auth_failures_per_minute",
            ),
            (
                format!("{gw}{TARGET}[proxy]\nmax_connections_per_identity = 0\n"),
                "proxy.max_connections_per_identity",
            ),
            (
                format!(
                    "{gw}{TARGET}[proxy]\nmax_connections = 10\nmax_connections_per_identity = 11\n"
                ),
                "proxy.max_connections_per_identity",
            ),
            (
                format!("{gw}[[targets]]\nname = \"a\"\naddress = \"nope\"\nport = 1\n"),
                "not an IP network",
            ),
            (
                format!("{gw}[[targets]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 0\n"),
                "targets[0].port",
            ),
            (
                format!("{gw}[[targets]]\nname = \"a\"\naddress = \"10.0.0.1\"\nport = 70000\n"),
                "port",
            ),
            (
                format!(
                    "{gw}[[targets]]\nname = \"m\"\naddress = \"10.0.0.1\"\nport = 3306\nauth = \"inject\"\n"
                ),
                "proxy.secrets_file",
            ),
            (
                "[gateway]\ninterfaces = []\n".to_string() + TARGET,
                "gateway.interfaces",
            ),
            (
                format!("[gateway]\ninterfaces = [\"a/b\"]\n{TARGET}"),
                "gateway.interfaces[0]",
            ),
            (
                format!("{gw}route_table = 254\n{TARGET}"),
                "gateway.route_table",
            ),
            (
                format!("{gw}intercept_mark = 0x5e1c0002\n{TARGET}"),
                "gateway.intercept_mark",
            ),
            (
                format!("[jump_host]\ncgroups = [\"rel\"]\n{TARGET}"),
                "jump_host.cgroups[0]",
            ),
            (
                format!("[jump_host]\ncgroups = [\"/a\"]\nlisten = \"[::1]:1\"\n{TARGET}"),
                "jump_host.listen",
            ),
            (
                format!("{gw}{TARGET}[proxy]\nupstream_mark = 0\n"),
                "proxy.upstream_mark",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(
                err.contains(key),
                "error for {text:?} should name {key:?}: {err}"
            );
        }
    }
}
