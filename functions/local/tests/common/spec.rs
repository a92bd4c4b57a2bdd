//! The spec's users and addresses examples as HTTP calls, shared by the end-to-end tests of
//! the local server (functions/local/tests/e2e.rs) and of the cloud shape
//! (tests/tests/cloud_shape.rs): the same calls must work against both.
#![allow(dead_code)]

use reqwest::Method as M;
use serde_json::{Value, json};

pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The id of INBOX in a `GET /users/{user}/mailboxes` answer.
pub fn inbox_of(listing: &Value) -> String {
    listing["results"]
        .as_array()
        .and_then(|boxes| boxes.iter().find(|m| m["path"] == "INBOX"))
        .and_then(|inbox| inbox["id"].as_str())
        .unwrap_or_else(|| panic!("no INBOX in {listing}"))
        .to_string()
}

/// What the examples created, for checking it later.
pub struct SpecData {
    pub user: String,
    pub other: String,
    pub asp_password: String,
}

/// The examples against `base`, on an empty store.
pub async fn spec_examples(c: &reqwest::Client, base: &str) -> SpecData {
    // POST /users (spec example)
    let (status, created) = call(c, M::POST, format!("{base}/users"), Some(json!({
        "username": "testuser", "password": "secretpass", "address": "testuser@example.com", "ip": "192.168.10.10"
    }))).await;
    assert_eq!(status, 200, "{created}");
    let user = created["id"].as_str().unwrap().to_string();
    // GET /users?query=testuser&tags=... (spec example, with our user's data)
    let (status, list) = call(c, M::GET, format!("{base}/users?query=testuser"), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["results"][0]["address"], "testuser@example.com");
    // GET /users/{user}
    let (status, one) = call(c, M::GET, format!("{base}/users/{user}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["username"], "testuser");
    // PUT /users/{user}: set quota to 1 kilobyte
    let (status, body) = call(
        c,
        M::PUT,
        format!("{base}/users/{user}"),
        Some(json!({"quota": 1024})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"success": true})));
    // PUT /users/{user}/logout
    let (status, body) = call(
        c,
        M::PUT,
        format!("{base}/users/{user}/logout"),
        Some(json!({"reason": "Account was deleted"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"success": true})));
    // POST /users/{user}/addresses
    let (status, alias) = call(
        c,
        M::POST,
        format!("{base}/users/{user}/addresses"),
        Some(json!({"address": "user@example.com"})),
    )
    .await;
    assert_eq!(status, 200, "{alias}");
    let alias = alias["id"].as_str().unwrap().to_string();
    // GET /addresses?query=...
    let (_, found) = call(c, M::GET, format!("{base}/addresses?query=testuser"), None).await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["results"][0]["user"], user);
    // GET /users/{user}/addresses and one address
    let (_, mine) = call(c, M::GET, format!("{base}/users/{user}/addresses"), None).await;
    assert_eq!(mine["results"].as_array().unwrap().len(), 2);
    let (_, one) = call(
        c,
        M::GET,
        format!("{base}/users/{user}/addresses/{alias}"),
        None,
    )
    .await;
    assert_eq!(one["main"], false);
    // PUT main, then the old main can be deleted
    let (status, _) = call(
        c,
        M::PUT,
        format!("{base}/users/{user}/addresses/{alias}"),
        Some(json!({"main": true})),
    )
    .await;
    assert_eq!(status, 200);
    let old_main = mine["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["main"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = call(
        c,
        M::DELETE,
        format!("{base}/users/{user}/addresses/{old_main}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // POST /users/{user}/asps and POST /authenticate with it (spec examples)
    let (status, asp) = call(
        c,
        M::POST,
        format!("{base}/users/{user}/asps"),
        Some(json!({"description": "Mac OSX Mail Client", "scopes": ["*"], "ip": "192.168.10.10"})),
    )
    .await;
    assert_eq!(status, 200, "{asp}");
    let asp_password = asp["password"].as_str().unwrap().to_string();
    let (status, auth) = call(
        c,
        M::POST,
        format!("{base}/authenticate"),
        Some(json!({"username": "testuser", "password": asp_password, "scope": "pop3", "ip": "192.168.10.10"})),
    )
    .await;
    assert_eq!(status, 200, "{auth}");
    assert_eq!(auth["id"], user);
    assert_eq!(auth["require2fa"], false);
    // A second user to delete.
    let (_, other) = call(
        c,
        M::POST,
        format!("{base}/users"),
        Some(json!({"username": "leaving", "password": "pw"})),
    )
    .await;
    let other = other["id"].as_str().unwrap().to_string();
    let (status, deleted) = call(c, M::DELETE, format!("{base}/users/{other}"), None).await;
    assert_eq!(status, 200, "{deleted}");
    // Garbage gets a JSON 4xx, never a dropped connection.
    let response = c
        .post(format!("{base}/users"))
        .header("content-type", "application/json")
        .body("{{{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    SpecData {
        user,
        other,
        asp_password,
    }
}

/// What [`spec_examples`] left behind is still there (after a restart).
pub async fn spec_data_is_still_there(c: &reqwest::Client, base: &str, data: &SpecData) {
    let SpecData {
        user,
        other,
        asp_password,
    } = data;
    let (status, one) = call(c, M::GET, format!("{base}/users/{user}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["address"], "user@example.com");
    assert_eq!(one["limits"]["quota"]["allowed"], 1024);
    let (status, _) = call(c, M::GET, format!("{base}/users/{other}"), None).await;
    assert_eq!(status, 404);
    let (_, list) = call(c, M::GET, format!("{base}/users"), None).await;
    assert_eq!(list["total"], 1);
    // The application password and the security log survived too.
    let (status, auth) = call(
        c,
        M::POST,
        format!("{base}/authenticate"),
        Some(json!({"username": "user@example.com", "password": asp_password, "scope": "imap"})),
    )
    .await;
    assert_eq!(status, 200, "{auth}");
    let (status, log) = call(
        c,
        M::GET,
        format!("{base}/users/{user}/authlog?action=create%20asp"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["total"], 1);
}
