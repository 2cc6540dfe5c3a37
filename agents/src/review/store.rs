//! The code review's tables: `floe.notifications` (what people are told)
//! and `floe.merges` (what was merged). Each row is written once per
//! workflow activity (`source_key`), so an activity that runs twice writes
//! once and answers the same.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// A notice for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    /// Who it is for.
    pub recipient: String,
    /// What kind (`review_requested`, `escalation`).
    pub kind: String,
    /// One line.
    pub subject: String,
    /// The details, as text.
    #[serde(default)]
    pub body: String,
    /// The details, as data.
    #[serde(default)]
    pub payload: Value,
}

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// Who it is for.
    pub recipient: String,
    /// What kind.
    pub kind: String,
    /// One line.
    pub subject: String,
    /// The details.
    pub body: String,
    /// The details, as data.
    pub payload: Value,
    /// The workflow that sent it.
    pub workflow_id: Option<Uuid>,
}

/// Records `notice` from `workflow_id` once per `source_key`; returns its id
/// (the existing one when it was recorded before).
pub async fn notify(
    db: impl PgExecutor<'_> + Copy,
    workflow_id: Uuid,
    source_key: &str,
    notice: &NewNotification,
) -> sqlx::Result<i64> {
    let payload = if notice.payload.is_null() {
        Value::Object(Default::default())
    } else {
        notice.payload.clone()
    };
    let inserted = sqlx::query_scalar!(
        "INSERT INTO floe.notifications (recipient, kind, subject, body, payload, workflow_id, source_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (source_key) DO NOTHING
         RETURNING id",
        notice.recipient,
        notice.kind,
        notice.subject,
        notice.body,
        payload,
        workflow_id,
        source_key,
    )
    .fetch_optional(db)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar!(
                "SELECT id FROM floe.notifications WHERE source_key = $1",
                source_key
            )
            .fetch_one(db)
            .await
        }
    }
}

/// The notifications a workflow sent, oldest first.
pub async fn notifications_of(
    db: impl PgExecutor<'_>,
    workflow_id: Uuid,
) -> sqlx::Result<Vec<Notification>> {
    sqlx::query_as!(
        Notification,
        r#"SELECT id, recipient, kind, subject, body, payload, workflow_id
           FROM floe.notifications WHERE workflow_id = $1 ORDER BY id"#,
        workflow_id
    )
    .fetch_all(db)
    .await
}

/// A merge to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMerge {
    /// The change's title.
    pub title: String,
    /// Who wrote it.
    pub author: String,
    /// Who approved it.
    pub approved_by: String,
    /// The revision approved.
    pub revision: u32,
    /// Its code.
    pub code: String,
}

/// Records `merge` from `workflow_id` once per `source_key`; returns its id
/// and the code's md5.
pub async fn merge(
    db: impl PgExecutor<'_> + Copy,
    workflow_id: Uuid,
    source_key: &str,
    merge: &NewMerge,
) -> sqlx::Result<(i64, String)> {
    let revision = i32::try_from(merge.revision).unwrap_or(i32::MAX);
    let inserted = sqlx::query!(
        r#"INSERT INTO floe.merges (workflow_id, title, author, approved_by, revision, code, source_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (source_key) DO NOTHING
           RETURNING id, code_md5 AS "code_md5!""#,
        workflow_id,
        merge.title,
        merge.author,
        merge.approved_by,
        revision,
        merge.code,
        source_key,
    )
    .fetch_optional(db)
    .await?;
    match inserted {
        Some(row) => Ok((row.id, row.code_md5)),
        None => {
            let row = sqlx::query!(
                r#"SELECT id, code_md5 AS "code_md5!" FROM floe.merges WHERE source_key = $1"#,
                source_key
            )
            .fetch_one(db)
            .await?;
            Ok((row.id, row.code_md5))
        }
    }
}
