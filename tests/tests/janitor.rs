//! The janitor: data set up through the API, then `janitor::run` with a `now` in the future
//! (so nothing waits for real time), checked through the API and by reading every partition
//! a user's data lives in. Every test runs on the embedded store and on DynamoDB + S3 served by
//! moto. The last tests invoke the Lambda handler itself with the sample scheduled event.

use std::collections::BTreeSet;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use eider_shared::domain::janitor::{self, Budget, Report};
use eider_shared::domain::messages::{self, Message};
use eider_shared::domain::{keys, mailboxes, stats, users};
use eider_shared::http::{AppState, finish};
use eider_shared::id::ObjectId;
use eider_shared::mail::parse;
use eider_shared::store::{Condition, Index, Item, Query, Update, Write, query_all};
use eider_tests::app::TestApp;
use eider_tests::faults::{FailingBlobDeletes, FailingWrites};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    expired_messages_are_archived_with_exact_counters_and_quota,
    archived_messages_past_their_time_go_with_their_blobs,
    a_deleted_user_is_purged_completely_over_several_runs,
    a_deleted_mailbox_left_by_a_failed_request_is_drained,
    a_cut_short_run_reports_more_work_and_the_next_one_continues,
    the_blob_of_an_upload_that_died_before_its_commit_is_reclaimed,
);

const SIMPLE: &str = "From: Sender Name <sender@example.com>\r\nTo: Test User <testuser@example.com>\r\nSubject: Quarterly report\r\nMessage-ID: <first@example.com>\r\nDate: Wed, 02 Nov 2011 19:19:08 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there, this is the quarterly report.\r\n";

const REPLY: &str = "From: Test User <testuser@example.com>\r\nTo: Sender Name <sender@example.com>\r\nSubject: Re: Quarterly report\r\nMessage-ID: <second@example.com>\r\nIn-Reply-To: <first@example.com>\r\nReferences: <first@example.com>\r\nDate: Thu, 03 Nov 2011 08:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThanks, numbers look fine.\r\n";

fn with_attachment() -> String {
    let png = STANDARD.encode(b"\x89PNG\r\n\x1a\nfake image bytes");
    format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: With file\r\nMessage-ID: <third@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See <b>attached</b></p>\r\n--XX\r\nContent-Type: image/png; name=\"dot.png\"\r\nContent-Disposition: attachment; filename=\"dot.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{png}\r\n--XX--\r\n"
    )
}

fn later(duration: Duration) -> DateTime<Utc> {
    Utc::now() + duration
}

/// Runs the janitor once with a generous budget.
async fn run(app: &TestApp, now: DateTime<Utc>) -> Report {
    janitor::run(&app.state, now, Budget::items(1_000_000))
        .await
        .expect("janitor run")
}

async fn new_user(app: &TestApp, body: Value) -> String {
    app.create_user(body).await
}

async fn create_mailbox(app: &TestApp, user: &str, body: Value) -> String {
    let (status, created) = app.post(&format!("/users/{user}/mailboxes"), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["id"].as_str().unwrap().to_string()
}

async fn archived_total(app: &TestApp, user: &str) -> u64 {
    let (status, body) = app.get(&format!("/users/{user}/archived")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["total"].as_u64().unwrap()
}

fn oid(id: &str) -> ObjectId {
    id.parse().unwrap()
}

/// Every live item of a table partition.
async fn partition(app: &TestApp, pk: &str) -> Vec<Item> {
    query_all(app.table().as_ref(), Query::table(pk).limit(500))
        .await
        .unwrap()
}

/// The messages of a mailbox as stored.
async fn stored_messages(app: &TestApp, user: &str, mailbox: &str) -> Vec<Message> {
    partition(app, &keys::messages_pk(&oid(user), &oid(mailbox)))
        .await
        .iter()
        .map(|i| messages::from_item(i).unwrap())
        .collect()
}

/// Adds `count` copies of the mailbox's first message straight through the storage port
/// (item, pointer, blob, counters and quota as an upload would write them): hundreds of
/// uploads through the API would only make the test slow.
async fn add_copies(app: &TestApp, user: &str, mailbox: &str, count: usize) {
    let (u, m) = (oid(user), oid(mailbox));
    let table = app.table();
    let original = stored_messages(app, user, mailbox).await.remove(0);
    let raw = app.state.blobs.get(&original.blob).await.unwrap().unwrap();
    let target = mailboxes::load(&app.state, &u, &m).await.unwrap();
    let counter = table
        .update(
            &keys::mailbox(&u, &m),
            Update::default().add(mailboxes::UID_NEXT, count as i64),
            Some(Condition::Exists.labeled(mailboxes::MAILBOX_GONE)),
        )
        .await
        .unwrap();
    let first = (counter.counter(mailboxes::UID_NEXT) - count as i64) as u32;
    let copies: Vec<Message> = (0..count)
        .map(|i| {
            let mut copy = original.clone();
            copy.id = ObjectId::new();
            copy.uid = first + i as u32;
            copy.blob = keys::message_blob(&u, &copy.id);
            copy
        })
        .collect();
    for chunk in copies.chunks(16) {
        let puts = chunk
            .iter()
            .map(|c| app.state.blobs.put(&c.blob, raw.clone()));
        for result in futures::future::join_all(puts).await {
            result.unwrap();
        }
    }
    for chunk in copies.chunks(50) {
        let mut writes = Vec::new();
        for copy in chunk {
            writes.push(Write::put_new(copy.item(&target), messages::UID_TAKEN));
            writes.push(Write::put(Item::new(
                keys::message_pointer(&u, &copy.id),
                json!({ "mailbox": m, "uid": copy.uid }),
            )));
        }
        table.transact(writes).await.unwrap();
    }
    let n = count as i64;
    let size = original.size as i64;
    table
        .transact(vec![
            Write::Update {
                key: keys::mailbox(&u, &m),
                update: Update::default()
                    .add(mailboxes::TOTAL, n)
                    .add(mailboxes::UNSEEN, n * i64::from(!original.seen))
                    .add(mailboxes::SIZE, n * size)
                    .add(mailboxes::MODIFY_INDEX, 1),
                guard: Some(Condition::Exists.labeled(mailboxes::MAILBOX_GONE)),
            },
            Write::Update {
                key: keys::user(&u),
                update: Update::default().add(users::STORAGE_USED, n * size),
                guard: Some(Condition::Exists.labeled(users::USER_GONE)),
            },
        ])
        .await
        .unwrap();
}

/// Adds up the reports of runs until one has no more work; returns the sum and the runs made.
async fn run_until_done(app: &TestApp, now: DateTime<Utc>, budget: Budget) -> (Report, usize) {
    let mut total = Report::default();
    for runs in 1..=1000 {
        let report = janitor::run(&app.state, now, budget)
            .await
            .expect("janitor run");
        total.messages_expired += report.messages_expired;
        total.archived_purged += report.archived_purged;
        total.users_purged += report.users_purged;
        total.mailboxes_drained += report.mailboxes_drained;
        total.messages_drained += report.messages_drained;
        total.messages_purged += report.messages_purged;
        total.blobs_deleted += report.blobs_deleted;
        total.items_deleted += report.items_deleted;
        if !report.more_work {
            return (total, runs);
        }
    }
    panic!("the janitor never finished");
}

// ---------------------------------------------------------------------------------------------

async fn expired_messages_are_archived_with_exact_counters_and_quota(app: TestApp) {
    let user = new_user(&app, json!({"username": "expiring", "password": "pw"})).await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let short = create_mailbox(
        &app,
        &user,
        json!({"path": "Short", "retention": 3_600_000}),
    )
    .await;
    app.upload_ok(&user, &short, SIMPLE, json!({"unseen": true}))
        .await;
    app.upload_ok(&user, &short, REPLY, json!({"flagged": true}))
        .await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    let total_size = (2 * SIMPLE.len() + REPLY.len()) as u64;
    assert_eq!(app.storage_used(&user).await, total_size);

    // Nothing is due yet.
    let report = run(&app, Utc::now()).await;
    assert_eq!(report, Report::default());
    assert_eq!(app.counters(&user, &short).await, (2, 1));

    // Two hours on: the Short folder's retention (an hour) is over.
    let now = later(Duration::hours(2));
    let report = run(&app, now).await;
    assert_eq!(report.messages_expired, 2, "{report:?}");
    assert!(!report.more_work);
    assert_eq!(
        report.blobs_deleted, 0,
        "archived messages keep their source"
    );
    assert_eq!(app.counters(&user, &short).await, (0, 0));
    assert_eq!(app.counters(&user, &inbox).await, (1, 0));
    assert_eq!(app.storage_used(&user).await, SIMPLE.len() as u64);
    assert_eq!(archived_total(&app, &user).await, 2);
    let (_, flagged) = app.get(&format!("/users/{user}/flagged")).await;
    assert_eq!(flagged["total"], 0, "{flagged}");
    let journal = partition(&app, &keys::journal_pk(&oid(&user))).await;
    let expunged = journal
        .iter()
        .filter(|e| e.body["command"] == "EXPUNGE" && e.body["mailbox"] == short.as_str())
        .count();
    assert_eq!(expunged, 2);
    let (_, archived) = app.get(&format!("/users/{user}/archived")).await;
    let hex = archived["results"][0]["id"].as_str().unwrap();
    let (status, details) = app.get(&format!("/users/{user}/archived/{hex}")).await;
    assert_eq!(status, StatusCode::OK, "{details}");

    // Again at the same time: nothing left to do.
    assert_eq!(run(&app, now).await, Report::default());
}

async fn archived_messages_past_their_time_go_with_their_blobs(app: TestApp) {
    let user = new_user(&app, json!({"username": "archiver", "password": "pw"})).await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let uid = app
        .upload_ok(&user, &inbox, &with_attachment(), json!({}))
        .await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    let (status, _) = app
        .delete(&format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(archived_total(&app, &user).await, 1);
    let archive = partition(&app, &keys::archive_pk(&oid(&user))).await;
    assert_eq!(archive.len(), 1);
    let blob = archive[0].body["message"]["blob"]
        .as_str()
        .unwrap()
        .to_string();
    let message: ObjectId = oid(archive[0].body["message"]["id"].as_str().unwrap());
    let events_pk = keys::message_events_pk(&oid(&user), &message);
    assert!(!partition(&app, &events_pk).await.is_empty());
    assert!(app.state.blobs.get(&blob).await.unwrap().is_some());

    // Kept 14 days: not yet after 13.
    let report = run(&app, later(Duration::days(13))).await;
    assert_eq!(report, Report::default());
    assert_eq!(archived_total(&app, &user).await, 1);

    let now = later(Duration::days(15));
    let report = run(&app, now).await;
    assert_eq!(report.archived_purged, 1, "{report:?}");
    assert_eq!(report.blobs_deleted, 1);
    assert!(report.items_deleted >= 2, "{report:?}");
    assert_eq!(archived_total(&app, &user).await, 0);
    let (_, list) = app.get(&format!("/users/{user}/archived")).await;
    assert_eq!(list["results"], json!([]));
    assert!(
        partition(&app, &keys::archive_pk(&oid(&user)))
            .await
            .is_empty()
    );
    assert!(partition(&app, &events_pk).await.is_empty());
    assert!(app.state.blobs.get(&blob).await.unwrap().is_none());
    // The live message is untouched.
    assert_eq!(app.counters(&user, &inbox).await, (1, 0));
    assert_eq!(app.storage_used(&user).await, SIMPLE.len() as u64);

    assert_eq!(run(&app, now).await, Report::default());
}

async fn a_deleted_user_is_purged_completely_over_several_runs(app: TestApp) {
    let user = new_user(
        &app,
        json!({"username": "leaver", "password": "pw", "address": "leaver@example.com"}),
    )
    .await;
    let u = oid(&user);
    for address in ["second@example.com", "third@example.com"] {
        let (status, body) = app
            .post(
                &format!("/users/{user}/addresses"),
                json!({"address": address}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, asp) = app
        .post(
            &format!("/users/{user}/asps"),
            json!({"description": "mail app"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asp}");
    // A failed login leaves an authlog entry and a brute-force window.
    app.post(
        "/authenticate",
        json!({"username": "leaver", "password": "wrong"}),
    )
    .await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let folder = create_mailbox(&app, &user, json!({"path": "Projects/Eider"})).await;
    let raws = [SIMPLE.to_string(), REPLY.to_string(), with_attachment()];
    app.upload_ok(&user, &inbox, &raws[0], json!({"flagged": true}))
        .await;
    app.upload_ok(&user, &folder, &raws[1], json!({})).await;
    app.upload_ok(&user, &folder, &raws[2], json!({"unseen": true}))
        .await;
    let doomed = app.upload_ok(&user, &inbox, &raws[1], json!({})).await;
    let (status, _) = app
        .delete(&format!(
            "/users/{user}/mailboxes/{inbox}/messages/{doomed}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);

    // What the user has, to check afterwards that all of it is gone.
    let (_, boxes) = app.get(&format!("/users/{user}/mailboxes")).await;
    let mailbox_ids: Vec<ObjectId> = boxes["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| oid(m["id"].as_str().unwrap()))
        .collect();
    assert_eq!(mailbox_ids.len(), 7);
    let pointers = partition(&app, &keys::message_pointers_pk(&u)).await;
    let mut message_ids: Vec<ObjectId> = pointers.iter().map(|p| oid(&p.sk)).collect();
    let archive = partition(&app, &keys::archive_pk(&u)).await;
    message_ids.push(oid(archive[0].body["message"]["id"].as_str().unwrap()));
    assert_eq!(message_ids.len(), 4);
    let mut terms = BTreeSet::new();
    let mut refs = BTreeSet::new();
    for raw in &raws {
        let parsed = parse::parse(raw.as_bytes());
        terms.extend(parsed.search_terms);
        refs.extend(parsed.thread_refs);
    }
    assert!(!terms.is_empty() && !refs.is_empty());
    // Indexed: as term items, or in the full-text index (the embedded backend's).
    let indexed_ids = async |app: &TestApp| {
        let mut ids = BTreeSet::new();
        if let Some(index) = &app.state.text_index {
            for mailbox in &mailbox_ids {
                ids.extend(index.ids_in(&u, mailbox).await.unwrap());
            }
        }
        ids
    };
    if let Some(index) = &app.state.text_index {
        index.settle().await.unwrap();
        assert_eq!(indexed_ids(&app).await.len(), 3, "live messages indexed");
    } else {
        for term in &terms {
            assert!(
                !partition(&app, &keys::search_term_pk(&u, term))
                    .await
                    .is_empty(),
                "term {term} is not indexed"
            );
        }
    }
    let thread_pk = |r: &str| keys::thread_ref(&u, r, "x").pk;
    for r in &refs {
        assert!(!partition(&app, &thread_pk(r)).await.is_empty(), "ref {r}");
    }
    let addresses = partition(&app, &keys::user_pk(&u))
        .await
        .into_iter()
        .filter(|i| i.sk.starts_with(keys::ADDRESS_SK_PREFIX))
        .collect::<Vec<_>>();
    assert_eq!(addresses.len(), 3);

    let (status, deleted) = app.delete(&format!("/users/{user}")).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");

    // A partial delete: the follow-up transaction for two addresses failed, so their items
    // (and the global count) stayed. Meanwhile someone else took one of the two addresses.
    let keep = addresses
        .iter()
        .find(|a| a.body["address"] == "second@example.com")
        .unwrap();
    let retaken = addresses
        .iter()
        .find(|a| a.body["address"] == "third@example.com")
        .unwrap();
    let other = new_user(
        &app,
        json!({"username": "newcomer", "password": "pw", "address": "third@example.com"}),
    )
    .await;
    let keep_claim = keys::address_claim(keep.body["addrview"].as_str().unwrap());
    app.table()
        .transact(vec![
            Write::put(keep.clone()),
            Write::put(retaken.clone()),
            Write::put(Item::new(
                keep_claim.clone(),
                json!({"user": user, "id": keep.body["id"], "address": "second@example.com"}),
            )),
            stats::change(&[(stats::ADDRESSES, 2)]),
        ])
        .await
        .unwrap();

    // Not due before two days.
    let report = run(&app, later(Duration::days(1))).await;
    assert_eq!(report, Report::default());
    assert!(!partition(&app, &keys::user_pk(&u)).await.is_empty());

    // A small budget: several runs, each making progress.
    let now = later(Duration::days(3));
    let (total, runs) = run_until_done(&app, now, Budget::items(10)).await;
    assert!(runs >= 3, "{runs} runs: {total:?}");
    assert_eq!(total.users_purged, 1, "{total:?}");
    assert_eq!(total.messages_purged, 3, "{total:?}");
    assert_eq!(total.archived_purged, 1, "{total:?}");
    assert_eq!(total.messages_expired, 0, "{total:?}");
    assert!(total.blobs_deleted >= 4, "{total:?}");

    // No item of any kind is left under the user's partitions.
    let mut pks = vec![
        keys::user_pk(&u),
        keys::message_pointers_pk(&u),
        keys::archive_pk(&u),
        keys::journal_pk(&u),
        keys::autoreply_sent(&u, "").pk,
        keys::deleted_user(&u).pk,
    ];
    pks.extend(mailbox_ids.iter().map(|m| keys::messages_pk(&u, m)));
    pks.extend(message_ids.iter().map(|m| keys::message_events_pk(&u, m)));
    pks.extend(terms.iter().map(|t| keys::search_term_pk(&u, t)));
    pks.extend(refs.iter().map(|r| thread_pk(r)));
    for pk in &pks {
        let left = partition(&app, pk).await;
        assert!(left.is_empty(), "{pk}: {left:?}");
    }
    if let Some(index) = &app.state.text_index {
        index.settle().await.unwrap();
        assert!(
            indexed_ids(&app).await.is_empty(),
            "left in the search index"
        );
    }
    let flagged = app
        .table()
        .query(&Query::index(Index::Gsi1, keys::flagged_pk(&u)))
        .await
        .unwrap();
    assert!(flagged.items.is_empty());
    for message in &message_ids {
        let blob = keys::message_blob(&u, message);
        assert!(
            app.state.blobs.get(&blob).await.unwrap().is_none(),
            "{blob}"
        );
    }
    // The retaken address stays with its new owner; the others are free again, as is the
    // username.
    let claim = app
        .table()
        .get(&keys::address_claim(
            retaken.body["addrview"].as_str().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.body["user"], other.as_str());
    assert!(app.table().get(&keep_claim).await.unwrap().is_none());
    new_user(
        &app,
        json!({"username": "leaver", "password": "pw", "address": "leaver@example.com"}),
    )
    .await;
    let (status, body) = app
        .post(
            &format!("/users/{other}/addresses"),
            json!({"address": "second@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The global address count is exact again: what it says is what is listed.
    let (_, listed) = app.get("/addresses?limit=250").await;
    assert_eq!(
        listed["total"].as_u64().unwrap() as usize,
        listed["results"].as_array().unwrap().len(),
        "{listed}"
    );

    assert_eq!(run(&app, now).await, Report::default());
}

/// Embedded only: moto deep-copies the whole table (with its stream records) for every write
/// of every transaction, so draining 500 messages there grows quadratically (it reached 24 GB
/// of memory). The moto variant below leaves the work to the janitor by a failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_mailbox_larger_than_the_request_budget_is_drained() {
    let app = TestApp::embedded().await;
    let user = new_user(&app, json!({"username": "hoarder", "password": "pw"})).await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let big = create_mailbox(&app, &user, json!({"path": "Big"})).await;
    app.upload_ok(&user, &big, SIMPLE, json!({"unseen": true}))
        .await;
    app.upload_ok(&user, &big, REPLY, json!({})).await;
    app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    // The request that deletes a mailbox archives at most 500 of its messages.
    add_copies(&app, &user, &big, 518).await;
    assert_eq!(app.counters(&user, &big).await, (520, 519));
    let before = app.storage_used(&user).await;
    // Big: SIMPLE, REPLY and 518 copies of SIMPLE; INBOX: SIMPLE.
    assert_eq!(before, (520 * SIMPLE.len() + REPLY.len()) as u64);

    let (status, body) = app.delete(&format!("/users/{user}/mailboxes/{big}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let left = stored_messages(&app, &user, &big).await.len();
    assert_eq!(left, 20, "the request drains 500");
    let (u, m) = (oid(&user), oid(&big));
    assert!(
        app.table()
            .get(&keys::deleted_mailbox(&u, &m))
            .await
            .unwrap()
            .is_some()
    );

    // The janitor leaves a fresh task to the request for a few minutes, then finishes it.
    assert_eq!(run(&app, Utc::now()).await, Report::default());
    let now = later(Duration::hours(1));
    let report = run(&app, now).await;
    assert_eq!(report.mailboxes_drained, 1, "{report:?}");
    assert_eq!(report.messages_drained, 20, "{report:?}");
    assert!(!report.more_work);
    assert!(stored_messages(&app, &user, &big).await.is_empty());
    assert!(
        app.table()
            .get(&keys::deleted_mailbox(&u, &m))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(archived_total(&app, &user).await, 520);
    assert_eq!(app.storage_used(&user).await, SIMPLE.len() as u64);
    assert_eq!(app.counters(&user, &inbox).await, (1, 0));

    assert_eq!(run(&app, now).await, Report::default());
}

async fn a_deleted_mailbox_left_by_a_failed_request_is_drained(app: TestApp) {
    let user = new_user(&app, json!({"username": "interrupted", "password": "pw"})).await;
    let folder = create_mailbox(&app, &user, json!({"path": "Folder"})).await;
    app.upload_ok(&user, &folder, SIMPLE, json!({"unseen": true}))
        .await;
    app.upload_ok(&user, &folder, REPLY, json!({"draft": true}))
        .await;
    add_copies(&app, &user, &folder, 28).await;
    assert_eq!(app.counters(&user, &folder).await, (30, 29));
    // The request's first archiving transaction fails, as if its process had died.
    let TestApp { backend, .. } = app;
    let failing = std::sync::Arc::new(eider_tests::faults::FailingWrites::new(
        backend.table.clone(),
        keys::ARCHIVE_PK_PREFIX,
        1,
    ));
    let app = TestApp::new(backend.with_table(failing), eider_tests::app::test_config());
    // The mailbox is deleted all the same: the answer says so, the janitor archives the rest.
    let (status, body) = app
        .delete(&format!("/users/{user}/mailboxes/{folder}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.get(&format!("/users/{user}/mailboxes/{folder}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the mailbox is gone at once");
    assert_eq!(stored_messages(&app, &user, &folder).await.len(), 30);

    // Two drains at once (a request's and the janitor's) read the same messages: the one that
    // loses archives nothing and fails nothing.
    let (u, m) = (oid(&user), oid(&folder));
    let (a, b) = tokio::join!(
        messages::drain_deleted_mailbox(&app.state, &u, &m, 10),
        messages::drain_deleted_mailbox(&app.state, &u, &m, 10),
    );
    let drained = a.unwrap() + b.unwrap();
    assert!((10..=20).contains(&drained), "{drained}");
    assert_eq!(
        stored_messages(&app, &user, &folder).await.len(),
        30 - drained
    );

    let now = later(Duration::hours(1));
    let report = run(&app, now).await;
    assert_eq!(report.mailboxes_drained, 1, "{report:?}");
    assert_eq!(report.messages_drained, 30 - drained, "{report:?}");
    assert!(stored_messages(&app, &user, &folder).await.is_empty());
    // The draft is not archived; its blob goes.
    assert_eq!(archived_total(&app, &user).await, 29);
    assert_eq!(app.storage_used(&user).await, 0);
    assert!(
        partition(&app, &keys::message_pointers_pk(&oid(&user)))
            .await
            .is_empty()
    );
    assert_eq!(run(&app, now).await, Report::default());
}

async fn the_blob_of_an_upload_that_died_before_its_commit_is_reclaimed(mut app: TestApp) {
    let user = new_user(&app, json!({"username": "crashed", "password": "pw"})).await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    // As if the process died after writing the blob: the commit fails, and so does every blob
    // delete that would clean up after it.
    let healthy = (app.router.clone(), app.state.clone());
    app.state = AppState::new(
        std::sync::Arc::new(FailingWrites::new(app.state.table.clone(), "MSGS#", 1)),
        std::sync::Arc::new(FailingBlobDeletes::new(app.state.blobs.clone())),
        (*healthy.1.config).clone(),
    );
    app.router = finish(eider_local::router(), app.state.clone());
    let (status, body) = app
        .post(
            &format!("/users/{user}/mailboxes/{inbox}/messages"),
            json!({ "raw": STANDARD.encode(SIMPLE) }),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    (app.router, app.state) = healthy;

    // The blob stayed behind, findable through its marker.
    let markers = partition(&app, &format!("{}{user}", keys::PENDING_BLOB_PK_PREFIX)).await;
    assert_eq!(markers.len(), 1, "{markers:?}");
    let blob = markers[0].body["blob"].as_str().unwrap().to_string();
    assert!(app.state.blobs.get(&blob).await.unwrap().is_some());
    assert_eq!(app.counters(&user, &inbox).await, (0, 0));

    // Not yet due: a slow upload may still commit.
    assert_eq!(run(&app, Utc::now()).await, Report::default());
    // Due an hour later: the blob and its marker go.
    let report = run(&app, later(Duration::hours(2))).await;
    assert_eq!(
        (
            report.uploads_reclaimed,
            report.blobs_deleted,
            report.items_deleted
        ),
        (1, 1, 1),
        "{report:?}"
    );
    assert!(app.state.blobs.get(&blob).await.unwrap().is_none());
    assert!(
        partition(&app, &format!("{}{user}", keys::PENDING_BLOB_PK_PREFIX))
            .await
            .is_empty()
    );
    assert_eq!(
        run(&app, later(Duration::hours(2))).await,
        Report::default()
    );

    // A committed upload leaves no marker, and the janitor never touches its blob.
    let uid = app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    assert!(
        partition(&app, &format!("{}{user}", keys::PENDING_BLOB_PK_PREFIX))
            .await
            .is_empty()
    );
    assert_eq!(
        run(&app, later(Duration::hours(2))).await,
        Report::default()
    );
    let request = http::Request::get(format!(
        "/users/{user}/mailboxes/{inbox}/messages/{uid}/message.eml"
    ))
    .body(axum::body::Body::empty())
    .unwrap();
    let (status, _, source) = app.send_raw(request).await;
    assert_eq!((status, &source[..]), (StatusCode::OK, SIMPLE.as_bytes()));
}

async fn a_cut_short_run_reports_more_work_and_the_next_one_continues(app: TestApp) {
    let user = new_user(&app, json!({"username": "budget", "password": "pw"})).await;
    let short = create_mailbox(&app, &user, json!({"path": "Short", "retention": 60_000})).await;
    for _ in 0..6 {
        app.upload_ok(&user, &short, SIMPLE, json!({"unseen": true}))
            .await;
    }
    let now = later(Duration::hours(1));

    // A deadline already passed: no batch starts.
    let report = janitor::run(&app.state, now, Budget::items(1000).until(Instant::now()))
        .await
        .unwrap();
    assert!(report.more_work, "{report:?}");
    assert_eq!(report.items_deleted, 0);
    assert_eq!(app.counters(&user, &short).await, (6, 6));

    // Three items per run: each run stops after one batch.
    let first = janitor::run(&app.state, now, Budget::items(3))
        .await
        .unwrap();
    assert!(first.more_work, "{first:?}");
    assert!((1..6).contains(&first.messages_expired), "{first:?}");
    let (rest, runs) = run_until_done(&app, now, Budget::items(3)).await;
    assert!(runs >= 2, "{runs}");
    assert_eq!(first.messages_expired + rest.messages_expired, 6);
    assert_eq!(app.counters(&user, &short).await, (0, 0));
    assert_eq!(app.storage_used(&user).await, 0);
    assert_eq!(archived_total(&app, &user).await, 6);
}

// ---------------------------------------------------------------------------------------------
// The Lambda handler

fn scheduled_event() -> Value {
    let path = format!(
        "{}/../infra/events/janitor-schedule.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn lambda_context(seconds_left: u64) -> lambda_runtime::Context {
    let mut context = lambda_runtime::Context::default();
    let now_ms = Utc::now().timestamp_millis() as u64;
    context.deadline = now_ms + seconds_left * 1000;
    context.request_id = "test-request".into();
    context
}

#[tokio::test]
async fn the_lambda_handler_purges_on_the_sample_scheduled_event() {
    let app = TestApp::embedded().await;
    let user = new_user(&app, json!({"username": "lambda", "password": "pw"})).await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let uid = app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    // Expired a minute ago: due for the run the handler makes now.
    let expired = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    let (status, body) = app
        .put(
            &format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"),
            json!({"expires": expired}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let event = lambda_runtime::LambdaEvent::new(scheduled_event(), lambda_context(300));
    let report = eider_janitor::handle(&app.state, event).await.unwrap();
    assert_eq!(report.messages_expired, 1, "{report:?}");
    assert!(!report.more_work);
    let answer = serde_json::to_value(&report).unwrap();
    assert_eq!(answer["messagesExpired"], 1);
    assert_eq!(app.counters(&user, &inbox).await, (0, 0));
    assert_eq!(archived_total(&app, &user).await, 1);

    // The next tick finds nothing.
    let event = lambda_runtime::LambdaEvent::new(scheduled_event(), lambda_context(300));
    let report = eider_janitor::handle(&app.state, event).await.unwrap();
    assert_eq!(report, Report::default());
}

#[tokio::test]
async fn the_lambda_handler_stops_in_time_when_the_deadline_is_near() {
    let app = TestApp::embedded().await;
    let user = new_user(&app, json!({"username": "late", "password": "pw"})).await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let uid = app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
    let expired = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    app.put(
        &format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"),
        json!({"expires": expired}),
    )
    .await;
    // The deadline has passed already: the run starts nothing and says so.
    let event = lambda_runtime::LambdaEvent::new(scheduled_event(), lambda_context(0));
    let report = eider_janitor::handle(&app.state, event).await.unwrap();
    assert!(report.more_work, "{report:?}");
    assert_eq!(report.messages_expired, 0);
    assert_eq!(app.counters(&user, &inbox).await, (1, 0));
}

/// Measures how fast a deleted user's items go (run by hand:
/// `cargo test -p eider-tests --test janitor -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn purge_rate() {
    for app in [TestApp::embedded().await, TestApp::moto().await] {
        let name = app.backend.name;
        let user = new_user(&app, json!({"username": "bulk", "password": "pw"})).await;
        let inbox = app.mailbox_id(&user, "INBOX").await;
        app.upload_ok(&user, &inbox, SIMPLE, json!({})).await;
        // moto copies the table for every write of a transaction: keep it small there.
        let copies = if name == "moto" { 99 } else { 999 };
        add_copies(&app, &user, &inbox, copies).await;
        let (status, _) = app.delete(&format!("/users/{user}")).await;
        assert_eq!(status, StatusCode::OK);
        let started = Instant::now();
        let (total, runs) =
            run_until_done(&app, later(Duration::days(3)), Budget::items(100_000)).await;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {} messages, {} items, {} blobs in {secs:.2} s over {runs} run(s): {:.0} items/s, {:.0} messages/s",
            total.messages_purged,
            total.items_deleted,
            total.blobs_deleted,
            total.items_deleted as f64 / secs,
            total.messages_purged as f64 / secs,
        );
    }
}

/// What `GET /users/{user}/search?query=harbour` counts.
async fn harbour_matches(app: &TestApp, user: &str) -> u64 {
    let (status, found) = app
        .get(&format!("/users/{user}/search?query=harbour"))
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found["total"].as_u64().unwrap()
}

/// Messages stored while nothing indexed them (records the stream indexer gave up on): the
/// cloud's bucket index lacks them until an operator invokes the janitor with
/// `reconcileSearch`, for one user, or for all of them over as many invocations as it takes.
#[tokio::test]
async fn the_lambda_handler_repairs_search_indexes_on_request() {
    let app = TestApp::moto().await;
    let index = app.state.text_index.clone().expect("moto's bucket index");
    let unindexed = app.with_state(|mut state| {
        state.parts_mut().text_index = None;
        state
    });
    let mut users = Vec::new();
    for (name, count) in [("alice", 3), ("bob", 2), ("carol", 1)] {
        let user = new_user(&unindexed, json!({"username": name, "password": "pw"})).await;
        let inbox = unindexed.mailbox_id(&user, "INBOX").await;
        for n in 0..count {
            let raw = format!(
                "From: a@example.com\r\nSubject: Note {n}\r\n\r\nThe harbour at dawn, {n}.\r\n"
            );
            unindexed.upload_ok(&user, &inbox, &raw, json!({})).await;
        }
        users.push(user);
    }
    let app = unindexed.with_state(|mut state| {
        state.parts_mut().text_index = Some(index);
        state
    });
    for user in &users {
        assert_eq!(harbour_matches(&app, user).await, 0);
    }
    let invoke = |payload: Value, seconds_left: u64| {
        let event = lambda_runtime::LambdaEvent::new(payload, lambda_context(seconds_left));
        eider_janitor::dispatch(&app.state, event)
    };

    // One user.
    let answer = invoke(json!({"reconcileSearch": {"user": users[0]}}), 300)
        .await
        .unwrap();
    assert_eq!(
        (&answer["users"], &answer["added"], &answer["next"]),
        (&json!(1), &json!(3), &Value::Null),
        "{answer}"
    );
    assert_eq!(harbour_matches(&app, &users[0]).await, 3);
    assert_eq!(harbour_matches(&app, &users[1]).await, 0);

    // Everyone, with no time left: one user per invocation, each answer saying where to go on.
    let mut after = Value::Null;
    let mut added = 0;
    for _ in 0..users.len() {
        let answer = invoke(json!({"reconcileSearch": {"after": after}}), 0)
            .await
            .unwrap();
        assert_eq!(answer["users"], 1, "{answer}");
        added += answer["added"].as_u64().unwrap();
        after = answer["next"].clone();
        if after.is_null() {
            break;
        }
    }
    assert!(
        after.is_null(),
        "every user done within {} calls",
        users.len()
    );
    // Alice was in line already; Bob and Carol were not.
    assert_eq!(added, 3);
    for (user, want) in users.iter().zip([3, 2, 1]) {
        assert_eq!(harbour_matches(&app, user).await, want);
    }

    // All at once changes nothing more; a bad id is refused without touching anything.
    let answer = invoke(json!({"reconcileSearch": {}}), 300).await.unwrap();
    assert_eq!(
        (&answer["users"], &answer["added"], &answer["removed"]),
        (&json!(3), &json!(0), &json!(0)),
        "{answer}"
    );
    let refused = invoke(json!({"reconcileSearch": {"user": "nobody"}}), 300).await;
    assert!(refused.unwrap_err().to_string().contains("not a user id"));
}
