//! A synthetic market: random-walk books for N instruments per venue, emitted as valid
//! Coinbase Advanced Trade and Binance spot frames (with Binance REST depth snapshots).
//!
//! It keeps the books it emits, so it can also answer "what is the book now" (the
//! simulator's resubscribe and REST snapshot), and its output is deterministic for a
//! seed, so tests can generate the same sample twice.

use std::collections::BTreeMap;
use std::fmt::Write;

use hermes_book::clock::rfc3339;
use hermes_book::Venue;

/// Generator settings.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Venues to emit.
    pub venues: Vec<Venue>,
    /// Instruments per venue.
    pub instruments: usize,
    /// Levels per side in the initial books.
    pub depth: usize,
    /// Seed of the pseudo-random sequence.
    pub seed: u64,
    /// Receive time of the first frame, Unix ns.
    pub start_ns: i64,
    /// Time between frames, ns.
    pub interval_ns: i64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            venues: vec![Venue::Coinbase, Venue::Binance],
            instruments: 3,
            depth: 50,
            seed: 7,
            start_ns: 1_786_309_548_000_000_000,
            interval_ns: 1_000_000,
        }
    }
}

/// One emitted frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthFrame {
    /// Venue.
    pub venue: Venue,
    /// For a Binance REST depth snapshot: its symbol.
    pub rest_symbol: Option<String>,
    /// Receive time, Unix ns.
    pub recv_ts_ns: i64,
    /// The frame text.
    pub data: String,
}

/// A small deterministic PRNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// `true` with probability `p` percent.
    pub fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// A level as (price ticks, size units).
type Tick = (i64, i64);

/// A synthetic book: prices in cents (2 decimals), sizes in 1e-8 units.
#[derive(Clone, Debug)]
pub struct SynthBook {
    /// Venue.
    pub venue: Venue,
    /// Symbol.
    pub symbol: String,
    /// Mid price in ticks; bids are below, asks above.
    pub mid: i64,
    /// Bid levels: ticks → size units.
    pub bids: BTreeMap<i64, i64>,
    /// Ask levels.
    pub asks: BTreeMap<i64, i64>,
    /// Binance update id of the last change.
    pub update_id: u64,
    /// Last trade id.
    pub trade_id: u64,
    depth: i64,
}

/// Formats a mantissa with exactly `decimals` decimals (Binance style: `61837.63000000`).
pub fn fixed(m: i64, decimals: u8) -> String {
    format!("{:#}", hermes_book::Decimal::new(m, decimals))
}

/// Canonical decimal (Coinbase style: `65083.66`, `0.00583`).
pub fn canon(m: i64, decimals: u8) -> String {
    hermes_book::Decimal::new(m, decimals).to_string()
}

impl SynthBook {
    fn new(venue: Venue, symbol: String, mid: i64, depth: usize, rng: &mut Rng) -> SynthBook {
        let mut b = SynthBook {
            venue,
            symbol,
            mid,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            update_id: 1_000 + rng.below(1_000_000),
            trade_id: 1_000 + rng.below(1_000_000),
            depth: depth as i64,
        };
        for d in 1..=depth as i64 {
            b.bids.insert(mid - d, 1 + rng.below(500_000_000) as i64);
            b.asks.insert(mid + d, 1 + rng.below(500_000_000) as i64);
        }
        b
    }

    /// A random set of level changes (absolute sizes; 0 deletes), applied to the model.
    fn step(&mut self, rng: &mut Rng) -> Vec<(bool, i64, i64)> {
        let mut ch = Vec::new();
        if rng.pct(5) {
            let up = rng.pct(50);
            self.mid += if up { 1 } else { -1 };
            // Keep the book uncrossed: the level now at the mid leaves.
            let (book, is_bid) = if up {
                (&mut self.asks, false)
            } else {
                (&mut self.bids, true)
            };
            if book.remove(&self.mid).is_some() {
                ch.push((is_bid, self.mid, 0));
            }
        }
        for _ in 0..1 + rng.below(4) {
            let is_bid = rng.pct(50);
            let dist = 1 + rng.below(self.depth as u64) as i64;
            let px = if is_bid {
                self.mid - dist
            } else {
                self.mid + dist
            };
            let book = if is_bid {
                &mut self.bids
            } else {
                &mut self.asks
            };
            let qty = if rng.pct(25) && book.len() > 3 {
                0
            } else {
                1 + rng.below(500_000_000) as i64
            };
            if qty == 0 {
                if book.remove(&px).is_none() {
                    continue;
                }
            } else {
                book.insert(px, qty);
            }
            ch.push((is_bid, px, qty));
        }
        ch
    }

    fn best(&self) -> (Option<Tick>, Option<Tick>) {
        (
            self.bids.iter().next_back().map(|(p, q)| (*p, *q)),
            self.asks.iter().next().map(|(p, q)| (*p, *q)),
        )
    }

    /// The book as a Binance REST depth body.
    pub fn binance_rest(&self, limit: usize) -> String {
        let mut s = format!("{{\"lastUpdateId\":{},\"bids\":[", self.update_id);
        for (k, (p, q)) in self.bids.iter().rev().take(limit).enumerate() {
            let _ = write!(
                s,
                "{}[\"{}\",\"{}\"]",
                if k > 0 { "," } else { "" },
                fixed(*p, 2),
                fixed(*q, 8)
            );
        }
        s.push_str("],\"asks\":[");
        for (k, (p, q)) in self.asks.iter().take(limit).enumerate() {
            let _ = write!(
                s,
                "{}[\"{}\",\"{}\"]",
                if k > 0 { "," } else { "" },
                fixed(*p, 2),
                fixed(*q, 8)
            );
        }
        s.push_str("]}");
        s
    }

    /// The book as one Coinbase `l2_data` snapshot event (without the envelope).
    pub fn coinbase_snapshot_event(&self, time: &str) -> String {
        let mut s = format!(
            "{{\"type\":\"snapshot\",\"product_id\":\"{}\",\"updates\":[",
            self.symbol
        );
        let mut first = true;
        for (side, book) in [
            ("bid", self.bids.iter().rev().collect::<Vec<_>>()),
            ("offer", self.asks.iter().collect()),
        ] {
            for (p, q) in book {
                let _ = write!(
                    s,
                    "{}{{\"side\":\"{side}\",\"event_time\":\"{time}\",\"price_level\":\"{}\",\"new_quantity\":\"{}\"}}",
                    if first { "" } else { "," },
                    canon(*p, 2),
                    canon(*q, 8)
                );
                first = false;
            }
        }
        s.push_str("]}");
        s
    }
}

/// The generator: an endless, deterministic stream of frames.
pub struct Synth {
    opts: SynthOptions,
    rng: Rng,
    /// Books by venue, in emission order.
    pub books: Vec<SynthBook>,
    /// Frames still to emit before the random stream (subscriptions, snapshots).
    queue: std::collections::VecDeque<(Venue, Option<String>, String)>,
    coinbase_seq: u64,
    now: i64,
    emitted: u64,
}

impl Synth {
    /// A generator; the first frames it emits open each venue's stream.
    pub fn new(opts: SynthOptions) -> Synth {
        let mut rng = Rng::new(opts.seed);
        let mut books = Vec::new();
        for &v in &opts.venues {
            for k in 0..opts.instruments {
                let symbol = match v {
                    Venue::Coinbase => format!("SYN{k}-USD"),
                    _ => format!("SYN{k}USDT"),
                };
                let mid = 100_000 + rng.below(5_000_000) as i64;
                books.push(SynthBook::new(v, symbol, mid, opts.depth, &mut rng));
            }
        }
        let mut s = Synth {
            now: opts.start_ns,
            opts,
            rng,
            books,
            queue: Default::default(),
            coinbase_seq: 0,
            emitted: 0,
        };
        s.open_streams();
        s
    }

    fn open_streams(&mut self) {
        let cb: Vec<usize> = (0..self.books.len())
            .filter(|&i| self.books[i].venue == Venue::Coinbase)
            .collect();
        if !cb.is_empty() {
            let ids: Vec<String> = cb
                .iter()
                .map(|&i| format!("\"{}\"", self.books[i].symbol))
                .collect();
            let subs = format!(
                "{{\"subscriptions\":{{\"level2\":[{0}],\"market_trades\":[{0}],\"heartbeats\":[\"heartbeats\"]}}}}",
                ids.join(",")
            );
            let f = self.coinbase_frame("subscriptions", &subs);
            self.queue.push_back((Venue::Coinbase, None, f));
            for &i in &cb {
                let ev = self.books[i].coinbase_snapshot_event(&rfc3339(self.now));
                let f = self.coinbase_frame("l2_data", &ev);
                self.queue.push_back((Venue::Coinbase, None, f));
            }
        }
        let bn: Vec<usize> = (0..self.books.len())
            .filter(|&i| self.books[i].venue == Venue::Binance)
            .collect();
        for &i in &bn {
            // As on the real stream, a couple of diffs arrive before the REST snapshot
            // (they are covered by it and must be dropped by the client).
            let early = self.binance_depth(i);
            let snapshot = self.books[i].binance_rest(5000);
            let sym = self.books[i].symbol.clone();
            self.queue.push_back((Venue::Binance, None, early));
            self.queue.push_back((Venue::Binance, Some(sym), snapshot));
        }
    }

    fn coinbase_frame(&mut self, channel: &str, event: &str) -> String {
        let f = format!(
            "{{\"channel\":\"{channel}\",\"client_id\":\"\",\"timestamp\":\"{}\",\"sequence_num\":{},\"events\":[{event}]}}",
            rfc3339(self.now),
            self.coinbase_seq
        );
        self.coinbase_seq += 1;
        f
    }

    fn binance_depth(&mut self, i: usize) -> String {
        let ch = self.books[i].step(&mut self.rng);
        let b = &mut self.books[i];
        let first = b.update_id + 1;
        b.update_id += 1 + self.rng.below(3);
        let (mut bids, mut asks) = (String::new(), String::new());
        for (is_bid, p, q) in ch {
            let out = if is_bid { &mut bids } else { &mut asks };
            let _ = write!(
                out,
                "{}[\"{}\",\"{}\"]",
                if out.is_empty() { "" } else { "," },
                fixed(p, 2),
                fixed(q, 8)
            );
        }
        let s = b.symbol.to_lowercase();
        format!(
            "{{\"stream\":\"{s}@depth@100ms\",\"data\":{{\"e\":\"depthUpdate\",\"E\":{},\"s\":\"{}\",\"U\":{first},\"u\":{},\"b\":[{bids}],\"a\":[{asks}]}}}}",
            self.now / 1_000_000,
            b.symbol,
            b.update_id
        )
    }

    fn random_frame(&mut self) -> (Venue, String) {
        let i = self.rng.below(self.books.len() as u64) as usize;
        let venue = self.books[i].venue;
        let roll = self.rng.below(100);
        let f = match venue {
            Venue::Coinbase if roll < 5 => {
                let ev = format!(
                    "{{\"current_time\":\"{}\",\"heartbeat_counter\":{}}}",
                    rfc3339(self.now),
                    self.emitted
                );
                self.coinbase_frame("heartbeats", &ev)
            }
            Venue::Coinbase if roll < 20 => {
                let n = 1 + self.rng.below(3);
                let mut trades = String::new();
                for k in 0..n {
                    let buy = self.rng.pct(50);
                    let b = &mut self.books[i];
                    let (bid, ask) = b.best();
                    let px = if buy { ask } else { bid }.map_or(b.mid, |l| l.0);
                    b.trade_id += 1;
                    let _ = write!(
                        trades,
                        "{}{{\"product_id\":\"{}\",\"trade_id\":\"{}\",\"price\":\"{}\",\"size\":\"{}\",\"time\":\"{}\",\"side\":\"{}\"}}",
                        if k > 0 { "," } else { "" },
                        b.symbol,
                        b.trade_id,
                        canon(px, 2),
                        canon(1 + self.rng.below(100_000_000) as i64, 8),
                        rfc3339(self.now),
                        if buy { "BUY" } else { "SELL" }
                    );
                }
                self.coinbase_frame(
                    "market_trades",
                    &format!("{{\"type\":\"update\",\"trades\":[{trades}]}}"),
                )
            }
            Venue::Coinbase => {
                let ch = self.books[i].step(&mut self.rng);
                let time = rfc3339(self.now);
                let mut ups = String::new();
                for (k, (is_bid, p, q)) in ch.iter().enumerate() {
                    let _ = write!(
                        ups,
                        "{}{{\"side\":\"{}\",\"event_time\":\"{time}\",\"price_level\":\"{}\",\"new_quantity\":\"{}\"}}",
                        if k > 0 { "," } else { "" },
                        if *is_bid { "bid" } else { "offer" },
                        canon(*p, 2),
                        canon(*q, 8)
                    );
                }
                let ev = format!(
                    "{{\"type\":\"update\",\"product_id\":\"{}\",\"updates\":[{ups}]}}",
                    self.books[i].symbol
                );
                self.coinbase_frame("l2_data", &ev)
            }
            _ if roll < 60 => self.binance_depth(i),
            _ if roll < 85 => {
                let b = &self.books[i];
                let (bid, ask) = b.best();
                let (bp, bq) = bid.unwrap_or((b.mid - 1, 1));
                let (ap, aq) = ask.unwrap_or((b.mid + 1, 1));
                format!(
                    "{{\"stream\":\"{}@bookTicker\",\"data\":{{\"u\":{},\"s\":\"{}\",\"b\":\"{}\",\"B\":\"{}\",\"a\":\"{}\",\"A\":\"{}\"}}}}",
                    b.symbol.to_lowercase(),
                    b.update_id,
                    b.symbol,
                    fixed(bp, 2),
                    fixed(bq, 8),
                    fixed(ap, 2),
                    fixed(aq, 8)
                )
            }
            _ => {
                let buyer_maker = self.rng.pct(50);
                let qty = 1 + self.rng.below(100_000_000) as i64;
                let b = &mut self.books[i];
                let (bid, ask) = b.best();
                let px = if buyer_maker { bid } else { ask }.map_or(b.mid, |l| l.0);
                b.trade_id += 1;
                let ms = self.now / 1_000_000;
                format!(
                    "{{\"stream\":\"{}@trade\",\"data\":{{\"e\":\"trade\",\"E\":{ms},\"s\":\"{}\",\"t\":{},\"p\":\"{}\",\"q\":\"{}\",\"T\":{ms},\"m\":{buyer_maker},\"M\":true}}}}",
                    b.symbol.to_lowercase(),
                    b.symbol,
                    b.trade_id,
                    fixed(px, 2),
                    fixed(qty, 8)
                )
            }
        };
        (venue, f)
    }

    /// The next frame.
    pub fn next_frame(&mut self) -> SynthFrame {
        let (venue, rest_symbol, data) = match self.queue.pop_front() {
            Some(q) => q,
            None => {
                let (v, f) = self.random_frame();
                (v, None, f)
            }
        };
        let f = SynthFrame {
            venue,
            rest_symbol,
            recv_ts_ns: self.now,
            data,
        };
        self.now += self.opts.interval_ns;
        self.emitted += 1;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_the_parser() {
        for ns in [0i64, 1_786_309_548_505_350_477, 951_782_400_000_000_001] {
            let t = rfc3339(ns);
            assert_eq!(
                hermes_ingest::json::parse_rfc3339_ns(t.as_bytes()),
                Some(ns),
                "{t}"
            );
        }
    }

    #[test]
    fn deterministic_and_uncrossed() {
        let mut a = Synth::new(SynthOptions::default());
        let mut b = Synth::new(SynthOptions::default());
        for _ in 0..2000 {
            assert_eq!(a.next_frame(), b.next_frame());
        }
        for book in &a.books {
            let (bid, ask) = book.best();
            assert!(bid.unwrap().0 < ask.unwrap().0, "{} crossed", book.symbol);
        }
        assert_eq!(fixed(6_183_763, 2), "61837.63");
        assert_eq!(fixed(5, 8), "0.00000005");
    }
}
