-- User memory, after Mem0: short facts about a user ("Name is Alex",
-- "Uses Notion") that an LLM (or the deterministic offline twin) extracts
-- from conversations and keeps current with ADD / UPDATE / DELETE decisions.
-- floe_agents::memory owns every query on these tables.
--
-- Scope: every memory belongs to a user; agent_id and run_id narrow it to one
-- agent or one run (NULL: the user level). A read filters on the ids it is
-- given (a user-level read sees all of that user's memories, as in Mem0); a
-- write stores the exact ids of its scope. A scope never spans users.
--
-- Search: full-text (tsv, English) blended with cosine similarity of
-- embeddings when an embedding model is configured. pgvector is not
-- available everywhere floe runs, so embeddings are plain real[] and cosine
-- similarity is computed in SQL (floe.cosine_similarity) over the rows of one
-- scope: a user has tens to hundreds of memories, not millions, and the scope
-- index narrows to them before any vector arithmetic. Should a scope ever
-- grow large, pgvector's vector type and an HNSW index are the way up.

CREATE TABLE floe.memories (
    -- floe writes UUIDv7 (time-ordered, so the facts one update adds keep
    -- their order); the default serves other writers.
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     text NOT NULL CHECK (user_id <> ''),
    agent_id    text CHECK (agent_id <> ''),
    run_id      text CHECK (run_id <> ''),
    -- The fact, a short third-person sentence.
    memory      text NOT NULL CHECK (memory <> ''),
    -- md5 of the text, as Mem0 keeps it: finds an identical live fact
    -- without comparing texts.
    hash        text NOT NULL GENERATED ALWAYS AS (md5(memory)) STORED,
    -- Free-form; the offline extractor sets {"category": "name" | "role" |
    -- "goal" | "tool" | ...}.
    metadata    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    -- The text's embedding, when an embedding model was configured when it
    -- was written (NULL otherwise: such rows rank by full text alone).
    embedding   real[],
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', memory)) STORED,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Soft delete: a deleted memory stays, so its history keeps its subject.
    -- Every query but history's reads live rows only.
    deleted_at  timestamptz
);

COMMENT ON TABLE floe.memories IS
    'Mem0-style user memory: one fact per row, scoped by user_id/agent_id/run_id; soft-deleted (deleted_at) so history keeps its subject';

CREATE INDEX memories_scope ON floe.memories (user_id, agent_id, run_id) WHERE deleted_at IS NULL;
CREATE INDEX memories_tsv ON floe.memories USING gin (tsv) WHERE deleted_at IS NULL;

-- What happened to each memory, and who decided it: memory.decide (the LLM),
-- offline (the deterministic twin) or delete_all. Erasing a user is a hard
-- DELETE of their memories; their history goes with them.
CREATE TABLE floe.memory_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    memory_id   uuid NOT NULL REFERENCES floe.memories (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    event       text NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE')),
    old_memory  text,
    new_memory  text,
    actor       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT memory_history_texts CHECK (
        CASE event
            WHEN 'ADD' THEN old_memory IS NULL AND new_memory IS NOT NULL
            WHEN 'UPDATE' THEN old_memory IS NOT NULL AND new_memory IS NOT NULL
            WHEN 'DELETE' THEN old_memory IS NOT NULL AND new_memory IS NULL
        END
    )
);

COMMENT ON TABLE floe.memory_history IS
    'every ADD/UPDATE/DELETE of a memory with the text before and after, oldest first by id';

CREATE INDEX memory_history_memory ON floe.memory_history (memory_id, id);
CREATE INDEX memory_history_user ON floe.memory_history (user_id, id);

-- Cosine similarity of two vectors: NULL when either is NULL, their lengths
-- differ (embeddings of another model) or a norm is 0.
CREATE FUNCTION floe.cosine_similarity(a real[], b real[]) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN s.norm_a > 0 AND s.norm_b > 0
                THEN s.dot / (sqrt(s.norm_a) * sqrt(s.norm_b))
           END
    FROM (
        SELECT sum(x::float8 * y::float8) AS dot,
               sum(x::float8 * x::float8) AS norm_a,
               sum(y::float8 * y::float8) AS norm_b
        FROM unnest(a, b) AS v (x, y)
    ) AS s
    WHERE cardinality(a) = cardinality(b)
$$;

COMMENT ON FUNCTION floe.cosine_similarity(real[], real[]) IS
    'cosine similarity of two embeddings; NULL when lengths differ or a norm is 0';
