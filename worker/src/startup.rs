//! Building a worker over a pool and running it until shutdown.

use std::future::Future;

use apalis::layers::WorkerBuilderExt;
use apalis::prelude::WorkerBuilder;
use apalis_core::error::WorkerError;
use apalis_core::worker::ext::parallelize::ParallelizeExt;
use floe_engine::queue::listener;
use floe_engine::workflow::store;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use floe_agents::settings::LlmSettings;

use crate::agents::Llm;
use crate::backend::{self, Dispatch, PgBackend};
use crate::handlers::{self, Handler, Registry};
use crate::maintenance;
use crate::retention;
use crate::runtime::{self, Shared};
use crate::settings::WorkerSettings;
use crate::workflows::Workflows;

/// The workflow definitions and activities this build runs in production:
/// the onboarding, the Temporal-Lite spec's `code_review` and `research`,
/// and the LLM activities (with the model `llm` names, or offline).
pub fn workflows(llm: &LlmSettings, pool: &PgPool) -> anyhow::Result<Workflows> {
    let mut workflows = Workflows::new();
    crate::onboarding::register(&mut workflows, pool);
    crate::agent_workflows::register(&mut workflows, llm, pool)?;
    Llm::from_settings(llm, pool.clone())?.register(&mut workflows);
    Ok(workflows)
}

/// A worker bound to a database.
pub struct Worker {
    pool: PgPool,
    settings: WorkerSettings,
    registry: Registry,
    /// The workflow definitions it runs, registered in `floe.definitions` at start.
    definitions: floe_engine::workflow::Registry,
    health: Option<TcpListener>,
}

impl Worker {
    /// Prepares a worker with the built-in handlers; binds its health
    /// listener when one is configured.
    pub async fn build(settings: &WorkerSettings, pool: PgPool) -> std::io::Result<Self> {
        let health = match settings.health_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            pool,
            settings: settings.clone(),
            registry: handlers::builtin(),
            definitions: Default::default(),
            health,
        })
    }

    /// Adds a handler for `kind`.
    pub fn register(mut self, kind: impl Into<String>, handler: Handler) -> Self {
        self.registry.register(kind, handler);
        self
    }

    /// Adds workflow definitions and their activities: this worker then
    /// advances workflows and runs activities.
    pub fn workflows(mut self, workflows: Workflows) -> Self {
        self.definitions = workflows.definitions.clone();
        for (kind, handler) in workflows.handlers(self.pool.clone()) {
            self.registry.register(kind, handler);
        }
        self
    }

    /// Runs until `shutdown` resolves, then stops claiming, gives running
    /// jobs the shutdown timeout to finish, releases what it claimed but did
    /// not finish, and writes every outcome before returning.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let settings = self.settings.clone();
        // Before any metric handle is made: handles made earlier record nothing.
        floe_engine::metrics::install();
        let (stop_tx, stop) = watch::channel(false);
        let wakers = listener::Wakers::new();
        let (shared, outcomes) = Shared::new(
            self.pool.clone(),
            settings.clone(),
            self.registry,
            wakers.clone(),
        );
        let by = format!("floe-worker {}", shared.owner);
        if let Err(e) = store::register_definitions(&self.pool, &self.definitions, &by).await {
            tracing::warn!(error = %e, "could not register the workflow kinds: floe_ops.start_workflow refuses them");
        }
        tracing::info!(owner = %shared.owner, queues = ?settings.queues, kinds = ?shared.registry.kinds(),
            concurrency = settings.concurrency, "worker started");

        let mut services = JoinSet::new();
        services.spawn(listener::run(self.pool.clone(), wakers, stop.clone()));
        services.spawn(maintenance::run_scheduler(shared.clone(), stop.clone()));
        services.spawn(maintenance::run_rescuer(shared.clone(), stop.clone()));
        services.spawn(crate::metrics::run_refresher(shared.clone(), stop.clone()));
        services.spawn(retention::run(
            self.pool.clone(),
            settings.retention.clone(),
            stop.clone(),
        ));
        if let Some(listener) = self.health {
            let router = floe_engine::health::router(self.pool.clone())
                .merge(floe_engine::metrics::router());
            let mut stop = stop.clone();
            services.spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::warn!(error = %e, "health listener failed");
                }
            });
        }
        // The registry heartbeat and the lease heartbeat outlive the drain
        // below: jobs still running on shutdown keep their leases (another
        // worker's rescuer would otherwise run them a second time), and the
        // registry row says this worker is alive while it holds work. Both
        // stop last.
        let (presence_stop_tx, presence_stop) = watch::channel(false);
        let presence = tokio::spawn(maintenance::run_presence(
            shared.clone(),
            presence_stop.clone(),
        ));
        let leases = tokio::spawn(runtime::run_heartbeat(shared.clone(), presence_stop));
        let (completer_stop_tx, completer_stop) = watch::channel(false);
        let completer = tokio::spawn(runtime::run_completer(
            shared.clone(),
            outcomes,
            completer_stop,
        ));

        let mut workers = JoinSet::new();
        for queue in &settings.queues {
            let backend = PgBackend::new(shared.clone(), queue.clone(), stop.clone());
            let worker = WorkerBuilder::new(format!("{}/{queue}", shared.owner))
                .backend(backend)
                .concurrency(settings.concurrency.max(1))
                .parallelize(tokio::spawn)
                .build(Dispatch::new(shared.clone()));
            let mut stop = stop.clone();
            workers.spawn(worker.run_until(async move {
                let _ = stop.wait_for(|s| *s).await;
                Ok::<(), WorkerError>(())
            }));
        }

        shutdown.await;
        tracing::info!(
            timeout_ms = settings.shutdown_timeout_ms,
            "stopping: no new claims; waiting for running jobs"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(settings.shutdown_timeout(), async {
            while let Some(result) = workers.join_next().await {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "worker ended with an error"),
                    Err(e) => tracing::warn!(error = %e, "worker task failed"),
                }
            }
        })
        .await;
        if drained.is_err() {
            workers.abort_all();
            tracing::warn!("shutdown timeout: abandoning running jobs");
        }
        // Write every outcome that is in, then give back whatever is still
        // held (claimed and unfinished, or abandoned by the timeout).
        let _ = completer_stop_tx.send(true);
        if let Err(e) = completer.await {
            tracing::warn!(error = %e, "completer failed");
        }
        let held = shared.held();
        if !held.is_empty() {
            backend::release(&shared, &held).await;
        }
        services.shutdown().await;
        let _ = presence_stop_tx.send(true);
        if let Err(e) = presence.await {
            tracing::warn!(error = %e, "presence heartbeat failed");
        }
        if let Err(e) = leases.await {
            tracing::warn!(error = %e, "lease heartbeat failed");
        }
        drop(shared);
        tracing::info!("worker stopped");
        Ok(())
    }
}
