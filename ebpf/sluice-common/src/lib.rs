//! Map keys and values shared by sluice's eBPF programs and its userspace loader.
//!
//! Every type here is `#[repr(C)]` with explicit padding fields so the kernel and
//! userspace agree on the layout byte for byte; the `user` feature adds
//! `aya::Pod` so the loader can read and write the maps.
#![no_std]
#![deny(missing_docs)]

/// Names of the maps, as the loader looks them up in the object file.
pub mod maps {
    /// `Array<Settings>`, one entry: what userspace tells the programs.
    pub const SETTINGS: &str = "SETTINGS";
    /// `LpmTrie<[u8; 6], u32>`: IPv4 protected targets (port then address).
    pub const TARGETS_V4: &str = "TARGETS_V4";
    /// `LpmTrie<[u8; 18], u32>`: IPv6 protected targets (port then address).
    pub const TARGETS_V6: &str = "TARGETS_V6";
    /// `LpmTrie<[u8; 4], u32>`: IPv4 protected networks, any port (fragments).
    pub const TARGET_NETS_V4: &str = "TARGET_NETS_V4";
    /// `LpmTrie<[u8; 16], u32>`: IPv6 protected networks, any port (fragments).
    pub const TARGET_NETS_V6: &str = "TARGET_NETS_V6";
    /// `SockMap`: the proxy's transparent listeners (see [`super::LISTENER_V4`]).
    pub const LISTENERS: &str = "LISTENERS";
    /// `LruHashMap<u64, ConnectFacts>`: by client socket cookie (jump host).
    pub const BY_COOKIE: &str = "BY_COOKIE";
    /// `LruHashMap<SockKey, ConnectFacts>`: by client address (jump host).
    pub const CONNECT_FACTS: &str = "CONNECT_FACTS";
    /// `LruHashMap<SockKey, GatewayFacts>`: by client address (gateway).
    pub const GATEWAY_FACTS: &str = "GATEWAY_FACTS";
    /// `PerCpuArray<u64>`: counters indexed by [`super::Counter`].
    pub const COUNTERS: &str = "COUNTERS";
}

/// Names of the programs in the object file.
pub mod programs {
    /// tc ingress classifier (gateway mode).
    pub const TC_INGRESS: &str = "sluice_tc_ingress";
    /// SK_LOOKUP on the gateway's network namespace (gateway mode).
    pub const SK_LOOKUP: &str = "sluice_sk_lookup";
    /// cgroup/connect4 (jump-host mode).
    pub const CONNECT4: &str = "sluice_connect4";
    /// cgroup/connect6 (jump-host mode).
    pub const CONNECT6: &str = "sluice_connect6";
    /// cgroup/getpeername4 (jump-host mode).
    pub const GETPEERNAME4: &str = "sluice_getpeername4";
    /// cgroup/getpeername6 (jump-host mode).
    pub const GETPEERNAME6: &str = "sluice_getpeername6";
    /// sockops (jump-host mode): re-keys facts by the client's address.
    pub const SOCKOPS: &str = "sluice_sockops";
}

/// Index of the IPv4 listener in the `LISTENERS` sockmap.
pub const LISTENER_V4: u32 = 0;
/// Index of the IPv6 listener in the `LISTENERS` sockmap.
pub const LISTENER_V6: u32 = 1;

/// `Settings::flags`: forward protected flows when no proxy is registered.
pub const FLAG_FAIL_OPEN: u32 = 1;
/// `Settings::flags`: the jump-host proxy is listening at `proxy_*`.
pub const FLAG_PROXY_READY: u32 = 2;

/// Address families as the kernel numbers them.
pub const AF_INET: u16 = 2;
/// Address families as the kernel numbers them.
pub const AF_INET6: u16 = 10;

/// What userspace tells the programs. One entry in the `SETTINGS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Mark set on every packet of an intercepted gateway flow; policy routing
    /// delivers marked packets locally.
    pub intercept_mark: u32,
    /// Mark the proxy sets on its own upstream sockets: never redirected.
    pub upstream_mark: u32,
    /// Jump-host proxy port, host byte order.
    pub proxy_port: u16,
    /// Explicit padding.
    pub _pad0: u16,
    /// Jump-host proxy IPv4 address, network byte order as it sits in memory.
    pub proxy_v4: [u8; 4],
    /// Explicit padding.
    pub _pad1: u32,
    /// Only sockets in this network namespace are rewritten (0 = any).
    pub netns_cookie: u64,
    /// Jump-host proxy IPv6 address.
    pub proxy_v6: [u8; 16],
}

/// A socket address: the key under which the proxy finds a flow's facts.
/// IPv4 addresses sit in the first four bytes of `addr`, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockKey {
    /// Address bytes, network order.
    pub addr: [u8; 16],
    /// Port, host byte order.
    pub port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
}

/// What the jump-host programs learn at `connect()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectFacts {
    /// Cgroup v2 id of the connecting task.
    pub cgroup_id: u64,
    /// The destination the process dialled.
    pub orig: SockKey,
    /// Process id (thread-group id).
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Task command name, NUL padded.
    pub comm: [u8; 16],
    /// Explicit padding.
    pub _pad: u32,
}

/// What the gateway classifier learns from a flow's SYN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayFacts {
    /// Interface the SYN arrived on.
    pub ifindex: u32,
    /// Source MAC of the SYN.
    pub mac: [u8; 6],
    /// Explicit padding.
    pub _pad: u16,
}

/// Per-CPU counters, indexes into the `COUNTERS` map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Gateway: packets of protected flows steered to the proxy.
    GatewaySteered = 0,
    /// Gateway: new flows (SYN) assigned to the proxy's listener.
    GatewayNewFlows,
    /// Gateway: protected packets dropped because no proxy is registered.
    GatewayDroppedNoProxy,
    /// Gateway: fragments to a protected network, dropped.
    GatewayDroppedFragment,
    /// Gateway: protected packets forwarded because `fail_open` is set.
    GatewayFailOpen,
    /// Gateway: helper failures (assign, lookup), packet dropped.
    GatewayErrors,
    /// Jump host: connects rewritten to the proxy.
    JumpRedirected,
    /// Jump host: connects refused because no proxy is registered.
    JumpDeniedNoProxy,
    /// Jump host: connects let through because `fail_open` is set.
    JumpFailOpen,
    /// Jump host: connects of the proxy itself, left alone.
    JumpSkippedProxy,
    /// Jump host: sockops copies of facts to the by-address map.
    JumpRekeyed,
    /// Jump host: map update failures.
    JumpErrors,
}

impl Counter {
    /// Number of counters (size of the `COUNTERS` map).
    pub const COUNT: u32 = 12;
    /// All counters in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::GatewaySteered,
        Counter::GatewayNewFlows,
        Counter::GatewayDroppedNoProxy,
        Counter::GatewayDroppedFragment,
        Counter::GatewayFailOpen,
        Counter::GatewayErrors,
        Counter::JumpRedirected,
        Counter::JumpDeniedNoProxy,
        Counter::JumpFailOpen,
        Counter::JumpSkippedProxy,
        Counter::JumpRekeyed,
        Counter::JumpErrors,
    ];

    /// Stable name for logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::GatewaySteered => "gateway_steered_packets",
            Counter::GatewayNewFlows => "gateway_new_flows",
            Counter::GatewayDroppedNoProxy => "gateway_dropped_no_proxy",
            Counter::GatewayDroppedFragment => "gateway_dropped_fragment",
            Counter::GatewayFailOpen => "gateway_fail_open",
            Counter::GatewayErrors => "gateway_errors",
            Counter::JumpRedirected => "jump_redirected",
            Counter::JumpDeniedNoProxy => "jump_denied_no_proxy",
            Counter::JumpFailOpen => "jump_fail_open",
            Counter::JumpSkippedProxy => "jump_skipped_proxy",
            Counter::JumpRekeyed => "jump_rekeyed",
            Counter::JumpErrors => "jump_errors",
        }
    }
}

/// Key data of the port+address LPM tries: the port (big endian) comes first so
/// a prefix length of `16 + cidr_bits` matches "this port on this network".
pub const fn target_key_v4(port: u16, addr: [u8; 4]) -> [u8; 6] {
    let p = port.to_be_bytes();
    [p[0], p[1], addr[0], addr[1], addr[2], addr[3]]
}

/// IPv6 form of [`target_key_v4`].
pub const fn target_key_v6(port: u16, addr: [u8; 16]) -> [u8; 18] {
    let p = port.to_be_bytes();
    let mut out = [0u8; 18];
    out[0] = p[0];
    out[1] = p[1];
    let mut i = 0;
    while i < 16 {
        out[2 + i] = addr[i];
        i += 1;
    }
    out
}

#[cfg(feature = "user")]
mod user {
    #![allow(unsafe_code)]
    // SAFETY: all of these are repr(C), Copy, contain only integers and byte
    // arrays, and have explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnectFacts {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GatewayFacts {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<Settings>(), 4 + 4 + 4 + 2 + 2 + 4 + 4 + 8 + 16);
        assert_eq!(size_of::<SockKey>(), 20);
        assert_eq!(size_of::<ConnectFacts>(), 8 + 20 + 16 + 16 + 4);
        assert_eq!(size_of::<GatewayFacts>(), 12);
    }

    #[test]
    fn target_keys_put_port_first() {
        assert_eq!(
            target_key_v4(5432, [10, 0, 0, 1]),
            [0x15, 0x38, 10, 0, 0, 1]
        );
        let k = target_key_v6(3306, [0xfd; 16]);
        assert_eq!(&k[..2], &3306u16.to_be_bytes());
        assert_eq!(&k[2..], &[0xfd; 16]);
    }

    #[test]
    fn counter_table_is_in_index_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
