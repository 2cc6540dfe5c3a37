//! axum's extractors with their rejections turned into [`ApiError`]s, so a
//! malformed request gets the JSON error body. Every handler uses these, not
//! axum's own.
//!
//! They also refuse the NUL character (`\u0000` in JSON, `%00` in a path or
//! query), which PostgreSQL cannot store in `text` or `jsonb`: without this
//! check such a value would reach the database and fail there as a 500.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// What a request with a NUL character is told.
pub const NUL_REFUSED: &str = "text may not contain the NUL character (\\u0000)";

/// A JSON body (`Content-Type: application/json`): invalid JSON or the
/// wrong content type is 400 `malformed_json`, missing or mistyped fields
/// 422 `validation_failed`, as is a string holding the NUL character; a
/// body over the limit 413. As a response, the value serialized as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers().clone();
        let bytes = Bytes::from_request(request, state).await?;
        // axum's own extractor over the same bytes, for its content-type
        // check and its rejections.
        let mut again = Request::new(Body::from(bytes.clone()));
        *again.headers_mut() = headers;
        let axum::Json(value) = axum::Json::<T>::from_request(again, state).await?;
        if json_has_nul(&bytes) {
            return Err(ApiError::Validation(NUL_REFUSED.to_owned()));
        }
        Ok(Self(value))
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Whether valid JSON text holds the NUL character: in valid JSON a
/// backslash only ever starts an escape inside a string, and a NUL can only
/// be written as the escape `\u0000`.
pub fn json_has_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'\\' {
            i += 1;
            continue;
        }
        match json.get(i + 1) {
            Some(b'u') => {
                if json.get(i + 2..i + 6) == Some(b"0000".as_slice()) {
                    return true;
                }
                i += 6;
            }
            _ => i += 2,
        }
    }
    false
}

/// Whether a raw (percent-encoded) path or query holds the NUL character.
fn encodes_nul(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// Path parameters: one that does not parse (a malformed id) or holds the
/// NUL character is 400 `bad_request`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if encodes_nul(parts.uri.path()) {
            return Err(ApiError::BadRequest(format!(
                "invalid path parameter: {NUL_REFUSED}"
            )));
        }
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// Query parameters: one that does not parse or holds the NUL character is
/// 400 `bad_request`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(encodes_nul) {
            return Err(ApiError::BadRequest(format!(
                "invalid query parameter: {NUL_REFUSED}"
            )));
        }
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_is_found_only_where_json_writes_one() {
        assert!(json_has_nul(br#"{"a": "x\u0000y"}"#));
        assert!(json_has_nul(br#"{"\u0000": 1}"#));
        assert!(json_has_nul(br#"["\\\u0000"]"#));
        // An escaped backslash followed by the text u0000 is no NUL.
        assert!(!json_has_nul(br#"["\\u0000"]"#));
        assert!(!json_has_nul(br#"["\u0001", "\n", "u0000"]"#));
        assert!(json_has_nul(br#"{"a": "\"\u00000"}"#));
    }

    #[test]
    fn a_percent_encoded_nul_is_found() {
        assert!(encodes_nul("kind=a%00b"));
        assert!(encodes_nul("/api/workflows/x/signals/%00"));
        assert!(!encodes_nul("kind=a%200"));
        assert!(!encodes_nul("limit=100"));
    }
}
