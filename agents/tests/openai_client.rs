//! The OpenAI-compatible client against the scripted fake server: request
//! mapping, answers plain and streamed, failure classification, embeddings,
//! and the API key kept out of every output.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floe_agents::llm::openai::{ConfigError, OpenAiClient};
use floe_agents::llm::{
    ChatModel, ChatRequest, Embedder, Message, ModelError, ResponseFormat, Role, TextSink,
    ToolCall, ToolChoice, ToolDef,
};
use floe_agents::settings::LlmSettings;
use floe_agents::testing::{FakeLlm, Reply};
use serde_json::{Value, json};

const KEY: &str = "sk-test-5ecret-k3y-never-shown";

fn client(fake: &FakeLlm) -> OpenAiClient {
    OpenAiClient::builder(fake.base_url())
        .api_key(KEY)
        .model("test-model")
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn streaming_client(fake: &FakeLlm) -> OpenAiClient {
    OpenAiClient::builder(format!("{}/", fake.base_url()))
        .api_key(KEY)
        .model("test-model")
        .stream(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest::new(vec![Message::system("Be brief."), Message::user(text)])
}

fn weather_tool() -> ToolDef {
    ToolDef {
        name: "get_weather".into(),
        description: "The weather in a city".into(),
        parameters: json!({
            "type": "object",
            "properties": { "city": { "type": "string" } },
            "required": ["city"],
            "additionalProperties": false,
        }),
        strict: true,
    }
}

fn last_chat_body(fake: &FakeLlm) -> Value {
    fake.chat_requests()
        .last()
        .expect("a chat request")
        .body
        .clone()
}

/// The base URL of a port nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/v1")
}

/// A sink that collects the deltas it is given.
fn collecting_sink() -> (Arc<Mutex<Vec<String>>>, Box<TextSink>) {
    let deltas = Arc::new(Mutex::new(Vec::new()));
    let seen = deltas.clone();
    let sink: Box<TextSink> = Box::new(move |delta: &str| {
        seen.lock().expect("sink lock").push(delta.to_owned());
    });
    (deltas, sink)
}

#[tokio::test]
async fn plain_text_answer() {
    let fake = FakeLlm::start(vec![Reply::text("Hello there.").usage(12, 3)]).await;
    let client = client(&fake);

    let response = client.complete(&ask("Hi"), None).await.expect("answer");

    assert_eq!(response.message.role, Role::Assistant);
    assert_eq!(response.message.content.as_deref(), Some("Hello there."));
    assert!(response.message.tool_calls.is_empty());
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));
    assert_eq!(response.model, "test-model");
    assert_eq!(
        (response.usage.input_tokens, response.usage.output_tokens),
        (12, 3)
    );
    assert_eq!(ChatModel::model_name(&client), "test-model");

    let sent = last_chat_body(&fake);
    assert_eq!(sent["model"], "test-model");
    assert_eq!(
        sent["messages"],
        json!([
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "Hi" },
        ])
    );
    assert!(sent.get("stream").is_none(), "not streaming: {sent}");
    assert!(sent.get("tools").is_none());
    assert_eq!(fake.calls("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn request_model_overrides_and_sampling_options_are_sent() {
    let fake = FakeLlm::start(vec![Reply::text("ok")]).await;
    let mut request = ask("Hi");
    request.model = Some("other-model".into());
    request.temperature = Some(0.25);
    request.max_tokens = Some(64);

    let response = client(&fake)
        .complete(&request, None)
        .await
        .expect("answer");

    assert_eq!(response.model, "other-model");
    let sent = last_chat_body(&fake);
    assert_eq!(sent["model"], "other-model");
    assert_eq!(sent["temperature"], json!(0.25));
    assert_eq!(sent["max_tokens"], json!(64));
}

#[tokio::test]
async fn structured_answer_with_a_json_schema() {
    let answer = json!({ "name": "Ada", "age": 36 });
    let fake = FakeLlm::start(vec![Reply::json(answer.clone())]).await;
    let schema = json!({
        "type": "object",
        "properties": { "name": { "type": "string" }, "age": { "type": "integer" } },
        "required": ["name", "age"],
        "additionalProperties": false,
    });
    let mut request = ask("Who?");
    request.response_format = Some(ResponseFormat::JsonSchema {
        name: "person".into(),
        schema: schema.clone(),
        strict: true,
    });

    let response = client(&fake)
        .complete(&request, None)
        .await
        .expect("answer");

    let content = response.message.content.expect("content");
    let parsed: Value = serde_json::from_str(&content).expect("JSON content");
    assert_eq!(parsed, answer);
    assert_eq!(
        last_chat_body(&fake)["response_format"],
        json!({
            "type": "json_schema",
            "json_schema": { "name": "person", "schema": schema, "strict": true },
        })
    );
}

#[tokio::test]
async fn json_object_format_is_sent() {
    let fake = FakeLlm::start(vec![Reply::json(json!({ "ok": true }))]).await;
    let mut request = ask("JSON please");
    request.response_format = Some(ResponseFormat::JsonObject);

    client(&fake)
        .complete(&request, None)
        .await
        .expect("answer");

    assert_eq!(
        last_chat_body(&fake)["response_format"],
        json!({ "type": "json_object" })
    );
}

#[tokio::test]
async fn tool_call_is_parsed_and_tools_are_sent() {
    let fake = FakeLlm::start(vec![Reply::tool_call(
        "get_weather",
        json!({ "city": "Lyon" }),
    )])
    .await;
    let mut request = ask("Weather in Lyon?");
    let loose = ToolDef {
        name: "loose".into(),
        description: "No strict mode".into(),
        parameters: json!({ "type": "object" }),
        strict: false,
    };
    request.tools = vec![weather_tool(), loose];
    request.tool_choice = Some(ToolChoice::Auto);

    let response = client(&fake)
        .complete(&request, None)
        .await
        .expect("answer");

    assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(response.message.content, None);
    let [call] = response.message.tool_calls.as_slice() else {
        panic!("one tool call: {:?}", response.message.tool_calls);
    };
    assert_eq!(call.id, "call_1");
    assert_eq!(call.name, "get_weather");
    let arguments: Value = serde_json::from_str(&call.arguments).expect("JSON arguments");
    assert_eq!(arguments, json!({ "city": "Lyon" }));

    let sent = last_chat_body(&fake);
    assert_eq!(
        sent["tools"],
        json!([
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters": weather_tool().parameters,
                    "strict": true,
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "loose",
                    "description": "No strict mode",
                    "parameters": { "type": "object" },
                },
            },
        ])
    );
    assert_eq!(sent["tool_choice"], "auto");
}

#[tokio::test]
async fn tool_choice_variants_are_sent() {
    let fake = FakeLlm::start(vec![])
        .await
        .with_fallback(|_| Reply::text("ok"));
    let client = client(&fake);
    let cases = [
        (ToolChoice::Required, json!("required")),
        (ToolChoice::None, json!("none")),
        (
            ToolChoice::Tool("get_weather".into()),
            json!({ "type": "function", "function": { "name": "get_weather" } }),
        ),
    ];
    for (choice, expected) in cases {
        let mut request = ask("Weather?");
        request.tools = vec![weather_tool()];
        request.tool_choice = Some(choice);
        client.complete(&request, None).await.expect("answer");
        assert_eq!(last_chat_body(&fake)["tool_choice"], expected);
    }
}

#[tokio::test]
async fn several_tool_calls_in_one_answer() {
    let fake = FakeLlm::start(vec![Reply::tool_calls(vec![
        ("get_weather", json!({ "city": "Lyon" })),
        ("get_weather", json!({ "city": "Oslo" })),
    ])])
    .await;
    let mut request = ask("Weather in Lyon and Oslo?");
    request.tools = vec![weather_tool()];

    let response = client(&fake)
        .complete(&request, None)
        .await
        .expect("answer");

    let ids: Vec<&str> = response
        .message
        .tool_calls
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["call_1", "call_2"]);
    let cities: Vec<Value> = response
        .message
        .tool_calls
        .iter()
        .map(|c| serde_json::from_str::<Value>(&c.arguments).expect("JSON")["city"].clone())
        .collect();
    assert_eq!(cities, [json!("Lyon"), json!("Oslo")]);
}

#[tokio::test]
async fn conversation_continues_after_a_tool_result() {
    let fake = FakeLlm::start(vec![
        Reply::tool_call("get_weather", json!({ "city": "Lyon" })),
        Reply::text("It is sunny in Lyon."),
    ])
    .await;
    let client = client(&fake);
    let mut request = ask("Weather in Lyon?");
    request.tools = vec![weather_tool()];

    let first = client.complete(&request, None).await.expect("tool call");
    let call = first.message.tool_calls[0].clone();
    request.messages.push(first.message);
    request
        .messages
        .push(Message::tool(&call.id, r#"{"sky":"sunny"}"#));
    let second = client.complete(&request, None).await.expect("answer");

    assert_eq!(
        second.message.content.as_deref(),
        Some("It is sunny in Lyon.")
    );
    let sent = last_chat_body(&fake);
    let messages = sent["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4);
    assert_eq!(
        messages[2],
        json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": call.id,
                "type": "function",
                "function": { "name": "get_weather", "arguments": call.arguments },
            }],
        })
    );
    assert_eq!(
        messages[3],
        json!({ "role": "tool", "tool_call_id": call.id, "content": r#"{"sky":"sunny"}"# })
    );
}

#[tokio::test]
async fn streamed_text_reaches_the_sink_in_order() {
    let text = "The quick brown fox jumps over the lazy dog, twice. Ünïcödé too.";
    let fake = FakeLlm::start(vec![Reply::streamed(Reply::text(text).usage(21, 13), 3)]).await;
    let client = streaming_client(&fake);
    let (deltas, sink) = collecting_sink();

    let response = client
        .complete(&ask("Tell me"), Some(&*sink))
        .await
        .expect("answer");

    let deltas = deltas.lock().expect("deltas").clone();
    assert!(deltas.len() > 10, "many deltas: {deltas:?}");
    assert_eq!(deltas.concat(), text);
    assert_eq!(response.message.content.as_deref(), Some(text));
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        (response.usage.input_tokens, response.usage.output_tokens),
        (21, 13)
    );
    let sent = last_chat_body(&fake);
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(sent["stream_options"], json!({ "include_usage": true }));
}

#[tokio::test]
async fn streamed_tool_call_arguments_are_reassembled_exactly() {
    let arguments = json!({
        "city": "Saint-Étienne",
        "days": [1, 2, 3],
        "note": "quotes \" and braces {} survive",
    });
    let fake = FakeLlm::start(vec![Reply::streamed(
        Reply::tool_calls(vec![
            ("get_weather", arguments.clone()),
            ("get_weather", json!({ "city": "Oslo" })),
        ]),
        2,
    )])
    .await;
    let mut request = ask("Weather?");
    request.tools = vec![weather_tool()];
    let (deltas, sink) = collecting_sink();

    let response = streaming_client(&fake)
        .complete(&request, Some(&*sink))
        .await
        .expect("answer");

    assert!(deltas.lock().expect("deltas").is_empty(), "no text deltas");
    assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(response.message.content, None);
    assert_eq!(
        response.message.tool_calls,
        vec![
            ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: arguments.to_string(),
            },
            ToolCall {
                id: "call_2".into(),
                name: "get_weather".into(),
                arguments: json!({ "city": "Oslo" }).to_string(),
            },
        ]
    );
}

#[tokio::test]
async fn hand_written_stream_chunks_are_parsed() {
    let chunk = |delta: Value, finish: Value| json!({ "model": "served-model", "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
    let fake = FakeLlm::start(vec![Reply::stream(vec![
        chunk(json!({ "role": "assistant" }), Value::Null),
        chunk(json!({ "content": "Hel" }), Value::Null),
        chunk(json!({ "content": "lo" }), Value::Null),
        chunk(
            json!({ "tool_calls": [{ "index": 0, "id": "call_x", "function": { "name": "f", "arguments": "{\"a\"" } }] }),
            Value::Null,
        ),
        chunk(
            json!({ "tool_calls": [{ "index": 0, "function": { "arguments": ":1}" } }] }),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        json!({ "choices": [], "usage": { "prompt_tokens": 7, "completion_tokens": 2 } }),
    ])])
    .await;

    let response = streaming_client(&fake)
        .complete(&ask("Hi"), None)
        .await
        .expect("answer");

    assert_eq!(response.model, "served-model");
    assert_eq!(response.message.content.as_deref(), Some("Hello"));
    assert_eq!(
        response.message.tool_calls,
        vec![ToolCall {
            id: "call_x".into(),
            name: "f".into(),
            arguments: r#"{"a":1}"#.into(),
        }]
    );
    assert_eq!(
        (response.usage.input_tokens, response.usage.output_tokens),
        (7, 2)
    );
}

#[tokio::test]
async fn a_streaming_client_runs_plain_scripts() {
    let fake = FakeLlm::start(vec![
        Reply::text("converted to a stream").usage(4, 4),
        Reply::tool_call("get_weather", json!({ "city": "Lyon" })),
    ])
    .await;
    let client = streaming_client(&fake);
    let (deltas, sink) = collecting_sink();

    let text = client
        .complete(&ask("Hi"), Some(&*sink))
        .await
        .expect("text");
    let call = client.complete(&ask("Hi"), None).await.expect("call");

    assert_eq!(
        text.message.content.as_deref(),
        Some("converted to a stream")
    );
    assert_eq!(
        deltas.lock().expect("deltas").concat(),
        "converted to a stream"
    );
    assert_eq!((text.usage.input_tokens, text.usage.output_tokens), (4, 4));
    assert_eq!(call.message.tool_calls[0].name, "get_weather");
    assert_eq!(
        call.message.tool_calls[0].arguments,
        json!({ "city": "Lyon" }).to_string()
    );
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let fake = FakeLlm::start(vec![
        Reply::error(429, "slow down").header("Retry-After", "2"),
        Reply::error(429, "slower").header("retry-after-ms", "1500"),
    ])
    .await;
    let client = client(&fake);

    let error = client.complete(&ask("Hi"), None).await.expect_err("429");
    assert!(
        matches!(&error, ModelError::RateLimited { message, .. } if message == "slow down"),
        "{error:?}"
    );
    assert!(error.retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(error.status(), "rate_limited");
    assert_eq!(error.http_status(), Some(429));

    let error = client.complete(&ask("Hi"), None).await.expect_err("429");
    assert_eq!(error.retry_after(), Some(Duration::from_millis(1500)));
}

#[tokio::test]
async fn server_error_is_retryable() {
    let fake = FakeLlm::start(vec![
        Reply::error(503, "overloaded").header("Retry-After", "7"),
        Reply::status(500, json!("not the OpenAI shape")),
    ])
    .await;
    let client = client(&fake);

    let error = client.complete(&ask("Hi"), None).await.expect_err("503");
    assert_eq!(
        error,
        ModelError::Server {
            status: 503,
            retry_after: Some(Duration::from_secs(7)),
            message: "overloaded".into(),
        }
    );
    assert!(error.retryable());

    let error = client.complete(&ask("Hi"), None).await.expect_err("500");
    assert!(
        matches!(&error, ModelError::Server { status: 500, retry_after: None, message } if message.contains("not the OpenAI shape")),
        "{error:?}"
    );
}

#[tokio::test]
async fn bad_request_is_rejected_with_the_server_message() {
    let fake = FakeLlm::start(vec![
        Reply::status(
            400,
            json!({ "error": { "message": "Unknown model 'nope'", "type": "invalid_request_error", "code": "model_not_found" } }),
        ),
        Reply::status(404, json!({ "detail": "x".repeat(5_000) })),
    ])
    .await;
    let client = client(&fake);

    let error = client.complete(&ask("Hi"), None).await.expect_err("400");
    assert_eq!(
        error,
        ModelError::Rejected {
            status: 400,
            message: "Unknown model 'nope'".into(),
        }
    );
    assert!(!error.retryable());

    let error = client.complete(&ask("Hi"), None).await.expect_err("404");
    let ModelError::Rejected { status, message } = &error else {
        panic!("rejected: {error:?}");
    };
    assert_eq!(*status, 404);
    assert!(message.starts_with(r#"{"detail":"xxx"#), "{message}");
    assert!(
        message.chars().count() <= 501,
        "truncated: {}",
        message.len()
    );
}

#[tokio::test]
async fn slow_answer_times_out() {
    let fake = FakeLlm::start(vec![Reply::delay(
        Duration::from_secs(5),
        Reply::text("too late"),
    )])
    .await;
    let client = OpenAiClient::builder(fake.base_url())
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");

    let error = client
        .complete(&ask("Hi"), None)
        .await
        .expect_err("timeout");

    assert_eq!(error, ModelError::Timeout(Duration::from_millis(200)));
    assert!(error.retryable());
    assert_eq!(error.status(), "timeout");
}

#[tokio::test]
async fn slow_stream_times_out_while_being_read() {
    let fake = FakeLlm::start(vec![
        Reply::streamed(Reply::text("one two three four five six"), 2)
            .paced(Duration::from_millis(50)),
    ])
    .await;
    let client = OpenAiClient::builder(fake.base_url())
        .stream(true)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let (deltas, sink) = collecting_sink();

    let error = client
        .complete(&ask("Hi"), Some(&*sink))
        .await
        .expect_err("timeout");

    assert_eq!(error, ModelError::Timeout(Duration::from_millis(300)));
    assert!(
        !deltas.lock().expect("deltas").is_empty(),
        "the stream had started"
    );
}

#[tokio::test]
async fn garbage_body_is_an_invalid_response() {
    let fake = FakeLlm::start(vec![
        Reply::garbage("<html>Bad gateway, sort of</html>"),
        Reply::status(200, json!({ "choices": [] })),
        Reply::garbage("not json either"),
    ])
    .await;
    let client = client(&fake);

    let error = client
        .complete(&ask("Hi"), None)
        .await
        .expect_err("garbage");
    assert!(
        matches!(&error, ModelError::InvalidResponse(m) if m.contains("Bad gateway")),
        "{error:?}"
    );
    assert!(error.retryable());

    let error = client
        .complete(&ask("Hi"), None)
        .await
        .expect_err("no choices");
    assert!(matches!(error, ModelError::InvalidResponse(_)), "{error:?}");

    let error = streaming_client(&fake)
        .complete(&ask("Hi"), None)
        .await
        .expect_err("garbage while streaming");
    assert!(matches!(error, ModelError::InvalidResponse(_)), "{error:?}");
}

#[tokio::test]
async fn truncated_stream_is_an_invalid_response() {
    let chunk = |content: &str| json!({ "choices": [{ "index": 0, "delta": { "content": content }, "finish_reason": null }] });
    let fake = FakeLlm::start(vec![
        Reply::stream(vec![chunk("Half an"), chunk(" answ")]).truncated(),
        Reply::streamed(Reply::text("cut short"), 2).truncated(),
        Reply::stream(vec![chunk("ok"), json!("{not a chunk")]),
    ])
    .await;
    let client = streaming_client(&fake);
    let (deltas, sink) = collecting_sink();

    let error = client
        .complete(&ask("Hi"), Some(&*sink))
        .await
        .expect_err("truncated");
    assert!(matches!(error, ModelError::InvalidResponse(_)), "{error:?}");
    assert!(error.retryable());
    assert_eq!(deltas.lock().expect("deltas").concat(), "Half an answ");

    let error = client.complete(&ask("Hi"), None).await.expect_err("cut");
    assert!(matches!(error, ModelError::InvalidResponse(_)), "{error:?}");

    let error = client
        .complete(&ask("Hi"), None)
        .await
        .expect_err("bad chunk");
    assert!(matches!(error, ModelError::InvalidResponse(_)), "{error:?}");
}

#[tokio::test]
async fn closed_port_is_a_connection_error() {
    let client = OpenAiClient::builder(closed_port_url())
        .api_key(KEY)
        .build()
        .expect("client");

    let error = client
        .complete(&ask("Hi"), None)
        .await
        .expect_err("refused");

    assert!(matches!(error, ModelError::Connection(_)), "{error:?}");
    assert!(error.retryable());
    assert!(!error.to_string().contains(KEY));
}

#[tokio::test]
async fn settings_build_the_client() {
    let fake = FakeLlm::start(vec![Reply::text("from settings")]).await;
    let settings = LlmSettings {
        base_url: Some(format!("{}/", fake.base_url())),
        api_key: Some(KEY.into()),
        model: "settings-model".into(),
        embedding_model: Some("embed-model".into()),
        ..LlmSettings::default()
    };
    let client = OpenAiClient::new(&settings).expect("client");

    assert_eq!(client.base_url(), fake.base_url());
    assert_eq!(ChatModel::model_name(&client), "settings-model");
    assert_eq!(Embedder::model_name(&client), "embed-model");
    let response = client.complete(&ask("Hi"), None).await.expect("answer");
    assert_eq!(response.message.content.as_deref(), Some("from settings"));
    let recorded = fake.chat_requests();
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(recorded[0].body["model"], "settings-model");

    assert!(matches!(
        OpenAiClient::new(&LlmSettings::default()),
        Err(ConfigError::MissingBaseUrl)
    ));
    let bad = LlmSettings {
        base_url: Some("ftp://example.com".into()),
        ..LlmSettings::default()
    };
    assert!(matches!(
        OpenAiClient::new(&bad),
        Err(ConfigError::InvalidBaseUrl { .. })
    ));
}

/// Captured log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn api_key_is_sent_but_never_shown() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = FakeLlm::start(vec![
        Reply::text("fine"),
        Reply::streamed(Reply::text("streamed fine"), 4),
        Reply::error(401, "Incorrect API key provided"),
        Reply::error(429, "slow down").header("Retry-After", "1"),
        Reply::error(500, format!("echoing the key {KEY} back")),
        Reply::garbage(format!("garbage with {KEY}")),
    ])
    .await;
    let client = client(&fake);
    let streaming = streaming_client(&fake);

    let debug = format!("{client:?} {streaming:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(debug.contains("test-model"), "{debug}");

    client.complete(&ask("Hi"), None).await.expect("answer");
    streaming.complete(&ask("Hi"), None).await.expect("answer");
    let mut errors = Vec::new();
    for _ in 0..4 {
        errors.push(client.complete(&ask("Hi"), None).await.expect_err("error"));
    }
    let refused = OpenAiClient::builder(closed_port_url())
        .api_key(KEY)
        .build()
        .expect("client");
    errors.push(
        refused
            .complete(&ask("Hi"), None)
            .await
            .expect_err("refused"),
    );
    for error in &errors {
        assert!(!error.to_string().contains(KEY), "{error}");
        assert!(!format!("{error:?}").contains(KEY), "{error:?}");
    }
    assert!(
        matches!(errors[2], ModelError::Server { .. }),
        "{:?}",
        errors[2]
    );

    for request in fake.requests() {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
    assert_eq!(fake.requests().len(), 6);

    let logs = String::from_utf8(captured.0.lock().expect("logs").clone()).expect("UTF-8 logs");
    assert!(
        logs.contains("chat completion"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("latency_ms"), "{logs}");
    assert!(!logs.contains(KEY), "the key leaked into the logs: {logs}");
    assert!(
        !logs.contains("Be brief."),
        "the prompt leaked into the logs"
    );
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn embeddings_one_vector_per_input_in_order() {
    let fake = FakeLlm::start(vec![]).await;
    let client = OpenAiClient::builder(fake.base_url())
        .api_key(KEY)
        .model("chat-model")
        .embedding_model("embed-model")
        .build()
        .expect("client");
    let inputs: Vec<String> = [
        "The user loves hiking in the Alps",
        "She enjoys hiking in the Alps every summer",
        "Quarterly invoice totals for the accounting team",
    ]
    .map(String::from)
    .to_vec();

    let embeddings = client.embed(&inputs).await.expect("embeddings");

    assert_eq!(embeddings.vectors.len(), 3);
    for (vector, input) in embeddings.vectors.iter().zip(&inputs) {
        assert_eq!(vector, &floe_agents::testing::fake_embedding(input));
    }
    assert!(embeddings.usage.input_tokens > 0);
    let similar = cosine(&embeddings.vectors[0], &embeddings.vectors[1]);
    let unrelated = cosine(&embeddings.vectors[0], &embeddings.vectors[2]);
    assert!(
        similar > unrelated,
        "similar {similar} > unrelated {unrelated}"
    );

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.body["model"], "embed-model");
    assert_eq!(sent.body["input"], json!(inputs));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    let none = client.embed(&[]).await.expect("no inputs");
    assert!(none.vectors.is_empty());
    assert_eq!(fake.calls("/embeddings"), 1, "no call for no inputs");
}

#[tokio::test]
async fn embeddings_fall_back_to_the_chat_model_and_report_failures() {
    let fake = FakeLlm::start(vec![]).await;
    let client = client(&fake);
    assert_eq!(Embedder::model_name(&client), "test-model");

    fake.fail_embeddings(Some(503));
    let error = client
        .embed(&["hello".to_owned()])
        .await
        .expect_err("failing");
    assert!(
        matches!(error, ModelError::Server { status: 503, .. }),
        "{error:?}"
    );

    fake.fail_embeddings(None);
    let embeddings = client
        .embed(&["hello".to_owned()])
        .await
        .expect("working again");
    assert_eq!(embeddings.vectors.len(), 1);
    assert_eq!(fake.requests()[1].body["model"], "test-model");
}

#[tokio::test]
async fn empty_script_answers_script_exhausted_and_fallback_sees_requests() {
    let fake = FakeLlm::start(vec![]).await;
    let client = client(&fake);

    let error = client
        .complete(&ask("Hi"), None)
        .await
        .expect_err("exhausted");
    assert!(
        matches!(&error, ModelError::Server { status: 500, message, .. } if message == "script exhausted"),
        "{error:?}"
    );

    let fake = fake.with_fallback(|request| {
        let last = request["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        Reply::text(format!("echo: {last}"))
    });
    fake.push(Reply::text("scripted first"));
    let first = client.complete(&ask("one"), None).await.expect("scripted");
    let second = client.complete(&ask("two"), None).await.expect("fallback");
    assert_eq!(first.message.content.as_deref(), Some("scripted first"));
    assert_eq!(second.message.content.as_deref(), Some("echo: two"));
    assert_eq!(fake.remaining(), 0);
    assert_eq!(fake.calls("/chat/completions"), 3);
}
