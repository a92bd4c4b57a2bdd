//! Request parameters, merged the way WildDuck merges them: path parameters are taken by the
//! handler, then the query string, then the body (JSON or a form); a key already present is
//! never overridden. The access token is removed before validation sees the parameters.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Query parameters and body fields of a request, as one JSON object.
#[derive(Debug, Default)]
pub struct Params(pub Map<String, Value>);

/// The query parameter that carries the access token; never a handler's parameter.
pub const ACCESS_TOKEN_PARAM: &str = "accessToken";

fn invalid_content(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("InvalidContent", message)
}

/// Adds form-encoded pairs; a repeated key becomes an array of its values. `name[key]=v`
/// and `name[]=v` nest one level, as the `qs` parser of WildDuck's restify does
/// (`or[from]=alice` is `{"or": {"from": "alice"}}`).
fn merge_pairs(map: &mut Map<String, Value>, pairs: &str) {
    for (key, value) in form_urlencoded_pairs(pairs) {
        if key == ACCESS_TOKEN_PARAM {
            continue;
        }
        if let Some((name, inner)) = key
            .strip_suffix(']')
            .and_then(|k| k.split_once('['))
            .filter(|(name, inner)| !name.is_empty() && !inner.contains(['[', ']']))
        {
            let slot = map.entry(name.to_string()).or_insert_with(|| {
                if inner.is_empty() {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                }
            });
            match (slot, inner) {
                (Value::Array(values), "") => values.push(Value::String(value)),
                (Value::Object(fields), inner) if !inner.is_empty() => {
                    fields
                        .entry(inner.to_string())
                        .or_insert(Value::String(value));
                }
                // Mixed forms of one name: the first form stays.
                _ => {}
            }
            continue;
        }
        match map.get_mut(&key) {
            None => {
                map.insert(key, Value::String(value));
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
        }
    }
}

fn form_urlencoded_pairs(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl Params {
    /// The query string's parameters only (for requests whose body is not parameters, like a
    /// raw message upload).
    pub fn from_query(uri: &axum::http::Uri) -> Params {
        let mut map = Map::new();
        if let Some(query) = uri.query() {
            merge_pairs(&mut map, query);
        }
        Params(map)
    }
}

/// Merges a JSON object body into `map` as [`Params`] does, except `field`: its JSON text
/// (a string literal with its quotes, or any other value) is answered as a range of `body`
/// instead of being copied, for a spooled upload whose `raw` is 80 MB of base64. `None`
/// when the body has no such field or the query already gave it.
pub fn merge_json_except(
    map: &mut Map<String, Value>,
    body: &[u8],
    field: &str,
) -> Result<Option<std::ops::Range<usize>>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let invalid_json = |e: serde_json::Error| invalid_content(format!("Invalid JSON body: {e}"));
    let whole: &serde_json::value::RawValue = serde_json::from_slice(body).map_err(invalid_json)?;
    if !whole.get().starts_with('{') {
        return Err(invalid_content("Request body must be a JSON object"));
    }
    let fields: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(whole.get()).map_err(invalid_json)?;
    let mut taken = None;
    for (key, value) in fields {
        if key == field {
            if !map.contains_key(field) {
                // The literal lies inside `body`: its place is its distance from the start.
                let start = value.get().as_ptr() as usize - body.as_ptr() as usize;
                taken = Some(start..start + value.get().len());
            }
        } else if key != ACCESS_TOKEN_PARAM && !map.contains_key(&key) {
            let value = serde_json::from_str(value.get()).map_err(invalid_json)?;
            map.insert(key, value);
        }
    }
    Ok(taken)
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let mut map = Map::new();
        if let Some(query) = req.uri().query() {
            merge_pairs(&mut map, query);
        }
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                "InvalidContent",
                "Request body could not be read",
            )
        })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params(map));
        }
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let text = std::str::from_utf8(&body)
                .map_err(|_| invalid_content("Form body is not valid UTF-8"))?;
            let mut form = Map::new();
            merge_pairs(&mut form, text);
            for (k, v) in form {
                map.entry(k).or_insert(v);
            }
            return Ok(Params(map));
        }
        // Anything else must be a JSON object (clients often omit the content type).
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| invalid_content(format!("Invalid JSON body: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(invalid_content("Request body must be a JSON object"));
        };
        for (k, v) in fields {
            if k != ACCESS_TOKEN_PARAM {
                map.entry(k).or_insert(v);
            }
        }
        Ok(Params(map))
    }
}

/// Path parameters; a malformed path gives our JSON error instead of axum's plain text.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| PathParam(v))
            .map_err(|e| ApiError::bad_request("InputValidationError", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_nest_one_level_as_qs_does() {
        let mut map = Map::new();
        merge_pairs(
            &mut map,
            "or[from]=alice&or[to]=bob&tags[]=a&tags[]=b&x[y][z]=deep",
        );
        assert_eq!(map["or"], serde_json::json!({"from": "alice", "to": "bob"}));
        assert_eq!(map["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(map["x[y][z]"], "deep");
    }

    #[test]
    fn query_pairs_are_decoded_and_repeated_keys_collected() {
        let mut map = Map::new();
        merge_pairs(&mut map, "a=1&b=x%20y+z&a=2&accessToken=secret&c=%zz&d");
        assert_eq!(map["a"], serde_json::json!(["1", "2"]));
        assert_eq!(map["b"], "x y z");
        assert_eq!(map["c"], "%zz");
        assert_eq!(map["d"], "");
        assert!(!map.contains_key("accessToken"));
    }

    #[test]
    fn utf8_escapes_are_decoded() {
        let mut map = Map::new();
        merge_pairs(&mut map, "q=%C3%B5");
        assert_eq!(map["q"], "õ");
    }
}
