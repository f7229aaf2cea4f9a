//! Tampering with a closed store the way an operator with file access
//! could, and checking that verification catches each edit and names the
//! first bad event.
use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, DB, Options};
use sluice_store::{
    Store, StoreOptions,
    codec::{self, CF_CHECKPOINTS, CF_EVENTS, FAMILIES, Position, StoredEvent},
    event::{Event, Facts, Outcome, SessionEnd, SessionStart, StatementEvent},
    export,
    read::{Filter, Reader},
    verify::Report,
};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sluice-tamper-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn store(&self) -> PathBuf {
        self.0.join("store")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(identity: &str) -> SessionStart {
    SessionStart {
        protocol: "postgres".into(),
        identity: identity.into(),
        facts: Facts {
            client: "10.0.0.2:40000".into(),
            ..Facts::default()
        },
        original: "10.0.1.2:5432".into(),
        target: "cards".into(),
        user: Some("app".into()),
        auth: "passthrough".into(),
        ..SessionStart::default()
    }
}

/// Three sessions of six events each (start, 2 × statement + outcome, end).
fn record(dir: &Path) -> Store {
    let store = Store::open(&StoreOptions::new(dir)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for who in ["ci-job", "agent", "ci-job"] {
        let log = store.begin(start(who));
        for i in 0..2 {
            let seq = log.record(&Event::Statement(StatementEvent {
                protocol: "simple".into(),
                text: format!("select * from cards where id = {i}"),
                decision: if i == 1 && who == "agent" {
                    "deny"
                } else {
                    "allow"
                }
                .into(),
                ..StatementEvent::default()
            }));
            rt.block_on(log.durable()).unwrap();
            log.record(&Event::Outcome(Outcome {
                statement: Some(seq),
                status: "ok".into(),
                tag: Some("SELECT 1".into()),
                rows: Some(1),
                ..Outcome::default()
            }));
        }
        log.record(&Event::SessionEnd(SessionEnd {
            reason: "client terminated".into(),
            statements: 2,
            ..SessionEnd::default()
        }));
        rt.block_on(log.durable()).unwrap();
    }
    store
}

fn recorded(name: &str) -> Scratch {
    let s = Scratch::new(name);
    record(&s.store()).close();
    s
}

fn verify(dir: &Path) -> Report {
    let reader = Reader::open(dir).unwrap();
    let key = reader.public_key().unwrap().unwrap();
    export::verify_store(&reader, key).unwrap()
}

fn raw(dir: &Path) -> DB {
    let cfs = FAMILIES
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
    DB::open_cf_descriptors(&Options::default(), dir, cfs).unwrap()
}

fn first(report: &Report) -> String {
    assert!(!report.ok(), "verification passed a tampered store");
    report.problems[0].to_string()
}

#[test]
fn an_untouched_store_verifies_and_lists_by_index() {
    let s = recorded("clean");
    let r = verify(&s.store());
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.sessions, r.events, r.unsigned_events), (3, 18, 0));
    let reader = Reader::open(&s.store()).unwrap();
    let all = reader.sessions(&Filter::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|x| x.end.as_deref() == Some("client terminated"))
    );
    let by_identity = Filter {
        identity: Some("ci-job".into()),
        ..Filter::default()
    };
    assert_eq!(reader.sessions(&by_identity).unwrap().len(), 2);
    let denied = Filter {
        decision: Some("deny".into()),
        ..Filter::default()
    };
    let denied = reader.sessions(&denied).unwrap();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].identity, "agent");
}

fn edit_event(dir: &Path, session: u64, seq: u32, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let db = raw(dir);
    let cf = db.cf_handle(CF_EVENTS).unwrap();
    let key = codec::event_key(session, seq);
    let v = db.get_cf(cf, key).unwrap().unwrap();
    db.put_cf(cf, key, f(v)).unwrap();
}

#[test]
fn one_changed_byte_is_caught_at_its_event() {
    let s = recorded("byte");
    edit_event(&s.store(), 2, 3, |mut v| {
        let i = v.len() - 5;
        v[i] ^= 1;
        v
    });
    assert!(first(&verify(&s.store())).starts_with("session 2 event 3:"));
}

#[test]
fn a_changed_stored_hash_is_caught() {
    let s = recorded("hash");
    edit_event(&s.store(), 1, 1, |mut v| {
        v[20] ^= 0x80;
        v
    });
    assert!(first(&verify(&s.store())).starts_with("session 1 event 1:"));
}

#[test]
fn a_deleted_event_is_caught() {
    let s = recorded("delete");
    let db = raw(&s.store());
    db.delete_cf(db.cf_handle(CF_EVENTS).unwrap(), codec::event_key(3, 2))
        .unwrap();
    drop(db);
    let msg = first(&verify(&s.store()));
    assert!(msg.starts_with("session 3 event 2: missing"), "{msg}");
}

#[test]
fn swapped_events_are_caught_at_the_first() {
    let s = recorded("swap");
    let db = raw(&s.store());
    let cf = db.cf_handle(CF_EVENTS).unwrap();
    let a = db.get_cf(cf, codec::event_key(1, 2)).unwrap().unwrap();
    let b = db.get_cf(cf, codec::event_key(1, 3)).unwrap().unwrap();
    db.put_cf(cf, codec::event_key(1, 2), b).unwrap();
    db.put_cf(cf, codec::event_key(1, 3), a).unwrap();
    drop(db);
    let msg = first(&verify(&s.store()));
    assert!(msg.starts_with("session 1 event 2:"), "{msg}");
}

#[test]
fn a_truncated_tail_is_caught() {
    let s = recorded("truncate");
    let db = raw(&s.store());
    let cf = db.cf_handle(CF_EVENTS).unwrap();
    for seq in [4, 5] {
        db.delete_cf(cf, codec::event_key(2, seq)).unwrap();
    }
    drop(db);
    let msg = first(&verify(&s.store()));
    assert!(msg.starts_with("session 2 event 4: missing"), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn a_replaced_session_with_a_valid_chain_is_caught() {
    let s = recorded("replace");
    let db = raw(&s.store());
    let cf = db.cf_handle(CF_EVENTS).unwrap();
    // Rewrite session 2 with other text, re-chaining every hash: only the
    // signed checkpoint can tell.
    let mut prev = codec::genesis(2);
    for seq in 0..6u32 {
        let v = db.get_cf(cf, codec::event_key(2, seq)).unwrap().unwrap();
        let e = StoredEvent::decode(&v).unwrap();
        let body = String::from_utf8(e.body.to_vec())
            .unwrap()
            .replace("ci-job", "nobody")
            .replace("cards", "menus");
        let at = Position {
            session: 2,
            seq,
            global: e.global,
            time_us: e.time_us,
        };
        let hash = codec::link(&prev, &at, body.as_bytes());
        prev = hash;
        let new = StoredEvent {
            hash,
            body: body.as_bytes(),
            ..e
        }
        .encode();
        db.put_cf(cf, codec::event_key(2, seq), new).unwrap();
    }
    drop(db);
    let msg = first(&verify(&s.store()));
    assert!(msg.starts_with("session 2 event 5:"), "{msg}");
    assert!(msg.contains("replaced"), "{msg}");
}

#[test]
fn a_deleted_session_and_an_inserted_event_are_caught() {
    let s = recorded("session");
    let db = raw(&s.store());
    let cf = db.cf_handle(CF_EVENTS).unwrap();
    for seq in 0..6 {
        db.delete_cf(cf, codec::event_key(1, seq)).unwrap();
    }
    drop(db);
    let r = verify(&s.store());
    assert!(
        first(&r).starts_with("session 1 event 0: missing: the whole session"),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems.iter().any(|p| p
            .to_string()
            .starts_with("the newest checkpoint counts 18 events")),
        "{:?}",
        r.problems
    );

    // An event appended to a signed session with a global number the
    // checkpoint already counted.
    let s = recorded("insert");
    let db = raw(&s.store());
    let cf = db.cf_handle(CF_EVENTS).unwrap();
    let last = db.get_cf(cf, codec::event_key(3, 5)).unwrap().unwrap();
    let last = StoredEvent::decode(&last).unwrap();
    let at = Position {
        session: 3,
        seq: 6,
        global: 3,
        time_us: last.time_us,
    };
    let body = br#"{"kind":"statement","protocol":"simple","text":"select 1","decision":"allow"}"#;
    let hash = codec::link(&last.hash, &at, body);
    let v = StoredEvent {
        global: 3,
        time_us: at.time_us,
        hash,
        body,
    }
    .encode();
    db.put_cf(cf, codec::event_key(3, 6), v).unwrap();
    drop(db);
    let r = verify(&s.store());
    assert!(
        r.problems
            .iter()
            .any(|p| p.to_string().starts_with("session 3 event 6: not covered")),
        "{:?}",
        r.problems
    );
}

#[test]
fn an_edited_or_removed_checkpoint_is_caught() {
    let s = recorded("checkpoint");
    let db = raw(&s.store());
    let cf = db.cf_handle(CF_CHECKPOINTS).unwrap();
    let k = 1u64.to_be_bytes();
    let mut v = db.get_cf(cf, k).unwrap().unwrap();
    let i = v.len() - 3;
    v[i] ^= 1;
    db.put_cf(cf, k, v).unwrap();
    drop(db);
    assert!(first(&verify(&s.store())).contains("signature does not verify"));
}

#[test]
fn exports_verify_on_their_own_and_catch_edits_and_cuts() {
    let s = recorded("export");
    let reader = Reader::open(&s.store()).unwrap();
    let mut all = Vec::new();
    let w = export::jsonl(&reader, &Filter::default(), &mut all, &mut ()).unwrap();
    assert_eq!((w.sessions, w.events), (3, 18));
    let key = reader.public_key().unwrap();
    let (r, info) = export::verify_jsonl(&mut all.as_slice(), key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(info.sessions.len(), 3);
    let text = String::from_utf8(all.clone()).unwrap();

    // One event's text edited.
    let edited = text.replacen("where id = 1", "where id = 7", 1);
    let (r, _) = export::verify_jsonl(&mut edited.as_bytes(), key).unwrap();
    assert!(
        first(&r).starts_with("session 1 event 3:"),
        "{:?}",
        r.problems
    );

    // The last lines cut.
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines[..lines.len() - 3].join("\n");
    let (r, _) = export::verify_jsonl(&mut cut.as_bytes(), key).unwrap();
    assert!(
        r.problems.iter().any(|p| p.what.contains("cut short")),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.to_string().starts_with("session 3 event 4: missing")),
        "{:?}",
        r.problems
    );

    // A filtered export (one session) verifies alone.
    let one = Filter {
        sessions: Some(vec![2]),
        ..Filter::default()
    };
    let mut part = Vec::new();
    export::jsonl(&reader, &one, &mut part, &mut ()).unwrap();
    let (r, info) = export::verify_jsonl(&mut part.as_slice(), key).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.sessions, info.sessions.len()), (1, 1));

    // A different key fails every checkpoint.
    let other = sluice_store::PublicKey([7; 32]);
    let (r, _) = export::verify_jsonl(&mut all.as_slice(), Some(other)).unwrap();
    assert!(first(&r).contains("signature does not verify"));
}

#[test]
fn retention_is_signed_and_verifies() {
    let s = Scratch::new("retention");
    let store = record(&s.store());
    store.checkpoint().unwrap();
    let removed = store.expire_before(codec::now_us() + 1).unwrap();
    assert_eq!(removed, 3);
    store.close();
    let r = verify(&s.store());
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.sessions, r.expired_sessions), (0, 3));
    let reader = Reader::open(&s.store()).unwrap();
    assert!(reader.sessions(&Filter::default()).unwrap().is_empty());
}

#[test]
fn reopening_continues_ids_and_the_checkpoint_chain() {
    let s = Scratch::new("reopen");
    record(&s.store()).close();
    record(&s.store()).close();
    let r = verify(&s.store());
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.sessions, 6);
    let reader = Reader::open(&s.store()).unwrap();
    let ids: Vec<u64> = reader
        .sessions(&Filter::default())
        .unwrap()
        .iter()
        .map(|s| s.session)
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn session_ids_are_never_reused_after_a_reopen() {
    let s = Scratch::new("ids");
    let store = Store::open(&StoreOptions::new(s.store())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let a = store.begin(start("a"));
    let b = store.begin(start("b"));
    rt.block_on(b.durable()).unwrap();
    // The last write holds only the older session's event.
    a.record(&Event::SessionEnd(SessionEnd::default()));
    rt.block_on(a.durable()).unwrap();
    drop((a, b));
    store.close();
    let store = Store::open(&StoreOptions::new(s.store())).unwrap();
    let c = store.begin(start("c"));
    assert_eq!(c.id(), 3);
    rt.block_on(c.durable()).unwrap();
    drop(c);
    store.close();
    let r = verify(&s.store());
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.sessions, 3);
}

#[test]
fn removing_the_newest_checkpoints_leaves_events_unsigned() {
    let s = recorded("newest");
    let db = raw(&s.store());
    let cf = db.cf_handle(CF_CHECKPOINTS).unwrap();
    let last = db
        .iterator_cf(cf, rocksdb::IteratorMode::End)
        .next()
        .unwrap()
        .unwrap()
        .0;
    db.delete_cf(cf, last).unwrap();
    drop(db);
    let r = verify(&s.store());
    // The chain of the remaining checkpoints is whole; what the removed
    // one covered is now unsigned, which `sluice audit verify` refuses
    // unless told the store is live.
    assert!(r.unsigned_events > 0, "{r:?}");
}

#[test]
fn exports_with_moved_checkpoints_added_events_or_absurd_seqs_fail_cleanly() {
    let s = recorded("moved");
    let reader = Reader::open(&s.store()).unwrap();
    let key = reader.public_key().unwrap();
    let mut all = Vec::new();
    export::jsonl(&reader, &Filter::default(), &mut all, &mut ()).unwrap();
    let text = String::from_utf8(all).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();

    // The newest checkpoint moved after the events.
    let cp = lines
        .iter()
        .rposition(|l| l.starts_with(r#"{"type":"checkpoint""#))
        .unwrap();
    let moved_line = lines.remove(cp);
    let end = lines.len() - 1;
    lines.insert(end, moved_line);
    let moved = lines.join("\n");
    let (r, _) = export::verify_jsonl(&mut moved.as_bytes(), key).unwrap();
    assert!(first(&r).contains("comes after events"), "{:?}", r.problems);

    // An event appended after a session's end, with a valid chain hash.
    let reader_events: Vec<_> = reader.events(1).map(Result::unwrap).collect();
    let last = reader_events.last().unwrap();
    let body = br#"{"kind":"statement","protocol":"simple","text":"select 2","decision":"allow"}"#;
    let at = Position {
        session: 1,
        seq: last.seq + 1,
        global: 1_000_000,
        time_us: last.time_us,
    };
    let hash = codec::link(&last.hash, &at, body);
    let extra = format!(
        r#"{{"type":"event","session":1,"seq":{},"global":1000000,"time_us":{},"hash":"{}","event":{}}}"#,
        at.seq,
        at.time_us,
        codec::hex(&hash),
        std::str::from_utf8(body).unwrap()
    );
    let text2 = text.clone();
    let mut lines: Vec<&str> = text2.lines().collect();
    let after = lines
        .iter()
        .rposition(|l| l.contains(r#""session":1,"seq":"#))
        .unwrap();
    lines.insert(after + 1, &extra);
    let joined = lines
        .join("\n")
        .replace(r#""events":18}"#, r#""events":19}"#);
    let (r, _) = export::verify_jsonl(&mut joined.as_bytes(), key).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.to_string().contains("comes after the session's end")),
        "{:?}",
        r.problems
    );

    // A hostile seq number: reported, not a crash or a huge allocation.
    let absurd = text.replacen(
        r#""session":2,"seq":3,"#,
        r#""session":2,"seq":4000000000,"#,
        1,
    );
    let (r, _) = export::verify_jsonl(&mut absurd.as_bytes(), key).unwrap();
    assert!(!r.ok());
}

/// Writes the export fuzz target's seeds (tests/fuzz/corpus/export/): a
/// real export of the three sessions [`record`] makes, a filtered export
/// of one of them, and a copy cut short. Run it by hand when the export
/// format changes:
/// `cargo nextest run --workspace --exclude sluice-ebpf --run-ignored only -E 'test(=write_the_export_fuzz_seeds)'`.
#[test]
#[ignore = "writes files into tests/fuzz/corpus; run by hand"]
fn write_the_export_fuzz_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/export");
    std::fs::create_dir_all(&dir).unwrap();
    let s = recorded("fuzz-seeds");
    let reader = Reader::open(&s.store()).unwrap();
    let key = reader.public_key().unwrap();
    let mut all = Vec::new();
    export::jsonl(&reader, &Filter::default(), &mut all, &mut ()).unwrap();
    let mut one = Vec::new();
    let filter = Filter {
        sessions: Some(vec![2]),
        ..Filter::default()
    };
    export::jsonl(&reader, &filter, &mut one, &mut ()).unwrap();
    for export in [&all, &one] {
        let (r, _) = export::verify_jsonl(&mut export.as_slice(), key).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
    }
    let text = String::from_utf8(all.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines[..lines.len() - 3].join("\n");
    std::fs::write(dir.join("three-sessions.jsonl"), &all).unwrap();
    std::fs::write(dir.join("one-session.jsonl"), &one).unwrap();
    std::fs::write(dir.join("cut-short.jsonl"), cut).unwrap();
}
