//! `code_review`: the Temporal-Lite spec's code review with a person in the
//! loop, as a pure transition function over the engine's events.
//!
//! ```text
//! analysing ──► notifying ──► awaiting_approval ──approved──► merging ──► merged
//!     ▲                          │      │
//!     │                 rejected │      │ no decision by the deadline
//!     └──── refactoring ◄────────┘      ▼
//!       (at most max_rounds;      escalating ──► escalated
//!        then: rejected)
//! ```
//!
//! Each revision `n` runs `r{n}.analyse` (the Reviewer), then `r{n}.notify`
//! (a row in `floe.notifications` for the reviewer), then waits for the
//! `approval` signal with the deadline `approval_timeout_secs` ahead (7 days
//! unless the input says otherwise). Approved: `r{n}.merge` records the merge
//! and the workflow completes with outcome `merged`. Rejected: `r{n}.refactor`
//! (the Refactorer, with the feedback) writes revision `n + 1`, which is
//! analysed and sent to the reviewer again — at most `max_rounds` times; a
//! rejection after that completes with outcome `rejected`. No decision by
//! the deadline: `r{n}.escalate` records an escalation (a notification for
//! `escalate_to`) and the workflow completes with outcome `escalated`: it
//! is terminal, a late approval is refused (409) and whoever picks up the
//! escalation starts a new review. A refactor that fails after its attempts
//! escalates the same way.
//!
//! An `approval` that arrives when the workflow is not waiting for one, or
//! that names another revision (`revision` in its payload), changes nothing
//! but a note in the state: a decision is about the revision the reviewer
//! was shown.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use floe_engine::workflow::{ActivityPolicy, Command, Ctx, Event, Transition, Workflow};

use super::store::{NewMerge, NewNotification};
use super::{AnalyseInput, Analysis, RefactorInput, Revision};

/// The activity that runs the Reviewer.
pub const ANALYSE: &str = "review.analyse";
/// The activity that tells the reviewer a revision is ready.
pub const NOTIFY: &str = "review.notify";
/// The activity that records the merge.
pub const MERGE: &str = "review.merge";
/// The activity that runs the Refactorer.
pub const REFACTOR: &str = "review.refactor";
/// The activity that records an escalation.
pub const ESCALATE: &str = "review.escalate";
/// The deadline's reason while the workflow waits for a decision.
pub const APPROVAL_TIMEOUT: &str = "approval_timeout";

/// Seven days, the spec's wait for a decision.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// The longest wait for a decision: a hundred years. A longer one would
/// put the deadline past any date the engine can store.
pub const MAX_APPROVAL_TIMEOUT_SECS: u64 = 100 * 365 * 24 * 3600;
/// Refactors before a rejection is final.
pub const DEFAULT_MAX_ROUNDS: u32 = 3;

/// Notes on ignored signals kept in the state.
const MAX_NOTES: usize = 20;

/// The code review workflow.
pub struct CodeReview;

fn default_reviewer() -> String {
    "reviewers".into()
}

fn default_escalate_to() -> String {
    "engineering-leads".into()
}

fn default_timeout() -> u64 {
    DEFAULT_APPROVAL_TIMEOUT_SECS
}

fn default_rounds() -> u32 {
    DEFAULT_MAX_ROUNDS
}

/// What a code review starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CodeReviewInput {
    /// The change's title.
    pub title: String,
    /// Who wrote it.
    pub author: String,
    /// The submitted code.
    pub code: String,
    /// Its language, when known (`rust`, `python`, ...).
    #[serde(default)]
    pub language: Option<String>,
    /// Who decides (a person or a team); notified of each revision.
    #[serde(default = "default_reviewer")]
    pub reviewer: String,
    /// Who is told when no decision comes in time.
    #[serde(default = "default_escalate_to")]
    pub escalate_to: String,
    /// How long to wait for each decision, in seconds (7 days; at most
    /// [`MAX_APPROVAL_TIMEOUT_SECS`]).
    #[serde(default = "default_timeout")]
    pub approval_timeout_secs: u64,
    /// Refactors before a rejection is final (3).
    #[serde(default = "default_rounds")]
    pub max_rounds: u32,
}

/// A reviewer's decision: the `approval` signal's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Approval {
    /// Merge it (true) or rework it (false).
    pub approved: bool,
    /// Who decided (defaults to the review's reviewer).
    #[serde(default)]
    pub reviewer: Option<String>,
    /// What to change, for a rejection.
    #[serde(default)]
    pub feedback: Option<String>,
    /// The revision decided on; when given, a decision about another one
    /// is ignored.
    #[serde(default)]
    pub revision: Option<u32>,
}

/// The signals a code review takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", content = "payload", rename_all = "snake_case")]
pub enum ReviewSignal {
    /// The reviewer decided.
    Approval(Approval),
}

/// Where a review is: the row's `state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// `r{n}.analyse` runs. In: the start, or a refactor's new revision.
    /// Out: its result (or failure: the reviewer is told without an
    /// analysis) → notifying.
    Analysing,
    /// `r{n}.notify` runs. In: the analysis. Out: its result → awaiting
    /// approval.
    Notifying,
    /// Waits for `approval`, the deadline set. Out: approved → merging;
    /// rejected → refactoring (or rejected when the rounds are spent); the
    /// deadline → escalating.
    AwaitingApproval,
    /// `r{n}.refactor` runs. In: a rejection. Out: the new revision →
    /// analysing; a failure → escalating.
    Refactoring,
    /// `r{n}.merge` runs. In: an approval. Out: merged (or failed when the
    /// merge cannot be recorded).
    Merging,
    /// `r{n}.escalate` runs. In: the deadline, or a failed refactor. Out:
    /// escalated.
    Escalating,
    /// Completed: the approved revision is in `floe.merges`.
    Merged,
    /// Completed: rejected after `max_rounds` refactors.
    Rejected,
    /// Completed: nobody decided in time (or the refactor failed); the
    /// escalation is in `floe.notifications`.
    Escalated,
}

impl Stage {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analysing => "analysing",
            Self::Notifying => "notifying",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Refactoring => "refactoring",
            Self::Merging => "merging",
            Self::Escalating => "escalating",
            Self::Merged => "merged",
            Self::Rejected => "rejected",
            Self::Escalated => "escalated",
        }
    }

    /// The activity that runs in this stage (its id is `r{n}.{this}`).
    fn activity(self) -> Option<&'static str> {
        match self {
            Self::Analysing => Some("analyse"),
            Self::Notifying => Some("notify"),
            Self::Refactoring => Some("refactor"),
            Self::Merging => Some("merge"),
            Self::Escalating => Some("escalate"),
            Self::AwaitingApproval | Self::Merged | Self::Rejected | Self::Escalated => None,
        }
    }
}

/// A decision as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The revision decided on.
    pub revision: u32,
    /// Approved or not.
    pub approved: bool,
    /// Who decided.
    pub reviewer: String,
    /// What they said.
    pub feedback: Option<String>,
    /// When the decision arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A code review's state: the row's `context`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewState {
    /// The change's title.
    pub title: String,
    /// Who wrote it.
    pub author: String,
    /// Its language.
    pub language: Option<String>,
    /// Who decides.
    pub reviewer: String,
    /// Who is told when no decision comes.
    pub escalate_to: String,
    /// The wait for each decision, in seconds.
    pub approval_timeout_secs: u64,
    /// Refactors before a rejection is final.
    pub max_rounds: u32,
    /// Where it is.
    pub stage: Stage,
    /// The current revision (1: as submitted).
    pub revision: u32,
    /// The current revision's code.
    pub code: String,
    /// The Reviewer's analysis of the current revision (none while it runs,
    /// or when it failed).
    pub analysis: Option<Analysis>,
    /// What the last refactor changed.
    pub changes: Vec<String>,
    /// Every decision, in order.
    pub decisions: Vec<Decision>,
    /// Until when the current wait for a decision lasts.
    #[serde(with = "time::serde::rfc3339::option")]
    pub awaiting_until: Option<OffsetDateTime>,
    /// The recorded merge, once merged.
    pub merge: Option<Value>,
    /// Why it escalates, once it does.
    pub escalation: Option<String>,
    /// Signals that changed nothing, and why (the last few).
    pub notes: Vec<String>,
    /// The last activity failure, for operators.
    pub last_error: Option<String>,
}

/// Analysing: a model may be slow or rate limited.
fn agent_policy() -> ActivityPolicy {
    ActivityPolicy {
        max_attempts: 4,
        backoff_base_ms: 1_000,
        backoff_max_ms: 30_000,
        timeout_ms: 300_000,
    }
}

/// Writing a row: keep trying.
fn store_policy() -> ActivityPolicy {
    ActivityPolicy {
        max_attempts: 20,
        backoff_base_ms: 200,
        backoff_max_ms: 10_000,
        timeout_ms: 15_000,
    }
}

/// A transition's result.
type Outcome = Result<Transition<ReviewState>, String>;

/// `secs` as people say it ("7 days", "90 seconds").
fn human(secs: u64) -> String {
    let (n, unit) = if secs >= 86_400 && secs.is_multiple_of(86_400) {
        (secs / 86_400, "day")
    } else if secs >= 3_600 && secs.is_multiple_of(3_600) {
        (secs / 3_600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl ReviewState {
    fn new(input: CodeReviewInput) -> Result<Self, String> {
        if input.title.trim().is_empty() {
            return Err("a code review needs a title".into());
        }
        if input.reviewer.trim().is_empty() || input.escalate_to.trim().is_empty() {
            return Err("reviewer and escalate_to must name someone".into());
        }
        if input.approval_timeout_secs == 0 {
            return Err("approval_timeout_secs must be at least 1".into());
        }
        if input.approval_timeout_secs > MAX_APPROVAL_TIMEOUT_SECS {
            return Err(format!(
                "approval_timeout_secs must be at most {MAX_APPROVAL_TIMEOUT_SECS} (100 years)"
            ));
        }
        Ok(Self {
            title: input.title.trim().to_owned(),
            author: input.author,
            language: input.language,
            reviewer: input.reviewer,
            escalate_to: input.escalate_to,
            approval_timeout_secs: input.approval_timeout_secs,
            max_rounds: input.max_rounds,
            stage: Stage::Analysing,
            revision: 1,
            code: input.code,
            analysis: None,
            changes: Vec::new(),
            decisions: Vec::new(),
            awaiting_until: None,
            merge: None,
            escalation: None,
            notes: Vec::new(),
            last_error: None,
        })
    }

    fn id(&self, what: &str) -> String {
        format!("r{}.{what}", self.revision)
    }

    fn note(&mut self, note: String) {
        self.notes.push(note);
        if self.notes.len() > MAX_NOTES {
            self.notes.remove(0);
        }
    }

    /// Refactors left before a rejection is final.
    pub fn rounds_left(&self) -> u32 {
        self.max_rounds.saturating_sub(self.revision - 1)
    }

    fn analyse(mut self) -> Outcome {
        self.stage = Stage::Analysing;
        self.analysis = None;
        let input = AnalyseInput {
            title: self.title.clone(),
            author: self.author.clone(),
            language: self.language.clone(),
            code: self.code.clone(),
            revision: self.revision,
        };
        let input = serde_json::to_value(input).map_err(|e| e.to_string())?;
        let id = self.id("analyse");
        Ok(Transition::to(self).then(Command::RunActivity {
            id,
            name: ANALYSE.into(),
            input,
            policy: agent_policy(),
        }))
    }

    fn analysed(mut self, result: Result<Value, String>) -> Outcome {
        let analysis = result.and_then(|v| {
            serde_json::from_value::<Analysis>(v)
                .map_err(|e| format!("analysis does not decode: {e}"))
        });
        let body = match analysis {
            Ok(analysis) => {
                let mut body = format!(
                    "{}\n\nSuggested: {}.",
                    analysis.summary,
                    match analysis.verdict {
                        super::Verdict::Approve => "approve",
                        super::Verdict::RequestChanges => "request changes",
                    }
                );
                for issue in &analysis.issues {
                    let at = issue
                        .line
                        .map(|l| format!(" (line {l})"))
                        .unwrap_or_default();
                    body.push_str(&format!(
                        "\n- {}{at}: {}",
                        issue.severity.as_str(),
                        issue.message
                    ));
                }
                self.analysis = Some(analysis);
                body
            }
            Err(e) => {
                self.last_error = Some(format!("{ANALYSE}: {e}"));
                format!("The automatic review failed ({e}); please review the code yourself.")
            }
        };
        self.stage = Stage::Notifying;
        let notice = NewNotification {
            recipient: self.reviewer.clone(),
            kind: "review_requested".into(),
            subject: format!(
                "Review requested: {} (revision {}) by {}",
                self.title, self.revision, self.author
            ),
            body,
            payload: json!({
                "title": self.title,
                "author": self.author,
                "revision": self.revision,
                "analysis": self.analysis,
                "code": self.code,
                "decide_within_secs": self.approval_timeout_secs,
            }),
        };
        let input = serde_json::to_value(notice).map_err(|e| e.to_string())?;
        let id = self.id("notify");
        Ok(Transition::to(self).then(Command::RunActivity {
            id,
            name: NOTIFY.into(),
            input,
            policy: store_policy(),
        }))
    }

    fn notified(mut self, result: Result<Value, String>, ctx: &Ctx) -> Outcome {
        if let Err(e) = result {
            self.last_error = Some(format!("{NOTIFY}: {e}"));
        }
        self.stage = Stage::AwaitingApproval;
        let wait = i64::try_from(self.approval_timeout_secs).unwrap_or(i64::MAX);
        let at = ctx
            .now
            .checked_add(time::Duration::seconds(wait))
            .unwrap_or(ctx.now);
        self.awaiting_until = Some(at);
        Ok(Transition::to(self).then(Command::SetDeadline {
            at,
            reason: APPROVAL_TIMEOUT.into(),
        }))
    }

    fn decided(mut self, approval: Approval, ctx: &Ctx) -> Outcome {
        if self.stage != Stage::AwaitingApproval {
            let note = format!(
                "approval ignored: the review is {}, not awaiting approval",
                self.stage.as_str()
            );
            self.note(note);
            return Ok(Transition::to(self));
        }
        if let Some(revision) = approval.revision.filter(|r| *r != self.revision) {
            let note = format!(
                "approval ignored: it is about revision {revision}, the current one is {}",
                self.revision
            );
            self.note(note);
            return Ok(Transition::to(self));
        }
        let reviewer = approval
            .reviewer
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| self.reviewer.clone());
        let feedback = approval.feedback.filter(|f| !f.trim().is_empty());
        self.decisions.push(Decision {
            revision: self.revision,
            approved: approval.approved,
            reviewer: reviewer.clone(),
            feedback: feedback.clone(),
            at: ctx.now,
        });
        self.awaiting_until = None;
        if approval.approved {
            self.stage = Stage::Merging;
            let merge = NewMerge {
                title: self.title.clone(),
                author: self.author.clone(),
                approved_by: reviewer,
                revision: self.revision,
                code: self.code.clone(),
            };
            let input = serde_json::to_value(merge).map_err(|e| e.to_string())?;
            let id = self.id("merge");
            return Ok(Transition::to(self).then(Command::ClearDeadline).then(
                Command::RunActivity {
                    id,
                    name: MERGE.into(),
                    input,
                    policy: store_policy(),
                },
            ));
        }
        if self.rounds_left() == 0 {
            self.stage = Stage::Rejected;
            let output = self.output("rejected");
            return Ok(Transition::to(self)
                .then(Command::ClearDeadline)
                .then(Command::Complete { output }));
        }
        self.stage = Stage::Refactoring;
        let input = RefactorInput {
            title: self.title.clone(),
            language: self.language.clone(),
            code: self.code.clone(),
            revision: self.revision,
            feedback: feedback.unwrap_or_default(),
            issues: self
                .analysis
                .as_ref()
                .map(|a| a.issues.clone())
                .unwrap_or_default(),
        };
        let input = serde_json::to_value(input).map_err(|e| e.to_string())?;
        let id = self.id("refactor");
        Ok(Transition::to(self)
            .then(Command::ClearDeadline)
            .then(Command::RunActivity {
                id,
                name: REFACTOR.into(),
                input,
                policy: agent_policy(),
            }))
    }

    fn refactored(mut self, result: Result<Value, String>) -> Outcome {
        let revision = result.and_then(|v| {
            serde_json::from_value::<Revision>(v)
                .map_err(|e| format!("revision does not decode: {e}"))
        });
        match revision {
            Ok(revision) => {
                self.revision += 1;
                self.code = revision.code;
                self.changes = revision.changes;
                self.analyse()
            }
            Err(e) => {
                self.last_error = Some(format!("{REFACTOR}: {e}"));
                self.escalate(format!("the automatic refactor failed: {e}"))
            }
        }
    }

    fn escalate(mut self, reason: String) -> Outcome {
        self.stage = Stage::Escalating;
        self.awaiting_until = None;
        self.escalation = Some(reason.clone());
        let notice = NewNotification {
            recipient: self.escalate_to.clone(),
            kind: "escalation".into(),
            subject: format!(
                "Review escalated: {} (revision {}) by {}",
                self.title, self.revision, self.author
            ),
            body: format!(
                "{reason}. The review was waiting for {}; it is closed as escalated: \
                 decide, then start a new review if the change should go in.",
                self.reviewer
            ),
            payload: json!({
                "title": self.title,
                "author": self.author,
                "reviewer": self.reviewer,
                "revision": self.revision,
                "reason": reason,
                "decisions": self.decisions,
            }),
        };
        let input = serde_json::to_value(notice).map_err(|e| e.to_string())?;
        let id = self.id("escalate");
        Ok(Transition::to(self).then(Command::RunActivity {
            id,
            name: ESCALATE.into(),
            input,
            policy: store_policy(),
        }))
    }

    fn timed_out(self) -> Outcome {
        if self.stage != Stage::AwaitingApproval {
            return Ok(Transition::to(self));
        }
        let reason = format!(
            "no decision from {} within {}",
            self.reviewer,
            human(self.approval_timeout_secs)
        );
        self.escalate(reason)
    }

    fn finished(mut self, stage: Stage, outcome: &str, result: Result<Value, String>) -> Outcome {
        match result {
            Ok(value) => {
                if stage == Stage::Merged {
                    self.merge = Some(value);
                }
                self.stage = stage;
                let output = self.output(outcome);
                Ok(Transition::to(self).then(Command::Complete { output }))
            }
            Err(e) => {
                let activity = if stage == Stage::Merged {
                    MERGE
                } else {
                    ESCALATE
                };
                self.last_error = Some(format!("{activity}: {e}"));
                Ok(Transition::to(self).then(Command::Fail {
                    error: format!("{activity} failed: {e}"),
                }))
            }
        }
    }

    fn activity(mut self, id: &str, result: Result<Value, String>, ctx: &Ctx) -> Outcome {
        let current = self.stage.activity().map(|what| self.id(what));
        if current.as_deref() != Some(id) {
            // Not what the review waits for (cannot happen but by hand).
            if let Err(e) = result {
                self.last_error = Some(format!("{id}: {e}"));
            }
            return Ok(Transition::to(self));
        }
        match self.stage {
            Stage::Analysing => self.analysed(result),
            Stage::Notifying => self.notified(result, ctx),
            Stage::Refactoring => self.refactored(result),
            Stage::Merging => self.finished(Stage::Merged, "merged", result),
            Stage::Escalating => self.finished(Stage::Escalated, "escalated", result),
            Stage::AwaitingApproval | Stage::Merged | Stage::Rejected | Stage::Escalated => {
                Ok(Transition::to(self))
            }
        }
    }

    /// The workflow's output when it completes with `outcome`.
    fn output(&self, outcome: &str) -> Value {
        json!({
            "outcome": outcome,
            "title": self.title,
            "author": self.author,
            "revision": self.revision,
            "decisions": self.decisions,
            "merge": self.merge,
            "escalation": self.escalation,
        })
    }

    /// The `get_status` query.
    pub fn status(&self) -> Value {
        let issues: serde_json::Map<String, Value> = self
            .analysis
            .as_ref()
            .map(|a| {
                a.counts()
                    .into_iter()
                    .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
                    .collect()
            })
            .unwrap_or_default();
        let until = self.awaiting_until.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        let outcome = match self.stage {
            Stage::Merged => Some("merged"),
            Stage::Rejected => Some("rejected"),
            Stage::Escalated => Some("escalated"),
            _ => None,
        };
        json!({
            "state": self.stage.as_str(),
            "title": self.title,
            "author": self.author,
            "reviewer": self.reviewer,
            "revision": self.revision,
            "rounds_left": self.rounds_left(),
            "awaiting_approval_until": until,
            "summary": self.analysis.as_ref().map(|a| a.summary.clone()),
            "verdict": self.analysis.as_ref().map(|a| a.verdict),
            "issues": issues,
            "changes": self.changes,
            "decisions": self.decisions,
            "outcome": outcome,
            "escalation": self.escalation,
            "notes": self.notes,
            "last_error": self.last_error,
        })
    }

    /// The `get_revision` query: the code under review and its analysis.
    pub fn current_revision(&self) -> Value {
        json!({
            "revision": self.revision,
            "code": self.code,
            "analysis": self.analysis,
            "changes": self.changes,
        })
    }
}

impl Workflow for CodeReview {
    const KIND: &'static str = "code_review";
    type Input = CodeReviewInput;
    type State = ReviewState;
    type Signal = ReviewSignal;

    fn state_name(state: &ReviewState) -> String {
        state.stage.as_str().to_owned()
    }

    fn apply(
        state: Option<ReviewState>,
        event: Event<CodeReviewInput, ReviewSignal>,
        ctx: &Ctx,
    ) -> Result<Transition<ReviewState>, String> {
        match (state, event) {
            (None, Event::Start(input)) => ReviewState::new(input)?.analyse(),
            (None, other) => Err(format!("{other:?} before the start")),
            (Some(_), Event::Start(_)) => Err("started twice".into()),
            (Some(s), Event::Signal(ReviewSignal::Approval(approval))) => s.decided(approval, ctx),
            (Some(s), Event::Activity { id, result }) => s.activity(&id, result, ctx),
            (Some(s), Event::Timer { reason }) if reason == APPROVAL_TIMEOUT => s.timed_out(),
            (Some(s), Event::Timer { .. } | Event::Child { .. }) => Ok(Transition::to(s)),
        }
    }

    fn query(state: &ReviewState, name: &str) -> Option<Value> {
        match name {
            "get_status" => Some(state.status()),
            "get_revision" => Some(state.current_revision()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::{AnalyseInput, offline_analysis, offline_refactor};
    use time::macros::datetime;
    use uuid::Uuid;

    fn ctx() -> Ctx {
        Ctx {
            workflow_id: Uuid::nil(),
            seq: 2,
            now: datetime!(2026-11-25 09:00 UTC),
        }
    }

    fn input(max_rounds: u32) -> CodeReviewInput {
        CodeReviewInput {
            title: "Parse the config".into(),
            author: "sam".into(),
            code: "fn main() {\n    let n = parse(x).unwrap();\n}\n".into(),
            language: Some("rust".into()),
            reviewer: "alex".into(),
            escalate_to: "leads".into(),
            approval_timeout_secs: 60,
            max_rounds,
        }
    }

    fn apply(
        state: Option<ReviewState>,
        event: Event<CodeReviewInput, ReviewSignal>,
    ) -> Transition<ReviewState> {
        CodeReview::apply(state, event, &ctx()).expect("apply")
    }

    fn activity(t: &Transition<ReviewState>) -> (String, String, Value) {
        t.commands
            .iter()
            .find_map(|c| match c {
                Command::RunActivity {
                    id, name, input, ..
                } => Some((id.clone(), name.clone(), input.clone())),
                _ => None,
            })
            .expect("an activity")
    }

    /// Runs the offline agents for the activity `t` asked for.
    fn run(t: Transition<ReviewState>) -> Transition<ReviewState> {
        let (id, name, input) = activity(&t);
        let result = match name.as_str() {
            ANALYSE => {
                let input: AnalyseInput = serde_json::from_value(input).expect("input");
                serde_json::to_value(offline_analysis(&input)).expect("encode")
            }
            REFACTOR => {
                let input: RefactorInput = serde_json::from_value(input).expect("input");
                serde_json::to_value(offline_refactor(&input)).expect("encode")
            }
            _ => json!({ "id": 1 }),
        };
        apply(
            Some(t.state),
            Event::Activity {
                id,
                result: Ok(result),
            },
        )
    }

    fn approval(approved: bool, feedback: Option<&str>) -> Event<CodeReviewInput, ReviewSignal> {
        Event::Signal(ReviewSignal::Approval(Approval {
            approved,
            reviewer: Some("alex".into()),
            feedback: feedback.map(str::to_owned),
            revision: None,
        }))
    }

    /// Started, analysed and notified: waiting for a decision.
    fn waiting(max_rounds: u32) -> Transition<ReviewState> {
        let t = apply(None, Event::Start(input(max_rounds)));
        assert_eq!(activity(&t).0, "r1.analyse");
        let t = run(t);
        assert_eq!(t.state.stage, Stage::Notifying);
        let (_, name, notice) = activity(&t);
        assert_eq!(name, NOTIFY);
        assert_eq!(notice["recipient"], "alex");
        assert!(
            notice["body"]
                .as_str()
                .unwrap_or_default()
                .contains("unwrap"),
            "{notice}"
        );
        let t = run(t);
        assert_eq!(t.state.stage, Stage::AwaitingApproval);
        assert!(matches!(
            &t.commands[..],
            [Command::SetDeadline { at, reason }]
                if *at == datetime!(2026-11-25 09:01 UTC) && reason == APPROVAL_TIMEOUT
        ));
        t
    }

    #[test]
    fn approved_merges_and_completes() {
        let t = waiting(3);
        let t = apply(Some(t.state), approval(true, None));
        assert_eq!(t.state.stage, Stage::Merging);
        assert!(matches!(t.commands[0], Command::ClearDeadline));
        let (id, name, merge) = activity(&t);
        assert_eq!((id.as_str(), name.as_str()), ("r1.merge", MERGE));
        assert_eq!(merge["approved_by"], "alex");
        let t = run(t);
        assert_eq!(t.state.stage, Stage::Merged);
        let Some(Command::Complete { output }) = t.commands.last() else {
            panic!("not complete: {:?}", t.commands);
        };
        assert_eq!(output["outcome"], "merged");
        assert_eq!(output["merge"], json!({ "id": 1 }));
    }

    #[test]
    fn rejected_is_refactored_and_asked_again_until_the_rounds_run_out() {
        let t = waiting(1);
        let t = apply(Some(t.state), approval(false, Some("Handle the error")));
        assert_eq!(t.state.stage, Stage::Refactoring);
        let (id, _, refactor) = activity(&t);
        assert_eq!(id, "r1.refactor");
        assert_eq!(refactor["feedback"], "Handle the error");
        assert_eq!(refactor["issues"][0]["severity"], "major");
        let t = run(t);
        assert_eq!(t.state.revision, 2);
        assert_eq!(activity(&t).0, "r2.analyse");
        assert!(t.state.code.starts_with("// Revision 2: Handle the error"));
        let t = run(run(t));
        assert_eq!(t.state.stage, Stage::AwaitingApproval);
        assert_eq!(
            t.state.analysis.as_ref().map(|a| a.verdict),
            Some(super::super::Verdict::Approve)
        );
        // No rounds left: a second rejection is final.
        let t = apply(Some(t.state), approval(false, Some("Still no")));
        assert_eq!(t.state.stage, Stage::Rejected);
        let Some(Command::Complete { output }) = t.commands.last() else {
            panic!("not complete: {:?}", t.commands);
        };
        assert_eq!(output["outcome"], "rejected");
        assert_eq!(output["decisions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn no_decision_in_time_escalates() {
        let t = waiting(3);
        let t = apply(
            Some(t.state),
            Event::Timer {
                reason: APPROVAL_TIMEOUT.into(),
            },
        );
        assert_eq!(t.state.stage, Stage::Escalating);
        let (id, name, notice) = activity(&t);
        assert_eq!((id.as_str(), name.as_str()), ("r1.escalate", ESCALATE));
        assert_eq!(notice["recipient"], "leads");
        assert_eq!(notice["kind"], "escalation");
        assert!(
            notice["body"]
                .as_str()
                .unwrap_or_default()
                .starts_with("no decision from alex within 1 minute"),
            "{notice}"
        );
        let t = run(t);
        assert_eq!(t.state.stage, Stage::Escalated);
        assert_eq!(t.state.status()["outcome"], "escalated");
        assert!(matches!(t.commands.last(), Some(Command::Complete { .. })));
    }

    #[test]
    fn a_decision_out_of_turn_or_about_another_revision_changes_nothing_but_a_note() {
        let t = apply(None, Event::Start(input(3)));
        let early = apply(Some(t.state), approval(true, None));
        assert!(early.commands.is_empty());
        assert_eq!(early.state.stage, Stage::Analysing);
        assert_eq!(early.state.notes.len(), 1);
        let t = waiting(3);
        let mut stale = Approval {
            approved: true,
            reviewer: None,
            feedback: None,
            revision: Some(7),
        };
        let t = apply(
            Some(t.state),
            Event::Signal(ReviewSignal::Approval(stale.clone())),
        );
        assert!(t.commands.is_empty());
        assert_eq!(t.state.stage, Stage::AwaitingApproval);
        stale.revision = Some(1);
        let t = apply(Some(t.state), Event::Signal(ReviewSignal::Approval(stale)));
        assert_eq!(t.state.stage, Stage::Merging);
        assert_eq!(
            t.state.decisions[0].reviewer, "alex",
            "the review's reviewer"
        );
    }

    #[test]
    fn a_failed_analysis_still_asks_the_reviewer_and_a_failed_refactor_escalates() {
        let t = apply(None, Event::Start(input(3)));
        let t = apply(
            Some(t.state),
            Event::Activity {
                id: "r1.analyse".into(),
                result: Err("model down".into()),
            },
        );
        assert_eq!(t.state.stage, Stage::Notifying);
        assert!(
            activity(&t).2["body"]
                .as_str()
                .unwrap_or_default()
                .contains("model down")
        );
        let t = run(t);
        let t = apply(Some(t.state), approval(false, Some("fix it")));
        let t = apply(
            Some(t.state),
            Event::Activity {
                id: "r1.refactor".into(),
                result: Err("model down".into()),
            },
        );
        assert_eq!(t.state.stage, Stage::Escalating);
        assert!(
            t.state
                .escalation
                .as_deref()
                .unwrap_or_default()
                .contains("refactor failed")
        );
    }

    #[test]
    fn the_signal_decodes_from_the_api_shape() {
        let signal: ReviewSignal = serde_json::from_value(json!({
            "name": "approval",
            "payload": { "approved": false, "reviewer": "alex", "feedback": "no" },
        }))
        .expect("decode");
        assert!(matches!(
            signal,
            ReviewSignal::Approval(Approval {
                approved: false,
                ..
            })
        ));
        let input: CodeReviewInput =
            serde_json::from_value(json!({ "title": "t", "author": "a", "code": "x" }))
                .expect("input");
        assert_eq!(input.approval_timeout_secs, DEFAULT_APPROVAL_TIMEOUT_SECS);
        assert_eq!(input.reviewer, "reviewers");
        assert_eq!(human(604_800), "7 days");
        assert_eq!(human(90), "90 seconds");
    }
}
