//! Audits (`/audit`): a window of a user's mail kept whatever the user does, exported as mbox,
//! removed when the audit expires. On both backends, the janitor run with a `now` in the future.

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use eider_shared::domain::audit;
use eider_shared::domain::janitor::{self, Budget};
use eider_tests::app::{TestApp, download, ok};
use eider_tests::on_both_backends;
use serde_json::json;

on_both_backends!(
    an_audit_keeps_its_window_and_exports_it_as_mbox,
    audit_requests_are_validated,
);

fn mail(subject: &str, body: &str) -> String {
    format!(
        "From: Ann <ann@example.org>\r\nTo: aud@example.com\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    )
}

async fn an_audit_keeps_its_window_and_exports_it_as_mbox(app: TestApp) {
    let user = app
        .create_user(json!({"username": "aud", "password": "pw", "address": "aud@example.com"}))
        .await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let sent = app.mailbox_id(&user, "Sent Mail").await;
    let now = Utc::now();
    let old = mail("Too old", "before the window");
    app.upload_ok(
        &user,
        &inbox,
        &old,
        json!({"date": (now - Duration::days(30)).to_rfc3339()}),
    )
    .await;
    let first = mail("First", "From the start\r\n>From quoted");
    let first_uid = app
        .upload_ok(
            &user,
            &inbox,
            &first,
            json!({"date": (now - Duration::days(2)).to_rfc3339()}),
        )
        .await;
    let second = mail("Second", "in Sent");
    app.upload_ok(
        &user,
        &sent,
        &second,
        json!({"date": (now - Duration::days(1)).to_rfc3339(), "draft": true}),
    )
    .await;

    let expires = now + Duration::days(7);
    let created = ok(
        &app,
        "POST",
        "/audit",
        Some(json!({
            "user": user,
            "start": (now - Duration::days(3)).to_rfc3339(),
            "end": (now + Duration::days(1)).to_rfc3339(),
            "expires": expires.to_rfc3339(),
            "notes": "case 42",
            "meta": "{\"case\": 42}",
        })),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let queued = ok(&app, "GET", &format!("/audit/{id}"), None).await;
    assert_eq!(queued["import"]["status"], "queued");
    assert_eq!(queued["user"], user.as_str());
    assert_eq!(queued["notes"], "case 42");
    assert_eq!(queued["meta"], json!({"case": 42}));
    assert_eq!(queued["deleted"], false);

    // The user's changes after the audit began change nothing in it.
    let (status, _) = app
        .delete(&format!(
            "/users/{user}/mailboxes/{inbox}/messages/{first_uid}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    janitor::run(&app.state, Utc::now(), Budget::items(1_000_000))
        .await
        .unwrap();
    let copied = ok(&app, "GET", &format!("/audit/{id}"), None).await;
    assert_eq!(
        copied["import"],
        json!({"status": "imported", "failed": 0, "copied": 2}),
        "{copied}"
    );
    assert_eq!(copied["audited"], 2);
    // A message stored while the window is open is kept as it arrives.
    let third = mail("Third", "arrived during the audit");
    app.upload_ok(&user, &inbox, &third, json!({})).await;
    let live = ok(&app, "GET", &format!("/audit/{id}"), None).await;
    assert_eq!(live["audited"], 3);
    assert!(live["lastAuditedMessage"].is_string());

    let mbox = String::from_utf8(export(&app, &id).await).unwrap();
    let separators: Vec<&str> = mbox.lines().filter(|l| l.starts_with("From ")).collect();
    assert_eq!(separators.len(), 3, "{mbox}");
    assert!(
        separators
            .iter()
            .all(|l| l.starts_with("From ann@example.org ")),
        "{separators:?}"
    );
    assert!(!mbox.contains("Too old"));
    assert!(!mbox.contains('\r'));
    // Oldest first; each copy is the message as stored, lines in LF, `From ` lines quoted.
    let expected_first = "X-Export-Mailbox: INBOX\nFrom: Ann <ann@example.org>\nTo: aud@example.com\nSubject: First\n\n>From the start\n>>From quoted\n\n";
    let at = mbox
        .find(expected_first)
        .unwrap_or_else(|| panic!("{mbox}"));
    assert!(at < mbox.find("Subject: Second").unwrap());
    assert!(mbox.contains("X-Export-Mailbox: Sent Mail\nX-Export-Draft: Yes\nFrom: Ann"));
    assert!(mbox.find("Subject: Second").unwrap() < mbox.find("Subject: Third").unwrap());

    let audit_id = id.parse().unwrap();
    let (entries, _) = audit::entries(&app.state, &audit_id, None).await.unwrap();
    assert_eq!(entries.len(), 3);

    // Expired: the copies go, the record stays, marked deleted.
    let after = expires + Duration::minutes(1);
    janitor::run(&app.state, after, Budget::items(1_000_000))
        .await
        .unwrap();
    let gone = ok(&app, "GET", &format!("/audit/{id}"), None).await;
    assert_eq!(gone["deleted"], true, "{gone}");
    assert!(gone["deletedTime"].is_string());
    assert!(export(&app, &id).await.is_empty());
    for entry in &entries {
        assert!(
            app.state.blobs.get(&entry.blob).await.unwrap().is_none(),
            "{}",
            entry.blob
        );
    }
    let (left, _) = audit::entries(&app.state, &audit_id, None).await.unwrap();
    assert!(left.is_empty());
    // Nothing is kept any more.
    app.upload_ok(&user, &inbox, &mail("Fourth", "after"), json!({}))
        .await;
    assert_eq!(
        ok(&app, "GET", &format!("/audit/{id}"), None).await["audited"],
        3
    );
}

/// The export's bytes: streamed, or behind the redirect to a presigned link (S3).
async fn export(app: &TestApp, id: &str) -> Vec<u8> {
    let request = http::Request::get(format!("/audit/{id}/export.mbox"))
        .body(axum::body::Body::empty())
        .unwrap();
    let (headers, body) = download(app, request).await;
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=export.mbox"
    );
    body
}

async fn audit_requests_are_validated(app: TestApp) {
    let user = app
        .create_user(json!({"username": "v", "password": "pw"}))
        .await;
    let future = (Utc::now() + Duration::days(1)).to_rfc3339();
    for (body, field) in [
        (json!({"expires": future}), "user"),
        (json!({"user": user}), "expires"),
        (json!({"user": "nope", "expires": future}), "user"),
        (json!({"user": user, "expires": "soon"}), "expires"),
        (
            json!({"user": user, "expires": future, "meta": "[1]"}),
            "meta",
        ),
        (
            json!({"user": user, "expires": future, "other": 1}),
            "other",
        ),
        (
            json!({"user": user, "expires": (Utc::now() - Duration::days(1)).to_rfc3339()}),
            "expires",
        ),
    ] {
        let (status, answer) = app.post("/audit", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["details"].get(field).is_some(), "{body}: {answer}");
    }
    let (status, answer) = app
        .post(
            "/audit",
            json!({"user": "5f0c0ffee0000000000beef0", "expires": future}),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("UserNotFound"))
    );
    let (status, answer) = app.get("/audit/5f0c0ffee0000000000beef0").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("AuditNotFoundError"))
    );
    let (status, _) = app.get("/audit/5f0c0ffee0000000000beef0/export.mbox").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/audit/xyz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
