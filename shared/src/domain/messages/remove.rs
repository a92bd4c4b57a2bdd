//! Removing messages: out of their mailbox (counters, quota and journal in one transaction
//! per batch) and into the archive, drafts excepted; and draining a deleted mailbox.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::change::BATCH;
use super::{MESSAGE_GONE, Message, from_item, load, mailbox_counters, mailbox_gone, reload};
use crate::domain::mailboxes::{self, StoredMailbox};
use crate::domain::users::{self, ARCHIVED_COUNT, STORAGE_USED};
use crate::domain::webhooks;
use crate::domain::{AppState, DomainError, DomainResult, journal, keys, retry};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Query, StoreError, Update, Write};

/// An archived message: the message as it was, when it was archived, and when it goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Archived {
    pub message: Message,
    pub archived: DateTime<Utc>,
    pub purge_at: DateTime<Utc>,
}

impl Archived {
    /// `message` archived at `now`, kept for `keep`.
    fn new(message: &Message, now: DateTime<Utc>, keep: chrono::Duration) -> Archived {
        Archived {
            message: message.clone(),
            archived: now,
            purge_at: now + keep,
        }
    }

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
) -> DomainResult<usize> {
    let mut removed = 0;
    for chunk in messages.chunks(BATCH / 2) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            if try_remove(state, mailbox, &pending, archive).await? {
                removed += pending.len();
                break;
            }
            // Some message changed or went meanwhile: the rest as they are now.
            attempt += 1;
            if attempt >= REMOVE_ATTEMPTS {
                return Err(DomainError::Contended(
                    "The messages were changed concurrently, try again",
                ));
            }
            retry::pause(attempt).await;
            pending = reload(state, &pending).await?;
        }
    }
    Ok(removed)
}

const REMOVE_ATTEMPTS: usize = 16;

/// One attempt at removing a batch: false when some message changed or went meanwhile (each
/// is removed only as it was read, so the counters it takes off are right).
async fn try_remove(
    state: &AppState,
    mailbox: &StoredMailbox,
    chunk: &[Message],
    archive: bool,
) -> DomainResult<bool> {
    let user = mailbox.mailbox.user;
    let now = Utc::now();
    let keep = chrono::Duration::from_std(state.config.archive_retention())
        .unwrap_or(chrono::Duration::days(14));
    let seq = journal::reserve(state.table.as_ref(), &user, chunk.len()).await?;
    let mut writes = Vec::new();
    let (mut total, mut unseen, mut size, mut archived) = (0, 0, 0, 0);
    let mut gone_for_good = Vec::new();
    for (i, message) in chunk.iter().enumerate() {
        let (t, u, s) = message.counts();
        total -= t;
        unseen -= u;
        size -= s;
        writes.push(Write::delete(message.key()).when(message.unchanged(), MESSAGE_GONE));
        writes.push(Write::delete(keys::message_pointer(&user, &message.id)));
        writes.push(journal::event_write(
            &state.config,
            &user,
            seq + i as i64,
            message.expunge_event(),
        ));
        if archive && !message.draft {
            writes.push(Write::put(Archived::new(message, now, keep).item()));
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
        guard: Some(Condition::Exists.labeled(users::USER_GONE)),
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
        Ok(()) => {}
        Err(StoreError::ConditionFailed {
            label: mailboxes::MAILBOX_GONE,
        }) => return Err(mailbox_gone()),
        Err(StoreError::ConditionFailed { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    super::indexing::unindex(state, chunk).await;
    webhooks::publish_all(state, chunk.iter().map(webhooks::message_deleted).collect()).await;
    for message in gone_for_good {
        if let Err(e) = state.blobs.delete(&message.blob).await {
            tracing::warn!(error = %e, blob = %message.blob, "blob not removed; the janitor retries");
        }
    }
    Ok(true)
}

/// `DELETE /users/{user}/mailboxes/{mailbox}/messages/{message}`: into the archive.
pub async fn delete(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
) -> DomainResult<()> {
    let not_found = || DomainError::MessageNotFound("Message was not found");
    let mailbox = mailboxes::load(state, user, mailbox_id).await?;
    let message = load(state, user, mailbox_id, uid)
        .await
        .map_err(|_| not_found())?;
    if remove_messages(state, &mailbox, vec![message], true).await? == 0 {
        return Err(not_found());
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
) -> DomainResult<usize> {
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
            .collect::<DomainResult<Vec<_>>>()?;
        let removed = remove_deleted_mailbox_messages(state, user, messages).await?;
        if removed == 0 {
            break;
        }
        done += removed;
    }
    Ok(done)
}

/// Like [`remove_messages`] for a mailbox that is already gone: no mailbox counters or
/// journal (its DELETE event said it all), and no quota (the delete took the mailbox's size
/// off at once).
async fn remove_deleted_mailbox_messages(
    state: &AppState,
    user: &ObjectId,
    messages: Vec<Message>,
) -> DomainResult<usize> {
    let user = *user;
    let now = Utc::now();
    let keep = chrono::Duration::from_std(state.config.archive_retention())
        .unwrap_or(chrono::Duration::days(14));
    let mut writes = Vec::new();
    let mut archived = 0;
    for message in &messages {
        writes.push(Write::delete(message.key()).when(message.unchanged(), MESSAGE_GONE));
        writes.push(Write::delete(keys::message_pointer(&user, &message.id)));
        if !message.draft {
            writes.push(Write::put(Archived::new(message, now, keep).item()));
            archived += 1;
        }
    }
    // A user deleted meanwhile has no quota to keep (and must not get a profile back).
    if state.table.get(&keys::user(&user)).await?.is_some() {
        writes.push(Write::Update {
            key: keys::user(&user),
            update: Update::default().add(ARCHIVED_COUNT, archived),
            guard: Some(Condition::Exists.labeled(users::USER_GONE)),
        });
    }
    match state.table.transact(writes).await {
        Ok(()) => {}
        // Another drain (the janitor's, the request's) took some of them, or the user went:
        // this batch archived nothing, and the next pass reads the folder again.
        Err(StoreError::ConditionFailed { .. }) => return Ok(0),
        Err(e) => return Err(e.into()),
    }
    super::indexing::unindex(state, &messages).await;
    for message in &messages {
        if message.draft {
            let _ = state.blobs.delete(&message.blob).await;
        }
    }
    Ok(messages.len())
}

// ---------------------------------------------------------------------------------------------
// Emptying a folder

/// What emptying a folder did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Emptied {
    pub deleted: usize,
    /// Messages that changed or vanished while being removed (left for another pass).
    pub errors: usize,
    /// The folder is empty now.
    pub done: bool,
}

/// Removes up to `budget` messages of a folder, highest UID first, into the archive unless
/// `skip_archive` (drafts never go there). One pass of `DELETE .../messages`.
pub async fn empty_mailbox(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    skip_archive: bool,
    budget: usize,
) -> DomainResult<Emptied> {
    let mailbox = mailboxes::load(state, user, mailbox_id).await?;
    let pk = keys::messages_pk(user, mailbox_id);
    let mut emptied = Emptied::default();
    while emptied.deleted + emptied.errors < budget {
        let page = state
            .table
            .query(
                &Query::table(pk.clone())
                    .backwards()
                    .limit((BATCH / 2).min(budget - emptied.deleted - emptied.errors)),
            )
            .await?;
        if page.items.is_empty() {
            emptied.done = true;
            break;
        }
        let messages = page
            .items
            .iter()
            .map(from_item)
            .collect::<DomainResult<Vec<_>>>()?;
        let count = messages.len();
        let removed = remove_messages(state, &mailbox, messages, !skip_archive).await?;
        emptied.deleted += removed;
        emptied.errors += count - removed;
        if removed == 0 {
            break;
        }
    }
    Ok(emptied)
}

/// A folder being emptied in the background (`DELETE .../messages?async=true`, or what a
/// synchronous request left): a janitor task on gsi1 `TASKS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearTask {
    pub id: ObjectId,
    pub user: ObjectId,
    pub mailbox: ObjectId,
    pub skip_archive: bool,
}

/// Label of the condition that a folder has no clear task yet.
const CLEAR_PENDING: &str = "clear task pending";

/// Schedules emptying a folder; while a task for it is pending, that one is answered
/// (`existing`), and its `skipArchive` stays, as in WildDuck.
pub async fn schedule_empty(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    skip_archive: bool,
) -> DomainResult<(ObjectId, bool)> {
    mailboxes::load(state, user, mailbox_id).await?;
    let key = keys::clear_task(user, mailbox_id);
    let task = ClearTask {
        id: ObjectId::new(),
        user: *user,
        mailbox: *mailbox_id,
        skip_archive,
    };
    let item = Item::new(key.clone(), serde_json::to_value(&task).unwrap_or_default()).with_gsi1(
        keys::clear_task_entry(Utc::now().timestamp(), user, mailbox_id),
    );
    match state
        .table
        .transact(vec![Write::put_new(item, CLEAR_PENDING)])
        .await
    {
        Ok(()) => Ok((task.id, false)),
        Err(StoreError::ConditionFailed { .. }) => {
            let existing = state.table.get(&key).await?;
            let id = existing
                .and_then(|i| i.body_as::<ClearTask>().ok())
                .map_or(task.id, |t| t.id);
            Ok((id, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// One bounded pass of a clear task; removes the task once the folder is empty (or gone).
pub async fn empty_step(
    state: &AppState,
    key: &crate::store::Key,
    budget: usize,
) -> DomainResult<Emptied> {
    let Some(item) = state.table.get(key).await? else {
        return Ok(Emptied {
            done: true,
            ..Default::default()
        });
    };
    let task: ClearTask = item
        .body_as()
        .map_err(|e| DomainError::corrupt("clear task", &item.pk, e))?;
    let emptied =
        match empty_mailbox(state, &task.user, &task.mailbox, task.skip_archive, budget).await {
            Ok(emptied) => emptied,
            Err(DomainError::MailboxNotFound(_)) | Err(DomainError::UserNotFound(_)) => Emptied {
                done: true,
                ..Default::default()
            },
            Err(e) => return Err(e),
        };
    if emptied.done {
        state
            .table
            .transact(vec![Write::delete(key.clone())])
            .await?;
        tracing::info!(user = %task.user, mailbox = %task.mailbox, "folder emptied");
    }
    Ok(emptied)
}
