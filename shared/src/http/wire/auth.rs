//! Authentication on the wire: `POST /authenticate`, application-specific passwords, TOTP
//! and the password reset, validated into the domain's commands and answered as WildDuck does.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::domain::asps::{self, Asp, Created, NewAsp, SCOPES as ASP_SCOPES};
use crate::domain::auth::{AuthRequest, Authenticated, Reset, SCOPES};
use crate::domain::authlog::Session;
use crate::domain::names::{self, USERNAME_PATTERN};
use crate::domain::tokens;
use crate::domain::totp::Setup;
use crate::http::error::{ApiError, ApiResult};
use crate::http::validate::{Str, Validator};
use crate::time::{iso, iso_or_false};

/// `username`: a username or an address.
fn login_name(v: &mut Validator) -> Option<String> {
    let username = v.required_string("username", Str::max(255).trim());
    if let Some(name) = &username
        && !USERNAME_PATTERN.is_match(&name.to_lowercase())
        && !names::is_address(name)
    {
        v.error(
            "username",
            "\"username\" does not match any of the allowed types",
        );
    }
    username
}

/// `scope`: one of [`SCOPES`], `master` by default.
fn scope(v: &mut Validator) -> String {
    let scope = v
        .string("scope", Str::max(20).trim().lowercase())
        .unwrap_or_else(|| "master".into());
    if !SCOPES.contains(&scope.as_str()) {
        v.error(
            "scope",
            "\"scope\" must be one of [master, imap, pop3, smtp]",
        );
    }
    scope
}

/// Validates `POST /authenticate` (strict).
pub fn auth_request(params: Map<String, Value>) -> ApiResult<AuthRequest> {
    let mut v = Validator::new(params);
    let username = login_name(&mut v);
    let password = v.required_string("password", Str::max(256));
    let scope = scope(&mut v);
    let protocol = v
        .string("protocol", Str::max(100).trim())
        .unwrap_or_else(|| "API".into());
    let app_id = v.string("appId", Str::max(1024).trim());
    let token = v.boolean("token").unwrap_or(false);
    if token && scope != "master" && SCOPES.contains(&scope.as_str()) {
        v.error("scope", "\"scope\" must be [master]");
    }
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(AuthRequest {
        username: username.unwrap_or_default(),
        password: password.unwrap_or_default(),
        scope,
        protocol,
        app_id,
        token,
        session,
    })
}

/// `POST /authenticate`.
pub fn authenticated_json(auth: &Authenticated) -> Value {
    let require2fa = if auth.require_2fa.is_empty() {
        json!(false)
    } else {
        json!(auth.require_2fa)
    };
    let mut body = json!({
        "success": true,
        "id": auth.id,
        "username": auth.username,
        "address": auth.address,
        "scope": auth.scope,
        "require2fa": require2fa,
        // WildDuck's account flag that makes a client ask to set up 2FA; Eider has none.
        "require2faEnabled": false,
        "requirePasswordChange": auth.require_password_change,
    });
    if let Some(session) = &auth.session {
        for (name, value) in [
            ("token", &session.token),
            ("twoFactorNonce", &session.two_factor_nonce),
            ("totpNonce", &session.totp_nonce),
        ] {
            if let Some(value) = value {
                body[name] = json!(value);
            }
        }
    }
    body
}

/// Validates `POST /preauth` (strict): `username`, `scope`.
pub fn preauth_request(params: Map<String, Value>) -> ApiResult<(String, String, Session)> {
    let mut v = Validator::new(params);
    let username = login_name(&mut v);
    let scope = scope(&mut v);
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((username.unwrap_or_default(), scope, session))
}

/// `POST /preauth`.
pub fn preauthenticated_json(auth: &Authenticated) -> Value {
    let require2fa = if auth.require_2fa.is_empty() {
        json!(false)
    } else {
        json!(auth.require_2fa)
    };
    json!({
        "success": true,
        "id": auth.id,
        "username": auth.username,
        "address": auth.address,
        "scope": auth.scope,
        "require2fa": require2fa,
    })
}

/// Validates `POST /users/{user}/password/reset` (strict): `validAfter`.
pub fn reset_request(params: Map<String, Value>) -> ApiResult<(Option<DateTime<Utc>>, Session)> {
    let mut v = Validator::new(params);
    let valid_after = v.date_or_false("validAfter");
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((valid_after, session))
}

/// `POST /users/{user}/password/reset`.
pub fn reset_json(reset: &Reset) -> Value {
    json!({
        "success": true,
        "password": reset.password,
        "validAfter": iso(&reset.valid_after),
    })
}

// ---------------------------------------------------------------------------------------------
// Application-specific passwords

/// Validates `GET /users/{user}/asps` (strict): `showAll`.
pub fn list_asps(params: Map<String, Value>) -> ApiResult<bool> {
    let mut v = Validator::new(params);
    let show_all = v.boolean("showAll").unwrap_or(false);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(show_all)
}

/// Scopes as given (array or comma-separated string): each known, none twice.
fn asp_scopes(v: &mut Validator) -> Option<Vec<String>> {
    let given = v.string_list("scopes", 8)?;
    let mut out: Vec<String> = Vec::new();
    for (i, scope) in given.into_iter().enumerate() {
        let scope = scope.to_lowercase();
        if scope != "*" && !ASP_SCOPES.contains(&scope.as_str()) {
            v.error(
                &format!("scopes,{i}"),
                format!("\"scopes[{i}]\" must be one of [imap, pop3, smtp, *]"),
            );
            return None;
        }
        if out.contains(&scope) {
            v.error(
                &format!("scopes,{i}"),
                format!("\"scopes[{i}]\" contains a duplicate value"),
            );
            return None;
        }
        out.push(scope);
    }
    Some(asps::normalize_scopes(out))
}

/// Validates `POST /users/{user}/asps` (strict).
pub fn new_asp(params: Map<String, Value>) -> ApiResult<NewAsp> {
    let mut v = Validator::new(params);
    let description = v.required_string("description", Str::max(255).trim());
    let scopes = asp_scopes(&mut v).unwrap_or_else(|| vec!["*".into()]);
    let address = v.string("address", Str::max(255).trim());
    if address
        .as_deref()
        .is_some_and(|a| names::normalize_address(a, true).is_err())
    {
        v.error("address", "\"address\" must be a valid email");
    }
    // A preset password; the message leaves the value out (it is a secret).
    let password = v.string("password", Str::max(64));
    if password
        .as_deref()
        .is_some_and(|p| p.len() != 16 || !p.bytes().all(|b| b.is_ascii_lowercase()))
    {
        v.error(
            "password",
            "\"password\" fails to match the password pattern (16 letters a-z)",
        );
    }
    let generate_mobileconfig = v.boolean("generateMobileconfig").unwrap_or(false);
    let ttl = v
        .integer("ttl", 0, i64::from(u32::MAX))
        .filter(|t| *t > 0)
        .map(|t| t as u64);
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(NewAsp {
        description: description.unwrap_or_default(),
        scopes,
        address,
        password,
        generate_mobileconfig,
        ttl,
        session,
    })
}

/// One application-specific password, as listed.
pub fn asp_json(asp: &Asp) -> Value {
    let mut out = json!({
        "id": asp.id,
        "description": asp.description,
        "scopes": asp.scopes,
        "lastUse": {
            "time": iso_or_false(asp.used.as_ref()),
            "event": asp.auth_event.map_or(json!(false), |e| json!(e)),
        },
        "created": iso(&asp.created),
    });
    if let Some(expires) = asp.expires {
        out["expires"] = json!(iso(&expires));
    }
    out
}

/// `GET /users/{user}/asps`.
pub fn asps_json(asps: &[Asp]) -> Value {
    let results: Vec<Value> = asps.iter().map(asp_json).collect();
    json!({ "success": true, "results": results })
}

/// `POST /users/{user}/asps`: the password in clear, once.
pub fn created_asp_json(created: &Created) -> Value {
    let mut body = json!({
        "success": true,
        "id": created.id,
        "password": created.password,
    });
    if let Some(profile) = &created.mobileconfig {
        body["name"] = json!(profile.name);
        body["address"] = json!(profile.address);
        body["mobileconfig"] = json!(profile.base64);
    }
    body
}

// ---------------------------------------------------------------------------------------------
// TOTP

/// Validates `POST /users/{user}/2fa/totp/setup` (strict).
pub fn totp_setup(params: Map<String, Value>) -> ApiResult<(Option<String>, Option<String>, bool)> {
    let mut v = Validator::new(params);
    let issuer = v.string("issuer", Str::max(255).trim());
    let label = v.string("label", Str::max(255).trim());
    let fresh = v.boolean("fresh").unwrap_or(false);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((issuer, label, fresh))
}

/// `POST /users/{user}/2fa/totp/setup`.
pub fn setup_json(setup: &Setup) -> Value {
    json!({
        "success": true,
        "seed": setup.seed_base32,
        "qrcode": setup.qrcode,
        "otpauthUrl": setup.otpauth_url,
    })
}

/// Validates a request carrying a TOTP `token` (exactly 6 characters, as WildDuck checks it;
/// Joi says "length must be 6 characters long" for both too short and too long).
pub fn totp_token(params: Map<String, Value>) -> ApiResult<(String, Session)> {
    let (token, _, session) = totp_code(params, false)?;
    Ok((token, session))
}

/// Validates `POST /users/{user}/2fa/totp/check` (strict): `token`, and the `totpNonce` of
/// `POST /authenticate` (optional: clients of WildDuck before strict 2FA send none).
pub fn totp_check(params: Map<String, Value>) -> ApiResult<(String, Option<String>, Session)> {
    totp_code(params, true)
}

fn totp_code(
    params: Map<String, Value>,
    with_nonce: bool,
) -> ApiResult<(String, Option<String>, Session)> {
    let mut v = Validator::new(params);
    let token = v.required_string("token", Str::max(6).min(6).trim());
    if token.is_none() && !v.has_errors() {
        v.error("token", "\"token\" length must be 6 characters long");
    }
    let nonce = if with_nonce {
        let nonce = v.string("totpNonce", Str::max(40).trim());
        if nonce
            .as_deref()
            .is_some_and(|n| !tokens::is_token_shaped(n))
        {
            v.error(
                "totpNonce",
                "\"totpNonce\" with value fails to match the required pattern: /^[0-9a-f]{40}$/i",
            );
        }
        nonce
    } else {
        None
    };
    let session = v.session();
    v.deny_unknown();
    v.finish().map_err(|err| match err.details {
        Some(mut details) if details.contains_key("token") => {
            details.insert(
                "token".into(),
                "\"token\" length must be 6 characters long".into(),
            );
            ApiError::validation(details)
        }
        _ => err,
    })?;
    Ok((token.unwrap_or_default(), nonce, session))
}
