//! The updates stream on the wire: its Server-Sent Events frames.

use serde_json::{Value, json};

use crate::domain::updates::Resync;

/// The reconnection delay suggested to clients (`retry:`), in milliseconds.
pub const RETRY_MS: u64 = 3000;

/// One event: its JSON on one `data:` line (EventSource clients join multi-line data anyway,
/// and compact JSON never contains a raw line break), its number on the `id:` line.
pub fn event_frame(seq: i64, payload: &Value) -> String {
    format!("data: {payload}\nid: {seq}\n\n")
}

/// A comment line (keepalive); EventSource clients ignore it.
pub fn comment_frame(text: &str) -> String {
    format!(": {}\n\n", text.replace(['\r', '\n'], " "))
}

/// The first block of every stream: WildDuck's `: idling 1`, the reconnection delay, and the
/// position. An `id:` without `data:` dispatches no event but sets the client's last event id,
/// so even a client that receives no event resumes from here.
pub fn open_frame(position: i64) -> String {
    format!(": idling 1\nretry: {RETRY_MS}\nid: {position}\n\n")
}

/// The resync event: a named event (`event: resync`), so clients listen for it explicitly,
/// carrying the stream's new position.
pub fn resync_frame(resync: &Resync, position: i64) -> String {
    let data = json!({ "command": "RESYNC", "code": resync.code, "reason": resync.reason });
    format!("event: resync\ndata: {data}\nid: {position}\n\n")
}

/// A failure after the stream started (WildDuck's `event: error`); the stream then ends and
/// the client reconnects with its last event id.
pub fn error_frame(code: &str, message: &str) -> String {
    let data = json!({ "error": message, "code": code });
    format!("event: error\ndata: {data}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_event_stream_format() {
        let payload = json!({"command": "CREATE", "path": "a\nb"});
        assert_eq!(
            event_frame(9, &payload),
            "data: {\"command\":\"CREATE\",\"path\":\"a\\nb\"}\nid: 9\n\n"
        );
        assert_eq!(comment_frame("idling 2"), ": idling 2\n\n");
        assert_eq!(open_frame(4), ": idling 1\nretry: 3000\nid: 4\n\n");
        let resync = Resync {
            code: "JournalExpired",
            reason: "gone".into(),
        };
        assert!(resync_frame(&resync, 5).starts_with("event: resync\ndata: {"));
        assert!(resync_frame(&resync, 5).ends_with("\nid: 5\n\n"));
        assert!(error_frame("InternalDatabaseError", "x").starts_with("event: error\ndata: "));
    }
}
