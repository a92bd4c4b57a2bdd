//! Mail: what Eider knows about the content of a message, computed from its raw RFC 822 bytes.
//!
//! * [`parse`]: one raw message in, everything the API shows out (addresses, subject, intro,
//!   text, html, attachments with their byte ranges, thread references, search terms).
//!   Pure functions, no I/O and no storage: the message store calls them at ingest and when
//!   it needs details again.
//! * [`encrypt`]: PGP/MIME (RFC 3156) encryption of a raw message to a user's public key.
//! * [`outbound`]: sending mail out (autoreplies, forwards): SES, an SMTP relay, or an outbox
//!   folder.

pub mod encrypt;
pub mod outbound;
pub mod parse;
