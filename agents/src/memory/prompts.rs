//! The two model calls of an update, as typed agents: `memory.extract` (facts
//! from the latest exchange) and `memory.decide` (what to do with each fact
//! given the similar memories already kept). The prompts follow Mem0's
//! `FACT_RETRIEVAL_PROMPT` and `DEFAULT_UPDATE_MEMORY_PROMPT`, rewritten for
//! floe's users (people organising their work) and its typed outputs.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::agent::Agent;
use crate::onboarding::contract::{ChatTurn, Speaker};
use crate::settings::OutputMode;

/// The extraction agent's name in the ledger.
pub(super) const EXTRACT: &str = "memory.extract";
/// The decision agent's name in the ledger.
pub(super) const DECIDE: &str = "memory.decide";

const EXTRACT_PROMPT: &str = r#"You keep the personal memory of an assistant that helps a person organise their work. Read the conversation and pick out the facts about the user that are worth remembering in later conversations. Write each fact as a short, self-contained sentence in the third person, without a subject: "Name is Alex", "Prefers to be called Al", "Works as a product manager", "Uses Notion", "Wants to ship the beta by March".

What is worth remembering:
1. Personal details: name, what they like to be called, people and dates that matter to them.
2. Work: role or job title, employer, team, responsibilities.
3. Goals, plans and intentions, with their dates.
4. Tools, apps and services they use, or stopped using.
5. How they work: habits, routines, the hours they work best, preferences.
6. Pain points: what they struggle with, what gets in their way.
7. Anything else they would expect the assistant to remember (likes, dislikes, favourites).

Rules:
- Take facts from what the user says. The assistant's messages are context (what a short "yes" answers), never a source of facts about the user.
- One fact per sentence. Keep the user's own words for names, tools and dates.
- A change or a retraction is a fact too: "No longer uses Trello".
- Greetings, small talk, questions and general knowledge are not facts; when there is nothing to remember, return an empty list.
- Write the facts in the language the user writes in.
- Nothing from the examples below is about this user: never return it.

Examples:
user: Hi.
-> {"facts": []}
user: Trees have branches.
-> {"facts": []}
user: Hi, my name is John and I am a software engineer.
-> {"facts": ["Name is John", "Works as a software engineer"]}
user: I want my inbox at zero by Friday. Outlook drives me mad.
-> {"facts": ["Wants to reach inbox zero by Friday", "Finds Outlook frustrating"]}
assistant: Do you plan your week in Notion?
user: Yes, every Monday morning.
-> {"facts": ["Plans the week in Notion every Monday morning"]}

Answer with {"facts": [...]}, a list of strings."#;

const DECIDE_PROMPT: &str = r#"You manage a memory of facts about a user. You are given the current memory (items with an id and a text) and newly retrieved facts. Compare the new facts with the memory and decide, for every memory item and every new fact, one of four events:

- ADD: the fact is new information. Add it as a new item with a new id (the next unused number).
- UPDATE: the fact is about the same thing as a memory item but says something different or more. Keep the item's id, write the new text (keep the version with the most information; merge the two when both hold), and give the item's previous text as old_memory. "Likes to play cricket" and the fact "Loves playing cricket with friends": UPDATE to "Loves playing cricket with friends". A single-valued attribute (name, preferred name, job title) changes by UPDATE, never by a second ADD.
- DELETE: the fact contradicts a memory item, or says it no longer holds ("No longer uses Trello" deletes "Uses Trello"). Keep the item's id and text.
- NONE: the item stays as it is; also when a fact is already in memory in other words ("Likes cheese pizza" and "Loves cheese pizza" say the same thing).

Rules:
- UPDATE, DELETE and NONE use the ids of the current memory only. Never invent an id for them.
- List every memory item with its event (NONE when unchanged), and every added fact.
- old_memory is the previous text for an UPDATE, null otherwise.
- Nothing from the example below is about this user: never return it.

Example:
Current memory: [{"id":"0","text":"Works as a software engineer"},{"id":"1","text":"Uses Trello"},{"id":"2","text":"Likes cheese pizza"}]
New facts: ["Name is John","Works as an engineering manager","No longer uses Trello","Loves cheese pizza"]
-> {"memory": [
  {"id": "0", "text": "Works as an engineering manager", "event": "UPDATE", "old_memory": "Works as a software engineer"},
  {"id": "1", "text": "Uses Trello", "event": "DELETE", "old_memory": null},
  {"id": "2", "text": "Likes cheese pizza", "event": "NONE", "old_memory": null},
  {"id": "3", "text": "Name is John", "event": "ADD", "old_memory": null}
]}

Answer with {"memory": [...]}."#;

/// The facts worth remembering from a conversation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub(super) struct Facts {
    /// Short third-person facts about the user, e.g. "Name is Alex",
    /// "Uses Notion"; empty when there is nothing to remember.
    pub facts: Vec<String>,
}

/// What to do with a memory item or a new fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub(super) enum Event {
    /// A new fact, stored under a new id.
    Add,
    /// A memory item rewritten (same id).
    Update,
    /// A memory item that no longer holds.
    Delete,
    /// No change.
    None,
}

/// One decision of the memory manager.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub(super) struct Decision {
    /// The memory item's id; for ADD, a new id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The item's text after the decision.
    #[serde(default)]
    pub text: String,
    /// ADD, UPDATE, DELETE or NONE.
    pub event: Event,
    /// For an UPDATE, the item's previous text; null otherwise.
    #[serde(default)]
    pub old_memory: Option<String>,
}

/// The memory after the new facts, item by item.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub(super) struct Decisions {
    /// Every memory item and every added fact, each with its event.
    pub memory: Vec<Decision>,
}

/// An old memory as the decision agent sees it: a small integer id (never
/// the row's uuid, which models garble or invent) and its text.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Shown<'a> {
    pub id: String,
    pub text: &'a str,
}

/// Models sometimes write `"id": 0` for `"id": "0"`.
fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(number) => number.to_string(),
    })
}

/// The extraction agent.
pub(super) fn extractor(mode: OutputMode, strict: bool, retries: u32) -> Agent<(), Facts> {
    let today = time::OffsetDateTime::now_utc().date();
    Agent::new(EXTRACT)
        .instructions(EXTRACT_PROMPT)
        .instructions(format!(
            "Today's date is {today}: write relative dates (\"next Friday\") as dates."
        ))
        .output(mode, strict, retries)
}

/// The decision agent.
pub(super) fn decider(mode: OutputMode, strict: bool, retries: u32) -> Agent<(), Decisions> {
    Agent::new(DECIDE)
        .instructions(DECIDE_PROMPT)
        .output(mode, strict, retries)
}

/// The conversation as the extraction agent reads it.
pub(super) fn conversation(exchange: &[ChatTurn]) -> String {
    let lines: Vec<String> = exchange
        .iter()
        .filter(|turn| !turn.content.trim().is_empty())
        .map(|turn| {
            let who = match turn.role {
                Speaker::User => "user",
                Speaker::Assistant => "assistant",
            };
            format!("{who}: {}", turn.content.trim())
        })
        .collect();
    format!(
        "Extract the facts about the user from this conversation:\n\n{}",
        lines.join("\n")
    )
}

/// The decision agent's prompt: the current memory and the new facts.
pub(super) fn decision_request(old: &[Shown<'_>], facts: &[String]) -> String {
    let memory = if old.is_empty() {
        "Current memory is empty.".to_owned()
    } else {
        format!(
            "Current memory:\n```json\n{}\n```",
            serde_json::to_string(old).unwrap_or_default()
        )
    };
    format!(
        "{memory}\n\nNew facts:\n```json\n{}\n```\n\nDecide what happens to each memory item and each new fact, and answer with {{\"memory\": [...]}}.",
        serde_json::to_string(facts).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_may_be_numbers() {
        let decisions: Decisions = serde_json::from_str(
            r#"{"memory":[{"id":0,"text":"Uses Notion","event":"NONE"},{"id":"1","text":"x","event":"ADD","old_memory":null}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decisions.memory[0].id, "0");
        assert_eq!(decisions.memory[0].event, Event::None);
        assert_eq!(decisions.memory[1].event, Event::Add);
    }

    #[test]
    fn decision_schema_is_strict() {
        let schema = crate::agent::schema_for::<Decisions>(true);
        let text = schema.to_string();
        assert!(text.contains("\"additionalProperties\":false"), "{text}");
        assert!(text.contains("\"UPDATE\""), "{text}");
    }
}
