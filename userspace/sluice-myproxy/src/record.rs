//! What a MySQL session records in the store: the same events as a
//! PostgreSQL session (`docs/audit-format.md`), with MySQL's protocols —
//! `query` (COM_QUERY), `execute` (COM_STMT_EXECUTE, with its decoded
//! parameters), `init_db`, `field_list`, `process_info`, `kill` — and one
//! outcome per result (a multi-statement query has several).
use sluice_mywire::{
    command::ParamValue,
    response::{ErrPacket, OkPacket},
};
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
/// data masked, or only the length of a value that is not text — bytes
/// that are not printable UTF-8 (whose content cannot be checked for
/// cardholder data, as in a PostgreSQL session), or long data (`long`:
/// the bytes sent with COM_STMT_SEND_LONG_DATA).
pub(crate) fn param(p: &sluice_mywire::command::Param, long: Option<usize>) -> Param {
    if let ParamValue::Bytes(b) = &p.value
        && !std::str::from_utf8(b)
            .is_ok_and(|s| s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'))
    {
        return Param::Binary {
            binary_bytes: b.len(),
        };
    }
    match (p.display(), long) {
        (Some(s), _) => Param::Text(mask_pans(&s).into_owned()),
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

#[cfg(test)]
mod tests {
    use sluice_mywire::{command::Param as Bound, response::types};

    use super::*;

    fn bound(column_type: u8, value: ParamValue) -> Bound {
        Bound {
            column_type,
            unsigned: false,
            value,
        }
    }

    #[test]
    fn parameters_are_recorded_as_text_or_by_length() {
        let pan = b"4111111111111111".to_vec();
        for (p, long, want) in [
            (
                bound(types::STRING, ParamValue::Bytes(b"O'Reilly".to_vec())),
                None,
                Param::Text("'O\\'Reilly'".into()),
            ),
            // Text keeps its newlines and tabs; cardholder data is masked.
            (
                bound(types::STRING, ParamValue::Bytes(b"a\nb\tc".to_vec())),
                None,
                Param::Text("'a\\nb\tc'".into()),
            ),
            (
                bound(types::STRING, ParamValue::Bytes(pan.clone())),
                None,
                Param::Text("'411111******1111'".into()),
            ),
            // Bytes that are not printable text: by length only, never
            // as hex (which would carry a PAN past the masking).
            (
                bound(
                    types::STRING,
                    ParamValue::Bytes([&b"\xff\x00"[..], &pan].concat()),
                ),
                None,
                Param::Binary { binary_bytes: 18 },
            ),
            (
                bound(types::BLOB, ParamValue::Bytes(b"\x00\x01".to_vec())),
                None,
                Param::Binary { binary_bytes: 2 },
            ),
            // A decimal bound as a string reads as the number it is.
            (
                bound(
                    types::DECIMAL,
                    ParamValue::Bytes(b"-123456789.125".to_vec()),
                ),
                None,
                Param::Text("-123456789.125".into()),
            ),
            (
                bound(types::LONGLONG, ParamValue::Int(-5)),
                None,
                Param::Text("-5".into()),
            ),
            (
                bound(types::BLOB, ParamValue::Long),
                Some(300_000),
                Param::Binary {
                    binary_bytes: 300_000,
                },
            ),
            (bound(types::NULL, ParamValue::Null), None, Param::Null),
        ] {
            assert_eq!(param(&p, long), want, "{p:?}");
        }
    }
}
