//! From journal records to rows: the projection of the journal onto the tables.
//!
//! Every record yields a `raw_events` row from a light look at the frame (channel,
//! sequence, exchange time, event type). The frame then goes through the project's own
//! [`Decoder`] (the same code the engine runs): `Event::Trade`s become `trades` rows, and
//! the book events are applied to the projector's own [`OrderBook`]s, from which
//! `book_snapshots` (top-N levels at the first change of each snapshot interval) and
//! `top_of_book` (BBO and kernels at the first change of each sampling interval) are
//! taken. Intervals are measured on the frames' receive times, never on the wall clock,
//! so the rows are a pure function of the journal: re-projecting the same records gives
//! the same rows, which is what makes a restart exactly-once.
//!
//! The projector keeps its own books rather than sampling the shm file: it then works
//! at its own pace (while PostgreSQL is down it is behind the engine by design), and
//! what it writes does not depend on when a sample happened to be taken.

use hermes_book::{OrderBook, Side};
use hermes_ingest::capture::{Record, RecordKind};
use hermes_ingest::json::{parse_rfc3339_ns, Scanner};
use hermes_ingest::{Decoder, DecoderOptions, Event, Frame, FrameKind, TradeSide, Venue};

use crate::copy::CopyBuffer;

/// Row sampling settings.
#[derive(Clone, Debug)]
pub struct ProjectionOptions {
    /// Decoder settings (decimals per instrument): must match the engine's.
    pub decoder: DecoderOptions,
    /// Receive-time interval between two `book_snapshots` rows of an instrument.
    pub snapshot_interval_ns: i64,
    /// Levels per side in a snapshot.
    pub snapshot_depth: usize,
    /// Receive-time interval between two `top_of_book` rows of an instrument.
    pub tob_interval_ns: i64,
}

impl Default for ProjectionOptions {
    fn default() -> Self {
        ProjectionOptions {
            decoder: DecoderOptions::default(),
            snapshot_interval_ns: 1_000_000_000,
            snapshot_depth: 10,
            tob_interval_ns: 100_000_000,
        }
    }
}

/// The rows of a batch, one binary COPY stream per table, each row tagged with the
/// journal offset of the record it came from.
#[derive(Debug, Default)]
pub struct Batch {
    /// `raw_events`, `trades`, `book_snapshots`, `top_of_book` ([`crate::TABLES`] order).
    pub tables: [CopyBuffer; 4],
    /// Per table, per row: the journal offset of its record.
    pub row_offsets: [Vec<u64>; 4],
    /// Day numbers (UTC) the rows fall in, for partition creation.
    pub days: Vec<i32>,
}

impl Batch {
    /// Total rows.
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows()).sum()
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        for t in &mut self.tables {
            t.clear();
        }
        for o in &mut self.row_offsets {
            o.clear();
        }
        self.days.clear();
    }

    #[inline]
    fn day(&mut self, ns: i64) {
        let d = crate::schema::day_of_ns(ns);
        if self.days.last() != Some(&d) && !self.days.contains(&d) {
            self.days.push(d);
        }
    }

    /// Keeps only the rows of records before journal offset `end`.
    pub fn truncate_before(&mut self, end: u64) {
        for t in 0..4 {
            let keep = self.row_offsets[t].partition_point(|&o| o < end);
            self.tables[t].truncate_rows(keep);
            self.row_offsets[t].truncate(keep);
        }
    }
}

/// Where a record sits: which journal, stream and position.
#[derive(Clone, Copy, Debug)]
pub struct Position<'a> {
    /// Journal segment name.
    pub journal: &'a str,
    /// Stream id (the replayed input, or the engine run).
    pub stream: &'a str,
    /// Record index in the segment.
    pub frame_no: i64,
    /// Byte offset of the record in the segment.
    pub offset: u64,
}

/// A record the projector cannot turn into rows (reported, never skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// What is wrong.
    pub reason: String,
}

#[derive(Clone, Copy, Debug, Default)]
struct Quote {
    update_id: u64,
    bid_px: i64,
    bid_qty: i64,
    ask_px: i64,
    ask_qty: i64,
}

#[derive(Debug)]
struct Inst {
    venue: Venue,
    symbol: String,
    pd: u8,
    sd: u8,
    book: OrderBook,
    quote: Option<Quote>,
    has_levels: bool,
    stale: bool,
    update_id: u64,
    exch_ts_ns: i64,
    last_trade_px: Option<i64>,
    snap_bucket: Option<i64>,
    tob_bucket: Option<i64>,
}

/// The light look at a frame for `raw_events`.
#[derive(Debug, Default, Clone, Copy)]
struct Look<'a> {
    seq: Option<i64>,
    channel: Option<&'a [u8]>,
    event_type: Option<&'a [u8]>,
    exch_ns: Option<i64>,
}

/// Turns journal records into rows. One projector per journal segment: its decoder and
/// books start empty at the segment's first record, as the engine's did.
pub struct Projector {
    opts: ProjectionOptions,
    decoder: Decoder,
    events: Vec<Event>,
    insts: Vec<Inst>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("instruments", &self.insts.len())
            .finish()
    }
}

fn venue_name(v: Venue) -> &'static str {
    v.name()
}

/// Coinbase: `channel`, `sequence_num`, `timestamp`, and the first event's `type`.
fn look_coinbase(data: &[u8]) -> Look<'_> {
    let mut l = Look::default();
    let mut s = Scanner::new(data);
    let _ = (|| -> hermes_ingest::json::Result<()> {
        s.object_begin()?;
        let mut first = true;
        while let Some(k) = s.key(&mut first)? {
            match k {
                b"channel" => l.channel = Some(s.string()?),
                b"sequence_num" => l.seq = i64::try_from(s.u64()?).ok(),
                b"timestamp" => l.exch_ns = parse_rfc3339_ns(s.string()?),
                b"type" => {
                    let t = s.string()?;
                    l.event_type.get_or_insert(t);
                }
                b"events" => {
                    s.array_begin()?;
                    let mut fe = true;
                    let mut n = 0;
                    while s.elem(&mut fe)? {
                        if n == 0 && s.peek() == Some(b'{') {
                            s.object_begin()?;
                            let mut fk = true;
                            while let Some(k) = s.key(&mut fk)? {
                                if k == b"type" {
                                    l.event_type = Some(s.string()?);
                                } else {
                                    s.skip()?;
                                }
                            }
                        } else {
                            s.skip()?;
                        }
                        n += 1;
                    }
                }
                _ => {
                    s.skip()?;
                }
            }
        }
        Ok(())
    })();
    l
}

/// Binance: `stream`, and in `data` the event type `e`, event time `E` (else trade time
/// `T`), and the update id `u` (`lastUpdateId` in a REST snapshot).
fn look_binance(data: &[u8], rest: bool) -> (Look<'_>, bool) {
    let mut l = Look::default();
    let mut agg = false;
    let mut s = Scanner::new(data);
    fn fields<'a>(
        s: &mut Scanner<'a>,
        l: &mut Look<'a>,
        top: bool,
    ) -> hermes_ingest::json::Result<()> {
        s.object_begin()?;
        let mut first = true;
        let mut t_ms = None;
        let mut has_u = false;
        while let Some(k) = s.key(&mut first)? {
            match k {
                b"stream" if top => l.channel = Some(s.string()?),
                b"data" if top && s.peek() == Some(b'{') => fields(s, l, false)?,
                b"e" => l.event_type = Some(s.string()?),
                b"E" => l.exch_ns = i64::try_from(s.u64()?).ok().map(|ms| ms * 1_000_000),
                b"T" => t_ms = i64::try_from(s.u64()?).ok(),
                b"u" | b"lastUpdateId" => {
                    has_u = true;
                    l.seq = i64::try_from(s.u64()?).ok();
                }
                _ => {
                    s.skip()?;
                }
            }
        }
        if l.exch_ns.is_none() {
            l.exch_ns = t_ms.map(|ms| ms * 1_000_000);
        }
        if l.event_type.is_none() && has_u {
            l.event_type = Some(b"bookTicker");
        }
        Ok(())
    }
    let _ = fields(&mut s, &mut l, true);
    if rest {
        l.channel = Some(b"rest/depth");
        l.event_type = Some(b"depthSnapshot");
    } else if l.event_type == Some(b"aggTrade") {
        agg = true;
    }
    if l.event_type == Some(b"trade") || l.event_type == Some(b"aggTrade") {
        // A trade id is not a stream sequence.
        l.seq = None;
    }
    (l, agg)
}

/// `true` when PostgreSQL's `jsonb` input takes these bytes: valid JSON (UTF-8, no
/// control characters in strings) and no `\u0000` escape, which `jsonb` refuses.
pub fn jsonb_compatible(data: &[u8]) -> bool {
    use serde::de::IgnoredAny;
    if memchr_u0000(data) || std::str::from_utf8(data).is_err() {
        return false;
    }
    serde_json::from_slice::<IgnoredAny>(data).is_ok()
}

fn memchr_u0000(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"\\u0000").is_some()
}

impl Projector {
    /// A projector with empty state.
    pub fn new(opts: ProjectionOptions) -> Projector {
        Projector {
            decoder: Decoder::new(opts.decoder.clone()),
            opts,
            events: Vec::with_capacity(1024),
            insts: Vec::new(),
        }
    }

    /// Projects one record. With `emit` false the state advances but no row is written
    /// (the warm-up from a segment's start to its committed offset after a restart).
    pub fn record(
        &mut self,
        rec: &Record<'_>,
        pos: Position<'_>,
        emit: bool,
        batch: &mut Batch,
    ) -> Result<(), RowError> {
        let rest = rec.kind == RecordKind::RestDepth;
        let (look, agg) = match rec.venue {
            Venue::Coinbase => (look_coinbase(rec.data), false),
            Venue::Binance => look_binance(rec.data, rest),
            Venue::Webhook => (
                Look {
                    channel: Some(b"ingest/tick"),
                    event_type: Some(b"tick"),
                    ..Look::default()
                },
                false,
            ),
        };
        if rec.venue == Venue::Coinbase && look.seq == Some(0) {
            // A Coinbase connection numbers its frames from 0: sequence 0 is a new
            // connection (a reconnect), whose numbering starts over. The engine resets
            // the connection's sequence on reconnect; this mirrors it from the journal.
            self.decoder.reset_coinbase_connection(rec.conn);
        }
        if emit {
            let t = &mut batch.tables[0];
            t.begin_row(13);
            t.text(pos.stream);
            t.int8(pos.frame_no);
            t.text(pos.journal);
            t.int8(pos.offset as i64);
            t.text(venue_name(rec.venue));
            t.int4(rec.conn as i32);
            match look.seq {
                Some(v) => t.int8(v),
                None => t.null(),
            }
            match look.channel {
                Some(c) => t.text_bytes(c),
                None => t.null(),
            }
            match look.event_type {
                Some(c) => t.text_bytes(c),
                None => t.null(),
            }
            match look.exch_ns {
                Some(v) => t.timestamptz_ns(v),
                None => t.null(),
            }
            t.timestamptz_ns(rec.recv_ts_ns);
            if jsonb_compatible(rec.data) {
                t.jsonb(rec.data);
                t.null();
            } else {
                t.null();
                t.bytea(rec.data);
            }
            t.end_row();
            batch.row_offsets[0].push(pos.offset);
            batch.day(rec.recv_ts_ns);
        }
        let kind = match rec.kind {
            RecordKind::Ws => FrameKind::Ws,
            RecordKind::RestDepth => FrameKind::RestDepth { symbol: rec.tag },
        };
        let frame = Frame {
            venue: rec.venue,
            kind,
            conn: rec.conn,
            recv_ts_ns: rec.recv_ts_ns,
            data: rec.data,
        };
        self.events.clear();
        // A frame the decoder refuses has no events but its raw_events row; the engine
        // counted and reported the same error when it received the frame.
        let _ = self.decoder.decode(&frame, &mut self.events);
        let mut events = std::mem::take(&mut self.events);
        let mut result = Ok(());
        for ev in &events {
            if let Err(e) = self.apply(ev, rec, pos, agg, emit, batch) {
                result = Err(e);
                break;
            }
        }
        events.clear();
        self.events = events;
        result
    }

    fn apply(
        &mut self,
        ev: &Event,
        rec: &Record<'_>,
        pos: Position<'_>,
        agg: bool,
        emit: bool,
        batch: &mut Batch,
    ) -> Result<(), RowError> {
        match *ev {
            Event::Define {
                inst,
                venue,
                symbol,
                scale,
            } => {
                debug_assert_eq!(inst.0 as usize, self.insts.len());
                self.insts.push(Inst {
                    venue,
                    symbol: symbol.as_str().to_string(),
                    pd: scale.price_decimals,
                    sd: scale.size_decimals,
                    book: OrderBook::default(),
                    quote: None,
                    has_levels: false,
                    stale: false,
                    update_id: 0,
                    exch_ts_ns: 0,
                    last_trade_px: None,
                    snap_bucket: None,
                    tob_bucket: None,
                });
            }
            Event::Snapshot { inst } => {
                let i = &mut self.insts[inst.0 as usize];
                i.book.begin_snapshot();
                i.has_levels = true;
            }
            Event::Level {
                inst,
                side,
                price,
                qty,
            } => {
                let i = &mut self.insts[inst.0 as usize];
                i.book.set(side, price, qty);
                i.has_levels = true;
            }
            Event::Commit {
                inst,
                update_id,
                exch_ts_ns,
                recv_ts_ns,
            } => {
                let depth = self.opts.snapshot_depth;
                let (si, ti) = (self.opts.snapshot_interval_ns, self.opts.tob_interval_ns);
                let i = &mut self.insts[inst.0 as usize];
                i.book.end_snapshot();
                i.update_id = update_id;
                i.exch_ts_ns = exch_ts_ns;
                let b = recv_ts_ns.div_euclid(si.max(1));
                if i.snap_bucket != Some(b) {
                    i.snap_bucket = Some(b);
                    if emit {
                        snapshot_row(i, recv_ts_ns, depth, batch);
                        batch.row_offsets[2].push(pos.offset);
                        batch.day(recv_ts_ns);
                    }
                }
                self.sample_tob(inst.0 as usize, recv_ts_ns, ti, pos, emit, batch);
            }
            Event::Quote {
                inst,
                update_id,
                bid_px,
                bid_qty,
                ask_px,
                ask_qty,
                recv_ts_ns,
            } => {
                let i = &mut self.insts[inst.0 as usize];
                if i.quote.is_none_or(|q| update_id >= q.update_id) {
                    i.quote = Some(Quote {
                        update_id,
                        bid_px: bid_px.0,
                        bid_qty: bid_qty.0,
                        ask_px: ask_px.0,
                        ask_qty: ask_qty.0,
                    });
                }
                let ti = self.opts.tob_interval_ns;
                self.sample_tob(inst.0 as usize, recv_ts_ns, ti, pos, emit, batch);
            }
            Event::Trade {
                inst,
                side,
                trade_id,
                price,
                qty,
                ts_ns,
            } => {
                let i = &mut self.insts[inst.0 as usize];
                i.last_trade_px = Some(price.0);
                if emit {
                    let id = i64::try_from(trade_id).map_err(|_| RowError {
                        reason: format!(
                            "trade id {trade_id} of {} {} does not fit the bigint column",
                            i.venue.name(),
                            i.symbol
                        ),
                    })?;
                    let t = &mut batch.tables[1];
                    t.begin_row(9);
                    t.text(venue_name(i.venue));
                    t.text(&i.symbol);
                    t.int8(id);
                    t.numeric(price.0, i.pd);
                    t.numeric(qty.0, i.sd);
                    t.text(match side {
                        TradeSide::Buy => "buy",
                        TradeSide::Sell => "sell",
                        TradeSide::Unknown => "unknown",
                    });
                    t.timestamptz_ns(ts_ns);
                    t.timestamptz_ns(rec.recv_ts_ns);
                    t.bool(agg);
                    t.end_row();
                    batch.row_offsets[1].push(pos.offset);
                    batch.day(ts_ns);
                }
            }
            Event::Stale { inst, stale } => {
                self.insts[inst.0 as usize].stale = stale;
            }
        }
        Ok(())
    }

    fn sample_tob(
        &mut self,
        k: usize,
        recv_ts_ns: i64,
        interval: i64,
        pos: Position<'_>,
        emit: bool,
        batch: &mut Batch,
    ) {
        let i = &mut self.insts[k];
        let b = recv_ts_ns.div_euclid(interval.max(1));
        if i.tob_bucket == Some(b) {
            return;
        }
        i.tob_bucket = Some(b);
        if emit {
            tob_row(i, recv_ts_ns, batch);
            batch.row_offsets[3].push(pos.offset);
            batch.day(recv_ts_ns);
        }
    }
}

fn opt_ts(t: &mut CopyBuffer, ns: i64) {
    if ns == 0 {
        t.null();
    } else {
        t.timestamptz_ns(ns);
    }
}

fn snapshot_row(i: &Inst, ts: i64, depth: usize, batch: &mut Batch) {
    let t = &mut batch.tables[2];
    t.begin_row(11);
    t.text(venue_name(i.venue));
    t.text(&i.symbol);
    t.timestamptz_ns(ts);
    opt_ts(t, i.exch_ts_ns);
    t.int8(i.update_id as i64);
    for side in [Side::Bid, Side::Ask] {
        for px in [true, false] {
            t.begin_numeric_array();
            let levels: &mut dyn Iterator<Item = hermes_book::Level> = match side {
                Side::Bid => &mut i.book.bids(),
                Side::Ask => &mut i.book.asks(),
            };
            for l in levels.take(depth) {
                if px {
                    t.array_numeric(l.price.0, i.pd);
                } else {
                    t.array_numeric(l.qty.0, i.sd);
                }
            }
            t.end_array();
        }
    }
    t.bool(i.stale);
    t.bool(i.book.is_crossed());
    t.end_row();
}

fn tob_row(i: &Inst, ts: i64, batch: &mut Batch) {
    // The same choice as the engine's publisher: Binance bookTicker and diff depth share
    // an id space (newer wins); a Coinbase ticker (no id) stands in only without levels.
    let from_quote = match i.quote {
        Some(q) if q.update_id > 0 => q.update_id > i.update_id,
        Some(_) => !i.has_levels,
        None => false,
    };
    let (bid, ask) = match (from_quote, i.quote) {
        (true, Some(q)) => (Some((q.bid_px, q.bid_qty)), Some((q.ask_px, q.ask_qty))),
        _ => (
            i.book.best_bid().map(|l| (l.price.0, l.qty.0)),
            i.book.best_ask().map(|l| (l.price.0, l.qty.0)),
        ),
    };
    let t = &mut batch.tables[3];
    t.begin_row(17);
    t.text(venue_name(i.venue));
    t.text(&i.symbol);
    t.timestamptz_ns(ts);
    opt_ts(t, i.exch_ts_ns);
    t.int8(if from_quote {
        i.quote.map_or(0, |q| q.update_id) as i64
    } else {
        i.update_id as i64
    });
    for side in [bid, ask] {
        match side {
            Some((p, q)) => {
                t.numeric(p, i.pd);
                t.numeric(q, i.sd);
            }
            None => {
                t.null();
                t.null();
            }
        }
    }
    match (bid, ask) {
        (Some((bp, bq)), Some((ap, aq))) => {
            match ap.checked_sub(bp) {
                Some(s) => t.numeric(s, i.pd),
                None => t.null(),
            }
            // mid = (bid + ask) / 2, exact at one more decimal.
            match (bp as i128 + ap as i128)
                .checked_mul(5)
                .and_then(|m| i64::try_from(m).ok())
            {
                Some(m) if i.pd < u8::MAX => t.numeric(m, i.pd + 1),
                _ => t.null(),
            }
            let (bqf, aqf) = (bq as f64, aq as f64);
            if bqf + aqf > 0.0 {
                let scale = 10f64.powi(-(i.pd as i32));
                t.float8((bp as f64 * aqf + ap as f64 * bqf) / (bqf + aqf) * scale);
                t.float8((bqf - aqf) / (bqf + aqf));
            } else {
                t.null();
                t.null();
            }
        }
        _ => {
            for _ in 0..4 {
                t.null();
            }
        }
    }
    match i.last_trade_px {
        Some(p) => t.numeric(p, i.pd),
        None => t.null(),
    }
    t.bool(i.stale);
    t.bool(i.book.is_crossed());
    t.bool(from_quote);
    t.end_row();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks() {
        let cb = br#"{"channel":"l2_data","client_id":"","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":14,"events":[{"type":"update","product_id":"BTC-USD","updates":[]}]}"#;
        let l = look_coinbase(cb);
        assert_eq!(l.channel, Some(&b"l2_data"[..]));
        assert_eq!(l.seq, Some(14));
        assert_eq!(l.event_type, Some(&b"update"[..]));
        assert_eq!(
            l.exch_ns,
            parse_rfc3339_ns(b"2026-08-09T21:05:48.505350477Z")
        );
        let bn = br#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255343,"s":"BTCUSDT","U":10,"u":12,"b":[],"a":[]}}"#;
        let (l, agg) = look_binance(bn, false);
        assert!(!agg);
        assert_eq!(l.channel, Some(&b"btcusdt@depth@100ms"[..]));
        assert_eq!(l.event_type, Some(&b"depthUpdate"[..]));
        assert_eq!(l.seq, Some(12));
        assert_eq!(l.exch_ns, Some(1_723_161_255_343_000_000));
        let bt = br#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}"#;
        let (l, _) = look_binance(bt, false);
        assert_eq!(l.event_type, Some(&b"bookTicker"[..]));
        assert_eq!(l.seq, Some(400_900_217));
        let ag = br#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":5,"s":"BTCUSDT","a":7,"p":"1","q":"1","T":4,"m":true}}"#;
        let (l, agg) = look_binance(ag, false);
        assert!(agg);
        assert_eq!(l.seq, None);
        assert_eq!(l.exch_ns, Some(5_000_000));
        let (l, _) = look_binance(br#"{"lastUpdateId":99,"bids":[],"asks":[]}"#, true);
        assert_eq!(l.seq, Some(99));
        // Garbage gives an empty look, not an error.
        let (l, _) = look_binance(b"{\"stream\":", false);
        assert!(l.event_type.is_none());
    }

    #[test]
    fn jsonb_check() {
        assert!(jsonb_compatible(br#"{"a":[1,2.5,"x"]}"#));
        assert!(!jsonb_compatible(br#"{"a":"\u0000"}"#));
        assert!(!jsonb_compatible(b"{\"a\":\"\xff\"}"));
        assert!(!jsonb_compatible(b"{\"a\":"));
        assert!(!jsonb_compatible(b"{\"a\":\"x\0y\"}"));
    }
}
