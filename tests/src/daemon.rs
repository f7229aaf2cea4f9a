//! The `sluice` daemon under test: started in a namespace (optionally inside
//! a cgroup), its log read back, stopped cleanly or killed.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use crate::wait_for;

/// A running daemon; killed on drop if still running (its pins are then
/// cleaned with `sluice cleanup`).
pub struct Daemon {
    child: Option<Child>,
    pub config: PathBuf,
    pub log: PathBuf,
    ns_path: String,
}

/// The log line the daemon prints once every program is attached.
pub const READY: &str = "sluice is intercepting";

impl Daemon {
    /// Start `sluice run` in the namespace at `ns_path`. `cgroup`, if given,
    /// is joined first (to prove the proxy's own sockets are not redirected).
    ///
    /// sluice refuses every statement no rule allows. Most lab tests are
    /// about interception, sessions and recording, not policy: a config
    /// without a `[policy]` table gets `default = "allow"` appended.
    pub fn start(ns_path: &str, config: &Path, log: &Path, cgroup: Option<&Path>) -> Daemon {
        let text = fs::read_to_string(config).unwrap();
        if !text.contains("[policy]") {
            fs::write(config, format!("{text}\n[policy]\ndefault = \"allow\"\n")).unwrap();
        }
        let bin = crate::sluice_bin();
        let logfile = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = match cgroup {
            Some(cg) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "echo $$ > {}/cgroup.procs && exec \"$@\"",
                        cg.display()
                    ))
                    .arg("sh")
                    .arg("nsenter");
                c
            }
            None => Command::new("nsenter"),
        };
        cmd.arg(format!("--net={ns_path}"))
            .arg("--")
            .arg(&bin)
            .arg("run")
            .arg("--config")
            .arg(config);
        let child = cmd
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("start sluice");
        let mut d = Daemon {
            child: Some(child),
            config: config.to_owned(),
            log: log.to_owned(),
            ns_path: ns_path.to_owned(),
        };
        let before = d.log_text().matches(READY).count();
        let ok = wait_for(Duration::from_secs(30), || {
            if d.log_text().matches(READY).count() > before {
                return Some(true);
            }
            match d.child.as_mut().unwrap().try_wait() {
                Ok(Some(_)) => Some(false),
                _ => None,
            }
        });
        assert_eq!(
            ok,
            Some(true),
            "sluice did not become ready:\n{}",
            d.log_text()
        );
        d
    }

    /// Start again with the same config and log, after [`Daemon::kill9`] or
    /// [`Daemon::stop`], without the cleanup a dropped `Daemon` does.
    pub fn restart(&mut self, cgroup: Option<&Path>) {
        assert!(self.child.is_none(), "restart of a running daemon");
        let mut fresh = Daemon::start(&self.ns_path, &self.config, &self.log, cgroup);
        self.child = fresh.child.take();
        // `fresh` now has no child; its drop must not clean up our state.
        std::mem::forget(fresh);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon not running").id()
    }

    /// Every thread's capability masks, from `/proc/<pid>/task/*/status`:
    /// (thread name, CapEff, CapPrm, CapBnd). Linux keeps them per thread.
    pub fn thread_caps(&self) -> Vec<(String, u64, u64, u64)> {
        let dir = format!("/proc/{}/task", self.pid());
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let Ok(status) = fs::read_to_string(entry.unwrap().path().join("status")) else {
                continue; // the thread ended meanwhile
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_owned()
            };
            let mask = |name: &str| u64::from_str_radix(&field(name), 16).unwrap_or(u64::MAX);
            out.push((
                field("Name:"),
                mask("CapEff:"),
                mask("CapPrm:"),
                mask("CapBnd:"),
            ));
        }
        out
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: what a crash looks like. Pins and rules stay behind.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon not running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        match wait_for(Duration::from_secs(20), || c.try_wait().ok().flatten()) {
            Some(status) => status,
            None => {
                let _ = c.kill();
                panic!(
                    "sluice did not stop within 20 s of SIGTERM:\n{}",
                    self.log_text()
                );
            }
        }
    }

    /// Run `sluice <args>` once in the daemon's namespace.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .arg("--")
            .arg(crate::sluice_bin())
            .args(args)
            .output()
            .expect("run sluice")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        // Whatever a killed daemon pinned must not leak into the next test.
        let _ = self.cli(&["cleanup", "--config", self.config.to_str().unwrap()]);
    }
}

/// A config for the gateway lab; the session store lives in `state`.
pub fn gateway_config(
    bpffs_dir: &Path,
    state: &Path,
    iface: &str,
    targets: &[(&str, &str, u16)],
) -> String {
    let mut s = format!(
        "[proxy]\nbpffs_dir = \"{}\"\nconnect_timeout_ms = 3000\n\n[gateway]\ninterfaces = [\"{iface}\"]\nlisten_port = 15432\n",
        bpffs_dir.display()
    );
    push_store(&mut s, state);
    push_targets(&mut s, targets);
    s
}

/// A config for the jump-host lab; the session store lives in `state`.
pub fn jump_config(
    bpffs_dir: &Path,
    state: &Path,
    cgroup: &Path,
    targets: &[(&str, &str, u16)],
) -> String {
    let mut s = format!(
        "[proxy]\nbpffs_dir = \"{}\"\nconnect_timeout_ms = 3000\n\n[jump_host]\ncgroups = [\"{}\"]\nlisten = \"127.0.0.1:15433\"\nlisten_v6 = \"[::1]:15433\"\n",
        bpffs_dir.display(),
        cgroup.display()
    );
    push_store(&mut s, state);
    push_targets(&mut s, targets);
    s
}

/// The store and its signing key under `state` (see [`store_dir`]).
fn push_store(s: &mut String, state: &Path) {
    s.push_str(&format!(
        "\n[store]\npath = \"{}\"\nsigning_key = \"{}\"\n",
        store_dir(state).display(),
        state.join("audit.key").display()
    ));
}

/// The store's export (JSON lines) once `done` says it holds what the test
/// waits for, or whatever it holds after 20 s (the caller's assertions then
/// say what is missing).
pub fn export_until(daemon: &Daemon, state: &Path, done: impl Fn(&str) -> bool) -> String {
    let store = store_dir(state);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = daemon.cli(&["audit", "export", "--store", store.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// After the store's disk filled and space came back: `recorded` (from a
/// statement run since) is in the export, the session the failure cut
/// short is closed with its reason, and the live store verifies.
pub fn assert_store_recovered(daemon: &Daemon, state: &Path, recorded: &str) {
    const CUT: &str = "cut short: the audit store could not write";
    let export = export_until(daemon, state, |t| t.contains(recorded) && t.contains(CUT));
    assert!(export.contains(recorded), "{recorded}: not recorded");
    assert!(
        export.contains(CUT),
        "the session the full disk cut short is not closed in the record"
    );
    let out = daemon.cli(&[
        "audit",
        "verify",
        "--live",
        "--store",
        store_dir(state).to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "the store does not verify after the full disk: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Statement events in an export.
pub fn statements_in(export: &str) -> usize {
    export
        .lines()
        .filter(|l| l.contains("\"statement\""))
        .count()
}

/// Where a lab config keeps its session store.
pub fn store_dir(state: &Path) -> PathBuf {
    state.join("store")
}

fn push_targets(s: &mut String, targets: &[(&str, &str, u16)]) {
    for (name, addr, port) in targets {
        s.push_str(&format!(
            "\n[[targets]]\nname = \"{name}\"\naddress = \"{addr}\"\nport = {port}\n"
        ));
    }
}
