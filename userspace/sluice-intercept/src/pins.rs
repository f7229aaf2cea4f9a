//! The bpffs directory where sluice pins its links.
//!
//! Pinned links outlive the daemon: if it is killed, the programs stay
//! attached and keep failing closed (the gateway's listener slot empties when
//! its socket closes; the jump-host rewrite lands on a closed port). The next
//! start finds the pins and replaces them; a clean stop removes them all.
#![allow(unsafe_code)]

use std::{
    ffi::CString,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};

use crate::InterceptError;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `<bpffs_dir>/links/<name>` for every link sluice owns.
pub(crate) struct PinDir {
    links: PathBuf,
    root: PathBuf,
}

impl PinDir {
    /// Create the directory (and check it sits on bpffs).
    pub(crate) fn prepare(root: &Path) -> Result<PinDir, InterceptError> {
        let err = |message: String| InterceptError::Pin {
            path: root.to_owned(),
            message,
        };
        let links = root.join("links");
        fs::create_dir_all(&links).map_err(|e| err(format!("cannot create: {e}")))?;
        if !on_bpffs(root) {
            return Err(err(
                "not on a bpffs mount: mount one with `mount -t bpf bpf /sys/fs/bpf` or set proxy.bpffs_dir"
                    .into(),
            ));
        }
        Ok(PinDir {
            links,
            root: root.to_owned(),
        })
    }

    /// Open the pin dir if it exists (for cleanup and inspection).
    pub(crate) fn existing(root: &Path) -> Option<PinDir> {
        let links = root.join("links");
        links.is_dir().then(|| PinDir {
            links,
            root: root.to_owned(),
        })
    }

    /// Where the counters map is pinned, for `sluice status`.
    pub(crate) fn counters(&self) -> PathBuf {
        self.root.join("counters")
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.links.join(name)
    }

    /// Names of the links currently pinned.
    pub(crate) fn names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.links) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Unpin `name` and hand back the live link (dropping it detaches).
    pub(crate) fn take(&self, name: &str) -> Option<FdLink> {
        let path = self.path(name);
        if !path.exists() {
            return None;
        }
        match PinnedLink::from_pin(&path) {
            Ok(pinned) => match pinned.unpin() {
                Ok(link) => Some(link),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot unpin stale link");
                    None
                }
            },
            Err(e) => {
                // Not a link (someone else's file): remove it so we can pin.
                tracing::warn!(path = %path.display(), error = %e, "removing unreadable pin");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    pub(crate) fn pin(&self, name: &str, link: FdLink) -> Result<PinnedLink, InterceptError> {
        let path = self.path(name);
        link.pin(&path).map_err(|e| InterceptError::Pin {
            path,
            message: e.to_string(),
        })
    }

    /// Detach and unpin every link, then remove the directories.
    pub(crate) fn remove_all(&self) {
        for name in self.names() {
            drop(self.take(&name));
        }
        let _ = fs::remove_file(self.counters());
        let _ = fs::remove_dir(&self.links);
        let _ = fs::remove_dir(&self.root);
    }
}

/// Name of the pin for a cgroup attachment: the path, flattened.
pub(crate) fn cgroup_pin_name(program: &str, cgroup: &Path) -> String {
    let flat: String = cgroup
        .to_string_lossy()
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    let mut name = format!("cg-{program}-{flat}");
    name.truncate(200);
    name
}

fn on_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid C string and `buf` a properly sized, zeroed struct.
    unsafe {
        let mut buf: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut buf) == 0 && buf.f_type as i64 == BPF_FS_MAGIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_pin_names_are_flat() {
        assert_eq!(
            cgroup_pin_name("connect4", Path::new("/sys/fs/cgroup/unified/agents")),
            "cg-connect4-_sys_fs_cgroup_unified_agents"
        );
    }
}
