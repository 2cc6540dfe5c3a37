//! The API's one error type and its JSON body.
//!
//! Every error answer of this server — from a handler, an extractor's
//! rejection, the body-size limit, an unknown route or a wrong method — is
//! `{"error": {"code": "...", "message": "..."}}` with the status below.
//! Internal errors are logged with their cause chain and answered without it.
//!
//! | status | code                     | when                                                 |
//! |--------|--------------------------|------------------------------------------------------|
//! | 400    | `malformed_json`         | the body is not JSON, or not sent as JSON            |
//! | 400    | `bad_request`            | a path or query parameter or a header does not parse |
//! | 401    | `unauthorized`           | the bearer token or the session is missing or wrong  |
//! | 404    | `not_found`              | no such id, or no such route                         |
//! | 405    | `method_not_allowed`     | the route exists, the method does not                |
//! | 409    | `conflict`               | the request contradicts the current state            |
//! | 409    | `onboarding_completed`   | a chat message to an onboarding that has completed   |
//! | 413    | `payload_too_large`      | the body is over the configured limit                |
//! | 422    | `validation_failed`      | well-formed JSON with missing or invalid fields      |
//! | 429    | `rate_limited`           | too many requests; `Retry-After` says when to retry  |
//! | 500    | `internal`               | our fault; the cause is in the log                   |
//! | 503    | `unavailable`            | the database is out of reach (restarting, overloaded: no connection within the pool's wait); `Retry-After` says when to retry (idempotently: a connection lost at commit leaves the outcome unknown) |

use axum::extract::Request;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Results of handlers.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Everything a request can fail with, by the status it answers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not valid JSON, or not declared as JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// 400: a path or query parameter or a header does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the bearer token is missing or wrong.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 401: the chat routes need a session (cookie or bearer token) and
    /// none valid was presented.
    #[error("a session is required: POST /api/session starts one")]
    NoSession,
    /// 404: no such resource (or no such route).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route does not take this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request contradicts the resource's current state.
    #[error("{0}")]
    Conflict(String),
    /// 409: the person's onboarding has completed; it takes no more
    /// messages.
    #[error("your onboarding has completed; it takes no more messages")]
    OnboardingCompleted,
    /// 413: the body is larger than the configured limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 422: well-formed, but fields are missing or invalid.
    #[error("{0}")]
    Validation(String),
    /// 429: too many requests; retry after this many seconds.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request may succeed (sent as `Retry-After`).
        retry_after_secs: u64,
    },
    /// 500: something failed that is not the client's fault. The cause is
    /// logged, never sent.
    #[error(transparent)]
    Unexpected(anyhow::Error),
    /// 503: the database could not be reached (no pooled connection within
    /// the pool's wait, or the connection failed): a restart or overload,
    /// worth retrying. The cause is logged, never sent.
    #[error("the service is briefly unavailable; retry in {UNAVAILABLE_RETRY_SECS} s")]
    Unavailable(anyhow::Error),
}

/// The `Retry-After` of a 503.
pub const UNAVAILABLE_RETRY_SECS: u64 = 2;

/// Whether `error` says the database was out of reach rather than that a
/// statement failed: nothing was done, and retrying later may succeed.
fn database_unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
        )
    })
}

impl ApiError {
    /// The HTTP status it answers with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::NoSession => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::OnboardingCompleted => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable, machine-readable code in the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized | Self::NoSession => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::OnboardingCompleted => "onboarding_completed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Validation(_) => "validation_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unexpected(_) => "internal",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The message the client sees: never an internal cause.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unexpected(_) => "internal error; it has been logged".to_owned(),
            other => other.to_string(),
        }
    }

    /// Logs it where it is answered (once): an internal error at ERROR with
    /// its whole cause chain, a rejection at DEBUG.
    pub fn log(&self) {
        match self {
            Self::Unexpected(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed")
            }
            Self::Unavailable(cause) => {
                tracing::warn!(
                    error = format!("{cause:#}"),
                    "request failed: database unreachable"
                )
            }
            other => {
                tracing::debug!(status = other.status_code().as_u16(), error = %other, "request rejected")
            }
        }
    }

    /// A 500 for `cause`, with what was being done; a 503 when the cause is
    /// the database being out of reach.
    pub fn unexpected(cause: impl Into<anyhow::Error>, doing: &'static str) -> Self {
        cause.into().context(doing).into()
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong: a stable code to branch on and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `malformed_json`, `bad_request`,
    /// `unauthorized`, `not_found`, `method_not_allowed`, `conflict`,
    /// `onboarding_completed`, `payload_too_large`, `validation_failed`,
    /// `rate_limited`, `internal`, `unavailable`.
    #[schema(example = "not_found")]
    pub code: String,
    /// For people; may change between versions.
    #[schema(example = "no workflow 01938f4e-7b1c-7cc3-9a4e-1f2d3c4b5a69")]
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        self.log();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.public_message(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        match &self {
            Self::Unauthorized | Self::NoSession => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Unavailable(_) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_SECS),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<anyhow::Error> for ApiError {
    /// A 500, or a 503 when the database was out of reach.
    fn from(cause: anyhow::Error) -> Self {
        match database_unreachable(&cause) {
            true => Self::Unavailable(cause),
            false => Self::Unexpected(cause),
        }
    }
}

impl From<floe_engine::workflow::store::Error> for ApiError {
    fn from(e: floe_engine::workflow::store::Error) -> Self {
        use floe_engine::workflow::store::Error;
        match e {
            Error::NotFound(id) => Self::NotFound(format!("no workflow {id}")),
            Error::Finished { .. } => Self::Conflict(e.to_string()),
            Error::Database(e) => Self::unexpected(e, "workflow store"),
        }
    }
}

impl From<floe_engine::chat::store::Error> for ApiError {
    fn from(e: floe_engine::chat::store::Error) -> Self {
        use floe_engine::chat::store::Error;
        match e {
            // The session's user was deleted under it.
            Error::UnknownUser(_) => Self::NoSession,
            Error::Workflow(e) => e.into(),
            Error::Database(e) => Self::unexpected(e, "chat store"),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::Validation(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::MalformedJson(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::MalformedJson(
                "expected a JSON body with `Content-Type: application/json`".to_owned(),
            ),
            JsonRejection::BytesRejection(e) => e.into(),
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            _ => Self::BadRequest(rejection.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(e) => {
                Self::BadRequest(format!("invalid path parameter: {}", e.body_text()))
            }
            other => Self::unexpected(anyhow::anyhow!(other.body_text()), "path parameters"),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// Middleware: turns every error answer that is not already JSON — the
/// body-size limit's 413, the router's 405, a layer's plain-text error —
/// into the JSON error body, so that clients meet one format.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::NOT_FOUND => ApiError::NotFound("not found".to_owned()),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Validation("invalid request".to_owned()),
        StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited {
            retry_after_secs: 1,
        },
        s if s.is_server_error() => {
            // The cause was logged where it happened (or not at all by a
            // layer): answer as any internal error, keeping the status.
            let body = ErrorBody {
                error: ErrorDetail {
                    code: "internal".to_owned(),
                    message: s.canonical_reason().unwrap_or("server error").to_owned(),
                },
            };
            return (s, axum::Json(body)).into_response();
        }
        s => {
            let body = ErrorBody {
                error: ErrorDetail {
                    code: "bad_request".to_owned(),
                    message: s.canonical_reason().unwrap_or("bad request").to_owned(),
                },
            };
            return (s, axum::Json(body)).into_response();
        }
    };
    let mut rewritten = error.into_response();
    // Keep what the original answer said besides its body (e.g. `Allow`).
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten
                .headers_mut()
                .entry(name)
                .or_insert_with(|| value.clone());
        }
    }
    rewritten
}
