//! The analytics kernels of every publication, checked against a straightforward
//! reference implementation over a replay of generated data (`hermes_sim::synth`).
//!
//! The engine side is the real book thread state ([`Publisher`]): events decoded from
//! synthetic Coinbase and Binance frames are applied one by one, and after each
//! publication the slot's kernels (`last.kernels`) are compared with the reference's. The
//! reference keeps its own `BTreeMap` book, every trade, return and publication in plain
//! lists, and evaluates each definition of `hermes_book::kernels` directly: sums over the
//! lists, the decayed sum of squared returns term by term, exact rational rounding. It
//! shares with the engine only the published best bid/ask (an input: which of the book
//! and the venue's ticker is newer is the book thread's rule, tested elsewhere).

use std::collections::BTreeMap;

use hermes_book::kernels::KernelConfig;
use hermes_book::{Decimal, Side};
use hermes_engine::Publisher;
use hermes_ingest::{Decoder, Event, Frame, FrameKind, TradeSide};
use hermes_shm::{SlotKernels, TopOfBook, FLAG_HAS_ASK, FLAG_HAS_BID};
use hermes_sim::synth::{Synth, SynthOptions};

const LEVELS: usize = 3;
/// 0.5 units at 8 size decimals.
const VWAP_QTY: i64 = 50_000_000;
const HALF_LIFE_NS: i64 = 2_000_000_000;
const TRADE_WINDOW_NS: i64 = 200_000_000;
const RATE_WINDOW_NS: i64 = 50_000_000;
const BUCKETS: i64 = 10;

fn config() -> KernelConfig {
    KernelConfig {
        levels: LEVELS,
        vwap_size: Decimal::new(5, 1),
        vol_half_life_ns: HALF_LIFE_NS,
        trade_window_ns: TRADE_WINDOW_NS,
        rate_window_ns: RATE_WINDOW_NS,
    }
}

/// `num / den` to the nearest integer, ties away from zero, written independently of
/// the engine's: `⌊(2|n| + d) / 2d⌋` with the sign of `n`.
fn round_div(num: i128, den: i128) -> Option<i64> {
    if den <= 0 {
        return None;
    }
    let mag = (2 * num.unsigned_abs() + den as u128) / (2 * den as u128);
    let v = if num < 0 { -(mag as i128) } else { mag as i128 };
    i64::try_from(v).ok()
}

/// Whether an event at clock `te` is in the window (of `window` ns) at clock `t`.
fn in_window(te: i64, t: i64, window: i64) -> bool {
    let w = window / BUCKETS;
    let (be, bt) = (te.div_euclid(w), t.div_euclid(w));
    be > bt - BUCKETS && be <= bt
}

#[derive(Default)]
struct Reference {
    price_decimals: u8,
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    clock: Option<i64>,
    /// (clock, aggressor buy?, size) of every trade with a known side.
    trades: Vec<(i64, bool, i64)>,
    /// (clock, OFI term) of every publication.
    ofi: Vec<(i64, i64)>,
    prev_bbo: Option<[(i64, i64); 2]>,
    /// (clock, log return) between consecutive valid mids.
    returns: Vec<(i64, f64)>,
    last_mid: Option<i64>,
    /// Clock of every publication.
    publications: Vec<i64>,
}

impl Reference {
    fn tick(&mut self, t: Option<i64>) -> i64 {
        if let Some(t) = t {
            self.clock = Some(self.clock.map_or(t, |c| c.max(t)));
        }
        self.clock.unwrap_or(i64::MIN)
    }

    fn side(&mut self, side: Side) -> &mut BTreeMap<i64, i64> {
        match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        }
    }

    fn vwap(levels: impl Iterator<Item = (i64, i64)>, factor: i128) -> Option<i64> {
        let mut left = VWAP_QTY as i128;
        let mut cost = 0i128;
        for (p, q) in levels.take(1000) {
            let take = (q as i128).min(left);
            cost += p as i128 * take;
            left -= take;
            if left == 0 {
                return round_div(cost * factor, VWAP_QTY as i128);
            }
        }
        None
    }

    /// The kernels of a publication at event time `t` with the published best bid/ask.
    fn publish(&mut self, t: Option<i64>, tob: &TopOfBook) -> SlotKernels {
        let t = self.tick(t);
        self.publications.push(t);
        let kp = (self.price_decimals + 2).min(18);
        let factor = 10i128.pow((kp - self.price_decimals) as u32);
        let bid = (tob.flags & FLAG_HAS_BID != 0).then_some((tob.bid_px, tob.bid_qty));
        let ask = (tob.flags & FLAG_HAS_ASK != 0).then_some((tob.ask_px, tob.ask_qty));
        let mut k = SlotKernels {
            time_ns: t,
            price_decimals: kp,
            levels: LEVELS as u32,
            vwap_qty: VWAP_QTY,
            vol_half_life_ns: HALF_LIFE_NS,
            trade_window_ns: TRADE_WINDOW_NS,
            rate_window_ns: RATE_WINDOW_NS,
            ..SlotKernels::default()
        };
        let mut ofi = 0;
        match (bid, ask) {
            (Some((b, bq)), Some((a, aq))) => {
                let (b, bq, a, aq) = (b as i128, bq as i128, a as i128, aq as i128);
                k.spread_ticks = i64::try_from(a - b).ok();
                k.spread_bps_x100 = round_div((a - b) * 20_000 * 100, a + b);
                k.mid_px = round_div((a + b) * factor, 2);
                k.microprice_px = round_div((b * aq + a * bq) * factor, aq + bq);
                if let Some([(pb, pbq), (pa, paq)]) = self.prev_bbo {
                    let (b, bq, a, aq) = (b as i64, bq as i64, a as i64, aq as i64);
                    // Cont, Kukanov & Stoikov, term by term.
                    let bid_flow = if b > pb {
                        bq
                    } else if b == pb {
                        bq - pbq
                    } else {
                        -pbq
                    };
                    let ask_flow = if a < pa {
                        aq
                    } else if a == pa {
                        aq - paq
                    } else {
                        -paq
                    };
                    ofi = bid_flow - ask_flow;
                }
                self.prev_bbo = Some([(b as i64, bq as i64), (a as i64, aq as i64)]);
            }
            _ => self.prev_bbo = None,
        }
        self.ofi.push((t, ofi));

        let bd: i128 = self
            .bids
            .values()
            .rev()
            .take(LEVELS)
            .map(|&q| q as i128)
            .sum();
        let ad: i128 = self.asks.values().take(LEVELS).map(|&q| q as i128).sum();
        k.bid_depth = bd as i64;
        k.ask_depth = ad as i64;
        k.imbalance_ppm = round_div((bd - ad) * 1_000_000, bd + ad);
        k.vwap_buy_px = Self::vwap(self.asks.iter().map(|(&p, &q)| (p, q)), factor);
        k.vwap_sell_px = Self::vwap(self.bids.iter().rev().map(|(&p, &q)| (p, q)), factor);

        if let Some(m) = k.mid_px.filter(|m| *m > 0) {
            if let Some(pm) = self.last_mid.filter(|pm| *pm != m) {
                self.returns.push((t, (m as f64 / pm as f64).ln()));
            }
            self.last_mid = Some(m);
        }
        if !self.returns.is_empty() {
            let h = HALF_LIFE_NS as f64 / 1e9;
            let s: f64 = self
                .returns
                .iter()
                .map(|&(ti, r)| r * r * 0.5f64.powf((t - ti) as f64 / 1e9 / h))
                .sum();
            k.volatility_bps = Some((s * std::f64::consts::LN_2 / h).sqrt() * 1e4);
        }

        for &(te, buy, q) in &self.trades {
            if in_window(te, t, TRADE_WINDOW_NS) {
                if buy {
                    k.trade_buy_qty += q;
                } else {
                    k.trade_sell_qty += q;
                }
            }
        }
        let (b, s) = (k.trade_buy_qty as i128, k.trade_sell_qty as i128);
        k.trade_imbalance_ppm = round_div((b - s) * 1_000_000, b + s);
        k.ofi_window = self
            .ofi
            .iter()
            .filter(|(te, _)| in_window(*te, t, TRADE_WINDOW_NS))
            .map(|(_, e)| e)
            .sum();
        k.ofi_total = self.ofi.iter().map(|(_, e)| e).sum();
        let n = self
            .publications
            .iter()
            .filter(|&&te| in_window(te, t, RATE_WINDOW_NS))
            .count() as u64;
        k.updates_per_s_x100 = n * 100 * 1_000_000_000 / RATE_WINDOW_NS as u64;
        k
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12,
        (None, None) => true,
        _ => false,
    }
}

#[test]
fn kernels_match_the_reference_over_a_synthetic_replay() {
    let mut synth = Synth::new(SynthOptions {
        depth: 20,
        ..SynthOptions::default()
    });
    let mut decoder = Decoder::default();
    let mut books = Publisher::new(None, config());
    let mut refs: Vec<Reference> = Vec::new();
    let mut events = Vec::new();
    let mut checked = 0u64;
    // How often each optional kernel was valid, so the test cannot pass on `None`s.
    let mut valid = [0u64; 9];
    for _ in 0..8_000 {
        let f = synth.next_frame();
        let kind = match &f.rest_symbol {
            Some(s) => FrameKind::RestDepth {
                symbol: s.as_bytes(),
            },
            None => FrameKind::Ws,
        };
        events.clear();
        let frame = Frame {
            venue: f.venue,
            kind,
            conn: 0,
            recv_ts_ns: f.recv_ts_ns,
            data: f.data.as_bytes(),
        };
        decoder.decode(&frame, &mut events).unwrap();
        for ev in &events {
            let id = ev.inst().0 as usize;
            let before = books
                .market()
                .instruments()
                .get(id)
                .map_or(0, |i| i.top.updates);
            books.apply(ev);
            if let Event::Define { scale, .. } = ev {
                refs.push(Reference {
                    price_decimals: scale.price_decimals,
                    ..Reference::default()
                });
            }
            let r = &mut refs[id];
            let mut time = None;
            match *ev {
                Event::Snapshot { .. } => {
                    r.bids.clear();
                    r.asks.clear();
                }
                Event::Level {
                    side, price, qty, ..
                } => {
                    if qty.0 == 0 {
                        r.side(side).remove(&price.0);
                    } else {
                        r.side(side).insert(price.0, qty.0);
                    }
                }
                Event::Commit { recv_ts_ns, .. } | Event::Quote { recv_ts_ns, .. } => {
                    time = Some(recv_ts_ns)
                }
                Event::Trade {
                    side, qty, ts_ns, ..
                } => {
                    let t = r.tick(Some(ts_ns));
                    match side {
                        TradeSide::Buy => r.trades.push((t, true, qty.0)),
                        TradeSide::Sell => r.trades.push((t, false, qty.0)),
                        TradeSide::Unknown => {}
                    }
                    time = Some(ts_ns);
                }
                _ => {}
            }
            let inst = books.last(hermes_book::InstId(id as u32));
            if inst.updates == before {
                continue;
            }
            let want = r.publish(time, inst);
            let got = inst.kernels;
            let what = format!(
                "{} {} publication {} after {ev:?}",
                books.market().instruments()[id].venue.name(),
                books.market().instruments()[id].symbol,
                inst.updates
            );
            assert!(
                close(got.volatility_bps, want.volatility_bps),
                "{what}: volatility {:?} vs reference {:?}",
                got.volatility_bps,
                want.volatility_bps
            );
            let exact = |k: SlotKernels| SlotKernels {
                volatility_bps: None,
                ..k
            };
            assert_eq!(exact(got), exact(want), "{what}");
            for (n, v) in valid.iter_mut().zip([
                got.spread_ticks.is_some(),
                got.spread_bps_x100.is_some(),
                got.mid_px.is_some(),
                got.microprice_px.is_some(),
                got.imbalance_ppm.is_some(),
                got.vwap_buy_px.is_some(),
                got.vwap_sell_px.is_some(),
                got.volatility_bps.is_some(),
                got.trade_imbalance_ppm.is_some(),
            ]) {
                *n += v as u64;
            }
            checked += 1;
        }
    }
    eprintln!("checked {checked} publications; optional kernels valid: {valid:?}");
    assert_eq!(refs.len(), 6, "3 instruments on each venue");
    assert!(checked > 5_000, "only {checked} publications checked");
    for (i, n) in valid.iter().enumerate() {
        assert!(
            *n > checked / 20,
            "optional kernel {i} valid only {n} times of {checked}"
        );
    }
    // The windows must have both filled and expired, and OFI moved both ways.
    let ofis: Vec<i64> = refs
        .iter()
        .flat_map(|r| r.ofi.iter().map(|o| o.1))
        .collect();
    assert!(ofis.iter().any(|&e| e > 0) && ofis.iter().any(|&e| e < 0));
    let last = books.last(hermes_book::InstId(0)).kernels;
    assert!(last.updates_per_s_x100 > 0, "{last:?}");
}
