//! The generator's frames of the new venues, straight into the real decoder (as
//! `hermes generate` then `hermes replay` would): no error, no gap, the generator's own
//! books, and the shape real feeds have.

use std::collections::HashMap;

use hermes_ingest::{FrameKind, Venue};

use super::ClientBooks;
use crate::synth::{Synth, SynthOptions};

/// `frames` frames of `venue`, decoded; the generator and the frames.
fn decoded(venue: Venue, instruments: usize, frames: usize) -> (Synth, Vec<String>) {
    let mut synth = Synth::new(SynthOptions {
        venues: vec![venue],
        instruments,
        depth: 30,
        seed: 3,
        ..SynthOptions::default()
    });
    let mut books = ClientBooks::new(venue);
    let mut texts = Vec::new();
    for _ in 0..frames {
        let f = synth.next_frame();
        assert_eq!(f.venue, venue);
        match &f.rest_symbol {
            Some(s) => books.decode(
                FrameKind::RestDepth {
                    symbol: s.as_bytes(),
                },
                &f.data,
            ),
            None => books.ws(&f.data),
        }
        texts.push(f.data);
    }
    let st = books.stats();
    assert_eq!(
        (st.parse_errors, st.venue_errors, st.gaps),
        (0, 0, 0),
        "{st:?}"
    );
    assert_eq!(st.snapshots, instruments as u64, "{st:?}");
    books.assert_equal(&synth);
    (synth, texts)
}

fn payload(f: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(f).unwrap();
    v.get("data").cloned().unwrap_or(v)
}

fn futures_frames_are_valid_and_realistic(venue: Venue) {
    let (synth, frames) = decoded(venue, 3, 30_000);
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut last_u: HashMap<String, u64> = HashMap::new();
    let (mut skips, mut negative) = (0, 0);
    for f in frames.iter().filter(|f| f.starts_with("{\"stream\"")) {
        let d = payload(f);
        let e = d["e"].as_str().unwrap().to_string();
        *kinds.entry(e.clone()).or_default() += 1;
        match e.as_str() {
            "depthUpdate" => {
                let (first, last, prev) = (
                    d["U"].as_u64().unwrap(),
                    d["u"].as_u64().unwrap(),
                    d["pu"].as_u64().unwrap(),
                );
                let s = d["s"].as_str().unwrap().to_string();
                if let Some(l) = last_u.insert(s, last) {
                    assert_eq!(prev, l, "pu chains: {f}");
                }
                assert!(first > prev && first <= last, "{f}");
                skips += usize::from(first > prev + 1);
            }
            "markPriceUpdate" => {
                let funding = d["r"].as_str().unwrap();
                assert_eq!(funding.split('.').nth(1).unwrap().len(), 8, "{f}");
                negative += usize::from(funding.starts_with('-'));
                let next = d["T"].as_i64().unwrap();
                let now = d["E"].as_i64().unwrap();
                assert_eq!(next % (8 * 3_600_000), 0, "{f}");
                assert!(next > now && next - now <= 8 * 3_600_000, "{f}");
            }
            "trade" | "forceOrder" if venue == Venue::BinanceCoinm => {
                let q = d.get("q").or(d["o"].get("q")).unwrap().as_str().unwrap();
                assert!(!q.contains('.'), "whole contracts: {f}");
            }
            _ => {}
        }
    }
    // U is often more than the previous u + 1: other events took ids in between.
    assert!(skips > 100, "{skips}");
    assert!(negative > 0);
    // About one mark price a simulated second per symbol (frames are 1 ms apart).
    let marks = kinds["markPriceUpdate"];
    assert!((80..=100).contains(&marks), "{marks}");
    for k in [
        "depthUpdate",
        "bookTicker",
        "trade",
        "aggTrade",
        "forceOrder",
    ] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 0, "no {k}: {kinds:?}");
    }
    let symbols: Vec<&str> = synth.books.iter().map(|b| b.symbol.as_str()).collect();
    if venue == Venue::BinanceCoinm {
        assert_eq!(symbols, ["SYN0USD_PERP", "SYN1USD_PERP", "SYN2USD_PERP"]);
        assert!(frames[0].contains("\"ps\":\"SYN0USD\""), "{}", frames[0]);
    } else {
        assert_eq!(symbols, ["SYN0USDT", "SYN1USDT", "SYN2USDT"]);
    }
}

#[test]
fn usdm_frames_decode_without_errors_or_gaps() {
    futures_frames_are_valid_and_realistic(Venue::BinanceUsdm);
}

#[test]
fn coinm_frames_decode_without_errors_or_gaps() {
    futures_frames_are_valid_and_realistic(Venue::BinanceCoinm);
}

#[test]
fn exchange_frames_decode_without_errors_or_gaps() {
    let (synth, frames) = decoded(Venue::CoinbaseExchange, 3, 30_000);
    let mut trade: HashMap<String, u64> = HashMap::new();
    let mut heartbeats = 0;
    for f in &frames {
        let v = payload(f);
        let product = v["product_id"].as_str().unwrap_or("").to_string();
        match v["type"].as_str().unwrap() {
            "last_match" => {
                trade.insert(product, v["trade_id"].as_u64().unwrap());
            }
            "match" => {
                let id = v["trade_id"].as_u64().unwrap();
                assert_eq!(trade.insert(product, id), Some(id - 1), "contiguous: {f}");
            }
            "heartbeat" => {
                heartbeats += 1;
                assert_eq!(v["last_trade_id"].as_u64(), trade.get(&product).copied());
            }
            "ticker" => assert_eq!(v["trade_id"].as_u64(), trade.get(&product).copied()),
            _ => {}
        }
    }
    // A heartbeat a simulated second per product.
    assert!((80..=100).contains(&heartbeats), "{heartbeats}");
    let products: Vec<&str> = synth.books.iter().map(|b| b.symbol.as_str()).collect();
    assert_eq!(products, ["SYN0-USD", "SYN1-USD", "SYN2-USD"]);
}
