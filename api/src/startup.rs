//! Binding the listener, building the router and serving until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::http;
use crate::settings::HttpSettings;

/// The API bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
}

impl Application {
    /// Binds `settings.listen` (port 0 picks a free port) and builds the router.
    pub async fn build(settings: &HttpSettings, pool: PgPool) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        Ok(Self {
            listener,
            router: http::router(settings, pool),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
