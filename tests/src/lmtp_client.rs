//! A standard LMTP client for the tests: Python's `smtplib.LMTP`, driven through `python3`.
//!
//! smtplib's `data()` reads one reply; LMTP sends one per accepted recipient (RFC 2033 §4.2),
//! so the script reads the others with `getreply()`. Every reply comes back as
//! `(code, text)`.

use std::io::Write;
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::json;

/// The client's side of one conversation.
const SCRIPT: &str = r#"
import json, smtplib, sys
spec = json.loads(sys.stdin.read())
out = {"lhlo": None, "messages": []}
c = smtplib.LMTP("127.0.0.1", spec["port"], timeout=60)
code, text = c.ehlo("client.example")
out["lhlo"] = [code, text.decode("utf-8", "replace")]
for m in spec["messages"]:
    entry = {"mail": None, "rcpt": [], "data": []}
    code, text = c.mail(m["from"])
    entry["mail"] = [code, text.decode("utf-8", "replace")]
    accepted = 0
    for r in m["to"]:
        code, text = c.rcpt(r)
        entry["rcpt"].append([code, text.decode("utf-8", "replace")])
        if code == 250:
            accepted += 1
    if accepted:
        try:
            code, text = c.data(m["raw"].encode("utf-8"))
        except smtplib.SMTPDataError as e:
            code, text = e.smtp_code, e.smtp_error
        entry["data"].append([code, text.decode("utf-8", "replace")])
        for _ in range(accepted - 1):
            code, text = c.getreply()
            entry["data"].append([code, text.decode("utf-8", "replace")])
    else:
        c.rset()
    out["messages"].append(entry)
c.quit()
print(json.dumps(out))
"#;

/// One message of a conversation.
pub struct Message<'a> {
    pub from: &'a str,
    pub to: &'a [&'a str],
    pub raw: &'a str,
}

/// The server's replies: `(code, text)`.
pub type Reply = (u16, String);

#[derive(Debug, Deserialize)]
pub struct MessageReplies {
    pub mail: Reply,
    pub rcpt: Vec<Reply>,
    /// One per accepted recipient, in RCPT order.
    pub data: Vec<Reply>,
}

#[derive(Debug, Deserialize)]
pub struct Conversation {
    pub lhlo: Reply,
    pub messages: Vec<MessageReplies>,
}

/// Runs one LMTP session against `127.0.0.1:port` sending `messages`; blocking (call it
/// through `spawn_blocking` from async tests).
pub fn converse(port: u16, messages: &[Message<'_>]) -> Conversation {
    let spec = json!({
        "port": port,
        "messages": messages.iter().map(|m| json!({"from": m.from, "to": m.to, "raw": m.raw})).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the LMTP tests use its smtplib)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "smtplib.LMTP failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "unexpected client output ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// [`converse`] from async code.
pub async fn converse_async(
    port: u16,
    messages: Vec<(String, Vec<String>, String)>,
) -> Conversation {
    tokio::task::spawn_blocking(move || {
        let tos: Vec<Vec<&str>> = messages
            .iter()
            .map(|(_, to, _)| to.iter().map(String::as_str).collect())
            .collect();
        let list: Vec<Message<'_>> = messages
            .iter()
            .zip(&tos)
            .map(|((from, _, raw), to)| Message { from, to, raw })
            .collect();
        converse(port, &list)
    })
    .await
    .unwrap()
}

/// Starts the local server's LMTP listener on a free loopback port over `pipeline`; its port.
pub async fn serve(pipeline: eider_shared::domain::delivery::Delivery) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(eider_local::lmtp::serve(
        listener,
        pipeline,
        eider_local::lmtp::LmtpLimits::default(),
        std::future::pending(),
    ));
    port
}
