//! floe's worker process: it leases jobs from PostgreSQL and runs them.
//!
//! # Layout
//!
//! | module          | responsibility                                                     |
//! |-----------------|--------------------------------------------------------------------|
//! | [`settings`]    | the worker's command line and environment                          |
//! | [`startup`]     | building and running a worker over a pool, until shutdown          |
//! | [`handlers`]    | what it runs: handlers by job kind, their errors, timeouts, backoff |
//! | [`backend`]     | floe's queue as an apalis backend: batched claims, acknowledgement |
//! | [`cursor`]      | where a claim starts: the head of the queue, or after the last job |
//! | [`runtime`]     | shared state; the batched completer and the lease heartbeat        |
//! | [`metrics`]     | job and activity metrics; the task refreshing the queue gauges     |
//! | [`maintenance`] | the scheduler (due jobs, workflow deadlines), the lease rescuer,   |
//! |                 | the presence heartbeat (the worker registry)                       |
//! | [`testbed`]     | workflow definitions for floe's own tests and benchmarks           |
//! | [`workflows`]   | workflow definitions and activities: the advance and activity jobs |
//! | [`agents`]      | the LLM activities: `agent.turn`, `memory.get`, `memory.update`    |
//! | [`onboarding`]  | the onboarding workflow and `chat.reply`, `inbox.add`              |
//! | [`agent_workflows`] | `code_review` and `research`: the Temporal-Lite spec's workflows |
//! | [`cli`]         | `floe`, the operator's command (`src/bin/floe.rs`)                 |
//!
//! The same [`startup::Worker`] runs inside the API process (`floe-api
//! --with-worker`) and on its own (`floe-worker`).

pub mod agent_workflows;
pub mod agents;
pub mod backend;
pub mod cli;
pub mod cursor;
pub mod handlers;
pub mod maintenance;
pub mod metrics;
pub mod onboarding;
pub mod retention;
pub mod runtime;
pub mod settings;
pub mod startup;
pub mod testbed;
pub mod workflows;
