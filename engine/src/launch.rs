//! The start-up every binary shares: find or start the database, build the
//! runtime, run the app, and stop the embedded cluster last.

use std::future::Future;
use std::process::ExitCode;

use secrecy::SecretString;
use sqlx::PgPool;

use crate::db;

use crate::settings::DatabaseSettings;
use floe_pg::EmbeddedPostgres;

/// Runs `app` with the database URL to use: the configured one, or one into
/// floe's embedded cluster, which is started first and stopped after `app`
/// returns and the runtime has shut down (so no connection outlives it).
///
/// Call it from `main`: the embedded server is tied to the calling thread
/// (see [`EmbeddedPostgres::start`]), and it builds the Tokio runtime itself.
pub fn run<F, Fut>(settings: &DatabaseSettings, app: F) -> anyhow::Result<()>
where
    F: FnOnce(SecretString) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let embedded = match &settings.url {
        Some(_) => None,
        None => {
            let mut options = floe_pg::Options::persistent(&settings.embedded_dir);
            options.bindir.clone_from(&settings.pg_bindir);
            Some(EmbeddedPostgres::start(&options)?)
        }
    };
    let url = match (&settings.url, &embedded) {
        (Some(url), _) => url.clone(),
        (None, Some(pg)) => pg.url(floe_pg::DATABASE),
        (None, None) => unreachable!("an embedded cluster is started when no URL is set"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("floe")
        .build()?;
    let result = runtime.block_on(async {
        if embedded.is_some() {
            crate::db::ensure_database(&url).await?;
        }
        app(url).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Some(pg) = embedded {
        pg.stop()?;
    }
    result
}

/// A shutdown signal handed to an app: resolves on SIGINT or SIGTERM.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The whole life of a floe binary: the database (configured or embedded), a
/// pool, pending migrations (when enabled, or when `migrate_only`), then `app`
/// with the pool and the shutdown signal, listened for from the start. A
/// failure is logged once, with its causes, and becomes exit code 1.
pub fn main<F, Fut>(
    name: &'static str,
    settings: &DatabaseSettings,
    migrate_only: bool,
    app: F,
) -> ExitCode
where
    F: FnOnce(PgPool, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let result = run(settings, |url| async move {
        let stop: Shutdown = Box::pin(crate::shutdown::signal());
        let pool = db::connect(&url, settings.max_connections, settings.connect_timeout()).await?;
        if settings.migrate || migrate_only {
            db::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        if migrate_only {
            return Ok(());
        }
        app(pool, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            ExitCode::FAILURE
        }
    }
}
