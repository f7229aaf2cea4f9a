//! Capabilities after attach: once the programs are loaded and attached and
//! the listeners bound, the daemon keeps only what serving needs.
//!
//! - `CAP_NET_ADMIN`: `SO_MARK` on every upstream socket, and the netlink
//!   work (routes, tc) of the teardown on stop;
//! - `CAP_BPF` (`CAP_SYS_ADMIN` on kernels older than 5.8, which have no
//!   `CAP_BPF`): reading the interception maps per connection, which kernels
//!   before 6.5 check at every `bpf()` call;
//! - `CAP_SYS_PTRACE`, in jump-host mode only and only if the daemon had it:
//!   reading `/proc/<pid>/exe` of another user's process, the executable an
//!   identity rule's `exes` matches and every local session records.
//!
//! Everything else (`CAP_PERFMON`, `CAP_SYS_RESOURCE`, `CAP_DAC_OVERRIDE`,
//! `CAP_SETUID`, …) leaves the effective, permitted and inheritable sets,
//! the ambient set is cleared, and the bounding set is cut to the same list,
//! so nothing sluice runs could gain them back.
//!
//! Linux keeps capabilities per thread. Threads started before the drop keep
//! what they had: the async runtime's threads restrict themselves as they
//! start ([`restrict_thread`] in `on_thread_start`), the store is opened from
//! a thread that restricted itself first (RocksDB's threads inherit from
//! it), and the main thread drops its own after attach.

use std::fmt;

/// `CAP_SETPCAP`: needed (in the effective set) to shrink the bounding set.
const CAP_SETPCAP: u32 = 8;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

/// A set of capability numbers, as the kernel's 64-bit mask.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct CapSet(u64);

impl CapSet {
    fn with(self, cap: u32) -> CapSet {
        CapSet(self.0 | (1 << cap))
    }

    fn has(self, cap: u32) -> bool {
        self.0 & (1 << cap) != 0
    }
}

impl fmt::Display for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (0..64)
            .filter(|&c| self.has(c))
            .map(|c| match c {
                CAP_NET_ADMIN => "CAP_NET_ADMIN",
                CAP_SYS_PTRACE => "CAP_SYS_PTRACE",
                CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
                CAP_BPF => "CAP_BPF",
                _ => "other",
            })
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(" "))
        }
    }
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's effective and permitted sets.
fn current() -> std::io::Result<(CapSet, CapSet)> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    #[allow(unsafe_code)]
    // SAFETY: capget writes two `Data` words (version 3) into `data`, which
    // is exactly that size, and reads `header`; both outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| CapSet(u64::from(lo) | (u64::from(hi) << 32));
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// What the daemon keeps after attach, given what it holds now.
pub(crate) fn serving_set(jump_host: bool) -> CapSet {
    let held = current()
        .map(|(_, permitted)| permitted)
        .unwrap_or(CapSet(0));
    let map_access = if last_cap() >= CAP_BPF {
        CAP_BPF
    } else {
        CAP_SYS_ADMIN
    };
    let mut keep = CapSet(0).with(CAP_NET_ADMIN).with(map_access);
    if jump_host {
        keep = keep.with(CAP_SYS_PTRACE);
    }
    // Never ask for what the daemon does not hold: capset would refuse.
    CapSet(keep.0 & held.0)
}

/// Restrict the calling thread to `keep`: effective, permitted and
/// inheritable sets, ambient set cleared, bounding set cut to match.
pub(crate) fn restrict_thread(keep: CapSet) -> std::io::Result<()> {
    let (effective, _) = current()?;
    // The bounding set first, while CAP_SETPCAP is still effective.
    if effective.has(CAP_SETPCAP) {
        for cap in 0..=last_cap() {
            if !keep.has(cap) {
                #[allow(unsafe_code)]
                // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes plain integers
                // and only changes this thread's bounding set.
                let rc = unsafe {
                    libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0)
                };
                // EINVAL: a number this kernel does not know; nothing to drop.
                if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
    }
    #[allow(unsafe_code)]
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) takes plain
    // integers and only empties this thread's ambient set.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let lo = keep.0 as u32;
    let hi = (keep.0 >> 32) as u32;
    let data = [
        Data {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        Data {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    #[allow(unsafe_code)]
    // SAFETY: capset reads `header` and two `Data` words (version 3), which
    // `data` holds; both outlive the call. pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_only_what_it_is_given_and_others_are_untouched() {
        let before = current().unwrap();
        // Whatever this process holds (root in CI, nothing as a user), the
        // restricted thread ends with the intersection, and its siblings
        // keep theirs.
        let keep = CapSet(CapSet(0).with(CAP_NET_ADMIN).0 & before.1.0);
        let after = std::thread::spawn(move || {
            restrict_thread(keep).unwrap();
            current().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(after.0, keep);
        assert_eq!(after.1, keep);
        assert_eq!(current().unwrap(), before);
    }

    #[test]
    fn names_list_what_is_kept() {
        let s = CapSet(0).with(CAP_NET_ADMIN).with(CAP_BPF);
        assert_eq!(s.to_string(), "CAP_NET_ADMIN CAP_BPF");
        assert_eq!(CapSet(0).to_string(), "none");
    }
}
