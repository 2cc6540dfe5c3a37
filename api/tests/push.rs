//! The push hub against real PostgreSQL: NOTIFYs reach their topic's
//! subscribers only, a full subscriber lags without slowing the others, and
//! a lost LISTEN connection is re-established and every subscriber told to
//! resync.

mod common;

use std::time::Duration;

use floe_api::push::{
    CHANNEL_CHAT, CHANNEL_WORKFLOWS, DEFAULT_CAPACITY, Hub, Push, Subscription, Topic,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

async fn notify(pool: &PgPool, channel: &str, payload: Value) {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload.to_string())
        .execute(pool)
        .await
        .expect("notify");
}

async fn recv(sub: &mut Subscription) -> Option<Push> {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("a push in time")
}

/// Asserts nothing is queued for `sub` (after giving stray pushes time).
async fn assert_quiet(sub: &mut Subscription) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sub.try_recv(), None);
}

async fn started_hub(pool: &PgPool) -> Hub {
    let hub = Hub::start(pool.clone());
    tokio::time::timeout(WAIT, hub.listening())
        .await
        .expect("listening in time");
    hub
}

#[test]
fn topics_come_from_the_payload() {
    let id = Uuid::now_v7();
    assert_eq!(
        Topic::of(CHANNEL_WORKFLOWS, &json!({ "id": id, "version": 3 })),
        Some(Topic::Workflow(id))
    );
    assert_eq!(
        Topic::of(CHANNEL_CHAT, &json!({ "user_id": "u1", "seq": 9 })),
        Some(Topic::User("u1".into()))
    );
    assert_eq!(
        Topic::of(CHANNEL_CHAT, &json!({ "user_id": 42, "seq": 9 })),
        Some(Topic::User("42".into()))
    );
    assert_eq!(Topic::of(CHANNEL_WORKFLOWS, &json!({ "id": "nope" })), None);
    assert_eq!(Topic::of(CHANNEL_CHAT, &json!({ "seq": 1 })), None);
    assert_eq!(Topic::of("other", &json!({ "id": id })), None);
}

#[tokio::test]
async fn a_notify_reaches_the_subscribers_of_its_topic_only() {
    let pool = common::database().await;
    let hub = started_hub(&pool).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut sub_a = hub.subscribe(Topic::Workflow(a));
    let mut sub_a2 = hub.subscribe(Topic::Workflow(a));
    let mut sub_b = hub.subscribe(Topic::Workflow(b));
    let mut user = hub.subscribe(Topic::User("u1".into()));
    let mut other_user = hub.subscribe(Topic::User("u2".into()));

    let payload = json!({ "id": a, "kind": "k", "version": 2, "status": "waiting" });
    notify(&pool, CHANNEL_WORKFLOWS, payload.clone()).await;
    assert_eq!(
        recv(&mut sub_a).await,
        Some(Push::Notified(payload.clone()))
    );
    assert_eq!(recv(&mut sub_a2).await, Some(Push::Notified(payload)));

    let chat = json!({ "user_id": "u1", "seq": 7 });
    notify(&pool, CHANNEL_CHAT, chat.clone()).await;
    assert_eq!(recv(&mut user).await, Some(Push::Notified(chat)));

    // Junk on the channels is ignored, not fatal.
    sqlx::query("SELECT pg_notify('floe_workflows', 'not json'), pg_notify('floe_chat', '{}')")
        .execute(&pool)
        .await
        .expect("junk");
    let later = json!({ "id": b, "version": 1 });
    notify(&pool, CHANNEL_WORKFLOWS, later.clone()).await;
    assert_eq!(
        recv(&mut sub_b).await,
        Some(Push::Notified(later)),
        "b's first push is its own"
    );
    assert_quiet(&mut sub_a).await;
    assert_quiet(&mut other_user).await;
    assert_eq!(hub.subscribers(), 5);

    // Dropping a subscription unsubscribes it.
    drop(sub_a2);
    drop(other_user);
    assert_eq!(hub.subscribers(), 3);

    hub.stop().await;
    assert_eq!(recv(&mut sub_a).await, None, "stopping ends subscriptions");
    assert_eq!(hub.subscribers(), 0);
    let mut late = hub.subscribe(Topic::Workflow(a));
    assert_eq!(
        recv(&mut late).await,
        None,
        "a stopped hub hands out ended ones"
    );
}

#[tokio::test]
async fn a_full_subscriber_is_marked_lagged_and_does_not_slow_the_others() {
    let pool = common::database().await;
    let hub = started_hub(&pool).await;
    let id = Uuid::now_v7();
    let mut stuck = hub.subscribe(Topic::Workflow(id));
    let mut reader = hub.subscribe(Topic::Workflow(id));
    let n = DEFAULT_CAPACITY + 16;
    for seq in 1..=n {
        notify(
            &pool,
            CHANNEL_WORKFLOWS,
            json!({ "id": id, "version": seq }),
        )
        .await;
        // The reader gets each one as it is sent, however full `stuck` is.
        let push = recv(&mut reader).await.expect("push");
        assert_eq!(push, Push::Notified(json!({ "id": id, "version": seq })));
    }
    assert!(stuck.is_lagged());
    assert_eq!(hub.subscribers(), 1, "the lagging one is sent nothing more");
    assert_eq!(recv(&mut stuck).await, Some(Push::Lagged));
    assert_eq!(recv(&mut stuck).await, None);

    // Subscribing again is how it recovers.
    let mut again = hub.subscribe(Topic::Workflow(id));
    notify(&pool, CHANNEL_WORKFLOWS, json!({ "id": id, "version": 0 })).await;
    assert!(matches!(recv(&mut again).await, Some(Push::Notified(_))));
    hub.stop().await;
}

#[tokio::test]
async fn after_the_listener_connection_is_terminated_it_reconnects_and_everyone_resyncs() {
    let pool = common::database().await;
    let hub = started_hub(&pool).await;
    assert_eq!(hub.connection_count(), 1);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut sub_a = hub.subscribe(Topic::Workflow(a));
    let mut sub_b = hub.subscribe(Topic::Workflow(b));
    let mut user = hub.subscribe(Topic::User("u1".into()));

    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .expect("terminate");
    assert_eq!(terminated, 1, "one LISTEN connection per hub");

    for sub in [&mut sub_a, &mut sub_b, &mut user] {
        assert_eq!(recv(sub).await, Some(Push::Resync));
    }
    assert_eq!(hub.connection_count(), 2);
    // And it listens again.
    let payload = json!({ "id": a, "version": 5 });
    notify(&pool, CHANNEL_WORKFLOWS, payload.clone()).await;
    assert_eq!(recv(&mut sub_a).await, Some(Push::Notified(payload)));
    assert_quiet(&mut sub_b).await;
    hub.stop().await;
}

#[tokio::test]
async fn a_subscriber_from_before_the_first_connection_is_told_to_resync() {
    let pool = common::database().await;
    let hub = Hub::start(pool.clone());
    // Subscribed before the listener can have connected: whatever happened
    // before it did is unknown to this subscriber.
    // (The test runtime runs one task at a time: the listener task has not
    // run yet.)
    let mut early = hub.subscribe(Topic::Workflow(Uuid::now_v7()));
    assert_eq!(hub.connection_count(), 0);
    hub.listening().await;
    assert_eq!(recv(&mut early).await, Some(Push::Resync));
    hub.stop().await;
}

#[tokio::test]
async fn publishing_in_process_reaches_local_subscribers() {
    let pool = common::database().await;
    let hub = started_hub(&pool).await;
    let topic = Topic::User("u9".into());
    let mut sub = hub.subscribe(topic.clone());
    assert_eq!(hub.publish(&topic, json!({ "seq": 1 })), 1);
    assert_eq!(hub.publish(&Topic::User("nobody".into()), json!({})), 0);
    assert_eq!(
        recv(&mut sub).await,
        Some(Push::Notified(json!({ "seq": 1 })))
    );
    hub.stop().await;
}
