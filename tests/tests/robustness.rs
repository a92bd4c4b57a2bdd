//! What used to drift, panic or answer outside the error format: concurrent flag changes and
//! the unseen counter, huge retentions, multi-byte attachment ids, messages whose metadata is
//! larger than an item, quota after folder deletes and restores, and limits answered as JSON.
//! Every test runs on the embedded store and on DynamoDB + S3 served by moto.

use std::time::Duration;

use axum::body::Body;
use chrono::Utc;
use eider_shared::domain::janitor::{self, Budget};
use eider_tests::app::TestApp;
use http::{Request, StatusCode};
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    parallel_flag_changes_keep_the_unseen_counter_exact,
    parallel_moves_and_deletes_keep_counters_and_quota_exact,
    huge_retentions_mean_no_expiry_instead_of_a_panic,
    odd_attachment_ids_are_refused_not_panicked_on,
    messages_with_huge_metadata_are_stored_with_it_cut,
    quota_stays_exact_after_folder_deletes_resets_and_restores,
    limits_are_answered_as_json,
);

async fn user(app: &TestApp, name: &str) -> String {
    app.create_user(json!({"username": name, "password": "pw"}))
        .await
}

async fn recount(app: &TestApp, user: &str, mailbox: &str) -> (u64, u64) {
    let (_, list) = app
        .get(&format!(
            "/users/{user}/mailboxes/{mailbox}/messages?limit=250"
        ))
        .await;
    let results = list["results"].as_array().unwrap();
    let unseen = results.iter().filter(|m| m["seen"] == false).count();
    (results.len() as u64, unseen as u64)
}

async fn parallel_flag_changes_keep_the_unseen_counter_exact(app: TestApp) {
    let user = user(&app, "flags").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    for i in 0..30 {
        let raw = format!("From: a@example.com\r\nSubject: m{i}\r\n\r\nbody\r\n");
        app.upload_ok(&user, &inbox, &raw, json!({"unseen": true}))
            .await;
    }
    // The same message marked seen 20 times at once, through both ways of doing it.
    let message = format!("/users/{user}/mailboxes/{inbox}/messages/1");
    let answers = futures::future::join_all((0..20).map(|i| {
        let (app, message) = (&app, message.clone());
        async move {
            if i % 2 == 0 {
                app.put(&message, json!({"seen": true})).await.0
            } else {
                app.get(&format!("{message}?markAsSeen=true")).await.0
            }
        }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == StatusCode::OK), "{answers:?}");
    assert_eq!(app.counters(&user, &inbox).await, (30, 29));

    // Many messages flipped both ways at once.
    let answers = futures::future::join_all((0..40).map(|i| {
        let app = &app;
        let path = format!("/users/{user}/mailboxes/{inbox}/messages/{}", 1 + (i % 10));
        async move { app.put(&path, json!({ "seen": i % 3 == 0 })).await.0 }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == StatusCode::OK), "{answers:?}");
    let counters = app.counters(&user, &inbox).await;
    assert_eq!(counters, recount(&app, &user, &inbox).await);
}

async fn parallel_moves_and_deletes_keep_counters_and_quota_exact(app: TestApp) {
    let user = user(&app, "movers").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let trash = app.mailbox_id(&user, "Trash").await;
    for i in 0..20 {
        let raw = format!("From: a@example.com\r\nSubject: m{i}\r\n\r\nbody {i}\r\n");
        app.upload_ok(&user, &inbox, &raw, json!({"unseen": i % 2 == 0}))
            .await;
    }
    // Flag changes, moves and deletes of the same messages, all at once.
    futures::future::join_all((0..60).map(|i| {
        let app = &app;
        let uid = 1 + (i % 20);
        let (user, inbox, trash) = (&user, &inbox, &trash);
        async move {
            let path = format!("/users/{user}/mailboxes/{inbox}/messages/{uid}");
            match i % 3 {
                0 => app.put(&path, json!({"seen": i % 2 == 0})).await.0,
                1 => app.put(&path, json!({ "moveTo": trash })).await.0,
                _ => app.delete(&path).await.0,
            }
        }
    }))
    .await;
    for mailbox in [&inbox, &trash] {
        assert_eq!(
            app.counters(&user, mailbox).await,
            recount(&app, &user, mailbox).await
        );
    }
    let used = app.storage_used(&user).await;
    let (_, reset) = app
        .post(&format!("/users/{user}/quota/reset"), json!({}))
        .await;
    assert_eq!(reset["storageUsed"].as_u64(), Some(used), "{reset}");
}

async fn huge_retentions_mean_no_expiry_instead_of_a_panic(app: TestApp) {
    let user = user(&app, "forever").await;
    for retention in [9_000_000_000_000_000u64, i64::MAX as u64] {
        let (status, body) = app
            .post(
                &format!("/users/{user}/mailboxes"),
                json!({"path": format!("Keep {retention}"), "retention": retention}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mailbox = body["id"].as_str().unwrap().to_string();
        let uid = app
            .upload_ok(&user, &mailbox, "Subject: kept\r\n\r\nx\r\n", json!({}))
            .await;
        let (status, details) = app
            .get(&format!("/users/{user}/mailboxes/{mailbox}/messages/{uid}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{details}");
        assert!(details.get("expires").is_none(), "{details}");
        // Moves and restores into it work too.
        let inbox = app.mailbox_id(&user, "INBOX").await;
        let other = app
            .upload_ok(&user, &inbox, "Subject: moved\r\n\r\nx\r\n", json!({}))
            .await;
        let (status, body) = app
            .put(
                &format!("/users/{user}/mailboxes/{inbox}/messages/{other}"),
                json!({ "moveTo": mailbox }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = app
        .put(
            &format!("/users/{user}"),
            json!({"retention": 9_000_000_000_000_000u64}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn odd_attachment_ids_are_refused_not_panicked_on(app: TestApp) {
    let user = user(&app, "attach").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let uid = app
        .upload_ok(&user, &inbox, "Subject: x\r\n\r\nx\r\n", json!({}))
        .await;
    for id in [
        "%F0%9F%98%80",
        "ATT%F0%9F%98%80",
        "AT%C3%A9",
        "ATT",
        "%E2%82%AC12",
    ] {
        let (status, body) = app
            .get(&format!(
                "/users/{user}/mailboxes/{inbox}/messages/{uid}/attachments/{id}"
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{id}: {body}");
    }
}

async fn messages_with_huge_metadata_are_stored_with_it_cut(app: TestApp) {
    let user = user(&app, "parts").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let mut raw = String::from(
        "From: a@example.com\r\nSubject: many parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n",
    );
    for i in 0..600 {
        let name = format!("{i:04}-{}.txt", "n".repeat(400));
        raw.push_str(&format!(
            "--B\r\nContent-Type: text/plain; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\npart {i}\r\n"
        ));
    }
    raw.push_str("--B--\r\n");
    assert!(raw.len() > 500_000);
    let uid = app.upload_ok(&user, &inbox, &raw, json!({})).await;
    let (status, details) = app
        .get(&format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let attachments = details["attachments"].as_array().unwrap();
    assert!(!attachments.is_empty() && attachments.len() < 600);
    assert!(
        attachments
            .iter()
            .all(|a| a["filename"].as_str().unwrap().chars().count() <= 255)
    );
    // The source is stored whole.
    let request = Request::get(format!(
        "/users/{user}/mailboxes/{inbox}/messages/{uid}/message.eml"
    ))
    .body(Body::empty())
    .unwrap();
    let (_, _, bytes) = app.send_raw(request).await;
    assert_eq!(bytes.len(), raw.len());
}

async fn quota_stays_exact_after_folder_deletes_resets_and_restores(app: TestApp) {
    let user = user(&app, "quota").await;
    let (_, created) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "Big"}))
        .await;
    let big = created["id"].as_str().unwrap().to_string();
    let inbox = app.mailbox_id(&user, "INBOX").await;
    for i in 0..8 {
        let raw = format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(1000));
        app.upload_ok(&user, &big, &raw, json!({})).await;
    }
    let kept = app
        .upload_ok(&user, &inbox, "Subject: kept\r\n\r\nkept\r\n", json!({}))
        .await;
    assert!(kept > 0);
    let (status, _) = app.delete(&format!("/users/{user}/mailboxes/{big}")).await;
    assert_eq!(status, StatusCode::OK);
    let after_delete = app.storage_used(&user).await;
    // A recount now, then whatever the janitor still drains: nothing below the truth.
    let (_, reset) = app
        .post(&format!("/users/{user}/quota/reset"), json!({}))
        .await;
    assert_eq!(reset["storageUsed"].as_u64(), Some(after_delete), "{reset}");
    janitor::run(
        &app.state,
        Utc::now() + chrono::Duration::minutes(10),
        Budget::items(100_000),
    )
    .await
    .unwrap();
    assert_eq!(app.storage_used(&user).await, after_delete);

    // A restore that does not fit into the quota is refused and changes nothing.
    let (_, archived) = app.get(&format!("/users/{user}/archived/messages")).await;
    let id = archived["results"][0]["id"].as_str().unwrap().to_string();
    app.put(
        &format!("/users/{user}"),
        json!({"quota": after_delete + 10}),
    )
    .await;
    let (status, body) = app
        .post(
            &format!("/users/{user}/archived/messages/{id}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("OverQuotaError")),
        "{body}"
    );
    assert_eq!(app.storage_used(&user).await, after_delete);
    app.put(&format!("/users/{user}"), json!({"quota": 1_000_000}))
        .await;
    let (status, _) = app
        .post(
            &format!("/users/{user}/archived/messages/{id}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, reset) = app
        .post(&format!("/users/{user}/quota/reset"), json!({}))
        .await;
    assert_eq!(
        reset["storageUsed"].as_u64(),
        Some(app.storage_used(&user).await)
    );
}

async fn limits_are_answered_as_json(app: TestApp) {
    let user = user(&app, "limits").await;
    let check = |status: StatusCode, body: &Value, expected: StatusCode| {
        assert_eq!(status, expected, "{body}");
        assert!(
            body["error"].is_string() && body["code"].is_string(),
            "{body}"
        );
    };
    // A body over the limit, on a route that reads raw bytes.
    let small = TestApp::new(app.backend, {
        let mut c = eider_tests::app::test_config();
        c.body_limit = 1024;
        c
    });
    let (_, upload) = small
        .post(&format!("/users/{user}/uploads"), json!({}))
        .await;
    let id = upload["id"].as_str().unwrap_or("000000000000000000000000");
    let request = Request::put(format!("/users/{user}/uploads/{id}"))
        .header("content-type", "message/rfc822")
        .body(Body::from(vec![b'x'; 4096]))
        .unwrap();
    let (status, body) = small.send(request).await;
    check(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    // A URI and a header too large to be real.
    let (status, body) = small
        .get(&format!("/users/{user}?x={}", "a".repeat(20_000)))
        .await;
    check(status, &body, StatusCode::URI_TOO_LONG);
    let request = Request::get(format!("/users/{user}"))
        .header("x-filler", "b".repeat(70_000))
        .body(Body::empty())
        .unwrap();
    let (status, body) = small.send(request).await;
    check(status, &body, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    tokio::time::sleep(Duration::from_millis(1)).await;
}
