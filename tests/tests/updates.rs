//! The updates stream over a real HTTP connection: every router merged and served on a loopback
//! socket, changes made through the API, events read as a client reads them. Every test runs
//! on the embedded store and on DynamoDB + S3 served by moto, with the in-process notifier the
//! local server uses (and once without it, polling, as in Lambda).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use eider_shared::config::Config;
use eider_shared::domain::keys;
use eider_shared::domain::updates::LocalNotifier;
use eider_shared::http::{AppState, finish};
use eider_shared::id::ObjectId;
use eider_shared::store::Write;
use eider_tests::app::{TestApp, test_config};
use eider_tests::backends::Backend;
use eider_tests::sse::{Frame, SseReader, serve};
use futures::StreamExt;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    backend:
    stream_delivers_api_changes_in_order_with_wildduck_fields,
    reconnecting_with_last_event_id_delivers_each_change_exactly_once,
    reconnecting_during_a_burst_of_concurrent_changes_loses_and_repeats_nothing,
    fresh_stream_sends_no_backlog_and_its_position_at_once,
    replay_ends_with_counters_of_the_touched_mailboxes,
    expired_or_unknown_last_event_id_gets_a_resync_event,
    errors_are_json_before_the_stream_starts,
    idle_stream_sends_keepalives_and_ends_at_its_lifetime,
    a_failed_change_holds_later_events_back_only_for_the_grace,
    a_change_refused_by_a_condition_leaves_no_gap_to_wait_for,
    without_a_notifier_the_stream_polls_the_journal,
);

const WAIT: Duration = Duration::from_secs(20);

const SIMPLE: &str = "From: Sender <sender@example.com>\r\nTo: Test <testuser@example.com>\r\nSubject: Hello\r\nMessage-ID: <upd@example.com>\r\nDate: Wed, 02 Nov 2011 19:19:08 +0000\r\n\r\nHello there.\r\n";

/// The server under test, reached over HTTP.
struct Live {
    app: TestApp,
    base: String,
    client: reqwest::Client,
    notifier: Option<Arc<LocalNotifier>>,
}

fn config() -> Config {
    let mut config = test_config();
    config.updates.gap_grace = Duration::from_secs(2);
    config.updates.poll = Duration::from_millis(100);
    config
}

/// Serves every router on a loopback port; `push`: with the local server's notifier.
async fn live(backend: Backend, config: Config, push: bool) -> Live {
    let mut state = AppState::new(backend.table.clone(), backend.blobs.clone(), config);
    let notifier = push.then(|| Arc::new(LocalNotifier::new()));
    if let Some(notifier) = &notifier {
        state = state.with_notifier(notifier.clone());
    }
    let router = finish(eider_local::router(), state.clone());
    let base = serve(router.clone()).await;
    Live {
        app: TestApp {
            router,
            state,
            backend,
        },
        base,
        client: reqwest::Client::new(),
        notifier,
    }
}

impl Live {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer
    }

    async fn user(&self, name: &str) -> String {
        let created = self
            .ok(
                "POST",
                "/users",
                Some(json!({"username": name, "password": "pw"})),
            )
            .await;
        created["id"].as_str().unwrap().to_string()
    }

    async fn mailbox(&self, user: &str, path: &str) -> String {
        let created = self
            .ok(
                "POST",
                &format!("/users/{user}/mailboxes"),
                Some(json!({ "path": path })),
            )
            .await;
        created["id"].as_str().unwrap().to_string()
    }

    async fn inbox(&self, user: &str) -> String {
        let list = self
            .ok("GET", &format!("/users/{user}/mailboxes"), None)
            .await;
        eider_tests::spec::inbox_of(&list)
    }

    async fn upload(&self, user: &str, mailbox: &str) -> Value {
        let body = json!({ "raw": STANDARD.encode(SIMPLE) });
        let path = format!("/users/{user}/mailboxes/{mailbox}/messages");
        self.ok("POST", &path, Some(body)).await
    }

    /// Opens the stream; `query` is appended to the URL.
    async fn open(
        &self,
        user: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .get(format!("{}/users/{user}/updates{query}", self.base));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        request.send().await.unwrap()
    }

    /// Opens the stream and reads its first block; returns the reader and the position.
    async fn stream(&self, user: &str, last_event_id: Option<&str>) -> (SseReader, i64) {
        let response = self.open(user, "", last_event_id).await;
        assert_eq!(response.status(), 200);
        let mut reader = SseReader::new(response);
        let first = reader.next_frame(WAIT).await.unwrap();
        assert_eq!(first.comments, ["idling 1"], "{first:?}");
        assert_eq!(first.retry, Some(3000));
        assert_eq!(first.data, None);
        (reader, first.seq())
    }
}

async fn next_event(reader: &mut SseReader) -> Frame {
    let frame = reader.next_data(WAIT).await.expect("the stream ended");
    assert!(frame.is_message(), "{frame:?}");
    frame
}

/// The next event that is not `COUNTERS`; those are collected in `counters`.
async fn next_change(reader: &mut SseReader, counters: &mut Vec<Value>) -> Frame {
    loop {
        let frame = next_event(reader).await;
        if frame.command() != "COUNTERS" {
            return frame;
        }
        counters.push(frame.json());
    }
}

/// No frame with data arrives within `wait` (comments are fine).
async fn assert_quiet(reader: &mut SseReader, wait: Duration) {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match reader.try_next_frame(left).await {
            Err(()) => return,
            Ok(None) => panic!("the stream ended"),
            Ok(Some(frame)) => assert!(frame.data.is_none(), "unexpected {frame:?}"),
        }
        if left.is_zero() {
            return;
        }
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn stream_delivers_api_changes_in_order_with_wildduck_fields(backend: Backend) {
    let live = live(backend, config(), true).await;
    let user = live.user("stream").await;
    let inbox = live.inbox(&user).await;

    let response = live.open(&user, "", None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let mut reader = SseReader::new(response);
    let first = reader.next_frame(WAIT).await.unwrap();
    let mut last = first.seq();

    let mut events = Vec::new();
    let mut counters = Vec::new();
    let mut expect = |frame: Frame, command: &str, fields: &[&str]| {
        assert_eq!(frame.command(), command, "{frame:?}");
        assert_eq!(
            keys(&frame.json()),
            set(fields),
            "{command}: {}",
            frame.json()
        );
        assert!(frame.seq() > last, "ids go up: {frame:?} after {last}");
        last = frame.seq();
        let json = frame.json();
        events.push(json.clone());
        json
    };

    let work = live.mailbox(&user, "Work").await;
    let create = expect(
        next_change(&mut reader, &mut counters).await,
        "CREATE",
        &["command", "mailbox", "path", "name"],
    );
    assert_eq!(
        (create["mailbox"].as_str(), create["path"].as_str()),
        (Some(&*work), Some("Work"))
    );

    live.upload(&user, &inbox).await;
    let exists = expect(
        next_change(&mut reader, &mut counters).await,
        "EXISTS",
        &["command", "uid", "message", "idate", "thread", "mailbox"],
    );
    assert_eq!(exists["uid"], 1);
    assert_eq!(exists["mailbox"], inbox.as_str());
    let message_id = exists["message"].as_str().unwrap().to_string();
    assert_eq!(message_id.len(), 24);

    let path = format!("/users/{user}/mailboxes/{inbox}/messages/1");
    live.ok("PUT", &path, Some(json!({"seen": true, "flagged": true})))
        .await;
    let fetch = expect(
        next_change(&mut reader, &mut counters).await,
        "FETCH",
        &["command", "uid", "flags", "thread", "message", "mailbox"],
    );
    assert_eq!(fetch["message"], message_id.as_str());
    let flags: BTreeSet<&str> = fetch["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(flags, BTreeSet::from(["\\Seen", "\\Flagged"]));

    live.ok("PUT", &path, Some(json!({ "moveTo": work }))).await;
    let gone = expect(
        next_change(&mut reader, &mut counters).await,
        "EXPUNGE",
        &["command", "uid", "message", "thread", "mailbox"],
    );
    assert_eq!(
        (gone["mailbox"].as_str(), gone["uid"].as_u64()),
        (Some(&*inbox), Some(1))
    );
    let moved = expect(
        next_change(&mut reader, &mut counters).await,
        "EXISTS",
        &["command", "uid", "message", "idate", "thread", "mailbox"],
    );
    assert_eq!(moved["mailbox"], work.as_str());

    live.ok(
        "PUT",
        &format!("/users/{user}/mailboxes/{work}"),
        Some(json!({"path": "Job"})),
    )
    .await;
    let rename = expect(
        next_change(&mut reader, &mut counters).await,
        "RENAME",
        &["command", "mailbox", "path"],
    );
    assert_eq!(
        (rename["mailbox"].as_str(), rename["path"].as_str()),
        (Some(&*work), Some("Job"))
    );

    live.ok(
        "DELETE",
        &format!("/users/{user}/mailboxes/{work}/messages/1"),
        None,
    )
    .await;
    expect(
        next_change(&mut reader, &mut counters).await,
        "EXPUNGE",
        &["command", "uid", "message", "thread", "mailbox"],
    );
    live.ok("DELETE", &format!("/users/{user}/mailboxes/{work}"), None)
        .await;
    let delete = expect(
        next_change(&mut reader, &mut counters).await,
        "DELETE",
        &["command", "mailbox"],
    );
    assert_eq!(delete["mailbox"], work.as_str());

    live.ok(
        "PUT",
        &format!("/users/{user}/logout"),
        Some(json!({"reason": "Bye now"})),
    )
    .await;
    let logout = expect(
        next_change(&mut reader, &mut counters).await,
        "LOGOUT",
        &["command", "reason"],
    );
    assert_eq!(logout["reason"], "Bye now");
    // As in WildDuck, a LOGOUT ends the stream.
    assert_eq!(reader.next_frame(WAIT).await, None);
    assert_eq!(events.len(), 9);
    // Counters followed the changes of both mailboxes' contents.
    for mailbox in [&inbox, &work] {
        assert!(
            counters.iter().any(|c| c["mailbox"] == mailbox.as_str()),
            "{counters:?}"
        );
    }
}

async fn reconnecting_with_last_event_id_delivers_each_change_exactly_once(backend: Backend) {
    let live = live(backend, config(), true).await;
    let user = live.user("resume").await;
    let (mut reader, _) = live.stream(&user, None).await;
    for i in 0..5 {
        live.mailbox(&user, &format!("Before {i}")).await;
    }
    let mut last = 0;
    for _ in 0..5 {
        last = next_event(&mut reader).await.seq();
    }
    drop(reader);

    let names: Vec<String> = (0..100).map(|i| format!("While {i:03}")).collect();
    for name in &names {
        live.mailbox(&user, name).await;
    }
    // A stale query parameter (the URL the EventSource was made with) loses to the header.
    let response = live
        .open(&user, "?Last-Event-ID=1", Some(&last.to_string()))
        .await;
    assert_eq!(response.status(), 200);
    let mut reader = SseReader::new(response);
    let first = reader.next_frame(WAIT).await.unwrap();
    assert_eq!(first.seq(), last);
    let mut seen = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..100 {
        let frame = next_event(&mut reader).await;
        assert_eq!(frame.command(), "CREATE");
        ids.push(frame.seq());
        seen.push(frame.json()["path"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, names, "every change once, in order");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_quiet(&mut reader, Duration::from_millis(500)).await;

    // The same position as a query parameter works too.
    let response = live
        .open(&user, &format!("?Last-Event-ID={}", ids[98]), None)
        .await;
    let mut reader = SseReader::new(response);
    reader.next_frame(WAIT).await.unwrap();
    assert_eq!(next_event(&mut reader).await.seq(), ids[99]);
    assert_quiet(&mut reader, Duration::from_millis(300)).await;
}

async fn reconnecting_during_a_burst_of_concurrent_changes_loses_and_repeats_nothing(
    backend: Backend,
) {
    let live = Arc::new(live(backend, config(), true).await);
    let user = live.user("burst").await;
    let (mut reader, _) = live.stream(&user, None).await;
    let names: BTreeSet<String> = (0..100).map(|i| format!("Burst {i:03}")).collect();
    // Four writers at once: journal numbers commit out of order now and then.
    let writer = {
        let (live, user, names) = (live.clone(), user.clone(), names.clone());
        tokio::spawn(async move {
            futures::stream::iter(names)
                .for_each_concurrent(4, |name| {
                    let (live, user) = (live.clone(), user.clone());
                    async move {
                        live.mailbox(&user, &name).await;
                    }
                })
                .await;
        })
    };
    let mut seen = Vec::new();
    let mut last = 0;
    // Read a few, drop the connection mid-burst, resume from the last id.
    while seen.len() < 10 {
        let frame = next_event(&mut reader).await;
        last = frame.seq();
        seen.push(frame.json()["path"].as_str().unwrap().to_string());
    }
    drop(reader);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut reader, position) = live.stream(&user, Some(&last.to_string())).await;
    assert_eq!(position, last);
    let mut ids = vec![last];
    while seen.len() < 100 {
        let frame = next_event(&mut reader).await;
        ids.push(frame.seq());
        seen.push(frame.json()["path"].as_str().unwrap().to_string());
    }
    writer.await.unwrap();
    assert_quiet(&mut reader, Duration::from_millis(500)).await;
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(
        seen.len(),
        distinct.len(),
        "a change was repeated: {seen:?}"
    );
    assert_eq!(distinct, names, "a change was lost");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

async fn fresh_stream_sends_no_backlog_and_its_position_at_once(backend: Backend) {
    let live = live(backend, config(), true).await;
    let user = live.user("fresh").await;
    for name in ["A", "B", "C"] {
        live.mailbox(&user, name).await;
    }
    let (mut reader, position) = live.stream(&user, None).await;
    assert_eq!(position, 3, "the position is the newest event");
    assert_quiet(&mut reader, Duration::from_millis(300)).await;
    live.mailbox(&user, "D").await;
    let frame = next_event(&mut reader).await;
    assert_eq!((frame.seq(), frame.json()["path"].as_str()), (4, Some("D")));
    // A new user's first stream starts at 0, and a reconnect from there replays everything.
    let other = live.user("fresh2").await;
    let (_, position) = live.stream(&other, None).await;
    assert_eq!(position, 0);
    live.mailbox(&other, "X").await;
    let (mut reader, _) = live.stream(&other, Some("0")).await;
    assert_eq!(next_event(&mut reader).await.seq(), 1);
}

async fn replay_ends_with_counters_of_the_touched_mailboxes(backend: Backend) {
    let live = live(backend, config(), true).await;
    let user = live.user("counters").await;
    let inbox = live.inbox(&user).await;
    let (_, position) = live.stream(&user, None).await;
    live.upload(&user, &inbox).await;
    live.upload(&user, &inbox).await;
    live.mailbox(&user, "Other").await;
    let (mut reader, _) = live.stream(&user, Some(&position.to_string())).await;
    let commands: Vec<String> = [
        next_event(&mut reader).await,
        next_event(&mut reader).await,
        next_event(&mut reader).await,
    ]
    .iter()
    .map(Frame::command)
    .collect();
    assert_eq!(commands, ["EXISTS", "EXISTS", "CREATE"]);
    let counters = next_event(&mut reader).await;
    let mailbox = live
        .ok("GET", &format!("/users/{user}/mailboxes/{inbox}"), None)
        .await;
    assert_eq!(mailbox["total"], 2);
    assert_eq!(
        counters.json(),
        json!({"command": "COUNTERS", "mailbox": inbox, "total": 2, "unseen": mailbox["unseen"]})
    );
    assert_eq!(
        counters.seq(),
        position + 3,
        "the id of the last replayed event"
    );
    assert_quiet(&mut reader, Duration::from_millis(300)).await;

    // Live changes are followed by counters too, with the id of the change.
    let unseen = |mailbox: &Value| mailbox["unseen"].as_i64().unwrap();
    live.upload(&user, &inbox).await;
    let exists = next_event(&mut reader).await;
    assert_eq!(exists.command(), "EXISTS");
    let counters = next_event(&mut reader).await;
    assert_eq!(counters.json()["command"], "COUNTERS");
    assert_eq!(counters.json()["total"], 3);
    assert_eq!(counters.seq(), exists.seq());
    assert_quiet(&mut reader, Duration::from_millis(300)).await;

    // A flag change that leaves \Seen alone changes no counter: no COUNTERS.
    let message = format!("/users/{user}/mailboxes/{inbox}/messages/3");
    live.ok("PUT", &message, Some(json!({"flagged": true})))
        .await;
    assert_eq!(next_event(&mut reader).await.command(), "FETCH");
    assert_quiet(&mut reader, Duration::from_millis(300)).await;

    // Marking a message unread does.
    live.ok("PUT", &message, Some(json!({"seen": false}))).await;
    assert_eq!(next_event(&mut reader).await.command(), "FETCH");
    let counters = next_event(&mut reader).await;
    let mailbox = live
        .ok("GET", &format!("/users/{user}/mailboxes/{inbox}"), None)
        .await;
    assert_eq!(
        counters.json(),
        json!({"command": "COUNTERS", "mailbox": inbox, "total": 3, "unseen": unseen(&mailbox)})
    );
    assert_eq!(unseen(&mailbox), 1);
    assert_quiet(&mut reader, Duration::from_millis(300)).await;
}

async fn expired_or_unknown_last_event_id_gets_a_resync_event(backend: Backend) {
    let live = live(backend, config(), true).await;
    let user = live.user("resync").await;
    for name in ["A", "B", "C"] {
        live.mailbox(&user, name).await;
    }
    // Events carry the retention as their TTL; let the first three expire (as DynamoDB's TTL
    // and the embedded purge would remove them).
    let id: ObjectId = user.parse().unwrap();
    let table = live.app.table();
    let retention = live.app.state.config.journal_retention.as_secs() as i64;
    for seq in 1..=3 {
        let item = table
            .get(&keys::journal_event(&id, seq))
            .await
            .unwrap()
            .unwrap();
        let expires = item.expires_at.unwrap() - chrono::Utc::now().timestamp();
        assert!((retention - 5..=retention).contains(&expires), "{expires}");
    }
    let expired = (1..=3).map(|seq| Write::delete(keys::journal_event(&id, seq)));
    table.transact(expired.collect()).await.unwrap();
    live.mailbox(&user, "D").await;

    let (mut reader, position) = live.stream(&user, Some("1")).await;
    let resync = reader.next_frame(WAIT).await.unwrap();
    assert_eq!(resync.event.as_deref(), Some("resync"));
    assert_eq!(resync.json()["command"], "RESYNC");
    assert_eq!(resync.json()["code"], "JournalExpired");
    assert_eq!(
        (position, resync.seq()),
        (4, 4),
        "continues as a fresh stream"
    );
    live.mailbox(&user, "E").await;
    assert_eq!(next_event(&mut reader).await.seq(), 5);

    // The newest event the client saw has expired, but nothing after it: no resync.
    let (mut reader, position) = live.stream(&user, Some("3")).await;
    assert_eq!(position, 3);
    assert_eq!(next_event(&mut reader).await.json()["path"], "D");

    let (mut reader, _) = live.stream(&user, Some("99")).await;
    let resync = reader.next_frame(WAIT).await.unwrap();
    assert_eq!(resync.event.as_deref(), Some("resync"));
    assert_eq!(resync.json()["code"], "UnknownEventId");
    assert_eq!(resync.seq(), 5);
}

async fn errors_are_json_before_the_stream_starts(backend: Backend) {
    let mut config = config();
    config.access_token = Some("s3cret".into());
    let live = live(backend, config, true).await;
    let (status, created) = live
        .call(
            "POST",
            "/users?accessToken=s3cret",
            Some(json!({"username": "errors", "password": "pw"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let user = created["id"].as_str().unwrap();
    let get = |query: String, header: Option<&'static str>| {
        let live = &live;
        async move {
            let response = live.open(user, &query, header).await;
            let status = response.status().as_u16();
            let kind = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(kind.starts_with("application/json"), "{kind}");
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = get(String::new(), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("InvalidToken")));
    let (status, body) = get("?accessToken=nope".into(), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("InvalidToken")));
    let (status, body) = get(
        "?accessToken=s3cret&Last-Event-ID=5f0c0ffee0000000000beef0".into(),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "InputValidationError");
    assert!(body["details"]["Last-Event-ID"].is_string(), "{body}");
    let (status, body) = get("?accessToken=s3cret".into(), Some("-3")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("InputValidationError"))
    );
    let (status, body) = get("?accessToken=s3cret&since=1".into(), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["details"]["since"].is_string());
    let response = live
        .client
        .get(format!(
            "{}/users/{}/updates?accessToken=s3cret",
            live.base,
            "0".repeat(24)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "UserNotFound"
    );
    let response = live
        .client
        .get(format!(
            "{}/users/not-an-id/updates?accessToken=s3cret",
            live.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // With the token (here as a header) the stream opens.
    let response = live
        .client
        .get(format!("{}/users/{user}/updates", live.base))
        .header("X-Access-Token", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
}

async fn idle_stream_sends_keepalives_and_ends_at_its_lifetime(backend: Backend) {
    let mut config = config();
    config.updates.keepalive = Duration::from_millis(200);
    config.updates.max_duration = Duration::from_millis(1200);
    let live = live(backend, config, true).await;
    let user = live.user("idle").await;
    let began = Instant::now();
    let (mut reader, _) = live.stream(&user, None).await;
    let mut comments = Vec::new();
    while let Some(frame) = reader.next_frame(WAIT).await {
        assert!(frame.data.is_none() && frame.id.is_none(), "{frame:?}");
        comments.extend(frame.comments);
    }
    let lasted = began.elapsed();
    assert!(comments.len() >= 3, "{comments:?}");
    assert_eq!(comments[0], "idling 2");
    assert_eq!(comments[1], "idling 3");
    assert!(lasted >= Duration::from_millis(1100), "{lasted:?}");
    assert!(lasted < Duration::from_secs(5), "{lasted:?}");
    // The stream's channel goes once nobody listens.
    let notifier = live.notifier.as_ref().unwrap();
    live.mailbox(&user, "Wake").await;
    assert_eq!(notifier.channels(), 0);
}

async fn a_failed_change_holds_later_events_back_only_for_the_grace(backend: Backend) {
    // The journal put fails once (as if the process died after reserving its number).
    let inner = backend.table.clone();
    let failing = Arc::new(eider_tests::faults::FailingWrites::new(
        inner, "JOURNAL#", 1,
    ));
    let mut config = config();
    config.updates.gap_grace = Duration::from_millis(1500);
    let live = live(backend.with_table(failing), config, true).await;
    let user = live.user("gap").await;
    let (mut reader, _) = live.stream(&user, None).await;
    let (status, _) = live
        .call(
            "POST",
            &format!("/users/{user}/mailboxes"),
            Some(json!({"path": "Lost"})),
        )
        .await;
    assert_eq!(status, 500);
    let began = Instant::now();
    live.mailbox(&user, "Kept").await;
    let frame = next_event(&mut reader).await;
    let waited = began.elapsed();
    assert_eq!(
        (frame.seq(), frame.json()["path"].as_str()),
        (2, Some("Kept"))
    );
    assert!(
        waited >= Duration::from_millis(1000),
        "held back for the grace: {waited:?}"
    );
    assert!(waited < Duration::from_millis(4000), "{waited:?}");
    // No gap now: the next change comes at once.
    let began = Instant::now();
    live.mailbox(&user, "Next").await;
    assert_eq!(next_event(&mut reader).await.seq(), 3);
    assert!(
        began.elapsed() < Duration::from_millis(1000),
        "{:?}",
        began.elapsed()
    );
}

async fn a_change_refused_by_a_condition_leaves_no_gap_to_wait_for(backend: Backend) {
    // A grace far longer than `next_event` waits: only a skip marker lets the stream go on.
    let mut config = config();
    config.updates.gap_grace = Duration::from_secs(120);
    let live = live(backend, config, true).await;
    let user = live.user("refused").await;
    let (mut reader, _) = live.stream(&user, None).await;
    live.mailbox(&user, "Twice").await;
    assert_eq!(next_event(&mut reader).await.seq(), 1);
    // The second create reserves number 2, then its transaction fails on the path claim.
    let (status, answer) = live
        .call(
            "POST",
            &format!("/users/{user}/mailboxes"),
            Some(json!({"path": "Twice"})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    live.mailbox(&user, "After").await;
    let frame = next_event(&mut reader).await;
    assert_eq!(
        (frame.seq(), frame.json()["path"].as_str()),
        (3, Some("After"))
    );
    // The marker is in the journal, without a command; the WebSocket bridge passes it over too.
    let user_id: ObjectId = user.parse().unwrap();
    let marker = live
        .app
        .state
        .table
        .get(&keys::journal_event(&user_id, 2))
        .await
        .unwrap()
        .expect("a skip marker under number 2");
    assert_eq!(marker.body["skipped"], true, "{:?}", marker.body);
    assert!(marker.body.get("command").is_none());
}

async fn without_a_notifier_the_stream_polls_the_journal(backend: Backend) {
    let live = live(backend, config(), false).await;
    let user = live.user("poll").await;
    let (mut reader, _) = live.stream(&user, None).await;
    live.mailbox(&user, "Polled").await;
    let frame = next_event(&mut reader).await;
    assert_eq!(frame.json()["path"], "Polled");
}

/// Push latency locally: from the API's answer to the event at the client, on the embedded
/// store with the notifier (printed; `cargo test -- --nocapture` shows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_push_latency_is_milliseconds() {
    let live = live(eider_tests::backends::embedded().await, config(), true).await;
    let user = live.user("latency").await;
    let (mut reader, _) = live.stream(&user, None).await;
    let (mut answers, mut events) = (Vec::new(), Vec::new());
    for i in 0..50 {
        let began = Instant::now();
        live.mailbox(&user, &format!("L{i}")).await;
        answers.push(began.elapsed());
        next_event(&mut reader).await;
        events.push(began.elapsed());
    }
    answers.sort();
    events.sort();
    println!(
        "local push, from sending the change: API answer median {:?}; event at the client \
         median {:?}, max {:?}",
        answers[25], events[25], events[49]
    );
    assert!(events[49] < Duration::from_millis(500), "{events:?}");
}
