//! The mail store through its endpoints: mailboxes, message upload, listing, details, flags,
//! moves, deletion into the archive, restore, quota, search and the journal. Every test runs
//! on the embedded store and on DynamoDB + S3 served by moto.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use eider_shared::domain::keys;
use eider_shared::id::ObjectId;
use eider_shared::store::Query;
use eider_tests::app::{TestApp, test_config};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    default_mailboxes_are_listed_with_exact_counters,
    mailboxes_are_created_renamed_with_children_and_deleted,
    mailbox_rules_refuse_bad_paths_and_special_folders,
    uploaded_message_is_listed_detailed_and_served_byte_exact,
    raw_rfc822_body_upload_and_malformed_mime_are_stored_as_received,
    flags_change_counters_and_the_flagged_listing,
    moving_gives_new_uids_and_keeps_counters_exact,
    deleting_archives_and_restore_gets_a_new_uid,
    restore_goes_to_inbox_when_the_mailbox_is_gone,
    over_quota_upload_is_refused_and_changes_nothing,
    quota_reset_recounts_storage,
    search_finds_words_and_skips_trash_and_junk,
    every_change_is_journaled,
    idempotency_key_stores_a_message_once,
    parallel_uploads_get_distinct_increasing_uids_and_exact_counters,
    a_failed_metadata_write_leaves_no_message_and_no_quota_drift,
    other_users_mailboxes_and_messages_are_unreachable,
    large_messages_use_staged_uploads_and_stream_or_redirect,
    large_bodies_are_spooled_and_stored_byte_exact,
    encrypted_users_get_pgp_mime_and_messages_still_list,
);

const SIMPLE: &str = "From: Sender Name <sender@example.com>\r\nTo: Test User <testuser@example.com>\r\nSubject: =?UTF-8?B?SMOkbGxv?= world\r\nMessage-ID: <abc@example.com>\r\nDate: Wed, 02 Nov 2011 19:19:08 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there, this is the quarterly report.\r\n";

fn with_attachment() -> String {
    let png = STANDARD.encode(b"\x89PNG\r\n\x1a\nfake image bytes");
    format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: With file\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See <b>attached</b></p>\r\n--XX\r\nContent-Type: image/png; name=\"dot.png\"\r\nContent-Disposition: attachment; filename=\"dot.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{png}\r\n--XX--\r\n"
    )
}

async fn new_user(app: &TestApp, name: &str) -> String {
    app.create_user(json!({"username": name, "password": "pw"}))
        .await
}

async fn uids(app: &TestApp, user: &str, mailbox: &str) -> Vec<u64> {
    let (_, list) = app
        .get(&format!(
            "/users/{user}/mailboxes/{mailbox}/messages?limit=250&order=asc"
        ))
        .await;
    list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

async fn default_mailboxes_are_listed_with_exact_counters(app: TestApp) {
    let user = new_user(&app, "boxes").await;
    let (status, list) = app.get(&format!("/users/{user}/mailboxes")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let paths: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["INBOX", "Archive", "Drafts", "Junk", "Sent Mail", "Trash"]
    );
    assert_eq!(list["results"][0]["specialUse"], Value::Null);
    assert_eq!(list["results"][0]["name"], "INBOX");
    assert!(list["results"][0].get("total").is_none());
    let inbox = app.mailbox_id(&user, "INBOX").await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({"unseen": true}))
        .await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    let (_, list) = app
        .get(&format!("/users/{user}/mailboxes?counters=true"))
        .await;
    assert_eq!(list["results"][0]["total"], 2);
    assert_eq!(list["results"][0]["unseen"], 1);
    assert_eq!(list["mailboxes"], list["results"]);
    assert_eq!(app.counters(&user, &inbox).await, (2, 1));
}

async fn mailboxes_are_created_renamed_with_children_and_deleted(app: TestApp) {
    let user = new_user(&app, "folders").await;
    let (status, created) = app
        .post(
            &format!("/users/{user}/mailboxes"),
            json!({"path": "Some parent/Subfolder/My New mailbox"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let deep = created["id"].as_str().unwrap().to_string();
    let (_, parent) = app
        .post(
            &format!("/users/{user}/mailboxes"),
            json!({"path": "Some parent", "retention": 86400000}),
        )
        .await;
    let parent = parent["id"].as_str().unwrap().to_string();
    let (status, body) = app
        .post(
            &format!("/users/{user}/mailboxes"),
            json!({"path": "Some parent"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "MailboxExistsError");
    let (status, _) = app
        .post(
            &format!("/users/{user}/mailboxes"),
            json!({"path": "Ünïcödé/日本語"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Rename the parent: the child follows.
    let (status, body) = app
        .put(
            &format!("/users/{user}/mailboxes/{parent}"),
            json!({"path": "Renamed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, one) = app.get(&format!("/users/{user}/mailboxes/{deep}")).await;
    assert_eq!(one["path"], "Renamed/Subfolder/My New mailbox");
    assert_eq!(one["name"], "My New mailbox");
    let (_, one) = app.get(&format!("/users/{user}/mailboxes/{parent}")).await;
    assert_eq!(one["path"], "Renamed");
    assert_eq!(one["retention"], 86400000);
    // The old path is free again; resolve by path works.
    let (status, _) = app
        .post(
            &format!("/users/{user}/mailboxes"),
            json!({"path": "Some parent"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, resolved) = app
        .get(&format!(
            "/users/{user}/mailboxes/resolve?path=Renamed/Subfolder/My%20New%20mailbox"
        ))
        .await;
    assert_eq!(resolved["id"], deep);
    // Delete a folder holding a message: the message goes to the archive.
    app.upload_ok(&user, &deep, SIMPLE, json!({})).await;
    let used = app.storage_used(&user).await;
    assert!(used > 0);
    let (status, body) = app.delete(&format!("/users/{user}/mailboxes/{deep}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.get(&format!("/users/{user}/mailboxes/{deep}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, archived) = app.get(&format!("/users/{user}/archived")).await;
    assert_eq!(archived["total"], 1);
    assert_eq!(app.storage_used(&user).await, 0);
}

async fn mailbox_rules_refuse_bad_paths_and_special_folders(app: TestApp) {
    let user = new_user(&app, "rules").await;
    for path in ["a//b", "trailing//", ""] {
        let (status, body) = app
            .post(&format!("/users/{user}/mailboxes"), json!({"path": path}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }
    let (status, _) = app
        .post(
            &format!("/users/{user}/mailboxes"),
            json!({"path": "x", "retention": -1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let trash = app.mailbox_id(&user, "Trash").await;
    let (status, body) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}"),
            json!({"path": "Other"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "DisallowedMailboxMethod");
    for id in [&inbox, &trash] {
        let (status, body) = app.delete(&format!("/users/{user}/mailboxes/{id}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "DisallowedMailboxMethod");
    }
    let (status, body) = app
        .put(&format!("/users/{user}/mailboxes/{trash}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .get(&format!("/users/{user}/mailboxes/{}", ObjectId::new()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "NoSuchMailbox");
}

async fn uploaded_message_is_listed_detailed_and_served_byte_exact(app: TestApp) {
    let user = new_user(&app, "reader").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let raw = with_attachment();
    let (status, body) = app
        .upload(
            &user,
            &inbox,
            &raw,
            json!({"unseen": true, "flagged": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"]["id"], 1);
    assert_eq!(body["message"]["mailbox"], inbox);
    assert_eq!(body["message"]["size"], raw.len());
    let simple = app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    assert_eq!(simple, 2);

    let (status, list) = app
        .get(&format!("/users/{user}/mailboxes/{inbox}/messages"))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2);
    assert_eq!(list["specialUse"], Value::Null);
    let newest = &list["results"][0];
    assert_eq!(newest["id"], 2);
    assert_eq!(newest["subject"], "Hällo world");
    assert_eq!(
        newest["from"],
        json!({"name": "Sender Name", "address": "sender@example.com"})
    );
    assert_eq!(newest["date"], "2011-11-02T19:19:08.000Z");
    assert!(newest["intro"].as_str().unwrap().starts_with("Hello there"));
    assert_eq!(newest["seen"], true);
    assert_eq!(newest["attachments"], false);
    assert_eq!(list["results"][1]["attachments"], true);
    assert_eq!(list["results"][1]["seen"], false);
    assert_eq!(list["results"][1]["flagged"], true);

    let (status, details) = app
        .get(&format!("/users/{user}/mailboxes/{inbox}/messages/1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{details}");
    assert_eq!(details["subject"], "With file");
    assert!(
        details["html"][0]
            .as_str()
            .unwrap()
            .contains("<b>attached</b>")
    );
    assert_eq!(details["attachments"][0]["id"], "ATT00001");
    assert_eq!(details["attachments"][0]["filename"], "dot.png");
    assert_eq!(details["attachments"][0]["contentType"], "image/png");

    let request = http::Request::get(format!(
        "/users/{user}/mailboxes/{inbox}/messages/1/message.eml"
    ))
    .body(Body::empty())
    .unwrap();
    let (status, headers, bytes) = app.send_raw(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "message/rfc822");
    assert_eq!(bytes.as_ref(), raw.as_bytes());
    let request = http::Request::get(format!(
        "/users/{user}/mailboxes/{inbox}/messages/1/attachments/att00001"
    ))
    .body(Body::empty())
    .unwrap();
    let (status, headers, bytes) = app.send_raw(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/png");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("dot.png")
    );
    assert_eq!(bytes.as_ref(), b"\x89PNG\r\n\x1a\nfake image bytes");
    let (status, body) = app
        .get(&format!(
            "/users/{user}/mailboxes/{inbox}/messages/1/attachments/ATT00009"
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "AttachmentNotFound");

    // markAsSeen changes the flag and the counter.
    assert_eq!(app.counters(&user, &inbox).await, (2, 1));
    let (_, details) = app
        .get(&format!(
            "/users/{user}/mailboxes/{inbox}/messages/1?markAsSeen=true"
        ))
        .await;
    assert_eq!(details["seen"], true);
    assert_eq!(app.counters(&user, &inbox).await, (2, 0));
    let (_, events) = app
        .get(&format!(
            "/users/{user}/mailboxes/{inbox}/messages/1/events"
        ))
        .await;
    assert_eq!(events["events"][0]["action"], "STORE");
    assert_eq!(
        app.storage_used(&user).await,
        (raw.len() + SIMPLE.len()) as u64
    );
}

async fn raw_rfc822_body_upload_and_malformed_mime_are_stored_as_received(app: TestApp) {
    let user = new_user(&app, "rawbody").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let garbage: &[u8] = b"Content-Type: multipart/mixed; boundary=\"nope\"\r\nSubject: broken\r\n\r\n--nope\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64\xff\xfe\r\n";
    let request = http::Request::post(format!(
        "/users/{user}/mailboxes/{inbox}/messages?unseen=true"
    ))
    .header("content-type", "message/rfc822")
    .body(Body::from(garbage.to_vec()))
    .unwrap();
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uid = body["message"]["id"].as_u64().unwrap();
    let (_, list) = app
        .get(&format!("/users/{user}/mailboxes/{inbox}/messages"))
        .await;
    assert_eq!(list["results"][0]["subject"], "broken");
    assert_eq!(list["results"][0]["seen"], false);
    let request = http::Request::get(format!(
        "/users/{user}/mailboxes/{inbox}/messages/{uid}/message.eml"
    ))
    .body(Body::empty())
    .unwrap();
    let (_, _, bytes) = app.send_raw(request).await;
    assert_eq!(bytes.as_ref(), garbage);
    let (status, _) = app
        .get(&format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        json!({}),
        json!({"raw": ""}),
        json!({"raw": "eA==", "flagged": "maybe"}),
        json!({"raw": "eA==", "foo": 1}),
    ] {
        let (status, body) = app
            .post(
                &format!("/users/{user}/mailboxes/{inbox}/messages"),
                bad.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(app.counters(&user, &inbox).await, (1, 1));
}

async fn flags_change_counters_and_the_flagged_listing(app: TestApp) {
    let user = new_user(&app, "flags").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let trash = app.mailbox_id(&user, "Trash").await;
    for _ in 0..3 {
        app.upload_ok(&user, &inbox, SIMPLE, json!({"unseen": true}))
            .await;
    }
    app.upload_ok(&user, &trash, SIMPLE, json!({"flagged": true}))
        .await;
    let (status, body) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/1:2"),
            json!({"seen": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["updated"], 2);
    assert_eq!(app.counters(&user, &inbox).await, (3, 1));
    let (status, _) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/1,3"),
            json!({"flagged": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, flagged) = app.get(&format!("/users/{user}/flagged")).await;
    assert_eq!(flagged["total"], 2, "{flagged}");
    let ids: Vec<u64> = flagged["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 1]);
    let (status, _) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/3"),
            json!({"flagged": false, "deleted": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, flagged) = app.get(&format!("/users/{user}/flagged")).await;
    assert_eq!(flagged["total"], 1);
    let (status, body) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/99"),
            json!({"seen": true}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/abc"),
            json!({"seen": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/1"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn moving_gives_new_uids_and_keeps_counters_exact(app: TestApp) {
    let user = new_user(&app, "mover").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let (_, work) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "Work"}))
        .await;
    let work = work["id"].as_str().unwrap().to_string();
    app.upload_ok(&user, &work, SIMPLE, json!({})).await;
    for _ in 0..4 {
        app.upload_ok(&user, &inbox, SIMPLE, json!({"unseen": true}))
            .await;
    }
    let used = app.storage_used(&user).await;
    let (status, body) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/2:3"),
            json!({"moveTo": work, "seen": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mailbox"], work);
    assert_eq!(body["id"], json!([[2, 2], [3, 3]]));
    assert_eq!(uids(&app, &user, &inbox).await, [1, 4]);
    assert_eq!(uids(&app, &user, &work).await, [1, 2, 3]);
    assert_eq!(app.counters(&user, &inbox).await, (2, 2));
    assert_eq!(app.counters(&user, &work).await, (3, 0));
    assert_eq!(app.storage_used(&user).await, used);
    // UIDs are never reused: moving back gives new ones.
    let (_, body) = app
        .put(
            &format!("/users/{user}/mailboxes/{work}/messages/2"),
            json!({"moveTo": inbox}),
        )
        .await;
    assert_eq!(body["id"], json!([[2, 5]]));
}

async fn deleting_archives_and_restore_gets_a_new_uid(app: TestApp) {
    let user = new_user(&app, "archiver").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({"unseen": true}))
        .await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({"draft": true}))
        .await;
    let (status, body) = app
        .delete(&format!("/users/{user}/mailboxes/{inbox}/messages/1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app
        .delete(&format!("/users/{user}/mailboxes/{inbox}/messages/1"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Drafts are not archived.
    let (status, _) = app
        .delete(&format!("/users/{user}/mailboxes/{inbox}/messages/2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.counters(&user, &inbox).await, (0, 0));
    assert_eq!(app.storage_used(&user).await, 0);
    let (_, archived) = app.get(&format!("/users/{user}/archived")).await;
    assert_eq!(archived["total"], 1, "{archived}");
    let entry = &archived["results"][0];
    let hex = entry["id"].as_str().unwrap().to_string();
    assert_eq!(hex.len(), 24);
    assert_eq!(entry["mailbox"], inbox);
    let (_, modern) = app.get(&format!("/users/{user}/archived/messages")).await;
    assert_eq!(modern["results"], archived["results"]);
    let (status, details) = app.get(&format!("/users/{user}/archived/{hex}")).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    assert_eq!(details["subject"], "Hällo world");
    let (status, restored) = app
        .post(&format!("/users/{user}/archived/{hex}/restore"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["mailbox"], inbox);
    assert_eq!(restored["uid"], 3);
    assert_eq!(restored["id"], 3);
    assert_eq!(app.counters(&user, &inbox).await, (1, 1));
    assert_eq!(app.storage_used(&user).await, SIMPLE.len() as u64);
    let (_, archived) = app.get(&format!("/users/{user}/archived")).await;
    assert_eq!(archived["total"], 0);
    let (status, _) = app
        .post(&format!("/users/{user}/archived/{hex}/restore"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn restore_goes_to_inbox_when_the_mailbox_is_gone(app: TestApp) {
    let user = new_user(&app, "orphan").await;
    let (_, folder) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "Temp"}))
        .await;
    let folder = folder["id"].as_str().unwrap().to_string();
    app.upload_ok(&user, &folder, SIMPLE, json!({})).await;
    let (status, _) = app
        .delete(&format!("/users/{user}/mailboxes/{folder}/messages/1"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .delete(&format!("/users/{user}/mailboxes/{folder}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, archived) = app.get(&format!("/users/{user}/archived")).await;
    let hex = archived["results"][0]["id"].as_str().unwrap().to_string();
    let (status, restored) = app
        .post(
            &format!("/users/{user}/archived/messages/{hex}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    let inbox = app.mailbox_id(&user, "INBOX").await;
    assert_eq!(restored["mailbox"], inbox);
    assert_eq!(uids(&app, &user, &inbox).await, [1]);
}

async fn over_quota_upload_is_refused_and_changes_nothing(app: TestApp) {
    let user = app
        .create_user(json!({"username": "small", "password": "pw", "quota": 400}))
        .await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    let (status, body) = app.upload(&user, &inbox, SIMPLE, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "OverQuotaError");
    assert_eq!(app.counters(&user, &inbox).await, (1, 0));
    assert_eq!(app.storage_used(&user).await, SIMPLE.len() as u64);
    assert_eq!(uids(&app, &user, &inbox).await, [1]);
}

async fn quota_reset_recounts_storage(app: TestApp) {
    let user = new_user(&app, "recount").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    app.upload_ok(&user, &inbox, &with_attachment(), json!({}))
        .await;
    let expected = (SIMPLE.len() + with_attachment().len()) as u64;
    let (status, body) = app
        .post(&format!("/users/{user}/quota/reset"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["storageUsed"], expected);
    assert_eq!(body["previousStorageUsed"], expected);
    let (status, _) = app
        .post(
            &format!("/users/{}/quota/reset", ObjectId::new()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn search_finds_words_and_skips_trash_and_junk(app: TestApp) {
    let user = new_user(&app, "searcher").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let trash = app.mailbox_id(&user, "Trash").await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    app.upload_ok(&user, &inbox, &with_attachment(), json!({}))
        .await;
    app.upload_ok(&user, &trash, SIMPLE, json!({})).await;
    let (status, found) = app
        .get(&format!("/users/{user}/search?query=quarterly"))
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["query"], "quarterly");
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["results"][0]["mailbox"], inbox);
    let (_, found) = app
        .get(&format!(
            "/users/{user}/search?query=quarterly&searchable=false"
        ))
        .await;
    assert_eq!(found["total"], 2);
    let (_, found) = app
        .get(&format!("/users/{user}/search?query=Quarterly%20report"))
        .await;
    assert_eq!(found["total"], 1);
    let (_, found) = app
        .get(&format!(
            "/users/{user}/search?query=quarterly%20nonexistentword"
        ))
        .await;
    assert_eq!(found["total"], 0);
    let (_, found) = app
        .get(&format!("/users/{user}/search?from=sender@example.com"))
        .await;
    assert_eq!(found["total"], 1);
    let (_, found) = app
        .get(&format!("/users/{user}/search?q=has:attachment"))
        .await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["results"][0]["subject"], "With file");
    // Paging through all of INBOX one by one.
    let (_, page1) = app
        .get(&format!("/users/{user}/search?mailbox={inbox}&limit=1"))
        .await;
    assert_eq!(page1["total"], 2);
    let next = page1["nextCursor"].as_str().unwrap();
    let (_, page2) = app
        .get(&format!(
            "/users/{user}/search?mailbox={inbox}&limit=1&next={next}"
        ))
        .await;
    assert_ne!(page1["results"][0]["id"], page2["results"][0]["id"]);
    assert_eq!(page2["nextCursor"], false);
    // Deleted messages leave the index.
    app.delete(&format!("/users/{user}/mailboxes/{inbox}/messages/1"))
        .await;
    let (_, found) = app
        .get(&format!("/users/{user}/search?query=quarterly"))
        .await;
    assert_eq!(found["total"], 0);
}

async fn every_change_is_journaled(app: TestApp) {
    let user = new_user(&app, "journal").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let (_, folder) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "J"}))
        .await;
    let folder = folder["id"].as_str().unwrap().to_string();
    app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    app.put(
        &format!("/users/{user}/mailboxes/{inbox}/messages/1"),
        json!({"seen": false}),
    )
    .await;
    app.put(
        &format!("/users/{user}/mailboxes/{inbox}/messages/1"),
        json!({"moveTo": folder}),
    )
    .await;
    app.put(
        &format!("/users/{user}/mailboxes/{folder}"),
        json!({"path": "K"}),
    )
    .await;
    app.delete(&format!("/users/{user}/mailboxes/{folder}/messages/1"))
        .await;
    app.delete(&format!("/users/{user}/mailboxes/{folder}"))
        .await;
    let id: ObjectId = user.parse().unwrap();
    let events = app
        .table()
        .query(&Query::table(keys::journal_pk(&id)))
        .await
        .unwrap();
    let commands: Vec<&str> = events
        .items
        .iter()
        .map(|i| i.body["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        [
            "CREATE", "EXISTS", "FETCH", "EXPUNGE", "EXISTS", "RENAME", "EXPUNGE", "DELETE"
        ]
    );
    let seqs: Vec<i64> = events
        .items
        .iter()
        .map(|i| i.body["id"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

async fn idempotency_key_stores_a_message_once(app: TestApp) {
    let user = new_user(&app, "retry").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let app = Arc::new(app);
    let send = |key: &'static str| {
        let app = app.clone();
        let uri = format!("/users/{user}/mailboxes/{inbox}/messages");
        async move {
            let request = http::Request::post(uri)
                .header("content-type", "message/rfc822")
                .header("Idempotency-Key", key)
                .body(Body::from(SIMPLE))
                .unwrap();
            app.send(request).await
        }
    };
    let (status, first) = send("upload-1").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = send("upload-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["message"], first["message"]);
    // Concurrent retries of another upload.
    let results = futures::future::join_all((0..5).map(|_| send("upload-2"))).await;
    let ids: BTreeSet<u64> = results
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, StatusCode::OK, "{b}");
            b["message"]["id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.counters(&user, &inbox).await, (2, 0));
    assert_eq!(app.storage_used(&user).await, 2 * SIMPLE.len() as u64);
}

async fn parallel_uploads_get_distinct_increasing_uids_and_exact_counters(app: TestApp) {
    let user = new_user(&app, "parallel").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            let (user, inbox) = (user.clone(), inbox.clone());
            tokio::spawn(async move {
                let raw = format!("Subject: n{i}\r\n\r\nbody {i}\r\n");
                let unseen = i % 2 == 0;
                let (status, body) = app
                    .upload(&user, &inbox, &raw, json!({"unseen": unseen}))
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                (body["message"]["id"].as_u64().unwrap(), raw.len() as u64)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let uid_set: BTreeSet<u64> = results.iter().map(|(u, _)| *u).collect();
    assert_eq!(uid_set.len(), 50, "UIDs must be distinct");
    let bytes: u64 = results.iter().map(|(_, s)| *s).sum();
    let listed = uids(&app, &user, &inbox).await;
    assert_eq!(listed.len(), 50);
    assert!(listed.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), uid_set);
    assert_eq!(app.counters(&user, &inbox).await, (50, 25));
    assert_eq!(app.storage_used(&user).await, bytes);
    let (_, body) = app
        .post(&format!("/users/{user}/quota/reset"), json!({}))
        .await;
    assert_eq!(body["storageUsed"], bytes);
}

async fn a_failed_metadata_write_leaves_no_message_and_no_quota_drift(app: TestApp) {
    let user = new_user(&app, "crashy").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    // Same storage, but the transaction that makes a message visible fails once, after the
    // blob was written.
    let TestApp { backend, .. } = app;
    let failing = Arc::new(eider_tests::faults::FailingWrites::new(
        backend.table.clone(),
        "MSGS#",
        1,
    ));
    let blobs = backend.blobs.clone();
    let app = TestApp::new(backend.with_table(failing), test_config());
    let (status, body) = app.upload(&user, &inbox, SIMPLE, json!({})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"], "Internal server error");
    assert_eq!(app.counters(&user, &inbox).await, (0, 0));
    assert_eq!(app.storage_used(&user).await, 0);
    assert!(uids(&app, &user, &inbox).await.is_empty());
    // The blob written before the failure was removed again.
    let id: ObjectId = user.parse().unwrap();
    let pointers = app
        .table()
        .query(&Query::table(
            keys::message_pointer(&id, &ObjectId::new()).pk,
        ))
        .await
        .unwrap();
    assert!(pointers.items.is_empty());
    let _ = blobs;
    // The retry works and gets the next UID (the failed one is never reused).
    let uid = app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    assert_eq!(uid, 2);
    assert_eq!(app.counters(&user, &inbox).await, (1, 0));
    assert_eq!(app.storage_used(&user).await, SIMPLE.len() as u64);
}

async fn other_users_mailboxes_and_messages_are_unreachable(app: TestApp) {
    let alice = new_user(&app, "alice").await;
    let bob = new_user(&app, "bob").await;
    let inbox = app.mailbox_id(&alice, "INBOX").await;
    app.upload_ok(&alice, &inbox, SIMPLE, json!({})).await;
    for uri in [
        format!("/users/{bob}/mailboxes/{inbox}"),
        format!("/users/{bob}/mailboxes/{inbox}/messages"),
        format!("/users/{bob}/mailboxes/{inbox}/messages/1"),
        format!("/users/{bob}/mailboxes/{inbox}/messages/1/message.eml"),
    ] {
        let request = http::Request::get(&uri).body(Body::empty()).unwrap();
        let (status, _, _) = app.send_raw(request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, _) = app.upload(&bob, &inbox, SIMPLE, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .delete(&format!("/users/{bob}/mailboxes/{inbox}/messages/1"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, found) = app
        .get(&format!("/users/{bob}/search?query=quarterly"))
        .await;
    assert_eq!(found["total"], 0);
    assert_eq!(uids(&app, &alice, &inbox).await, [1]);
    // A deleted user's mail is gone for the API at once (the janitor purges it later).
    let (status, _) = app.delete(&format!("/users/{alice}")).await;
    assert_eq!(status, StatusCode::OK);
    for uri in [
        format!("/users/{alice}/mailboxes/{inbox}"),
        format!("/users/{alice}/mailboxes/{inbox}/messages"),
        format!("/users/{alice}/mailboxes/{inbox}/messages/1"),
        format!("/users/{alice}/mailboxes/{inbox}/messages/1/message.eml"),
    ] {
        let request = http::Request::get(&uri).body(Body::empty()).unwrap();
        let (status, _, body) = app.send_raw(request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            String::from_utf8_lossy(&body).contains("UserNotFound"),
            "{uri}"
        );
    }
    let (status, _) = app
        .put(
            &format!("/users/{alice}/mailboxes/{inbox}"),
            json!({"subscribed": false}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A message of about `size` bytes with one base64 attachment of pseudo-random bytes.
fn large_message(size: usize) -> (String, Vec<u8>) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let payload: Vec<u8> = (0..size * 3 / 4)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let encoded = STANDARD.encode(&payload);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let raw = format!(
        "From: big@example.com\r\nTo: b@example.com\r\nSubject: Large\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--B\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\n{}\r\n--B--\r\n",
        lines.join("\r\n")
    );
    (raw, payload)
}

/// Follows a download: the body itself, or (on S3) the presigned URL it redirects to.
async fn download(app: &TestApp, uri: &str) -> (Option<String>, bytes::Bytes) {
    let (content_type, body, _) = download_via(app, uri).await;
    (content_type, body)
}

/// Like [`download`], also telling whether the answer was a redirect.
async fn download_via(app: &TestApp, uri: &str) -> (Option<String>, bytes::Bytes, bool) {
    let request = http::Request::get(uri).body(Body::empty()).unwrap();
    let (status, headers, body) = app.send_raw(request).await;
    if status == StatusCode::TEMPORARY_REDIRECT {
        let location = headers["location"].to_str().unwrap().to_string();
        let response = reqwest::get(&location).await.unwrap();
        assert!(
            response.status().is_success(),
            "{location}: {}",
            response.status()
        );
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        return (content_type, response.bytes().await.unwrap(), true);
    }
    assert_eq!(status, StatusCode::OK, "{uri}");
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (content_type, body, false)
}

async fn large_messages_use_staged_uploads_and_stream_or_redirect(app: TestApp) {
    // A small inline limit, so the presigned path is taken on S3 without huge test data.
    let TestApp { backend, .. } = app;
    let config = eider_shared::config::Config {
        inline_limit: 64 * 1024,
        ..test_config()
    };
    let app = TestApp::new(backend, config);
    let user = new_user(&app, "large").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let (raw, payload) = large_message(3 * 1024 * 1024);
    let (status, staged) = app.post(&format!("/users/{user}/uploads"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{staged}");
    let url = staged["url"].as_str().unwrap().to_string();
    let id = staged["id"].as_str().unwrap().to_string();
    if url.starts_with('/') {
        // The local folder can't presign: the bytes go through the API.
        let request = http::Request::put(&url)
            .body(Body::from(raw.clone()))
            .unwrap();
        let (status, body) = app.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    } else {
        let response = reqwest::Client::new()
            .put(&url)
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    let (status, body) = app
        .post(
            &format!("/users/{user}/mailboxes/{inbox}/messages"),
            json!({"upload": id, "unseen": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"]["size"], raw.len());
    let uid = body["message"]["id"].as_u64().unwrap();
    // The staged copy is gone; using it again fails cleanly.
    let (status, _) = app
        .post(
            &format!("/users/{user}/mailboxes/{inbox}/messages"),
            json!({"upload": id}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, eml) = download(
        &app,
        &format!("/users/{user}/mailboxes/{inbox}/messages/{uid}/message.eml"),
    )
    .await;
    assert_eq!(eml.len(), raw.len());
    assert!(eml.as_ref() == raw.as_bytes(), "source differs");
    let (content_type, attachment) = download(
        &app,
        &format!("/users/{user}/mailboxes/{inbox}/messages/{uid}/attachments/ATT00001"),
    )
    .await;
    assert_eq!(content_type.as_deref(), Some("application/octet-stream"));
    assert!(
        attachment.as_ref() == payload.as_slice(),
        "attachment differs"
    );
    assert_eq!(app.counters(&user, &inbox).await, (1, 1));
    assert_eq!(app.storage_used(&user).await, raw.len() as u64);
}

/// Posts `body` to the folder's messages with its declared length (as real clients send it)
/// or, with `length: None`, as a stream of pieces without one (chunked).
async fn post_message_body(
    app: &TestApp,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
    length: Option<usize>,
) -> (StatusCode, Value) {
    let mut request = http::Request::post(uri).header("content-type", content_type);
    let body = match length {
        Some(length) => {
            request = request.header("content-length", length);
            Body::from(body)
        }
        None => {
            let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = body
                .chunks(100_000)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            Body::from_stream(futures::stream::iter(pieces))
        }
    };
    app.send(request.body(body).unwrap()).await
}

/// Bodies over a MiB, or of unknown length, go to scratch space (spooled) rather than
/// memory on the local folder: every form of upload still stores the message byte-exact,
/// and a body over the limit is refused in JSON with nothing stored.
async fn large_bodies_are_spooled_and_stored_byte_exact(app: TestApp) {
    let user = new_user(&app, "spooled").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let uri = format!("/users/{user}/mailboxes/{inbox}/messages");
    let (raw, payload) = large_message(2 * 1024 * 1024);
    let encoded = STANDARD.encode(&raw);
    // Line breaks and slashes escaped, as JSON encoders write base64 (PHP escapes `/`).
    let escaped: String = encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap().replace('/', "\\/") + "\\r\\n")
        .collect();
    let mut sent = Vec::new();
    let forms: Vec<(&str, &str, Vec<u8>)> = vec![
        ("message/rfc822", "", raw.clone().into_bytes()),
        (
            "application/json",
            "",
            json!({"raw": encoded, "flagged": true})
                .to_string()
                .into_bytes(),
        ),
        (
            "application/json",
            "?unseen=true",
            format!(r#"{{"unseen": false, "raw": "{escaped}"}}"#).into_bytes(),
        ),
        // A message as text: escapes, so the usual validation reads it.
        (
            "application/json",
            "",
            json!({ "raw": raw }).to_string().into_bytes(),
        ),
    ];
    for (content_type, query, body) in forms {
        for declared in [true, false] {
            let length = declared.then_some(body.len());
            let (status, answer) = post_message_body(
                &app,
                &format!("{uri}{query}"),
                content_type,
                body.clone(),
                length,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{content_type}{query}: {answer}");
            assert_eq!(answer["message"]["size"], raw.len());
            sent.push((answer["message"]["id"].as_u64().unwrap(), query, body.len()));
        }
    }
    for (uid, query, _) in &sent {
        let (_, eml) = download(&app, &format!("{uri}/{uid}/message.eml")).await;
        assert!(eml.as_ref() == raw.as_bytes(), "source of {uid} differs");
        let (_, details) = app.get(&format!("{uri}/{uid}")).await;
        assert_eq!(details["seen"], !query.contains("unseen"), "{uid}");
        // sizeKb is of the decoded attachment (size is WildDuck's encoded one).
        let size_kb = payload.len().div_ceil(1024);
        assert_eq!(details["attachments"][0]["sizeKb"], size_kb, "{uid}");
    }
    let (_, attachment) =
        download(&app, &format!("{uri}/{}/attachments/ATT00001", sent[1].0)).await;
    assert!(
        attachment.as_ref() == payload.as_slice(),
        "attachment differs"
    );
    let stored = sent.len() as u64;
    assert_eq!(app.counters(&user, &inbox).await, (stored, 2));
    let used = app.storage_used(&user).await;
    assert_eq!(used, stored * raw.len() as u64);

    // Over the body limit (6 MB here), declared or not: 413 in JSON, nothing stored.
    let limit = test_config().body_limit;
    let too_large = vec![b'a'; limit + 1];
    for declared in [true, false] {
        let (status, answer) = post_message_body(
            &app,
            &uri,
            "message/rfc822",
            too_large.clone(),
            declared.then_some(too_large.len()),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert_eq!(answer["code"], "PayloadTooLarge");
    }
    // A large body that is no JSON object, or a raw that names nothing: 400, nothing stored.
    let mut not_json = b"{\"raw\": ".to_vec();
    not_json.extend(vec![b'A'; 2 << 20]);
    for body in [not_json, format!("[\"{encoded}\"]").into_bytes()] {
        let (status, answer) = post_message_body(&app, &uri, "application/json", body, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["code"], "InvalidContent");
    }
    let (status, answer) = post_message_body(
        &app,
        &uri,
        "application/json",
        json!({"raw": encoded, "bogus": 1}).to_string().into_bytes(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(app.counters(&user, &inbox).await, (stored, 2));
    assert_eq!(app.storage_used(&user).await, used);
}

async fn encrypted_users_get_pgp_mime_and_messages_still_list(app: TestApp) {
    let key = include_str!("../../shared/src/mail/testdata/rsa.asc");
    let user = app
        .create_user(
            json!({"username": "secret", "password": "pw", "pubKey": key, "encryptMessages": true}),
        )
        .await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let uid = app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    let (_, eml) = download(
        &app,
        &format!("/users/{user}/mailboxes/{inbox}/messages/{uid}/message.eml"),
    )
    .await;
    let text = String::from_utf8_lossy(&eml);
    assert!(text.contains("multipart/encrypted"), "{text}");
    assert!(text.contains("-----BEGIN PGP MESSAGE-----"));
    assert!(
        !text.contains("quarterly report"),
        "the body is stored in the clear"
    );
    let (_, list) = app
        .get(&format!("/users/{user}/mailboxes/{inbox}/messages"))
        .await;
    assert_eq!(list["results"][0]["subject"], "Hällo world");
    assert_eq!(list["results"][0]["encrypted"], true);
}
