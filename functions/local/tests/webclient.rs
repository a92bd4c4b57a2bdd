//! End to end, as WildDuck's web client drives the API: the real `eider-local` with a root
//! access token; the client signs a user up with the root token, logs in with `token: true`,
//! and from then on makes every call with only the user's token (`X-Access-Token`), as
//! `nodemailer/wildduck-webmail` does. Mail arrives over LMTP while an updates stream is open.

mod common;

use std::time::Duration;

use common::start;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ROOT: &str = "root-secret-of-the-operator";

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            request = request.header("X-Access-Token", &self.token);
        }
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
        assert_eq!(answer["success"], true, "{method} {path}: {answer}");
        answer
    }
}

/// One message over LMTP (a plain conversation, as an MTA speaks it); answers the reply to
/// the end of DATA.
async fn lmtp_deliver(port: u16, from: &str, to: &str, message: &str) -> String {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    // A reply: lines until one whose fourth character is a space.
    async fn reply(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    ) -> String {
        loop {
            let line = lines.next_line().await.unwrap().unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }
    assert!(reply(&mut lines).await.starts_with("220"));
    for command in [
        "LHLO client.example".to_string(),
        format!("MAIL FROM:<{from}>"),
        format!("RCPT TO:<{to}>"),
        "DATA".to_string(),
    ] {
        write
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let answer = reply(&mut lines).await;
        assert!(
            answer.starts_with('2') || answer.starts_with('3'),
            "{command}: {answer}"
        );
    }
    write
        .write_all(format!("{message}\r\n.\r\n").as_bytes())
        .await
        .unwrap();
    let answer = reply(&mut lines).await;
    write.write_all(b"QUIT\r\n").await.unwrap();
    answer
}

/// The next event of an updates stream: the JSON of its `data:` lines.
async fn next_event(response: &mut reqwest::Response, buffer: &mut String) -> Value {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if !data.is_empty() {
                return serde_json::from_str(&data.join("\n")).unwrap();
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream is open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn the_web_clients_calls_work_with_only_the_users_token() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[("EIDER_ACCESS_TOKEN", ROOT)]);
    let http = reqwest::Client::new();
    let root = Client {
        http: http.clone(),
        base: server.base.clone(),
        token: ROOT.into(),
    };

    // Sign up and log in (the client's server side, with the root token).
    let created = root
        .ok(
            "POST",
            "/users",
            Some(json!({"username": "webuser", "password": "first-pass", "address": "webuser@example.com", "name": "Web User"})),
        )
        .await;
    let user = created["id"].as_str().unwrap().to_string();
    let login = root
        .ok(
            "POST",
            "/authenticate",
            Some(json!({"username": "webuser", "password": "first-pass", "token": true, "protocol": "Webmail", "sess": "s1", "ip": "127.0.0.1"})),
        )
        .await;
    let me = Client {
        http: http.clone(),
        base: server.base.clone(),
        token: login["token"].as_str().unwrap().to_string(),
    };

    // From here on only the user's token.
    let profile = me.ok("GET", &format!("/users/{user}"), None).await;
    assert_eq!(profile["name"], "Web User");
    let mailboxes = me
        .ok(
            "GET",
            &format!("/users/{user}/mailboxes?counters=true"),
            None,
        )
        .await;
    let id_of = |path: &str| {
        mailboxes["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["path"] == path)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (inbox, trash, junk) = (id_of("INBOX"), id_of("Trash"), id_of("Junk"));
    let mut stream = http
        .get(format!("{}/users/{user}/updates", server.base))
        .header("X-Access-Token", &me.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut buffer = String::new();

    // Mail arrives over LMTP while the stream is open: EXISTS, then the new counters.
    let reply = lmtp_deliver(
        server.lmtp_port,
        "friend@remote.example",
        "webuser@example.com",
        "From: Friend <friend@remote.example>\r\nTo: webuser@example.com\r\nSubject: Hello there\r\nMessage-ID: <m1@remote.example>\r\n\r\nHi!",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let exists = next_event(&mut stream, &mut buffer).await;
    assert_eq!(
        (exists["command"].as_str(), exists["mailbox"].as_str()),
        (Some("EXISTS"), Some(&*inbox))
    );
    let counters = next_event(&mut stream, &mut buffer).await;
    assert_eq!(
        counters,
        json!({"command": "COUNTERS", "mailbox": inbox, "total": 1, "unseen": 1})
    );
    // Spam by the upstream filter's header goes to Junk.
    let reply = lmtp_deliver(
        server.lmtp_port,
        "spammer@remote.example",
        "webuser@example.com",
        "From: spammer@remote.example\r\nTo: webuser@example.com\r\nSubject: Cheap\r\nX-Rspamd-Spam: Yes\r\n\r\nBuy!",
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let exists = next_event(&mut stream, &mut buffer).await;
    assert_eq!(exists["mailbox"], junk.as_str());

    // The folder, a message, its source; read/unread, flag and move with the bulk form.
    let listing = me
        .ok(
            "GET",
            &format!("/users/{user}/mailboxes/{inbox}/messages?limit=10"),
            None,
        )
        .await;
    assert_eq!(listing["results"][0]["subject"], "Hello there");
    assert_eq!(listing["results"][0]["date"].as_str().unwrap().len(), 24);
    let message = me
        .ok(
            "GET",
            &format!("/users/{user}/mailboxes/{inbox}/messages/1?markAsSeen=true"),
            None,
        )
        .await;
    assert_eq!(message["envelope"]["from"], "friend@remote.example");
    assert!(message.get("cc").is_none());
    let bulk = format!("/users/{user}/mailboxes/{inbox}/messages");
    me.ok(
        "PUT",
        &bulk,
        Some(json!({"message": "1", "seen": false, "flagged": true})),
    )
    .await;
    let moved = me
        .ok("PUT", &bulk, Some(json!({"message": "1", "moveTo": trash})))
        .await;
    assert_eq!(moved["id"], json!([[1, 1]]));
    me.ok(
        "DELETE",
        &format!("/users/{user}/mailboxes/{trash}/messages/1"),
        None,
    )
    .await;
    let archived = me
        .ok("GET", &format!("/users/{user}/archived/messages"), None)
        .await;
    assert_eq!(archived["results"][0]["subject"], "Hello there");
    let restore = me
        .ok(
            "POST",
            &format!("/users/{user}/archived/restore"),
            Some(json!({"start": "2000-01-01T00:00:00.000Z", "end": "2100-01-01T00:00:00.000Z"})),
        )
        .await;
    assert!(restore["task"].is_string());
    let trash_now = me
        .ok("GET", &format!("/users/{user}/mailboxes/{trash}"), None)
        .await;
    assert_eq!(trash_now["total"], 1, "restored where it was deleted from");

    // Search, folders, settings.
    let found = me
        .ok(
            "GET",
            &format!("/users/{user}/search?query=hello&mailbox={trash}"),
            None,
        )
        .await;
    assert_eq!(found["total"], 1);
    let folder = me
        .ok(
            "POST",
            &format!("/users/{user}/mailboxes"),
            Some(json!({"path": "Projects"})),
        )
        .await;
    let folder = folder["id"].as_str().unwrap();
    me.ok(
        "PUT",
        &format!("/users/{user}/mailboxes/{folder}"),
        Some(json!({"path": "Work"})),
    )
    .await;
    me.ok("DELETE", &format!("/users/{user}/mailboxes/{folder}"), None)
        .await;
    let asp = me
        .ok("POST", &format!("/users/{user}/asps"), Some(json!({"description": "Phone", "scopes": ["imap", "smtp"], "generateMobileconfig": true})))
        .await;
    me.ok(
        "DELETE",
        &format!("/users/{user}/asps/{}", asp["id"].as_str().unwrap()),
        None,
    )
    .await;
    me.ok(
        "POST",
        &format!("/users/{user}/filters"),
        Some(json!({"query": {"from": "boss"}, "action": {"flag": true}})),
    )
    .await;
    me.ok(
        "PUT",
        &format!("/users/{user}/autoreply"),
        Some(json!({"status": true, "subject": "Away", "text": "Back Monday"})),
    )
    .await;
    let log = me
        .ok("GET", &format!("/users/{user}/authlog?page=1"), None)
        .await;
    let event = log["results"][0]["id"].as_str().unwrap();
    let entry = me
        .ok("GET", &format!("/users/{user}/authlog/{event}"), None)
        .await;
    assert_eq!(entry["id"], event);

    // A password change keeps this token working.
    me.ok(
        "PUT",
        &format!("/users/{user}"),
        Some(json!({"existingPassword": "first-pass", "password": "second-pass"})),
    )
    .await;
    me.ok("GET", "/authenticated", None).await;

    // Nothing beyond its own user.
    let (status, body) = me.call("GET", "/users?limit=250", None).await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(1)));
    let other = root
        .ok(
            "POST",
            "/users",
            Some(json!({"username": "other", "password": "other-pass"})),
        )
        .await;
    let (status, body) = me
        .call(
            "GET",
            &format!("/users/{}", other["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("MissingPrivileges"))
    );

    // Logging out ends the token.
    me.ok("DELETE", "/authenticate", None).await;
    let (status, body) = me.call("GET", &format!("/users/{user}"), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("InvalidToken")));
}

#[tokio::test]
async fn sent_mail_reaches_a_local_user_live_and_the_outbox_gets_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path(), &[]);
    let http = reqwest::Client::new();
    let api = Client {
        http: http.clone(),
        base: server.base.clone(),
        token: String::new(),
    };
    let mut ids = Vec::new();
    for name in ["sender", "receiver"] {
        let created = api
            .ok(
                "POST",
                "/users",
                Some(json!({"username": name, "password": "secret-pass", "address": format!("{name}@example.com")})),
            )
            .await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let (sender, receiver) = (&ids[0], &ids[1]);
    let mut stream = http
        .get(format!("{}/users/{receiver}/updates", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut buffer = String::new();

    let answer = api
        .ok(
            "POST",
            &format!("/users/{sender}/submit"),
            Some(json!({
                "to": [{"name": "Receiver", "address": "receiver@example.com"}, {"address": "someone@remote.example"}],
                "subject": "Hello from the API",
                "html": "<p>Hi there</p>",
                "attachments": [{"filename": "note.txt", "content": "aGVsbG8="}],
            })),
        )
        .await;
    assert!(answer["message"]["queueId"].is_string(), "{answer}");
    let exists = next_event(&mut stream, &mut buffer).await;
    assert_eq!(exists["command"], "EXISTS", "{exists}");
    let counters = next_event(&mut stream, &mut buffer).await;
    assert_eq!(
        (counters["command"].as_str(), counters["unseen"].as_u64()),
        (Some("COUNTERS"), Some(1))
    );
    let inbox = exists["mailbox"].as_str().unwrap();
    let message = api
        .ok(
            "GET",
            &format!("/users/{receiver}/mailboxes/{inbox}/messages/1"),
            None,
        )
        .await;
    assert_eq!(message["subject"], "Hello from the API");
    assert_eq!(message["attachments"][0]["filename"], "note.txt");
    // The outside recipient's copy is in the outbox folder (no relay configured).
    let outbox: Vec<_> = std::fs::read_dir(data.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let sent = std::fs::read_to_string(&outbox[0]).unwrap();
    assert!(sent.contains("someone@remote.example"));
    assert!(sent.contains("Subject: Hello from the API"));
}
