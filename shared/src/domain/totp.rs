//! TOTP two-factor authentication (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, one step of
//! skew either way): setup with a QR code, enabling, checking and disabling
//! (`/users/{user}/2fa/...`).
//!
//! The seeds live on the user's profile ([`TotpSeeds`]): the active seed, and a pending one
//! between setup and enable (valid 6 hours, as in WildDuck). With `EIDER_SECRET_KEY` set they
//! are sealed with AES-256-GCM, bound to the user's id; without it they are stored as base32.
//!
//! A code is accepted at most once: its time step and digits are claimed with a conditional
//! put (`USER#<user>` / `TOTPUSED#<step>#<code>`, expiring once the code could no longer
//! verify), in the same transaction as the success's authlog entry, so two concurrent checks
//! of one code give one success. Checks are rate limited per user like passwords
//! ([`super::ratelimit`]).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use totp_rs::{Algorithm, Secret};

use super::authlog::{AuthlogEntry, Session};
use super::ratelimit::{self, Gate, Subject};
use super::retry::{Attempt, USER_CONTENDED, retry_on_conflict};
use super::tokens::{self, Grant};
use super::users::{self, StoredUser, User, profile_update};
use super::{AppState, DomainError, DomainResult, journal, keys, unix_now};
use crate::config::{Config, SecretKey};
use crate::id::ObjectId;
use crate::store::{Item, StoreError, Write};

/// Seconds per time step.
pub const STEP: u64 = 30;
/// Steps accepted before and after the current one.
pub const SKEW: u64 = 1;
/// How long a pending seed from setup can still be enabled.
const PENDING_VALIDITY_HOURS: i64 = 6;

/// Label of the condition on a used-code item: the code was used already (see
/// [`crate::store::Guard`]).
const CODE_USED: &str = "code used";
pub const METHOD: &str = "totp";

/// The TOTP secrets of a user, as stored on the profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TotpSeeds {
    /// The seed of enabled TOTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// A seed from setup, waiting for enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_created: Option<DateTime<Utc>>,
}

impl TotpSeeds {
    pub fn is_empty(&self) -> bool {
        self.seed.is_none() && self.pending.is_none()
    }
}

// ---------------------------------------------------------------------------------------------
// Sealing seeds

const PLAIN_PREFIX: &str = "plain:";
const SEALED_PREFIX: &str = "aes256gcm:";

pub(crate) fn aad(user: &ObjectId) -> Vec<u8> {
    format!("eider-totp-seed:{user}").into_bytes()
}

/// The stored form of `seed` (raw bytes) for `user`.
pub fn seal(seed: &[u8], user: &ObjectId, key: Option<&SecretKey>) -> DomainResult<String> {
    seal_for(seed, &aad(user), key)
}

/// The stored form of a secret, bound to `aad` (what it belongs to): sealed with AES-256-GCM
/// under the configured key, else kept plain (base32) with a prefix that says so.
pub fn seal_for(seed: &[u8], aad: &[u8], key: Option<&SecretKey>) -> DomainResult<String> {
    let Some(key) = key else {
        return Ok(format!(
            "{PLAIN_PREFIX}{}",
            Secret::from(seed.to_vec()).to_base32()
        ));
    };
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: seed, aad })
        .map_err(|_| anyhow::anyhow!("sealing a TOTP seed failed"))?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
}

fn config_error(message: &str) -> DomainError {
    tracing::error!("{message}");
    DomainError::SecretUnreadable("Can not use decrypted secret")
}

/// The raw seed from its stored form. A sealed seed needs the key it was sealed with.
pub fn unseal(stored: &str, user: &ObjectId, key: Option<&SecretKey>) -> DomainResult<Vec<u8>> {
    unseal_for(stored, &aad(user), key)
}

/// A secret from its [`seal_for`] form, with the same `aad`.
pub fn unseal_for(stored: &str, aad: &[u8], key: Option<&SecretKey>) -> DomainResult<Vec<u8>> {
    if let Some(base32) = stored.strip_prefix(PLAIN_PREFIX) {
        return Secret::try_from_base32(base32)
            .map(|s| s.as_bytes().to_vec())
            .map_err(|_| config_error("a stored TOTP seed is not valid base32"));
    }
    let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
        return Err(config_error("a stored TOTP seed has an unknown format"));
    };
    let Some(key) = key else {
        return Err(config_error(
            "a TOTP seed is encrypted but EIDER_SECRET_KEY is not set",
        ));
    };
    let bytes = STANDARD
        .decode(sealed)
        .map_err(|_| config_error("a sealed TOTP seed is not valid base64"))?;
    if bytes.len() < 12 {
        return Err(config_error("a sealed TOTP seed is too short"));
    }
    let (nonce, ciphertext) = bytes.split_at(12);
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|e| anyhow::anyhow!("{e}"))?;
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| {
            config_error("a TOTP seed does not decrypt with EIDER_SECRET_KEY (wrong key?)")
        })
}

// ---------------------------------------------------------------------------------------------
// Codes

fn totp(seed: &[u8]) -> DomainResult<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(SKEW as u16)
        .with_step_duration(STEP)
        .with_secret(seed.to_vec())
        .build()
        .map_err(|e| DomainError::Internal(anyhow::anyhow!("TOTP parameters: {e:?}")))
}

/// The time step `code` is valid for at unix time `now` (current step ± [`SKEW`]), if any.
pub fn verify(seed: &[u8], code: &str, now: u64) -> DomainResult<Option<u64>> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(seed)?.check(code, now))
}

/// The code of `seed` at unix time `time` (tests and tools).
pub fn code_at(seed: &[u8], time: u64) -> DomainResult<String> {
    Ok(totp(seed)?.generate(time).to_string())
}

/// JavaScript's `encodeURIComponent`.
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The otpauth URL authenticator apps read (Google's key URI format).
pub fn otpauth_url(seed_base32: &str, issuer: &str, label: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={seed_base32}&issuer={}&algorithm=SHA1&digits=6&period={STEP}",
        encode_component(issuer),
        encode_component(label),
        encode_component(issuer),
    )
}

/// A PNG QR code of `text`, as a `data:` URL.
#[cfg(feature = "qr")]
pub fn qr_data_url(text: &str) -> DomainResult<String> {
    let qr_error = |e: String| {
        tracing::error!(error = e, "QR code rendering failed");
        DomainError::QrCode
    };
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)
        .map_err(|e| qr_error(e.to_string()))?;
    let image = code
        .render::<image::Luma<u8>>()
        .min_dimensions(240, 240)
        .build();
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| qr_error(e.to_string()))?;
    Ok(format!(
        "data:image/png;base64,{}",
        STANDARD.encode(png.into_inner())
    ))
}

/// Without `qr` (functions that never set up TOTP) there is no QR code to render.
#[cfg(not(feature = "qr"))]
pub fn qr_data_url(_text: &str) -> DomainResult<String> {
    tracing::error!("this function was built without QR code support");
    Err(DomainError::QrCode)
}

// ---------------------------------------------------------------------------------------------
// Endpoints

fn totp_enabled(user: &User) -> bool {
    user.enabled2fa.iter().any(|m| m == METHOD)
}

fn pending_is_fresh(seeds: &TotpSeeds, now: DateTime<Utc>) -> bool {
    seeds.pending.is_some()
        && seeds
            .pending_created
            .is_some_and(|t| t > now - Duration::hours(PENDING_VALIDITY_HOURS))
}

/// Applies `change` to the profile under its version, re-reading on conflicts. `change`
/// returns the extra writes of the transaction (after the profile update) and a value handed
/// back, or an error that stops everything.
async fn change_profile<T, F>(state: &AppState, id: &ObjectId, change: F) -> DomainResult<(User, T)>
where
    T: Send,
    F: Fn(&mut User) -> DomainResult<(Vec<Write>, T)> + Sync,
{
    let change = &change;
    retry_on_conflict(USER_CONTENDED, || async move {
        let current = users::load(state, id).await?;
        let mut user = current.user.clone();
        let (extra, value) = change(&mut user)?;
        let mut writes = vec![profile_update(&current, &user)];
        writes.extend(extra);
        match state.table.transact(writes).await {
            Ok(()) => Ok(Attempt::Done((user, value))),
            Err(StoreError::ConditionFailed {
                label: users::PROFILE_CHANGED,
            }) => Ok(Attempt::Retry),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// A new pending seed, ready for an authenticator app.
pub struct Setup {
    pub seed_base32: String,
    pub otpauth_url: String,
    /// A PNG QR code of the URL, as a `data:` URL.
    pub qrcode: String,
}

/// `POST /users/{user}/2fa/totp/setup`: a pending seed and its QR code. With `fresh`, a new
/// seed even when a pending one could still be enabled.
pub async fn setup(
    state: &AppState,
    id: &ObjectId,
    issuer: Option<String>,
    label: Option<String>,
    fresh: bool,
) -> DomainResult<Setup> {
    let key = state.config.secret_key.as_ref();
    let now = Utc::now();
    let (user, seed) = change_profile(state, id, |user| {
        if totp_enabled(user) {
            return Err(DomainError::TotpEnabled(
                "TOTP 2FA is already enabled for this user",
            ));
        }
        // The spec's `fresh`: keep offering the pending seed unless a new one is asked for.
        let reusable = if !fresh && pending_is_fresh(&user.totp, now) {
            user.totp
                .pending
                .as_deref()
                .map(|p| unseal(p, id, key))
                .transpose()?
        } else {
            None
        };
        let seed = match reusable {
            Some(existing) => existing,
            None => {
                let mut bytes = vec![0u8; 20];
                rand::thread_rng().fill_bytes(&mut bytes);
                user.totp.pending = Some(seal(&bytes, id, key)?);
                user.totp.pending_created = Some(now);
                bytes
            }
        };
        Ok((Vec::new(), seed))
    })
    .await?;

    let seed_base32 = Secret::from(seed).to_base32();
    let issuer = issuer.unwrap_or_else(|| state.config.domain.clone());
    let label = label.unwrap_or_else(|| user.username.clone());
    let url = otpauth_url(&seed_base32, &issuer, &label);
    let qrcode = qr_data_url(&url)?;
    Ok(Setup {
        seed_base32,
        otpauth_url: url,
        qrcode,
    })
}

/// The key and TTL that mark `code` as used at `step`.
fn used_code(user: &ObjectId, step: u64, code: &str) -> Item {
    // Valid until the code leaves the skew window, plus a step of margin.
    let expires = ((step + SKEW + 2) * STEP) as i64;
    Item::new(keys::totp_used(user, step, code), json!({ "step": step })).with_expiry(expires)
}

/// `POST /users/{user}/2fa/totp/enable`: the pending seed becomes active when `token` verifies.
///
/// The first second factor ends every token of the user, except `keep` (the caller's own
/// token, which WildDuck re-signs).
pub async fn enable(
    state: &AppState,
    id: &ObjectId,
    token: &str,
    session: &Session,
    keep: Option<&Grant>,
) -> DomainResult<()> {
    let key = state.config.secret_key.as_ref();
    let now = Utc::now();
    let result = change_profile(state, id, |user| {
        if totp_enabled(user) {
            return Err(DomainError::TotpEnabled(
                "TOTP 2FA is already enabled for this user",
            ));
        }
        if !pending_is_fresh(&user.totp, now) {
            return Err(DomainError::TotpDisabled(
                "TOTP 2FA is not initialized for this user",
            ));
        }
        let pending = user.totp.pending.clone().unwrap_or_default();
        let seed = unseal(&pending, id, key)?;
        let Some(step) = verify(&seed, token, now.timestamp() as u64)? else {
            return Err(DomainError::TotpTokenInvalid);
        };
        let first_method = user.enabled2fa.is_empty();
        if first_method {
            user.auth_version += 1;
        }
        let ended_tokens = first_method.then_some(user.auth_version);
        user.enabled2fa.push(METHOD.into());
        user.totp = TotpSeeds {
            seed: Some(pending),
            pending: None,
            pending_created: None,
        };
        let writes = vec![
            Write::put_new(used_code(id, step, token), CODE_USED),
            AuthlogEntry::new("enable 2fa totp", Some("success"), session, &state.config).write(id),
        ];
        Ok((writes, ended_tokens))
    })
    .await;
    let ended_tokens = match result {
        Ok((_, ended_tokens)) => ended_tokens,
        Err(e) => {
            if matches!(e, DomainError::TotpTokenInvalid) {
                let entry =
                    AuthlogEntry::new("enable 2fa totp", Some("fail"), session, &state.config);
                state.table.transact(vec![entry.write(id)]).await?;
            }
            return Err(e);
        }
    };
    if let Some(auth_version) = ended_tokens {
        // As a password change: sessions opened without the second factor end.
        if let Some(grant) = keep.filter(|grant| grant.user == *id) {
            tokens::resign(state, grant, auth_version).await?;
        }
        let event = json!({"command": "LOGOUT", "reason": "Authentication required"});
        journal::append(state.table.as_ref(), &state.config, id, event).await?;
    }
    tracing::info!(user = %id, "TOTP enabled");
    super::webhooks::publish(state, super::webhooks::Event::of("mfa.totp.enabled", id)).await;
    Ok(())
}

/// `POST /users/{user}/2fa/totp/check`: verifies a code of enabled TOTP, once.
///
/// With the `totpNonce` of a login (`POST /authenticate` with `token: true`), the nonce is
/// used up first (403 `InvalidTotpNonce` when it is not valid) and a wrong code gives it back;
/// when the login asked for a token under strict 2FA, the answer is that token. Without a
/// nonce, only the code is checked (WildDuck's clients from before strict 2FA).
pub async fn check(
    state: &AppState,
    id: &ObjectId,
    code: &str,
    nonce: Option<&str>,
    session: &Session,
) -> DomainResult<Option<String>> {
    let table = state.table.as_ref();
    let config = &state.config;
    let attempt =
        match ratelimit::begin(table, &config.auth_limit, &Subject::Totp(*id), unix_now()).await? {
            Gate::Locked { retry_after } => return Err(ratelimit::rate_limited(retry_after)),
            Gate::Open(attempt) => attempt,
        };
    let taken = match nonce {
        Some(nonce) => match tokens::take_nonce(state, id, nonce).await? {
            Some(taken) => Some(taken),
            None => return Err(DomainError::NonceInvalid),
        },
        None => None,
    };
    let checked = check_code(state, id, code, session, &attempt).await;
    match (checked, nonce, taken) {
        (Ok(auth_version), _, Some(taken)) if taken.token_requested => {
            Ok(Some(tokens::issue(state, id, auth_version).await?))
        }
        (Ok(_), _, _) => Ok(None),
        (Err(e), Some(nonce), Some(taken))
            if matches!(
                e,
                DomainError::TotpRejected | DomainError::RateLimited { .. }
            ) =>
        {
            tokens::restore_nonce(state, id, nonce, taken).await?;
            Err(e)
        }
        (Err(e), _, _) => Err(e),
    }
}

/// Verifies `code` once, logging the outcome; answers the user's `authVersion`.
async fn check_code(
    state: &AppState,
    id: &ObjectId,
    code: &str,
    session: &Session,
    attempt: &ratelimit::Attempt,
) -> DomainResult<u64> {
    let config: &Config = &state.config;
    let table = state.table.as_ref();
    let stored: StoredUser = users::load(state, id).await?;
    let user = &stored.user;
    let seed = match (&user.totp.seed, totp_enabled(user)) {
        (Some(seed), true) => unseal(seed, id, config.secret_key.as_ref())?,
        _ => {
            return Err(DomainError::TotpDisabled(
                "2FA TOTP is not enabled for this user",
            ));
        }
    };
    let log = |result: &str| AuthlogEntry::new("check 2fa totp", Some(result), session, config);
    let lock_log = || totp_lock_entry(session, config, attempt).write(id);

    let Some(step) = verify(&seed, code, unix_now() as u64)? else {
        table.transact(vec![log("fail").write(id)]).await?;
        attempt.failed(table, Some(lock_log())).await?;
        return Err(DomainError::TotpRejected);
    };
    let mut writes = vec![
        Write::put_new(used_code(id, step, code), CODE_USED),
        log("success").write(id),
    ];
    writes.extend(attempt.clear_writes());
    match table.transact(writes).await {
        Ok(()) => Ok(user.auth_version),
        Err(StoreError::ConditionFailed { label: CODE_USED }) => {
            table
                .transact(vec![log("fail").with("reason", "replay").write(id)])
                .await?;
            attempt.failed(table, Some(lock_log())).await?;
            Err(DomainError::RateLimited {
                message: "This code has already been used, please try again with a new code",
                retry_after: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn totp_lock_entry(
    session: &Session,
    config: &Config,
    attempt: &ratelimit::Attempt,
) -> AuthlogEntry {
    AuthlogEntry::new("check 2fa totp", Some("locked"), session, config)
        .with("failures", attempt.failures())
        .with(
            "lockedUntil",
            DateTime::from_timestamp(attempt.lock_until(), 0).map(|t| json!(t)),
        )
}

/// `DELETE /users/{user}/2fa/totp`: turns TOTP off; other methods stay.
pub async fn disable(state: &AppState, id: &ObjectId, session: &Session) -> DomainResult<()> {
    change_profile(state, id, |user| {
        if !totp_enabled(user) {
            return Err(DomainError::TotpDisabled(
                "Could not update user, check if 2FA TOTP is not already disabled",
            ));
        }
        user.enabled2fa.retain(|m| m != METHOD);
        user.totp = TotpSeeds::default();
        let entry = AuthlogEntry::new("disable 2fa totp", None, session, &state.config);
        Ok((vec![entry.write(id)], ()))
    })
    .await?;
    tracing::info!(user = %id, "TOTP disabled");
    super::webhooks::publish(state, super::webhooks::Event::of("mfa.totp.disabled", id)).await;
    Ok(())
}

/// `DELETE /users/{user}/2fa`: turns every 2FA method off.
pub async fn disable_all(state: &AppState, id: &ObjectId, session: &Session) -> DomainResult<()> {
    change_profile(state, id, |user| {
        user.enabled2fa.clear();
        user.totp = TotpSeeds::default();
        let entry = AuthlogEntry::new("disable 2fa", None, session, &state.config);
        Ok((vec![entry.write(id)], ()))
    })
    .await?;
    tracing::info!(user = %id, "2FA disabled");
    super::webhooks::publish(state, super::webhooks::Event::of("mfa.disabled", id)).await;
    Ok(())
}

/// Clears every 2FA method on `user` (password reset).
pub fn reset(user: &mut User) {
    user.enabled2fa.clear();
    user.totp = TotpSeeds::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors_verify() {
        // RFC 6238 appendix B, SHA-1, truncated to 6 digits.
        let seed = b"12345678901234567890";
        assert_eq!(code_at(seed, 59).unwrap(), "287082");
        assert_eq!(code_at(seed, 1111111109).unwrap(), "081804");
        assert_eq!(code_at(seed, 1234567890).unwrap(), "005924");
        assert_eq!(
            verify(seed, "081804", 1111111109).unwrap(),
            Some(1111111109 / 30)
        );
        // One step either way, not two.
        assert_eq!(
            verify(seed, "081804", 1111111109 + 30).unwrap(),
            Some(1111111109 / 30)
        );
        assert_eq!(
            verify(seed, "081804", 1111111109 - 30).unwrap(),
            Some(1111111109 / 30)
        );
        assert_eq!(verify(seed, "081804", 1111111109 + 60).unwrap(), None);
        assert_eq!(verify(seed, "08180", 1111111109).unwrap(), None);
        assert_eq!(verify(seed, "08180x", 1111111109).unwrap(), None);
    }

    #[test]
    fn seeds_seal_per_user_and_need_the_key() {
        let key = SecretKey([7; 32]);
        let user = ObjectId::new();
        let other = ObjectId::new();
        let seed = b"abcdefghijklmnopqrst";
        let sealed = seal(seed, &user, Some(&key)).unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        let base32 = Secret::from(seed.to_vec()).to_base32();
        assert!(!sealed.contains(&base32));
        assert_eq!(unseal(&sealed, &user, Some(&key)).unwrap(), seed);
        assert!(unseal(&sealed, &other, Some(&key)).is_err());
        assert!(unseal(&sealed, &user, Some(&SecretKey([8; 32]))).is_err());
        assert!(unseal(&sealed, &user, None).is_err());
        // Without a key: base32, readable with or without a key later.
        let plain = seal(seed, &user, None).unwrap();
        assert_eq!(plain, format!("plain:{base32}"));
        assert_eq!(unseal(&plain, &user, Some(&key)).unwrap(), seed);
    }

    #[test]
    fn otpauth_urls_encode_label_and_issuer() {
        let url = otpauth_url("JBSWY3DPEHPK3PXP", "My Mail", "jõe@x.org");
        assert_eq!(
            url,
            "otpauth://totp/My%20Mail:j%C3%B5e%40x.org?secret=JBSWY3DPEHPK3PXP&issuer=My%20Mail&algorithm=SHA1&digits=6&period=30"
        );
        assert!(
            qr_data_url(&url)
                .unwrap()
                .starts_with("data:image/png;base64,iVBOR")
        );
    }
}
