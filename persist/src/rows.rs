//! From journal records to rows: the projection of the journal onto the tables.
//!
//! Every record yields a `raw_events` row from a light look at the frame (channel,
//! sequence, exchange time, event type). The frame then goes through the project's own
//! [`Decoder`] (the same code the engine runs): `Event::Trade`s become `trades` rows,
//! `Event::Derivs` (Binance futures `markPriceUpdate`) `funding` rows and
//! `Event::Liquidation`s (`forceOrder`) `liquidations` rows, and every event is applied
//! to the projector's own [`Market`] (the same model the engine's book thread publishes
//! from), from which `book_snapshots` (top-N levels at the first change of each snapshot
//! interval) and `top_of_book` (BBO and kernels at the first change of each sampling
//! interval) are taken: the table's best bid/ask, microprice and imbalance are the shm
//! slot's for the same events. Intervals are measured on the frames' receive times, never
//! on the wall clock, so the rows are a pure function of the journal: re-projecting the
//! same records gives the same rows, which is what makes a restart exactly-once.
//!
//! The projector keeps its own market rather than sampling the shm file: it then works
//! at its own pace (while PostgreSQL is down it is behind the engine by design), and
//! what it writes does not depend on when a sample happened to be taken.

use hermes_book::event::DERIV_DECIMALS;
use hermes_book::kernels::KernelConfig;
use hermes_book::market::{Instrument, Market};
use hermes_book::{InstId, Side};
use hermes_ingest::capture::{Record, RecordKind};
use hermes_ingest::json::{parse_rfc3339_ns, Scanner};
use hermes_ingest::{Decoder, DecoderOptions, Event, Venue};

use crate::copy::CopyBuffer;
use crate::stats::TABLES;

/// Where each table's rows go in [`Batch::tables`] ([`TABLES`] order).
pub(crate) mod table {
    pub const RAW_EVENTS: usize = 0;
    pub const TRADES: usize = 1;
    pub const BOOK_SNAPSHOTS: usize = 2;
    pub const TOP_OF_BOOK: usize = 3;
    pub const FUNDING: usize = 4;
    pub const LIQUIDATIONS: usize = 5;
}

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
    /// Kernel settings (must match the engine's for the table to equal the slot).
    pub kernels: KernelConfig,
}

impl Default for ProjectionOptions {
    fn default() -> Self {
        ProjectionOptions {
            decoder: DecoderOptions::default(),
            snapshot_interval_ns: 1_000_000_000,
            snapshot_depth: 10,
            tob_interval_ns: 100_000_000,
            kernels: KernelConfig::default(),
        }
    }
}

/// The rows of a batch, one binary COPY stream per table, each row tagged with the
/// journal offset of the record it came from.
#[derive(Debug, Default)]
pub struct Batch {
    /// `raw_events`, `trades`, `book_snapshots`, `top_of_book`, `funding`,
    /// `liquidations` ([`crate::TABLES`] order).
    pub tables: [CopyBuffer; TABLES.len()],
    /// Per table, per row: the journal offset of its record.
    pub row_offsets: [Vec<u64>; TABLES.len()],
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

    /// Rows per table now, for [`Batch::truncate_to`].
    pub fn mark(&self) -> [usize; TABLES.len()] {
        std::array::from_fn(|t| self.tables[t].rows())
    }

    /// Drops the rows added since `mark` was taken (the days they added stay listed:
    /// only partitions are made of them).
    pub fn truncate_to(&mut self, mark: [usize; TABLES.len()]) {
        for (t, keep) in mark.into_iter().enumerate() {
            self.tables[t].truncate_rows(keep);
            self.row_offsets[t].truncate(keep);
        }
    }

    /// Keeps only the rows of records before journal offset `end`.
    pub fn truncate_before(&mut self, end: u64) {
        for t in 0..TABLES.len() {
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

/// Per instrument: the sampling bucket of its last row in each sampled table.
#[derive(Clone, Copy, Debug, Default)]
struct Buckets {
    snap: Option<i64>,
    tob: Option<i64>,
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
    market: Market,
    buckets: Vec<Buckets>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("instruments", &self.buckets.len())
            .finish()
    }
}

fn venue_name(v: Venue) -> &'static str {
    v.name()
}

/// Coinbase Exchange: `type` (as both channel and type: the feed has no channel
/// field), the product's `sequence` where the type has one, `time`.
fn look_coinbase_exchange(data: &[u8]) -> Look<'_> {
    let mut l = Look::default();
    let mut s = Scanner::new(data);
    let _ = (|| -> hermes_ingest::json::Result<()> {
        s.object_begin()?;
        let mut first = true;
        while let Some(k) = s.key(&mut first)? {
            match k {
                b"type" => {
                    let t = s.string()?;
                    l.event_type = Some(t);
                    l.channel = Some(match t {
                        b"snapshot" | b"l2update" => b"level2",
                        b"match" | b"last_match" => b"matches",
                        other => other,
                    });
                }
                b"sequence" => l.seq = i64::try_from(s.u64()?).ok(),
                b"time" => l.exch_ns = parse_rfc3339_ns(s.string()?),
                _ => {
                    s.skip()?;
                }
            }
        }
        Ok(())
    })();
    l
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

/// The light look at a record, by venue, and whether it is a Binance `aggTrade`.
fn look<'a>(rec: &Record<'a>) -> (Look<'a>, bool) {
    let rest = rec.kind == RecordKind::RestDepth;
    match rec.venue {
        Venue::Coinbase => (look_coinbase(rec.data), false),
        Venue::Binance | Venue::BinanceUsdm | Venue::BinanceCoinm => look_binance(rec.data, rest),
        Venue::CoinbaseExchange => (look_coinbase_exchange(rec.data), false),
        Venue::Webhook => (
            Look {
                channel: Some(b"ingest/tick"),
                event_type: Some(b"tick"),
                ..Look::default()
            },
            false,
        ),
    }
}

/// A record's `raw_events` row.
fn raw_events_row(look: &Look<'_>, rec: &Record<'_>, pos: Position<'_>, batch: &mut Batch) {
    let t = &mut batch.tables[table::RAW_EVENTS];
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
    batch.row_offsets[table::RAW_EVENTS].push(pos.offset);
    batch.day(rec.recv_ts_ns);
}

impl Projector {
    /// Only the `raw_events` row of a record, without decoding it or changing any state:
    /// for a record seen again whose projection is already done (its row is skipped by
    /// the table's unique key when the database has it).
    pub fn raw_row(rec: &Record<'_>, pos: Position<'_>, batch: &mut Batch) {
        raw_events_row(&look(rec).0, rec, pos, batch);
    }

    /// A projector with empty state.
    pub fn new(opts: ProjectionOptions) -> Projector {
        Projector {
            decoder: Decoder::new(opts.decoder.clone()),
            market: Market::new(opts.kernels),
            opts,
            events: Vec::with_capacity(1024),
            buckets: Vec::new(),
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
        let (look, agg) = look(rec);
        if rec.venue == Venue::Coinbase && look.seq == Some(0) {
            // A Coinbase connection numbers its frames from 0: sequence 0 is a new
            // connection (a reconnect), whose numbering starts over. The engine resets
            // the connection's sequence on reconnect; this mirrors it from the journal.
            self.decoder.reset_coinbase_connection(rec.conn);
        }
        if emit {
            raw_events_row(&look, rec, pos, batch);
        }
        let frame = rec.frame();
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
        self.market.apply(ev);
        match *ev {
            Event::Define { .. } => self.buckets.push(Buckets::default()),
            Event::Commit {
                inst, recv_ts_ns, ..
            } => {
                let (si, ti) = (self.opts.snapshot_interval_ns, self.opts.tob_interval_ns);
                let b = recv_ts_ns.div_euclid(si.max(1));
                let k = inst.0 as usize;
                if self.buckets[k].snap != Some(b) {
                    self.buckets[k].snap = Some(b);
                    if emit {
                        let i = self.market.instrument(inst);
                        snapshot_row(i, recv_ts_ns, self.opts.snapshot_depth, batch);
                        batch.row_offsets[table::BOOK_SNAPSHOTS].push(pos.offset);
                        batch.day(recv_ts_ns);
                    }
                }
                self.sample_tob(inst, recv_ts_ns, ti, pos, emit, batch);
            }
            Event::Quote {
                inst, recv_ts_ns, ..
            } => {
                let ti = self.opts.tob_interval_ns;
                self.sample_tob(inst, recv_ts_ns, ti, pos, emit, batch);
            }
            Event::Trade {
                inst,
                side,
                trade_id,
                price,
                qty,
                ts_ns,
            } if emit => {
                let i = self.market.instrument(inst);
                let id = i64::try_from(trade_id).map_err(|_| RowError {
                    reason: format!(
                        "trade id {trade_id} of {} {} does not fit the bigint column",
                        i.venue.name(),
                        i.symbol
                    ),
                })?;
                let t = &mut batch.tables[table::TRADES];
                t.begin_row(9);
                t.text(venue_name(i.venue));
                t.text(&i.symbol);
                t.int8(id);
                t.numeric(price.0, i.scale.price_decimals);
                t.numeric(qty.0, i.scale.size_decimals);
                t.text(side.name());
                t.timestamptz_ns(ts_ns);
                t.timestamptz_ns(rec.recv_ts_ns);
                t.bool(agg);
                t.end_row();
                batch.row_offsets[table::TRADES].push(pos.offset);
                batch.day(ts_ns);
            }
            Event::Derivs {
                inst,
                mark_px,
                index_px,
                funding_rate,
                next_funding_ns,
                ts_ns,
            } if emit => {
                let i = self.market.instrument(inst);
                let t = &mut batch.tables[table::FUNDING];
                t.begin_row(10);
                t.text(pos.stream);
                t.int8(pos.frame_no);
                t.text(venue_name(i.venue));
                t.text(&i.symbol);
                t.timestamptz_ns(ts_ns);
                t.timestamptz_ns(rec.recv_ts_ns);
                t.numeric(mark_px, DERIV_DECIMALS);
                // The decoder's 0 is "the venue gives none": no index price; and a
                // contract with no next funding time and no rate (a delivery contract:
                // `"r":""`, `"T":0`) has no funding at all.
                if index_px == 0 {
                    t.null();
                } else {
                    t.numeric(index_px, DERIV_DECIMALS);
                }
                if next_funding_ns == 0 && funding_rate == 0 {
                    t.null();
                } else {
                    t.numeric(funding_rate, DERIV_DECIMALS);
                }
                opt_ts(t, next_funding_ns);
                t.end_row();
                batch.row_offsets[table::FUNDING].push(pos.offset);
                batch.day(ts_ns);
            }
            Event::Liquidation {
                inst,
                side,
                price,
                qty,
                ts_ns,
            } if emit => {
                let i = self.market.instrument(inst);
                let t = &mut batch.tables[table::LIQUIDATIONS];
                t.begin_row(9);
                t.text(pos.stream);
                t.int8(pos.frame_no);
                t.text(venue_name(i.venue));
                t.text(&i.symbol);
                t.text(side.name());
                t.numeric(price.0, i.scale.price_decimals);
                t.numeric(qty.0, i.scale.size_decimals);
                t.timestamptz_ns(ts_ns);
                t.timestamptz_ns(rec.recv_ts_ns);
                t.end_row();
                batch.row_offsets[table::LIQUIDATIONS].push(pos.offset);
                batch.day(ts_ns);
            }
            _ => {}
        }
        Ok(())
    }

    fn sample_tob(
        &mut self,
        inst: InstId,
        recv_ts_ns: i64,
        interval: i64,
        pos: Position<'_>,
        emit: bool,
        batch: &mut Batch,
    ) {
        let buckets = &mut self.buckets[inst.0 as usize];
        let b = recv_ts_ns.div_euclid(interval.max(1));
        if buckets.tob == Some(b) {
            return;
        }
        buckets.tob = Some(b);
        if emit {
            tob_row(self.market.instrument(inst), recv_ts_ns, batch);
            batch.row_offsets[table::TOP_OF_BOOK].push(pos.offset);
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

fn snapshot_row(i: &Instrument, ts: i64, depth: usize, batch: &mut Batch) {
    let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
    let t = &mut batch.tables[table::BOOK_SNAPSHOTS];
    t.begin_row(11);
    t.text(venue_name(i.venue));
    t.text(&i.symbol);
    t.timestamptz_ns(ts);
    opt_ts(t, i.top.exch_ts_ns);
    t.int8(i.top.update_id as i64);
    for side in [Side::Bid, Side::Ask] {
        for px in [true, false] {
            t.begin_numeric_array();
            let levels: &mut dyn Iterator<Item = hermes_book::Level> = match side {
                Side::Bid => &mut i.book.bids(),
                Side::Ask => &mut i.book.asks(),
            };
            for l in levels.take(depth) {
                if px {
                    t.array_numeric(l.price.0, pd);
                } else {
                    t.array_numeric(l.qty.0, sd);
                }
            }
            t.end_array();
        }
    }
    t.bool(i.is_stale());
    t.bool(i.book.is_crossed());
    t.end_row();
}

/// Decimals of a ratio in ppm as a `NUMERIC` (`imbalance_ppm / 1e6`).
const PPM_DECIMALS: u8 = 6;

/// A `top_of_book` row: the market model's [`Top`](hermes_book::market::Top), the values
/// the shm slot holds for the same events.
fn tob_row(i: &Instrument, ts: i64, batch: &mut Batch) {
    let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
    let top = &i.top;
    let k = &top.kernels;
    let t = &mut batch.tables[table::TOP_OF_BOOK];
    t.begin_row(17);
    t.text(venue_name(i.venue));
    t.text(&i.symbol);
    t.timestamptz_ns(ts);
    opt_ts(t, top.exch_ts_ns);
    t.int8(i.shown_update_id() as i64);
    for side in [top.bid(), top.ask()] {
        match side {
            Some(l) => {
                t.numeric(l.price.0, pd);
                t.numeric(l.qty.0, sd);
            }
            None => {
                t.null();
                t.null();
            }
        }
    }
    let mut opt = |v: Option<i64>, decimals: u8| match v {
        Some(v) => t.numeric(v, decimals),
        None => t.null(),
    };
    opt(k.spread_ticks, pd);
    opt(k.mid, k.price_decimals);
    opt(k.microprice, k.price_decimals);
    opt(k.imbalance_ppm, PPM_DECIMALS);
    opt((top.trades > 0).then_some(top.last_trade_px), pd);
    t.bool(top.is_stale());
    t.bool(top.is_crossed());
    t.bool(top.bbo_from_quote());
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
    fn mark_price_and_force_order_rows() {
        let frames: [&[u8]; 4] = [
            br#"{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}}"#,
            br#"{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}}"#,
            br#"{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate","E":1562305381000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"-0.00010000","T":1562306400000}}"#,
            br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":5,"s":"BTCUSDT","t":7,"p":"1","q":"1","T":4,"m":true}}"#,
        ];
        let mut p = Projector::new(ProjectionOptions::default());
        let mut batch = Batch::default();
        for (k, data) in frames.iter().enumerate() {
            let rec = Record {
                recv_ts_ns: 1_568_014_461_000_000_000 + k as i64,
                venue: Venue::BinanceUsdm,
                kind: RecordKind::Ws,
                conn: 0,
                tag: b"",
                data,
            };
            let pos = Position {
                journal: "j",
                stream: "s",
                frame_no: k as i64,
                offset: 100 * k as u64,
            };
            p.record(&rec, pos, true, &mut batch).unwrap();
        }
        for (k, name) in [
            (table::RAW_EVENTS, "raw_events"),
            (table::TRADES, "trades"),
            (table::BOOK_SNAPSHOTS, "book_snapshots"),
            (table::TOP_OF_BOOK, "top_of_book"),
            (table::FUNDING, "funding"),
            (table::LIQUIDATIONS, "liquidations"),
        ] {
            assert_eq!(TABLES[k], name);
        }
        let rows: Vec<usize> = batch.tables.iter().map(|t| t.rows()).collect();
        assert_eq!(rows[table::RAW_EVENTS], 4);
        assert_eq!(rows[table::TRADES], 1);
        assert_eq!(rows[table::FUNDING], 2);
        assert_eq!(rows[table::LIQUIDATIONS], 1);
        assert_eq!(batch.row_offsets[table::FUNDING], [0, 200]);
        assert_eq!(batch.row_offsets[table::LIQUIDATIONS], [100]);
        // 2019-07-05 and 2019-09-09 (exchange times), 2019-09-09 (receive time).
        assert!(batch
            .days
            .contains(&crate::schema::day_of_ns(1_562_305_380_000_000_000)));
        // Cut before the third record: its funding row goes, the first two stay.
        batch.truncate_before(200);
        assert_eq!(batch.tables[table::FUNDING].rows(), 1);
        assert_eq!(batch.tables[table::LIQUIDATIONS].rows(), 1);
        assert_eq!(batch.tables[table::TRADES].rows(), 0);
        // Warm-up (emit false) writes nothing.
        let mut quiet = Batch::default();
        let rec = Record {
            recv_ts_ns: 1,
            venue: Venue::BinanceUsdm,
            kind: RecordKind::Ws,
            conn: 0,
            tag: b"",
            data: frames[0],
        };
        let pos = Position {
            journal: "j",
            stream: "s",
            frame_no: 9,
            offset: 900,
        };
        p.record(&rec, pos, false, &mut quiet).unwrap();
        assert_eq!(quiet.rows(), 0);
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
