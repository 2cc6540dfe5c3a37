//! The probes through the real router, against real PostgreSQL.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use floe_api::http::AppState;
use floe_api::http::auth::OperatorToken;
use floe_api::settings::HttpSettings;
use floe_engine::db;
use floe_engine::workflow::Registry;
use floe_pg::{EmbeddedPostgres, Options};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

async fn get(pool: PgPool, path: &str) -> (StatusCode, Value) {
    let token = OperatorToken::new(SecretString::from("test-token"));
    let state = AppState::new(pool, Registry::new(), token);
    let router = floe_api::http::router(&HttpSettings::default(), state.clone());
    let response = router
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    state.hub.stop().await;
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn healthz_is_ok(pool: PgPool) {
    let (status, body) = get(pool, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[sqlx::test(migrator = "floe_engine::db::MIGRATOR")]
async fn readyz_is_ok_when_the_database_is_migrated(pool: PgPool) {
    let (status, body) = get(pool, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["migrations"], db::MIGRATOR.iter().count());
}

#[sqlx::test(migrations = false)]
async fn readyz_is_503_until_migrations_are_applied(pool: PgPool) {
    let (status, body) = get(pool.clone(), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failed"], "migrations");

    db::migrate(&pool).await.expect("migrate");
    let (status, _) = get(pool, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_down_and_200_when_it_is_back() {
    let pg = EmbeddedPostgres::start(&Options::temporary()).expect("start PostgreSQL");
    let url = pg.url("postgres");
    let port = pg.port();
    let pool = db::connect(&url, 2, std::time::Duration::from_secs(5))
        .await
        .expect("connect");
    db::migrate(&pool).await.expect("migrate");
    assert_eq!(get(pool.clone(), "/readyz").await.0, StatusCode::OK);

    let mut pg = pg;
    pg.stop_server();
    let (status, body) = get(pool.clone(), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failed"], "database");
    assert_eq!(
        body["reason"], "database unreachable",
        "no internal detail leaks"
    );

    pg.start_server().expect("restart PostgreSQL");
    assert_eq!(pg.port(), port);
    let mut ok = false;
    for _ in 0..50 {
        if get(pool.clone(), "/readyz").await.0 == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "/readyz did not recover after PostgreSQL came back");
    pool.close().await;
    pg.stop().expect("stop");
}
