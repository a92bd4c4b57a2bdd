//! Every key of the single table, in one place. docs/data-model.md describes the layout;
//! keep the two in step.
//!
//! | item | pk | sk | gsi1 |
//! |---|---|---|---|
//! | user profile | `USER#<user>` | `PROFILE` | `USERS#<bucket>` / unameview |
//! | username claim | `USERNAME#<unameview>` | `USERNAME` | |
//! | address | `USER#<user>` | `ADDR#<address id>` | `ADDRS#<bucket>` / addrview |
//! | address claim | `ADDRESS#<addrview>` | `ADDRESS` | |
//! | mailbox | `USER#<user>` | `MBOX#<mailbox>` | |
//! | mailbox path claim | `USER#<user>` | `MPATH#<path>` | |
//! | authlog entry | `USER#<user>` | `AUTHLOG#<id>` | |
//! | journal sequence | `USER#<user>` | `JSEQ` | |
//! | journal event | `JOURNAL#<user>` | `<seq, 20 digits>` | |
//! | deleted user (purge task) | `DELETED#<user>` | `DELETED` | `TASKS` / `<due>#<user>` |
//! | global counters | `STATS#<shard>` | `STATS` | |
//! | application-specific password | `USER#<user>` | `ASP#<asp>` | |
//! | used TOTP code (replay guard) | `USER#<user>` | `TOTPUSED#<step>#<code>` | |
//! | failed-attempt window | `RATE#<subject>` | `W#<window number>` | |
//! | brute-force lock | `RATE#<subject>` | `LOCK` | |

use crate::id::ObjectId;
use crate::store::{IndexKey, Key};

pub fn user_pk(user: &ObjectId) -> String {
    format!("USER#{user}")
}

pub fn user(user: &ObjectId) -> Key {
    Key::new(user_pk(user), "PROFILE")
}

pub const USERS_BUCKET_PREFIX: &str = "USERS#";
pub const ADDRS_BUCKET_PREFIX: &str = "ADDRS#";

pub fn users_listing(unameview: &str) -> IndexKey {
    let bucket = crate::http::paging::bucket_of(unameview);
    IndexKey::new(format!("{USERS_BUCKET_PREFIX}{bucket}"), unameview)
}

pub fn username_claim(unameview: &str) -> Key {
    Key::new(format!("USERNAME#{unameview}"), "USERNAME")
}

pub const ADDRESS_SK_PREFIX: &str = "ADDR#";

pub fn address(user: &ObjectId, address: &ObjectId) -> Key {
    Key::new(user_pk(user), format!("{ADDRESS_SK_PREFIX}{address}"))
}

pub fn addresses_listing(addrview: &str) -> IndexKey {
    let bucket = crate::http::paging::bucket_of(addrview);
    IndexKey::new(format!("{ADDRS_BUCKET_PREFIX}{bucket}"), addrview)
}

pub fn address_claim(addrview: &str) -> Key {
    Key::new(format!("ADDRESS#{addrview}"), "ADDRESS")
}

pub const MAILBOX_SK_PREFIX: &str = "MBOX#";

pub fn mailbox(user: &ObjectId, mailbox: &ObjectId) -> Key {
    Key::new(user_pk(user), format!("{MAILBOX_SK_PREFIX}{mailbox}"))
}

pub fn mailbox_path_claim(user: &ObjectId, path: &str) -> Key {
    Key::new(user_pk(user), format!("MPATH#{path}"))
}

pub const AUTHLOG_SK_PREFIX: &str = "AUTHLOG#";

pub fn authlog(user: &ObjectId, entry: &ObjectId) -> Key {
    Key::new(user_pk(user), format!("{AUTHLOG_SK_PREFIX}{entry}"))
}

pub fn journal_sequence(user: &ObjectId) -> Key {
    Key::new(user_pk(user), "JSEQ")
}

pub fn journal_pk(user: &ObjectId) -> String {
    format!("JOURNAL#{user}")
}

pub fn journal_event(user: &ObjectId, seq: i64) -> Key {
    Key::new(journal_pk(user), format!("{seq:020}"))
}

pub const TASKS_PK: &str = "TASKS";

pub fn deleted_user(user: &ObjectId) -> Key {
    Key::new(format!("DELETED#{user}"), "DELETED")
}

pub fn purge_task(due_unix: i64, user: &ObjectId) -> IndexKey {
    IndexKey::new(TASKS_PK, format!("{due_unix:012}#{user}"))
}

/// Shards of the global counters: spreading their writes keeps concurrent sign-ups from
/// contending on one item.
pub const STATS_SHARDS: u32 = 16;

pub fn stats(shard: u32) -> Key {
    Key::new(format!("STATS#{shard:02}"), "STATS")
}

pub const ASP_SK_PREFIX: &str = "ASP#";

pub fn asp(user: &ObjectId, asp: &ObjectId) -> Key {
    Key::new(user_pk(user), format!("{ASP_SK_PREFIX}{asp}"))
}

/// A TOTP code accepted for time step `step`; exists (with a TTL) while the code could still
/// verify, so the same code is never accepted twice.
pub fn totp_used(user: &ObjectId, step: u64, code: &str) -> Key {
    Key::new(user_pk(user), format!("TOTPUSED#{step:012}#{code}"))
}

/// The partition of one brute-force subject: `user:<id>`, `totp:<id>` or `name:<login view>`.
pub fn rate_pk(subject: &str) -> String {
    format!("RATE#{subject}")
}

/// Failed attempts of a subject in window number `window` (unix time / window length).
pub fn rate_window(subject: &str, window: i64) -> Key {
    Key::new(rate_pk(subject), format!("W#{window:012}"))
}

/// The lock of a subject: while it lives, attempts are refused without checking anything.
pub fn rate_lock(subject: &str) -> Key {
    Key::new(rate_pk(subject), "LOCK")
}
