//! How a decision wakes the job lanes that have work from it, here and on the other instances
//! sharing the database. Below the state and the workers, which both use it.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use smartpkg_store::LaneKind;

/// The lanes a decision left work for: jobs for the platform lane, an audit result (a push)
/// for the deliveries lane.
pub fn lanes_of(plan: &smartpkg_core::lifecycle::Plan) -> Lanes {
    let mut lanes = 0;
    if !plan.jobs.is_empty() {
        lanes |= smartpkg_storage::LANE_PLATFORM;
    }
    if plan.audit_decision.is_some() {
        lanes |= smartpkg_storage::LANE_DELIVERIES;
    }
    lanes
}

/// Wakes the worker lanes when a decision left work for them — this instance's, and, when the
/// database is shared and this instance's lane has no free slot, the other instances' too.
#[derive(Default)]
pub struct JobSignal {
    platform: Notify,
    deliveries: Notify,
    peers: Option<tokio::sync::mpsc::UnboundedSender<u8>>,
    /// Free slots of each lane here, as the lane last saw them (0 until it starts: until
    /// then the work is announced, so that nothing waits on a lane that is not running).
    platform_free: AtomicUsize,
    deliveries_free: AtomicUsize,
}

/// Which lanes have new work: bits of [`smartpkg_storage::LANE_PLATFORM`] and
/// [`smartpkg_storage::LANE_DELIVERIES`].
pub type Lanes = u8;

impl JobSignal {
    pub fn new(peers: Option<tokio::sync::mpsc::UnboundedSender<u8>>) -> Self {
        JobSignal {
            peers,
            ..Default::default()
        }
    }

    /// Wakes both lanes here (a waiting lane wakes at once; a busy one looks again when it is
    /// done) and announces the work to the other instances.
    pub fn notify_one(&self) {
        self.notify(smartpkg_storage::LANE_PLATFORM | smartpkg_storage::LANE_DELIVERIES);
    }

    /// Wakes the lanes that have new work here, and announces to the other instances those
    /// of them that have no free slot here. A lane with a free slot claims the work itself
    /// at once; waking every peer for it would cost each a claim query that finds nothing
    /// (on three instances that was a tenth of all statements of a lifecycle). Peers still
    /// poll, so work this instance cannot take is never stranded.
    pub fn notify(&self, lanes: Lanes) {
        if lanes == 0 {
            return;
        }
        self.wake_local(lanes);
        let mut saturated = 0;
        if self.free(LaneKind::Platform) == 0 {
            saturated |= smartpkg_storage::LANE_PLATFORM;
        }
        if self.free(LaneKind::Deliveries) == 0 {
            saturated |= smartpkg_storage::LANE_DELIVERIES;
        }
        if let Some(p) = self.peers.as_ref().filter(|_| lanes & saturated != 0) {
            let _ = p.send(lanes & saturated);
        }
    }

    fn free_slots(&self, lane: LaneKind) -> &AtomicUsize {
        match lane {
            LaneKind::Platform => &self.platform_free,
            LaneKind::Deliveries => &self.deliveries_free,
        }
    }

    /// Records the free slots a lane has now.
    pub(crate) fn set_free(&self, lane: LaneKind, free: usize) {
        self.free_slots(lane).store(free, Ordering::Relaxed);
    }

    /// The free slots the lane last recorded.
    pub(crate) fn free(&self, lane: LaneKind) -> usize {
        self.free_slots(lane).load(Ordering::Relaxed)
    }

    /// Wakes this instance's lanes only (for an announcement that came from elsewhere).
    pub fn wake_local(&self, lanes: Lanes) {
        if lanes & smartpkg_storage::LANE_PLATFORM != 0 {
            self.platform.notify_one();
        }
        if lanes & smartpkg_storage::LANE_DELIVERIES != 0 {
            self.deliveries.notify_one();
        }
    }

    pub(crate) fn of(&self, lane: LaneKind) -> &Notify {
        match lane {
            LaneKind::Platform => &self.platform,
            LaneKind::Deliveries => &self.deliveries,
        }
    }
}
