//! HTTP plumbing shared by every router: application state, the parameter extractor,
//! validation with WildDuck's messages, paging, and the finishing layer.

pub mod access;
pub mod describe;
pub mod download;
pub mod error;
pub mod extract;
pub mod finish;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod paging;
pub mod params;
pub mod routes;
pub mod spool;
pub mod validate;
pub mod wire;

use std::sync::Arc;

use crate::config::Config;
pub use crate::domain::AppState;

pub use error::{ApiError, ApiResult};
pub use extract::Ids;
pub use finish::finish;
pub use params::{Params, PathParam};
pub use routes::Routes;
pub use validate::{Str, Validator};

/// Logs through `tracing`: JSON lines in Lambda (CloudWatch), readable text locally.
/// `RUST_LOG` sets the filter (default `info`): a level, targets with levels or both
/// (`warn,eider_shared::http=info`); one that cannot be read counts as `info`.
pub fn init_tracing(json: bool) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    // Colour only for a terminal: a log file or a pipe gets plain text (and NO_COLOR is honoured).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    use tracing_subscriber::prelude::*;
    let lines = tracing_subscriber::fmt::layer().with_ansi(ansi);
    let lines = if json {
        lines.json().without_time().with_current_span(false).boxed()
    } else {
        lines.boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .try_init();
}

/// The filter `RUST_LOG`'s value asks for.
fn log_filter(setting: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let info = || Targets::new().with_default(LevelFilter::INFO);
    match setting.map(str::trim) {
        None | Some("") => info(),
        Some(setting) => setting.parse().unwrap_or_else(|_| info()),
    }
}

/// The state of a Lambda function: DynamoDB and S3 clients built once per instance, their
/// connections opened.
pub async fn cloud_state() -> anyhow::Result<AppState> {
    Ok(cloud_state_and_config().await?.0)
}

/// [`cloud_state`] and the AWS configuration its clients were built from, for a function's
/// other AWS clients (SES, SQS, API Gateway): one configuration and one HTTP client per instance.
pub async fn cloud_state_and_config() -> anyhow::Result<(AppState, aws_types::SdkConfig)> {
    let started = std::time::Instant::now();
    let config = Config::from_env()?;
    let cloud = crate::config::CloudConfig::from_env()?;
    let aws = crate::store::aws_env::sdk_config();
    let (dynamo, s3) = crate::store::aws_env::clients(&aws);
    let table = Arc::new(crate::store::dynamo::DynamoTable::new(dynamo, cloud.table));
    let blobs = Arc::new(crate::store::s3::S3BlobStore::new(s3, cloud.bucket));
    let clients_ready = started.elapsed();
    // During init, so the first request does not pay the connections' set-up (TLS).
    tokio::join!(table.connect(), blobs.connect());
    // Where a cold start's time goes (the bench reads this line too).
    tracing::info!(
        configuration_and_clients_ms = clients_ready.as_secs_f64() * 1e3,
        connections_ms = (started.elapsed() - clients_ready).as_secs_f64() * 1e3,
        "function state ready"
    );
    let state = AppState::new(table.clone(), blobs.clone(), config);
    Ok((cloud_search(state, table, blobs), aws))
}

/// How a Lambda function's search is kept (`EIDER_SEARCH_INDEX`): by default per-user text
/// indexes in the bucket, written by the stream indexer and read by the functions built with
/// the index (`text-index`: messages, janitor, indexer); `terms` writes and searches term items
/// in the table instead (the design before the index, kept for comparison).
fn cloud_search(
    state: AppState,
    table: Arc<crate::store::dynamo::DynamoTable>,
    blobs: Arc<crate::store::s3::S3BlobStore>,
) -> AppState {
    if std::env::var("EIDER_SEARCH_INDEX").as_deref() == Ok("terms") {
        return state;
    }
    #[cfg(feature = "text-index")]
    let reader: Option<Arc<dyn crate::store::text_index::TextIndex>> =
        Some(Arc::new(crate::store::blob_text_index::BlobTextIndex::new(
            table,
            crate::domain::keys::search_index,
            blobs,
            &crate::store::blob_text_index::BlobTextIndex::cache_from_env(),
        )));
    #[cfg(not(feature = "text-index"))]
    let reader = {
        let _ = (table, blobs);
        None
    };
    state.with_stream_indexing(reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_log_filter_reads_levels_and_targets_and_falls_back_to_info() {
        let enabled = |setting: Option<&str>, target: &str, level: Level| {
            log_filter(setting).would_enable(target, &level)
        };
        for setting in [None, Some(""), Some("  "), Some("not a=filter=at all")] {
            assert!(enabled(setting, "eider_shared", Level::INFO), "{setting:?}");
            assert!(
                !enabled(setting, "eider_shared", Level::DEBUG),
                "{setting:?}"
            );
        }
        let mixed = Some("warn,eider_shared::http=info");
        assert!(enabled(mixed, "eider_shared::http", Level::INFO));
        assert!(enabled(mixed, "eider_shared::http::finish", Level::INFO));
        assert!(!enabled(mixed, "eider_shared::store", Level::INFO));
        assert!(enabled(mixed, "hyper", Level::WARN));
        assert!(enabled(Some("DEBUG"), "anything", Level::DEBUG));
    }
}
