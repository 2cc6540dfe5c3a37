//! The model the onboarding agents talk to during a chaos run: the fake
//! OpenAI-compatible server ([`FakeLlm`]) answering each agent with a valid
//! structured output that moves the conversation on, behind a loopback TCP
//! proxy that can cut every connection and refuse new ones for a while (the
//! LLM outage).
//!
//! The clients' messages carry markers ([`SCRIPT`]); the fake reads the
//! latest marked user message and the step from the agent's instructions
//! (`Current step: …`), so every turn of the script completes its step:
//! greeting (a name) → discovery (all five facts at once) → brain dump (one
//! item, shown) → confirmation → completed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use floe_agents::testing::{FakeLlm, Reply};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a scripted person writes in each step (greeting, discovery, brain
/// dump, confirming the list shown).
pub const SCRIPT: [&str; 4] = [
    "Hi, I'm Alex. [chaos greeting]",
    "I'm an engineer, I want to ship faster, I work in the mornings, I use vim and meetings slow me down. [chaos discovery]",
    "I need to call the bank. [chaos brain dump]",
    "Yes, that list is right. [chaos confirm]",
];

/// The marker every scripted message carries.
const MARK: &str = "[chaos ";

/// Requests the fake answered, by who asked.
#[derive(Debug, Default)]
pub struct Asked {
    /// Coordinator decisions.
    pub coordinator: AtomicU64,
    /// Greeter replies.
    pub greeter: AtomicU64,
    /// Discovery replies.
    pub discovery: AtomicU64,
    /// Inbox Collector replies.
    pub inbox: AtomicU64,
    /// Memory extraction and decisions.
    pub memory: AtomicU64,
    /// Anything else (answered with an error).
    pub other: AtomicU64,
}

impl Asked {
    /// Every request counted.
    pub fn total(&self) -> u64 {
        [
            &self.coordinator,
            &self.greeter,
            &self.discovery,
            &self.inbox,
            &self.memory,
            &self.other,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// The property names of the `final_result` tool's schema: which agent asks.
fn output_keys(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|tool| tool["function"]["name"] == "final_result")
        .filter_map(|tool| tool["function"]["parameters"]["properties"].as_object())
        .flat_map(|properties| properties.keys().cloned())
        .collect()
}

/// The latest user message that carries a script marker ("" for none: a
/// proactive turn).
fn latest_scripted(request: &Value) -> String {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .filter(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .find(|text| text.contains(MARK))
        .unwrap_or_default()
}

/// The step named in the agent's instructions.
fn step(request: &Value) -> &'static str {
    let text = request.to_string();
    ["greeting", "discovery", "brain_dump", "completed"]
        .into_iter()
        .find(|step| text.contains(&format!("Current step: {step}")))
        .unwrap_or("greeting")
}

/// The text of the last user message.
fn last_user_text(request: &Value) -> String {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The JSON block after `heading` in `text` (the memory manager's request).
fn block_after(text: &str, heading: &str) -> Value {
    text.split_once(heading)
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .and_then(|(block, _)| serde_json::from_str(block).ok())
        .unwrap_or(Value::Null)
}

/// The memory manager's decisions: every item kept (`NONE`), every new
/// fact not already there added (`ADD`).
fn memory_decisions(request: &Value) -> Value {
    let text = last_user_text(request);
    let old = block_after(&text, "Current memory:\n```json\n");
    let facts = block_after(&text, "New facts:\n```json\n");
    let old: Vec<(String, String)> = old
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let id = match &item["id"] {
                Value::String(id) => id.clone(),
                other => other.to_string(),
            };
            (id, item["text"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let mut memory: Vec<Value> = old
        .iter()
        .map(|(id, text)| json!({ "id": id, "text": text, "event": "NONE", "old_memory": null }))
        .collect();
    let mut next = old
        .iter()
        .filter_map(|(id, _)| id.parse::<u64>().ok())
        .max()
        .map_or(0, |max| max + 1);
    for fact in facts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if old.iter().any(|(_, text)| text == fact) {
            continue;
        }
        memory.push(
            json!({ "id": next.to_string(), "text": fact, "event": "ADD", "old_memory": null }),
        );
        next += 1;
    }
    json!({ "memory": memory })
}

fn final_result(output: Value) -> Reply {
    Reply::tool_call("final_result", output)
}

/// Answers each agent's request with a valid output (see the module docs),
/// after a pause of up to `max_delay` (spread evenly over the requests), as
/// a model takes time: a worker killed mid-call leaves a request behind.
pub fn responder(
    asked: Arc<Asked>,
    max_delay: Duration,
) -> impl Fn(&Value) -> Reply + Send + Sync + 'static {
    let max_ms = max_delay.as_millis() as u64;
    move |request| {
        let n = asked.total();
        let reply = answer(&asked, request);
        let delay = Duration::from_millis(n.wrapping_mul(7_919) % (max_ms + 1));
        Reply::delay(delay, reply)
    }
}

fn answer(asked: &Asked, request: &Value) -> Reply {
    let keys = output_keys(request);
    let has = |key: &str| keys.iter().any(|k| k == key);
    let said = latest_scripted(request);
    let count = |counter: &AtomicU64| counter.fetch_add(1, Ordering::Relaxed);
    if has("facts") {
        count(&asked.memory);
        return final_result(json!({ "facts": [] }));
    }
    if has("memory") {
        count(&asked.memory);
        return final_result(memory_decisions(request));
    }
    if has("step_done") {
        count(&asked.coordinator);
        let agent = match step(request) {
            "discovery" => "discovery",
            "brain_dump" | "completed" => "inbox_collector",
            _ => "greeter",
        };
        return final_result(json!({
            "agent": agent, "step_done": false, "next_step": null, "reason": "the step's owner answers",
        }));
    }
    if has("preferred_name") {
        count(&asked.greeter);
        return if said.is_empty() {
            final_result(json!({
                "message": "Hi, welcome! What should I call you?",
                "name": null, "preferred_name": null, "step_completed": false, "memory_updates": [],
            }))
        } else {
            final_result(json!({
                "message": "Nice to meet you, Alex! What do you do for work?",
                "name": "Alex", "preferred_name": null, "step_completed": true, "memory_updates": [],
            }))
        };
    }
    if has("learned") {
        count(&asked.discovery);
        return final_result(json!({
            "message": "Thanks, that gives me a clear picture. What is on your mind right now?",
            "learned": {
                "role": "engineer", "goals": ["ship faster"], "work_patterns": "mornings",
                "tools": ["vim"], "pain_points": ["meetings"],
            },
            "user_declined_more_questions": false, "quick_replies": [], "memory_updates": [],
        }));
    }
    if has("user_confirmed") {
        count(&asked.inbox);
        let items = json!([{ "title": "Call the bank", "due_date": null, "tags": [] }]);
        if step(request) == "completed" {
            return final_result(json!({
                "message": "You are all set.", "items": [], "user_confirmed": false, "memory_updates": [],
            }));
        }
        return if said.contains("[chaos confirm]") {
            final_result(json!({
                "message": "Done: it is in your inbox.", "items": items, "user_confirmed": true,
                "memory_updates": [],
            }))
        } else {
            final_result(json!({
                "message": "Here is your list. Does it look right?", "items": items,
                "user_confirmed": false, "memory_updates": [],
            }))
        };
    }
    count(&asked.other);
    Reply::error(400, "floe-chaos's fake model does not know this request")
}

/// The fake model and the proxy in front of it.
pub struct Model {
    /// The fake server (requests are recorded there).
    pub fake: FakeLlm,
    /// Requests answered, by agent.
    pub asked: Arc<Asked>,
    /// The proxy the workers are given.
    pub proxy: Proxy,
}

impl Model {
    /// Starts the fake (answering after up to `max_delay`) and its proxy
    /// on loopback.
    pub async fn start(max_delay: Duration) -> anyhow::Result<Self> {
        let asked = Arc::new(Asked::default());
        let fake = FakeLlm::start(Vec::new())
            .await
            .with_fallback(responder(asked.clone(), max_delay));
        let proxy = Proxy::start(fake.addr()).await?;
        Ok(Self { fake, asked, proxy })
    }
}

/// A TCP proxy on loopback: forwards each connection to the fake; when
/// taken down, closes every open connection at once and refuses new ones
/// (its port is not listened on) until it is brought up again.
pub struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
    cut: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (up, _) = watch::channel(true);
        let cut = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(listener, port, target, up.clone(), cut.clone()));
        Ok(Self {
            port,
            up,
            cut,
            task,
        })
    }

    /// The base URL to give the workers: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Takes the proxy down (`false`) or brings it back (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// Connections closed by an outage while open.
    pub fn cut(&self) -> u64 {
        self.cut.load(Ordering::Relaxed)
    }
}

async fn serve(
    first: TcpListener,
    port: u16,
    target: SocketAddr,
    up: watch::Sender<bool>,
    cut: Arc<AtomicU64>,
) {
    let mut listener = Some(first);
    let mut state = up.subscribe();
    loop {
        let Some(bound) = listener.take() else {
            // Down: wait to be brought up, then listen on the same port again.
            if state.wait_for(|up| *up).await.is_err() {
                return;
            }
            loop {
                match TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => {
                        listener = Some(l);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(port, error = %e, "proxy: cannot listen again yet");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            continue;
        };
        tokio::select! {
            accepted = bound.accept() => {
                listener = Some(bound);
                if let Ok((inbound, _)) = accepted {
                    tokio::spawn(forward(inbound, target, up.subscribe(), cut.clone()));
                }
            }
            gone = async { state.wait_for(|up| !*up).await.is_err() } => {
                // Dropping the listener refuses new connections.
                drop(bound);
                if gone {
                    return;
                }
            }
        }
    }
}

async fn forward(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut up: watch::Receiver<bool>,
    cut: Arc<AtomicU64>,
) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = async { up.wait_for(|up| !*up).await.is_ok() } => {
            cut.fetch_add(1, Ordering::Relaxed);
            // Reset rather than close: the client sees the connection die.
            let _ = inbound.set_zero_linger();
        }
    }
}
