//! The Coinbase Exchange feed (`wss://ws-feed.exchange.coinbase.com`, formerly
//! `ws-feed.pro.coinbase.com`): one JSON object per frame, told apart by `type`.
//!
//! * `snapshot` (`product_id`, `bids`/`asks` of `[price, size]`) replaces the product's
//!   book; `l2update` (`changes` of `[side, price, size]`, side `buy` = bid, `sell` = ask,
//!   size absolute, `"0"` deletes) changes it. Both come from `level2` and `level2_batch`.
//!   Level-2 frames carry no sequence number: an `l2update` before the product's first
//!   snapshot (or after a lost connection, before the new one) cannot be placed and is
//!   skipped, counted as ignored.
//! * `match` and `last_match` (`trade_id`, maker `side`, `size`, `price`, `sequence`,
//!   `time`) are trades; the aggressor is the other side of the maker's. `trade_id` is
//!   contiguous per product, so a jump is a gap: the product's book is marked stale and
//!   the live driver resubscribes `level2` for a fresh snapshot. A `trade_id` at or below
//!   the last one (the `last_match` sent again on a resubscribe, a duplicate) is skipped.
//! * `ticker` (`best_bid`, `best_ask`, and in newer feeds their sizes) is a quote with no
//!   update id; a `sequence` at or below the product's last ticker is skipped as stale.
//! * `heartbeat` (`last_trade_id`) is counted, and is a gap when it names a trade past
//!   the last one seen on a product whose matches are followed.
//! * `subscriptions`, `status` and every other type are understood as having no effect
//!   here (the venue says new types may appear at any time and should be ignored);
//!   `error` is a venue error.

use hermes_book::{Price, Qty, Side};

use crate::coinbase::ErrorFrame;
use crate::decoder::{dec, set_once, DecodeError, Decoder, ErrorKind, FieldExt, Frame};
use crate::event::{Event, InstId, TradeSide, Venue};
use crate::json::{parse_rfc3339_ns, Scanner};
use crate::venue::{json_list, Resync, VenueProtocol};

/// The Coinbase Exchange protocol.
pub(crate) struct CoinbaseExchange;

impl VenueProtocol for CoinbaseExchange {
    fn venue(&self) -> Venue {
        Venue::CoinbaseExchange
    }

    fn config_key(&self) -> &'static str {
        "coinbase_exchange"
    }

    fn instruments_key(&self) -> &'static str {
        "products"
    }

    fn default_ws_url(&self) -> &'static str {
        "wss://ws-feed.exchange.coinbase.com"
    }

    fn default_rest_url(&self) -> Option<&'static str> {
        None
    }

    fn default_channels(&self) -> &'static [&'static str] {
        // `level2_batch` needs no authentication (`level2` now does).
        &["level2_batch", "matches", "ticker", "heartbeat"]
    }

    fn connect_url(&self, ws_url: &str, _: &[String], _: &[String]) -> String {
        ws_url.to_string()
    }

    fn subscribe(&self, products: &[String], channels: &[String]) -> Vec<String> {
        // One message names every channel.
        vec![format!(
            r#"{{"type":"subscribe","product_ids":{},"channels":{}}}"#,
            json_list(products),
            json_list(channels)
        )]
    }

    fn resync(&self) -> Resync {
        Resync::Resubscribe
    }

    fn book_channel(&self, channels: &[String]) -> String {
        // The one subscribed to: level2 or level2_batch.
        channels
            .iter()
            .find(|c| c.starts_with("level2"))
            .cloned()
            .unwrap_or_else(|| "level2_batch".to_string())
    }

    fn resubscribe(&self, products: &[String], channels: &[String]) -> Vec<String> {
        // The book channel sends a snapshot again.
        let book = self.book_channel(channels);
        ["unsubscribe", "subscribe"]
            .iter()
            .map(|kind| {
                format!(
                    r#"{{"type":"{kind}","product_ids":{},"channels":{}}}"#,
                    json_list(products),
                    json_list(std::slice::from_ref(&book))
                )
            })
            .collect()
    }

    fn decode(&self, dec: &mut Decoder, frame: &Frame<'_>) -> Result<(), DecodeError> {
        dec.decode_coinbase_exchange(frame)
    }

    fn restart(&self, dec: &mut Decoder, inst: InstId) {
        dec.cbx.restart(inst);
    }
}

/// Per-product state, indexed by [`InstId`].
#[derive(Clone, Copy, Debug, Default)]
struct Product {
    /// A snapshot arrived on the current connection: updates can be applied.
    synced: bool,
    /// Last `trade_id` of a `match`/`last_match`.
    last_trade: Option<u64>,
    /// Last `sequence` of a `ticker`.
    last_ticker: Option<u64>,
}

/// Sequencing state of the Coinbase Exchange feed.
#[derive(Debug, Default)]
pub(crate) struct ExchangeState {
    products: Vec<Product>,
}

impl ExchangeState {
    fn product(&mut self, inst: InstId) -> &mut Product {
        let i = inst.0 as usize;
        if self.products.len() <= i {
            self.products.resize(i + 1, Product::default());
        }
        &mut self.products[i]
    }

    /// The product's feed was lost: wait for a new snapshot, and take the trade id the
    /// next subscription's `last_match` gives as the new baseline.
    pub(crate) fn restart(&mut self, inst: InstId) {
        *self.product(inst) = Product::default();
    }
}

/// What the frame's `type` says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Type {
    Snapshot,
    L2Update,
    Match,
    Ticker,
    Heartbeat,
    Error,
    Other,
}

fn type_of(t: &[u8]) -> Type {
    match t {
        b"snapshot" => Type::Snapshot,
        b"l2update" => Type::L2Update,
        b"match" | b"last_match" => Type::Match,
        b"ticker" => Type::Ticker,
        b"heartbeat" => Type::Heartbeat,
        b"error" => Type::Error,
        _ => Type::Other,
    }
}

#[derive(Default)]
struct Fields<'a> {
    product: Option<(&'a [u8], usize)>,
    trade_id: Option<u64>,
    last_trade_id: Option<u64>,
    sequence: Option<u64>,
    side: Option<(&'a [u8], usize)>,
    price: Option<(&'a [u8], usize)>,
    size: Option<(&'a [u8], usize)>,
    best_bid: Option<(&'a [u8], usize)>,
    best_ask: Option<(&'a [u8], usize)>,
    best_bid_size: Option<(&'a [u8], usize)>,
    best_ask_size: Option<(&'a [u8], usize)>,
    time: Option<&'a [u8]>,
    bids_at: Option<usize>,
    asks_at: Option<usize>,
    changes_at: Option<usize>,
}

impl Decoder {
    pub(crate) fn decode_coinbase_exchange(
        &mut self,
        frame: &Frame<'_>,
    ) -> Result<(), DecodeError> {
        let mut s = Scanner::new(frame.data);
        s.object_begin()?;
        let mut first = true;
        let mut ty: Option<Type> = None;
        let mut f = Fields::default();
        // The product, resolved as soon as `type` and `product_id` are both known, so the
        // level arrays (which follow them in the venue's own order) parse in one pass.
        let mut inst: Option<InstId> = None;
        let mut snapshot_begun = false;
        let (mut seen_bids, mut seen_asks, mut changes_inline) = (false, false, false);
        while let Some(k) = s.key(&mut first)? {
            let at = s.offset();
            match k {
                // Taken once: a second `type` or `product_id` would make the frame one
                // thing while its levels were applied as another.
                b"type" => set_once(&mut ty, type_of(s.string().field("type")?), "type", at)?,
                b"product_id" => set_once(
                    &mut f.product,
                    (s.string().field("product_id")?, at),
                    "product_id",
                    at,
                )?,
                b"trade_id" => f.trade_id = Some(s.u64().field("trade_id")?),
                b"last_trade_id" => f.last_trade_id = Some(s.u64().field("last_trade_id")?),
                b"sequence" => f.sequence = Some(s.u64().field("sequence")?),
                b"side" => f.side = Some((s.string().field("side")?, at)),
                b"price" => f.price = Some((s.string().field("price")?, at)),
                b"size" => f.size = Some((s.string().field("size")?, at)),
                b"best_bid" => f.best_bid = Some((s.string().field("best_bid")?, at)),
                b"best_ask" => f.best_ask = Some((s.string().field("best_ask")?, at)),
                b"best_bid_size" => {
                    f.best_bid_size = Some((s.string().field("best_bid_size")?, at))
                }
                b"best_ask_size" => {
                    f.best_ask_size = Some((s.string().field("best_ask_size")?, at))
                }
                b"time" => f.time = Some(s.string().field("time")?),
                b"bids" | b"asks" | b"changes" => {
                    seen_bids |= k == b"bids";
                    seen_asks |= k == b"asks";
                    let ready = match (ty, f.product) {
                        (Some(t @ (Type::Snapshot | Type::L2Update)), Some((sym, sat))) => {
                            let id = *match &mut inst {
                                Some(id) => id,
                                slot => slot.insert(self.cbx_instrument(sym, sat)?),
                            };
                            let synced = self.cbx.product(id).synced;
                            match (t, k) {
                                (Type::Snapshot, b"bids" | b"asks") => Some((id, true)),
                                (Type::L2Update, b"changes") if synced => Some((id, false)),
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    match ready {
                        Some((id, true)) => {
                            if !snapshot_begun {
                                self.sh.pending.push(Event::Snapshot { inst: id });
                                snapshot_begun = true;
                            }
                            let side = if k == b"bids" { Side::Bid } else { Side::Ask };
                            self.price_size_levels(
                                &mut s,
                                id,
                                side,
                                if k == b"bids" { "bids" } else { "asks" },
                                true,
                            )?;
                        }
                        Some((id, false)) => {
                            self.cbx_changes(&mut s, id)?;
                            changes_inline = true;
                        }
                        None => {
                            match k {
                                b"bids" => f.bids_at = Some(at),
                                b"asks" => f.asks_at = Some(at),
                                _ => f.changes_at = Some(at),
                            }
                            s.skip()?;
                        }
                    }
                }
                _ => {
                    s.skip()?;
                }
            }
        }
        s.end()?;
        let end = s.offset();
        let missing = |field| DecodeError::new(ErrorKind::Missing, field, end);
        let ty = ty.ok_or(missing("type"))?;
        match ty {
            Type::Error => {
                let msg = sonic_rs::from_slice::<ErrorFrame<'_>>(frame.data)
                    .ok()
                    .and_then(|e| match (e.message, e.reason) {
                        (Some(m), Some(r)) => Some(format!("{m}: {r}")),
                        (m, r) => m.or(r).map(str::to_string),
                    })
                    .unwrap_or_else(|| String::from_utf8_lossy(frame.data).into_owned());
                self.sh.last_venue_error = Some(msg);
                return Err(DecodeError::new(ErrorKind::VenueError, "message", 0));
            }
            Type::Other => {
                self.sh.stats.ignored += 1;
                return Ok(());
            }
            _ => {}
        }
        let (sym, sat) = f.product.ok_or(missing("product_id"))?;
        let id = match inst {
            Some(id) => id,
            None => self.cbx_instrument(sym, sat)?,
        };
        let input = s.input();
        match ty {
            Type::Snapshot => {
                if !snapshot_begun {
                    self.sh.pending.push(Event::Snapshot { inst: id });
                }
                for (at, seen, side, name) in [
                    (f.bids_at, seen_bids, Side::Bid, "bids"),
                    (f.asks_at, seen_asks, Side::Ask, "asks"),
                ] {
                    if !seen {
                        return Err(missing(name));
                    }
                    if let Some(at) = at {
                        self.price_size_levels(&mut Scanner::at(input, at), id, side, name, true)?;
                    }
                }
                self.sh.set_stale(id, false);
                self.sh.pending.push(Event::Commit {
                    inst: id,
                    update_id: 0,
                    exch_ts_ns: f.time.and_then(parse_rfc3339_ns).unwrap_or(0),
                    recv_ts_ns: frame.recv_ts_ns,
                });
                self.cbx.product(id).synced = true;
            }
            Type::L2Update => {
                if !self.cbx.product(id).synced {
                    // No snapshot yet on this connection: nowhere to apply it. The
                    // changes are still checked, so a malformed frame is refused.
                    if let Some(at) = f.changes_at {
                        let keep = self.sh.pending.len();
                        self.cbx_changes(&mut Scanner::at(input, at), id)?;
                        self.sh.pending.truncate(keep);
                    } else {
                        return Err(missing("changes"));
                    }
                    self.sh.stats.ignored += 1;
                    return Ok(());
                }
                match f.changes_at {
                    Some(at) => self.cbx_changes(&mut Scanner::at(input, at), id)?,
                    None if changes_inline => {}
                    None => return Err(missing("changes")),
                }
                self.sh.pending.push(Event::Commit {
                    inst: id,
                    update_id: 0,
                    exch_ts_ns: f.time.and_then(parse_rfc3339_ns).unwrap_or(0),
                    recv_ts_ns: frame.recv_ts_ns,
                });
            }
            Type::Match => self.cbx_match(&f, id, end)?,
            Type::Ticker => self.cbx_ticker(&f, id, frame, end)?,
            Type::Heartbeat => {
                self.sh.stats.heartbeats += 1;
                let p = *self.cbx.product(id);
                if let (Some(seen), Some(told)) = (p.last_trade, f.last_trade_id) {
                    if told > seen {
                        self.cbx_gap(id);
                    }
                }
            }
            Type::Error | Type::Other => unreachable!("handled above"),
        }
        Ok(())
    }

    fn cbx_instrument(&mut self, sym: &[u8], at: usize) -> Result<InstId, DecodeError> {
        self.sh.inst.resolve(
            Venue::CoinbaseExchange,
            sym,
            &mut self.sh.defines,
            "product_id",
            at,
        )
    }

    /// A gap in the product's numbered messages: a fact whatever becomes of this frame.
    fn cbx_gap(&mut self, inst: InstId) {
        self.sh.stats.gaps += 1;
        self.sh.set_stale_now(inst);
    }

    fn cbx_match(&mut self, f: &Fields<'_>, inst: InstId, end: usize) -> Result<(), DecodeError> {
        let missing = |field| DecodeError::new(ErrorKind::Missing, field, end);
        let scale = self.sh.inst.scale(inst);
        let trade_id = f.trade_id.ok_or(missing("trade_id"))?;
        let (side, sdat) = f.side.ok_or(missing("side"))?;
        // `side` is the maker's: a resting buy order hit means the aggressor sold.
        let side = match side {
            b"buy" => TradeSide::Sell,
            b"sell" => TradeSide::Buy,
            _ => return Err(DecodeError::new(ErrorKind::BadValue, "side", sdat)),
        };
        let (p, pat) = f.price.ok_or(missing("price"))?;
        let (q, qat) = f.size.ok_or(missing("size"))?;
        let price = Price(dec(p, scale.price_decimals, "price", pat)?);
        let qty = Qty(dec(q, scale.size_decimals, "size", qat)?);
        match self.cbx.product(inst).last_trade {
            Some(last) if trade_id <= last => {
                self.sh.stats.stale_frames += 1;
                return Ok(());
            }
            Some(last) if trade_id > last + 1 => self.cbx_gap(inst),
            _ => {}
        }
        self.cbx.product(inst).last_trade = Some(trade_id);
        self.sh.pending.push(Event::Trade {
            inst,
            side,
            trade_id,
            price,
            qty,
            ts_ns: f.time.and_then(parse_rfc3339_ns).unwrap_or(0),
        });
        Ok(())
    }

    fn cbx_ticker(
        &mut self,
        f: &Fields<'_>,
        inst: InstId,
        frame: &Frame<'_>,
        end: usize,
    ) -> Result<(), DecodeError> {
        let missing = |field| DecodeError::new(ErrorKind::Missing, field, end);
        let scale = self.sh.inst.scale(inst);
        let px = |v: Option<(&[u8], usize)>, name| -> Result<i64, DecodeError> {
            let (t, at) = v.ok_or(missing(name))?;
            dec(t, scale.price_decimals, name, at)
        };
        let qty = |v: Option<(&[u8], usize)>, name| -> Result<i64, DecodeError> {
            match v {
                Some((t, at)) => dec(t, scale.size_decimals, name, at),
                None => Ok(0),
            }
        };
        let bid_px = px(f.best_bid, "best_bid")?;
        let ask_px = px(f.best_ask, "best_ask")?;
        let bid_qty = qty(f.best_bid_size, "best_bid_size")?;
        let ask_qty = qty(f.best_ask_size, "best_ask_size")?;
        let p = self.cbx.product(inst);
        if let (Some(last), Some(seq)) = (p.last_ticker, f.sequence) {
            if seq <= last {
                self.sh.stats.stale_frames += 1;
                return Ok(());
            }
        }
        if f.sequence.is_some() {
            p.last_ticker = f.sequence;
        }
        self.sh.pending.push(Event::Quote {
            inst,
            update_id: 0,
            bid_px: Price(bid_px),
            bid_qty: Qty(bid_qty),
            ask_px: Price(ask_px),
            ask_qty: Qty(ask_qty),
            recv_ts_ns: frame.recv_ts_ns,
        });
        Ok(())
    }

    /// `[[side, price, size], …]` of an `l2update`.
    fn cbx_changes(&mut self, s: &mut Scanner<'_>, inst: InstId) -> Result<(), DecodeError> {
        let scale = self.sh.inst.scale(inst);
        s.array_begin()?;
        let mut first = true;
        let mut i = 0u32;
        while s.elem(&mut first)? {
            let r = (|| {
                s.array_begin()?;
                let mut f = true;
                if !s.elem(&mut f)? {
                    return Err(DecodeError::new(ErrorKind::Missing, "changes", s.offset()));
                }
                let at = s.offset();
                let side = match s.string().field("changes")? {
                    b"buy" => Side::Bid,
                    b"sell" => Side::Ask,
                    _ => return Err(DecodeError::new(ErrorKind::BadValue, "changes", at)),
                };
                let mut vals = [0i64; 2];
                for (k, v) in vals.iter_mut().enumerate() {
                    if !s.elem(&mut f)? {
                        return Err(DecodeError::new(ErrorKind::Missing, "changes", s.offset()));
                    }
                    let d = if k == 0 {
                        scale.price_decimals
                    } else {
                        scale.size_decimals
                    };
                    *v = match s.fixed_string(d) {
                        Some(v) => v,
                        None => {
                            let at = s.offset();
                            dec(s.string().field("changes")?, d, "changes", at)?
                        }
                    };
                }
                if s.elem(&mut f)? {
                    return Err(DecodeError::new(ErrorKind::BadValue, "changes", s.offset()));
                }
                self.sh.pending.push(Event::Level {
                    inst,
                    side,
                    price: Price(vals[0]),
                    qty: Qty(vals[1]),
                });
                Ok(())
            })();
            r.map_err(|e: DecodeError| e.at_index(i))?;
            i += 1;
        }
        Ok(())
    }
}
