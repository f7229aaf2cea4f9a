//! When the writer fsyncs under `durability = "sync"`: every event a
//! session waits for is on disk before `durable()` returns, outcomes (which
//! nobody waits for) ride on the next fsync instead of costing their own,
//! and an outcome with nothing after it is still synced within
//! `LAZY_SYNC`; sessions recording from many threads at once leave one
//! store that verifies.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use sluice_store::{
    LAZY_SYNC, SessionLog, Store, StoreOptions,
    event::{Event, Facts, Outcome, SessionEnd, SessionStart, StatementEvent},
    export,
    read::Reader,
};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("sluice-durability-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(s: &Scratch) -> Store {
    Store::open(&StoreOptions::new(s.0.join("store"))).unwrap()
}

fn session(store: &Store) -> SessionLog {
    store.begin(SessionStart {
        protocol: "postgres".into(),
        identity: "agent".into(),
        facts: Facts {
            client: "10.0.0.2:40000".into(),
            ..Facts::default()
        },
        original: "10.0.1.2:5432".into(),
        target: "cards".into(),
        ..SessionStart::default()
    })
}

fn statement(log: &SessionLog, i: u32) -> u32 {
    log.record(&Event::Statement(StatementEvent {
        protocol: "simple".into(),
        text: format!("select * from cards where id = {i}"),
        decision: "allow".into(),
        ..StatementEvent::default()
    }))
}

fn outcome(log: &SessionLog, seq: u32) {
    log.record(&Event::Outcome(Outcome {
        statement: Some(seq),
        status: "ok".into(),
        tag: Some("SELECT 1".into()),
        rows: Some(1),
        ..Outcome::default()
    }));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A session that alternates statement and outcome, as every client does,
/// costs one fsync per statement: before, the outcome's own fsync ran
/// first and the next statement waited for both.
#[test]
fn a_statement_after_an_outcome_waits_for_one_fsync_not_two() {
    let s = Scratch::new("one");
    let store = open(&s);
    let rt = runtime();
    let log = session(&store);
    rt.block_on(log.durable()).unwrap();
    const N: u64 = 200;
    let before = store.syncs();
    let started = Instant::now();
    for i in 0..N as u32 {
        let seq = statement(&log, i);
        rt.block_on(log.durable()).unwrap();
        outcome(&log, seq);
        // The client reads the answer and sends its next statement: the
        // writer has the outcome to itself meanwhile.
        std::thread::sleep(Duration::from_micros(300));
    }
    let took = started.elapsed();
    let syncs = store.syncs() - before;
    // One per statement, plus what the lazy window and the checkpoint
    // interval (1 s) may add while the loop runs.
    let slack = (took.as_millis() / LAZY_SYNC.as_millis()) as u64 + took.as_secs() + 2;
    assert!(
        syncs <= N + slack,
        "{syncs} fsyncs for {N} statements in {took:?} (at most {} expected)",
        N + slack
    );
    assert!(syncs >= N, "{syncs} fsyncs for {N} durable statements");
}

/// A barrier after an outcome that was written without an fsync syncs it
/// before it answers.
#[test]
fn durable_after_an_outcome_syncs_it() {
    let s = Scratch::new("barrier");
    let store = open(&s);
    let rt = runtime();
    let log = session(&store);
    let seq = statement(&log, 0);
    rt.block_on(log.durable()).unwrap();
    for _ in 0..20 {
        let before = store.syncs();
        outcome(&log, seq);
        rt.block_on(log.durable()).unwrap();
        assert!(
            store.syncs() > before,
            "durable() returned without an fsync covering the outcome"
        );
    }
}

/// An outcome nothing follows is synced by the writer on its own, within
/// the lazy window.
#[test]
fn a_lone_outcome_is_synced_within_the_lazy_window() {
    let s = Scratch::new("lone");
    let store = open(&s);
    let rt = runtime();
    let log = session(&store);
    let seq = statement(&log, 0);
    rt.block_on(log.durable()).unwrap();
    // Let the first checkpoint (1 s) pass, so it cannot be the fsync seen.
    std::thread::sleep(Duration::from_millis(1100));
    store.checkpoint().unwrap();
    let before = store.syncs();
    let recorded = Instant::now();
    outcome(&log, seq);
    let deadline = recorded + Duration::from_secs(2);
    while store.syncs() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let waited = recorded.elapsed();
    assert!(store.syncs() > before, "the outcome was never synced");
    // The writer wakes at most LAZY_SYNC after its last fsync; allow for a
    // slow machine's scheduling.
    assert!(
        waited < LAZY_SYNC * 10,
        "the outcome waited {waited:?} for its fsync (window {LAZY_SYNC:?})"
    );
}

/// Events the writer has already made durable need no round trip to it:
/// `durable()` answers from the session's mark, even once the store has
/// closed. Something recorded after that is refused.
#[test]
fn durable_answers_from_the_mark_without_the_writer() {
    let s = Scratch::new("mark");
    let store = open(&s);
    let rt = runtime();
    let log = session(&store);
    statement(&log, 0);
    rt.block_on(log.durable()).unwrap();
    store.close();
    rt.block_on(log.durable())
        .expect("everything recorded was durable before the store closed");
    statement(&log, 1);
    assert!(
        rt.block_on(log.durable()).is_err(),
        "an event recorded after the store closed was called durable"
    );
}

/// Sessions record from many threads at once: eight sessions, each
/// waiting for every statement and interleaving outcomes, with the interval
/// checkpoints (every 20 ms here) signing while they write. The store they
/// leave verifies, every event present and counted by the last checkpoint.
#[test]
fn concurrent_sessions_leave_a_store_that_verifies() {
    let s = Scratch::new("concurrent");
    let mut options = StoreOptions::new(s.0.join("store"));
    options.checkpoint_interval = Duration::from_millis(20);
    let store = Store::open(&options).unwrap();
    const SESSIONS: u32 = 8;
    const STATEMENTS: u32 = 150;
    let before = store.syncs();
    let threads: Vec<_> = (0..SESSIONS)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                let log = session(&store);
                for i in 0..STATEMENTS {
                    let seq = statement(&log, i);
                    rt.block_on(log.durable()).unwrap();
                    outcome(&log, seq);
                }
                log.record(&Event::SessionEnd(SessionEnd {
                    reason: "client closed".into(),
                    statements: u64::from(STATEMENTS),
                    ..SessionEnd::default()
                }));
                rt.block_on(log.durable()).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let waits = SESSIONS * (STATEMENTS + 1);
    eprintln!(
        "{waits} durable waits took {} fsyncs",
        store.syncs() - before
    );
    store.close();
    drop(store);
    let reader = Reader::open(&s.0.join("store")).unwrap();
    let key = reader.public_key().unwrap().unwrap();
    let report = export::verify_store(&reader, key).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.sessions, u64::from(SESSIONS));
    assert_eq!(
        report.events,
        u64::from(SESSIONS * (2 + 2 * STATEMENTS)),
        "start, statement and outcome pairs, end"
    );
    assert_eq!(report.unsigned_events, 0, "closed: everything signed");
}
