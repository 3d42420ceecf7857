//! Storage for smartpkg: the [`Store`] trait — one trait per aggregate, each documenting what
//! a backend must serialise — with its row types, the conformance suite every backend runs,
//! and the content-addressed [`blobs`] store. The backends are their own crates
//! (`smartpkg-store-sqlite`, `smartpkg-store-postgres`).
//!
//! The traits speak in domain terms (upload, execute a command, claim jobs), not SQL, so each
//! backend joins with its own statements. Every decision is taken inside the backend's
//! transaction by calling [`smartpkg_core::lifecycle::decide`] on a snapshot read in that same
//! transaction. The `smartpkg-storage` crate opens a backend from a URL.

mod auth;
pub mod blobs;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod console;
mod deliveries;
pub mod health;
mod jobs;
mod library;
mod packages;
pub mod rows;
pub mod runtime;
pub mod sql;
mod tenants;

pub use auth::*;
pub use console::*;
pub use deliveries::*;
pub use health::{HealthStore, ReportCell, ReportHour, StagedPlan};
pub use jobs::*;
pub use library::*;
pub use packages::*;
pub use rows::Columns;
pub use runtime::{
    Domains, DomainsEdit, HostApp, RuntimePackage, RuntimeSettings, RuntimeStore, RuntimeView,
    SettingsEdit,
};
pub use tenants::*;

/// The cause of a storage failure, kept as the error itself (its chain stays inspectable).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (or could not be reached); the cause is kept.
    #[error("database error: {0}")]
    Database(#[source] Cause),
    /// A concurrent decision changed what this one read, or the database was busy; the caller
    /// may retry.
    #[error("concurrent update: {0}")]
    Conflict(#[source] Cause),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid stored data: {0}")]
    Corrupt(String),
    #[error("the data directory is in use by another smartpkg process: {0}")]
    Locked(String),
    /// The database cannot be reached right now (down, restarting, pool exhausted); the call
    /// may be retried later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The job's lease ran out and another worker holds it now: nothing was changed.
    #[error("the lease of job {0} was lost to another worker")]
    LeaseLost(i64),
    /// The database URL names something this build cannot open.
    #[error("{0}")]
    Unsupported(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// A failure described in words (no underlying error value to keep).
    pub fn database(msg: impl Into<String>) -> Self {
        StoreError::Database(msg.into().into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        StoreError::Conflict(msg.into().into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything a server needs from storage: every aggregate's trait.
pub trait Store:
    TenantStore
    + AuthStore
    + LibraryStore
    + PackageStore
    + DeliveryStore
    + JobStore
    + RuntimeStore
    + ConsoleStore
    + HealthStore
    + 'static
{
}

impl<T> Store for T where
    T: TenantStore
        + AuthStore
        + LibraryStore
        + PackageStore
        + DeliveryStore
        + JobStore
        + RuntimeStore
        + ConsoleStore
        + HealthStore
        + 'static
{
}

/// The traits, for callers holding a `dyn Store`.
pub mod prelude {
    pub use crate::{
        AuthStore, ConsoleStore, DeliveryStore, JobStore, LibraryStore, PackageStore, RuntimeStore,
        Store, TenantStore,
    };
}
