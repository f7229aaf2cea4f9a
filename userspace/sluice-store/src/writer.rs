//! The writer thread: the only code that writes the store.
//!
//! It takes everything queued (up to [`MAX_BATCH`] messages), computes each
//! event's chain hash, and commits the lot in one RocksDB write with
//! `sync` — one fsync for all the sessions that were waiting (group
//! commit) — before answering their barriers. A batch of outcomes only
//! (nobody waits for them) is written without the fsync; the next synced
//! write covers it, or [`crate::LAZY_SYNC`] later the housekeeping does.
//! Without that, a session's outcome and its next statement cost two
//! fsyncs in a row, and the statement waited for both. A failed write answers every
//! barrier in it with the error and marks its sessions failed: nothing
//! they record afterwards is accepted, so no chain ever has a gap. When the
//! store writes again (RocksDB resumes by itself once the disk has room),
//! those sessions are closed with a "cut short" end event.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use crate::{
    Durability, Health, Msg, Note, SessionSummary, StoreError, StoreOptions,
    checkpoint::{Checkpoint, Head},
    codec::{
        self, CF_CHECKPOINTS, CF_EVENTS, CF_INDEXES, CF_SESSIONS, FAMILIES, Hash, Position,
        StoredCheckpoint, StoredEvent, index,
    },
    event::{Event, SessionEnd},
    sign::{PublicKey, SigningKey},
};

/// Most messages taken into one write.
const MAX_BATCH: usize = 8192;
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Most sessions one retention pass removes (the rest wait for the next).
const EXPIRE_PER_PASS: usize = 10_000;
/// How often the sessions a failed write cut short are tried again.
const CUT_RETRY: Duration = Duration::from_secs(1);
/// The end recorded for a session a failed write cut short, once the store
/// writes again.
const CUT_SHORT: &str = "cut short: the audit store could not write (disk full or I/O error), so sluice refused the rest of the session";

struct Open {
    next_seq: u32,
    head: Hash,
    summary: SessionSummary,
    decisions: HashSet<String>,
    /// The session's durable mark ([`crate::SessionLog::durable`]).
    durable: Arc<AtomicU32>,
}

impl Open {
    /// Every event applied so far is durable.
    fn mark_durable(&self) {
        self.durable.store(self.next_seq, Ordering::Release);
    }
}

pub(crate) struct Writer {
    db: DB,
    options: StoreOptions,
    key: SigningKey,
    global: u64,
    open: HashMap<u64, Open>,
    /// Heads not yet covered by a checkpoint.
    dirty: BTreeMap<u64, (u32, Hash)>,
    failed: HashSet<u64>,
    checkpoint_n: u64,
    checkpoint_hash: String,
    last_checkpoint: Instant,
    last_sync: Instant,
    unsynced: bool,
    last_retention: Option<Instant>,
    /// The next session id is above every one written so far.
    next_session: u64,
    /// fsyncs and failed writes so far ([`crate::Store::health`]).
    health: Arc<Health>,
    /// Sessions with events written but not yet fsynced (sync durability):
    /// their durable marks move at the next fsync.
    lazy: HashSet<u64>,
    /// Sessions a failed write cut short (their start was written): closed
    /// with an end event once the store writes again.
    cut: BTreeSet<u64>,
    last_cut_try: Option<Instant>,
}

pub(crate) fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_keep_log_file_num(4);
    // Bounded memory: RocksDB's defaults let each column family's memtable
    // reach 64 MiB before it is flushed, so sluice's resident memory grew
    // by that much under a steady load before levelling off (found by the
    // soak). 8 MiB per family and 16 MiB for all of them together; the WAL
    // is capped too, so a family that changes rarely (sessions, indexes)
    // cannot pin old log files forever.
    o.set_write_buffer_size(8 << 20);
    o.set_db_write_buffer_size(16 << 20);
    o.set_max_total_wal_size(64 << 20);
    // Bounded descriptors: by default RocksDB keeps every table file open,
    // so its share of the daemon's open-file limit grew with the store's
    // size, in competition with sessions (two sockets each). 256 is far
    // above a working set of recent tables; older ones are reopened on the
    // rare read (audit export, verify).
    o.set_max_open_files(256);
    // Reuse old WAL files rather than growing new ones: an fsync that does
    // not change the file's size skips the inode write (on ext4 about a
    // third of a sync write's time). Safe with the default point-in-time
    // recovery, which stops at the first record of an older use.
    o.set_recycle_log_file_num(4);
    o
}

pub(crate) fn families() -> Vec<ColumnFamilyDescriptor> {
    FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, db_options()))
        .collect()
}

fn db_err(options: &StoreOptions, e: rocksdb::Error) -> StoreError {
    StoreError::Db {
        path: options.path.clone(),
        reason: e.into_string(),
    }
}

fn u64_value(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes)
}

impl Writer {
    pub(crate) fn open(
        options: &StoreOptions,
        health: Arc<Health>,
    ) -> Result<(Writer, u64, PublicKey), StoreError> {
        let (key, _created) = SigningKey::load_or_create(&options.key)?;
        std::fs::create_dir_all(&options.path).map_err(|e| StoreError::Db {
            path: options.path.clone(),
            reason: format!("cannot create the directory: {e}"),
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&options.path, std::fs::Permissions::from_mode(0o700));
        }
        let db = DB::open_cf_descriptors(&db_options(), &options.path, families())
            .map_err(|e| db_err(options, e))?;
        let public = key.public();
        let get = |k: &[u8]| db.get(k).map_err(|e| db_err(options, e));
        match get(codec::META_PUBLIC_KEY)? {
            Some(stored) if stored != public.0 => {
                let theirs = <[u8; 32]>::try_from(stored.as_slice())
                    .map(|k| PublicKey(k).fingerprint())
                    .unwrap_or_else(|_| "unreadable".into());
                return Err(StoreError::Key {
                    path: options.key.clone(),
                    reason: format!(
                        "this key (fingerprint {}) is not the one the store was signed with ({theirs}); use the store's own key",
                        public.fingerprint()
                    ),
                });
            }
            Some(_) => {}
            None => {
                db.put(codec::META_PUBLIC_KEY, public.0)
                    .and_then(|()| db.put(codec::META_FORMAT, [codec::FORMAT]))
                    .map_err(|e| db_err(options, e))?;
            }
        }
        let global = u64_value(get(codec::META_GLOBAL)?);
        let next_session = u64_value(get(codec::META_NEXT_SESSION)?).max(1);
        let (checkpoint_n, checkpoint_hash) = last_checkpoint(&db, options)?;
        let mut w = Writer {
            db,
            options: options.clone(),
            key,
            global,
            open: HashMap::new(),
            dirty: BTreeMap::new(),
            failed: HashSet::new(),
            checkpoint_n,
            checkpoint_hash,
            last_checkpoint: Instant::now(),
            last_sync: Instant::now(),
            unsynced: false,
            last_retention: None,
            next_session,
            health,
            lazy: HashSet::new(),
            cut: BTreeSet::new(),
            last_cut_try: None,
        };
        w.recover()?;
        // The Store hands out ids from here; `commit` moves the stored mark
        // past every id it writes.
        Ok((w, next_session, public))
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every family is created at open.
        self.db.cf_handle(name).expect("column family opened")
    }

    /// After an unclean stop: close sessions left open with an
    /// "interrupted" end, and sign every head not yet signed.
    fn recover(&mut self) -> Result<(), StoreError> {
        let mut unsigned = Vec::new();
        let mut open = Vec::new();
        for kind in [index::UNSIGNED, index::OPEN] {
            let iter = self.db.iterator_cf(
                self.cf(CF_INDEXES),
                IteratorMode::From(&[kind], Direction::Forward),
            );
            for item in iter {
                let (k, _) = item.map_err(|e| db_err(&self.options, e))?;
                if k.first() != Some(&kind) || k.len() != 9 {
                    break;
                }
                let session = u64::from_be_bytes(k[1..9].try_into().unwrap_or_default());
                if kind == index::UNSIGNED {
                    unsigned.push(session);
                } else {
                    open.push(session);
                }
            }
        }
        if unsigned.is_empty() && open.is_empty() {
            return Ok(());
        }
        for &session in &unsigned {
            if let Some((seq, hash)) = self.head_of(session)? {
                self.dirty.insert(session, (seq, hash));
            }
        }
        let mut batch = WriteBatch::default();
        let reason = "interrupted: sluice stopped before the session ended (crash or kill)";
        for &session in &open {
            if let Some(head) = self.close_session(&mut batch, session, reason)? {
                self.dirty.insert(session, head);
            }
        }
        batch.put(codec::META_GLOBAL, self.global.to_be_bytes());
        self.write(batch, true)?;
        tracing::warn!(
            interrupted = open.len(),
            unsigned = self.dirty.len(),
            "audit store: recovered from an unclean stop"
        );
        self.checkpoint("recovery", &[], 0, WriteBatch::default())
    }

    /// The seq and hash of a session's last event.
    fn head_of(&self, session: u64) -> Result<Option<(u32, Hash)>, StoreError> {
        let from = codec::event_key(session, u32::MAX);
        let mut iter = self.db.iterator_cf(
            self.cf(CF_EVENTS),
            IteratorMode::From(&from, Direction::Reverse),
        );
        match iter.next() {
            Some(Ok((k, v))) => match codec::split_event_key(&k) {
                Some((s, seq)) if s == session => {
                    let e = StoredEvent::decode(&v).map_err(StoreError::Write)?;
                    Ok(Some((seq, e.hash)))
                }
                _ => Ok(None),
            },
            Some(Err(e)) => Err(db_err(&self.options, e)),
            None => Ok(None),
        }
    }

    /// Stage the end of a session that cannot end itself (sluice stopped,
    /// or the store failed under it): an end event with `reason` linked
    /// to its last recorded event, its summary closed, its `o` marker
    /// removed. Returns its new head (None when it recorded nothing: the
    /// marker alone goes); `self.global` counts the event.
    fn close_session(
        &mut self,
        batch: &mut WriteBatch,
        session: u64,
        reason: &str,
    ) -> Result<Option<(u32, Hash)>, StoreError> {
        let Some((seq, head)) = self.head_of(session)? else {
            batch.delete_cf(self.cf(CF_INDEXES), codec::marker_key(index::OPEN, session));
            return Ok(None);
        };
        let mut summary: SessionSummary = self
            .db
            .get_cf(self.cf(CF_SESSIONS), session.to_be_bytes())
            .map_err(|e| db_err(&self.options, e))?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        let body = Event::SessionEnd(SessionEnd {
            reason: reason.to_owned(),
            statements: summary.statements,
            denied: summary.denied,
            ..SessionEnd::default()
        })
        .to_json();
        let at = Position {
            session,
            seq: seq + 1,
            global: self.global + 1,
            time_us: codec::now_us(),
        };
        let hash = codec::link(&head, &at, &body);
        self.global += 1;
        batch.put_cf(
            self.cf(CF_EVENTS),
            codec::event_key(session, at.seq),
            StoredEvent {
                global: at.global,
                time_us: at.time_us,
                hash,
                body: &body,
            }
            .encode(),
        );
        summary.session = session;
        summary.ended_us = Some(at.time_us);
        summary.end = Some(reason.to_owned());
        summary.events = at.seq + 1;
        batch.put_cf(
            self.cf(CF_SESSIONS),
            session.to_be_bytes(),
            serde_json::to_vec(&summary).unwrap_or_default(),
        );
        batch.delete_cf(self.cf(CF_INDEXES), codec::marker_key(index::OPEN, session));
        Ok(Some((at.seq, hash)))
    }

    /// Once the store writes again after a failure (RocksDB resumes by
    /// itself when the disk has room again), close the sessions the failure
    /// cut short, so none stays listed as open. Tried at most once a second.
    fn close_cut_sessions(&mut self) {
        if self.cut.is_empty() || self.last_cut_try.is_some_and(|t| t.elapsed() < CUT_RETRY) {
            return;
        }
        self.last_cut_try = Some(Instant::now());
        let global_before = self.global;
        let mut batch = WriteBatch::default();
        let sessions: Vec<u64> = self.cut.iter().copied().collect();
        let staged: Result<Vec<_>, _> = sessions
            .iter()
            .map(|&s| Ok((s, self.close_session(&mut batch, s, CUT_SHORT)?)))
            .collect();
        let result = staged.and_then(|heads| {
            batch.put(codec::META_GLOBAL, self.global.to_be_bytes());
            self.write(batch, true).map(|()| heads)
        });
        match result {
            Ok(heads) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
                self.mark_lazy_durable();
                for (session, head) in heads {
                    if let Some(head) = head {
                        self.dirty.insert(session, head);
                    }
                }
                self.cut.clear();
                tracing::warn!(
                    sessions = sessions.len(),
                    "audit store: writing again; the sessions its failure cut short are closed"
                );
            }
            Err(e) => {
                self.global = global_before;
                tracing::debug!(error = %e, "audit store: still failing");
            }
        }
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        if sync {
            self.health.sync();
        }
        let r = self
            .db
            .write_opt(batch, &wo)
            .map_err(|e| StoreError::Write(e.into_string()));
        self.health.outcome(&r);
        r
    }

    pub(crate) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut msgs = Vec::with_capacity(256);
        loop {
            let wait = self.next_wakeup();
            match rx.recv_timeout(wait) {
                Ok(m) => msgs.push(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while msgs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            if !msgs.is_empty() {
                self.commit(&mut msgs);
            }
            self.housekeeping();
        }
        if self.unsynced {
            let _ = self.db.flush_wal(true);
        }
        if let Err(e) = self.checkpoint("shutdown", &[], 0, WriteBatch::default()) {
            tracing::error!(error = %e, "audit store: final checkpoint failed");
        }
    }

    /// Longest time written events may wait for their fsync.
    fn sync_window(&self) -> Duration {
        match self.options.durability {
            Durability::Batch { window } => window,
            Durability::Sync => crate::LAZY_SYNC,
        }
    }

    fn next_wakeup(&self) -> Duration {
        let mut wait = Duration::from_secs(60);
        if !self.dirty.is_empty() {
            wait = wait.min(
                self.options
                    .checkpoint_interval
                    .saturating_sub(self.last_checkpoint.elapsed()),
            );
        }
        if self.unsynced {
            wait = wait.min(self.sync_window().saturating_sub(self.last_sync.elapsed()));
        }
        if !self.cut.is_empty() {
            wait = wait.min(CUT_RETRY);
        }
        wait.max(Duration::from_millis(1))
    }

    /// fsync what was written without it.
    fn sync_wal(&mut self) -> Result<(), StoreError> {
        self.health.sync();
        let r = self
            .db
            .flush_wal(true)
            .map_err(|e| StoreError::Write(format!("fsync: {}", e.into_string())));
        self.health.outcome(&r);
        if r.is_ok() {
            self.unsynced = false;
            self.mark_lazy_durable();
        }
        self.last_sync = Instant::now();
        r
    }

    /// After an fsync: what was written without one is durable now.
    fn mark_lazy_durable(&mut self) {
        for session in self.lazy.drain() {
            if let Some(open) = self.open.get(&session) {
                open.mark_durable();
            }
        }
    }

    fn housekeeping(&mut self) {
        self.close_cut_sessions();
        if self.unsynced
            && self.last_sync.elapsed() >= self.sync_window()
            && let Err(e) = self.sync_wal()
        {
            tracing::error!(error = %e, "audit store: fsync failed");
        }
        if !self.dirty.is_empty()
            && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval
            && let Err(e) = self.checkpoint("interval", &[], 0, WriteBatch::default())
        {
            // Try again one interval later, not at once.
            self.last_checkpoint = Instant::now();
            tracing::error!(error = %e, "audit store: checkpoint failed");
        }
        if self
            .last_retention
            .is_none_or(|t| t.elapsed() >= RETENTION_EVERY)
        {
            self.last_retention = Some(Instant::now());
            let cutoff =
                codec::now_us().saturating_sub(
                    self.options.retention.as_micros().min(u128::from(u64::MAX)) as u64,
                );
            match self.expire(cutoff) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(sessions = n, "audit store: retention removed old sessions")
                }
                Err(e) => tracing::error!(error = %e, "audit store: retention failed"),
            }
        }
    }

    /// One group commit.
    fn commit(&mut self, msgs: &mut Vec<Msg>) {
        let mut batch = WriteBatch::default();
        let mut barriers = Vec::new();
        let mut checkpoints = Vec::new();
        let mut expiries = Vec::new();
        // Undo state for a failed write: sessions as they were, the dirty
        // entries replaced, the global counter.
        let mut undo_open: HashMap<u64, Option<Open>> = HashMap::new();
        let mut undo_dirty: HashMap<u64, Option<(u32, Hash)>> = HashMap::new();
        let global_before = self.global;
        let mut touched = HashSet::new();
        let mut urgent_events = false;
        let mut max_session = 0;
        let now = codec::now_us();
        for msg in msgs.drain(..) {
            match msg {
                Msg::Event {
                    session,
                    seq,
                    body,
                    note,
                    urgent,
                } => {
                    if self.failed.contains(&session) {
                        continue;
                    }
                    urgent_events |= urgent;
                    touched.insert(session);
                    max_session = max_session.max(session);
                    if let std::collections::hash_map::Entry::Vacant(v) = undo_open.entry(session) {
                        v.insert(self.open.get(&session).map(|o| Open {
                            next_seq: o.next_seq,
                            head: o.head,
                            summary: o.summary.clone(),
                            decisions: o.decisions.clone(),
                            durable: o.durable.clone(),
                        }));
                        undo_dirty.insert(session, self.dirty.get(&session).copied());
                    }
                    self.apply(&mut batch, session, seq, &body, note, now);
                }
                Msg::Barrier { session, reply } => barriers.push((session, reply)),
                // Both act on the store as it is after this batch.
                Msg::Checkpoint { reply } => checkpoints.push(reply),
                Msg::Expire { before_us, reply } => expiries.push((before_us, reply)),
            }
        }
        let result = if self.global != global_before || !batch.is_empty() {
            batch.put(codec::META_GLOBAL, self.global.to_be_bytes());
            // Never lower: a batch may hold only older sessions' events.
            if max_session >= self.next_session {
                self.next_session = max_session + 1;
                batch.put(codec::META_NEXT_SESSION, self.next_session.to_be_bytes());
            }
            let sync = self.options.durability == Durability::Sync
                && (urgent_events || !barriers.is_empty());
            let r = self.write(batch, sync);
            if r.is_ok() {
                if sync {
                    self.unsynced = false;
                    self.last_sync = Instant::now();
                    self.mark_lazy_durable();
                } else {
                    self.unsynced = true;
                }
                for session in &touched {
                    match self.open.get(session) {
                        // Durable now: synced, or written under batch
                        // durability (where written is what counts).
                        Some(open) if sync || self.options.durability != Durability::Sync => {
                            open.mark_durable();
                        }
                        Some(_) => {
                            self.lazy.insert(*session);
                        }
                        None => {}
                    }
                }
            }
            r
        } else if self.options.durability == Durability::Sync
            && self.unsynced
            && !barriers.is_empty()
        {
            // A barrier for events an earlier, unsynced write holds.
            self.sync_wal()
        } else {
            Ok(())
        };
        if let Err(e) = &result {
            // A session waiting here may have events in an earlier write
            // this fsync was to cover: none of it counts as recorded.
            touched.extend(barriers.iter().map(|(session, _)| *session));
            tracing::error!(error = %e, sessions = touched.len(), "audit store: write failed; the affected sessions are refused");
            self.global = global_before;
            for (session, before) in undo_open {
                match before {
                    Some(o) => {
                        self.open.insert(session, o);
                    }
                    None => {
                        self.open.remove(&session);
                    }
                }
            }
            for (session, before) in undo_dirty {
                match before {
                    Some(d) => {
                        self.dirty.insert(session, d);
                    }
                    None => {
                        self.dirty.remove(&session);
                    }
                }
            }
            // A failed session writes nothing more. One whose start was
            // written is closed once the store writes again (or, if sluice
            // stops first, by the next start's recovery, from its marker).
            for session in &touched {
                if self.open.remove(session).is_some() {
                    self.cut.insert(*session);
                }
            }
            self.last_cut_try = Some(Instant::now());
            self.failed.extend(touched);
        }
        for (session, reply) in barriers {
            let answer = if self.failed.contains(&session) {
                Err(match &result {
                    Err(e) => e.clone(),
                    Ok(()) => StoreError::Write("an earlier write for this session failed".into()),
                })
            } else {
                Ok(())
            };
            let _ = reply.send(answer);
        }
        for (before_us, reply) in expiries {
            let _ = reply.send(self.expire(before_us));
        }
        for reply in checkpoints {
            let _ = reply.send(if self.dirty.is_empty() {
                Ok(())
            } else {
                self.checkpoint("requested", &[], 0, WriteBatch::default())
            });
        }
        // A failed session never writes again; forget it once it is gone.
        if self.failed.len() > 4096 {
            let open = &self.open;
            self.failed.retain(|s| open.contains_key(s));
        }
    }

    /// Stage one event into the batch.
    fn apply(
        &mut self,
        batch: &mut WriteBatch,
        session: u64,
        seq: u32,
        body: &[u8],
        note: Note,
        now: u64,
    ) {
        if let Note::Start(summary, durable) = note {
            // Never write over a recorded session (an id handed out twice
            // would replace evidence): refuse the new one instead.
            if !matches!(
                self.db
                    .get_pinned_cf(self.cf(CF_EVENTS), codec::event_key(session, 0)),
                Ok(None)
            ) {
                tracing::error!(
                    session,
                    "audit store: session id already recorded; refusing the session"
                );
                self.failed.insert(session);
                return;
            }
            let summary = SessionSummary {
                started_us: now,
                ..*summary
            };
            for (kind, field) in [
                (index::TIME, None),
                (index::IDENTITY, Some(summary.identity.as_str())),
                (index::TARGET, Some(summary.target.as_str())),
            ] {
                batch.put_cf(
                    self.cf(CF_INDEXES),
                    codec::index_key(kind, field, now, session),
                    [],
                );
            }
            batch.put_cf(
                self.cf(CF_INDEXES),
                codec::marker_key(index::OPEN, session),
                [],
            );
            batch.put_cf(
                self.cf(CF_SESSIONS),
                session.to_be_bytes(),
                serde_json::to_vec(&summary).unwrap_or_default(),
            );
            self.open.insert(
                session,
                Open {
                    next_seq: 0,
                    head: codec::genesis(session),
                    summary,
                    decisions: HashSet::new(),
                    durable,
                },
            );
            return self.apply(batch, session, seq, body, Note::None, now);
        }
        let Some(open) = self.open.get_mut(&session) else {
            // Events of a session this writer never saw start (its start
            // failed to write): refuse the rest.
            self.failed.insert(session);
            return;
        };
        if seq != open.next_seq {
            tracing::error!(
                session,
                seq,
                expected = open.next_seq,
                "audit store: event out of order"
            );
            self.failed.insert(session);
            return;
        }
        self.global += 1;
        let at = Position {
            session,
            seq,
            global: self.global,
            time_us: now,
        };
        let hash = codec::link(&open.head, &at, body);
        open.head = hash;
        open.next_seq += 1;
        let value = StoredEvent {
            global: at.global,
            time_us: now,
            hash,
            body,
        }
        .encode();
        // Borrow of `open` ends here; the batch needs `self.cf`.
        let started_us = open.summary.started_us;
        let new_decision = match &note {
            Note::Decision(d) => open.decisions.insert(d.clone()).then(|| d.clone()),
            _ => None,
        };
        let ended = match note {
            Note::End {
                reason,
                statements,
                denied,
            } => {
                let mut summary = open.summary.clone();
                summary.ended_us = Some(now);
                summary.end = Some(reason);
                summary.events = seq + 1;
                summary.statements = statements;
                summary.denied = denied;
                Some(summary)
            }
            _ => None,
        };
        batch.put_cf(self.cf(CF_EVENTS), codec::event_key(session, seq), value);
        if let Some(d) = new_decision {
            batch.put_cf(
                self.cf(CF_INDEXES),
                codec::index_key(index::DECISION, Some(&d), started_us, session),
                [],
            );
        }
        if self.dirty.insert(session, (seq, hash)).is_none() {
            batch.put_cf(
                self.cf(CF_INDEXES),
                codec::marker_key(index::UNSIGNED, session),
                [],
            );
        }
        if let Some(summary) = ended {
            batch.put_cf(
                self.cf(CF_SESSIONS),
                session.to_be_bytes(),
                serde_json::to_vec(&summary).unwrap_or_default(),
            );
            batch.delete_cf(self.cf(CF_INDEXES), codec::marker_key(index::OPEN, session));
            self.open.remove(&session);
        }
    }

    /// Sign the dirty heads (and record `expired`), writing `extra` with it.
    fn checkpoint(
        &mut self,
        reason: &str,
        expired: &[u64],
        expired_events: u64,
        mut batch: WriteBatch,
    ) -> Result<(), StoreError> {
        let cp = Checkpoint {
            n: self.checkpoint_n + 1,
            time_us: codec::now_us(),
            global: self.global,
            prev: self.checkpoint_hash.clone(),
            key: self.key.public().fingerprint(),
            reason: reason.into(),
            // An expired session's absence is what this checkpoint signs.
            heads: self
                .dirty
                .iter()
                .filter(|(s, _)| !expired.contains(s))
                .map(|(&s, (seq, h))| Head(s, *seq, codec::hex(h)))
                .collect(),
            expired: expired.to_vec(),
            expired_events,
        };
        let body = serde_json::to_vec(&cp).unwrap_or_default();
        let signed = codec::signed_bytes(&body);
        let signature = self.key.sign(&signed);
        batch.put_cf(
            self.cf(CF_CHECKPOINTS),
            cp.n.to_be_bytes(),
            StoredCheckpoint {
                signature,
                body: &body,
            }
            .encode(),
        );
        for session in self.dirty.keys() {
            batch.delete_cf(
                self.cf(CF_INDEXES),
                codec::marker_key(index::UNSIGNED, *session),
            );
        }
        self.write(batch, true)?;
        self.unsynced = false;
        self.checkpoint_n = cp.n;
        self.checkpoint_hash = codec::hex(&codec::sha256(&signed));
        self.last_checkpoint = Instant::now();
        self.dirty.clear();
        tracing::info!(
            checkpoint = cp.n,
            hash = %self.checkpoint_hash,
            reason,
            sessions = cp.heads.len(),
            global = cp.global,
            "audit checkpoint signed"
        );
        Ok(())
    }

    /// Remove ended sessions that started before `before_us`.
    fn expire(&mut self, before_us: u64) -> Result<usize, StoreError> {
        let mut victims = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(CF_INDEXES),
            IteratorMode::From(&[index::TIME], Direction::Forward),
        );
        for item in iter {
            let (k, _) = item.map_err(|e| db_err(&self.options, e))?;
            if k.first() != Some(&index::TIME) || k.len() != 17 {
                break;
            }
            let started = u64::from_be_bytes(k[1..9].try_into().unwrap_or_default());
            if started >= before_us || victims.len() >= EXPIRE_PER_PASS {
                break;
            }
            let session = u64::from_be_bytes(k[9..17].try_into().unwrap_or_default());
            if !self.open.contains_key(&session) {
                victims.push(session);
            }
        }
        if victims.is_empty() {
            return Ok(0);
        }
        let mut batch = WriteBatch::default();
        let mut events = 0u64;
        for &session in &victims {
            let summary: SessionSummary = self
                .db
                .get_cf(self.cf(CF_SESSIONS), session.to_be_bytes())
                .map_err(|e| db_err(&self.options, e))?
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default();
            let count = self
                .head_of(session)?
                .map_or(0, |(seq, _)| u64::from(seq) + 1);
            events += count;
            let started = summary.started_us;
            batch.delete_range_cf(
                self.cf(CF_EVENTS),
                codec::event_key(session, 0),
                codec::event_key(session + 1, 0),
            );
            batch.delete_cf(self.cf(CF_SESSIONS), session.to_be_bytes());
            batch.delete_cf(
                self.cf(CF_INDEXES),
                codec::index_key(index::TIME, None, started, session),
            );
            batch.delete_cf(
                self.cf(CF_INDEXES),
                codec::index_key(index::IDENTITY, Some(&summary.identity), started, session),
            );
            batch.delete_cf(
                self.cf(CF_INDEXES),
                codec::index_key(index::TARGET, Some(&summary.target), started, session),
            );
            for d in ["deny", "approval"] {
                batch.delete_cf(
                    self.cf(CF_INDEXES),
                    codec::index_key(index::DECISION, Some(d), started, session),
                );
            }
            batch.delete_cf(self.cf(CF_INDEXES), codec::marker_key(index::OPEN, session));
            batch.delete_cf(
                self.cf(CF_INDEXES),
                codec::marker_key(index::UNSIGNED, session),
            );
        }
        self.checkpoint("expiry", &victims, events, batch)?;
        Ok(victims.len())
    }
}

/// The number and signed-bytes hash of the newest checkpoint.
fn last_checkpoint(db: &DB, options: &StoreOptions) -> Result<(u64, String), StoreError> {
    let cf = db.cf_handle(CF_CHECKPOINTS).expect("column family opened");
    let mut iter = db.iterator_cf(cf, IteratorMode::End);
    match iter.next() {
        Some(Ok((k, v))) => {
            let n = u64::from_be_bytes(<[u8; 8]>::try_from(&*k).unwrap_or_default());
            let cp = StoredCheckpoint::decode(&v).map_err(|reason| StoreError::Db {
                path: options.path.clone(),
                reason: format!("checkpoint {n}: {reason}"),
            })?;
            Ok((n, codec::hex(&codec::sha256(&codec::signed_bytes(cp.body)))))
        }
        Some(Err(e)) => Err(db_err(options, e)),
        None => Ok((0, String::new())),
    }
}
