//! The API document: generated from the routes and their validators, shipped as
//! docs/openapi.json and served at `/openapi.json`. `EIDER_WRITE_OPENAPI=1 cargo test -p
//! eider-local --test openapi` rewrites the shipped copy after a change.

use std::collections::BTreeSet;

use eider_shared::http::openapi;
use serde_json::Value;

async fn generated() -> (String, Value) {
    let document = openapi::document(eider_local::routes()).await.unwrap();
    let text = document.to_pretty_json().unwrap() + "\n";
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

#[tokio::test]
async fn the_shipped_and_served_document_is_what_the_code_generates() {
    let (text, _) = generated().await;
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    if std::env::var_os("EIDER_WRITE_OPENAPI").is_some() {
        std::fs::write(shipped, &text).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(shipped).unwrap();
    assert!(
        on_disk == text,
        "docs/openapi.json differs from what the code generates: run \
         EIDER_WRITE_OPENAPI=1 cargo test -p eider-local --test openapi"
    );
    // What GET /openapi.json answers (compiled into the users function).
    assert!(eider_users::API_DOCUMENT == text);
}

#[tokio::test]
async fn the_document_lists_every_route_and_nothing_else() {
    let document = openapi::document(eider_local::routes()).await.unwrap();
    let documented: BTreeSet<(String, String)> =
        openapi::operations(&document).into_keys().collect();
    let served: BTreeSet<(String, String)> = eider_local::routes()
        .list()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, served);

    let ids: Vec<String> = openapi::operations(&document).into_values().collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "operation ids repeat: {ids:?}");
    // The tables of special bodies and answers name real handlers.
    for handler in openapi::special_handlers() {
        assert!(ids.iter().any(|id| id == handler), "no handler {handler}");
    }
}

#[tokio::test]
async fn parameters_come_from_the_validators() {
    let (_, doc) = generated().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = &doc["paths"];

    // A strict body: required fields, limits and the username pattern.
    let create_user = &paths["/users"]["post"];
    assert_eq!(create_user["operationId"], "create_user");
    let body = &create_user["requestBody"]["content"]["application/json"]["schema"];
    let required: Vec<&str> = body["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"username"), "{body}");
    assert!(!required.contains(&"name"), "{body}");
    assert_eq!(body["properties"]["quota"]["type"], "integer");
    assert_eq!(body["properties"]["quota"]["minimum"], 0);
    assert_eq!(body["properties"]["tags"]["type"], "array");
    assert!(body["properties"]["username"]["pattern"].is_string());

    // Query parameters of a listing, and its typed path.
    let list = &paths["/users/{user}/mailboxes/{mailbox}/messages"]["get"];
    let params = list["parameters"].as_array().unwrap();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}: {params:?}"))
    };
    assert_eq!(param("user")["in"], "path");
    assert_eq!(param("mailbox")["schema"]["pattern"], "^[0-9a-fA-F]{24}$");
    assert_eq!(param("limit")["in"], "query");
    assert_eq!(param("limit")["schema"]["type"], "integer");
    assert_eq!(param("order")["schema"]["type"], "string");

    // A UID path part, and errors in WildDuck's shape.
    let message = &paths["/users/{user}/mailboxes/{mailbox}/messages/{message}"]["get"];
    let uid = message["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "message")
        .unwrap();
    assert_eq!(uid["schema"]["type"], "integer");
    assert_eq!(
        message["responses"]["404"]["$ref"],
        "#/components/responses/Error404"
    );
    let shared = &doc["components"]["responses"]["Error404"];
    assert_eq!(
        shared["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    // WildDuck's aliases: one handler, two operations.
    assert_eq!(
        paths["/users/{user}/archived/messages"]["get"]["operationId"],
        "list_archived_2"
    );
    // A body's required selector.
    let bulk = &paths["/users/{user}/mailboxes/{mailbox}/messages"]["put"];
    let bulk_body = &bulk["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        bulk_body["required"]
            .as_array()
            .unwrap()
            .contains(&"message".into()),
        "{bulk_body}"
    );
    assert_eq!(bulk_body["additionalProperties"], false);
    // Large sources and exports may answer a redirect to a presigned link.
    let source = &paths["/users/{user}/mailboxes/{mailbox}/messages/{message}/message.eml"]["get"];
    assert!(source["responses"]["307"]["headers"]["Location"].is_object());
    assert_eq!(
        source["responses"]["200"]["content"]["message/rfc822"],
        serde_json::json!({})
    );
    let export = &paths["/data/export"]["post"];
    assert!(export["responses"]["303"]["headers"]["Location"].is_object());
    assert!(export["responses"]["200"]["content"]["application/json"].is_null());
    // A raw message upload, besides the JSON fields.
    let upload = &paths["/users/{user}/mailboxes/{mailbox}/messages"]["post"];
    assert!(upload["requestBody"]["content"]["message/rfc822"].is_object());
    assert!(
        upload["requestBody"]["content"]["application/json"]["schema"]["properties"]["raw"]
            .is_object()
    );
}
