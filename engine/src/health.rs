//! `GET /healthz` and `GET /readyz`, served by the API and by every worker.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::db::{self, NotReady};

/// How long `/readyz` waits for the database before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The two probes, over `pool`.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(pool)
}

/// The process is alive and serving HTTP; says nothing about the database.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when the database answers and every migration is applied, else 503.
async fn readyz(State(pool): State<PgPool>) -> Response {
    match db::readiness(&pool, READY_TIMEOUT).await {
        Ok(migrations) => {
            Json(json!({ "status": "ready", "migrations": migrations })).into_response()
        }
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            // The cause is in the log; the probe says only which check failed.
            let (check, detail) = match &reason {
                NotReady::Unreachable(_) => ("database", "database unreachable".to_owned()),
                NotReady::Migrations { .. } => ("migrations", reason.to_string()),
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "not_ready", "failed": check, "reason": detail })),
            )
                .into_response()
        }
    }
}
