//! `eider-cloud`: Eider's cloud shape on one machine, over moto.
//!
//! Every function's real binary runs under cargo-lambda's runtime emulator
//! (`cargo lambda watch --only-lambda-apis`), which routes the HTTP API as template.yaml's
//! `HttpApi` events route it, and the updates function's URL (a streaming response) at its
//! own route. A WebSocket API stand-in (`gateway`) invokes `eider-ws` and serves the
//! management API `eider-stream-bridge` posts to; moto's DynamoDB stream feeds the functions
//! the template subscribes to it, through their filters (`stream`). The table and the bucket
//! are created on moto first.
//!
//! ```text
//! cargo build --workspace --bins
//! target/debug/eider-cloud [--port N] [--ws-port N] [--aws-endpoint URL]
//!                          [--access-token TOKEN] [--logs DIR]
//! ```
//!
//! Without `--aws-endpoint` (or `EIDER_TEST_AWS_ENDPOINT`) it starts moto itself. It prints
//! `api http://...`, `websocket ws://...` and `logs <dir>`, then `ready`, and runs until it is
//! stopped; the processes it started stop with it. Not emulated: SES into `eider-ingest`, the
//! janitor's schedule and the webhooks queue (`eider-webhooks`).

mod gateway;
mod stream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eider_tests::{moto, template};
use tokio::process::{Child, Command};

/// Functions whose event sources the runner does not emulate.
const NOT_STARTED: [&str; 3] = ["eider-ingest", "eider-janitor", "eider-webhooks"];

struct Options {
    port: u16,
    ws_port: u16,
    aws_endpoint: Option<String>,
    access_token: Option<String>,
    logs: Option<PathBuf>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        port: 0,
        ws_port: 0,
        aws_endpoint: None,
        access_token: None,
        logs: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => options.port = value()?.parse()?,
            "--ws-port" => options.ws_port = value()?.parse()?,
            "--aws-endpoint" => options.aws_endpoint = Some(value()?),
            "--access-token" => options.access_token = Some(value()?),
            "--logs" => options.logs = Some(value()?.into()),
            "-h" | "--help" => {
                println!(
                    "eider-cloud [--port N] [--ws-port N] [--aws-endpoint URL] \
                     [--access-token TOKEN] [--logs DIR]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    tokio::runtime::Runtime::new()?.block_on(run(options))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The emulator's router: each route of the template to its function, as cargo-lambda's
/// `[watch.router]` configuration.
fn router_config(functions: &[template::Function], updates_routes: &[(&str, &str)]) -> String {
    let mut by_path: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for function in functions {
        for (method, path) in &function.routes {
            by_path
                .entry(path.clone())
                .or_default()
                .push((method.clone(), function.binary.clone()));
        }
        // The function URL takes any path; the function's own routes are what it serves.
        if function.has_url {
            for (method, path) in updates_routes {
                by_path
                    .entry(path.to_string())
                    .or_default()
                    .push((method.to_string(), function.binary.clone()));
            }
        }
    }
    let mut toml = String::from("[watch.router]\n");
    for (path, routes) in by_path {
        let entries: Vec<String> = routes
            .iter()
            .map(|(method, function)| format!("{{ function = {function:?}, method = {method:?} }}"))
            .collect();
        toml.push_str(&format!("{path:?} = [{}]\n", entries.join(", ")));
    }
    toml
}

async fn run(options: Options) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("no workspace root")?
        .to_path_buf();
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("no binary folder")?
        .to_path_buf();
    let functions = template::functions(&root.join("template.yaml"))?;

    // The store: a fresh table (with its stream) and bucket on moto.
    let endpoint = match options.aws_endpoint {
        Some(endpoint) => endpoint,
        None => moto::endpoint().to_string(),
    };
    let aws = moto::sdk_config_at(&endpoint).await;
    let (dynamo, s3) = eider_shared::store::s3::clients_from_config(&aws, true);
    let name = moto::unique_name("eider-cloud");
    eider_shared::store::dynamo::create_table(&dynamo, &name).await?;
    eider_shared::store::s3::create_bucket(&s3, &name).await?;
    let stream_arn = dynamo
        .describe_table()
        .table_name(&name)
        .send()
        .await?
        .table()
        .and_then(|t| t.latest_stream_arn())
        .context("the table has no stream")?
        .to_string();

    let logs = match options.logs {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("eider-cloud-logs.")
            .tempdir()?
            .keep(),
    };
    std::fs::create_dir_all(&logs)?;
    let log_file = |name: &str| -> anyhow::Result<Stdio> {
        Ok(std::fs::File::create(logs.join(format!("{name}.log")))?.into())
    };

    // The emulator, routing the HTTP API.
    let port = if options.port == 0 {
        free_port()
    } else {
        options.port
    };
    let ws_port = if options.ws_port == 0 {
        free_port()
    } else {
        options.ws_port
    };
    let updates_routes = eider_updates::routes().list();
    let config = logs.join("CargoLambda.toml");
    std::fs::write(&config, router_config(&functions, &updates_routes))?;
    let mut children: Vec<Child> = Vec::new();
    children.push(
        Command::new(eider_tests::tools::cargo_lambda()?)
            .args(["lambda", "watch", "--only-lambda-apis", "--disable-cors"])
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .arg("--global")
            .arg(&config)
            .current_dir(&root)
            .env("RUST_LOG", "warn")
            .stdout(log_file("cargo-lambda")?)
            .stderr(log_file("cargo-lambda.err")?)
            .kill_on_drop(true)
            .spawn()
            .context("start cargo lambda watch")?,
    );
    wait_for_port(port, Duration::from_secs(30)).await?;
    let invoke_base = format!("http://127.0.0.1:{port}");

    // Every function's binary, polling the emulator for its invocations.
    let secret_key: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    for function in &functions {
        if NOT_STARTED.contains(&function.binary.as_str()) {
            continue;
        }
        let binary = bin_dir.join(&function.binary);
        if !binary.is_file() {
            bail!(
                "{} is missing: build the functions first (cargo build --workspace --bins)",
                binary.display()
            );
        }
        let mut command = Command::new(&binary);
        command
            .envs(&function.env)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("{invoke_base}/.rt/{}", function.binary),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", &function.binary)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                function.memory_mb.to_string(),
            )
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_REGION", moto::REGION)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("EIDER_TABLE", &name)
            .env("EIDER_BUCKET", &name)
            .env("EIDER_DOMAIN", "example.com")
            .env("EIDER_SECRET_KEY", &secret_key)
            .env("EIDER_WS_ENDPOINT", format!("http://127.0.0.1:{ws_port}"))
            .env("RUST_LOG", "info")
            // Each function's own search cache, as each Lambda instance has its own /tmp.
            .env(
                "EIDER_SEARCH_CACHE",
                logs.join("search-cache").join(&function.binary),
            )
            .env_remove("EIDER_ACCESS_TOKEN")
            .stdout(log_file(&function.binary)?)
            .stderr(log_file(&format!("{}.err", function.binary))?)
            .kill_on_drop(true);
        if let Some(token) = &options.access_token {
            command.env("EIDER_ACCESS_TOKEN", token);
        }
        children.push(
            command
                .spawn()
                .with_context(|| format!("start {}", function.binary))?,
        );
    }

    // The WebSocket API and the stream's event source mapping.
    let ws_function = functions
        .iter()
        .find(|f| f.binary == "eider-ws")
        .context("template.yaml has no eider-ws")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", ws_port)).await?;
    let gateway = gateway::router(&invoke_base, &ws_function.binary);
    tokio::spawn(async move { axum::serve(listener, gateway).await });
    let subscribers = functions
        .iter()
        .filter(|f| !NOT_STARTED.contains(&f.binary.as_str()))
        .filter_map(|f| {
            Some(stream::Subscriber {
                function: f.binary.clone(),
                filter: f.stream_filter.clone()?,
            })
        })
        .collect();
    let streams = aws_sdk_dynamodbstreams::Client::new(&aws);
    tokio::spawn(stream::run(
        streams,
        stream_arn,
        subscribers,
        invoke_base.clone(),
    ));

    println!("api http://127.0.0.1:{port}");
    println!("websocket ws://127.0.0.1:{ws_port}");
    println!("logs {}", logs.display());
    println!("ready");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    for child in &mut children {
        let _ = child.kill().await;
    }
    Ok(())
}
