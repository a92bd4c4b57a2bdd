//! The change journal of a user: ordered events (EXISTS, EXPUNGE, FETCH, CREATE, RENAME,
//! DELETE, LOGOUT) that the updates stream serves. Each event gets the next number of the
//! user's sequence counter, so events are strictly ordered per user and a client can resume
//! after the last number it saw. Events expire after the configured retention.

use serde_json::{Value, json};

use super::keys;
use crate::config::Config;
use crate::id::ObjectId;
use crate::store::{Item, StoreResult, Table, Update, Write};

/// Appends `event` (a JSON object with at least `command`) to the user's journal and returns
/// its sequence number.
pub async fn append(
    table: &dyn Table,
    config: &Config,
    user: &ObjectId,
    mut event: Value,
) -> StoreResult<i64> {
    let counter = table
        .update(
            &keys::journal_sequence(user),
            Update::default().add("seq", 1),
            None,
        )
        .await?;
    let seq = counter.counter("seq");
    if let Value::Object(fields) = &mut event {
        fields.insert("id".into(), json!(seq));
        fields.insert("user".into(), json!(user.to_string()));
        fields.insert("created".into(), json!(chrono::Utc::now()));
    }
    let expires = super::unix_now() + config.journal_retention.as_secs() as i64;
    let item = Item::new(keys::journal_event(user, seq), event).with_expiry(expires);
    table.transact(vec![Write::put(item)]).await?;
    Ok(seq)
}
