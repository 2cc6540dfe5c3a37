//! Replay: fold a workflow's recorded history through the current
//! definition, with no activity or child run again (their recorded results
//! are in the history), and compare with what was stored. A divergence means
//! the definition changed in a way that running workflows would notice: the
//! upgrade safety check, and a debugging aid.

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::advance::step;
use super::store::{self, WorkflowRow};
use super::{Registry, Status};

/// The first place a replay disagrees with the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    /// The history entry (inbox sequence) where it disagrees; `None` when
    /// every entry agrees but the final row does not.
    pub seq: Option<i64>,
    /// What differs.
    pub field: String,
    /// What was recorded.
    pub recorded: Value,
    /// What the current definition produces.
    pub replayed: Value,
}

/// A replay's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The workflow.
    pub workflow_id: Uuid,
    /// History entries folded.
    pub events: usize,
    /// The first divergence, if any.
    pub divergence: Option<Divergence>,
}

/// Replays workflow `id` and reports the first divergence.
pub async fn replay(pool: &PgPool, registry: &Registry, id: Uuid) -> store::Result<Report> {
    let stored = store::get(pool, id)
        .await?
        .ok_or(store::Error::NotFound(id))?;
    let history = store::history(pool, id).await?;
    let definition = registry.get(&stored.kind).map(|d| d.as_ref());
    let mut row = WorkflowRow {
        state: "starting".into(),
        status: Status::Running,
        context: Value::Null,
        output: None,
        error: None,
        deadline: None,
        deadline_reason: None,
        deadline_version: 0,
        version: 0,
        in_flight: 0,
        applied_seq: 0,
        ..stored.clone()
    };
    let mut divergence = None;
    for recorded in &history {
        let (entry, _effects) = step(&mut row, &recorded.event, definition);
        let checks = [
            (
                "state",
                Value::from(recorded.state_after.clone()),
                Value::from(entry.state_after.clone()),
            ),
            (
                "status",
                Value::from(recorded.status_after.as_str()),
                Value::from(entry.status_after.as_str()),
            ),
            (
                "commands",
                recorded.commands.clone(),
                entry.commands.clone(),
            ),
        ];
        if let Some((field, rec, rep)) = checks.into_iter().find(|(_, a, b)| a != b) {
            divergence = Some(Divergence {
                seq: Some(recorded.event.seq),
                field: field.into(),
                recorded: rec,
                replayed: rep,
            });
            break;
        }
    }
    // A row stored under an older definition version holds that version's
    // state: compare what this build would upgrade it to.
    let stored_context = match definition {
        Some(d) if stored.definition_version != d.version() && !stored.context.is_null() => {
            d.upgrade(stored.definition_version, &stored.context)
        }
        _ => Ok(stored.context.clone()),
    };
    if divergence.is_none()
        && let Err(error) = &stored_context
    {
        divergence = Some(Divergence {
            seq: None,
            field: "upgrade".into(),
            recorded: Value::from(stored.definition_version),
            replayed: Value::from(error.clone()),
        });
    }
    if divergence.is_none() {
        let finals = [
            (
                "context",
                stored_context.unwrap_or(Value::Null),
                row.context.clone(),
            ),
            (
                "state",
                Value::from(stored.state.clone()),
                Value::from(row.state.clone()),
            ),
            (
                "version",
                Value::from(stored.version),
                Value::from(row.version),
            ),
            (
                "deadline_version",
                Value::from(stored.deadline_version),
                Value::from(row.deadline_version),
            ),
        ];
        divergence = finals
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(field, rec, rep)| Divergence {
                seq: None,
                field: field.into(),
                recorded: rec,
                replayed: rep,
            });
    }
    Ok(Report {
        workflow_id: id,
        events: history.len(),
        divergence,
    })
}
