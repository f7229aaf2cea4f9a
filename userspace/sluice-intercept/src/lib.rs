//! Kernel-side interception for sluice: everything that touches eBPF, bpffs
//! and policy routing lives here, and nothing here knows about databases.
//!
//! Layout:
//! - [`Interceptor`] (`interceptor.rs`): load the object, fill the maps,
//!   register the proxy's listeners, attach and pin the programs, and take
//!   them all away again on a clean stop.
//! - `pins.rs`: the bpffs directory where links are pinned, so a crashed
//!   daemon still fails closed and the next start finds and replaces them.
//! - `routing.rs`: the `fwmark → local` policy routing gateway mode needs.
//! - [`FlowFacts`] (`facts.rs`): what the programs learnt about a flow, looked
//!   up by the client's address when the proxy accepts it.
//! - [`Counters`] (`counters.rs`): per-program counters summed over CPUs.
//! - [`doctor`]: can this host run each mode?
#![deny(missing_docs)]

mod counters;
pub mod doctor;
mod error;
mod facts;
mod interceptor;
mod pins;
mod routing;
mod sockopt;

pub use counters::Counters;
pub use error::InterceptError;
pub use facts::{ConnectRecord, FlowFacts, GatewayRecord};
pub use interceptor::{Interceptor, Listeners, Status};
pub use sockopt::{netns_cookie, set_mark, set_transparent, set_v6only};

/// The eBPF object built by `build.rs`, embedded in the binary.
pub(crate) fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice"))
}
