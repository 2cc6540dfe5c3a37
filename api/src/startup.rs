//! Binding the listener, building the router and serving until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use floe_engine::workflow::{Registry, store};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::http::{self, AppState, auth::OperatorToken};
use crate::push::Hub;
use crate::settings::HttpSettings;

/// The API bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    hub: Hub,
}

impl Application {
    /// Binds `settings.listen` (port 0 picks a free port), starts the push
    /// hub (the process's LISTEN connection), resolves the operator token
    /// (generating and logging a development one when none is configured)
    /// and builds the router. `definitions` are the workflow kinds the
    /// engine API may start and answer queries for; they are registered in
    /// `floe.definitions` for `floe_ops.start_workflow`.
    pub async fn build(
        settings: &HttpSettings,
        pool: PgPool,
        definitions: Registry,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let by = format!("floe-api {}:{}", host.trim(), std::process::id());
        if let Err(e) = store::register_definitions(&pool, &definitions, &by).await {
            tracing::warn!(error = %e, "could not register the workflow kinds: floe_ops.start_workflow refuses them");
        }
        let token = OperatorToken::from_settings(settings.operator_token.as_ref());
        let state = AppState::new(pool, definitions, token).with_chat(settings.chat.clone());
        let hub = state.hub.clone();
        Ok(Self {
            listener,
            router: http::router(settings, state),
            hub,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The push hub, for whatever else the process wants to push through.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Serves until `shutdown` resolves; then stops the push hub, which ends
    /// every live stream, and lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let hub = self.hub.clone();
        let stopping = async move {
            shutdown.await;
            // Streams (SSE, WebSocket) end when their subscriptions do;
            // without this, graceful shutdown would wait for them forever.
            hub.stop().await;
        };
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stopping)
            .await;
        self.hub.stop().await;
        served
    }
}
