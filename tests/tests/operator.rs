//! The operator's API (issue 15): domain aliases, forwarded addresses, wildcard addresses,
//! the address resolver and `/health`, through the endpoints and through delivery over a
//! real LMTP conversation (Python's smtplib.LMTP against the in-process listener). Every test
//! runs on the embedded store and on DynamoDB + S3 (moto).

use std::time::Duration;

use eider_shared::config::DeliveryConfig;
use eider_shared::domain::delivery::Delivery;
use eider_shared::mail::outbound::Outbound;
use eider_tests::app::{TestApp, ok};
use eider_tests::lmtp_client::converse_async;
use eider_tests::sinks::{http_sink, smtp_sink};
use http::StatusCode;
use serde_json::{Value, json};

eider_tests::on_both_backends!(
    domain_aliases_are_created_listed_resolved_and_deleted,
    alias_domains_reach_the_main_domain_at_login_lookup_and_delivery,
    wildcard_addresses_catch_mail_with_the_longest_match_first,
    forwarded_addresses_are_managed_and_forward_over_lmtp,
    domain_access_lists_decide_junk_for_tagged_users,
    a_deleted_user_is_restored_until_the_purge_starts,
    dkim_keys_are_managed_and_outgoing_mail_is_signed,
    settings_change_defaults_for_every_function_without_a_redeploy,
    a_domain_rename_moves_addresses_keys_and_aliases,
    a_quota_reset_of_every_user_runs_as_a_resumable_task,
    filters_of_every_user_are_listed_and_paged,
    the_address_register_learns_correspondents_from_stored_mail,
    health_answers_when_the_store_is_writable,
);

async fn new_user(app: &TestApp, name: &str, address: &str) -> String {
    app.create_user(json!({"username": name, "password": "a-long-pass", "address": address}))
        .await
}

/// Starts the LMTP listener over the app's storage, forwarding through `outbound`.
async fn lmtp_server(app: &TestApp, outbound: Outbound) -> u16 {
    let config = DeliveryConfig {
        target_url_timeout: Duration::from_secs(3),
        ..DeliveryConfig::default()
    };
    eider_tests::lmtp_client::serve(Delivery::new(app.state.clone(), outbound, config)).await
}

/// One message to `recipients` over LMTP: the RCPT replies and the DATA replies.
async fn lmtp_send(
    port: u16,
    recipients: &[&str],
    subject: &str,
) -> (Vec<u16>, Vec<(u16, String)>) {
    let raw = format!(
        "From: Sender <sender@remote.example>\nTo: someone@example.com\nSubject: {subject}\n\nHello\n"
    );
    let conversation = converse_async(
        port,
        vec![(
            "sender@remote.example".into(),
            recipients.iter().map(|r| r.to_string()).collect(),
            raw,
        )],
    )
    .await;
    let replies = &conversation.messages[0];
    (
        replies.rcpt.iter().map(|r| r.0).collect(),
        replies.data.clone(),
    )
}

async fn inbox_subjects(app: &TestApp, user: &str) -> Vec<String> {
    let inbox = app.mailbox_id(user, "INBOX").await;
    let (_, list) = app
        .get(&format!(
            "/users/{user}/mailboxes/{inbox}/messages?order=asc"
        ))
        .await;
    list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect()
}

async fn domain_aliases_are_created_listed_resolved_and_deleted(app: TestApp) {
    let mut ids = Vec::new();
    for (alias, domain) in [
        ("alias-b.example", "example.com"),
        ("ALIAS-A.example", "Example.COM"),
        ("xn--bcher-kva.example", "example.org"),
    ] {
        let created = ok(
            &app,
            "POST",
            "/domainaliases",
            Some(json!({"alias": alias, "domain": domain})),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    // Stored normalized: lowercase, punycode as Unicode.
    let one = ok(&app, "GET", &format!("/domainaliases/{}", ids[1]), None).await;
    assert_eq!(one["alias"], "alias-a.example");
    assert_eq!(one["domain"], "example.com");
    assert_eq!(one["created"].as_str().unwrap().len(), 24);
    let third = ok(&app, "GET", &format!("/domainaliases/{}", ids[2]), None).await;
    assert_eq!(third["alias"], "bücher.example");
    let resolved = ok(&app, "GET", "/domainaliases/resolve/Alias-B.Example", None).await;
    assert_eq!(resolved["id"], ids[0].as_str());

    // Listed in alias order, paged, filtered by a part of either domain.
    let all = ok(&app, "GET", "/domainaliases", None).await;
    assert_eq!(all["total"], 3);
    let aliases: Vec<&str> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alias"].as_str().unwrap())
        .collect();
    assert_eq!(
        aliases,
        ["alias-a.example", "alias-b.example", "bücher.example"]
    );
    let first = ok(&app, "GET", "/domainaliases?limit=2", None).await;
    assert_eq!(first["results"].as_array().unwrap().len(), 2);
    let next = first["nextCursor"].as_str().unwrap();
    let second = ok(
        &app,
        "GET",
        &format!("/domainaliases?limit=2&next={next}"),
        None,
    )
    .await;
    assert_eq!(second["results"][0]["alias"], "bücher.example");
    let filtered = ok(&app, "GET", "/domainaliases?query=example.org", None).await;
    assert_eq!(filtered["total"], 1);
    assert_eq!(filtered["query"], "example.org");

    // Bad input: a 4xx with WildDuck's code, nothing changed.
    for (body, code) in [
        (
            json!({"alias": "alias-a.example", "domain": "example.net"}),
            "AliasExists",
        ),
        (
            json!({"alias": "not a domain", "domain": "example.com"}),
            "InputValidationError",
        ),
        (
            json!({"alias": "x.example", "domain": "-bad-.example"}),
            "InputValidationError",
        ),
        (json!({"alias": "x.example"}), "InputValidationError"),
        (
            json!({"alias": "x.example", "domain": "example.com", "extra": 1}),
            "InputValidationError",
        ),
    ] {
        let (status, answer) = app.post("/domainaliases", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(answer["code"], code, "{body} -> {answer}");
    }
    let (status, answer) = app.get("/domainaliases/resolve/unknown.example").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("AliasNotFound"))
    );
    let (status, _) = app.get("/domainaliases/not-an-id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ok(&app, "GET", "/domainaliases", None).await["total"], 3);

    ok(&app, "DELETE", &format!("/domainaliases/{}", ids[0]), None).await;
    let (status, answer) = app.delete(&format!("/domainaliases/{}", ids[0])).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("AliasNotFound"))
    );
    let (status, _) = app.get("/domainaliases/resolve/alias-b.example").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The alias is free again.
    ok(
        &app,
        "POST",
        "/domainaliases",
        Some(json!({"alias": "alias-b.example", "domain": "example.net"})),
    )
    .await;
}

async fn alias_domains_reach_the_main_domain_at_login_lookup_and_delivery(app: TestApp) {
    let bob = new_user(&app, "bob", "bob.smith@example.com").await;
    ok(
        &app,
        "POST",
        "/domainaliases",
        Some(json!({"alias": "example.net", "domain": "example.com"})),
    )
    .await;
    // Login by an address on the alias domain (dots and the +label ignored as usual).
    let login = ok(
        &app,
        "POST",
        "/authenticate",
        Some(json!({"username": "BobSmith+x@example.net", "password": "a-long-pass"})),
    )
    .await;
    assert_eq!(login["id"], bob.as_str());
    let found = ok(
        &app,
        "GET",
        "/addresses/resolve/bob.smith@example.net",
        None,
    )
    .await;
    assert_eq!(found["user"], bob.as_str());
    assert_eq!(found["address"], "bob.smith@example.com");
    assert!(found.get("name").is_none(), "{found}");
    // By id too.
    let by_id = ok(
        &app,
        "GET",
        &format!("/addresses/resolve/{}", found["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(by_id["address"], "bob.smith@example.com");
    let (status, answer) = app.get("/addresses/resolve/nobody@example.net").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("AddressNotFound"))
    );

    let sink = smtp_sink().await;
    let port = lmtp_server(
        &app,
        Outbound::Smtp {
            host: "127.0.0.1".into(),
            port: sink.port,
        },
    )
    .await;
    let (rcpt, data) = lmtp_send(
        port,
        &[
            "bob.smith@example.net",
            "nobody@example.net",
            "bob.smith@unrelated.example",
        ],
        "via the alias",
    )
    .await;
    assert_eq!(rcpt, [250, 550, 550]);
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].0, 250, "{data:?}");
    assert_eq!(inbox_subjects(&app, &bob).await, ["via the alias"]);
}

async fn wildcard_addresses_catch_mail_with_the_longest_match_first(app: TestApp) {
    let exact = new_user(&app, "exact", "info@catch.example").await;
    let any = new_user(&app, "any", "any@other.example").await;
    let sales = new_user(&app, "sales", "sales@other.example").await;
    let suffix = new_user(&app, "suffix", "suffix@other.example").await;
    let everywhere = new_user(&app, "everywhere", "everywhere@other.example").await;
    for (user, address) in [
        (&any, "*@catch.example"),
        (&sales, "sales*@catch.example"),
        (&suffix, "*-team@catch.example"),
        (&everywhere, "postmaster@*"),
    ] {
        ok(
            &app,
            "POST",
            &format!("/users/{user}/addresses"),
            Some(json!({"address": address, "allowWildcard": true})),
        )
        .await;
    }
    // A wildcard is refused where it is not allowed, and an ill-formed one always.
    for body in [
        json!({"address": "*@nope.example"}),
        json!({"address": "a*b@nope.example", "allowWildcard": true}),
        json!({"address": "**@nope.example", "allowWildcard": true}),
    ] {
        let (status, answer) = app
            .post(&format!("/users/{any}/addresses"), body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
    }
    ok(
        &app,
        "POST",
        "/domainaliases",
        Some(json!({"alias": "catch-alias.example", "domain": "catch.example"})),
    )
    .await;
    // The resolver: only with allowWildcard; the stored wildcard by its own spelling.
    let (status, _) = app.get("/addresses/resolve/random@catch.example").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let found = ok(
        &app,
        "GET",
        "/addresses/resolve/random@catch.example?allowWildcard=true",
        None,
    )
    .await;
    assert_eq!(found["user"], any.as_str());
    let stored = ok(&app, "GET", "/addresses/resolve/sales*@catch.example", None).await;
    assert_eq!(stored["user"], sales.as_str());
    // No login through a wildcard.
    let (status, _) = app
        .post(
            "/authenticate",
            json!({"username": "random@catch.example", "password": "a-long-pass"}),
        )
        .await;
    assert_ne!(status, StatusCode::OK);

    let sink = smtp_sink().await;
    let port = lmtp_server(
        &app,
        Outbound::Smtp {
            host: "127.0.0.1".into(),
            port: sink.port,
        },
    )
    .await;
    for (to, subject) in [
        ("info@catch.example", "exact wins"),
        ("sales.europe@catch.example", "prefix"),
        ("red-team@catch.example", "suffix"),
        ("whoever@catch.example", "catch-all"),
        ("whoever@catch-alias.example", "catch-all through the alias"),
        ("postmaster@anywhere.example", "any domain"),
    ] {
        let (rcpt, data) = lmtp_send(port, &[to], subject).await;
        assert_eq!(rcpt, [250], "{to}");
        assert_eq!(data[0].0, 250, "{to}: {data:?}");
    }
    let (rcpt, _) = lmtp_send(port, &["someone@unknown.example"], "nobody").await;
    assert_eq!(rcpt, [550]);
    assert_eq!(inbox_subjects(&app, &exact).await, ["exact wins"]);
    assert_eq!(inbox_subjects(&app, &sales).await, ["prefix"]);
    assert_eq!(inbox_subjects(&app, &suffix).await, ["suffix"]);
    assert_eq!(
        inbox_subjects(&app, &any).await,
        ["catch-all", "catch-all through the alias"]
    );
    assert_eq!(inbox_subjects(&app, &everywhere).await, ["any domain"]);
}

async fn forwarded_addresses_are_managed_and_forward_over_lmtp(app: TestApp) {
    // Daily counters: the test must run within one UTC day.
    eider_tests::clock::clear_of_utc_midnight(std::time::Duration::from_secs(60)).await;
    let local = new_user(&app, "local", "local@example.com").await;
    let hooks = http_sink().await;
    let sink = smtp_sink().await;
    let hook = format!("http://127.0.0.1:{}/ok", hooks.port);
    let created = ok(
        &app,
        "POST",
        "/addresses/forwarded",
        Some(json!({
            "address": "Team@Example.com",
            "name": "The team",
            "targets": ["far@remote.example", hook, "far@remote.example"],
            "forwards": 3,
            "tags": [" b", "a", "b"],
            "autoreply": {"subject": "Away", "text": "Back soon"},
            "metaData": {"k": 1},
        })),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let got = ok(&app, "GET", &format!("/addresses/forwarded/{id}"), None).await;
    assert_eq!(got["address"], "team@example.com");
    assert_eq!(got["name"], "The team");
    assert_eq!(got["targets"], json!(["far@remote.example", hook]));
    assert_eq!(got["tags"], json!(["a", "b"]));
    assert_eq!(got["forwardedDisabled"], false);
    assert_eq!(got["autoreply"]["status"], true, "a sent autoreply is on");
    assert_eq!(got["autoreply"]["subject"], "Away");
    assert_eq!(
        got["limits"]["forwards"],
        json!({"allowed": 3, "used": 0, "ttl": false})
    );
    assert_eq!(got["metaData"], json!({"k": 1}));
    let resolved = ok(&app, "GET", "/addresses/resolve/team@example.com", None).await;
    assert_eq!(resolved["id"], id.as_str());
    assert!(resolved.get("forwardedDisabled").is_none());
    let by_id = ok(&app, "GET", &format!("/addresses/resolve/{id}"), None).await;
    assert_eq!(by_id["targets"], got["targets"]);
    // Listed with users' addresses, counted in the total.
    let listed = ok(&app, "GET", "/addresses?query=team", None).await;
    assert_eq!(listed["total"], 1);
    let entry = &listed["results"][0];
    assert_eq!(
        (entry["id"].as_str(), entry["forwarded"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert_eq!(entry["targets"], got["targets"]);
    assert!(entry.get("user").is_none());
    assert_eq!(ok(&app, "GET", "/addresses", None).await["total"], 2);

    // One address is a user's or forwarded, never both; bad input changes nothing.
    for (body, code) in [
        (
            json!({"address": "local@example.com", "targets": ["x@remote.example"]}),
            "AddressExistsError",
        ),
        (
            json!({"address": "team@example.com", "targets": ["x@remote.example"]}),
            "AddressExistsError",
        ),
        (
            json!({"address": "self@example.com", "targets": ["s.elf@example.com"]}),
            "InputValidationError",
        ),
        (
            json!({"address": "t2@example.com", "targets": ["ftp://nope"]}),
            "InputValidationError",
        ),
        (
            json!({"address": "*@example.com", "targets": ["x@remote.example"]}),
            "InputValidationError",
        ),
        (
            json!({"address": "t3@example.com", "autoreply": {"bogus": 1}}),
            "InputValidationError",
        ),
    ] {
        let (status, answer) = app.post("/addresses/forwarded", body.clone()).await;
        // A taken address is 409, as for users' addresses (Eider's compatibility decision).
        let wanted = if code == "AddressExistsError" {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, wanted, "{body} -> {answer}");
        assert_eq!(answer["code"], code, "{body} -> {answer}");
    }
    let (status, _) = app
        .post(
            &format!("/users/{local}/addresses"),
            json!({"address": "team@example.com"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a user can't take a forwarded address"
    );

    // Over LMTP: sent on to the relay and the URL, stored nowhere.
    let port = lmtp_server(
        &app,
        Outbound::Smtp {
            host: "127.0.0.1".into(),
            port: sink.port,
        },
    )
    .await;
    let (rcpt, data) = lmtp_send(
        port,
        &["team@example.com", "local@example.com"],
        "for the team",
    )
    .await;
    assert_eq!(rcpt, [250, 250]);
    assert_eq!(
        data.iter().map(|d| d.0).collect::<Vec<_>>(),
        [250, 250],
        "{data:?}"
    );
    assert!(data[0].1.contains("forwarded to 2"), "{data:?}");
    // The forward, and the address's autoreply to the sender.
    let sent = sink.messages();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let forward = sent
        .iter()
        .find(|m| m.to == ["far@remote.example"])
        .unwrap();
    assert!(
        forward
            .data
            .starts_with("Delivered-To: team@example.com\r\n")
    );
    let reply = sent
        .iter()
        .find(|m| m.to == ["sender@remote.example"])
        .unwrap();
    assert_eq!(reply.from, "", "autoreplies use the null sender");
    assert!(reply.data.contains("Subject: Auto: Away"), "{}", reply.data);
    assert!(reply.data.contains("Back soon"));
    assert!(reply.data.contains("team@example.com"));
    let posted = hooks.bodies.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    assert!(String::from_utf8_lossy(&posted[0].1).contains("Subject: for the team"));
    assert_eq!(inbox_subjects(&app, &local).await, ["for the team"]);
    let got = ok(&app, "GET", &format!("/addresses/forwarded/{id}"), None).await;
    assert_eq!(got["limits"]["forwards"]["used"], 2);
    assert!(got["limits"]["forwards"]["ttl"].as_i64().unwrap() > 0);

    // The daily limit (3): a second message needs 2 more: refused for now (4xx), not lost.
    let (rcpt, data) = lmtp_send(port, &["team@example.com"], "one too many").await;
    assert_eq!(rcpt, [250]);
    assert_eq!(data[0].0, 451, "{data:?}");
    assert_eq!(sink.messages().len(), 2, "nothing more went out");

    // Updates: a rename moves the claim; disabled forwarding refuses the recipient.
    ok(
        &app,
        "PUT",
        &format!("/addresses/forwarded/{id}"),
        Some(
            json!({"address": "crew@example.com", "forwardedDisabled": true, "forwards": 10,
                    "autoreply": {"status": false}}),
        ),
    )
    .await;
    let got = ok(&app, "GET", &format!("/addresses/forwarded/{id}"), None).await;
    assert_eq!(got["address"], "crew@example.com");
    assert_eq!(got["forwardedDisabled"], true);
    assert_eq!(got["autoreply"]["status"], false);
    assert_eq!(
        got["autoreply"]["subject"], "Away",
        "a partial autoreply keeps the rest"
    );
    let (status, _) = app.get("/addresses/resolve/team@example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (rcpt, _) = lmtp_send(port, &["crew@example.com"], "disabled").await;
    assert_eq!(rcpt, [550]);
    let (status, answer) = app
        .put(
            &format!("/addresses/forwarded/{id}"),
            json!({"address": "local@example.com"}),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::CONFLICT, Some("AddressExistsError"))
    );

    ok(&app, "DELETE", &format!("/addresses/forwarded/{id}"), None).await;
    let (status, answer) = app.get(&format!("/addresses/forwarded/{id}")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("AddressNotFound"))
    );
    let (rcpt, _) = lmtp_send(port, &["crew@example.com"], "gone").await;
    assert_eq!(rcpt, [550]);
    // The address is free for a user now.
    ok(
        &app,
        "POST",
        &format!("/users/{local}/addresses"),
        Some(json!({"address": "crew@example.com"})),
    )
    .await;
}

async fn health_answers_when_the_store_is_writable(app: TestApp) {
    let answer = ok(&app, "GET", "/health", None).await;
    assert_eq!(answer["success"], true);
    assert!(answer["version"].as_str().is_some_and(|v| !v.is_empty()));
    // It leaves nothing behind.
    let leftovers = app.state.blobs.get("health/anything").await.unwrap();
    assert!(leftovers.is_none());
}

async fn domain_access_lists_decide_junk_for_tagged_users(app: TestApp) {
    let tagged = app
        .create_user(json!({"username": "tagged", "password": "a-long-pass",
                            "address": "tagged@example.com", "tags": ["Customers", "vip"]}))
        .await;
    let plain = new_user(&app, "plain", "plain@example.com").await;
    let blocked = ok(
        &app,
        "POST",
        "/domainaccess/customers/block",
        Some(json!({"domain": "Spammy.Example"})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &app,
        "POST",
        "/domainaccess/VIP/allow",
        Some(json!({"domain": "friendly.example"})),
    )
    .await;
    // `allow` for an allowed domain's tag twice keeps one entry; block then allow flips it.
    let flip = ok(
        &app,
        "POST",
        "/domainaccess/vip/block",
        Some(json!({"domain": "flip.example"})),
    )
    .await;
    let flipped = ok(
        &app,
        "POST",
        "/domainaccess/vip/allow",
        Some(json!({"domain": "flip.example"})),
    )
    .await;
    assert_eq!(flip["id"], flipped["id"]);
    let allowed = ok(&app, "GET", "/domainaccess/Vip/allow", None).await;
    let domains: Vec<&str> = allowed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["domain"].as_str().unwrap())
        .collect();
    assert_eq!(domains, ["flip.example", "friendly.example"]);
    assert_eq!(allowed["results"][0]["action"], "allow");
    let blocks = ok(&app, "GET", "/domainaccess/customers/block", None).await;
    assert_eq!(
        blocks["results"],
        json!([{"id": blocked, "domain": "spammy.example", "action": "block"}])
    );
    assert_eq!(
        ok(&app, "GET", "/domainaccess/vip/block", None).await["results"],
        json!([])
    );
    // Bad input changes nothing.
    for body in [
        json!({"domain": "not a domain"}),
        json!({}),
        json!({"domain": "a.example", "x": 1}),
    ] {
        let (status, answer) = app.post("/domainaccess/vip/allow", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
    }
    assert_eq!(
        ok(&app, "GET", "/domainaccess/vip/allow", None).await["results"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Over LMTP, a filter marking everything as junk and a spam score both lose to the rule.
    ok(
        &app,
        "POST",
        &format!("/users/{tagged}/filters"),
        Some(json!({"query_subject": "offer", "action_spam": true})),
    )
    .await;
    let sink = smtp_sink().await;
    let port = lmtp_server(
        &app,
        Outbound::Smtp {
            host: "127.0.0.1".into(),
            port: sink.port,
        },
    )
    .await;
    let send = |from: &'static str, subject: &'static str| async move {
        // A spoofed classification header, which delivery must replace or drop.
        let raw = format!(
            "From: <{from}>\nTo: tagged@example.com\nWD-Mail-Classification: not-junk\nSubject: {subject}\n\nHi\n"
        );
        let conversation = converse_async(
            port,
            vec![(
                from.into(),
                vec!["tagged@example.com".into(), "plain@example.com".into()],
                raw,
            )],
        )
        .await;
        assert!(
            conversation.messages[0].data.iter().all(|d| d.0 == 250),
            "{conversation:?}"
        );
    };
    send("news@spammy.example", "blocked").await;
    send("boss@friendly.example", "an offer from a friend").await;
    send("someone@sub.spammy.example", "subdomains are not listed").await;
    let junk = app.mailbox_id(&tagged, "Junk").await;
    let (_, list) = app
        .get(&format!("/users/{tagged}/mailboxes/{junk}/messages"))
        .await;
    let junked: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(junked, ["blocked"]);
    // WildDuck's classification headers say why (any the sender put in are replaced).
    let source_of = |mailbox: String, uid: u64| {
        let app = &app;
        let tagged = tagged.clone();
        async move {
            let request = http::Request::get(format!(
                "/users/{tagged}/mailboxes/{mailbox}/messages/{uid}/message.eml"
            ))
            .body(axum::body::Body::empty())
            .unwrap();
            let (_, _, bytes) = app.send_raw(request).await;
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    let blocked_source = source_of(junk.clone(), list["results"][0]["id"].as_u64().unwrap()).await;
    assert!(
        blocked_source.contains("\r\nWD-Mail-Classification: junk\r\n"),
        "{blocked_source}"
    );
    assert!(blocked_source.contains("WD-Mail-Classification-Source: user-domainaccess\r\n"));
    assert!(blocked_source.contains("messages from the sender domain spammy.example are blocked"));
    let inbox = app.mailbox_id(&tagged, "INBOX").await;
    let allowed_source = source_of(inbox.clone(), 1).await;
    assert!(
        allowed_source.contains("WD-Mail-Classification: not-junk\r\n"),
        "{allowed_source}"
    );
    assert_eq!(allowed_source.matches("WD-Mail-Classification:").count(), 1);
    // Subdomains are not listed: nothing decided, so the message is stored as sent (WildDuck).
    let unlisted = source_of(inbox, 2).await;
    assert!(
        unlisted.contains("WD-Mail-Classification: not-junk"),
        "kept as sent: {unlisted}"
    );
    assert_eq!(
        inbox_subjects(&app, &tagged).await,
        ["an offer from a friend", "subdomains are not listed"]
    );
    // A user without the tags is untouched by the lists.
    assert_eq!(inbox_subjects(&app, &plain).await.len(), 3);

    ok(&app, "DELETE", &format!("/domainaccess/{blocked}"), None).await;
    let (status, answer) = app.delete(&format!("/domainaccess/{blocked}")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("DomainNotFound"))
    );
    send("news@spammy.example", "no longer blocked").await;
    assert_eq!(inbox_subjects(&app, &tagged).await.len(), 3);
}

async fn a_deleted_user_is_restored_until_the_purge_starts(app: TestApp) {
    use eider_shared::domain::janitor::{self, Budget};
    let carol = new_user(&app, "carol", "carol@example.com").await;
    for alias in ["carol.work@example.com", "carol.home@example.com"] {
        ok(
            &app,
            "POST",
            &format!("/users/{carol}/addresses"),
            Some(json!({"address": alias})),
        )
        .await;
    }
    let inbox = app.mailbox_id(&carol, "INBOX").await;
    app.upload_ok(
        &carol,
        &inbox,
        "From: a@example.com\r\nSubject: kept\r\n\r\nhello\r\n",
        json!({}),
    )
    .await;
    let used = app.storage_used(&carol).await;
    let deleted = ok(&app, "DELETE", &format!("/users/{carol}"), None).await;
    assert_eq!(deleted["code"], "TaskScheduled");
    assert_eq!(deleted["addresses"]["deleted"], 3);
    let (status, _) = app.get(&format!("/users/{carol}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its addresses are free at once; one is taken by someone else meanwhile.
    let dave = new_user(&app, "dave", "dave@example.com").await;
    ok(
        &app,
        "POST",
        &format!("/users/{dave}/addresses"),
        Some(json!({"address": "carol.home@example.com"})),
    )
    .await;

    let restorable = ok(&app, "GET", &format!("/users/{carol}/restore"), None).await;
    assert_eq!(restorable["username"], "carol");
    assert_eq!(restorable["storageUsed"], used);
    assert_eq!(restorable["deleted"].as_str().unwrap().len(), 24);
    let mut recoverable: Vec<&str> = restorable["recoverableAddresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    recoverable.sort();
    assert_eq!(recoverable, ["carol.work@example.com", "carol@example.com"]);

    let restored = ok(
        &app,
        "POST",
        &format!("/users/{carol}/restore"),
        Some(json!({"sess": "s1"})),
    )
    .await;
    assert_eq!(restored["code"], "TaskCancelled");
    assert_eq!(restored["task"], deleted["task"]);
    assert_eq!(
        restored["addresses"],
        json!({"recovered": 2, "main": "carol@example.com"})
    );
    let profile = ok(&app, "GET", &format!("/users/{carol}"), None).await;
    assert_eq!(profile["address"], "carol@example.com");
    assert_eq!(profile["limits"]["quota"]["used"], used);
    assert_eq!(inbox_subjects(&app, &carol).await, ["kept"]);
    let login = ok(
        &app,
        "POST",
        "/authenticate",
        Some(json!({"username": "carol.work@example.com", "password": "a-long-pass"})),
    )
    .await;
    assert_eq!(login["id"], carol.as_str());
    let (_, list) = app.get(&format!("/users/{carol}/addresses")).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 2);
    // Once restored there is nothing to restore, and the janitor finds no task.
    let (status, answer) = app.get(&format!("/users/{carol}/restore")).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("AccountNotFound"))
    );
    let (status, _) = app
        .post(&format!("/users/{carol}/restore"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let later = chrono::Utc::now() + chrono::Duration::days(30);
    janitor::run(&app.state, later, Budget::items(1_000_000))
        .await
        .unwrap();
    assert_eq!(inbox_subjects(&app, &carol).await, ["kept"]);

    // Deleted again: once the purge has started (a run cut short), no restore.
    ok(&app, "DELETE", &format!("/users/{carol}"), None).await;
    let cut = janitor::run(&app.state, later, Budget::items(2))
        .await
        .unwrap();
    assert!(cut.more_work, "{cut:?}");
    let (status, answer) = app
        .post(&format!("/users/{carol}/restore"), json!({}))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::CONFLICT, Some("DeleteInProgress")),
        "{answer}"
    );
    let (status, _) = app.get(&format!("/users/{carol}/restore")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    janitor::run(&app.state, later, Budget::items(1_000_000))
        .await
        .unwrap();
    let (status, answer) = app
        .post(&format!("/users/{carol}/restore"), json!({}))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("AccountNotFound"))
    );
    let (status, _) = app.get(&format!("/users/{carol}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Verifies a message's DKIM signature with dkimpy (an independent implementation) against
/// the given DNS TXT records; returns dkimpy's verdict. The tools' Python (scripts/test.sh
/// installs dkimpy beside moto) is found next to `EIDER_MOTO_SERVER`.
fn dkimpy_verifies(message: &[u8], records: &[(String, String)]) -> bool {
    let moto = std::env::var("EIDER_MOTO_SERVER")
        .expect("EIDER_MOTO_SERVER names the tools' moto_server (scripts/test.sh sets it)");
    let python = std::path::Path::new(&moto).with_file_name("python");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, message).unwrap();
    let records = serde_json::to_string(
        &records
            .iter()
            .cloned()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    let script = r#"
import json, sys, dkim
records = json.loads(sys.argv[2])
def dns(name, timeout=5):
    return records.get(name.decode().rstrip('.'), '').encode()
message = open(sys.argv[1], 'rb').read()
print('pass' if dkim.verify(message, dnsfunc=dns) else 'fail')
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, path.to_str().unwrap(), &records])
        .output()
        .expect("the tools' python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() == "pass"
}

async fn dkim_keys_are_managed_and_outgoing_mail_is_signed(app: TestApp) {
    // A generated RSA key for example.com, an imported Ed25519 seed as the fallback (`*`).
    let rsa = ok(
        &app,
        "POST",
        "/dkim",
        Some(json!({"domain": "Example.com", "selector": "s2026", "description": "main"})),
    )
    .await;
    assert_eq!(rsa["domain"], "example.com");
    assert!(rsa.get("privateKey").is_none());
    assert!(
        rsa["publicKey"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(rsa["dnsTxt"]["name"], "s2026._domainkey.example.com");
    assert!(
        rsa["dnsTxt"]["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1;t=s;p=MII")
    );
    assert_eq!(rsa["fingerprint"].as_str().unwrap().split(':').count(), 32);
    let seed = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    let ed = ok(
        &app,
        "POST",
        "/dkim",
        Some(json!({"domain": "*", "selector": "ed", "privateKey": seed})),
    )
    .await;
    assert!(
        ed["dnsTxt"]["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1;k=ed25519;t=s;p=")
    );
    // A second POST for a domain replaces its key and keeps its id.
    let again = ok(
        &app,
        "POST",
        "/dkim",
        Some(json!({"domain": "*", "selector": "ed2", "privateKey": seed})),
    )
    .await;
    assert_eq!(again["id"], ed["id"]);
    let listed = ok(&app, "GET", "/dkim", None).await;
    assert_eq!(listed["total"], 2);
    let domains: Vec<&str> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["domain"].as_str().unwrap())
        .collect();
    assert_eq!(domains, ["*", "example.com"]);
    let id = rsa["id"].as_str().unwrap();
    let got = ok(&app, "GET", &format!("/dkim/{id}"), None).await;
    assert_eq!(got["dnsTxt"], rsa["dnsTxt"]);
    assert_eq!(got["description"], "main");
    assert!(got.get("privateKey").is_none());
    let resolved = ok(&app, "GET", "/dkim/resolve/EXAMPLE.com", None).await;
    assert_eq!(resolved["id"], id);
    // Bad input changes nothing.
    for body in [
        json!({"domain": "example.org", "selector": "s", "privateKey": "garbage"}),
        json!({"domain": "example.org", "selector": "s", "privateKey": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}),
        json!({"domain": "not a domain", "selector": "s"}),
        json!({"domain": "example.org"}),
        json!({"domain": "example.org", "selector": "bad selector"}),
    ] {
        let (status, answer) = app.post("/dkim", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(answer["code"], "InputValidationError", "{answer}");
    }
    assert_eq!(ok(&app, "GET", "/dkim", None).await["total"], 2);
    let (status, answer) = app.get("/dkim/resolve/example.org").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("DkimNotFound"))
    );

    // Mail going out: an autoreply from example.com (its own key), a forward of a remote
    // sender's message (the fallback key, for the sender's domain).
    let records = vec![
        (
            rsa["dnsTxt"]["name"].as_str().unwrap().to_string(),
            rsa["dnsTxt"]["value"].as_str().unwrap().to_string(),
        ),
        (
            "ed2._domainkey.remote.example".to_string(),
            again["dnsTxt"]["value"].as_str().unwrap().to_string(),
        ),
    ];
    let gus = new_user(&app, "gus", "gus@example.com").await;
    ok(
        &app,
        "PUT",
        &format!("/users/{gus}/autoreply"),
        Some(json!({"status": true, "subject": "Away", "text": "Back soon"})),
    )
    .await;
    ok(
        &app,
        "POST",
        "/addresses/forwarded",
        Some(json!({"address": "fwd@example.com", "targets": ["far@elsewhere.example"]})),
    )
    .await;
    let sink = smtp_sink().await;
    let port = lmtp_server(
        &app,
        Outbound::Smtp {
            host: "127.0.0.1".into(),
            port: sink.port,
        },
    )
    .await;
    let (rcpt, data) = lmtp_send(port, &["gus@example.com", "fwd@example.com"], "Lunch?").await;
    assert_eq!(rcpt, [250, 250]);
    assert!(data.iter().all(|d| d.0 == 250), "{data:?}");
    let sent = sink.messages();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let reply = sent
        .iter()
        .find(|m| m.to == ["sender@remote.example"])
        .unwrap();
    assert!(
        reply.data.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
        "{}",
        reply.data
    );
    assert!(
        reply.data.contains(" d=example.com;") && reply.data.contains(" s=s2026;"),
        "{}",
        reply.data
    );
    assert!(
        dkimpy_verifies(reply.data.as_bytes(), &records),
        "{}",
        reply.data
    );
    let forward = sent
        .iter()
        .find(|m| m.to == ["far@elsewhere.example"])
        .unwrap();
    assert!(
        forward.data.contains("a=ed25519-sha256;"),
        "{}",
        forward.data
    );
    assert!(
        forward.data.contains(" d=remote.example;") && forward.data.contains(" s=ed2;"),
        "{}",
        forward.data
    );
    assert!(
        dkimpy_verifies(forward.data.as_bytes(), &records),
        "{}",
        forward.data
    );
    // A changed message no longer verifies (the verifier is not a rubber stamp).
    let tampered = reply.data.replace("Back soon", "Back later");
    assert!(!dkimpy_verifies(tampered.as_bytes(), &records));

    // Without keys, mail goes out unsigned.
    ok(&app, "DELETE", &format!("/dkim/{id}"), None).await;
    ok(
        &app,
        "DELETE",
        &format!("/dkim/{}", ed["id"].as_str().unwrap()),
        None,
    )
    .await;
    let (status, _) = app.get(&format!("/dkim/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    lmtp_send(port, &["fwd@example.com"], "unsigned").await;
    let last = sink.messages().pop().unwrap();
    assert!(!last.data.contains("DKIM-Signature"), "{}", last.data);
}

async fn settings_change_defaults_for_every_function_without_a_redeploy(app: TestApp) {
    use tower::ServiceExt as _;
    let listed = ok(&app, "GET", "/settings", None).await;
    let keys: Vec<&str> = listed["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "const:archive:time",
            "const:authlog:time",
            "const:max:forwards",
            "const:max:recipients",
            "const:max:storage"
        ]
    );
    let storage = &listed["settings"][4];
    let configured = app.state.config.max_storage;
    assert_eq!(storage["value"], configured);
    assert_eq!(storage["default"], configured);
    assert_eq!(storage["custom"], false);
    assert_eq!(
        ok(&app, "GET", "/settings?filter=MAX", None).await["settings"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let erin = new_user(&app, "erin", "erin@example.com").await;
    ok(
        &app,
        "POST",
        "/settings/const:max:storage",
        Some(json!({"value": 1000})),
    )
    .await;
    assert_eq!(
        ok(&app, "GET", "/settings/const:max:storage", None).await["value"],
        1000
    );
    let profile = ok(&app, "GET", &format!("/users/{erin}"), None).await;
    assert_eq!(profile["limits"]["quota"]["allowed"], 1000);
    let inbox = app.mailbox_id(&erin, "INBOX").await;
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(2000));
    let (status, answer) = app
        .post(
            &format!("/users/{erin}/mailboxes/{inbox}/messages"),
            json!({ "raw": big }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], "OverQuotaError");

    // Another function (its own process and config) over the same store applies it too.
    let other_state = eider_shared::http::AppState::new(
        app.state.table.clone(),
        app.state.blobs.clone(),
        eider_tests::app::test_config(),
    );
    let other = eider_shared::http::finish::finish(eider_local::router(), other_state);
    let response = other
        .oneshot(
            http::Request::get(format!("/users/{erin}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(seen["limits"]["quota"]["allowed"], 1000, "{seen}");

    // Listed as changed; a user's own quota still wins.
    let listed = ok(&app, "GET", "/settings", None).await;
    assert_eq!(listed["settings"][4]["custom"], true);
    assert_eq!(listed["settings"][4]["default"], configured);
    ok(
        &app,
        "PUT",
        &format!("/users/{erin}"),
        Some(json!({"quota": 5000})),
    )
    .await;
    app.upload_ok(&erin, &inbox, &big, json!({})).await;

    // Bad input changes nothing; an unknown key reads as WildDuck answers it.
    for (uri, body) in [
        ("/settings/const:max:storage", json!({"value": "lots"})),
        ("/settings/const:max:storage", json!({"value": -1})),
        ("/settings/const:max:storage", json!({})),
        ("/settings/const:unknown", json!({"value": 1})),
    ] {
        let (status, answer) = app.post(uri, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {body} -> {answer}");
    }
    assert_eq!(
        ok(&app, "GET", "/settings/const:max:storage", None).await["value"],
        1000
    );
    let unknown = ok(&app, "GET", "/settings/const:unknown", None).await;
    assert_eq!(
        unknown,
        json!({"success": false, "key": "const:unknown", "error": "Key was not found"})
    );
}

async fn a_domain_rename_moves_addresses_keys_and_aliases(app: TestApp) {
    let ann = new_user(&app, "ann", "ann@old.example").await;
    let bob = new_user(&app, "bob", "bob@other.example").await;
    let cat = new_user(&app, "cat", "taken@new.example").await;
    let dan = new_user(&app, "dan", "dan@other.example").await;
    for (user, body) in [
        (&ann, json!({"address": "ann.alt@old.example"})),
        (&bob, json!({"address": "bob@old.example"})),
        (
            &bob,
            json!({"address": "*@old.example", "allowWildcard": true}),
        ),
        (&dan, json!({"address": "taken@old.example"})),
    ] {
        ok(
            &app,
            "POST",
            &format!("/users/{user}/addresses"),
            Some(body),
        )
        .await;
    }
    ok(
        &app,
        "POST",
        "/addresses/forwarded",
        Some(json!({"address": "fwd@old.example", "targets": ["x@remote.example"]})),
    )
    .await;
    let key = ok(
        &app,
        "POST",
        "/dkim",
        Some(json!({"domain": "old.example", "selector": "k"})),
    )
    .await;
    ok(
        &app,
        "POST",
        "/domainaliases",
        Some(json!({"alias": "alias.example", "domain": "old.example"})),
    )
    .await;

    for body in [
        json!({"oldDomain": "old.example"}),
        json!({"oldDomain": "x", "newDomain": "bad domain"}),
    ] {
        let (status, _) = app.put("/addresses/renameDomain", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let renamed = ok(
        &app,
        "PUT",
        "/addresses/renameDomain",
        Some(json!({"oldDomain": "OLD.example", "newDomain": "new.example"})),
    )
    .await;
    assert_eq!(
        renamed,
        json!({"success": true, "modifiedAddresses": 5, "modifiedUsers": 1, "modifiedDkim": 1,
               "modifiedAliases": 1, "skippedAddresses": 1})
    );
    let profile = ok(&app, "GET", &format!("/users/{ann}"), None).await;
    assert_eq!(profile["address"], "ann@new.example");
    let login = ok(
        &app,
        "POST",
        "/authenticate",
        Some(json!({"username": "ann.alt@new.example", "password": "a-long-pass"})),
    )
    .await;
    assert_eq!(login["id"], ann.as_str());
    let (status, _) = app.get("/addresses/resolve/ann.alt@old.example").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let found = ok(
        &app,
        "GET",
        "/addresses/resolve/someone@new.example?allowWildcard=true",
        None,
    )
    .await;
    assert_eq!(found["user"], bob.as_str());
    let fwd = ok(&app, "GET", "/addresses/resolve/fwd@new.example", None).await;
    assert_eq!(fwd["targets"], json!(["x@remote.example"]));
    // The taken address stayed on the old domain, with its owner.
    let kept = ok(&app, "GET", "/addresses/resolve/taken@old.example", None).await;
    assert_eq!(kept["user"], dan.as_str());
    let taken = ok(&app, "GET", "/addresses/resolve/taken@new.example", None).await;
    assert_eq!(taken["user"], cat.as_str());
    let moved_key = ok(&app, "GET", "/dkim/resolve/new.example", None).await;
    assert_eq!(moved_key["id"], key["id"]);
    let (status, _) = app.get("/dkim/resolve/old.example").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let alias = ok(&app, "GET", "/domainaliases/resolve/alias.example", None).await;
    let alias = ok(
        &app,
        "GET",
        &format!("/domainaliases/{}", alias["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(alias["domain"], "new.example");
    // Renaming again finds nothing left to move but the skipped one.
    let again = ok(
        &app,
        "PUT",
        "/addresses/renameDomain",
        Some(json!({"oldDomain": "old.example", "newDomain": "new.example"})),
    )
    .await;
    assert_eq!(again["modifiedAddresses"], 0);
    assert_eq!(again["skippedAddresses"], 1);
}

async fn a_quota_reset_of_every_user_runs_as_a_resumable_task(app: TestApp) {
    use eider_shared::domain::janitor::{self, Budget};
    use eider_shared::store::{Update, Write};
    // 52 users (more than a step of 50), each with a message and a drifted counter.
    let mut users = Vec::new();
    for i in 0..52 {
        let user = new_user(&app, &format!("q{i:02}"), &format!("q{i:02}@example.com")).await;
        let inbox = app.mailbox_id(&user, "INBOX").await;
        app.upload_ok(&user, &inbox, "Subject: q\r\n\r\nhello\r\n", json!({}))
            .await;
        let id: eider_shared::id::ObjectId = user.parse().unwrap();
        app.state
            .table
            .transact(vec![Write::update(
                eider_shared::domain::keys::user(&id),
                Update::default().add("storageUsed", 1000 + i),
            )])
            .await
            .unwrap();
        users.push(user);
    }
    let before = app.storage_used(&users[0]).await;
    assert!(before > 1000);
    let started = ok(&app, "POST", "/quota/reset", Some(json!({"sess": "s"}))).await;
    assert_eq!(started["task"].as_str().unwrap().len(), 24);
    // A run cut short leaves work; the next ones finish it.
    let now = chrono::Utc::now() + chrono::Duration::minutes(1);
    let first = janitor::run(&app.state, now, Budget::items(60))
        .await
        .unwrap();
    assert!(first.more_work, "{first:?}");
    for _ in 0..10 {
        let report = janitor::run(&app.state, now, Budget::items(1_000_000))
            .await
            .unwrap();
        if !report.more_work {
            break;
        }
    }
    for user in &users {
        let inbox = app.mailbox_id(user, "INBOX").await;
        let (_, list) = app
            .get(&format!("/users/{user}/mailboxes/{inbox}/messages"))
            .await;
        let size = list["results"][0]["size"].as_u64().unwrap();
        assert_eq!(app.storage_used(user).await, size, "{user}");
    }
    let (status, _) = app.post("/quota/reset", json!({"bogus": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn filters_of_every_user_are_listed_and_paged(app: TestApp) {
    let mut ids = Vec::new();
    let mut owners = Vec::new();
    for (i, name) in ["fa", "fb", "fc"].iter().enumerate() {
        let user = new_user(&app, name, &format!("{name}@example.com")).await;
        for j in 0..2 {
            let mut body = json!({"name": format!("{name}-{j}"), "query": {"subject": "x"}, "action": {"seen": true}});
            if j == 1 {
                body["action"]["targets"] = json!([format!("http://hooks{i}.example/in")]);
            }
            let created = ok(&app, "POST", &format!("/users/{user}/filters"), Some(body)).await;
            ids.push(created["id"].as_str().unwrap().to_string());
            owners.push(user.clone());
        }
    }
    let all = ok(&app, "GET", "/filters?limit=4", None).await;
    let page: Vec<&str> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        page,
        ids[..4].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(all["results"][0]["user"], owners[0].as_str());
    assert_eq!(
        all["results"][1]["targets"],
        json!(["http://hooks0.example/in"])
    );
    let next = all["nextCursor"].as_str().unwrap();
    let rest = ok(&app, "GET", &format!("/filters?limit=4&next={next}"), None).await;
    assert_eq!(rest["results"].as_array().unwrap().len(), 2);
    assert_eq!(rest["nextCursor"], false);
    let hooks = ok(&app, "GET", "/filters?forward=hooks2", None).await;
    assert_eq!(hooks["results"].as_array().unwrap().len(), 1);
    assert_eq!(hooks["results"][0]["id"], ids[5].as_str());
    // A deleted filter leaves the listing.
    ok(
        &app,
        "DELETE",
        &format!("/users/{}/filters/{}", owners[5], ids[5]),
        None,
    )
    .await;
    assert_eq!(
        ok(&app, "GET", "/filters?forward=hooks2", None).await["results"],
        json!([])
    );
}

async fn the_address_register_learns_correspondents_from_stored_mail(app: TestApp) {
    let user = new_user(&app, "reg", "reg@example.com").await;
    let sent = app.mailbox_id(&user, "Sent Mail").await;
    let inbox = app.mailbox_id(&user, "INBOX").await;
    let junk = app.mailbox_id(&user, "Junk").await;
    let upload = |mailbox: String, raw: &'static str| {
        let app = &app;
        let user = user.clone();
        async move { app.upload_ok(&user, &mailbox, raw, json!({})).await }
    };
    upload(sent.clone(), "From: reg@example.com\r\nTo: \"Alice A\" <alice@x.example>\r\nCc: bob@y.example\r\nBcc: noreply@z.example\r\nSubject: hi\r\n\r\nhi\r\n").await;
    upload(
        inbox.clone(),
        "From: Carol <carol@w.example>\r\nTo: reg@example.com\r\nSubject: re\r\n\r\nre\r\n",
    )
    .await;
    upload(
        inbox.clone(),
        "From: list@lists.example\r\nList-ID: <l.lists.example>\r\nSubject: news\r\n\r\nn\r\n",
    )
    .await;
    upload(junk, "From: spam@s.example\r\nSubject: buy\r\n\r\nb\r\n").await;
    let search = |query: &'static str| {
        let app = &app;
        let user = user.clone();
        async move {
            let found = ok(
                app,
                "GET",
                &format!("/users/{user}/addressregister?query={query}"),
                None,
            )
            .await;
            found["results"].as_array().unwrap().clone()
        }
    };
    let all = search("example").await;
    let addresses: Vec<&str> = all.iter().map(|r| r["address"].as_str().unwrap()).collect();
    assert_eq!(
        addresses,
        ["carol@w.example", "alice@x.example", "bob@y.example"]
    );
    let alice = search("ali").await;
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0]["name"], "Alice A");
    assert_eq!(
        search("car").await[0]["name"],
        "Carol",
        "a name prefix, any case"
    );
    assert!(search("CAR").await.len() == 1);
    assert!(search("noreply").await.is_empty());

    let id = alice[0]["id"].as_str().unwrap();
    let changed = ok(
        &app,
        "PUT",
        &format!("/users/{user}/addressregister/{id}"),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(changed["success"], true);
    assert!(search("alice").await.is_empty());
    // Later mail does not bring a disabled entry back.
    upload(
        inbox,
        "From: Alice A <alice@x.example>\r\nSubject: again\r\n\r\na\r\n",
    )
    .await;
    assert!(search("alice").await.is_empty());
    let unknown = ok(
        &app,
        "PUT",
        &format!(
            "/users/{user}/addressregister/{}",
            eider_shared::id::ObjectId::new()
        ),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(unknown["success"], false);
    let (status, _) = app.get(&format!("/users/{user}/addressregister")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "query is required");
    let (status, _) = app
        .put(
            &format!("/users/{user}/addressregister/{id}"),
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "disabled is required");
}
