//! The OpenAPI document's frame: title, security scheme, tags, and the
//! routes served outside the documented route list (the probes, which the
//! engine's health router serves, and the document itself). The routes are
//! added from the same list the router is built from: see
//! [`super::documented`].

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;

/// The security scheme name handlers list in `security(...)`.
pub const OPERATOR_TOKEN: &str = "operator_token";
/// The chat's session as the `floe_session` cookie.
pub const SESSION_COOKIE: &str = "session_cookie";
/// The chat's session as a bearer token.
pub const SESSION_TOKEN: &str = "session_token";

/// Where the document is served.
pub const PATH: &str = "/api/openapi.json";

/// The document's frame; see the module docs.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "floe",
        description = "floe's HTTP API: the onboarding chat (sessions, messages, progress, inbox, and the \
            WebSocket at /ws), the durable workflow engine's operator endpoints, and the probes. \
            Errors are always `{\"error\": {\"code\", \"message\"}}`; see docs/api.md."
    ),
    paths(openapi_json, healthz, readyz),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "chat", description = "The onboarding chat, for people (a session: the floe_session cookie or a bearer session token)"),
        (name = "workflows", description = "The engine's own API, for operators (bearer operator token)"),
        (name = "inspect", description = "The web inspector's reads and job retries, for operators (bearer operator token)"),
        (name = "meta", description = "Probes and this document (no authentication)"),
    ),
)]
pub struct ApiDoc;

/// Adds the operator's bearer-token scheme and the chat's session schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            OPERATOR_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token: FLOE__API__OPERATOR_TOKEN, or the development token \
                         floe-api logs at start-up when none is set",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::session::COOKIE,
                "The session token POST /api/session sets as a cookie",
            ))),
        );
        components.add_security_scheme(
            SESSION_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The session token POST /api/session returns (on /ws also accepted as ?token=)",
                    ))
                    .build(),
            ),
        );
    }
}

/// This document (OpenAPI 3.1, JSON).
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
#[allow(dead_code)] // documents a route served by a closure in the router
async fn openapi_json() {}

/// Liveness: 200 while the process serves.
#[utoipa::path(
    get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)),
)]
#[allow(dead_code)] // documents floe_engine::health's route
async fn healthz() {}

/// Readiness: 200 when the database answers and every migration is applied.
#[utoipa::path(
    get, path = "/readyz", tag = "meta",
    responses(
        (status = 200, description = "`{\"status\": \"ready\", \"migrations\": n}`", body = Object),
        (status = 503, description = "`{\"status\": \"not_ready\", \"failed\": \"database\" | \"migrations\", \"reason\"}`", body = Object),
    ),
)]
#[allow(dead_code)] // documents floe_engine::health's route
async fn readyz() {}
