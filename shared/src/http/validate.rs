//! Parameter validation with WildDuck's (Joi's) messages and per-field `details`.
//!
//! A handler takes its fields one by one from a [`Validator`]; each getter records a message
//! for a bad value and returns `None`, so every problem of a request is reported at once.
//! `finish()` turns the collected messages into a 400 `InputValidationError`. Conversions
//! follow Joi's `convert: true`: numbers and booleans may arrive as strings (query strings),
//! and an empty string means "not given" for numbers, booleans and ids.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use regex_lite::Regex;
use serde_json::{Map, Value};

use super::describe::{self, FieldKind};
use super::error::ApiError;
pub use crate::domain::authlog::Session;
use crate::id::ObjectId;

/// Largest `metaData` / `internalData` JSON text (WildDuck allows 1 MB; a DynamoDB item holds
/// at most 400 KB, and a profile carries both).
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// Rules for a string field.
#[derive(Clone, Copy)]
pub struct Str {
    pub min: usize,
    pub max: usize,
    pub trim: bool,
    pub lowercase: bool,
    /// When true, `""` is a value; otherwise it means "not given".
    pub allow_empty: bool,
    /// A pattern the value must match, and the name Joi's message gives it.
    pub pattern: Option<(&'static Regex, &'static str)>,
}

impl Str {
    /// A string of at most `max` characters.
    pub const fn max(max: usize) -> Str {
        Str {
            min: 0,
            max,
            trim: false,
            lowercase: false,
            allow_empty: false,
            pattern: None,
        }
    }
    pub const fn min(mut self, min: usize) -> Str {
        self.min = min;
        self
    }
    pub const fn trim(mut self) -> Str {
        self.trim = true;
        self
    }
    pub const fn lowercase(mut self) -> Str {
        self.lowercase = true;
        self
    }
    pub const fn allow_empty(mut self) -> Str {
        self.allow_empty = true;
        self
    }
    pub const fn pattern(mut self, regex: &'static Regex, name: &'static str) -> Str {
        self.pattern = Some((regex, name));
        self
    }
}

/// Collects typed fields from request parameters, and the messages of the bad ones.
pub struct Validator {
    params: Map<String, Value>,
    taken: BTreeSet<String>,
    errors: BTreeMap<String, String>,
    /// Recording the fields for the API document instead of reading them (`describe`).
    describing: bool,
}

fn quoted(field: &str) -> String {
    format!("\"{field}\"")
}

/// Joi's truthy and falsy strings.
pub fn parse_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_i64() == Some(1) => Some(true),
        Value::Number(n) if n.as_i64() == Some(0) => Some(false),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "y" | "yes" | "on" | "1" => Some(true),
            "false" | "n" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

impl Validator {
    pub fn new(params: Map<String, Value>) -> Self {
        Validator {
            params,
            taken: BTreeSet::new(),
            errors: BTreeMap::new(),
            describing: describe::active(),
        }
    }

    /// A validator of path parameters: those are real even while a route is described.
    pub fn for_path() -> Self {
        Validator {
            describing: false,
            ..Validator::new(Map::new())
        }
    }

    fn note(&self, field: &str, kind: FieldKind) {
        if self.describing {
            describe::field(field, kind);
        }
    }

    /// Records a message for `field` (the first message per field wins).
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        let message = message.into();
        if self.describing && message.ends_with("is required") {
            describe::required(field);
        }
        self.errors.entry(field.to_string()).or_insert(message);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Whether `field` was found bad already.
    pub fn has_error(&self, field: &str) -> bool {
        self.errors.contains_key(field)
    }

    /// Whether the request carries `field` at all (even empty).
    pub fn has(&self, field: &str) -> bool {
        self.params.contains_key(field)
    }

    /// The raw value of `field`, marked as known. `null` counts as absent.
    pub fn raw(&mut self, field: &str) -> Option<Value> {
        self.note(field, FieldKind::Any);
        self.taken.insert(field.to_string());
        match self.params.get(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.clone()),
        }
    }

    /// A path parameter that must be an object id.
    pub fn path_id(&mut self, field: &str, raw: &str) -> Option<ObjectId> {
        match raw.parse::<ObjectId>() {
            Ok(id) => Some(id),
            Err(e) => {
                self.error(field, e.message(field));
                None
            }
        }
    }

    /// An optional object id field.
    pub fn id(&mut self, field: &str) -> Option<ObjectId> {
        self.note(field, FieldKind::ObjectId);
        let text = self.string(field, Str::max(24).trim())?;
        self.path_id(field, &text)
    }

    /// An optional string field.
    pub fn string(&mut self, field: &str, rule: Str) -> Option<String> {
        self.note(
            field,
            FieldKind::String {
                min: rule.min,
                max: rule.max,
                pattern: rule.pattern.map(|(regex, _)| regex.as_str()),
                lowercase: rule.lowercase,
            },
        );
        let value = self.raw(field)?;
        let Value::String(mut s) = value else {
            self.error(field, format!("{} must be a string", quoted(field)));
            return None;
        };
        if rule.trim {
            s = s.trim().to_string();
        }
        if rule.lowercase {
            s = s.to_lowercase();
        }
        if s.is_empty() {
            if rule.allow_empty {
                return Some(s);
            }
            return None;
        }
        let len = s.chars().count();
        if len > rule.max {
            self.error(
                field,
                format!(
                    "{} length must be less than or equal to {} characters long",
                    quoted(field),
                    rule.max
                ),
            );
            return None;
        }
        if len < rule.min {
            self.error(
                field,
                format!(
                    "{} length must be at least {} characters long",
                    quoted(field),
                    rule.min
                ),
            );
            return None;
        }
        if let Some((regex, name)) = rule.pattern
            && !regex.is_match(&s)
        {
            let message = format!(
                "{} with value {:?} fails to match the {name} pattern",
                quoted(field),
                s
            );
            self.error(field, message);
            return None;
        }
        Some(s)
    }

    /// A string field that must be given.
    pub fn required_string(&mut self, field: &str, rule: Str) -> Option<String> {
        let was_given = self.params.get(field).is_some_and(|v| !v.is_null());
        let value = self.string(field, rule);
        if value.is_none() && !self.errors.contains_key(field) {
            let message = if was_given {
                format!("{} is not allowed to be empty", quoted(field))
            } else {
                format!("{} is required", quoted(field))
            };
            self.error(field, message);
        }
        value
    }

    /// An optional boolean (Joi's truthy/falsy strings accepted).
    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        self.note(field, FieldKind::Boolean);
        let value = self.raw(field)?;
        if value.as_str().is_some_and(|s| s.is_empty()) {
            return None;
        }
        let parsed = parse_bool(&value);
        if parsed.is_none() {
            self.error(field, format!("{} must be a boolean", quoted(field)));
        }
        parsed
    }

    /// An optional integer within `min..=max`.
    pub fn integer(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
        self.note(field, FieldKind::Integer { min, max });
        let value = self.raw(field)?;
        let number = match &value {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            }),
            Value::String(s) if s.trim().is_empty() => return None,
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(number) = number else {
            let message = match &value {
                Value::Number(_) => format!("{} must be an integer", quoted(field)),
                Value::String(s) if s.trim().parse::<f64>().is_ok() => {
                    format!("{} must be an integer", quoted(field))
                }
                _ => format!("{} must be a number", quoted(field)),
            };
            self.error(field, message);
            return None;
        };
        if number < min {
            self.error(
                field,
                format!("{} must be greater than or equal to {min}", quoted(field)),
            );
            return None;
        }
        if number > max {
            self.error(
                field,
                format!("{} must be less than or equal to {max}", quoted(field)),
            );
            return None;
        }
        Some(number)
    }

    /// An optional non-negative size or count.
    pub fn count(&mut self, field: &str) -> Option<u64> {
        self.integer(field, 0, i64::MAX).map(|n| n as u64)
    }

    /// Like [`Validator::string_list`], with at most `max_items` items.
    pub fn bounded_list(
        &mut self,
        field: &str,
        item_max: usize,
        max_items: usize,
    ) -> Option<Vec<String>> {
        let bound = Some(max_items);
        self.note(
            field,
            FieldKind::List {
                item_max,
                max_items: bound,
            },
        );
        let list = self.string_list(field, item_max)?;
        if list.len() > max_items {
            let message = format!(
                "{} must contain less than or equal to {max_items} items",
                quoted(field)
            );
            self.error(field, message);
            return None;
        }
        Some(list)
    }

    /// An optional list of strings: a JSON array, or a comma-separated string. Items are
    /// trimmed; empty items dropped.
    pub fn string_list(&mut self, field: &str, item_max: usize) -> Option<Vec<String>> {
        self.note(
            field,
            FieldKind::List {
                item_max,
                max_items: None,
            },
        );
        let value = self.raw(field)?;
        let items: Vec<Value> = match value {
            Value::Array(items) => items,
            Value::String(s) => s.split(',').map(|p| Value::String(p.to_string())).collect(),
            _ => {
                self.error(field, format!("{} must be an array", quoted(field)));
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("{field}[{i}]");
            let Value::String(s) = item else {
                self.error(
                    &format!("{field},{i}"),
                    format!("{} must be a string", quoted(&path)),
                );
                return None;
            };
            let s = s.trim().to_string();
            if s.chars().count() > item_max {
                self.error(
                    &format!("{field},{i}"),
                    format!(
                        "{} length must be less than or equal to {item_max} characters long",
                        quoted(&path)
                    ),
                );
                return None;
            }
            if !s.is_empty() {
                out.push(s);
            }
        }
        Some(out)
    }

    /// An optional JSON object, given as an object or as a JSON string of one (WildDuck's
    /// `metaData` / `internalData`); returned as its JSON text.
    pub fn json_object(&mut self, field: &str, max_bytes: usize) -> Option<String> {
        self.note(field, FieldKind::JsonObject);
        let value = self.raw(field)?;
        let object = match value {
            Value::Object(o) => Value::Object(o),
            Value::String(s) if s.trim().is_empty() => Value::Object(Map::new()),
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Object(o)) => Value::Object(o),
                _ => {
                    self.error(
                        field,
                        format!("{} must be a valid JSON object", quoted(field)),
                    );
                    return None;
                }
            },
            _ => {
                self.error(field, format!("{} must be of type object", quoted(field)));
                return None;
            }
        };
        let text = object.to_string();
        if text.len() > max_bytes {
            self.error(
                field,
                format!("{} value exceeds allowed size", quoted(field)),
            );
            return None;
        }
        Some(text)
    }

    /// An optional date, as Joi's `date()` takes it: an ISO 8601 / RFC 2822 string, or a number
    /// of milliseconds since 1970.
    pub fn date(&mut self, field: &str) -> Option<DateTime<Utc>> {
        self.note(field, FieldKind::Date);
        let parsed = match self.raw(field)? {
            Value::String(s) => parse_date(s.trim()),
            Value::Number(n) => n.as_i64().and_then(DateTime::from_timestamp_millis),
            _ => None,
        };
        if parsed.is_none() {
            self.error(field, format!("{} must be a valid date", quoted(field)));
        }
        parsed
    }

    /// An optional RFC 3339 date where `false` and `""` also mean "not given"
    /// (`deleteAfter`, `validAfter`).
    pub fn date_or_false(&mut self, field: &str) -> Option<DateTime<Utc>> {
        self.note(field, FieldKind::DateOrFalse);
        match self.raw(field) {
            None | Some(Value::Bool(false)) => None,
            Some(Value::String(s)) if s.is_empty() || s == "false" => None,
            Some(Value::String(s)) => match DateTime::parse_from_rfc3339(&s) {
                Ok(d) => Some(d.with_timezone(&Utc)),
                Err(_) => {
                    self.error(field, format!("{} must be a valid date", quoted(field)));
                    None
                }
            },
            Some(_) => {
                self.error(field, format!("{} must be a valid date", quoted(field)));
                None
            }
        }
    }

    /// `sess` and `ip`: accepted on most calls, recorded in the security log only.
    pub fn session(&mut self) -> Session {
        let sess = self.string("sess", Str::max(255));
        let ip = self.string("ip", Str::max(45).trim());
        if let Some(ip) = &ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            self.error("ip", "\"ip\" must be a valid ip address without CIDR");
        }
        Session { sess, ip }
    }

    /// Refuses every parameter no getter asked for (WildDuck's strict endpoints).
    pub fn deny_unknown(&mut self) {
        if self.describing {
            describe::strict();
        }
        let unknown: Vec<String> = self
            .params
            .keys()
            .filter(|k| !self.taken.contains(*k))
            .cloned()
            .collect();
        for key in unknown {
            let message = format!("{} is not allowed", quoted(&key));
            self.error(&key, message);
        }
    }

    /// Ok when every field was valid; otherwise the 400 with all messages.
    pub fn finish(self) -> Result<(), ApiError> {
        // Described fields are all absent: the handler must stop here, before any work.
        if self.errors.is_empty() && !self.describing {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

pub use crate::time::parse_date;

/// Validates the parameters of a call that takes nothing but `sess` and `ip`, and answers
/// them (for the security log).
pub fn session_only(params: Map<String, Value>) -> Result<Session, ApiError> {
    let mut v = Validator::new(params);
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validator(v: Value) -> Validator {
        Validator::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn strings_report_joi_messages() {
        let mut v = validator(json!({"a": 5, "b": "toolong", "c": ""}));
        assert_eq!(v.string("a", Str::max(10)), None);
        assert_eq!(v.string("b", Str::max(3)), None);
        assert_eq!(v.required_string("c", Str::max(3)), None);
        assert_eq!(v.required_string("d", Str::max(3)), None);
        let err = v.finish().unwrap_err();
        let details = err.details.unwrap();
        assert_eq!(details["a"], "\"a\" must be a string");
        assert_eq!(
            details["b"],
            "\"b\" length must be less than or equal to 3 characters long"
        );
        assert_eq!(details["c"], "\"c\" is not allowed to be empty");
        assert_eq!(details["d"], "\"d\" is required");
    }

    #[test]
    fn numbers_and_booleans_convert_from_strings() {
        let mut v = validator(json!({"n": "42", "b": "yes", "f": 0, "e": "", "x": "abc"}));
        assert_eq!(v.integer("n", 0, 100), Some(42));
        assert_eq!(v.boolean("b"), Some(true));
        assert_eq!(v.boolean("f"), Some(false));
        assert_eq!(v.boolean("e"), None);
        assert_eq!(v.integer("x", 0, 1), None);
        assert_eq!(
            v.finish().unwrap_err().details.unwrap()["x"],
            "\"x\" must be a number"
        );
    }

    #[test]
    fn bounds_and_unknown_keys_are_refused() {
        let mut v = validator(json!({"limit": 251, "foo": 1}));
        assert_eq!(v.integer("limit", 1, 250), None);
        v.deny_unknown();
        let details = v.finish().unwrap_err().details.unwrap();
        assert_eq!(
            details["limit"],
            "\"limit\" must be less than or equal to 250"
        );
        assert_eq!(details["foo"], "\"foo\" is not allowed");
    }

    #[test]
    fn lists_accept_arrays_and_comma_strings() {
        let mut v = validator(json!({"a": "x, y,,z", "b": ["p", " q "], "c": [1]}));
        assert_eq!(
            v.string_list("a", 10),
            Some(vec!["x".into(), "y".into(), "z".into()])
        );
        assert_eq!(v.string_list("b", 10), Some(vec!["p".into(), "q".into()]));
        assert_eq!(v.string_list("c", 10), None);
        assert_eq!(
            v.finish().unwrap_err().details.unwrap()["c,0"],
            "\"c[0]\" must be a string"
        );
    }

    #[test]
    fn ids_and_ips_are_checked() {
        let mut v = validator(json!({"ip": "10.0.0.1/8"}));
        assert!(v.path_id("user", "123").is_none());
        v.session();
        let details = v.finish().unwrap_err().details.unwrap();
        assert_eq!(
            details["user"],
            "\"user\" length must be 24 characters long"
        );
        assert!(details["ip"].contains("valid ip"));
    }
}
