//! Idempotent transactions on DynamoDB. A transaction can commit and its answer still be lost
//! (a 500, a dropped connection); the SDK then sends it again. Without an idempotency token
//! the repeat runs again, meets its own writes, and comes back as a failed condition: an
//! upload would report failure and delete the blob of a message that is in fact stored.
//! With a `ClientRequestToken`, DynamoDB answers a repeat of a committed transaction with
//! success and changes nothing. The SDK fills that token itself (it is an idempotency token in
//! the API model) and keeps it across its retries; these tests pin that down, so a change of
//! client settings or SDK version that loses it fails here.
//!
//! moto ignores the token, so a loopback proxy in front of moto plays that documented part of
//! DynamoDB: it remembers the tokens of committed transactions and answers their repeats with
//! the first answer. It also loses the first answer on purpose. The test checks what the store
//! sends and what the caller sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use eider_shared::store::dynamo::{DynamoTable, create_table};
use eider_shared::store::{Item, Key, Table, Write};
use eider_tests::moto;
use eider_tests::sse::serve;
use http_body_util::BodyExt;
use serde_json::{Value, json};

#[derive(Default)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    /// The token of every TransactWriteItems request, in order ("" when there was none).
    tokens: Mutex<Vec<String>>,
    /// The answers of committed transactions, by token.
    committed: Mutex<HashMap<String, Bytes>>,
    /// Answer the next committed transaction with this error instead.
    fail_next: Mutex<Option<(StatusCode, &'static str)>>,
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let is_transaction = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.ends_with(".TransactWriteItems"));
    let token = is_transaction.then(|| {
        let request: Value = serde_json::from_slice(&body).unwrap();
        request["ClientRequestToken"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    if let Some(token) = &token {
        proxy.tokens.lock().unwrap().push(token.clone());
        let replay = proxy.committed.lock().unwrap().get(token).cloned();
        if let Some(answer) = replay.filter(|_| !token.is_empty()) {
            return amz_json(StatusCode::OK, answer);
        }
    }
    let mut upstream = proxy.client.request(
        parts.method.clone(),
        format!("{}{}", proxy.upstream, parts.uri),
    );
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.body(body).send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let bytes = answer.bytes().await.unwrap();
    if let Some(token) = token
        && status == StatusCode::OK
    {
        proxy.committed.lock().unwrap().insert(token, bytes.clone());
        if let Some((status, code)) = proxy.fail_next.lock().unwrap().take() {
            let error = json!({
                "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
                "message": "injected: the answer was lost"
            });
            return amz_json(status, error.to_string().into());
        }
    }
    amz_json(status, bytes)
}

fn amz_json(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        body,
    )
        .into_response()
}

/// A table on moto, reached through the proxy.
async fn table_behind_proxy() -> (DynamoTable, Arc<Proxy>) {
    let (direct, _) = moto::clients().await;
    let name = moto::unique_name("eider-retries");
    create_table(&direct, &name).await.unwrap();
    let proxy = Arc::new(Proxy {
        upstream: moto::endpoint().trim_end_matches('/').to_string(),
        ..Proxy::default()
    });
    let endpoint = serve(Router::new().fallback(forward).with_state(proxy.clone())).await;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(eider_shared::store::sdk_http::http_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "eider-tests"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    (DynamoTable::new(client, name), proxy)
}

/// A put of a new item, labeled with its sort key.
fn new_item(sk: &'static str) -> Write {
    Write::put_new(Item::new(Key::new("RETRY", sk), json!({ "sk": sk })), sk)
}

/// Sends a transaction whose first answer is the given error although it committed; it must
/// succeed, commit once, and its repeat carry the same token.
async fn lost_answer_is_repeated_with_the_same_token(status: StatusCode, code: &'static str) {
    let (table, proxy) = table_behind_proxy().await;
    *proxy.fail_next.lock().unwrap() = Some((status, code));
    table
        .transact(vec![new_item("a"), new_item("b")])
        .await
        .expect("the repeat of a committed transaction succeeds");
    let tokens = proxy.tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 2, "sent, failed, sent again: {tokens:?}");
    assert!(!tokens[0].is_empty(), "the transaction carries a token");
    assert_eq!(tokens[0], tokens[1], "the repeat carries the same token");
    for sk in ["a", "b"] {
        assert!(table.get(&Key::new("RETRY", sk)).await.unwrap().is_some());
    }

    // Another transaction is another request: a new token, and its conditions count.
    let refused = table.transact(vec![new_item("a"), new_item("c")]).await;
    assert!(
        matches!(
            refused,
            Err(eider_shared::store::StoreError::ConditionFailed { label: "a" })
        ),
        "{refused:?}"
    );
    let tokens = proxy.tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    assert_ne!(tokens[2], tokens[0]);
    assert!(table.get(&Key::new("RETRY", "c")).await.unwrap().is_none());
}

/// A 500 after the commit: the SDK sends the request again itself.
#[tokio::test]
async fn a_transaction_whose_answer_was_a_server_error_commits_once() {
    lost_answer_is_repeated_with_the_same_token(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
    )
    .await;
}

/// `TransactionInProgressException` (the first send still running when a repeat arrived): the
/// repeat must be the same request, not a new one.
#[tokio::test]
async fn a_transaction_reported_in_progress_is_repeated_as_the_same_request() {
    lost_answer_is_repeated_with_the_same_token(
        StatusCode::BAD_REQUEST,
        "TransactionInProgressException",
    )
    .await;
}
