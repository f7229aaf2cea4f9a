//! Errors of the interception layer, each saying what the operator can do.
use std::path::PathBuf;

/// Why interception could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    /// The object or a program could not be loaded (verifier, permissions).
    #[error("loading the eBPF programs failed: {0} (run `sluice doctor`)")]
    Load(#[from] aya::EbpfError),
    /// A program could not be loaded or attached.
    #[error("{what}: {source} (run `sluice doctor`)")]
    Program {
        /// Which program and target.
        what: String,
        /// aya's error.
        source: aya::programs::ProgramError,
    },
    /// A map is missing or could not be written.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// aya's error.
        source: aya::maps::MapError,
    },
    /// A map the programs need is not in the object.
    #[error("map {0} is missing from the eBPF object (build mismatch)")]
    MissingMap(&'static str),
    /// A program the loader needs is not in the object.
    #[error("program {0} is missing from the eBPF object (build mismatch)")]
    MissingProgram(&'static str),
    /// Pinning or unpinning on bpffs failed.
    #[error("bpffs {path}: {message}")]
    Pin {
        /// The pin path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A configured cgroup could not be opened.
    #[error("cgroup {path}: {source} (is it a cgroup v2 directory?)")]
    Cgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configured interface does not exist.
    #[error("interface `{0}` does not exist in this network namespace")]
    NoInterface(String),
    /// `ip rule` / `ip route` failed.
    #[error("policy routing: `{command}` failed: {message}")]
    Routing {
        /// The command line.
        command: String,
        /// stderr or the spawn error.
        message: String,
    },
    /// A socket option could not be read or set.
    #[error("{what}: {source}")]
    Socket {
        /// Which option.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl InterceptError {
    pub(crate) fn map(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| InterceptError::Map { name, source }
    }
    pub(crate) fn program(
        what: impl Into<String>,
    ) -> impl FnOnce(aya::programs::ProgramError) -> Self {
        let what = what.into();
        move |source| InterceptError::Program { what, source }
    }
}
