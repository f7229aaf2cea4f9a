//! `[[identities]]`: how a flow's facts become a workload identity.
//!
//! Rules are tried in order; the first whose every given condition holds
//! names the workload and its groups. Conditions left out match anything,
//! and a condition list matches when any of its entries does. A workload no
//! rule matches is `unknown`: only policy rules that name `unknown`
//! explicitly apply to it, so with the default policy it may do nothing.
//!
//! Remote facts (gateway mode): `sources` (CIDRs), `macs`, `interfaces`.
//! Local facts (jump-host mode): `uids`, `users`, `cgroups`, `units`,
//! `comms`, `exes`, `containers`. A rule with local conditions never
//! matches a remote flow and vice versa.
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;

/// The name of a workload no identity rule matched.
pub const UNKNOWN: &str = "unknown";

/// One `[[identities]]` rule.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityRule {
    /// The workload identity: what policy rules, records and approvals
    /// call it (`ci-runner`, `reporting-agent`).
    pub name: String,
    /// Groups the workload belongs to; policy rules match them as
    /// `group:<name>`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Client networks (CIDR or a bare address).
    #[serde(default, deserialize_with = "crate::secrets::nets")]
    #[schemars(with = "Vec<String>")]
    pub sources: Vec<IpNet>,
    /// Source MAC addresses of the first packet (gateway), any case.
    #[serde(default)]
    pub macs: Vec<String>,
    /// Ingress interfaces (gateway).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Real uids of the connecting process (jump host).
    #[serde(default)]
    pub uids: Vec<u32>,
    /// User names of the connecting process, looked up in /etc/passwd.
    #[serde(default)]
    pub users: Vec<String>,
    /// Cgroup v2 paths (globs with `*`): `/sluice-agents/*`.
    #[serde(default)]
    pub cgroups: Vec<String>,
    /// systemd units the process runs in (`ci-runner.service`; globs).
    #[serde(default)]
    pub units: Vec<String>,
    /// Kernel command names (`comm`, at most 15 bytes; globs).
    #[serde(default)]
    pub comms: Vec<String>,
    /// Executable paths (`/usr/bin/python3*`; globs).
    #[serde(default)]
    pub exes: Vec<String>,
    /// Container ids (docker, podman, containerd; prefixes with `*`).
    #[serde(default)]
    pub containers: Vec<String>,
}

impl IdentityRule {
    /// Has conditions on local-process facts.
    pub fn is_local(&self) -> bool {
        !(self.uids.is_empty()
            && self.users.is_empty()
            && self.cgroups.is_empty()
            && self.units.is_empty()
            && self.comms.is_empty()
            && self.exes.is_empty()
            && self.containers.is_empty())
    }

    /// Has conditions on gateway facts (MAC, interface).
    pub fn is_remote(&self) -> bool {
        !(self.macs.is_empty() && self.interfaces.is_empty())
    }

    /// Why the rule cannot be used, as (key suffix, reason).
    pub(crate) fn problem(&self) -> Option<(&'static str, String)> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
        if !name_ok {
            return Some((
                "name",
                "expected a non-empty name of letters, digits and - _ . : @".into(),
            ));
        }
        if self.name == UNKNOWN {
            return Some((
                "name",
                "`unknown` is what unmatched workloads are called; pick another name".into(),
            ));
        }
        if let Some(g) = self.groups.iter().find(|g| g.is_empty() || g.contains('*')) {
            return Some((
                "groups",
                format!("{g:?}: group names are plain, non-empty words"),
            ));
        }
        if self.is_local() && self.is_remote() {
            return Some((
                "name",
                "mixes process conditions (uids, users, cgroups, units, comms, exes, containers) \
                 with gateway ones (macs, interfaces): a flow has one kind or the other; write two rules"
                    .into(),
            ));
        }
        if let Some(m) = self.macs.iter().find(|m| !is_mac(m)) {
            return Some((
                "macs",
                format!("{m:?} is not a MAC address like 02:00:0a:00:01:02"),
            ));
        }
        if self.sources.is_empty() && !self.is_local() && !self.is_remote() {
            return Some((
                "name",
                "has no condition, so it would name every workload; add sources, macs, interfaces, \
                 uids, users, cgroups, units, comms, exes or containers"
                    .into(),
            ));
        }
        None
    }
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}
