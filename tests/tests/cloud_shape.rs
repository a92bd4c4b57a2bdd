//! The cloud shape run whole (`eider-cloud`, tests/src/bin/eider-cloud): every function's real
//! binary under cargo-lambda's runtime emulator, routed as template.yaml routes them, over
//! moto. The local server's end-to-end calls (the spec's examples) pass through it, then
//! mail, search, sources, the API document, the updates stream through the updates
//! function's URL, and a WebSocket push from the table's stream through the stream bridge.
//!
//! The function binaries are built first (`cargo build --workspace --bins`, quick once built).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eider_tests::moto;
use eider_tests::spec::{self, call, inbox_of};
use eider_tests::sse::SseReader;
use futures::StreamExt;
use reqwest::Method as M;
use serde_json::Value;

/// A running `eider-cloud`, stopped (with every process it started) when dropped.
struct Cloud {
    child: Child,
    api: String,
    websocket: String,
    logs: String,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        // SIGTERM: it stops its function processes and the emulator before exiting.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_functions() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // Without what cargo sets for this test process: build scripts watch some of it (ring
    // reruns on CARGO_PKG_NAME), and a different value would rebuild the whole SDK stack
    // here and again in the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = name == "OUT_DIR"
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref());
        if set_for_tests {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .args(["build", "--workspace", "--bins", "--quiet"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --workspace --bins failed");
}

fn start() -> Cloud {
    build_functions();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eider-cloud"))
        .args(["--aws-endpoint", moto::endpoint()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("eider-cloud starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut websocket, mut logs) = (String::new(), String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("api ") {
            api = v.to_string();
        } else if let Some(v) = line.strip_prefix("websocket ") {
            websocket = v.to_string();
        } else if let Some(v) = line.strip_prefix("logs ") {
            logs = v.to_string();
        } else if line == "ready" {
            break;
        }
    }
    assert!(!api.is_empty(), "eider-cloud did not say where it listens");
    Cloud {
        child,
        api,
        websocket,
        logs,
    }
}

async fn upload(
    c: &reqwest::Client,
    base: &str,
    user: &str,
    mailbox: &str,
    subject: &str,
) -> Value {
    let raw = format!(
        "From: sender@example.org\r\nTo: testuser@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.org>\r\n\r\nHello from the cloud shape, {subject}.\r\n"
    );
    let response = c
        .post(format!("{base}/users/{user}/mailboxes/{mailbox}/messages"))
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_end_to_end_calls_pass_through_the_cloud_shape() {
    let cloud = start();
    let began = Instant::now();
    let c = reqwest::Client::new();
    let base = cloud.api.clone();

    // The local server's end-to-end calls, through eider-users, eider-addresses and eider-auth.
    let created = spec::spec_examples(&c, &base).await;
    spec::spec_data_is_still_there(&c, &base, &created).await;
    let user = created.user;
    println!(
        "spec examples through the cloud shape: {:?}",
        began.elapsed()
    );

    // The API document, from the users function.
    let (status, document) = call(&c, M::GET, format!("{base}/openapi.json"), None).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");

    // Mail through eider-mailboxes and eider-messages.
    let (status, boxes) = call(&c, M::GET, format!("{base}/users/{user}/mailboxes"), None).await;
    assert_eq!(status, 200, "{boxes}");
    let inbox = inbox_of(&boxes);
    let stored = upload(&c, &base, &user, &inbox, "first").await;
    let uid = stored["message"]["id"].as_u64().unwrap();
    let messages_url = format!("{base}/users/{user}/mailboxes/{inbox}/messages");
    let (status, list) = call(&c, M::GET, messages_url.clone(), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    let (_, message) = call(&c, M::GET, format!("{messages_url}/{uid}"), None).await;
    assert_eq!(message["subject"], "first");
    let source = c
        .get(format!("{messages_url}/{uid}/message.eml"))
        .send()
        .await
        .unwrap();
    assert_eq!(source.status(), 200);
    assert!(
        source
            .text()
            .await
            .unwrap()
            .contains("Hello from the cloud shape, first.")
    );
    // Search: the stream indexer puts the message into the user's index in the bucket
    // shortly after the upload (moto's stream, polled every 200 ms here).
    let uploaded = std::time::Instant::now();
    let found = loop {
        let (status, found) = call(
            &c,
            M::GET,
            format!("{base}/users/{user}/search?q=cloud"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{found}");
        if found["total"] == 1 || uploaded.elapsed() > Duration::from_secs(30) {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(found["total"], 1, "not indexed within 30 s: {found}");
    eprintln!(
        "cloud shape: searchable {} ms after the upload",
        uploaded.elapsed().as_millis()
    );

    // The updates stream, through the updates function's URL (a streaming response).
    let stream = c
        .get(format!("{base}/users/{user}/updates"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut updates = SseReader::new(stream);

    // A WebSocket connection through eider-ws, pushed to by the stream bridge.
    let ws_url = format!("{}/local?user={user}", cloud.websocket);
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("the WebSocket connects");
    let refused = tokio_tungstenite::connect_async(format!(
        "{}/local?user=000000000000000000000000",
        cloud.websocket
    ))
    .await;
    assert!(refused.is_err(), "an unknown user's connection is refused");

    let second = upload(&c, &base, &user, &inbox, "second").await;
    let second_uid = second["message"]["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut streamed = false;
    while !streamed && Instant::now() < deadline {
        let Some(frame) = updates.next_data(Duration::from_secs(5)).await else {
            continue;
        };
        streamed = frame.command() == "EXISTS" && frame.json()["uid"].as_u64() == Some(second_uid);
    }
    assert!(
        streamed,
        "the updates stream showed the new message (logs: {})",
        cloud.logs
    );
    let pushed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = socket.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if event.to_string().contains("EXISTS")
                    && event.to_string().contains(&second_uid.to_string())
                {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(
        pushed,
        Ok(true),
        "the WebSocket got the new message (logs: {})",
        cloud.logs
    );
    println!(
        "the whole run through the cloud shape: {:?}",
        began.elapsed()
    );
}
