//! Mail: what Eider knows about the content of a message, computed from its raw RFC 822 bytes.
//!
//! * [`parse`]: one raw message in, everything the API shows out (addresses, subject, intro,
//!   text, html, attachments with their byte ranges, thread references, search terms).
//!   Pure functions, no I/O and no storage: the message store calls them at ingest and when
//!   it needs details again.
//! * [`encrypt`]: PGP/MIME (RFC 3156) encryption of a raw message to a user's public key;
//!   [`pgp_key`]: validating such a key.
//! * [`compose`]: building a message from fields (uploads and submissions).
//! * [`outbound`]: sending mail out (autoreplies, forwards): SES, an SMTP relay, or an outbox
//!   folder.

pub mod compose;
#[cfg(feature = "pgp")]
pub mod encrypt;
#[cfg(feature = "delivery")]
pub mod outbound;
pub mod parse;
#[cfg(feature = "pgp")]
pub mod pgp_key;

/// What WildDuck reports about a user's PGP key (`keyInfo` in `GET /users/{user}`), as
/// [`pgp_key`] reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    /// Display name from the key's first user ID; may be empty.
    pub name: String,
    /// Normalized e-mail address from the key's first user ID; may be empty.
    pub address: String,
    /// Primary key fingerprint, lowercase hex without separators.
    pub fingerprint: String,
}
