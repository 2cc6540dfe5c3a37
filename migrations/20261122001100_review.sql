-- The Temporal-Lite spec's workflows (docs/examples.md): what a code review
-- tells people (floe.notifications), what it merged (floe.merges), and the
-- tool calls agents make, recorded so that a retried activity attempt
-- replays their results instead of running the tools again
-- (floe.tool_calls, the companion of floe.llm_calls).

-- What floe tells a person: a review is ready for them, a review waited too
-- long and is escalated to them. Written by activities once each
-- (source_key = '<workflow id>:<activity id>'), so an activity that runs
-- twice notifies once. Not floe.inbox_items: those are a chat user's own
-- to-dos (a user's row in floe.users must exist), while a reviewer or a team
-- lead is just a name here, and a notification is read and dismissed, not
-- done.
CREATE TABLE floe.notifications (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Who it is for: a person or a team, as the workflow names them.
    recipient    text NOT NULL CHECK (recipient <> ''),
    -- What kind of notice: review_requested, escalation.
    kind         text NOT NULL CHECK (kind <> ''),
    subject      text NOT NULL,
    body         text NOT NULL DEFAULT '',
    -- Details for a UI (the workflow's id, revision, issues, ...).
    payload      jsonb NOT NULL DEFAULT '{}',
    -- The workflow that sent it. No foreign key: notices outlive the
    -- retention of finished workflows.
    workflow_id  uuid,
    source_key   text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Set by whoever shows it (a UI, or UPDATE from psql).
    read_at      timestamptz
);

COMMENT ON TABLE floe.notifications IS
    'notices for people (review requested, escalation), written once per workflow activity';

CREATE INDEX notifications_unread ON floe.notifications (recipient, id) WHERE read_at IS NULL;
CREATE INDEX notifications_workflow ON floe.notifications (workflow_id, id);

-- What a code review merged, once per review (no real version control: the
-- approved revision is kept here).
CREATE TABLE floe.merges (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id  uuid NOT NULL,
    title        text NOT NULL,
    author       text NOT NULL,
    -- Who approved it.
    approved_by  text NOT NULL,
    -- The revision approved (1: as submitted; each refactor adds one).
    revision     integer NOT NULL CHECK (revision >= 1),
    code         text NOT NULL,
    code_md5     text GENERATED ALWAYS AS (md5(code)) STORED,
    source_key   text NOT NULL UNIQUE,
    merged_at    timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE floe.merges IS 'changes approved by a code review, one row per review';

-- Every tool call an agent made from an activity: what it was asked, what it
-- answered. The replay record of tools: before running the n-th tool call of
-- an attempt, the agent looks for a result recorded for the same workflow,
-- activity, place (seq), tool and arguments, and uses it instead. Results
-- stay reusable when an attempt's model answers are abandoned (they are
-- facts about the world, not the model's opinion: a side effect is not
-- repeated because the model asked again).
CREATE TABLE floe.tool_calls (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id    uuid NOT NULL,
    activity_id    text NOT NULL,
    -- The attempt that ran the tool.
    attempt        integer,
    -- The call's place among the attempt's tool calls, from 0.
    seq            integer NOT NULL CHECK (seq >= 0),
    -- The model call (floe.llm_calls.step) that asked for it.
    llm_step       integer,
    -- The model's id for the call (call_…).
    call_id        text,
    user_id        text,
    agent          text NOT NULL,
    tool           text NOT NULL,
    -- As the model wrote them (not necessarily valid JSON).
    arguments      text NOT NULL,
    arguments_hash text GENERATED ALWAYS AS (md5(arguments)) STORED,
    status         text NOT NULL CHECK (status IN ('ok', 'error')),
    -- The tool's answer, when ok.
    result         jsonb,
    -- What the model was told, when the tool refused.
    error          text,
    latency_ms     integer NOT NULL CHECK (latency_ms >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'ok') = (result IS NOT NULL))
);

COMMENT ON TABLE floe.tool_calls IS
    'every tool call of an agent activity: arguments, result; the replay record of tools';

-- One result per place, tool and arguments of an activity: two attempts
-- racing keep the first.
CREATE UNIQUE INDEX tool_calls_replay ON floe.tool_calls (workflow_id, activity_id, seq, tool, arguments_hash);
CREATE INDEX tool_calls_created ON floe.tool_calls (created_at);
