//! Rules compiled from the configuration, decided per identity and target.
//!
//! Every statement of a string is analyzed ([`crate::analyze`]) and
//! decided on its own; the string's verdict is the strictest of them, so
//! one refused statement refuses the whole string. For one statement:
//!
//! 1. `deny_patterns` that match the text refuse it;
//! 2. text that does not parse is refused, unless a matching allow rule
//!    says `raw = true`;
//! 3. the sensitive-data checks: a sensitive column in a predicate
//!    (`masking.probing`), stored by CTAS, INSERT … SELECT, a view or a
//!    cursor (`masking.stored`), or computed into an output
//!    (`masking.laundering`, which may also just mask that output);
//! 4. the rules that apply to the session's identity and target: any
//!    matching `deny` refuses, else any matching `approve` holds it for
//!    approval, else any matching `allow` lets it through;
//! 5. nothing matched: `policy.default`.
//!
//! A rule matches a statement when every condition it sets holds. For
//! `allow`, a list condition holds when *everything* the statement names is
//! in the list (`tables = ["orders"]` does not allow a join with `cards`);
//! for `deny` and `approve`, when *anything* is.
//!
//! Statements refused whoever asks come before all of this: MySQL file
//! I/O (`builtin.file_io`), `PREPARE … FROM @variable`
//! (`builtin.dynamic_sql`), settings that would make the server read text
//! differently from sluice (`builtin.sql_mode`, `builtin.charset`), and
//! `HANDLER … OPEN` of a table holding sensitive columns
//! (`builtin.handler`). A sensitive value assigned to a MySQL variable is
//! laundering that masking cannot follow: refused, or held when
//! `masking.laundering = "approve"`.
//!
//! Analyses are cached by dialect and statement shape (operand literals
//! replaced, see [`crate::fingerprint`]), shared by all sessions; a
//! session's rules are filtered once when it starts ([`Engine::session`]).
use std::{
    collections::{BTreeMap, HashMap},
    hash::BuildHasher,
    sync::{Arc, Mutex},
};

use regex::RegexSet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    analyze::{self, Class, Facts, Source, TableName},
    detect::DetectorSet,
    dialect::Dialect,
    mask::MaskFormat,
    mysql,
};

/// What a rule does when it matches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the statement through.
    Allow,
    /// Hold it until a human approves it.
    Approve,
    /// Refuse it.
    Deny,
}

impl Action {
    /// The name used in configuration and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Approve => "approve",
            Action::Deny => "deny",
        }
    }
}

/// What to do with a sensitive column that is computed into an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Laundering {
    /// Redact the whole output column.
    Mask,
    /// Hold the statement for approval.
    Approve,
    /// Refuse the statement.
    Deny,
}

/// `[policy]`: statement rules.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// What a statement no rule matches gets: `deny` (the default) or
    /// `allow`.
    pub default: Action,
    /// Regular expressions; a statement whose text matches one is refused
    /// before it is parsed.
    pub deny_patterns: Vec<String>,
    /// Rules, in any order: deny beats approve beats allow.
    pub rules: Vec<RuleConfig>,
    /// Most rows one result may return, per identity and target.
    pub row_limits: Vec<RowLimit>,
}

/// `[[policy.row_limits]]`: the most rows one result may bring a session
/// of these identities on these targets. The row after the last allowed
/// one ends the session with SQLSTATE 54000: rows cannot be held back
/// without lying to the client about how many there were.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowLimit {
    /// Identities (globs); empty: everyone.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Targets; empty: all.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Rows per result.
    pub max_rows: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            default: Action::Deny,
            deny_patterns: Vec::new(),
            rules: Vec::new(),
            row_limits: Vec::new(),
        }
    }
}

/// `[[policy.rules]]`: one rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// Its name, recorded with each refusal or hold it decides (allowed
    /// statements' records name no rule).
    pub name: String,
    /// What it does when it matches: `allow`, `approve` (hold the
    /// statement until approvers decide) or `deny`. Required.
    #[schemars(extend("x-sluice-required" = true))]
    pub action: Option<Action>,
    /// Identities it applies to: names (globs with `*`: `ci-*`,
    /// `host:10.0.1.*`, `uid:1000`) or `group:<name>`; empty: every
    /// identity but `unknown`.
    pub identities: Vec<String>,
    /// `[[targets]]` names it applies to; empty: every target.
    pub targets: Vec<String>,
    /// Database users it applies to (globs with `*`): the user the session
    /// logged in as, or changed to with MySQL's `COM_CHANGE_USER`; empty:
    /// every user. It narrows `identities`, never widens them.
    pub users: Vec<String>,
    /// Statement classes: read, write, ddl, dcl, admin, transaction,
    /// utility.
    pub classes: Vec<Class>,
    /// Statement kinds: select, insert, update, delete, copy, create_table, …
    pub kinds: Vec<String>,
    /// Tables: `schema.table`, `table` (any schema), globs with `*`.
    pub tables: Vec<String>,
    /// Columns: `table.column` or `column`, globs with `*`.
    pub columns: Vec<String>,
    /// Functions the statement calls, by name without schema, globs with
    /// `*`: `["pg_read_file", "lo_*"]`.
    pub functions: Vec<String>,
    /// Matches DELETE and UPDATE without a WHERE clause.
    pub without_where: bool,
    /// Matches statements returning rows whose outermost LIMIT is missing
    /// or above this.
    pub rows_over: Option<u64>,
    /// Matches statements that return a declared sensitive column.
    pub sensitive: bool,
    /// On an allow rule: statements that cannot be parsed pass too.
    pub raw: bool,
    /// Said to the client with a refusal.
    pub reason: Option<String>,
}

/// `[[masking.columns]]`: one sensitive column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SensitiveColumn {
    /// Only on this target (default: every target).
    #[serde(default)]
    pub target: Option<String>,
    /// Schema (default: any).
    #[serde(default)]
    pub schema: Option<String>,
    /// Table name, as the database spells it unquoted (lower case).
    pub table: String,
    /// Column name.
    pub column: String,
    /// How its values are shown to identities not in `masking.unmasked`.
    pub format: MaskFormat,
}

/// `[masking]`: sensitive columns and content detectors.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    /// Declared sensitive columns.
    pub columns: Vec<SensitiveColumn>,
    /// Identities (globs) that see sensitive columns unmasked. Content
    /// detectors still run for them.
    pub unmasked: Vec<String>,
    /// A sensitive column computed into an output (concat, encode, substr,
    /// aggregates, row/JSON constructors): `mask` the output (default),
    /// `deny` or `approve`.
    pub laundering: Laundering,
    /// A sensitive column in WHERE, JOIN, GROUP BY, ORDER BY, …: `deny`
    /// (default), `approve` or `allow`.
    pub probing: Action,
    /// A sensitive column stored by CTAS, SELECT INTO, INSERT … SELECT,
    /// UPDATE … SET or a view: `deny` (default), `approve` or `allow`.
    pub stored: Action,
    /// Key file for `format = "token"`: 32 random bytes or more, readable
    /// by its owner only (`head -c 32 /dev/urandom > file; chmod 600
    /// file`). Keep it: a new key gives new tokens.
    pub token_key_file: Option<std::path::PathBuf>,
    /// Content detectors run on every value leaving the database.
    pub detectors: DetectorSet,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig {
            columns: Vec::new(),
            unmasked: Vec::new(),
            laundering: Laundering::Mask,
            probing: Action::Deny,
            stored: Action::Deny,
            token_key_file: None,
            detectors: DetectorSet::default(),
        }
    }
}

/// Why the policy could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A deny pattern does not compile.
    #[error("policy.deny_patterns: {0}")]
    Pattern(#[from] regex::Error),
    /// A rule has no action.
    #[error("policy.rules[{0}] ({1:?}): `action` is required (allow, approve or deny)")]
    NoAction(usize, String),
    /// `raw` on a rule that is not an allow rule.
    #[error("policy.rules[{0}] ({1:?}): `raw = true` only makes sense with action = \"allow\"")]
    RawNotAllow(usize, String),
}

impl CompileError {
    /// The configuration key at fault.
    pub fn key(&self) -> String {
        match self {
            CompileError::Pattern(_) => "policy.deny_patterns".into(),
            CompileError::NoAction(i, _) => format!("policy.rules[{i}].action"),
            CompileError::RawNotAllow(i, _) => format!("policy.rules[{i}].raw"),
        }
    }

    /// What is wrong there, in words.
    pub fn reason(&self) -> String {
        match self {
            CompileError::Pattern(e) => e.to_string(),
            CompileError::NoAction(..) => "required: \"allow\", \"approve\" or \"deny\"".into(),
            CompileError::RawNotAllow(..) => {
                "raw passthrough only makes sense on an allow rule".into()
            }
        }
    }
}

/// What the policy decided for a string (or, in [`Explained`], for one of
/// its statements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allow, approve or deny.
    pub action: Action,
    /// The deciding rule (`policy.rules[2] "agents read"`, `policy.default`,
    /// `masking.probing`, …).
    pub rule: String,
    /// Why, in words, for the client and the record.
    pub reason: String,
    /// Output labels to mask and how (statements allowed or held for
    /// approval; for a string, the union of its statements').
    pub masks: Vec<(String, MaskFormat)>,
    /// The classes of the string's statements (what time-window grants
    /// cover), in order of first appearance.
    pub classes: Vec<Class>,
    /// Every statement of the string only reads or ends a transaction: no
    /// write, no DDL, nothing stored or assigned, and only functions known
    /// to change nothing ([`Facts::changes_nothing`]). Running such a
    /// string cannot change the database, so an engine may send it before
    /// its record is on disk and hold only the answer back until it is.
    pub reads_only: bool,
}

impl Verdict {
    fn new(action: Action, rule: impl Into<String>, reason: impl Into<String>) -> Verdict {
        Verdict {
            action,
            rule: rule.into(),
            reason: reason.into(),
            masks: Vec::new(),
            classes: Vec::new(),
            reads_only: false,
        }
    }
}

struct Rule {
    index: usize,
    config: RuleConfig,
    action: Action,
}

impl Rule {
    fn label(&self) -> String {
        if self.config.name.is_empty() {
            format!("policy.rules[{}]", self.index)
        } else {
            format!("policy.rules[{}] {:?}", self.index, self.config.name)
        }
    }

    /// Does the rule's condition hold for a statement?
    fn matches(&self, f: &Facts, sensitive: &Sensitive, target: &str) -> bool {
        let c = &self.config;
        let every = self.action == Action::Allow;
        let list = |patterns: &[String], items: &mut dyn Iterator<Item = String>| -> bool {
            if patterns.is_empty() {
                return true;
            }
            let mut any = false;
            let mut all = true;
            for item in items {
                let hit = patterns.iter().any(|p| glob(p, &item));
                any |= hit;
                all &= hit;
            }
            if every { all } else { any }
        };
        if !c.classes.is_empty() && !c.classes.contains(&f.class) {
            return false;
        }
        if !c.kinds.is_empty() && !c.kinds.iter().any(|k| k == &f.kind) {
            return false;
        }
        if !c.tables.is_empty() && !list_tables(&c.tables, &f.tables, every) {
            return false;
        }
        if !list(
            &c.columns,
            &mut f.all_sources().map(|s| match s {
                Source::Column { table, column } => format!("{}.{column}", table.name),
                Source::AllOf(t) => format!("{}.*", t.name),
            }),
        ) {
            return false;
        }
        if !list(&c.functions, &mut f.functions.iter().cloned()) {
            return false;
        }
        let unbounded_change = matches!(f.kind.as_str(), "delete" | "update") && !f.has_where;
        if c.without_where && !unbounded_change {
            return false;
        }
        if let Some(n) = c.rows_over {
            let returns_rows = !f.outputs.is_empty();
            if !(returns_rows && f.limit.is_none_or(|l| l > n)) {
                return false;
            }
        }
        if c.sensitive
            && !f.outputs.iter().any(|o| {
                o.lineage
                    .sources
                    .iter()
                    .any(|s| sensitive.format(s, target).is_some())
            })
        {
            return false;
        }
        true
    }
}

/// Allow: every table in the list; deny/approve: any. A pattern
/// `schema.table` matches a qualified name in that schema and an
/// unqualified name (the search path could lead anywhere); `table` matches
/// any schema.
fn list_tables(
    patterns: &[String],
    tables: &std::collections::BTreeSet<TableName>,
    every: bool,
) -> bool {
    let hit = |t: &TableName| {
        patterns.iter().any(|p| match p.split_once('.') {
            Some((schema, name)) => {
                glob(name, &t.name) && t.schema.as_deref().is_none_or(|s| glob(schema, s))
            }
            None => glob(p, &t.name),
        })
    };
    if every {
        tables.iter().all(hit)
    } else {
        tables.iter().any(hit)
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Declared sensitive columns, by table name.
#[derive(Debug, Default)]
struct Sensitive {
    /// table name → (schema, column, format, target)
    by_table: HashMap<String, Vec<SensitiveColumn>>,
}

impl Sensitive {
    fn new(columns: &[SensitiveColumn]) -> Sensitive {
        let mut by_table: HashMap<String, Vec<SensitiveColumn>> = HashMap::new();
        for c in columns {
            let mut c = c.clone();
            c.table = c.table.to_lowercase();
            c.column = c.column.to_lowercase();
            c.schema = c.schema.map(|s| s.to_lowercase());
            by_table.entry(c.table.clone()).or_default().push(c);
        }
        Sensitive { by_table }
    }

    fn applies(c: &SensitiveColumn, table: &TableName, target: &str) -> bool {
        c.target.as_deref().is_none_or(|t| t == target)
            && match (&c.schema, &table.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// The format of a source if it is sensitive (the strongest, for `*`).
    fn format(&self, s: &Source, target: &str) -> Option<MaskFormat> {
        match s {
            Source::Column { table, column } => self
                .by_table
                .get(&table.name)?
                .iter()
                .filter(|c| Self::applies(c, table, target) && &c.column == column)
                .map(|c| c.format)
                .max(),
            Source::AllOf(table) => self
                .by_table
                .get(&table.name)?
                .iter()
                .filter(|c| Self::applies(c, table, target))
                .map(|c| c.format)
                .max(),
        }
    }

    /// The sensitive columns `*` over a table brings, with their formats.
    fn columns_of(&self, table: &TableName, target: &str) -> Vec<(String, MaskFormat)> {
        self.by_table
            .get(&table.name)
            .map(|cs| {
                cs.iter()
                    .filter(|c| Self::applies(c, table, target))
                    .map(|c| (c.column.clone(), c.format))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One string's analysis.
type Analysis = Arc<Result<Vec<Facts>, analyze::ParseError>>;

/// A cached analysis: the dialect, shape and comment offsets it is for
/// (the key is their hash), and the analysis.
type CacheEntry = (Dialect, Arc<str>, Arc<[usize]>, Analysis);

/// Analyses by dialect and statement shape ([`crate::fingerprint`]),
/// shared by all sessions.
struct Cache {
    map: Mutex<HashMap<u64, CacheEntry>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Statements kept in the analysis cache; it is emptied when full.
const CACHE_ENTRIES: usize = 10_000;
/// Longer statements are not cached (bulk INSERTs with literals).
const CACHE_MAX_TEXT: usize = 16 * 1024;

impl Cache {
    fn get(&self, dialect: Dialect, sql: &str) -> Analysis {
        match dialect {
            Dialect::Postgres => self.get_with(dialect, sql, &[], || analyze::analyze(sql)),
            Dialect::MySql => {
                // The shape of what the server executes (executable
                // comments unwrapped), never of the raw text. Where the
                // comments stood is part of the key: MySQL names an
                // unaliased output column by its text without them, so
                // `select id /*!, pan*/ from t` and `select id  , pan  from
                // t` normalise alike but label their outputs differently,
                // and masks follow labels.
                let n = match mysql::normalize(sql) {
                    Ok(n) => n,
                    Err(e) => return Arc::new(Err(e)),
                };
                self.get_with(dialect, &n.text, &n.synthetic, || {
                    mysql::analyze_normalized(&n)
                })
            }
        }
    }

    /// `text`: what is fingerprinted; `comments`: the offsets in it of the
    /// spaces standing for comments (MySQL); `analyze`: its analysis.
    fn get_with(
        &self,
        dialect: Dialect,
        text: &str,
        comments: &[usize],
        analyze: impl FnOnce() -> Result<Vec<Facts>, analyze::ParseError>,
    ) -> Analysis {
        if text.len() > CACHE_MAX_TEXT {
            return Arc::new(analyze());
        }
        // Statements differing only in operand literals share an analysis.
        let shape = match dialect {
            Dialect::Postgres => crate::fingerprint::fingerprint(text),
            Dialect::MySql => crate::fingerprint::fingerprint_mysql(text),
        };
        let shape = shape.as_deref().unwrap_or(text);
        let key = self.hasher.hash_one((dialect, shape, comments));
        if let Some((d, cached, at, facts)) =
            self.map.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && *d == dialect
            && &**cached == shape
            && **at == *comments
        {
            return Arc::clone(facts);
        }
        let facts = Arc::new(analyze());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
        map.insert(
            key,
            (
                dialect,
                Arc::from(shape),
                Arc::from(comments),
                Arc::clone(&facts),
            ),
        );
        facts
    }
}

/// The compiled policy: rules, sensitive columns, the analysis cache.
pub struct Engine {
    patterns: RegexSet,
    pattern_texts: Vec<String>,
    rules: Vec<Arc<Rule>>,
    default: Action,
    sensitive: Sensitive,
    masking: MaskingConfig,
    row_limits: Vec<RowLimit>,
    cache: Cache,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.len())
            .field("default", &self.default)
            .finish()
    }
}

impl Engine {
    /// Compile a policy and masking configuration.
    pub fn new(policy: &PolicyConfig, masking: &MaskingConfig) -> Result<Engine, CompileError> {
        let mut rules = Vec::new();
        for (i, r) in policy.rules.iter().enumerate() {
            let action = r
                .action
                .ok_or_else(|| CompileError::NoAction(i, r.name.clone()))?;
            if r.raw && action != Action::Allow {
                return Err(CompileError::RawNotAllow(i, r.name.clone()));
            }
            let mut config = r.clone();
            config.tables = config.tables.iter().map(|t| t.to_lowercase()).collect();
            config.columns = config.columns.iter().map(|t| t.to_lowercase()).collect();
            config.functions = config.functions.iter().map(|t| t.to_lowercase()).collect();
            config.kinds = config.kinds.iter().map(|t| t.to_lowercase()).collect();
            rules.push(Arc::new(Rule {
                index: i,
                config,
                action,
            }));
        }
        Ok(Engine {
            patterns: RegexSet::new(&policy.deny_patterns)?,
            pattern_texts: policy.deny_patterns.clone(),
            rules,
            default: policy.default,
            sensitive: Sensitive::new(&masking.columns),
            masking: masking.clone(),
            row_limits: policy.row_limits.clone(),
            cache: Cache {
                map: Mutex::new(HashMap::new()),
                hasher: Default::default(),
            },
        })
    }

    /// The masking configuration it was compiled with.
    pub fn masking(&self) -> &MaskingConfig {
        &self.masking
    }

    /// Tables holding sensitive columns on a target (lower case, sorted).
    pub fn sensitive_tables(&self, target: &str) -> Vec<String> {
        let mut t: Vec<String> = self
            .sensitive
            .by_table
            .iter()
            .filter(|(_, cs)| {
                cs.iter()
                    .any(|c| c.target.as_deref().is_none_or(|x| x == target))
            })
            .map(|(name, _)| name.clone())
            .collect();
        t.sort();
        t
    }

    /// The format of a catalog column if it is declared sensitive. For
    /// MySQL, `schema` is the database (MySQL has no schema level).
    /// Names compare without case (the configuration's are folded), so a
    /// table whose name differs only in case is masked too.
    pub fn sensitive_format(
        &self,
        target: &str,
        schema: &str,
        table: &str,
        column: &str,
    ) -> Option<MaskFormat> {
        self.sensitive.format(
            &Source::Column {
                table: TableName {
                    schema: Some(schema.to_lowercase()),
                    name: table.to_lowercase(),
                },
                column: column.to_lowercase(),
            },
            target,
        )
    }

    /// The rules that apply to one session, whatever its database user
    /// (rules naming `users` never apply; see [`Engine::session_as`]).
    /// `groups` are the identity's groups (`[[identities]]`).
    pub fn session(
        self: &Arc<Engine>,
        identity: &str,
        groups: &[String],
        target: &str,
    ) -> SessionRules {
        self.session_as(identity, groups, target, None)
    }

    /// [`Engine::session`] for a session logged in as database `user`:
    /// rules naming `users` apply when one of them matches it.
    pub fn session_as(
        self: &Arc<Engine>,
        identity: &str,
        groups: &[String],
        target: &str,
        user: Option<&str>,
    ) -> SessionRules {
        let rules = self
            .rules
            .iter()
            .filter(|r| {
                applies_to(&r.config.identities, identity, groups)
                    && (r.config.targets.is_empty() || r.config.targets.iter().any(|t| t == target))
                    && (r.config.users.is_empty()
                        || user.is_some_and(|u| r.config.users.iter().any(|p| glob(p, u))))
            })
            .cloned()
            .collect();
        let max_rows = self
            .row_limits
            .iter()
            .filter(|l| {
                applies_to(&l.identities, identity, groups)
                    && (l.targets.is_empty() || l.targets.iter().any(|t| t == target))
            })
            .map(|l| l.max_rows)
            .min();
        SessionRules {
            engine: Arc::clone(self),
            rules,
            target: target.to_string(),
            unmasked: !self.masking.unmasked.is_empty()
                && applies_to(&self.masking.unmasked, identity, groups),
            max_rows,
            // An unidentified workload gets nothing by default, whatever
            // the configured default.
            default: if identity == UNKNOWN_IDENTITY {
                Action::Deny
            } else {
                self.default
            },
        }
    }
}

/// Does an `identities` list name this identity? Empty: everyone, except
/// `unknown` (a workload no `[[identities]]` rule matched), which only
/// lists naming it exactly apply to. Entries are globs over the name, or
/// `group:<name>` for members of a group.
pub fn applies_to(patterns: &[String], identity: &str, groups: &[String]) -> bool {
    if identity == UNKNOWN_IDENTITY {
        return patterns.iter().any(|p| p == UNKNOWN_IDENTITY);
    }
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_prefix("group:") {
            Some(g) => groups.iter().any(|x| x == g),
            None => glob(p, identity),
        })
}

/// The identity of a workload no `[[identities]]` rule matched.
pub const UNKNOWN_IDENTITY: &str = "unknown";

/// The policy as one session sees it.
pub struct SessionRules {
    engine: Arc<Engine>,
    rules: Vec<Arc<Rule>>,
    target: String,
    unmasked: bool,
    max_rows: Option<u64>,
    default: Action,
}

impl std::fmt::Debug for SessionRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRules")
            .field("rules", &self.rules.len())
            .field("target", &self.target)
            .field("unmasked", &self.unmasked)
            .finish()
    }
}

/// One statement's explanation, for `sluice policy check`.
#[derive(Debug, Clone)]
pub struct Explained {
    /// The statement's facts (None: it did not parse).
    pub facts: Option<Facts>,
    /// Its own verdict.
    pub verdict: Verdict,
}

impl SessionRules {
    /// This session sees sensitive columns unmasked.
    pub fn unmasked(&self) -> bool {
        self.unmasked
    }

    /// The most rows one result may bring this session (the smallest
    /// applicable `row_limits`), if any.
    pub fn max_rows(&self) -> Option<u64> {
        self.max_rows
    }

    /// Decide a PostgreSQL string (one or more statements).
    pub fn decide(&self, sql: &str) -> Verdict {
        self.decide_in(Dialect::Postgres, sql)
    }

    /// Decide a PostgreSQL string and explain each statement.
    pub fn explain(&self, sql: &str) -> (Verdict, Vec<Explained>) {
        self.explain_in(Dialect::Postgres, sql)
    }

    /// Decide a string (one or more statements) in a dialect.
    pub fn decide_in(&self, dialect: Dialect, sql: &str) -> Verdict {
        self.decide_inner(dialect, sql, false).0
    }

    /// Decide a string in a dialect and explain each statement.
    pub fn explain_in(&self, dialect: Dialect, sql: &str) -> (Verdict, Vec<Explained>) {
        self.decide_inner(dialect, sql, true)
    }

    fn decide_inner(
        &self,
        dialect: Dialect,
        sql: &str,
        explain: bool,
    ) -> (Verdict, Vec<Explained>) {
        let e = &self.engine;
        // MySQL: the patterns see the text as the server executes it too
        // (`sl/**/eep` is not `sleep`, but `/*!sleep*/` is).
        let normalized = match dialect {
            Dialect::MySql => mysql::normalize(sql).ok().map(|n| n.text),
            Dialect::Postgres => None,
        };
        let matched = e
            .patterns
            .matches(sql)
            .iter()
            .chain(
                normalized
                    .iter()
                    .flat_map(|n| e.patterns.matches(n).into_iter()),
            )
            .next();
        if let Some(i) = matched {
            let v = Verdict::new(
                Action::Deny,
                format!("policy.deny_patterns[{i}]"),
                format!("matches deny pattern {:?}", e.pattern_texts[i]),
            );
            return (
                v.clone(),
                vec![Explained {
                    facts: None,
                    verdict: v,
                }],
            );
        }
        let analysis = e.cache.get(dialect, sql);
        let statements = match analysis.as_ref() {
            Ok(s) => s,
            Err(err) => {
                let raw = self
                    .rules
                    .iter()
                    .find(|r| r.action == Action::Allow && r.config.raw);
                let v = match raw {
                    // Not understood, but it may read or write files: raw
                    // passthrough is no way around builtin.file_io.
                    Some(_) if dialect == Dialect::MySql && mentions_file_io(sql) => Verdict::new(
                        Action::Deny,
                        "builtin.file_io",
                        format!(
                            "statement not understood ({err}) and it names a file operation (OUTFILE, DUMPFILE, LOAD DATA, LOAD XML, LOAD_FILE); raw passthrough does not cover file I/O"
                        ),
                    ),
                    Some(r) => Verdict::new(Action::Allow, r.label(), "raw passthrough"),
                    None => Verdict::new(
                        Action::Deny,
                        "policy.unparseable",
                        format!(
                            "statement not understood ({err}); only an allow rule with raw = true passes it"
                        ),
                    ),
                };
                return (
                    v.clone(),
                    vec![Explained {
                        facts: None,
                        verdict: v,
                    }],
                );
            }
        };
        let mut overall: Option<Verdict> = None;
        let mut explained = Vec::new();
        let mut masks = BTreeMap::new();
        for f in statements {
            let v = self.one(f, &mut masks);
            overall = Some(match overall {
                None => v.clone(),
                Some(o) if v.action > o.action => v.clone(),
                Some(o) => o,
            });
            if explain {
                explained.push(Explained {
                    facts: Some(f.clone()),
                    verdict: v,
                });
            }
        }
        let mut v = overall
            .unwrap_or_else(|| Verdict::new(Action::Allow, "policy.empty", "empty statement"));
        if v.action != Action::Deny {
            v.masks = masks.into_iter().collect();
        }
        for f in statements {
            if !v.classes.contains(&f.class) {
                v.classes.push(f.class);
            }
        }
        v.reads_only = !statements.is_empty() && statements.iter().all(Facts::changes_nothing);
        (v, explained)
    }

    /// Decide one statement; collect its output masks.
    fn one(&self, f: &Facts, masks: &mut BTreeMap<String, MaskFormat>) -> Verdict {
        let e = &self.engine;
        let target = self.target.as_str();
        let sens = |s: &Source| e.sensitive.format(s, target);
        // Built-in refusals: no rule allows them.
        if let Some(r) = &f.refusal {
            return Verdict::new(Action::Deny, r.rule.clone(), r.reason.clone());
        }
        // Sensitive-data checks first: they hold whoever asks.
        let m = &e.masking;
        if let Some(s) = f.predicates.iter().find(|s| sens(s).is_some())
            && m.probing != Action::Allow
        {
            return Verdict::new(
                m.probing,
                "masking.probing",
                format!("sensitive column {s} used to choose rows"),
            );
        }
        if let Some(s) = f.stored.iter().find(|s| sens(s).is_some())
            && m.stored != Action::Allow
        {
            return Verdict::new(
                m.stored,
                "masking.stored",
                format!(
                    "sensitive column {s} would be copied out of its table by {}",
                    f.kind
                ),
            );
        }
        let sensitive_anywhere = || f.all_sources().find(|s| sens(s).is_some());
        // Functions that move values out of band (notifications, settings,
        // files, other connections) cannot be masked on the way back.
        if let Some(func) = f.functions.iter().find(|n| side_channel(n))
            && let Some(s) = sensitive_anywhere()
        {
            return Verdict::new(
                Action::Deny,
                "masking.side_channel",
                format!("{func}() in a statement that reads sensitive column {s}"),
            );
        }
        if !e.sensitive.by_table.is_empty()
            && let Some(func) = f.functions.iter().find(|n| dynamic_sql(n))
        {
            return Verdict::new(
                Action::Deny,
                "masking.dynamic_sql",
                format!(
                    "{func}() reads tables sluice cannot see in the statement, and sensitive columns are declared"
                ),
            );
        }
        let mut local = Vec::new();
        if !self.unmasked {
            // A variable read back has no lineage: the value cannot be
            // masked there.
            if let Some(s) = f.assigned.iter().find(|s| sens(s).is_some()) {
                return Verdict::new(
                    if m.laundering == Laundering::Approve {
                        Action::Approve
                    } else {
                        Action::Deny
                    },
                    "masking.laundering",
                    format!(
                        "sensitive column {s} assigned to a variable by {}: read back later, its value could not be masked",
                        f.kind
                    ),
                );
            }
            // HANDLER … READ returns whole rows, also by index order or
            // index lookups under a handler alias the analysis cannot tie
            // back to the table.
            if f.kind == "handler_open"
                && let Some(s) = f
                    .outputs
                    .iter()
                    .flat_map(|o| o.lineage.sources.iter())
                    .find(|s| sens(s).is_some())
            {
                return Verdict::new(
                    Action::Deny,
                    "builtin.handler",
                    format!(
                        "HANDLER … OPEN of {s}, which holds sensitive columns: HANDLER … READ bypasses SELECT (index lookups and index order cannot be checked); use SELECT"
                    ),
                );
            }
            // COPY carries no column names: nothing in it can be masked by
            // column.
            if f.kind == "copy"
                && let Some(s) = f
                    .outputs
                    .iter()
                    .flat_map(|o| o.lineage.sources.iter())
                    .find(|s| sens(s).is_some())
            {
                return Verdict::new(
                    Action::Deny,
                    "masking.copy",
                    format!(
                        "COPY would send sensitive column {s}, which cannot be masked in COPY data; select it instead"
                    ),
                );
            }
            for o in &f.outputs {
                let formats: Vec<(Option<MaskFormat>, &Source)> =
                    o.lineage.sources.iter().map(|s| (sens(s), s)).collect();
                let Some(format) = formats.iter().filter_map(|(f, _)| *f).max() else {
                    continue;
                };
                if !o.lineage.direct && o.label == "*" {
                    // Computed, and its name unknown: cannot be masked.
                    return Verdict::new(
                        Action::Deny,
                        "masking.laundering",
                        "a function in FROM returns values computed from a sensitive column under names sluice cannot know; name the output column",
                    );
                }
                if !o.lineage.direct {
                    match m.laundering {
                        Laundering::Mask => local.push((o.label.clone(), MaskFormat::Redact)),
                        Laundering::Deny | Laundering::Approve => {
                            let s = formats.iter().find(|(f, _)| f.is_some()).map(|(_, s)| *s);
                            return Verdict::new(
                                if m.laundering == Laundering::Deny {
                                    Action::Deny
                                } else {
                                    Action::Approve
                                },
                                "masking.laundering",
                                format!(
                                    "output {:?} is computed from sensitive column {}",
                                    o.label,
                                    s.map(|s| s.to_string()).unwrap_or_default()
                                ),
                            );
                        }
                    }
                    continue;
                }
                for (_, s) in &formats {
                    match s {
                        Source::AllOf(t) => local.extend(e.sensitive.columns_of(t, target)),
                        Source::Column { .. } => {}
                    }
                }
                if o.label != "*" {
                    local.push((o.label.clone(), format));
                }
            }
        }
        // Rules.
        let mut best: Option<&Rule> = None;
        for r in &self.rules {
            if r.matches(f, &e.sensitive, target) && best.is_none_or(|b| r.action > b.action) {
                best = Some(r);
                if r.action == Action::Deny {
                    break;
                }
            }
        }
        let v = match best {
            Some(r) => Verdict::new(
                r.action,
                r.label(),
                r.config
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("{} {}", f.kind, past(r.action))),
            ),
            None => Verdict::new(
                self.default,
                "policy.default",
                format!(
                    "no rule allows {} here (default {})",
                    f.kind,
                    self.default.as_str()
                ),
            ),
        };
        let mut v = v;
        // A held statement that is approved is masked like an allowed one.
        if v.action != Action::Deny {
            let mut own = BTreeMap::new();
            for (label, format) in local {
                for m in [&mut *masks, &mut own] {
                    let entry = m.entry(label.clone()).or_insert(format);
                    *entry = entry.strongest(format);
                }
            }
            v.masks = own.into_iter().collect();
        }
        v
    }
}

/// Functions that send a value somewhere other than the result.
fn side_channel(name: &str) -> bool {
    matches!(
        name,
        "pg_notify"
            | "set_config"
            | "pg_logical_emit_message"
            | "pg_file_write"
            | "pg_file_rename"
            | "lo_from_bytea"
            | "lo_put"
            | "lo_import"
            | "lo_export"
            | "lowrite"
            // MySQL: a lock's name is visible to every session.
            | "get_lock"
    )
}

/// Does text sluice could not parse name a MySQL file operation? Read
/// loosely (case and everything but letters, digits and `_` ignored), so
/// comments cannot hide one.
fn mentions_file_io(sql: &str) -> bool {
    let squeezed: String = sql
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .flat_map(char::to_lowercase)
        .collect();
    ["outfile", "dumpfile", "load_file", "loaddata", "loadxml"]
        .iter()
        .any(|w| squeezed.contains(w))
}

/// Functions that read tables named in a string (or by regclass), out of
/// sight of the statement's analysis.
fn dynamic_sql(name: &str) -> bool {
    name.starts_with("query_to_xml")
        || name.starts_with("table_to_xml")
        || name.starts_with("schema_to_xml")
        || name.starts_with("database_to_xml")
        || name.starts_with("cursor_to_xml")
        || name.starts_with("dblink")
}

fn past(a: Action) -> &'static str {
    match a {
        Action::Allow => "allowed",
        Action::Approve => "held for approval",
        Action::Deny => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
default = "deny"
deny_patterns = ["(?i)pg_sleep"]
[[rules]]
name = "agents"
action = "allow"
identities = ["host:10.0.1.*"]
classes = ["read", "write", "transaction"]
[[rules]]
name = "where"
action = "deny"
without_where = true
[[rules]]
name = "ddl"
action = "approve"
classes = ["ddl"]
[[rules]]
name = "bulk"
action = "approve"
tables = ["cards"]
rows_over = 100
[[rules]]
name = "files"
action = "deny"
functions = ["pg_read_file", "lo_*"]
[[rules]]
name = "dba"
action = "allow"
identities = ["uid:0"]
raw = true
[[rules]]
name = "orders only"
action = "allow"
identities = ["host:10.0.2.*"]
classes = ["read"]
tables = ["public.orders"]
"#;

    const MASKING: &str = r#"
unmasked = ["uid:0"]
[[columns]]
table = "cards"
column = "pan"
format = "pci"
[[columns]]
schema = "public"
table = "cards"
column = "holder"
format = "redact"
"#;

    fn engine(masking_extra: &str) -> Arc<Engine> {
        let p: PolicyConfig = toml::from_str(POLICY).unwrap();
        let m: MaskingConfig = toml::from_str(&format!("{masking_extra}\n{MASKING}")).unwrap();
        Arc::new(Engine::new(&p, &m).unwrap())
    }

    /// One line per case: dialect, SQL → may run before its record is
    /// durable (changes nothing).
    #[test]
    fn reads_only_table() {
        let e = engine("");
        let s = e.session("uid:0", &[], "pg");
        let cases = [
            (
                Dialect::Postgres,
                "select abalance from pgbench_accounts where aid = $1",
                true,
            ),
            (
                Dialect::Postgres,
                "select count(*), max(id) from orders",
                true,
            ),
            (Dialect::Postgres, "begin; select 1; commit", true),
            (
                Dialect::Postgres,
                "select 1; delete from orders where id = 1",
                false,
            ),
            (
                Dialect::Postgres,
                "update orders set x = 1 where id = 2",
                false,
            ),
            (Dialect::Postgres, "select nextval('s')", false),
            (
                Dialect::Postgres,
                "select my_function(id) from orders",
                false,
            ),
            (Dialect::Postgres, "select pg_advisory_lock(1)", false),
            (Dialect::Postgres, "select * into t2 from orders", false),
            (
                Dialect::Postgres,
                "with d as (delete from orders where id = 1 returning *) select * from d",
                false,
            ),
            (
                Dialect::Postgres,
                "explain analyze delete from orders where id = 1",
                false,
            ),
            (Dialect::Postgres, "copy orders to stdout", false),
            (Dialect::Postgres, "set search_path = x", false),
            (Dialect::Postgres, "selec 1", false),
            (Dialect::MySql, "SELECT c FROM sbtest1 WHERE id=?", true),
            (
                Dialect::MySql,
                "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 1 AND 10",
                true,
            ),
            (
                Dialect::MySql,
                "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 1 AND 10 ORDER BY c",
                true,
            ),
            (Dialect::MySql, "SELECT sleep(10)", false),
            (Dialect::MySql, "SELECT get_lock('x', 1)", false),
            (Dialect::MySql, "SELECT @v := id FROM orders", false),
            (
                Dialect::MySql,
                "SELECT id INTO @v FROM orders LIMIT 1",
                false,
            ),
            (
                Dialect::MySql,
                "INSERT INTO orders SELECT * FROM orders",
                false,
            ),
            (Dialect::MySql, "DO 1", false),
        ];
        for (dialect, sql, want) in cases {
            assert_eq!(s.decide_in(dialect, sql).reads_only, want, "{sql}");
        }
    }

    /// One line per case: identity, SQL → action, deciding rule (prefix).
    #[test]
    fn decisions_table() {
        let e = engine("");
        let cases = [
            (
                "host:10.0.1.5",
                "select id from orders",
                "allow",
                "policy.rules[0]",
            ),
            (
                "host:10.0.1.5",
                "select 1; select 2",
                "allow",
                "policy.rules[0]",
            ),
            (
                "host:10.0.1.5",
                "delete from orders",
                "deny",
                "policy.rules[1]",
            ),
            (
                "host:10.0.1.5",
                "select 1; delete from orders",
                "deny",
                "policy.rules[1]",
            ),
            (
                "host:10.0.1.5",
                "delete from orders where id = 1",
                "allow",
                "policy.rules[0]",
            ),
            (
                "host:10.0.1.5",
                "update orders set x = 1",
                "deny",
                "policy.rules[1]",
            ),
            (
                "host:10.0.1.5",
                "create table t (a int)",
                "approve",
                "policy.rules[2]",
            ),
            (
                "host:10.0.1.5",
                "select id from cards",
                "approve",
                "policy.rules[3]",
            ),
            (
                "host:10.0.1.5",
                "select id from cards limit 10",
                "allow",
                "policy.rules[0]",
            ),
            (
                "host:10.0.1.5",
                "select * from (select id from cards limit 10) s",
                "approve",
                "policy.rules[3]",
            ),
            (
                "host:10.0.1.5",
                "select id from cards limit 1000",
                "approve",
                "policy.rules[3]",
            ),
            (
                "host:10.0.1.5",
                "select pg_read_file('/etc/passwd')",
                "deny",
                "policy.rules[4]",
            ),
            (
                "host:10.0.1.5",
                "select lo_import('/etc/passwd')",
                "deny",
                "policy.rules[4]",
            ),
            (
                "host:10.0.1.5",
                "select pg_sleep(10)",
                "deny",
                "policy.deny_patterns[0]",
            ),
            (
                "host:10.0.1.5",
                "grant all on orders to x",
                "deny",
                "policy.default",
            ),
            ("host:10.0.1.5", "selec 1", "deny", "policy.unparseable"),
            ("host:10.0.9.9", "select 1", "deny", "policy.default"),
            ("uid:0", "selec 1", "allow", "policy.rules[5]"),
            (
                "host:10.0.2.1",
                "select * from orders",
                "allow",
                "policy.rules[6]",
            ),
            (
                "host:10.0.2.1",
                "select * from public.orders",
                "allow",
                "policy.rules[6]",
            ),
            (
                "host:10.0.2.1",
                "select * from other.orders",
                "deny",
                "policy.default",
            ),
            (
                "host:10.0.2.1",
                "select * from orders join refunds using (id)",
                "deny",
                "policy.default",
            ),
            // Sensitive columns.
            (
                "host:10.0.1.5",
                "select id from cards where pan = '4111111111111111' limit 1",
                "deny",
                "masking.probing",
            ),
            (
                "host:10.0.1.5",
                "select id from cards order by pan limit 1",
                "deny",
                "masking.probing",
            ),
            (
                "host:10.0.1.5",
                "create table x as select pan from cards",
                "deny",
                "masking.stored",
            ),
            (
                "host:10.0.1.5",
                "insert into x select holder from cards",
                "deny",
                "masking.stored",
            ),
            (
                "host:10.0.1.5",
                "insert into x select id from cards",
                "allow",
                "policy.rules[0]",
            ),
            (
                "uid:0",
                "create table x as select pan from cards",
                "deny",
                "masking.stored",
            ),
            (
                "host:10.0.1.5",
                "copy cards to stdout",
                "deny",
                "masking.copy",
            ),
            (
                "host:10.0.1.5",
                "copy (select pan from cards limit 1) to stdout",
                "deny",
                "masking.copy",
            ),
            (
                "host:10.0.1.5",
                "copy (select id from cards limit 1) to stdout",
                "allow",
                "policy.rules[0]",
            ),
            (
                "host:10.0.1.5",
                "select pg_notify('c', pan) from cards limit 1",
                "deny",
                "masking.side_channel",
            ),
            (
                "host:10.0.1.5",
                "select set_config('x', pan, false) from cards limit 1",
                "deny",
                "masking.side_channel",
            ),
            (
                "host:10.0.1.5",
                "select pg_notify('c', 'hello')",
                "allow",
                "policy.rules[0]",
            ),
            (
                "host:10.0.1.5",
                "select query_to_xml('select pan from cards', true, false, '')",
                "deny",
                "masking.dynamic_sql",
            ),
            (
                "host:10.0.1.5",
                "select table_to_xml('cards', true, false, '')",
                "deny",
                "masking.dynamic_sql",
            ),
            (
                "host:10.0.1.5",
                "select * from unnest((select array_agg(pan) from cards limit 1))",
                "deny",
                "masking.laundering",
            ),
        ];
        for (identity, sql, action, rule) in cases {
            let v = e.session(identity, &[], "pg").decide(sql);
            assert_eq!(v.action.as_str(), action, "{identity} {sql}: {v:?}");
            assert!(v.rule.starts_with(rule), "{identity} {sql}: {v:?}");
        }
    }

    #[test]
    fn groups_and_unknown_identities() {
        let policy: PolicyConfig = toml::from_str(
            r#"
default = "allow"
[[rules]]
name = "readers"
action = "deny"
identities = ["group:no-writes"]
classes = ["write"]
[[rules]]
name = "let unknown read"
action = "allow"
identities = ["unknown"]
classes = ["read"]
"#,
        )
        .unwrap();
        let e = Arc::new(Engine::new(&policy, &MaskingConfig::default()).unwrap());
        let g = vec!["no-writes".to_string()];
        let w = "insert into t values (1)";
        assert_eq!(e.session("agent", &g, "pg").decide(w).action, Action::Deny);
        assert_eq!(
            e.session("agent", &[], "pg").decide(w).action,
            Action::Allow
        );
        // unknown: only rules naming it apply, and its default is deny.
        let u = e.session("unknown", &g, "pg");
        assert_eq!(u.decide("select 1").action, Action::Allow);
        let v = u.decide(w);
        assert_eq!(
            (v.action, v.rule.as_str()),
            (Action::Deny, "policy.default")
        );
        assert!(!applies_to(&["*".into()], "unknown", &[]));
        assert!(applies_to(&[], "x", &[]));
        assert!(!applies_to(&[], "unknown", &[]));
    }

    /// One line per case: database user → decision of a write.
    #[test]
    fn rules_by_database_user() {
        let policy: PolicyConfig = toml::from_str(
            r#"
default = "allow"
[[rules]]
name = "reporting users only read"
action = "deny"
users = ["report*"]
classes = ["write"]
"#,
        )
        .unwrap();
        let e = Arc::new(Engine::new(&policy, &MaskingConfig::default()).unwrap());
        let w = "insert into t values (1)";
        for (user, want) in [
            (Some("reporter"), Action::Deny),
            (Some("report"), Action::Deny),
            (Some("agent"), Action::Allow),
            (Some(""), Action::Allow),
            (None, Action::Allow),
        ] {
            let v = e.session_as("agent", &[], "pg", user).decide(w);
            assert_eq!(v.action, want, "{user:?}: {v:?}");
            assert_eq!(
                e.session_as("agent", &[], "pg", user)
                    .decide("select 1")
                    .action,
                Action::Allow,
                "{user:?}"
            );
        }
    }

    /// One line per case: SQL → masks of the allowed statement.
    #[test]
    fn masks_table() {
        let e = engine("");
        let s = e.session("host:10.0.1.5", &[], "pg");
        let cases = [
            ("select pan from cards limit 1", "pan:pci"),
            (
                "select pan as p, holder from cards limit 1",
                "holder:redact,p:pci",
            ),
            ("select * from cards limit 1", "holder:redact,pan:pci"),
            (
                "select c.* from public.cards c limit 1",
                "holder:redact,pan:pci",
            ),
            ("select * from other.cards limit 1", "pan:pci"),
            ("select pan::text from cards limit 1", "pan:pci"),
            ("select reverse(pan) from cards limit 1", "reverse:redact"),
            ("select concat(pan, '') as x from cards limit 1", "x:redact"),
            (
                "select id from orders union select pan from cards limit 1",
                "id:pci",
            ),
            (
                "with c as (select pan from cards) select pan from c limit 1",
                "pan:pci",
            ),
            (
                "select row_to_json(c) from cards c limit 1",
                "row_to_json:redact",
            ),
            ("select count(pan) from cards limit 1", ""),
            ("select id from orders", ""),
        ];
        for (sql, want) in cases {
            let v = s.decide(sql);
            assert_eq!(v.action, Action::Allow, "{sql}: {v:?}");
            let got: Vec<String> = v
                .masks
                .iter()
                .map(|(l, f)| format!("{l}:{}", f.as_str()))
                .collect();
            assert_eq!(got.join(","), want, "{sql}");
        }
        // The unmasked identity gets no masks.
        let dba = e.session("uid:0", &[], "pg");
        assert!(dba.decide("select pan from cards").masks.is_empty());
    }

    #[test]
    fn laundering_can_deny_or_hold() {
        let e = engine("laundering = \"deny\"");
        let v = e
            .session("host:10.0.1.5", &[], "pg")
            .decide("select encode(pan::bytea, 'hex') from cards limit 1");
        assert_eq!(
            (v.action, v.rule.as_str()),
            (Action::Deny, "masking.laundering")
        );
        let e = engine("laundering = \"approve\"\nprobing = \"allow\"");
        let s = e.session("host:10.0.1.5", &[], "pg");
        assert_eq!(
            s.decide("select substr(pan, 1, 8) from cards limit 1")
                .action,
            Action::Approve
        );
        assert_eq!(
            s.decide("select id from cards where pan = '1' limit 1")
                .action,
            Action::Allow
        );
    }

    #[test]
    fn targets_scope_rules_and_columns() {
        let p: PolicyConfig = toml::from_str(
            "default = \"allow\"\n[[rules]]\naction = \"deny\"\ntargets = [\"billing\"]\nclasses = [\"write\"]",
        )
        .unwrap();
        let m: MaskingConfig = toml::from_str(
            "[[columns]]\ntarget = \"billing\"\ntable = \"t\"\ncolumn = \"c\"\nformat = \"pci\"",
        )
        .unwrap();
        let e = Arc::new(Engine::new(&p, &m).unwrap());
        assert_eq!(
            e.session("x", &[], "billing")
                .decide("insert into t values (1)")
                .action,
            Action::Deny
        );
        assert_eq!(
            e.session("x", &[], "other")
                .decide("insert into t values (1)")
                .action,
            Action::Allow
        );
        assert_eq!(
            e.session("x", &[], "billing")
                .decide("select c from t")
                .masks
                .len(),
            1
        );
        assert!(
            e.session("x", &[], "other")
                .decide("select c from t")
                .masks
                .is_empty()
        );
    }

    #[test]
    fn compile_errors_name_the_rule() {
        let p: PolicyConfig =
            toml::from_str("[[rules]]\nname = \"x\"\nclasses = [\"read\"]").unwrap();
        let err = Engine::new(&p, &MaskingConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("policy.rules[0]") && err.contains("action"),
            "{err}"
        );
        let p: PolicyConfig = toml::from_str("[[rules]]\naction = \"deny\"\nraw = true").unwrap();
        assert!(Engine::new(&p, &MaskingConfig::default()).is_err());
        assert!(toml::from_str::<PolicyConfig>("[[rules]]\naction = \"maybe\"").is_err());
        assert!(toml::from_str::<PolicyConfig>("[[rules]]\nactoin = \"deny\"").is_err());
    }

    const MYSQL_POLICY: &str = r#"
default = "deny"
[[rules]]
name = "agents"
action = "allow"
identities = ["host:10.0.1.*"]
classes = ["read", "write", "transaction", "utility"]
[[rules]]
name = "where"
action = "deny"
without_where = true
[[rules]]
name = "dba"
action = "allow"
identities = ["uid:0"]
raw = true
[[rules]]
name = "admin"
action = "approve"
classes = ["admin", "dcl", "ddl"]
[[rules]]
name = "sleep"
action = "deny"
functions = ["sleep", "benchmark"]
"#;

    fn mysql_engine(masking_extra: &str) -> Arc<Engine> {
        let p: PolicyConfig = toml::from_str(MYSQL_POLICY).unwrap();
        let m: MaskingConfig = toml::from_str(&format!("{masking_extra}\n{MASKING}")).unwrap();
        Arc::new(Engine::new(&p, &m).unwrap())
    }

    /// MySQL, one line per case: identity, SQL → action, deciding rule
    /// (prefix).
    #[test]
    fn mysql_decisions_table() {
        let e = mysql_engine("");
        let agent = "host:10.0.1.5";
        let cases = [
            (agent, "select id from orders", "allow", "policy.rules[0]"),
            (
                agent,
                "select pan from cards limit 1",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "select `pan` from `Cards` where id = 1",
                "allow",
                "policy.rules[0]",
            ),
            // Executable comments are code.
            (
                agent,
                "select id from cards where id = 1 /*! and pan like '4%' */",
                "deny",
                "masking.probing",
            ),
            (
                agent,
                "select id from cards where id = 1 /*!50000 and pan like '4%' */",
                "deny",
                "masking.probing",
            ),
            (
                agent,
                "select id from cards where id = 1 /*M!100100 and pan like '4%' */",
                "deny",
                "masking.probing",
            ),
            (
                agent,
                "select id from cards where id = 1 /* and pan like '4%' */",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "select id from cards where id = 1 # and pan like '4%'",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "select 1 /*! ; delete from orders */",
                "deny",
                "policy.rules[1]",
            ),
            (
                agent,
                "select 1 /*! ; select /*+ hint */ id from orders */",
                "deny",
                "policy.unparseable",
            ),
            (
                agent,
                "select 1 /*! , pan from cards",
                "deny",
                "policy.unparseable",
            ),
            (
                agent,
                "select 1 /*!500001 , pan from cards */",
                "deny",
                "policy.unparseable",
            ),
            (
                agent,
                "select id from cards where note = '/*! or pan like 4 */'",
                "allow",
                "policy.rules[0]",
            ),
            // File I/O: whoever asks.
            (
                agent,
                "select pan from cards into outfile '/tmp/x'",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "select pan from cards into outfile '/tmp/x'",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "select id into dumpfile '/tmp/x' from orders",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "load data local infile '/etc/passwd' into table t",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "load xml infile 'x' into table t",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "select load_file('/etc/shadow')",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "select 1; load data infile 'x' into table t",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "selec 1; load data infile 'x' into table t",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "selec pan into outfile '/tmp/x' from cards",
                "deny",
                "builtin.file_io",
            ),
            (
                "uid:0",
                "select 1 /*! , load_file('/x') ",
                "deny",
                "builtin.file_io",
            ),
            ("uid:0", "selec 1", "allow", "policy.rules[2]"),
            // Variables: laundering masking cannot follow.
            (
                agent,
                "select @v := pan from cards limit 1",
                "deny",
                "masking.laundering",
            ),
            (
                agent,
                "select pan into @v from cards limit 1",
                "deny",
                "masking.laundering",
            ),
            (
                agent,
                "select pan from cards where id = 1 into @v",
                "deny",
                "masking.laundering",
            ),
            (
                agent,
                "set @v = (select pan from cards limit 1)",
                "deny",
                "masking.laundering",
            ),
            (
                agent,
                "set @v := (select reverse(pan) from cards limit 1)",
                "deny",
                "masking.laundering",
            ),
            (
                agent,
                "do @v := (select holder from cards limit 1)",
                "deny",
                "masking.laundering",
            ),
            (
                agent,
                "select id into @v from cards limit 1",
                "allow",
                "policy.rules[0]",
            ),
            (agent, "set @v = 1", "allow", "policy.rules[0]"),
            (agent, "select @v", "allow", "policy.rules[0]"),
            (
                "uid:0",
                "set @v = (select pan from cards limit 1)",
                "allow",
                "policy.rules[2]",
            ),
            // PREPARE: decided as what it holds.
            (
                agent,
                "prepare s from 'select pan from cards limit 1'",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "prepare s from 'select id from cards where pan = ?'",
                "deny",
                "masking.probing",
            ),
            (
                agent,
                "prepare s from 'delete from orders'",
                "deny",
                "policy.rules[1]",
            ),
            (agent, "prepare s from @q", "deny", "builtin.dynamic_sql"),
            ("uid:0", "prepare s from @q", "deny", "builtin.dynamic_sql"),
            (agent, "execute s using @a", "allow", "policy.rules[0]"),
            (agent, "deallocate prepare s", "allow", "policy.rules[0]"),
            // HANDLER reads around SELECT.
            (agent, "handler cards open", "deny", "builtin.handler"),
            (
                agent,
                "handler db1.cards open as h",
                "deny",
                "builtin.handler",
            ),
            ("uid:0", "handler cards open", "allow", "policy.rules[2]"),
            (agent, "handler orders open", "allow", "policy.rules[0]"),
            (
                agent,
                "handler orders read first limit 10",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "handler cards read first where pan like '4%'",
                "deny",
                "masking.probing",
            ),
            (
                agent,
                "handler cards read pan_idx = ('4111111111111111')",
                "deny",
                "masking.probing",
            ),
            (agent, "handler orders close", "allow", "policy.rules[0]"),
            // Classification.
            (agent, "show tables", "allow", "policy.rules[0]"),
            (
                agent,
                "show tables where (select pan from cards limit 1) like '4%'",
                "deny",
                "masking.probing",
            ),
            (agent, "describe cards", "allow", "policy.rules[0]"),
            (agent, "use shop", "allow", "policy.rules[0]"),
            (agent, "set names utf8mb4", "allow", "policy.rules[0]"),
            (agent, "set autocommit = 0", "allow", "policy.rules[0]"),
            (agent, "kill query 12", "approve", "policy.rules[3]"),
            (agent, "flush privileges", "approve", "policy.rules[3]"),
            (
                agent,
                "purge binary logs to 'mysql-bin.000010'",
                "approve",
                "policy.rules[3]",
            ),
            (
                agent,
                "install plugin p soname 'p.so'",
                "approve",
                "policy.rules[3]",
            ),
            (
                agent,
                "create user 'u'@'%' identified by 'p'",
                "approve",
                "policy.rules[3]",
            ),
            (
                agent,
                "grant all on *.* to 'u'@'%'",
                "approve",
                "policy.rules[3]",
            ),
            (
                agent,
                "set global general_log = 1",
                "approve",
                "policy.rules[3]",
            ),
            (agent, "call p()", "approve", "policy.rules[3]"),
            (
                agent,
                "call p((select pan from cards limit 1))",
                "deny",
                "masking.stored",
            ),
            (agent, "do sleep(10)", "deny", "policy.rules[4]"),
            (
                agent,
                "lock tables orders write",
                "allow",
                "policy.rules[0]",
            ),
            // Writes.
            (
                agent,
                "replace into orders values (1)",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "replace into orders select pan from cards",
                "deny",
                "masking.stored",
            ),
            (
                agent,
                "insert into orders values (1) on duplicate key update n = n + 1",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "insert into cards (id, pan) values (1, '4') on duplicate key update pan = values(pan)",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "insert into orders set note = (select pan from cards limit 1)",
                "deny",
                "masking.stored",
            ),
            (
                agent,
                "update orders o join refunds r on o.id = r.id set o.x = 1",
                "deny",
                "policy.rules[1]",
            ),
            (
                agent,
                "update ignore orders set x = 1",
                "deny",
                "policy.rules[1]",
            ),
            (
                agent,
                "delete o from orders o join refunds r on o.id = r.id",
                "deny",
                "policy.rules[1]",
            ),
            (
                agent,
                "delete o from orders o join refunds r on o.id = r.id where r.x = 1",
                "allow",
                "policy.rules[0]",
            ),
            (
                agent,
                "select 1; delete from orders",
                "deny",
                "policy.rules[1]",
            ),
            // Settings that change how text is read.
            (
                agent,
                "set sql_mode = 'NO_BACKSLASH_ESCAPES'",
                "deny",
                "builtin.sql_mode",
            ),
            (
                "uid:0",
                "set sql_mode = 'ANSI_QUOTES'",
                "deny",
                "builtin.sql_mode",
            ),
            (
                agent,
                "set sql_mode = 'STRICT_ALL_TABLES'",
                "allow",
                "policy.rules[0]",
            ),
            (agent, "set names gbk", "deny", "builtin.charset"),
            // MySQL functions.
            (
                agent,
                "select get_lock(pan, 0) from cards limit 1",
                "deny",
                "masking.side_channel",
            ),
            (
                agent,
                "select id from cards where match(pan) against ('4111')",
                "deny",
                "masking.probing",
            ),
            (agent, "selec 1", "deny", "policy.unparseable"),
        ];
        for (identity, sql, action, rule) in cases {
            let v = e
                .session(identity, &[], "my")
                .decide_in(Dialect::MySql, sql);
            assert_eq!(v.action.as_str(), action, "{identity} {sql}: {v:?}");
            assert!(v.rule.starts_with(rule), "{identity} {sql}: {v:?}");
        }
    }

    /// MySQL, one line per case: SQL → masks (labels as MySQL names the
    /// result columns).
    #[test]
    fn mysql_masks_table() {
        let e = mysql_engine("");
        let s = e.session("host:10.0.1.5", &[], "my");
        let cases = [
            ("select pan from cards limit 1", "pan:pci"),
            ("select PAN from cards limit 1", "PAN:pci"),
            ("select `pan` as `P` from `cards` limit 1", "P:pci"),
            ("select * from cards limit 1", "holder:redact,pan:pci"),
            (
                "select * from public.cards limit 1",
                "holder:redact,pan:pci",
            ),
            ("select * from db1.cards limit 1", "pan:pci"),
            ("table cards", "holder:redact,pan:pci"),
            (
                "select reverse(pan) from cards limit 1",
                "reverse(pan):redact",
            ),
            ("select REVERSE( pan ) r from cards limit 1", "r:redact"),
            ("select hex(pan) from cards", "hex(pan):redact"),
            (
                "select to_base64(pan), unhex(pan) from cards",
                "to_base64(pan):redact,unhex(pan):redact",
            ),
            (
                "select concat(pan, '') from cards",
                "concat(pan, ''):redact",
            ),
            (
                "select concat_ws('-', id, pan) from cards",
                "concat_ws('-', id, pan):redact",
            ),
            (
                "select group_concat(pan) from cards",
                "group_concat(pan):redact",
            ),
            (
                "select json_object('p', pan) from cards",
                "json_object('p', pan):redact",
            ),
            (
                "select json_arrayagg(holder) from cards",
                "json_arrayagg(holder):redact",
            ),
            ("select elt(1, pan) from cards", "elt(1, pan):redact"),
            (
                "select insert(pan, 7, 6, 'xxxxxx') from cards",
                "insert(pan, 7, 6, 'xxxxxx'):redact",
            ),
            (
                "select lpad(pan, 20, '0') from cards",
                "lpad(pan, 20, '0'):redact",
            ),
            (
                "select replace(pan, '1', 'i') from cards",
                "replace(pan, '1', 'i'):redact",
            ),
            (
                "select mid(pan, 1, 8), right(pan, 8) from cards",
                "mid(pan, 1, 8):redact,right(pan, 8):redact",
            ),
            (
                "select substring(pan, 1, 8) from cards",
                "substring(pan, 1, 8):redact",
            ),
            (
                "select convert(pan using latin1) from cards",
                "convert(pan using latin1):redact",
            ),
            (
                "select cast(pan as char) from cards",
                "cast(pan as char):pci",
            ),
            ("select \"pan\" from cards", "pan:pci"),
            ("select /*!50000 pan */ from cards", "pan:pci"),
            ("select 1 /*!, pan from cards*/", "pan:pci"),
            ("select id --1, pan from cards", "pan:pci"),
            (
                "select reverse(pan /* why */) from cards",
                "reverse(pan ):redact",
            ),
            ("select x from (select pan as x from cards) s", "x:pci"),
            (
                "select `reverse(pan)` from (select reverse(pan) from cards) s",
                "reverse(pan):redact",
            ),
            (
                "prepare s from 'select reverse(pan) from cards'",
                "reverse(pan):redact",
            ),
            ("handler orders open", ""),
            ("select count(pan) from cards", ""),
            ("select id from orders", ""),
        ];
        for (sql, want) in cases {
            let v = s.decide_in(Dialect::MySql, sql);
            assert_eq!(v.action, Action::Allow, "{sql}: {v:?}");
            let got: Vec<String> = v
                .masks
                .iter()
                .map(|(l, f)| format!("{l}:{}", f.as_str()))
                .collect();
            assert_eq!(got.join(","), want, "{sql}");
        }
        // The database name is the schema: `db.table` matches exactly, an
        // unqualified table any database.
        assert_eq!(
            e.sensitive_format("my", "PUBLIC", "Cards", "Holder"),
            Some(MaskFormat::Redact)
        );
        assert_eq!(e.sensitive_format("my", "db1", "cards", "holder"), None);
        assert_eq!(
            e.sensitive_format("my", "db1", "cards", "pan"),
            Some(MaskFormat::Pci)
        );
    }

    #[test]
    fn mysql_variables_follow_the_laundering_setting() {
        for (setting, action) in [
            ("laundering = \"mask\"", Action::Deny),
            ("laundering = \"deny\"", Action::Deny),
            ("laundering = \"approve\"", Action::Approve),
        ] {
            let e = mysql_engine(setting);
            let s = e.session("host:10.0.1.5", &[], "my");
            for sql in [
                "select @v := pan from cards limit 1",
                "set @v = (select pan from cards limit 1)",
                "select pan into @v from cards limit 1",
            ] {
                let v = s.decide_in(Dialect::MySql, sql);
                assert_eq!(
                    (v.action, v.rule.as_str()),
                    (action, "masking.laundering"),
                    "{setting} {sql}"
                );
            }
        }
    }

    /// Deny patterns see MySQL text both as sent and as the server runs it.
    #[test]
    fn mysql_deny_patterns_see_the_executed_text() {
        let p: PolicyConfig =
            toml::from_str("default = \"allow\"\ndeny_patterns = [\"(?i)benchmark\\\\s*\\\\(\"]")
                .unwrap();
        let e = Arc::new(Engine::new(&p, &MaskingConfig::default()).unwrap());
        let s = e.session("x", &[], "my");
        for (sql, action) in [
            ("select benchmark(10, 1)", Action::Deny),
            ("select benchmark/**/(10, 1)", Action::Deny),
            ("select /*!benchmark*/(10, 1)", Action::Deny),
            ("select 1", Action::Allow),
        ] {
            let v = s.decide_in(Dialect::MySql, sql);
            assert_eq!(v.action, action, "{sql}: {v:?}");
        }
        // PostgreSQL reads `/**/` as a comment too, but only the text as
        // sent is matched there.
        assert_eq!(
            s.decide("select benchmark/**/(10, 1)").action,
            Action::Allow
        );
    }

    /// Found by the policy_sql fuzz target: two MySQL texts that differ
    /// only in comments normalise to one text, but MySQL labels their
    /// outputs differently (a column is named by its text without the
    /// comments), and the cache served the first one's labels to the
    /// second: its computed PAN column then had a mask for a label the
    /// server never sends.
    #[test]
    fn cache_keeps_texts_whose_comments_differ_apart() {
        let e = mysql_engine("");
        let s = e.session("host:10.0.1.5", &[], "my");
        let commented = "select concat(pan,/**/1) from cards limit 1";
        let plain = "select concat(pan, 1) from cards limit 1";
        let fresh = mysql_engine("")
            .session("host:10.0.1.5", &[], "my")
            .decide_in(Dialect::MySql, plain);
        assert_eq!(fresh.masks.len(), 1);
        assert_eq!(fresh.masks[0].0, "concat(pan, 1)");
        let first = s.decide_in(Dialect::MySql, commented);
        assert_eq!(first.masks.len(), 1);
        assert_eq!(first.masks[0].0, "concat(pan,1)");
        assert_eq!(s.decide_in(Dialect::MySql, plain), fresh);
        assert_eq!(s.decide_in(Dialect::MySql, commented), first);
    }

    /// A statement shape decided in one dialect never answers for the
    /// other, and a MySQL shape is the text the server runs.
    #[test]
    fn cache_keeps_dialects_and_executable_comments_apart() {
        let e = mysql_engine("");
        let s = e.session("host:10.0.1.5", &[], "my");
        let sql = "select id /*!, pan */ from cards limit 1";
        for _ in 0..2 {
            assert!(s.decide_in(Dialect::Postgres, sql).masks.is_empty());
            assert_eq!(s.decide_in(Dialect::MySql, sql).masks.len(), 1);
        }
        let sql = "select id from cards where id = 1 /*! or pan like '4%' */ limit 1";
        assert_eq!(s.decide(sql).action, Action::Allow);
        assert_eq!(s.decide_in(Dialect::MySql, sql).action, Action::Deny);
        // `select 1` cached first does not answer for its executable twin.
        assert!(s.decide_in(Dialect::MySql, "select 1").masks.is_empty());
        assert_eq!(
            s.decide_in(Dialect::MySql, "select 1 /*!, pan from cards*/")
                .masks
                .len(),
            1
        );
        // MySQL names `pan + 0` and `pan + 1` differently: not one shape.
        assert_eq!(
            s.decide_in(Dialect::MySql, "select pan + 0 from cards")
                .masks[0]
                .0,
            "pan + 0"
        );
        assert_eq!(
            s.decide_in(Dialect::MySql, "select pan + 1 from cards")
                .masks[0]
                .0,
            "pan + 1"
        );
        // Literals that decide stay: sql_mode.
        assert_eq!(
            s.decide_in(Dialect::MySql, "set sql_mode = ''").action,
            Action::Allow
        );
        assert_eq!(
            s.decide_in(Dialect::MySql, "set sql_mode = 'ANSI_QUOTES'")
                .action,
            Action::Deny
        );
        // The old entry points are PostgreSQL.
        let (v, x) = s.explain("select 1 /*!, pan from cards*/");
        assert!(v.masks.is_empty() && x.len() == 1);
        let (v, x) = s.explain_in(Dialect::MySql, "select 1 /*!, pan from cards*/; select 2");
        assert_eq!((v.masks.len(), x.len()), (1, 2));
    }

    #[test]
    fn glob_table() {
        for (p, t, want) in [
            ("*", "anything", true),
            ("host:10.0.1.*", "host:10.0.1.7", true),
            ("host:10.0.1.*", "host:10.0.10.7", false),
            ("lo_*", "lo_import", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
    }
}
