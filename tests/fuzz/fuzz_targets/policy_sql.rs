//! SQL text through the policy engine, as `sluice policy check` and a
//! session's `decide` see it, in both dialects.
//!
//! The first byte chooses the dialect (bit 0), the policy (bit 1) and the
//! identity (bits 2-3); the rest is the SQL (invalid UTF-8 is replaced, as
//! the wire codecs never hand the engine anything but `str`).
//!
//! - Analysis, fingerprinting, `decide` and `explain` must not panic.
//! - `decide` and `explain` agree, and a second decision of the same text
//!   (now from the analysis cache) is the first one.
//! - The cache shares one analysis between texts of the same shape: a text
//!   whose operand literals are replaced by other literals, if it has the
//!   same fingerprint, must be decided the same by an engine that has just
//!   decided the fuzzer's text as by a fresh one. Otherwise which of the
//!   two came first would decide what the other is allowed to do.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use sluice_policy::{
    Dialect,
    analyze::analyze_in,
    engine::{Engine, MaskingConfig, PolicyConfig, SessionRules, Verdict},
    fingerprint::fingerprint_in,
};

/// The `[policy]` and `[masking]` of a sluice configuration file.
#[derive(Deserialize)]
struct File {
    #[serde(default)]
    policy: PolicyConfig,
    #[serde(default)]
    masking: MaskingConfig,
}

/// The configuration docs/policy.md's `policy check` examples run against.
const EXAMPLE: &str = include_str!("../../../docs/policy-example.toml");

/// More of the engine: deny patterns, functions, columns, users, kinds,
/// raw passthrough, row limits, identities that see values unmasked, a
/// laundering rule that holds for approval, and every detector.
const WIDE: &str = r#"
[policy]
default = "allow"
deny_patterns = ["(?i)pg_sleep", "(?i)benchmark\\s*\\("]
row_limits = [{ identities = ["agent-*"], max_rows = 100 }]

[[policy.rules]]
name = "raw"
action = "allow"
raw = true
identities = ["dba"]

[[policy.rules]]
name = "no file functions"
action = "deny"
functions = ["pg_read_file", "lo_*", "load_file"]

[[policy.rules]]
name = "secrets"
action = "approve"
columns = ["users.password", "*.ssn"]
users = ["app*"]

[[policy.rules]]
name = "no drops"
action = "deny"
kinds = ["drop_table", "truncate"]
tables = ["public.*", "orders"]

[[policy.rules]]
name = "sensitive reads"
action = "approve"
sensitive = true
identities = ["group:agents"]

[masking]
unmasked = ["dba"]
laundering = "approve"
probing = "approve"
stored = "deny"
detectors = { cvv = true, email = true, ssn = true, iban = true }

[[masking.columns]]
table = "cards"
column = "pan"
format = "pci"

[[masking.columns]]
schema = "billing"
table = "accounts"
column = "iban"
format = "token"

[[masking.columns]]
target = "payments-db"
table = "users"
column = "email"
format = "redact"
"#;

/// Both policies, parsed once.
static FILES: LazyLock<[File; 2]> = LazyLock::new(|| {
    [EXAMPLE, WIDE].map(|text| toml::from_str(text).expect("the fuzz policy parses"))
});

/// A fresh engine (an empty analysis cache) for policy 0 or 1.
fn engine(policy: usize) -> Arc<Engine> {
    let f = &FILES[policy];
    Arc::new(Engine::new(&f.policy, &f.masking).expect("the fuzz policy compiles"))
}

/// Identity 0-3's session of an engine.
fn session(e: &Arc<Engine>, identity: usize) -> SessionRules {
    let agents = ["agents".to_string()];
    match identity {
        0 => e.session("reporting-agent", &agents, "payments-db"),
        1 => e.session_as("agent-7", &agents, "orders-mariadb", Some("app_rw")),
        2 => e.session("dba", &[], "payments-db"),
        _ => e.session("unknown", &[], "payments-db"),
    }
}

/// Sessions of both policies: [policy][identity], sharing one engine (and
/// cache) per policy across runs, as the daemon's sessions do.
static SESSIONS: LazyLock<Vec<Vec<SessionRules>>> = LazyLock::new(|| {
    (0..2)
        .map(|p| {
            let e = engine(p);
            (0..4).map(|i| session(&e, i)).collect()
        })
        .collect()
});

/// What a decision lets through and how: the reason's words aside (an
/// unparseable statement's names its parser error).
fn outcome(v: &Verdict) -> impl PartialEq + std::fmt::Debug + use<> {
    (
        v.action,
        v.rule.clone(),
        v.masks.clone(),
        v.classes.clone(),
        v.reads_only,
    )
}

/// `shape` with every `?` replaced by a literal: another text of the same
/// shape, if fingerprinting it gives `shape` back.
fn sibling(shape: &str, literal: &str) -> String {
    shape.replace('?', literal)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let sql = String::from_utf8_lossy(rest);
    let dialect = if pick & 1 == 0 {
        Dialect::Postgres
    } else {
        Dialect::MySql
    };
    let (policy, identity) = (usize::from(pick >> 1 & 1), usize::from(pick >> 2 & 3));
    let rules = &SESSIONS[policy][identity];

    let facts = analyze_in(dialect, &sql);
    let (verdict, explained) = rules.explain_in(dialect, &sql);
    if explained.is_empty() {
        assert_eq!(
            verdict.rule, "policy.empty",
            "only nothing explains as nothing"
        );
    }
    assert_eq!(rules.decide_in(dialect, &sql), verdict, "decide ≠ explain");
    assert_eq!(rules.decide_in(dialect, &sql), verdict, "cached ≠ first");
    if let Ok(f) = &facts {
        let _ = f.iter().map(|f| f.changes_nothing()).count();
    }

    if let Some(shape) = fingerprint_in(dialect, &sql) {
        for literal in ["0", "'x'"] {
            let other = sibling(&shape, literal);
            if other == *sql || fingerprint_in(dialect, &other).as_deref() != Some(&*shape) {
                continue;
            }
            let cold = session(&engine(policy), identity).decide_in(dialect, &other);
            let warm = session(&engine(policy), identity);
            warm.decide_in(dialect, &sql);
            let after = warm.decide_in(dialect, &other);
            assert_eq!(
                outcome(&after),
                outcome(&cold),
                "{other:?} is decided differently after {sql:?} (their shared shape: {shape:?})"
            );
        }
    }
});
