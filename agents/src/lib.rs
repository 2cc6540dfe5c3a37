//! floe's LLM layer: what workers need to run agents and keep user memory.
//!
//! # Layout
//!
//! | module         | responsibility                                                     |
//! |----------------|--------------------------------------------------------------------|
//! | [`settings`]   | which model to use, if any (`--llm-*`, `FLOE__LLM__*`)             |
//! | [`llm`]        | model types, the OpenAI-compatible client, the call ledger         |
//! | [`agent`]      | typed agents: instructions, JSON-schema output, tools, retries     |
//! | [`onboarding`] | the agent activity's contract; Coordinator, Greeter, Discovery,    |
//! |                | Inbox Collector, with LLM prompts and deterministic offline twins  |
//! | [`memory`]     | Mem0's algorithm on Postgres: facts, ADD/UPDATE/DELETE, search     |
//! | [`review`]     | `code_review`: Reviewer and Refactorer agents, a person's approval |
//! | [`research`]   | `research`: Planner, Researchers as child workflows, Summariser    |
//! | [`testing`]    | a scripted fake OpenAI-compatible server, for tests and benchmarks |

pub mod agent;
pub mod llm;
pub mod memory;
pub mod onboarding;
pub mod research;
pub mod review;
pub mod settings;
pub mod testing;
