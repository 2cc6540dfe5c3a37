//! Applying a workflow's pending events: DESIGN.md's eight steps in one
//! transaction. Lock the row, take the unconsumed inbox events in order,
//! apply each ([`step`], pure), append the history, write the row, carry out
//! the commands' effects (activity and child jobs), mark the events consumed
//! and NOTIFY — all committed together or not at all.

use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::registry::{Definition, StoredEvent};
use super::store::{self, HistoryEntry, WorkflowRow};
use super::{ActivityPolicy, Command, Ctx, Registry, Status};

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
    } else {
        if matches!(event.event.as_str(), "activity" | "child") {
            row.in_flight = (row.in_flight - 1).max(0);
        }
        let ctx = Ctx {
            workflow_id: row.id,
            seq: event.seq,
            now: event.created_at,
        };
        let context = (event.event != "start").then_some(&row.context);
        let applied = match definition {
            Some(d) => d.apply(context, event, &ctx),
            None => Err(format!(
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

/// What [`advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    /// Events applied (including ignored ones).
    pub applied: usize,
    /// The status afterwards.
    pub status: Option<Status>,
}

/// Applies every pending event of workflow `id` in one transaction.
pub async fn advance(pool: &PgPool, registry: &Registry, id: Uuid) -> store::Result<Advanced> {
    let mut tx = pool.begin().await?;
    let Some(mut row) = store::lock(&mut tx, id).await? else {
        return Ok(Advanced {
            applied: 0,
            status: None,
        });
    };
    let events = store::pending_events(&mut tx, id, row.applied_seq).await?;
    if events.is_empty() {
        return Ok(Advanced {
            applied: 0,
            status: Some(row.status),
        });
    }
    let definition = registry.get(&row.kind).map(|d| d.as_ref());
    let mut entries = Vec::with_capacity(events.len());
    let mut effects = Vec::new();
    for event in &events {
        let (entry, more) = step(&mut row, event, definition);
        entries.push(entry);
        effects.extend(more);
    }
    store::save(&mut tx, &row, &entries).await?;
    for effect in effects {
        carry_out(&mut tx, registry, &row, effect).await?;
    }
    store::notify_changed(&mut tx, &row).await?;
    tx.commit().await?;
    tracing::debug!(workflow_id = %id, kind = %row.kind, state = %row.state, status = %row.status,
        applied = events.len(), "transition");
    Ok(Advanced {
        applied: events.len(),
        status: Some(row.status),
    })
}

async fn carry_out(
    conn: &mut PgConnection,
    registry: &Registry,
    row: &WorkflowRow,
    effect: Effect,
) -> store::Result<()> {
    match effect {
        Effect::Activity {
            id,
            name,
            input,
            policy,
        } => {
            store::schedule_activity(conn, row.id, &id, &name, &input, &policy).await?;
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
        Effect::Emit { name } => {
            let payload =
                json!({ "id": row.id, "kind": row.kind, "emit": name, "version": row.version });
            store::notify(conn, super::CHANNEL_WORKFLOWS, &payload.to_string()).await?;
        }
    }
    Ok(())
}
