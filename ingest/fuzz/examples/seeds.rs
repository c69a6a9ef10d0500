//! Writes the seed corpora of the fuzz targets, from the project's own generator
//! (`hermes_sim::synth::Synth`, every venue) and simulator-shaped inputs: the faults the simulator
//! injects (gaps, duplicates, reordering, truncated frames, disconnects, oversize
//! frames), each capture format `hermes replay` reads, the frames the webhook builds,
//! config files, and shm regions written by the real writer. Nothing is copied from a
//! recorded capture.
//!
//! ```sh
//! cargo +nightly run --manifest-path ingest/fuzz/Cargo.toml --example seeds -- OUT_DIR
//! ```
//!
//! writes `OUT_DIR/<target>/<name>`, one file per seed (`scripts/fuzz.sh` does this
//! before each run). The output is deterministic.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use hermes_book::{Scale, Venue};
use hermes_fuzz::script::{Script, Step};
use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
use hermes_shm::{ShmWriter, TopOfBook, WriterOptions, FLAG_HAS_ASK, FLAG_HAS_BID};
use hermes_sim::synth::{canon, fixed, Synth, SynthFrame, SynthOptions};

/// A frame of the generator, owned.
struct Owned {
    rest_symbol: Option<String>,
    conn: u16,
    data: String,
}

impl Owned {
    fn of(f: &SynthFrame) -> Owned {
        Owned {
            rest_symbol: f.rest_symbol.clone(),
            conn: 0,
            data: f.data.clone(),
        }
    }

    fn copy(&self) -> Owned {
        Owned {
            rest_symbol: self.rest_symbol.clone(),
            conn: self.conn,
            data: self.data.clone(),
        }
    }

    fn ws(data: impl Into<String>) -> Owned {
        Owned {
            rest_symbol: None,
            conn: 0,
            data: data.into(),
        }
    }
}

/// A script line: a frame or a driver action.
enum Line {
    Frame(Owned),
    Stale,
    Reset(u16),
}

fn script(scale: Scale, lines: &[Line]) -> Vec<u8> {
    let steps = lines
        .iter()
        .map(|l| match l {
            Line::Frame(f) => Step::Frame {
                rest_symbol: f.rest_symbol.as_deref().map(str::as_bytes),
                conn: f.conn,
                data: f.data.as_bytes(),
            },
            Line::Stale => Step::MarkStale,
            Line::Reset(n) => Step::Reset(*n),
        })
        .collect();
    Script { scale, steps }.to_bytes()
}

fn synth(venue: Venue, instruments: usize, seed: u64) -> Synth {
    Synth::new(SynthOptions {
        venues: vec![venue],
        instruments,
        depth: 3,
        seed,
        ..SynthOptions::default()
    })
}

fn frames(s: &mut Synth, n: usize) -> Vec<Owned> {
    (0..n).map(|_| Owned::of(&s.next_frame())).collect()
}

/// The oversize frame the simulator sends (its `SimVenue::oversize`) on every venue but
/// Coinbase Exchange.
fn oversize_channel(pad: &str) -> String {
    format!(r#"{{"channel":"status","pad":"{pad}"}}"#)
}

/// The simulator's faults (`hermes_sim::FaultKind`) applied to frame `at` of `frames`;
/// `oversize` makes the venue's oversize frame around its padding.
fn faulted(
    frames: &[Owned],
    at: usize,
    oversize: fn(&str) -> String,
) -> Vec<(&'static str, Vec<Line>)> {
    let all = |skip: Option<usize>| -> Vec<Line> {
        frames
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, f)| Line::Frame(f.copy()))
            .collect()
    };
    let mut out = Vec::new();
    out.push(("gap", all(Some(at))));
    let mut dup = all(None);
    dup.insert(at, Line::Frame(frames[at].copy()));
    out.push(("duplicate", dup));
    let mut reorder = all(None);
    reorder.swap(at, at + 1);
    out.push(("reorder", reorder));
    let mut malformed = all(None);
    let mut half = frames[at].copy();
    half.data.truncate(half.data.len() / 2);
    malformed[at] = Line::Frame(half);
    out.push(("malformed", malformed));
    let mut big = all(None);
    big.insert(at, Line::Frame(Owned::ws(oversize(&"x".repeat(512)))));
    out.push(("oversize", big));
    out
}

struct Out {
    dir: PathBuf,
}

impl Out {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let d = self.dir.join(target);
        std::fs::create_dir_all(&d).expect("creating the seed dir");
        std::fs::write(d.join(name), bytes).expect("writing a seed");
    }
}

fn coinbase(out: &Out) {
    let two_decimals = Scale {
        price_decimals: 2,
        size_decimals: 8,
    };
    for seed in 1..=3 {
        let mut s = synth(Venue::Coinbase, 2, seed);
        let fs = frames(&mut s, 16);
        let lines: Vec<Line> = fs.iter().map(|f| Line::Frame(f.copy())).collect();
        out.put(
            "coinbase",
            &format!("synth-{seed}"),
            &script(Scale::default(), &lines),
        );
        if seed == 1 {
            out.put(
                "coinbase",
                "synth-2-decimals",
                &script(two_decimals, &lines),
            );
            for (name, lines) in faulted(&fs, 8, oversize_channel) {
                out.put(
                    "coinbase",
                    &format!("fault-{name}"),
                    &script(Scale::default(), &lines),
                );
            }
            // A disconnect: the driver marks the books stale, the connection starts over
            // with a fresh sequence, subscriptions and snapshots.
            let mut lines: Vec<Line> = fs[..10].iter().map(|f| Line::Frame(f.copy())).collect();
            lines.push(Line::Stale);
            lines.push(Line::Reset(0));
            let mut again = synth(Venue::Coinbase, 2, seed);
            lines.extend(frames(&mut again, 6).into_iter().map(Line::Frame));
            out.put(
                "coinbase",
                "fault-disconnect",
                &script(Scale::default(), &lines),
            );
            // Two connections, each with its own sequence.
            let mut other = synth(Venue::Coinbase, 2, seed + 10);
            let mut lines = Vec::new();
            for (a, mut b) in fs.iter().zip(frames(&mut other, 8)) {
                lines.push(Line::Frame(Owned::ws(&*a.data)));
                b.conn = 1;
                lines.push(Line::Frame(b));
            }
            out.put(
                "coinbase",
                "two-connections",
                &script(Scale::default(), &lines),
            );
        }
    }
    // Channels the generator does not emit, in the venue's documented shapes.
    let singles = [
        (
            "ticker",
            r#"{"channel":"ticker","client_id":"","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":0,"events":[{"type":"update","tickers":[{"type":"ticker","product_id":"SYN0-USD","price":"1000.5","volume_24_h":"12.5","best_bid":"1000.25","best_bid_quantity":"0.5","best_ask":"1000.75","best_ask_quantity":"1.25"}]}]}"#,
        ),
        (
            "ticker-batch",
            r#"{"channel":"ticker_batch","client_id":"","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":0,"events":[{"type":"snapshot","tickers":[{"type":"ticker","product_id":"SYN0-USD","price":"1000.5"}]}]}"#,
        ),
        (
            "candles",
            r#"{"channel":"candles","client_id":"","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":0,"events":[{"type":"snapshot","candles":[{"start":"1786309500","high":"1001","low":"999","open":"1000","close":"1000.5","volume":"3","product_id":"SYN0-USD"}]}]}"#,
        ),
        (
            "error",
            r#"{"type":"error","message":"failure to subscribe"}"#,
        ),
    ];
    for (name, frame) in singles {
        out.put("coinbase", name, frame.as_bytes());
    }
}

fn binance(out: &Out) {
    for seed in 1..=3 {
        let mut s = synth(Venue::Binance, 2, seed);
        let fs = frames(&mut s, 16);
        let lines: Vec<Line> = fs.iter().map(|f| Line::Frame(f.copy())).collect();
        out.put(
            "binance",
            &format!("synth-{seed}"),
            &script(Scale::default(), &lines),
        );
        if seed == 1 {
            for (name, lines) in faulted(&fs, 8, oversize_channel) {
                out.put(
                    "binance",
                    &format!("fault-{name}"),
                    &script(Scale::default(), &lines),
                );
            }
            // A disconnect: stale, diffs buffered, then a fresh REST snapshot releases them.
            let mut lines: Vec<Line> = fs[..10].iter().map(|f| Line::Frame(f.copy())).collect();
            lines.push(Line::Stale);
            lines.extend(frames(&mut s, 4).into_iter().map(Line::Frame));
            for b in s.books.iter() {
                lines.push(Line::Frame(Owned {
                    rest_symbol: Some(b.symbol.clone()),
                    conn: 0,
                    data: b.binance_rest(5),
                }));
            }
            lines.extend(frames(&mut s, 4).into_iter().map(Line::Frame));
            out.put(
                "binance",
                "fault-disconnect",
                &script(Scale::default(), &lines),
            );
            // Bare payloads (a raw stream, not the combined one).
            let bare: Vec<Line> = fs
                .iter()
                .map(|f| match f.rest_symbol {
                    Some(_) => Line::Frame(f.copy()),
                    None => {
                        let v: serde_json::Value = serde_json::from_str(&f.data).expect("JSON");
                        Line::Frame(Owned::ws(v["data"].to_string()))
                    }
                })
                .collect();
            out.put("binance", "bare-payloads", &script(Scale::default(), &bare));
        }
    }
    let singles = [
        (
            "agg-trade",
            r#"{"stream":"syn0usdt@aggTrade","data":{"e":"aggTrade","E":1786309548001,"s":"SYN0USDT","a":26129,"p":"1000.25000000","q":"0.50000000","f":100,"l":105,"T":1786309548000,"m":true,"M":true}}"#,
        ),
        ("subscribed", r#"{"result":null,"id":1}"#),
        ("error", r#"{"code":-1121,"msg":"Invalid symbol.","id":1}"#),
        (
            "ticker",
            r#"{"stream":"syn0usdt@ticker","data":{"e":"24hrTicker","E":1786309548001,"s":"SYN0USDT","c":"1000.25000000"}}"#,
        ),
    ];
    for (name, frame) in singles {
        out.put("binance", name, frame.as_bytes());
    }
    out.put(
        "binance",
        "rest-error",
        b"@SYN0USDT {\"code\":-1121,\"msg\":\"Invalid symbol.\"}\n",
    );
}

/// A generator of one venue whose clock moves 50 ms a frame, so that the periodic frames
/// (a futures `markPriceUpdate`, an Exchange `heartbeat`, each due every simulated
/// second) come within a seed's few dozen frames.
fn synth_slow(venue: Venue, instruments: usize, seed: u64) -> Synth {
    Synth::new(SynthOptions {
        venues: vec![venue],
        instruments,
        depth: 3,
        seed,
        interval_ns: 50_000_000,
        ..SynthOptions::default()
    })
}

/// Symbol, `U` and `u` of a futures depth diff (combined-stream frame).
fn diff_ids(data: &str) -> Option<(String, u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    let d = &v["data"];
    if d["e"] != "depthUpdate" {
        return None;
    }
    Some((
        d["s"].as_str()?.to_string(),
        d["U"].as_u64()?,
        d["u"].as_u64()?,
    ))
}

/// Binance USD-M and COIN-M, both for the `futures` target (which decodes every script
/// as both venues).
fn futures(out: &Out) {
    let put =
        |name: &str, lines: &[Line]| out.put("futures", name, &script(Scale::default(), lines));
    for (venue, tag, exact) in [
        (Venue::BinanceUsdm, "usdm", (2, 3)),
        (Venue::BinanceCoinm, "coinm", (1, 0)),
    ] {
        for seed in 1..=3 {
            let mut s = synth_slow(venue, 2, seed);
            let fs = frames(&mut s, 24);
            let lines: Vec<Line> = fs.iter().map(|f| Line::Frame(f.copy())).collect();
            put(&format!("synth-{tag}-{seed}"), &lines);
            if seed != 1 {
                continue;
            }
            // The generator's own decimals: one more digit anywhere is refused.
            let scale = Scale {
                price_decimals: exact.0,
                size_decimals: exact.1,
            };
            out.put(
                "futures",
                &format!("synth-{tag}-exact-decimals"),
                &script(scale, &lines),
            );
            for (name, lines) in faulted(&fs, 10, oversize_channel) {
                put(&format!("fault-{tag}-{name}"), &lines);
            }
            // A disconnect: stale, the diffs of the new connection buffered, then a fresh
            // REST snapshot per symbol whose `lastUpdateId` falls inside the last buffered
            // diff (it straddles the snapshot and is applied, the later ones chain by
            // `pu`).
            let mut lines: Vec<Line> = fs[..12].iter().map(|f| Line::Frame(f.copy())).collect();
            lines.push(Line::Stale);
            let mut last_diff: Vec<Option<(u64, u64)>> = vec![None; s.books.len()];
            let (mut n, mut ms) = (0, 0);
            while n < 6 || last_diff.iter().any(Option::is_none) {
                assert!(n < 500, "the generator sends diffs of every symbol");
                let f = s.next_frame();
                ms = f.recv_ts_ns / 1_000_000;
                if let Some((sym, first, last)) = diff_ids(&f.data) {
                    let k = s
                        .books
                        .iter()
                        .position(|b| b.symbol == sym)
                        .expect("a book");
                    last_diff[k] = Some((first, last));
                }
                lines.push(Line::Frame(Owned::of(&f)));
                n += 1;
            }
            for (b, ids) in s.books.iter().zip(&last_diff) {
                let (first, last) = ids.expect("a diff");
                lines.push(Line::Frame(Owned {
                    rest_symbol: Some(b.symbol.clone()),
                    conn: 0,
                    data: b.futures_rest(1000, first + (last - first) / 2, ms),
                }));
            }
            lines.extend(frames(&mut s, 8).into_iter().map(Line::Frame));
            put(&format!("fault-{tag}-disconnect"), &lines);
            // Bare payloads (a raw stream, not the combined one).
            let bare: Vec<Line> = fs
                .iter()
                .map(|f| match f.rest_symbol {
                    Some(_) => Line::Frame(f.copy()),
                    None => {
                        let v: serde_json::Value = serde_json::from_str(&f.data).expect("JSON");
                        Line::Frame(Owned::ws(v["data"].to_string()))
                    }
                })
                .collect();
            put(&format!("bare-payloads-{tag}"), &bare);
        }
    }
    // The diff-depth rules in a few lines: two diffs before the snapshot (the first
    // older, dropped; the second straddling `lastUpdateId`, applied), one chained by `pu`,
    // one whose `pu` names a diff never seen (a gap: stale, buffering), and the snapshot
    // that syncs the book again.
    let diff = |first: u64, last: u64, prev: u64, px: &str| {
        format!(
            r#"{{"stream":"syn0usdt@depth@100ms","data":{{"e":"depthUpdate","E":1786309548101,"T":1786309548100,"s":"SYN0USDT","U":{first},"u":{last},"pu":{prev},"b":[["{px}","1.500"]],"a":[["1000.30","0.000"]]}}}}"#
        )
    };
    let rest = |l: u64| Owned {
        rest_symbol: Some("SYN0USDT".into()),
        conn: 0,
        data: format!(
            r#"{{"lastUpdateId":{l},"E":1786309548200,"T":1786309548199,"bids":[["1000.10","2.000"],["1000.00","1.000"]],"asks":[["1000.30","0.500"],["1000.40","3.000"]]}}"#
        ),
    };
    let rules = vec![
        Line::Frame(Owned::ws(diff(100, 120, 90, "1000.10"))),
        Line::Frame(Owned::ws(diff(130, 160, 120, "1000.20"))),
        Line::Frame(rest(145)),
        Line::Frame(Owned::ws(diff(170, 175, 160, "1000.15"))),
        Line::Frame(Owned::ws(diff(200, 210, 190, "1000.05"))),
        Line::Frame(Owned::ws(diff(215, 220, 210, "1000.00"))),
        Line::Frame(rest(212)),
        Line::Frame(Owned::ws(diff(221, 230, 220, "1000.25"))),
    ];
    put("pu-chain", &rules);
    let singles = [
        (
            "mark-price",
            r#"{"stream":"syn0usdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1786309548000,"s":"SYN0USDT","p":"1000.25000000","i":"1000.12345678","P":"1000.30000000","r":"0.00010000","T":1786320000000}}"#,
        ),
        (
            "mark-price-negative-rate",
            r#"{"stream":"syn0usdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1786309548000,"s":"SYN0USDT","p":"1000.25000000","i":"1000.12345678","P":"1000.30000000","r":"-0.00012345","T":1786320000000}}"#,
        ),
        // A delivery contract: no funding, `"r":""` and `"T":0`.
        (
            "mark-price-delivery",
            r#"{"stream":"syn0usdt_260925@markPrice@1s","data":{"e":"markPriceUpdate","E":1786309548000,"s":"SYN0USDT_260925","p":"1001.50000000","i":"1000.12345678","P":"1000.90000000","r":"","T":0}}"#,
        ),
        (
            "mark-price-coinm",
            r#"{"stream":"syn0usd_perp@markPrice@1s","data":{"e":"markPriceUpdate","E":1786309548000,"s":"SYN0USD_PERP","p":"1000.2","P":"1000.3","i":"1000.1","r":"-0.00005000","T":1786320000000}}"#,
        ),
        (
            "force-order",
            r#"{"stream":"syn0usdt@forceOrder","data":{"e":"forceOrder","E":1786309548001,"o":{"s":"SYN0USDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"999.10","ap":"999.80","X":"FILLED","l":"0.014","z":"0.014","T":1786309548000}}}"#,
        ),
        // Nothing filled yet: the order's own price.
        (
            "force-order-unfilled",
            r#"{"stream":"syn0usdt@forceOrder","data":{"e":"forceOrder","E":1786309548001,"o":{"s":"SYN0USDT","S":"BUY","o":"LIMIT","f":"IOC","q":"0.500","p":"1001.40","ap":"0.00","X":"NEW","l":"0","z":"0","T":1786309548000}}}"#,
        ),
        (
            "force-order-coinm",
            r#"{"stream":"syn0usd_perp@forceOrder","data":{"e":"forceOrder","E":1786309548001,"o":{"s":"SYN0USD_PERP","ps":"SYN0USD","S":"SELL","o":"LIMIT","f":"IOC","q":"3","p":"999.1","ap":"999.8","X":"FILLED","l":"3","z":"3","T":1786309548000}}}"#,
        ),
        (
            "book-ticker",
            r#"{"stream":"syn0usdt@bookTicker","data":{"e":"bookTicker","u":4009002170,"s":"SYN0USDT","b":"1000.20","B":"31.210","a":"1000.30","A":"40.660","T":1786309548000,"E":1786309548001}}"#,
        ),
        (
            "book-ticker-coinm",
            r#"{"stream":"syn0usd_perp@bookTicker","data":{"e":"bookTicker","u":4009002170,"s":"SYN0USD_PERP","ps":"SYN0USD","b":"1000.2","B":"31","a":"1000.3","A":"40","T":1786309548000,"E":1786309548001}}"#,
        ),
        (
            "agg-trade",
            r#"{"stream":"syn0usdt@aggTrade","data":{"e":"aggTrade","E":1786309548001,"a":26129,"s":"SYN0USDT","p":"1000.25","q":"0.500","f":100,"l":105,"T":1786309548000,"m":true}}"#,
        ),
        (
            "ignored",
            r#"{"stream":"syn0usdt@indexPrice","data":{"e":"indexPriceUpdate","E":1786309548000,"i":"SYN0USDT","p":"1000.12345678"}}"#,
        ),
        ("subscribed", r#"{"result":null,"id":1}"#),
        ("error", r#"{"code":-1121,"msg":"Invalid symbol.","id":1}"#),
    ];
    for (name, frame) in singles {
        out.put("futures", name, frame.as_bytes());
    }
    out.put(
        "futures",
        "rest-error",
        b"@SYN0USDT {\"code\":-1121,\"msg\":\"Invalid symbol.\"}\n",
    );
}

/// The oversize frame the simulator sends on Coinbase Exchange.
fn oversize_type(pad: &str) -> String {
    format!(r#"{{"type":"status","pad":"{pad}"}}"#)
}

/// `product_id` and the frame of a Coinbase Exchange `match`, if it is one.
fn exchange_match(data: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    if v["type"] != "match" {
        return None;
    }
    Some((v["product_id"].as_str()?.to_string(), data.to_string()))
}

fn exchange(out: &Out) {
    let put =
        |name: &str, lines: &[Line]| out.put("exchange", name, &script(Scale::default(), lines));
    for seed in 1..=3 {
        let mut s = synth_slow(Venue::CoinbaseExchange, 2, seed);
        let fs = frames(&mut s, 24);
        let lines: Vec<Line> = fs.iter().map(|f| Line::Frame(f.copy())).collect();
        put(&format!("synth-{seed}"), &lines);
        if seed != 1 {
            continue;
        }
        out.put(
            "exchange",
            "synth-exact-decimals",
            &script(
                Scale {
                    price_decimals: 2,
                    size_decimals: 8,
                },
                &lines,
            ),
        );
        for (name, lines) in faulted(&fs, 10, oversize_type) {
            put(&format!("fault-{name}"), &lines);
        }
        // A disconnect: stale, updates that cannot be placed until the new connection's
        // snapshot of each product, then its last trade again as `last_match`.
        let mut lines: Vec<Line> = fs[..12].iter().map(|f| Line::Frame(f.copy())).collect();
        lines.push(Line::Stale);
        let more = frames(&mut s, 4);
        let mut last_match = std::collections::BTreeMap::new();
        for f in fs.iter().chain(&more) {
            if let Some((product, m)) = exchange_match(&f.data) {
                last_match.insert(product, m.replacen("\"match\"", "\"last_match\"", 1));
            }
        }
        lines.extend(more.into_iter().map(Line::Frame));
        for b in s.books.iter() {
            lines.push(Line::Frame(Owned::ws(b.exchange_snapshot())));
        }
        for m in last_match.into_values() {
            lines.push(Line::Frame(Owned::ws(m)));
        }
        lines.extend(frames(&mut s, 8).into_iter().map(Line::Frame));
        put("fault-disconnect", &lines);
    }
    // Trade ids: contiguous, a repeat skipped, a jump a gap; a heartbeat naming a trade
    // never seen is a gap too.
    let snapshot = r#"{"type":"snapshot","product_id":"SYN0-USD","asks":[["1000.30","0.50000000"],["1000.40","3.00000000"]],"bids":[["1000.10","2.00000000"],["1000.00","1.00000000"]]}"#;
    let trade = |id: u64, seq: u64| {
        format!(
            r#"{{"type":"match","trade_id":{id},"maker_order_id":"5f4c2e1a-0b3d-4e6f-8a9b-1c2d3e4f5a6b","taker_order_id":"7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d","side":"sell","size":"0.01000000","price":"1000.30","product_id":"SYN0-USD","sequence":{seq},"time":"2026-08-09T21:05:48.505350Z"}}"#
        )
    };
    let heartbeat = |last: u64, seq: u64| {
        format!(
            r#"{{"type":"heartbeat","last_trade_id":{last},"product_id":"SYN0-USD","sequence":{seq},"time":"2026-08-09T21:05:49.000000Z"}}"#
        )
    };
    let l2 = r#"{"type":"l2update","product_id":"SYN0-USD","changes":[["buy","1000.20","0.75000000"],["sell","1000.30","0"]],"time":"2026-08-09T21:05:48.600000Z"}"#;
    let rules = vec![
        Line::Frame(Owned::ws(l2)),
        Line::Frame(Owned::ws(snapshot)),
        Line::Frame(Owned::ws(trade(100, 5000))),
        Line::Frame(Owned::ws(l2)),
        Line::Frame(Owned::ws(trade(101, 5003))),
        Line::Frame(Owned::ws(trade(101, 5003))),
        Line::Frame(Owned::ws(heartbeat(101, 5004))),
        Line::Frame(Owned::ws(trade(104, 5010))),
        Line::Frame(Owned::ws(snapshot)),
        Line::Frame(Owned::ws(heartbeat(107, 5020))),
        Line::Frame(Owned::ws(snapshot)),
    ];
    put("trade-ids", &rules);
    let singles = [
        (
            "ticker",
            r#"{"type":"ticker","sequence":5001,"product_id":"SYN0-USD","price":"1000.30","open_24h":"990.00","volume_24h":"12.50000000","low_24h":"985.00","high_24h":"1010.00","volume_30d":"375.00000000","best_bid":"1000.10","best_bid_size":"2.00000000","best_ask":"1000.30","best_ask_size":"0.49000000","side":"buy","time":"2026-08-09T21:05:48.505350Z","trade_id":100,"last_size":"0.01000000"}"#,
        ),
        // Older feeds: no sizes at the best prices.
        (
            "ticker-without-sizes",
            r#"{"type":"ticker","sequence":5001,"product_id":"SYN0-USD","price":"1000.30","best_bid":"1000.10","best_ask":"1000.30","side":"sell","time":"2026-08-09T21:05:48.505350Z","trade_id":100,"last_size":"0.01000000"}"#,
        ),
        (
            "heartbeat",
            r#"{"type":"heartbeat","last_trade_id":100,"product_id":"SYN0-USD","sequence":5004,"time":"2026-08-09T21:05:49.000000Z"}"#,
        ),
        (
            "error",
            r#"{"type":"error","message":"Failed to subscribe","reason":"SYN9-USD is not a valid product"}"#,
        ),
        (
            "subscriptions",
            r#"{"type":"subscriptions","channels":[{"name":"level2_batch","product_ids":["SYN0-USD","SYN1-USD"]},{"name":"matches","product_ids":["SYN0-USD","SYN1-USD"]},{"name":"ticker","product_ids":["SYN0-USD"]},{"name":"heartbeat","product_ids":["SYN0-USD"]}]}"#,
        ),
        (
            "status",
            r#"{"type":"status","products":[{"id":"SYN0-USD","base_currency":"SYN0","quote_currency":"USD","base_increment":"0.00000001","quote_increment":"0.01","display_name":"SYN0/USD","status":"online","status_message":"","min_market_funds":"1","post_only":false,"limit_only":false,"cancel_only":false,"fx_stablecoin":false}],"currencies":[{"id":"USD","name":"United States Dollar","display_name":"USD","min_size":"0.01","status":"online","status_message":"","max_precision":"0.01","convertible_to":[],"details":{}}]}"#,
        ),
        // A snapshot whose levels carry an order count (older feeds).
        (
            "snapshot-with-counts",
            r#"{"type":"snapshot","product_id":"SYN0-USD","bids":[["1000.10","2.00000000",3]],"asks":[["1000.30","0.50000000",1]]}"#,
        ),
    ];
    for (name, frame) in singles {
        out.put("exchange", name, frame.as_bytes());
    }
}

/// The canonical frame the HTTP server builds from a `POST /ingest/tick` body (serde_json
/// orders the keys).
fn tick(symbol: &str, price: i64, volume: i64, ts_ns: i64, event_id: &str) -> String {
    format!(
        r#"{{"event_id":"{event_id}","price":"{}","source":"desk-a","symbol":"{symbol}","ts_ns":{ts_ns},"volume":"{}"}}"#,
        canon(price, 8),
        canon(volume, 8)
    )
}

fn webhook(out: &Out) {
    let s = Synth::new(SynthOptions {
        depth: 5,
        ..SynthOptions::default()
    });
    let mut lines = Vec::new();
    for (k, b) in s.books.iter().enumerate() {
        let ts = 1_786_309_548_000_000_000 + k as i64;
        // The synthetic mids are in cents; the webhook keeps 8 decimals.
        lines.push(Line::Frame(Owned::ws(tick(
            &b.symbol,
            b.mid * 1_000_000,
            10_000_000 * (k as i64 + 1),
            ts,
            &format!("synth-{k}"),
        ))));
    }
    out.put("webhook", "synth", &script(Scale::default(), &lines));
    let b = &s.books[0];
    let one = tick(&b.symbol, b.mid * 1_000_000, 1, 1, "again");
    let dup = vec![Line::Frame(Owned::ws(&*one)), Line::Frame(Owned::ws(&*one))];
    out.put("webhook", "duplicate", &script(Scale::default(), &dup));
    out.put("webhook", "single", one.as_bytes());
}

fn capture(out: &Out) {
    let mut s = Synth::new(SynthOptions {
        instruments: 1,
        depth: 5,
        ..SynthOptions::default()
    });
    let fs: Vec<SynthFrame> = (0..16).map(|_| s.next_frame()).collect();

    // Native, written by the real writer; read as auto and as native.
    let tmp = std::env::temp_dir().join(format!("hermes-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let path = tmp.join("seed.hcap");
    let mut w = CaptureWriter::create(&path).expect("capture writer");
    for (k, f) in fs.iter().enumerate() {
        w.append(&Record {
            recv_ts_ns: f.recv_ts_ns,
            venue: f.venue,
            kind: if f.rest_symbol.is_some() {
                RecordKind::RestDepth
            } else {
                RecordKind::Ws
            },
            conn: (k % 2) as u16,
            tag: f.rest_symbol.as_deref().unwrap_or("").as_bytes(),
            data: f.data.as_bytes(),
        })
        .expect("append");
    }
    w.flush().expect("flush");
    drop(w);
    let native = std::fs::read(&path).expect("read back");
    std::fs::remove_dir_all(&tmp).ok();
    let with = |sel: u8, body: &[u8]| [&[sel][..], body].concat();
    out.put("capture", "native-auto", &with(0, &native));
    out.put("capture", "native", &with(1, &native));
    // A crash mid-write: a torn last record.
    out.put(
        "capture",
        "native-torn",
        &with(0, &native[..native.len() - 7]),
    );

    // JSON lines: one raw frame per line (REST snapshots for the file's symbol).
    let mut jsonl = String::new();
    for f in &fs {
        jsonl.push_str(&f.data);
        jsonl.push('\n');
    }
    out.put("capture", "jsonl", &with(2, jsonl.as_bytes()));
    // `<ts> <json>`: hftbacktest's collector.
    let mut ts_lines = String::new();
    for f in &fs {
        let _ = writeln!(ts_lines, "{} {}", f.recv_ts_ns, f.data);
    }
    out.put("capture", "ts-json", &with(0, ts_lines.as_bytes()));
    // Only Binance frames, the symbol given.
    let mut binance = String::new();
    for f in fs.iter().filter(|f| f.venue == Venue::Binance) {
        let _ = writeln!(binance, "{} {}", f.recv_ts_ns / 1_000_000, f.data);
    }
    out.put(
        "capture",
        "ts-ms-binance",
        &with(2 | (2 << 2) | 0x10, binance.as_bytes()),
    );
    // cryptofeed format 1.
    let secs = |ns: i64| format!("{}.{:06}", ns / 1_000_000_000, ns % 1_000_000_000 / 1_000);
    let mut cf1 = String::from(
        "configuration: {\"exchanges\":{\"BINANCE\":{\"l2_book\":[\"SYN0-USDT\"]}}}\n",
    );
    let _ = writeln!(
        cf1,
        "wss://stream.binance.com:9443/stream?streams=syn0usdt@depth@100ms <-> {}",
        secs(fs[0].recv_ts_ns)
    );
    for f in fs.iter().filter(|f| f.venue == Venue::Binance) {
        match &f.rest_symbol {
            Some(sym) => {
                let _ = writeln!(
                    cf1,
                    "https://api.binance.com/api/v3/depth?symbol={sym}&limit=1000 -> {}: {}",
                    secs(f.recv_ts_ns),
                    f.data
                );
            }
            None => {
                let _ = writeln!(cf1, "{}: {}", secs(f.recv_ts_ns), f.data);
            }
        }
    }
    out.put("capture", "cryptofeed-1", &with(0, cf1.as_bytes()));
    // cryptofeed format 2.
    let mut cf2 = String::from("{\"t\":\"header\",\"exchange\":\"BINANCE\",\"version\":2}\n");
    let _ = writeln!(cf2, "{{\"t\":\"connect\",\"conn\":\"binance.1\",\"ts\":{},\"url\":\"wss://stream.binance.com:9443/stream\"}}", secs(fs[0].recv_ts_ns));
    let _ = writeln!(
        cf2,
        "{{\"t\":\"send\",\"conn\":\"binance.1\",\"ts\":{},\"data\":{}}}",
        secs(fs[0].recv_ts_ns),
        serde_json::to_string(r#"{"method":"SUBSCRIBE","params":["syn0usdt@depth@100ms"],"id":1}"#)
            .expect("json")
    );
    for f in fs.iter().filter(|f| f.venue == Venue::Binance) {
        let data = serde_json::to_string(&f.data).expect("json");
        match &f.rest_symbol {
            Some(sym) => {
                let _ = writeln!(cf2, "{{\"t\":\"http\",\"conn\":\"binance.2\",\"ts\":{},\"url\":\"https://api.binance.com/api/v3/depth?symbol={sym}&limit=1000\",\"data\":{data}}}", secs(f.recv_ts_ns));
            }
            None => {
                let _ = writeln!(
                    cf2,
                    "{{\"t\":\"recv\",\"conn\":\"binance.1\",\"ts\":{},\"data\":{data}}}",
                    secs(f.recv_ts_ns)
                );
            }
        }
    }
    out.put("capture", "cryptofeed-2", &with(0, cf2.as_bytes()));
    // Compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(jsonl.as_bytes()).expect("gzip");
    out.put(
        "capture",
        "jsonl-gz",
        &with(1 << 5, &gz.finish().expect("gzip")),
    );
    let zst = ruzstd::encoding::compress_to_vec(
        ts_lines.as_bytes(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    out.put("capture", "ts-json-zst", &with(2 << 5, &zst));
}

fn config(out: &Out) {
    let s = Synth::new(SynthOptions::default());
    let names = |v: Venue| -> Vec<String> {
        s.books
            .iter()
            .filter(|b| b.venue == v)
            .map(|b| format!("{:?}", b.symbol))
            .collect()
    };
    let full = format!(
        "[coinbase]\nws_url = \"ws://127.0.0.1:9001\"\nproducts = [{}]\nchannels = [\"level2\", \"market_trades\", \"heartbeats\"]\n\n\
         [binance]\nws_url = \"ws://127.0.0.1:9002\"\nrest_url = \"http://127.0.0.1:9002\"\nsymbols = [{}]\nstreams = [\"depth@100ms\", \"trade\", \"bookTicker\"]\ndepth_limit = 1000\n\n\
         [connection]\nreconnect_min_ms = 100\nreconnect_max_ms = 5000\nbreaker_failures = 5\nbreaker_cooldown_ms = 30000\nhealthy_after_ms = 10000\nping_interval_ms = 15000\nidle_timeout_ms = 60000\nmax_frame_bytes = 67108864\nresubscribe_interval_ms = 1000\nrest_weight_per_minute = 3000\n",
        names(Venue::Coinbase).join(", "),
        names(Venue::Binance).join(", ")
    );
    out.put("config", "full", full.as_bytes());
    out.put(
        "config",
        "minimal",
        b"[coinbase]\nproducts = [\"SYN0-USD\"]\n",
    );
    out.put("config", "env-only", b"\0COINBASE_PRODUCTS=SYN0-USD,SYN1-USD\nBINANCE_SYMBOLS=syn0usdt\nBINANCE_WS_URL=ws://127.0.0.1:9002\n");
    out.put("config", "file-and-env", b"[binance]\nsymbols = [\"SYN0USDT\"]\n\0COINBASE_WS_URL=ws://127.0.0.1:9001\nCOINBASE_PRODUCTS=SYN0-USD\n");
    out.put(
        "config",
        "unknown-key",
        b"[coinbase]\nproduct = [\"SYN0-USD\"]\n",
    );
}

fn shm(out: &Out) {
    let mut s = Synth::new(SynthOptions {
        instruments: 1,
        depth: 12,
        ..SynthOptions::default()
    });
    for _ in 0..50 {
        s.next_frame();
    }
    let tmp = std::env::temp_dir().join(format!("hermes-seeds-shm-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    for slots in [1u32, 2, 4] {
        let path = tmp.join(format!("region-{slots}"));
        let mut w = ShmWriter::create(
            &path,
            WriterOptions {
                slots,
                ..WriterOptions::default()
            },
        )
        .expect("shm writer");
        for b in s.books.iter().take(slots as usize) {
            let slot = w
                .add_instrument(b.venue, &b.symbol, 2, 8)
                .expect("add instrument");
            let mut t = TopOfBook {
                flags: FLAG_HAS_BID | FLAG_HAS_ASK,
                update_id: b.update_id,
                ..TopOfBook::default()
            };
            for (k, (p, q)) in b.bids.iter().rev().take(10).enumerate() {
                t.bids[k] = (*p, *q);
                t.bid_levels += 1;
            }
            for (k, (p, q)) in b.asks.iter().take(10).enumerate() {
                t.asks[k] = (*p, *q);
                t.ask_levels += 1;
            }
            (t.bid_px, t.bid_qty) = t.bids[0];
            (t.ask_px, t.ask_qty) = t.asks[0];
            w.publish(slot, &t);
        }
        w.heartbeat();
        if slots == 2 {
            // The region of a running engine: not closed, its writer alive (pid 1 stands
            // for it: this process is gone when the fuzzer runs).
            let mut live = std::fs::read(&path).expect("read region");
            let pid = hermes_shm::layout::header::WRITER_PID;
            live[pid..pid + 4].copy_from_slice(&1u32.to_le_bytes());
            out.put("shm", "region-2-live", &live);
        }
        drop(w);
        let bytes = std::fs::read(&path).expect("read region");
        out.put("shm", &format!("region-{slots}"), &bytes);
        if slots == 2 {
            // A writer that died inside slot 1: its sequence stays odd.
            let mut torn = bytes.clone();
            let off = hermes_shm::layout::slots_offset(2) + hermes_shm::layout::SLOT_SIZE;
            torn[off] |= 1;
            out.put("shm", "region-2-torn", &torn);
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
}

fn decimal(out: &Out) {
    let mut s = Synth::new(SynthOptions {
        instruments: 1,
        depth: 3,
        ..SynthOptions::default()
    });
    s.next_frame();
    let b = &s.books[0];
    let (p, q) = b
        .bids
        .iter()
        .next_back()
        .map(|(p, q)| (*p, *q))
        .expect("a bid");
    let seeds: Vec<(u8, String)> = vec![
        (2, fixed(p, 2)),
        (8, fixed(q, 8)),
        (8, canon(q, 8)),
        (
            2 + 19 * 8,
            format!("[\"{}\",\"{}\"]", fixed(p, 2), fixed(q, 8)),
        ),
        (18, "9.223372036854775807".into()),
        (0, "-9223372036854775808".into()),
        (0, b.update_id.to_string()),
        (0, hermes_book::clock::rfc3339(1_786_309_548_505_350_477)),
        (0, "2026-08-09T23:05:48.1706+02:00".into()),
    ];
    for (k, (sel, text)) in seeds.iter().enumerate() {
        out.put(
            "decimal",
            &format!("seed-{k}"),
            &[&[*sel][..], text.as_bytes()].concat(),
        );
    }
}

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("seeds").to_path_buf());
    let out = Out { dir };
    coinbase(&out);
    binance(&out);
    futures(&out);
    exchange(&out);
    webhook(&out);
    capture(&out);
    config(&out);
    shm(&out);
    decimal(&out);
}
