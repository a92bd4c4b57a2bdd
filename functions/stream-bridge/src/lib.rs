//! The stream bridge: consumes the table's DynamoDB stream and pushes every new journal event
//! to the WebSocket connections of its user through the API Gateway management API.
//!
//! * Only `INSERT`s of journal items (`JOURNAL#<user>`) count. The event source mapping in
//!   template.yaml already filters on that; the code checks again, so a wider filter costs
//!   invocations, never wrong pushes.
//! * Each message is the event's payload as the SSE stream sends it, plus its `id` (the journal
//!   number), so a client can order events and drop one it has already seen.
//! * Within a batch, a user's events go out in journal order.
//! * A connection answered with 410 Gone is removed from the table.
//! * A record that can't be read is logged and skipped: retrying it would never succeed and
//!   would block the shard. A record whose push failed for a passing reason (the management
//!   API or the table unavailable) is reported as a batch item failure, so Lambda retries from
//!   it. Records after it in the batch are retried too and may reach some connections twice;
//!   the `id` lets clients drop the repeat.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::DynamoDbEventResponse;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use eider_shared::domain::connections;
use eider_shared::domain::keys::JOURNAL_PK_PREFIX;
use eider_shared::domain::updates::JournalEvent;
use eider_shared::id::ObjectId;
use eider_shared::store::Table;
use eider_shared::store::dynamo::inserted_item;
use eider_shared::store::stream_batch;
use futures::StreamExt;
use serde_json::Value;

/// Users whose events are pushed at the same time.
const USERS_IN_PARALLEL: usize = 8;

/// What the bridge needs: the table (connections) and the management API of the WebSocket
/// stage.
#[derive(Clone)]
pub struct Bridge {
    table: Arc<dyn Table>,
    api: Client,
}

/// One journal event of the batch, ready to push.
#[derive(Debug)]
struct Push {
    /// The record's stream sequence number: what a batch item failure names.
    record: String,
    seq: i64,
    message: String,
}

/// How pushing one message to one connection went.
enum Outcome {
    Sent,
    Gone,
    Failed(String),
}

impl Bridge {
    pub fn new(table: Arc<dyn Table>, api: Client) -> Bridge {
        Bridge { table, api }
    }

    /// The management API client of the WebSocket stage at `endpoint`
    /// (`https://<api id>.execute-api.<region>.amazonaws.com/<stage>`, `EIDER_WS_ENDPOINT`).
    pub fn client(config: &aws_types::SdkConfig, endpoint: &str) -> Client {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(config)
            .endpoint_url(endpoint)
            .build();
        Client::from_conf(config)
    }

    /// Handles one batch of stream records; the answer names the records to retry.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let mut by_user: BTreeMap<ObjectId, Vec<Push>> = BTreeMap::new();
        for record in &event.records {
            match journal_push(record) {
                Ok(Some((user, push))) => by_user.entry(user).or_default().push(push),
                Ok(None) => {}
                Err(reason) => tracing::warn!(
                    record = %record.event_id,
                    reason,
                    "unreadable journal record skipped"
                ),
            }
        }
        let failed: Vec<String> = futures::stream::iter(by_user)
            .map(|(user, mut pushes)| {
                pushes.sort_by_key(|p| p.seq);
                async move { self.push_user(&user, &pushes).await }
            })
            .buffer_unordered(USERS_IN_PARALLEL)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect();
        stream_batch::retry(failed)
    }

    /// Pushes one user's events, in order, to each of the user's connections; returns the
    /// records that failed.
    async fn push_user(&self, user: &ObjectId, pushes: &[Push]) -> Vec<String> {
        let mut connections = match connections::list(self.table.as_ref(), user).await {
            Ok(connections) => connections,
            Err(e) => {
                tracing::error!(%user, error = %e, "cannot list WebSocket connections");
                return pushes.iter().map(|p| p.record.clone()).collect();
            }
        };
        let mut failed = Vec::new();
        for push in pushes {
            let outcomes = futures::future::join_all(
                connections
                    .iter()
                    .map(|connection| self.post(connection, &push.message)),
            )
            .await;
            let mut live = Vec::with_capacity(connections.len());
            let mut record_failed = false;
            for (connection, outcome) in connections.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Sent => live.push(connection),
                    Outcome::Gone => {
                        tracing::info!(%user, connection, "WebSocket connection gone; removed");
                        if let Err(e) =
                            connections::forget(self.table.as_ref(), user, &connection).await
                        {
                            // Its TTL removes it later anyway.
                            tracing::warn!(%user, connection, error = %e, "cannot remove connection");
                        }
                    }
                    Outcome::Failed(reason) => {
                        tracing::warn!(%user, connection, reason, seq = push.seq, "push failed");
                        record_failed = true;
                        live.push(connection);
                    }
                }
            }
            connections = live;
            if record_failed {
                failed.push(push.record.clone());
            }
        }
        failed
    }

    async fn post(&self, connection: &str, message: &str) -> Outcome {
        let sent = self
            .api
            .post_to_connection()
            .connection_id(connection)
            .data(Blob::new(message.as_bytes()))
            .send()
            .await;
        match sent {
            Ok(_) => Outcome::Sent,
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_gone_exception()) {
                    Outcome::Gone
                } else {
                    Outcome::Failed(
                        aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e).to_string(),
                    )
                }
            }
        }
    }
}

/// The push of a stream record: `Ok(None)` for records that are not new journal events,
/// `Err` for a journal record that can't be read.
fn journal_push(record: &EventRecord) -> Result<Option<(ObjectId, Push)>, String> {
    let image = serde_json::to_value(&record.change.new_image).map_err(|e| e.to_string())?;
    let Some(item) = inserted_item(&record.event_name, &image, JOURNAL_PK_PREFIX)? else {
        return Ok(None);
    };
    let user: ObjectId = item
        .pk
        .trim_start_matches(JOURNAL_PK_PREFIX)
        .parse()
        .map_err(|_| format!("no user in {}", item.pk))?;
    let event =
        JournalEvent::from_item(&item).ok_or_else(|| format!("no number in {}", item.sk))?;
    if event.is_skip_marker() {
        return Ok(None);
    }
    if event.command().is_empty() {
        return Err(format!("event {} has no command", event.seq));
    }
    let mut message = event.payload();
    if let Value::Object(fields) = &mut message {
        fields.insert("id".into(), Value::from(event.seq));
    }
    Ok(Some((
        user,
        Push {
            record: stream_batch::record_id(record),
            seq: event.seq,
            message: message.to_string(),
        },
    )))
}
