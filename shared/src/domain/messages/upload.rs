//! Storing a new message: the blob first (with a pending-blob marker the janitor can find),
//! then the one transaction that makes it visible and counted; staged uploads for messages
//! larger than a request body.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::read::PRESIGNED_FOR;
use super::threads::resolve_thread;
use super::{
    ALREADY_STORED, DraftInfo, MAX_MESSAGE_SIZE, Message, OVER_QUOTA, UID_TAKEN, UPLOAD_SETTLED,
    allocate_uids, mailbox_counters, retention_expiry,
};
use crate::domain::mailboxes::{self, StoredMailbox};
use crate::domain::state::SearchWrites;
use crate::domain::users::{self, STORAGE_USED, StoredUser};
use crate::domain::webhooks;
use crate::domain::{AppState, DomainError, DomainResult, journal, keys, unix_now};
use crate::id::ObjectId;
use crate::mail::parse::{self, ParsedMessage};
use crate::store::{Condition, Item, Key, StoreError, Update, Write};

/// The SMTP envelope of a delivered message: MAIL FROM (`""` for the null sender) and the
/// RCPT TO it was delivered for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: String,
    pub to: String,
}

/// A message to store, validated. `Default` lets other entry points (delivery) name only
/// what they set.
#[derive(Default)]
pub struct Upload {
    /// The source; a large one may be a memory-mapped spool (see `BlobStore::spool`).
    pub raw: Bytes,
    /// A message uploaded beforehand through `POST /users/{user}/uploads` (large messages).
    pub staged: Option<ObjectId>,
    pub seen: bool,
    pub flagged: bool,
    pub draft: bool,
    /// The other flags, which only an account import sets on a new message.
    pub answered: bool,
    pub forwarded: bool,
    pub deleted: bool,
    pub date: Option<DateTime<Utc>>,
    pub meta_data: Option<String>,
    pub idempotency_key: Option<String>,
    pub source: &'static str,
    /// Set by delivery: the STORE event then records the envelope's from and to.
    pub envelope: Option<Envelope>,
    /// Set by delivery: the filters that matched, recorded on the STORE event.
    pub filters: Vec<ObjectId>,
    /// Set by submissions: the queue ids that sent this copy.
    pub outbound: Vec<ObjectId>,
    /// Set by composed uploads and submissions: what sending the draft later needs.
    pub draft_info: Option<DraftInfo>,
}

/// Where a stored message is: its mailbox, UID and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub id: ObjectId,
    pub mailbox: ObjectId,
    pub uid: u32,
    pub size: u64,
}

fn idempotency_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The quota a user may fill, in bytes.
pub fn allowed_storage(state: &AppState, user: &StoredUser) -> i64 {
    user.quota(&state.config) as i64
}

/// Stores a message in a mailbox: blob first, then the one transaction that makes it visible.
/// A retry with the same `Idempotency-Key` returns the first result and stores nothing.
pub async fn store(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    mut upload: Upload,
) -> DomainResult<Stored> {
    let owner = users::load(state, user).await?;
    if owner.user.disabled {
        return Err(DomainError::UserDisabled);
    }
    let mailbox = mailboxes::load(state, user, mailbox_id).await?;
    let idempotency = upload
        .idempotency_key
        .as_deref()
        .map(|k| keys::idempotency(user, &idempotency_hash(k)));
    if let Some(key) = &idempotency
        && let Some(done) = state.table.get(key).await?
    {
        return done
            .body_as()
            .map_err(|e| DomainError::corrupt("idempotency record", &key.sk, e));
    }
    let staged_key = upload.staged.map(|id| staged_upload_blob(user, &id));
    if let Some(key) = &staged_key {
        let staged = state.blobs.get(key).await?.ok_or_else(|| {
            DomainError::invalid("upload", "\"upload\" names no uploaded message")
        })?;
        if staged.is_empty() || staged.len() > MAX_MESSAGE_SIZE {
            return Err(DomainError::invalid(
                "upload",
                format!("the uploaded message must be 1 to {MAX_MESSAGE_SIZE} bytes"),
            ));
        }
        upload.raw = staged;
    }
    let raw = encrypt_if_wanted(&owner, &mailbox, std::mem::take(&mut upload.raw))?;
    let size = raw.len() as i64;
    let allowed = allowed_storage(state, &owner);
    if owner.storage_used + size > allowed {
        return Err(DomainError::OverQuota);
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
        .transact(vec![Write::put_new(
            pending_blob_marker(&pending, &blob, now),
            UPLOAD_SETTLED,
        )])
        .await?;
    // A cheap copy (shared bytes), for the audits that keep this message.
    let kept = raw.clone();
    if let Err(e) = state.blobs.put(&blob, raw).await {
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
        &kept,
    )
    .await;
    match result {
        Ok(stored) => {
            crate::domain::address_register::record(state, user, &mailbox, &parsed).await;
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
                        DomainError::Internal(anyhow::anyhow!("idempotency record vanished"))
                    })?;
                    done.body_as()
                        .map_err(|e| DomainError::corrupt("idempotency record", &key.sk, e))
                }
                (Commit::Duplicate, None) => Err(DomainError::Internal(anyhow::anyhow!(
                    "duplicate without a key"
                ))),
                (Commit::Failed(e), _) => Err(e),
            }
        }
    }
}

enum Commit {
    Duplicate,
    Failed(DomainError),
}

/// Seconds after which the janitor takes a blob whose message never committed: far beyond
/// any request's time (a Lambda runs 15 minutes at most).
pub const PENDING_BLOB_SECONDS: i64 = 3600;
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

impl From<DomainError> for Commit {
    fn from(e: DomainError) -> Self {
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
    raw: &Bytes,
) -> Result<Stored, Commit> {
    let user = &owner.user.id;
    // Independent: asked for together, the two counters share a commit of the embedded store
    // (and, on DynamoDB, one round trip's time). A failure leaves at most a gap in UIDs or in
    // the journal, as a failed commit does.
    let (thread, uid, seq) = tokio::join!(
        resolve_thread(state, user, parsed),
        allocate_uids(state, mailbox, 1),
        journal::reserve(state.table.as_ref(), user, 1),
    );
    let ((thread, thread_writes), uid, seq) = (thread?, uid?, seq?);
    let now = Utc::now();
    let mut message = Message {
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
        deleted: upload.deleted,
        answered: upload.answered,
        forwarded: upload.forwarded,
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
        // Kept on the item only to remove the term items again; the full-text index needs
        // none (and a listing then decodes no terms).
        terms: if state.search_writes == SearchWrites::Terms {
            parsed.search_terms.clone()
        } else {
            Vec::new()
        },
        meta_data: upload.meta_data.clone(),
        source: upload.source.to_string(),
        envelope: upload.envelope.clone(),
        outbound: upload.outbound.clone(),
        draft_info: upload.draft_info.clone(),
        revision: 0,
    };
    message.fit_item();
    let stored = Stored {
        id,
        mailbox: mailbox.mailbox.id,
        uid,
        size: size as u64,
    };
    let (total, unseen, bytes) = message.counts();
    let mut writes = vec![
        Write::put_new(message.item(mailbox), UID_TAKEN),
        Write::Update {
            key: keys::user(user),
            update: Update::default().add(STORAGE_USED, size),
            guard: Some(
                Condition::CounterAtMost(STORAGE_USED.into(), allowed - size).labeled(OVER_QUOTA),
            ),
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
    if let Some(key) = idempotency {
        let expires = unix_now() + 24 * 3600;
        writes.push(Write::put_new(
            Item::new(
                key.clone(),
                serde_json::to_value(&stored).unwrap_or_default(),
            )
            .with_expiry(expires),
            ALREADY_STORED,
        ));
    }
    writes.extend(thread_writes);
    writes.push(Write::delete(keys::pending_blob(user, &id)).when(
        Condition::CounterEquals(PENDING_DOOMED.into(), 0),
        UPLOAD_SETTLED,
    ));
    match journal::commit(state.table.as_ref(), &state.config, user, seq, 1, writes).await {
        Ok(()) => {
            super::indexing::index_new(state, &message, parsed).await;
            webhooks::publish(state, webhooks::message_new(&message)).await;
            crate::domain::audit::on_stored(state, &message, mailbox, raw).await;
            Ok(stored)
        }
        Err(StoreError::ConditionFailed {
            label: UPLOAD_SETTLED,
        }) => Err(Commit::Failed(DomainError::Internal(anyhow::anyhow!(
            "the upload outlived its pending-blob marker; the janitor took the blob"
        )))),
        Err(StoreError::ConditionFailed { label: OVER_QUOTA }) => {
            Err(Commit::Failed(DomainError::OverQuota))
        }
        Err(StoreError::ConditionFailed {
            label: mailboxes::MAILBOX_GONE,
        }) => Err(Commit::Failed(DomainError::MailboxNotFound(
            "This mailbox does not exist",
        ))),
        Err(StoreError::ConditionFailed {
            label: ALREADY_STORED,
        }) => Err(Commit::Duplicate),
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
    raw: Bytes,
) -> DomainResult<Bytes> {
    let wanted = owner.user.encrypt_messages || mailbox.mailbox.encrypt_messages;
    match (&owner.user.pub_key, wanted) {
        #[cfg(feature = "pgp")]
        (Some(key), true) => match crate::mail::encrypt::encrypt_message(&raw, key) {
            Ok(Some(encrypted)) => Ok(encrypted.into()),
            Ok(None) => Ok(raw),
            Err(e) => Err(DomainError::Internal(anyhow::anyhow!(
                "encryption failed: {e}"
            ))),
        },
        // Every function that stores messages is built with `pgp` (see shared/Cargo.toml).
        #[cfg(not(feature = "pgp"))]
        (Some(_), true) => Err(DomainError::Internal(anyhow::anyhow!(
            "this function was built without PGP support and can't encrypt"
        ))),
        _ => Ok(raw),
    }
}

/// Where a staged (large) upload is kept until it is stored as a message.
pub(super) fn staged_upload_blob(user: &ObjectId, id: &ObjectId) -> String {
    format!("uploads/{user}/{id}.eml")
}

/// Where a client puts a large message (`PUT` to `url` before `expires`), to store it with
/// `POST .../messages {"upload": id}`.
pub struct StagedUpload {
    pub id: ObjectId,
    pub url: String,
    pub expires: DateTime<Utc>,
}

/// `POST /users/{user}/uploads`: a place to put a large message before storing it with
/// `POST .../messages {"upload": id}`. On S3 the URL is presigned (the bytes never pass
/// through Lambda); locally it is this API's `PUT /users/{user}/uploads/{id}`.
pub async fn create_upload(state: &AppState, user: &ObjectId) -> DomainResult<StagedUpload> {
    users::load(state, user).await?;
    let id = ObjectId::new();
    let key = staged_upload_blob(user, &id);
    let url = match state.blobs.presign_put(&key, PRESIGNED_FOR).await? {
        Some(url) => url,
        None => format!("/users/{user}/uploads/{id}"),
    };
    let expires = Utc::now() + chrono::Duration::from_std(PRESIGNED_FOR).unwrap_or_default();
    Ok(StagedUpload { id, url, expires })
}

/// `PUT /users/{user}/uploads/{upload}`: the bytes of a staged upload, through the API (for
/// stores that can't presign).
pub async fn put_upload(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    raw: Bytes,
) -> DomainResult<()> {
    users::load(state, user).await?;
    if raw.is_empty() || raw.len() > MAX_MESSAGE_SIZE {
        return Err(DomainError::invalid(
            "body",
            format!("the message must be 1 to {MAX_MESSAGE_SIZE} bytes"),
        ));
    }
    state.blobs.put(&staged_upload_blob(user, id), raw).await?;
    Ok(())
}
