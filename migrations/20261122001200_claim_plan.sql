-- The claim, as a function whose plan cannot depend on the table's statistics.
--
-- A claim must walk jobs_claim in (priority, run_at, id) order and stop after
-- `limit` rows. With the plain statement, the planner chose that only when its
-- statistics said the table was large. A table that fills faster than
-- autovacuum analyzes it (a fresh database, a burst of 700,000 jobs: the
-- launcher visits a database about once a minute, and a new one may wait
-- longer) was planned as nearly empty: a bitmap scan of every available job
-- and a sort, on every claim. Measured with floe-bench (W1 with --jobs 700000):
-- 625,000 index entries read per claim and 4,200 jobs/s, against 33,700 with
-- 20,000 jobs. The planner settings attached to this function leave it the
-- ordered index scan (and a primary-key nested loop for the UPDATE) whatever
-- the statistics say; they apply only while the function runs. PL/pgSQL keeps
-- the plan from one call to the next, so the claim is not re-planned each
-- time either.
CREATE FUNCTION floe.claim_jobs(
    p_queue text, p_kinds text[], p_owner text, p_limit bigint, p_lease_ms double precision
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
BEGIN
    RETURN QUERY
    WITH picked AS (
        SELECT j.id FROM floe.jobs j
         WHERE j.state = 'available' AND j.queue = p_queue AND j.kind = ANY(p_kinds)
         ORDER BY j.priority, j.run_at, j.id
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
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
    'Claims up to p_limit available jobs of p_kinds on p_queue for p_owner (FOR UPDATE SKIP LOCKED, priority then run_at then id), leased for p_lease_ms; the planner settings keep the ordered index scan whatever the statistics say';
