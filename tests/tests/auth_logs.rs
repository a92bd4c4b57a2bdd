//! Nothing secret in the logs: every auth endpoint is driven through, on both backends, with
//! all log output captured (our crates at TRACE, everything else at DEBUG, JSON as in Lambda
//! and text as locally), and the capture must contain no password, application-specific
//! password, TOTP seed or TOTP code. A test binary of its own, because the subscriber is
//! process-wide (the blocking pool and the runtime's workers log from other threads).

use std::io::Write;
use std::sync::{Arc, Mutex};

use eider_shared::config::SecretKey;
use eider_tests::app::{TestApp, test_config};
use http::StatusCode;
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn install() -> Capture {
    let capture = Capture::default();
    let filter = tracing_subscriber::EnvFilter::new(
        "debug,eider_shared=trace,eider_auth=trace,eider_users=trace,tower_http=trace",
    );
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(capture.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(capture.clone()),
        );
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");
    capture
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut count, mut out) = (0u64, 0, Vec::new());
    for c in text.bytes() {
        bits = (bits << 5) | ALPHABET.iter().position(|&a| a == c).unwrap() as u64;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

fn code(seed: &str, unix: u64) -> String {
    eider_shared::domain::totp::code_at(&base32_decode(seed), unix).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Drives every auth endpoint; returns the secrets that went through.
async fn run_through(app: &TestApp) -> Vec<String> {
    let mut secrets = vec!["Master-Pass-123".to_string(), "New-Pass-456".to_string()];
    let id = app
        .create_user(json!({"username": "logcheck", "password": "Master-Pass-123"}))
        .await;
    let ok = |(status, body): (StatusCode, Value)| {
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    };
    ok(app
        .post(
            "/authenticate",
            json!({"username": "logcheck", "password": "Master-Pass-123", "sess": "s", "ip": "127.0.0.1"}),
        )
        .await);
    // Failures and a wrong password that looks like an ASP.
    app.post(
        "/authenticate",
        json!({"username": "logcheck", "password": "Wrong-Pass-789"}),
    )
    .await;
    app.post(
        "/authenticate",
        json!({"username": "logcheck", "password": "qwertyuiopasdfgh", "scope": "imap"}),
    )
    .await;
    secrets.extend(["Wrong-Pass-789".into(), "qwertyuiopasdfgh".into()]);

    let asp = ok(app
        .post(
            &format!("/users/{id}/asps"),
            json!({"description": "phone", "generateMobileconfig": true}),
        )
        .await);
    let asp_password = asp["password"].as_str().unwrap().to_string();
    ok(app
        .post(
            "/authenticate",
            json!({"username": "logcheck", "password": asp_password, "scope": "imap"}),
        )
        .await);
    secrets.push(asp_password);
    secrets.push(asp["mobileconfig"].as_str().unwrap()[..40].to_string());

    let setup = ok(app
        .post(
            &format!("/users/{id}/2fa/totp/setup"),
            json!({"issuer": "x"}),
        )
        .await);
    let seed = setup["seed"].as_str().unwrap().to_string();
    let t = now();
    let enable_code = code(&seed, t);
    ok(app
        .post(
            &format!("/users/{id}/2fa/totp/enable"),
            json!({"token": enable_code}),
        )
        .await);
    let check_code = code(&seed, t + 30);
    ok(app
        .post(
            &format!("/users/{id}/2fa/totp/check"),
            json!({"token": check_code}),
        )
        .await);
    // A replay and a wrong code.
    app.post(
        &format!("/users/{id}/2fa/totp/check"),
        json!({"token": check_code}),
    )
    .await;
    app.post(
        &format!("/users/{id}/2fa/totp/check"),
        json!({"token": "000000"}),
    )
    .await;
    secrets.extend([seed.clone(), enable_code, check_code]);
    secrets.push(setup["qrcode"].as_str().unwrap()[30..70].to_string());

    let reset = ok(app
        .post(&format!("/users/{id}/password/reset"), json!({}))
        .await);
    let temporary = reset["password"].as_str().unwrap().to_string();
    ok(app
        .post(
            "/authenticate",
            json!({"username": "logcheck", "password": temporary}),
        )
        .await);
    secrets.push(temporary);
    ok(app
        .put(&format!("/users/{id}"), json!({"password": "New-Pass-456"}))
        .await);
    ok(app.get(&format!("/users/{id}/authlog")).await);
    ok(app.get(&format!("/users/{id}/asps")).await);
    ok(app.delete(&format!("/users/{id}/2fa")).await);
    secrets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_every_auth_endpoint_hold_no_secret() {
    let capture = install();
    let mut config = test_config();
    config.secret_key = Some(SecretKey([42; 32]));
    let mut secrets = Vec::new();
    for backend in [
        eider_tests::backends::embedded().await,
        eider_tests::backends::moto().await,
    ] {
        let app = TestApp::new(backend, config.clone());
        secrets.extend(run_through(&app).await);
    }
    let logs = capture.text();
    // The capture really saw the requests and the domain's own events.
    for expected in [
        "/authenticate",
        "authenticated",
        "ASP created",
        "TOTP enabled",
    ] {
        assert!(logs.contains(expected), "{expected:?} not logged:\n{logs}");
    }
    for secret in &secrets {
        assert!(
            !contains_secret(&logs, secret),
            "secret {secret:?} found in the logs"
        );
    }
    // No password hash or sealed seed either.
    assert!(!logs.contains("$argon2id$"));
    assert!(!logs.contains("aes256gcm:"));
}

/// Whether `secret` is in `logs`. A six-digit TOTP code counts only as a token of its own:
/// inside a longer number or an id (a timestamp, a latency, a hex id) it is a coincidence,
/// one in a few thousand runs.
fn contains_secret(logs: &str, secret: &str) -> bool {
    if !secret.bytes().all(|b| b.is_ascii_digit()) {
        return logs.contains(secret);
    }
    logs.match_indices(secret).any(|(at, _)| {
        let before = logs[..at].chars().next_back();
        let after = logs[at + secret.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}
