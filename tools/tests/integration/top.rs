//! `hermes top`: the plain-text `--once` table on a known shm file (golden rows, checked
//! by content), and the live view driven in a real terminal (tmux `send-keys` /
//! `capture-pane`): it draws, sorts, filters, shows a ladder, pauses, follows a resize,
//! reports a writer killed with SIGKILL as DEAD, reopens a replaced file, and `q` exits.
//!
//! The interactive test needs `tmux` ([`require`]: a note and an early return on a
//! developer's machine without it, a failure under `HERMES_REQUIRE_ALL=1`). Nothing waits
//! with a fixed sleep: every step polls the pane until what it expects shows up, with a
//! deadline.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hermes_shm::{
    ShmWriter, SlotKernels, TopOfBook, Venue, WriterOptions, FLAG_HAS_ASK, FLAG_HAS_BID,
    FLAG_HAS_DERIVS, FLAG_STALE,
};

use crate::common::{hermes, require, TempDir};

fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A region with four instruments, published with `publish_ts_ns = now`:
///
/// | slot | instrument | what |
/// |---|---|---|
/// | 0 | coinbase BTC-USD (2/8 decimals) | both sides, kernels, a buy trade, 123.45 upd/s |
/// | 1 | binance ETHUSDT (8/8) | bid only, stale, 7 upd/s |
/// | 2 | coinbase ETH-USD | registered, never published |
/// | 3 | binance SOLUSDT (4/2) | both sides, 50 upd/s, no trade |
struct Fixture {
    writer: ShmWriter,
    tobs: Vec<(hermes_shm::SlotIndex, TopOfBook)>,
}

impl Fixture {
    fn create(path: &Path) -> Fixture {
        let mut w = ShmWriter::create(
            path,
            WriterOptions {
                slots: 8,
                group_readable: false,
                replace_foreign: false,
            },
        )
        .unwrap();
        let k = |rate: u64| SlotKernels {
            updates_per_s_x100: rate,
            rate_window_ns: 1_000_000_000,
            ..SlotKernels::default()
        };
        let btc = w.add_instrument(Venue::Coinbase, "BTC-USD", 2, 8).unwrap();
        let mut t = TopOfBook {
            update_id: 77,
            updates: 12,
            flags: FLAG_HAS_BID | FLAG_HAS_ASK,
            bid_px: 6_183_763,
            bid_qty: 150_000_000,
            ask_px: 6_183_800,
            ask_qty: 25_000_000,
            bid_levels: 2,
            ask_levels: 1,
            last_trade_px: 6_183_790,
            last_trade_qty: 1_000_000,
            last_trade_side: 1,
            trades: 3,
            kernels: SlotKernels {
                price_decimals: 4,
                spread_ticks: Some(37),
                spread_bps_x100: Some(6),
                mid_px: Some(618_378_150),
                microprice_px: Some(618_379_700),
                bid_depth: 175_000_000,
                ask_depth: 25_000_000,
                imbalance_ppm: Some(750_000),
                vwap_buy_px: Some(618_380_000),
                levels: 5,
                vwap_qty: 100_000_000,
                ..k(12_345)
            },
            ..TopOfBook::default()
        };
        t.bids[0] = (6_183_763, 150_000_000);
        t.bids[1] = (6_183_700, 25_000_000);
        t.asks[0] = (6_183_800, 25_000_000);
        let eth = w.add_instrument(Venue::Binance, "ETHUSDT", 8, 8).unwrap();
        let mut e = TopOfBook {
            update_id: 5,
            updates: 2,
            flags: FLAG_HAS_BID | FLAG_STALE,
            bid_px: 345_678_000_000,
            bid_qty: 1_000_000_000,
            bid_levels: 1,
            kernels: SlotKernels {
                price_decimals: 10,
                bid_depth: 1_000_000_000,
                imbalance_ppm: Some(1_000_000),
                ..k(700)
            },
            ..TopOfBook::default()
        };
        e.bids[0] = (345_678_000_000, 1_000_000_000);
        w.add_instrument(Venue::Coinbase, "ETH-USD", 2, 8).unwrap();
        let sol = w.add_instrument(Venue::Binance, "SOLUSDT", 4, 2).unwrap();
        let s = TopOfBook {
            update_id: 9,
            updates: 40,
            flags: FLAG_HAS_BID | FLAG_HAS_ASK,
            bid_px: 1_501_200,
            bid_qty: 3_000,
            ask_px: 1_501_500,
            ask_qty: 450,
            kernels: SlotKernels {
                price_decimals: 6,
                spread_bps_x100: Some(200),
                mid_px: Some(150_135_000),
                imbalance_ppm: Some(-333_333),
                ..k(5_000)
            },
            ..TopOfBook::default()
        };
        let mut f = Fixture {
            writer: w,
            tobs: vec![(btc, t), (eth, e), (sol, s)],
        };
        f.publish();
        f
    }

    /// Publishes every row again with a fresh publication time, and beats.
    fn publish(&mut self) {
        let now = unix_ns();
        for (slot, t) in &mut self.tobs {
            t.publish_ts_ns = now;
            self.writer.publish(*slot, t);
        }
        self.writer.heartbeat();
    }
}

/// Splits a `--once` row into its cells (separated by two spaces or more).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_age(s: &str) -> bool {
    let digits = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit() || c == '.');
    s.strip_suffix("ms").is_some_and(digits) || s.strip_suffix('s').is_some_and(digits)
}

fn run_once(path: &Path) -> Output {
    hermes()
        .args(["top", "--once", "--shm"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn once_prints_golden_rows() {
    let dir = TempDir::new("once");
    let path = dir.path("shm");
    let mut fx = Fixture::create(&path);
    fx.publish();
    let out = run_once(&path);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains('\x1b'),
        "escape codes in --once output: {text:?}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "header, titles, 4 rows:\n{text}");
    let head = lines[0];
    for want in [
        format!(
            "{}: writer pid {}, generation 1, alive",
            path.display(),
            std::process::id()
        ),
        "; 4 instruments, 1 stale, 180.5 updates/s".to_string(),
    ] {
        assert!(head.contains(&want), "header {head:?} lacks {want:?}");
    }
    assert_eq!(
        cells(lines[1]),
        [
            "VENUE",
            "SYMBOL",
            "BID QTY × BID",
            "ASK × ASK QTY",
            "SPREAD BPS",
            "MID",
            "IMBAL",
            "LAST",
            "UPD/S",
            "AGE",
            "STALE"
        ]
    );
    let golden: [&[&str]; 4] = [
        &[
            "coinbase",
            "BTC-USD",
            "1.5 × 61837.63",
            "61838 × 0.25",
            "0.06",
            "61837.815",
            "+0.750",
            "61837.9 B",
            "123.5",
            "AGE",
            "-",
        ],
        &[
            "binance",
            "ETHUSDT",
            "10 × 3456.78",
            "-",
            "-",
            "-",
            "+1.000",
            "-",
            "7.0",
            "AGE",
            "STALE",
        ],
        &[
            "coinbase", "ETH-USD", "-", "-", "-", "-", "-", "-", "-", "-", "-",
        ],
        &[
            "binance",
            "SOLUSDT",
            "30 × 150.12",
            "150.15 × 4.5",
            "2.00",
            "150.135",
            "-0.333",
            "-",
            "50.0",
            "AGE",
            "-",
        ],
    ];
    for (line, want) in lines[2..].iter().zip(golden) {
        let got = cells(line);
        assert_eq!(got.len(), want.len(), "{line:?}");
        for (g, w) in got.iter().zip(want) {
            if *w == "AGE" {
                assert!(is_age(g), "age {g:?} in {line:?}");
            } else {
                assert_eq!(g, w, "in {line:?}");
            }
        }
    }

    // The writer exits cleanly: the header says so and the data stays readable.
    drop(fx);
    let out = run_once(&path);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("closed (the writer exited cleanly"),
        "{text}"
    );
    assert!(text.contains("61837.815"), "{text}");
}

#[test]
fn once_shows_derivatives_columns_for_perpetuals() {
    let dir = TempDir::new("once-derivs");
    let path = dir.path("shm");
    let mut w = ShmWriter::create(
        &path,
        WriterOptions {
            slots: 4,
            group_readable: false,
            replace_foreign: false,
        },
    )
    .unwrap();
    let now = unix_ns();
    let book = TopOfBook {
        update_id: 9,
        updates: 4,
        flags: FLAG_HAS_BID | FLAG_HAS_ASK,
        bid_px: 618_501,
        bid_qty: 2_500,
        ask_px: 618_502,
        ask_qty: 100,
        publish_ts_ns: now,
        ..TopOfBook::default()
    };
    let usdm = w
        .add_instrument(Venue::BinanceUsdm, "BTCUSDT", 1, 3)
        .unwrap();
    w.publish(
        usdm,
        &TopOfBook {
            flags: book.flags | FLAG_HAS_DERIVS,
            mark_px: 6_185_012_000_000,
            index_px: 6_184_990_050_000,
            funding_rate: 10_000,
            next_funding_ns: now + 3 * 3_600_000_000_000 + 30 * 60_000_000_000,
            derivs_ts_ns: now,
            ..book
        },
    );
    let cbx = w
        .add_instrument(Venue::CoinbaseExchange, "BTC-USD", 1, 3)
        .unwrap();
    w.publish(cbx, &book);
    w.heartbeat();

    let out = run_once(&path);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "header, titles, 2 rows:\n{text}");
    let titles = cells(lines[1]);
    assert_eq!(
        titles[10..],
        ["MARK", "FUNDING", "NEXT FUNDING", "STALE"],
        "{text}"
    );
    let perp = cells(lines[2]);
    assert_eq!(perp[..2], ["binance-usdm", "BTCUSDT"], "{text}");
    assert_eq!(perp[10..12], ["61850.12", "+0.0100%"], "{text}");
    // 3h30m ahead at publication, a little less by the time top reads it.
    let minutes = perp[12].split_once('h').and_then(|(h, m)| {
        Some(h.parse::<u32>().ok()? * 60 + m.strip_suffix('m')?.parse::<u32>().ok()?)
    });
    assert!(
        minutes.is_some_and(|m| m > 0 && m <= 210),
        "next funding {:?} in {text}",
        perp[12]
    );
    let spot = cells(lines[3]);
    assert_eq!(spot[..2], ["coinbase-exchange", "BTC-USD"], "{text}");
    assert_eq!(spot[10..], ["-", "-", "-", "-"], "{text}");
    drop(w);
}

#[test]
fn once_explains_a_missing_or_foreign_file() {
    let dir = TempDir::new("missing");
    let missing = dir.path("nope");
    let out = run_once(&missing);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot read the shm file"), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(
        err.contains(&format!("--shm {}", missing.display())),
        "{err}"
    );
    let foreign = dir.path("foreign");
    std::fs::write(&foreign, vec![b'x'; 8192]).unwrap();
    let err = String::from_utf8_lossy(&run_once(&foreign).stderr).into_owned();
    assert!(err.contains("not a Hermes shm file"), "{err}");
    // Without a terminal the live view refuses and points at --once.
    let out = hermes()
        .args(["top", "--shm"])
        .arg(&foreign)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("use `hermes top --once`"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The live view in tmux
// ---------------------------------------------------------------------------------------

/// Set in a writer child's environment to the region's path.
const ENV_WRITER: &str = "HERMES_TOP_TEST_WRITER";
/// The writer child's test name, for `--exact`.
const WRITER_TEST: &str = "top::writer_child";
/// Printed by the writer child once the region is published.
const READY: &str = "HERMES-TOP-WRITER-READY";

/// The writer process: a no-op unless [`ENV_WRITER`] is set. Creates the fixture and
/// republishes it every 50 ms until it is killed (or after a minute, so it can never be
/// left behind).
#[test]
fn writer_child() {
    let Some(path) = std::env::var_os(ENV_WRITER) else {
        return;
    };
    let mut fx = Fixture::create(Path::new(&path));
    println!("{READY}");
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        fx.publish();
    }
}

/// A writer child, killed and reaped on drop.
struct Writer(Child);

impl Writer {
    fn start(path: &Path) -> Writer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([WRITER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(ENV_WRITER, path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains(READY) {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the writer child exited before publishing"
            );
        }
        Writer(child)
    }

    /// SIGKILL, then reap, so the pid is really gone.
    fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Polls the pane until `ok` holds, or fails with the last screen after 10 s.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{s}"
            );
            // Poll interval, not a synchronisation: the condition above decides.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// Line numbers of `symbols` on the screen, in order of appearance.
fn order(screen: &str, symbols: &[&str]) -> Vec<String> {
    let mut found: Vec<(usize, String)> = symbols
        .iter()
        .filter_map(|s| {
            screen
                .lines()
                .position(|l| l.split_whitespace().any(|w| w == *s))
                .map(|i| (i, s.to_string()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, s)| s).collect()
}

#[test]
fn live_view_in_tmux() {
    if !require("tmux", "driving the live view in a terminal") {
        return;
    }
    let dir = TempDir::new("tmux");
    let path = dir.path("shm");
    let writer = Writer::start(&path);
    let pid = writer.0.id();
    let tmux = Tmux {
        socket: format!("hermes-top-test-{}", std::process::id()),
    };
    // The shell keeps the pane after `top` exits so its exit status can be read.
    let cmd = format!(
        "'{}' top --shm '{}'; echo TOP-EXITED-$?; sleep 60",
        env!("CARGO_BIN_EXE_hermes"),
        path.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "40",
        "sh",
        "-c",
        &cmd,
    ]);

    // It draws: header, columns, every row, the stale flag.
    let all = ["BTC-USD", "ETHUSDT", "ETH-USD", "SOLUSDT"];
    let s = tmux.wait_for("the table", |s| {
        all.iter().all(|x| s.contains(x)) && s.contains("alive") && s.contains("UPD/S")
    });
    assert!(s.contains(&format!("writer pid {pid}")), "{s}");
    assert!(s.contains("generation 1"), "{s}");
    assert!(s.contains("STALE"), "{s}");
    assert!(
        s.contains("1.5 × 61837.63") && s.contains("61838 × 0.25"),
        "{s}"
    );

    // Sorting: by symbol (key 2), then by updates/s (key 9) descending (9 again).
    tmux.keys(&["2"]);
    tmux.wait_for("symbol order", |s| {
        order(s, &all) == ["BTC-USD", "ETH-USD", "ETHUSDT", "SOLUSDT"]
            && s.contains("sort: SYMBOL ▲")
    });
    tmux.keys(&["9"]);
    tmux.keys(&["9"]);
    tmux.wait_for("updates/s order, descending", |s| {
        // 123.5, 50.0, 7.0, then the never-published row.
        order(s, &all) == ["BTC-USD", "SOLUSDT", "ETHUSDT", "ETH-USD"] && s.contains("UPD/S ▼")
    });

    // Filtering: only matching rows, and the count says so; Esc clears it.
    tmux.keys(&["/", "sol", "Enter"]);
    tmux.wait_for("the filter", |s| {
        s.contains("SOLUSDT") && !s.contains("BTC-USD") && s.contains("1 of 4 instruments")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter cleared", |s| all.iter().all(|x| s.contains(x)));

    // A row's ladder: select the first row (BTC-USD, sorted by updates/s) and open it.
    tmux.keys(&["Down"]);
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the ladder", |s| s.contains("BTC-USD — top 10 levels"));
    assert!(
        s.contains("61837") && s.contains("microprice 61837.97"),
        "{s}"
    );
    tmux.keys(&["Escape"]);
    tmux.wait_for("the ladder closed", |s| !s.contains("top 10 levels"));

    // Pause and resume.
    tmux.keys(&["p"]);
    tmux.wait_for("paused", |s| s.contains("PAUSED"));
    tmux.keys(&["p"]);
    tmux.wait_for("resumed", |s| !s.contains("PAUSED"));

    // A resize redraws at the new size.
    tmux.run(&["resize-window", "-t", "top", "-x", "110", "-y", "30"]);
    tmux.wait_for("the resized table", |s| {
        s.lines().count() <= 30
            && all.iter().all(|x| s.contains(x))
            && s.contains("alive")
            && s.contains("columns hidden: widen the terminal")
    });
    // Cells that are shown are whole, not cut.
    let s = tmux.screen();
    assert!(s.contains("1.5 × 61837.63") && s.contains("STALE"), "{s}");

    // The writer is killed: the header says DEAD instead of freezing.
    writer.kill9();
    tmux.wait_for("the dead writer", |s| {
        s.contains(&format!("DEAD (pid {pid} is gone"))
    });

    // A new writer replaces the file: top reopens it and follows the new generation.
    let writer2 = Writer::start(&path);
    let s = tmux.wait_for("the new writer", |s| {
        s.contains("generation 2") && s.contains("alive")
    });
    assert!(s.contains(&format!("writer pid {}", writer2.0.id())), "{s}");

    // q quits, with status 0 and the terminal restored.
    tmux.keys(&["q"]);
    let s = tmux.wait_for("top to exit", |s| s.contains("TOP-EXITED-"));
    assert!(s.contains("TOP-EXITED-0"), "{s}");
    assert!(!s.contains("UPD/S"), "the alternate screen was left:\n{s}");
}
