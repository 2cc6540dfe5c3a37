-- Wake-ups gathered in the transaction, NOTIFYed by the engine after it
-- commits.
--
-- PostgreSQL serialises the commits of transactions that NOTIFY: each takes
-- one database-wide lock before it commits and holds it until its commit
-- record is flushed (async.c, PreCommit_Notify), so such commits cannot share
-- a WAL flush. Measured here (pgbench, 8 clients, 2026-11-22): INSERT +
-- NOTIFY in one transaction 4,585 tx/s; INSERT, then NOTIFY as a statement
-- of its own, 13,067/s; INSERT alone 19,286/s. In W5 a third of the active
-- sessions' time went to waiting on that lock (wait event Lock:object),
-- 40 % with four worker processes (docs/BENCHMARKS.md, "Scale-out").
--
-- The engine's workflow transaction (engine/src/workflow/advance.rs) now
-- begins with SET LOCAL floe.wake_after_commit = on. In such a transaction
-- this trigger sends nothing: it gathers the queues with jobs claimable now
-- into floe.wake_available (a text[] literal) and the earliest future run_at
-- (epoch ms) into floe.wake_scheduled, both local to the transaction; the
-- engine reads them as its last statement and NOTIFYs them, with the
-- workflow changes, once COMMIT has returned. A NOTIFY outside a writing
-- transaction holds the lock for microseconds and no flush.
--
-- Every other insert (floe.enqueue, floe_ops functions, the application's
-- triggers, the API) notifies in its own transaction as before.
CREATE OR REPLACE FUNCTION floe.jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queues text[];
    earliest bigint;
BEGIN
    IF current_setting('floe.wake_after_commit', true) = 'on' THEN
        SELECT array_agg(DISTINCT q) INTO queues
          FROM (SELECT unnest(coalesce(nullif(current_setting('floe.wake_available', true), '')::text[], '{}')) AS q
                UNION
                SELECT queue FROM inserted WHERE state = 'available') d;
        PERFORM set_config('floe.wake_available', coalesce(queues, '{}')::text, true);
        SELECT floor(extract(epoch FROM min(run_at)) * 1000)::bigint INTO earliest
          FROM inserted WHERE state = 'scheduled';
        IF earliest IS NOT NULL THEN
            PERFORM set_config('floe.wake_scheduled',
                least(earliest, nullif(current_setting('floe.wake_scheduled', true), '')::bigint)::text, true);
        END IF;
        RETURN NULL;
    END IF;
    PERFORM pg_notify('floe_jobs_available', q)
       FROM (SELECT DISTINCT queue AS q FROM inserted WHERE state = 'available') d;
    PERFORM pg_notify('floe_jobs_scheduled', floor(extract(epoch FROM m) * 1000)::bigint::text)
       FROM (SELECT min(run_at) AS m FROM inserted WHERE state = 'scheduled') d
      WHERE m IS NOT NULL;
    RETURN NULL;
END
$$;
