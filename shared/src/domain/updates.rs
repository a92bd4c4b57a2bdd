//! The updates stream (`GET /users/{user}/updates`, WildDuck's EventSource stream) above the
//! journal: reading a user's events after a given id in order, with nothing lost and nothing
//! repeated; the Server-Sent Events frames; each command's payload as WildDuck sends it; and the
//! in-process notifier that wakes waiting streams in the local server.
//!
//! # Order and gaps
//!
//! A change reserves its journal numbers before its transaction ([`super::journal::reserve`]),
//! so the numbers present in the table are not always contiguous:
//!
//! * a change that fails after reserving leaves a number that never appears;
//! * two concurrent changes can commit in the opposite order of their numbers, so for a moment
//!   n + 1 is visible and n is not.
//!
//! [`JournalReader`] delivers strictly in number order. At a missing number it stops while that
//! number may still appear: until [`UpdatesConfig::gap_grace`] has passed since the number was
//! reserved at the latest. The number was reserved before the event after it was written (its
//! `created`), before the reader first saw the gap, and, if the head of the sequence already
//! covered it when the stream opened, before that. After the grace it counts as a failed change
//! and is skipped. A change still uncommitted after the grace would be skipped too, so the
//! grace must exceed the time between reserving and committing (a transaction with retries).
//!
//! # Where a stream starts, and resync
//!
//! * With `Last-Event-ID` *r*: after *r*. If the journal no longer holds what came after *r*
//!   (the oldest kept event is above *r* + 1, or nothing is kept but the head is above *r*), the
//!   stream opens with a [`Resync`] event and continues as a fresh stream: the client must
//!   reload its state. So does an *r* above the head (an id this user never had).
//! * Without: after the newest event, like WildDuck (no backlog). Numbers above it are already
//!   reserved and are delivered when they commit. A missing number just below a recent event may
//!   still be committing, so the stream starts below it and also sends the few events of the
//!   last seconds above it.
//!
//! Every stream sends its position as an `id:` line at once, so a client that saw no event still
//! resumes from there.
//!
//! [`UpdatesConfig::gap_grace`]: crate::config::UpdatesConfig::gap_grace

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::{keys, mailboxes};
use crate::id::ObjectId;
use crate::store::decorate::{Call, Decorated, TableHooks};
use crate::store::{Item, Key, Query, SortRange, StoreResult, Table, Write};

/// The reconnection delay suggested to clients (`retry:`), in milliseconds.
pub const RETRY_MS: u64 = 3000;

/// Journal events read per query.
pub const READ_BATCH: usize = 100;

/// How many of the newest events a fresh stream inspects for changes still committing.
const RECENT_WINDOW: usize = 50;

/// At most this many mailboxes get a COUNTERS event after a replay.
pub const MAX_COUNTERS: usize = 100;

/// Journal fields that clients never see (WildDuck leaves out the same ones; `id` is the
/// frame's `id:` line, `unseen` is kept only in COUNTERS).
const INTERNAL_FIELDS: &[&str] = &[
    "_id",
    "id",
    "ignore",
    "user",
    "modseq",
    "unseenChange",
    "created",
];

// ---------------------------------------------------------------------------------------------
// Events and their payloads

/// One stored journal event.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEvent {
    /// Its number in the user's sequence: the stream's event id.
    pub seq: i64,
    /// The stored object: `command` and its fields, plus `id`, `user` and `created`.
    pub body: Value,
}

impl JournalEvent {
    /// The event of a journal item; `None` when its sort key is not a number.
    pub fn from_item(item: &Item) -> Option<JournalEvent> {
        let seq = item.sk.parse::<i64>().ok()?;
        Some(JournalEvent {
            seq,
            body: item.body.clone(),
        })
    }

    /// A number a failed change reserved and never used ([`super::journal::commit`]).
    pub fn is_skip_marker(&self) -> bool {
        self.body["skipped"] == true
    }

    /// `EXISTS`, `EXPUNGE`, `FETCH`, `CREATE`, `RENAME`, `DELETE`, `LOGOUT` (empty if missing).
    pub fn command(&self) -> &str {
        self.body["command"].as_str().unwrap_or("")
    }

    /// The mailbox whose counters this event changes (EXISTS, EXPUNGE, FETCH), for the
    /// COUNTERS events after a replay.
    pub fn counted_mailbox(&self) -> Option<ObjectId> {
        match self.command() {
            "EXISTS" | "EXPUNGE" | "FETCH" => self.body["mailbox"].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// When the change was written (just before its transaction).
    pub fn created(&self) -> Option<DateTime<Utc>> {
        self.body["created"].as_str()?.parse().ok()
    }

    /// What clients get: the command's fields as WildDuck sends them.
    pub fn payload(&self) -> Value {
        public_payload(&self.body)
    }
}

/// A stored event without its internal fields (WildDuck's `formatJournalData`).
pub fn public_payload(body: &Value) -> Value {
    let Value::Object(fields) = body else {
        return Value::Object(Map::new());
    };
    let counters = fields.get("command").and_then(Value::as_str) == Some("COUNTERS");
    Value::Object(
        fields
            .iter()
            .filter(|(k, _)| !INTERNAL_FIELDS.contains(&k.as_str()))
            .filter(|(k, _)| counters || k.as_str() != "unseen")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events frames

/// One event: its JSON on one `data:` line (EventSource clients join multi-line data anyway,
/// and compact JSON never contains a raw line break), its number on the `id:` line.
pub fn event_frame(seq: i64, payload: &Value) -> String {
    format!("data: {payload}\nid: {seq}\n\n")
}

/// A comment line (keepalive); EventSource clients ignore it.
pub fn comment_frame(text: &str) -> String {
    format!(": {}\n\n", text.replace(['\r', '\n'], " "))
}

/// The first block of every stream: WildDuck's `: idling 1`, the reconnection delay, and the
/// position. An `id:` without `data:` dispatches no event but sets the client's last event id,
/// so even a client that receives no event resumes from here.
pub fn open_frame(position: i64) -> String {
    format!(": idling 1\nretry: {RETRY_MS}\nid: {position}\n\n")
}

/// The resync event: a named event (`event: resync`), so clients listen for it explicitly,
/// carrying the stream's new position.
pub fn resync_frame(resync: &Resync, position: i64) -> String {
    let data = json!({ "command": "RESYNC", "code": resync.code, "reason": resync.reason });
    format!("event: resync\ndata: {data}\nid: {position}\n\n")
}

/// A failure after the stream started (WildDuck's `event: error`); the stream then ends and
/// the client reconnects with its last event id.
pub fn error_frame(code: &str, message: &str) -> String {
    let data = json!({ "error": message, "code": code });
    format!("event: error\ndata: {data}\n\n")
}

// ---------------------------------------------------------------------------------------------
// Reading the journal

/// Why a stream could not resume where the client asked: it must reload its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    /// `JournalExpired` or `UnknownEventId`.
    pub code: &'static str,
    pub reason: String,
}

/// What one read found.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events to deliver now, in order.
    pub events: Vec<JournalEvent>,
    /// More events may be waiting: read again at once.
    pub more: bool,
    /// A missing number holds back later events until this time; read again then (or when
    /// woken earlier).
    pub hold_until: Option<DateTime<Utc>>,
}

/// A user's journal read in order from a position, with the gap rule of the module docs.
#[derive(Debug)]
pub struct JournalReader {
    user: ObjectId,
    /// Every number up to here is delivered or skipped.
    after: i64,
    grace: chrono::Duration,
    /// The head of the sequence when the stream opened: numbers up to it were reserved by then.
    head_at_open: i64,
    opened: DateTime<Utc>,
    /// The gap after `after` was first seen then.
    gap_seen: Option<(i64, DateTime<Utc>)>,
}

impl JournalReader {
    /// Opens a reader after `last_event_id`, or fresh at the newest event. The [`Resync`] says
    /// why it opened fresh although an id was given.
    pub async fn open(
        table: &dyn Table,
        user: &ObjectId,
        last_event_id: Option<i64>,
        grace: Duration,
    ) -> StoreResult<(JournalReader, Option<Resync>)> {
        Self::open_at(table, user, last_event_id, grace, Utc::now()).await
    }

    /// [`JournalReader::open`] at a given time (tests).
    pub async fn open_at(
        table: &dyn Table,
        user: &ObjectId,
        last_event_id: Option<i64>,
        grace: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<(JournalReader, Option<Resync>)> {
        let head = table
            .get(&keys::journal_sequence(user))
            .await?
            .map(|item| item.counter("seq"))
            .unwrap_or(0);
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::seconds(5));
        let mut reader = JournalReader {
            user: *user,
            after: 0,
            grace,
            head_at_open: head,
            opened: now,
            gap_seen: None,
        };
        let resync = match last_event_id {
            Some(r) => resume_check(table, user, r, head).await?,
            None => None,
        };
        reader.after = match (last_event_id, &resync) {
            (Some(r), None) => r,
            _ => fresh_position(table, user, head, grace, now).await?,
        };
        Ok((reader, resync))
    }

    /// The number of the last event delivered or skipped: the stream's `id:`.
    pub fn position(&self) -> i64 {
        self.after
    }

    pub fn user(&self) -> &ObjectId {
        &self.user
    }

    /// The next events after the position.
    pub async fn read(&mut self, table: &dyn Table) -> StoreResult<Batch> {
        self.read_at(table, Utc::now()).await
    }

    /// [`JournalReader::read`] at a given time (tests).
    pub async fn read_at(&mut self, table: &dyn Table, now: DateTime<Utc>) -> StoreResult<Batch> {
        let from = keys::journal_event(&self.user, self.after.saturating_add(1)).sk;
        let to = keys::journal_event(&self.user, i64::MAX).sk;
        let query = Query::table(keys::journal_pk(&self.user))
            .range(SortRange::Between(from, to))
            .limit(READ_BATCH);
        let page = table.query(&query).await?;
        let mut batch = Batch::default();
        for item in &page.items {
            let Some(event) = JournalEvent::from_item(item) else {
                tracing::warn!(pk = %item.pk, sk = %item.sk, "journal item without a number");
                continue;
            };
            if event.seq <= self.after {
                continue;
            }
            if event.seq > self.after + 1 {
                let deadline = self.gap_deadline(&event, now);
                if now < deadline {
                    batch.hold_until = Some(deadline);
                    break;
                }
                tracing::debug!(
                    user = %self.user,
                    from = self.after + 1,
                    to = event.seq - 1,
                    "journal numbers never written (failed changes); skipped"
                );
            }
            self.after = event.seq;
            self.gap_seen = None;
            // WildDuck skips entries without a command too.
            if !event.command().is_empty() {
                batch.events.push(event);
            }
        }
        batch.more = batch.hold_until.is_none() && page.next.is_some();
        Ok(batch)
    }

    /// Until when the numbers between the position and `next` may still appear.
    fn gap_deadline(&mut self, next: &JournalEvent, now: DateTime<Utc>) -> DateTime<Utc> {
        let seen = match self.gap_seen {
            Some((after, at)) if after == self.after => at,
            _ => {
                self.gap_seen = Some((self.after, now));
                now
            }
        };
        let mut reserved_by = seen;
        if let Some(created) = next.created() {
            reserved_by = reserved_by.min(created);
        }
        if next.seq - 1 <= self.head_at_open {
            reserved_by = reserved_by.min(self.opened);
        }
        reserved_by + self.grace
    }
}

/// `None` when the stream can resume after `r`; otherwise why not.
async fn resume_check(
    table: &dyn Table,
    user: &ObjectId,
    r: i64,
    head: i64,
) -> StoreResult<Option<Resync>> {
    if r > head {
        return Ok(Some(Resync {
            code: "UnknownEventId",
            reason: format!("Event {r} is unknown for this user; reload the mailbox state"),
        }));
    }
    if r == head {
        return Ok(None);
    }
    let oldest = table
        .query(&Query::table(keys::journal_pk(user)).limit(1))
        .await?;
    let oldest = oldest.items.first().and_then(JournalEvent::from_item);
    match oldest {
        // Everything after r is still kept (missing numbers are failed or uncommitted changes).
        Some(event) if event.seq <= r + 1 => Ok(None),
        _ => Ok(Some(Resync {
            code: "JournalExpired",
            reason: format!("Events after {r} are no longer kept; reload the mailbox state"),
        })),
    }
}

/// Where a stream without a usable `Last-Event-ID` starts (see the module docs).
async fn fresh_position(
    table: &dyn Table,
    user: &ObjectId,
    head: i64,
    grace: chrono::Duration,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let page = table
        .query(
            &Query::table(keys::journal_pk(user))
                .backwards()
                .limit(RECENT_WINDOW),
        )
        .await?;
    let recent: Vec<JournalEvent> = page
        .items
        .iter()
        .filter_map(JournalEvent::from_item)
        .collect();
    let Some(newest) = recent.first() else {
        // Nothing kept: every number up to the head is expired, failed, or (rarely) still
        // committing at this very moment.
        return Ok(head);
    };
    let mut position = newest.seq;
    for pair in recent.windows(2) {
        let (upper, lower) = (&pair[0], &pair[1]);
        let is_recent = upper.created().is_none_or(|c| c + grace > now);
        if !is_recent {
            break;
        }
        if upper.seq > lower.seq + 1 {
            position = lower.seq;
        }
    }
    Ok(position)
}

/// WildDuck's COUNTERS events after a replay: `{command, mailbox, total, unseen}` for each
/// mailbox that still exists (at most [`MAX_COUNTERS`], in the given order).
pub async fn counters(
    table: &dyn Table,
    user: &ObjectId,
    mailbox_ids: &[ObjectId],
) -> StoreResult<Vec<Value>> {
    let wanted: Vec<ObjectId> = mailbox_ids.iter().take(MAX_COUNTERS).copied().collect();
    let keys: Vec<Key> = wanted.iter().map(|m| keys::mailbox(user, m)).collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let items = table.get_many(&keys).await?;
    let by_key: HashMap<Key, &Item> = items.iter().map(|i| (i.key(), i)).collect();
    Ok(wanted
        .iter()
        .zip(&keys)
        .filter_map(|(id, key)| {
            let item = by_key.get(key)?;
            Some(json!({
                "command": "COUNTERS",
                "mailbox": id,
                "total": item.counter(mailboxes::TOTAL).max(0),
                "unseen": item.counter(mailboxes::UNSEEN).max(0),
            }))
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Waking streams without polling (local server)

/// Wakes the streams of a user when a journal write of that user has committed. The local
/// server has one ([`LocalNotifier`]); Lambda has none (there, streams poll the journal and
/// WebSocket clients get pushes from the DynamoDB stream).
pub trait ChangeNotifier: Send + Sync {
    /// A journal write of `user` has committed.
    fn notify(&self, user: &ObjectId);
    /// A receiver that changes after every later [`ChangeNotifier::notify`] of `user`, and
    /// reports the channel closed when the notifier shuts down.
    fn subscribe(&self, user: &ObjectId) -> watch::Receiver<u64>;
}

/// The in-process notifier: one `watch` channel per user with waiting streams. A `watch`
/// keeps only "changed since you looked", so a burst of writes wakes a stream once and a slow
/// stream never lags behind a queue.
#[derive(Debug, Default)]
pub struct LocalNotifier {
    state: Mutex<NotifierState>,
}

#[derive(Debug, Default)]
struct NotifierState {
    senders: HashMap<ObjectId, watch::Sender<u64>>,
    closed: bool,
}

/// Above this many channels, subscribing first drops those nobody listens to any more.
const PRUNE_ABOVE: usize = 1024;

impl LocalNotifier {
    pub fn new() -> LocalNotifier {
        LocalNotifier::default()
    }

    /// Shuts down: every waiting stream sees its channel closed and ends, so a graceful
    /// server shutdown is not held up by open streams.
    pub fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        state.senders.clear();
    }

    /// Users with a channel (tests: channels of finished streams go away).
    pub fn channels(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.senders.len()
    }
}

impl ChangeNotifier for LocalNotifier {
    fn notify(&self, user: &ObjectId) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = state.senders.get(user) {
            if sender.receiver_count() == 0 {
                state.senders.remove(user);
            } else {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    fn subscribe(&self, user: &ObjectId) -> watch::Receiver<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.closed {
            // Its sender is dropped at once: the stream sees a closed channel and ends.
            return watch::channel(0).1;
        }
        if state.senders.len() > PRUNE_ABOVE {
            state.senders.retain(|_, s| s.receiver_count() > 0);
        }
        state
            .senders
            .entry(*user)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// The table hook of the local server: after a transaction that wrote journal events
/// commits, the notifier wakes the streams of those users. Every journal write goes through
/// [`Table::transact`] (a change and its events commit together), so watching the table
/// catches them all, whichever domain module writes them.
pub struct JournalHook {
    notifier: Arc<dyn ChangeNotifier>,
}

/// The table wrapped with a [`JournalHook`].
pub type JournalWatch = Decorated<JournalHook>;

impl JournalHook {
    pub fn watch(inner: Arc<dyn Table>, notifier: Arc<dyn ChangeNotifier>) -> JournalWatch {
        Decorated::new(inner, JournalHook { notifier })
    }
}

impl TableHooks for JournalHook {
    /// The users whose journal a transaction adds to.
    type Memo = Vec<ObjectId>;

    fn before(&self, call: Call<'_>) -> StoreResult<Vec<ObjectId>> {
        Ok(match call {
            Call::Transact(writes) => journal_users(writes),
            _ => Vec::new(),
        })
    }

    fn after(&self, users: Vec<ObjectId>) {
        for user in &users {
            self.notifier.notify(user);
        }
    }
}

/// The users whose journal the writes add to.
fn journal_users(writes: &[Write]) -> Vec<ObjectId> {
    let mut users: Vec<ObjectId> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Put { item, .. } => item.pk.strip_prefix(keys::JOURNAL_PK_PREFIX),
            _ => None,
        })
        .filter_map(|user| user.parse().ok())
        .collect();
    users.sort();
    users.dedup();
    users
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::journal;
    use crate::store::embedded::EmbeddedTable;

    fn table() -> (tempfile::TempDir, Arc<dyn Table>) {
        let dir = tempfile::tempdir().unwrap();
        let table = EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
        (dir, Arc::new(table))
    }

    async fn write(table: &dyn Table, user: &ObjectId, seq: i64, command: &str) {
        let event = json!({ "command": command, "mailbox": ObjectId::new() });
        table
            .transact(vec![journal::event_write(
                &Config::default(),
                user,
                seq,
                event,
            )])
            .await
            .unwrap();
    }

    fn seqs(batch: &Batch) -> Vec<i64> {
        batch.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn payload_drops_internal_fields_and_keeps_wildduck_ones() {
        let body = json!({
            "command": "EXISTS", "uid": 12, "message": "5f1", "idate": "2024-01-01T00:00:00Z",
            "thread": "5f2", "mailbox": "5f3", "unseen": true, "id": 7, "user": "5f4",
            "created": "2024-01-01T00:00:00Z", "modseq": 3
        });
        assert_eq!(
            public_payload(&body),
            json!({"command": "EXISTS", "uid": 12, "message": "5f1",
                   "idate": "2024-01-01T00:00:00Z", "thread": "5f2", "mailbox": "5f3"})
        );
        let counters = json!({"command": "COUNTERS", "mailbox": "m", "total": 3, "unseen": 1});
        assert_eq!(public_payload(&counters), counters);
    }

    #[test]
    fn frames_follow_the_event_stream_format() {
        let payload = json!({"command": "CREATE", "path": "a\nb"});
        assert_eq!(
            event_frame(9, &payload),
            "data: {\"command\":\"CREATE\",\"path\":\"a\\nb\"}\nid: 9\n\n"
        );
        assert_eq!(comment_frame("idling 2"), ": idling 2\n\n");
        assert_eq!(open_frame(4), ": idling 1\nretry: 3000\nid: 4\n\n");
        let resync = Resync {
            code: "JournalExpired",
            reason: "gone".into(),
        };
        assert!(resync_frame(&resync, 5).starts_with("event: resync\ndata: {"));
        assert!(resync_frame(&resync, 5).ends_with("\nid: 5\n\n"));
        assert!(error_frame("InternalDatabaseError", "x").starts_with("event: error\ndata: "));
    }

    #[tokio::test]
    async fn notifier_wakes_subscribers_and_closes() {
        let notifier = LocalNotifier::new();
        let user = ObjectId::new();
        let mut rx = notifier.subscribe(&user);
        notifier.notify(&ObjectId::new());
        assert!(!rx.has_changed().unwrap());
        notifier.notify(&user);
        notifier.notify(&user);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        assert!(!rx.has_changed().unwrap());
        // A channel nobody listens to is dropped on the next notify.
        drop(rx);
        notifier.notify(&user);
        assert_eq!(notifier.channels(), 0);
        let mut rx = notifier.subscribe(&user);
        notifier.close();
        assert!(rx.changed().await.is_err());
        assert!(notifier.subscribe(&user).has_changed().is_err());
    }

    #[tokio::test]
    async fn journal_watch_notifies_only_after_a_commit_with_journal_events() {
        let (_dir, inner) = table();
        let notifier = Arc::new(LocalNotifier::new());
        let watched = JournalHook::watch(inner, notifier.clone());
        let user = ObjectId::new();
        let mut rx = notifier.subscribe(&user);
        watched
            .transact(vec![Write::put(Item::new(keys::user(&user), json!({})))])
            .await
            .unwrap();
        assert!(!rx.has_changed().unwrap());
        write(&watched, &user, 1, "CREATE").await;
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        // A failed transaction wakes nobody.
        let event = journal::event_write(&Config::default(), &user, 2, json!({"command": "X"}));
        let fails = Write::check(
            keys::user(&ObjectId::new()),
            crate::store::Condition::Exists,
            "user",
        );
        assert!(watched.transact(vec![event, fails]).await.is_err());
        assert!(!rx.has_changed().unwrap());
    }

    #[tokio::test]
    async fn reader_holds_back_after_a_gap_until_filled() {
        let (_dir, table) = table();
        let table = table.as_ref();
        let user = ObjectId::new();
        let grace = Duration::from_secs(5);
        let (mut reader, resync) = JournalReader::open(table, &user, Some(0), grace)
            .await
            .unwrap();
        assert_eq!(resync, None);
        // Two concurrent changes: 2 commits before 1.
        let first = journal::reserve(table, &user, 1).await.unwrap();
        let second = journal::reserve(table, &user, 1).await.unwrap();
        write(table, &user, second, "CREATE").await;
        let batch = reader.read(table).await.unwrap();
        assert!(batch.events.is_empty());
        assert!(batch.hold_until.is_some());
        write(table, &user, first, "RENAME").await;
        let batch = reader.read(table).await.unwrap();
        assert_eq!(seqs(&batch), [1, 2]);
        assert_eq!(reader.position(), 2);
        assert!(reader.read(table).await.unwrap().events.is_empty());
    }

    #[tokio::test]
    async fn reader_skips_a_number_that_never_appears_after_the_grace() {
        let (_dir, table) = table();
        let table = table.as_ref();
        let user = ObjectId::new();
        let grace = Duration::from_secs(5);
        let now = Utc::now();
        let (mut reader, _) = JournalReader::open_at(table, &user, Some(0), grace, now)
            .await
            .unwrap();
        // 1 is a change that failed.
        assert_eq!(journal::reserve(table, &user, 2).await.unwrap(), 1);
        write(table, &user, 2, "CREATE").await;
        let batch = reader.read_at(table, now).await.unwrap();
        assert!(batch.events.is_empty());
        let hold = batch.hold_until.unwrap();
        assert!(
            hold <= now + chrono::Duration::seconds(6),
            "{hold} vs {now}"
        );
        let batch = reader.read_at(table, hold).await.unwrap();
        assert_eq!(seqs(&batch), [2]);
        // A number reserved before the stream opened waits no longer than the grace after
        // opening, even when the event after it says it was written much later.
        assert_eq!(journal::reserve(table, &user, 1).await.unwrap(), 3); // fails
        let (mut late, _) = JournalReader::open_at(table, &user, Some(2), grace, now)
            .await
            .unwrap();
        let later = now + chrono::Duration::seconds(60);
        let seq = journal::reserve(table, &user, 1).await.unwrap();
        let item = Item::new(
            keys::journal_event(&user, seq),
            json!({"command": "DELETE", "id": seq, "created": later}),
        );
        table.transact(vec![Write::put(item)]).await.unwrap();
        assert_eq!(seqs(&late.read_at(table, later).await.unwrap()), [4]);
    }

    #[tokio::test]
    async fn resume_reports_resync_when_events_after_the_id_are_gone() {
        let (_dir, table) = table();
        let table = table.as_ref();
        let user = ObjectId::new();
        let grace = Duration::from_secs(5);
        journal::reserve(table, &user, 6).await.unwrap();
        for seq in 1..=6 {
            write(table, &user, seq, "CREATE").await;
        }
        // Events 1 to 3 expire.
        let gone: Vec<Write> = (1..=3)
            .map(|s| Write::delete(keys::journal_event(&user, s)))
            .collect();
        table.transact(gone).await.unwrap();
        let (reader, resync) = JournalReader::open(table, &user, Some(3), grace)
            .await
            .unwrap();
        assert_eq!(
            resync, None,
            "events up to 3 are gone, but the client saw them"
        );
        assert_eq!(reader.position(), 3);
        let (reader, resync) = JournalReader::open(table, &user, Some(2), grace)
            .await
            .unwrap();
        assert_eq!(resync.unwrap().code, "JournalExpired");
        assert_eq!(reader.position(), 6);
        let (_, resync) = JournalReader::open(table, &user, Some(7), grace)
            .await
            .unwrap();
        assert_eq!(resync.unwrap().code, "UnknownEventId");
        let (reader, resync) = JournalReader::open(table, &user, Some(6), grace)
            .await
            .unwrap();
        assert_eq!((reader.position(), resync), (6, None));
    }

    #[tokio::test]
    async fn fresh_reader_starts_below_a_recent_gap_only() {
        let (_dir, table) = table();
        let table = table.as_ref();
        let user = ObjectId::new();
        let grace = Duration::from_secs(5);
        journal::reserve(table, &user, 5).await.unwrap();
        for seq in [1, 2, 4, 5] {
            write(table, &user, seq, "CREATE").await;
        }
        // 3 may still be committing: start after 2, and deliver 3 (if it comes), 4 and 5.
        let (reader, _) = JournalReader::open(table, &user, None, grace)
            .await
            .unwrap();
        assert_eq!(reader.position(), 2);
        // Long after, the gap is settled: start at the newest event.
        let later = Utc::now() + chrono::Duration::seconds(60);
        let (reader, _) = JournalReader::open_at(table, &user, None, grace, later)
            .await
            .unwrap();
        assert_eq!(reader.position(), 5);
        // Reserved but not yet written numbers above the newest are delivered when they come.
        let next = journal::reserve(table, &user, 1).await.unwrap();
        let (mut reader, _) = JournalReader::open_at(table, &user, None, grace, later)
            .await
            .unwrap();
        assert_eq!(reader.position(), 5);
        write(table, &user, next, "DELETE").await;
        assert_eq!(seqs(&reader.read(table).await.unwrap()), [6]);
    }
}
