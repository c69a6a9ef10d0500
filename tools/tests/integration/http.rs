//! The HTTP face against a real server on a loopback port: `hermes run` ingesting from
//! `hermes sim`, probed with a real HTTP client.
// Every child ends up in a `Proc` or a `Sim`, which kill and wait for it on drop.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hermes_persist::local_pg;

use crate::common::{self, generate, parse_metrics, Sim, TempDir};

fn hermes() -> Command {
    let mut c = common::hermes();
    c.env("RUST_LOG", "info");
    c
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The simulator serving a Coinbase capture (generated on first use in `dir`) at 20x on
/// `listen`.
fn start_sim(dir: &TempDir, listen: &str) -> Sim {
    let cap = dir.path("cb.hcap");
    if !cap.exists() {
        generate(
            dir,
            "cb.hcap",
            &[
                "--venues",
                "coinbase",
                "--instruments",
                "3",
                "--frames",
                "400000",
            ],
        );
    }
    Sim::start(&[
        "--venue",
        "coinbase",
        "--speed",
        "20x",
        "--listen",
        listen,
        "--capture",
        cap.to_str().unwrap(),
    ])
}

struct Engine {
    proc: Proc,
    base: String,
    log: mpsc::Receiver<String>,
}

fn start_run(dir: &Path, ws: &str, env: &[(&str, &str)]) -> Engine {
    let mut c = hermes();
    c.arg("run")
        .arg("--shm")
        .arg(dir.join("shm"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--duration",
            "120",
            "--reconnect-min-ms",
            "50",
            "--reconnect-max-ms",
            "100",
        ])
        .env("COINBASE_WS_URL", ws)
        .env("COINBASE_PRODUCTS", "SYN0-USD,SYN1-USD,SYN2-USD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no HTTP address logged");
        if let Some(i) = line.find("HTTP on http://") {
            let addr = line[i + 15..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
            return Engine {
                proc: Proc(child),
                base: addr,
                log: rx,
            };
        }
    }
}

fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    common::http_get(url, headers).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = common::agent()
        .post(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body).unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    common::wait_for(what, Duration::from_secs(30), cond)
}

#[test]
fn endpoints_metrics_sse_and_readiness() {
    let dir = TempDir::new("http-main");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let sim = start_sim(&dir, &listen);
    let eng = start_run(&dir.0, &sim.url, &[]);
    let base = format!("http://{}", eng.base);

    wait_for("liveness", || {
        get(&format!("{base}/health/liveness"), &[]).0 == 200
    });
    wait_for("readiness", || {
        get(&format!("{base}/health/readiness"), &[]).0 == 200
    });

    // Metrics parse and move while frames flow.
    let m1 = parse_metrics(&get(&format!("{base}/metrics"), &[]).1);
    wait_for("frames to flow", || {
        let m2 = parse_metrics(&get(&format!("{base}/metrics"), &[]).1);
        m2["hermes_frames_received_total"] > m1["hermes_frames_received_total"]
            && m2["hermes_book_events_applied_total"] > 0.0
    });
    let m = parse_metrics(&get(&format!("{base}/metrics"), &[]).1);
    assert_eq!(m["hermes_feed_connected{venue=\"coinbase\"}"], 1.0);
    assert_eq!(m["hermes_circuit_breaker_state{venue=\"coinbase\"}"], 0.0);
    assert!(m.contains_key("hermes_book_apply_seconds_bucket{le=\"+Inf\"}"));
    assert!(m.contains_key("hermes_receive_lag_seconds_count"));

    // REST from the shm file.
    let (st, body) = get(&format!("{base}/symbols"), &[]);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["symbols"].as_array().unwrap().len(), 3, "{body}");
    let (st, body) = get(&format!("{base}/symbols/coinbase:SYN1-USD"), &[]);
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["bid_px"].is_string() && v["bids"].as_array().unwrap().len() == 10,
        "{body}"
    );
    assert_eq!(
        get(&format!("{base}/symbols/SYN1-USD"), &[]).0,
        200,
        "a bare symbol works when unique"
    );
    let (st, body) = get(&format!("{base}/symbols/coinbase:NOPE"), &[]);
    assert_eq!(st, 404, "{body}");
    let (st, body) = get(
        &format!("{base}/symbols/coinbase:SYN1-USD/history?limit=5"),
        &[],
    );
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("no database configured"), "{body}");

    // SSE: a stalled client does not delay a reading one.
    let stalled = common::agent()
        .get(&format!("{base}/stream"))
        .call()
        .unwrap();
    let r = common::agent()
        .get(&format!("{base}/stream?symbols=coinbase:SYN0-USD,SYN2-USD"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut lines = BufReader::new(r.into_body().into_reader()).lines();
    let mut last_id: std::collections::HashMap<String, u64> = Default::default();
    let mut events = 0;
    let start = Instant::now();
    while events < 30 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "SSE too slow: {events} events"
        );
        let line = lines.next().unwrap().unwrap();
        if let Some(id) = line.strip_prefix("id: ") {
            let id: u64 = id.parse().unwrap();
            let data = lines.next().unwrap().unwrap();
            let data = data
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{data}"));
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            let sym = v["id"].as_str().unwrap().to_string();
            assert!(
                sym == "coinbase:SYN0-USD" || sym == "coinbase:SYN2-USD",
                "{sym}"
            );
            if let Some(prev) = last_id.insert(sym.clone(), id) {
                assert!(id > prev, "{sym}: {id} after {prev}");
            }
            events += 1;
        }
    }
    drop(stalled);

    // Readiness flips when the feed drops and recovers when it returns.
    drop(sim);
    wait_for("readiness to fail", || {
        let (st, body) = get(&format!("{base}/health/readiness"), &[]);
        st == 503 && body.contains("coinbase feed disconnected")
    });
    let _sim2 = start_sim(&dir, &listen);
    wait_for("readiness to recover", || {
        get(&format!("{base}/health/readiness"), &[]).0 == 200
    });
    let m = parse_metrics(&get(&format!("{base}/metrics"), &[]).1);
    assert!(m["hermes_reconnects_total{venue=\"coinbase\"}"] >= 1.0);
    drop(eng.proc);
    drop(eng.log);
}

#[test]
fn webhook_auth_validation_idempotency_and_api_key() {
    let dir = TempDir::new("http-hook");
    let sim = start_sim(&dir, "127.0.0.1:0");
    let eng = start_run(
        &dir.0,
        &sim.url,
        &[
            ("INGEST_USERNAME", "feeder"),
            ("INGEST_PASSWORD", "s3cret"),
            ("API_KEY", "k-123"),
            ("HERMES_WEBHOOK_MAX_SYMBOLS", "2"),
        ],
    );
    let base = format!("http://{}", eng.base);
    let url = format!("{base}/ingest/tick");
    use base64::Engine as _;
    let good_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("feeder:s3cret")
    );
    let bad_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("feeder:nope")
    );
    let tick = r#"{"symbol":"ACME-USD","price":"101.25","volume":3,"source":"desk","ts":"2026-08-09T21:05:48Z","event_id":"t-1"}"#;

    assert_eq!(post(&url, tick, &[]).0, 401);
    assert_eq!(post(&url, tick, &[("authorization", &bad_auth)]).0, 401);
    let auth = [("authorization", good_auth.as_str())];
    for (body, want) in [
        (
            r#"{"symbol":"ACME-USD","price":"101.25","volume":3,"source":"desk","ts":"2026-08-09T21:05:48Z"}"#,
            "missing field `event_id`",
        ),
        (
            r#"{"symbol":"ACME-USD","price":0,"volume":3,"source":"desk","ts":1786309548000,"event_id":"x"}"#,
            "`price` must be > 0",
        ),
        (
            r#"{"symbol":"ACME-USD","price":-5,"volume":3,"source":"desk","ts":1786309548000,"event_id":"x"}"#,
            "negative",
        ),
        (
            r#"{"symbol":"ACME-USD","price":1,"volume":3,"source":"desk","ts":"noon","event_id":"x"}"#,
            "RFC 3339",
        ),
        ("this is not json", "not JSON"),
    ] {
        let (st, resp) = post(&url, body, &auth);
        assert_eq!(st, 422, "{body} → {resp}");
        assert!(resp.contains(want), "{resp} should contain {want}");
    }
    let huge = format!(r#"{{"symbol":"ACME-USD","pad":"{}"}}"#, "x".repeat(100_000));
    assert_eq!(post(&url, &huge, &auth).0, 413);

    let (st, resp) = post(&url, tick, &auth);
    assert_eq!(st, 202, "{resp}");
    let (st, resp) = post(&url, tick, &auth);
    assert_eq!(st, 200, "{resp}");
    assert!(resp.contains("duplicate"), "{resp}");

    // Public reads need the key; the tick reached the book (as a trade) through the ring.
    assert_eq!(get(&format!("{base}/symbols"), &[]).0, 401);
    assert_eq!(
        get(&format!("{base}/symbols"), &[("x-api-key", "wrong")]).0,
        401
    );
    let key = [("x-api-key", "k-123")];
    let mut body = String::new();
    wait_for("the tick in shm", || {
        let (st, b) = get(&format!("{base}/symbols/webhook:ACME-USD"), &key);
        body = b;
        st == 200
    });
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["trades"], 1, "{body}");
    assert_eq!(v["last_trade"]["price"], "101.25", "{body}");
    assert_eq!(v["last_trade"]["size"], "3", "{body}");
    let m = parse_metrics(&get(&format!("{base}/metrics"), &[]).1);
    assert_eq!(m["hermes_webhook_ticks_total{outcome=\"accepted\"}"], 1.0);
    assert_eq!(m["hermes_webhook_ticks_total{outcome=\"duplicate\"}"], 1.0);

    // Webhook symbols have their own allowance (2 here): a third symbol gets a 429, the
    // symbols already seen still get through, and the venues' slots are never touched.
    let tick_of = |sym: &str, id: &str| {
        format!(
            r#"{{"symbol":"{sym}","price":"1","volume":1,"source":"desk","ts":1786309548000,"event_id":"{id}"}}"#
        )
    };
    assert_eq!(post(&url, &tick_of("B-USD", "t-2"), &auth).0, 202);
    let (st, resp) = post(&url, &tick_of("C-USD", "t-3"), &auth);
    assert_eq!(st, 429, "{resp}");
    assert!(resp.contains("limit of 2 webhook symbols"), "{resp}");
    assert_eq!(post(&url, &tick_of("ACME-USD", "t-4"), &auth).0, 202);
    let m = parse_metrics(&get(&format!("{base}/metrics"), &[]).1);
    assert_eq!(m["hermes_webhook_symbol_limit_total"], 1.0);
    drop(eng);
}

#[test]
fn duplicate_ticks_are_applied_once_in_postgresql() {
    if !local_pg::available_or_required() {
        return;
    }
    let pg = local_pg::shared().expect("the test cluster");
    let url = pg.fresh_database("hook").unwrap();
    let dir = TempDir::new("http-hookdb");
    let mut c = hermes();
    c.arg("run")
        .arg("--shm")
        .arg(dir.path("shm"))
        .arg("--journal")
        .arg(dir.path("journal"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--duration",
            "60",
            "--database-url",
            &url,
        ])
        .env("INGEST_USERNAME", "u")
        .env("INGEST_PASSWORD", "p")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let base = loop {
        let line = lines.next().expect("hermes run exited").unwrap();
        if let Some(i) = line.find("HTTP on http://") {
            break format!(
                "http://{}",
                line[i + 15..].split_whitespace().next().unwrap()
            );
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let proc = Proc(child);
    use base64::Engine as _;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p")
    );
    let url_tick = format!("{base}/ingest/tick");
    for (id, price) in [
        ("a", "10"),
        ("b", "11.5"),
        ("a", "10"),
        ("a", "10"),
        ("c", "12"),
    ] {
        let body = format!(
            r#"{{"symbol":"ACME","price":"{price}","volume":"1","source":"t","ts":1786309548000,"event_id":"{id}"}}"#
        );
        let (st, resp) = post(&url_tick, &body, &[("authorization", &auth)]);
        assert!(st == 202 || st == 200, "{resp}");
    }
    // History comes from PostgreSQL once the persister has written the batch.
    let mut body = String::new();
    wait_for("trades in PostgreSQL", || {
        let (st, b) = get(
            &format!("{base}/symbols/webhook:ACME/history?limit=10"),
            &[],
        );
        body = b;
        st == 200 && body.matches("trade_id").count() == 3
    });
    assert!(body.contains("\"price\":\"11.5\""), "{body}");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM trades WHERE venue = 'webhook'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "duplicates applied once");
    drop(proc);
}

/// `hermes serve` over a file with a USD-M perpetual (mark, index, funding, liquidations),
/// a COIN-M one and a Coinbase Exchange book: the detail shows the derivatives only for
/// the perpetuals, and every venue by name.
#[test]
fn symbol_detail_shows_derivatives_and_new_venues() {
    use hermes_shm::{
        ShmWriter, TopOfBook, Venue, WriterOptions, FLAG_HAS_ASK, FLAG_HAS_BID, FLAG_HAS_DERIVS,
    };
    let dir = TempDir::new("http-derivs");
    let shm = dir.path("shm");
    let mut w = ShmWriter::create(
        &shm,
        WriterOptions {
            slots: 4,
            group_readable: false,
            replace_foreign: false,
        },
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
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
    let perp = TopOfBook {
        flags: book.flags | FLAG_HAS_DERIVS,
        mark_px: 6_185_012_000_000,
        index_px: 6_184_990_050_000,
        funding_rate: -37_500,
        // An hour ahead: far beyond any delay of this test.
        next_funding_ns: now + 3_600_000_000_000,
        derivs_ts_ns: now - 1_000_000,
        liquidations: 2,
        ..book
    };
    let usdm = w
        .add_instrument(Venue::BinanceUsdm, "BTCUSDT", 1, 3)
        .unwrap();
    w.publish(usdm, &perp);
    let coinm = w
        .add_instrument(Venue::BinanceCoinm, "BTCUSD_PERP", 1, 0)
        .unwrap();
    w.publish(
        coinm,
        &TopOfBook {
            liquidations: 0,
            ..perp
        },
    );
    let cbx = w
        .add_instrument(Venue::CoinbaseExchange, "BTC-USD", 1, 3)
        .unwrap();
    w.publish(cbx, &book);
    w.heartbeat();

    let mut child = common::hermes()
        .args(["serve", "--http", "127.0.0.1:0", "--shm"])
        .arg(&shm)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let _serve = Proc(child);
    let base = url.trim().trim_end_matches('/').to_string();
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "serve printed {url:?}"
    );

    let (st, body) = get(&format!("{base}/symbols"), &[]);
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = v["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "binance-usdm:BTCUSDT",
            "binance-coinm:BTCUSD_PERP",
            "coinbase-exchange:BTC-USD"
        ]
    );

    let (st, body) = get(&format!("{base}/symbols/binance-usdm:BTCUSDT"), &[]);
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["venue"], "binance-usdm", "{body}");
    assert_eq!(v["size_unit"], "base", "{body}");
    let d = &v["derivs"];
    assert_eq!(d["mark_px"], "61850.12", "{body}");
    assert_eq!(d["index_px"], "61849.9005", "{body}");
    assert_eq!(d["funding_rate"], "-0.000375", "{body}");
    assert_eq!(d["next_funding_ns"], perp.next_funding_ns, "{body}");
    assert_eq!(d["ts_ns"], perp.derivs_ts_ns, "{body}");
    let next_ms = d["next_funding_in_ms"].as_f64().unwrap();
    assert!(next_ms > 0.0 && next_ms <= 3_600_000.0, "{body}");
    assert_eq!(v["liquidations"], 2, "{body}");

    let (st, body) = get(&format!("{base}/symbols/binance-coinm:BTCUSD_PERP"), &[]);
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["size_unit"], "contracts", "{body}");
    assert_eq!(v["derivs"]["mark_px"], "61850.12", "{body}");
    assert!(v.get("liquidations").is_none(), "{body}");

    let (st, body) = get(&format!("{base}/symbols/coinbase-exchange:BTC-USD"), &[]);
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["venue"], "coinbase-exchange", "{body}");
    assert_eq!(v["bid_px"], "61850.1", "{body}");
    assert!(
        v.get("derivs").is_none() && v.get("liquidations").is_none(),
        "{body}"
    );
    drop(w);
}
