//! The real `floe-api` binary on its embedded PostgreSQL: serve, Ctrl-C, serve again.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use floe_engine::testing::{expose, fresh_database, wait_for_status};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::{Connection, PgConnection};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn start_api(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_floe-api"))
        .args(["--with-worker", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--embedded-dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env("FLOE__LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floe-api")
}

/// The URL of the embedded cluster in `dir`, from the files it keeps there.
fn embedded_url(dir: &Path) -> String {
    let port = std::fs::read_to_string(dir.join("port")).expect("port file");
    let password = std::fs::read_to_string(dir.join("password")).expect("password file");
    format!(
        "postgres://floe:{}@127.0.0.1:{}/floe",
        password.trim(),
        port.trim()
    )
}

fn postmaster_pid(dir: &Path) -> i32 {
    let text = std::fs::read_to_string(dir.join("data/postmaster.pid")).expect("postmaster.pid");
    text.lines()
        .next()
        .expect("pid")
        .trim()
        .parse()
        .expect("pid")
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// Ctrl-C, as a terminal sends it; returns the process's log lines.
fn interrupt(mut child: Child) -> Vec<String> {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT");
    let stderr = child.stderr.take().expect("stderr");
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "floe-api exited with {status}; log:\n{}",
        lines.join("\n")
    );
    lines
}

#[tokio::test]
async fn serves_ready_stops_cleanly_on_ctrl_c_and_finds_its_data_again() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = root.path().join("postgres");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");

    let api = start_api(&dir, port);
    assert!(
        wait_for_status(&addr, "/readyz", 200, Duration::from_secs(90)).await,
        "first run never ready"
    );
    let mut conn = PgConnection::connect(&embedded_url(&dir))
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE note (body text); INSERT INTO note VALUES ('kept')")
        .execute(&mut conn)
        .await
        .expect("write");
    conn.close().await.expect("close");
    let server = postmaster_pid(&dir);
    let log = interrupt(api);
    assert!(
        !alive(server),
        "PostgreSQL {server} still running after Ctrl-C"
    );

    // Request logs are JSON lines carrying method, path, status and latency.
    let request = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["span"]["path"] == "/readyz" && v.get("latency_ms").is_some())
        .unwrap_or_else(|| panic!("no request log line in:\n{}", log.join("\n")));
    assert_eq!(request["span"]["method"], "GET");
    assert_eq!(request["status"], 200);

    let api = start_api(&dir, port);
    assert!(
        wait_for_status(&addr, "/readyz", 200, Duration::from_secs(90)).await,
        "second run never ready"
    );
    let mut conn = PgConnection::connect(&embedded_url(&dir))
        .await
        .expect("connect");
    let body: String = sqlx::query_scalar("SELECT body FROM note")
        .fetch_one(&mut conn)
        .await
        .expect("read");
    assert_eq!(body, "kept", "the second run uses the first run's data");
    conn.close().await.expect("close");
    let server = postmaster_pid(&dir);
    interrupt(api);
    assert!(
        !alive(server),
        "PostgreSQL {server} still running after the second Ctrl-C"
    );
}

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_floe-api"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DATABASE_URL",
        "FLOE__DATABASE__MAX_CONNECTIONS",
        "FLOE__DATABASE__EMBEDDED_DIR",
        "FLOE__DATABASE__PG_BINDIR",
        "FLOE__HTTP__LISTEN",
        "FLOE__HTTP__STATIC_DIR",
        "FLOE__HTTP__BODY_LIMIT",
        "FLOE__LOG__FORMAT",
        "FLOE__LOG__FILTER",
        "FLOE__API__WITH_WORKER",
        "FLOE__API__OPERATOR_TOKEN",
        "FLOE__CHAT__SESSION_TTL_SECS",
        "FLOE__CHAT__MAX_MESSAGE_CHARS",
        "FLOE__CHAT__MESSAGES_PER_MINUTE",
        "FLOE__CHAT__WS_PING_MS",
        "FLOE__CHAT__WS_IDLE_MS",
        "FLOE__CHAT__NUDGE_AFTER_SECS",
        "FLOE__CHAT__MAX_NUDGES",
    ] {
        assert!(help.contains(var), "--help does not mention {var}:\n{help}");
    }
}

#[test]
fn an_unusable_setting_is_a_clear_error_not_a_crash() {
    let out = Command::new(env!("CARGO_BIN_EXE_floe-api"))
        .args(["--listen", "not-an-address"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "clap's usage error code");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}

#[tokio::test]
async fn without_an_operator_token_it_logs_a_development_token_once_and_requires_it() {
    let url = fresh_database().await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_floe-api"))
        .args(["--listen", &addr])
        .env("DATABASE_URL", expose(&url))
        .env_remove("FLOE__API__OPERATOR_TOKEN")
        .env("FLOE__LOG__FORMAT", "text")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn floe-api");
    // Read the log on a thread, so the pipe never fills.
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let marker = "development token: ";
    let token = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no development token logged:\n{}", log.join("\n")));
        log.push(line.clone());
        if let Some(rest) = line.split(marker).nth(1) {
            assert!(line.contains("WARN"), "logged at WARN: {line}");
            break rest.split_whitespace().next().expect("token").to_owned();
        }
    };
    assert!(
        wait_for_status(&addr, "/readyz", 200, Duration::from_secs(60)).await,
        "never ready"
    );
    let client = reqwest::Client::new();
    let list = format!("http://{addr}/api/workflows");
    let with = client
        .get(&list)
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(with.status(), 200);
    let without = client.get(&list).send().await.expect("send");
    assert_eq!(without.status(), 401);
    let wrong = client
        .get(&list)
        .bearer_auth("dev-guess")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);

    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    log.extend(lines_rx.try_iter());
    assert!(status.success(), "exit {status}; log:\n{}", log.join("\n"));
    let mentions = log.iter().filter(|l| l.contains(&token)).count();
    assert_eq!(
        mentions,
        1,
        "the token is logged exactly once:\n{}",
        log.join("\n")
    );
}
