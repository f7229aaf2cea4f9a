//! What a verified token says about its holder: who they are, their groups,
//! and the sluice roles those groups grant. Pure: no I/O, no crypto.

use std::fmt;

use serde_json::Value;

use crate::config::RoleMap;

/// A sluice role, granted by group membership ([`RoleMap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Configuration and everything an approver and an auditor may do.
    Admin,
    /// Approves or denies held statements (never their own).
    Approver,
    /// Reads sessions and the audit record.
    Auditor,
}

impl Role {
    /// Every role, in the order [`Claims::roles`] lists them.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Approver, Role::Auditor];

    /// The role's name as configured and logged: `admin`, `approver`,
    /// `auditor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
        }
    }

    fn groups(self, map: &RoleMap) -> &[String] {
        match self {
            Role::Admin => &map.admin,
            Role::Approver => &map.approver,
            Role::Auditor => &map.auditor,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified identity a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: the provider's stable id for the user.
    pub subject: String,
    /// `iss`: the issuer, as configured.
    pub issuer: String,
    /// `aud`: every audience the token names.
    pub audience: Vec<String>,
    /// `email`, if the token has one.
    pub email: Option<String>,
    /// `preferred_username`, if the token has one.
    pub preferred_username: Option<String>,
    /// `name`, if the token has one (the untagged language variant).
    pub name: Option<String>,
    /// The groups claim, as a list whatever its shape in the token.
    pub groups: Vec<String>,
    /// The roles the groups grant, in [`Role::ALL`] order, without repeats.
    pub roles: Vec<Role>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Claims {
    /// The name sluice records and shows for this user: the email, else the
    /// preferred username, else the subject.
    pub fn principal(&self) -> String {
        fn given(s: &Option<String>) -> Option<&str> {
            s.as_deref().filter(|s| !s.is_empty())
        }
        given(&self.email)
            .or(given(&self.preferred_username))
            .unwrap_or(&self.subject)
            .to_owned()
    }

    /// Whether the groups grant `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The groups claim as a list. Providers send an array of strings (most), a
/// single string (one group, some SAML bridges), or nothing; anything that is
/// not a string inside an array is ignored rather than guessed at.
pub fn groups_from(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The roles `groups` grant under `map`, in [`Role::ALL`] order.
pub fn roles_for(groups: &[String], map: &RoleMap) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|role| role.groups(map).iter().any(|g| groups.contains(g)))
        .collect()
}

/// `Ok` when `required` is empty or `groups` holds one of its entries; else
/// the description [`TokenError::MissingGroup`](crate::TokenError) carries.
pub fn check_required(groups: &[String], required: &[String]) -> Result<(), String> {
    if required.is_empty() || required.iter().any(|r| groups.contains(r)) {
        return Ok(());
    }
    Err(match required {
        [one] => format!("`{one}`"),
        many => format!(
            "one of {}",
            many.iter()
                .map(|g| format!("`{g}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map() -> RoleMap {
        RoleMap {
            admin: vec!["sluice-admins".into()],
            approver: vec!["sluice-approvers".into(), "sluice-admins".into()],
            auditor: vec!["sluice-auditors".into()],
        }
    }

    #[test]
    fn groups_claim_shapes() {
        let cases: &[(Option<Value>, &[&str])] = &[
            (None, &[]),
            (Some(json!(null)), &[]),
            (Some(json!("ops")), &["ops"]),
            (Some(json!(["a", "b"])), &["a", "b"]),
            (Some(json!(["a", 7, null, {"x": 1}, "b"])), &["a", "b"]),
            (Some(json!([])), &[]),
            (Some(json!(42)), &[]),
            (Some(json!({"a": true})), &[]),
        ];
        for (value, want) in cases {
            assert_eq!(groups_from(value.as_ref()), *want, "{value:?}");
        }
    }

    #[test]
    fn groups_to_roles() {
        use Role::*;
        let cases: &[(&[&str], &[Role])] = &[
            (&[], &[]),
            (&["staff"], &[]),
            (&["sluice-approvers"], &[Approver]),
            (&["sluice-admins"], &[Admin, Approver]),
            (
                &["sluice-auditors", "sluice-approvers"],
                &[Approver, Auditor],
            ),
            (
                &["sluice-auditors", "sluice-admins", "sluice-approvers"],
                &[Admin, Approver, Auditor],
            ),
            // Names match exactly: no case folding, no prefixes.
            (&["Sluice-Admins", "sluice-admins-old"], &[]),
        ];
        for (groups, want) in cases {
            let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            assert_eq!(roles_for(&groups, &map()), *want, "{groups:?}");
        }
        assert!(roles_for(&["sluice-admins".into()], &RoleMap::default()).is_empty());
    }

    #[test]
    fn required_groups() {
        let g = |s: &[&str]| s.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>();
        assert!(check_required(&g(&[]), &[]).is_ok());
        assert!(check_required(&g(&["a"]), &g(&["a"])).is_ok());
        assert!(check_required(&g(&["x", "b"]), &g(&["a", "b"])).is_ok());
        assert_eq!(check_required(&g(&["x"]), &g(&["a"])).unwrap_err(), "`a`");
        assert_eq!(
            check_required(&g(&[]), &g(&["a", "b"])).unwrap_err(),
            "one of `a`, `b`"
        );
    }

    #[test]
    fn principal_prefers_email_then_username_then_subject() {
        let mut c = Claims {
            subject: "00u1".into(),
            issuer: "https://idp".into(),
            audience: vec!["sluice-cli".into()],
            email: Some("alice@example.test".into()),
            preferred_username: Some("alice".into()),
            name: None,
            groups: vec![],
            roles: vec![Role::Auditor],
            expires_at: 0,
        };
        assert_eq!(c.principal(), "alice@example.test");
        c.email = None;
        assert_eq!(c.principal(), "alice");
        c.preferred_username = None;
        assert_eq!(c.principal(), "00u1");
        assert!(c.has(Role::Auditor));
        assert!(!c.has(Role::Admin));
        assert_eq!(Role::Approver.to_string(), "approver");
    }
}
