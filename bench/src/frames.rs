//! Benchmark inputs: the project's synthetic market (`hermes_sim::synth`), a Binance depth
//! stream shaped like the real one (≈1.3 KB frames, ~20 levels a side, 8-decimal
//! strings), and any capture file given by path.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use hermes_ingest::source::{Source, SourceOptions};
use hermes_ingest::{Frame, FrameKind, Venue};
use hermes_sim::synth::{fixed, Rng, Synth, SynthOptions};

/// A frame owned by the benchmark, with its class (venue and channel).
#[derive(Clone, Debug)]
pub struct OwnedFrame {
    /// Venue.
    pub venue: Venue,
    /// Symbol of a Binance REST depth snapshot.
    pub rest_symbol: Option<String>,
    /// Connection id.
    pub conn: u16,
    /// Receive time (the source's, or the generator's).
    pub recv_ts_ns: i64,
    /// The frame text.
    pub data: Vec<u8>,
    /// `venue.channel`, e.g. `binance.depth`.
    pub class: &'static str,
}

impl OwnedFrame {
    /// The decoder's view of the frame, received at `recv_ts_ns`.
    pub fn frame(&self, recv_ts_ns: i64) -> Frame<'_> {
        Frame {
            venue: self.venue,
            kind: match &self.rest_symbol {
                Some(s) => FrameKind::RestDepth {
                    symbol: s.as_bytes(),
                },
                None => FrameKind::Ws,
            },
            conn: self.conn,
            recv_ts_ns,
            data: &self.data,
        }
    }
}

fn between<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let i = s.find(key)? + key.len();
    let rest = &s[i..];
    Some(&rest[..rest.find('"')?])
}

/// The class of a frame: `venue.channel` (Coinbase channel, Binance event type).
pub fn classify(venue: Venue, rest: bool, data: &[u8]) -> &'static str {
    let s = std::str::from_utf8(data).unwrap_or("");
    match venue {
        Venue::Coinbase => match between(s, "\"channel\":\"") {
            Some("l2_data") if s.contains("\"type\":\"snapshot\"") => "coinbase.l2_snapshot",
            Some("l2_data") => "coinbase.l2_update",
            Some("market_trades") => "coinbase.market_trades",
            Some("heartbeats") => "coinbase.heartbeats",
            Some("ticker") | Some("ticker_batch") => "coinbase.ticker",
            Some("subscriptions") => "coinbase.subscriptions",
            _ => "coinbase.other",
        },
        Venue::Binance if rest => "binance.rest_snapshot",
        Venue::Binance => match between(s, "\"e\":\"") {
            Some("depthUpdate") => "binance.depth",
            Some("trade") => "binance.trade",
            Some("aggTrade") => "binance.aggTrade",
            Some(_) => "binance.other",
            None if s.contains("\"B\":") => "binance.bookTicker",
            None => "binance.other",
        },
        Venue::BinanceUsdm | Venue::BinanceCoinm if rest => "futures.rest_snapshot",
        Venue::BinanceUsdm | Venue::BinanceCoinm => match between(s, "\"e\":\"") {
            Some("depthUpdate") => "futures.depth",
            Some("trade") => "futures.trade",
            Some("aggTrade") => "futures.aggTrade",
            Some("bookTicker") => "futures.bookTicker",
            Some("markPriceUpdate") => "futures.markPrice",
            Some("forceOrder") => "futures.forceOrder",
            _ => "futures.other",
        },
        Venue::CoinbaseExchange => match between(s, "\"type\":\"") {
            Some("snapshot") => "exchange.snapshot",
            Some("l2update") => "exchange.l2update",
            Some("match") | Some("last_match") => "exchange.match",
            Some("ticker") => "exchange.ticker",
            _ => "exchange.other",
        },
        Venue::Webhook => "webhook",
    }
}

/// `n` frames of the project's synthetic market (both venues, 3 instruments each, the
/// default seed): what `hermes generate` and the simulator emit.
pub fn synthetic(n: usize) -> Vec<OwnedFrame> {
    synthetic_with(n, SynthOptions::default())
}

/// `n` synthetic frames with the given options.
pub fn synthetic_with(n: usize, opts: SynthOptions) -> Vec<OwnedFrame> {
    let mut s = Synth::new(opts);
    (0..n)
        .map(|_| {
            let f = s.next_frame();
            let class = classify(f.venue, f.rest_symbol.is_some(), f.data.as_bytes());
            OwnedFrame {
                venue: f.venue,
                rest_symbol: f.rest_symbol,
                conn: 0,
                recv_ts_ns: f.recv_ts_ns,
                data: f.data.into_bytes(),
                class,
            }
        })
        .collect()
}

/// A Binance `BTCUSDT` diff-depth stream shaped like the real `@depth@100ms` one: a REST
/// snapshot of `snapshot_levels` a side, then `n` diffs of 16–20 levels a side (≈1.3 KB)
/// with 8-decimal price and size strings, mostly near the touch, some deletions.
pub fn binance_depth20(n: usize, snapshot_levels: usize, seed: u64) -> Vec<OwnedFrame> {
    let mut rng = Rng::new(seed);
    let mut mid: i64 = 6_508_366; // cents
    let mut bids: BTreeMap<i64, i64> = BTreeMap::new();
    let mut asks: BTreeMap<i64, i64> = BTreeMap::new();
    for d in 1..=snapshot_levels as i64 {
        bids.insert(mid - d, 1 + rng.below(300_000_000) as i64);
        asks.insert(mid + d - 1, 1 + rng.below(300_000_000) as i64);
    }
    let px = |t: i64| fixed(t * 1_000_000, 8);
    let mut last_u: u64 = 51_472_749_231;
    let mut ms: i64 = 1_723_161_255_343;
    let mut out = Vec::with_capacity(n + 1);
    let mut rest = format!("{{\"lastUpdateId\":{last_u},\"bids\":[");
    for (k, (p, q)) in bids.iter().rev().enumerate() {
        let _ = write!(
            rest,
            "{}[\"{}\",\"{}\"]",
            if k > 0 { "," } else { "" },
            px(*p),
            fixed(*q, 8)
        );
    }
    rest.push_str("],\"asks\":[");
    for (k, (p, q)) in asks.iter().enumerate() {
        let _ = write!(
            rest,
            "{}[\"{}\",\"{}\"]",
            if k > 0 { "," } else { "" },
            px(*p),
            fixed(*q, 8)
        );
    }
    rest.push_str("]}");
    out.push(OwnedFrame {
        venue: Venue::Binance,
        rest_symbol: Some("BTCUSDT".into()),
        conn: 0,
        recv_ts_ns: ms * 1_000_000,
        data: rest.into_bytes(),
        class: "binance.rest_snapshot",
    });
    for _ in 0..n {
        // The mid wanders; the level it lands on leaves the far side.
        if rng.pct(10) {
            if rng.pct(50) {
                mid += 1;
                asks.remove(&(mid - 1));
            } else {
                mid -= 1;
                bids.remove(&mid);
            }
        }
        let mut sides = [String::new(), String::new()];
        for (side, text) in sides.iter_mut().enumerate() {
            let count = 16 + rng.below(5) as usize;
            let mut chosen: Vec<i64> = Vec::with_capacity(count);
            while chosen.len() < count {
                let r = rng.below(100);
                let dist = if r < 60 {
                    rng.below(20)
                } else if r < 90 {
                    rng.below(100)
                } else {
                    rng.below(snapshot_levels as u64)
                } as i64;
                let p = if side == 0 {
                    mid - 1 - dist
                } else {
                    mid + dist
                };
                if !chosen.contains(&p) {
                    chosen.push(p);
                }
            }
            chosen.sort_unstable();
            if side == 0 {
                chosen.reverse();
            }
            let book = if side == 0 { &mut bids } else { &mut asks };
            for (k, p) in chosen.iter().enumerate() {
                let q = if rng.pct(20) && book.contains_key(p) {
                    book.remove(p);
                    0
                } else {
                    let q = 1 + rng.below(300_000_000) as i64;
                    book.insert(*p, q);
                    q
                };
                let _ = write!(
                    text,
                    "{}[\"{}\",\"{}\"]",
                    if k > 0 { "," } else { "" },
                    px(*p),
                    fixed(q, 8)
                );
            }
        }
        let first = last_u + 1;
        last_u += 30 + rng.below(40);
        ms += 100;
        let data = format!(
            "{{\"stream\":\"btcusdt@depth@100ms\",\"data\":{{\"e\":\"depthUpdate\",\"E\":{ms},\"s\":\"BTCUSDT\",\"U\":{first},\"u\":{last_u},\"b\":[{}],\"a\":[{}]}}}}",
            sides[0], sides[1]
        );
        out.push(OwnedFrame {
            venue: Venue::Binance,
            rest_symbol: None,
            conn: 0,
            recv_ts_ns: ms * 1_000_000,
            data: data.into_bytes(),
            class: "binance.depth20",
        });
    }
    out
}

/// Every frame of a capture file (native or JSON lines, optionally compressed), in order.
pub fn capture(path: &Path, limit: usize) -> Result<Vec<OwnedFrame>> {
    let mut src = Source::open(path, &SourceOptions::default())
        .with_context(|| format!("opening capture {}", path.display()))?;
    let mut out = Vec::new();
    while out.len() < limit {
        let f = match src.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(hermes_ingest::source::SourceError::BadLine { .. }) => continue,
            Err(e) => return Err(e).context("reading the capture"),
        };
        let rest_symbol = match f.kind {
            FrameKind::RestDepth { symbol } => Some(String::from_utf8_lossy(symbol).into_owned()),
            FrameKind::Ws => None,
        };
        let class = classify(f.venue, rest_symbol.is_some(), f.data);
        out.push(OwnedFrame {
            venue: f.venue,
            rest_symbol,
            conn: f.conn,
            recv_ts_ns: f.recv_ts_ns,
            data: f.data.to_vec(),
            class,
        });
    }
    Ok(out)
}
