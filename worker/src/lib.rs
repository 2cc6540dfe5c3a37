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
//! | [`runtime`]     | shared state; the batched completer and the lease heartbeat        |
//! | [`maintenance`] | the scheduler (due jobs, workflow deadlines) and the lease rescuer |
//! | [`testbed`]     | workflow definitions for floe's own tests and benchmarks           |
//! | [`workflows`]   | workflow definitions and activities: the advance and activity jobs |
//! | [`agents`]      | the LLM activities: `agent.turn`, `memory.get`, `memory.update`    |
//! | [`onboarding`]  | the onboarding workflow and `chat.reply`, `inbox.add`              |
//!
//! The same [`startup::Worker`] runs inside the API process (`floe-api
//! --with-worker`) and on its own (`floe-worker`).

pub mod agents;
pub mod backend;
pub mod handlers;
pub mod maintenance;
pub mod onboarding;
pub mod runtime;
pub mod settings;
pub mod startup;
pub mod testbed;
pub mod workflows;
