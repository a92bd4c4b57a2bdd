//! Webhooks on the wire (`/webhooks`): requests validated, webhooks answered in WildDuck's
//! shape, plus what Eider adds (the signing secret once at creation, each webhook's health).

use serde_json::{Map, Value, json};

use crate::domain::webhooks::{ListWebhooks, NewWebhook, Webhook, WebhookListing};
use crate::http::error::ApiResult;
use crate::http::paging::{add_paging, page_request};
use crate::http::validate::{Str, Validator};
use crate::time::iso;

/// Validates `GET /webhooks` (unknown keys allowed, as WildDuck's).
pub fn list(params: Map<String, Value>) -> ApiResult<ListWebhooks> {
    let mut v = Validator::new(params);
    let event_type = v
        .string("type", Str::max(128).trim())
        .map(|t| t.to_lowercase());
    let user = v.id("user");
    let page = page_request(&mut v);
    v.session();
    v.finish()?;
    Ok(ListWebhooks {
        event_type,
        user,
        page,
    })
}

/// Validates `POST /webhooks` (strict): `type` (event types and patterns), `user`, `url`.
pub fn create(params: Map<String, Value>) -> ApiResult<NewWebhook> {
    let mut v = Validator::new(params);
    let types = v.bounded_list("type", 128, 100);
    if types.is_none() && !v.has_error("type") {
        v.error("type", "\"type\" is required");
    }
    if types
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.iter().any(|t| t.is_empty()))
    {
        v.error("type", "\"type\" must name at least one event type");
    }
    let user = v.id("user");
    let url = v.required_string("url", Str::max(2048).trim());
    v.session();
    v.deny_unknown();
    v.finish()?;
    let mut types: Vec<String> = types
        .unwrap_or_default()
        .iter()
        .map(|t| t.to_lowercase())
        .collect();
    types.dedup();
    Ok(NewWebhook {
        types,
        user,
        url: url.unwrap_or_default(),
    })
}

pub fn list_json(request: &ListWebhooks, listing: &WebhookListing) -> Value {
    let mut body = json!({ "success": true });
    if let Some(t) = &request.event_type {
        body["type"] = json!(t);
    }
    body["user"] = json!(request.user);
    body["total"] = json!(listing.total);
    add_paging(&mut body, &listing.page, &request.page);
    body["results"] = listing.page.items.iter().map(webhook_fields).collect();
    body
}

/// WildDuck's fields of a webhook, and its health.
fn webhook_fields(hook: &Webhook) -> Value {
    let health = &hook.health;
    json!({
        "id": hook.id,
        "type": hook.types,
        "user": hook.user,
        "url": hook.url,
        "created": iso(&hook.created),
        "failing": health.failing,
        "lastError": health.last_error,
        "lastFailure": health.last_failure.as_ref().map(iso),
        "lastSuccess": health.last_success.as_ref().map(iso),
        "failedDeliveries": health.failed_deliveries,
    })
}

/// `GET /webhooks/{webhook}`.
pub fn webhook_json(hook: &Webhook) -> Value {
    let mut body = webhook_fields(hook);
    body["success"] = json!(true);
    body
}
