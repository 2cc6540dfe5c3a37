//! The database out of reach: requests that need it get 503 `unavailable`
//! with a `Retry-After`, not a 500, and requests refused before they reach
//! it still get their 4xx.

mod common;

use common::{TestApp, assert_error, send};

#[tokio::test]
async fn without_the_database_requests_get_503_with_retry_after() {
    let app = TestApp::spawn().await;
    let (status, body) = send(app.get("/api/workflows")).await;
    assert_eq!(status, 200, "{body}");

    // Every connection refused from now on, as while PostgreSQL restarts.
    app.pool.close().await;

    let response = app
        .get("/api/workflows")
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_error(503, &body, 503, "unavailable");
    assert!(
        !body.to_string().contains("pool"),
        "the cause stays in the log: {body}"
    );

    // Bad input is still refused as such: it never needed the database.
    let (status, body) = send(app.get("/api/workflows/not-a-uuid")).await;
    assert_error(status, &body, 400, "bad_request");
}
