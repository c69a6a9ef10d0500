//! Normalized, fixed-point events: what the ingest thread pushes through the ring and
//! what the [`market`](crate::market) model applies.
//!
//! Every event is `Copy` and at most 64 bytes, so the ring holds them inline. A frame's
//! effect on one instrument is bracketed: optional [`Event::Snapshot`], then
//! [`Event::Level`]s, then one [`Event::Commit`]; the book thread publishes to shm only at
//! the commit, so readers never see half a frame.

use crate::{Price, Qty, Scale, Side};

/// A market the frames come from. The code is what the shm directory stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Venue {
    /// Coinbase Advanced Trade.
    Coinbase = 1,
    /// Binance spot.
    Binance = 2,
    /// Ticks posted to the webhook.
    Webhook = 3,
    /// Binance USD-M futures (`fstream.binance.com`, `/fapi`): linear contracts, sizes in
    /// the base asset.
    BinanceUsdm = 4,
    /// Binance COIN-M futures (`dstream.binance.com`, `/dapi`): inverse contracts, sizes
    /// in contracts (see [`Venue::size_unit`]).
    BinanceCoinm = 5,
    /// The Coinbase Exchange feed (`ws-feed.exchange.coinbase.com`, formerly Pro).
    CoinbaseExchange = 6,
}

impl Venue {
    /// Every venue, in code order.
    pub const ALL: [Venue; 6] = [
        Venue::Coinbase,
        Venue::Binance,
        Venue::Webhook,
        Venue::BinanceUsdm,
        Venue::BinanceCoinm,
        Venue::CoinbaseExchange,
    ];

    /// One more than the highest code: the length of a table indexed by `venue as usize`.
    pub const CODES: usize = 7;

    /// The lowercase name used on the CLI, in JSON and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Venue::Coinbase => "coinbase",
            Venue::Binance => "binance",
            Venue::Webhook => "webhook",
            Venue::BinanceUsdm => "binance-usdm",
            Venue::BinanceCoinm => "binance-coinm",
            Venue::CoinbaseExchange => "coinbase-exchange",
        }
    }

    /// `true` for the Binance futures venues (diff depth chained by `pu`, mark price and
    /// funding, liquidations).
    pub fn is_binance_futures(self) -> bool {
        matches!(self, Venue::BinanceUsdm | Venue::BinanceCoinm)
    }

    /// `true` for the venues whose frames the Binance decoder reads (spot and futures).
    pub fn is_binance(self) -> bool {
        matches!(
            self,
            Venue::Binance | Venue::BinanceUsdm | Venue::BinanceCoinm
        )
    }

    /// What a size (`qty`) counts: `"contracts"` for COIN-M (each worth a fixed USD
    /// amount, 100 USD for BTC and 10 USD for the others, as `/dapi/v1/exchangeInfo`'s
    /// `contractSize` says), `"base"` (the base asset) for every other venue.
    pub fn size_unit(self) -> &'static str {
        match self {
            Venue::BinanceCoinm => "contracts",
            _ => "base",
        }
    }

    /// The venue for a directory code.
    pub fn from_code(code: u8) -> Option<Venue> {
        Venue::ALL.into_iter().find(|v| *v as u8 == code)
    }

    /// The venue for its [`name`](Venue::name).
    pub fn from_name(name: &str) -> Option<Venue> {
        Venue::ALL.into_iter().find(|v| v.name() == name)
    }
}

impl std::fmt::Display for Venue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decimals of the mantissas in [`Event::Derivs`] (mark, index, funding rate).
pub const DERIV_DECIMALS: u8 = 8;

/// Dense instrument id assigned by the ingest thread, in order of first sight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstId(pub u32);

/// Longest symbol an instrument may have.
pub const MAX_SYMBOL: usize = 32;

/// A symbol stored inline (no heap), for [`Event::Define`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Symbol {
    len: u8,
    bytes: [u8; MAX_SYMBOL],
}

impl Symbol {
    /// `None` when longer than [`MAX_SYMBOL`] or not UTF-8.
    pub fn new(s: &[u8]) -> Option<Symbol> {
        if s.len() > MAX_SYMBOL || std::str::from_utf8(s).is_err() || s.is_empty() {
            return None;
        }
        let mut bytes = [0u8; MAX_SYMBOL];
        bytes[..s.len()].copy_from_slice(s);
        Some(Symbol {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The symbol text.
    pub fn as_str(&self) -> &str {
        // Checked to be UTF-8 in `new`.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl std::fmt::Debug for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Aggressor side of a trade, as the venue reports it. The code is what the shm slot
/// stores (`last_trade_side`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum TradeSide {
    /// Not given by the venue: the trade counts in neither side of the flow.
    #[default]
    Unknown = 0,
    /// The buyer took liquidity.
    Buy = 1,
    /// The seller took liquidity.
    Sell = 2,
}

impl TradeSide {
    /// `buy`, `sell` or `unknown`, as in the tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            TradeSide::Unknown => "unknown",
            TradeSide::Buy => "buy",
            TradeSide::Sell => "sell",
        }
    }

    /// The side for a slot code (anything unknown is [`TradeSide::Unknown`]).
    pub fn from_code(code: u8) -> TradeSide {
        match code {
            1 => TradeSide::Buy,
            2 => TradeSide::Sell,
            _ => TradeSide::Unknown,
        }
    }
}

/// One normalized event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new instrument; sent once, before any other event for it.
    Define {
        /// Its id.
        inst: InstId,
        /// Venue.
        venue: Venue,
        /// Venue symbol.
        symbol: Symbol,
        /// Decimals of its mantissas.
        scale: Scale,
    },
    /// The following levels replace the whole book (until the commit).
    Snapshot {
        /// Instrument.
        inst: InstId,
    },
    /// Set the size at a price; size 0 deletes the level.
    Level {
        /// Instrument.
        inst: InstId,
        /// Side.
        side: Side,
        /// Price.
        price: Price,
        /// New total size at the price.
        qty: Qty,
    },
    /// End of a frame's changes to an instrument's book: apply and publish.
    Commit {
        /// Instrument.
        inst: InstId,
        /// Venue update id / sequence (Coinbase `sequence_num`, Binance `u`).
        update_id: u64,
        /// Exchange time, Unix ns (0 if none).
        exch_ts_ns: i64,
        /// Receive time of the frame, Unix ns.
        recv_ts_ns: i64,
    },
    /// A best bid/offer quote (Binance `bookTicker`, Coinbase `ticker`).
    Quote {
        /// Instrument.
        inst: InstId,
        /// Update id in the depth stream's id space (Binance), or 0 when the venue gives
        /// none (Coinbase): such quotes only stand in for a book that has no levels.
        update_id: u64,
        /// Best bid price.
        bid_px: Price,
        /// Best bid size.
        bid_qty: Qty,
        /// Best ask price.
        ask_px: Price,
        /// Best ask size.
        ask_qty: Qty,
        /// Receive time of the frame, Unix ns.
        recv_ts_ns: i64,
    },
    /// A trade.
    Trade {
        /// Instrument.
        inst: InstId,
        /// Aggressor side.
        side: TradeSide,
        /// Venue trade id.
        trade_id: u64,
        /// Price.
        price: Price,
        /// Size.
        qty: Qty,
        /// Trade time, Unix ns.
        ts_ns: i64,
    },
    /// A perpetual's or future's mark price, index price and funding (Binance
    /// `markPriceUpdate`). Prices and the rate are mantissas at [`DERIV_DECIMALS`]
    /// decimals, whatever the instrument's scale: the venue computes them as averages
    /// finer than the price tick.
    Derivs {
        /// Instrument.
        inst: InstId,
        /// Mark price at [`DERIV_DECIMALS`].
        mark_px: i64,
        /// Index price at [`DERIV_DECIMALS`] (0 when the venue gives none).
        index_px: i64,
        /// Funding rate per funding interval at [`DERIV_DECIMALS`] (`0.00010000` is
        /// 10_000); 0 for a delivery contract.
        funding_rate: i64,
        /// Next funding time, Unix ns (0 for a delivery contract).
        next_funding_ns: i64,
        /// Exchange time of the update, Unix ns.
        ts_ns: i64,
    },
    /// A forced liquidation order (Binance `forceOrder`): the venue's snapshot of an
    /// order it placed to close a position. Its fills also appear as ordinary trades, so
    /// it is kept apart from [`Event::Trade`] and counted in no trade flow.
    Liquidation {
        /// Instrument.
        inst: InstId,
        /// The liquidation order's side: `Sell` closes a long, `Buy` a short.
        side: TradeSide,
        /// Average fill price (`ap`), or the order price (`p`) before any fill.
        price: Price,
        /// Size filled so far (`z`).
        qty: Qty,
        /// Order time (`T`), Unix ns.
        ts_ns: i64,
    },
    /// The instrument's book is (or is no longer) trustworthy: a gap was detected and it
    /// waits for a new snapshot.
    Stale {
        /// Instrument.
        inst: InstId,
        /// `true` = stale.
        stale: bool,
    },
}

const _: () = assert!(std::mem::size_of::<Event>() <= 64);

impl Event {
    /// The same event about instrument `to` (a test or a fuzz target comparing events
    /// of two decoders whose ids differ).
    pub fn with_inst(self, to: InstId) -> Event {
        let mut ev = self;
        match &mut ev {
            Event::Define { inst, .. }
            | Event::Snapshot { inst }
            | Event::Level { inst, .. }
            | Event::Commit { inst, .. }
            | Event::Quote { inst, .. }
            | Event::Trade { inst, .. }
            | Event::Derivs { inst, .. }
            | Event::Liquidation { inst, .. }
            | Event::Stale { inst, .. } => *inst = to,
        }
        ev
    }

    /// The instrument the event is about.
    pub fn inst(&self) -> InstId {
        match *self {
            Event::Define { inst, .. }
            | Event::Snapshot { inst }
            | Event::Level { inst, .. }
            | Event::Commit { inst, .. }
            | Event::Quote { inst, .. }
            | Event::Trade { inst, .. }
            | Event::Derivs { inst, .. }
            | Event::Liquidation { inst, .. }
            | Event::Stale { inst, .. } => inst,
        }
    }
}

/// Where a decoder puts events: the ring's producer, a `Vec` in tests.
pub trait EventSink {
    /// Takes one event. Must not drop it silently: a bounded sink waits or counts.
    fn push(&mut self, ev: Event);
}

impl EventSink for Vec<Event> {
    fn push(&mut self, ev: Event) {
        Vec::push(self, ev);
    }
}
