//! Retention: finished workflows (with their inbox, history and activities)
//! and dead jobs are kept for a configurable period, then removed in small
//! batches so that no sweep holds many locks or writes a burst of WAL.
//!
//! The ledgers — LLM calls (`floe.llm_calls`) and tool calls
//! (`floe.tool_calls`) — have a period of their own ([`sweep_ledger_batch`]):
//! they answer an activity's retry while its workflow is open and serve cost
//! reporting after, so a row goes once it is older than that period **and**
//! its workflow is gone (removed here, or never had one). What stays: the
//! chat's own data (users, messages, inbox items, notifications, merges: the
//! person's, not the engine's). A chat whose workflow was removed reads as
//! finished and archived.
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
    /// LLM-ledger rows removed.
    pub llm_calls: u64,
    /// Tool-ledger rows removed.
    pub tool_calls: u64,
}

impl Swept {
    /// Whether the batch was full on any side (there may be more).
    pub fn full(&self, batch: i64) -> bool {
        let batch = batch as u64;
        [
            self.workflows,
            self.dead_jobs,
            self.llm_calls,
            self.tool_calls,
        ]
        .iter()
        .any(|n| *n >= batch)
    }

    /// Adds another batch's counts.
    pub fn add(&mut self, other: Swept) {
        self.workflows += other.workflows;
        self.dead_jobs += other.dead_jobs;
        self.llm_calls += other.llm_calls;
        self.tool_calls += other.tool_calls;
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
        ..Swept::default()
    })
}

/// Removes at most `batch` rows of each ledger (`floe.llm_calls`,
/// `floe.tool_calls`) older than `keep` whose workflow no longer exists: an
/// open workflow's activities may still be retried and answered from them,
/// and a finished one's stay with it for inspection until retention removes
/// it. Oldest first, through each ledger's `created_at` index.
pub async fn sweep_ledger_batch(
    db: impl PgExecutor<'_>,
    keep: Duration,
    batch: i64,
) -> Result<Swept> {
    let row = sqlx::query!(
        r#"
        WITH llm AS (
            DELETE FROM floe.llm_calls
             WHERE id IN (
                 SELECT l.id FROM floe.llm_calls l
                  WHERE l.created_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM floe.workflows w WHERE w.id = l.workflow_id)
                  ORDER BY l.created_at
                  LIMIT $2
                    FOR UPDATE SKIP LOCKED)
            RETURNING 1
        ), tool AS (
            DELETE FROM floe.tool_calls
             WHERE id IN (
                 SELECT t.id FROM floe.tool_calls t
                  WHERE t.created_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM floe.workflows w WHERE w.id = t.workflow_id)
                  ORDER BY t.created_at
                  LIMIT $2
                    FOR UPDATE SKIP LOCKED)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM llm) AS "llm_calls!", (SELECT count(*) FROM tool) AS "tool_calls!"
        "#,
        keep.as_secs_f64(),
        batch,
    )
    .fetch_one(db)
    .await?;
    Ok(Swept {
        llm_calls: row.llm_calls as u64,
        tool_calls: row.tool_calls as u64,
        ..Swept::default()
    })
}
