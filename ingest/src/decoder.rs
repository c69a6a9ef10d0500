//! The frame decoder: raw venue frames in, normalized fixed-point events out, with
//! sequencing (gap, duplicate and stale-frame detection) and Binance's diff-depth sync.
//!
//! A frame is all-or-nothing: its events are staged and handed to the sink only when the
//! whole frame parsed, so a bad field in the 40th level never leaves 39 levels applied.

use std::collections::HashMap;
use std::fmt;

use hermes_book::{parse_decimal, DecimalError, Scale};

use crate::binance::BinanceState;
use crate::coinbase::CoinbaseState;
use crate::coinbase_exchange::ExchangeState;
use crate::event::{Event, EventSink, InstId, Symbol, Venue};
use crate::json::JsonError;

/// What kind of raw frame this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind<'a> {
    /// A WebSocket message.
    Ws,
    /// A Binance REST depth snapshot (`/api/v3/depth`) for `symbol`.
    RestDepth {
        /// The symbol the snapshot was fetched for (the body does not name it).
        symbol: &'a [u8],
    },
}

/// One raw frame with its context.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Venue it came from.
    pub venue: Venue,
    /// WebSocket message or REST snapshot.
    pub kind: FrameKind<'a>,
    /// Connection it arrived on (sequence numbers are per connection).
    pub conn: u16,
    /// Receive time, Unix ns.
    pub recv_ts_ns: i64,
    /// The raw bytes.
    pub data: &'a [u8],
}

/// Sees every raw frame before it is decoded: the persister's journal feed. It must
/// take the frame without losing it (a bounded implementation waits, never drops).
pub trait FrameTap {
    /// One frame, in arrival order.
    fn frame(&mut self, frame: &Frame<'_>);
}

/// A tap that does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTap;

impl FrameTap for NoTap {
    #[inline]
    fn frame(&mut self, _: &Frame<'_>) {}
}

/// What went wrong in a frame. `Copy`, allocation-free; [`fmt::Display`] names the field
/// and the byte offset, and the caller adds where the frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The problem.
    pub kind: ErrorKind,
    /// The JSON field involved (`""` when none).
    pub field: &'static str,
    /// Element index within the field's array, when it is one.
    pub index: Option<u32>,
    /// Byte offset in the frame.
    pub offset: usize,
}

/// The kinds of [`DecodeError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Broken JSON.
    Json(JsonError),
    /// A number that is not exact at the instrument's scale, or overflows.
    Decimal(DecimalError),
    /// A field the message type requires is missing.
    Missing,
    /// A field has a value outside what the venue documents.
    BadValue,
    /// A symbol that is empty, not UTF-8 or longer than 32 bytes.
    BadSymbol,
    /// A Coinbase `channel` or Binance event type this decoder does not know.
    UnknownType,
    /// The venue sent an error message (see [`Decoder::last_venue_error`]).
    VenueError,
    /// More instruments than the decoder was configured for.
    TooManyInstruments,
}

impl DecodeError {
    pub(crate) fn new(kind: ErrorKind, field: &'static str, offset: usize) -> Self {
        DecodeError {
            kind,
            field,
            index: None,
            offset,
        }
    }

    pub(crate) fn at_index(mut self, i: u32) -> Self {
        self.index.get_or_insert(i);
        self
    }
}

/// Names the field of a scanner error.
pub(crate) trait FieldExt<T> {
    /// The error, attributed to `name`.
    fn field(self, name: &'static str) -> Result<T, DecodeError>;
}

impl<T> FieldExt<T> for Result<T, JsonError> {
    #[inline]
    fn field(self, name: &'static str) -> Result<T, DecodeError> {
        self.map_err(|e| DecodeError::new(ErrorKind::Json(e), name, e.offset))
    }
}

impl From<JsonError> for DecodeError {
    fn from(e: JsonError) -> Self {
        DecodeError::new(ErrorKind::Json(e), "", e.offset)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Json(e) => write!(f, "{e}")?,
            ErrorKind::Decimal(e) => write!(f, "bad number: {e}")?,
            ErrorKind::Missing => write!(f, "required field missing")?,
            ErrorKind::BadValue => write!(f, "unexpected value")?,
            ErrorKind::BadSymbol => write!(f, "symbol empty, not UTF-8, or over 32 bytes")?,
            ErrorKind::UnknownType => write!(f, "unknown message type")?,
            ErrorKind::VenueError => write!(f, "the venue sent an error")?,
            ErrorKind::TooManyInstruments => write!(f, "too many instruments")?,
        }
        if !self.field.is_empty() {
            write!(f, " in field `{}`", self.field)?;
        }
        if let Some(i) = self.index {
            write!(f, " (element {i})")?;
        }
        if !matches!(self.kind, ErrorKind::Json(_)) {
            write!(f, " at byte {}", self.offset)?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeError {}

/// Counters kept by the decoder. Plain integers: the decoder runs on one thread, and the
/// engine copies them out for reports and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames given to the decoder.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Events handed to the sink.
    pub events: u64,
    /// Level changes among them.
    pub levels: u64,
    /// Trades among them.
    pub trades: u64,
    /// Quotes among them.
    pub quotes: u64,
    /// Mark price and funding updates among them (futures).
    pub derivs: u64,
    /// Forced liquidations among them (futures).
    pub liquidations: u64,
    /// Book snapshots applied (Coinbase snapshot events, Binance REST snapshots).
    pub snapshots: u64,
    /// Frames refused as malformed (counted once per frame).
    pub parse_errors: u64,
    /// Error messages sent by the venue.
    pub venue_errors: u64,
    /// Sequence gaps (Coinbase `sequence_num`, Binance `U`/`u`), each counted once.
    pub gaps: u64,
    /// Duplicate or older frames skipped (Coinbase sequence ≤ last; Binance `u` ≤ book).
    pub stale_frames: u64,
    /// Books rebuilt from a snapshot after a gap.
    pub resyncs: u64,
    /// Binance diffs buffered while waiting for a snapshot.
    pub buffered: u64,
    /// Buffered Binance diffs dropped because a snapshot covered them (`u` ≤ `lastUpdateId`).
    pub dropped_covered: u64,
    /// Buffers discarded because they grew past their cap without a snapshot.
    pub buffer_overflows: u64,
    /// Heartbeat frames.
    pub heartbeats: u64,
    /// Frames understood but without effect here (subscriptions, candles, status).
    pub ignored: u64,
}

/// Per-instrument decimals: a default plus overrides by venue and symbol.
#[derive(Clone, Debug, Default)]
pub struct ScaleConfig {
    /// Used when no override matches.
    pub default: Scale,
    /// Overrides by (venue, symbol).
    pub overrides: HashMap<(Venue, String), Scale>,
}

/// The instrument table: symbols to dense ids, assigned on first sight.
#[derive(Debug, Default)]
pub(crate) struct Instruments {
    maps: [HashMap<Box<[u8]>, InstId>; Venue::CODES],
    last: [Option<(InstId, usize)>; Venue::CODES],
    pub(crate) list: Vec<(Venue, Symbol, Scale)>,
    pub(crate) config: ScaleConfig,
    pub(crate) max: usize,
}

impl Instruments {
    /// Looks up or registers `symbol`; a new one gets a [`Event::Define`] in `defines`.
    #[inline]
    pub(crate) fn resolve(
        &mut self,
        venue: Venue,
        symbol: &[u8],
        defines: &mut Vec<Event>,
        field: &'static str,
        offset: usize,
    ) -> Result<InstId, DecodeError> {
        let v = venue as usize;
        // One-entry cache: consecutive frames are usually about the same instrument.
        if let Some((id, _)) = self.last[v] {
            let (_, sym, _) = &self.list[id.0 as usize];
            if sym.as_str().as_bytes() == symbol {
                return Ok(id);
            }
        }
        if let Some(&id) = self.maps[v].get(symbol) {
            self.last[v] = Some((id, 0));
            return Ok(id);
        }
        let sym =
            Symbol::new(symbol).ok_or(DecodeError::new(ErrorKind::BadSymbol, field, offset))?;
        if self.list.len() >= self.max {
            return Err(DecodeError::new(
                ErrorKind::TooManyInstruments,
                field,
                offset,
            ));
        }
        let id = InstId(self.list.len() as u32);
        let scale = self
            .config
            .overrides
            .get(&(venue, sym.as_str().to_string()))
            .copied()
            .unwrap_or(self.config.default);
        self.list.push((venue, sym, scale));
        self.maps[v].insert(symbol.into(), id);
        self.last[v] = Some((id, 0));
        defines.push(Event::Define {
            inst: id,
            venue,
            symbol: sym,
            scale,
        });
        Ok(id)
    }

    #[inline]
    pub(crate) fn scale(&self, id: InstId) -> Scale {
        self.list[id.0 as usize].2
    }
}

/// State shared by the venue decoders.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) inst: Instruments,
    /// Events of the frame being decoded, handed over only if the frame is good.
    pub(crate) pending: Vec<Event>,
    /// Instrument definitions (and stale marks of failed frames), handed over even if
    /// the frame fails.
    pub(crate) defines: Vec<Event>,
    pub(crate) stats: DecodeStats,
    /// Per instrument: currently marked stale.
    pub(crate) stale: Vec<bool>,
    pub(crate) last_venue_error: Option<String>,
    /// Instruments that became stale since the live driver last asked.
    pub(crate) resync: Vec<InstId>,
}

impl Shared {
    pub(crate) fn set_stale(&mut self, inst: InstId, stale: bool) {
        let i = inst.0 as usize;
        if self.stale.len() <= i {
            self.stale.resize(i + 1, false);
        }
        if self.stale[i] != stale {
            self.stale[i] = stale;
            if stale {
                self.resync.push(inst);
            }
            self.pending.push(Event::Stale { inst, stale });
        }
    }

    /// Marks `inst` stale outside the frame's all-or-nothing staging, for a frame that
    /// failed after its sequence number was consumed.
    pub(crate) fn set_stale_now(&mut self, inst: InstId) {
        let i = inst.0 as usize;
        if self.stale.len() <= i {
            self.stale.resize(i + 1, false);
        }
        if !self.stale[i] {
            self.stale[i] = true;
            self.resync.push(inst);
            self.defines.push(Event::Stale { inst, stale: true });
        }
    }
}

/// Decoder options.
#[derive(Clone, Debug)]
pub struct DecoderOptions {
    /// Decimals per instrument.
    pub scales: ScaleConfig,
    /// Most instruments to register (the shm region's slot count).
    pub max_instruments: usize,
    /// Cap on the bytes of Binance diffs buffered per symbol while waiting for a
    /// snapshot.
    pub max_buffer_bytes: usize,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            scales: ScaleConfig::default(),
            max_instruments: 256,
            max_buffer_bytes: 64 << 20,
        }
    }
}

/// Decodes frames of both venues into events.
///
/// ```
/// use hermes_ingest::{Decoder, Event, Frame, FrameKind, Venue};
/// let mut dec = Decoder::default();
/// let mut events: Vec<Event> = Vec::new();
/// let frame = br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;
/// dec.decode(&Frame { venue: Venue::Binance, kind: FrameKind::Ws, conn: 0, recv_ts_ns: 0, data: frame }, &mut events).unwrap();
/// assert!(matches!(events[1], Event::Trade { trade_id: 3735683259, .. }));
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    pub(crate) sh: Shared,
    pub(crate) cb: CoinbaseState,
    pub(crate) bn: BinanceState,
    pub(crate) cbx: ExchangeState,
    pub(crate) max_buffer_bytes: usize,
}

impl Decoder {
    /// A decoder with options.
    pub fn new(opts: DecoderOptions) -> Self {
        let mut d = Decoder::default();
        d.sh.inst.config = opts.scales;
        d.sh.inst.max = opts.max_instruments;
        d.max_buffer_bytes = opts.max_buffer_bytes;
        d
    }

    /// Decodes one frame, handing its events to `sink` if it is good. On error nothing of
    /// the frame reaches the sink (except new instrument definitions) and the error says
    /// which field failed where.
    pub fn decode<S: EventSink>(
        &mut self,
        frame: &Frame<'_>,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        if self.sh.inst.max == 0 {
            // `Default` leaves these at zero; give them the documented defaults.
            let d = DecoderOptions::default();
            self.sh.inst.max = d.max_instruments;
            self.max_buffer_bytes = d.max_buffer_bytes;
        }
        self.sh.stats.frames += 1;
        self.sh.stats.bytes += frame.data.len() as u64;
        let r = self.decode_inner(frame);
        self.flush(sink, r.is_ok());
        if r.is_err() {
            self.sh.stats.parse_errors += 1;
            if matches!(
                r,
                Err(DecodeError {
                    kind: ErrorKind::VenueError,
                    ..
                })
            ) {
                self.sh.stats.venue_errors += 1;
            }
        }
        // A Binance snapshot releases the diffs buffered before it.
        while let Some((venue, data, recv)) = self.bn.next_replay() {
            let f = Frame {
                venue,
                kind: FrameKind::Ws,
                conn: frame.conn,
                recv_ts_ns: recv,
                data: &data,
            };
            let r2 = self.decode_inner(&f);
            self.flush(sink, r2.is_ok());
            if r2.is_err() {
                self.sh.stats.parse_errors += 1;
            }
        }
        r
    }

    fn decode_inner(&mut self, frame: &Frame<'_>) -> Result<(), DecodeError> {
        match crate::venue::protocol(frame.venue) {
            Some(p) => p.decode(self, frame),
            None => self.decode_webhook(frame),
        }
    }

    fn flush<S: EventSink>(&mut self, sink: &mut S, ok: bool) {
        for ev in self.sh.defines.drain(..) {
            sink.push(ev);
        }
        if ok {
            let st = &mut self.sh.stats;
            for ev in self.sh.pending.drain(..) {
                st.events += 1;
                match ev {
                    Event::Level { .. } => st.levels += 1,
                    Event::Trade { .. } => st.trades += 1,
                    Event::Derivs { .. } => st.derivs += 1,
                    Event::Liquidation { .. } => st.liquidations += 1,
                    Event::Quote { .. } => st.quotes += 1,
                    Event::Snapshot { .. } => st.snapshots += 1,
                    Event::Stale { stale: false, .. } => st.resyncs += 1,
                    _ => {}
                }
                sink.push(ev);
            }
        } else {
            // Undo the stale transitions of the discarded frame: its events never happen.
            for ev in self.sh.pending.drain(..) {
                if let Event::Stale { inst, stale } = ev {
                    if let Some(s) = self.sh.stale.get_mut(inst.0 as usize) {
                        *s = !stale;
                    }
                }
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecodeStats {
        self.sh.stats
    }

    /// The last error message a venue sent, if any.
    pub fn last_venue_error(&self) -> Option<&str> {
        self.sh.last_venue_error.as_deref()
    }

    /// Registered instruments: venue, symbol and decimals, indexed by [`InstId`].
    pub fn instruments(&self) -> impl Iterator<Item = (InstId, Venue, &str, Scale)> + '_ {
        self.sh
            .inst
            .list
            .iter()
            .enumerate()
            .map(|(i, (v, s, sc))| (InstId(i as u32), *v, s.as_str(), *sc))
    }

    /// Instruments currently marked stale.
    pub fn stale_instruments(&self) -> impl Iterator<Item = InstId> + '_ {
        self.sh
            .stale
            .iter()
            .enumerate()
            .filter(|(_, s)| **s)
            .map(|(i, _)| InstId(i as u32))
    }

    /// Takes the instruments that became stale (a gap, a rejected level-2 frame, a
    /// lost connection) since the last call: the live driver resubscribes (Coinbase) or
    /// refetches the REST snapshot (Binance) for them.
    pub fn take_resyncs(&mut self, out: &mut Vec<InstId>) {
        out.clear();
        out.extend(
            self.sh
                .resync
                .drain(..)
                .filter(|i| self.sh.stale.get(i.0 as usize).copied().unwrap_or(false)),
        );
        out.sort_unstable();
        out.dedup();
    }

    /// Venue and symbol of an instrument.
    pub fn instrument(&self, inst: InstId) -> Option<(Venue, &str)> {
        self.sh
            .inst
            .list
            .get(inst.0 as usize)
            .map(|(v, s, _)| (*v, s.as_str()))
    }

    /// Looks up an instrument by venue and symbol.
    pub fn find(&self, venue: Venue, symbol: &str) -> Option<InstId> {
        self.sh.inst.maps[venue as usize]
            .get(symbol.as_bytes())
            .copied()
    }

    /// Marks an instrument stale now (its feed was lost), telling the sink at once. For
    /// Binance the diff-depth sync starts over: diffs are buffered until the next
    /// snapshot.
    pub fn mark_stale<S: EventSink>(&mut self, inst: InstId, sink: &mut S) {
        if self.sh.inst.list.get(inst.0 as usize).is_none() {
            return;
        }
        let venue = self.sh.inst.list[inst.0 as usize].0;
        if let Some(p) = crate::venue::protocol(venue) {
            p.restart(self, inst);
        }
        self.sh.set_stale_now(inst);
        self.flush(sink, true);
    }

    /// Binance symbols still waiting for a depth snapshot, with their buffered diffs.
    pub fn unsynced(&self) -> Vec<(InstId, usize)> {
        self.bn.unsynced()
    }
}

/// Sets a field that may appear once per payload; a repeat is refused.
pub(crate) fn set_once<T>(
    slot: &mut Option<T>,
    v: T,
    field: &'static str,
    at: usize,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::new(ErrorKind::BadValue, field, at));
    }
    *slot = Some(v);
    Ok(())
}

/// Parses a non-negative decimal field at `decimals`, naming the field on error.
#[inline]
pub(crate) fn dec(
    text: &[u8],
    decimals: u8,
    field: &'static str,
    offset: usize,
) -> Result<i64, DecodeError> {
    let v = parse_decimal(text, decimals)
        .map_err(|e| DecodeError::new(ErrorKind::Decimal(e), field, offset))?;
    if v < 0 {
        return Err(DecodeError::new(ErrorKind::BadValue, field, offset));
    }
    Ok(v)
}
