//! The checks after a chaos run, from SQL alone (and the clients' own
//! record of what they were told, and what the fake model answered).
//! A check counts what went wrong; a run passes when every failing count
//! is zero.

use sqlx::PgPool;

/// One count.
#[derive(Debug, Clone)]
pub struct Count {
    /// What is counted.
    pub what: String,
    /// How many.
    pub value: i64,
    /// Whether a non-zero value fails the run (else it is information).
    pub fails: bool,
}

fn check(what: &str, value: i64) -> Count {
    Count {
        what: what.into(),
        value,
        fails: true,
    }
}

fn info(what: &str, value: i64) -> Count {
    Count {
        what: what.into(),
        value,
        fails: false,
    }
}

/// What the clients know.
pub struct Expected<'a> {
    /// `test.pipeline` workflows asked for.
    pub pipelines: i64,
    /// The people the conversations signed in as.
    pub users: &'a [String],
    /// Every message a client sent: user, `client_id`, the acknowledged
    /// sequence number (`None`: never acknowledged, the run ended first).
    pub messages: &'a [(String, String, Option<i64>)],
    /// Chat requests the fake model received.
    pub model_requests: i64,
    /// Process ids of the workers alive now.
    pub live_workers: &'a [u32],
}

async fn scalar(pool: &PgPool, sql: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
}

/// A failing count: the value `sql` (a `count(*)`) returns.
async fn counted(pool: &PgPool, what: &str, sql: &str) -> sqlx::Result<Count> {
    Ok(check(what, scalar(pool, sql).await?))
}

async fn for_users(pool: &PgPool, sql: &str, users: &[String]) -> sqlx::Result<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(users)
        .fetch_one(pool)
        .await
}

/// Runs every check.
pub async fn run(pool: &PgPool, expected: &Expected<'_>) -> sqlx::Result<Vec<Count>> {
    let mut out = Vec::new();
    let users = expected.users;

    // Workflows reached their end state.
    let completed = scalar(
        pool,
        "SELECT count(*) FROM floe.workflows
          WHERE kind = 'test.pipeline' AND key LIKE 'chaos-pipeline-%' AND status = 'completed'",
    )
    .await?;
    out.push(check(
        "pipelines not completed",
        expected.pipelines - completed,
    ));
    out.push(
        counted(
            pool,
            "pipelines without exactly 7 transitions (start, s1..s3 once each, a1..a3 once each)",
            "SELECT count(*) FROM (
               SELECT w.id FROM floe.workflows w LEFT JOIN floe.history h ON h.workflow_id = w.id
                WHERE w.kind = 'test.pipeline' AND w.key LIKE 'chaos-pipeline-%'
                GROUP BY w.id
               HAVING count(h.seq) <> 7
                   OR count(*) FILTER (WHERE h.event = 'signal') <> 3
                   OR count(DISTINCT h.name) FILTER (WHERE h.event = 'signal') <> 3
                   OR count(*) FILTER (WHERE h.event = 'activity') <> 3) x",
        )
        .await?,
    );
    let onboardings = for_users(
        pool,
        "SELECT count(*) FROM floe.workflow_instances i JOIN floe.workflows w ON w.id = i.run_id
          WHERE i.kind = 'onboarding' AND i.user_id = ANY($1) AND w.status = 'completed'",
        users,
    )
    .await?;
    out.push(check(
        "onboardings not completed",
        users.len() as i64 - onboardings,
    ));

    // Every inbox event applied exactly once (all workflows).
    out.push(counted(pool, "inbox events without their one history entry", "SELECT count(*) FROM floe.inbox i
              WHERE NOT EXISTS (SELECT 1 FROM floe.history h WHERE h.workflow_id = i.workflow_id AND h.seq = i.seq)").await?);
    out.push(counted(pool, "history entries without an inbox event", "SELECT count(*) FROM floe.history h
              WHERE NOT EXISTS (SELECT 1 FROM floe.inbox i WHERE i.workflow_id = h.workflow_id AND i.seq = h.seq)").await?);
    out.push(
        counted(
            pool,
            "workflows with applied_seq <> next_seq",
            "SELECT count(*) FROM floe.workflows WHERE applied_seq <> next_seq",
        )
        .await?,
    );

    // The people's messages: each acknowledged one stored once, with the
    // number it was acknowledged with; none stored that no client sent.
    let (mut msg_users, mut msg_ids, mut msg_seqs) = (Vec::new(), Vec::new(), Vec::new());
    for (user, client_id, seq) in expected.messages {
        msg_users.push(user.clone());
        msg_ids.push(client_id.clone());
        msg_seqs.push(*seq);
    }
    let acknowledged_missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM unnest($1::text[], $2::text[], $3::bigint[]) AS s(user_id, client_id, seq)
          WHERE s.seq IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM floe.messages m
                 WHERE m.user_id = s.user_id AND m.client_id = s.client_id AND m.seq = s.seq AND m.role = 'user')",
    )
    .bind(&msg_users)
    .bind(&msg_ids)
    .bind(&msg_seqs)
    .fetch_one(pool)
    .await?;
    out.push(check(
        "acknowledged user messages missing",
        acknowledged_missing,
    ));
    let unsent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM floe.messages m
          WHERE m.role = 'user' AND m.user_id = ANY($1)
            AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS s(user_id, client_id)
                             WHERE s.user_id = m.user_id AND s.client_id = m.client_id)",
    )
    .bind(users)
    .bind(&msg_users)
    .bind(&msg_ids)
    .fetch_one(pool)
    .await?;
    out.push(check("user messages stored that no client sent", unsent));
    out.push(check(
        "user messages stored more than once (per client_id)",
        for_users(
            pool,
            "SELECT count(*) FROM (SELECT 1 FROM floe.messages WHERE role = 'user' AND user_id = ANY($1)
                                    GROUP BY user_id, client_id HAVING count(*) > 1) x",
            users,
        )
        .await?,
    ));
    out.push(info(
        "user messages sent but never acknowledged (the run ended first)",
        expected.messages.iter().filter(|m| m.2.is_none()).count() as i64,
    ));
    out.push(check(
        "user messages not signalled to their onboarding exactly once",
        for_users(
            pool,
            "SELECT count(*) FROM floe.messages m
               JOIN floe.workflow_instances i ON i.user_id = m.user_id AND i.kind = 'onboarding'
              WHERE m.role = 'user' AND m.user_id = ANY($1)
                AND (SELECT count(*) FROM floe.inbox x
                      WHERE x.workflow_id = i.run_id AND x.idempotency_key = 'message:' || m.seq) <> 1",
            users,
        )
        .await?,
    ));

    // The assistant's messages: exactly one answer to each message (the
    // clients wait for it before writing again), each reply activity's
    // message stored.
    let answers = "WITH u AS (
             SELECT user_id, seq, lead(seq) OVER (PARTITION BY user_id ORDER BY seq) AS next_seq
               FROM floe.messages WHERE role = 'user' AND user_id = ANY($1)),
           n AS (
             SELECT (SELECT count(*) FROM floe.messages a
                      WHERE a.user_id = u.user_id AND a.role = 'assistant' AND a.seq > u.seq
                        AND (u.next_seq IS NULL OR a.seq < u.next_seq)) AS answers
               FROM u)";
    out.push(check(
        "user messages without an answer",
        for_users(
            pool,
            &format!("{answers} SELECT count(*) FROM n WHERE answers = 0"),
            users,
        )
        .await?,
    ));
    out.push(check(
        "user messages answered more than once",
        for_users(
            pool,
            &format!("{answers} SELECT count(*) FROM n WHERE answers > 1"),
            users,
        )
        .await?,
    ));
    out.push(counted(pool, "chat.reply results without their stored message", "SELECT count(*) FROM floe.activities a
              WHERE a.name = 'chat.reply' AND a.status = 'completed'
                AND NOT EXISTS (SELECT 1 FROM floe.messages m WHERE m.source_key = a.workflow_id || ':' || a.activity_id)").await?);
    out.push(check(
        "completed onboardings without exactly one inbox item",
        for_users(
            pool,
            "SELECT count(*) FROM floe.workflow_instances i JOIN floe.workflows w ON w.id = i.run_id
              WHERE i.kind = 'onboarding' AND i.user_id = ANY($1) AND w.status = 'completed'
                AND (SELECT count(*) FROM floe.inbox_items t WHERE t.user_id = i.user_id) <> 1",
            users,
        )
        .await?,
    ));
    out.push(info(
        "assistant apologies (a turn failed after its attempts; the client wrote again)",
        for_users(
            pool,
            "SELECT count(*) FROM floe.messages WHERE role = 'assistant' AND kind = 'error' AND user_id = ANY($1)",
            users,
        )
        .await?,
    ));

    // The LLM ledger.
    out.push(counted(pool, "LLM calls recorded more than once per (activity, attempt, step)", "SELECT count(*) FROM (SELECT 1 FROM floe.llm_calls
                                    GROUP BY workflow_id, activity_id, attempt, step HAVING count(*) > 1) x").await?);
    let answered = scalar(
        pool,
        "SELECT count(*) FROM floe.llm_calls WHERE status = 'ok'",
    )
    .await?;
    out.push(check(
        "LLM answers recorded that the model never gave",
        (answered - expected.model_requests).max(0),
    ));
    out.push(info("LLM calls recorded as answered", answered));
    out.push(info(
        "LLM calls recorded as failed (connection cut or refused, timeouts)",
        scalar(
            pool,
            "SELECT count(*) FROM floe.llm_calls WHERE status <> 'ok'",
        )
        .await?,
    ));
    out.push(info("model requests received", expected.model_requests));
    out.push(info(
        "model requests not recorded as answered (answered with an error, or the answer lost to a kill or a cut and asked again)",
        (expected.model_requests - answered).max(0),
    ));
    out.push(info(
        "activities run more than once (at-least-once; their effects are not repeated)",
        scalar(
            pool,
            "SELECT count(*) FROM floe.activities WHERE attempts > 1",
        )
        .await?,
    ));

    // Jobs.
    let leased: Vec<String> =
        sqlx::query_scalar("SELECT lease_owner FROM floe.jobs WHERE state = 'running'")
            .fetch_all(pool)
            .await?;
    let orphaned = leased
        .iter()
        .filter(|owner| {
            let pid = owner.split(':').nth(1).and_then(|p| p.parse::<u32>().ok());
            !pid.is_some_and(|pid| expected.live_workers.contains(&pid))
        })
        .count();
    out.push(check(
        "jobs leased by a worker that is not alive",
        orphaned as i64,
    ));
    out.push(counted(pool, "activities stranded: no result, and no job left to run them (the workflow waits forever)", "SELECT count(*) FROM floe.activities a
              WHERE a.status = 'scheduled'
                AND NOT EXISTS (SELECT 1 FROM floe.jobs j
                                 WHERE j.kind = 'floe.activity' AND j.state <> 'dead'
                                   AND j.payload ->> 'workflow_id' = a.workflow_id::text
                                   AND j.payload ->> 'activity_id' = a.activity_id)").await?);
    out.push(
        counted(
            pool,
            "dead jobs",
            "SELECT count(*) FROM floe.jobs WHERE state = 'dead'",
        )
        .await?,
    );
    out.push(
        counted(
            pool,
            "jobs not finished",
            "SELECT count(*) FROM floe.jobs WHERE state <> 'dead'",
        )
        .await?,
    );
    Ok(out)
}
