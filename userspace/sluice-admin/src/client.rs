//! The admin API client behind `sluice approvals`: one method per endpoint,
//! the JSON bodies of [`api`](crate::api), and errors that say what to do.
//!
//! The bearer token is sent only over HTTPS, or over plain HTTP to a
//! loopback address (where the API may listen without TLS); redirects are
//! never followed, so the token cannot be bounced elsewhere.

use std::{net::IpAddr, time::Duration};

use reqwest::{Method, StatusCode, Url, redirect::Policy};
use serde::{Serialize, de::DeserializeOwned};
use sluice_approvals::Grant;

use crate::{
    SessionQuery,
    api::{
        ApprovalList, ApproveReply, DenyBody, DenyReply, ErrorBody, GrantList, NewGrant,
        ReloadReply, RevokeReply,
    },
};

/// One call may take this long, connect included.
const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers larger than this are not the API's.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client could not be set up (a bad URL, an unusable CA file, a
    /// token that would cross the network in clear).
    #[error("{0}")]
    Setup(String),
    /// The API could not be reached or did not answer.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// Why, with a hint.
        reason: String,
    },
    /// The API answered with an error.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's message, with a hint where one helps.
        message: String,
    },
    /// The API answered something this client does not understand.
    #[error("the admin API answered something unexpected: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The API refused the call as asked (403, 404, 409): the request was
    /// understood, and the answer is no.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ClientError::Api {
                status: 403 | 404 | 409,
                ..
            }
        )
    }
}

/// A client for one API with one bearer token.
#[derive(Clone)]
pub struct Client {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the API at `base` (`https://host:port`), sending `token`.
    /// `ca_pem`: extra CA certificates (PEM) to trust, on top of the web PKI
    /// roots — the API's own CA when its certificate is private.
    pub fn new(base: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Client, ClientError> {
        let mut base = Url::parse(base).map_err(|e| {
            ClientError::Setup(format!(
                "{base:?} is not a URL ({e}); expected e.g. https://sluice.example:9443"
            ))
        })?;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(base.host_str().unwrap_or_default()) => {}
            "http" => {
                return Err(ClientError::Setup(format!(
                    "refusing to send your token over plain http to {}; use https",
                    base.host_str().unwrap_or_default()
                )));
            }
            other => {
                return Err(ClientError::Setup(format!(
                    "{other}:// is not an API URL; expected https:// (or http:// on loopback)"
                )));
            }
        }
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ClientError::Setup(
                "the token is empty or has whitespace in it; run `sluice login` again".into(),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("sluice-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                ClientError::Setup(format!("the CA file holds no usable PEM certificate: {e}"))
            })?;
            if certs.is_empty() {
                return Err(ClientError::Setup(
                    "the CA file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            base,
            token: token.to_owned(),
            http,
        })
    }

    /// `GET /api/approvals`.
    pub async fn approvals(&self) -> Result<ApprovalList, ClientError> {
        self.call(Method::GET, &["api", "approvals"], None::<&()>, &[])
            .await
    }

    /// `POST /api/approvals/{id}/approve`.
    pub async fn approve(&self, id: &str) -> Result<ApproveReply, ClientError> {
        self.call(
            Method::POST,
            &["api", "approvals", id, "approve"],
            None::<&()>,
            &[],
        )
        .await
    }

    /// `POST /api/approvals/{id}/deny`.
    pub async fn deny(&self, id: &str, reason: &str) -> Result<DenyReply, ClientError> {
        let body = DenyBody {
            reason: reason.to_owned(),
        };
        self.call(
            Method::POST,
            &["api", "approvals", id, "deny"],
            Some(&body),
            &[],
        )
        .await
    }

    /// `GET /api/grants`.
    pub async fn grants(&self) -> Result<GrantList, ClientError> {
        self.call(Method::GET, &["api", "grants"], None::<&()>, &[])
            .await
    }

    /// `POST /api/grants`.
    pub async fn grant(&self, grant: &NewGrant) -> Result<Grant, ClientError> {
        self.call(Method::POST, &["api", "grants"], Some(grant), &[])
            .await
    }

    /// `DELETE /api/grants/{id}`.
    pub async fn revoke(&self, id: &str) -> Result<RevokeReply, ClientError> {
        self.call(Method::DELETE, &["api", "grants", id], None::<&()>, &[])
            .await
    }

    /// `GET /api/sessions`.
    pub async fn sessions(&self, q: &SessionQuery) -> Result<serde_json::Value, ClientError> {
        let mut query = vec![("live", q.live.to_string()), ("limit", q.limit.to_string())];
        if let Some(i) = &q.identity {
            query.push(("identity", i.clone()));
        }
        self.call(Method::GET, &["api", "sessions"], None::<&()>, &query)
            .await
    }

    /// `POST /api/config/reload`.
    pub async fn reload(&self) -> Result<ReloadReply, ClientError> {
        self.call(Method::POST, &["api", "config", "reload"], None::<&()>, &[])
            .await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&B>,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::Setup(format!("{} cannot be a base URL", self.base)))?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b)
                .map_err(|e| ClientError::Setup(format!("cannot encode the request: {e}")))?;
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let bytes = read_capped(resp).await.map_err(|e| self.unreachable(e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Unexpected(format!("{status}: {e}")));
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("the admin API answered {status}"));
        Err(ClientError::Api {
            status: status.as_u16(),
            message: with_hint(status, message),
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        // The URL is shown once, as the base; the error would repeat it.
        let e = e.without_url();
        let mut reason = chain(&e);
        let lower = reason.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("unknownissuer") {
            reason.push_str(
                "; if the API's certificate comes from a private CA, pass --ca with that CA's PEM file",
            );
        } else if lower.contains("connection refused") || e.is_connect() {
            reason.push_str(
                "; is `sluice run` running with an [admin] section? Pass --api to name the address",
            );
        } else if e.is_timeout() {
            reason.push_str("; the API did not answer in time");
        }
        ClientError::Unreachable {
            url: self.base.as_str().trim_end_matches('/').to_owned(),
            reason,
        }
    }
}

/// Reads an answer up to [`MAX_ANSWER`] bytes.
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > MAX_ANSWER {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// What to do next, for the statuses where there is something to do.
fn with_hint(status: StatusCode, message: String) -> String {
    match status {
        StatusCode::UNAUTHORIZED if message.contains("expired") => {
            format!("{message}; your token has expired: run `sluice login` again")
        }
        StatusCode::UNAUTHORIZED => {
            format!("{message}; run `sluice login` (or set SLUICE_TOKEN / --token-file)")
        }
        _ => message,
    }
}

/// The error and its sources, without the URL (the base is shown apart).
fn chain(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    let mut n = 0;
    while let Some(err) = cur {
        let text = err.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cur = err.source();
        n += 1;
        if n == 8 {
            break;
        }
    }
    out
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cross_the_network_only_over_https() {
        assert!(Client::new("https://sluice.example:9443", "t", None).is_ok());
        assert!(Client::new("http://127.0.0.1:9443", "t", None).is_ok());
        assert!(Client::new("http://[::1]:9443", "t", None).is_ok());
        assert!(Client::new("http://localhost:9443", "t", None).is_ok());
        let e = Client::new("http://10.0.0.5:9443", "t", None).unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
        assert!(Client::new("ftp://x", "t", None).is_err());
        assert!(Client::new("not a url", "t", None).is_err());
        assert!(Client::new("https://x", "a b", None).is_err());
        assert!(Client::new("https://x", "t", Some(b"garbage")).is_err());
    }

    #[test]
    fn hints() {
        let h = with_hint(StatusCode::UNAUTHORIZED, "the token has expired".into());
        assert!(h.contains("sluice login"), "{h}");
        assert_eq!(with_hint(StatusCode::NOT_FOUND, "x".into()), "x");
    }

    #[test]
    fn refusals() {
        let api = |status| ClientError::Api {
            status,
            message: String::new(),
        };
        assert!(api(403).is_refusal());
        assert!(api(404).is_refusal());
        assert!(api(409).is_refusal());
        assert!(!api(401).is_refusal());
        assert!(!api(400).is_refusal());
    }
}
