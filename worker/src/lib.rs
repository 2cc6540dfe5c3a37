//! floe's worker process: it leases jobs from PostgreSQL and runs them.
//!
//! # Layout
//!
//! | module       | responsibility                                                  |
//! |--------------|-----------------------------------------------------------------|
//! | [`settings`] | the worker's command line and environment                       |
//! | [`startup`]  | building and running a worker over a pool, until shutdown       |
//!
//! The same [`startup::Worker`] runs inside the API process (`floe-api
//! --with-worker`) and on its own (`floe-worker`).

pub mod settings;
pub mod startup;
