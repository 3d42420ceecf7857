//! The outbox and deliveries: events to third parties, their deliveries and attempts, and the
//! push targets' failure runs and holds.
//!
//! Serialisation contract: an attempt's log, the delivery's new state, its push job and its
//! target's failure run commit together (`record_attempt`); a target's failure count is
//! incremented by one statement (`… + 1 RETURNING`), so concurrent attempts on one target
//! count every failure once. `redeliver` is serialised per delivery (one push job each).

use async_trait::async_trait;
use serde::Serialize;
use smartpkg_core::ids::{AppId, PackageId, TpId};

use crate::Result;

/// Where an event goes: the third party's message-and-event URL (audit results) or its
/// authorization-event URL (tickets and authorization changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Event,
    Auth,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Event => "event",
            Channel::Auth => "auth",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Channel::Event, Channel::Auth]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// The name of the TP field holding this channel's URL.
    pub fn url_field(self) -> &'static str {
        match self {
            Channel::Event => "event_url",
            Channel::Auth => "auth_event_url",
        }
    }

    /// The channel an event travels on.
    pub fn of(columns: &smartpkg_core::push::EventColumns) -> Channel {
        if columns.to_auth_url {
            Channel::Auth
        } else {
            Channel::Event
        }
    }
}

/// An event to a third party, as stored: the wire JSON is rendered from these fields, so it
/// is identical on every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub event_id: i64,
    pub uid: String,
    pub tp_id: TpId,
    /// The app concerned; 0 for a ticket, which concerns the third party alone.
    pub app_id: AppId,
    /// The package of an audit result; None for tickets and authorization events.
    pub package_id: Option<PackageId>,
    pub event: String,
    pub reason: Option<String>,
    pub package_version: String,
    pub created_at_ms: i64,
    pub channel: Channel,
    /// The plain JSON of pushes that are not package audit results (tickets).
    pub payload: Option<String>,
}

impl EventRecord {
    /// The event this record keeps, typed; a record that does not read back is corrupt.
    pub fn typed(&self) -> Result<smartpkg_core::push::Event, crate::StoreError> {
        smartpkg_core::push::Event::from_columns(
            &self.event,
            self.package_id.map(PackageId::get),
            self.reason.as_deref(),
            &self.package_version,
            self.payload.as_deref(),
        )
        .map_err(|why| crate::StoreError::Corrupt(format!("event {}: {why}", self.event_id)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub at_ms: i64,
    pub url: String,
    /// The HTTP status, when a response came.
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The first bytes of the response body.
    pub body: Option<String>,
    /// The dialect the push was written in for this attempt.
    #[serde(default)]
    pub dialect: smartpkg_core::dialect::Dialect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub delivery_id: i64,
    pub event: EventRecord,
    pub tp_id: TpId,
    pub url: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub cycle_attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

/// What happens after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this time.
    RetryAt(i64),
    /// No attempts left.
    GaveUp,
}

/// How a push attempt reflects on its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetVerdict {
    Succeeded,
    Failed {
        hold: smartpkg_core::push::HoldPolicy,
    },
}

/// A push target (a third party) as the circuit breaker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushTarget {
    pub tp_id: TpId,
    pub consecutive_failures: i64,
    pub failing_since_ms: Option<i64>,
    /// While in the future, no delivery to this target is attempted.
    pub hold_until_ms: Option<i64>,
    /// How many times the target was put on hold.
    pub holds: i64,
    pub last_error: Option<String>,
}

/// Storage of the outbox, deliveries and push targets. What a backend must serialise is the module's contract (above):
/// every backend meets it, and `conformance` checks it.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// A delivery with its event.
    async fn get_delivery(&self, delivery_id: i64) -> Result<Option<Delivery>>;

    /// Deliveries, newest first, optionally of one TP and in one state.
    async fn list_deliveries(
        &self,
        tp_id: Option<TpId>,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>>;

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>>;

    /// Logs an attempt and settles the delivery, its push job and its target's failure run in
    /// one transaction. Returns the end of the hold this attempt put the target on, if any.
    async fn record_attempt(
        &self,
        job: crate::JobRef,
        delivery_id: i64,
        attempt: AttemptRecord,
        outcome: AttemptOutcome,
        target: TargetVerdict,
    ) -> Result<Option<i64>>;

    /// Replays a delivery on purpose: pending again, a fresh retry schedule, a push job now,
    /// and its target's hold lifted for the attempt.
    async fn redeliver(&self, delivery_id: i64, now_ms: i64) -> Result<()>;

    /// Every push target with a failure record.
    async fn push_targets(&self) -> Result<Vec<PushTarget>>;

    /// Ends a target's hold and failure run (an operator's decision); true for every known
    /// third party (one never pushed to has nothing to end), false for an unknown one.
    async fn resume_target(&self, tp_id: TpId) -> Result<bool>;
}
