-- The LLM-call ledger: every call a worker makes to a language model, what
-- was asked, what came back, how long it took and what it cost. It doubles
-- as the replay record: an activity attempt that runs again after its worker
-- died finds the answers the earlier attempt recorded (same workflow,
-- activity, step and request) and does not call the model again.

-- What a model costs, in US dollars per million tokens. Operators keep it
-- current with plain SQL (docs/llm.md); a call to a model without a row here
-- is recorded with a NULL cost.
CREATE TABLE floe.llm_prices (
    model                text PRIMARY KEY,
    input_usd_per_mtok   numeric(12, 6) NOT NULL CHECK (input_usd_per_mtok >= 0),
    output_usd_per_mtok  numeric(12, 6) NOT NULL CHECK (output_usd_per_mtok >= 0),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE floe.llm_prices IS
    'price per million tokens by model name; the cost of a call is fixed when it is recorded';

CREATE TABLE floe.llm_calls (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Where the call was made. No foreign key: spend outlives the retention
    -- of finished workflows.
    workflow_id   uuid,
    activity_id   text,
    attempt       integer,
    -- The call's place within its activity attempt, from 0.
    step          integer NOT NULL CHECK (step >= 0),
    user_id       text,
    -- Who asked: an agent (greeter, discovery, ...) or memory.extract,
    -- memory.decide, memory.embed.
    agent         text NOT NULL,
    model         text NOT NULL,
    -- floe's own request and response shapes (floe_agents::llm), not a
    -- provider's. Never the API key.
    request       jsonb NOT NULL,
    request_hash  text GENERATED ALWAYS AS (md5(request::text)) STORED,
    response      jsonb,
    status        text NOT NULL CHECK (status IN ('ok', 'error', 'rate_limited', 'timeout')),
    http_status   integer,
    error         text,
    tokens_in     integer NOT NULL DEFAULT 0 CHECK (tokens_in >= 0),
    tokens_out    integer NOT NULL DEFAULT 0 CHECK (tokens_out >= 0),
    latency_ms    integer NOT NULL CHECK (latency_ms >= 0),
    -- NULL when no price was known for the model.
    cost_usd      numeric(16, 8),
    -- Whether a later attempt of the same activity may reuse this answer.
    -- An attempt whose answers failed validation marks them false, so that
    -- its retry asks the model again instead of replaying the same mistake.
    reusable      boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'ok') = (response IS NOT NULL))
);

COMMENT ON TABLE floe.llm_calls IS
    'every LLM call: request, response, tokens, latency, cost; the replay record of agent activities';

-- One reusable answer per step and request of an activity: two attempts
-- racing (a worker presumed dead still running) keep the first answer.
CREATE UNIQUE INDEX llm_calls_replay ON floe.llm_calls (workflow_id, activity_id, step, request_hash)
    WHERE status = 'ok' AND reusable;
CREATE INDEX llm_calls_workflow ON floe.llm_calls (workflow_id, id);
CREATE INDEX llm_calls_user ON floe.llm_calls (user_id, created_at) WHERE user_id IS NOT NULL;
CREATE INDEX llm_calls_created ON floe.llm_calls (created_at);

-- Spend at a glance. Calls of models without a price count in
-- unpriced_calls and add nothing to cost_usd.
CREATE VIEW floe.llm_usage_by_user AS
SELECT user_id,
       count(*)                                   AS calls,
       count(*) FILTER (WHERE status <> 'ok')     AS failed_calls,
       sum(tokens_in)::bigint                     AS tokens_in,
       sum(tokens_out)::bigint                    AS tokens_out,
       coalesce(sum(cost_usd), 0)                 AS cost_usd,
       count(*) FILTER (WHERE cost_usd IS NULL AND status = 'ok') AS unpriced_calls,
       min(created_at)                            AS first_call,
       max(created_at)                            AS last_call
FROM floe.llm_calls
GROUP BY user_id;

CREATE VIEW floe.llm_usage_by_workflow AS
SELECT c.workflow_id,
       w.kind,
       w.key,
       count(*)                                   AS calls,
       count(*) FILTER (WHERE c.status <> 'ok')   AS failed_calls,
       sum(c.tokens_in)::bigint                   AS tokens_in,
       sum(c.tokens_out)::bigint                  AS tokens_out,
       coalesce(sum(c.cost_usd), 0)               AS cost_usd,
       count(*) FILTER (WHERE c.cost_usd IS NULL AND c.status = 'ok') AS unpriced_calls,
       sum(c.latency_ms)::bigint                  AS latency_ms,
       min(c.created_at)                          AS first_call,
       max(c.created_at)                          AS last_call
FROM floe.llm_calls c
LEFT JOIN floe.workflows w ON w.id = c.workflow_id
WHERE c.workflow_id IS NOT NULL
GROUP BY c.workflow_id, w.kind, w.key;

CREATE VIEW floe.llm_usage_by_day AS
SELECT (created_at AT TIME ZONE 'UTC')::date      AS day,
       model,
       count(*)                                   AS calls,
       count(*) FILTER (WHERE status <> 'ok')     AS failed_calls,
       sum(tokens_in)::bigint                     AS tokens_in,
       sum(tokens_out)::bigint                    AS tokens_out,
       coalesce(sum(cost_usd), 0)                 AS cost_usd,
       count(*) FILTER (WHERE cost_usd IS NULL AND status = 'ok') AS unpriced_calls,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms
FROM floe.llm_calls
GROUP BY 1, 2;
