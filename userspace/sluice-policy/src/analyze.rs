//! One SQL string parsed into what policy decides on.
//!
//! [`analyze`] parses with `sqlparser` in the PostgreSQL dialect,
//! [`analyze_in`] in either dialect (MySQL text is first read the way the
//! server reads it, see `mysql.rs`), and reports, per statement:
//!
//! - its [`Class`] and kind (`select`, `delete`, `create_table`, …);
//! - every base table it reads or writes, every function it calls, and the
//!   columns it references in predicates (WHERE, JOIN … ON, HAVING,
//!   GROUP BY, ORDER BY, window clauses, subqueries there);
//! - for DELETE and UPDATE, whether it has a WHERE clause, and for reads the
//!   outermost LIMIT (a LIMIT inside a subquery limits nothing the client
//!   receives);
//! - the lineage of each output column: which base-table columns its value
//!   comes from, and whether it is the column's value itself (through
//!   aliases, subqueries, CTEs, UNION branches and casts) or something
//!   computed from it (functions, operators, aggregates, constructors).
//!
//! Names follow PostgreSQL: unquoted identifiers fold to lower case, quoted
//! ones keep their case. In MySQL every name folds to lower case, backtick
//! quoted or not (column names are case-insensitive there, and folding
//! table names only ever matches more), and output labels are the names
//! MySQL gives result columns (see [`Output::label`]). Where a column could come from more than one table
//! (an unqualified name over a join), every candidate is reported — policy
//! errs towards "sensitive".
//!
//! Nothing here knows the database's catalog: `*` over a base table is
//! reported as such ([`Source::AllOf`]) and resolved by the caller, which
//! knows the sensitive columns.
use std::{cell::RefCell, collections::BTreeSet, fmt, ops::ControlFlow, rc::Rc};

use sqlparser::{
    ast::{
        self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
        ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins,
        Visit, Visitor,
    },
    dialect::PostgreSqlDialect,
    parser::Parser,
};

use crate::dialect::Dialect;

/// What kind of statement, for rules that allow or refuse whole classes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Reads data: SELECT, VALUES, COPY … TO, FETCH, EXPLAIN.
    Read,
    /// Changes data: INSERT, UPDATE, DELETE, MERGE, COPY … FROM.
    Write,
    /// Changes schema: CREATE, ALTER, DROP, TRUNCATE, COMMENT.
    Ddl,
    /// Changes privileges: GRANT, REVOKE, roles and users.
    Dcl,
    /// Runs code or administers the server: CALL, DO, VACUUM, SET ROLE,
    /// and every statement this module does not know.
    Admin,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT.
    Transaction,
    /// Session utilities: SET, RESET, SHOW, LISTEN, NOTIFY, PREPARE,
    /// EXECUTE, DEALLOCATE, DISCARD, DECLARE, CLOSE.
    Utility,
}

impl Class {
    /// The name used in configuration and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Ddl => "ddl",
            Class::Dcl => "dcl",
            Class::Admin => "admin",
            Class::Transaction => "transaction",
            Class::Utility => "utility",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A table as named in a statement: `schema` only when qualified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Schema, when the statement qualified the name.
    pub schema: Option<String>,
    /// Table (or view) name.
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Where an output value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// One column of a base table.
    Column {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
    },
    /// Every column of a base table (`*` or `t.*`, or a whole-row
    /// reference such as `row_to_json(t)`).
    AllOf(TableName),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Column { table, column } => write!(f, "{table}.{column}"),
            Source::AllOf(t) => write!(f, "{t}.*"),
        }
    }
}

/// The lineage of one output column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Base-table columns the value is made from.
    pub sources: BTreeSet<Source>,
    /// The value *is* a source column's value (through aliases, subqueries,
    /// CTEs, UNION branches and casts), rather than computed from it.
    pub direct: bool,
}

impl Lineage {
    fn direct(source: Source) -> Lineage {
        Lineage {
            sources: BTreeSet::from([source]),
            direct: true,
        }
    }

    fn constant() -> Lineage {
        Lineage::default()
    }

    fn derived(mut self) -> Lineage {
        self.direct = false;
        self
    }

    /// Values from either side (UNION branches, VALUES rows): still the
    /// column's value if every side with a source is.
    fn union(&mut self, other: &Lineage) {
        let direct = match (self.sources.is_empty(), other.sources.is_empty()) {
            (true, true) => false,
            (true, false) => other.direct,
            (false, true) => self.direct,
            (false, false) => self.direct && other.direct,
        };
        self.sources.extend(other.sources.iter().cloned());
        self.direct = direct;
    }

    fn merge(&mut self, other: Lineage) {
        self.sources.extend(other.sources);
        self.direct = false;
    }
}

/// One output column of a statement that returns rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The column's label as the database names it: PostgreSQL in
    /// RowDescription (alias, column name, function name, or `?column?`);
    /// MySQL in the column definition (alias as written, column name as
    /// written, else the expression's text as written without its
    /// comments). MySQL compares names without case: so should its
    /// masking.
    pub label: String,
    /// Where its value comes from.
    pub lineage: Lineage,
}

/// What one statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Class, for class rules.
    pub class: Class,
    /// Kind in snake case: `select`, `insert`, `copy`, `create_table`, …
    pub kind: String,
    /// Base tables (and views) named anywhere, CTE names excluded.
    pub tables: BTreeSet<TableName>,
    /// Tables it writes (INSERT, UPDATE, DELETE, MERGE, COPY FROM,
    /// TRUNCATE, and the target of CREATE TABLE AS / VIEW).
    pub writes: BTreeSet<TableName>,
    /// Functions called, lower case, schema dropped.
    pub functions: BTreeSet<String>,
    /// Columns that decide which rows are returned or changed.
    pub predicates: BTreeSet<Source>,
    /// Columns of a query whose result is stored rather than returned
    /// (INSERT … SELECT, CREATE TABLE AS, SELECT INTO, CREATE VIEW, UPDATE … SET).
    pub stored: BTreeSet<Source>,
    /// Columns whose values are assigned to variables (MySQL `@v := …`,
    /// `SET @v = …`, `SELECT … INTO @v`): a variable read back later has no
    /// lineage, so masking cannot follow the value there.
    pub assigned: BTreeSet<Source>,
    /// Refused whatever the rules say (file I/O, dynamic SQL, a session
    /// setting that would make the server read text differently).
    pub refusal: Option<Refusal>,
    /// DELETE or UPDATE: has a WHERE clause. Other kinds: true.
    pub has_where: bool,
    /// Rows the client can receive at most, from the outermost LIMIT or
    /// FETCH FIRST (`None`: unlimited or not a literal).
    pub limit: Option<u64>,
    /// Output columns, for statements that return rows to the client.
    pub outputs: Vec<Output>,
}

/// A statement sluice refuses whoever asks: the deciding rule and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The built-in rule (`builtin.file_io`, `builtin.dynamic_sql`, …).
    pub rule: String,
    /// Why, in words.
    pub reason: String,
}

/// Functions that only compute a value from their arguments (or read the
/// clock or the session's own state): calling them changes nothing in the
/// database. Lower case, as [`Facts::functions`] holds them.
const CHANGES_NOTHING: &[&str] = &[
    "abs",
    "avg",
    "bit_length",
    "btrim",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "current_date",
    "current_time",
    "current_timestamp",
    "date",
    "date_format",
    "date_trunc",
    "day",
    "extract",
    "floor",
    "greatest",
    "group_concat",
    "hour",
    "if",
    "ifnull",
    "isnull",
    "least",
    "left",
    "length",
    "localtime",
    "localtimestamp",
    "lower",
    "lpad",
    "ltrim",
    "max",
    "min",
    "minute",
    "mod",
    "month",
    "now",
    "nullif",
    "octet_length",
    "position",
    "power",
    "replace",
    "right",
    "round",
    "rpad",
    "rtrim",
    "second",
    "sign",
    "sqrt",
    "string_agg",
    "strpos",
    "substr",
    "substring",
    "sum",
    "to_char",
    "trim",
    "trunc",
    "truncate",
    "upper",
    "year",
];

impl Facts {
    /// Whether running this statement cannot change the database: a plain
    /// query or a transaction boundary (which only settles statements
    /// already decided and recorded), writing, storing and assigning
    /// nothing, calling only [`CHANGES_NOTHING`] functions. Anything
    /// unsure (another kind, an unknown function) is not.
    pub fn changes_nothing(&self) -> bool {
        let kind_ok = match self.class {
            Class::Read => self.kind == "select",
            Class::Transaction => matches!(
                self.kind.as_str(),
                "begin" | "commit" | "rollback" | "savepoint" | "release_savepoint"
            ),
            _ => false,
        };
        kind_ok
            && self.refusal.is_none()
            && self.writes.is_empty()
            && self.stored.is_empty()
            && self.assigned.is_empty()
            && self
                .functions
                .iter()
                .all(|f| CHANGES_NOTHING.binary_search(&f.as_str()).is_ok())
    }

    pub(crate) fn new(class: Class, kind: &str) -> Facts {
        Facts {
            class,
            kind: kind.to_string(),
            tables: BTreeSet::new(),
            writes: BTreeSet::new(),
            functions: BTreeSet::new(),
            predicates: BTreeSet::new(),
            stored: BTreeSet::new(),
            assigned: BTreeSet::new(),
            refusal: None,
            has_where: true,
            limit: None,
            outputs: Vec::new(),
        }
    }

    /// Every column the statement references in any role.
    pub fn all_sources(&self) -> impl Iterator<Item = &Source> {
        self.outputs
            .iter()
            .flat_map(|o| o.lineage.sources.iter())
            .chain(self.predicates.iter())
            .chain(self.stored.iter())
            .chain(self.assigned.iter())
    }
}

/// Why a string could not be analyzed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse: {0}")]
pub struct ParseError(pub String);

/// How the statement being analyzed is read, for the duration of one
/// analysis (names fold, labels are made, and some statements read,
/// differently in MySQL).
#[derive(Default)]
struct Ctx {
    dialect: Dialect,
    /// MySQL: the text given to sqlparser, for output labels.
    text: Option<Rc<LabelText>>,
}

/// The text a MySQL statement was parsed from: MySQL names an output
/// column by its text.
pub(crate) struct LabelText {
    /// The text sqlparser was given.
    pub(crate) text: String,
    /// Offsets of spaces that stand for comments (not part of names).
    pub(crate) synthetic: Vec<usize>,
}

thread_local! {
    static CTX: RefCell<Ctx> = RefCell::new(Ctx::default());
}

/// Restores the previous context when dropped.
pub(crate) struct CtxGuard(Option<Ctx>);

impl Drop for CtxGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            CTX.with(|c| *c.borrow_mut() = prev);
        }
    }
}

/// Analyze in `dialect` until the guard is dropped.
pub(crate) fn enter(dialect: Dialect, text: Option<LabelText>) -> CtxGuard {
    let new = Ctx {
        dialect,
        text: text.map(Rc::new),
    };
    CTX.with(|c| CtxGuard(Some(std::mem::replace(&mut *c.borrow_mut(), new))))
}

fn mysql() -> bool {
    CTX.with(|c| c.borrow().dialect == Dialect::MySql)
}

/// Parse and analyze one SQL string in a dialect.
pub fn analyze_in(dialect: Dialect, sql: &str) -> Result<Vec<Facts>, ParseError> {
    match dialect {
        Dialect::Postgres => analyze(sql),
        Dialect::MySql => crate::mysql::analyze(sql),
    }
}

/// Parse and analyze one SQL string (possibly several statements) in the
/// PostgreSQL dialect.
pub fn analyze(sql: &str) -> Result<Vec<Facts>, ParseError> {
    let _ctx = enter(Dialect::Postgres, None);
    // PostgreSQL reads U&"p\0061n" as the identifier `pan`; sqlparser reads
    // `U & "p\0061n"`. Two parsers disagreeing is a bypass: refuse to guess.
    if sql.as_bytes().windows(3).any(|w| {
        w[0].eq_ignore_ascii_case(&b'u') && w[1] == b'&' && (w[2] == b'"' || w[2] == b'\'')
    }) {
        return Err(ParseError(
            "Unicode-escaped identifiers and strings (U&\"…\", U&'…') are not supported".into(),
        ));
    }
    let statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| ParseError(e.to_string()))?;
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    Ok(statements.iter().map(statement).collect())
}

/// Analyze one parsed statement.
///
/// PREPARE and DECLARE … CURSOR are decided as the statement they hold:
/// that is what EXECUTE and FETCH run later, and the masks it asks for
/// stay in force for the session.
pub fn statement(stmt: &Statement) -> Facts {
    match stmt {
        Statement::Prepare { statement, .. } => return self::statement(statement),
        Statement::Declare { stmts } if stmts.len() == 1 => {
            if let Some(q) = &stmts[0].for_query {
                return self::statement(&Statement::Query(q.clone()));
            }
        }
        _ => {}
    }
    let mysql = mysql();
    let (class, kind) = if mysql {
        classify_mysql(stmt)
    } else {
        classify(stmt)
    };
    let mut w = Walker::default();
    let mut facts = Facts::new(class, kind);
    match stmt {
        Statement::Query(q) => {
            let out = w.query(q, &Scope::root());
            facts.outputs = out;
            facts.limit = limit_of(q);
            if query_writes(q) {
                facts.class = Class::Write;
            }
            if mysql
                && let SetExpr::Select(s) = q.body.as_ref()
                && s.into.is_some()
            {
                // MySQL has no SELECT … INTO table: INTO names variables,
                // and the row goes there instead of to the client.
                facts.kind = "select_into_variable".into();
                facts.assigned.extend(outputs_sources(&facts.outputs));
                facts.outputs.clear();
                facts.limit = None;
            } else if let SetExpr::Select(s) = q.body.as_ref()
                && s.into.is_some()
            {
                // SELECT … INTO new_table: a CTAS.
                facts.class = Class::Ddl;
                facts.kind = "select_into".into();
                facts.stored = outputs_sources(&facts.outputs);
                facts.outputs.clear();
            }
        }
        Statement::Insert(ins) => {
            if let ast::TableObject::TableName(n) = &ins.table {
                facts.writes.insert(table_name(n));
            }
            if let Some(src) = &ins.source {
                let out = w.query(src, &Scope::root());
                facts.stored = outputs_sources(&out);
            }
            // Values from assignments (MySQL `INSERT … SET`, ON DUPLICATE
            // KEY UPDATE, ON CONFLICT DO UPDATE) are stored too.
            let scope = Scope::with_table(insert_target(ins));
            let mut assignments: Vec<&ast::Assignment> = ins.assignments.iter().collect();
            match &ins.on {
                Some(ast::OnInsert::DuplicateKeyUpdate(a)) => assignments.extend(a),
                Some(ast::OnInsert::OnConflict(c)) => {
                    if let ast::OnConflictAction::DoUpdate(u) = &c.action {
                        assignments.extend(&u.assignments);
                        if let Some(sel) = &u.selection {
                            w.predicate(sel, &scope);
                        }
                    }
                }
                _ => {}
            }
            for a in assignments {
                let l = w.expr(&a.value, &scope);
                w.stored.extend(l.sources);
            }
            if let Some(ret) = &ins.returning {
                facts.outputs = w.projection(ret, &scope, None);
            }
        }
        Statement::Update(up) => {
            let root = Scope::root();
            let scope = w.from(std::slice::from_ref(&up.table), &root);
            for r in relation_names(&up.table) {
                facts.writes.insert(r);
            }
            let mut scope = scope;
            if let Some(from) = &up.from {
                let tables = match from {
                    ast::UpdateTableFromKind::BeforeSet(t)
                    | ast::UpdateTableFromKind::AfterSet(t) => t,
                };
                let extra = w.from(tables, &root);
                scope.relations.extend(extra.relations);
            }
            for a in &up.assignments {
                let l = w.expr(&a.value, &scope);
                w.stored.extend(l.sources);
            }
            facts.has_where = up.selection.is_some();
            if let Some(sel) = &up.selection {
                w.predicate(sel, &scope);
            }
            if let Some(ret) = &up.returning {
                facts.outputs = w.projection(ret, &scope, None);
            }
        }
        Statement::Delete(del) => {
            let from = match &del.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
            };
            let root = Scope::root();
            let mut scope = w.from(from, &root);
            for t in from {
                facts.writes.extend(relation_names(t));
            }
            if let Some(using) = &del.using {
                let extra = w.from(using, &root);
                scope.relations.extend(extra.relations);
            }
            facts.has_where = del.selection.is_some();
            if let Some(sel) = &del.selection {
                w.predicate(sel, &scope);
            }
            if let Some(ret) = &del.returning {
                facts.outputs = w.projection(ret, &scope, None);
            }
        }
        Statement::Copy {
            source, to, target, ..
        } => {
            let _ = target;
            match source {
                ast::CopySource::Query(q) => {
                    facts.outputs = w.query(q, &Scope::root());
                    facts.limit = limit_of(q);
                }
                ast::CopySource::Table {
                    table_name,
                    columns,
                } => {
                    let t = table_name_of(table_name);
                    if *to {
                        facts.outputs = if columns.is_empty() {
                            vec![Output {
                                label: "*".into(),
                                lineage: Lineage::direct(Source::AllOf(t.clone())),
                            }]
                        } else {
                            columns
                                .iter()
                                .map(|c| Output {
                                    label: ident(c),
                                    lineage: Lineage::direct(Source::Column {
                                        table: t.clone(),
                                        column: ident(c),
                                    }),
                                })
                                .collect()
                        };
                    } else {
                        facts.writes.insert(t);
                    }
                }
            }
        }
        Statement::CreateTable(ct) => {
            facts.writes.insert(table_name(&ct.name));
            if let Some(q) = &ct.query {
                let out = w.query(q, &Scope::root());
                facts.stored = outputs_sources(&out);
            }
        }
        Statement::CreateView(cv) => {
            facts.writes.insert(table_name(&cv.name));
            let out = w.query(&cv.query, &Scope::root());
            facts.stored = outputs_sources(&out);
        }
        Statement::Declare { stmts } => {
            for d in stmts {
                if let Some(q) = &d.for_query {
                    let out = w.query(q, &Scope::root());
                    facts.stored.extend(outputs_sources(&out));
                }
            }
        }
        Statement::Explain {
            statement, analyze, ..
        } => {
            let inner = self::statement(statement);
            // EXPLAIN ANALYZE runs the statement: it is what it runs.
            if *analyze {
                facts.class = inner.class;
            }
            facts.tables.extend(inner.tables);
            facts.writes.extend(inner.writes);
            facts.functions.extend(inner.functions);
            facts.predicates.extend(inner.predicates);
            facts.stored.extend(inner.stored);
            facts.assigned.extend(inner.assigned);
            facts.has_where = inner.has_where;
            if facts.refusal.is_none() {
                facts.refusal = inner.refusal;
            }
        }
        Statement::Call(f) => {
            // Values passed to a procedure go where sluice cannot follow.
            let l = w.expr(&Expr::Function(f.clone()), &Scope::root());
            w.stored.extend(l.sources);
        }
        Statement::Set(s) if mysql => {
            let root = Scope::root();
            for (name, values) in set_assignments(s) {
                for v in values {
                    let l = w.expr(v, &root);
                    w.assigned.extend(l.sources);
                }
                if facts.refusal.is_none() {
                    facts.refusal = mysql_setting_refusal(&name, values);
                }
            }
            if let ast::Set::SetNames { charset_name, .. } = s
                && crate::mysql::risky_charset(&charset_name.value)
            {
                facts.refusal = Some(crate::mysql::charset_refusal(&charset_name.value));
            }
        }
        Statement::LockTables { tables } => {
            for t in tables {
                facts.tables.insert(TableName {
                    schema: None,
                    name: ident(&t.table),
                });
            }
        }
        s if mysql && facts.kind == "show" => {
            // SHOW … WHERE: what the filter looks at chooses rows.
            let mut exprs = Vec::new();
            let _ = s.visit(&mut CollectExprs(&mut exprs, 0));
            let root = Scope::root();
            for e in exprs {
                w.predicate(&e, &root);
            }
        }
        _ => {}
    }
    facts.predicates.extend(std::mem::take(&mut w.predicates));
    facts.stored.extend(std::mem::take(&mut w.stored));
    facts.assigned.extend(std::mem::take(&mut w.assigned));
    facts.functions.extend(std::mem::take(&mut w.functions));
    // Everything named anywhere, whatever the walk above understood.
    let mut names = Names::default();
    let _ = stmt.visit(&mut names);
    for f in names.functions {
        facts.functions.insert(f);
    }
    for r in names.relations {
        if !w.ctes.contains(&r.name) || r.schema.is_some() {
            facts.tables.insert(r);
        }
    }
    for f in &names.table_functions {
        facts.tables.retain(|t| t.schema.is_some() || &t.name != f);
    }
    facts.tables.extend(facts.writes.iter().cloned());
    facts
}

fn outputs_sources(outputs: &[Output]) -> BTreeSet<Source> {
    outputs
        .iter()
        .flat_map(|o| o.lineage.sources.iter().cloned())
        .collect()
}

fn insert_target(ins: &ast::Insert) -> Relation {
    let table = match &ins.table {
        ast::TableObject::TableName(n) => table_name(n),
        ast::TableObject::TableFunction(f) => TableName {
            schema: None,
            name: object_last(&f.name),
        },
        ast::TableObject::TableQuery(_) => TableName {
            schema: None,
            name: String::new(),
        },
    };
    Relation {
        alias: ins
            .table_alias
            .as_ref()
            .map(|a| ident(&a.alias))
            .unwrap_or_else(|| table.name.clone()),
        kind: RelationKind::Table(table),
    }
}

/// Class and kind of a statement.
fn classify(stmt: &Statement) -> (Class, &'static str) {
    use Class::*;
    match stmt {
        Statement::Query(_) => (Read, "select"),
        Statement::Insert(_) => (Write, "insert"),
        Statement::Update(_) => (Write, "update"),
        Statement::Delete(_) => (Write, "delete"),
        Statement::Merge(_) => (Write, "merge"),
        Statement::Copy { to: true, .. } => (Read, "copy"),
        Statement::Copy { to: false, .. } => (Write, "copy"),
        Statement::Truncate(_) => (Ddl, "truncate"),
        Statement::CreateTable(_) => (Ddl, "create_table"),
        Statement::CreateView(_) => (Ddl, "create_view"),
        Statement::CreateIndex(_) => (Ddl, "create_index"),
        Statement::CreateSchema { .. } => (Ddl, "create_schema"),
        Statement::CreateDatabase { .. } => (Ddl, "create_database"),
        Statement::CreateSequence { .. } => (Ddl, "create_sequence"),
        Statement::CreateType { .. } => (Ddl, "create_type"),
        Statement::CreateDomain(_) => (Ddl, "create_domain"),
        Statement::CreateExtension(_) => (Ddl, "create_extension"),
        Statement::CreateFunction(_) => (Ddl, "create_function"),
        Statement::CreateProcedure { .. } => (Ddl, "create_procedure"),
        Statement::CreateTrigger(_) => (Ddl, "create_trigger"),
        Statement::CreatePolicy(_) => (Ddl, "create_policy"),
        Statement::AlterTable(_) => (Ddl, "alter_table"),
        Statement::AlterIndex { .. } => (Ddl, "alter_index"),
        Statement::AlterView { .. } => (Ddl, "alter_view"),
        Statement::AlterSchema(_) => (Ddl, "alter_schema"),
        Statement::AlterType(_) => (Ddl, "alter_type"),
        Statement::AlterFunction(_) => (Ddl, "alter_function"),
        Statement::AlterPolicy(_) => (Ddl, "alter_policy"),
        Statement::Drop {
            object_type: ast::ObjectType::Role | ast::ObjectType::User,
            ..
        } => (Dcl, "drop_role"),
        Statement::Drop { .. } => (Ddl, "drop"),
        Statement::DropFunction(_) => (Ddl, "drop_function"),
        Statement::DropTrigger(_) => (Ddl, "drop_trigger"),
        Statement::DropPolicy(_) => (Ddl, "drop_policy"),
        Statement::DropExtension(_) => (Ddl, "drop_extension"),
        Statement::Comment { .. } => (Ddl, "comment"),
        Statement::RenameTable(_) => (Ddl, "rename_table"),
        Statement::Grant(_) => (Dcl, "grant"),
        Statement::Revoke(_) => (Dcl, "revoke"),
        Statement::CreateRole(_) => (Dcl, "create_role"),
        Statement::CreateUser(_) => (Dcl, "create_user"),
        Statement::AlterRole { .. } => (Dcl, "alter_role"),
        Statement::AlterUser(_) => (Dcl, "alter_user"),
        Statement::StartTransaction { .. } => (Transaction, "begin"),
        Statement::Commit { .. } => (Transaction, "commit"),
        Statement::Rollback { .. } => (Transaction, "rollback"),
        Statement::Savepoint { .. } => (Transaction, "savepoint"),
        Statement::ReleaseSavepoint { .. } => (Transaction, "release_savepoint"),
        Statement::Set(s) => set_class(s),
        Statement::Reset(_) => (Utility, "reset"),
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => (Utility, "show"),
        Statement::LISTEN { .. } => (Utility, "listen"),
        Statement::UNLISTEN { .. } => (Utility, "unlisten"),
        Statement::NOTIFY { .. } => (Utility, "notify"),
        Statement::Prepare { .. } => (Utility, "prepare"),
        Statement::Execute { .. } => (Utility, "execute"),
        Statement::Deallocate { .. } => (Utility, "deallocate"),
        Statement::Discard { .. } => (Utility, "discard"),
        Statement::Declare { .. } => (Utility, "declare"),
        Statement::Fetch { .. } => (Read, "fetch"),
        Statement::Close { .. } => (Utility, "close"),
        Statement::Explain { .. } | Statement::ExplainTable { .. } => (Read, "explain"),
        Statement::Lock(_) => (Utility, "lock"),
        Statement::Call(_) => (Admin, "call"),
        Statement::Vacuum(_) => (Admin, "vacuum"),
        Statement::Analyze(_) => (Admin, "analyze"),
        Statement::Kill { .. } => (Admin, "kill"),
        _ => (Admin, "other"),
    }
}

/// Class and kind of a statement in MySQL, where some statements mean
/// something else than in PostgreSQL.
fn classify_mysql(stmt: &Statement) -> (Class, &'static str) {
    use Class::*;
    match stmt {
        Statement::Insert(i) if i.replace_into => (Write, "replace"),
        Statement::Set(s) => set_class_mysql(s),
        // RESET MASTER, RESET REPLICA, RESET PERSIST: server state.
        Statement::Reset(_) => (Admin, "reset"),
        Statement::ExplainTable { .. } => (Utility, "describe"),
        Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => (Utility, "show"),
        Statement::Use(_) => (Utility, "use"),
        Statement::Flush { .. } => (Admin, "flush"),
        Statement::LockTables { .. } => (Utility, "lock_tables"),
        Statement::UnlockTables => (Utility, "unlock_tables"),
        other => classify(other),
    }
}

/// The assignments of a SET: variable name (lower case, as written:
/// `@v`, `@@session.sql_mode`, `sql_mode`) and values.
fn set_assignments(s: &ast::Set) -> Vec<(String, &[Expr])> {
    match s {
        ast::Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => {
            let prefix = match scope {
                Some(ast::ContextModifier::Global) => "@@global.",
                _ => "",
            };
            vec![(
                format!("{prefix}{}", variable.to_string().to_lowercase()),
                values.as_slice(),
            )]
        }
        ast::Set::MultipleAssignments { assignments } => assignments
            .iter()
            .map(|a| {
                let prefix = match a.scope {
                    Some(ast::ContextModifier::Global) => "@@global.",
                    _ => "",
                };
                (
                    format!("{prefix}{}", a.name.to_string().to_lowercase()),
                    std::slice::from_ref(&a.value),
                )
            })
            .collect(),
        ast::Set::ParenthesizedAssignments { variables, values } => variables
            .iter()
            .map(|v| (v.to_string().to_lowercase(), values.as_slice()))
            .collect(),
        _ => Vec::new(),
    }
}

/// A MySQL system variable's name without `@@` and scope:
/// `@@session.sql_mode` → `sql_mode`. User variables keep their `@`.
fn system_variable(name: &str) -> &str {
    let Some(rest) = name.strip_prefix("@@") else {
        return name;
    };
    for scope in ["global.", "session.", "local.", "persist.", "persist_only."] {
        if let Some(v) = rest.strip_prefix(scope) {
            return v;
        }
    }
    rest
}

fn global_variable(name: &str) -> bool {
    name.starts_with("@@global.") || name.starts_with("@@persist")
}

/// `SET sql_mode` to a mode that changes how quotes are read, or to
/// anything sluice cannot read as a literal list of modes; `SET
/// character_set_client` to a character set sluice cannot read.
fn mysql_setting_refusal(name: &str, values: &[Expr]) -> Option<Refusal> {
    let literal = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                Some(s.clone())
            }
            _ => None,
        },
        // `SET sql_mode = ANSI`, `= DEFAULT`; not `= @variable`.
        Expr::Identifier(i) if i.quote_style.is_none() && !i.value.starts_with('@') => {
            Some(i.value.clone())
        }
        _ => None,
    };
    match system_variable(name) {
        "sql_mode" => {
            let value = match values {
                [one] => literal(one),
                _ => None,
            };
            match value {
                Some(v) if !crate::mysql::changes_quoting(&v) => None,
                Some(v) => Some(Refusal {
                    rule: "builtin.sql_mode".into(),
                    reason: format!(
                        "sql_mode {v:?} changes how the server reads quotes and backslashes (ANSI_QUOTES, NO_BACKSLASH_ESCAPES), so it would read statements differently from sluice"
                    ),
                }),
                None => Some(Refusal {
                    rule: "builtin.sql_mode".into(),
                    reason: "sql_mode set to a computed value: sluice must know the modes (ANSI_QUOTES and NO_BACKSLASH_ESCAPES change how statements are read); set a literal list".into(),
                }),
            }
        }
        "character_set_client" | "character_set_connection" => {
            let value = match values {
                [one] => literal(one),
                _ => None,
            };
            match value {
                Some(v) if !crate::mysql::risky_charset(&v) => None,
                Some(v) => Some(crate::mysql::charset_refusal(&v)),
                None => Some(crate::mysql::charset_refusal("(computed)")),
            }
        }
        _ => None,
    }
}

/// MySQL's SET: a session utility, except global settings (administration),
/// passwords (privileges) and autocommit (transactions).
fn set_class_mysql(s: &ast::Set) -> (Class, &'static str) {
    let names: Vec<String> = set_assignments(s).into_iter().map(|(n, _)| n).collect();
    if names.is_empty() {
        return match s {
            ast::Set::SetNames { .. } | ast::Set::SetNamesDefault {} => {
                (Class::Utility, "set_names")
            }
            other => set_class(other),
        };
    }
    if names.iter().any(|n| global_variable(n)) {
        return (Class::Admin, "set_global");
    }
    if names
        .iter()
        .any(|n| matches!(system_variable(n), "sql_log_bin" | "pseudo_thread_id"))
    {
        return (Class::Admin, "set");
    }
    if names.iter().any(|n| system_variable(n) == "password") {
        return (Class::Dcl, "set_password");
    }
    if names.iter().any(|n| system_variable(n) == "autocommit") {
        return (Class::Transaction, "set_autocommit");
    }
    (Class::Utility, "set")
}

/// SET is a session utility, except what changes who the session is.
fn set_class(s: &ast::Set) -> (Class, &'static str) {
    match s {
        ast::Set::SetRole { .. } => (Class::Admin, "set_role"),
        ast::Set::SingleAssignment { variable, .. } => {
            let name = variable.to_string().to_ascii_lowercase();
            if name == "role" || name == "session_authorization" || name.ends_with(".role") {
                (Class::Admin, "set_role")
            } else {
                (Class::Utility, "set")
            }
        }
        ast::Set::SetSessionAuthorization(_) => (Class::Admin, "set_session_authorization"),
        ast::Set::SetTransaction { .. } => (Class::Transaction, "set_transaction"),
        _ => (Class::Utility, "set"),
    }
}

/// True if a query contains a data-modifying CTE (`WITH d AS (DELETE …)`).
fn query_writes(q: &Query) -> bool {
    fn set_writes(s: &SetExpr) -> bool {
        match s {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                true
            }
            SetExpr::Query(q) => query_writes(q),
            SetExpr::SetOperation { left, right, .. } => set_writes(left) || set_writes(right),
            _ => false,
        }
    }
    q.with
        .as_ref()
        .is_some_and(|w| w.cte_tables.iter().any(|c| query_writes(&c.query)))
        || set_writes(&q.body)
}

/// The outermost LIMIT or FETCH FIRST, when it is a literal.
fn limit_of(q: &Query) -> Option<u64> {
    let lit = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse::<u64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let limit = match &q.limit_clause {
        Some(ast::LimitClause::LimitOffset { limit: Some(l), .. }) => lit(l),
        Some(ast::LimitClause::OffsetCommaLimit { limit, .. }) => lit(limit),
        _ => None,
    };
    let fetch = q
        .fetch
        .as_ref()
        .and_then(|f| f.quantity.as_ref())
        .and_then(lit);
    match (limit, fetch) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The name an identifier denotes: unquoted folds to lower case (MySQL:
/// every name folds).
fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() && !mysql() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// An identifier as an output label: MySQL keeps it as written.
fn label_ident(i: &Ident) -> String {
    if mysql() { i.value.clone() } else { ident(i) }
}

/// Does an output label name this (folded) column? MySQL compares names
/// without case.
fn same_label(label: &str, col: &str) -> bool {
    if mysql() {
        label.to_lowercase() == col
    } else {
        label == col
    }
}

fn object_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => ident(i),
            other => other.to_string().to_lowercase(),
        })
        .collect()
}

fn object_last(n: &ObjectName) -> String {
    object_parts(n).pop().unwrap_or_default()
}

/// A table name: the last part is the table, the one before the schema (a
/// database part in front is dropped: PostgreSQL checks it is the current
/// database).
pub fn table_name(n: &ObjectName) -> TableName {
    let mut parts = object_parts(n);
    let name = parts.pop().unwrap_or_default();
    TableName {
        schema: parts.pop(),
        name,
    }
}

fn table_name_of(n: &ObjectName) -> TableName {
    table_name(n)
}

fn relation_names(t: &TableWithJoins) -> Vec<TableName> {
    let mut out = Vec::new();
    for f in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
        if let TableFactor::Table {
            name, args: None, ..
        } = f
        {
            out.push(table_name(name));
        }
    }
    out
}

/// The label PostgreSQL gives an output expression without an alias
/// (`FigureColname`).
fn label(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        Expr::Nested(inner) => label(inner),
        Expr::Collate { expr, .. } => label(expr),
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(ast::AccessExpr::Dot(e)) => label(e),
            Some(ast::AccessExpr::Subscript(_)) => label(root),
            None => label(root),
        },
        Expr::Cast {
            expr, data_type, ..
        } => {
            let l = label(expr);
            if l == "?column?" {
                data_type_label(data_type)
            } else {
                l
            }
        }
        Expr::Function(f) => object_last(&f.name),
        Expr::Case { .. } => "case".into(),
        Expr::Array(_) => "array".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::ExprWithAlias { alias, .. }) => ident(alias),
                Some(SelectItem::UnnamedExpr(e)) => label(e),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        Expr::Substring { shorthand, .. } => if *shorthand { "substr" } else { "substring" }.into(),
        Expr::Trim { .. } => "btrim".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::Tuple(_) => "row".into(),
        _ => "?column?".into(),
    }
}

/// The label of a cast of a constant: the type's name.
fn data_type_label(t: &ast::DataType) -> String {
    let s = t.to_string().to_lowercase();
    let base = s.split('(').next().unwrap_or(&s).trim().to_string();
    match base.as_str() {
        "int" | "integer" | "int4" => "int4".into(),
        "bigint" | "int8" => "int8".into(),
        "smallint" | "int2" => "int2".into(),
        "character varying" | "varchar" => "varchar".into(),
        "character" | "char" => "bpchar".into(),
        "boolean" | "bool" => "bool".into(),
        "double precision" | "float8" => "float8".into(),
        "real" | "float4" => "float4".into(),
        "decimal" | "numeric" => "numeric".into(),
        other => other.to_string(),
    }
}

/// A relation in scope of a SELECT.
#[derive(Debug, Clone)]
struct Relation {
    /// How columns refer to it: its alias, or its bare name.
    alias: String,
    kind: RelationKind,
}

#[derive(Debug, Clone)]
enum RelationKind {
    /// A base table or view.
    Table(TableName),
    /// A subquery, CTE or VALUES: named output columns with lineage.
    Derived(Vec<Output>),
    /// A function or anything else whose columns are unknown: values from
    /// these sources.
    Opaque(Lineage),
}

/// Relations visible to an expression, innermost first via `outer`.
#[derive(Debug, Clone, Default)]
struct Scope<'p> {
    relations: Vec<Relation>,
    ctes: Vec<(String, Vec<Output>)>,
    outer: Option<&'p Scope<'p>>,
}

impl<'p> Scope<'p> {
    fn root() -> Scope<'static> {
        Scope::default()
    }

    fn with_table(r: Relation) -> Scope<'static> {
        Scope {
            relations: vec![r],
            ..Scope::default()
        }
    }

    fn child(&'p self) -> Scope<'p> {
        Scope {
            relations: Vec::new(),
            ctes: Vec::new(),
            outer: Some(self),
        }
    }

    fn cte(&self, name: &str) -> Option<&Vec<Output>> {
        self.ctes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
            .or_else(|| self.outer.and_then(|o| o.cte(name)))
    }

    /// Resolve a column reference: `parts` is `[col]`, `[rel, col]` or
    /// `[schema, rel, col]`.
    fn resolve(&self, parts: &[String]) -> Lineage {
        let Some((col, qual)) = parts.split_last() else {
            return Lineage::constant();
        };
        let here = if let Some(rel) = qual.last() {
            // Qualified: the relation with that alias (or table name).
            self.relations
                .iter()
                .filter(|r| {
                    &r.alias == rel
                        && match (&r.kind, qual.len()) {
                            (RelationKind::Table(t), 2) => {
                                t.schema.as_deref() == Some(&qual[0]) || t.schema.is_none()
                            }
                            _ => true,
                        }
                })
                .map(|r| column_of(r, col))
                .reduce(|mut a, b| {
                    a.merge(b);
                    a
                })
        } else {
            // Unqualified: derived relations that have it, else every base
            // table or opaque relation (the catalog would say which).
            let derived: Vec<Lineage> = self
                .relations
                .iter()
                .filter_map(|r| match &r.kind {
                    RelationKind::Derived(outs) => derived_column(outs, col),
                    _ => None,
                })
                .collect();
            let others: Vec<Lineage> = self
                .relations
                .iter()
                .filter(|r| !matches!(r.kind, RelationKind::Derived(_)))
                .map(|r| column_of(r, col))
                .collect();
            // A whole-row reference to a relation by its name (`select t
            // from t`, `row_to_json(t)`).
            let whole: Vec<Lineage> = self
                .relations
                .iter()
                .filter(|r| &r.alias == col)
                .map(whole_row)
                .collect();
            let mut all: Vec<Lineage> = derived;
            all.extend(others);
            all.extend(whole);
            if all.len() > 1 {
                let mut l = all.remove(0);
                let direct = all.iter().all(|x| x.direct) && l.direct;
                for x in all {
                    l.sources.extend(x.sources);
                }
                l.direct = direct;
                Some(l)
            } else {
                all.pop()
            }
        };
        match here {
            Some(l) => l,
            None => match self.outer {
                Some(o) => o.resolve(parts),
                // Nothing in scope has it: a parameter-less constant such as
                // CURRENT_USER parsed as an identifier, or an error the
                // database will report.
                None => Lineage::constant(),
            },
        }
    }
}

fn column_of(r: &Relation, col: &str) -> Lineage {
    match &r.kind {
        RelationKind::Table(t) => Lineage::direct(Source::Column {
            table: t.clone(),
            column: col.to_string(),
        }),
        RelationKind::Derived(outs) => derived_column(outs, col).unwrap_or_else(Lineage::constant),
        RelationKind::Opaque(l) => l.clone(),
    }
}

/// A named column of a derived relation: its output of that name, or, if
/// none, a column of a base table its `*` brought in (`select x.pan from
/// (select * from cards) x`).
fn derived_column(outs: &[Output], col: &str) -> Option<Lineage> {
    if let Some(o) = outs.iter().find(|o| same_label(&o.label, col)) {
        return Some(o.lineage.clone());
    }
    let mut l: Option<Lineage> = None;
    for o in outs.iter().filter(|o| o.label == "*") {
        for s in &o.lineage.sources {
            let one = match s {
                Source::AllOf(t) => Lineage {
                    sources: BTreeSet::from([Source::Column {
                        table: t.clone(),
                        column: col.to_string(),
                    }]),
                    direct: o.lineage.direct,
                },
                other => Lineage {
                    sources: BTreeSet::from([other.clone()]),
                    direct: false,
                },
            };
            match &mut l {
                Some(l) => l.union(&one),
                None => l = Some(one),
            }
        }
    }
    l
}

fn whole_row(r: &Relation) -> Lineage {
    match &r.kind {
        RelationKind::Table(t) => Lineage::direct(Source::AllOf(t.clone())).derived(),
        RelationKind::Derived(outs) => {
            let mut l = Lineage::constant();
            for o in outs {
                l.sources.extend(o.lineage.sources.iter().cloned());
            }
            l
        }
        RelationKind::Opaque(l) => l.clone().derived(),
    }
}

/// Walks queries with scopes, collecting lineage and predicate columns.
#[derive(Default)]
struct Walker {
    predicates: BTreeSet<Source>,
    stored: BTreeSet<Source>,
    assigned: BTreeSet<Source>,
    functions: BTreeSet<String>,
    ctes: BTreeSet<String>,
    depth: usize,
}

/// Queries nested deeper than this are refused by sqlparser itself
/// (recursion limit); this bound keeps the walk's own recursion in step.
const MAX_DEPTH: usize = 200;

impl Walker {
    /// A query's output columns.
    fn query(&mut self, q: &Query, outer: &Scope<'_>) -> Vec<Output> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            return Vec::new();
        }
        let mut scope = outer.child();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = ident(&cte.alias.name);
                self.ctes.insert(name.clone());
                let mut outs = self.query(&cte.query, &scope);
                rename(
                    &mut outs,
                    &cte.alias
                        .columns
                        .iter()
                        .map(|c| label_ident(&c.name))
                        .collect::<Vec<_>>(),
                );
                scope.ctes.push((name, outs));
            }
        }
        let outs = self.set_expr(&q.body, &scope);
        // ORDER BY sees the output columns and the FROM of a plain SELECT;
        // treat its references as predicates (they order, and with LIMIT,
        // pick rows).
        if let Some(ob) = &q.order_by
            && let ast::OrderByKind::Expressions(exprs) = &ob.kind
        {
            let mut s = scope.child();
            s.relations.push(Relation {
                alias: String::new(),
                kind: RelationKind::Derived(outs.clone()),
            });
            if let SetExpr::Select(sel) = q.body.as_ref() {
                let from = self.from(&sel.from, &scope);
                s.relations.extend(from.relations);
            }
            for e in exprs {
                match ordinal(&e.expr).and_then(|n| outs.get(n)) {
                    // ORDER BY 2: the second output column.
                    Some(o) => self.predicates.extend(o.lineage.sources.iter().cloned()),
                    None => self.predicate(&e.expr, &s),
                }
            }
        }
        self.depth -= 1;
        outs
    }

    fn set_expr(&mut self, body: &SetExpr, scope: &Scope<'_>) -> Vec<Output> {
        match body {
            SetExpr::Select(s) => self.select(s, scope),
            SetExpr::Query(q) => self.query(q, scope),
            SetExpr::SetOperation { left, right, .. } => {
                // Labels come from the left branch; values from both.
                let mut l = self.set_expr(left, scope);
                let r = self.set_expr(right, scope);
                for (i, o) in l.iter_mut().enumerate() {
                    if let Some(ro) = r.get(i) {
                        o.lineage.union(&ro.lineage);
                    }
                }
                // A star on one side: the other side's extra columns still
                // carry their sources.
                if r.len() > l.len() {
                    l.extend(r.into_iter().skip(l.len()));
                }
                l
            }
            SetExpr::Values(v) => {
                let mut outs: Vec<Output> = Vec::new();
                for row in &v.rows {
                    for (i, e) in row.iter().enumerate() {
                        let lin = self.expr(e, scope);
                        match outs.get_mut(i) {
                            Some(o) => o.lineage.union(&lin),
                            None => outs.push(Output {
                                label: if mysql() {
                                    format!("column_{i}")
                                } else {
                                    format!("column{}", i + 1)
                                },
                                lineage: lin,
                            }),
                        }
                    }
                }
                outs
            }
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                let inner = statement(s);
                self.predicates.extend(inner.predicates.iter().cloned());
                self.stored.extend(inner.stored.iter().cloned());
                self.assigned.extend(inner.assigned.iter().cloned());
                self.functions.extend(inner.functions.iter().cloned());
                inner.outputs
            }
            SetExpr::Table(t) => {
                let name = TableName {
                    schema: t.schema_name.as_ref().map(|s| s.to_lowercase()),
                    name: t.table_name.clone().unwrap_or_default().to_lowercase(),
                };
                vec![Output {
                    label: "*".into(),
                    lineage: Lineage::direct(Source::AllOf(name)),
                }]
            }
        }
    }

    /// FROM: the relations a SELECT's expressions see. Join conditions are
    /// predicates.
    fn from<'s>(&mut self, from: &[TableWithJoins], outer: &'s Scope<'s>) -> Scope<'s> {
        let mut scope = outer.child();
        for twj in from {
            self.factor(&twj.relation, &mut scope);
            for j in &twj.joins {
                self.factor(&j.relation, &mut scope);
                if let Some(ast::JoinConstraint::On(e)) = join_constraint(&j.join_operator) {
                    let e = e.clone();
                    self.predicate(&e, &scope);
                }
            }
        }
        scope
    }

    fn factor(&mut self, f: &TableFactor, scope: &mut Scope<'_>) {
        match f {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if let Some(args) = args {
                    // A function in FROM: its values come from its
                    // arguments.
                    let mut l = Lineage::constant();
                    for a in &args.args {
                        if let Some(e) = function_arg_expr(a) {
                            l.merge(self.expr(e, scope));
                        }
                    }
                    self.functions.insert(object_last(name));
                    scope.relations.push(Relation {
                        alias: alias
                            .as_ref()
                            .map(|a| ident(&a.name))
                            .unwrap_or_else(|| object_last(name)),
                        kind: RelationKind::Opaque(l.derived()),
                    });
                    return;
                }
                let t = table_name(name);
                let cte = if t.schema.is_none() {
                    scope.cte(&t.name).cloned()
                } else {
                    None
                };
                let alias_name = alias.as_ref().map(|a| ident(&a.name));
                let kind = match cte {
                    Some(mut outs) => {
                        if let Some(a) = alias {
                            rename(
                                &mut outs,
                                &a.columns
                                    .iter()
                                    .map(|c| label_ident(&c.name))
                                    .collect::<Vec<_>>(),
                            );
                        }
                        RelationKind::Derived(outs)
                    }
                    None => {
                        if let Some(a) = alias
                            && !a.columns.is_empty()
                        {
                            // Renamed columns of a base table: positions
                            // unknown without the catalog; every renamed
                            // column may be any of the table's.
                            let outs = a
                                .columns
                                .iter()
                                .map(|c| Output {
                                    label: label_ident(&c.name),
                                    lineage: Lineage {
                                        sources: BTreeSet::from([Source::AllOf(t.clone())]),
                                        direct: true,
                                    },
                                })
                                .collect();
                            RelationKind::Derived(outs)
                        } else {
                            RelationKind::Table(t.clone())
                        }
                    }
                };
                scope.relations.push(Relation {
                    alias: alias_name.unwrap_or(t.name),
                    kind,
                });
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                // LATERAL subqueries see the relations before them.
                let mut outs = self.query(subquery, scope);
                let name = match alias {
                    Some(a) => {
                        rename(
                            &mut outs,
                            &a.columns
                                .iter()
                                .map(|c| label_ident(&c.name))
                                .collect::<Vec<_>>(),
                        );
                        ident(&a.name)
                    }
                    None => String::new(),
                };
                scope.relations.push(Relation {
                    alias: name,
                    kind: RelationKind::Derived(outs),
                });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let mut inner = scope.child();
                self.factor(&table_with_joins.relation, &mut inner);
                for j in &table_with_joins.joins {
                    self.factor(&j.relation, &mut inner);
                    if let Some(ast::JoinConstraint::On(e)) = join_constraint(&j.join_operator) {
                        self.predicate(e, &inner);
                    }
                }
                let rels = inner.relations;
                match alias {
                    Some(a) => {
                        let mut l = Lineage::constant();
                        for r in &rels {
                            l.sources.extend(whole_row(r).sources);
                        }
                        scope.relations.push(Relation {
                            alias: ident(&a.name),
                            kind: RelationKind::Opaque(l),
                        });
                    }
                    None => scope.relations.extend(rels),
                }
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                let mut l = Lineage::constant();
                for a in args {
                    if let Some(e) = function_arg_expr(a) {
                        l.merge(self.expr(e, scope));
                    }
                }
                self.functions.insert(object_last(name));
                scope.relations.push(Relation {
                    alias: alias
                        .as_ref()
                        .map(|a| ident(&a.name))
                        .unwrap_or_else(|| object_last(name)),
                    kind: RelationKind::Opaque(l.derived()),
                });
            }
            other => {
                // UNNEST, table functions, JSON_TABLE, …: whatever their
                // expressions reference.
                let mut l = Lineage::constant();
                let mut exprs = Vec::new();
                let _ = other.visit(&mut CollectExprs(&mut exprs, 0));
                for e in exprs {
                    l.merge(self.expr(&e, scope));
                }
                let alias = match other {
                    TableFactor::UNNEST { alias, .. }
                    | TableFactor::TableFunction { alias, .. }
                    | TableFactor::JsonTable { alias, .. } => {
                        alias.as_ref().map(|a| ident(&a.name)).unwrap_or_default()
                    }
                    _ => String::new(),
                };
                scope.relations.push(Relation {
                    alias,
                    kind: RelationKind::Opaque(l.derived()),
                });
            }
        }
    }

    fn select(&mut self, s: &Select, outer: &Scope<'_>) -> Vec<Output> {
        let scope = self.from(&s.from, outer);
        let texts = if mysql() { item_texts(s) } else { None };
        let outs = self.projection(&s.projection, &scope, texts.as_deref());
        if s.into.is_some() && mysql() {
            // SELECT … INTO @v in a subquery: the row goes to variables.
            self.assigned.extend(outputs_sources(&outs));
        }
        if let Some(e) = &s.selection {
            self.predicate(e, &scope);
        }
        if let Some(e) = &s.having {
            self.predicate(e, &scope);
        }
        if let Some(e) = &s.qualify {
            self.predicate(e, &scope);
        }
        if let ast::GroupByExpr::Expressions(exprs, _) = &s.group_by {
            for e in exprs {
                match ordinal(e).and_then(|n| outs.get(n)) {
                    Some(o) => self.predicates.extend(o.lineage.sources.iter().cloned()),
                    None => self.predicate(e, &scope),
                }
            }
        }
        if let Some(ast::Distinct::On(exprs)) = &s.distinct {
            for e in exprs {
                self.predicate(e, &scope);
            }
        }
        // WINDOW w AS (PARTITION BY … ORDER BY …): like an inline window.
        for w in &s.named_window {
            if let ast::NamedWindowExpr::WindowSpec(spec) = &w.1 {
                for e in &spec.partition_by {
                    self.predicate(e, &scope);
                }
                for o in &spec.order_by {
                    self.predicate(&o.expr, &scope);
                }
            }
        }
        outs
    }

    /// A SELECT list (or RETURNING) in `scope`. `texts`: each item's text
    /// as written (MySQL names unaliased expressions by it).
    fn projection(
        &mut self,
        items: &[SelectItem],
        scope: &Scope<'_>,
        texts: Option<&[String]>,
    ) -> Vec<Output> {
        let mut outs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                SelectItem::UnnamedExpr(e) => outs.push(Output {
                    label: if mysql() {
                        mysql_label(e, texts.and_then(|t| t.get(i)))
                    } else {
                        label(e)
                    },
                    lineage: self.expr(e, scope),
                }),
                SelectItem::ExprWithAlias { expr, alias } => outs.push(Output {
                    label: label_ident(alias),
                    lineage: self.expr(expr, scope),
                }),
                SelectItem::ExprWithAliases { expr, aliases } => {
                    let l = self.expr(expr, scope);
                    for a in aliases {
                        outs.push(Output {
                            label: label_ident(a),
                            lineage: l.clone(),
                        });
                    }
                }
                SelectItem::Wildcard(_) => {
                    for r in &scope.relations {
                        star(r, &mut outs);
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n) => {
                        let parts = object_parts(n);
                        let rel = parts.last().cloned().unwrap_or_default();
                        let mut found = false;
                        for r in scope.relations.iter().filter(|r| r.alias == rel) {
                            star(r, &mut outs);
                            found = true;
                        }
                        if !found {
                            outs.push(Output {
                                label: "*".into(),
                                lineage: scope.resolve(&parts),
                            });
                        }
                    }
                    ast::SelectItemQualifiedWildcardKind::Expr(e) => outs.push(Output {
                        label: "*".into(),
                        lineage: self.expr(e, scope).derived(),
                    }),
                },
            }
        }
        outs
    }

    /// Columns referenced in a predicate position.
    fn predicate(&mut self, e: &Expr, scope: &Scope<'_>) {
        let l = self.expr(e, scope);
        self.predicates.extend(l.sources);
    }

    /// The lineage of an expression in `scope`.
    fn expr(&mut self, e: &Expr, scope: &Scope<'_>) -> Lineage {
        if mysql()
            && let Some(l) = self.mysql_expr(e, scope)
        {
            return l;
        }
        match e {
            Expr::Identifier(i) => scope.resolve(&[ident(i)]),
            Expr::CompoundIdentifier(parts) => {
                scope.resolve(&parts.iter().map(ident).collect::<Vec<_>>())
            }
            Expr::Nested(inner) => self.expr(inner, scope),
            Expr::Cast { expr, .. } => self.expr(expr, scope),
            Expr::Collate { expr, .. } => self.expr(expr, scope),
            Expr::Subquery(q) => {
                let outs = self.query(q, scope);
                let mut l = Lineage::constant();
                let direct = outs.len() == 1 && outs[0].lineage.direct;
                for o in outs {
                    l.sources.extend(o.lineage.sources);
                }
                l.direct = direct && !l.sources.is_empty();
                l
            }
            Expr::Exists { subquery, .. } => {
                // EXISTS returns a boolean: what it looked at is a predicate.
                let outs = self.query(subquery, scope);
                for o in outs {
                    self.predicates.extend(o.lineage.sources);
                }
                Lineage::constant()
            }
            Expr::InSubquery { expr, subquery, .. } => {
                let mut l = self.expr(expr, scope);
                for o in self.query(subquery, scope) {
                    l.sources.extend(o.lineage.sources);
                }
                self.predicates.extend(l.sources);
                Lineage::constant()
            }
            Expr::Function(f) => {
                let name = object_last(&f.name);
                self.functions.insert(name.clone());
                let mut l = Lineage::constant();
                match &f.args {
                    FunctionArguments::Subquery(q) => {
                        for o in self.query(q, scope) {
                            l.sources.extend(o.lineage.sources);
                        }
                    }
                    FunctionArguments::List(list) => {
                        for a in &list.args {
                            match function_arg(a) {
                                FunctionArgExpr::Expr(e) => l.merge(self.expr(e, scope)),
                                FunctionArgExpr::QualifiedWildcard(n) => {
                                    let rel = object_last(n);
                                    for r in scope.relations.iter().filter(|r| r.alias == rel) {
                                        l.merge(whole_row(r));
                                    }
                                }
                                FunctionArgExpr::Wildcard
                                | FunctionArgExpr::WildcardWithOptions(_) => {
                                    // count(*) reads no value; other
                                    // functions of `*` see every column.
                                    if name != "count" {
                                        for r in &scope.relations {
                                            l.merge(whole_row(r));
                                        }
                                    }
                                }
                            }
                        }
                        for c in &list.clauses {
                            let mut exprs = Vec::new();
                            let _ = c.visit(&mut CollectExprs(&mut exprs, 0));
                            for e in exprs {
                                l.merge(self.expr(&e, scope));
                            }
                        }
                    }
                    FunctionArguments::None => {}
                }
                // Window and FILTER clauses decide which rows feed it.
                if let Some(filter) = &f.filter {
                    self.predicate(filter, scope);
                }
                if let Some(ast::WindowType::WindowSpec(spec)) = &f.over {
                    for e in &spec.partition_by {
                        self.predicate(e, scope);
                    }
                    for o in &spec.order_by {
                        self.predicate(&o.expr, scope);
                    }
                }
                // count() reveals how many, not what.
                if name == "count" {
                    l.sources.clear();
                }
                l.derived()
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut l = Lineage::constant();
                if let Some(op) = operand {
                    self.predicate(op, scope);
                }
                for c in conditions {
                    self.predicate(&c.condition, scope);
                    l.merge(self.expr(&c.result, scope));
                }
                if let Some(e) = else_result {
                    l.merge(self.expr(e, scope));
                }
                l.derived()
            }
            _ => {
                // Every other expression: computed from what it contains.
                let mut l = Lineage::constant();
                let mut children = Vec::new();
                let _ = e.visit(&mut Children {
                    out: &mut children,
                    root: true,
                    depth: 0,
                });
                for c in children {
                    l.merge(self.expr(&c, scope));
                }
                // Subqueries directly inside (ANY(SELECT …), ARRAY(SELECT …)).
                let mut queries = Vec::new();
                let _ = e.visit(&mut TopQueries {
                    out: &mut queries,
                    expr_depth: 0,
                });
                for q in queries {
                    for o in self.query(&q, scope) {
                        l.sources.extend(o.lineage.sources);
                    }
                }
                l.derived()
            }
        }
    }
}

impl Walker {
    /// Expressions MySQL reads differently; None: as in PostgreSQL.
    fn mysql_expr(&mut self, e: &Expr, scope: &Scope<'_>) -> Option<Lineage> {
        match e {
            // `@v`, `@@sql_mode`, `@@session.x`: variables, not columns.
            // What a variable holds is unknown here: its value is left to
            // the content detectors.
            Expr::Identifier(i) if i.quote_style.is_none() && i.value.starts_with('@') => {
                Some(Lineage::constant())
            }
            Expr::CompoundIdentifier(parts)
                if parts
                    .first()
                    .is_some_and(|i| i.quote_style.is_none() && i.value.starts_with('@')) =>
            {
                Some(Lineage::constant())
            }
            // `@v := expr`: the value is also kept in a variable.
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Assignment,
                right,
            } => {
                let _ = self.expr(left, scope);
                let l = self.expr(right, scope);
                self.assigned.extend(l.sources.iter().cloned());
                Some(l.derived())
            }
            // "x" is a string, unless the session runs with ANSI_QUOTES:
            // read it as the column it could name too.
            Expr::Value(v) => match &v.value {
                ast::Value::DoubleQuotedString(name) => {
                    let l = scope.resolve(&[name.to_lowercase()]);
                    Some(l)
                }
                _ => None,
            },
            // MATCH (col, …) AGAINST (…): the columns are names, not
            // expressions.
            Expr::MatchAgainst { columns, .. } => {
                let mut l = Lineage::constant();
                for c in columns {
                    l.merge(scope.resolve(&object_parts(c)));
                }
                Some(l.derived())
            }
            // VALUES(col) in ON DUPLICATE KEY UPDATE: the value being
            // inserted, not the stored one.
            Expr::Function(f) if object_last(&f.name) == "values" => {
                self.functions.insert("values".into());
                Some(Lineage::constant())
            }
            _ => None,
        }
    }
}

/// MySQL's name for an unaliased output: a column reference is named by
/// the column as written, a string by its value, anything else by its
/// text as written (without comments).
fn mysql_label(e: &Expr, text: Option<&String>) -> String {
    let mut inner = e;
    while let Expr::Nested(x) = inner {
        inner = x;
    }
    match inner {
        Expr::Identifier(i) => return label_ident(i),
        Expr::CompoundIdentifier(parts) => {
            return parts.last().map(label_ident).unwrap_or_default();
        }
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                return s.clone();
            }
            _ => {}
        },
        _ => {}
    }
    match text {
        Some(t) => t.clone(),
        None => e.to_string(),
    }
}

/// Byte offset of a sqlparser location (1-based line and character).
fn offset(text: &str, loc: sqlparser::tokenizer::Location) -> Option<usize> {
    let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
    let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
    let start = if line == 0 {
        0
    } else {
        text.match_indices('\n').nth(line - 1)?.0 + 1
    };
    let rest = &text[start..];
    match rest.char_indices().nth(col) {
        Some((i, _)) => Some(start + i),
        None if rest.chars().count() == col => Some(text.len()),
        None => None,
    }
}

/// The text of each item of a MySQL SELECT list, as MySQL names an
/// unaliased output: from its first token to its last, comments left out.
fn item_texts(s: &Select) -> Option<Vec<String>> {
    CTX.with(|c| {
        let c = c.borrow();
        let src = c.text.as_ref()?;
        let text = src.text.as_str();
        let start = offset(text, s.select_token.0.span.start)?;
        if !text.get(start..)?.get(..6)?.eq_ignore_ascii_case("select") {
            return None;
        }
        let toks = crate::mysql::tokens(&text[start + 6..]);
        const MODIFIERS: &[&str] = &[
            "ALL",
            "DISTINCT",
            "DISTINCTROW",
            "HIGH_PRIORITY",
            "STRAIGHT_JOIN",
            "SQL_SMALL_RESULT",
            "SQL_BIG_RESULT",
            "SQL_BUFFER_RESULT",
            "SQL_NO_CACHE",
            "SQL_CACHE",
            "SQL_CALC_FOUND_ROWS",
        ];
        const ENDS: &[&str] = &[
            "INTO",
            "FROM",
            "WHERE",
            "GROUP",
            "HAVING",
            "WINDOW",
            "ORDER",
            "LIMIT",
            "UNION",
            "EXCEPT",
            "INTERSECT",
            "FOR",
            "LOCK",
            "PROCEDURE",
        ];
        let base = start + 6;
        let mut i = 0;
        while toks
            .get(i)
            .is_some_and(|t| MODIFIERS.iter().any(|m| t.is(&text[base..], m)))
        {
            i += 1;
        }
        let mut items = Vec::new();
        let mut depth = 0i32;
        let mut item_start: Option<usize> = None;
        let mut item_end = 0;
        let rel = &text[base..];
        while let Some(t) = toks.get(i) {
            use crate::mysql::Kind;
            if depth == 0
                && (t.kind == Kind::Close
                    || (t.kind == Kind::Op && &rel[t.start..t.end] == ";")
                    || ENDS.iter().any(|w| t.is(rel, w)))
            {
                break;
            }
            match t.kind {
                Kind::Open => depth += 1,
                Kind::Close => depth -= 1,
                _ => {}
            }
            if depth == 0 && t.kind == Kind::Comma {
                items.push(item_start.take().map(|s| (s, item_end))?);
            } else {
                item_start.get_or_insert(t.start);
                item_end = t.end;
            }
            i += 1;
        }
        items.push(item_start.map(|s| (s, item_end))?);
        if items.len() != s.projection.len() {
            return None;
        }
        Some(
            items
                .into_iter()
                .map(|(a, b)| {
                    let (a, b) = (base + a, base + b);
                    text[a..b]
                        .char_indices()
                        .filter(|(k, _)| src.synthetic.binary_search(&(a + k)).is_err())
                        .map(|(_, ch)| ch)
                        .collect::<String>()
                        .trim()
                        .to_string()
                })
                .collect(),
        )
    })
}

/// `ORDER BY 2` / `GROUP BY 2`: the zero-based output position.
fn ordinal(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse::<usize>().ok()?.checked_sub(1),
            _ => None,
        },
        _ => None,
    }
}

fn star(r: &Relation, outs: &mut Vec<Output>) {
    match &r.kind {
        RelationKind::Table(t) => outs.push(Output {
            label: "*".into(),
            lineage: Lineage::direct(Source::AllOf(t.clone())),
        }),
        RelationKind::Derived(o) => outs.extend(o.iter().cloned()),
        RelationKind::Opaque(l) => outs.push(Output {
            label: "*".into(),
            lineage: l.clone(),
        }),
    }
}

fn rename(outs: &mut [Output], names: &[String]) {
    for (o, n) in outs.iter_mut().zip(names) {
        o.label = n.clone();
    }
}

fn join_constraint(op: &ast::JoinOperator) -> Option<&ast::JoinConstraint> {
    use ast::JoinOperator::*;
    match op {
        Join(c) | Inner(c) | Left(c) | LeftOuter(c) | Right(c) | RightOuter(c) | FullOuter(c)
        | Semi(c) | LeftSemi(c) | RightSemi(c) | Anti(c) | LeftAnti(c) | RightAnti(c)
        | StraightJoin(c) => Some(c),
        _ => None,
    }
}

fn function_arg(a: &FunctionArg) -> &FunctionArgExpr {
    match a {
        FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg) => arg,
    }
}

fn function_arg_expr(a: &FunctionArg) -> Option<&Expr> {
    match function_arg(a) {
        FunctionArgExpr::Expr(e) => Some(e),
        _ => None,
    }
}

/// Collects the direct child expressions of an expression (not the
/// expression itself, not expressions inside subqueries).
struct Children<'a> {
    out: &'a mut Vec<Expr>,
    root: bool,
    depth: usize,
}

impl Visitor for Children<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth += 1000;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth -= 1000;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.root {
            self.root = false;
            return ControlFlow::Continue(());
        }
        if self.depth == 0 {
            self.out.push(e.clone());
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

/// Subqueries that are not inside a child expression (those are found when
/// the child is walked).
struct TopQueries<'a> {
    out: &'a mut Vec<Query>,
    expr_depth: usize,
}

impl Visitor for TopQueries<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        self.expr_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        self.expr_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // Depth 1: inside the root expression only.
        if self.expr_depth == 1 {
            self.out.push(q.clone());
        }
        self.expr_depth += 1000;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.expr_depth -= 1000;
        ControlFlow::Continue(())
    }
}

/// Collects the outermost expressions of a node.
struct CollectExprs<'a>(&'a mut Vec<Expr>, usize);

impl Visitor for CollectExprs<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.1 == 0 {
            self.0.push(e.clone());
        }
        self.1 += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        self.1 -= 1;
        ControlFlow::Continue(())
    }
}

/// Every relation and function named anywhere in a statement.
#[derive(Default)]
struct Names {
    relations: BTreeSet<TableName>,
    functions: BTreeSet<String>,
    table_functions: BTreeSet<String>,
}

impl Visitor for Names {
    type Break = ();

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.relations.insert(table_name(r));
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<()> {
        match f {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => {
                let n = object_last(name);
                self.functions.insert(n.clone());
                self.table_functions.insert(n);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            self.functions.insert(object_last(&f.name));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Facts {
        let mut v = analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(v.len(), 1, "{sql}");
        v.remove(0)
    }

    /// Outputs as `label=src|src` with `~` for derived lineage.
    fn outs(f: &Facts) -> String {
        f.outputs
            .iter()
            .map(|o| {
                let s: Vec<String> = o.lineage.sources.iter().map(|s| s.to_string()).collect();
                format!(
                    "{}{}={}",
                    o.label,
                    if o.lineage.direct { "" } else { "~" },
                    s.join("|")
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn set(items: impl IntoIterator<Item = impl ToString>) -> String {
        items
            .into_iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One line per case: SQL → class, kind.
    #[test]
    fn classification_table() {
        let cases = [
            ("select 1", "read", "select"),
            ("SELECT * FROM cards", "read", "select"),
            ("values (1)", "read", "select"),
            ("insert into t values (1)", "write", "insert"),
            ("update t set a = 1 where id = 2", "write", "update"),
            ("delete from t", "write", "delete"),
            (
                "with d as (delete from t returning *) select * from d",
                "write",
                "select",
            ),
            ("copy cards to stdout", "read", "copy"),
            ("copy cards from stdin", "write", "copy"),
            (
                "copy (select 1) to stdout with (format csv)",
                "read",
                "copy",
            ),
            ("create table x (a int)", "ddl", "create_table"),
            (
                "create table x as select * from cards",
                "ddl",
                "create_table",
            ),
            ("select * into x from cards", "ddl", "select_into"),
            (
                "create view v as select pan from cards",
                "ddl",
                "create_view",
            ),
            ("alter table cards add column x int", "ddl", "alter_table"),
            ("drop table cards", "ddl", "drop"),
            ("truncate cards", "ddl", "truncate"),
            ("create index i on cards (pan)", "ddl", "create_index"),
            ("grant select on cards to bob", "dcl", "grant"),
            ("revoke select on cards from bob", "dcl", "revoke"),
            ("create role r", "dcl", "create_role"),
            ("drop role r", "dcl", "drop_role"),
            ("begin", "transaction", "begin"),
            ("start transaction", "transaction", "begin"),
            ("commit", "transaction", "commit"),
            ("rollback", "transaction", "rollback"),
            ("savepoint a", "transaction", "savepoint"),
            ("set search_path = public", "utility", "set"),
            ("set role admin", "admin", "set_role"),
            (
                "set session authorization bob",
                "admin",
                "set_session_authorization",
            ),
            ("show search_path", "utility", "show"),
            ("listen ch", "utility", "listen"),
            ("notify ch, 'x'", "utility", "notify"),
            ("prepare s as select 1", "read", "select"),
            ("prepare s as delete from t", "write", "delete"),
            ("execute s", "utility", "execute"),
            ("deallocate s", "utility", "deallocate"),
            ("discard all", "utility", "discard"),
            ("declare c cursor for select 1", "read", "select"),
            ("fetch 10 from c", "read", "fetch"),
            ("close c", "utility", "close"),
            ("explain select 1", "read", "explain"),
            ("explain analyze delete from t", "write", "explain"),
            ("call p()", "admin", "call"),
            ("vacuum", "admin", "vacuum"),
        ];
        for (sql, class, kind) in cases {
            let f = one(sql);
            assert_eq!((f.class.as_str(), f.kind.as_str()), (class, kind), "{sql}");
        }
    }

    /// One line per case: SQL → tables, functions, has WHERE, LIMIT.
    #[test]
    fn extraction_table() {
        let cases = [
            ("select a from t", "t", "", true, None),
            (
                "select a from s.t join u on t.id = u.id",
                "u,s.t",
                "",
                true,
                None,
            ),
            (
                "select upper(a) from t limit 10",
                "t",
                "upper",
                true,
                Some(10),
            ),
            (
                "select * from (select * from t limit 5) s",
                "t",
                "",
                true,
                None,
            ),
            (
                "select * from t fetch first 3 rows only",
                "t",
                "",
                true,
                Some(3),
            ),
            (
                "with c as (select * from cards) select * from c",
                "cards",
                "",
                true,
                None,
            ),
            ("delete from t", "t", "", false, None),
            ("delete from t where id = 1", "t", "", true, None),
            ("update t set a = 1", "t", "", false, None),
            ("update t set a = 1 where b = 2", "t", "", true, None),
            (
                "select * from pg_read_file('/etc/passwd')",
                "",
                "pg_read_file",
                true,
                None,
            ),
            ("select pg_sleep(1), now()", "", "now,pg_sleep", true, None),
            ("insert into a select * from b", "a,b", "", true, None),
            ("select x from \"Cards\"", "Cards", "", true, None),
            ("select x from CARDS", "cards", "", true, None),
        ];
        for (sql, tables, functions, has_where, limit) in cases {
            let f = one(sql);
            assert_eq!(set(&f.tables), tables, "tables of {sql}");
            assert_eq!(set(&f.functions), functions, "functions of {sql}");
            assert_eq!(f.has_where, has_where, "where of {sql}");
            assert_eq!(f.limit, limit, "limit of {sql}");
        }
    }

    /// One line per case: SQL → output lineage.
    #[test]
    fn lineage_table() {
        let cases = [
            ("select pan from cards", "pan=cards.pan"),
            ("select c.pan as p from cards c", "p=cards.pan"),
            ("select pan::text from cards", "pan=cards.pan"),
            ("select cast(pan as bigint) x from cards", "x=cards.pan"),
            ("select * from cards", "*=cards.*"),
            ("select c.* from cards c", "*=cards.*"),
            (
                "select p from (select pan as p from cards) s",
                "p=cards.pan",
            ),
            (
                "select s.p from (select pan as p from cards) s",
                "p=cards.pan",
            ),
            ("select x from (select pan from cards) s(x)", "x=cards.pan"),
            (
                "with c as (select pan as q from cards) select q from c",
                "q=cards.pan",
            ),
            (
                "with c(z) as (select pan from cards) select * from c",
                "z=cards.pan",
            ),
            (
                "select id from t union select pan from cards",
                "id=cards.pan|t.id",
            ),
            ("select concat(pan) from cards", "concat~=cards.pan"),
            ("select pan || '' as x from cards", "x~=cards.pan"),
            ("select reverse(pan) from cards", "reverse~=cards.pan"),
            (
                "select encode(pan::bytea, 'hex') from cards",
                "encode~=cards.pan",
            ),
            (
                "select substr(pan, 1, 8), substr(pan, 9) from cards",
                "substr~=cards.pan substr~=cards.pan",
            ),
            ("select max(pan) from cards", "max~=cards.pan"),
            ("select count(pan) from cards", "count~="),
            ("select count(*) from cards", "count~="),
            (
                "select row_to_json(c) from cards c",
                "row_to_json~=cards.c|cards.*",
            ),
            ("select row(pan) from cards", "row~=cards.pan"),
            ("select json_agg(c.*) from cards c", "json_agg~=cards.*"),
            ("select (select pan from cards limit 1) as p", "p=cards.pan"),
            (
                "select case when true then pan end from cards",
                "case~=cards.pan",
            ),
            ("select 1", "?column?~="),
            ("select 'x'::text", "text~="),
            ("select a from t join cards using (id)", "a=cards.a|t.a"),
            ("select t from cards t", "t~=cards.t|cards.*"),
            ("select array(select pan from cards)", "array~=cards.pan"),
            (
                "select pan from cards where id = 1 union all select 'x'",
                "pan=cards.pan",
            ),
            ("delete from cards returning pan", "pan=cards.pan"),
            ("select x.pan from (select * from cards) x", "pan=cards.pan"),
            ("select pan from (select * from cards) x", "pan=cards.pan"),
            ("select pan collate \"C\" from cards", "pan=cards.pan"),
            (
                "select (c).pan from cards c",
                "pan~=cards.c|cards.pan|cards.*",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(outs(&one(sql)), want, "{sql}");
        }
    }

    /// One line per case: SQL → columns used to pick rows, columns stored.
    #[test]
    fn predicates_and_stored_table() {
        let cases = [
            ("select id from cards where pan like '4%'", "cards.pan", ""),
            ("select id from cards order by pan", "cards.pan", ""),
            ("select id from cards group by pan", "cards.pan", ""),
            ("select id, pan from cards order by 2", "cards.pan", ""),
            ("select id, pan from cards order by 1", "cards.id", ""),
            (
                "select pan, count(*) from cards group by 1",
                "cards.pan",
                "",
            ),
            (
                "select a.id from a join cards c on c.pan = a.x",
                "a.x,cards.pan",
                "",
            ),
            (
                "with c as (select pan p from cards) select 1 from c where p = '1'",
                "cards.pan",
                "",
            ),
            (
                "select 1 where exists (select 1 from cards where pan > '4')",
                "cards.pan",
                "",
            ),
            (
                "select id from t where x in (select pan from cards)",
                "cards.pan,t.x",
                "",
            ),
            ("select count(pan) from cards", "", ""),
            ("create table x as select pan from cards", "", "cards.pan"),
            ("insert into x select pan from cards", "", "cards.pan"),
            ("create view v as select * from cards", "", "cards.*"),
            (
                "declare c cursor for select id from cards where pan = '1'",
                "cards.pan",
                "",
            ),
            (
                "update t set a = (select pan from cards limit 1)",
                "",
                "cards.pan",
            ),
        ];
        for (sql, preds, stored) in cases {
            let f = one(sql);
            assert_eq!(set(&f.predicates), preds, "predicates of {sql}");
            assert_eq!(set(&f.stored), stored, "stored of {sql}");
        }
    }

    #[test]
    fn multi_statement_and_errors() {
        assert_eq!(analyze("select 1; delete from t").unwrap().len(), 2);
        assert!(analyze("selec 1").is_err());
        assert!(analyze("select U&\"p\\0061n\" from cards").is_err());
        assert!(analyze("select u&'\\0061'").is_err());
        assert!(analyze("").unwrap().is_empty());
    }
}
