//! book: applying level updates to `hermes_book::OrderBook` and recomputing the
//! published top of book (best bid/ask and the top 10 levels a side), against a
//! `BTreeMap` book fed the same event stream.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use anyhow::Result;
use hermes_book::{OrderBook, Side};
use hermes_ingest::{Decoder, Event};

use super::Config;
use crate::frames::{self, OwnedFrame};
use crate::report::{Metric, Stage};
use crate::util::{figure, hist, mono_ns, rec};

/// One frame's worth of book events: (snapshot?, levels, instrument).
pub struct Segment {
    /// Instrument index.
    pub inst: usize,
    /// The levels replace the book.
    pub snapshot: bool,
    /// (side, price, qty).
    pub levels: Vec<(Side, i64, i64)>,
}

/// Decodes `set` and groups its level events by commit.
pub fn segments(set: &[OwnedFrame]) -> Vec<Segment> {
    let mut dec = Decoder::default();
    let mut events: Vec<Event> = Vec::new();
    for f in set {
        let _ = dec.decode(&f.frame(f.recv_ts_ns), &mut events);
    }
    let mut out = Vec::new();
    let mut cur: Option<Segment> = None;
    for ev in events {
        match ev {
            Event::Snapshot { inst } => {
                cur = Some(Segment {
                    inst: inst.0 as usize,
                    snapshot: true,
                    levels: Vec::new(),
                })
            }
            Event::Level {
                inst,
                side,
                price,
                qty,
            } => cur
                .get_or_insert_with(|| Segment {
                    inst: inst.0 as usize,
                    snapshot: false,
                    levels: Vec::new(),
                })
                .levels
                .push((side, price.0, qty.0)),
            Event::Commit { .. } => {
                if let Some(s) = cur.take() {
                    out.push(s);
                }
            }
            _ => {}
        }
    }
    out
}

/// The baseline: a `BTreeMap` per side.
#[derive(Default, Clone)]
pub struct MapBook {
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
}

impl MapBook {
    /// Sets a level (0 deletes).
    #[inline]
    pub fn set(&mut self, side: Side, px: i64, qty: i64) {
        let m = match side {
            Side::Bid => &mut self.bids,
            Side::Ask => &mut self.asks,
        };
        if qty == 0 {
            m.remove(&px);
        } else {
            m.insert(px, qty);
        }
    }

    /// Best bid/ask and the top 10 levels a side, as the book thread publishes them.
    #[inline]
    pub fn top(&self, out: &mut [(i64, i64); 22]) {
        out[0] = self
            .bids
            .iter()
            .next_back()
            .map_or((0, 0), |(p, q)| (*p, *q));
        out[1] = self.asks.iter().next().map_or((0, 0), |(p, q)| (*p, *q));
        for (k, (p, q)) in self.bids.iter().rev().take(10).enumerate() {
            out[2 + k] = (*p, *q);
        }
        for (k, (p, q)) in self.asks.iter().take(10).enumerate() {
            out[12 + k] = (*p, *q);
        }
    }
}

/// The same top-of-book computation on the ladder book.
#[inline]
pub fn top(b: &OrderBook, out: &mut [(i64, i64); 22]) {
    out[0] = b.best_bid().map_or((0, 0), |l| (l.price.0, l.qty.0));
    out[1] = b.best_ask().map_or((0, 0), |l| (l.price.0, l.qty.0));
    for (k, l) in b.bids().take(10).enumerate() {
        out[2 + k] = (l.price.0, l.qty.0);
    }
    for (k, l) in b.asks().take(10).enumerate() {
        out[12 + k] = (l.price.0, l.qty.0);
    }
}

const TOP_REPS: i64 = 8;

struct Run {
    apply: hdrhistogram::Histogram<u64>,
    top: hdrhistogram::Histogram<u64>,
    updates: u64,
    apply_ns: i64,
}

fn replay<B: Default + Clone>(
    segs: &[Segment],
    passes: usize,
    timer_ns: i64,
    set: impl Fn(&mut B, Side, i64, i64),
    snapshot: impl Fn(&mut B, &[(Side, i64, i64)]),
    top: impl Fn(&B, &mut [(i64, i64); 22]),
) -> Run {
    let mut r = Run {
        apply: hist(1_000_000_000_000),
        top: hist(1_000_000_000_000),
        updates: 0,
        apply_ns: 0,
    };
    let n = segs.iter().map(|s| s.inst + 1).max().unwrap_or(0);
    let mut buf = [(0i64, 0i64); 22];
    for pass in 0..passes {
        let mut books: Vec<B> = vec![B::default(); n];
        for s in segs {
            let b = &mut books[s.inst];
            if s.snapshot {
                snapshot(b, &s.levels);
            } else if !s.levels.is_empty() {
                let t0 = mono_ns();
                for &(side, px, q) in &s.levels {
                    set(b, side, px, q);
                }
                let dt = (mono_ns() - t0 - timer_ns).max(1);
                if pass > 0 {
                    rec(&mut r.apply, dt * 1000 / s.levels.len() as i64);
                    r.updates += s.levels.len() as u64;
                    r.apply_ns += dt;
                }
            }
            let b = &books[s.inst];
            let t0 = mono_ns();
            for _ in 0..TOP_REPS {
                top(black_box(b), &mut buf);
                black_box(&buf);
            }
            let dt = (mono_ns() - t0 - timer_ns).max(1);
            if pass > 0 {
                rec(&mut r.top, dt * 1000 / TOP_REPS);
            }
        }
        black_box(&books);
    }
    r
}

/// Runs the stage.
pub fn run(cfg: &Config, timer_ns: f64) -> Result<Stage> {
    let t = Instant::now();
    let timer = timer_ns.round() as i64;
    let passes = cfg.size(4, 2);
    let mut out = Vec::new();
    let inputs = [
        (
            "deep",
            "Binance BTCUSDT-shaped: 1,000-level snapshot a side, diffs of 16-20 levels a side",
            frames::binance_depth20(cfg.size(20_000, 4_000), 1000, 21),
        ),
        (
            "synthetic",
            "synthetic market (hermes_sim::synth: 50 levels a side, 1-4 changes per frame)",
            frames::synthetic(cfg.size(200_000, 40_000)),
        ),
    ];
    for (key, what, set) in inputs {
        let segs = segments(&set);
        drop(set);
        let ours = replay::<OrderBook>(
            &segs,
            passes,
            timer,
            |b, s, p, q| {
                b.set(s, hermes_book::Price(p), hermes_book::Qty(q));
            },
            |b, lv| {
                b.begin_snapshot();
                for &(s, p, q) in lv {
                    b.set(s, hermes_book::Price(p), hermes_book::Qty(q));
                }
                b.end_snapshot();
            },
            top,
        );
        let base = replay::<MapBook>(
            &segs,
            passes,
            timer,
            |b, s, p, q| b.set(s, p, q),
            |b, lv| {
                *b = MapBook::default();
                for &(s, p, q) in lv {
                    b.set(s, p, q);
                }
            },
            |b, o| b.top(o),
        );
        let rate = |r: &Run| r.updates as f64 / (r.apply_ns as f64 / 1e9) / 1e6;
        let apply = figure(&ours.apply, 1000.0);
        let met = apply.p50.unwrap_or(f64::MAX) < 50.0;
        out.push(
            Metric::lower(
                &format!("book.apply.{key}"),
                &format!("apply one level change: {what}"),
                "ns/update",
                apply,
            )
            .with_throughput(rate(&ours), "M updates/s")
            .vs(
                "BTreeMap book",
                figure(&base.apply, 1000.0),
                Some(rate(&base)),
            )
            .target("p50 < 50 ns", met)
            .note("percentiles over per-frame means (a frame's level changes timed together)"),
        );
        out.push(
            Metric::lower(
                &format!("book.top.{key}"),
                &format!(
                    "recompute top of book after a frame (best bid/ask + top 10 a side): {what}"
                ),
                "ns/recompute",
                figure(&ours.top, 1000.0),
            )
            .vs("BTreeMap book", figure(&base.top, 1000.0), None)
            .note(format!(
                "each sample is the mean of {TOP_REPS} back-to-back recomputes"
            )),
        );
    }
    Ok(Stage {
        name: "book".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics: out,
        notes: vec![],
        skipped: false,
        pinned: false,
    })
}
