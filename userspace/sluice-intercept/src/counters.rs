//! Per-program counters, summed over CPUs, for logs, `sluice status` and metrics.
use std::sync::{Arc, Mutex};

use aya::maps::{MapData, PerCpuArray};
use sluice_common::Counter;

/// Read handle over the `COUNTERS` map.
#[derive(Clone)]
pub struct Counters {
    map: Arc<Mutex<PerCpuArray<MapData, u64>>>,
}

impl Counters {
    pub(crate) fn new(map: PerCpuArray<MapData, u64>) -> Self {
        Counters {
            map: Arc::new(Mutex::new(map)),
        }
    }

    /// Every counter with its stable name, summed over CPUs.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Counter::ALL
            .iter()
            .map(|c| {
                let total = map
                    .get(&(*c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().copied().sum())
                    .unwrap_or(0);
                (c.name(), total)
            })
            .collect()
    }
}
