//! Network namespaces as guards, and commands run inside them.
//!
//! Commands enter a namespace with `nsenter --net=…` rather than
//! `ip netns exec`, which remounts /sys and hides the cgroup v2 hierarchy.
use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Create `name`, replacing a leftover of the same name, with `lo` up.
    pub fn create(name: &str) -> Netns {
        let _ = sh(&["ip", "netns", "del", name]);
        run(&["ip", "netns", "add", name]);
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command that runs `argv` inside this namespace.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path())).arg("--").args(argv);
        c
    }

    /// Run and require success; returns stdout.
    pub fn run(&self, argv: &[&str]) -> String {
        let out = self
            .command(argv)
            .output()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        assert!(
            out.status.success(),
            "in netns {}: {argv:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run with a time limit; returns the output whatever the status.
    pub fn try_run(&self, argv: &[&str], limit: Duration) -> Output {
        let secs = limit.as_secs().max(1).to_string();
        let mut full = vec!["timeout", "-k", "2", secs.as_str()];
        full.extend_from_slice(argv);
        self.command(&full)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_LAB_KEEP").is_none() {
            // Processes still inside keep the namespace alive after the
            // name is gone; kill them first so nothing lingers.
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &self.name])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = sh(&["ip", "netns", "del", &self.name]);
        }
    }
}

/// Run on the host and require success.
pub fn run(argv: &[&str]) -> String {
    let out = sh(argv).unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh(argv: &[&str]) -> std::io::Result<Output> {
    Command::new(argv[0]).args(&argv[1..]).output()
}

/// A small tmpfs mounted at `dir` (created if missing), mode 700, of
/// `size` (`16m`); unmounted when the guard drops — hold it until
/// everything using the directory is gone.
pub fn mount_tmpfs(dir: &std::path::Path, size: &str) -> Unmount {
    std::fs::create_dir_all(dir).expect("create the mount point");
    run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        &format!("size={size},mode=700"),
        "tmpfs",
        dir.to_str().expect("a UTF-8 path"),
    ]);
    Unmount(dir.to_path_buf())
}

/// Unmounts a [`mount_tmpfs`] directory when dropped.
pub struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = sh(&["umount", "-l", self.0.to_str().unwrap_or_default()]);
    }
}
