//! The API's JSON bodies, shared by the server (`handler`) and the
//! [`client`](crate::client), so the two cannot drift apart.
//!
//! Requests and grants are [`sluice_approvals::Request`] and
//! [`sluice_approvals::Grant`] as they are: approvers see exactly what the
//! broker holds (the full statement, cardholder data already masked; the
//! identity and its groups; the target, user and database; the rule and its
//! reason; who approved so far; when it expires).

use serde::{Deserialize, Serialize};
use sluice_approvals::{Grant, Request};

/// Every error: `{"error": "..."}` with a 4xx or 5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and, where it helps, what to do.
    pub error: String,
}

/// `GET /api/approvals`: pending requests, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalList {
    /// The requests.
    pub approvals: Vec<Request>,
}

/// Where a request stands after `POST /api/approvals/{id}/approve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApproveStatus {
    /// Enough approvers said yes: the statement runs now.
    Approved,
    /// This approval counted; more approvers are needed.
    WaitingForMore,
}

/// `POST /api/approvals/{id}/approve` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproveReply {
    /// Approved, or waiting for more approvers.
    pub status: ApproveStatus,
    /// The request.
    pub id: String,
    /// Everybody who has approved it, this caller included.
    pub approved_by: Vec<String>,
    /// Approvals so far.
    pub approvals: u32,
    /// Approvals needed in all.
    pub required: u32,
}

/// `POST /api/approvals/{id}/deny` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyBody {
    /// Why, for the record and the client's error message. Required.
    pub reason: String,
}

/// `POST /api/approvals/{id}/deny` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyReply {
    /// Always `denied`.
    pub status: String,
    /// The request.
    pub id: String,
    /// Who denied it.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// `GET /api/grants`: grants in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantList {
    /// The grants.
    pub grants: Vec<Grant>,
}

/// `POST /api/grants` body: "`identity` may run `classes` on `target` for
/// `minutes` (or `seconds`)". Give exactly one of `minutes` and `seconds`.
/// The answer is the [`Grant`] made (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// The workload identity, exactly.
    pub identity: String,
    /// The target's name; absent or `*`: any target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Statement classes (`ddl`, `write`, …; `*`: any).
    pub classes: Vec<String>,
    /// How long, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u64>,
    /// How long, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// Why, for the record.
    pub reason: String,
}

/// `DELETE /api/grants/{id}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeReply {
    /// Always `revoked`.
    pub status: String,
    /// The grant as it was.
    pub grant: Grant,
}

/// `POST /api/config/reload` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    /// Always `reloaded`.
    pub status: String,
    /// What the daemon says changed.
    pub detail: String,
}
