//! The WebSocket API's stand-in: what API Gateway does for `eider-ws` and the stream bridge.
//!
//! A client connects to `ws://<address>/<stage>?user=...&accessToken=...`; the connection gets
//! an id, `$connect` is invoked with API Gateway's event shape, and any answer but 200 refuses
//! the upgrade with that status and body. Messages from the client invoke `$default`, a close
//! `$disconnect`. The management API the stream bridge calls (`POST /@connections/{id}`, also
//! under a stage prefix) sends the body to that socket, or answers 410 `GoneException` when
//! the connection is gone, as API Gateway does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct Gateway {
    /// The emulator's invoke URL of the WebSocket function.
    invoke_url: String,
    http: reqwest::Client,
    sockets: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>>,
}

pub fn router(invoke_base: &str, function: &str) -> Router {
    let gateway = Gateway {
        invoke_url: format!("{invoke_base}/2015-03-31/functions/{function}/invocations"),
        http: reqwest::Client::new(),
        sockets: Arc::default(),
    };
    Router::new()
        .route("/", get(connect))
        .route("/{stage}", get(connect))
        .route("/@connections/{id}", any(manage))
        .route("/{stage}/@connections/{id}", any(manage_staged))
        .with_state(gateway)
}

impl Gateway {
    async fn invoke(
        &self,
        route: &str,
        id: &str,
        query: &Map<String, Value>,
        headers: &Value,
        body: Option<String>,
    ) -> (u16, String) {
        let event_type = match route {
            "$connect" => "CONNECT",
            "$disconnect" => "DISCONNECT",
            _ => "MESSAGE",
        };
        let multi: Map<String, Value> =
            query.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
        let event = json!({
            "headers": headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi,
            "requestContext": {
                "routeKey": route,
                "eventType": event_type,
                "messageDirection": "IN",
                "stage": "local",
                "connectionId": id,
                "connectedAt": chrono::Utc::now().timestamp_millis(),
                "requestTimeEpoch": chrono::Utc::now().timestamp_millis(),
                "requestId": eider_shared::id::ObjectId::new().to_string(),
                "domainName": "127.0.0.1",
                "apiId": "local",
                "identity": { "sourceIp": "127.0.0.1" },
            },
            "body": body,
            "isBase64Encoded": false,
        });
        match self.http.post(&self.invoke_url).json(&event).send().await {
            Ok(response) => {
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                let status = answer["statusCode"].as_u64().unwrap_or(502) as u16;
                (
                    status,
                    answer["body"].as_str().unwrap_or_default().to_string(),
                )
            }
            Err(e) => (502, json!({ "error": e.to_string() }).to_string()),
        }
    }
}

async fn connect(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let id = eider_shared::id::ObjectId::new().to_string();
    let query: Map<String, Value> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let headers: Map<String, Value> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), Value::String(v.to_str().ok()?.to_string()))))
        .collect();
    let headers = Value::Object(headers);
    let (status, body) = gateway
        .invoke("$connect", &id, &query, &headers, None)
        .await;
    if status != 200 {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return (status, [("content-type", "application/json")], body).into_response();
    }
    upgrade.on_upgrade(move |socket| session(gateway, id, query, headers, socket))
}

async fn session(
    gateway: Gateway,
    id: String,
    query: Map<String, Value>,
    headers: Value,
    socket: WebSocket,
) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut outgoing) = mpsc::unbounded_channel();
    gateway.sockets.lock().unwrap().insert(id.clone(), tx);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let close = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || close {
                break;
            }
        }
    });
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Text(text) => {
                let body = Some(text.to_string());
                gateway
                    .invoke("$default", &id, &query, &headers, body)
                    .await;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    gateway.sockets.lock().unwrap().remove(&id);
    writer.abort();
    gateway
        .invoke("$disconnect", &id, &query, &headers, None)
        .await;
}

async fn manage_staged(
    State(gateway): State<Gateway>,
    Path((_stage, id)): Path<(String, String)>,
    method: axum::http::Method,
    body: Bytes,
) -> Response {
    management(gateway, id, method, body)
}

async fn manage(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    method: axum::http::Method,
    body: Bytes,
) -> Response {
    management(gateway, id, method, body)
}

fn management(gateway: Gateway, id: String, method: axum::http::Method, body: Bytes) -> Response {
    let sockets = gateway.sockets.lock().unwrap();
    let Some(socket) = sockets.get(&id) else {
        let gone = json!({ "message": "GoneException" }).to_string();
        return (
            StatusCode::GONE,
            [
                ("x-amzn-errortype", "GoneException"),
                ("content-type", "application/json"),
            ],
            gone,
        )
            .into_response();
    };
    let message = match method {
        axum::http::Method::POST => match String::from_utf8(body.to_vec()) {
            Ok(text) => Message::Text(text.into()),
            Err(e) => Message::Binary(e.into_bytes().into()),
        },
        axum::http::Method::DELETE => Message::Close(None),
        _ => return StatusCode::OK.into_response(),
    };
    let _ = socket.send(message);
    StatusCode::OK.into_response()
}
