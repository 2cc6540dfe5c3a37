//! `research` and `research.subtask`: the Temporal-Lite spec's multi-agent
//! fan-out, as pure transition functions over the engine's events.
//!
//! ```text
//! research:          planning ──► working ──(every child reported)──► summarising ──► completed
//!                                  │  ▲
//!                  StartChild × n  ▼  │ Event::Child (ok or error), one per sub-task
//! research.subtask:           working ──► completed (the finding) | failed (the error)
//! ```
//!
//! `plan` (the Planner) splits the task; the parent starts one
//! `research.subtask` child per sub-task in the same transition (ids
//! `subtask-1`, `subtask-2`, …; the engine starts them together and they run
//! in parallel on any workers). Each child runs `work` (the Researcher) and
//! completes with its finding, or fails with the Researcher's error. The
//! parent records each child's outcome as it arrives — a failed child is a
//! result like any other — and once every child has reported runs
//! `summarise` (the Summariser) over all of them, failures included. If the
//! Summariser itself fails after its attempts, the parent completes with the
//! offline summary (computed in the transition: it is a pure function), so
//! the findings are never lost. Only a failed plan fails the workflow.
//! Cancelling the parent cancels its open children (the engine does that).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use floe_engine::workflow::{ActivityPolicy, Command, Ctx, Event, Transition, Workflow};

use super::{
    DEFAULT_MAX_SUBTASKS, Finding, Plan, PlanInput, SubtaskResult, SummariseInput, Summary,
    WorkInput, offline_summary,
};

/// The activity that runs the Planner.
pub const PLAN: &str = "research.plan";
/// The activity that runs the Researcher on one sub-task.
pub const WORK: &str = "research.work";
/// The activity that runs the Summariser.
pub const SUMMARISE: &str = "research.summarise";

/// The parent workflow.
pub struct Research;

/// The child workflow, one per sub-task.
pub struct Subtask;

/// Neither workflow takes signals: the API refuses any with 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoSignal {}

fn default_max() -> usize {
    DEFAULT_MAX_SUBTASKS
}

/// What a research workflow starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResearchInput {
    /// The task.
    pub task: String,
    /// Most sub-tasks (and so children), 1 to 20 (5).
    #[serde(default = "default_max")]
    pub max_subtasks: usize,
}

/// Where a research workflow is: the row's `state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResearchStage {
    /// `plan` runs. In: the start. Out: the plan → working (a failed plan
    /// fails the workflow).
    Planning,
    /// The children run. In: the plan. Out: the last child's outcome →
    /// summarising.
    Working,
    /// `summarise` runs. In: every child reported. Out: completed.
    Summarising,
    /// Completed with the summary.
    Done,
}

impl ResearchStage {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planning => "planning",
            Self::Working => "working",
            Self::Summarising => "summarising",
            Self::Done => "done",
        }
    }
}

/// How one sub-task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskStatus {
    /// Its child runs.
    Running,
    /// Its child completed with a finding.
    Done,
    /// Its child failed (or was cancelled).
    Failed,
}

/// One sub-task in the parent's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSlot {
    /// Its number, from 1 (the child's id is `subtask-{index}`).
    pub index: usize,
    /// The sub-task.
    pub subtask: String,
    /// How it stands.
    pub status: SubtaskStatus,
    /// Its finding.
    pub finding: Option<Finding>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A research workflow's state: the row's `context`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResearchState {
    /// The task.
    pub task: String,
    /// Most sub-tasks.
    pub max_subtasks: usize,
    /// Where it is.
    pub stage: ResearchStage,
    /// Why the Planner split it so.
    pub rationale: Option<String>,
    /// The sub-tasks, in plan order.
    pub subtasks: Vec<SubtaskSlot>,
    /// The summary, once written.
    pub summary: Option<Summary>,
    /// The last failure worth an operator's look.
    pub last_error: Option<String>,
}

/// A model may be slow or rate limited.
fn agent_policy() -> ActivityPolicy {
    ActivityPolicy {
        max_attempts: 4,
        backoff_base_ms: 1_000,
        backoff_max_ms: 30_000,
        timeout_ms: 300_000,
    }
}

/// The child id of sub-task `index`.
fn child_id(index: usize) -> String {
    format!("subtask-{index}")
}

type Outcome = Result<Transition<ResearchState>, String>;

impl ResearchState {
    fn new(input: ResearchInput) -> Result<Self, String> {
        if input.task.trim().is_empty() {
            return Err("a research workflow needs a task".into());
        }
        if !(1..=20).contains(&input.max_subtasks) {
            return Err("max_subtasks must be 1 to 20".into());
        }
        Ok(Self {
            task: input.task,
            max_subtasks: input.max_subtasks,
            stage: ResearchStage::Planning,
            rationale: None,
            subtasks: Vec::new(),
            summary: None,
            last_error: None,
        })
    }

    fn start(self) -> Outcome {
        let input = serde_json::to_value(PlanInput {
            task: self.task.clone(),
            max_subtasks: self.max_subtasks,
        })
        .map_err(|e| e.to_string())?;
        Ok(Transition::to(self).then(Command::RunActivity {
            id: "plan".into(),
            name: PLAN.into(),
            input,
            policy: agent_policy(),
        }))
    }

    fn planned(mut self, result: Result<Value, String>) -> Outcome {
        let plan = result.and_then(|v| {
            serde_json::from_value::<Plan>(v).map_err(|e| format!("plan does not decode: {e}"))
        });
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => {
                self.last_error = Some(format!("{PLAN}: {e}"));
                return Ok(Transition::to(self).then(Command::Fail {
                    error: format!("planning failed: {e}"),
                }));
            }
        };
        let mut subtasks: Vec<String> = plan
            .subtasks
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .take(self.max_subtasks)
            .collect();
        if subtasks.is_empty() {
            subtasks.push(self.task.trim().to_owned());
        }
        self.rationale = Some(plan.rationale);
        self.stage = ResearchStage::Working;
        let mut commands = Vec::with_capacity(subtasks.len());
        for (i, subtask) in subtasks.into_iter().enumerate() {
            let index = i + 1;
            let input = serde_json::to_value(WorkInput {
                task: self.task.clone(),
                subtask: subtask.clone(),
                index,
            })
            .map_err(|e| e.to_string())?;
            commands.push(Command::StartChild {
                id: child_id(index),
                kind: Subtask::KIND.into(),
                input,
            });
            self.subtasks.push(SubtaskSlot {
                index,
                subtask,
                status: SubtaskStatus::Running,
                finding: None,
                error: None,
            });
        }
        Ok(Transition {
            state: self,
            commands,
        })
    }

    fn child(mut self, id: &str, result: Result<Value, String>) -> Outcome {
        let Some(slot) = self
            .subtasks
            .iter_mut()
            .find(|s| child_id(s.index) == id && s.status == SubtaskStatus::Running)
        else {
            return Ok(Transition::to(self));
        };
        let finding = result.and_then(|v| {
            serde_json::from_value::<Finding>(v)
                .map_err(|e| format!("finding does not decode: {e}"))
        });
        match finding {
            Ok(finding) => {
                slot.status = SubtaskStatus::Done;
                slot.finding = Some(finding);
            }
            Err(e) => {
                slot.status = SubtaskStatus::Failed;
                slot.error = Some(e);
            }
        }
        if self.stage != ResearchStage::Working
            || self
                .subtasks
                .iter()
                .any(|s| s.status == SubtaskStatus::Running)
        {
            return Ok(Transition::to(self));
        }
        self.stage = ResearchStage::Summarising;
        let input = serde_json::to_value(self.summarise_input()).map_err(|e| e.to_string())?;
        Ok(Transition::to(self).then(Command::RunActivity {
            id: "summarise".into(),
            name: SUMMARISE.into(),
            input,
            policy: agent_policy(),
        }))
    }

    fn summarise_input(&self) -> SummariseInput {
        SummariseInput {
            task: self.task.clone(),
            results: self
                .subtasks
                .iter()
                .map(|s| SubtaskResult {
                    index: s.index,
                    subtask: s.subtask.clone(),
                    finding: s.finding.clone(),
                    error: s.error.clone(),
                })
                .collect(),
        }
    }

    fn summarised(mut self, result: Result<Value, String>) -> Outcome {
        let summary = result.and_then(|v| {
            serde_json::from_value::<Summary>(v)
                .map_err(|e| format!("summary does not decode: {e}"))
        });
        let (summary, by) = match summary {
            Ok(summary) => (summary, "summariser"),
            Err(e) => {
                self.last_error = Some(format!("{SUMMARISE}: {e}"));
                (offline_summary(&self.summarise_input()), "offline")
            }
        };
        self.stage = ResearchStage::Done;
        let failed: Vec<Value> = self
            .subtasks
            .iter()
            .filter(|s| s.status == SubtaskStatus::Failed)
            .map(|s| json!({ "index": s.index, "subtask": s.subtask, "error": s.error }))
            .collect();
        let output = json!({
            "task": self.task,
            "summary": summary.summary,
            "gaps": summary.gaps,
            "summarised_by": by,
            "subtasks": self.subtasks.len(),
            "answered": self.subtasks.len() - failed.len(),
            "failed": failed,
        });
        self.summary = Some(summary);
        Ok(Transition::to(self).then(Command::Complete { output }))
    }

    fn activity(self, id: &str, result: Result<Value, String>) -> Outcome {
        match (id, self.stage) {
            ("plan", ResearchStage::Planning) => self.planned(result),
            ("summarise", ResearchStage::Summarising) => self.summarised(result),
            _ => Ok(Transition::to(self)),
        }
    }

    /// The `get_status` query.
    pub fn status(&self) -> Value {
        let count = |status| self.subtasks.iter().filter(|s| s.status == status).count();
        json!({
            "state": self.stage.as_str(),
            "task": self.task,
            "rationale": self.rationale,
            "subtasks": self.subtasks.iter().map(|s| json!({
                "index": s.index,
                "child": child_id(s.index),
                "subtask": s.subtask,
                "status": s.status,
                "finding": s.finding.as_ref().map(|f| f.finding.clone()),
                "error": s.error,
            })).collect::<Vec<_>>(),
            "running": count(SubtaskStatus::Running),
            "answered": count(SubtaskStatus::Done),
            "failed": count(SubtaskStatus::Failed),
            "summary": self.summary.as_ref().map(|s| s.summary.clone()),
            "last_error": self.last_error,
        })
    }
}

impl Workflow for Research {
    const KIND: &'static str = "research";
    type Input = ResearchInput;
    type State = ResearchState;
    type Signal = NoSignal;

    fn state_name(state: &ResearchState) -> String {
        state.stage.as_str().to_owned()
    }

    fn apply(
        state: Option<ResearchState>,
        event: Event<ResearchInput, NoSignal>,
        _ctx: &Ctx,
    ) -> Result<Transition<ResearchState>, String> {
        match (state, event) {
            (None, Event::Start(input)) => ResearchState::new(input)?.start(),
            (None, other) => Err(format!("{other:?} before the start")),
            (Some(_), Event::Start(_)) => Err("started twice".into()),
            (Some(s), Event::Activity { id, result }) => s.activity(&id, result),
            (Some(s), Event::Child { id, result }) => s.child(&id, result),
            (Some(_), Event::Signal(never)) => match never {},
            (Some(s), Event::Timer { .. }) => Ok(Transition::to(s)),
        }
    }

    fn query(state: &ResearchState, name: &str) -> Option<Value> {
        (name == "get_status").then(|| state.status())
    }
}

/// Where a sub-task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskStage {
    /// `work` runs. In: the start. Out: completed or failed.
    Working,
    /// Completed with the finding.
    Done,
    /// Failed with the Researcher's error.
    Failed,
}

/// A sub-task's state: the child row's `context`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskState {
    /// What it works on.
    pub input: WorkInput,
    /// Where it is.
    pub stage: SubtaskStage,
    /// Its finding.
    pub finding: Option<Finding>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Workflow for Subtask {
    const KIND: &'static str = "research.subtask";
    type Input = WorkInput;
    type State = SubtaskState;
    type Signal = NoSignal;

    fn state_name(state: &SubtaskState) -> String {
        match state.stage {
            SubtaskStage::Working => "working",
            SubtaskStage::Done => "done",
            SubtaskStage::Failed => "failed",
        }
        .to_owned()
    }

    fn apply(
        state: Option<SubtaskState>,
        event: Event<WorkInput, NoSignal>,
        _ctx: &Ctx,
    ) -> Result<Transition<SubtaskState>, String> {
        match (state, event) {
            (None, Event::Start(input)) => {
                let payload = serde_json::to_value(&input).map_err(|e| e.to_string())?;
                let state = SubtaskState {
                    input,
                    stage: SubtaskStage::Working,
                    finding: None,
                    error: None,
                };
                Ok(Transition::to(state).then(Command::RunActivity {
                    id: "work".into(),
                    name: WORK.into(),
                    input: payload,
                    policy: agent_policy(),
                }))
            }
            (None, other) => Err(format!("{other:?} before the start")),
            (Some(_), Event::Start(_)) => Err("started twice".into()),
            (Some(mut s), Event::Activity { id, result }) if id == "work" => {
                let finding = result.and_then(|v| {
                    serde_json::from_value::<Finding>(v)
                        .map_err(|e| format!("finding does not decode: {e}"))
                });
                match finding {
                    Ok(finding) => {
                        let output = serde_json::to_value(&finding).map_err(|e| e.to_string())?;
                        s.stage = SubtaskStage::Done;
                        s.finding = Some(finding);
                        Ok(Transition::to(s).then(Command::Complete { output }))
                    }
                    Err(e) => {
                        s.stage = SubtaskStage::Failed;
                        s.error = Some(e.clone());
                        Ok(Transition::to(s).then(Command::Fail { error: e }))
                    }
                }
            }
            (Some(s), _) => Ok(Transition::to(s)),
        }
    }

    fn query(state: &SubtaskState, name: &str) -> Option<Value> {
        (name == "get_status").then(|| {
            json!({
                "state": Self::state_name(state),
                "index": state.input.index,
                "subtask": state.input.subtask,
                "finding": state.finding,
                "error": state.error,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::research::{offline_finding, offline_plan};
    use time::macros::datetime;
    use uuid::Uuid;

    fn ctx() -> Ctx {
        Ctx {
            workflow_id: Uuid::nil(),
            seq: 2,
            now: datetime!(2026-11-25 09:00 UTC),
        }
    }

    #[test]
    fn the_plan_fans_out_a_failed_child_is_reported_and_the_summary_completes() {
        let task = "Postgres queues:\n- How does SKIP LOCKED scale?\n- Benchmark advisory locks [fail]\n- When does LISTEN/NOTIFY drop messages?";
        let input = ResearchInput {
            task: task.into(),
            max_subtasks: 5,
        };
        let t = Research::apply(None, Event::Start(input), &ctx()).expect("start");
        let Command::RunActivity { input, .. } = &t.commands[0] else {
            panic!("no plan");
        };
        let plan = offline_plan(&serde_json::from_value(input.clone()).expect("input"));
        let t = Research::apply(
            Some(t.state),
            Event::Activity {
                id: "plan".into(),
                result: Ok(serde_json::to_value(plan).expect("plan")),
            },
            &ctx(),
        )
        .expect("planned");
        assert_eq!(t.state.stage, ResearchStage::Working);
        let children: Vec<(String, WorkInput)> = t
            .commands
            .iter()
            .map(|c| match c {
                Command::StartChild { id, kind, input } => {
                    assert_eq!(kind, Subtask::KIND);
                    (
                        id.clone(),
                        serde_json::from_value(input.clone()).expect("work"),
                    )
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(children.len(), 3);
        // Children report in any order; the summary waits for all.
        let mut state = t.state;
        let mut last = Vec::new();
        for (id, work) in children.iter().rev() {
            let result = offline_finding(work)
                .map(|f| serde_json::to_value(f).expect("finding"))
                .map_err(|e| e.to_string());
            let t = Research::apply(
                Some(state),
                Event::Child {
                    id: id.clone(),
                    result,
                },
                &ctx(),
            )
            .expect("child");
            state = t.state;
            last = t.commands;
        }
        assert_eq!(state.stage, ResearchStage::Summarising);
        assert_eq!(state.status()["failed"], 1);
        assert!(matches!(&last[..], [Command::RunActivity { name, .. }] if name == SUMMARISE));
        // The Summariser fails for good: the offline summary stands in.
        let t = Research::apply(
            Some(state),
            Event::Activity {
                id: "summarise".into(),
                result: Err("model down".into()),
            },
            &ctx(),
        )
        .expect("summarised");
        let Some(Command::Complete { output }) = t.commands.last() else {
            panic!("not complete");
        };
        assert_eq!(output["summarised_by"], "offline");
        assert_eq!(output["answered"], 2);
        assert_eq!(output["failed"][0]["index"], 2);
        assert!(
            output["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("Not answered:\n2. Benchmark advisory locks [fail]"),
            "{output}"
        );
    }

    #[test]
    fn a_subtask_completes_with_its_finding_or_fails_with_the_error() {
        let work = WorkInput {
            task: "t".into(),
            subtask: "Measure [fail]".into(),
            index: 1,
        };
        let t = Subtask::apply(None, Event::Start(work), &ctx()).expect("start");
        let t = Subtask::apply(
            Some(t.state),
            Event::Activity {
                id: "work".into(),
                result: Err("sub-task refused".into()),
            },
            &ctx(),
        )
        .expect("failed");
        assert!(
            matches!(&t.commands[..], [Command::Fail { error }] if error == "sub-task refused")
        );
        assert_eq!(Subtask::state_name(&t.state), "failed");
    }
}
