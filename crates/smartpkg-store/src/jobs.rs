//! Jobs: durable work with leases, claimed by lanes, plus shared schedules and the janitor.
//!
//! Serialisation contract: a due job is claimed by exactly one worker across every instance
//! (`FOR UPDATE SKIP LOCKED`, or a single writer) and leased until `lease_ms` from the claim;
//! per-target caps count leased push jobs at claim time. `take_schedule` moves a schedule
//! forward for exactly one caller per interval (one conditional update).

use async_trait::async_trait;
use serde::Serialize;
use smartpkg_core::ids::PackageId;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: i64,
    pub kind: smartpkg_core::lifecycle::JobKind,
    pub package_id: PackageId,
    /// Set for push jobs.
    pub delivery_id: Option<i64>,
    pub attempts: i64,
    /// A push to a target in a failing run (it runs in the lane's share for such targets).
    pub degraded: bool,
    /// This claim's lease token: completing, retrying or dropping the job needs it, so a
    /// worker whose lease ran out (and whose job another worker took) changes nothing.
    pub lease: i64,
}

impl Job {
    pub fn lease_ref(&self) -> JobRef {
        JobRef {
            job_id: self.job_id,
            lease: self.lease,
        }
    }
}

/// A claimed job as its worker refers to it when settling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRef {
    pub job_id: i64,
    pub lease: i64,
}

/// Which jobs a worker pool claims: platform work (builds, rollbacks, audits) and deliveries
/// never wait for each other's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Platform,
    /// Pushes, at most `per_target` in flight per third party across all instances (one for
    /// a target in a failing run or never yet answered), and at most `failing_slots` newly
    /// claimed for those.
    Deliveries {
        per_target: usize,
        failing_slots: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneKind {
    Platform,
    Deliveries,
}

/// What the janitor keeps and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPolicy {
    /// Used codes and used refresh tokens are kept this long after their use.
    pub used_credential_retention_ms: i64,
    /// Retired packages keep their inputs this long after they were retired.
    pub retired_package_retention_ms: i64,
    /// Hourly report aggregates are kept this long.
    pub report_retention_ms: i64,
}

/// What one janitor run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub codes: u64,
    pub tickets: u64,
    pub tokens: u64,
    pub packages_trimmed: u64,
    /// Expired console sessions.
    pub sessions: u64,
    /// Hourly report aggregates past their retention.
    pub report_hours: u64,
}

/// Periodic work shared by every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    TicketPush,
    Janitor,
    /// Judging staged releases' plans.
    HealthEval,
}

impl Schedule {
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::TicketPush => "ticket_push",
            Schedule::Janitor => "janitor",
            Schedule::HealthEval => "health_eval",
        }
    }
}

/// Storage of jobs, schedules and the janitor. What a backend must serialise is the module's contract (above):
/// every backend meets it, and `conformance` checks it.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Leases up to `limit` due jobs of `lane` for `lease_ms`. Deliveries of a target on hold
    /// are not claimed; per target, leased and newly claimed pushes stay within the cap.
    async fn claim_jobs(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
        lane: Lane,
    ) -> Result<Vec<Job>>;

    /// Removes a job that has nothing left to do.
    async fn drop_job(&self, job: JobRef) -> Result<()>;

    /// Gives a job back to run again at `run_at_ms`, recording why.
    async fn retry_job(&self, job: JobRef, run_at_ms: i64, error: String) -> Result<()>;

    /// When the earliest job of the lane is due, if any.
    async fn next_job_due(&self, lane: LaneKind) -> Result<Option<i64>>;

    /// True for the one caller that moves schedule `name` from due to `now_ms + interval_ms`.
    async fn take_schedule(
        &self,
        schedule: Schedule,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<bool>;

    /// Deletes expired and long-used codes, tickets and tokens, and trims packages that can
    /// never come back (see [`SweepPolicy`]).
    async fn sweep(&self, now_ms: i64, policy: SweepPolicy) -> Result<Swept>;
}
