//! Every SQL statement on the workflow tables. Functions that change a
//! workflow take a connection or transaction, so that starting, signalling
//! and cancelling can be part of the caller's own transaction; each one
//! enqueues the "advance" job in that same transaction.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::registry::StoredEvent;
use super::{ADVANCE_JOB, Status};
use crate::queue::{self, NewJob};

/// Errors of the workflow store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No workflow with that id.
    #[error("no workflow {0}")]
    NotFound(Uuid),
    /// The workflow has finished; it takes no more events.
    #[error("workflow {id} is {status}")]
    Finished {
        /// The workflow.
        id: Uuid,
        /// How it finished.
        status: Status,
    },
    /// A database error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Results of the workflow store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A workflow row, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowRow {
    /// Id.
    pub id: Uuid,
    /// Kind (the definition).
    pub kind: String,
    /// Business key, unique among open workflows of the kind.
    pub key: String,
    /// The definition's state name.
    pub state: String,
    /// Status.
    pub status: Status,
    /// The definition's state, serialized (`null` before the start event).
    pub context: Value,
    /// The start input.
    pub input: Value,
    /// The result, once completed.
    pub output: Option<Value>,
    /// The error, once failed (or the cancellation reason).
    pub error: Option<String>,
    /// When it must be woken if nothing else happens.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// Why.
    pub deadline_reason: Option<String>,
    /// Bumped when a transition sets or clears the deadline.
    pub deadline_version: i64,
    /// Transitions applied.
    pub version: i64,
    /// The definition's version that started it.
    pub definition_version: i32,
    /// The workflow that started it, if any.
    pub parent_id: Option<Uuid>,
    /// Activities and children in flight.
    pub in_flight: i32,
    /// Last inbox sequence allocated.
    pub next_seq: i64,
    /// Last inbox sequence applied.
    pub applied_seq: i64,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

macro_rules! workflow_row {
    ($r:expr) => {
        WorkflowRow {
            id: $r.id,
            kind: $r.kind,
            key: $r.key,
            state: $r.state,
            status: $r.status.parse().unwrap_or(Status::Failed),
            context: $r.context,
            input: $r.input,
            output: $r.output,
            error: $r.error,
            deadline: $r.deadline,
            deadline_reason: $r.deadline_reason,
            deadline_version: $r.deadline_version,
            version: $r.version,
            definition_version: $r.definition_version,
            parent_id: $r.parent_id,
            in_flight: $r.in_flight,
            next_seq: $r.next_seq,
            applied_seq: $r.applied_seq,
            created_at: $r.created_at,
            updated_at: $r.updated_at,
        }
    };
}

/// Reads a workflow (no lock): what queries are answered from.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<WorkflowRow>> {
    let row = sqlx::query!(
        r#"SELECT id, kind, key, state, status::text AS "status!", context, input, output, error, deadline,
                  deadline_reason, deadline_version, version, definition_version, parent_id, in_flight,
                  next_seq, applied_seq, created_at, updated_at
             FROM floe.workflows WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| workflow_row!(r)))
}

/// Reads and locks a workflow for a transition.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<WorkflowRow>> {
    let row = sqlx::query!(
        r#"SELECT id, kind, key, state, status::text AS "status!", context, input, output, error, deadline,
                  deadline_reason, deadline_version, version, definition_version, parent_id, in_flight,
                  next_seq, applied_seq, created_at, updated_at
             FROM floe.workflows WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| workflow_row!(r)))
}

/// The open workflow of `kind` with `key`, if any.
pub async fn find_open(db: impl PgExecutor<'_>, kind: &str, key: &str) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar!(
        "SELECT id FROM floe.workflows WHERE kind = $1 AND key = $2 AND status IN ('running', 'waiting')",
        kind,
        key
    )
    .fetch_optional(db)
    .await?)
}

/// What [`start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The workflow's id: new, or the open one with the same kind and key.
    pub id: Uuid,
    /// Whether this call created it.
    pub created: bool,
}

/// Starts a workflow of `kind` with business `key`, unless one with the same
/// kind and key is open (then returns that one). The start event and the
/// advance job are written in the same transaction.
pub async fn start(
    conn: &mut PgConnection,
    kind: &str,
    key: &str,
    input: &Value,
    definition_version: i32,
    parent_id: Option<Uuid>,
) -> Result<Started> {
    let id = Uuid::now_v7();
    let row = sqlx::query!(
        r#"
        WITH ins AS (
            INSERT INTO floe.workflows (id, kind, key, state, input, definition_version, parent_id, next_seq)
            VALUES ($1, $2, $3, 'starting', $4, $5, $6, 1)
            ON CONFLICT (kind, key) WHERE status IN ('running', 'waiting') DO NOTHING
            RETURNING id
        ), event AS (
            INSERT INTO floe.inbox (workflow_id, seq, event, payload)
            SELECT id, 1, 'start', $4 FROM ins
        )
        SELECT id AS "id!", true AS "created!" FROM ins
        UNION ALL
        SELECT w.id, false FROM floe.workflows w
         WHERE NOT EXISTS (SELECT 1 FROM ins) AND w.kind = $2 AND w.key = $3 AND w.status IN ('running', 'waiting')
        "#,
        id,
        kind,
        key,
        input,
        definition_version,
        parent_id,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) if r.created => {
            advance_later(&mut *conn, r.id).await?;
            Ok(Started {
                id: r.id,
                created: true,
            })
        }
        Some(r) => Ok(Started {
            id: r.id,
            created: false,
        }),
        // The open one committed after this statement's snapshot: look again.
        None => match find_open(&mut *conn, kind, key).await? {
            Some(id) => Ok(Started { id, created: false }),
            None => Err(Error::Database(sqlx::Error::RowNotFound)),
        },
    }
}

/// Enqueues the job that applies `id`'s pending events; at most one waits.
pub async fn advance_later(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let job = NewJob::new(ADVANCE_JOB, json!({ "workflow_id": id }))
        .unique_key(id.to_string())
        .max_attempts(1000);
    queue::store::enqueue(conn, &job).await?;
    Ok(())
}

/// What [`deliver`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Recorded as this inbox sequence number.
    Queued(i64),
    /// An event with the same idempotency key was delivered before.
    Duplicate,
}

/// Puts an event in a workflow's inbox and enqueues its advance job, in the
/// caller's transaction. With an idempotency key already used by this
/// workflow, nothing changes.
pub async fn deliver(
    conn: &mut PgConnection,
    id: Uuid,
    event: &str,
    name: Option<&str>,
    payload: &Value,
    idempotency_key: Option<&str>,
) -> Result<Delivered> {
    // The row lock taken by the UPDATE orders concurrent deliveries; the
    // inbox's unique index settles a race between two with the same key
    // (the loser leaves a gap in the sequence, which is harmless).
    let seq = sqlx::query_scalar!(
        r#"
        WITH w AS (
            UPDATE floe.workflows SET next_seq = next_seq + 1
             WHERE id = $1 AND status IN ('running', 'waiting')
               AND ($5::text IS NULL OR NOT EXISTS (
                    SELECT 1 FROM floe.inbox WHERE workflow_id = $1 AND idempotency_key = $5))
            RETURNING next_seq
        )
        INSERT INTO floe.inbox (workflow_id, seq, event, name, payload, idempotency_key)
        SELECT $1, next_seq, $2, $3, $4, $5 FROM w
        ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING seq
        "#,
        id,
        event,
        name,
        payload,
        idempotency_key,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(seq) = seq {
        advance_later(conn, id).await?;
        return Ok(Delivered::Queued(seq));
    }
    match get(&mut *conn, id).await? {
        None => Err(Error::NotFound(id)),
        Some(w) if w.status.is_finished() => Err(Error::Finished {
            id,
            status: w.status,
        }),
        Some(_) => Ok(Delivered::Duplicate),
    }
}

/// Signals a workflow: `name` with `payload`, once per idempotency key.
pub async fn signal(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    payload: &Value,
    idempotency_key: Option<&str>,
) -> Result<Delivered> {
    deliver(conn, id, "signal", Some(name), payload, idempotency_key).await
}

/// Cancels a workflow (and, when its cancellation is applied, its open
/// children) with a reason.
pub async fn cancel(conn: &mut PgConnection, id: Uuid, reason: &str) -> Result<Delivered> {
    deliver(
        conn,
        id,
        "cancel",
        Some(reason),
        &json!({ "reason": reason }),
        Some("cancel"),
    )
    .await
}

/// A workflow's unapplied events, in order.
pub async fn pending_events(
    conn: &mut PgConnection,
    id: Uuid,
    after: i64,
) -> Result<Vec<StoredEvent>> {
    let rows = sqlx::query!(
        "SELECT seq, event, name, payload, created_at FROM floe.inbox
          WHERE workflow_id = $1 AND seq > $2 AND consumed_at IS NULL ORDER BY seq",
        id,
        after
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredEvent {
            seq: r.seq,
            event: r.event,
            name: r.name,
            payload: r.payload,
            created_at: r.created_at,
        })
        .collect())
}

/// One applied event, for the history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The event.
    pub event: StoredEvent,
    /// State name before.
    pub state_before: Option<String>,
    /// State name after.
    pub state_after: String,
    /// Status after.
    pub status_after: Status,
    /// The commands the transition returned.
    pub commands: Value,
    /// Why the event changed nothing, if it did not.
    pub note: Option<String>,
}

/// Writes a transition's results: the history entries, the row, the inbox
/// marked consumed up to the last entry.
pub async fn save(
    conn: &mut PgConnection,
    row: &WorkflowRow,
    entries: &[HistoryEntry],
) -> Result<()> {
    let n = entries.len();
    let mut seqs = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let mut names: Vec<Option<String>> = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut event_ats = Vec::with_capacity(n);
    let mut befores: Vec<Option<String>> = Vec::with_capacity(n);
    let mut afters = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut commands = Vec::with_capacity(n);
    let mut notes: Vec<Option<String>> = Vec::with_capacity(n);
    for e in entries {
        seqs.push(e.event.seq);
        events.push(e.event.event.clone());
        names.push(e.event.name.clone());
        payloads.push(e.event.payload.clone());
        event_ats.push(e.event.created_at);
        befores.push(e.state_before.clone());
        afters.push(e.state_after.clone());
        statuses.push(e.status_after.as_str().to_owned());
        commands.push(e.commands.clone());
        notes.push(e.note.clone());
    }
    sqlx::query!(
        r#"
        INSERT INTO floe.history (workflow_id, seq, event, name, payload, event_at, state_before, state_after,
                                  status_after, commands, note)
        SELECT $1, s, e, n, p, t, b, a, st::floe.workflow_status, c, nt
          FROM unnest($2::int8[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[], $7::text[], $8::text[],
                      $9::text[], $10::jsonb[], $11::text[]) AS x(s, e, n, p, t, b, a, st, c, nt)
        "#,
        row.id,
        &seqs,
        &events,
        &names as &[Option<String>],
        &payloads,
        &event_ats,
        &befores as &[Option<String>],
        &afters,
        &statuses,
        &commands,
        &notes as &[Option<String>],
    )
    .execute(&mut *conn)
    .await?;
    let finished = row.status.is_finished();
    sqlx::query!(
        r#"
        UPDATE floe.workflows
           SET state = $2, status = $3::text::floe.workflow_status, context = $4, output = $5, error = $6,
               deadline = $7, deadline_reason = $8, deadline_version = $9, version = $10, in_flight = $11,
               applied_seq = $12, updated_at = now(),
               finished_at = CASE WHEN $13 THEN coalesce(finished_at, now()) END
         WHERE id = $1
        "#,
        row.id,
        row.state,
        row.status.as_str(),
        row.context,
        row.output,
        row.error,
        row.deadline,
        row.deadline_reason,
        row.deadline_version,
        row.version,
        row.in_flight,
        row.applied_seq,
        finished,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE floe.inbox SET consumed_at = now() WHERE workflow_id = $1 AND seq <= $2 AND consumed_at IS NULL",
        row.id,
        row.applied_seq
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sends `payload` on `channel` when the transaction commits.
pub async fn notify(conn: &mut PgConnection, channel: &str, payload: &str) -> Result<()> {
    sqlx::query!("SELECT pg_notify($1, $2)", channel, payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Tells listeners (the API's push, the timer loops) that `row` changed;
/// PostgreSQL delivers it only if the transaction commits.
pub async fn notify_changed(conn: &mut PgConnection, row: &WorkflowRow) -> Result<()> {
    let payload =
        json!({ "id": row.id, "kind": row.kind, "version": row.version, "status": row.status });
    notify(conn, super::CHANNEL_WORKFLOWS, &payload.to_string()).await?;
    if let Some(deadline) = row.deadline {
        let ms = (deadline.unix_timestamp_nanos() / 1_000_000).to_string();
        notify(conn, super::CHANNEL_DEADLINES, &ms).await?;
    }
    Ok(())
}

/// Records an activity a transition asked for and enqueues its job.
pub async fn schedule_activity(
    conn: &mut PgConnection,
    workflow_id: Uuid,
    activity_id: &str,
    name: &str,
    input: &Value,
    policy: &super::ActivityPolicy,
) -> Result<()> {
    let inserted = sqlx::query!(
        "INSERT INTO floe.activities (workflow_id, activity_id, name, input) VALUES ($1, $2, $3, $4)
         ON CONFLICT (workflow_id, activity_id) DO NOTHING",
        workflow_id,
        activity_id,
        name,
        input
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        let job = NewJob::new(
            super::ACTIVITY_JOB,
            json!({ "workflow_id": workflow_id, "activity_id": activity_id, "name": name, "input": input, "policy": policy }),
        )
        .max_attempts(policy.max_attempts.max(1));
        queue::store::enqueue(&mut *conn, &job).await?;
    }
    Ok(())
}

/// Records an activity's final result once and delivers it to its workflow.
/// Returns false when it had been recorded already (a repeated execution).
pub async fn record_activity(
    conn: &mut PgConnection,
    workflow_id: Uuid,
    activity_id: &str,
    attempts: i32,
    result: &Result<Value, String>,
) -> Result<bool> {
    let (status, ok, error) = match result {
        Ok(v) => ("completed", Some(v.clone()), None),
        Err(e) => ("failed", None, Some(e.clone())),
    };
    let recorded = sqlx::query!(
        "UPDATE floe.activities SET status = $3, result = $4, error = $5, attempts = $6, finished_at = now()
          WHERE workflow_id = $1 AND activity_id = $2 AND status = 'scheduled'",
        workflow_id,
        activity_id,
        status,
        ok,
        error,
        attempts
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if recorded == 0 {
        return Ok(false);
    }
    let payload = match result {
        Ok(v) => json!({ "id": activity_id, "ok": v }),
        Err(e) => json!({ "id": activity_id, "error": e }),
    };
    match deliver(
        conn,
        workflow_id,
        "activity",
        Some(activity_id),
        &payload,
        Some(&format!("activity:{activity_id}")),
    )
    .await
    {
        // A finished workflow no longer needs the result; it is recorded.
        Ok(_) | Err(Error::Finished { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Whether an activity's result is recorded already.
pub async fn activity_done(
    db: impl PgExecutor<'_>,
    workflow_id: Uuid,
    activity_id: &str,
) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT status <> 'scheduled' AS "done!" FROM floe.activities WHERE workflow_id = $1 AND activity_id = $2"#,
        workflow_id,
        activity_id
    )
    .fetch_optional(db)
    .await?
    .unwrap_or(true))
}

/// Open children of a workflow.
pub async fn open_children(conn: &mut PgConnection, parent: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        "SELECT id FROM floe.workflows WHERE parent_id = $1 AND status IN ('running', 'waiting')",
        parent
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// Fires up to `limit` due deadlines: clears each, puts a timer event in the
/// inbox (carrying the deadline's version, so that a moved deadline's timer
/// is recognised as stale) and enqueues the advance jobs, in one statement.
/// Returns how many fired.
pub async fn fire_due_timers(db: impl PgExecutor<'_>, limit: i64) -> Result<u64> {
    let fired = sqlx::query_scalar!(
        r#"
        WITH due AS (
            SELECT id FROM floe.workflows
             WHERE deadline <= now() AND deadline IS NOT NULL AND status IN ('running', 'waiting')
             ORDER BY deadline
             LIMIT $1
             FOR UPDATE SKIP LOCKED
        ), fired AS (
            UPDATE floe.workflows w SET deadline = NULL, next_seq = w.next_seq + 1
              FROM due WHERE w.id = due.id
            RETURNING w.id, w.next_seq, w.deadline_reason, w.deadline_version
        ), events AS (
            INSERT INTO floe.inbox (workflow_id, seq, event, name, payload)
            SELECT id, next_seq, 'timer', deadline_reason, jsonb_build_object('deadline_version', deadline_version)
              FROM fired
        ), jobs AS (
            INSERT INTO floe.jobs (kind, payload, state, unique_key, max_attempts)
            SELECT 'floe.advance', jsonb_build_object('workflow_id', id), 'available', id::text, 1000 FROM fired
            ON CONFLICT (queue, kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
            DO NOTHING
        )
        SELECT count(*) AS "fired!" FROM fired
        "#,
        limit
    )
    .fetch_one(db)
    .await?;
    Ok(fired as u64)
}

/// The earliest deadline of an open workflow.
pub async fn next_deadline(db: impl PgExecutor<'_>) -> Result<Option<OffsetDateTime>> {
    Ok(sqlx::query_scalar!(
        "SELECT min(deadline) FROM floe.workflows WHERE deadline IS NOT NULL AND status IN ('running', 'waiting')"
    )
    .fetch_one(db)
    .await?)
}

/// A workflow's history, in order.
pub async fn history(db: impl PgExecutor<'_>, id: Uuid) -> Result<Vec<HistoryEntry>> {
    let rows = sqlx::query!(
        r#"SELECT seq, event, name, payload, event_at, state_before, state_after, status_after::text AS "status_after!",
                  commands, note
             FROM floe.history WHERE workflow_id = $1 ORDER BY seq"#,
        id
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryEntry {
            event: StoredEvent {
                seq: r.seq,
                event: r.event,
                name: r.name,
                payload: r.payload,
                created_at: r.event_at,
            },
            state_before: r.state_before,
            state_after: r.state_after,
            status_after: r.status_after.parse().unwrap_or(Status::Failed),
            commands: r.commands,
            note: r.note,
        })
        .collect())
}

/// Open workflows of `kind` (for the replay check).
pub async fn open_of_kind(db: impl PgExecutor<'_>, kind: &str) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        "SELECT id FROM floe.workflows WHERE kind = $1 AND status IN ('running', 'waiting') ORDER BY id",
        kind
    )
    .fetch_all(db)
    .await?)
}
