//! An item's body, read lazily: the embedded store hands over the stored record's JSON and
//! the body becomes a JSON tree only when something looks at it as one. `Item::body_as`
//! reads the entity straight from the record instead: building the tree first and converting
//! it after was more than half of listing 20 messages (profile in docs/benchmarks.md).

use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The JSON body of an [`crate::store::Item`]; derefs to its [`Value`].
#[derive(Default)]
pub struct Body {
    /// A stored record (a JSON object whose `body` field is this body), checked to be valid
    /// JSON when it was read, not yet turned into a tree.
    record: Option<Vec<u8>>,
    tree: OnceLock<Value>,
}

/// The `body` field of a stored record, as `T`; the record's other fields are skipped.
#[derive(Deserialize)]
struct BodyField<T> {
    body: T,
}

impl Body {
    /// The body inside a stored record: a JSON object with a `body` field, already checked to
    /// be valid JSON by the caller (so turning it into a tree later cannot fail).
    pub fn in_record(record: Vec<u8>) -> Self {
        Body {
            record: Some(record),
            tree: OnceLock::new(),
        }
    }

    /// The body read as `T`: from the record when no tree has been built, else from the tree.
    pub fn read_as<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        match (self.tree.get(), &self.record) {
            (None, Some(record)) => {
                serde_json::from_slice::<BodyField<T>>(record).map(|field| field.body)
            }
            _ => T::deserialize(self.tree()),
        }
    }

    /// The body as a JSON tree, taken out.
    pub fn into_value(mut self) -> Value {
        self.tree();
        self.tree.take().unwrap_or_default()
    }

    fn tree(&self) -> &Value {
        self.tree.get_or_init(|| match &self.record {
            // The record was checked when read; `Null` only if that check was skipped.
            Some(record) => serde_json::from_slice::<BodyField<Value>>(record)
                .map(|field| field.body)
                .unwrap_or_default(),
            None => Value::Null,
        })
    }
}

impl From<Value> for Body {
    fn from(value: Value) -> Self {
        Body {
            record: None,
            tree: OnceLock::from(value),
        }
    }
}

impl Deref for Body {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.tree()
    }
}

impl DerefMut for Body {
    fn deref_mut(&mut self) -> &mut Value {
        self.tree();
        // Changed from here on: the record no longer says what the body is.
        self.record = None;
        self.tree.get_mut().expect("the tree was just built")
    }
}

impl Clone for Body {
    fn clone(&self) -> Self {
        Body {
            record: self.record.clone(),
            tree: self.tree.clone(),
        }
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.tree() == other.tree()
    }
}

impl PartialEq<Value> for Body {
    fn eq(&self, other: &Value) -> bool {
        self.tree() == other
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.tree().fmt(f)
    }
}

impl serde::Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.tree().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Entity {
        name: String,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn stored() -> Body {
        Body::in_record(br#"{"body":{"name":"n","tags":["a"]},"counters":{"c":1}}"#.to_vec())
    }

    #[test]
    fn reads_the_entity_from_the_record_or_the_tree_alike() {
        let expected = Entity {
            name: "n".into(),
            tags: vec!["a".into()],
        };
        let lazy = stored();
        assert_eq!(lazy.read_as::<Entity>().unwrap(), expected);
        assert!(
            lazy.tree.get().is_none(),
            "reading as a type builds no tree"
        );
        assert_eq!(lazy["name"], "n");
        assert_eq!(lazy.read_as::<Entity>().unwrap(), expected);
        let built = Body::from(json!({ "name": "n", "tags": ["a"] }));
        assert_eq!(built.read_as::<Entity>().unwrap(), expected);
        assert_eq!(lazy, built);
    }

    #[test]
    fn a_change_replaces_the_record() {
        let mut body = stored();
        body["name"] = json!("changed");
        assert_eq!(body.read_as::<Entity>().unwrap().name, "changed");
        assert_eq!(body.clone().into_value()["name"], "changed");
        assert_eq!(serde_json::to_value(&body).unwrap()["tags"], json!(["a"]));
    }

    #[test]
    fn a_wrong_shape_is_an_error_not_a_panic() {
        assert!(stored().read_as::<Vec<u8>>().is_err());
        assert_eq!(Body::default().read_as::<Option<Entity>>().unwrap(), None);
    }
}
