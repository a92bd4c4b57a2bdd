//! Large request bodies, spooled through the blob store's scratch space
//! ([`BlobStore::spool`](crate::store::BlobStore::spool)) instead of being read into memory.
//!
//! On the local server a 64 MiB message would otherwise sit in memory several times over:
//! the body, its JSON string, the string's base64 decoding. Spooled, the body and the decoding
//! are unnamed files read memory-mapped, and the JSON's `raw` is decoded chunk by chunk from
//! the mapped body. In Lambda (bodies of at most 6 MB, already in memory) the spool is memory.

use std::io;

use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use base64::Engine as _;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{Map, Value};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::params::{self, Params};
use super::wire::messages::starts_with_header;
use crate::domain::messages::MAX_MESSAGE_SIZE;
use crate::store::{BlobStream, StoreError};

/// Bodies declared larger than this, or of unknown length, are spooled; smaller ones are
/// read into memory as before (a file per small request would cost more than it saves).
pub const SPOOL_ABOVE: u64 = 1 << 20;

/// Base64 characters decoded per step (a multiple of 4): 768 KiB of message each.
const DECODE_STEP: usize = 1 << 20;

/// Whether `request`'s body is worth spooling: large or of unknown length, and not a form
/// (forms are parsed whole, as WildDuck's clients send only small ones).
pub fn wanted(request: &Request) -> bool {
    let form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    !form && declared_length(request).is_none_or(|n| n > SPOOL_ABOVE)
}

/// The body's length as its Content-Length header declares it (hyper has checked that the
/// body keeps to it), or the body's own exact size when it has no header; `None` when
/// chunked. The header comes first because the layers in front of a handler (the body
/// timeout) wrap the body without passing its size on: reading only the body's size made
/// every small upload a scratch file.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .or_else(|| request.body().size_hint().exact())
}

/// The whole body, spooled; at most the configured body limit (more: 413, as the limit
/// answers for bodies read into memory).
pub async fn body(state: &AppState, request: Request) -> ApiResult<Bytes> {
    let stream: BlobStream = request
        .into_body()
        .into_data_stream()
        .map_err(|e| io::Error::other(BodyUnreadable(e.to_string())))
        .boxed();
    state
        .blobs
        .spool(stream, state.config.body_limit as u64)
        .await
        .map_err(|e| match e {
            StoreError::TooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                "The request body is too large",
            ),
            e if caused_by::<BodyUnreadable>(&e) => {
                ApiError::bad_request("InvalidContent", "Request body could not be read")
            }
            e => ApiError::internal(e),
        })
}

/// The parameters of a spooled message upload (the query, then the JSON body's fields) and
/// `raw`'s bytes when they could be taken without a copy: a long base64 string decoded
/// through a second spool, or a long text without escapes sliced from the body. Any other
/// `raw` stays in the parameters for the usual validation.
pub async fn upload_params(
    state: &AppState,
    request: Request,
) -> ApiResult<(Map<String, Value>, Option<Bytes>)> {
    let Params(mut params) = Params::from_query(request.uri());
    let body = body(state, request).await?;
    let Some(place) = params::merge_json_except(&mut params, &body, "raw")? else {
        return Ok((params, None));
    };
    let literal = body.slice(place);
    if let Some(raw) = raw_from_literal(state, &literal).await? {
        return Ok((params, Some(raw)));
    }
    let value: Value = serde_json::from_slice(&literal)
        .map_err(|e| ApiError::bad_request("InvalidContent", format!("Invalid JSON body: {e}")))?;
    params.insert("raw".into(), value);
    Ok((params, None))
}

/// `raw`'s bytes from its JSON literal, read as WildDuck's rule reads a string (text when it
/// starts with a header line, else base64 when it decodes, else text); `None` when the
/// literal is short, not a string, or a text with escapes (the usual path decodes those).
async fn raw_from_literal(state: &AppState, literal: &Bytes) -> ApiResult<Option<Bytes>> {
    if (literal.len() as u64) < SPOOL_ABOVE || literal.first() != Some(&b'"') {
        return Ok(None);
    }
    let content = literal.slice(1..literal.len() - 1);
    let as_text = || (!content.contains(&b'\\')).then(|| content.clone());
    if is_text(&content) {
        return Ok(as_text());
    }
    match state
        .blobs
        .spool(decode_base64(content.clone()), MAX_MESSAGE_SIZE as u64)
        .await
    {
        Ok(decoded) => Ok(Some(decoded)),
        Err(StoreError::TooLarge(_)) => Err(ApiError::invalid_field(
            "raw",
            format!("\"raw\" must be at most {MAX_MESSAGE_SIZE} bytes"),
        )),
        Err(e) if caused_by::<NotBase64>(&e) => Ok(as_text()),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// WildDuck's "a message as text" test on the string's first line (a header name is short:
/// the first 1,000 bytes decide).
fn is_text(content: &[u8]) -> bool {
    let head = &content[..content.len().min(1000)];
    starts_with_header(&String::from_utf8_lossy(head))
}

/// The bytes a base64 JSON string stands for, a step at a time. Whitespace and the escapes
/// encoders put in base64 (`\n`, `\r`, `\t`, `\/`) are skipped or unescaped; anything else
/// that is not base64 ends the stream with [`NotBase64`].
fn decode_base64(content: Bytes) -> BlobStream {
    // The state: where the next step starts, and whether a step ended in padding.
    futures::stream::unfold((0usize, false), move |(mut at, padded)| {
        let content = content.clone();
        async move {
            if at >= content.len() {
                return None;
            }
            let mut step = Vec::with_capacity(DECODE_STEP);
            while at < content.len() && step.len() < DECODE_STEP {
                let byte = content[at];
                at += 1;
                match byte {
                    b'\\' => {
                        match content.get(at) {
                            Some(b'n' | b'r' | b't') => {}
                            Some(b'/') => step.push(b'/'),
                            _ => {
                                return Some((
                                    Err(io::Error::other(NotBase64)),
                                    (content.len(), false),
                                ));
                            }
                        }
                        at += 1;
                    }
                    b if b.is_ascii_whitespace() => {}
                    b => step.push(b),
                }
            }
            // Every step but the last holds a multiple of 4 characters; padding is allowed
            // only at the very end, as in one decoding of the whole string.
            let decoded = if padded && !step.is_empty() {
                Err(io::Error::other(NotBase64))
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(&step)
                    .map(Bytes::from)
                    .map_err(|_| io::Error::other(NotBase64))
            };
            let next = match decoded {
                Ok(_) => (at, padded || step.last() == Some(&b'=')),
                Err(_) => (content.len(), false),
            };
            Some((decoded, next))
        }
    })
    .boxed()
}

/// A spooled `raw` that turned out not to be base64.
#[derive(Debug)]
struct NotBase64;

impl std::fmt::Display for NotBase64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not base64")
    }
}
impl std::error::Error for NotBase64 {}

/// The client's body failed to arrive (cut off, too slow).
#[derive(Debug)]
struct BodyUnreadable(String);

impl std::fmt::Display for BodyUnreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body could not be read: {}", self.0)
    }
}
impl std::error::Error for BodyUnreadable {}

/// Whether a spool failed because its stream yielded an `E` (inside an `io::Error`).
fn caused_by<E: std::error::Error + 'static>(e: &StoreError) -> bool {
    let StoreError::Backend(e) = e else {
        return false;
    };
    e.chain().any(|cause| {
        cause.is::<E>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<E>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode_all(text: &str) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut stream = decode_base64(Bytes::copy_from_slice(text.as_bytes()));
        while let Some(step) = stream.next().await {
            out.extend_from_slice(&step?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn decodes_across_steps_as_one_decoding_would() {
        let message: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let plain = base64::engine::general_purpose::STANDARD.encode(&message);
        assert!(plain.len() > 3 * DECODE_STEP);
        assert_eq!(decode_all(&plain).await.unwrap(), message);
        // Line breaks as a JSON encoder escapes them, and escaped slashes.
        let wrapped: String = plain
            .as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).unwrap().replace('/', "\\/") + "\\r\\n")
            .collect();
        assert_eq!(decode_all(&wrapped).await.unwrap(), message);
    }

    /// A body as the layers in front of the handlers hand it on: its size unknown.
    fn request(headers: &[(&str, &str)], body: &'static [u8]) -> Request {
        let chunks = futures::stream::iter([Ok::<_, io::Error>(Bytes::from_static(body))]);
        let mut request = Request::new(axum::body::Body::from_stream(chunks));
        for (name, value) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_str(value).unwrap(),
            );
        }
        request
    }

    #[test]
    fn spools_by_the_declared_length_not_the_wrapped_body() {
        let small = request(&[("content-length", "5")], b"hello");
        assert_eq!(small.body().size_hint().exact(), None);
        assert!(
            !wanted(&small),
            "a small upload with a length stays in memory"
        );
        let large = (SPOOL_ABOVE + 1).to_string();
        assert!(wanted(&request(&[("content-length", &large)], b"")));
        assert!(wanted(&request(&[], b"chunked")), "no length: spooled");
        let form = request(
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", &large),
            ],
            b"",
        );
        assert!(!wanted(&form), "forms are read whole");
        // Without the header, an exact size of the body itself still counts.
        let mut sized = Request::new(axum::body::Body::from("hello"));
        sized.headers_mut().remove(CONTENT_LENGTH);
        assert!(!wanted(&sized));
    }

    #[tokio::test]
    async fn what_is_not_base64_fails() {
        for text in ["abc", "ab=c", "a\\u0041bc", "ab:c", "QUJD\\"] {
            let err = decode_all(text).await.unwrap_err();
            assert!(err.get_ref().unwrap().is::<NotBase64>(), "{text}");
        }
        assert_eq!(decode_all("QUJD").await.unwrap(), b"ABC");
        assert_eq!(decode_all(" Q U\\nJD ").await.unwrap(), b"ABC");
    }
}
