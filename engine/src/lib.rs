//! floe's engine: what the API and the workers share.
//!
//! # Layout
//!
//! | module       | responsibility                                                        |
//! |--------------|-----------------------------------------------------------------------|
//! | [`settings`] | typed settings (flags, `FLOE__*` environment, defaults) per area      |
//! | [`telemetry`]| logging: `tracing`, human-readable or JSON                            |
//! | [`db`]       | connecting, creating the database, migrations, readiness              |
//! | [`queue`]    | the job queue: `floe.jobs`, its SQL, backoff, LISTEN wake-ups         |
//! | [`retention`]| removing finished workflows and dead jobs after the retention period  |
//! | [`workflow`] | durable workflows: definitions, registry, store, advance, replay      |
//! | [`chat`]     | the onboarding chat's data: users, conversations, inbox               |
//! | [`inspect`]  | what the operator's web inspector reads: counts, activities, LLM      |
//! |              | calls, jobs, the dashboard; and retrying a job                        |
//! | [`workers`]  | the worker registry (`floe.workers`): registration and heartbeats     |
//! | [`doctor`]   | what `floe doctor` reads: server, migrations, stuck work, backlog     |
//! | [`health`]   | the `/healthz` and `/readyz` probes every process serves              |
//! | [`metrics`]  | every `floe_*` metric, the Prometheus recorder and `GET /metrics`     |
//! | [`trace`]    | the trace id that follows a request through its jobs and transitions  |
//! | [`launch`]   | the start-up sequence every binary shares (the embedded PostgreSQL,  |
//! |              | crate `floe-pg`, when no `DATABASE_URL` is given)                     |
//! | [`shutdown`] | the SIGINT/SIGTERM signal long-running loops stop on                  |
//! | `testing`    | helpers for floe's own tests (feature `testing`)                      |

pub mod chat;
pub mod db;
pub mod doctor;
pub mod health;
pub mod inspect;
pub mod launch;
pub mod metrics;
pub mod queue;
pub mod retention;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
pub mod workers;
pub mod workflow;
