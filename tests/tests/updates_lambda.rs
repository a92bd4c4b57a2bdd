//! The updates functions' Lambda entry points on the sample events in infra/events, through
//! the real handlers: the streaming `updates` function (a function URL event through
//! lambda_http's streaming adapter), `ws` (`$connect` / `$disconnect` of the WebSocket API) and
//! `stream-bridge` (a DynamoDB stream batch, pushing to a stand-in for the API Gateway
//! management API on a loopback port). Each test runs on the embedded store and on moto.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::encodings::Body as EventBody;
use aws_sdk_apigatewaymanagement::config::Credentials;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use eider_shared::domain::connections::{self, Connection};
use eider_shared::domain::keys;
use eider_shared::http::AppState;
use eider_shared::id::ObjectId;
use eider_stream_bridge::Bridge;
use eider_tests::app::{TestApp, test_config};
use eider_tests::backends::Backend;
use eider_tests::sse::{Frame, serve};
use futures::StreamExt;
use lambda_http::request::LambdaRequest;
use lambda_http::{LambdaEvent, StreamAdapter};
use serde_json::{Value, json};
use tower::ServiceExt;

eider_tests::on_both_backends!(
    backend:
    updates_function_streams_until_shortly_before_its_deadline,
    ws_function_records_and_removes_connections,
    stream_bridge_pushes_journal_records_and_drops_gone_connections,
);

/// The user id in the sample events; tests put their real user's id in its place.
const SAMPLE_USER: &str = "6620f1a2b3c4d5e6f7a8b9c0";
const SAMPLE_TOKEN: &str = "sample-token";
const SAMPLE_CONNECTION: &str = "KfTg1cZ0IAMCK9w=";

fn sample(file: &str) -> String {
    let path = format!("{}/../infra/events/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An app whose functions require the sample events' access token.
fn app(backend: Backend) -> TestApp {
    let mut config = test_config();
    config.access_token = Some(SAMPLE_TOKEN.into());
    config.updates.poll = Duration::from_millis(100);
    TestApp::new(backend, config)
}

async fn user(app: &TestApp) -> String {
    let (status, body) = app
        .post(
            &format!("/users?accessToken={SAMPLE_TOKEN}"),
            json!({"username": "lambda", "password": "pw"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn mailbox(app: &TestApp, user: &str, path: &str) {
    let uri = format!("/users/{user}/mailboxes?accessToken={SAMPLE_TOKEN}");
    let (status, body) = app.post(&uri, json!({ "path": path })).await;
    assert_eq!(status, 200, "{body}");
}

fn context(deadline_in: Duration) -> lambda_runtime::Context {
    let deadline = SystemTime::now() + deadline_in;
    let mut context = lambda_runtime::Context::default();
    context.request_id = "3c9a7f1e-2b4d-4e6f-8a0b-1c2d3e4f5a6b".into();
    context.deadline = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    context
}

/// Invokes the updates function as `run_with_streaming_response` does; returns the status,
/// the content type, the frames and how long the stream lasted.
async fn invoke_updates(
    state: AppState,
    event: &str,
    deadline_in: Duration,
) -> (u16, String, Vec<Frame>, Duration) {
    let request: LambdaRequest = serde_json::from_str(event).expect("a function URL event");
    let adapter = StreamAdapter::from(eider_updates::lambda_service(state));
    let began = Instant::now();
    let response = adapter
        .oneshot(LambdaEvent::new(request, context(deadline_in)))
        .await
        .unwrap();
    let prelude = response.metadata_prelude;
    let kind = prelude.headers["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = Vec::new();
    let mut stream = response.stream;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(body).unwrap();
    let frames = if kind == "text/event-stream" {
        text.split_terminator("\n\n").map(Frame::parse).collect()
    } else {
        vec![Frame {
            data: Some(text),
            ..Frame::default()
        }]
    };
    (prelude.status_code.as_u16(), kind, frames, began.elapsed())
}

async fn updates_function_streams_until_shortly_before_its_deadline(backend: Backend) {
    let app = Arc::new(app(backend));
    let user = user(&app).await;
    mailbox(&app, &user, "One").await;
    mailbox(&app, &user, "Two").await;
    let event = sample("updates-stream.json").replace(SAMPLE_USER, &user);
    // A change while the function streams: without a notifier in Lambda, a poll finds it.
    let later = {
        let app = app.clone();
        let user = user.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            mailbox(&app, &user, "Three").await;
        })
    };
    let deadline_in = Duration::from_millis(2500);
    let (status, kind, frames, lasted) =
        invoke_updates(app.state.clone(), &event, deadline_in).await;
    later.await.unwrap();
    assert_eq!((status, kind.as_str()), (200, "text/event-stream"));
    // Ends shortly before the deadline (a quarter of the time left, at most 5 s, before it).
    assert!(lasted < deadline_in, "{lasted:?}");
    assert!(lasted >= Duration::from_millis(1500), "{lasted:?}");
    assert_eq!(frames[0].seq(), 0, "resumes after Last-Event-ID 0");
    assert_eq!(frames[0].retry, Some(3000));
    let events: Vec<(i64, String)> = frames
        .iter()
        .filter(|f| f.is_message())
        .map(|f| (f.seq(), f.json()["path"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        events,
        [(1, "One".into()), (2, "Two".into()), (3, "Three".into())]
    );

    // An unknown user gets the JSON 404 as the whole (streamed) response.
    let event = sample("updates-stream.json").replace(SAMPLE_USER, &ObjectId::new().to_string());
    let (status, kind, frames, _) = invoke_updates(app.state.clone(), &event, deadline_in).await;
    assert_eq!((status, kind.as_str()), (404, "application/json"));
    assert_eq!(frames[0].json()["code"], "UserNotFound");
    // The function checks the access token itself (the function URL has no auth).
    let event = sample("updates-stream.json")
        .replace(SAMPLE_USER, &user)
        .replace(SAMPLE_TOKEN, "wrong");
    let (status, _, frames, _) = invoke_updates(app.state.clone(), &event, deadline_in).await;
    assert_eq!(status, 403);
    assert_eq!(frames[0].json()["code"], "InvalidToken");
}

async fn invoke_ws(state: &AppState, event: Value) -> (i64, Value) {
    let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event).unwrap();
    let response = eider_ws::handle(state, event).await;
    let body = match response.body {
        Some(EventBody::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (response.status_code, body)
}

async fn ws_function_records_and_removes_connections(backend: Backend) {
    let app = app(backend);
    let user = user(&app).await;
    let id: ObjectId = user.parse().unwrap();
    let connect: Value =
        serde_json::from_str(&sample("ws-connect.json").replace(SAMPLE_USER, &user)).unwrap();
    let disconnect: Value = serde_json::from_str(&sample("ws-disconnect.json")).unwrap();
    let state = &app.state;
    let table = state.table.as_ref();

    let with_query = |query: Value| {
        let mut event = connect.clone();
        event["queryStringParameters"] = query.clone();
        event["multiValueQueryStringParameters"] = Value::Object(
            query
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), json!([v])))
                .collect(),
        );
        event
    };
    let refused = [
        (json!({ "user": user }), 401, "InvalidToken"),
        (
            json!({ "user": user, "accessToken": "wrong" }),
            403,
            "InvalidToken",
        ),
        (
            json!({ "accessToken": SAMPLE_TOKEN }),
            400,
            "InputValidationError",
        ),
        (
            json!({ "user": "nope", "accessToken": SAMPLE_TOKEN }),
            400,
            "InputValidationError",
        ),
        (
            json!({ "user": ObjectId::new().to_string(), "accessToken": SAMPLE_TOKEN }),
            404,
            "UserNotFound",
        ),
    ];
    for (query, status, code) in refused {
        let (got, body) = invoke_ws(state, with_query(query.clone())).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{query}"
        );
    }
    assert!(connections::list(table, &id).await.unwrap().is_empty());

    let (status, body) = invoke_ws(state, connect.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        connections::list(table, &id).await.unwrap(),
        [SAMPLE_CONNECTION]
    );
    let item = table
        .get(&keys::ws_connection(&id, SAMPLE_CONNECTION))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.body["sourceIp"], "203.0.113.10");
    let ttl = item.expires_at.unwrap() - chrono::Utc::now().timestamp();
    assert!((2 * 3600..=2 * 3600 + 300).contains(&ttl), "{ttl}");

    // Any message from the client ($default) changes nothing.
    let mut message = connect.clone();
    message["requestContext"]["routeKey"] = json!("$default");
    message["requestContext"]["eventType"] = json!("MESSAGE");
    message["body"] = json!("{\"action\":\"ping\"}");
    assert_eq!(invoke_ws(state, message).await.0, 200);

    let (status, _) = invoke_ws(state, disconnect.clone()).await;
    assert_eq!(status, 200);
    assert!(connections::list(table, &id).await.unwrap().is_empty());
    let owner = table
        .get(&keys::ws_connection_owner(SAMPLE_CONNECTION))
        .await
        .unwrap();
    assert!(owner.is_none());
    // A second $disconnect (or one for a connection never recorded) is fine.
    assert_eq!(invoke_ws(state, disconnect).await.0, 200);
}

/// A stand-in for the API Gateway management API: records each post; answers 410 Gone for
/// connections named `gone-*` and 403 for `broken-*`.
#[derive(Clone, Default)]
struct ManagementApi {
    posts: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn post_to_connection(
    State(api): State<ManagementApi>,
    Path(connection): Path<String>,
    body: Bytes,
) -> axum::response::Response {
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    api.posts
        .lock()
        .unwrap()
        .push((connection.clone(), message));
    let error = |status: StatusCode, kind: &'static str| {
        (status, [("x-amzn-errortype", kind)], "{\"message\":\"no\"}").into_response()
    };
    if connection.starts_with("gone-") {
        error(StatusCode::GONE, "GoneException")
    } else if connection.starts_with("broken-") {
        error(StatusCode::FORBIDDEN, "ForbiddenException")
    } else {
        StatusCode::OK.into_response()
    }
}

async fn bridge(table: Arc<dyn eider_shared::store::Table>, api: &ManagementApi) -> Bridge {
    let router = Router::new()
        .route(
            "/live/@connections/{connection}",
            axum::routing::post(post_to_connection),
        )
        .with_state(api.clone());
    let endpoint = format!("{}/live", serve(router).await);
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(eider_shared::store::sdk_http::http_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "eider-tests"))
        .load()
        .await;
    Bridge::new(table, Bridge::client(&config, &endpoint))
}

async fn stream_bridge_pushes_journal_records_and_drops_gone_connections(backend: Backend) {
    let table = backend.table.clone();
    let user: ObjectId = SAMPLE_USER.parse().unwrap();
    for id in ["live-1=", "gone-1=", "broken-1="] {
        let connection = Connection {
            id: id.into(),
            user,
            connected_at: chrono::Utc::now(),
            source_ip: None,
        };
        connections::add(table.as_ref(), &connection).await.unwrap();
    }
    let api = ManagementApi::default();
    let bridge = bridge(table.clone(), &api).await;
    let event: StreamEvent = serde_json::from_str(&sample("stream-bridge-journal.json")).unwrap();

    let response = bridge.handle(event.clone()).await;
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    // Both events of the user failed on the broken connection; nothing else failed (not the
    // unreadable record, not the user without connections).
    assert_eq!(
        failed,
        ["100000000000000000000001", "100000000000000000000003"]
    );

    let posts = api.posts.lock().unwrap().clone();
    let mut by_connection: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (connection, message) in posts {
        by_connection.entry(connection).or_default().push(message);
    }
    let live = &by_connection["live-1="];
    assert_eq!(
        live[0],
        json!({"id": 1, "command": "EXISTS", "uid": 1, "message": "6620f1a2b3c4d5e6f7a8b9e1",
               "idate": "2024-11-25T08:00:00.512Z", "thread": "6620f1a2b3c4d5e6f7a8b9f1",
               "mailbox": "6620f1a2b3c4d5e6f7a8b9d1"})
    );
    assert_eq!(
        (live[1]["id"].as_i64(), live[1]["command"].as_str()),
        (Some(2), Some("FETCH"))
    );
    assert_eq!(live.len(), 2);
    // The gone connection got one try, then was removed from the table.
    assert_eq!(by_connection["gone-1="].len(), 1);
    assert_eq!(by_connection["broken-1="].len(), 2);
    assert_eq!(
        connections::list(table.as_ref(), &user).await.unwrap(),
        ["broken-1=", "live-1="]
    );
    assert!(
        table
            .get(&keys::ws_connection_owner("gone-1="))
            .await
            .unwrap()
            .is_none()
    );

    // The broken connection goes away (its client disconnected): the retry succeeds.
    connections::forget(table.as_ref(), &user, "broken-1=")
        .await
        .unwrap();
    let response = bridge.handle(event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(api.posts.lock().unwrap().len(), 5 + 2);
}
