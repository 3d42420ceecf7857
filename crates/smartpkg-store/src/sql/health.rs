//! [`HealthStore`] on every SQL backend. Sketches are kept as base64 text (the shared
//! statements bind integers, text and booleans only).

use async_trait::async_trait;
use base64::Engine;
use smartpkg_core::health::ReportEvent;
use smartpkg_core::ids::{AppId, PackageId};
use smartpkg_core::sketch::Sketch;
use smartpkg_core::stage::StagePlan;

use super::{Sql, Tx};
use crate::health::{HealthStore, ReportCell, ReportHour, StagedPlan};
use crate::{Columns, Result, StoreError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn sketch_text(s: &Sketch) -> String {
    B64.encode(s.to_bytes())
}

fn sketch_of(text: &str) -> Result<Sketch> {
    let bytes = B64
        .decode(text)
        .map_err(|e| StoreError::Corrupt(format!("stored sketch: {e}")))?;
    Sketch::from_bytes(&bytes).map_err(|e| StoreError::Corrupt(format!("stored sketch: {e}")))
}

fn event_of(text: &str) -> Result<ReportEvent> {
    ReportEvent::parse(text).ok_or_else(|| StoreError::Corrupt(format!("report event {text}")))
}

/// Counts are kept as signed integers; a count past `i64::MAX` stays there.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Merges one cell into its row under the row's lock: a new row when there is none, else
/// counts added and sketches united.
async fn merge_cell<X: Tx>(tx: &mut X, c: &ReportCell) -> Result<()> {
    let text = sketch_text(&c.devices);
    let inserted = tx
        .exec(
            "INSERT INTO report_hours (package_id, event, hour, app_id, events, devices, sketch) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (package_id, event, hour) DO NOTHING",
            args![
                c.package_id,
                c.event.as_str(),
                c.hour,
                c.app_id,
                count(c.events),
                count(c.devices.count()),
                &text
            ],
        )
        .await?;
    if inserted == 1 {
        return Ok(());
    }
    let row = tx
        .one(
            tx.pick(locking!(
                "SELECT events, sketch FROM report_hours \
                 WHERE package_id = $1 AND event = $2 AND hour = $3"
            )),
            args![c.package_id, c.event.as_str(), c.hour],
        )
        .await?;
    let mut merged = sketch_of(&row.string("sketch")?)?;
    merged.merge(&c.devices);
    tx.exec(
        "UPDATE report_hours SET events = events + $1, devices = $2, sketch = $3 \
         WHERE package_id = $4 AND event = $5 AND hour = $6",
        args![
            count(c.events),
            count(merged.count()),
            &sketch_text(&merged),
            c.package_id,
            c.event.as_str(),
            c.hour
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl<S: Sql> HealthStore for S {
    async fn merge_reports(&self, mut cells: Vec<ReportCell>) -> Result<()> {
        if cells.is_empty() {
            return Ok(());
        }
        // One lock order for every instance: two flushes never wait on each other in a circle.
        cells.sort_unstable_by_key(|c| (c.package_id, c.event, c.hour));
        work!(write, self, |tx| {
            for c in &cells {
                merge_cell(tx, c).await?;
            }
            Ok(())
        })
    }

    async fn report_hours(
        &self,
        app_id: AppId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<ReportHour>> {
        work!(read, self, |tx| {
            let rows = tx
                .rows(
                    "SELECT package_id, hour, event, events, devices FROM report_hours \
                     WHERE app_id = $1 AND hour >= $2 AND hour <= $3 \
                     ORDER BY hour, package_id, event",
                    args![app_id, from_hour, to_hour],
                )
                .await?;
            super::decode(rows, |r| {
                Ok(ReportHour {
                    package_id: r.id("package_id")?,
                    hour: r.i64("hour")?,
                    event: event_of(&r.string("event")?)?,
                    events: r.i64("events")?.max(0) as u64,
                    devices: r.i64("devices")?.max(0) as u64,
                })
            })
        })
    }

    async fn report_devices(
        &self,
        package_id: PackageId,
        events: Vec<ReportEvent>,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Sketch> {
        work!(read, self, |tx| {
            let mut union = Sketch::new();
            for e in &events {
                let rows = tx
                    .rows(
                        "SELECT sketch FROM report_hours \
                         WHERE package_id = $1 AND event = $2 AND hour >= $3 AND hour <= $4",
                        args![package_id, e.as_str(), from_hour, to_hour],
                    )
                    .await?;
                for r in &rows {
                    union.merge(&sketch_of(&r.string("sketch")?)?);
                }
            }
            Ok(union)
        })
    }

    async fn staged_plans(&self) -> Result<Vec<StagedPlan>> {
        work!(read, self, |tx| {
            let rows = tx
                .rows(
                    "SELECT p.app_id, a.name AS app_name, p.package_id, p.version, \
                       p.staged_percent, p.stage_plan, \
                       (SELECT o.package_id FROM packages o WHERE o.app_id = p.app_id \
                          AND o.state IN ('online', 'rolling_back')) AS online \
                     FROM packages p JOIN apps a ON a.app_id = p.app_id \
                     WHERE p.state = 'audit_passed' AND p.staged_percent IS NOT NULL \
                     ORDER BY p.package_id",
                    args![],
                )
                .await?;
            super::decode(rows, |r| {
                Ok(StagedPlan {
                    app_id: r.id("app_id")?,
                    app_name: r.string("app_name")?,
                    package_id: r.id("package_id")?,
                    version: r.string("version")?,
                    staged_percent: r.i64("staged_percent")?,
                    online: r.opt_id("online")?,
                    plan: r
                        .opt_string("stage_plan")?
                        .map(|t| StagePlan::from_text(&t))
                        .transpose()
                        .map_err(StoreError::Corrupt)?,
                })
            })
        })
    }
}
