//! Settings (WildDuck's `/settings`): run-time overrides of defaults, stored in the table and
//! read by every function without a redeploy.
//!
//! Each override is an item `SETTINGS` / `<key>`. A process keeps the values in its config's
//! [`Overrides`](crate::config::Overrides) and reads the partition again when its copy is
//! older than [`REFRESH_MILLIS`] (one `Query`, on the next request, delivery or janitor run),
//! so a change reaches every Lambda within that time; the process that made it at once.

use chrono::Utc;
use serde_json::{Value, json};

use super::{AppState, DomainError, DomainResult, keys};
use crate::config::Tunable;
use crate::store::{Item, Query, Write, query_all};

/// How old a process's copy of the settings may get.
pub const REFRESH_MILLIS: i64 = 30_000;

/// A known setting: WildDuck's key, name and description.
pub struct Known {
    pub key: &'static str,
    pub tunable: Tunable,
    pub name: &'static str,
    pub description: &'static str,
}

pub const KNOWN: [Known; 5] = [
    Known {
        key: "const:archive:time",
        tunable: Tunable::ArchiveTime,
        name: "Archive time",
        description: "Time in ms after deleted messages will be purged",
    },
    Known {
        key: "const:authlog:time",
        tunable: Tunable::AuthlogTime,
        name: "Auth log time",
        description: "Time in ms after authentication log entries will be purged",
    },
    Known {
        key: "const:max:forwards",
        tunable: Tunable::MaxForwards,
        name: "Max forwards",
        description: "Maximum number of forwarded emails per 24 hours",
    },
    Known {
        key: "const:max:recipients",
        tunable: Tunable::MaxRecipients,
        name: "Max recipients",
        description: "How many recipients a user can send emails to in 24 hours",
    },
    Known {
        key: "const:max:storage",
        tunable: Tunable::MaxStorage,
        name: "Max storage",
        description: "Default storage quota for users in bytes",
    },
];

fn known(key: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.key == key)
}

/// One setting as `GET /settings` lists it.
pub struct SettingView {
    pub known: &'static Known,
    pub value: u64,
    pub default: u64,
    pub custom: bool,
}

/// Reads every override into this process's config; `force` even when its copy is fresh.
pub async fn refresh(state: &AppState, force: bool) -> DomainResult<()> {
    let overrides = &state.config.overrides;
    let now = Utc::now().timestamp_millis();
    let last = overrides
        .refreshed_at
        .load(std::sync::atomic::Ordering::Relaxed);
    if !force && now - last < REFRESH_MILLIS {
        return Ok(());
    }
    let items = query_all(
        state.table.as_ref(),
        Query::table(keys::SETTINGS_PK).limit(100),
    )
    .await?;
    for setting in &KNOWN {
        let value = items
            .iter()
            .find(|i| i.sk == setting.key)
            .and_then(|i| i.body["value"].as_u64());
        overrides.set(setting.tunable, value);
    }
    overrides
        .refreshed_at
        .store(now, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// [`refresh`] when the copy is stale; a failure keeps the values it had (logged).
pub async fn refresh_if_stale(state: &AppState) {
    if let Err(e) = refresh(state, false).await {
        tracing::warn!(error = %e, "settings not refreshed; the last ones read stay");
    }
}

/// `GET /settings`: every known setting in key order, `filter` a part of the key.
pub async fn list(state: &AppState, filter: Option<&str>) -> DomainResult<Vec<SettingView>> {
    refresh(state, true).await?;
    let filter = filter.map(str::to_lowercase);
    Ok(KNOWN
        .iter()
        .filter(|k| filter.as_deref().is_none_or(|f| k.key.contains(f)))
        .map(|known| {
            let custom = state.config.overrides.get(known.tunable);
            SettingView {
                known,
                value: state.config.effective(known.tunable),
                default: state.config.configured(known.tunable),
                custom: custom.is_some(),
            }
        })
        .collect())
}

/// `GET /settings/{key}`: the value, or `None` for a key Eider does not know.
pub async fn get(state: &AppState, key: &str) -> DomainResult<Option<u64>> {
    let Some(known) = known(key) else {
        return Ok(None);
    };
    refresh(state, true).await?;
    Ok(Some(state.config.effective(known.tunable)))
}

/// `POST /settings/{key}`: sets the value (a whole number; durations in milliseconds).
pub async fn set(state: &AppState, key: &str, value: &Value) -> DomainResult<()> {
    let known = known(key)
        .ok_or_else(|| DomainError::invalid("key", format!("Unknown setting \"{key}\"")))?;
    let number = value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|n| *n < u64::MAX)
        .ok_or_else(|| {
            DomainError::invalid("value", "\"value\" must be a whole number of at least 0")
        })?;
    state
        .table
        .transact(vec![Write::put(Item::new(
            keys::setting(known.key),
            json!({ "value": number }),
        ))])
        .await?;
    state.config.overrides.set(known.tunable, Some(number));
    Ok(())
}
