//! One span per request with method, path and request id; one event per
//! response with status and latency.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// Wraps `router` in the request-tracing layer.
pub fn traced(router: Router) -> Router {
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(|req: &Request<Body>| {
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    status = tracing::field::Empty,
                )
            })
            .on_request(())
            .on_response(|res: &Response<Body>, latency: Duration, span: &Span| {
                span.record("status", res.status().as_u16());
                tracing::info!(
                    status = res.status().as_u16(),
                    latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
                    "response"
                );
            }),
    )
}
