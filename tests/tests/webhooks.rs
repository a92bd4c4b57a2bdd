//! Webhooks (`/webhooks`) against a loopback HTTP sink: WildDuck's API shape, each event once
//! per change, signatures that verify, retries and the failing mark, address checks, and a
//! hanging endpoint that never delays mail delivery. On both backends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use eider_shared::config::{Config, DeliveryConfig};
use eider_shared::domain::delivery::Delivery;
use eider_shared::domain::webhook_send;
use eider_shared::mail::outbound::Outbound;
use eider_tests::app::{TestApp, ok, test_config};
use eider_tests::on_both_backends;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

on_both_backends!(
    backend:
    webhooks_are_managed_in_wildduck_shape,
    each_change_fires_its_event_once_signed,
    a_failing_endpoint_is_retried_then_marked_failing,
    a_hanging_endpoint_does_not_delay_mail_delivery,
    addresses_webhooks_may_not_reach_are_refused,
    wildducks_account_events_fire_with_their_fields,
);

const WAIT: Duration = Duration::from_secs(20);

fn config() -> Config {
    let mut config = test_config();
    config.webhooks.allow_loopback = true;
    config.webhooks.backoff = Duration::from_millis(100);
    config.webhooks.timeout = Duration::from_secs(3);
    config.webhooks.attempts = 3;
    config
}

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

/// An HTTP endpoint on loopback: `/ok/..` answers 200, `/flaky/..` 500 twice then 200,
/// `/down/..` always 500, `/hang/..` never answers.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    async fn start() -> (Sink, String) {
        let sink = Sink::default();
        let router = Router::new()
            .route("/{mode}/{name}", post(receive))
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (sink, base)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        let all = self.received.lock().unwrap();
        all.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits until `path` received `n` requests; returns them.
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.at(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{path}: {} of {n} requests within {WAIT:?}: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(sink): State<Sink>,
    Path((mode, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = format!("/{mode}/{name}");
    let seen = {
        let mut all = sink.received.lock().unwrap();
        all.push(Received {
            path: path.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        all.iter().filter(|r| r.path == path).count()
    };
    match mode.as_str() {
        "flaky" if seen <= 2 => StatusCode::INTERNAL_SERVER_ERROR,
        "down" => StatusCode::INTERNAL_SERVER_ERROR,
        "hang" => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    }
}

/// The app with its webhook sender running.
fn with_sender(app: &TestApp) {
    tokio::spawn(webhook_send::run_local(
        app.state.clone(),
        std::future::pending(),
    ));
}

async fn hook(app: &TestApp, types: Value, url: &str, user: Option<&str>) -> (String, String) {
    let mut body = json!({"type": types, "url": url});
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    let (status, created) = app.post("/webhooks", body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

/// The webhook's state once it is marked failing (within [`WAIT`]).
async fn failing(app: &TestApp, id: &str) -> Value {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, status) = app.get(&format!("/webhooks/{id}")).await;
        if status["failing"] == true {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "never marked failing: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The signature as a receiver computes it: HMAC-SHA256 of `<timestamp>.<body>`.
fn verifies(received: &Received, secret: &str) -> bool {
    let timestamp = received.header("x-eider-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}", received.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    received.header("x-eider-signature") == format!("sha256={expected}")
}

async fn webhooks_are_managed_in_wildduck_shape(backend: eider_tests::backends::Backend) {
    let app = TestApp::new(backend, config());
    let user = app
        .create_user(json!({"username": "hooked", "password": "pw"}))
        .await;
    let (first, secret) = hook(
        &app,
        json!(["User.*", " message.new "]),
        "http://127.0.0.1:9/a",
        None,
    )
    .await;
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    let (second, _) = hook(
        &app,
        json!(["*"]),
        "https://hooks.example.com/b",
        Some(&user),
    )
    .await;

    let (status, listed) = app.get("/webhooks").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["user"], Value::Null);
    let ids: Vec<&str> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    let entry = &listed["results"][0];
    assert_eq!(entry["type"], json!(["user.*", "message.new"]));
    assert_eq!(entry["user"], Value::Null);
    assert_eq!(entry["url"], "http://127.0.0.1:9/a");
    assert!(entry["created"].is_string());
    assert!(
        entry.get("secret").is_none(),
        "the secret is shown only once"
    );
    for key in ["page", "previousCursor", "nextCursor"] {
        assert!(listed.get(key).is_some(), "{key}: {listed}");
    }

    let (_, by_type) = app.get("/webhooks?type=MESSAGE.NEW").await;
    assert_eq!(by_type["total"], 1, "{by_type}");
    assert_eq!(by_type["type"], "message.new");
    let (_, by_user) = app.get(&format!("/webhooks?user={user}")).await;
    assert_eq!(by_user["total"], 1);
    assert_eq!(by_user["results"][0]["id"], second.as_str());
    assert_eq!(by_user["results"][0]["user"], user.as_str());

    let (status, one) = app.get(&format!("/webhooks/{first}")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["failing"], false);
    assert_eq!(one["failedDeliveries"], 0);

    for (body, field) in [
        (json!({"url": "http://127.0.0.1:9/"}), "type"),
        (json!({"type": [], "url": "http://127.0.0.1:9/"}), "type"),
        (json!({"type": ["*"]}), "url"),
        (json!({"type": ["*"], "url": "ftp://example.com/"}), "url"),
        (
            json!({"type": ["*"], "url": "http://x/", "other": 1}),
            "other",
        ),
        (
            json!({"type": ["*"], "url": "http://x/", "user": "nope"}),
            "user",
        ),
    ] {
        let (status, answer) = app.post("/webhooks", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["details"].get(field).is_some(), "{body}: {answer}");
    }
    let (status, answer) = app
        .post(
            "/webhooks",
            json!({"type": ["*"], "url": "http://x/", "user": "5f0c0ffee0000000000beef0"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["code"], "UserNotFound");

    let (status, _) = app.delete(&format!("/webhooks/{first}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = app.delete(&format!("/webhooks/{first}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["code"], "WebhookNotFound");
    let (status, answer) = app.get(&format!("/webhooks/{first}")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("WebhookNotFound"))
    );
    let (_, listed) = app.get("/webhooks").await;
    assert_eq!(listed["total"], 1);
}

async fn each_change_fires_its_event_once_signed(backend: eider_tests::backends::Backend) {
    let app = TestApp::new(backend, config());
    with_sender(&app);
    let (sink, base) = Sink::start().await;
    let (_, secret) = hook(&app, json!(["*"]), &format!("{base}/ok/all"), None).await;

    let user = app
        .create_user(
            json!({"username": "events", "password": "pw", "address": "events@example.com"}),
        )
        .await;
    let (_, mailbox) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "Work"}))
        .await;
    let work = mailbox["id"].as_str().unwrap().to_string();
    // A webhook of another user hears none of this user's events.
    let other = app
        .create_user(json!({"username": "other", "password": "pw"}))
        .await;
    hook(
        &app,
        json!(["*"]),
        &format!("{base}/ok/other"),
        Some(&other),
    )
    .await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let raw = "From: Ann <ann@example.org>\r\nTo: events@example.com\r\nSubject: Quarterly\r\nDate: Wed, 02 Nov 2011 19:19:08 +0000\r\n\r\nBody text that never leaves.\r\n";
    let uid = app.upload_ok(&user, &inbox, raw, json!({})).await;
    let path = format!("/users/{user}/mailboxes/{inbox}/messages/{uid}");
    let (status, _) = app.put(&path, json!({"flagged": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, moved) = app.put(&path, json!({"moveTo": work})).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let new_uid = moved["id"][0][1].as_u64().unwrap();
    let (status, _) = app
        .delete(&format!(
            "/users/{user}/mailboxes/{work}/messages/{new_uid}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);

    let expected = [
        "user.created",
        "mailbox.created",
        "message.new",
        "message.flags",
        "message.moved",
        "message.deleted",
    ];
    // The user's creation counts among its events too: `other` is created after the hook.
    let got = sink.wait_for("/ok/all", expected.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = {
        let again = sink.at("/ok/all");
        assert_eq!(again.len(), got.len(), "nothing more arrives: {again:?}");
        again
    };
    let mut names: Vec<String> = got
        .iter()
        .map(|r| r.json()["ev"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.push("user.created".into());
    want.sort();
    assert_eq!(names, want);
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|r| r.header("x-eider-delivery")).collect();
    assert_eq!(ids.len(), got.len(), "each delivery has its own id");
    for received in &got {
        assert!(verifies(received, &secret), "{received:?}");
        let body = received.json();
        assert_eq!(body["id"], received.header("x-eider-delivery"));
        assert_eq!(body["ev"], received.header("x-eider-event"));
        assert!(body["time"].as_i64().unwrap() > 1_600_000_000_000);
        assert!(!received.body.contains("never leaves"), "no body: {body}");
    }
    let by_ev = |ev: &str| {
        got.iter()
            .map(Received::json)
            .find(|b| b["ev"] == ev && (b["user"] == user.as_str() || ev != "user.created"))
            .unwrap_or_else(|| panic!("{ev}"))
    };
    let created = by_ev("user.created");
    assert_eq!(
        (created["username"].as_str(), created["address"].as_str()),
        (Some("events"), Some("events@example.com"))
    );
    assert_eq!(by_ev("mailbox.created")["path"], "Work");
    let new = by_ev("message.new");
    assert_eq!(new["user"], user.as_str());
    assert_eq!(new["mailbox"], inbox.as_str());
    assert_eq!(new["uid"], uid);
    assert_eq!(new["subject"], "Quarterly");
    assert_eq!(new["from"]["address"], "ann@example.org");
    assert_eq!(new["size"], raw.len());
    assert_eq!(new["message"].as_str().unwrap().len(), 24);
    assert!(
        by_ev("message.flags")["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("\\Flagged"))
    );
    let moved = by_ev("message.moved");
    assert_eq!(
        (moved["mailbox"].as_str(), moved["previousMailbox"].as_str()),
        (Some(&*work), Some(&*inbox))
    );
    assert_eq!(moved["uid"], new_uid);
    assert_eq!(moved["message"], new["message"]);
    assert_eq!(by_ev("message.deleted")["mailbox"], work.as_str());

    let theirs = sink.at("/ok/other");
    assert_eq!(theirs.len(), 0, "another user's webhook: {theirs:?}");
}

async fn wildducks_account_events_fire_with_their_fields(backend: eider_tests::backends::Backend) {
    let app = TestApp::new(backend, config());
    with_sender(&app);
    let (sink, base) = Sink::start().await;
    hook(&app, json!(["*"]), &format!("{base}/ok/all"), None).await;
    let user = app
        .create_user(json!({"username": "acct", "password": "pw", "address": "acct@old.example"}))
        .await;
    let u = |path: &str| format!("/users/{user}{path}");
    let mut expected = vec!["user.created"];

    ok(
        &app,
        "PUT",
        &u(""),
        Some(json!({"password": "a-new-password"})),
    )
    .await;
    expected.push("user.password.changed");
    let address = ok(
        &app,
        "POST",
        &u("/addresses"),
        Some(json!({"address": "second@example.com"})),
    )
    .await;
    let address = address["id"].as_str().unwrap().to_string();
    ok(&app, "DELETE", &u(&format!("/addresses/{address}")), None).await;
    expected.extend(["address.user.created", "address.user.deleted"]);
    let asp = ok(
        &app,
        "POST",
        &u("/asps"),
        Some(json!({"description": "Phone"})),
    )
    .await;
    ok(
        &app,
        "DELETE",
        &u(&format!("/asps/{}", asp["id"].as_str().unwrap())),
        None,
    )
    .await;
    expected.extend(["asp.created", "asp.deleted"]);
    let filter = ok(
        &app,
        "POST",
        &u("/filters"),
        Some(json!({"query": {"from": "boss"}, "action": {"seen": true}})),
    )
    .await;
    ok(
        &app,
        "DELETE",
        &u(&format!("/filters/{}", filter["id"].as_str().unwrap())),
        None,
    )
    .await;
    expected.extend(["filter.created", "filter.deleted"]);
    ok(
        &app,
        "PUT",
        &u("/autoreply"),
        Some(json!({"status": true, "subject": "Away", "text": "Back soon"})),
    )
    .await;
    ok(&app, "DELETE", &u("/autoreply"), None).await;
    expected.extend(["autoreply.user.enabled", "autoreply.user.disabled"]);
    ok(&app, "DELETE", &u("/2fa"), None).await;
    expected.push("mfa.disabled");
    let mailbox = ok(&app, "POST", &u("/mailboxes"), Some(json!({"path": "Tmp"}))).await;
    let mailbox = mailbox["id"].as_str().unwrap().to_string();
    ok(
        &app,
        "PUT",
        &u(&format!("/mailboxes/{mailbox}")),
        Some(json!({"path": "Tmp2"})),
    )
    .await;
    ok(&app, "DELETE", &u(&format!("/mailboxes/{mailbox}")), None).await;
    expected.extend(["mailbox.created", "mailbox.renamed", "mailbox.deleted"]);
    // Into Junk and out again.
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let junk = app.mailbox_id(&user, "Junk").await;
    let uid = app
        .upload_ok(
            &user,
            &inbox,
            "From: s@example.org\r\nSubject: spammy\r\n\r\nbuy\r\n",
            json!({}),
        )
        .await;
    let moved = ok(
        &app,
        "PUT",
        &u(&format!("/mailboxes/{inbox}/messages/{uid}")),
        Some(json!({"moveTo": junk})),
    )
    .await;
    let junk_uid = moved["id"][0][1].as_u64().unwrap();
    ok(
        &app,
        "PUT",
        &u(&format!("/mailboxes/{junk}/messages/{junk_uid}")),
        Some(json!({"moveTo": inbox})),
    )
    .await;
    expected.extend([
        "message.new",
        "message.moved",
        "marked.spam",
        "message.moved",
        "marked.ham",
    ]);

    let alias = ok(
        &app,
        "POST",
        "/domainaliases",
        Some(json!({"alias": "alias.example", "domain": "example.com"})),
    )
    .await;
    ok(
        &app,
        "DELETE",
        &format!("/domainaliases/{}", alias["id"].as_str().unwrap()),
        None,
    )
    .await;
    expected.extend(["domainalias.created", "domainalias.deleted"]);
    let key = ok(
        &app,
        "POST",
        "/dkim",
        Some(json!({"domain": "example.com", "selector": "s1"})),
    )
    .await;
    ok(
        &app,
        "POST",
        "/dkim",
        Some(json!({"domain": "example.com", "selector": "s2"})),
    )
    .await;
    ok(
        &app,
        "DELETE",
        &format!("/dkim/{}", key["id"].as_str().unwrap()),
        None,
    )
    .await;
    expected.extend(["dkim.created", "dkim.updated", "dkim.deleted"]);
    let forwarded = ok(
        &app,
        "POST",
        "/addresses/forwarded",
        Some(json!({"address": "team@example.com", "targets": ["far@remote.example"]})),
    )
    .await;
    ok(
        &app,
        "DELETE",
        &format!("/addresses/forwarded/{}", forwarded["id"].as_str().unwrap()),
        None,
    )
    .await;
    expected.extend(["address.forwarded.created", "address.forwarded.deleted"]);
    ok(
        &app,
        "PUT",
        "/addresses/renameDomain",
        Some(json!({"oldDomain": "old.example", "newDomain": "new.example"})),
    )
    .await;
    expected.push("address.domain.renamed");
    ok(&app, "DELETE", &u(""), None).await;
    ok(&app, "POST", &u("/restore"), None).await;
    expected.extend(["user.delete.started", "user.delete.cancelled"]);

    sink.wait_for("/ok/all", expected.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<Value> = sink.at("/ok/all").iter().map(Received::json).collect();
    let mut names: Vec<&str> = got.iter().map(|b| b["ev"].as_str().unwrap()).collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    let find = |ev: &str| got.iter().find(|b| b["ev"] == ev).unwrap().clone();
    for ev in [
        "user.password.changed",
        "asp.created",
        "filter.created",
        "mfa.disabled",
        "user.delete.started",
    ] {
        assert_eq!(find(ev)["user"], user.as_str(), "{ev}");
    }
    let created = find("address.user.created");
    assert_eq!(
        (created["address"].as_str(), created["value"].as_str()),
        (Some(&*address), Some("second@example.com"))
    );
    assert_eq!(find("asp.created")["description"], "Phone");
    let renamed = find("mailbox.renamed");
    assert_eq!(
        (renamed["previous"].as_str(), renamed["current"].as_str()),
        (Some("Tmp"), Some("Tmp2"))
    );
    assert_eq!(find("mailbox.deleted")["path"], "Tmp2");
    let spam = find("marked.spam");
    assert_eq!(
        (spam["mailbox"].as_str(), spam["message"].as_u64()),
        (Some(&*junk), Some(junk_uid))
    );
    assert_eq!(spam["subject"], "spammy");
    assert_eq!(find("marked.ham")["mailbox"], inbox.as_str());
    let alias_event = find("domainalias.created");
    assert_eq!(
        (
            alias_event["alias"].as_str(),
            alias_event["domain"].as_str()
        ),
        (Some("alias.example"), Some("example.com"))
    );
    assert!(alias_event.get("user").is_none());
    let dkim = find("dkim.updated");
    assert_eq!(
        (dkim["domain"].as_str(), dkim["selector"].as_str()),
        (Some("example.com"), Some("s2"))
    );
    assert!(dkim["fingerprint"].is_string());
    assert_eq!(
        find("address.forwarded.created")["value"],
        "team@example.com"
    );
    let domain = find("address.domain.renamed");
    assert_eq!(
        (domain["previous"].as_str(), domain["current"].as_str()),
        (Some("old.example"), Some("new.example"))
    );
    assert_eq!(
        find("user.delete.started")["result"]["addresses"]["deleted"],
        1
    );
    assert_eq!(
        find("user.delete.cancelled")["result"]["addresses"]["recovered"],
        1
    );
    drop(got);
}

async fn a_failing_endpoint_is_retried_then_marked_failing(
    backend: eider_tests::backends::Backend,
) {
    let app = TestApp::new(backend, config());
    with_sender(&app);
    let (sink, base) = Sink::start().await;
    let (flaky, _) = hook(&app, json!(["mailbox.*"]), &format!("{base}/flaky/x"), None).await;
    let (down, _) = hook(
        &app,
        json!(["mailbox.created"]),
        &format!("{base}/down/x"),
        None,
    )
    .await;
    let user = app
        .create_user(json!({"username": "retry", "password": "pw"}))
        .await;
    let (status, _) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "Once"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Two 500s, then delivered: the same delivery each time.
    let tries = sink.wait_for("/flaky/x", 3).await;
    let ids: std::collections::BTreeSet<&str> =
        tries.iter().map(|r| r.header("x-eider-delivery")).collect();
    assert_eq!(ids.len(), 1, "{tries:?}");
    // Every attempt of the one that stays down (3 here), then nothing more.
    sink.wait_for("/down/x", 3).await;
    let status = failing(&app, &down).await;
    assert!(
        status["lastError"].as_str().unwrap().contains("HTTP 500"),
        "{status}"
    );
    assert_eq!(status["failedDeliveries"], 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.at("/down/x").len(), 3, "no attempt after the last");
    assert_eq!(sink.at("/flaky/x").len(), 3);
    let (_, flaky_status) = app.get(&format!("/webhooks/{flaky}")).await;
    assert_eq!(flaky_status["failing"], false, "{flaky_status}");
    assert!(flaky_status["lastSuccess"].is_string(), "{flaky_status}");
}

async fn a_hanging_endpoint_does_not_delay_mail_delivery(backend: eider_tests::backends::Backend) {
    let mut config = config();
    config.webhooks.timeout = Duration::from_secs(60);
    let app = TestApp::new(backend, config);
    with_sender(&app);
    let (sink, base) = Sink::start().await;
    hook(
        &app,
        json!(["message.new"]),
        &format!("{base}/hang/x"),
        None,
    )
    .await;
    let user = app
        .create_user(json!({"username": "busy", "password": "pw", "address": "busy@example.com"}))
        .await;
    let pipeline = Delivery::new(
        app.state.clone(),
        Outbound::Smtp {
            host: "127.0.0.1".into(),
            port: 9,
        },
        DeliveryConfig::default(),
    );
    // The LMTP listener, as the local server runs it.
    let port = eider_tests::lmtp_client::serve(pipeline).await;
    let messages: Vec<(String, Vec<String>, String)> = (0..3)
        .map(|n| {
            (
                "a@example.org".to_string(),
                vec!["busy@example.com".to_string()],
                format!(
                    "From: a@example.org\r\nTo: busy@example.com\r\nSubject: n{n}\r\n\r\nhello\r\n"
                ),
            )
        })
        .collect();
    // Three deliveries in one session finish while the endpoint holds every event (its
    // timeout is a minute).
    let conversation = tokio::time::timeout(
        Duration::from_secs(20),
        eider_tests::lmtp_client::converse_async(port, messages),
    )
    .await
    .expect("LMTP delivery waited on the webhook");
    for message in &conversation.messages {
        let codes: Vec<u16> = message.data.iter().map(|r| r.0).collect();
        assert_eq!(codes, [250], "{message:?}");
    }
    sink.wait_for("/hang/x", 3).await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    assert_eq!(app.counters(&user, &inbox).await.0, 3);
}

async fn addresses_webhooks_may_not_reach_are_refused(backend: eider_tests::backends::Backend) {
    // As in the cloud: no loopback, no private networks.
    let mut config = config();
    config.webhooks.allow_loopback = false;
    config.webhooks.attempts = 1;
    let app = TestApp::new(backend, config);
    with_sender(&app);
    let (sink, base) = Sink::start().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://10.1.2.3/",
        "http://127.0.0.1:9/",
        "http://[::1]/",
    ] {
        let (status, answer) = app
            .post("/webhooks", json!({"type": ["*"], "url": url}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {answer}");
        assert!(answer["details"]["url"].is_string(), "{answer}");
    }
    // A name that resolves to loopback passes creation, but no request is made.
    let port = base.rsplit(':').next().unwrap();
    let (id, _) = hook(
        &app,
        json!(["mailbox.created"]),
        &format!("http://localhost:{port}/ok/x"),
        None,
    )
    .await;
    let user = app
        .create_user(json!({"username": "ssrf", "password": "pw"}))
        .await;
    app.post(
        &format!("/users/{user}/mailboxes"),
        json!({"path": "Probe"}),
    )
    .await;
    let status = failing(&app, &id).await;
    assert!(
        status["lastError"].as_str().unwrap().contains("loopback"),
        "{status}"
    );
    assert!(sink.at("/ok/x").is_empty());
}

/// The cloud's path on moto: the change's delivery item, as the table's stream delivers it,
/// goes through the function onto an SQS queue; the queue's messages through the function to
/// the endpoint; a failed attempt comes back through the stream, delayed, until delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_sender_goes_from_the_stream_through_sqs_to_the_endpoint() {
    use aws_lambda_events::dynamodb::Event as StreamEvent;
    use aws_lambda_events::sqs::SqsEvent;
    use eider_shared::domain::keys;
    use eider_shared::store::Query;
    use eider_shared::store::dynamo::stream_image_of;

    let app = TestApp::new(eider_tests::backends::moto().await, config());
    let (sink, base) = Sink::start().await;
    let (hook_id, secret) = hook(
        &app,
        json!(["mailbox.*"]),
        &format!("{base}/flaky/cloud"),
        None,
    )
    .await;
    let user = app
        .create_user(json!({"username": "cloudy", "password": "pw"}))
        .await;
    let (status, _) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "Sky"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let sqs = eider_tests::moto::sqs_client().await;
    let queue = sqs
        .create_queue()
        .queue_name(eider_tests::moto::unique_name("webhooks"))
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();
    let function =
        eider_webhooks::WebhookFunction::new(app.state.clone(), sqs.clone(), queue_url.clone())
            .unwrap();

    // Each round: the stream's new delivery items, then whatever the queue has.
    let mut streamed = std::collections::BTreeSet::new();
    let mut sequence = 0;
    for _ in 0..3 {
        let mut records = Vec::new();
        for shard in 0..keys::WEBHOOK_QUEUE_SHARDS {
            let page = app
                .state
                .table
                .query(&Query::table(keys::webhook_queue_pk(shard)).limit(100))
                .await
                .unwrap();
            for item in page.items {
                if !streamed.insert((item.pk.clone(), item.sk.clone())) {
                    continue;
                }
                sequence += 1;
                records.push(json!({
                    "eventID": format!("e{sequence}"), "eventName": "INSERT", "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                    "dynamodb": {"Keys": {"pk": {"S": item.pk}, "sk": {"S": item.sk}},
                                 "NewImage": stream_image_of(&item),
                                 "SequenceNumber": format!("{sequence:024}"), "SizeBytes": 100,
                                 "StreamViewType": "NEW_AND_OLD_IMAGES"},
                    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/s"
                }));
            }
        }
        // Records of other items are passed over.
        records.push(json!({
            "eventID": "other", "eventName": "INSERT", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "dynamodb": {"Keys": {"pk": {"S": "USER#x"}, "sk": {"S": "PROFILE"}},
                         "NewImage": {"pk": {"S": "USER#x"}, "sk": {"S": "PROFILE"}},
                         "SequenceNumber": "1", "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/s"
        }));
        assert_eq!(records.len(), 2, "one new delivery each round: {records:?}");
        let event: StreamEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        let answer = function
            .handle(serde_json::to_value(&event).unwrap())
            .await
            .unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");

        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(5)
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        let event: SqsEvent = serde_json::from_value(json!({"Records": messages.iter().map(|m| json!({
            "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
            "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:webhooks", "awsRegion": "us-east-1"
        })).collect::<Vec<_>>()}))
        .unwrap();
        let answer = function
            .handle(serde_json::to_value(&event).unwrap())
            .await
            .unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
        for m in messages {
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    // Two 500s, then delivered: three requests of one delivery, signed.
    let tries = sink.at("/flaky/cloud");
    assert_eq!(tries.len(), 3, "{tries:?}");
    let ids: std::collections::BTreeSet<&str> =
        tries.iter().map(|r| r.header("x-eider-delivery")).collect();
    assert_eq!(ids.len(), 1);
    assert!(tries.iter().all(|r| verifies(r, &secret)));
    assert_eq!(tries[2].json()["ev"], "mailbox.created");
    // Settled: nothing left in the queue partitions, and the webhook is healthy.
    for shard in 0..keys::WEBHOOK_QUEUE_SHARDS {
        let page = app
            .state
            .table
            .query(&Query::table(keys::webhook_queue_pk(shard)).limit(10))
            .await
            .unwrap();
        assert!(page.items.is_empty(), "{:?}", page.items);
    }
    let (_, status) = app.get(&format!("/webhooks/{hook_id}")).await;
    assert_eq!(status["failing"], false, "{status}");
}
