//! Coinbase Advanced Trade frames (`wss://advanced-trade-ws.coinbase.com`).
//!
//! Envelope: `{"channel", "client_id"?, "timestamp", "sequence_num", "events":[…]}`, one
//! `sequence_num` counter per connection across all channels. Any missing number is a
//! gap: every level-2 book on that connection is marked stale until its next snapshot.
//! A number at or below the last one seen is a duplicate or stale frame: skipped and
//! counted.
//!
//! Channels: `l2_data` (snapshot/update of `{side: bid|offer, event_time, price_level,
//! new_quantity}`), `market_trades`, `ticker`/`ticker_batch`, `heartbeats`,
//! `subscriptions`, `candles` and `status` (understood, no effect), and error frames
//! `{"type":"error","message":…}`.

use hermes_book::{Price, Qty, Side};

use crate::decoder::{dec, DecodeError, Decoder, ErrorKind, FieldExt, Frame};
use crate::event::{Event, InstId, TradeSide, Venue};
use crate::json::{parse_rfc3339_ns, Scanner};
use crate::venue::{json_list, Resync, VenueProtocol};

/// Per-connection sequence state.
#[derive(Debug, Default)]
pub(crate) struct CoinbaseState {
    /// (connection id, last sequence seen, level-2 instruments on it).
    conns: Vec<(u16, Option<u64>, Vec<InstId>)>,
    /// The frame being decoded is level-2 and its sequence number was consumed.
    l2_accepted: bool,
}

impl CoinbaseState {
    fn conn(&mut self, id: u16) -> usize {
        match self.conns.iter().position(|c| c.0 == id) {
            Some(i) => i,
            None => {
                self.conns.push((id, None, Vec::new()));
                self.conns.len() - 1
            }
        }
    }

    /// Forgets a connection's sequence (a new connection starts again at 0).
    pub(crate) fn reset(&mut self, id: u16) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.0 == id) {
            c.1 = None;
        }
    }
}

/// The Coinbase Advanced Trade protocol.
pub(crate) struct CoinbaseAdvanced;

/// One subscribe (or unsubscribe) message per channel, as Advanced Trade wants.
fn advanced_msg(kind: &str, channel: &str, products: &[String]) -> String {
    format!(
        r#"{{"type":"{kind}","product_ids":{},"channel":"{channel}"}}"#,
        json_list(products)
    )
}

impl VenueProtocol for CoinbaseAdvanced {
    fn venue(&self) -> Venue {
        Venue::Coinbase
    }

    fn config_key(&self) -> &'static str {
        "coinbase"
    }

    fn instruments_key(&self) -> &'static str {
        "products"
    }

    fn default_ws_url(&self) -> &'static str {
        "wss://advanced-trade-ws.coinbase.com"
    }

    fn default_rest_url(&self) -> Option<&'static str> {
        None
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["level2", "market_trades", "heartbeats"]
    }

    fn connect_url(&self, ws_url: &str, _: &[String], _: &[String]) -> String {
        ws_url.to_string()
    }

    fn subscribe(&self, products: &[String], channels: &[String]) -> Vec<String> {
        channels
            .iter()
            .map(|ch| advanced_msg("subscribe", ch, products))
            .collect()
    }

    fn resync(&self) -> Resync {
        Resync::Resubscribe
    }

    fn resubscribe(&self, products: &[String], _: &[String]) -> Vec<String> {
        ["unsubscribe", "subscribe"]
            .iter()
            .map(|kind| advanced_msg(kind, "level2", products))
            .collect()
    }

    fn binary_frames_are_text(&self) -> bool {
        true
    }

    fn decode(&self, dec: &mut Decoder, frame: &Frame<'_>) -> Result<(), DecodeError> {
        dec.decode_coinbase(frame)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Channel {
    L2,
    Trades,
    Ticker,
    Heartbeats,
    Subscriptions,
    Ignored,
}

fn channel_of(name: &[u8], offset: usize) -> Result<Channel, DecodeError> {
    Ok(match name {
        b"l2_data" => Channel::L2,
        b"market_trades" => Channel::Trades,
        b"ticker" | b"ticker_batch" => Channel::Ticker,
        b"heartbeats" => Channel::Heartbeats,
        b"subscriptions" => Channel::Subscriptions,
        b"candles" | b"status" => Channel::Ignored,
        _ => return Err(DecodeError::new(ErrorKind::UnknownType, "channel", offset)),
    })
}

/// A Coinbase error frame (`{"type":"error","message":…,"reason":…}`), Advanced Trade's
/// and the Exchange's alike.
#[derive(serde::Deserialize)]
pub(crate) struct ErrorFrame<'a> {
    #[serde(borrow)]
    pub(crate) message: Option<&'a str>,
    #[serde(borrow)]
    pub(crate) reason: Option<&'a str>,
}

impl Decoder {
    /// Resets the sequence of a connection, as after a reconnect.
    pub fn reset_coinbase_connection(&mut self, conn: u16) {
        self.cb.reset(conn);
    }

    pub(crate) fn decode_coinbase(&mut self, frame: &Frame<'_>) -> Result<(), DecodeError> {
        self.cb.l2_accepted = false;
        let r = self.decode_coinbase_frame(frame);
        if r.is_err() && self.cb.l2_accepted {
            // The frame's sequence number was consumed but its level changes were not
            // applied: the connection's books can no longer be trusted.
            let c = self.cb.conn(frame.conn);
            for k in 0..self.cb.conns[c].2.len() {
                let inst = self.cb.conns[c].2[k];
                self.sh.set_stale_now(inst);
            }
        }
        r
    }

    fn decode_coinbase_frame(&mut self, frame: &Frame<'_>) -> Result<(), DecodeError> {
        let mut s = Scanner::new(frame.data);
        s.object_begin()?;
        let mut first = true;
        let mut channel: Option<(Channel, usize)> = None;
        let mut seq: Option<u64> = None;
        let mut events_at: Option<usize> = None;
        let mut is_error = false;
        let mut handled = false;
        while let Some(k) = s.key(&mut first)? {
            let at = s.offset();
            match k {
                b"channel" => channel = Some((channel_of(s.string().field("channel")?, at)?, at)),
                b"sequence_num" => {
                    seq = Some(s.u64().map_err(|e| {
                        DecodeError::new(ErrorKind::Json(e), "sequence_num", e.offset)
                    })?)
                }
                b"type" => {
                    is_error = s.string().field("type")? == b"error";
                }
                b"events" => {
                    if let (Some((ch, _)), Some(sq)) = (channel, seq) {
                        handled = true;
                        if self.sequence(frame, ch, sq)? {
                            self.events(&mut s, frame, ch, sq)?;
                        } else {
                            s.skip()?;
                        }
                    } else {
                        events_at = Some(at);
                        s.skip()?;
                    }
                }
                _ => {
                    s.skip()?;
                }
            }
        }
        s.end()?;
        if is_error && channel.is_none() {
            let msg = sonic_rs::from_slice::<ErrorFrame<'_>>(frame.data)
                .ok()
                .and_then(|e| e.message.or(e.reason).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(frame.data).into_owned());
            self.sh.last_venue_error = Some(msg);
            return Err(DecodeError::new(ErrorKind::VenueError, "message", 0));
        }
        let Some((ch, _)) = channel else {
            return Err(DecodeError::new(ErrorKind::Missing, "channel", 0));
        };
        if handled {
            return Ok(());
        }
        let Some(sq) = seq else {
            return Err(DecodeError::new(ErrorKind::Missing, "sequence_num", 0));
        };
        if self.sequence(frame, ch, sq)? {
            if let Some(at) = events_at {
                let mut s = Scanner::at(frame.data, at);
                self.events(&mut s, frame, ch, sq)?;
            }
        }
        Ok(())
    }

    /// Checks `seq` against the connection's last; `false` = skip the frame.
    fn sequence(&mut self, frame: &Frame<'_>, ch: Channel, seq: u64) -> Result<bool, DecodeError> {
        let c = self.cb.conn(frame.conn);
        let last = self.cb.conns[c].1;
        match last {
            Some(l) if seq <= l => {
                self.sh.stats.stale_frames += 1;
                return Ok(false);
            }
            Some(l) if seq > l + 1 => {
                self.sh.stats.gaps += 1;
                // A gap is a fact whatever becomes of this frame: mark at once.
                for k in 0..self.cb.conns[c].2.len() {
                    let inst = self.cb.conns[c].2[k];
                    self.sh.set_stale_now(inst);
                }
            }
            _ => {}
        }
        self.cb.conns[c].1 = Some(seq);
        self.cb.l2_accepted = ch == Channel::L2;
        match ch {
            Channel::Heartbeats => self.sh.stats.heartbeats += 1,
            Channel::Subscriptions | Channel::Ignored => self.sh.stats.ignored += 1,
            _ => {}
        }
        Ok(true)
    }

    fn events(
        &mut self,
        s: &mut Scanner<'_>,
        frame: &Frame<'_>,
        ch: Channel,
        seq: u64,
    ) -> Result<(), DecodeError> {
        if matches!(
            ch,
            Channel::Heartbeats | Channel::Subscriptions | Channel::Ignored
        ) {
            s.skip()?;
            return Ok(());
        }
        s.array_begin()?;
        let mut first = true;
        let mut i = 0u32;
        while s.elem(&mut first)? {
            let r = match ch {
                Channel::L2 => self.l2_event(s, frame, seq),
                Channel::Trades => self.trades_event(s),
                Channel::Ticker => self.ticker_event(s, frame),
                _ => unreachable!("filtered above"),
            };
            r.map_err(|e| e.at_index(i))?;
            i += 1;
        }
        Ok(())
    }

    fn l2_event(
        &mut self,
        s: &mut Scanner<'_>,
        frame: &Frame<'_>,
        seq: u64,
    ) -> Result<(), DecodeError> {
        s.object_begin()?;
        let mut first = true;
        let mut snapshot: Option<bool> = None;
        let mut inst: Option<InstId> = None;
        let mut updates_at: Option<usize> = None;
        let mut exch_ts = 0i64;
        let mut had_updates = false;
        while let Some(k) = s.key(&mut first)? {
            let at = s.offset();
            match k {
                b"type" => {
                    snapshot = Some(match s.string().field("type")? {
                        b"snapshot" => true,
                        b"update" => false,
                        _ => return Err(DecodeError::new(ErrorKind::BadValue, "type", at)),
                    })
                }
                b"product_id" => {
                    let sym = s.string().field("product_id")?;
                    inst = Some(self.l2_instrument(sym, frame.conn, at)?);
                }
                b"updates" => match (snapshot, inst) {
                    (Some(snap), Some(id)) => {
                        exch_ts = self.l2_updates(s, id, snap)?;
                        had_updates = true;
                    }
                    _ => {
                        updates_at = Some(at);
                        s.skip()?;
                    }
                },
                _ => {
                    s.skip()?;
                }
            }
        }
        let snap = snapshot.ok_or(DecodeError::new(ErrorKind::Missing, "type", s.offset()))?;
        let id = inst.ok_or(DecodeError::new(
            ErrorKind::Missing,
            "product_id",
            s.offset(),
        ))?;
        match updates_at {
            Some(at) => exch_ts = self.l2_updates(&mut Scanner::at(s.input(), at), id, snap)?,
            None if !had_updates => {
                // An update without `updates` would be a no-op; the venue always sends it.
                return Err(DecodeError::new(ErrorKind::Missing, "updates", s.offset()));
            }
            None => {}
        }
        if snap {
            self.sh.set_stale(id, false);
        }
        self.sh.pending.push(Event::Commit {
            inst: id,
            update_id: seq,
            exch_ts_ns: exch_ts,
            recv_ts_ns: frame.recv_ts_ns,
        });
        Ok(())
    }

    fn l2_instrument(&mut self, sym: &[u8], conn: u16, at: usize) -> Result<InstId, DecodeError> {
        let id =
            self.sh
                .inst
                .resolve(Venue::Coinbase, sym, &mut self.sh.defines, "product_id", at)?;
        let c = self.cb.conn(conn);
        if !self.cb.conns[c].2.contains(&id) {
            self.cb.conns[c].2.push(id);
        }
        Ok(id)
    }

    /// Parses `updates[]`; returns the exchange time of the last one.
    fn l2_updates(
        &mut self,
        s: &mut Scanner<'_>,
        inst: InstId,
        snapshot: bool,
    ) -> Result<i64, DecodeError> {
        let scale = self.sh.inst.scale(inst);
        if snapshot {
            self.sh.pending.push(Event::Snapshot { inst });
        }
        let mut last_time: &[u8] = b"";
        s.array_begin()?;
        let mut first = true;
        let mut i = 0u32;
        while s.elem(&mut first)? {
            let r = (|| {
                s.object_begin()?;
                let mut f = true;
                let mut side = None;
                let mut price = None;
                let mut qty = None;
                while let Some(k) = s.key(&mut f)? {
                    let at = s.offset();
                    match k {
                        b"side" => {
                            side = Some(match s.string().field("side")? {
                                b"bid" => Side::Bid,
                                b"offer" | b"ask" => Side::Ask,
                                _ => return Err(DecodeError::new(ErrorKind::BadValue, "side", at)),
                            })
                        }
                        b"price_level" => {
                            price = Some(match s.fixed_string(scale.price_decimals) {
                                Some(v) => v,
                                None => dec(
                                    s.string().field("price_level")?,
                                    scale.price_decimals,
                                    "price_level",
                                    at,
                                )?,
                            })
                        }
                        b"new_quantity" => {
                            qty = Some(match s.fixed_string(scale.size_decimals) {
                                Some(v) => v,
                                None => dec(
                                    s.string().field("new_quantity")?,
                                    scale.size_decimals,
                                    "new_quantity",
                                    at,
                                )?,
                            })
                        }
                        b"event_time" => last_time = s.string().field("event_time")?,
                        _ => {
                            s.skip()?;
                        }
                    }
                }
                let at = s.offset();
                self.sh.pending.push(Event::Level {
                    inst,
                    side: side.ok_or(DecodeError::new(ErrorKind::Missing, "side", at))?,
                    price: Price(price.ok_or(DecodeError::new(
                        ErrorKind::Missing,
                        "price_level",
                        at,
                    ))?),
                    qty: Qty(qty.ok_or(DecodeError::new(
                        ErrorKind::Missing,
                        "new_quantity",
                        at,
                    ))?),
                });
                Ok(())
            })();
            r.map_err(|e: DecodeError| e.at_index(i))?;
            i += 1;
        }
        Ok(if last_time.is_empty() {
            0
        } else {
            parse_rfc3339_ns(last_time).unwrap_or(0)
        })
    }

    fn trades_event(&mut self, s: &mut Scanner<'_>) -> Result<(), DecodeError> {
        s.object_begin()?;
        let mut first = true;
        while let Some(k) = s.key(&mut first)? {
            if k != b"trades" {
                s.skip()?;
                continue;
            }
            s.array_begin()?;
            let mut f = true;
            let mut i = 0u32;
            while s.elem(&mut f)? {
                self.trade(s).map_err(|e| e.at_index(i))?;
                i += 1;
            }
        }
        Ok(())
    }

    fn trade(&mut self, s: &mut Scanner<'_>) -> Result<(), DecodeError> {
        s.object_begin()?;
        let start = s.offset();
        let mut first = true;
        let (mut sym, mut id, mut px, mut sz, mut time, mut side) =
            (None, None, None, None, None, None);
        while let Some(k) = s.key(&mut first)? {
            let at = s.offset();
            match k {
                b"product_id" => sym = Some((s.string().field("product_id")?, at)),
                b"trade_id" => {
                    let t = s.string().field("trade_id")?;
                    id = Some(parse_u64(t).ok_or(DecodeError::new(
                        ErrorKind::BadValue,
                        "trade_id",
                        at,
                    ))?);
                }
                b"price" => px = Some((s.string().field("price")?, at)),
                b"size" => sz = Some((s.string().field("size")?, at)),
                b"time" => time = Some(s.string().field("time")?),
                b"side" => {
                    side = Some(match s.string().field("side")? {
                        b"BUY" | b"buy" => TradeSide::Buy,
                        b"SELL" | b"sell" => TradeSide::Sell,
                        _ => TradeSide::Unknown,
                    })
                }
                _ => {
                    s.skip()?;
                }
            }
        }
        let miss = |f| DecodeError::new(ErrorKind::Missing, f, start);
        let (sym, at) = sym.ok_or(miss("product_id"))?;
        let inst =
            self.sh
                .inst
                .resolve(Venue::Coinbase, sym, &mut self.sh.defines, "product_id", at)?;
        let scale = self.sh.inst.scale(inst);
        let (p, pat) = px.ok_or(miss("price"))?;
        let (q, qat) = sz.ok_or(miss("size"))?;
        self.sh.pending.push(Event::Trade {
            inst,
            side: side.unwrap_or(TradeSide::Unknown),
            trade_id: id.ok_or(miss("trade_id"))?,
            price: Price(dec(p, scale.price_decimals, "price", pat)?),
            qty: Qty(dec(q, scale.size_decimals, "size", qat)?),
            ts_ns: time.and_then(parse_rfc3339_ns).unwrap_or(0),
        });
        Ok(())
    }

    fn ticker_event(&mut self, s: &mut Scanner<'_>, frame: &Frame<'_>) -> Result<(), DecodeError> {
        s.object_begin()?;
        let mut first = true;
        while let Some(k) = s.key(&mut first)? {
            if k != b"tickers" {
                s.skip()?;
                continue;
            }
            s.array_begin()?;
            let mut f = true;
            let mut i = 0u32;
            while s.elem(&mut f)? {
                self.ticker(s, frame).map_err(|e| e.at_index(i))?;
                i += 1;
            }
        }
        Ok(())
    }

    fn ticker(&mut self, s: &mut Scanner<'_>, frame: &Frame<'_>) -> Result<(), DecodeError> {
        s.object_begin()?;
        let start = s.offset();
        let mut first = true;
        let mut sym = None;
        let mut f: [Option<(&[u8], usize)>; 4] = [None; 4];
        while let Some(k) = s.key(&mut first)? {
            let at = s.offset();
            let slot = match k {
                b"product_id" => {
                    sym = Some((s.string().field("product_id")?, at));
                    continue;
                }
                b"best_bid" => 0,
                b"best_bid_quantity" => 1,
                b"best_ask" => 2,
                b"best_ask_quantity" => 3,
                _ => {
                    s.skip()?;
                    continue;
                }
            };
            const NAMES: [&str; 4] = [
                "best_bid",
                "best_bid_quantity",
                "best_ask",
                "best_ask_quantity",
            ];
            f[slot] = Some((s.string().field(NAMES[slot])?, at));
        }
        let (sym, at) = sym.ok_or(DecodeError::new(ErrorKind::Missing, "product_id", start))?;
        let inst =
            self.sh
                .inst
                .resolve(Venue::Coinbase, sym, &mut self.sh.defines, "product_id", at)?;
        // `ticker_batch` carries no best bid/ask: nothing to quote.
        let (Some(bb), Some(ba)) = (f[0], f[2]) else {
            return Ok(());
        };
        let scale = self.sh.inst.scale(inst);
        let size = |v: Option<(&[u8], usize)>, name| match v {
            Some((t, at)) => dec(t, scale.size_decimals, name, at),
            None => Ok(0),
        };
        let ev = Event::Quote {
            inst,
            update_id: 0,
            bid_px: Price(dec(bb.0, scale.price_decimals, "best_bid", bb.1)?),
            bid_qty: Qty(size(f[1], "best_bid_quantity")?),
            ask_px: Price(dec(ba.0, scale.price_decimals, "best_ask", ba.1)?),
            ask_qty: Qty(size(f[3], "best_ask_quantity")?),
            recv_ts_ns: frame.recv_ts_ns,
        };
        self.sh.pending.push(ev);
        Ok(())
    }
}

/// Parses decimal digits into a `u64`.
pub(crate) fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in t {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}
