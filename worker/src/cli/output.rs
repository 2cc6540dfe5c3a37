//! How `floe` prints: aligned tables and `key  value` lists for people, one
//! JSON document for scripts (`--json`). Hand-rolled: a table here is a few
//! columns of short, mostly ASCII text, which does not need a table crate.

use std::fmt::Write as _;
use std::io::Write as _;

use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

use super::Error;

/// Longest cell printed in a table (longer text ends in `…`); `--json` has
/// everything.
const MAX_CELL: usize = 60;

/// Where a command's result goes: a table for people, or JSON.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `--json`.
    pub json: bool,
}

impl Out {
    /// Prints `value` as one JSON document (pretty, so that it reads in a
    /// terminal too; parsers do not mind).
    pub fn json<T: Serialize>(&self, value: &T) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Error::Unexpected(anyhow::anyhow!("cannot encode the result: {e}")))?;
        print_stdout(&format!("{text}\n"))
    }
}

/// Writes to stdout, treating a closed pipe (`floe … | head`) as the end.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Unexpected(anyhow::anyhow!("cannot write: {e}"))),
    }
}

/// Columns with a header, padded to the widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per header; newlines become spaces, long cells
    /// are cut).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| cell(&c)).collect());
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row after the header.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(c);
                } else {
                    let _ = write!(line, "{c:<w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A one-line, length-limited cell.
fn cell(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX_CELL {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_CELL - 1).collect();
    cut.push('…');
    cut
}

/// `label  value` lines, the labels padded to the longest.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let mut lines = v.lines();
        let _ = writeln!(out, "{k:<width$}  {}", lines.next().unwrap_or(""));
        for line in lines {
            let _ = writeln!(out, "{:<width$}  {line}", "");
        }
    }
    out
}

/// A timestamp in UTC to the second: `2026-11-22 10:31:05`.
pub fn time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An optional timestamp, `-` when absent.
pub fn opt_time(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

/// A span of seconds for people: `850ms`, `42s`, `3m 20s`, `5h 3m`, `2d 4h`.
pub fn span(secs: f64) -> String {
    let secs = secs.abs();
    if secs < 1.0 {
        return format!("{}ms", (secs * 1000.0).round() as u64);
    }
    let s = secs.round() as u64;
    let (big, small, big_unit, small_unit) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, s % 60, "m", "s"),
        3600..86_400 => (s / 3600, s % 3600 / 60, "h", "m"),
        _ => (s / 86_400, s % 86_400 / 3600, "d", "h"),
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit} {small}{small_unit}")
    }
}

/// How far `t` is from now: `in 4m 2s` or `12s ago`.
pub fn relative(t: OffsetDateTime) -> String {
    let secs = (t - OffsetDateTime::now_utc()).as_seconds_f64();
    if secs >= 0.0 {
        format!("in {}", span(secs))
    } else {
        format!("{} ago", span(secs))
    }
}

/// A timestamp with how far it is from now: `2026-11-22 10:31:05 (in 4m 2s)`.
pub fn time_relative(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| format!("{} ({})", time(t), relative(t)),
    )
}

/// `n` and the noun, singular or plural: `1 job`, `3 jobs`.
pub fn count(n: impl Into<i64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// An optional value, `-` when absent.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// JSON on one line (for table cells).
pub fn compact(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// JSON, indented (for `show`).
pub fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let mut t = Table::new(&["ID", "KIND", "NOTE"]);
        t.row(vec!["1".into(), "test.counter".into(), "a".into()]);
        t.row(vec!["1234".into(), "x".into(), "b\nc".into()]);
        assert_eq!(
            t.render(),
            "ID    KIND          NOTE\n1     test.counter  a\n1234  x             b c\n"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(cell(&long).chars().count(), MAX_CELL);
        assert!(cell(&long).ends_with('…'));
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(0.25), "250ms");
        assert_eq!(span(42.0), "42s");
        assert_eq!(span(200.0), "3m 20s");
        assert_eq!(span(3.0 * 3600.0 + 120.0), "3h 2m");
        assert_eq!(span(-90.0), "1m 30s");
        assert_eq!(span(60.0), "1m");
        assert_eq!(span(7200.0), "2h");
    }
}
