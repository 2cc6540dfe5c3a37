//! What a worker can run: handlers registered by job kind.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use floe_engine::queue::ClaimedJob;
use floe_engine::queue::retry::{Backoff, Retry};
use serde::de::DeserializeOwned;

/// A handler's future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'static>>;

type HandlerFn = dyn Fn(ClaimedJob) -> HandlerFuture + Send + Sync;

/// Why an attempt failed, and whether to try again.
#[derive(Debug)]
pub struct JobError {
    /// What went wrong, recorded as the job's `last_error`.
    pub message: String,
    /// Whether and when to retry.
    pub retry: Retry,
}

impl JobError {
    /// A failure worth retrying with the kind's backoff.
    pub fn retryable(error: impl fmt::Display) -> Self {
        Self {
            message: error.to_string(),
            retry: Retry::Backoff,
        }
    }

    /// A failure to retry after exactly `delay` (a Retry-After, say).
    pub fn retry_after(error: impl fmt::Display, delay: Duration) -> Self {
        Self {
            message: error.to_string(),
            retry: Retry::After(delay),
        }
    }

    /// A failure that no retry can fix: the job dies at once.
    pub fn permanent(error: impl fmt::Display) -> Self {
        Self {
            message: error.to_string(),
            retry: Retry::Never,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

/// Decodes a job's payload; an undecodable payload is a permanent failure
/// (retrying cannot fix it), recorded on the job rather than panicking.
pub fn payload<T: DeserializeOwned>(job: &ClaimedJob) -> Result<T, JobError> {
    serde_json::from_value(job.payload.clone()).map_err(|e| {
        JobError::permanent(format!(
            "payload of {} job {} does not decode: {e}",
            job.kind, job.id
        ))
    })
}

/// How one kind of job runs.
#[derive(Clone)]
pub struct Handler {
    run: Arc<HandlerFn>,
    /// Longest an attempt may take; a slower one fails (and is retried).
    pub timeout: Duration,
    /// Delays between attempts.
    pub backoff: Backoff,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// A handler running `f`, with a 5-minute timeout and the default backoff.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(ClaimedJob) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        Self {
            run: Arc::new(move |job| Box::pin(f(job))),
            timeout: Duration::from_secs(300),
            backoff: Backoff::default(),
        }
    }

    /// With `timeout` per attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With `backoff` between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Runs one attempt, bounded by the timeout.
    pub async fn call(&self, job: ClaimedJob) -> Result<(), JobError> {
        match tokio::time::timeout(self.timeout, (self.run)(job)).await {
            Ok(result) => result,
            Err(_) => Err(JobError::retryable(format!(
                "timed out after {:?}",
                self.timeout
            ))),
        }
    }
}

/// Handlers by job kind. A worker claims only the kinds it has handlers for,
/// so a worker of an older build never takes (and fails) a newer kind.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Handler>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `kind`, replacing any earlier one.
    pub fn register(&mut self, kind: impl Into<String>, handler: Handler) -> &mut Self {
        self.handlers.insert(kind.into(), handler);
        self
    }

    /// The handler for `kind`.
    pub fn get(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
    }

    /// The kinds registered.
    pub fn kinds(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}

/// The kind every worker runs: does nothing (benchmarks and probes).
pub const NOOP: &str = "floe.noop";

/// The built-in handlers every worker has.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry.register(NOOP, Handler::new(|_job| async { Ok(()) }));
    registry
}
