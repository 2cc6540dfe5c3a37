//! The onboarding workflow in a worker: the definition (in
//! `floe_agents::onboarding::workflow`) and the activities that write what
//! people see.
//!
//! | activity     | input                                    | does                                  |
//! |--------------|------------------------------------------|---------------------------------------|
//! | `chat.reply` | `{user_id, reply: {kind, agent, content, widget}}` | stores the assistant's message once per activity (which notifies the browser); `{seq}` |
//! | `inbox.add`  | `{user_id, items: [{title, due_date, tags}]}` | adds the confirmed items to the user's inbox once; `{added}` |

use floe_agents::onboarding::contract::InboxItem;
use floe_agents::onboarding::dates;
use floe_agents::onboarding::workflow::{CHAT_REPLY, INBOX_ADD, Onboarding};
use floe_engine::chat::{self, NewInboxItem, Reply};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::workflows::{ActivityCtx, ActivityError, Workflows, decode_input};

/// Registers the onboarding workflow and its storing activities.
pub fn register(workflows: &mut Workflows, pool: &PgPool) {
    let (replies, inbox) = (pool.clone(), pool.clone());
    workflows
        .workflow::<Onboarding>()
        .activity(CHAT_REPLY, move |ctx, input| {
            let pool = replies.clone();
            async move { reply(&pool, ctx, input).await }
        })
        .activity(INBOX_ADD, move |ctx, input| {
            let pool = inbox.clone();
            async move { add_to_inbox(&pool, ctx, input).await }
        });
}

#[derive(Deserialize)]
struct ReplyInput {
    user_id: String,
    reply: Reply,
}

#[derive(Deserialize)]
struct InboxInput {
    user_id: String,
    items: Vec<InboxItem>,
}

/// What wrote a message or an item: the same activity writes it once.
fn source_key(ctx: &ActivityCtx) -> String {
    format!("{}:{}", ctx.workflow_id, ctx.activity_id)
}

fn database(e: chat::store::Error) -> ActivityError {
    match e {
        chat::store::Error::UnknownUser(_) => ActivityError::permanent(e),
        _ => ActivityError::retryable(e),
    }
}

async fn reply(pool: &PgPool, ctx: ActivityCtx, input: Value) -> Result<Value, ActivityError> {
    let input: ReplyInput = decode_input(input)?;
    let mut tx = pool.begin().await.map_err(ActivityError::retryable)?;
    let seq = chat::store::post_reply(&mut tx, &input.user_id, &source_key(&ctx), &input.reply)
        .await
        .map_err(database)?;
    tx.commit().await.map_err(ActivityError::retryable)?;
    Ok(json!({ "seq": seq }))
}

async fn add_to_inbox(
    pool: &PgPool,
    ctx: ActivityCtx,
    input: Value,
) -> Result<Value, ActivityError> {
    let input: InboxInput = decode_input(input)?;
    let key = source_key(&ctx);
    let items: Vec<NewInboxItem> = input
        .items
        .into_iter()
        .enumerate()
        .filter(|(_, item)| !item.title.trim().is_empty())
        .map(|(i, item)| NewInboxItem {
            title: item.title.trim().to_owned(),
            due_date: item.due_date.as_deref().and_then(dates::parse_iso),
            tags: item.tags,
            source_key: format!("{key}:{i}"),
        })
        .collect();
    let mut tx = pool.begin().await.map_err(ActivityError::retryable)?;
    let added = chat::store::add_inbox_items(&mut tx, &input.user_id, &items)
        .await
        .map_err(database)?;
    tx.commit().await.map_err(ActivityError::retryable)?;
    Ok(json!({ "added": added }))
}
