//! End-to-end tests of the `hermes` binary: replay into a real shm file, read it back from
//! separate processes (`hermes shm dump`, the Python reader), and check the books against
//! an independent Python reference.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{generate, hermes, require, run_ok, shared_captures, workspace, TempDir};

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn replay(file: &Path, shm: &Path, extra: &[&str]) -> (Vec<String>, String) {
    let out = run_ok(
        hermes()
            .arg("replay")
            .arg(file)
            .arg("--shm")
            .arg(shm)
            .arg("--print-final")
            .args(extra),
    );
    (
        lines(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Drops the engine-only fields (and the derivatives, which the reference does not
/// compute) so a line compares with the reference's.
fn book_fields(line: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["seq", "updates", "stale", "derivs", "liquidations"] {
        o.remove(k);
    }
    serde_json::to_string(&v).unwrap()
}

fn reference(file: &Path) -> Vec<String> {
    let script = workspace().join("tools/tests/reference/book_reference.py");
    let out = run_ok(Command::new("python3").arg(script).arg(file));
    let mut l: Vec<String> = lines(&out).iter().map(|l| book_fields(l)).collect();
    l.sort();
    l
}

fn engine_books(lines: &[String]) -> Vec<String> {
    let mut l: Vec<String> = lines.iter().map(|l| book_fields(l)).collect();
    l.sort();
    l
}

#[test]
fn print_final_shm_dump_and_python_reader_agree() {
    let dir = TempDir::new("agree");
    let cap = generate(&dir, "s.hcap", &["--frames", "30000", "--instruments", "4"]);
    let shm = dir.path("shm");
    let (fin, stderr) = replay(&cap, &shm, &[]);
    assert_eq!(fin.len(), 8, "4 instruments on each venue");
    assert!(stderr.contains("30000 frames"), "{stderr}");
    assert!(stderr.contains(" 0 errors, 0 gaps"), "{stderr}");
    // A separate process reads the shm file.
    let dump = lines(&run_ok(
        hermes().args(["shm", "dump"]).arg(&shm).arg("--json"),
    ));
    assert_eq!(dump, fin);
    let human = String::from_utf8(run_ok(hermes().args(["shm", "dump"]).arg(&shm)).stdout).unwrap();
    assert!(
        human.contains("closed (the writer exited cleanly") && human.contains("SYN3USDT"),
        "{human}"
    );
    if require("python3", "the Python shm reader") {
        let py = lines(&run_ok(
            Command::new("python3")
                .arg(workspace().join("shm/python/hermes_shm.py"))
                .arg(&shm),
        ));
        assert_eq!(py, fin);
    }
    // Every line is a full book: ten levels each side, best first.
    for l in &fin {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["bids"].as_array().unwrap().len(), 10, "{l}");
        assert_eq!(v["asks"].as_array().unwrap().len(), 10, "{l}");
        assert_eq!(v["stale"], false);
    }
}

#[test]
fn replaying_twice_gives_identical_books_and_shm() {
    let dir = TempDir::new("twice");
    let cap = generate(&dir, "s.hcap", &["--frames", "20000", "--seed", "11"]);
    let (a, _) = replay(&cap, &dir.path("shm-a"), &[]);
    let (b, _) = replay(
        &cap,
        &dir.path("shm-b"),
        &["--idle", "spin-yield", "--ring-capacity", "64"],
    );
    assert_eq!(a, b);
    let da = run_ok(
        hermes()
            .args(["shm", "dump", "--json"])
            .arg(dir.path("shm-a")),
    );
    let db = run_ok(
        hermes()
            .args(["shm", "dump", "--json"])
            .arg(dir.path("shm-b")),
    );
    assert_eq!(da.stdout, db.stdout);
    // The same seed generates the same file, byte for byte.
    let again = generate(&dir, "again.hcap", &["--frames", "20000", "--seed", "11"]);
    let (x, y) = (std::fs::read(&cap).unwrap(), std::fs::read(&again).unwrap());
    assert_eq!(
        x[32..],
        y[32..],
        "records equal (the header holds a creation time)"
    );
}

#[test]
fn synthetic_books_match_the_independent_reference() {
    if !require("python3", "the Python reference book builder") {
        return;
    }
    let dir = TempDir::new("ref");
    for (name, args) in [
        (
            "cb.jsonl",
            &["--venues", "coinbase", "--instruments", "3"][..],
        ),
        (
            "bn.jsonl",
            &["--venues", "binance", "--instruments", "1"][..],
        ),
        (
            "usdm.jsonl",
            &["--venues", "binance-usdm", "--instruments", "1"][..],
        ),
        (
            "coinm.jsonl",
            &["--venues", "binance-coinm", "--instruments", "1"][..],
        ),
        (
            "cbx.jsonl",
            &["--venues", "coinbase-exchange", "--instruments", "3"][..],
        ),
    ] {
        let mut a = vec!["--frames", "30000", "--jsonl"];
        a.extend_from_slice(args);
        let f = generate(&dir, name, &a);
        let (fin, stderr) = replay(&f, &dir.path("shm"), &[]);
        assert!(!fin.is_empty());
        assert!(stderr.contains(" 0 errors, 0 gaps"), "{name}: {stderr}");
        assert_eq!(engine_books(&fin), reference(&f), "{name}");
    }
}

#[test]
fn every_venue_generates_frames_that_replay_without_errors_or_gaps() {
    let dir = TempDir::new("venues");
    let cap = generate(
        &dir,
        "all.hcap",
        &[
            "--frames",
            "40000",
            "--instruments",
            "3",
            "--venues",
            "coinbase,binance,binance-usdm,binance-coinm,coinbase-exchange",
        ],
    );
    let (fin, stderr) = replay(&cap, &dir.path("shm"), &[]);
    assert!(stderr.contains(" 0 errors, 0 gaps"), "{stderr}");
    assert_eq!(fin.len(), 15, "{fin:?}");
    for (venue, symbol) in [
        ("binance-usdm", "SYN2USDT"),
        ("binance-coinm", "SYN2USD_PERP"),
        ("coinbase-exchange", "SYN2-USD"),
    ] {
        let line = format!("{{\"venue\":\"{venue}\",\"symbol\":\"{symbol}\"");
        assert!(fin.iter().any(|l| l.starts_with(&line)), "{line}: {fin:?}");
    }
    // A JSON lines file holds one venue, and Binance REST snapshots of one symbol.
    for (venues, instruments, says) in [
        ("coinbase,coinbase-exchange", "1", "one venue per file"),
        ("binance-usdm", "2", "--venues binance-usdm --instruments 1"),
    ] {
        let out = hermes()
            .args(["generate", "--jsonl", "--frames", "10", "--venues", venues])
            .args(["--instruments", instruments, "--out"])
            .arg(dir.path("x.jsonl"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{err}");
    }
}

#[test]
fn real_captures_match_the_independent_reference() {
    let Some(captures) = shared_captures() else {
        return;
    };
    if !require("python3", "the Python reference book builder") {
        return;
    }
    let dir = TempDir::new("real");
    let mut checked = 0;
    for name in [
        "coinbase-advtrade-btcusd-ethusd-20260809.ndjson",
        "binance-spot-btcusdt-20240808.txt",
        "binance-spot-ethusdt-20240808.txt.gz",
        "binance-spot-10symbols-bookticker-aggtrade.cryptofeed.txt",
        "binance-spot-3symbols-depth-aggtrade.cryptofeed.txt",
        "binance-usdm-btcusdt-20240808.txt.gz",
        "binance-usdm-btcusdt-20240718.txt.gz",
        "binance-usdm-ethusdt-20240718.txt.gz",
        "binance-coinm-btcusd_perp-20240808.txt.gz",
        "coinbase-exchange-legacy-10products-20210417.cryptofeed.txt",
    ] {
        let f = captures.join(name);
        if !f.exists() {
            continue;
        }
        let (fin, stderr) = replay(&f, &dir.path("shm"), &[]);
        assert!(stderr.contains(" 0 errors, 0 gaps"), "{name}: {stderr}");
        let want = reference(&f);
        assert!(!want.is_empty(), "{name}: reference produced nothing");
        assert_eq!(engine_books(&fin), want, "{name}");
        checked += 1;
    }
    // The cryptofeed v3 recording (zstd, format 2) holds the same frames as the ndjson.
    let zst = captures.join("coinbase-advtrade-btcusd-ethusd-20260809.cryptofeed-v3.jsonl.zst");
    let nd = captures.join("coinbase-advtrade-btcusd-ethusd-20260809.ndjson");
    if zst.exists() && nd.exists() {
        let (a, _) = replay(&zst, &dir.path("shm"), &[]);
        let (b, _) = replay(&nd, &dir.path("shm"), &[]);
        assert_eq!(a, b);
        checked += 1;
    }
    eprintln!("{checked} real captures checked");
}

fn cb_frame(seq: u64, kind: &str, product: &str, levels: &[(&str, &str, &str)]) -> String {
    let ups: Vec<String> = levels
        .iter()
        .map(|(s, p, q)| {
            format!(
                r#"{{"side":"{s}","event_time":"2026-08-09T21:05:48.1Z","price_level":"{p}","new_quantity":"{q}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"channel":"l2_data","timestamp":"2026-08-09T21:05:48.2Z","sequence_num":{seq},"events":[{{"type":"{kind}","product_id":"{product}","updates":[{}]}}]}}"#,
        ups.join(",")
    )
}

#[test]
fn malformed_frames_are_counted_and_reported_and_replay_goes_on() {
    let dir = TempDir::new("bad");
    let f = dir.path("bad.jsonl");
    let snap = cb_frame(
        0,
        "snapshot",
        "BTC-USD",
        &[("bid", "100.5", "1"), ("offer", "101", "2")],
    );
    let good = cb_frame(6, "update", "BTC-USD", &[("bid", "100.75", "3")]);
    let text = [
        snap.clone(),
        snap[..snap.len() / 2].to_string(), // truncated JSON
        cb_frame(1, "update", "BTC-USD", &[("bid", "100.5", "0.000000001")]), // too many decimals
        cb_frame(
            2,
            "update",
            "BTC-USD",
            &[("bid", "99999999999999999999", "1")],
        ), // absurd number
        r#"{"channel":"l2_data","sequence_num":"three","events":[]}"#.to_string(), // wrong type
        r#"{"channel":"mystery","sequence_num":4,"events":[]}"#.to_string(), // unknown channel
        "\u{1}\u{2}garbage\u{7f}".to_string(), // binary garbage
        cb_frame(
            5,
            "update",
            "BTC-USD",
            &[("bid", "100.6", "1"), ("offer", "oops", "1")],
        ), // bad last level
        good,
    ]
    .join("\n");
    std::fs::write(&f, text).unwrap();
    let (fin, stderr) = replay(&f, &dir.path("shm"), &["--venue", "coinbase"]);
    assert!(
        stderr.contains("9 frames") || stderr.contains("8 frames"),
        "{stderr}"
    );
    assert!(stderr.contains(" 7 errors"), "{stderr}");
    for needle in [
        "line 2",
        "line 3 frame (coinbase): bad number: more than 8 significant decimals in field `new_quantity`",
        "in field `price_level`",
        "in field `sequence_num`",
        "unknown message type in field `channel`",
        "bad.jsonl:7: skipped: not a JSON frame",
        "line 8",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert_eq!(fin.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&fin[0]).unwrap();
    // Only the snapshot and the last good frame were applied: nothing of the bad frames.
    assert_eq!(
        v["bids"],
        serde_json::json!([["100.75", "3"], ["100.5", "1"]])
    );
    assert_eq!(v["asks"], serde_json::json!([["101", "2"]]));
    assert_eq!(v["seq"], 6);
    // Rejected level-2 frames consumed sequence numbers: the book is marked stale.
    assert_eq!(v["stale"], true);
}

#[test]
fn a_gap_marks_the_book_stale_until_a_new_snapshot() {
    let dir = TempDir::new("gap");
    let f = dir.path("gap.jsonl");
    let mut frames = vec![
        cb_frame(
            0,
            "snapshot",
            "ETH-USD",
            &[("bid", "10", "1"), ("offer", "11", "1")],
        ),
        cb_frame(1, "update", "ETH-USD", &[("bid", "10.5", "2")]),
        cb_frame(1, "update", "ETH-USD", &[("bid", "10.25", "9")]), // duplicate: skipped
        cb_frame(3, "update", "ETH-USD", &[("bid", "10.6", "1")]),  // 2 is missing: gap
    ];
    std::fs::write(&f, frames.join("\n")).unwrap();
    let (fin, stderr) = replay(&f, &dir.path("shm"), &[]);
    assert!(
        stderr.contains("1 gaps") && stderr.contains("1 stale/duplicate"),
        "{stderr}"
    );
    assert!(stderr.contains("stale at the end"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&fin[0]).unwrap();
    assert_eq!(v["stale"], true);
    let dump = lines(&run_ok(
        hermes()
            .args(["shm", "dump", "--json"])
            .arg(dir.path("shm")),
    ));
    assert_eq!(dump, fin, "the stale flag is in shm too");
    // A new snapshot rebuilds the book and clears the flag.
    frames.push(cb_frame(
        4,
        "snapshot",
        "ETH-USD",
        &[("bid", "12", "1"), ("offer", "13", "1")],
    ));
    std::fs::write(&f, frames.join("\n")).unwrap();
    let (fin, stderr) = replay(&f, &dir.path("shm"), &[]);
    assert!(stderr.contains("1 resyncs"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&fin[0]).unwrap();
    assert_eq!(v["stale"], false);
    assert_eq!(v["bids"], serde_json::json!([["12", "1"]]));
}

#[test]
fn a_torn_capture_tail_is_reported_and_the_rest_replayed() {
    let dir = TempDir::new("torn");
    let cap = generate(&dir, "s.hcap", &["--frames", "5000"]);
    let (whole, _) = replay(&cap, &dir.path("shm"), &[]);
    let len = std::fs::metadata(&cap).unwrap().len();
    let mut bytes = std::fs::read(&cap).unwrap();
    bytes.extend_from_slice(&[200, 1, 0, 0, 9, 9, 9]);
    std::fs::write(&cap, &bytes).unwrap();
    let (fin, stderr) = replay(&cap, &dir.path("shm"), &[]);
    assert!(
        stderr.contains(&format!("torn or corrupt tail at byte {len}")),
        "{stderr}"
    );
    assert_eq!(fin, whole);
}

/// Issue 11 item 2: 4 bytes of 0xff in the middle of a 20,000-frame capture replayed
/// 9,925 frames and exited 0. Now the reader resynchronizes at the next valid record:
/// one record is lost, reported with its offsets, and the rest is replayed.
#[test]
fn damage_in_the_middle_of_a_capture_is_skipped_and_the_rest_replayed() {
    let dir = TempDir::new("damage");
    let cap = generate(&dir, "s.hcap", &["--frames", "20000"]);
    let mut offsets = Vec::new();
    let mut r = hermes_ingest::capture::CaptureReader::open(&cap).unwrap();
    loop {
        let at = r.offset();
        if r.next_record().unwrap().is_none() {
            break;
        }
        offsets.push(at);
    }
    assert_eq!(offsets.len(), 20_000);
    let (at, next) = (offsets[10_000], offsets[10_001]);
    let mut bytes = std::fs::read(&cap).unwrap();
    bytes[at as usize + 30..at as usize + 34].copy_from_slice(&[0xff; 4]);
    std::fs::write(&cap, &bytes).unwrap();
    let (_, stderr) = replay(&cap, &dir.path("shm"), &[]);
    assert!(
        stderr.contains(&format!(
            "damaged region at bytes {at}..{next} ({} bytes; checksum mismatch)",
            next - at
        )),
        "{stderr}"
    );
    assert!(stderr.contains(": 19999 frames,"), "{stderr}");
    assert!(!stderr.contains("torn"), "{stderr}");
}

/// Writes `bytes` into a new FIFO from another thread.
fn fifo_with(path: &Path, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    run_ok(std::process::Command::new("mkfifo").arg(path));
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        for chunk in bytes.chunks(4093) {
            if f.write_all(chunk).is_err() {
                return; // the reader went away: the test reports it
            }
        }
    })
}

/// Issue 11 item 11: replay from a FIFO read nothing and exited 0 (`--format auto`
/// consumed the header). Native and JSON-lines inputs through a FIFO give the books of
/// the file, and a gzip-compressed native capture is read as one.
#[test]
fn a_fifo_and_a_compressed_capture_replay_like_the_file() {
    let dir = TempDir::new("fifo");
    let cap = generate(&dir, "s.hcap", &["--frames", "8000"]);
    let (want, _) = replay(&cap, &dir.path("shm"), &[]);
    assert!(!want.is_empty());
    let fifo = dir.path("in.fifo");
    let w = fifo_with(&fifo, std::fs::read(&cap).unwrap());
    let (got, stderr) = replay(&fifo, &dir.path("shm"), &[]);
    w.join().unwrap();
    assert_eq!(got, want, "{stderr}");
    assert!(stderr.contains(": 8000 frames,"), "{stderr}");

    let gz = dir.path("s.hcap.gz");
    let out = run_ok(
        std::process::Command::new("gzip")
            .args(["-k", "-c"])
            .arg(&cap),
    );
    std::fs::write(&gz, &out.stdout).unwrap();
    let (got, stderr) = replay(&gz, &dir.path("shm"), &[]);
    assert_eq!(got, want, "{stderr}");

    // JSON lines through a FIFO, the format told from the first bytes.
    let jsonl = generate(
        &dir,
        "s.jsonl",
        &["--frames", "3000", "--jsonl", "--venues", "coinbase"],
    );
    let (want, _) = replay(&jsonl, &dir.path("shm"), &[]);
    let fifo = dir.path("lines.fifo");
    let w = fifo_with(&fifo, std::fs::read(&jsonl).unwrap());
    let (got, stderr) = replay(&fifo, &dir.path("shm"), &[]);
    w.join().unwrap();
    assert_eq!(got, want, "{stderr}");
    assert!(stderr.contains(": 3000 frames,"), "{stderr}");
}

#[test]
fn clear_errors_for_bad_paths_and_files() {
    let dir = TempDir::new("paths");
    let out = hermes()
        .args(["shm", "dump"])
        .arg(dir.path("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope") && err.contains("No such file"),
        "{err}"
    );
    let junk = dir.path("junk");
    std::fs::write(&junk, vec![0u8; 10_000]).unwrap();
    let out = hermes().args(["shm", "dump"]).arg(&junk).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Hermes shm file"));
    let out = hermes()
        .arg("replay")
        .arg(dir.path("missing.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.jsonl"));
    let out = hermes()
        .args(["replay", "x", "--speed", "fast"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("use max, realtime, or a factor"));
}

#[test]
fn paced_replay_and_demo_run() {
    let dir = TempDir::new("demo");
    let cap = generate(&dir, "s.hcap", &["--frames", "200"]);
    // 200 frames 1 ms apart at 20x: about 10 ms of pacing.
    let (fin, _) = replay(&cap, &dir.path("shm"), &["--speed", "20x"]);
    assert_eq!(fin.len(), 6);
    // The demo (which starts a private PostgreSQL) is tested in the `persist` module.
}

#[test]
fn settings_that_can_never_work_are_refused_at_once() {
    let dir = TempDir::new("refused");
    let cap = dir.path("s.hcap");
    run_ok(
        hermes()
            .args(["generate", "--frames", "100", "--out"])
            .arg(&cap),
    );
    let err = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A database URL of another scheme would be retried forever as if the server were down.
    let e = err(hermes()
        .arg("replay")
        .arg(&cap)
        .args(["--database-url", "mysql://u@h/db", "--shm"])
        .arg(dir.path("shm")));
    assert!(e.contains("is not a PostgreSQL URL"), "{e}");
    // An empty API key would silently serve without one.
    let e = err(hermes()
        .env("API_KEY", "")
        .args(["serve", "--http", "127.0.0.1:0", "--shm"])
        .arg(dir.path("shm")));
    assert!(e.contains("API_KEY (--api-key) is set but empty"), "{e}");
    // Zero slots is an error that names the flag, not a silent one-slot file.
    let e = err(hermes()
        .arg("replay")
        .arg(&cap)
        .args(["--shm-slots", "0", "--shm"])
        .arg(dir.path("shm")));
    assert!(e.contains("--shm-slots"), "{e}");
    // Webhook symbols must fit beside the venues' instruments, so they can never take
    // a venue's slot.
    let e = err(hermes()
        .args(["run", "--shm-slots", "4", "--http", "127.0.0.1:0", "--shm"])
        .arg(dir.path("shm"))
        .env("COINBASE_PRODUCTS", "A-USD,B-USD,C-USD")
        .env("INGEST_USERNAME", "u")
        .env("INGEST_PASSWORD", "p"));
    assert!(e.contains("do not fit 4 shm slots"), "{e}");
}
