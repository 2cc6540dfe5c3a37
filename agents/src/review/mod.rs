//! Code review with a person in the loop (the Temporal-Lite spec's first use
//! case): an agent reviews submitted code, the reviewer is notified, the
//! workflow waits up to 7 days for their `approval`, then merges, or has an
//! agent refactor the code with their feedback and asks again, or escalates
//! when nobody answered.
//!
//! | module       | responsibility                                                      |
//! |--------------|---------------------------------------------------------------------|
//! | this module  | the agents' inputs and typed outputs; [`analyse`] and [`refactor`]  |
//! | [`llm`]      | the Reviewer and Refactorer as LLM agents, with code-reading tools  |
//! | `offline`    | their deterministic twins (pattern checks, mechanical edits)        |
//! | [`workflow`] | the `code_review` workflow: states, the `approval` signal, deadline |
//! | [`store`]    | `floe.notifications` and `floe.merges`                              |
//!
//! Without a model the offline twins answer: the Reviewer flags hard-coded
//! secrets, `unsafe`, `unwrap()`, `panic!`, debug output, TODOs, long lines
//! and trailing whitespace; the Refactorer removes debug output and trailing
//! whitespace, turns `.unwrap()` into `?` and records the reviewer's
//! feedback as a comment at the top.

pub mod llm;
mod offline;
pub mod store;
pub mod workflow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::AgentError;
use crate::llm::ledger::Recorder;
use crate::onboarding::AgentOptions;

pub use self::offline::{offline_analysis, offline_refactor};

/// How serious an issue is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Style; nobody needs to act.
    Info,
    /// Worth fixing, not blocking.
    Minor,
    /// Blocks the merge: a bug or a crash waiting to happen.
    Major,
    /// Blocks the merge: a security hole or data loss.
    Critical,
}

impl Severity {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Minor => "minor",
            Self::Major => "major",
            Self::Critical => "critical",
        }
    }

    /// Whether it should stop a merge.
    pub fn blocks(self) -> bool {
        self >= Self::Major
    }
}

/// What the Reviewer suggests to the person who decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing blocks the merge.
    Approve,
    /// Something should change first.
    RequestChanges,
}

/// One thing the Reviewer found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    /// How serious it is.
    pub severity: Severity,
    /// The line it is on (from 1); null when it is about the whole change.
    pub line: Option<u32>,
    /// What is wrong and what to do about it, in a sentence or two.
    pub message: String,
}

/// The Reviewer's analysis of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Analysis {
    /// What the change does and what stands out, in two or three sentences.
    pub summary: String,
    /// What should change, most serious first; empty when nothing.
    pub issues: Vec<Issue>,
    /// The suggestion for the person who decides.
    pub verdict: Verdict,
}

impl Analysis {
    /// How many issues of each severity, most serious first.
    pub fn counts(&self) -> Vec<(Severity, usize)> {
        let mut counts = Vec::new();
        for severity in [
            Severity::Critical,
            Severity::Major,
            Severity::Minor,
            Severity::Info,
        ] {
            let n = self
                .issues
                .iter()
                .filter(|i| i.severity == severity)
                .count();
            if n > 0 {
                counts.push((severity, n));
            }
        }
        counts
    }
}

/// The Refactorer's new revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Revision {
    /// The whole new code.
    pub code: String,
    /// What changed and why, one short sentence each.
    pub changes: Vec<String>,
}

/// What the Reviewer is given: the `review.analyse` activity's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyseInput {
    /// The change's title.
    pub title: String,
    /// Who wrote it.
    pub author: String,
    /// Its language, when known (`rust`, `python`, ...).
    #[serde(default)]
    pub language: Option<String>,
    /// The code.
    pub code: String,
    /// Which revision (1: as submitted).
    #[serde(default = "first")]
    pub revision: u32,
}

fn first() -> u32 {
    1
}

/// What the Refactorer is given: the `review.refactor` activity's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefactorInput {
    /// The change's title.
    pub title: String,
    /// Its language, when known.
    #[serde(default)]
    pub language: Option<String>,
    /// The rejected revision's code.
    pub code: String,
    /// The rejected revision's number; the new one is the next.
    #[serde(default = "first")]
    pub revision: u32,
    /// What the reviewer asked for.
    #[serde(default)]
    pub feedback: String,
    /// What the Reviewer found in the rejected revision.
    #[serde(default)]
    pub issues: Vec<Issue>,
}

/// Reviews one revision: the LLM Reviewer with a model (`llm`), else the
/// offline one (which never fails).
#[tracing::instrument(skip_all, err, fields(title = %input.title, revision = input.revision, llm = llm.is_some()))]
pub async fn analyse(
    llm: Option<&Recorder>,
    options: &AgentOptions,
    input: &AnalyseInput,
) -> Result<Analysis, AgentError> {
    let analysis = match llm {
        None => offline_analysis(input),
        Some(recorder) => self::llm::analyse(recorder, options, input).await?,
    };
    tracing::info!(issues = analysis.issues.len(), verdict = ?analysis.verdict, "code reviewed");
    Ok(analysis)
}

/// Writes the next revision with the reviewer's feedback: the LLM
/// Refactorer with a model, else the offline one (which never fails).
#[tracing::instrument(skip_all, err, fields(title = %input.title, revision = input.revision, llm = llm.is_some()))]
pub async fn refactor(
    llm: Option<&Recorder>,
    options: &AgentOptions,
    input: &RefactorInput,
) -> Result<Revision, AgentError> {
    let revision = match llm {
        None => offline_refactor(input),
        Some(recorder) => self::llm::refactor(recorder, options, input).await?,
    };
    tracing::info!(changes = revision.changes.len(), "code refactored");
    Ok(revision)
}

/// `code` with each line numbered from 1 (`12| text`), at most `limit`
/// lines; says how many were left out.
pub fn numbered(code: &str, limit: usize) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let mut text: String = lines
        .iter()
        .take(limit)
        .enumerate()
        .map(|(i, line)| format!("{:>4}| {line}\n", i + 1))
        .collect();
    if lines.len() > limit {
        text.push_str(&format!(
            "… {} more lines (read them with read_lines)\n",
            lines.len() - limit
        ));
    }
    text
}
