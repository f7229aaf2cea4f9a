//! `sluice doctor`: can this host run each interception mode? Every check
//! says what it found and, when it fails, what to do about it.

use std::{fs, path::Path};

use aya::{
    Ebpf,
    programs::{CgroupSockAddr, SchedClassifier, SkLookup, SockOps},
};
use sluice_common::programs;

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worth knowing.
    Warn,
    /// This blocks a mode.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Result.
    pub status: Status,
    /// What was found, and what to do if it failed.
    pub detail: String,
    /// Which modes need it: "gateway", "jump-host" or "both".
    pub needed_by: &'static str,
}

/// Run every check. Loads (but never attaches) the programs, so a verifier
/// rejection shows up here rather than at `sluice run`.
pub fn run() -> Vec<Check> {
    let mut out = Vec::new();
    let (major, minor) = kernel_version();
    out.push(Check {
        name: "kernel",
        status: if (major, minor) >= (6, 6) {
            Status::Ok
        } else {
            Status::Fail
        },
        detail: format!("{major}.{minor} (TCX and bpf links need 6.6 or later)"),
        needed_by: "both",
    });
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    out.push(Check {
        name: "BTF",
        status: if btf { Status::Ok } else { Status::Warn },
        detail: if btf {
            "/sys/kernel/btf/vmlinux present".into()
        } else {
            "no /sys/kernel/btf/vmlinux (programs do not need CO-RE, but diagnostics are poorer)"
                .into()
        },
        needed_by: "both",
    });
    let bpffs = mounted("bpf").into_iter().next();
    out.push(Check {
        name: "bpffs",
        status: if bpffs.is_some() {
            Status::Ok
        } else {
            Status::Fail
        },
        detail: bpffs.map_or(
            "not mounted: run `mount -t bpf bpf /sys/fs/bpf`".into(),
            |m| format!("mounted at {m}"),
        ),
        needed_by: "both",
    });
    let cg2 = mounted("cgroup2");
    out.push(Check {
        name: "cgroup v2",
        status: if cg2.is_empty() {
            Status::Fail
        } else {
            Status::Ok
        },
        detail: if cg2.is_empty() {
            "no cgroup2 mount: jump-host mode attaches to cgroup v2 directories".into()
        } else {
            format!("mounted at {}", cg2.join(", "))
        },
        needed_by: "jump-host",
    });
    let caps = effective_caps();
    for (bit, name, needed_by) in [
        (39u32, "CAP_BPF", "both"),
        (12, "CAP_NET_ADMIN", "both"),
        (38, "CAP_PERFMON", "both"),
        (19, "CAP_SYS_PTRACE", "jump-host"),
    ] {
        let has = caps & (1u64 << bit) != 0;
        // Without CAP_SYS_PTRACE the jump host still intercepts; only
        // another user's executable goes unread (not recorded, and no
        // `exes` rule can match it).
        let optional = name == "CAP_SYS_PTRACE";
        out.push(Check {
            name,
            status: if has {
                Status::Ok
            } else if optional {
                Status::Warn
            } else {
                Status::Fail
            },
            detail: if has {
                "effective".into()
            } else if optional {
                "missing: other users' executables are not recorded and `exes` rules cannot match them".into()
            } else {
                format!("missing: run as root or grant {name}")
            },
            needed_by,
        });
    }
    let ip = std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    out.push(Check {
        name: "iproute2",
        status: if ip { Status::Ok } else { Status::Fail },
        detail: if ip {
            "`ip` found (policy routing)".into()
        } else {
            "`ip` not found: install iproute2".into()
        },
        needed_by: "gateway",
    });
    out.extend(load_checks());
    out
}

/// The one-line verdict for the report's end.
pub fn verdict(checks: &[Check]) -> (bool, bool, String) {
    let blocks = |mode: &str| {
        checks
            .iter()
            .any(|c| c.status == Status::Fail && (c.needed_by == "both" || c.needed_by == mode))
    };
    let gw = !blocks("gateway");
    let jh = !blocks("jump-host");
    let word = |ok: bool| if ok { "ready" } else { "NOT ready" };
    (
        gw,
        jh,
        format!(
            "verdict: gateway mode {}, jump-host mode {}",
            word(gw),
            word(jh)
        ),
    )
}

fn load_checks() -> Vec<Check> {
    let mut out = Vec::new();
    let mut ebpf = match Ebpf::load(crate::object()) {
        Ok(e) => e,
        Err(e) => {
            out.push(Check {
                name: "load object",
                status: Status::Fail,
                detail: format!("{e}"),
                needed_by: "both",
            });
            return out;
        }
    };
    let mut verify = |name: &'static str, mode: &'static str| {
        let result = match ebpf.program_mut(name) {
            None => Err("missing from the object".to_string()),
            Some(p) => {
                if name == programs::SK_LOOKUP {
                    <&mut SkLookup>::try_from(p)
                        .map_err(|e| e.to_string())
                        .and_then(|p| p.load().map_err(|e| format!("{e:#}")))
                } else if name == programs::TC_INGRESS {
                    <&mut SchedClassifier>::try_from(p)
                        .map_err(|e| e.to_string())
                        .and_then(|p| p.load().map_err(|e| format!("{e:#}")))
                } else if name == programs::SOCKOPS {
                    <&mut SockOps>::try_from(p)
                        .map_err(|e| e.to_string())
                        .and_then(|p| p.load().map_err(|e| format!("{e:#}")))
                } else {
                    <&mut CgroupSockAddr>::try_from(p)
                        .map_err(|e| e.to_string())
                        .and_then(|p| p.load().map_err(|e| format!("{e:#}")))
                }
            }
        };
        out.push(Check {
            name,
            status: if result.is_ok() {
                Status::Ok
            } else {
                Status::Fail
            },
            detail: match result {
                Ok(()) => "verifier accepted it".into(),
                Err(e) => verifier_tail(&e),
            },
            needed_by: mode,
        });
    };
    verify(programs::TC_INGRESS, "gateway");
    verify(programs::SK_LOOKUP, "gateway");
    for p in [
        programs::CONNECT4,
        programs::CONNECT6,
        programs::GETPEERNAME4,
        programs::GETPEERNAME6,
        programs::SOCKOPS,
    ] {
        verify(p, "jump-host");
    }
    out
}

fn kernel_version() -> (u32, u32) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn mounted(fstype: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == fstype).then(|| f[1].to_string())
        })
        .collect()
}

fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// The verifier's log is thousands of lines; its verdict is at the end.
fn verifier_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let head = lines
        .first()
        .copied()
        .unwrap_or("")
        .split("Verifier output")
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let tail: Vec<&str> = lines.iter().rev().take(5).rev().copied().collect();
    format!("{head} ... {}", tail.join(" | "))
}
