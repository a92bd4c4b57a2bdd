//! The answer of a function fed by the table's stream (the indexer, the stream bridge, the
//! webhooks' enqueuer): which records of the batch Lambda hands over again. The event source
//! mappings report batch item failures, so Lambda retries from the first record named.

use aws_lambda_events::dynamodb::EventRecord;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

/// What a batch item failure names: the record's stream sequence number (its event id for a
/// record without one, which only hand-made events are).
pub fn record_id(record: &EventRecord) -> String {
    record
        .change
        .sequence_number
        .clone()
        .unwrap_or_else(|| record.event_id.clone())
}

/// The answer asking Lambda to hand over the records `failed` (by [`record_id`]) again; none,
/// the batch is done.
pub fn retry(failed: impl IntoIterator<Item = String>) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for record in failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(record);
        response.batch_item_failures.push(failure);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_sequence_numbers_in_order() {
        let mut with_sequence = EventRecord::default();
        with_sequence.event_id = "e1".into();
        with_sequence.change.sequence_number = Some("100".into());
        let mut without = EventRecord::default();
        without.event_id = "e2".into();
        assert_eq!(record_id(&with_sequence), "100");
        assert_eq!(record_id(&without), "e2");
        let answer =
            serde_json::to_value(retry([record_id(&with_sequence), record_id(&without)])).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({ "batchItemFailures": [
                { "itemIdentifier": "100" }, { "itemIdentifier": "e2" }
            ] })
        );
        assert_eq!(
            serde_json::to_value(retry(Vec::new())).unwrap(),
            serde_json::json!({ "batchItemFailures": [] })
        );
    }
}
