//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use floe_engine::workflow::Registry;
use sqlx::PgPool;

use super::auth::OperatorToken;
use crate::push::Hub;

/// The router's state: cheap to clone (handles and `Arc`s).
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// Workflow definitions by kind: which kinds may be started, and how
    /// queries are answered.
    pub definitions: Arc<Registry>,
    /// The push hub (the process's LISTEN connection).
    pub hub: Hub,
    /// The token the engine routes require.
    pub operator_token: OperatorToken,
}

impl AppState {
    /// The state over `pool`, with a push hub started on it.
    pub fn new(pool: PgPool, definitions: Registry, operator_token: OperatorToken) -> Self {
        Self {
            hub: Hub::start(pool.clone()),
            pool,
            definitions: Arc::new(definitions),
            operator_token,
        }
    }
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> Self {
        state.pool.clone()
    }
}

impl FromRef<AppState> for Hub {
    fn from_ref(state: &AppState) -> Self {
        state.hub.clone()
    }
}

impl FromRef<AppState> for OperatorToken {
    fn from_ref(state: &AppState) -> Self {
        state.operator_token.clone()
    }
}
