//! `floe`, the operator's command, run as a real process against real
//! PostgreSQL, on workflows and jobs that real worker processes ran.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Testbed, database, eventually, scalar};
use floe_engine::chat;
use floe_engine::db::MIGRATOR;
use floe_engine::testing::{expose, fresh_database};
use floe_engine::workflow::store;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// What a `floe` run did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout as the one JSON document `--json` promises.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }
}

/// Runs `floe ARGS` against `url`, feeding it `stdin`.
fn floe_with_input(url: &SecretString, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .env("DATABASE_URL", expose(url))
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floe");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for floe");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn floe(url: &SecretString, args: &[&str]) -> Run {
    floe_with_input(url, args, "")
}

/// Runs `floe ARGS --json`, expects exit 0 and returns the document.
fn floe_json(url: &SecretString, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let run = floe(url, &args);
    assert_eq!(run.code, 0, "floe {args:?}: {run:?}");
    run.json()
}

/// Asserts exit `code` and a one-line error on stderr containing `text`.
fn assert_error(run: &Run, code: i32, text: &str) {
    assert_eq!(run.code, code, "{run:?}");
    assert!(run.stdout.is_empty(), "nothing on stdout: {run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {run:?}");
    assert!(lines[0].contains(text), "{text:?} in {run:?}");
}

async fn start(pool: &PgPool, kind: &str, key: &str, input: Value) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let started = store::start(&mut tx, kind, key, &input, 1, None)
        .await
        .expect("start");
    tx.commit().await.expect("commit");
    started.id
}

async fn row(pool: &PgPool, id: Uuid) -> store::WorkflowRow {
    store::get(pool, id).await.expect("get").expect("row")
}

/// Waits until `id`'s inbox is applied (and, with `status`, it has it).
async fn settled(pool: &PgPool, id: Uuid, status: Option<&str>, worker: &Testbed) {
    let ok = eventually(Duration::from_secs(30), || async {
        let w = row(pool, id).await;
        w.applied_seq == w.next_seq && status.is_none_or(|s| w.status.as_str() == s)
    })
    .await;
    assert!(
        ok,
        "workflow {id} did not settle: {:?}\n{}",
        row(pool, id).await,
        worker.log()
    );
}

/// Signals and cancellations in a workflow's inbox.
async fn inbox_len(pool: &PgPool, id: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM floe.inbox WHERE workflow_id = $1 AND event IN ('signal', 'cancel')",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("count")
}

#[tokio::test]
async fn workflows_list_show_history_signal_and_cancel() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &["--poll-ms", "200"]);
    let alpha = start(&pool, "test.counter", "alpha-1", json!({})).await;
    let beta = start(&pool, "test.counter", "beta-2", json!({})).await;

    // A signal goes through the inbox; the worker applies it. This build has
    // no definition of the test kinds, so it says the signal is unchecked.
    let run = floe(
        &url,
        &[
            "signal",
            &alpha.to_string(),
            "add",
            "--payload",
            r#"{"tag": 7}"#,
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["delivered"], true);
    assert_eq!(run.json()["seq"], 2);
    assert_eq!(run.json()["checked"], false);
    assert!(run.stderr.contains("no definition of kind"), "{run:?}");
    settled(&pool, alpha, Some("waiting"), &worker).await;
    settled(&pool, beta, Some("waiting"), &worker).await;
    assert_eq!(row(&pool, alpha).await.context, json!([7]));

    // list, as JSON: newest first, with filters and pages.
    let page = floe_json(&url, &["workflows", "list"]);
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| w["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [beta.to_string(), alpha.to_string()]);
    assert_eq!(page["items"][1]["kind"], "test.counter");
    assert_eq!(page["items"][1]["key"], "alpha-1");
    assert_eq!(page["items"][1]["status"], "waiting");
    assert_eq!(page["items"][1]["state"], "counting");
    assert_eq!(page["next_cursor"], Value::Null);
    let found = floe_json(&url, &["workflows", "list", "--key-contains", "ALPHA"]);
    assert_eq!(found["items"].as_array().expect("items").len(), 1);
    assert_eq!(found["items"][0]["id"], alpha.to_string());
    let first = floe_json(&url, &["workflows", "list", "--limit", "1"]);
    assert_eq!(first["items"][0]["id"], beta.to_string());
    assert_eq!(first["next_cursor"], beta.to_string());
    let second = floe_json(
        &url,
        &[
            "workflows",
            "list",
            "--limit",
            "1",
            "--cursor",
            &beta.to_string(),
        ],
    );
    assert_eq!(second["items"][0]["id"], alpha.to_string());
    assert_eq!(second["next_cursor"], Value::Null);
    let none = floe_json(&url, &["workflows", "list", "--status", "completed"]);
    assert_eq!(none["items"], json!([]));

    // list, as a table: a header and one aligned row per workflow.
    let run = floe(&url, &["workflows", "list", "--kind", "test.counter"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("ID "), "{}", run.stdout);
    let status_at = lines[0].find("STATUS").expect("STATUS column");
    for line in &lines[1..] {
        assert_eq!(&line[status_at..status_at + 7], "waiting", "{}", run.stdout);
        assert!(line.contains("test.counter") && line.contains("counting"));
    }
    assert!(lines[2].starts_with(&alpha.to_string()), "{}", run.stdout);
    let run = floe(&url, &["workflows", "list", "--state", "nowhere"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "no workflows match\n"));

    // show: the whole row.
    let shown = floe_json(&url, &["workflows", "show", &alpha.to_string()]);
    assert_eq!(shown["id"], alpha.to_string());
    assert_eq!(shown["context"], json!([7]));
    assert_eq!(shown["status"], "waiting");
    assert_eq!(shown["applied_seq"], 2);
    assert_eq!(shown["children"], json!([]));
    let run = floe(&url, &["workflows", "show", &alpha.to_string()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("key ") && l.ends_with("  alpha-1")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("2 events, 2 applied, 0 pending"),
        "{}",
        run.stdout
    );

    // history: the start and the signal, with what they did.
    let history = floe_json(&url, &["workflows", "history", &alpha.to_string()]);
    let items = history["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{history}");
    assert_eq!(items[0]["event"], "start");
    assert_eq!(items[1]["event"], "signal");
    assert_eq!(items[1]["name"], "add");
    assert_eq!(items[1]["payload"], json!({"tag": 7}));
    assert_eq!(items[1]["state_after"], "counting");
    let after = floe_json(
        &url,
        &["workflows", "history", &alpha.to_string(), "--after", "1"],
    );
    assert_eq!(after["items"].as_array().expect("items").len(), 1);
    let run = floe(&url, &["workflows", "history", &alpha.to_string()]);
    assert!(
        run.stdout
            .lines()
            .nth(2)
            .is_some_and(|l| l.contains("signal") && l.contains("add")),
        "{}",
        run.stdout
    );

    // Unknown ids: exit 1, one line on stderr.
    let nobody = Uuid::now_v7().to_string();
    assert_error(
        &floe(&url, &["workflows", "show", &nobody]),
        1,
        &format!("no workflow {nobody}"),
    );
    assert_error(
        &floe(&url, &["workflows", "history", &nobody]),
        1,
        "no workflow",
    );
    assert_error(&floe(&url, &["signal", &nobody, "add"]), 1, "no workflow");
    assert_error(
        &floe(&url, &["cancel", &nobody, "--reason", "x"]),
        1,
        "no workflow",
    );

    // cancel: delivered, applied, recorded; a finished workflow refuses more.
    assert_error(
        &floe(&url, &["cancel", &beta.to_string(), "--reason", "  "]),
        2,
        "--reason",
    );
    let cancelled = floe_json(
        &url,
        &["cancel", &beta.to_string(), "--reason", "operator test"],
    );
    assert_eq!(cancelled["delivered"], true);
    settled(&pool, beta, Some("cancelled"), &worker).await;
    assert_eq!(
        row(&pool, beta).await.error.as_deref(),
        Some("operator test")
    );
    let before = inbox_len(&pool, beta).await;
    assert_error(
        &floe(
            &url,
            &[
                "signal",
                &beta.to_string(),
                "add",
                "--payload",
                r#"{"tag": 1}"#,
            ],
        ),
        2,
        "is cancelled",
    );
    assert_error(
        &floe(&url, &["cancel", &beta.to_string(), "--reason", "again"]),
        2,
        "is cancelled",
    );
    assert_eq!(inbox_len(&pool, beta).await, before, "nothing written");
    worker.stop();
}

#[tokio::test]
async fn signals_are_checked_against_the_definition_and_replay_agrees() {
    let (url, pool) = database().await;
    let worker = Testbed::start_production(&url, &["--poll-ms", "200"]);
    chat::store::upsert_user(&pool, "ola", "Ola")
        .await
        .expect("user");
    let input = json!({ "user_id": "ola", "display_name": "Ola" });
    let mut tx = pool.begin().await.expect("begin");
    let id = chat::store::start_workflow_for(&mut tx, "ola", "onboarding", &input, 1)
        .await
        .expect("start")
        .id;
    tx.commit().await.expect("commit");
    // Waiting, with nothing in flight: nothing else writes meanwhile.
    settled(&pool, id, Some("waiting"), &worker).await;
    let sid = id.to_string();

    // Refused before anything is written: a signal the definition does not
    // take, a payload it cannot decode, text that is not JSON.
    let (inbox, jobs) = (inbox_len(&pool, id).await, common::jobs_left(&pool).await);
    assert_error(
        &floe(&url, &["signal", &sid, "no_such_signal"]),
        2,
        "onboarding does not take signal",
    );
    assert_error(
        &floe(
            &url,
            &[
                "signal",
                &sid,
                "user_message",
                "--payload",
                r#"{"text": 1}"#,
            ],
        ),
        2,
        "does not take signal \"user_message\"",
    );
    assert_error(
        &floe(
            &url,
            &["signal", &sid, "user_message", "--payload", "{oops"],
        ),
        2,
        "is not JSON",
    );
    assert_error(
        &floe(
            &url,
            &[
                "signal",
                &sid,
                "user_connected",
                "--idempotency-key",
                "cancel",
            ],
        ),
        2,
        "reserved",
    );
    assert_eq!(inbox_len(&pool, id).await, inbox, "nothing in the inbox");
    assert_eq!(common::jobs_left(&pool).await, jobs, "no job enqueued");

    // Accepted: from a file and from stdin; once per idempotency key.
    let file = std::env::temp_dir().join(format!("floe-cli-{}.json", Uuid::new_v4().simple()));
    std::fs::write(&file, r#"{"content": "Hi, I'm Ola"}"#).expect("payload file");
    let at_file = format!("@{}", file.display());
    let run = floe(
        &url,
        &[
            "signal",
            &sid,
            "user_message",
            "--payload",
            &at_file,
            "--json",
        ],
    );
    std::fs::remove_file(&file).expect("remove");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["checked"], true);
    assert!(run.stderr.is_empty(), "{run:?}");
    let run = floe_with_input(
        &url,
        &[
            "signal",
            &sid,
            "user_connected",
            "--payload",
            "-",
            "--idempotency-key",
            "tab-1",
        ],
        "null",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("delivered to"), "{run:?}");
    let again = floe_json(
        &url,
        &[
            "signal",
            &sid,
            "user_connected",
            "--idempotency-key",
            "tab-1",
        ],
    );
    assert_eq!(again["delivered"], false);
    assert_eq!(inbox_len(&pool, id).await, inbox + 2);
    settled(&pool, id, Some("waiting"), &worker).await;
    let history = floe_json(&url, &["workflows", "history", &sid]);
    let signals: Vec<(&str, Value)> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|h| h["event"] == "signal")
        .map(|h| (h["name"].as_str().expect("name"), h["note"].clone()))
        .collect();
    assert_eq!(
        signals,
        [
            ("user_message", Value::Null),
            ("user_connected", Value::Null)
        ],
        "{history}"
    );

    // The replay check over every open workflow, and one by id.
    let replayed = floe_json(&url, &["replay"]);
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    assert_eq!(replayed["diverged"], 0, "{replayed}");
    let run = floe(&url, &["replay", "--id", &sid]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!("{sid}  ")) && run.stdout.contains("ok"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .ends_with("1 workflows replayed, none diverges\n"),
        "{run:?}"
    );
    let run = floe(&url, &["replay", "--kind", "onboarding", "--json"]);
    assert_eq!(run.json()["replayed"], 1, "{run:?}");
    assert_error(
        &floe(&url, &["replay", "--id", &Uuid::now_v7().to_string()]),
        1,
        "no workflow",
    );
    worker.stop();
}

#[tokio::test]
async fn dead_jobs_are_listed_and_retried() {
    let (url, pool) = database().await;
    let worker = Testbed::start(&url, &["--poll-ms", "200"]);
    let dead: i64 = sqlx::query_scalar(
        r#"SELECT floe.enqueue('test.fail', '{"times": 1, "permanent": true}')"#,
    )
    .fetch_one(&pool)
    .await
    .expect("enqueue");
    let died = eventually(Duration::from_secs(30), || async {
        scalar(&pool, "SELECT count(*) FROM floe.jobs WHERE state = 'dead'").await == 1
    })
    .await;
    assert!(died, "{}", worker.log());
    // One more, waiting for an hour: not retryable.
    let later: i64 = sqlx::query_scalar(
        "SELECT floe.enqueue('floe.noop', '{}', run_at => now() + interval '1 hour')",
    )
    .fetch_one(&pool)
    .await
    .expect("enqueue");

    let listed = floe_json(&url, &["jobs", "list", "--state", "dead"]);
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["id"], dead);
    assert_eq!(items[0]["kind"], "test.fail");
    assert_eq!(items[0]["state"], "dead");
    assert_eq!(items[0]["attempts"], 1);
    assert_eq!(items[0]["last_error"], "planned failure 1 of 1");
    let all = floe_json(&url, &["jobs", "list"]);
    assert_eq!(all["items"].as_array().expect("items").len(), 2);
    let noop = floe_json(&url, &["jobs", "list", "--kind", "floe.noop"]);
    assert_eq!(noop["items"][0]["state"], "scheduled");
    let run = floe(&url, &["jobs", "list", "--state", "dead"]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].starts_with("ID "));
    assert!(
        lines[1].starts_with(&format!("{dead} "))
            && lines[1].contains("dead")
            && lines[1].contains("1/20")
            && lines[1].contains("planned failure 1 of 1"),
        "{}",
        run.stdout
    );

    // Retried: it runs again, with a fresh attempt budget (and, planned to
    // fail on its first attempt, dies again).
    let run = floe(&url, &["jobs", "retry", &dead.to_string()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("job {dead} (test.fail) retried")),
        "{run:?}"
    );
    let ran_again = eventually(Duration::from_secs(30), || async {
        let runs: i64 =
            sqlx::query_scalar("SELECT count(*) FROM public.testbed_runs WHERE job_id = $1")
                .bind(dead)
                .fetch_one(&pool)
                .await
                .expect("runs");
        runs == 2 && scalar(&pool, "SELECT count(*) FROM floe.jobs WHERE state = 'dead'").await == 1
    })
    .await;
    assert!(ran_again, "{}", worker.log());
    let listed = floe_json(&url, &["jobs", "list", "--state", "dead"]);
    assert_eq!(listed["items"][0]["attempts"], 1, "{listed}");

    assert_error(
        &floe(&url, &["jobs", "retry", "987654321"]),
        1,
        "no job 987654321",
    );
    assert_error(
        &floe(&url, &["jobs", "retry", &later.to_string()]),
        2,
        "only a dead or retrying job can be retried",
    );
    worker.stop();
}

async fn registered(pool: &PgPool) -> Vec<(String, i32)> {
    sqlx::query_as("SELECT name, pid FROM floe.workers ORDER BY started_at")
        .fetch_all(pool)
        .await
        .expect("workers")
}

/// The doctor's checks by name: (status, reason).
fn checks(report: &Value) -> std::collections::BTreeMap<String, (String, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_owned(),
                (
                    c["status"].as_str().expect("status").to_owned(),
                    c["reason"].as_str().expect("reason").to_owned(),
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn doctor_sees_live_workers_and_stuck_work() {
    let (url, pool) = database().await;
    let mut worker = Testbed::start(&url, &["--poll-ms", "200"]);
    let pid = worker.pid();
    let up = eventually(Duration::from_secs(30), || async {
        registered(&pool).await == [("floe-testbed".to_owned(), pid)]
    })
    .await;
    assert!(
        up,
        "the worker registers: {:?}\n{}",
        registered(&pool).await,
        worker.log()
    );
    let id = start(&pool, "test.counter", "k", json!({})).await;
    settled(&pool, id, Some("waiting"), &worker).await;

    // All well: exit 0, every check ok.
    let run = floe(&url, &["doctor", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["status"], "ok", "{report}");
    let all = checks(&report);
    assert_eq!(
        all.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "backlog",
            "database",
            "dead jobs",
            "deadlines",
            "failures",
            "leases",
            "migrations",
            "vacuum",
            "workers"
        ]
    );
    assert!(all.values().all(|(s, _)| s == "ok"), "{report}");
    assert!(
        all["workers"]
            .1
            .contains(&format!("floe-testbed pid {pid}")),
        "{report}"
    );
    assert!(all["database"].1.contains("PostgreSQL"), "{report}");
    let run = floe(&url, &["doctor"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("ok    database")),
        "{run:?}"
    );
    assert!(run.stdout.ends_with("all 9 checks ok\n"), "{run:?}");

    // A clean shutdown deregisters: no worker, a failure.
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        worker.child.wait().expect("wait").success(),
        "{}",
        worker.log()
    );
    assert!(!worker.running());
    assert_eq!(registered(&pool).await, []);
    let run = floe(&url, &["doctor"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("fail  workers     no worker alive"),
        "{}",
        run.stdout
    );

    // A crashed worker's row, a lease nobody rescues, a deadline nobody fires.
    sqlx::raw_sql(
        "INSERT INTO floe.workers (id, name, host, pid, version, started_at, heartbeat_at)
              VALUES ('ghost:42:cafe', 'floe-worker', 'ghost', 42, '0.1.0', now() - interval '2 hours', now() - interval '5 minutes');
         INSERT INTO floe.jobs (kind, state, attempts, lease_owner, lease_token, lease_expires_at)
              VALUES ('floe.noop', 'running', 1, 'ghost:42:cafe', 1, now() - interval '1 hour');
         UPDATE floe.workflows SET deadline = now() - interval '10 minutes', deadline_reason = 'planted';",
    )
    .execute(&pool)
    .await
    .expect("plant");
    let run = floe(&url, &["doctor", "--json"]);
    assert_eq!(run.code, 2, "{run:?}");
    let report = run.json();
    assert_eq!(report["status"], "fail");
    let all = checks(&report);
    assert_eq!(all["workers"].0, "fail", "{report}");
    assert!(
        all["workers"]
            .1
            .contains("last heard from floe-worker pid 42 on ghost 5m"),
        "{report}"
    );
    assert_eq!(all["leases"].0, "fail", "{report}");
    assert!(all["leases"].1.contains("owner ghost:42:cafe"), "{report}");
    assert_eq!(all["deadlines"].0, "fail", "{report}");
    assert!(
        all["deadlines"]
            .1
            .starts_with("1 open workflow's deadline overdue"),
        "{report}"
    );
    assert_eq!(all["migrations"].0, "ok", "{report}");

    // Only warnings: exit 1.
    sqlx::raw_sql(
        "DELETE FROM floe.jobs; UPDATE floe.workflows SET deadline = NULL;
         UPDATE floe.workers SET heartbeat_at = now();
         INSERT INTO floe.jobs (kind, state, attempts, last_error) VALUES ('floe.noop', 'dead', 20, 'gave up');",
    )
    .execute(&pool)
    .await
    .expect("plant");
    let run = floe(&url, &["doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("warn  dead jobs   1 dead job: retry"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("0 failed, 1 warning, 8 ok\n"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn doctor_warns_of_a_transaction_that_holds_back_vacuum() {
    use sqlx::{Connection, PgConnection};

    let (url, pool) = database().await;
    let vacuum = |run: Run| checks(&run.json())["vacuum"].clone();
    let threshold = ["doctor", "--json", "--stuck-after", "1"];
    assert_eq!(vacuum(floe(&url, &threshold)).0, "ok");

    // An application that began a transaction, wrote, and went idle.
    let mut idle = PgConnection::connect(expose(&url)).await.expect("connect");
    sqlx::raw_sql("SET application_name = 'forgetful'; BEGIN; SELECT txid_current();")
        .execute(&mut idle)
        .await
        .expect("begin");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut idle)
        .await
        .expect("pid");
    // A session that only reads between statements holds nothing back.
    let mut reader = PgConnection::connect(expose(&url)).await.expect("connect");
    sqlx::raw_sql("BEGIN; SELECT 1;")
        .execute(&mut reader)
        .await
        .expect("begin");
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // (No worker runs here: the doctor's exit code is the workers' 2.)
    let (status, reason) = vacuum(floe(&url, &threshold));
    assert_eq!(status, "warn");
    assert!(
        reason.starts_with("1 transaction open for more than 1s")
            && reason.contains(&format!("pid {pid}, forgetful as "))
            && reason.contains("idle in transaction")
            && reason.contains("idle_in_transaction_session_timeout"),
        "{reason}"
    );

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut idle)
        .await
        .expect("end");
    assert_eq!(vacuum(floe(&url, &threshold)).0, "ok");
    drop(pool);
}

#[tokio::test]
async fn migrate_applies_and_reports() {
    let url = fresh_database().await;
    let n = MIGRATOR.iter().count();
    let status = floe_json(&url, &["migrate", "--status"]);
    assert_eq!(status["pending"], n, "{status}");
    assert_eq!(status["applied"], 0);
    let run = floe(&url, &["doctor", "--json"]);
    assert_eq!(run.code, 2, "{run:?}");
    let report = run.json();
    let migrations = &checks(&report)["migrations"];
    assert_eq!(migrations.0, "fail");
    assert!(
        migrations.1.contains(&format!("{n} of {n} pending")),
        "{report}"
    );

    let run = floe(&url, &["migrate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with(&format!("applied {n} migrations:\n")),
        "{run:?}"
    );
    let status = floe_json(&url, &["migrate", "--status"]);
    assert_eq!(
        (status["applied"].clone(), status["pending"].clone()),
        (json!(n), json!(0))
    );
    let versions: Vec<i64> = status["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .map(|m| m["version"].as_i64().expect("version"))
        .collect();
    assert_eq!(
        versions,
        MIGRATOR.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    let run = floe(&url, &["migrate", "--status"]);
    assert!(
        run.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(" applied ")),
        "{run:?}"
    );
    let run = floe(&url, &["migrate"]);
    assert_eq!(
        run.stdout,
        format!("nothing to apply: all {n} migrations are applied\n")
    );
    let applied = floe_json(&url, &["migrate"]);
    assert_eq!(applied["applied"], json!([]));
}

#[tokio::test]
async fn usage_errors_and_an_unreachable_database_have_their_exit_codes() {
    let url = fresh_database().await;
    let help = floe(&url, &["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes:"), "{help:?}");
    assert_eq!(floe(&url, &["workflows", "list", "--limit", "0"]).code, 2);
    assert_eq!(floe(&url, &["workflows", "show", "not-a-uuid"]).code, 2);
    assert_eq!(floe(&url, &["frobnicate"]).code, 2);

    let nowhere = SecretString::from("postgres://floe:x@127.0.0.1:1/floe".to_owned());
    let run = floe(
        &nowhere,
        &["workflows", "list", "--database-connect-timeout", "0"],
    );
    assert_error(&run, 3, "cannot reach the database");
    let run = floe(&nowhere, &["doctor", "--database-connect-timeout", "0"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout
            .starts_with("fail  database  cannot reach the database"),
        "{run:?}"
    );
}

#[tokio::test]
async fn upgrade_dry_runs_then_upgrades_and_reports_what_it_cannot() {
    let (url, pool) = database().await;
    let worker = Testbed::start_production(&url, &["--poll-ms", "200"]);
    let mut ids = Vec::new();
    for user in ["ada", "bo"] {
        chat::store::upsert_user(&pool, user, user)
            .await
            .expect("user");
        let input = json!({ "user_id": user, "display_name": user });
        let mut tx = pool.begin().await.expect("begin");
        let id = chat::store::start_workflow_for(&mut tx, user, "onboarding", &input, 1)
            .await
            .expect("start")
            .id;
        tx.commit().await.expect("commit");
        settled(&pool, id, Some("waiting"), &worker).await;
        ids.push(id);
    }
    worker.stop();
    // As if stored by an older build (0) and by a newer one (7).
    for (id, version) in [(ids[0], 0), (ids[1], 7)] {
        sqlx::query("UPDATE floe.workflows SET definition_version = $2 WHERE id = $1")
            .bind(id)
            .bind(version)
            .execute(&pool)
            .await
            .expect("version");
    }

    let dry = floe(&url, &["upgrade", "--dry-run", "--json"]);
    assert_eq!(dry.code, 1, "one cannot be upgraded: {dry:?}");
    let report = dry.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["workflows"], 2);
    let outcome = |report: &Value, id: Uuid| {
        report["upgrades"]
            .as_array()
            .expect("upgrades")
            .iter()
            .find(|u| u["workflow_id"] == id.to_string())
            .cloned()
            .expect("reported")
    };
    assert_eq!(outcome(&report, ids[0])["outcome"], "would upgrade");
    let newer = outcome(&report, ids[1]);
    assert!(
        newer["error"]
            .as_str()
            .expect("error")
            .contains("newer than this build's"),
        "{newer}"
    );
    assert_eq!(
        row(&pool, ids[0]).await.definition_version,
        0,
        "a dry run writes nothing"
    );

    let run = floe(&url, &["upgrade", "--kind", "onboarding"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("upgraded"), "{run:?}");
    assert!(
        run.stdout.contains("1 of 2 workflows cannot be upgraded"),
        "{run:?}"
    );
    assert_eq!(row(&pool, ids[0]).await.definition_version, 1);
    assert_eq!(row(&pool, ids[1]).await.definition_version, 7, "left alone");
}
