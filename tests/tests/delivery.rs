//! Incoming mail: the filters and autoreply endpoints, and the delivery pipeline through its
//! two entry points: a real LMTP conversation (Python's smtplib.LMTP against the LMTP
//! listener, served in-process over the test's backend) and the ingest Lambda's handler on
//! the sample SES event. Outgoing mail goes to an SMTP sink on loopback; `action_targetUrl`
//! to an HTTP sink. Every test runs on the embedded store and on DynamoDB + S3 (moto).

use std::time::Duration;

use axum::body::Body;
use eider_shared::config::DeliveryConfig;
use eider_shared::domain::delivery::{Delivery, Incoming, Outcome};
use eider_shared::mail::outbound::Outbound;
use eider_tests::app::TestApp;
use eider_tests::lmtp_client::converse_async;
use eider_tests::sinks::{SmtpSink, http_sink, smtp_sink};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    filters_are_created_listed_read_updated_and_deleted_in_both_shapes,
    filter_input_is_validated_and_the_limit_holds,
    autoreply_is_set_partially_read_with_both_body_names_and_deleted,
    lmtp_conversation_replies_per_recipient,
    every_filter_condition_selects_its_messages,
    every_filter_action_is_applied,
    forwards_and_target_urls_go_out_and_failures_are_recorded,
    autoreplies_follow_rfc_3834,
    ses_ingest_delivers_once_per_recipient_even_when_retried,
    spam_headers_file_into_junk_and_deliveries_carry_their_envelope,
    an_autoreply_to_a_local_sender_is_delivered_directly,
);

async fn new_user(app: &TestApp, name: &str, extra: Value) -> String {
    let mut body = json!({"username": name, "password": "pw", "name": name});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    app.create_user(body).await
}

async fn new_mailbox(app: &TestApp, user: &str, path: &str) -> String {
    let (status, body) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": path}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn add_filter(app: &TestApp, user: &str, body: Value) -> String {
    let (status, created) = app
        .post(&format!("/users/{user}/filters"), body.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body} -> {created}");
    created["id"].as_str().unwrap().to_string()
}

fn pipeline(app: &TestApp, outbound: Outbound) -> Delivery {
    let config = DeliveryConfig {
        target_url_timeout: Duration::from_secs(3),
        ..DeliveryConfig::default()
    };
    Delivery::new(app.state.clone(), outbound, config)
}

fn relay(sink: &SmtpSink) -> Outbound {
    Outbound::Smtp {
        host: "127.0.0.1".into(),
        port: sink.port,
    }
}

/// Delivers `raw` from `from` to `to` through the pipeline, as the LMTP listener does.
async fn deliver(pipeline: &Delivery, from: &str, to: &str, raw: &str) -> Outcome {
    let recipient = pipeline
        .recipient(to)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{to}: {e:?}"));
    let incoming = Incoming {
        raw: raw.as_bytes(),
        sender: from,
        source: "LMTP",
        id: None,
        spam_score: None,
    };
    pipeline.deliver(&incoming, &recipient).await
}

fn stored(outcome: &Outcome) -> (String, u32) {
    match outcome {
        Outcome::Stored { mailbox, uid, .. } => (mailbox.to_string(), *uid),
        other => panic!("not stored: {other:?}"),
    }
}

fn mail(from: &str, subject: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: someone@example.com\r\nSubject: {subject}\r\nMessage-ID: <{}@remote.example>\r\n{extra_headers}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        eider_shared::id::ObjectId::new()
    )
}

async fn message(app: &TestApp, user: &str, mailbox: &str, uid: u32) -> Value {
    let (status, body) = app
        .get(&format!("/users/{user}/mailboxes/{mailbox}/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn events(app: &TestApp, user: &str, mailbox: &str, uid: u32) -> Vec<Value> {
    let (status, body) = app
        .get(&format!(
            "/users/{user}/mailboxes/{mailbox}/messages/{uid}/events"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["events"].as_array().unwrap().clone()
}

async fn total(app: &TestApp, user: &str, mailbox: &str) -> u64 {
    let (_, body) = app.get(&format!("/users/{user}/mailboxes/{mailbox}")).await;
    body["total"].as_u64().unwrap()
}

async fn raw_source(app: &TestApp, user: &str, mailbox: &str, uid: u32) -> String {
    let request = http::Request::get(format!(
        "/users/{user}/mailboxes/{mailbox}/messages/{uid}/message.eml"
    ))
    .body(Body::empty())
    .unwrap();
    let (status, _, bytes) = app.send_raw(request).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Filters API

async fn filters_are_created_listed_read_updated_and_deleted_in_both_shapes(app: TestApp) {
    let user = new_user(&app, "filterer", json!({})).await;
    let folder = new_mailbox(&app, &user, "Receipts").await;
    // The spec's example: flat fields.
    let flat = add_filter(
        &app,
        &user,
        json!({"name": "Flag messages from abc", "query_from": "abc", "action_flag": true}),
    )
    .await;
    // WildDuck's nested shape.
    let nested = add_filter(
        &app,
        &user,
        json!({
            "query": {"subject": "  Your   receipt ", "ha": true, "size": -50000},
            "action": {"seen": true, "mailbox": folder,
                       "targets": ["copy@remote.example", "https://hooks.example.com/in?key=s3cret"]},
        }),
    )
    .await;
    let (status, list) = app.get(&format!("/users/{user}/filters")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["limits"], json!({"allowed": 400, "used": 2}));
    let first = &list["results"][0];
    assert_eq!(first["id"], flat.as_str());
    assert_eq!(first["name"], "Flag messages from abc");
    assert_eq!(first["query"], json!([["from", "(abc)"]]));
    assert_eq!(first["action"], json!([["flag it"]]));
    assert!(first["created"].is_string());
    let second = &list["results"][1];
    assert_eq!(
        second["query"],
        json!([
            ["subject", "(Your receipt)"],
            ["has attachment"],
            ["smaller", 50000]
        ])
    );
    assert_eq!(
        second["action"],
        json!([
            ["mark as read"],
            ["forward to", "copy@remote.example, hooks.example.com"],
            ["move to folder", "\"Receipts\""]
        ])
    );
    // Details carry both shapes.
    let (status, one) = app.get(&format!("/users/{user}/filters/{nested}")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(
        one["query"],
        json!({"subject": "Your receipt", "ha": true, "size": -50000})
    );
    assert_eq!(one["action"]["mailbox"], folder.as_str());
    assert_eq!(
        one["action"]["targets"],
        json!([
            "copy@remote.example",
            "https://hooks.example.com/in?key=s3cret"
        ])
    );
    assert_eq!(one["query_subject"], "Your receipt");
    assert_eq!(one["query_ha"], true);
    assert_eq!(one["query_size"], -50000);
    assert_eq!(one["action_seen"], true);
    assert_eq!(one["action_mailbox"], folder.as_str());
    assert_eq!(one["action_forward"], "copy@remote.example");
    assert_eq!(
        one["action_targetUrl"],
        "https://hooks.example.com/in?key=s3cret"
    );
    // The spec's update example: clear query_from, require attachments, mark as spam.
    let (status, body) = app
        .put(
            &format!("/users/{user}/filters/{flat}"),
            json!({"query_from": "", "query_ha": true, "action_spam": true}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    let (_, one) = app.get(&format!("/users/{user}/filters/{flat}")).await;
    assert_eq!(one["query"], json!({"ha": true}));
    assert_eq!(one["action"], json!({"flag": true, "spam": true}));
    assert!(one.get("query_from").is_none());
    assert_eq!(one["name"], "Flag messages from abc");
    // Nested update: replace the targets, unset the mailbox, disable.
    let (status, _) = app
        .put(
            &format!("/users/{user}/filters/{nested}"),
            json!({"action": {"targets": ["other@remote.example"], "mailbox": ""}, "disabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, one) = app.get(&format!("/users/{user}/filters/{nested}")).await;
    assert_eq!(one["action"]["targets"], json!(["other@remote.example"]));
    assert!(one["action"].get("mailbox").is_none());
    assert_eq!(one["disabled"], true);
    // The flat forward replaces only the address targets.
    let (status, _) = app
        .put(
            &format!("/users/{user}/filters/{nested}"),
            json!({"action_targetUrl": "http://127.0.0.1:9/x", "action_forward": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, one) = app.get(&format!("/users/{user}/filters/{nested}")).await;
    assert_eq!(one["action"]["targets"], json!(["http://127.0.0.1:9/x"]));
    // The profile reports the count.
    let (_, profile) = app.get(&format!("/users/{user}")).await;
    assert_eq!(
        profile["limits"]["filters"],
        json!({"allowed": 400, "used": 2})
    );
    // Forward targets are in the security log.
    let (_, log) = app.get(&format!("/users/{user}/authlog")).await;
    let actions: Vec<&str> = log["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"filter added"), "{actions:?}");
    assert!(actions.contains(&"filter forward added"), "{actions:?}");
    // Delete.
    let (status, body) = app.delete(&format!("/users/{user}/filters/{flat}")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    let (status, body) = app.get(&format!("/users/{user}/filters/{flat}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "FilterNotFound");
    let (_, profile) = app.get(&format!("/users/{user}")).await;
    assert_eq!(profile["limits"]["filters"]["used"], 1);
}

async fn filter_input_is_validated_and_the_limit_holds(app: TestApp) {
    let user = new_user(&app, "validator", json!({})).await;
    let other = new_user(&app, "someoneelse", json!({})).await;
    let foreign = app.mailbox_id(&other, "INBOX").await;
    let base = format!("/users/{user}/filters");
    let (status, body) = app
        .post(&base, json!({"query_from": "x", "action_mailbox": foreign}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "NoSuchMailbox");
    for (bad, field) in [
        (
            json!({"action_forward": "not an address"}),
            "action_forward",
        ),
        (
            json!({"action_targetUrl": "ftp://files.example.com/x"}),
            "action_targetUrl",
        ),
        (
            json!({"action_targetUrl": "no-scheme.example.com"}),
            "action_targetUrl",
        ),
        (
            json!({"action": {"targets": ["a@b.example", "gopher://x"]}}),
            "action.targets.1",
        ),
        (json!({"action": {"mailbox": "123"}}), "action.mailbox"),
        (json!({"query": "from:abc"}), "query"),
        (json!({"query": {"sender": "x"}}), "query.sender"),
        (json!({"query_size": "big"}), "query_size"),
        (json!({"query_subject": "x".repeat(256)}), "query_subject"),
        (json!({"unknown": 1}), "unknown"),
    ] {
        let (status, body) = app.post(&base, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        assert_eq!(body["code"], "InputValidationError");
        assert!(body["details"].get(field).is_some(), "{bad} -> {body}");
    }
    let (status, body) = app
        .put(
            &format!("{base}/{}", eider_shared::id::ObjectId::new()),
            json!({"query_from": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "FilterNotFound");
    let (status, _) = app
        .delete(&format!("{base}/{}", eider_shared::id::ObjectId::new()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get(&format!("{base}/nothex")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .post(
            &format!("/users/{}/filters", eider_shared::id::ObjectId::new()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "UserNotFound");
    // limits.filters
    let (status, _) = app
        .put(&format!("/users/{user}"), json!({"filters": 2}))
        .await;
    assert_eq!(status, StatusCode::OK);
    add_filter(&app, &user, json!({"query_subject": "one"})).await;
    add_filter(&app, &user, json!({})).await;
    let (status, body) = app.post(&base, json!({"query_subject": "three"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "TooMany");
    assert_eq!(body["allowed"], 2);
}

// ---------------------------------------------------------------------------------------------
// Autoreply API

async fn autoreply_is_set_partially_read_with_both_body_names_and_deleted(app: TestApp) {
    let user = new_user(&app, "vacation", json!({})).await;
    let path = format!("/users/{user}/autoreply");
    let (status, empty) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(
        empty,
        json!({"success": true, "status": false, "name": "", "subject": "", "text": "",
               "message": "", "html": "", "start": false, "end": false, "created": false})
    );
    // The spec's example.
    let (status, body) = app
        .put(
            &path,
            json!({"status": true, "subject": "Out of office", "text": "I'm out of office this week",
                   "start": "2017-11-15T00:00:00.000Z", "end": "2017-11-19T00:00:00.000Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert!(body["id"].is_string());
    let (_, got) = app.get(&path).await;
    assert_eq!(got["status"], true);
    assert_eq!(got["subject"], "Out of office");
    assert_eq!(got["message"], "I'm out of office this week");
    assert_eq!(got["text"], "I'm out of office this week");
    assert_eq!(got["start"], "2017-11-15T00:00:00.000Z");
    assert_eq!(got["end"], "2017-11-19T00:00:00.000Z");
    assert_eq!(got["created"].as_str().unwrap().len(), 24, "{got}");
    let (_, profile) = app.get(&format!("/users/{user}")).await;
    assert_eq!(profile["autoreply"], true);
    // Partial: only the subject and the end.
    let (status, _) = app
        .put(
            &path,
            json!({"subject": "Away", "end": false, "html": "<p>Away</p>"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, got) = app.get(&path).await;
    assert_eq!(got["subject"], "Away");
    assert_eq!(got["text"], "I'm out of office this week");
    assert_eq!(got["html"], "<p>Away</p>");
    assert_eq!(got["end"], false);
    assert_eq!(got["status"], true);
    // status false keeps the settings, clears the flag.
    app.put(&path, json!({"status": false})).await;
    let (_, profile) = app.get(&format!("/users/{user}")).await;
    assert_eq!(profile["autoreply"], false);
    app.put(&path, json!({"status": true})).await;
    // Bad input.
    let (status, body) = app
        .put(&path, json!({"start": "next week", "mood": 1}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["details"]["start"].is_string());
    assert!(body["details"]["mood"].is_string());
    // Delete.
    let (status, body) = app.delete(&path).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));
    let (_, got) = app.get(&path).await;
    assert_eq!(got, empty);
    let (_, profile) = app.get(&format!("/users/{user}")).await;
    assert_eq!(profile["autoreply"], false);
    // Unknown users.
    let ghost = format!("/users/{}/autoreply", eider_shared::id::ObjectId::new());
    let (status, body) = app.put(&ghost, json!({"status": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "Unknown user", "code": "UserNotFound", "message": "Unknown user"})
    );
    assert_eq!(app.get(&ghost).await.0, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// LMTP

async fn lmtp_conversation_replies_per_recipient(app: TestApp) {
    let alice = new_user(&app, "alice", json!({"address": "alice@example.com"})).await;
    let bob = new_user(
        &app,
        "bob",
        json!({"address": "bob@example.com", "quota": 100}),
    )
    .await;
    let sink = smtp_sink().await;
    let port = eider_tests::lmtp_client::serve(pipeline(&app, relay(&sink))).await;
    // Bare line feeds, as smtplib sends bytes: the listener stores CRLF lines.
    let raw = "From: Sender <sender@remote.example>\nTo: alice@example.com\nSubject: Hello over LMTP\n\nFirst line\n.hidden line starts with a dot\n";
    let conversation = converse_async(
        port,
        vec![
            (
                "sender@remote.example".into(),
                vec![
                    "alice+news@example.com".into(),
                    "bob@example.com".into(),
                    "nobody@example.com".into(),
                ],
                raw.into(),
            ),
            ("".into(), vec!["ALICE@example.com".into()], raw.into()),
        ],
    )
    .await;
    assert_eq!(conversation.lhlo.0, 250);
    assert!(
        conversation.lhlo.1.contains("PIPELINING"),
        "{:?}",
        conversation.lhlo
    );
    let first = &conversation.messages[0];
    assert_eq!(first.mail.0, 250);
    let codes: Vec<u16> = first.rcpt.iter().map(|r| r.0).collect();
    assert_eq!(codes, [250, 250, 550], "{first:?}");
    assert!(first.rcpt[2].1.contains("Unknown recipient"));
    // One reply per accepted recipient: stored for alice, over quota for bob only.
    let codes: Vec<u16> = first.data.iter().map(|r| r.0).collect();
    assert_eq!(codes, [250, 552], "{first:?}");
    assert!(first.data[0].1.contains("alice+news@example.com"));
    assert!(first.data[1].1.contains("bob@example.com"));
    let second = &conversation.messages[1];
    assert_eq!(second.data.len(), 1);
    assert_eq!(second.data[0].0, 250, "{second:?}");

    let inbox = app.mailbox_id(&alice, "INBOX").await;
    assert_eq!(total(&app, &alice, &inbox).await, 2);
    let source = raw_source(&app, &alice, &inbox, 1).await;
    assert!(
        source.starts_with(
            "Delivered-To: alice+news@example.com\r\nReturn-Path: <sender@remote.example>\r\n"
        ),
        "{source}"
    );
    assert!(
        source.contains("\r\n.hidden line starts with a dot\r\n"),
        "{source}"
    );
    let details = message(&app, &alice, &inbox, 1).await;
    assert_eq!(details["subject"], "Hello over LMTP");
    assert_eq!(details["seen"], false);
    let store = &events(&app, &alice, &inbox, 1).await[0];
    assert_eq!(store["action"], "STORE");
    assert_eq!(store["source"], "LMTP");
    assert_eq!(store["from"], "sender@remote.example");
    assert_eq!(store["to"], json!(["alice+news@example.com"]));
    let store = &events(&app, &alice, &inbox, 2).await[0];
    assert_eq!(store["from"], "");
    // Bob's quota is untouched and his INBOX empty.
    let bob_inbox = app.mailbox_id(&bob, "INBOX").await;
    assert_eq!(total(&app, &bob, &bob_inbox).await, 0);
    let (_, profile) = app.get(&format!("/users/{bob}")).await;
    assert_eq!(profile["limits"]["quota"]["used"], 0);
    // The journal saw both messages appear.
    let (_, journal) = {
        let page = app
            .table()
            .query(&eider_shared::store::Query::table(
                eider_shared::domain::keys::journal_pk(&alice.parse().unwrap()),
            ))
            .await
            .unwrap();
        ((), page.items)
    };
    let exists = journal
        .iter()
        .filter(|i| i.body["command"] == "EXISTS")
        .count();
    assert_eq!(exists, 2);
    assert!(sink.messages().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Filters at delivery

fn with_attachment(subject: &str) -> String {
    format!(
        "From: a@remote.example\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n"
    )
}

async fn every_filter_condition_selects_its_messages(app: TestApp) {
    let carol = new_user(&app, "carol", json!({"address": "carol@example.com"})).await;
    let inbox = app.mailbox_id(&carol, "INBOX").await;
    let folder = new_mailbox(&app, &carol, "Filtered").await;
    let sink = smtp_sink().await;
    let pipeline = pipeline(&app, relay(&sink));
    let big_body = "lorem ipsum ".repeat(300);
    let plain = mail("x@remote.example", "plain", "", "nothing special");
    // (condition, message that matches, its recipient, message that doesn't, its recipient)
    let cases: Vec<(Value, String, &str, String, &str)> = vec![
        (
            json!({"query_from": "BOSS@corp"}),
            mail("Big Boss <boss@corp.example>", "hi", "", "x"),
            "carol@example.com",
            plain.clone(),
            "carol@example.com",
        ),
        (
            json!({"query": {"from": "secretary"}}),
            mail(
                "a@remote.example",
                "hi",
                "Sender: secretary@corp.example\r\n",
                "x",
            ),
            "carol@example.com",
            plain.clone(),
            "carol@example.com",
        ),
        (
            json!({"query_to": "team@corp"}),
            mail(
                "a@remote.example",
                "hi",
                "Cc: Team <team@corp.example>\r\n",
                "x",
            ),
            "carol@example.com",
            plain.clone(),
            "carol@example.com",
        ),
        (
            json!({"query_to": "carol+lists@"}),
            plain.clone(),
            "carol+lists@example.com",
            plain.clone(),
            "carol@example.com",
        ),
        (
            json!({"query_subject": "invoice"}),
            mail("a@remote.example", "Your INVOICE 42", "", "x"),
            "carol@example.com",
            plain.clone(),
            "carol@example.com",
        ),
        (
            json!({"query": {"listId": "Developers <dev.lists.example>"}}),
            mail(
                "a@remote.example",
                "hi",
                "List-Id: Dev <dev.lists.example>\r\n",
                "x",
            ),
            "carol@example.com",
            mail(
                "a@remote.example",
                "hi",
                "List-Id: <other.lists.example>\r\n",
                "x",
            ),
            "carol@example.com",
        ),
        (
            json!({"query_text": "quarterly   REPORT"}),
            mail(
                "a@remote.example",
                "hi",
                "",
                "the quarterly\r\nreport is ready",
            ),
            "carol@example.com",
            plain.clone(),
            "carol@example.com",
        ),
        (
            json!({"query_ha": true}),
            with_attachment("pdf"),
            "carol@example.com",
            plain.clone(),
            "carol@example.com",
        ),
        (
            json!({"query_ha": false}),
            plain.clone(),
            "carol@example.com",
            with_attachment("pdf"),
            "carol@example.com",
        ),
        (
            json!({"query_size": 2000}),
            mail("a@remote.example", "big", "", &big_body),
            "carol@example.com",
            plain.clone(),
            "carol@example.com",
        ),
        (
            json!({"query_size": -2000}),
            plain.clone(),
            "carol@example.com",
            mail("a@remote.example", "big", "", &big_body),
            "carol@example.com",
        ),
        (
            json!({"query_from": "boss", "query_subject": "invoice"}),
            mail("boss@corp.example", "invoice", "", "x"),
            "carol@example.com",
            mail("boss@corp.example", "hello", "", "x"),
            "carol@example.com",
        ),
    ];
    for (condition, yes, yes_to, no, no_to) in cases {
        let mut body = condition.clone();
        body["action_mailbox"] = json!(folder);
        let id = add_filter(&app, &carol, body).await;
        let outcome = deliver(&pipeline, "a@remote.example", yes_to, &yes).await;
        assert_eq!(stored(&outcome).0, folder, "{condition} should match");
        let outcome = deliver(&pipeline, "a@remote.example", no_to, &no).await;
        assert_eq!(stored(&outcome).0, inbox, "{condition} should not match");
        let (status, _) = app.delete(&format!("/users/{carol}/filters/{id}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    // An empty query matches everything.
    add_filter(&app, &carol, json!({"action_mailbox": folder})).await;
    let outcome = deliver(&pipeline, "a@remote.example", "carol@example.com", &plain).await;
    assert_eq!(stored(&outcome).0, folder);
}

async fn every_filter_action_is_applied(app: TestApp) {
    let dan = new_user(&app, "dan", json!({"address": "dan@example.com"})).await;
    let inbox = app.mailbox_id(&dan, "INBOX").await;
    let junk = app.mailbox_id(&dan, "Junk").await;
    let projects = new_mailbox(&app, &dan, "Projects").await;
    let doomed = new_mailbox(&app, &dan, "Doomed").await;
    let sink = smtp_sink().await;
    let pipeline = pipeline(&app, relay(&sink));
    let from = "a@remote.example";
    let to = "dan@example.com";
    add_filter(
        &app,
        &dan,
        json!({"query_subject": "flagme", "action_seen": true, "action_flag": true}),
    )
    .await;
    add_filter(
        &app,
        &dan,
        json!({"query_subject": "spammy", "action_spam": true}),
    )
    .await;
    add_filter(
        &app,
        &dan,
        json!({"query_subject": "dropme", "action_delete": true}),
    )
    .await;
    add_filter(
        &app,
        &dan,
        json!({"query_subject": "project", "action_mailbox": projects}),
    )
    .await;
    add_filter(
        &app,
        &dan,
        json!({"query_subject": "doomed", "action_mailbox": doomed}),
    )
    .await;
    add_filter(
        &app,
        &dan,
        json!({"query_subject": "disabled", "action_delete": true, "disabled": true}),
    )
    .await;
    // Two filters on one message: the first decides seen, the second adds the flag.
    add_filter(
        &app,
        &dan,
        json!({"query_subject": "both", "action_seen": false}),
    )
    .await;
    add_filter(
        &app,
        &dan,
        json!({"query_subject": "both", "action_seen": true, "action_flag": true}),
    )
    .await;
    // Spam and a mailbox in one filter: the mailbox is decided later and wins (WildDuck).
    add_filter(
        &app,
        &dan,
        json!({"query": {"subject": "spamfolder"}, "action": {"spam": true, "mailbox": projects}}),
    )
    .await;

    let (mailbox, uid) =
        stored(&deliver(&pipeline, from, to, &mail(from, "flagme", "", "x")).await);
    assert_eq!(mailbox, inbox);
    let m = message(&app, &dan, &inbox, uid).await;
    assert_eq!(
        (m["seen"].clone(), m["flagged"].clone()),
        (json!(true), json!(true))
    );
    let store = &events(&app, &dan, &inbox, uid).await[0];
    assert_eq!(store["filters"].as_array().unwrap().len(), 1, "{store}");

    let (mailbox, _) = stored(&deliver(&pipeline, from, to, &mail(from, "spammy", "", "x")).await);
    assert_eq!(mailbox, junk);

    let before = total(&app, &dan, &inbox).await;
    let outcome = deliver(&pipeline, from, to, &mail(from, "dropme", "", "x")).await;
    assert!(matches!(outcome, Outcome::Dropped { .. }), "{outcome:?}");
    assert_eq!(total(&app, &dan, &inbox).await, before);

    let (mailbox, _) =
        stored(&deliver(&pipeline, from, to, &mail(from, "project news", "", "x")).await);
    assert_eq!(mailbox, projects);

    let (status, _) = app
        .delete(&format!("/users/{dan}/mailboxes/{doomed}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (mailbox, _) = stored(&deliver(&pipeline, from, to, &mail(from, "doomed", "", "x")).await);
    assert_eq!(
        mailbox, inbox,
        "a vanished filter mailbox falls back to INBOX"
    );

    let (mailbox, _) =
        stored(&deliver(&pipeline, from, to, &mail(from, "disabled", "", "x")).await);
    assert_eq!(mailbox, inbox, "disabled filters don't apply");

    let (mailbox, uid) = stored(&deliver(&pipeline, from, to, &mail(from, "both", "", "x")).await);
    let m = message(&app, &dan, &mailbox, uid).await;
    assert_eq!(
        (m["seen"].clone(), m["flagged"].clone()),
        (json!(false), json!(true))
    );

    let (mailbox, _) =
        stored(&deliver(&pipeline, from, to, &mail(from, "spamfolder", "", "x")).await);
    assert_eq!(mailbox, projects);

    // spamLevel 0: everything is spam.
    let (status, _) = app
        .put(&format!("/users/{dan}"), json!({"spamLevel": 0}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (mailbox, _) = stored(&deliver(&pipeline, from, to, &mail(from, "hello", "", "x")).await);
    assert_eq!(mailbox, junk);
    assert!(sink.messages().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Forwards and target URLs

async fn forwards_and_target_urls_go_out_and_failures_are_recorded(app: TestApp) {
    // Daily counters: the test must run within one UTC day.
    eider_tests::clock::clear_of_utc_midnight(std::time::Duration::from_secs(60)).await;
    let erin = new_user(&app, "erin", json!({"address": "erin@example.com"})).await;
    let inbox = app.mailbox_id(&erin, "INBOX").await;
    let sink = smtp_sink().await;
    let hooks = http_sink().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pipeline = pipeline(&app, relay(&sink));
    add_filter(
        &app,
        &erin,
        json!({"query_subject": "fwd", "action_forward": "elsewhere@remote.example",
               "action_targetUrl": format!("http://127.0.0.1:{}/ok", hooks.port)}),
    )
    .await;
    add_filter(
        &app,
        &erin,
        json!({"query": {"subject": "fwd"},
               "action": {"targets": [format!("http://127.0.0.1:{}/fail", hooks.port),
                                      format!("http://127.0.0.1:{closed}/nobody")]}}),
    )
    .await;
    add_filter(
        &app,
        &erin,
        json!({"query_subject": "junkfwd", "action_spam": true, "action_forward": "never@remote.example"}),
    )
    .await;
    let raw = mail(
        "Sender <sender@remote.example>",
        "fwd this",
        "",
        "forward me",
    );
    let (mailbox, uid) =
        stored(&deliver(&pipeline, "sender@remote.example", "erin@example.com", &raw).await);
    assert_eq!(mailbox, inbox, "failed uploads never lose the message");
    let sent = sink.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].from, "sender@remote.example");
    assert_eq!(sent[0].to, ["elsewhere@remote.example"]);
    assert!(sent[0].data.contains("Subject: fwd this"));
    assert!(
        sent[0]
            .data
            .starts_with("Delivered-To: erin@example.com\r\n")
    );
    let posted = hooks.bodies.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, "message/rfc822");
    assert!(String::from_utf8_lossy(&posted[0].1).contains("forward me"));
    let forwards: Vec<Value> = events(&app, &erin, &inbox, uid)
        .await
        .into_iter()
        .filter(|e| e["action"] == "FORWARD")
        .collect();
    assert_eq!(forwards.len(), 4, "{forwards:?}");
    let failed: Vec<&Value> = forwards
        .iter()
        .filter(|e| e.get("error").is_some())
        .collect();
    assert_eq!(failed.len(), 2, "{forwards:?}");
    assert!(
        failed
            .iter()
            .any(|e| e["error"].as_str().unwrap().contains("500"))
    );

    // Spam is never forwarded.
    let raw = mail("sender@remote.example", "junkfwd", "", "x");
    deliver(&pipeline, "sender@remote.example", "erin@example.com", &raw).await;
    assert_eq!(sink.messages().len(), 1);

    // limits.forwards: 4 were counted today; 5 allowed, so the next 4 are refused.
    let (status, _) = app
        .put(&format!("/users/{erin}"), json!({"forwards": 5}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let raw = mail("sender@remote.example", "fwd again", "", "x");
    let (mailbox, uid) =
        stored(&deliver(&pipeline, "sender@remote.example", "erin@example.com", &raw).await);
    assert_eq!(sink.messages().len(), 1);
    let skipped = events(&app, &erin, &mailbox, uid).await;
    assert!(
        skipped
            .iter()
            .any(|e| e["action"] == "FORWARD"
                && e["skipped"].as_str().unwrap_or("").contains("limit")),
        "{skipped:?}"
    );

    // The user's own targets get every message that is not deleted.
    let fay = new_user(
        &app,
        "fay",
        json!({"address": "fay@example.com", "targets": ["copy@remote.example"]}),
    )
    .await;
    add_filter(
        &app,
        &fay,
        json!({"query_subject": "dropme", "action_delete": true}),
    )
    .await;
    deliver(
        &pipeline,
        "a@remote.example",
        "fay@example.com",
        &mail("a@remote.example", "hello", "", "x"),
    )
    .await;
    deliver(
        &pipeline,
        "a@remote.example",
        "fay@example.com",
        &mail("a@remote.example", "dropme", "", "x"),
    )
    .await;
    let sent = sink.messages();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].to, ["copy@remote.example"]);
    assert!(sent[1].data.contains("Subject: hello"));
}

// ---------------------------------------------------------------------------------------------
// Autoreplies

async fn autoreplies_follow_rfc_3834(app: TestApp) {
    let gus = new_user(
        &app,
        "gus",
        json!({"address": "gus@example.com", "name": "Gus Grant"}),
    )
    .await;
    let other = new_user(
        &app,
        "gusalias",
        json!({"address": "gus.other@example.com"}),
    )
    .await;
    let (status, _) = app
        .post(
            &format!("/users/{gus}/addresses"),
            json!({"address": "gus.alias@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sink = smtp_sink().await;
    let pipeline = pipeline(&app, relay(&sink));
    let inbox = app.mailbox_id(&gus, "INBOX").await;
    let path = format!("/users/{gus}/autoreply");
    let (status, _) = app
        .put(
            &path,
            json!({"status": true, "subject": "Out of office", "text": "Back on Monday",
                           "html": "<p>Back on Monday</p>"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    add_filter(
        &app,
        &gus,
        json!({"query_subject": "spammy", "action_spam": true}),
    )
    .await;
    add_filter(
        &app,
        &gus,
        json!({"query_subject": "dropme", "action_delete": true}),
    )
    .await;
    let to = "gus@example.com";

    let original = "From: Alice <alice@remote.example>\r\nTo: gus@example.com\r\nSubject: Lunch?\r\nMessage-ID: <m1@remote.example>\r\nReferences: <m0@remote.example>\r\n\r\nLunch tomorrow?\r\n";
    let (_, uid) = stored(&deliver(&pipeline, "alice@remote.example", to, original).await);
    let sent = sink.messages();
    assert_eq!(sent.len(), 1);
    let reply = &sent[0];
    assert_eq!(reply.from, "", "autoreplies use the null sender");
    assert_eq!(reply.to, ["alice@remote.example"]);
    for header in [
        "Auto-Submitted: auto-replied",
        "In-Reply-To: <m1@remote.example>",
        "References: <m0@remote.example> <m1@remote.example>",
        "Subject: Auto: Out of office",
        "gus@example.com>",
        "Gus Grant",
        "To: <alice@remote.example>",
    ] {
        assert!(
            reply.data.contains(header),
            "{header} missing in:\n{}",
            reply.data
        );
    }
    assert!(reply.data.contains("Back on Monday"));
    assert!(reply.data.contains("<p>Back on Monday</p>"));
    let recorded = events(&app, &gus, &inbox, uid).await;
    assert!(
        recorded
            .iter()
            .any(|e| e["action"] == "AUTOREPLY" && e["to"] == "alice@remote.example")
    );

    // Once per sender per interval.
    deliver(
        &pipeline,
        "alice@remote.example",
        to,
        &mail("alice@remote.example", "again", "", "x"),
    )
    .await;
    assert_eq!(sink.messages().len(), 1);

    // Never to automated or list mail, the null sender, daemons, or ourselves.
    let quiet: Vec<(&str, String)> = vec![
        (
            "b1@remote.example",
            mail("b1@remote.example", "x", "Precedence: bulk\r\n", "x"),
        ),
        (
            "b2@remote.example",
            mail("b2@remote.example", "x", "Precedence: list\r\n", "x"),
        ),
        (
            "b3@remote.example",
            mail("b3@remote.example", "x", "Precedence: junk\r\n", "x"),
        ),
        (
            "b4@remote.example",
            mail(
                "b4@remote.example",
                "x",
                "List-Id: <l.remote.example>\r\n",
                "x",
            ),
        ),
        (
            "b5@remote.example",
            mail(
                "b5@remote.example",
                "x",
                "List-Unsubscribe: <mailto:u@remote.example>\r\n",
                "x",
            ),
        ),
        (
            "b6@remote.example",
            mail(
                "b6@remote.example",
                "x",
                "Auto-Submitted: auto-generated\r\n",
                "x",
            ),
        ),
        (
            "b7@remote.example",
            mail(
                "b7@remote.example",
                "x",
                "X-Auto-Response-Suppress: OOF\r\n",
                "x",
            ),
        ),
        ("", mail("postmaster@remote.example", "bounce", "", "x")),
        (
            "MAILER-DAEMON@remote.example",
            mail("b8@remote.example", "x", "", "x"),
        ),
        (
            "no-reply@remote.example",
            mail("no-reply@remote.example", "x", "", "x"),
        ),
        ("gus@example.com", mail("gus@example.com", "x", "", "x")),
        (
            "gus.alias@example.com",
            mail("gus.alias@example.com", "x", "", "x"),
        ),
        (
            "b9@remote.example",
            mail("b9@remote.example", "spammy", "", "x"),
        ),
    ];
    for (sender, raw) in &quiet {
        deliver(&pipeline, sender, to, raw).await;
        assert_eq!(sink.messages().len(), 1, "replied to {sender}: {raw}");
    }
    // Another user's address is not "ourselves"; being local, that user gets the reply
    // directly (not through the relay).
    deliver(
        &pipeline,
        "gus.other@example.com",
        to,
        &mail("gus.other@example.com", "hi", "", "x"),
    )
    .await;
    assert_eq!(sink.messages().len(), 1);
    let other_inbox = app.mailbox_id(&other, "INBOX").await;
    let (_, listed) = app
        .get(&format!("/users/{other}/mailboxes/{other_inbox}/messages"))
        .await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["results"][0]["subject"], "Auto: Out of office");

    // Only inside start/end.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    app.put(&path, json!({"start": tomorrow})).await;
    deliver(
        &pipeline,
        "c1@remote.example",
        to,
        &mail("c1@remote.example", "x", "", "x"),
    )
    .await;
    assert_eq!(sink.messages().len(), 1);
    app.put(&path, json!({"start": false, "end": yesterday}))
        .await;
    deliver(
        &pipeline,
        "c2@remote.example",
        to,
        &mail("c2@remote.example", "x", "", "x"),
    )
    .await;
    assert_eq!(sink.messages().len(), 1);
    // Without an own subject: "Auto: Re: <subject>"; a dropped message still gets one.
    app.put(&path, json!({"end": false, "subject": ""})).await;
    let outcome = deliver(
        &pipeline,
        "c3@remote.example",
        to,
        &mail("c3@remote.example", "dropme please", "", "x"),
    )
    .await;
    assert!(matches!(outcome, Outcome::Dropped { .. }));
    let sent = sink.messages();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[1].data.contains("Subject: Auto: Re: dropme please"),
        "{}",
        sent[1].data
    );
    // Status off: nothing.
    app.put(&path, json!({"status": false})).await;
    deliver(
        &pipeline,
        "c4@remote.example",
        to,
        &mail("c4@remote.example", "x", "", "x"),
    )
    .await;
    assert_eq!(sink.messages().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// SES

async fn ses_ingest_delivers_once_per_recipient_even_when_retried(app: TestApp) {
    let user = new_user(&app, "testuser", json!({"address": "testuser@example.com"})).await;
    let dir = format!("{}/../infra/events", env!("CARGO_MANIFEST_DIR"));
    let event_text = std::fs::read_to_string(format!("{dir}/ses-receipt.json")).unwrap();
    let event: aws_lambda_events::event::ses::SimpleEmailEvent =
        serde_json::from_str(&event_text).expect("a valid SES event");
    let message_id = event.records[0].ses.mail.message_id.clone().unwrap();
    let raw = std::fs::read(format!("{dir}/ses-receipt.eml")).unwrap();
    let config = DeliveryConfig::default();
    app.state
        .blobs
        .put(
            &format!("{}{message_id}", config.incoming_prefix),
            raw.clone().into(),
        )
        .await
        .unwrap();
    let outbox = tempfile::tempdir().unwrap();
    let ingest = eider_ingest::Ingest {
        delivery: Delivery::new(
            app.state.clone(),
            Outbound::Outbox(outbox.path().into()),
            config,
        ),
    };
    let first = eider_ingest::handle(&ingest, event.clone()).await.unwrap();
    assert_eq!(first["disposition"], "CONTINUE");
    let results = first["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{first}");
    assert_eq!(results[0]["recipient"], "testuser@example.com");
    assert_eq!(results[0]["result"]["outcome"], "stored", "{first}");
    assert_eq!(results[1]["result"]["outcome"], "refused", "{first}");
    let inbox = app.mailbox_id(&user, "INBOX").await;
    assert_eq!(total(&app, &user, &inbox).await, 1);
    let store = &events(&app, &user, &inbox, 1).await[0];
    assert_eq!(store["source"], "SES");
    assert_eq!(store["from"], "sender@remote.example");
    let source = raw_source(&app, &user, &inbox, 1).await;
    assert!(source.starts_with("Delivered-To: testuser@example.com\r\n"));
    assert!(source.ends_with(&String::from_utf8_lossy(&raw).into_owned()));
    // The incoming object is gone once everyone has a final outcome.
    let incoming = format!("{}{message_id}", DeliveryConfig::default().incoming_prefix);
    assert!(app.state.blobs.get(&incoming).await.unwrap().is_none());
    // A retried invocation delivers nothing twice.
    let again = eider_ingest::handle(&ingest, event.clone()).await.unwrap();
    assert_eq!(again["results"][0]["result"], first["results"][0]["result"]);
    assert_eq!(total(&app, &user, &inbox).await, 1);
    let (_, profile) = app.get(&format!("/users/{user}")).await;
    assert_eq!(
        profile["limits"]["quota"]["used"].as_u64().unwrap() as usize,
        source.len()
    );
    // A message whose object is missing fails (and is retried by Lambda).
    let mut missing = event;
    missing.records[0].ses.mail.message_id = Some("missing-object-0000".into());
    assert!(eider_ingest::handle(&ingest, missing).await.is_err());
}

async fn spam_headers_file_into_junk_and_deliveries_carry_their_envelope(app: TestApp) {
    let user = new_user(
        &app,
        "spamuser",
        json!({"address": "spam.user@example.com"}),
    )
    .await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let junk = app.mailbox_id(&user, "Junk").await;
    let sink = smtp_sink().await;
    let pipeline = pipeline(&app, relay(&sink));
    // An upstream filter's verdict, in rspamd's and SpamAssassin's headers (any case).
    for header in [
        "X-Rspamd-Spam: Yes\r\n",
        "X-Spam-Flag: YES\r\n",
        "x-spam-status: Yes, score=7.3 required=5.0\r\n",
    ] {
        let outcome = deliver(
            &pipeline,
            "spammer@remote.example",
            "spam.user@example.com",
            &mail("spammer@remote.example", "Cheap", header, "buy"),
        )
        .await;
        assert_eq!(stored(&outcome).0, junk, "{header}");
    }
    for header in [
        "X-Spam-Status: No, score=0.1\r\n",
        "X-Rspamd-Spam: no\r\n",
        "",
    ] {
        let outcome = deliver(
            &pipeline,
            "friend@remote.example",
            "spam.user@example.com",
            &mail("friend@remote.example", "Hello", header, "hi"),
        )
        .await;
        assert_eq!(stored(&outcome).0, inbox, "{header:?}");
    }
    // The envelope of a delivery is in the message details, as WildDuck shows it.
    let outcome = deliver(
        &pipeline,
        "Bounce@Remote.example",
        "Spam.User+news@example.com",
        &mail("friend@remote.example", "Enveloped", "", "hi"),
    )
    .await;
    let (mailbox, uid) = stored(&outcome);
    let details = message(&app, &user, &mailbox, uid).await;
    assert_eq!(
        details["envelope"]["from"], "Bounce@Remote.example",
        "{details}"
    );
    assert_eq!(
        details["envelope"]["rcpt"][0]["formatted"], "spamuser@example.com",
        "{details}"
    );

    // The headers are configurable; a user who takes all spam into INBOX gets it there.
    let custom = Delivery::new(
        app.state.clone(),
        relay(&sink),
        DeliveryConfig {
            spam_headers: vec!["X-Our-Filter".into()],
            ..DeliveryConfig::default()
        },
    );
    let outcome = deliver(
        &custom,
        "spammer@remote.example",
        "spam.user@example.com",
        &mail(
            "spammer@remote.example",
            "Custom",
            "X-Our-Filter: yes\r\nX-Rspamd-Spam: Yes\r\n",
            "x",
        ),
    )
    .await;
    assert_eq!(stored(&outcome).0, junk);
    let outcome = deliver(
        &custom,
        "spammer@remote.example",
        "spam.user@example.com",
        &mail(
            "spammer@remote.example",
            "Not ours",
            "X-Rspamd-Spam: Yes\r\n",
            "x",
        ),
    )
    .await;
    assert_eq!(stored(&outcome).0, inbox);
    app.put(&format!("/users/{user}"), json!({"spamLevel": 100}))
        .await;
    let outcome = deliver(
        &pipeline,
        "spammer@remote.example",
        "spam.user@example.com",
        &mail(
            "spammer@remote.example",
            "Let in",
            "X-Rspamd-Spam: Yes\r\n",
            "x",
        ),
    )
    .await;
    assert_eq!(stored(&outcome).0, inbox);
}

async fn an_autoreply_to_a_local_sender_is_delivered_directly(app: TestApp) {
    let away = new_user(&app, "away", json!({"address": "away@example.com"})).await;
    let asker = new_user(&app, "asker", json!({"address": "asker@example.com"})).await;
    app.put(
        &format!("/users/{away}/autoreply"),
        json!({"status": true, "subject": "Away", "text": "Back Monday"}),
    )
    .await;
    // The asker is away too: an autoreply must not answer an autoreply.
    app.put(
        &format!("/users/{asker}/autoreply"),
        json!({"status": true, "subject": "Also away", "text": "Later"}),
    )
    .await;
    let sink = smtp_sink().await;
    let pipeline = pipeline(&app, relay(&sink));
    let outcome = deliver(
        &pipeline,
        "asker@example.com",
        "away@example.com",
        &mail("asker@example.com", "Question", "", "Are you there?"),
    )
    .await;
    stored(&outcome);
    let inbox = app.mailbox_id(&asker, "INBOX").await;
    assert_eq!(
        total(&app, &asker, &inbox).await,
        1,
        "the reply arrived directly"
    );
    let reply = message(&app, &asker, &inbox, 1).await;
    assert_eq!(reply["subject"], "Auto: Away");
    let away_inbox = app.mailbox_id(&away, "INBOX").await;
    assert_eq!(
        total(&app, &away, &away_inbox).await,
        1,
        "no reply to the reply"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sink.messages().is_empty(), "nothing went out");
}
