//! Eider's common crate: everything the Lambda functions and the local server share.
//!
//! * [`store`]: the storage port (single table + blobs) and its two backends.
//! * [`mail`]: message content: parsing raw RFC 822 messages, PGP/MIME encryption.
//! * [`domain`]: WildDuck's rules, written once above the port (users, addresses, ...).
//! * [`http`]: the HTTP plumbing every router uses: state, parameters, validation, errors,
//!   the finishing layer (access token, tracing, body limit, JSON 404).
//! * [`config`]: configuration read once from the environment; [`time`]: timestamps as
//!   WildDuck's clients read them; [`tls`]: whom outgoing HTTPS trusts.

pub mod config;
pub mod domain;
pub mod http;
pub mod id;
pub mod mail;
pub mod store;
pub mod time;
pub mod tls;

/// An error with its causes, `outer: inner: innermost`, for logs and failure reasons.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
