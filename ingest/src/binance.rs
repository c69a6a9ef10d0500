//! Binance frames, spot and futures: combined streams `{"stream":…, "data":{…}}` (or
//! bare payloads) carrying `trade`, `aggTrade`, `bookTicker` (spot: no `e`; futures:
//! `"e":"bookTicker"` with `E`, `T`) and `depthUpdate` (`U`,`u`,`b`,`a`; futures add `pu`),
//! plus REST depth snapshots (`lastUpdateId`; futures add `E`, `T`, and COIN-M `symbol`,
//! `pair`). Futures also send `markPriceUpdate` (mark, index, funding rate, next funding
//! time: [`Event::Derivs`]) and `forceOrder` (liquidations: [`Event::Liquidation`]).
//!
//! Diff-depth sync follows Binance's documented procedure, per symbol: until a snapshot
//! arrives, diffs are buffered (raw); at a snapshot with `lastUpdateId = L`, buffered
//! diffs with `u ≤ L` are dropped, and a diff is applied only if it covers the next id,
//! `U ≤ last+1 ≤ u` (for the first one after the snapshot that is the straddle rule; for
//! later ones it is `U == prev u + 1`, overlaps being harmless because sizes are
//! absolute). A diff starting past `last+1` is a gap: the symbol is marked stale, keeps
//! its old levels visible, and buffers again until the next snapshot.
//!
//! Futures (USD-M `/fapi`, COIN-M `/dapi`) follow their own documented procedure: at a
//! snapshot `L`, buffered diffs with `u < L` are dropped; the first applied diff must have
//! `U ≤ L ≤ u`; each later one must have `pu` equal to the previous diff's `u` (their
//! `U` is not `prev u + 1`). Anything else is a gap, handled as for spot.

use std::collections::VecDeque;

use hermes_book::event::DERIV_DECIMALS;
use hermes_book::{parse_decimal, Price, Qty, Side};

use crate::decoder::{dec, set_once, DecodeError, Decoder, ErrorKind, FieldExt, Frame, FrameKind};
use crate::event::{Event, InstId, TradeSide, Venue};
use crate::json::Scanner;
use crate::venue::{Resync, VenueProtocol};

#[derive(Debug)]
enum Sync {
    /// Waiting for a snapshot; raw diffs with their receive times.
    Unsynced {
        buf: Vec<(Vec<u8>, i64)>,
        bytes: usize,
    },
    /// Book valid up to `last_u`; `fresh` while no diff was applied since the snapshot
    /// (futures: the next diff must straddle `last_u`).
    Synced { last_u: u64, fresh: bool },
}

impl Default for Sync {
    fn default() -> Self {
        Sync::Unsynced {
            buf: Vec::new(),
            bytes: 0,
        }
    }
}

/// What to do with a diff, decided from `U`/`u` before its levels are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Apply,
    /// `u ≤` book id: old or duplicate.
    Skip,
    /// No snapshot yet: keep the raw frame.
    Buffer,
    /// Missed ids: go stale, buffer.
    Gap,
}

/// A diff's sync decision, taken while its frame is parsed and applied only once the
/// whole frame is known good: a frame refused after its payload (trailing garbage, a bad
/// envelope field) must not move the book's sync state, or the next diff would be applied
/// on top of levels that never were.
#[derive(Clone, Copy, Debug)]
struct DepthOutcome {
    inst: InstId,
    plan: Plan,
    last_id: u64,
    exch_ts_ns: i64,
}

/// Per-symbol diff-depth sync state.
#[derive(Debug, Default)]
pub(crate) struct BinanceState {
    books: Vec<Sync>,
    replay: VecDeque<(Venue, Vec<u8>, i64)>,
}

impl BinanceState {
    fn book(&mut self, inst: InstId) -> &mut Sync {
        let i = inst.0 as usize;
        if self.books.len() <= i {
            self.books.resize_with(i + 1, Sync::default);
        }
        &mut self.books[i]
    }

    /// The sync decision for a diff `U..=u` (with `pu` on futures).
    fn plan(&mut self, inst: InstId, ids: Ids) -> Plan {
        match *self.book(inst) {
            Sync::Unsynced { .. } => Plan::Buffer,
            Sync::Synced { last_u, fresh } => match ids.prev {
                // Futures: the first diff straddles the snapshot, then `pu` chains.
                Some(pu) => {
                    if ids.last < last_u || (!fresh && ids.last == last_u) {
                        Plan::Skip
                    } else if fresh {
                        if ids.first <= last_u {
                            Plan::Apply
                        } else {
                            Plan::Gap
                        }
                    } else if pu == last_u {
                        Plan::Apply
                    } else {
                        Plan::Gap
                    }
                }
                None => {
                    if ids.last <= last_u {
                        Plan::Skip
                    } else if ids.first <= last_u + 1 {
                        Plan::Apply
                    } else {
                        Plan::Gap
                    }
                }
            },
        }
    }

    /// Starts the sync of `inst` over (a new connection): buffer until a snapshot.
    pub(crate) fn restart(&mut self, inst: InstId) {
        *self.book(inst) = Sync::default();
    }

    pub(crate) fn next_replay(&mut self) -> Option<(Venue, Vec<u8>, i64)> {
        self.replay.pop_front()
    }

    pub(crate) fn unsynced(&self) -> Vec<(InstId, usize)> {
        self.books
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match b {
                Sync::Unsynced { buf, .. } if !buf.is_empty() => {
                    Some((InstId(i as u32), buf.len()))
                }
                _ => None,
            })
            .collect()
    }
}

/// A diff's update ids: `U`, `u`, and on futures `pu`.
#[derive(Clone, Copy, Debug)]
struct Ids {
    first: u64,
    last: u64,
    prev: Option<u64>,
}

#[derive(Default)]
struct Fields<'a> {
    e: Option<&'a [u8]>,
    sym: Option<(&'a [u8], usize)>,
    event_ms: Option<u64>,
    trade_ms: Option<u64>,
    first_id: Option<u64>,
    last_id: Option<u64>,
    prev_id: Option<u64>,
    trade_id: Option<u64>,
    agg_id: Option<u64>,
    price: Option<(&'a [u8], usize)>,
    qty: Option<(&'a [u8], usize)>,
    bid: Option<(&'a [u8], usize)>,
    bid_qty: Option<(&'a [u8], usize)>,
    ask: Option<(&'a [u8], usize)>,
    ask_qty: Option<(&'a [u8], usize)>,
    bids_at: Option<usize>,
    asks_at: Option<usize>,
    buyer_maker: Option<bool>,
    index: Option<(&'a [u8], usize)>,
    funding: Option<(&'a [u8], usize)>,
    order: Option<ForceOrder<'a>>,
}

/// The `o` object of a `forceOrder`.
#[derive(Default, Clone, Copy)]
struct ForceOrder<'a> {
    sym: Option<(&'a [u8], usize)>,
    side: Option<(&'a [u8], usize)>,
    price: Option<(&'a [u8], usize)>,
    avg_price: Option<(&'a [u8], usize)>,
    filled: Option<(&'a [u8], usize)>,
    time_ms: Option<u64>,
}

fn force_order<'a>(s: &mut Scanner<'a>) -> Result<ForceOrder<'a>, DecodeError> {
    let mut o = ForceOrder::default();
    s.object_begin()?;
    let mut first = true;
    while let Some(k) = s.key(&mut first)? {
        let at = s.offset();
        match k {
            b"s" => o.sym = Some((s.string().field("o.s")?, at)),
            b"S" => o.side = Some((s.string().field("o.S")?, at)),
            b"p" => o.price = Some((s.string().field("o.p")?, at)),
            b"ap" => o.avg_price = Some((s.string().field("o.ap")?, at)),
            b"z" => o.filled = Some((s.string().field("o.z")?, at)),
            b"T" => o.time_ms = Some(s.u64().field("o.T")?),
            _ => {
                s.skip()?;
            }
        }
    }
    Ok(o)
}

/// A signed decimal at [`DERIV_DECIMALS`]; `""` (a delivery contract's funding rate) is 0.
fn deriv(text: &[u8], field: &'static str, at: usize) -> Result<i64, DecodeError> {
    if text.is_empty() {
        return Ok(0);
    }
    parse_decimal(text, DERIV_DECIMALS)
        .map_err(|e| DecodeError::new(ErrorKind::Decimal(e), field, at))
}

#[derive(serde::Deserialize)]
struct ErrorFrame<'a> {
    code: Option<i64>,
    #[serde(borrow)]
    msg: Option<&'a str>,
}

fn ms_to_ns(ms: Option<u64>) -> i64 {
    ms.map(|m| (m as i64).saturating_mul(1_000_000))
        .unwrap_or(0)
}

impl Decoder {
    pub(crate) fn decode_binance(&mut self, frame: &Frame<'_>) -> Result<(), DecodeError> {
        if let FrameKind::RestDepth { symbol } = frame.kind {
            return self.binance_snapshot(frame, symbol);
        }
        let mut s = Scanner::new(frame.data);
        s.object_begin()?;
        let mut first = true;
        let mut saw_data = false;
        let mut outcome = None;
        let mut foreign = false;
        while let Some(k) = s.key(&mut first)? {
            match k {
                b"data" => {
                    if saw_data {
                        // One frame, one payload: a second would be decided against the
                        // sync state the first has not yet moved.
                        return Err(DecodeError::new(ErrorKind::BadValue, "data", s.offset()));
                    }
                    outcome = self.binance_payload(&mut s, frame)?;
                    saw_data = true;
                }
                b"stream" => {
                    s.string().field("stream")?;
                }
                _ => {
                    foreign = true;
                    s.skip()?;
                }
            }
        }
        s.end()?;
        if saw_data {
            if let Some(o) = outcome {
                self.depth_outcome(o, frame);
            }
            return Ok(());
        }
        if foreign {
            let data = frame.data;
            if let Ok(e) = sonic_rs::from_slice::<ErrorFrame<'_>>(data) {
                if let (Some(code), Some(msg)) = (e.code, e.msg) {
                    self.sh.last_venue_error = Some(format!("code {code}: {msg}"));
                    return Err(DecodeError::new(ErrorKind::VenueError, "msg", 0));
                }
            }
            // A subscribe acknowledgement: {"result":null,"id":1}.
            if sonic_rs::get_from_slice(data, &["result"]).is_ok()
                && sonic_rs::get_from_slice(data, &["id"]).is_ok()
            {
                self.sh.stats.ignored += 1;
                return Ok(());
            }
            // A bare (non-combined) payload: the whole frame was checked above.
            if let Some(o) = self.binance_payload(&mut Scanner::new(data), frame)? {
                self.depth_outcome(o, frame);
            }
            return Ok(());
        }
        Err(DecodeError::new(ErrorKind::Missing, "data", 0))
    }

    /// Parses one payload object into pending events. A depth diff's effect on the sync
    /// state is returned, for the caller to apply once the whole frame has parsed.
    fn binance_payload(
        &mut self,
        s: &mut Scanner<'_>,
        frame: &Frame<'_>,
    ) -> Result<Option<DepthOutcome>, DecodeError> {
        let venue = frame.venue;
        let futures = venue.is_binance_futures();
        s.object_begin()?;
        let mut first = true;
        let mut f = Fields::default();
        let mut plan: Option<(InstId, Plan)> = None;
        while let Some(k) = s.key(&mut first)? {
            let at = s.offset();
            match k {
                // The fields that decide what a frame is and where it goes are taken once:
                // a second `e`, `s`, `U`, `u` or `pu` would make the frame one thing while
                // its levels were applied as another.
                b"e" => set_once(&mut f.e, s.string().field("e")?, "e", at)?,
                b"s" => set_once(&mut f.sym, (s.string().field("s")?, at), "s", at)?,
                b"E" => f.event_ms = Some(s.u64().field("E")?),
                b"T" => f.trade_ms = Some(s.u64().field("T")?),
                b"U" => set_once(&mut f.first_id, s.u64().field("U")?, "U", at)?,
                b"u" => set_once(&mut f.last_id, s.u64().field("u")?, "u", at)?,
                b"pu" => set_once(&mut f.prev_id, s.u64().field("pu")?, "pu", at)?,
                b"t" => f.trade_id = Some(s.u64().field("t")?),
                b"i" => f.index = Some((s.string().field("i")?, at)),
                b"r" => f.funding = Some((s.string().field("r")?, at)),
                b"o" if s.peek() == Some(b'{') => f.order = Some(force_order(s)?),
                b"p" => f.price = Some((s.string().field("p")?, at)),
                b"q" => f.qty = Some((s.string().field("q")?, at)),
                b"B" => f.bid_qty = Some((s.string().field("B")?, at)),
                b"A" => f.ask_qty = Some((s.string().field("A")?, at)),
                b"m" => f.buyer_maker = Some(s.bool()?),
                b"b" | b"a" => {
                    let bids = k == b"b";
                    match s.peek() {
                        Some(b'"') => {
                            let v = Some((s.string().field(if bids { "b" } else { "a" })?, at));
                            if bids {
                                f.bid = v
                            } else {
                                f.ask = v
                            }
                        }
                        Some(b'[') => {
                            // Apply inline when the header came first (Binance's own
                            // order); otherwise note where the array is and come back.
                            if plan.is_none() && f.e == Some(b"depthUpdate") {
                                if let (Some((sym, sat)), Some(fi), Some(li)) =
                                    (f.sym, f.first_id, f.last_id)
                                {
                                    if !futures || f.prev_id.is_some() {
                                        let inst = self.sh.inst.resolve(
                                            venue,
                                            sym,
                                            &mut self.sh.defines,
                                            "s",
                                            sat,
                                        )?;
                                        let ids = Ids {
                                            first: fi,
                                            last: li,
                                            prev: f.prev_id,
                                        };
                                        plan = Some((inst, self.bn.plan(inst, ids)));
                                    }
                                }
                            }
                            match plan {
                                Some((inst, Plan::Apply)) => {
                                    let side = if bids { Side::Bid } else { Side::Ask };
                                    self.depth_levels(s, inst, side, if bids { "b" } else { "a" })?;
                                }
                                _ => {
                                    if bids {
                                        f.bids_at = Some(at)
                                    } else {
                                        f.asks_at = Some(at)
                                    }
                                    s.skip()?;
                                }
                            }
                        }
                        // aggTrade's id; in older trade messages `b`/`a` were the
                        // buyer/seller order ids, which we do not use.
                        _ if !bids => f.agg_id = Some(s.u64().field("a")?),
                        _ => {
                            s.u64().field("b")?;
                        }
                    }
                }
                _ => {
                    s.skip()?;
                }
            }
        }
        let end = s.offset();
        let missing = |field| DecodeError::new(ErrorKind::Missing, field, end);
        if f.e == Some(b"forceOrder") {
            return self.force_order(f, venue, end).map(|()| None);
        }
        let (sym, sat) = f.sym.ok_or(missing("s"))?;
        match f.e {
            Some(b"depthUpdate") => {
                let fi = f.first_id.ok_or(missing("U"))?;
                let li = f.last_id.ok_or(missing("u"))?;
                if fi > li {
                    return Err(DecodeError::new(ErrorKind::BadValue, "U", end));
                }
                if futures && f.prev_id.is_none() {
                    // Futures chain diffs by `pu`: without it no gap could be seen.
                    return Err(missing("pu"));
                }
                let (inst, p) = match plan {
                    Some(p) => p,
                    None => {
                        let inst =
                            self.sh
                                .inst
                                .resolve(venue, sym, &mut self.sh.defines, "s", sat)?;
                        let ids = Ids {
                            first: fi,
                            last: li,
                            prev: if futures { f.prev_id } else { None },
                        };
                        (inst, self.bn.plan(inst, ids))
                    }
                };
                let input = s.input();
                // Levels not applied inline are parsed now: applied, or, for a diff kept
                // for later, checked, so a bad one is refused on arrival.
                let keep = self.sh.pending.len();
                if p != Plan::Skip {
                    for (at, side, name) in
                        [(f.bids_at, Side::Bid, "b"), (f.asks_at, Side::Ask, "a")]
                    {
                        if let Some(at) = at {
                            self.depth_levels(&mut Scanner::at(input, at), inst, side, name)?;
                        }
                    }
                }
                if p != Plan::Apply {
                    self.sh.pending.truncate(keep);
                }
                Ok(Some(DepthOutcome {
                    inst,
                    plan: p,
                    last_id: li,
                    // Futures: `T`, the matching engine's time; spot has only `E`.
                    exch_ts_ns: ms_to_ns(f.trade_ms.or(f.event_ms)),
                }))
            }
            Some(b"trade") | Some(b"aggTrade") => {
                let inst = self
                    .sh
                    .inst
                    .resolve(venue, sym, &mut self.sh.defines, "s", sat)?;
                let scale = self.sh.inst.scale(inst);
                let id = if f.e == Some(b"trade") {
                    f.trade_id.ok_or(missing("t"))?
                } else {
                    f.agg_id.ok_or(missing("a"))?
                };
                let (p, pat) = f.price.ok_or(missing("p"))?;
                let (q, qat) = f.qty.ok_or(missing("q"))?;
                self.sh.pending.push(Event::Trade {
                    inst,
                    side: match f.buyer_maker {
                        Some(true) => TradeSide::Sell,
                        Some(false) => TradeSide::Buy,
                        None => TradeSide::Unknown,
                    },
                    trade_id: id,
                    price: Price(dec(p, scale.price_decimals, "p", pat)?),
                    qty: Qty(dec(q, scale.size_decimals, "q", qat)?),
                    ts_ns: ms_to_ns(f.trade_ms.or(f.event_ms)),
                });
                Ok(None)
            }
            Some(b"bookTicker") if futures => self.book_ticker(&f, venue, frame, end),
            None if f.last_id.is_some() && f.bid.is_some() && f.ask.is_some() => {
                self.book_ticker(&f, venue, frame, end)
            }
            Some(b"markPriceUpdate") if futures => {
                let inst = self
                    .sh
                    .inst
                    .resolve(venue, sym, &mut self.sh.defines, "s", sat)?;
                let (p, pat) = f.price.ok_or(missing("p"))?;
                let mark_px = deriv(p, "p", pat)?;
                let index_px = match f.index {
                    Some((i, iat)) => deriv(i, "i", iat)?,
                    None => 0,
                };
                let funding_rate = match f.funding {
                    Some((r, rat)) => deriv(r, "r", rat)?,
                    None => 0,
                };
                self.sh.pending.push(Event::Derivs {
                    inst,
                    mark_px,
                    index_px,
                    funding_rate,
                    next_funding_ns: ms_to_ns(f.trade_ms),
                    ts_ns: ms_to_ns(f.event_ms),
                });
                Ok(None)
            }
            Some(b"24hrTicker" | b"24hrMiniTicker" | b"kline" | b"avgPrice") => {
                self.sh.stats.ignored += 1;
                Ok(None)
            }
            Some(
                b"continuous_kline" | b"indexPriceUpdate" | b"indexPrice_kline"
                | b"markPrice_kline" | b"contractInfo" | b"compositeIndex" | b"assetIndexUpdate",
            ) if futures => {
                self.sh.stats.ignored += 1;
                Ok(None)
            }
            _ => Err(DecodeError::new(ErrorKind::UnknownType, "e", 0)),
        }
    }

    /// A best bid/offer: spot's `bookTicker` (no `e`) or the futures one.
    fn book_ticker(
        &mut self,
        f: &Fields<'_>,
        venue: Venue,
        frame: &Frame<'_>,
        end: usize,
    ) -> Result<Option<DepthOutcome>, DecodeError> {
        let missing = |field| DecodeError::new(ErrorKind::Missing, field, end);
        let (sym, sat) = f.sym.ok_or(missing("s"))?;
        let inst = self
            .sh
            .inst
            .resolve(venue, sym, &mut self.sh.defines, "s", sat)?;
        let scale = self.sh.inst.scale(inst);
        let (b, bat) = f.bid.ok_or(missing("b"))?;
        let (a, aat) = f.ask.ok_or(missing("a"))?;
        let (bq, bqat) = f.bid_qty.ok_or(missing("B"))?;
        let (aq, aqat) = f.ask_qty.ok_or(missing("A"))?;
        self.sh.pending.push(Event::Quote {
            inst,
            update_id: f.last_id.ok_or(missing("u"))?,
            bid_px: Price(dec(b, scale.price_decimals, "b", bat)?),
            bid_qty: Qty(dec(bq, scale.size_decimals, "B", bqat)?),
            ask_px: Price(dec(a, scale.price_decimals, "a", aat)?),
            ask_qty: Qty(dec(aq, scale.size_decimals, "A", aqat)?),
            recv_ts_ns: frame.recv_ts_ns,
        });
        Ok(None)
    }

    /// A `forceOrder`: the liquidation order is in `o`.
    fn force_order(&mut self, f: Fields<'_>, venue: Venue, end: usize) -> Result<(), DecodeError> {
        let missing = |field| DecodeError::new(ErrorKind::Missing, field, end);
        if !venue.is_binance_futures() {
            return Err(DecodeError::new(ErrorKind::UnknownType, "e", 0));
        }
        let o = f.order.ok_or(missing("o"))?;
        let (sym, sat) = o.sym.ok_or(missing("o.s"))?;
        let inst = self
            .sh
            .inst
            .resolve(venue, sym, &mut self.sh.defines, "o.s", sat)?;
        let scale = self.sh.inst.scale(inst);
        let (side, sdat) = o.side.ok_or(missing("o.S"))?;
        let side = match side {
            b"BUY" => TradeSide::Buy,
            b"SELL" => TradeSide::Sell,
            _ => return Err(DecodeError::new(ErrorKind::BadValue, "o.S", sdat)),
        };
        // The average fill price once anything filled, else the order's price.
        let avg = match o.avg_price {
            Some((ap, at)) => dec(ap, scale.price_decimals, "o.ap", at)?,
            None => 0,
        };
        let price = if avg > 0 {
            avg
        } else {
            let (p, pat) = o.price.ok_or(missing("o.p"))?;
            dec(p, scale.price_decimals, "o.p", pat)?
        };
        let (z, zat) = o.filled.ok_or(missing("o.z"))?;
        self.sh.pending.push(Event::Liquidation {
            inst,
            side,
            price: Price(price),
            qty: Qty(dec(z, scale.size_decimals, "o.z", zat)?),
            ts_ns: ms_to_ns(o.time_ms.or(f.event_ms)),
        });
        Ok(())
    }

    /// Applies the sync decision of a diff whose whole frame parsed.
    fn depth_outcome(&mut self, o: DepthOutcome, frame: &Frame<'_>) {
        let DepthOutcome {
            inst,
            plan,
            last_id,
            exch_ts_ns,
        } = o;
        match plan {
            Plan::Apply => {
                *self.bn.book(inst) = Sync::Synced {
                    last_u: last_id,
                    fresh: false,
                };
                self.sh.pending.push(Event::Commit {
                    inst,
                    update_id: last_id,
                    exch_ts_ns,
                    recv_ts_ns: frame.recv_ts_ns,
                });
            }
            Plan::Skip => self.sh.stats.stale_frames += 1,
            Plan::Gap => {
                self.sh.stats.gaps += 1;
                self.sh.set_stale(inst, true);
                *self.bn.book(inst) = Sync::default();
                self.buffer(inst, frame);
            }
            Plan::Buffer => self.buffer(inst, frame),
        }
    }

    fn buffer(&mut self, inst: InstId, frame: &Frame<'_>) {
        let cap = self.max_buffer_bytes;
        self.sh.stats.buffered += 1;
        if let Sync::Unsynced { buf, bytes } = self.bn.book(inst) {
            if *bytes + frame.data.len() > cap {
                buf.clear();
                *bytes = 0;
                self.sh.stats.buffer_overflows += 1;
            }
            *bytes += frame.data.len();
            buf.push((frame.data.to_vec(), frame.recv_ts_ns));
        }
    }

    fn depth_levels(
        &mut self,
        s: &mut Scanner<'_>,
        inst: InstId,
        side: Side,
        field: &'static str,
    ) -> Result<(), DecodeError> {
        self.price_size_levels(s, inst, side, field, false)
    }

    /// `[["price","size"], …]` into level events: Binance depth and the Coinbase
    /// Exchange snapshot. With `extra_ok`, elements after the size (the order count of
    /// older Exchange snapshots) are skipped; otherwise they are refused.
    pub(crate) fn price_size_levels(
        &mut self,
        s: &mut Scanner<'_>,
        inst: InstId,
        side: Side,
        field: &'static str,
        extra_ok: bool,
    ) -> Result<(), DecodeError> {
        let scale = self.sh.inst.scale(inst);
        s.array_begin()?;
        let mut first = true;
        let mut i = 0u32;
        while s.elem(&mut first)? {
            // The common `["price","qty"]` in one pass; anything else, and every error,
            // through the general path below.
            if let Some((price, qty)) = s.fixed_pair(scale.price_decimals, scale.size_decimals) {
                self.sh.pending.push(Event::Level {
                    inst,
                    side,
                    price: Price(price),
                    qty: Qty(qty),
                });
                i += 1;
                // The levels that follow directly (`,[…]`), without the general walk.
                while let Some((price, qty)) =
                    s.next_fixed_pair(scale.price_decimals, scale.size_decimals)
                {
                    self.sh.pending.push(Event::Level {
                        inst,
                        side,
                        price: Price(price),
                        qty: Qty(qty),
                    });
                    i += 1;
                }
                continue;
            }
            let r = (|| {
                s.array_begin()?;
                let mut f = true;
                if !s.elem(&mut f)? {
                    return Err(DecodeError::new(ErrorKind::Missing, field, s.offset()));
                }
                // The common plain decimal in one pass; anything else (and every error)
                // through the general path.
                let price = match s.fixed_string(scale.price_decimals) {
                    Some(v) => v,
                    None => {
                        let at = s.offset();
                        dec(s.string().field(field)?, scale.price_decimals, field, at)?
                    }
                };
                if !s.elem(&mut f)? {
                    return Err(DecodeError::new(ErrorKind::Missing, field, s.offset()));
                }
                let qty = match s.fixed_string(scale.size_decimals) {
                    Some(v) => v,
                    None => {
                        let at = s.offset();
                        dec(s.string().field(field)?, scale.size_decimals, field, at)?
                    }
                };
                while s.elem(&mut f)? {
                    if !extra_ok {
                        return Err(DecodeError::new(ErrorKind::BadValue, field, s.offset()));
                    }
                    s.skip()?;
                }
                self.sh.pending.push(Event::Level {
                    inst,
                    side,
                    price: Price(price),
                    qty: Qty(qty),
                });
                Ok(())
            })();
            r.map_err(|e: DecodeError| e.at_index(i))?;
            i += 1;
        }
        Ok(())
    }

    /// A REST `/api/v3/depth` body for `symbol`.
    fn binance_snapshot(&mut self, frame: &Frame<'_>, symbol: &[u8]) -> Result<(), DecodeError> {
        let venue = frame.venue;
        let inst = self
            .sh
            .inst
            .resolve(venue, symbol, &mut self.sh.defines, "symbol", 0)?;
        let mut s = Scanner::new(frame.data);
        s.object_begin()?;
        let mut first = true;
        let mut last_id = None;
        let mut exch_ms = None;
        self.sh.pending.push(Event::Snapshot { inst });
        while let Some(k) = s.key(&mut first)? {
            match k {
                b"lastUpdateId" => last_id = Some(s.u64().field("lastUpdateId")?),
                // Futures snapshots carry the matching engine's time.
                b"T" => exch_ms = Some(s.u64().field("T")?),
                b"bids" => self.depth_levels(&mut s, inst, Side::Bid, "bids")?,
                b"asks" => self.depth_levels(&mut s, inst, Side::Ask, "asks")?,
                b"code" | b"msg" => {
                    self.sh.last_venue_error =
                        Some(String::from_utf8_lossy(frame.data).into_owned());
                    return Err(DecodeError::new(ErrorKind::VenueError, "msg", 0));
                }
                _ => {
                    s.skip()?;
                }
            }
        }
        s.end()?;
        let l = last_id.ok_or(DecodeError::new(
            ErrorKind::Missing,
            "lastUpdateId",
            s.offset(),
        ))?;
        if let Sync::Synced { last_u, .. } = *self.bn.book(inst) {
            if l <= last_u {
                // Our book is already at or past this snapshot.
                self.sh.pending.clear();
                self.sh.stats.ignored += 1;
                return Ok(());
            }
        }
        let old = std::mem::replace(
            self.bn.book(inst),
            Sync::Synced {
                last_u: l,
                fresh: true,
            },
        );
        self.sh.set_stale(inst, false);
        self.sh.pending.push(Event::Commit {
            inst,
            update_id: l,
            exch_ts_ns: ms_to_ns(exch_ms),
            recv_ts_ns: frame.recv_ts_ns,
        });
        if let Sync::Unsynced { buf, .. } = old {
            // Spot drops the diffs with `u ≤ L`, futures those with `u < L` (the one
            // ending at `L` straddles it and is applied).
            let keep_last = venue.is_binance_futures();
            for (data, recv) in buf {
                // Diffs the snapshot already covers are dropped here, the rest replayed.
                if covered(&data, l, keep_last) {
                    self.sh.stats.dropped_covered += 1;
                } else {
                    self.bn.replay.push_back((venue, data, recv));
                }
            }
        }
        Ok(())
    }
}

/// `true` when a buffered diff's `u` is below `l`, or equal to it unless `keep_last`.
fn covered(data: &[u8], l: u64, keep_last: bool) -> bool {
    let last = sonic_rs::get_from_slice(data, &["data", "u"])
        .or_else(|_| sonic_rs::get_from_slice(data, &["u"]))
        .ok()
        .and_then(|v| v.as_raw_str().parse::<u64>().ok());
    matches!(last, Some(u) if u < l || (u == l && !keep_last))
}

/// The Binance venues' protocol: spot and the two futures markets differ in their
/// endpoints, their snapshot weights and (in the decoder) their diff-depth rules.
pub(crate) struct BinanceProtocol {
    venue: Venue,
    key: &'static str,
    ws_url: &'static str,
    rest_url: &'static str,
    depth_path: &'static str,
    streams: &'static [&'static str],
}

/// Binance spot.
pub(crate) static BINANCE_SPOT: BinanceProtocol = BinanceProtocol {
    venue: Venue::Binance,
    key: "binance",
    ws_url: "wss://stream.binance.com:9443",
    rest_url: "https://api.binance.com",
    depth_path: "/api/v3/depth",
    streams: &["depth@100ms", "trade", "bookTicker"],
};

/// Binance USD-M futures.
pub(crate) static BINANCE_USDM: BinanceProtocol = BinanceProtocol {
    venue: Venue::BinanceUsdm,
    key: "binance_usdm",
    ws_url: "wss://fstream.binance.com",
    rest_url: "https://fapi.binance.com",
    depth_path: "/fapi/v1/depth",
    streams: &[
        "depth@100ms",
        "aggTrade",
        "bookTicker",
        "markPrice@1s",
        "forceOrder",
    ],
};

/// Binance COIN-M futures.
pub(crate) static BINANCE_COINM: BinanceProtocol = BinanceProtocol {
    venue: Venue::BinanceCoinm,
    key: "binance_coinm",
    ws_url: "wss://dstream.binance.com",
    rest_url: "https://dapi.binance.com",
    depth_path: "/dapi/v1/depth",
    streams: &[
        "depth@100ms",
        "aggTrade",
        "bookTicker",
        "markPrice@1s",
        "forceOrder",
    ],
};

impl VenueProtocol for BinanceProtocol {
    fn venue(&self) -> Venue {
        self.venue
    }

    fn config_key(&self) -> &'static str {
        self.key
    }

    fn instruments_key(&self) -> &'static str {
        "symbols"
    }

    fn default_ws_url(&self) -> &'static str {
        self.ws_url
    }

    fn default_rest_url(&self) -> Option<&'static str> {
        Some(self.rest_url)
    }

    fn default_channels(&self) -> &'static [&'static str] {
        self.streams
    }

    fn normalize(&self, name: &str) -> String {
        name.to_ascii_uppercase()
    }

    fn connect_url(&self, ws_url: &str, symbols: &[String], streams: &[String]) -> String {
        let names: Vec<String> = symbols
            .iter()
            .flat_map(|s| {
                streams
                    .iter()
                    .map(move |st| format!("{}@{}", s.to_ascii_lowercase(), st))
            })
            .collect();
        format!(
            "{}/stream?streams={}",
            ws_url.trim_end_matches('/'),
            names.join("/")
        )
    }

    fn subscribe(&self, _symbols: &[String], _streams: &[String]) -> Vec<String> {
        // The streams are named in the URL.
        Vec::new()
    }

    fn resync(&self) -> Resync {
        Resync::RestSnapshot
    }

    fn snapshot_url(&self, rest_url: &str, symbol: &str, limit: u32) -> Option<String> {
        Some(format!(
            "{}{}?symbol={}&limit={}",
            rest_url.trim_end_matches('/'),
            self.depth_path,
            symbol,
            limit
        ))
    }

    fn snapshot_weight(&self, limit: u32) -> u32 {
        if self.venue.is_binance_futures() {
            // `/fapi/v1/depth` and `/dapi/v1/depth`.
            match limit {
                0..=50 => 2,
                51..=100 => 5,
                101..=500 => 10,
                _ => 20,
            }
        } else {
            match limit {
                0..=100 => 5,
                101..=500 => 25,
                501..=1000 => 50,
                _ => 250,
            }
        }
    }

    fn valid_depth_limit(&self, limit: u32) -> bool {
        if self.venue.is_binance_futures() {
            matches!(limit, 5 | 10 | 20 | 50 | 100 | 500 | 1000)
        } else {
            matches!(limit, 1..=5000)
        }
    }

    fn decode(&self, dec: &mut Decoder, frame: &Frame<'_>) -> Result<(), DecodeError> {
        dec.decode_binance(frame)
    }

    fn restart(&self, dec: &mut Decoder, inst: InstId) {
        dec.bn.restart(inst);
    }
}

#[cfg(test)]
mod tests {
    use crate::{DecodeError, Decoder, Event, Frame, FrameKind, Venue};

    fn ws(dec: &mut Decoder, data: &str, out: &mut Vec<Event>) -> Result<(), DecodeError> {
        out.clear();
        let f = Frame {
            venue: Venue::Binance,
            kind: FrameKind::Ws,
            conn: 0,
            recv_ts_ns: 1,
            data: data.as_bytes(),
        };
        dec.decode(&f, out)
    }

    /// A decoder whose BTCUSDT book is synced at update id 100.
    fn synced() -> Decoder {
        let mut dec = Decoder::default();
        let mut out = Vec::new();
        let snapshot = Frame {
            venue: Venue::Binance,
            kind: FrameKind::RestDepth { symbol: b"BTCUSDT" },
            conn: 0,
            recv_ts_ns: 0,
            data: br#"{"lastUpdateId":100,"bids":[["1.0","1"]],"asks":[["2.0","1"]]}"#,
        };
        dec.decode(&snapshot, &mut out).unwrap();
        dec
    }

    fn diff(first: u64, last: u64) -> String {
        format!(
            r#"{{"stream":"btcusdt@depth","data":{{"e":"depthUpdate","s":"BTCUSDT","U":{first},"u":{last},"b":[["1.5","3"]],"a":[]}}}}"#
        )
    }

    fn levels(out: &[Event]) -> usize {
        out.iter()
            .filter(|e| matches!(e, Event::Level { .. }))
            .count()
    }

    /// Found by the `binance` fuzz target: a diff whose frame was refused after its
    /// payload had parsed (bytes after the payload's `}`) still moved the book's sync
    /// state to its `u`, so the next diff was applied on top of levels that never were.
    #[test]
    fn a_frame_refused_after_its_payload_moves_no_sync_state() {
        let mut dec = synced();
        let mut out = Vec::new();
        let torn = diff(101, 102).replace("}}", "}\u{ff}}");
        assert!(ws(&mut dec, &torn, &mut out).is_err());
        assert!(out.is_empty(), "{out:?}");
        // 103 does not follow 100: a gap, the book goes stale and nothing is applied.
        ws(&mut dec, &diff(103, 104), &mut out).unwrap();
        assert_eq!(levels(&out), 0, "{out:?}");
        assert!(out.contains(&Event::Stale {
            inst: crate::InstId(0),
            stale: true
        }));
        assert_eq!(dec.stats().gaps, 1);

        // A refused frame that would have been a gap leaves the book synced, not
        // silently buffering.
        let mut dec = synced();
        let torn = diff(105, 106) + " x";
        assert!(ws(&mut dec, &torn, &mut out).is_err());
        ws(&mut dec, &diff(101, 102), &mut out).unwrap();
        assert_eq!(levels(&out), 1, "{out:?}");
        assert_eq!(dec.stats().gaps, 0);
    }

    /// One frame carries one payload: a second `data` would be decided against a sync
    /// state the first has not moved yet.
    #[test]
    fn a_second_payload_is_refused() {
        let mut dec = synced();
        let mut out = Vec::new();
        let two = diff(101, 102).replace(
            "}}",
            r#"},"data":{"e":"depthUpdate","s":"BTCUSDT","U":103,"u":104,"b":[],"a":[]}}"#,
        );
        let e = ws(&mut dec, &two, &mut out).unwrap_err();
        assert_eq!(e.field, "data");
        ws(&mut dec, &diff(101, 102), &mut out).unwrap();
        assert_eq!(levels(&out), 1, "{out:?}");
    }
}
