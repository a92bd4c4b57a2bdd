//! Messages: upload, listing, details, flags, moves, deletion into the archive, raw source
//! and attachments.
//!
//! A message is stored once: its raw source as a blob (`messages/<user>/<id>.eml`), its
//! metadata as an item in its mailbox's partition (`MSGS#<user>#<mailbox>` / UID). The UID
//! comes from the mailbox's `uidNext` counter (one atomic update, strictly increasing, never
//! reused). The message, the mailbox counters, the user's `storageUsed` (with the quota as
//! the write's condition), the pointer from the message id to its place, thread references
//! and the journal event are written in ONE transaction, so a message is either fully
//! visible and counted or not there at all.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::mailboxes::{self, MODIFY_INDEX, SIZE, StoredMailbox, TOTAL, UID_NEXT, UNSEEN};
use super::users::{self, ARCHIVED_COUNT, STORAGE_USED, StoredUser};
use super::{journal, keys, unix_now};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::paging::{PageRequest, walk_partition};
use crate::http::validate::{MAX_DATA_BYTES, Str, Validator};
use crate::id::ObjectId;
use crate::mail::parse::{self, Address, AttachmentInfo, ParsedMessage};
use crate::store::{Condition, Item, Key, Query, SortRange, StoreError, Update, Write};

/// Largest message accepted (WildDuck's 64 MiB).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The stored metadata of a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Stable object id: the archive id, the search index value, the blob name.
    pub id: ObjectId,
    pub user: ObjectId,
    pub mailbox: ObjectId,
    pub uid: u32,
    pub thread: ObjectId,
    #[serde(default)]
    pub from: Option<Address>,
    #[serde(default)]
    pub to: Vec<Address>,
    #[serde(default)]
    pub cc: Vec<Address>,
    #[serde(default)]
    pub bcc: Vec<Address>,
    #[serde(default)]
    pub reply_to: Vec<Address>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub message_id: String,
    /// The Date header, or the delivery time when it is missing or invalid.
    pub date: DateTime<Utc>,
    /// When the message was stored (internal date).
    pub idate: DateTime<Utc>,
    #[serde(default)]
    pub intro: String,
    pub size: u64,
    #[serde(default)]
    pub seen: bool,
    #[serde(default)]
    pub flagged: bool,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub answered: bool,
    #[serde(default)]
    pub forwarded: bool,
    #[serde(default)]
    pub attachments: Vec<AttachmentInfo>,
    #[serde(default)]
    pub has_attachments: bool,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub list_id: Option<String>,
    #[serde(default)]
    pub list_unsubscribe: Option<String>,
    #[serde(default)]
    pub encrypted: bool,
    /// When the message is to be removed (mailbox retention or `expires`).
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
    /// Blob key of the raw source.
    pub blob: String,
    /// Search terms indexed for this message (to remove them with it).
    #[serde(default)]
    pub terms: Vec<String>,
    /// JSON text of an object.
    #[serde(default)]
    pub meta_data: Option<String>,
    /// Where the message came from: `API`, `LMTP`, `SES`.
    #[serde(default)]
    pub source: String,
}

impl Message {
    /// IMAP flags of the message.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        for (on, flag) in [
            (self.seen, "\\Seen"),
            (self.flagged, "\\Flagged"),
            (self.draft, "\\Draft"),
            (self.deleted, "\\Deleted"),
            (self.answered, "\\Answered"),
            (self.forwarded, "$Forwarded"),
        ] {
            if on {
                flags.push(flag);
            }
        }
        flags
    }

    fn key(&self) -> Key {
        keys::message(&self.user, &self.mailbox, self.uid)
    }

    /// The item of this message in `mailbox`: listed as flagged unless deleted or in
    /// Junk/Trash; scheduled for purge when it expires.
    pub fn item(&self, mailbox: &StoredMailbox) -> Item {
        let mut item = Item::new(self.key(), serde_json::to_value(self).unwrap_or_default());
        if self.flagged && !self.deleted && !mailbox.is_junk_or_trash() {
            item.gsi1 = Some(keys::flagged_listing(&self.user, &self.id));
        }
        if let Some(expires) = self.expires {
            item.gsi2 = Some(keys::purge_entry(expires.timestamp(), &self.key()));
        }
        item
    }

    /// `(total, unseen, size)` this message adds to its mailbox's counters.
    fn counts(&self) -> (i64, i64, i64) {
        (1, i64::from(!self.seen), self.size as i64)
    }

    /// The fields every listing shows (spec "List existing messages" plus WildDuck's extras).
    pub fn list_json(&self) -> Value {
        json!({
            "id": self.uid,
            "mailbox": self.mailbox,
            "thread": self.thread,
            "from": self.from,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "messageId": self.message_id,
            "subject": self.subject,
            "date": self.date,
            "idate": self.idate,
            "intro": self.intro,
            "attachments": self.has_attachments,
            "size": self.size,
            "seen": self.seen,
            "deleted": self.deleted,
            "flagged": self.flagged,
            "draft": self.draft,
            "answered": self.answered && !self.forwarded,
            "forwarded": self.forwarded,
            "references": self.references,
            "encrypted": self.encrypted,
        })
    }

    /// The journal event of this message appearing in its mailbox.
    fn exists_event(&self) -> Value {
        json!({
            "command": "EXISTS",
            "uid": self.uid,
            "message": self.id,
            "idate": self.idate,
            "thread": self.thread,
            "mailbox": self.mailbox,
            "unseen": !self.seen,
        })
    }

    fn expunge_event(&self) -> Value {
        json!({
            "command": "EXPUNGE",
            "uid": self.uid,
            "message": self.id,
            "thread": self.thread,
            "mailbox": self.mailbox,
            "unseen": !self.seen,
        })
    }

    fn fetch_event(&self) -> Value {
        json!({
            "command": "FETCH",
            "uid": self.uid,
            "flags": self.flags(),
            "thread": self.thread,
            "message": self.id,
            "mailbox": self.mailbox,
        })
    }
}

pub fn from_item(item: &Item) -> ApiResult<Message> {
    serde_json::from_value(item.body.clone()).map_err(|e| {
        ApiError::internal(anyhow::anyhow!(
            "corrupt message {}/{}: {e}",
            item.pk,
            item.sk
        ))
    })
}

fn message_not_found() -> ApiError {
    ApiError::not_found("MessageNotFound", "This message does not exist")
}

/// The write that changes a mailbox's counters by a message delta (and bumps its modifyIndex).
fn mailbox_counters(mailbox: &StoredMailbox, total: i64, unseen: i64, size: i64) -> Write {
    Write::Update {
        key: keys::mailbox(&mailbox.mailbox.user, &mailbox.mailbox.id),
        update: Update::default()
            .add(TOTAL, total)
            .add(UNSEEN, unseen)
            .add(SIZE, size)
            .add(MODIFY_INDEX, 1),
        condition: Some(Condition::Exists),
    }
}

/// When a message added to `mailbox` now expires by the mailbox's retention.
fn retention_expiry(mailbox: &StoredMailbox, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let ms = mailbox.mailbox.retention;
    (ms > 0).then(|| now + chrono::Duration::milliseconds(ms.min(i64::MAX as u64) as i64))
}

/// Allocates `count` UIDs in a mailbox; returns the first. UIDs are never reused, even when
/// the write that was to use them fails.
async fn allocate_uids(state: &AppState, mailbox: &StoredMailbox, count: usize) -> ApiResult<u32> {
    let item = state
        .table
        .update(
            &keys::mailbox(&mailbox.mailbox.user, &mailbox.mailbox.id),
            Update::default().add(UID_NEXT, count as i64),
            Some(Condition::Exists),
        )
        .await
        .map_err(|e| match e {
            StoreError::ConditionFailed { .. } => {
                ApiError::not_found("NoSuchMailbox", "This mailbox does not exist")
            }
            other => other.into(),
        })?;
    Ok((item.counter(UID_NEXT) - count as i64) as u32)
}

// ---------------------------------------------------------------------------------------------
// Threads

fn subject_hash(subject: &str) -> String {
    let digest = Sha256::digest(subject.as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// The thread-reference items of a message, from its parsed headers. The janitor derives them
/// again from the stored source when it purges a deleted user, so both go through here.
pub(crate) fn thread_ref_keys(user: &ObjectId, parsed: &ParsedMessage) -> Vec<Key> {
    let hash = subject_hash(&parsed.thread_subject);
    parsed
        .thread_refs
        .iter()
        .map(|r| keys::thread_ref(user, r, &hash))
        .collect()
}

/// The thread of a new message (WildDuck's rule: a known reference with the same normalized
/// subject joins that thread) and the writes that record its references.
async fn resolve_thread(
    state: &AppState,
    user: &ObjectId,
    parsed: &ParsedMessage,
) -> ApiResult<(ObjectId, Vec<Write>)> {
    let refs = thread_ref_keys(user, parsed);
    let known = if refs.is_empty() {
        Vec::new()
    } else {
        state.table.get_many(&refs).await?
    };
    let thread = known
        .iter()
        .find_map(|i| serde_json::from_value::<ObjectId>(i.body["thread"].clone()).ok())
        .unwrap_or_default();
    let writes = refs
        .into_iter()
        .map(|key| Write::put(Item::new(key, json!({ "thread": thread }))))
        .collect();
    Ok((thread, writes))
}

// ---------------------------------------------------------------------------------------------
// Upload

/// The SMTP envelope of a delivered message: MAIL FROM (`""` for the null sender) and the
/// RCPT TO it was delivered for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: String,
    pub to: String,
}

/// A validated upload. `Default` lets other entry points (delivery) name only what they set.
#[derive(Default)]
pub struct Upload {
    pub raw: Vec<u8>,
    /// A message uploaded beforehand through `POST /users/{user}/uploads` (large messages).
    pub staged: Option<ObjectId>,
    pub seen: bool,
    pub flagged: bool,
    pub draft: bool,
    pub date: Option<DateTime<Utc>>,
    pub meta_data: Option<String>,
    pub idempotency_key: Option<String>,
    pub source: &'static str,
    /// Set by delivery: the STORE event then records the envelope's from and to.
    pub envelope: Option<Envelope>,
    /// Set by delivery: the filters that matched, recorded on the STORE event.
    pub filters: Vec<ObjectId>,
}

impl Upload {
    /// Validates `POST .../messages`: `raw` (base64) or the request body as message/rfc822,
    /// plus `unseen` (default false: uploads are stored seen), `flagged`, `draft`, `date`,
    /// `metaData`.
    pub fn parse(
        params: Map<String, Value>,
        body_raw: Option<Vec<u8>>,
        idempotency_key: Option<String>,
    ) -> ApiResult<Upload> {
        use base64::Engine;
        let mut v = Validator::new(params);
        let raw_text = v.string("raw", Str::max(MAX_MESSAGE_SIZE * 2));
        let unseen = v.boolean("unseen").unwrap_or(false);
        let flagged = v.boolean("flagged").unwrap_or(false);
        let draft = v.boolean("draft").unwrap_or(false);
        let date = match v.string("date", Str::max(64).trim()) {
            Some(text) => match parse_date(&text) {
                Some(d) => Some(d),
                None => {
                    v.error("date", "\"date\" must be a valid date");
                    None
                }
            },
            None => None,
        };
        let meta_data = v.json_object("metaData", MAX_DATA_BYTES);
        let staged = v.id("upload");
        v.session();
        let raw = match (body_raw, raw_text) {
            (Some(raw), _) => Some(raw),
            (None, None) if staged.is_some() => None,
            (None, Some(text)) => {
                let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                match base64::engine::general_purpose::STANDARD.decode(cleaned.as_bytes()) {
                    Ok(raw) => Some(raw),
                    Err(_) => {
                        v.error("raw", "\"raw\" must be a base64 encoded message");
                        None
                    }
                }
            }
            (None, None) => {
                v.error("raw", "\"raw\" is required");
                None
            }
        };
        if let Some(raw) = &raw {
            if raw.is_empty() {
                v.error("raw", "\"raw\" is not allowed to be empty");
            } else if raw.len() > MAX_MESSAGE_SIZE {
                v.error(
                    "raw",
                    format!("\"raw\" must be at most {MAX_MESSAGE_SIZE} bytes"),
                );
            }
        }
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > 255)
        {
            v.error(
                "Idempotency-Key",
                "\"Idempotency-Key\" must be 1 to 255 characters",
            );
        }
        v.deny_unknown();
        v.finish()?;
        Ok(Upload {
            raw: raw.unwrap_or_default(),
            staged,
            seen: !unseen,
            flagged,
            draft,
            date,
            meta_data,
            idempotency_key,
            source: "API",
            ..Default::default()
        })
    }
}

/// A date as WildDuck accepts it: RFC 3339, RFC 2822, or unix milliseconds.
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(text) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
    }
    text.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}

/// Where a stored message is: its mailbox, UID and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub id: ObjectId,
    pub mailbox: ObjectId,
    pub uid: u32,
    pub size: u64,
}

fn over_quota() -> ApiError {
    ApiError::forbidden("OverQuotaError", "User is over quota")
}

fn idempotency_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The quota a user may fill, in bytes.
pub fn allowed_storage(state: &AppState, user: &StoredUser) -> i64 {
    let quota = user.user.limits.quota;
    (if quota > 0 {
        quota
    } else {
        state.config.max_storage
    }) as i64
}

/// Stores a message in a mailbox: blob first, then the one transaction that makes it visible.
/// A retry with the same `Idempotency-Key` returns the first result and stores nothing.
pub async fn store(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    mut upload: Upload,
) -> ApiResult<Stored> {
    let owner = users::load(state, user).await?;
    if owner.user.disabled {
        return Err(ApiError::forbidden(
            "UserDisabled",
            "User account is disabled",
        ));
    }
    let mailbox = mailboxes::load(state, user, mailbox_id).await?;
    let idempotency = upload
        .idempotency_key
        .as_deref()
        .map(|k| keys::idempotency(user, &idempotency_hash(k)));
    if let Some(key) = &idempotency
        && let Some(done) = state.table.get(key).await?
    {
        return serde_json::from_value(done.body)
            .map_err(|e| ApiError::internal(anyhow::anyhow!(e)));
    }
    let staged_key = upload.staged.map(|id| staged_upload_blob(user, &id));
    if let Some(key) = &staged_key {
        let staged = state.blobs.get(key).await?.ok_or_else(|| {
            ApiError::invalid_field("upload", "\"upload\" names no uploaded message")
        })?;
        if staged.is_empty() || staged.len() > MAX_MESSAGE_SIZE {
            return Err(ApiError::invalid_field(
                "upload",
                format!("the uploaded message must be 1 to {MAX_MESSAGE_SIZE} bytes"),
            ));
        }
        upload.raw = staged.to_vec();
    }
    let raw = encrypt_if_wanted(&owner, &mailbox, std::mem::take(&mut upload.raw))?;
    let size = raw.len() as i64;
    let allowed = allowed_storage(state, &owner);
    if owner.storage_used + size > allowed {
        return Err(over_quota());
    }
    let parsed = parse::parse(&raw);
    let now = Utc::now();
    let idate = upload.date.unwrap_or(now);
    let id = ObjectId::new();
    let blob = keys::message_blob(user, &id);
    // The marker goes first: if the process dies before the commit, the janitor finds the
    // blob through it.
    let pending = keys::pending_blob(user, &id);
    state
        .table
        .transact(vec![Write::put_new(pending_blob_marker(
            &pending, &blob, now,
        ))])
        .await?;
    if let Err(e) = state.blobs.put(&blob, raw.into()).await {
        let _ = state.table.transact(vec![Write::delete(pending)]).await;
        return Err(e.into());
    }

    let result = commit_new_message(
        state,
        &owner,
        &mailbox,
        &parsed,
        id,
        &blob,
        size,
        idate,
        &upload,
        idempotency.as_ref(),
        allowed,
    )
    .await;
    match result {
        Ok(stored) => {
            index_terms(state, user, &id, &parsed.search_terms).await;
            if let Some(key) = &staged_key
                && let Err(e) = state.blobs.delete(key).await
            {
                tracing::warn!(error = %e, "staged upload not removed; the bucket's lifecycle rule will");
            }
            Ok(stored)
        }
        Err(e) => {
            // Nothing refers to the blob: remove it, then its marker. Whatever of that fails
            // (or a crash here) the janitor finishes through the marker.
            match state.blobs.delete(&blob).await {
                Ok(()) => {
                    let _ = state.table.transact(vec![Write::delete(pending)]).await;
                }
                Err(cleanup) => {
                    tracing::warn!(error = %cleanup, "could not remove the blob of a failed upload; the janitor will")
                }
            }
            match (e, &idempotency) {
                (Commit::Duplicate, Some(key)) => {
                    let done = state.table.get(key).await?.ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("idempotency record vanished"))
                    })?;
                    serde_json::from_value(done.body)
                        .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))
                }
                (Commit::Duplicate, None) => Err(ApiError::internal(anyhow::anyhow!(
                    "duplicate without a key"
                ))),
                (Commit::Failed(e), _) => Err(e),
            }
        }
    }
}

enum Commit {
    Duplicate,
    Failed(ApiError),
}

/// Seconds after which the janitor takes a blob whose message never committed: far beyond
/// any request's time (a Lambda runs 15 minutes at most).
pub(crate) const PENDING_BLOB_SECONDS: i64 = 3600;
/// The marker's counter the janitor sets before it removes the blob: a commit arriving after
/// that fails on it instead of pointing at a removed blob.
pub(crate) const PENDING_DOOMED: &str = "doomed";

/// The marker of a blob written for a message not committed yet, on the purge schedule.
fn pending_blob_marker(key: &Key, blob: &str, now: DateTime<Utc>) -> Item {
    let due = now.timestamp() + PENDING_BLOB_SECONDS;
    Item::new(key.clone(), json!({ "blob": blob }))
        .with_counter(PENDING_DOOMED, 0)
        .with_gsi2(keys::purge_entry(due, key))
}

impl From<ApiError> for Commit {
    fn from(e: ApiError) -> Self {
        Commit::Failed(e)
    }
}

impl From<StoreError> for Commit {
    fn from(e: StoreError) -> Self {
        Commit::Failed(e.into())
    }
}

#[allow(clippy::too_many_arguments)]
async fn commit_new_message(
    state: &AppState,
    owner: &StoredUser,
    mailbox: &StoredMailbox,
    parsed: &ParsedMessage,
    id: ObjectId,
    blob: &str,
    size: i64,
    idate: DateTime<Utc>,
    upload: &Upload,
    idempotency: Option<&Key>,
    allowed: i64,
) -> Result<Stored, Commit> {
    let user = &owner.user.id;
    let (thread, thread_writes) = resolve_thread(state, user, parsed).await?;
    let uid = allocate_uids(state, mailbox, 1).await?;
    let seq = journal::reserve(state.table.as_ref(), user, 1).await?;
    let now = Utc::now();
    let message = Message {
        id,
        user: *user,
        mailbox: mailbox.mailbox.id,
        uid,
        thread,
        from: parsed.from.clone(),
        to: parsed.to.clone(),
        cc: parsed.cc.clone(),
        bcc: parsed.bcc.clone(),
        reply_to: parsed.reply_to.clone(),
        subject: parsed.subject.clone(),
        message_id: parsed.message_id.clone(),
        date: parsed.date.unwrap_or(idate),
        idate,
        intro: parsed.intro.clone(),
        size: size as u64,
        seen: upload.seen,
        flagged: upload.flagged,
        draft: upload.draft,
        deleted: false,
        answered: false,
        forwarded: false,
        attachments: parsed
            .attachments
            .iter()
            .filter(|a| a.listed)
            .cloned()
            .collect(),
        has_attachments: parsed.has_attachments,
        references: parsed.references.clone(),
        list_id: parsed.list_id.clone(),
        list_unsubscribe: parsed.list_unsubscribe.clone(),
        encrypted: parsed.encrypted,
        expires: retention_expiry(mailbox, now),
        blob: blob.to_string(),
        terms: parsed.search_terms.clone(),
        meta_data: upload.meta_data.clone(),
        source: upload.source.to_string(),
    };
    let stored = Stored {
        id,
        mailbox: mailbox.mailbox.id,
        uid,
        size: size as u64,
    };
    let (total, unseen, bytes) = message.counts();
    let mut writes = vec![
        Write::put_new(message.item(mailbox)),
        Write::Update {
            key: keys::user(user),
            update: Update::default().add(STORAGE_USED, size),
            condition: Some(Condition::CounterAtMost(
                STORAGE_USED.into(),
                allowed - size,
            )),
        },
        mailbox_counters(mailbox, total, unseen, bytes),
        Write::put(Item::new(
            keys::message_pointer(user, &id),
            json!({ "mailbox": mailbox.mailbox.id, "uid": uid }),
        )),
        journal::event_write(&state.config, user, seq, message.exists_event()),
        Write::put(Item::new(
            keys::message_event(user, &id, &ObjectId::new()),
            store_event(upload, &message, now),
        )),
    ];
    let idempotency_index = writes.len();
    if let Some(key) = idempotency {
        let expires = unix_now() + 24 * 3600;
        writes.push(Write::put_new(
            Item::new(
                key.clone(),
                serde_json::to_value(&stored).unwrap_or_default(),
            )
            .with_expiry(expires),
        ));
    }
    writes.extend(thread_writes);
    let pending_index = writes.len();
    writes.push(Write::Delete {
        key: keys::pending_blob(user, &id),
        condition: Some(Condition::CounterEquals(PENDING_DOOMED.into(), 0)),
    });
    match journal::commit(state.table.as_ref(), &state.config, user, seq, 1, writes).await {
        Ok(()) => Ok(stored),
        Err(StoreError::ConditionFailed { index }) if index == pending_index => {
            Err(Commit::Failed(ApiError::internal(anyhow::anyhow!(
                "the upload outlived its pending-blob marker; the janitor took the blob"
            ))))
        }
        Err(StoreError::ConditionFailed { index: 1 }) => Err(Commit::Failed(over_quota())),
        Err(StoreError::ConditionFailed { index: 2 }) => Err(Commit::Failed(ApiError::not_found(
            "NoSuchMailbox",
            "This mailbox does not exist",
        ))),
        Err(StoreError::ConditionFailed { index })
            if idempotency.is_some() && index == idempotency_index =>
        {
            Err(Commit::Duplicate)
        }
        Err(e) => Err(e.into()),
    }
}

/// The STORE event of a new message: its source, and from/to from the envelope when it was
/// delivered (the header addresses otherwise), plus the filters that matched.
fn store_event(upload: &Upload, message: &Message, now: DateTime<Utc>) -> Value {
    let (from, to) = match &upload.envelope {
        Some(envelope) => (json!(envelope.from), json!([envelope.to])),
        None => {
            let to: Vec<String> = message.to.iter().map(|a| a.address.clone()).collect();
            (
                json!(message.from.as_ref().map(|a| a.address.clone())),
                json!(to),
            )
        }
    };
    let mut event = json!({ "action": "STORE", "source": upload.source, "time": now,
                            "from": from, "to": to });
    if !upload.filters.is_empty() {
        event["filters"] = json!(upload.filters);
    }
    event
}

/// Encrypts the source to the user's key when the user or the mailbox asks for it.
fn encrypt_if_wanted(
    owner: &StoredUser,
    mailbox: &StoredMailbox,
    raw: Vec<u8>,
) -> ApiResult<Vec<u8>> {
    let wanted = owner.user.encrypt_messages || mailbox.mailbox.encrypt_messages;
    match (&owner.user.pub_key, wanted) {
        (Some(key), true) => match crate::mail::encrypt::encrypt_message(&raw, key) {
            Ok(Some(encrypted)) => Ok(encrypted),
            Ok(None) => Ok(raw),
            Err(e) => Err(ApiError::internal(anyhow::anyhow!(
                "encryption failed: {e}"
            ))),
        },
        _ => Ok(raw),
    }
}

/// Writes a message's search terms (after its transaction: a message has up to 1000 terms,
/// more than a transaction holds). A failure is logged; the message is still stored and
/// listed, only search may miss it.
async fn index_terms(state: &AppState, user: &ObjectId, id: &ObjectId, terms: &[String]) {
    for chunk in terms.chunks(crate::store::MAX_TRANSACTION_WRITES) {
        let writes = chunk
            .iter()
            .map(|t| Write::put(Item::new(keys::search_term(user, t, id), Value::Null)))
            .collect();
        if let Err(e) = state.table.transact(writes).await {
            tracing::warn!(error = %e, message = %id, "search terms not indexed");
            return;
        }
    }
}

/// Removes a message's search terms (best effort: a stale term only costs a lookup).
async fn unindex_terms(state: &AppState, user: &ObjectId, id: &ObjectId, terms: &[String]) {
    for chunk in terms.chunks(crate::store::MAX_TRANSACTION_WRITES) {
        let writes = chunk
            .iter()
            .map(|t| Write::delete(keys::search_term(user, t, id)))
            .collect();
        if let Err(e) = state.table.transact(writes).await {
            tracing::warn!(error = %e, message = %id, "search terms not removed");
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads one message, or `MessageNotFound`.
pub async fn load(
    state: &AppState,
    user: &ObjectId,
    mailbox: &ObjectId,
    uid: u32,
) -> ApiResult<Message> {
    // One read for both: a deleted user's messages are gone for the API at once.
    let profile = keys::user(user);
    let items = state
        .table
        .get_many(&[profile.clone(), keys::message(user, mailbox, uid)])
        .await?;
    if !items
        .iter()
        .any(|i| i.pk == profile.pk && i.sk == profile.sk)
    {
        return Err(ApiError::user_not_found());
    }
    let item = items
        .iter()
        .find(|i| i.pk != profile.pk)
        .ok_or_else(message_not_found)?;
    from_item(item)
}

/// `GET /users/{user}/mailboxes/{mailbox}/messages`.
pub async fn list(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let unseen_only = v.boolean("unseen").unwrap_or(false);
    let ascending = v.string("order", Str::max(4).trim().lowercase()).as_deref() == Some("asc");
    let meta = v.boolean("metaData").unwrap_or(false);
    v.session();
    let page = PageRequest::from_params(&mut v);
    v.finish()?;
    let mailbox = mailboxes::load(state, user, mailbox_id).await?;
    let keep = |item: &Item| !unseen_only || item.body["seen"] != Value::Bool(true);
    let pk = keys::messages_pk(user, mailbox_id);
    let result = walk_partition(state.table.as_ref(), &pk, "", !ascending, &page, &keep)
        .await?
        .ok_or_else(|| page.invalid_cursor())?;
    let total = if unseen_only {
        mailbox.unseen
    } else {
        mailbox.total
    };
    let mut results = Vec::with_capacity(result.items.len());
    for item in &result.items {
        let message = from_item(item)?;
        let mut entry = message.list_json();
        if meta && let Some(m) = &message.meta_data {
            entry["metaData"] = serde_json::from_str(m).unwrap_or(Value::Null);
        }
        results.push(entry);
    }
    let mut body = json!({ "success": true, "total": total });
    if let (Value::Object(out), Value::Object(paging)) = (&mut body, result.paging_json(&page)) {
        out.extend(paging);
    }
    body["specialUse"] = json!(mailbox.mailbox.special_use);
    body["results"] = Value::Array(results);
    Ok(body)
}

/// The detailed shape of a message (`GET .../messages/{message}` and archived messages):
/// listing fields plus text and HTML parsed from the stored source.
pub async fn details_json(state: &AppState, message: &Message) -> ApiResult<Value> {
    let raw = state.blobs.get(&message.blob).await?.unwrap_or_default();
    let parsed = parse::parse(&raw);
    let mut out = message.list_json();
    out["user"] = json!(message.user);
    out["replyTo"] = json!(message.reply_to);
    out["html"] = json!(parsed.html);
    out["text"] = json!(parsed.text);
    out["attachments"] = json!(message.attachments);
    out["hasAttachments"] = json!(message.has_attachments);
    out["metaData"] = message
        .meta_data
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_else(|| json!({}));
    if let Some(expires) = message.expires {
        out["expires"] = json!(expires);
    }
    if message.list_id.is_some() || message.list_unsubscribe.is_some() {
        out["list"] = json!({ "id": message.list_id, "unsubscribe": message.list_unsubscribe });
    }
    Ok(out)
}

/// `GET /users/{user}/mailboxes/{mailbox}/messages/{message}`; `markAsSeen` sets \Seen.
pub async fn get(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let mark_seen = v.boolean("markAsSeen").unwrap_or(false);
    v.boolean("replaceCidLinks");
    v.session();
    v.deny_unknown();
    v.finish()?;
    let mut message = load(state, user, mailbox_id, uid).await?;
    if mark_seen && !message.seen {
        let changes = FlagChanges {
            seen: Some(true),
            ..Default::default()
        };
        let mailbox = mailboxes::load(state, user, mailbox_id).await?;
        apply_flags(state, &mailbox, vec![message.clone()], &changes).await?;
        message.seen = true;
    }
    let mut body = details_json(state, &message).await?;
    body["success"] = json!(true);
    Ok(body)
}

/// How a large body is answered.
#[derive(Debug)]
pub enum Download {
    /// The bytes themselves.
    Bytes(bytes::Bytes),
    /// Stream the blob in ranges (large, and the store can't presign: the local server).
    Stream { blob: String, size: u64 },
    /// Redirect to a short-lived presigned URL (large, on S3: Lambda answers at most 6 MB).
    Redirect(String),
}

/// How long a presigned download or upload URL stays valid.
pub const PRESIGNED_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Bodies above this are streamed in ranges rather than read whole.
const STREAM_ABOVE: u64 = 1024 * 1024;

/// The raw source of a message (`message.eml`), exactly as stored.
pub async fn raw_source(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
) -> ApiResult<Download> {
    let message = load(state, user, mailbox_id, uid).await?;
    if message.size > state.config.inline_limit
        && let Some(url) = state
            .blobs
            .presign_get(&message.blob, PRESIGNED_FOR, "message/rfc822", None)
            .await?
    {
        return Ok(Download::Redirect(url));
    }
    if message.size > STREAM_ABOVE {
        return Ok(Download::Stream {
            blob: message.blob,
            size: message.size,
        });
    }
    let raw = state.blobs.get(&message.blob).await?.ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "blob {} of a listed message is missing",
            message.blob
        ))
    })?;
    Ok(Download::Bytes(raw))
}

/// Where a staged (large) upload is kept until it is stored as a message.
fn staged_upload_blob(user: &ObjectId, id: &ObjectId) -> String {
    format!("uploads/{user}/{id}.eml")
}

/// `POST /users/{user}/uploads`: a place to put a large message before storing it with
/// `POST .../messages {"upload": id}`. On S3 the URL is presigned (the bytes never pass
/// through Lambda); locally it is this API's `PUT /users/{user}/uploads/{id}`.
pub async fn create_upload(state: &AppState, user: &ObjectId) -> ApiResult<Value> {
    users::load(state, user).await?;
    let id = ObjectId::new();
    let key = staged_upload_blob(user, &id);
    let url = match state.blobs.presign_put(&key, PRESIGNED_FOR).await? {
        Some(url) => url,
        None => format!("/users/{user}/uploads/{id}"),
    };
    let expires = Utc::now() + chrono::Duration::from_std(PRESIGNED_FOR).unwrap_or_default();
    Ok(json!({
        "success": true,
        "id": id,
        "url": url,
        "method": "PUT",
        "expires": expires,
        "maxSize": MAX_MESSAGE_SIZE,
    }))
}

/// `PUT /users/{user}/uploads/{upload}`: the bytes of a staged upload, through the API (for
/// stores that can't presign).
pub async fn put_upload(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    raw: bytes::Bytes,
) -> ApiResult<()> {
    users::load(state, user).await?;
    if raw.is_empty() || raw.len() > MAX_MESSAGE_SIZE {
        return Err(ApiError::invalid_field(
            "body",
            format!("the message must be 1 to {MAX_MESSAGE_SIZE} bytes"),
        ));
    }
    state.blobs.put(&staged_upload_blob(user, id), raw).await?;
    Ok(())
}

/// One attachment for download. Large ones on S3 are written decoded under `cache/` (expired
/// by the bucket's lifecycle rule) and answered with a presigned URL.
pub async fn attachment_download(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
    wanted: &str,
) -> ApiResult<(AttachmentInfo, Download)> {
    let (info, bytes) = attachment(state, user, mailbox_id, uid, wanted).await?;
    if bytes.len() as u64 > state.config.inline_limit {
        let message = load(state, user, mailbox_id, uid).await?;
        let key = format!("cache/{user}/{}/{}", message.id, info.id);
        let disposition = format!("attachment; filename=\"{}\"", safe_filename(&info.filename));
        let url = state
            .blobs
            .presign_get(&key, PRESIGNED_FOR, &info.content_type, Some(&disposition))
            .await?;
        if let Some(url) = url {
            state.blobs.put(&key, bytes.into()).await?;
            return Ok((info, Download::Redirect(url)));
        }
    }
    Ok((info, Download::Bytes(bytes.into())))
}

/// A file name safe inside a quoted header parameter.
pub fn safe_filename(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect()
}

/// One attachment, decoded from its byte range of the stored source.
pub async fn attachment(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
    attachment: &str,
) -> ApiResult<(AttachmentInfo, Vec<u8>)> {
    let message = load(state, user, mailbox_id, uid).await?;
    let wanted = attachment.to_ascii_uppercase();
    let info = message
        .attachments
        .iter()
        .find(|a| a.id == wanted)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found("AttachmentNotFound", "This attachment does not exist")
        })?;
    let encoded = state
        .blobs
        .get_range(&message.blob, info.body_start..info.body_end)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("blob {} is missing", message.blob)))?;
    let decoded = parse::decode_body(&encoded, &info.transfer_encoding);
    Ok((info, decoded))
}

/// `GET .../messages/{message}/events`: the message's timeline, oldest first.
pub async fn events(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
) -> ApiResult<Value> {
    let message = load(state, user, mailbox_id, uid).await?;
    let page = state
        .table
        .query(&Query::table(keys::message_events_pk(user, &message.id)).limit(250))
        .await?;
    let events: Vec<Value> = page
        .items
        .iter()
        .map(|i| {
            let mut e = i.body.clone();
            e["id"] = json!(i.sk);
            e
        })
        .collect();
    Ok(json!({ "success": true, "id": message.id, "events": events }))
}

// ---------------------------------------------------------------------------------------------
// Changing flags, moving

/// A message selector: one UID, a comma list, or a range `a:b` / `a:*`.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    List(Vec<u32>),
    Range(u32, Option<u32>),
}

impl Selector {
    pub fn parse(text: &str) -> Option<Selector> {
        let text = text.trim();
        if let Some((a, b)) = text.split_once(':') {
            let a: u32 = a.parse().ok()?;
            if b == "*" {
                return Some(Selector::Range(a, None));
            }
            let b: u32 = b.parse().ok()?;
            return Some(Selector::Range(a.min(b), Some(a.max(b))));
        }
        let list: Option<BTreeSet<u32>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
        let list = list?;
        (!list.is_empty() && list.len() <= 1000 && !list.contains(&0))
            .then(|| Selector::List(list.into_iter().collect()))
    }
}

/// The messages a selector names in a mailbox.
async fn select(
    state: &AppState,
    user: &ObjectId,
    mailbox: &ObjectId,
    selector: &Selector,
) -> ApiResult<Vec<Message>> {
    let pk = keys::messages_pk(user, mailbox);
    let items = match selector {
        Selector::List(uids) => {
            let keys: Vec<Key> = uids
                .iter()
                .map(|u| keys::message(user, mailbox, *u))
                .collect();
            let mut items = Vec::new();
            for chunk in keys.chunks(100) {
                items.extend(state.table.get_many(chunk).await?);
            }
            items
        }
        Selector::Range(a, b) => {
            let range = SortRange::Between(
                keys::message_sk(*a),
                keys::message_sk(b.unwrap_or(u32::MAX)),
            );
            let mut items = Vec::new();
            let mut after = None;
            loop {
                let page = state
                    .table
                    .query(
                        &Query::table(pk.clone())
                            .range(range.clone())
                            .limit(500)
                            .start_after(after.take()),
                    )
                    .await?;
                items.extend(page.items);
                match page.next {
                    Some(next) if items.len() < 10_000 => after = Some(next),
                    _ => break,
                }
            }
            items
        }
    };
    let mut messages = items.iter().map(from_item).collect::<ApiResult<Vec<_>>>()?;
    messages.sort_by_key(|m| m.uid);
    Ok(messages)
}

/// Flag and expiry changes of `PUT .../messages/{message}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagChanges {
    pub seen: Option<bool>,
    pub flagged: Option<bool>,
    pub draft: Option<bool>,
    pub deleted: Option<bool>,
    /// `Some(None)` clears the expiry.
    pub expires: Option<Option<DateTime<Utc>>>,
    pub meta_data: Option<String>,
}

impl FlagChanges {
    fn is_empty(&self) -> bool {
        *self == FlagChanges::default()
    }

    fn apply(&self, message: &mut Message) {
        if let Some(v) = self.seen {
            message.seen = v;
        }
        if let Some(v) = self.flagged {
            message.flagged = v;
        }
        if let Some(v) = self.draft {
            message.draft = v;
        }
        if let Some(v) = self.deleted {
            message.deleted = v;
        }
        if let Some(v) = self.expires {
            message.expires = v;
        }
        if let Some(m) = &self.meta_data {
            message.meta_data = Some(m.clone());
        }
    }
}

/// A validated `PUT .../messages/{message}`.
pub struct MessageUpdate {
    pub selector: Selector,
    pub move_to: Option<ObjectId>,
    pub changes: FlagChanges,
}

impl MessageUpdate {
    pub fn parse(message: &str, params: Map<String, Value>) -> ApiResult<MessageUpdate> {
        let mut v = Validator::new(params);
        let selector = Selector::parse(message);
        if selector.is_none() {
            v.error("message", format!("\"message\" with value {message:?} fails to match the required pattern: /^\\d+(,\\d+)*$|^\\d+:(\\d+|\\*)$/"));
        }
        let move_to = v.id("moveTo");
        let expires = match v.raw("expires") {
            None => None,
            Some(Value::Bool(false)) => Some(None),
            Some(Value::String(s)) if s == "false" || s.is_empty() => Some(None),
            Some(Value::String(s)) => match parse_date(&s) {
                Some(d) => Some(Some(d)),
                None => {
                    v.error("expires", "\"expires\" must be one of [date, boolean]");
                    None
                }
            },
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(DateTime::from_timestamp_millis)
                .map(Some),
            Some(_) => {
                v.error("expires", "\"expires\" must be one of [date, boolean]");
                None
            }
        };
        let changes = FlagChanges {
            seen: v.boolean("seen"),
            flagged: v.boolean("flagged"),
            draft: v.boolean("draft"),
            deleted: v.boolean("deleted"),
            expires,
            meta_data: v.json_object("metaData", MAX_DATA_BYTES),
        };
        v.session();
        v.deny_unknown();
        v.finish()?;
        if move_to.is_none() && changes.is_empty() {
            return Err(ApiError::bad_request("NoUpdates", "Nothing was changed"));
        }
        Ok(MessageUpdate {
            selector: selector.unwrap_or(Selector::List(Vec::new())),
            move_to,
            changes,
        })
    }
}

/// Messages changed per transaction (each takes its item, a journal event and room for the
/// counters).
const BATCH: usize = 40;

/// Applies flag changes to messages of one mailbox: item, mailbox counters (unseen) and a
/// FETCH journal event per message, in transactions of [`BATCH`].
async fn apply_flags(
    state: &AppState,
    mailbox: &StoredMailbox,
    messages: Vec<Message>,
    changes: &FlagChanges,
) -> ApiResult<usize> {
    let user = mailbox.mailbox.user;
    let mut updated = 0;
    for chunk in messages.chunks(BATCH) {
        let seq = journal::reserve(state.table.as_ref(), &user, chunk.len()).await?;
        let mut writes = Vec::new();
        let mut unseen_delta = 0;
        for (i, message) in chunk.iter().enumerate() {
            let mut changed = message.clone();
            changes.apply(&mut changed);
            unseen_delta += i64::from(!changed.seen) - i64::from(!message.seen);
            let mut item = changed.item(mailbox);
            let update = Update {
                body: Some(item.body.take()),
                gsi1: Some(item.gsi1.take()),
                gsi2: Some(item.gsi2.take()),
                ..Default::default()
            };
            writes.push(Write::Update {
                key: message.key(),
                update,
                condition: Some(Condition::Exists),
            });
            writes.push(journal::event_write(
                &state.config,
                &user,
                seq + i as i64,
                changed.fetch_event(),
            ));
        }
        writes.push(mailbox_counters(mailbox, 0, unseen_delta, 0));
        match journal::commit(
            state.table.as_ref(),
            &state.config,
            &user,
            seq,
            chunk.len(),
            writes,
        )
        .await
        {
            Ok(()) => updated += chunk.len(),
            // A message vanished meanwhile (deleted or moved): do the rest one by one.
            Err(StoreError::ConditionFailed { .. }) if chunk.len() > 1 => {
                for message in chunk {
                    updated +=
                        Box::pin(apply_flags(state, mailbox, vec![message.clone()], changes))
                            .await
                            .unwrap_or(0);
                }
            }
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(updated)
}

/// Moves messages to another mailbox: each gets a new UID there; counters of both mailboxes
/// and the journal (EXPUNGE in the source, EXISTS in the target) change in the same
/// transaction. Returns `(old uid, new uid)` pairs.
async fn move_messages(
    state: &AppState,
    source: &StoredMailbox,
    target: &StoredMailbox,
    messages: Vec<Message>,
    changes: &FlagChanges,
) -> ApiResult<Vec<(u32, u32)>> {
    let user = source.mailbox.user;
    let mut moved = Vec::new();
    let now = Utc::now();
    for chunk in messages.chunks(BATCH / 2) {
        let first_uid = allocate_uids(state, target, chunk.len()).await?;
        let seq = journal::reserve(state.table.as_ref(), &user, chunk.len() * 2).await?;
        let mut writes = Vec::new();
        let (mut src, mut dst) = ((0, 0, 0), (0, 0, 0));
        for (i, message) in chunk.iter().enumerate() {
            let mut next = message.clone();
            changes.apply(&mut next);
            next.mailbox = target.mailbox.id;
            next.uid = first_uid + i as u32;
            if changes.expires.is_none() {
                next.expires = retention_expiry(target, now);
            }
            let (t, u, s) = message.counts();
            src = (src.0 - t, src.1 - u, src.2 - s);
            let (t, u, s) = next.counts();
            dst = (dst.0 + t, dst.1 + u, dst.2 + s);
            writes.push(Write::Delete {
                key: message.key(),
                condition: Some(Condition::Exists),
            });
            writes.push(Write::put_new(next.item(target)));
            writes.push(Write::put(Item::new(
                keys::message_pointer(&user, &next.id),
                json!({ "mailbox": target.mailbox.id, "uid": next.uid }),
            )));
            let base = seq + 2 * i as i64;
            writes.push(journal::event_write(
                &state.config,
                &user,
                base,
                message.expunge_event(),
            ));
            writes.push(journal::event_write(
                &state.config,
                &user,
                base + 1,
                next.exists_event(),
            ));
            moved.push((message.uid, next.uid));
        }
        writes.push(mailbox_counters(source, src.0, src.1, src.2));
        writes.push(mailbox_counters(target, dst.0, dst.1, dst.2));
        match journal::commit(
            state.table.as_ref(),
            &state.config,
            &user,
            seq,
            chunk.len() * 2,
            writes,
        )
        .await
        {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { .. }) => {
                // Some message vanished meanwhile: this batch moved nothing.
                moved.truncate(moved.len() - chunk.len());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(moved)
}

/// `PUT /users/{user}/mailboxes/{mailbox}/messages/{message}`.
pub async fn update(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    request: MessageUpdate,
) -> ApiResult<Value> {
    let source = mailboxes::load(state, user, mailbox_id).await?;
    let messages = select(state, user, mailbox_id, &request.selector).await?;
    if let Some(target_id) = request.move_to {
        let target = mailboxes::load(state, user, &target_id).await?;
        if messages.is_empty() {
            return Err(ApiError::not_found(
                "MessageNotFound",
                "Could not move message, check if message exists",
            ));
        }
        if target_id == *mailbox_id {
            let updated = apply_flags(state, &source, messages, &request.changes).await?;
            return Ok(json!({ "success": true, "updated": updated }));
        }
        let moved = move_messages(state, &source, &target, messages, &request.changes).await?;
        if moved.is_empty() {
            return Err(ApiError::not_found(
                "MessageNotFound",
                "Could not move message, check if message exists",
            ));
        }
        let pairs: Vec<Value> = moved.iter().map(|(a, b)| json!([a, b])).collect();
        return Ok(json!({ "success": true, "mailbox": target_id, "id": pairs }));
    }
    if messages.is_empty() {
        return Err(ApiError::not_found(
            "MessageNotFound",
            "No message matched query",
        ));
    }
    let updated = apply_flags(state, &source, messages, &request.changes).await?;
    if updated == 0 {
        return Err(ApiError::not_found(
            "MessageNotFound",
            "No message matched query",
        ));
    }
    Ok(json!({ "success": true, "updated": updated }))
}

// ---------------------------------------------------------------------------------------------
// Deleting and archiving

/// An archived message: the message as it was, when it was archived, and when it goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Archived {
    pub message: Message,
    pub archived: DateTime<Utc>,
    pub purge_at: DateTime<Utc>,
}

impl Archived {
    pub fn item(&self) -> Item {
        let key = keys::archived(&self.message.user, &self.message.id);
        Item::new(key.clone(), serde_json::to_value(self).unwrap_or_default())
            .with_gsi2(keys::purge_entry(self.purge_at.timestamp(), &key))
    }
}

/// Removes messages from their mailbox: counters, quota and journal in one transaction per
/// batch; each goes to the archive unless it is a draft (or `archive` is false), in which case
/// its blob is removed too.
pub async fn remove_messages(
    state: &AppState,
    mailbox: &StoredMailbox,
    messages: Vec<Message>,
    archive: bool,
) -> ApiResult<usize> {
    let user = mailbox.mailbox.user;
    let now = Utc::now();
    let keep = chrono::Duration::from_std(state.config.archive_retention)
        .unwrap_or(chrono::Duration::days(14));
    let mut removed = 0;
    for chunk in messages.chunks(BATCH / 2) {
        let seq = journal::reserve(state.table.as_ref(), &user, chunk.len()).await?;
        let mut writes = Vec::new();
        let (mut total, mut unseen, mut size, mut archived) = (0, 0, 0, 0);
        let mut gone_for_good = Vec::new();
        for (i, message) in chunk.iter().enumerate() {
            let (t, u, s) = message.counts();
            total -= t;
            unseen -= u;
            size -= s;
            writes.push(Write::Delete {
                key: message.key(),
                condition: Some(Condition::Exists),
            });
            writes.push(Write::delete(keys::message_pointer(&user, &message.id)));
            writes.push(journal::event_write(
                &state.config,
                &user,
                seq + i as i64,
                message.expunge_event(),
            ));
            if archive && !message.draft {
                let entry = Archived {
                    message: message.clone(),
                    archived: now,
                    purge_at: now + keep,
                };
                writes.push(Write::put(entry.item()));
                archived += 1;
            } else {
                gone_for_good.push(message);
            }
        }
        writes.push(mailbox_counters(mailbox, total, unseen, size));
        // Never recreate the profile of a user deleted meanwhile (the janitor purges the rest).
        writes.push(Write::Update {
            key: keys::user(&user),
            update: Update::default()
                .add(STORAGE_USED, size)
                .add(ARCHIVED_COUNT, archived),
            condition: Some(Condition::Exists),
        });
        match journal::commit(
            state.table.as_ref(),
            &state.config,
            &user,
            seq,
            chunk.len(),
            writes,
        )
        .await
        {
            Ok(()) => removed += chunk.len(),
            Err(StoreError::ConditionFailed { .. }) if chunk.len() > 1 => {
                for message in chunk {
                    removed += Box::pin(remove_messages(
                        state,
                        mailbox,
                        vec![message.clone()],
                        archive,
                    ))
                    .await
                    .unwrap_or(0);
                }
                continue;
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        for message in chunk {
            unindex_terms(state, &user, &message.id, &message.terms).await;
        }
        for message in gone_for_good {
            if let Err(e) = state.blobs.delete(&message.blob).await {
                tracing::warn!(error = %e, blob = %message.blob, "blob not removed; the janitor retries");
            }
        }
    }
    Ok(removed)
}

/// `DELETE /users/{user}/mailboxes/{mailbox}/messages/{message}`: into the archive.
pub async fn delete(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
) -> ApiResult<()> {
    let mailbox = mailboxes::load(state, user, mailbox_id).await?;
    let message = load(state, user, mailbox_id, uid)
        .await
        .map_err(|_| ApiError::not_found("MessageNotFound", "Message was not found"))?;
    if remove_messages(state, &mailbox, vec![message], true).await? == 0 {
        return Err(ApiError::not_found(
            "MessageNotFound",
            "Message was not found",
        ));
    }
    Ok(())
}

/// Archives up to `budget` messages of a deleted mailbox (its item is gone; its messages
/// remain in their partition until archived). Removes the janitor task once the mailbox is
/// empty. Returns how many were archived.
pub async fn drain_deleted_mailbox(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    budget: usize,
) -> ApiResult<usize> {
    if state
        .table
        .get(&keys::deleted_mailbox(user, mailbox_id))
        .await?
        .is_none()
    {
        return Ok(0);
    }
    let pk = keys::messages_pk(user, mailbox_id);
    let mut done = 0;
    while done < budget {
        let page = state
            .table
            // Three writes per message (item, pointer, archive entry) plus the profile's:
            // half a BATCH keeps the transaction within 100 writes.
            .query(&Query::table(pk.clone()).limit((BATCH / 2).min(budget - done)))
            .await?;
        if page.items.is_empty() {
            state
                .table
                .transact(vec![Write::delete(keys::deleted_mailbox(user, mailbox_id))])
                .await?;
            break;
        }
        let messages = page
            .items
            .iter()
            .map(from_item)
            .collect::<ApiResult<Vec<_>>>()?;
        let removed = remove_deleted_mailbox_messages(state, user, messages).await?;
        if removed == 0 {
            break;
        }
        done += removed;
    }
    Ok(done)
}

/// Like [`remove_messages`] for a mailbox that is already gone: no mailbox counters or
/// journal (its DELETE event said it all).
async fn remove_deleted_mailbox_messages(
    state: &AppState,
    user: &ObjectId,
    messages: Vec<Message>,
) -> ApiResult<usize> {
    let user = *user;
    let now = Utc::now();
    let keep = chrono::Duration::from_std(state.config.archive_retention)
        .unwrap_or(chrono::Duration::days(14));
    let mut writes = Vec::new();
    let (mut size, mut archived) = (0, 0);
    for message in &messages {
        size -= message.size as i64;
        writes.push(Write::Delete {
            key: message.key(),
            condition: Some(Condition::Exists),
        });
        writes.push(Write::delete(keys::message_pointer(&user, &message.id)));
        if !message.draft {
            let entry = Archived {
                message: message.clone(),
                archived: now,
                purge_at: now + keep,
            };
            writes.push(Write::put(entry.item()));
            archived += 1;
        }
    }
    // A user deleted meanwhile has no quota to keep (and must not get a profile back).
    if state.table.get(&keys::user(&user)).await?.is_some() {
        writes.push(Write::Update {
            key: keys::user(&user),
            update: Update::default()
                .add(STORAGE_USED, size)
                .add(ARCHIVED_COUNT, archived),
            condition: Some(Condition::Exists),
        });
    }
    state.table.transact(writes).await?;
    for message in &messages {
        unindex_terms(state, &user, &message.id, &message.terms).await;
        if message.draft {
            let _ = state.blobs.delete(&message.blob).await;
        }
    }
    Ok(messages.len())
}

// ---------------------------------------------------------------------------------------------
// Flagged messages and search

/// Resolves message ids to the messages themselves (pointer, then item), dropping any that
/// are gone.
pub async fn resolve_ids(
    state: &AppState,
    user: &ObjectId,
    ids: &[ObjectId],
) -> ApiResult<Vec<Message>> {
    let pointers: Vec<Key> = ids
        .iter()
        .map(|id| keys::message_pointer(user, id))
        .collect();
    let mut places = BTreeMap::new();
    for chunk in pointers.chunks(100) {
        for item in state.table.get_many(chunk).await? {
            let mailbox: Option<ObjectId> =
                serde_json::from_value(item.body["mailbox"].clone()).ok();
            let uid = item.body["uid"].as_u64();
            if let (Some(mailbox), Some(uid)) = (mailbox, uid) {
                places.insert(item.sk.clone(), keys::message(user, &mailbox, uid as u32));
            }
        }
    }
    let keys: Vec<Key> = ids
        .iter()
        .filter_map(|id| places.get(&id.to_string()).cloned())
        .collect();
    let mut found = BTreeMap::new();
    for chunk in keys.chunks(100) {
        for item in state.table.get_many(chunk).await? {
            let message = from_item(&item)?;
            found.insert(message.id, message);
        }
    }
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

/// Indexes a message's search terms again (after a restore).
pub async fn reindex(state: &AppState, message: &Message) {
    index_terms(state, &message.user, &message.id, &message.terms).await;
}
