//! Workflow definitions and activities for floe's own tests and benchmarks
//! (run by `floe-testbed`). Small, but each exercises a piece of the engine.
//!
//! | kind            | does                                                                 |
//! |-----------------|----------------------------------------------------------------------|
//! | `test.counter`  | records every `add` signal's tag in order; `finish` completes        |
//! | `test.pipeline` | waits for signal s1 → activity a1 → s2 → a2 → s3 → a3 → completes (W5) |
//! | `test.sleeper`  | sets a deadline `after_ms` ahead; completes when it fires; `move` re-arms it |
//! | `test.fanout`   | starts `n` children of `child_kind`, completes with their results   |
//! | `test.once`     | runs one activity and completes with its result                      |

use std::time::Duration;

use floe_engine::workflow::{ActivityPolicy, Command, Ctx, Event, Transition, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::workflows::{ActivityError, Workflows};

/// `test.counter`: see the module docs.
pub struct Counter;

/// Signals of [`Counter`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "name", content = "payload", rename_all = "snake_case")]
pub enum CounterSignal {
    /// Record `tag`.
    Add {
        /// Anything, recorded in order.
        tag: i64,
    },
    /// Complete with the tags.
    Finish,
}

impl Workflow for Counter {
    const KIND: &'static str = "test.counter";
    type Input = Value;
    type State = Vec<i64>;
    type Signal = CounterSignal;

    fn state_name(_: &Vec<i64>) -> String {
        "counting".into()
    }

    fn apply(
        state: Option<Vec<i64>>,
        event: Event<Value, CounterSignal>,
        _ctx: &Ctx,
    ) -> Result<Transition<Vec<i64>>, String> {
        let mut tags = state.unwrap_or_default();
        Ok(match event {
            Event::Start(_) => Transition::to(tags),
            Event::Signal(CounterSignal::Add { tag }) => {
                tags.push(tag);
                Transition::to(tags)
            }
            Event::Signal(CounterSignal::Finish) => {
                let output = json!({ "tags": tags });
                Transition::to(tags).then(Command::Complete { output })
            }
            other => return Err(format!("unexpected event {other:?}")),
        })
    }

    fn query(tags: &Vec<i64>, name: &str) -> Option<Value> {
        (name == "count").then(|| json!(tags.len()))
    }
}

/// `test.pipeline`: three rounds of signal → activity, then done.
pub struct Pipeline;

/// [`Pipeline`]'s state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum PipelineState {
    /// Waiting for signal `s{round}`.
    AwaitSignal {
        /// 1 to 3.
        round: u8,
    },
    /// Activity `a{round}` runs.
    RunActivity {
        /// 1 to 3.
        round: u8,
    },
    /// All three rounds done.
    Done,
}

/// [`Pipeline`]'s signal: `s1`, `s2` or `s3`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PipelineSignal {
    /// The signal's name.
    pub name: String,
}

impl Workflow for Pipeline {
    const KIND: &'static str = "test.pipeline";
    type Input = Value;
    type State = PipelineState;
    type Signal = PipelineSignal;

    fn state_name(state: &PipelineState) -> String {
        match state {
            PipelineState::AwaitSignal { round } => format!("await_s{round}"),
            PipelineState::RunActivity { round } => format!("run_a{round}"),
            PipelineState::Done => "done".into(),
        }
    }

    fn apply(
        state: Option<PipelineState>,
        event: Event<Value, PipelineSignal>,
        _ctx: &Ctx,
    ) -> Result<Transition<PipelineState>, String> {
        match (state, event) {
            (None, Event::Start(_)) => Ok(Transition::to(PipelineState::AwaitSignal { round: 1 })),
            (Some(PipelineState::AwaitSignal { round }), Event::Signal(s))
                if s.name == format!("s{round}") =>
            {
                Ok(Transition::to(PipelineState::RunActivity { round }).then(
                    Command::RunActivity {
                        id: format!("a{round}"),
                        name: "test.echo".into(),
                        input: json!({ "round": round }),
                        policy: ActivityPolicy::default(),
                    },
                ))
            }
            (Some(PipelineState::RunActivity { round }), Event::Activity { result: Ok(_), .. })
                if round < 3 =>
            {
                Ok(Transition::to(PipelineState::AwaitSignal {
                    round: round + 1,
                }))
            }
            (Some(PipelineState::RunActivity { .. }), Event::Activity { result: Ok(_), .. }) => {
                Ok(Transition::to(PipelineState::Done).then(Command::Complete {
                    output: json!("done"),
                }))
            }
            (Some(state), Event::Activity { result: Err(e), .. }) => {
                Ok(Transition::to(state).then(Command::Fail { error: e }))
            }
            // A signal out of turn is ignored (recorded in the history).
            (Some(state), Event::Signal(_)) => Ok(Transition::to(state)),
            (state, event) => Err(format!("unexpected {event:?} in {state:?}")),
        }
    }
}

/// `test.sleeper`: a deadline, and what happens when it fires.
pub struct Sleeper;

/// [`Sleeper`]'s input and `move` payload.
#[derive(Debug, Serialize, Deserialize)]
pub struct SleepFor {
    /// Milliseconds from the event's time.
    pub after_ms: i64,
}

/// [`Sleeper`]'s signal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "name", content = "payload", rename_all = "snake_case")]
pub enum SleeperSignal {
    /// Move the deadline.
    Move(SleepFor),
}

impl Workflow for Sleeper {
    const KIND: &'static str = "test.sleeper";
    type Input = SleepFor;
    /// The deadline's reason and how many timers fired.
    type State = (String, u32);
    type Signal = SleeperSignal;

    fn state_name(state: &(String, u32)) -> String {
        if state.1 == 0 {
            "sleeping".into()
        } else {
            "woken".into()
        }
    }

    fn apply(
        state: Option<(String, u32)>,
        event: Event<SleepFor, SleeperSignal>,
        ctx: &Ctx,
    ) -> Result<Transition<(String, u32)>, String> {
        let arm = |after_ms: i64, reason: String, fired: u32| {
            let at = ctx
                .now
                .checked_add(time::Duration::milliseconds(after_ms))
                .ok_or_else(|| format!("after_ms {after_ms} is out of range"))?;
            Ok(Transition::to((reason.clone(), fired)).then(Command::SetDeadline { at, reason }))
        };
        match (state, event) {
            (None, Event::Start(s)) => arm(s.after_ms, "first".into(), 0),
            (Some((_, fired)), Event::Signal(SleeperSignal::Move(s))) => arm(s.after_ms, "moved".into(), fired),
            (Some((reason, fired)), Event::Timer { reason: fired_for }) => Ok(Transition::to((reason, fired + 1))
                .then(Command::Complete {
                    output: json!({ "fired_for": fired_for, "at": ctx.now.unix_timestamp_nanos().to_string() }),
                })),
            (state, event) => Err(format!("unexpected {event:?} in {state:?}")),
        }
    }
}

/// `test.fanout`: children started at once, their results gathered.
pub struct Fanout;

/// [`Fanout`]'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutInput {
    /// How many children.
    pub n: u32,
    /// Their kind.
    pub child_kind: String,
    /// Their input.
    pub child_input: Value,
}

impl Workflow for Fanout {
    const KIND: &'static str = "test.fanout";
    type Input = FanoutInput;
    /// Children still out, and the results so far (child id → result).
    type State = (u32, std::collections::BTreeMap<String, Value>);
    type Signal = Value;

    fn state_name(state: &Self::State) -> String {
        if state.0 > 0 {
            "waiting_for_children".into()
        } else {
            "gathered".into()
        }
    }

    fn apply(
        state: Option<Self::State>,
        event: Event<FanoutInput, Value>,
        _ctx: &Ctx,
    ) -> Result<Transition<Self::State>, String> {
        match (state, event) {
            (None, Event::Start(input)) => {
                let mut t = Transition::to((input.n, Default::default()));
                for i in 0..input.n {
                    t = t.then(Command::StartChild {
                        id: format!("c{i}"),
                        kind: input.child_kind.clone(),
                        input: input.child_input.clone(),
                    });
                }
                Ok(t)
            }
            (Some((left, mut results)), Event::Child { id, result }) => {
                results.insert(id, result.unwrap_or_else(|e| json!({ "error": e })));
                let left = left.saturating_sub(1);
                let t = Transition::to((left, results.clone()));
                Ok(if left == 0 {
                    t.then(Command::Complete {
                        output: json!(results),
                    })
                } else {
                    t
                })
            }
            (Some(state), Event::Signal(_)) => Ok(Transition::to(state)),
            (state, event) => Err(format!("unexpected {event:?} in {state:?}")),
        }
    }
}

/// `test.once`: runs one activity (`activity` with `input`), completes with its result.
pub struct Once;

/// [`Once`]'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnceInput {
    /// The activity.
    pub activity: String,
    /// Its input.
    pub input: Value,
    /// Its retry policy: the default's with a 50 ms backoff when absent.
    #[serde(default)]
    pub policy: Option<ActivityPolicy>,
}

impl Workflow for Once {
    const KIND: &'static str = "test.once";
    type Input = OnceInput;
    type State = String;
    type Signal = Value;

    fn state_name(state: &String) -> String {
        state.clone()
    }

    fn apply(
        state: Option<String>,
        event: Event<OnceInput, Value>,
        _ctx: &Ctx,
    ) -> Result<Transition<String>, String> {
        match (state, event) {
            (None, Event::Start(i)) => Ok(Transition::to("running".to_owned()).then(
                Command::RunActivity {
                    id: "only".into(),
                    name: i.activity,
                    input: i.input,
                    policy: i.policy.unwrap_or(ActivityPolicy {
                        backoff_base_ms: 50,
                        ..ActivityPolicy::default()
                    }),
                },
            )),
            (Some(_), Event::Activity { result: Ok(v), .. }) => {
                Ok(Transition::to("done".to_owned()).then(Command::Complete { output: v }))
            }
            (Some(_), Event::Activity { result: Err(e), .. }) => {
                Ok(Transition::to("failed".to_owned()).then(Command::Fail { error: e }))
            }
            (Some(s), Event::Signal(_)) => Ok(Transition::to(s)),
            (state, event) => Err(format!("unexpected {event:?} in {state:?}")),
        }
    }
}

/// Every test definition and activity.
pub fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.workflow::<Counter>()
        .workflow::<Pipeline>()
        .workflow::<Sleeper>()
        .workflow::<Fanout>()
        .workflow::<Once>()
        // Returns its input.
        .activity("test.echo", |_ctx, input| async move { Ok(input) })
        // Sleeps `ms`, then returns its input; fails the first `fail_times` attempts.
        .activity("test.slow", |ctx, input| async move {
            let ms = input.get("ms").and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let fail_times = input.get("fail_times").and_then(Value::as_i64).unwrap_or(0);
            if i64::from(ctx.attempt) <= fail_times {
                return Err(ActivityError::retryable(format!(
                    "planned failure {}",
                    ctx.attempt
                )));
            }
            Ok(input)
        });
    w
}
