//! Binance USD-M and COIN-M futures frames of the synthetic market.
//!
//! Update ids are one space per symbol: a diff covers `U..=u` and names the previous
//! diff's `u` as `pu`; a `bookTicker` takes an id of its own, and some ids go to events
//! no stream here carries, so a diff's `U` is often more than the previous `u + 1`.

use std::fmt::Write;

use hermes_book::Venue;

use super::{fixed, Synth, SynthBook};

/// Eight hours, the funding interval, in ms.
const FUNDING_MS: i64 = 8 * 3_600_000;

impl SynthBook {
    /// `,"ps":"BTCUSD"` for a COIN-M contract, empty otherwise.
    fn pair_field(&self) -> String {
        if self.venue == Venue::BinanceCoinm {
            let pair = self.symbol.split('_').next().unwrap_or(&self.symbol);
            format!(",\"ps\":\"{pair}\"")
        } else {
            String::new()
        }
    }

    /// The book as a futures REST depth body (`/fapi/v1/depth`, `/dapi/v1/depth`) with
    /// `lastUpdateId` `last_update_id`, the engine's time `ms`.
    pub fn futures_rest(&self, limit: usize, last_update_id: u64, ms: i64) -> String {
        let mut s = format!("{{\"lastUpdateId\":{last_update_id},\"E\":{ms},\"T\":{ms},");
        if self.venue == Venue::BinanceCoinm {
            let pair = self.symbol.split('_').next().unwrap_or(&self.symbol);
            let _ = write!(s, "\"symbol\":\"{}\",\"pair\":\"{pair}\",", self.symbol);
        }
        s.push_str("\"bids\":[");
        for (k, (p, q)) in self.bids.iter().rev().take(limit).enumerate() {
            let sep = if k > 0 { "," } else { "" };
            let _ = write!(s, "{sep}[\"{}\",\"{}\"]", self.px(*p), self.qty(*q));
        }
        s.push_str("],\"asks\":[");
        for (k, (p, q)) in self.asks.iter().take(limit).enumerate() {
            let sep = if k > 0 { "," } else { "" };
            let _ = write!(s, "{sep}[\"{}\",\"{}\"]", self.px(*p), self.qty(*q));
        }
        s.push_str("]}");
        s
    }
}

impl Synth {
    fn ms(&self) -> i64 {
        self.now / 1_000_000
    }

    /// A symbol's opening: two diffs, then the REST snapshot, whose `lastUpdateId` falls
    /// inside the second diff's ids (the first is older and dropped by a client, the
    /// second straddles the snapshot and is applied).
    pub(super) fn futures_opening(&mut self, i: usize) {
        let venue = self.books[i].venue;
        let (d1, _, _) = self.futures_depth(i);
        let (d2, first, last) = self.futures_depth(i);
        let l = first + self.rng.below(last - first + 1);
        let rest = self.books[i].futures_rest(1000, l, self.ms());
        let sym = self.books[i].symbol.clone();
        self.follow(venue, None, d1);
        self.follow(venue, None, d2);
        self.follow(venue, Some(sym), rest);
    }

    /// A depth diff of book `i`: its text, `U` and `u`.
    pub(super) fn futures_depth(&mut self, i: usize) -> (String, u64, u64) {
        let changes = self.books[i].step(&mut self.rng);
        let skipped = if self.rng.pct(40) {
            1 + self.rng.below(200)
        } else {
            0
        };
        let span = self.rng.below(1 + 30 * changes.len() as u64);
        let lag = self.rng.below(5) as i64;
        let ms = self.ms();
        let b = &mut self.books[i];
        let first = b.update_id + 1 + skipped;
        let last = first + span;
        let prev = b.last_diff_u;
        b.update_id = last;
        b.last_diff_u = last;
        let b = &self.books[i];
        let (mut bids, mut asks) = (String::new(), String::new());
        for (is_bid, p, q) in changes {
            let out = if is_bid { &mut bids } else { &mut asks };
            let sep = if out.is_empty() { "" } else { "," };
            let _ = write!(out, "{sep}[\"{}\",\"{}\"]", b.px(p), b.qty(q));
        }
        let text = format!(
            "{{\"stream\":\"{}@depth@100ms\",\"data\":{{\"e\":\"depthUpdate\",\"E\":{},\"T\":{ms},\"s\":\"{}\"{},\"U\":{first},\"u\":{last},\"pu\":{prev},\"b\":[{bids}],\"a\":[{asks}]}}}}",
            b.symbol.to_lowercase(),
            ms + lag,
            b.symbol,
            b.pair_field(),
        );
        (text, first, last)
    }

    /// A random futures frame of book `i`: a diff, a `bookTicker`, trades (each `trade`,
    /// then their `aggTrade`), now and then a `forceOrder`.
    pub(super) fn futures_frame(&mut self, i: usize, roll: u64) -> String {
        match roll {
            0..45 => self.futures_depth(i).0,
            45..75 => self
                .book_ticker(i)
                .unwrap_or_else(|| self.futures_depth(i).0),
            75..99 => self.futures_trades(i),
            _ => self.force_order(i),
        }
    }

    /// The best bid and offer, with an update id of its own; `None` if a side is empty.
    fn book_ticker(&mut self, i: usize) -> Option<String> {
        let used = 1 + self.rng.below(3);
        let ms = self.ms();
        let b = &mut self.books[i];
        let (Some((bp, bq)), Some((ap, aq))) = b.best() else {
            return None;
        };
        b.update_id += used;
        let b = &self.books[i];
        Some(format!(
            "{{\"stream\":\"{}@bookTicker\",\"data\":{{\"e\":\"bookTicker\",\"u\":{},\"s\":\"{}\"{},\"b\":\"{}\",\"B\":\"{}\",\"a\":\"{}\",\"A\":\"{}\",\"T\":{ms},\"E\":{ms}}}}}",
            b.symbol.to_lowercase(),
            b.update_id,
            b.symbol,
            b.pair_field(),
            b.px(bp),
            b.qty(bq),
            b.px(ap),
            b.qty(aq),
        ))
    }

    /// One taker order's fills: the first `trade` (the others and the `aggTrade` that sums
    /// them follow).
    fn futures_trades(&mut self, i: usize) -> String {
        let fills = 1 + self.rng.below(3);
        let buyer_maker = self.rng.pct(50);
        let max = (self.books[i].max_qty / 10).max(1);
        let sizes: Vec<i64> = (0..fills).map(|_| 1 + self.rng.below(max) as i64).collect();
        let ms = self.ms();
        let venue = self.books[i].venue;
        let b = &mut self.books[i];
        let (bid, ask) = b.best();
        let px = if buyer_maker { bid } else { ask }.map_or(b.mid, |l| l.0);
        let first_id = b.trade_id + 1;
        let mut frames = Vec::new();
        for q in &sizes {
            b.trade_id += 1;
            frames.push(format!(
                "{{\"stream\":\"{}@trade\",\"data\":{{\"e\":\"trade\",\"E\":{ms},\"T\":{ms},\"s\":\"{}\",\"t\":{},\"p\":\"{}\",\"q\":\"{}\",\"X\":\"MARKET\",\"m\":{buyer_maker}}}}}",
                b.symbol.to_lowercase(),
                b.symbol,
                b.trade_id,
                b.px(px),
                b.qty(*q),
            ));
        }
        b.agg_id += 1;
        frames.push(format!(
            "{{\"stream\":\"{}@aggTrade\",\"data\":{{\"e\":\"aggTrade\",\"E\":{ms},\"a\":{},\"s\":\"{}\",\"p\":\"{}\",\"q\":\"{}\",\"f\":{first_id},\"l\":{},\"T\":{ms},\"m\":{buyer_maker}}}}}",
            b.symbol.to_lowercase(),
            b.agg_id,
            b.symbol,
            b.px(px),
            b.qty(sizes.iter().sum()),
            b.trade_id,
        ));
        let mut frames = frames.into_iter();
        let first = frames.next().unwrap_or_default();
        for f in frames {
            self.follow(venue, None, f);
        }
        first
    }

    /// A liquidation: an IOC order through the book, filled at the best price.
    fn force_order(&mut self, i: usize) -> String {
        let sell = self.rng.pct(50);
        let max = (self.books[i].max_qty / 20).max(1);
        let q = 1 + self.rng.below(max) as i64;
        let through = 1 + self.rng.below(20) as i64;
        let ms = self.ms();
        let b = &self.books[i];
        let (bid, ask) = b.best();
        let (limit, avg) = if sell {
            let best = bid.map_or(b.mid - 1, |l| l.0);
            (best - through, best)
        } else {
            let best = ask.map_or(b.mid + 1, |l| l.0);
            (best + through, best)
        };
        format!(
            "{{\"stream\":\"{}@forceOrder\",\"data\":{{\"e\":\"forceOrder\",\"E\":{ms},\"o\":{{\"s\":\"{}\"{},\"S\":\"{}\",\"o\":\"LIMIT\",\"f\":\"IOC\",\"q\":\"{q}\",\"p\":\"{}\",\"ap\":\"{}\",\"X\":\"FILLED\",\"l\":\"{q}\",\"z\":\"{q}\",\"T\":{ms}}}}}}}",
            b.symbol.to_lowercase(),
            b.symbol,
            b.pair_field(),
            if sell { "SELL" } else { "BUY" },
            b.px(limit),
            b.px(avg),
            q = b.qty(q),
        )
    }

    /// The mark price (near the mid), index (a little off), funding rate (mostly
    /// `0.00010000`, sometimes negative) and next funding time (the next 8-hour
    /// boundary), at 8 decimals.
    pub(super) fn mark_price(&mut self, i: usize) -> String {
        let b = &self.books[i];
        let (bid, ask) = b.best();
        let bid = bid.map_or(b.mid - 1, |l| l.0);
        let ask = ask.map_or(b.mid + 1, |l| l.0);
        let unit = 10i64.pow(8 - b.price_decimals as u32);
        let mid = (bid + ask) * unit / 2;
        let mark = mid + self.rng.below(unit as u64) as i64 - unit / 2;
        let spread = (mark / 4_000).max(1);
        let index = mark + self.rng.below(2 * spread as u64 + 1) as i64 - spread;
        let settle = index + self.rng.below(spread as u64 + 1) as i64 - spread / 2;
        let funding = if self.rng.pct(15) {
            -(1 + self.rng.below(10_000) as i64)
        } else if self.rng.pct(50) {
            10_000
        } else {
            1 + self.rng.below(30_000) as i64
        };
        let ms = self.ms();
        let next_funding = (ms.div_euclid(FUNDING_MS) + 1) * FUNDING_MS;
        let b = &self.books[i];
        format!(
            "{{\"stream\":\"{}@markPrice@1s\",\"data\":{{\"e\":\"markPriceUpdate\",\"E\":{ms},\"s\":\"{}\",\"p\":\"{}\",\"i\":\"{}\",\"P\":\"{}\",\"r\":\"{}\",\"T\":{next_funding}}}}}",
            b.symbol.to_lowercase(),
            b.symbol,
            fixed(mark, 8),
            fixed(index, 8),
            fixed(settle, 8),
            fixed(funding, 8),
        )
    }
}
