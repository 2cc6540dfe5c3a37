-- Durable workflows: a workflow is a row with an explicit state and deadline;
-- everything that happens to it is an inbox event; applying events is a
-- transition recorded in the history.

-- A workflow's status (the definition's own state name is in `state`):
--   running    started, or work it asked for (activities, children) is in flight
--   waiting    nothing in flight: waits for a signal or its deadline
--   completed, failed, cancelled   finished; no more events are applied
CREATE TYPE floe.workflow_status AS ENUM ('running', 'waiting', 'completed', 'failed', 'cancelled');

CREATE TABLE floe.workflows (
    id                 uuid PRIMARY KEY,
    kind               text NOT NULL CHECK (kind <> ''),
    key                text NOT NULL,
    state              text NOT NULL,
    status             floe.workflow_status NOT NULL DEFAULT 'running',
    context            jsonb NOT NULL DEFAULT 'null',
    input              jsonb NOT NULL DEFAULT '{}',
    output             jsonb,
    error              text,
    deadline           timestamptz,
    deadline_reason    text,
    -- Bumped whenever a transition sets or clears the deadline: a timer
    -- fired for an older deadline is stale.
    deadline_version   bigint NOT NULL DEFAULT 0,
    -- Transitions applied so far.
    version            bigint NOT NULL DEFAULT 0,
    definition_version integer NOT NULL DEFAULT 1,
    parent_id          uuid REFERENCES floe.workflows (id),
    -- Activities and children started and not yet reported back.
    in_flight          integer NOT NULL DEFAULT 0,
    -- The inbox sequence: last allocated, last applied.
    next_seq           bigint NOT NULL DEFAULT 0,
    applied_seq        bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);

COMMENT ON TABLE floe.workflows IS 'floe workflow instances: one row each, with explicit state, status and deadline';

-- Starting is idempotent on (kind, key) among open workflows.
CREATE UNIQUE INDEX workflows_open_key ON floe.workflows (kind, key) WHERE status IN ('running', 'waiting');
-- The timer loops' index: only open workflows with a deadline.
CREATE INDEX workflows_deadline ON floe.workflows (deadline) WHERE deadline IS NOT NULL AND status IN ('running', 'waiting');
CREATE INDEX workflows_parent ON floe.workflows (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX workflows_kind_status ON floe.workflows (kind, status);

-- Every input of a workflow, in order: start, signals, activity results,
-- timer fires, child outcomes, cancellation.
CREATE TABLE floe.inbox (
    workflow_id     uuid NOT NULL REFERENCES floe.workflows (id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    event           text NOT NULL CHECK (event IN ('start', 'signal', 'activity', 'timer', 'child', 'cancel')),
    name            text,
    payload         jsonb NOT NULL DEFAULT '{}',
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    consumed_at     timestamptz,
    PRIMARY KEY (workflow_id, seq)
);
CREATE UNIQUE INDEX inbox_idempotency ON floe.inbox (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Every applied event and the state change it made, in inbox order.
CREATE TABLE floe.history (
    workflow_id  uuid NOT NULL REFERENCES floe.workflows (id) ON DELETE CASCADE,
    seq          bigint NOT NULL,
    event        text NOT NULL,
    name         text,
    payload      jsonb NOT NULL,
    event_at     timestamptz NOT NULL,
    state_before text,
    state_after  text NOT NULL,
    status_after floe.workflow_status NOT NULL,
    commands     jsonb NOT NULL DEFAULT '[]',
    -- Why an event changed nothing (a stale timer, an event after the end).
    note         text,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, seq)
);

-- Activities: the I/O a workflow asked for, and their recorded results.
CREATE TABLE floe.activities (
    workflow_id uuid NOT NULL REFERENCES floe.workflows (id) ON DELETE CASCADE,
    activity_id text NOT NULL,
    name        text NOT NULL,
    input       jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'completed', 'failed', 'cancelled')),
    attempts    integer NOT NULL DEFAULT 0,
    result      jsonb,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (workflow_id, activity_id)
);
