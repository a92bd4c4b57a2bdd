//! The updates stream: `GET /users/{user}/updates` (spec "Updates"; WildDuck's EventSource
//! stream) as Server-Sent Events. The journal reading, frames and payloads live in
//! `eider_shared::domain::updates`; this crate owns the stream's life: when it reads, waits,
//! keeps alive and ends.
//!
//! One handler serves both worlds:
//!
//! * **Local server**: the state has an in-process notifier, so the stream sleeps until a
//!   journal write of its user commits, then reads. No polling on the hot path.
//! * **Lambda** (`main.rs`): `lambda_http::run_with_streaming_response` behind a function URL
//!   in `RESPONSE_STREAM` mode (API Gateway HTTP APIs can't stream). There is no notifier, so
//!   the stream reads the journal every `EIDER_UPDATES_POLL_MS`, and it ends shortly before the
//!   invocation's deadline ([`StreamDeadline`]); the client reconnects with `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use eider_shared::domain::updates::{self, JournalReader};
use eider_shared::domain::users;
use eider_shared::http::error::{ApiError, ApiResult};
use eider_shared::http::extract::UserId;
use eider_shared::http::wire::updates as frames;
use eider_shared::http::{AppState, Ids, Params, Routes, Validator, finish};
use eider_shared::id::ObjectId;
use eider_shared::store::StoreError;
use tokio::sync::watch;
use tokio::time::Instant;

/// Every route of this group: the router is built from it. In the cloud they are served by
/// the function's URL, not by the HTTP API.
pub fn routes() -> Routes {
    Routes::new().get("/users/{user}/updates", stream_updates)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// The latest time a stream may run to: the Lambda entry point sets it from the invocation's
/// deadline ([`lambda_service`]). Without it a stream runs `EIDER_UPDATES_MAX_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDeadline(pub SystemTime);

/// A stream ends this long before its Lambda deadline at most (a quarter of the time left when
/// that is less), so the response ends cleanly instead of by timeout.
const LAMBDA_MARGIN: Duration = Duration::from_secs(5);

/// The parameter (and header) that names the last event the client saw.
const LAST_EVENT_ID: &str = "Last-Event-ID";

/// The function's service in Lambda: the finished router, with the invocation's deadline
/// handed to the handler as a [`StreamDeadline`].
pub fn lambda_service(
    state: AppState,
) -> tower::util::MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request> {
    tower::ServiceExt::map_request(finish(router(), state), with_deadline as fn(_) -> _)
}

fn with_deadline(mut request: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::RequestExt;
    // A deadline already past is no real one: cargo-lambda's emulator sends 600000 (ten
    // minutes, as if relative) where Lambda sends milliseconds since 1970. The stream then
    // runs its configured lifetime.
    let deadline = request
        .lambda_context_ref()
        .filter(|context| context.deadline > 0)
        .map(|context| context.deadline())
        .filter(|deadline| *deadline > SystemTime::now());
    if let Some(deadline) = deadline {
        request.extensions_mut().insert(StreamDeadline(deadline));
    }
    request
}

/// `GET /users/{user}/updates` (spec "Stream update events", behaviour §2.50). Validation and
/// the user check answer JSON errors before the stream starts; then `200 text/event-stream`.
async fn stream_updates(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    request: Request,
) -> ApiResult<Response> {
    let mut v = Validator::new(Params::from_query(request.uri()).0);
    v.session();
    // The header wins: a browser's EventSource keeps its URL (and a stale query parameter)
    // when it reconnects, and sends the newest id in the header.
    let header = request
        .headers()
        .get(LAST_EVENT_ID)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).trim().to_string())
        .filter(|h| !h.is_empty());
    let query = v.raw(LAST_EVENT_ID);
    let last_event_id = match header.map(serde_json::Value::String).or(query) {
        None => None,
        Some(raw) => {
            let parsed = raw.as_str().and_then(parse_event_id);
            if parsed.is_none() {
                v.error(
                    LAST_EVENT_ID,
                    format!("\"{LAST_EVENT_ID}\" must be an event id (a whole number)"),
                );
            }
            parsed
        }
    };
    v.deny_unknown();
    v.finish()?;
    let user = user.0;
    users::load(&state, &user).await?;

    // Subscribe before reading, so a write that commits in between still wakes the stream.
    let wake = state.notifier.as_ref().map(|n| n.subscribe(&user));
    let grace = state.config.updates.gap_grace;
    let (reader, resync) = JournalReader::open(state.table.as_ref(), &user, last_event_id, grace)
        .await
        .map_err(ApiError::from)?;
    let deadline = request.extensions().get::<StreamDeadline>().copied();
    let stream = UpdateStream::new(state, reader, resync, wake, deadline);
    tracing::debug!(%user, position = stream.reader.position(), "updates stream opened");

    let body = Body::from_stream(futures::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), stream))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-like proxies not to buffer the stream (WildDuck sends it too).
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// An event id as this API sends them: the journal number, a whole number.
fn parse_event_id(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// One open stream: what is left to send, and what it waits for.
struct UpdateStream {
    state: AppState,
    reader: JournalReader,
    /// Present locally: changes when the user's journal gets a write.
    wake: Option<watch::Receiver<u64>>,
    /// Frames ready to go out.
    out: VecDeque<Bytes>,
    ends_at: Instant,
    last_output: Instant,
    /// The number of the last `: idling N` comment.
    idle: u64,
    read_now: bool,
    /// Without a notifier: when to read next.
    next_poll: Option<Instant>,
    /// A missing journal number holds back later events until then.
    hold_until: Option<Instant>,
    /// The mailboxes whose counters the events of the current read changed, for WildDuck's
    /// COUNTERS events at the end of the read (after a replay, and while live).
    touched: Vec<ObjectId>,
    done: bool,
}

impl UpdateStream {
    fn new(
        state: AppState,
        reader: JournalReader,
        resync: Option<updates::Resync>,
        wake: Option<watch::Receiver<u64>>,
        deadline: Option<StreamDeadline>,
    ) -> UpdateStream {
        let now = Instant::now();
        let mut ends_at = now + state.config.updates.max_duration;
        if let Some(StreamDeadline(deadline)) = deadline {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let margin = LAMBDA_MARGIN.min(left / 4);
            ends_at = ends_at.min(now + left.saturating_sub(margin));
        }
        let mut out = VecDeque::new();
        out.push_back(Bytes::from(frames::open_frame(reader.position())));
        if let Some(resync) = &resync {
            tracing::info!(user = %reader.user(), code = resync.code, "updates stream asks for a resync");
            out.push_back(Bytes::from(frames::resync_frame(resync, reader.position())));
        }
        UpdateStream {
            state,
            reader,
            wake,
            out,
            ends_at,
            last_output: now,
            idle: 1,
            read_now: true,
            next_poll: None,
            hold_until: None,
            touched: Vec::new(),
            done: false,
        }
    }

    /// The next chunk of the body; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                self.last_output = Instant::now();
                return Some(chunk);
            }
            if self.done || Instant::now() >= self.ends_at {
                tracing::debug!(user = %self.reader.user(), "updates stream ends");
                return None;
            }
            if self.read_now {
                self.read_now = false;
                self.read().await;
            } else {
                self.wait().await;
            }
        }
    }

    fn push(&mut self, frame: String) {
        self.out.push_back(Bytes::from(frame));
    }

    async fn read(&mut self) {
        if let Some(wake) = &mut self.wake {
            // Whatever was signalled so far is covered by this read.
            wake.borrow_and_update();
        }
        let table = self.state.table.clone();
        let batch = match self.reader.read(table.as_ref()).await {
            Ok(batch) => batch,
            Err(e) => return self.fail(e),
        };
        for event in &batch.events {
            if let Some(mailbox) = event.counted_mailbox()
                && !self.touched.contains(&mailbox)
            {
                self.touched.push(mailbox);
            }
            self.push(frames::event_frame(event.seq, &event.payload()));
            // As WildDuck: the sessions of this user are over, and so is the stream.
            if event.command() == "LOGOUT" {
                self.done = true;
                return;
            }
        }
        if batch.more {
            self.read_now = true;
            return;
        }
        self.hold_until = batch.hold_until.map(instant_of);
        if !self.touched.is_empty() {
            let touched = std::mem::take(&mut self.touched);
            self.send_counters(&touched).await;
        }
        if self.wake.is_none() {
            self.next_poll = Some(Instant::now() + self.state.config.updates.poll);
        }
    }

    /// WildDuck's COUNTERS events at the end of a read, with the id of its last event.
    async fn send_counters(&mut self, touched: &[ObjectId]) {
        let table = self.state.table.clone();
        match updates::counters(table.as_ref(), self.reader.user(), touched).await {
            Ok(payloads) => {
                let position = self.reader.position();
                for payload in payloads {
                    self.push(frames::event_frame(position, &payload));
                }
            }
            // The counters are a convenience; the stream goes on without them.
            Err(e) => tracing::warn!(error = format!("{e:#}"), "COUNTERS not sent"),
        }
    }

    fn fail(&mut self, error: StoreError) {
        tracing::error!(
            user = %self.reader.user(),
            error = %eider_shared::with_causes(&error),
            "updates stream could not read the journal"
        );
        self.push(frames::error_frame(
            "InternalDatabaseError",
            "Failed to read the change journal",
        ));
        self.done = true;
    }

    /// Sleeps until something is due: a wake-up, the next poll, the end of a gap hold, a
    /// keepalive, or the end of the stream.
    async fn wait(&mut self) {
        let keepalive_at = self.last_output + self.state.config.updates.keepalive;
        let mut until = self.ends_at.min(keepalive_at);
        if let Some(t) = self.hold_until {
            until = until.min(t);
        }
        if let Some(t) = self.next_poll {
            until = until.min(t);
        }
        let woken = match &mut self.wake {
            Some(wake) => tokio::select! {
                changed = wake.changed() => Some(changed.is_ok()),
                _ = tokio::time::sleep_until(until) => None,
            },
            None => {
                tokio::time::sleep_until(until).await;
                None
            }
        };
        match woken {
            Some(true) => self.read_now = true,
            // The notifier closed: the server is shutting down.
            Some(false) => self.done = true,
            None => {
                let now = Instant::now();
                if self.hold_until.is_some_and(|t| t <= now) {
                    self.hold_until = None;
                    self.read_now = true;
                }
                if self.next_poll.is_some_and(|t| t <= now) {
                    self.next_poll = None;
                    self.read_now = true;
                }
                if now >= keepalive_at && now < self.ends_at {
                    self.idle += 1;
                    let comment = frames::comment_frame(&format!("idling {}", self.idle));
                    self.push(comment);
                }
            }
        }
    }
}

/// A wall-clock time as a tokio instant (now when it has passed).
fn instant_of(time: DateTime<Utc>) -> Instant {
    let left = (time - Utc::now()).to_std().unwrap_or_default();
    Instant::now() + left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_whole_numbers() {
        assert_eq!(parse_event_id("0"), Some(0));
        assert_eq!(parse_event_id(" 42 "), Some(42));
        assert_eq!(parse_event_id("-1"), None);
        assert_eq!(parse_event_id("5f0c0ffee0000000000beef0"), None);
        assert_eq!(parse_event_id("99999999999999999999"), None);
        assert_eq!(parse_event_id(""), None);
    }
}
