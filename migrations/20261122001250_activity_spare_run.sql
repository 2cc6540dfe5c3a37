-- An activity's job runs once more than its policy's attempts: the spare run.
--
-- The worker records an activity's failure itself when its last attempt
-- fails. When the worker dies during that last attempt instead, the lease
-- rescuer finds the job out of attempts and marks it dead: the failure was
-- never recorded, the activity stayed `scheduled` and the workflow waited
-- for ever (found by ./scripts/chaos: a worker killed 0.6 s into attempt 4
-- of 4 of an onboarding turn). Activity jobs are now enqueued with
-- max_attempts one above the policy's (engine/src/workflow/store.rs); a run
-- numbered above the policy's attempts runs nothing and records the failure
-- ("its outcome was lost"), so the workflow hears of it. A job re-created
-- by floe_ops.retry_activity gets the same spare: 5 attempts (the default
-- policy's) and one spare run.
CREATE OR REPLACE FUNCTION floe_ops.retry_activity(workflow_id uuid, activity_id text)
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
            max_attempts => 6);
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
