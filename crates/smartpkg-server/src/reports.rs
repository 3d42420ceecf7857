//! Devices' reports as this instance aggregates them between flushes: per package, hour and
//! event, a count and a sketch of distinct devices. The runtime face adds accepted reports;
//! the workers take the aggregates every `report_flush_interval_s` and merge them into the
//! store (a failed flush puts them back). Only the current interval is held here, so memory
//! does not grow with the fleet's history; what it may hold at most is bounded by
//! [`MEMORY_BUDGET`] (past it, reports are dropped and counted, and a flush is due at once).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use smartpkg_core::health::ReportEvent;
use smartpkg_core::ids::{AppId, PackageId};
use smartpkg_core::sketch::Sketch;
use smartpkg_store::ReportCell;

const SHARDS: usize = 16;
/// Bytes the aggregates of one interval may take (cells and sketches).
pub const MEMORY_BUDGET: usize = 64 << 20;
/// Bytes a cell takes besides its sketch's heap (key, counters, the map's slot), about.
const CELL_BYTES: usize = 96;

/// One accepted report, its device already hashed.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub app_id: i64,
    pub package_id: i64,
    pub hour: i64,
    pub event: ReportEvent,
    pub device_hash: u64,
}

struct Cell {
    app_id: i64,
    events: u64,
    devices: Sketch,
}

#[derive(Default)]
struct Shard {
    cells: FxHashMap<(i64, i64, ReportEvent), Cell>,
    bytes: usize,
}

/// The aggregates of the current interval.
pub struct Reports {
    shards: Vec<Mutex<Shard>>,
    bytes: AtomicUsize,
    /// Reports dropped because the budget was spent (a flush was late).
    pub dropped: AtomicU64,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

fn shard_of(package_id: i64) -> usize {
    package_id.rem_euclid(SHARDS as i64) as usize
}

impl Reports {
    /// Adds a checked batch, locking each shard it touches once.
    pub fn add(&self, batch: &[Accepted]) {
        let mut by_shard: [Vec<&Accepted>; SHARDS] = Default::default();
        for a in batch {
            by_shard[shard_of(a.package_id)].push(a);
        }
        for (i, items) in by_shard.iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let Ok(mut shard) = self.shards[i].lock() else {
                continue;
            };
            let mut dropped = 0u64;
            for a in items {
                let key = (a.package_id, a.hour, a.event);
                let over = self.bytes.load(Ordering::Relaxed) >= MEMORY_BUDGET;
                let shard = &mut *shard;
                let cell = match shard.cells.get_mut(&key) {
                    Some(c) => c,
                    None if over => {
                        dropped += 1;
                        continue;
                    }
                    None => {
                        shard.bytes += CELL_BYTES;
                        self.bytes.fetch_add(CELL_BYTES, Ordering::Relaxed);
                        shard.cells.entry(key).or_insert(Cell {
                            app_id: a.app_id,
                            events: 0,
                            devices: Sketch::new(),
                        })
                    }
                };
                let before = cell.devices.heap_bytes();
                cell.devices.add_hash(a.device_hash);
                cell.events = cell.events.saturating_add(1);
                let after = cell.devices.heap_bytes();
                if after > before {
                    shard.bytes += after - before;
                    self.bytes.fetch_add(after - before, Ordering::Relaxed);
                }
            }
            if dropped > 0 {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
    }

    /// Whether the interval's budget is spent past half: flush now rather than drop.
    pub fn pressing(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) >= MEMORY_BUDGET / 2
    }

    /// Bytes the current aggregates take, about.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Takes every aggregate out, for a flush.
    pub fn take(&self) -> Vec<ReportCell> {
        let mut out = Vec::new();
        for s in &self.shards {
            let Ok(mut shard) = s.lock() else { continue };
            let cells = std::mem::take(&mut shard.cells);
            self.bytes.fetch_sub(shard.bytes, Ordering::Relaxed);
            shard.bytes = 0;
            out.extend(
                cells
                    .into_iter()
                    .map(|((package_id, hour, event), c)| ReportCell {
                        package_id: PackageId(package_id),
                        app_id: AppId(c.app_id),
                        hour,
                        event,
                        events: c.events,
                        devices: c.devices,
                    }),
            );
        }
        out
    }

    /// Puts a flush that failed back, merged with what arrived meanwhile: nothing is lost
    /// but what a killed process held.
    pub fn put_back(&self, cells: Vec<ReportCell>) {
        for c in cells {
            let i = shard_of(c.package_id.get());
            let Ok(mut shard) = self.shards[i].lock() else {
                continue;
            };
            let key = (c.package_id.get(), c.hour, c.event);
            let shard = &mut *shard;
            match shard.cells.get_mut(&key) {
                Some(cell) => {
                    let before = cell.devices.heap_bytes();
                    cell.devices.merge(&c.devices);
                    cell.events = cell.events.saturating_add(c.events);
                    let grown = cell.devices.heap_bytes().saturating_sub(before);
                    shard.bytes += grown;
                    self.bytes.fetch_add(grown, Ordering::Relaxed);
                }
                None => {
                    let add = CELL_BYTES + c.devices.heap_bytes();
                    shard.bytes += add;
                    self.bytes.fetch_add(add, Ordering::Relaxed);
                    shard.cells.insert(
                        key,
                        Cell {
                            app_id: c.app_id.get(),
                            events: c.events,
                            devices: c.devices,
                        },
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartpkg_core::sketch::hash;

    fn report(package_id: i64, device: &str, event: ReportEvent) -> Accepted {
        Accepted {
            app_id: 7,
            package_id,
            hour: 100,
            event,
            device_hash: hash(device),
        }
    }

    #[test]
    fn a_taken_interval_holds_every_count_and_a_failed_flush_comes_back_whole() {
        let r = Reports::default();
        let batch: Vec<_> = (0..300)
            .map(|i| report(i % 3, &format!("d{}", i % 50), ReportEvent::Launched))
            .collect();
        r.add(&batch);
        r.add(&batch);
        let cells = r.take();
        assert_eq!(cells.len(), 3);
        assert_eq!(cells.iter().map(|c| c.events).sum::<u64>(), 600);
        assert_eq!(r.bytes(), 0);
        assert!(r.take().is_empty());
        r.add(&batch[..3]);
        r.put_back(cells);
        let again = r.take();
        assert_eq!(again.iter().map(|c| c.events).sum::<u64>(), 603);
        // The same 50 devices, whatever was sent twice.
        let devices: u64 = again.iter().map(|c| c.devices.count()).sum();
        assert!((48..=52).contains(&devices), "{devices}");
    }
}
