//! User access tokens (`POST /authenticate` with `token: true`), as WildDuck issues them: 40
//! hex characters (20 random bytes) that act for one user, with WildDuck's `user` role.
//!
//! A token is stored only as its SHA-256 (`TOKEN#<sha256 hex>`), with the user, when it was
//! issued and the user's `authVersion` then. It expires after `EIDER_TOKEN_TTL_DAYS` unused
//! (each use renews that, at most once an hour to spare writes) and after
//! `EIDER_TOKEN_LIFETIME_DAYS` whatever happens. A token whose user is gone, or whose user's
//! `authVersion` moved past the token's (a password change or reset, suspension, the first
//! second factor), no longer works: one profile read ends every token of a user at once.
//!
//! Also the nonces of the strict 2FA flow (`totpNonce`): 40 hex characters, valid 10 minutes,
//! used once.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::users::{self, USER_GONE};
use super::{AppState, DomainError, DomainResult, unix_now};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Key, StoreError, Update, Write};

/// Label of the condition on a token or nonce item: it is gone (expired, revoked, used).
const TOKEN_GONE: &str = "token gone";
/// A used token's expiry is moved on at most this often.
const RENEW_AFTER_SECONDS: i64 = 3600;
/// How long a 2FA nonce is valid (WildDuck's 600 s).
const NONCE_SECONDS: i64 = 600;

/// 40 lowercase hex characters from 20 random bytes.
fn random_hex() -> String {
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `text` has the shape of a token or nonce (40 hex characters).
pub fn is_token_shaped(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn token_key(hash: &str) -> Key {
    Key::new(format!("TOKEN#{hash}"), "TOKEN")
}

/// What a stored token grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    user: ObjectId,
    created: DateTime<Utc>,
    auth_version: u64,
}

/// A token that checked out: whose it is, and its hash (to revoke or re-sign it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: ObjectId,
    pub token_hash: String,
}

/// Issues a token for `user` at its current `authVersion`; the token itself is answered once
/// and never stored.
pub async fn issue(state: &AppState, user: &ObjectId, auth_version: u64) -> DomainResult<String> {
    let token = random_hex();
    let now = Utc::now();
    let stored = StoredToken {
        user: *user,
        created: now,
        auth_version,
    };
    let item = Item::new(
        token_key(&digest(&token)),
        serde_json::to_value(&stored).unwrap_or_default(),
    )
    .with_expiry(now.timestamp() + state.config.tokens.ttl.as_secs() as i64);
    state
        .table
        .transact(vec![Write::put_new(item, TOKEN_GONE)])
        .await?;
    Ok(token)
}

/// The grant of `token`, or `None` when it is not (or no longer) a valid token: unknown,
/// expired, past its lifetime, of a deleted user, or older than the user's last password
/// change. Renews the token's expiry on use.
pub async fn check(state: &AppState, token: &str) -> DomainResult<Option<Grant>> {
    if !is_token_shaped(token) {
        return Ok(None);
    }
    let hash = digest(&token.to_ascii_lowercase());
    let key = token_key(&hash);
    let Some(item) = state.table.get(&key).await? else {
        return Ok(None);
    };
    let Ok(stored) = item.body_as::<StoredToken>() else {
        return Ok(None);
    };
    let now = unix_now();
    let config = state.config.tokens;
    if now - stored.created.timestamp() >= config.lifetime.as_secs() as i64 {
        state.table.transact(vec![Write::delete(key)]).await?;
        return Ok(None);
    }
    let profile = match users::load(state, &stored.user).await {
        Ok(profile) => profile,
        Err(DomainError::UserNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if profile.user.auth_version > stored.auth_version || profile.user.suspended {
        return Ok(None);
    }
    let ttl = config.ttl.as_secs() as i64;
    let expires = item.expires_at.unwrap_or(now);
    if expires - now < ttl - RENEW_AFTER_SECONDS {
        let renew = Update {
            expires_at: Some(Some(now + ttl)),
            ..Default::default()
        };
        // A token revoked meanwhile stays revoked: the renewal needs the item.
        if let Err(e) = state
            .table
            .update(&key, renew, Some(Condition::Exists.labeled(TOKEN_GONE)))
            .await
        {
            match e {
                StoreError::ConditionFailed { .. } => return Ok(None),
                e => tracing::warn!(error = %e, "token expiry not renewed"),
            }
        }
    }
    Ok(Some(Grant {
        user: stored.user,
        token_hash: hash,
    }))
}

/// Ends one token (`DELETE /authenticate`); nothing when it is gone already.
pub async fn revoke(state: &AppState, token_hash: &str) -> DomainResult<()> {
    state
        .table
        .transact(vec![Write::delete(token_key(token_hash))])
        .await?;
    Ok(())
}

/// Keeps the token a user made a change with valid after the change ended the user's other
/// tokens (a password change, the first second factor): it takes the new `authVersion`, as
/// WildDuck re-signs the calling token.
pub async fn resign(state: &AppState, grant: &Grant, auth_version: u64) -> DomainResult<()> {
    let key = token_key(&grant.token_hash);
    let Some(item) = state.table.get(&key).await? else {
        return Ok(());
    };
    let Ok(mut stored) = item.body_as::<StoredToken>() else {
        return Ok(());
    };
    if stored.user != grant.user {
        return Ok(());
    }
    stored.auth_version = auth_version;
    let update = Update::body(serde_json::to_value(&stored).unwrap_or_default());
    match state
        .table
        .update(&key, update, Some(Condition::Exists.labeled(TOKEN_GONE)))
        .await
    {
        Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// 2FA nonces

fn nonce_key(user: &ObjectId, hash: &str) -> Key {
    Key::new(format!("NONCE#{user}"), hash.to_string())
}

/// A nonce for checking `user`'s second factor within 10 minutes; `token_requested` says
/// whether the check then answers a token (the strict 2FA flow).
pub async fn issue_nonce(
    state: &AppState,
    user: &ObjectId,
    token_requested: bool,
) -> DomainResult<String> {
    let nonce = random_hex();
    let item = Item::new(
        nonce_key(user, &digest(&nonce)),
        json!({ "tokenRequested": token_requested }),
    )
    .with_expiry(unix_now() + NONCE_SECONDS);
    state
        .table
        .transact(vec![Write::put_new(item, TOKEN_GONE)])
        .await?;
    Ok(nonce)
}

/// A nonce that was used up: what it was issued for, and until when it was valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenNonce {
    pub token_requested: bool,
    expires_at: i64,
}

/// Uses up a nonce of `user`, or `None` when it is unknown, used, expired or another user's.
pub async fn take_nonce(
    state: &AppState,
    user: &ObjectId,
    nonce: &str,
) -> DomainResult<Option<TakenNonce>> {
    if !is_token_shaped(nonce) {
        return Ok(None);
    }
    let key = nonce_key(user, &digest(&nonce.to_ascii_lowercase()));
    let Some(item) = state.table.get(&key).await? else {
        return Ok(None);
    };
    let taken = TakenNonce {
        token_requested: item.body["tokenRequested"] == true,
        expires_at: item
            .expires_at
            .unwrap_or_else(|| unix_now() + NONCE_SECONDS),
    };
    if taken.expires_at <= unix_now() {
        return Ok(None);
    }
    let used = Write::delete(key).when(Condition::Exists, TOKEN_GONE);
    let profile = Write::check(users::profile_key(user), Condition::Exists, USER_GONE);
    match state.table.transact(vec![used, profile]).await {
        Ok(()) => Ok(Some(taken)),
        Err(StoreError::ConditionFailed { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Puts a used nonce back with the time it had left (a wrong code keeps the nonce usable, as
/// in WildDuck).
pub async fn restore_nonce(
    state: &AppState,
    user: &ObjectId,
    nonce: &str,
    taken: TakenNonce,
) -> DomainResult<()> {
    let item = Item::new(
        nonce_key(user, &digest(&nonce.to_ascii_lowercase())),
        json!({ "tokenRequested": taken.token_requested }),
    )
    .with_expiry(taken.expires_at);
    state.table.transact(vec![Write::put(item)]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_40_hex_characters_and_stored_as_their_digest() {
        let token = random_hex();
        assert!(is_token_shaped(&token));
        assert_ne!(token, random_hex());
        assert_eq!(digest(&token).len(), 64);
        assert!(!token_key(&digest(&token)).pk.contains(&token));
        assert!(!is_token_shaped("not-a-token"));
        assert!(!is_token_shaped(&"g".repeat(40)));
    }
}
