//! Identity facts: what sluice knows about the workload behind a flow.
//!
//! Gateway flows are known by the client address, the interface the flow
//! arrived on and the source MAC. Local flows (jump host) are known by the
//! process that called connect(): pid, uid, gid, comm from the kernel, and
//! cmdline, executable and cgroup path from /proc. [`Resolver`]
//! (`resolve.rs`) maps these facts to a configured workload identity.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod resolve;

use std::{fmt, fs, net::SocketAddr};

pub use resolve::{Resolver, Workload};

use sluice_intercept::{ConnectRecord, GatewayRecord};

/// The address of the client, as the proxy's socket sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Where the client was going before the kernel steered it to sluice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalDst(pub SocketAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for OriginalDst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Everything known about the workload behind one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Facts {
    /// A flow forwarded through the gateway from an agent host.
    Remote {
        /// Agent address.
        client: ClientAddr,
        /// Ingress interface name (when the classifier recorded it).
        interface: Option<String>,
        /// Source MAC of the first packet, `aa:bb:cc:dd:ee:ff`.
        mac: Option<String>,
    },
    /// A process on this host (jump-host mode).
    Local {
        /// Client socket address (loopback).
        client: ClientAddr,
        /// Process id.
        pid: u32,
        /// Real uid.
        uid: u32,
        /// Real gid.
        gid: u32,
        /// Kernel command name.
        comm: String,
        /// Cgroup v2 id.
        cgroup_id: u64,
        /// Cgroup v2 path, from /proc (None if the process is gone).
        cgroup: Option<String>,
        /// Command line, from /proc (None if the process is gone).
        cmdline: Option<String>,
        /// Executable path, from /proc (None if the process is gone or
        /// sluice may not read it).
        exe: Option<String>,
    },
}

impl Facts {
    /// Facts of a gateway flow; `record` is what the classifier saw.
    pub fn remote(client: SocketAddr, record: Option<GatewayRecord>) -> Facts {
        Facts::Remote {
            client: ClientAddr(client),
            mac: record.as_ref().map(|r| format_mac(&r.mac)),
            interface: record.and_then(|r| r.interface),
        }
    }

    /// Facts of a local process's flow, completed from /proc.
    pub fn local(client: SocketAddr, record: &ConnectRecord) -> Facts {
        let proc_dir = format!("/proc/{}", record.pid);
        let cmdline = fs::read(format!("{proc_dir}/cmdline")).ok().map(|raw| {
            let parts: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            redact(&parts.join(" "))
        });
        let cgroup = fs::read_to_string(format!("{proc_dir}/cgroup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
            });
        let exe = fs::read_link(format!("{proc_dir}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        Facts::Local {
            client: ClientAddr(client),
            exe,
            pid: record.pid,
            uid: record.uid,
            gid: record.gid,
            comm: record.comm.clone(),
            cgroup_id: record.cgroup_id,
            cgroup,
            cmdline,
        }
    }

    /// The client address, whichever kind of flow this is.
    pub fn client(&self) -> ClientAddr {
        match self {
            Facts::Remote { client, .. } | Facts::Local { client, .. } => *client,
        }
    }
}

impl fmt::Display for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Facts::Remote {
                client,
                interface,
                mac,
            } => write!(
                f,
                "remote client={client} interface={} mac={}",
                interface.as_deref().unwrap_or("?"),
                mac.as_deref().unwrap_or("?")
            ),
            Facts::Local {
                client,
                pid,
                uid,
                gid,
                comm,
                cgroup_id,
                cgroup,
                cmdline,
                exe,
            } => write!(
                f,
                "local client={client} pid={pid} uid={uid} gid={gid} comm={comm:?} exe={:?} cgroup_id={cgroup_id} cgroup={:?} cmdline={:?}",
                exe.as_deref().unwrap_or("?"),
                cgroup.as_deref().unwrap_or("?"),
                cmdline.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// Command lines often carry credentials (`password=…` in a libpq
/// conninfo, `user:secret@` in a URI, `--password=…`): never log them.
fn redact(cmdline: &str) -> String {
    cmdline
        .split(' ')
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            if let Some(pos) = lower
                .find("password=")
                .or_else(|| lower.find("passwd="))
                .or_else(|| lower.find("pwd="))
            {
                let eq = pos + lower[pos..].find('=').unwrap_or(0) + 1;
                return format!("{}***", &word[..eq]);
            }
            if let (Some(scheme), Some(at)) = (word.find("://"), word.find('@')) {
                let creds = &word[scheme + 3..at];
                if let Some(colon) = creds.find(':') {
                    return format!(
                        "{}{}:***{}",
                        &word[..scheme + 3],
                        &creds[..colon],
                        &word[at..]
                    );
                }
            }
            word.to_owned()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per case: command line in, what may be logged out.
    #[test]
    fn credentials_in_command_lines_are_redacted() {
        let cases = [
            (
                "psql host=db user=a password=s3cret dbname=x",
                "psql host=db user=a password=*** dbname=x",
            ),
            (
                "psql postgresql://app:hunter2@db:5432/x",
                "psql postgresql://app:***@db:5432/x",
            ),
            (
                "mysql --password=topsecret -h db",
                "mysql --password=*** -h db",
            ),
            ("tool PWD=abc", "tool PWD=***"),
            ("psql -h db -U app", "psql -h db -U app"),
            ("psql postgresql://app@db/x", "psql postgresql://app@db/x"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn mac_is_lowercase_colon_separated() {
        assert_eq!(
            format_mac(&[0xde, 0xad, 0xbe, 0xef, 0, 1]),
            "de:ad:be:ef:00:01"
        );
    }

    #[test]
    fn local_facts_read_proc_of_a_live_process() {
        let me = std::process::id();
        let rec = ConnectRecord {
            original_dst: "10.0.0.1:5432".parse().unwrap(),
            pid: me,
            tid: me,
            uid: 0,
            gid: 0,
            comm: "test".into(),
            cgroup_id: 1,
        };
        let Facts::Local {
            cmdline,
            cgroup,
            exe,
            ..
        } = Facts::local("127.0.0.1:5000".parse().unwrap(), &rec)
        else {
            panic!("expected local facts")
        };
        assert!(cmdline.is_some_and(|c| !c.is_empty()));
        assert!(cgroup.is_some());
        assert!(exe.is_some());
    }
}
