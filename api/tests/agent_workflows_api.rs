//! The Temporal-Lite spec's workflows through the engine's HTTP API, as
//! docs/examples.md drives them with curl: start a `code_review`, read
//! `get_status`, reject with feedback, approve the refactored revision; start
//! a `research` fan-out and read its children. A real server on port 0,
//! real PostgreSQL, and an in-process worker running this build's production
//! workflows with the offline agents.

mod common;

use std::time::Duration;

use common::{TestApp, TestWorker, assert_error, eventually, send};
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

async fn start(app: &TestApp, kind: &str, key: &str, input: Value) -> Uuid {
    let (status, body) = send(
        app.post("/api/workflows")
            .json(&json!({ "kind": kind, "key": key, "input": input })),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["created"], true);
    body["id"].as_str().expect("id").parse().expect("uuid")
}

async fn get_status(app: &TestApp, id: Uuid) -> Value {
    let (status, body) = send(app.get(&format!("/api/workflows/{id}/queries/get_status"))).await;
    if status == 200 {
        body["result"].clone()
    } else {
        Value::Null
    }
}

async fn workflow(app: &TestApp, id: Uuid) -> Value {
    let (status, body) = send(app.get(&format!("/api/workflows/{id}"))).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until `get_status` says `state` at `revision`.
async fn awaits(app: &TestApp, id: Uuid, revision: u64) -> Value {
    let ok = eventually(WAIT, || async {
        let s = get_status(app, id).await;
        s["state"] == "awaiting_approval" && s["revision"] == revision
    })
    .await;
    let s = get_status(app, id).await;
    assert!(ok, "revision {revision} never awaited approval: {s}");
    s
}

async fn completed(app: &TestApp, id: Uuid) -> Value {
    let ok = eventually(WAIT, || async {
        workflow(app, id).await["status"] == "completed"
    })
    .await;
    let w = workflow(app, id).await;
    assert!(ok, "workflow {id} did not complete: {w}");
    w
}

#[tokio::test]
async fn a_code_review_is_started_rejected_refactored_and_approved_over_http() {
    let app = TestApp::spawn().await;
    let worker = TestWorker::production(&app.pool).await;
    let input = json!({
        "title": "Retry the upload", "author": "sam", "language": "rust", "reviewer": "alex",
        "code": "fn upload(file: &File) {\n    let body = read(file).unwrap();\n    dbg!(&body);\n    send(body);\n}\n",
    });
    let id = start(&app, "code_review", "pr-77", input).await;
    let status = awaits(&app, id, 1).await;
    assert_eq!(status["verdict"], "request_changes", "{status}");
    assert_eq!(status["issues"], json!({ "major": 1, "minor": 1 }));
    assert_eq!(status["rounds_left"], 3);
    // The 7-day default wait is the row's deadline.
    let row = workflow(&app, id).await;
    assert_eq!(row["status"], "waiting");
    assert_eq!(row["deadline_reason"], "approval_timeout");
    assert_eq!(row["deadline"], status["awaiting_approval_until"]);
    let (code, revision) =
        send(app.get(&format!("/api/workflows/{id}/queries/get_revision"))).await;
    assert_eq!(code, 200, "{revision}");
    assert!(
        revision["result"]["code"]
            .as_str()
            .is_some_and(|c| c.contains("unwrap"))
    );

    // A decision the definition cannot take is refused before delivery.
    let (code, body) = send(
        app.post(&format!("/api/workflows/{id}/signals/approval"))
            .json(&json!({ "approved": "maybe" })),
    )
    .await;
    assert_error(code, &body, 422, "validation_failed");

    let reject = || {
        send(
            app.post(&format!("/api/workflows/{id}/signals/approval"))
                .header("Idempotency-Key", "alex-decision-1")
                .json(&json!({ "approved": false, "reviewer": "alex", "feedback": "Handle the read error." })),
        )
    };
    let (code, first) = reject().await;
    assert_eq!(code, 202, "{first}");
    assert_eq!(first["delivered"], true);
    // A double click delivers once.
    let (code, again) = reject().await;
    assert_eq!(code, 202, "{again}");
    assert_eq!(again["delivered"], false);

    let status = awaits(&app, id, 2).await;
    assert_eq!(status["verdict"], "approve", "{status}");
    assert_eq!(
        status["decisions"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    let (code, body) = send(
        app.post(&format!("/api/workflows/{id}/signals/approval"))
            .json(&json!({ "approved": true, "reviewer": "alex", "revision": 2 })),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let done = completed(&app, id).await;
    assert_eq!(done["state"], "merged");
    assert_eq!(done["output"]["outcome"], "merged");
    assert_eq!(done["output"]["revision"], 2);
    let merged: String = sqlx::query_scalar("SELECT code FROM floe.merges WHERE workflow_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("merge");
    assert!(
        merged.starts_with("// Revision 2: Handle the read error.\n"),
        "{merged}"
    );
    assert!(merged.contains("read(file)?"), "{merged}");
    // Finished: no more decisions.
    let (code, body) = send(
        app.post(&format!("/api/workflows/{id}/signals/approval"))
            .json(&json!({ "approved": false })),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_research_task_fans_out_over_http_and_its_children_are_listed() {
    let app = TestApp::spawn().await;
    let worker = TestWorker::production(&app.pool).await;
    let task = "Compare ways to run a job queue on PostgreSQL; measure LISTEN/NOTIFY latency [fail]; explain SKIP LOCKED";
    let id = start(
        &app,
        "research",
        "q-1",
        json!({ "task": task, "max_subtasks": 3 }),
    )
    .await;
    // A fan-out takes no signals.
    let (code, body) = send(
        app.post(&format!("/api/workflows/{id}/signals/hurry"))
            .json(&json!({})),
    )
    .await;
    assert_error(code, &body, 422, "validation_failed");
    let done = completed(&app, id).await;
    let output = &done["output"];
    assert_eq!(output["answered"], 2, "{output}");
    assert_eq!(output["failed"][0]["index"], 2, "{output}");
    assert!(
        output["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Not answered:\n2. measure LISTEN/NOTIFY latency [fail]")),
        "{output}"
    );
    assert_eq!(done["children"].as_array().map(Vec::len), Some(3), "{done}");
    let (code, list) = send(app.get(&format!("/api/workflows?parent={id}"))).await;
    assert_eq!(code, 200, "{list}");
    let mut statuses: Vec<(String, String)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| {
            (
                w["key"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                w["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("subtask-1".to_owned(), "completed".to_owned()),
            ("subtask-2".to_owned(), "failed".to_owned()),
            ("subtask-3".to_owned(), "completed".to_owned())
        ]
    );
    let (code, status) = send(app.get(&format!("/api/workflows/{id}/queries/get_status"))).await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["result"]["state"], "done");
    assert_eq!(status["result"]["failed"], 1);
    worker.stop().await;
    app.stop().await;
}
