//! Release health: devices' reports aggregated per package, hour and event (a count and a
//! sketch of distinct devices), and the staged releases whose plans the scheduler judges.
//!
//! Serialisation contract: [`HealthStore::merge_reports`] is one transaction that merges
//! every cell into what is stored (counts added, sketches united) under each row's lock, in
//! one key order, so two instances flushing at once both land and never wait on each other in
//! a circle; a flush that fails changes nothing.

use async_trait::async_trait;
use smartpkg_core::health::ReportEvent;
use smartpkg_core::ids::{AppId, PackageId};
use smartpkg_core::sketch::Sketch;
use smartpkg_core::stage::StagePlan;

use crate::Result;

/// One package's reports of one event in one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportCell {
    pub package_id: PackageId,
    pub app_id: AppId,
    /// Hours since the epoch (UTC).
    pub hour: i64,
    pub event: ReportEvent,
    /// Events received (a retried batch counts again).
    pub events: u64,
    /// The distinct devices that sent them (a retried batch does not count again).
    pub devices: Sketch,
}

/// A stored cell without its sketch: what the console's charts read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportHour {
    pub package_id: PackageId,
    pub hour: i64,
    pub event: ReportEvent,
    pub events: u64,
    /// The sketch's estimate of distinct devices, as of the last merge.
    pub devices: u64,
}

/// A staged release (with its plan, if it has one), as the scheduler and the dashboard see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedPlan {
    pub app_id: AppId,
    pub app_name: String,
    pub package_id: PackageId,
    pub version: String,
    pub staged_percent: i64,
    /// The online package the staged one would replace.
    pub online: Option<PackageId>,
    pub plan: Option<StagePlan>,
}

#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Adds `cells` to what is stored, in one transaction.
    async fn merge_reports(&self, cells: Vec<ReportCell>) -> Result<()>;

    /// The app's stored cells in hours `from_hour..=to_hour`, without sketches.
    async fn report_hours(
        &self,
        app_id: AppId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<ReportHour>>;

    /// The union of the package's sketches of `events` over hours `from_hour..=to_hour`:
    /// the distinct devices that sent any of them.
    async fn report_devices(
        &self,
        package_id: PackageId,
        events: Vec<ReportEvent>,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Sketch>;

    /// Every audit-passed package in a staged release, with its plan if it has one.
    async fn staged_plans(&self) -> Result<Vec<StagedPlan>>;
}
