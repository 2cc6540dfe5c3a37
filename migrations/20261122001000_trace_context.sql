-- Trace context: the id that links an HTTP request to the inbox event it
-- delivered, the advance job that applies it, the activities that transition
-- started (and their jobs), and the inbox events carrying their results.
--
-- A row's trace_id is whatever its writer gives; when it gives none, it is the
-- transaction's `floe.trace_id` setting. So the API sets that setting
-- (`set_config('floe.trace_id', <request's trace id>, true)`) and every job
-- and inbox row its transaction writes — through Rust or through the SQL
-- functions — carries the id; an application can do the same from psql or its
-- own transactions:
--
--   BEGIN;
--   SET LOCAL floe.trace_id = 'my-request-42';
--   SELECT floe_ops.signal(...);
--   COMMIT;
--
-- No index: the columns are read with the rows they belong to (a claimed job,
-- a pending event), never searched on the queue's hot path. current_setting is
-- STABLE, so adding the columns rewrites no table (existing rows read NULL).
ALTER TABLE floe.jobs
    ADD COLUMN trace_id text DEFAULT nullif(current_setting('floe.trace_id', true), '');
ALTER TABLE floe.inbox
    ADD COLUMN trace_id text DEFAULT nullif(current_setting('floe.trace_id', true), '');
ALTER TABLE floe.activities
    ADD COLUMN trace_id text DEFAULT nullif(current_setting('floe.trace_id', true), '');

COMMENT ON COLUMN floe.jobs.trace_id IS
    'trace id of the request or job that enqueued it (W3C trace id or request id); the worker logs its job span with it';
COMMENT ON COLUMN floe.inbox.trace_id IS
    'trace id of the request or job that delivered the event; the transition that applies it passes it to the activities it starts';
COMMENT ON COLUMN floe.activities.trace_id IS
    'trace id of the event whose transition started the activity; its job and its result event carry the same';
