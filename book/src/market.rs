//! The market model: what Hermes knows of each instrument, and the one rule set that
//! turns [`Event`]s into it.
//!
//! Every consumer of events holds a [`Market`]: the engine's book thread (which
//! publishes each change to the shm slot), the persister (which samples it into the
//! `top_of_book` and `book_snapshots` tables), and the later mirror and export. Each
//! derived value (which best bid/ask is shown, the stale and crossed flags, the last
//! trade, every kernel) is computed here once, so the slot, the tables, the HTTP JSON and
//! `hermes top` show the same numbers for the same events.
//!
//! # The quote-vs-book rule
//! An instrument can have two sources of best bid/ask: its L2 book and a venue quote
//! (Binance `bookTicker`, Coinbase `ticker`). The shown best bid/ask ([`Top::bid_px`] …)
//! comes from the quote when it is newer than the book: Binance quotes and diff depth
//! share one update-id space, so the higher id wins; a quote without an id (Coinbase
//! tickers) stands in only while the instrument has no L2 levels at all. Otherwise it
//! comes from the book. [`FLAG_BBO_FROM_TICKER`] says which.
//!
//! # When an instrument changes
//! [`Market::apply`] reports [`Applied::Changed`] for a commit (the end of a frame's book
//! changes), a quote, a trade and a stale flag: then [`Instrument::top`] is recomputed,
//! kernels included, at the event's time (the frame's receive time, or the trade's own
//! time). Snapshot and level events only stage book changes.
//!
//! ```
//! use hermes_book::event::{Event, InstId, Symbol, Venue};
//! use hermes_book::market::{Applied, Market};
//! use hermes_book::{kernels::KernelConfig, Price, Qty, Scale, Side};
//!
//! let mut m = Market::new(KernelConfig::default());
//! let inst = InstId(0);
//! let scale = Scale { price_decimals: 2, size_decimals: 0 };
//! let symbol = Symbol::new(b"BTCUSDT").unwrap();
//! m.apply(&Event::Define { inst, venue: Venue::Binance, symbol, scale });
//! m.apply(&Event::Level { inst, side: Side::Bid, price: Price(10_000), qty: Qty(3) });
//! m.apply(&Event::Level { inst, side: Side::Ask, price: Price(10_002), qty: Qty(1) });
//! let done = m.apply(&Event::Commit { inst, update_id: 7, exch_ts_ns: 0, recv_ts_ns: 1_000 });
//! assert_eq!(done, Applied::Changed(inst));
//! let top = &m.instrument(inst).top;
//! assert_eq!((top.bid_px, top.ask_px), (10_000, 10_002));
//! assert_eq!(top.kernels.microprice, Some(1_000_150)); // 100.015 at 4 decimals
//! ```

use crate::event::{Event, InstId, TradeSide, Venue};
use crate::kernels::{KernelConfig, KernelValues, Kernels};
use crate::{Level, OrderBook, Price, Qty, Scale};

/// Flag: the instrument's book is being rebuilt after a gap; do not trust it.
pub const FLAG_STALE: u64 = 1;
/// Flag: best bid ≥ best ask (locked or crossed) as the venue sent it.
pub const FLAG_CROSSED: u64 = 1 << 1;
/// Flag: the bid side has a best level.
pub const FLAG_HAS_BID: u64 = 1 << 2;
/// Flag: the ask side has a best level.
pub const FLAG_HAS_ASK: u64 = 1 << 3;
/// Flag: best bid/ask came from a venue quote newer than the depth book (Binance
/// `bookTicker`), not from the book's levels.
pub const FLAG_BBO_FROM_TICKER: u64 = 1 << 4;

/// Flag: the instrument has derivatives data ([`Top::mark_px`] and the rest are set).
pub const FLAG_HAS_DERIVS: u64 = 1 << 5;

/// A best bid/offer from a venue's ticker stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VenueQuote {
    /// Update id in the depth stream's id space (Binance), or 0 when the venue gives none.
    pub update_id: u64,
    /// Best bid price mantissa.
    pub bid_px: i64,
    /// Best bid size mantissa.
    pub bid_qty: i64,
    /// Best ask price mantissa.
    pub ask_px: i64,
    /// Best ask size mantissa.
    pub ask_qty: i64,
}

/// The derived top of book of an instrument after its last change. Prices and sizes are
/// mantissas at the instrument's [`Scale`]; a missing side is 0 with its `FLAG_HAS_*`
/// bit clear.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Top {
    /// Venue update id / sequence of the last committed book change.
    pub update_id: u64,
    /// Exchange time of the last committed book change (0 when the venue gives none).
    pub exch_ts_ns: i64,
    /// Receive time of the last frame that changed the book or the quote.
    pub recv_ts_ns: i64,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// Shown best bid price (see the module docs for where it comes from).
    pub bid_px: i64,
    /// Shown best bid size.
    pub bid_qty: i64,
    /// Shown best ask price.
    pub ask_px: i64,
    /// Shown best ask size.
    pub ask_qty: i64,
    /// Last trade price (0 before the first trade).
    pub last_trade_px: i64,
    /// Last trade size.
    pub last_trade_qty: i64,
    /// Last trade time, Unix ns.
    pub last_trade_ts_ns: i64,
    /// Last trade aggressor.
    pub last_trade_side: TradeSide,
    /// Trades seen.
    pub trades: u64,
    /// Changes of this instrument ([`Applied::Changed`]).
    pub updates: u64,
    /// Mark price at [`DERIV_DECIMALS`](crate::event::DERIV_DECIMALS) (perpetuals and
    /// futures; 0 with [`FLAG_HAS_DERIVS`] clear otherwise).
    pub mark_px: i64,
    /// Index price at [`DERIV_DECIMALS`](crate::event::DERIV_DECIMALS).
    pub index_px: i64,
    /// Funding rate at [`DERIV_DECIMALS`](crate::event::DERIV_DECIMALS).
    pub funding_rate: i64,
    /// Next funding time, Unix ns.
    pub next_funding_ns: i64,
    /// Exchange time of the last mark price update, Unix ns.
    pub derivs_ts_ns: i64,
    /// Forced liquidations seen.
    pub liquidations: u64,
    /// The kernels at the last change.
    pub kernels: KernelValues,
}

impl Top {
    /// `true` while the book is being rebuilt after a gap.
    pub fn is_stale(&self) -> bool {
        self.flags & FLAG_STALE != 0
    }

    /// `true` when the book was crossed or locked at the last change.
    pub fn is_crossed(&self) -> bool {
        self.flags & FLAG_CROSSED != 0
    }

    /// The shown best bid, if any.
    pub fn bid(&self) -> Option<Level> {
        (self.flags & FLAG_HAS_BID != 0).then_some(Level {
            price: Price(self.bid_px),
            qty: Qty(self.bid_qty),
        })
    }

    /// The shown best ask, if any.
    pub fn ask(&self) -> Option<Level> {
        (self.flags & FLAG_HAS_ASK != 0).then_some(Level {
            price: Price(self.ask_px),
            qty: Qty(self.ask_qty),
        })
    }

    /// `true` when the shown best bid/ask came from the venue quote.
    pub fn bbo_from_quote(&self) -> bool {
        self.flags & FLAG_BBO_FROM_TICKER != 0
    }
}

/// One instrument's state.
#[derive(Debug)]
pub struct Instrument {
    /// Venue.
    pub venue: Venue,
    /// Venue symbol.
    pub symbol: String,
    /// Decimals of its mantissas.
    pub scale: Scale,
    /// The full L2 book.
    pub book: OrderBook,
    /// The derived top of book after the last change.
    pub top: Top,
    /// Commits that left the book crossed or locked (reported, never "fixed").
    pub crossed_commits: u64,
    pub(crate) kernels: Kernels,
    pub(crate) quote: Option<VenueQuote>,
    pub(crate) has_levels: bool,
    pub(crate) stale: bool,
}

impl Instrument {
    /// The latest venue quote, if the instrument has one.
    pub fn quote(&self) -> Option<VenueQuote> {
        self.quote
    }

    /// The kernels' state (their configuration, the VWAP size as a mantissa).
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// `true` while the book waits for a new snapshot after a gap.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// The update id of what [`Top`] shows: the quote's when the best bid/ask came from
    /// it, else the last commit's.
    pub fn shown_update_id(&self) -> u64 {
        match self.quote {
            Some(q) if self.top.bbo_from_quote() => q.update_id,
            _ => self.top.update_id,
        }
    }

    /// Recomputes [`Instrument::top`] at event time `event_ns`.
    fn derive(&mut self, event_ns: i64) {
        let t = &mut self.top;
        let book = &self.book;
        let mut flags = 0;
        if self.stale {
            flags |= FLAG_STALE;
        }
        if t.derivs_ts_ns != 0 {
            flags |= FLAG_HAS_DERIVS;
        }
        if book.is_crossed() {
            flags |= FLAG_CROSSED;
        }
        let from_quote = match self.quote {
            Some(q) if q.update_id > 0 => q.update_id > t.update_id,
            Some(_) => !self.has_levels,
            None => false,
        };
        let (bid, ask) = match (from_quote, self.quote) {
            (true, Some(q)) => {
                flags |= FLAG_BBO_FROM_TICKER;
                (
                    Some(Level {
                        price: Price(q.bid_px),
                        qty: Qty(q.bid_qty),
                    }),
                    Some(Level {
                        price: Price(q.ask_px),
                        qty: Qty(q.ask_qty),
                    }),
                )
            }
            _ => (book.best_bid(), book.best_ask()),
        };
        (t.bid_px, t.bid_qty) = bid.map_or((0, 0), |l| (l.price.0, l.qty.0));
        (t.ask_px, t.ask_qty) = ask.map_or((0, 0), |l| (l.price.0, l.qty.0));
        if bid.is_some() {
            flags |= FLAG_HAS_BID;
        }
        if ask.is_some() {
            flags |= FLAG_HAS_ASK;
        }
        t.kernels = self.kernels.update(event_ns, bid, ask, book);
        t.flags = flags;
        t.updates += 1;
    }
}

/// What an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new instrument was defined.
    Defined(InstId),
    /// The instrument's [`Top`] was recomputed: publish it.
    Changed(InstId),
    /// A book change was staged (snapshot start, level): nothing to publish yet.
    Staged,
}

/// Counters of a [`Market`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarketStats {
    /// Events applied.
    pub events: u64,
    /// Changes ([`Applied::Changed`]).
    pub changes: u64,
    /// Commits that left a book crossed or locked.
    pub crossed: u64,
}

/// Every instrument's state, indexed by [`InstId`].
#[derive(Debug)]
pub struct Market {
    instruments: Vec<Instrument>,
    kernel_config: KernelConfig,
    stats: MarketStats,
}

impl Default for Market {
    fn default() -> Self {
        Market::new(KernelConfig::default())
    }
}

impl Market {
    /// An empty market whose instruments compute their kernels with `kernel_config`.
    pub fn new(kernel_config: KernelConfig) -> Market {
        Market {
            instruments: Vec::new(),
            kernel_config,
            stats: MarketStats::default(),
        }
    }

    /// The instruments, in [`InstId`] order.
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// One instrument.
    ///
    /// # Panics
    /// When `id` was never defined: ids come from the same event stream.
    pub fn instrument(&self, id: InstId) -> &Instrument {
        &self.instruments[id.0 as usize]
    }

    /// The instrument of `venue` and `symbol`, if defined.
    pub fn find(&self, venue: Venue, symbol: &str) -> Option<&Instrument> {
        self.instruments
            .iter()
            .find(|i| i.venue == venue && i.symbol == symbol)
    }

    /// Counters.
    pub fn stats(&self) -> MarketStats {
        self.stats
    }

    /// The kernel settings.
    pub fn kernel_config(&self) -> &KernelConfig {
        &self.kernel_config
    }

    /// Applies one event. Events of an instrument follow its [`Event::Define`] (the
    /// decoder's contract).
    #[inline]
    pub fn apply(&mut self, ev: &Event) -> Applied {
        self.stats.events += 1;
        let event_ns = match *ev {
            Event::Define {
                inst,
                venue,
                symbol,
                scale,
            } => {
                debug_assert_eq!(inst.0 as usize, self.instruments.len());
                self.instruments.push(Instrument {
                    venue,
                    symbol: symbol.as_str().to_string(),
                    scale,
                    book: OrderBook::default(),
                    top: Top::default(),
                    crossed_commits: 0,
                    kernels: Kernels::new(&self.kernel_config, scale),
                    quote: None,
                    has_levels: false,
                    stale: false,
                });
                return Applied::Defined(inst);
            }
            Event::Snapshot { inst } => {
                let i = self.inst(inst);
                i.book.begin_snapshot();
                i.has_levels = true;
                return Applied::Staged;
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
                return Applied::Staged;
            }
            Event::Commit {
                inst,
                update_id,
                exch_ts_ns,
                recv_ts_ns,
            } => {
                let i = self.inst(inst);
                i.book.end_snapshot();
                i.top.update_id = update_id;
                i.top.exch_ts_ns = exch_ts_ns;
                i.top.recv_ts_ns = recv_ts_ns;
                if i.book.is_crossed() {
                    i.crossed_commits += 1;
                    self.stats.crossed += 1;
                }
                recv_ts_ns
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
                    i.quote = Some(VenueQuote {
                        update_id,
                        bid_px: bid_px.0,
                        bid_qty: bid_qty.0,
                        ask_px: ask_px.0,
                        ask_qty: ask_qty.0,
                    });
                    i.top.recv_ts_ns = recv_ts_ns;
                }
                recv_ts_ns
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
                i.kernels.on_trade(ts_ns, side, qty);
                i.top.last_trade_px = price.0;
                i.top.last_trade_qty = qty.0;
                i.top.last_trade_ts_ns = ts_ns;
                i.top.last_trade_side = side;
                i.top.trades += 1;
                ts_ns
            }
            Event::Derivs {
                inst,
                mark_px,
                index_px,
                funding_rate,
                next_funding_ns,
                ts_ns,
            } => {
                let t = &mut self.inst(inst).top;
                if ts_ns < t.derivs_ts_ns {
                    // An older update arriving late (reordered): the newer one stands.
                    return Applied::Staged;
                }
                t.mark_px = mark_px;
                t.index_px = index_px;
                t.funding_rate = funding_rate;
                t.next_funding_ns = next_funding_ns;
                // Never 0 once set: the flag reads it.
                t.derivs_ts_ns = ts_ns.max(1);
                i64::MIN
            }
            Event::Liquidation { inst, .. } => {
                self.inst(inst).top.liquidations += 1;
                i64::MIN
            }
            Event::Stale { inst, stale } => {
                self.inst(inst).stale = stale;
                i64::MIN
            }
        };
        let inst = ev.inst();
        self.inst(inst).derive(event_ns);
        self.stats.changes += 1;
        Applied::Changed(inst)
    }

    /// Loads a [checkpoint](crate::checkpoint) and returns the instrument's id. When the
    /// market has an instrument of the checkpoint's venue and symbol (the first, as
    /// [`Market::find`] sees it), its whole state is replaced in place and keeps its id;
    /// otherwise the instrument is added with the next id, as [`Event::Define`] would.
    ///
    /// Afterwards the instrument is the one that was checkpointed: the same events give
    /// it the same [`Top`] and book as the original. It keeps the original's kernel
    /// settings ([`Checkpoint::kernel_config`](crate::checkpoint::Checkpoint::kernel_config)),
    /// whatever [`Market::kernel_config`] says. The market's [`MarketStats`] are left as
    /// they are: they count the events this market applied.
    pub fn restore(&mut self, cp: crate::checkpoint::Checkpoint) -> InstId {
        let inst = cp.into_instrument();
        let idx = match self
            .instruments
            .iter()
            .position(|i| i.venue == inst.venue && i.symbol == inst.symbol)
        {
            Some(idx) => {
                self.instruments[idx] = inst;
                idx
            }
            None => {
                self.instruments.push(inst);
                self.instruments.len() - 1
            }
        };
        InstId(idx as u32)
    }

    #[inline]
    fn inst(&mut self, inst: InstId) -> &mut Instrument {
        &mut self.instruments[inst.0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Symbol;
    use crate::Side;

    /// Mark price and funding: the newest update stands (a late, reordered one is
    /// ignored); liquidations are counted; both show the derivatives flag.
    #[test]
    fn derivatives_keep_the_newest_mark_and_count_liquidations() {
        let mut m = Market::default();
        let inst = define(&mut m, Venue::BinanceUsdm);
        assert_eq!(m.instrument(inst).top.flags & FLAG_HAS_DERIVS, 0);
        let derivs = |mark_px, ts_ns| Event::Derivs {
            inst,
            mark_px,
            index_px: 5,
            funding_rate: -7,
            next_funding_ns: 9,
            ts_ns,
        };
        assert_eq!(m.apply(&derivs(100, 2_000)), Applied::Changed(inst));
        assert_eq!(m.apply(&derivs(99, 1_000)), Applied::Staged);
        let t = m.instrument(inst).top;
        assert_eq!(
            (t.mark_px, t.funding_rate, t.derivs_ts_ns),
            (100, -7, 2_000)
        );
        assert_ne!(t.flags & FLAG_HAS_DERIVS, 0);
        m.apply(&Event::Liquidation {
            inst,
            side: TradeSide::Sell,
            price: Price(1),
            qty: Qty(1),
            ts_ns: 3_000,
        });
        assert_eq!(m.instrument(inst).top.liquidations, 1);
        assert_eq!(m.instrument(inst).top.trades, 0, "not a trade");
    }

    fn define(m: &mut Market, venue: Venue) -> InstId {
        let inst = InstId(m.instruments().len() as u32);
        m.apply(&Event::Define {
            inst,
            venue,
            symbol: Symbol::new(b"X").unwrap(),
            scale: Scale {
                price_decimals: 0,
                size_decimals: 0,
            },
        });
        inst
    }

    fn level(m: &mut Market, inst: InstId, side: Side, px: i64, qty: i64) {
        m.apply(&Event::Level {
            inst,
            side,
            price: Price(px),
            qty: Qty(qty),
        });
    }

    fn commit(m: &mut Market, inst: InstId, update_id: u64) -> Applied {
        m.apply(&Event::Commit {
            inst,
            update_id,
            exch_ts_ns: 0,
            recv_ts_ns: update_id as i64,
        })
    }

    fn quote(m: &mut Market, inst: InstId, update_id: u64, bid: i64, ask: i64) -> Applied {
        m.apply(&Event::Quote {
            inst,
            update_id,
            bid_px: Price(bid),
            bid_qty: Qty(1),
            ask_px: Price(ask),
            ask_qty: Qty(1),
            recv_ts_ns: 1,
        })
    }

    #[test]
    fn the_newer_of_quote_and_book_is_shown_when_they_share_ids() {
        let mut m = Market::default();
        let i = define(&mut m, Venue::Binance);
        level(&mut m, i, Side::Bid, 100, 1);
        level(&mut m, i, Side::Ask, 102, 1);
        assert_eq!(commit(&mut m, i, 10), Applied::Changed(i));
        assert_eq!(quote(&mut m, i, 11, 101, 103), Applied::Changed(i));
        let t = m.instrument(i).top;
        assert!(t.bbo_from_quote());
        assert_eq!((t.bid_px, t.ask_px), (101, 103));
        assert_eq!(m.instrument(i).shown_update_id(), 11);
        // A later depth diff wins again.
        level(&mut m, i, Side::Bid, 99, 1);
        commit(&mut m, i, 12);
        let t = m.instrument(i).top;
        assert!(!t.bbo_from_quote());
        assert_eq!((t.bid_px, t.ask_px), (100, 102));
        // An older quote is ignored.
        quote(&mut m, i, 5, 1, 2);
        assert_eq!(m.instrument(i).quote().unwrap().update_id, 11);
    }

    #[test]
    fn a_quote_without_id_stands_in_only_without_levels() {
        let mut m = Market::default();
        let i = define(&mut m, Venue::Coinbase);
        quote(&mut m, i, 0, 50, 51);
        assert!(m.instrument(i).top.bbo_from_quote());
        assert_eq!(m.instrument(i).top.bid_px, 50);
        level(&mut m, i, Side::Bid, 40, 2);
        commit(&mut m, i, 1);
        quote(&mut m, i, 0, 50, 51);
        let t = m.instrument(i).top;
        assert!(!t.bbo_from_quote());
        assert_eq!(t.bid_px, 40);
        assert!(t.ask().is_none());
        assert_eq!(t.flags & FLAG_HAS_ASK, 0);
    }

    #[test]
    fn stale_crossed_and_trades() {
        let mut m = Market::default();
        let i = define(&mut m, Venue::Binance);
        level(&mut m, i, Side::Bid, 105, 1);
        level(&mut m, i, Side::Ask, 100, 1);
        commit(&mut m, i, 1);
        assert!(m.instrument(i).top.is_crossed());
        assert_eq!(m.stats().crossed, 1);
        assert_eq!(m.instrument(i).crossed_commits, 1);
        m.apply(&Event::Stale {
            inst: i,
            stale: true,
        });
        assert!(m.instrument(i).top.is_stale());
        m.apply(&Event::Trade {
            inst: i,
            side: TradeSide::Sell,
            trade_id: 9,
            price: Price(101),
            qty: Qty(4),
            ts_ns: 77,
        });
        let t = m.instrument(i).top;
        assert_eq!(
            (
                t.last_trade_px,
                t.last_trade_qty,
                t.last_trade_side,
                t.trades
            ),
            (101, 4, TradeSide::Sell, 1)
        );
        assert_eq!(t.kernels.trade_sell_qty, 4);
        assert_eq!(t.updates, 3);
        m.apply(&Event::Stale {
            inst: i,
            stale: false,
        });
        assert!(!m.instrument(i).top.is_stale());
    }
}
