//! Helpers the engine's test files share.

use std::time::Duration;

use sqlx::PgPool;

/// Every notification `listener` gets, as `(channel, payload)`, until a
/// marker NOTIFYed now on `floe_test_marker` (which `listener` must LISTEN
/// on): PostgreSQL delivers in commit order, so whatever committed before
/// arrives before it.
pub async fn notified_until_marker(
    pool: &PgPool,
    listener: &mut sqlx::postgres::PgListener,
) -> Vec<(String, String)> {
    sqlx::query("SELECT pg_notify('floe_test_marker', '')")
        .execute(pool)
        .await
        .expect("marker");
    let mut got = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("the marker arrives")
            .expect("recv");
        if n.channel() == "floe_test_marker" {
            return got;
        }
        got.push((n.channel().to_owned(), n.payload().to_owned()));
    }
}
