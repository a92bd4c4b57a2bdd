//! The full-text indexes through the API, on both backends: Tantivy in the data folder
//! (embedded, the local server) and per-user indexes in the bucket (moto, as in Lambda). The
//! whole text is searchable, prefixes, folder moves and `\Deleted` reach the index, paging and
//! `total` stay exact over many matches, and an index that fell behind the store (a crash, a
//! removed folder) is repaired by reconciling. Then the cloud's own parts: the stream indexer
//! (records out of order, repeated, of other items), writers of one user racing from two
//! instances, the bucket holding exactly the committed generation's files, and a purged
//! user's index removed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_lambda_events::dynamodb::Event;
use eider_indexer::Indexer;
use eider_shared::domain::{keys, messages};
use eider_shared::http::AppState;
use eider_shared::id::ObjectId;
use eider_shared::store::blob_fs::FsBlobStore;
use eider_shared::store::blob_text_index::BlobTextIndex;
use eider_shared::store::dynamo::stream_image_of;
use eider_shared::store::embedded::EmbeddedTable;
use eider_shared::store::tantivy_index::TantivyIndex;
use eider_shared::store::text_index::{IndexedMessage, Relocation, TextIndex, TextQuery};
use eider_shared::store::{BlobStore, Item, Query, Table, query_all};
use eider_tests::app::{TestApp, test_config};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    the_whole_text_is_searchable_and_prefixes_match,
    moves_and_the_deleted_flag_reach_the_index,
    paging_walks_every_match_once_in_both_directions,
);

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

async fn the_whole_text_is_searchable_and_prefixes_match(app: TestApp) {
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

async fn moves_and_the_deleted_flag_reach_the_index(app: TestApp) {
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

async fn paging_walks_every_match_once_in_both_directions(app: TestApp) {
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

// ---------------------------------------------------------------- the cloud's index

/// Every message item of `user`, in every folder, by key.
async fn message_items(app: &TestApp, user: &str) -> BTreeMap<(String, String), Item> {
    let user_id: ObjectId = user.trim_matches('"').parse().unwrap();
    let (_, listed) = app.get(&format!("/users/{user}/mailboxes")).await;
    let mut items = BTreeMap::new();
    for mailbox in listed["results"].as_array().unwrap() {
        let mailbox: ObjectId = mailbox["id"].as_str().unwrap().parse().unwrap();
        let query = Query::table(keys::messages_pk(&user_id, &mailbox));
        for item in query_all(app.table().as_ref(), query).await.unwrap() {
            items.insert((item.pk.clone(), item.sk.clone()), item);
        }
    }
    items
}

/// The stream records DynamoDB would give for going from `before` to `after`.
fn records_between(
    before: &BTreeMap<(String, String), Item>,
    after: &BTreeMap<(String, String), Item>,
    sequence: &mut u64,
) -> Vec<Value> {
    let mut records = Vec::new();
    let mut record =
        |name: &str, key: &(String, String), old: Option<&Item>, new: Option<&Item>| {
            *sequence += 1;
            let mut dynamodb = json!({
                "Keys": {"pk": {"S": key.0}, "sk": {"S": key.1}},
                "SequenceNumber": format!("{sequence:024}"), "SizeBytes": 100,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            });
            if let Some(old) = old {
                dynamodb["OldImage"] = stream_image_of(old);
            }
            if let Some(new) = new {
                dynamodb["NewImage"] = stream_image_of(new);
            }
            records.push(json!({
                "eventID": format!("e{sequence}"), "eventName": name, "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": dynamodb,
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/s"
            }));
        };
    for (key, old) in before {
        match after.get(key) {
            None => record("REMOVE", key, Some(old), None),
            Some(new) if new != old => record("MODIFY", key, Some(old), Some(new)),
            Some(_) => {}
        }
    }
    for (key, new) in after {
        if !before.contains_key(key) {
            record("INSERT", key, None, Some(new));
        }
    }
    records
}

fn stream_event(records: &[Value]) -> Event {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

async fn index_batch(indexer: &Indexer, records: &[Value]) {
    let answer = indexer.handle(stream_event(records)).await;
    assert!(
        answer.batch_item_failures.is_empty(),
        "{:?}",
        answer.batch_item_failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_indexer_keeps_each_users_bucket_index_in_line() {
    let backend = eider_tests::backends::moto().await;
    let cache = tempfile::tempdir().unwrap();
    let index = Arc::new(BlobTextIndex::new(
        backend.table.clone(),
        keys::search_index,
        backend.blobs.clone(),
        cache.path(),
    ));
    // As in Lambda: the API writes no index, the indexer does from the stream.
    let state = AppState::new(backend.table.clone(), backend.blobs.clone(), test_config())
        .with_stream_indexing(Some(index));
    let app = TestApp::new_with_state(backend, state.clone());
    let indexer = Indexer::new(state).unwrap();
    let (user, inbox) = user_with_inbox(&app, "streamed").await;
    let (status, created) = app
        .post(
            &format!("/users/{user}/mailboxes"),
            json!({"path": "Projects"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let projects = created["id"].as_str().unwrap().to_string();
    let mut sequence = 0;

    let empty = message_items(&app, &user).await;
    for (subject, body) in [
        ("Alpha", "orchid"),
        ("Beta", "tulip"),
        ("Gamma", "orchid tulip"),
    ] {
        app.upload_ok(&user, &inbox, &message(subject, body), json!({}))
            .await;
    }
    assert_eq!(search(&app, &user, "query=orchid").await["total"], 0);
    let stored = message_items(&app, &user).await;
    let inserts = records_between(&empty, &stored, &mut sequence);
    assert_eq!(inserts.len(), 3);
    index_batch(&indexer, &inserts).await;
    assert_eq!(search(&app, &user, "query=orchid").await["total"], 2);
    assert_eq!(search(&app, &user, "query=tulip").await["total"], 2);

    // A move is a delete and an insert, maybe in different shards: the insert first, in a
    // batch of its own, still leaves the message in its new folder.
    let (status, _) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/1"),
            json!({"moveTo": projects}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let moved = message_items(&app, &user).await;
    let records = records_between(&stored, &moved, &mut sequence);
    let (removes, inserts): (Vec<Value>, Vec<Value>) = records
        .into_iter()
        .partition(|r| r["eventName"] == "REMOVE");
    assert_eq!((removes.len(), inserts.len()), (1, 1));
    index_batch(&indexer, &inserts).await;
    index_batch(&indexer, &removes).await;
    let found = search(&app, &user, &format!("query=orchid&mailbox={projects}")).await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["results"][0]["subject"], "Alpha");

    // `\Deleted` on one, another deleted; then the first batch again (a retry): the deleted
    // message does not come back.
    let (status, _) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/2"),
            json!({"deleted": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .delete(&format!("/users/{user}/mailboxes/{inbox}/messages/3"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let changed = message_items(&app, &user).await;
    let records = records_between(&moved, &changed, &mut sequence);
    assert_eq!(records.len(), 2, "{records:?}");
    index_batch(&indexer, &records).await;
    index_batch(&indexer, &inserts).await;
    let found = search(&app, &user, "query=tulip").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["results"][0]["subject"], "Beta");
    assert_eq!(
        search(&app, &user, "query=tulip&searchable=true").await["total"],
        0
    );

    // Records of other items are passed over; an unreadable message record is skipped.
    let other = json!({
        "eventID": "other", "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"pk": {"S": "USER#x"}, "sk": {"S": "PROFILE"}},
                     "NewImage": {"pk": {"S": "USER#x"}, "sk": {"S": "PROFILE"}},
                     "SequenceNumber": "1", "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    });
    let broken = json!({
        "eventID": "broken", "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"pk": {"S": "MSGS#x#y"}, "sk": {"S": "1"}},
                     "NewImage": {"pk": {"S": "MSGS#x#y"}, "sk": {"S": "1"}},
                     "SequenceNumber": "2", "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    });
    index_batch(&indexer, &[other, broken]).await;
    assert_eq!(search(&app, &user, "query=orchid").await["total"], 1);
    // The sample batch of infra/events decodes and is handled (its messages are not here).
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/events/indexer-messages.json"
    ))
    .unwrap();
    let answer = indexer.handle(serde_json::from_str(&sample).unwrap()).await;
    assert!(answer.batch_item_failures.is_empty());
}

fn indexed(user: ObjectId, mailbox: ObjectId, words: &[&str]) -> IndexedMessage {
    IndexedMessage {
        user,
        id: ObjectId::new(),
        mailbox,
        thread: ObjectId::new(),
        idate: 1_700_000_000_000,
        size: 100,
        attachments: false,
        deleted: false,
        terms: words.iter().map(|w| w.to_string()).collect(),
    }
}

fn everything() -> TextQuery {
    TextQuery::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_of_one_user_in_two_instances_lose_nothing() {
    let backend = eider_tests::backends::moto().await;
    let (cache_a, cache_b, cache_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let instance = |dir: &std::path::Path| {
        BlobTextIndex::new(
            backend.table.clone(),
            keys::search_index,
            backend.blobs.clone(),
            dir,
        )
    };
    let (a, b) = (instance(cache_a.path()), instance(cache_b.path()));
    let (user, mailbox) = (ObjectId::new(), ObjectId::new());
    async fn write(index: &BlobTextIndex, user: ObjectId, mailbox: ObjectId, from: usize) {
        for n in from..from + 10 {
            let word = format!("w{n}");
            index
                .put(vec![indexed(user, mailbox, &["shared", &word])])
                .await
                .unwrap();
        }
    }
    tokio::join!(write(&a, user, mailbox, 0), write(&b, user, mailbox, 10));
    // A third instance (a cold Lambda) reads the committed generation from the bucket.
    let c = instance(cache_c.path());
    let all = TextQuery {
        all: vec!["shared".into()],
        ..everything()
    };
    assert_eq!(c.count(&user, &all).await.unwrap(), 20);
    for n in [0, 9, 10, 19] {
        let one = TextQuery {
            all: vec![format!("w{n}")],
            ..everything()
        };
        assert_eq!(c.count(&user, &one).await.unwrap(), 1, "w{n}");
    }
    // Another user's index is another index.
    assert_eq!(c.count(&ObjectId::new(), &all).await.unwrap(), 0);
}

#[tokio::test]
async fn the_bucket_holds_exactly_the_committed_generation_and_a_purge_removes_it() {
    // The embedded store, whose blob folder can be listed.
    let dir = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> =
        Arc::new(EmbeddedTable::open(&dir.path().join("eider.redb")).unwrap());
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(dir.path().join("blobs")).unwrap());
    let index = BlobTextIndex::new(
        table.clone(),
        keys::search_index,
        blobs.clone(),
        &dir.path().join("cache"),
    );
    let (user, inbox, trash) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    // Enough commits for merges, with removals (delete files) and moves among them.
    let mut kept = Vec::new();
    for n in 0..24 {
        let doc = indexed(user, inbox, &["common", &format!("n{n}")]);
        let id = doc.id;
        index.put(vec![doc]).await.unwrap();
        match n % 4 {
            1 => index.remove(&user, vec![id]).await.unwrap(),
            2 => index
                .relocate(&user, vec![(id, Relocation::Mailbox(trash))])
                .await
                .unwrap(),
            _ => kept.push(id),
        }
    }
    let common = TextQuery {
        all: vec!["common".into()],
        ..everything()
    };
    assert_eq!(index.count(&user, &common).await.unwrap(), 18);
    let in_trash = index.ids_in(&user, &trash).await.unwrap();
    assert_eq!(in_trash.len(), 6);
    let listed = |dir: &std::path::Path| -> BTreeSet<String> {
        match std::fs::read_dir(dir.join("blobs/search").join(user.to_string())) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    };
    let pointer = table
        .get(&keys::search_index(&user))
        .await
        .unwrap()
        .unwrap();
    let named: BTreeSet<String> = pointer.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(!named.is_empty());
    assert_eq!(listed(dir.path()), named, "no file left over, none missing");
    assert_eq!(pointer.counter("generation"), 24 + 12);
    // A fresh instance reads the same from the files alone.
    let fresh = BlobTextIndex::new(
        table.clone(),
        keys::search_index,
        blobs.clone(),
        &dir.path().join("cache2"),
    );
    assert_eq!(fresh.count(&user, &common).await.unwrap(), 18);
    let placed = fresh.placements(&user, &kept).await.unwrap();
    assert_eq!(placed.len(), kept.len());
    // The user purged: files and pointer gone, searches find nothing.
    fresh.forget_user(&user).await.unwrap();
    assert!(listed(dir.path()).is_empty());
    assert!(
        table
            .get(&keys::search_index(&user))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(index.count(&user, &common).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_of_one_user_at_once_share_a_commit() {
    let backend = eider_tests::backends::moto().await;
    let cache = tempfile::tempdir().unwrap();
    let index = BlobTextIndex::new(
        backend.table.clone(),
        keys::search_index,
        backend.blobs.clone(),
        cache.path(),
    );
    let (user, mailbox) = (ObjectId::new(), ObjectId::new());
    let puts = (0..20).map(|n| {
        let word = format!("g{n}");
        let doc = indexed(user, mailbox, &["grouped", &word]);
        let index = &index;
        async move { index.put(vec![doc]).await }
    });
    for done in futures::future::join_all(puts).await {
        done.unwrap();
    }
    let grouped = TextQuery {
        all: vec!["grouped".into()],
        ..everything()
    };
    assert_eq!(index.count(&user, &grouped).await.unwrap(), 20);
    // While one commit ran, the others queued and went in together.
    let pointer = backend
        .table
        .get(&keys::search_index(&user))
        .await
        .unwrap()
        .unwrap();
    let commits = pointer.counter("generation");
    assert!(commits <= 3, "20 changes in {commits} commits");
}
