//! The fan-out's LLM agents.
//!
//! | agent      | output      | checked                                        |
//! |------------|-------------|------------------------------------------------|
//! | Planner    | [`Plan`]    | 1 to `max_subtasks` non-empty sub-tasks        |
//! | Researcher | [`Finding`] | a non-empty finding                            |
//! | Summariser | [`Summary`] | a non-empty summary; one gap per failed sub-task |

use super::{Finding, Plan, PlanInput, SummariseInput, Summary, WorkInput};
use crate::agent::{Agent, AgentError};
use crate::llm::ledger::Recorder;
use crate::onboarding::AgentOptions;

const PLANNER: &str = "You split a research task into independent sub-tasks that separate \
researchers can work on in parallel, without talking to each other. Each sub-task is one \
self-contained instruction (it repeats whatever context it needs). Use as few sub-tasks \
as the task needs; never more than the limit you are given.";

const RESEARCHER: &str = "You work on one sub-task of a larger research task. Answer the \
sub-task only, concisely and concretely, in a short paragraph, and list its main points. \
Say what you are unsure of rather than inventing facts.";

const SUMMARISER: &str = "You combine the findings of parallel researchers into one answer \
to the task. Use only what the findings say. Some sub-tasks failed: name each of them in \
`gaps` (one line each) and say in the summary what is missing because of them.";

/// Splits the task with the model.
pub(crate) async fn plan(
    llm: &Recorder,
    options: &AgentOptions,
    input: &PlanInput,
) -> Result<Plan, AgentError> {
    let max = input.max_subtasks.max(1);
    let planner = Agent::<PlanInput, Plan>::new("planner")
        .instructions(PLANNER)
        .dynamic_instructions(|input: &PlanInput| {
            format!("At most {} sub-tasks.", input.max_subtasks.max(1))
        })
        .output(options.mode, options.strict, options.retries)
        .validate(move |_, out: &Plan| {
            let blank = out.subtasks.iter().any(|s| s.trim().is_empty());
            if out.subtasks.is_empty() || out.subtasks.len() > max || blank {
                Err(format!(
                    "give between 1 and {max} sub-tasks, none empty (you gave {})",
                    out.subtasks.len()
                ))
            } else {
                Ok(())
            }
        });
    let prompt = format!("The task:\n{}", input.task.trim());
    Ok(planner
        .run(llm, input, Vec::new(), &prompt, None)
        .await?
        .output)
}

/// Works on one sub-task with the model.
pub(crate) async fn work(
    llm: &Recorder,
    options: &AgentOptions,
    input: &WorkInput,
) -> Result<Finding, AgentError> {
    let researcher = Agent::<WorkInput, Finding>::new("researcher")
        .instructions(RESEARCHER)
        .output(options.mode, options.strict, options.retries)
        .validate(|_, out: &Finding| {
            if out.finding.trim().is_empty() {
                Err("finding is empty: answer the sub-task".into())
            } else {
                Ok(())
            }
        });
    let prompt = format!(
        "The whole task, for context:\n{}\n\nYour sub-task ({}):\n{}",
        input.task.trim(),
        input.index,
        input.subtask.trim()
    );
    Ok(researcher
        .run(llm, input, Vec::new(), &prompt, None)
        .await?
        .output)
}

/// Combines the findings with the model.
pub(crate) async fn summarise(
    llm: &Recorder,
    options: &AgentOptions,
    input: &SummariseInput,
) -> Result<Summary, AgentError> {
    let failed = input.results.iter().filter(|r| r.finding.is_none()).count();
    let summariser = Agent::<SummariseInput, Summary>::new("summariser")
        .instructions(SUMMARISER)
        .output(options.mode, options.strict, options.retries)
        .validate(move |_, out: &Summary| {
            if out.summary.trim().is_empty() {
                Err("summary is empty".into())
            } else if out.gaps.len() != failed {
                Err(format!(
                    "{failed} sub-task(s) failed: list exactly those in gaps (you listed {})",
                    out.gaps.len()
                ))
            } else {
                Ok(())
            }
        });
    let mut prompt = format!("The task:\n{}\n", input.task.trim());
    for result in &input.results {
        match (&result.finding, &result.error) {
            (Some(finding), _) => prompt.push_str(&format!(
                "\nSub-task {} ({}): {}\nKey points: {}\n",
                result.index,
                result.subtask,
                finding.finding,
                finding.key_points.join(" ")
            )),
            (None, error) => prompt.push_str(&format!(
                "\nSub-task {} ({}): FAILED — {}\n",
                result.index,
                result.subtask,
                error.as_deref().unwrap_or("no answer")
            )),
        }
    }
    Ok(summariser
        .run(llm, input, Vec::new(), &prompt, None)
        .await?
        .output)
}
