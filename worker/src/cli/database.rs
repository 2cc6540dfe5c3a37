//! Which database `floe` works on, and `floe migrate`.
//!
//! Like the other binaries: `DATABASE_URL` (or `--database-url`) when set;
//! otherwise floe's embedded cluster in `--embedded-dir`. Unlike them, when
//! another floe process (`./scripts/run`) already runs that cluster, `floe`
//! joins it (its port and password are in the cluster's folder) rather than
//! failing; only when none runs does it start the cluster for the length of
//! the command.

use std::path::Path;

use floe_engine::db;
use floe_engine::doctor::{self, Migration, MigrationState};
use floe_engine::settings::DatabaseSettings;
use floe_pg::EmbeddedPostgres;
use secrecy::SecretString;
use serde::Serialize;
use sqlx::PgPool;

use super::output::{self, Out, Table};
use super::{EXIT_OK, Error};

/// Where the database is.
#[derive(Debug)]
pub enum Target {
    /// `DATABASE_URL` or `--database-url`.
    Url(SecretString),
    /// The embedded cluster another floe process runs.
    Shared(SecretString),
    /// The embedded cluster this command started; stopped when it ends.
    Started(EmbeddedPostgres),
}

impl Target {
    /// Finds the database: the configured URL, else the embedded cluster
    /// (joined if running, started if not). Call it on the main thread.
    pub fn find(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        if let Some(url) = &settings.url {
            return Ok(Self::Url(url.clone()));
        }
        let mut options = floe_pg::Options::persistent(&settings.embedded_dir);
        options.bindir.clone_from(&settings.pg_bindir);
        match EmbeddedPostgres::start(&options) {
            Ok(pg) => Ok(Self::Started(pg)),
            Err(floe_pg::Error::AlreadyRunning { dir, .. }) => Ok(Self::Shared(shared_url(&dir)?)),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a pool on it (creating floe's database in a cluster this
    /// command started, as the other binaries do).
    pub async fn connect(&self, settings: &DatabaseSettings) -> Result<PgPool, Error> {
        let url = match self {
            Self::Url(url) | Self::Shared(url) => url.clone(),
            Self::Started(pg) => {
                let url = pg.url(floe_pg::DATABASE);
                db::ensure_database(&url)
                    .await
                    .map_err(|e| Error::Unreachable(e.to_string()))?;
                url
            }
        };
        db::connect(&url, settings.max_connections, settings.connect_timeout())
            .await
            .map_err(|e| match e {
                db::Error::Url(_) => Error::Invalid(e.to_string()),
                e => Error::Unreachable(e.to_string()),
            })
    }

    /// Stops the cluster if this command started it.
    pub fn stop(self) {
        if let Self::Started(pg) = self
            && let Err(e) = pg.stop()
        {
            tracing::warn!(error = %e, "cannot stop the embedded PostgreSQL");
        }
    }
}

/// The URL of the embedded cluster another process runs in `dir`, from the
/// `port` and `password` files it keeps there.
fn shared_url(dir: &Path) -> anyhow::Result<SecretString> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_owned())
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.join(name).display()))
    };
    let port: u16 = read("port")?
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("port").display()))?;
    let password = read("password")?;
    // The password is generated hexadecimal: nothing to escape.
    Ok(SecretString::from(format!(
        "postgres://{}:{password}@127.0.0.1:{port}/{}",
        floe_pg::ROLE,
        floe_pg::DATABASE
    )))
}

/// `floe migrate --status`'s document.
#[derive(Debug, Serialize)]
struct Status<'a> {
    migrations: &'a [Migration],
    applied: usize,
    pending: usize,
    /// Applied but unknown to this build (a newer build migrated).
    unknown: usize,
    /// Failed half-way, or changed since applied.
    broken: usize,
}

/// `floe migrate`'s document.
#[derive(Debug, Serialize)]
struct Applied<'a> {
    /// What this run applied.
    applied: Vec<&'a Migration>,
    /// Every migration, after the run.
    migrations: &'a [Migration],
}

fn count(migrations: &[Migration], state: MigrationState) -> usize {
    migrations.iter().filter(|m| m.state == state).count()
}

fn table(migrations: &[Migration]) -> String {
    let mut t = Table::new(&["VERSION", "STATE", "APPLIED AT", "DESCRIPTION"]);
    for m in migrations {
        t.row(vec![
            m.version.to_string(),
            m.state.as_str().to_owned(),
            output::opt_time(m.installed_on),
            m.description.clone(),
        ]);
    }
    t.render()
}

/// `floe migrate [--status]`: applies pending migrations (they take turns
/// with other migrators on an advisory lock), or lists them.
pub async fn migrate(pool: &PgPool, status_only: bool, out: Out) -> Result<u8, Error> {
    let before = doctor::migrations(pool).await?;
    if status_only {
        let status = Status {
            migrations: &before,
            applied: count(&before, MigrationState::Applied),
            pending: count(&before, MigrationState::Pending),
            unknown: count(&before, MigrationState::Unknown),
            broken: count(&before, MigrationState::Failed)
                + count(&before, MigrationState::Changed),
        };
        if out.json {
            out.json(&status)?;
        } else {
            output::print_stdout(&format!(
                "{}{} applied, {} pending, {} unknown to this build, {} failed or changed\n",
                table(&before),
                status.applied,
                status.pending,
                status.unknown,
                status.broken
            ))?;
        }
        return Ok(EXIT_OK);
    }
    db::migrate(pool)
        .await
        .map_err(|e| Error::Unexpected(anyhow::anyhow!(e)))?;
    let after = doctor::migrations(pool).await?;
    let applied: Vec<&Migration> = after
        .iter()
        .filter(|m| {
            m.state == MigrationState::Applied
                && before
                    .iter()
                    .any(|b| b.version == m.version && b.state == MigrationState::Pending)
        })
        .collect();
    if out.json {
        out.json(&Applied {
            applied,
            migrations: &after,
        })?;
    } else if applied.is_empty() {
        output::print_stdout(&format!(
            "nothing to apply: all {} migrations are applied\n",
            count(&after, MigrationState::Applied)
        ))?;
    } else {
        let mut text = format!("applied {} migrations:\n", applied.len());
        for m in &applied {
            text.push_str(&format!("  {}  {}\n", m.version, m.description));
        }
        output::print_stdout(&text)?;
    }
    Ok(EXIT_OK)
}
