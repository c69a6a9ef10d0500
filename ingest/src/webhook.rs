//! Webhook ticks: `POST /ingest/tick` bodies, validated and normalized by the HTTP server
//! into a canonical frame that flows through the same tap, decoder and ring as exchange
//! trades:
//!
//! `{"symbol":"BTC-USD","price":"65000.5","volume":"0.1","source":"desk-a","ts_ns":1786309548000000000,"event_id":"abc-1"}`
//!
//! The trade id is a 63-bit FNV-1a hash of `event_id` (the venue has no numeric ids), so a
//! tick replayed from the journal lands on the same `trades` row.

use hermes_book::{Price, Qty};

use crate::decoder::{dec, DecodeError, Decoder, ErrorKind, FieldExt, Frame};
use crate::event::{Event, TradeSide, Venue};
use crate::json::Scanner;

/// FNV-1a, 64 bit, top bit cleared (ids are stored as SQL `bigint`): the trade id of an
/// `event_id`.
pub fn event_trade_id(event_id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in event_id {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h & (i64::MAX as u64)
}

impl Decoder {
    pub(crate) fn decode_webhook(&mut self, frame: &Frame<'_>) -> Result<(), DecodeError> {
        let mut s = Scanner::new(frame.data);
        s.object_begin()?;
        let mut first = true;
        let (mut sym, mut px, mut vol, mut ts, mut id) = (None, None, None, None, None);
        while let Some(k) = s.key(&mut first)? {
            let at = s.offset();
            match k {
                b"symbol" => sym = Some((s.string().field("symbol")?, at)),
                b"price" => px = Some((s.string().field("price")?, at)),
                b"volume" => vol = Some((s.string().field("volume")?, at)),
                b"ts_ns" => ts = Some(s.u64().field("ts_ns")?),
                b"event_id" => id = Some(s.string().field("event_id")?),
                _ => {
                    s.skip()?;
                }
            }
        }
        s.end()?;
        let end = s.offset();
        let miss = |f| DecodeError::new(ErrorKind::Missing, f, end);
        let (sym, sat) = sym.ok_or(miss("symbol"))?;
        let inst =
            self.sh
                .inst
                .resolve(Venue::Webhook, sym, &mut self.sh.defines, "symbol", sat)?;
        let scale = self.sh.inst.scale(inst);
        let (p, pat) = px.ok_or(miss("price"))?;
        let (v, vat) = vol.ok_or(miss("volume"))?;
        let price = dec(p, scale.price_decimals, "price", pat)?;
        if price == 0 {
            return Err(DecodeError::new(ErrorKind::BadValue, "price", pat));
        }
        self.sh.pending.push(Event::Trade {
            inst,
            side: TradeSide::Unknown,
            trade_id: event_trade_id(id.ok_or(miss("event_id"))?),
            price: Price(price),
            qty: Qty(dec(v, scale.size_decimals, "volume", vat)?),
            ts_ns: ts.ok_or(miss("ts_ns"))?.min(i64::MAX as u64) as i64,
        });
        Ok(())
    }
}
