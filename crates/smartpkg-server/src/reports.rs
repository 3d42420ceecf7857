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

/// Stripes of the aggregates: a request adds its whole batch to one stripe under one lock,
/// taking the first free one, so 64 connections rarely wait on each other. The same package
/// may sit in several stripes; a flush unites them.
const STRIPES: usize = 64;
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

type Key = (i64, i64, ReportEvent);

#[derive(Default)]
struct Stripe {
    cells: FxHashMap<Key, Cell>,
    bytes: usize,
}

/// The aggregates of the current interval.
pub struct Reports {
    stripes: Vec<Mutex<Stripe>>,
    next: AtomicUsize,
    bytes: AtomicUsize,
    /// Reports dropped because the budget was spent (a flush was late).
    pub dropped: AtomicU64,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            next: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Stripe {
    /// Merges a cell in, growing `total` by what it takes.
    fn merge(&mut self, key: Key, c: Cell, total: &AtomicUsize) {
        match self.cells.get_mut(&key) {
            Some(cell) => {
                let before = cell.devices.heap_bytes();
                cell.devices.merge(&c.devices);
                cell.events = cell.events.saturating_add(c.events);
                let grown = cell.devices.heap_bytes().saturating_sub(before);
                self.bytes += grown;
                total.fetch_add(grown, Ordering::Relaxed);
            }
            None => {
                let add = CELL_BYTES + c.devices.heap_bytes();
                self.bytes += add;
                total.fetch_add(add, Ordering::Relaxed);
                self.cells.insert(key, c);
            }
        }
    }
}

impl Reports {
    /// The first stripe free from a turning start (or, when all are busy, that start's).
    fn stripe(&self) -> std::sync::MutexGuard<'_, Stripe> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..STRIPES {
            if let Ok(guard) = self.stripes[(start + i) % STRIPES].try_lock() {
                return guard;
            }
        }
        let i = start % STRIPES;
        // A poisoned stripe (a panic while held) still holds sound counts: keep using it.
        self.stripes[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a checked batch under one lock.
    pub fn add(&self, batch: &[Accepted]) {
        if batch.is_empty() {
            return;
        }
        let mut guard = self.stripe();
        let stripe = &mut *guard;
        let mut dropped = 0u64;
        let mut grown = 0usize;
        for a in batch {
            // Past the budget nothing is added, not even to a cell that exists (a sparse
            // sketch turning dense takes 16 KiB): reports wait for the flush that is due.
            if self.bytes.load(Ordering::Relaxed) + grown >= MEMORY_BUDGET {
                dropped += 1;
                continue;
            }
            let cell = stripe
                .cells
                .entry((a.package_id, a.hour, a.event))
                .or_insert_with(|| {
                    grown += CELL_BYTES;
                    Cell {
                        app_id: a.app_id,
                        events: 0,
                        devices: Sketch::new(),
                    }
                });
            let before = cell.devices.heap_bytes();
            cell.devices.add_hash(a.device_hash);
            cell.events = cell.events.saturating_add(1);
            grown += cell.devices.heap_bytes().saturating_sub(before);
        }
        stripe.bytes += grown;
        self.bytes.fetch_add(grown, Ordering::Relaxed);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
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

    /// Takes every aggregate out, the stripes united, for a flush.
    pub fn take(&self) -> Vec<ReportCell> {
        let mut all: FxHashMap<Key, Cell> = FxHashMap::default();
        for s in &self.stripes {
            let (cells, bytes) = {
                let mut stripe = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let bytes = std::mem::take(&mut stripe.bytes);
                (std::mem::take(&mut stripe.cells), bytes)
            };
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            for (key, c) in cells {
                match all.get_mut(&key) {
                    Some(cell) => {
                        cell.devices.merge(&c.devices);
                        cell.events = cell.events.saturating_add(c.events);
                    }
                    None => {
                        all.insert(key, c);
                    }
                }
            }
        }
        all.into_iter()
            .map(|((package_id, hour, event), c)| ReportCell {
                package_id: PackageId(package_id),
                app_id: AppId(c.app_id),
                hour,
                event,
                events: c.events,
                devices: c.devices,
            })
            .collect()
    }

    /// Puts a flush that failed back, merged with what arrived meanwhile: nothing is lost
    /// but what a killed process held.
    pub fn put_back(&self, cells: Vec<ReportCell>) {
        let mut stripe = self.stripe();
        for c in cells {
            let key = (c.package_id.get(), c.hour, c.event);
            let cell = Cell {
                app_id: c.app_id.get(),
                events: c.events,
                devices: c.devices,
            };
            stripe.merge(key, cell, &self.bytes);
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
        // Each package saw the same 50 devices, whatever was sent twice or in which stripe.
        for c in &again {
            assert!(
                (49..=51).contains(&c.devices.count()),
                "{}",
                c.devices.count()
            );
        }
    }
}
