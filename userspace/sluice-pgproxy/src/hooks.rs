//! Where policy, masking and recording plug into a session.
//!
//! Each session gets its own [`SessionPolicy`] from [`Policy::session`],
//! told who the session is ([`SessionInfo`]). Every statement — simple-query
//! text, or Parse text with the Bind parameters that run it — passes
//! [`SessionPolicy::decide`] before it reaches the database.
//! [`PatternPolicy`] refuses statements matching configured regular
//! expressions; the rule and masking engine (`sluice-policy`, adapted in
//! `sluice-relay`) implements the same traits.
//!
//! On the way back, a session policy may give the session a [`Rewriter`]
//! ([`SessionPolicy::rewriter`]). Every DataRow, CopyData (database → client),
//! NoticeResponse, NotificationResponse and ErrorResponse then passes it,
//! one message at a time as it streams — a result is never buffered — with
//! what the engine knows about it: a row's [`Column`]s (name, source table
//! and column, type, and the format the values are really in), a COPY's
//! [`CopyFormat`]. A session without a rewriter forwards these frames
//! without decoding them. FunctionCallResponse (the fast-path interface)
//! does not pass the rewriter: it has no description, and a policy that
//! cares refuses FunctionCall in [`SessionPolicy::decide`].
use std::borrow::Cow;

use bytes::Bytes;
use regex::RegexSet;
pub use sluice_pgwire::backend::Fields;

/// A statement about to reach the database.
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    /// SQL text (a simple query may hold several statements).
    pub text: &'a str,
    /// Bound parameter values (extended protocol), None for NULL.
    pub params: &'a [Option<Bytes>],
    /// How it arrived: "simple" or "extended".
    pub protocol: &'static str,
}

/// What the policy decided.
#[derive(Debug)]
pub enum Decision {
    /// Let it through.
    Allow,
    /// Refuse it; the client gets SQLSTATE 42501 with this reason.
    Deny {
        /// Which rule refused it.
        rule: String,
    },
    /// Hold it until someone decides: the session sends what came before
    /// it, then waits (the client simply waits for its answer) until
    /// [`Hold::wait`] resolves, and lets it through or refuses it then.
    Hold(Hold),
}

impl Decision {
    /// Is it [`Decision::Allow`]?
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// A statement waiting for a decision made elsewhere (an approver).
pub struct Hold {
    /// The approval request's id, recorded with the statement.
    pub id: String,
    /// The rule that asked for the hold, and why.
    pub rule: String,
    /// Resolves to the decision. Dropped unresolved when the session ends
    /// first (the client left, the database closed).
    pub wait: std::pin::Pin<Box<dyn std::future::Future<Output = Settled> + Send>>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("id", &self.id)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

/// How a held statement was settled, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Let it through?
    pub allow: bool,
    /// `approved`, `granted`, `denied`, `expired`, `refused`.
    pub outcome: &'static str,
    /// Who decided (approvers), if anyone.
    pub by: Vec<String>,
    /// For a refusal: the client's error detail; for a grant: its id.
    pub reason: String,
}

/// Who a session is, for policies that decide per identity and target.
#[derive(Debug, Clone, Copy)]
pub struct SessionInfo<'a> {
    /// The wire protocol: "postgres" or "mysql" (the SQL dialect the
    /// statements are in).
    pub protocol: &'a str,
    /// The workload identity the session is recorded under.
    pub identity: &'a str,
    /// The identity's groups.
    pub groups: &'a [String],
    /// The target's name.
    pub target: &'a str,
    /// Database user from the startup message.
    pub user: &'a str,
    /// Database name from the startup message.
    pub database: &'a str,
}

/// Makes one [`SessionPolicy`] per session.
pub trait Policy: Send + Sync {
    /// The policy of one new session, asked for once when the session
    /// becomes ready.
    fn session(&self, info: &SessionInfo<'_>) -> Box<dyn SessionPolicy>;
}

/// Decides one session's statements. Must be fast and synchronous: it runs
/// inline on the session's client → database task for every statement. It
/// may keep state (`&mut self`), e.g. what it asked the rewriter to mask.
pub trait SessionPolicy: Send + Sync {
    /// Decide one statement.
    fn decide(&mut self, statement: &Statement<'_>) -> Decision;

    /// Whether the statement [`SessionPolicy::decide`] just allowed cannot
    /// change the database (a plain query, a transaction boundary, only
    /// functions known to change nothing). An engine may then send it
    /// while its record is still being made durable, and hold back only
    /// the answer until it is: nothing reaches the client, and nothing
    /// changes, that is not on disk. `false` (the default): the record is
    /// durable before the statement is sent.
    fn reads_only(&self) -> bool {
        false
    }

    /// A read-only query sluice runs on the session's own connection once
    /// it is ready, before the client's first statement (e.g. a catalog
    /// lookup). `None` (the default): nothing to run.
    fn startup_query(&mut self) -> Option<String> {
        None
    }

    /// The rows of [`SessionPolicy::startup_query`] (text values), or the
    /// error the database gave for it.
    fn startup_rows(&mut self, rows: Result<Vec<Vec<Option<String>>>, String>) {
        let _ = rows;
    }

    /// The session's rewriter, asked for once before the first statement.
    /// `None` (the default) leaves the database → client direction on its
    /// fast path: frames are forwarded from the read buffer after a header
    /// scan, and result context is not tracked at all.
    fn rewriter(&mut self) -> Option<Box<dyn Rewriter>> {
        None
    }
}

/// How values of a column (or of a COPY) are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Format code 0: the type's text output.
    Text,
    /// Format code 1: the type's binary send format.
    Binary,
}

impl Format {
    /// From a protocol format code. PostgreSQL only sends rows in codes 0
    /// and 1 (a Bind asking for another code fails before any row), so any
    /// other code is taken as binary: never mistaken for readable text.
    pub fn from_code(code: i16) -> Format {
        if code == 0 {
            Format::Text
        } else {
            Format::Binary
        }
    }
}

/// One column of a result as the client receives it: RowDescription's
/// field, with the format its values are actually in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name (its label in the query, e.g. `holder` or `?column?`).
    pub name: String,
    /// Source table OID, 0 if the column is not a plain table column.
    pub table_oid: u32,
    /// Source column number (attnum), 0 if not a plain table column.
    pub column: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Type size (negative: variable length).
    pub type_size: i16,
    /// Type modifier (e.g. varchar length + 4), -1 if none.
    pub type_modifier: i32,
    /// The format of this column's values in the DataRows: from the
    /// RowDescription PostgreSQL sent for this result (simple query, or
    /// Describe of the portal), or else the statement's description with
    /// the result-format codes of the Bind that created the portal.
    pub format: Format,
    /// Where the values come from by name, when the protocol says so
    /// (MySQL's column definitions name the database, table and column a
    /// plain column reads; PostgreSQL's give OIDs instead, and leave this
    /// `None`).
    pub origin: Option<ColumnOrigin>,
}

/// The table column a result column reads, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnOrigin {
    /// Database (MySQL) or schema.
    pub schema: String,
    /// Table, as defined (not its alias in the query).
    pub table: String,
    /// Column, as defined (not its label in the query).
    pub column: String,
}

/// The format of a COPY TO STDOUT stream (or of the server's half of
/// COPY BOTH), from its CopyOutResponse / CopyBothResponse. COPY carries
/// no column names: a rewriter that needs them must fail closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    /// Overall format: text (or CSV) lines, or PostgreSQL's binary COPY
    /// format (a header, then tuples, then a trailer).
    pub format: Format,
    /// Per-column formats (all equal to `format` in PostgreSQL 15).
    pub columns: Vec<Format>,
}

/// A LISTEN/NOTIFY notification on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The notifying backend's process id.
    pub pid: i32,
    /// Channel name.
    pub channel: String,
    /// Payload ("" if none).
    pub payload: String,
}

/// One DataRow value: `None` is NULL. Unchanged values can stay borrowed
/// from the row being rewritten.
pub type Value<'v> = Option<Cow<'v, [u8]>>;

/// What a rewriter does with a message that must reach the client (a row,
/// COPY data, an error): keep it as it is, replace its body, or end the
/// session. Rows cannot be dropped — CommandComplete has already counted
/// them — and neither can errors, which end what they answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite<T> {
    /// Forward the original bytes untouched.
    Keep,
    /// Send this body instead.
    Replace(T),
    /// Send nothing more: the client gets a FATAL error (SQLSTATE 54000,
    /// program limit exceeded) with this message, and the session ends.
    /// For limits that cannot be enforced by changing a message.
    End(String),
}

/// What a rewriter does with an informational message (a notice, a
/// notification): keep, replace, or withhold it. Clients never expect one
/// at a given point, so dropping it leaves the protocol intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteOrDrop<T> {
    /// Forward the original bytes untouched.
    Keep,
    /// Send this body instead.
    Replace(T),
    /// Send nothing.
    Drop,
}

/// Sees, and may change, what the database sends a client, one message at
/// a time and in order. One per session (`&mut self`: it may keep state,
/// e.g. a recorder's open result). Runs inline on the session's
/// database → client task, so it must be fast and must not block.
///
/// A replacement must keep the protocol valid: a row keeps its number of
/// values, and strings (notice, error and notification fields) contain no
/// NUL byte. The engine checks both and ends the session — fail closed,
/// nothing unrewritten is sent — if a replacement breaks them.
///
/// Every method defaults to [`Rewrite::Keep`] so that new message kinds
/// can be added without breaking rewriters; a masking rewriter must decide
/// deliberately for each kind it does not implement.
pub trait Rewriter: Send {
    /// A DataRow. `columns` describes it (same length as `values`), or is
    /// `None` when the engine cannot know what the row holds — e.g. the
    /// Execute of a portal whose statement was never described on this
    /// session (neither Describe S nor Describe P), a cursor opened by
    /// SQL `DECLARE` and run with the protocol's Execute, or anything after
    /// a message the engine could not place. A masking rewriter must treat
    /// `None` as "could be anything" and fail closed.
    fn data_row<'v>(
        &mut self,
        columns: Option<&[Column]>,
        values: &[Option<&'v [u8]>],
    ) -> Rewrite<Vec<Value<'v>>> {
        let _ = (columns, values);
        Rewrite::Keep
    }

    /// One CopyData message of a COPY TO STDOUT (or COPY BOTH) stream.
    /// PostgreSQL sends one message per row in text and CSV format, but the
    /// protocol does not promise message boundaries at rows. `format` is
    /// `None` only if no CopyOutResponse was seen (never, from PostgreSQL).
    fn copy_data(&mut self, format: Option<&CopyFormat>, data: &[u8]) -> Rewrite<Vec<u8>> {
        let _ = (format, data);
        Rewrite::Keep
    }

    /// A NoticeResponse (fields: `S` severity, `C` SQLSTATE, `M` message, …;
    /// strings that were not UTF-8 arrive with U+FFFD replacements).
    fn notice(&mut self, fields: &[(u8, String)]) -> RewriteOrDrop<Fields> {
        let _ = fields;
        RewriteOrDrop::Keep
    }

    /// A NotificationResponse (LISTEN/NOTIFY).
    fn notification(&mut self, notification: &Notification) -> RewriteOrDrop<Notification> {
        let _ = notification;
        RewriteOrDrop::Keep
    }

    /// An ErrorResponse: the database's, or sluice's refusal of a
    /// statement (SQLSTATE 42501) that replaces the error of its poison
    /// statement. sluice's own session-ending FATAL errors (lost database,
    /// invalid client message) do not pass here.
    fn error(&mut self, fields: &[(u8, String)]) -> Rewrite<Fields> {
        let _ = fields;
        Rewrite::Keep
    }

    /// A result ended (CommandComplete, EmptyQueryResponse, ErrorResponse)
    /// or paused (PortalSuspended: `suspended`, its portal may be resumed).
    /// Returns how many values it masked since the last call, by column
    /// name (or message kind), to record with that result.
    fn end_of_result(&mut self, suspended: bool) -> Vec<(String, u64)> {
        let _ = suspended;
        Vec::new()
    }
}

/// Refuses statements whose text matches any configured pattern, for every
/// session alike.
#[derive(Clone)]
pub struct PatternPolicy {
    set: std::sync::Arc<RegexSet>,
    patterns: std::sync::Arc<[String]>,
}

impl PatternPolicy {
    /// Compile `patterns` (regular expressions); an invalid one is an error
    /// naming it.
    pub fn new(patterns: &[String]) -> Result<PatternPolicy, regex::Error> {
        Ok(PatternPolicy {
            set: std::sync::Arc::new(RegexSet::new(patterns)?),
            patterns: patterns.into(),
        })
    }

    /// Decide one statement.
    pub fn check(&self, statement: &Statement<'_>) -> Decision {
        match self.set.matches(statement.text).iter().next() {
            Some(i) => Decision::Deny {
                rule: format!("deny_patterns[{i}] = {:?}", self.patterns[i]),
            },
            None => Decision::Allow,
        }
    }
}

impl Policy for PatternPolicy {
    fn session(&self, _info: &SessionInfo<'_>) -> Box<dyn SessionPolicy> {
        Box::new(self.clone())
    }
}

impl SessionPolicy for PatternPolicy {
    fn decide(&mut self, statement: &Statement<'_>) -> Decision {
        self.check(statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per case: statement text → denied?
    #[test]
    fn pattern_policy_table() {
        let p = PatternPolicy::new(&[
            "(?i)\\bdrop\\s+table\\b".into(),
            "(?i)^\\s*delete\\s+from\\s+\\w+\\s*;?\\s*$".into(),
        ])
        .unwrap();
        let cases = [
            ("select 1", false),
            ("DROP TABLE cards", true),
            ("select 'x'; drop   table t", true),
            ("delete from cards", true),
            ("delete from cards where id = 1", false),
            ("select 'dropped table'", false),
        ];
        for (text, denied) in cases {
            let d = p.check(&Statement {
                text,
                params: &[],
                protocol: "simple",
            });
            assert_eq!(matches!(d, Decision::Deny { .. }), denied, "{text}");
        }
    }

    #[test]
    fn invalid_pattern_is_an_error() {
        assert!(PatternPolicy::new(&["(".into()]).is_err());
    }
}
