//! `floe workflows list/show/history`, `floe signal`, `floe cancel` and
//! `floe replay`: the engine's workflow store, as the HTTP API uses it.

use std::io::Read as _;

use floe_agents::settings::LlmSettings;
use floe_engine::workflow::store::{self, Delivered, HistoryEntry, WorkflowRow, WorkflowSummary};
use floe_engine::workflow::{Registry, Status, replay::Report};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::output::{self, Out, Table};
use super::{
    CancelArgs, EXIT_NOT_FOUND, EXIT_OK, Error, ListArgs, ReplayArgs, SignalArgs, UpgradeArgs,
};

/// Longest signal name or idempotency key accepted (as the API).
const MAX_NAME: usize = 256;
/// Longest cancellation reason accepted (as the API).
const MAX_REASON: usize = 2000;
/// The idempotency key cancellation delivers under.
const CANCEL_KEY: &str = "cancel";

/// The workflow definitions this build runs (the registry `floe-worker` and
/// `floe-api` use): what signals are checked and workflows replayed against.
fn definitions(pool: &PgPool) -> Result<Registry, Error> {
    Ok(crate::startup::workflows(&LlmSettings::default(), pool)?.definitions)
}

/// `floe workflows list`'s document: the API's page.
#[derive(Debug, Serialize)]
struct Page {
    items: Vec<WorkflowSummary>,
    /// Pass as `--cursor` for the next page; `null` on the last.
    next_cursor: Option<Uuid>,
}

/// `floe workflows list`.
pub async fn list(pool: &PgPool, args: &ListArgs, out: Out) -> Result<u8, Error> {
    let filter = store::ListFilter {
        kind: args.kind.clone(),
        status: args.status.map(Into::into),
        state: args.state.clone(),
        overdue: args.overdue,
        key_contains: args.key_contains.clone().filter(|k| !k.is_empty()),
        waiting: args.waiting,
        parent: None,
        before: args.cursor,
        limit: args.limit + 1,
    };
    let mut items = store::list(pool, &filter).await?;
    let more = items.len() as i64 > args.limit;
    items.truncate(args.limit as usize);
    let next_cursor = if more {
        items.last().map(|w| w.id)
    } else {
        None
    };
    if out.json {
        out.json(&Page { items, next_cursor })?;
        return Ok(EXIT_OK);
    }
    if items.is_empty() {
        output::print_stdout("no workflows match\n")?;
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(&[
        "ID", "KIND", "KEY", "STATUS", "STATE", "DEADLINE", "VERSION", "UPDATED",
    ]);
    for w in &items {
        t.row(vec![
            w.id.to_string(),
            w.kind.clone(),
            w.key.clone(),
            w.status.to_string(),
            w.state.clone(),
            output::time_relative(w.deadline),
            w.version.to_string(),
            output::relative(w.updated_at),
        ]);
    }
    let mut text = t.render();
    if let Some(cursor) = next_cursor {
        text.push_str(&format!("more: --cursor {cursor}\n"));
    }
    output::print_stdout(&text)?;
    Ok(EXIT_OK)
}

/// `floe workflows show`'s document: the row and its children's ids.
#[derive(Debug, Serialize)]
struct Detail {
    #[serde(flatten)]
    row: WorkflowRow,
    children: Vec<Uuid>,
}

/// `floe workflows show`.
pub async fn show(pool: &PgPool, id: Uuid, out: Out) -> Result<u8, Error> {
    let row = store::get(pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no workflow {id}")))?;
    let children = store::children(pool, id).await?;
    if out.json {
        out.json(&Detail { row, children })?;
        return Ok(EXIT_OK);
    }
    let w = &row;
    let mut pairs = vec![
        ("id", w.id.to_string()),
        ("kind", w.kind.clone()),
        ("key", w.key.clone()),
        ("status", w.status.to_string()),
        ("state", w.state.clone()),
        ("deadline", output::time_relative(w.deadline)),
        ("deadline reason", output::opt(w.deadline_reason.as_deref())),
        ("version", w.version.to_string()),
        ("definition version", w.definition_version.to_string()),
        ("in flight", w.in_flight.to_string()),
        (
            "inbox",
            format!(
                "{} events, {} applied, {} pending",
                w.next_seq,
                w.applied_seq,
                (w.next_seq - w.applied_seq).max(0)
            ),
        ),
        ("parent", output::opt(w.parent_id)),
        (
            "children",
            if children.is_empty() {
                "-".to_owned()
            } else {
                children
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        ),
        ("created", output::time(w.created_at)),
        (
            "updated",
            format!(
                "{} ({})",
                output::time(w.updated_at),
                output::relative(w.updated_at)
            ),
        ),
    ];
    if let Some(error) = &w.error {
        pairs.push(("error", error.clone()));
    }
    if let Some(o) = &w.output {
        pairs.push(("output", output::pretty(o)));
    }
    pairs.push(("input", output::pretty(&w.input)));
    pairs.push(("context", output::pretty(&w.context)));
    output::print_stdout(&output::fields(&pairs))?;
    Ok(EXIT_OK)
}

/// One history entry, as the API's history answers it.
#[derive(Debug, Serialize)]
struct HistoryItem {
    seq: i64,
    event: String,
    name: Option<String>,
    payload: Value,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    state_before: Option<String>,
    state_after: String,
    status_after: Status,
    commands: Value,
    note: Option<String>,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(e: HistoryEntry) -> Self {
        Self {
            seq: e.event.seq,
            event: e.event.event,
            name: e.event.name,
            payload: e.event.payload,
            created_at: e.event.created_at,
            state_before: e.state_before,
            state_after: e.state_after,
            status_after: e.status_after,
            commands: e.commands,
            note: e.note,
        }
    }
}

/// `floe workflows history`'s document.
#[derive(Debug, Serialize)]
struct History {
    workflow_id: Uuid,
    items: Vec<HistoryItem>,
}

/// The commands of a transition, briefly: `run_activity(agent.turn),
/// set_deadline(nudge)`.
fn commands_brief(commands: &Value) -> String {
    let Some(list) = commands.as_array() else {
        return output::compact(commands);
    };
    list.iter()
        .map(|c| {
            let command = c.get("command").and_then(Value::as_str).unwrap_or("?");
            let detail = ["name", "kind", "reason"]
                .iter()
                .find_map(|k| c.get(*k).and_then(Value::as_str));
            match detail {
                Some(d) => format!("{command}({d})"),
                None => command.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `floe workflows history`.
pub async fn history(
    pool: &PgPool,
    id: Uuid,
    after: i64,
    limit: i64,
    out: Out,
) -> Result<u8, Error> {
    if store::status(pool, id).await?.is_none() {
        return Err(Error::NotFound(format!("no workflow {id}")));
    }
    let items: Vec<HistoryItem> = store::history_after(pool, id, after, limit)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    if out.json {
        out.json(&History {
            workflow_id: id,
            items,
        })?;
        return Ok(EXIT_OK);
    }
    if items.is_empty() {
        output::print_stdout("no history entries (the start is not applied yet?)\n")?;
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(&[
        "SEQ", "AT", "EVENT", "NAME", "STATE", "STATUS", "COMMANDS", "NOTE",
    ]);
    for h in &items {
        t.row(vec![
            h.seq.to_string(),
            output::time(h.created_at),
            h.event.clone(),
            output::opt(h.name.as_deref()),
            format!(
                "{} -> {}",
                h.state_before.as_deref().unwrap_or("-"),
                h.state_after
            ),
            h.status_after.to_string(),
            commands_brief(&h.commands),
            output::opt(h.note.as_deref()),
        ]);
    }
    output::print_stdout(&t.render())?;
    Ok(EXIT_OK)
}

/// What a signal or cancellation did (the API's `Accepted`, with the
/// workflow).
#[derive(Debug, Serialize)]
struct Accepted {
    workflow_id: Uuid,
    /// `false` when an event with the same idempotency key was delivered
    /// before (nothing changed).
    delivered: bool,
    /// Its inbox sequence, when delivered now.
    seq: Option<i64>,
    /// Whether the signal was checked against this build's definition of
    /// the workflow's kind (false when the build has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    checked: Option<bool>,
}

fn accepted(id: Uuid, d: Delivered, checked: Option<bool>) -> Accepted {
    match d {
        Delivered::Queued(seq) => Accepted {
            workflow_id: id,
            delivered: true,
            seq: Some(seq),
            checked,
        },
        Delivered::Duplicate => Accepted {
            workflow_id: id,
            delivered: false,
            seq: None,
            checked,
        },
    }
}

fn print_accepted(a: &Accepted, what: &str, out: Out) -> Result<(), Error> {
    if out.json {
        return out.json(a);
    }
    match a.seq {
        Some(seq) => output::print_stdout(&format!(
            "{what} delivered to {} as inbox event {seq}; a worker applies it\n",
            a.workflow_id
        )),
        None => output::print_stdout(&format!(
            "{what} already delivered to {} with this idempotency key: nothing changed\n",
            a.workflow_id
        )),
    }
}

/// The signal's payload: JSON text, `@file`, or `-` for stdin; `null` when
/// absent.
fn read_payload(arg: Option<&str>) -> Result<Value, Error> {
    let (text, from) = match arg {
        None => return Ok(Value::Null),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::Invalid(format!("cannot read the payload from stdin: {e}")))?;
            (text, "stdin".to_owned())
        }
        Some(arg) => match arg.strip_prefix('@') {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|e| {
                    Error::Invalid(format!("cannot read --payload file {path}: {e}"))
                })?,
                path.to_owned(),
            ),
            None => (arg.to_owned(), "--payload".to_owned()),
        },
    };
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{from} is not JSON: {e}")))
}

fn check_name(what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(Error::Invalid(format!(
            "{what} must be 1 to {MAX_NAME} bytes long"
        )));
    }
    Ok(())
}

/// `floe signal`: checked as the API checks it, then delivered through the
/// same inbox and advance job.
pub async fn signal(pool: &PgPool, args: &SignalArgs, out: Out) -> Result<u8, Error> {
    check_name("the signal name", &args.name)?;
    if let Some(key) = &args.idempotency_key {
        check_name("--idempotency-key", key)?;
        if key == CANCEL_KEY {
            return Err(Error::Invalid(format!(
                "--idempotency-key {CANCEL_KEY:?} is reserved for cancellation"
            )));
        }
    }
    let payload = read_payload(args.payload.as_deref())?;
    let row = store::get(pool, args.id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no workflow {}", args.id)))?;
    if row.status.is_finished() {
        return Err(Error::Invalid(format!(
            "workflow {} is {}: it takes no more events",
            row.id, row.status
        )));
    }
    let definitions = definitions(pool)?;
    let checked = match definitions.get(&row.kind) {
        Some(definition) => {
            definition.check_signal(&args.name, &payload).map_err(|e| {
                Error::Invalid(format!(
                    "{} does not take signal {:?} with this payload: {e}",
                    row.kind, args.name
                ))
            })?;
            true
        }
        None => {
            eprintln!(
                "floe: warning: this build has no definition of kind {:?}; the signal is delivered unchecked",
                row.kind
            );
            false
        }
    };
    let mut tx = pool.begin().await?;
    let delivered = store::signal(
        &mut tx,
        args.id,
        &args.name,
        &payload,
        args.idempotency_key.as_deref(),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(workflow_id = %args.id, signal = %args.name, ?delivered, "signal delivered");
    print_accepted(
        &accepted(args.id, delivered, Some(checked)),
        &format!("signal {:?}", args.name),
        out,
    )?;
    Ok(EXIT_OK)
}

/// `floe cancel`.
pub async fn cancel(pool: &PgPool, args: &CancelArgs, out: Out) -> Result<u8, Error> {
    if args.reason.trim().is_empty() || args.reason.len() > MAX_REASON {
        return Err(Error::Invalid(format!(
            "--reason must be 1 to {MAX_REASON} bytes long"
        )));
    }
    let mut tx = pool.begin().await?;
    let delivered = store::cancel(&mut tx, args.id, &args.reason).await?;
    tx.commit().await?;
    tracing::info!(workflow_id = %args.id, ?delivered, "cancellation delivered");
    print_accepted(&accepted(args.id, delivered, None), "cancellation", out)?;
    Ok(EXIT_OK)
}

/// `floe replay`'s document.
#[derive(Debug, Serialize)]
struct Replayed {
    replayed: usize,
    diverged: usize,
    reports: Vec<Report>,
}

/// `floe replay`: the replay check `floe-worker replay` runs, over one
/// workflow, the open ones of a kind, or every open one. Exit 1 when any
/// diverges.
pub async fn replay(pool: &PgPool, args: &ReplayArgs, out: Out) -> Result<u8, Error> {
    let definitions = definitions(pool)?;
    let reports =
        crate::workflows::replay_check(pool, &definitions, args.kind.as_deref(), args.id).await?;
    let diverged = reports.iter().filter(|r| r.divergence.is_some()).count();
    let code = if diverged > 0 {
        EXIT_NOT_FOUND
    } else {
        EXIT_OK
    };
    if out.json {
        out.json(&Replayed {
            replayed: reports.len(),
            diverged,
            reports,
        })?;
        return Ok(code);
    }
    let mut t = Table::new(&["WORKFLOW", "EVENTS", "VERDICT"]);
    for r in &reports {
        let verdict = match &r.divergence {
            None => "ok".to_owned(),
            Some(d) => format!(
                "DIVERGES at seq {}: {} recorded {} replayed {}",
                d.seq.map_or_else(|| "end".to_owned(), |s| s.to_string()),
                d.field,
                output::compact(&d.recorded),
                output::compact(&d.replayed)
            ),
        };
        t.row(vec![
            r.workflow_id.to_string(),
            r.events.to_string(),
            verdict,
        ]);
    }
    let mut text = if t.is_empty() {
        String::new()
    } else {
        t.render()
    };
    if diverged > 0 {
        text.push_str(&format!(
            "{diverged} of {} workflows diverge from this build\n",
            reports.len()
        ));
    } else {
        text.push_str(&format!(
            "{} workflows replayed, none diverges\n",
            reports.len()
        ));
    }
    output::print_stdout(&text)?;
    Ok(code)
}

/// `floe upgrade`'s document.
#[derive(Debug, Serialize)]
struct Upgraded {
    dry_run: bool,
    workflows: usize,
    failed: usize,
    upgrades: Vec<floe_engine::workflow::upgrade::Upgrade>,
}

/// `floe upgrade [--dry-run]`: upgrades (or tries) the stored state of open
/// workflows stored under another definition version. Exit 1 when any
/// upgrade fails (or would).
pub async fn upgrade(pool: &PgPool, args: &UpgradeArgs, out: Out) -> Result<u8, Error> {
    let definitions = definitions(pool)?;
    let upgrades = floe_engine::workflow::upgrade::upgrade_open(
        pool,
        &definitions,
        args.kind.as_deref(),
        args.dry_run,
    )
    .await?;
    let failed = upgrades.iter().filter(|u| u.failed()).count();
    let code = if failed > 0 { EXIT_NOT_FOUND } else { EXIT_OK };
    if out.json {
        out.json(&Upgraded {
            dry_run: args.dry_run,
            workflows: upgrades.len(),
            failed,
            upgrades,
        })?;
        return Ok(code);
    }
    let mut t = Table::new(&["WORKFLOW", "KIND", "FROM", "TO", "OUTCOME"]);
    for u in &upgrades {
        let outcome = match &u.error {
            Some(e) => format!("FAILED: {e}"),
            None => u.outcome.to_owned(),
        };
        t.row(vec![
            u.workflow_id.to_string(),
            u.kind.clone(),
            u.from_version.to_string(),
            u.to_version.to_string(),
            outcome,
        ]);
    }
    let mut text = if t.is_empty() {
        String::new()
    } else {
        t.render()
    };
    text.push_str(&match (upgrades.len(), failed, args.dry_run) {
        (0, _, _) => "every open workflow is at this build's definition versions\n".to_owned(),
        (n, 0, true) => format!("{n} workflows would upgrade; none fails\n"),
        (n, 0, false) => format!("{n} workflows upgraded\n"),
        (n, f, _) => format!("{f} of {n} workflows cannot be upgraded by this build\n"),
    });
    output::print_stdout(&text)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_are_json_text_or_nothing() {
        assert_eq!(read_payload(None).expect("none"), Value::Null);
        assert_eq!(
            read_payload(Some(r#"{"tag": 5}"#)).expect("json"),
            json!({"tag": 5})
        );
        let err = read_payload(Some("{tag")).expect_err("not JSON");
        assert_eq!(err.exit_code(), super::super::EXIT_INVALID);
        let err = read_payload(Some("@/nonexistent/payload.json")).expect_err("no file");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
