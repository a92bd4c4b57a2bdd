//! The loopback figures: per mailbox size, a fresh data folder and a fresh release
//! `eider-local`, one user filled with generated mail (over HTTP by 4 clients, a tenth over
//! LMTP), then medians of single reads, the folder's size on disk, and optionally `wrk` runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::load::{self, WrkResult};
use crate::mail_gen::{self, COMMON_WORD, Generator, RARE_WORD, USER_ADDRESS};
use crate::server::{self, Local, Process};

/// Upload clients (HTTP) and LMTP sessions at once.
pub const CLIENTS: usize = 4;
/// Messages generated, parsed and stored per round.
const CHUNK: usize = 1000;
/// Every tenth message goes in over LMTP, the others over HTTP.
fn over_lmtp(i: usize) -> bool {
    i % 10 == 9
}

pub struct Options {
    pub seed: u64,
    pub runs: usize,
    /// Longest a median may take to collect (then fewer runs, at least 5).
    pub budget: Duration,
}

/// A median latency and, for searches, the `total` the server answered.
#[derive(Clone, Copy, Default)]
pub struct Median {
    pub ms: f64,
    pub runs: usize,
    pub total: Option<u64>,
}

#[derive(Default)]
pub struct SizeResult {
    pub size: usize,
    pub mail_bytes: u64,
    pub http_count: usize,
    pub http_secs: f64,
    pub lmtp_count: usize,
    pub lmtp_secs: f64,
    pub parse_secs: f64,
    pub rare_planted: usize,
    pub hello: Median,
    pub search_common: Median,
    pub search_rare: Median,
    pub list: Median,
    pub get: Median,
    pub get_user: Median,
    /// Allocated bytes of the data folder, of `eider.redb`, of `blobs/`.
    pub disk: u64,
    pub disk_redb: u64,
    pub disk_blobs: u64,
    pub fill_secs: f64,
}

impl SizeResult {
    pub fn http_rate(&self) -> f64 {
        self.http_count as f64 / self.http_secs.max(1e-9)
    }
    pub fn lmtp_rate(&self) -> f64 {
        self.lmtp_count as f64 / self.lmtp_secs.max(1e-9)
    }
    pub fn parse_rate(&self) -> f64 {
        self.size as f64 / self.parse_secs.max(1e-9)
    }
}

pub struct LoadResults {
    pub size: usize,
    pub seconds: u32,
    pub hello: WrkResult,
    pub get_message: WrkResult,
    pub list: WrkResult,
    pub get_user: WrkResult,
    /// A path no route takes: Eider's layers, router and JSON 404, no handler, no store.
    pub no_route: WrkResult,
}

/// The bench user in a running server.
struct Mailbox {
    base: String,
    user: String,
    inbox: String,
}

impl Mailbox {
    fn messages(&self) -> String {
        format!(
            "{}/users/{}/mailboxes/{}/messages",
            self.base, self.user, self.inbox
        )
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status} {body}");
    body
}

async fn create_user(client: &reqwest::Client, base: &str) -> Mailbox {
    let response = client
        .post(format!("{base}/users"))
        .json(&json!({
            "username": "bench",
            "password": "secretpass",
            "address": USER_ADDRESS,
            "name": "Bench User",
            "quota": 1u64 << 40,
        }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let user = body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("POST /users: {body}"))
        .to_string();
    let boxes = get_json(client, &format!("{base}/users/{user}/mailboxes")).await;
    let inbox = boxes["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["path"] == "INBOX")
        .and_then(|b| b["id"].as_str())
        .expect("an INBOX")
        .to_string();
    Mailbox {
        base: base.to_string(),
        user,
        inbox,
    }
}

/// Median of up to `runs` timed calls of `f` (after one warm-up call), stopping early once
/// `budget` is spent (at least 5 runs). `f(k)` returns the answer's `total`, if any.
async fn median<F, Fut>(options: &Options, mut f: F) -> Median
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    let total = f(0).await;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(options.runs);
    for k in 0..options.runs {
        let t = Instant::now();
        f(k + 1).await;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        if samples.len() >= 5 && started.elapsed() > options.budget {
            break;
        }
    }
    samples.sort_by(f64::total_cmp);
    Median {
        ms: samples[samples.len() / 2],
        runs: samples.len(),
        total,
    }
}

async fn timed_get(client: &reqwest::Client, url: &str, want_total: bool) -> Option<u64> {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    assert!(
        status.is_success(),
        "GET {url}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    if want_total {
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        body["total"].as_u64()
    } else {
        None
    }
}

/// Uploads `batch` over HTTP with [`CLIENTS`] concurrent clients; returns the UIDs by index.
async fn upload_http(
    client: &reqwest::Client,
    mailbox: &Mailbox,
    batch: Arc<Vec<(usize, Vec<u8>)>>,
) -> Vec<(usize, u64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let url = mailbox.messages();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, batch, next, url) = (client.clone(), batch.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut uids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some((i, raw)) = batch.get(n) else { break };
                let response = client
                    .post(&url)
                    .header("content-type", "message/rfc822")
                    .body(raw.clone())
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                assert!(
                    status.is_success(),
                    "upload of message {i}: {status} {body}"
                );
                uids.push((*i, body["message"]["id"].as_u64().unwrap()));
            }
            uids
        }));
    }
    let mut uids = Vec::new();
    for task in tasks {
        uids.extend(task.await.unwrap());
    }
    uids
}

/// Delivers `batch` over LMTP with [`CLIENTS`] concurrent sessions.
async fn deliver_lmtp(port: u16, batch: Arc<Vec<(usize, Vec<u8>, String)>>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (batch, next) = (batch.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut session = crate::lmtp::Session::connect(port).await;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some((_, raw, sender)) = batch.get(n) else {
                    break;
                };
                session.deliver(sender, USER_ADDRESS, raw).await;
            }
            session.quit().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Measures one mailbox size end to end. `get_indices` are the generated messages whose
/// `GET` is timed (the same at every size); `load` runs wrk for that many seconds at the end.
pub async fn run_size(
    size: usize,
    options: &Options,
    hello: &Process,
    get_indices: &[usize],
    load: Option<u32>,
    search_index: &str,
    store_env: &[(&str, String)],
) -> (SizeResult, Option<LoadResults>) {
    let data = tempfile::Builder::new()
        .prefix("eider-bench-")
        .tempdir()
        .unwrap();
    let Local {
        process: local,
        lmtp_port,
    } = server::start_local(data.path(), search_index, store_env);
    let client = server::client();
    let mailbox = create_user(&client, &local.base).await;
    eprintln!(
        "[{size}] eider-local ({search_index}) pid {} at {}, data in {}",
        local.pid(),
        local.base,
        data.path().display()
    );

    let generator = Generator::new(options.seed);
    let parser = mail_parser::MessageParser::default();
    let mut result = SizeResult {
        size,
        ..Default::default()
    };
    let mut uid_of = vec![None; size];
    let filling = Instant::now();
    let mut last_report = Instant::now();
    for start in (0..size).step_by(CHUNK) {
        let end = (start + CHUNK).min(size);
        let mut http = Vec::new();
        let mut lmtp = Vec::new();
        for i in start..end {
            let (raw, sender) = generator.message(i);
            result.mail_bytes += raw.len() as u64;
            result.rare_planted += usize::from(mail_gen::has_rare_word(i));
            let t = Instant::now();
            let parsed = parser.parse(&raw[..]);
            std::hint::black_box(&parsed);
            drop(parsed);
            result.parse_secs += t.elapsed().as_secs_f64();
            if over_lmtp(i) {
                lmtp.push((i, raw, sender));
            } else {
                http.push((i, raw));
            }
        }
        result.http_count += http.len();
        result.lmtp_count += lmtp.len();
        let t = Instant::now();
        for (i, uid) in upload_http(&client, &mailbox, Arc::new(http)).await {
            uid_of[i] = Some(uid);
        }
        result.http_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        deliver_lmtp(lmtp_port, Arc::new(lmtp)).await;
        result.lmtp_secs += t.elapsed().as_secs_f64();
        if last_report.elapsed() > Duration::from_secs(5) || end == size {
            last_report = Instant::now();
            eprintln!(
                "[{size}] {end}/{size} stored ({:.1} MB): HTTP {:.0} msg/s, LMTP {:.0} msg/s, {:.0} s so far",
                result.mail_bytes as f64 / 1e6,
                result.http_rate(),
                result.lmtp_rate(),
                filling.elapsed().as_secs_f64()
            );
        }
    }
    result.fill_secs = filling.elapsed().as_secs_f64();
    result.disk = server::disk_usage(data.path());
    result.disk_redb = server::file_usage(&data.path().join("eider.redb"));
    result.disk_blobs = server::disk_usage(&data.path().join("blobs"));

    // The UIDs of the messages whose GET is timed (HTTP uploads only have known UIDs).
    let get_uids: Vec<u64> = get_indices
        .iter()
        .map(|&i| {
            (i..size)
                .chain(0..i)
                .find_map(|j| uid_of[j])
                .expect("at least one message stored over HTTP")
        })
        .collect();

    eprintln!("[{size}] timing single reads ({} runs each)", options.runs);
    let c = &client;
    let hello_url = format!("{}/", hello.base);
    result.hello = median(options, |_| timed_get(c, &hello_url, false)).await;
    let search = |word: &str| {
        format!(
            "{}/users/{}/search?query={word}&limit=20",
            mailbox.base, mailbox.user
        )
    };
    let (common, rare) = (search(COMMON_WORD), search(RARE_WORD));
    result.search_common = median(options, |_| timed_get(c, &common, true)).await;
    result.search_rare = median(options, |_| timed_get(c, &rare, true)).await;
    let list = format!("{}?limit=20", mailbox.messages());
    result.list = median(options, |_| timed_get(c, &list, false)).await;
    let messages = mailbox.messages();
    result.get = median(options, |k| {
        let url = format!("{messages}/{}", get_uids[k % get_uids.len()]);
        async move { timed_get(c, &url, false).await }
    })
    .await;
    let user_url = format!("{}/users/{}", mailbox.base, mailbox.user);
    result.get_user = median(options, |_| timed_get(c, &user_url, false)).await;

    let load = match load {
        Some(seconds) => {
            let wrk = |what: &str, url: &str| {
                eprintln!("[{size}] wrk {seconds} s: {what}");
                load::wrk(url, seconds)
            };
            let run = |what: &str, url: &str| {
                let r = wrk(what, url);
                assert_eq!(r.errors, 0, "wrk on {url}: {r:?}");
                r
            };
            let hello_r = run("hello-world", &hello_url);
            let get_message = run(
                "GET one message",
                &format!("{}/{}", mailbox.messages(), get_uids[get_uids.len() / 2]),
            );
            let list_r = run("list 20 messages", &list);
            let get_user = run("GET a user", &user_url);
            let no_route_url = format!("{}/no-such-route", mailbox.base);
            let no_route = wrk("a path no route takes", &no_route_url);
            // Every answer a 404 (wrk counts them with the socket errors), none lost.
            assert!(
                no_route.requests > 0 && no_route.errors == no_route.requests,
                "wrk on {no_route_url}: {no_route:?}"
            );
            Some(LoadResults {
                size,
                seconds,
                hello: hello_r,
                get_message,
                list: list_r,
                get_user,
                no_route,
            })
        }
        None => None,
    };
    drop(local);
    (result, load)
}
