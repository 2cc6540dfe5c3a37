//! Due dates from what people say: "tomorrow", "next friday", "in 3 days",
//! "dec 5", "2026-12-01", resolved against the user's today. Pure: the
//! same words and the same today give the same date.
//!
//! The rules, where English is ambiguous:
//! - a bare weekday ("friday", "this friday", "by friday") is its next
//!   occurrence on or after today (today if today is that day);
//! - "next friday" is the Friday of next week (the Monday-to-Sunday week
//!   after this one);
//! - "next week" is next week's Monday, "end of week" the coming Friday,
//!   "weekend" the coming Saturday, "next month" the first of next month;
//! - a month and day without a year ("dec 5") is its next occurrence on or
//!   after today.

use std::sync::LazyLock;

use regex::Regex;
use time::{Date, Duration, Month, OffsetDateTime, Weekday};

/// The user's today: `today` (`YYYY-MM-DD`, the context's date) when it
/// parses, else the system's date (UTC).
pub fn today(today: Option<&str>) -> Date {
    match today.map(|t| (t, parse_iso(t))) {
        Some((_, Some(date))) => date,
        Some((raw, None)) => {
            tracing::warn!(
                today = raw,
                "context's today is not YYYY-MM-DD; using the system date"
            );
            OffsetDateTime::now_utc().date()
        }
        None => OffsetDateTime::now_utc().date(),
    }
}

/// A `YYYY-MM-DD` date, if `text` is one (and a real day).
pub fn parse_iso(text: &str) -> Option<Date> {
    static ISO: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"^(\d{4})-(\d{2})-(\d{2})$").ok());
    let caps = ISO.as_ref()?.captures(text.trim())?;
    let year: i32 = caps[1].parse().ok()?;
    let month: u8 = caps[2].parse().ok()?;
    let day: u8 = caps[3].parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// `date` as `YYYY-MM-DD`.
pub fn format_iso(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// `date` for people: "Fri, Nov 27" (with the year when it is not
/// `today`'s).
pub fn describe(date: Date, today: Date) -> String {
    let weekday = &weekday_name(date.weekday())[..3];
    let month = &month_name(date.month())[..3];
    let mut text = format!("{weekday}, {month} {}", date.day());
    if date.year() != today.year() {
        text.push_str(&format!(", {}", date.year()));
    }
    text
}

/// The English name of `weekday` ("Friday").
pub fn weekday_name(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

fn month_name(month: Month) -> &'static str {
    match month {
        Month::January => "January",
        Month::February => "February",
        Month::March => "March",
        Month::April => "April",
        Month::May => "May",
        Month::June => "June",
        Month::July => "July",
        Month::August => "August",
        Month::September => "September",
        Month::October => "October",
        Month::November => "November",
        Month::December => "December",
    }
}

/// The date `expression` means, seen from `today`: "today", "tonight",
/// "tomorrow", "day after tomorrow", "in 3 days", "in two weeks", "in a
/// month", "monday", "this friday", "next friday", "next week", "this
/// weekend", "end of week", "end of month", "next month", "dec 5",
/// "5 december 2026", "2026-12-01"; a leading "by", "on", "due", "before",
/// "until" or "for" is ignored. `None` when it is not a date this knows.
pub fn resolve_date(expression: &str, today: Date) -> Option<Date> {
    let text = normalise(expression);
    let text = text.as_str();
    if let Some(date) = parse_iso(text) {
        return Some(date);
    }
    match text {
        "today" | "tonight" | "this morning" | "this afternoon" | "this evening" | "eod"
        | "end of day" | "end of the day" | "now" | "asap" => return Some(today),
        "tomorrow" | "tmrw" | "tmr" | "tomorrow morning" | "tomorrow afternoon"
        | "tomorrow evening" | "tomorrow night" => return add_days(today, 1),
        "day after tomorrow" | "the day after tomorrow" => return add_days(today, 2),
        "next week" => return on_or_after(add_days(today, 1)?, Weekday::Monday),
        "this week" | "end of week" | "end of the week" | "eow" | "this friday" => {
            return on_or_after(today, Weekday::Friday);
        }
        "weekend" | "the weekend" | "this weekend" => {
            return on_or_after(today, Weekday::Saturday);
        }
        "next weekend" => {
            let monday = on_or_after(add_days(today, 1)?, Weekday::Monday)?;
            return add_days(monday, 5);
        }
        "next month" => return first_of_next_month(today),
        "end of month" | "end of the month" | "eom" | "this month" => {
            return today.replace_day(today.month().length(today.year())).ok();
        }
        "end of year" | "end of the year" | "this year" => {
            return Date::from_calendar_date(today.year(), Month::December, 31).ok();
        }
        _ => {}
    }
    if let Some(date) = relative(text, today) {
        return Some(date);
    }
    if let Some(date) = weekday_expression(text, today) {
        return Some(date);
    }
    month_day(text, today)
}

/// A date mentioned in free text: where (byte offsets, including a
/// leading "by"/"on"/"due"/...) and which day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateMention {
    /// The day meant.
    pub date: Date,
    /// Where the mention starts in the text.
    pub start: usize,
    /// Where it ends.
    pub end: usize,
}

const MONTHS: &str = "january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec";
const NUMBER_WORDS: &str = r"\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a\s+couple\s+of|a\s+few";

static MENTION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let pattern = format!(
        r"(?i)\b(?:(?:by|on|due|before|until|till|for)\s+)?(?:\d{{4}}-\d{{2}}-\d{{2}}|(?:the\s+)?day\s+after\s+tomorrow|today|tonight|tomorrow|tmrw|in\s+(?:{NUMBER_WORDS})\s+(?:days?|weeks?|months?)|(?:next|this)\s+(?:weekend|week|month)|(?:the\s+)?end\s+of\s+(?:the\s+)?(?:week|month|year)|(?:(?:next|this)\s+)?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)|(?:{MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{MONTHS})(?:,?\s+\d{{4}})?)\b"
    );
    Regex::new(&pattern).ok()
});

/// The first date mentioned in `text` that resolves, seen from `today`
/// ("Call the dentist tomorrow", "report due next friday", "renew passport
/// on 2026-12-01").
pub fn find_date(text: &str, today: Date) -> Option<DateMention> {
    let pattern = MENTION.as_ref()?;
    for found in pattern.find_iter(text) {
        // "today's meeting" names a meeting, not a due date.
        let rest = &text[found.end()..];
        if rest.starts_with('\'') || rest.starts_with('’') {
            continue;
        }
        if let Some(date) = resolve_date(found.as_str(), today) {
            return Some(DateMention {
                date,
                start: found.start(),
                end: found.end(),
            });
        }
    }
    None
}

/// Lower case, single spaces, no trailing punctuation, no leading "by"/"on"/...
fn normalise(expression: &str) -> String {
    let lower = expression.to_lowercase();
    let mut words: Vec<&str> = lower
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| matches!(c, '.' | ',' | '!' | '?' | ';' | ':' | '"')))
        .filter(|w| !w.is_empty())
        .collect();
    while let Some(first) = words.first() {
        if matches!(
            *first,
            "by" | "on" | "due" | "before" | "until" | "till" | "for" | "at" | "coming"
        ) {
            words.remove(0);
        } else {
            break;
        }
    }
    words.join(" ")
}

fn add_days(date: Date, days: i64) -> Option<Date> {
    date.checked_add(Duration::days(days))
}

fn on_or_after(date: Date, weekday: Weekday) -> Option<Date> {
    let ahead = (i64::from(weekday.number_days_from_monday())
        - i64::from(date.weekday().number_days_from_monday()))
    .rem_euclid(7);
    add_days(date, ahead)
}

fn add_months(date: Date, months: i64) -> Option<Date> {
    let index = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).ok()
}

fn first_of_next_month(date: Date) -> Option<Date> {
    add_months(date.replace_day(1).ok()?, 1)
}

fn number(word: &str) -> Option<i64> {
    let n = match word {
        "a" | "an" | "one" => 1,
        "two" | "a couple of" | "couple of" => 2,
        "three" | "a few" | "few" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        digits => digits.parse().ok()?,
    };
    Some(n)
}

/// "in 3 days", "in a week", "2 weeks from now".
fn relative(text: &str, today: Date) -> Option<Date> {
    static IN: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r"^in\s+(?P<n>.+?)\s+(?P<unit>days?|weeks?|months?|years?)$").ok()
    });
    static FROM_NOW: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r"^(?P<n>.+?)\s+(?P<unit>days?|weeks?|months?|years?)\s+from\s+(?:now|today)$")
            .ok()
    });
    let caps = IN
        .as_ref()?
        .captures(text)
        .or_else(|| FROM_NOW.as_ref()?.captures(text))?;
    let n = number(&caps["n"])?;
    if !(0..=3660).contains(&n) {
        return None;
    }
    match caps["unit"].trim_end_matches('s') {
        "day" => add_days(today, n),
        "week" => add_days(today, n * 7),
        "month" => add_months(today, n),
        "year" => add_months(today, n * 12),
        _ => None,
    }
}

fn weekday_named(word: &str) -> Option<Weekday> {
    Some(match word {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" | "tues" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" | "thur" | "thurs" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// "friday", "this friday", "next friday".
fn weekday_expression(text: &str, today: Date) -> Option<Date> {
    let (next, word) = match text.split_once(' ') {
        Some(("next", word)) => (true, word),
        Some(("this", word)) => (false, word),
        None => (false, text),
        Some(_) => return None,
    };
    let weekday = weekday_named(word)?;
    if next {
        let monday = on_or_after(add_days(today, 1)?, Weekday::Monday)?;
        on_or_after(monday, weekday)
    } else {
        on_or_after(today, weekday)
    }
}

fn month_named(word: &str) -> Option<Month> {
    let word = word.trim_end_matches('.');
    if word.len() < 3 {
        return None;
    }
    [
        Month::January,
        Month::February,
        Month::March,
        Month::April,
        Month::May,
        Month::June,
        Month::July,
        Month::August,
        Month::September,
        Month::October,
        Month::November,
        Month::December,
    ]
    .into_iter()
    .find(|m| {
        let name = month_name(*m).to_lowercase();
        name == word || (word.len() <= 4 && name.starts_with(word))
    })
}

/// "dec 5", "december 5th, 2026", "5 dec", "5th of december".
fn month_day(text: &str, today: Date) -> Option<Date> {
    static MONTH_FIRST: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r"^(?P<m>[a-z]+)\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?(?:\s+(?P<y>\d{4}))?$").ok()
    });
    static DAY_FIRST: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r"^(?:the\s+)?(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m>[a-z]+)\.?(?:\s+(?P<y>\d{4}))?$")
            .ok()
    });
    let caps = MONTH_FIRST
        .as_ref()?
        .captures(text)
        .or_else(|| DAY_FIRST.as_ref()?.captures(text))?;
    let month = month_named(&caps["m"])?;
    let day: u8 = caps["d"].parse().ok()?;
    if let Some(year) = caps.name("y") {
        return Date::from_calendar_date(year.as_str().parse().ok()?, month, day).ok();
    }
    // Without a year: this year's, unless it has passed.
    match Date::from_calendar_date(today.year(), month, day) {
        Ok(date) if date >= today => Some(date),
        _ => Date::from_calendar_date(today.year() + 1, month, day).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Date {
        parse_iso(text).unwrap_or(Date::MIN)
    }

    /// Wednesday.
    const TODAY: &str = "2026-11-25";

    fn resolve(expression: &str) -> Option<String> {
        resolve_date(expression, day(TODAY)).map(format_iso)
    }

    #[test]
    fn relative_days_and_weekdays() {
        let cases = [
            ("today", "2026-11-25"),
            ("Tomorrow", "2026-11-26"),
            ("by tomorrow evening", "2026-11-26"),
            ("the day after tomorrow", "2026-11-27"),
            ("in 3 days", "2026-11-28"),
            ("in three days", "2026-11-28"),
            ("in a week", "2026-12-02"),
            ("in 2 weeks", "2026-12-09"),
            ("2 weeks from now", "2026-12-09"),
            ("in a month", "2026-12-25"),
            ("friday", "2026-11-27"),
            ("by Friday", "2026-11-27"),
            ("this friday", "2026-11-27"),
            ("wednesday", "2026-11-25"),
            ("next friday", "2026-12-04"),
            ("next monday", "2026-11-30"),
            ("next wed", "2026-12-02"),
            ("next week", "2026-11-30"),
            ("end of week", "2026-11-27"),
            ("this weekend", "2026-11-28"),
            ("next weekend", "2026-12-05"),
            ("end of the month", "2026-11-30"),
            ("next month", "2026-12-01"),
        ];
        for (expression, expected) in cases {
            assert_eq!(
                resolve(expression).as_deref(),
                Some(expected),
                "{expression}"
            );
        }
    }

    #[test]
    fn calendar_dates() {
        let cases = [
            ("2026-12-01", "2026-12-01"),
            ("on 2027-02-28", "2027-02-28"),
            ("dec 5", "2026-12-05"),
            ("Dec. 5th", "2026-12-05"),
            ("December 5, 2027", "2027-12-05"),
            ("5 dec", "2026-12-05"),
            ("the 5th of December", "2026-12-05"),
            // Passed this year: next year's.
            ("march 3", "2027-03-03"),
            ("nov 25", "2026-11-25"),
        ];
        for (expression, expected) in cases {
            assert_eq!(
                resolve(expression).as_deref(),
                Some(expected),
                "{expression}"
            );
        }
    }

    #[test]
    fn month_arithmetic_clamps_and_wraps() {
        assert_eq!(
            resolve_date("in 1 month", day("2026-01-31")).map(format_iso),
            Some("2026-02-28".into())
        );
        assert_eq!(
            resolve_date("next month", day("2026-12-15")).map(format_iso),
            Some("2027-01-01".into())
        );
        assert_eq!(
            resolve_date("friday", day("2026-12-31")).map(format_iso),
            Some("2027-01-01".into())
        );
    }

    #[test]
    fn nonsense_is_not_a_date() {
        for expression in [
            "",
            "someday",
            "feb 30",
            "2026-13-01",
            "next blursday",
            "in many days",
        ] {
            assert_eq!(resolve(expression), None, "{expression}");
        }
    }

    #[test]
    fn finds_dates_in_sentences() {
        let today = day(TODAY);
        let text = "Finish the quarterly report by friday #work";
        let found = find_date(text, today).map(|m| (format_iso(m.date), &text[m.start..m.end]));
        assert_eq!(found, Some(("2026-11-27".into(), "by friday")));
        let text = "review today's notes, then call Sam tomorrow";
        let found = find_date(text, today).map(|m| &text[m.start..m.end]);
        assert_eq!(found, Some("tomorrow"));
        assert_eq!(find_date("buy sun cream and a may pole", today), None);
        let text = "renew passport on 2026-12-01";
        let found = find_date(text, today).map(|m| &text[m.start..m.end]);
        assert_eq!(found, Some("on 2026-12-01"));
    }

    #[test]
    fn describes_dates() {
        let today = day(TODAY);
        assert_eq!(describe(day("2026-11-27"), today), "Fri, Nov 27");
        assert_eq!(describe(day("2027-01-04"), today), "Mon, Jan 4, 2027");
    }
}
