//! # hermes-ingest
//!
//! Everything between the wire and the book: venue frame parsers that go straight from
//! JSON text to fixed-point events, per-connection and per-symbol sequencing, and the
//! capture files that keep every frame for bit-for-bit replay.
//!
//! Main types:
//! * [`Decoder`]: raw [`Frame`]s of Coinbase Advanced Trade and Binance spot in,
//!   [`Event`]s out, through an [`EventSink`]. Gaps, duplicates and Binance's diff-depth
//!   sync are handled here; [`DecodeStats`] counts everything. A frame is applied whole or
//!   not at all, and a bad one yields a [`DecodeError`] naming the field and byte offset.
//! * [`capture`]: the native capture format ([`capture::CaptureWriter`],
//!   [`capture::CaptureReader`]), documented byte by byte in `ingest/CAPTURE.md`.
//! * [`source::Source`]: replay input, native captures or the JSON-lines recordings of
//!   other tools.
//!
//! The hot path allocates nothing per message: the [`json`] scanner hands out slices of
//! the frame, decimals go through [`hermes_book::parse_decimal`], and events are `Copy`.
//!
//! ```
//! use hermes_ingest::{Decoder, Event, Frame, FrameKind, Venue};
//! let frame = br#"{"channel":"l2_data","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":14,"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2026-08-09T21:05:48.210883Z","price_level":"65062.5","new_quantity":"0.00583"}]}]}"#;
//! let mut dec = Decoder::default();
//! let mut out: Vec<Event> = Vec::new();
//! dec.decode(&Frame { venue: Venue::Coinbase, kind: FrameKind::Ws, conn: 0, recv_ts_ns: 1, data: frame }, &mut out).unwrap();
//! // Define (first sight of BTC-USD), one level, the commit.
//! assert_eq!(out.len(), 3);
//! assert!(matches!(out[1], Event::Level { price, .. } if price.0 == 6_506_250_000_000));
//! ```

mod binance;
pub mod capture;
mod coinbase;
mod coinbase_exchange;
mod decoder;
pub use hermes_book::event;
pub mod json;
pub mod source;
pub mod venue;
pub mod webhook;

pub use decoder::{
    DecodeError, DecodeStats, Decoder, DecoderOptions, ErrorKind, Frame, FrameKind, FrameTap,
    NoTap, ScaleConfig,
};
pub use event::{Event, EventSink, InstId, Symbol, TradeSide, Venue};
