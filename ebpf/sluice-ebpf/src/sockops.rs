//! Jump-host mode: when a redirected client connection is established, copy
//! its facts from the socket-cookie map to a map keyed by the client's own
//! address and port. The proxy sees that address as the peer of the socket it
//! accepted (its `SO_COOKIE` is the server side's cookie, so it cannot use the
//! cookie), and the entry is always in place before `accept()` returns.
use aya_ebpf::{
    EbpfContext, bindings::BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
    helpers::generated::bpf_get_socket_cookie, macros::sock_ops, programs::SockOpsContext,
};
use sluice_common::{AF_INET, AF_INET6, Counter, SockKey};

use crate::{
    addr::{v4_mapped, v6_bytes},
    counters::bump,
    maps::{BY_COOKIE, CONNECT_FACTS},
};

#[sock_ops]
pub fn sluice_sockops(ctx: SockOpsContext) -> u32 {
    if ctx.op() == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        rekey(&ctx);
    }
    0
}

fn rekey(ctx: &SockOpsContext) {
    // SAFETY: the helper only reads the context's socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied before any other map operation.
    let Some(facts) = (unsafe { BY_COOKIE.get(&cookie) }) else {
        return;
    };
    let facts = *facts;
    let mut key = SockKey {
        port: ctx.local_port() as u16,
        ..SockKey::default()
    };
    if ctx.family() == u32::from(AF_INET) {
        key.addr[..4].copy_from_slice(&ctx.local_ip4().to_ne_bytes());
        key.family = AF_INET;
    } else {
        let ip6 = v6_bytes(ctx.local_ip6());
        // A dual-stack client reaches the IPv4 proxy listener, which sees it
        // as a plain IPv4 peer: key it that way.
        if let Some(v4) = v4_mapped(&ip6) {
            key.addr[..4].copy_from_slice(&v4);
            key.family = AF_INET;
        } else {
            key.addr = ip6;
            key.family = AF_INET6;
        }
    }
    if CONNECT_FACTS.insert(&key, &facts, 0).is_ok() {
        bump(Counter::JumpRekeyed);
    } else {
        bump(Counter::JumpErrors);
    }
}
