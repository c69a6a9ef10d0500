//! The Parquet side: [`Dataset`] is a [`RowSink`] that writes each table as
//! Hive-partitioned files, `DIR/<table>/venue=<venue>/date=YYYY-MM-DD/part-<stem>.parquet`.
//!
//! Rows are buffered per file and handed to the `parquet` crate's [`ArrowWriter`] in
//! batches; a file is written under a hidden temporary name (`.part-….parquet.tmp`,
//! which Hive readers skip) and renamed to its final name by [`Dataset::commit`], after
//! its footer is written and the file is synced: a reader never sees half a file.
//!
//! Files hold one venue, one UTC date (of `ts_ns`) and one instrument scale each: the
//! decimal columns' scale is the instrument's, and a Parquet column has one type per file.
//! With the engine's default (`--decimals 8` for every instrument) that is one file per
//! table, venue and date; a `--scale` override puts its instruments in files of their
//! own, named `…-p<price decimals>s<size decimals>.parquet`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, Int8Array, StringArray,
    UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use hermes_book::{Level, Venue};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::rows::{BookRow, FeatureRow, InstrumentInfo, LabelRow, RowSink, Table, TradeRow};
use crate::ParquetError;

/// Precision of every decimal column: 19 digits hold any `i64` mantissa
/// (|m| ≤ 9,223,372,036,854,775,807). Parquet stores precision 19 as a 9-byte
/// `FIXED_LEN_BYTE_ARRAY`; precision 18, the most an `INT64` may carry, would refuse
/// mantissas from 10^18 up.
pub const DECIMAL_PRECISION: u8 = 19;
/// Decimals of ratios in ppm (`imbalance`, `trade_imbalance`): `imbalance_ppm / 10^6`.
pub const PPM_DECIMALS: u8 = 6;
/// Decimals of values kept ×100 (`spread_bps`, `updates_per_s`).
pub const X100_DECIMALS: u8 = 2;
/// Rows per Parquet row group at most: large enough for scans to read long runs of a
/// column and for the row-group statistics to prune whole hours, small enough to keep a
/// writer's memory bounded.
pub const ROW_GROUP_ROWS: usize = 1 << 20;
/// Encoded bytes per row group at most (the other bound).
pub const ROW_GROUP_BYTES: usize = 128 << 20;
/// Rows buffered per file before they are encoded.
const BATCH_ROWS: usize = 16_384;

/// Layout settings of a dataset.
#[derive(Clone, Debug)]
pub struct DatasetOptions {
    /// The dataset's directory.
    pub dir: PathBuf,
    /// Levels per side in the `book` table's columns.
    pub depth: usize,
    /// zstd level.
    pub zstd_level: i32,
    /// Key-value metadata written into every file's footer (settings, provenance).
    pub metadata: Vec<(String, String)>,
    /// The engine's default decimals: files of instruments at another scale get a
    /// `-p<P>s<S>` suffix.
    pub default_scale: hermes_book::Scale,
}

/// Which file a row goes to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FileKey {
    table: Table,
    venue: Venue,
    day: i64,
    price_decimals: u8,
    size_decimals: u8,
}

/// Rows of one file not yet encoded.
#[derive(Debug)]
enum Buffer {
    Trades(Vec<(Arc<str>, TradeRow)>),
    Book {
        heads: Vec<(Arc<str>, BookHead)>,
        /// `depth` bids then `depth` asks per row.
        levels: Vec<Option<Level>>,
    },
    Features(Vec<(Arc<str>, FeatureRow)>),
    Labels(Vec<(Arc<str>, LabelRow)>),
}

/// A book row without its borrowed levels.
#[derive(Clone, Copy, Debug)]
struct BookHead {
    row: u64,
    ts_ns: i64,
    recv_ns: i64,
    exch_ns: i64,
    update_id: u64,
    flags: u64,
    updates: u64,
    bid: Option<Level>,
    ask: Option<Level>,
    bid_levels: u32,
    ask_levels: u32,
}

impl Buffer {
    fn new(t: Table) -> Buffer {
        match t {
            Table::Trades => Buffer::Trades(Vec::new()),
            Table::Book => Buffer::Book {
                heads: Vec::new(),
                levels: Vec::new(),
            },
            Table::Features => Buffer::Features(Vec::new()),
            Table::Labels => Buffer::Labels(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Buffer::Trades(v) => v.len(),
            Buffer::Book { heads, .. } => heads.len(),
            Buffer::Features(v) => v.len(),
            Buffer::Labels(v) => v.len(),
        }
    }
}

struct OpenFile {
    tmp: PathBuf,
    path: PathBuf,
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    buffer: Buffer,
    source: Arc<str>,
    kernel_price_decimals: u8,
    rows: u64,
}

/// A file [`Dataset::commit`] made visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its table.
    pub table: Table,
    /// Its final path.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
}

/// A Parquet dataset being written: a [`RowSink`] whose files become visible at
/// [`Dataset::commit`].
pub struct Dataset {
    opts: DatasetOptions,
    stem: String,
    files: BTreeMap<FileKey, OpenFile>,
    error: Option<ParquetError>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("dir", &self.opts.dir)
            .field("open_files", &self.files.len())
            .finish()
    }
}

/// Days since the Unix epoch (UTC) of `ns`.
pub fn day_of_ns(ns: i64) -> i64 {
    ns.div_euclid(86_400_000_000_000)
}

/// `YYYY-MM-DD` of a day number (proleptic Gregorian, UTC).
pub fn date_of_day(day: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ParquetError + '_ {
    move |source| ParquetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Syncs a directory, so a rename in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ParquetError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The Arrow schema of `table` for instruments of this scale.
pub fn schema(
    table: Table,
    scale: hermes_book::Scale,
    kernel_price_decimals: u8,
    depth: usize,
) -> Schema {
    let (p, s, kp) = (
        scale.price_decimals,
        scale.size_decimals,
        kernel_price_decimals,
    );
    let dec = |name: &str, scale: u8, nullable: bool| {
        Field::new(
            name,
            DataType::Decimal128(DECIMAL_PRECISION, scale as i8),
            nullable,
        )
    };
    let i64f = |name: &str, nullable: bool| Field::new(name, DataType::Int64, nullable);
    let u64f = |name: &str| Field::new(name, DataType::UInt64, false);
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    let mut f = if table == Table::Labels {
        vec![
            text("source"),
            u64f("row"),
            i64f("ts_ns", false),
            text("symbol"),
        ]
    } else {
        vec![
            text("source"),
            u64f("row"),
            i64f("ts_ns", false),
            i64f("recv_ns", false),
            i64f("exch_ns", true),
            text("symbol"),
        ]
    };
    match table {
        Table::Trades => {
            f.extend([
                u64f("trade_id"),
                dec("price", p, false),
                dec("size", s, false),
                text("side"),
                Field::new("flags", DataType::UInt32, false),
            ]);
        }
        Table::Book => {
            f.extend([
                u64f("update_id"),
                u64f("flags"),
                u64f("updates"),
                Field::new("stale", DataType::Boolean, false),
                dec("bid_price", p, true),
                dec("bid_size", s, true),
                dec("ask_price", p, true),
                dec("ask_size", s, true),
                Field::new("bid_levels", DataType::UInt32, false),
                Field::new("ask_levels", DataType::UInt32, false),
            ]);
            for side in ["bid", "ask"] {
                for k in 0..depth {
                    f.push(dec(&format!("{side}_{k}_price"), p, true));
                    f.push(dec(&format!("{side}_{k}_size"), s, true));
                }
            }
        }
        Table::Features => {
            f.extend([
                u64f("update_id"),
                u64f("flags"),
                Field::new("stale", DataType::Boolean, false),
                i64f("kernel_ns", false),
                dec("bid_price", p, true),
                dec("bid_size", s, true),
                dec("ask_price", p, true),
                dec("ask_size", s, true),
                dec("spread", p, true),
                dec("spread_bps", X100_DECIMALS, true),
                dec("mid", kp, true),
                dec("microprice", kp, true),
                dec("bid_depth", s, false),
                dec("ask_depth", s, false),
                dec("imbalance", PPM_DECIMALS, true),
                dec("vwap_buy", kp, true),
                dec("vwap_sell", kp, true),
                Field::new("volatility_bps", DataType::Float64, true),
                dec("trade_buy_size", s, false),
                dec("trade_sell_size", s, false),
                dec("trade_imbalance", PPM_DECIMALS, true),
                dec("ofi_window", s, false),
                dec("ofi_total", s, false),
                dec("updates_per_s", X100_DECIMALS, false),
            ]);
        }
        Table::Labels => {
            f.extend([
                i64f("horizon_ns", false),
                dec("mid", kp, true),
                i64f("label_ns", false),
                dec("label_mid", kp, true),
                dec("mid_change", kp, true),
                Field::new("label", DataType::Int8, true),
                i64f("labelled_at_ns", true),
            ]);
        }
    }
    Schema::new(f)
}

fn decimals(v: impl Iterator<Item = Option<i64>>, scale: u8) -> Result<ArrayRef, ParquetError> {
    Ok(Arc::new(
        v.map(|x| x.map(i128::from))
            .collect::<Decimal128Array>()
            .with_precision_and_scale(DECIMAL_PRECISION, scale as i8)?,
    ))
}

fn nz(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

/// Builds a batch from a file's buffered rows (and empties the buffer).
fn batch(
    schema: &SchemaRef,
    buffer: &mut Buffer,
    source: &str,
    scale: (u8, u8, u8),
    depth: usize,
) -> Result<RecordBatch, ParquetError> {
    let (p, s, kp) = scale;
    let n = buffer.len();
    let src: ArrayRef = Arc::new(StringArray::from(vec![source; n]));
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    macro_rules! common {
        ($rows:expr, $sym:expr, $row:expr, $ts:expr, $recv:expr, $exch:expr) => {{
            cols.push(src.clone());
            cols.push(Arc::new(UInt64Array::from_iter_values(
                $rows.iter().map($row),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                $rows.iter().map($ts),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                $rows.iter().map($recv),
            )));
            cols.push(Arc::new($rows.iter().map($exch).collect::<Int64Array>()));
            cols.push(Arc::new($rows.iter().map($sym).collect::<StringArray>()));
        }};
    }
    match buffer {
        Buffer::Trades(rows) => {
            common!(
                rows,
                |(sym, _): &(Arc<str>, TradeRow)| Some(sym.to_string()),
                |(_, r): &(Arc<str>, TradeRow)| r.row,
                |(_, r): &(Arc<str>, TradeRow)| r.ts_ns,
                |(_, r): &(Arc<str>, TradeRow)| r.recv_ns,
                |(_, r): &(Arc<str>, TradeRow)| nz(r.exch_ns)
            );
            cols.push(Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(_, r)| r.trade_id),
            )));
            cols.push(decimals(rows.iter().map(|(_, r)| Some(r.price)), p)?);
            cols.push(decimals(rows.iter().map(|(_, r)| Some(r.size)), s)?);
            cols.push(Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, r)| r.side.name()),
            )));
            cols.push(Arc::new(UInt32Array::from_iter_values(
                rows.iter().map(|(_, r)| r.flags),
            )));
            rows.clear();
        }
        Buffer::Book { heads, levels } => {
            common!(
                heads,
                |(sym, _): &(Arc<str>, BookHead)| Some(sym.to_string()),
                |(_, r): &(Arc<str>, BookHead)| r.row,
                |(_, r): &(Arc<str>, BookHead)| r.ts_ns,
                |(_, r): &(Arc<str>, BookHead)| r.recv_ns,
                |(_, r): &(Arc<str>, BookHead)| nz(r.exch_ns)
            );
            let h = || heads.iter().map(|(_, r)| r);
            cols.push(Arc::new(UInt64Array::from_iter_values(
                h().map(|r| r.update_id),
            )));
            cols.push(Arc::new(UInt64Array::from_iter_values(
                h().map(|r| r.flags),
            )));
            cols.push(Arc::new(UInt64Array::from_iter_values(
                h().map(|r| r.updates),
            )));
            cols.push(Arc::new(BooleanArray::from_iter(
                h().map(|r| Some(r.flags & hermes_book::market::FLAG_STALE != 0)),
            )));
            cols.push(decimals(h().map(|r| r.bid.map(|l| l.price.0)), p)?);
            cols.push(decimals(h().map(|r| r.bid.map(|l| l.qty.0)), s)?);
            cols.push(decimals(h().map(|r| r.ask.map(|l| l.price.0)), p)?);
            cols.push(decimals(h().map(|r| r.ask.map(|l| l.qty.0)), s)?);
            cols.push(Arc::new(UInt32Array::from_iter_values(
                h().map(|r| r.bid_levels),
            )));
            cols.push(Arc::new(UInt32Array::from_iter_values(
                h().map(|r| r.ask_levels),
            )));
            let stride = 2 * depth;
            for side in 0..2 {
                for k in 0..depth {
                    let at = side * depth + k;
                    let lv = || levels.chunks_exact(stride.max(1)).map(move |c| c[at]);
                    cols.push(decimals(lv().map(|l| l.map(|l| l.price.0)), p)?);
                    cols.push(decimals(lv().map(|l| l.map(|l| l.qty.0)), s)?);
                }
            }
            heads.clear();
            levels.clear();
        }
        Buffer::Features(rows) => {
            common!(
                rows,
                |(sym, _): &(Arc<str>, FeatureRow)| Some(sym.to_string()),
                |(_, r): &(Arc<str>, FeatureRow)| r.row,
                |(_, r): &(Arc<str>, FeatureRow)| r.ts_ns,
                |(_, r): &(Arc<str>, FeatureRow)| r.recv_ns,
                |(_, r): &(Arc<str>, FeatureRow)| nz(r.exch_ns)
            );
            let h = || rows.iter().map(|(_, r)| r);
            let k = || rows.iter().map(|(_, r)| &r.kernels);
            cols.push(Arc::new(UInt64Array::from_iter_values(
                h().map(|r| r.update_id),
            )));
            cols.push(Arc::new(UInt64Array::from_iter_values(
                h().map(|r| r.flags),
            )));
            cols.push(Arc::new(BooleanArray::from_iter(
                h().map(|r| Some(r.flags & hermes_book::market::FLAG_STALE != 0)),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                k().map(|k| k.time_ns),
            )));
            cols.push(decimals(h().map(|r| r.bid.map(|l| l.price.0)), p)?);
            cols.push(decimals(h().map(|r| r.bid.map(|l| l.qty.0)), s)?);
            cols.push(decimals(h().map(|r| r.ask.map(|l| l.price.0)), p)?);
            cols.push(decimals(h().map(|r| r.ask.map(|l| l.qty.0)), s)?);
            cols.push(decimals(k().map(|k| k.spread_ticks), p)?);
            cols.push(decimals(k().map(|k| k.spread_bps_x100), X100_DECIMALS)?);
            cols.push(decimals(k().map(|k| k.mid), kp)?);
            cols.push(decimals(k().map(|k| k.microprice), kp)?);
            cols.push(decimals(k().map(|k| Some(k.bid_depth)), s)?);
            cols.push(decimals(k().map(|k| Some(k.ask_depth)), s)?);
            cols.push(decimals(k().map(|k| k.imbalance_ppm), PPM_DECIMALS)?);
            cols.push(decimals(k().map(|k| k.vwap_buy), kp)?);
            cols.push(decimals(k().map(|k| k.vwap_sell), kp)?);
            cols.push(Arc::new(
                k().map(|k| k.volatility_bps).collect::<Float64Array>(),
            ));
            cols.push(decimals(k().map(|k| Some(k.trade_buy_qty)), s)?);
            cols.push(decimals(k().map(|k| Some(k.trade_sell_qty)), s)?);
            cols.push(decimals(k().map(|k| k.trade_imbalance_ppm), PPM_DECIMALS)?);
            cols.push(decimals(k().map(|k| Some(k.ofi_window)), s)?);
            cols.push(decimals(k().map(|k| Some(k.ofi_total)), s)?);
            cols.push(decimals(
                k().map(|k| Some(i64::try_from(k.updates_per_s_x100).unwrap_or(i64::MAX))),
                X100_DECIMALS,
            )?);
            rows.clear();
        }
        Buffer::Labels(rows) => {
            let h = || rows.iter().map(|(_, r)| r);
            cols.push(src.clone());
            cols.push(Arc::new(UInt64Array::from_iter_values(h().map(|r| r.row))));
            cols.push(Arc::new(Int64Array::from_iter_values(h().map(|r| r.ts_ns))));
            cols.push(Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(sym, _)| &**sym),
            )));
            cols.push(Arc::new(Int64Array::from_iter_values(
                h().map(|r| r.horizon_ns),
            )));
            cols.push(decimals(h().map(|r| r.mid), kp)?);
            cols.push(Arc::new(Int64Array::from_iter_values(
                h().map(|r| r.ts_ns.saturating_add(r.horizon_ns)),
            )));
            cols.push(decimals(h().map(|r| r.label_mid), kp)?);
            cols.push(decimals(h().map(|r| r.mid_change()), kp)?);
            cols.push(Arc::new(h().map(|r| r.sign()).collect::<Int8Array>()));
            cols.push(Arc::new(
                h().map(|r| r.labelled_at_ns).collect::<Int64Array>(),
            ));
            rows.clear();
        }
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

impl Dataset {
    /// A dataset in `opts.dir` whose files of this cycle are named `part-<stem>….parquet`.
    pub fn new(opts: DatasetOptions, stem: &str) -> Dataset {
        Dataset {
            opts,
            stem: stem.to_string(),
            files: BTreeMap::new(),
            error: None,
        }
    }

    /// The file name stem of the files opened from now on.
    pub fn set_stem(&mut self, stem: &str) {
        self.stem = stem.to_string();
    }

    /// Rows buffered or written into files not yet committed.
    pub fn open_rows(&self) -> u64 {
        self.files.values().map(|f| f.rows).sum()
    }

    /// The table directory of a partition.
    pub fn partition_dir(dir: &Path, table: Table, venue: Venue, day: i64) -> PathBuf {
        dir.join(table.name())
            .join(format!("venue={}", venue.name()))
            .join(format!("date={}", date_of_day(day)))
    }

    fn open(&mut self, key: &FileKey, inst: &InstrumentInfo) -> Result<OpenFile, ParquetError> {
        let dir = Self::partition_dir(&self.opts.dir, key.table, key.venue, key.day);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let d = self.opts.default_scale;
        let suffix =
            if (key.price_decimals, key.size_decimals) == (d.price_decimals, d.size_decimals) {
                String::new()
            } else {
                format!("-p{}s{}", key.price_decimals, key.size_decimals)
            };
        let name = format!("part-{}{suffix}.parquet", self.stem);
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let schema: SchemaRef = Arc::new(schema(
            key.table,
            inst.scale,
            inst.kernel_price_decimals,
            self.opts.depth,
        ));
        let mut kv: Vec<KeyValue> = self
            .opts
            .metadata
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        kv.push(KeyValue::new(
            "hermes.table".into(),
            key.table.name().to_string(),
        ));
        kv.push(KeyValue::new(
            "hermes.source".into(),
            inst.source.to_string(),
        ));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(self.opts.zstd_level)?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_key_value_metadata(Some(kv))
            .build();
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
        Ok(OpenFile {
            tmp,
            path,
            writer,
            schema,
            buffer: Buffer::new(key.table),
            source: inst.source.clone(),
            kernel_price_decimals: inst.kernel_price_decimals,
            rows: 0,
        })
    }

    /// The open file of a row, opened on first use. A failure is kept and reported by
    /// the next [`Dataset::flush`] or [`Dataset::commit`].
    fn file(&mut self, table: Table, inst: &InstrumentInfo, ts_ns: i64) -> Option<&mut OpenFile> {
        let key = FileKey {
            table,
            venue: inst.venue,
            day: day_of_ns(ts_ns),
            price_decimals: inst.scale.price_decimals,
            size_decimals: inst.scale.size_decimals,
        };
        if !self.files.contains_key(&key) {
            if self.error.is_some() {
                return None;
            }
            match self.open(&key, inst) {
                Ok(f) => {
                    self.files.insert(key.clone(), f);
                }
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            }
        }
        self.files.get_mut(&key)
    }

    fn encode(f: &mut OpenFile, key: &FileKey, depth: usize) -> Result<(), ParquetError> {
        if f.buffer.len() == 0 {
            return Ok(());
        }
        let b = batch(
            &f.schema,
            &mut f.buffer,
            &f.source,
            (
                key.price_decimals,
                key.size_decimals,
                f.kernel_price_decimals,
            ),
            depth,
        )?;
        f.writer.write(&b)?;
        Ok(())
    }

    /// Encodes the rows buffered in files whose buffer is full; reports a failure kept
    /// since the last call.
    pub fn flush(&mut self) -> Result<(), ParquetError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let depth = self.opts.depth;
        for (key, f) in self.files.iter_mut() {
            if f.buffer.len() >= BATCH_ROWS {
                Self::encode(f, key, depth)?;
            }
        }
        Ok(())
    }

    /// Finishes every open file (footer, sync), renames it to its final name, and syncs
    /// the directories: only then is it visible. Returns the files made visible.
    pub fn commit(&mut self) -> Result<Vec<WrittenFile>, ParquetError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let depth = self.opts.depth;
        let mut done = Vec::new();
        let files = std::mem::take(&mut self.files);
        let mut dirs = std::collections::BTreeSet::new();
        for (key, mut f) in files {
            Self::encode(&mut f, &key, depth)?;
            f.writer.close()?;
            File::open(&f.tmp)
                .and_then(|h| h.sync_all())
                .map_err(io(&f.tmp))?;
            std::fs::rename(&f.tmp, &f.path).map_err(io(&f.path))?;
            let bytes = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
            if let Some(d) = f.path.parent() {
                dirs.insert(d.to_path_buf());
            }
            done.push(WrittenFile {
                table: key.table,
                path: f.path,
                rows: f.rows,
                bytes,
            });
        }
        for d in dirs {
            sync_dir(&d)?;
        }
        Ok(done)
    }

    /// Drops every open file and removes its temporary.
    pub fn abort(&mut self) {
        for (_, f) in std::mem::take(&mut self.files) {
            drop(f.writer);
            let _ = std::fs::remove_file(&f.tmp);
        }
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        self.abort();
    }
}

impl RowSink for Dataset {
    fn trade(&mut self, inst: &InstrumentInfo, row: &TradeRow) {
        if let Some(f) = self.file(Table::Trades, inst, row.ts_ns) {
            if let Buffer::Trades(v) = &mut f.buffer {
                v.push((inst.symbol.clone(), *row));
                f.rows += 1;
            }
        }
    }

    fn book(&mut self, inst: &InstrumentInfo, row: &BookRow<'_>) {
        let depth = self.opts.depth;
        if let Some(f) = self.file(Table::Book, inst, row.ts_ns) {
            if let Buffer::Book { heads, levels } = &mut f.buffer {
                heads.push((
                    inst.symbol.clone(),
                    BookHead {
                        row: row.row,
                        ts_ns: row.ts_ns,
                        recv_ns: row.recv_ns,
                        exch_ns: row.exch_ns,
                        update_id: row.update_id,
                        flags: row.flags,
                        updates: row.updates,
                        bid: row.bid,
                        ask: row.ask,
                        bid_levels: row.bids.len().min(depth) as u32,
                        ask_levels: row.asks.len().min(depth) as u32,
                    },
                ));
                for side in [row.bids, row.asks] {
                    for k in 0..depth {
                        levels.push(side.get(k).copied());
                    }
                }
                f.rows += 1;
            }
        }
    }

    fn feature(&mut self, inst: &InstrumentInfo, row: &FeatureRow) {
        if let Some(f) = self.file(Table::Features, inst, row.ts_ns) {
            if let Buffer::Features(v) = &mut f.buffer {
                v.push((inst.symbol.clone(), *row));
                f.rows += 1;
            }
        }
    }

    fn label(&mut self, inst: &InstrumentInfo, row: &LabelRow) {
        if let Some(f) = self.file(Table::Labels, inst, row.ts_ns) {
            if let Buffer::Labels(v) = &mut f.buffer {
                v.push((inst.symbol.clone(), *row));
                f.rows += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(
            date_of_day(day_of_ns(1_723_161_253_937_085_768)),
            "2024-08-08"
        );
        assert_eq!(date_of_day(day_of_ns(-1)), "1969-12-31");
        assert_eq!(date_of_day(19_782), "2024-02-29");
    }
}
