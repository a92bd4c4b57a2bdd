//! Files the API builds on the fly (an audit's mbox, an account export): streamed where the
//! answer can be a stream (the local server); where the blob store hands out links (S3, in
//! Lambda, whose answers hold at most 6 MB) written there whole and answered with a redirect
//! to a 15-minute link.

use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use futures::{Stream, TryStreamExt};

use super::AppState;
use super::error::ApiResult;
use crate::domain::DomainResult;

/// How long the link of a written file lasts.
const LINK_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Answers `chunks` as the file `filename`; `key` is where it goes in the blob store when it
/// is answered by link: under `exports/`, which the bucket's lifecycle rule empties daily.
pub async fn file<S>(
    state: &AppState,
    key: &str,
    content_type: &'static str,
    filename: &str,
    chunks: S,
) -> ApiResult<Response>
where
    S: Stream<Item = DomainResult<Bytes>> + Send + 'static,
{
    let disposition = format!("attachment; filename={filename}");
    let link = state
        .blobs
        .presign_get(key, LINK_LIFETIME, content_type, Some(&disposition))
        .await?;
    if let Some(url) = link {
        // The function's memory bounds the file here.
        let whole: Vec<Bytes> = chunks.try_collect().await?;
        state.blobs.put(key, whole.concat().into()).await?;
        return Ok(Redirect::to(&url).into_response());
    }
    let body =
        axum::body::Body::from_stream(chunks.map_err(|e| std::io::Error::other(e.to_string())));
    Ok((
        [
            (CONTENT_TYPE, content_type.to_string()),
            (CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
