//! Every key of the single table, in one place. docs/data-model.md describes the layout;
//! keep the two in step.
//!
//! | item | pk | sk | gsi1 |
//! |---|---|---|---|
//! | user profile | `USER#<user>` | `PROFILE` | `USERS#<bucket>` / unameview |
//! | username claim | `USERNAME#<unameview>` | `USERNAME` | |
//! | address | `USER#<user>` | `ADDR#<address id>` | `ADDRS#<bucket>` / addrview |
//! | address claim | `ADDRESS#<addrview>` | `ADDRESS` | |
//! | forwarded address | `FORWARDED#<id>` | `FORWARDED` | |
//! | domain alias, and its id pointer | `DOMAINALIASES` | `ALIAS#<alias>`, `ID#<id>` | |
//! | health probe | `HEALTH` | `<probe id>` | |
//! | DKIM key, and its id pointer | `DKIMKEYS` | `DOMAIN#<domain>`, `ID#<id>` | |
//! | setting | `SETTINGS` | `<key>` | |
//! | address register entry | `USER#<user>` | `AREG#<addrview>` | |
//! | quota recount of every user (task) | `QUOTARESET#<task>` | `QUOTARESET` | `TASKS` / `<due>#QUOTA#<task>` |
//! | domain access entry, and its id pointer | `DOMAINACCESS#<tag>`, `DOMAINACCESSID#<id>` | `<domain>`, `DOMAINACCESSID` | |
//! | mailbox | `USER#<user>` | `MBOX#<mailbox>` | |
//! | mailbox path claim | `USER#<user>` | `MPATH#<path>` (over 512 bytes: `MPATHH#<sha256>`) | |
//! | authlog entry | `USER#<user>` | `AUTHLOG#<id>` | |
//! | journal sequence | `USER#<user>` | `JSEQ` | |
//! | journal event | `JOURNAL#<user>` | `<seq, 20 digits>` | |
//! | WebSocket connection | `WSCONN#<user>` | `<connection id>` | |
//! | WebSocket connection owner | `WSOWNER#<connection id>` | `WSOWNER` | |
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
    let bucket = crate::domain::paging::bucket_of(unameview);
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
    let bucket = crate::domain::paging::bucket_of(addrview);
    IndexKey::new(format!("{ADDRS_BUCKET_PREFIX}{bucket}"), addrview)
}

pub fn address_claim(addrview: &str) -> Key {
    Key::new(format!("ADDRESS#{addrview}"), "ADDRESS")
}

pub const MAILBOX_SK_PREFIX: &str = "MBOX#";

pub fn mailbox(user: &ObjectId, mailbox: &ObjectId) -> Key {
    Key::new(user_pk(user), format!("{MAILBOX_SK_PREFIX}{mailbox}"))
}

/// Paths longer than this (in bytes) are claimed by their SHA-256: a sort key holds at most
/// 1,024 bytes, and WildDuck's paths may be far longer (128 levels of 512 characters).
const LONG_PATH_BYTES: usize = 512;

pub fn mailbox_path_claim(user: &ObjectId, path: &str) -> Key {
    if path.len() > LONG_PATH_BYTES {
        use sha2::{Digest, Sha256};
        let digest: String = Sha256::digest(path.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        return Key::new(user_pk(user), format!("MPATHH#{digest}"));
    }
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

/// What every journal partition key starts with (the stream bridge keeps only these records).
pub const JOURNAL_PK_PREFIX: &str = "JOURNAL#";

/// The partition of a user's open WebSocket connections: one `Query` finds whom to push to.
pub fn ws_connections_pk(user: &ObjectId) -> String {
    format!("WSCONN#{user}")
}

/// One open WebSocket connection of `user`, by its API Gateway connection id.
pub fn ws_connection(user: &ObjectId, connection: &str) -> Key {
    Key::new(ws_connections_pk(user), connection.to_string())
}

/// The user a connection belongs to: `$disconnect` knows only the connection id.
pub fn ws_connection_owner(connection: &str) -> Key {
    Key::new(format!("WSOWNER#{connection}"), "WSOWNER")
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

// ---------------------------------------------------------------------------------------------
// The mail store

/// The partition of one mailbox's messages, sorted by UID.
pub fn messages_pk(user: &ObjectId, mailbox: &ObjectId) -> String {
    format!("MSGS#{user}#{mailbox}")
}

pub fn message(user: &ObjectId, mailbox: &ObjectId, uid: u32) -> Key {
    Key::new(messages_pk(user, mailbox), message_sk(uid))
}

/// UIDs zero-padded so key order is UID order.
pub fn message_sk(uid: u32) -> String {
    format!("{uid:010}")
}

/// Where a message (by its object id) lives now: mailbox and UID.
pub fn message_pointer(user: &ObjectId, message: &ObjectId) -> Key {
    Key::new(message_pointers_pk(user), message.to_string())
}

/// The partition of all of a user's message pointers.
pub fn message_pointers_pk(user: &ObjectId) -> String {
    format!("MSGID#{user}")
}

/// Flagged messages outside Junk and Trash, newest first.
pub fn flagged_listing(user: &ObjectId, message: &ObjectId) -> IndexKey {
    IndexKey::new(format!("FLAGGED#{user}"), message.to_string())
}

pub fn flagged_pk(user: &ObjectId) -> String {
    format!("FLAGGED#{user}")
}

pub fn archive_pk(user: &ObjectId) -> String {
    format!("ARCHIVE#{user}")
}

pub fn archived(user: &ObjectId, message: &ObjectId) -> Key {
    Key::new(archive_pk(user), message.to_string())
}

/// Shards of the purge schedule (gsi2), so expiring messages don't all land on one key.
pub const PURGE_SHARDS: u32 = 16;

/// The purge schedule entry of an item that must go at `due_unix` (gsi2).
pub fn purge_entry(due_unix: i64, item: &Key) -> IndexKey {
    let shard = purge_shard(item);
    IndexKey::new(
        purge_pk(shard),
        format!("{due_unix:012}#{}#{}", item.pk, item.sk),
    )
}

pub fn purge_pk(shard: u32) -> String {
    format!("PURGE#{shard:02}")
}

/// A stable shard per item (FNV-1a of its key).
fn purge_shard(item: &Key) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in item.pk.bytes().chain(item.sk.bytes()) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash % PURGE_SHARDS
}

/// One search term of one message: `TERM#<user>#<term>` / message id.
pub fn search_term(user: &ObjectId, term: &str, message: &ObjectId) -> Key {
    Key::new(search_term_pk(user, term), message.to_string())
}

pub fn search_term_pk(user: &ObjectId, term: &str) -> String {
    format!("TERM#{user}#{term}")
}

/// The pointer to the committed generation of a user's text index in the blob store
/// (`store::blob_text_index`).
pub fn search_index(user: &ObjectId) -> Key {
    Key::new(format!("SEARCHINDEX#{user}"), "POINTER")
}

/// A thread reference (hashed Message-ID / References entry) with a hashed normalized subject.
pub fn thread_ref(user: &ObjectId, reference: &str, subject_hash: &str) -> Key {
    Key::new(
        format!("THREADREF#{user}#{reference}"),
        subject_hash.to_string(),
    )
}

/// An upload's `Idempotency-Key`, remembered for a day.
pub fn idempotency(user: &ObjectId, key_hash: &str) -> Key {
    Key::new(format!("IDEMP#{user}#{key_hash}"), "IDEMP")
}

/// The timeline of one message (STORE, FORWARD, AUTOREPLY...).
pub fn message_event(user: &ObjectId, message: &ObjectId, event: &ObjectId) -> Key {
    Key::new(message_events_pk(user, message), event.to_string())
}

pub fn message_events_pk(user: &ObjectId, message: &ObjectId) -> String {
    format!("MSGEV#{user}#{message}")
}

/// A deleted mailbox whose messages still have to be archived (a janitor task, gsi1).
pub fn deleted_mailbox(user: &ObjectId, mailbox: &ObjectId) -> Key {
    Key::new(format!("MBOXDEL#{user}#{mailbox}"), "MBOXDEL")
}

pub fn mailbox_task(due_unix: i64, user: &ObjectId, mailbox: &ObjectId) -> IndexKey {
    IndexKey::new(TASKS_PK, format!("{due_unix:012}#MBOX#{user}#{mailbox}"))
}

/// A restore of archived messages by date range (`POST /users/{user}/archived/restore`), a
/// janitor task on gsi1 until it is done.
pub fn restore_task(user: &ObjectId, task: &ObjectId) -> Key {
    Key::new(format!("{RESTORE_TASK_PK_PREFIX}{user}#{task}"), "RESTORE")
}

pub fn restore_task_entry(due_unix: i64, user: &ObjectId, task: &ObjectId) -> IndexKey {
    IndexKey::new(TASKS_PK, format!("{due_unix:012}#RESTORE#{user}#{task}"))
}

/// A folder being emptied in the background (`DELETE .../messages?async=true`).
pub fn clear_task(user: &ObjectId, mailbox: &ObjectId) -> Key {
    Key::new(
        format!("{CLEAR_TASK_PK_PREFIX}{user}#{mailbox}"),
        "CLEARBOX",
    )
}

pub fn clear_task_entry(due_unix: i64, user: &ObjectId, mailbox: &ObjectId) -> IndexKey {
    IndexKey::new(TASKS_PK, format!("{due_unix:012}#CLEAR#{user}#{mailbox}"))
}

/// An action applied to every match of a search (`POST /users/{user}/search`).
pub fn search_task(user: &ObjectId, task: &ObjectId) -> Key {
    Key::new(
        format!("{SEARCH_TASK_PK_PREFIX}{user}#{task}"),
        "SEARCHAPPLY",
    )
}

pub fn search_task_entry(due_unix: i64, user: &ObjectId, task: &ObjectId) -> IndexKey {
    IndexKey::new(TASKS_PK, format!("{due_unix:012}#SEARCH#{user}#{task}"))
}

/// A queued outgoing mail (`domain::outgoing`).
pub fn outbound(user: &ObjectId, queue: &ObjectId) -> Key {
    Key::new(format!("{OUTBOUND_PK_PREFIX}{user}"), queue.to_string())
}

pub fn outbound_pk(user: &ObjectId) -> String {
    format!("{OUTBOUND_PK_PREFIX}{user}")
}

/// The janitor's entry of a queued mail, due at its send time (or its next attempt).
pub fn outbound_task(due_unix: i64, user: &ObjectId, queue: &ObjectId) -> IndexKey {
    IndexKey::new(TASKS_PK, format!("{due_unix:012}#SEND#{user}#{queue}"))
}

/// Recipients sent to in one UTC day (`<unix day>`), for the daily limit.
pub fn send_limit(user: &ObjectId, day: i64) -> Key {
    Key::new(format!("SENDLIMIT#{user}"), format!("W#{day:08}"))
}

/// Blob key of a message's raw source.
pub fn message_blob(user: &ObjectId, message: &ObjectId) -> String {
    format!("messages/{user}/{message}.eml")
}

/// The marker of a message blob written before its message is committed: the commit deletes
/// it; the janitor removes the blob of one still there when it is due (a crashed upload).
pub fn pending_blob(user: &ObjectId, message: &ObjectId) -> Key {
    Key::new(
        format!("{PENDING_BLOB_PK_PREFIX}{user}"),
        message.to_string(),
    )
}

// ---------------------------------------------------------------------------------------------
// Delivery: filters, autoreply, forwards

pub const FILTER_SK_PREFIX: &str = "FILTER#";

/// A message filter; its id orders a user's filters (creation order = application order).
pub fn filter(user: &ObjectId, filter: &ObjectId) -> Key {
    Key::new(user_pk(user), format!("{FILTER_SK_PREFIX}{filter}"))
}

/// The user's autoreply settings (one per user).
pub fn autoreply(user: &ObjectId) -> Key {
    Key::new(user_pk(user), "AUTOREPLY")
}

/// "An autoreply went to this sender": lives (TTL) for the autoreply interval, so a sender
/// gets at most one reply per interval. `sender_hash` is the hex SHA-256 of the lowercased
/// address.
pub fn autoreply_sent(user: &ObjectId, sender_hash: &str) -> Key {
    Key::new(format!("ARSENT#{user}"), sender_hash.to_string())
}

/// One delivery of one incoming message (by its source id, e.g. the SES message id) to one
/// user, remembered for a day so a retried invocation delivers once.
pub fn delivery(user: &ObjectId, delivery_hash: &str) -> Key {
    Key::new(format!("DELIVERY#{user}#{delivery_hash}"), "DELIVERY")
}

/// A listing position too long for a cursor token, kept a day (`domain::paging`).
pub fn stored_cursor(name: &str) -> Key {
    Key::new(format!("CURSOR#{name}"), "CURSOR")
}

// ---------------------------------------------------------------------------------------------
// The janitor's queues

/// Prefixes the janitor reads back from its queues (gsi2 `PURGE#`, gsi1 `TASKS`) to tell the
/// kinds of item apart.
pub const MESSAGES_PK_PREFIX: &str = "MSGS#";
pub const ARCHIVE_PK_PREFIX: &str = "ARCHIVE#";
pub const PENDING_BLOB_PK_PREFIX: &str = "BLOBPEND#";
pub const DELETED_USER_PK_PREFIX: &str = "DELETED#";
pub const DELETED_MAILBOX_PK_PREFIX: &str = "MBOXDEL#";
pub const RESTORE_TASK_PK_PREFIX: &str = "RESTORE#";
pub const OUTBOUND_PK_PREFIX: &str = "OUTBOUND#";
pub const CLEAR_TASK_PK_PREFIX: &str = "CLEARBOX#";
pub const SEARCH_TASK_PK_PREFIX: &str = "SEARCHAPPLY#";

/// The sort-key range of `PURGE#` and `TASKS` entries due at `now_unix` or earlier. Due times
/// are zero-padded to 12 digits, so string order is time order; `-` (below every digit) also
/// takes in the odd negative due time, and `$` (just above `#`) ends the range after every
/// entry of second `now_unix`.
pub fn due_until(now_unix: i64) -> (String, String) {
    ("-".to_string(), format!("{now_unix:012}$"))
}

/// The one partition of domain aliases.
pub const DOMAIN_ALIASES_PK: &str = "DOMAINALIASES";
pub const DOMAIN_ALIAS_SK_PREFIX: &str = "ALIAS#";

pub fn domain_alias(alias: &str) -> Key {
    Key::new(
        DOMAIN_ALIASES_PK,
        format!("{DOMAIN_ALIAS_SK_PREFIX}{alias}"),
    )
}

pub fn domain_alias_id(id: &ObjectId) -> Key {
    Key::new(DOMAIN_ALIASES_PK, format!("ID#{id}"))
}

pub const FORWARDED_PK_PREFIX: &str = "FORWARDED#";

pub fn forwarded_address(id: &ObjectId) -> Key {
    Key::new(format!("{FORWARDED_PK_PREFIX}{id}"), "FORWARDED")
}

pub fn health_probe(probe: &ObjectId) -> Key {
    Key::new("HEALTH", probe.to_string())
}

pub fn domain_access_pk(tag: &str) -> String {
    format!("DOMAINACCESS#{tag}")
}

pub fn domain_access(tag: &str, domain: &str) -> Key {
    Key::new(domain_access_pk(tag), domain)
}

pub fn domain_access_id(id: &ObjectId) -> Key {
    Key::new(format!("DOMAINACCESSID#{id}"), "DOMAINACCESSID")
}

/// The one partition of DKIM keys.
pub const DKIM_PK: &str = "DKIMKEYS";
pub const DKIM_SK_PREFIX: &str = "DOMAIN#";

pub fn dkim_key(domain: &str) -> Key {
    Key::new(DKIM_PK, format!("{DKIM_SK_PREFIX}{domain}"))
}

pub fn dkim_key_id(id: &ObjectId) -> Key {
    Key::new(DKIM_PK, format!("ID#{id}"))
}

/// The one partition of `/settings` overrides.
pub const SETTINGS_PK: &str = "SETTINGS";

pub fn setting(key: &str) -> Key {
    Key::new(SETTINGS_PK, key)
}

pub const QUOTA_TASK_PK_PREFIX: &str = "QUOTARESET#";

/// A recount of every user's quota (`POST /quota/reset`).
pub fn quota_task(task: &ObjectId) -> Key {
    Key::new(format!("{QUOTA_TASK_PK_PREFIX}{task}"), "QUOTARESET")
}

pub fn quota_task_entry(due_unix: i64, task: &ObjectId) -> IndexKey {
    IndexKey::new(TASKS_PK, format!("{due_unix:012}#QUOTA#{task}"))
}

/// The listing of every user's filters (`GET /filters`): one index partition, in id order.
pub const FILTERS_LISTING_PK: &str = "FILTERS";

pub fn filters_listing(filter: &ObjectId) -> IndexKey {
    IndexKey::new(FILTERS_LISTING_PK, filter.to_string())
}

pub const ADDRESS_REGISTER_SK_PREFIX: &str = "AREG#";

/// A correspondent in a user's address register.
pub fn address_register(user: &ObjectId, addrview: &str) -> Key {
    Key::new(
        user_pk(user),
        format!("{ADDRESS_REGISTER_SK_PREFIX}{addrview}"),
    )
}

/// Every webhook, in one partition (an operator has a handful).
pub const WEBHOOKS_PK: &str = "WEBHOOKS";
pub const WEBHOOK_SK_PREFIX: &str = "HOOK#";

pub fn webhook(id: &ObjectId) -> Key {
    Key::new(WEBHOOKS_PK, format!("{WEBHOOK_SK_PREFIX}{id}"))
}

/// Partitions of the webhook delivery queue (senders walk each).
pub const WEBHOOK_QUEUE_SHARDS: u32 = 8;

/// The queue partition of a webhook's deliveries: all of one endpoint's in one partition.
pub fn webhook_queue_pk(shard: u32) -> String {
    format!("WEBHOOK_QUEUE#{shard}")
}

pub fn webhook_queue_shard(hook: &ObjectId) -> u32 {
    let bytes = hook.to_string().into_bytes();
    bytes
        .iter()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b)))
        % WEBHOOK_QUEUE_SHARDS
}

/// A queued webhook delivery, sorted by when it is due (milliseconds).
pub fn webhook_delivery(hook: &ObjectId, due_ms: i64, id: &str) -> Key {
    Key::new(
        webhook_queue_pk(webhook_queue_shard(hook)),
        format!("{:013}#{id}", due_ms.max(0)),
    )
}

/// A queue partition and the sort key below which its deliveries are due by `now_ms`.
pub fn webhook_queue_until(shard: u32, now_ms: i64) -> (String, String) {
    (webhook_queue_pk(shard), format!("{:013}#~", now_ms.max(0)))
}

pub const AUDIT_PK_PREFIX: &str = "AUDIT#";

/// An audit (`/audit`) and its copies share one partition.
pub fn audit(id: &ObjectId) -> Key {
    Key::new(format!("{AUDIT_PK_PREFIX}{id}"), "AUDIT")
}

pub const AUDIT_ENTRY_PREFIX: &str = "MSG#";

/// A message copied into an audit, in arrival order.
pub fn audit_entry(audit: &ObjectId, idate_ms: i64, message: &ObjectId) -> Key {
    Key::new(
        format!("AUDIT#{audit}"),
        format!("{AUDIT_ENTRY_PREFIX}{:013}#{message}", idate_ms.max(0)),
    )
}

/// The bytes of a message copied into an audit.
pub fn audit_blob(audit: &ObjectId, message: &ObjectId) -> String {
    format!("audit/{audit}/{message}")
}

pub const USER_AUDIT_PREFIX: &str = "AUDIT#";

/// An audit of a user, in the user's partition: what a message store reads.
pub fn user_audit(user: &ObjectId, audit: &ObjectId) -> Key {
    Key::new(user_pk(user), format!("{USER_AUDIT_PREFIX}{audit}"))
}

/// An audit on the janitor's schedule (its copy, then its removal).
pub fn audit_task_entry(due_unix: i64, audit: &ObjectId) -> IndexKey {
    IndexKey::new(TASKS_PK, format!("{due_unix:012}#AUDIT#{audit}"))
}
