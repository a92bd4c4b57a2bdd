//! The figure tables of the loopback part, and docs/benchmarks.md around all the tables.

use crate::Args;
use crate::load;
use crate::loopback::{LoadResults, Median, SizeResult};
use crate::report::{Table, num, ratio, thousands};

fn size_headers(results: &[SizeResult]) -> Vec<String> {
    results
        .iter()
        .map(|r| format!("{} msgs", thousands(r.size)))
        .collect()
}

fn headers<'a>(first: &'a str, sizes: &'a [String], rest: &[&'a str]) -> Vec<&'a str> {
    std::iter::once(first)
        .chain(sizes.iter().map(String::as_str))
        .chain(rest.iter().copied())
        .collect()
}

pub fn ingest_table(results: &[SizeResult]) -> Table {
    let sizes = size_headers(results);
    let mut table = Table::new(
        "Ingest: eider-local over loopback vs mail-parser alone",
        &headers("figure", &sizes, &["target"]),
    );
    let mut row = |name: &str, f: &dyn Fn(&SizeResult) -> String, target: &str| {
        let mut cells = vec![name.to_string()];
        cells.extend(results.iter().map(f));
        cells.push(target.to_string());
        table.row(cells);
    };
    row(
        "mail generated (MB)",
        &|r| num(r.mail_bytes as f64 / 1e6),
        "",
    );
    row(
        "HTTP upload, 4 clients, message/rfc822 (msg/s)",
        &|r| num(r.http_rate()),
        "",
    );
    row(
        "LMTP delivery, 4 sessions (msg/s)",
        &|r| num(r.lmtp_rate()),
        "",
    );
    row(
        "baseline: mail-parser parse alone, 1 thread (msg/s)",
        &|r| num(r.parse_rate()),
        "",
    );
    row(
        "HTTP upload ÷ mail-parser",
        &|r| ratio(r.http_rate() / r.parse_rate()),
        "≥ 0.5",
    );
    row(
        "LMTP delivery ÷ mail-parser",
        &|r| ratio(r.lmtp_rate() / r.parse_rate()),
        "≥ 0.5",
    );
    row("filling the mailbox took (s)", &|r| num(r.fill_secs), "");
    table.note(
        "Messages 9 of every 10 go in over HTTP, the tenth over LMTP, in rounds of 1,000; the \
         rates are messages over the wall time of their own phases. mail-parser parses the very \
         same messages in the bench process, one after the other.",
    );
    table
}

pub fn reads_table(results: &[SizeResult], runs: usize) -> Table {
    let sizes = size_headers(results);
    let last = results.len() - 1;
    let mut extra = vec!["largest ÷ smallest"];
    if results.len() > 2 {
        extra.push("largest ÷ previous");
    }
    extra.push("target");
    let mut table = Table::new(
        format!("Single requests over loopback HTTP: medians of {runs} runs (ms)"),
        &headers("figure", &sizes, &extra),
    );
    let mut row = |name: &str,
                   pick: &dyn Fn(&SizeResult) -> Median,
                   show_total: &dyn Fn(&SizeResult) -> String,
                   target: &str| {
        let mut cells = vec![name.to_string()];
        cells.extend(results.iter().map(|r| {
            let m = pick(r);
            let fewer = if m.runs < runs {
                format!(" ({} runs)", m.runs)
            } else {
                String::new()
            };
            format!("{}{}{fewer}", num(m.ms), show_total(r))
        }));
        cells.push(ratio(pick(&results[last]).ms / pick(&results[0]).ms));
        if results.len() > 2 {
            cells.push(ratio(pick(&results[last]).ms / pick(&results[last - 1]).ms));
        }
        cells.push(target.to_string());
        table.row(cells);
    };
    let none = |_: &SizeResult| String::new();
    row(
        "baseline: GET hello-world, same client",
        &|r| r.hello,
        &none,
        "",
    );
    row(
        "search, a word in every message (`limit=20`) [total]",
        &|r| r.search_common,
        &|r| {
            format!(
                " [{}]",
                thousands(r.search_common.total.unwrap_or(0) as usize)
            )
        },
        "100k ÷ 10k ≤ 2; < 100 ms at 100k",
    );
    row(
        "search, a rare word [total / planted]",
        &|r| r.search_rare,
        &|r| format!(" [{}/{}]", r.search_rare.total.unwrap_or(0), r.rare_planted),
        "100k ÷ 10k ≤ 2",
    );
    row("list 20 messages", &|r| r.list, &none, "100k ÷ 1k ≤ 1.2");
    row("GET one message", &|r| r.get, &none, "100k ÷ 1k ≤ 1.2");
    row("GET a user", &|r| r.get_user, &none, "");
    table.note(
        "One client, one request at a time, keep-alive; each median after a warm-up request \
         (a figure stops early after 60 s, with at least 5 runs). `GET one message` cycles \
         through the same 20 messages at every size. [total] is the search's `total` answer; \
         a rare-word total below the planted count means words past the indexed part of the \
         text are not found.",
    );
    table
}

pub fn storage_table(results: &[SizeResult]) -> Table {
    let sizes = size_headers(results);
    let mut table = Table::new(
        "Storage: the data folder on disk vs the mail stored",
        &headers("figure", &sizes, &[]),
    );
    let mut row = |name: &str, f: &dyn Fn(&SizeResult) -> String| {
        let mut cells = vec![name.to_string()];
        cells.extend(results.iter().map(f));
        table.row(cells);
    };
    let mb = |b: u64| num(b as f64 / 1e6);
    row("mail stored (MB)", &|r| mb(r.mail_bytes));
    row("data folder on disk (MB)", &|r| mb(r.disk));
    row("  eider.redb (MB)", &|r| mb(r.disk_redb));
    row("  blobs/ (MB)", &|r| mb(r.disk_blobs));
    row("data folder ÷ mail", &|r| {
        ratio(r.disk as f64 / r.mail_bytes as f64)
    });
    table.note(
        "Allocated blocks (`du`), measured right after the mailbox is filled; mail stored is \
         the generated messages' bytes (LMTP adds a few header lines to its tenth).",
    );
    table
}

/// The search design against the alternative: the full-text index (Tantivy, the local
/// server's) vs the table's term items (the Lambda functions'), on the same generated mail.
/// The two search designs in the cloud's shape (eider-local on DynamoDB + S3, moto).
pub fn cloud_search_table(index: &SizeResult, terms: &SizeResult) -> Table {
    let mut table = Table::new(
        format!(
            "Search design in the cloud's shape: per-user index in the bucket vs term items, {} messages on DynamoDB + S3 (moto)",
            thousands(index.size)
        ),
        &[
            "figure",
            "index in the bucket",
            "term items",
            "index ÷ term items",
        ],
    );
    let mut row = |name: &str, a: f64, b: f64| {
        table.row(vec![
            name.to_string(),
            num(a),
            num(b),
            ratio(a / b.max(1e-9)),
        ]);
    };
    row(
        "search, a word in every message (ms)",
        index.search_common.ms,
        terms.search_common.ms,
    );
    row(
        "search, a rare word (ms)",
        index.search_rare.ms,
        terms.search_rare.ms,
    );
    let total = |m: &Median| m.total.unwrap_or(0) as f64;
    row(
        "rare word: total found",
        total(&index.search_rare),
        total(&terms.search_rare),
    );
    row(
        "HTTP upload, 4 clients (msg/s)",
        index.http_rate(),
        terms.http_rate(),
    );
    row(
        "LMTP delivery, 4 sessions (msg/s)",
        index.lmtp_rate(),
        terms.lmtp_rate(),
    );
    row("list 20 messages (ms)", index.list.ms, terms.list.ms);
    row("GET one message (ms)", index.get.ms, terms.get.ms);
    table.note(
        "eider-local with EIDER_STORE=aws on a fresh moto table and bucket for each design: the \
         index written after each change here (a user's concurrent changes grouped into one \
         commit), where in Lambda eider-indexer commits a user's changes of a stream batch at \
         once; term items are written by each upload itself (one item per distinct word). \
         moto is a Python server on the same cores: its times are not DynamoDB's, the ratios \
         and the request counts in docs/data-model.md are what carry over.",
    );
    table
}

pub fn search_design_table(index: &[SizeResult], terms: &[SizeResult]) -> Table {
    let mut table = Table::new(
        "Search design: full-text index (Tantivy) vs term items in the table",
        &[
            "figure",
            "messages",
            "Tantivy",
            "term items",
            "Tantivy ÷ term items",
        ],
    );
    for t in terms {
        let Some(i) = index.iter().find(|r| r.size == t.size) else {
            continue;
        };
        let size = thousands(t.size);
        let mut row = |name: &str, a: f64, b: f64, shown: &dyn Fn(f64) -> String| {
            table.row(vec![
                name.to_string(),
                size.clone(),
                shown(a),
                shown(b),
                ratio(a / b.max(1e-9)),
            ]);
        };
        row(
            "search, a word in every message (ms)",
            i.search_common.ms,
            t.search_common.ms,
            &num,
        );
        row(
            "search, a rare word (ms)",
            i.search_rare.ms,
            t.search_rare.ms,
            &num,
        );
        let total = |m: &Median| m.total.unwrap_or(0) as f64;
        row(
            "rare word: total found",
            total(&i.search_rare),
            total(&t.search_rare),
            &num,
        );
        row("HTTP upload (msg/s)", i.http_rate(), t.http_rate(), &num);
        row("list 20 messages (ms)", i.list.ms, t.list.ms, &num);
        row("GET one message (ms)", i.get.ms, t.get.ms, &num);
        row(
            "data folder on disk (MB)",
            i.disk as f64 / 1e6,
            t.disk as f64 / 1e6,
            &num,
        );
    }
    table.note(
        "Each design fills its own fresh data folder with the same messages \
         (EIDER_SEARCH_INDEX=tantivy or terms). Term items index only the first 4 KiB of text; \
         the full-text index the whole text, hence more rare-word matches.",
    );
    table
}

pub fn load_table(load: &LoadResults) -> Table {
    let mut table = Table::new(
        format!(
            "Under load: wrk, {} connections, {} threads, {} s each, at {} messages",
            load::CONNECTIONS,
            load::THREADS,
            load.seconds,
            thousands(load.size)
        ),
        &[
            "endpoint",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "÷ hello-world",
            "target",
        ],
    );
    let base = load.hello.requests_per_sec;
    for (name, r, target) in [
        ("baseline: hello-world axum server", &load.hello, ""),
        ("GET one message", &load.get_message, "≥ 0.3, p99 ≤ 5 ms"),
        ("list 20 messages", &load.list, "≥ 0.3, p99 ≤ 5 ms"),
        ("GET a user", &load.get_user, ""),
        (
            "a path no route takes (Eider's layers and its JSON 404 only)",
            &load.no_route,
            "",
        ),
    ] {
        table.row(vec![
            name.to_string(),
            num(r.requests_per_sec),
            num(r.p50),
            num(r.p99),
            ratio(r.requests_per_sec / base),
            target.to_string(),
        ]);
    }
    table.note(
        "wrk, the server under test and the bench share the machine's cores; the hello-world \
         server (`eider-bench hello`) runs on the same tokio multi-threaded runtime as eider-local. The last row is the \
         ceiling for any endpoint: the request through Eider's layers (access, settings, \
         limits, tracing, panic guard) and router to the JSON 404, with no handler and no store.",
    );
    table
}

pub fn document(
    date: &str,
    machine: &[String],
    command_line: &str,
    args: &Args,
    elapsed: f64,
    tables: &[Table],
) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    out.push_str(
        "Written by `scripts/bench.sh` (the `eider-bench` binary of `tests/`), which overwrites \
         this file on each run. Every figure stands beside a baseline measured in the same run: \
         on a shared, noisy machine the ratios hold better than the raw times. The targets are \
         those of issue 14.\n\n",
    );
    out.push_str(&format!("- date: {date}\n"));
    out.push_str(&format!(
        "- command: `{command_line}` (took {elapsed:.0} s)\n"
    ));
    out.push_str(&format!(
        "- data: generated with seed {}; mailbox sizes {}; one user, realistic MIME (Zipf \
         words over 4,000 pseudo-words, plain and multipart/alternative, 8% with attachments, \
         RFC 2047 subjects and names, 40 senders, threads)\n",
        args.seed,
        args.sizes
            .iter()
            .map(|s| thousands(*s))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for line in machine {
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    for table in tables {
        out.push_str(&table.markdown());
    }
    out
}
