//! Jump-host mode: `cgroup/connect4|6` rewrite a local process's connect() to
//! a protected target so it lands on the proxy, remembering the original
//! destination and process facts under the socket cookie; `getpeername4|6`
//! make the process see the address it dialled.
//!
//! Sockets carrying the proxy's upstream mark are never touched, and only
//! sockets in the configured network namespace are rewritten.
use aya_ebpf::{
    EbpfContext,
    bindings::bpf_sock_addr,
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_get_netns_cookie, bpf_get_socket_cookie,
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use aya_log_ebpf::warn;
use sluice_common::{
    AF_INET, AF_INET6, ConnectFacts, Counter, FLAG_FAIL_OPEN, FLAG_PROXY_READY, Settings, SockKey,
};

use crate::{
    addr::{protected_v4, protected_v6, v4_mapped, v6_bytes, v6_words},
    counters::bump,
    maps::{BY_COOKIE, settings},
};

const ALLOW: i32 = 1;
const REJECT: i32 = 0;
const IPPROTO_TCP: u32 = 6;

#[cgroup_sock_addr(connect4)]
pub fn sluice_connect4(ctx: SockAddrContext) -> i32 {
    // Spelled out so the verifier sees the return value is 0 or 1.
    if try_connect(&ctx, false) == Ok(ALLOW) {
        ALLOW
    } else {
        REJECT
    }
}

#[cgroup_sock_addr(connect6)]
pub fn sluice_connect6(ctx: SockAddrContext) -> i32 {
    if try_connect(&ctx, true) == Ok(ALLOW) {
        ALLOW
    } else {
        REJECT
    }
}

#[cgroup_sock_addr(getpeername4)]
pub fn sluice_getpeername4(ctx: SockAddrContext) -> i32 {
    restore_peer(&ctx, false);
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn sluice_getpeername6(ctx: SockAddrContext) -> i32 {
    restore_peer(&ctx, true);
    ALLOW
}

/// Where the process is going, as the kernel gave it to connect().
enum Dest {
    V4([u8; 4], u16),
    /// A real IPv6 destination.
    V6([u8; 16], u16),
    /// `::ffff:a.b.c.d` on a dual-stack socket: an IPv4 target in disguise.
    Mapped([u8; 4], u16),
}

fn try_connect(ctx: &SockAddrContext, v6: bool) -> Result<i32, i32> {
    let sa: *mut bpf_sock_addr = ctx.sock_addr;
    let (protocol, port) = (
        ctx_read::protocol(sa),
        u16::from_be(ctx_read::user_port(sa) as u16),
    );
    if protocol != IPPROTO_TCP {
        return Ok(ALLOW);
    }
    let dest = if v6 {
        let ip6 = v6_bytes(ctx_read::user_ip6(sa));
        match v4_mapped(&ip6) {
            Some(v4) => Dest::Mapped(v4, port),
            None => Dest::V6(ip6, port),
        }
    } else {
        Dest::V4(ctx_read::user_ip4(sa).to_ne_bytes(), port)
    };
    let protected = match dest {
        Dest::V4(a, p) | Dest::Mapped(a, p) => protected_v4(a, p),
        Dest::V6(a, p) => protected_v6(a, p),
    };
    if !protected {
        return Ok(ALLOW);
    }
    let Some(cfg) = settings() else {
        bump(Counter::JumpDeniedNoProxy);
        return Ok(REJECT);
    };
    if cfg.netns_cookie != 0 {
        // SAFETY: the helper only reads the context's socket.
        let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
        if netns != cfg.netns_cookie {
            return Ok(ALLOW);
        }
    }
    // SAFETY: sock_addr programs always carry a full socket in `sk`.
    let mark = unsafe {
        let sk = (*sa).__bindgen_anon_1.sk;
        if sk.is_null() { 0 } else { (*sk).mark }
    };
    if cfg.upstream_mark != 0 && mark == cfg.upstream_mark {
        bump(Counter::JumpSkippedProxy);
        return Ok(ALLOW);
    }
    if cfg.flags & FLAG_PROXY_READY == 0 {
        if cfg.flags & FLAG_FAIL_OPEN != 0 {
            bump(Counter::JumpFailOpen);
            warn!(
                ctx,
                "sluice fail-open: local connect to port {} not proxied", port
            );
            return Ok(ALLOW);
        }
        bump(Counter::JumpDeniedNoProxy);
        return Ok(REJECT);
    }
    record(ctx, &dest)?;
    rewrite(sa, &dest, cfg);
    bump(Counter::JumpRedirected);
    Ok(ALLOW)
}

fn record(ctx: &SockAddrContext, dest: &Dest) -> Result<(), i32> {
    let mut orig = SockKey::default();
    match *dest {
        Dest::V4(a, p) | Dest::Mapped(a, p) => {
            orig.addr[..4].copy_from_slice(&a);
            orig.port = p;
            orig.family = AF_INET;
        }
        Dest::V6(a, p) => {
            orig.addr = a;
            orig.port = p;
            orig.family = AF_INET6;
        }
    }
    // SAFETY: these helpers take no pointers except the comm buffer, which is
    // a 16-byte stack array passed with its exact size.
    let facts = unsafe {
        let pid_tgid = bpf_get_current_pid_tgid();
        let uid_gid = bpf_get_current_uid_gid();
        let mut comm = [0u8; 16];
        bpf_get_current_comm(comm.as_mut_ptr().cast(), 16);
        ConnectFacts {
            cgroup_id: bpf_get_current_cgroup_id(),
            orig,
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            uid: uid_gid as u32,
            gid: (uid_gid >> 32) as u32,
            comm,
            _pad: 0,
        }
    };
    // SAFETY: the helper only reads the context's socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if BY_COOKIE.insert(&cookie, &facts, 0).is_err() {
        // Without its facts the proxy could not find the real target: refuse
        // the connect rather than let it through un-proxied.
        bump(Counter::JumpErrors);
        return Err(REJECT);
    }
    Ok(())
}

fn rewrite(sa: *mut bpf_sock_addr, dest: &Dest, cfg: &Settings) {
    match dest {
        Dest::V4(..) => ctx_write::user_ip4(sa, u32::from_ne_bytes(cfg.proxy_v4)),
        Dest::Mapped(..) => ctx_write::user_ip6(sa, v6_words(&mapped_v6(cfg.proxy_v4))),
        Dest::V6(..) => ctx_write::user_ip6(sa, v6_words(&cfg.proxy_v6)),
    }
    ctx_write::user_port(sa, u32::from(cfg.proxy_port.to_be()));
}

fn mapped_v6(v4: [u8; 4]) -> [u8; 16] {
    let mut mapped = [0u8; 16];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12] = v4[0];
    mapped[13] = v4[1];
    mapped[14] = v4[2];
    mapped[15] = v4[3];
    mapped
}

fn restore_peer(ctx: &SockAddrContext, v6: bool) {
    // SAFETY: the helper only reads the context's socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied out at once; LRU eviction cannot free it
    // while this program runs (RCU).
    let Some(facts) = (unsafe { BY_COOKIE.get(&cookie) }) else {
        return;
    };
    let orig = facts.orig;
    let sa = ctx.sock_addr;
    let v4 = [orig.addr[0], orig.addr[1], orig.addr[2], orig.addr[3]];
    if !v6 && orig.family == AF_INET {
        ctx_write::user_ip4(sa, u32::from_ne_bytes(v4));
    } else if v6 && orig.family == AF_INET6 {
        ctx_write::user_ip6(sa, v6_words(&orig.addr));
    } else if v6 && orig.family == AF_INET {
        ctx_write::user_ip6(sa, v6_words(&mapped_v6(v4)));
    } else {
        return;
    }
    ctx_write::user_port(sa, u32::from(orig.port.to_be()));
}

/// Context field access through tiny out-of-line functions. The verifier
/// only accepts context accesses of the form `ctx + constant`; inlined,
/// LLVM hoists the field address into a register shared between blocks and
/// the store becomes a "dereference of modified ctx ptr". A BPF-to-BPF call
/// keeps the context type and each access at a fixed offset.
mod ctx_read {
    use aya_ebpf::bindings::bpf_sock_addr;

    #[inline(never)]
    pub fn protocol(sa: *mut bpf_sock_addr) -> u32 {
        // SAFETY: `sa` is the program's context pointer.
        unsafe { (*sa).protocol }
    }
    #[inline(never)]
    pub fn user_port(sa: *mut bpf_sock_addr) -> u32 {
        // SAFETY: as above.
        unsafe { (*sa).user_port }
    }
    #[inline(never)]
    pub fn user_ip4(sa: *mut bpf_sock_addr) -> u32 {
        // SAFETY: as above.
        unsafe { (*sa).user_ip4 }
    }
    #[inline(never)]
    pub fn user_ip6(sa: *mut bpf_sock_addr) -> [u32; 4] {
        // SAFETY: as above; four separate 32-bit loads.
        unsafe {
            [
                (*sa).user_ip6[0],
                (*sa).user_ip6[1],
                (*sa).user_ip6[2],
                (*sa).user_ip6[3],
            ]
        }
    }
}

/// See [`ctx_read`].
mod ctx_write {
    use aya_ebpf::bindings::bpf_sock_addr;

    #[inline(never)]
    pub fn user_ip4(sa: *mut bpf_sock_addr, v: u32) {
        // SAFETY: writable for connect4 and getpeername4 programs.
        unsafe { (*sa).user_ip4 = v }
    }
    #[inline(never)]
    pub fn user_ip6(sa: *mut bpf_sock_addr, w: [u32; 4]) {
        // SAFETY: writable for connect6 and getpeername6 programs.
        unsafe {
            (*sa).user_ip6[0] = w[0];
            (*sa).user_ip6[1] = w[1];
            (*sa).user_ip6[2] = w[2];
            (*sa).user_ip6[3] = w[3];
        }
    }
    #[inline(never)]
    pub fn user_port(sa: *mut bpf_sock_addr, v: u32) {
        // SAFETY: writable for all four attach types.
        unsafe { (*sa).user_port = v }
    }
}
