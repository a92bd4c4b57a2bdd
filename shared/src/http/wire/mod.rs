//! WildDuck's wire format, one module per aggregate: requests validated into the domain's
//! commands (with WildDuck's messages), and the domain's results answered as WildDuck's JSON.

pub mod addresses;
pub mod audit;
pub mod auth;
pub mod authlog;
pub mod autoreply;
pub mod data_export;
#[cfg(feature = "dkim")]
pub mod dkim;
pub mod domain_access;
pub mod domain_aliases;
pub mod filters;
pub mod forwarded;
pub mod mailboxes;
pub mod messages;
pub mod outgoing;
pub mod settings;
pub mod updates;
pub mod users;
pub mod webhooks;
