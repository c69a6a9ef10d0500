//! The book thread's state: one [`OrderBook`] per instrument, the rules that turn a book
//! (and a venue's ticker) into a published [`TopOfBook`], and the shm writer.

use hermes_book::kernels::{Aggressor, KernelConfig, Kernels};
use hermes_book::{Level, OrderBook, Price, Qty, Scale};
use hermes_ingest::{Event, InstId, TradeSide, Venue};
use hermes_shm::{
    layout::DEPTH, ShmWriter, SlotIndex, TopOfBook, FLAG_BBO_FROM_TICKER, FLAG_CROSSED,
    FLAG_HAS_ASK, FLAG_HAS_BID, FLAG_STALE,
};

/// A best bid/offer from a ticker stream.
#[derive(Clone, Copy, Debug, Default)]
struct Quote {
    update_id: u64,
    bid_px: i64,
    bid_qty: i64,
    ask_px: i64,
    ask_qty: i64,
}

/// One instrument on the book thread.
#[derive(Debug)]
pub struct Instrument {
    /// Venue.
    pub venue: Venue,
    /// Symbol.
    pub symbol: String,
    /// Decimals.
    pub scale: Scale,
    /// Its shm slot, when the region had room.
    pub slot: Option<SlotIndex>,
    /// The full book.
    pub book: OrderBook,
    /// What was last published (or would have been, without shm).
    pub last: TopOfBook,
    /// Times a commit left the book crossed or locked.
    pub crossed_commits: u64,
    /// The analytics kernels' state, computed on every publication into `last.kernels`.
    pub kernels: Kernels,
    quote: Option<Quote>,
    has_levels: bool,
    stale: bool,
}

/// Counters of the book thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Events applied.
    pub events: u64,
    /// Slot publications.
    pub publishes: u64,
    /// Commits that left a book crossed or locked (reported, not "fixed").
    pub crossed: u64,
    /// Instruments that found no free shm slot.
    pub unpublished_instruments: u64,
}

/// All books plus the shm writer.
pub struct Books {
    /// Instruments by [`InstId`].
    pub instruments: Vec<Instrument>,
    shm: Option<ShmWriter>,
    /// Counters.
    pub stats: BookStats,
    now_ns: fn() -> i64,
    kernel_config: KernelConfig,
}

/// Unix time in nanoseconds.
pub fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Books {
    /// Books publishing into `shm` (or nowhere), with the default kernel settings.
    pub fn new(shm: Option<ShmWriter>) -> Books {
        Books::with_kernel_config(shm, KernelConfig::default())
    }

    /// Books whose instruments compute their kernels with `kernel_config`.
    pub fn with_kernel_config(shm: Option<ShmWriter>, kernel_config: KernelConfig) -> Books {
        Books {
            instruments: Vec::new(),
            shm,
            stats: BookStats::default(),
            now_ns: unix_ns,
            kernel_config,
        }
    }

    /// The shm writer.
    pub fn shm(&self) -> Option<&ShmWriter> {
        self.shm.as_ref()
    }

    /// Refreshes the shm heartbeat.
    pub fn heartbeat(&self) {
        if let Some(w) = &self.shm {
            w.heartbeat();
        }
    }

    /// Applies one event, publishing the instrument's slot when the event completes a
    /// change (a commit, quote, trade or stale flag).
    #[inline]
    pub fn apply(&mut self, ev: &Event) {
        self.stats.events += 1;
        let publish = match *ev {
            Event::Define {
                inst,
                venue,
                symbol,
                scale,
            } => {
                self.define(inst, venue, symbol.as_str(), scale);
                false
            }
            Event::Snapshot { inst } => {
                let i = self.inst(inst);
                i.book.begin_snapshot();
                i.has_levels = true;
                false
            }
            Event::Level {
                inst,
                side,
                price,
                qty,
            } => {
                let i = self.inst(inst);
                i.book.set(side, price, qty);
                i.has_levels = true;
                false
            }
            Event::Commit {
                inst,
                update_id,
                exch_ts_ns,
                recv_ts_ns,
            } => {
                let i = self.inst(inst);
                i.book.end_snapshot();
                i.last.update_id = update_id;
                i.last.exch_ts_ns = exch_ts_ns;
                i.last.recv_ts_ns = recv_ts_ns;
                if i.book.is_crossed() {
                    i.crossed_commits += 1;
                    self.stats.crossed += 1;
                }
                true
            }
            Event::Quote {
                inst,
                update_id,
                bid_px,
                bid_qty,
                ask_px,
                ask_qty,
                recv_ts_ns,
            } => {
                let i = self.inst(inst);
                if i.quote.is_none_or(|q| update_id >= q.update_id) {
                    i.quote = Some(Quote {
                        update_id,
                        bid_px: bid_px.0,
                        bid_qty: bid_qty.0,
                        ask_px: ask_px.0,
                        ask_qty: ask_qty.0,
                    });
                    i.last.recv_ts_ns = recv_ts_ns;
                }
                true
            }
            Event::Trade {
                inst,
                side,
                price,
                qty,
                ts_ns,
                ..
            } => {
                let i = self.inst(inst);
                let aggressor = match side {
                    TradeSide::Unknown => Aggressor::Unknown,
                    TradeSide::Buy => Aggressor::Buy,
                    TradeSide::Sell => Aggressor::Sell,
                };
                i.kernels.on_trade(ts_ns, aggressor, qty);
                i.last.last_trade_px = price.0;
                i.last.last_trade_qty = qty.0;
                i.last.last_trade_ts_ns = ts_ns;
                i.last.last_trade_side = match side {
                    TradeSide::Unknown => 0,
                    TradeSide::Buy => 1,
                    TradeSide::Sell => 2,
                };
                i.last.trades += 1;
                true
            }
            Event::Stale { inst, stale } => {
                self.inst(inst).stale = stale;
                true
            }
        };
        if publish {
            // The kernels' event time: the frame's receive time, or the trade's own time.
            let event_ns = match *ev {
                Event::Commit { recv_ts_ns, .. } | Event::Quote { recv_ts_ns, .. } => recv_ts_ns,
                Event::Trade { ts_ns, .. } => ts_ns,
                _ => i64::MIN,
            };
            self.publish(ev.inst(), event_ns);
        }
    }

    #[inline]
    fn inst(&mut self, inst: InstId) -> &mut Instrument {
        // Define always precedes other events of an instrument (the decoder's contract).
        &mut self.instruments[inst.0 as usize]
    }

    fn define(&mut self, inst: InstId, venue: Venue, symbol: &str, scale: Scale) {
        debug_assert_eq!(inst.0 as usize, self.instruments.len());
        let slot = match &mut self.shm {
            Some(w) => {
                match w.add_instrument(venue, symbol, scale.price_decimals, scale.size_decimals) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(venue = venue.name(), symbol, "not published to shm: {e}");
                        self.stats.unpublished_instruments += 1;
                        None
                    }
                }
            }
            None => None,
        };
        self.instruments.push(Instrument {
            venue,
            symbol: symbol.to_string(),
            scale,
            slot,
            book: OrderBook::default(),
            last: TopOfBook::default(),
            crossed_commits: 0,
            kernels: Kernels::new(&self.kernel_config, scale),
            quote: None,
            has_levels: false,
            stale: false,
        });
    }

    /// Builds the instrument's top of book and kernels (at event time `event_ns`) and
    /// writes them to its slot.
    fn publish(&mut self, inst: InstId, event_ns: i64) {
        let now = (self.now_ns)();
        let i = &mut self.instruments[inst.0 as usize];
        let t = &mut i.last;
        let book = &i.book;
        let mut flags = 0;
        if i.stale {
            flags |= FLAG_STALE;
        }
        if book.is_crossed() {
            flags |= FLAG_CROSSED;
        }
        // Binance: bookTicker and diff depth share one update-id space; the newer wins.
        // Coinbase tickers carry no id: they only stand in when there is no L2 book.
        let from_quote = match i.quote {
            Some(q) if q.update_id > 0 => q.update_id > t.update_id,
            Some(_) => !i.has_levels,
            None => false,
        };
        match (from_quote, i.quote) {
            (true, Some(q)) => {
                flags |= FLAG_BBO_FROM_TICKER | FLAG_HAS_BID | FLAG_HAS_ASK;
                (t.bid_px, t.bid_qty, t.ask_px, t.ask_qty) =
                    (q.bid_px, q.bid_qty, q.ask_px, q.ask_qty);
            }
            _ => {
                let (b, a) = (book.best_bid(), book.best_ask());
                (t.bid_px, t.bid_qty) = b.map_or((0, 0), |l| (l.price.0, l.qty.0));
                (t.ask_px, t.ask_qty) = a.map_or((0, 0), |l| (l.price.0, l.qty.0));
                if b.is_some() {
                    flags |= FLAG_HAS_BID;
                }
                if a.is_some() {
                    flags |= FLAG_HAS_ASK;
                }
            }
        }
        t.bid_levels = 0;
        for (k, l) in book.bids().take(DEPTH).enumerate() {
            t.bids[k] = (l.price.0, l.qty.0);
            t.bid_levels = k as u32 + 1;
        }
        for k in t.bid_levels as usize..DEPTH {
            t.bids[k] = (0, 0);
        }
        t.ask_levels = 0;
        for (k, l) in book.asks().take(DEPTH).enumerate() {
            t.asks[k] = (l.price.0, l.qty.0);
            t.ask_levels = k as u32 + 1;
        }
        for k in t.ask_levels as usize..DEPTH {
            t.asks[k] = (0, 0);
        }
        let best = |has: u64, px: i64, qty: i64| {
            (flags & has != 0).then_some(Level {
                price: Price(px),
                qty: Qty(qty),
            })
        };
        let (bid, ask) = (
            best(FLAG_HAS_BID, t.bid_px, t.bid_qty),
            best(FLAG_HAS_ASK, t.ask_px, t.ask_qty),
        );
        let k = i.kernels.update(event_ns, bid, ask, book);
        t.kernels = crate::analytics::slot_kernels(&k, &i.kernels);
        t.flags = flags;
        t.updates += 1;
        t.publish_ts_ns = now;
        self.stats.publishes += 1;
        if let (Some(w), Some(slot)) = (&mut self.shm, i.slot) {
            w.publish(slot, t);
        }
    }
}
