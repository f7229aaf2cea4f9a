//! Lab topologies.
//!
//! Gateway lab (`index` n keeps labs apart):
//! ```text
//!  agent netns            gateway netns (ip_forward=1)            db netns
//!  10.77.{2n}.2  ─veth─  10.77.{2n}.1 | 10.77.{2n+1}.1  ─veth─  10.77.{2n+1}.2
//!  fd77:{2n}::2          fd77:{2n}::1 | fd77:{2n+1}::1          fd77:{2n+1}::2
//! ```
//! Jump-host lab: one namespace with `lo` and a veth pair carrying the
//! database's address, plus a cgroup v2 directory for the agents.
use std::{fs, path::PathBuf, time::Duration};

use crate::netns::{Netns, run};

/// Three namespaces wired as agent host ─ gateway ─ database host.
pub struct GatewayLab {
    pub agent: Netns,
    pub gw: Netns,
    pub db: Netns,
    pub agent_ip: String,
    pub gw_agent_ip: String,
    pub gw_db_ip: String,
    pub db_ip: String,
    pub agent_ip6: String,
    pub gw_db_ip6: String,
    pub db_ip6: String,
    /// The gateway's agent-facing interface (where tc ingress attaches).
    pub gw_agent_if: String,
    /// The database host's interface.
    pub db_if: String,
}

impl GatewayLab {
    pub fn up(tag: &str, index: u8) -> GatewayLab {
        let (a, d) = (index * 2, index * 2 + 1);
        let agent = Netns::create(&format!("sl-{tag}-agent"));
        let gw = Netns::create(&format!("sl-{tag}-gw"));
        let db = Netns::create(&format!("sl-{tag}-db"));
        let gw_agent_if = format!("sl{tag}ga");
        let gw_db_if = format!("sl{tag}gd");
        let agent_if = format!("sl{tag}a");
        let db_if = format!("sl{tag}d");
        for name in [&gw_agent_if, &gw_db_if, &agent_if, &db_if] {
            let _ = crate::netns::sh(&["ip", "link", "del", name]);
        }
        run(&[
            "ip",
            "link",
            "add",
            &agent_if,
            "netns",
            &agent.name,
            "type",
            "veth",
            "peer",
            "name",
            &gw_agent_if,
            "netns",
            &gw.name,
        ]);
        run(&[
            "ip", "link", "add", &db_if, "netns", &db.name, "type", "veth", "peer", "name",
            &gw_db_if, "netns", &gw.name,
        ]);
        let lab = GatewayLab {
            agent_ip: format!("10.77.{a}.2"),
            gw_agent_ip: format!("10.77.{a}.1"),
            gw_db_ip: format!("10.77.{d}.1"),
            db_ip: format!("10.77.{d}.2"),
            agent_ip6: format!("fd77:{a}::2"),
            gw_db_ip6: format!("fd77:{d}::1"),
            db_ip6: format!("fd77:{d}::2"),
            gw_agent_if,
            db_if: db_if.clone(),
            agent,
            gw,
            db,
        };
        // Agent and database hosts: one address per family on their veth,
        // default routes via the gateway, nothing else.
        wire_host(
            &lab.agent,
            &agent_if,
            &lab.agent_ip,
            &lab.agent_ip6,
            &lab.gw_agent_ip,
            &format!("fd77:{a}::1"),
        );
        wire_host(
            &lab.db,
            &db_if,
            &lab.db_ip,
            &lab.db_ip6,
            &lab.gw_db_ip,
            &lab.gw_db_ip6,
        );
        let ip6 = |p: u8, h: u8| format!("fd77:{p}::{h}/64");
        // Gateway: forwards between the two.
        lab.gw.run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lab.gw_agent_ip),
            "dev",
            &lab.gw_agent_if,
        ]);
        lab.gw.run(&[
            "ip",
            "-6",
            "addr",
            "add",
            &ip6(a, 1),
            "dev",
            &lab.gw_agent_if,
            "nodad",
        ]);
        lab.gw.run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lab.gw_db_ip),
            "dev",
            &gw_db_if,
        ]);
        lab.gw.run(&[
            "ip",
            "-6",
            "addr",
            "add",
            &ip6(d, 1),
            "dev",
            &gw_db_if,
            "nodad",
        ]);
        lab.gw.run(&["ip", "link", "set", &lab.gw_agent_if, "up"]);
        lab.gw.run(&["ip", "link", "set", &gw_db_if, "up"]);
        lab.gw.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        lab.gw
            .run(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        // Bounded wait for IPv6 neighbours to settle (nodad makes it quick).
        std::thread::sleep(Duration::from_millis(200));
        lab
    }
}

/// A further agent host on its own link to the gateway (see
/// [`GatewayLab::add_agent`]).
pub struct AgentHost {
    pub ns: Netns,
    pub ip: String,
    pub ip6: String,
    /// The gateway's interface facing this host.
    pub gw_if: String,
}

impl GatewayLab {
    /// Give the database host one more IPv4 address on its link,
    /// `10.77.{d}.{last}`, and return it: benchmarks dial such an address
    /// for routes sluice does not protect (or protects as another target).
    pub fn add_db_address(&self, last: u8) -> String {
        let net = self.db_ip.rsplit_once('.').map_or("", |(net, _)| net);
        let ip = format!("{net}.{last}");
        self.db
            .run(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &self.db_if]);
        ip
    }

    /// Wire a second agent host to the gateway on a link of its own:
    /// `10.79.{2n}.2` (gateway `.1`), `fd79:{2n}::2`, where `n` is the lab's
    /// index. sluice protects it once its config lists [`AgentHost::gw_if`]
    /// among `gateway.interfaces`.
    pub fn add_agent(&self, tag: &str, index: u8) -> AgentHost {
        let a = index * 2;
        let ns = Netns::create(&format!("sl-{tag}-agent2"));
        let host_if = format!("sl{tag}b");
        let gw_if = format!("sl{tag}gb");
        for name in [&host_if, &gw_if] {
            let _ = crate::netns::sh(&["ip", "link", "del", name]);
        }
        run(&[
            "ip",
            "link",
            "add",
            &host_if,
            "netns",
            &ns.name,
            "type",
            "veth",
            "peer",
            "name",
            &gw_if,
            "netns",
            &self.gw.name,
        ]);
        let host = AgentHost {
            ip: format!("10.79.{a}.2"),
            ip6: format!("fd79:{a}::2"),
            gw_if,
            ns,
        };
        wire_host(
            &host.ns,
            &host_if,
            &host.ip,
            &host.ip6,
            &format!("10.79.{a}.1"),
            &format!("fd79:{a}::1"),
        );
        self.gw.run(&[
            "ip",
            "addr",
            "add",
            &format!("10.79.{a}.1/24"),
            "dev",
            &host.gw_if,
        ]);
        self.gw.run(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("fd79:{a}::1/64"),
            "dev",
            &host.gw_if,
            "nodad",
        ]);
        self.gw.run(&["ip", "link", "set", &host.gw_if, "up"]);
        std::thread::sleep(Duration::from_millis(200));
        host
    }
}

fn wire_host(ns: &Netns, iface: &str, ip: &str, ip6: &str, via: &str, via6: &str) {
    ns.run(&["ip", "addr", "add", &format!("{ip}/24"), "dev", iface]);
    ns.run(&[
        "ip",
        "-6",
        "addr",
        "add",
        &format!("{ip6}/64"),
        "dev",
        iface,
        "nodad",
    ]);
    ns.run(&["ip", "link", "set", iface, "up"]);
    ns.run(&["ip", "route", "add", "default", "via", via]);
    ns.run(&["ip", "-6", "route", "add", "default", "via", via6]);
}

/// One namespace for the jump host, with the database on a dummy interface,
/// and a cgroup whose processes sluice intercepts.
pub struct JumpLab {
    pub ns: Netns,
    pub db_ip: String,
    pub db_ip6: String,
    pub cgroup: PathBuf,
}

impl JumpLab {
    pub fn up(tag: &str) -> JumpLab {
        let ns = Netns::create(&format!("sl-{tag}-jh"));
        // A veth pair with both ends inside (the kernel here has no dummy
        // driver): it only holds the database's address.
        ns.run(&[
            "ip", "link", "add", "db0", "type", "veth", "peer", "name", "db0p",
        ]);
        ns.run(&["ip", "link", "set", "db0p", "up"]);
        ns.run(&["ip", "addr", "add", "10.78.0.2/24", "dev", "db0"]);
        ns.run(&[
            "ip",
            "-6",
            "addr",
            "add",
            "fd78::2/64",
            "dev",
            "db0",
            "nodad",
        ]);
        ns.run(&["ip", "link", "set", "db0", "up"]);
        let root = cgroup2_root();
        let cgroup = root.join(format!("sluice-lab-{tag}"));
        let _ = fs::remove_dir(&cgroup);
        fs::create_dir_all(&cgroup).expect("create cgroup");
        JumpLab {
            ns,
            db_ip: "10.78.0.2".into(),
            db_ip6: "fd78::2".into(),
            cgroup,
        }
    }

    /// A shell prefix that moves the process into the agents' cgroup and
    /// then execs `argv` inside the namespace.
    pub fn in_cgroup(&self, argv: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("sh");
        let procs = self.cgroup.join("cgroup.procs");
        c.arg("-c")
            .arg(format!(
                "echo $$ > {} && exec nsenter --net={} -- \"$@\"",
                procs.display(),
                self.ns.path()
            ))
            .arg("sh")
            .args(argv);
        c
    }
}

impl Drop for JumpLab {
    fn drop(&mut self) {
        // Move any survivor out, then remove the (now empty) cgroup.
        if let Ok(pids) = fs::read_to_string(self.cgroup.join("cgroup.procs")) {
            for pid in pids.split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
        }
        let _ = crate::wait_for(Duration::from_secs(5), || fs::remove_dir(&self.cgroup).ok());
    }
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup/unified on hybrid hosts.
pub fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .expect("no cgroup2 mount")
}
