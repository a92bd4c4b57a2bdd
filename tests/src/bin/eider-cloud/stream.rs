//! The table's stream, as Lambda's event source mapping reads it: moto's DynamoDB stream polled
//! from the latest record on, each record passed through each subscriber's filter, batches of
//! up to 100 invoked through the emulator. A batch a function fails is retried (three times,
//! as the template's `MaximumRetryAttempts`), then dropped with a log line.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine;
use serde_json::{Map, Value, json};

use eider_tests::template;

/// A function subscribed to the stream, and its filter.
pub struct Subscriber {
    pub function: String,
    pub filter: Value,
}

pub async fn run(
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    subscribers: Vec<Subscriber>,
    invoke_base: String,
) {
    let http = reqwest::Client::new();
    // Shard id -> iterator; shards met after the start are read from their beginning.
    let mut iterators: HashMap<String, Option<String>> = HashMap::new();
    let mut first_pass = true;
    loop {
        if let Ok(described) = streams
            .describe_stream()
            .stream_arn(&stream_arn)
            .send()
            .await
        {
            let shards = described
                .stream_description()
                .map(|d| d.shards().to_vec())
                .unwrap_or_default();
            for shard in shards {
                let Some(id) = shard.shard_id() else { continue };
                if iterators.contains_key(id) {
                    continue;
                }
                let kind = if first_pass {
                    ShardIteratorType::Latest
                } else {
                    ShardIteratorType::TrimHorizon
                };
                let iterator = streams
                    .get_shard_iterator()
                    .stream_arn(&stream_arn)
                    .shard_id(id)
                    .shard_iterator_type(kind)
                    .send()
                    .await
                    .ok()
                    .and_then(|r| r.shard_iterator().map(str::to_string));
                iterators.insert(id.to_string(), iterator);
            }
        }
        first_pass = false;
        let mut any = false;
        for iterator in iterators.values_mut() {
            let Some(current) = iterator.clone() else {
                continue;
            };
            let Ok(page) = streams
                .get_records()
                .shard_iterator(current)
                .limit(1000)
                .send()
                .await
            else {
                continue;
            };
            *iterator = page.next_shard_iterator().map(str::to_string);
            let records: Vec<Value> = page
                .records()
                .iter()
                .map(|r| record_json(r, &stream_arn))
                .collect();
            any |= !records.is_empty();
            for subscriber in &subscribers {
                let mine: Vec<&Value> = records
                    .iter()
                    .filter(|r| template::matches(&subscriber.filter, r))
                    .collect();
                for batch in mine.chunks(100) {
                    deliver(&http, &invoke_base, &subscriber.function, batch).await;
                }
            }
        }
        if !any {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn deliver(http: &reqwest::Client, invoke_base: &str, function: &str, batch: &[&Value]) {
    let url = format!("{invoke_base}/2015-03-31/functions/{function}/invocations");
    let event = json!({ "Records": batch });
    for attempt in 1..=4 {
        let answer = http.post(&url).json(&event).send().await;
        let failed = match answer {
            Ok(response) if response.status().is_success() => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                body["batchItemFailures"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            }
            _ => true,
        };
        if !failed {
            return;
        }
        eprintln!("eider-cloud: {function} failed a stream batch (attempt {attempt})");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A stream record in the shape Lambda hands it to a function.
fn record_json(record: &Record, stream_arn: &str) -> Value {
    let mut dynamodb = Map::new();
    if let Some(change) = record.dynamodb() {
        if let Some(keys) = change.keys() {
            dynamodb.insert("Keys".into(), image(keys));
        }
        if let Some(new) = change.new_image() {
            dynamodb.insert("NewImage".into(), image(new));
        }
        if let Some(old) = change.old_image() {
            dynamodb.insert("OldImage".into(), image(old));
        }
        if let Some(sequence) = change.sequence_number() {
            dynamodb.insert("SequenceNumber".into(), json!(sequence));
        }
        if let Some(size) = change.size_bytes() {
            dynamodb.insert("SizeBytes".into(), json!(size));
        }
        if let Some(view) = change.stream_view_type() {
            dynamodb.insert("StreamViewType".into(), json!(view.as_str()));
        }
        if let Some(at) = change.approximate_creation_date_time() {
            dynamodb.insert("ApproximateCreationDateTime".into(), json!(at.secs()));
        }
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str()),
        "eventVersion": record.event_version(),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.aws_region(),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

fn image(map: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect())
}

/// An attribute in DynamoDB's JSON (`{"S": "..."}`, `{"N": "1"}`, ...).
fn attribute(value: &AttributeValue) -> Value {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b.as_ref()) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(list) => json!({ "SS": list }),
        AttributeValue::Ns(list) => json!({ "NS": list }),
        AttributeValue::Bs(list) => {
            json!({ "BS": list.iter().map(|b| b64(b.as_ref())).collect::<Vec<_>>() })
        }
        AttributeValue::L(list) => json!({ "L": list.iter().map(attribute).collect::<Vec<_>>() }),
        AttributeValue::M(map) => json!({ "M": image(map) }),
        _ => Value::Null,
    }
}
