//! Live ingest against the simulator over real loopback WebSockets: `hermes sim` serves a
//! capture, `hermes run` ingests it, and the books must equal a `hermes replay` of the same
//! capture, with and without injected faults.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Sim, TempDir};

fn hermes() -> Command {
    let mut c = common::hermes();
    c.env("RUST_LOG", "info");
    c
}

/// A synthetic capture of three instruments on `venue`.
fn generate(dir: &TempDir, name: &str, venue: &str, frames: &str) -> PathBuf {
    let args = ["--venues", venue, "--instruments", "3", "--frames", frames];
    common::generate(dir, name, &args)
}

fn check(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed: {}\n{err}", out.status);
    err
}

fn lines(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The book part of a `--print-final` line (the venue's sequence numbers differ between
/// a live connection and the recording, and so do publication counts).
fn books(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seq");
            o.remove("updates");
            serde_json::to_string(&v).unwrap()
        })
        .collect()
}

fn replay(file: &Path, shm: &Path) -> Vec<String> {
    let out = hermes()
        .arg("replay")
        .arg(file)
        .arg("--shm")
        .arg(shm)
        .arg("--print-final")
        .output()
        .unwrap();
    check(&out, "replay");
    lines(&out)
}

const CB: &str = "SYN0-USD,SYN1-USD,SYN2-USD";
const BN: &str = "SYN0USDT,SYN1USDT,SYN2USDT";

fn run(dir: &TempDir, env: &[(&str, String)], extra: &[&str]) -> Output {
    let mut c = hermes();
    c.arg("run").arg("--shm").arg(dir.path("run.shm")).args([
        "--print-final",
        "--until-idle",
        "1.5",
        "--duration",
        "60",
    ]);
    c.args(["--reconnect-min-ms", "50", "--reconnect-max-ms", "200"])
        .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A counter from the final summary line: `stat(err, "", "gaps")` for the totals,
/// `stat(err, "binance", "throttled")` for a venue's.
fn stat(stderr: &str, venue: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("run: "))
        .expect("summary line");
    let part = if venue.is_empty() {
        line.rsplit(" s; ")
            .next()
            .unwrap()
            .split(" | ")
            .next()
            .unwrap()
    } else {
        line.split(" | ").find(|p| p.starts_with(venue)).unwrap()
    };
    let part = format!(" {part} ");
    let i = part
        .find(&format!(" {name} "))
        .unwrap_or_else(|| panic!("{name} not in {part}"));
    part[i + name.len() + 2..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn both_venues_on_one_ingest_thread_match_replay() {
    let dir = TempDir::new("both");
    let cb = generate(&dir, "cb.hcap", "coinbase", "20000");
    let bn = generate(&dir, "bn.hcap", "binance", "20000");
    let s1 = Sim::start(&[
        "--venue",
        "coinbase",
        "--speed",
        "max",
        "--capture",
        cb.to_str().unwrap(),
    ]);
    let s2 = Sim::start(&[
        "--venue",
        "binance",
        "--speed",
        "max",
        "--capture",
        bn.to_str().unwrap(),
    ]);
    let out = run(
        &dir,
        &[
            ("COINBASE_WS_URL", s1.url.clone()),
            ("COINBASE_PRODUCTS", CB.into()),
            ("BINANCE_WS_URL", s2.url.clone()),
            ("BINANCE_REST_URL", s2.http()),
            ("BINANCE_SYMBOLS", BN.into()),
        ],
        &[],
    );
    let err = check(&out, "run");
    let live = lines(&out);
    assert_eq!(live.len(), 6, "{err}");
    let mut want = replay(&cb, &dir.path("r.shm"));
    want.extend(replay(&bn, &dir.path("r.shm")));
    want.sort();
    assert_eq!(books(&live), books(&want), "{err}");
    assert_eq!(stat(&err, "", "gaps"), 0);
    // Binance update ids are the venue's own: equal to the replay's.
    for (l, w) in live
        .iter()
        .zip(&want)
        .filter(|(l, _)| l.contains("binance"))
    {
        let (l, w): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(l).unwrap(),
            serde_json::from_str(w).unwrap(),
        );
        assert_eq!(l["seq"], w["seq"]);
    }
}

#[test]
fn coinbase_faults_are_survived_and_books_end_exact() {
    let dir = TempDir::new("cbfaults");
    let cb = generate(&dir, "cb.hcap", "coinbase", "20000");
    let sim = Sim::start(&[
        "--venue",
        "coinbase",
        "--speed",
        "max",
        "--capture",
        cb.to_str().unwrap(),
        "--fault",
        "gap=every:900",
        "--fault",
        "duplicate=every:700",
        "--fault",
        "reorder=every:1100",
        "--fault",
        "malformed=every:1300",
        "--fault",
        "disconnect=at:5000",
    ]);
    let out = run(
        &dir,
        &[
            ("COINBASE_WS_URL", sim.url.clone()),
            ("COINBASE_PRODUCTS", CB.into()),
        ],
        &["--stats"],
    );
    let err = check(&out, "run");
    assert_eq!(
        books(&lines(&out)),
        books(&replay(&cb, &dir.path("r.shm"))),
        "{err}"
    );
    assert!(stat(&err, "", "gaps") > 0, "{err}");
    assert!(stat(&err, "", "resyncs") > 0, "{err}");
    assert!(stat(&err, "", "parse-errors") > 0, "{err}");
    assert!(stat(&err, "coinbase", "reconnects") >= 1, "{err}");
    assert!(err.contains("gap: resubscribing level2"), "{err}");
    assert!(!err.contains("stale at the end"), "{err}");
    for l in lines(&out) {
        assert!(l.ends_with("\"stale\":false}"), "{l}");
    }
}

#[test]
fn binance_gaps_resync_one_symbol_and_rate_limits_are_honoured() {
    let dir = TempDir::new("bnfaults");
    let bn = generate(&dir, "bn.hcap", "binance", "30000");
    let sim = Sim::start(&[
        "--venue",
        "binance",
        "--speed",
        "max",
        "--capture",
        bn.to_str().unwrap(),
        "--fault",
        "gap=every:301",
        "--fault",
        "duplicate=every:500",
        "--fault",
        "reorder=every:1500",
        "--fault",
        "disconnect=at:9000",
        "--rest-per-second",
        "2",
    ]);
    let mut child = hermes()
        .arg("run")
        .arg("--shm")
        .arg(dir.path("run.shm"))
        .args([
            "--print-final",
            "--until-idle",
            "3",
            "--duration",
            "90",
            "--reconnect-min-ms",
            "50",
        ])
        .env("BINANCE_WS_URL", &sim.url)
        .env("BINANCE_REST_URL", sim.http())
        .env("BINANCE_SYMBOLS", BN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, a reader in another process sees a symbol flagged stale.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_stale = false;
    while Instant::now() < deadline && !saw_stale {
        let d = hermes()
            .args(["shm", "dump", "--json"])
            .arg(dir.path("run.shm"))
            .output()
            .unwrap();
        saw_stale = String::from_utf8_lossy(&d.stdout).contains("\"stale\":true");
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    let out = child.wait_with_output().unwrap();
    let err = check(&out, "run");
    assert!(
        saw_stale,
        "no stale flag observed in shm during resyncs\n{err}"
    );
    assert_eq!(
        books(&lines(&out)),
        books(&replay(&bn, &dir.path("r.shm"))),
        "{err}"
    );
    assert!(
        stat(&err, "", "gaps") > 0 && stat(&err, "", "resyncs") > 0,
        "{err}"
    );
    assert!(
        stat(&err, "binance", "throttled") > 0,
        "the 2/s REST limit must have answered 429 at least once\n{err}"
    );
    assert!(err.contains("gap: refetching the depth snapshot"), "{err}");
    assert!(stat(&err, "binance", "reconnects") >= 1, "{err}");
}

#[test]
fn malformed_and_oversize_frames_are_counted_and_the_connection_comes_back() {
    let dir = TempDir::new("oversize");
    let cb = generate(&dir, "cb.hcap", "coinbase", "8000");
    let sim = Sim::start(&[
        "--venue",
        "coinbase",
        "--speed",
        "max",
        "--capture",
        cb.to_str().unwrap(),
        "--fault",
        "malformed=at:300",
        "--fault",
        "oversize=at:2000",
        "--oversize-bytes",
        "3000000",
    ]);
    let out = run(
        &dir,
        &[
            ("COINBASE_WS_URL", sim.url.clone()),
            ("COINBASE_PRODUCTS", CB.into()),
        ],
        &["--stats", "--max-frame-bytes", "1000000"],
    );
    let err = check(&out, "run");
    assert!(stat(&err, "coinbase", "oversize") >= 1, "{err}");
    assert!(err.contains("over the 1000000-byte limit"), "{err}");
    assert!(stat(&err, "", "parse-errors") >= 1, "{err}");
    assert!(err.contains("malformed JSON"), "{err}");
    assert!(stat(&err, "coinbase", "reconnects") >= 1, "{err}");
    assert_eq!(
        books(&lines(&out)),
        books(&replay(&cb, &dir.path("r.shm"))),
        "{err}"
    );
}

#[test]
fn record_then_replay_reproduces_the_live_books() {
    let dir = TempDir::new("record");
    let cb = generate(&dir, "cb.hcap", "coinbase", "6000");
    let bn = generate(&dir, "bn.hcap", "binance", "6000");
    let s1 = Sim::start(&[
        "--venue",
        "coinbase",
        "--speed",
        "max",
        "--capture",
        cb.to_str().unwrap(),
    ]);
    let s2 = Sim::start(&[
        "--venue",
        "binance",
        "--speed",
        "max",
        "--capture",
        bn.to_str().unwrap(),
    ]);
    let rec = dir.path("rec");
    let out = hermes()
        .arg("record")
        .arg("--out")
        .arg(&rec)
        .arg("--shm")
        .arg(dir.path("run.shm"))
        .args(["--print-final", "--until-idle", "1.5", "--duration", "60"])
        .env("COINBASE_WS_URL", &s1.url)
        .env("COINBASE_PRODUCTS", CB)
        .env("BINANCE_WS_URL", &s2.url)
        .env("BINANCE_REST_URL", s2.http())
        .env("BINANCE_SYMBOLS", BN)
        .output()
        .unwrap();
    let err = check(&out, "record");
    assert!(err.contains("recorded "), "{err}");
    let files: Vec<PathBuf> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // Everything, sequence numbers and publication counts included, replays identically.
    assert_eq!(lines(&out), replay(&files[0], &dir.path("r.shm")), "{err}");
}

#[test]
fn the_breaker_opens_without_a_server_and_recovers_when_it_appears() {
    let dir = TempDir::new("breaker");
    let cb = generate(&dir, "cb.hcap", "coinbase", "3000");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = hermes()
        .arg("run")
        .arg("--shm")
        .arg(dir.path("run.shm"))
        .args([
            "--print-final",
            "--until-idle",
            "1",
            "--duration",
            "60",
            "--stats",
        ])
        .args([
            "--reconnect-min-ms",
            "10",
            "--reconnect-max-ms",
            "20",
            "--breaker-cooldown-ms",
            "300",
        ])
        .env("COINBASE_WS_URL", format!("ws://127.0.0.1:{port}"))
        .env("COINBASE_PRODUCTS", CB)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines() {
            let line = line.unwrap();
            if line.contains("circuit breaker open") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the breaker never opened");
    let listen = format!("127.0.0.1:{port}");
    let _sim = Sim::start(&[
        "--venue",
        "coinbase",
        "--speed",
        "max",
        "--listen",
        &listen,
        "--capture",
        cb.to_str().unwrap(),
    ]);
    let out = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("breaker open") && err.contains("half-open"),
        "{err}"
    );
    assert!(
        err.contains("circuit breaker closed: the probe connected"),
        "{err}"
    );
    let got = lines(&out);
    assert_eq!(
        books(&got),
        books(&replay(&cb, &dir.path("r.shm"))),
        "{err}"
    );
}

/// Binance USD-M, COIN-M and Coinbase Exchange on one ingest thread, each from its own
/// simulator injecting gaps, duplicates, reordering, malformed frames and a disconnect:
/// the futures books resync from the venue's REST snapshot (at `/fapi/v1/depth` and
/// `/dapi/v1/depth`), the Exchange books by resubscribing `level2_batch` after a missed
/// trade id, and every book ends equal to a replay of what was served.
#[test]
fn futures_and_exchange_faults_resync_and_books_end_exact() {
    let dir = TempDir::new("newvenues");
    let faults = |gap: &'static str| {
        vec![
            "--fault",
            gap,
            "--fault",
            "duplicate=every:700",
            "--fault",
            "reorder=every:1100",
            "--fault",
            "malformed=every:1900",
            "--fault",
            "disconnect=at:6000",
        ]
    };
    let mut sims = Vec::new();
    let mut captures = Vec::new();
    for (venue, gap) in [
        ("binance-usdm", "gap=every:401"),
        ("binance-coinm", "gap=every:433"),
        ("coinbase-exchange", "gap=every:307"),
    ] {
        let cap = generate(&dir, &format!("{venue}.hcap"), venue, "15000");
        let mut args = vec!["--venue", venue, "--speed", "max", "--capture"];
        args.push(cap.to_str().unwrap());
        args.extend(faults(gap));
        sims.push(Sim::start(&args));
        captures.push(cap);
    }
    let out = run(
        &dir,
        &[
            ("BINANCE_USDM_WS_URL", sims[0].url.clone()),
            ("BINANCE_USDM_REST_URL", sims[0].http()),
            ("BINANCE_USDM_SYMBOLS", BN.into()),
            ("BINANCE_COINM_WS_URL", sims[1].url.clone()),
            ("BINANCE_COINM_REST_URL", sims[1].http()),
            (
                "BINANCE_COINM_SYMBOLS",
                "SYN0USD_PERP,SYN1USD_PERP,SYN2USD_PERP".into(),
            ),
            ("COINBASE_EXCHANGE_WS_URL", sims[2].url.clone()),
            ("COINBASE_EXCHANGE_PRODUCTS", CB.into()),
        ],
        &["--stats"],
    );
    let err = check(&out, "run");
    let live = lines(&out);
    assert_eq!(live.len(), 9, "{err}");
    let mut want = Vec::new();
    for cap in &captures {
        want.extend(replay(cap, &dir.path("r.shm")));
    }
    want.sort();
    // Liquidations are counted, not sequenced: a forceOrder torn by the malformed fault
    // is lost (and counted as a parse error), so the live count may be short by those.
    let liquidations = |l: &[String]| -> (Vec<String>, u64) {
        let mut n = 0;
        let rest = l
            .iter()
            .map(|x| {
                let mut v: serde_json::Value = serde_json::from_str(x).unwrap();
                n += v["liquidations"].as_u64().unwrap_or(0);
                v.as_object_mut().unwrap().remove("liquidations");
                v.to_string()
            })
            .collect();
        (rest, n)
    };
    let (live_books, live_liq) = liquidations(&live);
    let (want_books, want_liq) = liquidations(&want);
    assert_eq!(books(&live_books), books(&want_books), "{err}");
    assert!(
        live_liq <= want_liq && live_liq + stat(&err, "", "parse-errors") >= want_liq,
        "liquidations live {live_liq}, served {want_liq}\n{err}"
    );
    for l in &live {
        assert!(l.contains("\"stale\":false"), "{l}");
    }
    // The futures books carry the mark price and funding the simulator served.
    for v in ["binance-usdm", "binance-coinm"] {
        assert!(
            live.iter()
                .filter(|l| l.contains(&format!("\"venue\":\"{v}\"")))
                .all(|l| l.contains("\"derivs\":{\"mark_px\"")),
            "{v}: {live:?}"
        );
    }
    assert!(stat(&err, "", "gaps") > 0, "{err}");
    assert!(stat(&err, "", "resyncs") > 0, "{err}");
    assert!(stat(&err, "", "parse-errors") > 0, "{err}");
    for v in ["binance-usdm", "binance-coinm", "coinbase-exchange"] {
        assert!(stat(&err, v, "reconnects") >= 1, "{v}\n{err}");
        assert!(stat(&err, v, "resync-requests") >= 1, "{v}\n{err}");
    }
    for v in ["binance-usdm", "binance-coinm"] {
        assert!(stat(&err, v, "rest") >= 2, "{v}\n{err}");
        assert!(
            err.lines()
                .any(|l| l.contains("gap: refetching the depth snapshot")
                    && l.contains(&format!("venue=\"{v}\""))),
            "{v}\n{err}"
        );
    }
    assert!(
        err.lines()
            .any(|l| l.contains("gap: resubscribing level2_batch")
                && l.contains("venue=\"coinbase-exchange\"")),
        "{err}"
    );
    assert!(!err.contains("stale at the end"), "{err}");
}
