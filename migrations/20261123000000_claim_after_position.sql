-- A claim can start after a position in the claim order instead of at the
-- head of the queue.
--
-- Claiming moves a job out of jobs_claim (state = 'available'), but its
-- index entry stays until no snapshot can see the old row version. While a
-- transaction holds an old snapshot (a session left idle in transaction, a
-- long report), every job claimed since is such an entry, at the head of
-- the claim order, and every claim from the head fetches each of their heap
-- rows before it reaches a claimable one: the claim's cost grows with the
-- jobs done since the snapshot. In floe-bench's W9 (30 % of W1, a
-- transaction idle for five minutes) completion fell from 8,000 to ~800 jobs
-- a second and a backlog of two million formed (docs/BENCHMARKS.md, "Soak").
--
-- With p_after_* given, the claim takes the jobs above that key — the
-- row comparison is the index scan's start, so the entries below it are
-- never read — and, first, any of a more urgent priority than the
-- position's (read from the head of their priorities: few, in a queue where
-- they are the exception). Jobs that land below the position in the same
-- priority (a job released by a stopping worker, which keeps its run_at; a
-- producer's transaction that committed long after it began) are left to the next
-- claim from the head; the worker decides when to make one
-- (worker/src/backend.rs). Without p_after_*, the claim is the same as
-- before: from the head. Old workers' five-argument calls still resolve to
-- this function.
DROP FUNCTION floe.claim_jobs(text, text[], text, bigint, double precision);

CREATE FUNCTION floe.claim_jobs(
    p_queue text, p_kinds text[], p_owner text, p_limit bigint, p_lease_ms double precision,
    p_after_priority smallint DEFAULT NULL, p_after_run_at timestamptz DEFAULT NULL,
    p_after_id bigint DEFAULT NULL
) RETURNS TABLE (
    id bigint, queue text, kind text, payload jsonb, priority smallint, attempts integer,
    max_attempts integer, lease_token bigint, run_at timestamptz, created_at timestamptz,
    trace_id text
)
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
#variable_conflict use_column
DECLARE
    -- No position: below every key, and no priority more urgent than it.
    v_priority smallint := coalesce(p_after_priority, -32768);
    v_run_at timestamptz := coalesce(p_after_run_at, '-infinity');
    v_id bigint := coalesce(p_after_id, 0);
BEGIN
    RETURN QUERY
    WITH more_urgent AS (
        SELECT j.id FROM floe.jobs j
         WHERE j.state = 'available' AND j.queue = p_queue AND j.kind = ANY(p_kinds)
           AND j.priority < v_priority
         ORDER BY j.priority, j.run_at, j.id
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    ), above AS (
        SELECT j.id FROM floe.jobs j
         WHERE j.state = 'available' AND j.queue = p_queue AND j.kind = ANY(p_kinds)
           AND (j.priority, j.run_at, j.id) > (v_priority, v_run_at, v_id)
         ORDER BY j.priority, j.run_at, j.id
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    ), picked AS (
        -- Read lazily: `above` is scanned (and its rows locked) only for
        -- what `more_urgent` leaves of the limit.
        SELECT m.id FROM more_urgent m
        UNION ALL
        SELECT a.id FROM above a
        LIMIT p_limit
    )
    UPDATE floe.jobs j
       SET state = 'running',
           attempts = j.attempts + 1,
           unique_key = NULL,
           lease_owner = p_owner,
           lease_token = nextval('floe.job_lease_tokens'),
           lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
           attempted_at = now()
      FROM picked
     WHERE j.id = picked.id
    RETURNING j.id, j.queue, j.kind, j.payload, j.priority, j.attempts, j.max_attempts,
              j.lease_token, j.run_at, j.created_at, j.trace_id;
END
$$;

COMMENT ON FUNCTION floe.claim_jobs IS
    'Claims up to p_limit available jobs of p_kinds on p_queue for p_owner (FOR UPDATE SKIP LOCKED, priority then run_at then id), leased for p_lease_ms: from the head of the queue, or, given p_after_*, those of a more urgent priority and then those above that key; the planner settings keep the ordered index scans whatever the statistics say';
