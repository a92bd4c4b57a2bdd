//! Timestamps as WildDuck's clients read them: JavaScript's `Date.prototype.toISOString()`,
//! always 24 characters (`2026-12-06T12:35:54.000Z`, milliseconds included). Its web client
//! formats only values of exactly that shape and shows any other one raw.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// `t` in `toISOString()` form.
pub fn iso(t: &DateTime<Utc>) -> String {
    // Formatted directly rather than through a format string, which is parsed on every call
    // (it showed in the profile of a listing).
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `t` as a JSON string in `toISOString()` form, or `false` when absent (WildDuck's way of
/// saying "never").
pub fn iso_or_false(t: Option<&DateTime<Utc>>) -> Value {
    t.map_or(Value::Bool(false), |t| Value::String(iso(t)))
}

/// `now` plus `millis`, or `None` when that is past the last date chrono can hold (a retention
/// of "practically for ever": no expiry at all, rather than an overflow).
pub fn after_millis(now: DateTime<Utc>, millis: u64) -> Option<DateTime<Utc>> {
    let delta = chrono::TimeDelta::try_milliseconds(i64::try_from(millis).ok()?)?;
    now.checked_add_signed(delta)
}

/// `now` plus `seconds`, as [`after_millis`].
pub fn after_seconds(now: DateTime<Utc>, seconds: u64) -> Option<DateTime<Utc>> {
    let delta = chrono::TimeDelta::try_seconds(i64::try_from(seconds).ok()?)?;
    now.checked_add_signed(delta)
}

/// A date as WildDuck accepts it: RFC 3339, RFC 2822, a day (`2026-12-06`), or unix
/// milliseconds.
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(text) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
    }
    text.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}

#[cfg(test)]
mod tests {
    #[test]
    fn far_futures_are_none_instead_of_an_overflow() {
        let now = chrono::Utc::now();
        assert!(super::after_millis(now, 1000).is_some_and(|t| t > now));
        assert_eq!(super::after_millis(now, u64::MAX), None);
        assert_eq!(super::after_millis(now, i64::MAX as u64), None);
        assert_eq!(super::after_millis(now, 9_000_000_000_000_000), None);
        assert_eq!(super::after_seconds(now, u64::MAX / 2), None);
    }

    use super::*;

    #[test]
    fn every_timestamp_has_24_characters_with_milliseconds() {
        let whole: DateTime<Utc> = "2026-12-06T12:35:54Z".parse().unwrap();
        assert_eq!(iso(&whole), "2026-12-06T12:35:54.000Z");
        let nanos: DateTime<Utc> = "2026-12-06T12:35:54.392288110Z".parse().unwrap();
        assert_eq!(iso(&nanos), "2026-12-06T12:35:54.392Z");
        assert_eq!(iso(&Utc::now()).len(), 24);
        assert_eq!(iso_or_false(None), Value::Bool(false));
    }
}
