//! A private PostgreSQL cluster from the system's binaries: for `hermes demo` and for
//! every test that needs a database (one helper, used by all crates' tests).
//!
//! [`LocalPg::start`] runs `initdb` into `DIR/data` (once), then the server with its own
//! socket directory `DIR/sock` and port, listening on that unix socket only, trust
//! authentication, superuser `postgres`. As root it runs both as the unprivileged
//! `postgres` user (initdb refuses root), owning the directories. Readiness is polled
//! with a deadline. The server is stopped when the handle is dropped, unless
//! [`LocalPg::keep_running`] was called (the demo leaves it up for `psql`); a later
//! `start` on the same directory reuses a running server.
//!
//! Binaries are looked up in `PATH`, then in `/usr/lib/postgresql/*/bin` (newest first).
//! Without them the error says how to install them.
//!
//! Tests share one cluster per test process with [`shared`] (stopped and removed at
//! exit) and take a fresh database each with [`LocalPg::fresh_database`]. They first ask
//! [`available_or_required`]: without PostgreSQL a test returns early with a note, unless
//! `HERMES_REQUIRE_ALL=1` (CI) makes that a failure.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalPgError {
    /// No PostgreSQL server binaries.
    #[error("PostgreSQL server binaries (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: `apt-get install postgresql`), or point --database-url / DATABASE_URL at an existing server")]
    NotInstalled,
    /// Running as root without a `postgres` user to run the server as.
    #[error("running as root and there is no `postgres` user to run the server as (initdb refuses root); create one (`useradd -r postgres`) or run as a normal user")]
    NoServerUser,
    /// The server user cannot reach the directory.
    #[error("the `postgres` user cannot reach {0} (a parent directory is not searchable by it); use a directory under /var/tmp or /tmp")]
    Unreachable(String),
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A step failed.
    #[error("{what} failed: {detail}")]
    Failed {
        /// Which step.
        what: String,
        /// Output or log tail.
        detail: String,
    },
    /// The server did not accept connections in time.
    #[error("PostgreSQL did not accept connections within {secs} s; log tail:\n{log}")]
    Timeout {
        /// Deadline.
        secs: u64,
        /// Server log tail.
        log: String,
    },
}

/// A private cluster. Stops the server on drop (unless [`LocalPg::keep_running`]).
#[derive(Debug)]
pub struct LocalPg {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
    pid: i32,
    keep: bool,
    fast: bool,
    die_with_parent: bool,
}

/// Start options.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartOptions {
    /// `fsync=off`: for throw-away test clusters (a crash of the machine may corrupt
    /// them; a crash of a client never does).
    pub fast: bool,
    /// The server gets SIGINT (fast shutdown) when the thread that started it ends: no
    /// orphan servers after a killed test run.
    pub die_with_parent: bool,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> LocalPgError + '_ {
    move |source| LocalPgError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The directory holding `initdb` and `postgres`.
pub fn find_binaries() -> Result<PathBuf, LocalPgError> {
    let ok = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if ok(&d) {
                return Ok(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            ok(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .ok_or(LocalPgError::NotInstalled)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// uid/gid of the `postgres` user.
fn server_user() -> Result<(u32, u32), LocalPgError> {
    let name = c"postgres";
    // SAFETY: getpwnam with a valid NUL-terminated name; the result is read at once
    // (before any other getpw* call on this thread could overwrite it).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(LocalPgError::NoServerUser);
    }
    // SAFETY: non-null pointer to a passwd record just returned by getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

/// `true` when the server, running as `uid`, can reach `dir` (every existing ancestor
/// searchable by it). Always true when not running as root.
pub fn reachable_by_server(dir: &Path) -> bool {
    if !is_root() {
        return true;
    }
    let Ok((uid, gid)) = server_user() else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    let mut p = Some(dir);
    while let Some(d) = p {
        if let Ok(m) = std::fs::metadata(d) {
            let mode = m.mode();
            let ok = if m.uid() == uid {
                mode & 0o100 != 0
            } else if m.gid() == gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !ok {
                return false;
            }
        }
        p = d.parent();
    }
    true
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<(), LocalPgError> {
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(path, Some(u), Some(g)).map_err(io_err(path))?;
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl LocalPg {
    /// Starts (or reuses) the cluster in `dir` with default options.
    pub fn start(dir: &Path) -> Result<LocalPg, LocalPgError> {
        Self::start_with(dir, StartOptions::default())
    }

    /// Starts (or reuses) the cluster in `dir`.
    pub fn start_with(dir: &Path, opts: StartOptions) -> Result<LocalPg, LocalPgError> {
        let bin = find_binaries()?;
        let owner = if is_root() {
            Some(server_user()?)
        } else {
            None
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let dir = dir.canonicalize().map_err(io_err(dir))?;
        if !reachable_by_server(&dir) {
            return Err(LocalPgError::Unreachable(dir.display().to_string()));
        }
        chown(&dir, owner)?;
        let data = dir.join("data");
        let sock = dir.join("sock");
        for d in [&data, &sock] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
            chown(d, owner)?;
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(&data))?;
        let port_file = dir.join("port");
        let port = match std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        {
            Some(p) => p,
            None => {
                let p = free_port();
                std::fs::write(&port_file, p.to_string()).map_err(io_err(&port_file))?;
                p
            }
        };
        let mut pg = LocalPg {
            dir: dir.clone(),
            port,
            bin,
            child: Mutex::new(None),
            pid: 0,
            keep: false,
            fast: opts.fast,
            die_with_parent: opts.die_with_parent,
        };
        // A server already running on this directory (a previous demo) is reused.
        if let Some(pid) = pg.running_pid() {
            if pg.try_connect("postgres").is_ok() {
                pg.pid = pid;
                return Ok(pg);
            }
        }
        if !data.join("PG_VERSION").exists() {
            pg.initdb(owner)?;
        }
        pg.spawn_server(owner)?;
        pg.wait_ready(Duration::from_secs(60))?;
        Ok(pg)
    }

    fn command(&self, exe: &str, owner: Option<(u32, u32)>) -> Command {
        let mut c = Command::new(self.bin.join(exe));
        c.current_dir(&self.dir)
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some((u, g)) = owner {
            c.uid(u).gid(g);
        }
        c
    }

    fn initdb(&self, owner: Option<(u32, u32)>) -> Result<(), LocalPgError> {
        let out = self
            .command("initdb", owner)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| LocalPgError::Failed {
                what: "running initdb".into(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(LocalPgError::Failed {
                what: "initdb".into(),
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(())
    }

    fn spawn_server(&mut self, owner: Option<(u32, u32)>) -> Result<(), LocalPgError> {
        let log_path = self.dir.join("postgres.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        let log2 = log.try_clone().map_err(io_err(&log_path))?;
        let mut c = self.command("postgres", owner);
        c.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.join("sock"))
            .args(["-c", "listen_addresses=", "-c", "max_connections=60"])
            .stdout(log)
            .stderr(log2);
        if self.fast {
            c.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        }
        if self.die_with_parent {
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent;
            // it runs in the child between fork and exec (after the uid change, which
            // would otherwise clear the setting).
            unsafe {
                c.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = c.spawn().map_err(|e| LocalPgError::Failed {
            what: "starting postgres".into(),
            detail: e.to_string(),
        })?;
        self.pid = child.id() as i32;
        if let Ok(mut g) = self.child.lock() {
            *g = Some(child);
        }
        Ok(())
    }

    fn running_pid(&self) -> Option<i32> {
        let s = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        let pid: i32 = s.lines().next()?.trim().parse().ok()?;
        // SAFETY: signal 0 only checks that the process exists.
        (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }

    fn try_connect(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        let mut cfg: postgres::Config =
            self.conninfo(db).parse().expect("conninfo we build parses");
        cfg.connect_timeout(Duration::from_secs(2));
        cfg.connect(postgres::NoTls)
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), LocalPgError> {
        let deadline = Instant::now() + limit;
        loop {
            if self.try_connect("postgres").is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .lock()
                .ok()
                .and_then(|mut c| c.as_mut().and_then(|c| c.try_wait().ok().flatten()));
            if let Some(st) = exited {
                return Err(LocalPgError::Failed {
                    what: format!("postgres (exited with {st})"),
                    detail: tail(&self.dir.join("postgres.log")),
                });
            }
            if Instant::now() >= deadline {
                return Err(LocalPgError::Timeout {
                    secs: limit.as_secs(),
                    log: tail(&self.dir.join("postgres.log")),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A libpq connection string for database `db`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.join("sock").display(),
            self.port
        )
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The port (names the socket file `.s.PGSQL.<port>`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Creates database `name` if absent; returns its connection string.
    pub fn create_database(&self, name: &str) -> Result<String, LocalPgError> {
        let fail = |e: postgres::Error| LocalPgError::Failed {
            what: format!("creating database {name}"),
            detail: e.to_string(),
        };
        let mut c = self.try_connect("postgres").map_err(fail)?;
        let exists = c
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(fail)?
            .is_some();
        if !exists {
            match c.batch_execute(&format!("CREATE DATABASE \"{name}\"")) {
                Ok(()) => {}
                Err(e) if e.code() == Some(&postgres::error::SqlState::DUPLICATE_DATABASE) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(self.conninfo(name))
    }

    /// A new, empty database with a unique name (for one test); returns its connection
    /// string.
    pub fn fresh_database(&self, prefix: &str) -> Result<String, LocalPgError> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name: String = format!("{prefix}_{}_{n}", std::process::id())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        self.create_database(&name)
    }

    /// Leaves the server running when the handle is dropped.
    pub fn keep_running(mut self) {
        self.keep = true;
    }

    /// Stops the server (fast shutdown), waiting for it to exit.
    pub fn stop(&self) -> Result<(), LocalPgError> {
        let pid = self.running_pid().unwrap_or(self.pid);
        if pid <= 0 {
            return Ok(());
        }
        let mut child = self.child.lock().ok().and_then(|mut c| c.take());
        let gone = |child: &mut Option<Child>| match child {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            // SAFETY: signal 0 only checks that the process exists.
            None => (unsafe { libc::kill(pid, 0) }) != 0,
        };
        for (sig, secs) in [(libc::SIGINT, 30), (libc::SIGQUIT, 5), (libc::SIGKILL, 5)] {
            // SAFETY: signalling the server process we started (or found in its pid file).
            unsafe { libc::kill(pid, sig) };
            let deadline = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < deadline {
                if gone(&mut child) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(LocalPgError::Failed {
            what: "stopping postgres".into(),
            detail: format!("pid {pid} did not exit"),
        })
    }

    /// Starts the server again after [`LocalPg::stop`] (same directory, port and data).
    pub fn restart(&mut self) -> Result<(), LocalPgError> {
        let owner = if is_root() {
            Some(server_user()?)
        } else {
            None
        };
        self.spawn_server(owner)?;
        self.wait_ready(Duration::from_secs(60))
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.stop();
        }
    }
}

static SHARED: std::sync::OnceLock<Result<LocalPg, String>> = std::sync::OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(Ok(pg)) = SHARED.get() {
        let _ = pg.stop();
        let _ = std::fs::remove_dir_all(pg.dir());
    }
}

/// The test process's shared cluster, started on first use in a fresh temporary
/// directory and stopped and removed when the process exits (and, should the process be
/// killed, stopped by the kernel's parent-death signal).
#[doc(hidden)]
pub fn shared() -> Result<&'static LocalPg, String> {
    SHARED
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("hermes-pg-test-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            // The server must outlive the test thread that happens to start it: start
            // it from a thread that lives as long as the process (the parent-death
            // signal follows the spawning thread).
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("hermes-pg-keeper".into())
                .spawn(move || {
                    let r = LocalPg::start_with(
                        &dir,
                        StartOptions {
                            fast: true,
                            die_with_parent: true,
                        },
                    );
                    let _ = tx.send(r.map_err(|e| e.to_string()));
                    loop {
                        std::thread::park();
                    }
                });
            if let Err(e) = spawned {
                return Err(e.to_string());
            }
            let r = rx
                .recv()
                .map_err(|_| "the cluster thread died".to_string())
                .and_then(|r| r);
            if r.is_ok() {
                // SAFETY: registering a plain extern "C" function with no arguments.
                unsafe { libc::atexit(stop_shared) };
            }
            r
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// For a test that needs a cluster: whether one can be started here, that is, whether
/// PostgreSQL's server binaries are installed (and, as root, the `postgres` user to run them
/// exists).
///
/// When they are not, the test cannot run. With `HERMES_REQUIRE_ALL=1` (CI sets it) this
/// panics, naming what is missing and what installs it, so no test passes by skipping;
/// otherwise (a developer's machine) it prints a note and returns `false`, and the test
/// returns early. Any other reason a cluster fails to start is the test's failure:
/// [`shared`] and [`OwnedCluster::start`] report it.
#[doc(hidden)]
pub fn available_or_required() -> bool {
    let ready = find_binaries().and_then(|_| {
        if is_root() {
            server_user().map(|_| ())
        } else {
            Ok(())
        }
    });
    let Err(missing) = ready else {
        return true;
    };
    let what = match missing {
        LocalPgError::NotInstalled => {
            "PostgreSQL is missing (no initdb and postgres in PATH or /usr/lib/postgresql/*/bin)"
                .to_string()
        }
        e => format!("PostgreSQL cannot run here ({e})"),
    };
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let install = "scripts/ci-deps.sh provides it (apt-get install postgresql)";
    if std::env::var("HERMES_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("HERMES_REQUIRE_ALL=1: {what}, and {test} needs it; {install}");
    }
    eprintln!(
        "note: {what}, so {test} is skipped; {install}, and HERMES_REQUIRE_ALL=1 makes its \
         absence a failure"
    );
    false
}

/// A throw-away cluster of its own (for a test that stops and restarts the server), in
/// a fresh temporary directory removed on drop.
#[doc(hidden)]
pub struct OwnedCluster {
    /// The cluster.
    pub pg: LocalPg,
}

impl OwnedCluster {
    /// Starts one.
    pub fn start(name: &str) -> Result<OwnedCluster, LocalPgError> {
        let dir = std::env::temp_dir().join(format!("hermes-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pg = LocalPg::start_with(
            &dir,
            StartOptions {
                fast: true,
                die_with_parent: true,
            },
        )?;
        Ok(OwnedCluster { pg })
    }
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        let _ = self.pg.stop();
        let _ = std::fs::remove_dir_all(self.pg.dir());
    }
}
