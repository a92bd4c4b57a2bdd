//! End to end over LMTP: the real `eider-local` binary, a standard LMTP client (Python's
//! `smtplib.LMTP`) sending a batch of messages in one session, the messages read back over
//! HTTP, and an autoreply found as a file in the outbox folder. Prints deliveries per second.

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::start;
use serde_json::{Value, json};

/// Sends `count` messages to `to` in one session; returns the DATA reply codes.
const CLIENT: &str = r#"
import smtplib, sys
port, count, to = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = smtplib.LMTP("127.0.0.1", port, timeout=60)
c.ehlo("client.example")
codes = []
for i in range(count):
    c.mail("friend@remote.example")
    c.rcpt(to)
    code, _ = c.data(("From: friend@remote.example\r\nTo: %s\r\nSubject: Batch %d\r\nMessage-ID: <b%d@remote.example>\r\n\r\nMessage number %d\r\n" % (to, i, i, i)).encode())
    codes.append(code)
c.quit()
print(",".join(str(x) for x in codes))
"#;

#[tokio::test]
async fn lmtp_batch_is_stored_and_the_autoreply_lands_in_the_outbox() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let (base, lmtp) = (server.base.clone(), server.lmtp_port);
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{base}/users"))
        .json(&json!({"username": "batch", "password": "pw", "address": "batch@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = created["id"].as_str().unwrap().to_string();
    let status = client
        .put(format!("{base}/users/{user}/autoreply"))
        .json(&json!({"status": true, "subject": "Away", "text": "Back soon"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let count = 100;
    let began = Instant::now();
    let python = Command::new("python3")
        .args([
            "-c",
            CLIENT,
            &lmtp.to_string(),
            &count.to_string(),
            "batch@example.com",
        ])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let output = tokio::task::spawn_blocking(move || python.wait_with_output().unwrap())
        .await
        .unwrap();
    let elapsed = began.elapsed();
    assert!(output.status.success());
    let codes = String::from_utf8_lossy(&output.stdout);
    assert!(
        codes.trim().split(',').all(|c| c == "250"),
        "replies: {codes}"
    );
    println!(
        "{count} LMTP deliveries in one session in {elapsed:?}: {:.0} messages/s",
        count as f64 / elapsed.as_secs_f64()
    );

    let mailboxes: Value = client
        .get(format!("{base}/users/{user}/mailboxes?counters=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mailboxes["results"][0]["path"], "INBOX");
    assert_eq!(mailboxes["results"][0]["total"], count);
    // One autoreply (once per sender), written to the outbox as a readable file.
    let outbox: Vec<_> = std::fs::read_dir(data.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let reply = std::fs::read_to_string(&outbox[0]).unwrap();
    assert!(reply.contains("X-Eider-Envelope-To: <friend@remote.example>"));
    assert!(reply.contains("Subject: Auto: Away"));
    assert!(reply.contains("Auto-Submitted: auto-replied"));
}

/// One transaction with the same recipient 50 times: one copy, and a reply per RCPT.
const REPEATED: &str = r#"
import smtplib, sys
port, to = int(sys.argv[1]), sys.argv[2]
c = smtplib.LMTP("127.0.0.1", port, timeout=60)
c.ehlo("client.example")
c.mail("friend@remote.example")
for _ in range(50):
    c.rcpt(to)
c.putcmd("data")
code, _ = c.getreply()
assert code == 354, code
c.send(b"From: friend@remote.example\r\nSubject: Repeated\r\n\r\nonce\r\n.\r\n")
codes = [c.getreply()[0] for _ in range(50)]
c.quit()
print(",".join(str(x) for x in codes))
"#;

#[tokio::test]
async fn a_recipient_named_many_times_gets_one_copy_and_every_reply() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let created: Value = client
        .post(format!("{base}/users"))
        .json(&json!({"username": "repeat", "password": "pw", "address": "repeat@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = created["id"].as_str().unwrap().to_string();
    let port = server.lmtp_port.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", REPEATED, &port, "repeat@example.com"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let codes = String::from_utf8_lossy(&output.stdout);
    let codes: Vec<&str> = codes.trim().split(',').collect();
    assert_eq!(codes.len(), 50);
    assert!(codes.iter().all(|c| *c == "250"), "{codes:?}");
    let mailboxes: Value = client
        .get(format!("{base}/users/{user}/mailboxes?counters=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mailboxes["results"][0]["total"], 1, "{mailboxes}");
}
