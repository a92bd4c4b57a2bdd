//! The change journal of a user: ordered events (EXISTS, EXPUNGE, FETCH, CREATE, RENAME,
//! DELETE, LOGOUT) that the updates stream serves. Each event gets the next number of the
//! user's sequence counter, so events are strictly ordered per user and a client can resume
//! after the last number it saw. Events expire after the configured retention.
//!
//! A change reserves its sequence numbers first ([`reserve`]) and writes its events in the
//! same transaction as the change itself ([`event_write`]), so an event is visible exactly
//! when the change is. A change that fails after reserving leaves a gap in the numbers, never
//! an event for something that did not happen.

use serde_json::{Value, json};

use super::keys;
use crate::config::Config;
use crate::id::ObjectId;
use crate::store::{Item, StoreResult, Table, Update, Write};

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
pub fn event_write(config: &Config, user: &ObjectId, seq: i64, mut event: Value) -> Write {
    if let Value::Object(fields) = &mut event {
        fields.insert("id".into(), json!(seq));
        fields.insert("user".into(), json!(user.to_string()));
        fields.insert("created".into(), json!(chrono::Utc::now()));
    }
    let expires = super::unix_now() + config.journal_retention.as_secs() as i64;
    Write::put(Item::new(keys::journal_event(user, seq), event).with_expiry(expires))
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
