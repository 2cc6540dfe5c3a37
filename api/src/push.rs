//! The push hub: the API process's one LISTEN connection, fanned out to its
//! SSE and WebSocket subscribers by topic.
//!
//! Committed changes NOTIFY a small JSON payload — ids and sequence numbers,
//! never content — on [`CHANNEL_WORKFLOWS`] (topic [`Topic::Workflow`], from
//! the payload's `id`) and [`CHANNEL_CHAT`] (topic [`Topic::User`], from its
//! `user_id`). A subscriber gets each payload as [`Push::Notified`] and
//! reads what changed from the tables. The exception is
//! [`CHANNEL_CHAT_STREAM`] (also [`Topic::User`], by `user_id`): replies
//! while the model writes them, whose payload (`"kind": "stream"`) *is* the
//! content (a [`ReplyChunk`](floe_engine::chat::ReplyChunk)), stored
//! nowhere; a subscriber that misses some has nothing to re-read.
//!
//! Nothing a subscriber does can slow the hub or another subscriber: each
//! has a bounded channel, filled without waiting. One whose channel is full
//! is sent nothing more and gets [`Push::Lagged`]: it must re-read the
//! tables (or tell its client to) and subscribe again. When the listener's
//! connection drops, the hub reconnects with backoff and then sends every
//! subscriber [`Push::Resync`], since notifications sent meanwhile are lost.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool, id: uuid::Uuid) {
//! use floe_api::push::{Hub, Push, Topic};
//! let hub = Hub::start(pool);
//! let mut sub = hub.subscribe(Topic::Workflow(id));
//! // ... read the current state from the tables, then:
//! while let Some(push) = sub.recv().await {
//!     match push {
//!         Push::Notified(_) | Push::Resync => { /* re-read what changed */ }
//!         Push::Lagged => { /* re-read, and subscribe again */ break; }
//!     }
//! }
//! hub.stop().await;
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use floe_engine::chat::CHANNEL_CHAT_STREAM;
pub use floe_engine::workflow::CHANNEL_WORKFLOWS;

/// NOTIFY channel for chat changes; the payload is JSON with at least
/// `user_id` (a string or a number) and `seq`.
pub const CHANNEL_CHAT: &str = "floe_chat";

/// How many pushes wait for a subscriber before it counts as lagging.
pub const DEFAULT_CAPACITY: usize = 64;

/// Longest wait between two attempts to re-establish the LISTEN connection.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a subscriber follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// One workflow's changes (`floe_workflows`, by the payload's `id`).
    Workflow(Uuid),
    /// One user's chat (`floe_chat`, and the replies being written on
    /// `floe_chat_stream`, by the payload's `user_id`).
    User(String),
}

impl Topic {
    /// The topic a notification on `channel` with `payload` is for, if any.
    pub fn of(channel: &str, payload: &Value) -> Option<Self> {
        match channel {
            CHANNEL_WORKFLOWS => payload
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .map(Self::Workflow),
            CHANNEL_CHAT | CHANNEL_CHAT_STREAM => user_id(payload).map(Self::User),
            _ => None,
        }
    }
}

/// The payload's `user_id`, a string or a number.
fn user_id(payload: &Value) -> Option<String> {
    match payload.get("user_id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// Something changed: the notification's payload (ids and sequence
    /// numbers); read the content from the tables. (From
    /// [`CHANNEL_CHAT_STREAM`]: a piece of a reply, the content itself.)
    Notified(Value),
    /// Notifications may have been lost (the listener reconnected): re-read
    /// everything after what was last seen. The subscription goes on.
    Resync,
    /// This subscriber fell behind and was sent nothing more: re-read
    /// everything after what was last seen and subscribe again. The
    /// subscription has ended.
    Lagged,
}

/// The hub: cheap to clone; every clone is the same hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("subscribers", &self.subscribers())
            .field("connections", &self.connection_count())
            .finish()
    }
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Push>,
    lagged: Arc<AtomicBool>,
}

struct Inner {
    capacity: usize,
    subscribers: Mutex<HashMap<Topic, Vec<Slot>>>,
    next_id: AtomicU64,
    stopped: AtomicBool,
    stop: watch::Sender<bool>,
    connections: watch::Sender<u64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn slots(&self) -> MutexGuard<'_, HashMap<Topic, Vec<Slot>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `push` to every subscriber of `topic` (all of them when
    /// `None`) without waiting; a full one is marked lagged and dropped.
    fn send(&self, topic: Option<&Topic>, push: &Push) -> usize {
        let mut delivered = 0;
        let mut slots = self.slots();
        let mut deliver = |list: &mut Vec<Slot>| {
            list.retain(|slot| match slot.tx.try_send(push.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.lagged.store(true, Ordering::Release);
                    tracing::debug!(subscriber = slot.id, "push subscriber lagged");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        };
        match topic {
            Some(topic) => {
                if let Some(list) = slots.get_mut(topic) {
                    deliver(list);
                    if list.is_empty() {
                        slots.remove(topic);
                    }
                }
            }
            None => {
                slots.values_mut().for_each(&mut deliver);
                slots.retain(|_, list| !list.is_empty());
            }
        }
        delivered
    }
}

impl Hub {
    /// Starts the hub's listener task on `pool` (it holds one of the pool's
    /// connections), with [`DEFAULT_CAPACITY`] per subscriber.
    pub fn start(pool: PgPool) -> Self {
        Self::with_capacity(pool, DEFAULT_CAPACITY)
    }

    /// Starts the hub with `capacity` pushes buffered per subscriber.
    pub fn with_capacity(pool: PgPool, capacity: usize) -> Self {
        let inner = Arc::new(Inner {
            capacity: capacity.max(1),
            subscribers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
            stop: watch::channel(false).0,
            connections: watch::channel(0).0,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(listen(inner.clone(), pool, inner.stop.subscribe()));
        *inner.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        Self { inner }
    }

    /// Follows `topic` from now on; dropping the subscription unsubscribes.
    /// Subscribe first, then read the tables: a change committed in between
    /// is then both read and notified, never missed.
    pub fn subscribe(&self, topic: Topic) -> Subscription {
        self.subscribe_at_most(topic, usize::MAX)
            .expect("no subscription is refused without a cap")
    }

    /// Follows `topic` as [`subscribe`](Self::subscribe) does, unless `max`
    /// subscriptions of it are live already in this hub (`None` then).
    /// Counted and taken under one lock: concurrent callers never exceed
    /// `max`.
    pub fn subscribe_at_most(&self, topic: Topic, max: usize) -> Option<Subscription> {
        let (tx, rx) = mpsc::channel(self.inner.capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut slots = self.inner.slots();
        // A stopped hub hands out closed subscriptions (checked under the
        // lock `stop` clears the table with, so none slips in after).
        if !self.inner.stopped.load(Ordering::Acquire) {
            if slots.get(&topic).map_or(0, Vec::len) >= max {
                return None;
            }
            slots.entry(topic.clone()).or_default().push(Slot {
                id,
                tx,
                lagged: lagged.clone(),
            });
        }
        drop(slots);
        Some(Subscription {
            topic,
            id,
            rx,
            lagged,
            reported: false,
            inner: self.inner.clone(),
        })
    }

    /// Delivers `payload` to this process's subscribers of `topic`, as a
    /// notification would; returns how many got it. (The listener does this
    /// for every NOTIFY; other processes see only what goes through
    /// PostgreSQL.)
    pub fn publish(&self, topic: &Topic, payload: Value) -> usize {
        self.inner.send(Some(topic), &Push::Notified(payload))
    }

    /// How many subscriptions are live.
    pub fn subscribers(&self) -> usize {
        self.inner.slots().values().map(Vec::len).sum()
    }

    /// How many times the listener has connected (reconnections included).
    pub fn connection_count(&self) -> u64 {
        *self.inner.connections.borrow()
    }

    /// Waits until the listener has connected at least once: from then on
    /// every committed NOTIFY reaches subscribers.
    pub async fn listening(&self) {
        let mut rx = self.inner.connections.subscribe();
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// Stops listening and ends every subscription (their `recv` returns
    /// `None`), so that streams built on them end too. Idempotent.
    pub async fn stop(&self) {
        {
            let mut slots = self.inner.slots();
            self.inner.stopped.store(true, Ordering::Release);
            slots.clear();
        }
        let _ = self.inner.stop.send(true);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "push listener task failed");
        }
    }
}

/// One subscriber's end: pushes for its topic, in order.
#[derive(Debug)]
pub struct Subscription {
    topic: Topic,
    id: u64,
    rx: mpsc::Receiver<Push>,
    lagged: Arc<AtomicBool>,
    reported: bool,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub")
    }
}

impl Subscription {
    /// What it follows.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Whether it fell behind (and so receives nothing more).
    pub fn is_lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    /// The next push. A lagging subscription returns [`Push::Lagged`] (at
    /// once: what it had queued is stale anyway) and then `None`; `None`
    /// also once the hub has stopped.
    pub async fn recv(&mut self) -> Option<Push> {
        if let Some(end) = self.lag_report() {
            return end;
        }
        match self.rx.recv().await {
            Some(push) => Some(push),
            None => self.lag_report().flatten(),
        }
    }

    /// The next push if one is queued now, without waiting (`None` when
    /// nothing is; [`recv`](Self::recv) tells whether it has ended).
    pub fn try_recv(&mut self) -> Option<Push> {
        if let Some(end) = self.lag_report() {
            return end;
        }
        self.rx.try_recv().ok()
    }

    /// `Some(Some(Lagged))` the first time a lag is seen, `Some(None)`
    /// after, `None` while not lagging.
    fn lag_report(&mut self) -> Option<Option<Push>> {
        if !self.is_lagged() {
            return None;
        }
        if self.reported {
            return Some(None);
        }
        self.reported = true;
        Some(Some(Push::Lagged))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut slots = self.inner.slots();
        if let Some(list) = slots.get_mut(&self.topic) {
            list.retain(|slot| slot.id != self.id);
            if list.is_empty() {
                slots.remove(&self.topic);
            }
        }
    }
}

/// The listener task: connects, dispatches, reconnects with backoff, until
/// `stop` is set.
async fn listen(inner: Arc<Inner>, pool: PgPool, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let connected = tokio::select! {
            c = connect(&pool) => c,
            _ = stop.changed() => return,
        };
        let mut listener = match connected {
            Ok(listener) => {
                backoff = Duration::from_millis(100);
                listener
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "push: cannot LISTEN; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        reconnected(&inner);
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = stop.changed() => return,
            };
            match next {
                Ok(Some(notification)) => {
                    dispatch(&inner, notification.channel(), notification.payload())
                }
                // The connection dropped and sqlx has already re-established
                // it and its LISTENs; whatever was sent meanwhile is lost.
                Ok(None) => {
                    tracing::warn!("push: LISTEN connection lost and re-established");
                    reconnected(&inner);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "push: LISTEN failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Counts the connection and tells every subscriber to resync: anything
/// may have happened while nobody listened.
fn reconnected(inner: &Inner) {
    inner.connections.send_modify(|n| *n += 1);
    let told = inner.send(None, &Push::Resync);
    tracing::info!(
        connections = *inner.connections.borrow(),
        resynced = told,
        "push: listening"
    );
}

fn dispatch(inner: &Inner, channel: &str, payload: &str) {
    let value: Value = match serde_json::from_str(payload) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(channel, error = %e, "push: payload is not JSON; ignored");
            return;
        }
    };
    match Topic::of(channel, &value) {
        Some(topic) => {
            inner.send(Some(&topic), &Push::Notified(value));
        }
        None => tracing::debug!(channel, payload, "push: no topic in payload; ignored"),
    }
}

async fn connect(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([CHANNEL_WORKFLOWS, CHANNEL_CHAT, CHANNEL_CHAT_STREAM])
        .await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn replies_being_written_go_to_their_users_chat() {
        let chunk = json!({ "kind": "stream", "user_id": "u1", "offset": 0, "text": "Hi" });
        assert_eq!(
            Topic::of(CHANNEL_CHAT_STREAM, &chunk),
            Some(Topic::User("u1".into()))
        );
        assert_eq!(
            Topic::of(CHANNEL_CHAT_STREAM, &json!({ "text": "Hi" })),
            None
        );
    }
}
