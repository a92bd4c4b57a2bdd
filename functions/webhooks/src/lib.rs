//! The webhook sender in the cloud: one function, two event sources.
//!
//! * The table's DynamoDB stream: each new delivery item (`WEBHOOK_QUEUE#...`, written by
//!   `webhooks::publish` in whatever function made the change, or by this function when it
//!   puts a failed delivery back for later) goes onto the SQS queue, delayed until it is due.
//!   The event source mapping filters on those inserts; the code checks again.
//! * The SQS queue: each message names a delivery item; one attempt is made
//!   (`webhook_send::Sender`, the same code as the local server's sender). Delivered or given
//!   up: the item is removed. Failed: it is put back due after the backoff, which the stream
//!   brings here again. A message whose item is gone was settled already and is dropped.
//!
//! So no API request or mail delivery ever waits for an endpoint, and a slow endpoint holds
//! one queue message, not a stream shard. A batch item that failed for a passing reason (the
//! table or SQS unavailable) is reported, so Lambda tries it again; SQS moves a message
//! received too often to the dead-letter queue, and the stream mapping sends records it
//! gave up on there too (template.yaml).

use aws_lambda_events::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::streams::DynamoDbEventResponse;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::Utc;
use eider_shared::domain::AppState;
use eider_shared::domain::webhook_send::Sender;
use eider_shared::domain::webhooks::Delivery;
use eider_shared::store::Key;
use eider_shared::store::dynamo::inserted_item;
use eider_shared::store::stream_batch::{self, record_id};
use futures::StreamExt;
use serde_json::{Value, json};

/// The longest delay SQS takes.
const MAX_DELAY_SECONDS: i64 = 900;
/// Deliveries attempted at once within one queue batch.
const PARALLEL: usize = 10;
/// Prefix of the delivery items' partition key.
const QUEUE_PK_PREFIX: &str = "WEBHOOK_QUEUE#";

pub struct WebhookFunction {
    state: AppState,
    sender: Sender,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// A delivery item as a queue message names it.
fn message_body(key: &Key) -> String {
    json!({ "pk": key.pk, "sk": key.sk }).to_string()
}

impl WebhookFunction {
    pub fn new(
        state: AppState,
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
    ) -> anyhow::Result<Self> {
        let sender = Sender::new(state.clone())?;
        Ok(WebhookFunction {
            state,
            sender,
            sqs,
            queue_url,
        })
    }

    /// Either event source's batch, told apart by its records' `eventSource`; the answer is
    /// that source's batch response.
    pub async fn handle(&self, event: Value) -> anyhow::Result<Value> {
        let source = event["Records"][0]["eventSource"].as_str().unwrap_or("");
        Ok(match source {
            "aws:sqs" => serde_json::to_value(self.send(serde_json::from_value(event)?).await)?,
            "aws:dynamodb" => {
                serde_json::to_value(self.enqueue(serde_json::from_value(event)?).await)?
            }
            // An empty batch (or an unknown source): nothing to do.
            _ => json!({ "batchItemFailures": [] }),
        })
    }

    /// A stream batch: new delivery items onto the queue, each delayed until due.
    pub async fn enqueue(&self, event: StreamEvent) -> DynamoDbEventResponse {
        let mut entries = Vec::new();
        for record in &event.records {
            match new_delivery(record) {
                Ok(Some(delivery)) => entries.push((record_id(record), delivery)),
                Ok(None) => {}
                Err(reason) => tracing::warn!(
                    record = %record.event_id,
                    reason,
                    "unreadable delivery record skipped"
                ),
            }
        }
        let now = Utc::now();
        let mut failed = Vec::new();
        for chunk in entries.chunks(10) {
            let batch: Vec<SendMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(n, (_, delivery))| {
                    let delay = (delivery.due - now)
                        .num_milliseconds()
                        .div_euclid(1000)
                        .clamp(0, MAX_DELAY_SECONDS);
                    SendMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .message_body(message_body(&delivery.key()))
                        .delay_seconds(delay as i32)
                        .build()
                        .ok()
                })
                .collect();
            let sent = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(batch))
                .send()
                .await;
            match sent {
                Ok(answer) => {
                    for refused in answer.failed() {
                        let n: usize = refused.id().parse().unwrap_or(usize::MAX);
                        if let Some((record, _)) = chunk.get(n) {
                            tracing::warn!(reason = ?refused.message(), "delivery not queued");
                            failed.push(record.clone());
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "deliveries not queued");
                    failed.extend(chunk.iter().map(|(record, _)| record.clone()));
                }
            }
        }
        stream_batch::retry(failed)
    }

    /// A queue batch: one attempt at each delivery.
    pub async fn send(&self, event: SqsEvent) -> SqsBatchResponse {
        let failed: Vec<String> = futures::stream::iter(event.records)
            .map(|message| async move {
                let id = message.message_id.clone().unwrap_or_default();
                match self.send_one(&message).await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::warn!(message = %id, error = %e, "delivery not settled; retried");
                        Some(id)
                    }
                }
            })
            .buffer_unordered(PARALLEL)
            .filter_map(|failed| async move { failed })
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        for id in failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        response
    }

    async fn send_one(&self, message: &SqsMessage) -> anyhow::Result<()> {
        let body: Value = serde_json::from_str(message.body.as_deref().unwrap_or(""))?;
        let (Some(pk), Some(sk)) = (body["pk"].as_str(), body["sk"].as_str()) else {
            tracing::warn!(body = %body, "queue message without a delivery key dropped");
            return Ok(());
        };
        let Some(item) = self.state.table.get(&Key::new(pk, sk)).await? else {
            // Settled by an earlier copy of this message.
            return Ok(());
        };
        let delivery = Delivery::from_item(&item)?;
        self.sender.attempt(delivery).await?;
        Ok(())
    }
}

/// The delivery a stream record inserted: `Ok(None)` for any other record.
fn new_delivery(record: &EventRecord) -> Result<Option<Delivery>, String> {
    let image = serde_json::to_value(&record.change.new_image).map_err(|e| e.to_string())?;
    let Some(item) = inserted_item(&record.event_name, &image, QUEUE_PK_PREFIX)? else {
        return Ok(None);
    };
    Delivery::from_item(&item)
        .map(Some)
        .map_err(|e| e.to_string())
}
