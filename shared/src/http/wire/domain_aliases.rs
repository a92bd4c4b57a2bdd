//! Domain aliases on the wire (`/domainaliases`): requests validated, aliases answered in
//! WildDuck's shape.

use serde_json::{Map, Value, json};

use crate::domain::domain_aliases::{AliasListing, DomainAlias, ListAliases};
use crate::http::error::ApiResult;
use crate::http::paging::{add_paging, page_request};
use crate::http::validate::{Str, Validator};
use crate::time::iso;

/// Validates `GET /domainaliases` (unknown keys allowed, as WildDuck's).
pub fn list(params: Map<String, Value>) -> ApiResult<ListAliases> {
    let mut v = Validator::new(params);
    let query = v.string("query", Str::max(255).trim());
    let page = page_request(&mut v);
    v.session();
    v.finish()?;
    Ok(ListAliases { query, page })
}

/// Validates `POST /domainaliases` (strict): `alias` and `domain`.
pub fn create(params: Map<String, Value>) -> ApiResult<(String, String)> {
    let mut v = Validator::new(params);
    let alias = v.required_string("alias", Str::max(255).trim());
    let domain = v.required_string("domain", Str::max(255).trim());
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((alias.unwrap_or_default(), domain.unwrap_or_default()))
}

pub fn list_json(request: &ListAliases, listing: &AliasListing) -> Value {
    let mut body = json!({ "success": true });
    if let Some(q) = &request.query {
        body["query"] = json!(q);
    }
    body["total"] = json!(listing.total);
    add_paging(&mut body, &listing.page, &request.page);
    body["results"] = listing
        .page
        .items
        .iter()
        .map(|a| json!({ "id": a.id, "alias": a.alias, "domain": a.domain }))
        .collect();
    body
}

pub fn alias_json(alias: &DomainAlias) -> Value {
    json!({
        "success": true,
        "id": alias.id,
        "alias": alias.alias,
        "domain": alias.domain,
        "created": iso(&alias.created),
    })
}
