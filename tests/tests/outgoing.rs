//! Writing mail: composed uploads, `POST /users/{user}/submit`, drafts sent later, replies and
//! forwards, scheduled and cancelled sends, the daily recipients limit, and storage files.
//! The app's dispatcher is the real delivery pipeline with an SMTP sink on loopback as the
//! relay for outside recipients. Every test runs on the embedded store and on DynamoDB + S3.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use eider_shared::config::DeliveryConfig;
use eider_shared::domain::delivery::Delivery;
use eider_shared::domain::janitor::{self, Budget};
use eider_shared::mail::outbound::Outbound;
use eider_tests::app::{TestApp, ok};
use eider_tests::sinks::{SmtpSink, smtp_sink};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    submit_delivers_locally_and_out_once_with_a_sent_copy,
    replies_and_forwards_flag_the_original,
    scheduled_sends_wait_and_cancelled_ones_never_go,
    the_daily_limit_refuses_the_recipients_that_exceed_it,
    drafts_are_saved_and_sent_later,
    composed_uploads_are_built_from_fields,
    storage_files_are_uploaded_listed_read_and_deleted,
    bad_submissions_store_and_send_nothing,
    folders_are_emptied_now_or_in_the_background,
    search_takes_wildducks_parameters_and_q_keywords,
    search_actions_apply_to_every_match_in_the_background,
);

/// The app with the delivery pipeline as its dispatcher, relaying to `sink`.
async fn sending_app(app: TestApp) -> (TestApp, SmtpSink) {
    let sink = smtp_sink().await;
    let outbound = Outbound::Smtp {
        host: "127.0.0.1".into(),
        port: sink.port,
    };
    let app = app.with_state(|state| {
        let delivery = Delivery::new(state.clone(), outbound, DeliveryConfig::default());
        state.with_dispatcher(Arc::new(delivery))
    });
    (app, sink)
}

async fn user(app: &TestApp, name: &str) -> String {
    app.create_user(json!({"username": name, "password": "pw", "name": format!("User {name}"), "address": format!("{name}@example.com")}))
        .await
}

/// The messages of a mailbox (by path), newest first.
async fn listing(app: &TestApp, user: &str, path: &str) -> Vec<Value> {
    let mailbox = app.mailbox_id(user, path).await;
    let list = ok(
        app,
        "GET",
        &format!("/users/{user}/mailboxes/{mailbox}/messages?limit=250"),
        None,
    )
    .await;
    list["results"].as_array().unwrap().clone()
}

async fn source(app: &TestApp, user: &str, mailbox: &str, uid: u64) -> String {
    let request = http::Request::get(format!(
        "/users/{user}/mailboxes/{mailbox}/messages/{uid}/message.eml"
    ))
    .body(axum::body::Body::empty())
    .unwrap();
    let (status, _, bytes) = app.send_raw(request).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Waits until the sink holds `n` messages (the relay answers before the sink records).
async fn sink_count(sink: &SmtpSink, n: usize) -> Vec<eider_tests::sinks::Received> {
    for _ in 0..50 {
        if sink.messages().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sink.messages()
}

async fn submit_delivers_locally_and_out_once_with_a_sent_copy(app: TestApp) {
    let (app, sink) = sending_app(app).await;
    let alice = user(&app, "alice").await;
    let bob = user(&app, "bob").await;
    let body = json!({
        "from": {"name": "Alice A.", "address": "alice@example.com"},
        "to": [{"name": "Bob", "address": "bob@example.com"}, {"address": "friend@remote.example"}],
        "cc": [{"address": "cc@remote.example"}],
        "bcc": [{"address": "hidden@remote.example"}],
        "subject": "Plans für morgen",
        "text": "See you at ten.",
        "attachments": [{"filename": "plan.txt", "contentType": "text/plain", "content": STANDARD.encode("step 1\nstep 2")}],
    });
    let request = http::Request::post(format!("/users/{alice}/submit"))
        .header("content-type", "application/json")
        .header("idempotency-key", "submit-1")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (status, answer) = app.send(request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let queue = answer["message"]["queueId"].as_str().unwrap().to_string();
    let sent = app.mailbox_id(&alice, "Sent Mail").await;
    assert_eq!(answer["message"]["mailbox"], sent.as_str());
    let uid = answer["message"]["id"].as_u64().unwrap();

    // Bob has it in his INBOX, delivered directly.
    let inbox = listing(&app, &bob, "INBOX").await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["subject"], "Plans für morgen");
    assert_eq!(inbox[0]["from"]["address"], "alice@example.com");
    let bob_inbox = app.mailbox_id(&bob, "INBOX").await;
    let received = source(&app, &bob, &bob_inbox, inbox[0]["id"].as_u64().unwrap()).await;
    assert!(
        !received.contains("hidden@remote.example"),
        "no Bcc for recipients"
    );
    // The outside recipients got it once, in one relay conversation, without Bcc.
    let relayed = sink_count(&sink, 1).await;
    assert_eq!(relayed.len(), 1);
    let mut to = relayed[0].to.clone();
    to.sort();
    assert_eq!(
        to,
        [
            "cc@remote.example",
            "friend@remote.example",
            "hidden@remote.example"
        ]
    );
    assert_eq!(relayed[0].from, "alice@example.com");
    assert!(!relayed[0].data.contains("hidden@remote.example"));
    assert!(relayed[0].data.contains("plan.txt"));

    // Alice's Sent copy: seen, Bcc kept, with the queue id.
    let details = ok(
        &app,
        "GET",
        &format!("/users/{alice}/mailboxes/{sent}/messages/{uid}"),
        None,
    )
    .await;
    assert_eq!(details["seen"], true);
    assert_eq!(details["outbound"], json!([queue]));
    assert_eq!(details["bcc"][0]["address"], "hidden@remote.example");
    assert_eq!(details["attachments"][0]["filename"], "plan.txt");

    // A retry with the same key answers the same and sends nothing.
    let request = http::Request::post(format!("/users/{alice}/submit"))
        .header("content-type", "application/json")
        .header("idempotency-key", "submit-1")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (status, again) = app.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, answer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(listing(&app, &bob, "INBOX").await.len(), 1);
    assert_eq!(listing(&app, &alice, "Sent Mail").await.len(), 1);
    // Nothing left to do for the janitor.
    let report = janitor::run(
        &app.state,
        Utc::now() + chrono::Duration::hours(1),
        Budget::items(10_000),
    )
    .await
    .unwrap();
    assert_eq!(report.mail_sent, 0);
    assert_eq!(sink.messages().len(), 1);

    // A local address that nobody has is refused, the rest still goes.
    let answer = ok(
        &app,
        "POST",
        &format!("/users/{alice}/submit"),
        Some(json!({"to": [{"address": "nobody@example.com"}, {"address": "bob@example.com"}], "subject": "second", "text": "x"})),
    )
    .await;
    assert!(answer["message"]["queueId"].is_string());
    assert_eq!(listing(&app, &bob, "INBOX").await.len(), 2);
}

async fn replies_and_forwards_flag_the_original(app: TestApp) {
    let (app, sink) = sending_app(app).await;
    let alice = user(&app, "carol").await;
    let bob = user(&app, "dave").await;
    ok(
        &app,
        "POST",
        &format!("/users/{alice}/submit"),
        Some(json!({"to": [{"address": "dave@example.com"}], "subject": "Question", "text": "Lunch?"})),
    )
    .await;
    let inbox = app.mailbox_id(&bob, "INBOX").await;
    let original = listing(&app, &bob, "INBOX").await[0].clone();
    let uid = original["id"].as_u64().unwrap();

    // Dave replies: no To given, so it goes back to the sender; Re: subject; threaded.
    ok(
        &app,
        "POST",
        &format!("/users/{bob}/submit"),
        Some(
            json!({"reference": {"mailbox": inbox, "id": uid, "action": "reply"}, "text": "Yes!"}),
        ),
    )
    .await;
    let reply = listing(&app, &alice, "INBOX").await[0].clone();
    assert_eq!(reply["subject"], "Re: Question");
    let carol_inbox = app.mailbox_id(&alice, "INBOX").await;
    let raw = source(&app, &alice, &carol_inbox, reply["id"].as_u64().unwrap()).await;
    let message_id = original["messageId"]
        .as_str()
        .unwrap()
        .trim_matches(['<', '>']);
    assert!(
        raw.contains(&format!("In-Reply-To: <{message_id}>")),
        "{raw}"
    );
    let details = ok(
        &app,
        "GET",
        &format!("/users/{bob}/mailboxes/{inbox}/messages/{uid}"),
        None,
    )
    .await;
    assert_eq!(details["answered"], true);
    assert_eq!(details["forwarded"], false);
    // The reply is in Carol's thread.
    let sent = listing(&app, &alice, "Sent Mail").await;
    assert_eq!(reply["thread"], sent[0]["thread"]);

    // Forward, with the original's attachment copied over.
    ok(
        &app,
        "POST",
        &format!("/users/{bob}/submit"),
        Some(json!({"reference": {"mailbox": inbox, "id": uid, "action": "forward"}, "to": [{"address": "boss@remote.example"}], "text": "FYI"})),
    )
    .await;
    let relayed = sink_count(&sink, 1).await;
    assert_eq!(relayed.len(), 1);
    assert!(relayed[0].data.contains("Fwd: Question"));
    let details = ok(
        &app,
        "GET",
        &format!("/users/{bob}/mailboxes/{inbox}/messages/{uid}"),
        None,
    )
    .await;
    assert_eq!(details["forwarded"], true);

    // Forwarding the stored message as it is.
    let answer = ok(
        &app,
        "POST",
        &format!("/users/{bob}/mailboxes/{inbox}/messages/{uid}/forward"),
        Some(json!({"addresses": ["archive@remote.example", "archive@remote.example"]})),
    )
    .await;
    assert_eq!(
        answer["forwarded"],
        json!([{"seq": "001", "type": "mail", "value": "archive@remote.example"}])
    );
    let relayed = sink_count(&sink, 2).await;
    assert_eq!(relayed.len(), 2);
    assert!(relayed[1].data.contains("Subject: Question"));
    let details = ok(
        &app,
        "GET",
        &format!("/users/{bob}/mailboxes/{inbox}/messages/{uid}"),
        None,
    )
    .await;
    assert_eq!(details["outbound"], json!([answer["queueId"]]));
}

async fn scheduled_sends_wait_and_cancelled_ones_never_go(app: TestApp) {
    let (app, sink) = sending_app(app).await;
    let alice = user(&app, "erin").await;
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let first = ok(
        &app,
        "POST",
        &format!("/users/{alice}/submit"),
        Some(json!({"to": [{"address": "a@remote.example"}], "subject": "Later", "text": "x", "sendTime": later})),
    )
    .await;
    let second = ok(
        &app,
        "POST",
        &format!("/users/{alice}/submit"),
        Some(json!({"to": [{"address": "b@remote.example"}, {"address": "c@remote.example"}], "subject": "Never", "text": "y", "sendTime": later})),
    )
    .await;
    // Both copies are in Sent at once; nothing went out.
    assert_eq!(listing(&app, &alice, "Sent Mail").await.len(), 2);
    let report = janitor::run(&app.state, Utc::now(), Budget::items(10_000))
        .await
        .unwrap();
    assert_eq!(report.mail_sent, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sink.messages().is_empty());

    let queue = second["message"]["queueId"].as_str().unwrap();
    let cancelled = ok(
        &app,
        "DELETE",
        &format!("/users/{alice}/outbound/{queue}"),
        None,
    )
    .await;
    assert_eq!(
        cancelled,
        json!({"success": true, "queueId": queue, "deleted": 2})
    );
    let again = ok(
        &app,
        "DELETE",
        &format!("/users/{alice}/outbound/{queue}"),
        None,
    )
    .await;
    assert_eq!(again["deleted"], 0);
    let (status, body) = app
        .delete(&format!(
            "/users/{alice}/outbound/{}",
            eider_shared::id::ObjectId::new()
        ))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NoSuchQueueEntry"))
    );

    // When it is due, the janitor sends the first, and only the first.
    let report = janitor::run(
        &app.state,
        Utc::now() + chrono::Duration::hours(2),
        Budget::items(10_000),
    )
    .await
    .unwrap();
    assert_eq!(report.mail_sent, 1);
    let relayed = sink_count(&sink, 1).await;
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].to, ["a@remote.example"]);
    assert!(first["message"]["queueId"].is_string());
    let report = janitor::run(
        &app.state,
        Utc::now() + chrono::Duration::hours(3),
        Budget::items(10_000),
    )
    .await
    .unwrap();
    assert_eq!(report.mail_sent, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sink.messages().len(), 1);
}

async fn the_daily_limit_refuses_the_recipients_that_exceed_it(app: TestApp) {
    // Daily counters: the test must run within one UTC day.
    eider_tests::clock::clear_of_utc_midnight(std::time::Duration::from_secs(60)).await;
    let (app, sink) = sending_app(app).await;
    let alice = user(&app, "frank").await;
    ok(
        &app,
        "PUT",
        &format!("/users/{alice}"),
        Some(json!({"recipients": 3})),
    )
    .await;
    let send = |n: usize| {
        let to: Vec<Value> = (0..n)
            .map(|i| json!({"address": format!("r{i}@remote.example")}))
            .collect();
        json!({"to": to, "subject": "limit", "text": "x"})
    };
    ok(
        &app,
        "POST",
        &format!("/users/{alice}/submit"),
        Some(send(2)),
    )
    .await;
    let (status, body) = app.post(&format!("/users/{alice}/submit"), send(2)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "RateLimitedError");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("You reached a daily sending limit"),
        "{body}"
    );
    ok(
        &app,
        "POST",
        &format!("/users/{alice}/submit"),
        Some(send(1)),
    )
    .await;
    let (status, _) = app.post(&format!("/users/{alice}/submit"), send(1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Refused submissions left nothing behind.
    assert_eq!(listing(&app, &alice, "Sent Mail").await.len(), 2);
    assert_eq!(sink_count(&sink, 2).await.len(), 2);
    let profile = ok(&app, "GET", &format!("/users/{alice}"), None).await;
    assert_eq!(
        profile["limits"]["recipients"]["used"], 3,
        "{}",
        profile["limits"]
    );

    // Parallel submissions can't exceed it either.
    let bob = user(&app, "grace").await;
    ok(
        &app,
        "PUT",
        &format!("/users/{bob}"),
        Some(json!({"recipients": 5})),
    )
    .await;
    let attempts = futures::future::join_all((0..10).map(|_| {
        let app = &app;
        let body = send(1);
        let path = format!("/users/{bob}/submit");
        async move { app.post(&path, body).await.0 }
    }))
    .await;
    let accepted = attempts.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(accepted, 5, "{attempts:?}");

    // More than 400 recipients in one message.
    let (status, body) = app.post(&format!("/users/{bob}/submit"), send(401)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("TooMany"))
    );
}

async fn drafts_are_saved_and_sent_later(app: TestApp) {
    let (app, sink) = sending_app(app).await;
    let alice = user(&app, "heidi").await;
    let bob = user(&app, "ivan").await;
    // The web client's "save": isDraft and uploadOnly.
    let saved = ok(
        &app,
        "POST",
        &format!("/users/{alice}/submit"),
        Some(json!({"isDraft": true, "uploadOnly": true, "to": [{"address": "ivan@example.com"}], "bcc": [{"address": "copy@remote.example"}], "subject": "Draft", "html": "<p>Hi <b>Ivan</b></p>"})),
    )
    .await;
    let drafts = app.mailbox_id(&alice, "Drafts").await;
    assert_eq!(saved["message"]["mailbox"], drafts.as_str());
    assert_eq!(saved["message"]["queueId"], false);
    let uid = saved["message"]["id"].as_u64().unwrap();
    let draft = ok(
        &app,
        "GET",
        &format!("/users/{alice}/mailboxes/{drafts}/messages/{uid}"),
        None,
    )
    .await;
    assert_eq!(draft["draft"], true);
    assert_eq!(draft["text"].as_str().unwrap().trim(), "Hi Ivan");
    assert!(sink.messages().is_empty());
    assert!(listing(&app, &bob, "INBOX").await.is_empty());

    // Saving again replaces the earlier draft.
    let resaved = ok(
        &app,
        "POST",
        &format!("/users/{alice}/submit"),
        Some(json!({"isDraft": true, "uploadOnly": true, "draft": {"mailbox": drafts, "id": uid}, "to": [{"address": "ivan@example.com"}], "bcc": [{"address": "copy@remote.example"}], "subject": "Draft v2", "text": "Hi Ivan, v2"})),
    )
    .await;
    let listed = listing(&app, &alice, "Drafts").await;
    assert_eq!(listed.len(), 1);
    let uid = resaved["message"]["id"].as_u64().unwrap();

    // Sending the draft: Ivan gets it, the Bcc address too, the draft moves to Sent.
    let sent = ok(
        &app,
        "POST",
        &format!("/users/{alice}/mailboxes/{drafts}/messages/{uid}/submit"),
        Some(json!({})),
    )
    .await;
    assert!(sent["queueId"].is_string(), "{sent}");
    let sent_box = app.mailbox_id(&alice, "Sent Mail").await;
    assert_eq!(sent["message"]["mailbox"], sent_box.as_str());
    assert!(listing(&app, &alice, "Drafts").await.is_empty());
    let copy = &listing(&app, &alice, "Sent Mail").await[0];
    assert_eq!(
        (copy["seen"].as_bool(), copy["draft"].as_bool()),
        (Some(true), Some(false))
    );
    let inbox = listing(&app, &bob, "INBOX").await;
    assert_eq!(inbox[0]["subject"], "Draft v2");
    let relayed = sink_count(&sink, 1).await;
    assert_eq!(relayed[0].to, ["copy@remote.example"]);
    assert!(!relayed[0].data.to_lowercase().contains("bcc:"));

    // Only drafts can be sent that way.
    let (status, body) = app
        .post(
            &format!(
                "/users/{alice}/mailboxes/{sent_box}/messages/{}/submit",
                copy["id"]
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MessageNotDraft"))
    );
}

async fn composed_uploads_are_built_from_fields(app: TestApp) {
    let alice = user(&app, "judy").await;
    let inbox = app.mailbox_id(&alice, "INBOX").await;
    let drafts = app.mailbox_id(&alice, "Drafts").await;
    let file = ok(
        &app,
        "POST",
        &format!("/users/{alice}/storage"),
        Some(json!({"filename": "notes.txt", "content": "stored file"})),
    )
    .await;
    let png = STANDARD.encode([137u8, 80, 78, 71, 1, 2, 3]);
    let stored = ok(
        &app,
        "POST",
        &format!("/users/{alice}/mailboxes/{inbox}/messages"),
        Some(json!({
            "from": {"name": "Judy", "address": "judy@example.com"},
            "to": [{"address": "someone@remote.example"}, {"address": "not an address"}],
            "subject": "Composed",
            "html": format!("<p>Logo: <img src=\"data:image/png;base64,{png}\" data-filename=\"logo.png\"></p>"),
            "attachments": [{"filename": "a.txt", "content": STANDARD.encode("attached")}],
            "files": [file["id"], eider_shared::id::ObjectId::new()],
            "headers": [{"key": "X-Mailer", "value": "Eider tests"}],
            "unseen": true,
        })),
    )
    .await;
    let uid = stored["message"]["id"].as_u64().unwrap();
    let details = ok(
        &app,
        "GET",
        &format!("/users/{alice}/mailboxes/{inbox}/messages/{uid}"),
        None,
    )
    .await;
    assert_eq!(details["subject"], "Composed");
    assert_eq!(details["seen"], false);
    assert_eq!(
        details["to"],
        json!([{"name": "", "address": "someone@remote.example"}])
    );
    let names: Vec<&str> = details["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["filename"].as_str().unwrap())
        .collect();
    for name in ["logo.png", "a.txt", "notes.txt"] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    let html = details["html"][0].as_str().unwrap();
    // The data: image became an inline part (WildDuck's details link it as attachment:ATT…).
    assert!(
        html.contains("src=\"attachment:ATT") && !html.contains("data:image"),
        "{html}"
    );
    assert_eq!(details["text"].as_str().unwrap().trim(), "Logo:");
    let raw = source(&app, &alice, &inbox, uid).await;
    assert!(raw.contains("X-Mailer: Eider tests"));

    // A reference makes a draft with In-Reply-To; replacePrevious removes the old draft.
    let first = ok(
        &app,
        "POST",
        &format!("/users/{alice}/mailboxes/{drafts}/messages"),
        Some(json!({"reference": {"mailbox": inbox, "id": uid, "action": "reply"}, "text": "draft 1"})),
    )
    .await;
    let details = ok(
        &app,
        "GET",
        &format!(
            "/users/{alice}/mailboxes/{drafts}/messages/{}",
            first["message"]["id"]
        ),
        None,
    )
    .await;
    assert_eq!(details["draft"], true);
    assert_eq!(details["subject"], "Re: Composed");
    let second = ok(
        &app,
        "POST",
        &format!("/users/{alice}/mailboxes/{drafts}/messages"),
        Some(json!({"subject": "draft 2", "text": "x", "draft": true, "replacePrevious": {"id": first["message"]["id"]}})),
    )
    .await;
    let drafts_now = listing(&app, &alice, "Drafts").await;
    assert_eq!(drafts_now.len(), 1);
    assert_eq!(drafts_now[0]["id"], second["message"]["id"]);

    for bad in [
        json!({"subject": "x", "cc": [{"address": "bad"}]}),
        json!({"subject": "x", "attachments": [{"filename": "a"}]}),
        json!({"subject": "x", "reference": {"mailbox": inbox, "id": 1, "action": "quote"}}),
        json!({"subject": "x", "headers": [{"key": "Bad Name", "value": "v"}]}),
        json!({"subject": "x", "nonsense": 1}),
    ] {
        let (status, body) = app
            .post(
                &format!("/users/{alice}/mailboxes/{inbox}/messages"),
                bad.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(app.counters(&alice, &inbox).await.0, 1);
}

async fn storage_files_are_uploaded_listed_read_and_deleted(app: TestApp) {
    let alice = user(&app, "kate").await;
    let other = user(&app, "liam").await;
    let storage = format!("/users/{alice}/storage");
    let b = ok(
        &app,
        "POST",
        &storage,
        Some(
            json!({"filename": "b.pdf", "content": STANDARD.encode("%PDF"), "encoding": "base64"}),
        ),
    )
    .await;
    let a = ok(&app, "POST", &storage, Some(json!({"filename": "a.txt", "content": {"type": "Buffer", "data": [104, 105]}, "cid": "logo@x"}))).await;
    let request = http::Request::post(format!("{storage}?filename=c.bin"))
        .header("content-type", "application/octet-stream")
        .body(axum::body::Body::from(vec![0u8, 255, 7]))
        .unwrap();
    let (status, c) = app.send(request).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let unnamed = ok(
        &app,
        "POST",
        &storage,
        Some(json!({"content": "x", "contentType": "image/png"})),
    )
    .await;

    let list = ok(&app, "GET", &format!("{storage}?limit=2"), None).await;
    assert_eq!(list["total"], 4);
    let names: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "b.pdf"]);
    assert_eq!(list["results"][0]["contentType"], "text/plain");
    assert_eq!(list["results"][0]["cid"], "logo@x");
    assert_eq!(list["results"][1]["contentType"], "application/pdf");
    assert_eq!(list["results"][0]["created"].as_str().unwrap().len(), 24);
    let next = list["nextCursor"].as_str().unwrap();
    let page2 = ok(&app, "GET", &format!("{storage}?limit=2&next={next}"), None).await;
    let names: Vec<&str> = page2["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names[1].starts_with("upload-") && names[1].ends_with(".png"),
        "{names:?}"
    );
    let found = ok(&app, "GET", &format!("{storage}?query=pdf"), None).await;
    assert_eq!(found["total"], 1);

    for (id, bytes, ctype) in [
        (&b["id"], b"%PDF".to_vec(), "application/pdf"),
        (&a["id"], b"hi".to_vec(), "text/plain"),
        (&c["id"], vec![0, 255, 7], "application/octet-stream"),
    ] {
        let request = http::Request::get(format!("{storage}/{}", id.as_str().unwrap()))
            .body(axum::body::Body::empty())
            .unwrap();
        let (status, headers, got) = app.send_raw(request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got.to_vec(), bytes);
        assert_eq!(headers["content-type"], ctype);
    }
    let (status, _) = app
        .get(&format!("{storage}/{}?sess=x", a["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = app
        .get(&format!(
            "/users/{other}/storage/{}",
            a["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("FileNotFound"))
    );
    ok(
        &app,
        "DELETE",
        &format!("{storage}/{}", unnamed["id"].as_str().unwrap()),
        None,
    )
    .await;
    let (status, _) = app
        .delete(&format!("{storage}/{}", unnamed["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ok(&app, "GET", &storage, None).await["total"], 3);
    let (status, _) = app.post(&storage, json!({"filename": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .post(&storage, json!({"content": "x", "encoding": "hex"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn bad_submissions_store_and_send_nothing(app: TestApp) {
    let (app, sink) = sending_app(app).await;
    let alice = user(&app, "mona").await;
    for bad in [
        json!({"to": [{"address": "a@remote.example"}], "cc": [{"address": "not-an-address"}], "text": "x"}),
        json!({"to": [{"address": "a@remote.example"}], "sendTime": "2099-01-01T00:00:00Z", "text": "x"}),
        json!({"to": [{"address": "a@remote.example"}], "sendTime": "soon", "text": "x"}),
        json!({"to": [{"address": "a@remote.example"}], "attachments": [{"content": "%%%"}]}),
    ] {
        let (status, body) = app
            .post(&format!("/users/{alice}/submit"), bad.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = app
        .post(
            &format!("/users/{alice}/submit"),
            json!({"mailbox": eider_shared::id::ObjectId::new(), "to": [{"address": "a@remote.example"}], "text": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NoSuchMailbox"))
    );
    ok(
        &app,
        "PUT",
        &format!("/users/{alice}"),
        Some(json!({"disabled": true})),
    )
    .await;
    let (status, body) = app
        .post(
            &format!("/users/{alice}/submit"),
            json!({"to": [{"address": "a@remote.example"}], "text": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("UserDisabled"))
    );
    let (status, _) = app
        .post(
            &format!("/users/{}/submit", eider_shared::id::ObjectId::new()),
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(listing(&app, &alice, "Sent Mail").await.is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sink.messages().is_empty());
}

async fn folders_are_emptied_now_or_in_the_background(app: TestApp) {
    let alice = user(&app, "nora").await;
    let trash = app.mailbox_id(&alice, "Trash").await;
    let junk = app.mailbox_id(&alice, "Junk").await;
    for i in 0..5 {
        let raw = format!("From: a@remote.example\r\nSubject: t{i}\r\n\r\nx\r\n");
        app.upload_ok(&alice, &trash, &raw, json!({ "draft": i == 0 }))
            .await;
        app.upload_ok(&alice, &junk, &raw, json!({})).await;
    }
    let storage = app.storage_used(&alice).await;
    assert!(storage > 0);
    let answer = ok(
        &app,
        "DELETE",
        &format!("/users/{alice}/mailboxes/{trash}/messages"),
        None,
    )
    .await;
    assert_eq!(answer, json!({"success": true, "deleted": 5, "errors": 0}));
    assert_eq!(app.counters(&alice, &trash).await, (0, 0));
    let archived = ok(
        &app,
        "GET",
        &format!("/users/{alice}/archived/messages"),
        None,
    )
    .await;
    assert_eq!(
        archived["results"].as_array().unwrap().len(),
        4,
        "drafts are not archived"
    );

    let first = ok(
        &app,
        "DELETE",
        &format!("/users/{alice}/mailboxes/{junk}/messages?async=true&skipArchive=true"),
        None,
    )
    .await;
    assert_eq!(first["existing"], false);
    let second = ok(
        &app,
        "DELETE",
        &format!("/users/{alice}/mailboxes/{junk}/messages?async=true"),
        None,
    )
    .await;
    assert_eq!(
        (second["existing"].as_bool(), &second["scheduled"]),
        (Some(true), &first["scheduled"])
    );
    assert_eq!(app.counters(&alice, &junk).await.0, 5);
    janitor::run(&app.state, Utc::now(), Budget::items(10_000))
        .await
        .unwrap();
    assert_eq!(app.counters(&alice, &junk).await, (0, 0));
    assert_eq!(app.storage_used(&alice).await, 0);
    let archived = ok(
        &app,
        "GET",
        &format!("/users/{alice}/archived/messages"),
        None,
    )
    .await;
    assert_eq!(
        archived["results"].as_array().unwrap().len(),
        4,
        "skipArchive kept Junk out"
    );
    let (status, _) = app
        .delete(&format!(
            "/users/{alice}/mailboxes/{}/messages",
            eider_shared::id::ObjectId::new()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Uploads messages for the search tests; answers (user, inbox, work folder).
async fn search_fixture(app: &TestApp) -> (String, String, String) {
    let user = user(app, "olga").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let (_, created) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "Work"}))
        .await;
    let work = created["id"].as_str().unwrap().to_string();
    let messages = [
        (
            &inbox,
            "From: Alice <alice@remote.example>\r\nTo: olga@example.com\r\nCc: Bob <bob@remote.example>\r\nSubject: Budget review\r\n\r\nThe budget for spring.\r\n",
            json!({}),
        ),
        (
            &inbox,
            "From: Carol <carol@remote.example>\r\nTo: olga@example.com\r\nBcc: secret@remote.example\r\nSubject: Lunch\r\n\r\nNoodles today?\r\n",
            json!({"unseen": true}),
        ),
        (
            &inbox,
            "From: Alice <alice@remote.example>\r\nTo: dave@remote.example\r\nSubject: Travel plans\r\n\r\nTrain tickets booked.\r\n",
            json!({"flagged": true}),
        ),
        (
            &work,
            "From: Eve <eve@remote.example>\r\nTo: olga@example.com\r\nSubject: Budget draft\r\n\r\nNumbers attached.\r\n",
            json!({"unseen": true}),
        ),
    ];
    for (mailbox, raw, flags) in messages {
        app.upload_ok(&user, mailbox, raw, flags).await;
    }
    (user, inbox, work)
}

async fn subjects(app: &TestApp, user: &str, query: &str) -> Vec<String> {
    let encoded = query.replace(' ', "+");
    let answer = ok(app, "GET", &format!("/users/{user}/search?{encoded}"), None).await;
    let mut subjects: Vec<String> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    assert_eq!(
        answer["total"].as_u64(),
        Some(subjects.len() as u64),
        "{query}: {answer}"
    );
    subjects
}

async fn search_takes_wildducks_parameters_and_q_keywords(app: TestApp) {
    let (user, inbox, work) = search_fixture(&app).await;
    let check = |query: &'static str, expected: &'static [&'static str]| {
        let (app, user) = (&app, &user);
        async move {
            assert_eq!(subjects(app, user, query).await, expected, "{query}");
        }
    };
    check("query=budget", &["Budget draft", "Budget review"]).await;
    check("seen=true", &["Budget review", "Travel plans"]).await;
    check("unseen=true&seen=true", &["Budget draft", "Lunch"]).await;
    check(
        "flagged=false",
        &["Budget draft", "Budget review", "Lunch", "Travel plans"],
    )
    .await;
    check("to=bob", &["Budget review"]).await;
    check(
        "or[from]=carol&or[subject]=travel",
        &["Lunch", "Travel plans"],
    )
    .await;
    check("q=cc:bob", &["Budget review"]).await;
    check("q=bcc:secret", &["Lunch"]).await;
    check("q=to:secret", &["Lunch"]).await;
    check("to=secret", &[]).await;
    check("q=in:work", &["Budget draft"]).await;
    check("q=in:nowhere", &[]).await;
    check("q=is:starred", &["Travel plans"]).await;
    check("q=seen:yes from:alice", &["Budget review", "Travel plans"]).await;
    check(
        "q=unseen:maybe from:alice",
        &["Budget review", "Travel plans"],
    )
    .await;
    check("q=budget -draft", &["Budget review"]).await;
    check(
        "q=minsize:1 maxsize:100000 after:2000-01-01",
        &["Budget draft", "Budget review", "Lunch", "Travel plans"],
    )
    .await;
    check("q=before:2000-01-01", &[]).await;
    let by_id = subjects(&app, &user, &format!("mailbox={inbox}&id=2:*")).await;
    assert_eq!(by_id, ["Lunch", "Travel plans"]);
    let in_work = subjects(&app, &user, &format!("q=mailbox:{work}")).await;
    assert_eq!(in_work, ["Budget draft"]);
    let (status, _) = app
        .get(&format!("/users/{user}/search?mailbox={inbox}&id=1,2:3"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn search_actions_apply_to_every_match_in_the_background(app: TestApp) {
    let (user, inbox, work) = search_fixture(&app).await;
    let answer = ok(
        &app,
        "POST",
        &format!("/users/{user}/search"),
        Some(json!({"query": "budget", "action": {"moveTo": inbox, "seen": true}})),
    )
    .await;
    assert_eq!(answer["existing"], false);
    assert!(answer["scheduled"].is_string());
    // Small result sets are done when the request answers.
    assert_eq!(app.counters(&user, &work).await, (0, 0));
    assert_eq!(app.counters(&user, &inbox).await, (4, 1));
    ok(
        &app,
        "POST",
        &format!("/users/{user}/search"),
        Some(json!({"from": "alice", "action": {"flagged": true}})),
    )
    .await;
    assert_eq!(
        subjects(&app, &user, "flagged=true").await,
        ["Budget review", "Travel plans"]
    );
    ok(
        &app,
        "POST",
        &format!("/users/{user}/search"),
        Some(json!({"q": "from:carol", "action": {"delete": true}})),
    )
    .await;
    assert_eq!(app.counters(&user, &inbox).await, (3, 0));
    let archived = ok(
        &app,
        "GET",
        &format!("/users/{user}/archived/messages"),
        None,
    )
    .await;
    assert_eq!(archived["results"][0]["subject"], "Lunch");
    for bad in [
        json!({"query": "x"}),
        json!({"query": "x", "action": {"delete": true, "seen": true}}),
        json!({"query": "x", "action": {"moveTo": "nope"}}),
        json!({"query": "x", "action": {"color": "red"}}),
    ] {
        let (status, body) = app
            .post(&format!("/users/{user}/search"), bad.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = app
        .post(
            &format!("/users/{user}/search"),
            json!({"query": "x", "action": {"moveTo": eider_shared::id::ObjectId::new()}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A larger set goes on in the janitor.
    let big = user_with_many(&app).await;
    let (bigbox, count) = big.1.clone();
    ok(
        &app,
        "POST",
        &format!("/users/{}/search", big.0),
        Some(json!({"mailbox": bigbox, "action": {"seen": true}})),
    )
    .await;
    janitor::run(&app.state, Utc::now(), Budget::items(100_000))
        .await
        .unwrap();
    assert_eq!(app.counters(&big.0, &bigbox).await, (count, 0));
}

/// A user with more unseen messages than one step of a search action handles.
async fn user_with_many(app: &TestApp) -> (String, (String, u64)) {
    let user = user(app, "peter").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let count = 60;
    for i in 0..count {
        let raw = format!("From: x@remote.example\r\nSubject: n{i}\r\n\r\nbody\r\n");
        app.upload_ok(&user, &inbox, &raw, json!({"unseen": true}))
            .await;
    }
    (user, (inbox, count))
}
