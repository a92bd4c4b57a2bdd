//! End to end: the `eider-local` binary's updates stream. A change made over HTTP reaches an
//! open stream at once (the server wires its in-process notifier), and stopping the server
//! ends open streams instead of waiting for them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::start;
use serde_json::{Value, json};

/// Reads the stream until a block with `data:` arrives; returns its JSON.
async fn next_data(response: &mut reqwest::Response, buffer: &mut String) -> Option<Value> {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(line) = block.lines().find(|l| l.starts_with("data: ")) {
                return Some(serde_json::from_str(&line["data: ".len()..]).unwrap());
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("no frame within 10 s")
            .ok()??;
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn changes_reach_an_open_stream_and_shutdown_ends_it() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path(), &[]);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let created: Value = client
        .post(format!("{base}/users"))
        .json(&json!({"username": "streamer", "password": "secretpass"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = created["id"].as_str().unwrap().to_string();

    let mut stream = client
        .get(format!("{base}/users/{user}/updates"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();

    let mut latencies = Vec::new();
    for i in 0..20 {
        let began = Instant::now();
        let answer = client
            .post(format!("{base}/users/{user}/mailboxes"))
            .json(&json!({ "path": format!("Folder {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let event = next_data(&mut stream, &mut buffer).await.unwrap();
        latencies.push(began.elapsed());
        assert_eq!(event["command"], "CREATE");
        assert_eq!(event["path"], format!("Folder {i}"));
    }
    latencies.sort();
    println!(
        "eider-local: change sent to event received, median {:?}, max {:?}",
        latencies[10], latencies[19]
    );

    // SIGTERM: the graceful shutdown closes the open stream and the process exits.
    let stopped = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while next_data(&mut stream, &mut buffer).await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream stayed open after SIGTERM");
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    println!(
        "eider-local stopped with an open stream in {:?}",
        stopped.elapsed()
    );
}
