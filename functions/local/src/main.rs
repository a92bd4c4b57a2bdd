//! `eider-local`: every endpoint group in one process, on the embedded store (or, with
//! `EIDER_STORE=aws`, on DynamoDB + S3).
//!
//! Configuration comes from the environment (see the README): `EIDER_LISTEN`,
//! `EIDER_DATA_DIR`, `EIDER_ACCESS_TOKEN`, `EIDER_DOMAIN`, ...

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use eider_shared::config::{Config, LocalConfig};
use eider_shared::domain::janitor::{self, Budget};
use eider_shared::domain::updates::LocalNotifier;
use eider_shared::http::{AppState, finish};
use eider_shared::store::blob_fs::FsBlobStore;
use eider_shared::store::embedded::EmbeddedTable;
use eider_shared::store::{BlobStore, Table};

// Many small allocations per request (JSON trees of items and answers) across threads:
// mimalloc serves them faster than glibc's malloc (profiled on a listing under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The local server's default request body limit (`EIDER_BODY_LIMIT` overrides it).
const LOCAL_BODY_LIMIT: usize = 96 * 1024 * 1024;

/// How often expired items (TTL) are removed from the embedded store.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Table items one local janitor run deletes at most (its time limit usually ends it first).
const JANITOR_MAX_ITEMS: usize = 100_000;

/// Start-up errors are printed as one readable line (with their causes), not a debug dump.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    eider_shared::http::init_tracing(false);
    let mut config = Config::from_env()?;
    // No 6 MB Lambda payload limit here: a 64 MiB message as base64 JSON must fit.
    if std::env::var_os("EIDER_BODY_LIMIT").is_none() {
        config.body_limit = LOCAL_BODY_LIMIT;
    }
    // Webhooks may point at this machine and its network (development, tests); link-local
    // and metadata addresses stay refused.
    config.webhooks.allow_loopback = true;
    config.webhooks.allow_private = true;
    let local = LocalConfig::from_env()?;
    std::fs::create_dir_all(&local.data_dir)
        .with_context(|| format!("cannot create data folder {}", local.data_dir.display()))?;
    let store = Store::open(&local.data_dir).await?;
    // Journal writes wake the update streams directly: no polling of the store.
    let notifier = Arc::new(LocalNotifier::new());
    let mut state =
        AppState::new(store.table(), store.blobs.clone(), config).with_notifier(notifier.clone());
    // Search's full-text index: on the embedded store one index in the data folder, checked
    // against the store in the background at start-up (a crash may have left it behind, and
    // removing the folder rebuilds it); on the AWS store each user's index in the bucket, as
    // the Lambda functions keep it, written here after each change (its files cached in
    // `<data>/search-cache`). `EIDER_SEARCH_INDEX=terms` searches the table's term items
    // instead (for comparing the designs on the bench).
    if std::env::var("EIDER_SEARCH_INDEX").as_deref() != Ok("terms") {
        if store.embedded.is_some() {
            let folder = local.data_dir.join("search-v1");
            let index = eider_shared::store::tantivy_index::TantivyIndex::open(&folder)?;
            state = state.with_text_index(Arc::new(index));
            tokio::spawn(reconcile_search_index(state.clone()));
        } else {
            let index = eider_shared::store::blob_text_index::BlobTextIndex::new(
                store.table(),
                eider_shared::domain::keys::search_index,
                store.blobs.clone(),
                &local.data_dir.join("search-cache"),
            );
            state = state.with_text_index(Arc::new(index));
        }
    }
    // Incoming mail: LMTP into the shared delivery pipeline. Outgoing mail (autoreplies,
    // forwards) goes to EIDER_SMTP_RELAY, or without one into <data>/outbox/.
    let delivery_config = eider_shared::config::DeliveryConfig::from_env()?;
    let outbound = eider_shared::mail::outbound::Outbound::local(
        delivery_config.smtp_relay.as_deref(),
        &local.data_dir,
    )?;
    tracing::info!(outbound = %outbound.describe(), "outgoing mail");
    let delivery =
        eider_shared::domain::delivery::Delivery::new(state.clone(), outbound, delivery_config);
    // Submitted mail goes out through the same pipeline (local users directly).
    let state = state.with_dispatcher(Arc::new(delivery.clone()));
    let lmtp = tokio::net::TcpListener::bind(local.lmtp_listen)
        .await
        .with_context(|| format!("cannot listen on {} (EIDER_LMTP_LISTEN)", local.lmtp_listen))?;
    tracing::info!(lmtp = %local.lmtp_listen, "LMTP ready");
    tokio::spawn(eider_local::lmtp::serve(
        lmtp,
        delivery,
        eider_local::lmtp::LmtpLimits::default(),
        std::future::pending(),
    ));
    let app = finish(eider_local::router(), state.clone());

    // DynamoDB removes expired items itself (TTL); the embedded store is purged here.
    if let Some(purger) = store.embedded.clone() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_INTERVAL);
            loop {
                tick.tick().await;
                let store = purger.clone();
                match tokio::task::spawn_blocking(move || store.purge_expired()).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "expired items purged"),
                    Ok(Err(e)) => tracing::warn!(error = format!("{e:#}"), "purge failed"),
                    _ => {}
                }
            }
        });
    }

    // Webhook deliveries: queued by every change, sent from here (never in a request).
    tokio::spawn(eider_shared::domain::webhook_send::run_local(
        state.clone(),
        std::future::pending(),
    ));

    if !local.janitor_interval.is_zero() {
        tokio::spawn(janitor_loop(state, local.janitor_interval));
    }

    let listener = tokio::net::TcpListener::bind(local.listen)
        .await
        .with_context(|| format!("cannot listen on {} (EIDER_LISTEN)", local.listen))?;
    tracing::info!(
        listen = %local.listen,
        data = %local.data_dir.display(),
        store = %store.describe,
        "eider-local ready"
    );
    println!("eider-local listening on http://{}", listener.local_addr()?);
    eider_local::serve::serve(
        listener,
        app,
        eider_local::serve::HttpLimits {
            max_connections: local.http_max_connections,
            header_timeout: local.http_header_timeout,
            ..Default::default()
        },
        async move {
            shutdown().await;
            // Open update streams end now instead of holding the shutdown up.
            notifier.close();
        },
        Duration::from_secs(10),
    )
    .await;
    Ok(())
}

/// Where the server keeps its data: the embedded store in the data folder (the default), or
/// DynamoDB + S3 with `EIDER_STORE=aws` (`EIDER_TABLE`, `EIDER_BUCKET` and the standard AWS
/// configuration: `AWS_ENDPOINT_URL`, region, credentials), for moto, DynamoDB Local or an
/// account; `EIDER_CREATE_RESOURCES=1` creates the table (as template.yaml declares it) and
/// the bucket first.
struct Store {
    table: Arc<dyn Table>,
    blobs: Arc<dyn BlobStore>,
    embedded: Option<Arc<EmbeddedTable>>,
    describe: String,
}

impl Store {
    async fn open(data_dir: &std::path::Path) -> anyhow::Result<Store> {
        let kind = std::env::var("EIDER_STORE").unwrap_or_else(|_| "embedded".into());
        match kind.as_str() {
            "" | "embedded" => {
                let table = Arc::new(EmbeddedTable::open(&data_dir.join("eider.redb"))?);
                let blobs = Arc::new(FsBlobStore::new(data_dir.join("blobs"))?);
                Ok(Store {
                    table: table.clone(),
                    blobs,
                    embedded: Some(table),
                    describe: format!("embedded in {}", data_dir.display()),
                })
            }
            "aws" => {
                let cloud = eider_shared::config::CloudConfig::from_env()?;
                let (dynamo, s3) = eider_shared::store::s3::aws_clients_from_env().await;
                if std::env::var("EIDER_CREATE_RESOURCES").as_deref() == Ok("1") {
                    create_resources(&dynamo, &s3, &cloud.table, &cloud.bucket).await?;
                }
                let describe =
                    format!("DynamoDB table {}, S3 bucket {}", cloud.table, cloud.bucket);
                Ok(Store {
                    table: Arc::new(eider_shared::store::dynamo::DynamoTable::new(
                        dynamo,
                        cloud.table,
                    )),
                    blobs: Arc::new(eider_shared::store::s3::S3BlobStore::new(s3, cloud.bucket)),
                    embedded: None,
                    describe,
                })
            }
            other => anyhow::bail!("EIDER_STORE must be embedded or aws, not {other:?}"),
        }
    }

    fn table(&self) -> Arc<dyn Table> {
        self.table.clone()
    }
}

/// Creates the table and the bucket unless they exist (for moto and test accounts).
async fn create_resources(
    dynamo: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    table: &str,
    bucket: &str,
) -> anyhow::Result<()> {
    let exists = dynamo
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok();
    if !exists {
        eider_shared::store::dynamo::create_table(dynamo, table)
            .await
            .with_context(|| format!("cannot create the table {table}"))?;
        tracing::info!(table, "table created");
    }
    eider_shared::store::s3::create_bucket(s3, bucket)
        .await
        .with_context(|| format!("cannot create the bucket {bucket}"))?;
    Ok(())
}

/// Checks the full-text index against the table once, in the background after start (a crash
/// between a message's commit and its indexing, an index folder removed to be rebuilt), and
/// logs what it repaired.
async fn reconcile_search_index(state: AppState) {
    let started = Instant::now();
    match eider_shared::domain::messages::reconcile(&state).await {
        Ok(report) => tracing::info!(
            messages = report.messages,
            added = report.added,
            removed = report.removed,
            moved = report.moved,
            ms = started.elapsed().as_millis() as u64,
            "search index checked"
        ),
        Err(e) => tracing::warn!(error = %e, "search index not checked"),
    }
}

/// Runs the janitor (the same purge as the cloud's scheduled function) every `every`. Each
/// run may work for most of the interval, so a backlog (a large deleted user) is worked off
/// over several runs without one run holding on for long; `janitor::run` logs what it removed.
async fn janitor_loop(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let budget = Budget::items(JANITOR_MAX_ITEMS).until(Instant::now() + every.mul_f64(0.8));
        if let Err(e) = janitor::run(&state, chrono::Utc::now(), budget).await {
            tracing::warn!(error = ?e, "janitor run failed");
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
