-- A job re-created by floe_ops.retry_activity carries its kind's priority.
--
-- 20261122001400 gave every job of a workflow its kind's priority
-- (floe.definitions.priority) but left this function enqueueing at 0: an
-- onboarding turn an operator got going again waited behind the whole bulk
-- backlog (priority -10 everywhere else). Same body as
-- 20261122001250_activity_spare_run.sql, reading the workflow's kind with its
-- status and the kind's priority from floe.definitions (0 when no worker
-- registered the kind). A job that still exists is retried in place and keeps
-- the priority it was enqueued with.
CREATE OR REPLACE FUNCTION floe_ops.retry_activity(workflow_id uuid, activity_id text)
RETURNS TABLE (job_id bigint, action text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    a floe.activities%ROWTYPE;
    j record;
    wf_status floe.workflow_status;
    wf_kind text;
BEGIN
    -- The workflow's lock first, as the engine takes it: a transition that
    -- records this activity's result waits, and so does another retry.
    SELECT w.status, w.kind INTO wf_status, wf_kind FROM floe.workflows w WHERE w.id = $1 FOR UPDATE;
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
            max_attempts => 6,
            priority => coalesce((SELECT d.priority FROM floe.definitions d WHERE d.kind = wf_kind), 0::smallint));
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
