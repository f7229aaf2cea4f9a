//! Exports: JSONL that verifies on its own, and CSV for spreadsheets.
//!
//! JSONL, one object per line:
//!
//! 1. `{"type":"header","format":"sluice-audit-export","version":1,"public_key":"ed25519:…","scope":"all"|[ids…],…}`
//! 2. every checkpoint: `{"type":"checkpoint","n":…,"signature":"hex","body":{…}}`
//! 3. per session, its summary then its events:
//!    `{"type":"session","summary":{…}}`,
//!    `{"type":"event","session":…,"seq":…,"global":…,"time_us":…,"hash":"hex","event":{…}}`
//! 4. `{"type":"end","sessions":…,"events":…}`: a cut-short file lacks it.
//!
//! `body` and `event` are the stored JSON bytes, embedded verbatim, so
//! the verifier hashes exactly what the store hashed.
//!
//! Writing an export needs the `rocksdb` feature (it reads a store);
//! [`verify_jsonl`], which reads an exported file, does not.
#[cfg(feature = "rocksdb")]
use std::io::Write;
use std::{collections::HashSet, io::BufRead};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    PublicKey, SessionSummary,
    codec::unhex,
    read::{RecordedCheckpoint, RecordedEvent},
    verify::{Report, Scope, Verifier},
};
#[cfg(feature = "rocksdb")]
use crate::{
    StoreError,
    codec::{self, hex},
    read::{Filter, Reader},
    time::rfc3339,
};

/// The `format` of an export header.
pub const FORMAT_NAME: &str = "sluice-audit-export";

/// Export progress, for a progress line.
pub trait Progress {
    /// Called after each session.
    fn session_done(&mut self, sessions: u64, total: u64, events: u64);
}

impl Progress for () {
    fn session_done(&mut self, _: u64, _: u64, _: u64) {}
}

#[cfg(feature = "rocksdb")]
fn io(e: std::io::Error) -> StoreError {
    StoreError::Write(format!("writing the export: {e}"))
}

/// Counts written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Sessions.
    pub sessions: u64,
    /// Events.
    pub events: u64,
}

#[cfg(feature = "rocksdb")]
/// Write the sessions passing `filter` as verifiable JSONL.
pub fn jsonl(
    reader: &Reader,
    filter: &Filter,
    out: &mut dyn Write,
    progress: &mut dyn Progress,
) -> Result<Written, StoreError> {
    let sessions = reader.sessions(filter)?;
    let key = reader
        .public_key()?
        .map(|k| k.to_text())
        .unwrap_or_default();
    let scope = if filter.is_everything() {
        serde_json::json!("all")
    } else {
        serde_json::json!(sessions.iter().map(|s| s.session).collect::<Vec<_>>())
    };
    let header = serde_json::json!({
        "type": "header",
        "format": FORMAT_NAME,
        "version": 1,
        "public_key": key,
        "store": reader.path().display().to_string(),
        "exported": rfc3339(codec::now_us()),
        "scope": scope,
    });
    writeln!(out, "{header}").map_err(io)?;
    for c in reader.checkpoints() {
        let c = c?;
        let body = std::str::from_utf8(&c.body)
            .map_err(|_| StoreError::Write(format!("checkpoint {} is not UTF-8", c.n)))?;
        writeln!(
            out,
            r#"{{"type":"checkpoint","n":{},"signature":"{}","body":{}}}"#,
            c.n,
            hex(&c.signature),
            body
        )
        .map_err(io)?;
    }
    let written = walk(reader, &sessions, progress, |item| match item {
        Item::Session(s) => writeln!(
            out,
            r#"{{"type":"session","summary":{}}}"#,
            serde_json::to_string(s).unwrap_or_default()
        )
        .map_err(io),
        Item::Event(_, e) => write_event(out, e),
    })?;
    writeln!(
        out,
        r#"{{"type":"end","sessions":{},"events":{}}}"#,
        written.sessions, written.events
    )
    .map_err(io)?;
    out.flush().map_err(io)?;
    Ok(written)
}

#[cfg(feature = "rocksdb")]
fn write_event(out: &mut dyn Write, e: &RecordedEvent) -> Result<(), StoreError> {
    // Stored bodies are JSON written by serde_json, hence UTF-8; a body
    // that is not (a damaged store) is exported as a string so the
    // verifier still sees, and flags, it.
    let body = match std::str::from_utf8(&e.body) {
        Ok(b) if serde_json::from_str::<&RawValue>(b).is_ok() => b.to_owned(),
        _ => serde_json::to_string(&String::from_utf8_lossy(&e.body)).unwrap_or_default(),
    };
    writeln!(
        out,
        r#"{{"type":"event","session":{},"seq":{},"global":{},"time_us":{},"hash":"{}","event":{}}}"#,
        e.session,
        e.seq,
        e.global,
        e.time_us,
        hex(&e.hash),
        body
    )
    .map_err(io)
}

#[cfg(feature = "rocksdb")]
/// CSV: one row per event, for reading, not verifying.
pub fn csv(
    reader: &Reader,
    filter: &Filter,
    out: &mut dyn Write,
    progress: &mut dyn Progress,
) -> Result<Written, StoreError> {
    let sessions = reader.sessions(filter)?;
    writeln!(
        out,
        "session,seq,time,identity,target,kind,protocol,text,decision,rule,status,tag,rows,sqlstate,duration_us,reason"
    )
    .map_err(io)?;
    let written = walk(reader, &sessions, progress, |item| {
        let Item::Event(s, e) = item else {
            return Ok(());
        };
        {
            let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap_or_default();
            let f = |k: &str| match v.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            let row = [
                s.session.to_string(),
                e.seq.to_string(),
                rfc3339(e.time_us),
                s.identity.clone(),
                s.target.clone(),
                f("kind"),
                f("protocol"),
                f("text"),
                f("decision"),
                f("rule"),
                f("status"),
                f("tag"),
                f("rows"),
                f("sqlstate"),
                f("duration_us"),
                f("reason"),
            ];
            let line: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
            writeln!(out, "{}", line.join(",")).map_err(io)
        }
    })?;
    out.flush().map_err(io)?;
    Ok(written)
}

#[cfg(feature = "rocksdb")]
/// What [`walk`] hands its callback: a session, then each of its events.
enum Item<'a> {
    Session(&'a SessionSummary),
    Event(&'a SessionSummary, &'a RecordedEvent),
}

#[cfg(feature = "rocksdb")]
/// Every session and its events in order, counted, with progress.
fn walk(
    reader: &Reader,
    sessions: &[SessionSummary],
    progress: &mut dyn Progress,
    mut each: impl FnMut(Item<'_>) -> Result<(), StoreError>,
) -> Result<Written, StoreError> {
    let mut written = Written::default();
    let total = sessions.len() as u64;
    for s in sessions {
        each(Item::Session(s))?;
        for e in reader.events(s.session) {
            each(Item::Event(s, &e?))?;
            written.events += 1;
        }
        written.sessions += 1;
        progress.session_done(written.sessions, total, written.events);
    }
    Ok(written)
}

#[cfg(feature = "rocksdb")]
fn csv_field(s: &str) -> String {
    // A leading quote keeps spreadsheets from running client-chosen text
    // (statements, error messages) as a formula.
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// What an export file held, besides the verification report.
#[derive(Debug, Clone, Default)]
pub struct ExportInfo {
    /// The public key in its header.
    pub public_key: Option<PublicKey>,
    /// Sessions in it.
    pub sessions: Vec<SessionSummary>,
}

/// One export line; which fields it has depends on its `type` (missing
/// ones are None).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    format: Option<&'a str>,
    public_key: Option<String>,
    #[serde(borrow)]
    scope: Option<&'a RawValue>,
    n: Option<u64>,
    signature: Option<&'a str>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    summary: Option<SessionSummary>,
    session: Option<u64>,
    seq: Option<u32>,
    global: Option<u64>,
    time_us: Option<u64>,
    hash: Option<&'a str>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    sessions: Option<u64>,
    events: Option<u64>,
}

/// Verify a JSONL export. `key` is the key the auditor trusts; None uses
/// the export's own header key (and the caller should say so).
pub fn verify_jsonl(
    input: &mut dyn BufRead,
    key: Option<PublicKey>,
) -> Result<(Report, ExportInfo), String> {
    let mut info = ExportInfo::default();
    let mut verifier: Option<Verifier> = None;
    let mut scope = Scope::Everything;
    let mut ended: Option<(u64, u64)> = None;
    let mut events = 0u64;
    let mut line = String::new();
    let mut number = 0u64;
    let mut extra = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_line(&mut line)
            .map_err(|e| format!("reading the export: {e}"))?;
        if n == 0 {
            break;
        }
        number += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(text)
            .map_err(|e| format!("line {number}: not an export line: {e}"))?;
        if ended.is_some() {
            extra.push(format!(
                "line {number}: content after the end line (appended)"
            ));
            continue;
        }
        if number == 1 {
            if l.kind != "header" || l.format != Some(FORMAT_NAME) {
                return Err(format!(
                    "line 1: not a sluice audit export (expected a header with format {FORMAT_NAME:?})"
                ));
            }
            info.public_key = l.public_key.as_deref().and_then(PublicKey::parse);
            let trusted = key
                .or(info.public_key)
                .ok_or("the export carries no public key and none was given (--key)".to_string())?;
            verifier = Some(Verifier::new(trusted));
            if let Some(raw) = l.scope
                && let Ok(ids) = serde_json::from_str::<Vec<u64>>(raw.get())
            {
                scope = Scope::Sessions(ids.into_iter().collect::<HashSet<_>>());
            }
            continue;
        }
        let v = verifier.as_mut().ok_or("no header line")?;
        let bad = |what: &str| format!("line {number}: {what} line is missing fields");
        match l.kind {
            "checkpoint" => {
                let (Some(n), Some(sig), Some(body)) = (l.n, l.signature, l.body) else {
                    return Err(bad("a checkpoint"));
                };
                let signature = unhex::<64>(sig).ok_or_else(|| {
                    format!("line {number}: checkpoint signature is not 64 bytes of hex")
                })?;
                v.checkpoint(&RecordedCheckpoint {
                    n,
                    signature,
                    body: body.get().as_bytes().to_vec(),
                });
            }
            "session" => {
                if let Some(s) = l.summary {
                    info.sessions.push(s);
                }
            }
            "event" => {
                let (
                    Some(session),
                    Some(seq),
                    Some(global),
                    Some(time_us),
                    Some(hash),
                    Some(event),
                ) = (l.session, l.seq, l.global, l.time_us, l.hash, l.event)
                else {
                    return Err(bad("an event"));
                };
                let hash = unhex::<32>(hash)
                    .ok_or_else(|| format!("line {number}: event hash is not 32 bytes of hex"))?;
                events += 1;
                v.event(&RecordedEvent {
                    session,
                    seq,
                    global,
                    time_us,
                    hash,
                    body: event.get().as_bytes().to_vec(),
                });
            }
            "end" => ended = Some((l.sessions.unwrap_or(0), l.events.unwrap_or(0))),
            other => return Err(format!("line {number}: unknown line type {other:?}")),
        }
    }
    let v = verifier.ok_or("the export is empty")?;
    let mut report = v.finish(&scope);
    let mut add = |what: String| {
        report.problems.insert(
            0,
            crate::verify::Problem {
                session: None,
                seq: None,
                what,
            },
        )
    };
    for e in extra.into_iter().rev() {
        add(e);
    }
    match ended {
        None => add("the export has no end line: it was cut short".into()),
        Some((_, n)) if n != events => add(format!(
            "the end line counts {n} events, the export holds {events}"
        )),
        Some(_) => {}
    }
    Ok((report, info))
}

#[cfg(feature = "rocksdb")]
/// Verify a store through a reader.
pub fn verify_store(reader: &Reader, key: PublicKey) -> Result<Report, StoreError> {
    let mut v = Verifier::new(key);
    for c in reader.checkpoints() {
        v.checkpoint(&c?);
    }
    for e in reader.all_events() {
        v.event(&e?);
    }
    Ok(v.finish(&Scope::Everything))
}
