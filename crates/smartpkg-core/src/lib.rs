//! The pure domain of smartpkg: no I/O, no clock, no randomness.
//!
//! - [`lifecycle`]: the package state machine, every rule of the Baidu lifecycle.
//! - [`ext`]: parsing `ext_json` at upload and merging it with a template at build.
//! - [`archive`]: template archive limits and checks, and the full package archive.
//! - [`audit_rules`]: the automatic (sandbox) audit's rules.

pub mod archive;
pub mod audit_rules;
pub mod dialect;
pub mod ext;
pub mod health;
pub mod ids;
pub mod lifecycle;
pub mod push;
pub mod review;
pub mod runtime;
pub mod sketch;
pub mod stage;
pub mod text;
