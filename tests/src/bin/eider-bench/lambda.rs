//! The Lambda functions as Lambda runs them: each release binary started under a Lambda
//! Runtime API served here on loopback (what cargo-lambda's emulator and Lambda itself
//! serve), over moto, beside a hello-world `lambda_http` function built the same way.
//!
//! Per function: the binary's size; init (process start to its first `next` call: the
//! runtime, the configuration and the store's clients); the first request (the event handed
//! over to its answer posted: what a cold invocation adds after init); and the peak resident
//! memory (VmHWM) after it. Goals (issue 17): init at most 1.5 x hello world, binary at most
//! 10 MB, peak RSS at most 64 MB. The updates function is left out: its answer is a stream
//! that lasts until shortly before the deadline.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;

use crate::report::{Table, num, ratio};
use crate::server;

/// The functions, each with the sample event its first request gets (infra/events), or a
/// `GET` of one of its routes built from the users listing's event.
const FUNCTIONS: &[(&str, Event)] = &[
    ("eider-users", Event::File("users-list.json")),
    ("eider-addresses", Event::File("addresses-list.json")),
    ("eider-auth", Event::File("auth-authenticate.json")),
    (
        "eider-mailboxes",
        Event::Get("/users/6620f1a2b3c4d5e6f7a8b9c0/mailboxes"),
    ),
    (
        "eider-messages",
        Event::Get("/users/6620f1a2b3c4d5e6f7a8b9c0/search"),
    ),
    (
        "eider-archive",
        Event::Get("/users/6620f1a2b3c4d5e6f7a8b9c0/archived/messages"),
    ),
    (
        "eider-filters",
        Event::Get("/users/6620f1a2b3c4d5e6f7a8b9c0/filters"),
    ),
    (
        "eider-autoreply",
        Event::Get("/users/6620f1a2b3c4d5e6f7a8b9c0/autoreply"),
    ),
    (
        "eider-submit",
        Event::Get("/users/6620f1a2b3c4d5e6f7a8b9c0/storage"),
    ),
    ("eider-ingest", Event::File("ses-receipt.json")),
    ("eider-ws", Event::File("ws-connect.json")),
    (
        "eider-stream-bridge",
        Event::File("stream-bridge-journal.json"),
    ),
    // Messages that are not in the table: read, found gone, nothing to index.
    ("eider-indexer", Event::File("indexer-messages.json")),
    ("eider-janitor", Event::File("janitor-schedule.json")),
    // A queue message naming a delivery that is not there: read, found settled, dropped.
    (
        "eider-webhooks",
        Event::Inline(
            r#"{"Records":[{"messageId":"m1","receiptHandle":"r","body":"{\"pk\":\"WEBHOOK_QUEUE#0\",\"sk\":\"0#none\"}","attributes":{},"messageAttributes":{},"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:123456789012:q","awsRegion":"us-east-1"}]}"#,
        ),
    ),
];

#[derive(Clone, Copy)]
enum Event {
    File(&'static str),
    Get(&'static str),
    Inline(&'static str),
}

impl Event {
    fn body(&self, events: &Path) -> String {
        match self {
            Event::File(name) => std::fs::read_to_string(events.join(name)).unwrap(),
            Event::Inline(text) => text.to_string(),
            Event::Get(path) => {
                let template = std::fs::read_to_string(events.join("users-list.json")).unwrap();
                let mut event: Value = serde_json::from_str(&template).unwrap();
                event["rawPath"] = Value::from(*path);
                event["rawQueryString"] = Value::from("");
                event["requestContext"]["http"]["path"] = Value::from(*path);
                event["routeKey"] = Value::from("$default");
                event["queryStringParameters"] = Value::Null;
                event.to_string()
            }
        }
    }
}

/// What the runtime API saw of one function.
#[derive(Default)]
struct Seen {
    started: Option<Instant>,
    first_next: Option<Instant>,
    handed: Option<Instant>,
    answered: Option<Instant>,
    answer: Option<String>,
    error: Option<String>,
    event: String,
}

type Shared = Arc<Mutex<Seen>>;

async fn next(State(seen): State<Shared>) -> (HeaderMap, String) {
    let event = {
        let mut seen = seen.lock().unwrap();
        if seen.first_next.is_none() {
            seen.first_next = Some(Instant::now());
            seen.handed = Some(Instant::now());
            Some(seen.event.clone())
        } else {
            None
        }
    };
    let Some(event) = event else {
        // One invocation per process: the next call waits until the process is killed.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_static("bench-1"),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.to_string()).unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:bench"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-0-0"),
    );
    (headers, event)
}

async fn response(State(seen): State<Shared>, UrlPath(_id): UrlPath<String>, body: Bytes) {
    let mut seen = seen.lock().unwrap();
    seen.answered = Some(Instant::now());
    seen.answer = Some(String::from_utf8_lossy(&body).chars().take(300).collect());
}

async fn error(State(seen): State<Shared>, body: Bytes) {
    let mut seen = seen.lock().unwrap();
    seen.answered = Some(Instant::now());
    seen.error = Some(String::from_utf8_lossy(&body).chars().take(300).collect());
}

/// One figure row.
struct Measured {
    name: String,
    size: u64,
    init: Duration,
    /// The part of init spent opening the store's connections (the warm-up round trips), as
    /// the function's "function state ready" log line reports it.
    connections: Option<Duration>,
    first: Duration,
    rss_kb: u64,
    note: String,
}

/// `connections_ms` of the function's "function state ready" line (JSON logs).
fn connections_time(log: &str) -> Option<Duration> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["message"] == "function state ready")
        .and_then(|line| line["fields"]["connections_ms"].as_f64())
        .map(|ms| Duration::from_secs_f64(ms / 1e3))
}

/// Runs `binary` once under the runtime API with `event`; its figures.
async fn measure(binary: &Path, event: String, env: &[(&str, String)]) -> Measured {
    let seen: Shared = Arc::new(Mutex::new(Seen {
        event,
        ..Seen::default()
    }));
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("RUST_LOG", "warn,eider_shared::http=info")
        .stdout(Stdio::from(log.reopen().expect("reopen the log file")))
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    seen.lock().unwrap().started = Some(Instant::now());
    let mut child: Child = command.spawn().expect("start the function");
    let until = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().answered.is_none() && Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            seen.lock().unwrap().error = Some(format!("exited: {status}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rss_kb = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    let seen = seen.lock().unwrap();
    let started = seen.started.unwrap();
    let init = seen.first_next.map(|t| t - started).unwrap_or_default();
    let first = match (seen.handed, seen.answered) {
        (Some(h), Some(a)) => a - h,
        _ => Duration::ZERO,
    };
    let note = match (&seen.error, &seen.answer) {
        (Some(e), _) => format!("error: {e}"),
        (None, Some(a)) => status_of(a),
        (None, None) => "no answer in 30 s".into(),
    };
    let log = std::fs::read_to_string(log.path()).unwrap_or_default();
    Measured {
        name: binary.file_name().unwrap().to_string_lossy().into_owned(),
        size: std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0),
        init,
        connections: connections_time(&log),
        first,
        rss_kb,
        note,
    }
}

/// The status code of an API Gateway answer, or what kind of answer it was.
fn status_of(answer: &str) -> String {
    serde_json::from_str::<Value>(answer)
        .ok()
        .and_then(|v| v["statusCode"].as_u64())
        .map(|s| format!("HTTP {s}"))
        .unwrap_or_else(|| "answered".into())
}

/// Medians over `runs` cold starts of each function and of the hello world.
pub async fn run(runs: usize) -> Table {
    let (dynamo, s3) = eider_tests::moto::clients().await;
    let name = eider_tests::moto::unique_name("bench-lambda");
    eider_shared::store::dynamo::create_table(&dynamo, &name)
        .await
        .expect("create the moto table");
    eider_shared::store::s3::create_bucket(&s3, &name)
        .await
        .expect("create the moto bucket");
    let env = vec![
        ("EIDER_TABLE", name.clone()),
        ("EIDER_BUCKET", name.clone()),
        ("EIDER_DOMAIN", "example.com".to_string()),
        ("EIDER_WS_ENDPOINT", "http://127.0.0.1:9/live".to_string()),
        (
            "EIDER_WEBHOOK_QUEUE_URL",
            "http://127.0.0.1:9/queue".to_string(),
        ),
        (
            "AWS_ENDPOINT_URL",
            eider_tests::moto::endpoint().to_string(),
        ),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "bench".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "bench".to_string()),
    ];
    let events = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/events");
    let hello = server::release_binary("hello-lambda");
    assert!(
        hello.exists(),
        "{} is missing: build it with cargo build --release -p eider-tests --bin hello-lambda (scripts/bench.sh does)",
        hello.display()
    );
    let mut rows = Vec::new();
    let mut all = vec![(
        "hello-lambda".to_string(),
        hello,
        Event::File("users-list.json"),
    )];
    for (binary, event) in FUNCTIONS {
        let path = server::release_binary(binary);
        if path.exists() {
            all.push((binary.to_string(), path, *event));
        } else {
            eprintln!("[lambda] {binary} is not built (scripts/bench.sh builds it); left out");
        }
    }
    let mut hello_init = Duration::ZERO;
    for (name, path, event) in all {
        let mut samples = Vec::new();
        for _ in 0..runs.max(1) {
            samples.push(measure(&path, event.body(&events), &env).await);
        }
        samples.sort_by_key(|m| m.init);
        let mut median = samples.swap_remove(samples.len() / 2);
        median.name = name;
        eprintln!(
            "[lambda] {}: {} bytes, init {:.1} ms ({:.1} ms opening connections), first request {:.1} ms, peak {} kB ({})",
            median.name,
            median.size,
            median.init.as_secs_f64() * 1e3,
            median.connections.unwrap_or_default().as_secs_f64() * 1e3,
            median.first.as_secs_f64() * 1e3,
            median.rss_kb,
            median.note
        );
        if median.name == "hello-lambda" {
            hello_init = median.init;
        }
        rows.push(median);
    }
    let mut table = Table::new(
        format!(
            "Lambda functions under a runtime API on loopback, over moto (medians of {runs} cold starts)"
        ),
        &[
            "function",
            "binary MB",
            "init ms",
            "init ÷ hello",
            "of which connections ms",
            "init without them ÷ hello",
            "first request ms",
            "peak RSS MB",
            "answer",
        ],
    );
    let hello = hello_init.as_secs_f64().max(1e-9);
    for row in rows {
        let (connections, without) = match row.connections {
            Some(c) => (
                num(c.as_secs_f64() * 1e3),
                ratio(row.init.saturating_sub(c).as_secs_f64() / hello),
            ),
            None => ("-".into(), "-".into()),
        };
        table.row(vec![
            row.name,
            num(row.size as f64 / 1e6),
            num(row.init.as_secs_f64() * 1e3),
            ratio(row.init.as_secs_f64() / hello),
            connections,
            without,
            num(row.first.as_secs_f64() * 1e3),
            num(row.rss_kb as f64 / 1024.0),
            row.note,
        ]);
    }
    table
}
