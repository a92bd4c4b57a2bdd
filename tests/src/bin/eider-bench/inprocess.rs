//! The in-process figures (the local stack through its router, on the embedded store), each
//! against a baseline measured in the same run:
//!
//! * creating a user vs hashing one password (argon2id dominates, by design);
//! * storing a 10 KB message vs its bare storage writes (blob put + one transaction);
//! * a message listing page and a message read in a mailbox of 5,000 messages vs one of 50
//!   (the ratio should stay near 1: the cost does not grow with the mailbox);
//! * delivering a 10 KB message through the delivery pipeline (recipient lookup, a filter,
//!   store) vs uploading it through the API;
//! * the janitor purging a deleted user's messages vs storing them, per message;
//! * `eider-local` start-up on a data folder with 2,000 users vs an empty one.

use std::time::{Duration, Instant};

use base64::Engine;
use eider_shared::config::DeliveryConfig;
use eider_shared::domain::delivery::{Delivery, Incoming, Outcome};
use eider_shared::domain::janitor::{self, Budget};
use eider_shared::domain::password;
use eider_shared::mail::outbound::Outbound;
use eider_shared::store::{Item, Key, Write};
use eider_tests::app::TestApp;
use serde_json::json;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn time<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let start = Instant::now();
        f(i).await;
        samples.push(start.elapsed());
    }
    median(samples)
}

/// One figure and its baseline.
pub struct Row {
    pub name: String,
    pub value: Duration,
    pub baseline_name: String,
    pub baseline: Duration,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        self.value.as_secs_f64() / self.baseline.as_secs_f64().max(1e-9)
    }
}

/// Prints the row as it is measured, and keeps it for the report.
fn row(rows: &mut Vec<Row>, name: &str, value: Duration, baseline_name: &str, baseline: Duration) {
    let row = Row {
        name: name.to_string(),
        value,
        baseline_name: baseline_name.to_string(),
        baseline,
    };
    println!(
        "{name:<44} {:>9.3} ms   vs {baseline_name:<36} {:>9.3} ms   ratio {:>6.2}",
        value.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        row.ratio()
    );
    rows.push(row);
}

fn message(i: usize) -> String {
    let body: String = "lorem ipsum dolor sit amet ".repeat(380);
    format!(
        "From: Bench <bench@example.com>\r\nTo: a@example.com\r\nSubject: bench {i}\r\n\r\n{body}\r\n"
    )
}

async fn mailbox_with(app: &TestApp, name: &str, count: usize) -> (String, String) {
    let user = app
        .create_user(json!({"username": name, "password": "pw"}))
        .await;
    let (_, boxes) = app.get(&format!("/users/{user}/mailboxes")).await;
    let inbox = boxes["results"][0]["id"].as_str().unwrap().to_string();
    for i in 0..count {
        let raw =
            base64::engine::general_purpose::STANDARD.encode(format!("Subject: m{i}\r\n\r\nx\r\n"));
        app.post(
            &format!("/users/{user}/mailboxes/{inbox}/messages"),
            json!({ "raw": raw }),
        )
        .await;
    }
    (user, inbox)
}

fn start_local(data: &std::path::Path) -> Duration {
    use std::io::BufRead;
    let exe = std::env::current_exe()
        .unwrap()
        .with_file_name("eider-local");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let mut child = std::process::Command::new(&exe)
        .env("EIDER_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "EIDER_LMTP_LISTEN",
            format!("127.0.0.1:{}", crate::server::free_port()),
        )
        .env("EIDER_DATA_DIR", data)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it: cargo build --profile fast -p eider-local)",
                exe.display()
            )
        });
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let elapsed = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

/// Runs the in-process figures, printing each as it is measured.
pub async fn run() -> Vec<Row> {
    let mut rows = Vec::new();
    let app = TestApp::embedded().await;

    let hash = time(9, |_| async {
        password::hash("secretpass".into()).await.unwrap();
    })
    .await;
    let create = time(9, |i| {
        let app = &app;
        async move {
            app.create_user(json!({"username": format!("bench{i}"), "password": "secretpass"}))
                .await;
        }
    })
    .await;
    row(
        &mut rows,
        "POST /users",
        create,
        "argon2id hash alone",
        hash,
    );

    let (user, inbox) = mailbox_with(&app, "uploader", 0).await;
    let raw = message(0);
    let upload = time(50, |i| {
        let (app, user, inbox) = (&app, &user, &inbox);
        async move {
            let body =
                json!({ "raw": base64::engine::general_purpose::STANDARD.encode(message(i)) });
            app.post(&format!("/users/{user}/mailboxes/{inbox}/messages"), body)
                .await;
        }
    })
    .await;
    let writes = time(50, |i| {
        let (state, raw) = (&app.state, &raw);
        async move {
            state
                .blobs
                .put(&format!("bench/{i}"), raw.clone().into_bytes().into())
                .await
                .unwrap();
            let item = Item::new(
                Key::new("BENCH", format!("{i:06}")),
                json!({ "size": raw.len() }),
            );
            state.table.transact(vec![Write::put(item)]).await.unwrap();
        }
    })
    .await;
    row(
        &mut rows,
        &format!("store a {} KB message", raw.len() / 1024),
        upload,
        "blob put + one put transaction",
        writes,
    );

    let (small_user, small_box) = mailbox_with(&app, "small", 50).await;
    let (large_user, large_box) = mailbox_with(&app, "large", 5000).await;
    let list = |user: String, mailbox: String| {
        let app = &app;
        move |_| {
            let uri = format!("/users/{user}/mailboxes/{mailbox}/messages?limit=20");
            async move {
                app.get(&uri).await;
            }
        }
    };
    let small = time(30, list(small_user.clone(), small_box.clone())).await;
    let large = time(30, list(large_user.clone(), large_box.clone())).await;
    row(
        &mut rows,
        "list 20 of 5,000 messages",
        large,
        "list 20 of 50 messages",
        small,
    );
    let get = |user: String, mailbox: String| {
        let app = &app;
        move |_| {
            let uri = format!("/users/{user}/mailboxes/{mailbox}/messages/25");
            async move {
                app.get(&uri).await;
            }
        }
    };
    let small = time(30, get(small_user, small_box)).await;
    let large = time(30, get(large_user, large_box)).await;
    row(
        &mut rows,
        "get a message among 5,000",
        large,
        "get a message among 50",
        small,
    );

    let outbox = tempfile::tempdir().unwrap();
    let delivery = Delivery::new(
        app.state.clone(),
        Outbound::local(None, outbox.path()).unwrap(),
        DeliveryConfig::default(),
    );
    let rcpt = app
        .create_user(json!({"username": "rcpt", "password": "pw", "address": "rcpt@example.com"}))
        .await;
    let (status, body) = app
        .post(
            &format!("/users/{rcpt}/filters"),
            json!({"query": {"from": "nobody@nowhere.example"}, "action": {"seen": true}}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let deliver = time(50, |i| {
        let delivery = &delivery;
        async move {
            let recipient = delivery
                .recipient("rcpt@example.com")
                .await
                .unwrap()
                .unwrap();
            let raw = message(i);
            let incoming = Incoming {
                raw: raw.as_bytes(),
                sender: "bench@example.com",
                source: "LMTP",
                id: None,
                spam_score: None,
            };
            let outcome = delivery.deliver(&incoming, &recipient).await;
            assert!(matches!(outcome, Outcome::Stored { .. }), "{outcome:?}");
        }
    })
    .await;
    row(
        &mut rows,
        "deliver a 10 KB message (lookup, 1 filter)",
        deliver,
        "upload it through the API",
        upload,
    );

    const DOOMED: u32 = 200;
    let (doomed, doomed_box) = mailbox_with(&app, "doomed", 0).await;
    let started = Instant::now();
    for i in 0..DOOMED as usize {
        let body = json!({ "raw": base64::engine::general_purpose::STANDARD.encode(message(i)) });
        app.post(
            &format!("/users/{doomed}/mailboxes/{doomed_box}/messages"),
            body,
        )
        .await;
    }
    let store_each = started.elapsed() / DOOMED;
    app.delete(&format!("/users/{doomed}")).await;
    let started = Instant::now();
    // A month on: past the deleted user's retention.
    let later = chrono::Utc::now() + chrono::Duration::days(30);
    let report = janitor::run(&app.state, later, Budget::items(usize::MAX))
        .await
        .unwrap();
    let purge_each = started.elapsed() / DOOMED;
    assert_eq!(report.messages_purged, DOOMED as usize, "{report:?}");
    row(
        &mut rows,
        "janitor: purge a deleted user's message",
        purge_each,
        "store that message (API)",
        store_each,
    );

    let empty = tempfile::tempdir().unwrap();
    let full = tempfile::tempdir().unwrap();
    {
        let backend = eider_tests::backends::embedded_at(full.path()).await;
        let app = TestApp::new(backend, eider_tests::app::test_config());
        for i in 0..2000 {
            let hashed = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$qQ4jU3d1cFqZb1hj6pGz9w4M4xk7m0c9C8oU8ZL1Y8E";
            app.create_user(
                json!({"username": format!("u{i}"), "password": hashed, "hashedPassword": true}),
            )
            .await;
        }
    }
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..5 {
        cold.push(start_local(empty.path()));
        warm.push(start_local(full.path()));
    }
    row(
        &mut rows,
        "eider-local start, 2,000 users (process)",
        median(warm),
        "eider-local start, empty folder",
        median(cold),
    );
    rows
}
