//! `hermes` with PostgreSQL: `replay --database-url` killed with SIGKILL mid-run and run
//! again gives exactly the rows of an uninterrupted run (every table, the Binance futures'
//! `funding` and `liquidations` too); a USD-M recording's exact `funding` and
//! `liquidations` rows, replayed twice; `db migrate`; `demo` with its private cluster,
//! twice. The database is a cluster this test process starts and
//! removes (`hermes_persist::local_pg`, the harness every crate's tests share); each test
//! first asks `local_pg::available_or_required`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hermes_persist::local_pg;
use postgres::{Client, NoTls};

use crate::common::{self, fresh_db, run_ok, TempDir};

fn hermes() -> Command {
    let mut c = common::hermes();
    c.env("RUST_LOG", "warn");
    c
}

fn fingerprint(url: &str) -> Vec<(String, i64, String)> {
    common::table_digests(url, true)
}

fn replay_cmd(cap: &Path, url: &str, dir: &TempDir, journal: &str) -> Command {
    let mut c = hermes();
    c.arg("replay")
        .arg(cap)
        .args(["--database-url", url, "--no-pin", "--journal"])
        .arg(dir.path(journal))
        .arg("--shm")
        .arg(dir.path(&format!("{journal}.shm")));
    c
}

/// A USD-M `markPriceUpdate` frame (`@markPrice@1s`).
fn mark_price(sym: &str, ms: i64, mark: &str, index: &str, rate: &str, next_ms: i64) -> String {
    let stream = sym.to_lowercase();
    format!(
        r#"{{"stream":"{stream}@markPrice@1s","data":{{"e":"markPriceUpdate","E":{ms},"s":"{sym}","p":"{mark}","i":"{index}","P":"{mark}","r":"{rate}","T":{next_ms}}}}}"#
    )
}

/// A USD-M `forceOrder` frame: the liquidation order `side` of `filled` at average price
/// `avg` (order price `px`), at `ms`.
fn force_order(sym: &str, ms: i64, side: &str, px: &str, avg: &str, filled: &str) -> String {
    let stream = sym.to_lowercase();
    format!(
        r#"{{"stream":"{stream}@forceOrder","data":{{"e":"forceOrder","E":{},"o":{{"s":"{sym}","S":"{side}","o":"LIMIT","f":"IOC","q":"{filled}","p":"{px}","ap":"{avg}","X":"FILLED","l":"{filled}","z":"{filled}","T":{ms}}}}}}}"#,
        ms + 3
    )
}

/// `src` (a native capture) with Binance USD-M mark price updates and liquidations mixed
/// in: after every 100th record a `markPriceUpdate`, after every 700th a `forceOrder`
/// (received with that record, exchange times from its receive time). Returns the
/// records written.
fn with_futures(src: &Path, dst: &Path) -> i64 {
    use hermes_ingest::capture::{CaptureReader, CaptureWriter, Record, RecordKind};
    let mut r = CaptureReader::open(src).unwrap();
    let mut w = CaptureWriter::create(dst).unwrap();
    let mut n = 0i64;
    let mut k = 0i64;
    while let Some(rec) = r.next_record().unwrap() {
        w.append(&rec).unwrap();
        n += 1;
        k += 1;
        let ms = rec.recv_ts_ns / 1_000_000;
        let mut extra = Vec::new();
        if k % 100 == 0 {
            let rate = format!(
                "{}0.0000{:04}",
                if k % 300 == 0 { "-" } else { "" },
                k % 9973
            );
            extra.push(mark_price(
                "BTCUSDT",
                ms,
                &format!("6{:04}.{:08}", k % 10_000, k),
                &format!("6{:04}.5", k % 10_000),
                &rate,
                (ms / 28_800_000 + 1) * 28_800_000,
            ));
        }
        if k % 700 == 0 {
            let side = if k % 1400 == 0 { "BUY" } else { "SELL" };
            extra.push(force_order(
                "ETHUSDT",
                ms,
                side,
                "2500.10",
                &format!("25{:02}.{:02}", (k / 700) % 100, k % 97),
                &format!("0.{:03}", 1 + (k / 700) % 999),
            ));
        }
        for data in &extra {
            w.append(&Record {
                recv_ts_ns: rec.recv_ts_ns,
                venue: hermes_ingest::Venue::BinanceUsdm,
                kind: RecordKind::Ws,
                conn: 1,
                tag: b"",
                data: data.as_bytes(),
            })
            .unwrap();
            n += 1;
        }
    }
    w.sync().unwrap();
    n
}

#[test]
fn kill_9_mid_replay_then_rerun_loses_and_duplicates_nothing() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("kill");
    let spot = dir.path("spot.hcap");
    run_ok(
        hermes()
            .args(["generate", "--frames", "60000", "--out"])
            .arg(&spot),
    );
    // Binance USD-M mark prices and liquidations throughout: a kill anywhere falls
    // among them too.
    let cap = dir.path("big.hcap");
    let records = with_futures(&spot, &cap);
    assert_eq!(records, 60_000 + 600 + 85);
    // The reference: one uninterrupted run.
    let reference_url = fresh_db("kill_ref");
    let out = run_ok(&mut replay_cmd(&cap, &reference_url, &dir, "jref"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("persisted ("), "{stderr}");
    assert!(stderr.contains("lag 0 bytes"), "{stderr}");
    assert!(
        stderr.contains("funding 600, liquidations 85 ("),
        "{stderr}"
    );
    let want = fingerprint(&reference_url);
    assert_eq!(want[0].1, records, "one raw_events row per frame");
    assert_eq!(
        want.iter()
            .map(|(t, n, _)| (t.as_str(), *n))
            .collect::<Vec<_>>()[4..],
        [("funding", 600), ("liquidations", 85)]
    );
    assert!(want.iter().all(|(_, n, _)| *n > 0), "{want:?}");

    // Killed with SIGKILL once the database shows rows, then run again.
    let url = fresh_db("kill");
    let mut child = replay_cmd(&cap, &url, &dir, "j")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = c
            .query_opt("SELECT count(*) FROM raw_events", &[])
            .ok()
            .flatten()
            .map_or(0, |r| r.get(0));
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no rows appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the replay finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "finished too early");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = fingerprint(&url);
    assert!(
        partial[0].1 < want[0].1,
        "the kill came after everything was written: {partial:?}"
    );
    let out = run_ok(&mut replay_cmd(&cap, &url, &dir, "j"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already present"), "{stderr}");
    assert_eq!(fingerprint(&url), want);
}

/// The rows of `sql` as text (NULL as `-`). `NUMERIC`s show no trailing zeros: the
/// persister writes each at its mantissa's decimals, trimmed.
fn text_rows(c: &mut Client, sql: &str) -> Vec<Vec<String>> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i).unwrap_or_else(|| "-".into()))
                .collect()
        })
        .collect()
}

/// A Binance USD-M recording as `<receive ns> <frame>` lines: a REST depth snapshot,
/// diffs chained by `pu`, mark price updates (a negative funding rate, and a delivery
/// contract's, with `"r":""` and `"T":0`) and liquidations; replayed into PostgreSQL,
/// `funding` and `liquidations` hold exactly its updates and orders, and replaying it
/// again (same journal, then a new one) adds nothing.
#[test]
fn usdm_mark_prices_and_liquidations_are_rows_once() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("usdm");
    // 2026-08-09T00:00:00Z.
    let ms0: i64 = 1_786_233_600_000;
    let next_funding = ms0 + 8 * 3_600_000;
    let depth = |ms: i64, first: u64, last: u64, prev: u64, b: &str, a: &str| {
        format!(
            r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":{},"T":{ms},"s":"BTCUSDT","U":{first},"u":{last},"pu":{prev},"b":[{b}],"a":[{a}]}}}}"#,
            ms + 2
        )
    };
    let frames = [
        format!(
            r#"{{"lastUpdateId":1000,"E":{},"T":{ms0},"bids":[["11780.00","1.000"],["11779.90","2.000"]],"asks":[["11780.10","0.500"],["11781.00","3.000"]]}}"#,
            ms0 + 1
        ),
        // The first diff spans the snapshot (U <= 1000 <= u); then pu = previous u.
        depth(ms0 + 100, 995, 1003, 990, r#"["11780.00","1.500"]"#, ""),
        mark_price(
            "BTCUSDT",
            ms0 + 15,
            "11794.15000000",
            "11784.62659091",
            "0.00038167",
            next_funding,
        ),
        depth(ms0 + 300, 1004, 1008, 1003, "", r#"["11780.10","0.250"]"#),
        force_order("BTCUSDT", ms0 + 40, "SELL", "9910", "9910", "0.014"),
        mark_price(
            "BTCUSDT",
            ms0 + 1_015,
            "11790.00000000",
            "11791.25000000",
            "-0.00012500",
            next_funding,
        ),
        depth(ms0 + 1_100, 1009, 1012, 1008, r#"["11780.05","0.700"]"#, ""),
        force_order("ETHUSDT", ms0 + 1_200, "BUY", "3001.00", "3000.55", "1.500"),
        // A delivery contract: no funding.
        mark_price(
            "BTCUSDT_260925",
            ms0 + 2_000,
            "11900.10000000",
            "11784.60000000",
            "",
            0,
        ),
        // Not filled yet: the order's price, nothing filled.
        force_order("BTCUSDT", ms0 + 2_100, "BUY", "11850.5", "0", "0"),
    ];
    let mut text = String::new();
    for (i, f) in frames.iter().enumerate() {
        // Received 200 ms apart, 7 ms after the exchange's first time.
        let recv_ns = (ms0 + 7 + 200 * i as i64) * 1_000_000;
        text.push_str(&format!("{recv_ns} {f}\n"));
    }
    let cap = dir.path("usdm.jsonl");
    std::fs::write(&cap, text).unwrap();
    let url = fresh_db("usdm");
    let replay = |journal: &str| {
        let mut c = replay_cmd(&cap, &url, &dir, journal);
        c.args(["--venue", "binance-usdm", "--symbol", "BTCUSDT"]);
        let out = run_ok(&mut c);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = replay("j");
    assert!(stderr.contains(": 10 frames,"), "{stderr}");
    assert!(stderr.contains(" 0 errors, 0 gaps,"), "{stderr}");
    assert!(stderr.contains("funding 3, liquidations 3 ("), "{stderr}");
    assert!(stderr.contains("lag 0 bytes"), "{stderr}");

    let mut c = Client::connect(&url, NoTls).unwrap();
    c.batch_execute("SET TIME ZONE 'UTC'").unwrap();
    let stream: String = c
        .query_one("SELECT DISTINCT stream FROM raw_events", &[])
        .unwrap()
        .get(0);
    assert!(stream.starts_with("file-"), "{stream}");
    let funding_sql = "SELECT frame_no::text, venue, symbol, exchange_ts::text, receive_ts::text, \
         mark_px::text, index_px::text, funding_rate::text, next_funding_time::text \
         FROM funding ORDER BY frame_no";
    let liquidations_sql = "SELECT frame_no::text, venue, symbol, side, price::text, qty::text, \
         exchange_ts::text, receive_ts::text FROM liquidations ORDER BY frame_no";
    let row = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let funding = text_rows(&mut c, funding_sql);
    assert_eq!(
        funding,
        [
            row(&[
                "2",
                "binance-usdm",
                "BTCUSDT",
                "2026-08-09 00:00:00.015+00",
                "2026-08-09 00:00:00.407+00",
                "11794.15",
                "11784.62659091",
                "0.00038167",
                "2026-08-09 08:00:00+00",
            ]),
            row(&[
                "5",
                "binance-usdm",
                "BTCUSDT",
                "2026-08-09 00:00:01.015+00",
                "2026-08-09 00:00:01.007+00",
                "11790",
                "11791.25",
                "-0.000125",
                "2026-08-09 08:00:00+00",
            ]),
            row(&[
                "8",
                "binance-usdm",
                "BTCUSDT_260925",
                "2026-08-09 00:00:02+00",
                "2026-08-09 00:00:01.607+00",
                "11900.1",
                "11784.6",
                "-",
                "-",
            ]),
        ]
    );
    let liquidations = text_rows(&mut c, liquidations_sql);
    assert_eq!(
        liquidations,
        [
            row(&[
                "4",
                "binance-usdm",
                "BTCUSDT",
                "sell",
                "9910",
                "0.014",
                "2026-08-09 00:00:00.04+00",
                "2026-08-09 00:00:00.807+00",
            ]),
            row(&[
                "7",
                "binance-usdm",
                "ETHUSDT",
                "buy",
                "3000.55",
                "1.5",
                "2026-08-09 00:00:01.2+00",
                "2026-08-09 00:00:01.407+00",
            ]),
            row(&[
                "9",
                "binance-usdm",
                "BTCUSDT",
                "buy",
                "11850.5",
                "0",
                "2026-08-09 00:00:02.1+00",
                "2026-08-09 00:00:01.807+00",
            ]),
        ]
    );
    // Every row carries the journal position of its frame.
    let positions: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT stream, frame_no FROM funding UNION ALL \
             SELECT stream, frame_no FROM liquidations) p \
             JOIN raw_events r USING (stream, frame_no) \
             WHERE r.event_type IN ('markPriceUpdate', 'forceOrder')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(positions, 6);
    // The diffs chained on the snapshot: the book is live, never stale.
    let tob = text_rows(
        &mut c,
        "SELECT bid_px::text, bid_qty::text, ask_px::text, ask_qty::text, stale::text \
         FROM top_of_book WHERE symbol = 'BTCUSDT' ORDER BY ts DESC LIMIT 1",
    );
    assert_eq!(tob, [row(&["11780.05", "0.7", "11780.1", "0.25", "false"])]);
    let before = fingerprint(&url);
    assert_eq!(before[0].1, frames.len() as i64);
    let content = common::table_digests(&url, false);
    assert_eq!(content[4..].iter().map(|t| t.1).collect::<Vec<_>>(), [3, 3]);

    // Replayed again, into the same journal and into a new one: nothing new.
    for journal in ["j", "j2"] {
        let stderr = replay(journal);
        assert!(
            stderr.contains("rows: raw_events 0, trades 0, book_snapshots 0, top_of_book 0, funding 0, liquidations 0 ("),
            "{stderr}"
        );
        assert_eq!(fingerprint(&url), before);
        assert_eq!(common::table_digests(&url, false), content);
        assert_eq!(text_rows(&mut c, funding_sql), funding);
        assert_eq!(text_rows(&mut c, liquidations_sql), liquidations);
    }
}

#[test]
fn sigint_flushes_everything_journaled() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("sigint");
    let cap = dir.path("paced.hcap");
    // 1 ms apart: a minute of frames at recorded speed; SIGINT comes long before that.
    run_ok(
        hermes()
            .args(["generate", "--frames", "60000", "--out"])
            .arg(&cap),
    );
    let url = fresh_db("sigint");
    let child = replay_cmd(&cap, &url, &dir, "j")
        .args(["--speed", "realtime"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .query_opt("SELECT count(*) FROM raw_events", &[])
        .ok()
        .flatten()
        .map_or(0, |r| r.get::<_, i64>(0))
        == 0
    {
        assert!(Instant::now() < deadline, "no rows appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An interrupted replay says so and fails, after flushing what it replayed.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by a signal after"), "{stderr}");
    assert!(stderr.contains("lag 0 bytes"), "{stderr}");
    // Every journaled frame is in the database, once.
    let mut journaled = 0i64;
    for e in std::fs::read_dir(dir.path("j")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "hcap") {
            let mut r = hermes_ingest::capture::CaptureReader::open(&p).unwrap();
            while r.next_record().unwrap().is_some() {
                journaled += 1;
            }
        }
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM raw_events", &[])
        .unwrap()
        .get(0);
    assert!(journaled > 0 && journaled < 60_000, "{journaled}");
    assert_eq!(n, journaled);
}

#[test]
fn db_migrate_is_idempotent() {
    if !local_pg::available_or_required() {
        return;
    }
    let url = fresh_db("cli_migrate");
    let out = run_ok(hermes().args(["db", "migrate", "--database-url", &url]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "applied migrations [1, 2, 3, 4, 5]"
    );
    let out = run_ok(hermes().args(["db", "migrate"]).env("DATABASE_URL", &url));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "schema up to date"
    );
    let out = hermes()
        .args([
            "db",
            "migrate",
            "--database-url",
            "host=/nonexistent port=1 dbname=x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migrating the schema"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the demo's cluster (left running for `psql` by design) when the test ends.
struct DemoCluster(PathBuf);

impl Drop for DemoCluster {
    fn drop(&mut self) {
        let pidfile = self.0.join("data/postmaster.pid");
        let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        else {
            return;
        };
        // SAFETY: signalling the demo's postmaster, whose pid its data directory names.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn demo_starts_its_own_postgres_and_running_it_twice_adds_no_rows() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("persist-demo");
    let _cluster = DemoCluster(dir.path("pg"));
    let demo = || {
        run_ok(
            hermes()
                .args(["demo", "--frames", "20000", "--no-pin", "--dir"])
                .arg(&dir.0)
                .arg("--shm")
                .arg(dir.path("demo-shm")),
        )
    };
    let first = String::from_utf8_lossy(&demo().stdout).into_owned();
    assert!(first.contains("Demo done: 20000 frames"), "{first}");
    assert!(first.contains("SYN2USDT"), "{first}");
    assert!(first.contains("raw_events           20000"), "{first}");
    assert!(first.contains("psql \"host="), "{first}");
    assert!(first.contains("shm dump"), "{first}");
    let rows = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| {
                hermes_persist::TABLES
                    .iter()
                    .any(|t| l.trim_start().starts_with(t))
            })
            .map(str::to_string)
            .collect()
    };
    let second = String::from_utf8_lossy(&demo().stdout).into_owned();
    assert_eq!(rows(&first).len(), 6, "{first}");
    // The sample has every venue: the futures' mark prices and liquidations are rows.
    for table in ["funding", "liquidations"] {
        let n: u64 = rows(&first)
            .iter()
            .find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w[0] == table).then(|| w[1].parse().unwrap())
            })
            .unwrap();
        assert!(n > 0, "{table}: {first}");
    }
    assert!(
        first.contains("SYN2USD_PERP") && first.contains("coinbase-exchange"),
        "{first}"
    );
    assert_eq!(rows(&first), rows(&second), "{second}");
}

/// Issue 11 item 1 from the CLI: a replay whose journal disk fills ends non-zero naming
/// the directory and how many frames were not kept; every other frame is a row.
#[test]
fn a_full_journal_disk_ends_the_replay_non_zero_with_the_count() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("diskfull-cli");
    let Some(fs) = common::Tmpfs::mount(dir.path("small"), 768) else {
        return;
    };
    let cap = dir.path("s.hcap");
    run_ok(
        hermes()
            .args(["generate", "--frames", "20000", "--out"])
            .arg(&cap),
    );
    let url = fresh_db("diskfull_cli");
    let journal = fs.0.join("journal");
    let out = hermes()
        .arg("replay")
        .arg(&cap)
        .args(["--database-url", &url, "--no-pin", "--journal"])
        .arg(&journal)
        .arg("--shm")
        .arg(dir.path("shm"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let needle = "frames were NOT kept: the journal ";
    let at = stderr.find(needle).unwrap_or_else(|| panic!("{stderr}"));
    let n: i64 = stderr[..at]
        .rsplit(' ')
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        stderr[at..].contains(&journal.display().to_string()),
        "{stderr}"
    );
    assert!(n > 0 && n < 20_000, "{n}");
    // The replay still published every frame to shm.
    assert!(stderr.contains(": 20000 frames,"), "{stderr}");
    let mut c = Client::connect(&url, NoTls).unwrap();
    let rows: i64 = c
        .query_one("SELECT count(*) FROM raw_events", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows + n, 20_000, "{stderr}");
}

/// Issue 11 item 11: a database that does not exist was retried forever, as if the
/// server were down. It is refused at once, before anything is replayed.
#[test]
fn a_missing_database_is_refused_at_once() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("nodb");
    let cap = dir.path("s.hcap");
    run_ok(
        hermes()
            .args(["generate", "--frames", "100", "--out"])
            .arg(&cap),
    );
    let url = fresh_db("nodb_exists");
    let missing: Vec<&str> = url
        .split(' ')
        .map(|kv| {
            if kv.starts_with("dbname=") {
                "dbname=no_such_database"
            } else {
                kv
            }
        })
        .collect();
    let missing = missing.join(" ");
    assert_ne!(missing, url, "the test URL form changed: {url}");
    let out = replay_cmd(&cap, &missing, &dir, "j").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("can never be reached"), "{stderr}");
    assert!(stderr.contains("no_such_database"), "{stderr}");
    assert!(
        !stderr.contains("replayed "),
        "refused before replaying: {stderr}"
    );
}
