//! Facts → workload identity, by the configured `[[identities]]` rules.
//!
//! First matching rule wins. A rule's conditions must all hold; each list
//! holds when any entry does. With no rules configured, workloads are
//! named by what is known for certain: `host:<ip>` for an agent host,
//! `uid:<n>` for a local process. With rules configured, a workload none
//! of them matches is `unknown`.
use std::{net::IpAddr, sync::Arc};

use sluice_config::identity::{IdentityRule, UNKNOWN};
use sluice_policy::engine::glob;

use crate::Facts;

/// Who a flow's workload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The identity name policy, records and approvals use.
    pub name: String,
    /// Its groups (policy rules match them as `group:<name>`).
    pub groups: Vec<String>,
    /// The rule that named it (`identities[2]`), or how it was named
    /// otherwise (`facts`, `unmatched`).
    pub matched_by: String,
}

/// The compiled `[[identities]]` rules.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    rules: Arc<Vec<IdentityRule>>,
}

impl Resolver {
    /// Rules as loaded (and validated) by `sluice-config`.
    pub fn new(rules: &[IdentityRule]) -> Resolver {
        Resolver {
            rules: Arc::new(rules.to_vec()),
        }
    }

    /// The workload behind a flow.
    pub fn resolve(&self, facts: &Facts) -> Workload {
        if self.rules.is_empty() {
            let name = match facts {
                Facts::Remote { client, .. } => format!("host:{}", unmapped(client.0.ip())),
                Facts::Local { uid, .. } => format!("uid:{uid}"),
            };
            return Workload {
                name,
                groups: Vec::new(),
                matched_by: "facts".into(),
            };
        }
        let mut passwd = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if matches(rule, facts, &mut passwd) {
                return Workload {
                    name: rule.name.clone(),
                    groups: rule.groups.clone(),
                    matched_by: format!("identities[{i}]"),
                };
            }
        }
        Workload {
            name: UNKNOWN.into(),
            groups: Vec::new(),
            matched_by: "unmatched".into(),
        }
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// A condition list: empty holds, otherwise any entry must.
fn any<T>(list: &[T], hit: impl Fn(&T) -> bool) -> bool {
    list.is_empty() || list.iter().any(hit)
}

fn matches(rule: &IdentityRule, facts: &Facts, passwd: &mut Option<String>) -> bool {
    let ip = unmapped(facts.client().0.ip());
    if !any(&rule.sources, |n| n.contains(&ip)) {
        return false;
    }
    match facts {
        Facts::Remote { interface, mac, .. } => {
            if rule.is_local() {
                return false;
            }
            let iface = interface.as_deref();
            let mac = mac.as_deref();
            any(&rule.interfaces, |i| iface == Some(i.as_str()))
                && any(&rule.macs, |m| {
                    mac.is_some_and(|x| x.eq_ignore_ascii_case(m))
                })
        }
        Facts::Local {
            uid,
            comm,
            cgroup,
            exe,
            ..
        } => {
            if rule.is_remote() {
                return false;
            }
            let cgroup = cgroup.as_deref().unwrap_or("");
            let user_ok = rule.users.is_empty() || {
                let text = passwd.get_or_insert_with(|| {
                    std::fs::read_to_string("/etc/passwd").unwrap_or_default()
                });
                let name = user_name(text, *uid);
                rule.users.iter().any(|u| Some(u.as_str()) == name)
            };
            any(&rule.uids, |u| u == uid)
                && user_ok
                && any(&rule.cgroups, |p| !cgroup.is_empty() && glob(p, cgroup))
                && any(&rule.units, |p| unit(cgroup).is_some_and(|u| glob(p, u)))
                && any(&rule.comms, |p| glob(p, comm))
                && any(&rule.exes, |p| exe.as_deref().is_some_and(|e| glob(p, e)))
                && any(&rule.containers, |p| {
                    container(cgroup).is_some_and(|c| glob(p, c))
                })
        }
    }
}

/// The user name of `uid` in an /etc/passwd text.
fn user_name(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse() == Ok(uid)).then_some(name)
    })
}

/// The innermost systemd unit (`*.service`, `*.scope`) of a cgroup path.
fn unit(cgroup: &str) -> Option<&str> {
    cgroup
        .rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
}

/// The container id in a cgroup path: the innermost component carrying 64
/// hex digits (`docker-<id>.scope`, `/docker/<id>`, `cri-containerd-<id>.scope`,
/// `libpod-<id>.scope`, `crio-<id>.scope`, kubepods).
fn container(cgroup: &str) -> Option<&str> {
    cgroup.rsplit('/').find_map(|c| {
        let bytes = c.as_bytes();
        let mut run = 0;
        for (i, b) in bytes.iter().enumerate() {
            if b.is_ascii_hexdigit() && !b.is_ascii_uppercase() {
                run += 1;
                if run == 64 && bytes.get(i + 1).is_none_or(|n| !n.is_ascii_hexdigit()) {
                    return Some(&c[i + 1 - 64..=i]);
                }
            } else {
                run = 0;
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientAddr;

    fn rules(toml_text: &str) -> Resolver {
        #[derive(serde::Deserialize)]
        struct File {
            identities: Vec<IdentityRule>,
        }
        let f: File = toml::from_str(toml_text).unwrap();
        Resolver::new(&f.identities)
    }

    fn remote(ip: &str, iface: &str, mac: &str) -> Facts {
        Facts::Remote {
            client: ClientAddr(format!("{ip}:40000").parse().unwrap()),
            interface: Some(iface.into()),
            mac: Some(mac.into()),
        }
    }

    fn local(uid: u32, comm: &str, cgroup: &str, exe: &str) -> Facts {
        Facts::Local {
            client: ClientAddr("127.0.0.1:40000".parse().unwrap()),
            pid: 42,
            uid,
            gid: uid,
            comm: comm.into(),
            cgroup_id: 7,
            cgroup: Some(cgroup.into()),
            cmdline: None,
            exe: Some(exe.into()),
        }
    }

    const RULES: &str = r#"
[[identities]]
name = "reporting"
groups = ["agents", "readers"]
sources = ["10.0.1.0/24"]
interfaces = ["eth1"]

[[identities]]
name = "mac-pinned"
macs = ["02:00:0A:00:02:05"]

[[identities]]
name = "ci"
groups = ["ci"]
units = ["ci-runner.service"]

[[identities]]
name = "py-agent"
cgroups = ["/sluice-agents/*"]
comms = ["python3*"]
exes = ["/usr/bin/python3*"]

[[identities]]
name = "container"
containers = ["abcdef*"]

[[identities]]
name = "root-tools"
uids = [0]
"#;

    #[test]
    fn first_matching_rule_names_the_workload() {
        let r = rules(RULES);
        let w = r.resolve(&remote("10.0.1.5", "eth1", "02:00:00:00:00:01"));
        assert_eq!(
            (w.name.as_str(), w.groups.clone(), w.matched_by.as_str()),
            (
                "reporting",
                vec!["agents".to_string(), "readers".to_string()],
                "identities[0]"
            )
        );
        // Right network, wrong interface: not the first rule.
        assert_eq!(
            r.resolve(&remote("10.0.1.5", "eth2", "02:00:00:00:00:01"))
                .name,
            "unknown"
        );
        // MACs compare in any case.
        assert_eq!(
            r.resolve(&remote("10.0.2.5", "eth2", "02:00:0a:00:02:05"))
                .name,
            "mac-pinned"
        );
    }

    #[test]
    fn local_processes_by_unit_cgroup_exe_container_uid() {
        let r = rules(RULES);
        let ci = local(
            1001,
            "psql",
            "/system.slice/ci-runner.service",
            "/usr/bin/psql",
        );
        assert_eq!(r.resolve(&ci).name, "ci");
        let py = local(
            1002,
            "python3",
            "/sluice-agents/agent-1",
            "/usr/bin/python3.11",
        );
        assert_eq!(r.resolve(&py).name, "py-agent");
        // Same cgroup, another program: not py-agent.
        let sh = local(1002, "bash", "/sluice-agents/agent-1", "/usr/bin/bash");
        assert_eq!(r.resolve(&sh).name, "unknown");
        let id = format!("abcdef{}", "0".repeat(58));
        let c = local(
            1003,
            "app",
            &format!("/system.slice/docker-{id}.scope"),
            "/app",
        );
        assert_eq!(r.resolve(&c).name, "container");
        assert_eq!(r.resolve(&local(0, "x", "/", "/x")).name, "root-tools");
        // Local rules never match remote flows.
        assert_eq!(
            r.resolve(&remote("127.0.0.1", "lo", "00:00:00:00:00:00"))
                .name,
            "unknown"
        );
    }

    #[test]
    fn without_rules_workloads_are_named_by_their_facts() {
        let r = Resolver::default();
        assert_eq!(
            r.resolve(&remote("10.0.1.5", "eth1", "02:00:00:00:00:01"))
                .name,
            "host:10.0.1.5"
        );
        assert_eq!(r.resolve(&local(1000, "a", "/", "/a")).name, "uid:1000");
    }

    #[test]
    fn users_are_looked_up_in_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nci:x:1001:1001::/home/ci:/bin/sh\n";
        assert_eq!(user_name(passwd, 1001), Some("ci"));
        assert_eq!(user_name(passwd, 5), None);
    }

    #[test]
    fn units_and_containers_come_from_the_cgroup_path() {
        assert_eq!(
            unit("/system.slice/ci-runner.service"),
            Some("ci-runner.service")
        );
        assert_eq!(
            unit("/user.slice/user-1000.slice/session-3.scope"),
            Some("session-3.scope")
        );
        assert_eq!(unit("/sluice-agents/a"), None);
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            container(&format!("/kubepods/besteffort/pod1/{id}")),
            Some(id.as_str())
        );
        assert_eq!(
            container(&format!("/system.slice/cri-containerd-{id}.scope")),
            Some(id.as_str())
        );
        assert_eq!(container("/system.slice/ssh.service"), None);
    }
}
