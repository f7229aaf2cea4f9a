//! Decision cost: a statement seen before (analysis cached) and a cold
//! parse + decide of typical statements.
// criterion's macros generate undocumented items.
#![allow(missing_docs)]
use std::sync::Arc;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use sluice_policy::engine::{Engine, MaskingConfig, PolicyConfig};

const POLICY: &str = r#"
default = "deny"
[[rules]]
name = "agents read and write"
action = "allow"
classes = ["read", "write", "transaction", "utility"]
[[rules]]
name = "no delete without where"
action = "deny"
without_where = true
[[rules]]
name = "bulk reads need approval"
action = "approve"
tables = ["cards"]
rows_over = 1000
"#;

const MASKING: &str = r#"
[[columns]]
table = "cards"
column = "pan"
format = "pci"
"#;

const STATEMENTS: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = 42",
    "UPDATE pgbench_accounts SET abalance = abalance + 10 WHERE aid = 42",
    "SELECT c.id, c.pan, o.total FROM cards c JOIN orders o ON o.card_id = c.id WHERE o.placed > now() - interval '1 day' LIMIT 50",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
    "WITH recent AS (SELECT card_id, sum(total) t FROM orders GROUP BY card_id) SELECT c.holder, r.t FROM recent r JOIN cards c ON c.id = r.card_id ORDER BY r.t DESC LIMIT 10",
];

fn engine() -> Arc<Engine> {
    let policy: PolicyConfig = toml::from_str(POLICY).expect("policy");
    let masking: MaskingConfig = toml::from_str(MASKING).expect("masking");
    Arc::new(Engine::new(&policy, &masking).expect("compile"))
}

fn decide(c: &mut Criterion) {
    let session = engine().session("host:10.0.0.2", &[], "pg");
    for (i, sql) in STATEMENTS.iter().enumerate() {
        session.decide(sql);
        c.bench_function(&format!("decide_cached/{i}"), |b| {
            b.iter(|| black_box(session.decide(black_box(sql))))
        });
    }
    // Same shape, a new literal every time (pgbench -S in simple protocol):
    // the fingerprint finds the cached analysis.
    let mut n = 0u64;
    c.bench_function("decide_same_shape_new_literal", |b| {
        b.iter(|| {
            n += 1;
            let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n}");
            black_box(session.decide(black_box(&sql)))
        })
    });
    for (i, sql) in STATEMENTS.iter().enumerate() {
        c.bench_function(&format!("decide_cold/{i}"), |b| {
            // A fresh engine per batch: every decision parses.
            b.iter_batched(
                || engine().session("host:10.0.0.2", &[], "pg"),
                |s| black_box(s.decide(black_box(sql))),
                criterion::BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, decide);
criterion_main!(benches);
