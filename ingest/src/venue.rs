//! A venue is one module: what Hermes must know to follow an exchange feed, behind one
//! trait, [`VenueProtocol`], with one implementation per venue and one registry,
//! [`protocol`].
//!
//! The trait covers the decoding side (frames to events, with the venue's sequencing
//! rules: [`VenueProtocol::decode`], [`VenueProtocol::restart`]) and the live side (the
//! URL to connect to, the subscribe messages, how a stale book is rebuilt — a
//! resubscription or a REST snapshot — and that snapshot's URL and request weight). The
//! live driver (`hermes-live`) runs one of two session shapes over it, chosen by
//! [`VenueProtocol::resync`]; the simulator (`hermes-sim`) has the server side of each
//! venue behind its own trait.
//!
//! | venue | module | resync |
//! |---|---|---|
//! | `coinbase` (Advanced Trade) | `coinbase.rs` | resubscribe `level2` |
//! | `coinbase-exchange` | `coinbase_exchange.rs` | resubscribe `level2`/`level2_batch` |
//! | `binance` (spot) | `binance.rs` | REST `/api/v3/depth` |
//! | `binance-usdm` | `binance.rs` (futures rules) | REST `/fapi/v1/depth` |
//! | `binance-coinm` | `binance.rs` (futures rules) | REST `/dapi/v1/depth` |
//!
//! ```
//! use hermes_ingest::venue::{protocol, Resync};
//! use hermes_ingest::Venue;
//!
//! let usdm = protocol(Venue::BinanceUsdm).unwrap();
//! assert_eq!(usdm.resync(), Resync::RestSnapshot);
//! let streams = vec!["depth@100ms".to_string(), "bookTicker".to_string()];
//! let url = usdm.connect_url("wss://fstream.binance.com", &["BTCUSDT".to_string()], &streams);
//! assert_eq!(url, "wss://fstream.binance.com/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker");
//! assert_eq!(
//!     usdm.snapshot_url("https://fapi.binance.com", "BTCUSDT", 1000).unwrap(),
//!     "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
//! );
//! ```

use crate::decoder::{DecodeError, Decoder, Frame};
use crate::event::{InstId, Venue};

/// How a venue's stale book is rebuilt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// Subscribe to the book channel again: the venue answers with a fresh snapshot
    /// (Coinbase Advanced Trade and Exchange).
    Resubscribe,
    /// Fetch a REST depth snapshot while the diffs buffer (Binance spot and futures).
    RestSnapshot,
}

/// Everything Hermes needs to know of one venue. Implementations are stateless; the
/// state lives in the [`Decoder`] and the live session.
pub trait VenueProtocol: Sync {
    /// The venue.
    fn venue(&self) -> Venue;

    /// The config file section (`binance_usdm`) and, upper-cased, the prefix of its
    /// environment variables (`BINANCE_USDM_WS_URL`).
    fn config_key(&self) -> &'static str;

    /// What the venue calls an instrument in the config: `products` or `symbols`.
    fn instruments_key(&self) -> &'static str;

    /// The production WebSocket URL.
    fn default_ws_url(&self) -> &'static str;

    /// The production REST base URL, for venues that rebuild from a REST snapshot.
    fn default_rest_url(&self) -> Option<&'static str>;

    /// Channels (Coinbase) or streams per symbol (Binance) subscribed by default.
    fn default_channels(&self) -> &'static [&'static str];

    /// An instrument name as the venue spells it in frames (Binance upper-cases).
    fn normalize(&self, name: &str) -> String {
        name.to_string()
    }

    /// The URL to connect to for `symbols` (Binance puts the streams in the URL).
    fn connect_url(&self, ws_url: &str, symbols: &[String], channels: &[String]) -> String;

    /// The messages to send once connected.
    fn subscribe(&self, symbols: &[String], channels: &[String]) -> Vec<String>;

    /// How a stale book is rebuilt.
    fn resync(&self) -> Resync;

    /// For [`Resync::Resubscribe`]: the channel that carries the book (resubscribed
    /// after a gap).
    fn book_channel(&self, _channels: &[String]) -> String {
        "level2".to_string()
    }

    /// For [`Resync::Resubscribe`]: the messages that make the venue send fresh
    /// snapshots of `symbols` (an unsubscribe then a subscribe of the book channel).
    fn resubscribe(&self, _symbols: &[String], _channels: &[String]) -> Vec<String> {
        Vec::new()
    }

    /// For [`Resync::RestSnapshot`]: the depth snapshot URL of `symbol`.
    fn snapshot_url(&self, _rest_url: &str, _symbol: &str, _limit: u32) -> Option<String> {
        None
    }

    /// The request weight of a depth snapshot of `limit` levels (the venue's documented
    /// table), counted against the per-minute budget.
    fn snapshot_weight(&self, _limit: u32) -> u32 {
        0
    }

    /// The depth limits the snapshot endpoint accepts.
    fn valid_depth_limit(&self, limit: u32) -> bool {
        matches!(limit, 1..=5000)
    }

    /// Whether binary WebSocket messages carry text frames (Coinbase sends some so).
    fn binary_frames_are_text(&self) -> bool {
        false
    }

    /// Decodes one frame of this venue into the decoder's pending events.
    fn decode(&self, dec: &mut Decoder, frame: &Frame<'_>) -> Result<(), DecodeError>;

    /// The book of `inst` was lost (its connection ended): start its sync over.
    fn restart(&self, _dec: &mut Decoder, _inst: InstId) {}
}

/// Every venue with a live protocol, in code order.
pub const LIVE_VENUES: [Venue; 5] = [
    Venue::Coinbase,
    Venue::Binance,
    Venue::BinanceUsdm,
    Venue::BinanceCoinm,
    Venue::CoinbaseExchange,
];

/// The registry: the protocol of `venue`, or `None` for the webhook (ticks posted over
/// HTTP have no feed to follow).
pub fn protocol(venue: Venue) -> Option<&'static dyn VenueProtocol> {
    match venue {
        Venue::Coinbase => Some(&crate::coinbase::CoinbaseAdvanced),
        Venue::CoinbaseExchange => Some(&crate::coinbase_exchange::CoinbaseExchange),
        Venue::Binance => Some(&crate::binance::BINANCE_SPOT),
        Venue::BinanceUsdm => Some(&crate::binance::BINANCE_USDM),
        Venue::BinanceCoinm => Some(&crate::binance::BINANCE_COINM),
        Venue::Webhook => None,
    }
}

/// A JSON array of strings (names are checked to hold no quote or control character
/// by the config, but escaping here keeps any input well-formed).
pub(crate) fn json_list(items: &[String]) -> String {
    sonic_rs::to_string(items).unwrap_or_else(|_| "[]".into())
}
