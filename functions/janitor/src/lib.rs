//! The janitor function: invoked by an EventBridge schedule (`Schedule` event in template.yaml),
//! it runs [`janitor::run`] with a budget that ends well before the invocation's deadline and
//! answers the [`Report`] as JSON. The work itself lives in `eider_shared::domain::janitor`, so
//! the local server runs the very same purge.
//!
//! Invoked by an operator with `{"reconcileSearch": {...}}` instead, it repairs the users'
//! search indexes ([`reconcile_search`]), for instance after the stream indexer gave records up
//! (the failed-events alarm).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eider_shared::domain::janitor::{self, Budget, Report};
use eider_shared::domain::messages::indexing;
use eider_shared::http::AppState;
use eider_shared::id::ObjectId;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

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

/// Handles one invocation: a search repair when the payload asks for one
/// ([`reconcile_search`]), else a scheduled run ([`handle`]).
pub async fn dispatch(
    state: &AppState,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    if let Some(request) = event.payload.get("reconcileSearch") {
        let request = request.clone();
        return reconcile_search(state, &request, event.context.deadline).await;
    }
    let report = handle(state, event).await?;
    Ok(serde_json::to_value(report)?)
}

/// `{"reconcileSearch": {"user": id}}` makes that user's search index agree with the table;
/// `{"reconcileSearch": {}}` every user's, in id order, as far as the invocation's time allows,
/// and `{"reconcileSearch": {"after": id}}` goes on from where an answer's `next` said. The
/// answer counts what was repaired; `next` is null once every user was done.
pub async fn reconcile_search(
    state: &AppState,
    request: &Value,
    deadline_ms: u64,
) -> Result<Value, lambda_runtime::Error> {
    let started = Instant::now();
    let id = |field: &str| -> Result<Option<ObjectId>, lambda_runtime::Error> {
        match request.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_str()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| format!("reconcileSearch.{field} is not a user id: {value}").into()),
        }
    };
    let (user, after) = (id("user")?, id("after")?);
    let Some(index) = state.text_index.clone() else {
        return Err(
            "this function has no search index to repair (EIDER_SEARCH_INDEX=terms?)".into(),
        );
    };
    let (report, next) = match user {
        Some(user) => {
            let report = indexing::reconcile_user(state, index.as_ref(), &user).await?;
            index.settle().await?;
            (report, None)
        }
        None => {
            let deadline = budget_for(deadline_ms, started).deadline;
            indexing::reconcile_users(state, after, deadline).await?
        }
    };
    tracing::info!(?report, next = ?next, ms = started.elapsed().as_millis() as u64, "search index reconciled");
    let mut answer = serde_json::to_value(report)?;
    answer["next"] = json!(next.map(|id| id.to_string()));
    Ok(answer)
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
