//! From frames to rows: the [`Exporter`] runs frames through the project's own
//! [`Decoder`] and [`Market`] (the model the engine's book thread publishes from) and
//! hands each table's rows to a [`RowSink`].
//!
//! * `trades`: one row per [`Event::Trade`].
//! * `book`: the top `depth` levels at each publication ([`Applied::Changed`]), or at the
//!   first publication of an instrument in each `every_ns` interval of `ts_ns`.
//! * `features`: one row per publication: the shown best bid/ask and every kernel, the
//!   values the shm slot receives for the same events.
//! * `labels`: for each feature row, the mid `horizon_ns` later (see [`LabelRow`]).
//!
//! Rows are a pure function of the frames: exporting the same frames again gives the same
//! rows, which is what lets the live sink resume exactly once.

use std::collections::BinaryHeap;
use std::sync::Arc;

use hermes_book::kernels::{KernelConfig, KernelValues};
use hermes_book::market::{Applied, Instrument, Market};
use hermes_book::{InstId, Level, Scale, TradeSide};
use hermes_ingest::json::Scanner;
use hermes_ingest::{DecodeStats, Decoder, DecoderOptions, Event, Frame, Venue};

/// The tables an export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Every trade.
    Trades,
    /// Top-N levels per publication (or per `--every-ms`).
    Book,
    /// Every kernel of the shm slot, per publication.
    Features,
    /// The mid `horizon` after each feature row.
    Labels,
}

impl Table {
    /// Every table, in directory order.
    pub const ALL: [Table; 4] = [Table::Trades, Table::Book, Table::Features, Table::Labels];

    /// The directory name (`trades`, `book`, `features`, `labels`).
    pub fn name(self) -> &'static str {
        match self {
            Table::Trades => "trades",
            Table::Book => "book",
            Table::Features => "features",
            Table::Labels => "labels",
        }
    }

    /// The table of a [`name`](Table::name).
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Flag of [`TradeRow::flags`]: the venue aggregated several fills into this trade
/// (Binance `aggTrade`).
pub const TRADE_AGGREGATED: u32 = 1;
/// Flag of [`TradeRow::flags`]: the instrument's book was stale (waiting for a snapshot
/// after a gap) when the trade arrived.
pub const TRADE_BOOK_STALE: u32 = 1 << 1;

/// What the rows of one instrument share.
#[derive(Clone, Debug)]
pub struct InstrumentInfo {
    /// Input the rows come from: a file name, or a journal segment name.
    pub source: Arc<str>,
    /// Venue.
    pub venue: Venue,
    /// Venue symbol.
    pub symbol: Arc<str>,
    /// Decimals of prices and sizes.
    pub scale: Scale,
    /// Decimals of the averaged kernel prices (mid, microprice, VWAP): `kp`.
    pub kernel_price_decimals: u8,
}

/// A `trades` row. Prices and sizes are mantissas at the instrument's scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRow {
    /// Index of the row among the source's trade rows.
    pub row: u64,
    /// Time axis: receive time of the frame (see [`Exporter`] for inputs without one).
    pub ts_ns: i64,
    /// Receive time of the frame (0 when the input has none).
    pub recv_ns: i64,
    /// The venue's trade time.
    pub exch_ns: i64,
    /// Venue trade id.
    pub trade_id: u64,
    /// Price mantissa.
    pub price: i64,
    /// Size mantissa.
    pub size: i64,
    /// Aggressor side.
    pub side: TradeSide,
    /// `TRADE_*` bits.
    pub flags: u32,
}

/// A `book` row: the state after one publication.
#[derive(Clone, Copy, Debug)]
pub struct BookRow<'a> {
    /// Index of the row among the source's book rows.
    pub row: u64,
    /// Time axis.
    pub ts_ns: i64,
    /// Receive time of the frame (0 when the input has none).
    pub recv_ns: i64,
    /// Exchange time of the last book change (0 when the venue gives none).
    pub exch_ns: i64,
    /// Venue update id of the last book change (the slot's `seq` in `--print-final`).
    pub update_id: u64,
    /// The market model's `FLAG_*` bits.
    pub flags: u64,
    /// Publications of the instrument so far.
    pub updates: u64,
    /// Shown best bid (from the book, or a newer venue quote).
    pub bid: Option<Level>,
    /// Shown best ask.
    pub ask: Option<Level>,
    /// The book's bid levels, best first, at most the export's depth.
    pub bids: &'a [Level],
    /// The book's ask levels.
    pub asks: &'a [Level],
}

/// A `features` row: the shm slot's kernels at one publication.
#[derive(Clone, Copy, Debug)]
pub struct FeatureRow {
    /// Index of the row among the source's feature rows (the key of its label).
    pub row: u64,
    /// Time axis.
    pub ts_ns: i64,
    /// Receive time of the frame (0 when the input has none).
    pub recv_ns: i64,
    /// Exchange time of the last book change (0 when the venue gives none).
    pub exch_ns: i64,
    /// Venue update id of the last book change.
    pub update_id: u64,
    /// The market model's `FLAG_*` bits.
    pub flags: u64,
    /// Shown best bid.
    pub bid: Option<Level>,
    /// Shown best ask.
    pub ask: Option<Level>,
    /// Every kernel, as the slot holds them.
    pub kernels: KernelValues,
}

/// A `labels` row: what the mid did `horizon_ns` after a feature row.
///
/// The label of feature row `i` (time `t`, target `T = t + horizon`) is settled by the
/// first later feature row `j` of the same source whose time is past the target
/// (`max(ts[..=j]) > T`, a running maximum so a clock that steps back settles nothing
/// early): `label_mid` is the instrument's mid in its last feature row before `j`, which is
/// the mid at `T` when times increase. `labelled_at_ns` is row `j`'s time: when a backtest
/// may first use the label. A row whose target lies past the source's last feature row
/// keeps `label_mid` and `labelled_at_ns` null: never guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelRow {
    /// The feature row's index.
    pub row: u64,
    /// The feature row's time.
    pub ts_ns: i64,
    /// The horizon.
    pub horizon_ns: i64,
    /// The feature row's mid (at `kernel_price_decimals`).
    pub mid: Option<i64>,
    /// The mid at `ts_ns + horizon_ns`.
    pub label_mid: Option<i64>,
    /// When the label became known; `None` when the data ends first.
    pub labelled_at_ns: Option<i64>,
}

impl LabelRow {
    /// `label_mid − mid`, when both are known.
    pub fn mid_change(&self) -> Option<i64> {
        self.label_mid?.checked_sub(self.mid?)
    }

    /// The sign of [`mid_change`](Self::mid_change): −1, 0 or 1.
    pub fn sign(&self) -> Option<i8> {
        self.mid_change().map(|d| d.signum() as i8)
    }
}

/// Where the [`Exporter`] puts rows: the Parquet dataset, a CSV writer in the benchmark,
/// a `Vec` in tests.
pub trait RowSink {
    /// A `trades` row.
    fn trade(&mut self, inst: &InstrumentInfo, row: &TradeRow);
    /// A `book` row.
    fn book(&mut self, inst: &InstrumentInfo, row: &BookRow<'_>);
    /// A `features` row.
    fn feature(&mut self, inst: &InstrumentInfo, row: &FeatureRow);
    /// A `labels` row.
    fn label(&mut self, inst: &InstrumentInfo, row: &LabelRow);
}

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Decoder settings (decimals per instrument): must match the engine's.
    pub decoder: DecoderOptions,
    /// Kernel settings: must match the engine's for the features to be the slot's.
    pub kernels: KernelConfig,
    /// Tables to write.
    pub tables: Vec<Table>,
    /// Only these venues (all when empty).
    pub venues: Vec<Venue>,
    /// Levels per side in `book` rows.
    pub depth: usize,
    /// `book` sampling: 0 = every publication; else the first publication of an
    /// instrument in each interval of this many ns of `ts_ns`.
    pub every_ns: i64,
    /// The label horizon, ns.
    pub horizon_ns: i64,
}

impl Default for ExportOptions {
    /// Every table and venue, 10 levels, every publication, a 500 ms horizon, the
    /// engine's default decimals and kernels.
    fn default() -> Self {
        ExportOptions {
            decoder: DecoderOptions::default(),
            kernels: KernelConfig::default(),
            tables: Table::ALL.to_vec(),
            venues: Vec::new(),
            depth: 10,
            every_ns: 0,
            horizon_ns: 500_000_000,
        }
    }
}

impl ExportOptions {
    /// `true` when `t` is written.
    pub fn has(&self, t: Table) -> bool {
        self.tables.contains(&t)
    }
}

/// A feature row waiting for its label. Ordered by target time, then row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PendingLabel {
    target_ns: i64,
    row: u64,
    ts_ns: i64,
    inst: u32,
    mid: Option<i64>,
}

/// Per instrument: whether it is exported, its row metadata and sampling state.
#[derive(Debug)]
struct InstState {
    info: Option<InstrumentInfo>,
    book_bucket: Option<i64>,
    /// The mid of its last feature row.
    last_mid: Option<i64>,
}

/// Counters of an export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Rows per table, in [`Table::ALL`] order.
    pub rows: [u64; 4],
}

impl RowCounts {
    /// Rows of one table.
    pub fn get(&self, t: Table) -> u64 {
        self.rows[t as usize]
    }

    /// All rows.
    pub fn total(&self) -> u64 {
        self.rows.iter().sum()
    }
}

/// Frames in, rows out, for one source (a file, or a journal segment): its decoder and
/// market start empty, as the engine's do when it replays the file or starts the run.
///
/// The time axis `ts_ns` of every row is the frame's receive time; frames without one
/// (plain JSON lines) use the venue's time of the change instead (the last book change's
/// exchange time or the trade's time, whichever is later).
pub struct Exporter {
    opts: ExportOptions,
    source: Arc<str>,
    decoder: Decoder,
    market: Market,
    events: Vec<Event>,
    insts: Vec<InstState>,
    bids: Vec<Level>,
    asks: Vec<Level>,
    next_row: [u64; 4],
    emitted: RowCounts,
    pending: BinaryHeap<std::cmp::Reverse<PendingLabel>>,
    clock: i64,
    decode_errors: u64,
    frames: u64,
    bytes: u64,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("source", &self.source)
            .field("frames", &self.frames)
            .field("rows", &self.emitted)
            .finish()
    }
}

/// Coinbase's `sequence_num`, read without decoding the frame.
fn coinbase_sequence(data: &[u8]) -> Option<u64> {
    let mut s = Scanner::new(data);
    s.object_begin().ok()?;
    let mut first = true;
    while let Some(k) = s.key(&mut first).ok()? {
        if k == b"sequence_num" {
            return s.u64().ok();
        }
        s.skip().ok()?;
    }
    None
}

impl Exporter {
    /// An exporter for the source named `source` (the `source` column).
    pub fn new(opts: ExportOptions, source: &str) -> Exporter {
        Exporter {
            decoder: Decoder::new(opts.decoder.clone()),
            market: Market::new(opts.kernels),
            source: source.into(),
            events: Vec::with_capacity(1024),
            insts: Vec::new(),
            bids: Vec::with_capacity(opts.depth),
            asks: Vec::with_capacity(opts.depth),
            next_row: [0; 4],
            emitted: RowCounts::default(),
            pending: BinaryHeap::new(),
            clock: i64::MIN,
            decode_errors: 0,
            frames: 0,
            bytes: 0,
            opts,
        }
    }

    /// The market model (for checks against the engine).
    pub fn market(&self) -> &Market {
        &self.market
    }

    /// Rows handed to the sink so far.
    pub fn rows(&self) -> RowCounts {
        self.emitted
    }

    /// Frames seen and their bytes.
    pub fn frames(&self) -> (u64, u64) {
        (self.frames, self.bytes)
    }

    /// Frames the decoder refused (each counted, as the engine counts them).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// The decoder's counters.
    pub fn decode_stats(&self) -> DecodeStats {
        self.decoder.stats()
    }

    /// Runs one frame. With `emit` false the state advances (books, kernels, row
    /// numbers, pending labels) but the sink gets nothing: the warm-up of a journal
    /// reader from a segment's start to its committed offset.
    pub fn frame(&mut self, frame: &Frame<'_>, emit: bool, sink: &mut dyn RowSink) {
        self.frames += 1;
        self.bytes += frame.data.len() as u64;
        if frame.venue == Venue::Coinbase && coinbase_sequence(frame.data) == Some(0) {
            // A Coinbase connection numbers its frames from 0: sequence 0 is a new
            // connection (a reconnect). The live engine resets the connection's sequence
            // then; the persister's projector mirrors it from the journal, and so does this.
            self.decoder.reset_coinbase_connection(frame.conn);
        }
        self.events.clear();
        if self.decoder.decode(frame, &mut self.events).is_err() {
            self.decode_errors += 1;
        }
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            self.apply(ev, frame, emit, sink);
        }
        self.events = events;
    }

    /// Ends the source: labels still waiting are written with null `label_mid`, since
    /// the data ends before their horizon.
    pub fn finish(&mut self, emit: bool, sink: &mut dyn RowSink) {
        while let Some(std::cmp::Reverse(p)) = self.pending.pop() {
            self.label(p, None, None, emit, sink);
        }
    }

    fn exported(&self, venue: Venue) -> bool {
        self.opts.venues.is_empty() || self.opts.venues.contains(&venue)
    }

    fn apply(&mut self, ev: &Event, frame: &Frame<'_>, emit: bool, sink: &mut dyn RowSink) {
        let inst = match self.market.apply(ev) {
            Applied::Staged => return,
            Applied::Defined(inst) => {
                let i = self.market.instrument(inst);
                let info = self.exported(i.venue).then(|| InstrumentInfo {
                    source: self.source.clone(),
                    venue: i.venue,
                    symbol: i.symbol.as_str().into(),
                    scale: i.scale,
                    kernel_price_decimals: i.kernels().price_decimals(),
                });
                self.insts.push(InstState {
                    info,
                    book_bucket: None,
                    last_mid: None,
                });
                return;
            }
            Applied::Changed(inst) => inst,
        };
        if self.insts[inst.0 as usize].info.is_none() {
            return;
        }
        let i = self.market.instrument(inst);
        let ts_ns = if frame.recv_ts_ns > 0 {
            frame.recv_ts_ns
        } else {
            i.top.exch_ts_ns.max(i.top.kernels.time_ns)
        };
        if let Event::Trade {
            side,
            trade_id,
            price,
            qty,
            ts_ns: trade_ns,
            ..
        } = *ev
        {
            let stale = i.is_stale();
            let row = self.next(Table::Trades);
            if emit && self.opts.has(Table::Trades) {
                let mut flags = 0;
                if frame.venue == Venue::Binance && is_agg_trade(frame.data) {
                    flags |= TRADE_AGGREGATED;
                }
                if stale {
                    flags |= TRADE_BOOK_STALE;
                }
                let r = TradeRow {
                    row,
                    ts_ns: if frame.recv_ts_ns > 0 {
                        frame.recv_ts_ns
                    } else {
                        trade_ns
                    },
                    recv_ns: frame.recv_ts_ns,
                    exch_ns: trade_ns,
                    trade_id,
                    price: price.0,
                    size: qty.0,
                    side,
                    flags,
                };
                self.emitted.rows[Table::Trades as usize] += 1;
                sink.trade(self.info(inst), &r);
            }
        }
        self.book_row(inst, ts_ns, frame.recv_ts_ns, emit, sink);
        self.feature_row(inst, ts_ns, frame.recv_ts_ns, emit, sink);
    }

    fn info(&self, inst: InstId) -> &InstrumentInfo {
        self.insts[inst.0 as usize]
            .info
            .as_ref()
            .expect("rows are made for exported instruments only")
    }

    fn next(&mut self, t: Table) -> u64 {
        let r = self.next_row[t as usize];
        self.next_row[t as usize] += 1;
        r
    }

    fn book_row(
        &mut self,
        inst: InstId,
        ts_ns: i64,
        recv_ns: i64,
        emit: bool,
        sink: &mut dyn RowSink,
    ) {
        if !self.opts.has(Table::Book) {
            return;
        }
        if self.opts.every_ns > 0 {
            let b = ts_ns.div_euclid(self.opts.every_ns);
            let st = &mut self.insts[inst.0 as usize];
            if st.book_bucket == Some(b) {
                return;
            }
            st.book_bucket = Some(b);
        }
        let row = self.next(Table::Book);
        if !emit {
            return;
        }
        let i: &Instrument = self.market.instrument(inst);
        self.bids.clear();
        self.bids.extend(i.book.bids().take(self.opts.depth));
        self.asks.clear();
        self.asks.extend(i.book.asks().take(self.opts.depth));
        let top = &i.top;
        let r = BookRow {
            row,
            ts_ns,
            recv_ns,
            exch_ns: top.exch_ts_ns,
            update_id: top.update_id,
            flags: top.flags,
            updates: top.updates,
            bid: top.bid(),
            ask: top.ask(),
            bids: &self.bids,
            asks: &self.asks,
        };
        self.emitted.rows[Table::Book as usize] += 1;
        let info = self.insts[inst.0 as usize]
            .info
            .as_ref()
            .expect("exported instrument");
        sink.book(info, &r);
    }

    fn feature_row(
        &mut self,
        inst: InstId,
        ts_ns: i64,
        recv_ns: i64,
        emit: bool,
        sink: &mut dyn RowSink,
    ) {
        let row = self.next(Table::Features);
        let top = self.market.instrument(inst).top;
        // Settle every label whose target the clock has passed, before this row's mid
        // counts as its instrument's latest.
        self.clock = self.clock.max(ts_ns);
        while let Some(std::cmp::Reverse(p)) = self.pending.peek().copied() {
            if p.target_ns >= self.clock {
                break;
            }
            self.pending.pop();
            let mid = self.insts[p.inst as usize].last_mid;
            self.label(p, mid, Some(ts_ns), emit, sink);
        }
        let mid = top.kernels.mid;
        self.insts[inst.0 as usize].last_mid = mid;
        if self.opts.has(Table::Labels) {
            self.pending.push(std::cmp::Reverse(PendingLabel {
                target_ns: ts_ns.saturating_add(self.opts.horizon_ns),
                row,
                ts_ns,
                inst: inst.0,
                mid,
            }));
        }
        if emit && self.opts.has(Table::Features) {
            let r = FeatureRow {
                row,
                ts_ns,
                recv_ns,
                exch_ns: top.exch_ts_ns,
                update_id: top.update_id,
                flags: top.flags,
                bid: top.bid(),
                ask: top.ask(),
                kernels: top.kernels,
            };
            self.emitted.rows[Table::Features as usize] += 1;
            sink.feature(self.info(inst), &r);
        }
    }

    fn label(
        &mut self,
        p: PendingLabel,
        label_mid: Option<i64>,
        at: Option<i64>,
        emit: bool,
        sink: &mut dyn RowSink,
    ) {
        if !emit {
            return;
        }
        let r = LabelRow {
            row: p.row,
            ts_ns: p.ts_ns,
            horizon_ns: self.opts.horizon_ns,
            mid: p.mid,
            label_mid: at.and(label_mid),
            labelled_at_ns: at,
        };
        self.emitted.rows[Table::Labels as usize] += 1;
        let info = self.insts[p.inst as usize]
            .info
            .as_ref()
            .expect("exported instrument");
        sink.label(info, &r);
    }
}

/// `true` for a Binance `aggTrade` frame.
fn is_agg_trade(data: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"e\":\"aggTrade\"";
    data.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// A `book` row as [`VecSink`] keeps it: symbol, row, bids, asks.
pub type OwnedBookRow = (Arc<str>, u64, Vec<Level>, Vec<Level>);

/// A [`RowSink`] that keeps every row, for tests and small exports.
#[derive(Debug, Default)]
pub struct VecSink {
    /// `trades` rows with their symbol.
    pub trades: Vec<(Arc<str>, TradeRow)>,
    /// `book` rows: symbol, row, bids, asks.
    pub book: Vec<OwnedBookRow>,
    /// `features` rows with their symbol.
    pub features: Vec<(Arc<str>, FeatureRow)>,
    /// `labels` rows with their symbol.
    pub labels: Vec<(Arc<str>, LabelRow)>,
}

impl RowSink for VecSink {
    fn trade(&mut self, inst: &InstrumentInfo, row: &TradeRow) {
        self.trades.push((inst.symbol.clone(), *row));
    }
    fn book(&mut self, inst: &InstrumentInfo, row: &BookRow<'_>) {
        self.book.push((
            inst.symbol.clone(),
            row.row,
            row.bids.to_vec(),
            row.asks.to_vec(),
        ));
    }
    fn feature(&mut self, inst: &InstrumentInfo, row: &FeatureRow) {
        self.features.push((inst.symbol.clone(), *row));
    }
    fn label(&mut self, inst: &InstrumentInfo, row: &LabelRow) {
        self.labels.push((inst.symbol.clone(), *row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coinbase_sequence_is_read() {
        assert_eq!(
            coinbase_sequence(br#"{"channel":"l2_data","sequence_num":14,"events":[]}"#),
            Some(14)
        );
        assert_eq!(coinbase_sequence(br#"{"channel":"x"}"#), None);
        assert_eq!(coinbase_sequence(b"{\"a\":"), None);
    }

    #[test]
    fn agg_trade_flag() {
        assert!(is_agg_trade(
            br#"{"stream":"x@aggTrade","data":{"e":"aggTrade","a":1}}"#
        ));
        assert!(!is_agg_trade(br#"{"data":{"e":"trade"}}"#));
    }

    #[test]
    fn label_sign() {
        let mut l = LabelRow {
            row: 0,
            ts_ns: 0,
            horizon_ns: 1,
            mid: Some(100),
            label_mid: Some(99),
            labelled_at_ns: Some(5),
        };
        assert_eq!((l.mid_change(), l.sign()), (Some(-1), Some(-1)));
        l.label_mid = None;
        assert_eq!(l.sign(), None);
    }
}
