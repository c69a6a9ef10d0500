//! Writes the seed corpora of the fuzz targets, from the project's own generator
//! (`hermes_sim::synth::Synth`) and simulator-shaped inputs: the faults the simulator
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

/// The simulator's faults (`hermes_sim::FaultKind`) applied to frame `at` of `frames`.
fn faulted(frames: &[Owned], at: usize) -> Vec<(&'static str, Vec<Line>)> {
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
    let mut oversize = all(None);
    oversize.insert(
        at,
        Line::Frame(Owned::ws(format!(
            r#"{{"channel":"status","pad":"{}"}}"#,
            "x".repeat(512)
        ))),
    );
    out.push(("oversize", oversize));
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
            for (name, lines) in faulted(&fs, 8) {
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
            for (name, lines) in faulted(&fs, 8) {
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
    webhook(&out);
    capture(&out);
    config(&out);
    shm(&out);
    decimal(&out);
}
