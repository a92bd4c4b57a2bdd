//! Sending mail: `POST /users/{user}/submit` (compose and send), sending a stored draft
//! (`POST .../messages/{message}/submit`), forwarding a stored message (`.../forward`) and
//! cancelling a scheduled send (`DELETE /users/{user}/outbound/{queueId}`), all through one
//! outbound queue.
//!
//! A submission is a queue item `OUTBOUND#<user>` / `<queue id>` with the message as it is
//! sent (no `Bcc`) in a blob, the copy to store (the Sent folder's, `Bcc` kept) in another,
//! the recipients and the send time; while it has work left it is listed on gsi1 `TASKS` at
//! its due time. Whoever works on it (the request that made it, or the janitor) first claims
//! it with a lease (counter `lease`, changed under `CounterEquals`), so two workers never send
//! the same mail at once; a worker that dies leaves the lease to run out and the janitor to
//! take over. The stored copy is made once (an idempotency key of the queue id); local
//! recipients are delivered through the delivery pipeline with the queue id as the delivery
//! id (once each, even when retried); other recipients go to the outbound mailer. Deferred
//! recipients are retried with growing pauses, at most [`MAX_ATTEMPTS`] times.
//!
//! The user's daily recipients limit (`limits.recipients`, else `EIDER_MAX_RECIPIENTS`) is
//! counted per UTC day in `SENDLIMIT#<user>` / `W#<day>`, reserved atomically before a mail is
//! queued, so parallel submissions can't exceed it.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::compose::{self, ComposeFields, Prepared};
use super::mailboxes;
use super::messages::{
    self, FlagChanges, Message, MessageUpdate, Reference, ReferenceAction, Selector, Stored, Upload,
};
use super::storage;
use super::users::{self, StoredUser};
use super::{AppState, DomainError, DomainResult, keys, unix_now};
use crate::id::ObjectId;
use crate::mail::compose::{MailAddress, rewrite_headers};
use crate::store::{Condition, Item, Key, StoreError, Update, Write};

/// Recipients one message may have (WildDuck's `const:max:rcpt_to`).
pub const MAX_RECIPIENTS_PER_MESSAGE: usize = 400;
/// How long a worker holds a claimed queue item.
const LEASE_SECONDS: i64 = 300;
/// Deliveries tried per deferred recipient before it is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// A `sendTime` further ahead than this is refused.
pub const MAX_SCHEDULE_DAYS: i64 = 30;

const LEASE: &str = "lease";
const SENT_COUNTER: &str = "sent";
/// Labels of the conditions on queue and limit items.
const QUEUED: &str = "queue item exists";
const LEASE_TAKEN: &str = "queue item claimed";
const OVER_LIMIT: &str = "daily recipients limit";

// ---------------------------------------------------------------------------------------------
// The dispatcher: where queued mail goes

/// What became of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryStatus {
    /// Stored in a local mailbox, or accepted by the outbound mailer.
    Delivered,
    /// A temporary failure: tried again later.
    Deferred,
    /// Refused for good (no such local user, over quota, refused by the mailer).
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    pub recipient: String,
    pub status: DeliveryStatus,
    /// What the recipient's side answered (a mailbox, an SES id, an error).
    pub response: String,
    pub time: DateTime<Utc>,
}

/// One queued mail, handed to the dispatcher.
pub struct Dispatch<'a> {
    pub queue_id: &'a ObjectId,
    pub user: &'a ObjectId,
    /// MAIL FROM.
    pub from: &'a str,
    pub recipients: &'a [String],
    pub raw: &'a [u8],
}

/// Sends queued mail: the delivery pipeline implements it (`domain::delivery`).
#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// One result per recipient, in any order.
    async fn dispatch(&self, mail: &Dispatch<'_>) -> Vec<Delivered>;
}

// ---------------------------------------------------------------------------------------------
// The queue

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum QueueStatus {
    /// Work left: recipients to send to (now or at `sendTime`).
    Queued,
    /// Every recipient has a final result.
    Done,
    Cancelled,
}

/// The copy a submission stores (once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyPlan {
    pub mailbox: ObjectId,
    /// The stored form (Bcc kept).
    pub blob: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedMail {
    pub id: ObjectId,
    pub user: ObjectId,
    /// `submit` or `forward`.
    pub reason: String,
    pub from: String,
    /// Recipients still to send to.
    pub recipients: Vec<String>,
    pub send_time: DateTime<Utc>,
    pub created: DateTime<Utc>,
    /// The form that is sent.
    pub blob: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Stored>,
    /// The copy did not fit into the quota (the mail is sent anyway, as in WildDuck).
    #[serde(default)]
    pub over_quota: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// The draft this submission replaces: removed once the copy is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<(ObjectId, u32)>,
    /// Storage files to delete once sent (`deleteFiles`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_files: Vec<ObjectId>,
    pub status: QueueStatus,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub results: Vec<Delivered>,
    /// The reference got its `\Answered` / `$Forwarded` flag.
    #[serde(default)]
    pub referenced_flagged: bool,
}

impl QueuedMail {
    fn key(&self) -> Key {
        keys::outbound(&self.user, &self.id)
    }

    /// The item with its task entry while work is left, due at `due`.
    fn body_update(&self, due: DateTime<Utc>) -> Update {
        let entry = (self.status == QueueStatus::Queued)
            .then(|| keys::outbound_task(due.timestamp(), &self.user, &self.id));
        Update {
            body: Some(serde_json::to_value(self).unwrap_or_default()),
            gsi1: Some(entry),
            ..Default::default()
        }
    }
}

fn sent_blob(user: &ObjectId, id: &ObjectId) -> String {
    format!("outbound/{user}/{id}.eml")
}

fn copy_blob(user: &ObjectId, id: &ObjectId) -> String {
    format!("outbound/{user}/{id}.copy.eml")
}

/// The blob prefix of a user's queued mail (for purging a deleted user).
pub fn blob_prefix(user: &ObjectId) -> String {
    format!("outbound/{user}/")
}

/// Puts a new queue item, claimed by the caller when `claimed`.
async fn enqueue(
    state: &AppState,
    mail: &QueuedMail,
    claimed: bool,
    extra: Vec<Write>,
) -> DomainResult<()> {
    let lease = if claimed {
        unix_now() + LEASE_SECONDS
    } else {
        0
    };
    let item = Item::new(mail.key(), serde_json::to_value(mail).unwrap_or_default())
        .with_gsi1(keys::outbound_task(
            mail.send_time.timestamp(),
            &mail.user,
            &mail.id,
        ))
        .with_counter(LEASE, lease);
    let mut writes = vec![Write::put_new(item, QUEUED)];
    writes.extend(extra);
    state.table.transact(writes).await?;
    Ok(())
}

/// Claims the queue item at `key` for [`LEASE_SECONDS`]: `None` when it is finished, gone, or
/// held by another worker.
async fn claim(state: &AppState, key: &Key) -> DomainResult<Option<QueuedMail>> {
    let Some(item) = state.table.get(key).await? else {
        return Ok(None);
    };
    let mail: QueuedMail = item
        .body_as()
        .map_err(|e| DomainError::corrupt("queued mail", &item.sk, e))?;
    if mail.status != QueueStatus::Queued {
        return Ok(None);
    }
    let now = unix_now();
    let held = item.counter(LEASE);
    if held > now {
        return Ok(None);
    }
    let update = Update::default().add(LEASE, now + LEASE_SECONDS - held);
    match state
        .table
        .update(
            key,
            update,
            Some(Condition::CounterEquals(LEASE.into(), held).labeled(LEASE_TAKEN)),
        )
        .await
    {
        Ok(_) => Ok(Some(mail)),
        Err(StoreError::ConditionFailed { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Saves a claimed item and lets go of it (the lease ends now), due again at `due`.
async fn release(state: &AppState, mail: &QueuedMail, due: DateTime<Utc>) -> DomainResult<()> {
    let key = mail.key();
    let held = state
        .table
        .get(&key)
        .await?
        .map(|i| i.counter(LEASE))
        .unwrap_or(0);
    let mut update = mail.body_update(due);
    update = update.add(LEASE, -held);
    match state
        .table
        .update(&key, update, Some(Condition::Exists.labeled(QUEUED)))
        .await
    {
        Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pause before attempt `n + 1` of a deferred recipient: 1, 2, 4 ... minutes, at most 2 h.
fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::minutes((1i64 << attempts.min(7)).min(120))
}

/// Works on a claimed item: stores its copy (once), and when it is due at `now` sends to the
/// recipients left, then saves it and lets go.
async fn work(state: &AppState, mail: &mut QueuedMail, now: DateTime<Utc>) -> DomainResult<()> {
    // A deleted user's mail is not sent any more.
    if let Err(DomainError::UserNotFound(_)) = users::load(state, &mail.user).await {
        mail.status = QueueStatus::Cancelled;
        return release(state, mail, now).await;
    }
    if let Some(copy) = mail.copy.clone()
        && mail.stored.is_none()
        && !mail.over_quota
    {
        store_copy(state, mail, &copy).await?;
    }
    if mail.send_time > now {
        return release(state, mail, mail.send_time).await;
    }
    let Some(dispatcher) = state.dispatcher.clone() else {
        // Nothing here can send: the janitor (which can) takes it up.
        return release(state, mail, now).await;
    };
    let raw = state.blobs.get(&mail.blob).await?.ok_or_else(|| {
        DomainError::Internal(anyhow::anyhow!("queued blob {} is missing", mail.blob))
    })?;
    let results = dispatcher
        .dispatch(&Dispatch {
            queue_id: &mail.id,
            user: &mail.user,
            from: &mail.from,
            recipients: &mail.recipients,
            raw: &raw,
        })
        .await;
    mail.attempts += 1;
    let give_up = mail.attempts >= MAX_ATTEMPTS;
    let mut left = Vec::new();
    for mut result in results {
        if result.status == DeliveryStatus::Deferred && give_up {
            result.status = DeliveryStatus::Rejected;
            result.response = format!("gave up after {MAX_ATTEMPTS} attempts: {}", result.response);
        }
        if result.status == DeliveryStatus::Deferred {
            left.push(result.recipient.clone());
        }
        tracing::info!(queue = %mail.id, user = %mail.user, recipient = %result.recipient, status = ?result.status, response = %result.response, "outbound");
        mail.results
            .retain(|r| !r.recipient.eq_ignore_ascii_case(&result.recipient));
        mail.results.push(result);
    }
    mail.recipients = left;
    let any_delivered = mail
        .results
        .iter()
        .any(|r| r.status == DeliveryStatus::Delivered);
    if any_delivered && !mail.referenced_flagged {
        if let Some(reference) = &mail.reference {
            flag_reference(state, &mail.user, reference).await;
        }
        mail.referenced_flagged = true;
    }
    if mail.recipients.is_empty() {
        mail.status = QueueStatus::Done;
        for file in std::mem::take(&mut mail.delete_files) {
            if let Err(e) = storage::delete(state, &mail.user, &file).await
                && !matches!(e, DomainError::FileNotFound)
            {
                tracing::warn!(queue = %mail.id, file = %file, error = %e, "draft file not deleted");
            }
        }
    }
    release(state, mail, now + backoff(mail.attempts)).await
}

/// Stores the submission's copy (Sent folder, or the given mailbox), once.
async fn store_copy(state: &AppState, mail: &mut QueuedMail, copy: &CopyPlan) -> DomainResult<()> {
    let raw = state.blobs.get(&copy.blob).await?.ok_or_else(|| {
        DomainError::Internal(anyhow::anyhow!("copy blob {} is missing", copy.blob))
    })?;
    let upload = Upload {
        raw: raw.clone(),
        seen: true,
        source: "API",
        outbound: vec![mail.id],
        idempotency_key: Some(format!("outbound:{}", mail.id)),
        ..Default::default()
    };
    match messages::store(state, &mail.user, &copy.mailbox, upload).await {
        Ok(stored) => mail.stored = Some(stored),
        Err(DomainError::OverQuota) => mail.over_quota = true,
        // The folder went away meanwhile: the copy goes to INBOX rather than nowhere.
        Err(DomainError::MailboxNotFound(_)) => {
            let inbox = mailboxes::inbox(state, &mail.user).await?;
            let upload = Upload {
                raw: raw.clone(),
                seen: true,
                source: "API",
                outbound: vec![mail.id],
                idempotency_key: Some(format!("outbound:{}", mail.id)),
                ..Default::default()
            };
            mail.stored =
                Some(messages::store(state, &mail.user, &inbox.mailbox.id, upload).await?);
        }
        Err(e) => return Err(e),
    }
    if let Some((mailbox, uid)) = mail.replaces.take() {
        remove_draft(state, &mail.user, &mailbox, uid).await;
    }
    let _ = state.blobs.delete(&copy.blob).await;
    Ok(())
}

/// Removes the draft a submission replaces (drafts are not archived); gone already is fine.
async fn remove_draft(state: &AppState, user: &ObjectId, mailbox: &ObjectId, uid: u32) {
    let result = async {
        let stored = mailboxes::load(state, user, mailbox).await?;
        let draft = messages::load(state, user, mailbox, uid).await?;
        messages::remove_messages(state, &stored, vec![draft], true).await
    }
    .await;
    match result {
        Ok(_) | Err(DomainError::MessageNotFound(_)) | Err(DomainError::MailboxNotFound(_)) => {}
        Err(e) => tracing::warn!(user = %user, error = %e, "replaced draft not removed"),
    }
}

/// `\Answered` on the message replied to, `\Answered $Forwarded` on one forwarded (with the
/// FETCH journal entry). Best effort: the mail is sent whatever happens here.
async fn flag_reference(state: &AppState, user: &ObjectId, reference: &Reference) {
    let changes = FlagChanges {
        answered: Some(true),
        forwarded: (reference.action == ReferenceAction::Forward).then_some(true),
        ..Default::default()
    };
    let request = MessageUpdate {
        selector: Selector::List(vec![reference.uid]),
        move_to: None,
        changes,
    };
    if let Err(e) = messages::update(state, user, &reference.mailbox, request).await {
        tracing::info!(user = %user, error = %e, "referenced message not flagged");
    }
}

/// Works on the queue item at `key` if it can be claimed (the janitor's entry point, with the
/// run's notion of now). Returns whether it was worked on.
pub async fn work_on(state: &AppState, key: &Key, now: DateTime<Utc>) -> DomainResult<bool> {
    let Some(mut mail) = claim(state, key).await? else {
        return Ok(false);
    };
    work(state, &mut mail, now).await?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// The daily recipients limit

fn day_window(now: i64) -> i64 {
    now.div_euclid(86_400)
}

/// The user's limit of recipients per day.
fn recipients_limit(state: &AppState, owner: &StoredUser) -> u64 {
    match owner.user.limits.recipients {
        0 => state.config.max_recipients(),
        n => n,
    }
}

/// How many recipients the user has sent to today (for `limits.recipients.used`).
pub async fn recipients_used(state: &AppState, user: &ObjectId) -> DomainResult<(u64, i64)> {
    let now = unix_now();
    let window = day_window(now);
    let used = state
        .table
        .get(&keys::send_limit(user, window))
        .await?
        .map(|i| i.counter(SENT_COUNTER).max(0) as u64)
        .unwrap_or(0);
    Ok((used, (window + 1) * 86_400 - now))
}

/// Takes `n` recipients from today's limit, or refuses with the time until it renews.
async fn reserve_recipients(state: &AppState, owner: &StoredUser, n: usize) -> DomainResult<()> {
    if n > MAX_RECIPIENTS_PER_MESSAGE {
        return Err(DomainError::TooMany {
            message: "Your email has too many recipients",
            allowed: Some(MAX_RECIPIENTS_PER_MESSAGE as u64),
        });
    }
    let limit = recipients_limit(state, owner) as i64;
    let now = unix_now();
    let window = day_window(now);
    let key = keys::send_limit(&owner.user.id, window);
    let renews_in = (window + 1) * 86_400 - now;
    // The day's counter, made once (its expiry a day after the window ends).
    let counter = Item::new(key.clone(), json!(null))
        .with_counter(SENT_COUNTER, 0)
        .with_expiry((window + 2) * 86_400);
    match state
        .table
        .transact(vec![Write::put_new(counter, QUEUED)])
        .await
    {
        Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let n = n as i64;
    match state
        .table
        .update(
            &key,
            Update::default().add(SENT_COUNTER, n),
            Some(Condition::CounterAtMost(SENT_COUNTER.into(), limit - n).labeled(OVER_LIMIT)),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed { .. }) => Err(DomainError::SendingLimit {
            expires_in: renews_in,
        }),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Submissions

/// A `POST /users/{user}/submit` request.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub fields: ComposeFields,
    /// Where the copy goes: by default Drafts for a draft, else Sent.
    pub mailbox: Option<ObjectId>,
    /// Store as a draft; send nothing.
    pub is_draft: bool,
    /// Store only; send nothing, check no sender.
    pub upload_only: bool,
    /// A draft to remove once the copy is stored.
    pub replaces: Option<(ObjectId, u32)>,
    pub send_time: Option<DateTime<Utc>>,
    /// The SMTP envelope, when it differs from the headers.
    pub envelope_from: Option<MailAddress>,
    pub envelope_to: Option<Vec<MailAddress>>,
    pub idempotency_key: Option<String>,
}

/// What a submission answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submitted {
    /// The stored copy (`None` when it could not be stored: over quota).
    pub stored: Option<Stored>,
    pub queue_id: Option<ObjectId>,
    pub over_quota: bool,
}

fn check_sendable(owner: &StoredUser) -> DomainResult<()> {
    if owner.user.disabled || owner.user.suspended {
        return Err(DomainError::UserDisabled);
    }
    Ok(())
}

fn check_send_time(
    send_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DomainResult<DateTime<Utc>> {
    match send_time {
        Some(t) if t > now + chrono::Duration::days(MAX_SCHEDULE_DAYS) => {
            Err(DomainError::invalid(
                "sendTime",
                format!("\"sendTime\" must be within {MAX_SCHEDULE_DAYS} days"),
            ))
        }
        Some(t) => Ok(t.max(now)),
        None => Ok(now),
    }
}

/// The idempotency record of a submission: the queue id it made, or the copy it stored.
fn idempotency_key(user: &ObjectId, key: &str) -> Key {
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(format!("submit\n{key}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    keys::idempotency(user, &digest)
}

/// `POST /users/{user}/submit`.
pub async fn submit(
    state: &AppState,
    user: &ObjectId,
    request: Submission,
) -> DomainResult<Submitted> {
    let owner = users::load(state, user).await?;
    check_sendable(&owner)?;
    let now = Utc::now();
    let send_time = check_send_time(request.send_time, now)?;
    let idempotency = request
        .idempotency_key
        .as_deref()
        .map(|k| idempotency_key(user, k));
    if let Some(key) = &idempotency
        && let Some(done) = state.table.get(key).await?
    {
        return replay(state, user, &done.body).await;
    }
    let mut fields = request.fields;
    if fields.date.is_none() {
        fields.date = Some(send_time);
    }
    let files = fields.files.clone();
    let prepared = compose::prepare(state, &owner, fields, !request.upload_only).await?;
    let own = compose::own_addresses(state, user).await?;
    let envelope_from = match request.envelope_from {
        Some(from) if !request.upload_only => {
            compose::checked_sender(&owner, &own, Some(from))?.address
        }
        Some(from) => from.address,
        None => prepared.from.address.clone(),
    };
    let recipients: Vec<String> = match &request.envelope_to {
        Some(to) => dedupe(to.iter().map(|a| a.address.clone())),
        None => prepared.header_recipients(),
    };
    let deliver = !request.is_draft && !request.upload_only && !recipients.is_empty();
    let target = match request.mailbox {
        Some(id) => mailboxes::load(state, user, &id).await?.mailbox.id,
        None if request.is_draft => {
            mailboxes::special_or_inbox(state, user, "\\Drafts")
                .await?
                .mailbox
                .id
        }
        None => {
            mailboxes::special_or_inbox(state, user, "\\Sent")
                .await?
                .mailbox
                .id
        }
    };

    if !deliver {
        let upload = Upload {
            raw: prepared.raw(true).into(),
            seen: true,
            draft: request.is_draft,
            source: "API",
            draft_info: Some(prepared.draft_info(recipients, files)),
            idempotency_key: request.idempotency_key.map(|k| format!("submit:{k}")),
            ..Default::default()
        };
        let stored = messages::store(state, user, &target, upload).await?;
        if let Some((mailbox, uid)) = request.replaces {
            remove_draft(state, user, &mailbox, uid).await;
        }
        return Ok(Submitted {
            stored: Some(stored),
            queue_id: None,
            over_quota: false,
        });
    }

    reserve_recipients(state, &owner, recipients.len()).await?;
    let id = ObjectId::new();
    let mut mail = QueuedMail {
        id,
        user: *user,
        reason: "submit".into(),
        from: envelope_from,
        recipients,
        send_time,
        created: now,
        blob: sent_blob(user, &id),
        copy: Some(CopyPlan {
            mailbox: target,
            blob: copy_blob(user, &id),
        }),
        stored: None,
        over_quota: false,
        reference: prepared.reference.clone(),
        replaces: request.replaces,
        delete_files: Vec::new(),
        status: QueueStatus::Queued,
        attempts: 0,
        results: Vec::new(),
        referenced_flagged: false,
    };
    queue_and_work(
        state,
        &mut mail,
        prepared.raw(false),
        Some(prepared.raw(true)),
        idempotency,
    )
    .await?;
    Ok(Submitted {
        stored: mail.stored.clone(),
        queue_id: Some(id),
        over_quota: mail.over_quota,
    })
}

fn dedupe(addresses: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in addresses {
        let a = a.trim().to_string();
        if !a.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(&a)) {
            out.push(a);
        }
    }
    out
}

/// Writes the blobs, queues `mail` claimed (with the idempotency record), and works on it at
/// once: its copy is stored before this returns, and it is sent now when it is due now.
async fn queue_and_work(
    state: &AppState,
    mail: &mut QueuedMail,
    sent: Vec<u8>,
    copy: Option<Vec<u8>>,
    idempotency: Option<Key>,
) -> DomainResult<()> {
    state.blobs.put(&mail.blob, Bytes::from(sent)).await?;
    if let (Some(plan), Some(copy)) = (&mail.copy, copy) {
        state.blobs.put(&plan.blob, Bytes::from(copy)).await?;
    }
    let extra = idempotency
        .map(|key| {
            Write::put_new(
                Item::new(key, json!({ "queue": mail.id })).with_expiry(unix_now() + 86_400),
                QUEUED,
            )
        })
        .into_iter()
        .collect();
    enqueue(state, mail, true, extra).await?;
    work(state, mail, Utc::now()).await
}

/// The answer of a submission already made with the same idempotency key.
async fn replay(
    state: &AppState,
    user: &ObjectId,
    record: &serde_json::Value,
) -> DomainResult<Submitted> {
    let queue: Option<ObjectId> = serde_json::from_value(record["queue"].clone()).ok();
    let Some(queue) = queue else {
        return Err(DomainError::Internal(anyhow::anyhow!(
            "unreadable submission record"
        )));
    };
    let item = state
        .table
        .get(&keys::outbound(user, &queue))
        .await?
        .ok_or(DomainError::QueueEntryNotFound)?;
    let mail: QueuedMail = item
        .body_as()
        .map_err(|e| DomainError::corrupt("queued mail", queue.to_string(), e))?;
    Ok(Submitted {
        stored: mail.stored,
        queue_id: Some(queue),
        over_quota: mail.over_quota,
    })
}

/// What sending a draft answers.
pub struct SentDraft {
    /// `None`: the draft had no recipients, nothing was sent.
    pub queue_id: Option<ObjectId>,
    pub stored: Option<Stored>,
}

/// `POST /users/{user}/mailboxes/{mailbox}/messages/{message}/submit`: sends a stored draft;
/// it moves to Sent (a new UID) with `\Seen`, without `\Draft`.
pub async fn submit_draft(
    state: &AppState,
    user: &ObjectId,
    mailbox: &ObjectId,
    uid: u32,
    delete_files: bool,
    send_time: Option<DateTime<Utc>>,
) -> DomainResult<SentDraft> {
    let owner = users::load(state, user).await?;
    check_sendable(&owner)?;
    let draft = messages::load(state, user, mailbox, uid).await?;
    if !draft.draft {
        return Err(DomainError::MessageNotDraft);
    }
    let now = Utc::now();
    let send_time = check_send_time(send_time, now)?;
    let info = draft.draft_info.clone().unwrap_or_default();
    let own = compose::own_addresses(state, user).await?;
    let header_from = draft
        .from
        .iter()
        .find(|a| !a.address.is_empty())
        .map(|a| MailAddress::new(Some(a.name.clone()), a.address.clone()));
    let from = info
        .envelope_from
        .clone()
        .map(|a| MailAddress::new(None, a))
        .or(header_from);
    let from = compose::checked_sender(&owner, &own, from)?.address;
    let recipients = if info.envelope_to.is_empty() {
        dedupe(
            draft
                .to
                .iter()
                .chain(&draft.cc)
                .chain(&draft.bcc)
                .map(|a| a.address.clone()),
        )
    } else {
        dedupe(info.envelope_to.iter().cloned())
    };
    if recipients.is_empty() {
        return Ok(SentDraft {
            queue_id: None,
            stored: None,
        });
    }
    reserve_recipients(state, &owner, recipients.len()).await?;
    let raw =
        state.blobs.get(&draft.blob).await?.ok_or_else(|| {
            DomainError::Internal(anyhow::anyhow!("blob {} is missing", draft.blob))
        })?;
    let date = send_time.to_rfc2822().replace("GMT", "+0000");
    let stored_form = rewrite_headers(&raw, &["date"], &[("Date", date.clone())]);
    let sent_form = rewrite_headers(&raw, &["date", "bcc"], &[("Date", date)]);
    let sent = mailboxes::special_or_inbox(state, user, "\\Sent").await?;
    let id = ObjectId::new();
    let mut mail = QueuedMail {
        id,
        user: *user,
        reason: "submit".into(),
        from,
        recipients,
        send_time,
        created: now,
        blob: sent_blob(user, &id),
        copy: Some(CopyPlan {
            mailbox: sent.mailbox.id,
            blob: copy_blob(user, &id),
        }),
        stored: None,
        over_quota: false,
        reference: info.reference.clone(),
        replaces: Some((*mailbox, uid)),
        delete_files: if delete_files {
            info.files.clone()
        } else {
            Vec::new()
        },
        status: QueueStatus::Queued,
        attempts: 0,
        results: Vec::new(),
        referenced_flagged: false,
    };
    queue_and_work(state, &mut mail, sent_form, Some(stored_form), None).await?;
    Ok(SentDraft {
        queue_id: Some(id),
        stored: mail.stored,
    })
}

/// What a forward answers.
pub struct Forwarded {
    pub queue_id: Option<ObjectId>,
    pub recipients: Vec<String>,
}

/// `POST .../messages/{message}/forward`: the stored message, as it is, to `addresses`. Unlike
/// WildDuck, it counts against the daily recipients limit (otherwise any user token could
/// relay its stored mail anywhere without limit).
pub async fn forward(
    state: &AppState,
    user: &ObjectId,
    mailbox: &ObjectId,
    uid: u32,
    addresses: Vec<String>,
) -> DomainResult<Forwarded> {
    let owner = users::load(state, user).await?;
    check_sendable(&owner)?;
    let message = messages::load(state, user, mailbox, uid).await?;
    let recipients = dedupe(addresses.into_iter());
    if recipients.is_empty() {
        return Ok(Forwarded {
            queue_id: None,
            recipients,
        });
    }
    reserve_recipients(state, &owner, recipients.len()).await?;
    let raw = state.blobs.get(&message.blob).await?.ok_or_else(|| {
        DomainError::Internal(anyhow::anyhow!("blob {} is missing", message.blob))
    })?;
    let from = message
        .envelope
        .as_ref()
        .map(|e| e.from.clone())
        .or_else(|| owner.user.address.clone())
        .unwrap_or_default();
    let id = ObjectId::new();
    let mut mail = QueuedMail {
        id,
        user: *user,
        reason: "forward".into(),
        from,
        recipients: recipients.clone(),
        send_time: Utc::now(),
        created: Utc::now(),
        blob: sent_blob(user, &id),
        copy: None,
        stored: None,
        over_quota: false,
        reference: None,
        replaces: None,
        delete_files: Vec::new(),
        status: QueueStatus::Queued,
        attempts: 0,
        results: Vec::new(),
        referenced_flagged: false,
    };
    note_outbound(state, &message, id).await;
    queue_and_work(state, &mut mail, raw.to_vec(), None, None).await?;
    Ok(Forwarded {
        queue_id: Some(id),
        recipients,
    })
}

/// Adds a queue id to a stored message's `outbound` (best effort).
async fn note_outbound(state: &AppState, message: &Message, queue: ObjectId) {
    let changes = FlagChanges {
        outbound: Some(queue),
        ..Default::default()
    };
    let request = MessageUpdate {
        selector: Selector::List(vec![message.uid]),
        move_to: None,
        changes,
    };
    if let Err(e) = messages::update(state, &message.user, &message.mailbox, request).await {
        tracing::info!(message = %message.id, error = %e, "outbound id not noted");
    }
}

/// What cancelling answers.
pub struct Cancelled {
    /// Recipients that will not get the mail now.
    pub deleted: usize,
}

/// `DELETE /users/{user}/outbound/{queueId}`: a queued mail that is not being sent right now
/// is cancelled; its remaining recipients never get it.
pub async fn cancel(
    state: &AppState,
    user: &ObjectId,
    queue: &ObjectId,
) -> DomainResult<Cancelled> {
    let key = keys::outbound(user, queue);
    if state.table.get(&key).await?.is_none() {
        return Err(DomainError::QueueEntryNotFound);
    }
    let Some(mut mail) = claim(state, &key).await? else {
        // Done already, or being sent this moment: nothing left to take back.
        return Ok(Cancelled { deleted: 0 });
    };
    let deleted = mail.recipients.len();
    mail.status = QueueStatus::Cancelled;
    mail.recipients.clear();
    release(state, &mail, Utc::now()).await?;
    tracing::info!(queue = %queue, user = %user, deleted, "outbound cancelled");
    Ok(Cancelled { deleted })
}

/// Storing a composed message (`POST .../messages` without `raw`), WildDuck's upload: From is
/// checked only for drafts; a `reference` makes it a draft.
pub async fn store_composed(
    state: &AppState,
    user: &ObjectId,
    mailbox: &ObjectId,
    fields: ComposeFields,
    mut flags: Upload,
    replace_previous: Option<(ObjectId, u32)>,
) -> DomainResult<Stored> {
    let owner = users::load(state, user).await?;
    if fields.reference.is_some() {
        flags.draft = true;
    }
    let files = fields.files.clone();
    let prepared: Prepared = compose::prepare(state, &owner, fields, flags.draft).await?;
    let recipients = prepared.header_recipients();
    flags.raw = prepared.raw(flags.draft).into();
    flags.draft_info = Some(prepared.draft_info(recipients, files));
    let stored = messages::store(state, user, mailbox, flags).await?;
    if let Some((mailbox, uid)) = replace_previous {
        remove_draft(state, user, &mailbox, uid).await;
    }
    Ok(stored)
}
