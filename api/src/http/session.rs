//! People's sessions: `POST /api/session` signs a person in with a display
//! name; the [`Session`] extractor finds who a chat request comes from.
//!
//! A session is a random token (32 bytes, hex) that the browser holds as the
//! `floe_session` cookie (HttpOnly) and other clients send as
//! `Authorization: Bearer <token>` (or, on `/ws` only, as `?token=`). The
//! database keeps only its SHA-256 (`floe.sessions`), so any API process
//! checks any session and sessions survive restarts.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use floe_engine::chat::{self, User};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, Result};
use super::extract::Json;
use super::state::AppState;

/// The OpenAPI tag of the chat's routes.
pub const TAG: &str = "chat";

/// The cookie that carries the session token.
pub const COOKIE: &str = "floe_session";

/// The only path that accepts the token as `?token=` (a browser's
/// `WebSocket` cannot set headers; its cookie works too).
pub const QUERY_TOKEN_PATH: &str = "/ws";

/// Longest display name, in characters (after trimming).
pub const MAX_DISPLAY_NAME: usize = 80;

/// Longest token looked up; anything longer is not one of ours.
const MAX_TOKEN: usize = 256;

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Longest session accepted from the settings (a hundred years), so that
/// no setting overflows the database's interval.
const MAX_TTL_SECS: u64 = 100 * 365 * 24 * 3600;

/// The signed-in person a chat request comes from.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub user: User,
}

impl Session {
    /// Their user id.
    pub fn user_id(&self) -> &str {
        &self.user.id
    }
}

/// What [`Session`] looks sessions up in; the router adds it to every
/// request (so route groups can require a session before the state exists).
#[derive(Debug, Clone)]
pub struct Sessions {
    pool: PgPool,
}

impl Sessions {
    /// Sessions stored in `pool`'s database.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The session of the first presented token that is valid: the bearer
    /// token, then (on `/ws`) `?token=`, then the cookie.
    async fn resolve(&self, parts: &Parts) -> Result<Session> {
        for token in presented_tokens(parts) {
            if token.is_empty() || token.len() > MAX_TOKEN {
                continue;
            }
            if let Some(user) = chat::store::session_user(&self.pool, token).await? {
                return Ok(Session { user });
            }
        }
        Err(ApiError::NoSession)
    }
}

/// Every token the request presents, in the order they are tried.
fn presented_tokens(parts: &Parts) -> Vec<&str> {
    let mut tokens = Vec::new();
    for value in parts.headers.get_all(header::AUTHORIZATION) {
        if let Some((scheme, rest)) = value.to_str().ok().and_then(|v| v.split_once(' '))
            && scheme.eq_ignore_ascii_case("bearer")
        {
            tokens.push(rest.trim());
        }
    }
    if parts.uri.path() == QUERY_TOKEN_PATH
        && let Some(query) = parts.uri.query()
        && let Some(token) = query_token(query)
    {
        tokens.push(token);
    }
    for value in parts.headers.get_all(header::COOKIE) {
        let Ok(cookies) = value.to_str() else {
            continue;
        };
        for cookie in cookies.split(';') {
            if let Some((name, token)) = cookie.trim().split_once('=')
                && name.trim() == COOKIE
            {
                tokens.push(token.trim().trim_matches('"'));
            }
        }
    }
    tokens
}

/// The `token=` of a query string. Tokens are hex, so they need no
/// percent-decoding; one that would is not ours anyway.
fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        if let Some(session) = parts.extensions.get::<Session>() {
            return Ok(session.clone());
        }
        let Some(sessions) = parts.extensions.get::<Sessions>().cloned() else {
            return Err(ApiError::Unexpected(anyhow::anyhow!(
                "no session store extension on the request"
            )));
        };
        let session = sessions.resolve(parts).await?;
        // A layer and the handler both ask: look it up once.
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}

/// A fresh session token: 32 random bytes from the operating system, hex.
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::unexpected(anyhow::anyhow!("{e}"), "random session token"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `POST /api/session`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// How the assistant should address the person: 1 to 80 characters
    /// (surrounding whitespace is dropped).
    #[schema(example = "Alex")]
    pub display_name: String,
}

/// A new session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionCreated {
    /// The person's new id.
    pub user_id: String,
    /// Their display name, trimmed.
    pub display_name: String,
    /// The session token (also set as the `floe_session` cookie): send it
    /// as `Authorization: Bearer <token>`, or `?token=` on `/ws`.
    pub token: String,
}

/// Who a session signs in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CurrentUser {
    /// Their id.
    pub user_id: String,
    /// Their display name.
    pub display_name: String,
    /// Their conversation's last message sequence number (0: none yet).
    pub last_seq: i64,
}

/// Signs a new person in: a fresh user id and a session token, returned
/// and set as the `floe_session` cookie.
#[utoipa::path(
    post, path = "/api/session", tag = TAG,
    request_body = NewSession,
    responses(
        (status = 201, description = "Signed in; the token is also set as the `floe_session` cookie (HttpOnly, SameSite=Lax)", body = SessionCreated,
            headers(("Set-Cookie" = String, description = "`floe_session=<token>; HttpOnly; SameSite=Lax; Path=/; Max-Age=<ttl>`"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Missing display name, or not 1 to 80 characters", body = ErrorBody),
    ),
)]
pub async fn create_session(
    State(state): State<AppState>,
    Json(body): Json<NewSession>,
) -> Result<Response> {
    let display_name = body.display_name.trim();
    let length = display_name.chars().count();
    if !(1..=MAX_DISPLAY_NAME).contains(&length) {
        return Err(ApiError::Validation(format!(
            "display_name must be 1 to {MAX_DISPLAY_NAME} characters long"
        )));
    }
    let user_id = Uuid::new_v4().to_string();
    let token = new_token()?;
    let ttl = state.chat.session_ttl_secs.clamp(1, MAX_TTL_SECS);
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::unexpected(e, "begin"))?;
    let user = chat::store::upsert_user(&mut *tx, &user_id, display_name).await?;
    chat::store::create_session(&mut *tx, &token, &user_id, ttl as i64).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::unexpected(e, "commit session"))?;
    tracing::info!(user_id = %user.id, ttl_secs = ttl, "session created");
    let cookie = HeaderValue::from_str(&format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={ttl}"
    ))
    .map_err(|e| ApiError::unexpected(e, "session cookie"))?;
    let body = SessionCreated {
        user_id: user.id,
        display_name: user.display_name,
        token,
    };
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(body),
    )
        .into_response())
}

/// The person the session signs in.
#[utoipa::path(
    get, path = "/api/session", tag = TAG,
    responses(
        (status = 200, description = "The signed-in person", body = CurrentUser),
        (status = 401, description = "No valid session", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_token" = [])),
)]
pub async fn current_session(session: Session) -> Json<CurrentUser> {
    Json(CurrentUser {
        user_id: session.user.id,
        display_name: session.user.display_name,
        last_seq: session.user.last_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder().uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[test]
    fn tokens_come_from_the_bearer_header_the_ws_query_and_the_cookie() {
        let p = parts(
            "/ws?after=3&token=abc",
            &[
                ("authorization", "Bearer xyz"),
                ("cookie", "other=1; floe_session=def; x=y"),
            ],
        );
        assert_eq!(presented_tokens(&p), ["xyz", "abc", "def"]);
        // Elsewhere the query is not a place for tokens.
        let p = parts("/api/inbox?token=abc", &[]);
        assert!(presented_tokens(&p).is_empty());
        let p = parts("/api/inbox", &[("authorization", "Basic abc")]);
        assert!(presented_tokens(&p).is_empty());
    }

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = new_token().expect("token");
        let b = new_token().expect("token");
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
