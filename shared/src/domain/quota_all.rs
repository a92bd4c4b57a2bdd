//! `POST /quota/reset` (WildDuck's): every user's `storageUsed` recounted, as a background
//! task that works through the user listing a page at a time (the janitor takes it up, each
//! step remembering where it stopped, so a task of any size is bounded per run and resumes
//! after a crash).

use serde::{Deserialize, Serialize};

use super::paging::bucket_names;
use super::{AppState, DomainError, DomainResult, archive, keys, unix_now};
use crate::id::ObjectId;
use crate::store::{Cursor, Index, Item, Key, Query, Write};

/// Users recounted per step.
pub const STEP: usize = 50;

const TASK_GONE: &str = "quota task gone";

/// The task: which bucket of the user listing it is in, and the last user done there.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct QuotaTask {
    id: ObjectId,
    bucket: usize,
    after: Option<Cursor>,
    recounted: u64,
    changed: u64,
}

impl QuotaTask {
    fn key(&self) -> Key {
        keys::quota_task(&self.id)
    }

    fn item(&self) -> Item {
        Item::new(self.key(), serde_json::to_value(self).unwrap_or_default())
            .with_gsi1(keys::quota_task_entry(unix_now(), &self.id))
    }
}

/// Schedules the recount of every user; answers the task's id at once.
pub async fn start(state: &AppState) -> DomainResult<ObjectId> {
    let task = QuotaTask {
        id: ObjectId::new(),
        bucket: 0,
        after: None,
        recounted: 0,
        changed: 0,
    };
    state
        .table
        .transact(vec![Write::put_new(task.item(), TASK_GONE)])
        .await?;
    tracing::info!(task = %task.id, "quota recount of every user scheduled");
    Ok(task.id)
}

/// One page of users of the task at `key`; whether the task is finished (or gone).
pub async fn step(state: &AppState, key: &Key) -> DomainResult<bool> {
    let Some(item) = state.table.get(key).await? else {
        return Ok(true);
    };
    let mut task: QuotaTask = item
        .body_as()
        .map_err(|e| DomainError::corrupt("quota task", &item.pk, e))?;
    let buckets = bucket_names(keys::USERS_BUCKET_PREFIX);
    while let Some(bucket) = buckets.get(task.bucket) {
        let page = state
            .table
            .query(
                &Query::index(Index::Gsi1, bucket.clone())
                    .limit(STEP)
                    .start_after(task.after.clone()),
            )
            .await?;
        if page.items.is_empty() {
            task.bucket += 1;
            task.after = None;
            continue;
        }
        for user in &page.items {
            let Some(id) = user
                .pk
                .strip_prefix("USER#")
                .and_then(|id| id.parse::<ObjectId>().ok())
            else {
                continue;
            };
            match archive::reset_quota(state, &id).await {
                Ok(recount) => {
                    task.recounted += 1;
                    task.changed += u64::from(recount.previous != recount.storage_used);
                }
                Err(DomainError::UserNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        task.after = page.next.clone();
        if page.next.is_none() {
            task.bucket += 1;
            task.after = None;
        }
        // Progress saved after each page: a crash repeats at most this page.
        state.table.transact(vec![Write::put(task.item())]).await?;
        return Ok(false);
    }
    tracing::info!(task = %task.id, recounted = task.recounted, changed = task.changed, "quota recount of every user done");
    state
        .table
        .transact(vec![Write::delete(task.key())])
        .await?;
    Ok(true)
}
