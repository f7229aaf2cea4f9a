//! What every task shares: the workspace root, the target directory, a `PATH`
//! that includes cargo's bin directory, and helpers to run child processes.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail};

/// Where the workspace is and how to run tools inside it.
pub struct Context {
    /// The workspace root (the directory holding the root `Cargo.toml`).
    pub root: PathBuf,
    /// The workspace's target directory, absolute.
    pub target_dir: PathBuf,
    /// `CARGO_TARGET_DIR` as the user gave it, made absolute, to hand on to
    /// child cargo runs (which start in `root`, not in the user's directory).
    target_dir_override: Option<PathBuf>,
    /// The cargo that started us (`$CARGO`), or `cargo` from `PATH`.
    cargo: OsString,
    /// `PATH` with cargo's bin directory in it: tools installed by `setup`
    /// (bpf-linker, cargo-nextest) live there, and a fresh root shell on
    /// Debian does not have it on its `PATH`.
    path: OsString,
}

impl Context {
    pub fn new() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .context("xtask's manifest directory has no parent")?
            .to_path_buf();

        let target_dir_override = match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => Some(
                env::current_dir()
                    .context("cannot read the current directory")?
                    .join(dir),
            ),
            _ => None,
        };
        let target_dir = target_dir_override
            .clone()
            .unwrap_or_else(|| root.join("target"));

        let mut dirs: Vec<PathBuf> =
            env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect();
        let cargo_bin = cargo_home().join("bin");
        if !dirs.contains(&cargo_bin) {
            dirs.insert(0, cargo_bin);
        }
        let path = env::join_paths(dirs).context("cannot build PATH")?;

        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

        Ok(Self {
            root,
            target_dir,
            target_dir_override,
            cargo,
            path,
        })
    }

    /// A command that runs in the workspace root with our `PATH`, no stdin.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root)
            .env("PATH", &self.path)
            .stdin(Stdio::null());
        cmd
    }

    /// `cargo` with `args`, in the workspace, using the workspace's target dir.
    pub fn cargo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(&self.cargo);
        cmd.args(args);
        if let Some(dir) = &self.target_dir_override {
            cmd.env("CARGO_TARGET_DIR", dir);
        }
        cmd
    }

    /// `cargo install ...`: outside the workspace's target dir, so an install
    /// neither fills `target/` nor waits on its lock.
    pub fn cargo_install<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(&self.cargo);
        cmd.arg("install").args(args).env_remove("CARGO_TARGET_DIR");
        cmd
    }
}

/// `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> PathBuf {
    if let Some(home) = env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
        .join(".cargo")
}

/// Runs `cmd` with inherited stdout/stderr; fails if it cannot start or exits
/// unsuccessfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` capturing its output. `None` if it could not start (not
/// installed); the exit status is left to the caller.
pub fn capture(cmd: &mut Command) -> Option<Output> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .ok()
}

/// First line of stdout if `cmd` starts and succeeds: for `--version` checks.
pub fn first_line_if_ok(cmd: &mut Command) -> Option<String> {
    let out = capture(cmd)?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Replaces this process with `cmd` (so signals and the exit status are the
/// child's own). Returns only if the exec failed.
pub fn exec(cmd: &mut Command) -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    let err = cmd.exec();
    anyhow::Error::new(err).context(format!("cannot run `{}`", show(cmd)))
}

/// The command line, for messages.
pub fn show(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Fails with an explanation unless the effective user is root.
pub fn require_root(task: &str, why: &str) -> Result<()> {
    let status =
        fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .context("no Uid line in /proc/self/status")?;
    if euid != "0" {
        bail!(
            "`cargo xtask {task}` must run as root (effective uid is {euid}): {why}. \
             Run it from a root shell, e.g. `sudo -i`, then `cargo xtask {task}`"
        );
    }
    Ok(())
}
