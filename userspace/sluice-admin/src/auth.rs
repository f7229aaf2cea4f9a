//! Who is calling: the bearer token of `Authorization: Bearer <token>`
//! turned into a [`Principal`] by an [`Authenticate`] implementation.
//!
//! The daemon uses [`OidcAuth`], which verifies OIDC ID tokens with
//! [`sluice_oidc::Verifier`] (signature, issuer, audience, expiry, required
//! groups) and maps groups to roles. Tests plug in a table of fixed tokens.
//! Reasons given for a refusal never quote the token.

use std::{future::Future, pin::Pin};

use hyper::header::{AUTHORIZATION, HeaderMap};
use sluice_oidc::{Role, Verifier};

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The name recorded and used as approver (email, else username, else
    /// subject; see [`sluice_oidc::Claims::principal`]).
    pub name: String,
    /// The roles the caller's groups grant.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the caller has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The roles as their configured names, for the record.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.as_str().to_owned()).collect()
    }
}

/// The future [`Authenticate::authenticate`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, String>> + Send + 'a>>;

/// Turns a bearer token into a [`Principal`], or says why not (the reason
/// goes to the caller and the record: it must never quote the token).
///
/// Written without `async_trait`: the method returns a boxed future, so the
/// trait stays object-safe and the API can hold an `Arc<dyn Authenticate>`.
pub trait Authenticate: Send + Sync {
    /// Verifies `bearer` (the text after `Bearer `).
    fn authenticate<'a>(&'a self, bearer: &'a str) -> AuthFuture<'a>;
}

/// [`Authenticate`] with OIDC ID tokens from the configured provider.
#[derive(Debug, Clone)]
pub struct OidcAuth(pub Verifier);

impl Authenticate for OidcAuth {
    fn authenticate<'a>(&'a self, bearer: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            let claims = self.0.verify(bearer).await.map_err(|e| e.to_string())?;
            Ok(Principal {
                name: claims.principal(),
                roles: claims.roles.clone(),
            })
        })
    }
}

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bearer<'a> {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Bearer <token>` (another scheme, not ASCII,
    /// several headers, an empty token).
    Malformed,
    /// The token.
    Token(&'a str),
}

/// Reads `Authorization: Bearer <token>`. The scheme is case-insensitive
/// (RFC 7235); exactly one header is accepted.
pub(crate) fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Missing;
    };
    if values.next().is_some() {
        return Bearer::Malformed;
    }
    let Ok(text) = value.to_str() else {
        return Bearer::Malformed;
    };
    let Some((scheme, token)) = text.split_once(' ') else {
        return Bearer::Malformed;
    };
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Bearer::Malformed;
    }
    Bearer::Token(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn authorization_header_shapes() {
        let cases: &[(&[&str], Bearer<'_>)] = &[
            (&[], Bearer::Missing),
            (&["Bearer abc.def.ghi"], Bearer::Token("abc.def.ghi")),
            (&["bearer   abc  "], Bearer::Token("abc")),
            (&["BEARER abc"], Bearer::Token("abc")),
            (&["Basic dXNlcjpwYXNz"], Bearer::Malformed),
            (&["Bearer"], Bearer::Malformed),
            (&["Bearer "], Bearer::Malformed),
            (&["Bearer a b"], Bearer::Malformed),
            (&["Bearer a", "Bearer b"], Bearer::Malformed),
        ];
        for (values, want) in cases {
            let mut h = HeaderMap::new();
            for v in *values {
                h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(&bearer(&h), want, "{values:?}");
        }
    }

    #[test]
    fn principal_roles() {
        let p = Principal {
            name: "ann@example.test".into(),
            roles: vec![Role::Approver, Role::Auditor],
        };
        assert!(p.has(Role::Approver));
        assert!(!p.has(Role::Admin));
        assert_eq!(p.role_names(), ["approver", "auditor"]);
    }
}
