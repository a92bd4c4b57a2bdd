//! Reading a user's journal in order for the updates stream (see the module above for the gap
//! rule and where a stream starts), and each event's payload as WildDuck sends it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::domain::{keys, mailboxes};
use crate::id::ObjectId;
use crate::store::{Item, Key, Query, SortRange, StoreResult, Table};

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
            body: Value::clone(&item.body),
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
            "EXISTS" | "EXPUNGE" => self.body["mailbox"].as_str()?.parse().ok(),
            // A flag change counts when \Seen changed (events written before the field was
            // recorded count too).
            "FETCH" if self.body["unseenChange"] != false => {
                self.body["mailbox"].as_str()?.parse().ok()
            }
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
