//! TOTP codes computed independently of the server (RFC 6238 over the `hmac` crate), and
//! enabling TOTP for a user through the API.

use std::time::Duration;

use hmac::{Hmac, Mac};
use http::StatusCode;
use serde_json::json;

use crate::app::TestApp;

/// RFC 4648 base32 (no padding), decoded here rather than by the server's library.
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base32") as u64;
        bits = (bits << 5) | v;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// RFC 6238 with HMAC-SHA-1, 6 digits, 30-second steps.
pub fn totp_code(seed_base32: &str, unix: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&base32_decode(seed_base32)).unwrap();
    mac.update(&(unix / 30).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let value = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", value % 1_000_000)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits, if needed, until the current 30 s step has at least `margin` seconds left, so a code
/// computed now is still "now" when the server checks it.
pub async fn wait_for_step_margin(margin: u64) {
    let left = 30 - now() % 30;
    if left < margin {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

/// Sets up and enables TOTP; returns the seed.
pub async fn enable_totp(app: &TestApp, user: &str) -> String {
    let (status, setup) = app
        .post(
            &format!("/users/{user}/2fa/totp/setup"),
            json!({"issuer": "Eider"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let seed = setup["seed"].as_str().unwrap().to_string();
    wait_for_step_margin(3).await;
    let (status, body) = app
        .post(
            &format!("/users/{user}/2fa/totp/enable"),
            json!({"token": totp_code(&seed, now())}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    seed
}
