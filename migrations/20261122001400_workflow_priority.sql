-- A workflow kind's jobs carry its priority.
--
-- Every job of a workflow (its transitions' `floe.advance` and its
-- activities' `floe.activity`) had priority 0, like any other job in the
-- queue. Under load they waited behind the whole backlog, once per hop: in
-- W6l (W4 at 50 % of W1 on the same queue) a person's reply, three
-- activities and four transitions, took 13 s at p99 and up to 39 s, where
-- the idle figure is 39 ms. A definition now declares its kind's priority
-- (`Workflow::PRIORITY`, lower first); workers register it here, the
-- engine's own enqueues take it from the definition, and the three SQL
-- paths below (start, delivery, timer) read it from this table. A kind not
-- registered here gets 0.
ALTER TABLE floe.definitions ADD COLUMN priority smallint NOT NULL DEFAULT 0;
COMMENT ON COLUMN floe.definitions.priority IS
    'priority of this kind''s advance and activity jobs (floe.jobs.priority: lower first)';

CREATE OR REPLACE FUNCTION floe.workflow_start(
    p_id uuid,
    p_kind text,
    p_key text,
    p_input jsonb,
    p_definition_version integer,
    p_parent_id uuid DEFAULT NULL,
    OUT workflow_id uuid,
    OUT created boolean
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    FOR attempt IN 1..3 LOOP
        INSERT INTO floe.workflows (id, kind, key, state, input, definition_version, parent_id, next_seq)
        VALUES (p_id, p_kind, p_key, 'starting', p_input, p_definition_version, p_parent_id, 1)
        ON CONFLICT (kind, key) WHERE status IN ('running', 'waiting') DO NOTHING
        RETURNING id INTO workflow_id;
        IF workflow_id IS NOT NULL THEN
            INSERT INTO floe.inbox (workflow_id, seq, event, payload) VALUES (p_id, 1, 'start', p_input);
            INSERT INTO floe.jobs (kind, payload, state, unique_key, max_attempts, priority)
            VALUES ('floe.advance', jsonb_build_object('workflow_id', p_id), 'available', p_id::text, 1000,
                    coalesce((SELECT d.priority FROM floe.definitions d WHERE d.kind = p_kind), 0));
            created := true;
            RETURN;
        END IF;
        -- A new statement, a new snapshot (read committed): it sees the open
        -- workflow the INSERT waited for, if that committed meanwhile.
        SELECT w.id INTO workflow_id FROM floe.workflows w
         WHERE w.kind = p_kind AND w.key = p_key AND w.status IN ('running', 'waiting');
        IF workflow_id IS NOT NULL THEN
            created := false;
            RETURN;
        END IF;
        -- It finished between the two statements: start again.
    END LOOP;
    RAISE EXCEPTION 'workflow % with key % keeps finishing while being started', p_kind, p_key
        USING ERRCODE = '40001';
END
$$;

CREATE OR REPLACE FUNCTION floe.workflow_deliver(
    p_workflow_id uuid,
    p_event text,
    p_name text,
    p_payload jsonb,
    p_idempotency_key text DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    delivered bigint;
BEGIN
    -- The row lock taken by the UPDATE orders concurrent deliveries; the
    -- inbox's unique index settles a race between two with the same key
    -- (the loser leaves a gap in the sequence, which is harmless).
    WITH w AS (
        UPDATE floe.workflows SET next_seq = next_seq + 1
         WHERE id = p_workflow_id AND status IN ('running', 'waiting')
           AND (p_idempotency_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM floe.inbox i WHERE i.workflow_id = p_workflow_id AND i.idempotency_key = p_idempotency_key))
        RETURNING next_seq, kind
    ), ins AS (
        INSERT INTO floe.inbox (workflow_id, seq, event, name, payload, idempotency_key)
        SELECT p_workflow_id, w.next_seq, p_event, p_name, p_payload, p_idempotency_key FROM w
        ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING seq
    ), job AS (
        INSERT INTO floe.jobs (kind, payload, state, unique_key, max_attempts, priority)
        SELECT 'floe.advance', jsonb_build_object('workflow_id', p_workflow_id), 'available', p_workflow_id::text, 1000,
               coalesce((SELECT d.priority FROM floe.definitions d WHERE d.kind = w.kind), 0)
          FROM ins, w
        ON CONFLICT (queue, kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
        DO NOTHING
    )
    SELECT ins.seq INTO delivered FROM ins;
    RETURN delivered;
END
$$;

CREATE OR REPLACE FUNCTION floe.fire_timers(p_limit bigint)
RETURNS TABLE (kind text, lateness double precision)
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT w.id, w.deadline FROM floe.workflows w
         WHERE w.deadline <= now() AND w.deadline IS NOT NULL AND w.status IN ('running', 'waiting')
         ORDER BY w.deadline
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    ), fired AS (
        UPDATE floe.workflows w SET deadline = NULL, next_seq = w.next_seq + 1
          FROM due WHERE w.id = due.id
        RETURNING w.id, w.kind, w.next_seq, w.deadline_reason, w.deadline_version, due.deadline AS was_due
    ), events AS (
        INSERT INTO floe.inbox (workflow_id, seq, event, name, payload)
        SELECT f.id, f.next_seq, 'timer', f.deadline_reason, jsonb_build_object('deadline_version', f.deadline_version)
          FROM fired f
    ), jobs AS (
        INSERT INTO floe.jobs (kind, payload, state, unique_key, max_attempts, priority)
        SELECT 'floe.advance', jsonb_build_object('workflow_id', f.id), 'available', f.id::text, 1000,
               coalesce((SELECT d.priority FROM floe.definitions d WHERE d.kind = f.kind), 0)
          FROM fired f
        ON CONFLICT (queue, kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
        DO NOTHING
    )
    SELECT f.kind, greatest(extract(epoch FROM clock_timestamp() - f.was_due), 0)::float8 FROM fired f;
END
$$;

CREATE OR REPLACE VIEW floe_ops.definitions AS
SELECT kind, version, registered_at, registered_by, priority FROM floe.definitions;
