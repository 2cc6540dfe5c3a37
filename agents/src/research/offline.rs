//! The Planner's, the Researcher's and the Summariser's deterministic
//! twins: the same input gives the same answer, with no model.

use super::{
    FAIL_MARKER, Finding, Plan, PlanInput, ResearchError, SummariseInput, Summary, WorkInput,
};

/// Words too common to be key terms.
const STOP_WORDS: [&str; 24] = [
    "about", "after", "again", "their", "there", "these", "those", "which", "while", "would",
    "could", "should", "other", "where", "being", "every", "under", "between", "into", "with",
    "what", "when", "from", "that",
];

/// A list item's text without its bullet or number (`- `, `* `, `• `,
/// `1. `, `2) `).
fn strip_bullet(line: &str) -> &str {
    let line = line.trim();
    for bullet in ["- ", "* ", "• "] {
        if let Some(rest) = line.strip_prefix(bullet) {
            return rest.trim();
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        let rest = &line[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return rest.trim();
        }
    }
    line
}

/// Splits the task into sub-tasks: its lines when it is a list (a heading
/// ending in `:` is left out), else its `;`-separated parts, else its
/// sentences; at most `max_subtasks`, the rest joined into the last.
pub fn offline_plan(input: &PlanInput) -> Plan {
    let task = input.task.trim();
    let lines: Vec<&str> = task
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let (mut parts, how): (Vec<String>, &str) = if lines.len() > 1 {
        let items: Vec<String> = lines
            .iter()
            .filter(|l| !l.ends_with(':'))
            .map(|l| strip_bullet(l).to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        (items, "one sub-task per line of the task")
    } else if task.contains(';') {
        (
            task.split(';')
                .map(|p| p.trim().trim_end_matches('.').trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            "one sub-task per ;-separated part of the task",
        )
    } else {
        let mut sentences = Vec::new();
        let mut current = String::new();
        for c in task.chars() {
            current.push(c);
            if matches!(c, '.' | '?' | '!') {
                let sentence = current.trim().to_owned();
                if sentence.len() > 1 {
                    sentences.push(sentence);
                }
                current.clear();
            }
        }
        if !current.trim().is_empty() {
            sentences.push(current.trim().to_owned());
        }
        (sentences, "one sub-task per sentence of the task")
    };
    if parts.is_empty() {
        parts.push(task.to_owned());
    }
    let max = input.max_subtasks.max(1);
    if parts.len() > max {
        let rest = parts.split_off(max - 1).join("; ");
        parts.push(rest);
    }
    Plan {
        rationale: if parts.len() == 1 {
            "the task is one question".into()
        } else {
            how.into()
        },
        subtasks: parts,
    }
}

/// The sub-task's longest distinct words, in order of appearance (at most
/// three).
fn key_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric() && c != '_' && c != '/') {
        let lower = word.to_lowercase();
        if word.chars().count() >= 5
            && !STOP_WORDS.contains(&lower.as_str())
            && !terms.iter().any(|t| t.to_lowercase() == lower)
        {
            terms.push(word.to_owned());
        }
    }
    let mut ranked: Vec<(usize, String)> = terms.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| {
        b.1.chars()
            .count()
            .cmp(&a.1.chars().count())
            .then(a.0.cmp(&b.0))
    });
    ranked.truncate(3);
    ranked.sort_by_key(|(i, _)| *i);
    ranked.into_iter().map(|(_, t)| t).collect()
}

/// Notes on one sub-task; refuses one carrying [`FAIL_MARKER`].
pub fn offline_finding(input: &WorkInput) -> Result<Finding, ResearchError> {
    if input.subtask.to_lowercase().contains(FAIL_MARKER) {
        return Err(ResearchError::Refused(format!(
            "sub-task {} carries {FAIL_MARKER}",
            input.index
        )));
    }
    let terms = key_terms(&input.subtask);
    let words = input.subtask.split_whitespace().count();
    let finding = if terms.is_empty() {
        format!("Notes on \"{}\" ({words} words).", input.subtask)
    } else {
        format!(
            "Notes on \"{}\": it turns on {}.",
            input.subtask,
            terms.join(", ")
        )
    };
    Ok(Finding {
        finding,
        key_points: terms.iter().map(|t| format!("Look into {t}.")).collect(),
    })
}

/// Lists the findings in plan order, then what was not answered.
pub fn offline_summary(input: &SummariseInput) -> Summary {
    let answered = input.results.iter().filter(|r| r.finding.is_some()).count();
    let mut summary = format!(
        "{}\n\n{answered} of {} sub-tasks answered.",
        input.task.trim(),
        input.results.len()
    );
    let mut gaps = Vec::new();
    for result in &input.results {
        match (&result.finding, &result.error) {
            (Some(finding), _) => {
                summary.push_str(&format!("\n{}. {}", result.index, finding.finding));
            }
            (None, error) => {
                let why = error.as_deref().unwrap_or("no answer");
                gaps.push(format!(
                    "{}. {} — failed: {why}",
                    result.index, result.subtask
                ));
            }
        }
    }
    if !gaps.is_empty() {
        summary.push_str("\n\nNot answered:");
        for gap in &gaps {
            summary.push_str(&format!("\n{gap}"));
        }
    }
    Summary { summary, gaps }
}

#[cfg(test)]
mod tests {
    use super::super::SubtaskResult;
    use super::*;

    fn plan(task: &str, max: usize) -> Vec<String> {
        offline_plan(&PlanInput {
            task: task.into(),
            max_subtasks: max,
        })
        .subtasks
    }

    #[test]
    fn a_task_is_split_by_lines_then_semicolons_then_sentences() {
        assert_eq!(
            plan(
                "Compare job queues on Postgres:\n- SKIP LOCKED\n2) advisory locks\n* LISTEN/NOTIFY",
                5
            ),
            ["SKIP LOCKED", "advisory locks", "LISTEN/NOTIFY"]
        );
        assert_eq!(plan("a; b; c.", 5), ["a", "b", "c"]);
        assert_eq!(
            plan("What is MVCC? How does VACUUM work.", 5),
            ["What is MVCC?", "How does VACUUM work."]
        );
        assert_eq!(plan("one question", 5), ["one question"]);
        assert_eq!(plan("a; b; c; d", 2), ["a", "b; c; d"]);
    }

    #[test]
    fn the_researcher_refuses_the_marker_and_the_summary_reports_it() {
        let work = |index: usize, subtask: &str| {
            offline_finding(&WorkInput {
                task: "t".into(),
                subtask: subtask.into(),
                index,
            })
        };
        let ok = work(1, "How does SKIP LOCKED behave under contention?").expect("finding");
        assert_eq!(
            ok.finding,
            "Notes on \"How does SKIP LOCKED behave under contention?\": it turns on LOCKED, behave, contention."
        );
        let refused = work(2, "Benchmark advisory locks [FAIL]").expect_err("refused");
        assert!(!refused.retryable());
        let summary = offline_summary(&SummariseInput {
            task: "Queues".into(),
            results: vec![
                SubtaskResult {
                    index: 1,
                    subtask: "a".into(),
                    finding: Some(ok),
                    error: None,
                },
                SubtaskResult {
                    index: 2,
                    subtask: "b [fail]".into(),
                    finding: None,
                    error: Some(refused.to_string()),
                },
            ],
        });
        assert!(
            summary.summary.contains("1 of 2 sub-tasks answered"),
            "{}",
            summary.summary
        );
        assert_eq!(summary.gaps.len(), 1);
        assert!(summary.gaps[0].starts_with("2. b [fail] — failed: sub-task refused"));
    }
}
