//! `hermes serve` and the web dashboard, in a real browser: Debian's chromium, headless,
//! driven by playwright-core (`tools/tests/browser/driver.mjs`, installed by `npm ci` in
//! that folder; `scripts/ci-deps.sh` does both). The test logic is here; the Node script
//! only answers commands (open, wait for a condition, read, click, type, screenshot).
//!
//! Why playwright-core rather than chromedriver from Rust: its `waitForFunction` polls a
//! condition in the page with a deadline (no sleeps), it reports page errors, and the same
//! installed package drives the browser benchmark (`bench/browser/`).
//!
//! Screenshots are kept in `target/tmp/dashboard/` (`CARGO_TARGET_TMPDIR`).
// Every child ends up in a `Proc` or a `Browser`, which kill and wait for it on drop.
#![allow(clippy::zombie_processes)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, generate, hermes, run_ok, TempDir};

/// A child process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The folder with the browser driver and its `package.json`.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where screenshots are kept.
fn artifacts() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Headless chromium under playwright-core, answering one command at a time.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "close"}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::yield_now();
            std::thread::park_timeout(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts the browser, or `None` (after [`common::require`]'s note) when node,
    /// chromium or playwright-core is missing.
    fn start(name: &str) -> Option<Browser> {
        let why = "the dashboard tests in a real browser";
        if !common::require("node", why) || !common::require("chromium", why) {
            return None;
        }
        let dir = browser_dir();
        if !common::require_installed(
            &dir.join("node_modules/playwright-core/package.json"),
            "scripts/ci-deps.sh installs it (npm ci in tools/tests/browser)",
            why,
        ) {
            return None;
        }
        let profile = TempDir::new(&format!("chromium-{name}"));
        let mut child = Command::new("node")
            .arg(dir.join("driver.mjs"))
            .current_dir(&dir)
            .env("HERMES_BROWSER_PROFILE", &profile.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut b = Browser {
            child,
            stdin,
            out,
            _profile: profile,
        };
        b.answer().expect("the browser did not start");
        Some(b)
    }

    fn answer(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        self.out.read_line(&mut line).map_err(|e| e.to_string())?;
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("driver said {line:?}: {e}"))?;
        if v["ok"] == json!(true) {
            Ok(v["value"].clone())
        } else {
            Err(v["error"].as_str().unwrap_or("?").to_string())
        }
    }

    fn cmd(&mut self, c: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{c}").map_err(|e| e.to_string())?;
        self.answer()
    }

    fn goto(&mut self, url: &str) {
        self.cmd(json!({"op": "goto", "url": url}))
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Polls `js` in the page until it is truthy (at most `secs`), and returns its value.
    fn wait(&mut self, js: &str, secs: u64) -> Value {
        self.cmd(json!({"op": "wait", "js": js, "timeout_ms": secs * 1000}))
            .unwrap_or_else(|e| panic!("waiting for `{js}`: {e}"))
    }

    fn eval(&mut self, js: &str) -> Value {
        self.cmd(json!({"op": "eval", "js": js}))
            .unwrap_or_else(|e| panic!("eval `{js}`: {e}"))
    }

    fn click(&mut self, selector: &str) {
        self.cmd(json!({"op": "click", "selector": selector}))
            .unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    fn fill(&mut self, selector: &str, text: &str) {
        self.cmd(json!({"op": "fill", "selector": selector, "text": text}))
            .unwrap_or_else(|e| panic!("fill {selector}: {e}"));
    }

    /// Saves a screenshot as `target/tmp/dashboard/{name}.png`.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let p = artifacts().join(format!("{name}.png"));
        self.cmd(json!({"op": "screenshot", "path": p}))
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        p
    }
}

/// `hermes serve --shm PATH --http ADDR ARGS…`, and the URL it printed.
fn serve(shm: &Path, addr: &str, args: &[&str]) -> (Proc, String) {
    let mut child = hermes()
        .arg("serve")
        .arg("--shm")
        .arg(shm)
        .args(["--http", addr])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "serve printed {url:?}"
    );
    (Proc(child), url)
}

/// `hermes replay FILE --shm SHM --speed SPEED` in the background.
fn replay_in_background(file: &Path, shm: &Path, speed: &str) -> Proc {
    let child = hermes()
        .arg("replay")
        .arg(file)
        .arg("--shm")
        .arg(shm)
        .args(["--speed", speed])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn replay");
    Proc(child)
}

/// Polls `f` until it returns `Some`, for at most `secs`.
fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// One line of `hermes shm dump`: venue, symbol, bid qty, bid, ask, ask qty.
#[derive(Debug, Clone)]
struct Dumped {
    id: String,
    bid_qty: String,
    bid: String,
    ask: String,
    ask_qty: String,
}

/// `hermes shm dump PATH`, parsed.
fn shm_dump(shm: &Path) -> Vec<Dumped> {
    let out = run_ok(hermes().args(["shm", "dump"]).arg(shm));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(2)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Dumped {
                id: format!("{}:{}", f[0], f[1]),
                bid_qty: f[2].into(),
                bid: f[3].into(),
                ask: f[4].into(),
                ask_qty: f[5].into(),
            }
        })
        .collect()
}

/// The overview's visible rows: id, bid cell, ask cell.
fn visible_rows(b: &mut Browser) -> Vec<(String, String, String)> {
    let v = b.eval(
        "[...document.querySelectorAll('#overview tbody tr')].map(tr => \
         [tr.dataset.id, tr.querySelector('.c-bid').textContent, tr.querySelector('.c-ask').textContent])",
    );
    serde_json::from_value(v).unwrap()
}

fn ids(rows: &[(String, String, String)]) -> Vec<String> {
    rows.iter().map(|r| r.0.clone()).collect()
}

/// Clicks the overview column `col` and waits until it is the sort column in `dir`.
fn sort_by(b: &mut Browser, col: &str, dir: &str) -> Vec<(String, String, String)> {
    b.click(&format!("#overview th[data-col={col}]"));
    b.wait(
        &format!("document.querySelector('#overview th[data-col={col}]').getAttribute('aria-sort') === '{dir}'"),
        10,
    );
    visible_rows(b)
}

#[test]
fn overview_shows_the_shm_dump_and_sorts_and_filters() {
    let Some(mut b) = Browser::start("overview") else {
        return;
    };
    let dir = TempDir::new("dash-overview");
    let cap = generate(&dir, "m.hcap", &["--instruments", "4", "--frames", "30000"]);
    let shm = dir.path("shm");
    run_ok(hermes().arg("replay").arg(&cap).arg("--shm").arg(&shm));
    let dump = shm_dump(&shm);
    assert_eq!(dump.len(), 8, "{dump:?}");
    let (_serve, url) = serve(&shm, "127.0.0.1:0", &[]);

    b.goto(&url);
    b.wait(
        &format!(
            "[...document.querySelectorAll('#overview tbody tr')].filter(tr => tr.dataset.bidPx).length === {}",
            dump.len()
        ),
        30,
    );
    let rows = visible_rows(&mut b);
    // Slot order, one row per instrument, each with exactly what `shm dump` printed.
    assert_eq!(
        ids(&rows),
        dump.iter().map(|d| d.id.clone()).collect::<Vec<_>>()
    );
    for (d, (id, bid, ask)) in dump.iter().zip(&rows) {
        assert_eq!(bid, &format!("{} × {}", d.bid_qty, d.bid), "{id} bid");
        assert_eq!(ask, &format!("{} × {}", d.ask, d.ask_qty), "{id} ask");
    }
    let state = b.wait(
        "document.querySelector('#writer-state').dataset.state === 'closed' && document.querySelector('#writer-state').textContent",
        10,
    );
    assert!(state.as_str().unwrap().contains("CLOSED"), "{state}");
    b.screenshot("overview");

    // Sorting: by bid ascending, again for descending; by symbol (text).
    let slot: HashMap<&str, usize> = dump
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let mut by_bid: Vec<&Dumped> = dump.iter().collect();
    by_bid.sort_by(|x, y| {
        let (a, b) = (x.bid.parse::<f64>().unwrap(), y.bid.parse::<f64>().unwrap());
        a.total_cmp(&b)
            .then(slot[x.id.as_str()].cmp(&slot[y.id.as_str()]))
    });
    let want: Vec<String> = by_bid.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids(&sort_by(&mut b, "bid", "ascending")), want);
    let mut want_desc = want.clone();
    want_desc.reverse();
    assert_eq!(ids(&sort_by(&mut b, "bid", "descending")), want_desc);
    let mut by_symbol: Vec<&Dumped> = dump.iter().collect();
    by_symbol.sort_by_key(|d| {
        (
            d.id.split(':').nth(1).unwrap().to_lowercase(),
            slot[d.id.as_str()],
        )
    });
    assert_eq!(
        ids(&sort_by(&mut b, "symbol", "ascending")),
        by_symbol.iter().map(|d| d.id.clone()).collect::<Vec<_>>()
    );

    // Filtering: by venue, then by part of a symbol, case-insensitively.
    b.fill("#filter", "binance");
    let n_binance = dump.iter().filter(|d| d.id.starts_with("binance:")).count();
    b.wait(
        &format!("document.querySelectorAll('#overview tbody tr').length === {n_binance}"),
        10,
    );
    assert!(ids(&visible_rows(&mut b))
        .iter()
        .all(|i| i.starts_with("binance:")));
    b.fill("#filter", "syn1");
    let want: Vec<String> = by_symbol
        .iter()
        .filter(|d| d.id.to_lowercase().contains("syn1"))
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(want.len(), 2);
    b.wait(
        &format!(
            "document.querySelectorAll('#overview tbody tr').length === {}",
            want.len()
        ),
        10,
    );
    assert_eq!(ids(&visible_rows(&mut b)), want);
    b.screenshot("overview-filtered");

    // A row opens its instrument page: ladder, kernels, chart.
    b.fill("#filter", "");
    b.click("#overview tbody tr[data-id='coinbase:SYN0-USD']");
    b.wait(
        "location.hash === '#/i/coinbase%3ASYN0-USD' && document.querySelectorAll('#ladder tbody tr').length === 10",
        10,
    );
    let best = b.eval("document.querySelector('#ladder tbody tr td.bid').textContent");
    assert_eq!(best, json!(dump[0].bid));
    b.screenshot("instrument-final");
}

#[test]
fn instrument_chart_gains_points_during_a_realtime_replay() {
    let Some(mut b) = Browser::start("chart") else {
        return;
    };
    let dir = TempDir::new("dash-chart");
    // 1 ms of market time per frame: 120 s at realtime, far longer than the test.
    let cap = generate(
        &dir,
        "m.hcap",
        &[
            "--venues",
            "coinbase",
            "--instruments",
            "2",
            "--frames",
            "120000",
        ],
    );
    let shm = dir.path("shm");
    let _replay = replay_in_background(&cap, &shm, "realtime");
    poll(30, "the replay's shm file", || shm.exists().then_some(()));
    let (_serve, url) = serve(&shm, "127.0.0.1:0", &[]);

    b.goto(&format!("{url}#/i/coinbase:SYN0-USD"));
    b.wait(
        "document.querySelector('#writer-state').dataset.state === 'alive'",
        20,
    );
    let first = b
        .wait("Number(document.querySelector('#chart').dataset.points) >= 2 && Number(document.querySelector('#chart').dataset.points)", 30)
        .as_u64()
        .unwrap();
    let later = b
        .wait(
            &format!(
                "Number(document.querySelector('#chart').dataset.points) >= {} && Number(document.querySelector('#chart').dataset.points)",
                first + 20
            ),
            30,
        )
        .as_u64()
        .unwrap();
    assert!(later >= first + 20);
    // The chart drew them: uPlot's data holds the same points, and the quote is live.
    let drawn = b.eval("document.querySelector('#chart .u-over') !== null");
    assert_eq!(drawn, json!(true));
    b.wait(
        "document.querySelector('#stream-state').dataset.state === 'connected'",
        5,
    );
    b.screenshot("instrument-live");
}

#[test]
fn a_killed_writer_shows_dead_and_a_new_writer_is_followed() {
    let Some(mut b) = Browser::start("writer") else {
        return;
    };
    let dir = TempDir::new("dash-writer");
    let cap = generate(
        &dir,
        "m.hcap",
        &[
            "--venues",
            "coinbase",
            "--instruments",
            "2",
            "--frames",
            "120000",
        ],
    );
    let shm = dir.path("shm");
    let mut replay = replay_in_background(&cap, &shm, "realtime");
    poll(30, "the replay's shm file", || shm.exists().then_some(()));
    let (_serve, url) = serve(&shm, "127.0.0.1:0", &[]);

    b.goto(&format!("{url}#/ops"));
    b.wait(
        "document.querySelector('#writer-state').dataset.state === 'alive'",
        20,
    );
    b.wait(
        "document.querySelector('#ops-writer-state')?.dataset.state === 'alive'",
        10,
    );
    let pid = replay.0.id();
    replay.0.kill().unwrap();
    replay.0.wait().unwrap();
    let text = b.wait(
        "document.querySelector('#writer-state').dataset.state === 'dead' && document.querySelector('#writer-state').textContent",
        10,
    );
    assert!(text.as_str().unwrap().contains("DEAD"), "{text}");
    let banner = b.wait(
        "!document.querySelector('#banner').hidden && document.querySelector('#banner').textContent",
        5,
    );
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains(&format!("DEAD (pid {pid}")),
        "{banner}"
    );
    b.screenshot("writer-dead");
    // Liveness of `serve` says the same.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let live = agent.get(&format!("{url}health/liveness")).call().unwrap();
    assert_eq!(live.status().as_u16(), 503);

    // A new writer replaces the file: the page follows it (new generation, alive, rows
    // updating again).
    let gen_before =
        b.eval("Number(document.querySelector('#writer-state').textContent.split(' gen ')[1])");
    let events_before = b
        .eval("window.hermesDashboard.counters.events")
        .as_u64()
        .unwrap();
    let _replay2 = replay_in_background(&cap, &shm, "realtime");
    let gen_after = b.wait(
        &format!(
            "document.querySelector('#writer-state').dataset.state === 'replaced' && \
             Number(document.querySelector('#writer-state').textContent.split(' gen ')[1]) > {gen_before} && \
             Number(document.querySelector('#writer-state').textContent.split(' gen ')[1])"
        ),
        30,
    );
    b.screenshot("writer-replaced-badge");
    assert!(gen_after.as_u64().unwrap() > gen_before.as_u64().unwrap());
    b.wait(
        &format!(
            "window.hermesDashboard.counters.events > {} + 10",
            events_before
        ),
        20,
    );
    b.wait(
        "document.querySelector('#ops-writer-state')?.dataset.state === 'alive' && document.querySelector('#banner').textContent.includes('Writer replaced')",
        10,
    );
    // After a few seconds the badge shows the new writer as plainly alive.
    b.wait(
        "document.querySelector('#writer-state').dataset.state === 'alive'",
        15,
    );
    b.screenshot("writer-replaced");
}

#[test]
fn the_trade_tape_loads_history_from_the_database() {
    if !hermes_persist::local_pg::available_or_required() {
        return;
    }
    let Some(mut b) = Browser::start("history") else {
        return;
    };
    let pg = hermes_persist::local_pg::shared().expect("the test cluster");
    let url_db = pg.fresh_database("dashhist").unwrap();
    let dir = TempDir::new("dash-history");
    let cap = generate(
        &dir,
        "m.hcap",
        &[
            "--venues",
            "coinbase",
            "--instruments",
            "1",
            "--frames",
            "20000",
        ],
    );
    let shm = dir.path("shm");
    run_ok(
        hermes()
            .arg("replay")
            .arg(&cap)
            .arg("--shm")
            .arg(&shm)
            .arg("--journal")
            .arg(dir.path("journal"))
            .args(["--database-url", &url_db]),
    );
    let (_serve, url) = serve(&shm, "127.0.0.1:0", &["--database-url", &url_db]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(&format!("{url}symbols/coinbase:SYN0-USD/history?limit=60"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let hist: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let trades = hist["trades"].as_array().unwrap();
    assert!(trades.len() >= 20, "{hist}");

    b.goto(&format!("{url}#/i/coinbase:SYN0-USD"));
    b.wait(
        "document.querySelector('#tape-source').textContent === '(database + stream)' && \
         document.querySelectorAll('#tape tbody tr').length >= 20",
        20,
    );
    // Newest first, the database's trades, each once (the stream's last trade is one of them).
    let tape: Vec<(String, String, String)> = serde_json::from_value(b.eval(
        "[...document.querySelectorAll('#tape tbody tr')].map(tr => [...tr.children].slice(1).map(td => td.textContent))",
    ))
    .unwrap();
    let want: Vec<(String, String, String)> = trades
        .iter()
        .map(|t| {
            (
                t["side"].as_str().unwrap().to_string(),
                t["price"].as_str().unwrap().to_string(),
                t["size"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tape[..20], want[..20]);
    b.screenshot("instrument-history");
}

#[test]
fn a_wrong_api_key_shows_an_error_and_the_right_one_is_kept_for_the_session() {
    let Some(mut b) = Browser::start("apikey") else {
        return;
    };
    let dir = TempDir::new("dash-key");
    let cap = generate(&dir, "m.hcap", &["--instruments", "2", "--frames", "5000"]);
    let shm = dir.path("shm");
    run_ok(hermes().arg("replay").arg(&cap).arg("--shm").arg(&shm));
    let (_serve, url) = serve(&shm, "127.0.0.1:0", &["--api-key", "s3cret"]);

    b.goto(&url);
    b.wait("!document.querySelector('#key-panel').hidden", 10);
    assert_eq!(b.eval("document.querySelector('#app').hidden"), json!(true));
    b.fill("#key-input", "wrong");
    b.click("#key-form button");
    let err = b.wait(
        "!document.querySelector('#key-error').hidden && document.querySelector('#key-error').textContent",
        10,
    );
    assert!(err.as_str().unwrap().contains("Wrong API key"), "{err}");
    assert_eq!(b.eval("document.querySelector('#app').hidden"), json!(true));
    b.screenshot("api-key-wrong");

    b.fill("#key-input", "s3cret");
    b.click("#key-form button");
    b.wait(
        "document.querySelectorAll('#overview tbody tr[data-bid-px]').length === 4 && \
         [...document.querySelectorAll('#overview tbody tr')].every(tr => tr.dataset.bidPx)",
        20,
    );
    b.wait(
        "document.querySelector('#stream-state').dataset.state === 'connected'",
        10,
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('hermes.apiKey')"),
        json!("s3cret")
    );
    // Kept for the session: a reload does not ask again.
    b.goto(&url);
    b.wait(
        "document.querySelector('#key-panel').hidden && !document.querySelector('#app').hidden && \
         document.querySelectorAll('#overview tbody tr').length === 4",
        20,
    );
}

#[test]
fn a_dropped_stream_shows_and_reconnects() {
    let Some(mut b) = Browser::start("reconnect") else {
        return;
    };
    let dir = TempDir::new("dash-reconnect");
    let cap = generate(&dir, "m.hcap", &["--instruments", "2", "--frames", "5000"]);
    let shm = dir.path("shm");
    run_ok(hermes().arg("replay").arg(&cap).arg("--shm").arg(&shm));
    let (serve1, url) = serve(&shm, "127.0.0.1:0", &[]);
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();

    b.goto(&url);
    b.wait(
        "document.querySelector('#stream-state').dataset.state === 'connected'",
        20,
    );
    drop(serve1);
    b.wait(
        "document.querySelector('#stream-state').dataset.state === 'disconnected'",
        20,
    );
    let banner = b.wait(
        "!document.querySelector('#banner').hidden && document.querySelector('#banner').textContent",
        5,
    );
    assert!(
        banner.as_str().unwrap().contains("Stream dropped"),
        "{banner}"
    );
    b.screenshot("stream-dropped");
    // The server comes back on the same address: the page reconnects by itself.
    let (_serve2, _) = poll(20, "the port to be free again", || {
        std::net::TcpListener::bind(&addr).ok().map(drop)?;
        Some(serve(&shm, &addr, &[]))
    });
    b.wait(
        "document.querySelector('#stream-state').dataset.state === 'connected' && window.hermesDashboard.stream.connects >= 2",
        20,
    );
}

#[test]
fn serve_answers_rest_metrics_and_health_from_the_file_alone() {
    let dir = TempDir::new("dash-serve");
    let cap = generate(&dir, "m.hcap", &["--instruments", "2", "--frames", "5000"]);
    let shm = dir.path("shm");
    // Exactly as many slots as instruments: the directory is full.
    run_ok(
        hermes()
            .arg("replay")
            .arg(&cap)
            .args(["--shm-slots", "4", "--shm"])
            .arg(&shm),
    );
    let (_serve, url) = serve(&shm, "127.0.0.1:0", &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |p: &str| {
        let mut r = agent.get(&format!("{url}{p}")).call().unwrap();
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ctype, r.body_mut().read_to_string().unwrap())
    };
    let (s, ct, page) = get("");
    assert_eq!((s, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(page.contains("/assets/app.js"));
    for a in [
        "app.js",
        "app.css",
        "vendor/uPlot.iife.min.js",
        "vendor/uPlot.min.css",
    ] {
        assert_eq!(get(&format!("assets/{a}")).0, 200, "{a}");
    }
    assert_eq!(get("assets/nope.js").0, 404);
    let (s, _, status) = get("status");
    assert_eq!(s, 200);
    let st: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(st["process"], "serve");
    assert_eq!(st["writer"]["state"], "closed");
    assert_eq!(st["writer"]["instruments"], 4);
    assert_eq!(st["feeds"], Value::Null);
    let (s, _, metrics) = get("metrics");
    assert_eq!(s, 200);
    assert!(
        metrics.contains("hermes_shm_writer_state{state=\"closed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("hermes_shm_instruments 4"), "{metrics}");
    assert!(
        metrics.contains("hermes_shm_slot_updates_total{venue=\"coinbase\",symbol=\"SYN0-USD\",id=\"coinbase:SYN0-USD\"}"),
        "{metrics}"
    );
    // The writer exited: not alive, not ready, and saying why.
    let (s, _, live) = get("health/liveness");
    assert_eq!(s, 503);
    assert!(live.contains("closed"), "{live}");
    let (s, _, ready) = get("health/readiness");
    assert_eq!(s, 503);
    assert!(
        ready.contains("shm directory full (4 of 4 slots)"),
        "{ready}"
    );
    // The detail carries the kernels the dashboard shows.
    let (s, _, one) = get("symbols/coinbase:SYN0-USD");
    assert_eq!(s, 200);
    let one: Value = serde_json::from_str(&one).unwrap();
    assert!(one["kernels"]["mid"].is_string(), "{one}");
    assert!(one["kernels"]["spread_bps"].is_string(), "{one}");
}

/// Idle sockets cannot hold the server: past the connection cap a new connection gets a
/// 503, and a connection that sends no request head is closed after the header timeout,
/// after which the server answers again.
#[test]
fn idle_connections_are_capped_and_timed_out() {
    use std::io::Read;
    use std::net::TcpStream;
    let dir = TempDir::new("dash-idle");
    let cap = generate(&dir, "m.hcap", &["--instruments", "1", "--frames", "500"]);
    let shm = dir.path("shm");
    run_ok(hermes().arg("replay").arg(&cap).arg("--shm").arg(&shm));
    let (_serve, url) = serve(
        &shm,
        "127.0.0.1:0",
        &[
            "--http-max-connections",
            "4",
            "--http-header-timeout-ms",
            "300",
        ],
    );
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // The fifth connection, with four silent ones open, is refused with a 503.
    let refused = poll(10, "a 503 past the cap", || {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /health/liveness HTTP/1.1\r\nhost: x\r\n\r\n");
        let mut head = String::new();
        let _ = s.read_to_string(&mut head);
        head.starts_with("HTTP/1.1 503").then_some(head)
    });
    assert!(refused.contains("too many connections"), "{refused}");
    // Each silent connection is closed by the server: a read sees the end of the stream.
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        let n = s
            .read(&mut buf)
            .expect("closed by the server, not timed out here");
        assert_eq!(
            n, 0,
            "the server closed the idle connection without an answer"
        );
    }
    // With the slots free again, requests are served.
    let ok = poll(10, "liveness after the idle ones closed", || {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.starts_with("HTTP/1.1 200").then_some(body)
    });
    let refused: f64 = ok
        .lines()
        .find_map(|l| l.strip_prefix("hermes_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refused-connections counter in /metrics: {ok}"));
    assert!(refused >= 1.0, "{refused} refused connections counted");
}
