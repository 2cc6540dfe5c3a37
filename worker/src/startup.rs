//! Building a worker over a pool and running it until shutdown.

use std::future::Future;

use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::settings::WorkerSettings;

/// A worker bound to a database.
pub struct Worker {
    pool: PgPool,
    health: Option<TcpListener>,
}

impl Worker {
    /// Prepares a worker; binds its health listener when one is configured.
    pub async fn build(settings: &WorkerSettings, pool: PgPool) -> std::io::Result<Self> {
        let health = match settings.health_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self { pool, health })
    }

    /// The port of the health listener, when there is one.
    pub fn health_port(&self) -> Option<u16> {
        self.health
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// Runs until `shutdown` resolves.
    ///
    /// No job kinds are registered yet: the queue arrives with the next
    /// milestone, so for now a worker connects, serves its probes and waits.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!("worker started (no job kinds registered yet)");
        match self.health {
            Some(listener) => {
                tracing::info!(addr = %listener.local_addr()?, "worker health probes listening");
                axum::serve(listener, floe_engine::health::router(self.pool))
                    .with_graceful_shutdown(shutdown)
                    .await?;
            }
            None => shutdown.await,
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}
