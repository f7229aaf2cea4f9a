//! The rule and masking engine (`sluice-policy`) plugged into the
//! PostgreSQL session hooks.
//!
//! [`RulePolicy`] gives each session the rules that apply to its identity
//! and target. Its decisions become the engine's: allow, refuse with the
//! rule and reason in the client's error, or — for a statement that needs
//! approval — hold it: the request goes to the approvals [`Broker`] and the
//! session waits for its verdict (a grant in force lets it through at
//! once). Without `[approvals]` such statements are refused, saying so. Each allowed statement's
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
//! cannot know, in a session that has masked anything or whose database
//! holds sensitive columns, is redacted whole.
//!
//! A reload ([`RulePolicy::adopt`]) reaches sessions in progress: each
//! takes the new rules at its next statement, and hands the new masking
//! to its rewriter for the results that follow. A session that started
//! with no rewriter (its identity saw everything, with no row limit)
//! cannot take on masking or a row limit mid-session: from then on its
//! statements are refused, saying to reconnect (fail closed).
use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sluice_approvals::{Broker, NewRequest, Verdict};
use sluice_pgproxy::{
    Column, ColumnOrigin, CopyFormat, Decision, Fields, Format, Notification, Policy, Rewrite,
    RewriteOrDrop, Rewriter, SessionInfo, SessionPolicy, Statement, Value,
};
use sluice_pgproxy::{Hold, Settled};
use sluice_policy::{
    Dialect,
    detect::Scanner,
    engine::{Action, Engine, SessionRules},
    mask::{MaskFormat, Masker, text_like},
};

/// Sensitive columns by (table OID, attnum), as one database's catalog
/// says.
type Oids = Arc<HashMap<(u32, i16), MaskFormat>>;

/// Catalog lookups by (target, database), with when they were made.
type Catalog = Arc<Mutex<HashMap<(String, String), (Instant, Oids)>>>;

/// How long a database's catalog lookup is reused by later sessions.
const CATALOG_TTL: Duration = Duration::from_secs(60);

/// The rules and masking in force: what a reload replaces.
struct Live {
    /// Counts reloads; a session compares it with the one it runs under.
    generation: u64,
    engine: Arc<Engine>,
    scanner: Scanner,
    masker: Masker,
}

/// The rules in force, shared by a [`RulePolicy`] and every session it
/// started.
type Shared = Arc<RwLock<Arc<Live>>>;

fn current(shared: &Shared) -> Arc<Live> {
    Arc::clone(&shared.read().unwrap_or_else(|e| e.into_inner()))
}

/// The configured rules and masking, for every session.
pub struct RulePolicy {
    live: Shared,
    catalog: Catalog,
    approvals: Option<Arc<Broker>>,
}

impl RulePolicy {
    /// Wrap a compiled engine; `token_key` for token masking; `approvals`
    /// holds statements that need approval (None: they are refused).
    pub fn new(
        engine: Engine,
        token_key: Option<&[u8]>,
        approvals: Option<Arc<Broker>>,
    ) -> RulePolicy {
        let scanner = Scanner::new(&engine.masking().detectors);
        RulePolicy {
            live: Arc::new(RwLock::new(Arc::new(Live {
                generation: 0,
                engine: Arc::new(engine),
                scanner,
                masker: Masker::new(token_key),
            }))),
            catalog: Arc::default(),
            approvals,
        }
    }

    /// Take `newer`'s rules and masking (a reloaded configuration's): new
    /// sessions start under them, and sessions in progress take them at
    /// their next statement.
    pub fn adopt(&self, newer: &RulePolicy) {
        let next = current(&newer.live);
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        *live = Arc::new(Live {
            generation: live.generation + 1,
            engine: Arc::clone(&next.engine),
            scanner: next.scanner.clone(),
            masker: next.masker.clone(),
        });
        // Which columns are sensitive may have changed.
        self.catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Policy for RulePolicy {
    fn session(&self, info: &SessionInfo<'_>) -> Box<dyn SessionPolicy> {
        let live = current(&self.live);
        let rules =
            live.engine
                .session_as(info.identity, info.groups, info.target, Some(info.user));
        let key = (info.target.to_string(), info.database.to_string());
        let cached = self
            .catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < CATALOG_TTL)
            .map(|(_, oids)| Arc::clone(oids));
        let mysql = info.protocol == "mysql";
        Box::new(RuleSession {
            mysql,
            unmasked: rules.unmasked(),
            rules,
            labels: Arc::default(),
            shared: Arc::clone(&self.live),
            live,
            handoff: None,
            refused: None,
            catalog: Arc::clone(&self.catalog),
            key,
            // MySQL's column definitions name each column's origin: no
            // catalog lookup is needed.
            oids: if mysql { Some(Oids::default()) } else { cached },
            approvals: self.approvals.clone(),
            reads_only: false,
            who: NewRequest {
                identity: info.identity.into(),
                groups: info.groups.to_vec(),
                target: info.target.into(),
                user: info.user.into(),
                database: info.database.into(),
                ..Default::default()
            },
        })
    }
}

/// Labels to mask, shared by a session's decisions and its rewriter.
type Labels = Arc<Mutex<BTreeMap<String, MaskFormat>>>;

struct RuleSession {
    /// Statements are MySQL's dialect (else PostgreSQL's).
    mysql: bool,
    rules: SessionRules,
    unmasked: bool,
    labels: Labels,
    /// The rules in force for the whole proxy, and those this session runs
    /// under.
    shared: Shared,
    live: Arc<Live>,
    /// How a reload reaches this session's rewriter (None: it has none).
    handoff: Option<Arc<Handoff>>,
    /// Set when a reload asked for what this session cannot take on: every
    /// statement is refused with it.
    refused: Option<String>,
    catalog: Catalog,
    /// (target, database).
    key: (String, String),
    /// This database's sensitive columns by OID, once known.
    oids: Option<Oids>,
    approvals: Option<Arc<Broker>>,
    /// Who the session is, for approval requests.
    who: NewRequest,
    /// The statement last allowed changes nothing
    /// ([`sluice_policy::engine::Verdict::reads_only`]).
    reads_only: bool,
}

/// A reload's masking, from a session's decisions to its rewriter.
#[derive(Default)]
struct Handoff {
    ready: AtomicBool,
    next: Mutex<Option<Reloaded>>,
}

struct Reloaded {
    engine: Arc<Engine>,
    scanner: Scanner,
    masker: Masker,
    unmasked: bool,
    max_rows: Option<u64>,
}

impl RuleSession {
    /// Take the rules of a reload since the last statement, if any. A
    /// refusal when this session cannot apply them.
    fn refresh(&mut self) -> Option<String> {
        if let Some(why) = &self.refused {
            return Some(why.clone());
        }
        let latest = current(&self.shared);
        if latest.generation == self.live.generation {
            return None;
        }
        let w = &self.who;
        let rules = latest
            .engine
            .session_as(&w.identity, &w.groups, &w.target, Some(&w.user));
        let unmasked = rules.unmasked();
        let max_rows = rules.max_rows();
        match &self.handoff {
            Some(h) => {
                *h.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(Reloaded {
                    engine: Arc::clone(&latest.engine),
                    scanner: latest.scanner.clone(),
                    masker: latest.masker.clone(),
                    unmasked,
                    max_rows,
                });
                h.ready.store(true, Ordering::Release);
            }
            None if !unmasked || max_rows.is_some() => {
                let why =
                    "policy.reload: the reloaded policy masks or limits this identity's results, \
                           which a session that started without either cannot take on; reconnect"
                        .to_string();
                tracing::warn!(identity = %w.identity, target = %w.target, "{why}");
                self.refused = Some(why.clone());
                return Some(why);
            }
            None => {}
        }
        tracing::info!(
            identity = %w.identity,
            target = %w.target,
            generation = latest.generation,
            "session took the reloaded policy"
        );
        self.rules = rules;
        self.unmasked = unmasked;
        self.live = latest;
        None
    }

    /// Submit a statement for approval and hold it until decided.
    fn hold(
        &self,
        broker: &Arc<Broker>,
        statement: &Statement<'_>,
        v: sluice_policy::engine::Verdict,
    ) -> Decision {
        let rule = format!("{}: {}", v.rule, v.reason);
        let mut text = statement.text.to_string();
        if !statement.params.is_empty() {
            text.push_str(&format!("  -- with {} parameters", statement.params.len()));
        }
        let ticket = broker.submit(NewRequest {
            statement: sluice_store::redact::mask_pans(&text).into_owned(),
            classes: v.classes.iter().map(|c| c.as_str().to_string()).collect(),
            rule: v.rule.clone(),
            reason: v.reason.clone(),
            ..self.who.clone()
        });
        let id = ticket.id().unwrap_or("none").to_string();
        let timeout = broker.config().timeout_secs;
        let wait = {
            let rule = rule.clone();
            async move { settled(ticket.wait().await, &rule, timeout) }
        };
        Decision::Hold(Hold {
            id,
            rule,
            wait: Box::pin(wait),
        })
    }
}

/// A broker verdict as the session engine records and answers it.
fn settled(verdict: Verdict, rule: &str, timeout: u64) -> Settled {
    let allow = verdict.allows();
    let outcome = verdict.as_str();
    let (by, reason) = match verdict {
        Verdict::Approved { by } => (by, String::new()),
        Verdict::Granted { grant } => (Vec::new(), format!("time-window grant {grant}")),
        Verdict::Denied { by, reason } => (
            vec![by.clone()],
            format!("{rule} — approval denied by {by}: {reason}"),
        ),
        Verdict::Expired => (
            Vec::new(),
            format!("{rule} — no approver decided within {timeout} s; the statement was not run"),
        ),
        Verdict::Refused { reason } => (Vec::new(), format!("{rule} — not held: {reason}")),
    };
    Settled {
        allow,
        outcome,
        by,
        reason,
    }
}

/// The catalog query for the sensitive tables' columns.
fn catalog_query(tables: &[String]) -> String {
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("'{}'", t.replace('\'', "''")))
        .collect();
    format!(
        "SELECT c.oid, a.attnum, n.nspname, c.relname, a.attname \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relname IN ({}) \
         /* sluice: sensitive columns by OID */",
        names.join(", ")
    )
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
        if let Some(rule) = self.refresh() {
            self.reads_only = false;
            return Decision::Deny { rule };
        }
        let dialect = if self.mysql {
            Dialect::MySql
        } else {
            Dialect::Postgres
        };
        let v = self.rules.decide_in(dialect, statement.text);
        self.reads_only = v.action == Action::Allow && v.reads_only;
        if v.action != Action::Deny && !v.masks.is_empty() {
            // A held statement's masks apply from now on: if it is
            // approved its rows are masked; if not, masking more is safe.
            let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
            for (label, format) in &v.masks {
                let f = labels.entry(label.clone()).or_insert(*format);
                *f = f.strongest(*format);
            }
        }
        match v.action {
            Action::Allow => Decision::Allow,
            Action::Deny => Decision::Deny {
                rule: format!("{}: {}", v.rule, v.reason),
            },
            Action::Approve => match &self.approvals {
                Some(broker) => self.hold(broker, statement, v),
                None => Decision::Deny {
                    rule: format!(
                        "{}: {} — this statement needs approval, and approvals are not enabled on this proxy",
                        v.rule, v.reason
                    ),
                },
            },
        }
    }

    fn reads_only(&self) -> bool {
        self.reads_only
    }

    fn startup_query(&mut self) -> Option<String> {
        if self.unmasked || self.oids.is_some() {
            return None;
        }
        let tables = self.live.engine.sensitive_tables(&self.key.0);
        (!tables.is_empty()).then(|| catalog_query(&tables))
    }

    fn startup_rows(&mut self, rows: Result<Vec<Vec<Option<String>>>, String>) {
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // Masks by output name still apply; say why OIDs do not.
                tracing::warn!(error = %e, "catalog lookup of sensitive columns failed");
                return;
            }
        };
        let mut oids = HashMap::new();
        for r in rows {
            let text = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let (Ok(oid), Ok(attnum)) = (text(0).parse::<u32>(), text(1).parse::<i16>()) else {
                continue;
            };
            if let Some(f) =
                self.live
                    .engine
                    .sensitive_format(&self.key.0, text(2), text(3), text(4))
            {
                oids.insert((oid, attnum), f);
            }
        }
        let oids = Arc::new(oids);
        self.catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.key.clone(), (Instant::now(), Arc::clone(&oids)));
        self.oids = Some(oids);
    }

    fn rewriter(&mut self) -> Option<Box<dyn Rewriter>> {
        let max_rows = self.rules.max_rows();
        if self.unmasked && max_rows.is_none() {
            return None;
        }
        let handoff = Arc::new(Handoff::default());
        self.handoff = Some(Arc::clone(&handoff));
        Some(Box::new(Masking {
            origins: Origins {
                engine: Arc::clone(&self.live.engine),
                target: self.key.0.clone(),
                known: HashMap::new(),
            },
            labels: Arc::clone(&self.labels),
            oids: self.oids.clone().unwrap_or_default(),
            scanner: self.live.scanner.clone(),
            masker: self.live.masker.clone(),
            handoff,
            counts: BTreeMap::new(),
            unmasked: self.unmasked,
            max_rows,
            rows: 0,
        }))
    }
}

/// Sensitive columns by name, for protocols whose result columns say
/// where they come from (MySQL), with the answers remembered.
struct Origins {
    engine: Arc<Engine>,
    target: String,
    known: HashMap<ColumnOrigin, Option<MaskFormat>>,
}

impl Origins {
    fn format(&mut self, origin: &ColumnOrigin) -> Option<MaskFormat> {
        if let Some(f) = self.known.get(origin) {
            return *f;
        }
        let f = self.engine.sensitive_format(
            &self.target,
            &origin.schema,
            &origin.table,
            &origin.column,
        );
        if self.known.len() < 4096 {
            self.known.insert(origin.clone(), f);
        }
        f
    }
}

/// Masks one session's results.
pub struct Masking {
    origins: Origins,
    labels: Labels,
    /// Sensitive columns by (table OID, attnum): RowDescription says where
    /// a plain column comes from, whatever its name in the query.
    oids: Oids,
    scanner: Scanner,
    masker: Masker,
    /// Values masked since the end of the last result, by column name
    /// (`error`, `notice`, `notification`, `copy` for messages).
    counts: BTreeMap<String, u64>,
    /// The identity sees sensitive data: only the row limit applies.
    unmasked: bool,
    /// Rows one result may bring.
    max_rows: Option<u64>,
    /// Rows of the current result so far (a suspended portal's continue).
    rows: u64,
    /// A reload's masking, handed over by the session's decisions.
    handoff: Arc<Handoff>,
}

/// PostgreSQL type OIDs the binary-format checks decode.
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;
const FLOAT8: u32 = 701;
const BYTEA: u32 = 17;

impl Masking {
    /// Take a reload's masking, if the session's decisions handed one over.
    fn refresh(&mut self) {
        if !self.handoff.ready.swap(false, Ordering::Acquire) {
            return;
        }
        let next = self
            .handoff
            .next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(r) = next {
            self.origins.engine = r.engine;
            self.origins.known.clear();
            self.scanner = r.scanner;
            self.masker = r.masker;
            self.unmasked = r.unmasked;
            self.max_rows = r.max_rows;
        }
    }

    /// One value: masked by its label, else scanned.
    fn value<'v>(
        &mut self,
        column: Option<&Column>,
        labels: &BTreeMap<String, MaskFormat>,
        v: &'v [u8],
    ) -> Option<Value<'v>> {
        if let Some(c) = column
            && let Some(format) = labels
                .get(&c.name)
                .copied()
                .or_else(|| {
                    (c.table_oid != 0)
                        .then(|| self.oids.get(&(c.table_oid, c.column)).copied())
                        .flatten()
                })
                .or_else(|| c.origin.as_ref().and_then(|o| self.origins.format(o)))
        {
            self.count(&c.name);
            return Some(
                self.masker
                    .apply(format, v, text_like(c.type_oid))
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
                let (masked, _) = self.scanner.scan(v, name)?;
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
        self.refresh();
        if self.unmasked {
            return None;
        }
        let mut out: Option<Fields> = None;
        for (i, (code, text)) in fields.iter().enumerate() {
            let (masked, _) = self.scanner.scan_str(text, None);
            if let Cow::Owned(m) = masked {
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
        self.refresh();
        self.rows += 1;
        if let Some(max) = self.max_rows
            && self.rows > max
        {
            return Rewrite::End(format!(
                "row limit exceeded: a result may bring at most {max} rows to this identity (policy.row_limits)"
            ));
        }
        if self.unmasked {
            return Rewrite::Keep;
        }
        let shared = Arc::clone(&self.labels);
        let labels = shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Option<Vec<Value<'v>>> = None;
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            let column = columns.and_then(|c| c.get(i));
            let replaced = if columns.is_none() && (!labels.is_empty() || !self.oids.is_empty()) {
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
        self.refresh();
        if self.unmasked {
            return Rewrite::Keep;
        }
        match self.scanner.scan(data, None) {
            Some((masked, _)) => {
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
        self.refresh();
        if self.unmasked {
            return RewriteOrDrop::Keep;
        }
        let (channel, a) = self.scanner.scan_str(&n.channel, None);
        let (payload, b) = self.scanner.scan_str(&n.payload, None);
        if a.is_empty() && b.is_empty() {
            return RewriteOrDrop::Keep;
        }
        self.count("notification");
        RewriteOrDrop::Replace(Notification {
            pid: n.pid,
            channel: channel.into_owned(),
            payload: payload.into_owned(),
        })
    }

    fn end_of_result(&mut self, suspended: bool) -> Vec<(String, u64)> {
        if !suspended {
            self.rows = 0;
        }
        std::mem::take(&mut self.counts).into_iter().collect()
    }

    fn error(&mut self, fields: &[(u8, String)]) -> Rewrite<Fields> {
        match self.fields("error", fields) {
            Some(f) => Rewrite::Replace(f),
            None => Rewrite::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_policy::engine::{MaskingConfig, PolicyConfig};

    fn policy() -> RulePolicy {
        let p: PolicyConfig = toml::from_str("default = \"allow\"").unwrap();
        let m: MaskingConfig = toml::from_str(
            "[[columns]]\nschema = \"public\"\ntable = \"cards\"\ncolumn = \"holder\"\nformat = \"redact\"",
        )
        .unwrap();
        RulePolicy::new(Engine::new(&p, &m).unwrap(), None, None)
    }

    fn info() -> SessionInfo<'static> {
        SessionInfo {
            protocol: "postgres",
            identity: "host:10.0.0.2",
            groups: &[],
            target: "pg",
            user: "agent",
            database: "postgres",
        }
    }

    fn column(name: &str, table_oid: u32, attnum: i16) -> Column {
        Column {
            name: name.into(),
            table_oid,
            column: attnum,
            type_oid: 25,
            type_size: -1,
            type_modifier: -1,
            format: Format::Text,
            origin: None,
        }
    }

    /// The catalog lookup runs once per database, and RowDescription's
    /// table OID and attnum then mask a sensitive column whatever it is
    /// called in the query.
    #[test]
    fn catalog_oids_mask_columns_the_labels_missed() {
        let p = policy();
        let mut s = p.session(&info());
        let q = s.startup_query().expect("a catalog query");
        assert!(q.contains("c.relname IN ('cards')"), "{q}");
        s.startup_rows(Ok(vec![
            vec![
                Some("16384".into()),
                Some("2".into()),
                Some("public".into()),
                Some("cards".into()),
                Some("holder".into()),
            ],
            vec![
                Some("16384".into()),
                Some("1".into()),
                Some("public".into()),
                Some("cards".into()),
                Some("id".into()),
            ],
            vec![
                Some("16999".into()),
                Some("2".into()),
                Some("other".into()),
                Some("cards".into()),
                Some("holder".into()),
            ],
        ]));
        let mut r = s.rewriter().expect("a rewriter");
        let cols = [
            column("id", 16384, 1),
            column("who", 16384, 2),
            column("who2", 16999, 2),
        ];
        let values: [Option<&[u8]>; 3] = [Some(b"1"), Some(b"Ada Lovelace"), Some(b"Ada Lovelace")];
        match r.data_row(Some(&cols), &values) {
            Rewrite::Replace(v) => {
                assert_eq!(v[0].as_deref(), Some(&b"1"[..]));
                assert_eq!(v[1].as_deref(), Some(&b"****"[..]));
                assert_eq!(
                    v[2].as_deref(),
                    Some(&b"Ada Lovelace"[..]),
                    "other schema is not sensitive"
                );
            }
            other => panic!("nothing masked: {other:?}"),
        }
        assert_eq!(r.end_of_result(false), vec![("who".to_string(), 1)]);
        // The next session on the same database reuses the lookup.
        let mut again = p.session(&info());
        assert!(again.startup_query().is_none());
        // A failed lookup leaves masking by name in force.
        let mut other = p.session(&SessionInfo {
            database: "other",
            ..info()
        });
        assert!(other.startup_query().is_some());
        other.startup_rows(Err("permission denied".into()));
        assert!(other.rewriter().is_some());
    }

    /// A row limit ends the session at the first row over it, also for an
    /// identity that sees data unmasked; suspended portals keep counting.
    #[test]
    fn row_limits_end_the_session_past_the_limit() {
        let p: PolicyConfig =
            toml::from_str("default = \"allow\"\n[[row_limits]]\nmax_rows = 2").unwrap();
        let m: MaskingConfig = toml::from_str("unmasked = [\"uid:0\"]").unwrap();
        let policy = RulePolicy::new(Engine::new(&p, &m).unwrap(), None, None);
        for identity in ["host:10.0.0.2", "uid:0"] {
            let mut s = policy.session(&SessionInfo { identity, ..info() });
            let mut r = s.rewriter().expect("a rewriter enforces the limit");
            let cols = [column("id", 0, 0)];
            let row: [Option<&[u8]>; 1] = [Some(b"1")];
            assert!(!matches!(r.data_row(Some(&cols), &row), Rewrite::End(_)));
            r.end_of_result(true); // PortalSuspended: the same result goes on
            assert!(!matches!(r.data_row(Some(&cols), &row), Rewrite::End(_)));
            match r.data_row(Some(&cols), &row) {
                Rewrite::End(why) => assert!(why.contains("at most 2 rows"), "{why}"),
                other => panic!("{identity}: third row passed: {other:?}"),
            }
            r.end_of_result(false);
            assert!(
                !matches!(r.data_row(Some(&cols), &row), Rewrite::End(_)),
                "a new result starts at 0"
            );
        }
    }

    fn compiled(policy: &str, masking: &str) -> RulePolicy {
        let p: PolicyConfig = toml::from_str(policy).unwrap();
        let m: MaskingConfig = toml::from_str(masking).unwrap();
        RulePolicy::new(Engine::new(&p, &m).unwrap(), None, None)
    }

    fn statement(text: &str) -> Statement<'_> {
        Statement {
            protocol: "simple",
            text,
            params: &[],
        }
    }

    /// A reload reaches a session in progress: its next statement is
    /// decided by the new rules, and its rewriter masks by the new
    /// masking from the next result on.
    #[test]
    fn a_reload_reaches_sessions_in_progress() {
        let p = compiled(
            "default = \"allow\"",
            "[[columns]]\ntable = \"cards\"\ncolumn = \"holder\"\nformat = \"redact\"",
        );
        let mut s = p.session(&info());
        let mut r = s.rewriter().expect("a rewriter");
        assert!(matches!(
            s.decide(&statement("select email from users")),
            Decision::Allow
        ));
        let cols = [column("email", 0, 0)];
        let row: [Option<&[u8]>; 1] = [Some(b"ada@example.com")];
        assert!(matches!(r.data_row(Some(&cols), &row), Rewrite::Keep));
        r.end_of_result(false);

        p.adopt(&compiled(
            "default = \"allow\"\n[[rules]]\nname = \"no users\"\naction = \"deny\"\ntables = [\"users\"]",
            "[[columns]]\ntable = \"cards\"\ncolumn = \"holder\"\nformat = \"redact\"\n\
             [[columns]]\ntable = \"accounts\"\ncolumn = \"email\"\nformat = \"redact\"",
        ));
        match s.decide(&statement("select email from users")) {
            Decision::Deny { rule } => assert!(rule.contains("no users"), "{rule}"),
            other => panic!("the reloaded deny rule did not reach the session: {other:?}"),
        }
        assert!(matches!(
            s.decide(&statement("select email from accounts")),
            Decision::Allow
        ));
        match r.data_row(Some(&cols), &row) {
            Rewrite::Replace(v) => assert_eq!(v[0].as_deref(), Some(&b"****"[..])),
            other => panic!("the reloaded masking did not reach the rewriter: {other:?}"),
        }
        // Sessions that start now are under it too.
        let mut fresh = p.session(&info());
        assert!(matches!(
            fresh.decide(&statement("select * from users")),
            Decision::Deny { .. }
        ));
    }

    /// A session that started with nothing to mask and no row limit has no
    /// rewriter: a reload that masks its results refuses its statements
    /// (reconnect), never lets them through unmasked.
    #[test]
    fn a_session_without_a_rewriter_refuses_once_masking_applies() {
        let p = compiled("default = \"allow\"", "unmasked = [\"host:10.0.0.2\"]");
        let mut s = p.session(&info());
        assert!(
            s.rewriter().is_none(),
            "an unmasked identity needs no rewriter"
        );
        assert!(matches!(s.decide(&statement("select 1")), Decision::Allow));
        p.adopt(&compiled(
            "default = \"allow\"",
            "[[columns]]\ntable = \"cards\"\ncolumn = \"holder\"\nformat = \"redact\"",
        ));
        for _ in 0..2 {
            match s.decide(&statement("select 1")) {
                Decision::Deny { rule } => assert!(rule.contains("reconnect"), "{rule}"),
                other => panic!("statement allowed without masking: {other:?}"),
            }
        }
        let mut fresh = p.session(&info());
        assert!(fresh.rewriter().is_some());
    }

    #[test]
    fn catalog_query_quotes_table_names() {
        assert!(catalog_query(&["o'brien".into()]).contains("IN ('o''brien')"));
    }
}
