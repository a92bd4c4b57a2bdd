//! The updates stream (`GET /users/{user}/updates`, WildDuck's EventSource stream) above the
//! journal: [`reader`] reads a user's events after a given id in order, with nothing lost and
//! nothing repeated, and shapes each command's payload as WildDuck sends it; [`notify`] wakes
//! waiting streams in the local server. The Server-Sent Events frames are
//! `crate::http::wire::updates`'s.
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

pub mod notify;
pub mod reader;

pub use notify::{ChangeNotifier, JournalHook, JournalWatch, LocalNotifier};
pub use reader::{
    Batch, JournalEvent, JournalReader, MAX_COUNTERS, READ_BATCH, Resync, counters, public_payload,
};

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::config::Config;
    use crate::domain::journal;
    use crate::domain::keys;
    use crate::id::ObjectId;
    use crate::store::embedded::EmbeddedTable;
    use crate::store::{Item, Table, Write};

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
