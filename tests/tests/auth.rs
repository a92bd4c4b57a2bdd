//! Router-level tests of the auth group: authentication, brute-force locks, the authlog,
//! application-specific passwords, TOTP 2FA and password reset. Each test runs on the embedded
//! store and on DynamoDB served by moto. TOTP codes are computed here, independently of the
//! server's TOTP library (HMAC-SHA-1 from the `hmac` and `sha1` crates).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use eider_shared::config::{AuthLimit, Config};
use eider_tests::app::{TestApp, test_config};
use eider_tests::totp::{base32_decode, enable_totp, now, totp_code, wait_for_step_margin};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    authenticate_by_username_or_any_address_answers_the_documented_shape,
    authenticate_failures_look_alike_and_carry_no_user_id,
    authenticate_validates_its_input,
    master_password_scopes_follow_wildducks_rules,
    asps_never_grant_master_and_only_their_scopes,
    asps_are_created_listed_and_deleted,
    asps_are_limited_to_50_per_user,
    mobileconfig_is_an_apple_profile_with_imap_and_smtp_payloads,
    totp_setup_gives_a_seed_and_a_scannable_qr_code,
    totp_enable_and_check_accept_independently_computed_codes_once,
    concurrent_checks_of_one_code_give_one_success,
    totp_disable_and_2fa_disable_turn_the_second_factor_off,
    lockout_after_12_failures_refuses_even_the_right_password,
    lockout_holds_across_instances_and_ends_after_the_lock,
    parallel_failures_get_at_most_the_limit_of_password_checks,
    totp_checks_are_rate_limited,
    password_reset_requires_a_change_and_resets_2fa,
    authlog_filters_page_and_stay_in_the_users_partition,
    authlog_entries_expire_after_the_retention,
    unknown_users_and_bad_ids_get_404_and_400,
);

// ---------------------------------------------------------------------------------------------
// Helpers

async fn auth(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.post("/authenticate", body).await
}

async fn login(app: &TestApp, username: &str, password: &str, scope: &str) -> (StatusCode, Value) {
    auth(
        app,
        json!({"username": username, "password": password, "scope": scope}),
    )
    .await
}

async fn new_asp(app: &TestApp, user: &str, body: Value) -> (String, String) {
    let (status, created) = app.post(&format!("/users/{user}/asps"), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    (
        created["id"].as_str().unwrap().to_string(),
        created["password"].as_str().unwrap().to_string(),
    )
}

async fn authlog(app: &TestApp, user: &str, query: &str) -> Value {
    let (status, body) = app.get(&format!("/users/{user}/authlog?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn with_config(app: TestApp, change: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    change(&mut config);
    TestApp::new(app.backend, config)
}

fn assert_forbidden(status: StatusCode, body: &Value, code: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body.get("id").is_none(),
        "failures carry no user id: {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Authentication

async fn authenticate_by_username_or_any_address_answers_the_documented_shape(app: TestApp) {
    let id = app
        .create_user(json!({
            "username": "testuser",
            "password": "secretpass",
            "address": "testuser@example.com",
        }))
        .await;
    let (status, _) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "андрис@уайлддак.орг"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = auth(
        &app,
        json!({
            "username": "testuser",
            "password": "secretpass",
            "scope": "pop3",
            "protocol": "POP3",
            "sess": "sess-1",
            "ip": "192.168.10.10",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "success": true,
            "id": id,
            "username": "testuser",
            "address": "testuser@example.com",
            "scope": "pop3",
            "require2fa": false,
            "require2faEnabled": false,
            "requirePasswordChange": false,
        })
    );
    // Any address, in any spelling: dots, case, +label, punycode.
    for name in [
        "testuser@example.com",
        "Test.User@EXAMPLE.com",
        "testuser+tag@example.com",
        "андрис@уайлддак.орг",
        "андрис@xn--80aalaxjd5d.xn--c1avg",
        "TestUser",
    ] {
        let (status, body) = login(&app, name, "secretpass", "master").await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["id"], id);
        assert_eq!(body["scope"], "master");
    }
    let log = authlog(&app, &id, "action=authentication&sess=sess-1").await;
    assert_eq!(log["total"], 1, "{log}");
    let entry = &log["results"][0];
    assert_eq!(entry["result"], "success");
    assert_eq!(entry["protocol"], "POP3");
    assert_eq!(entry["requiredScope"], "pop3");
    assert_eq!(entry["source"], "master");
    assert_eq!(entry["ip"], "192.168.10.10");
    let default_protocol = authlog(&app, &id, "action=authentication&limit=1").await;
    assert_eq!(default_protocol["results"][0]["protocol"], "API");
}

async fn authenticate_failures_look_alike_and_carry_no_user_id(app: TestApp) {
    let id = app
        .create_user(json!({"username": "alice", "password": "rightpass"}))
        .await;
    let (status, body) = login(&app, "alice", "wrongpass", "master").await;
    assert_forbidden(status, &body, "AuthFailed");
    assert_eq!(body["error"], "Authentication failed");
    let (status, body) = login(&app, "nobody", "whatever", "master").await;
    assert_forbidden(status, &body, "AuthFailed");
    let (status, body) = login(&app, "nobody@example.com", "whatever", "imap").await;
    assert_forbidden(status, &body, "AuthFailed");

    let (status, _) = app
        .put(&format!("/users/{id}"), json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = login(&app, "alice", "rightpass", "master").await;
    assert_forbidden(status, &body, "AuthFailed");
    let (status, _) = app
        .put(
            &format!("/users/{id}"),
            json!({"disabled": false, "suspended": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = login(&app, "alice", "rightpass", "master").await;
    assert_forbidden(status, &body, "AuthFailed");

    let log = authlog(&app, &id, "action=authentication").await;
    let results: Vec<&str> = log["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["suspended", "disabled", "fail"]);
}

async fn authenticate_validates_its_input(app: TestApp) {
    let (status, body) = auth(&app, json!({"password": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"]["username"], "\"username\" is required");
    let (status, body) = auth(&app, json!({"username": "a b", "password": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["details"]["username"].is_string(), "{body}");
    assert_eq!(
        body["details"]["password"],
        "\"password\" is not allowed to be empty"
    );
    let (status, body) = auth(
        &app,
        json!({"username": "a", "password": "x", "scope": "admin", "foo": 1, "ip": "1.2.3"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let details = &body["details"];
    assert_eq!(
        details["scope"],
        "\"scope\" must be one of [master, imap, pop3, smtp]"
    );
    assert_eq!(details["foo"], "\"foo\" is not allowed");
    assert!(details["ip"].is_string());
    let (status, _) = auth(
        &app,
        json!({"username": "a", "password": "x", "scope": "imap", "token": true}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a token only for scope master"
    );
}

async fn master_password_scopes_follow_wildducks_rules(app: TestApp) {
    let id = app
        .create_user(json!({"username": "bob", "password": "masterpass"}))
        .await;
    for scope in ["master", "imap", "pop3", "smtp"] {
        let (status, body) = login(&app, "bob", "masterpass", scope).await;
        assert_eq!(status, StatusCode::OK, "{scope}: {body}");
        assert_eq!(body["scope"], scope);
    }
    // A scope the user disabled is refused, with WildDuck's message.
    let (status, _) = app
        .put(&format!("/users/{id}"), json!({"disabledScopes": ["imap"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = login(&app, "bob", "masterpass", "imap").await;
    assert_forbidden(status, &body, "InvalidAuthScope");
    assert_eq!(body["error"], "Access to requested service disabled");

    // With 2FA on, the master password is for master only, and asks for the second factor.
    enable_totp(&app, &id).await;
    let (status, body) = login(&app, "bob", "masterpass", "master").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["require2fa"], json!(["totp"]));
    assert_eq!(body["requirePasswordChange"], false);
    for scope in ["pop3", "smtp"] {
        let (status, body) = login(&app, "bob", "masterpass", scope).await;
        assert_forbidden(status, &body, "InvalidAuthScope");
        assert_eq!(body["error"], "Authentication failed. Invalid scope");
    }
    let log = authlog(&app, &id, "action=authentication&limit=1").await;
    assert_eq!(log["results"][0]["result"], "fail");
    assert_eq!(log["results"][0]["requiredScope"], "smtp");
}

async fn asps_never_grant_master_and_only_their_scopes(app: TestApp) {
    let id = app
        .create_user(json!({"username": "carol", "password": "masterpass"}))
        .await;
    let (all_id, all) = new_asp(&app, &id, json!({"description": "Phone"})).await;
    let (_, smtp_only) = new_asp(
        &app,
        &id,
        json!({"description": "Printer", "scopes": "smtp"}),
    )
    .await;
    assert_eq!(all.len(), 16);
    assert!(all.bytes().all(|b| b.is_ascii_lowercase()));

    // Spaces and case don't matter.
    let spaced = format!(
        "{} {} {} {}",
        &all[0..4],
        &all[4..8].to_uppercase(),
        &all[8..12],
        &all[12..16]
    );
    for scope in ["imap", "pop3", "smtp"] {
        let (status, body) = login(&app, "carol", &spaced, scope).await;
        assert_eq!(status, StatusCode::OK, "{scope}: {body}");
        assert_eq!(body["require2fa"], false);
        assert_eq!(body["requirePasswordChange"], false);
    }
    let (status, body) = login(&app, "carol", &all, "master").await;
    assert_forbidden(status, &body, "AuthFailed");
    let (status, body) = login(&app, "carol", &smtp_only, "smtp").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = login(&app, "carol", &smtp_only, "imap").await;
    assert_forbidden(status, &body, "InvalidAuthScope");

    // With 2FA on, application passwords keep working for their protocols, without 2FA.
    enable_totp(&app, &id).await;
    let (status, body) = login(&app, "carol", &all, "imap").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["require2fa"], false);

    // The use is recorded on the password and in the authlog.
    let (_, listed) = app.get(&format!("/users/{id}/asps/{all_id}")).await;
    assert!(listed["lastUse"]["time"].is_string(), "{listed}");
    let event = listed["lastUse"]["event"].as_str().unwrap().to_string();
    let log = authlog(&app, &id, "action=authentication&limit=1").await;
    assert_eq!(log["results"][0]["id"], event);
    assert_eq!(log["results"][0]["source"], "asp");
    assert_eq!(log["results"][0]["asp"], all_id);
    assert_eq!(log["results"][0]["aname"], "Phone");
}

async fn asps_are_created_listed_and_deleted(app: TestApp) {
    let id = app
        .create_user(json!({"username": "dave", "password": "masterpass"}))
        .await;
    let (first, password) = new_asp(
        &app,
        &id,
        json!({"description": "Mac OSX Mail Client", "scopes": ["*"], "ip": "192.168.10.10"}),
    )
    .await;
    let (second, _) = new_asp(
        &app,
        &id,
        json!({"description": "Nodemailer", "scopes": "smtp, imap"}),
    )
    .await;
    let (third, _) = new_asp(
        &app,
        &id,
        json!({"description": "All three", "scopes": ["imap", "pop3", "smtp"]}),
    )
    .await;
    let (temporary, _) = new_asp(&app, &id, json!({"description": "Temp", "ttl": 3600})).await;

    let (status, list) = app.get(&format!("/users/{id}/asps")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let results = list["results"].as_array().unwrap();
    let ids: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str(), third.as_str()]);
    assert_eq!(results[0]["description"], "Mac OSX Mail Client");
    assert_eq!(results[0]["scopes"], json!(["*"]));
    assert_eq!(
        results[0]["lastUse"],
        json!({"time": false, "event": false})
    );
    assert!(results[0]["created"].is_string());
    assert_eq!(results[1]["scopes"], json!(["imap", "smtp"]));
    assert_eq!(results[2]["scopes"], json!(["*"]));
    assert!(!list.to_string().contains(&password));
    assert!(!list.to_string().contains("argon2"));
    let (_, all) = app.get(&format!("/users/{id}/asps?showAll=true")).await;
    assert_eq!(all["results"].as_array().unwrap().len(), 4);
    assert_eq!(all["results"][3]["id"], temporary);
    assert!(all["results"][3]["expires"].is_string());

    let (status, one) = app.get(&format!("/users/{id}/asps/{second}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["success"], true);
    assert_eq!(one["description"], "Nodemailer");

    // Bad input.
    let (status, body) = app
        .post(
            &format!("/users/{id}/asps"),
            json!({"description": "x", "scopes": ["imap", "master"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"]["scopes,1"],
        "\"scopes[1]\" must be one of [imap, pop3, smtp, *]"
    );
    let (status, body) = app
        .post(
            &format!("/users/{id}/asps"),
            json!({"description": "x", "password": "0000000000000000"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("0000000000000000"), "{body}");
    let (status, body) = app
        .post(&format!("/users/{id}/asps"), json!({"scopes": ["imap"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"]["description"],
        "\"description\" is required"
    );

    // Delete: gone for login and listing; a second delete is a 404.
    let (status, body) = app
        .delete(&format!("/users/{id}/asps/{first}?ip=192.168.10.10"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.delete(&format!("/users/{id}/asps/{first}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "AspNotFound");
    let (status, body) = app.get(&format!("/users/{id}/asps/{first}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "AspNotFound");
    let (status, body) = login(&app, "dave", &password, "imap").await;
    assert_forbidden(status, &body, "AuthFailed");

    let created = authlog(&app, &id, "action=create+asp").await;
    assert_eq!(created["total"], 4);
    assert_eq!(created["action"], "create asp");
    let last = &created["results"][3];
    assert_eq!(last["asp"], first);
    assert_eq!(last["aname"], "Mac OSX Mail Client");
    assert_eq!(last["result"], "success");
    assert_eq!(last["ip"], "192.168.10.10");
    let deleted = authlog(&app, &id, "action=delete+asp").await;
    assert_eq!(deleted["total"], 1);
    assert_eq!(deleted["results"][0]["asp"], first);
}

async fn asps_are_limited_to_50_per_user(app: TestApp) {
    let id = app
        .create_user(json!({"username": "erin", "password": "pw"}))
        .await;
    let create = |i: usize| {
        let app = &app;
        let id = &id;
        async move {
            app.post(
                &format!("/users/{id}/asps"),
                json!({"description": format!("asp {i}"), "password": "abcdefghijklmnop"}),
            )
            .await
        }
    };
    for i in 0..45 {
        let (status, body) = create(i).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Ten at once for the last five places: exactly five get one.
    let outcomes = futures::future::join_all((45..55).map(create)).await;
    let created = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    assert_eq!(created, 5, "{outcomes:?}");
    for (status, body) in outcomes.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "TooMany");
        assert_eq!(body["allowed"], 50);
    }
    let (_, list) = app.get(&format!("/users/{id}/asps")).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 50);
}

async fn mobileconfig_is_an_apple_profile_with_imap_and_smtp_payloads(app: TestApp) {
    let app = with_config(app, |c| {
        c.imap.host = "imap.example.com".into();
        c.smtp.host = "smtp.example.com".into();
        c.smtp.port = 587;
        c.smtp.secure = false;
    });
    let id = app
        .create_user(json!({
            "username": "frank",
            "password": "pw",
            "name": "Frank Example",
            "address": "frank@example.com",
        }))
        .await;
    let (status, created) = app
        .post(
            &format!("/users/{id}/asps"),
            json!({
                "description": "Mac OSX Mail Client",
                "scopes": ["imap", "smtp"],
                "generateMobileconfig": true,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["name"], "Frank Example");
    assert_eq!(created["address"], "frank@example.com");
    let password = created["password"].as_str().unwrap();
    let bytes = STANDARD
        .decode(created["mobileconfig"].as_str().unwrap())
        .unwrap();
    let profile = plist::Value::from_reader_xml(&bytes[..]).expect("a plist");
    let root = profile.as_dictionary().unwrap();
    assert_eq!(
        root["PayloadType"].as_string(),
        Some("Configuration"),
        "{root:?}"
    );
    assert_eq!(root["PayloadVersion"].as_signed_integer(), Some(1));
    assert_eq!(
        root["PayloadDisplayName"].as_string(),
        Some("Mac OSX Mail Client")
    );
    assert!(
        root["PayloadIdentifier"]
            .as_string()
            .unwrap()
            .ends_with(&id)
    );
    assert_eq!(root["PayloadUUID"].as_string().unwrap().len(), 36);
    let content = root["PayloadContent"].as_array().unwrap();
    assert_eq!(content.len(), 1);
    let mail = content[0].as_dictionary().unwrap();
    let text = |k: &str| mail[k].as_string().unwrap().to_string();
    assert_eq!(text("PayloadType"), "com.apple.mail.managed");
    assert_eq!(text("EmailAccountType"), "EmailTypeIMAP");
    assert_eq!(text("EmailAddress"), "frank@example.com");
    assert_eq!(text("EmailAccountName"), "Frank Example");
    assert_eq!(text("IncomingMailServerHostName"), "imap.example.com");
    assert_eq!(
        mail["IncomingMailServerPortNumber"].as_signed_integer(),
        Some(993)
    );
    assert_eq!(mail["IncomingMailServerUseSSL"].as_boolean(), Some(true));
    assert_eq!(text("IncomingMailServerUsername"), "frank@example.com");
    assert_eq!(text("IncomingPassword"), password);
    assert_eq!(text("OutgoingMailServerHostName"), "smtp.example.com");
    assert_eq!(
        mail["OutgoingMailServerPortNumber"].as_signed_integer(),
        Some(587)
    );
    assert_eq!(mail["OutgoingMailServerUseSSL"].as_boolean(), Some(false));
    assert_eq!(
        mail["OutgoingPasswordSameAsIncomingPassword"].as_boolean(),
        Some(true)
    );
    // The password in the profile logs in.
    let (status, body) = login(&app, "frank@example.com", password, "imap").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // POP3 + SMTP gives a POP account; an alias address can be the account.
    let (status, _) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "f@example.com", "name": "Effie"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, created) = app
        .post(
            &format!("/users/{id}/asps"),
            json!({
                "description": "POP",
                "scopes": "pop3,smtp",
                "generateMobileconfig": "true",
                "address": "F@Example.com",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["address"], "f@example.com");
    assert_eq!(created["name"], "Effie");
    let bytes = STANDARD
        .decode(created["mobileconfig"].as_str().unwrap())
        .unwrap();
    let profile = plist::Value::from_reader_xml(&bytes[..]).unwrap();
    let mail = profile.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap()[0]
        .as_dictionary()
        .unwrap()
        .clone();
    assert_eq!(mail["EmailAccountType"].as_string(), Some("EmailTypePOP"));
    assert_eq!(
        mail["IncomingMailServerPortNumber"].as_signed_integer(),
        Some(995)
    );

    // A profile needs an incoming and the outgoing scope; the address must be the user's.
    let (status, body) = app
        .post(
            &format!("/users/{id}/asps"),
            json!({"description": "x", "scopes": ["imap"], "generateMobileconfig": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "InvalidAuthScope");
    let other = app
        .create_user(json!({"username": "other", "password": "pw"}))
        .await;
    let (status, body) = app
        .post(
            &format!("/users/{other}/asps"),
            json!({"description": "x", "generateMobileconfig": true, "address": "frank@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "AddressNotFound");
}

// ---------------------------------------------------------------------------------------------
// TOTP

async fn totp_setup_gives_a_seed_and_a_scannable_qr_code(app: TestApp) {
    let id = app
        .create_user(json!({"username": "gina", "password": "pw"}))
        .await;
    let (status, setup) = app
        .post(
            &format!("/users/{id}/2fa/totp/setup"),
            json!({"issuer": "testikas", "ip": "192.168.10.10"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let seed = setup["seed"].as_str().unwrap();
    assert_eq!(seed.len(), 32);
    assert_eq!(base32_decode(seed).len(), 20);
    let url = setup["otpauthUrl"].as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "otpauth://totp/testikas:gina?secret={seed}&issuer=testikas&algorithm=SHA1&digits=6&period=30"
        )
    );

    // The QR code is a real PNG whose content is the otpauth URL.
    let png = STANDARD
        .decode(
            setup["qrcode"]
                .as_str()
                .unwrap()
                .strip_prefix("data:image/png;base64,")
                .expect("a PNG data URL"),
        )
        .unwrap();
    let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .unwrap()
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        image.width() as usize,
        image.height() as usize,
        |x, y| image.get_pixel(x as u32, y as u32).0[0],
    );
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, url);

    // Without `fresh`, the pending seed is offered again; with it, a new one.
    let (_, again) = app
        .post(&format!("/users/{id}/2fa/totp/setup"), json!({}))
        .await;
    assert_eq!(again["seed"], seed);
    let (_, fresh) = app
        .post(
            &format!("/users/{id}/2fa/totp/setup"),
            json!({"fresh": true, "label": "Gina's phone"}),
        )
        .await;
    assert_ne!(fresh["seed"], seed);
    assert!(
        fresh["otpauthUrl"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/example.com:Gina's%20phone?")
    );

    // The seed is not readable from the user.
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert!(!user.to_string().contains(seed));
    assert_eq!(user["enabled2fa"], json!([]));
}

async fn totp_enable_and_check_accept_independently_computed_codes_once(app: TestApp) {
    let id = app
        .create_user(json!({"username": "hank", "password": "pw"}))
        .await;
    let (_, setup) = app
        .post(
            &format!("/users/{id}/2fa/totp/setup"),
            json!({"issuer": "Eider"}),
        )
        .await;
    let seed = setup["seed"].as_str().unwrap().to_string();
    let enable = format!("/users/{id}/2fa/totp/enable");
    let check = format!("/users/{id}/2fa/totp/check");

    // Not enabled yet: check refuses.
    let (status, body) = app.post(&check, json!({"token": "123456"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "TotpDisabled");

    wait_for_step_margin(5).await;
    let t = now();
    let wrong = format!(
        "{:06}",
        (totp_code(&seed, t).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let (status, body) = app.post(&enable, json!({"token": wrong})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "InvalidToken");
    let (status, body) = app.post(&enable, json!({"token": "12345"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"]["token"],
        "\"token\" length must be 6 characters long"
    );
    let code = totp_code(&seed, t);
    let (status, body) = app.post(&enable, json!({"token": code})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["enabled2fa"], json!(["totp"]));
    let (status, body) = app
        .post(&format!("/users/{id}/2fa/totp/setup"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "TotpEnabled");

    // The code that enabled TOTP is spent.
    let (status, body) = app.post(&check, json!({"token": code})).await;
    assert_forbidden(status, &body, "RateLimitedError");
    // The next step's code (one step of skew) works once; two steps ahead never.
    let next = totp_code(&seed, t + 30);
    let (status, body) = app.post(&check, json!({"token": next, "sess": "s1"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.post(&check, json!({"token": next})).await;
    assert_forbidden(status, &body, "RateLimitedError");
    assert_eq!(
        body["error"],
        "This code has already been used, please try again with a new code"
    );
    let far = totp_code(&seed, t + 90);
    let (status, body) = app.post(&check, json!({"token": far})).await;
    assert_forbidden(status, &body, "InvalidToken");
    assert_eq!(body["error"], "Failed to validate TOTP");

    let log = authlog(&app, &id, "action=check+2fa+totp").await;
    let results: Vec<&str> = log["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["fail", "fail", "success", "fail"], "{log}");
    let enabled = authlog(&app, &id, "action=enable+2fa+totp").await;
    assert_eq!(enabled["total"], 2);
    assert_eq!(enabled["results"][0]["result"], "success");
    assert_eq!(enabled["results"][1]["result"], "fail");
}

async fn concurrent_checks_of_one_code_give_one_success(app: TestApp) {
    let id = app
        .create_user(json!({"username": "ivy", "password": "pw"}))
        .await;
    let seed = enable_totp(&app, &id).await;
    // The enable code was this step's (or an earlier one's): use the next step's, still
    // inside the skew.
    let code = totp_code(&seed, now() + 30);
    let check = format!("/users/{id}/2fa/totp/check");
    let checks = (0..8).map(|_| app.post(&check, json!({"token": code.clone()})));
    let outcomes = futures::future::join_all(checks).await;
    let ok = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "{outcomes:?}");
    for (status, body) in outcomes.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_forbidden(*status, body, "RateLimitedError");
    }
}

async fn totp_disable_and_2fa_disable_turn_the_second_factor_off(app: TestApp) {
    let id = app
        .create_user(json!({"username": "jack", "password": "pw"}))
        .await;
    enable_totp(&app, &id).await;
    let (status, body) = app
        .delete(&format!("/users/{id}/2fa/totp?ip=192.168.10.10"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.delete(&format!("/users/{id}/2fa/totp")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "TotpDisabled");
    let (_, body) = login(&app, "jack", "pw", "imap").await;
    assert_eq!(body["require2fa"], false, "{body}");

    enable_totp(&app, &id).await;
    let (_, body) = login(&app, "jack", "pw", "master").await;
    assert_eq!(body["require2fa"], json!(["totp"]));
    let (status, body) = app.delete(&format!("/users/{id}/2fa")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = login(&app, "jack", "pw", "smtp").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["require2fa"], false);
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["enabled2fa"], json!([]));
    // Disabling twice is fine for "all of 2FA".
    let (status, _) = app.delete(&format!("/users/{id}/2fa")).await;
    assert_eq!(status, StatusCode::OK);
    for action in ["disable+2fa+totp", "disable+2fa"] {
        let log = authlog(&app, &id, &format!("action={action}")).await;
        assert!(log["total"].as_u64().unwrap() >= 1, "{action}: {log}");
    }
}

// ---------------------------------------------------------------------------------------------
// Brute-force protection

async fn lockout_after_12_failures_refuses_even_the_right_password(app: TestApp) {
    let id = app
        .create_user(json!({"username": "kate", "password": "rightpass"}))
        .await;
    for i in 0..12 {
        let (status, body) = login(&app, "kate", &format!("wrong{i}"), "master").await;
        assert_forbidden(status, &body, "AuthFailed");
    }
    // Locked: by username or address, with the right password too.
    for name in ["kate", "kate@example.com"] {
        let (status, body) = login(&app, name, "rightpass", "master").await;
        assert_forbidden(status, &body, "RateLimitedError");
        assert_eq!(body["error"], "Authentication was rate limited");
        assert!(body["retryAfter"].as_i64().unwrap() > 0);
    }
    let log = authlog(&app, &id, "action=authentication").await;
    assert_eq!(log["total"], 13, "12 failures and the lock: {log}");
    let lock = &log["results"][0];
    assert_eq!(lock["result"], "locked");
    assert_eq!(lock["failures"], 12);
    assert!(lock["lockedUntil"].is_string());

    // Unknown names lock the same way.
    for _ in 0..12 {
        let (status, body) = login(&app, "ghost", "x", "master").await;
        assert_forbidden(status, &body, "AuthFailed");
    }
    let (status, body) = login(&app, "ghost", "x", "master").await;
    assert_forbidden(status, &body, "RateLimitedError");

    // Another user is not affected.
    app.create_user(json!({"username": "liam", "password": "pw"}))
        .await;
    let (status, _) = login(&app, "liam", "pw", "master").await;
    assert_eq!(status, StatusCode::OK);
}

async fn lockout_holds_across_instances_and_ends_after_the_lock(app: TestApp) {
    let limit = AuthLimit {
        max_failures: 3,
        window: Duration::from_secs(2),
        lock: Duration::from_secs(2),
    };
    let app = with_config(app, |c| c.auth_limit = limit);
    app.create_user(json!({"username": "mia", "password": "rightpass"}))
        .await;
    // A success in between forgets earlier failures.
    login(&app, "mia", "wrong", "master").await;
    login(&app, "mia", "wrong", "master").await;
    let (status, _) = login(&app, "mia", "rightpass", "master").await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..3 {
        let (status, body) = login(&app, "mia", "wrong", "master").await;
        assert_forbidden(status, &body, "AuthFailed");
    }
    // A second instance (another Lambda) over the same table sees the lock.
    let mut config = test_config();
    config.auth_limit = limit;
    let second =
        eider_shared::http::AppState::new(app.state.table.clone(), app.state.blobs.clone(), config);
    let router = eider_shared::http::finish(eider_local::router(), second);
    let request = http::Request::post("/authenticate")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({"username": "mia", "password": "rightpass"}).to_string(),
        ))
        .unwrap();
    let response = tower::ServiceExt::oneshot(router, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Refused attempts don't prolong it: hammering with the right password gets in once the
    // lock (2 s) has ended and the failures have left the window (2 s).
    let started = std::time::Instant::now();
    loop {
        let (status, body) = login(&app, "mia", "rightpass", "master").await;
        if status == StatusCode::OK {
            break;
        }
        assert_forbidden(status, &body, "RateLimitedError");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still locked after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() > Duration::from_secs(1));
}

async fn parallel_failures_get_at_most_the_limit_of_password_checks(app: TestApp) {
    let app = with_config(app, |c| {
        c.auth_limit = AuthLimit {
            max_failures: 5,
            window: Duration::from_secs(120),
            lock: Duration::from_secs(120),
        }
    });
    let id = app
        .create_user(json!({"username": "noah", "password": "rightpass"}))
        .await;
    let attempts = (0..20).map(|i| {
        let app = &app;
        async move { login(app, "noah", &format!("guess{i}"), "master").await }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let checked = outcomes
        .iter()
        .filter(|(_, b)| b["code"] == "AuthFailed")
        .count();
    let limited = outcomes
        .iter()
        .filter(|(_, b)| b["code"] == "RateLimitedError")
        .count();
    assert_eq!(checked + limited, 20, "{outcomes:?}");
    assert!(checked <= 5, "{checked} passwords checked");
    let log = authlog(&app, &id, "action=authentication&limit=250").await;
    let fails = log["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["result"] == "fail")
        .count();
    assert_eq!(fails, checked);
}

async fn totp_checks_are_rate_limited(app: TestApp) {
    let app = with_config(app, |c| {
        c.auth_limit = AuthLimit {
            max_failures: 3,
            window: Duration::from_secs(120),
            lock: Duration::from_secs(120),
        }
    });
    let id = app
        .create_user(json!({"username": "olga", "password": "pw"}))
        .await;
    let seed = enable_totp(&app, &id).await;
    let check = format!("/users/{id}/2fa/totp/check");
    for _ in 0..3 {
        let (status, body) = app.post(&check, json!({"token": "000000"})).await;
        if body["code"] == "RateLimitedError" {
            panic!("locked too early: {body}");
        }
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = app
        .post(&check, json!({"token": totp_code(&seed, now() + 30)}))
        .await;
    assert_forbidden(status, &body, "RateLimitedError");
    // Passwords are counted apart from TOTP codes.
    let (status, _) = login(&app, "olga", "pw", "master").await;
    assert_eq!(status, StatusCode::OK);
    let log = authlog(&app, &id, "action=check+2fa+totp").await;
    assert_eq!(log["results"][0]["result"], "locked");
}

// ---------------------------------------------------------------------------------------------
// Password reset

async fn password_reset_requires_a_change_and_resets_2fa(app: TestApp) {
    let id = app
        .create_user(json!({"username": "pete", "password": "oldpass"}))
        .await;
    enable_totp(&app, &id).await;
    let (status, reset) = app
        .post(
            &format!("/users/{id}/password/reset"),
            json!({"ip": "192.168.10.10", "sess": "r1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let temporary = reset["password"].as_str().unwrap().to_string();
    assert_eq!(temporary.len(), 12);
    assert!(reset["validAfter"].is_string());

    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["enabled2fa"], json!([]), "2FA is reset");
    let (status, body) = login(&app, "pete", "oldpass", "master").await;
    assert_forbidden(status, &body, "AuthFailed");
    let (status, body) = login(&app, "pete", &temporary, "master").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requirePasswordChange"], true);
    assert_eq!(body["require2fa"], false);
    let (status, body) = login(&app, "pete", &temporary, "imap").await;
    assert_forbidden(status, &body, "InvalidAuthScope");
    // Still required on the next login.
    let (_, body) = login(&app, "pete", &temporary, "master").await;
    assert_eq!(body["requirePasswordChange"], true);

    let (status, body) = app
        .put(&format!("/users/{id}"), json!({"password": "newpass"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = login(&app, "pete", "newpass", "imap").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requirePasswordChange"], false);
    let (status, _) = login(&app, "pete", &temporary, "master").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let log = authlog(&app, &id, "action=reset").await;
    assert_eq!(log["total"], 1);
    assert_eq!(log["results"][0]["sess"], "r1");

    // A temporary password is refused before its validAfter.
    let (status, reset) = app
        .post(
            &format!("/users/{id}/password/reset"),
            json!({"validAfter": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let (status, body) = login(&app, "pete", reset["password"].as_str().unwrap(), "master").await;
    assert_forbidden(status, &body, "TempPasswordNotYetValid");
    let (status, body) = app
        .post(
            &format!("/users/{id}/password/reset"),
            json!({"validAfter": "soon"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

// ---------------------------------------------------------------------------------------------
// Authlog

async fn authlog_filters_page_and_stay_in_the_users_partition(app: TestApp) {
    let id = app
        .create_user(json!({"username": "quinn", "password": "pw", "ip": "10.0.0.1"}))
        .await;
    for i in 0..5 {
        let (status, _) = auth(
            &app,
            json!({
                "username": "quinn",
                "password": if i % 2 == 0 { "pw" } else { "bad" },
                "sess": format!("s{i}"),
                "ip": if i < 3 { "10.0.0.2" } else { "2001:db8::1" },
            }),
        )
        .await;
        assert!(status == StatusCode::OK || status == StatusCode::FORBIDDEN);
    }
    let all = authlog(&app, &id, "").await;
    assert_eq!(all["total"], 6);
    assert_eq!(all["page"], 1);
    assert_eq!(all["previousCursor"], false);
    assert_eq!(all["nextCursor"], false);
    let actions: Vec<&str> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(actions.last(), Some(&"account created"));
    assert_eq!(all["results"][0]["sess"], "s4");
    for entry in all["results"].as_array().unwrap() {
        assert!(entry["id"].is_string() && entry["created"].is_string());
        assert!(entry["expires"].is_string());
        assert_eq!(entry["events"], 1);
    }

    // Filters are exact matches and combine.
    assert_eq!(
        authlog(&app, &id, "action=authentication").await["total"],
        5
    );
    assert_eq!(
        authlog(&app, &id, "action=Account+Created").await["total"],
        1
    );
    assert_eq!(authlog(&app, &id, "sess=s3").await["total"], 1);
    assert_eq!(authlog(&app, &id, "sess=s").await["total"], 0);
    assert_eq!(authlog(&app, &id, "ip=10.0.0.2").await["total"], 3);
    assert_eq!(
        authlog(&app, &id, "filterip=2001:DB8:0::1").await["total"],
        2
    );
    let both = authlog(&app, &id, "ip=10.0.0.2&sess=s1").await;
    assert_eq!(both["total"], 1);
    assert_eq!(both["results"][0]["result"], "fail");

    // Paging both ways, with a filter.
    let first = authlog(&app, &id, "action=authentication&limit=2").await;
    assert_eq!(first["total"], 5);
    let sess: Vec<&str> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sess"].as_str().unwrap())
        .collect();
    assert_eq!(sess, ["s4", "s3"]);
    let next = first["nextCursor"].as_str().unwrap();
    let second = authlog(
        &app,
        &id,
        &format!("action=authentication&limit=2&next={next}&page=2"),
    )
    .await;
    assert_eq!(second["page"], 2);
    assert_eq!(second["results"][0]["sess"], "s2");
    assert_eq!(second["results"][1]["sess"], "s1");
    let next = second["nextCursor"].as_str().unwrap();
    let third = authlog(
        &app,
        &id,
        &format!("action=authentication&limit=2&next={next}&page=3"),
    )
    .await;
    assert_eq!(third["results"].as_array().unwrap().len(), 1);
    assert_eq!(third["nextCursor"], false);
    let previous = third["previousCursor"].as_str().unwrap();
    let back = authlog(
        &app,
        &id,
        &format!("action=authentication&limit=2&previous={previous}&page=2"),
    )
    .await;
    assert_eq!(back["results"], second["results"]);

    // A cursor is a position inside the listing it is used with: another user's cursor only
    // moves through that user's own log. Garbage is refused.
    let other = app
        .create_user(json!({"username": "rosa", "password": "pw"}))
        .await;
    login(&app, "rosa", "pw", "master").await;
    let (status, body) = app
        .get(&format!("/users/{other}/authlog?next={next}&limit=250"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let own: Vec<Value> = authlog(&app, &other, "limit=250").await["results"]
        .as_array()
        .unwrap()
        .clone();
    for entry in body["results"].as_array().unwrap() {
        assert!(own.contains(entry), "{entry} is not rosa's");
    }
    let (status, body) = app.get(&format!("/users/{id}/authlog?next=abc")).await;
    assert_eq!(
        body["details"]["next"],
        "\"next\" contains an invalid value"
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = app
        .get(&format!("/users/{id}/authlog?limit=251&foo=1"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["details"]["foo"].is_string() && body["details"]["limit"].is_string());
}

async fn authlog_entries_expire_after_the_retention(app: TestApp) {
    // Long enough to list the entries under a loaded test run, short enough to wait for.
    let app = with_config(app, |c| c.authlog_retention = Duration::from_secs(6));
    let id = app
        .create_user(json!({"username": "sam", "password": "pw"}))
        .await;
    login(&app, "sam", "pw", "master").await;
    let log = authlog(&app, &id, "").await;
    assert_eq!(log["total"], 2);
    let entry = &log["results"][0];
    let created = chrono::DateTime::parse_from_rfc3339(entry["created"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(entry["expires"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 6);
    let left = (expires.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(left + 2)).await;
    let log = authlog(&app, &id, "").await;
    assert_eq!(log["total"], 0, "{log}");
    assert_eq!(log["results"], json!([]));
}

async fn unknown_users_and_bad_ids_get_404_and_400(app: TestApp) {
    let ghost = "59fc66a03e54454869460e45";
    for (method, path) in [
        ("GET", format!("/users/{ghost}/authlog")),
        ("GET", format!("/users/{ghost}/asps")),
        ("POST", format!("/users/{ghost}/asps")),
        ("GET", format!("/users/{ghost}/asps/{ghost}")),
        ("DELETE", format!("/users/{ghost}/asps/{ghost}")),
        ("POST", format!("/users/{ghost}/2fa/totp/setup")),
        ("DELETE", format!("/users/{ghost}/2fa/totp")),
        ("DELETE", format!("/users/{ghost}/2fa")),
        ("POST", format!("/users/{ghost}/password/reset")),
    ] {
        let body = (method == "POST").then(|| json!({"description": "x"}));
        let body = if path.ends_with("/setup") || path.ends_with("/reset") {
            Some(json!({}))
        } else {
            body
        };
        let (status, answer) = app.call(method, &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "UserNotFound", "{method} {path}");
    }
    let (status, body) = app
        .post(
            &format!("/users/{ghost}/2fa/totp/enable"),
            json!({"token": "123456"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.get("/users/123/asps/xyz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["details"]["user"].is_string() && body["details"]["asp"].is_string());
}
