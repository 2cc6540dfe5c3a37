//! Trace context: one id that follows a piece of work from the HTTP request
//! that caused it, through the inbox event it delivered and the advance job
//! that applies it, to the activities that transition started, their jobs,
//! and the events carrying their results back.
//!
//! There is no OpenTelemetry SDK here: the id is a W3C trace id (32 hex
//! digits, taken from the request's `traceparent` header when it has one) or
//! the request's `x-request-id`, and it travels as data:
//!
//! * the API runs each request inside [`scope`]; the workflow store writes
//!   [`current`] into the transaction's `floe.trace_id` setting, which is the
//!   default of the `trace_id` columns of `floe.jobs`, `floe.inbox` and
//!   `floe.activities` (migration `trace_context`);
//! * a transition gives each activity it starts the trace id of the event it
//!   applied; the activity's job and its result event carry it on;
//! * a worker opens each job's span with the job's `trace_id` field and runs
//!   the handler inside [`scope`], so whatever the handler delivers or starts
//!   carries it too.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static CURRENT: Option<TraceId>;
}

/// The transaction setting the `trace_id` columns default to.
pub const SETTING: &str = "floe.trace_id";

/// Longest trace id accepted from outside (a request id, a setting).
pub const MAX_LEN: usize = 64;

/// A trace id: 32 lowercase hex digits when floe makes it, or a caller's
/// request id (1 to 64 of `A-Z a-z 0-9 - _ . :`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceId(Arc<str>);

impl TraceId {
    /// A new random W3C trace id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// `id` as a trace id, if it is a plausible one (see [`TraceId`]).
    pub fn parse(id: &str) -> Option<Self> {
        let ok = !id.is_empty()
            && id.len() <= MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        ok.then(|| Self(id.into()))
    }

    /// The trace id of a W3C `traceparent` header
    /// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), if valid.
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        let valid = hex(version, 2)
            && version != "ff"
            && hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && hex(parent, 16)
            && hex(flags, 2);
        valid.then(|| Self(trace.to_ascii_lowercase().into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.0)
    }
}

/// The trace id of the work this task is doing, if any.
pub fn current() -> Option<TraceId> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

/// Runs `work` with `trace` as the [`current`] trace id (`None`: none, even
/// inside an outer scope).
pub async fn scope<F: Future>(trace: Option<TraceId>, work: F) -> F::Output {
    CURRENT.scope(trace, work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_outside_are_checked() {
        assert!(TraceId::parse("req-42.a_b:c").is_some());
        assert!(TraceId::parse("").is_none());
        assert!(TraceId::parse("has space").is_none());
        assert!(TraceId::parse("quote'").is_none());
        assert!(TraceId::parse(&"x".repeat(65)).is_none());
        let parent = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceId::from_traceparent(parent).map(|t| t.to_string()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned())
        );
        let zeros = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert!(TraceId::from_traceparent(zeros).is_none());
        assert!(TraceId::from_traceparent("00-abc-def-01").is_none());
        assert_eq!(TraceId::generate().as_str().len(), 32);
    }

    #[tokio::test]
    async fn the_scope_sets_and_clears_the_current_id() {
        assert_eq!(current(), None);
        let id = TraceId::generate();
        let seen = scope(Some(id.clone()), async {
            let inner = scope(None, async { current() }).await;
            (current(), inner)
        })
        .await;
        assert_eq!(seen, (Some(id), None));
        assert_eq!(current(), None);
    }
}
