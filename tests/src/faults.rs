//! What the fault-injection tests (`tests/tests/faults.rs`) and the soak
//! (`cargo xtask soak`) measure and check: a process's memory and open
//! descriptors from `/proc`, sluice's connections to the database, and the
//! comparison of what the database executed with what the store recorded.
use std::{collections::HashMap, path::Path, time::Duration};

use serde_json::Value;

use crate::{
    daemon::{Daemon, store_dir},
    netns::Netns,
};

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Resident memory of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Open descriptors of a process: all of them, and the sockets among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fds {
    pub total: usize,
    pub sockets: usize,
}

/// Count `/proc/<pid>/fd`.
pub fn fds(pid: u32) -> Fds {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"));
    let mut n = Fds {
        total: 0,
        sockets: 0,
    };
    for entry in dir.flatten() {
        n.total += 1;
        if std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false)
        {
            n.sockets += 1;
        }
    }
    n
}

/// Wait (bounded by `limit`) until `pid` holds no more sockets than
/// `baseline`; returns the last count either way.
pub fn settle_sockets(pid: u32, baseline: usize, limit: Duration) -> Fds {
    crate::wait_for(limit, || {
        let now = fds(pid);
        (now.sockets <= baseline).then_some(now)
    })
    .unwrap_or_else(|| fds(pid))
}

/// Established TCP connections in `ns` to remote port `port` (on the
/// gateway: sluice's database legs).
pub fn established_to(ns: &Netns, port: u16) -> usize {
    let filter = format!("( dport = :{port} )");
    ns.run(&["ss", "-Htn", "state", "established", &filter])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// Statements PostgreSQL logged (`log_statement = all`), with how many
/// times each ran.
pub fn executed_statements(pg_log: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for line in pg_log.lines() {
        if let Some((_, stmt)) = line.split_once("LOG:  statement: ") {
            *m.entry(stmt.trim().to_owned()).or_insert(0) += 1;
        }
    }
    m
}

/// Every event line (`"type":"event"`) of the store's export, read with
/// `sluice audit export` (a secondary instance: works while sluice runs).
pub fn export_events(daemon: &Daemon, state: &Path) -> Vec<Value> {
    let store = store_dir(state);
    let out = daemon.cli(&["audit", "export", "--store", store.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "audit export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event")
        .collect()
}

/// Statements the store recorded as allowed, with counts.
pub fn allowed_statements(events: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for v in events {
        let e = &v["event"];
        if e["kind"] == "statement" && e["decision"] == "allow" {
            let t = e["text"].as_str().unwrap_or_default().trim().to_owned();
            *m.entry(t).or_insert(0) += 1;
        }
    }
    m
}

/// What one recorded session looks like, from its events.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub session: u64,
    pub protocol: String,
    pub application: Option<String>,
    /// The `session_end` reason, if the session has ended.
    pub end: Option<String>,
    pub statements: Vec<String>,
}

/// The export's sessions (not the daemon's own admin session), by id.
pub fn sessions(events: &[Value]) -> Vec<Recorded> {
    let mut by_id: HashMap<u64, Recorded> = HashMap::new();
    for v in events {
        let id = v["session"].as_u64().unwrap_or_default();
        let e = &v["event"];
        let r = by_id.entry(id).or_insert_with(|| Recorded {
            session: id,
            ..Recorded::default()
        });
        match e["kind"].as_str().unwrap_or_default() {
            "session_start" => {
                r.protocol = e["protocol"].as_str().unwrap_or_default().to_owned();
                r.application = e["application"].as_str().map(str::to_owned);
            }
            "statement" => r
                .statements
                .push(e["text"].as_str().unwrap_or_default().to_owned()),
            "session_end" => r.end = Some(e["reason"].as_str().unwrap_or_default().to_owned()),
            _ => {}
        }
    }
    let mut all: Vec<Recorded> = by_id
        .into_values()
        .filter(|r| !r.protocol.is_empty())
        .collect();
    all.sort_by_key(|r| r.session);
    all
}

/// Bytes in the store's write-ahead log files (`*.log`). Until RocksDB
/// flushes them to tables, what they hold is also in memory (memtables):
/// resident memory may grow by that much and it is not a leak.
pub fn wal_bytes(store: &Path) -> u64 {
    std::fs::read_dir(store)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Open descriptors of `pid` on files under `dir` (the store's tables and
/// logs: RocksDB keeps every table file open, so their number follows the
/// store's size, not the load).
pub fn fds_under(pid: u32, dir: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(dir)))
                .count()
        })
        .unwrap_or(0)
}
