//! sluice's kernel programs.
//!
//! Layout: `maps` holds every map (shared by all programs, one object file);
//! `tc_ingress` steers forwarded flows on a gateway; `cgroup_connect` and
//! `sockops` steer local processes on a jump host; `counters` and `addr` are
//! small helpers. Each program is a thin entry point around a `try_*` function.
#![no_std]
#![no_main]

mod addr;
mod cgroup_connect;
mod counters;
mod maps;
mod sk_lookup;
mod sockops;
mod tc_ingress;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
