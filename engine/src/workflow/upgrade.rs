//! Upgrading stored state to this build's definition versions, ahead of the
//! next event (which would do it anyway: see [`super::advance::step`]).
//!
//! A definition bumps [`Workflow::VERSION`](super::Workflow::VERSION) and
//! says in [`Workflow::upgrade`](super::Workflow::upgrade) how an older
//! version's state becomes its own. Before a deploy, `floe upgrade
//! --dry-run` (the new build against the live database) runs that upgrade
//! on every open workflow and changes nothing; after it, `floe upgrade`
//! writes the upgraded states of idle workflows, so that nothing waits for
//! its next event to be upgraded.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Registry;
use super::store;

/// What upgrading one workflow did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upgrade {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Its kind.
    pub kind: String,
    /// The version its state was stored under.
    pub from_version: i32,
    /// This build's version of the kind.
    pub to_version: i32,
    /// `upgraded`, `would upgrade` (dry run), `changed meanwhile` (a worker
    /// applied an event first, upgrading it itself) or `failed`.
    pub outcome: &'static str,
    /// Why it failed.
    pub error: Option<String>,
}

impl Upgrade {
    /// Whether the upgrade failed (or would fail).
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// Upgrades (or with `dry_run` only tries) the stored state of every open
/// workflow, of `kind` or of every kind this build has, whose definition
/// version differs from this build's. Each write is conditional on the row
/// being unchanged since it was read, so it never races a worker.
pub async fn upgrade_open(
    pool: &PgPool,
    registry: &Registry,
    kind: Option<&str>,
    dry_run: bool,
) -> store::Result<Vec<Upgrade>> {
    let mut done = Vec::new();
    for (k, version) in registry.versions() {
        if kind.is_some_and(|wanted| wanted != k) {
            continue;
        }
        let Some(definition) = registry.get(k) else {
            continue;
        };
        let rows = sqlx::query!(
            r#"SELECT id, definition_version, version, context
                 FROM floe.workflows
                WHERE kind = $1 AND status IN ('running', 'waiting')
                  AND definition_version <> $2 AND context <> 'null'::jsonb
                ORDER BY id"#,
            k,
            version,
        )
        .fetch_all(pool)
        .await?;
        for row in rows {
            let mut report = Upgrade {
                workflow_id: row.id,
                kind: k.to_owned(),
                from_version: row.definition_version,
                to_version: version,
                outcome: "failed",
                error: None,
            };
            match definition.upgrade(row.definition_version, &row.context) {
                Err(e) => report.error = Some(e),
                Ok(_) if dry_run => report.outcome = "would upgrade",
                Ok(context) => {
                    let written = sqlx::query!(
                        r#"UPDATE floe.workflows
                              SET context = $2, definition_version = $3, updated_at = now()
                            WHERE id = $1 AND definition_version = $4 AND version = $5
                              AND status IN ('running', 'waiting')"#,
                        row.id,
                        context,
                        version,
                        row.definition_version,
                        row.version,
                    )
                    .execute(pool)
                    .await?
                    .rows_affected();
                    report.outcome = match written {
                        1 => "upgraded",
                        _ => "changed meanwhile",
                    };
                }
            }
            done.push(report);
        }
    }
    Ok(done)
}
