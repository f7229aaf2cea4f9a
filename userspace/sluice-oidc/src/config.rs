//! The `[oidc]` section: which issuer to trust, which audiences to accept,
//! which groups grant which role. Typed, `deny_unknown_fields`, and checked by
//! [`OidcConfig::validate`] with errors that name the key.

use std::{net::IpAddr, path::PathBuf};

use serde::Deserialize;

/// How sluice trusts one OpenID provider.
///
/// ```toml
/// [oidc]
/// issuer = "https://login.example.com/realms/ops"
/// audience = ["sluice-cli", "sluice-admin"]
/// client_id = "sluice-cli"
/// required_groups = ["sluice-admins", "sluice-approvers", "sluice-auditors"]
/// [oidc.roles]
/// admin = ["sluice-admins"]
/// approver = ["sluice-approvers"]
/// auditor = ["sluice-auditors"]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL, exactly as the provider writes it in `iss`. Discovery
    /// reads `{issuer}/.well-known/openid-configuration`. Must be `https`,
    /// except for a loopback address (the lab's provider).
    pub issuer: String,
    /// Accepted `aud` values (usually client ids). A token is accepted when
    /// its `aud` holds any of them. Never empty.
    pub audience: Vec<String>,
    /// The claim that lists the user's groups: an array of strings or a
    /// single string. Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Which groups grant which role.
    #[serde(default)]
    pub roles: RoleMap,
    /// When not empty, a token must carry at least one of these groups.
    #[serde(default)]
    pub required_groups: Vec<String>,
    /// The public client `sluice login` uses for the device flow.
    pub client_id: Option<String>,
    /// An extra PEM CA bundle trusted for an `https` issuer, on top of the
    /// built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Signing keys are refetched this often (seconds) even when every token
    /// names a known key, so a key the provider withdrew stops verifying.
    /// Default 300, between 5 and 86400.
    #[serde(default = "default_jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// Clock skew allowed on `exp`, `iat` and `nbf` (seconds). Default 60,
    /// at most 300.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
}

/// Group names granting each role. A user with any listed group has the role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleMap {
    /// Groups granting [`Role::Admin`](crate::Role::Admin).
    #[serde(default)]
    pub admin: Vec<String>,
    /// Groups granting [`Role::Approver`](crate::Role::Approver).
    #[serde(default)]
    pub approver: Vec<String>,
    /// Groups granting [`Role::Auditor`](crate::Role::Auditor).
    #[serde(default)]
    pub auditor: Vec<String>,
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_jwks_refresh_secs() -> u64 {
    300
}

fn default_leeway_secs() -> u64 {
    60
}

/// The smallest accepted `jwks_refresh_secs`: below it the periodic refresh
/// would fetch more often than an unknown key may ([`crate::MIN_REFETCH`]).
const MIN_REFRESH_SECS: u64 = 5;
const MAX_REFRESH_SECS: u64 = 86_400;
const MAX_LEEWAY_SECS: u64 = 300;

impl OidcConfig {
    /// A configuration for `issuer` accepting `audience`, every other key at
    /// its default.
    pub fn new(issuer: impl Into<String>, audience: Vec<String>) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            audience,
            groups_claim: default_groups_claim(),
            roles: RoleMap::default(),
            required_groups: Vec::new(),
            client_id: None,
            ca_file: None,
            jwks_refresh_secs: default_jwks_refresh_secs(),
            leeway_secs: default_leeway_secs(),
        }
    }

    /// Checks what the types cannot. The error is `(key, reason)`, the key
    /// relative to the `[oidc]` section (`issuer`, `roles.admin`, ...), for
    /// the caller to prefix.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: String| Err((key.to_owned(), reason));
        if let Err(reason) = check_issuer(&self.issuer) {
            return bad("issuer", reason);
        }
        if self.audience.is_empty() {
            return bad(
                "audience",
                "must list at least one accepted `aud` value (a client id)".into(),
            );
        }
        non_blank("audience", &self.audience)?;
        if self.groups_claim.trim().is_empty() {
            return bad("groups_claim", "must name a claim, e.g. \"groups\"".into());
        }
        non_blank("roles.admin", &self.roles.admin)?;
        non_blank("roles.approver", &self.roles.approver)?;
        non_blank("roles.auditor", &self.roles.auditor)?;
        non_blank("required_groups", &self.required_groups)?;
        if let Some(id) = &self.client_id
            && id.trim().is_empty()
        {
            return bad(
                "client_id",
                "must not be empty; leave it out instead".into(),
            );
        }
        if let Some(path) = &self.ca_file
            && path.as_os_str().is_empty()
        {
            return bad(
                "ca_file",
                "must name a PEM file; leave it out instead".into(),
            );
        }
        if !(MIN_REFRESH_SECS..=MAX_REFRESH_SECS).contains(&self.jwks_refresh_secs) {
            return bad(
                "jwks_refresh_secs",
                format!(
                    "must be between {MIN_REFRESH_SECS} and {MAX_REFRESH_SECS} seconds (got {})",
                    self.jwks_refresh_secs
                ),
            );
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return bad(
                "leeway_secs",
                format!(
                    "must be at most {MAX_LEEWAY_SECS} seconds (got {}): a larger skew keeps expired tokens alive",
                    self.leeway_secs
                ),
            );
        }
        Ok(())
    }
}

fn non_blank(key: &str, values: &[String]) -> Result<(), (String, String)> {
    match values.iter().position(|v| v.trim().is_empty()) {
        Some(i) => Err((format!("{key}[{i}]"), "must not be empty".into())),
        None => Ok(()),
    }
}

/// `https://…`, or `http://` to a loopback host; no query or fragment.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = openidconnect::url::Url::parse(issuer)
        .map_err(|e| format!("is not a URL ({e}), e.g. \"https://login.example.com\""))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(
            "must be https: tokens and keys fetched over plain http could be forged in transit \
             (plain http is accepted only for a loopback issuer)"
                .into(),
        ),
        other => Err(format!("must be an https URL (got scheme `{other}`)")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OidcConfig {
        OidcConfig::new("https://login.example.com", vec!["sluice-cli".into()])
    }

    #[test]
    fn defaults_from_toml() {
        let c: OidcConfig =
            toml_like(r#"{"issuer": "https://idp.example", "audience": ["a"]}"#).unwrap();
        assert_eq!(c.groups_claim, "groups");
        assert_eq!(c.jwks_refresh_secs, 300);
        assert_eq!(c.leeway_secs, 60);
        assert_eq!(c.roles, RoleMap::default());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml_like::<OidcConfig>(
            r#"{"issuer": "https://idp.example", "audience": ["a"], "audiences": ["b"]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("audiences"), "{e}");
        let e = toml_like::<OidcConfig>(
            r#"{"issuer": "https://idp.example", "audience": ["a"], "roles": {"admins": []}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("admins"), "{e}");
    }

    // serde_json stands in for TOML: the derive is the same.
    fn toml_like<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn validation_names_the_key() {
        type Edit = fn(&mut OidcConfig);
        let cases: &[(&str, Edit, &str)] = &[
            ("https issuer", |_| {}, ""),
            (
                "http loopback",
                |c| c.issuer = "http://127.0.0.1:8080".into(),
                "",
            ),
            ("http ::1", |c| c.issuer = "http://[::1]:8080".into(), ""),
            (
                "http localhost",
                |c| c.issuer = "http://localhost".into(),
                "",
            ),
            (
                "http remote",
                |c| c.issuer = "http://idp.example".into(),
                "issuer",
            ),
            ("not a url", |c| c.issuer = "idp.example".into(), "issuer"),
            (
                "query",
                |c| c.issuer = "https://idp.example/?x=1".into(),
                "issuer",
            ),
            ("no audience", |c| c.audience.clear(), "audience"),
            (
                "blank audience",
                |c| c.audience.push(" ".into()),
                "audience[1]",
            ),
            ("blank claim", |c| c.groups_claim.clear(), "groups_claim"),
            (
                "blank role group",
                |c| c.roles.admin = vec![String::new()],
                "roles.admin[0]",
            ),
            (
                "blank required",
                |c| c.required_groups = vec![String::new()],
                "required_groups[0]",
            ),
            (
                "blank client",
                |c| c.client_id = Some(String::new()),
                "client_id",
            ),
            (
                "refresh too often",
                |c| c.jwks_refresh_secs = 1,
                "jwks_refresh_secs",
            ),
            (
                "refresh too rare",
                |c| c.jwks_refresh_secs = 100_000,
                "jwks_refresh_secs",
            ),
            ("leeway", |c| c.leeway_secs = 3600, "leeway_secs"),
        ];
        for (name, edit, key) in cases {
            let mut c = config();
            edit(&mut c);
            match (c.validate(), *key) {
                (Ok(()), "") => {}
                (Err((k, reason)), want) => {
                    assert_eq!(k, want, "{name}: {reason}");
                    assert!(!reason.is_empty(), "{name}");
                }
                (Ok(()), want) => panic!("{name}: accepted, expected an error on `{want}`"),
            }
        }
    }
}
