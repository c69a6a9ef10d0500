//! MD messages: the normalized [`Event`]s of one instrument in a compact little-endian
//! binary form, for scale-out. The ingest host that holds the lease publishes them; a
//! mirror decodes them with [`decode_events`] and applies them through the same
//! [`Market::apply`](crate::Market::apply), after loading the instrument's latest
//! [checkpoint](crate::checkpoint), so it ends with exactly the publisher's state.
//!
//! Not JSON: every field is a fixed-width little-endian integer, with no padding and no
//! alignment, so a level update is 18 bytes.
//!
//! # Message
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version: [`WIRE_VERSION`] (a decoder refuses any other) |
//! | … | zero or more records, each a tag byte and a fixed-width body (below) |
//! | 1 | the end record: tag `0` |
//!
//! The end record makes every truncated message an error: without it a message cut at
//! a record boundary would decode as a shorter valid one (losing, say, its commit).
//! Nothing may follow it.
//!
//! A message is about one instrument, which the records do not name: the transport
//! does (subject or header), and [`decode_events`] is given the [`InstId`] the mirror's
//! market knows the instrument by. [`Event::Define`] is not a record: definitions travel
//! in checkpoints and message headers ([`encode_event`] skips it).
//!
//! # Records
//!
//! Offsets are from the tag byte. `i64`/`u64` are 8 bytes little-endian, prices and
//! sizes are the [`Price`]/[`Qty`] mantissas at the instrument's scale, times are Unix ns.
//!
//! **Tag 1, [`Event::Snapshot`]** (1 byte): the tag only.
//!
//! **Tag 2, [`Event::Level`]** (18 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | tag `2` |
//! | 1 | 1 | side: `0` bid, `1` ask ([`Side`] code) |
//! | 2 | 8 | price, `i64` |
//! | 10 | 8 | qty, `i64` (0 deletes the level) |
//!
//! **Tag 3, [`Event::Commit`]** (25 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | tag `3` |
//! | 1 | 8 | update_id, `u64` |
//! | 9 | 8 | exch_ts_ns, `i64` |
//! | 17 | 8 | recv_ts_ns, `i64` |
//!
//! **Tag 4, [`Event::Quote`]** (49 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | tag `4` |
//! | 1 | 8 | update_id, `u64` |
//! | 9 | 8 | bid_px, `i64` |
//! | 17 | 8 | bid_qty, `i64` |
//! | 25 | 8 | ask_px, `i64` |
//! | 33 | 8 | ask_qty, `i64` |
//! | 41 | 8 | recv_ts_ns, `i64` |
//!
//! **Tag 5, [`Event::Trade`]** (34 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | tag `5` |
//! | 1 | 1 | side: `0` unknown, `1` buy, `2` sell ([`TradeSide`] code) |
//! | 2 | 8 | trade_id, `u64` |
//! | 10 | 8 | price, `i64` |
//! | 18 | 8 | qty, `i64` |
//! | 26 | 8 | ts_ns, `i64` |
//!
//! **Tag 6, [`Event::Derivs`]** (41 bytes); the prices and the rate at
//! [`DERIV_DECIMALS`](crate::event::DERIV_DECIMALS)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | tag `6` |
//! | 1 | 8 | mark_px, `i64` |
//! | 9 | 8 | index_px, `i64` |
//! | 17 | 8 | funding_rate, `i64` |
//! | 25 | 8 | next_funding_ns, `i64` |
//! | 33 | 8 | ts_ns, `i64` |
//!
//! **Tag 7, [`Event::Liquidation`]** (26 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | tag `7` |
//! | 1 | 1 | side: `0` unknown, `1` buy, `2` sell |
//! | 2 | 8 | price, `i64` |
//! | 10 | 8 | qty, `i64` |
//! | 18 | 8 | ts_ns, `i64` |
//!
//! **Tag 8, [`Event::Stale`]** (2 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | tag `8` |
//! | 1 | 1 | stale: `0` false, `1` true |
//!
//! Any other tag, a side or flag byte outside its codes, a record cut short, a missing
//! end record or bytes after it is a [`WireError`] naming the record (index from 0),
//! the byte offset in the message and the field.
//!
//! ```
//! use hermes_book::event::{Event, InstId};
//! use hermes_book::wire::{decode_events, encode_events};
//! use hermes_book::{Price, Qty, Side};
//!
//! let inst = InstId(0);
//! let events = [
//!     Event::Level { inst, side: Side::Bid, price: Price(10_000), qty: Qty(3) },
//!     Event::Commit { inst, update_id: 7, exch_ts_ns: 0, recv_ts_ns: 1_000 },
//! ];
//! let mut msg = Vec::new();
//! assert_eq!(encode_events(&events, &mut msg), 2);
//! assert_eq!(msg.len(), 1 + 18 + 25 + 1);
//! // The mirror knows the instrument by another id.
//! let mut got = Vec::new();
//! assert_eq!(decode_events(&msg, InstId(4), |ev| got.push(ev)), Ok(2));
//! assert_eq!(got[1], events[1].with_inst(InstId(4)));
//! assert!(decode_events(&msg[..msg.len() - 1], inst, |_| {}).is_err());
//! ```

use crate::event::{Event, InstId, TradeSide};
use crate::{Price, Qty, Side};

/// The version byte that starts every MD message.
pub const WIRE_VERSION: u8 = 1;

const TAG_END: u8 = 0;
const TAG_SNAPSHOT: u8 = 1;
const TAG_LEVEL: u8 = 2;
const TAG_COMMIT: u8 = 3;
const TAG_QUOTE: u8 = 4;
const TAG_TRADE: u8 = 5;
const TAG_DERIVS: u8 = 6;
const TAG_LIQUIDATION: u8 = 7;
const TAG_STALE: u8 = 8;

/// Why an MD message or a checkpoint was refused. The message names the record (for MD
/// messages), the byte offset and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer is empty: not even a version byte.
    #[error("empty {what}: no version byte")]
    Empty {
        /// `"MD message"` or `"checkpoint"`.
        what: &'static str,
    },
    /// The version byte (offset 0) is not one this build reads.
    #[error(
        "{what} version {found} at byte 0 is not supported (this build reads version {supported})"
    )]
    Version {
        /// `"MD message"` or `"checkpoint"`.
        what: &'static str,
        /// The version in the buffer.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// An MD record's tag is not a known record type.
    #[error("MD record {record} at byte {offset}: unknown tag {tag}")]
    UnknownTag {
        /// Index of the record in the message, from 0.
        record: usize,
        /// Offset of its tag byte.
        offset: usize,
        /// The tag.
        tag: u8,
    },
    /// An MD record's body is cut short or holds a bad value.
    #[error("MD record {record} ({kind}) at byte {offset}: {error}")]
    Record {
        /// Index of the record in the message, from 0.
        record: usize,
        /// Offset of its tag byte.
        offset: usize,
        /// The record type (`"level"`, `"trade"`, …).
        kind: &'static str,
        /// What is wrong, and where.
        error: FieldError,
    },
    /// An MD message ends without its end record: it was truncated.
    #[error(
        "MD message truncated: it ends at byte {offset}, after {records} records, \
         without its end record"
    )]
    Unterminated {
        /// Complete records before the end of the buffer.
        records: usize,
        /// The buffer's length.
        offset: usize,
    },
    /// A checkpoint field is cut short or holds a bad value.
    #[error("checkpoint: {0}")]
    Checkpoint(FieldError),
    /// Bytes follow the end of the message or checkpoint.
    #[error("{what}: {left} unexpected bytes after its end at byte {offset}")]
    Trailing {
        /// `"MD message"` or `"checkpoint"`.
        what: &'static str,
        /// Where the message or checkpoint ended.
        offset: usize,
        /// How many bytes follow.
        left: usize,
    },
}

/// One field of a record or checkpoint that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// The buffer ends inside the field.
    #[error("truncated at `{field}`: it needs {need} bytes at byte {offset}, {left} left")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Its offset in the buffer.
        offset: usize,
        /// Its size.
        need: usize,
        /// Bytes left in the buffer at `offset`.
        left: usize,
    },
    /// The field holds a value outside its range.
    #[error("bad `{field}` at byte {offset}: {value}, expected {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its offset in the buffer.
        offset: usize,
        /// The value read.
        value: i128,
        /// What it may be.
        expected: &'static str,
    },
}

impl FieldError {
    /// The byte offset of the field in the buffer.
    pub fn offset(&self) -> usize {
        match *self {
            FieldError::Truncated { offset, .. } | FieldError::Invalid { offset, .. } => offset,
        }
    }
}

/// Starts an MD message in `out`: appends the version byte.
pub fn begin_message(out: &mut Vec<u8>) {
    out.push(WIRE_VERSION);
}

/// Ends an MD message in `out`: appends the end record.
pub fn end_message(out: &mut Vec<u8>) {
    out.push(TAG_END);
}

/// Appends one record for `ev` to `out` (between [`begin_message`] and
/// [`end_message`]). Returns `false`, appending nothing, for [`Event::Define`], which is
/// not an MD record. The record does not name the instrument.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) -> bool {
    match *ev {
        Event::Define { .. } => return false,
        Event::Snapshot { inst: _ } => out.push(TAG_SNAPSHOT),
        Event::Level {
            inst: _,
            side,
            price,
            qty,
        } => {
            out.push(TAG_LEVEL);
            out.push(side as u8);
            put_i64(out, price.0);
            put_i64(out, qty.0);
        }
        Event::Commit {
            inst: _,
            update_id,
            exch_ts_ns,
            recv_ts_ns,
        } => {
            out.push(TAG_COMMIT);
            put_u64(out, update_id);
            put_i64(out, exch_ts_ns);
            put_i64(out, recv_ts_ns);
        }
        Event::Quote {
            inst: _,
            update_id,
            bid_px,
            bid_qty,
            ask_px,
            ask_qty,
            recv_ts_ns,
        } => {
            out.push(TAG_QUOTE);
            put_u64(out, update_id);
            put_i64(out, bid_px.0);
            put_i64(out, bid_qty.0);
            put_i64(out, ask_px.0);
            put_i64(out, ask_qty.0);
            put_i64(out, recv_ts_ns);
        }
        Event::Trade {
            inst: _,
            side,
            trade_id,
            price,
            qty,
            ts_ns,
        } => {
            out.push(TAG_TRADE);
            out.push(side as u8);
            put_u64(out, trade_id);
            put_i64(out, price.0);
            put_i64(out, qty.0);
            put_i64(out, ts_ns);
        }
        Event::Derivs {
            inst: _,
            mark_px,
            index_px,
            funding_rate,
            next_funding_ns,
            ts_ns,
        } => {
            out.push(TAG_DERIVS);
            put_i64(out, mark_px);
            put_i64(out, index_px);
            put_i64(out, funding_rate);
            put_i64(out, next_funding_ns);
            put_i64(out, ts_ns);
        }
        Event::Liquidation {
            inst: _,
            side,
            price,
            qty,
            ts_ns,
        } => {
            out.push(TAG_LIQUIDATION);
            out.push(side as u8);
            put_i64(out, price.0);
            put_i64(out, qty.0);
            put_i64(out, ts_ns);
        }
        Event::Stale { inst: _, stale } => {
            out.push(TAG_STALE);
            out.push(stale as u8);
        }
    }
    true
}

/// Appends a whole MD message holding `events` (all of one instrument) to `out` and
/// returns the number of records written ([`Event::Define`]s are skipped).
pub fn encode_events<'a>(events: impl IntoIterator<Item = &'a Event>, out: &mut Vec<u8>) -> usize {
    begin_message(out);
    let n = events
        .into_iter()
        .filter(|ev| encode_event(ev, out))
        .count();
    end_message(out);
    n
}

/// Decodes the MD message `buf`, calling `f` with each record's event, in order, about
/// instrument `inst`, and returns the number of events.
///
/// All or nothing: the whole message is checked before the first call of `f`, so when
/// it is refused `f` is never called and the mirror's state stays at a message
/// boundary.
pub fn decode_events(
    buf: &[u8],
    inst: InstId,
    mut f: impl FnMut(Event),
) -> Result<usize, WireError> {
    walk(buf, inst, |_| {})?;
    walk(buf, inst, &mut f)
}

/// Reads every record of `buf`, calling `f` as it goes.
fn walk(buf: &[u8], inst: InstId, mut f: impl FnMut(Event)) -> Result<usize, WireError> {
    const WHAT: &str = "MD message";
    let mut r = Reader::new(buf);
    read_version(&mut r, WHAT, WIRE_VERSION)?;
    let mut record = 0;
    loop {
        let offset = r.pos();
        let Some(tag) = r.next_byte() else {
            return Err(WireError::Unterminated {
                records: record,
                offset,
            });
        };
        if tag == TAG_END {
            break;
        }
        let Some(kind) = kind(tag) else {
            return Err(WireError::UnknownTag {
                record,
                offset,
                tag,
            });
        };
        let ev = read_record(&mut r, tag, inst).map_err(|error| WireError::Record {
            record,
            offset,
            kind,
            error,
        })?;
        f(ev);
        record += 1;
    }
    r.finish(WHAT)?;
    Ok(record)
}

/// The record type of a tag, `None` for an unknown tag (or the end tag).
fn kind(tag: u8) -> Option<&'static str> {
    Some(match tag {
        TAG_SNAPSHOT => "snapshot",
        TAG_LEVEL => "level",
        TAG_COMMIT => "commit",
        TAG_QUOTE => "quote",
        TAG_TRADE => "trade",
        TAG_DERIVS => "derivs",
        TAG_LIQUIDATION => "liquidation",
        TAG_STALE => "stale",
        _ => return None,
    })
}

/// The body of a record whose tag (already read) is `tag`, a known one.
fn read_record(r: &mut Reader<'_>, tag: u8, inst: InstId) -> Result<Event, FieldError> {
    // Struct fields are evaluated in the order written: the wire order.
    Ok(match tag {
        TAG_LEVEL => Event::Level {
            inst,
            side: r.side("side")?,
            price: Price(r.i64("price")?),
            qty: Qty(r.i64("qty")?),
        },
        TAG_COMMIT => Event::Commit {
            inst,
            update_id: r.u64("update_id")?,
            exch_ts_ns: r.i64("exch_ts_ns")?,
            recv_ts_ns: r.i64("recv_ts_ns")?,
        },
        TAG_QUOTE => Event::Quote {
            inst,
            update_id: r.u64("update_id")?,
            bid_px: Price(r.i64("bid_px")?),
            bid_qty: Qty(r.i64("bid_qty")?),
            ask_px: Price(r.i64("ask_px")?),
            ask_qty: Qty(r.i64("ask_qty")?),
            recv_ts_ns: r.i64("recv_ts_ns")?,
        },
        TAG_TRADE => Event::Trade {
            inst,
            side: r.trade_side("side")?,
            trade_id: r.u64("trade_id")?,
            price: Price(r.i64("price")?),
            qty: Qty(r.i64("qty")?),
            ts_ns: r.i64("ts_ns")?,
        },
        TAG_DERIVS => Event::Derivs {
            inst,
            mark_px: r.i64("mark_px")?,
            index_px: r.i64("index_px")?,
            funding_rate: r.i64("funding_rate")?,
            next_funding_ns: r.i64("next_funding_ns")?,
            ts_ns: r.i64("ts_ns")?,
        },
        TAG_LIQUIDATION => Event::Liquidation {
            inst,
            side: r.trade_side("side")?,
            price: Price(r.i64("price")?),
            qty: Qty(r.i64("qty")?),
            ts_ns: r.i64("ts_ns")?,
        },
        TAG_STALE => Event::Stale {
            inst,
            stale: r.flag("stale")?,
        },
        // TAG_SNAPSHOT; `walk` refuses unknown tags before this.
        _ => Event::Snapshot { inst },
    })
}

/// Reads and checks the version byte that starts a buffer.
pub(crate) fn read_version(
    r: &mut Reader<'_>,
    what: &'static str,
    supported: u8,
) -> Result<(), WireError> {
    match r.next_byte() {
        None => Err(WireError::Empty { what }),
        Some(v) if v == supported => Ok(()),
        Some(found) => Err(WireError::Version {
            what,
            found,
            supported,
        }),
    }
}

/// Appends a `u32`, little-endian.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `u64`, little-endian.
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends an `i64`, little-endian.
pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends an `f64` as its IEEE 754 bits, little-endian (exact, NaNs included).
pub(crate) fn put_f64(out: &mut Vec<u8>, v: f64) {
    put_u64(out, v.to_bits());
}

/// Appends an `Option<i64>`: `0`, or `1` and the value.
pub(crate) fn put_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => out.push(0),
        Some(x) => {
            out.push(1);
            put_i64(out, x);
        }
    }
}

/// A cursor over a buffer whose reads fail with the field's name and offset, never
/// panic.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The offset of the next byte.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(crate) fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next byte, `None` at the end.
    fn next_byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Checks that nothing is left.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), WireError> {
        match self.left() {
            0 => Ok(()),
            left => Err(WireError::Trailing {
                what,
                offset: self.pos,
                left,
            }),
        }
    }

    /// `field` is `need` bytes here, which the buffer does not hold.
    pub(crate) fn truncated(&self, field: &'static str, need: usize) -> FieldError {
        FieldError::Truncated {
            field,
            offset: self.pos,
            need,
            left: self.left(),
        }
    }

    /// The next `n` bytes, as `field`.
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FieldError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.truncated(field, n))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FieldError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, field)?);
        Ok(a)
    }

    /// A byte.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FieldError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A little-endian `u32`.
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FieldError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// A little-endian `u64`.
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, FieldError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A little-endian `i64`.
    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, FieldError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    /// An `f64` from its little-endian bits.
    pub(crate) fn f64(&mut self, field: &'static str) -> Result<f64, FieldError> {
        Ok(f64::from_bits(self.u64(field)?))
    }

    /// A byte that must be `0` or `1`.
    pub(crate) fn flag(&mut self, field: &'static str) -> Result<bool, FieldError> {
        let at = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(invalid(field, at, v, "0 or 1")),
        }
    }

    /// An `Option<i64>` as [`put_opt_i64`] writes it.
    pub(crate) fn opt_i64(&mut self, field: &'static str) -> Result<Option<i64>, FieldError> {
        Ok(match self.flag(field)? {
            true => Some(self.i64(field)?),
            false => None,
        })
    }

    /// A [`Side`] code.
    pub(crate) fn side(&mut self, field: &'static str) -> Result<Side, FieldError> {
        let at = self.pos;
        match self.u8(field)? {
            0 => Ok(Side::Bid),
            1 => Ok(Side::Ask),
            v => Err(invalid(field, at, v, "0 (bid) or 1 (ask)")),
        }
    }

    /// A [`TradeSide`] code.
    pub(crate) fn trade_side(&mut self, field: &'static str) -> Result<TradeSide, FieldError> {
        let at = self.pos;
        match self.u8(field)? {
            0 => Ok(TradeSide::Unknown),
            1 => Ok(TradeSide::Buy),
            2 => Ok(TradeSide::Sell),
            v => Err(invalid(field, at, v, "0 (unknown), 1 (buy) or 2 (sell)")),
        }
    }
}

/// `field` at `offset` holds `value`, outside `expected`.
pub(crate) fn invalid(
    field: &'static str,
    offset: usize,
    value: impl Into<i128>,
    expected: &'static str,
) -> FieldError {
    FieldError::Invalid {
        field,
        offset,
        value: value.into(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const I: InstId = InstId(3);

    /// One event of every MD variant, with extreme values, and its record size.
    fn every_variant() -> Vec<(Event, usize)> {
        let inst = I;
        vec![
            (Event::Snapshot { inst }, 1),
            (
                Event::Level {
                    inst,
                    side: Side::Ask,
                    price: Price(i64::MIN),
                    qty: Qty(i64::MAX),
                },
                18,
            ),
            (
                Event::Level {
                    inst,
                    side: Side::Bid,
                    price: Price(-1),
                    qty: Qty(0),
                },
                18,
            ),
            (
                Event::Commit {
                    inst,
                    update_id: u64::MAX,
                    exch_ts_ns: i64::MIN,
                    recv_ts_ns: 1,
                },
                25,
            ),
            (
                Event::Quote {
                    inst,
                    update_id: 1 << 63,
                    bid_px: Price(1),
                    bid_qty: Qty(2),
                    ask_px: Price(3),
                    ask_qty: Qty(-4),
                    recv_ts_ns: i64::MAX,
                },
                49,
            ),
            (
                Event::Trade {
                    inst,
                    side: TradeSide::Sell,
                    trade_id: 42,
                    price: Price(5),
                    qty: Qty(6),
                    ts_ns: -7,
                },
                34,
            ),
            (
                Event::Trade {
                    inst,
                    side: TradeSide::Unknown,
                    trade_id: 0,
                    price: Price(0),
                    qty: Qty(0),
                    ts_ns: 0,
                },
                34,
            ),
            (
                Event::Derivs {
                    inst,
                    mark_px: 1,
                    index_px: -2,
                    funding_rate: 3,
                    next_funding_ns: i64::MIN,
                    ts_ns: i64::MAX,
                },
                41,
            ),
            (
                Event::Liquidation {
                    inst,
                    side: TradeSide::Buy,
                    price: Price(9),
                    qty: Qty(8),
                    ts_ns: 7,
                },
                26,
            ),
            (Event::Stale { inst, stale: true }, 2),
            (Event::Stale { inst, stale: false }, 2),
        ]
    }

    fn decode_all(buf: &[u8], inst: InstId) -> Result<Vec<Event>, WireError> {
        let mut got = Vec::new();
        let n = decode_events(buf, inst, |ev| got.push(ev))?;
        assert_eq!(n, got.len());
        Ok(got)
    }

    fn message(events: &[Event]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_events(events, &mut buf);
        buf
    }

    #[test]
    fn every_variant_round_trips_at_its_documented_size() {
        for (ev, size) in every_variant() {
            let mut rec = Vec::new();
            assert!(encode_event(&ev, &mut rec));
            assert_eq!(rec.len(), size, "{ev:?}");
            let buf = message(&[ev]);
            assert_eq!(buf.len(), size + 2);
            assert_eq!(decode_all(&buf, I).unwrap(), vec![ev]);
            // The decoder's id is the one the events get.
            assert_eq!(
                decode_all(&buf, InstId(0)).unwrap(),
                vec![ev.with_inst(InstId(0))]
            );
        }
        let all: Vec<Event> = every_variant().into_iter().map(|(ev, _)| ev).collect();
        assert_eq!(decode_all(&message(&all), I).unwrap(), all);
    }

    #[test]
    fn layout_is_as_documented() {
        let inst = I;
        let events = [
            Event::Level {
                inst,
                side: Side::Ask,
                price: Price(0x0102_0304_0506_0708),
                qty: Qty(-2),
            },
            Event::Trade {
                inst,
                side: TradeSide::Sell,
                trade_id: 0x11,
                price: Price(0x22),
                qty: Qty(0x33),
                ts_ns: 0x44,
            },
            Event::Stale { inst, stale: true },
        ];
        let mut want = vec![WIRE_VERSION];
        want.extend([2, 1, 8, 7, 6, 5, 4, 3, 2, 1]);
        want.extend([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        want.extend([5, 2]);
        for v in [0x11u8, 0x22, 0x33, 0x44] {
            want.extend([v, 0, 0, 0, 0, 0, 0, 0]);
        }
        want.extend([8, 1, 0]);
        assert_eq!(message(&events), want);
        assert_eq!(message(&[]), vec![WIRE_VERSION, 0]);
    }

    #[test]
    fn define_is_not_a_record() {
        let define = Event::Define {
            inst: I,
            venue: crate::Venue::Binance,
            symbol: crate::Symbol::new(b"BTCUSDT").unwrap(),
            scale: crate::Scale::default(),
        };
        let mut out = vec![9];
        assert!(!encode_event(&define, &mut out));
        assert_eq!(out, vec![9]);
        let stale = Event::Stale {
            inst: I,
            stale: true,
        };
        let buf = message(&[define, stale]);
        assert_eq!(decode_all(&buf, I).unwrap(), vec![stale]);
    }

    #[test]
    fn every_truncation_is_refused_and_emits_nothing() {
        let all: Vec<Event> = every_variant().into_iter().map(|(ev, _)| ev).collect();
        let buf = message(&all);
        for len in 0..buf.len() {
            let mut emitted = 0;
            let err = decode_events(&buf[..len], I, |_| emitted += 1).unwrap_err();
            assert_eq!(emitted, 0, "cut at {len}: {err}");
            match err {
                WireError::Empty { .. } => assert_eq!(len, 0),
                WireError::Unterminated { offset, .. } => assert_eq!(offset, len),
                WireError::Record {
                    error:
                        FieldError::Truncated {
                            offset, need, left, ..
                        },
                    ..
                } => assert!(offset <= len && left == len - offset && need > left),
                e => panic!("cut at {len}: unexpected {e}"),
            }
        }
    }

    #[test]
    fn errors_name_the_record_offset_and_field() {
        let ev = |stale| Event::Stale { inst: I, stale };
        let base = message(&[ev(true), ev(false), ev(true)]);
        // Bytes: 0 version, 1-2, 3-4, 5-6 records, 7 end.
        let e = decode_all(&[2, 0], I).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MD message version 2 at byte 0 is not supported (this build reads version 1)"
        );
        assert_eq!(
            decode_all(&[], I).unwrap_err().to_string(),
            "empty MD message: no version byte"
        );

        let mut bad = base.clone();
        bad[3] = 0x63;
        assert_eq!(
            decode_all(&bad, I).unwrap_err(),
            WireError::UnknownTag {
                record: 1,
                offset: 3,
                tag: 0x63
            }
        );
        assert_eq!(
            decode_all(&bad, I).unwrap_err().to_string(),
            "MD record 1 at byte 3: unknown tag 99"
        );

        let mut bad = base.clone();
        bad[6] = 2;
        assert_eq!(
            decode_all(&bad, I).unwrap_err().to_string(),
            "MD record 2 (stale) at byte 5: bad `stale` at byte 6: 2, expected 0 or 1"
        );

        let lvl = Event::Level {
            inst: I,
            side: Side::Bid,
            price: Price(1),
            qty: Qty(1),
        };
        let mut bad = message(&[lvl]);
        bad[2] = 7;
        assert_eq!(
            decode_all(&bad, I).unwrap_err().to_string(),
            "MD record 0 (level) at byte 1: bad `side` at byte 2: 7, expected 0 (bid) or 1 (ask)"
        );
        let cut = &message(&[lvl])[..15];
        assert_eq!(
            decode_all(cut, I).unwrap_err().to_string(),
            "MD record 0 (level) at byte 1: truncated at `qty`: it needs 8 bytes at byte 11, 4 left"
        );
        let trade = Event::Trade {
            inst: I,
            side: TradeSide::Buy,
            trade_id: 1,
            price: Price(1),
            qty: Qty(1),
            ts_ns: 1,
        };
        let mut bad = message(&[trade]);
        bad[2] = 3;
        assert!(matches!(
            decode_all(&bad, I).unwrap_err(),
            WireError::Record {
                kind: "trade",
                error: FieldError::Invalid {
                    field: "side",
                    offset: 2,
                    value: 3,
                    ..
                },
                ..
            }
        ));

        let cut = &base[..7];
        assert_eq!(
            decode_all(cut, I).unwrap_err().to_string(),
            "MD message truncated: it ends at byte 7, after 3 records, without its end record"
        );
        let mut long = base.clone();
        long.extend([0, 0]);
        assert_eq!(
            decode_all(&long, I).unwrap_err().to_string(),
            "MD message: 2 unexpected bytes after its end at byte 8"
        );
    }

    fn any_event() -> impl Strategy<Value = Event> {
        let inst = I;
        let ts = trade_side();
        prop_oneof![
            Just(Event::Snapshot { inst }),
            (any::<bool>(), any::<i64>(), any::<i64>()).prop_map(move |(ask, p, q)| {
                Event::Level {
                    inst,
                    side: if ask { Side::Ask } else { Side::Bid },
                    price: Price(p),
                    qty: Qty(q),
                }
            }),
            (any::<u64>(), any::<i64>(), any::<i64>()).prop_map(move |(u, e, r)| Event::Commit {
                inst,
                update_id: u,
                exch_ts_ns: e,
                recv_ts_ns: r,
            }),
            (any::<u64>(), any::<[i64; 5]>()).prop_map(move |(u, [a, b, c, d, t])| {
                Event::Quote {
                    inst,
                    update_id: u,
                    bid_px: Price(a),
                    bid_qty: Qty(b),
                    ask_px: Price(c),
                    ask_qty: Qty(d),
                    recv_ts_ns: t,
                }
            }),
            (ts.clone(), any::<u64>(), any::<[i64; 3]>()).prop_map(move |(side, id, [p, q, t])| {
                Event::Trade {
                    inst,
                    side,
                    trade_id: id,
                    price: Price(p),
                    qty: Qty(q),
                    ts_ns: t,
                }
            }),
            any::<[i64; 5]>().prop_map(move |[a, b, c, d, t]| Event::Derivs {
                inst,
                mark_px: a,
                index_px: b,
                funding_rate: c,
                next_funding_ns: d,
                ts_ns: t,
            }),
            (ts, any::<[i64; 3]>()).prop_map(move |(side, [p, q, t])| Event::Liquidation {
                inst,
                side,
                price: Price(p),
                qty: Qty(q),
                ts_ns: t,
            }),
            any::<bool>().prop_map(move |stale| Event::Stale { inst, stale }),
        ]
    }

    fn trade_side() -> impl Strategy<Value = TradeSide> + Clone {
        prop_oneof![
            Just(TradeSide::Unknown),
            Just(TradeSide::Buy),
            Just(TradeSide::Sell)
        ]
    }

    /// Events per generated message: fewer under Miri, which runs these tests about
    /// 1,000 times slower (CI's Miri smoke run has minutes, not hours).
    const MAX_EVENTS: usize = if cfg!(miri) { 16 } else { 64 };

    proptest! {
        /// Random sequences of every MD variant come back equal, in order.
        #[test]
        fn random_sequences_round_trip(events in proptest::collection::vec(any_event(), 0..MAX_EVENTS)) {
            let buf = message(&events);
            prop_assert_eq!(decode_all(&buf, I).unwrap(), events);
        }

        /// Any cut of a random message is refused, emitting nothing.
        #[test]
        fn random_truncations_are_refused(
            events in proptest::collection::vec(any_event(), 0..16),
            cut in any::<proptest::sample::Index>(),
        ) {
            let buf = message(&events);
            let len = cut.index(buf.len());
            let mut emitted = 0;
            prop_assert!(decode_events(&buf[..len], I, |_| emitted += 1).is_err());
            prop_assert_eq!(emitted, 0);
        }

        /// Arbitrary bytes are decoded or refused, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(mut buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(b) = buf.first_mut() {
                *b = WIRE_VERSION;
            }
            let _ = decode_events(&buf, I, |_| {});
        }
    }
}
