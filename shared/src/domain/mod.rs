//! WildDuck's rules, written once above the storage port. One module per aggregate; each
//! owns its items' keys (see [`keys`]) and the transactions that keep them consistent.

pub mod address_register;
pub mod addresses;
pub mod archive;
pub mod asps;
pub mod audit;
pub mod auth;
pub mod authlog;
pub mod autoreply;
pub mod compose;
pub mod connections;
pub mod data_export;
#[cfg(feature = "delivery")]
pub mod delivery;
#[cfg(feature = "dkim")]
pub mod dkim;
pub mod domain_access;
pub mod domain_aliases;
#[cfg(feature = "dkim")]
pub mod domain_rename;
pub mod error;
pub mod filters;
pub mod forwarded;
pub mod health;
pub mod janitor;
pub mod journal;
pub mod keys;
pub mod mailbox_names;
pub mod mailboxes;
pub mod messages;
pub mod names;
pub mod outgoing;
pub mod paging;
pub mod password;
pub mod quota_all;
pub mod ratelimit;
pub mod retry;
pub mod search;
pub mod search_apply;
pub mod settings;
pub mod state;
pub mod stats;
pub mod storage;
pub mod tokens;
pub mod totp;
pub mod updates;
pub mod users;
#[cfg(feature = "delivery")]
pub mod webhook_send;
pub mod webhook_url;
pub mod webhooks;

pub use error::{DomainError, DomainResult};
pub use state::{AppState, SearchWrites, StateParts};

/// Now as unix seconds (TTL attributes, expiry maths).
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
