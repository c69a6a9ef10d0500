//! Coinbase Exchange (legacy `ws-feed`) frames of the synthetic market.
//!
//! Every event of a product moves its full-channel `sequence` (carried by `match`,
//! `ticker` and `heartbeat`; level-2 frames carry none); `trade_id` is contiguous per
//! product and each `heartbeat` names the last one.

use std::fmt::Write;

use hermes_book::Venue;

use super::{rfc3339_us, Rng, Synth, SynthBook};

/// A random order id, UUID-shaped.
fn order_id(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

impl SynthBook {
    /// The book as a Coinbase Exchange `snapshot`: `asks` then `bids`, best first.
    pub fn exchange_snapshot(&self) -> String {
        let mut s = format!(
            "{{\"type\":\"snapshot\",\"product_id\":\"{}\",\"asks\":[",
            self.symbol
        );
        for (k, (p, q)) in self.asks.iter().enumerate() {
            let sep = if k > 0 { "," } else { "" };
            let _ = write!(s, "{sep}[\"{}\",\"{}\"]", self.px(*p), self.qty(*q));
        }
        s.push_str("],\"bids\":[");
        for (k, (p, q)) in self.bids.iter().rev().enumerate() {
            let sep = if k > 0 { "," } else { "" };
            let _ = write!(s, "{sep}[\"{}\",\"{}\"]", self.px(*p), self.qty(*q));
        }
        s.push_str("]}");
        s
    }

    /// Moves the product's full-channel sequence past an event and its unseen neighbours.
    fn next_sequence(&mut self, rng: &mut Rng) -> u64 {
        self.sequence += 1 + rng.below(40);
        self.sequence
    }
}

impl Synth {
    /// What a client subscribed to `level2_batch`, `matches`, `ticker` and `heartbeat`
    /// for `products` gets first: the confirmation, a snapshot of each book, the last
    /// trade of each as a `last_match`.
    pub(super) fn exchange_opening(&mut self, products: &[usize]) {
        let ids: Vec<String> = products
            .iter()
            .map(|&i| format!("\"{}\"", self.books[i].symbol))
            .collect();
        let channels: Vec<String> = ["level2_batch", "matches", "ticker", "heartbeat"]
            .iter()
            .map(|c| format!("{{\"name\":\"{c}\",\"product_ids\":[{}]}}", ids.join(",")))
            .collect();
        let subs = format!(
            "{{\"type\":\"subscriptions\",\"channels\":[{}]}}",
            channels.join(",")
        );
        self.follow(Venue::CoinbaseExchange, None, subs);
        for &i in products {
            let snapshot = self.books[i].exchange_snapshot();
            self.follow(Venue::CoinbaseExchange, None, snapshot);
        }
        for &i in products {
            let last = self.exchange_match(i, "last_match", false).0;
            self.follow(Venue::CoinbaseExchange, None, last);
        }
    }

    /// A random frame of product `i`: mostly an `l2update`, else a `match` (its `ticker`
    /// follows).
    pub(super) fn exchange_frame(&mut self, i: usize, roll: u64) -> String {
        if roll < 75 {
            return self.l2update(i);
        }
        let (m, trade) = self.exchange_match(i, "match", true);
        let t = self.exchange_ticker(i, trade);
        self.follow(Venue::CoinbaseExchange, None, t);
        m
    }

    fn l2update(&mut self, i: usize) -> String {
        let changes = self.books[i].step(&mut self.rng);
        let b = &mut self.books[i];
        b.next_sequence(&mut self.rng);
        let mut list = String::new();
        for (k, (is_bid, p, q)) in changes.iter().enumerate() {
            let _ = write!(
                list,
                "{}[\"{}\",\"{}\",\"{}\"]",
                if k > 0 { "," } else { "" },
                if *is_bid { "buy" } else { "sell" },
                b.px(*p),
                b.qty(*q)
            );
        }
        format!(
            "{{\"type\":\"l2update\",\"product_id\":\"{}\",\"changes\":[{list}],\"time\":\"{}\"}}",
            b.symbol,
            rfc3339_us(self.now)
        )
    }

    /// A trade at the best price; `kind` `match`, or `last_match` for the last trade
    /// before a subscription (`new`: a new trade, `false`: the current last one again).
    /// Also the trade for its ticker.
    fn exchange_match(&mut self, i: usize, kind: &str, new: bool) -> (String, Trade) {
        let taker_buys = self.rng.pct(50);
        let size = 1 + self.rng.below(100_000_000) as i64;
        let (maker, taker) = (order_id(&mut self.rng), order_id(&mut self.rng));
        let b = &mut self.books[i];
        let (bid, ask) = b.best();
        let px = if taker_buys { ask } else { bid }.map_or(b.mid, |l| l.0);
        if new {
            b.trade_id += 1;
            b.next_sequence(&mut self.rng);
            let (open, low, high, volume) = b.day;
            b.day = (open, low.min(px), high.max(px), volume + size);
        }
        let text = format!(
            "{{\"type\":\"{kind}\",\"trade_id\":{},\"maker_order_id\":\"{maker}\",\"taker_order_id\":\"{taker}\",\"side\":\"{}\",\"size\":\"{}\",\"price\":\"{}\",\"product_id\":\"{}\",\"sequence\":{},\"time\":\"{}\"}}",
            b.trade_id,
            // The maker's side: a taker buying lifts a resting sell.
            if taker_buys { "sell" } else { "buy" },
            b.qty(size),
            b.px(px),
            b.symbol,
            b.sequence,
            rfc3339_us(self.now)
        );
        (
            text,
            Trade {
                price: px,
                size,
                taker_buys,
            },
        )
    }

    /// The `ticker` after product `i`'s `trade` (its sequence and trade id).
    fn exchange_ticker(&mut self, i: usize, trade: Trade) -> String {
        let b = &self.books[i];
        let (bid, ask) = b.best();
        let (bp, bq) = bid.unwrap_or((b.mid - 1, 0));
        let (ap, aq) = ask.unwrap_or((b.mid + 1, 0));
        let (open, low, high, volume) = b.day;
        format!(
            "{{\"type\":\"ticker\",\"sequence\":{},\"product_id\":\"{}\",\"price\":\"{}\",\"open_24h\":\"{}\",\"volume_24h\":\"{}\",\"low_24h\":\"{}\",\"high_24h\":\"{}\",\"volume_30d\":\"{}\",\"best_bid\":\"{}\",\"best_bid_size\":\"{}\",\"best_ask\":\"{}\",\"best_ask_size\":\"{}\",\"side\":\"{}\",\"time\":\"{}\",\"trade_id\":{},\"last_size\":\"{}\"}}",
            b.sequence,
            b.symbol,
            b.px(trade.price),
            b.px(open),
            b.qty(volume),
            b.px(low),
            b.px(high),
            b.qty(volume * 30),
            b.px(bp),
            b.qty(bq),
            b.px(ap),
            b.qty(aq),
            // The taker's side.
            if trade.taker_buys { "buy" } else { "sell" },
            rfc3339_us(self.now),
            b.trade_id,
            b.qty(trade.size),
        )
    }

    /// Product `i`'s `heartbeat`: its sequence and last trade id.
    pub(super) fn exchange_heartbeat(&mut self, i: usize) -> String {
        let b = &self.books[i];
        format!(
            "{{\"type\":\"heartbeat\",\"last_trade_id\":{},\"product_id\":\"{}\",\"sequence\":{},\"time\":\"{}\"}}",
            b.trade_id,
            b.symbol,
            b.sequence,
            rfc3339_us(self.now)
        )
    }
}

/// A trade as its ticker tells it.
#[derive(Clone, Copy)]
struct Trade {
    price: i64,
    size: i64,
    taker_buys: bool,
}
