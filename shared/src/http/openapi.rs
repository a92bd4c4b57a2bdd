//! The API document (OpenAPI 3.1), generated from the code: the routes come from the endpoint
//! groups' route lists, each route's parameters from its own validators run in describe mode
//! (`super::describe`) on an empty store, and the operation ids from the handlers' names. A
//! route added, removed or given a new field changes the document; the shipped copy
//! (docs/openapi.json) is checked against it by a test.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ArrayBuilder, ComponentsBuilder, ContentBuilder, InfoBuilder, KnownFormat, ObjectBuilder,
    OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required, ResponseBuilder, Schema, SchemaFormat,
    Type,
};

use super::access::Caller;
use super::describe::{self, Description, FieldKind, PathKind};
use super::{AppState, Routes};
use crate::config::Config;
use crate::store::blob_fs::FsBlobStore;
use crate::store::embedded::EmbeddedTable;

/// Errors every operation may answer, in WildDuck's JSON error shape.
const ERRORS: [(&str, &str); 9] = [
    (
        "400",
        "Invalid input (`InputValidationError` with `details` per field) or request",
    ),
    ("401", "No access token, or an unknown one"),
    (
        "403",
        "The token may not do this (a user token on another user, or a root-only call)",
    ),
    ("404", "No such user, mailbox, message or other object"),
    (
        "409",
        "Conflicts with what exists (a taken address or name, a full quota)",
    ),
    ("413", "Request body too large"),
    (
        "414",
        "Request URI too long (the HTTP layer may answer without a body)",
    ),
    (
        "431",
        "Request header too large (the HTTP layer may answer without a body)",
    ),
    ("500", "An unexpected failure (logged with the request)"),
];

/// Handlers whose success is not a JSON object: their response types.
const RESPONSE_TYPES: [(&str, &[&str]); 6] = [
    ("get_message_source", &["message/rfc822"]),
    ("get_attachment", &["*/*"]),
    ("get_file", &["*/*"]),
    ("stream_updates", &["text/event-stream"]),
    ("export_audit", &["application/mbox"]),
    ("export_data", &["application/x-ndjson"]),
];

/// Handlers that answer a redirect to a presigned link where the blob store hands them out
/// (S3): large sources and attachments (`307`), and the exports, always there (`303`).
const REDIRECTS: [(&str, &str); 4] = [
    ("get_message_source", "307"),
    ("get_attachment", "307"),
    ("export_audit", "303"),
    ("export_data", "303"),
];

/// Handlers that take a body other than parameters (besides, or instead of, JSON fields).
const BODY_TYPES: [(&str, &str); 3] = [
    ("upload_message", "message/rfc822"),
    ("put_upload", "application/octet-stream"),
    ("import_data", "application/x-ndjson"),
];

/// Every handler name the tables above mention, for the test that keeps them true.
pub fn special_handlers() -> impl Iterator<Item = &'static str> {
    RESPONSE_TYPES
        .iter()
        .map(|(name, _)| *name)
        .chain(BODY_TYPES.iter().map(|(name, _)| *name))
        .chain(REDIRECTS.iter().map(|(name, _)| *name))
}

/// The document of `routes`.
pub async fn document(routes: Routes) -> anyhow::Result<OpenApi> {
    let dir = tempfile::tempdir()?;
    let table = EmbeddedTable::open(&dir.path().join("describe.redb"))?;
    let blobs = FsBlobStore::new(dir.path().join("blobs"))?;
    let state = AppState::new(Arc::new(table), Arc::new(blobs), Config::default());
    let named = routes.named();
    let app = routes
        .router()
        .layer(Extension(Caller::Root))
        .with_state(state);

    let mut paths = Paths::new();
    let mut ids = BTreeMap::<&str, usize>::new();
    for (method, path, handler) in named {
        let description = describe_route(&app, method, path).await?;
        let name = short_name(handler);
        // One handler behind two routes (WildDuck's aliases): the second is `name_2`.
        let seen = ids.entry(name).or_default();
        *seen += 1;
        let id = match *seen {
            1 => name.to_string(),
            n => format!("{name}_{n}"),
        };
        let operation = operation(method, path, name, &id, group(handler), &description);
        paths.add_path_operation(path, vec![http_method(method)], operation);
    }
    let mut components = ComponentsBuilder::new().schema("Error", error_schema());
    for (status, meaning) in ERRORS {
        let mut response = ResponseBuilder::new().description(meaning);
        if !matches!(status, "414" | "431") {
            let error = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build();
            response = response.content("application/json", error);
        }
        components = components.response(error_name(status), response.build());
    }
    Ok(OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Eider")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "WildDuck's HTTP API on DynamoDB and S3 (or the embedded store). Parameters \
                     go in the query string for GET and DELETE and in a JSON (or form) body for \
                     POST and PUT; numbers and booleans may also be given as strings, and lists \
                     as comma-separated strings. Errors answer `{error, code, details}`.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(
            components
                .security_scheme(
                    "accessToken",
                    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Access-Token"))),
                )
                .security_scheme(
                    "accessTokenQuery",
                    SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("accessToken"))),
                )
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
                )
                .build(),
        ))
        .security(Some([
            SecurityRequirement::new("accessToken", Vec::<String>::new()),
            SecurityRequirement::new("accessTokenQuery", Vec::<String>::new()),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]))
        .build())
}

/// Calls the route in describe mode: once to learn its path parameters' kinds, then with a
/// valid placeholder for each so the handler reaches its parameter checks.
async fn describe_route(
    app: &axum::Router,
    method: &str,
    path: &str,
) -> anyhow::Result<Description> {
    let first = describe::describe(call(app, method, &fill(path, &[])))
        .await
        .1;
    let (result, description) =
        describe::describe(call(app, method, &fill(path, &first.path))).await;
    result?;
    Ok(Description {
        path: first.path,
        ..description
    })
}

async fn call(app: &axum::Router, method: &str, uri: &str) -> anyhow::Result<()> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())?;
    app.clone().oneshot(request).await?;
    Ok(())
}

/// `path` with each `{name}` replaced by a value its kind accepts.
fn fill(path: &str, kinds: &[(&'static str, PathKind)]) -> String {
    path_names(path).fold(path.to_string(), |filled, name| {
        let value = match kinds.iter().find(|(n, _)| *n == name).map(|(_, k)| k) {
            Some(PathKind::ObjectId) => "65a1b2c3d4e5f60718293a4b",
            Some(PathKind::Uid | PathKind::UidSet) => "1",
            Some(PathKind::Attachment) => "ATT00001",
            None => "example",
        };
        filled.replace(&format!("{{{name}}}"), value)
    })
}

fn path_names(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

fn http_method(method: &str) -> HttpMethod {
    match method {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        _ => HttpMethod::Delete,
    }
}

/// `eider_users::list_users` -> `list_users`.
fn short_name(handler: &str) -> &str {
    handler.rsplit("::").next().unwrap_or(handler)
}

/// `eider_users::list_users` -> `users`.
fn group(handler: &str) -> &str {
    let krate = handler.split("::").next().unwrap_or(handler);
    krate.strip_prefix("eider_").unwrap_or(krate)
}

/// `list_users` -> `List users`.
fn summary(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// `Error400`: the name of a shared error response.
fn error_name(status: &str) -> String {
    format!("Error{status}")
}

/// The operation of `handler` (`name`) at `method path`.
fn operation(
    method: &str,
    path: &str,
    name: &str,
    id: &str,
    group: &str,
    description: &Description,
) -> Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary(name)))
        .tag(group);
    for name in path_names(path) {
        let kind = description.path.iter().find(|(n, _)| *n == name);
        let schema = match kind.map(|(_, k)| *k) {
            // `me` stands for the calling user token's own user.
            Some(PathKind::ObjectId) if name == "user" => {
                string().pattern(Some("^([0-9a-fA-F]{24}|me)$"))
            }
            Some(PathKind::ObjectId) => object_id(),
            Some(PathKind::Uid) => integer(1, u32::MAX as i64),
            Some(PathKind::UidSet) => string()
                .pattern(Some(r"^(\d+|\*)(:(\d+|\*))?(,(\d+|\*)(:(\d+|\*))?)*$"))
                .description(Some("A UID, a list 1,2,3 or a range 1:*")),
            Some(PathKind::Attachment) => string().pattern(Some(r"^[Aa][Tt][Tt]\d+$")),
            None => string().min_length(Some(1)),
        };
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema)),
        );
    }
    let in_query = matches!(method, "GET" | "DELETE");
    if in_query {
        for field in &description.fields {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(&field.name)
                    .parameter_in(ParameterIn::Query)
                    .required(if field.required {
                        Required::True
                    } else {
                        Required::False
                    })
                    .schema(Some(field_schema(&field.kind))),
            );
        }
    }
    let raw_body = BODY_TYPES.iter().find(|(handler, _)| *handler == name);
    if !in_query && (!description.fields.is_empty() || raw_body.is_some()) {
        let mut body = RequestBodyBuilder::new();
        if !description.fields.is_empty() {
            let mut object = ObjectBuilder::new().schema_type(Type::Object);
            for field in &description.fields {
                object = object.property(&field.name, field_schema(&field.kind));
                if field.required {
                    object = object.required(&field.name);
                }
            }
            if description.strict {
                object = object.additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ));
            }
            body = body.content(
                "application/json",
                ContentBuilder::new().schema(Some(object)).build(),
            );
        }
        if let Some((_, media_type)) = raw_body {
            let bytes = string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)));
            body = body.content(
                *media_type,
                ContentBuilder::new().schema(Some(bytes)).build(),
            );
        }
        let required = description.fields.iter().any(|f| f.required) || raw_body.is_some();
        body = body.required(Some(if required {
            Required::True
        } else {
            Required::False
        }));
        op = op.request_body(Some(body.build()));
    }

    let success_types = RESPONSE_TYPES
        .iter()
        .find(|(handler, _)| *handler == name)
        .map(|(_, types)| *types)
        .unwrap_or(&["application/json"]);
    let mut success = ResponseBuilder::new().description("Success");
    for media_type in success_types {
        let schema = (*media_type == "application/json").then(success_schema);
        success = success.content(*media_type, ContentBuilder::new().schema(schema).build());
    }
    op = op.response("200", success.build());
    if let Some((_, status)) = REDIRECTS.iter().find(|(handler, _)| *handler == name) {
        let location = Header::new(string().format(Some(SchemaFormat::Custom("uri".into()))));
        let redirect = ResponseBuilder::new()
            .description("The file at a presigned link that lasts 15 minutes (S3 only)")
            .header("Location", location);
        op = op.response(*status, redirect.build());
    }
    for (status, _) in ERRORS {
        let shared = Ref::new(format!("#/components/responses/{}", error_name(status)));
        op = op.response(status, shared);
    }
    op.build()
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer(min: i64, max: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
}

fn object_id() -> ObjectBuilder {
    string().pattern(Some("^[0-9a-fA-F]{24}$"))
}

fn field_schema(kind: &FieldKind) -> RefOr<Schema> {
    let schema = match kind {
        FieldKind::String {
            min,
            max,
            pattern,
            lowercase,
        } => {
            let mut s = string().max_length(Some(*max));
            if *min > 0 {
                s = s.min_length(Some(*min));
            }
            match pattern {
                // Patterns with inline flags are not ECMA-262 (OpenAPI's dialect).
                Some(pattern) if pattern.contains("(?") && !pattern.contains("(?:") => s,
                // A lowercased field is matched after lowercasing: capitals pass too.
                Some(pattern) if *lowercase => s.pattern(Some(pattern.replace("a-z", "a-zA-Z"))),
                Some(pattern) => s.pattern(Some(*pattern)),
                None => s,
            }
        }
        FieldKind::Boolean => ObjectBuilder::new().schema_type(Type::Boolean),
        FieldKind::Integer { min, max } => integer(*min, *max),
        FieldKind::List {
            item_max,
            max_items,
        } => {
            return ArrayBuilder::new()
                .items(string().max_length(Some(*item_max)))
                .max_items(*max_items)
                .description(Some("A list, or its items separated by commas"))
                .build()
                .into();
        }
        FieldKind::JsonObject => ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A JSON object, or its JSON text")),
        FieldKind::Date => string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("A date (ISO 8601), or milliseconds since 1970")),
        FieldKind::DateOrFalse => string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("An RFC 3339 date; false or empty for none")),
        FieldKind::ObjectId => object_id(),
        FieldKind::Any => {
            ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        }
    };
    schema.into()
}

fn success_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("success", ObjectBuilder::new().schema_type(Type::Boolean))
}

fn error_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("error", string())
        .property("code", string())
        .property(
            "details",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("A message per invalid field")),
        )
        .required("error")
}

/// Which routes a document lists, as `(METHOD, path)` pairs, for comparing with the code.
pub fn operations(document: &OpenApi) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for (path, item) in &document.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in methods {
            if let Some(operation) = operation {
                let id = operation.operation_id.clone().unwrap_or_default();
                out.insert((method.to_string(), path.clone()), id);
            }
        }
    }
    out
}
