//! Load, configure, attach, pin — and on a clean stop remove — sluice's
//! kernel programs.
//!
//! Order matters for failing closed: the maps are filled and the proxy's
//! listeners registered *before* any program is attached, and links from a
//! previous (crashed) run are replaced in place or only dropped once their
//! successors are attached.
use std::{collections::BTreeSet, fs::File, net::SocketAddr, os::fd::AsRawFd, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, SockMap, lpm_trie::Key},
    programs::{
        CgroupAttachMode, CgroupSockAddr, SchedClassifier, SkLookup, SockOps, TcAttachType,
        links::{FdLink, PinnedLink},
    },
};
use ipnet::IpNet;
use sluice_common::{
    FLAG_FAIL_OPEN, FLAG_PROXY_READY, LISTENER_V4, LISTENER_V6, Settings, maps, programs,
    target_key_v4, target_key_v6,
};
use sluice_config::Config;
use tokio::io::unix::AsyncFd;

use crate::{
    Counters, FlowFacts, InterceptError,
    pins::{PinDir, cgroup_pin_name},
    routing::PolicyRouting,
};

/// The proxy's listening sockets the programs steer flows to.
#[derive(Default)]
pub struct Listeners<'a> {
    /// Gateway transparent listener, IPv4.
    pub gateway_v4: Option<&'a dyn AsRawFd>,
    /// Gateway transparent listener, IPv6.
    pub gateway_v6: Option<&'a dyn AsRawFd>,
    /// Jump-host listener address, IPv4 (connects are rewritten to it).
    pub jump_v4: Option<SocketAddr>,
    /// Jump-host listener address, IPv6.
    pub jump_v6: Option<SocketAddr>,
}

/// Attached interception. Dropping it without [`Interceptor::stop`] leaves
/// the pinned programs in place, failing closed, as a crash would.
pub struct Interceptor {
    /// Owns the programs and the maps not handed out below.
    _ebpf: Ebpf,
    pins: PinDir,
    links: Vec<PinnedLink>,
    routing: Option<PolicyRouting>,
    facts: FlowFacts,
    counters: Counters,
    log_task: Option<tokio::task::JoinHandle<()>>,
}

impl Interceptor {
    /// Load the programs, fill the maps, register `listeners`, attach every
    /// configured mode and pin the links. Replaces a previous run's pins.
    /// Must run inside a tokio runtime (kernel log records are forwarded by a task).
    pub fn start(
        config: &Config,
        listeners: &Listeners<'_>,
    ) -> Result<Interceptor, InterceptError> {
        let pins = PinDir::prepare(&config.proxy.bpffs_dir)?;
        let stale: BTreeSet<String> = pins.names().into_iter().collect();
        if !stale.is_empty() {
            tracing::warn!(
                links = stale.len(),
                dir = %config.proxy.bpffs_dir.display(),
                "found interception state from a previous run that did not stop cleanly; replacing it"
            );
        }

        let mut ebpf = EbpfLoader::new().load(crate::object())?;
        let log_task = start_kernel_log(&mut ebpf);

        write_settings(&mut ebpf, config, listeners)?;
        write_targets(&mut ebpf, config)?;
        register_listeners(&mut ebpf, listeners)?;

        let mut attached = Attacher {
            ebpf: &mut ebpf,
            pins: &pins,
            links: Vec::new(),
        };
        let mut routing = None;
        if let Some(gw) = &config.gateway {
            // Routing first: a steered SYN without it is silently dropped.
            let r = PolicyRouting {
                mark: gw.intercept_mark,
                table: gw.route_table,
            };
            r.install()?;
            routing = Some(r);
            attached.sk_lookup()?;
            for iface in &gw.interfaces {
                attached.tc_ingress(iface)?;
            }
        }
        if let Some(jh) = &config.jump_host {
            for cgroup in &jh.cgroups {
                attached.cgroup(cgroup)?;
            }
        }
        let links = attached.links;

        // Whatever a previous run pinned that this configuration no longer
        // wants (an interface or cgroup removed from config) goes now.
        let mut live = BTreeSet::new();
        for name in pins.names() {
            live.insert(name);
        }
        for name in stale {
            if !live.contains(&name) {
                drop(pins.take(&name));
            }
        }

        let facts = FlowFacts::new(
            take_hash(&mut ebpf, maps::CONNECT_FACTS)?,
            take_hash(&mut ebpf, maps::GATEWAY_FACTS)?,
        );
        let counters_map = ebpf
            .take_map(maps::COUNTERS)
            .ok_or(InterceptError::MissingMap(maps::COUNTERS))?;
        // Pinned so `sluice status` can read the counters from outside.
        let counters_pin = pins.counters();
        let _ = std::fs::remove_file(&counters_pin);
        counters_map
            .pin(&counters_pin)
            .map_err(|e| InterceptError::Pin {
                path: counters_pin.clone(),
                message: e.to_string(),
            })?;
        let counters = Counters::new(
            PerCpuArray::try_from(counters_map).map_err(InterceptError::map(maps::COUNTERS))?,
        );
        if config.proxy.fail_open {
            tracing::warn!(
                "FAIL-OPEN is configured: while sluice is down, protected flows reach their databases \
                 un-proxied and unrecorded. Every such flow is logged by the kernel programs."
            );
        }
        Ok(Interceptor {
            _ebpf: ebpf,
            pins,
            links,
            routing,
            facts,
            counters,
            log_task,
        })
    }

    /// Lookup handle for flow facts.
    pub fn facts(&self) -> FlowFacts {
        self.facts.clone()
    }

    /// Read handle for the programs' counters.
    pub fn counters(&self) -> Counters {
        self.counters.clone()
    }

    /// Names of the pinned links (for logs and tests).
    pub fn pinned(&self) -> Vec<String> {
        self.pins.names()
    }

    /// Detach every program, unpin everything, remove policy routing.
    /// Afterwards nothing of sluice is left in the kernel.
    pub fn stop(mut self) {
        for link in self.links.drain(..) {
            match link.unpin() {
                Ok(fd) => drop(fd),
                Err(e) => tracing::warn!(error = %e, "unpinning a link failed"),
            }
        }
        self.pins.remove_all();
        if let Some(r) = self.routing.take() {
            r.remove();
        }
        if let Some(task) = self.log_task.take() {
            task.abort();
        }
    }

    /// Remove whatever a previous run left behind, without starting anything
    /// (`sluice cleanup`). Returns what was removed.
    pub fn cleanup(config: &Config) -> Vec<String> {
        let mut removed = Vec::new();
        if let Some(pins) = PinDir::existing(&config.proxy.bpffs_dir) {
            removed.extend(pins.names().into_iter().map(|n| format!("pinned link {n}")));
            pins.remove_all();
        }
        if let Some(gw) = &config.gateway {
            let r = PolicyRouting {
                mark: gw.intercept_mark,
                table: gw.route_table,
            };
            if r.present() {
                removed.push(format!(
                    "policy routing fwmark {:#x} table {}",
                    gw.intercept_mark, gw.route_table
                ));
            }
            r.remove();
        }
        removed
    }

    /// Counters and pinned links of whatever sluice instance (running or
    /// crashed) owns `config`'s bpffs directory; None if there is none.
    pub fn status(config: &Config) -> Option<Status> {
        let pins = PinDir::existing(&config.proxy.bpffs_dir)?;
        let counters = aya::maps::MapData::from_pin(pins.counters())
            .ok()
            .and_then(|data| PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data)).ok())
            .map(|map| Counters::new(map).snapshot())
            .unwrap_or_default();
        Some(Status {
            links: pins.names(),
            counters,
        })
    }
}

/// What `sluice status` shows.
pub struct Status {
    /// Names of the pinned links.
    pub links: Vec<String>,
    /// Counters by name, summed over CPUs.
    pub counters: Vec<(&'static str, u64)>,
}

struct Attacher<'e> {
    ebpf: &'e mut Ebpf,
    pins: &'e PinDir,
    links: Vec<PinnedLink>,
}

impl Attacher<'_> {
    /// The SK_LOOKUP program on this network namespace: listener lookups
    /// for protected targets (TIME_WAIT recycling, SYN cookies) find the proxy.
    fn sk_lookup(&mut self) -> Result<(), InterceptError> {
        let name = "sk-lookup-netns";
        let what = "attaching sk_lookup to this network namespace";
        let netns = File::open("/proc/self/ns/net").map_err(|source| InterceptError::Socket {
            what: "opening /proc/self/ns/net",
            source,
        })?;
        let prog: &mut SkLookup = self
            .ebpf
            .program_mut(programs::SK_LOOKUP)
            .ok_or(InterceptError::MissingProgram(programs::SK_LOOKUP))?
            .try_into()
            .map_err(InterceptError::program(what))?;
        if prog.fd().is_err() {
            prog.load().map_err(InterceptError::program(what))?;
        }
        let old = self.pins.take(name);
        let id = prog.attach(&netns).map_err(InterceptError::program(what))?;
        let fd = FdLink::from(prog.take_link(id).map_err(InterceptError::program(what))?);
        self.links.push(self.pins.pin(name, fd)?);
        drop(old);
        Ok(())
    }

    fn tc_ingress(&mut self, iface: &str) -> Result<(), InterceptError> {
        if crate::sockopt::if_index(iface).is_none() {
            return Err(InterceptError::NoInterface(iface.to_owned()));
        }
        let name = format!("tc-ingress-{iface}");
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(programs::TC_INGRESS)
            .ok_or(InterceptError::MissingProgram(programs::TC_INGRESS))?
            .try_into()
            .map_err(InterceptError::program(programs::TC_INGRESS))?;
        if prog.fd().is_err() {
            prog.load().map_err(InterceptError::program(format!(
                "loading {}",
                programs::TC_INGRESS
            )))?;
        }
        let what = format!("attaching tc ingress on {iface}");
        // A previous run's link stays attached (first in the chain, failing
        // closed with its empty listener slot) until the new one is pinned:
        // there is no moment without a classifier.
        let old = self.pins.take(&name);
        let id = prog
            .attach(iface, TcAttachType::Ingress)
            .map_err(InterceptError::program(&what))?;
        let link = prog.take_link(id).map_err(InterceptError::program(&what))?;
        let fd = FdLink::try_from(link).map_err(|e| InterceptError::Pin {
            path: self.pins.path(&name),
            message: format!("tc link cannot be pinned ({e}); this kernel lacks TCX (needs 6.6+)"),
        })?;
        self.links.push(self.pins.pin(&name, fd)?);
        drop(old);
        tracing::info!(
            interface = iface,
            "gateway interception attached (tc ingress)"
        );
        Ok(())
    }

    fn cgroup(&mut self, cgroup: &Path) -> Result<(), InterceptError> {
        let dir = File::open(cgroup).map_err(|source| InterceptError::Cgroup {
            path: cgroup.to_owned(),
            source,
        })?;
        for prog_name in [
            programs::CONNECT4,
            programs::CONNECT6,
            programs::GETPEERNAME4,
            programs::GETPEERNAME6,
            programs::SOCKOPS,
        ] {
            let name = cgroup_pin_name(prog_name, cgroup);
            // bpf_link_create takes no attach flags (EINVAL with ALLOW_MULTI);
            // links already coexist with other programs on the cgroup.
            // Attach the successor first, then drop the stale link: a brief
            // overlap is harmless, a gap would let connects through.
            let old = self.pins.take(&name);
            let what = format!("attaching {prog_name} to {}", cgroup.display());
            let program = self
                .ebpf
                .program_mut(prog_name)
                .ok_or(InterceptError::MissingProgram(prog_name))?;
            let fd = if prog_name == programs::SOCKOPS {
                let p: &mut SockOps = program.try_into().map_err(InterceptError::program(&what))?;
                if p.fd().is_err() {
                    p.load().map_err(InterceptError::program(&what))?;
                }
                let id = p
                    .attach(&dir, CgroupAttachMode::Single)
                    .map_err(InterceptError::program(&what))?;
                FdLink::try_from(p.take_link(id).map_err(InterceptError::program(&what))?)
            } else {
                let p: &mut CgroupSockAddr =
                    program.try_into().map_err(InterceptError::program(&what))?;
                if p.fd().is_err() {
                    p.load().map_err(InterceptError::program(&what))?;
                }
                let id = p
                    .attach(&dir, CgroupAttachMode::Single)
                    .map_err(InterceptError::program(&what))?;
                FdLink::try_from(p.take_link(id).map_err(InterceptError::program(&what))?)
            }
            .map_err(|e| InterceptError::Pin {
                path: self.pins.path(&name),
                message: format!(
                    "cgroup link cannot be pinned ({e}); this kernel lacks bpf links (needs 5.7+)"
                ),
            })?;
            self.links.push(self.pins.pin(&name, fd)?);
            drop(old);
        }
        tracing::info!(cgroup = %cgroup.display(), "jump-host interception attached (connect4/6, getpeername4/6, sockops)");
        Ok(())
    }
}

fn write_settings(
    ebpf: &mut Ebpf,
    config: &Config,
    listeners: &Listeners<'_>,
) -> Result<(), InterceptError> {
    let mut s = Settings {
        upstream_mark: config.proxy.upstream_mark,
        intercept_mark: config.gateway.as_ref().map_or(0, |g| g.intercept_mark),
        ..Settings::default()
    };
    if config.proxy.fail_open {
        s.flags |= FLAG_FAIL_OPEN;
    }
    if let Some(SocketAddr::V4(v4)) = listeners.jump_v4 {
        s.flags |= FLAG_PROXY_READY;
        s.proxy_v4 = v4.ip().octets();
        s.proxy_port = v4.port();
    }
    if let Some(SocketAddr::V6(v6)) = listeners.jump_v6 {
        s.proxy_v6 = v6.ip().octets();
    }
    // Only this namespace's sockets are rewritten: processes of an attached
    // cgroup that live in other namespaces keep their own networking.
    let probe =
        std::net::UdpSocket::bind("0.0.0.0:0").map_err(|source| InterceptError::Socket {
            what: "probe socket",
            source,
        })?;
    s.netns_cookie = crate::netns_cookie(&probe)?;

    let map = ebpf
        .map_mut(maps::SETTINGS)
        .ok_or(InterceptError::MissingMap(maps::SETTINGS))?;
    let mut arr: Array<&mut MapData, Settings> =
        Array::try_from(map).map_err(InterceptError::map(maps::SETTINGS))?;
    arr.set(0, s, 0)
        .map_err(InterceptError::map(maps::SETTINGS))
}

fn write_targets(ebpf: &mut Ebpf, config: &Config) -> Result<(), InterceptError> {
    for (i, t) in config.targets.iter().enumerate() {
        let id = i as u32;
        match t.address {
            IpNet::V4(net) => {
                let bits = u32::from(net.prefix_len());
                let addr = net.network().octets();
                trie::<6>(
                    ebpf,
                    maps::TARGETS_V4,
                    Key::new(16 + bits, target_key_v4(t.port, addr)),
                    id,
                )?;
                trie::<4>(ebpf, maps::TARGET_NETS_V4, Key::new(bits, addr), id)?;
            }
            IpNet::V6(net) => {
                let bits = u32::from(net.prefix_len());
                let addr = net.network().octets();
                trie::<18>(
                    ebpf,
                    maps::TARGETS_V6,
                    Key::new(16 + bits, target_key_v6(t.port, addr)),
                    id,
                )?;
                trie::<16>(ebpf, maps::TARGET_NETS_V6, Key::new(bits, addr), id)?;
            }
        }
        tracing::info!(target = %t, "protecting target");
    }
    Ok(())
}

fn trie<const N: usize>(
    ebpf: &mut Ebpf,
    name: &'static str,
    key: Key<[u8; N]>,
    id: u32,
) -> Result<(), InterceptError> {
    let map = ebpf.map_mut(name).ok_or(InterceptError::MissingMap(name))?;
    let mut trie: LpmTrie<&mut MapData, [u8; N], u32> =
        LpmTrie::try_from(map).map_err(InterceptError::map(name))?;
    trie.insert(&key, id, 0).map_err(InterceptError::map(name))
}

fn register_listeners(ebpf: &mut Ebpf, listeners: &Listeners<'_>) -> Result<(), InterceptError> {
    let map = ebpf
        .map_mut(maps::LISTENERS)
        .ok_or(InterceptError::MissingMap(maps::LISTENERS))?;
    let mut sockmap: SockMap<&mut MapData> =
        SockMap::try_from(map).map_err(InterceptError::map(maps::LISTENERS))?;
    struct Raw(i32);
    impl AsRawFd for Raw {
        fn as_raw_fd(&self) -> i32 {
            self.0
        }
    }
    if let Some(l) = listeners.gateway_v4 {
        sockmap
            .set(LISTENER_V4, &Raw(l.as_raw_fd()), 0)
            .map_err(InterceptError::map(maps::LISTENERS))?;
    }
    if let Some(l) = listeners.gateway_v6 {
        sockmap
            .set(LISTENER_V6, &Raw(l.as_raw_fd()), 0)
            .map_err(InterceptError::map(maps::LISTENERS))?;
    }
    Ok(())
}

fn take_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, InterceptError> {
    let map = ebpf
        .take_map(name)
        .ok_or(InterceptError::MissingMap(name))?;
    HashMap::try_from(map).map_err(InterceptError::map(name))
}

/// Forward `aya-log-ebpf` records (fail-open warnings) to the log/tracing
/// pipeline. Logging is best effort: without it interception still works.
fn start_kernel_log(ebpf: &mut Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "kernel log forwarding unavailable");
            return None;
        }
    };
    // SAFETY: the logger owns the ring buffer's fd and moves into the
    // AsyncFd, so the fd stays open for as long as it is registered.
    #[allow(unsafe_code)]
    let registered =
        unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!(error = %e, "kernel log forwarding unavailable");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}
