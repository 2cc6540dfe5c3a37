//! The engine's HTTP API against a real server on port 0, real PostgreSQL,
//! real HTTP, and (where a signal must be applied) an in-process worker.

mod common;

use std::time::Duration;

use common::{SseReader, TestApp, assert_error, eventually, send};
use floe_engine::workflow::store;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn scalar(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("scalar")
}

async fn status_of(app: &TestApp, id: Uuid) -> String {
    let (status, body) = send(app.get(&format!("/api/workflows/{id}"))).await;
    assert_eq!(status, 200, "{body}");
    body["status"].as_str().expect("status").to_owned()
}

async fn wait_status(app: &TestApp, id: Uuid, want: &str) {
    assert!(
        eventually(WAIT, || async { status_of(app, id).await == want }).await,
        "workflow {id} never became {want}"
    );
}

#[tokio::test]
async fn starting_answers_202_and_the_same_open_key_twice_gives_the_same_workflow() {
    let app = TestApp::spawn().await;
    let request = json!({ "kind": "test.api.tally", "key": "k1", "input": { "x": 1 } });
    let response = app
        .post("/api/workflows")
        .json(&request)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let first: Value = response.json().await.expect("json");
    assert_eq!(first["created"], true);
    assert_eq!(first["kind"], "test.api.tally");
    assert_eq!(first["key"], "k1");
    let id = first["id"].as_str().expect("id");
    assert_eq!(location, format!("/api/workflows/{id}"));

    let (status, second) = send(app.post("/api/workflows").json(&request)).await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["created"], false);
    assert_eq!(second["id"], id);

    // No key: a fresh one, so a new workflow.
    let (status, third) = send(
        app.post("/api/workflows")
            .json(&json!({ "kind": "test.api.tally", "input": null })),
    )
    .await;
    assert_eq!(status, 202, "{third}");
    assert_eq!(third["created"], true);
    assert_ne!(third["id"], id);
    assert!(third["key"].as_str().expect("key").parse::<Uuid>().is_ok());

    let row = store::get(&app.pool, id.parse().expect("uuid"))
        .await
        .expect("get")
        .expect("row");
    assert_eq!(row.input, json!({ "x": 1 }));
    assert_eq!(row.definition_version, 3, "the registry's version");
    assert_eq!(
        scalar(&app.pool, "SELECT count(*) FROM floe.workflows").await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn listing_filters_and_pages_newest_first() {
    let app = TestApp::spawn().await;
    let mut tallies = Vec::new();
    for i in 0..5 {
        tallies.push(app.start_tally(&format!("t{i}")).await);
    }
    let mut others = Vec::new();
    for i in 0..2 {
        let mut tx = app.pool.begin().await.expect("begin");
        let s = store::start(
            &mut tx,
            "test.api.other",
            &format!("o{i}"),
            &json!({}),
            1,
            None,
        )
        .await
        .expect("start");
        tx.commit().await.expect("commit");
        others.push(s.id);
    }
    // Shape a few rows as a worker would have.
    sqlx::query("UPDATE floe.workflows SET status = 'completed' WHERE id = $1")
        .bind(tallies[0])
        .execute(&app.pool)
        .await
        .expect("complete");
    sqlx::query("UPDATE floe.workflows SET state = 'special', status = 'waiting' WHERE id = $1")
        .bind(tallies[1])
        .execute(&app.pool)
        .await
        .expect("state");
    sqlx::query("UPDATE floe.workflows SET deadline = now() - interval '1 hour', deadline_reason = 'late' WHERE id = $1")
        .bind(tallies[2])
        .execute(&app.pool)
        .await
        .expect("deadline");
    sqlx::query("UPDATE floe.workflows SET deadline = now() + interval '1 hour' WHERE id = $1")
        .bind(tallies[3])
        .execute(&app.pool)
        .await
        .expect("deadline");

    let ids = |body: &Value| -> Vec<Uuid> {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["id"].as_str().expect("id").parse().expect("uuid"))
            .collect()
    };
    let newest_first = |mut v: Vec<Uuid>| {
        v.sort();
        v.reverse();
        v
    };

    let (status, all) = send(app.get("/api/workflows")).await;
    assert_eq!(status, 200, "{all}");
    let mut everything: Vec<Uuid> = tallies.iter().chain(&others).copied().collect();
    everything = newest_first(everything);
    assert_eq!(ids(&all), everything);
    assert_eq!(all["next_cursor"], Value::Null);
    assert!(
        all["items"][0].get("context").is_none(),
        "lists carry no data"
    );

    let (_, by_kind) = send(app.get("/api/workflows?kind=test.api.tally")).await;
    assert_eq!(ids(&by_kind), newest_first(tallies.clone()));
    let (_, by_status) = send(app.get("/api/workflows?status=completed")).await;
    assert_eq!(ids(&by_status), vec![tallies[0]]);
    assert_eq!(by_status["items"][0]["status"], "completed");
    let (_, by_state) = send(app.get("/api/workflows?state=special")).await;
    assert_eq!(ids(&by_state), vec![tallies[1]]);
    let (_, overdue) = send(app.get("/api/workflows?overdue=true")).await;
    assert_eq!(ids(&overdue), vec![tallies[2]]);
    assert_eq!(overdue["items"][0]["deadline_reason"], "late");
    let (_, combined) = send(app.get("/api/workflows?kind=test.api.other&status=running")).await;
    assert_eq!(ids(&combined), newest_first(others.clone()));

    // Pages of two, following the cursor, give everything once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/workflows?limit=2&cursor={c}"),
            None => "/api/workflows?limit=2".to_owned(),
        };
        let (status, page) = send(app.get(&path)).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        paged.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, everything);
    assert_eq!(pages, 4);

    for bad in [
        "/api/workflows?status=sleeping",
        "/api/workflows?limit=0",
        "/api/workflows?limit=501",
        "/api/workflows?limit=many",
        "/api/workflows?cursor=nope",
        "/api/workflows?overdue=maybe",
    ] {
        let (status, body) = send(app.get(bad)).await;
        assert_error(status, &body, 400, "bad_request");
    }
    app.stop().await;
}

#[tokio::test]
async fn getting_a_workflow_returns_its_row_and_children_and_unknown_ids_are_404() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("parent").await;
    let mut tx = app.pool.begin().await.expect("begin");
    let child = store::start(&mut tx, "test.api.tally", "child", &json!({}), 1, Some(id))
        .await
        .expect("child");
    tx.commit().await.expect("commit");

    let (status, body) = send(app.get(&format!("/api/workflows/{id}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["kind"], "test.api.tally");
    assert_eq!(body["key"], "parent");
    assert_eq!(body["status"], "running");
    assert_eq!(body["state"], "starting");
    assert_eq!(body["context"], Value::Null);
    assert_eq!(body["input"], json!({}));
    assert_eq!(body["version"], 0);
    assert_eq!(body["definition_version"], 3);
    assert_eq!(body["children"], json!([child.id]));
    for field in [
        "output",
        "error",
        "deadline",
        "deadline_reason",
        "parent_id",
        "created_at",
        "updated_at",
    ] {
        assert!(body.get(field).is_some(), "{field} missing: {body}");
    }
    let (_, child_body) = send(app.get(&format!("/api/workflows/{}", child.id))).await;
    assert_eq!(child_body["parent_id"], id.to_string());

    let unknown = Uuid::now_v7();
    for path in [
        format!("/api/workflows/{unknown}"),
        format!("/api/workflows/{unknown}/history"),
        format!("/api/workflows/{unknown}/queries/total"),
        format!("/api/workflows/{unknown}/events"),
    ] {
        let (status, body) = send(app.get(&path)).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = send(app.get("/api/workflows/not-a-uuid")).await;
    assert_error(status, &body, 400, "bad_request");
    app.stop().await;
}

#[tokio::test]
async fn signals_are_delivered_once_per_idempotency_key_applied_by_a_worker_and_queried() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("signals").await;

    // Before any worker applied the start there is no state to query.
    let (status, body) = send(app.get(&format!("/api/workflows/{id}/queries/total"))).await;
    assert_error(status, &body, 409, "conflict");

    let signal = |n: i64, key: Option<&str>| {
        let mut request = app
            .post(&format!("/api/workflows/{id}/signals/add"))
            .json(&json!({ "n": n }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        send(request)
    };
    let (status, first) = signal(5, Some("click-1")).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["delivered"], true);
    assert_eq!(first["seq"], 2);
    let (status, again) = signal(5, Some("click-1")).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["delivered"], false);
    assert_eq!(again["seq"], Value::Null);
    let keyed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.inbox WHERE workflow_id = $1 AND idempotency_key = 'click-1'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("inbox");
    assert_eq!(keyed, 1, "one inbox event for the key");
    let (status, unkeyed) = signal(7, None).await;
    assert_eq!(status, 202, "{unkeyed}");
    assert_eq!(unkeyed["seq"], 3);

    app.start_worker().await;
    let total = || async {
        let (status, body) = send(app.get(&format!("/api/workflows/{id}/queries/total"))).await;
        status == 200 && body["result"] == 12
    };
    assert!(
        eventually(WAIT, total).await,
        "the signals were applied once each"
    );
    let (_, adds) = send(app.get(&format!("/api/workflows/{id}/queries/adds"))).await;
    assert_eq!(adds["result"], json!([5, 7]));
    let (status, body) = send(app.get(&format!("/api/workflows/{id}/queries/nope"))).await;
    assert_error(status, &body, 404, "not_found");

    // The history: start, then the two signals, in inbox order.
    let (status, history) = send(app.get(&format!("/api/workflows/{id}/history"))).await;
    assert_eq!(status, 200, "{history}");
    let items = history["items"].as_array().expect("items");
    let events: Vec<(i64, &str, Option<&str>)> = items
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().expect("seq"),
                e["event"].as_str().expect("event"),
                e["name"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (1, "start", None),
            (2, "signal", Some("add")),
            (3, "signal", Some("add"))
        ]
    );
    assert_eq!(items[1]["payload"], json!({ "n": 5 }));
    assert_eq!(items[2]["state_after"], "counting");
    assert_eq!(items[2]["status_after"], "waiting");
    let (_, after) = send(app.get(&format!("/api/workflows/{id}/history?after=2"))).await;
    assert_eq!(after["items"].as_array().expect("items").len(), 1);
    assert_eq!(after["items"][0]["seq"], 3);

    // An empty body is a null payload: `finish` completes it.
    let (status, body) = send(app.post(&format!("/api/workflows/{id}/signals/finish"))).await;
    assert_eq!(status, 202, "{body}");
    wait_status(&app, id, "completed").await;
    let (_, row) = send(app.get(&format!("/api/workflows/{id}"))).await;
    assert_eq!(row["output"], json!({ "total": 12 }));
    // Queries still answer from the finished row.
    let (status, body) = send(app.get(&format!("/api/workflows/{id}/queries/total"))).await;
    assert_eq!((status, body["result"].clone()), (200, json!(12)));

    // A finished workflow takes no more signals: 409, and nothing recorded.
    let inbox_before = scalar(&app.pool, "SELECT count(*) FROM floe.inbox").await;
    let (status, body) = signal(1, Some("late")).await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = send(
        app.post(&format!("/api/workflows/{id}/cancel"))
            .json(&json!({ "reason": "too late" })),
    )
    .await;
    assert_error(status, &body, 409, "conflict");
    assert_eq!(
        scalar(&app.pool, "SELECT count(*) FROM floe.inbox").await,
        inbox_before
    );
    app.stop().await;
}

#[tokio::test]
async fn cancelling_delivers_once_and_a_worker_applies_it() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("to-cancel").await;
    let cancel = || {
        send(
            app.post(&format!("/api/workflows/{id}/cancel"))
                .json(&json!({ "reason": "operator says stop" })),
        )
    };
    let (status, first) = cancel().await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["delivered"], true);
    let (status, second) = cancel().await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["delivered"], false);

    for bad in [json!({ "reason": "" }), json!({}), json!({ "reason": 3 })] {
        let (status, body) =
            send(app.post(&format!("/api/workflows/{id}/cancel")).json(&bad)).await;
        assert_error(status, &body, 422, "validation_failed");
    }

    app.start_worker().await;
    wait_status(&app, id, "cancelled").await;
    let (_, row) = send(app.get(&format!("/api/workflows/{id}"))).await;
    assert_eq!(row["error"], "operator says stop");
    let (status, body) = cancel().await;
    assert_error(status, &body, 409, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn the_event_stream_sends_history_then_live_entries_resumes_after_last_event_id_and_ends() {
    let app = TestApp::spawn().await;
    app.start_worker().await;
    let id = app.start_tally("streamed").await;
    let events = format!("/api/workflows/{id}/events");
    let open = |last: Option<i64>| {
        let mut request = app.get(&events);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        async move {
            let response = request.send().await.expect("send");
            assert_eq!(response.status(), 200);
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .expect("content type")
                    .starts_with("text/event-stream")
            );
            SseReader::new(response)
        }
    };
    let signal = |name: &'static str, payload: Value| {
        send(
            app.post(&format!("/api/workflows/{id}/signals/{name}"))
                .json(&payload),
        )
    };

    let mut stream = open(None).await;
    let start = stream.next(WAIT).await.expect("start event");
    assert_eq!(start.id.as_deref(), Some("1"));
    assert_eq!(start.event.as_deref(), Some("start"));
    assert_eq!(start.json()["seq"], 1);
    assert_eq!(start.json()["state_after"], "counting");

    // Live: each applied signal arrives as it happens.
    assert_eq!(signal("add", json!({ "n": 1 })).await.0, 202);
    let e = stream.next(WAIT).await.expect("live event");
    assert_eq!(
        (e.id.as_deref(), e.event.as_deref()),
        (Some("2"), Some("signal"))
    );
    assert_eq!(e.json()["payload"], json!({ "n": 1 }));
    assert_eq!(signal("add", json!({ "n": 2 })).await.0, 202);
    let e = stream.next(WAIT).await.expect("live event");
    assert_eq!(e.id.as_deref(), Some("3"));
    drop(stream);

    // Resumed after 2: only 3 and later.
    let mut resumed = open(Some(2)).await;
    let e = resumed.next(WAIT).await.expect("resumed event");
    assert_eq!(e.id.as_deref(), Some("3"));
    assert_eq!(e.json()["payload"], json!({ "n": 2 }));
    assert_eq!(signal("finish", Value::Null).await.0, 202);
    let e = resumed.next(WAIT).await.expect("finish event");
    assert_eq!(e.id.as_deref(), Some("4"));
    assert_eq!(e.json()["status_after"], "completed");
    let end = resumed.next(WAIT).await.expect("end event");
    assert_eq!(end.event.as_deref(), Some("end"));
    assert_eq!(end.json()["status"], "completed");
    assert_eq!(
        resumed.next(WAIT).await,
        None,
        "the stream closes after end"
    );

    // A finished workflow's stream: what is after Last-Event-ID, then end.
    let mut replayed = open(Some(3)).await;
    assert_eq!(
        replayed.next(WAIT).await.expect("event").id.as_deref(),
        Some("4")
    );
    assert_eq!(
        replayed.next(WAIT).await.expect("end").event.as_deref(),
        Some("end")
    );
    assert_eq!(replayed.next(WAIT).await, None);
    let mut whole = open(None).await;
    let mut seqs = Vec::new();
    while let Some(e) = whole.next(WAIT).await {
        seqs.push(e.id.unwrap_or_else(|| e.event.unwrap_or_default()));
    }
    assert_eq!(seqs, ["1", "2", "3", "4", "end"]);

    let (status, body) = send(app.get(&events).header("Last-Event-ID", "yesterday")).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = send(app.client.get(app.url(&events))).await;
    assert_error(status, &body, 401, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn an_open_event_stream_ends_when_the_server_shuts_down() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("held-open").await;
    let response = app
        .get(&format!("/api/workflows/{id}/events"))
        .send()
        .await
        .expect("send");
    let mut stream = SseReader::new(response);
    // Nothing applied the start yet: the stream waits. Shutting down must
    // not wait for it.
    let stopping = tokio::spawn(app.stop());
    assert_eq!(stream.next(WAIT).await, None);
    stopping.await.expect("stopped");
}

#[tokio::test]
async fn every_bad_request_gets_its_status_and_the_json_error_body_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("victim").await;
    sqlx::query("UPDATE floe.workflows SET status = 'completed' WHERE key = 'done'")
        .execute(&app.pool)
        .await
        .expect("noop");
    let mut tx = app.pool.begin().await.expect("begin");
    let finished = store::start(&mut tx, "test.api.tally", "done", &json!({}), 1, None)
        .await
        .expect("start")
        .id;
    tx.commit().await.expect("commit");
    sqlx::query("UPDATE floe.workflows SET status = 'completed' WHERE id = $1")
        .bind(finished)
        .execute(&app.pool)
        .await
        .expect("finish");
    let counts = || async {
        (
            scalar(&app.pool, "SELECT count(*) FROM floe.workflows").await,
            scalar(&app.pool, "SELECT count(*) FROM floe.inbox").await,
            scalar(&app.pool, "SELECT count(*) FROM floe.jobs").await,
        )
    };
    let before = counts().await;
    let start = "/api/workflows";
    let signal = format!("/api/workflows/{id}/signals/add");

    // Authentication.
    let no_token = app.client.get(app.url(start));
    let response = no_token.send().await.expect("send");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.expect("json");
    assert_error(401, &body, 401, "unauthorized");
    for auth in [
        "Bearer wrong",
        "Basic dGVzdDp0ZXN0",
        "Bearer",
        "test-operator-token",
    ] {
        let (status, body) = send(
            app.client
                .post(app.url(start))
                .header("Authorization", auth)
                .json(&json!({ "kind": "test.api.tally", "input": {} })),
        )
        .await;
        assert_error(status, &body, 401, "unauthorized");
    }

    // Bodies.
    let raw = |path: &str, body: &'static str, content_type: Option<&str>| {
        let mut r = app.post(path).body(body);
        if let Some(ct) = content_type {
            r = r.header("Content-Type", ct);
        }
        send(r)
    };
    let (status, body) = raw(start, "{\"kind\": ", Some("application/json")).await;
    assert_error(status, &body, 400, "malformed_json");
    let (status, body) = raw(
        start,
        "kind=test.api.tally",
        Some("application/x-www-form-urlencoded"),
    )
    .await;
    assert_error(status, &body, 400, "malformed_json");
    let (status, body) = raw(start, "{\"kind\": \"test.api.tally\"}", None).await;
    assert_error(status, &body, 400, "malformed_json");
    let (status, body) = raw(&signal, "{nope", Some("application/json")).await;
    assert_error(status, &body, 400, "malformed_json");
    let (status, body) = raw(&signal, "{\"n\": 1}", Some("text/plain")).await;
    assert_error(status, &body, 400, "malformed_json");
    for invalid in [
        json!({ "input": {} }),
        json!({ "kind": "test.api.tally" }),
        json!({ "kind": 7, "input": {} }),
        json!({ "kind": "test.api.tally", "input": {}, "extra": true }),
        json!({ "kind": "test.api.tally", "key": "", "input": {} }),
        json!({ "kind": "test.api.tally", "key": "k".repeat(300), "input": {} }),
        json!([1, 2]),
    ] {
        let (status, body) = send(app.post(start).json(&invalid)).await;
        assert_error(status, &body, 422, "validation_failed");
    }
    let (status, body) = send(
        app.post(start)
            .json(&json!({ "kind": "test.nonexistent", "input": {} })),
    )
    .await;
    assert_error(status, &body, 422, "validation_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("test.nonexistent")
    );

    // Too large: declared, and streamed without a length.
    let big =
        json!({ "kind": "test.api.tally", "input": { "pad": "x".repeat(common::BODY_LIMIT) } });
    let (status, body) = send(app.post(start).json(&big)).await;
    assert_error(status, &body, 413, "payload_too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..80).map(|_| Ok(vec![b' '; 1024])).collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, body) = send(
        app.post(&signal)
            .header("Content-Type", "application/json")
            .body(streamed),
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");

    // Ids, routes, methods, headers.
    let unknown = Uuid::now_v7();
    let (status, body) = send(
        app.post(&format!("/api/workflows/{unknown}/signals/add"))
            .json(&json!({ "n": 1 })),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = send(
        app.post(&format!("/api/workflows/{unknown}/cancel"))
            .json(&json!({ "reason": "x" })),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = send(app.post("/api/workflows/123/signals/add").json(&json!({}))).await;
    assert_error(status, &body, 400, "bad_request");
    for path in ["/api/nothing-here", "/api", "/api/workflows/x/y/z/w"] {
        let (status, body) = send(app.get(path)).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = send(app.client.delete(app.url(start)).bearer_auth(common::TOKEN)).await;
    assert_error(status, &body, 405, "method_not_allowed");
    for key in ["k".repeat(300), "cancel".to_owned()] {
        let (status, body) = send(
            app.post(&signal)
                .header("Idempotency-Key", key)
                .json(&json!({ "n": 1 })),
        )
        .await;
        assert_error(status, &body, 400, "bad_request");
    }
    let (status, body) = send(
        app.post(&format!("/api/workflows/{id}/signals/{}", "s".repeat(300)))
            .json(&json!({ "n": 1 })),
    )
    .await;
    assert_error(status, &body, 422, "validation_failed");

    // A finished workflow.
    let (status, body) = send(
        app.post(&format!("/api/workflows/{finished}/signals/add"))
            .json(&json!({ "n": 1 })),
    )
    .await;
    assert_error(status, &body, 409, "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("completed")
    );

    assert_eq!(counts().await, before, "no bad request changed anything");
    app.stop().await;
}

#[tokio::test]
async fn an_internal_error_is_500_without_its_cause() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("broken").await;
    // A stored state the definition cannot decode.
    sqlx::query("UPDATE floe.workflows SET context = '\"garbage\"' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .expect("corrupt");
    let (status, body) = send(app.get(&format!("/api/workflows/{id}/queries/total"))).await;
    assert_error(status, &body, 500, "internal");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        !message.contains("decode"),
        "the cause is not sent: {message}"
    );
    app.stop().await;
}

/// The routes the engine API must have (the Temporal-Lite spec's); every one
/// must be in the OpenAPI document. Add new routes here as well.
const EXPECTED_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/workflows"),
    ("get", "/api/workflows"),
    ("get", "/api/workflows/{id}"),
    ("get", "/api/workflows/{id}/history"),
    ("post", "/api/workflows/{id}/signals/{name}"),
    ("post", "/api/workflows/{id}/cancel"),
    ("get", "/api/workflows/{id}/queries/{name}"),
    ("get", "/api/workflows/{id}/events"),
    ("get", "/api/inspect/counts"),
    ("get", "/api/workflows/{id}/activities"),
    ("get", "/api/workflows/{id}/llm-calls"),
    ("get", "/api/jobs"),
    ("post", "/api/jobs/{id}/retry"),
    ("get", "/api/inspect/dashboard"),
    ("post", "/api/session"),
    ("get", "/api/session"),
    ("post", "/api/workflow/start"),
    ("post", "/api/chat/message"),
    ("get", "/api/workflow/progress"),
    ("get", "/api/workflow/state"),
    ("get", "/api/chat/messages"),
    ("get", "/api/inbox"),
    ("get", "/ws"),
    ("get", "/api/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

/// Every `$ref` in `value` and where it is.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_lists_every_route_the_router_serves() {
    let app = TestApp::spawn().await;
    // No token needed.
    let (status, doc) = send(app.client.get(app.url("/api/openapi.json"))).await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    assert_eq!(doc["info"]["title"], "floe");
    assert_eq!(
        doc["components"]["securitySchemes"]["operator_token"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().expect("paths");

    // The expected routes are all documented...
    for (method, path) in EXPECTED_ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{} {path} is not in the OpenAPI document",
            method.to_uppercase()
        );
    }
    // ...and every documented operation is routed, answers with a documented
    // status, and has the security it says.
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            assert!(
                EXPECTED_ROUTES.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is documented but not in EXPECTED_ROUTES"
            );
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                !responses.is_empty(),
                "{method} {path} documents no response"
            );
            let url = app.url(
                &path
                    .replace("{id}", &Uuid::now_v7().to_string())
                    .replace("{name}", "x"),
            );
            let secured = operation.get("security").is_some();
            let request = app
                .client
                .request(method.to_uppercase().parse().expect("method"), &url)
                .timeout(Duration::from_secs(10));
            let (status, body) = send(if secured {
                request.bearer_auth(common::TOKEN)
            } else {
                request
            })
            .await;
            let no_route = status == 404
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no route"));
            assert!(
                !no_route && status != 405,
                "{method} {path} is not routed: {status} {body}"
            );
            assert!(
                responses.contains_key(&status.to_string()),
                "{method} {path} answered {status}, which it does not document"
            );
            if secured {
                let (status, _) = send(
                    app.client
                        .request(method.to_uppercase().parse().expect("method"), &url),
                )
                .await;
                assert_eq!(
                    status, 401,
                    "{method} {path} documents security but is open"
                );
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} does not document 401"
                );
            }
        }
    }
    assert_eq!(operations, EXPECTED_ROUTES.len());

    // Every reference resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').expect("local reference");
        assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
    }
    // The library builds the same document.
    assert_eq!(
        serde_json::to_value(floe_api::http::openapi()).expect("serialize"),
        doc
    );
    app.stop().await;
}

#[tokio::test]
async fn a_signal_the_workflows_definition_does_not_take_is_refused_before_delivery() {
    let app = TestApp::spawn().await;
    let (status, body) = send(app.post("/api/workflows").json(&json!({
        "kind": "onboarding", "key": "onboarding/u1", "input": { "user_id": "u1" },
    })))
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let inbox = "SELECT count(*) FROM floe.inbox";
    let before = scalar(&app.pool, inbox).await;
    for (name, payload) in [
        ("user_mesage", json!({ "content": "typo in the name" })),
        ("user_message", json!({ "text": "no content field" })),
    ] {
        let (status, body) = send(
            app.post(&format!("/api/workflows/{id}/signals/{name}"))
                .json(&payload),
        )
        .await;
        assert_error(status, &body, 422, "validation_failed");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("onboarding does not take this signal")),
            "{body}"
        );
    }
    assert_eq!(
        scalar(&app.pool, inbox).await,
        before,
        "nothing was delivered"
    );
    let (status, body) = send(
        app.post(&format!("/api/workflows/{id}/signals/user_message"))
            .json(&json!({ "content": "hello" })),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    app.stop().await;
}

/// Found by `scripts/fuzz-api`: PostgreSQL cannot store the NUL character,
/// so a key, an input, a payload, a reason or a filter holding one reached
/// the database and failed there as a 500.
#[tokio::test]
async fn text_with_a_nul_character_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app.start_tally("nul").await;
    // The text `\u0000` (an escaped backslash) is no NUL: taken as it is.
    let (status, body) = send(app.post("/api/workflows").json(&json!({
        "kind": "test.api.tally", "key": "slash\\u0000", "input": {},
    })))
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["key"], "slash\\u0000");
    let status_before = status_of(&app, id).await;
    let counts = || async {
        (
            scalar(&app.pool, "SELECT count(*) FROM floe.workflows").await,
            scalar(&app.pool, "SELECT count(*) FROM floe.inbox").await,
            scalar(&app.pool, "SELECT count(*) FROM floe.jobs").await,
        )
    };
    let before = counts().await;
    for body in [
        json!({ "kind": "test.api.tally", "key": "k\u{0}", "input": {} }),
        json!({ "kind": "test.api.tally", "input": { "note": "a\u{0}b" } }),
        json!({ "kind": "test.api.tally", "input": { "\u{0}": 1 } }),
    ] {
        let (status, body) = send(app.post("/api/workflows").json(&body)).await;
        assert_error(status, &body, 422, "validation_failed");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("NUL")),
            "{body}"
        );
    }
    let (status, body) = send(
        app.post(&format!("/api/workflows/{id}/signals/add"))
            .json(&json!({ "n": 1, "note": "\u{0}" })),
    )
    .await;
    assert_error(status, &body, 422, "validation_failed");
    let (status, body) = send(
        app.post(&format!("/api/workflows/{id}/cancel"))
            .json(&json!({ "reason": "stop\u{0}" })),
    )
    .await;
    assert_error(status, &body, 422, "validation_failed");
    let (status, body) = send(
        app.post(&format!("/api/workflows/{id}/signals/a%00b"))
            .json(&json!({ "n": 1 })),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");
    for query in ["kind=a%00b", "q=%00", "state=x%00"] {
        let (status, body) = send(app.get(&format!("/api/workflows?{query}"))).await;
        assert_error(status, &body, 400, "bad_request");
    }
    assert_eq!(counts().await, before, "nothing changed");
    assert_eq!(status_of(&app, id).await, status_before);
    app.stop().await;
}

/// Found by `scripts/fuzz-api`: the document described every event of a
/// workflow's stream as a history entry, but the last one is `end` with
/// `{"status"}`. Each event a real stream sends matches its documented kind.
#[tokio::test]
async fn the_documented_event_stream_schema_matches_the_events_sent() {
    let app = TestApp::spawn().await;
    app.start_worker().await;
    let id = app.start_tally("documented").await;
    let (status, _) = send(
        app.post(&format!("/api/workflows/{id}/signals/finish"))
            .json(&Value::Null),
    )
    .await;
    assert_eq!(status, 202);
    wait_status(&app, id, "completed").await;

    let (_, doc) = send(app.client.get(app.url("/api/openapi.json"))).await;
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(r) => doc
                .pointer(r.strip_prefix('#').expect("local"))
                .expect("resolves")
                .clone(),
            None => schema.clone(),
        }
    };
    let stream = resolve(
        &doc["paths"]["/api/workflows/{id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
            ["schema"],
    );
    let kinds = stream["oneOf"].as_array().expect("oneOf").clone();

    let response = app
        .get(&format!("/api/workflows/{id}/events"))
        .send()
        .await
        .expect("send");
    let mut events = SseReader::new(response);
    let mut seen = Vec::new();
    while let Some(event) = events.next(WAIT).await {
        let name = event.event.clone().expect("named");
        let kind = kinds
            .iter()
            .find(|k| {
                k["properties"]["event"]["enum"]
                    .as_array()
                    .is_some_and(|e| e.contains(&json!(name)))
            })
            .unwrap_or_else(|| panic!("event {name} is not documented"));
        for field in kind["required"].as_array().expect("required") {
            let present = match field.as_str().expect("name") {
                "id" => event.id.is_some(),
                "event" => true,
                _ => !event.data.is_empty(),
            };
            assert!(present, "{name} lacks {field}");
        }
        let data_schema = &kind["properties"]["data"];
        assert_eq!(data_schema["contentMediaType"], "application/json");
        let data_schema = resolve(&data_schema["contentSchema"]);
        let data = event.json();
        let fields = data.as_object().expect("data is an object");
        let documented = data_schema["properties"].as_object().expect("properties");
        for key in fields.keys() {
            assert!(
                documented.contains_key(key),
                "{name}: {key} is not documented"
            );
        }
        for key in data_schema["required"].as_array().into_iter().flatten() {
            assert!(
                fields.contains_key(key.as_str().expect("name")),
                "{name}: no {key}"
            );
        }
        seen.push(name);
    }
    assert_eq!(seen, ["start", "signal", "end"]);
    app.stop().await;
}
