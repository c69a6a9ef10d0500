//! The full-depth L2 book: one sorted ladder per side, best level last.
//!
//! Each side is a `Vec<Level>` sorted so the touch sits at the end: bids ascending by
//! price, asks descending. Best bid/ask is the last element (O(1)); top-N is the last N
//! elements reversed (no allocation, no tree walk). Market data concentrates near the
//! touch, so an update first scans the few levels nearest the end and only falls back to a
//! binary search for deep levels; inserting or deleting a level moves only the levels
//! *better* than it, which near the touch is a handful. A snapshot is bulk-loaded
//! (appended, then sorted once) instead of inserted level by level.

use crate::fixed::{Price, Qty};

/// Which side of the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// Buy orders; best is the highest price.
    Bid = 0,
    /// Sell orders (Coinbase says `offer`); best is the lowest price.
    Ask = 1,
}

/// One price level: a price and the total size resting there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Level {
    /// Price mantissa.
    pub price: Price,
    /// Size mantissa, always > 0 inside a book.
    pub qty: Qty,
}

/// What a level update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new price level.
    Inserted,
    /// An existing level got a new size.
    Updated,
    /// A level was removed (size 0).
    Deleted,
    /// Size 0 for a price the book did not have: nothing to do.
    Absent,
}

/// Levels of headroom a side reserves after a snapshot, at least.
const MIN_RESERVE: usize = 256;

/// How many levels from the touch are scanned linearly before binary search.
const LINEAR_SCAN: usize = 8;

/// One side of the book. `ASK` picks the ordering at compile time.
#[derive(Clone, Debug, Default)]
struct Ladder<const ASK: bool> {
    /// Sorted worst → best; the touch is `levels.last()`.
    levels: Vec<Level>,
}

impl<const ASK: bool> Ladder<ASK> {
    /// `true` when `a` is a better price than `b` on this side.
    #[inline(always)]
    fn better(a: Price, b: Price) -> bool {
        if ASK {
            a < b
        } else {
            a > b
        }
    }

    /// Index of `price`, or where it would be inserted.
    #[inline]
    fn find(&self, price: Price) -> Result<usize, usize> {
        let lv = &self.levels;
        let n = lv.len();
        // Near the touch: walk down from the best level.
        let stop = n.saturating_sub(LINEAR_SCAN);
        let mut i = n;
        while i > stop {
            let p = lv[i - 1].price;
            if p == price {
                return Ok(i - 1);
            }
            if Self::better(price, p) {
                return Err(i);
            }
            i -= 1;
        }
        if stop == 0 {
            return Err(0);
        }
        // Deep in the book: the ladder is sorted worst → best.
        lv[..stop].binary_search_by(|l| {
            if l.price == price {
                std::cmp::Ordering::Equal
            } else if Self::better(price, l.price) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        })
    }

    #[inline]
    fn set(&mut self, price: Price, qty: Qty) -> Change {
        match (self.find(price), qty.0 > 0) {
            (Ok(i), true) => {
                self.levels[i].qty = qty;
                Change::Updated
            }
            (Ok(i), false) => {
                self.levels.remove(i);
                Change::Deleted
            }
            (Err(i), true) => {
                self.levels.insert(i, Level { price, qty });
                Change::Inserted
            }
            (Err(_), false) => Change::Absent,
        }
    }

    /// Sorts a bulk-loaded ladder. For a price given twice the later one wins; zero sizes
    /// are dropped.
    fn finish_load(&mut self) {
        // Stable sort keeps arrival order among equal prices, so the last one is the latest.
        self.levels.sort_by(|a, b| {
            if a.price == b.price {
                std::cmp::Ordering::Equal
            } else if Self::better(a.price, b.price) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            }
        });
        let mut w = 0;
        let n = self.levels.len();
        for r in 0..n {
            let last_of_run = r + 1 == n || self.levels[r + 1].price != self.levels[r].price;
            if last_of_run && self.levels[r].qty.0 > 0 {
                self.levels[w] = self.levels[r];
                w += 1;
            }
        }
        self.levels.truncate(w);
        // Headroom: a live book hovers around its snapshot depth, so reserving as much
        // again (at least 256 levels) keeps steady-state inserts from reallocating.
        self.levels.reserve(w.max(MIN_RESERVE));
    }

    #[inline]
    fn best(&self) -> Option<Level> {
        self.levels.last().copied()
    }

    #[inline]
    fn top(&self) -> impl Iterator<Item = Level> + '_ {
        self.levels.iter().rev().copied()
    }
}

/// A full-depth L2 book for one instrument, in fixed point.
///
/// ```
/// use hermes_book::{OrderBook, Side, Price, Qty};
/// let mut book = OrderBook::default();
/// book.set(Side::Bid, Price(100), Qty(5));
/// book.set(Side::Bid, Price(101), Qty(2));
/// book.set(Side::Ask, Price(103), Qty(7));
/// assert_eq!(book.best_bid().unwrap().price, Price(101));
/// assert_eq!(book.spread_ticks(), Some(2));
/// book.set(Side::Bid, Price(101), Qty(0)); // size 0 deletes the level
/// assert_eq!(book.best_bid().unwrap().price, Price(100));
/// ```
#[derive(Clone, Debug, Default)]
pub struct OrderBook {
    bids: Ladder<false>,
    asks: Ladder<true>,
    loading: bool,
}

impl OrderBook {
    /// Sets the size at `price` on `side`; size 0 deletes the level.
    ///
    /// During a snapshot load ([`OrderBook::begin_snapshot`]) the level is appended and
    /// sorted at [`OrderBook::end_snapshot`]; the result is then [`Change::Inserted`].
    #[inline]
    pub fn set(&mut self, side: Side, price: Price, qty: Qty) -> Change {
        if self.loading {
            let l = Level { price, qty };
            match side {
                Side::Bid => self.bids.levels.push(l),
                Side::Ask => self.asks.levels.push(l),
            }
            return Change::Inserted;
        }
        match side {
            Side::Bid => self.bids.set(price, qty),
            Side::Ask => self.asks.set(price, qty),
        }
    }

    /// Empties the book and starts a bulk snapshot load: the following [`OrderBook::set`]
    /// calls append, and [`OrderBook::end_snapshot`] sorts once. Loading a 46,000-level
    /// snapshot this way is O(n log n) instead of O(n²) memory moves.
    pub fn begin_snapshot(&mut self) {
        self.clear();
        self.loading = true;
    }

    /// Ends a snapshot load (a no-op when none is in progress).
    pub fn end_snapshot(&mut self) {
        if self.loading {
            self.loading = false;
            self.bids.finish_load();
            self.asks.finish_load();
        }
    }

    /// `true` between [`OrderBook::begin_snapshot`] and [`OrderBook::end_snapshot`].
    pub fn is_loading(&self) -> bool {
        self.loading
    }

    /// Removes every level (keeps the allocated capacity).
    pub fn clear(&mut self) {
        self.bids.levels.clear();
        self.asks.levels.clear();
        self.loading = false;
    }

    /// The best bid, O(1).
    #[inline]
    pub fn best_bid(&self) -> Option<Level> {
        self.bids.best()
    }

    /// The best ask, O(1).
    #[inline]
    pub fn best_ask(&self) -> Option<Level> {
        self.asks.best()
    }

    /// Bid levels, best (highest) first. `.take(n)` is the top N, without allocating.
    pub fn bids(&self) -> impl Iterator<Item = Level> + '_ {
        self.bids.top()
    }

    /// Ask levels, best (lowest) first.
    pub fn asks(&self) -> impl Iterator<Item = Level> + '_ {
        self.asks.top()
    }

    /// Number of levels on a side.
    pub fn depth(&self, side: Side) -> usize {
        match side {
            Side::Bid => self.bids.levels.len(),
            Side::Ask => self.asks.levels.len(),
        }
    }

    /// Best ask minus best bid, in price mantissa units; `None` when a side is empty.
    /// Zero means locked, negative means crossed.
    pub fn spread_ticks(&self) -> Option<i64> {
        Some(self.best_ask()?.price.0 - self.best_bid()?.price.0)
    }

    /// `true` when the best bid is at or above the best ask (locked or crossed). The
    /// book keeps such input as the wire sent it and reports it; it never drops levels
    /// to "fix" it.
    pub fn is_crossed(&self) -> bool {
        matches!(self.spread_ticks(), Some(s) if s <= 0)
    }

    /// A side's levels as stored, for a checkpoint: worst → best (best last) in a settled
    /// book; in arrival order, zero sizes and repeats included, while a snapshot loads.
    pub(crate) fn stored(&self, side: Side) -> &[Level] {
        match side {
            Side::Bid => &self.bids.levels,
            Side::Ask => &self.asks.levels,
        }
    }

    /// The book [`OrderBook::stored`] read, loading or not. Settled sides must be in
    /// storage order with sizes > 0 (the caller checks with [`OrderBook::better`]).
    pub(crate) fn from_stored(bids: Vec<Level>, asks: Vec<Level>, loading: bool) -> OrderBook {
        let mut book = OrderBook {
            bids: Ladder { levels: bids },
            asks: Ladder { levels: asks },
            loading,
        };
        if !loading {
            // The same headroom as after a snapshot load.
            for levels in [&mut book.bids.levels, &mut book.asks.levels] {
                levels.reserve(levels.len().max(MIN_RESERVE));
            }
        }
        book
    }

    /// `true` when `a` is a strictly better price than `b` on `side`.
    pub(crate) fn better(side: Side, a: Price, b: Price) -> bool {
        match side {
            Side::Bid => Ladder::<false>::better(a, b),
            Side::Ask => Ladder::<true>::better(a, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn bulk_snapshot_keeps_last_value_and_drops_zeros() {
        let mut b = OrderBook::default();
        b.set(Side::Bid, Price(1), Qty(1));
        b.begin_snapshot();
        for (p, q) in [(105, 1), (104, 2), (103, 3), (104, 0), (102, 4), (102, 5)] {
            b.set(Side::Bid, Price(p), Qty(q));
        }
        for (p, q) in [(106, 1), (108, 2), (107, 3)] {
            b.set(Side::Ask, Price(p), Qty(q));
        }
        assert!(b.is_loading());
        b.end_snapshot();
        let bids: Vec<_> = b.bids().map(|l| (l.price.0, l.qty.0)).collect();
        assert_eq!(bids, vec![(105, 1), (103, 3), (102, 5)]);
        let asks: Vec<_> = b.asks().map(|l| (l.price.0, l.qty.0)).collect();
        assert_eq!(asks, vec![(106, 1), (107, 3), (108, 2)]);
    }

    #[test]
    fn crossed_input_is_kept_and_reported() {
        let mut b = OrderBook::default();
        b.set(Side::Bid, Price(100), Qty(1));
        b.set(Side::Ask, Price(101), Qty(1));
        assert!(!b.is_crossed());
        b.set(Side::Bid, Price(101), Qty(1));
        assert!(b.is_crossed(), "locked counts");
        b.set(Side::Bid, Price(102), Qty(1));
        assert_eq!(b.spread_ticks(), Some(-1));
        assert_eq!(b.depth(Side::Bid), 3);
        b.set(Side::Bid, Price(102), Qty(0));
        b.set(Side::Bid, Price(101), Qty(0));
        assert!(!b.is_crossed());
        assert_eq!(b.best_bid().unwrap().price, Price(100));
    }

    #[test]
    fn deletes_of_missing_levels_are_absent() {
        let mut b = OrderBook::default();
        assert_eq!(b.set(Side::Ask, Price(5), Qty(0)), Change::Absent);
        assert_eq!(b.set(Side::Ask, Price(5), Qty(1)), Change::Inserted);
        assert_eq!(b.set(Side::Ask, Price(5), Qty(2)), Change::Updated);
        assert_eq!(b.set(Side::Ask, Price(5), Qty(0)), Change::Deleted);
        assert_eq!(b.depth(Side::Ask), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Set(bool, i64, i64),
        Snapshot(Vec<(bool, i64, i64)>),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Prices cluster so updates hit existing levels, both near and far from the touch.
        let level = (
            any::<bool>(),
            0i64..200,
            prop_oneof![Just(0i64), 1i64..1000],
        );
        prop_oneof![
            20 => level.clone().prop_map(|(s, p, q)| Op::Set(s, p, q)),
            1 => proptest::collection::vec(level, 0..60).prop_map(Op::Snapshot),
        ]
    }

    /// Operations per case: Miri interprets every step, so it checks short histories.
    const OPS: usize = if cfg!(miri) { 24 } else { 400 };

    proptest! {
        /// The ladder book agrees with a plain BTreeMap model after every operation.
        #[test]
        fn matches_btreemap_model(ops in proptest::collection::vec(op(), 1..OPS)) {
            let mut book = OrderBook::default();
            let mut model: [BTreeMap<i64, i64>; 2] = Default::default();
            for op in ops {
                let apply = |book: &mut OrderBook, model: &mut [BTreeMap<i64, i64>; 2], (ask, p, q): (bool, i64, i64)| {
                    let side = if ask { Side::Ask } else { Side::Bid };
                    book.set(side, Price(p), Qty(q));
                    let m = &mut model[ask as usize];
                    if q == 0 { m.remove(&p); } else { m.insert(p, q); }
                };
                match op {
                    Op::Set(a, p, q) => apply(&mut book, &mut model, (a, p, q)),
                    Op::Snapshot(levels) => {
                        book.begin_snapshot();
                        model = Default::default();
                        for l in levels { apply(&mut book, &mut model, l); }
                        book.end_snapshot();
                    }
                }
                let bids: Vec<_> = book.bids().map(|l| (l.price.0, l.qty.0)).collect();
                let want: Vec<_> = model[0].iter().rev().map(|(p, q)| (*p, *q)).collect();
                prop_assert_eq!(bids, want);
                let asks: Vec<_> = book.asks().map(|l| (l.price.0, l.qty.0)).collect();
                let want: Vec<_> = model[1].iter().map(|(p, q)| (*p, *q)).collect();
                prop_assert_eq!(asks, want);
                prop_assert_eq!(book.best_bid().map(|l| l.price.0), model[0].keys().next_back().copied());
                prop_assert_eq!(book.best_ask().map(|l| l.price.0), model[1].keys().next().copied());
            }
        }
    }
}
