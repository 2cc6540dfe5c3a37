//! The router: every route, the layers around them, and the OpenAPI
//! document, built from the same route list.
//!
//! | module       | responsibility                                                       |
//! |--------------|----------------------------------------------------------------------|
//! | [`error`]    | [`ApiError`](error::ApiError) and the JSON error body every error answer has |
//! | [`extract`]  | `Json`, `Path`, `Query` extractors whose rejections are `ApiError`s   |
//! | [`auth`]     | the operator token and the middleware that requires it               |
//! | [`session`]  | people's sessions: sign-in, and the [`Session`](session::Session) extractor |
//! | [`state`]    | [`AppState`]: pool, definitions, push hub, tokens, chat settings     |
//! | [`workflows`]| the engine's API: start, list, get, history, signal, cancel, query   |
//! | [`events`]   | a workflow's history and changes as Server-Sent Events               |
//! | [`inspect`]  | the web inspector's: counts, activities, LLM calls, jobs, dashboard  |
//! | [`chat`]     | the chat's endpoints: onboarding, messages, state, progress, inbox   |
//! | [`ws`]       | the chat's WebSocket: its protocol and each connection               |
//! | [`limit`]    | the per-person message rate limit (in memory, per process)           |
//! | [`openapi`]  | the document's frame; the routes come from [`documented`]            |
//! | `frontend`   | the web front end's files                                            |
//! | `trace`      | each request's trace id (`traceparent`, `x-request-id`), span, metrics |

pub mod auth;
pub mod chat;
pub mod error;
pub mod events;
pub mod extract;
mod frontend;
pub mod inspect;
pub mod limit;
pub mod openapi;
pub mod session;
pub mod state;
mod trace;
pub mod workflows;
pub mod ws;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Extension, Router, middleware};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::settings::HttpSettings;
pub use state::AppState;

/// Every documented route: the one list both the router and the OpenAPI
/// document are built from, so neither can miss a route the other has.
///
/// To add a route: annotate its handler with `#[utoipa::path(...)]` (method,
/// path, parameters, responses with [`error::ErrorBody`] for errors,
/// `security` if it needs a token) and add `.routes(routes!(handler))` to the
/// group below whose authentication it needs (handlers of one path share a
/// `routes!`). Never add an `/api` route to the router directly.
pub fn documented() -> OpenApiRouter<AppState> {
    // The engine's own API: operators only.
    let engine = OpenApiRouter::new()
        .routes(routes!(
            workflows::start_workflow,
            workflows::list_workflows
        ))
        .routes(routes!(workflows::get_workflow))
        .routes(routes!(workflows::workflow_history))
        .routes(routes!(workflows::signal_workflow))
        .routes(routes!(workflows::cancel_workflow))
        .routes(routes!(workflows::query_workflow))
        .routes(routes!(events::workflow_events))
        .routes(routes!(inspect::counts))
        .routes(routes!(inspect::workflow_activities))
        .routes(routes!(inspect::workflow_llm_calls))
        .routes(routes!(inspect::list_jobs))
        .routes(routes!(inspect::retry_job))
        .routes(routes!(inspect::dashboard))
        .route_layer(middleware::from_fn(auth::require_operator));
    // Signing in: open to anyone; who is signed in: the session's person.
    let sessions =
        OpenApiRouter::new().routes(routes!(session::create_session, session::current_session));
    // The chat: a person's session, reaching only their own data.
    let chat = OpenApiRouter::new()
        .routes(routes!(chat::start_onboarding))
        .routes(routes!(chat::send_message))
        .routes(routes!(chat::workflow_progress))
        .routes(routes!(chat::workflow_state))
        .routes(routes!(chat::list_messages))
        .routes(routes!(chat::inbox))
        .routes(routes!(ws::connect))
        .route_layer(middleware::from_extractor::<session::Session>());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(engine)
        .merge(sessions)
        .merge(chat)
}

/// The OpenAPI document of every route (what `GET /api/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

/// All of the API's routes over `state`.
pub fn router(settings: &HttpSettings, state: AppState) -> Router {
    let (api, doc) = documented().split_for_parts();
    let doc = Arc::new(doc);
    let routes = api
        .route(
            openapi::PATH,
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        // Anything else under /api is a 404 with the JSON body, not the
        // front end's page.
        .route("/api", any(no_route))
        .route("/api/{*rest}", any(no_route))
        .with_state(state.clone())
        .merge(floe_engine::health::router(state.pool.clone()))
        // Unauthenticated, like the probes: keep it on a private network.
        .merge(floe_engine::metrics::router())
        .fallback_service(frontend::service(&settings.static_dir))
        .layer(Extension(state.operator_token.clone()))
        .layer(Extension(session::Sessions::new(state.pool.clone())))
        // The limit below is the one that counts, for every extractor.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(settings.body_limit))
        // Outermost: whatever a layer or the router answers with, an error
        // leaves as the JSON error body.
        .layer(middleware::from_fn(error::json_errors));
    trace::traced(routes)
}

/// An unknown route under `/api`.
async fn no_route(method: Method, uri: Uri) -> impl IntoResponse {
    error::ApiError::NotFound(format!("no route {method} {}", uri.path()))
}
