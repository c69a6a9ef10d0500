//! The child processes of a soak: the simulator, `hermes run`, and the guard that stops them.

#[allow(unused_imports)]
use super::*;
use std::os::unix::process::CommandExt;

// ---- processes ----------------------------------------------------------------------

/// A child process, stopped (SIGTERM, then SIGKILL) and reaped on drop.
pub(super) struct Proc {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) log: PathBuf,
    /// Kept open so the child never writes into a closed pipe.
    pub(super) _stdout: Option<BufReader<ChildStdout>>,
}

impl Proc {
    /// Spawns `cmd` in its own process group (Ctrl-C reaches only this process, which
    /// stops the children in order), with SIGTERM as its parent-death signal, stderr (and
    /// stdout unless `piped`) appended to `log`.
    pub(super) fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: &Path,
        piped: bool,
    ) -> Result<Proc> {
        let f = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let f2 = f.try_clone()?;
        cmd.stdin(Stdio::null())
            .stderr(f)
            .stdout(if piped { Stdio::piped() } else { f2.into() })
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it runs
        // in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name,
            child,
            log: log.to_path_buf(),
            _stdout: None,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it exited.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL; the exit status.
    pub(super) fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exited() {
            return Some(st);
        }
        // SAFETY: kill(2) on our own child, not yet reaped (try_wait just saw it running),
        // so its pid cannot have been reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "soak: {} did not exit within {:.0} s of SIGTERM; killing it",
            self.name,
            grace.as_secs_f64()
        );
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// The last lines of its log.
    pub(super) fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

pub(super) fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A directory removed on drop.
pub(super) struct Scratch(pub(super) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything the soak started. Fields drop in order: `hermes run` first (so it flushes
/// while the database is still up), then the simulator, PostgreSQL, the directories.
pub(super) struct Rig {
    pub(super) run: Option<Proc>,
    pub(super) sim: Option<Proc>,
    pub(super) pg: Option<LocalPg>,
    pub(super) _shm_dir: Scratch,
    pub(super) _dir: Scratch,
}

// ---- the run ---------------------------------------------------------------------------

/// The `hermes` binary beside this executable (or `--hermes`), with a message saying how
/// to build it when it is missing.
pub(super) fn hermes_binary(args: &SoakArgs) -> Result<PathBuf> {
    if let Some(p) = &args.hermes {
        anyhow::ensure!(p.is_file(), "--hermes {}: no such file", p.display());
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    let p = dir.join("hermes");
    if p.is_file() {
        return Ok(p);
    }
    let build = match dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => "cargo build --release -p hermes".to_string(),
        Some("debug") => "cargo build -p hermes".to_string(),
        Some(profile) => format!("cargo build --profile {profile} -p hermes"),
        None => "cargo build --release -p hermes".to_string(),
    };
    bail!(
        "the hermes binary is not at {} (the soak runs the one built beside this bench binary); build it with `{build}` (or pass --hermes PATH)",
        p.display()
    )
}

/// A free TCP port on 127.0.0.1 (bound and released: another process could take it in
/// between, which the readiness wait would then report).
pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `hermes` without the environment variables it reads (the user's DATABASE_URL or feed
/// settings must not leak into the soak).
pub(super) fn hermes_cmd(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for k in [
        "HERMES_LOG_JSON",
        "HERMES_SHM_PATH",
        "HERMES_HTTP_ADDR",
        "DATABASE_URL",
        "API_KEY",
        "INGEST_USERNAME",
        "INGEST_PASSWORD",
    ] {
        c.env_remove(k);
    }
    // Every venue's feed variables (COINBASE_PRODUCTS, BINANCE_USDM_WS_URL, …).
    for v in hermes_ingest::venue::LIVE_VENUES {
        for k in hermes_live::env_names(v) {
            c.env_remove(k);
        }
    }
    c
}

/// Sleeps until `until`, in short steps; an error on Ctrl-C / SIGTERM, `false` when
/// `hermes run` exited meanwhile.
pub(super) fn wait_until(until: Instant, stop: &AtomicBool, run: &mut Proc) -> Result<bool> {
    loop {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted; stopping everything the soak started");
        }
        if run.exited().is_some() {
            return Ok(false);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(true);
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Writes each line to stdout and to the output file.
pub(super) struct Emitter(pub(super) File);

impl Emitter {
    pub(super) fn emit<T: Serialize>(&mut self, v: &T) -> Result<()> {
        let line = serde_json::to_string(v)?;
        println!("{line}");
        std::io::stdout().flush()?;
        writeln!(self.0, "{line}")?;
        self.0.flush()?;
        Ok(())
    }
}

/// The scratch directories: on disk for the cluster, the journal and the logs; tmpfs
/// (`/dev/shm` when there is one) for the shm file.
pub(super) fn scratch_dirs() -> Result<(Scratch, Scratch)> {
    let id = std::process::id();
    let make = |d: PathBuf| -> Result<Scratch> {
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(Scratch(d))
    };
    let disk = make(std::env::temp_dir().join(format!("hermes-soak-{id}")))?;
    let shm_base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let shm = make(shm_base.join(format!("hermes-soak-shm-{id}")))?;
    Ok((disk, shm))
}

/// Starts `hermes sim` on a free loopback port; the process and the WebSocket URL it
/// printed.
pub(super) fn start_sim(bin: &Path, args: &SoakArgs, log: &Path) -> Result<(Proc, String)> {
    let rate = args.rate;
    let every = |p: Period, plus: u64| {
        p.0.map(|d| ((rate * d.as_secs_f64()).round() as u64).max(10) + plus)
    };
    let mut cmd = hermes_cmd(bin);
    cmd.args([
        "sim",
        "--venue",
        args.venue.name(),
        "--synthetic",
        &INSTRUMENTS.to_string(),
        "--listen",
        "127.0.0.1:0",
        "--rate",
        &rate.to_string(),
    ]);
    if let Some(n) = every(args.gap_every, 0) {
        cmd.args(["--fault", &format!("gap=every:{n}")]);
    }
    // +1: never on the same frame as a gap (the disconnect would hide it).
    if let Some(n) = every(args.disconnect_every, 1) {
        cmd.args(["--fault", &format!("disconnect=every:{n}")]);
    }
    eprintln!("soak: {} {:?}", bin.display(), cmd.get_args());
    let mut sim = Proc::spawn("hermes sim", cmd, log, true)?;
    let stdout = sim.child.stdout.take().context("the simulator's stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let got = r.read_line(&mut line);
        let _ = tx.send((got.map(|_| line), r));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((Ok(line), r)) if line.trim().starts_with("ws://") => {
            sim._stdout = Some(r);
            let url = line.trim().to_string();
            Ok((sim, url))
        }
        _ => bail!(
            "the simulator did not print its address; its log:\n{}",
            sim.log_tail(20)
        ),
    }
}

/// Where `hermes run` keeps and serves things.
pub(super) struct RunSetup<'a> {
    pub(super) ws_url: &'a str,
    pub(super) database_url: &'a str,
    pub(super) journal: &'a Path,
    pub(super) shm: &'a Path,
    pub(super) port: u16,
}

/// Starts `hermes run` against the simulator.
pub(super) fn start_run(bin: &Path, args: &SoakArgs, s: &RunSetup<'_>, log: &Path) -> Result<Proc> {
    let mut cmd = hermes_cmd(bin);
    cmd.arg("run")
        .arg("--journal")
        .arg(s.journal)
        .arg("--shm")
        .arg(s.shm)
        .args(["--http", &format!("127.0.0.1:{}", s.port)])
        // Leave the two shared cores to the simulator and PostgreSQL between frames;
        // the soak looks for leaks, not latency.
        .args(["--idle", "backoff", "--no-pin"])
        .args(["--reconnect-min-ms", "200", "--reconnect-max-ms", "2000"])
        .args(["--journal-retention", &args.journal_retention])
        .env("DATABASE_URL", s.database_url);
    let syms: Vec<String> = (0..INSTRUMENTS)
        .map(|i| match args.venue {
            SoakVenue::Coinbase => format!("SYN{i}-USD"),
            SoakVenue::Binance => format!("SYN{i}USDT"),
        })
        .collect();
    match args.venue {
        SoakVenue::Coinbase => {
            cmd.env("COINBASE_WS_URL", s.ws_url)
                .env("COINBASE_PRODUCTS", syms.join(","));
        }
        SoakVenue::Binance => {
            cmd.env("BINANCE_WS_URL", s.ws_url)
                .env("BINANCE_REST_URL", s.ws_url.replacen("ws://", "http://", 1))
                .env("BINANCE_SYMBOLS", syms.join(","));
        }
    }
    eprintln!("soak: {} {:?}", bin.display(), cmd.get_args());
    Proc::spawn("hermes run", cmd, log, false)
}

pub(super) fn interrupted(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted; stopping everything the soak started");
    }
    Ok(())
}

/// Waits for `/health/readiness` to answer 200: the feed connected, the persister
/// connected with its schema in place.
pub(super) fn wait_ready(run: &mut Proc, port: u16, stop: &AtomicBool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        interrupted(stop)?;
        if let Some(st) = run.exited() {
            bail!(
                "hermes run exited ({st}) before it was ready; its log:\n{}",
                run.log_tail(30)
            );
        }
        let last = match http_get(port, "/health/readiness") {
            Ok((200, _)) => return Ok(()),
            Ok((code, body)) => format!("{code} {body}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "hermes run was not ready within 120 s (last /health/readiness: {last}); its log:\n{}",
                run.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a sample reads.
pub(super) struct Probe<'a> {
    pub(super) t0: Instant,
    pub(super) pid: u32,
    pub(super) port: u16,
    pub(super) journal: &'a Path,
    pub(super) database_url: &'a str,
}

impl Probe<'_> {
    pub(super) fn sample(&self, restarts: u32) -> Sample {
        let m = fetch_metrics(self.port);
        let (rss, threads) = proc_status(self.pid);
        let g = |name: &str| m.as_ref().and_then(|m| m.count(name, ""));
        Sample {
            kind: "sample".into(),
            elapsed_s: (self.t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            rss_bytes: rss,
            fds: fd_count(self.pid),
            threads,
            journal_bytes: dir_bytes(self.journal),
            persist_lag_bytes: g("hermes_persist_lag_bytes"),
            persist_lag_ms: m
                .as_ref()
                .and_then(|m| m.sum("hermes_persist_lag_seconds", ""))
                .map(|s| (s * 1000.0).round() as u64),
            persist_connected: g("hermes_persist_connected").map(|v| v > 0),
            persist_retries: g("hermes_persist_retries_total"),
            frames_received: g("hermes_frames_received_total"),
            raw_events_rows: raw_events_rows(self.database_url),
            pg_restarts: restarts,
            gaps: g("hermes_sequence_gaps_total"),
            resyncs: g("hermes_resyncs_total"),
            reconnects: g("hermes_reconnects_total"),
        }
    }
}

/// Restart number `n` of PostgreSQL: odd ones a fast shutdown (SIGINT), even ones an
/// immediate one (SIGQUIT: crash recovery at the next start); down for [`PG_DOWNTIME`].
/// `false` when `hermes run` died meanwhile.
pub(super) fn restart_pg(
    pg: &mut LocalPg,
    n: u32,
    run: &mut Proc,
    stop: &AtomicBool,
) -> Result<bool> {
    let immediate = n % 2 == 0;
    if immediate {
        // SAFETY: kill(2) on the postmaster LocalPg started and still holds as its
        // unreaped child (so the pid is still its); SIGQUIT is PostgreSQL's immediate
        // shutdown. `stop` below then waits for it to exit.
        unsafe { libc::kill(pg.pid(), libc::SIGQUIT) };
    }
    pg.stop().context("stopping PostgreSQL")?;
    if !wait_until(Instant::now() + PG_DOWNTIME, stop, run)? {
        return Ok(false);
    }
    pg.restart().context("starting PostgreSQL again")?;
    Ok(true)
}

/// Waits, after the feed stopped, until the persister has everything (lag 0) and the
/// frame count is still; the last metrics and the seconds it took (`None`: it did not
/// within [`DRAIN_LIMIT`]). `Ok(None)` when `hermes run` died meanwhile.
#[allow(clippy::type_complexity)]
pub(super) fn drain(
    run: &mut Proc,
    port: u16,
    stop: &AtomicBool,
) -> Result<Option<(Option<Metrics>, Option<f64>)>> {
    let t = Instant::now();
    let mut stable_since = Instant::now();
    let mut frames = None;
    let mut last = None;
    loop {
        interrupted(stop)?;
        if run.exited().is_some() {
            return Ok(None);
        }
        if let Some(m) = fetch_metrics(port) {
            let f = m.count("hermes_frames_received_total", "");
            if f != frames {
                frames = f;
                stable_since = Instant::now();
            }
            let caught_up = m.count("hermes_persist_lag_bytes", "") == Some(0)
                && m.sum("hermes_persist_lag_seconds", "") == Some(0.0);
            last = Some(m);
            if caught_up && stable_since.elapsed() >= Duration::from_secs(1) {
                let secs = (t.elapsed().as_secs_f64() * 10.0).round() / 10.0;
                return Ok(Some((last, Some(secs))));
            }
        }
        if t.elapsed() > DRAIN_LIMIT {
            return Ok(Some((last, None)));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `count(*)` and `count(DISTINCT (stream, frame_no))` of `raw_events`.
pub(super) fn final_counts(url: &str) -> Result<(u64, u64)> {
    let mut c = connect(url)?;
    let r = c.query_one(
        "SELECT count(*), count(DISTINCT (stream, frame_no)) FROM raw_events",
        &[],
    )?;
    let n = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
    Ok((n(0), n(1)))
}
