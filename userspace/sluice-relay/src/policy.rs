//! The rule and masking engine (`sluice-policy`) plugged into the
//! PostgreSQL session hooks.
//!
//! [`RulePolicy`] gives each session the rules that apply to its identity
//! and target. Its decisions become the engine's: allow, or refuse with the
//! rule and reason in the client's error (a statement that needs approval
//! is refused until approvals exist, saying so). Each allowed statement's
//! masking plan — output labels and formats — is added to the session's
//! [`Masking`] rewriter before the statement leaves, so its rows are masked
//! when they come back.
//!
//! The rewriter masks every value of a labelled column, and runs the
//! content detectors on every other value leaving the database: rows (text
//! and binary formats), COPY data, errors, notices and notifications. A
//! label stays masked for the rest of the session once any statement has
//! asked for it (the engine cannot tell which statement a row belongs to;
//! masking too much is the safe direction). A row whose columns the engine
//! cannot know, in a session that has masked anything, is redacted whole.
use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use sluice_pgproxy::{
    Column, CopyFormat, Decision, Fields, Format, Notification, Policy, Rewrite, RewriteOrDrop,
    Rewriter, SessionInfo, SessionPolicy, Statement, Value,
};
use sluice_policy::{
    detect::{Findings, Scanner},
    engine::{Action, Engine, SessionRules},
    mask::{MaskFormat, Masker, text_like},
};

/// The configured rules and masking, for every session.
pub struct RulePolicy {
    engine: Arc<Engine>,
    scanner: Scanner,
    masker: Masker,
}

impl RulePolicy {
    /// Wrap a compiled engine; `token_key` for token masking.
    pub fn new(engine: Engine, token_key: Option<&[u8]>) -> RulePolicy {
        let scanner = Scanner::new(&engine.masking().detectors);
        RulePolicy {
            engine: Arc::new(engine),
            scanner,
            masker: Masker::new(token_key),
        }
    }
}

impl Policy for RulePolicy {
    fn session(&self, info: &SessionInfo<'_>) -> Box<dyn SessionPolicy> {
        let rules = self.engine.session(info.identity, info.target);
        Box::new(RuleSession {
            unmasked: rules.unmasked(),
            rules,
            labels: Arc::default(),
            scanner: self.scanner.clone(),
            masker: self.masker.clone(),
        })
    }
}

/// Labels to mask, shared by a session's decisions and its rewriter.
type Labels = Arc<Mutex<BTreeMap<String, MaskFormat>>>;

struct RuleSession {
    rules: SessionRules,
    unmasked: bool,
    labels: Labels,
    scanner: Scanner,
    masker: Masker,
}

impl SessionPolicy for RuleSession {
    fn decide(&mut self, statement: &Statement<'_>) -> Decision {
        if statement.protocol == "function-call" {
            // The fast path names a function by OID with raw arguments:
            // nothing to analyse, so nothing to allow.
            return Decision::Deny {
                rule: "policy.function_call: fast-path function calls cannot be analysed; call the function in a statement".into(),
            };
        }
        let v = self.rules.decide(statement.text);
        match v.action {
            Action::Allow => {
                if !v.masks.is_empty() {
                    let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
                    for (label, format) in v.masks {
                        let f = labels.entry(label).or_insert(format);
                        *f = f.strongest(format);
                    }
                }
                Decision::Allow
            }
            Action::Deny => Decision::Deny {
                rule: format!("{}: {}", v.rule, v.reason),
            },
            Action::Approve => Decision::Deny {
                rule: format!(
                    "{}: {} — this statement needs approval, and approvals are not enabled on this proxy",
                    v.rule, v.reason
                ),
            },
        }
    }

    fn rewriter(&mut self) -> Option<Box<dyn Rewriter>> {
        if self.unmasked {
            return None;
        }
        Some(Box::new(Masking {
            labels: Arc::clone(&self.labels),
            scanner: self.scanner.clone(),
            masker: self.masker.clone(),
            found: Findings::default(),
            counts: BTreeMap::new(),
        }))
    }
}

/// Masks one session's results.
pub struct Masking {
    labels: Labels,
    scanner: Scanner,
    masker: Masker,
    /// What the detectors found.
    found: Findings,
    /// Values masked since the end of the last result, by column name
    /// (`error`, `notice`, `notification`, `copy` for messages).
    counts: BTreeMap<String, u64>,
}

/// PostgreSQL type OIDs the binary-format checks decode.
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;
const FLOAT8: u32 = 701;
const BYTEA: u32 = 17;

impl Masking {
    /// One value: masked by its label, else scanned.
    fn value<'v>(
        &mut self,
        column: Option<&Column>,
        labels: &BTreeMap<String, MaskFormat>,
        v: &'v [u8],
    ) -> Option<Value<'v>> {
        if let Some(c) = column
            && let Some(format) = labels.get(&c.name)
        {
            self.count(&c.name);
            return Some(
                self.masker
                    .apply(*format, v, text_like(c.type_oid))
                    .map(Cow::Owned),
            );
        }
        match column {
            Some(c)
                if c.format == Format::Binary && !text_like(c.type_oid) && c.type_oid != BYTEA =>
            {
                // Numbers in binary: decode and check for a PAN.
                let digits = match c.type_oid {
                    INT8 if v.len() == 8 => {
                        Some(i64::from_be_bytes(v.try_into().unwrap_or_default()).to_string())
                    }
                    FLOAT8 if v.len() == 8 => {
                        let f = f64::from_be_bytes(v.try_into().unwrap_or_default());
                        (f.fract() == 0.0 && f.abs() < 1e20).then(|| format!("{f:.0}"))
                    }
                    NUMERIC => numeric_digits(v),
                    _ => None,
                };
                match digits {
                    Some(d) if Scanner::is_pan_number(&d) => {
                        self.count(&c.name);
                        Some(None)
                    }
                    _ => None,
                }
            }
            _ => {
                let name = column.map(|c| c.name.as_str());
                let (masked, found) = self.scanner.scan(v, name)?;
                self.found.add(&found);
                self.count(name.unwrap_or("?"));
                Some(Some(Cow::Owned(masked)))
            }
        }
    }

    fn count(&mut self, what: &str) {
        match self.counts.get_mut(what) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(what.to_string(), 1);
            }
        }
    }

    fn fields(&mut self, kind: &str, fields: &[(u8, String)]) -> Option<Fields> {
        let mut out: Option<Fields> = None;
        for (i, (code, text)) in fields.iter().enumerate() {
            let (masked, found) = self.scanner.scan_str(text, None);
            if let Cow::Owned(m) = masked {
                self.found.add(&found);
                self.count(kind);
                out.get_or_insert_with(|| fields.to_vec())[i] = (*code, m);
            }
        }
        out
    }
}

/// The decimal digits of a binary `numeric` (integral part only; `None` for
/// NaN, infinities or fractions, which are not PANs).
fn numeric_digits(v: &[u8]) -> Option<String> {
    if v.len() < 8 {
        return None;
    }
    let n = u16::from_be_bytes([v[0], v[1]]) as usize;
    let weight = i16::from_be_bytes([v[2], v[3]]);
    let sign = u16::from_be_bytes([v[4], v[5]]);
    let dscale = u16::from_be_bytes([v[6], v[7]]);
    if sign == 0xC000 || sign >= 0xD000 || v.len() < 8 + 2 * n || !(0..=10).contains(&weight) {
        return None;
    }
    let _ = dscale;
    let mut s = String::new();
    for i in 0..=(weight as usize) {
        let d = if i < n {
            u16::from_be_bytes([v[8 + 2 * i], v[9 + 2 * i]])
        } else {
            0
        };
        if s.is_empty() {
            s.push_str(&d.to_string());
        } else {
            s.push_str(&format!("{d:04}"));
        }
    }
    Some(s)
}

impl Rewriter for Masking {
    fn data_row<'v>(
        &mut self,
        columns: Option<&[Column]>,
        values: &[Option<&'v [u8]>],
    ) -> Rewrite<Vec<Value<'v>>> {
        let shared = Arc::clone(&self.labels);
        let labels = shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Option<Vec<Value<'v>>> = None;
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            let column = columns.and_then(|c| c.get(i));
            let replaced = if columns.is_none() && !labels.is_empty() {
                // Cannot tell which column this is, and this session has
                // sensitive columns: fail closed.
                Some(Some(Cow::Borrowed(&b"****"[..])))
            } else {
                self.value(column, &labels, v)
            };
            if let Some(r) = replaced {
                if columns.is_none() {
                    self.count("?");
                }
                out.get_or_insert_with(|| values.iter().map(|v| v.map(Cow::Borrowed)).collect())
                    [i] = r;
            }
        }
        match out {
            Some(o) => Rewrite::Replace(o),
            None => Rewrite::Keep,
        }
    }

    fn copy_data(&mut self, _format: Option<&CopyFormat>, data: &[u8]) -> Rewrite<Vec<u8>> {
        match self.scanner.scan(data, None) {
            Some((masked, found)) => {
                self.found.add(&found);
                self.count("copy");
                Rewrite::Replace(masked)
            }
            None => Rewrite::Keep,
        }
    }

    fn notice(&mut self, fields: &[(u8, String)]) -> RewriteOrDrop<Fields> {
        match self.fields("notice", fields) {
            Some(f) => RewriteOrDrop::Replace(f),
            None => RewriteOrDrop::Keep,
        }
    }

    fn notification(&mut self, n: &Notification) -> RewriteOrDrop<Notification> {
        let (channel, a) = self.scanner.scan_str(&n.channel, None);
        let (payload, b) = self.scanner.scan_str(&n.payload, None);
        if a.is_empty() && b.is_empty() {
            return RewriteOrDrop::Keep;
        }
        self.found.add(&a);
        self.found.add(&b);
        self.count("notification");
        RewriteOrDrop::Replace(Notification {
            pid: n.pid,
            channel: channel.into_owned(),
            payload: payload.into_owned(),
        })
    }

    fn take_masked(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.counts).into_iter().collect()
    }

    fn error(&mut self, fields: &[(u8, String)]) -> Rewrite<Fields> {
        match self.fields("error", fields) {
            Some(f) => Rewrite::Replace(f),
            None => Rewrite::Keep,
        }
    }
}
