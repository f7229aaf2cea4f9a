//! Gateway mode, second net: an SK_LOOKUP program on the gateway's network
//! namespace. Whenever the kernel looks for a *listener* for a connection to
//! a protected target — which only steered flows reach, since those
//! addresses are not local — it gets the proxy's transparent listener.
//!
//! The tc classifier assigns fresh SYNs directly; this program covers the
//! lookups it cannot: a SYN that recycles a TIME_WAIT 4-tuple (the kernel's
//! TIME_WAIT path looks the listener up again) and SYN-cookie ACKs.
use aya_ebpf::{
    bindings::{bpf_sk_lookup, sk_action::SK_PASS},
    macros::sk_lookup,
    programs::SkLookupContext,
};
use sluice_common::{AF_INET, LISTENER_V4, LISTENER_V6};

use crate::{
    addr::{protected_v4, protected_v6, v6_bytes},
    maps::LISTENERS,
};

const IPPROTO_TCP: u32 = 6;

#[sk_lookup]
pub fn sluice_sk_lookup(ctx: SkLookupContext) -> u32 {
    let l = ctx.lookup;
    if read::protocol(l) != IPPROTO_TCP {
        return SK_PASS;
    }
    let port = read::local_port(l) as u16;
    let (protected, index) = if read::family(l) == u32::from(AF_INET) {
        (
            protected_v4(read::local_ip4(l).to_ne_bytes(), port),
            LISTENER_V4,
        )
    } else {
        (
            protected_v6(v6_bytes(read::local_ip6(l)), port),
            LISTENER_V6,
        )
    };
    if protected {
        // No listener registered: leave the lookup alone; with no socket
        // bound to the database's address the kernel resets the flow.
        let _ = LISTENERS.redirect_sk_lookup(&ctx, index, 0);
    }
    SK_PASS
}

/// Context reads through out-of-line functions, for the same verifier
/// reason as in `cgroup_connect.rs`.
mod read {
    use super::bpf_sk_lookup;

    #[inline(never)]
    pub fn protocol(l: *mut bpf_sk_lookup) -> u32 {
        // SAFETY: `l` is the program's context pointer.
        unsafe { (*l).protocol }
    }
    #[inline(never)]
    pub fn family(l: *mut bpf_sk_lookup) -> u32 {
        // SAFETY: as above.
        unsafe { (*l).family }
    }
    #[inline(never)]
    pub fn local_port(l: *mut bpf_sk_lookup) -> u32 {
        // SAFETY: as above; host byte order.
        unsafe { (*l).local_port }
    }
    #[inline(never)]
    pub fn local_ip4(l: *mut bpf_sk_lookup) -> u32 {
        // SAFETY: as above.
        unsafe { (*l).local_ip4 }
    }
    #[inline(never)]
    pub fn local_ip6(l: *mut bpf_sk_lookup) -> [u32; 4] {
        // SAFETY: as above; four 32-bit loads.
        unsafe {
            [
                (*l).local_ip6[0],
                (*l).local_ip6[1],
                (*l).local_ip6[2],
                (*l).local_ip6[3],
            ]
        }
    }
}
