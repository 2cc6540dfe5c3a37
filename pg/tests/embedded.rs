//! The embedded PostgreSQL launcher, against the machine's real server binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use floe_pg::{EmbeddedPostgres, Error, Options};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};

/// A scratch folder the server's (possibly different) user can reach.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by a reaper-less init) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Live processes whose parent is `pid` (a postmaster's backends).
fn live_children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
            && fields.first() != Some(&"Z")
        {
            found.push(child);
        }
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// The postmaster's pid once the server on `dir` accepts connections.
fn ready_postmaster(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("data/postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    (lines.nth(6)?.trim() == "ready").then_some(pid)
}

/// Runs `floe-pg serve` on `dir` in a child process; returns it and the
/// server's pid once it is ready and listening for signals.
fn serve_in_child(dir: &Path) -> (std::process::Child, u32) {
    let mut owner = Command::new(env!("CARGO_BIN_EXE_floe-pg"))
        .arg("serve")
        .arg("--embedded-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn floe-pg");
    // It prints the URL once the server is ready and it listens for signals.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(owner.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read the URL line");
    assert!(line.starts_with("DATABASE_URL=postgres://"), "{line}");
    (owner, ready_postmaster(dir).expect("ready postmaster"))
}

/// Asserts the server answers a query, then stops it.
fn answers_then_stop(pg: EmbeddedPostgres) {
    let url = pg.url("postgres");
    assert_eq!(
        block_on(query_one(url.expose_secret(), "SELECT 1::int8")),
        1
    );
    pg.stop().expect("stop");
}

async fn query_one(url: &str, sql: &'static str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect(sql)
}

#[test]
fn data_persists_from_one_start_to_the_next() {
    let root = scratch();
    let dir = root.path().join("pg");

    let pg = EmbeddedPostgres::start(&Options::persistent(&dir)).expect("first start");
    let first_port = pg.port();
    let url = pg.url("postgres");
    block_on(async {
        let mut conn = PgConnection::connect(url.expose_secret())
            .await
            .expect("connect");
        sqlx::raw_sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
            .execute(&mut conn)
            .await
            .expect("write");
    });
    pg.stop().expect("stop");

    let pg = EmbeddedPostgres::start(&Options::persistent(&dir)).expect("second start");
    assert_eq!(
        pg.port(),
        first_port,
        "the free previous port is reused so saved URLs keep working"
    );
    let n = block_on(query_one(
        pg.url("postgres").expose_secret(),
        "SELECT n::int8 FROM kept",
    ));
    assert_eq!(
        n, 42,
        "the row written in the first run is there in the second"
    );
    pg.stop().expect("stop");
    assert!(
        dir.join("data/PG_VERSION").is_file(),
        "a persistent cluster keeps its data folder"
    );
}

#[test]
fn a_second_start_on_the_same_folder_is_refused_with_the_address_to_share() {
    let root = scratch();
    let dir = root.path().join("pg");
    let pg = EmbeddedPostgres::start(&Options::persistent(&dir)).expect("first start");

    let err =
        EmbeddedPostgres::start(&Options::persistent(&dir)).expect_err("second start must fail");
    assert!(matches!(err, Error::AlreadyRunning { .. }), "got {err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{}", pg.port())),
        "{message}"
    );
    assert!(message.contains("DATABASE_URL"), "{message}");

    // The first owner is unharmed.
    answers_then_stop(pg);
}

#[test]
fn stop_leaves_no_server_process_and_removes_a_temporary_cluster() {
    let pg = EmbeddedPostgres::start(&Options::temporary()).expect("start");
    let pid = pg.pid().expect("pid");
    let dir: PathBuf = pg.dir().to_path_buf();
    // Open a session so that there is a backend process too.
    let url = pg.url("postgres");
    let _conn = block_on(PgConnection::connect(url.expose_secret())).expect("connect");
    assert!(
        !live_children(pid).is_empty(),
        "the server has its helper processes"
    );

    pg.stop().expect("stop");
    assert!(!alive(pid), "postmaster {pid} still running");
    assert!(live_children(pid).is_empty(), "backends left behind");
    assert!(
        !dir.exists(),
        "temporary cluster folder {} not removed",
        dir.display()
    );
}

#[test]
fn a_killed_owner_takes_its_server_down_and_the_folder_can_be_used_again() {
    let root = scratch();
    let dir = root.path().join("pg");
    let (mut owner, pid) = serve_in_child(&dir);

    owner.kill().expect("kill -9"); // SIGKILL: no chance to clean up
    let _ = owner.wait();
    assert!(
        wait_until(Duration::from_secs(30), || !alive(pid)),
        "postmaster {pid} outlived its killed owner"
    );

    let pg = EmbeddedPostgres::start(&Options::persistent(&dir)).expect("restart after the crash");
    answers_then_stop(pg);
}

#[test]
fn a_server_left_running_by_a_dead_owner_is_stopped_before_a_new_start() {
    let root = scratch();
    let dir = root.path().join("pg");
    EmbeddedPostgres::start(&Options::persistent(&dir))
        .expect("init")
        .stop()
        .expect("stop");

    // A server on that folder with no floe process owning it, as a crashed
    // owner on a system without PDEATHSIG would leave behind.
    let account = floe_pg::Account::choose().expect("account");
    let bindir = String::from_utf8(
        Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config")
            .stdout,
    )
    .expect("utf8");
    let postgres = Path::new(bindir.trim()).join("postgres");
    let mut cmd = if account.switch {
        let mut c = Command::new("runuser");
        c.args(["-u", &account.name, "--"]).arg(&postgres);
        c
    } else {
        Command::new(&postgres)
    };
    let mut stray = cmd
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(free_port().to_string())
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a stray server");
    let stray_pid = || ready_postmaster(&dir);
    assert!(
        wait_until(Duration::from_secs(60), || stray_pid().is_some()),
        "stray server never ready"
    );
    let old = stray_pid().expect("pid");

    let pg =
        EmbeddedPostgres::start(&Options::persistent(&dir)).expect("start over a stray server");
    assert!(!alive(old), "the stray server {old} was not stopped");
    assert_ne!(pg.pid(), Some(old));
    answers_then_stop(pg);
    let _ = stray.wait();
}

#[test]
fn missing_binaries_say_how_to_install_them() {
    let root = scratch();
    let mut options = Options::persistent(root.path().join("pg"));
    options.bindir = Some(root.path().join("no-such-bin"));
    let err = EmbeddedPostgres::start(&options).expect_err("must fail");
    assert!(matches!(err, Error::BinariesNotFound { .. }), "got {err:?}");
    assert!(
        err.to_string().contains("apt-get install postgresql"),
        "{err}"
    );
}

#[test]
fn as_root_a_folder_the_server_user_cannot_reach_is_reported() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("not root: the server runs as this user and can reach any folder it can");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let err = EmbeddedPostgres::start(&Options::persistent(root.path().join("pg")))
        .expect_err("must fail");
    assert!(matches!(err, Error::Unreachable { .. }), "got {err:?}");
    assert!(
        err.to_string().contains("FLOE__DATABASE__EMBEDDED_DIR"),
        "{err}"
    );
}

#[test]
fn sigterm_to_the_owner_stops_the_server_cleanly() {
    let root = scratch();
    let dir = root.path().join("pg");
    let (mut owner, pid) = serve_in_child(&dir);
    signal::kill(Pid::from_raw(owner.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = owner.wait().expect("wait");
    assert!(status.success(), "floe-pg exited with {status}");
    assert!(!alive(pid), "server still running after its owner exited");
    assert!(
        !dir.join("data/postmaster.pid").exists(),
        "a clean shutdown removes postmaster.pid"
    );
}
