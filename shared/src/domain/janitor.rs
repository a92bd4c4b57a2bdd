//! The janitor: the purges that requests leave for later, run on a schedule (the `janitor`
//! Lambda every few minutes, a loop in `eider-local`).
//!
//! One run works through two queues, each an index partition read in due order up to `now`:
//!
//! * gsi2 `PURGE#00` … `PURGE#15` (every item with a purge time has an entry there):
//!   - messages whose `expires` has passed (mailbox retention or an explicit `expires`): removed
//!     from their mailbox through [`messages::remove_messages`], the normal path (mailbox
//!     counters, quota, a journal EXPUNGE), and archived, as WildDuck does;
//!   - archived messages whose archive time is over: the archive item, its blob and its events
//!     go, and the user's `archived` counter drops.
//! * gsi1 `TASKS`:
//!   - deleted mailboxes: their messages go to the archive ([`messages::drain_deleted_mailbox`]);
//!   - deleted users: everything the user left (see [`Run::purge_user`]), then the tombstone.
//!
//! Never a scan: besides these index partitions it only queries partitions whose keys it knows
//! (a user's, a mailbox's messages, a message's events). Every step is idempotent, and a run
//! always deletes what refers to other items last (a message item names its blob, pointer and
//! search terms; a mailbox names its message partition; a tombstone names the user), so a run
//! cut short by its [`Budget`], or by a crash, leaves work the next run finds again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::addresses::{ADDRESS_GONE, StoredAddress};
use super::archive::{self, ARCHIVED_GONE};
use super::messages::{self, Archived, Message};
use super::users::{self, ARCHIVED_COUNT};
use super::{AppState, DomainError, DomainResult};
use super::{audit, keys, mailboxes, names, outgoing, quota_all, search_apply, stats, storage};
use crate::id::ObjectId;
use crate::mail::parse;
use crate::store::{
    Condition, Cursor, Index, Item, Key, MAX_TRANSACTION_WRITES, Query, SortRange, StoreError,
    Update, Write, query_all,
};

/// How much one run may do. A run stops between batches, so it may overshoot `max_items` by one
/// batch (at most a few hundred items) and `deadline` by the time of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most table items one run deletes ([`Report::items_deleted`]).
    pub max_items: usize,
    /// No batch starts after this instant.
    pub deadline: Option<Instant>,
}

impl Budget {
    /// A budget of `max_items` deleted items and no deadline.
    pub fn items(max_items: usize) -> Budget {
        Budget {
            max_items,
            deadline: None,
        }
    }

    /// The same budget, also ending at `deadline`.
    pub fn until(self, deadline: Instant) -> Budget {
        Budget {
            deadline: Some(deadline),
            ..self
        }
    }
}

/// What one run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Messages past their `expires`, removed from their mailbox (and archived unless drafts).
    pub messages_expired: usize,
    /// Archived messages past their archive time, removed with their blobs; also the archived
    /// messages of purged users.
    pub archived_purged: usize,
    /// Deleted users whose every item is gone (the tombstone last).
    pub users_purged: usize,
    /// Deleted mailboxes emptied (their task removed).
    pub mailboxes_drained: usize,
    /// Messages of deleted mailboxes moved to the archive.
    pub messages_drained: usize,
    /// Messages of deleted users removed for good (no archive), also those that expired.
    pub messages_purged: usize,
    /// Archived messages put back by range restores (`POST /users/{user}/archived/restore`).
    pub messages_restored: usize,
    /// Queued mails worked on (sent, retried, or their copy stored).
    pub mail_sent: usize,
    pub blobs_deleted: usize,
    /// Blobs of uploads that never committed (the process died between the blob write and
    /// the message's transaction), removed with their markers.
    pub uploads_reclaimed: usize,
    /// Table items deleted, of every kind (messages, pointers, search terms, thread references,
    /// events, archive entries, mailboxes, addresses and claims, log entries, tasks, ...). A
    /// delete of a key derived from a message (its search terms, its thread references) counts
    /// even when the item was already gone.
    pub items_deleted: usize,
    /// The budget ran out before the queues were empty: the next run continues.
    pub more_work: bool,
}

impl Report {
    /// True when the run removed anything at all.
    pub fn removed_anything(&self) -> bool {
        self.items_deleted > 0
            || self.blobs_deleted > 0
            || self.messages_expired > 0
            || self.messages_restored > 0
            || self.mail_sent > 0
    }
}

/// Purge-queue entries read per query.
const QUEUE_PAGE: usize = 50;
/// Messages (or archived messages) purged per batch: their satellite deletes, blob deletes and
/// item deletes.
const PURGE_BATCH: usize = 25;
/// Items read per page when a whole partition goes.
const PARTITION_PAGE: usize = MAX_TRANSACTION_WRITES;
/// Blob reads and deletes (and event-partition queries) in flight at once.
const IN_FLIGHT: usize = 8;
/// A deleted mailbox's task waits this long (seconds) before the janitor takes it up.
const MAILBOX_TASK_GRACE_SECS: i64 = 300;
/// Bytes read from the start of a stored source to find its header (thread references).
const HEAD_BYTES: u64 = 64 * 1024;

/// Runs the janitor once: everything due at `now`, as far as `budget` allows.
pub async fn run(state: &AppState, now: DateTime<Utc>, budget: Budget) -> DomainResult<Report> {
    let started = Instant::now();
    super::settings::refresh_if_stale(state).await;
    let mut run = Run {
        state,
        now: now.timestamp(),
        budget,
        report: Report::default(),
        alive: HashMap::new(),
    };
    let schedule_done = run.purge_schedule().await?;
    let tasks_done = run.tasks().await?;
    let mut report = run.report;
    report.more_work = !(schedule_done && tasks_done);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if report.removed_anything() || report.more_work {
        tracing::info!(
            messages_expired = report.messages_expired,
            archived_purged = report.archived_purged,
            users_purged = report.users_purged,
            mailboxes_drained = report.mailboxes_drained,
            messages_drained = report.messages_drained,
            messages_purged = report.messages_purged,
            messages_restored = report.messages_restored,
            mail_sent = report.mail_sent,
            uploads_reclaimed = report.uploads_reclaimed,
            blobs_deleted = report.blobs_deleted,
            items_deleted = report.items_deleted,
            more_work = report.more_work,
            elapsed_ms,
            "janitor run"
        );
    } else {
        tracing::debug!(elapsed_ms, "janitor run: nothing due");
    }
    Ok(report)
}

/// Which blobs belong to the items of a partition being purged.
#[derive(Clone, Copy)]
enum BlobsOf {
    File,
    Queue,
}

/// One run's state: the budget spent so far is the report's `items_deleted`.
struct Run<'a> {
    state: &'a AppState,
    /// The run's notion of now (unix seconds): what is due at or before it goes.
    now: i64,
    budget: Budget,
    report: Report,
    /// Whether a user still exists, read once per run.
    alive: HashMap<ObjectId, bool>,
}

impl Run<'_> {
    /// True when no further batch may start.
    fn spent(&self) -> bool {
        self.report.items_deleted >= self.budget.max_items
            || self.budget.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Items the budget still allows.
    fn left(&self) -> usize {
        self.budget
            .max_items
            .saturating_sub(self.report.items_deleted)
    }

    fn due(&self) -> SortRange {
        let (from, to) = keys::due_until(self.now);
        SortRange::Between(from, to)
    }

    /// Whether `user` exists. A profile without a body (counters written after a delete) does
    /// not count: the user is gone.
    async fn user_alive(&mut self, user: &ObjectId) -> DomainResult<bool> {
        if let Some(alive) = self.alive.get(user) {
            return Ok(*alive);
        }
        let profile = self.state.table.get(&keys::user(user)).await?;
        let alive = profile.is_some_and(|p| p.body.is_object());
        self.alive.insert(*user, alive);
        Ok(alive)
    }

    // -----------------------------------------------------------------------------------------
    // The purge schedule (gsi2)

    /// Walks every `PURGE#` shard up to now. Returns false when the budget ran out first.
    async fn purge_schedule(&mut self) -> DomainResult<bool> {
        for shard in 0..keys::PURGE_SHARDS {
            let mut after: Option<Cursor> = None;
            loop {
                if self.spent() {
                    return Ok(false);
                }
                let query = Query::index(Index::Gsi2, keys::purge_pk(shard))
                    .range(self.due())
                    .limit(self.left().clamp(1, QUEUE_PAGE))
                    .start_after(after.take());
                let page = self.state.table.query(&query).await?;
                let (mut messages, mut archived, mut pending) =
                    (Vec::new(), Vec::new(), Vec::new());
                for entry in &page.items {
                    if entry.pk.starts_with(keys::MESSAGES_PK_PREFIX) {
                        messages.push(entry.key());
                    } else if entry.pk.starts_with(keys::ARCHIVE_PK_PREFIX) {
                        archived.push(entry.key());
                    } else if entry.pk.starts_with(keys::PENDING_BLOB_PK_PREFIX) {
                        pending.push(entry.key());
                    } else {
                        tracing::warn!(pk = %entry.pk, sk = %entry.sk, "unknown item in the purge schedule");
                    }
                }
                if !messages.is_empty() {
                    self.expire_messages(&messages).await?;
                }
                if !archived.is_empty() {
                    self.purge_archived(&archived).await?;
                }
                if !pending.is_empty() {
                    self.reclaim_uploads(&pending).await?;
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(true)
    }

    /// Reads items again from the table: index entries may lag behind (DynamoDB's GSIs), and
    /// only the item as it is now says whether it is still due.
    async fn reread(&self, keys: &[Key]) -> DomainResult<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            items.extend(self.state.table.get_many(chunk).await?);
        }
        Ok(items)
    }

    /// Messages whose purge entry is due: out of their mailbox and into the archive.
    async fn expire_messages(&mut self, keys: &[Key]) -> DomainResult<()> {
        let mut groups: BTreeMap<(ObjectId, ObjectId), Vec<Message>> = BTreeMap::new();
        for item in self.reread(keys).await? {
            let message = match messages::from_item(&item) {
                Ok(message) => message,
                Err(_) => {
                    tracing::warn!(pk = %item.pk, sk = %item.sk, "unreadable message in the purge schedule; skipped");
                    continue;
                }
            };
            // Moved, or its expiry changed: the entry was stale.
            if message.expires.is_none_or(|e| e.timestamp() > self.now) {
                continue;
            }
            groups
                .entry((message.user, message.mailbox))
                .or_default()
                .push(message);
        }
        for ((user, mailbox), batch) in groups {
            if !self.user_alive(&user).await? {
                // A deleted user's messages are not archived, and writing the user's counters
                // would bring a profile back: they go for good, as the user's purge would.
                self.purge_messages(&user, &batch).await?;
                continue;
            }
            let mailbox = match mailboxes::load(self.state, &user, &mailbox).await {
                Ok(mailbox) => mailbox,
                // The mailbox was deleted: its drain task archives these messages.
                Err(DomainError::MailboxNotFound(_) | DomainError::UserNotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let count = batch.len();
            let drafts = batch.iter().filter(|m| m.draft).count();
            let derived: usize = batch.iter().map(|m| m.terms.len()).sum();
            let removed = match messages::remove_messages(self.state, &mailbox, batch, true).await {
                Ok(removed) => removed,
                // Deleted since it was read: as above.
                Err(DomainError::MailboxNotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            self.report.messages_expired += removed;
            if removed == count {
                // Each: its item, its pointer and its search terms; drafts lose their blob.
                self.report.items_deleted += 2 * count + derived;
                self.report.blobs_deleted += drafts;
            } else {
                // Some changed meanwhile (remove_messages skipped them): count what is sure.
                self.report.items_deleted += 2 * removed;
            }
        }
        Ok(())
    }

    /// Blobs whose message never committed: markers still there when due. The marker is
    /// doomed first, so a commit arriving after all fails instead of pointing at a removed
    /// blob; a run that dies after that finds the doomed marker again and finishes.
    async fn reclaim_uploads(&mut self, keys: &[Key]) -> DomainResult<()> {
        for marker in self.reread(keys).await? {
            let Some(blob) = marker.body["blob"].as_str() else {
                tracing::warn!(pk = %marker.pk, sk = %marker.sk, "pending-blob marker without a blob; skipped");
                continue;
            };
            if marker.counter(messages::PENDING_DOOMED) == 0 {
                let doom = self
                    .state
                    .table
                    .update(
                        &marker.key(),
                        Update::default().add(messages::PENDING_DOOMED, 1),
                        Some(
                            Condition::CounterEquals(messages::PENDING_DOOMED.into(), 0)
                                .labeled(messages::UPLOAD_SETTLED),
                        ),
                    )
                    .await;
                match doom {
                    Ok(_) => {}
                    // Committed (or doomed by another run) meanwhile.
                    Err(StoreError::ConditionFailed { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            self.state.blobs.delete(blob).await?;
            self.report.blobs_deleted += 1;
            self.delete_keys(vec![marker.key()]).await?;
            self.report.uploads_reclaimed += 1;
        }
        Ok(())
    }

    /// Archived messages whose time is up: events, blob, then the archive item and the
    /// user's `archived` counter.
    async fn purge_archived(&mut self, keys: &[Key]) -> DomainResult<()> {
        let mut groups: BTreeMap<ObjectId, Vec<Archived>> = BTreeMap::new();
        for item in self.reread(keys).await? {
            let archived: Archived = match item.body_as() {
                Ok(archived) => archived,
                Err(_) => {
                    tracing::warn!(pk = %item.pk, sk = %item.sk, "unreadable archived message in the purge schedule; skipped");
                    continue;
                }
            };
            if archived.purge_at.timestamp() > self.now {
                continue;
            }
            groups
                .entry(archived.message.user)
                .or_default()
                .push(archived);
        }
        for (user, batch) in groups {
            let alive = self.user_alive(&user).await?;
            for chunk in batch.chunks(PURGE_BATCH) {
                let messages: Vec<Message> = chunk.iter().map(|a| a.message.clone()).collect();
                // A live user's thread references serve future replies; a deleted user's go.
                self.delete_satellites(&user, &messages, !alive).await?;
                self.delete_blobs(&messages).await?;
                self.delete_archive_entries(&user, &messages, alive).await?;
            }
        }
        Ok(())
    }

    /// Deletes archive items (only those still there) and lowers the live user's counter by as
    /// many, in one transaction.
    async fn delete_archive_entries(
        &mut self,
        user: &ObjectId,
        messages: &[Message],
        alive: bool,
    ) -> DomainResult<()> {
        let entry = |m: &Message| {
            Write::delete(keys::archived(user, &m.id)).when(Condition::Exists, ARCHIVED_GONE)
        };
        let counter = |n: usize| Write::Update {
            key: keys::user(user),
            update: Update::default().add(ARCHIVED_COUNT, -(n as i64)),
            guard: Some(Condition::Exists.labeled(users::USER_GONE)),
        };
        let mut writes: Vec<Write> = messages.iter().map(entry).collect();
        if alive {
            writes.push(counter(messages.len()));
        }
        match self.state.table.transact(writes).await {
            Ok(()) => {
                self.report.archived_purged += messages.len();
                self.report.items_deleted += messages.len();
                return Ok(());
            }
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // One was restored or purged meanwhile, or the user was deleted: one at a time.
        for message in messages {
            let mut writes = vec![entry(message)];
            if alive {
                writes.push(counter(1));
            }
            let result = match self.state.table.transact(writes).await {
                // The user is gone: no counter to keep.
                Err(StoreError::ConditionFailed {
                    label: users::USER_GONE,
                }) => self.state.table.transact(vec![entry(message)]).await,
                other => other,
            };
            match result {
                Ok(()) => {
                    self.report.archived_purged += 1;
                    self.report.items_deleted += 1;
                }
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Tasks (gsi1 `TASKS`)

    /// Works through the due tasks in due order. Returns false when the budget ran out first
    /// (or a task could not finish).
    async fn tasks(&mut self) -> DomainResult<bool> {
        let mut finished = true;
        let mut after: Option<Cursor> = None;
        loop {
            if self.spent() {
                return Ok(false);
            }
            let query = Query::index(Index::Gsi1, keys::TASKS_PK)
                .range(self.due())
                .limit(QUEUE_PAGE)
                .start_after(after.take());
            let page = self.state.table.query(&query).await?;
            for entry in &page.items {
                if self.spent() {
                    return Ok(false);
                }
                // The request that deleted a mailbox drains it itself first; racing it would
                // make one of the two fail on the same messages.
                if entry.pk.starts_with(keys::DELETED_MAILBOX_PK_PREFIX)
                    && due_of(entry).is_some_and(|due| due > self.now - MAILBOX_TASK_GRACE_SECS)
                {
                    continue;
                }
                // The index may still list a task that is done.
                let Some(task) = self.state.table.get(&entry.key()).await? else {
                    continue;
                };
                let done = if task.pk.starts_with(keys::DELETED_USER_PK_PREFIX) {
                    self.purge_user(&task).await?
                } else if task.pk.starts_with(keys::DELETED_MAILBOX_PK_PREFIX) {
                    self.drain_mailbox(&task).await?
                } else if task.pk.starts_with(keys::RESTORE_TASK_PK_PREFIX) {
                    self.restore_range(&task).await?
                } else if task.pk.starts_with(keys::SEARCH_TASK_PK_PREFIX) {
                    self.apply_search(&task).await?
                } else if task.pk.starts_with(keys::QUOTA_TASK_PK_PREFIX) {
                    self.recount_quotas(&task).await?
                } else if task.pk.starts_with(keys::CLEAR_TASK_PK_PREFIX) {
                    self.empty_folder(&task).await?
                } else if task.pk.starts_with(keys::AUDIT_PK_PREFIX) {
                    self.work_on_audit(&task).await?
                } else if task.pk.starts_with(keys::OUTBOUND_PK_PREFIX) {
                    // Held by a live request (a fresh lease) counts as handled for this run.
                    let now = DateTime::from_timestamp(self.now, 0).unwrap_or_else(Utc::now);
                    if outgoing::work_on(self.state, &task.key(), now).await? {
                        self.report.mail_sent += 1;
                    }
                    true
                } else {
                    tracing::warn!(pk = %task.pk, "unknown janitor task; skipped");
                    true
                };
                finished &= done;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(finished),
            }
        }
    }

    /// The quota recount of every user: pages of users until done or the budget is spent.
    async fn recount_quotas(&mut self, task: &Item) -> DomainResult<bool> {
        loop {
            if self.spent() {
                return Ok(false);
            }
            let finished = quota_all::step(self.state, &task.key()).await?;
            // A page recounts up to 50 users, each a read of its messages.
            self.report.items_deleted += quota_all::STEP;
            if finished {
                return Ok(true);
            }
        }
    }

    /// An audit's copy, or its removal once expired: pages until done or the budget is spent.
    async fn work_on_audit(&mut self, task: &Item) -> DomainResult<bool> {
        loop {
            if self.spent() {
                return Ok(false);
            }
            let now = DateTime::from_timestamp(self.now, 0).unwrap_or_else(Utc::now);
            let finished = audit::step(self.state, &task.key(), now).await?;
            self.report.items_deleted += audit::STEP;
            if finished {
                return Ok(true);
            }
        }
    }

    /// An action applied to a search's matches: pages until done or the budget is spent.
    async fn apply_search(&mut self, task: &Item) -> DomainResult<bool> {
        loop {
            if self.spent() {
                return Ok(false);
            }
            let finished = search_apply::step(self.state, &task.key()).await?;
            // A page changes up to a hundred messages: counted against the budget as such.
            self.report.items_deleted += search_apply::STEP / 10;
            if finished {
                return Ok(true);
            }
        }
    }

    /// A folder being emptied: passes until it is empty or the budget is spent.
    async fn empty_folder(&mut self, task: &Item) -> DomainResult<bool> {
        loop {
            if self.spent() {
                return Ok(false);
            }
            let chunk = (self.left() / 4).clamp(1, 200);
            let emptied = messages::empty_step(self.state, &task.key(), chunk).await?;
            self.report.messages_purged += emptied.deleted;
            // Each: its item, pointer and (archived or not) the archive entry or blob.
            self.report.items_deleted += 2 * emptied.deleted;
            if emptied.done {
                return Ok(true);
            }
            if emptied.deleted == 0 {
                return Ok(false);
            }
        }
    }

    /// A restore of archived messages by date range: steps until it is done or the budget is
    /// spent. Returns true once the task is finished.
    async fn restore_range(&mut self, task: &Item) -> DomainResult<bool> {
        loop {
            if self.spent() {
                return Ok(false);
            }
            let step =
                archive::restore_step(self.state, &task.key(), archive::RESTORE_STEP).await?;
            self.report.messages_restored += step.restored;
            // Each: its archive entry.
            self.report.items_deleted += step.restored;
            if step.done {
                return Ok(true);
            }
        }
    }

    /// A deleted mailbox: its messages go to the archive (a deleted user's go for good).
    /// Returns true once the mailbox is empty and its task removed.
    async fn drain_mailbox(&mut self, task: &Item) -> DomainResult<bool> {
        let user = id_field(&task.body["user"]);
        let mailbox = id_field(&task.body["mailbox"]["id"]);
        let (Some(user), Some(mailbox)) = (user, mailbox) else {
            tracing::warn!(pk = %task.pk, "unreadable mailbox task; skipped");
            return Ok(true);
        };
        if !self.user_alive(&user).await? {
            if !self
                .purge_partition_messages(&user, &keys::messages_pk(&user, &mailbox))
                .await?
            {
                return Ok(false);
            }
            self.delete_keys(vec![task.key()]).await?;
            self.report.mailboxes_drained += 1;
            return Ok(true);
        }
        loop {
            if self.spent() {
                return Ok(false);
            }
            // Bounded per call so the deadline is checked between batches.
            let chunk = (self.left() / 2).clamp(1, 200);
            let drained =
                messages::drain_deleted_mailbox(self.state, &user, &mailbox, chunk).await?;
            self.report.messages_drained += drained;
            // Each: its item and its pointer.
            self.report.items_deleted += 2 * drained;
            let key = keys::deleted_mailbox(&user, &mailbox);
            if self.state.table.get(&key).await?.is_none() {
                self.report.mailboxes_drained += 1;
                self.report.items_deleted += 1;
                return Ok(true);
            }
            if drained == 0 {
                // Nothing moved and the task stays: leave it to the next run.
                return Ok(false);
            }
        }
    }

    /// Removes everything a deleted user left, in an order that lets any later run resume:
    ///
    /// 1. each mailbox's messages (item, pointer, search terms, thread references, events,
    ///    blob), then the mailbox item;
    /// 2. the archive (events, thread references, blob, item);
    /// 3. leftover message pointers (`MSGID#<user>`);
    /// 4. leftover addresses, and their claims while they still name this user;
    /// 5. the rest of the `USER#<user>` partition (path claims, authlog, ASPs, the journal
    ///    sequence, filters, ...);
    /// 6. the journal and the sent-autoreply marks (which also expire by TTL);
    /// 7. the username claim if it still names this user;
    /// 8. the tombstone, which is also the task.
    ///
    /// Returns true when the user is fully purged.
    async fn purge_user(&mut self, tombstone: &Item) -> DomainResult<bool> {
        let Some(user) = id_field(&tombstone.body["user"]) else {
            tracing::warn!(pk = %tombstone.pk, "unreadable user tombstone; skipped");
            return Ok(true);
        };
        // 0. Marked as purging: from now on a restore fails instead of bringing back a
        // user whose mail is half gone. A restore that came first removed the tombstone.
        if tombstone.counter(users::PURGING) == 0 {
            let marked = self
                .state
                .table
                .update(
                    &tombstone.key(),
                    Update::default().add(users::PURGING, 1),
                    Some(Condition::Exists.labeled("tombstone gone")),
                )
                .await;
            match marked {
                Ok(_) => {}
                Err(StoreError::ConditionFailed { .. }) => return Ok(true),
                Err(e) => return Err(e.into()),
            }
        }
        // 1. Mailboxes: each one's message partition, then the mailbox item.
        loop {
            let page = self
                .state
                .table
                .query(
                    &Query::table(keys::user_pk(&user))
                        .range(SortRange::BeginsWith(keys::MAILBOX_SK_PREFIX.into()))
                        .limit(PARTITION_PAGE),
                )
                .await?;
            if page.items.is_empty() {
                break;
            }
            for item in page.items {
                let Some(mailbox) = item
                    .sk
                    .strip_prefix(keys::MAILBOX_SK_PREFIX)
                    .and_then(|id| id.parse::<ObjectId>().ok())
                else {
                    self.delete_keys(vec![item.key()]).await?;
                    continue;
                };
                let pk = keys::messages_pk(&user, &mailbox);
                if !self.purge_partition_messages(&user, &pk).await? {
                    return Ok(false);
                }
                self.delete_keys(vec![item.key()]).await?;
            }
        }
        // 2. The archive.
        loop {
            if self.spent() {
                return Ok(false);
            }
            let page = self
                .state
                .table
                .query(&Query::table(keys::archive_pk(&user)).limit(PURGE_BATCH))
                .await?;
            if page.items.is_empty() {
                break;
            }
            let mut readable = Vec::new();
            let mut unreadable = Vec::new();
            for item in page.items {
                match item.body_as::<Archived>() {
                    Ok(archived) => readable.push(archived.message),
                    Err(_) => unreadable.push(item.key()),
                }
            }
            self.delete_satellites(&user, &readable, true).await?;
            self.delete_blobs(&readable).await?;
            let keys: Vec<Key> = readable
                .iter()
                .map(|m| keys::archived(&user, &m.id))
                .chain(unreadable)
                .collect();
            self.report.archived_purged += keys.len();
            self.delete_keys(keys).await?;
        }
        // 3. Pointers a failure may have left behind.
        if !self
            .delete_partition(&keys::message_pointers_pk(&user))
            .await?
        {
            return Ok(false);
        }
        // 4. Addresses a partial delete left behind, with their claims.
        if !self.purge_addresses(&user).await? {
            return Ok(false);
        }
        // 5. Everything else in the user's partition.
        if !self.delete_partition(&keys::user_pk(&user)).await? {
            return Ok(false);
        }
        // 5b. Storage files and queued mail, with their blobs; the daily sending counters.
        if !self.purge_files_and_queue(&user).await? {
            return Ok(false);
        }
        // 6. The journal and the sent-autoreply marks expire anyway (a day, a few hours), but
        //    are cheap to empty now.
        for pk in [keys::journal_pk(&user), keys::autoreply_sent(&user, "").pk] {
            if !self.delete_partition(&pk).await? {
                return Ok(false);
            }
        }
        // 6b. What is left of the user's search index (its messages were removed above).
        if let Some(index) = &self.state.text_index {
            index.forget_user(&user).await?;
        }
        // 7. The username claim, if a failure left it naming this user.
        if let Some(username) = tombstone.body["username"].as_str() {
            let claim = keys::username_claim(&names::uview(username));
            self.delete_claim_of(&user, claim).await?;
        }
        // 8. The tombstone: the user is gone.
        self.delete_keys(vec![tombstone.key()]).await?;
        self.report.users_purged += 1;
        tracing::info!(user = %user, "deleted user purged");
        let result = serde_json::json!({ "user": user, "task": tombstone.body["task"] });
        let event =
            super::webhooks::Event::of("user.delete.completed", &user).with("result", result);
        super::webhooks::publish(self.state, event).await;
        Ok(true)
    }

    /// A deleted user's storage files and queued mail: their blobs, then their items; and the
    /// daily sending counters.
    async fn purge_files_and_queue(&mut self, user: &ObjectId) -> DomainResult<bool> {
        let [listing, pointers] = storage::user_partitions(user);
        for (pk, blobs_of) in [
            (pointers.clone(), BlobsOf::File),
            (keys::outbound_pk(user), BlobsOf::Queue),
        ] {
            loop {
                if self.spent() {
                    return Ok(false);
                }
                let page = self
                    .state
                    .table
                    .query(&Query::table(pk.clone()).limit(PURGE_BATCH))
                    .await?;
                if page.items.is_empty() {
                    break;
                }
                let mut blobs = Vec::new();
                for item in &page.items {
                    match blobs_of {
                        BlobsOf::File => {
                            blobs.push(format!("{}{}", storage::blob_prefix(user), item.sk))
                        }
                        BlobsOf::Queue => {
                            let prefix = outgoing::blob_prefix(user);
                            blobs.push(format!("{prefix}{}.eml", item.sk));
                            blobs.push(format!("{prefix}{}.copy.eml", item.sk));
                        }
                    }
                }
                self.delete_blob_keys(&blobs).await?;
                let keys = page.items.iter().map(Item::key).collect();
                self.delete_keys(keys).await?;
            }
        }
        for pk in [listing, format!("SENDLIMIT#{user}")] {
            if !self.delete_partition(&pk).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes `claim` if it names `user` (a claim names whoever holds the name: once it has
    /// been freed and taken again it belongs to someone else and stays).
    async fn delete_claim_of(&mut self, user: &ObjectId, claim: Key) -> DomainResult<()> {
        if self.claim_names(&claim, user).await? {
            self.delete_keys(vec![claim]).await?;
        }
        Ok(())
    }

    /// Whether the username or address `claim` still names `user`.
    async fn claim_names(&self, claim: &Key, user: &ObjectId) -> DomainResult<bool> {
        let held = self.state.table.get(claim).await?;
        Ok(held.is_some_and(|h| id_field(&h.body["user"]) == Some(*user)))
    }

    /// Address items under the user's partition (left by a delete whose follow-up transaction
    /// failed): each with its claim while the claim still names this user, and the global
    /// address count, in one transaction per batch.
    async fn purge_addresses(&mut self, user: &ObjectId) -> DomainResult<bool> {
        loop {
            if self.spent() {
                return Ok(false);
            }
            let page = self
                .state
                .table
                .query(
                    &Query::table(keys::user_pk(user))
                        .range(SortRange::BeginsWith(keys::ADDRESS_SK_PREFIX.into()))
                        .limit((MAX_TRANSACTION_WRITES - 1) / 2),
                )
                .await?;
            if page.items.is_empty() {
                return Ok(true);
            }
            let mut writes = Vec::new();
            let mut count = 0;
            for item in &page.items {
                // Exists: a concurrent run that deleted it first made its own counter change.
                writes.push(Write::delete(item.key()).when(Condition::Exists, ADDRESS_GONE));
                count += 1;
                if let Ok(address) = item.body_as::<StoredAddress>() {
                    let claim = keys::address_claim(&address.addrview);
                    // Only this user's own (deleted) address can release a claim that names
                    // it, so the claim can't change between this read and the delete.
                    if self.claim_names(&claim, user).await? {
                        writes.push(Write::delete(claim));
                    }
                }
            }
            let deleted = writes.len();
            writes.push(stats::change(&[(stats::ADDRESSES, -(count as i64))]));
            match self.state.table.transact(writes).await {
                Ok(()) => self.report.items_deleted += deleted,
                // Read again: what is left is this run's to delete.
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Deleting

    /// Purges every message of a message partition for good. Returns false when the budget ran
    /// out first.
    async fn purge_partition_messages(&mut self, user: &ObjectId, pk: &str) -> DomainResult<bool> {
        loop {
            if self.spent() {
                return Ok(false);
            }
            let page = self
                .state
                .table
                .query(&Query::table(pk).limit(PURGE_BATCH))
                .await?;
            if page.items.is_empty() {
                return Ok(true);
            }
            let mut readable = Vec::new();
            for item in page.items {
                match messages::from_item(&item) {
                    Ok(message) => readable.push(message),
                    Err(_) => {
                        tracing::warn!(pk = %item.pk, sk = %item.sk, "unreadable message of a deleted user; removing the item only");
                        self.delete_keys(vec![item.key()]).await?;
                    }
                }
            }
            self.purge_messages(user, &readable).await?;
        }
    }

    /// Removes messages for good, with no archive and no counters: their satellites, then
    /// their blobs, then the message items (the only reference to the rest).
    async fn purge_messages(&mut self, user: &ObjectId, messages: &[Message]) -> DomainResult<()> {
        for chunk in messages.chunks(PURGE_BATCH) {
            self.delete_satellites(user, chunk, true).await?;
            self.delete_blobs(chunk).await?;
            let keys = chunk
                .iter()
                .map(|m| keys::message(user, &m.mailbox, m.uid))
                .collect();
            self.delete_keys(keys).await?;
            messages::indexing::unindex(self.state, chunk).await;
            self.report.messages_purged += chunk.len();
        }
        Ok(())
    }

    /// Deletes the items that hang off messages: their events always; with `all`, also their
    /// pointers, search terms and thread references (the last derived from the stored
    /// source's header).
    async fn delete_satellites(
        &mut self,
        user: &ObjectId,
        messages: &[Message],
        all: bool,
    ) -> DomainResult<()> {
        let state = self.state;
        let mut keys: BTreeSet<Key> = BTreeSet::new();
        // A few reads in flight at once (joined per group: a stream of borrowing closures
        // would not be `Send` inside the local server's spawned loop).
        for group in messages.chunks(IN_FLIGHT) {
            let events = group
                .iter()
                .map(|m| partition_keys(state, keys::message_events_pk(user, &m.id)));
            for found in futures::future::try_join_all(events).await? {
                keys.extend(found);
            }
            if all {
                let refs = group.iter().map(|m| thread_ref_keys(state, user, m));
                for found in futures::future::try_join_all(refs).await? {
                    keys.extend(found);
                }
            }
        }
        if all {
            for message in messages {
                keys.insert(keys::message_pointer(user, &message.id));
                for term in &message.terms {
                    keys.insert(keys::search_term(user, term, &message.id));
                }
            }
        }
        self.delete_keys(keys.into_iter().collect()).await
    }

    /// Deletes blobs (no error when one is already gone).
    async fn delete_blobs(&mut self, messages: &[Message]) -> DomainResult<()> {
        let keys: Vec<String> = messages.iter().map(|m| m.blob.clone()).collect();
        self.delete_blob_keys(&keys).await
    }

    /// Deletes blobs by key, [`IN_FLIGHT`] at a time (a missing one is fine).
    async fn delete_blob_keys(&mut self, keys: &[String]) -> DomainResult<()> {
        for group in keys.chunks(IN_FLIGHT) {
            let deletes = group.iter().map(|key| self.state.blobs.delete(key));
            futures::future::try_join_all(deletes).await?;
            self.report.blobs_deleted += group.len();
        }
        Ok(())
    }

    /// Deletes items by key (each key at most once), in bulk: each delete stands alone.
    async fn delete_keys(&mut self, keys: Vec<Key>) -> DomainResult<()> {
        self.state.table.delete_many(&keys).await?;
        self.report.items_deleted += keys.len();
        Ok(())
    }

    /// Deletes every item of a partition. Returns false when the budget ran out first.
    async fn delete_partition(&mut self, pk: &str) -> DomainResult<bool> {
        loop {
            if self.spent() {
                return Ok(false);
            }
            let page = self
                .state
                .table
                .query(&Query::table(pk).limit(PARTITION_PAGE))
                .await?;
            if page.items.is_empty() {
                return Ok(true);
            }
            self.delete_keys(page.items.iter().map(Item::key).collect())
                .await?;
        }
    }
}

/// The due time (unix seconds) of a task, from its gsi1 sort key `<due, 12 digits>#...`.
fn due_of(task: &Item) -> Option<i64> {
    let sk = &task.gsi1.as_ref()?.sk;
    sk.split('#').next()?.parse().ok()
}

/// An object id stored as a JSON string.
fn id_field(value: &serde_json::Value) -> Option<ObjectId> {
    value.as_str().and_then(|s| s.parse().ok())
}

/// The keys of every item of a (small) partition.
async fn partition_keys(state: &AppState, pk: String) -> DomainResult<Vec<Key>> {
    let items = query_all(state.table.as_ref(), Query::table(pk).limit(PARTITION_PAGE)).await?;
    Ok(items.iter().map(Item::key).collect())
}

/// The thread-reference items of a stored message, derived again from the header of its
/// source, exactly as the upload derived them. None when the blob is already gone (a previous
/// run deleted the references before the blob).
async fn thread_ref_keys(
    state: &AppState,
    user: &ObjectId,
    message: &Message,
) -> DomainResult<Vec<Key>> {
    let Some(head) = state.blobs.get_range(&message.blob, 0..HEAD_BYTES).await? else {
        return Ok(Vec::new());
    };
    let header = match header_end(&head) {
        Some(end) => head.slice(..end),
        // A header longer than what was read (rare): read the whole source.
        None if head.len() as u64 >= HEAD_BYTES => {
            state.blobs.get(&message.blob).await?.unwrap_or_default()
        }
        None => head,
    };
    let parsed = parse::parse(&header);
    Ok(messages::thread_ref_keys(user, &parsed))
}

/// Where the header block of a raw message ends (after its blank line).
fn header_end(raw: &Bytes) -> Option<usize> {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_ends_at_the_first_blank_line() {
        assert_eq!(
            header_end(&Bytes::from_static(b"A: b\r\n\r\nbody")),
            Some(8)
        );
        assert_eq!(
            header_end(&Bytes::from_static(b"A: b\n\nbody\r\n\r\n")),
            Some(6)
        );
        assert_eq!(header_end(&Bytes::from_static(b"A: b\r\nC: d\r\n")), None);
    }

    #[test]
    fn due_range_takes_in_every_entry_up_to_now_and_none_after() {
        let (from, to) = keys::due_until(1_700_000_000);
        let range = SortRange::Between(from, to);
        let key = Key::new("MSGS#u#m", "0000000001");
        let entry = |due: i64| keys::purge_entry(due, &key).sk;
        assert!(range.contains(&entry(1_700_000_000)));
        assert!(range.contains(&entry(0)));
        assert!(range.contains(&entry(-5)));
        assert!(!range.contains(&entry(1_700_000_001)));
        let user = ObjectId::new();
        assert!(range.contains(&keys::purge_task(1_699_999_999, &user).sk));
        assert!(!range.contains(&keys::purge_task(1_700_000_001, &user).sk));
    }

    #[test]
    fn report_is_camel_case_json() {
        let report = Report {
            users_purged: 1,
            more_work: true,
            ..Default::default()
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["usersPurged"], 1);
        assert_eq!(json["moreWork"], true);
        assert_eq!(json["itemsDeleted"], 0);
    }
}
