//! Object ids: 24 lowercase hex characters, time-ordered like MongoDB ObjectIds, because
//! WildDuck's clients validate ids that way.
//!
//! Layout (12 bytes): 4 bytes of unix seconds, 5 random bytes fixed per process, 3 bytes of a
//! counter starting at a random value, so ids made in one process are strictly increasing.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 12]);

fn process_unique() -> &'static ([u8; 5], AtomicU32) {
    static STATE: OnceLock<([u8; 5], AtomicU32)> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut rng = rand::thread_rng();
        (
            rng.r#gen(),
            AtomicU32::new(rng.r#gen::<u32>() & 0x00ff_ffff),
        )
    })
}

impl ObjectId {
    /// A new id for the current time.
    // No `Default`: a "default" id would be a fresh random one, which reads like a placeholder
    // and hides a missing value; every new id is asked for by name.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let secs = chrono::Utc::now().timestamp() as u32;
        let (random, counter) = process_unique();
        let count = counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&secs.to_be_bytes());
        bytes[4..9].copy_from_slice(random);
        bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
        ObjectId(bytes)
    }

    /// The id's 12 bytes.
    pub fn bytes(&self) -> [u8; 12] {
        self.0
    }

    pub fn from_bytes(bytes: [u8; 12]) -> Self {
        ObjectId(bytes)
    }

    /// Unix seconds the id was made at.
    pub fn timestamp(&self) -> i64 {
        i64::from(u32::from_be_bytes(self.0[..4].try_into().expect("4 bytes")))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

/// Why a string is not an object id; the texts are Joi's, as WildDuck answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    Length,
    NotHex,
}

impl IdError {
    pub fn message(&self, field: &str) -> String {
        match self {
            IdError::Length => format!("\"{field}\" length must be 24 characters long"),
            IdError::NotHex => format!("\"{field}\" must only contain hexadecimal characters"),
        }
    }
}

impl FromStr for ObjectId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdError::NotHex);
        }
        if s.len() != 24 {
            return Err(IdError::Length);
        }
        let mut bytes = [0u8; 12];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).map_err(|_| IdError::NotHex)?;
            bytes[i] = u8::from_str_radix(hex, 16).map_err(|_| IdError::NotHex)?;
        }
        Ok(ObjectId(bytes))
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e: IdError| serde::de::Error::custom(e.message("id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_lowercase_hex_and_round_trip() {
        let id = ObjectId::new();
        let text = id.to_string();
        assert_eq!(text.len(), 24);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(text.parse::<ObjectId>().unwrap(), id);
    }

    #[test]
    fn ids_made_in_one_process_increase() {
        let ids: Vec<String> = (0..1000).map(|_| ObjectId::new().to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        // Equal seconds and process bytes: the counter decides, except when it wraps.
        let increasing = ids.windows(2).filter(|w| w[0] < w[1]).count();
        assert!(increasing >= 998, "{increasing}");
    }

    #[test]
    fn uppercase_hex_is_accepted_and_bad_ids_are_refused() {
        let id: ObjectId = "59FC66A03E54454869460E45".parse().unwrap();
        assert_eq!(id.to_string(), "59fc66a03e54454869460e45");
        assert_eq!("abc".parse::<ObjectId>(), Err(IdError::Length));
        assert_eq!(
            "zzfc66a03e54454869460e45".parse::<ObjectId>(),
            Err(IdError::NotHex)
        );
        assert_eq!(id.timestamp(), 0x59fc66a0);
    }
}
