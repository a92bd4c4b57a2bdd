//! Every key of the single table, in one place. docs/data-model.md describes the layout;
//! keep the two in step.
//!
//! | item | pk | sk | gsi1 |
//! |---|---|---|---|
//! | user profile | `USER#<user>` | `PROFILE` | `USERS#<bucket>` / unameview |
//! | username claim | `USERNAME#<unameview>` | `USERNAME` | |
//! | address | `USER#<user>` | `ADDR#<address>` | `ADDRS#<bucket>` / addrview |
//! | address claim | `ADDRESS#<addrview>` | `ADDRESS` | |
//! | mailbox | `USER#<user>` | `MBOX#<mailbox>` | |
//! | mailbox path claim | `USER#<user>` | `MPATH#<path>` | |
//! | authlog entry | `USER#<user>` | `AUTHLOG#<id>` | |
//! | journal sequence | `USER#<user>` | `JSEQ` | |
//! | journal event | `JOURNAL#<user>` | `<seq, 20 digits>` | |
//! | deleted user (purge task) | `DELETED#<user>` | `DELETED` | `TASKS` / `<due>#<user>` |
//! | global counters | `STATS#<shard>` | `STATS` | |

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
