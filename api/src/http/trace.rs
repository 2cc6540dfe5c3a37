//! Every request's trace id, span and metrics.
//!
//! The trace id is the request's W3C `traceparent` trace id, else its
//! `x-request-id` (1 to 64 of `A-Z a-z 0-9 - _ . :`), else a new random one.
//! The request runs inside [`floe_engine::trace::scope`], so the inbox
//! events and jobs it writes carry the id, and the response names it in
//! `x-request-id`. One span per request with method, path and trace id; one
//! event per response with status and latency; `floe_http_requests_total`
//! and `floe_http_request_duration_seconds` by route template.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use axum::middleware::{self, Next};
use floe_engine::metrics as names;
use floe_engine::trace::{self, TraceId};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The header that carries a request's id in and its trace id out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the trace-context, request-tracing and metrics layers.
pub fn traced(router: Router) -> Router {
    router
        .layer(middleware::from_fn(measure))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<Body>| {
                    let trace_id = req.extensions().get::<TraceId>().map(TraceId::as_str);
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        trace_id,
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
        .layer(middleware::from_fn(trace_context))
}

/// The trace id a request brings, if any.
fn incoming(headers: &HeaderMap) -> Option<TraceId> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("traceparent")
        .and_then(TraceId::from_traceparent)
        .or_else(|| header(REQUEST_ID.as_str()).and_then(TraceId::parse))
}

/// Gives the request its trace id (an extension, the task's current trace)
/// and names it in the response.
async fn trace_context(mut req: Request, next: Next) -> Response<Body> {
    let trace = incoming(req.headers()).unwrap_or_else(TraceId::generate);
    req.extensions_mut().insert(trace.clone());
    let mut res = trace::scope(Some(trace.clone()), next.run(req)).await;
    if let Ok(value) = HeaderValue::from_str(trace.as_str()) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    res
}

/// Counts the request by method, route template (`other` for the front
/// end's files and unknown paths: never the raw path) and status, and times
/// it until the response's head.
async fn measure(req: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    // Any other method is one label, so that made-up ones cannot grow the set.
    let method: &'static str = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_str().to_owned();
    metrics::histogram!(names::HTTP_DURATION, "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(names::HTTP_REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    res
}
