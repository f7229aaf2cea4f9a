//! OpenID Connect for sluice: who is calling the admin API, and `sluice login`.
//!
//! Layout:
//! - [`config`]: the `[oidc]` section ([`OidcConfig`], [`RoleMap`]) and its
//!   validation;
//! - [`provider`]: the HTTP client (rustls, no redirects), discovery, key set
//!   fetches, [`OidcError`];
//! - [`verify`]: [`Verifier`], which judges bearer tokens with the cached
//!   signing keys and picks up rotated keys (rate-limited refetches), and
//!   [`TokenError`];
//! - [`claims`]: what a verified token says ([`Claims`]) and the groups →
//!   [`Role`] mapping; pure;
//! - [`device`]: the device authorization flow behind `sluice login`;
//! - [`token_file`]: the CLI's token cache (mode 0600).
//!
//! A typical server-side use:
//! ```no_run
//! # async fn f(config: sluice_oidc::OidcConfig, bearer: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = sluice_oidc::Verifier::discover(&config).await?; // once, at start
//! let claims = verifier.verify(bearer).await?;                    // per request
//! if claims.has(sluice_oidc::Role::Approver) { /* ... */ }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod claims;
pub mod config;
pub mod device;
pub mod provider;
pub mod token_file;
pub mod verify;

pub use claims::{Claims, Role};
pub use config::{OidcConfig, RoleMap};
pub use device::{DevicePrompt, device_login};
pub use provider::OidcError;
pub use token_file::{TokenSet, default_token_path, load_token, save_token};
pub use verify::{MAX_TOKEN_LEN, MIN_REFETCH, TokenError, Verifier};
