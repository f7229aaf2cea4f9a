//! Reading a store for auditors: a RocksDB secondary instance, so it works
//! while the daemon writes (it sees the store as of opening), on a copy of
//! a store directory, and never modifies what it reads.
//!
//! [`Reader`] needs the `rocksdb` feature; what it reads
//! ([`RecordedEvent`], [`RecordedCheckpoint`]) and [`Filter`] do not.
#[cfg(feature = "rocksdb")]
use std::path::{Path, PathBuf};

#[cfg(feature = "rocksdb")]
use rocksdb::{DB, Direction, IteratorMode, Options};

#[cfg(feature = "rocksdb")]
use crate::{
    PublicKey, StoreError,
    codec::{self, CF_CHECKPOINTS, CF_EVENTS, CF_INDEXES, CF_SESSIONS, FAMILIES, index},
};
use crate::{SessionSummary, codec::Hash};

/// One stored event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Session id.
    pub session: u64,
    /// Seq within the session.
    pub seq: u32,
    /// Store-wide sequence.
    pub global: u64,
    /// Write time, µs since the epoch.
    pub time_us: u64,
    /// The stored chain hash.
    pub hash: Hash,
    /// The event's JSON, as stored.
    pub body: Vec<u8>,
}

/// One stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCheckpoint {
    /// Its number (the key).
    pub n: u64,
    /// The signature.
    pub signature: [u8; 64],
    /// The signed JSON body.
    pub body: Vec<u8>,
}

/// Which sessions to list or export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Workload identity, exactly.
    pub identity: Option<String>,
    /// Target name, exactly.
    pub target: Option<String>,
    /// Started at or after, µs.
    pub since_us: Option<u64>,
    /// Started before, µs.
    pub until_us: Option<u64>,
    /// Had a statement with this decision ("deny").
    pub decision: Option<String>,
    /// These sessions only.
    pub sessions: Option<Vec<u64>>,
}

impl Filter {
    /// Whether a session passes every condition.
    pub fn accepts(&self, s: &SessionSummary) -> bool {
        self.identity.as_ref().is_none_or(|i| *i == s.identity)
            && self.target.as_ref().is_none_or(|t| *t == s.target)
            && self.since_us.is_none_or(|t| s.started_us >= t)
            && self.until_us.is_none_or(|t| s.started_us < t)
            && self
                .sessions
                .as_ref()
                .is_none_or(|ids| ids.contains(&s.session))
    }

    /// Whether this is everything (no condition).
    pub fn is_everything(&self) -> bool {
        self.identity.is_none()
            && self.target.is_none()
            && self.since_us.is_none()
            && self.until_us.is_none()
            && self.decision.is_none()
            && self.sessions.is_none()
    }
}

#[cfg(feature = "rocksdb")]
/// A store opened for reading.
pub struct Reader {
    db: DB,
    path: PathBuf,
    scratch: PathBuf,
}

#[cfg(feature = "rocksdb")]
impl Drop for Reader {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

#[cfg(feature = "rocksdb")]
fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Db {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(feature = "rocksdb")]
impl Reader {
    /// Open the store at `path` for reading.
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        if !path.join("CURRENT").is_file() {
            return Err(err(
                path,
                "no audit store here (no RocksDB CURRENT file); pass the store directory, e.g. /var/lib/sluice/store",
            ));
        }
        let scratch = std::env::temp_dir().join(format!(
            "sluice-audit-reader-{}-{}",
            std::process::id(),
            codec::now_us()
        ));
        let mut opts = Options::default();
        opts.set_max_open_files(-1);
        let db = DB::open_cf_as_secondary(&opts, path, &scratch, FAMILIES).map_err(|e| {
            let _ = std::fs::remove_dir_all(&scratch);
            err(path, e.into_string())
        })?;
        db.try_catch_up_with_primary()
            .map_err(|e| err(path, e.into_string()))?;
        Ok(Reader {
            db,
            path: path.to_owned(),
            scratch,
        })
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family opened")
    }

    /// The public key kept in the store (trust it only as far as you trust
    /// whoever could write the store; pass the key you hold instead).
    pub fn public_key(&self) -> Result<Option<PublicKey>, StoreError> {
        let v = self
            .db
            .get(codec::META_PUBLIC_KEY)
            .map_err(|e| err(&self.path, e.into_string()))?;
        Ok(v.and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .map(PublicKey))
    }

    /// One session's summary.
    pub fn session(&self, id: u64) -> Result<Option<SessionSummary>, StoreError> {
        let v = self
            .db
            .get_cf(self.cf(CF_SESSIONS), id.to_be_bytes())
            .map_err(|e| err(&self.path, e.into_string()))?;
        v.map(|v| {
            serde_json::from_slice(&v)
                .map_err(|e| err(&self.path, format!("session {id}: unreadable summary: {e}")))
        })
        .transpose()
    }

    /// Sessions passing `filter`, oldest first. Uses the narrowest index.
    pub fn sessions(&self, filter: &Filter) -> Result<Vec<SessionSummary>, StoreError> {
        let mut ids = Vec::new();
        if let Some(list) = &filter.sessions {
            ids.extend(list.iter().copied());
            ids.sort_unstable();
        } else {
            let (kind, field) = if let Some(d) = &filter.decision {
                (index::DECISION, Some(d.as_str()))
            } else if let Some(i) = &filter.identity {
                (index::IDENTITY, Some(i.as_str()))
            } else if let Some(t) = &filter.target {
                (index::TARGET, Some(t.as_str()))
            } else {
                (index::TIME, None)
            };
            let start = codec::index_key(kind, field, filter.since_us.unwrap_or(0), 0);
            let prefix_len = start.len() - 16;
            let iter = self.db.iterator_cf(
                self.cf(CF_INDEXES),
                IteratorMode::From(&start, Direction::Forward),
            );
            for item in iter {
                let (k, _) = item.map_err(|e| err(&self.path, e.into_string()))?;
                if k.len() != start.len() || k[..prefix_len] != start[..prefix_len] {
                    break;
                }
                if let Some(s) = codec::index_session(&k) {
                    ids.push(s);
                }
            }
        }
        let mut out = Vec::new();
        for id in ids {
            if let Some(s) = self.session(id)?
                && filter.accepts(&s)
            {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// A session's events in order.
    pub fn events(
        &self,
        session: u64,
    ) -> impl Iterator<Item = Result<RecordedEvent, StoreError>> + '_ {
        self.events_from(codec::event_key(session, 0))
            .take_while(move |e| e.as_ref().map_or(true, |e| e.session == session))
    }

    /// Every event in the store, by session then seq.
    pub fn all_events(&self) -> impl Iterator<Item = Result<RecordedEvent, StoreError>> + '_ {
        self.events_from([0u8; 12])
    }

    fn events_from(
        &self,
        from: [u8; 12],
    ) -> impl Iterator<Item = Result<RecordedEvent, StoreError>> + '_ {
        let path = self.path.clone();
        self.db
            .iterator_cf(
                self.cf(CF_EVENTS),
                IteratorMode::From(&from, Direction::Forward),
            )
            .map(move |item| {
                let (k, v) = item.map_err(|e| err(&path, e.into_string()))?;
                let (session, seq) = codec::split_event_key(&k)
                    .ok_or_else(|| err(&path, format!("malformed event key {}", codec::hex(&k))))?;
                let e = codec::StoredEvent::decode(&v)
                    .map_err(|r| err(&path, format!("session {session} event {seq}: {r}")))?;
                Ok(RecordedEvent {
                    session,
                    seq,
                    global: e.global,
                    time_us: e.time_us,
                    hash: e.hash,
                    body: e.body.to_vec(),
                })
            })
    }

    /// Every checkpoint, in order.
    pub fn checkpoints(&self) -> impl Iterator<Item = Result<RecordedCheckpoint, StoreError>> + '_ {
        let path = self.path.clone();
        self.db
            .iterator_cf(self.cf(CF_CHECKPOINTS), IteratorMode::Start)
            .map(move |item| {
                let (k, v) = item.map_err(|e| err(&path, e.into_string()))?;
                let n = <[u8; 8]>::try_from(&*k)
                    .map(u64::from_be_bytes)
                    .map_err(|_| err(&path, "malformed checkpoint key"))?;
                let c = codec::StoredCheckpoint::decode(&v)
                    .map_err(|r| err(&path, format!("checkpoint {n}: {r}")))?;
                Ok(RecordedCheckpoint {
                    n,
                    signature: c.signature,
                    body: c.body.to_vec(),
                })
            })
    }

    /// Sessions still marked open (live, or interrupted and not yet
    /// recovered by a daemon start).
    pub fn open_sessions(&self) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(CF_INDEXES),
            IteratorMode::From(&[index::OPEN], Direction::Forward),
        );
        for item in iter {
            let (k, _) = item.map_err(|e| err(&self.path, e.into_string()))?;
            if k.first() != Some(&index::OPEN) || k.len() != 9 {
                break;
            }
            out.push(u64::from_be_bytes(k[1..9].try_into().unwrap_or_default()));
        }
        Ok(out)
    }

    /// Bytes the store's files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.path)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}
