//! Helpers for floe's own tests (feature `testing`): fresh databases on the
//! server the test run was given, and waiting for a process to serve.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The server the tests run against, from `DATABASE_URL`. `./scripts/test`
/// sets it to a throwaway cluster.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run the tests with ./scripts/test, which starts a PostgreSQL for them")
    })
}

/// Creates a new, empty database on the test server and returns its URL.
pub async fn fresh_database() -> SecretString {
    let server: PgConnectOptions = server_url().parse().expect("DATABASE_URL parses");
    let mut conn = PgConnection::connect_with(&server)
        .await
        .expect("connect to the test server");
    let name = format!("floe_test_{}", uuid::Uuid::new_v4().simple());
    // The name is ours (a fixed prefix and hex digits), never user input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let mut url = url_without_database(&server_url());
    url.push('/');
    url.push_str(&name);
    SecretString::from(url)
}

/// `url` with its path (the database name) and query removed.
fn url_without_database(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?'])
        .map_or(url.len(), |i| after_scheme + i);
    url[..end].to_owned()
}

/// Polls `http://{addr}{path}` until it answers `status`, for up to `timeout`.
pub async fn wait_for_status(addr: &str, path: &str, status: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if http_status(addr, path).await == Some(status) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The status code of a plain `GET http://{addr}{path}`, or `None` when
/// nothing answers. Hand-rolled over TCP to keep test dependencies small.
pub async fn http_status(addr: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Exposes a secret URL for a test that has to hand it to a child process.
pub fn expose(url: &SecretString) -> &str {
    url.expose_secret()
}
