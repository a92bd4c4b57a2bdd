//! `eider-local` on DynamoDB + S3 (`EIDER_STORE=aws`): the real binary, started against the
//! moto server of the test command (`EIDER_TEST_AWS_ENDPOINT`), creating its own table and
//! bucket, serving the API over loopback HTTP, and finding its data again after a restart.
//! Its log on a pipe is plain text (no ANSI colour codes).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::free_port;
use common::spec::inbox_of;
use serde_json::{Value, json};

struct Server {
    child: Child,
    base: String,
    /// The log lines printed before the server said where it listens.
    startup_log: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the moto server's address reaches the AWS configuration.
#[derive(Clone, Copy)]
enum Endpoints {
    /// `AWS_ENDPOINT_URL`, for every service.
    Global,
    /// `AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL_S3` only.
    PerService,
}

fn start_on_aws(data: &std::path::Path, table: &str, bucket: &str, endpoints: Endpoints) -> Server {
    let endpoint = std::env::var("EIDER_TEST_AWS_ENDPOINT")
        .expect("EIDER_TEST_AWS_ENDPOINT names the moto server (scripts/test.sh starts one)");
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_eider-local"));
    match endpoints {
        Endpoints::Global => command.env("AWS_ENDPOINT_URL", &endpoint),
        // By name: for an IP address the SDK goes path-style by itself, which would hide
        // a wrong choice; `bucket.localhost` resolves nowhere.
        Endpoints::PerService => {
            let endpoint = endpoint.replace("127.0.0.1", "localhost");
            command
                .env_remove("AWS_ENDPOINT_URL")
                .env("AWS_ENDPOINT_URL_DYNAMODB", &endpoint)
                .env("AWS_ENDPOINT_URL_S3", &endpoint)
        }
    };
    let mut child = command
        .env("EIDER_STORE", "aws")
        .env("EIDER_CREATE_RESOURCES", "1")
        .env("EIDER_TABLE", table)
        .env("EIDER_BUCKET", bucket)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("EIDER_LISTEN", format!("127.0.0.1:{port}"))
        .env("EIDER_LMTP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("EIDER_DATA_DIR", data)
        .env("EIDER_DOMAIN", "example.com")
        .env("EIDER_JANITOR_SECONDS", "0")
        .env("RUST_LOG", "info")
        .env_remove("EIDER_ACCESS_TOKEN")
        .env_remove("EIDER_SMTP_RELAY")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("eider-local starts");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut startup_log = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "eider-local ended before it listened: {startup_log:?}"
        );
        if line.contains("listening on") {
            break;
        }
        startup_log.push(line);
    }
    // The rest of its output is drained so the pipe never fills.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        startup_log,
    }
}

async fn call(client: &reqwest::Client, method: &str, url: String, body: Option<Value>) -> Value {
    let mut request = client.request(method.parse().unwrap(), &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{method} {url}: {status} {body}");
    body
}

#[tokio::test]
async fn the_local_server_serves_the_api_from_dynamodb_and_s3() {
    let data = tempfile::tempdir().unwrap();
    let suffix = format!("{:x}", rand_suffix());
    let (table, bucket) = (
        format!("eider-local-{suffix}"),
        format!("eider-local-{suffix}"),
    );
    let server = start_on_aws(data.path(), &table, &bucket, Endpoints::Global);
    let log = server.startup_log.join("");
    assert!(log.contains(&format!("DynamoDB table {table}")), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );

    let c = reqwest::Client::new();
    let base = server.base.clone();
    let user = call(
        &c,
        "POST",
        format!("{base}/users"),
        Some(json!({"username": "cloudy", "password": "a-long-pass", "address": "cloudy@example.com"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let boxes = call(&c, "GET", format!("{base}/users/{user}/mailboxes"), None).await;
    let inbox = inbox_of(&boxes);
    let raw = "From: a@example.com\r\nTo: cloudy@example.com\r\nSubject: Stratus report\r\n\r\nNimbostratus all day.\r\n";
    let stored = call(
        &c,
        "POST",
        format!("{base}/users/{user}/mailboxes/{inbox}/messages"),
        Some(json!({ "raw": raw })),
    )
    .await;
    let uid = stored["message"]["id"].as_u64().unwrap();
    let found = call(
        &c,
        "GET",
        format!("{base}/users/{user}/search?q=nimbostratus"),
        None,
    )
    .await;
    assert_eq!(found["total"], 1, "{found}");
    let source = c
        .get(format!(
            "{base}/users/{user}/mailboxes/{inbox}/messages/{uid}/message.eml"
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(source.as_ref(), raw.as_bytes());
    drop(server);

    // Another start on the same table and bucket (its folder emptied): the data is there.
    let fresh = tempfile::tempdir().unwrap();
    let again = start_on_aws(fresh.path(), &table, &bucket, Endpoints::Global);
    let base = again.base.clone();
    let one = call(&c, "GET", format!("{base}/users/{user}"), None).await;
    assert_eq!(one["username"], "cloudy");
    let listed = call(
        &c,
        "GET",
        format!("{base}/users/{user}/mailboxes/{inbox}/messages"),
        None,
    )
    .await;
    assert_eq!(listed["results"][0]["subject"], "Stratus report");
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// An endpoint set for S3 alone (as for MinIO beside real DynamoDB) must also address the
/// bucket path-style: the endpoint is given as `localhost`, and `bucket.localhost` resolves
/// nowhere, so a stored message's blob could be neither written nor read back otherwise.
#[tokio::test]
async fn an_endpoint_set_for_s3_alone_addresses_the_bucket_path_style() {
    let data = tempfile::tempdir().unwrap();
    let name = format!("eider-local-{:x}", rand_suffix());
    let server = start_on_aws(data.path(), &name, &name, Endpoints::PerService);
    let (c, base) = (reqwest::Client::new(), server.base.clone());
    let user = call(
        &c,
        "POST",
        format!("{base}/users"),
        Some(json!({"username": "servicewise", "password": "a-long-pass"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let inbox = inbox_of(&call(&c, "GET", format!("{base}/users/{user}/mailboxes"), None).await);
    let raw = "From: a@example.com\r\nSubject: Cirrus\r\n\r\nHigh and thin.\r\n";
    let messages = format!("{base}/users/{user}/mailboxes/{inbox}/messages");
    let stored = call(&c, "POST", messages.clone(), Some(json!({ "raw": raw }))).await;
    let uid = stored["message"]["id"].as_u64().unwrap();
    let source = c
        .get(format!("{messages}/{uid}/message.eml"))
        .send()
        .await
        .unwrap();
    assert_eq!(source.status(), 200);
    assert_eq!(source.text().await.unwrap(), raw);
}
