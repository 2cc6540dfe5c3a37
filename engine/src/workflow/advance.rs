//! Applying workflows' pending events: DESIGN.md's eight steps in one
//! transaction, for one workflow or many. Lock the rows, take the inbox
//! events after each row's `applied_seq` in order, apply each ([`step`],
//! pure), append the history, write the rows (their new `applied_seq` marks
//! the events consumed), carry out the commands' effects (activity and child
//! jobs) — all committed together or not at all — and NOTIFY once COMMIT
//! has returned (a notifying transaction's commit waits for every other's:
//! queue::store::BEGIN_DEFERRING_WAKEUPS).

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use super::registry::{Definition, StoredEvent};
use super::store::{self, HistoryEntry, WorkflowRow};
use super::{ADVANCE_JOB, ActivityPolicy, Command, Ctx, Registry, Status};
use crate::queue::{self, NewJob};
use crate::trace::TraceId;

/// I/O a step asks for; [`advance`] carries it out, replay does not.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Record and enqueue an activity.
    Activity {
        /// Its id within the workflow.
        id: String,
        /// The registered activity.
        name: String,
        /// Its input.
        input: Value,
        /// Its retry policy.
        policy: ActivityPolicy,
    },
    /// Start a child workflow.
    Child {
        /// Its id within the parent.
        id: String,
        /// Its kind.
        kind: String,
        /// Its input.
        input: Value,
    },
    /// Cancel every open child.
    CancelChildren {
        /// Why.
        reason: String,
    },
    /// Tell the parent how this workflow finished.
    ReportToParent,
    /// A NOTIFY for the application.
    Emit {
        /// What happened.
        name: String,
    },
}

/// The child id a parent gave, from a child's key (`<parent id>/<child id>`).
fn child_id(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, id)| id)
}

/// Applies one event to `row` (pure: no I/O, no clock). Returns the history
/// entry and the effects to carry out. Used by [`advance`] and by replay, so
/// that both fold events the same way.
pub fn step(
    row: &mut WorkflowRow,
    event: &StoredEvent,
    definition: Option<&dyn Definition>,
) -> (HistoryEntry, Vec<Effect>) {
    let state_before = (row.version > 0).then(|| row.state.clone());
    let was_finished = row.status.is_finished();
    let mut effects = Vec::new();
    let mut commands = Value::Array(Vec::new());
    let mut note = None;
    row.applied_seq = row.applied_seq.max(event.seq);

    if row.status.is_finished() {
        note = Some(format!("workflow already {}; event ignored", row.status));
    } else if event.event == "cancel" {
        let reason = event.name.clone().unwrap_or_else(|| "cancelled".into());
        row.status = Status::Cancelled;
        row.error = Some(reason.clone());
        effects.push(Effect::CancelChildren { reason });
        row.version += 1;
    } else if event.event == "timer"
        && event
            .payload
            .get("deadline_version")
            .and_then(Value::as_i64)
            != Some(row.deadline_version)
    {
        note = Some("stale timer: the deadline moved after it fired".into());
    } else if let Some(Err(error)) = (event.event == "signal")
        .then_some(definition)
        .flatten()
        .map(|d| d.check_signal(event.name.as_deref().unwrap_or_default(), &event.payload))
    {
        // A signal the definition cannot take (delivered around the API's
        // check, from SQL say) is bad input: it changes nothing.
        note = Some(format!("signal ignored: {error}"));
    } else {
        if matches!(event.event.as_str(), "activity" | "child") {
            row.in_flight = (row.in_flight - 1).max(0);
        }
        let ctx = Ctx {
            workflow_id: row.id,
            seq: event.seq,
            now: event.created_at,
        };
        // A workflow's state is its definition version's: one started now is
        // this build's; one stored by an older version is upgraded first.
        let upgraded = match definition {
            Some(d) if event.event == "start" => {
                row.definition_version = d.version();
                Ok(())
            }
            Some(d) if row.definition_version != d.version() => d
                .upgrade(row.definition_version, &row.context)
                .map(|context| {
                    note = Some(format!(
                        "state upgraded from definition version {} to {}",
                        row.definition_version,
                        d.version()
                    ));
                    row.context = context;
                    row.definition_version = d.version();
                }),
            _ => Ok(()),
        };
        let context = (event.event != "start").then_some(&row.context);
        let applied = match (definition, upgraded) {
            (_, Err(error)) => Err(error),
            (Some(d), Ok(())) => d.apply(context, event, &ctx),
            (None, Ok(())) => Err(format!(
                "no definition of workflow kind {:?} in this build",
                row.kind
            )),
        };
        match applied {
            Err(error) => {
                row.status = Status::Failed;
                row.error = Some(error.clone());
                note = Some(error);
            }
            Ok(applied) => {
                row.context = applied.context;
                row.state = applied.state;
                commands = serde_json::to_value(&applied.commands).unwrap_or(Value::Null);
                for command in applied.commands {
                    match command {
                        Command::RunActivity {
                            id,
                            name,
                            input,
                            policy,
                        } => {
                            row.in_flight += 1;
                            effects.push(Effect::Activity {
                                id,
                                name,
                                input,
                                policy,
                            });
                        }
                        Command::SetDeadline { at, reason } => {
                            row.deadline = Some(at);
                            row.deadline_reason = Some(reason);
                            row.deadline_version += 1;
                        }
                        Command::ClearDeadline => {
                            row.deadline = None;
                            row.deadline_reason = None;
                            row.deadline_version += 1;
                        }
                        Command::StartChild { id, kind, input } => {
                            row.in_flight += 1;
                            effects.push(Effect::Child { id, kind, input });
                        }
                        Command::Emit { name, .. } => effects.push(Effect::Emit { name }),
                        Command::Complete { output } => {
                            row.status = Status::Completed;
                            row.output = Some(output);
                        }
                        Command::Fail { error } => {
                            row.status = Status::Failed;
                            row.error = Some(error);
                        }
                    }
                }
                if !row.status.is_finished() {
                    row.status = if row.in_flight > 0 {
                        Status::Running
                    } else {
                        Status::Waiting
                    };
                }
            }
        }
        row.version += 1;
    }
    if !was_finished && row.status.is_finished() {
        row.deadline = None;
        if row.parent_id.is_some() {
            effects.push(Effect::ReportToParent);
        }
        if row.status == Status::Failed || row.status == Status::Cancelled {
            effects.push(Effect::CancelChildren {
                reason: format!("parent {}", row.status),
            });
        }
    }
    let entry = HistoryEntry {
        event: event.clone(),
        state_before,
        state_after: row.state.clone(),
        status_after: row.status,
        commands,
        note,
    };
    (entry, effects)
}

/// What [`advance`] did to one workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    /// Events applied (including ignored ones).
    pub applied: usize,
    /// The status afterwards (`None`: no such workflow).
    pub status: Option<Status>,
}

/// Applies every pending event of workflow `id` in one transaction.
pub async fn advance(pool: &PgPool, registry: &Registry, id: Uuid) -> store::Result<Advanced> {
    let mut done = advance_many(pool, registry, &[id], &[]).await?;
    Ok(done.pop().map_or(
        Advanced {
            applied: 0,
            status: None,
        },
        |(_, a)| a,
    ))
}

/// How long a workflow this build cannot run waits before a worker looks at
/// it again (see [`defer_incompatible`]).
pub const INCOMPATIBLE_RETRY: time::Duration = time::Duration::seconds(5);

/// The workflows among `rows` this build cannot run: a newer definition
/// version stored their state (during a rolling deploy), this build's
/// upgrade from their older version fails, or this build has no definition
/// of their kind while another worker registered one (a pool of workers
/// with different kinds, or a deploy that adds a kind). Their events stay
/// pending, untouched, and an advance job looks at them again after
/// [`INCOMPATIBLE_RETRY`]: a worker of the right version or kind (or a
/// fixed build) carries on. Nothing is applied with the wrong code, and
/// nothing fails for a deploy's mistake; `floe upgrade --dry-run` finds
/// these first. A kind no worker ever registered fails its workflow when
/// applied (see [`step`]).
async fn defer_incompatible(
    conn: &mut PgConnection,
    registry: &Registry,
    rows: &[WorkflowRow],
) -> store::Result<Vec<Uuid>> {
    let open = || rows.iter().filter(|r| !r.status.is_finished());
    let mut unknown: Vec<&str> = open()
        .filter(|r| registry.get(&r.kind).is_none())
        .map(|r| r.kind.as_str())
        .collect();
    // Kinds another worker registered, with their priority.
    let elsewhere: Vec<(String, i16)> = if unknown.is_empty() {
        Vec::new()
    } else {
        unknown.sort_unstable();
        unknown.dedup();
        sqlx::query!(
            "SELECT kind, priority FROM floe.definitions WHERE kind = ANY($1)",
            &unknown as &[&str]
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.kind, r.priority))
        .collect()
    };
    let registered_elsewhere = |kind: &str| elsewhere.iter().find(|(k, _)| k == kind);
    let newer: Vec<&WorkflowRow> = open()
        .filter(|r| match registry.get(&r.kind) {
            None if registered_elsewhere(&r.kind).is_some() => {
                tracing::warn!(workflow_id = %r.id, kind = %r.kind,
                    "no definition of this kind in this build, but another worker registered one; left for it");
                true
            }
            None => false,
            Some(d) if d.version() < r.definition_version => {
                tracing::warn!(workflow_id = %r.id, kind = %r.kind, stored = r.definition_version,
                    "stored by a newer definition version than this build's; left for a newer worker");
                true
            }
            Some(d) if d.version() > r.definition_version && !r.context.is_null() => {
                match d.upgrade(r.definition_version, &r.context) {
                    Ok(_) => false,
                    Err(error) => {
                        tracing::error!(workflow_id = %r.id, kind = %r.kind, %error,
                            "cannot upgrade the stored state; left untouched");
                        true
                    }
                }
            }
            Some(_) => false,
        })
        .collect();
    if newer.is_empty() {
        return Ok(Vec::new());
    }
    let at = time::OffsetDateTime::now_utc() + INCOMPATIBLE_RETRY;
    let jobs: Vec<NewJob> = newer
        .iter()
        .map(|r| {
            // The kind's priority: this build's, or the registered one.
            let priority = registered_elsewhere(&r.kind)
                .map_or_else(|| registry.priority(&r.kind), |(_, p)| *p);
            NewJob::new(ADVANCE_JOB, json!({ "workflow_id": r.id }))
                .priority(priority)
                .run_at(at)
                .unique_key(r.id.to_string())
                .max_attempts(1000)
        })
        .collect();
    queue::store::enqueue_many(&mut *conn, &jobs).await?;
    Ok(newer.iter().map(|r| r.id).collect())
}

/// Records activity `results` (each once) and applies every pending event
/// of each workflow in `ids` and of the workflows the results belong to, all
/// in one transaction: a round trip per step of DESIGN.md's eight, however
/// many workflows. A result is put in its workflow's inbox and applied in the
/// same transaction that records it. Each workflow's events are applied in
/// order under its row lock, so one workflow's events never interleave with
/// another transaction's. Returns what happened to each workflow (in id
/// order).
pub async fn advance_many(
    pool: &PgPool,
    registry: &Registry,
    ids: &[Uuid],
    results: &[store::ActivityResult],
) -> store::Result<Vec<(Uuid, Advanced)>> {
    let mut ids: Vec<Uuid> = ids
        .iter()
        .copied()
        .chain(results.iter().map(|r| r.workflow_id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // Its wake-ups and change notes go out after COMMIT, not in it: see
    // queue::store::BEGIN_DEFERRING_WAKEUPS.
    let mut conn = pool.acquire().await?;
    let mut tx = conn
        .begin_with(queue::store::BEGIN_DEFERRING_WAKEUPS)
        .await?;
    let mut rows = store::lock_many(&mut tx, &ids).await?;
    let newer = defer_incompatible(&mut tx, registry, &rows).await?;
    let finished_before: Vec<bool> = rows.iter().map(|r| r.status.is_finished()).collect();
    let mut events = Vec::new();
    for (i, trace_id) in store::record_results(&mut tx, results).await? {
        let result = &results[i];
        let Ok(at) = rows.binary_search_by_key(&result.workflow_id, |r| r.id) else {
            continue;
        };
        let row = &mut rows[at];
        // A finished workflow no longer needs the result; it is recorded.
        if !row.status.is_finished() {
            row.next_seq += 1;
            events.push(store::LockedEvent {
                workflow_id: row.id,
                seq: row.next_seq,
                event: "activity".into(),
                name: Some(result.activity_id.clone()),
                payload: result.payload(),
                idempotency_key: Some(format!("activity:{}", result.activity_id)),
                trace_id,
            });
        }
    }
    store::insert_events(&mut tx, &events).await?;
    let after: Vec<(Uuid, i64)> = rows
        .iter()
        .filter(|r| !newer.contains(&r.id))
        .map(|r| (r.id, r.applied_seq))
        .collect();
    let pending = store::pending_events(&mut tx, &after).await?;

    let mut entries = Vec::with_capacity(pending.len());
    let mut effects = Vec::new();
    let mut applied = vec![0usize; rows.len()];
    // Per row: the trace of the last event applied that had one.
    let mut traces: Vec<Option<&str>> = vec![None; rows.len()];
    let mut index = 0;
    for (workflow_id, event, trace_id) in &pending {
        // Both lists are in id order: walk them together.
        while rows[index].id != *workflow_id {
            index += 1;
        }
        let row = &mut rows[index];
        let definition = registry.get(&row.kind).map(|d| d.as_ref());
        let (entry, more) = step(row, event, definition);
        entries.push((row.id, entry));
        effects.extend(more.into_iter().map(|e| (index, e, trace_id.as_deref())));
        applied[index] += 1;
        if trace_id.is_some() {
            traces[index] = trace_id.as_deref();
        }
    }
    let changed: Vec<&WorkflowRow> = rows
        .iter()
        .zip(&applied)
        .filter(|(_, n)| **n > 0)
        .map(|(r, _)| r)
        .collect();
    let mut notes: Vec<(&str, String)> = Vec::new();
    if !changed.is_empty() {
        store::save(&mut tx, &changed, &entries).await?;
        let mut activities = Vec::new();
        notes.extend(changed.iter().map(|r| store::changed(r)));
        let mut traced_writes = false;
        for (index, effect, trace_id) in effects {
            // Children started and events delivered to other workflows
            // (through the store, which reads the current trace) join the
            // trace of the event that caused them.
            let writes = matches!(
                effect,
                Effect::Child { .. } | Effect::CancelChildren { .. } | Effect::ReportToParent
            );
            traced_writes |= writes && trace_id.is_some();
            let trace = trace_id.and_then(TraceId::parse);
            let gathered = (&mut activities, &mut notes);
            let effect = carry_out(&mut tx, registry, &rows[index], effect, trace_id, gathered);
            crate::trace::scope(trace, effect).await?;
        }
        if traced_writes {
            // What follows gets the trace ids it is given, or none.
            store::clear_trace(&mut tx).await?;
        }
        store::schedule_activities(&mut tx, &activities).await?;
        if let Some(earliest) = changed.iter().filter_map(|r| r.deadline).min() {
            notes.push(store::deadline_set(earliest));
        }
    }
    if !changed.is_empty() || !newer.is_empty() {
        // Only these write jobs (activities, children, deferrals).
        notes.extend(queue::store::gathered_wakeups(&mut tx).await?);
    }
    tx.commit().await?;
    // Committed: a lost note only delays a listener until its fallback poll
    // (workers) or its next change (the API's subscribers).
    if let Err(error) = store::notify(&mut conn, &notes).await {
        tracing::warn!(%error, notes = notes.len(), "committed; notifying failed");
    }
    for ((row, n), trace_id) in rows.iter().zip(&applied).zip(&traces) {
        if *n > 0 {
            tracing::debug!(workflow_id = %row.id, kind = %row.kind, state = %row.state, status = %row.status,
                applied = n, trace_id, "transition");
        }
    }
    count(&rows, &pending, &finished_before);
    let mut found = rows.iter().zip(&applied).peekable();
    Ok(ids
        .into_iter()
        .map(|id| {
            let advanced = match found.next_if(|(r, _)| r.id == id) {
                Some((row, n)) => Advanced {
                    applied: *n,
                    status: Some(row.status),
                },
                None => Advanced {
                    applied: 0,
                    status: None,
                },
            };
            (id, advanced)
        })
        .collect())
}

/// Counts the committed transitions (`floe_workflow_transitions_total`, by
/// kind and event) and the workflows they finished.
fn count(
    rows: &[WorkflowRow],
    pending: &[(Uuid, StoredEvent, Option<String>)],
    finished_before: &[bool],
) {
    let mut index = 0;
    for (workflow_id, event, _) in pending {
        while rows[index].id != *workflow_id {
            index += 1;
        }
        let kind = rows[index].kind.clone();
        metrics::counter!(crate::metrics::TRANSITIONS, "kind" => kind, "event" => event.event.clone())
            .increment(1);
    }
    for (row, before) in rows.iter().zip(finished_before) {
        if !before && row.status.is_finished() {
            metrics::counter!(crate::metrics::WORKFLOWS_FINISHED, "kind" => row.kind.clone(),
                "status" => row.status.as_str())
            .increment(1);
        }
    }
}

/// Carries out one effect of `row`'s transition (`trace_id`: the trace of the
/// event whose transition asked for it). Activities and
/// notifications, the common ones, are gathered for one statement each;
/// children and parents (rare) are written at once.
async fn carry_out(
    conn: &mut PgConnection,
    registry: &Registry,
    row: &WorkflowRow,
    effect: Effect,
    trace_id: Option<&str>,
    (activities, notes): (
        &mut Vec<store::NewActivity>,
        &mut Vec<(&'static str, String)>,
    ),
) -> store::Result<()> {
    match effect {
        Effect::Activity {
            id,
            name,
            input,
            policy,
        } => activities.push(store::NewActivity {
            workflow_id: row.id,
            activity_id: id,
            name,
            input,
            policy,
            priority: registry.priority(&row.kind),
            trace_id: trace_id.map(str::to_owned),
        }),
        Effect::Emit { name } => {
            let payload =
                json!({ "id": row.id, "kind": row.kind, "emit": name, "version": row.version });
            notes.push((super::CHANNEL_WORKFLOWS, payload.to_string()));
        }
        Effect::Child { id, kind, input } => {
            let version = registry.get(&kind).map_or(1, |d| d.version());
            let key = format!("{}/{id}", row.id);
            store::start(conn, &kind, &key, &input, version, Some(row.id)).await?;
        }
        Effect::CancelChildren { reason } => {
            for child in store::open_children(conn, row.id).await? {
                match store::cancel(conn, child, &reason).await {
                    Ok(_) | Err(store::Error::Finished { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Effect::ReportToParent => {
            if let Some(parent) = row.parent_id {
                let id = child_id(&row.key);
                let payload = match (row.status, &row.output, &row.error) {
                    (Status::Completed, output, _) => {
                        json!({ "id": id, "ok": output.clone().unwrap_or(Value::Null) })
                    }
                    (status, _, error) => {
                        json!({ "id": id, "error": error.clone().unwrap_or_else(|| status.to_string()) })
                    }
                };
                let key = format!("child:{id}");
                match store::deliver(conn, parent, "child", Some(id), &payload, Some(&key)).await {
                    Ok(_) | Err(store::Error::Finished { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}
