//! `sluice login`: the OAuth 2.0 device authorization grant (RFC 8628). The
//! CLI asks the provider for a code, shows the person where to enter it, and
//! polls the token endpoint until they have signed in there (on any device
//! with a browser). The ID token it receives is verified like any bearer
//! token before it is handed back, so a login that sluice would refuse fails
//! here, with the reason, rather than at the first API call.

use std::time::Duration;

use openidconnect::{
    ClientId, DeviceAuthorizationResponse, DeviceCodeErrorResponseType,
    EmptyExtraDeviceAuthorizationFields, OAuth2TokenResponse, RequestTokenError, Scope,
    StandardErrorResponse, core::CoreClient,
};

use crate::{
    config::OidcConfig,
    provider::{self, OidcError},
    token_file::TokenSet,
    verify::Verifier,
};

/// The longest sluice polls, whatever the provider's `expires_in` says.
const MAX_LOGIN_WAIT: Duration = Duration::from_secs(15 * 60);

/// What the person has to do, for the CLI to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePrompt {
    /// The page where the code is entered.
    pub verification_uri: String,
    /// The same page with the code filled in, when the provider offers one
    /// (worth showing as a QR code or opening directly).
    pub verification_uri_complete: Option<String>,
    /// The code to type on that page.
    pub user_code: String,
    /// Seconds until the code expires.
    pub expires_in: u64,
}

/// Runs the device flow for `config.client_id` and returns the verified
/// tokens. `prompt` is called once, as soon as the code is known; polling
/// starts when it returns. Scopes asked for: `openid`, `email`, `profile`,
/// and the groups claim's name when the provider lists it as a scope.
pub async fn device_login(
    config: &OidcConfig,
    prompt: impl FnOnce(&DevicePrompt),
) -> Result<TokenSet, OidcError> {
    let client_id = config.client_id.clone().ok_or(OidcError::NoClientId)?;
    let (metadata, http) = provider::discover(config).await?;
    let device_url = metadata
        .additional_metadata()
        .device_authorization_endpoint
        .clone()
        .ok_or_else(|| OidcError::NoDeviceFlow {
            issuer: config.issuer.clone(),
        })?;
    let mut scopes = vec!["email".to_owned(), "profile".to_owned()];
    let groups_scope_offered = metadata
        .scopes_supported()
        .is_some_and(|s| s.iter().any(|s| **s == config.groups_claim));
    if groups_scope_offered {
        scopes.push(config.groups_claim.clone());
    }

    // The ID token is for this client, so accept it as an audience here even
    // if the server side lists other audiences only.
    let mut accepting = config.clone();
    if !accepting.audience.contains(&client_id) {
        accepting.audience.push(client_id.clone());
    }
    let verifier = Verifier::from_metadata(accepting, &metadata, http.clone());

    let client = CoreClient::from_provider_metadata(metadata, ClientId::new(client_id), None)
        .set_device_authorization_url(device_url);
    let details: DeviceAuthorizationResponse<EmptyExtraDeviceAuthorizationFields> = client
        .exchange_device_code()
        .add_scopes(scopes.into_iter().map(Scope::new))
        .request_async(&http)
        .await
        .map_err(|e| {
            OidcError::Device(format!(
                "the device authorization request failed: {}",
                request_error(&e)
            ))
        })?;

    prompt(&DevicePrompt {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details
            .verification_uri_complete()
            .map(|u| u.secret().clone()),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in().as_secs(),
    });

    let wait = details.expires_in().min(MAX_LOGIN_WAIT);
    let response = client
        .exchange_device_access_token(&details)
        .map_err(|e| OidcError::Device(e.to_string()))?
        .request_async(&http, tokio::time::sleep, Some(wait))
        .await
        .map_err(|e| match &e {
            RequestTokenError::ServerResponse(r) => match r.error() {
                DeviceCodeErrorResponseType::AccessDenied => OidcError::AccessDenied,
                DeviceCodeErrorResponseType::ExpiredToken => OidcError::DeviceExpired,
                _ => {
                    OidcError::Device(format!("the token endpoint refused: {}", request_error(&e)))
                }
            },
            _ => OidcError::Device(format!(
                "polling the token endpoint failed: {}",
                request_error(&e)
            )),
        })?;

    let id_token = response
        .extra_fields()
        .id_token()
        .ok_or(OidcError::NoIdToken)?
        .to_string();
    let claims = verifier.verify(&id_token).await?;
    let refresh_token = response.refresh_token().map(|t| t.secret().clone());
    tracing::info!(principal = %claims.principal(), "signed in through the device flow");
    Ok(TokenSet {
        id_token,
        expires_at: claims.expires_at,
        refresh_token,
    })
}

/// A token request's failure, without the response body (a token
/// response's body holds tokens).
fn request_error<RE, T>(e: &RequestTokenError<RE, StandardErrorResponse<T>>) -> String
where
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponseType + std::fmt::Display,
{
    match e {
        RequestTokenError::ServerResponse(r) => {
            let mut text = r.error().to_string();
            if let Some(d) = r.error_description() {
                text.push_str(": ");
                text.push_str(d);
            }
            text
        }
        RequestTokenError::Request(inner) => provider::chain(inner),
        RequestTokenError::Parse(_, _) => "the provider's answer could not be parsed".into(),
        RequestTokenError::Other(s) => s.clone(),
    }
}
