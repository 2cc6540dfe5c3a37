-- The onboarding chat's own data, beside the engine's: the people, the link
-- from a person to their onboarding workflow (the source spec's
-- workflow_instances), their conversation and their inbox. The workflow's
-- state lives in floe.workflows; these tables hold what people see.
-- engine/src/chat/store.rs owns every query on them.

CREATE TABLE floe.users (
    id            text PRIMARY KEY CHECK (id <> '' AND length(id) <= 100),
    display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 80),
    -- The last message sequence of the user's conversation: a message takes
    -- the next one under this row's lock, so user and assistant messages
    -- written at the same time never share a number.
    last_seq      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE floe.users IS 'people who chat with the assistant; last_seq numbers their conversation';

-- The source spec's workflow_instances: which workflow serves a user.
-- workflow_id is the workflow's business key (stable), run_id the
-- floe.workflows row of this run.
CREATE TABLE floe.workflow_instances (
    user_id      text NOT NULL REFERENCES floe.users (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    workflow_id  text NOT NULL,
    run_id       uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, kind)
);

CREATE INDEX workflow_instances_run ON floe.workflow_instances (run_id);

-- One conversation per user, numbered from 1 without gaps.
CREATE TABLE floe.messages (
    user_id     text NOT NULL REFERENCES floe.users (id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq > 0),
    role        text NOT NULL CHECK (role IN ('user', 'assistant')),
    -- reply, greeting, nudge or error for the assistant; message for the user.
    kind        text NOT NULL DEFAULT 'message',
    agent       text,
    content     text NOT NULL,
    -- A widget the chat shows under the message (quick replies, items to confirm).
    widget      jsonb,
    -- The browser's id for a user message: a retried send is stored once.
    client_id   text CHECK (length(client_id) <= 100),
    -- What wrote an assistant message (workflow id and activity id): an
    -- activity run twice stores its message once.
    source_key  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq),
    UNIQUE (user_id, client_id),
    UNIQUE (user_id, source_key)
);

COMMENT ON TABLE floe.messages IS
    'each user''s conversation, numbered by seq; client_id and source_key make retried writes land once';

-- The user's inbox: what the brain dump collected.
CREATE TABLE floe.inbox_items (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     text NOT NULL REFERENCES floe.users (id) ON DELETE CASCADE,
    title       text NOT NULL CHECK (title <> ''),
    due_date    date,
    tags        text[] NOT NULL DEFAULT '{}',
    -- Where it came from (workflow, activity and position): stored once.
    source_key  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, source_key)
);

CREATE INDEX inbox_items_user ON floe.inbox_items (user_id, created_at);

COMMENT ON TABLE floe.inbox_items IS 'the user''s inbox; source_key makes a retried write land once';

-- Sign-in sessions: the browser holds a random token (cookie or bearer);
-- only its SHA-256 is stored, so a leaked table signs nobody in. Any API
-- process can check any session, and sessions survive restarts.
CREATE TABLE floe.sessions (
    token_hash  text PRIMARY KEY,
    user_id     text NOT NULL REFERENCES floe.users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX sessions_user ON floe.sessions (user_id);
CREATE INDEX sessions_expires ON floe.sessions (expires_at);
