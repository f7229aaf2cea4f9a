//! What the kernel programs learnt about a flow, handed to the proxy when it
//! accepts the connection. Entries are taken (read and deleted) so the maps
//! hold only flows the proxy has not picked up yet.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap, MapData};
use sluice_common::{AF_INET, AF_INET6, ConnectFacts, GatewayFacts, SockKey};

/// A local process's connect(), as the jump-host programs saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRecord {
    /// Where the process was going.
    pub original_dst: SocketAddr,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Command name (at most 15 bytes, from the kernel).
    pub comm: String,
    /// Cgroup v2 id.
    pub cgroup_id: u64,
}

/// A forwarded flow's first packet, as the gateway classifier saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRecord {
    /// Interface the SYN arrived on.
    pub ifindex: u32,
    /// Its name, resolved in the proxy's namespace when the flow is taken.
    pub interface: Option<String>,
    /// Source MAC of the SYN (the agent host or the last router).
    pub mac: [u8; 6],
}

/// Lookup handle over the facts maps; cheap to clone, shared by all sessions.
#[derive(Clone)]
pub struct FlowFacts {
    connect: Arc<Mutex<HashMap<MapData, SockKey, ConnectFacts>>>,
    gateway: Arc<Mutex<HashMap<MapData, SockKey, GatewayFacts>>>,
}

impl FlowFacts {
    pub(crate) fn new(
        connect: HashMap<MapData, SockKey, ConnectFacts>,
        gateway: HashMap<MapData, SockKey, GatewayFacts>,
    ) -> Self {
        FlowFacts {
            connect: Arc::new(Mutex::new(connect)),
            gateway: Arc::new(Mutex::new(gateway)),
        }
    }

    /// Take the jump-host facts of the client at `peer`, if any.
    pub fn take_connect(&self, peer: SocketAddr) -> Option<ConnectRecord> {
        let key = sock_key(peer);
        let mut map = self.connect.lock().unwrap_or_else(|e| e.into_inner());
        let facts = map.get(&key, 0).ok()?;
        let _ = map.remove(&key);
        Some(ConnectRecord {
            original_dst: sock_addr(&facts.orig)?,
            pid: facts.tgid,
            tid: facts.tid,
            uid: facts.uid,
            gid: facts.gid,
            comm: c_string(&facts.comm),
            cgroup_id: facts.cgroup_id,
        })
    }

    /// Take the gateway facts of the client at `peer`, if any.
    pub fn take_gateway(&self, peer: SocketAddr) -> Option<GatewayRecord> {
        let key = sock_key(peer);
        let mut map = self.gateway.lock().unwrap_or_else(|e| e.into_inner());
        let facts = map.get(&key, 0).ok()?;
        let _ = map.remove(&key);
        Some(GatewayRecord {
            ifindex: facts.ifindex,
            interface: crate::sockopt::if_name(facts.ifindex),
            mac: facts.mac,
        })
    }
}

/// The kernel's key for a socket address: IPv4 (and v4-mapped IPv6) in the
/// first four bytes, host-order port.
pub(crate) fn sock_key(addr: SocketAddr) -> SockKey {
    let mut key = SockKey {
        port: addr.port(),
        ..SockKey::default()
    };
    match addr.ip() {
        IpAddr::V4(v4) => {
            key.addr[..4].copy_from_slice(&v4.octets());
            key.family = AF_INET;
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                key.addr[..4].copy_from_slice(&v4.octets());
                key.family = AF_INET;
            }
            None => {
                key.addr = v6.octets();
                key.family = AF_INET6;
            }
        },
    }
    key
}

fn sock_addr(key: &SockKey) -> Option<SocketAddr> {
    let ip = match key.family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(
            key.addr[0],
            key.addr[1],
            key.addr[2],
            key.addr[3],
        )),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(key.addr)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, key.port))
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_fold_v4_mapped() {
        let v4: SocketAddr = "10.1.2.3:5432".parse().unwrap();
        assert_eq!(sock_addr(&sock_key(v4)), Some(v4));
        let v6: SocketAddr = "[fd00::7]:40000".parse().unwrap();
        assert_eq!(sock_addr(&sock_key(v6)), Some(v6));
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:5432".parse().unwrap();
        assert_eq!(sock_key(mapped), sock_key(v4));
    }

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(c_string(b"psql\0\0\0\0\0\0\0\0\0\0\0\0"), "psql");
        assert_eq!(c_string(b"0123456789abcdef"), "0123456789abcdef");
    }
}
