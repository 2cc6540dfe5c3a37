-- The worker registry: one row per running worker process (floe-worker, or
-- floe-api --with-worker), so that an operator can tell whether anything is
-- there to advance workflows and run jobs (`floe doctor`, or psql).
--
-- A worker's life here:
--   registers   at start, with an id new on every start: its lease owner
--               (host:pid:random), the same value as floe.jobs.lease_owner of
--               the jobs it holds;
--   heartbeats  every 5 s (heartbeat_at = now(), the database's clock, so
--               machines' clocks do not matter). It is alive while its last
--               heartbeat is under 30 s old;
--   deregisters on a clean shutdown, after its jobs are drained or released
--               (its row is deleted).
-- A worker that dies (kill -9, a lost machine) leaves its row, no longer
-- heartbeated; live workers delete rows silent for an hour, so a crash stays
-- visible that long.
CREATE TABLE floe.workers (
    id           text PRIMARY KEY CHECK (id <> '' AND length(id) <= 256),
    -- The program: floe-worker, floe-api, floe-testbed.
    name         text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    -- floe's version (the build), for spotting a half-done upgrade.
    version      text NOT NULL,
    queues       text[] NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE floe.workers IS
    'floe worker registry: running workers; alive while heartbeat_at is under 30 s old; deleted on clean shutdown';
