//! The job queue: floe's own tables, claimed with `FOR UPDATE SKIP LOCKED`.
//!
//! Everything the engine does in the background — advancing a workflow,
//! running an activity, firing a timer — is a job. This module is the queue's
//! data and SQL; the worker crate runs jobs from it with apalis.
//!
//! A job's states are documented on [`JobState`] and in the migration that
//! creates `floe.jobs`. In short: enqueue → `available` (or `scheduled` for
//! later) → claimed as `running` under a lease → deleted on success, or
//! `retrying` after a failure, or `dead` when out of attempts.
//!
//! | module       | responsibility                                                    |
//! |--------------|-------------------------------------------------------------------|
//! | [`store`]    | every SQL statement on `floe.jobs`                                |
//! | [`retry`]    | backoff: exponential with jitter, or the delay a handler asks for |
//! | [`listener`] | the process's one LISTEN connection, reconnecting, fanned out     |

pub mod listener;
pub mod retry;
pub mod store;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The queue jobs go to unless told otherwise.
pub const DEFAULT_QUEUE: &str = "default";
/// NOTIFY channel: jobs became claimable now; the payload is the queue name.
pub const CHANNEL_AVAILABLE: &str = "floe_jobs_available";
/// NOTIFY channel: a job was scheduled; the payload is its run_at in epoch ms.
pub const CHANNEL_SCHEDULED: &str = "floe_jobs_scheduled";
/// Attempts a job gets unless told otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 20;

/// Where a job is in its life. Mirrored by the `floe.job_state` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Enqueued with a future `run_at`. The scheduler moves it to
    /// [`Available`](Self::Available) when `run_at` comes.
    Scheduled,
    /// Claimable. A worker's claim moves it to [`Running`](Self::Running).
    Available,
    /// Leased by `lease_owner` until `lease_expires_at`. Leaves by completion
    /// (the row is deleted), by failure (to `Retrying` or `Dead`), or by lease
    /// expiry (the rescuer moves it to `Available`, or `Dead` when out of
    /// attempts).
    Running,
    /// An attempt failed; waits for its backoff. The scheduler makes it
    /// `Available` at `run_at`.
    Retrying,
    /// Out of attempts, or failed with a non-retryable error. Kept for
    /// operators, who may retry it (back to `Available`) or delete it.
    Dead,
}

impl JobState {
    /// The state's name in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Available => "available",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "scheduled" => Self::Scheduled,
            "available" => Self::Available,
            "running" => Self::Running,
            "retrying" => Self::Retrying,
            "dead" => Self::Dead,
            other => return Err(format!("unknown job state {other:?}")),
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Queue name; workers claim from the queues they serve.
    pub queue: String,
    /// What to run: the name a handler is registered under.
    pub kind: String,
    /// The handler's input.
    pub payload: serde_json::Value,
    /// Lower runs first among jobs that are due.
    pub priority: i16,
    /// Not before this time; now when `None`.
    pub run_at: Option<OffsetDateTime>,
    /// Attempts before the job is dead.
    pub max_attempts: i32,
    /// At most one job of this queue and kind with this key waits for its
    /// first run; enqueuing another is a no-op. Released once it is claimed.
    pub unique_key: Option<String>,
    /// The trace it belongs to; `None`: the enqueuing transaction's
    /// `floe.trace_id` setting, if any (see [`crate::trace`]).
    pub trace_id: Option<String>,
}

impl NewJob {
    /// A job of `kind` with `payload`, on the default queue, due now.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            queue: DEFAULT_QUEUE.to_owned(),
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            unique_key: None,
            trace_id: None,
        }
    }

    /// On `queue` instead of the default one.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// With `priority` (lower first).
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Not before `at`.
    pub fn run_at(mut self, at: OffsetDateTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// With at most `n` attempts (at least 1).
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Enqueued once while it waits: see [`NewJob::unique_key`].
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Part of trace `trace_id` (when `Some`).
    pub fn trace_id(mut self, trace_id: Option<String>) -> Self {
        self.trace_id = trace_id;
        self
    }
}

/// What [`store::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job with this id.
    New(i64),
    /// A job with the same unique key was already waiting (its id, when it
    /// could be read in the same statement).
    Duplicate(Option<i64>),
}

impl Enqueued {
    /// The job's id, new or existing.
    pub fn id(self) -> Option<i64> {
        match self {
            Self::New(id) => Some(id),
            Self::Duplicate(id) => id,
        }
    }
}

/// The right to finish one claim of a job: its id and the claim's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub id: i64,
    /// The claim's fencing token; a later claim of the same job has another.
    pub token: i64,
}

/// A job a worker has claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job's id.
    pub id: i64,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: serde_json::Value,
    /// Its priority.
    pub priority: i16,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Attempts it has in all.
    pub max_attempts: i32,
    /// This claim's fencing token.
    pub lease_token: i64,
    /// When it was due.
    pub run_at: OffsetDateTime,
    /// When it was enqueued.
    pub created_at: OffsetDateTime,
    /// The trace it belongs to: its worker's job span carries it, and what
    /// its handler delivers or starts inherits it.
    pub trace_id: Option<String>,
}

/// A job's place in the claim order: most urgent priority (lowest number)
/// first, then oldest `run_at`, then lowest id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimKey {
    /// The job's priority.
    pub priority: i16,
    /// When it was due.
    pub run_at: OffsetDateTime,
    /// Its id.
    pub id: i64,
}

impl ClaimedJob {
    /// Its place in the claim order.
    pub fn key(&self) -> ClaimKey {
        ClaimKey {
            priority: self.priority,
            run_at: self.run_at,
            id: self.id,
        }
    }

    /// The lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            token: self.lease_token,
        }
    }

    /// A key unique to this attempt, to pass to side-effecting services that
    /// deduplicate (`job-<id>-<attempt>`).
    pub fn idempotency_key(&self) -> String {
        format!("job-{}-{}", self.id, self.attempt)
    }
}

/// A job as an operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// Id.
    pub id: i64,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// State.
    pub state: JobState,
    /// Attempts made.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it is (or was) due.
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Who holds it, when running.
    pub lease_owner: Option<String>,
}
