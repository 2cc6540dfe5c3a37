//! The router: every route, and the layers around them.

mod frontend;
mod trace;

use axum::Router;
use sqlx::PgPool;
use tower_http::limit::RequestBodyLimitLayer;

use crate::settings::HttpSettings;

/// All of the API's routes.
pub fn router(settings: &HttpSettings, pool: PgPool) -> Router {
    let routes = Router::new()
        .merge(floe_engine::health::router(pool))
        .fallback_service(frontend::service(&settings.static_dir))
        .layer(RequestBodyLimitLayer::new(settings.body_limit));
    trace::traced(routes)
}
