//! The archive: deleted messages stay restorable for `EIDER_ARCHIVE_DAYS` (14 by default),
//! outside the quota, addressed by their hex message id. The janitor purges them (item and
//! blob) when their time is up.
//!
//! Also the restore of a date range (`POST /users/{user}/archived/restore`), a task that runs
//! in bounded steps, and the quota recount (`POST /users/{user}/quota/reset`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::mailboxes::{self, StoredMailbox};
use super::messages::{self, Archived, Details, Message, OVER_QUOTA};
use super::paging::{PageRequest, PageResult, walk_partition};
use super::retry::{Attempt, retry_on_conflict};
use super::users::{self, ARCHIVED_COUNT, STORAGE_USED};
use super::{AppState, DomainError, DomainResult, journal, keys};
use crate::id::ObjectId;
use crate::store::{Condition, Cursor, Item, Key, Query, StoreError, Update, Write};

/// Labels of the conditions on archive items (see [`crate::store::Guard`]).
/// The archived message is gone (restored or purged meanwhile).
pub const ARCHIVED_GONE: &str = "archived gone";
/// `storageUsed` changed while the quota was being recounted.
const STORAGE_CHANGED: &str = "storage changed";

fn not_found() -> DomainError {
    DomainError::MessageNotFound("This message does not exist")
}

fn from_item(item: &Item) -> DomainResult<Archived> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("archived message", &item.sk, e))
}

/// A page of archived messages, and how many the user has in the archive.
pub struct ArchiveListing {
    pub total: i64,
    pub page: PageResult<Archived>,
}

/// `GET /users/{user}/archived` (and WildDuck's `/archived/messages`): newest first unless
/// `ascending`.
pub async fn list(
    state: &AppState,
    user: &ObjectId,
    ascending: bool,
    page: &PageRequest,
) -> DomainResult<ArchiveListing> {
    let owner = users::load(state, user).await?;
    let pk = keys::archive_pk(user);
    let result = walk_partition(state.table.as_ref(), &pk, "", !ascending, page, None).await?;
    Ok(ArchiveListing {
        total: owner.archived,
        page: result.decode(from_item)?,
    })
}

async fn load(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<Archived> {
    let item = state
        .table
        .get(&keys::archived(user, id))
        .await?
        .ok_or_else(not_found)?;
    from_item(&item)
}

/// `GET /users/{user}/archived/{message}`: an archived message and its details.
pub async fn get(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
) -> DomainResult<(Archived, Details)> {
    users::load(state, user).await?;
    let archived = load(state, user, id).await?;
    let details = messages::details(state, archived.message.clone()).await?;
    Ok((archived, details))
}

/// `POST /users/{user}/archived/{message}/restore`: back into the given mailbox, else the
/// original one, else INBOX, with a new UID; counts against the quota again.
pub async fn restore(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    target: Option<ObjectId>,
) -> DomainResult<Message> {
    let owner = users::load(state, user).await?;
    let archived = load(state, user, id).await?;
    let allowed = messages::allowed_storage(state, &owner);
    if let Some(target) = target {
        let mailbox = mailboxes::load(state, user, &target).await?;
        return restore_into(state, &archived, &mailbox, allowed).await;
    }
    if let Ok(original) = mailboxes::load(state, user, &archived.message.mailbox).await {
        match restore_into(state, &archived, &original, allowed).await {
            // Deleted between the read and the write: INBOX, as if it had been gone before.
            Err(DomainError::MailboxNotFound(_)) => {}
            other => return other,
        }
    }
    let inbox = mailboxes::inbox(state, user).await?;
    restore_into(state, &archived, &inbox, allowed).await
}

/// Puts an archived message back into `mailbox`, if it fits into the quota (`allowed` bytes).
async fn restore_into(
    state: &AppState,
    archived: &Archived,
    mailbox: &StoredMailbox,
    allowed: i64,
) -> DomainResult<Message> {
    let user = mailbox.mailbox.user;
    // A mailbox deleted since it was read answers MailboxNotFound here, as in the commit.
    let uid = messages::allocate_uids(state, mailbox, 1).await?;
    let seq = journal::reserve(state.table.as_ref(), &user, 1).await?;
    let mut message = archived.message.clone();
    message.mailbox = mailbox.mailbox.id;
    message.uid = uid;
    message.expires = messages::retention_expiry(mailbox, chrono::Utc::now());
    let size = message.size as i64;
    let writes = vec![
        Write::delete(keys::archived(&user, &message.id)).when(Condition::Exists, ARCHIVED_GONE),
        Write::put_new(message.item(mailbox), messages::UID_TAKEN),
        Write::put(Item::new(
            keys::message_pointer(&user, &message.id),
            json!({ "mailbox": mailbox.mailbox.id, "uid": message.uid }),
        )),
        Write::Update {
            key: keys::mailbox(&user, &mailbox.mailbox.id),
            update: Update::default()
                .add(mailboxes::TOTAL, 1)
                .add(mailboxes::UNSEEN, i64::from(!message.seen))
                .add(mailboxes::SIZE, size)
                .add(mailboxes::MODIFY_INDEX, 1),
            guard: Some(Condition::Exists.labeled(mailboxes::MAILBOX_GONE)),
        },
        Write::Update {
            key: keys::user(&user),
            update: Update::default()
                .add(STORAGE_USED, size)
                .add(ARCHIVED_COUNT, -1),
            // The quota holds for restores as for uploads (exact under concurrency).
            guard: Some(
                Condition::CounterAtMost(STORAGE_USED.into(), allowed - size).labeled(OVER_QUOTA),
            ),
        },
        journal::event_write(&state.config, &user, seq, message.exists_event()),
    ];
    match journal::commit(state.table.as_ref(), &state.config, &user, seq, 1, writes).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed {
            label: ARCHIVED_GONE,
        }) => return Err(not_found()),
        Err(StoreError::ConditionFailed { label: OVER_QUOTA }) => {
            return Err(DomainError::OverQuota);
        }
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(DomainError::MailboxNotFound("This mailbox does not exist"));
        }
        Err(e) => return Err(e.into()),
    }
    super::messages::reindex(state, &message).await;
    Ok(message)
}

// ---------------------------------------------------------------------------------------------
// Restoring a date range

/// A restore of every message archived (deleted) between `start` and `end`, in progress.
/// Each step looks at the next archived messages after `after`; a message restored twice is
/// impossible (each restore removes its archive entry under a condition), so a step that died
/// half-way is simply run again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTask {
    pub id: ObjectId,
    pub user: ObjectId,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The archive position (sort key) up to which messages were looked at.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub restored: u64,
    /// Messages that could not be restored (logged), left in the archive.
    #[serde(default)]
    pub failed: u64,
}

/// Label of the condition on the task item: it is gone (finished meanwhile).
const TASK_GONE: &str = "restore task gone";
/// Archived messages one step looks at.
pub const RESTORE_STEP: usize = 100;

impl RestoreTask {
    fn key(&self) -> Key {
        keys::restore_task(&self.user, &self.id)
    }

    fn item(&self, due: i64) -> Item {
        Item::new(self.key(), serde_json::to_value(self).unwrap_or_default())
            .with_gsi1(keys::restore_task_entry(due, &self.user, &self.id))
    }
}

/// `POST /users/{user}/archived/restore`: starts restoring every message archived between
/// `start` and `end` into the mailbox it was deleted from (INBOX when that is gone; WildDuck's
/// API promises this, its code makes a "Restored" folder instead). The first step runs at once,
/// so a small range is restored when this answers; the janitor carries on with the rest.
pub async fn start_range_restore(
    state: &AppState,
    user: &ObjectId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> DomainResult<ObjectId> {
    users::load(state, user).await?;
    let task = RestoreTask {
        id: ObjectId::new(),
        user: *user,
        start,
        end,
        after: None,
        restored: 0,
        failed: 0,
    };
    let item = task.item(Utc::now().timestamp());
    state
        .table
        .transact(vec![Write::put_new(item, TASK_GONE)])
        .await?;
    tracing::info!(user = %user, task = %task.id, %start, %end, "archive restore started");
    if let Err(e) = restore_step(state, &task.key(), RESTORE_STEP).await {
        tracing::warn!(task = %task.id, error = %e, "archive restore step failed; the janitor retries");
    }
    Ok(task.id)
}

/// What one step of a range restore did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreStep {
    pub restored: usize,
    /// The task is finished (and removed), or was not there.
    pub done: bool,
}

/// One bounded step of the range restore at `key`: looks at up to `limit` archived messages
/// after the task's position, restores those in its range, and saves the new position (or
/// removes the task when the archive has been walked to its end).
pub async fn restore_step(state: &AppState, key: &Key, limit: usize) -> DomainResult<RestoreStep> {
    let Some(item) = state.table.get(key).await? else {
        return Ok(RestoreStep {
            restored: 0,
            done: true,
        });
    };
    let mut task: RestoreTask = item
        .body_as()
        .map_err(|e| DomainError::corrupt("restore task", &item.pk, e))?;
    let query = Query::table(keys::archive_pk(&task.user))
        .limit(limit)
        .start_after(task.after.clone().map(|sk| Cursor {
            pk: keys::archive_pk(&task.user),
            sk,
            index: None,
        }));
    let page = state.table.query(&query).await?;
    let mut restored = 0;
    for entry in &page.items {
        task.after = Some(entry.sk.clone());
        let Ok(archived) = from_item(entry) else {
            task.failed += 1;
            continue;
        };
        if archived.archived < task.start || archived.archived > task.end {
            continue;
        }
        match restore(state, &task.user, &archived.message.id, None).await {
            Ok(_) => restored += 1,
            // Restored or purged meanwhile.
            Err(DomainError::MessageNotFound(_)) => {}
            Err(DomainError::UserNotFound(_)) => break,
            Err(e) => {
                task.failed += 1;
                tracing::warn!(task = %task.id, message = %archived.message.id, error = %e, "archived message not restored");
            }
        }
    }
    task.restored += restored as u64;
    let finished = page.next.is_none() || users::load(state, &task.user).await.is_err();
    let write = if finished {
        tracing::info!(task = %task.id, user = %task.user, restored = task.restored, failed = task.failed, "archive restore finished");
        Write::delete(task.key())
    } else {
        Write::put(task.item(Utc::now().timestamp())).when(Condition::Exists, TASK_GONE)
    };
    match state.table.transact(vec![write]).await {
        Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(RestoreStep {
        restored,
        done: finished,
    })
}

/// What a quota recount found.
pub struct Recount {
    pub storage_used: i64,
    pub previous: i64,
}

/// `POST /users/{user}/quota/reset`: recounts `storageUsed` from the live messages of every
/// mailbox (reads every message item of the user: its cost grows with the account).
pub async fn reset_quota(state: &AppState, user: &ObjectId) -> DomainResult<Recount> {
    retry_on_conflict("Storage changed while counting, try again", || async move {
        let owner = users::load(state, user).await?;
        let mut sum: i64 = 0;
        for mailbox in mailboxes::load_all(state, user).await? {
            let pk = keys::messages_pk(user, &mailbox.mailbox.id);
            let mut after = None;
            loop {
                let page = state
                    .table
                    .query(
                        &Query::table(pk.clone())
                            .limit(500)
                            .start_after(after.take()),
                    )
                    .await?;
                sum += page
                    .items
                    .iter()
                    .map(|i| i.body["size"].as_i64().unwrap_or(0))
                    .sum::<i64>();
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        let write = Write::Update {
            key: keys::user(user),
            update: Update::default().add(STORAGE_USED, sum - owner.storage_used),
            guard: Some(
                Condition::CounterEquals(STORAGE_USED.into(), owner.storage_used)
                    .labeled(STORAGE_CHANGED),
            ),
        };
        match state.table.transact(vec![write]).await {
            Ok(()) => Ok(Attempt::Done(Recount {
                storage_used: sum,
                previous: owner.storage_used,
            })),
            // A message arrived or left while counting: count again.
            Err(StoreError::ConditionFailed { .. }) => Ok(Attempt::Retry),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mailboxes::NewMailbox;
    use crate::domain::messages::tests::{fixture, raw};

    /// A restore whose mailbox is deleted between its read and the write (the randomized test
    /// once met this as a 500): no such mailbox, nothing changed; a restore without a target
    /// then lands in INBOX.
    #[tokio::test]
    async fn a_restore_into_a_mailbox_deleted_meanwhile_changes_nothing() {
        let f = fixture(None).await;
        let new_folder = NewMailbox {
            path: "Work".into(),
            hidden: false,
            retention: None,
            encrypt_messages: false,
        };
        let work = mailboxes::create(&f.state, &f.user, new_folder)
            .await
            .unwrap();
        let stored = f.store(&work, raw("kept", ""), false).await.unwrap();
        messages::delete(&f.state, &f.user, &work, stored.uid)
            .await
            .unwrap();
        let stale = mailboxes::load(&f.state, &f.user, &work).await.unwrap();
        mailboxes::delete(&f.state, &f.user, &work).await.unwrap();
        let archived = load(&f.state, &f.user, &stored.id).await.unwrap();
        let used = f.storage_used().await;

        let refused = restore_into(&f.state, &archived, &stale, i64::MAX).await;
        assert!(
            matches!(refused, Err(DomainError::MailboxNotFound(_))),
            "{refused:?}"
        );
        assert!(load(&f.state, &f.user, &stored.id).await.is_ok());
        assert_eq!(f.storage_used().await, used);

        let restored = restore(&f.state, &f.user, &stored.id, None).await.unwrap();
        assert_eq!(restored.mailbox, f.inbox);
        assert!(load(&f.state, &f.user, &stored.id).await.is_err());
        assert_eq!(f.storage_used().await, used + stored.size as i64);
    }
}
