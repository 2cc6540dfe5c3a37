//! The web front end's files, or a placeholder page until it is built.

use std::convert::Infallible;
use std::path::Path;

use axum::response::{Html, IntoResponse};
use axum::routing::{MethodRouter, get};
use tower_http::services::{ServeDir, ServeFile};

const PLACEHOLDER: &str = include_str!("placeholder.html");

/// Serves `dir` (single-page app: unknown paths get `index.html`), or the
/// placeholder page when the front end has not been built.
pub fn service(dir: &Path) -> MethodRouter<(), Infallible> {
    let index = dir.join("index.html");
    if index.is_file() {
        axum::routing::get_service(ServeDir::new(dir).fallback(ServeFile::new(index)))
    } else {
        tracing::info!(dir = %dir.display(), "front end not built; serving the placeholder page");
        get(|| async { Html(PLACEHOLDER).into_response() })
    }
}
