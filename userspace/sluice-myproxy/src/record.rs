//! What a MySQL session records in the store: the same events as a
//! PostgreSQL session (`docs/audit-format.md`), with MySQL's protocols —
//! `query` (COM_QUERY), `execute` (COM_STMT_EXECUTE, with its decoded
//! parameters), `init_db`, `field_list`, `process_info`, `kill` — and one
//! outcome per result (a multi-statement query has several).
use sluice_mywire::response::{ErrPacket, OkPacket};
use sluice_pgproxy::{Decision, Settled};
use sluice_store::{
    event::{ApprovalEvent, Event, Outcome, Param, ResultSummary, StatementEvent},
    redact::mask_pans,
};

/// The statement event for a decision.
pub(crate) fn statement(
    protocol: &'static str,
    text: &str,
    params: Vec<Param>,
    decision: &Decision,
) -> Event {
    let (decision, rule, approval) = match decision {
        Decision::Allow => ("allow", None, None),
        Decision::Deny { rule } => ("deny", Some(rule.clone()), None),
        Decision::Hold(h) => ("approve", Some(h.rule.clone()), Some(h.id.clone())),
    };
    Event::Statement(StatementEvent {
        protocol: protocol.into(),
        text: mask_pans(text).into_owned(),
        params,
        decision: decision.into(),
        rule,
        approval,
    })
}

/// A statement decided by sluice itself (not the policy), e.g. a `KILL`
/// of the identity's own session.
pub(crate) fn builtin(protocol: &'static str, text: &str, allow: bool, rule: &str) -> Event {
    Event::Statement(StatementEvent {
        protocol: protocol.into(),
        text: mask_pans(text).into_owned(),
        params: Vec::new(),
        decision: if allow { "allow" } else { "deny" }.into(),
        rule: Some(rule.into()),
        approval: None,
    })
}

/// A prepared statement's parameter as recorded: text with cardholder
/// data masked, or only the length of a value that is not text.
pub(crate) fn param(value: Option<&str>, binary_len: Option<usize>) -> Param {
    match (value, binary_len) {
        (Some(s), _) => Param::Text(mask_pans(s).into_owned()),
        (None, Some(n)) => Param::Binary { binary_bytes: n },
        (None, None) => Param::Null,
    }
}

/// How a held statement was settled.
pub(crate) fn approval(
    statement: Option<u32>,
    id: &str,
    settled: &Settled,
    waited: std::time::Duration,
) -> Event {
    Event::Approval(ApprovalEvent {
        statement,
        id: id.into(),
        outcome: settled.outcome.into(),
        by: settled.by.clone(),
        reason: (!settled.reason.is_empty()).then(|| mask_pans(&settled.reason).into_owned()),
        waited_ms: waited.as_millis() as u64,
    })
}

/// What one result sent the client.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) masked: Vec<(String, u64)>,
}

impl Tally {
    fn summary(self) -> Option<ResultSummary> {
        (!self.columns.is_empty() || self.rows > 0 || !self.masked.is_empty()).then_some(
            ResultSummary {
                columns: self.columns,
                rows: self.rows,
                bytes: self.bytes,
                masked: self.masked,
            },
        )
    }
}

/// A result that ended with OK (or EOF: `ok` is then None).
pub(crate) fn ok(
    statement: Option<u32>,
    ok: Option<&OkPacket>,
    tally: Tally,
    duration_us: u64,
) -> Event {
    let rows = if tally.columns.is_empty() {
        ok.map(|o| o.affected_rows)
    } else {
        Some(tally.rows)
    };
    let tag = if tally.columns.is_empty() {
        ok.map(|o| format!("OK {} rows affected", o.affected_rows))
    } else {
        Some(format!("SELECT {}", tally.rows))
    };
    Event::Outcome(Outcome {
        statement,
        status: "ok".into(),
        tag,
        rows,
        sqlstate: None,
        message: None,
        duration_us,
        result: tally.summary(),
    })
}

/// A result that ended with ERR (as the client received it).
pub(crate) fn error(
    statement: Option<u32>,
    err: &ErrPacket,
    tally: Tally,
    duration_us: u64,
) -> Event {
    Event::Outcome(Outcome {
        statement,
        status: "error".into(),
        tag: None,
        rows: None,
        sqlstate: Some(String::from_utf8_lossy(&err.sql_state).into_owned()),
        message: Some(format!("{} ({})", mask_pans(&err.message), err.code)),
        duration_us,
        result: tally.summary(),
    })
}
