//! The web inspector's API against a real server on port 0 and real
//! PostgreSQL: list filters, counts, a workflow's activities and LLM calls,
//! the job list and retries, the dashboard. Rows are made by the engine's own
//! functions (start, schedule activities, claim, fail, record, the LLM
//! ledger) wherever one exists.

mod common;

use std::time::Duration;

use common::{TestApp, assert_error, eventually, send};
use floe_agents::llm::ledger::{self, Call, CallSite};
use floe_agents::llm::{ModelError, Usage};
use floe_engine::queue::{self, JobState, NewJob};
use floe_engine::workflow::store::{self, ActivityResult, NewActivity};
use floe_engine::workflow::{ACTIVITY_JOB, ActivityPolicy};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// GET `path` with the operator token; asserts 200.
async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = send(app.get(path)).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// `path?query`, the query's values percent-encoded.
fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .map(|(name, value)| {
            let encoded: String = value
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{name}={encoded}")
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// GET `/api/workflows` with `query`; the items' keys, newest first.
async fn keys(app: &TestApp, query: &[(&str, &str)]) -> Vec<String> {
    let (status, body) = send(app.get(&with_query("/api/workflows", query))).await;
    assert_eq!(status, 200, "{query:?}: {body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| w["key"].as_str().expect("key").to_owned())
        .collect()
}

async fn status_of(app: &TestApp, id: Uuid) -> String {
    let body = get_ok(app, &format!("/api/workflows/{id}")).await;
    body["status"].as_str().expect("status").to_owned()
}

async fn wait_status(app: &TestApp, id: Uuid, want: &str) {
    assert!(
        eventually(WAIT, || async { status_of(app, id).await == want }).await,
        "workflow {id} never became {want}"
    );
}

async fn finish(app: &TestApp, id: Uuid) {
    let (status, body) = send(app.post(&format!("/api/workflows/{id}/signals/finish"))).await;
    assert_eq!(status, 202, "{body}");
    wait_status(app, id, "completed").await;
}

/// Starts a tally as the child of `parent` (the engine's start, as a
/// parent's transition does it).
async fn start_child(pool: &PgPool, parent: Uuid, key: &str) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let started = store::start(&mut tx, "test.api.tally", key, &json!({}), 3, Some(parent))
        .await
        .expect("start child");
    tx.commit().await.expect("commit");
    started.id
}

fn timestamp(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a timestamp string"), &Rfc3339)
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"))
}

#[tokio::test]
async fn the_list_filters_by_key_substring_waiting_and_parent() {
    let app = TestApp::spawn().await;
    app.start_worker().await;
    let mut ids = Vec::new();
    for key in [
        "Alpha-100%",
        "alpha-1000",
        "alpha_2",
        "alphaX2",
        "back\\slash",
        "beta",
    ] {
        ids.push((key, app.start_tally(key).await));
    }
    for (_, id) in &ids {
        wait_status(&app, *id, "waiting").await;
    }
    let beta = ids[5].1;
    finish(&app, beta).await;

    // q: a substring of the key, any case; LIKE's wildcards match themselves.
    assert_eq!(
        keys(&app, &[("q", "ALPHA")]).await,
        ["alphaX2", "alpha_2", "alpha-1000", "Alpha-100%"]
    );
    assert_eq!(keys(&app, &[("q", "100%")]).await, ["Alpha-100%"]);
    assert_eq!(keys(&app, &[("q", "a_2")]).await, ["alpha_2"]);
    assert_eq!(keys(&app, &[("q", "k\\s")]).await, ["back\\slash"]);
    assert!(keys(&app, &[("q", "gamma")]).await.is_empty());
    assert_eq!(
        keys(&app, &[("q", "")]).await.len(),
        6,
        "empty q: no filter"
    );

    // waiting: status waiting only (the finished one is not).
    let waiting = keys(&app, &[("waiting", "true")]).await;
    assert_eq!(waiting.len(), 5, "{waiting:?}");
    assert!(!waiting.contains(&"beta".to_owned()));
    assert_eq!(keys(&app, &[("waiting", "false")]).await.len(), 6);
    assert_eq!(
        keys(&app, &[("q", "b"), ("waiting", "true")]).await,
        ["back\\slash"]
    );

    // parent: only its children, combined with the other filters.
    let parent = ids[0].1;
    let first = start_child(&app.pool, parent, "child-1").await;
    let second = start_child(&app.pool, parent, "child-2").await;
    wait_status(&app, first, "waiting").await;
    wait_status(&app, second, "waiting").await;
    let (status, page) = send(app.get(&format!("/api/workflows?parent={parent}"))).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(items[0]["id"], second.to_string(), "newest first");
    assert_eq!(items[1]["id"], first.to_string());
    assert!(items.iter().all(|w| w["parent_id"] == parent.to_string()));
    assert_eq!(
        keys(
            &app,
            &[
                ("parent", &parent.to_string()),
                ("q", "-2"),
                ("waiting", "true")
            ]
        )
        .await,
        ["child-2"]
    );
    assert!(
        keys(&app, &[("parent", &beta.to_string())])
            .await
            .is_empty()
    );
    let (status, body) = send(app.get("/api/workflows?parent=not-a-uuid")).await;
    assert_error(status, &body, 400, "bad_request");
    // Paging still works under a filter.
    let (status, page) = send(app.get("/api/workflows?q=alpha&limit=3")).await;
    assert_eq!(status, 200, "{page}");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (status, rest) = send(app.get(&format!("/api/workflows?q=alpha&cursor={cursor}"))).await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["items"].as_array().expect("items").len(), 1);
    assert_eq!(rest["items"][0]["key"], "Alpha-100%");
    assert!(rest["next_cursor"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn counts_follow_workflows_as_they_start_wait_and_finish() {
    let app = TestApp::spawn().await;
    let empty = get_ok(&app, "/api/inspect/counts").await;
    assert_eq!(
        empty,
        json!({
            "total": 0,
            "by_status": { "running": 0, "waiting": 0, "completed": 0, "failed": 0, "cancelled": 0 },
            "overdue": 0, "waiting_on_person": 0, "kinds": [], "states": [],
        })
    );

    // Started, not yet applied (no worker): running, in state "starting".
    let first = app.start_tally("c1").await;
    let second = app.start_tally("c2").await;
    // Another kind, as a row no worker will touch.
    sqlx::query(
        "INSERT INTO floe.workflows (id, kind, key, state, status) VALUES ($1, 'test.other', 'o1', 'idle', 'waiting')",
    )
    .bind(Uuid::now_v7())
    .execute(&app.pool)
    .await
    .expect("insert");
    sqlx::query("UPDATE floe.workflows SET deadline = now() - interval '1 minute' WHERE id = $1")
        .bind(first)
        .execute(&app.pool)
        .await
        .expect("overdue");
    let counts = get_ok(&app, "/api/inspect/counts").await;
    assert_eq!(counts["total"], 3);
    assert_eq!(counts["by_status"]["running"], 2);
    assert_eq!(counts["by_status"]["waiting"], 1);
    assert_eq!(counts["waiting_on_person"], 1);
    assert_eq!(counts["overdue"], 1);
    assert_eq!(counts["kinds"], json!(["test.api.tally", "test.other"]));
    assert_eq!(counts["states"], json!(["idle", "starting"]));
    let tally = get_ok(&app, "/api/inspect/counts?kind=test.api.tally").await;
    assert_eq!(tally["total"], 2);
    assert_eq!(tally["by_status"]["running"], 2);
    assert_eq!(tally["waiting_on_person"], 0);
    assert_eq!(tally["overdue"], 1);
    assert_eq!(
        tally["kinds"],
        json!(["test.api.tally", "test.other"]),
        "kinds are never narrowed"
    );
    assert_eq!(tally["states"], json!(["starting"]));
    let other = get_ok(&app, "/api/inspect/counts?kind=test.other").await;
    assert_eq!(other["total"], 1);
    assert_eq!(other["overdue"], 0);
    assert_eq!(other["states"], json!(["idle"]));

    // Applied: both wait for a person; one finishes.
    sqlx::query("UPDATE floe.workflows SET deadline = NULL WHERE id = $1")
        .bind(first)
        .execute(&app.pool)
        .await
        .expect("clear deadline");
    app.start_worker().await;
    wait_status(&app, first, "waiting").await;
    wait_status(&app, second, "waiting").await;
    let tally = get_ok(&app, "/api/inspect/counts?kind=test.api.tally").await;
    assert_eq!(tally["by_status"]["waiting"], 2);
    assert_eq!(tally["by_status"]["running"], 0);
    assert_eq!(tally["waiting_on_person"], 2);
    assert_eq!(tally["overdue"], 0);
    assert_eq!(tally["states"], json!(["counting"]));
    finish(&app, first).await;
    let tally = get_ok(&app, "/api/inspect/counts?kind=test.api.tally").await;
    assert_eq!(tally["total"], 2);
    assert_eq!(tally["by_status"]["completed"], 1);
    assert_eq!(tally["by_status"]["waiting"], 1);
    assert_eq!(tally["waiting_on_person"], 1);
    // The list's waiting filter shows the same workflows the count counts.
    let (status, page) = send(app.get("/api/workflows?kind=test.api.tally&waiting=true")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
    assert_eq!(page["items"][0]["id"], second.to_string());
    app.stop().await;
}

#[tokio::test]
async fn activities_show_their_attempts_results_and_live_jobs() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("with-activities").await;
    let activity = |activity_id: &str, name: &str| NewActivity {
        workflow_id: id,
        activity_id: activity_id.to_owned(),
        name: name.to_owned(),
        input: json!({ "activity": activity_id }),
        policy: ActivityPolicy {
            max_attempts: 4,
            ..ActivityPolicy::default()
        },
        priority: 0,
        trace_id: None,
    };
    let mut conn = app.pool.acquire().await.expect("acquire");
    store::schedule_activities(
        &mut conn,
        &[
            activity("a1", "charge"),
            activity("a2", "email"),
            activity("a3", "ship"),
        ],
    )
    .await
    .expect("schedule");
    // A worker claims all three: a1 fails and backs off, a2 succeeds, a3
    // is still running.
    let claimed = queue::store::claim(
        &app.pool,
        queue::DEFAULT_QUEUE,
        &[ACTIVITY_JOB.to_owned()],
        "inspector-test",
        10,
        Duration::from_secs(300),
    )
    .await
    .expect("claim");
    assert_eq!(claimed.len(), 3);
    let job_of = |activity_id: &str| {
        claimed
            .iter()
            .find(|j| j.payload["activity_id"] == activity_id)
            .expect("its job")
    };
    let failed = queue::store::fail(
        &app.pool,
        job_of("a1").lease(),
        "card declined",
        Some(Duration::from_secs(600)),
    )
    .await
    .expect("fail")
    .expect("lease held");
    assert_eq!(failed.state, JobState::Retrying);
    queue::store::complete(&app.pool, &[job_of("a2").lease()])
        .await
        .expect("complete");
    store::record_results(
        &mut conn,
        &[ActivityResult {
            workflow_id: id,
            activity_id: "a2".into(),
            attempts: 1,
            result: Ok(json!({ "sent": true })),
        }],
    )
    .await
    .expect("record");
    drop(conn);

    let body = get_ok(&app, &format!("/api/workflows/{id}/activities")).await;
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{body}");
    let (a1, a2, a3) = (&items[0], &items[1], &items[2]);

    assert_eq!(a1["activity_id"], "a1");
    assert_eq!(a1["name"], "charge");
    assert_eq!(a1["status"], "scheduled");
    assert_eq!(a1["attempts"], 1, "the failed attempt counts: {a1}");
    assert_eq!(a1["input"], json!({ "activity": "a1" }));
    assert!(a1["result"].is_null() && a1["finished_at"].is_null());
    let job = &a1["job"];
    assert_eq!(job["id"], job_of("a1").id);
    assert_eq!(job["state"], "retrying");
    assert_eq!(job["attempts"], 1);
    assert_eq!(
        job["max_attempts"],
        4 + floe_engine::workflow::SPARE_RUNS,
        "the policy's attempts and the spare run"
    );
    assert_eq!(job["last_error"], "card declined");
    assert_eq!(
        timestamp(&job["run_at"]),
        failed.run_at,
        "run_at is the next retry"
    );
    assert!(failed.run_at > OffsetDateTime::now_utc() + Duration::from_secs(500));
    assert!(job["lease_owner"].is_null() && job["lease_expires_at"].is_null());

    assert_eq!(a2["activity_id"], "a2");
    assert_eq!(a2["status"], "completed");
    assert_eq!(a2["attempts"], 1);
    assert_eq!(a2["result"], json!({ "sent": true }));
    assert!(a2["error"].is_null());
    assert!(timestamp(&a2["finished_at"]) >= timestamp(&a2["created_at"]));
    assert!(a2["job"].is_null(), "a succeeded job is deleted: {a2}");

    assert_eq!(a3["status"], "scheduled");
    assert_eq!(a3["attempts"], 1, "the attempt under way");
    assert_eq!(a3["job"]["state"], "running");
    assert_eq!(a3["job"]["lease_owner"], "inspector-test");
    assert!(timestamp(&a3["job"]["lease_expires_at"]) > OffsetDateTime::now_utc());

    // Another workflow has none; an unknown one is 404.
    let other = app.start_tally("no-activities").await;
    let body = get_ok(&app, &format!("/api/workflows/{other}/activities")).await;
    assert_eq!(body, json!({ "items": [] }));
    let (status, body) =
        send(app.get(&format!("/api/workflows/{}/activities", Uuid::now_v7()))).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = send(app.get("/api/workflows/nope/activities")).await;
    assert_error(status, &body, 400, "bad_request");
    app.stop().await;
}

#[tokio::test]
async fn llm_calls_show_tokens_cost_and_totals_without_bodies() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("with-calls").await;
    let other = app.start_tally("other-calls").await;
    sqlx::query(
        "INSERT INTO floe.llm_prices (model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('priced', 3, 15)",
    )
    .execute(&app.pool)
    .await
    .expect("price");
    let site = |workflow_id: Uuid| CallSite {
        workflow_id: Some(workflow_id),
        activity_id: Some("turn-1".into()),
        attempt: Some(1),
        user_id: Some("u1".into()),
    };
    let ours = site(id);
    let theirs = site(other);
    let rate_limited = ModelError::RateLimited {
        retry_after: None,
        message: "slow down".into(),
    };
    let calls = [
        (&ours, 0, "priced", Ok(json!({ "text": "hi" })), 1000, 200),
        (&ours, 1, "unpriced", Ok(json!({ "text": "yo" })), 10, 5),
        (&ours, 2, "priced", Err(&rate_limited), 0, 0),
        (&theirs, 0, "priced", Ok(json!({ "text": "no" })), 7, 7),
    ];
    for (site, step, model, outcome, tokens_in, tokens_out) in calls {
        ledger::record(
            &app.pool,
            Call {
                site,
                step,
                agent: "greeter",
                model,
                request: json!({ "messages": [{ "role": "user", "content": "secret prompt" }] }),
                outcome,
                usage: Usage {
                    input_tokens: tokens_in,
                    output_tokens: tokens_out,
                },
                latency_ms: 120 + step,
            },
        )
        .await
        .expect("record");
    }

    let body = get_ok(&app, &format!("/api/workflows/{id}/llm-calls")).await;
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "only this workflow's calls: {body}");
    let first = &items[0];
    assert_eq!(first["activity_id"], "turn-1");
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["step"], 0);
    assert_eq!(first["agent"], "greeter");
    assert_eq!(first["model"], "priced");
    assert_eq!(first["status"], "ok");
    assert_eq!(first["tokens_in"], 1000);
    assert_eq!(first["tokens_out"], 200);
    assert_eq!(first["latency_ms"], 120);
    // (1000 · 3 + 200 · 15) / 1e6 dollars, as a JSON number.
    let cost = first["cost_usd"].as_f64().expect("cost is a number");
    assert!((cost - 0.006).abs() < 1e-12, "{cost}");
    timestamp(&first["created_at"]);
    for item in items {
        let object = item.as_object().expect("object");
        assert!(
            !object.contains_key("request") && !object.contains_key("response"),
            "no bodies: {item}"
        );
    }
    assert!(items[1]["cost_usd"].is_null(), "no price, no cost");
    assert_eq!(items[1]["step"], 1);
    assert_eq!(items[2]["status"], "rate_limited");
    assert_eq!(items[2]["http_status"], 429);
    assert!(
        items[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("slow down"))
    );
    assert_eq!(items[2]["cost_usd"], 0.0, "priced, no tokens");
    let total = &body["total"];
    assert_eq!(total["calls"], 3);
    assert_eq!(total["tokens_in"], 1010);
    assert_eq!(total["tokens_out"], 205);
    let total_cost = total["cost_usd"].as_f64().expect("total cost is a number");
    assert!((total_cost - 0.006).abs() < 1e-12, "{total_cost}");

    let none = app.start_tally("no-calls").await;
    let body = get_ok(&app, &format!("/api/workflows/{none}/llm-calls")).await;
    assert_eq!(
        body,
        json!({ "items": [], "total": { "calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0 } })
    );
    let (status, body) =
        send(app.get(&format!("/api/workflows/{}/llm-calls", Uuid::now_v7()))).await;
    assert_error(status, &body, 404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn jobs_are_listed_paged_and_a_dead_one_retried() {
    let app = TestApp::spawn().await;
    let workflow = app.start_tally("job-owner").await;
    for i in 0..3 {
        queue::store::enqueue(&app.pool, &NewJob::new("floe.noop", json!({ "i": i })))
            .await
            .expect("enqueue");
    }
    let noop = ["floe.noop".to_owned()];
    let claim = |limit| {
        queue::store::claim(
            &app.pool,
            queue::DEFAULT_QUEUE,
            &noop,
            "inspector-test",
            limit,
            Duration::from_secs(300),
        )
    };
    // The oldest dies (a non-retryable failure); the next is running.
    let dead = claim(1).await.expect("claim").remove(0);
    queue::store::fail(&app.pool, dead.lease(), "no such customer", None)
        .await
        .expect("fail")
        .expect("lease held");
    let running = claim(1).await.expect("claim").remove(0);

    let body = get_ok(&app, "/api/jobs").await;
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 4, "three noops and the advance job: {body}");
    let ids: Vec<i64> = items
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert!(body["next_cursor"].is_null());

    let body = get_ok(&app, "/api/jobs?state=dead").await;
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    let job = &items[0];
    assert_eq!(job["id"], dead.id);
    assert_eq!(job["queue"], "default");
    assert_eq!(job["kind"], "floe.noop");
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["max_attempts"], 20);
    assert_eq!(job["last_error"], "no such customer");
    assert!(job["workflow_id"].is_null() && job["activity_id"].is_null());
    timestamp(&job["run_at"]);
    timestamp(&job["created_at"]);

    let body = get_ok(&app, "/api/jobs?state=running&kind=floe.noop").await;
    assert_eq!(body["items"][0]["id"], running.id);
    assert_eq!(body["items"][0]["lease_owner"], "inspector-test");
    timestamp(&body["items"][0]["lease_expires_at"]);

    let body = get_ok(&app, &format!("/api/jobs?workflow_id={workflow}")).await;
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["kind"], "floe.advance");
    assert_eq!(items[0]["workflow_id"], workflow.to_string());
    assert_eq!(items[0]["state"], "available");

    // Paging: two pages of two, no job twice.
    let first = get_ok(&app, "/api/jobs?limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = get_ok(&app, &format!("/api/jobs?limit=2&cursor={cursor}")).await;
    assert!(second["next_cursor"].is_null());
    let mut paged: Vec<i64> = [&first, &second]
        .iter()
        .flat_map(|p| p["items"].as_array().expect("items").clone())
        .map(|j| j["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(paged, ids);
    paged.dedup();
    assert_eq!(paged.len(), 4);

    for bad in ["state=finished", "limit=0", "limit=501"] {
        let (status, body) = send(app.get(&format!("/api/jobs?{bad}"))).await;
        assert_error(status, &body, 422, "validation_failed");
    }
    for bad in ["cursor=abc", "workflow_id=abc", "limit=many"] {
        let (status, body) = send(app.get(&format!("/api/jobs?{bad}"))).await;
        assert_error(status, &body, 400, "bad_request");
    }

    // Retry the dead job: available now, with a fresh attempt budget.
    let (status, body) = send(app.post(&format!("/api/jobs/{}/retry", dead.id))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "retried": true }));
    let body = get_ok(&app, "/api/jobs?kind=floe.noop&state=available").await;
    let retried = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|j| j["id"] == dead.id)
        .unwrap_or_else(|| panic!("the retried job is available: {body}"))
        .clone();
    assert_eq!(retried["attempts"], 0);
    assert!(timestamp(&retried["run_at"]) <= OffsetDateTime::now_utc());
    // Not dead any more, so not again; a running one neither; an unknown
    // one is 404.
    let (status, body) = send(app.post(&format!("/api/jobs/{}/retry", dead.id))).await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = send(app.post(&format!("/api/jobs/{}/retry", running.id))).await;
    assert_error(status, &body, 409, "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("running")),
        "{body}"
    );
    let (status, body) = send(app.post("/api/jobs/987654321/retry")).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = send(app.post("/api/jobs/x/retry")).await;
    assert_error(status, &body, 400, "bad_request");

    // A worker runs the retried job (a completed job is deleted).
    app.start_worker().await;
    assert!(
        eventually(WAIT, || async {
            let body = get_ok(&app, "/api/jobs?kind=floe.noop").await;
            !body["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|j| j["id"] == dead.id)
        })
        .await,
        "the retried job never ran"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_dashboard_shows_the_census_the_last_hour_and_llm_spend() {
    let app = TestApp::spawn().await;
    app.start_worker().await;
    let done = app.start_tally("done").await;
    let open = app.start_tally("open").await;
    wait_status(&app, open, "waiting").await;
    wait_status(&app, done, "waiting").await;
    finish(&app, done).await;
    // A failed activity, as the engine applies one (its result is the
    // history entry's payload).
    sqlx::query(
        "INSERT INTO floe.history (workflow_id, seq, event, name, payload, event_at, state_after, status_after)
         VALUES ($1, 1000, 'activity', 'a1', '{\"id\": \"a1\", \"error\": \"boom\"}', now(), 'counting', 'waiting')",
    )
    .bind(open)
    .execute(&app.pool)
    .await
    .expect("history");
    // A job no worker here takes.
    queue::store::enqueue(&app.pool, &NewJob::new("test.unhandled", json!({})))
        .await
        .expect("enqueue");
    // LLM calls today, three days ago, and too long ago to show.
    let today: String = sqlx::query_scalar(
        "INSERT INTO floe.llm_calls (workflow_id, step, agent, model, request, response, status, tokens_in,
                                     tokens_out, latency_ms, cost_usd, created_at)
         SELECT $1, s, 'greeter', 'm', '{}', '{}', 'ok', 100, 10, 50, c, now() - d * interval '1 day'
           FROM (VALUES (0, 0.25, 0), (1, 0.5, 0), (2, 1.0, 3), (3, 9.0, 40)) AS v(s, c, d)
         RETURNING to_char((created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')",
    )
    .bind(open)
    .fetch_one(&app.pool)
    .await
    .expect("llm calls");

    let body = get_ok(&app, "/api/inspect/dashboard").await;
    let generated_at = timestamp(&body["generated_at"]);

    let workflows = body["workflows"].as_array().expect("workflows");
    let group = |status: &str| {
        workflows
            .iter()
            .find(|g| g["kind"] == "test.api.tally" && g["status"] == status)
            .unwrap_or_else(|| panic!("no {status} group: {workflows:?}"))
    };
    assert_eq!(group("completed")["state"], "counting");
    assert_eq!(group("completed")["count"], 1);
    assert_eq!(group("waiting")["count"], 1);

    let queue = body["queue"].as_array().expect("queue");
    let unhandled = queue
        .iter()
        .find(|q| q["kind"] == "test.unhandled")
        .unwrap_or_else(|| panic!("the unhandled job's group: {queue:?}"));
    assert_eq!(unhandled["queue"], "default");
    assert_eq!(unhandled["state"], "available");
    assert_eq!(unhandled["count"], 1);
    let age = unhandled["oldest_age_seconds"].as_f64().expect("a number");
    assert!((0.0..600.0).contains(&age), "{age}");

    // Exactly 60 minutes, oldest first, the last one holding now.
    let minutes = body["throughput"].as_array().expect("throughput");
    assert_eq!(minutes.len(), 60);
    let starts: Vec<OffsetDateTime> = minutes.iter().map(|m| timestamp(&m["minute"])).collect();
    assert!(
        starts
            .windows(2)
            .all(|w| w[1] - w[0] == Duration::from_secs(60))
    );
    let last = starts[59];
    assert!(last <= generated_at && generated_at < last + Duration::from_secs(60));
    let sum = |field: &str| -> i64 {
        minutes
            .iter()
            .map(|m| m[field].as_i64().expect("a count"))
            .sum()
    };
    assert_eq!(sum("completed"), 1);
    assert_eq!(sum("failed"), 0);
    assert_eq!(sum("cancelled"), 0);
    assert_eq!(sum("activities_failed"), 1);
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM floe.history")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(sum("transitions"), history, "every entry is this hour's");
    // The completion is counted in its minute, one of the last two.
    let finished_at: OffsetDateTime =
        sqlx::query_scalar("SELECT finished_at FROM floe.workflows WHERE id = $1")
            .bind(done)
            .fetch_one(&app.pool)
            .await
            .expect("finished_at");
    let at = starts
        .iter()
        .rposition(|s| *s <= finished_at)
        .expect("in the hour");
    assert!(at >= 58, "bucket {at}");
    assert_eq!(minutes[at]["completed"], 1);

    let spend = body["llm_spend"].as_array().expect("llm_spend");
    assert_eq!(spend.len(), 2, "today and three days ago: {spend:?}");
    assert_eq!(spend[1]["day"], today);
    assert_eq!(spend[1]["calls"], 2);
    assert_eq!(spend[1]["tokens_in"], 200);
    assert_eq!(spend[1]["tokens_out"], 20);
    assert_eq!(spend[1]["cost_usd"], 0.75);
    assert_eq!(spend[0]["calls"], 1);
    assert_eq!(spend[0]["cost_usd"], 1.0);
    assert!(spend[0]["day"].as_str().expect("day") < today.as_str());
    app.stop().await;
}

#[tokio::test]
async fn every_inspector_route_needs_the_operator_token() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("secret").await;
    let routes = [
        ("GET", "/api/inspect/counts".to_owned()),
        ("GET", "/api/inspect/dashboard".to_owned()),
        ("GET", format!("/api/workflows/{id}/activities")),
        ("GET", format!("/api/workflows/{id}/llm-calls")),
        ("GET", "/api/jobs".to_owned()),
        ("POST", "/api/jobs/1/retry".to_owned()),
        ("GET", "/api/workflows?q=secret".to_owned()),
    ];
    for (method, path) in &routes {
        let method: reqwest::Method = method.parse().expect("method");
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("send");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer",
            "{method} {path}"
        );
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        assert_error(status, &body, 401, "unauthorized");
        let (status, body) = send(
            app.client
                .request(method.clone(), app.url(path))
                .bearer_auth("wrong-token"),
        )
        .await;
        assert_error(status, &body, 401, "unauthorized");
    }
    // Nothing was retried or leaked: the job list still shows the start.
    let body = get_ok(&app, "/api/jobs").await;
    assert_eq!(body["items"][0]["workflow_id"], id.to_string());
    app.stop().await;
}

/// Found by `scripts/fuzz-api`: a filter holding the NUL character, which
/// PostgreSQL cannot take as text, failed in the database as a 500.
#[tokio::test]
async fn a_filter_with_a_nul_character_is_a_400() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/inspect/counts?kind=on%00boarding",
        "/api/jobs?kind=floe.activity%00",
        "/api/jobs?state=dead%00",
    ] {
        let (status, body) = send(app.get(path)).await;
        assert_error(status, &body, 400, "bad_request");
    }
    // The same filters without it answer.
    get_ok(&app, "/api/inspect/counts?kind=onboarding").await;
    get_ok(&app, "/api/jobs?kind=floe.activity&state=dead").await;
    app.stop().await;
}
