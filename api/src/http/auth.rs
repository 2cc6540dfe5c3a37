//! Operator authentication: the engine's routes require
//! `Authorization: Bearer <operator token>`.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The token operators present. Cheap to clone.
#[derive(Clone)]
pub struct OperatorToken(Arc<SecretString>);

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken([REDACTED])")
    }
}

impl OperatorToken {
    /// This token.
    pub fn new(token: SecretString) -> Self {
        Self(Arc::new(token))
    }

    /// The configured token; when none is configured (or it is blank), a
    /// fresh random development token, logged once at WARN so that whoever
    /// started the process can use it.
    pub fn from_settings(configured: Option<&SecretString>) -> Self {
        match configured {
            // Surrounding whitespace (a file's trailing newline) is not part of it.
            Some(token) if !token.expose_secret().trim().is_empty() => {
                Self::new(SecretString::from(token.expose_secret().trim().to_owned()))
            }
            _ => {
                let token = format!(
                    "dev-{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                );
                tracing::warn!(
                    "no operator token configured; development token: {token} \
                     (set FLOE__API__OPERATOR_TOKEN or --operator-token to choose one)"
                );
                Self::new(SecretString::from(token))
            }
        }
    }

    /// Whether `presented` is the token, compared in constant time (for
    /// tokens of equal length; a length mismatch says only the length).
    pub fn verify(&self, presented: &str) -> bool {
        self.0
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }
}

/// Middleware: lets the request through only with the operator's bearer
/// token; anything else is 401 with the JSON error body. The token is the
/// request's [`OperatorToken`] extension, which the router adds to every
/// request (so route groups can carry this layer before the state exists).
pub async fn require_operator(request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(token) = request.extensions().get::<OperatorToken>().cloned() else {
        return Err(ApiError::Unexpected(anyhow::anyhow!(
            "no operator token extension on the request"
        )));
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(p) if token.verify(p) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}
