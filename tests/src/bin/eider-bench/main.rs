//! `eider-bench`: prints figures of the local stack, each beside a baseline measured in the
//! same run so the ratio holds on a noisy shared machine, and writes them to
//! docs/benchmarks.md. Run with `scripts/bench.sh` (which builds the release binaries first).
//!
//! Two parts:
//! * in-process figures (`inprocess.rs`): the router on the embedded store, no HTTP;
//! * loopback figures (`loopback.rs`): the release `eider-local` as a separate process on
//!   127.0.0.1, one user filled with generated mail (`mail_gen.rs`) at each mailbox size in a
//!   fresh data folder: ingest over HTTP and LMTP vs mail-parser alone, medians of search,
//!   list, get, the data folder's size vs the mail's, and `wrk` throughput vs a hello-world
//!   axum server (`eider-bench hello ADDR`, this binary) at the largest size up to 10,000,
//!   a path no route takes among them (Eider's layers alone);
//! * the memory of large uploads (`memory.rs`): peaks while one 60 MB message is stored.
//!
//! ```text
//! eider-bench [--sizes 1000,10000] [--full] [--seed N] [--runs 20] [--wrk-seconds 10]
//!             [--no-inprocess] [--no-memory] [--no-lambda] [--no-load] [--no-compare]
//!             [--doc docs/benchmarks.md | --no-doc]
//! eider-bench hello 127.0.0.1:0
//! ```

mod inprocess;
mod lambda;
mod lmtp;
mod load;
mod loopback;
mod mail_gen;
mod memory;
mod report;
mod server;
mod tables;

use std::time::{Duration, Instant};

use report::{Table, num, ratio};

struct Args {
    sizes: Vec<usize>,
    seed: u64,
    runs: usize,
    wrk_seconds: u32,
    inprocess: bool,
    memory: bool,
    lambda: bool,
    load: bool,
    /// Also measure search over term items (the alternative design).
    compare: bool,
    /// Also compare both designs on DynamoDB + S3 (moto), at the smallest size.
    cloud: bool,
    doc: Option<String>,
}

const USAGE: &str = "usage: eider-bench [--sizes 1000,10000] [--full] [--seed N] [--runs 20] \
[--wrk-seconds 10] [--no-inprocess] [--no-memory] [--no-lambda] [--no-load] [--no-compare] [--no-cloud] [--doc PATH | --no-doc]\n       eider-bench hello ADDR";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        sizes: vec![1_000, 10_000],
        seed: 1,
        runs: 20,
        wrk_seconds: 10,
        inprocess: true,
        memory: true,
        lambda: true,
        load: true,
        compare: true,
        cloud: true,
        doc: Some("docs/benchmarks.md".into()),
    };
    let mut full = false;
    let mut sizes_given = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                parsed.sizes = value("--sizes")?
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--sizes: {e}"))?;
                sizes_given = true;
            }
            "--full" => full = true,
            "--seed" => parsed.seed = value("--seed")?.parse().map_err(|e| format!("{e}"))?,
            "--runs" => parsed.runs = value("--runs")?.parse().map_err(|e| format!("{e}"))?,
            "--wrk-seconds" => {
                parsed.wrk_seconds = value("--wrk-seconds")?
                    .parse()
                    .map_err(|e| format!("{e}"))?
            }
            "--no-inprocess" => parsed.inprocess = false,
            "--no-memory" => parsed.memory = false,
            "--no-lambda" => parsed.lambda = false,
            "--no-load" => parsed.load = false,
            "--no-compare" => parsed.compare = false,
            "--no-cloud" => parsed.cloud = false,
            "--doc" => parsed.doc = Some(value("--doc")?),
            "--no-doc" => parsed.doc = None,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if full && !sizes_given {
        parsed.sizes.push(100_000);
    }
    parsed.sizes.sort_unstable();
    parsed.sizes.dedup();
    if parsed.sizes.is_empty() || parsed.sizes[0] < 20 {
        return Err("--sizes: at least 20 messages each".into());
    }
    parsed.runs = parsed.runs.max(1);
    Ok(parsed)
}

fn main() -> std::process::ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("hello") {
        argv.next();
        server::serve_hello(argv.next().as_deref().unwrap_or("127.0.0.1:0"));
        return std::process::ExitCode::SUCCESS;
    }
    let args = match parse_args(argv) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(bench(args));
    std::process::ExitCode::SUCCESS
}

async fn bench(args: Args) {
    let started = Instant::now();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let machine = report::machine();
    let command_line = std::env::var("EIDER_BENCH_COMMAND").unwrap_or_else(|_| {
        std::iter::once("eider-bench".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" ")
    });

    let mut tables = Vec::new();
    if args.inprocess {
        println!("== In process, on the embedded store (medians) ==");
        let rows = inprocess::run().await;
        println!();
        let mut table = Table::new(
            "In process, on the embedded store (medians)",
            &["figure", "ms", "baseline", "ms", "ratio"],
        );
        for row in rows {
            table.row(vec![
                row.name.clone(),
                num(row.value.as_secs_f64() * 1e3),
                row.baseline_name.clone(),
                num(row.baseline.as_secs_f64() * 1e3),
                ratio(row.ratio()),
            ]);
        }
        tables.push(table);
    }

    if args.memory {
        tables.push(memory::run().await);
    }

    if args.lambda {
        println!("== Lambda functions: size, init, first request, memory ==");
        tables.push(lambda::run(args.runs.min(5)).await);
    }

    let options = loopback::Options {
        seed: args.seed,
        runs: args.runs,
        budget: Duration::from_secs(60),
    };
    let smallest = args.sizes[0];
    let get_indices: Vec<usize> = (0..20).map(|k| k * smallest / 20).collect();
    // wrk at the largest size up to 10,000 (the default largest), so --full keeps it comparable.
    let load_size = args
        .sizes
        .iter()
        .copied()
        .filter(|s| *s <= 10_000)
        .max()
        .unwrap_or(smallest);
    let hello = server::start_hello();
    let mut results = Vec::new();
    let mut load = None;
    for &size in &args.sizes {
        eprintln!(
            "[{size}] starting ({:.0} s into the bench)",
            started.elapsed().as_secs_f64()
        );
        let wrk = (args.load && size == load_size).then_some(args.wrk_seconds);
        let (result, load_result) =
            loopback::run_size(size, &options, &hello, &get_indices, wrk, "tantivy", &[]).await;
        if load_result.is_some() {
            load = load_result;
        }
        results.push(result);
    }
    // The alternative design on the same data: search over the table's term items (what the
    // Lambda functions do), at the sizes up to 10,000.
    let mut term_results = Vec::new();
    if args.compare {
        for &size in args.sizes.iter().filter(|s| **s <= 10_000) {
            eprintln!("[{size}] again, searching term items");
            let (result, _) =
                loopback::run_size(size, &options, &hello, &get_indices, None, "terms", &[]).await;
            term_results.push(result);
        }
    }
    // Both designs in the cloud's shape: eider-local on DynamoDB + S3 (moto), at the smallest
    // size (moto answers in milliseconds, not DynamoDB's).
    let mut cloud_results = Vec::new();
    if args.cloud {
        for design in ["tantivy", "terms"] {
            eprintln!("[{smallest}] on DynamoDB + S3 (moto), search: {design}");
            let env = cloud_env().await;
            let (result, _) =
                loopback::run_size(smallest, &options, &hello, &get_indices, None, design, &env)
                    .await;
            cloud_results.push(result);
        }
    }
    drop(hello);

    tables.push(tables::ingest_table(&results));
    tables.push(tables::reads_table(&results, options.runs));
    tables.push(tables::storage_table(&results));
    if !term_results.is_empty() {
        tables.push(tables::search_design_table(&results, &term_results));
    }
    if let [index, terms] = &cloud_results[..] {
        tables.push(tables::cloud_search_table(index, terms));
    }
    if let Some(load) = &load {
        tables.push(tables::load_table(load));
    }
    println!(
        "\n== All figures (loopback: eider-local built for speed on 127.0.0.1, seed {}) ==\n",
        args.seed
    );
    for table in &tables {
        println!("{}", table.text());
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("bench took {elapsed:.0} s");

    if let Some(path) = &args.doc {
        let doc = tables::document(&date, &machine, &command_line, &args, elapsed, &tables);
        match std::fs::write(path, doc) {
            Ok(()) => eprintln!("wrote {path}"),
            Err(e) => eprintln!("cannot write {path}: {e}"),
        }
    }
}

/// What makes eider-local use a new table and bucket on moto (started if need be), created by
/// the server itself (`EIDER_CREATE_RESOURCES=1`).
async fn cloud_env() -> Vec<(&'static str, String)> {
    let _ = eider_tests::moto::clients().await;
    let name = eider_tests::moto::unique_name("bench-cloud");
    vec![
        ("EIDER_STORE", "aws".to_string()),
        ("EIDER_CREATE_RESOURCES", "1".to_string()),
        ("EIDER_TABLE", name.clone()),
        ("EIDER_BUCKET", name),
        (
            "AWS_ENDPOINT_URL",
            eider_tests::moto::endpoint().to_string(),
        ),
        ("AWS_REGION", eider_tests::moto::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "bench".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "bench".to_string()),
    ]
}
