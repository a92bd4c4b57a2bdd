//! Files a user keeps for drafts (`/users/{user}/storage`, WildDuck's GridFS bucket
//! `storage`): uploaded once, attached to composed messages by id (`files`), deleted only by
//! `DELETE` or by sending a draft with `deleteFiles`. They do not count towards the quota,
//! as in WildDuck.
//!
//! A file is a blob (`storage/<user>/<id>`) and two items: the listing entry under
//! `FILES#<user>` sorted by file name (`<filename>#<id>`), and `FILE#<user>` / `<id>` that
//! finds it by id. Both are written and removed together.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::paging::{PageRequest, PageResult, count_partition, walk_partition};
use super::users::{self, USER_GONE};
use super::{AppState, DomainError, DomainResult};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Key, StoreError, Write};

/// The largest file (WildDuck's 64 MiB).
pub const MAX_FILE_SIZE: usize = 64 * 1024 * 1024;
/// Label of the condition that a file's items are new.
const FILE_TAKEN: &str = "file taken";
/// Label of the condition that a file is still there when it is deleted.
const FILE_GONE: &str = "file gone";

fn listing_pk(user: &ObjectId) -> String {
    format!("FILES#{user}")
}

fn pointer_key(user: &ObjectId, id: &ObjectId) -> Key {
    Key::new(format!("FILE#{user}"), id.to_string())
}

fn blob_key(user: &ObjectId, id: &ObjectId) -> String {
    format!("storage/{user}/{id}")
}

/// One stored file, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFile {
    pub id: ObjectId,
    pub filename: String,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    pub size: u64,
    pub created: DateTime<Utc>,
}

impl StoredFile {
    fn listing_key(&self, user: &ObjectId) -> Key {
        Key::new(listing_pk(user), format!("{}#{}", self.filename, self.id))
    }
}

/// A `POST /users/{user}/storage` request.
#[derive(Debug, Clone, Default)]
pub struct NewFile {
    pub content: Vec<u8>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub cid: Option<String>,
}

/// WildDuck's defaults: a missing type comes from the file name, a missing name from the date
/// and the type's usual extension.
fn name_and_type(filename: Option<String>, content_type: Option<String>) -> (String, String) {
    let today = Utc::now().format("%Y-%m-%d");
    match (filename, content_type) {
        (Some(name), Some(ctype)) => (name, ctype),
        (Some(name), None) => {
            let ctype = mime_guess::from_path(&name)
                .first_raw()
                .unwrap_or("application/octet-stream")
                .to_string();
            (name, ctype)
        }
        (None, Some(ctype)) => {
            let ext = mime_guess::get_mime_extensions_str(&ctype)
                .and_then(|e| e.first())
                .copied()
                .unwrap_or("bin");
            (format!("upload-{today}.{ext}"), ctype)
        }
        (None, None) => (
            format!("upload-{today}.bin"),
            "application/octet-stream".into(),
        ),
    }
}

/// Stores a file; answers its id.
pub async fn upload(state: &AppState, user: &ObjectId, file: NewFile) -> DomainResult<ObjectId> {
    users::load(state, user).await?;
    let (filename, content_type) = name_and_type(file.filename, file.content_type);
    let stored = StoredFile {
        id: ObjectId::new(),
        filename,
        content_type,
        cid: file.cid,
        size: file.content.len() as u64,
        created: Utc::now(),
    };
    // The blob first: a file is visible only once its items exist.
    let blob = blob_key(user, &stored.id);
    state.blobs.put(&blob, Bytes::from(file.content)).await?;
    let listing = stored.listing_key(user);
    let writes = vec![
        Write::put_new(
            Item::new(
                listing.clone(),
                serde_json::to_value(&stored).unwrap_or_default(),
            ),
            FILE_TAKEN,
        ),
        Write::put_new(
            Item::new(pointer_key(user, &stored.id), json!({ "sk": listing.sk })),
            FILE_TAKEN,
        ),
        Write::check(users::profile_key(user), Condition::Exists, USER_GONE),
    ];
    if let Err(e) = state.table.transact(writes).await {
        let _ = state.blobs.delete(&blob).await;
        return Err(match e {
            StoreError::ConditionFailed { label: USER_GONE } => DomainError::user_not_found(),
            e => e.into(),
        });
    }
    Ok(stored.id)
}

/// A page of files, by file name, and how many match in all.
pub struct FileListing {
    pub total: u64,
    pub page: PageResult<StoredFile>,
}

/// `GET /users/{user}/storage`: files by name; `query` is a case-sensitive substring of the
/// name, as in WildDuck.
pub async fn list(
    state: &AppState,
    user: &ObjectId,
    query: Option<&str>,
    page: &PageRequest,
) -> DomainResult<FileListing> {
    users::load(state, user).await?;
    let pk = listing_pk(user);
    let keep = |item: &Item| {
        query.is_none_or(|q| {
            item.body["filename"]
                .as_str()
                .is_some_and(|name| name.contains(q))
        })
    };
    let table = state.table.as_ref();
    let result = walk_partition(table, &pk, "", false, page, Some(&keep)).await?;
    let total = count_partition(table, &pk, "", &keep).await?;
    let page = result.decode(|item| {
        item.body_as()
            .map_err(|e| DomainError::corrupt("storage file", &item.sk, e))
    })?;
    Ok(FileListing { total, page })
}

fn file_not_found() -> DomainError {
    DomainError::FileNotFound
}

/// The file `id` of `user` (also 404 for another user's file).
pub async fn find(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<StoredFile> {
    let pointer = state
        .table
        .get(&pointer_key(user, id))
        .await?
        .ok_or_else(file_not_found)?;
    let sk = pointer.body["sk"].as_str().unwrap_or_default().to_string();
    let item = state
        .table
        .get(&Key::new(listing_pk(user), sk))
        .await?
        .ok_or_else(file_not_found)?;
    item.body_as()
        .map_err(|e| DomainError::corrupt("storage file", id.to_string(), e))
}

/// `GET /users/{user}/storage/{file}`: the file and its bytes.
pub async fn get(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
) -> DomainResult<(StoredFile, Bytes)> {
    let file = find(state, user, id).await?;
    let bytes = state
        .blobs
        .get(&blob_key(user, id))
        .await?
        .ok_or_else(file_not_found)?;
    Ok((file, bytes))
}

/// The files among `ids` that exist, with their bytes; unknown ids are skipped (WildDuck's
/// `files` of a composed message).
pub async fn load_many(
    state: &AppState,
    user: &ObjectId,
    ids: &[ObjectId],
) -> DomainResult<Vec<(StoredFile, Bytes)>> {
    let mut files = Vec::new();
    for id in ids {
        match get(state, user, id).await {
            Ok(found) => files.push(found),
            Err(DomainError::FileNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(files)
}

/// `DELETE /users/{user}/storage/{file}`.
pub async fn delete(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<()> {
    let file = find(state, user, id).await?;
    let writes = vec![
        Write::delete(file.listing_key(user)).when(Condition::Exists, FILE_GONE),
        Write::delete(pointer_key(user, id)),
    ];
    match state.table.transact(writes).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { .. }) => return Err(file_not_found()),
        Err(e) => return Err(e.into()),
    }
    // After the items: a file that is listed always has its bytes.
    state.blobs.delete(&blob_key(user, id)).await?;
    Ok(())
}

/// The partitions and blob prefix of a user's files (for purging a deleted user).
pub fn user_partitions(user: &ObjectId) -> [String; 2] {
    [listing_pk(user), format!("FILE#{user}")]
}

pub fn blob_prefix(user: &ObjectId) -> String {
    format!("storage/{user}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_names_and_types_get_wildducks_defaults() {
        let (name, ctype) = name_and_type(Some("report.pdf".into()), None);
        assert_eq!(
            (name.as_str(), ctype.as_str()),
            ("report.pdf", "application/pdf")
        );
        let (name, ctype) = name_and_type(None, Some("image/png".into()));
        assert!(
            name.starts_with("upload-") && name.ends_with(".png"),
            "{name}"
        );
        assert_eq!(ctype, "image/png");
        let (name, ctype) = name_and_type(None, None);
        assert!(name.ends_with(".bin"));
        assert_eq!(ctype, "application/octet-stream");
        let (_, ctype) = name_and_type(Some("noext".into()), None);
        assert_eq!(ctype, "application/octet-stream");
    }
}
