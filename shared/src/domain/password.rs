//! Password hashing: argon2id for every password Eider hashes, stored only as a PHC string.
//!
//! Hashes imported from WildDuck (`hashedPassword: true`) may be in any format WildDuck
//! verifies (its `lib/hashes.js`): PBKDF2 (`$pbkdf2-sha1|sha256|sha512$i=...`), bcrypt (`$2a$`,
//! `$2b$`, `$2y$`), sha256-crypt and sha512-crypt (`$5$`, `$6$`), md5-crypt (`$1$`), argon2
//! (`$argon2d$`, `$argon2i$`, `$argon2id$`) and 13-character DES crypt. They are verified as
//! WildDuck does, and the first successful login replaces them with argon2id
//! ([`needs_upgrade`]).
//!
//! Hashing is deliberately slow, so it runs on the blocking pool and never stalls other
//! requests on the same runtime.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use regex_lite::Regex;
use std::sync::LazyLock;
use subtle::ConstantTimeEq;

/// argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$...`).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await?
}

/// The kinds of stored hash Eider verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// `$argon2d$`, `$argon2i$`, `$argon2id$` PHC strings.
    Argon2,
    /// `$pbkdf2-sha1$`, `$pbkdf2-sha256$`, `$pbkdf2-sha512$` PHC strings (`@phc/pbkdf2`).
    Pbkdf2,
    /// `$2a$`, `$2b$`, `$2y$`.
    Bcrypt,
    /// `$5$` (sha256-crypt), `$6$` (sha512-crypt).
    ShaCrypt,
    /// `$1$` (md5-crypt).
    Md5Crypt,
    /// 13 characters of `[./0-9A-Za-z]`.
    DesCrypt,
}

/// Work factors above these are refused at import: one login would take minutes.
const MAX_BCRYPT_COST: u32 = 18;
const MAX_ROUNDS: u64 = 10_000_000;

static DES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[./0-9A-Za-z]{13}$").unwrap());
static BCRYPT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\$2[aby]\$(\d\d)\$[./0-9A-Za-z]{53}$").unwrap());
static SHA_CRYPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\$([56])\$(?:rounds=(\d+)\$)?[^$:\n]{0,16}\$([./0-9A-Za-z]+)$").unwrap()
});
static MD5_CRYPT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\$1\$[^$:\n]{0,8}\$[./0-9A-Za-z]{22}$").unwrap());

/// The format `value` claims by its prefix, as WildDuck's `checkHashSupport`; `Err` names the
/// unknown algorithm (`Invalid algo: ...`).
pub fn hash_format(value: &str) -> Result<HashFormat, String> {
    if DES.is_match(value) {
        return Ok(HashFormat::DesCrypt);
    }
    let algo = value
        .strip_prefix('$')
        .and_then(|rest| rest.split_once('$'))
        .map(|(algo, _)| algo.to_ascii_lowercase())
        .unwrap_or_default();
    match algo.as_str() {
        "pbkdf2-sha1" | "pbkdf2-sha256" | "pbkdf2-sha512" => Ok(HashFormat::Pbkdf2),
        "2a" | "2b" | "2y" => Ok(HashFormat::Bcrypt),
        "5" | "6" => Ok(HashFormat::ShaCrypt),
        "1" => Ok(HashFormat::Md5Crypt),
        "argon2d" | "argon2i" | "argon2id" => Ok(HashFormat::Argon2),
        _ => Err(format!("Invalid algo: {algo:?}")),
    }
}

/// Why an imported hash is refused, or `Ok` when Eider can verify it: a known format that is
/// also well formed (WildDuck stores a malformed hash and then fails every login with it).
pub fn check_import(value: &str) -> Result<HashFormat, String> {
    let format = hash_format(value)?;
    let malformed = || format!("Invalid hash: not a valid {format:?} hash");
    let well_formed = match format {
        HashFormat::DesCrypt => true,
        HashFormat::Bcrypt => BCRYPT
            .captures(value)
            .and_then(|c| c[1].parse::<u32>().ok())
            .is_some_and(|cost| (4..=MAX_BCRYPT_COST).contains(&cost)),
        HashFormat::ShaCrypt => SHA_CRYPT.captures(value).is_some_and(|c| {
            let length = if &c[1] == "5" { 43 } else { 86 };
            let rounds = c
                .get(2)
                .map_or(Some(5000), |r| r.as_str().parse::<u64>().ok());
            c[3].len() == length && rounds.is_some_and(|r| r <= MAX_ROUNDS)
        }),
        HashFormat::Md5Crypt => MD5_CRYPT.is_match(value),
        HashFormat::Argon2 => PasswordHash::new(value).is_ok_and(|h| {
            h.hash.is_some() && Params::try_from(&h).is_ok_and(|p| p.m_cost() <= 1024 * 1024)
        }),
        HashFormat::Pbkdf2 => Pbkdf2Hash::parse(value).is_some_and(|h| h.rounds <= MAX_ROUNDS),
    };
    if well_formed {
        Ok(format)
    } else {
        Err(malformed())
    }
}

/// Whether `hashedPassword` can be imported as it is.
pub fn is_supported_hash(value: &str) -> bool {
    check_import(value).is_ok()
}

/// Whether a stored hash should be replaced by argon2id once its password is known.
pub fn needs_upgrade(stored: &str) -> bool {
    !stored.starts_with("$argon2id$")
}

/// Checks a password against a stored hash in any supported format. A malformed or unknown
/// stored hash never matches.
pub async fn verify(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || verify_now(password.as_bytes(), &stored))
        .await
        .unwrap_or(false)
}

fn verify_now(password: &[u8], stored: &str) -> bool {
    // Only well-formed hashes within the work limits get computed.
    match check_import(stored) {
        Ok(HashFormat::Argon2) => PasswordHash::new(stored)
            .is_ok_and(|parsed| hasher().verify_password(password, &parsed).is_ok()),
        Ok(HashFormat::Pbkdf2) => Pbkdf2Hash::parse(stored).is_some_and(|h| h.verify(password)),
        Ok(HashFormat::Bcrypt) => pwhash::bcrypt::verify(password, stored),
        Ok(HashFormat::ShaCrypt) if stored.starts_with("$5$") => {
            pwhash::sha256_crypt::verify(password, stored)
        }
        Ok(HashFormat::ShaCrypt) => pwhash::sha512_crypt::verify(password, stored),
        Ok(HashFormat::Md5Crypt) => pwhash::md5_crypt::verify(password, stored),
        Ok(HashFormat::DesCrypt) => pwhash::unix_crypt::verify(password, stored),
        Err(_) => false,
    }
}

/// A `$pbkdf2-<digest>$i=<rounds>$<salt>$<hash>` string as `@phc/pbkdf2` writes it (salt and
/// hash in unpadded standard base64; the salt's decoded bytes are the salt).
struct Pbkdf2Hash {
    digest: String,
    rounds: u64,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl Pbkdf2Hash {
    fn parse(value: &str) -> Option<Pbkdf2Hash> {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        let mut parts = value.split('$');
        let (Some(""), Some(id), Some(params), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let digest = id.to_ascii_lowercase().strip_prefix("pbkdf2-")?.to_string();
        let rounds = params
            .split(',')
            .find_map(|p| p.strip_prefix("i="))?
            .parse::<u64>()
            .ok()
            .filter(|&i| i > 0)?;
        let salt = STANDARD_NO_PAD.decode(salt.trim_end_matches('=')).ok()?;
        let expected = STANDARD_NO_PAD.decode(hash.trim_end_matches('=')).ok()?;
        (!expected.is_empty() && expected.len() <= 128).then_some(Pbkdf2Hash {
            digest,
            rounds,
            salt,
            expected,
        })
    }

    fn verify(&self, password: &[u8]) -> bool {
        let Ok(rounds) = u32::try_from(self.rounds) else {
            return false;
        };
        let mut derived = vec![0u8; self.expected.len()];
        match self.digest.as_str() {
            "sha1" => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, &self.salt, rounds, &mut derived),
            "sha256" => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &self.salt, rounds, &mut derived)
            }
            "sha512" => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, &self.salt, rounds, &mut derived)
            }
            _ => return false,
        }
        derived.ct_eq(&self.expected).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes of `Hunter2!` made by other implementations (Python's passlib, bcrypt,
    /// hashlib and argon2-cffi), not by this module.
    const IMPORTED: [(&str, HashFormat); 13] = [
        ("$1$P3kPrCrR$RrR3xb.j0LkW473rcjaXg/", HashFormat::Md5Crypt),
        (
            "$5$fkMYXuISBGrOokVJ$7sxHa.zXwkCSTx5p6EEr4X9PgIoprWpyquE.yzZlK5A",
            HashFormat::ShaCrypt,
        ),
        (
            "$6$YSeXig2WIHUt9vRZ$4zOkLdc67dKboFRo9n9HOOAa7BGJp9PzVV7O/9OUV40RTjuWJaXEKSKKbFsCcTVvg3YRMr9bX0J83fByZpsgp.",
            HashFormat::ShaCrypt,
        ),
        ("FkwsAvXg9K96A", HashFormat::DesCrypt),
        (
            "$2a$04$UcEFBPzhaGv8PVO4G3aW/.0t2bWxfSU5uIgapDo2cu0Ttep8fMDIi",
            HashFormat::Bcrypt,
        ),
        (
            "$2b$04$UcEFBPzhaGv8PVO4G3aW/.0t2bWxfSU5uIgapDo2cu0Ttep8fMDIi",
            HashFormat::Bcrypt,
        ),
        (
            "$2y$04$UcEFBPzhaGv8PVO4G3aW/.0t2bWxfSU5uIgapDo2cu0Ttep8fMDIi",
            HashFormat::Bcrypt,
        ),
        (
            "$pbkdf2-sha256$i=100000$CvHZmTZrLwtwXF+U/oRDFw$DCFyWkyU+i2QsD52V+wSz/QodEUc0bBUfNIOMePUitw",
            HashFormat::Pbkdf2,
        ),
        (
            "$pbkdf2-sha512$i=25000$HZpwULyb1yEgNm7MSbyMig$rpMgmUlOHN2wKYMDyD2mn0IzM3KcYP5ke2VGPwn0JfQauUS9gBQ28YL2q2D+q0rMhCHvBCDJiK/vGURV6soJ1w",
            HashFormat::Pbkdf2,
        ),
        (
            "$pbkdf2-sha1$i=10000$45jpvhEiRxSoxjJMNJ6l4Q$be8SvzBa0dkKxiWMB2gMKbl8Ffs",
            HashFormat::Pbkdf2,
        ),
        (
            "$argon2i$v=19$m=1024,t=2,p=4$EGUAi93MqvfPFKjRH6HGIQ$bg6pXkDKd6R+MAzNfbTilm+IyF6mxZoyLx4AvlD4Brk",
            HashFormat::Argon2,
        ),
        (
            "$argon2d$v=19$m=1024,t=2,p=4$yMlhQ2S7lo6eFQ5QZdDrpw$Yw5Imkm9XBpy47jJnZaw6GlxlZru2izjEgFBzkQ4Ue8",
            HashFormat::Argon2,
        ),
        (
            "$argon2id$v=19$m=1024,t=2,p=4$CeUKXaidm+U4np2T4/fqMw$1xR+K2YlxmrlV+4rf4+zHoRQsL/vXQuvvd5+9tVfB+c",
            HashFormat::Argon2,
        ),
    ];

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let stored = hash("secretpass".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"));
        assert!(!stored.contains("secretpass"));
        assert!(verify("secretpass".into(), stored.clone()).await);
        assert!(!verify("secretpas".into(), stored.clone()).await);
        assert!(!verify("secretpass".into(), "garbage".into()).await);
        assert!(is_supported_hash(&stored));
        assert!(!needs_upgrade(&stored));
        assert!(!is_supported_hash("$2b$10$abcdefghijklmnopqrstuu"));
    }

    #[tokio::test]
    async fn wildducks_formats_verify_the_right_password_only() {
        for (stored, format) in IMPORTED {
            assert_eq!(check_import(stored), Ok(format), "{stored}");
            assert!(verify("Hunter2!".into(), stored.into()).await, "{stored}");
            assert!(!verify("hunter2!".into(), stored.into()).await, "{stored}");
            assert!(!verify(String::new(), stored.into()).await, "{stored}");
            assert_eq!(needs_upgrade(stored), !stored.starts_with("$argon2id$"));
        }
    }

    #[test]
    fn unknown_and_malformed_hashes_are_refused_with_a_reason() {
        for (value, reason) in [
            ("$apr1$abc$def", "Invalid algo: \"apr1\""),
            (
                "$2x$04$UcEFBPzhaGv8PVO4G3aW/.0t2bWxfSU5uIgapDo2cu0Ttep8fMDIi",
                "Invalid algo: \"2x\"",
            ),
            ("{SSHA}abcdef", "Invalid algo: \"\""),
            ("$sha1$40000$abc$def", "Invalid algo: \"sha1\""),
            ("$pbkdf2$i=1000$abc$def", "Invalid algo: \"pbkdf2\""),
            ("plain text password", "Invalid algo: \"\""),
        ] {
            assert_eq!(check_import(value), Err(reason.to_string()), "{value}");
        }
        for malformed in [
            "$2b$04$short",
            "$2b$31$UcEFBPzhaGv8PVO4G3aW/.0t2bWxfSU5uIgapDo2cu0Ttep8fMDIi",
            "$5$salt$tooshort",
            "$6$rounds=999999999$salt$4zOkLdc67dKboFRo9n9HOOAa7BGJp9PzVV7O/9OUV40RTjuWJaXEKSKKbFsCcTVvg3YRMr9bX0J83fByZpsgp.",
            "$1$P3kPrCrR$short",
            "$pbkdf2-sha256$CvHZmTZrLwtwXF+U/oRDFw$DCFyWkyU+i2QsD52V+wSz/QodEUc0bBUfNIOMePUitw",
            "$pbkdf2-sha256$i=100000$CvHZmTZrLwtwXF+U/oRDFw",
            "$argon2id$v=19$m=1024,t=2,p=4$CeUKXaidm+U4np2T4/fqMw",
        ] {
            assert!(check_import(malformed).is_err(), "{malformed}");
            assert!(!verify_now(b"Hunter2!", malformed), "{malformed}");
        }
    }
}
