//! Incoming mail from SES: an SES receipt rule first writes the raw message to the bucket
//! (S3 action, object `<EIDER_INCOMING_PREFIX><SES message id>`), then invokes this function
//! (Lambda action) with the SES event: the message id, the envelope sender and the
//! recipients. Each recipient goes through the shared delivery pipeline
//! (`eider_shared::domain::delivery`).
//!
//! Retries: Lambda retries a failed asynchronous invocation (twice), and SES may invoke more
//! than once. A delivery is idempotent on the SES message id per recipient (a delivery record
//! plus the store's idempotency key), so a retry delivers only what had not been delivered.
//! The function fails (and so is retried) only when some recipient had a temporary failure.
//! Once every recipient has a final outcome, the incoming object is deleted: the stored
//! message has its own copy.

use aws_lambda_events::event::ses::{SimpleEmailEvent, SimpleEmailReceipt};
use eider_shared::domain::delivery::{Delivery, Incoming, Outcome, RecipientError};
use serde_json::{Value, json};

/// What the ingest function needs: the pipeline and where SES puts messages.
pub struct Ingest {
    pub delivery: Delivery,
}

/// A spam score from SES's verdicts, as WildDuck scores its filter's actions: a failed spam
/// or virus check counts like rspamd's "reject" (75), a gray spam verdict like "soft
/// reject" (50). It is spam at or above the user's `spamLevel` (default 50).
pub fn spam_score(receipt: &SimpleEmailReceipt) -> Option<u8> {
    let status = |s: &Option<String>| s.as_deref().unwrap_or("").to_ascii_uppercase();
    let spam = status(&receipt.spam_verdict.status);
    let virus = status(&receipt.virus_verdict.status);
    if spam == "FAIL" || virus == "FAIL" {
        Some(75)
    } else if spam == "GRAY" {
        Some(50)
    } else {
        None
    }
}

/// SES message ids are letters, digits and dashes; anything else can't name an object.
fn valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Handles one SES event. Errors (the function fails and Lambda retries) only when a
/// recipient could not be delivered for a temporary reason or the message can't be read.
pub async fn handle(ingest: &Ingest, event: SimpleEmailEvent) -> anyhow::Result<Value> {
    let delivery = &ingest.delivery;
    let mut results = Vec::new();
    let mut temporary = 0;
    for record in event.records {
        let mail = record.ses.mail;
        let receipt = record.ses.receipt;
        let id = mail.message_id.unwrap_or_default();
        if !valid_message_id(&id) {
            tracing::error!(id, "SES event without a usable message id; ignored");
            continue;
        }
        let sender = mail.source.unwrap_or_default();
        let sender = if sender.eq_ignore_ascii_case("<>") {
            String::new()
        } else {
            sender
        };
        let key = format!("{}{id}", delivery.config.incoming_prefix);
        // Resolve everyone first: a retry whose recipients are all done reads nothing more.
        let mut answers: Vec<Option<Value>> = Vec::new();
        let mut pending = Vec::new();
        for address in &receipt.recipients {
            // A storage fault fails the invocation (with its cause): Lambda retries it.
            let answer = match delivery.recipient(address).await? {
                Ok(recipient) => match delivery.already(&id, &recipient).await? {
                    Some(done) => Some(json!({ "recipient": address, "result": done })),
                    None => {
                        pending.push((answers.len(), address.clone(), recipient));
                        None
                    }
                },
                Err(reason) => {
                    // SES accepted it already; there is nobody to deliver to.
                    let reason = match reason {
                        RecipientError::Unknown => "unknown recipient",
                        RecipientError::Disabled => "mailbox disabled",
                    };
                    tracing::warn!(recipient = %address, reason, "not delivered");
                    Some(json!({ "recipient": address,
                                 "result": { "outcome": "refused", "reason": reason } }))
                }
            };
            answers.push(answer);
        }
        if !pending.is_empty() {
            let raw = delivery.state.blobs.get(&key).await?.ok_or_else(|| {
                anyhow::anyhow!("the incoming message {key} is not in the bucket")
            })?;
            let incoming = Incoming {
                raw: &raw,
                sender: &sender,
                source: "SES",
                id: Some(&id),
                spam_score: spam_score(&receipt),
            };
            for (slot, address, recipient) in pending {
                let outcome = delivery.deliver(&incoming, &recipient).await;
                if outcome.is_temporary() {
                    temporary += 1;
                }
                if let Outcome::OverQuota = outcome {
                    tracing::warn!(recipient = %address, "over quota: not delivered");
                }
                answers[slot] = Some(json!({ "recipient": address, "result": outcome }));
            }
        }
        results.extend(answers.into_iter().flatten());
        if temporary == 0
            && let Err(e) = delivery.state.blobs.delete(&key).await
        {
            tracing::warn!(error = %e, key, "incoming message not removed");
        }
    }
    if temporary > 0 {
        anyhow::bail!("{temporary} recipient(s) failed temporarily; the invocation is retried");
    }
    Ok(json!({ "disposition": "CONTINUE", "results": results }))
}
