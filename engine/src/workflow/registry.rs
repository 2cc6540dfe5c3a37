//! Definitions by kind, type-erased to JSON so the engine can store and
//! apply any of them. Decoding errors and panics in a transition come back
//! as errors: they fail that workflow, never the process.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;

use super::{Command, Ctx, Event, Workflow};

/// An inbox event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its place in the workflow's inbox.
    pub seq: i64,
    /// `start`, `signal`, `activity`, `timer`, `child` or `cancel`.
    pub event: String,
    /// The signal's name (or activity, child, timer reason).
    pub name: Option<String>,
    /// Its data.
    pub payload: Value,
    /// When it was recorded.
    pub created_at: OffsetDateTime,
}

/// A transition's result, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The new state, serialized.
    pub context: Value,
    /// The new state's name.
    pub state: String,
    /// What to do.
    pub commands: Vec<Command>,
}

/// A definition the engine can run without knowing its types.
pub trait Definition: Send + Sync {
    /// Its kind.
    fn kind(&self) -> &'static str;
    /// Its version.
    fn version(&self) -> i32;
    /// Its jobs' priority ([`super::Workflow::PRIORITY`]).
    fn priority(&self) -> i16;
    /// Applies `event` to the stored `context` (`None` before the start).
    fn apply(
        &self,
        context: Option<&Value>,
        event: &StoredEvent,
        ctx: &Ctx,
    ) -> Result<Applied, String>;
    /// Answers query `name` from the stored context.
    fn query(&self, context: &Value, name: &str) -> Result<Option<Value>, String>;
    /// Checks that signal `name` with `payload` is one this definition
    /// takes: the API refuses others before delivering them, and a worker
    /// ignores (with a note in the history) any that got in another way.
    fn check_signal(&self, name: &str, payload: &Value) -> Result<(), String>;
    /// The stored `context` of a workflow started (or last upgraded) under
    /// definition version `from_version`, as this version's state. Errors
    /// when the stored version is newer than this build's, when the
    /// definition's upgrade fails, or when its result does not decode.
    fn upgrade(&self, from_version: i32, context: &Value) -> Result<Value, String>;
    /// Answers query `name` from a stored row's `context`, stored under
    /// definition version `definition_version`: upgraded first when older,
    /// so an idle workflow still answers after a deploy.
    fn query_stored(
        &self,
        definition_version: i32,
        context: &Value,
        name: &str,
    ) -> Result<Option<Value>, String> {
        match definition_version == self.version() {
            true => self.query(context, name),
            false => self.query(&self.upgrade(definition_version, context)?, name),
        }
    }
}

/// A panic's message.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

struct Erased<W>(PhantomData<fn() -> W>);

/// `{"ok": value}` or `{"error": "..."}` as a result.
fn outcome(payload: &Value) -> Result<(String, Result<Value, String>), String> {
    let id = payload
        .get("id")
        .and_then(Value::as_str)
        .ok_or("event without an id")?
        .to_owned();
    let result = match (payload.get("ok"), payload.get("error")) {
        (Some(ok), _) => Ok(ok.clone()),
        (None, Some(err)) => Err(err.as_str().map_or_else(|| err.to_string(), str::to_owned)),
        (None, None) => return Err("event without ok or error".into()),
    };
    Ok((id, result))
}

impl<W: Workflow> Erased<W> {
    fn decode(event: &StoredEvent) -> Result<Event<W::Input, W::Signal>, String> {
        let typed = match event.event.as_str() {
            "start" => Event::Start(
                serde_json::from_value(event.payload.clone())
                    .map_err(|e| format!("start input does not decode: {e}"))?,
            ),
            "signal" => {
                let name = event.name.clone().unwrap_or_default();
                let tagged = serde_json::json!({ "name": name, "payload": event.payload });
                let signal = serde_json::from_value(tagged)
                    .or_else(|_| serde_json::from_value(serde_json::json!({ "name": name })))
                    .map_err(|e| format!("signal {name:?} does not decode: {e}"))?;
                Event::Signal(signal)
            }
            "activity" => {
                let (id, result) = outcome(&event.payload)?;
                Event::Activity { id, result }
            }
            "child" => {
                let (id, result) = outcome(&event.payload)?;
                Event::Child { id, result }
            }
            "timer" => Event::Timer {
                reason: event.name.clone().unwrap_or_default(),
            },
            other => return Err(format!("event {other:?} is not for the definition")),
        };
        Ok(typed)
    }
}

impl<W: Workflow> Definition for Erased<W> {
    fn kind(&self) -> &'static str {
        W::KIND
    }

    fn version(&self) -> i32 {
        W::VERSION
    }

    fn priority(&self) -> i16 {
        W::PRIORITY
    }

    fn apply(
        &self,
        context: Option<&Value>,
        event: &StoredEvent,
        ctx: &Ctx,
    ) -> Result<Applied, String> {
        let state: Option<W::State> = context
            .map(|c| {
                serde_json::from_value(c.clone())
                    .map_err(|e| format!("stored state does not decode: {e}"))
            })
            .transpose()?;
        let typed = Self::decode(event)?;
        let transition = catch_unwind(AssertUnwindSafe(|| W::apply(state, typed, ctx)))
            .map_err(|panic| format!("transition panicked: {}", panic_message(&*panic)))??;
        Ok(Applied {
            context: serde_json::to_value(&transition.state)
                .map_err(|e| format!("state does not encode: {e}"))?,
            state: W::state_name(&transition.state),
            commands: transition.commands,
        })
    }

    fn check_signal(&self, name: &str, payload: &Value) -> Result<(), String> {
        let event = StoredEvent {
            seq: 0,
            event: "signal".into(),
            name: Some(name.to_owned()),
            payload: payload.clone(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        Self::decode(&event).map(|_| ())
    }

    fn upgrade(&self, from_version: i32, context: &Value) -> Result<Value, String> {
        if from_version > W::VERSION {
            return Err(format!(
                "stored by definition version {from_version}, newer than this build's {}",
                W::VERSION
            ));
        }
        let upgraded = match from_version == W::VERSION {
            true => context.clone(),
            false => catch_unwind(AssertUnwindSafe(|| {
                W::upgrade(from_version, context.clone())
            }))
            .map_err(|panic| format!("upgrade panicked: {}", panic_message(&*panic)))?
            .map_err(|e| format!("upgrade from version {from_version} failed: {e}"))?,
        };
        let state: W::State = serde_json::from_value(upgraded).map_err(|e| {
            format!(
                "the state upgraded from version {from_version} does not decode as version {}'s: {e}",
                W::VERSION
            )
        })?;
        serde_json::to_value(&state).map_err(|e| format!("state does not encode: {e}"))
    }

    fn query(&self, context: &Value, name: &str) -> Result<Option<Value>, String> {
        let state: W::State = serde_json::from_value(context.clone())
            .map_err(|e| format!("stored state does not decode: {e}"))?;
        catch_unwind(AssertUnwindSafe(|| W::query(&state, name)))
            .map_err(|_| "query panicked".to_owned())
    }
}

/// Definitions by kind.
#[derive(Clone, Default)]
pub struct Registry {
    definitions: BTreeMap<String, Arc<dyn Definition>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.definitions.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers definition `W` under its kind.
    pub fn register<W: Workflow>(&mut self) -> &mut Self {
        self.definitions
            .insert(W::KIND.to_owned(), Arc::new(Erased::<W>(PhantomData)));
        self
    }

    /// The definition of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Definition>> {
        self.definitions.get(kind)
    }

    /// Every kind registered, with its definition's version, in kind order.
    pub fn versions(&self) -> impl Iterator<Item = (&str, i32)> + '_ {
        self.definitions
            .iter()
            .map(|(k, d)| (k.as_str(), d.version()))
    }

    /// The priority of `kind`'s jobs: its definition's, 0 for a kind this
    /// registry lacks.
    pub fn priority(&self, kind: &str) -> i16 {
        self.get(kind).map_or(0, |d| d.priority())
    }
}
