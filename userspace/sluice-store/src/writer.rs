//! The writer: the only code that writes the store.
//!
//! Sessions write their own events ([`Writer::record`], behind one lock):
//! each event's chain hash and global number are computed and the event is
//! written to RocksDB's log at once, on the session's thread, in one write
//! with its index entries. No hand-off to another thread on the way, so
//! under batch durability a statement is recorded without waking anyone.
//!
//! The writer thread ([`run`]) fsyncs. Under sync durability a session
//! that waits for its events sends a barrier; the thread answers every
//! barrier queued with one fsync (group commit), run outside the lock so
//! sessions go on writing meanwhile. An outcome (nobody waits for it) rides
//! on the next barrier's fsync, or [`crate::LAZY_SYNC`] later the thread's
//! own. The thread also signs checkpoints, runs retention and answers what
//! `Store` asks. A failed write or fsync refuses the sessions it was to
//! cover: nothing they record afterwards is accepted, so no chain ever has
//! a gap.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU32, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use crate::{
    Durability, Msg, Note, SessionSummary, StoreError, StoreOptions,
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
        self.durable.fetch_max(self.next_seq, Ordering::Release);
    }
}

pub(crate) struct Writer {
    db: Arc<DB>,
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
    /// fsyncs so far ([`crate::Store::syncs`]).
    syncs: Arc<AtomicU64>,
    /// Sessions with events written but not yet fsynced (sync durability):
    /// their durable marks move at the next fsync.
    lazy: HashSet<u64>,
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
        syncs: Arc<AtomicU64>,
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
        let db = Arc::new(
            DB::open_cf_descriptors(&db_options(), &options.path, families())
                .map_err(|e| db_err(options, e))?,
        );
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
            syncs,
            lazy: HashSet::new(),
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
        for &session in &open {
            let Some((seq, head)) = self.head_of(session)? else {
                batch.delete_cf(self.cf(CF_INDEXES), codec::marker_key(index::OPEN, session));
                continue;
            };
            let mut summary: SessionSummary = self
                .db
                .get_cf(self.cf(CF_SESSIONS), session.to_be_bytes())
                .map_err(|e| db_err(&self.options, e))?
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default();
            let reason =
                "interrupted: sluice stopped before the session ended (crash or kill)".to_owned();
            let body = Event::SessionEnd(SessionEnd {
                reason: reason.clone(),
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
            summary.end = Some(reason);
            summary.events = at.seq + 1;
            batch.put_cf(
                self.cf(CF_SESSIONS),
                session.to_be_bytes(),
                serde_json::to_vec(&summary).unwrap_or_default(),
            );
            batch.delete_cf(self.cf(CF_INDEXES), codec::marker_key(index::OPEN, session));
            self.dirty.insert(session, (at.seq, hash));
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

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        if sync {
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| StoreError::Write(e.into_string()))
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
        wait.max(Duration::from_millis(1))
    }

    /// After an fsync: what was written without one is durable now.
    fn mark_lazy_durable(&mut self) {
        for session in self.lazy.drain() {
            if let Some(open) = self.open.get(&session) {
                open.mark_durable();
            }
        }
    }

    /// A session whose record could not be written: it writes nothing
    /// more, and its `o` marker (if its start was written) has the next
    /// start close it as interrupted.
    fn fail(&mut self, session: u64) {
        self.open.remove(&session);
        self.lazy.remove(&session);
        self.failed.insert(session);
    }

    /// Write one event of one session now, on the caller's thread, without
    /// an fsync: this write is the chain's order. Under batch durability
    /// the session's durable mark moves at once; under sync durability at
    /// the thread's next fsync. `Ok(true)`: the thread should look again
    /// (the first write it has not synced, or the first head it has not
    /// signed, since it last looked), so the sync window and the
    /// checkpoint interval hold. An urgent event under sync durability
    /// does not wake it: the session waits for that event next, and its
    /// barrier brings the fsync. An error means the event is not recorded
    /// and the session is refused from then on.
    pub(crate) fn record(
        &mut self,
        session: u64,
        seq: u32,
        body: &[u8],
        note: Note,
        urgent: bool,
    ) -> Result<bool, StoreError> {
        if self.failed.contains(&session) {
            return Err(StoreError::Write(
                "an earlier write for this session failed".into(),
            ));
        }
        let waited_for = urgent && self.options.durability == Durability::Sync;
        let wake = self.dirty.is_empty() || !(self.unsynced || waited_for);
        let undo_dirty = self.dirty.get(&session).copied();
        let global_before = self.global;
        let mut batch = WriteBatch::default();
        self.apply(&mut batch, session, seq, body, note, codec::now_us());
        if self.failed.contains(&session) {
            // `apply` refused it and said why in the log.
            self.open.remove(&session);
            return Err(StoreError::Write(
                "the audit store refused this session's record".into(),
            ));
        }
        batch.put(codec::META_GLOBAL, self.global.to_be_bytes());
        // Never lower: sessions start in any order.
        if session >= self.next_session {
            self.next_session = session + 1;
            batch.put(codec::META_NEXT_SESSION, self.next_session.to_be_bytes());
        }
        match self.write(batch, false) {
            Ok(()) => {
                self.unsynced = true;
                if let Some(open) = self.open.get(&session) {
                    if self.options.durability == Durability::Sync {
                        self.lazy.insert(session);
                    } else {
                        // Written is what batch durability counts.
                        open.mark_durable();
                    }
                }
                Ok(wake)
            }
            Err(e) => {
                tracing::error!(error = %e, session, "audit store: write failed; the session is refused");
                self.global = global_before;
                match undo_dirty {
                    Some(d) => {
                        self.dirty.insert(session, d);
                    }
                    None => {
                        self.dirty.remove(&session);
                    }
                }
                self.fail(session);
                Err(e)
            }
        }
    }

    fn housekeeping(&mut self) {
        if !self.dirty.is_empty()
            && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval
            && let Err(e) = self.interval_checkpoint()
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

    /// Sign the dirty heads (and record `expired`), writing `batch` with
    /// it, and fsync.
    fn checkpoint(
        &mut self,
        reason: &str,
        expired: &[u64],
        expired_events: u64,
        batch: WriteBatch,
    ) -> Result<(), StoreError> {
        self.sign(reason, expired, expired_events, batch, true)
    }

    /// The checkpoint of the interval, written without an fsync: the
    /// thread's next one (within the sync window, outside the lock) makes it
    /// durable, so sessions do not wait on the disk behind the lock. A crash
    /// before then loses it with everything written after it (the log is
    /// in order), and recovery signs those heads again.
    fn interval_checkpoint(&mut self) -> Result<(), StoreError> {
        self.sign("interval", &[], 0, WriteBatch::default(), false)
    }

    /// Sign the dirty heads (and record `expired`), writing `batch` with it.
    fn sign(
        &mut self,
        reason: &str,
        expired: &[u64],
        expired_events: u64,
        mut batch: WriteBatch,
        sync: bool,
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
        self.write(batch, sync)?;
        if sync {
            self.unsynced = false;
            self.mark_lazy_durable();
        } else {
            self.unsynced = true;
        }
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

/// The writer shared by sessions (which write their own events) and the
/// thread (fsyncs, checkpoints, retention). The thread takes it out as it
/// stops, closing the database: `None` is a closed store.
pub(crate) type Shared = Arc<Mutex<Option<Writer>>>;

pub(crate) fn lock(shared: &Mutex<Option<Writer>>) -> MutexGuard<'_, Option<Writer>> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer thread: one fsync for every barrier queued (group commit,
/// under sync durability), the sync window, checkpoints, retention, and
/// what `Store` asks for. The fsync runs outside the lock, so sessions go
/// on writing meanwhile.
pub(crate) fn run(shared: Shared, rx: mpsc::Receiver<Msg>) {
    let Some(db) = lock(&shared).as_ref().map(|w| Arc::clone(&w.db)) else {
        return;
    };
    let mut msgs = Vec::with_capacity(256);
    loop {
        let Some(wait) = lock(&shared).as_ref().map(Writer::next_wakeup) else {
            break;
        };
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
        let mut barriers = Vec::new();
        let mut checkpoints = Vec::new();
        let mut expiries = Vec::new();
        for msg in msgs.drain(..) {
            match msg {
                Msg::Barrier { session, reply } => barriers.push((session, reply)),
                Msg::Checkpoint { reply } => checkpoints.push(reply),
                Msg::Expire { before_us, reply } => expiries.push((before_us, reply)),
                Msg::Wake => {}
            }
        }
        let due = lock(&shared).as_ref().is_some_and(|w| {
            w.unsynced
                && ((w.options.durability == Durability::Sync && !barriers.is_empty())
                    || w.last_sync.elapsed() >= w.sync_window())
        });
        let synced = if due { sync(&shared, &db) } else { Ok(()) };
        let mut guard = lock(&shared);
        let Some(w) = guard.as_mut() else {
            break;
        };
        for (session, reply) in barriers {
            // A barrier comes after its session's writes: the fsync above
            // (or an earlier one) covers them, unless it failed.
            if let Err(e) = &synced
                && !w.failed.contains(&session)
            {
                tracing::error!(error = %e, session, "audit store: fsync failed; the session is refused");
                w.fail(session);
            }
            let answer = if w.failed.contains(&session) {
                Err(match &synced {
                    Err(e) => e.clone(),
                    Ok(()) => StoreError::Write("an earlier write for this session failed".into()),
                })
            } else {
                Ok(())
            };
            let _ = reply.send(answer);
        }
        for (before_us, reply) in expiries {
            let _ = reply.send(w.expire(before_us));
        }
        for reply in checkpoints {
            let _ = reply.send(if w.dirty.is_empty() {
                Ok(())
            } else {
                w.checkpoint("requested", &[], 0, WriteBatch::default())
            });
        }
        w.housekeeping();
    }
    // Records are refused from here on; the database closes with `w`.
    let Some(mut w) = lock(&shared).take() else {
        return;
    };
    if w.unsynced {
        let _ = w.db.flush_wal(true);
    }
    if let Err(e) = w.checkpoint("shutdown", &[], 0, WriteBatch::default()) {
        tracing::error!(error = %e, "audit store: final checkpoint failed");
    }
}

/// fsync the log, outside the lock. Under sync durability the sessions
/// written before it get their durable marks as they were when it began;
/// if it fails, those sessions are refused.
fn sync(shared: &Mutex<Option<Writer>>, db: &DB) -> Result<(), StoreError> {
    let pending: Vec<(u64, Arc<AtomicU32>, u32)> = {
        let mut guard = lock(shared);
        let Some(w) = guard.as_mut() else {
            return Err(StoreError::Closed);
        };
        w.unsynced = false;
        w.syncs.fetch_add(1, Ordering::Relaxed);
        let open = &w.open;
        w.lazy
            .drain()
            .filter_map(|s| {
                open.get(&s)
                    .map(|o| (s, Arc::clone(&o.durable), o.next_seq))
            })
            .collect()
    };
    let r = db
        .flush_wal(true)
        .map_err(|e| StoreError::Write(format!("fsync: {}", e.into_string())));
    let mut guard = lock(shared);
    let Some(w) = guard.as_mut() else {
        return r;
    };
    w.last_sync = Instant::now();
    match &r {
        Ok(()) => {
            for (_, mark, n) in pending {
                mark.fetch_max(n, Ordering::Release);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, sessions = pending.len(), "audit store: fsync failed; the sessions it was to cover are refused");
            w.unsynced = true;
            for (session, _, _) in pending {
                w.fail(session);
            }
        }
    }
    r
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
