//! Target lookups shared by the gateway and jump-host programs.
use aya_ebpf::maps::lpm_trie::Key;
use sluice_common::{target_key_v4, target_key_v6};

use crate::maps::{TARGET_NETS_V4, TARGET_NETS_V6, TARGETS_V4, TARGETS_V6};

/// Is `addr:port` a protected IPv4 target?
#[inline(always)]
pub fn protected_v4(addr: [u8; 4], port: u16) -> bool {
    TARGETS_V4
        .get(Key::new(16 + 32, target_key_v4(port, addr)))
        .is_some()
}

/// Is `addr:port` a protected IPv6 target?
#[inline(always)]
pub fn protected_v6(addr: [u8; 16], port: u16) -> bool {
    TARGETS_V6
        .get(Key::new(16 + 128, target_key_v6(port, addr)))
        .is_some()
}

/// Is `addr` inside a protected IPv4 network (any port)? Used for fragments,
/// which carry no port to match on.
#[inline(always)]
pub fn protected_net_v4(addr: [u8; 4]) -> bool {
    TARGET_NETS_V4.get(Key::new(32, addr)).is_some()
}

/// IPv6 form of [`protected_net_v4`].
#[inline(always)]
pub fn protected_net_v6(addr: [u8; 16]) -> bool {
    TARGET_NETS_V6.get(Key::new(128, addr)).is_some()
}

/// `::ffff:a.b.c.d` → `a.b.c.d`: dual-stack sockets dial IPv4 this way.
#[inline(always)]
pub fn v4_mapped(addr: &[u8; 16]) -> Option<[u8; 4]> {
    let prefix = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    let mut i = 0;
    while i < 12 {
        if addr[i] != prefix[i] {
            return None;
        }
        i += 1;
    }
    Some([addr[12], addr[13], addr[14], addr[15]])
}

/// IPv6 address from the kernel's `[u32; 4]` (already in network order in memory).
#[inline(always)]
pub fn v6_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

/// Inverse of [`v6_bytes`].
#[inline(always)]
pub fn v6_words(bytes: &[u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = u32::from_ne_bytes([
            bytes[i * 4],
            bytes[i * 4 + 1],
            bytes[i * 4 + 2],
            bytes[i * 4 + 3],
        ]);
        i += 1;
    }
    out
}
