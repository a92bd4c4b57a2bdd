//! The janitor function: invoked by an EventBridge schedule (`Schedule` event in template.yaml),
//! it runs [`janitor::run`] with a budget that ends well before the invocation's deadline and
//! answers the [`Report`] as JSON. The work itself lives in `eider_shared::domain::janitor`, so
//! the local server runs the very same purge.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eider_shared::domain::janitor::{self, Budget, Report};
use eider_shared::http::AppState;
use lambda_runtime::LambdaEvent;
use serde_json::Value;

/// Table items one invocation deletes at most. The deadline is what normally ends a run; this
/// caps the write bill of one run if the table is much faster than expected.
pub const MAX_ITEMS_PER_RUN: usize = 500_000;

/// Time kept back before the invocation's deadline: the batch in flight when the budget ends
/// (blob reads and deletes, a few transactions) must finish, and the report must be sent.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(30);

/// How long a run may work when `remaining` is left before the deadline: all but the margin,
/// or half of it when the margin would take it all (a short test timeout).
pub fn work_time(remaining: Duration) -> Duration {
    if remaining > SAFETY_MARGIN * 2 {
        remaining - SAFETY_MARGIN
    } else {
        remaining / 2
    }
}

/// The budget of an invocation whose deadline is `deadline_ms` (unix milliseconds, as in the
/// Lambda context).
pub fn budget_for(deadline_ms: u64, started: Instant) -> Budget {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Budget::items(MAX_ITEMS_PER_RUN).until(started + work_time(remaining))
}

/// Handles one scheduled event (an EventBridge "Scheduled Event"; any JSON works, so a
/// manual `cargo lambda invoke` with `{}` runs it too).
pub async fn handle(
    state: &AppState,
    event: LambdaEvent<Value>,
) -> Result<Report, lambda_runtime::Error> {
    let started = Instant::now();
    let (payload, context) = event.into_parts();
    tracing::info!(
        event = payload["id"].as_str().unwrap_or(""),
        time = payload["time"].as_str().unwrap_or(""),
        "janitor invoked"
    );
    let budget = budget_for(context.deadline, started);
    janitor::run(state, chrono::Utc::now(), budget)
        .await
        .map_err(|e| {
            // The next tick starts over where this run stopped.
            tracing::error!(error = format!("{e:#}"), "janitor run failed");
            lambda_runtime::Error::from(e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_time_keeps_a_margin_before_the_deadline() {
        assert_eq!(
            work_time(Duration::from_secs(300)),
            Duration::from_secs(270)
        );
        assert_eq!(work_time(Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(work_time(Duration::ZERO), Duration::ZERO);
    }
}
