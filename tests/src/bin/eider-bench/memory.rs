//! Memory of large uploads: the release `eider-local`'s resident memory while it stores one
//! large message (about 60 MB, most of it a base64 attachment), sent as a message/rfc822
//! body, as WildDuck's JSON with `raw` in base64, and as three such JSON uploads at once.
//! The baseline is the message itself: a server that held each body once would peak near
//! one message per upload above its idle size.
//!
//! Two peaks per upload, read from /proc: the resident set's high-water mark (VmHWM, reset
//! before each upload through `clear_refs`), which also counts the pages of spooled bodies
//! mapped from their files (page cache the kernel can drop), and the anonymous memory (heap)
//! sampled every 2 ms, which is what several uploads at once add up to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use eider_tests::spec::inbox_of;
use serde_json::{Value, json};

use crate::report::{Table, num, ratio};
use crate::server;

/// Size of the message uploaded, in bytes (the limit is 64 MiB).
const MESSAGE_BYTES: usize = 60 * 1024 * 1024;

pub async fn run() -> Table {
    let data = tempfile::tempdir().unwrap();
    let local = server::start_local(data.path(), "tantivy", &[]);
    let pid = local.process.pid();
    let base = local.process.base.clone();
    let client = server::client();
    let user = post(
        &client,
        &format!("{base}/users"),
        json!({"username": "large", "password": "a-long-passphrase"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mailboxes: Value = client
        .get(format!("{base}/users/{user}/mailboxes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inbox = inbox_of(&mailboxes);
    let uri = format!("{base}/users/{user}/mailboxes/{inbox}/messages");
    let message = large_message(MESSAGE_BYTES);
    let json_body =
        json!({"raw": base64::engine::general_purpose::STANDARD.encode(&message)}).to_string();
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let message_mb = mb(message.len() as u64);
    println!(
        "== Memory of large uploads: a {message_mb:.1} MB message (JSON body {:.1} MB) ==",
        mb(json_body.len() as u64)
    );

    let mut table = Table::new(
        format!("Memory of one large upload ({message_mb:.0} MB message), eider-local"),
        &["figure", "MB", "baseline", "MB", "ratio"],
    );
    let idle = status(pid).rss;
    table.row(vec![
        "resident before the uploads".into(),
        num(mb(idle)),
        "the message".into(),
        num(message_mb),
        ratio(mb(idle) / message_mb),
    ]);
    let forms: [(&str, usize); 3] = [
        ("message/rfc822 body", 1),
        ("JSON, raw in base64", 1),
        ("3 JSON uploads at once", 3),
    ];
    for (name, parallel) in forms {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        let before = status(pid);
        let sampling = Arc::new(AtomicBool::new(true));
        let peak_anon = Arc::new(AtomicU64::new(before.anon));
        let sampler = {
            let (sampling, peak_anon) = (sampling.clone(), peak_anon.clone());
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    peak_anon.fetch_max(status(pid).anon, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let started = Instant::now();
        let uploads = (0..parallel).map(|_| {
            let request = if name.starts_with("message/rfc822") {
                client
                    .post(&uri)
                    .header("content-type", "message/rfc822")
                    .body(message.clone())
            } else {
                client
                    .post(&uri)
                    .header("content-type", "application/json")
                    .body(json_body.clone())
            };
            async move {
                let answer: Value = request.send().await.unwrap().json().await.unwrap();
                assert_eq!(answer["success"], true, "{answer}");
            }
        });
        futures::future::join_all(uploads).await;
        let took = started.elapsed();
        sampling.store(false, Ordering::Relaxed);
        sampler.join().unwrap();
        let peak = status(pid).hwm;
        let anon = peak_anon.load(Ordering::Relaxed);
        println!(
            "{name}: {:.2} s, peak resident {:.0} MB, peak heap {:.0} MB (before: {:.0} MB, heap {:.0} MB)",
            took.as_secs_f64(),
            mb(peak),
            mb(anon),
            mb(before.rss),
            mb(before.anon)
        );
        let baseline = format!("{parallel} × the message");
        let base_mb = message_mb * parallel as f64;
        table.row(vec![
            format!("{name}: peak heap above idle"),
            num(mb(anon.saturating_sub(before.anon))),
            baseline.clone(),
            num(base_mb),
            ratio(mb(anon.saturating_sub(before.anon)) / base_mb),
        ]);
        table.row(vec![
            format!("{name}: peak resident incl. mapped spools"),
            num(mb(peak)),
            baseline,
            num(base_mb),
            ratio(mb(peak) / base_mb),
        ]);
    }
    table.note(
        "Heap: anonymous memory sampled every 2 ms. Resident: the high-water mark, which also \
         counts spooled bodies mapped from their (unnamed) files: page cache the kernel can \
         reclaim. Before the spool (d9e391c, same message, same machine) the JSON upload \
         peaked at 309 MB resident of which 284 MB heap, three at once at 696 MB (674 MB heap), \
         the message/rfc822 body at 158 MB (138 MB heap).",
    );
    println!();
    table
}

struct Status {
    rss: u64,
    hwm: u64,
    anon: u64,
}

/// Resident figures of `pid` from /proc, in bytes.
fn status(pid: u32) -> Status {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Status {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
        anon: field("RssAnon:"),
    }
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> Value {
    client
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A message of about `size` bytes: a short text and one base64 attachment of
/// pseudo-random bytes (incompressible, as photos and archives are).
fn large_message(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let payload: Vec<u8> = (0..size * 3 / 4)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&payload);
    let mut raw = String::from(
        "From: Sender <sender@example.com>\r\nTo: large@example.com\r\nSubject: The photos\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nAll of them, attached.\r\n--b\r\n\
         Content-Type: application/zip; name=\"photos.zip\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    for line in encoded.as_bytes().chunks(76) {
        raw.push_str(std::str::from_utf8(line).unwrap());
        raw.push_str("\r\n");
    }
    raw.push_str("--b--\r\n");
    raw.into_bytes()
}
