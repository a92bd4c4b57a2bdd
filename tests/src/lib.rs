//! Helpers for the workspace-level tests: backends to run against (embedded and moto),
//! and an in-process app built from every router.

pub mod app;
pub mod backends;
pub mod counting;
pub mod faults;
pub mod moto;
