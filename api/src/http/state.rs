//! What every handler can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use floe_engine::workflow::Registry;
use sqlx::PgPool;

use super::auth::OperatorToken;
use super::limit::RateLimiter;
use crate::push::Hub;
use crate::settings::ChatSettings;

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
    /// The chat's settings: sessions, limits, heartbeats, onboardings.
    pub chat: Arc<ChatSettings>,
    /// The chat's per-person message limit (this process's count).
    pub limiter: Arc<RateLimiter>,
}

impl AppState {
    /// The state over `pool`, with a push hub started on it and the chat's
    /// default settings (see [`with_chat`](Self::with_chat)).
    pub fn new(pool: PgPool, definitions: Registry, operator_token: OperatorToken) -> Self {
        let chat = ChatSettings::default();
        Self {
            hub: Hub::start(pool.clone()),
            pool,
            definitions: Arc::new(definitions),
            operator_token,
            limiter: Arc::new(RateLimiter::new(chat.messages_per_minute)),
            chat: Arc::new(chat),
        }
    }

    /// The same state with the chat's `settings` (and a fresh rate limit
    /// counting by them).
    pub fn with_chat(mut self, settings: ChatSettings) -> Self {
        self.limiter = Arc::new(RateLimiter::new(settings.messages_per_minute));
        self.chat = Arc::new(settings);
        self
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
