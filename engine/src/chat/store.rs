//! Every SQL statement on the chat's tables. Functions that write take the
//! caller's connection (a transaction) so that a user's message, its signal
//! to the workflow and the notification commit together.

use serde_json::json;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{
    CHANNEL_CHAT, CHANNEL_CHAT_STREAM, InboxItem, Message, NewInboxItem, Posted, Reply, ReplyChunk,
    Role, User,
};
use crate::workflow::store as workflows;

/// Errors of the chat store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such user.
    #[error("no user {0:?}")]
    UnknownUser(String),
    /// The workflow refused the signal.
    #[error(transparent)]
    Workflow(#[from] workflows::Error),
    /// A database error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Results of the chat store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Creates user `id` (or renames an existing one) and returns it.
pub async fn upsert_user(db: impl PgExecutor<'_>, id: &str, display_name: &str) -> Result<User> {
    let row = sqlx::query_as!(
        User,
        "INSERT INTO floe.users (id, display_name) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name
         RETURNING id, display_name, last_seq, created_at",
        id,
        display_name,
    )
    .fetch_one(db)
    .await?;
    Ok(row)
}

/// User `id`.
pub async fn user(db: impl PgExecutor<'_>, id: &str) -> Result<Option<User>> {
    Ok(sqlx::query_as!(
        User,
        "SELECT id, display_name, last_seq, created_at FROM floe.users WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await?)
}

/// Records that run `run_id` (business key `workflow_id`) of `kind` serves
/// `user_id`; the first link of a kind stays.
pub async fn link_workflow(
    db: impl PgExecutor<'_>,
    user_id: &str,
    kind: &str,
    workflow_id: &str,
    run_id: Uuid,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO floe.workflow_instances (user_id, kind, workflow_id, run_id)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, kind) DO UPDATE SET workflow_id = excluded.workflow_id, run_id = excluded.run_id",
        user_id,
        kind,
        workflow_id,
        run_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The run of `kind` that serves `user_id`.
pub async fn workflow_of(
    db: impl PgExecutor<'_>,
    user_id: &str,
    kind: &str,
) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar!(
        "SELECT run_id FROM floe.workflow_instances WHERE user_id = $1 AND kind = $2",
        user_id,
        kind
    )
    .fetch_optional(db)
    .await?)
}

/// Locks the user's row and returns their last sequence number.
async fn lock_user(conn: &mut PgConnection, user_id: &str) -> Result<i64> {
    sqlx::query_scalar!(
        "SELECT last_seq FROM floe.users WHERE id = $1 FOR UPDATE",
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::UnknownUser(user_id.to_owned()))
}

/// Stores message `seq` and moves the user's counter to it, then notifies.
async fn append(
    conn: &mut PgConnection,
    user_id: &str,
    seq: i64,
    role: Role,
    reply: &Reply,
    client_id: Option<&str>,
    source_key: Option<&str>,
) -> Result<()> {
    sqlx::query!(
        "WITH m AS (
             INSERT INTO floe.messages (user_id, seq, role, kind, agent, content, widget, client_id, source_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         )
         UPDATE floe.users SET last_seq = $2 WHERE id = $1",
        user_id,
        seq,
        role.as_str(),
        reply.kind,
        reply.agent,
        reply.content,
        reply.widget,
        client_id,
        source_key,
    )
    .execute(&mut *conn)
    .await?;
    let payload = json!({ "user_id": user_id, "kind": "message", "seq": seq });
    notify(conn, &payload.to_string()).await
}

/// Sends a piece of a reply being written on [`CHANNEL_CHAT_STREAM`]; it is
/// stored nowhere (outside a transaction it goes out at once).
pub async fn notify_reply_chunk(db: impl PgExecutor<'_>, chunk: &ReplyChunk) -> Result<()> {
    let payload = chunk.payload();
    sqlx::query!("SELECT pg_notify($1, $2)", CHANNEL_CHAT_STREAM, payload)
        .execute(db)
        .await?;
    Ok(())
}

async fn notify(conn: &mut PgConnection, payload: &str) -> Result<()> {
    sqlx::query!("SELECT pg_notify($1, $2)", CHANNEL_CHAT, payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores the user's message and signals `user_message` to `workflow`
/// (with the text and the message's sequence number), in the caller's
/// transaction. A client id posted before changes nothing and returns the
/// first message's number.
pub async fn post_user_message(
    conn: &mut PgConnection,
    user_id: &str,
    workflow: Uuid,
    content: &str,
    client_id: Option<&str>,
) -> Result<Posted> {
    let last = lock_user(conn, user_id).await?;
    if let Some(client_id) = client_id {
        let earlier = sqlx::query_scalar!(
            "SELECT seq FROM floe.messages WHERE user_id = $1 AND client_id = $2",
            user_id,
            client_id
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(seq) = earlier {
            return Ok(Posted {
                seq,
                duplicate: true,
            });
        }
    }
    let seq = last + 1;
    let message = Reply {
        kind: "message".into(),
        agent: None,
        content: content.to_owned(),
        widget: None,
    };
    append(conn, user_id, seq, Role::User, &message, client_id, None).await?;
    let payload = json!({ "content": content, "seq": seq, "client_id": client_id });
    workflows::signal(
        conn,
        workflow,
        "user_message",
        &payload,
        Some(&format!("message:{seq}")),
    )
    .await?;
    Ok(Posted {
        seq,
        duplicate: false,
    })
}

/// Stores an assistant message written by `source_key` (a workflow's
/// activity), once however often it is written; returns its number.
pub async fn post_reply(
    conn: &mut PgConnection,
    user_id: &str,
    source_key: &str,
    reply: &Reply,
) -> Result<i64> {
    let last = lock_user(conn, user_id).await?;
    let earlier = sqlx::query_scalar!(
        "SELECT seq FROM floe.messages WHERE user_id = $1 AND source_key = $2",
        user_id,
        source_key
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(seq) = earlier {
        return Ok(seq);
    }
    let seq = last + 1;
    append(
        conn,
        user_id,
        seq,
        Role::Assistant,
        reply,
        None,
        Some(source_key),
    )
    .await?;
    Ok(seq)
}

/// The user's messages after sequence `after`, oldest first, at most `limit`.
pub async fn messages_after(
    db: impl PgExecutor<'_>,
    user_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Message>> {
    let rows = sqlx::query!(
        r#"SELECT seq, role, kind, agent, content, widget, client_id, created_at
           FROM floe.messages WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"#,
        user_id,
        after,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Message {
            seq: r.seq,
            role: if r.role == "user" {
                Role::User
            } else {
                Role::Assistant
            },
            kind: r.kind,
            agent: r.agent,
            content: r.content,
            widget: r.widget,
            client_id: r.client_id,
            created_at: r.created_at,
        })
        .collect())
}

/// Adds items to the user's inbox (an item whose source key is there
/// already is skipped); returns how many were added.
pub async fn add_inbox_items(
    conn: &mut PgConnection,
    user_id: &str,
    items: &[NewInboxItem],
) -> Result<u64> {
    let titles: Vec<&str> = items.iter().map(|i| i.title.as_str()).collect();
    let due: Vec<Option<time::Date>> = items.iter().map(|i| i.due_date).collect();
    let tags: Vec<String> = items
        .iter()
        .map(|i| serde_json::to_string(&i.tags).unwrap_or_else(|_| "[]".into()))
        .collect();
    let keys: Vec<&str> = items.iter().map(|i| i.source_key.as_str()).collect();
    let added = sqlx::query!(
        r#"INSERT INTO floe.inbox_items (user_id, title, due_date, tags, source_key)
           SELECT $1, t.title, t.due, ARRAY(SELECT jsonb_array_elements_text(t.tags::jsonb)), t.key
           FROM unnest($2::text[], $3::date[], $4::text[], $5::text[]) AS t(title, due, tags, key)
           ON CONFLICT (user_id, source_key) DO NOTHING"#,
        user_id,
        &titles as &[&str],
        &due as &[Option<time::Date>],
        &tags,
        &keys as &[&str],
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if added > 0 {
        notify(
            conn,
            &json!({ "user_id": user_id, "kind": "inbox" }).to_string(),
        )
        .await?;
    }
    Ok(added)
}

/// The user's inbox, oldest first.
pub async fn inbox(db: impl PgExecutor<'_>, user_id: &str) -> Result<Vec<InboxItem>> {
    Ok(sqlx::query_as!(
        InboxItem,
        "SELECT id, title, due_date, tags, created_at FROM floe.inbox_items
         WHERE user_id = $1 ORDER BY created_at, source_key",
        user_id
    )
    .fetch_all(db)
    .await?)
}

/// Signs `user_id` in: stores the SHA-256 of `token` (never the token),
/// valid for `ttl_secs`.
pub async fn create_session(
    db: impl PgExecutor<'_>,
    token: &str,
    user_id: &str,
    ttl_secs: i64,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO floe.sessions (token_hash, user_id, expires_at)
         VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), $2, now() + make_interval(secs => $3))",
        token,
        user_id,
        ttl_secs as f64,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The user `token` signs in, unless it is unknown or expired.
pub async fn session_user(db: impl PgExecutor<'_>, token: &str) -> Result<Option<User>> {
    Ok(sqlx::query_as!(
        User,
        "SELECT u.id, u.display_name, u.last_seq, u.created_at
         FROM floe.sessions s JOIN floe.users u ON u.id = s.user_id
         WHERE s.token_hash = encode(sha256(convert_to($1, 'UTF8')), 'hex') AND s.expires_at > now()",
        token
    )
    .fetch_optional(db)
    .await?)
}

/// Starts the workflow of `kind` that serves `user_id` (business key
/// `{kind}/{user_id}`) unless one is open, and links it to the user, in the
/// caller's transaction.
pub async fn start_workflow_for(
    conn: &mut PgConnection,
    user_id: &str,
    kind: &str,
    input: &serde_json::Value,
    definition_version: i32,
) -> Result<workflows::Started> {
    let key = format!("{kind}/{user_id}");
    let started = workflows::start(conn, kind, &key, input, definition_version, None).await?;
    link_workflow(&mut *conn, user_id, kind, &key, started.id).await?;
    Ok(started)
}

/// The workflow of `kind` that serves `user_id`, as the source spec names
/// it: its business key (`workflow_id`) and its run's id.
pub async fn workflow_instance(
    db: impl PgExecutor<'_>,
    user_id: &str,
    kind: &str,
) -> Result<Option<(String, Uuid)>> {
    let row = sqlx::query!(
        "SELECT workflow_id, run_id FROM floe.workflow_instances WHERE user_id = $1 AND kind = $2",
        user_id,
        kind
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.workflow_id, r.run_id)))
}
