//! Connecting to PostgreSQL, migrating, and telling whether the database is ready.

use std::borrow::Cow;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

/// floe's schema migrations, embedded from the workspace's `migrations/`.
///
/// Their bookkeeping table lives in floe's schema, qualified: left to the
/// search path, `_sqlx_migrations` would land in whichever schema comes first
/// — and when the role is named `floe`, `"$user"` *is* floe's schema once the
/// first migration creates it, so a later process would find an empty table
/// and apply everything again.
pub static MIGRATOR: Migrator = Migrator {
    table_name: Cow::Borrowed(MIGRATIONS_TABLE),
    create_schemas: Cow::Borrowed(&[Cow::Borrowed("floe")]),
    ..sqlx::migrate!("../migrations")
};

/// Where applied migrations are recorded.
pub const MIGRATIONS_TABLE: &str = "floe._sqlx_migrations";

/// Database errors of the startup path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL does not parse.
    #[error("invalid DATABASE_URL: {0}")]
    Url(#[source] sqlx::Error),
    /// No connection could be made in time.
    #[error("cannot connect to PostgreSQL after {waited:?}: {source}")]
    Connect {
        /// How long it kept trying.
        waited: Duration,
        /// The last error.
        #[source]
        source: sqlx::Error,
    },
    /// Creating the database failed.
    #[error("cannot create database: {0}")]
    Create(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Why the database is not ready to serve.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// No connection, or no answer in time.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// Reachable, but this build's migrations are not all applied.
    #[error("{missing} of {expected} migrations not applied")]
    Migrations {
        /// How many of this build's migrations are missing or failed.
        missing: usize,
        /// How many this build has.
        expected: usize,
    },
}

/// Opens a pool, retrying the first connection for `timeout` (databases start
/// after their clients in container deployments).
pub async fn connect(
    url: &SecretString,
    max_connections: u32,
    timeout: Duration,
) -> Result<PgPool, Error> {
    let options: PgConnectOptions = url.expose_secret().parse().map_err(Error::Url)?;
    let options = options.application_name("floe");
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    // One plain connection first, retried: a pool would retry on its own until
    // its acquire timeout, which is a run-time setting, not a start-up one.
    loop {
        match PgConnection::connect_with(&options).await {
            Ok(conn) => {
                let _ = conn.close().await;
                break;
            }
            Err(source) if started.elapsed() >= timeout => {
                return Err(Error::Connect {
                    waited: started.elapsed(),
                    source,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "PostgreSQL not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Creates the database named in `url` when it does not exist yet.
pub async fn ensure_database(url: &SecretString) -> Result<(), Error> {
    floe_pg::ensure_database(url).await.map_err(Error::Create)
}

/// Applies this build's pending migrations. Many processes may call this at
/// once: they take turns on an advisory lock, and the later ones find nothing
/// to do.
pub async fn migrate(pool: &PgPool) -> Result<(), Error> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Checks that the database answers within `timeout` and that every migration
/// of this build is applied.
pub async fn readiness(pool: &PgPool, timeout: Duration) -> Result<usize, NotReady> {
    let applied: Vec<i64> = tokio::time::timeout(
        timeout,
        sqlx::query_scalar("SELECT version FROM floe._sqlx_migrations WHERE success")
            .fetch_all(pool),
    )
    .await
    .map_err(|_| NotReady::Unreachable(format!("no answer within {timeout:?}")))?
    .or_else(|e| match &e {
        // No table (42P01) or no schema (3F000) yet: nothing is applied.
        sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("42P01" | "3F000")) => {
            Ok(Vec::new())
        }
        _ => Err(NotReady::Unreachable(e.to_string())),
    })?;
    let expected: Vec<i64> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    let missing = expected.iter().filter(|v| !applied.contains(v)).count();
    if missing > 0 {
        return Err(NotReady::Migrations {
            missing,
            expected: expected.len(),
        });
    }
    Ok(expected.len())
}
