//! Every map of the object. Names must match `sluice_common::maps`.
use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, SockMap},
};
use sluice_common::{ConnectFacts, Counter, GatewayFacts, Settings, SockKey};

/// Protected targets are few (config entries); 1024 leaves room.
const MAX_TARGETS: u32 = 1024;
/// Flows whose facts wait for the proxy's accept(); LRU so a flood only
/// evicts old entries, never fails the insert.
const MAX_FLOWS: u32 = 65536;

#[map(name = "SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map(name = "TARGETS_V4")]
pub static TARGETS_V4: LpmTrie<[u8; 6], u32> = LpmTrie::with_max_entries(MAX_TARGETS, 0);

#[map(name = "TARGETS_V6")]
pub static TARGETS_V6: LpmTrie<[u8; 18], u32> = LpmTrie::with_max_entries(MAX_TARGETS, 0);

#[map(name = "TARGET_NETS_V4")]
pub static TARGET_NETS_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(MAX_TARGETS, 0);

#[map(name = "TARGET_NETS_V6")]
pub static TARGET_NETS_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(MAX_TARGETS, 0);

#[map(name = "LISTENERS")]
pub static LISTENERS: SockMap = SockMap::with_max_entries(2, 0);

#[map(name = "BY_COOKIE")]
pub static BY_COOKIE: LruHashMap<u64, ConnectFacts> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map(name = "CONNECT_FACTS")]
pub static CONNECT_FACTS: LruHashMap<SockKey, ConnectFacts> =
    LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map(name = "GATEWAY_FACTS")]
pub static GATEWAY_FACTS: LruHashMap<SockKey, GatewayFacts> =
    LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// The settings entry; userspace always writes it before attaching anything,
/// so a missing entry means "not configured": callers fail closed.
#[inline(always)]
pub fn settings() -> Option<&'static Settings> {
    SETTINGS.get(0)
}
