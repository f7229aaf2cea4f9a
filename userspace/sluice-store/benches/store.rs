//! The session store's append path, as the proxy uses it.
//!
//! - `append`: one session records statement events back to back and then
//!   waits once for them to be written, with `durability = "batch"` (10 ms
//!   window, the default): the cost per event of serialising it, queueing
//!   it, hashing it into the chain and writing it to RocksDB (the writer
//!   thread's group commit), without an fsync per event.
//! - `statement_batch`: what the proxy does per statement with batch
//!   durability: record the statement, wait until it is written, record
//!   its outcome. The round trip to the writer thread is in it.
//! - `statement_sync`: the same with `durability = "sync"` (the default):
//!   every statement waits for an fsync, so this is the disk's sync
//!   latency plus the append path, for a single session (no group commit
//!   to share the fsync with).
//!
//! The store lives under /var/tmp (the machine's disk, not tmpfs) and is
//! removed afterwards.
// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_store::{
    Durability, SessionLog, Store, StoreOptions,
    event::{Event, Facts, Outcome, SessionStart, StatementEvent},
};

fn open(dir: &Path, durability: Durability) -> Store {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create the store's directory");
    let mut options = StoreOptions::new(dir.join("store"));
    options.key = dir.join("audit.key");
    options.durability = durability;
    Store::open(&options).expect("open the store")
}

fn session(store: &Store) -> SessionLog {
    store.begin(SessionStart {
        protocol: "postgres".into(),
        identity: "bench".into(),
        facts: Facts {
            client: "10.0.0.2:40000".into(),
            ..Facts::default()
        },
        original: "10.0.1.2:5432".into(),
        target: "bench".into(),
        user: Some("app".into()),
        database: Some("shop".into()),
        auth: "passthrough".into(),
        ..SessionStart::default()
    })
}

fn statement(aid: u64) -> Event {
    Event::Statement(StatementEvent {
        protocol: "simple".into(),
        text: format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"),
        decision: "allow".into(),
        ..StatementEvent::default()
    })
}

fn outcome(seq: u32) -> Event {
    Event::Outcome(Outcome {
        statement: Some(seq),
        status: "ok".into(),
        tag: Some("SELECT 1".into()),
        rows: Some(1),
        duration_us: 80,
        ..Outcome::default()
    })
}

/// Record a statement, wait until it is recorded, record its outcome.
fn one_statement(rt: &tokio::runtime::Runtime, log: &SessionLog, aid: u64) {
    let seq = log.record(&statement(aid));
    rt.block_on(log.durable())
        .expect("the store failed under the benchmark");
    log.record(&outcome(seq));
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(format!(
        "/var/tmp/sluice-bench-store-{}",
        std::process::id()
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let batch = Durability::Batch {
        window: Duration::from_millis(10),
    };

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    {
        let store = open(&root.join("append"), batch);
        let log = session(&store);
        let mut aid = 0u64;
        g.bench_function("append", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    aid += 1;
                    log.record(&statement(aid));
                }
                rt.block_on(log.durable())
                    .expect("the store failed under the benchmark");
                start.elapsed()
            })
        });
        store.close();
    }
    {
        let store = open(&root.join("statement_batch"), batch);
        let log = session(&store);
        let mut aid = 0u64;
        g.bench_function("statement_batch", |b| {
            b.iter(|| {
                aid += 1;
                one_statement(&rt, &log, aid);
            })
        });
        store.close();
    }
    {
        // An fsync per iteration: fewer samples keep it within its time.
        g.sample_size(20);
        let store = open(&root.join("statement_sync"), Durability::Sync);
        let log = session(&store);
        let mut aid = 0u64;
        g.bench_function("statement_sync", |b| {
            b.iter(|| {
                aid += 1;
                one_statement(&rt, &log, aid);
            })
        });
        store.close();
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, bench);
criterion_main!(benches);
