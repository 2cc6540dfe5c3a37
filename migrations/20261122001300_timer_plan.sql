-- The timer loop's firing, as a function whose plan cannot depend on the
-- table's statistics (as floe.claim_jobs, 20261122001200_claim_plan.sql).
--
-- Firing must walk workflows_deadline in deadline order and stop after
-- `limit` due rows. On a floe.workflows that autovacuum has not analyzed yet
-- (a new database, a burst of started workflows) the plain statement was
-- planned as for an empty table: a bitmap scan of every due deadline and a
-- sort of them all, for each batch. With 200,000 deadlines due at once (a
-- worker back after a long stop), each batch of 1,000 read and sorted all
-- 200,000 (an external sort, about 100 ms), where the ordered index scan
-- reads about 1,000. The planner settings attached to this function leave it
-- the ordered index scan (and primary-key lookups for the UPDATE) whatever
-- the statistics say; they apply only while the function runs.
CREATE FUNCTION floe.fire_timers(p_limit bigint)
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
        INSERT INTO floe.jobs (kind, payload, state, unique_key, max_attempts)
        SELECT 'floe.advance', jsonb_build_object('workflow_id', f.id), 'available', f.id::text, 1000 FROM fired f
        ON CONFLICT (queue, kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
        DO NOTHING
    )
    SELECT f.kind, greatest(extract(epoch FROM clock_timestamp() - f.was_due), 0)::float8 FROM fired f;
END
$$;

COMMENT ON FUNCTION floe.fire_timers IS
    'Fires up to p_limit due deadlines (deadline order, FOR UPDATE SKIP LOCKED): clears each, puts a timer event in the inbox and enqueues the advance job; returns each kind and its lateness in seconds; the planner settings keep the ordered index scan whatever the statistics say';
