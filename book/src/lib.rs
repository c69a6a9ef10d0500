//! # hermes-book
//!
//! The numeric and domain core of Hermes: exact fixed-point decimals ([`fixed`]), the
//! full-depth L2 order book ([`OrderBook`]), the event vocabulary and the market model.
//!
//! Prices and sizes travel as `i64` mantissas ([`Price`], [`Qty`]) with a per-instrument
//! number of decimals ([`Scale`]); [`parse_decimal`] turns wire text into a mantissa with
//! no float and no rounding, and [`Decimal`] prints it back exactly.
//!
//! [`OrderBook`] keeps every level of both sides with O(1) best bid/ask, allocation-free
//! top-N iteration, bulk snapshot loading, and crossed/locked detection that reports
//! without altering what the venue sent.
//!
//! [`event`] is the normalized, fixed-point vocabulary every feed is decoded into
//! ([`Event`], [`Venue`], [`TradeSide`]), and [`market`] is the one model that applies
//! events to per-instrument state ([`Market`]): the book, the venue quote, the stale and
//! crossed flags, the last trade and the kernels. The engine, the persister and every
//! later consumer use it, so a derived value has one definition. [`clock`] holds the time
//! helpers (Unix ns, civil dates, RFC 3339).
//!
//! [`kernels`] computes the analytics published with every top-of-book change (spread,
//! mid, microprice, depth and imbalance over the top N levels, VWAP, EWMA volatility,
//! trade-flow and order-flow imbalance, update rate); its docs give each definition and
//! unit.
//!
//! [`wire`] is the compact binary form of one instrument's events (MD messages) for
//! scale-out: a mirror decodes them and applies them through the same [`Market`], after
//! loading the instrument's [`checkpoint`] (its whole state, binary and versioned).
//!
//! ```
//! use hermes_book::{parse_decimal, Decimal, OrderBook, Price, Qty, Side};
//!
//! let px = parse_decimal(b"65083.66", 8).unwrap();
//! let qty = parse_decimal(b"0.20371215", 8).unwrap();
//! let mut book = OrderBook::default();
//! book.set(Side::Bid, Price(px), Qty(qty));
//! let best = book.best_bid().unwrap();
//! assert_eq!(Decimal::new(best.price.0, 8).to_string(), "65083.66");
//! ```

pub mod checkpoint;
pub mod clock;
pub mod event;
pub mod fixed;
pub mod kernels;
mod ladder;
pub mod market;
pub mod wire;

pub use event::{Event, EventSink, InstId, Symbol, TradeSide, Venue};
pub use fixed::{parse_decimal, Decimal, DecimalError, Price, Qty, Scale};
pub use ladder::{Change, Level, OrderBook, Side};
pub use market::Market;
