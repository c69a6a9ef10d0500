//! # hermes-shm
//!
//! The shared-memory region through which Hermes hands top-of-book to strategies on the
//! same host: one file (by default under `/dev/shm`), a header, an instrument directory,
//! and one cache-line-aligned slot per instrument guarded by a seqlock. The byte layout is
//! documented in `shm/LAYOUT.md` and mirrored by the C header
//! (`shm/include/hermes_shm.h`) and the stdlib-only Python reader
//! (`shm/python/hermes_shm.py`).
//!
//! Main types: [`ShmWriter`] (one per file, owned by the engine's book thread),
//! [`ShmReader`] (any number, any process), [`TopOfBook`] (a consistent copy of a slot,
//! with its analytics [`SlotKernels`] and, for perpetuals and futures, mark, index and
//! funding), [`Instrument`] (a directory entry).
//!
//! ```
//! use hermes_shm::{Instrument, ShmReader, ShmWriter, TopOfBook, Venue, WriterOptions};
//! let dir = std::env::temp_dir().join(format!("hermes-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("region");
//! let mut writer = ShmWriter::create(&path, WriterOptions::default()).unwrap();
//! let slot = writer.add_instrument(Venue::Binance, "BTCUSDT", 8, 8).unwrap();
//! let mut tob = TopOfBook::default();
//! tob.bid_px = 6_183_763_000_000;
//! tob.bid_qty = 100_000_000;
//! writer.publish(slot, &tob);
//!
//! // SAFETY: the file is ours and nobody truncates it while it is mapped.
//! let reader = unsafe { ShmReader::open(&path) }.unwrap();
//! let inst = &reader.instruments()[0];
//! assert_eq!(inst.symbol, "BTCUSDT");
//! assert_eq!(reader.read(inst.slot).unwrap().bid_px, 6_183_763_000_000);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

#[cfg(not(loom))]
pub mod follow;
pub mod json;
pub mod layout;
pub mod seqlock;
mod sync;

#[cfg(not(loom))]
mod path_checks;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
pub use region::{ReaderOptions, ShmReader, ShmWriter, WriterOptions, WriterStatus, MAX_SLOTS};

use layout::{kernel_valid, slot, DEPTH, SLOT_WORDS};

pub use hermes_book::market::{
    FLAG_BBO_FROM_TICKER, FLAG_CROSSED, FLAG_HAS_ASK, FLAG_HAS_BID, FLAG_HAS_DERIVS, FLAG_STALE,
};
/// The venue codes stored in the directory are [`Venue`]'s.
pub use hermes_book::Venue;

/// A slot index in the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotIndex(pub u32);

/// A directory entry: which slot holds which instrument, and its decimals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instrument {
    /// The venue.
    pub venue: Venue,
    /// The venue's symbol (`BTC-USD`, `BTCUSDT`).
    pub symbol: String,
    /// Decimals of price mantissas.
    pub price_decimals: u8,
    /// Decimals of size mantissas.
    pub size_decimals: u8,
    /// Its slot.
    pub slot: SlotIndex,
}

/// The analytics kernels of a slot (layout version 2 on, words 64–87). Definitions are in
/// the `hermes-book` crate's `kernels` module and in `shm/LAYOUT.md`. Sizes are
/// mantissas at the instrument's size decimals; averaged prices (`mid_px`,
/// `microprice_px`, `vwap_*_px`) at `price_decimals` decimals (the instrument's price
/// decimals + 2, at most 18); ratios in parts per million. `None` when the kernel had no
/// valid value (an empty side, a thin book, no trades in the window).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlotKernels {
    /// Kernel clock (event time) of this computation, Unix ns.
    pub time_ns: i64,
    /// Decimals of `mid_px`, `microprice_px`, `vwap_buy_px`, `vwap_sell_px`.
    pub price_decimals: u8,
    /// Ask − bid, price mantissa (ticks of the instrument's price decimals).
    pub spread_ticks: Option<i64>,
    /// Spread over mid, basis points × 100.
    pub spread_bps_x100: Option<i64>,
    /// Mid price.
    pub mid_px: Option<i64>,
    /// Microprice `(bid × ask_qty + ask × bid_qty) / (bid_qty + ask_qty)`.
    pub microprice_px: Option<i64>,
    /// Size of the top `levels` bid levels.
    pub bid_depth: i64,
    /// Size of the top `levels` ask levels.
    pub ask_depth: i64,
    /// `(bid_depth − ask_depth) / (bid_depth + ask_depth)`, ppm.
    pub imbalance_ppm: Option<i64>,
    /// Average price to buy `vwap_qty` walking the asks.
    pub vwap_buy_px: Option<i64>,
    /// Average price to sell `vwap_qty` walking the bids.
    pub vwap_sell_px: Option<i64>,
    /// EWMA mid-price volatility over one second, bps (`f64`: it needs a log and a root).
    pub volatility_bps: Option<f64>,
    /// Size bought by aggressors in the trade window.
    pub trade_buy_qty: i64,
    /// Size sold by aggressors in the trade window.
    pub trade_sell_qty: i64,
    /// `(buy − sell) / (buy + sell)` over the trade window, ppm.
    pub trade_imbalance_ppm: Option<i64>,
    /// Order-flow imbalance (Cont, Kukanov & Stoikov) over the trade window.
    pub ofi_window: i64,
    /// Order-flow imbalance since the writer started (wrapping; take differences).
    pub ofi_total: i64,
    /// Updates per second over the rate window, × 100.
    pub updates_per_s_x100: u64,
    /// N: levels per side in `bid_depth`, `ask_depth`, `imbalance_ppm`.
    pub levels: u32,
    /// The size the VWAPs fill, size mantissa.
    pub vwap_qty: i64,
    /// Half-life of the volatility EWMA, ns.
    pub vol_half_life_ns: i64,
    /// Length of the trade window (trade-flow imbalance, `ofi_window`), ns.
    pub trade_window_ns: i64,
    /// Length of the rate window, ns.
    pub rate_window_ns: i64,
}

impl SlotKernels {
    fn encode(&self, w: &mut [u64; SLOT_WORDS]) {
        let mut valid = 0u64;
        let mut opt = |word: usize, bit: u64, v: Option<i64>| {
            if let Some(x) = v {
                valid |= bit;
                w[word] = x as u64;
            } else {
                w[word] = 0;
            }
        };
        opt(
            slot::SPREAD_TICKS,
            kernel_valid::SPREAD_TICKS,
            self.spread_ticks,
        );
        opt(
            slot::SPREAD_BPS_X100,
            kernel_valid::SPREAD_BPS,
            self.spread_bps_x100,
        );
        opt(slot::MID_PX, kernel_valid::MID, self.mid_px);
        opt(
            slot::MICROPRICE_PX,
            kernel_valid::MICROPRICE,
            self.microprice_px,
        );
        opt(
            slot::IMBALANCE_PPM,
            kernel_valid::IMBALANCE,
            self.imbalance_ppm,
        );
        opt(slot::VWAP_BUY_PX, kernel_valid::VWAP_BUY, self.vwap_buy_px);
        opt(
            slot::VWAP_SELL_PX,
            kernel_valid::VWAP_SELL,
            self.vwap_sell_px,
        );
        opt(
            slot::TRADE_IMBALANCE_PPM,
            kernel_valid::TRADE_IMBALANCE,
            self.trade_imbalance_ppm,
        );
        match self.volatility_bps {
            Some(v) => {
                valid |= kernel_valid::VOLATILITY;
                w[slot::VOLATILITY_BPS] = v.to_bits();
            }
            None => w[slot::VOLATILITY_BPS] = 0,
        }
        w[slot::KERNEL_FLAGS] = valid;
        w[slot::KERNEL_TS_NS] = self.time_ns as u64;
        w[slot::BID_DEPTH] = self.bid_depth as u64;
        w[slot::ASK_DEPTH] = self.ask_depth as u64;
        w[slot::TRADE_BUY_QTY] = self.trade_buy_qty as u64;
        w[slot::TRADE_SELL_QTY] = self.trade_sell_qty as u64;
        w[slot::OFI_WINDOW] = self.ofi_window as u64;
        w[slot::OFI_TOTAL] = self.ofi_total as u64;
        w[slot::UPDATES_PER_S_X100] = self.updates_per_s_x100;
        w[slot::KERNEL_PRICE_DECIMALS] = self.price_decimals as u64;
        w[slot::KERNEL_LEVELS] = self.levels as u64;
        w[slot::VWAP_QTY] = self.vwap_qty as u64;
        w[slot::VOL_HALF_LIFE_NS] = self.vol_half_life_ns as u64;
        w[slot::TRADE_WINDOW_NS] = self.trade_window_ns as u64;
        w[slot::RATE_WINDOW_NS] = self.rate_window_ns as u64;
    }

    fn decode(w: impl Fn(usize) -> u64) -> SlotKernels {
        let valid = w(slot::KERNEL_FLAGS);
        let opt = |word: usize, bit: u64| (valid & bit != 0).then(|| w(word) as i64);
        SlotKernels {
            time_ns: w(slot::KERNEL_TS_NS) as i64,
            price_decimals: w(slot::KERNEL_PRICE_DECIMALS).min(u8::MAX as u64) as u8,
            spread_ticks: opt(slot::SPREAD_TICKS, kernel_valid::SPREAD_TICKS),
            spread_bps_x100: opt(slot::SPREAD_BPS_X100, kernel_valid::SPREAD_BPS),
            mid_px: opt(slot::MID_PX, kernel_valid::MID),
            microprice_px: opt(slot::MICROPRICE_PX, kernel_valid::MICROPRICE),
            bid_depth: w(slot::BID_DEPTH) as i64,
            ask_depth: w(slot::ASK_DEPTH) as i64,
            imbalance_ppm: opt(slot::IMBALANCE_PPM, kernel_valid::IMBALANCE),
            vwap_buy_px: opt(slot::VWAP_BUY_PX, kernel_valid::VWAP_BUY),
            vwap_sell_px: opt(slot::VWAP_SELL_PX, kernel_valid::VWAP_SELL),
            volatility_bps: (valid & kernel_valid::VOLATILITY != 0)
                .then(|| f64::from_bits(w(slot::VOLATILITY_BPS))),
            trade_buy_qty: w(slot::TRADE_BUY_QTY) as i64,
            trade_sell_qty: w(slot::TRADE_SELL_QTY) as i64,
            trade_imbalance_ppm: opt(slot::TRADE_IMBALANCE_PPM, kernel_valid::TRADE_IMBALANCE),
            ofi_window: w(slot::OFI_WINDOW) as i64,
            ofi_total: w(slot::OFI_TOTAL) as i64,
            updates_per_s_x100: w(slot::UPDATES_PER_S_X100),
            levels: w(slot::KERNEL_LEVELS).min(u32::MAX as u64) as u32,
            vwap_qty: w(slot::VWAP_QTY) as i64,
            vol_half_life_ns: w(slot::VOL_HALF_LIFE_NS) as i64,
            trade_window_ns: w(slot::TRADE_WINDOW_NS) as i64,
            rate_window_ns: w(slot::RATE_WINDOW_NS) as i64,
        }
    }
}

/// The hot part of a slot (words 1-11): best bid/ask, flags and times, read by
/// [`ShmReader::read_bbo`] without the levels and kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bbo {
    /// Seqlock sequence of this copy.
    pub seq: u64,
    /// Venue update id / sequence of the last applied message.
    pub update_id: u64,
    /// Exchange time, Unix ns.
    pub exch_ts_ns: i64,
    /// Receive time, Unix ns.
    pub recv_ts_ns: i64,
    /// Publication time, Unix ns.
    pub publish_ts_ns: i64,
    /// Publications of this slot.
    pub updates: u64,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// Best bid price (valid with [`FLAG_HAS_BID`]).
    pub bid_px: i64,
    /// Best bid size.
    pub bid_qty: i64,
    /// Best ask price (valid with [`FLAG_HAS_ASK`]).
    pub ask_px: i64,
    /// Best ask size.
    pub ask_qty: i64,
}

/// A consistent copy of one slot. Prices and sizes are mantissas at the instrument's
/// decimals; times are Unix nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TopOfBook {
    /// Seqlock sequence of this copy (even; increases by 2 per publication).
    pub seq: u64,
    /// Venue update id / sequence of the last applied message.
    pub update_id: u64,
    /// Exchange time of the last applied message (0 when the venue gives none).
    pub exch_ts_ns: i64,
    /// Receive time of the frame.
    pub recv_ts_ns: i64,
    /// Publication time.
    pub publish_ts_ns: i64,
    /// Publications of this slot since the writer started.
    pub updates: u64,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// Best bid price.
    pub bid_px: i64,
    /// Best bid size.
    pub bid_qty: i64,
    /// Best ask price.
    pub ask_px: i64,
    /// Best ask size.
    pub ask_qty: i64,
    /// Valid entries in `bids`.
    pub bid_levels: u32,
    /// Valid entries in `asks`.
    pub ask_levels: u32,
    /// Top bid levels `(price, size)`, best first.
    pub bids: [(i64, i64); DEPTH],
    /// Top ask levels `(price, size)`, best first.
    pub asks: [(i64, i64); DEPTH],
    /// Last trade price.
    pub last_trade_px: i64,
    /// Last trade size.
    pub last_trade_qty: i64,
    /// Last trade time.
    pub last_trade_ts_ns: i64,
    /// Last trade aggressor: 0 unknown, 1 buy, 2 sell.
    pub last_trade_side: u8,
    /// Trades seen.
    pub trades: u64,
    /// Mark price at [`layout::DERIV_DECIMALS`] (valid with [`FLAG_HAS_DERIVS`], as are
    /// the four fields after it; 0 otherwise).
    pub mark_px: i64,
    /// Index price at [`layout::DERIV_DECIMALS`] (0 when the venue gives none).
    pub index_px: i64,
    /// Funding rate per funding interval at [`layout::DERIV_DECIMALS`], signed.
    pub funding_rate: i64,
    /// Next funding time, Unix ns (0 when the venue gives none).
    pub next_funding_ns: i64,
    /// Exchange time of the last mark price update, Unix ns.
    pub derivs_ts_ns: i64,
    /// Forced liquidations seen.
    pub liquidations: u64,
    /// The analytics kernels.
    pub kernels: SlotKernels,
}

impl TopOfBook {
    /// `true` while the book is being rebuilt after a gap.
    pub fn is_stale(&self) -> bool {
        self.flags & FLAG_STALE != 0
    }

    /// `true` when the derivatives fields (mark, index, funding) hold values.
    pub fn has_derivs(&self) -> bool {
        self.flags & FLAG_HAS_DERIVS != 0
    }

    /// The valid bid levels.
    pub fn bid_levels(&self) -> &[(i64, i64)] {
        &self.bids[..(self.bid_levels as usize).min(DEPTH)]
    }

    /// The valid ask levels.
    pub fn ask_levels(&self) -> &[(i64, i64)] {
        &self.asks[..(self.ask_levels as usize).min(DEPTH)]
    }

    /// Encodes into slot words (word 0, the sequence, is left out: `out[i]` is word `i+1`).
    pub fn encode(&self, out: &mut [u64; SLOT_WORDS - 1]) {
        let mut w = [0u64; SLOT_WORDS];
        w[slot::UPDATE_ID] = self.update_id;
        w[slot::EXCH_TS_NS] = self.exch_ts_ns as u64;
        w[slot::RECV_TS_NS] = self.recv_ts_ns as u64;
        w[slot::PUBLISH_TS_NS] = self.publish_ts_ns as u64;
        w[slot::UPDATES] = self.updates;
        w[slot::FLAGS] = self.flags;
        w[slot::LEVEL_COUNTS] = self.bid_levels as u64 | (self.ask_levels as u64) << 32;
        w[slot::BID_PX] = self.bid_px as u64;
        w[slot::BID_QTY] = self.bid_qty as u64;
        w[slot::ASK_PX] = self.ask_px as u64;
        w[slot::ASK_QTY] = self.ask_qty as u64;
        for i in 0..DEPTH {
            w[slot::BIDS + 2 * i] = self.bids[i].0 as u64;
            w[slot::BIDS + 2 * i + 1] = self.bids[i].1 as u64;
            w[slot::ASKS + 2 * i] = self.asks[i].0 as u64;
            w[slot::ASKS + 2 * i + 1] = self.asks[i].1 as u64;
        }
        w[slot::LAST_TRADE_PX] = self.last_trade_px as u64;
        w[slot::LAST_TRADE_QTY] = self.last_trade_qty as u64;
        w[slot::LAST_TRADE_TS_NS] = self.last_trade_ts_ns as u64;
        w[slot::LAST_TRADE_SIDE] = self.last_trade_side as u64;
        w[slot::TRADES] = self.trades;
        w[slot::MARK_PX] = self.mark_px as u64;
        w[slot::INDEX_PX] = self.index_px as u64;
        w[slot::FUNDING_RATE] = self.funding_rate as u64;
        w[slot::NEXT_FUNDING_NS] = self.next_funding_ns as u64;
        w[slot::DERIVS_TS_NS] = self.derivs_ts_ns as u64;
        w[slot::LIQUIDATIONS] = self.liquidations;
        self.kernels.encode(&mut w);
        out.copy_from_slice(&w[1..]);
    }

    /// Decodes slot words as produced by [`TopOfBook::encode`], with the sequence `seq`.
    pub fn decode(seq: u64, words: &[u64; SLOT_WORDS - 1]) -> TopOfBook {
        let w = |i: usize| words[i - 1];
        let mut t = TopOfBook {
            seq,
            update_id: w(slot::UPDATE_ID),
            exch_ts_ns: w(slot::EXCH_TS_NS) as i64,
            recv_ts_ns: w(slot::RECV_TS_NS) as i64,
            publish_ts_ns: w(slot::PUBLISH_TS_NS) as i64,
            updates: w(slot::UPDATES),
            flags: w(slot::FLAGS),
            bid_levels: (w(slot::LEVEL_COUNTS) & 0xffff_ffff) as u32,
            ask_levels: (w(slot::LEVEL_COUNTS) >> 32) as u32,
            bid_px: w(slot::BID_PX) as i64,
            bid_qty: w(slot::BID_QTY) as i64,
            ask_px: w(slot::ASK_PX) as i64,
            ask_qty: w(slot::ASK_QTY) as i64,
            last_trade_px: w(slot::LAST_TRADE_PX) as i64,
            last_trade_qty: w(slot::LAST_TRADE_QTY) as i64,
            last_trade_ts_ns: w(slot::LAST_TRADE_TS_NS) as i64,
            last_trade_side: w(slot::LAST_TRADE_SIDE) as u8,
            trades: w(slot::TRADES),
            mark_px: w(slot::MARK_PX) as i64,
            index_px: w(slot::INDEX_PX) as i64,
            funding_rate: w(slot::FUNDING_RATE) as i64,
            next_funding_ns: w(slot::NEXT_FUNDING_NS) as i64,
            derivs_ts_ns: w(slot::DERIVS_TS_NS) as i64,
            liquidations: w(slot::LIQUIDATIONS),
            kernels: SlotKernels::decode(w),
            ..TopOfBook::default()
        };
        for i in 0..DEPTH {
            t.bids[i] = (
                w(slot::BIDS + 2 * i) as i64,
                w(slot::BIDS + 2 * i + 1) as i64,
            );
            t.asks[i] = (
                w(slot::ASKS + 2 * i) as i64,
                w(slot::ASKS + 2 * i + 1) as i64,
            );
        }
        t
    }
}

/// Errors opening or creating a region. Messages say what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// An I/O error on the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not start with the Hermes magic.
    #[error("{path}: not a Hermes shm file (bad magic); is the path right?")]
    BadMagic {
        /// The file.
        path: String,
    },
    /// A layout version this reader does not understand.
    #[error("{path}: shm layout version {found}, this reader understands version {expected}; use a matching hermes build ({})", version_hint(*found, *expected))]
    Version {
        /// The file.
        path: String,
        /// Version in the file.
        found: u32,
        /// Version this crate reads.
        expected: u32,
    },
    /// Header fields disagree with this layout version.
    #[error("{path}: header sizes or offsets do not match shm layout version {} (damaged file, or a writer from a different build)", layout::VERSION)]
    Layout {
        /// The file.
        path: String,
    },
    /// The file is shorter than its header says.
    #[error("{path}: file is {len} bytes but its header needs {need}; the writer may be starting or the file is damaged")]
    Truncated {
        /// The file.
        path: String,
        /// Its length.
        len: u64,
        /// The length the header implies.
        need: u64,
    },
    /// Every slot is taken.
    #[error("all {slots} slots are in use; recreate the region with more slots (--shm-slots)")]
    Full {
        /// The slot count.
        slots: u32,
    },
    /// A slot count of 0 or beyond the limit.
    #[error("{slots} slots: a region holds 1 to {max} instruments (--shm-slots)")]
    SlotCount {
        /// Asked for.
        slots: u32,
        /// The limit.
        max: u32,
    },
    /// Something other than a regular file is at the path.
    #[error("{path} is {kind}, not a regular file; choose another --shm path or remove it")]
    NotRegular {
        /// The path.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// The directory lets other users replace files in it.
    #[error("{path} (mode {mode:o}, owner uid {owner}) lets other users replace the shm file; use a directory only you can write to, or a sticky one such as /dev/shm")]
    UnsafeDirectory {
        /// The directory.
        path: String,
        /// Its mode bits.
        mode: u32,
        /// Its owner.
        owner: u32,
    },
    /// A live writer holds the path.
    #[error("{path} is held by a running writer (pid {pid}); stop it first, or use another --shm path (if pid {pid} is not a Hermes engine, the file is stale: remove it)")]
    Held {
        /// The path.
        path: String,
        /// The writer's pid.
        pid: u32,
    },
    /// A file that is not a Hermes shm file is at the path.
    #[error("{path} exists and is not a Hermes shm file; refusing to replace it (is the path right? remove the file to use it)")]
    Foreign {
        /// The path.
        path: String,
    },
    /// The file belongs to another user.
    #[error("{path} belongs to uid {owner}, not to you: anyone can create a file in a shared directory; pass --allow-other-owner if you trust its writer")]
    OtherOwner {
        /// The path.
        path: String,
        /// The owner's uid.
        owner: u32,
    },
    /// An instrument without a symbol, or one already in the directory.
    #[error("instrument {venue} {symbol:?}: {why}")]
    BadInstrument {
        /// Its venue.
        venue: &'static str,
        /// Its symbol.
        symbol: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A symbol longer than a directory entry holds.
    #[error("symbol {symbol:?} is longer than {max} bytes")]
    SymbolTooLong {
        /// The symbol.
        symbol: String,
        /// The limit.
        max: usize,
    },
}

/// What a version mismatch means for the user; shared word for word by the C and Python
/// readers.
fn version_hint(found: u32, expected: u32) -> &'static str {
    if found < expected {
        "the file was written by an older hermes: restart the engine with this build"
    } else {
        "the file was written by a newer hermes: read it with that build's readers"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivs_round_trip_through_their_words() {
        let t = TopOfBook {
            flags: FLAG_HAS_DERIVS | FLAG_HAS_BID,
            trades: 9,
            mark_px: 6_185_012_345_678,
            index_px: -1,
            funding_rate: -37_500,
            next_funding_ns: 1_723_104_000_000_000_000,
            derivs_ts_ns: i64::MAX,
            liquidations: u64::MAX,
            kernels: SlotKernels {
                time_ns: 5,
                ..SlotKernels::default()
            },
            ..TopOfBook::default()
        };
        let mut w = [0u64; SLOT_WORDS - 1];
        t.encode(&mut w);
        let word = |i: usize| w[i - 1];
        assert_eq!(word(slot::TRADES), 9);
        assert_eq!(word(57), 6_185_012_345_678);
        assert_eq!(word(58), u64::MAX);
        assert_eq!(word(59) as i64, -37_500);
        assert_eq!(word(60), 1_723_104_000_000_000_000);
        assert_eq!(word(61), i64::MAX as u64);
        assert_eq!(word(62), u64::MAX);
        assert_eq!(word(slot::RESERVED), 0, "the reserved word stays zero");
        assert_eq!(word(slot::KERNEL_TS_NS), 5);
        let back = TopOfBook::decode(2, &w);
        assert_eq!(back, TopOfBook { seq: 2, ..t });
        assert!(back.has_derivs());
        assert!(!TopOfBook::default().has_derivs());
    }
}
