//! Who is calling, and what they may call: WildDuck's token middleware and its `user` role.
//!
//! A request's token comes from the `accessToken` query argument, else the `X-Access-Token`
//! header, else `Authorization: Bearer` (the scheme in any case).
//!
//! * It is the configured root token (`EIDER_ACCESS_TOKEN`, compared in constant time): the
//!   caller is root and may call everything.
//! * It is a user token (`POST /authenticate` with `token: true`): the caller is that user,
//!   with WildDuck's `user` role (below).
//! * No token: root when no root token is configured, else 401.
//! * Anything else: 403 `InvalidToken`.
//!
//! A user token may call the routes of its own user (`/users/{user}/...`, where `{user}` is
//! its id or `me`), except deleting the user and resetting its password (admin-only in
//! WildDuck); `GET /users` (answering only its user), `GET /authenticated` and
//! `DELETE /authenticate`. Anything else, or another user's id, is 403
//! `MissingPrivileges`.

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use super::params::ACCESS_TOKEN_PARAM;
use crate::domain::tokens::{self, Grant};

/// Who a request acts as; the access layer puts it into every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The root token, or no token where none is configured.
    Root,
    /// A user token, with WildDuck's `user` role.
    User(Grant),
}

impl Caller {
    /// The user a user token acts for.
    pub fn user(&self) -> Option<&Grant> {
        match self {
            Caller::Root => None,
            Caller::User(grant) => Some(grant),
        }
    }
}

/// The path parameter that names a user, and the word that names the caller's own.
pub const USER_PARAM: &str = "user";
pub const ME: &str = "me";

/// The token of a request whose `accessToken` query parameter (if any) is `from_query`: that
/// one, else header `X-Access-Token`, else `Authorization: Bearer` (any case).
pub fn token_from(from_query: Option<String>, headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    from_query.or_else(|| header("x-access-token")).or_else(|| {
        header("authorization").and_then(|a| {
            let (scheme, token) = a.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        })
    })
}

fn query_token(uri: &Uri) -> Option<String> {
    uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == ACCESS_TOKEN_PARAM)
            .map(|(_, v)| v.into_owned())
    })
}

/// Compares in constant time; hashing first hides the length of the configured token too.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

fn invalid_token() -> ApiError {
    ApiError::forbidden("InvalidToken", "Invalid accessToken value")
}

/// Checks only the configured root token (where user tokens can't be used: the WebSocket
/// `$connect`): missing is 401, wrong is 403, both `InvalidToken`.
pub fn check_access_token(
    expected: Option<&str>,
    from_query: Option<String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    match token_from(from_query, headers) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "Access token is required",
        )),
        Some(token) if token_matches(&token, expected) => Ok(()),
        Some(_) => Err(invalid_token()),
    }
}

/// The caller of a request carrying `presented` (if anything).
pub async fn caller(state: &AppState, presented: Option<String>) -> Result<Caller, ApiError> {
    let root = state.config.access_token.as_deref();
    let Some(token) = presented else {
        return match root {
            None => Ok(Caller::Root),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidToken",
                "Access token is required",
            )),
        };
    };
    if root.is_some_and(|root| token_matches(&token, root)) {
        return Ok(Caller::Root);
    }
    match tokens::check(state, &token).await? {
        Some(grant) => Ok(Caller::User(grant)),
        None => Err(invalid_token()),
    }
}

/// Whether a user token of `grant` may call `method` `route` (axum's route template) with
/// `user` as its `{user}` parameter.
pub fn user_may(grant: &Grant, method: &Method, route: &str, user: Option<&str>) -> bool {
    match route {
        "/authenticate" => method == Method::DELETE,
        "/authenticated" => true,
        // WildDuck checks no role for it; the token itself must still be valid.
        "/health" => true,
        // The API document: nothing in it is secret.
        "/openapi.json" => true,
        // Every user's filters, narrowed to the caller's own by the handler (WildDuck's).
        "/filters" => method == Method::GET,
        // Likewise: WildDuck lets a user token list its own user's webhooks.
        "/webhooks" => method == Method::GET,
        "/users" => method == Method::GET,
        // Admin-only in WildDuck's roles (`deleteAny`, `updateAny` on users).
        "/users/{user}" if method == Method::DELETE => false,
        "/users/{user}/password/reset" => false,
        route if route.starts_with("/users/{user}") => {
            user.is_some_and(|u| u == ME || u.eq_ignore_ascii_case(&grant.user.to_string()))
        }
        _ => false,
    }
}

/// The access layer: finds the caller, enforces the user role, and hands the caller on.
pub async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let presented = token_from(query_token(&parts.uri), &parts.headers);
    let caller = match caller(&state, presented).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if let Caller::User(grant) = &caller
        && let Some(route) = parts.extensions.get::<MatchedPath>().cloned()
    {
        let params =
            <RawPathParams as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                &mut parts, &state,
            )
            .await
            .ok();
        let user = params.as_ref().and_then(|p| {
            p.iter()
                .find(|(name, _)| *name == USER_PARAM)
                .map(|(_, value)| value.to_string())
        });
        if !user_may(grant, &parts.method, route.as_str(), user.as_deref()) {
            return ApiError::forbidden("MissingPrivileges", "Not enough privileges")
                .into_response();
        }
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectId;

    #[test]
    fn tokens_are_read_from_query_header_or_bearer_in_any_case() {
        let uri: Uri = "/users?a=1&accessToken=s%20t".parse().unwrap();
        assert_eq!(query_token(&uri).as_deref(), Some("s t"));
        let mut headers = HeaderMap::new();
        headers.insert("x-access-token", "h".parse().unwrap());
        assert_eq!(token_from(None, &headers).as_deref(), Some("h"));
        for value in ["Bearer b", "bearer b", "BEARER  b "] {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            assert_eq!(token_from(None, &headers).as_deref(), Some("b"), "{value}");
        }
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Basic b".parse().unwrap());
        assert_eq!(token_from(None, &headers), None);
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(token_matches("secret", "secret"));
        assert!(!token_matches("secret ", "secret"));
        assert!(!token_matches("", "secret"));
    }

    #[test]
    fn a_user_token_reaches_only_its_own_user() {
        let grant = Grant {
            user: ObjectId::new(),
            token_hash: "h".into(),
        };
        let own = grant.user.to_string();
        let other = ObjectId::new().to_string();
        let get = Method::GET;
        assert!(user_may(&grant, &get, "/users/{user}", Some(&own)));
        assert!(user_may(&grant, &get, "/users/{user}/mailboxes", Some(ME)));
        assert!(!user_may(
            &grant,
            &get,
            "/users/{user}/mailboxes",
            Some(&other)
        ));
        assert!(!user_may(
            &grant,
            &Method::DELETE,
            "/users/{user}",
            Some(&own)
        ));
        assert!(user_may(&grant, &get, "/users", None));
        assert!(!user_may(&grant, &Method::POST, "/users", None));
        assert!(user_may(&grant, &Method::DELETE, "/authenticate", None));
        assert!(!user_may(&grant, &Method::POST, "/authenticate", None));
        assert!(!user_may(&grant, &get, "/addresses", None));
        assert!(!user_may(&grant, &get, "/users/resolve/{username}", None));
    }
}
