-- The SQL control plane: what an operator (or an application's own
-- transaction, or a trigger) can do and see from SQL, as the API does.
--
-- Two layers:
--   floe.workflow_start, floe.workflow_deliver   the engine's own statements
--       for starting a workflow and putting an event in its inbox, each with
--       its advance job in the same transaction. The Rust store
--       (engine/src/workflow/store.rs start and deliver, which the API, the
--       chat and child workflows use) calls them, so there is one
--       implementation. They never raise for an unknown or finished
--       workflow (they return NULL), because the engine calls them inside
--       transactions that must go on. Beside them, floe.check_length and
--       floe.require_open, the checks the floe_ops functions share.
--   floe_ops.*   the operator's interface: functions that check their
--       arguments as the API does, refuse what the API refuses with an error
--       (SQLSTATE and message), and call the layer above; and views that
--       answer an operator's questions. A schema of its own so that it can be
--       put on an operator's search_path, or granted to an operator role,
--       without the engine's tables; and so that it reads as the stable
--       interface while floe.* is the engine's storage.
--
-- SQLSTATEs raised by floe_ops functions:
--   22023 invalid_parameter_value           an argument the API would refuse
--   42704 undefined_object                  a workflow kind no process has registered
--   P0002 no_data_found                     no such workflow, activity or job
--   55000 object_not_in_prerequisite_state  a finished workflow; an activity
--                                           that cannot be retried

-- The workflow kinds the running builds have definitions for. Every
-- floe-api and floe-worker process upserts its kinds at start-up
-- (engine/src/workflow/store.rs register_definitions): starting a workflow
-- from SQL refuses any other kind, and records this version as the
-- workflow's definition_version, as the API records its build's. The last
-- process to start wins (during a rolling deploy, the newest build's).
CREATE TABLE floe.definitions (
    kind          text PRIMARY KEY CHECK (kind <> ''),
    version       integer NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    -- The process that registered it last (floe-api or floe-worker, host:pid).
    registered_by text NOT NULL
);
COMMENT ON TABLE floe.definitions IS
    'workflow kinds the running floe builds define, with their version: upserted by every process at start';

-- A UUIDv7 (time-ordered, like the Rust side's Uuid::now_v7): the
-- milliseconds since the epoch in the first 48 bits, the version and variant
-- bits, random bits for the rest. PostgreSQL 18 has uuidv7(); 15 and 16 do not.
CREATE FUNCTION floe.uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- Starts a workflow of `kind` with business `key` unless one with the same
-- kind and key is open: returns the new one's id (created) or the open one's
-- (not created). The workflow row, its start event and its advance job are
-- written in the caller's transaction (one call: one round trip). The caller
-- vouches for the kind and version.
CREATE FUNCTION floe.workflow_start(
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
    -- PL/pgSQL, its plans cached per session, and three plain statements:
    -- measured with pgbench (20 starts per transaction), this costs what
    -- the single WITH ... INSERT statement sent directly costs, where the
    -- same WITH statement inside the function cost 0.05 ms more per start.
    FOR attempt IN 1..3 LOOP
        INSERT INTO floe.workflows (id, kind, key, state, input, definition_version, parent_id, next_seq)
        VALUES (p_id, p_kind, p_key, 'starting', p_input, p_definition_version, p_parent_id, 1)
        ON CONFLICT (kind, key) WHERE status IN ('running', 'waiting') DO NOTHING
        RETURNING id INTO workflow_id;
        IF workflow_id IS NOT NULL THEN
            INSERT INTO floe.inbox (workflow_id, seq, event, payload) VALUES (p_id, 1, 'start', p_input);
            INSERT INTO floe.jobs (kind, payload, state, unique_key, max_attempts)
            VALUES ('floe.advance', jsonb_build_object('workflow_id', p_id), 'available', p_id::text, 1000);
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

-- Puts an event in an open workflow's inbox, with the next sequence number,
-- and enqueues its advance job (unless one waits already), in one statement
-- in the caller's transaction. Returns the sequence number, or NULL when
-- nothing was delivered: no such workflow, a finished one, or an event with
-- this idempotency key was delivered before (the caller tells which).
CREATE FUNCTION floe.workflow_deliver(
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
        RETURNING next_seq
    ), ins AS (
        INSERT INTO floe.inbox (workflow_id, seq, event, name, payload, idempotency_key)
        SELECT p_workflow_id, w.next_seq, p_event, p_name, p_payload, p_idempotency_key FROM w
        ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING seq
    ), job AS (
        INSERT INTO floe.jobs (kind, payload, state, unique_key, max_attempts)
        SELECT 'floe.advance', jsonb_build_object('workflow_id', p_workflow_id), 'available', p_workflow_id::text, 1000
          FROM ins
        ON CONFLICT (queue, kind, unique_key) WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available')
        DO NOTHING
    )
    SELECT ins.seq INTO delivered FROM ins;
    RETURN delivered;
END
$$;

CREATE SCHEMA floe_ops;
COMMENT ON SCHEMA floe_ops IS
    'floe''s SQL control plane: functions to start, signal, cancel and retry (the API''s path) and views for operators';

-- Raises 22023 unless `value` is 1 to `max` bytes long (the API's limits).
CREATE FUNCTION floe.check_length(what text, value text, max integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF value IS NULL OR value = '' OR octet_length(value) > max THEN
        RAISE EXCEPTION '% must be 1 to % bytes long', what, max USING ERRCODE = '22023';
    END IF;
END
$$;

-- Raises P0002 for no such workflow, 55000 for a finished one; does nothing
-- for an open one. Why floe.workflow_deliver delivered nothing.
CREATE FUNCTION floe.require_open(id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    found_status floe.workflow_status;
BEGIN
    SELECT w.status INTO found_status FROM floe.workflows w WHERE w.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no workflow %', $1 USING ERRCODE = 'P0002';
    END IF;
    IF found_status NOT IN ('running', 'waiting') THEN
        RAISE EXCEPTION 'workflow % is %', $1, found_status
            USING ERRCODE = '55000', HINT = 'a finished workflow takes no more events';
    END IF;
END
$$;

-- Starts a workflow of a kind some floe process has registered (see
-- floe.definitions), with that kind's version; idempotent on an open
-- (kind, key): starting it again returns the open one's id. A fresh UUID
-- key when none is given. Callable from psql, from an application's
-- transaction (the start is committed with it) and from triggers.
CREATE FUNCTION floe_ops.start_workflow(kind text, key text DEFAULT NULL, input jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    definition_version integer;
    started_id uuid;
BEGIN
    PERFORM floe.check_length('kind', $1, 256);
    SELECT d.version INTO definition_version FROM floe.definitions d WHERE d.kind = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown workflow kind %', quote_literal($1)
            USING ERRCODE = '42704',
                  DETAIL = 'no floe-api or floe-worker process has registered a definition of this kind',
                  HINT = 'SELECT * FROM floe_ops.definitions lists the kinds that can be started';
    END IF;
    IF $2 IS NOT NULL THEN
        PERFORM floe.check_length('key', $2, 256);
    END IF;
    SELECT s.workflow_id INTO started_id
      FROM floe.workflow_start(floe.uuid_v7(), $1, coalesce($2, floe.uuid_v7()::text), coalesce($3, '{}'),
                               definition_version) s;
    RETURN started_id;
END
$$;

-- Signals a workflow: `name` with `payload`, once per idempotency key.
-- Returns the event's inbox sequence number, or NULL when an event with the
-- same idempotency key was delivered before. Raises P0002 for no such
-- workflow, 55000 for a finished one, 22023 for an invalid name or key.
-- Whether the workflow's definition takes the signal is not checked here
-- (definitions are Rust code): one it cannot take is recorded in the
-- history as ignored and changes nothing.
CREATE FUNCTION floe_ops.signal(
    workflow_id uuid,
    name text,
    payload jsonb DEFAULT '{}',
    idempotency_key text DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    seq bigint;
BEGIN
    PERFORM floe.check_length('signal name', $2, 256);
    IF $4 IS NOT NULL THEN
        PERFORM floe.check_length('idempotency key', $4, 256);
        IF $4 = 'cancel' THEN
            -- Cancellation delivers under this key: a signal using it would
            -- make a later cancellation look like a duplicate.
            RAISE EXCEPTION 'idempotency key ''cancel'' is reserved for cancellation' USING ERRCODE = '22023';
        END IF;
    END IF;
    seq := floe.workflow_deliver($1, 'signal', $2, coalesce($3, 'null'), $4);
    IF seq IS NULL THEN
        PERFORM floe.require_open($1);
    END IF;
    RETURN seq;
END
$$;

-- Cancels a workflow (and, when the cancellation is applied, its open
-- children) with a reason. Returns the event's inbox sequence number, or
-- NULL when it was cancelled before (its cancellation not yet applied).
-- Raises P0002 for no such workflow, 55000 for a finished one.
CREATE FUNCTION floe_ops.cancel(workflow_id uuid, reason text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    seq bigint;
BEGIN
    IF $2 IS NULL OR btrim($2) = '' OR octet_length($2) > 2000 THEN
        RAISE EXCEPTION 'reason must be 1 to 2000 bytes long' USING ERRCODE = '22023';
    END IF;
    -- The event the Rust store's cancel delivers: same name, payload and key.
    seq := floe.workflow_deliver($1, 'cancel', $2, jsonb_build_object('reason', $2), 'cancel');
    IF seq IS NULL THEN
        PERFORM floe.require_open($1);
    END IF;
    RETURN seq;
END
$$;

-- Makes a dead (or backing-off) job available now with a fresh attempt
-- budget, through floe.retry_job. Returns false when the job is neither
-- dead nor retrying (it is waiting or running); raises P0002 for no such job.
CREATE FUNCTION floe_ops.retry_job(job_id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF floe.retry_job($1) THEN
        RETURN true;
    END IF;
    PERFORM 1 FROM floe.jobs j WHERE j.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job %', $1 USING ERRCODE = 'P0002',
            HINT = 'a job that succeeded is deleted at once';
    END IF;
    RETURN false;
END
$$;

-- Gets a workflow's activity that has no result yet going again:
--   * its job is dead or retrying: made available now, with a fresh attempt
--     budget (floe.retry_job) - action 'retried';
--   * its job is waiting or running: nothing to do - action 'pending';
--   * it has no job (its dead job was deleted): a new activity job, with the
--     default retry policy (the original policy lived in the deleted job) -
--     action 'enqueued'.
-- Its result is then recorded and delivered to the workflow as for any
-- activity: once. An activity whose result is recorded is never run again:
-- a failure was applied to the workflow in the transaction that recorded
-- it, and the definition has decided what follows (retrying itself,
-- failing), so a second result for the same activity would contradict the
-- history. That raises 55000, as does an activity of a finished workflow;
-- P0002 for no such activity.
CREATE FUNCTION floe_ops.retry_activity(workflow_id uuid, activity_id text)
RETURNS TABLE (job_id bigint, action text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    a floe.activities%ROWTYPE;
    j record;
    wf_status floe.workflow_status;
BEGIN
    -- The workflow's lock first, as the engine takes it: a transition that
    -- records this activity's result waits, and so does another retry.
    SELECT w.status INTO wf_status FROM floe.workflows w WHERE w.id = $1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no workflow %', $1 USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO a FROM floe.activities x WHERE x.workflow_id = $1 AND x.activity_id = $2;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % has no activity %', $1, quote_literal($2) USING ERRCODE = 'P0002';
    END IF;
    IF a.status <> 'scheduled' THEN
        RAISE EXCEPTION 'activity % of workflow % is %: its result is recorded and was applied', quote_literal($2), $1, a.status
            USING ERRCODE = '55000',
                  DETAIL = 'an activity''s result is recorded once; the workflow''s definition has already reacted to it',
                  HINT = 'signal the workflow if its definition offers a retry, or start a new workflow';
    END IF;
    IF wf_status NOT IN ('running', 'waiting') THEN
        RAISE EXCEPTION 'workflow % is %: its activities are not needed any more', $1, wf_status USING ERRCODE = '55000';
    END IF;
    SELECT x.id, x.state INTO j FROM floe.jobs x
     WHERE x.kind = 'floe.activity' AND x.payload->>'workflow_id' = $1::text AND x.payload->>'activity_id' = $2
     ORDER BY x.id DESC LIMIT 1
       FOR UPDATE;
    IF j.id IS NULL THEN
        job_id := floe.enqueue('floe.activity',
            jsonb_build_object('workflow_id', $1, 'activity_id', $2, 'name', a.name, 'input', a.input),
            max_attempts => 5);
        action := 'enqueued';
    ELSIF j.state IN ('dead', 'retrying') THEN
        PERFORM floe.retry_job(j.id);
        job_id := j.id;
        action := 'retried';
    ELSE
        job_id := j.id;
        action := 'pending';
    END IF;
    RETURN NEXT;
END
$$;

-- A workflow as its queries read it: kind, key, state, status, context
-- (the definition's state), deadline and why, version; NULL for no such
-- workflow. Queries themselves are Rust functions of this state (the API's
-- GET /api/workflows/{id}/queries/{name}).
CREATE FUNCTION floe_ops.workflow_state(workflow_id uuid) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', w.id, 'kind', w.kind, 'key', w.key, 'state', w.state, 'status', w.status, 'context', w.context,
        'deadline', w.deadline, 'deadline_reason', w.deadline_reason, 'version', w.version,
        'definition_version', w.definition_version, 'in_flight', w.in_flight, 'output', w.output,
        'error', w.error, 'parent_id', w.parent_id, 'created_at', w.created_at, 'updated_at', w.updated_at)
      FROM floe.workflows w WHERE w.id = $1
$$;

-- The kinds that can be started from SQL, with the version they start at.
CREATE VIEW floe_ops.definitions AS
SELECT kind, version, registered_at, registered_by FROM floe.definitions;

-- Workflows by kind and state, with a count per status.
CREATE VIEW floe_ops.workflow_counts AS
SELECT kind,
       state,
       count(*)                                       AS total,
       count(*) FILTER (WHERE status = 'running')     AS running,
       count(*) FILTER (WHERE status = 'waiting')     AS waiting,
       count(*) FILTER (WHERE status = 'completed')   AS completed,
       count(*) FILTER (WHERE status = 'failed')      AS failed,
       count(*) FILTER (WHERE status = 'cancelled')   AS cancelled,
       max(updated_at)                                AS last_change
  FROM floe.workflows
 GROUP BY kind, state;

-- Waiting on a person (nothing in flight: a signal or the deadline moves
-- it on), until when, and for how long already.
CREATE VIEW floe_ops.waiting AS
SELECT id AS workflow_id,
       kind,
       key,
       state,
       deadline,
       deadline_reason,
       deadline - now()  AS due_in,
       updated_at        AS waiting_since,
       now() - updated_at AS waited
  FROM floe.workflows
 WHERE status = 'waiting';

-- Stuck: open workflows whose deadline has passed and not fired. A live
-- worker's timer loop fires a deadline within about a second, so rows here
-- for longer mean no worker is running.
CREATE VIEW floe_ops.overdue_deadlines AS
SELECT id AS workflow_id,
       kind,
       key,
       state,
       status,
       deadline,
       deadline_reason,
       now() - deadline AS overdue_by
  FROM floe.workflows
 WHERE deadline < now() AND status IN ('running', 'waiting');

-- Stuck: running jobs whose lease has expired (their worker stopped
-- heartbeating). A live worker's rescuer takes them within about a second.
CREATE VIEW floe_ops.expired_leases AS
SELECT id AS job_id,
       queue,
       kind,
       CASE WHEN payload->>'workflow_id' ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
            THEN (payload->>'workflow_id')::uuid END AS workflow_id,
       lease_owner,
       lease_expires_at,
       now() - lease_expires_at AS expired_for,
       attempts,
       max_attempts,
       attempted_at
  FROM floe.jobs
 WHERE state = 'running' AND lease_expires_at < now();

-- Stuck: events in inboxes that no transition has applied yet, per
-- workflow. Events are applied within milliseconds while a worker runs.
CREATE VIEW floe_ops.pending_events AS
SELECT w.id AS workflow_id,
       w.kind,
       w.status,
       count(*)                  AS pending,
       min(i.created_at)         AS oldest,
       now() - min(i.created_at) AS waiting_for
  FROM floe.workflows w
  JOIN floe.inbox i ON i.workflow_id = w.id AND i.seq > w.applied_seq
 GROUP BY w.id, w.kind, w.status;

-- Failing activities: those whose final failure is recorded ('failed'),
-- and those still being attempted whose job is backing off after a failed
-- attempt ('retrying') or has given up ('dead': the workflow waits for a
-- result that will not come until floe_ops.retry_activity). With the last
-- error and the attempts made.
CREATE VIEW floe_ops.failing_activities AS
SELECT a.workflow_id,
       w.kind          AS workflow_kind,
       w.status        AS workflow_status,
       a.activity_id,
       a.name,
       'failed'        AS failure,
       NULL::bigint    AS job_id,
       a.attempts,
       NULL::integer   AS max_attempts,
       a.error         AS last_error,
       a.finished_at   AS failed_at,
       NULL::timestamptz AS next_attempt_at
  FROM floe.activities a
  JOIN floe.workflows w ON w.id = a.workflow_id
 WHERE a.status = 'failed'
UNION ALL
SELECT a.workflow_id,
       w.kind,
       w.status,
       a.activity_id,
       a.name,
       j.state::text,
       j.id,
       j.attempts,
       j.max_attempts,
       j.last_error,
       j.attempted_at,
       CASE WHEN j.state = 'retrying' THEN j.run_at END
  FROM (SELECT *,
               CASE WHEN payload->>'workflow_id' ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
                    THEN (payload->>'workflow_id')::uuid END AS workflow_id
          FROM floe.jobs
         WHERE kind = 'floe.activity' AND state IN ('retrying', 'dead')) j
  JOIN floe.activities a ON a.workflow_id = j.workflow_id AND a.activity_id = j.payload->>'activity_id'
  JOIN floe.workflows w ON w.id = a.workflow_id
 WHERE a.status = 'scheduled';

-- Queue depth: jobs per queue, kind and state, the oldest one's age and
-- the earliest run_at (for scheduled and retrying jobs: when the next one
-- falls due; for available ones: how long they have been claimable).
CREATE VIEW floe_ops.queue_depth AS
SELECT queue,
       kind,
       state,
       count(*)               AS jobs,
       now() - min(created_at) AS oldest_age,
       min(run_at)            AS earliest_run_at
  FROM floe.jobs
 GROUP BY queue, kind, state;

-- LLM tokens and cost: the ledger's views (migration 20261122000400),
-- here beside the rest.
CREATE VIEW floe_ops.llm_usage_by_user AS SELECT * FROM floe.llm_usage_by_user;
CREATE VIEW floe_ops.llm_usage_by_workflow AS SELECT * FROM floe.llm_usage_by_workflow;
CREATE VIEW floe_ops.llm_usage_by_day AS SELECT * FROM floe.llm_usage_by_day;
