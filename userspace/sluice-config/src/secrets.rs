//! The secrets file: the credentials sluice logs in with for targets with
//! `auth = "inject"`, and who may use each one.
//!
//! ```toml
//! [[credentials]]
//! target = "orders-db"            # a [[targets]] name
//! user = "agent"                  # the user the workload asks for
//! upstream_user = "orders_rw"     # who sluice logs in as (default: user)
//! password = "..."                # never shown to the workload, never logged
//! clients = ["10.20.0.0/24"]      # workload networks allowed (optional)
//! uids = [1001]                   # jump host: local uids allowed (optional)
//! token_sha256 = "64 hex digits"  # workload must present this token (optional)
//! ```
//!
//! The file must be owned by root (or the daemon's user) and unreadable by
//! group and others; anything else is refused at start. Errors never quote
//! the file's text, so a typo next to a password cannot leak it into a log.
use std::{fmt, os::unix::fs::MetadataExt, path::Path};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::{AuthMode, Config, ConfigError};

/// The parsed secrets file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// One entry per (target, user).
    #[serde(default)]
    pub credentials: Vec<Credential>,
}

/// A vaulted database credential and the workloads allowed to use it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The `[[targets]]` name it logs in to.
    pub target: String,
    /// The user name the workload sends in its StartupMessage.
    pub user: String,
    /// The database role sluice logs in as; defaults to `user`.
    pub upstream_user: Option<String>,
    /// The database password.
    pub password: Secret,
    /// Workload source networks allowed to use this credential; empty = any.
    #[serde(default, deserialize_with = "nets")]
    #[schemars(with = "Vec<String>")]
    pub clients: Vec<IpNet>,
    /// Local uids allowed (jump-host sessions); empty = any.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// SHA-256 of a token the workload must present as its password.
    #[schemars(with = "Option<String>")]
    pub token_sha256: Option<TokenHash>,
}

impl Credential {
    /// The role sluice logs in as.
    pub fn upstream_user(&self) -> &str {
        self.upstream_user.as_deref().unwrap_or(&self.user)
    }
}

/// A string that never prints.
#[derive(Clone, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A SHA-256 digest, written as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_hex32(s.trim()).map(TokenHash).ok_or_else(|| {
            serde::de::Error::custom(
                "expected 64 hex digits (the SHA-256 of the token; `sluice token new` prints one)",
            )
        })
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A list of CIDRs or bare addresses (`deserialize_with`).
pub(crate) fn nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    items
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not an IP network: expected a CIDR such as \"10.0.0.0/24\" or an address"
                    ))
                })
        })
        .collect()
}

impl Secrets {
    /// Read the secrets file, check who can read it, and check it against
    /// the configuration's targets.
    pub fn load(path: &Path, config: &Config) -> Result<Secrets, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let me = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        if meta.uid() != 0 && meta.uid() != me {
            return Err(invalid(
                "(file owner)",
                format!(
                    "owned by uid {}; the secrets file must be owned by root or by the daemon's user",
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(invalid(
                "(file mode)",
                format!(
                    "mode {:04o} lets group or others read the credentials; run `chmod 600 {}`",
                    meta.mode() & 0o7777,
                    path.display()
                ),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Secrets::parse(&text, path, config)
    }

    /// Parse and check secrets text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path, config: &Config) -> Result<Secrets, ConfigError> {
        let secrets: Secrets = toml::from_str(text).map_err(|e| {
            // toml's Display quotes the offending line, which may hold a
            // password: report the position and the message only.
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1
            });
            ConfigError::Parse {
                path: path.to_owned(),
                message: match line {
                    Some(l) => format!("line {l}: {}", e.message()),
                    None => e.message().to_owned(),
                },
            }
        })?;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        for (i, c) in secrets.credentials.iter().enumerate() {
            let Some(target) = config.targets.iter().find(|t| t.name == c.target) else {
                return Err(invalid(
                    format!("credentials[{i}].target"),
                    format!("no [[targets]] entry is named `{}`", c.target),
                ));
            };
            if target.auth != AuthMode::Inject {
                return Err(invalid(
                    format!("credentials[{i}].target"),
                    format!(
                        "target `{}` has auth = \"passthrough\": its clients log in themselves; set auth = \"inject\" there to use this credential",
                        c.target
                    ),
                ));
            }
            if c.user.is_empty() || c.upstream_user().is_empty() {
                return Err(invalid(
                    format!("credentials[{i}].user"),
                    "must not be empty".into(),
                ));
            }
            if c.password.expose().is_empty() {
                return Err(invalid(
                    format!("credentials[{i}].password"),
                    "must not be empty".into(),
                ));
            }
            if c.token_sha256.is_some() && config.tls.is_none() {
                return Err(invalid(
                    format!("credentials[{i}].token_sha256"),
                    "a token is only accepted over TLS: configure [tls] so workloads can send it encrypted".into(),
                ));
            }
            if secrets.credentials[..i]
                .iter()
                .any(|o| o.target == c.target && o.user == c.user)
            {
                return Err(invalid(
                    format!("credentials[{i}]"),
                    format!(
                        "a credential for user `{}` on target `{}` is already listed",
                        c.user, c.target
                    ),
                ));
            }
        }
        Ok(secrets)
    }

    /// The credential for `user` on `target`.
    pub fn find(&self, target: &str, user: &str) -> Option<&Credential> {
        self.credentials
            .iter()
            .find(|c| c.target == target && c.user == user)
    }

    /// Credentials usable by any workload that reaches the target (no
    /// network, uid or token restriction), by index: worth a warning.
    pub fn unrestricted(&self) -> impl Iterator<Item = &Credential> {
        self.credentials
            .iter()
            .filter(|c| c.clients.is_empty() && c.uids.is_empty() && c.token_sha256.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "[gateway]\ninterfaces = [\"eth1\"]\n[proxy]\nsecrets_file = \"/etc/sluice/secrets.toml\"\n\
             [[targets]]\nname = \"db\"\naddress = \"10.0.0.5\"\nport = 5432\nauth = \"inject\"\n\
             [[targets]]\nname = \"open\"\naddress = \"10.0.0.6\"\nport = 5432\n",
            Path::new("c.toml"),
        )
        .unwrap()
    }

    #[test]
    fn a_credential_parses_and_never_prints_its_password() {
        let s = Secrets::parse(
            "[[credentials]]\ntarget = \"db\"\nuser = \"agent\"\npassword = \"hunter2\"\nclients = [\"10.1.0.0/16\", \"10.2.0.7\"]\n",
            Path::new("s.toml"),
            &config(),
        )
        .unwrap();
        let c = s.find("db", "agent").unwrap();
        assert_eq!(c.upstream_user(), "agent");
        assert_eq!(c.clients.len(), 2);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.unrestricted().count(), 0);
    }

    /// One line per bad file: the text, and what the error must say. None
    /// of the errors may quote the password.
    #[test]
    fn errors_name_the_key_and_hide_the_text() {
        let cases = [
            (
                "[[credentials]]\ntarget = \"nope\"\nuser = \"a\"\npassword = \"hunter2\"\n",
                "credentials[0].target",
            ),
            (
                "[[credentials]]\ntarget = \"open\"\nuser = \"a\"\npassword = \"hunter2\"\n",
                "auth = \"inject\"",
            ),
            (
                "[[credentials]]\ntarget = \"db\"\nuser = \"a\"\npassword = \"hunter2\"\ntoken_sha256 = \"xyz\"\n",
                "64 hex digits",
            ),
            (
                "[[credentials]]\ntarget = \"db\"\nuser = \"a\"\npassword = \"hunter2\nmore\"\n",
                "line 5",
            ),
            (
                "[[credentials]]\ntarget = \"db\"\nuser = \"a\"\npassword = \"hunter2\"\n[[credentials]]\ntarget = \"db\"\nuser = \"a\"\npassword = \"hunter2\"\n",
                "already listed",
            ),
            (
                "[[credentials]]\ntarget = \"db\"\nuser = \"a\"\npassword = \"hunter2\"\ncolour = 1\n",
                "colour",
            ),
        ];
        for (text, expected) in cases {
            let err = Secrets::parse(text, Path::new("s.toml"), &config())
                .expect_err(text)
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains("hunter2"), "error leaks the password: {err}");
        }
    }

    /// The shipped secrets example matches the shipped gateway example.
    #[test]
    fn deploy_example_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
        let config = Config::load(&dir.join("gateway.toml")).unwrap();
        let text = std::fs::read_to_string(dir.join("secrets.toml.example")).unwrap();
        let s = Secrets::parse(&text, Path::new("secrets.toml.example"), &config)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.credentials.len(), 2);
    }

    #[test]
    fn a_token_needs_tls() {
        let hash = "ab".repeat(32);
        let text = format!(
            "[[credentials]]\ntarget = \"db\"\nuser = \"a\"\npassword = \"p\"\ntoken_sha256 = \"{hash}\"\n"
        );
        let err = Secrets::parse(&text, Path::new("s.toml"), &config()).unwrap_err();
        assert!(err.to_string().contains("[tls]"), "{err}");
    }

    #[test]
    fn a_readable_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("sluice-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secrets.toml");
        std::fs::write(&path, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secrets::load(&path, &config()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Secrets::load(&path, &config()).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
