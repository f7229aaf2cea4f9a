//! What the store records: one JSON object per event, with a `kind`.
//!
//! Writers use these types; readers (show, replay, export) read events as
//! generic JSON, so a store written by a newer sluice with more fields stays
//! readable. Fields are only ever added, never renamed or re-typed, within
//! format version 1.
use serde::{Deserialize, Serialize};

/// One recorded event.
// Built once and serialised at once; the size of the start variant costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A session began (always seq 0).
    SessionStart(SessionStart),
    /// A statement was decided (before it could reach the database).
    Statement(StatementEvent),
    /// The database's answer to an executed statement.
    Outcome(Outcome),
    /// The session ended (always the last event).
    SessionEnd(SessionEnd),
    /// A statement held for approval was settled: approved, let through
    /// by a grant, denied, expired, or refused.
    Approval(ApprovalEvent),
    /// An administrative action, recorded in the daemon's admin session:
    /// an admin API call, an approval decision, a grant.
    Admin(AdminEvent),
}

/// How a held statement was settled.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ApprovalEvent {
    /// The seq of the held statement's event.
    pub statement: Option<u32>,
    /// The approval request's id.
    pub id: String,
    /// "approved", "granted", "denied", "expired" or "refused".
    pub outcome: String,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by: Vec<String>,
    /// A denial's reason, or the grant that allowed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long the statement waited, ms.
    pub waited_ms: u64,
}

/// One administrative action.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdminEvent {
    /// Who (the verified principal; "sluice" for the daemon itself).
    pub principal: String,
    /// Their roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// What: "GET /api/sessions", "approval.approve", "grant.create", …
    pub action: String,
    /// On what (a request id, a grant id, a session id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// "ok", "denied" (not authorised), or the error.
    pub result: String,
    /// Details (a reason, the grant's terms, the client address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Who connected, where to, and how.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SessionStart {
    /// Wire protocol: "postgres".
    pub protocol: String,
    /// The workload identity the session is attributed to.
    pub identity: String,
    /// The identity's groups (`[[identities]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The facts the identity was derived from.
    pub facts: Facts,
    /// The address the client dialled (`ip:port`).
    pub original: String,
    /// The `[[targets]]` name.
    pub target: String,
    /// Database user from the startup message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Database name from the startup message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `application_name` from the startup message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The client leg was TLS.
    pub client_tls: bool,
    /// The database leg was TLS.
    pub upstream_tls: bool,
    /// "passthrough" or "inject".
    pub auth: String,
    /// The database role sluice logged in as (credential injection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_user: Option<String>,
}

/// Identity facts, as observed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    /// Client address (`ip:port`).
    pub client: String,
    /// Ingress interface (gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Source MAC address (gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Process id (jump host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Real uid (jump host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Real gid (jump host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Kernel command name (jump host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// Executable path (jump host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Cgroup v2 id (jump host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// Cgroup v2 path (jump host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Command line (jump host), cardholder data masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

/// A statement and its decision.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatementEvent {
    /// "simple", "parse", "bind" or "function_call".
    pub protocol: String,
    /// The SQL text, with cardholder data masked.
    pub text: String,
    /// Bound parameters, masked (extended protocol).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    /// "allow", "deny", or "approve" (held; see the approval event).
    pub decision: String,
    /// The rule that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The approval request that held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

/// One bound parameter as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Param {
    /// SQL NULL.
    Null,
    /// A value readable as text, cardholder data masked.
    Text(String),
    /// A binary value: only its length is kept (it cannot be checked for
    /// cardholder data, so its content is never recorded).
    Binary {
        /// Length in bytes.
        binary_bytes: usize,
    },
}

/// How an executed statement ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// The seq of the statement event it answers (None: an error with no
    /// statement execution pending, e.g. a failed Parse).
    pub statement: Option<u32>,
    /// "ok", "error", "empty", "suspended" (a row limit was reached) or
    /// "skipped" (an earlier error in the batch: never executed).
    pub status: String,
    /// The command tag ("SELECT 3", "UPDATE 1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Rows affected or returned, from the tag or counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// SQLSTATE of an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// Error message, cardholder data masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// From the statement leaving sluice to its completion, µs.
    pub duration_us: u64,
    /// What the client received, if rows were returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultSummary>,
}

/// What a result sent to the client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResultSummary {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows sent.
    pub rows: u64,
    /// Bytes of row data sent.
    pub bytes: u64,
    /// Masked columns and how many values were masked in each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<(String, u64)>,
}

/// How and why a session ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SessionEnd {
    /// Why: "client terminated", "client disconnected", "database closed
    /// the connection", an error, …
    pub reason: String,
    /// Statements allowed.
    pub statements: u64,
    /// Statements refused.
    pub denied: u64,
    /// Bytes client → database.
    pub bytes_up: u64,
    /// Bytes database → client.
    pub bytes_down: u64,
    /// Session length.
    pub duration_ms: u64,
}

impl Event {
    /// The event as the JSON bytes that get hashed and stored.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_and_read_back() {
        let e = Event::Statement(StatementEvent {
            protocol: "bind".into(),
            text: "select $1".into(),
            params: vec![
                Param::Null,
                Param::Text("x".into()),
                Param::Binary { binary_bytes: 8 },
            ],
            decision: "allow".into(),
            ..Default::default()
        });
        let json = String::from_utf8(e.to_json()).unwrap();
        assert!(
            json.starts_with(r#"{"kind":"statement","protocol":"bind""#),
            "{json}"
        );
        assert!(
            json.contains(r#""params":[null,"x",{"binary_bytes":8}]"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }
}
