//! What differs between the venues the simulator speaks: one module per protocol, each
//! implementing [`SimVenue`], registered in [`of`]. The market task, the connection tasks
//! and the REST endpoint are the same for every venue and ask it:
//!
//! - how to route a source frame ([`SimVenue::route`]: its channel or stream, its
//!   products, what a `gap` may drop, whether a client could tell it was torn or moved),
//!   and which source frames are the opening the market consumes before anyone connects;
//! - what a client subscribes to, in its URL ([`SimVenue::url_subscriptions`], Binance's
//!   combined streams) or in its messages ([`SimVenue::request`], Coinbase's
//!   subscribe/unsubscribe), and what the market answers ([`SimVenue::answer`]: the
//!   confirmation, a book snapshot per product, a `last_match`);
//! - how each frame is stamped for one connection (Coinbase Advanced Trade's
//!   `sequence_num`);
//! - the REST depth endpoint, if any, and its body ([`SimVenue::depth`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use hermes_book::market::{Instrument, Market as Books};
use hermes_ingest::Venue;

use crate::feed::Owned;

mod binance;
mod binance_futures;
mod coinbase;
mod coinbase_exchange;

/// The protocol of `venue`, or `None` for a venue the simulator does not speak.
pub(crate) fn of(venue: Venue) -> Option<&'static dyn SimVenue> {
    Some(match venue {
        Venue::Coinbase => &coinbase::CoinbaseAdvanced,
        Venue::CoinbaseExchange => &coinbase_exchange::CoinbaseExchange,
        Venue::Binance => &binance::BinanceSpot,
        Venue::BinanceUsdm => &binance_futures::USDM,
        Venue::BinanceCoinm => &binance_futures::COINM,
        Venue::Webhook => return None,
    })
}

/// A client's subscriptions: channel (as the client named it) → products. Binance
/// streams are channels without products.
pub(crate) type Subs = HashMap<String, HashSet<String>>;

/// Channels and the products asked for each, in the client's order.
pub(crate) type ChannelList = Vec<(String, Vec<String>)>;

/// Who gets a frame the market walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Every client subscribed to its route (and, if it names products, to one of them).
    Stream,
    /// A book snapshot from the source: only clients still waiting for their first
    /// snapshot of one of its products (the others got one made from the market's books
    /// when they subscribed).
    FirstSnapshot,
    /// Nobody now: it is only kept as its product's latest (see [`Outgoing::keep`]).
    Keep,
}

/// How exposed a frame is to fault injection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Exposure {
    /// A `gap` fault may drop it: the client can tell it is missing (a sequence number,
    /// a `pu` chain, a trade id).
    pub(crate) gap: bool,
    /// Nothing tells a client it was torn or moved (a Coinbase Exchange level-2 frame has
    /// no sequence number): `malformed` and `reorder` leave it alone.
    pub(crate) unsequenced: bool,
}

/// One frame the market hands to connections.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) text: String,
    /// The route clients subscribe to: a Coinbase channel (`level2`, `market_trades`,
    /// `matches`, …) or a Binance stream name.
    pub(crate) route: String,
    /// The products it concerns; `None`: every subscriber of the route.
    pub(crate) products: Option<Vec<String>>,
    pub(crate) delivery: Delivery,
    /// Kept as the latest frame of its route for its product, for what a new subscriber
    /// gets first ([`View::latest`]).
    pub(crate) keep: bool,
    pub(crate) exposure: Exposure,
}

impl Outgoing {
    /// A frame for every subscriber of `route` (and of one of `products`).
    pub(crate) fn stream(text: &str, route: &str, products: Option<Vec<String>>) -> Outgoing {
        Outgoing {
            text: text.to_string(),
            route: route.to_string(),
            products,
            delivery: Delivery::Stream,
            keep: false,
            exposure: Exposure::default(),
        }
    }
}

/// What a client's WebSocket message asks.
#[derive(Debug, PartialEq)]
pub(crate) enum Request {
    /// Add these channels and products.
    Subscribe(ChannelList),
    /// Remove these products from these channels (`None`: the whole channel).
    Unsubscribe(Vec<(String, Option<Vec<String>>)>),
    /// A bad request: answer with this frame, change nothing.
    Refuse(String),
    /// Nothing to do (Binance clients send nothing the simulator acts on).
    Ignore,
}

/// The market's answer to a (un)subscription.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// Frames to send at once, in order (stamped by the connection like every frame).
    pub(crate) frames: Vec<String>,
    /// Products whose book the market does not have yet: the client gets the source's
    /// first snapshot of each when it comes.
    pub(crate) awaiting: Vec<String>,
}

/// What the market shows a venue answering a subscription or a REST request.
pub(crate) struct View<'a> {
    pub(crate) venue: Venue,
    pub(crate) books: &'a Books,
    /// (route, product) → the latest frame kept ([`Outgoing::keep`]).
    pub(crate) latest: &'a HashMap<(String, String), String>,
}

impl View<'_> {
    /// The book of `symbol`, once the market has one.
    pub(crate) fn book(&self, symbol: &str) -> Option<&Instrument> {
        self.books.find(self.venue, symbol)
    }

    /// The latest frame kept for `route` and `product`.
    pub(crate) fn latest(&self, route: &str, product: &str) -> Option<&str> {
        self.latest
            .get(&(route.to_string(), product.to_string()))
            .map(String::as_str)
    }
}

/// A REST depth request, as the market answers it.
pub(crate) struct DepthQuery<'a> {
    pub(crate) symbol: &'a str,
    pub(crate) book: &'a Instrument,
    /// Levels per side.
    pub(crate) limit: usize,
    /// The `U` of the next diff of this symbol the market will send, if the venue asked
    /// for it ([`RestRoute::next_diff`]) and the source has one.
    pub(crate) next_first_id: Option<u64>,
    /// The market's clock: the receive time of the last frame it walked, Unix ms.
    pub(crate) now_ms: i64,
}

/// A venue's REST depth endpoint.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RestRoute {
    /// The path, e.g. `/api/v3/depth`.
    pub(crate) path: &'static str,
    /// The largest `limit` served.
    pub(crate) max_limit: usize,
    /// The body's `lastUpdateId` depends on the next diff ([`SimVenue::diff_first_id`]).
    pub(crate) next_diff: bool,
}

/// The market's state while it consumes the source's opening.
pub(crate) struct Opening<'a> {
    /// A REST snapshot of the served venue went by.
    pub(crate) saw_rest: bool,
    /// The books, and the served venue.
    pub(crate) books: &'a Books,
    pub(crate) venue: Venue,
}

impl Opening<'_> {
    /// `true` while the served venue has no synced book for `symbol`.
    pub(crate) fn unsynced(&self, symbol: &str) -> bool {
        self.books
            .find(self.venue, symbol)
            .is_none_or(|i| i.top.update_id == 0)
    }
}

/// One venue's protocol, as the simulator speaks it.
pub(crate) trait SimVenue: Sync {
    /// Whether a source frame of this venue is part of the opening the market consumes
    /// before anyone connects, so the books exist when the first client asks.
    fn is_setup(&self, f: &Owned, opening: &Opening<'_>) -> bool;

    /// How to route a source frame (`v` is `text` parsed); `None` for frames clients
    /// never get as they are (subscription confirmations, channels nobody subscribes to).
    fn route(&self, v: &serde_json::Value, text: &str) -> Option<Outgoing>;

    /// The subscriptions a WebSocket request for `path` carries (Binance's
    /// `/stream?streams=…`); `Ok(empty)` for venues subscribed by message, `Err` with
    /// the reason for a path the venue refuses.
    fn url_subscriptions(&self, path: &str) -> Result<ChannelList, String> {
        let _ = path;
        Ok(Vec::new())
    }

    /// A client's text message.
    fn request(&self, text: &str) -> Request {
        let _ = text;
        Request::Ignore
    }

    /// The route frames of a subscribed `channel` come by (`level2_batch` → `level2`).
    fn route_of<'a>(&self, channel: &'a str) -> &'a str {
        channel
    }

    /// The market's answer once `subs` (the client's subscriptions, already updated)
    /// changed by `asked`: confirmation, snapshots, `last_match`.
    fn answer(&self, subs: &Subs, asked: &ChannelList, subscribe: bool, view: &View<'_>) -> Answer {
        let _ = (subs, asked, subscribe, view);
        Answer::default()
    }

    /// A frame as sent on one connection, `seq` being the connection's count of
    /// numbered frames (Coinbase Advanced Trade's `sequence_num`).
    fn stamp(&self, text: &str, seq: &mut u64) -> String {
        let _ = seq;
        text.to_string()
    }

    /// The frame an `oversize` fault sends, padded with `pad`.
    fn oversize(&self, pad: &str) -> String {
        format!(r#"{{"channel":"status","pad":"{pad}"}}"#)
    }

    /// The REST depth endpoint, if the venue has one.
    fn rest(&self) -> Option<RestRoute> {
        None
    }

    /// The REST depth body for a book.
    fn depth(&self, q: &DepthQuery<'_>) -> String {
        let _ = q;
        String::new()
    }

    /// The `U` of `f` if it is a depth diff of `symbol` (for [`RestRoute::next_diff`]).
    fn diff_first_id(&self, f: &Owned, symbol: &str) -> Option<u64> {
        let _ = (f, symbol);
        None
    }

    /// Where a client connects, beyond `ws://ADDR`, for the `hermes sim` banner.
    fn endpoints(&self, addr: SocketAddr) -> String {
        let _ = addr;
        String::new()
    }
}

/// A JSON string literal.
pub(crate) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
