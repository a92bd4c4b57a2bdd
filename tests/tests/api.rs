//! Router-level tests of every users and addresses endpoint, in-process (tower `oneshot`).
//! Each test runs on the embedded store and on DynamoDB + S3 served by moto.

use eider_shared::domain::keys;
use eider_shared::id::ObjectId;
use eider_shared::store::{Query, SortRange};
use eider_tests::app::{TestApp, test_config};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    create_user_then_get_user_returns_the_documented_shape,
    create_user_generates_the_address_from_username_and_domain,
    create_user_with_empty_address_has_no_address,
    create_user_creates_localized_default_mailboxes,
    create_user_rejects_a_taken_username_with_409,
    create_user_rejects_a_taken_address_with_409_and_changes_nothing,
    create_user_rejects_invalid_input_with_400_and_changes_nothing,
    create_user_with_pub_key_reports_key_info,
    list_users_matches_query_tags_and_pages_both_ways,
    list_users_refuses_bad_limits_and_cursors,
    update_user_changes_only_given_fields,
    update_user_checks_existing_password,
    update_user_answers_404_and_400_for_unknown_user_and_no_changes,
    delete_user_frees_username_and_addresses_at_once,
    logout_user_records_a_logout_event,
    bad_ids_and_unknown_routes_get_json_errors,
    add_address_follows_the_spec_example,
    add_address_normalizes_and_keeps_addresses_unique,
    add_address_refuses_plus_and_unpermitted_wildcards,
    update_address_sets_main_and_renames,
    delete_address_refuses_main_and_frees_aliases,
    addresses_of_another_user_are_not_reachable,
    list_addresses_matches_query_and_pages,
    concurrent_creates_of_one_username_yield_one_success,
    concurrent_creates_of_one_address_yield_one_success,
);

async fn create_user_then_get_user_returns_the_documented_shape(app: TestApp) {
    let id = app
        .create_user(json!({
            "username": "testuser",
            "password": "secretpass",
            "address": "testuser@example.com",
            "ip": "192.168.10.10",
            "tags": ["green", "Blue", "blue"],
        }))
        .await;
    assert_eq!(id.len(), 24);
    let (status, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["success"], true);
    assert_eq!(user["id"], id);
    assert_eq!(user["username"], "testuser");
    assert_eq!(user["name"], Value::Null);
    assert_eq!(user["address"], "testuser@example.com");
    assert_eq!(user["retention"], false);
    assert_eq!(user["enabled2fa"], json!([]));
    assert_eq!(user["encryptMessages"], false);
    assert_eq!(user["encryptForwarded"], false);
    assert_eq!(user["pubKey"], "");
    assert_eq!(user["keyInfo"], false);
    assert_eq!(
        user["limits"]["quota"],
        json!({"allowed": 1024u64 * 1024 * 1024, "used": 0})
    );
    assert_eq!(
        user["limits"]["recipients"],
        json!({"allowed": 2000, "used": 0, "ttl": false})
    );
    assert_eq!(
        user["limits"]["forwards"],
        json!({"allowed": 2000, "used": 0, "ttl": false})
    );
    assert_eq!(user["tags"], json!(["Blue", "green"]));
    assert_eq!(user["hasPasswordSet"], true);
    assert_eq!(user["activated"], true);
    assert_eq!(user["disabled"], false);
    let serialized = user.to_string();
    assert!(!serialized.contains("secretpass") && !serialized.contains("argon2"));
}

async fn create_user_generates_the_address_from_username_and_domain(app: TestApp) {
    let id = app
        .create_user(json!({"username": "John.Doe", "password": "pw"}))
        .await;
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["username"], "john.doe");
    assert_eq!(user["address"], "john.doe@example.com");
    // A username that is an address is its own main address, its +label removed.
    let id = app
        .create_user(json!({"username": "x@other.org", "password": false}))
        .await;
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["address"], "x@other.org");
    assert_eq!(user["hasPasswordSet"], false);
    let id = app
        .create_user(
            json!({"username": "plus", "password": "pw", "address": "Plus+Tag@Example.com"}),
        )
        .await;
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["address"], "plus@example.com");
}

async fn create_user_with_empty_address_has_no_address(app: TestApp) {
    let id = app
        .create_user(json!({"username": "noaddr", "password": "pw", "emptyAddress": true}))
        .await;
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["address"], Value::Null);
    let (status, list) = app.get(&format!("/users/{id}/addresses")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["results"], json!([]));
}

async fn mailbox_paths(app: &TestApp, user: &str) -> Vec<(String, Option<String>)> {
    let user: ObjectId = user.parse().unwrap();
    let page = app
        .table()
        .query(
            &Query::table(keys::user_pk(&user))
                .range(SortRange::BeginsWith(keys::MAILBOX_SK_PREFIX.into())),
        )
        .await
        .unwrap();
    let mut paths: Vec<(String, Option<String>)> = page
        .items
        .iter()
        .map(|i| {
            (
                i.body["path"].as_str().unwrap().to_string(),
                i.body["specialUse"].as_str().map(str::to_string),
            )
        })
        .collect();
    paths.sort();
    paths
}

async fn create_user_creates_localized_default_mailboxes(app: TestApp) {
    let id = app
        .create_user(json!({"username": "eesti", "password": "pw", "language": "et"}))
        .await;
    let paths = mailbox_paths(&app, &id).await;
    let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "INBOX",
        "Saadetud kirjad",
        "Prügikast",
        "Mustandid",
        "Rämpspost",
        "Arhiiv",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let special: Vec<_> = paths.iter().filter_map(|(_, s)| s.clone()).collect();
    assert_eq!(special.len(), 5);
    let id = app
        .create_user(json!({"username": "english", "password": "pw"}))
        .await;
    let names: Vec<String> = mailbox_paths(&app, &id)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        names,
        ["Archive", "Drafts", "INBOX", "Junk", "Sent Mail", "Trash"]
    );
}

async fn create_user_rejects_a_taken_username_with_409(app: TestApp) {
    app.create_user(json!({"username": "john.doe", "password": "pw"}))
        .await;
    // Dots don't make a different user (WildDuck's unameview).
    let (status, body) = app
        .post(
            "/users",
            json!({"username": "johndoe", "password": "pw", "address": "jd@x.org"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "UserExistsError");
}

async fn create_user_rejects_a_taken_address_with_409_and_changes_nothing(app: TestApp) {
    app.create_user(
        json!({"username": "first", "password": "pw", "address": "shared@example.com"}),
    )
    .await;
    let (status, body) = app
        .post(
            "/users",
            json!({"username": "second", "password": "pw", "address": "Shared@Example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "AddressExistsError");
    // Nothing of "second" was kept: the username is still free.
    app.create_user(json!({"username": "second", "password": "pw"}))
        .await;
    let (_, list) = app.get("/users").await;
    assert_eq!(list["total"], 2);
}

async fn create_user_rejects_invalid_input_with_400_and_changes_nothing(app: TestApp) {
    let cases = [
        (
            json!({"password": "pw"}),
            "username",
            "\"username\" is required",
        ),
        (
            json!({"username": "ömyuser2", "password": "pw"}),
            "username",
            "fails to match",
        ),
        (
            json!({"username": "a"}),
            "password",
            "\"password\" is required",
        ),
        (
            json!({"username": "a", "password": "pw", "foo": 1}),
            "foo",
            "\"foo\" is not allowed",
        ),
        (
            json!({"username": "a", "password": "pw", "quota": "lots"}),
            "quota",
            "must be a number",
        ),
        (
            json!({"username": "a", "password": "pw", "quota": -1}),
            "quota",
            "greater than or equal to 0",
        ),
        (
            json!({"username": "a", "password": "pw", "name": "n".repeat(257)}),
            "name",
            "less than or equal to 256",
        ),
        (
            json!({"username": "a", "password": "pw", "address": "not-an-address"}),
            "address",
            "valid email",
        ),
        (
            json!({"username": "a", "password": "pw", "address": "*@x.com"}),
            "address",
            "Invalid character",
        ),
        (
            json!({"username": "a", "password": "pw", "tags": "x", "spamLevel": 101}),
            "spamLevel",
            "less than or equal to 100",
        ),
        (
            json!({"username": "a", "password": "pw", "ip": "300.1.1.1"}),
            "ip",
            "valid ip",
        ),
        (
            json!({"username": "a", "password": "pw", "targets": ["ftp://x"]}),
            "targets",
            "Unknown target type",
        ),
        (
            json!({"username": "a", "password": "pw", "disabledScopes": ["imap", "web"]}),
            "disabledScopes,1",
            "must be one of",
        ),
        (
            json!({"username": "a", "password": "pw", "pubKey": "nope"}),
            "pubKey",
            "PGP public key",
        ),
        (
            json!({"username": "a", "password": "pw", "mailboxes": {"sent": "INBOX"}}),
            "mailboxes",
            "Duplicate mailbox name",
        ),
        (
            json!({"username": "a", "password": "pw", "hashedPassword": true}),
            "",
            "HashError",
        ),
        (
            json!({"username": "a", "password": "pw", "tags": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "tags",
            "less than or equal to 50 items",
        ),
        (
            json!({"username": "a", "password": "pw", "metaData": {"big": "x".repeat(70_000)}}),
            "metaData",
            "exceeds allowed size",
        ),
    ];
    for (body, field, message) in cases {
        let (status, answer) = app.post("/users", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        let text = if field.is_empty() {
            answer["code"].as_str().unwrap().to_string()
        } else {
            assert_eq!(answer["code"], "InputValidationError", "{body} -> {answer}");
            answer["details"][field]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        assert!(text.contains(message), "{body} -> {answer}");
    }
    // Malformed JSON, and a JSON body that is not an object.
    for raw in ["{\"username\": ", "[1,2]"] {
        let request = http::Request::post("/users")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(raw))
            .unwrap();
        let (status, answer) = app.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["code"], "InvalidContent");
    }
    let (_, list) = app.get("/users").await;
    assert_eq!(list["total"], 0);
    assert_eq!(list["results"], json!([]));
}

async fn create_user_with_pub_key_reports_key_info(app: TestApp) {
    let key = include_str!("../../shared/src/mail/testdata/rsa.asc");
    let id = app
        .create_user(json!({"username": "pgp", "password": "pw", "pubKey": key}))
        .await;
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["keyInfo"]["address"], "test@example.com");
    assert_eq!(
        user["keyInfo"]["fingerprint"],
        "5507d964f5d5816abce0d57ec5b04ec6618c553b"
    );
    assert!(
        user["pubKey"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );
    let sign_only = include_str!("../../shared/src/mail/testdata/ed25519-sign-only.asc");
    let (status, body) = app
        .post(
            "/users",
            json!({"username": "pgp2", "password": "pw", "pubKey": sign_only}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["details"]["pubKey"]
            .as_str()
            .unwrap()
            .starts_with("PGP key validation failed.")
    );
    // Removing the key with an empty string.
    let (status, _) = app
        .put(&format!("/users/{id}"), json!({"pubKey": ""}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["keyInfo"], false);
    assert_eq!(user["pubKey"], "");
}

async fn list_users_matches_query_tags_and_pages_both_ways(app: TestApp) {
    for (name, tags) in [
        ("testuser01", json!(["red", "green"])),
        ("testuser02", json!(["green"])),
        ("other03", json!(["blue"])),
        ("anothertestuser", json!([])),
        ("zeta", json!(["red"])),
    ] {
        app.create_user(json!({"username": name, "password": "pw", "tags": tags}))
            .await;
    }
    let (status, list) = app.get("/users?query=testuser01&tags=red,green").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["query"], "testuser01");
    assert_eq!(list["total"], 1);
    assert_eq!(list["page"], 1);
    assert_eq!(list["previousCursor"], false);
    assert_eq!(list["nextCursor"], false);
    assert_eq!(list["results"][0]["username"], "testuser01");
    assert_eq!(list["results"][0]["quota"]["used"], 0);
    // Any part of the username.
    let (_, list) = app.get("/users?query=TESTUSER").await;
    let names: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["anothertestuser", "testuser01", "testuser02"]);
    let (_, list) = app.get("/users?requiredTags=red,green").await;
    assert_eq!(list["total"], 1);
    let (_, list) = app.get("/users?tags=red,blue").await;
    assert_eq!(list["total"], 3);

    // Paging forwards with limit 2, then back.
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut uri = "/users?limit=2".to_string();
    loop {
        let (status, page) = app.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 5);
        for user in page["results"].as_array().unwrap() {
            seen.push(user["username"].as_str().unwrap().to_string());
        }
        pages.push(page.clone());
        match page["nextCursor"].as_str() {
            Some(next) => uri = format!("/users?limit=2&next={next}&page={}", pages.len() + 1),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "anothertestuser",
            "other03",
            "testuser01",
            "testuser02",
            "zeta"
        ]
    );
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[2]["page"], 3);
    let previous = pages[2]["previousCursor"].as_str().unwrap();
    let (_, back) = app
        .get(&format!("/users?limit=2&previous={previous}&page=2"))
        .await;
    let names: Vec<&str> = back["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["testuser01", "testuser02"]);
    assert_eq!(back["page"], 2);
    let previous = back["previousCursor"].as_str().unwrap();
    let (_, first) = app
        .get(&format!("/users?limit=2&previous={previous}&page=1"))
        .await;
    let names: Vec<&str> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["anothertestuser", "other03"]);
    assert_eq!(first["previousCursor"], false);
}

async fn list_users_refuses_bad_limits_and_cursors(app: TestApp) {
    for uri in [
        "/users?limit=251",
        "/users?limit=0",
        "/users?limit=x",
        "/users?next=!!",
        "/users?next=abcd",
    ] {
        let (status, body) = app.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["code"], "InputValidationError");
    }
    // A well-formed cursor that points outside the listing is refused too.
    let positions = eider_shared::domain::paging::Positions {
        index: Some(eider_shared::store::Index::Gsi1),
        pk: None,
    };
    let foreign = eider_shared::domain::paging::encode_cursor(
        app.state.table.as_ref(),
        positions,
        &eider_shared::store::Cursor {
            pk: "USER#x".into(),
            sk: "PROFILE".into(),
            index: Some(("JOURNAL#x".into(), "1".into())),
        },
    )
    .await
    .unwrap();
    let (status, body) = app.get(&format!("/users?next={foreign}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"]["next"],
        "\"next\" contains an invalid value"
    );
    let (status, body) = app
        .get(&format!("/addresses?previous={foreign}&page=2"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"]["previous"],
        "\"previous\" contains an invalid value"
    );
    let (status, _) = app.get(&format!("/users?query={}", "q".repeat(256))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn update_user_changes_only_given_fields(app: TestApp) {
    let id = app
        .create_user(json!({"username": "upd", "password": "pw", "name": "Old", "tags": ["a"]}))
        .await;
    let (status, body) = app
        .put(&format!("/users/{id}"), json!({"quota": 1024}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"success": true}));
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["limits"]["quota"]["allowed"], 1024);
    assert_eq!(user["name"], "Old");
    assert_eq!(user["tags"], json!(["a"]));
    let (status, _) = app
        .put(
            &format!("/users/{id}"),
            json!({"name": "", "tags": "x,y", "retention": 3600000, "disabled": "yes"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["name"], Value::Null);
    assert_eq!(user["tags"], json!(["x", "y"]));
    assert_eq!(user["retention"], 3600000);
    assert_eq!(user["disabled"], true);
    let (status, body) = app
        .put(&format!("/users/{id}"), json!({"username": "renamed"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"]["username"], "\"username\" is not allowed");
}

async fn update_user_checks_existing_password(app: TestApp) {
    let id = app
        .create_user(json!({"username": "pwuser", "password": "first"}))
        .await;
    let (status, body) = app
        .put(
            &format!("/users/{id}"),
            json!({"password": "second", "existingPassword": "wrong"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "AuthFail");
    let before = stored_password(&app, &id).await;
    let (status, _) = app
        .put(
            &format!("/users/{id}"),
            json!({"password": "second", "existingPassword": "first"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let after = stored_password(&app, &id).await;
    assert_ne!(before, after);
    assert!(after.starts_with("$argon2id$"));
    assert!(eider_shared::domain::password::verify("second".into(), after).await);
    // The failed and the successful change are both in the security log.
    let user: ObjectId = id.parse().unwrap();
    let log = app
        .table()
        .query(
            &Query::table(keys::user_pk(&user))
                .range(SortRange::BeginsWith(keys::AUTHLOG_SK_PREFIX.into())),
        )
        .await
        .unwrap();
    let actions: Vec<String> = log
        .items
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i.body["action"].as_str().unwrap(),
                i.body["result"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        actions.contains(&"password change fail".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"password change success".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"account created success".to_string()),
        "{actions:?}"
    );
}

async fn stored_password(app: &TestApp, id: &str) -> String {
    let item = app
        .table()
        .get(&keys::user(&id.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    item.body["password"].as_str().unwrap().to_string()
}

async fn update_user_answers_404_and_400_for_unknown_user_and_no_changes(app: TestApp) {
    let missing = ObjectId::new();
    let (status, body) = app
        .put(&format!("/users/{missing}"), json!({"quota": 1}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "UserNotFound");
    let (status, body) = app.get(&format!("/users/{missing}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "This user does not exist", "code": "UserNotFound", "message": "This user does not exist"})
    );
    let id = app
        .create_user(json!({"username": "same", "password": "pw"}))
        .await;
    let (status, body) = app
        .put(&format!("/users/{id}"), json!({"sess": "abc"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "NoUpdates");
}

async fn delete_user_frees_username_and_addresses_at_once(app: TestApp) {
    let id = app
        .create_user(
            json!({"username": "leaving", "password": "pw", "address": "leaving@example.com"}),
        )
        .await;
    let (status, _) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "alias@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.delete(&format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["code"], "TaskScheduled");
    assert_eq!(body["user"], id);
    assert_eq!(body["addresses"]["deleted"], 2);
    assert!(body["deleteAfter"].as_str().is_some());
    let (status, _) = app.get(&format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete(&format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The purge task is queued for the janitor.
    let tasks = app
        .table()
        .query(&Query::index(
            eider_shared::store::Index::Gsi1,
            keys::TASKS_PK,
        ))
        .await
        .unwrap();
    assert_eq!(tasks.items.len(), 1);
    assert_eq!(tasks.items[0].body["user"], id);
    // Username and both addresses can be taken again right away.
    let again = app
        .create_user(
            json!({"username": "leaving", "password": "pw", "address": "alias@example.com"}),
        )
        .await;
    assert_ne!(again, id);
    let (_, list) = app.get("/users").await;
    assert_eq!(list["total"], 1);
    let (_, addresses) = app.get("/addresses").await;
    assert_eq!(addresses["total"], 1);
}

async fn logout_user_records_a_logout_event(app: TestApp) {
    let id = app
        .create_user(json!({"username": "sessions", "password": "pw"}))
        .await;
    let (status, body) = app
        .put(
            &format!("/users/{id}/logout"),
            json!({"reason": "Account was deleted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"success": true}));
    let user: ObjectId = id.parse().unwrap();
    let events = app
        .table()
        .query(&Query::table(keys::journal_pk(&user)))
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].body["command"], "LOGOUT");
    assert_eq!(events.items[0].body["reason"], "Account was deleted");
    let (status, _) = app
        .put(&format!("/users/{}/logout", ObjectId::new()), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .put(
            &format!("/users/{id}/logout"),
            json!({"reason": "r".repeat(129)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn bad_ids_and_unknown_routes_get_json_errors(app: TestApp) {
    let (status, body) = app.get("/users/123").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"]["user"],
        "\"user\" length must be 24 characters long"
    );
    let (status, body) = app.get("/users/zzzzzzzzzzzzzzzzzzzzzzzz/addresses").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"]["user"],
        "\"user\" must only contain hexadecimal characters"
    );
    let (status, body) = app.get("/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "ResourceNotFound");
    let (status, _) = app.get("/users/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.call("PATCH", "/users", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], "MethodNotAllowed");
}

async fn add_address_follows_the_spec_example(app: TestApp) {
    let id = app
        .create_user(
            json!({"username": "testuser", "password": "pw", "address": "testuser@example.com"}),
        )
        .await;
    let (status, created) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "user@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["success"], true);
    let alias = created["id"].as_str().unwrap();
    let (_, list) = app.get(&format!("/users/{id}/addresses")).await;
    let results = list["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["address"], "testuser@example.com");
    assert_eq!(results[0]["main"], true);
    assert_eq!(results[1]["address"], "user@example.com");
    assert_eq!(results[1]["main"], false);
    assert!(results[1]["created"].as_str().unwrap().ends_with('Z'));
    let (status, one) = app.get(&format!("/users/{id}/addresses/{alias}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], alias);
    assert_eq!(one["address"], "user@example.com");
    assert_eq!(one["main"], false);
    assert_eq!(one["success"], true);
}

async fn add_address_normalizes_and_keeps_addresses_unique(app: TestApp) {
    let id = app
        .create_user(json!({"username": "intl", "password": "pw"}))
        .await;
    let (status, body) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "андрис@уайлддак.орг"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "АНДРИС@xn--80aalaxjd5d.xn--c1avg"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "AddressExistsError");
    let (status, _) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "Mixed.Case@Example.COM"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Dots in the local part don't make a new address.
    let other = app
        .create_user(json!({"username": "other", "password": "pw"}))
        .await;
    let (status, _) = app
        .post(
            &format!("/users/{other}/addresses"),
            json!({"address": "mixedcase@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, list) = app.get(&format!("/users/{id}/addresses")).await;
    let addresses: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert!(addresses.contains(&"андрис@уайлддак.орг"));
    assert!(addresses.contains(&"mixed.case@example.com"));
}

async fn add_address_refuses_plus_and_unpermitted_wildcards(app: TestApp) {
    let id = app
        .create_user(json!({"username": "wild", "password": "pw"}))
        .await;
    let cases = [
        (
            json!({"address": "a+b@example.com"}),
            "Address can not contain +",
        ),
        (
            json!({"address": "*@example.com"}),
            "Address can not contain *",
        ),
        (
            json!({"address": "a*b@example.com", "allowWildcard": true}),
            "Invalid wildcard address",
        ),
        (json!({"address": "nope"}), "must be a valid email"),
        (json!({}), "is required"),
    ];
    for (body, message) in cases {
        let (status, answer) = app
            .post(&format!("/users/{id}/addresses"), body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(message),
            "{body}: {answer}"
        );
    }
    let (status, _) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "*@wild.example.com", "allowWildcard": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post(
            &format!("/users/{}/addresses", ObjectId::new()),
            json!({"address": "x@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn update_address_sets_main_and_renames(app: TestApp) {
    let id = app
        .create_user(json!({"username": "mainer", "password": "pw"}))
        .await;
    let (_, created) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "second@example.com"}),
        )
        .await;
    let alias = created["id"].as_str().unwrap().to_string();
    let (status, body) = app
        .put(
            &format!("/users/{id}/addresses/{alias}"),
            json!({"main": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["address"], "second@example.com");
    let (status, body) = app
        .put(
            &format!("/users/{id}/addresses/{alias}"),
            json!({"main": false}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Cannot unset main status")
    );
    // Renaming the main address moves the user's main address along.
    let (status, body) = app
        .put(
            &format!("/users/{id}/addresses/{alias}"),
            json!({"address": "Renamed@Example.com", "name": "Me"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["address"], "renamed@example.com");
    let (_, one) = app.get(&format!("/users/{id}/addresses/{alias}")).await;
    assert_eq!(one["name"], "Me");
    // The old name is free again, the new one taken.
    let other = app
        .create_user(
            json!({"username": "taker", "password": "pw", "address": "second@example.com"}),
        )
        .await;
    let (status, _) = app
        .post(
            &format!("/users/{other}/addresses"),
            json!({"address": "renamed@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app
        .put(
            &format!("/users/{id}/addresses/{}", ObjectId::new()),
            json!({"main": true}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn delete_address_refuses_main_and_frees_aliases(app: TestApp) {
    let id = app
        .create_user(json!({"username": "deleter", "password": "pw"}))
        .await;
    let (_, list) = app.get(&format!("/users/{id}/addresses")).await;
    let main = list["results"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = app.delete(&format!("/users/{id}/addresses/{main}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "Can not delete main address", "code": "NotPermitted", "message": "Can not delete main address"})
    );
    let (_, created) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "gone@example.com"}),
        )
        .await;
    let alias = created["id"].as_str().unwrap();
    let (status, body) = app.delete(&format!("/users/{id}/addresses/{alias}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.get(&format!("/users/{id}/addresses/{alias}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete(&format!("/users/{id}/addresses/{alias}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            &format!("/users/{id}/addresses"),
            json!({"address": "gone@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn addresses_of_another_user_are_not_reachable(app: TestApp) {
    let alice = app
        .create_user(json!({"username": "alice", "password": "pw"}))
        .await;
    let bob = app
        .create_user(json!({"username": "bob", "password": "pw"}))
        .await;
    let (_, created) = app
        .post(
            &format!("/users/{alice}/addresses"),
            json!({"address": "alice2@example.com"}),
        )
        .await;
    let alias = created["id"].as_str().unwrap();
    let (status, _) = app.get(&format!("/users/{bob}/addresses/{alias}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .put(
            &format!("/users/{bob}/addresses/{alias}"),
            json!({"main": true}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete(&format!("/users/{bob}/addresses/{alias}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, one) = app.get(&format!("/users/{alice}/addresses/{alias}")).await;
    assert_eq!(one["address"], "alice2@example.com");
    let (_, user) = app.get(&format!("/users/{bob}")).await;
    assert_eq!(user["address"], "bob@example.com");
}

async fn list_addresses_matches_query_and_pages(app: TestApp) {
    let id = app
        .create_user(json!({"username": "testuser01", "password": "pw"}))
        .await;
    for a in ["b@example.com", "c@example.com", "d@example.org"] {
        let (status, _) = app
            .post(&format!("/users/{id}/addresses"), json!({"address": a}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, list) = app.get("/addresses?query=testuser01").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["query"], "testuser01");
    assert_eq!(list["results"][0]["address"], "testuser01@example.com");
    assert_eq!(list["results"][0]["user"], id);
    assert!(list["results"][0]["id"].as_str().unwrap().len() == 24);
    let (_, list) = app.get("/addresses?query=example.com").await;
    assert_eq!(list["total"], 3);
    let mut seen = Vec::new();
    let mut uri = "/addresses?limit=3".to_string();
    loop {
        let (_, page) = app.get(&uri).await;
        assert_eq!(page["total"], 4);
        seen.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["address"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => uri = format!("/addresses?limit=3&next={next}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "b@example.com",
            "c@example.com",
            "d@example.org",
            "testuser01@example.com"
        ]
    );
    let (status, _) = app.get("/addresses?limit=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn concurrent_creates_of_one_username_yield_one_success(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.post("/users", json!({"username": "racer", "password": "pw", "address": format!("racer{i}@example.com")}))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut conflicts = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "UserExistsError");
                conflicts += 1
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 19));
    let (_, list) = app.get("/users").await;
    assert_eq!(list["total"], 1);
    let (_, addresses) = app.get("/addresses").await;
    assert_eq!(addresses["total"], 1);
}

async fn concurrent_creates_of_one_address_yield_one_success(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let owner = app
        .create_user(json!({"username": "owner", "password": "pw"}))
        .await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            let owner = owner.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    app.post(&format!("/users/{owner}/addresses"), json!({"address": "Popular@example.com"})).await
                } else {
                    app.post("/users", json!({"username": format!("user{i}"), "password": "pw", "address": "popular@example.com"}))
                        .await
                }
            })
        })
        .collect();
    let mut ok = 0;
    let mut conflicts = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "AddressExistsError");
                conflicts += 1
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 19));
    let (_, list) = app.get("/addresses?query=popular").await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn access_token_is_required_when_configured() {
    let backend = eider_tests::backends::embedded().await;
    let config = eider_shared::config::Config {
        access_token: Some("secrettoken".into()),
        ..test_config()
    };
    let app = TestApp::new(backend, config);
    let (status, body) = app.get("/users").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "InvalidToken");
    let (status, body) = app.get("/users?accessToken=wrong").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "Invalid accessToken value");
    let (status, body) = app
        .get("/users?query=testuser01&accessToken=secrettoken")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let request = http::Request::get("/users")
        .header("X-Access-Token", "secrettoken")
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, _) = app.send(request).await;
    assert_eq!(status, StatusCode::OK);
    // The token is not a parameter: strict endpoints don't see it.
    let (status, body) = app
        .post(
            "/users?accessToken=secrettoken",
            json!({"username": "tok", "password": "pw"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
