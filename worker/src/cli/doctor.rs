//! `floe doctor`: is this deployment healthy? Each check prints `ok`,
//! `warn` or `fail` with a one-line reason; the exit code is the worst
//! verdict (0 ok, 1 warn, 2 fail).
//!
//! | check        | fails when                                   | warns when                              |
//! |--------------|----------------------------------------------|-----------------------------------------|
//! | `database`   | it cannot be reached                         | —                                       |
//! | `migrations` | some are pending, failed or changed          | the database has some this build lacks  |
//! | `workers`    | no worker heartbeated in the last 30 s       | a worker died without deregistering; versions differ |
//! | `deadlines`  | deadlines overdue by more than the threshold | —                                       |
//! | `leases`     | leases expired more than the threshold ago   | —                                       |
//! | `dead jobs`  | —                                            | any dead job                            |
//! | `failures`   | —                                            | workflows failed in the last hour       |
//! | `backlog`    | —                                            | jobs or events waiting past the threshold |
//! | `vacuum`     | —                                            | a transaction open past the threshold holds it back |

use std::time::{Duration, Instant};

use floe_engine::doctor::{self as probe, MigrationState};
use floe_engine::workers::{self, ALIVE_WITHIN};
use serde::Serialize;
use sqlx::PgPool;

use super::output::{self, Out, count, span};
use super::{DoctorArgs, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_OK, Error};

/// How long back failed workflows count.
const FAILED_WITHIN: Duration = Duration::from_secs(3600);

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Worth a look; floe keeps working.
    Warn,
    /// Something is broken or nothing is making progress.
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }

    /// The exit code of a doctor whose worst verdict this is.
    fn exit_code(self) -> u8 {
        match self {
            Self::Ok => EXIT_OK,
            Self::Warn => EXIT_NOT_FOUND,
            Self::Fail => EXIT_INVALID,
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Which check.
    pub name: &'static str,
    /// Its verdict.
    pub status: Verdict,
    /// Why, in one line.
    pub reason: String,
}

fn check(name: &'static str, status: Verdict, reason: impl Into<String>) -> Check {
    Check {
        name,
        status,
        reason: reason.into(),
    }
}

/// `floe doctor --json`'s document.
#[derive(Debug, Serialize)]
struct Report<'a> {
    /// The worst verdict.
    status: Verdict,
    checks: &'a [Check],
}

/// Runs every check (only `database` when it cannot be reached), prints
/// them, and returns the exit code.
pub async fn run(pool: Result<PgPool, Error>, args: &DoctorArgs, out: Out) -> Result<u8, Error> {
    let threshold = Duration::from_secs(args.stuck_after);
    let checks = match pool {
        Err(e) => vec![check("database", Verdict::Fail, e.to_string())],
        Ok(pool) => checks(&pool, threshold).await,
    };
    let worst = checks.iter().map(|c| c.status).max().unwrap_or(Verdict::Ok);
    if out.json {
        out.json(&Report {
            status: worst,
            checks: &checks,
        })?;
    } else {
        let with = |v| checks.iter().filter(|c| c.status == v).count();
        let summary = match worst {
            Verdict::Ok => format!("all {} checks ok\n", checks.len()),
            _ => format!(
                "{} failed, {}, {} ok\n",
                with(Verdict::Fail),
                count(with(Verdict::Warn) as i64, "warning", "warnings"),
                with(Verdict::Ok)
            ),
        };
        // The reasons are the point here: printed whole, not cut as table
        // cells are.
        let mut text = String::new();
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &checks {
            text.push_str(&format!(
                "{:<4}  {:<width$}  {}\n",
                c.status.as_str(),
                c.name,
                c.reason
            ));
        }
        text.push_str(&summary);
        output::print_stdout(&text)?;
    }
    Ok(worst.exit_code())
}

/// Every check after the database answered.
async fn checks(pool: &PgPool, threshold: Duration) -> Vec<Check> {
    let started = Instant::now();
    let server = match probe::server(pool).await {
        Ok(s) => s,
        Err(e) => return vec![check("database", Verdict::Fail, Error::from(e).to_string())],
    };
    let mut checks = vec![check(
        "database",
        Verdict::Ok,
        format!(
            "PostgreSQL {}, database {}, answered in {}",
            server.version,
            server.database,
            span(started.elapsed().as_secs_f64())
        ),
    )];
    checks.push(migrations(pool).await);
    checks.push(workers(pool).await);
    match probe::stuck(pool, threshold, FAILED_WITHIN).await {
        Ok(stuck) => checks.extend(stuck_checks(&stuck, threshold)),
        Err(e) => checks.push(check("stuck work", Verdict::Fail, cannot(e))),
    }
    checks.push(match probe::backlog(pool).await {
        Ok(b) => backlog(&b, threshold),
        Err(e) => check("backlog", Verdict::Fail, cannot(e)),
    });
    checks.push(match probe::old_transactions(pool, threshold).await {
        Ok(old) => transactions(&old, threshold),
        Err(e) => check("vacuum", Verdict::Fail, cannot(e)),
    });
    checks
}

fn cannot(e: sqlx::Error) -> String {
    format!("cannot check: {}", Error::from(e))
}

fn versions(list: &[&probe::Migration]) -> String {
    let mut names: Vec<String> = list
        .iter()
        .take(3)
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    if list.len() > 3 {
        names.push(format!("{} more", list.len() - 3));
    }
    names.join(", ")
}

async fn migrations(pool: &PgPool) -> Check {
    let all = match probe::migrations(pool).await {
        Ok(all) => all,
        Err(e) => return check("migrations", Verdict::Fail, cannot(e)),
    };
    let of = |state| all.iter().filter(|m| m.state == state).collect::<Vec<_>>();
    let (pending, failed, changed, unknown) = (
        of(MigrationState::Pending),
        of(MigrationState::Failed),
        of(MigrationState::Changed),
        of(MigrationState::Unknown),
    );
    let applied = of(MigrationState::Applied).len();
    if !failed.is_empty() {
        return check(
            "migrations",
            Verdict::Fail,
            format!(
                "{} failed half-way ({}): repair by hand, then `floe migrate`",
                failed.len(),
                versions(&failed)
            ),
        );
    }
    if !changed.is_empty() {
        return check(
            "migrations",
            Verdict::Fail,
            format!(
                "{} applied migrations differ from this build's files ({}): migrations must never be edited",
                changed.len(),
                versions(&changed)
            ),
        );
    }
    if !pending.is_empty() {
        return check(
            "migrations",
            Verdict::Fail,
            format!(
                "{} of {} pending ({}): run `floe migrate`",
                pending.len(),
                pending.len() + applied,
                versions(&pending)
            ),
        );
    }
    if !unknown.is_empty() {
        return check(
            "migrations",
            Verdict::Warn,
            format!(
                "{applied} applied; {} unknown to this build ({}): a newer floe migrated this database",
                unknown.len(),
                versions(&unknown)
            ),
        );
    }
    check(
        "migrations",
        Verdict::Ok,
        format!("all {applied} applied, none pending"),
    )
}

fn who(w: &workers::Worker) -> String {
    format!("{} pid {} on {}", w.name, w.pid, w.host)
}

async fn workers(pool: &PgPool) -> Check {
    let all = match workers::list(pool).await {
        Ok(all) => all,
        Err(e) => return check("workers", Verdict::Fail, cannot(e)),
    };
    let (alive, silent): (Vec<_>, Vec<_>) = all.iter().partition(|w| w.alive);
    if alive.is_empty() {
        let last = match silent.first() {
            Some(w) => format!("; last heard from {} {} ago", who(w), span(w.silent_secs)),
            None => String::new(),
        };
        return check(
            "workers",
            Verdict::Fail,
            format!(
                "no worker alive (none heartbeated in the last {}): nothing advances workflows or runs jobs{last}",
                span(ALIVE_WITHIN.as_secs_f64())
            ),
        );
    }
    let names = alive.iter().map(|w| who(w)).collect::<Vec<_>>().join(", ");
    if let Some(w) = silent.first() {
        return check(
            "workers",
            Verdict::Warn,
            format!(
                "{} alive ({names}); {} stopped heartbeating without deregistering (crashed or cut off), the latest {} {} ago",
                alive.len(),
                silent.len(),
                who(w),
                span(w.silent_secs)
            ),
        );
    }
    let mut versions: Vec<&str> = alive.iter().map(|w| w.version.as_str()).collect();
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > 1 {
        return check(
            "workers",
            Verdict::Warn,
            format!(
                "{} alive ({names}), running different versions ({}): an upgrade in progress?",
                alive.len(),
                versions.join(", ")
            ),
        );
    }
    check(
        "workers",
        Verdict::Ok,
        format!("{} alive: {names}", alive.len()),
    )
}

fn stuck_checks(s: &probe::Stuck, threshold: Duration) -> Vec<Check> {
    let after = span(threshold.as_secs_f64());
    let deadlines = if s.overdue > 0 {
        check(
            "deadlines",
            Verdict::Fail,
            format!(
                "{} overdue by more than {after} (worst {}): no scheduler fires them; see `floe workflows list --overdue`",
                count(
                    s.overdue,
                    "open workflow's deadline",
                    "open workflows' deadlines"
                ),
                span(s.most_overdue_secs.unwrap_or_default())
            ),
        )
    } else {
        check(
            "deadlines",
            Verdict::Ok,
            format!("none overdue by more than {after}"),
        )
    };
    let leases = if s.expired_leases > 0 {
        check(
            "leases",
            Verdict::Fail,
            format!(
                "{} expired more than {after} ago (oldest {} ago, owner {}): their worker is gone and no rescuer took them back",
                count(
                    s.expired_leases,
                    "running job's lease",
                    "running jobs' leases"
                ),
                span(s.oldest_expiry_secs.unwrap_or_default()),
                s.expired_owners.join(", ")
            ),
        )
    } else {
        check(
            "leases",
            Verdict::Ok,
            format!("none expired more than {after} ago"),
        )
    };
    let dead = if s.dead_jobs > 0 {
        check(
            "dead jobs",
            Verdict::Warn,
            format!(
                "{}: retry or delete; see `floe jobs list --state dead`",
                count(s.dead_jobs, "dead job", "dead jobs")
            ),
        )
    } else {
        check("dead jobs", Verdict::Ok, "none")
    };
    let failures = if s.failed_workflows > 0 {
        check(
            "failures",
            Verdict::Warn,
            format!(
                "{} in the last hour; see `floe workflows list --status failed`",
                count(s.failed_workflows, "workflow failed", "workflows failed")
            ),
        )
    } else {
        check(
            "failures",
            Verdict::Ok,
            "no workflow failed in the last hour",
        )
    };
    vec![deadlines, leases, dead, failures]
}

fn backlog(b: &probe::Backlog, threshold: Duration) -> Check {
    let limit = threshold.as_secs_f64();
    let describe = |n: i64, oldest: Option<f64>, what: &str| match oldest {
        Some(age) if n > 0 => format!("{n} {what}, the oldest for {}", span(age)),
        _ => format!("0 {what}"),
    };
    let reason = format!(
        "{}; {}",
        describe(b.jobs_waiting, b.oldest_job_secs, "jobs due"),
        describe(
            b.pending_events,
            b.oldest_event_secs,
            "inbox events pending"
        )
    );
    let late = b.oldest_job_secs.is_some_and(|s| s > limit)
        || b.oldest_event_secs.is_some_and(|s| s > limit);
    if late {
        check(
            "backlog",
            Verdict::Warn,
            format!(
                "{reason}: waiting longer than {}, workers are behind or down",
                span(limit)
            ),
        )
    } else {
        check("backlog", Verdict::Ok, reason)
    }
}

fn transactions(old: &[probe::OldTransaction], threshold: Duration) -> Check {
    let limit = span(threshold.as_secs_f64());
    let Some(oldest) = old.first() else {
        return check(
            "vacuum",
            Verdict::Ok,
            format!("no transaction holding it back for more than {limit}"),
        );
    };
    let pid = oldest.pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
    check(
        "vacuum",
        Verdict::Warn,
        format!(
            "{} open for more than {limit}, the oldest for {} ({pid}{}, {}): vacuum cannot remove \
             the rows deleted since, so dead jobs pile up and claims slow down; end it, or set \
             idle_in_transaction_session_timeout (docs/deployment.md)",
            count(old.len() as i64, "transaction", "transactions"),
            span(oldest.open_secs),
            oldest.who,
            oldest.state,
        ),
    )
}
