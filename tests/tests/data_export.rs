//! Moving accounts (`POST /data/export`, `POST /data/import`): an export imported into an empty
//! deployment with another secret key gives back the same users, addresses, folders, messages
//! (byte for byte), flags, filters, autoreplies, application passwords and 2FA. On both
//! backends (the moto export comes through its presigned link).

use axum::http::StatusCode;
use eider_shared::config::SecretKey;
use eider_tests::app::{TestApp, download, ok, test_config};
use eider_tests::backends::{self, Backend};
use eider_tests::totp::{enable_totp, now, totp_code};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_account_moves_whole() {
    an_account_moves_whole(backends::embedded().await, backends::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_account_moves_whole() {
    an_account_moves_whole(backends::moto().await, backends::moto().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_imports_are_refused_and_change_nothing() {
    let app = TestApp::new(backends::embedded().await, test_config());
    for body in ["", "not json\n", "{\"type\":\"user\"}\n"] {
        let (status, answer) = import(&app, body.as_bytes()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {answer}");
    }
    let (status, answer) = app
        .post("/data/export", json!({"users": ["not-an-id"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (_, users) = app.get("/users").await;
    assert_eq!(users["total"], 0);
}

fn app_with_key(backend: Backend, key: u8) -> TestApp {
    let mut config = test_config();
    config.secret_key = Some(SecretKey([key; 32]));
    TestApp::new(backend, config)
}

async fn import(app: &TestApp, body: &[u8]) -> (StatusCode, Value) {
    let request = http::Request::post("/data/import")
        .header("content-type", "application/octet-stream")
        .body(axum::body::Body::from(body.to_vec()))
        .unwrap();
    app.send(request).await
}

async fn export(app: &TestApp, body: Value) -> Vec<u8> {
    let request = http::Request::post("/data/export")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (headers, bytes) = download(app, request).await;
    assert_eq!(headers["content-type"], "application/x-ndjson");
    bytes
}

/// A user's folders with their messages: (mailbox id, path, [(subject, flags, raw)]).
async fn mail_of(
    app: &TestApp,
    user: &str,
) -> Vec<(String, String, Vec<(String, Value, Vec<u8>)>)> {
    let listed = ok(app, "GET", &format!("/users/{user}/mailboxes"), None).await;
    let mut out = Vec::new();
    for mailbox in listed["results"].as_array().unwrap() {
        let id = mailbox["id"].as_str().unwrap().to_string();
        let path = mailbox["path"].as_str().unwrap().to_string();
        let messages = ok(
            app,
            "GET",
            &format!("/users/{user}/mailboxes/{id}/messages?order=asc"),
            None,
        )
        .await;
        let mut found = Vec::new();
        for message in messages["results"].as_array().unwrap() {
            let uid = message["id"].as_u64().unwrap();
            let request = http::Request::get(format!(
                "/users/{user}/mailboxes/{id}/messages/{uid}/message.eml"
            ))
            .body(axum::body::Body::empty())
            .unwrap();
            let (_, raw) = download(app, request).await;
            let flags = json!({
                "seen": message["seen"], "flagged": message["flagged"], "draft": message["draft"],
                "answered": message["answered"], "forwarded": message["forwarded"],
                "idate": message["idate"],
            });
            found.push((
                message["subject"].as_str().unwrap_or("").to_string(),
                flags,
                raw,
            ));
        }
        out.push((id, path, found));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn an_account_moves_whole(source: Backend, target: Backend) {
    let old = app_with_key(source, 1);
    let user = old
        .create_user(json!({
            "username": "mover", "password": "first password", "name": "Mo Ver",
            "address": "mover@example.com", "tags": ["vip"], "quota": 50_000_000,
        }))
        .await;
    let stay = old
        .create_user(json!({"username": "stays", "password": "pw", "tags": ["other"]}))
        .await;
    let u = |path: &str| format!("/users/{user}{path}");
    let alt = ok(
        &old,
        "POST",
        &u("/addresses"),
        Some(json!({"address": "alt@example.com", "tags": ["x"]})),
    )
    .await;
    let projects = ok(
        &old,
        "POST",
        &u("/mailboxes"),
        Some(json!({"path": "Projects/2026"})),
    )
    .await;
    let projects = projects["id"].as_str().unwrap().to_string();
    let filter = ok(
        &old,
        "POST",
        &u("/filters"),
        Some(json!({"name": "boss", "query": {"from": "boss"}, "action": {"mailbox": projects, "seen": true}})),
    )
    .await;
    ok(
        &old,
        "PUT",
        &u("/autoreply"),
        Some(json!({"status": true, "subject": "Away", "text": "Back on Monday"})),
    )
    .await;
    let asp = ok(
        &old,
        "POST",
        &u("/asps"),
        Some(json!({"description": "Phone", "scopes": ["imap"]})),
    )
    .await;
    let asp_password = asp["password"].as_str().unwrap().to_string();
    let seed = enable_totp(&old, &user).await;

    let inbox = old.mailbox_id(&user, "INBOX").await;
    let plain = "From: Boss <boss@example.org>\r\nTo: mover@example.com\r\nSubject: Plans\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nLine one\r\nFrom the start\r\n";
    old.upload_ok(
        &user,
        &inbox,
        plain,
        json!({"unseen": false, "flagged": true}),
    )
    .await;
    let encoded = "From: =?UTF-8?B?SsO8cmdlbg==?= <j@example.de>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo\r\n--b\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF/w==\r\n--b--\r\n";
    old.upload_ok(&user, &projects, encoded, json!({"draft": true}))
        .await;

    let file = export(&old, json!({"tags": "vip"})).await;
    let text = String::from_utf8(file.clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "eider_data_export");
    assert_eq!(lines[0]["version"], 1);
    assert!(!text.contains(&stay), "only the tagged user");
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "message").count(),
        2,
        "{kinds:?}"
    );
    assert!(!text.contains("Back on Monday") || text.contains("autoreply"));

    let new = app_with_key(target, 2);
    let (status, answer) = import(&new, &file).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let expected = lines.len() as u64;
    assert_eq!(
        answer["result"],
        json!({"entries": expected, "imported": expected - 1, "failed": 0, "existing": 0})
    );

    // The same user, with its id.
    let (before, after) = (
        ok(&old, "GET", &u(""), None).await,
        ok(&new, "GET", &u(""), None).await,
    );
    for field in [
        "username",
        "name",
        "address",
        "tags",
        "enabled2fa",
        "autoreply",
    ] {
        assert_eq!(before[field], after[field], "{field}");
    }
    assert_eq!(after["limits"]["quota"]["allowed"], 50_000_000);
    // Addresses, filters, autoreply, application passwords: the same, ids included.
    for path in ["/addresses", "/filters", "/autoreply", "/asps"] {
        let (a, b) = (
            ok(&old, "GET", &u(path), None).await,
            ok(&new, "GET", &u(path), None).await,
        );
        assert_eq!(a, b, "{path}");
    }
    assert!(
        ok(&new, "GET", &u("/addresses"), None)
            .await
            .to_string()
            .contains(alt["id"].as_str().unwrap())
    );
    assert_eq!(
        ok(
            &new,
            "GET",
            &u(&format!("/filters/{}", filter["id"].as_str().unwrap())),
            None
        )
        .await["action"]["mailbox"],
        projects.as_str()
    );
    // Its password, its application password, its TOTP seed (sealed again with the new key).
    let (status, login) = new
        .post(
            "/authenticate",
            json!({"username": "mover", "password": "first password"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert_eq!(login["require2fa"], json!(["totp"]));
    let code = totp_code(&seed, now() + 30);
    ok(
        &new,
        "POST",
        &u("/2fa/totp/check"),
        Some(json!({"token": code})),
    )
    .await;
    let (status, login) = new
        .post(
            "/authenticate",
            json!({"username": "mover", "password": asp_password, "scope": "imap"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    // Folders with their ids, messages byte for byte with their flags and arrival times.
    let (mail_before, mail_after) = (mail_of(&old, &user).await, mail_of(&new, &user).await);
    assert_eq!(mail_before, mail_after);
    assert!(
        mail_after
            .iter()
            .any(|(_, path, m)| path == "Projects/2026" && m.len() == 1)
    );
    assert!(
        mail_after
            .iter()
            .flat_map(|(_, _, m)| m)
            .any(|(_, _, raw)| raw == plain.as_bytes())
    );
    // Storage is counted again as the messages arrive.
    assert_eq!(old.storage_used(&user).await, new.storage_used(&user).await);
    // The user who was not exported is not there.
    let (status, _) = new.get(&format!("/users/{stay}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Importing again changes nothing.
    let (status, again) = import(&new, &file).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["result"]["imported"], 0, "{again}");
    assert_eq!(again["result"]["existing"], expected - 1, "{again}");
    assert_eq!(mail_of(&new, &user).await, mail_after);
}
