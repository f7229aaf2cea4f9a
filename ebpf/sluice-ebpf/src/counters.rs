//! Per-CPU counters: no atomics needed, userspace sums the CPUs.
use sluice_common::Counter;

use crate::maps::COUNTERS;

#[inline(always)]
pub fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer comes from a successful map lookup of a per-CPU
        // slot, which only this CPU touches while the program runs.
        unsafe { *slot += 1 };
    }
}
