//! Talking to the OpenID provider: the HTTP client (rustls, no redirects,
//! timeouts, the optional extra CA), discovery, JWKS fetches, and
//! [`OidcError`] for everything that can go wrong before a token is judged.

use std::time::Duration;

use openidconnect::{
    AdditionalProviderMetadata, DeviceAuthorizationUrl, IssuerUrl, JsonWebKeySetUrl,
    ProviderMetadata,
    core::{
        CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
        CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
        CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType,
        CoreSubjectIdentifierType,
    },
    reqwest,
};
use serde::{Deserialize, Serialize};

use crate::{config::OidcConfig, verify::TokenError};

/// One HTTP request to the provider may take this long, connect included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What can fail while discovering the provider or logging in.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The `[oidc]` configuration is unusable.
    #[error("oidc.{key}: {reason}")]
    Config {
        /// The key, relative to `[oidc]`.
        key: String,
        /// What is expected.
        reason: String,
    },
    /// `ca_file` could not be read or holds no PEM certificate.
    #[error("oidc.ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for the OpenID provider: {0}")]
    Client(String),
    /// `{issuer}/.well-known/openid-configuration` did not answer with a
    /// usable document for this issuer.
    #[error("OpenID discovery at {issuer} failed: {reason}")]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// What went wrong.
        reason: String,
    },
    /// The provider's key set could not be fetched or parsed.
    #[error("fetching the signing keys from {url} failed: {reason}")]
    Jwks {
        /// The `jwks_uri`.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// `sluice login` needs `oidc.client_id`.
    #[error(
        "oidc.client_id is not set: `sluice login` needs the public client id registered for the device flow"
    )]
    NoClientId,
    /// The provider's discovery document has no `device_authorization_endpoint`.
    #[error(
        "the OpenID provider {issuer} does not offer the device authorization flow (no device_authorization_endpoint in its discovery document)"
    )]
    NoDeviceFlow {
        /// The configured issuer.
        issuer: String,
    },
    /// The device authorization request or the token polling failed.
    #[error("device login failed: {0}")]
    Device(String),
    /// The user refused, or the provider denied, the login.
    #[error("device login was denied at the provider")]
    AccessDenied,
    /// Nobody completed the login before the device code expired.
    #[error(
        "device login timed out: the code was not confirmed before it expired; run `sluice login` again"
    )]
    DeviceExpired,
    /// The token endpoint answered without an `id_token` (was `openid` granted?).
    #[error(
        "the provider answered without an ID token; is the `openid` scope allowed for this client?"
    )]
    NoIdToken,
    /// The provider issued a token that sluice does not accept.
    #[error("the provider signed you in, but its ID token is not accepted: {0}")]
    Token(#[from] TokenError),
}

/// The `device_authorization_endpoint` discovery field, which the core
/// metadata type does not carry; optional, so discovery of a provider
/// without the device flow still works for verification.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct DeviceMetadata {
    #[serde(default)]
    pub(crate) device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}
impl AdditionalProviderMetadata for DeviceMetadata {}

/// The provider's discovery document with the device endpoint.
pub(crate) type Metadata = ProviderMetadata<
    DeviceMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The HTTP client every provider request goes through. Redirects are not
/// followed: a provider endpoint that redirects could otherwise steer sluice
/// to any address (SSRF), and none of the protocol's requests needs one.
pub(crate) fn http_client(config: &OidcConfig) -> Result<reqwest::Client, OidcError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| OidcError::CaFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| OidcError::CaFile {
            path: shown.clone(),
            reason: format!("not a PEM certificate bundle ({e})"),
        })?;
        if certs.is_empty() {
            return Err(OidcError::CaFile {
                path: shown,
                reason: "holds no PEM certificate".into(),
            });
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| OidcError::Client(chain(&e)))
}

/// Validates `config`, then reads the discovery document and the key set it
/// points to. The document's `issuer` must equal the configured one exactly
/// (openidconnect checks), so a document served for another issuer is refused.
pub(crate) async fn discover(
    config: &OidcConfig,
) -> Result<(Metadata, reqwest::Client), OidcError> {
    config
        .validate()
        .map_err(|(key, reason)| OidcError::Config { key, reason })?;
    let http = http_client(config)?;
    let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| OidcError::Config {
        key: "issuer".into(),
        reason: e.to_string(),
    })?;
    let metadata =
        Metadata::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Discovery {
                issuer: config.issuer.clone(),
                reason: chain(&e),
            })?;
    Ok((metadata, http))
}

/// Fetches the key set at `url`.
pub(crate) async fn fetch_jwks(
    url: &JsonWebKeySetUrl,
    http: &reqwest::Client,
) -> Result<CoreJsonWebKeySet, OidcError> {
    CoreJsonWebKeySet::fetch_async(url, http)
        .await
        .map_err(|e| OidcError::Jwks {
            url: url.to_string(),
            reason: chain(&e),
        })
}

/// An error and its sources, `: `-separated. Only for errors about documents
/// that hold no secret (discovery, keys) or about the transport.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    // Bounded: error chains are short, but a cyclic one must not hang us.
    for _ in 0..8 {
        let Some(s) = source else { break };
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
