//! Gateway mode: a tc (TCX) ingress classifier on the agent-facing interfaces.
//!
//! For TCP to a protected target it marks every packet of the flow (policy
//! routing then delivers it locally) and hands new flows to the proxy's
//! transparent listener with `bpf_sk_assign`. Nothing is rewritten, so there
//! are no checksum fix-ups. With no listener registered the flow is dropped
//! (fail closed) unless `fail_open` is set.
use aya_ebpf::{
    bindings::{
        BPF_F_CURRENT_NETNS, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_UNSPEC, bpf_sock, bpf_sock_tuple,
    },
    helpers::generated::{bpf_map_lookup_elem, bpf_sk_assign, bpf_sk_release, bpf_skc_lookup_tcp},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::warn;
use sluice_common::{
    AF_INET, AF_INET6, Counter, FLAG_FAIL_OPEN, GatewayFacts, LISTENER_V4, LISTENER_V6, SockKey,
};

use crate::{
    addr::{protected_net_v4, protected_net_v6, protected_v4, protected_v6},
    counters::bump,
    maps::{GATEWAY_FACTS, LISTENERS, settings},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;
const TCP_LISTEN: u32 = 10;
/// IPv6 extension headers we walk over; anything deeper to a protected
/// network is dropped rather than guessed at.
const MAX_EXT_HEADERS: usize = 6;

/// Untouched traffic: continue to the next program / default handling.
const PASS: i32 = TC_ACT_UNSPEC;

#[classifier]
pub fn sluice_tc_ingress(ctx: TcContext) -> i32 {
    match try_tc_ingress(&ctx) {
        Ok(action) => action,
        Err(()) => {
            bump(Counter::GatewayErrors);
            TC_ACT_SHOT
        }
    }
}

/// The parsed facts of one protected TCP packet. Zero-initialised up front
/// and filled in place: moving a large enum payload around makes LLVM spill
/// uninitialised registers, which the verifier rejects.
#[derive(Default)]
struct Flow {
    family: u16,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    flags: u8,
}

/// What parsing decided.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parsed {
    /// A TCP packet to a protected target: `Flow` is filled in.
    Ours,
    /// Not ours.
    Pass,
    /// Ours but unsafe to forward (fragments, unparseable headers).
    Drop,
}

fn try_tc_ingress(ctx: &TcContext) -> Result<i32, ()> {
    let ethertype = u16::from_be(ctx.load::<u16>(12).map_err(|_| ())?);
    let mut flow = Flow::default();
    let parsed = match ethertype {
        ETH_P_IP => parse_v4(ctx, &mut flow)?,
        ETH_P_IPV6 => parse_v6(ctx, &mut flow)?,
        _ => Parsed::Pass,
    };
    match parsed {
        Parsed::Ours => steer(ctx, &flow),
        Parsed::Pass => Ok(PASS),
        Parsed::Drop => Ok(TC_ACT_SHOT),
    }
}

fn parse_v4(ctx: &TcContext, flow: &mut Flow) -> Result<Parsed, ()> {
    let ip = ETH_HLEN;
    let ver_ihl: u8 = ctx.load(ip).map_err(|_| ())?;
    if ver_ihl >> 4 != 4 {
        return Ok(Parsed::Pass);
    }
    let ihl = ((ver_ihl & 0x0f) as usize) * 4;
    let proto: u8 = ctx.load(ip + 9).map_err(|_| ())?;
    if proto != IPPROTO_TCP {
        return Ok(Parsed::Pass);
    }
    let dst: [u8; 4] = ctx.load(ip + 16).map_err(|_| ())?;
    let frag = u16::from_be(ctx.load::<u16>(ip + 6).map_err(|_| ())?);
    // More-fragments set or a non-zero offset: later fragments carry no TCP
    // header, so the port is unknown. Never forward a piece of a flow we
    // might have to steer.
    if frag & 0x3fff != 0 {
        if protected_net_v4(dst) {
            bump(Counter::GatewayDroppedFragment);
            return Ok(Parsed::Drop);
        }
        return Ok(Parsed::Pass);
    }
    if ihl < 20 {
        return Ok(if protected_net_v4(dst) {
            Parsed::Drop
        } else {
            Parsed::Pass
        });
    }
    let tcp = ip + ihl;
    let dport = u16::from_be(ctx.load::<u16>(tcp + 2).map_err(|_| ())?);
    if !protected_v4(dst, dport) {
        return Ok(Parsed::Pass);
    }
    let src: [u8; 4] = ctx.load(ip + 12).map_err(|_| ())?;
    flow.family = AF_INET;
    flow.src[..4].copy_from_slice(&src);
    flow.dst[..4].copy_from_slice(&dst);
    flow.dport = dport;
    flow.sport = u16::from_be(ctx.load::<u16>(tcp).map_err(|_| ())?);
    flow.flags = ctx.load(tcp + 13).map_err(|_| ())?;
    Ok(Parsed::Ours)
}

fn parse_v6(ctx: &TcContext, flow: &mut Flow) -> Result<Parsed, ()> {
    let ip = ETH_HLEN;
    let dst: [u8; 16] = ctx.load(ip + 24).map_err(|_| ())?;
    let mut next: u8 = ctx.load(ip + 6).map_err(|_| ())?;
    let mut off = ip + 40;
    let mut i = 0;
    while i < MAX_EXT_HEADERS {
        match next {
            IPPROTO_TCP => break,
            // hop-by-hop, routing, destination options: skip over them.
            0 | 43 | 60 => {
                let nh: u8 = ctx.load(off).map_err(|_| ())?;
                let len: u8 = ctx.load(off + 1).map_err(|_| ())?;
                next = nh;
                off += (len as usize + 1) * 8;
            }
            // fragment header
            44 => {
                if protected_net_v6(dst) {
                    bump(Counter::GatewayDroppedFragment);
                    return Ok(Parsed::Drop);
                }
                return Ok(Parsed::Pass);
            }
            _ => return Ok(Parsed::Pass),
        }
        i += 1;
    }
    if next != IPPROTO_TCP {
        return Ok(if protected_net_v6(dst) {
            Parsed::Drop
        } else {
            Parsed::Pass
        });
    }
    let dport = u16::from_be(ctx.load::<u16>(off + 2).map_err(|_| ())?);
    if !protected_v6(dst, dport) {
        return Ok(Parsed::Pass);
    }
    flow.family = AF_INET6;
    flow.src = ctx.load(ip + 8).map_err(|_| ())?;
    flow.dst = dst;
    flow.dport = dport;
    flow.sport = u16::from_be(ctx.load::<u16>(off).map_err(|_| ())?);
    flow.flags = ctx.load(off + 13).map_err(|_| ())?;
    Ok(Parsed::Ours)
}

fn steer(ctx: &TcContext, flow: &Flow) -> Result<i32, ()> {
    let Some(cfg) = settings() else {
        bump(Counter::GatewayDroppedNoProxy);
        return Ok(TC_ACT_SHOT);
    };
    let new_flow = flow.flags & TCP_FLAG_SYN != 0 && flow.flags & TCP_FLAG_ACK == 0;
    if new_flow {
        let key = SockKey {
            addr: flow.src,
            port: flow.sport,
            family: flow.family,
        };
        let mac: [u8; 6] = ctx.load(6).unwrap_or([0; 6]);
        // SAFETY: __sk_buff.ingress_ifindex is a plain u32 field of the context.
        let ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
        let facts = GatewayFacts {
            ifindex,
            mac,
            _pad: 0,
        };
        // LRU: cannot fail for lack of room; a failure only loses facts.
        let _ = GATEWAY_FACTS.insert(&key, &facts, 0);
    }
    if established(ctx, flow) {
        // The kernel's own lookup finds the proxy's socket once policy
        // routing makes the packet local. A SYN that meets a TIME_WAIT socket
        // of an earlier flow with the same 4-tuple goes this way too: the
        // kernel's TIME_WAIT handling looks the listener up again, and the
        // SK_LOOKUP program (sk_lookup.rs) answers with the proxy's. Assigning
        // the listener here instead would leave the new request unhashable
        // next to the TIME_WAIT socket, and the client's SYNs unanswered.
        ctx.set_mark(cfg.intercept_mark);
        bump(Counter::GatewaySteered);
        return Ok(TC_ACT_OK);
    }

    let index = if flow.family == AF_INET {
        LISTENER_V4
    } else {
        LISTENER_V6
    };
    // aya-ebpf's SockMap offers no lookup for tc programs; the raw helper
    // returns a referenced socket that must be released on every path.
    // SAFETY: LISTENERS is a SOCKMAP (a transparent wrapper of its map
    // definition) and the key is a valid u32 on the stack.
    let listener = unsafe {
        bpf_map_lookup_elem(
            core::ptr::from_ref(&LISTENERS).cast_mut().cast(),
            core::ptr::from_ref(&index).cast(),
        )
    };
    if listener.is_null() {
        if cfg.flags & FLAG_FAIL_OPEN != 0 {
            bump(Counter::GatewayFailOpen);
            if new_flow {
                warn!(
                    ctx,
                    "sluice fail-open: forwarding un-proxied flow to port {}", flow.dport
                );
            }
            return Ok(PASS);
        }
        bump(Counter::GatewayDroppedNoProxy);
        return Ok(TC_ACT_SHOT);
    }
    ctx.set_mark(cfg.intercept_mark);
    // SAFETY: `listener` is a non-null referenced socket from the lookup
    // above; it is released right after the assign on every path.
    let rc = unsafe {
        let rc = bpf_sk_assign(ctx.skb.skb.cast(), listener, 0);
        bpf_sk_release(listener);
        rc
    };
    if rc != 0 {
        bump(Counter::GatewayErrors);
        return Ok(TC_ACT_SHOT);
    }
    bump(Counter::GatewaySteered);
    if new_flow {
        bump(Counter::GatewayNewFlows);
    }
    Ok(TC_ACT_OK)
}

/// Does a non-listening socket (established, request or time-wait) exist for
/// this 4-tuple in this namespace? Packets without one go to the listener,
/// which accepts SYNs, answers SYN-cookie ACKs and resets everything else.
fn established(ctx: &TcContext, flow: &Flow) -> bool {
    // SAFETY: an all-zero tuple is a valid value of this plain C union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = if flow.family == AF_INET {
        let v4 = [flow.src[0], flow.src[1], flow.src[2], flow.src[3]];
        let d4 = [flow.dst[0], flow.dst[1], flow.dst[2], flow.dst[3]];
        tuple.__bindgen_anon_1.ipv4.saddr = u32::from_ne_bytes(v4);
        tuple.__bindgen_anon_1.ipv4.daddr = u32::from_ne_bytes(d4);
        tuple.__bindgen_anon_1.ipv4.sport = flow.sport.to_be();
        tuple.__bindgen_anon_1.ipv4.dport = flow.dport.to_be();
        12
    } else {
        tuple.__bindgen_anon_1.ipv6.saddr = crate::addr::v6_words(&flow.src);
        tuple.__bindgen_anon_1.ipv6.daddr = crate::addr::v6_words(&flow.dst);
        tuple.__bindgen_anon_1.ipv6.sport = flow.sport.to_be();
        tuple.__bindgen_anon_1.ipv6.dport = flow.dport.to_be();
        36
    };
    // SAFETY: the tuple lives on the stack for the call and `size` matches
    // the family's member of the union.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.skb.skb.cast(),
            &mut tuple,
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: `sk` is a referenced socket from the lookup, released below.
    let state = unsafe { (*sk.cast::<bpf_sock>()).state };
    // SAFETY: as above; released exactly once.
    unsafe { bpf_sk_release(sk.cast()) };
    state != TCP_LISTEN
}
