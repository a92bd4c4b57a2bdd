//! `eider-local`: every endpoint group in one process, on the embedded store.
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
    let local = LocalConfig::from_env()?;
    std::fs::create_dir_all(&local.data_dir)
        .with_context(|| format!("cannot create data folder {}", local.data_dir.display()))?;
    let table = Arc::new(EmbeddedTable::open(&local.data_dir.join("eider.redb"))?);
    let blobs = Arc::new(FsBlobStore::new(local.data_dir.join("blobs"))?);
    // Journal writes wake the update streams directly: no polling of the store.
    let notifier = Arc::new(LocalNotifier::new());
    // Search's full-text index; checked against the store in the background at start-up
    // (a crash may have left it behind, and removing the folder rebuilds it).
    // `EIDER_SEARCH_INDEX=terms` searches the table's term items instead, as the Lambda
    // functions do (for comparing the two on the bench).
    let mut state = AppState::new(table.clone(), blobs, config).with_notifier(notifier.clone());
    if std::env::var("EIDER_SEARCH_INDEX").as_deref() != Ok("terms") {
        let folder = local.data_dir.join("search-v1");
        let index = eider_shared::store::tantivy_index::TantivyIndex::open(&folder)?;
        state = state.with_text_index(Arc::new(index));
        tokio::spawn(reconcile_search_index(state.clone()));
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

    let purger = table.clone();
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

    if !local.janitor_interval.is_zero() {
        tokio::spawn(janitor_loop(state, local.janitor_interval));
    }

    let listener = tokio::net::TcpListener::bind(local.listen)
        .await
        .with_context(|| format!("cannot listen on {} (EIDER_LISTEN)", local.listen))?;
    tracing::info!(
        listen = %local.listen,
        data = %local.data_dir.display(),
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

/// Runs the janitor (the same purge as the cloud's scheduled function) every `every`. Each
/// run may work for most of the interval, so a backlog (a large deleted user) is worked off
/// over several runs without one run holding on for long; `janitor::run` logs what it removed.
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
