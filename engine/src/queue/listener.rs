//! The process's one LISTEN connection, fanned out to whoever waits for work.
//!
//! It reconnects by itself when PostgreSQL restarts or the connection drops,
//! and then tells every waiter to look again, since notifications sent while
//! it was away are lost. Waiters also poll slowly, so a lost notification
//! delays work, never loses it.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{CHANNEL_AVAILABLE, CHANNEL_SCHEDULED};
use crate::workflow::CHANNEL_DEADLINES;

/// The process's wake-up channels: the listener task sends on them, and
/// in-process producers may too (a scheduler that made jobs available wakes its
/// own process's claimers without a round trip).
#[derive(Clone, Debug)]
pub struct Wakers {
    available: watch::Sender<u64>,
    scheduled: watch::Sender<Option<OffsetDateTime>>,
}

impl Default for Wakers {
    fn default() -> Self {
        Self::new()
    }
}

impl Wakers {
    /// New channels, with nobody woken yet.
    pub fn new() -> Self {
        Self {
            available: watch::channel(0).0,
            scheduled: watch::channel(None).0,
        }
    }

    /// Wakes this process's claimers.
    pub fn wake_available(&self) {
        self.available.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A new receiver of "jobs became available" wake-ups.
    pub fn subscribe_available(&self) -> watch::Receiver<u64> {
        self.available.subscribe()
    }

    /// A new receiver of "something was scheduled" wake-ups.
    pub fn subscribe_scheduled(&self) -> watch::Receiver<Option<OffsetDateTime>> {
        self.scheduled.subscribe()
    }

    /// Tells this process's scheduler that something falls due at `at`.
    pub fn wake_scheduled(&self, at: OffsetDateTime) {
        self.scheduled.send_modify(|cur| {
            if cur.is_none_or(|c| at < c) {
                *cur = Some(at);
            }
        });
    }
}

/// Listens until `stop` is set, reconnecting as needed.
pub async fn run(pool: PgPool, wakers: Wakers, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut listener = match connect(&pool).await {
            Ok(l) => {
                backoff = Duration::from_millis(100);
                l
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot LISTEN; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // Anything may have happened while we were not listening.
        wakers.wake_available();
        wakers.wake_scheduled(OffsetDateTime::now_utc());
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = stop.changed() => return,
            };
            match next {
                Ok(Some(n)) if n.channel() == CHANNEL_AVAILABLE => wakers.wake_available(),
                Ok(Some(n))
                    if n.channel() == CHANNEL_SCHEDULED || n.channel() == CHANNEL_DEADLINES =>
                {
                    let at = n
                        .payload()
                        .parse::<i128>()
                        .ok()
                        .and_then(|ms| {
                            OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok()
                        })
                        .unwrap_or_else(OffsetDateTime::now_utc);
                    wakers.wake_scheduled(at);
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    // The connection dropped; the next try_recv reconnects.
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    wakers.wake_available();
                    wakers.wake_scheduled(OffsetDateTime::now_utc());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([CHANNEL_AVAILABLE, CHANNEL_SCHEDULED])
        .await?;
    Ok(listener)
}
