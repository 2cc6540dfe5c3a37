//! Every SQL statement on the workflow tables. Functions that change a
//! workflow take a connection or transaction, so that starting, signalling
//! and cancelling can be part of the caller's own transaction; each one
//! enqueues the "advance" job in that same transaction.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Status;
use super::registry::StoredEvent;
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

/// Records the workflow kinds `definitions` holds, with their versions, in
/// `floe.definitions` (one statement): `floe_ops.start_workflow` starts only
/// kinds some process has registered, at the version registered last.
/// `registered_by` names the process (program, host, pid).
pub async fn register_definitions(
    db: impl PgExecutor<'_>,
    definitions: &super::Registry,
    registered_by: &str,
) -> Result<()> {
    let (kinds, versions): (Vec<&str>, Vec<i32>) = definitions.versions().unzip();
    if kinds.is_empty() {
        return Ok(());
    }
    let priorities: Vec<i16> = kinds.iter().map(|k| definitions.priority(k)).collect();
    sqlx::query!(
        r#"INSERT INTO floe.definitions (kind, version, priority, registered_by)
           SELECT k, v, p, $4 FROM unnest($1::text[], $2::int4[], $3::int2[]) AS d(k, v, p)
           ON CONFLICT (kind) DO UPDATE
              SET version = excluded.version, priority = excluded.priority,
                  registered_at = now(), registered_by = excluded.registered_by"#,
        &kinds as &[&str],
        &versions,
        &priorities,
        registered_by,
    )
    .execute(db)
    .await?;
    Ok(())
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

/// Reads and locks workflows for a transition, in id order: transactions
/// that lock overlapping sets take the locks in the same order, so they wait
/// for each other instead of deadlocking. Unknown ids are left out.
pub async fn lock_many(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<WorkflowRow>> {
    let rows = sqlx::query!(
        r#"SELECT id, kind, key, state, status::text AS "status!", context, input, output, error, deadline,
                  deadline_reason, deadline_version, version, definition_version, parent_id, in_flight,
                  next_seq, applied_seq, created_at, updated_at
             FROM floe.workflows WHERE id = ANY($1) ORDER BY id FOR UPDATE"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| workflow_row!(r)).collect())
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
/// advance job are written in the same transaction. One statement: the SQL
/// function `floe.workflow_start`, which `floe_ops.start_workflow` (psql,
/// triggers) calls too, so both write the same rows.
pub async fn start(
    conn: &mut PgConnection,
    kind: &str,
    key: &str,
    input: &Value,
    definition_version: i32,
    parent_id: Option<Uuid>,
) -> Result<Started> {
    // The current trace id (crate::trace), or none, becomes the transaction's
    // `floe.trace_id` first: the inbox and job rows default to it.
    let trace = crate::trace::current();
    let row = sqlx::query!(
        r#"WITH trace AS MATERIALIZED (
               SELECT set_config('floe.trace_id', coalesce($7::text, ''), true)
           )
           SELECT workflow_id AS "id!", created AS "created!"
             FROM trace, floe.workflow_start($1, $2, $3, $4, $5, $6)"#,
        Uuid::now_v7(),
        kind,
        key,
        input,
        definition_version,
        parent_id,
        trace.as_ref().map(|t| t.as_str()),
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Started {
        id: row.id,
        created: row.created,
    })
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
    // One statement: the SQL function `floe.workflow_deliver`, which
    // `floe_ops.signal` and `floe_ops.cancel` (psql, triggers) call too, so
    // both write the same rows.
    // The current trace id (crate::trace), or none, becomes the transaction's
    // `floe.trace_id` first: the inbox and job rows default to it.
    let trace = crate::trace::current();
    let seq = sqlx::query_scalar!(
        r#"WITH trace AS MATERIALIZED (
               SELECT set_config('floe.trace_id', coalesce($6::text, ''), true)
           )
           SELECT floe.workflow_deliver($1, $2, $3, $4, $5) FROM trace"#,
        id,
        event,
        name,
        payload,
        idempotency_key,
        trace.as_ref().map(|t| t.as_str()),
    )
    .fetch_one(&mut *conn)
    .await?;
    if let Some(seq) = seq {
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
/// children) with a reason. `floe_ops.cancel` delivers the same event.
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

/// The unapplied events of each workflow in `after` (id, last applied
/// sequence), by workflow and in sequence order, each with its trace id.
pub async fn pending_events(
    conn: &mut PgConnection,
    after: &[(Uuid, i64)],
) -> Result<Vec<(Uuid, StoredEvent, Option<String>)>> {
    let (ids, seqs): (Vec<Uuid>, Vec<i64>) = after.iter().copied().unzip();
    let rows = sqlx::query!(
        r#"SELECT i.workflow_id, i.seq, i.event, i.name, i.payload, i.created_at, i.trace_id
             FROM unnest($1::uuid[], $2::int8[]) AS w(id, after)
             JOIN floe.inbox i ON i.workflow_id = w.id AND i.seq > w.after
            ORDER BY i.workflow_id, i.seq"#,
        &ids,
        &seqs
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let event = StoredEvent {
                seq: r.seq,
                event: r.event,
                name: r.name,
                payload: r.payload,
                created_at: r.created_at,
            };
            (r.workflow_id, event, r.trace_id)
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

/// Writes transitions' results, two statements however many workflows: the
/// history entries (each with its workflow's id) and the rows. A row's
/// `applied_seq` marks its inbox events up to there consumed.
pub async fn save(
    conn: &mut PgConnection,
    rows: &[&WorkflowRow],
    entries: &[(Uuid, HistoryEntry)],
) -> Result<()> {
    let n = entries.len();
    let mut ids = Vec::with_capacity(n);
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
    for (id, e) in entries {
        ids.push(*id);
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
        SELECT w, s, e, n, p, t, b, a, st::floe.workflow_status, c, nt
          FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[], $7::text[],
                      $8::text[], $9::text[], $10::jsonb[], $11::text[]) AS x(w, s, e, n, p, t, b, a, st, c, nt)
        "#,
        &ids,
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

    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut contexts = Vec::with_capacity(n);
    let mut outputs: Vec<Option<Value>> = Vec::with_capacity(n);
    let mut errors: Vec<Option<String>> = Vec::with_capacity(n);
    let mut deadlines: Vec<Option<OffsetDateTime>> = Vec::with_capacity(n);
    let mut reasons: Vec<Option<String>> = Vec::with_capacity(n);
    let mut deadline_versions = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut in_flights = Vec::with_capacity(n);
    let mut applied = Vec::with_capacity(n);
    let mut next_seqs = Vec::with_capacity(n);
    let mut finished = Vec::with_capacity(n);
    let mut definition_versions = Vec::with_capacity(n);
    for row in rows {
        ids.push(row.id);
        states.push(row.state.clone());
        statuses.push(row.status.as_str().to_owned());
        contexts.push(row.context.clone());
        outputs.push(row.output.clone());
        errors.push(row.error.clone());
        deadlines.push(row.deadline);
        reasons.push(row.deadline_reason.clone());
        deadline_versions.push(row.deadline_version);
        versions.push(row.version);
        in_flights.push(row.in_flight);
        applied.push(row.applied_seq);
        next_seqs.push(row.next_seq);
        finished.push(row.status.is_finished());
        definition_versions.push(row.definition_version);
    }
    sqlx::query!(
        r#"
        UPDATE floe.workflows w
           SET state = x.state, status = x.status::floe.workflow_status, context = x.context, output = x.output,
               error = x.error, deadline = x.deadline, deadline_reason = x.reason,
               deadline_version = x.deadline_version, version = x.version, in_flight = x.in_flight,
               applied_seq = x.applied_seq, next_seq = greatest(w.next_seq, x.next_seq), updated_at = now(),
               finished_at = CASE WHEN x.finished THEN coalesce(w.finished_at, now()) END,
               definition_version = x.definition_version
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::text[], $7::timestamptz[],
                      $8::text[], $9::int8[], $10::int8[], $11::int4[], $12::int8[], $13::int8[], $14::bool[],
                      $15::int4[])
               AS x(id, state, status, context, output, error, deadline, reason, deadline_version, version,
                    in_flight, applied_seq, next_seq, finished, definition_version)
         WHERE w.id = x.id
        "#,
        &ids,
        &states,
        &statuses,
        &contexts,
        &outputs as &[Option<Value>],
        &errors as &[Option<String>],
        &deadlines as &[Option<OffsetDateTime>],
        &reasons as &[Option<String>],
        &deadline_versions,
        &versions,
        &in_flights,
        &applied,
        &next_seqs,
        &finished,
        &definition_versions,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sends each `(channel, payload)` in one statement: inside a transaction
/// when it commits, outside one at once (how [`super::advance::advance_many`]
/// sends its notes, after its COMMIT).
pub async fn notify(conn: &mut PgConnection, notes: &[(&str, String)]) -> Result<()> {
    if notes.is_empty() {
        return Ok(());
    }
    let (channels, payloads): (Vec<&str>, Vec<&str>) =
        notes.iter().map(|(c, p)| (*c, p.as_str())).unzip();
    sqlx::query!(
        "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)",
        &channels as &[&str],
        &payloads as &[&str]
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The notification that tells listeners (the API's push) that `row`
/// changed.
pub fn changed(row: &WorkflowRow) -> (&'static str, String) {
    let payload =
        json!({ "id": row.id, "kind": row.kind, "version": row.version, "status": row.status });
    (super::CHANNEL_WORKFLOWS, payload.to_string())
}

/// The notification that wakes timer loops for a deadline (milliseconds
/// since the epoch), so that a nearer one than they sleep for is not late.
pub fn deadline_set(deadline: OffsetDateTime) -> (&'static str, String) {
    let ms = deadline.unix_timestamp_nanos() / 1_000_000;
    (super::CHANNEL_DEADLINES, ms.to_string())
}

/// An activity a transition asked for.
#[derive(Debug, Clone)]
pub struct NewActivity {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Its id within the workflow.
    pub activity_id: String,
    /// The registered activity.
    pub name: String,
    /// Its input.
    pub input: Value,
    /// Its retry policy.
    pub policy: super::ActivityPolicy,
    /// Its job's priority: the workflow kind's.
    pub priority: i16,
    /// The trace of the event whose transition asked for it; its job and
    /// its result event carry the same.
    pub trace_id: Option<String>,
}

/// Records activities transitions asked for and enqueues their jobs (two
/// statements however many). One recorded before (a repeated transition)
/// gets no second job.
pub async fn schedule_activities(conn: &mut PgConnection, new: &[NewActivity]) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let workflow_ids: Vec<Uuid> = new.iter().map(|a| a.workflow_id).collect();
    let activity_ids: Vec<&str> = new.iter().map(|a| a.activity_id.as_str()).collect();
    let names: Vec<&str> = new.iter().map(|a| a.name.as_str()).collect();
    let inputs: Vec<&Value> = new.iter().map(|a| &a.input).collect();
    let trace_ids: Vec<Option<&str>> = new.iter().map(|a| a.trace_id.as_deref()).collect();
    let inserted = sqlx::query!(
        r#"INSERT INTO floe.activities (workflow_id, activity_id, name, input, trace_id)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[])
           ON CONFLICT (workflow_id, activity_id) DO NOTHING
           RETURNING workflow_id, activity_id"#,
        &workflow_ids,
        &activity_ids as &[&str],
        &names as &[&str],
        &inputs as &[&Value],
        &trace_ids as &[Option<&str>],
    )
    .fetch_all(&mut *conn)
    .await?;
    let jobs: Vec<NewJob> = new
        .iter()
        .filter(|a| {
            inserted
                .iter()
                .any(|r| r.workflow_id == a.workflow_id && r.activity_id == a.activity_id)
        })
        .map(|a| {
            NewJob::new(
                super::ACTIVITY_JOB,
                json!({ "workflow_id": a.workflow_id, "activity_id": a.activity_id, "name": a.name,
                        "input": a.input, "policy": a.policy }),
            )
            // A spare run past the policy's attempts: see SPARE_RUNS.
            .max_attempts(a.policy.max_attempts.max(1) + super::SPARE_RUNS)
            .priority(a.priority)
            .trace_id(a.trace_id.clone())
        })
        .collect();
    queue::store::enqueue_many(&mut *conn, &jobs).await?;
    Ok(())
}

/// An activity's final result, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityResult {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Its id within the workflow.
    pub activity_id: String,
    /// Attempts it took.
    pub attempts: i32,
    /// Its output, or why it failed for good.
    pub result: Result<Value, String>,
}

impl ActivityResult {
    /// The inbox event that delivers it: `{"id", "ok"}` or `{"id", "error"}`.
    pub fn payload(&self) -> Value {
        match &self.result {
            Ok(v) => json!({ "id": self.activity_id, "ok": v }),
            Err(e) => json!({ "id": self.activity_id, "error": e }),
        }
    }
}

/// Records activities' final results, each once: returns the indexes (into
/// `results`) of those recorded now, each with the activity's trace id; one
/// recorded before (a repeated execution) is left out.
pub async fn record_results(
    conn: &mut PgConnection,
    results: &[ActivityResult],
) -> Result<Vec<(usize, Option<String>)>> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let n = results.len();
    let mut indexes = Vec::with_capacity(n);
    let mut workflow_ids = Vec::with_capacity(n);
    let mut activity_ids = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut oks: Vec<Option<&Value>> = Vec::with_capacity(n);
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    for (i, r) in results.iter().enumerate() {
        indexes.push(i as i32);
        workflow_ids.push(r.workflow_id);
        activity_ids.push(r.activity_id.as_str());
        statuses.push(if r.result.is_ok() {
            "completed"
        } else {
            "failed"
        });
        oks.push(r.result.as_ref().ok());
        errors.push(r.result.as_ref().err().map(String::as_str));
        attempts.push(r.attempts);
    }
    let recorded = sqlx::query!(
        r#"
        UPDATE floe.activities a
           SET status = x.status, result = x.ok, error = x.error, attempts = x.attempts, finished_at = now()
          FROM unnest($1::int4[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::int4[])
               AS x(i, workflow_id, activity_id, status, ok, error, attempts)
         WHERE a.workflow_id = x.workflow_id AND a.activity_id = x.activity_id AND a.status = 'scheduled'
        RETURNING x.i AS "i!", a.trace_id
        "#,
        &indexes,
        &workflow_ids,
        &activity_ids as &[&str],
        &statuses as &[&str],
        &oks as &[Option<&Value>],
        &errors as &[Option<&str>],
        &attempts,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut recorded: Vec<(usize, Option<String>)> = recorded
        .into_iter()
        .map(|r| (r.i as usize, r.trace_id))
        .collect();
    recorded.sort_unstable();
    Ok(recorded)
}

/// An event for a workflow whose row this transaction holds locked (so its
/// sequence number is known without a round trip).
#[derive(Debug, Clone)]
pub struct LockedEvent {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Its sequence number: the row's `next_seq` plus one.
    pub seq: i64,
    /// The event.
    pub event: String,
    /// Its name.
    pub name: Option<String>,
    /// Its data.
    pub payload: Value,
    /// Unique per workflow.
    pub idempotency_key: Option<String>,
    /// The trace it belongs to.
    pub trace_id: Option<String>,
}

/// Puts events in the inboxes of workflows this transaction has locked, in
/// one statement; the caller writes the rows' `next_seq`.
pub async fn insert_events(conn: &mut PgConnection, events: &[LockedEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.workflow_id).collect();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let names: Vec<Option<&str>> = events.iter().map(|e| e.name.as_deref()).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    let keys: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.idempotency_key.as_deref())
        .collect();
    let trace_ids: Vec<Option<&str>> = events.iter().map(|e| e.trace_id.as_deref()).collect();
    sqlx::query!(
        "INSERT INTO floe.inbox (workflow_id, seq, event, name, payload, idempotency_key, trace_id)
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::jsonb[], $6::text[],
                              $7::text[])",
        &ids,
        &seqs,
        &kinds as &[&str],
        &names as &[Option<&str>],
        &payloads as &[&Value],
        &keys as &[Option<&str>],
        &trace_ids as &[Option<&str>],
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
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
    Ok(fire_timers(db, limit).await?.len() as u64)
}

/// A deadline that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredTimer {
    /// The workflow's kind.
    pub kind: String,
    /// Seconds from the deadline until it fired.
    pub lateness_seconds: f64,
}

/// [`fire_due_timers`], telling which kinds' timers fired and how late.
///
/// The statement is `floe.fire_timers`, a function whose planner settings
/// keep the ordered scan of the deadline index even before the table has
/// statistics (migration `20261122001300_timer_plan.sql`).
pub async fn fire_timers(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<FiredTimer>> {
    let fired: Vec<(String, f64)> =
        sqlx::query_as("SELECT kind, lateness FROM floe.fire_timers($1)")
            .bind(limit)
            .fetch_all(db)
            .await?;
    Ok(fired
        .into_iter()
        .map(|(kind, lateness_seconds)| FiredTimer {
            kind,
            lateness_seconds,
        })
        .collect())
}

/// Open workflows by kind and status (what the `floe_workflows_open` gauge
/// shows); reads the `(kind, status)` index, not the finished rows.
pub async fn open_counts(db: impl PgExecutor<'_>) -> Result<Vec<(String, Status, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT kind, status::text AS "status!", count(*) AS "n!"
             FROM floe.workflows WHERE status IN ('running', 'waiting') GROUP BY kind, status"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.kind, r.status.parse().ok()?, r.n)))
        .collect())
}

/// Empties the transaction's `floe.trace_id` setting, so that rows written
/// after this get no trace id by default.
pub async fn clear_trace(conn: &mut PgConnection) -> Result<()> {
    sqlx::query_scalar!("SELECT set_config('floe.trace_id', '', true)")
        .fetch_one(&mut *conn)
        .await?;
    Ok(())
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
    history_after(db, id, 0, i64::MAX).await
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

/// A workflow without its data (context, input, output): what lists show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowSummary {
    /// Id.
    pub id: Uuid,
    /// Kind (the definition).
    pub kind: String,
    /// Business key.
    pub key: String,
    /// The definition's state name.
    pub state: String,
    /// Status.
    pub status: Status,
    /// When it must be woken if nothing else happens.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// Why.
    pub deadline_reason: Option<String>,
    /// Transitions applied.
    pub version: i64,
    /// The workflow that started it, if any.
    pub parent_id: Option<Uuid>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Which workflows [`list`] returns; every filter left `None` (or `false`)
/// matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only this state name.
    pub state: Option<String>,
    /// Only open workflows whose deadline has passed (no timer loop fired it).
    pub overdue: bool,
    /// Only workflows whose business key contains this, ignoring case; `%`
    /// and `_` match themselves (they are not wildcards).
    pub key_contains: Option<String>,
    /// Only workflows waiting on a signal from a person: status `waiting`
    /// (nothing in flight), with the deadline, if any, as its time limit.
    pub waiting: bool,
    /// Only the children of this workflow.
    pub parent: Option<Uuid>,
    /// Only ids below this one: the keyset cursor (the last id of the previous page).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: i64,
}

/// Workflows matching `filter`, newest first (ids are UUIDv7, so id order is
/// creation order); page on with `before` set to the last id returned.
pub async fn list(db: impl PgExecutor<'_>, filter: &ListFilter) -> Result<Vec<WorkflowSummary>> {
    let rows = sqlx::query!(
        r#"SELECT id, kind, key, state, status::text AS "status!", deadline, deadline_reason, version, parent_id,
                  created_at, updated_at
             FROM floe.workflows
            WHERE ($1::text IS NULL OR kind = $1)
              AND ($2::text IS NULL OR status = $2::text::floe.workflow_status)
              AND ($3::text IS NULL OR state = $3)
              AND (NOT $4::bool OR (deadline < now() AND status IN ('running', 'waiting')))
              AND ($5::uuid IS NULL OR id < $5)
              AND ($7::text IS NULL OR key ILIKE $7)
              AND (NOT $8::bool OR status = 'waiting')
              AND ($9::uuid IS NULL OR parent_id = $9)
            ORDER BY id DESC
            LIMIT $6"#,
        filter.kind,
        filter.status.map(Status::as_str),
        filter.state,
        filter.overdue,
        filter.before,
        filter.limit,
        filter.key_contains.as_deref().map(contains_pattern),
        filter.waiting,
        filter.parent,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| WorkflowSummary {
            id: r.id,
            kind: r.kind,
            key: r.key,
            state: r.state,
            status: r.status.parse().unwrap_or(Status::Failed),
            deadline: r.deadline,
            deadline_reason: r.deadline_reason,
            version: r.version,
            parent_id: r.parent_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

/// The `LIKE` pattern that matches values containing `text` literally: its
/// `\`, `%` and `_` escaped (with `LIKE`'s default escape character).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Every child a workflow started, open or finished, oldest first.
pub async fn children(db: impl PgExecutor<'_>, parent: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        "SELECT id FROM floe.workflows WHERE parent_id = $1 ORDER BY id",
        parent
    )
    .fetch_all(db)
    .await?)
}

/// Up to `limit` history entries of a workflow with a sequence above
/// `after`, in order: what a reader that saw up to `after` missed.
pub async fn history_after(
    db: impl PgExecutor<'_>,
    id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<HistoryEntry>> {
    let rows = sqlx::query!(
        r#"SELECT seq, event, name, payload, event_at, state_before, state_after, status_after::text AS "status_after!",
                  commands, note
             FROM floe.history WHERE workflow_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"#,
        id,
        after,
        limit
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

/// A workflow's status alone (`None` when there is no such workflow).
pub async fn status(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Status>> {
    let status = sqlx::query_scalar!(
        r#"SELECT status::text AS "status!" FROM floe.workflows WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(status.map(|s| s.parse().unwrap_or(Status::Failed)))
}
