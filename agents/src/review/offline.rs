//! The Reviewer's and the Refactorer's deterministic twins: the same input
//! gives the same answer, with no model.

use super::{AnalyseInput, Analysis, Issue, RefactorInput, Revision, Severity, Verdict};

/// Lines longer than this are flagged.
const LONG_LINE: usize = 100;

/// Words that, assigned a quoted literal, look like a hard-coded secret.
const SECRET_WORDS: [&str; 5] = ["password", "passwd", "secret", "api_key", "token"];

/// How lines of debug output start.
const DEBUG_OUTPUT: [&str; 4] = ["println!(", "dbg!(", "console.log(", "print("];

/// Checks one line; `previous` is the line before it.
fn line_issues(n: u32, line: &str, previous: Option<&str>) -> Vec<Issue> {
    let mut found = Vec::new();
    let mut issue = |severity, message: &str| {
        found.push(Issue {
            severity,
            line: Some(n),
            message: message.to_owned(),
        });
    };
    let lower = line.to_lowercase();
    let trimmed = line.trim_start();
    if SECRET_WORDS.iter().any(|w| lower.contains(w))
        && (line.contains('=') || line.contains(':'))
        && (line.contains('"') || line.contains('\''))
    {
        issue(
            Severity::Critical,
            "Looks like a hard-coded secret: read it from the environment or a secret store.",
        );
    }
    if (trimmed.starts_with("unsafe ") || line.contains(" unsafe {"))
        && !previous.is_some_and(|p| p.contains("SAFETY"))
    {
        issue(
            Severity::Major,
            "`unsafe` without a `// SAFETY:` comment saying why it is sound.",
        );
    }
    if line.contains(".unwrap()") {
        issue(
            Severity::Major,
            "`unwrap()` panics on an error: propagate it with `?` or handle it.",
        );
    }
    if line.contains("panic!(") {
        issue(
            Severity::Major,
            "`panic!` takes the process down: return an error instead.",
        );
    }
    if DEBUG_OUTPUT.iter().any(|p| trimmed.starts_with(p)) {
        issue(
            Severity::Minor,
            "Debug output left in: remove it or use the logger.",
        );
    }
    if ["TODO", "FIXME", "XXX"].iter().any(|w| line.contains(w)) {
        issue(
            Severity::Minor,
            "Unfinished work (TODO/FIXME): finish it or track it in an issue.",
        );
    }
    if line.chars().count() > LONG_LINE {
        issue(
            Severity::Info,
            &format!("Longer than {LONG_LINE} characters: wrap it."),
        );
    }
    if line != line.trim_end() {
        issue(Severity::Info, "Trailing whitespace.");
    }
    found
}

/// Reviews `input` with pattern checks (see the module docs of `review`).
pub fn offline_analysis(input: &AnalyseInput) -> Analysis {
    let lines: Vec<&str> = input.code.lines().collect();
    let mut issues: Vec<Issue> = Vec::new();
    if input.code.trim().is_empty() {
        issues.push(Issue {
            severity: Severity::Major,
            line: None,
            message: "The submission is empty: there is nothing to merge.".into(),
        });
    }
    for (i, line) in lines.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let previous = i.checked_sub(1).map(|p| lines[p]);
        issues.extend(line_issues(n, line, previous));
    }
    // Most serious first, then in line order (a stable sort keeps it).
    issues.sort_by_key(|i| std::cmp::Reverse(i.severity));
    let verdict = if issues.iter().any(|i| i.severity.blocks()) {
        Verdict::RequestChanges
    } else {
        Verdict::Approve
    };
    let analysis = Analysis {
        summary: String::new(),
        issues,
        verdict,
    };
    let found = if analysis.issues.is_empty() {
        "no issues".to_owned()
    } else {
        let counts: Vec<String> = analysis
            .counts()
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect();
        format!(
            "{} issue{} ({})",
            analysis.issues.len(),
            if analysis.issues.len() == 1 { "" } else { "s" },
            counts.join(", ")
        )
    };
    let suggestion = match verdict {
        Verdict::Approve => "nothing blocks the merge",
        Verdict::RequestChanges => "changes are needed before it merges",
    };
    Analysis {
        summary: format!(
            "\"{}\" by {}, revision {}: {} line{}, {found}; {suggestion}.",
            input.title,
            input.author,
            input.revision,
            lines.len(),
            if lines.len() == 1 { "" } else { "s" },
        ),
        ..analysis
    }
}

/// The comment marker of `language` (`//` unless known otherwise).
fn comment_marker(language: Option<&str>) -> &'static str {
    match language.map(str::to_lowercase).as_deref() {
        Some("python" | "ruby" | "shell" | "bash" | "sh" | "yaml" | "toml" | "perl" | "r") => "#",
        Some("sql" | "lua" | "haskell") => "--",
        _ => "//",
    }
}

/// Writes the next revision with mechanical edits: debug output removed,
/// trailing whitespace stripped, `.unwrap()` turned into `?`, and the
/// reviewer's feedback recorded as a comment at the top.
pub fn offline_refactor(input: &RefactorInput) -> Revision {
    let mut changes = Vec::new();
    let mut removed = 0;
    let mut stripped = 0;
    let mut unwraps = 0;
    let mut lines = Vec::new();
    for line in input.code.lines() {
        let trimmed = line.trim_start();
        if DEBUG_OUTPUT.iter().any(|p| trimmed.starts_with(p)) {
            removed += 1;
            continue;
        }
        if line.trim_end().len() != line.len() {
            stripped += 1;
        }
        let mut line = line.trim_end().to_owned();
        let n = line.matches(".unwrap()").count();
        if n > 0 {
            unwraps += n;
            line = line.replace(".unwrap()", "?");
        }
        lines.push(line);
    }
    if removed > 0 {
        changes.push(format!("Removed {removed} line(s) of debug output."));
    }
    if unwraps > 0 {
        changes.push(format!(
            "Replaced {unwraps} unwrap() with ? so errors propagate."
        ));
    }
    if stripped > 0 {
        changes.push("Stripped trailing whitespace.".to_owned());
    }
    let feedback = input
        .feedback
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no feedback given");
    let marker = comment_marker(input.language.as_deref());
    let note = format!(
        "{marker} Revision {}: {feedback}",
        input.revision.saturating_add(1)
    );
    changes.push(format!("Noted the reviewer's feedback: {feedback}"));
    let mut code = note;
    code.push('\n');
    code.push_str(&lines.join("\n"));
    if input.code.ends_with('\n') {
        code.push('\n');
    }
    Revision { code, changes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(code: &str) -> AnalyseInput {
        AnalyseInput {
            title: "Add the parser".into(),
            author: "sam".into(),
            language: Some("rust".into()),
            code: code.into(),
            revision: 1,
        }
    }

    #[test]
    fn clean_code_is_approved_and_blocking_issues_request_changes() {
        let clean = offline_analysis(&submission(
            "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
        ));
        assert_eq!(clean.verdict, Verdict::Approve);
        assert!(clean.issues.is_empty());
        assert!(
            clean.summary.contains("3 lines, no issues"),
            "{}",
            clean.summary
        );

        let code = "fn main() {\n    let api_key = \"sk-123\";\n    let n = parse(x).unwrap();   \n    println!(\"{n}\");\n}\n";
        let analysis = offline_analysis(&submission(code));
        assert_eq!(analysis.verdict, Verdict::RequestChanges);
        let found: Vec<(Severity, Option<u32>)> = analysis
            .issues
            .iter()
            .map(|i| (i.severity, i.line))
            .collect();
        assert_eq!(
            found,
            [
                (Severity::Critical, Some(2)),
                (Severity::Major, Some(3)),
                (Severity::Minor, Some(4)),
                (Severity::Info, Some(3)),
            ]
        );
        assert!(
            analysis
                .summary
                .contains("1 critical, 1 major, 1 minor, 1 info"),
            "{}",
            analysis.summary
        );
    }

    #[test]
    fn the_refactor_is_mechanical_and_records_the_feedback() {
        let input = RefactorInput {
            title: "Add the parser".into(),
            language: Some("rust".into()),
            code: "fn main() {\n    let n = parse(x).unwrap();   \n    dbg!(n);\n}\n".into(),
            revision: 1,
            feedback: "Please handle the parse error.\nThanks".into(),
            issues: Vec::new(),
        };
        let revision = offline_refactor(&input);
        assert_eq!(
            revision.code,
            "// Revision 2: Please handle the parse error.\nfn main() {\n    let n = parse(x)?;\n}\n"
        );
        assert_eq!(revision.changes.len(), 4, "{:?}", revision.changes);
        // Deterministic.
        assert_eq!(offline_refactor(&input), revision);
        let python = RefactorInput {
            language: Some("Python".into()),
            ..input
        };
        assert!(offline_refactor(&python).code.starts_with("# Revision 2"));
    }
}
