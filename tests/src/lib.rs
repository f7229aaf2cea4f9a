//! sluice's test lab: real kernels, real servers, real clients.
//!
//! Layout: [`netns`] creates network namespaces and runs commands in them;
//! [`topology`] wires the gateway lab (agent host ─ gateway ─ database host)
//! and the jump-host lab (one namespace, a cgroup for agents); [`postgres`]
//! runs a real PostgreSQL 15 server inside a namespace and [`mariadb`] a real
//! MariaDB 10.11 server; [`daemon`] runs the `sluice` binary and reads its
//! log; [`scenario`] is the gateway lab with PostgreSQL and sluice that most
//! tests start from (and its MySQL twin, [`scenario::start_mysql`]);
//! [`packets`] crafts hostile packets with pnet; [`pki`] issues throwaway TLS
//! certificates; [`python`] finds the venv with psycopg 3, PyMySQL and
//! mysqlclient; [`oidc`] runs a real OpenID provider (npm `oidc-provider`) on
//! loopback and signs in to it through the device flow. Everything is removed
//! when its guard drops, on every exit path.
//!
//! Every namespace the lab creates has no route out of the machine: the only
//! links are veth pairs between lab namespaces.
#![allow(missing_docs)]

pub mod bench;
pub mod bench_all;
pub mod bench_connect;
pub mod bench_large;
pub mod bench_micro;
pub mod bench_mysql;
pub mod bench_pgbench;
pub mod bench_report;
pub mod bench_scale;
pub mod bench_store;
pub mod daemon;
pub mod demo;
pub mod faults;
pub mod labctl;
pub mod leaks;
pub mod mariadb;
pub mod netns;
pub mod oidc;
pub mod packets;
pub mod pki;
pub mod postgres;
pub mod python;
pub mod scenario;
pub mod soak;
pub mod topology;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Privileged tests need root (namespaces, eBPF). Under `cargo xtask test`
/// (`SLUICE_REQUIRE_PRIVILEGED=1`) a missing privilege is a failure, never a
/// silent skip; elsewhere the test says why it skipped.
pub fn require_privileged(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        return true;
    }
    if std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!(
            "{test}: needs root (network namespaces, eBPF); SLUICE_REQUIRE_PRIVILEGED=1 forbids skipping"
        );
    }
    eprintln!("SKIP {test}: needs root (network namespaces, eBPF); run `cargo xtask test` as root");
    false
}

/// The workspace's target directory (respects `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The `sluice` binary the lab runs: `$SLUICE_BIN`, else the newest of
/// target/{debug,release}/sluice.
pub fn sluice_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    // The lab driver built in release (benchmarks) runs the release daemon.
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("sluice")));
    if let Some(sibling) = sibling.filter(|p| p.exists()) {
        return sibling;
    }
    let candidates = ["debug", "release"].map(|p| target_dir().join(p).join("sluice"));
    candidates
        .iter()
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no sluice binary in {}: run `cargo build -p sluice` (cargo xtask test does)",
                target_dir().display()
            )
        })
}

/// Poll `f` every 50 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sluice-lab-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_LAB_KEEP").is_some() {
            return;
        }
        // A filesystem a test mounted inside (a small tmpfs for the store)
        // would stop the removal at its mount point: unmount it first. The
        // scenario's daemon is gone by now (its field drops first).
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if Path::new(point).starts_with(&self.0) {
                let _ = netns::sh(&["umount", "-l", point]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
