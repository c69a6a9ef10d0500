//! What several test modules share: the `hermes` command with a clean environment,
//! temporary directories, synthetic captures, the simulator, and [`require`], the one
//! place a test asks for a system tool (PostgreSQL has its own, shared with the persister's
//! tests: `hermes_persist::local_pg::available_or_required`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The environment switch that turns a missing tool from a skipped test into a failed one
/// (`.ci/run` sets it to `1`).
const REQUIRE_ALL: &str = "HERMES_REQUIRE_ALL";

/// `hermes`, without the environment variables it reads (a developer's `DATABASE_URL` or
/// `HERMES_LOG_JSON` must not change what a test sees). Logs at the binary's default level
/// unless the caller sets `RUST_LOG`.
pub fn hermes() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hermes"));
    for k in [
        "RUST_LOG",
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

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether `tool` runs here, for a test (or part of one) that needs it.
///
/// When it does not: with `HERMES_REQUIRE_ALL=1` (CI) the test fails, naming the tool and
/// what installs it, so no test passes by skipping; otherwise (a developer's machine) this
/// prints a note and returns `false`, and the caller returns early. `why` says what the
/// tool is needed for.
pub fn require(tool: &str, why: &str) -> bool {
    let probe = if tool == "tmux" { "-V" } else { "--version" };
    let runs = Command::new(tool)
        .arg(probe)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return true;
    }
    let package = match tool {
        "cc" => "gcc",
        "c++" => "g++",
        "node" => "nodejs",
        t => t,
    };
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let install = format!("scripts/ci-deps.sh installs it (apt-get install {package})");
    if std::env::var(REQUIRE_ALL).is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{REQUIRE_ALL}=1: `{tool}` is missing, and {test} needs it for {why}; {install}");
    }
    eprintln!(
        "note: `{tool}` is missing, so {test} skips {why}; {install}, \
         and {REQUIRE_ALL}=1 makes its absence a failure"
    );
    false
}

/// Whether `path` exists, for a test that needs something installed there (an npm
/// package, say) rather than a tool on the PATH: the same policy as [`require`] (fails
/// under `HERMES_REQUIRE_ALL=1`, else a note and `false`). `install` says what puts it there.
pub fn require_installed(path: &Path, install: &str, why: &str) -> bool {
    if path.exists() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let what = path.display();
    if std::env::var(REQUIRE_ALL).is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{REQUIRE_ALL}=1: {what} is missing, and {test} needs it for {why}; {install}");
    }
    eprintln!(
        "note: {what} is missing, so {test} skips {why}; {install}, \
         and {REQUIRE_ALL}=1 makes its absence a failure"
    );
    false
}

/// `../shared/captures` beside the workspace: real recordings, test data rather than a
/// tool. CI has the directory; where it is absent the tests that replay it return early
/// (after a note), whatever `HERMES_REQUIRE_ALL` says.
pub fn shared_captures() -> Option<PathBuf> {
    let dir = workspace().join("../shared/captures");
    if dir.is_dir() {
        return Some(dir);
    }
    eprintln!(
        "note: the real recordings are not at {}, so {} skips them (test data, not a tool: \
         HERMES_REQUIRE_ALL does not apply)",
        dir.display(),
        std::thread::current().name().unwrap_or("?")
    );
    None
}

/// A per-test directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory for the test `name` (unique in this process even when two
    /// modules pick the same name).
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        // Relaxed: only the number's uniqueness matters; it orders no other memory.
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("hermes-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// A path inside it.
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` and fails the test, with its output, unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `hermes generate --out DIR/name ARGS…`: a synthetic capture.
pub fn generate(dir: &TempDir, name: &str, args: &[&str]) -> PathBuf {
    let p = dir.path(name);
    run_ok(hermes().args(["generate", "--out"]).arg(&p).args(args));
    p
}

/// A running `hermes sim`, killed and reaped on drop.
pub struct Sim {
    child: Child,
    /// The WebSocket URL it printed.
    pub url: String,
}

impl Sim {
    /// Starts `hermes sim ARGS…` and waits for the URL it prints once listening.
    pub fn start(args: &[&str]) -> Sim {
        let mut child = hermes()
            .arg("sim")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        assert!(url.starts_with("ws://127.0.0.1:"), "sim printed {url:?}");
        Sim { child, url }
    }

    /// Its REST base URL (Binance's depth snapshots).
    pub fn http(&self) -> String {
        self.url.replacen("ws://", "http://", 1)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use hermes_persist::testing::Tmpfs;

/// Row count and md5 of every row of every table the persister writes
/// (`hermes_persist::TABLES`), in a fixed order. With `positions`, the rows of the tables
/// keyed by journal position (`raw_events`, `funding`, `liquidations`) include it
/// (stream, record index); without, only their content, to compare runs that number their
/// records differently. (`ingest_offsets` differs by design: one row per journal segment.)
pub fn table_digests(url: &str, positions: bool) -> Vec<(String, i64, String)> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let raw = if positions {
        ("stream, frame_no", "stream || frame_no || venue || coalesce(seq::text, '') || coalesce(channel, '') || coalesce(event_type, '') || receive_ts::text || coalesce(frame::text, '')")
    } else {
        ("receive_ts, frame::text", "venue || conn_id || coalesce(seq::text, '') || coalesce(channel, '') || coalesce(event_type, '') || receive_ts::text || coalesce(frame::text, '')")
    };
    let funding_row = "venue || symbol || exchange_ts::text || receive_ts::text || mark_px::text || coalesce(index_px::text, '') || coalesce(funding_rate::text, '') || coalesce(next_funding_time::text, '')";
    let liquidation_row = "venue || symbol || side || price::text || qty::text || exchange_ts::text || receive_ts::text";
    let (funding, liquidations) = if positions {
        (
            (
                "stream, frame_no, symbol".to_string(),
                format!("stream || frame_no || {funding_row}"),
            ),
            (
                "stream, frame_no, symbol".to_string(),
                format!("stream || frame_no || {liquidation_row}"),
            ),
        )
    } else {
        // Ordered by the content itself: every column is in it.
        (
            (funding_row.to_string(), funding_row.to_string()),
            (liquidation_row.to_string(), liquidation_row.to_string()),
        )
    };
    let tables = [
        ("raw_events", raw.0, raw.1),
        ("trades", "venue, symbol, aggregate, trade_id", "venue || symbol || trade_id || price::text || size::text || side || exchange_ts::text || receive_ts::text"),
        ("book_snapshots", "venue, symbol, ts", "venue || symbol || ts::text || update_id || bid_px::text || bid_qty::text || ask_px::text || ask_qty::text || stale || crossed"),
        ("top_of_book", "venue, symbol, ts", "venue || symbol || ts::text || update_id || coalesce(bid_px::text, '') || coalesce(ask_px::text, '') || coalesce(mid::text, '') || coalesce(microprice::text, '') || stale"),
        ("funding", &funding.0, &funding.1),
        ("liquidations", &liquidations.0, &liquidations.1),
    ];
    assert_eq!(
        tables.map(|t| t.0),
        hermes_persist::TABLES,
        "a table the persister writes is missing here"
    );
    tables
    .iter()
    .map(|(t, order, row)| {
        let r = c
            .query_one(
                &format!("SELECT count(*), coalesce(md5(string_agg({row}, ',' ORDER BY {order})), '') FROM {t}"),
                &[],
            )
            .unwrap();
        (t.to_string(), r.get(0), r.get(1))
    })
    .collect()
}

/// Polls `cond` every 20 ms until it holds; fails the test after `limit`, naming `what`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP client that returns error statuses as answers, with a 10 s limit.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// `GET url` with `headers`: (status, body), or the transport error (nothing listening).
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, String), ureq::Error> {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.call()?;
    Ok((
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    ))
}

/// Prometheus text: sample name (with labels) → value; panics on a malformed line.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    let mut m = std::collections::HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let kind = rest.split_whitespace().nth(1).unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "summary"].contains(&kind),
                    "{line}"
                );
            }
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(name.starts_with("hermes_"), "{line}");
        if let Some(i) = name.find('{') {
            assert!(name.ends_with('}'), "{line}");
            for pair in name[i + 1..name.len() - 1].split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label in {line:?}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && v.starts_with('"')
                        && v.ends_with('"'),
                    "{line}"
                );
            }
        }
        m.insert(name.to_string(), v);
    }
    m
}

/// The `http://ADDR/` a process logs in `log` after `prefix` (e.g. `mirror: HTTP on `),
/// once it does (30 s at most).
pub fn address_in_log(log: &Path, prefix: &str) -> String {
    let mut url = String::new();
    wait_for(
        &format!("{prefix:?} in {}", log.display()),
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            match text.find(prefix) {
                Some(i) => {
                    url = text[i + prefix.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    true
                }
                None => false,
            }
        },
    );
    url
}

/// A fresh database in the test process's PostgreSQL cluster (the caller has checked
/// `local_pg::available_or_required`).
pub fn fresh_db(prefix: &str) -> String {
    hermes_persist::local_pg::shared()
        .expect("the test cluster")
        .fresh_database(prefix)
        .unwrap()
}
