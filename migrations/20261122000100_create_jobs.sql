-- floe's job queue. Signals, activities and timers all become jobs here.
--
-- A job's life (floe.job_state):
--   scheduled  inserted with a future run_at; the promoter (every worker runs
--              one) moves it to available when run_at comes.
--   available  waiting to be claimed. Workers claim with FOR UPDATE SKIP LOCKED
--              in (priority, run_at, id) order and move it to running.
--   running    leased: lease_owner holds it until lease_expires_at, extended
--              by heartbeats. Completion DELETEs the row, but only if
--              lease_token still matches (fencing). An expired lease is
--              rescued by any worker: back to available, or dead when out of
--              attempts.
--   retrying   an attempt failed; waits for its backoff (run_at), then the
--              promoter makes it available again.
--   dead       out of attempts or failed with a non-retryable error. Kept,
--              with last_error, until an operator retries or deletes it.
-- Completed jobs are deleted at once: the queue table holds only live work.
CREATE TYPE floe.job_state AS ENUM ('scheduled', 'available', 'running', 'retrying', 'dead');

-- Fencing tokens: every claim takes a new one.
CREATE SEQUENCE floe.job_lease_tokens AS bigint;

CREATE TABLE floe.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text NOT NULL DEFAULT 'default' CHECK (queue <> '' AND length(queue) <= 128),
    kind             text NOT NULL CHECK (kind <> '' AND length(kind) <= 256),
    payload          jsonb NOT NULL DEFAULT '{}',
    priority         smallint NOT NULL DEFAULT 0,
    state            floe.job_state NOT NULL,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer NOT NULL DEFAULT 20 CHECK (max_attempts >= 1),
    -- At most one job per (queue, kind, unique_key) waits for its first run;
    -- the key is released when the job is claimed.
    unique_key       text,
    lease_owner      text,
    lease_token      bigint,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempted_at     timestamptz,
    CONSTRAINT jobs_lease_iff_running CHECK (
        (state = 'running') = (lease_owner IS NOT NULL AND lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)
    )
);

COMMENT ON TABLE floe.jobs IS 'floe job queue: live work only (completed jobs are deleted); dead jobs kept for operators';

-- Each row sits in at most one of the partial indexes below at a time, so an
-- immediate job costs the primary key plus the claim index only.
CREATE INDEX jobs_claim ON floe.jobs (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX jobs_due ON floe.jobs (run_at) WHERE state IN ('scheduled', 'retrying');
CREATE INDEX jobs_leases ON floe.jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_dead ON floe.jobs (kind, id) WHERE state = 'dead';
CREATE UNIQUE INDEX jobs_unique_waiting ON floe.jobs (queue, kind, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available');

-- A high-churn table: vacuum it early and without throttling so dead tuples
-- from claims and deletes do not pile up.
ALTER TABLE floe.jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.05,
    fillfactor = 90
);

-- Wake-ups. One NOTIFY per inserting statement and queue (never per job: a
-- NOTIFY serialises commits), on floe_jobs_available for jobs claimable now,
-- and on floe_jobs_scheduled with the earliest run_at (epoch milliseconds)
-- for future ones, so sleeping promoters wake on time.
CREATE FUNCTION floe.jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('floe_jobs_available', q)
       FROM (SELECT DISTINCT queue AS q FROM inserted WHERE state = 'available') d;
    PERFORM pg_notify('floe_jobs_scheduled', floor(extract(epoch FROM m) * 1000)::bigint::text)
       FROM (SELECT min(run_at) AS m FROM inserted WHERE state = 'scheduled') d
      WHERE m IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_inserted
    AFTER INSERT ON floe.jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION floe.jobs_notify_inserted();

-- For operators and for the application's own SQL (transactions, triggers):
-- the same enqueue and retry the Rust API performs.

-- Enqueues a job; returns its id, or NULL when a job with the same
-- unique_key is already waiting.
CREATE FUNCTION floe.enqueue(
    kind text,
    payload jsonb DEFAULT '{}',
    run_at timestamptz DEFAULT NULL,
    queue text DEFAULT 'default',
    priority smallint DEFAULT 0,
    max_attempts integer DEFAULT 20,
    unique_key text DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    due timestamptz := coalesce($3, now());
    new_id bigint;
BEGIN
    -- PL/pgSQL rather than SQL: its plan is cached per session, which keeps
    -- this as fast as the same INSERT sent directly.
    INSERT INTO floe.jobs (queue, kind, payload, priority, run_at, state, max_attempts, unique_key)
    VALUES ($4, $1, $2, $5, due, CASE WHEN due <= now() THEN 'available' ELSE 'scheduled' END::floe.job_state, $6, $7)
    ON CONFLICT (queue, kind, unique_key)
       WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
    DO NOTHING
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- Makes a dead (or backing-off) job available now with a fresh attempt
-- budget and wakes the workers; false when no such job is dead or retrying.
CREATE FUNCTION floe.retry_job(job_id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    q text;
BEGIN
    UPDATE floe.jobs SET state = 'available', attempts = 0, run_at = now()
     WHERE id = job_id AND state IN ('dead', 'retrying')
    RETURNING queue INTO q;
    IF q IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('floe_jobs_available', q);
    RETURN true;
END
$$;
