//! floe's queue as an apalis backend.
//!
//! apalis runs the worker (concurrency, tower layers, graceful draining);
//! this backend feeds it. A claimer task per queue claims jobs in batches
//! with `SKIP LOCKED` — only as many as there are free slots plus a prefetch
//! — and hands them to apalis through a channel. The [`AckLayer`] it puts
//! around the handlers turns each finished attempt into an [`Outcome`] for
//! the batched completer. On shutdown, jobs claimed but never started are
//! released at once for other workers.
//!
//! Database errors never reach apalis (which would stop the worker): the
//! claimer logs them and tries again, so a PostgreSQL restart pauses work
//! and nothing else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use apalis_core::task::task_id::RandomId;
use apalis_core::worker::context::WorkerContext;
use floe_engine::queue::retry::next_delay;
use floe_engine::queue::{ClaimedJob, Lease, store};
use floe_engine::trace::{self, TraceId};
use tokio::sync::{mpsc, watch};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::cursor::ClaimCursor;
use crate::handlers::JobError;
use crate::metrics::QueueMetrics;
use crate::runtime::{Outcome, Shared, Slots};

/// Errors the backend could report to apalis. It reports none: database
/// trouble is retried inside, so that a worker never stops because
/// PostgreSQL restarted.
#[derive(Debug, thiserror::Error)]
#[error("queue backend: {0}")]
pub struct BackendError(String);

/// One queue of floe's job table, as an apalis backend.
pub struct PgBackend {
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    metrics: QueueMetrics,
    jobs: mpsc::Receiver<ClaimedJob>,
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl PgBackend {
    /// A backend for `queue`; spawns its claimer, which runs until `stop`.
    pub fn new(shared: Arc<Shared>, queue: String, stop: watch::Receiver<bool>) -> Self {
        let slots = Arc::new(Slots::default());
        let capacity = shared.settings.concurrency + shared.settings.prefetch;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let metrics = QueueMetrics::new(&queue, &shared.registry.kinds());
        let claimer = claim_loop(
            shared.clone(),
            slots.clone(),
            metrics.clone(),
            queue,
            tx,
            stop,
        );
        tokio::spawn(claimer);
        Self {
            shared,
            slots,
            metrics,
            jobs: rx,
            closing: None,
        }
    }
}

/// Claims while there are free slots; sleeps until woken (NOTIFY, a freed
/// slot, the fallback poll) when the queue is empty or the slots are full.
/// Each claim starts where its [`ClaimCursor`] says: at the head of the
/// queue, or after the last job taken while claims from the head are slow.
async fn claim_loop(
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    metrics: QueueMetrics,
    queue: String,
    jobs: mpsc::Sender<ClaimedJob>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = &shared.settings;
    let capacity = settings.concurrency + settings.prefetch;
    let kinds = shared.registry.kinds();
    let mut available = shared.wakers.subscribe_available();
    let mut error_delay = Duration::from_millis(50);
    let mut cursor = ClaimCursor::new(settings.slow_claim());
    loop {
        if *stop.borrow() {
            return;
        }
        let free = capacity.saturating_sub(slots.in_flight());
        if free == 0 {
            tokio::select! {
                _ = slots.freed() => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        available.borrow_and_update();
        let want = free.min(settings.claim_batch).max(1);
        let start = cursor.start(Instant::now());
        let claimed = async {
            // Timed without the wait for a pooled connection: the cursor
            // judges what the claim itself costs.
            let mut conn = shared.pool.acquire().await?;
            let began = Instant::now();
            let jobs = store::claim_after(
                &mut *conn,
                &queue,
                &kinds,
                &shared.owner,
                want as i64,
                settings.lease(),
                start,
            )
            .await?;
            Ok::<_, sqlx::Error>((jobs, began.elapsed()))
        }
        .await;
        let claimed = match claimed {
            Ok((c, took)) => {
                error_delay = Duration::from_millis(50);
                metrics.claim(start.is_none(), took);
                cursor.claimed(start, &c, took, Instant::now());
                c
            }
            Err(e) => {
                tracing::warn!(%queue, error = %e, retry_in_ms = error_delay.as_millis() as u64, "claim failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(error_delay) => {}
                    _ = stop.changed() => return,
                }
                error_delay = (error_delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let got = claimed.len();
        metrics.claimed(&claimed);
        slots.take(got);
        shared.hold(claimed.iter().map(ClaimedJob::lease));
        for job in claimed {
            if jobs.send(job).await.is_err() {
                return; // the worker is gone; its leases expire or were released
            }
        }
        if got == 0 {
            // Nothing claimable (a short batch only means other workers took
            // the rest; claim again at once): sleep until something changes.
            tokio::select! {
                _ = available.changed() => {}
                _ = tokio::time::sleep(settings.poll()) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

impl Backend for PgBackend {
    type Task = Task<ClaimedJob>;
    type Error = BackendError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        match self.jobs.poll_recv(cx) {
            Poll::Ready(Some(job)) => Poll::Ready(Some(Ok(Task::new(job)))),
            // The claimer stopped: no more work.
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Hands back the jobs claimed but never started, then reports closed.
    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.closing.is_none() {
            self.jobs.close();
            let mut unstarted = Vec::new();
            while let Ok(job) = self.jobs.try_recv() {
                unstarted.push(job.lease());
            }
            let shared = self.shared.clone();
            let slots = self.slots.clone();
            self.closing = Some(Box::pin(async move {
                if unstarted.is_empty() {
                    return;
                }
                release(&shared, &unstarted).await;
                for _ in &unstarted {
                    slots.free();
                }
            }));
        }
        match self.closing.as_mut().map(|f| f.as_mut().poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Gives leases back, retrying briefly; if the database stays away they
/// simply expire and are rescued.
pub async fn release(shared: &Shared, leases: &[Lease]) {
    for attempt in 0..5 {
        match store::release(&shared.pool, leases).await {
            Ok(n) => {
                tracing::info!(released = n, "released claimed jobs for other workers");
                shared.forget(leases);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "cannot release claimed jobs; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    tracing::warn!(
        jobs = leases.len(),
        "claimed jobs not released: their leases will expire"
    );
}

impl BackendConfig for PgBackend {
    type Args = ClaimedJob;
    type Id = RandomId;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        AckLayer {
            shared: self.shared.clone(),
            slots: self.slots.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Records each attempt's outcome (and its metrics) and frees its slot.
#[derive(Clone)]
pub struct AckLayer {
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    metrics: QueueMetrics,
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            shared: self.shared.clone(),
            slots: self.slots.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`AckLayer`].
#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    metrics: QueueMetrics,
}

impl<S> Service<Task<ClaimedJob>> for AckService<S>
where
    S: Service<Task<ClaimedJob>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxDynError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<ClaimedJob>) -> Self::Future {
        let job = &task.args;
        let (lease, attempt, max_attempts) = (job.lease(), job.attempt, job.max_attempts);
        let backoff = self
            .shared
            .registry
            .get(&job.kind)
            .map(|h| h.backoff)
            .unwrap_or_default();
        let shared = self.shared.clone();
        let slots = self.slots.clone();
        let metrics = self.metrics.kind(&job.kind);
        let future = self.inner.call(task);
        Box::pin(async move {
            let started = Instant::now();
            let result = future.await.map_err(Into::into);
            let recorded = match &result {
                Ok(_) => Ok(()),
                Err(e) => {
                    let (message, retry) = match e.downcast_ref::<JobError>() {
                        Some(job_error) => (job_error.message.clone(), job_error.retry),
                        None => (e.to_string(), floe_engine::queue::retry::Retry::Backoff),
                    };
                    let retry_in = next_delay(retry, &backoff, attempt, max_attempts, rand_unit());
                    Err((message, retry_in))
                }
            };
            if let Some(metrics) = metrics {
                let retried = matches!(recorded, Err((_, Some(_))));
                metrics.finished(started.elapsed(), recorded.is_ok(), retried);
            }
            shared.finish(Outcome {
                lease,
                result: recorded,
            });
            slots.free();
            result
        })
    }
}

/// A random number in `[0, 1)` for backoff jitter.
fn rand_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() >> 75; // 53 random bits
    bits as f64 / (1u64 << 53) as f64
}

/// The handlers as one service: finds the job's handler and runs it.
#[derive(Clone)]
pub struct Dispatch {
    shared: Arc<Shared>,
}

impl Dispatch {
    /// Dispatches to `shared`'s registry.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl Service<Task<ClaimedJob>> for Dispatch {
    type Response = ();
    type Error = JobError;
    type Future = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<ClaimedJob>) -> Self::Future {
        let job = task.args;
        let handler = self.shared.registry.get(&job.kind).cloned();
        let span = tracing::info_span!("job", job_id = job.id, kind = %job.kind, attempt = job.attempt,
            trace_id = job.trace_id.as_deref());
        // What the handler delivers or starts joins the job's trace.
        let trace = job.trace_id.as_deref().and_then(TraceId::parse);
        let work = async move {
            let result = match handler {
                Some(handler) => handler.call(job).await,
                // Claims only ask for registered kinds, so this means the
                // registry changed under a claim; let another worker have it.
                None => Err(JobError::retryable(format!(
                    "no handler for kind {}",
                    job.kind
                ))),
            };
            tracing::debug!(ok = result.is_ok(), "job attempt finished");
            result
        };
        Box::pin(trace::scope(trace, work).instrument(span))
    }
}
