//! End to end: the `eider-local` binary started for real on a free loopback port, driven over
//! HTTP with the curl examples of the spec's users and addresses sections, then restarted on
//! the same data folder to prove the data persists.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::spec::{call, spec_data_is_still_there, spec_examples};
use common::{free_port, start};
use serde_json::{Value, json};

#[tokio::test]
async fn spec_examples_work_over_http_and_data_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    println!(
        "eider-local started in {:?} on an empty data folder",
        server.started_in
    );
    let c = reqwest::Client::new();
    let created = spec_examples(&c, &server.base).await;
    drop(server);

    // Restart on the same folder: everything is still there.
    let server = start(data.path(), &[]);
    println!(
        "eider-local restarted in {:?} on an existing data folder",
        server.started_in
    );
    spec_data_is_still_there(&c, &server.base, &created).await;
}

#[tokio::test]
async fn access_token_is_enforced_over_http() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[("EIDER_ACCESS_TOKEN", "secrettoken")]);
    let c = reqwest::Client::new();
    let base = &server.base;
    let (status, _) = call(&c, reqwest::Method::GET, format!("{base}/users"), None).await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &c,
        reqwest::Method::GET,
        format!("{base}/users?accessToken=nope"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &c,
        reqwest::Method::GET,
        format!("{base}/users?query=testuser01&accessToken=secrettoken"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let response = c
        .get(format!("{base}/users"))
        .header("X-Access-Token", "secrettoken")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

/// The janitor loop runs inside the real process: a message whose `expires` has passed leaves
/// its mailbox for the archive without any request asking for it.
#[tokio::test]
async fn the_local_janitor_loop_archives_an_expired_message() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[("EIDER_JANITOR_SECONDS", "1")]);
    let c = reqwest::Client::new();
    let base = &server.base;
    use reqwest::Method as M;
    let (status, created) = call(
        &c,
        M::POST,
        format!("{base}/users"),
        Some(json!({"username": "expiring", "password": "secretpass"})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let user = created["id"].as_str().unwrap();
    let (_, boxes) = call(&c, M::GET, format!("{base}/users/{user}/mailboxes"), None).await;
    let inbox = boxes["results"][0]["id"].as_str().unwrap();
    let response = c
        .post(format!("{base}/users/{user}/mailboxes/{inbox}/messages"))
        .header("Content-Type", "message/rfc822")
        .body(
            "From: a@example.com\r\nTo: expiring@example.com\r\nSubject: soon gone\r\n\r\nbye\r\n",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let uploaded: Value = response.json().await.unwrap();
    let uid = &uploaded["message"]["id"];
    let (status, body) = call(
        &c,
        M::PUT,
        format!("{base}/users/{user}/mailboxes/{inbox}/messages/{uid}"),
        Some(json!({"expires": "2001-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The loop ticks every second; give a loaded machine 30 s before calling it lost.
    let began = Instant::now();
    loop {
        let (_, archived) = call(&c, M::GET, format!("{base}/users/{user}/archived"), None).await;
        if archived["results"].as_array().is_some_and(|r| r.len() == 1) {
            assert_eq!(archived["results"][0]["subject"], "soon gone", "{archived}");
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "the janitor did not archive the message: {archived}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "the local janitor archived an expired message after {:?}",
        began.elapsed()
    );
    let (_, messages) = call(
        &c,
        M::GET,
        format!("{base}/users/{user}/mailboxes/{inbox}/messages"),
        None,
    )
    .await;
    assert_eq!(messages["total"], 0, "{messages}");
    let (_, inbox_now) = call(
        &c,
        M::GET,
        format!("{base}/users/{user}/mailboxes/{inbox}"),
        None,
    )
    .await;
    assert_eq!(inbox_now["total"], 0, "{inbox_now}");
}

#[test]
fn a_second_server_on_the_same_data_folder_fails_clearly() {
    let data = tempfile::tempdir().unwrap();
    let _first = start(data.path(), &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_eider-local"))
        .env("EIDER_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("EIDER_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.to_lowercase().contains("eider.redb"), "{stderr}");
}

/// Idle and slow connections: the server closes a connection that sends no complete header
/// within the header timeout, and a flood of idle connections beyond the connection limit
/// waits in the backlog instead of taking the API (and the process's file descriptors) down.
#[tokio::test]
async fn idle_and_slow_connections_are_closed_and_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = tempfile::tempdir().unwrap();
    let server = start(
        data.path(),
        &[
            ("EIDER_HTTP_HEADER_TIMEOUT_SECONDS", "2"),
            ("EIDER_HTTP_MAX_CONNECTIONS", "8"),
        ],
    );
    let address = server.base.trim_start_matches("http://").to_string();
    // A slowloris: half a header, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /users HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Idle connections beyond the limit.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let began = Instant::now();
    // The server may answer 408 before it closes; either way the connection ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 256];
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow connection stays open");
    assert!(
        began.elapsed() < Duration::from_secs(6),
        "{:?}",
        began.elapsed()
    );
    // A real client still gets through once the idle ones are timed out.
    let c = reqwest::Client::new();
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(20),
        call(
            &c,
            reqwest::Method::GET,
            format!("{}/users", server.base),
            None,
        ),
    )
    .await
    .expect("answered while idle connections were open");
    assert_eq!(status, 200);
    drop(idle);
}
