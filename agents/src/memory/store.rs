//! Every SQL statement on `floe.memories` and `floe.memory_history`. Callers
//! pass a pool, a connection or a transaction (`impl PgExecutor`), so one
//! update's ADD/UPDATE/DELETE decisions commit together.
//!
//! Each statement filters by the user, and reads by the whole [`Scope`]: a
//! memory id alone never reaches another user's row.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{HistoryEntry, MemoryChange, MemoryEvent, MemoryRecord, Scope};

/// How the search score is made: `TEXT_WEIGHT × text + VECTOR_WEIGHT ×
/// cosine` when both the query and the memory have embeddings.
pub(super) const TEXT_WEIGHT: f64 = 0.3;
/// See [`TEXT_WEIGHT`].
pub(super) const VECTOR_WEIGHT: f64 = 0.7;

/// The live memories of `scope` best matching `query` (and `embedding`, when
/// given), best first; see [`super::Memory::search`] for the scoring.
pub(super) async fn search(
    db: impl PgExecutor<'_>,
    scope: &Scope,
    query: &str,
    embedding: Option<&[f32]>,
    limit: i64,
    threshold: f64,
) -> sqlx::Result<Vec<MemoryRecord>> {
    // The query's lexemes OR-ed (plainto_tsquery would AND them and miss
    // most facts); the tsquery is built from lexemes already normalized, so
    // it is cast, not parsed again with a configuration.
    sqlx::query_as!(
        MemoryRecord,
        r#"
        WITH q AS (
            SELECT lexemes,
                   CASE WHEN cardinality(lexemes) > 0
                        THEN array_to_string(ARRAY(SELECT quote_literal(l) FROM unnest(lexemes) AS l), ' | ')::tsquery
                   END AS tsq
              FROM (SELECT ARRAY(SELECT DISTINCT l
                                   FROM unnest(tsvector_to_array(to_tsvector('english', $4::text))) AS l
                                  ORDER BY 1) AS lexemes) AS parsed
        ),
        scored AS (
            SELECT m.id, m.agent_id, m.run_id, m.memory, m.metadata, m.created_at, m.updated_at,
                   CASE WHEN cardinality(q.lexemes) = 0 THEN 0::float8
                        ELSE cardinality(ARRAY(SELECT unnest(q.lexemes)
                                               INTERSECT
                                               SELECT unnest(tsvector_to_array(m.tsv))))::float8
                             / cardinality(q.lexemes)
                   END AS text_score,
                   floe.cosine_similarity(m.embedding, $5::real[]) AS cosine,
                   coalesce(ts_rank(m.tsv, q.tsq, 1), 0)::float8 AS rank,
                   (q.tsq IS NULL AND $5::real[] IS NULL) AS recent_only
              FROM floe.memories m CROSS JOIN q
             WHERE m.user_id = $1
               AND ($2::text IS NULL OR m.agent_id = $2)
               AND ($3::text IS NULL OR m.run_id = $3)
               AND m.deleted_at IS NULL
               AND (m.tsv @@ q.tsq OR $5::real[] IS NOT NULL OR q.tsq IS NULL)
        ),
        blended AS (
            SELECT *,
                   CASE WHEN cosine IS NULL THEN text_score
                        ELSE $8::float8 * text_score + $9::float8 * greatest(cosine, 0)
                   END AS score
              FROM scored
        )
        SELECT id AS "id!", agent_id, run_id, memory AS "memory!", metadata AS "metadata!",
               score AS "score!", created_at AS "created_at!", updated_at AS "updated_at!"
          FROM blended
         WHERE recent_only OR (score > 0 AND score >= $6::float8)
         ORDER BY score DESC, rank DESC, updated_at DESC, id DESC
         LIMIT $7
        "#,
        scope.user_id,
        scope.agent_id,
        scope.run_id,
        query,
        embedding as Option<&[f32]>,
        threshold,
        limit,
        TEXT_WEIGHT,
        VECTOR_WEIGHT,
    )
    .fetch_all(db)
    .await
}

/// Every live memory of `scope`, oldest first (ids are UUIDv7: the rows
/// of one transaction keep their order), with score 0.
pub(super) async fn all(db: impl PgExecutor<'_>, scope: &Scope) -> sqlx::Result<Vec<MemoryRecord>> {
    sqlx::query_as!(
        MemoryRecord,
        r#"
        SELECT id, agent_id, run_id, memory, metadata, 0::float8 AS "score!", created_at, updated_at
          FROM floe.memories
         WHERE user_id = $1
           AND ($2::text IS NULL OR agent_id = $2)
           AND ($3::text IS NULL OR run_id = $3)
           AND deleted_at IS NULL
         ORDER BY created_at, id
        "#,
        scope.user_id,
        scope.agent_id,
        scope.run_id,
    )
    .fetch_all(db)
    .await
}

/// What happened to memory `id` of `scope`, oldest first (nothing when the
/// memory is not in the scope).
pub(super) async fn history(
    db: impl PgExecutor<'_>,
    scope: &Scope,
    id: Uuid,
) -> sqlx::Result<Vec<HistoryEntry>> {
    let rows = sqlx::query!(
        r#"
        SELECT h.id, h.memory_id, h.event, h.old_memory, h.new_memory, h.actor, h.created_at
          FROM floe.memory_history h
          JOIN floe.memories m ON m.id = h.memory_id
         WHERE h.memory_id = $4
           AND h.user_id = $1
           AND m.user_id = $1
           AND ($2::text IS NULL OR m.agent_id = $2)
           AND ($3::text IS NULL OR m.run_id = $3)
         ORDER BY h.id
        "#,
        scope.user_id,
        scope.agent_id,
        scope.run_id,
        id,
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(HistoryEntry {
                id: row.id,
                memory_id: row.memory_id,
                event: row
                    .event
                    .parse()
                    .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
                old_memory: row.old_memory,
                new_memory: row.new_memory,
                actor: row.actor,
                created_at: row.created_at,
            })
        })
        .collect()
}

/// Serializes memory writes of one user until the transaction ends, so
/// concurrent updates do not both add the same fact.
pub(super) async fn lock_user(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('floe.memories:' || $1::text, 0))",
        user_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Adds `text` to `scope` as memory `id` with its ADD history row; returns
/// the id, or `None` when an identical live memory (same hash) is already
/// there.
pub(super) async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    scope: &Scope,
    text: &str,
    metadata: &Value,
    embedding: Option<&[f32]>,
    actor: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        r#"
        WITH ins AS (
            INSERT INTO floe.memories (id, user_id, agent_id, run_id, memory, metadata, embedding)
            SELECT $8, $1, $2, $3, $4, $5, $6
             WHERE NOT EXISTS (
                   SELECT 1 FROM floe.memories
                    WHERE user_id = $1
                      AND agent_id IS NOT DISTINCT FROM $2
                      AND run_id IS NOT DISTINCT FROM $3
                      AND hash = md5($4)
                      AND deleted_at IS NULL)
            RETURNING id
        ),
        hist AS (
            INSERT INTO floe.memory_history (memory_id, user_id, event, old_memory, new_memory, actor)
            SELECT id, $1, 'ADD', NULL, $4, $7 FROM ins
        )
        SELECT id AS "id!" FROM ins
        "#,
        scope.user_id,
        scope.agent_id,
        scope.run_id,
        text,
        metadata,
        embedding as Option<&[f32]>,
        actor,
        id,
    )
    .fetch_optional(db)
    .await
}

/// Replaces the text of live memory `id` of `user_id` (merging `metadata`
/// into its own) with its UPDATE history row; returns the old text, or
/// `None` when there is no such live memory.
pub(super) async fn update(
    db: impl PgExecutor<'_>,
    user_id: &str,
    id: Uuid,
    text: &str,
    metadata: &Value,
    embedding: Option<&[f32]>,
    actor: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        r#"
        WITH old AS (
            SELECT id, memory FROM floe.memories
             WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL
             FOR UPDATE
        ),
        upd AS (
            UPDATE floe.memories m
               SET memory = $3, metadata = m.metadata || $4, embedding = $5, updated_at = now()
              FROM old
             WHERE m.id = old.id
            RETURNING m.id, old.memory AS old_memory
        ),
        hist AS (
            INSERT INTO floe.memory_history (memory_id, user_id, event, old_memory, new_memory, actor)
            SELECT id, $2, 'UPDATE', old_memory, $3, $6 FROM upd
        )
        SELECT old_memory AS "old_memory!" FROM upd
        "#,
        id,
        user_id,
        text,
        metadata,
        embedding as Option<&[f32]>,
        actor,
    )
    .fetch_optional(db)
    .await
}

/// Soft-deletes live memory `id` of `user_id` with its DELETE history row;
/// returns its text, or `None` when there is no such live memory.
pub(super) async fn delete(
    db: impl PgExecutor<'_>,
    user_id: &str,
    id: Uuid,
    actor: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        r#"
        WITH old AS (
            SELECT id, memory FROM floe.memories
             WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL
             FOR UPDATE
        ),
        del AS (
            UPDATE floe.memories m
               SET deleted_at = now(), updated_at = now()
              FROM old
             WHERE m.id = old.id
            RETURNING m.id, old.memory
        ),
        hist AS (
            INSERT INTO floe.memory_history (memory_id, user_id, event, old_memory, new_memory, actor)
            SELECT id, $2, 'DELETE', memory, NULL, $3 FROM del
        )
        SELECT memory AS "memory!" FROM del
        "#,
        id,
        user_id,
        actor,
    )
    .fetch_optional(db)
    .await
}

/// Soft-deletes every live memory of `scope`, each with its DELETE history
/// row.
pub(super) async fn delete_all(
    db: impl PgExecutor<'_>,
    scope: &Scope,
    actor: &str,
) -> sqlx::Result<Vec<MemoryChange>> {
    let rows = sqlx::query!(
        r#"
        WITH del AS (
            UPDATE floe.memories
               SET deleted_at = now(), updated_at = now()
             WHERE user_id = $1
               AND ($2::text IS NULL OR agent_id = $2)
               AND ($3::text IS NULL OR run_id = $3)
               AND deleted_at IS NULL
            RETURNING id, memory, created_at
        ),
        hist AS (
            INSERT INTO floe.memory_history (memory_id, user_id, event, old_memory, new_memory, actor)
            SELECT id, $1, 'DELETE', memory, NULL, $4 FROM del
        )
        SELECT id, memory FROM del ORDER BY created_at, id
        "#,
        scope.user_id,
        scope.agent_id,
        scope.run_id,
        actor,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| MemoryChange {
            id: row.id,
            event: MemoryEvent::Delete,
            old_memory: Some(row.memory),
            new_memory: None,
        })
        .collect())
}
