//! The web front end's files, or a placeholder page until it is built.
//!
//! Two single-page apps share `dir`: the chat (`index.html`, served for every
//! path that is not a file) and the workflow inspector (`inspect.html`,
//! served for `/inspect` and every path under it, which it routes itself).

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::response::{Html, IntoResponse};
use axum::routing::{MethodRouter, get};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

const PLACEHOLDER: &str = include_str!("placeholder.html");

/// Where the inspector lives.
const INSPECTOR: &str = "/inspect";

/// Serves `dir`: its files, else the page of the app that owns the path, or
/// the placeholder page when the front end has not been built.
pub fn service(dir: &Path) -> MethodRouter<(), Infallible> {
    let index = dir.join("index.html");
    if !index.is_file() {
        tracing::info!(dir = %dir.display(), "front end not built; serving the placeholder page");
        return get(|| async { Html(PLACEHOLDER).into_response() });
    }
    let inspector = dir.join("inspect.html");
    let page = get(move |request: Request| {
        let file = page_for(request.uri().path(), &index, &inspector);
        async move { ServeFile::new(file).oneshot(request).await.into_response() }
    });
    axum::routing::get_service(ServeDir::new(dir).fallback(page))
}

/// The page a path that is not a file gets.
fn page_for(path: &str, index: &Path, inspector: &Path) -> PathBuf {
    let under_inspector = path
        .strip_prefix(INSPECTOR)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    match under_inspector {
        true => inspector.to_path_buf(),
        false => index.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspector_paths_get_the_inspector_page() {
        let (index, inspector) = (Path::new("i.html"), Path::new("x.html"));
        for path in [
            "/inspect",
            "/inspect/",
            "/inspect/workflows/abc",
            "/inspect/dashboard",
        ] {
            assert_eq!(page_for(path, index, inspector), inspector, "{path}");
        }
        for path in ["/", "/inspector", "/inspection/x", "/chat", "/x/inspect"] {
            assert_eq!(page_for(path, index, inspector), index, "{path}");
        }
    }
}
