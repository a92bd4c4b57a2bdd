//! Cost guarantees of the mail store, counted (not timed): listing a page, getting, updating
//! and deleting a message make the same number of storage round trips whether the mailbox
//! holds 5 messages or 300; an upload makes the same whatever the message's words (search is
//! indexed from the table's stream in Lambda).

use std::sync::Arc;

use base64::Engine;
use eider_shared::domain::SearchWrites;
use eider_shared::http::AppState;
use eider_tests::app::{TestApp, test_config};
use eider_tests::counting::{CallCounter, CountingTable};
use http::StatusCode;
use serde_json::{Value, json};

struct Counted {
    app: TestApp,
    table: Arc<CountingTable>,
}

async fn counted() -> Counted {
    let backend = eider_tests::backends::embedded().await;
    let table = Arc::new(CallCounter::wrap(backend.table.clone()));
    let app = TestApp::new(backend.with_table(table.clone()), test_config());
    Counted { app, table }
}

async fn fill(app: &TestApp, user: &str, mailbox: &str, count: usize) {
    for i in 0..count {
        let raw = format!("Subject: message {i}\r\nFrom: a@example.com\r\n\r\nbody {i}\r\n");
        let body = json!({ "raw": base64::engine::general_purpose::STANDARD.encode(raw) });
        let (status, answer) = app
            .post(&format!("/users/{user}/mailboxes/{mailbox}/messages"), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
}

/// Round trips of each request, on a mailbox of `size` messages.
async fn round_trips(size: usize) -> Vec<(&'static str, usize)> {
    let Counted { app, table } = counted().await;
    let user = app
        .create_user(json!({"username": format!("cost{size}"), "password": "pw"}))
        .await;
    let (_, boxes) = app.get(&format!("/users/{user}/mailboxes")).await;
    let inbox = boxes["results"][0]["id"].as_str().unwrap().to_string();
    fill(&app, &user, &inbox, size).await;
    let base = format!("/users/{user}/mailboxes/{inbox}/messages");
    let mut out = Vec::new();
    let mut measure = |name: &'static str, status: StatusCode, body: &Value| {
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        out.push((name, table.hooks().take()));
    };
    table.hooks().take();
    let (s, b) = app.get(&format!("{base}?limit=20")).await;
    measure("list first page", s, &b);
    let next = b["nextCursor"].as_str().unwrap().to_string();
    let (s, b) = app.get(&format!("{base}?limit=20&next={next}")).await;
    measure("list next page", s, &b);
    let (s, b) = app.get(&format!("{base}/3")).await;
    measure("get message", s, &b);
    let (s, b) = app
        .put(
            &format!("{base}/3"),
            json!({"seen": false, "flagged": true}),
        )
        .await;
    measure("update message", s, &b);
    let (s, b) = app.get(&format!("/users/{user}/mailboxes/{inbox}?")).await;
    measure("get mailbox with counters", s, &b);
    let (s, b) = app.delete(&format!("{base}/4")).await;
    measure("delete message", s, &b);
    let raw = base64::engine::general_purpose::STANDARD.encode("Subject: one more\r\n\r\nx\r\n");
    let (s, b) = app.post(&base, json!({ "raw": raw })).await;
    // With the full-text index (embedded), the upload's table calls are its own.
    measure("upload message", s, &b);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_operations_cost_the_same_whatever_the_mailbox_size() {
    let small = round_trips(30).await;
    let large = round_trips(300).await;
    for ((name, a), (_, b)) in small.iter().zip(&large) {
        println!("{name}: {a} round trips with 30 messages, {b} with 300");
    }
    assert_eq!(small, large);
}

/// Table round trips of uploading a message of `words` distinct words, with search kept as
/// `search` says.
async fn upload_round_trips(search: SearchWrites, words: usize) -> usize {
    let backend = eider_tests::backends::embedded().await;
    let table = Arc::new(CallCounter::wrap(backend.table.clone()));
    let backend = backend.with_table(table.clone());
    let state = AppState::new(backend.table.clone(), backend.blobs.clone(), test_config());
    let state = match search {
        // As in Lambda: the stream indexer writes the index, the upload nothing for search.
        SearchWrites::Stream => state.with_stream_indexing(None),
        SearchWrites::Terms => state,
        SearchWrites::Inline => unreachable!("not measured here"),
    };
    let app = TestApp::new_with_state(backend, state);
    let user = app
        .create_user(json!({"username": "wordy", "password": "pw"}))
        .await;
    let (_, boxes) = app.get(&format!("/users/{user}/mailboxes")).await;
    let inbox = boxes["results"][0]["id"].as_str().unwrap().to_string();
    let text: Vec<String> = (0..words).map(|n| format!("word{n}")).collect();
    let raw = format!("Subject: words\r\n\r\n{}\r\n", text.join(" "));
    let body = json!({ "raw": base64::engine::general_purpose::STANDARD.encode(raw) });
    table.hooks().take();
    let (status, answer) = app
        .post(&format!("/users/{user}/mailboxes/{inbox}/messages"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    table.hooks().take()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_writes_the_same_whatever_its_words() {
    let few = upload_round_trips(SearchWrites::Stream, 3).await;
    let many = upload_round_trips(SearchWrites::Stream, 3000).await;
    println!("upload: {few} round trips with 3 words, {many} with 3,000");
    assert_eq!(few, many);
    // Term items, the design before the index, grow with the words (and the counter sees
    // them).
    let few_terms = upload_round_trips(SearchWrites::Terms, 3).await;
    let many_terms = upload_round_trips(SearchWrites::Terms, 3000).await;
    println!("with term items: {few_terms} round trips with 3 words, {many_terms} with 3,000");
    assert!(many_terms > few_terms, "{few_terms} {many_terms}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_listing_reads_until_its_page_is_full() {
    let Counted { app, table } = counted().await;
    let listed = |status: StatusCode, body: &Value| {
        assert_eq!(status, StatusCode::OK, "{body}");
        table.hooks().take()
    };
    // A first request refreshes the settings cache (once a while, not per request).
    app.get("/users?limit=1").await;
    // No users at all: the counter says so, nothing else is read (74 requests before).
    table.hooks().take();
    let (s, b) = app.get("/users?query=test&limit=5").await;
    let empty = listed(s, &b);
    assert_eq!((b["total"].as_u64(), empty), (Some(0), 1), "{b}");
    for n in 0..12 {
        app.create_user(json!({"username": format!("alpha{n}"), "password": "pw"}))
            .await;
    }
    for name in ["beta1", "beta2", "zeta"] {
        app.create_user(json!({"username": name, "password": "pw"}))
            .await;
    }
    table.hooks().take();
    // A broad filter stops once its page is full: bucket `a` is the 12th of the 37 in
    // listing order (`0`-`9`, `_`, `a`-`z`), reached in the fourth round (1 + 2 + 4 + 8
    // buckets): the counter and 15 queries, never the other 22 buckets.
    let (s, b) = app.get("/users?query=alpha&limit=5").await;
    let broad = listed(s, &b);
    assert_eq!(broad, 1 + 15, "{b}");
    assert_eq!(b["results"].as_array().unwrap().len(), 5);
    let total = b["total"].as_u64().unwrap();
    assert!(
        (6..=15).contains(&total),
        "an estimate within what exists: {total}"
    );
    // Its pages still hold every match once.
    let mut seen = b["results"].as_array().unwrap().len();
    let mut next = b["nextCursor"].as_str().map(str::to_string);
    let mut page = 1;
    while let Some(cursor) = next {
        page += 1;
        let (s, b) = app
            .get(&format!(
                "/users?query=alpha&limit=5&next={cursor}&page={page}"
            ))
            .await;
        listed(s, &b);
        seen += b["results"].as_array().unwrap().len();
        next = b["nextCursor"].as_str().map(str::to_string);
        if next.is_none() {
            // The last page read to the end of the listing: exact.
            assert_eq!(b["total"], 12, "{b}");
        }
    }
    assert_eq!(seen, 12);
    // A narrow filter reads to the end: its total is exact.
    let (s, b) = app.get("/users?query=zeta&limit=5").await;
    let narrow = listed(s, &b);
    assert_eq!(b["total"], 1, "{b}");
    assert_eq!(narrow, 1 + 37, "every bucket, once");
    // Unfiltered: the counter.
    let (s, b) = app.get("/users?limit=5").await;
    listed(s, &b);
    assert_eq!(b["total"], 15);
}
