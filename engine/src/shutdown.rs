//! The shutdown signal every long-running loop listens to.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal as unix_signal};

/// Listens for SIGINT (Ctrl-C) and SIGTERM from the moment it is called (call
/// it early: until then those signals kill the process outright); the
/// returned future resolves on the first of them. Needs a Tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    let int = unix_signal(SignalKind::interrupt());
    let term = unix_signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for signals; only Ctrl-C stops this process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
