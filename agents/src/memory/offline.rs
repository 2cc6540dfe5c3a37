//! The deterministic twin of the two model calls, for floe without a model:
//! English patterns pick facts out of the user's messages, and a few rules
//! decide what each does to the memory.
//!
//! Extraction (user messages only, one clause at a time):
//!
//! | category         | the user says                                         | stored as                      |
//! |------------------|-------------------------------------------------------|--------------------------------|
//! | `name`           | my name is Alex; I'm Alex (capitalised, ≤ 2 words)    | Name is Alex                   |
//! | `preferred_name` | call me Al; I go by Al; I'd like to be called Al      | Prefers to be called Al        |
//! | `role`           | I work as a X; I'm a X at Y; my role/job is X         | Works as a X (at Y)            |
//! | `goal`           | my goal is to X; I want to X; I'd like to X           | Wants to X                     |
//! | `tool`           | I use X; we use X and Y; I'm using X                  | Uses X, Uses Y                 |
//! | `work_pattern`   | I work best in the morning; I usually X; I prefer X   | Works best in the morning, ... |
//! | `pain_point`     | I struggle with X; my biggest problem is X            | Struggles with X, ...          |
//! | (retraction)     | I no longer use X; I stopped using X; I don't use X anymore; I switched from X to Y | deletes "Uses X" |
//!
//! Hints (the chat agent's `memory_updates`) are taken as facts; their
//! category comes from their wording ("Uses Notion" is a tool), `note` when
//! nothing matches.
//!
//! Decisions: a fact whose text is already remembered changes nothing; a
//! single-valued fact (name, preferred name, role) with a new text UPDATEs
//! the memory of its category; a retraction DELETEs the memories about using
//! that tool; anything else is ADDed.

use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::{Value, json};

use super::prompts::Event;
use crate::onboarding::contract::{ChatTurn, Speaker};

/// What a fact is about; stored as `metadata.category`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Category {
    Name,
    PreferredName,
    Role,
    Goal,
    Tool,
    WorkPattern,
    PainPoint,
    Note,
}

impl Category {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::PreferredName => "preferred_name",
            Self::Role => "role",
            Self::Goal => "goal",
            Self::Tool => "tool",
            Self::WorkPattern => "work_pattern",
            Self::PainPoint => "pain_point",
            Self::Note => "note",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Name,
            Self::PreferredName,
            Self::Role,
            Self::Goal,
            Self::Tool,
            Self::WorkPattern,
            Self::PainPoint,
            Self::Note,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }

    /// A user has one of these at a time: a new one replaces the old.
    fn single_valued(self) -> bool {
        matches!(self, Self::Name | Self::PreferredName | Self::Role)
    }
}

/// A fact the offline extractor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fact {
    /// The sentence to store ("Uses Notion").
    pub text: String,
    /// What it is about.
    pub category: Category,
    /// For "no longer uses X": X, whose memories are deleted.
    pub retracts: Option<String>,
}

impl Fact {
    fn new(category: Category, text: String) -> Self {
        Self {
            text: capitalize(&text),
            category,
            retracts: None,
        }
    }

    fn retraction(tool: String) -> Self {
        Self {
            text: format!("No longer uses {tool}"),
            category: Category::Tool,
            retracts: Some(tool),
        }
    }
}

/// An existing memory as the offline decider sees it.
#[derive(Debug, Clone)]
pub(super) struct Known {
    /// Its small integer id.
    pub id: String,
    /// Its text.
    pub text: String,
    /// Its category: `metadata.category`, else guessed from the text.
    pub category: Category,
}

impl Known {
    pub(super) fn new(id: String, text: String, metadata: &Value) -> Self {
        let category = metadata
            .get("category")
            .and_then(Value::as_str)
            .and_then(Category::parse)
            .unwrap_or_else(|| classify(&text).category);
        Self { id, text, category }
    }
}

/// One offline decision, in the decision agent's terms.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Proposal {
    /// A known memory's id (UPDATE, DELETE); a fresh one for ADD.
    pub id: String,
    /// The text after the decision.
    pub text: String,
    /// ADD, UPDATE or DELETE (NONE is never proposed).
    pub event: Event,
    /// Metadata to store (`{"category": ...}`).
    pub metadata: Value,
}

// ---------------------------------------------------------------------------
// Extraction

/// A pattern and how the facts it finds are written.
struct Pattern {
    regex: Regex,
    build: fn(&Captures<'_>) -> Vec<Fact>,
}

fn regex(pattern: &str) -> Regex {
    // The patterns are constants, compiled once (a unit test compiles them
    // all).
    Regex::new(pattern).expect("offline memory pattern is a valid regex")
}

/// Sentence ends: `.`, `!`, `?` before a space or the end (so "Monday.com"
/// stays whole), `;` and new lines.
static SENTENCES: LazyLock<Regex> = LazyLock::new(|| regex(r"[.!?]+(?:\s+|$)|[;\n]+"));

/// Where a sentence turns to another statement about the user: "..., and I
/// use X", "... but my goal is ...".
static CLAUSES: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:\s*,|,?\s+(?:and|but|so|because|while|although|though|plus))\s+(?:also\s+|then\s+|now\s+)?(?P<next>(?:i|we|my|our)\b)",
    )
});

/// Where a captured phrase stops.
static PHRASE_END: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\s*(?:[,:()]|\s-\s|\s+(?:because|but|so|which|where|who|when|while|though|although|unless)\b)",
    )
});

/// Where a list of tools stops (its commas and "and"s separate items).
static TOOLS_END: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\s*(?:[:()]|\s-\s|\s+(?:for|to|at|in|on|every|each|daily|all|mostly|mainly|with|when|while|because|but|so|which|as|since|instead|anymore|any more|now|too|a lot|these days|nowadays|right now|at the moment)\b)",
    )
});

static TOOL_SEPARATORS: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or|plus)\s+|\s*&\s*|\s*/\s*"));

/// Words that end a phrase without adding to it.
static TRAILING: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:\s+(?:now|currently|these days|nowadays|at the moment|right now|anymore|any more|too|as well|actually|though|lol|haha|please))+\s*$",
    )
});

/// Words after "I'm" that are not a name (`|`-separated).
const NOT_NAMES: &str = concat!(
    "a|an|the|not|so|very|just|really|also|here|fine|good|great|ok|okay|sorry|done|",
    "ready|in|at|on|from|with|i|still|back|new|happy|glad|excited|tired|busy|working|",
    "looking|trying|going|currently|now|always|never|no|yes|well|hi|hello|hey|thanks|",
    "pretty|quite|too|usually|mostly|sure|afraid|overwhelmed|swamped|product|senior|",
    "junior|head|lead|chief|founder|co-founder|ceo|cto|manager|engineer|designer|",
    "developer|freelancer|student|teacher|consultant",
);

/// Words after "call me" that are not a name (`|`-separated).
const NOT_CALL_NAMES: &str = concat!(
    "back|later|tomorrow|anytime|maybe|when|if|at|on|in|whenever|now|soon|please|any|",
    "sometime|tonight|today|whatever|anything|by|what|crazy|that|it|a|an|the",
);

/// Tool names that are not tools (`|`-separated).
const NOT_TOOLS: &str = concat!(
    "it|them|this|that|these|those|something|anything|everything|nothing|a lot|lots|",
    "one|some|any|my|our|the|both",
);

/// Whether `word` is one of the `|`-separated `words` (any case).
fn listed(words: &str, word: &str) -> bool {
    let word = word.to_lowercase();
    words.split('|').any(|w| w == word)
}

fn is_name(word: &str) -> bool {
    !listed(NOT_NAMES, word)
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    vec![
        // Names.
        Pattern {
            regex: regex(
                r"(?i:\bmy\s+name\s+is|\bname's)\s+(\p{Lu}[\p{L}'-]*(?:\s+\p{Lu}[\p{L}'-]*)?)",
            ),
            build: |c| vec![Fact::new(Category::Name, format!("Name is {}", &c[1]))],
        },
        Pattern {
            regex: regex(r"(?i:\bi'm|\bi\s+am)\s+(\p{Lu}[\p{L}'-]*(?:\s+\p{Lu}[\p{L}'-]*)?)"),
            build: |c| {
                let name = &c[1];
                let short = name.chars().count() <= 30 && name.split_whitespace().all(is_name);
                if short {
                    vec![Fact::new(Category::Name, format!("Name is {name}"))]
                } else {
                    Vec::new()
                }
            },
        },
        Pattern {
            regex: regex(
                r"(?i)\b(?:call\s+me|i\s+go\s+by|i\s+(?:prefer|like)\s+to\s+be\s+called|i'd\s+(?:prefer|like)\s+to\s+be\s+called|i\s+would\s+(?:prefer|like)\s+to\s+be\s+called|my\s+preferred\s+name\s+is)\s+(\p{L}[\p{L}'-]*)",
            ),
            build: |c| {
                let name = &c[1];
                if listed(NOT_CALL_NAMES, name) {
                    return Vec::new();
                }
                vec![Fact::new(
                    Category::PreferredName,
                    format!("Prefers to be called {}", capitalize(name)),
                )]
            },
        },
        // Roles.
        Pattern {
            regex: regex(
                r"(?i)\b(?:i|we)\s+(?:now\s+|currently\s+|actually\s+|still\s+)?work\s+as\s+(.+)",
            ),
            build: |c| {
                phrase(&c[1]).map_or_else(Vec::new, |role| {
                    vec![Fact::new(Category::Role, format!("Works as {role}"))]
                })
            },
        },
        Pattern {
            regex: regex(
                r"(?i)\b(?:i'm|i\s+am)\s+(?:now\s+|currently\s+|actually\s+)?((?:an?|the)\s+.+?\s+(?:at|for|with|in)\s+.+)",
            ),
            build: |c| {
                let role = &c[1];
                if WORK_PATTERN_NOUNS.is_match(role) {
                    return Vec::new();
                }
                phrase(role).map_or_else(Vec::new, |role| {
                    vec![Fact::new(Category::Role, format!("Works as {role}"))]
                })
            },
        },
        Pattern {
            regex: regex(
                r"(?i)\bmy\s+(?:current\s+|new\s+)?(?:role|job|job\s+title|title|position)\s+is\s+(.+)",
            ),
            build: |c| {
                phrase(&c[1]).map_or_else(Vec::new, |role| {
                    vec![Fact::new(Category::Role, format!("Works as {role}"))]
                })
            },
        },
        // Goals.
        Pattern {
            regex: regex(
                r"(?i)\bmy\s+(?:main\s+|biggest\s+|primary\s+|top\s+|big\s+|current\s+)?goal\s+is\s+(.+)",
            ),
            build: |c| {
                phrase(&c[1]).map_or_else(Vec::new, |goal| {
                    let text = match goal.strip_prefix("to ") {
                        Some(rest) => format!("Wants to {rest}"),
                        None => format!("Goal is {goal}"),
                    };
                    vec![Fact::new(Category::Goal, text)]
                })
            },
        },
        Pattern {
            regex: regex(
                r"(?i)\b(?:i|we)\s+(?:really\s+|also\s+|just\s+)?(?:want|hope|plan|aim|intend|would\s+like)\s+to\s+(.+)",
            ),
            build: goal,
        },
        Pattern {
            regex: regex(r"(?i)\b(?:i|we)'d\s+(?:really\s+|also\s+)?like\s+to\s+(.+)"),
            build: goal,
        },
        // Tools (retractions first: they are checked before these).
        Pattern {
            regex: regex(
                r"(?i)\b(?:i|we)\s+(?:mostly\s+|mainly\s+|also\s+|currently\s+|usually\s+|now\s+|primarily\s+|heavily\s+|still\s+|just\s+|always\s+|really\s+|daily\s+)?use\s+(.+)",
            ),
            build: |c| tools(&c[1]).into_iter().map(uses).collect(),
        },
        Pattern {
            regex: regex(
                r"(?i)\b(?:i'm|i\s+am|we're|we\s+are)\s+(?:mostly\s+|mainly\s+|also\s+|currently\s+|now\s+|still\s+)?using\s+(.+)",
            ),
            build: |c| tools(&c[1]).into_iter().map(uses).collect(),
        },
        Pattern {
            regex: regex(
                r"(?i)\b(?:i|we)\s+(?:switched|moved|migrated)\s+(?:over\s+)?to\s+(.+?)(?:\s+from\s+.+)?$",
            ),
            build: |c| tools(&c[1]).into_iter().map(uses).collect(),
        },
        Pattern {
            regex: regex(
                r"(?i)\b(?:i|we)\s+(?:switched|moved|migrated)\s+(?:away\s+)?from\s+.+?\s+to\s+(.+)$",
            ),
            build: |c| tools(&c[1]).into_iter().map(uses).collect(),
        },
        // Work patterns.
        Pattern {
            regex: regex(r"(?i)\bi\s+(work|focus|think|concentrate|function)\s+best\s+(.+)"),
            build: |c| {
                phrase(&c[2]).map_or_else(Vec::new, |when| {
                    vec![Fact::new(
                        Category::WorkPattern,
                        format!("{} best {when}", third_person_verb(&c[1])),
                    )]
                })
            },
        },
        Pattern {
            regex: regex(
                r"(?i)\bi\s+(usually|typically|normally|generally|often|always|mostly|tend\s+to|like\s+to|prefer\s+to|love\s+to)\s+(\p{L}+)\b(.*)",
            ),
            build: |c| {
                let verb = c[2].to_lowercase();
                let rest = &c[3];
                let next = rest.trim_start().to_lowercase();
                if matches!(verb.as_str(), "use" | "be")
                    || verb == "work" && next.starts_with("as ")
                    || next.starts_with("called")
                {
                    return Vec::new();
                }
                let lead = c[1].to_lowercase();
                let (lead, verb) = match lead.split_whitespace().collect::<Vec<_>>().as_slice() {
                    // "tend to", "like to": the lead is the verb.
                    [lead_verb, _to] => (format!("{} to", third_person_verb(lead_verb)), verb),
                    _ => (lead.clone(), third_person_verb(&verb)),
                };
                phrase(&format!("{verb}{rest}")).map_or_else(Vec::new, |what| {
                    vec![Fact::new(Category::WorkPattern, format!("{lead} {what}"))]
                })
            },
        },
        Pattern {
            regex: regex(r"(?i)\bi\s+prefer\s+(.+)"),
            build: |c| {
                let what = &c[1];
                if what.to_lowercase().starts_with("to ") {
                    return Vec::new();
                }
                phrase(what).map_or_else(Vec::new, |what| {
                    vec![Fact::new(Category::WorkPattern, format!("Prefers {what}"))]
                })
            },
        },
        Pattern {
            regex: regex(
                r"(?i)\b(?:i'm|i\s+am)\s+(?:more\s+of\s+|definitely\s+|really\s+)?(an?\s+(?:morning\s+person|night\s+owl|early\s+bird|evening\s+person|night\s+person))",
            ),
            build: |c| {
                vec![Fact::new(
                    Category::WorkPattern,
                    format!("Is {}", c[1].to_lowercase()),
                )]
            },
        },
        // Pain points.
        Pattern {
            regex: regex(
                r"(?i)\bi\s+(?:really\s+|often\s+|always\s+|still\s+|constantly\s+)?struggle\s+(?:with\s+)?(.+)",
            ),
            build: |c| {
                phrase(&c[1]).map_or_else(Vec::new, |what| {
                    vec![Fact::new(
                        Category::PainPoint,
                        format!("Struggles with {what}"),
                    )]
                })
            },
        },
        Pattern {
            regex: regex(
                r"(?i)\bmy\s+(?:(biggest|main|greatest|major|worst|real)\s+)?(problem|challenge|pain\s+point|issue|struggle|frustration|bottleneck|weakness)\s+is\s+(?:that\s+)?(.+)",
            ),
            build: |c| {
                let adjective = c.get(1).map(|m| format!("{} ", m.as_str().to_lowercase()));
                let noun = c[2].to_lowercase();
                phrase(&c[3]).map_or_else(Vec::new, |what| {
                    vec![Fact::new(
                        Category::PainPoint,
                        format!("{}{noun} is {what}", adjective.unwrap_or_default()),
                    )]
                })
            },
        },
        Pattern {
            regex: regex(r"(?i)\bi\s+(?:always\s+)?keep\s+(\p{L}+ing)\s+(.+)"),
            build: |c| {
                phrase(&c[2]).map_or_else(Vec::new, |what| {
                    vec![Fact::new(
                        Category::PainPoint,
                        format!("Keeps {} {what}", c[1].to_lowercase()),
                    )]
                })
            },
        },
        Pattern {
            regex: regex(
                r"(?i)\b(?:i'm|i\s+am|i\s+feel|i\s+get)\s+(?:so\s+|really\s+|very\s+|constantly\s+|always\s+|often\s+|easily\s+)?(overwhelmed|swamped|stressed|distracted|burned\s+out|burnt\s+out|buried)\b(.*)",
            ),
            build: |c| {
                let state = c[1].to_lowercase();
                let rest = phrase(&c[2]).map(|r| format!(" {r}")).unwrap_or_default();
                vec![Fact::new(
                    Category::PainPoint,
                    format!("Feels {state}{rest}"),
                )]
            },
        },
    ]
});

/// "I'm a morning person at heart", "I'm a bit lost in it" are not jobs.
static WORK_PATTERN_NOUNS: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^an?\s+(?:(?:morning|night|evening|early)\s+(?:person|owl|bird)|bit|little|lot|fan|big\s+fan|huge\s+fan)\b",
    )
});

/// "I no longer use X", "I stopped using X", "I don't use X anymore", "I
/// switched from X to Y": the X.
static RETRACTIONS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    vec![
        regex(r"(?i)\b(?:i|we)\s+(?:no\s+longer|don't\s+really|do\s+not\s+really)\s+use\s+(.+)"),
        regex(r"(?i)\b(?:i|we)\s+(?:don't|do\s+not|won't|will\s+not)\s+use\s+(.+?)\s+any\s*more\b"),
        regex(
            r"(?i)\b(?:i|we)(?:'ve|\s+have)?\s+(?:stopped|quit|gave\s+up|given\s+up)\s+using\s+(.+)",
        ),
        regex(
            r"(?i)\b(?:i|we)\s+(?:switched|moved|migrated)\s+(?:away\s+)?from\s+(.+?)(?:\s+to\s+.+)?$",
        ),
        regex(
            r"(?i)\b(?:i|we)\s+(?:switched|moved|migrated)\s+(?:over\s+)?to\s+.+?\s+from\s+(.+)$",
        ),
    ]
});

fn goal(c: &Captures<'_>) -> Vec<Fact> {
    let what = &c[1];
    let lower = what.to_lowercase();
    if lower.starts_with("be called") || lower.starts_with("be addressed") {
        return Vec::new();
    }
    phrase(what).map_or_else(Vec::new, |what| {
        vec![Fact::new(Category::Goal, format!("Wants to {what}"))]
    })
}

fn uses(tool: String) -> Fact {
    Fact::new(Category::Tool, format!("Uses {tool}"))
}

/// The facts in the user's messages of `exchange`, in order, without
/// repeats.
pub(super) fn extract(exchange: &[ChatTurn]) -> Vec<Fact> {
    let mut facts = Vec::new();
    for turn in exchange.iter().filter(|t| t.role == Speaker::User) {
        for clause in clauses(&turn.content) {
            facts.extend(clause_facts(&clause));
        }
    }
    dedup(facts)
}

/// The facts of one clause: retractions first, then whatever the patterns
/// find (but never a use of a tool the clause retracts).
fn clause_facts(clause: &str) -> Vec<Fact> {
    let mut facts: Vec<Fact> = RETRACTIONS
        .iter()
        .filter_map(|r| r.captures(clause))
        .flat_map(|c| tools(&c[1]))
        .map(Fact::retraction)
        .collect();
    let retracted: Vec<String> = facts
        .iter()
        .filter_map(|f| {
            f.retracts
                .as_ref()
                .map(|t| normalized(&format!("Uses {t}")))
        })
        .collect();
    for pattern in PATTERNS.iter() {
        if let Some(captures) = pattern.regex.captures(clause) {
            facts.extend(
                (pattern.build)(&captures)
                    .into_iter()
                    .filter(|f| !retracted.contains(&normalized(&f.text))),
            );
        }
    }
    facts
}

/// The sentences of `text`, cut further where a new statement about the
/// user starts.
fn clauses(text: &str) -> Vec<String> {
    let text = text.replace(['\u{2019}', '\u{2018}'], "'");
    let mut out = Vec::new();
    for sentence in SENTENCES.split(&text) {
        let mut start = 0;
        for c in CLAUSES.captures_iter(sentence) {
            if let (Some(whole), Some(next)) = (c.get(0), c.name("next")) {
                out.push(sentence[start..whole.start()].trim().to_owned());
                start = next.start();
            }
        }
        out.push(sentence[start..].trim().to_owned());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// A captured phrase, cut where it stops, trailing filler and punctuation
/// removed, in the third person; `None` when nothing is left.
fn phrase(text: &str) -> Option<String> {
    let cut = PHRASE_END.find(text).map_or(text, |m| &text[..m.start()]);
    let cut = TRAILING.replace(cut, "");
    let cut = cut
        .trim()
        .trim_end_matches(['.', '!', '?', ',', ';', ':'])
        .trim();
    let words = cut.split_whitespace().count();
    if words == 0 || words > 16 {
        return None;
    }
    Some(third_person(cut))
}

/// The tools named in a captured list: "Notion, Slack and Linear for
/// planning" → Notion, Slack, Linear.
fn tools(text: &str) -> Vec<String> {
    let cut = TOOLS_END.find(text).map_or(text, |m| &text[..m.start()]);
    let cut = TRAILING.replace(cut, "");
    TOOL_SEPARATORS
        .split(cut.trim().trim_end_matches(['.', '!', '?', ',', ';']))
        .map(|item| {
            let item = item.trim();
            item.strip_prefix("the ").unwrap_or(item).trim().to_owned()
        })
        .filter(|item| {
            let words = item.split_whitespace().count();
            (1..=4).contains(&words) && !listed(NOT_TOOLS, item)
        })
        .collect()
}

/// First-person words in the third person ("my inbox" → "their inbox").
fn third_person(text: &str) -> String {
    text.split(' ')
        .map(|word| match word.to_lowercase().as_str() {
            "my" => "their".to_owned(),
            "me" => "them".to_owned(),
            "mine" => "theirs".to_owned(),
            "myself" => "themselves".to_owned(),
            "i" => "they".to_owned(),
            "i'm" => "they're".to_owned(),
            "i've" => "they've".to_owned(),
            "i'll" => "they'll".to_owned(),
            "i'd" => "they'd".to_owned(),
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// "start" → "starts", "do" → "does", "try" → "tries".
fn third_person_verb(verb: &str) -> String {
    let verb = verb.to_lowercase();
    match verb.as_str() {
        "have" => "has".to_owned(),
        "be" => "is".to_owned(),
        "do" => "does".to_owned(),
        "go" => "goes".to_owned(),
        v if v.ends_with('s')
            || v.ends_with("sh")
            || v.ends_with("ch")
            || v.ends_with('x')
            || v.ends_with('z')
            || v.ends_with('o') =>
        {
            format!("{v}es")
        }
        v if v.len() > 1
            && v.ends_with('y')
            && !v[..v.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']) =>
        {
            format!("{}ies", &v[..v.len() - 1])
        }
        v => format!("{v}s"),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The text compared for "already remembered": lower case, no final stop.
fn normalized(text: &str) -> String {
    text.trim()
        .trim_end_matches(['.', '!'])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn dedup(facts: Vec<Fact>) -> Vec<Fact> {
    let mut seen = std::collections::HashSet::new();
    facts
        .into_iter()
        .filter(|f| seen.insert(normalized(&f.text)))
        .collect()
}

// ---------------------------------------------------------------------------
// Hints

static STATEMENT_PREFIXES: LazyLock<Vec<(Regex, Category)>> = LazyLock::new(|| {
    vec![
        (regex(r"(?i)^name\s+is\b"), Category::Name),
        (
            regex(
                r"(?i)^(?:prefers\s+to\s+be\s+called|goes\s+by|preferred\s+name\s+is|likes\s+to\s+be\s+called)\b",
            ),
            Category::PreferredName,
        ),
        (
            regex(r"(?i)^is\s+an?\s+(?:morning|night|evening|early)\s+(?:person|owl|bird)\b"),
            Category::WorkPattern,
        ),
        (
            regex(
                r"(?i)^(?:works\s+as|is\s+an?|is\s+the|role\s+is|job\s+is|job\s+title\s+is|title\s+is)\b",
            ),
            Category::Role,
        ),
        (
            regex(r"(?i)^(?:uses|is\s+using|switched\s+to)\b"),
            Category::Tool,
        ),
        (
            regex(
                r"(?i)^(?:wants|hopes|plans|aims|intends|would\s+like)\s+to\b|^(?:main\s+|biggest\s+|primary\s+)?goals?\s+(?:is|are)\b",
            ),
            Category::Goal,
        ),
        (
            regex(
                r"(?i)^(?:works|focuses|thinks)\s+best\b|^(?:usually|typically|normally|generally|often|always|mostly|prefers|tends\s+to|likes\s+to|loves\s+to)\b",
            ),
            Category::WorkPattern,
        ),
        (
            regex(
                r"(?i)^(?:struggles|keeps\s+\w+ing|feels\s+(?:overwhelmed|swamped|stressed|distracted))\b|^(?:biggest\s+|main\s+|greatest\s+|major\s+|worst\s+)?(?:problem|challenge|pain\s+point|issue|frustration|bottleneck)s?\s+(?:is|are)\b",
            ),
            Category::PainPoint,
        ),
    ]
});

static RETRACTED_TOOL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^(?:no\s+longer\s+uses|stopped\s+using|does\s+not\s+use|doesn't\s+use)\s+(.+?)(?:\s+any\s*more)?$",
    )
});

static USER_PREFIX: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)^(?:the\s+)?user(?:'s)?\s+"));

static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| regex(r"^\s*([\p{L} _]{2,30}?)\s*:\s*(.+)$"));

/// The category of a third-person fact ("Uses Notion" is a tool), with a
/// retraction for "No longer uses X".
pub(super) fn classify(text: &str) -> Fact {
    let text = text.trim().trim_end_matches('.').trim();
    // "User's name is Alex", "The user prefers mornings".
    let text = capitalize(&USER_PREFIX.replace(text, ""));
    if let Some(c) = RETRACTED_TOOL.captures(&text) {
        let tool = c[1].trim().to_owned();
        return Fact::retraction(tool);
    }
    let category = STATEMENT_PREFIXES
        .iter()
        .find(|(r, _)| r.is_match(&text))
        .map_or(Category::Note, |(_, c)| *c);
    Fact::new(category, text)
}

/// The chat agent's suggested facts as offline facts: first-person hints go
/// through the extractor, "key: value" hints through their key, the rest
/// keep their words.
pub(super) fn hint_facts(hints: &[String]) -> Vec<Fact> {
    let mut facts = Vec::new();
    for hint in hints.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
        let first_person = hint.split_whitespace().next().is_some_and(|w| {
            matches!(
                w.to_lowercase().as_str(),
                "i" | "i'm" | "my" | "we" | "call"
            )
        });
        if first_person {
            let found: Vec<Fact> = clauses(hint).iter().flat_map(|c| clause_facts(c)).collect();
            if !found.is_empty() {
                facts.extend(found);
                continue;
            }
        }
        if let Some(c) = KEY_VALUE.captures(hint) {
            let key = c[1].trim().to_lowercase().replace([' ', '_'], "");
            let value = c[2].trim().trim_end_matches('.');
            let keyed: Vec<Fact> = match key.as_str() {
                "name" => vec![Fact::new(Category::Name, format!("Name is {value}"))],
                "preferredname" | "nickname" => vec![Fact::new(
                    Category::PreferredName,
                    format!("Prefers to be called {value}"),
                )],
                "role" | "job" | "jobtitle" | "title" => {
                    vec![Fact::new(Category::Role, format!("Works as {value}"))]
                }
                "tool" | "tools" => tools(value).into_iter().map(uses).collect(),
                "goal" | "goals" => vec![Fact::new(Category::Goal, format!("Goal is {value}"))],
                "workpattern" | "workpatterns" => {
                    vec![Fact::new(Category::WorkPattern, value.to_owned())]
                }
                "painpoint" | "painpoints" => {
                    vec![Fact::new(
                        Category::PainPoint,
                        format!("Struggles with {value}"),
                    )]
                }
                _ => Vec::new(),
            };
            if !keyed.is_empty() {
                facts.extend(keyed);
                continue;
            }
        }
        facts.push(classify(hint));
    }
    facts
}

/// The facts of an update: the exchange's, then the hints', without repeats.
pub(super) fn facts(exchange: &[ChatTurn], hints: &[String]) -> Vec<Fact> {
    let mut all = extract(exchange);
    all.extend(hint_facts(hints));
    dedup(all)
}

// ---------------------------------------------------------------------------
// Decisions

/// A memory while decisions are made: a known one, or one this update adds.
struct Slot {
    /// The known memory's id, or the index of the ADD proposal.
    origin: Origin,
    text: String,
    category: Category,
    alive: bool,
}

enum Origin {
    Known(String),
    Added(usize),
}

/// What `facts` do to `known` (see the module's doc for the rules).
pub(super) fn decide(known: &[Known], facts: &[Fact]) -> Vec<Proposal> {
    let mut slots: Vec<Slot> = known
        .iter()
        .map(|k| Slot {
            origin: Origin::Known(k.id.clone()),
            text: k.text.clone(),
            category: k.category,
            alive: true,
        })
        .collect();
    let mut proposals: Vec<Option<Proposal>> = Vec::new();
    let mut next_id = known.len();
    let metadata = |category: Category| json!({ "category": category.as_str() });

    for fact in facts {
        if let Some(tool) = &fact.retracts {
            let tool = tool.to_lowercase();
            for slot in slots
                .iter_mut()
                .filter(|s| s.alive && about_using(s, &tool))
            {
                slot.alive = false;
                match &slot.origin {
                    Origin::Known(id) => proposals.push(Some(Proposal {
                        id: id.clone(),
                        text: slot.text.clone(),
                        event: Event::Delete,
                        metadata: Value::Object(Default::default()),
                    })),
                    Origin::Added(index) => proposals[*index] = None,
                }
            }
            continue;
        }
        let text = normalized(&fact.text);
        if slots.iter().any(|s| s.alive && normalized(&s.text) == text) {
            continue;
        }
        let same = fact.category.single_valued().then(|| {
            slots
                .iter_mut()
                .rev()
                .find(|s| s.alive && s.category == fact.category)
        });
        match same.flatten() {
            Some(slot) => {
                slot.text = fact.text.clone();
                match &slot.origin {
                    Origin::Known(id) => proposals.push(Some(Proposal {
                        id: id.clone(),
                        text: fact.text.clone(),
                        event: Event::Update,
                        metadata: metadata(fact.category),
                    })),
                    Origin::Added(index) => {
                        if let Some(p) = &mut proposals[*index] {
                            p.text = fact.text.clone();
                        }
                    }
                }
            }
            None => {
                slots.push(Slot {
                    origin: Origin::Added(proposals.len()),
                    text: fact.text.clone(),
                    category: fact.category,
                    alive: true,
                });
                proposals.push(Some(Proposal {
                    id: next_id.to_string(),
                    text: fact.text.clone(),
                    event: Event::Add,
                    metadata: metadata(fact.category),
                }));
                next_id += 1;
            }
        }
    }
    proposals.into_iter().flatten().collect()
}

/// Whether a memory says the user uses `tool` (lower case).
fn about_using(slot: &Slot, tool: &str) -> bool {
    let text = slot.text.to_lowercase();
    let is_use = slot.category == Category::Tool
        || text.starts_with("uses ")
        || text.starts_with("is using ");
    if !is_use || text.starts_with("no longer") {
        return false;
    }
    let words = tokens(&text);
    let tool = tokens(tool);
    !tool.is_empty() && words.windows(tool.len()).any(|w| w == tool.as_slice())
}

/// Lower-case words, keeping dots and dashes inside names (Monday.com).
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '.' && c != '-')
        .map(|w| w.trim_matches(['.', '-']).to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Vec<ChatTurn> {
        vec![ChatTurn {
            role: Speaker::User,
            content: text.into(),
        }]
    }

    fn texts(text: &str) -> Vec<String> {
        extract(&user(text)).into_iter().map(|f| f.text).collect()
    }

    #[test]
    fn patterns_compile() {
        assert!(!PATTERNS.is_empty());
        assert!(!RETRACTIONS.is_empty());
        assert!(!STATEMENT_PREFIXES.is_empty());
        for r in [
            &*SENTENCES,
            &*CLAUSES,
            &*PHRASE_END,
            &*TOOLS_END,
            &*TOOL_SEPARATORS,
            &*TRAILING,
            &*WORK_PATTERN_NOUNS,
            &*RETRACTED_TOOL,
            &*USER_PREFIX,
            &*KEY_VALUE,
        ] {
            assert!(!r.as_str().is_empty());
        }
    }

    #[test]
    fn names() {
        assert_eq!(texts("Hi, my name is Alex."), ["Name is Alex"]);
        assert_eq!(
            texts("I'm Alex Smith, nice to meet you"),
            ["Name is Alex Smith"]
        );
        assert_eq!(texts("I’m Sam"), ["Name is Sam"]);
        assert_eq!(texts("I'm not sure"), Vec::<String>::new());
        assert_eq!(texts("I'm Sorry, what?"), Vec::<String>::new());
        assert_eq!(texts("Please call me Al!"), ["Prefers to be called Al"]);
        assert_eq!(texts("call me later"), Vec::<String>::new());
        assert_eq!(
            texts("I'd like to be called Al"),
            ["Prefers to be called Al"]
        );
    }

    #[test]
    fn roles_goals_tools() {
        assert_eq!(
            texts("I work as a product manager at Acme, mostly on mobile."),
            ["Works as a product manager at Acme"]
        );
        assert_eq!(
            texts("I'm a designer at Acme and I use Figma"),
            ["Works as a designer at Acme", "Uses Figma"]
        );
        assert_eq!(texts("My role is head of ops"), ["Works as head of ops"]);
        assert_eq!(
            texts("My goal is to ship the beta by March"),
            ["Wants to ship the beta by March"]
        );
        assert_eq!(
            texts("I want to clear my inbox"),
            ["Wants to clear their inbox"]
        );
        assert_eq!(
            texts("We use Notion, Slack and Linear for planning."),
            ["Uses Notion", "Uses Slack", "Uses Linear"]
        );
        assert_eq!(texts("I use Monday.com daily"), ["Uses Monday.com"]);
        assert_eq!(texts("I'm using Todoist now"), ["Uses Todoist"]);
    }

    #[test]
    fn patterns_and_pains() {
        assert_eq!(
            texts("I work best in the morning"),
            ["Works best in the morning"]
        );
        assert_eq!(
            texts("I usually check my email first"),
            ["Usually checks their email first"]
        );
        assert_eq!(texts("I tend to procrastinate"), ["Tends to procrastinate"]);
        assert_eq!(texts("I'm a night owl"), ["Is a night owl"]);
        assert_eq!(
            texts("I struggle with too many meetings"),
            ["Struggles with too many meetings"]
        );
        assert_eq!(
            texts("My biggest problem is context switching"),
            ["Biggest problem is context switching"]
        );
        assert_eq!(
            texts("I feel overwhelmed by email"),
            ["Feels overwhelmed by email"]
        );
    }

    #[test]
    fn retractions() {
        let facts = extract(&user("I no longer use Trello."));
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].retracts.as_deref(), Some("Trello"));
        assert_eq!(facts[0].text, "No longer uses Trello");
        assert_eq!(
            extract(&user("I stopped using Slack"))[0]
                .retracts
                .as_deref(),
            Some("Slack")
        );
        assert_eq!(
            extract(&user("We don't use Jira anymore"))[0]
                .retracts
                .as_deref(),
            Some("Jira")
        );
        let switched = extract(&user("I switched from Trello to Linear"));
        assert_eq!(switched[0].retracts.as_deref(), Some("Trello"));
        assert_eq!(switched[1].text, "Uses Linear");
        assert!(texts("I don't use Jira").is_empty());
    }

    #[test]
    fn an_onboarding_answer() {
        assert_eq!(
            texts(
                "Sure! I'm a freelance designer at Studio Nine and I mostly use Figma, Notion \
                 and Google Calendar. I work best late at night, but my biggest challenge is \
                 staying focused. I'd like to get my invoices under control this month."
            ),
            [
                "Works as a freelance designer at Studio Nine",
                "Uses Figma",
                "Uses Notion",
                "Uses Google Calendar",
                "Works best late at night",
                "Biggest challenge is staying focused",
                "Wants to get their invoices under control this month",
            ]
        );
    }

    #[test]
    fn assistant_words_are_not_facts() {
        let exchange = vec![ChatTurn {
            role: Speaker::Assistant,
            content: "My name is Floe and I use many tools.".into(),
        }];
        assert!(extract(&exchange).is_empty());
    }

    #[test]
    fn hints_are_classified() {
        let facts = hint_facts(&[
            "Uses Notion".into(),
            "User's name is Alex".into(),
            "Name: Sam".into(),
            "I work as a nurse".into(),
            "Likes green tea".into(),
            "No longer uses Trello".into(),
        ]);
        let got: Vec<(&str, Category)> = facts
            .iter()
            .map(|f| (f.text.as_str(), f.category))
            .collect();
        assert_eq!(
            got,
            [
                ("Uses Notion", Category::Tool),
                ("Name is Alex", Category::Name),
                ("Name is Sam", Category::Name),
                ("Works as a nurse", Category::Role),
                ("Likes green tea", Category::Note),
                ("No longer uses Trello", Category::Tool),
            ]
        );
        assert_eq!(facts[5].retracts.as_deref(), Some("Trello"));
    }

    #[test]
    fn decisions() {
        let known = vec![
            Known::new(
                "0".into(),
                "Name is Alex".into(),
                &json!({"category": "name"}),
            ),
            Known::new("1".into(), "Uses Trello".into(), &json!({})),
            Known::new(
                "2".into(),
                "Uses Notion".into(),
                &json!({"category": "tool"}),
            ),
        ];
        let facts = vec![
            classify("Name is Sam"),
            classify("Uses Notion"),
            Fact::retraction("Trello".into()),
            classify("Works as a nurse"),
        ];
        let got: Vec<(String, String, Event)> = decide(&known, &facts)
            .into_iter()
            .map(|p| (p.id, p.text, p.event))
            .collect();
        assert_eq!(
            got,
            [
                ("0".into(), "Name is Sam".into(), Event::Update),
                ("1".into(), "Uses Trello".into(), Event::Delete),
                ("3".into(), "Works as a nurse".into(), Event::Add),
            ]
        );
    }
}
