//! Byte offsets of the region, mirrored by `shm/LAYOUT.md`, the C header and the Python
//! reader. Everything is little-endian; every multi-byte field is naturally aligned.

/// `b"HERMESHM"`, the first 8 bytes of the file.
pub const MAGIC: [u8; 8] = *b"HERMESHM";
/// The layout version this crate writes and reads. Bumped on any change of offsets.
/// Version 2 doubled the slot to 1024 bytes for the analytics kernels (words 64–87);
/// version 3 put the derivatives (mark, index, funding, liquidations) in words 57–62.
pub const VERSION: u32 = 3;
/// Size of the header, one page.
pub const HEADER_SIZE: usize = 4096;
/// Size of one instrument directory entry.
pub const DIR_ENTRY_SIZE: usize = 64;
/// Size of one slot: 128 words of 8 bytes, a multiple of the 64-byte cache line.
pub const SLOT_SIZE: usize = 1024;
/// 8-byte words in a slot.
pub const SLOT_WORDS: usize = SLOT_SIZE / 8;
/// Price levels per side kept in a slot.
pub const DEPTH: usize = 10;
/// Longest symbol a directory entry holds.
pub const MAX_SYMBOL_LEN: usize = 48;

/// Header field offsets (bytes from the start of the file).
pub mod header {
    /// `[u8; 8]` [`super::MAGIC`].
    pub const MAGIC: usize = 0;
    /// `u32` layout version.
    pub const VERSION: usize = 8;
    /// `u32` header size in bytes (4096).
    pub const HEADER_SIZE: usize = 12;
    /// `u32` slot size in bytes (1024).
    pub const SLOT_SIZE: usize = 16;
    /// `u32` number of slots (and directory entries) in the file.
    pub const SLOT_COUNT: usize = 20;
    /// `u64` byte offset of the directory.
    pub const DIR_OFFSET: usize = 24;
    /// `u64` byte offset of slot 0.
    pub const SLOTS_OFFSET: usize = 32;
    /// `u32` pid of the writer process (atomic).
    pub const WRITER_PID: usize = 40;
    /// `u32` flags (atomic): bit 0 = the writer closed cleanly.
    pub const FLAGS: usize = 44;
    /// `u64` generation (atomic): bumped each time a writer (re)creates the file.
    pub const GENERATION: usize = 48;
    /// `u64` heartbeat (atomic): Unix time in ns, refreshed by the writer at least every
    /// 100 ms while it runs.
    pub const HEARTBEAT_NS: usize = 56;
    /// `u32` number of directory entries published (atomic, store-release by the writer
    /// after the entry is written).
    pub const INSTRUMENT_COUNT: usize = 64;
    /// `u32` price levels per side in a slot ([`super::DEPTH`]).
    pub const DEPTH: usize = 68;
    /// `u64` Unix time in ns at which the file was created.
    pub const CREATED_NS: usize = 72;
}

/// Decimals of the derivatives words (`MARK_PX`, `INDEX_PX`, `FUNDING_RATE`): the
/// market model's [`hermes_book::event::DERIV_DECIMALS`].
pub const DERIV_DECIMALS: u8 = 8;

/// Header flag: the writer exited cleanly (set last, on drop).
pub const FLAG_CLOSED: u32 = 1;

/// Directory entry field offsets (bytes from the start of the entry).
pub mod dir {
    /// `u8` venue code (see [`crate::Venue`]).
    pub const VENUE: usize = 0;
    /// `u8` decimals of price mantissas.
    pub const PRICE_DECIMALS: usize = 1;
    /// `u8` decimals of size mantissas.
    pub const SIZE_DECIMALS: usize = 2;
    /// `u8` symbol length in bytes.
    pub const SYMBOL_LEN: usize = 3;
    /// `u32` index of the instrument's slot.
    pub const SLOT_INDEX: usize = 4;
    /// `[u8; 48]` symbol, UTF-8, NUL-padded.
    pub const SYMBOL: usize = 8;
}

/// Slot word indices (each word is 8 bytes; byte offset = index × 8).
pub mod slot {
    /// Seqlock sequence: odd while the writer is inside the slot.
    pub const SEQ: usize = 0;
    /// Venue update id / sequence number of the last applied message.
    pub const UPDATE_ID: usize = 1;
    /// Exchange timestamp of the last applied message, Unix ns (0 if unknown).
    pub const EXCH_TS_NS: usize = 2;
    /// Receive timestamp of the frame, Unix ns.
    pub const RECV_TS_NS: usize = 3;
    /// When this slot was published, Unix ns.
    pub const PUBLISH_TS_NS: usize = 4;
    /// Number of publications of this slot since the writer started.
    pub const UPDATES: usize = 5;
    /// Flag bits, see `FLAG_*` in the crate root.
    pub const FLAGS: usize = 6;
    /// Low 32 bits: valid bid levels; high 32 bits: valid ask levels.
    pub const LEVEL_COUNTS: usize = 7;
    /// Best bid price mantissa.
    pub const BID_PX: usize = 8;
    /// Best bid size mantissa.
    pub const BID_QTY: usize = 9;
    /// Best ask price mantissa.
    pub const ASK_PX: usize = 10;
    /// Best ask size mantissa.
    pub const ASK_QTY: usize = 11;
    /// Bid levels, best first: `DEPTH` pairs of (price, size).
    pub const BIDS: usize = 12;
    /// Ask levels, best first: `DEPTH` pairs of (price, size).
    pub const ASKS: usize = BIDS + 2 * super::DEPTH;
    /// Last trade price mantissa.
    pub const LAST_TRADE_PX: usize = ASKS + 2 * super::DEPTH;
    /// Last trade size mantissa.
    pub const LAST_TRADE_QTY: usize = LAST_TRADE_PX + 1;
    /// Last trade time, Unix ns.
    pub const LAST_TRADE_TS_NS: usize = LAST_TRADE_PX + 2;
    /// Last trade aggressor side: 0 unknown, 1 buy, 2 sell.
    pub const LAST_TRADE_SIDE: usize = LAST_TRADE_PX + 3;
    /// Trades seen for this instrument.
    pub const TRADES: usize = LAST_TRADE_PX + 4;

    // Derivatives (perpetuals and futures), valid when the slot's `FLAGS` word has
    // [`crate::FLAG_HAS_DERIVS`]; 0 otherwise. Prices and the rate are mantissas at
    // [`super::DERIV_DECIMALS`], whatever the instrument's price decimals.

    /// `i64` mark price at [`super::DERIV_DECIMALS`].
    pub const MARK_PX: usize = TRADES + 1;
    /// `i64` index price at [`super::DERIV_DECIMALS`] (0 when the venue gives none).
    pub const INDEX_PX: usize = TRADES + 2;
    /// `i64` funding rate per funding interval at [`super::DERIV_DECIMALS`], signed
    /// (`0.0001` = 0.01 %; positive: longs pay shorts).
    pub const FUNDING_RATE: usize = TRADES + 3;
    /// `i64` next funding time, Unix ns (0 when the venue gives none).
    pub const NEXT_FUNDING_NS: usize = TRADES + 4;
    /// `i64` exchange time of the last mark price update, Unix ns (never 0 with the flag).
    pub const DERIVS_TS_NS: usize = TRADES + 5;
    /// `u64` forced liquidations seen for this instrument (counted with or without the
    /// flag).
    pub const LIQUIDATIONS: usize = TRADES + 6;
    /// First word of the reserved gap before the kernels (zero up to [`KERNEL_FLAGS`]).
    pub const RESERVED: usize = TRADES + 7;

    // Analytics kernels (hermes-book `kernels`), from the second half of the slot. An
    // `Option` kernel is valid only when its bit in `KERNEL_FLAGS` is set
    // ([`super::kernel_valid`]); its word is 0 otherwise.

    /// Validity bits of the kernels ([`super::kernel_valid`]).
    pub const KERNEL_FLAGS: usize = 64;
    /// The kernel clock (event time) of this computation, Unix ns.
    pub const KERNEL_TS_NS: usize = 65;
    /// `i64` ask − bid, price mantissa.
    pub const SPREAD_TICKS: usize = 66;
    /// `i64` spread over mid in basis points × 100.
    pub const SPREAD_BPS_X100: usize = 67;
    /// `i64` mid price at [`KERNEL_PRICE_DECIMALS`] decimals.
    pub const MID_PX: usize = 68;
    /// `i64` microprice at [`KERNEL_PRICE_DECIMALS`] decimals.
    pub const MICROPRICE_PX: usize = 69;
    /// `i64` size of the top N bid levels.
    pub const BID_DEPTH: usize = 70;
    /// `i64` size of the top N ask levels.
    pub const ASK_DEPTH: usize = 71;
    /// `i64` depth imbalance over the top N levels, parts per million.
    pub const IMBALANCE_PPM: usize = 72;
    /// `i64` average price to buy the VWAP size, at [`KERNEL_PRICE_DECIMALS`] decimals.
    pub const VWAP_BUY_PX: usize = 73;
    /// `i64` average price to sell the VWAP size, at [`KERNEL_PRICE_DECIMALS`] decimals.
    pub const VWAP_SELL_PX: usize = 74;
    /// `f64` (IEEE-754 bits) EWMA mid volatility over one second, basis points.
    pub const VOLATILITY_BPS: usize = 75;
    /// `i64` size bought by aggressors in the trade window.
    pub const TRADE_BUY_QTY: usize = 76;
    /// `i64` size sold by aggressors in the trade window.
    pub const TRADE_SELL_QTY: usize = 77;
    /// `i64` trade-flow imbalance over the trade window, parts per million.
    pub const TRADE_IMBALANCE_PPM: usize = 78;
    /// `i64` order-flow imbalance summed over the trade window, size mantissa.
    pub const OFI_WINDOW: usize = 79;
    /// `i64` order-flow imbalance summed since the writer started (wrapping).
    pub const OFI_TOTAL: usize = 80;
    /// `u64` updates per second over the rate window, × 100.
    pub const UPDATES_PER_S_X100: usize = 81;
    /// `u64` decimals of the averaged prices (mid, microprice, VWAP).
    pub const KERNEL_PRICE_DECIMALS: usize = 82;
    /// `u64` N, the levels per side summed by depth and imbalance.
    pub const KERNEL_LEVELS: usize = 83;
    /// `i64` the VWAP size, size mantissa.
    pub const VWAP_QTY: usize = 84;
    /// `i64` half-life of the volatility EWMA, ns.
    pub const VOL_HALF_LIFE_NS: usize = 85;
    /// `i64` length of the trade window, ns.
    pub const TRADE_WINDOW_NS: usize = 86;
    /// `i64` length of the rate window, ns.
    pub const RATE_WINDOW_NS: usize = 87;
    /// First word after the data; words from here to the end of the slot are reserved
    /// (zero). A publication writes, and a read copies, words `1..DATA_END`.
    pub const DATA_END: usize = 88;
}

/// Bits of the slot's `KERNEL_FLAGS` word: which `Option` kernels are valid.
pub mod kernel_valid {
    /// `SPREAD_TICKS` (both sides present).
    pub const SPREAD_TICKS: u64 = 1;
    /// `SPREAD_BPS_X100` (both sides, bid + ask > 0).
    pub const SPREAD_BPS: u64 = 1 << 1;
    /// `MID_PX`.
    pub const MID: u64 = 1 << 2;
    /// `MICROPRICE_PX` (best sizes sum > 0).
    pub const MICROPRICE: u64 = 1 << 3;
    /// `IMBALANCE_PPM` (top-N depth > 0).
    pub const IMBALANCE: u64 = 1 << 4;
    /// `VWAP_BUY_PX` (the asks hold the VWAP size).
    pub const VWAP_BUY: u64 = 1 << 5;
    /// `VWAP_SELL_PX` (the bids hold the VWAP size).
    pub const VWAP_SELL: u64 = 1 << 6;
    /// `VOLATILITY_BPS` (at least one mid return seen).
    pub const VOLATILITY: u64 = 1 << 7;
    /// `TRADE_IMBALANCE_PPM` (trades with a known aggressor in the window).
    pub const TRADE_IMBALANCE: u64 = 1 << 8;
}

const _: () = assert!(slot::ASKS == 32);
const _: () = assert!(slot::LAST_TRADE_PX == 52);
const _: () = assert!(slot::MARK_PX == 57 && slot::LIQUIDATIONS == 62);
const _: () = assert!(slot::RESERVED == 63);
// At least one word stays reserved before the kernels.
const _: () = assert!(slot::RESERVED < slot::KERNEL_FLAGS);
const _: () = assert!(DERIV_DECIMALS == hermes_book::event::DERIV_DECIMALS);
// The kernels start on a cache line of their own (byte 512).
const _: () = assert!(slot::KERNEL_FLAGS * 8 == 512);
const _: () = assert!(slot::RATE_WINDOW_NS + 1 == slot::DATA_END);
const _: () = assert!(slot::DATA_END <= SLOT_WORDS);
const _: () = assert!(SLOT_WORDS == 128);
const _: () = assert!(SLOT_SIZE % 64 == 0);
const _: () = assert!(HEADER_SIZE % 64 == 0 && DIR_ENTRY_SIZE % 64 == 0);
const _: () = assert!(header::CREATED_NS + 8 <= HEADER_SIZE);
const _: () = assert!(dir::SYMBOL + MAX_SYMBOL_LEN <= DIR_ENTRY_SIZE);

/// Byte offset of the directory.
pub const fn dir_offset() -> usize {
    HEADER_SIZE
}

/// Byte offset of slot 0 for a file with `slot_count` slots (cache-line aligned).
pub const fn slots_offset(slot_count: usize) -> usize {
    HEADER_SIZE + slot_count * DIR_ENTRY_SIZE
}

/// Total file size for `slot_count` slots.
pub const fn file_size(slot_count: usize) -> usize {
    slots_offset(slot_count) + slot_count * SLOT_SIZE
}
