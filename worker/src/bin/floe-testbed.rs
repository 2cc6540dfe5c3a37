//! `floe-testbed`: the real worker with job kinds that record what they do,
//! for floe's own process tests and benchmarks. Not for production.
//!
//! It also runs the test workflows of `floe_worker::testbed`, and with
//! `FLOE_TESTBED_ONBOARDING=1` the onboarding workflow and its activities too
//! (floe-chaos runs both kinds in one worker).
//!
//! Every job kind below appends a row to `public.testbed_runs` (created if missing):
//! job id, attempt, this process's id, and when it started and finished.
//!
//! | kind          | payload                                  | does                           |
//! |---------------|------------------------------------------|--------------------------------|
//! | `test.record` | `{"sleep_ms": n}` (optional)             | sleeps n ms, records, succeeds |
//! | `test.fail`   | `{"times": n, "retry_after_ms": m, "permanent": b}` | fails while attempt ≤ n (after m ms when given; at once dead when permanent), then succeeds |

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use floe_engine::queue::ClaimedJob;
use floe_engine::queue::retry::Backoff;
use floe_engine::{launch, telemetry};
use floe_worker::handlers::{Handler, JobError, payload};
use floe_worker::settings::{Cli, Command};
use floe_worker::startup::Worker;
use serde::Deserialize;
use sqlx::PgPool;
use time::OffsetDateTime;

#[derive(Deserialize, Default)]
struct Record {
    #[serde(default)]
    sleep_ms: u64,
}

#[derive(Deserialize, Default)]
struct Fail {
    #[serde(default)]
    times: i32,
    retry_after_ms: Option<u64>,
    #[serde(default)]
    permanent: bool,
}

async fn record(pool: &PgPool, job: &ClaimedJob, started: OffsetDateTime) -> Result<(), JobError> {
    sqlx::query(
        "INSERT INTO public.testbed_runs (job_id, attempt, kind, worker_pid, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, clock_timestamp())",
    )
    .bind(job.id)
    .bind(job.attempt)
    .bind(&job.kind)
    .bind(std::process::id() as i32)
    .bind(started)
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(JobError::retryable)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log);
    let migrate_only = cli.command == Some(Command::Migrate);
    launch::main(
        "floe-testbed",
        &cli.database,
        migrate_only,
        |pool, stop| async move {
            if let Some(Command::Replay { kind, id, json }) = &cli.command {
                let registry = floe_worker::testbed::workflows().definitions;
                return floe_worker::workflows::replay_command(
                    &pool,
                    &registry,
                    kind.as_deref(),
                    *id,
                    *json,
                )
                .await;
            }
            sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS public.testbed_runs (
                 job_id bigint NOT NULL, attempt int NOT NULL, kind text NOT NULL,
                 worker_pid int NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL)",
        )
        .execute(&pool)
        .await?;
            let (p1, p2) = (pool.clone(), pool.clone());
            // The test definitions, and the LLM activities (against the
            // model --llm-base-url names, or offline).
            let mut workflows = floe_worker::testbed::workflows();
            floe_worker::agents::Llm::from_settings(&cli.llm, pool.clone())?
                .register(&mut workflows);
            if std::env::var("FLOE_TESTBED_ONBOARDING").is_ok_and(|v| v == "1") {
                floe_worker::onboarding::register(&mut workflows, &pool);
            }
            let fast = Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(2),
            };
            Worker::build(&cli.worker, pool)
                .await?
                .register(
                    "test.record",
                    Handler::new(move |job| {
                        let pool = p1.clone();
                        async move {
                            let started = OffsetDateTime::now_utc();
                            let args: Record = payload(&job).unwrap_or_default();
                            tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
                            record(&pool, &job, started).await
                        }
                    }),
                )
                .register(
                    "test.fail",
                    Handler::new(move |job| {
                        let pool = p2.clone();
                        async move {
                            let started = OffsetDateTime::now_utc();
                            let args: Fail = payload(&job)?;
                            record(&pool, &job, started).await?;
                            if job.attempt > args.times {
                                return Ok(());
                            }
                            let error =
                                format!("planned failure {} of {}", job.attempt, args.times);
                            Err(match (args.permanent, args.retry_after_ms) {
                                (true, _) => JobError::permanent(error),
                                (false, Some(ms)) => {
                                    JobError::retry_after(error, Duration::from_millis(ms))
                                }
                                (false, None) => JobError::retryable(error),
                            })
                        }
                    })
                    .backoff(fast),
                )
                .workflows(workflows)
                .run(stop)
                .await
        },
    )
}
