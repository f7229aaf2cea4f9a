//! Sustained append rate of the store with `durability = "sync"`:
//! `sessions` concurrent sessions, each recording a statement event and
//! waiting until it is durable (as the proxy does before forwarding), then
//! recording its outcome, for `seconds`. Prints events/s and the latency of
//! the durability wait (p50, p99).
//!
//! cargo run --release -p sluice-store --example append -- [DIR] [SESSIONS] [SECONDS]
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_store::{
    Store, StoreOptions,
    event::{Event, Facts, Outcome, SessionStart, StatementEvent},
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "/var/tmp/sluice-append-bench".into());
    let sessions: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(format!("{dir}.key"));
    let _ = std::fs::remove_file(format!("{dir}.key.pub"));
    let store = Store::open(&StoreOptions::new(&dir)).expect("open the store");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let log = Arc::new(store.begin(SessionStart {
                    protocol: "postgres".into(),
                    identity: format!("bench-{i}"),
                    facts: Facts {
                        client: "10.0.0.2:40000".into(),
                        ..Facts::default()
                    },
                    target: "bench".into(),
                    auth: "passthrough".into(),
                    ..SessionStart::default()
                }));
                let mut waits = Vec::new();
                let mut events = 1u64;
                while Instant::now() < deadline {
                    let seq = log.record(&Event::Statement(StatementEvent {
                        protocol: "simple".into(),
                        text: "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;".into(),
                        decision: "allow".into(),
                        ..StatementEvent::default()
                    }));
                    let t = Instant::now();
                    log.durable().await.expect("durable");
                    waits.push(t.elapsed());
                    log.record(&Event::Outcome(Outcome {
                        statement: Some(seq),
                        status: "ok".into(),
                        tag: Some("SELECT 1".into()),
                        rows: Some(1),
                        duration_us: 80,
                        ..Outcome::default()
                    }));
                    events += 2;
                }
                (events, waits)
            }));
        }
        let mut all = Vec::new();
        let mut events = 0;
        for t in tasks {
            let (e, w) = t.await.unwrap();
            events += e;
            all.extend(w);
        }
        (events, all)
    });
    let elapsed = started.elapsed().as_secs_f64();
    store.close();
    let (events, mut waits) = results;
    waits.sort();
    let pct = |p: f64| waits[((waits.len() as f64 * p) as usize).min(waits.len() - 1)];
    println!(
        "sessions={sessions} seconds={elapsed:.1} events={events} events_per_s={:.0} statements_per_s={:.0} durable_wait_p50_us={} durable_wait_p99_us={}",
        events as f64 / elapsed,
        waits.len() as f64 / elapsed,
        pct(0.50).as_micros(),
        pct(0.99).as_micros()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
