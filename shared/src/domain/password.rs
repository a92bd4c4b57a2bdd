//! Password hashing: argon2id for every password, stored only as a PHC string.
//!
//! Hashing is deliberately slow, so it runs on the blocking pool and never stalls other
//! requests on the same runtime.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

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

/// Checks a password against a stored PHC string (any argon2 variant). A malformed stored
/// hash never matches.
pub async fn verify(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| {
                hasher()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Whether a value given with `hashedPassword: true` is an argon2id hash (the only kind Eider
/// stores).
pub fn is_supported_hash(value: &str) -> bool {
    PasswordHash::new(value).is_ok_and(|h| h.algorithm.as_str() == "argon2id" && h.hash.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let stored = hash("secretpass".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"));
        assert!(!stored.contains("secretpass"));
        assert!(verify("secretpass".into(), stored.clone()).await);
        assert!(!verify("secretpas".into(), stored.clone()).await);
        assert!(!verify("secretpass".into(), "garbage".into()).await);
        assert!(is_supported_hash(&stored));
        assert!(!is_supported_hash("$2b$10$abcdefghijklmnopqrstuu"));
    }
}
