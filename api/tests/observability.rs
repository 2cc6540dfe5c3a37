//! Metrics and trace context of the real `floe-api --with-worker` process:
//! a chat message posted with a known W3C trace id is followed by that id
//! through the inbox, the transition, the activities it started (rows and
//! log lines), and `GET /metrics` counts what happened by route template,
//! with the WebSocket and SSE gauges moving as connections open and close.

mod common;

use std::time::Duration;

use common::{ApiProcess, eventually, send};
use floe_engine::db;
use floe_engine::testing::{fresh_database, wait_for_status};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
const OPERATOR: &str = "observability-operator-token";
/// The trace id the chat message brings in its `traceparent`.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn scalar(pool: &PgPool, sql: &'static str, id: Uuid) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>(sql)
        .bind(id)
        .fetch_one(pool)
        .await
        .expect(sql)
}

#[tokio::test]
async fn a_messages_trace_id_reaches_its_transition_and_activities_and_metrics_count_it() {
    let url = fresh_database().await;
    let pool = db::connect(&url, 4, Duration::from_secs(10))
        .await
        .expect("connect");
    let api = ApiProcess::spawn(
        &url,
        OPERATOR,
        &[(
            "FLOE__LOG__FILTER",
            "info,floe_engine=debug,floe_worker=debug",
        )],
    );
    assert!(
        wait_for_status(&api.addr, "/readyz", 200, Duration::from_secs(90)).await,
        "never ready: {:?}",
        api.log_json()
    );

    // Sign in and start the onboarding with a request id of our own.
    let (status, me) = send(
        api.client
            .post(api.url("/api/session"))
            .json(&json!({ "display_name": "Ada" })),
    )
    .await;
    assert_eq!(status, 201, "{me}");
    let token = me["token"].as_str().expect("token").to_owned();
    let response = api
        .client
        .post(api.url("/api/workflow/start"))
        .bearer_auth(&token)
        .header("x-request-id", "start-req-1")
        .send()
        .await
        .expect("start");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], "start-req-1");
    let started: Value = response.json().await.expect("json");
    let run: Uuid = started["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("run_id");
    // Let the start (and its greeting) settle, so that the message below
    // gets an advance job of its own.
    let settled = eventually(WAIT, || async {
        let idle: bool = sqlx::query_scalar(
            "SELECT (SELECT status = 'waiting' FROM floe.workflows WHERE id = $1)
                AND NOT EXISTS (SELECT 1 FROM floe.jobs)",
        )
        .bind(run)
        .fetch_one(&pool)
        .await
        .expect("idle");
        idle
    })
    .await;
    assert!(settled, "the onboarding never settled");

    // The message, with a W3C traceparent.
    let response = api
        .client
        .post(api.url("/api/chat/message"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({ "content": "Hi, I'm Ada and I run a bakery", "client_id": "m1" }))
        .send()
        .await
        .expect("message");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], TRACE);
    let seq = response.json::<Value>().await.expect("json")["seq"]
        .as_i64()
        .expect("seq");
    let answered = eventually(WAIT, || async {
        let (_, page) = send(
            api.client
                .get(api.url(&format!("/api/chat/messages?after={seq}")))
                .bearer_auth(&token),
        )
        .await;
        page["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "assistant"))
    })
    .await;
    assert!(answered, "no reply: {:?}", api.log_json());

    // The rows: the start event carries the start request's id; the message's
    // signal, the activities its transition started and their results, the
    // message's trace id.
    let start_trace = "SELECT trace_id FROM floe.inbox WHERE workflow_id = $1 AND event = 'start'";
    assert_eq!(
        scalar(&pool, start_trace, run).await.as_deref(),
        Some("start-req-1")
    );
    let signal_trace = "SELECT trace_id FROM floe.inbox
                         WHERE workflow_id = $1 AND event = 'signal' AND name = 'user_message'";
    assert_eq!(
        scalar(&pool, signal_trace, run).await.as_deref(),
        Some(TRACE)
    );
    let traced: Vec<(String, String)> = sqlx::query_as(
        "SELECT activity_id, name FROM floe.activities WHERE workflow_id = $1 AND trace_id = $2",
    )
    .bind(run)
    .bind(TRACE)
    .fetch_all(&pool)
    .await
    .expect("activities");
    let names: Vec<&str> = traced.iter().map(|(_, n)| n.as_str()).collect();
    for name in ["agent.turn", "chat.reply"] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    let results: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT i.name, i.trace_id FROM floe.inbox i
           JOIN floe.activities a ON a.workflow_id = i.workflow_id AND a.activity_id = i.name
          WHERE i.workflow_id = $1 AND i.event = 'activity' AND a.trace_id = $2",
    )
    .bind(run)
    .bind(TRACE)
    .fetch_all(&pool)
    .await
    .expect("results");
    assert!(!results.is_empty());
    assert!(
        results.iter().all(|(_, t)| t.as_deref() == Some(TRACE)),
        "{results:?}"
    );

    // The log lines: the request's span, the transition, the advance job's
    // and the activity jobs' spans all carry it.
    let log = api.log_json();
    let has = |what: &str, test: &dyn Fn(&Value) -> bool| {
        assert!(
            log.iter().any(test),
            "no {what} line with the trace id in {log:#?}"
        );
    };
    has("request", &|v| {
        v["span"]["path"] == "/api/chat/message" && v["span"]["trace_id"] == TRACE
    });
    has("transition", &|v| {
        v["message"] == "transition" && v["trace_id"] == TRACE
    });
    has("advance job", &|v| {
        v["span"]["kind"] == "floe.advance" && v["span"]["trace_id"] == TRACE
    });
    has("activity job", &|v| {
        v["span"]["kind"] == "floe.activity"
            && v["span"]["trace_id"] == TRACE
            && v["activity"] == "agent.turn"
    });

    // Metrics: requests by route template, never the raw path.
    let (status, _) = send(
        api.client
            .get(api.url(&format!("/api/workflows/{run}")))
            .bearer_auth(OPERATOR),
    )
    .await;
    assert_eq!(status, 200);
    let _ = send(api.client.get(api.url("/no/such/page"))).await;
    let m = api.metrics().await;
    let requests = |labels: &[(&str, &str)]| m.sum("floe_http_requests_total", labels);
    let message = [("method", "POST"), ("route", "/api/chat/message")];
    assert_eq!(requests(&[message[0], message[1], ("status", "202")]), 1.0);
    assert_eq!(
        requests(&[
            ("method", "POST"),
            ("route", "/api/session"),
            ("status", "201")
        ]),
        1.0
    );
    assert_eq!(
        requests(&[("route", "/api/workflows/{id}"), ("status", "200")]),
        1.0
    );
    assert!(requests(&[("method", "GET"), ("route", "other")]) >= 1.0);
    assert_eq!(
        m.sum("floe_http_request_duration_seconds_count", &message),
        1.0
    );
    assert!(
        m.samples
            .iter()
            .all(|(_, labels, _)| labels.values().all(|v| !v.contains(&run.to_string()))),
        "a raw path became a label"
    );
    // The worker inside the process records into the same registry.
    let signals = [("kind", "onboarding"), ("event", "signal")];
    assert!(m.sum("floe_workflow_transitions_total", &signals) >= 1.0);
    assert!(m.sum("floe_jobs_completed_total", &[("kind", "floe.activity")]) >= 3.0);
    assert_eq!(m.types["floe_http_requests_total"], "counter");

    // The SSE gauge while a stream is open, and after.
    let stream = api
        .client
        .get(api.url(&format!("/api/workflows/{run}/events")))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    let _first = tokio::time::timeout(WAIT, body.next())
        .await
        .expect("an event");
    assert_eq!(api.metrics().await.sum("floe_sse_streams", &[]), 1.0);
    drop(body);
    assert!(
        eventually(WAIT, || async {
            api.metrics().await.sum("floe_sse_streams", &[]) == 0.0
        })
        .await,
        "the SSE gauge did not come back to 0"
    );

    // The WebSocket gauge likewise.
    let mut request = format!("ws://{}/ws", api.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws");
    assert!(
        eventually(WAIT, || async {
            api.metrics().await.sum("floe_ws_connections", &[]) == 1.0
        })
        .await
    );
    socket.close(None).await.expect("close");
    drop(socket);
    assert!(
        eventually(WAIT, || async {
            api.metrics().await.sum("floe_ws_connections", &[]) == 0.0
        })
        .await,
        "the WebSocket gauge did not come back to 0"
    );

    kill(Pid::from_raw(api.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let mut api = api;
    let status = api.child.wait().expect("wait");
    assert!(status.success(), "floe-api exited with {status}");
}
