//! Helpers for the workspace-level tests: backends to run against (embedded and moto),
//! an in-process app built from every router, and a client for the updates stream.

pub mod app;
pub mod backends;
pub mod counting;
pub mod faults;
pub mod lmtp_client;
pub mod moto;
pub mod sinks;
pub mod sse;
