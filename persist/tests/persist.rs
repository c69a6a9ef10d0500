//! The persister against a real PostgreSQL cluster that the test process starts and
//! removes (`hermes_persist::local_pg`): exact row contents, idempotent re-writes,
//! recovery of an unwritten journal with a torn tail, a database outage, and a row the
//! schema refuses. Without PostgreSQL each test returns early with a note, or fails under
//! `HERMES_REQUIRE_ALL=1` (`local_pg::available_or_required`).

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hermes_ingest::{Frame, FrameKind, FrameTap, Venue};
use hermes_persist::local_pg::{self, OwnedCluster};
use hermes_persist::{start, PersistError, PersistOptions, PersistTap};
use postgres::{Client, NoTls};

/// 2026-08-09T00:00:00Z in Unix ns.
const T0: i64 = 1_786_233_600_000_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("hermes-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh database in the test process's cluster, or `None` when PostgreSQL is missing
/// here: the test returns early after a note, or fails under `HERMES_REQUIRE_ALL=1`
/// (`local_pg::available_or_required`).
fn db(prefix: &str) -> Option<String> {
    if !local_pg::available_or_required() {
        return None;
    }
    let pg = local_pg::shared().expect("the test cluster");
    Some(pg.fresh_database(prefix).unwrap())
}

fn opts(url: &str, dir: &TempDir) -> PersistOptions {
    let mut o = PersistOptions::new(url, dir.0.join("journal"));
    o.stream = Some("test-input".into());
    o.batch_rows = 64;
    o.batch_age = Duration::from_millis(20);
    o.retry_min = Duration::from_millis(20);
    o.retry_max = Duration::from_millis(200);
    o.drain_timeout = Duration::from_secs(20);
    o
}

fn query_i64(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn strings(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A test input: Binance REST snapshot, depth diffs, trades and a bookTicker for
/// BTCUSDT; a Coinbase snapshot, updates and trades for BTC-USD; Binance USD-M mark
/// price updates and liquidations for BTCUSDT.
struct Input {
    /// `funding` rows in frame order: (mark_px, funding_rate) as text.
    funding: Vec<(String, String)>,
    /// `liquidations` rows in frame order: (side, price, qty) as text.
    liquidations: Vec<(&'static str, String, String)>,
    frames: Vec<(Venue, Option<&'static str>, String)>,
    /// (venue, symbol, trade id, price text, size text, side).
    trades: Vec<(
        &'static str,
        &'static str,
        i64,
        String,
        String,
        &'static str,
    )>,
}

fn bn_trade(id: i64, px: &str, qty: &str, ms: i64, maker: bool) -> String {
    format!(
        r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{ms},"s":"BTCUSDT","t":{id},"p":"{px}","q":"{qty}","T":{ms},"m":{maker},"M":true}}}}"#
    )
}

/// A decimal as PostgreSQL shows the `NUMERIC` the persister writes for it (8 decimals,
/// trailing zeros dropped).
fn exact(text: &str) -> String {
    hermes_book::Decimal::new(hermes_book::parse_decimal(text.as_bytes(), 8).unwrap(), 8)
        .to_string()
}

fn input(n_trades: usize) -> Input {
    let ms0 = T0 / 1_000_000;
    let mut frames = Vec::new();
    let mut trades = Vec::new();
    let (mut funding, mut liquidations) = (Vec::new(), Vec::new());
    frames.push((
        Venue::Binance,
        Some("BTCUSDT"),
        r#"{"lastUpdateId":100,"bids":[["61837.62000000","1.50000000"],["61837.00000000","2.00000000"]],"asks":[["61837.63000000","0.25000000"],["61840.00000000","3.00000000"]]}"#.to_string(),
    ));
    frames.push((
        Venue::Coinbase,
        None,
        r#"{"channel":"l2_data","client_id":"","timestamp":"2026-08-09T00:00:00.000000001Z","sequence_num":0,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2026-08-09T00:00:00Z","price_level":"65062.5","new_quantity":"0.00583"},{"side":"offer","event_time":"2026-08-09T00:00:00Z","price_level":"65063","new_quantity":"1.2"}]}]}"#
        .to_string(),
    ));
    let mut cb_seq = 1;
    for i in 0..n_trades {
        let id = 3_735_683_259 + i as i64;
        let px = format!("61837.{:02}000000", 60 + (i % 7));
        let qty = format!("0.{:03}00000", 1 + i % 50);
        frames.push((
            Venue::Binance,
            None,
            bn_trade(id, &px, &qty, ms0 + i as i64, i % 2 == 0),
        ));
        trades.push((
            "binance",
            "BTCUSDT",
            id,
            hermes_book::Decimal::new(hermes_book::parse_decimal(px.as_bytes(), 8).unwrap(), 8)
                .to_string(),
            hermes_book::Decimal::new(hermes_book::parse_decimal(qty.as_bytes(), 8).unwrap(), 8)
                .to_string(),
            if i % 2 == 0 { "sell" } else { "buy" },
        ));
        let u = 101 + i as u64;
        frames.push((
            Venue::Binance,
            None,
            format!(
                r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":{},"s":"BTCUSDT","U":{u},"u":{u},"b":[["61837.{:02}000000","{}.5"]],"a":[]}}}}"#,
                ms0 + i as i64,
                10 + i % 50,
                i % 3
            ),
        ));
        if i % 5 == 0 {
            let cid = 900_000 + i as i64;
            frames.push((
                Venue::Coinbase,
                None,
                format!(
                    r#"{{"channel":"market_trades","client_id":"","timestamp":"2026-08-09T00:00:01.5Z","sequence_num":{cb_seq},"events":[{{"type":"update","trades":[{{"trade_id":"{cid}","product_id":"BTC-USD","price":"65062.50","size":"0.00000001","side":"BUY","time":"2026-08-09T00:00:01.25Z"}}]}}]}}"#
                ),
            ));
            cb_seq += 1;
            trades.push((
                "coinbase",
                "BTC-USD",
                cid,
                "65062.5".into(),
                "0.00000001".into(),
                "buy",
            ));
            frames.push((
                Venue::Coinbase,
                None,
                format!(
                    r#"{{"channel":"l2_data","client_id":"","timestamp":"2026-08-09T00:00:02Z","sequence_num":{cb_seq},"events":[{{"type":"update","product_id":"BTC-USD","updates":[{{"side":"offer","event_time":"2026-08-09T00:00:02Z","price_level":"65063","new_quantity":"{}"}}]}}]}}"#,
                    1 + i
                ),
            ));
            cb_seq += 1;
        }
        if i % 25 == 0 {
            let mark = format!("61837.{:08}", 12_345 + i);
            let rate = format!("{}0.000{:05}", if i % 50 == 0 { "-" } else { "" }, 100 + i);
            frames.push((
                Venue::BinanceUsdm,
                None,
                format!(
                    r#"{{"stream":"btcusdt@markPrice@1s","data":{{"e":"markPriceUpdate","E":{},"s":"BTCUSDT","p":"{mark}","i":"61836.50000000","P":"{mark}","r":"{rate}","T":{}}}}}"#,
                    ms0 + i as i64,
                    ms0 + 28_800_000
                ),
            ));
            funding.push((exact(&mark), exact(&rate)));
        }
        if i % 60 == 30 {
            let side = if i % 120 == 30 { "SELL" } else { "BUY" };
            let (px, qty) = (
                format!("6180{}.50000000", i % 10),
                format!("0.{:08}", 1 + i),
            );
            frames.push((
                Venue::BinanceUsdm,
                None,
                format!(
                    r#"{{"stream":"btcusdt@forceOrder","data":{{"e":"forceOrder","E":{0},"o":{{"s":"BTCUSDT","S":"{side}","o":"LIMIT","f":"IOC","q":"{qty}","p":"61000","ap":"{px}","X":"FILLED","l":"{qty}","z":"{qty}","T":{0}}}}}}}"#,
                    ms0 + i as i64
                ),
            ));
            liquidations.push((
                if side == "SELL" { "sell" } else { "buy" },
                exact(&px),
                exact(&qty),
            ));
        }
    }
    Input {
        funding,
        liquidations,
        frames,
        trades,
    }
}

/// `funding` and `liquidations` hold exactly the input's updates and orders, in order
/// (of exchange time: the tests that write their input in two runs reuse the stream id
/// for different records, so record indexes do not follow the input).
fn check_futures(c: &mut Client, inp: &Input) {
    let funding: Vec<(String, String)> = c
        .query(
            "SELECT mark_px::text, funding_rate::text FROM funding
              WHERE venue = 'binance-usdm' AND symbol = 'BTCUSDT' AND index_px = 61836.5
              ORDER BY exchange_ts",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(funding, inp.funding);
    assert_eq!(
        query_i64(c, "SELECT count(*) FROM funding"),
        inp.funding.len() as i64
    );
    let liquidations: Vec<(String, String, String)> = c
        .query(
            "SELECT side, price::text, qty::text FROM liquidations
              WHERE venue = 'binance-usdm' AND symbol = 'BTCUSDT' ORDER BY exchange_ts",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(String, String, String)> = inp
        .liquidations
        .iter()
        .map(|(s, p, q)| (s.to_string(), p.clone(), q.clone()))
        .collect();
    assert_eq!(liquidations, want);
    assert_eq!(
        query_i64(c, "SELECT count(*) FROM liquidations"),
        inp.liquidations.len() as i64
    );
}

fn feed(tap: &mut PersistTap, frames: &[(Venue, Option<&'static str>, String)], first: usize) {
    for (k, (venue, rest, data)) in frames.iter().enumerate() {
        let kind = match rest {
            Some(s) => FrameKind::RestDepth {
                symbol: s.as_bytes(),
            },
            None => FrameKind::Ws,
        };
        tap.frame(&Frame {
            venue: *venue,
            kind,
            conn: 0,
            // 30 ms apart: several snapshot and top-of-book intervals.
            recv_ts_ns: T0 + (first + k) as i64 * 30_000_000,
            data: data.as_bytes(),
        });
    }
}

fn check_trades(c: &mut Client, inp: &Input) {
    let rows = c
        .query(
            "SELECT venue, symbol, trade_id, price::text, size::text, side FROM trades ORDER BY venue, trade_id",
            &[],
        )
        .unwrap();
    let mut want = inp.trades.clone();
    want.sort_by(|a, b| (a.0, a.2).cmp(&(b.0, b.2)));
    assert_eq!(rows.len(), want.len());
    for (r, w) in rows.iter().zip(&want) {
        let got: (String, String, i64, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        assert_eq!(
            got,
            (
                w.0.to_string(),
                w.1.to_string(),
                w.2,
                w.3.clone(),
                w.4.clone(),
                w.5.to_string()
            )
        );
    }
}

#[test]
fn rows_match_the_input_exactly_and_a_second_write_adds_nothing() {
    let Some(url) = db("exact") else {
        return;
    };
    let dir = TempDir::new("exact");
    let inp = input(300);
    let (mut tap, p) = start(opts(&url, &dir)).unwrap();
    feed(&mut tap, &inp.frames, 0);
    drop(tap);
    let rep = p.finish().unwrap();
    assert_eq!(rep.stats.rows_of(0), inp.frames.len() as u64);
    assert_eq!(rep.stats.lag_bytes.load(Relaxed), 0);
    assert_eq!(rep.stats.rows_of(4), inp.funding.len() as u64);
    assert_eq!(rep.stats.rows_of(5), inp.liquidations.len() as u64);
    assert_eq!((inp.funding.len(), inp.liquidations.len()), (12, 5));
    let mut c = Client::connect(&url, NoTls).unwrap();
    check_trades(&mut c, &inp);
    check_futures(&mut c, &inp);
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM raw_events"),
        inp.frames.len() as i64
    );
    // Sequence numbers, channels and event types from the light look.
    let seqs: Vec<String> = strings(
        &mut c,
        "SELECT seq::text FROM raw_events WHERE venue = 'coinbase' ORDER BY frame_no",
    );
    let want: Vec<String> = (0..seqs.len()).map(|s| s.to_string()).collect();
    assert_eq!(seqs, want);
    assert_eq!(
        strings(
            &mut c,
            "SELECT DISTINCT event_type FROM raw_events WHERE venue = 'binance' ORDER BY 1"
        ),
        ["depthSnapshot", "depthUpdate", "trade"]
    );
    assert_eq!(
        query_i64(
            &mut c,
            "SELECT count(*) FROM raw_events WHERE frame->'data'->>'e' = 'trade' AND frame_bytes IS NULL"
        ),
        300
    );
    // The aggressor side follows Binance's buyer-is-maker flag.
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM trades WHERE side = 'sell'"),
        150
    );
    // Book rows: the first snapshot of BTCUSDT is the REST snapshot, exactly.
    let r = c
        .query_one(
            "SELECT bid_px::text, bid_qty::text, ask_px::text, ask_qty::text, update_id
               FROM book_snapshots WHERE symbol = 'BTCUSDT' ORDER BY ts LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "{61837.62,61837}");
    assert_eq!(r.get::<_, String>(1), "{1.5,2}");
    assert_eq!(r.get::<_, String>(2), "{61837.63,61840}");
    assert_eq!(r.get::<_, String>(3), "{0.25,3}");
    assert_eq!(r.get::<_, i64>(4), 100);
    let r = c
        .query_one(
            "SELECT bid_px::text, ask_px::text, spread::text, mid::text
               FROM top_of_book WHERE symbol = 'BTC-USD' ORDER BY ts LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3)
        ),
        (
            "65062.5".into(),
            "65063".into(),
            "0.5".into(),
            "65062.75".into()
        )
    );
    // 30 ms apart over 1 s intervals: about one snapshot per instrument per 33 frames.
    let snaps = query_i64(&mut c, "SELECT count(*) FROM book_snapshots");
    assert!(snaps >= 20, "{snaps} snapshots");
    let tob = query_i64(&mut c, "SELECT count(*) FROM top_of_book");
    assert!(tob > snaps, "{tob} top-of-book rows");
    let counts = [
        query_i64(&mut c, "SELECT count(*) FROM trades"),
        snaps,
        tob,
        query_i64(&mut c, "SELECT count(*) FROM funding"),
        query_i64(&mut c, "SELECT count(*) FROM liquidations"),
    ];

    // The same input again (a re-replay): a new journal segment, nothing new in the
    // tables.
    let (mut tap, p) = start(opts(&url, &dir)).unwrap();
    feed(&mut tap, &inp.frames, 0);
    drop(tap);
    let rep = p.finish().unwrap();
    assert_eq!(
        rep.stats.rows.iter().map(|r| r.load(Relaxed)).sum::<u64>(),
        0
    );
    assert!(rep.stats.duplicate_rows.load(Relaxed) > 0);
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM raw_events"),
        inp.frames.len() as i64
    );
    assert_eq!(
        [
            query_i64(&mut c, "SELECT count(*) FROM trades"),
            query_i64(&mut c, "SELECT count(*) FROM book_snapshots"),
            query_i64(&mut c, "SELECT count(*) FROM top_of_book"),
            query_i64(&mut c, "SELECT count(*) FROM funding"),
            query_i64(&mut c, "SELECT count(*) FROM liquidations"),
        ],
        counts
    );
    check_futures(&mut c, &inp);
    assert_eq!(query_i64(&mut c, "SELECT count(*) FROM ingest_offsets"), 2);
    // Daily partitions were created.
    for t in hermes_persist::TABLES {
        assert!(
            query_i64(
                &mut c,
                &format!("SELECT count(*) FROM pg_inherits WHERE inhparent = '{t}'::regclass")
            ) >= 2,
            "{t}"
        );
    }
}

#[test]
fn unwritten_journal_with_a_torn_tail_is_cut_and_written_on_the_next_start() {
    let Some(url) = db("torn") else {
        return;
    };
    let dir = TempDir::new("torn");
    let inp = input(200);
    let half = inp.frames.len() / 2;
    // First run: the database is unreachable; everything stays in the journal.
    let mut o = opts(
        "host=/nonexistent/socket port=1 user=postgres dbname=x",
        &dir,
    );
    o.drain_timeout = Duration::from_millis(300);
    let (mut tap, p) = start(o).unwrap();
    feed(&mut tap, &inp.frames[..half], 0);
    drop(tap);
    let seg = p.recovery().segment.clone();
    match p.finish() {
        Err(PersistError::Unfinished { lag_bytes }) => assert!(lag_bytes > 0),
        other => panic!("expected Unfinished, got {other:?}"),
    }
    // A crash mid-write leaves half a record.
    let mut bytes = std::fs::read(&seg).unwrap();
    let good = bytes.len() as u64;
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5]);
    std::fs::write(&seg, &bytes).unwrap();

    let (mut tap, p) = start(opts(&url, &dir)).unwrap();
    let torn = &p.recovery().torn;
    assert_eq!(torn.len(), 1);
    assert_eq!(torn[0].1.offset, good);
    assert_eq!(torn[0].1.trailing_bytes, 9);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
    feed(&mut tap, &inp.frames[half..], half);
    drop(tap);
    let rep = p.finish().unwrap();
    assert_eq!(rep.stats.torn_tails.load(Relaxed), 1);
    let mut c = Client::connect(&url, NoTls).unwrap();
    check_trades(&mut c, &inp);
    check_futures(&mut c, &inp);
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM raw_events"),
        inp.frames.len() as i64
    );
}

#[test]
fn postgres_outage_loses_nothing_and_lag_returns_to_zero() {
    if !local_pg::available_or_required() {
        return;
    }
    let cluster = OwnedCluster::start("outage").expect("a local PostgreSQL cluster");
    let mut pg = cluster;
    let url = pg.pg.create_database("hermes").unwrap();
    let dir = TempDir::new("outage");
    let inp = input(400);
    let third = inp.frames.len() / 3;
    let (mut tap, p) = start(opts(&url, &dir)).unwrap();
    let stats = p.stats();
    feed(&mut tap, &inp.frames[..third], 0);
    wait_for("the first rows", Duration::from_secs(30), || {
        stats.rows_of(0) > 0 && stats.lag_bytes.load(Relaxed) == 0
    });
    pg.pg.stop().unwrap();
    feed(&mut tap, &inp.frames[third..2 * third], third);
    wait_for("a failed attempt", Duration::from_secs(30), || {
        stats.retries.load(Relaxed) > 0 && stats.lag_bytes.load(Relaxed) > 0
    });
    assert!(!stats.ready(1000) || stats.lag_bytes.load(Relaxed) > 0);
    assert!(stats.last_error().is_some());
    pg.pg.restart().unwrap();
    feed(&mut tap, &inp.frames[2 * third..], 2 * third);
    wait_for("catching up", Duration::from_secs(30), || {
        stats.lag_bytes.load(Relaxed) == 0 && stats.lag_ms.load(Relaxed) == 0
    });
    drop(tap);
    let rep = p.finish().unwrap();
    assert_eq!(rep.stats.lag_bytes.load(Relaxed), 0);
    let mut c = Client::connect(&url, NoTls).unwrap();
    check_trades(&mut c, &inp);
    check_futures(&mut c, &inp);
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM raw_events"),
        inp.frames.len() as i64
    );
    assert_eq!(
        query_i64(&mut c, "SELECT count(DISTINCT frame_no) FROM raw_events"),
        inp.frames.len() as i64
    );
}

#[test]
fn a_row_the_schema_refuses_is_reported_with_its_record_and_never_skipped() {
    let Some(url) = db("bad") else {
        return;
    };
    let dir = TempDir::new("bad");
    let ms0 = T0 / 1_000_000;
    let mut frames: Vec<(Venue, Option<&'static str>, String)> = (0..50)
        .map(|i| {
            (
                Venue::Binance,
                None,
                bn_trade(i, "1.5", "2", ms0 + i, false),
            )
        })
        .collect();
    // A NUL byte in the symbol: the decoder takes it, PostgreSQL's text refuses it.
    frames.push((
        Venue::Binance,
        None,
        bn_trade(50, "1.5", "2", ms0 + 50, false).replace("BTCUSDT", "BAD\0SYM"),
    ));
    frames.extend((51..80).map(|i| {
        (
            Venue::Binance,
            None,
            bn_trade(i, "1.5", "2", ms0 + i, false),
        )
    }));
    let mut o = opts(&url, &dir);
    o.batch_rows = 100_000;
    o.batch_age = Duration::from_secs(60);
    let (mut tap, p) = start(o).unwrap();
    feed(&mut tap, &frames, 0);
    drop(tap);
    let stats = p.stats();
    let err = p.finish().unwrap_err();
    let PersistError::BadRow(bad) = &err else {
        panic!("expected BadRow, got {err:?}");
    };
    assert_eq!(bad.table, "trades");
    assert!(bad.record.contains("BAD\\0SYM"), "{}", bad.record);
    assert!(bad.record.contains("\"t\":50"), "{}", bad.record);
    assert!(bad.error.contains("0x00"), "{}", bad.error);
    let msg = err.to_string();
    assert!(msg.contains(&format!("at byte {}", bad.offset)), "{msg}");
    assert!(stats.halted.load(Relaxed));
    // Everything before the record is in; nothing at or after it.
    let mut c = Client::connect(&url, NoTls).unwrap();
    assert_eq!(query_i64(&mut c, "SELECT count(*) FROM trades"), 50);
    assert_eq!(query_i64(&mut c, "SELECT max(trade_id) FROM trades"), 49);
    assert_eq!(query_i64(&mut c, "SELECT count(*) FROM raw_events"), 50);
    assert_eq!(
        query_i64(&mut c, "SELECT \"offset\" FROM ingest_offsets"),
        bad.offset as i64
    );
    // A restart stops at the same record again: it is never skipped.
    let (tap, p) = start(opts(&url, &dir)).unwrap();
    drop(tap);
    match p.finish() {
        Err(PersistError::BadRow(again)) => assert_eq!(again.offset, bad.offset),
        other => panic!("expected the same BadRow, got {other:?}"),
    }
    assert_eq!(query_i64(&mut c, "SELECT count(*) FROM trades"), 50);
}

#[test]
fn migrations_are_idempotent() {
    let Some(url) = db("migrate") else {
        return;
    };
    assert_eq!(hermes_persist::migrate(&url).unwrap(), vec![1, 2, 3, 4, 5]);
    assert!(hermes_persist::migrate(&url).unwrap().is_empty());
    let mut c = Client::connect(&url, NoTls).unwrap();
    // The database's identity (what a journal records): stable for this database,
    // another for the next one.
    let id = hermes_persist::schema::identity(&mut c).unwrap();
    assert_eq!(id, hermes_persist::schema::identity(&mut c).unwrap());
    assert!(id.contains("/migrate"), "{id}");
    let other = db("migrate_other").unwrap();
    hermes_persist::migrate(&other).unwrap();
    let mut c2 = Client::connect(&other, NoTls).unwrap();
    let id2 = hermes_persist::schema::identity(&mut c2).unwrap();
    assert_ne!(id, id2);
    assert_eq!(id.split('/').next(), id2.split('/').next(), "one cluster");
    assert_eq!(
        strings(
            &mut c,
            "SELECT relname::text FROM pg_class WHERE relname IN ('raw_events','trades','book_snapshots','top_of_book','funding','liquidations','ingest_offsets') ORDER BY 1"
        ),
        [
            "book_snapshots",
            "funding",
            "ingest_offsets",
            "liquidations",
            "raw_events",
            "top_of_book",
            "trades"
        ]
    );
}

#[test]
fn frames_larger_than_the_ring_pass_and_full_ring_waits_are_counted() {
    let Some(url) = db("ring") else {
        return;
    };
    let dir = TempDir::new("ring");
    let mut o = opts(&url, &dir);
    o.ring_bytes = 4096;
    let (mut tap, p) = start(o).unwrap();
    let pad = "x".repeat(10_000);
    let frames: Vec<(Venue, Option<&'static str>, String)> = (0..200)
        .map(|i| {
            let f = bn_trade(i, "2.5", "1", T0 / 1_000_000 + i, true);
            (
                Venue::Binance,
                None,
                f.replacen("\"M\":true", &format!("\"M\":true,\"pad\":\"{pad}\""), 1),
            )
        })
        .collect();
    feed(&mut tap, &frames, 0);
    drop(tap);
    let rep = p.finish().unwrap();
    assert!(rep.stats.ring_full_waits.load(Relaxed) > 0);
    assert_eq!(rep.stats.frames_in.load(Relaxed), 200);
    let mut c = Client::connect(&url, NoTls).unwrap();
    assert_eq!(query_i64(&mut c, "SELECT count(*) FROM trades"), 200);
    assert_eq!(
        query_i64(
            &mut c,
            "SELECT count(*) FROM raw_events WHERE length(frame->'data'->>'pad') = 10000"
        ),
        200
    );
}

use hermes_persist::testing::Tmpfs;

fn journal_records(dir: &std::path::Path) -> i64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "hcap") {
            let mut r = hermes_ingest::capture::CaptureReader::open(&p).unwrap();
            while r.next_record().unwrap().is_some() {
                n += 1;
            }
            assert!(
                r.damage().is_empty() && r.torn().is_none(),
                "{:?} {:?}",
                r.damage(),
                r.torn()
            );
        }
    }
    n
}

/// Issue 11 item 1: a full journal disk lost frames silently (readiness stayed ready,
/// lag 0). Now the loss is counted per venue, readiness is false with the reason while
/// it lasts, journaling resumes when space returns, and the run ends with an error that
/// names the directory and the count. Every frame is either a row or counted.
#[test]
fn a_full_journal_disk_is_loud_counted_and_journaling_resumes() {
    let Some(url) = db("diskfull") else {
        return;
    };
    let dir = TempDir::new("diskfull");
    let Some(fs) = Tmpfs::mount(dir.0.join("small"), 1024) else {
        return;
    };
    // Fill the disk but for about 200 KiB.
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![7u8; 820 << 10]).unwrap();
    let mut o = opts(&url, &dir);
    o.journal_dir = fs.0.join("journal");
    o.stream = None;
    let (mut tap, p) = start(o).unwrap();
    let stats = p.stats();
    let inp = input(4000); // about 2.7 MB of frames
    let third = inp.frames.len() / 3;
    feed(&mut tap, &inp.frames[..third], 0);
    wait_for("the journal to fail", Duration::from_secs(30), || {
        stats.journal_failing.load(Relaxed)
    });
    assert!(!stats.ready(u64::MAX), "not ready while frames are lost");
    assert!(
        stats.last_error().unwrap().contains("NOT being kept"),
        "{:?}",
        stats.last_error()
    );
    // More frames while the disk is full: drained and counted, never blocking the tap.
    feed(&mut tap, &inp.frames[third..2 * third], third);
    let lost_while_full = stats.not_kept();
    assert!(lost_while_full > 0);
    // Space returns: journaling resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_for("journaling to resume", Duration::from_secs(30), || {
        !stats.journal_failing.load(Relaxed)
    });
    feed(&mut tap, &inp.frames[2 * third..], 2 * third);
    let total = tap.frames();
    drop(tap);
    let journal = fs.0.join("journal");
    match p.finish() {
        Err(PersistError::NotKept {
            dir,
            frames,
            by_venue,
        }) => {
            assert_eq!(dir, journal.display().to_string());
            assert_eq!(frames, stats.not_kept());
            assert!(by_venue.contains("binance"), "{by_venue}");
        }
        other => panic!("expected NotKept, got {other:?}"),
    }
    assert!(stats.summary().contains("FRAMES NOT JOURNALED"));
    let mut c = Client::connect(&url, NoTls).unwrap();
    let rows = query_i64(&mut c, "SELECT count(*) FROM raw_events");
    // Every frame is a row or counted as not kept, and every journaled one is a row.
    let journaled = journal_records(&journal);
    // Every frame is a row or counted as not kept, and every journaled one is a row.
    assert_eq!(rows as u64 + stats.not_kept(), total);
    assert_eq!(rows, journaled);
    // The frames after the disk freed were all kept.
    assert!(rows as usize >= inp.frames.len() - 2 * third, "{rows}");
}

/// Issue 11 item 2: one flipped byte a third into an unwritten journal segment made the
/// restart cut two thirds of it. Now only that record is skipped (kept aside in a
/// `.corrupt` file and reported with its offsets) and everything after it is written.
#[test]
fn a_corrupt_record_mid_journal_is_skipped_not_cut() {
    let Some(url) = db("midcorrupt") else {
        return;
    };
    let dir = TempDir::new("midcorrupt");
    let inp = input(1500);
    let mut o = opts(
        "host=/nonexistent/socket port=1 user=postgres dbname=x",
        &dir,
    );
    o.drain_timeout = Duration::from_millis(200);
    let (mut tap, p) = start(o).unwrap();
    feed(&mut tap, &inp.frames, 0);
    drop(tap);
    let seg = p.recovery().segment.clone();
    assert!(matches!(p.finish(), Err(PersistError::Unfinished { .. })));
    let mut bytes = std::fs::read(&seg).unwrap();
    let len = bytes.len();
    bytes[len / 3] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();

    let (tap, p) = start(opts(&url, &dir)).unwrap();
    let rec = p.recovery().clone();
    assert!(rec.torn.is_empty(), "{:?}", rec.torn);
    assert_eq!(rec.damage.len(), 1, "{:?}", rec.damage);
    let d = &rec.damage[0].1;
    let flipped = (len / 3) as u64;
    assert!(d.offset <= flipped && flipped < d.offset + d.len, "{d:?}");
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        len as u64,
        "nothing cut"
    );
    assert_eq!(
        std::fs::read(&rec.kept_aside[0]).unwrap(),
        &bytes[d.offset as usize..(d.offset + d.len) as usize]
    );
    drop(tap);
    let rep = p.finish().unwrap();
    assert_eq!(rep.stats.damaged_regions.load(Relaxed), 1);
    let mut c = Client::connect(&url, NoTls).unwrap();
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM raw_events"),
        inp.frames.len() as i64 - 1
    );
}

/// Issue 11 item 3: a fresh database received the unfinished frames of earlier runs
/// against another database. A journal now belongs to one database: another database's
/// segments are moved aside, never written into this one, and `flush` writes them into
/// their own.
#[test]
fn a_journal_never_writes_one_databases_frames_into_another() {
    let (Some(a), Some(b)) = (db("owner_a"), db("owner_b")) else {
        return;
    };
    let dir = TempDir::new("owner");
    let inp = input(300);
    let n = inp.frames.len();
    let mut o = opts(&a, &dir);
    o.stream = None;
    let (mut tap, p) = start(o).unwrap();
    feed(&mut tap, &inp.frames[..100], 0);
    drop(tap);
    p.finish().unwrap();
    // A's database goes away mid-life: these frames stay in the journal, A's.
    let mut o = opts(
        "host=/nonexistent/socket port=1 user=postgres dbname=x",
        &dir,
    );
    o.stream = None;
    o.drain_timeout = Duration::from_millis(200);
    let (mut tap, p) = start(o).unwrap();
    feed(&mut tap, &inp.frames[100..], 100);
    drop(tap);
    assert!(matches!(p.finish(), Err(PersistError::Unfinished { .. })));
    // The same journal pointed at B: B gets only its own frames.
    let mut o = opts(&b, &dir);
    o.stream = None;
    let (mut tap, p) = start(o).unwrap();
    feed(&mut tap, &inp.frames[..50], 0);
    drop(tap);
    p.finish().unwrap();
    let mut cb = Client::connect(&b, NoTls).unwrap();
    assert_eq!(query_i64(&mut cb, "SELECT count(*) FROM raw_events"), 50);
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.0.join("journal/other-databases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // Written into A from there: everything A was owed, once.
    let mut o = opts(&a, &dir);
    o.journal_dir = aside[0].clone();
    let (tap, p) = start(o).unwrap();
    drop(tap);
    p.finish().unwrap();
    let mut ca = Client::connect(&a, NoTls).unwrap();
    assert_eq!(
        query_i64(&mut ca, "SELECT count(*) FROM raw_events"),
        n as i64
    );
    // And that directory refuses B: its segments are A's.
    let mut o = opts(&b, &dir);
    o.journal_dir = aside[0].clone();
    let (tap, p) = start(o).unwrap();
    drop(tap);
    p.finish().unwrap();
    assert_eq!(query_i64(&mut cb, "SELECT count(*) FROM raw_events"), 50);
}

/// Issue 11 item 4: the journal was never pruned. A live stream's segments rotate, and
/// committed ones are deleted after the retention time (0 s: at once); a longer
/// retention keeps them.
#[test]
fn committed_segments_rotate_and_are_deleted_after_the_retention() {
    let Some(url) = db("retention") else {
        return;
    };
    let dir = TempDir::new("retention");
    let inp = input(2000);
    for (retention, kept_all) in [(Duration::ZERO, false), (Duration::from_secs(3600), true)] {
        let mut o = opts(&url, &dir);
        o.journal_dir = dir.0.join(format!("j{}", retention.as_secs()));
        o.stream = None;
        o.segments.rotate_bytes = 64 << 10;
        o.segments.retention = retention;
        let (mut tap, p) = start(o.clone()).unwrap();
        feed(&mut tap, &inp.frames, 0);
        drop(tap);
        let rep = p.finish().unwrap();
        let segs: Vec<_> = std::fs::read_dir(&o.journal_dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                p.extension().is_some_and(|x| x == "hcap").then_some(p)
            })
            .collect();
        let deleted = rep.stats.segments_deleted.load(Relaxed) as usize;
        if kept_all {
            assert_eq!(deleted, 0);
            assert!(segs.len() > 5, "{} segments", segs.len());
        } else {
            assert!(deleted > 5, "{deleted} deleted");
            // The last segment is never deleted by the run that wrote it.
            assert_eq!(segs.len(), 1, "{segs:?}");
        }
        assert_eq!(
            rep.stats.journal_segments.load(Relaxed) as usize,
            segs.len()
        );
    }
    let mut c = Client::connect(&url, NoTls).unwrap();
    // Both runs' frames, each once: rotation keeps every record's identity.
    assert_eq!(
        query_i64(&mut c, "SELECT count(*) FROM raw_events"),
        2 * inp.frames.len() as i64
    );
}
