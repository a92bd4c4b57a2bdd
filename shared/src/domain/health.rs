//! `GET /health`: whether the store answers, for load balancers and monitors. WildDuck pings
//! its database and writes and removes a document; Eider does the same on the table and the
//! blob store, so a health check fails when either cannot be written.

use bytes::Bytes;
use serde_json::json;

use super::AppState;
use crate::id::ObjectId;
use crate::store::{Item, Write};

/// Seconds a health item may outlive a check that died between its write and its delete.
const HEALTH_ITEM_SECONDS: i64 = 600;

/// What failed, in WildDuck's words for its own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    TableDown,
    TableNotWritable,
    BlobsDown,
}

impl Unhealthy {
    pub fn message(&self) -> &'static str {
        match self {
            Unhealthy::TableDown => "DB is down",
            Unhealthy::TableNotWritable => "Could not write to DB",
            Unhealthy::BlobsDown => "Blob store is not writeable/readable",
        }
    }
}

/// Reads, writes and removes a probe item and a probe blob of its own (unique per check, so
/// parallel checks never meet).
pub async fn check(state: &AppState) -> Result<(), Unhealthy> {
    let probe = ObjectId::new();
    let key = super::keys::health_probe(&probe);
    if let Err(e) = state.table.get(&key).await {
        tracing::warn!(error = %e, "health: the table does not answer");
        return Err(Unhealthy::TableDown);
    }
    let item = Item::new(key.clone(), json!({ "checked": true }))
        .with_expiry(super::unix_now() + HEALTH_ITEM_SECONDS);
    let written = async {
        state.table.transact(vec![Write::put(item)]).await?;
        state.table.get(&key).await?.ok_or_else(|| {
            crate::store::StoreError::Backend(anyhow::anyhow!("the probe item was not read back"))
        })?;
        state.table.transact(vec![Write::delete(key.clone())]).await
    };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "health: the table can't be written");
        return Err(Unhealthy::TableNotWritable);
    }
    let blob = format!("health/{probe}");
    let blobs = async {
        state.blobs.put(&blob, Bytes::from_static(b"ok")).await?;
        let back = state.blobs.get(&blob).await?;
        state.blobs.delete(&blob).await?;
        Ok::<_, crate::store::StoreError>(back.as_deref() == Some(&b"ok"[..]))
    };
    match blobs.await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Unhealthy::BlobsDown),
        Err(e) => {
            tracing::warn!(error = %e, "health: the blob store can't be written");
            Err(Unhealthy::BlobsDown)
        }
    }
}
