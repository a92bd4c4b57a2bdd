//! The change journal of a user: ordered events (EXISTS, EXPUNGE, FETCH, CREATE, RENAME,
//! DELETE, LOGOUT) that the updates stream serves. Each event gets the next number of the
//! user's sequence counter, so events are strictly ordered per user and a client can resume
//! after the last number it saw. Events expire after the configured retention.
//!
//! A change reserves its sequence numbers first ([`reserve`]) and writes its events in the
//! same transaction as the change itself ([`event_write`]), so an event is visible exactly
//! when the change is. A change that fails after reserving leaves a gap in the numbers, never
//! an event for something that did not happen. When the store refused the change for certain,
//! [`commit`] fills the gap with skip markers (items without a command, which readers pass
//! over), so streams go on at once instead of waiting out the gap grace.

use serde_json::{Value, json};

use super::keys;
use crate::config::Config;
use crate::id::ObjectId;
use crate::store::{Item, MAX_TRANSACTION_WRITES, StoreError, StoreResult, Table, Update, Write};

/// Reserves `count` consecutive sequence numbers for `user`; returns the first.
pub async fn reserve(table: &dyn Table, user: &ObjectId, count: usize) -> StoreResult<i64> {
    let counter = table
        .update(
            &keys::journal_sequence(user),
            Update::default().add("seq", count as i64),
            None,
        )
        .await?;
    Ok(counter.counter("seq") - count as i64 + 1)
}

/// The write that stores `event` (a JSON object with at least `command`) under `seq`.
pub fn event_write(config: &Config, user: &ObjectId, seq: i64, event: Value) -> Write {
    Write::put(event_item(config, user, seq, event))
}

/// The journal item of `event` under `seq`, with its number, user, time and expiry.
fn event_item(config: &Config, user: &ObjectId, seq: i64, mut event: Value) -> Item {
    if let Value::Object(fields) = &mut event {
        fields.insert("id".into(), json!(seq));
        fields.insert("user".into(), json!(user.to_string()));
        fields.insert("created".into(), json!(chrono::Utc::now()));
    }
    let expires = super::unix_now() + config.journal_retention.as_secs() as i64;
    Item::new(keys::journal_event(user, seq), event).with_expiry(expires)
}

/// Runs the transaction of a change that reserved `count` numbers from `first` (its events are
/// among `writes`). A transaction refused by a condition wrote nothing, so its numbers will
/// never hold events: they get skip markers. A marker is only put where no item is, so it can
/// never hide an event; failing to write one only costs readers the grace.
pub async fn commit(
    table: &dyn Table,
    config: &Config,
    user: &ObjectId,
    first: i64,
    count: usize,
    writes: Vec<Write>,
) -> StoreResult<()> {
    let result = table.transact(writes).await;
    if matches!(result, Err(StoreError::ConditionFailed { .. })) {
        let seqs: Vec<i64> = (first..first + count as i64).collect();
        for chunk in seqs.chunks(MAX_TRANSACTION_WRITES) {
            let markers = chunk
                .iter()
                .map(|&seq| skip_marker(config, user, seq))
                .collect();
            if let Err(e) = table.transact(markers).await {
                tracing::debug!(%user, error = %e, "journal skip markers not written");
            }
        }
    }
    result
}

/// The write that marks `seq` as never used: no command (readers and the WebSocket bridge
/// pass over it, as WildDuck skips entries without one), only where nothing is stored yet.
fn skip_marker(config: &Config, user: &ObjectId, seq: i64) -> Write {
    Write::put_new(
        event_item(config, user, seq, json!({ "skipped": true })),
        "journal number used",
    )
}

/// Appends one event on its own (changes that have no other write, like a logout).
pub async fn append(
    table: &dyn Table,
    config: &Config,
    user: &ObjectId,
    event: Value,
) -> StoreResult<i64> {
    let seq = reserve(table, user, 1).await?;
    table
        .transact(vec![event_write(config, user, seq, event)])
        .await?;
    Ok(seq)
}
