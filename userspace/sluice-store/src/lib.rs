//! The session store: every session through sluice, recorded in an embedded
//! RocksDB as tamper-evident audit evidence.
//!
//! - [`Store::open`] opens (or creates) a store and starts its writer
//!   thread; [`Store::begin`] starts a session's record and returns its
//!   [`SessionLog`].
//! - Each session is a hash chain of JSON events ([`event`]); the writer
//!   signs the chain heads in periodic [`checkpoint`]s with an ed25519 key
//!   ([`sign`]). [`codec`] is the on-disk format.
//! - Durability: [`SessionLog::durable`] returns once every event recorded
//!   so far is on disk (fsync). The writer commits whatever all sessions
//!   have queued in one write: group commit. A write that holds only
//!   outcomes (what a completed command sent, recorded after it was sent)
//!   is fsynced with the next write someone waits for, or at most
//!   [`LAZY_SYNC`] later: no statement waits on the disk twice.
//! - [`read`] opens a store for auditors (read-only, also while the daemon
//!   runs); [`verify`] checks a store or an export; [`export`] writes
//!   JSONL and CSV.
//!
//! The `rocksdb` feature (default) builds the store itself: [`Store`],
//! [`SessionLog`], the reader and exporting a store. Without it, what
//! reads the format without a database is left (codec, events,
//! checkpoints, keys, verifying an export): the fuzz targets use that.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod codec;
pub mod event;
pub mod export;
pub mod read;
pub mod redact;
pub mod sign;
pub mod time;
pub mod verify;
#[cfg(feature = "rocksdb")]
mod writer;

#[cfg(feature = "rocksdb")]
use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        mpsc,
    },
};
use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use event::Event;
pub use sign::PublicKey;

/// Why the store could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed (I/O error, disk full, corruption, lock held).
    #[error("audit store {path}: {reason}")]
    Db {
        /// The store directory.
        path: PathBuf,
        /// RocksDB's message.
        reason: String,
    },
    /// The signing key is missing, unreadable, or not private.
    #[error("audit signing key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A write failed; what was being written is not recorded.
    #[error("the audit store could not record: {0}")]
    Write(String),
    /// The store's writer has stopped.
    #[error("the audit store is closed")]
    Closed,
}

/// Longest time an outcome event waits for its fsync under
/// [`Durability::Sync`] when no statement's record comes to carry it.
pub const LAZY_SYNC: Duration = Duration::from_millis(20);

/// When an event counts as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (fsync) before [`SessionLog::durable`] returns: a statement
    /// reaches the database, and its answer the client, only once its event
    /// survives a crash. Outcome events (recorded after the answer left)
    /// ride on the next fsync, at most [`LAZY_SYNC`] later.
    Sync,
    /// Written to the log at once, fsynced at most `window` later: up to
    /// `window` of events may be lost in a power failure (not a process crash).
    Batch {
        /// Longest time between fsyncs.
        window: Duration,
    },
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The RocksDB directory.
    pub path: PathBuf,
    /// The ed25519 signing key (created if missing; `<key>.pub` beside it).
    pub key: PathBuf,
    /// When events count as recorded.
    pub durability: Durability,
    /// Longest time between checkpoints while events are being written.
    pub checkpoint_interval: Duration,
    /// Sessions that started longer ago than this are removed.
    pub retention: Duration,
}

impl StoreOptions {
    /// Defaults for a store at `path`: key `<path>.key`, sync durability,
    /// a checkpoint every second, 400 days' retention.
    pub fn new(path: impl Into<PathBuf>) -> StoreOptions {
        let path = path.into();
        let mut key = path.clone().into_os_string();
        key.push(".key");
        StoreOptions {
            path,
            key: PathBuf::from(key),
            durability: Durability::Sync,
            checkpoint_interval: Duration::from_secs(1),
            retention: Duration::from_secs(400 * 86_400),
        }
    }
}

/// What `sluice audit list` shows of a session without reading its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session id.
    pub session: u64,
    /// Start, µs since the epoch.
    pub started_us: u64,
    /// Workload identity.
    pub identity: String,
    /// Target name.
    pub target: String,
    /// Client address.
    pub client: String,
    /// Database user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// End, µs since the epoch (None: open, or interrupted before recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_us: Option<u64>,
    /// Why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Events recorded (set at the end).
    #[serde(default)]
    pub events: u32,
    /// Statements allowed.
    #[serde(default)]
    pub statements: u64,
    /// Statements refused.
    #[serde(default)]
    pub denied: u64,
}

#[cfg(feature = "rocksdb")]
/// The writer thread's inbox.
enum Msg {
    /// One event of one session, in seq order.
    Event {
        session: u64,
        seq: u32,
        body: Vec<u8>,
        note: Note,
        /// Someone will wait for it (all but outcomes): its write is
        /// fsynced at once under [`Durability::Sync`].
        urgent: bool,
    },
    /// Reply once everything sent before it by this session is durable.
    Barrier {
        session: u64,
        reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
    /// Write a checkpoint now (tests, `sluice` shutdown).
    Checkpoint {
        reply: mpsc::Sender<Result<(), StoreError>>,
    },
    /// Remove sessions that started before this time (µs).
    Expire {
        before_us: u64,
        reply: mpsc::Sender<Result<usize, StoreError>>,
    },
}

#[cfg(feature = "rocksdb")]
/// What the writer needs to know of an event beyond its bytes.
enum Note {
    None,
    Start(Box<SessionSummary>, Arc<AtomicU32>),
    Decision(String),
    End {
        reason: String,
        statements: u64,
        denied: u64,
    },
}

#[cfg(feature = "rocksdb")]
struct Inner {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    next_session: AtomicU64,
    public: PublicKey,
    path: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    health: Arc<Health>,
}

#[cfg(feature = "rocksdb")]
/// What the writer reports of itself (for `/metrics`): read from any
/// thread, never blocking the writer.
#[derive(Debug, Default)]
pub struct Health {
    syncs: AtomicU64,
    write_failures: AtomicU64,
    failing: AtomicBool,
}

#[cfg(feature = "rocksdb")]
impl Health {
    /// fsyncs since the store was opened (sync writes and lazy syncs).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Writes and fsyncs that failed since the store was opened.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    /// The last write or fsync failed (a full disk, an I/O error): sessions
    /// are refused until one succeeds again.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub(crate) fn sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn outcome<T, E>(&self, r: &Result<T, E>) {
        if r.is_err() {
            self.write_failures.fetch_add(1, Ordering::Relaxed);
        }
        self.failing.store(r.is_err(), Ordering::Relaxed);
    }
}

#[cfg(feature = "rocksdb")]
/// An open store. Cheap to clone; the writer stops when [`Store::close`]
/// is called or the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[cfg(feature = "rocksdb")]
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

#[cfg(feature = "rocksdb")]
impl Store {
    /// Open or create the store, recover from an unclean stop (open
    /// sessions get an "interrupted" end, unsigned events a checkpoint),
    /// and start the writer.
    pub fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        let health = Arc::new(Health::default());
        let (writer, next_session, public) = writer::Writer::open(options, Arc::clone(&health))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sluice-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Write(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                next_session: AtomicU64::new(next_session),
                public,
                path: options.path.clone(),
                thread: Mutex::new(Some(thread)),
                health,
            }),
        })
    }

    /// The checkpoint signing public key.
    pub fn public_key(&self) -> PublicKey {
        self.inner.public
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many times the writer has fsynced the log since the store was
    /// opened (sync writes and lazy syncs; for tests and benchmarks).
    pub fn syncs(&self) -> u64 {
        self.inner.health.syncs()
    }

    /// The writer's health, shared: cheap to keep and read for metrics.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.inner.health)
    }

    fn send(&self, msg: Msg) -> bool {
        match &*self.inner.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => tx.send(msg).is_ok(),
            None => false,
        }
    }

    /// Start a session's record with its start event (seq 0). The event is
    /// queued, not yet durable: the first [`SessionLog::durable`] covers it.
    pub fn begin(&self, start: event::SessionStart) -> SessionLog {
        let session = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        // The writer sets the start time as it writes the event.
        let summary = SessionSummary {
            session,
            identity: start.identity.clone(),
            target: start.target.clone(),
            client: start.facts.client.clone(),
            user: start.user.clone(),
            ..SessionSummary::default()
        };
        let log = SessionLog {
            store: self.clone(),
            session,
            next: Mutex::new(0),
            failed: AtomicBool::new(false),
            durable: Arc::new(AtomicU32::new(0)),
        };
        log.send(
            &Event::SessionStart(start),
            Note::Start(Box::new(summary), log.durable.clone()),
        );
        log
    }

    /// Sign the chain heads now.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let (reply, rx) = mpsc::channel();
        if !self.send(Msg::Checkpoint { reply }) {
            return Err(StoreError::Closed);
        }
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Remove (under a signed expiry checkpoint) ended sessions that
    /// started before `before_us`. Returns how many. The writer does this
    /// by itself for the configured retention.
    pub fn expire_before(&self, before_us: u64) -> Result<usize, StoreError> {
        let (reply, rx) = mpsc::channel();
        if !self.send(Msg::Expire { before_us, reply }) {
            return Err(StoreError::Closed);
        }
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Stop the writer after it has written what is queued and a final
    /// checkpoint. Later records fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.inner
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[cfg(feature = "rocksdb")]
impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

#[cfg(feature = "rocksdb")]
/// One session's record. Events are queued in the order they are recorded
/// (from any task); [`SessionLog::durable`] waits until they are on disk.
pub struct SessionLog {
    store: Store,
    session: u64,
    next: Mutex<u32>,
    failed: AtomicBool,
    /// How many of its events the writer has made durable (written, under
    /// batch durability): [`SessionLog::durable`] returns at once when
    /// that covers everything recorded, with no round trip to the writer.
    durable: Arc<AtomicU32>,
}

#[cfg(feature = "rocksdb")]
impl std::fmt::Debug for SessionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionLog({})", self.session)
    }
}

#[cfg(feature = "rocksdb")]
impl SessionLog {
    /// The session id.
    pub fn id(&self) -> u64 {
        self.session
    }

    /// Queue an event; returns its seq. Never blocks on I/O.
    pub fn record(&self, event: &Event) -> u32 {
        let note = match event {
            Event::Statement(s) if s.decision != "allow" => Note::Decision(s.decision.clone()),
            Event::SessionEnd(e) => Note::End {
                reason: e.reason.clone(),
                statements: e.statements,
                denied: e.denied,
            },
            _ => Note::None,
        };
        self.send(event, note)
    }

    fn send(&self, event: &Event, note: Note) -> u32 {
        let body = event.to_json();
        let urgent = !matches!(event, Event::Outcome(_));
        // The lock orders seq numbers and channel sends together.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let seq = *next;
        *next += 1;
        let sent = self.store.send(Msg::Event {
            session: self.session,
            seq,
            body,
            note,
            urgent,
        });
        if !sent {
            self.failed.store(true, Ordering::Relaxed);
        }
        seq
    }

    /// Wait until every event recorded so far is durable. An error means
    /// some of them are not recorded: the caller must not let the
    /// statement they describe through.
    pub async fn durable(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        // The writer advances the mark only after a successful write (and
        // fsync, under sync durability) holding every event below it.
        let recorded = *self.next.lock().unwrap_or_else(|e| e.into_inner());
        if self.durable.load(Ordering::Acquire) >= recorded {
            return Ok(());
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        if !self.store.send(Msg::Barrier {
            session: self.session,
            reply,
        }) {
            return Err(StoreError::Closed);
        }
        rx.await.unwrap_or(Err(StoreError::Closed))
    }
}
