//! Today's WildDuck clients (its web client, and code written for WildDuck's current API):
//! user access tokens and the `user` role, 2FA nonces, the routes WildDuck added since 2018,
//! its wire formats (24-character timestamps, cursors of at most 100 characters, `raw` as text
//! or a Buffer, message details), imported password hashes and mailbox path rules. Every test
//! runs on the embedded store and on DynamoDB + S3 served by moto.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use eider_shared::config::Config;
use eider_shared::domain::keys;
use eider_shared::id::ObjectId;
use eider_tests::app::{TestApp, test_config};
use eider_tests::totp::{now, totp_code, wait_for_step_margin};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    user_tokens_act_for_their_own_user_only_without_a_root_token,
    user_tokens_act_for_their_own_user_only_with_a_root_token,
    password_changes_resets_and_deletion_end_tokens,
    relaxed_2fa_gives_a_token_and_a_totp_nonce,
    strict_2fa_gives_the_token_after_the_second_factor,
    timestamps_are_24_characters_everywhere,
    cursors_stay_within_100_characters_on_deep_pages,
    raw_is_taken_as_text_buffer_base64_and_rfc822,
    message_details_leave_out_empty_rows_and_carry_the_envelope,
    bulk_update_takes_the_message_in_the_body,
    authlog_events_resolve_and_preauth,
    archive_restore_by_date_range_runs_as_a_task,
    imported_hashes_log_in_and_become_argon2id,
    mailbox_paths_follow_wildducks_rules,
);

const ROOT: &str = "root-token-for-tests";

fn with_config(app: TestApp, change: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    change(&mut config);
    TestApp::new(app.backend, config)
}

/// A request with the root token, when one is configured.
fn root_headers(root: Option<&str>) -> Vec<(&'static str, String)> {
    root.map(|t| vec![("x-access-token", t.to_string())])
        .unwrap_or_default()
}

async fn as_root(
    app: &TestApp,
    root: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let headers = root_headers(root);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.call_with(method, uri, body, &headers).await
}

async fn as_token(
    app: &TestApp,
    token: &str,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call_with(method, uri, body, &[("x-access-token", token)])
        .await
}

async fn new_user(app: &TestApp, root: Option<&str>, name: &str, password: &str) -> String {
    let (status, body) = as_root(
        app,
        root,
        "POST",
        "/users",
        Some(json!({"username": name, "password": password, "address": format!("{name}@example.com"), "tags": ["vip"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Logs in with `token: true`; answers the whole response.
async fn token_login(app: &TestApp, root: Option<&str>, name: &str, password: &str) -> Value {
    let (status, body) = as_root(
        app,
        root,
        "POST",
        "/authenticate",
        Some(json!({"username": name, "password": password, "token": true, "appId": "https://webmail.example"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn token_of(login: &Value) -> String {
    let token = login["token"].as_str().unwrap_or_else(|| panic!("{login}"));
    assert_eq!(token.len(), 40, "{login}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{login}");
    token.to_string()
}

fn assert_code(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    // restify's clients show `message`.
    assert_eq!(body["message"], body["error"], "{body}");
}

// ---------------------------------------------------------------------------------------------
// Tokens and the user role

async fn user_tokens_act_for_their_own_user_only_without_a_root_token(app: TestApp) {
    user_tokens_act_for_their_own_user_only(app, None).await;
}

async fn user_tokens_act_for_their_own_user_only_with_a_root_token(app: TestApp) {
    let app = with_config(app, |c| c.access_token = Some(ROOT.into()));
    user_tokens_act_for_their_own_user_only(app, Some(ROOT)).await;
}

async fn user_tokens_act_for_their_own_user_only(app: TestApp, root: Option<&str>) {
    let alice = new_user(&app, root, "alice", "alice-pass").await;
    let bob = new_user(&app, root, "bob", "bob-pass").await;

    // Only scope master may ask for a token.
    let (status, body) = as_root(
        &app,
        root,
        "POST",
        "/authenticate",
        Some(
            json!({"username": "alice", "password": "alice-pass", "scope": "imap", "token": true}),
        ),
    )
    .await;
    assert_code(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "InputValidationError",
    );

    let login = token_login(&app, root, "alice", "alice-pass").await;
    assert_eq!(login["id"], alice.as_str());
    assert_eq!(login["require2fa"], false);
    assert_eq!(login["require2faEnabled"], false);
    let token = token_of(&login);
    // Without `token`, none.
    let (_, plain) = as_root(
        &app,
        root,
        "POST",
        "/authenticate",
        Some(json!({"username": "alice", "password": "alice-pass"})),
    )
    .await;
    assert!(plain.get("token").is_none(), "{plain}");

    // Its own user, also as `me`, without the fields only admins see.
    for path in [format!("/users/{alice}"), "/users/me".to_string()] {
        let (status, profile) = as_token(&app, &token, "GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {profile}");
        assert_eq!(profile["id"], alice.as_str());
        for hidden in ["tags", "disabledScopes", "internalData"] {
            assert!(profile.get(hidden).is_none(), "{hidden}: {profile}");
        }
    }
    let (status, mailboxes) = as_token(
        &app,
        &token,
        "GET",
        "/users/me/mailboxes?counters=true",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{mailboxes}");
    assert_eq!(mailboxes["results"][0]["path"], "INBOX");

    // The token in every place WildDuck reads it from.
    for (name, value) in [
        ("authorization", format!("Bearer {token}")),
        ("authorization", format!("bEaReR {token}")),
        ("x-access-token", token.to_uppercase()),
    ] {
        let (status, body) = app
            .call_with("GET", "/users/me", None, &[(name, value.as_str())])
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {value}: {body}");
    }
    let (status, body) = app
        .get(&format!("/users/me/addresses?accessToken={token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["address"], "alice@example.com");
    assert!(body["results"][0].get("internalData").is_none(), "{body}");
    let (status, body) = as_token(&app, &token, "GET", "/authenticated", None).await;
    assert_eq!((status, &body["success"]), (StatusCode::OK, &json!(true)));

    // The listing holds only its own user.
    let (status, list) = as_token(&app, &token, "GET", "/users", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["results"][0]["id"], alice.as_str());
    let (_, list) = as_token(&app, &token, "GET", "/users?query=bob", None).await;
    assert_eq!(list["total"], 0, "{list}");

    // Nothing of another user, nothing of the admin's.
    for (method, path) in [
        ("GET", format!("/users/{bob}")),
        ("GET", format!("/users/{bob}/mailboxes")),
        ("PUT", format!("/users/{bob}")),
        ("DELETE", format!("/users/{alice}")),
        ("DELETE", "/users/me".to_string()),
        ("POST", "/users/me/password/reset".to_string()),
        ("POST", "/users".to_string()),
        ("GET", "/addresses".to_string()),
        ("GET", format!("/users/{bob}/addresses")),
        ("GET", "/users/resolve/bob".to_string()),
        ("POST", "/authenticate".to_string()),
        ("POST", "/preauth".to_string()),
    ] {
        let body = (method != "GET" && method != "DELETE").then(|| json!({"name": "x"}));
        let (status, answer) = as_token(&app, &token, method, &path, body).await;
        assert_code(status, &answer, StatusCode::FORBIDDEN, "MissingPrivileges");
    }
    let (_, bob_profile) = as_root(&app, root, "GET", &format!("/users/{bob}"), None).await;
    assert_eq!(bob_profile["name"], Value::Null, "bob unchanged");

    // What the user role may change of itself; the rest is dropped without a word.
    let (status, body) = as_token(
        &app,
        &token,
        "PUT",
        "/users/me",
        Some(json!({"name": "Alice A.", "tags": ["hacked"], "quota": 1, "disabled": true, "language": "et"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, profile) = as_root(&app, root, "GET", &format!("/users/{alice}"), None).await;
    assert_eq!(profile["name"], "Alice A.");
    assert_eq!(profile["language"], "et");
    assert_eq!(profile["tags"], json!(["vip"]));
    assert_eq!(profile["disabled"], false);
    assert_ne!(profile["limits"]["quota"]["allowed"], 1);

    // Garbage and ended tokens.
    for bad in ["nope", &"0".repeat(40), &token[..39]] {
        let (status, body) = as_token(&app, bad, "GET", "/users/me", None).await;
        assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidToken");
    }
    let (status, body) = as_token(&app, &token, "DELETE", "/authenticate", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = as_token(&app, &token, "GET", "/authenticated", None).await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidToken");

    // Without any token: 401 where a root token is configured, root otherwise.
    let (status, body) = app.get(&format!("/users/{alice}")).await;
    match root {
        Some(_) => assert_code(status, &body, StatusCode::UNAUTHORIZED, "InvalidToken"),
        None => assert_eq!(status, StatusCode::OK, "{body}"),
    }
    // The root token ends nothing with DELETE /authenticate.
    let (status, _) = as_root(&app, root, "DELETE", "/authenticate", None).await;
    assert_eq!(status, StatusCode::OK);

    // Tokens are stored as digests only.
    let item = app
        .table()
        .get(&eider_shared::store::Key::new(
            format!("TOKEN#{token}"),
            "TOKEN",
        ))
        .await
        .unwrap();
    assert!(item.is_none());
}

async fn password_changes_resets_and_deletion_end_tokens(app: TestApp) {
    let root = None;
    let alice = new_user(&app, root, "carol", "old-pass").await;
    let first = token_of(&token_login(&app, root, "carol", "old-pass").await);
    let second = token_of(&token_login(&app, root, "carol", "old-pass").await);
    assert_ne!(first, second);

    // A password change with one token keeps that token and ends the other.
    let (status, body) = as_token(
        &app,
        &first,
        "PUT",
        "/users/me",
        Some(json!({"existingPassword": "old-pass", "password": "new-pass"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = as_token(&app, &first, "GET", "/users/me", None).await;
    assert_eq!(status, StatusCode::OK, "the calling token lives on");
    let (status, body) = as_token(&app, &second, "GET", "/users/me", None).await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidToken");
    // The password change is in the log with its protocol.
    let (_, log) = app
        .get(&format!("/users/{alice}/authlog?action=password%20change"))
        .await;
    assert_eq!(log["results"][0]["protocol"], "API", "{log}");

    // A reset by the admin ends every token.
    let third = token_of(&token_login(&app, root, "carol", "new-pass").await);
    let (status, _) = app
        .post(&format!("/users/{alice}/password/reset"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    for token in [&first, &third] {
        let (status, body) = as_token(&app, token, "GET", "/users/me", None).await;
        assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidToken");
    }

    // So does deleting the user.
    let dave = new_user(&app, root, "dave", "dave-pass").await;
    let token = token_of(&token_login(&app, root, "dave", "dave-pass").await);
    let (status, _) = app.delete(&format!("/users/{dave}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = as_token(&app, &token, "GET", "/authenticated", None).await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidToken");

    // Suspension too.
    let erin = new_user(&app, root, "erin", "erin-pass").await;
    let token = token_of(&token_login(&app, root, "erin", "erin-pass").await);
    let (status, _) = app
        .put(&format!("/users/{erin}"), json!({"suspended": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = as_token(&app, &token, "GET", "/users/me", None).await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidToken");
}

/// Sets up TOTP with `token` (the user's own token); answers the seed.
async fn enable_totp_with(app: &TestApp, token: &str) -> String {
    let (status, setup) = as_token(
        app,
        token,
        "POST",
        "/users/me/2fa/totp/setup",
        Some(json!({"issuer": "Eider"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let seed = setup["seed"].as_str().unwrap().to_string();
    // The test then has this step's neighbours (one step of skew each way) to check with:
    // this step's code is used up by enabling.
    wait_for_step_margin(15).await;
    let (status, body) = as_token(
        app,
        token,
        "POST",
        "/users/me/2fa/totp/enable",
        Some(json!({"token": totp_code(&seed, now())})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    seed
}

/// A code of `seed` that is not the current one (nor a neighbour).
fn wrong_code(seed: &str) -> String {
    let near: BTreeSet<String> = [now() - 30, now(), now() + 30]
        .into_iter()
        .map(|t| totp_code(seed, t))
        .collect();
    (0..)
        .map(|i| format!("{:06}", (i * 7919) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

async fn relaxed_2fa_gives_a_token_and_a_totp_nonce(app: TestApp) {
    let user = new_user(&app, None, "frank", "frank-pass").await;
    let first = token_of(&token_login(&app, None, "frank", "frank-pass").await);
    let seed = enable_totp_with(&app, &first).await;
    // Enabling the first second factor keeps the calling token (WildDuck re-signs it).
    let (status, _) = as_token(&app, &first, "GET", "/users/me", None).await;
    assert_eq!(status, StatusCode::OK);

    let login = token_login(&app, None, "frank", "frank-pass").await;
    assert_eq!(login["require2fa"], json!(["totp"]));
    let token = token_of(&login);
    let nonce = login["totpNonce"].as_str().unwrap().to_string();
    assert_eq!(nonce.len(), 40);
    assert!(login.get("twoFactorNonce").is_none(), "{login}");
    let check = format!("/users/{user}/2fa/totp/check");

    // A wrong code keeps the nonce usable; the right one uses it up.
    let (status, body) = as_token(
        &app,
        &token,
        "POST",
        &check,
        Some(json!({"token": wrong_code(&seed), "totpNonce": nonce})),
    )
    .await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidToken");
    let code = totp_code(&seed, now() - 30);
    let (status, body) = as_token(
        &app,
        &token,
        "POST",
        &check,
        Some(json!({"token": code, "totpNonce": nonce})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("token").is_none(), "{body}");
    let (status, body) = as_token(
        &app,
        &token,
        "POST",
        &check,
        Some(json!({"token": code, "totpNonce": nonce})),
    )
    .await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidTotpNonce");
    // Another user's nonce is no nonce.
    let other = new_user(&app, None, "grace", "grace-pass").await;
    let (status, body) = app
        .post(
            &format!("/users/{other}/2fa/totp/check"),
            json!({"token": code, "totpNonce": login["totpNonce"]}),
        )
        .await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidTotpNonce");

    // Clients from before nonces check the code alone (WildDuck's web client).
    let (status, body) = as_token(
        &app,
        &token,
        "POST",
        &check,
        Some(json!({"token": totp_code(&seed, now() + 30)})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = as_token(
        &app,
        &token,
        "POST",
        &check,
        Some(json!({"token": "123456", "totpNonce": "xyz"})),
    )
    .await;
    assert_code(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "InputValidationError",
    );
}

async fn strict_2fa_gives_the_token_after_the_second_factor(app: TestApp) {
    let app = with_config(app, |c| c.tokens.strict_2fa = true);
    let user = new_user(&app, None, "heidi", "heidi-pass").await;
    // No second factor yet: the token comes at once.
    let first = token_of(&token_login(&app, None, "heidi", "heidi-pass").await);
    let seed = enable_totp_with(&app, &first).await;

    let login = token_login(&app, None, "heidi", "heidi-pass").await;
    assert!(login.get("token").is_none(), "{login}");
    let nonce = login["twoFactorNonce"].as_str().unwrap();
    assert_eq!(login["totpNonce"], nonce);
    let (status, body) = app
        .post(
            &format!("/users/{user}/2fa/totp/check"),
            json!({"token": totp_code(&seed, now() - 30), "totpNonce": nonce}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = token_of(&body);
    let (status, profile) = as_token(&app, &token, "GET", "/users/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["enabled2fa"], json!(["totp"]));
}

// ---------------------------------------------------------------------------------------------
// Wire formats

/// Every string in `value` that looks like a timestamp, with where it was.
fn timestamps(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s)
            if s.len() >= 10
                && s.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                && s.as_bytes()[4] == b'-'
                && s.contains('T') =>
        {
            out.push((path.to_string(), s.clone()))
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                timestamps(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(fields) => {
            for (k, v) in fields {
                timestamps(v, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

async fn timestamps_are_24_characters_everywhere(app: TestApp) {
    let user = new_user(&app, None, "ivan", "ivan-pass").await;
    token_login(&app, None, "ivan", "ivan-pass").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let (status, asp) = app
        .post(
            &format!("/users/{user}/asps"),
            json!({"description": "phone", "scopes": ["imap"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asp}");
    app.put(
        &format!("/users/{user}/autoreply"),
        json!({"status": true, "subject": "Away", "text": "Gone", "start": "2030-01-01T10:00:00Z", "end": "2030-01-02"}),
    )
    .await;
    let raw = "From: a@example.com\r\nTo: ivan@example.com\r\nSubject: dated\r\nDate: Tue, 1 Nov 2011 19:19:08 +0200\r\n\r\nhi\r\n";
    let uid = app
        .upload_ok(&user, &inbox, raw, json!({"unseen": true}))
        .await;
    app.delete(&format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"))
        .await;
    let uid = app.upload_ok(&user, &inbox, raw, json!({})).await;
    let (_, reset) = app
        .post(&format!("/users/{user}/password/reset"), json!({}))
        .await;

    let mut found = Vec::new();
    timestamps(&reset, "reset", &mut found);
    for path in [
        format!("/users/{user}"),
        format!("/users/{user}/addresses"),
        format!("/users/{user}/asps"),
        format!("/users/{user}/autoreply"),
        format!("/users/{user}/authlog"),
        format!("/users/{user}/mailboxes/{inbox}/messages"),
        format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"),
        format!("/users/{user}/archived/messages"),
        format!("/users/{user}/search?query=dated"),
        "/addresses".to_string(),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        timestamps(&body, &path, &mut found);
    }
    let fields: BTreeSet<String> = found
        .iter()
        .map(|(path, _)| path.rsplit('.').next().unwrap().to_string())
        .collect();
    for expected in [
        "created",
        "date",
        "idate",
        "start",
        "end",
        "expires",
        "last",
        "validAfter",
    ] {
        assert!(fields.contains(expected), "{expected} not seen: {fields:?}");
    }
    let shape = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    for (path, value) in &found {
        assert!(shape.is_match(value), "{path} = {value}");
    }
    let (_, message) = app
        .get(&format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"))
        .await;
    assert_eq!(message["date"], "2011-11-01T17:19:08.000Z");
}

/// Walks every page of a listing forwards, then back from the end; checks each cursor's
/// length. Answers the ids in order.
async fn walk(app: &TestApp, path: &str, limit: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut ids = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let url = match &next {
            Some(c) => format!("{path}{sep}limit={limit}&next={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (status, body) = app.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        for cursor in ["nextCursor", "previousCursor"] {
            if let Some(c) = body[cursor].as_str() {
                assert!(c.len() <= 100, "{cursor} of {} characters", c.len());
            }
        }
        let page: Vec<Value> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        ids.extend(page.clone());
        pages.push((page, body["previousCursor"].clone()));
        match body["nextCursor"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => break,
        }
    }
    // Back again with the previous cursors.
    for window in pages.windows(2).rev() {
        let (expected, _) = &window[0];
        let (_, previous) = &window[1];
        let previous = previous.as_str().expect("a previous cursor after page 1");
        let url = format!("{path}{sep}limit={limit}&previous={previous}");
        let (status, body) = app.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        let page: Vec<Value> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        assert_eq!(&page, expected, "{url}");
    }
    ids
}

async fn cursors_stay_within_100_characters_on_deep_pages(app: TestApp) {
    let user = new_user(&app, None, "judy", "judy-pass").await;
    // A long path makes long sort keys.
    let (status, created) = app
        .post(
            &format!("/users/{user}/mailboxes"),
            json!({"path": format!("Projects/{}", "ä".repeat(120))}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let mailbox = created["id"].as_str().unwrap().to_string();
    for i in 0..40 {
        let raw = format!(
            "From: a@example.com\r\nSubject: number {i}\r\nDate: Tue, 1 Nov 2011 19:{:02}:08 +0000\r\n\r\nbody {i}\r\n",
            i % 60
        );
        app.upload_ok(&user, &mailbox, &raw, json!({"flagged": true}))
            .await;
        token_login(&app, None, "judy", "judy-pass").await;
    }
    let listing = format!("/users/{user}/mailboxes/{mailbox}/messages");
    let all = walk(&app, &listing, 3).await;
    assert_eq!(all.len(), 40);
    // After many deletes, still short and complete.
    for uid in (1..=40).step_by(3) {
        app.delete(&format!("/users/{user}/mailboxes/{mailbox}/messages/{uid}"))
            .await;
    }
    let left = walk(&app, &listing, 4).await;
    assert_eq!(left.len(), 40 - 14);
    assert!(left.windows(2).all(|w| w[0].as_u64() > w[1].as_u64()));
    let (_, log) = app.get(&format!("/users/{user}/authlog")).await;
    assert!(log["total"].as_u64().unwrap() >= 40, "{log}");
    assert_eq!(
        walk(&app, &format!("/users/{user}/authlog"), 7).await.len() as u64,
        log["total"].as_u64().unwrap()
    );
    assert_eq!(
        walk(&app, &format!("/users/{user}/archived/messages"), 5)
            .await
            .len(),
        14
    );
    assert_eq!(
        walk(&app, &format!("/users/{user}/flagged"), 6).await.len(),
        26
    );
    assert_eq!(
        walk(&app, &format!("/users/{user}/search?query=number"), 5)
            .await
            .len(),
        26
    );
}

async fn raw_is_taken_as_text_buffer_base64_and_rfc822(app: TestApp) {
    let user = new_user(&app, None, "karl", "karl-pass").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let text = "From: Jürgen <j@example.com>\r\nSubject: Grüße\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nÄpfel und Birnen\r\n";
    let path = format!("/users/{user}/mailboxes/{inbox}/messages");
    let source = |uid: &Value| format!("{path}/{uid}/message.eml");
    let fetch = |uid: Value| {
        let app = &app;
        let url = source(&uid);
        async move {
            let request = http::Request::get(url)
                .body(axum::body::Body::empty())
                .unwrap();
            let (status, _, bytes) = app.send_raw(request).await;
            assert_eq!(status, StatusCode::OK);
            bytes.to_vec()
        }
    };

    // The message text as a JSON string (WildDuck's web client).
    let (status, body) = app.post(&path, json!({ "raw": text })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fetch(body["message"]["id"].clone()).await, text.as_bytes());
    // A Node Buffer.
    let buffer: Vec<u8> = text.bytes().collect();
    let (status, body) = app
        .post(&path, json!({ "raw": {"type": "Buffer", "data": buffer} }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fetch(body["message"]["id"].clone()).await, text.as_bytes());
    // Base64 still works for callers that send it (no header line: not a message).
    let (status, body) = app
        .post(&path, json!({ "raw": STANDARD.encode(text) }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fetch(body["message"]["id"].clone()).await, text.as_bytes());
    // A message/rfc822 body.
    let request = http::Request::post(&path)
        .header("content-type", "message/rfc822")
        .body(axum::body::Body::from(text))
        .unwrap();
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fetch(body["message"]["id"].clone()).await, text.as_bytes());
    let (_, details) = app.get(&format!("{path}/1")).await;
    assert_eq!(details["subject"], "Grüße");
    // Text with no header line that is not base64 either is stored as given.
    let (status, body) = app.post(&path, json!({ "raw": "@@@" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(fetch(body["message"]["id"].clone()).await, b"@@@");
    // Bad Buffers are refused.
    for bad in [
        json!({"type": "Buffer", "data": [256]}),
        json!({"type": "Buffer", "data": "abc"}),
        json!({"type": "Blob", "data": [1]}),
        json!([1, 2]),
    ] {
        let (status, body) = app.post(&path, json!({ "raw": bad })).await;
        assert_code(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "InputValidationError",
        );
    }
    assert_eq!(app.counters(&user, &inbox).await.0, 5);
}

async fn message_details_leave_out_empty_rows_and_carry_the_envelope(app: TestApp) {
    let user = new_user(&app, None, "liam", "liam-pass").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let png = STANDARD.encode(vec![7u8; 3000]);
    let raw = format!(
        "From: a@example.com\r\nTo: liam@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\nContent-Type: image/png; name=\"dot.png\"\r\nContent-Disposition: attachment; filename=\"dot.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{png}\r\n--XX--\r\n"
    );
    let (status, body) = app
        .post(
            &format!("/users/{user}/mailboxes/{inbox}/messages"),
            json!({ "raw": raw }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uid = body["message"]["id"].as_u64().unwrap();
    let (status, details) = app
        .get(&format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{details}");
    for absent in ["cc", "bcc", "replyTo"] {
        assert!(details.get(absent).is_none(), "{absent}: {details}");
    }
    assert_eq!(details["to"][0]["address"], "liam@example.com");
    // An upload has no SMTP envelope (delivered messages do: tests/delivery.rs).
    assert_eq!(
        details["envelope"],
        json!({"from": "", "rcpt": []}),
        "{details}"
    );
    let attachment = &details["attachments"][0];
    let keys: BTreeSet<&str> = attachment
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for internal in ["bodyStart", "bodyEnd", "body_start", "partId", "part"] {
        assert!(!keys.contains(internal), "{internal}: {attachment}");
    }
    // The stored (encoded) size, as WildDuck reports it.
    assert_eq!(attachment["size"], png.len(), "{attachment}");
    assert_eq!(attachment["filename"], "dot.png");
    assert_eq!(attachment["id"], "ATT00001");
}

async fn bulk_update_takes_the_message_in_the_body(app: TestApp) {
    let user = new_user(&app, None, "mona", "mona-pass").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let trash = app.mailbox_id(&user, "Trash").await;
    for i in 0..4 {
        let raw = format!("From: a@example.com\r\nSubject: {i}\r\n\r\nx\r\n");
        app.upload_ok(&user, &inbox, &raw, json!({"unseen": true}))
            .await;
    }
    let path = format!("/users/{user}/mailboxes/{inbox}/messages");
    let (status, body) = app
        .put(&path, json!({"message": "1,2", "seen": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["updated"], 2);
    assert_eq!(app.counters(&user, &inbox).await, (4, 2));
    let (status, body) = app
        .put(
            &path,
            json!({"message": 3, "moveTo": trash, "markHam": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mailbox"], trash.as_str());
    assert_eq!(body["id"], json!([[3, 1]]));
    let (status, body) = app
        .put(&path, json!({"message": "4:*", "flagged": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["updated"], 1);
    for bad in [
        json!({"seen": true}),
        json!({"message": "1,3:5", "seen": true}),
        json!({"message": "*", "seen": true}),
        json!({"message": "1", "seen": true, "foo": 1}),
    ] {
        let (status, body) = app.put(&path, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Routes WildDuck added

async fn authlog_events_resolve_and_preauth(app: TestApp) {
    let user = new_user(&app, None, "nina.n", "nina-pass").await;
    let other = new_user(&app, None, "oscar", "oscar-pass").await;
    token_login(&app, None, "nina.n", "nina-pass").await;
    let (_, log) = app.get(&format!("/users/{user}/authlog")).await;
    let entry = &log["results"][0];
    let id = entry["id"].as_str().unwrap();
    let (status, event) = app.get(&format!("/users/{user}/authlog/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["success"], true);
    let mut listed = entry.clone();
    listed["success"] = json!(true);
    assert_eq!(event, listed);
    assert_eq!(event["appId"], "https://webmail.example");
    let (status, body) = app.get(&format!("/users/{other}/authlog/{id}")).await;
    assert_code(status, &body, StatusCode::NOT_FOUND, "EventNotFound");
    let (status, body) = app
        .get(&format!("/users/{}/authlog/{id}", ObjectId::new()))
        .await;
    assert_code(status, &body, StatusCode::NOT_FOUND, "UserNotFound");
    let (status, _) = app.get(&format!("/users/{user}/authlog/xyz")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The web client pages the log with `page`.
    let (status, body) = app.get(&format!("/users/{user}/authlog?page=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Usernames resolve with dots and case ignored; addresses are not usernames.
    for name in ["nina.n", "NINAN", "n.i.n.a.n"] {
        let (status, body) = app.get(&format!("/users/resolve/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["id"], user.as_str());
    }
    let (status, body) = app.get("/users/resolve/nina.n@example.com").await;
    assert_code(status, &body, StatusCode::NOT_FOUND, "UserNotFound");
    let (status, _) = app.get("/users/resolve/a+b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Preauth: the user as login finds it, without a password and without a log entry.
    let before = app.get(&format!("/users/{user}/authlog")).await.1["total"].clone();
    let (status, body) = app
        .post("/preauth", json!({"username": "nina.n@example.com"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"success": true, "id": user, "username": "nina.n", "address": "nina.n@example.com", "scope": "master", "require2fa": false})
    );
    assert_eq!(
        app.get(&format!("/users/{user}/authlog")).await.1["total"],
        before
    );
    let (status, body) = app.post("/preauth", json!({"username": "nobody"})).await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "AuthFailed");
    assert!(body.get("id").is_none());
    app.put(
        &format!("/users/{other}"),
        json!({"disabledScopes": ["imap"]}),
    )
    .await;
    let (status, body) = app
        .post("/preauth", json!({"username": "oscar", "scope": "imap"}))
        .await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "InvalidAuthScope");
    app.put(&format!("/users/{other}"), json!({"disabled": true}))
        .await;
    let (status, body) = app.post("/preauth", json!({"username": "oscar"})).await;
    assert_code(status, &body, StatusCode::FORBIDDEN, "AuthFailed");
    let (status, _) = app
        .post("/preauth", json!({"username": "oscar", "password": "x"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn archive_restore_by_date_range_runs_as_a_task(app: TestApp) {
    let user = new_user(&app, None, "paul", "paul-pass").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let (_, created) = app
        .post(&format!("/users/{user}/mailboxes"), json!({"path": "Work"}))
        .await;
    let work = created["id"].as_str().unwrap().to_string();
    for i in 0..3 {
        let raw = format!("From: a@example.com\r\nSubject: early {i}\r\n\r\nx\r\n");
        let uid = app.upload_ok(&user, &work, &raw, json!({})).await;
        app.delete(&format!("/users/{user}/mailboxes/{work}/messages/{uid}"))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let start = chrono::Utc::now();
    for i in 0..4 {
        let raw = format!("From: a@example.com\r\nSubject: late {i}\r\n\r\nx\r\n");
        let uid = app.upload_ok(&user, &inbox, &raw, json!({})).await;
        app.delete(&format!("/users/{user}/mailboxes/{inbox}/messages/{uid}"))
            .await;
    }
    let storage = app.storage_used(&user).await;
    let end = chrono::Utc::now();

    let (status, body) = app
        .post(
            &format!("/users/{user}/archived/restore"),
            json!({"start": start.to_rfc3339(), "end": end.to_rfc3339()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task = body["task"].as_str().unwrap();
    assert_eq!(task.len(), 24);
    // Small ranges are done when the request answers; the task is gone.
    let (_, archived) = app
        .get(&format!("/users/{user}/archived/messages?limit=250"))
        .await;
    let subjects: BTreeSet<&str> = archived["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, BTreeSet::from(["early 0", "early 1", "early 2"]));
    assert_eq!(app.counters(&user, &inbox).await.0, 4);
    assert!(app.storage_used(&user).await > storage);
    let task_item = app
        .table()
        .get(&keys::restore_task(
            &user.parse().unwrap(),
            &task.parse().unwrap(),
        ))
        .await
        .unwrap();
    assert!(task_item.is_none());

    // A larger range goes on in the janitor, step by step, into the original mailbox.
    let (status, body) = app
        .post(
            &format!("/users/{user}/archived/restore"),
            json!({"start": "2000-01-01", "end": end.to_rfc3339()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.counters(&user, &work).await.0, 3);

    for bad in [
        json!({"start": "2020-01-01"}),
        json!({"start": "yesterday", "end": "2020-01-01"}),
        json!({"start": "2020-01-01", "end": "2020-01-02", "mailbox": "x"}),
    ] {
        let (status, body) = app
            .post(&format!("/users/{user}/archived/restore"), bad.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = app
        .post(
            &format!("/users/{}/archived/restore", ObjectId::new()),
            json!({"start": "2020-01-01", "end": "2020-01-02"}),
        )
        .await;
    assert_code(status, &body, StatusCode::NOT_FOUND, "UserNotFound");
}

// ---------------------------------------------------------------------------------------------
// Imported hashes, mailbox paths

async fn imported_hashes_log_in_and_become_argon2id(app: TestApp) {
    // `Hunter2!` hashed by other implementations (passlib, bcrypt, hashlib).
    for (i, hash) in [
        "$2b$04$UcEFBPzhaGv8PVO4G3aW/.0t2bWxfSU5uIgapDo2cu0Ttep8fMDIi",
        "$pbkdf2-sha256$i=100000$CvHZmTZrLwtwXF+U/oRDFw$DCFyWkyU+i2QsD52V+wSz/QodEUc0bBUfNIOMePUitw",
        "$6$YSeXig2WIHUt9vRZ$4zOkLdc67dKboFRo9n9HOOAa7BGJp9PzVV7O/9OUV40RTjuWJaXEKSKKbFsCcTVvg3YRMr9bX0J83fByZpsgp.",
        "$1$P3kPrCrR$RrR3xb.j0LkW473rcjaXg/",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("imported{i}");
        let id = app
            .create_user(json!({"username": name, "password": hash, "hashedPassword": true}))
            .await;
        let stored = || async {
            let item = app
                .table()
                .get(&keys::user(&id.parse().unwrap()))
                .await
                .unwrap()
                .unwrap();
            item.body["password"].as_str().unwrap().to_string()
        };
        assert_eq!(stored().await, hash);
        let (status, body) = app
            .post(
                "/authenticate",
                json!({"username": name, "password": "wrong"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(stored().await, hash, "a failed login changes nothing");
        let (status, body) = app
            .post(
                "/authenticate",
                json!({"username": name, "password": "Hunter2!"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{hash}: {body}");
        let upgraded = stored().await;
        assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
        let (status, _) = app
            .post(
                "/authenticate",
                json!({"username": name, "password": "Hunter2!"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "the new hash works");
    }
    for bad in ["$apr1$x$y", "{SSHA}abc", "$2b$04$short", "not a hash"] {
        let (status, body) = app
            .post(
                "/users",
                json!({"username": "badhash", "password": bad, "hashedPassword": true}),
            )
            .await;
        assert_code(status, &body, StatusCode::BAD_REQUEST, "HashError");
    }
}

async fn mailbox_paths_follow_wildducks_rules(app: TestApp) {
    let user = new_user(&app, None, "quinn", "quinn-pass").await;
    let boxes = format!("/users/{user}/mailboxes");
    let (status, body) = app.post(&boxes, json!({"path": "a/b/"})).await;
    assert_code(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "InputValidationError",
    );
    // Long paths (a sort key holds 1,024 bytes at most): created, found, renamed, deleted.
    let long = format!(
        "{}/{}/{}",
        "x".repeat(500),
        "ü".repeat(300),
        "y".repeat(400)
    );
    assert!(long.len() > 1500);
    let (status, body) = app.post(&boxes, json!({"path": long})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (status, _) = app.post(&boxes, json!({"path": long})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, found) = app
        .get(&format!("{boxes}/resolve?path={}", urlencode(&long)))
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["id"], id.as_str());
    let renamed = format!("{}/{}", "w".repeat(500), "ü".repeat(300));
    let (status, body) = app
        .put(&format!("{boxes}/{id}"), json!({"path": renamed}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, got) = app.get(&format!("{boxes}/{id}")).await;
    assert_eq!(got["path"], renamed.as_str());
    let (status, _) = app.delete(&format!("{boxes}/{id}")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app
        .put(
            &format!("{boxes}/{}", ObjectId::new()),
            json!({"path": "Elsewhere"}),
        )
        .await;
    assert_code(status, &body, StatusCode::NOT_FOUND, "NoSuchMailbox");
    assert_eq!(
        body["error"],
        "Mailbox update failed with code NoSuchMailbox"
    );
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
