//! The updates stream from a client's side: a router served on a real loopback socket, and a
//! small Server-Sent Events reader that splits a streaming HTTP body into frames.

use std::time::Duration;

use axum::Router;
use serde_json::Value;

/// Serves `app` on a free loopback port until the test process ends; returns its base URL.
pub async fn serve(app: Router) -> String {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // As eider-local: small event frames go out at once, not after a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{address}")
}

/// One block of an event stream (the lines up to a blank line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`, as EventSource joins them.
    pub data: Option<String>,
    pub id: Option<String>,
    pub retry: Option<u64>,
    pub comments: Vec<String>,
}

impl Frame {
    /// Parses one block (without its terminating blank line).
    pub fn parse(block: &str) -> Frame {
        let mut frame = Frame::default();
        for line in block.split('\n') {
            if let Some(comment) = line.strip_prefix(':') {
                frame.comments.push(comment.trim_start().to_string());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => frame.event = Some(value.to_string()),
                "data" => {
                    let data = frame.data.get_or_insert_with(String::new);
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                "id" => frame.id = Some(value.to_string()),
                "retry" => frame.retry = value.parse().ok(),
                _ => panic!("unexpected line in the event stream: {line:?}"),
            }
        }
        frame
    }

    /// The data as JSON.
    pub fn json(&self) -> Value {
        let data = self
            .data
            .as_deref()
            .unwrap_or_else(|| panic!("no data: {self:?}"));
        serde_json::from_str(data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"))
    }

    /// A plain message event (what EventSource's `onmessage` gets).
    pub fn is_message(&self) -> bool {
        self.data.is_some() && self.event.is_none()
    }

    /// The `id:` as a number.
    pub fn seq(&self) -> i64 {
        let id = self
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("no id: {self:?}"));
        id.parse().unwrap()
    }

    /// The `command` of a message event.
    pub fn command(&self) -> String {
        self.json()["command"].as_str().unwrap_or("").to_string()
    }
}

/// Reads frames from a streaming response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            response,
            buffer: String::new(),
            ended: false,
        }
    }

    /// The next frame, or `None` when the server ended the stream. Panics when nothing comes
    /// within `timeout`.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        match tokio::time::timeout(timeout, self.read_frame()).await {
            Ok(frame) => frame,
            Err(_) => panic!("no frame within {timeout:?}; buffered: {:?}", self.buffer),
        }
    }

    /// The next frame if one comes within `wait`; `Err(())` when none came (the stream is
    /// still open).
    pub async fn try_next_frame(&mut self, wait: Duration) -> Result<Option<Frame>, ()> {
        tokio::time::timeout(wait, self.read_frame())
            .await
            .map_err(|_| ())
    }

    /// The next frame that carries data (skips comments and id-only blocks).
    pub async fn next_data(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame.data.is_some() {
                return Some(frame);
            }
        }
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_string();
                self.buffer.drain(..end + 2);
                return Some(Frame::parse(&block));
            }
            if self.ended {
                assert!(
                    self.buffer.is_empty(),
                    "stream ended mid-frame: {:?}",
                    self.buffer
                );
                return None;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => self.ended = true,
            }
        }
    }
}
