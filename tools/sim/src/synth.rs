//! A synthetic market: random-walk books for N instruments per venue, emitted as valid
//! frames of every venue the simulator speaks:
//!
//! - Coinbase Advanced Trade (`SYN0-USD`): `l2_data` snapshots and updates,
//!   `market_trades`, `heartbeats`, numbered by `sequence_num`;
//! - Binance spot (`SYN0USDT`): `depthUpdate` diffs (`U` = previous `u` + 1),
//!   `bookTicker`, `trade`, and a REST depth snapshot per symbol;
//! - Binance USD-M (`SYN0USDT`) and COIN-M (`SYN0USD_PERP`, sizes in whole contracts)
//!   futures: diffs chained by `pu` whose `U` skips ids other events used, `bookTicker`
//!   with ids in the depth id space, `trade` and `aggTrade`, a `markPriceUpdate` per
//!   symbol every simulated second, a `forceOrder` now and then, and a REST snapshot
//!   whose `lastUpdateId` the first diff after it straddles;
//! - Coinbase Exchange (`SYN0-USD`): `subscriptions`, a `snapshot` and a `last_match`
//!   per product, then `l2update`s, `match`es (contiguous `trade_id`) each with its
//!   `ticker`, and a `heartbeat` per product every simulated second.
//!
//! It keeps the books it emits, so it can also answer "what is the book now" (the
//! simulator's resubscribe and REST snapshot), and its output is deterministic for a
//! seed, so tests can generate the same sample twice. Adding a venue changes nothing in
//! what the others emit for the same seed.

use std::collections::BTreeMap;
use std::fmt::Write;

use hermes_book::clock::rfc3339;
use hermes_book::Venue;

mod binance_futures;
mod coinbase_exchange;

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

/// A synthetic book: prices and sizes in ticks of the venue's decimals (prices in cents;
/// sizes in 1e-8 units, except 1e-3 on USD-M and whole contracts on COIN-M).
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
    /// Decimals of prices and sizes.
    price_decimals: u8,
    size_decimals: u8,
    /// Largest size of a level, in size units.
    max_qty: u64,
    /// Binance futures: the `u` of the last depth diff (the next one's `pu`).
    last_diff_u: u64,
    /// Binance futures: the last aggregate trade id.
    agg_id: u64,
    /// Coinbase Exchange: the product's full-channel sequence.
    sequence: u64,
    /// Coinbase Exchange: the ticker's day statistics (open, low and high price ticks,
    /// volume in size units).
    day: (i64, i64, i64, i64),
    /// When the next periodic frame (futures mark price, Exchange heartbeat) is due, Unix
    /// ns; `i64::MAX` for venues without one.
    next_tick_ns: i64,
}

/// Formats a mantissa with exactly `decimals` decimals (Binance style: `61837.63000000`).
pub fn fixed(m: i64, decimals: u8) -> String {
    format!("{:#}", hermes_book::Decimal::new(m, decimals))
}

/// Canonical decimal (Coinbase style: `65083.66`, `0.00583`).
pub fn canon(m: i64, decimals: u8) -> String {
    hermes_book::Decimal::new(m, decimals).to_string()
}

/// A mantissa at `decimals` shown with trailing zeros dropped down to `min_decimals`
/// (Binance futures style: `61800.20`, `0.014`, `35`), never losing a digit.
pub fn fixed_at_least(m: i64, decimals: u8, min_decimals: u8) -> String {
    let mut s = fixed(m, decimals);
    if let Some(dot) = s.find('.') {
        let keep = dot + 1 + min_decimals as usize;
        while s.len() > keep && s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

/// RFC 3339 with microseconds, as Coinbase Exchange writes it
/// (`2021-04-17T16:43:37.075687Z`).
fn rfc3339_us(ns: i64) -> String {
    let mut t = rfc3339(ns);
    // `….075687123Z` → `….075687Z`
    t.replace_range(t.len() - 4..t.len() - 1, "");
    t
}

impl SynthBook {
    fn new(
        venue: Venue,
        symbol: String,
        mid: i64,
        depth: usize,
        rng: &mut Rng,
        start_ns: i64,
    ) -> SynthBook {
        let (price_decimals, size_decimals, max_qty) = match venue {
            Venue::BinanceUsdm => (2, 3, 20_000),
            Venue::BinanceCoinm => (1, 0, 5_000),
            _ => (2, 8, 500_000_000),
        };
        let mut b = SynthBook {
            venue,
            symbol,
            mid,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            update_id: 1_000 + rng.below(1_000_000),
            trade_id: 1_000 + rng.below(1_000_000),
            depth: depth as i64,
            price_decimals,
            size_decimals,
            max_qty,
            last_diff_u: 0,
            agg_id: 0,
            sequence: 0,
            day: (mid, mid, mid, 0),
            next_tick_ns: i64::MAX,
        };
        for d in 1..=depth as i64 {
            b.bids.insert(mid - d, 1 + rng.below(max_qty) as i64);
            b.asks.insert(mid + d, 1 + rng.below(max_qty) as i64);
        }
        // Only the new venues draw more, so the others emit what they always did.
        match venue {
            Venue::BinanceUsdm | Venue::BinanceCoinm => {
                // Futures ids run in the trillions and move by hundreds per diff.
                b.update_id = b.update_id * 1_000_000 + rng.below(1_000_000);
                b.last_diff_u = b.update_id;
                b.agg_id = 1_000 + rng.below(1_000_000);
                b.next_tick_ns = start_ns + 1_000_000 * rng.below(1_000) as i64;
            }
            Venue::CoinbaseExchange => {
                b.sequence = 1_000_000 + rng.below(1_000_000_000);
                b.next_tick_ns = start_ns + 1_000_000 * rng.below(1_000) as i64;
            }
            _ => {}
        }
        b
    }

    /// Decimals of its prices and sizes: a level `(p, q)` is `p / 10^price` at
    /// `q / 10^size`.
    pub fn decimals(&self) -> (u8, u8) {
        (self.price_decimals, self.size_decimals)
    }

    /// A price in ticks as the venue writes it.
    fn px(&self, ticks: i64) -> String {
        fixed(ticks, self.price_decimals)
    }

    /// A size in units as the venue writes it.
    fn qty(&self, units: i64) -> String {
        fixed(units, self.size_decimals)
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
                1 + rng.below(self.max_qty) as i64
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

/// The `k`-th synthetic instrument of `venue`, spelled as the venue spells its own:
/// `SYN0-USD` (Coinbase), `SYN0USDT` (Binance spot and USD-M), `SYN0USD_PERP` (COIN-M).
pub fn symbol(venue: Venue, k: usize) -> String {
    match venue {
        Venue::Coinbase | Venue::CoinbaseExchange => format!("SYN{k}-USD"),
        Venue::BinanceCoinm => format!("SYN{k}USD_PERP"),
        _ => format!("SYN{k}USDT"),
    }
}

impl Synth {
    /// A generator; the first frames it emits open each venue's stream.
    pub fn new(opts: SynthOptions) -> Synth {
        let mut rng = Rng::new(opts.seed);
        let mut books = Vec::new();
        for &v in &opts.venues {
            for k in 0..opts.instruments {
                let symbol = symbol(v, k);
                let mid = 100_000 + rng.below(5_000_000) as i64;
                // COIN-M prices have one decimal: the same $1,000–$51,000.
                let mid = if v == Venue::BinanceCoinm {
                    mid / 10
                } else {
                    mid
                };
                books.push(SynthBook::new(
                    v,
                    symbol,
                    mid,
                    opts.depth,
                    &mut rng,
                    opts.start_ns,
                ));
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
        let futures: Vec<usize> = (0..self.books.len())
            .filter(|&i| self.books[i].venue.is_binance_futures())
            .collect();
        for &i in &futures {
            self.futures_opening(i);
        }
        let exchange: Vec<usize> = (0..self.books.len())
            .filter(|&i| self.books[i].venue == Venue::CoinbaseExchange)
            .collect();
        if !exchange.is_empty() {
            self.exchange_opening(&exchange);
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
            Venue::BinanceUsdm | Venue::BinanceCoinm => self.futures_frame(i, roll),
            Venue::CoinbaseExchange => self.exchange_frame(i, roll),
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

    /// The frame due every simulated second for a book whose time has come, if any: a
    /// futures `markPriceUpdate`, a Coinbase Exchange `heartbeat`.
    fn periodic(&mut self) -> Option<(Venue, String)> {
        let now = self.now;
        let i = self.books.iter().position(|b| b.next_tick_ns <= now)?;
        self.books[i].next_tick_ns += 1_000_000_000;
        let venue = self.books[i].venue;
        let f = match venue {
            Venue::CoinbaseExchange => self.exchange_heartbeat(i),
            _ => self.mark_price(i),
        };
        Some((venue, f))
    }

    /// Queues a frame to follow the current one.
    fn follow(&mut self, venue: Venue, rest_symbol: Option<String>, data: String) {
        self.queue.push_back((venue, rest_symbol, data));
    }

    /// The next frame.
    pub fn next_frame(&mut self) -> SynthFrame {
        let (venue, rest_symbol, data) = match self.queue.pop_front() {
            Some(q) => q,
            None => {
                let (v, f) = match self.periodic() {
                    Some(p) => p,
                    None => self.random_frame(),
                };
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
