//! The local server's full-text index (Tantivy, `<data>/search-v1`) through the API: the whole
//! text is searchable, prefixes, folder moves and `\Deleted` reach the index, paging and
//! `total` stay exact over many matches, and an index that fell behind the store (a crash, a
//! removed folder) is repaired by reconciling. The embedded backend only: the Lambda
//! functions search the table's term items (tests/tests/mail.rs covers both).

use std::collections::BTreeSet;
use std::sync::Arc;

use eider_shared::domain::messages;
use eider_shared::http::AppState;
use eider_shared::store::tantivy_index::TantivyIndex;
use eider_tests::app::{TestApp, test_config};
use http::StatusCode;
use serde_json::{Value, json};

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Ann Example <ann@example.com>\r\nTo: bob@example.com\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

async fn user_with_inbox(app: &TestApp, name: &str) -> (String, String) {
    let user = app
        .create_user(json!({"username": name, "password": "pw"}))
        .await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    (user, inbox)
}

async fn search(app: &TestApp, user: &str, params: &str) -> Value {
    let (status, found) = app.get(&format!("/users/{user}/search?{params}")).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found
}

fn ids(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].to_string())
        .collect()
}

#[tokio::test]
async fn the_whole_text_is_searchable_and_prefixes_match() {
    let app = TestApp::embedded().await;
    let (user, inbox) = user_with_inbox(&app, "fulltext").await;
    // 40 KB of filler, then the word: far past the 4 KiB the term items index.
    let filler = "lorem ipsum dolor sit amet ".repeat(1500);
    let body = format!("{filler}\r\nzanzibarian treasure at the very end");
    app.upload_ok(&user, &inbox, &message("Long one", &body), json!({}))
        .await;
    app.upload_ok(
        &user,
        &inbox,
        &message("Quarterly figures", "short"),
        json!({}),
    )
    .await;
    let found = search(&app, &user, "query=zanzibarian").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["results"][0]["subject"], "Long one");
    let found = search(&app, &user, "q=zanzib*").await;
    assert_eq!(found["total"], 1, "{found}");
    let found = search(&app, &user, "q=quart*").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["results"][0]["subject"], "Quarterly figures");
    // Both words, one excluded, an address whole.
    let found = search(&app, &user, "q=lorem%20-zanzibarian").await;
    assert_eq!(found["total"], 0, "{found}");
    let found = search(&app, &user, "query=ann@example.com").await;
    assert_eq!(found["total"], 2, "{found}");
    // `or` words: either one (decided by the index); mixed with a header substring.
    let found = search(&app, &user, "or[query]=zanzibarian%20quarterly").await;
    assert_eq!(found["total"], 2, "{found}");
    let found = search(&app, &user, "or[query]=zanzibarian&or[subject]=figures").await;
    assert_eq!(found["total"], 2, "{found}");
    let found = search(&app, &user, "or[query]=nowhere&or[subject]=figures").await;
    assert_eq!(found["total"], 1, "{found}");
    // A prefix that matches nothing.
    let found = search(&app, &user, "q=qqqq*").await;
    assert_eq!(found["total"], 0, "{found}");
}

#[tokio::test]
async fn moves_and_the_deleted_flag_reach_the_index() {
    let app = TestApp::embedded().await;
    let (user, inbox) = user_with_inbox(&app, "mover").await;
    let trash = app.mailbox_id(&user, "Trash").await;
    for i in 0..3 {
        app.upload_ok(
            &user,
            &inbox,
            &message(&format!("Report {i}"), "budget"),
            json!({"unseen": true}),
        )
        .await;
    }
    assert_eq!(search(&app, &user, "query=budget").await["total"], 3);
    // To Trash: out of a default search, in with searchable=false.
    let (status, moved) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/1"),
            json!({"moveTo": trash}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(search(&app, &user, "query=budget").await["total"], 2);
    assert_eq!(
        search(&app, &user, "query=budget&searchable=false").await["total"],
        3
    );
    let in_trash = search(&app, &user, &format!("query=budget&mailbox={trash}")).await;
    assert_eq!(in_trash["total"], 1, "{in_trash}");
    assert_eq!(in_trash["results"][0]["mailbox"], trash);
    // And back.
    let (status, _) = app
        .put(
            &format!("/users/{user}/mailboxes/{trash}/messages/1"),
            json!({"moveTo": inbox}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(search(&app, &user, "query=budget").await["total"], 3);
    // `\Deleted` leaves searchable=true results (WildDuck's web client always sends it).
    let (status, body) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/2"),
            json!({"deleted": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let found = search(&app, &user, "query=budget&searchable=true").await;
    assert_eq!(found["total"], 2, "{found}");
    assert_eq!(found["results"].as_array().unwrap().len(), 2);
    assert_eq!(search(&app, &user, "query=budget").await["total"], 3);
    // Flags live on the table: unseen is checked there, total still exact.
    app.put(
        &format!("/users/{user}/mailboxes/{inbox}/messages/3"),
        json!({"seen": true}),
    )
    .await;
    let found = search(&app, &user, "query=budget&unseen=true").await;
    assert_eq!(found["total"], 1, "{found}");
    // Deleting a message removes it.
    app.delete(&format!("/users/{user}/mailboxes/{inbox}/messages/3"))
        .await;
    assert_eq!(search(&app, &user, "query=budget").await["total"], 2);
}

#[tokio::test]
async fn paging_walks_every_match_once_in_both_directions() {
    let app = TestApp::embedded().await;
    let (user, inbox) = user_with_inbox(&app, "pager").await;
    for i in 0..45 {
        app.upload_ok(
            &user,
            &inbox,
            &message(&format!("Note {i}"), "common words"),
            json!({}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let params = match &next {
            Some(n) => format!("query=common&limit=20&next={n}"),
            None => "query=common&limit=20".to_string(),
        };
        let found = search(&app, &user, &params).await;
        assert_eq!(found["total"], 45, "{found}");
        seen.extend(ids(&found));
        pages.push(found.clone());
        match found["nextCursor"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(seen.len(), 45);
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        45,
        "no id twice"
    );
    // Newest first: the last uploaded message leads.
    assert_eq!(pages[0]["results"][0]["subject"], "Note 44");
    // Back from the last page gives the second again.
    let previous = pages[2]["previousCursor"].as_str().unwrap();
    let back = search(
        &app,
        &user,
        &format!("query=common&limit=20&previous={previous}"),
    )
    .await;
    assert_eq!(ids(&back), ids(&pages[1]));
    // A cursor of another listing is refused.
    let (status, _) = app
        .get(&format!("/users/{user}/search?query=common&next=cAAAA"))
        .await;
    assert!(status.is_client_error());
}

#[tokio::test]
async fn an_index_behind_the_store_is_repaired_by_reconciling() {
    let app = TestApp::embedded().await;
    let (user, inbox) = user_with_inbox(&app, "reconciled").await;
    for i in 0..5 {
        app.upload_ok(
            &user,
            &inbox,
            &message(&format!("Kept {i}"), "harbour"),
            json!({}),
        )
        .await;
    }
    // A fresh, empty index over the same store (the folder removed, or a crash before the
    // first commit): search finds nothing until reconciled.
    let dir = tempfile::tempdir().unwrap();
    let empty = Arc::new(TantivyIndex::open(&dir.path().join("search-v1")).unwrap());
    let state = AppState::new(
        app.state.table.clone(),
        app.state.blobs.clone(),
        test_config(),
    )
    .with_text_index(empty);
    let rebuilt = TestApp::new_with_state(app.backend, state);
    assert_eq!(search(&rebuilt, &user, "query=harbour").await["total"], 0);
    let report = messages::reconcile(&rebuilt.state).await.unwrap();
    assert_eq!((report.messages, report.added), (5, 5), "{report:?}");
    assert_eq!(search(&rebuilt, &user, "query=harbour").await["total"], 5);
    // Reconciling again changes nothing.
    let again = messages::reconcile(&rebuilt.state).await.unwrap();
    assert_eq!((again.added, again.removed, again.moved), (0, 0, 0));
}
