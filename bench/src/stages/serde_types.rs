//! The baseline parser: serde_json into borrowed typed structs (`&'a str` for every
//! string, nothing unescaped or copied), one struct per venue message.

#![allow(dead_code)] // The fields are parsed, never read: that is the baseline's work.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// Binance combined-stream envelope.
#[derive(Deserialize)]
pub struct Combined<'a, T> {
    /// Stream name.
    #[serde(borrow)]
    pub stream: &'a str,
    /// Payload.
    pub data: T,
}

/// Binance `depthUpdate`.
#[derive(Deserialize)]
pub struct Depth<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "U")]
    first_id: u64,
    #[serde(rename = "u")]
    last_id: u64,
    #[serde(rename = "b", borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(rename = "a", borrow)]
    asks: Vec<[&'a str; 2]>,
}

/// Binance `trade`.
#[derive(Deserialize)]
pub struct Trade<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "t")]
    trade_id: u64,
    #[serde(rename = "p", borrow)]
    price: &'a str,
    #[serde(rename = "q", borrow)]
    qty: &'a str,
    #[serde(rename = "T")]
    trade_time: u64,
    #[serde(rename = "m")]
    buyer_maker: bool,
    #[serde(rename = "M", default)]
    ignore: bool,
}

/// Binance `aggTrade`.
#[derive(Deserialize)]
pub struct AggTrade<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "a")]
    agg_id: u64,
    #[serde(rename = "p", borrow)]
    price: &'a str,
    #[serde(rename = "q", borrow)]
    qty: &'a str,
    #[serde(rename = "T")]
    trade_time: u64,
    #[serde(rename = "m")]
    buyer_maker: bool,
}

/// Binance `bookTicker`.
#[derive(Deserialize)]
pub struct BookTicker<'a> {
    #[serde(rename = "u")]
    update_id: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "b", borrow)]
    bid: &'a str,
    #[serde(rename = "B", borrow)]
    bid_qty: &'a str,
    #[serde(rename = "a", borrow)]
    ask: &'a str,
    #[serde(rename = "A", borrow)]
    ask_qty: &'a str,
}

/// Binance REST `/api/v3/depth`.
#[derive(Deserialize)]
pub struct RestDepth<'a> {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
}

/// Coinbase Advanced Trade envelope.
#[derive(Deserialize)]
pub struct Envelope<'a, E> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(borrow, default)]
    client_id: &'a str,
    #[serde(borrow)]
    timestamp: &'a str,
    sequence_num: u64,
    events: Vec<E>,
}

/// Coinbase `l2_data` event.
#[derive(Deserialize)]
pub struct L2Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    product_id: &'a str,
    #[serde(borrow)]
    updates: Vec<L2Update<'a>>,
}

/// One Coinbase level update.
#[derive(Deserialize)]
pub struct L2Update<'a> {
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    event_time: &'a str,
    #[serde(borrow)]
    price_level: &'a str,
    #[serde(borrow)]
    new_quantity: &'a str,
}

/// Coinbase `market_trades` event.
#[derive(Deserialize)]
pub struct TradesEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    trades: Vec<CbTrade<'a>>,
}

/// One Coinbase trade.
#[derive(Deserialize)]
pub struct CbTrade<'a> {
    #[serde(borrow)]
    product_id: &'a str,
    #[serde(borrow)]
    trade_id: &'a str,
    #[serde(borrow)]
    price: &'a str,
    #[serde(borrow)]
    size: &'a str,
    #[serde(borrow)]
    time: &'a str,
    #[serde(borrow)]
    side: &'a str,
}

/// Coinbase heartbeat event.
#[derive(Deserialize)]
pub struct Heartbeat<'a> {
    #[serde(borrow)]
    current_time: &'a str,
    heartbeat_counter: u64,
}

/// Binance futures `depthUpdate` (with `T` and `pu`; COIN-M adds `ps`).
#[derive(Deserialize)]
pub struct FuturesDepth<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "T")]
    trade_time: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "ps", borrow, default)]
    pair: &'a str,
    #[serde(rename = "U")]
    first_id: u64,
    #[serde(rename = "u")]
    last_id: u64,
    #[serde(rename = "pu")]
    prev_id: u64,
    #[serde(rename = "b", borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(rename = "a", borrow)]
    asks: Vec<[&'a str; 2]>,
}

/// Binance futures `bookTicker` (with `e`, `E`, `T`).
#[derive(Deserialize)]
pub struct FuturesBookTicker<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "u")]
    update_id: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "ps", borrow, default)]
    pair: &'a str,
    #[serde(rename = "b", borrow)]
    bid: &'a str,
    #[serde(rename = "B", borrow)]
    bid_qty: &'a str,
    #[serde(rename = "a", borrow)]
    ask: &'a str,
    #[serde(rename = "A", borrow)]
    ask_qty: &'a str,
    #[serde(rename = "T")]
    trade_time: u64,
    #[serde(rename = "E")]
    event_time: u64,
}

/// Binance futures `trade` (with `X`, no `M`).
#[derive(Deserialize)]
pub struct FuturesTrade<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "T")]
    trade_time: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "t")]
    trade_id: u64,
    #[serde(rename = "p", borrow)]
    price: &'a str,
    #[serde(rename = "q", borrow)]
    qty: &'a str,
    #[serde(rename = "X", borrow, default)]
    kind: &'a str,
    #[serde(rename = "m")]
    buyer_maker: bool,
}

/// Binance futures `markPriceUpdate`.
#[derive(Deserialize)]
pub struct MarkPrice<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "p", borrow)]
    mark: &'a str,
    #[serde(rename = "i", borrow, default)]
    index: &'a str,
    #[serde(rename = "P", borrow, default)]
    settle: &'a str,
    #[serde(rename = "r", borrow, default)]
    funding: &'a str,
    #[serde(rename = "T")]
    next_funding: u64,
}

/// Binance futures `forceOrder`.
#[derive(Deserialize)]
pub struct ForceOrder<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "o", borrow)]
    order: LiquidationOrder<'a>,
}

/// The order of a `forceOrder`.
#[derive(Deserialize)]
pub struct LiquidationOrder<'a> {
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "S", borrow)]
    side: &'a str,
    #[serde(rename = "o", borrow)]
    kind: &'a str,
    #[serde(rename = "f", borrow)]
    time_in_force: &'a str,
    #[serde(rename = "q", borrow)]
    qty: &'a str,
    #[serde(rename = "p", borrow)]
    price: &'a str,
    #[serde(rename = "ap", borrow)]
    avg_price: &'a str,
    #[serde(rename = "X", borrow)]
    status: &'a str,
    #[serde(rename = "l", borrow)]
    last_filled: &'a str,
    #[serde(rename = "z", borrow)]
    filled: &'a str,
    #[serde(rename = "T")]
    time: u64,
}

/// Binance futures REST depth (with `E`, `T`; COIN-M adds `symbol`, `pair`).
#[derive(Deserialize)]
pub struct FuturesRestDepth<'a> {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "T")]
    trade_time: u64,
    #[serde(borrow, default)]
    symbol: &'a str,
    #[serde(borrow, default)]
    pair: &'a str,
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
}

/// Coinbase Exchange `snapshot`.
#[derive(Deserialize)]
pub struct ExSnapshot<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    product_id: &'a str,
    #[serde(borrow)]
    bids: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    asks: Vec<[&'a str; 2]>,
}

/// Coinbase Exchange `l2update`.
#[derive(Deserialize)]
pub struct ExL2Update<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    product_id: &'a str,
    #[serde(borrow)]
    changes: Vec<[&'a str; 3]>,
    #[serde(borrow)]
    time: &'a str,
}

/// Coinbase Exchange `match` / `last_match`.
#[derive(Deserialize)]
pub struct ExMatch<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    trade_id: u64,
    #[serde(borrow)]
    maker_order_id: &'a str,
    #[serde(borrow)]
    taker_order_id: &'a str,
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    size: &'a str,
    #[serde(borrow)]
    price: &'a str,
    #[serde(borrow)]
    product_id: &'a str,
    sequence: u64,
    #[serde(borrow)]
    time: &'a str,
}

/// Coinbase Exchange `ticker`.
#[derive(Deserialize)]
pub struct ExTicker<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    sequence: u64,
    #[serde(borrow)]
    product_id: &'a str,
    #[serde(borrow)]
    price: &'a str,
    #[serde(borrow)]
    best_bid: &'a str,
    #[serde(borrow, default)]
    best_bid_size: &'a str,
    #[serde(borrow)]
    best_ask: &'a str,
    #[serde(borrow, default)]
    best_ask_size: &'a str,
    #[serde(borrow, default)]
    side: &'a str,
    #[serde(borrow)]
    time: &'a str,
    #[serde(default)]
    trade_id: u64,
    #[serde(borrow, default)]
    last_size: &'a str,
}

fn one<'a, T: Deserialize<'a>>(data: &'a [u8]) -> bool {
    match serde_json::from_slice::<T>(data) {
        Ok(v) => {
            std::hint::black_box(&v);
            true
        }
        Err(_) => false,
    }
}

fn binance<'a, T: Deserialize<'a>>(data: &'a [u8]) -> bool {
    one::<Combined<'a, T>>(data) || one::<T>(data)
}

/// Parses a frame of class `class` (see [`crate::frames::classify`]) into its typed
/// struct; `false` when serde refused it (an escaped string cannot be borrowed).
pub fn parse(class: &str, data: &[u8]) -> bool {
    match class {
        "binance.depth" | "binance.depth20" => binance::<Depth<'_>>(data),
        "binance.trade" => binance::<Trade<'_>>(data),
        "binance.aggTrade" => binance::<AggTrade<'_>>(data),
        "binance.bookTicker" => binance::<BookTicker<'_>>(data),
        "binance.rest_snapshot" => one::<RestDepth<'_>>(data),
        "coinbase.l2_update" | "coinbase.l2_snapshot" => one::<Envelope<'_, L2Event<'_>>>(data),
        "coinbase.market_trades" => one::<Envelope<'_, TradesEvent<'_>>>(data),
        "coinbase.heartbeats" => one::<Envelope<'_, Heartbeat<'_>>>(data),
        "futures.depth" => binance::<FuturesDepth<'_>>(data),
        "futures.bookTicker" => binance::<FuturesBookTicker<'_>>(data),
        "futures.trade" => binance::<FuturesTrade<'_>>(data),
        "futures.aggTrade" => binance::<AggTrade<'_>>(data),
        "futures.markPrice" => binance::<MarkPrice<'_>>(data),
        "futures.forceOrder" => binance::<ForceOrder<'_>>(data),
        "futures.rest_snapshot" => one::<FuturesRestDepth<'_>>(data),
        "exchange.snapshot" => one::<ExSnapshot<'_>>(data),
        "exchange.l2update" => one::<ExL2Update<'_>>(data),
        "exchange.match" => one::<ExMatch<'_>>(data),
        "exchange.ticker" => one::<ExTicker<'_>>(data),
        _ => one::<IgnoredAny>(data),
    }
}
