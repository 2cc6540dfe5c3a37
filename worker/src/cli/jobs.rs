//! `floe jobs list/retry`: the inspector's job list and retry, as the HTTP
//! API uses them.

use floe_engine::inspect::{self, JobFilter};
use floe_engine::queue::{JobState, store as queue_store};
use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::output::{self, Out, Table};
use super::{EXIT_OK, Error};

/// A job in `floe jobs list --json`.
#[derive(Debug, Serialize)]
struct JobItem {
    id: i64,
    queue: String,
    kind: String,
    state: JobState,
    attempts: i32,
    max_attempts: i32,
    #[serde(with = "time::serde::rfc3339")]
    run_at: OffsetDateTime,
    last_error: Option<String>,
    lease_owner: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    lease_expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    workflow_id: Option<Uuid>,
    activity_id: Option<String>,
}

impl From<inspect::Job> for JobItem {
    fn from(j: inspect::Job) -> Self {
        Self {
            id: j.live.id,
            queue: j.queue,
            kind: j.kind,
            state: j.live.state,
            attempts: j.live.attempts,
            max_attempts: j.live.max_attempts,
            run_at: j.live.run_at,
            last_error: j.live.last_error,
            lease_owner: j.live.lease_owner,
            lease_expires_at: j.live.lease_expires_at,
            created_at: j.created_at,
            workflow_id: j.workflow_id,
            activity_id: j.activity_id,
        }
    }
}

/// `floe jobs list`'s document.
#[derive(Debug, Serialize)]
struct Jobs {
    items: Vec<JobItem>,
}

/// `floe jobs list`.
pub async fn list(pool: &PgPool, filter: &JobFilter, out: Out) -> Result<u8, Error> {
    let items: Vec<JobItem> = inspect::jobs(pool, filter)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    if out.json {
        out.json(&Jobs { items })?;
        return Ok(EXIT_OK);
    }
    if items.is_empty() {
        output::print_stdout("no jobs match\n")?;
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(&[
        "ID",
        "QUEUE",
        "KIND",
        "STATE",
        "ATTEMPTS",
        "RUN AT",
        "WORKFLOW",
        "LEASE",
        "LAST ERROR",
    ]);
    for j in &items {
        let lease = match (&j.lease_owner, j.lease_expires_at) {
            (Some(owner), Some(until)) => format!("{owner} until {}", output::relative(until)),
            _ => "-".to_owned(),
        };
        t.row(vec![
            j.id.to_string(),
            j.queue.clone(),
            j.kind.clone(),
            j.state.as_str().to_owned(),
            format!("{}/{}", j.attempts, j.max_attempts),
            output::time(j.run_at),
            output::opt(j.workflow_id),
            lease,
            output::opt(j.last_error.as_deref()),
        ]);
    }
    output::print_stdout(&t.render())?;
    Ok(EXIT_OK)
}

/// `floe jobs retry`'s document.
#[derive(Debug, Serialize)]
struct Retried {
    id: i64,
    kind: String,
    state: JobState,
    attempts: i32,
    max_attempts: i32,
}

/// `floe jobs retry`: a dead or retrying job available now, with a fresh
/// attempt budget (`floe.retry_job`, which wakes the workers).
pub async fn retry(pool: &PgPool, id: i64, out: Out) -> Result<u8, Error> {
    inspect::retry_job(pool, id).await?;
    // A worker may have claimed (or even finished) it already.
    let job = queue_store::get(pool, id).await?;
    if out.json {
        match job {
            Some(j) => out.json(&Retried {
                id,
                kind: j.kind,
                state: j.state,
                attempts: j.attempts,
                max_attempts: j.max_attempts,
            })?,
            None => out.json(&serde_json::json!({ "id": id, "state": "completed" }))?,
        }
        return Ok(EXIT_OK);
    }
    output::print_stdout(&match job {
        Some(j) => format!(
            "job {id} ({}) retried: {} now, {} of {} attempts used\n",
            j.kind,
            j.state.as_str(),
            j.attempts,
            j.max_attempts
        ),
        None => format!("job {id} retried, and already done\n"),
    })?;
    Ok(EXIT_OK)
}
