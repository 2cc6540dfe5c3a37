//! floe's embedded PostgreSQL: a private cluster started from the machine's
//! own server binaries.
//!
//! This is what makes `./scripts/run` work with no configuration: without a
//! `DATABASE_URL`, floe keeps a cluster of its own in a folder (by default
//! `.floe/postgres` in the project) and starts it for as long as the process
//! runs. The folder holds:
//!
//! | path            | what                                                     |
//! |-----------------|----------------------------------------------------------|
//! | `data/`         | the cluster (PGDATA), owned by the server's user, 0700   |
//! | `lock`          | held (flock) by the process that owns the running server |
//! | `password`      | the `floe` role's password, 0600                         |
//! | `port`          | the last port used, reused when free so URLs stay stable |
//! | `postgres.log`  | the server's log                                         |
//!
//! Hand-written rather than taken from a crate (pgtemp, postgresql_embedded):
//! those either download binaries (impossible here), cannot keep data across
//! runs, or do not handle being root. The specifics this needs are:
//!
//! * **root**: PostgreSQL refuses to run as root, so when floe is root the
//!   server runs as `postgres` (or `nobody`), see [`account`];
//! * **one owner**: the `lock` file is held for the server's whole life, so a
//!   second process pointed at the same folder gets [`Error::AlreadyRunning`]
//!   with the address to share, instead of a corrupted start;
//! * **no orphans**: the server is a direct child in its own process group (the
//!   terminal's Ctrl-C reaches floe, which drains and then stops the server),
//!   and it is told by the kernel (`PR_SET_PDEATHSIG`) to shut down if floe
//!   dies without stopping it, even by `kill -9`. A server left behind anyway
//!   (say, a previous owner's) is stopped before a new one starts.

mod account;
mod binaries;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use secrecy::{ExposeSecret, SecretString};

pub use account::Account;

/// Name of the role floe uses in its embedded cluster (also its superuser).
pub const ROLE: &str = "floe";

/// The database floe's own tables live in, inside the embedded cluster.
pub const DATABASE: &str = "floe";

/// How long a start may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is told to quit at once.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything that can go wrong with the embedded cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `postgres`/`initdb` on this machine.
    #[error(
        "PostgreSQL server binaries (postgres, initdb) not found; searched: {searched}. \
         Install them (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`), \
         point FLOE__DATABASE__PG_BINDIR at their folder, or set DATABASE_URL to use an existing database"
    )]
    BinariesNotFound {
        /// The folders looked in.
        searched: String,
    },
    /// Another live process owns the cluster in this folder.
    #[error(
        "the embedded PostgreSQL in {dir} is already in use by another floe process{listening}; \
         stop that process, or share its database by setting DATABASE_URL \
         (user `floe`, password in {dir}/password)"
    )]
    AlreadyRunning {
        /// The cluster's folder.
        dir: PathBuf,
        /// Where the other process's server listens, when known.
        listening: String,
    },
    /// Running as root and no unprivileged user exists to run the server as.
    #[error(
        "PostgreSQL refuses to run as root and there is no `postgres` or `nobody` user to run it as; \
         create one (`useradd --system postgres`) or run floe as an unprivileged user"
    )]
    NoUnprivilegedUser,
    /// The server's user cannot reach the data folder.
    #[error(
        "the PostgreSQL server runs as `{user}`, which cannot reach {dir} because {blocker} is not searchable by it; \
         set FLOE__DATABASE__EMBEDDED_DIR to a folder it can reach (for example under /var/tmp), \
         or `chmod o+x {blocker}`"
    )]
    Unreachable {
        /// The server's user.
        user: String,
        /// The data folder.
        dir: PathBuf,
        /// The first ancestor it cannot search.
        blocker: PathBuf,
    },
    /// `initdb` failed.
    #[error("initdb failed ({status}): {output}")]
    Initdb {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The server exited or did not become ready.
    #[error("PostgreSQL did not start: {reason}. Last lines of {log}:\n{tail}")]
    Start {
        /// What happened.
        reason: String,
        /// The server log's path.
        log: PathBuf,
        /// The end of the server log.
        tail: String,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// How to start an embedded cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// The cluster's folder (created when missing).
    pub dir: PathBuf,
    /// Where `postgres` and `initdb` are; searched for when `None`.
    pub bindir: Option<PathBuf>,
    /// A throwaway cluster: durability settings off for speed, and the whole
    /// folder removed when the cluster stops. For tests.
    pub temporary: bool,
}

impl Options {
    /// A persistent cluster in `dir`.
    pub fn persistent(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            bindir: None,
            temporary: false,
        }
    }

    /// A throwaway cluster in a fresh folder under the system's temp folder.
    pub fn temporary() -> Self {
        let dir = std::env::temp_dir().join(format!("floe-pg-{}", uuid::Uuid::new_v4().simple()));
        Self {
            dir,
            bindir: None,
            temporary: true,
        }
    }
}

/// A running cluster owned by this process. Dropping it stops the server.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    bindir: PathBuf,
    account: Account,
    port: u16,
    password: SecretString,
    child: Option<Child>,
    temporary: bool,
    /// Held for the server's whole life; released when this value drops.
    _lock: File,
}

impl EmbeddedPostgres {
    /// Initialises the cluster when needed, starts the server and waits until
    /// it accepts connections.
    ///
    /// The server is told to shut down when the *thread* calling this exits
    /// (that is how `PR_SET_PDEATHSIG` works), so call it from the main thread
    /// or a thread that outlives the returned value.
    pub fn start(options: &Options) -> Result<Self> {
        let dir = absolute(&options.dir)?;
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        // The server's user must be able to enter the folder; the secrets in it
        // are files of their own with mode 0600.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(io_err("cannot set permissions on", &dir))?;

        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("cannot open", &lock_path))?;
        if lock.try_lock().is_err() {
            let listening = fs::read_to_string(dir.join("port"))
                .ok()
                .map(|p| format!(" (listening on 127.0.0.1:{})", p.trim()))
                .unwrap_or_default();
            return Err(Error::AlreadyRunning { dir, listening });
        }

        let bindir = binaries::find(options.bindir.as_deref())?;
        let account = Account::choose()?;
        account.check_reachable(&dir.join("data"))?;
        let password = read_or_create_password(&dir)?;

        let data = dir.join("data");
        if !data.join("PG_VERSION").is_file() {
            initdb(&bindir, &dir, &account, &password, options.temporary)?;
        }
        stop_leftover_server(&data)?;

        let mut attempt = 0;
        let (child, port) = loop {
            attempt += 1;
            let port = choose_port(&dir);
            match spawn_server(&bindir, &dir, &account, port, options.temporary) {
                Ok(child) => break (child, port),
                // Another program took the port between our probe and the bind.
                Err(e) if attempt < 3 && e.to_string().contains("could not bind") => {
                    tracing::warn!(port, error = %e, "port taken, retrying with another");
                }
                Err(e) => return Err(e),
            }
        };
        let _ = fs::write(dir.join("port"), port.to_string());
        tracing::info!(dir = %dir.display(), port, user = %account.name, "embedded PostgreSQL ready");
        Ok(Self {
            dir,
            bindir,
            account,
            port,
            password,
            child: Some(child),
            temporary: options.temporary,
            _lock: lock,
        })
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A connection URL for `database` as the `floe` role.
    pub fn url(&self, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{database}",
            self.password.expose_secret(),
            self.port
        ))
    }

    /// Stops the server (fast shutdown: sessions are ended, work is flushed)
    /// and waits for it; a temporary cluster's folder is then removed.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    /// Stops the server but keeps the folder and the ownership, for tests of
    /// what floe does while its database is down. See [`Self::start_server`].
    pub fn stop_server(&mut self) {
        self.stop_child();
    }

    /// Starts the server again after [`Self::stop_server`], on the same port.
    pub fn start_server(&mut self) -> Result<()> {
        if self.child.is_none() {
            self.child = Some(spawn_server(
                &self.bindir,
                &self.dir,
                &self.account,
                self.port,
                self.temporary,
            )?);
        }
        Ok(())
    }

    fn shutdown(&mut self) -> Result<()> {
        if !self.stop_child() {
            return Ok(());
        }
        tracing::info!(dir = %self.dir.display(), "embedded PostgreSQL stopped");
        if self.temporary {
            fs::remove_dir_all(&self.dir).map_err(io_err("cannot remove", &self.dir))?;
        }
        Ok(())
    }

    /// Fast shutdown of the server, if it runs; true when it did.
    fn stop_child(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = signal::kill(pid, Signal::SIGINT);
        let status = wait_timeout(&mut child, STOP_TIMEOUT).or_else(|| {
            tracing::warn!(%pid, "PostgreSQL did not stop in time; telling it to quit now");
            let _ = signal::kill(pid, Signal::SIGQUIT);
            wait_timeout(&mut child, Duration::from_secs(5))
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        true
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "stopping the embedded PostgreSQL");
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(io_err("cannot resolve", path))
}

fn read_or_create_password(dir: &Path) -> Result<SecretString> {
    let path = dir.join("password");
    match fs::read_to_string(&path) {
        Ok(p) if !p.trim().is_empty() => return Ok(SecretString::from(p.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot read", &path)(e)),
    }
    let password = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(&path, &password)?;
    Ok(SecretString::from(password))
}

/// Writes `contents` to a new file readable only by its owner.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("cannot write", path))?;
    file.write_all(contents.as_bytes())
        .map_err(io_err("cannot write", path))
}

/// Creates the cluster in `data.init` and renames it to `data` only once
/// initdb succeeded, so an interrupted initdb never leaves a half cluster.
fn initdb(
    bindir: &Path,
    dir: &Path,
    account: &Account,
    password: &SecretString,
    temporary: bool,
) -> Result<()> {
    let staging = dir.join("data.init");
    let data = dir.join("data");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err("cannot remove", &staging))?;
    }
    if data.exists() {
        // A folder without PG_VERSION is not a cluster; keep it aside, never delete data.
        let aside = dir.join(format!("data.broken-{}", std::process::id()));
        fs::rename(&data, &aside).map_err(io_err("cannot move aside", &data))?;
        tracing::warn!(aside = %aside.display(), "moved an incomplete data folder aside");
    }
    fs::create_dir(&staging).map_err(io_err("cannot create", &staging))?;
    let pwfile = dir.join("initdb.pw");
    write_private(&pwfile, password.expose_secret())?;
    if account.switch {
        for path in [&staging, &pwfile] {
            std::os::unix::fs::chown(path, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
                .map_err(io_err("cannot hand over", path))?;
        }
    }
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("--pgdata")
        .arg(&staging)
        .args(["--username", ROLE, "--encoding", "UTF8", "--no-locale"])
        .args(["--auth-host", "scram-sha-256", "--auth-local", "peer"])
        .arg(format!("--pwfile={}", pwfile.display()));
    if temporary {
        cmd.arg("--no-sync");
    }
    as_account(&mut cmd, account, dir, false);
    let output = cmd.output();
    let _ = fs::remove_file(&pwfile);
    let output = output.map_err(io_err("cannot run", &bindir.join("initdb")))?;
    if !output.status.success() {
        return Err(Error::Initdb {
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    fs::rename(&staging, &data).map_err(io_err("cannot move into place", &staging))?;
    Ok(())
}

/// Runs `cmd` as `account`, from `cwd` (the server's user may not be able to
/// enter floe's own working directory). With `die_with_parent`, the kernel
/// sends the child SIGINT (PostgreSQL's fast shutdown) when the thread that
/// spawned it dies, so that even `kill -9` of floe leaves no server behind.
#[allow(unsafe_code)]
fn as_account(cmd: &mut Command, account: &Account, cwd: &Path, die_with_parent: bool) {
    use nix::unistd::{setgid, setgroups, setuid};
    cmd.current_dir(cwd);
    let (uid, gid, switch) = (account.uid, account.gid, account.switch);
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // system calls (setgroups, setgid, setuid, prctl) that are
    // async-signal-safe; it allocates nothing and takes no locks. The identity
    // is switched here rather than with `Command::uid` because root's
    // supplementary groups must be dropped too (`Command::groups` is
    // unstable), and PDEATHSIG must be set after the switch, which clears it.
    unsafe {
        cmd.pre_exec(move || {
            if switch {
                setgroups(&[gid])?;
                setgid(gid)?;
                setuid(uid)?;
            }
            if die_with_parent {
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT)?;
            }
            Ok(())
        });
    }
}

/// A server still running on this data folder whose owner is gone (we hold
/// the lock, so nobody owns it): stop it so that we can start ours.
fn stop_leftover_server(data: &Path) -> Result<()> {
    let Some(pid) = postmaster_pid(data) else {
        return Ok(());
    };
    if signal::kill(pid, None).is_err() || !is_postgres(pid) {
        return Ok(()); // stale pid file: the server removes it itself
    }
    tracing::warn!(%pid, "stopping a PostgreSQL left running by a previous floe process");
    let _ = signal::kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while signal::kill(pid, None).is_ok() {
        if Instant::now() > deadline {
            let _ = signal::kill(pid, Signal::SIGQUIT);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn postmaster_pid(data: &Path) -> Option<Pid> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    Some(Pid::from_raw(pid))
}

fn is_postgres(pid: Pid) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("postgres"))
        .unwrap_or(true)
}

/// The last port used when it is still free, so that a URL an operator saved
/// keeps working; otherwise any free port.
fn choose_port(dir: &Path) -> u16 {
    let previous = fs::read_to_string(dir.join("port"))
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok());
    if let Some(port) = previous
        && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
    {
        return port;
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54_329)
}

fn spawn_server(
    bindir: &Path,
    dir: &Path,
    account: &Account,
    port: u16,
    temporary: bool,
) -> Result<Child> {
    let data = dir.join("data");
    let log_path = dir.join("postgres.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err("cannot open", &log_path))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut cmd = Command::new(bindir.join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "max_connections=300"]);
    if temporary {
        // A throwaway cluster for tests: no crash safety needed, speed wanted.
        cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"]);
    }
    // Server settings of the operator's own, e.g. for profiling:
    // FLOE_PG_SETTINGS="shared_preload_libraries=pg_stat_statements work_mem=8MB".
    if let Ok(settings) = std::env::var("FLOE_PG_SETTINGS") {
        for setting in settings.split_whitespace() {
            cmd.args(["-c", setting]);
        }
    }
    let err_log = log.try_clone().map_err(io_err("cannot open", &log_path))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        // Its own process group: the terminal's Ctrl-C goes to floe, which
        // finishes its work and then stops the server.
        .process_group(0);
    as_account(&mut cmd, account, dir, true);
    let mut child = cmd
        .spawn()
        .map_err(io_err("cannot run", &bindir.join("postgres")))?;

    let fail = |reason: String| Error::Start {
        reason,
        tail: log_tail(&log_path, log_start),
        log: log_path.clone(),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(fail(format!("the server exited ({status})")));
        }
        if server_ready(&data, child.id()) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "not ready after {}s",
                START_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server writes "ready" as the 8th line of postmaster.pid once it
/// accepts connections (PostgreSQL 10+). The pid check ignores a stale file.
fn server_ready(data: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(data.join("postmaster.pid")) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
        && lines.get(7).map(|l| l.trim()) == Some("ready")
}

fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Creates the database named in `url` when it does not exist yet.
pub async fn ensure_database(url: &SecretString) -> Result<(), sqlx::Error> {
    use sqlx::migrate::MigrateDatabase;
    let url = url.expose_secret();
    if !sqlx::Postgres::database_exists(url).await? {
        match sqlx::Postgres::create_database(url).await {
            Ok(()) => tracing::info!("created the database"),
            // Someone else created it in the meantime: that is what we wanted.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
