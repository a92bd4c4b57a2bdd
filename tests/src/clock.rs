//! Time helpers for tests of per-UTC-day counters (daily recipients and forwards): such a
//! test must not straddle midnight UTC, or its second day starts with a fresh count (a run
//! at 23:59:59 once failed that way).

use std::time::Duration;

/// Returns at once, unless midnight UTC is less than `margin` away: then after it.
pub async fn clear_of_utc_midnight(margin: Duration) {
    let now = chrono::Utc::now().timestamp_millis();
    let left_ms = 86_400_000 - now.rem_euclid(86_400_000);
    if (left_ms as u128) < margin.as_millis() {
        tokio::time::sleep(Duration::from_millis(left_ms as u64 + 1_000)).await;
    }
}
