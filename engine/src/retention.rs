//! Retention: finished workflows (with their inbox, history and activities)
//! and dead jobs are kept for a configurable period, then removed in small
//! batches so that no sweep holds many locks or writes a burst of WAL.
//!
//! What stays: the LLM-call ledger (`floe.llm_calls`, for cost reporting;
//! it has no foreign key to the workflow) and the chat's own data (users,
//! messages, inbox items: the person's, not the engine's). A chat whose
//! workflow was removed reads as finished and archived.
//!
//! A parent is removed only once none of its children is left, so the
//! `parent_id` reference never blocks a delete; children finish before their
//! parents, so they go first. Sweepers in several processes skip each other's
//! rows (`SKIP LOCKED`).

use std::time::Duration;

use sqlx::PgExecutor;

use crate::workflow::store::Result;

/// What one batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Finished workflows removed (their inbox, history and activities went
    /// with them).
    pub workflows: u64,
    /// Dead jobs removed.
    pub dead_jobs: u64,
}

impl Swept {
    /// Whether the batch was full on either side (there may be more).
    pub fn full(&self, batch: i64) -> bool {
        self.workflows >= batch as u64 || self.dead_jobs >= batch as u64
    }
}

/// Removes at most `batch` workflows that finished more than `keep` ago
/// (and have no children left), and at most `batch` jobs that died more than
/// `keep` ago.
pub async fn sweep_batch<'c>(
    db: impl PgExecutor<'c> + Copy,
    keep: Duration,
    batch: i64,
) -> Result<Swept> {
    let keep_secs = keep.as_secs_f64();
    let workflows = sqlx::query!(
        r#"
        DELETE FROM floe.workflows
         WHERE id IN (
             SELECT w.id FROM floe.workflows w
              WHERE w.finished_at < now() - make_interval(secs => $1)
                AND NOT EXISTS (SELECT 1 FROM floe.workflows c WHERE c.parent_id = w.id)
              ORDER BY w.finished_at
              LIMIT $2
                FOR UPDATE SKIP LOCKED)
        "#,
        keep_secs,
        batch,
    )
    .execute(db)
    .await?
    .rows_affected();
    let dead_jobs = sqlx::query!(
        r#"
        DELETE FROM floe.jobs
         WHERE id IN (
             SELECT id FROM floe.jobs
              WHERE state = 'dead' AND coalesce(attempted_at, created_at) < now() - make_interval(secs => $1)
              ORDER BY id
              LIMIT $2
                FOR UPDATE SKIP LOCKED)
        "#,
        keep_secs,
        batch,
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(Swept {
        workflows,
        dead_jobs,
    })
}
