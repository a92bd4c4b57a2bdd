//! The stream indexer: keeps each user's search index in the bucket in line with the
//! messages in the table, from the table's DynamoDB stream.
//!
//! * Only records of message items (`MSGS#<user>#<mailbox>`) count: a new message, a change of
//!   one (flags, a move is a delete plus an insert) or its removal. The event source mapping in
//!   template.yaml already filters on that; the code checks again.
//! * A record only names which message changed; what the index gets is read from the table at
//!   that moment ([`messages::indexing::sync`]), so records out of order, repeated or retried
//!   leave the same index. A user's records of one batch become one commit of their index.
//! * A user whose commit fails (the bucket or the table unavailable, a commit race lost too
//!   often) has their records reported as batch item failures, so Lambda retries from the first
//!   of them; other users' records are done. A record that can't be read is logged and skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::DynamoDbEventResponse;
use eider_shared::domain::AppState;
use eider_shared::domain::keys::MESSAGES_PK_PREFIX;
use eider_shared::domain::messages::indexing;
use eider_shared::id::ObjectId;
use eider_shared::store::dynamo::item_from_stream_image;
use eider_shared::store::stream_batch::{self, record_id};
use eider_shared::store::text_index::TextIndex;
use futures::StreamExt;

/// Users whose indexes are written at the same time.
const USERS_IN_PARALLEL: usize = 4;

pub struct Indexer {
    state: AppState,
    index: Arc<dyn TextIndex>,
}

/// The messages of one user a batch touched, and the records that named them.
#[derive(Default)]
struct Touched {
    ids: Vec<ObjectId>,
    records: Vec<String>,
}

impl Indexer {
    /// The indexer over `state`'s text index (the function is built with `text-index`, so the
    /// cloud state has one unless `EIDER_SEARCH_INDEX=terms`).
    pub fn new(state: AppState) -> anyhow::Result<Indexer> {
        let index = state.text_index.clone().ok_or_else(|| {
            anyhow::anyhow!("no search index to write (EIDER_SEARCH_INDEX=terms?)")
        })?;
        Ok(Indexer { state, index })
    }

    /// Handles one batch of stream records; the answer names the records to retry.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let mut by_user: BTreeMap<ObjectId, Touched> = BTreeMap::new();
        for record in &event.records {
            match touched_message(record) {
                Ok(Some((user, id))) => {
                    let touched = by_user.entry(user).or_default();
                    if !touched.ids.contains(&id) {
                        touched.ids.push(id);
                    }
                    touched.records.push(record_id(record));
                }
                Ok(None) => {}
                Err(reason) => tracing::warn!(
                    record = %record.event_id,
                    reason,
                    "unreadable message record skipped"
                ),
            }
        }
        let failed: Vec<String> = futures::stream::iter(by_user)
            .map(|(user, touched)| async move {
                match indexing::sync(&self.state, self.index.as_ref(), &user, &touched.ids).await {
                    Ok(synced) => {
                        tracing::info!(
                            %user,
                            messages = touched.ids.len(),
                            added = synced.added,
                            removed = synced.removed,
                            moved = synced.moved,
                            "search index updated"
                        );
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::error!(%user, error = %e, "search index not updated; retried");
                        touched.records
                    }
                }
            })
            .buffer_unordered(USERS_IN_PARALLEL)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect();
        stream_batch::retry(failed)
    }
}

/// The user and message a stream record is about: `Ok(None)` for records of other items,
/// `Err` for a message record that can't be read.
fn touched_message(record: &EventRecord) -> Result<Option<(ObjectId, ObjectId)>, String> {
    let image = if record.event_name == "REMOVE" {
        &record.change.old_image
    } else {
        &record.change.new_image
    };
    let image = serde_json::to_value(image).map_err(|e| e.to_string())?;
    let is_message = image["pk"]["S"]
        .as_str()
        .is_some_and(|pk| pk.starts_with(MESSAGES_PK_PREFIX));
    if !is_message {
        return Ok(None);
    }
    let item = item_from_stream_image(&image).map_err(|e| format!("{e:#}"))?;
    let id = |field: &str| -> Result<ObjectId, String> {
        item.body[field]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {field} in {}/{}", item.pk, item.sk))
    };
    Ok(Some((id("user")?, id("id")?)))
}
