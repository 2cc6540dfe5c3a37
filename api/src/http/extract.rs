//! axum's extractors with their rejections turned into [`ApiError`]s, so a
//! malformed request gets the JSON error body. Every handler uses these, not
//! axum's own.

use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// A JSON body (`Content-Type: application/json`): invalid JSON or the
/// wrong content type is 400 `malformed_json`, missing or mistyped fields
/// 422 `validation_failed`, a body over the limit 413. As a response, the
/// value serialized as JSON.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters: one that does not parse (a malformed id) is 400
/// `bad_request`.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters: one that does not parse is 400 `bad_request`.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
