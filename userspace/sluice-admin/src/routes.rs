//! Method and path → endpoint, the action name each is recorded under, and
//! the roles each allows. Pure: no I/O, table-tested.

use hyper::Method;
use sluice_oidc::Role;

/// An API endpoint (everything but `/healthz` and `/metrics`, which the
/// handler answers before any of this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET /api/sessions`
    Sessions,
    /// `GET /api/approvals`
    Approvals,
    /// `POST /api/approvals/{id}/approve`
    Approve(String),
    /// `POST /api/approvals/{id}/deny`
    Deny(String),
    /// `GET /api/grants`
    Grants,
    /// `POST /api/grants`
    CreateGrant,
    /// `DELETE /api/grants/{id}`
    Revoke(String),
    /// `POST /api/config/reload`
    Reload,
}

/// What a method and path lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Routed {
    /// An endpoint.
    Found(Endpoint),
    /// A known path with another method; the `Allow` header's value.
    WrongMethod(&'static str),
    /// Nothing here.
    NotFound,
}

const READERS: &[Role] = &[Role::Auditor, Role::Approver, Role::Admin];
const DECIDERS: &[Role] = &[Role::Approver, Role::Admin];
const ADMINS: &[Role] = &[Role::Admin];

/// Longest request or grant id accepted in a path (real ones are ~20 bytes).
const MAX_ID_LEN: usize = 64;

impl Endpoint {
    /// The roles that may call it (any one suffices).
    pub(crate) fn roles(&self) -> &'static [Role] {
        match self {
            Endpoint::Sessions | Endpoint::Approvals | Endpoint::Grants => READERS,
            Endpoint::Approve(_)
            | Endpoint::Deny(_)
            | Endpoint::CreateGrant
            | Endpoint::Revoke(_) => DECIDERS,
            Endpoint::Reload => ADMINS,
        }
    }

    /// The action recorded: the route for reads, a verb for changes.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Endpoint::Sessions => "GET /api/sessions",
            Endpoint::Approvals => "GET /api/approvals",
            Endpoint::Approve(_) => "approval.approve",
            Endpoint::Deny(_) => "approval.deny",
            Endpoint::Grants => "GET /api/grants",
            Endpoint::CreateGrant => "grant.create",
            Endpoint::Revoke(_) => "grant.revoke",
            Endpoint::Reload => "config.reload",
        }
    }

    /// The request or grant id in the path.
    pub(crate) fn subject(&self) -> Option<&str> {
        match self {
            Endpoint::Approve(id) | Endpoint::Deny(id) | Endpoint::Revoke(id) => Some(id),
            _ => None,
        }
    }

    /// Whether it needs the approvals broker.
    pub(crate) fn needs_broker(&self) -> bool {
        !matches!(self, Endpoint::Sessions | Endpoint::Reload)
    }
}

/// An id as the broker makes them (`apr-…`, `grt-…`): letters, digits,
/// `-`, `_`, `.`; anything else cannot name a request, and is not worth
/// recording verbatim.
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Finds the endpoint for `method` and `path` (without the query).
pub(crate) fn route(method: &Method, path: &str) -> Routed {
    let segments: Vec<&str> = match path.strip_prefix("/api/") {
        Some(rest) => rest.split('/').take(5).collect(),
        None => return Routed::NotFound,
    };
    let (get, post, delete) = (
        method == Method::GET,
        method == Method::POST,
        method == Method::DELETE,
    );
    let found = |ok: bool, e: Endpoint, allow: &'static str| {
        if ok {
            Routed::Found(e)
        } else {
            Routed::WrongMethod(allow)
        }
    };
    match segments.as_slice() {
        ["sessions"] => found(get, Endpoint::Sessions, "GET"),
        ["approvals"] => found(get, Endpoint::Approvals, "GET"),
        ["approvals", id, "approve"] if is_id(id) => {
            found(post, Endpoint::Approve((*id).to_owned()), "POST")
        }
        ["approvals", id, "deny"] if is_id(id) => {
            found(post, Endpoint::Deny((*id).to_owned()), "POST")
        }
        ["grants"] if post => Routed::Found(Endpoint::CreateGrant),
        ["grants"] => found(get, Endpoint::Grants, "GET, POST"),
        ["grants", id] if is_id(id) => found(delete, Endpoint::Revoke((*id).to_owned()), "DELETE"),
        ["config", "reload"] => found(post, Endpoint::Reload, "POST"),
        _ => Routed::NotFound,
    }
}

/// The action recorded for a call that matched no endpoint: the method and
/// the path, cut short and with anything unprintable escaped (the path is
/// the caller's text).
pub(crate) fn unknown_action(method: &Method, path: &str) -> String {
    const MAX: usize = 100;
    let mut out = format!("{method} ");
    for (i, c) in path.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table() {
        use Endpoint::*;
        let id = || "apr-1a2b3c-7".to_owned();
        let cases: &[(Method, &str, Routed)] = &[
            (Method::GET, "/api/sessions", Routed::Found(Sessions)),
            (Method::POST, "/api/sessions", Routed::WrongMethod("GET")),
            (Method::GET, "/api/approvals", Routed::Found(Approvals)),
            (
                Method::POST,
                "/api/approvals/apr-1a2b3c-7/approve",
                Routed::Found(Approve(id())),
            ),
            (
                Method::GET,
                "/api/approvals/apr-1a2b3c-7/approve",
                Routed::WrongMethod("POST"),
            ),
            (
                Method::POST,
                "/api/approvals/apr-1a2b3c-7/deny",
                Routed::Found(Deny(id())),
            ),
            (Method::POST, "/api/approvals/a%20b/deny", Routed::NotFound),
            (Method::POST, "/api/approvals//deny", Routed::NotFound),
            (
                Method::POST,
                "/api/approvals/x/frobnicate",
                Routed::NotFound,
            ),
            (Method::GET, "/api/grants", Routed::Found(Grants)),
            (Method::POST, "/api/grants", Routed::Found(CreateGrant)),
            (Method::PUT, "/api/grants", Routed::WrongMethod("GET, POST")),
            (
                Method::DELETE,
                "/api/grants/grt-1a2b3c-9",
                Routed::Found(Revoke("grt-1a2b3c-9".into())),
            ),
            (Method::POST, "/api/config/reload", Routed::Found(Reload)),
            (
                Method::GET,
                "/api/config/reload",
                Routed::WrongMethod("POST"),
            ),
            (Method::GET, "/api/sessions/", Routed::NotFound),
            (Method::GET, "/api", Routed::NotFound),
            (Method::GET, "/", Routed::NotFound),
            (Method::GET, "/api/approvals/a/b/c/d/e/f", Routed::NotFound),
        ];
        for (method, path, want) in cases {
            assert_eq!(&route(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn roles_per_endpoint() {
        use Role::*;
        let cases: &[(Endpoint, &[Role])] = &[
            (Endpoint::Sessions, &[Auditor, Approver, Admin]),
            (Endpoint::Approvals, &[Auditor, Approver, Admin]),
            (Endpoint::Grants, &[Auditor, Approver, Admin]),
            (Endpoint::Approve("a".into()), &[Approver, Admin]),
            (Endpoint::Deny("a".into()), &[Approver, Admin]),
            (Endpoint::CreateGrant, &[Approver, Admin]),
            (Endpoint::Revoke("g".into()), &[Approver, Admin]),
            (Endpoint::Reload, &[Admin]),
        ];
        for (e, want) in cases {
            assert_eq!(e.roles(), *want, "{e:?}");
        }
    }

    #[test]
    fn unknown_actions_are_printable_and_short() {
        assert_eq!(unknown_action(&Method::GET, "/x"), "GET /x");
        assert_eq!(
            unknown_action(&Method::GET, "/a\u{1b}[31m"),
            "GET /a\\u{1b}[31m"
        );
        let long = format!("/{}", "a".repeat(500));
        assert!(unknown_action(&Method::GET, &long).chars().count() < 110);
    }
}
