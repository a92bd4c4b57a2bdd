//! An in-process app: every router merged and finished, as the local server builds it, over a
//! chosen backend. Requests go through tower's `oneshot`, with no network.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::backends::Backend;
use eider_shared::config::Config;
use eider_shared::http::{AppState, finish};

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    /// Keeps the backend (temp folder, moto table) alive.
    pub backend: Backend,
}

/// The configuration tests run with: a fixed mail domain, no access token.
pub fn test_config() -> Config {
    Config {
        domain: "example.com".into(),
        ..Config::default()
    }
}

impl TestApp {
    pub fn new(backend: Backend, config: Config) -> TestApp {
        let mut state = AppState::new(backend.table.clone(), backend.blobs.clone(), config);
        if let Some(index) = &backend.text_index {
            state = state.with_text_index(index.clone());
        }
        let router = finish(eider_local::router(), state.clone());
        TestApp {
            router,
            state,
            backend,
        }
    }

    /// An app over `backend` with a state built by the caller.
    pub fn new_with_state(backend: Backend, state: AppState) -> TestApp {
        let router = finish(eider_local::router(), state.clone());
        TestApp {
            router,
            state,
            backend,
        }
    }

    pub async fn embedded() -> TestApp {
        TestApp::new(crate::backends::embedded().await, test_config())
    }

    pub async fn moto() -> TestApp {
        TestApp::new(crate::backends::moto().await, test_config())
    }

    /// The same app whose state is changed by `change` (a dispatcher, a notifier).
    pub fn with_state(self, change: impl FnOnce(AppState) -> AppState) -> TestApp {
        let state = change(self.state);
        let router = finish(eider_local::router(), state.clone());
        TestApp {
            router,
            state,
            backend: self.backend,
        }
    }

    /// Sends a request with an optional JSON body; returns the status and the JSON answer.
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri);
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// As [`TestApp::call`], with extra request headers (`X-Access-Token`, `Authorization`).
    pub async fn call_with(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// Sends a raw request.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "answer is not JSON ({status}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    }

    /// Sends a request and returns the answer as bytes (raw sources, attachments).
    pub async fn send_raw(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes)
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, None).await
    }
    pub async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", uri, Some(body)).await
    }
    pub async fn put(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call("PUT", uri, Some(body)).await
    }
    pub async fn delete(&self, uri: &str) -> (StatusCode, Value) {
        self.call("DELETE", uri, None).await
    }

    /// Creates a user and returns its id, failing the test otherwise.
    pub async fn create_user(&self, body: Value) -> String {
        let (status, json) = self.post("/users", body).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json["id"].as_str().unwrap().to_string()
    }

    pub fn table(&self) -> Arc<dyn eider_shared::store::Table> {
        self.state.table.clone()
    }

    /// The id of the user's mailbox at `path`, failing the test when there is none.
    pub async fn mailbox_id(&self, user: &str, path: &str) -> String {
        let (_, list) = self.get(&format!("/users/{user}/mailboxes")).await;
        list["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["path"] == path)
            .unwrap_or_else(|| panic!("no mailbox {path} in {list}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Uploads `raw` (base64 in JSON) with the `extra` fields; the answer as it came.
    pub async fn upload(
        &self,
        user: &str,
        mailbox: &str,
        raw: &str,
        extra: Value,
    ) -> (StatusCode, Value) {
        let mut body = json!({ "raw": STANDARD.encode(raw.as_bytes()) });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        self.post(&format!("/users/{user}/mailboxes/{mailbox}/messages"), body)
            .await
    }

    /// [`TestApp::upload`] that must succeed; the new message's UID.
    pub async fn upload_ok(&self, user: &str, mailbox: &str, raw: &str, extra: Value) -> u64 {
        let (status, body) = self.upload(user, mailbox, raw, extra).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["message"]["id"].as_u64().unwrap()
    }

    /// A mailbox's `(total, unseen)`.
    pub async fn counters(&self, user: &str, mailbox: &str) -> (u64, u64) {
        let (status, body) = self
            .get(&format!("/users/{user}/mailboxes/{mailbox}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["total"].as_u64().unwrap(),
            body["unseen"].as_u64().unwrap(),
        )
    }

    /// The user's storage used, as `GET /users/{user}` reports it.
    pub async fn storage_used(&self, user: &str) -> u64 {
        let (_, body) = self.get(&format!("/users/{user}")).await;
        body["limits"]["quota"]["used"].as_u64().unwrap()
    }
}

/// Calls the API and insists on 200; the answer.
pub async fn ok(app: &TestApp, method: &str, uri: &str, body: Option<Value>) -> Value {
    let (status, answer) = app.call(method, uri, body.clone()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{method} {uri} {body:?} -> {answer}"
    );
    answer
}

/// The bytes of a file the API answers: the body, or (S3) what its redirect points to.
pub async fn download(app: &TestApp, request: Request<Body>) -> (http::HeaderMap, Vec<u8>) {
    let (status, headers, bytes) = app.send_raw(request).await;
    if status.is_redirection() {
        let url = headers["location"].to_str().unwrap();
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let headers = response.headers().clone();
        return (headers, response.bytes().await.unwrap().to_vec());
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    (headers, bytes.to_vec())
}
