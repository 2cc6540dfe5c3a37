//! The Reviewer and the Refactorer as LLM agents. Both see the code with
//! line numbers (up to [`SHOWN_LINES`]) and may read more of it with two
//! tools, recorded in the ledger like every tool call:
//!
//! | tool         | arguments        | answers                                   |
//! |--------------|------------------|-------------------------------------------|
//! | `read_lines` | `{start, end}`   | `{lines: [{line, text}]}`, at most 200    |
//! | `search`     | `{text}`         | `{matches: [{line, text}]}`, at most 50   |
//!
//! | agent      | output       | checked                                                      |
//! |------------|--------------|--------------------------------------------------------------|
//! | Reviewer   | [`Analysis`] | a summary; issue lines exist; no `approve` with a blocking issue |
//! | Refactorer | [`Revision`] | code, not the same as before; at least one change listed     |

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AnalyseInput, Analysis, RefactorInput, Revision, Verdict, numbered};
use crate::agent::{self, Agent, AgentError, Tool};
use crate::llm::ledger::Recorder;
use crate::onboarding::AgentOptions;

/// Lines of code shown in the prompt; the rest is read with the tools.
pub const SHOWN_LINES: usize = 300;

/// Most lines one `read_lines` call returns.
const READ_LIMIT: usize = 200;

/// Most matches one `search` call returns.
const SEARCH_LIMIT: usize = 50;

const REVIEWER: &str = "You are a careful senior engineer reviewing a code change before it \
is merged. Find what would break in production, what is insecure (hard-coded secrets, \
injection, unchecked input), what will crash (unwrap, panic, unchecked indexing), and what \
makes the code hard to maintain. Report each problem once, with its line, its severity \
(critical: security or data loss; major: a bug or a crash; minor: worth fixing; info: \
style) and what to do about it. Do not invent problems: an empty list is a fine answer. \
Suggest approve only when nothing major or critical remains. Use read_lines and search to \
look at code the prompt does not show.";

const REFACTORER: &str = "You are the author's assistant. The reviewer rejected this \
revision of the code; rewrite it so that it addresses their feedback and the issues found, \
changing nothing else. Answer with the whole new code (not a diff) and one short sentence \
per change. Keep the language, the style and the public names.";

/// The code an agent works on.
#[derive(Debug, Clone)]
pub(crate) struct Code {
    title: String,
    language: Option<String>,
    lines: Vec<String>,
}

impl Code {
    fn new(title: &str, language: Option<&str>, code: &str) -> Self {
        Self {
            title: title.to_owned(),
            language: language.map(str::to_owned),
            lines: code.lines().map(str::to_owned).collect(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "The change: \"{}\"{}, {} lines.",
            self.title,
            self.language
                .as_deref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default(),
            self.lines.len()
        )
    }
}

/// `read_lines`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ReadLines {
    /// The first line to read, from 1.
    start: u32,
    /// The last line to read (inclusive).
    end: u32,
}

/// `search`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct Search {
    /// The text to look for (case-sensitive).
    text: String,
}

/// Lines `start..=end` of the code.
pub(crate) fn read_lines(code: &Code, args: ReadLines) -> Result<Value, String> {
    let count = code.lines.len();
    if args.start == 0 || args.end < args.start {
        return Err(format!(
            "start must be at least 1 and end at least start (the code has {count} lines)"
        ));
    }
    let start = args.start as usize;
    if start > count {
        return Err(format!("the code has only {count} lines"));
    }
    let end = (args.end as usize).min(count).min(start + READ_LIMIT - 1);
    let lines: Vec<Value> = (start..=end)
        .map(|n| json!({ "line": n, "text": code.lines[n - 1] }))
        .collect();
    Ok(json!({ "lines": lines }))
}

/// The lines containing `text`.
pub(crate) fn search(code: &Code, args: Search) -> Result<Value, String> {
    if args.text.is_empty() {
        return Err("text is empty".into());
    }
    let matches: Vec<Value> = code
        .lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains(&args.text))
        .take(SEARCH_LIMIT)
        .map(|(i, line)| json!({ "line": i + 1, "text": line }))
        .collect();
    Ok(json!({ "matches": matches }))
}

fn tools() -> [Arc<dyn Tool<Code>>; 2] {
    [
        agent::tool(
            "read_lines",
            "Reads lines start..=end of the code (at most 200 at a time), with their numbers.",
            read_lines,
        ),
        agent::tool(
            "search",
            "Finds the lines of the code that contain a text, with their numbers.",
            search,
        ),
    ]
}

fn reviewer(options: &AgentOptions) -> Agent<Code, Analysis> {
    let [read, find] = tools();
    Agent::new("reviewer")
        .instructions(REVIEWER)
        .dynamic_instructions(Code::describe)
        .tool(read)
        .tool(find)
        .output(options.mode, options.strict, options.retries)
        .validate(|_, out: &Analysis| {
            if out.summary.trim().is_empty() {
                Err("summary is empty: say what the change does and what stands out".into())
            } else {
                Ok(())
            }
        })
        .validate(|code: &Code, out: &Analysis| {
            let count = code.lines.len();
            let beyond: Vec<String> = out
                .issues
                .iter()
                .filter_map(|i| i.line)
                .filter(|line| *line == 0 || *line as usize > count)
                .map(|line| line.to_string())
                .collect();
            if beyond.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "issue lines {} do not exist: the code has lines 1 to {count} (null for the whole change)",
                    beyond.join(", ")
                ))
            }
        })
        .validate(|_, out: &Analysis| {
            if out.verdict == Verdict::Approve && out.issues.iter().any(|i| i.severity.blocks()) {
                Err("verdict is approve but a major or critical issue is listed: request changes, or lower its severity if it does not block".into())
            } else {
                Ok(())
            }
        })
}

fn refactorer(options: &AgentOptions, before: String) -> Agent<Code, Revision> {
    let [read, find] = tools();
    Agent::new("refactorer")
        .instructions(REFACTORER)
        .dynamic_instructions(Code::describe)
        .tool(read)
        .tool(find)
        .output(options.mode, options.strict, options.retries)
        .validate(move |_, out: &Revision| {
            if out.code.trim().is_empty() {
                Err("code is empty: answer with the whole new code".into())
            } else if out.code.trim() == before.trim() {
                Err("the code is unchanged: address the reviewer's feedback".into())
            } else if out.changes.iter().all(|c| c.trim().is_empty()) {
                Err("changes is empty: list what you changed".into())
            } else {
                Ok(())
            }
        })
}

/// Reviews one revision with the model.
pub(crate) async fn analyse(
    llm: &Recorder,
    options: &AgentOptions,
    input: &AnalyseInput,
) -> Result<Analysis, AgentError> {
    let code = Code::new(&input.title, input.language.as_deref(), &input.code);
    let prompt = format!(
        "Review revision {} of \"{}\" by {}.\n\n{}",
        input.revision,
        input.title,
        input.author,
        numbered(&input.code, SHOWN_LINES)
    );
    let run = reviewer(options)
        .run(llm, &code, Vec::new(), &prompt, None)
        .await?;
    let mut analysis = run.output;
    analysis
        .issues
        .sort_by_key(|i| std::cmp::Reverse(i.severity));
    Ok(analysis)
}

/// Writes the next revision with the model.
pub(crate) async fn refactor(
    llm: &Recorder,
    options: &AgentOptions,
    input: &RefactorInput,
) -> Result<Revision, AgentError> {
    let code = Code::new(&input.title, input.language.as_deref(), &input.code);
    let issues: Vec<String> = input
        .issues
        .iter()
        .map(|i| {
            let at = i.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            format!("- {} {at}{}", i.severity.as_str(), i.message)
        })
        .collect();
    let prompt = format!(
        "The reviewer rejected revision {} of \"{}\".\n\nTheir feedback:\n{}\n\nIssues found:\n{}\n\nThe code:\n{}",
        input.revision,
        input.title,
        if input.feedback.trim().is_empty() {
            "(none given)"
        } else {
            input.feedback.trim()
        },
        if issues.is_empty() {
            "(none)".to_owned()
        } else {
            issues.join("\n")
        },
        numbered(&input.code, SHOWN_LINES)
    );
    let run = refactorer(options, input.code.clone())
        .run(llm, &code, Vec::new(), &prompt, None)
        .await?;
    Ok(run.output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::schema_for;

    fn code() -> Code {
        Code::new("t", Some("rust"), "fn a() {}\nfn b() {}\nlet x = 1;\n")
    }

    #[test]
    fn the_tools_read_and_search_the_code_or_explain() {
        let read = read_lines(&code(), ReadLines { start: 2, end: 9 }).expect("read");
        assert_eq!(
            read,
            json!({ "lines": [{ "line": 2, "text": "fn b() {}" }, { "line": 3, "text": "let x = 1;" }] })
        );
        assert!(read_lines(&code(), ReadLines { start: 4, end: 5 }).is_err());
        assert!(read_lines(&code(), ReadLines { start: 0, end: 1 }).is_err());
        let found = search(&code(), Search { text: "fn ".into() }).expect("search");
        assert_eq!(found["matches"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn the_outputs_have_strict_schemas() {
        for schema in [schema_for::<Analysis>(true), schema_for::<Revision>(true)] {
            let text = schema.to_string();
            assert!(!text.contains("oneOf"), "{text}");
            assert!(text.contains("\"additionalProperties\":false"), "{text}");
        }
    }
}
