//! export: the Parquet exporter (`hermes_parquet::Exporter` into a zstd [`Dataset`], as
//! `hermes export` runs it) against the same rows written as CSV with the `csv` crate, and
//! against the exporter with no sink at all (decode, market, rows: the floor under both),
//! on the synthetic market and on the BTCUSDT capture: frames/s in, MB/s out, the time of
//! each 1024-frame chunk, and the bytes of the capture's tables against the capture itself.

use std::fs::File;
use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use hermes_book::clock::rfc3339;
use hermes_book::fixed::write_decimal;
use hermes_book::market::FLAG_STALE;
use hermes_book::{Level, Venue};
use hermes_parquet::dataset::{day_of_ns, schema};
use hermes_parquet::export::source_name;
use hermes_parquet::{
    BookRow, Dataset, DatasetOptions, ExportOptions, Exporter, FeatureRow, InstrumentInfo,
    LabelRow, RowCounts, RowSink, Table, TradeRow,
};

use super::Config;
use crate::frames::{self, OwnedFrame};
use crate::report::{Figure, Metric, Stage};
use crate::util::{figure, hist, mono_ns, rec};

/// Frames between two `Dataset::flush` calls: `export_files`' cadence.
const CHUNK: usize = 1024;
/// `hermes export`'s default `--zstd-level`.
const ZSTD_LEVEL: i32 = 3;
/// The capture measured when `--capture` is not given, in `../shared/captures`.
const CAPTURE: &str = "binance-spot-btcusdt-20240808.txt";
const CSV_NAME: &str = "csv crate: the same rows as CSV text";
const FLOOR_NAME: &str = "no sink: the exporter alone (decode, market, rows), the floor";

/// What a sink wrote, per table in [`Table::ALL`] order.
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    bytes: [u64; 4],
    rows: [u64; 4],
    files: usize,
}

impl Written {
    fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }
}

/// A sink under test: rows in, files out.
trait Output: RowSink {
    /// The end of a chunk of frames: the dataset encodes its full row buffers here.
    fn chunk_end(&mut self) -> Result<()>;
    /// Finishes and syncs every file.
    fn close(self) -> Result<Written>;
}

impl Output for Dataset {
    fn chunk_end(&mut self) -> Result<()> {
        Ok(self.flush()?)
    }

    fn close(mut self) -> Result<Written> {
        let mut w = Written::default();
        for f in self.commit()? {
            w.bytes[f.table as usize] += f.bytes;
            w.rows[f.table as usize] += f.rows;
            w.files += 1;
        }
        Ok(w)
    }
}

/// Counts rows and drops them.
#[derive(Debug, Default)]
struct NullSink {
    rows: [u64; 4],
}

impl RowSink for NullSink {
    fn trade(&mut self, _: &InstrumentInfo, row: &TradeRow) {
        black_box(row);
        self.rows[Table::Trades as usize] += 1;
    }
    fn book(&mut self, _: &InstrumentInfo, row: &BookRow<'_>) {
        black_box(row);
        self.rows[Table::Book as usize] += 1;
    }
    fn feature(&mut self, _: &InstrumentInfo, row: &FeatureRow) {
        black_box(row);
        self.rows[Table::Features as usize] += 1;
    }
    fn label(&mut self, _: &InstrumentInfo, row: &LabelRow) {
        black_box(row);
        self.rows[Table::Labels as usize] += 1;
    }
}

impl Output for NullSink {
    fn chunk_end(&mut self) -> Result<()> {
        Ok(())
    }

    fn close(self) -> Result<Written> {
        Ok(Written {
            rows: self.rows,
            ..Written::default()
        })
    }
}

/// Which CSV file a row goes to: one per table, venue and UTC date of `ts_ns`, the
/// dataset's partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CsvKey {
    table: Table,
    venue: Venue,
    day: i64,
}

struct CsvFile {
    key: CsvKey,
    writer: csv::Writer<File>,
    rows: u64,
}

/// The baseline [`RowSink`]: every table's rows as CSV with the `csv` crate, the columns
/// of the Parquet schema in its order (the header is its field names), decimals as their
/// canonical text, nulls as empty fields.
struct CsvSink {
    dir: PathBuf,
    stem: String,
    depth: usize,
    files: Vec<CsvFile>,
    error: Option<anyhow::Error>,
}

/// One record being written: the fields of a row, the first error kept.
struct Record<'a> {
    w: &'a mut csv::Writer<File>,
    err: Option<csv::Error>,
}

impl Record<'_> {
    fn put(&mut self, b: &[u8]) {
        if self.err.is_none() {
            if let Err(e) = self.w.write_field(b) {
                self.err = Some(e);
            }
        }
    }

    fn text(&mut self, s: &str) {
        self.put(s.as_bytes());
    }

    fn int(&mut self, v: impl std::fmt::Display) {
        let mut buf = [0u8; 24];
        let mut c = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(c, "{v}");
        let n = c.position() as usize;
        self.put(&buf[..n]);
    }

    fn opt_int(&mut self, v: Option<impl std::fmt::Display>) {
        match v {
            Some(v) => self.int(v),
            None => self.put(b""),
        }
    }

    fn dec(&mut self, mantissa: i64, decimals: u8) {
        let mut buf = [0u8; 48];
        let n = write_decimal(mantissa, decimals, &mut buf);
        self.put(&buf[..n]);
    }

    fn opt_dec(&mut self, mantissa: Option<i64>, decimals: u8) {
        match mantissa {
            Some(m) => self.dec(m, decimals),
            None => self.put(b""),
        }
    }

    fn level(&mut self, l: Option<Level>, inst: &InstrumentInfo) {
        self.opt_dec(l.map(|l| l.price.0), inst.scale.price_decimals);
        self.opt_dec(l.map(|l| l.qty.0), inst.scale.size_decimals);
    }

    /// `source, row, ts_ns, recv_ns, exch_ns, symbol`: every table but `labels` opens so.
    fn common(&mut self, inst: &InstrumentInfo, row: u64, ts_ns: i64, recv_ns: i64, exch: i64) {
        self.text(&inst.source);
        self.int(row);
        self.int(ts_ns);
        self.int(recv_ns);
        self.opt_int((exch != 0).then_some(exch));
        self.text(&inst.symbol);
    }

    /// Ends the record. The writer refuses a record whose field count differs from the
    /// header's, so every row has the schema's columns.
    fn end(mut self) -> Result<(), csv::Error> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        self.w.write_record(None::<&[u8]>)
    }
}

impl CsvSink {
    fn new(dir: &Path, stem: &str, depth: usize) -> CsvSink {
        CsvSink {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            depth,
            files: Vec::new(),
            error: None,
        }
    }

    fn open(&self, key: CsvKey, inst: &InstrumentInfo) -> Result<CsvFile> {
        let dir = Dataset::partition_dir(&self.dir, key.table, key.venue, key.day);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("part-{}.csv", self.stem));
        let mut writer = csv::WriterBuilder::new()
            .buffer_capacity(1 << 16)
            .from_path(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let s = schema(
            key.table,
            inst.scale,
            inst.kernel_price_decimals,
            self.depth,
        );
        writer.write_record(s.fields().iter().map(|f| f.name().as_str()))?;
        Ok(CsvFile {
            key,
            writer,
            rows: 0,
        })
    }

    /// The record of a row in its file, opened on first use; `None` after a failure
    /// (kept for [`Output::close`]).
    fn record(&mut self, table: Table, inst: &InstrumentInfo, ts_ns: i64) -> Option<Record<'_>> {
        let key = CsvKey {
            table,
            venue: inst.venue,
            day: day_of_ns(ts_ns),
        };
        if self.error.is_some() {
            return None;
        }
        let i = match self.files.iter().position(|f| f.key == key) {
            Some(i) => i,
            None => match self.open(key, inst) {
                Ok(f) => {
                    self.files.push(f);
                    self.files.len() - 1
                }
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            },
        };
        let f = &mut self.files[i];
        f.rows += 1;
        Some(Record {
            w: &mut f.writer,
            err: None,
        })
    }

    fn done(&mut self, r: Result<(), csv::Error>) {
        if let Err(e) = r {
            self.error.get_or_insert(e.into());
        }
    }
}

impl RowSink for CsvSink {
    fn trade(&mut self, inst: &InstrumentInfo, row: &TradeRow) {
        let Some(mut r) = self.record(Table::Trades, inst, row.ts_ns) else {
            return;
        };
        r.common(inst, row.row, row.ts_ns, row.recv_ns, row.exch_ns);
        r.int(row.trade_id);
        r.dec(row.price, inst.scale.price_decimals);
        r.dec(row.size, inst.scale.size_decimals);
        r.text(row.side.name());
        r.int(row.flags);
        let e = r.end();
        self.done(e);
    }

    fn book(&mut self, inst: &InstrumentInfo, row: &BookRow<'_>) {
        let depth = self.depth;
        let Some(mut r) = self.record(Table::Book, inst, row.ts_ns) else {
            return;
        };
        r.common(inst, row.row, row.ts_ns, row.recv_ns, row.exch_ns);
        r.int(row.update_id);
        r.int(row.flags);
        r.int(row.updates);
        r.text(if row.flags & FLAG_STALE != 0 {
            "true"
        } else {
            "false"
        });
        r.level(row.bid, inst);
        r.level(row.ask, inst);
        r.int(row.bids.len().min(depth));
        r.int(row.asks.len().min(depth));
        for side in [row.bids, row.asks] {
            for k in 0..depth {
                r.level(side.get(k).copied(), inst);
            }
        }
        let e = r.end();
        self.done(e);
    }

    fn feature(&mut self, inst: &InstrumentInfo, row: &FeatureRow) {
        let Some(mut r) = self.record(Table::Features, inst, row.ts_ns) else {
            return;
        };
        let (p, s, kp) = (
            inst.scale.price_decimals,
            inst.scale.size_decimals,
            inst.kernel_price_decimals,
        );
        let k = &row.kernels;
        r.common(inst, row.row, row.ts_ns, row.recv_ns, row.exch_ns);
        r.int(row.update_id);
        r.int(row.flags);
        r.text(if row.flags & FLAG_STALE != 0 {
            "true"
        } else {
            "false"
        });
        r.int(k.time_ns);
        r.level(row.bid, inst);
        r.level(row.ask, inst);
        r.opt_dec(k.spread_ticks, p);
        r.opt_dec(k.spread_bps_x100, hermes_parquet::dataset::X100_DECIMALS);
        r.opt_dec(k.mid, kp);
        r.opt_dec(k.microprice, kp);
        r.dec(k.bid_depth, s);
        r.dec(k.ask_depth, s);
        r.opt_dec(k.imbalance_ppm, hermes_parquet::dataset::PPM_DECIMALS);
        r.opt_dec(k.vwap_buy, kp);
        r.opt_dec(k.vwap_sell, kp);
        r.opt_int(k.volatility_bps);
        r.dec(k.trade_buy_qty, s);
        r.dec(k.trade_sell_qty, s);
        r.opt_dec(k.trade_imbalance_ppm, hermes_parquet::dataset::PPM_DECIMALS);
        r.dec(k.ofi_window, s);
        r.dec(k.ofi_total, s);
        r.dec(
            i64::try_from(k.updates_per_s_x100).unwrap_or(i64::MAX),
            hermes_parquet::dataset::X100_DECIMALS,
        );
        let e = r.end();
        self.done(e);
    }

    fn label(&mut self, inst: &InstrumentInfo, row: &LabelRow) {
        let Some(mut r) = self.record(Table::Labels, inst, row.ts_ns) else {
            return;
        };
        let kp = inst.kernel_price_decimals;
        r.text(&inst.source);
        r.int(row.row);
        r.int(row.ts_ns);
        r.text(&inst.symbol);
        r.int(row.horizon_ns);
        r.opt_dec(row.mid, kp);
        r.int(row.ts_ns.saturating_add(row.horizon_ns));
        r.opt_dec(row.label_mid, kp);
        r.opt_dec(row.mid_change(), kp);
        r.opt_int(row.sign());
        r.opt_int(row.labelled_at_ns);
        let e = r.end();
        self.done(e);
    }
}

impl Output for CsvSink {
    fn chunk_end(&mut self) -> Result<()> {
        Ok(())
    }

    fn close(mut self) -> Result<Written> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut w = Written::default();
        for f in self.files.drain(..) {
            let file = f
                .writer
                .into_inner()
                .map_err(|e| e.into_error())
                .context("flushing a CSV file")?;
            // The dataset syncs its files at commit; so does this.
            file.sync_all().context("syncing a CSV file")?;
            w.bytes[f.key.table as usize] += file.metadata()?.len();
            w.rows[f.key.table as usize] += f.rows;
            w.files += 1;
        }
        Ok(w)
    }
}

/// One export of a frame set into one sink.
#[derive(Clone, Copy, Debug)]
struct Pass {
    /// Frames in to files closed, seconds.
    secs: f64,
    /// `finish` + closing the files (Parquet: the last buffers, footers, sync, rename), ms.
    close_ms: f64,
    written: Written,
    rows: RowCounts,
    decode_errors: u64,
}

/// Exports `frames` into `sink`, recording the time of every full chunk in `chunks` (ns).
fn pass<S: Output>(
    frames: &[OwnedFrame],
    source: &str,
    opts: &ExportOptions,
    mut sink: S,
    chunks: &mut Histogram<u64>,
) -> Result<Pass> {
    let t0 = mono_ns();
    let mut ex = Exporter::new(opts.clone(), source);
    for chunk in frames.chunks(CHUNK) {
        let c0 = mono_ns();
        for f in chunk {
            ex.frame(&f.frame(f.recv_ts_ns), true, &mut sink);
        }
        sink.chunk_end()?;
        if chunk.len() == CHUNK {
            rec(chunks, mono_ns() - c0);
        }
    }
    let c0 = mono_ns();
    ex.finish(true, &mut sink);
    let written = sink.close()?;
    let end = mono_ns();
    Ok(Pass {
        secs: (end - t0) as f64 / 1e9,
        close_ms: (end - c0) as f64 / 1e6,
        written,
        rows: ex.rows(),
        decode_errors: ex.decode_errors(),
    })
}

/// The three sinks over the same frames, `passes` times, the first a warm-up when
/// there are several.
struct Measured {
    frames: usize,
    frame_bytes: u64,
    parquet: Vec<Pass>,
    csv: Vec<Pass>,
    floor: Vec<Pass>,
    parquet_chunks: Histogram<u64>,
    csv_chunks: Histogram<u64>,
    floor_chunks: Histogram<u64>,
}

fn dataset_options(dir: &Path, opts: &ExportOptions) -> DatasetOptions {
    DatasetOptions {
        dir: dir.to_path_buf(),
        depth: opts.depth,
        zstd_level: ZSTD_LEVEL,
        metadata: vec![
            ("hermes.depth".into(), opts.depth.to_string()),
            (
                "hermes.label_horizon_ns".into(),
                opts.horizon_ns.to_string(),
            ),
        ],
        default_scale: opts.decoder.scales.default,
    }
}

fn measure(
    frames: &[OwnedFrame],
    source: &str,
    opts: &ExportOptions,
    dir: &Path,
    passes: usize,
) -> Result<Measured> {
    let stem = hermes_parquet::export::file_stem(source);
    let chunk_hist = || hist(600_000_000_000);
    let mut m = Measured {
        frames: frames.len(),
        frame_bytes: frames.iter().map(|f| f.data.len() as u64).sum(),
        parquet: Vec::new(),
        csv: Vec::new(),
        floor: Vec::new(),
        parquet_chunks: chunk_hist(),
        csv_chunks: chunk_hist(),
        floor_chunks: chunk_hist(),
    };
    let fresh = |d: &Path| -> Result<()> {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))
    };
    for k in 0..passes {
        let warm = passes > 1 && k == 0;
        let mut scratch = chunk_hist();
        // The sinks take turns, so a change in the machine's load falls on all three.
        let d = dir.join("parquet");
        fresh(&d)?;
        let ds = Dataset::new(dataset_options(&d, opts), &stem);
        let h = if warm {
            &mut scratch
        } else {
            &mut m.parquet_chunks
        };
        let p = pass(frames, source, opts, ds, h).context("the Parquet export")?;
        let d = dir.join("csv");
        fresh(&d)?;
        let h = if warm {
            &mut scratch
        } else {
            &mut m.csv_chunks
        };
        let sink = CsvSink::new(&d, &stem, opts.depth);
        let c = pass(frames, source, opts, sink, h).context("the CSV export")?;
        let h = if warm {
            &mut scratch
        } else {
            &mut m.floor_chunks
        };
        let n = pass(frames, source, opts, NullSink::default(), h)?;
        let _ = std::fs::remove_dir_all(dir);
        for (name, x) in [("Parquet", &p), ("CSV", &c), ("no sink", &n)] {
            anyhow::ensure!(
                x.written.rows == x.rows.rows,
                "{name} sink got rows {:?}, the exporter made {:?}",
                x.written.rows,
                x.rows.rows
            );
            anyhow::ensure!(
                x.rows == p.rows,
                "{name} export made rows {:?}, the Parquet one {:?}",
                x.rows.rows,
                p.rows.rows
            );
        }
        if !warm {
            m.parquet.push(p);
            m.csv.push(c);
            m.floor.push(n);
        }
    }
    Ok(m)
}

/// The pass of median time.
fn median(passes: &[Pass]) -> Pass {
    let mut v = passes.to_vec();
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    v[v.len() / 2]
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// `export.<prefix>.frames_per_s` and `export.<prefix>.chunk`.
fn rate_metrics(prefix: &str, input: &str, m: &Measured, out: &mut Vec<Metric>) {
    let (p, c, n) = (median(&m.parquet), median(&m.csv), median(&m.floor));
    let rate = |x: &Pass| m.frames as f64 / x.secs;
    let out_mbps = |x: &Pass| mb(x.written.total_bytes()) / x.secs;
    let rows = p.rows;
    let all: Vec<String> = m
        .parquet
        .iter()
        .zip(&m.csv)
        .map(|(p, c)| format!("{:.0}/{:.0}", rate(p), rate(c)))
        .collect();
    out.push(
        Metric::higher(
            &format!("export.{prefix}.frames_per_s"),
            &format!(
                "frames/s into hermes_parquet::Exporter → Dataset (zstd {ZSTD_LEVEL}, every table: {} trades, {} book, {} features, {} labels rows), files closed and synced; {input}; throughput = MB/s of Parquet out",
                rows.get(Table::Trades),
                rows.get(Table::Book),
                rows.get(Table::Features),
                rows.get(Table::Labels),
            ),
            "frames/s",
            Figure::scalar(rate(&p)),
        )
        .with_throughput(out_mbps(&p), "MB/s")
        .vs(
            &format!("{CSV_NAME} (one file per table, venue and date; decimals as text)"),
            Figure::scalar(rate(&c)),
            Some(out_mbps(&c)),
        )
        .vs(FLOOR_NAME, Figure::scalar(rate(&n)), None)
        .note(format!(
            "median of {} measured pass(es) after a warm-up (Parquet/CSV frames/s per pass: {}); frames in at {:.1} MB/s (Parquet), {:.1} MB/s (CSV); out: {:.2} MB Parquet in {} files, {:.2} MB CSV in {} files, from {:.2} MB of frames",
            m.parquet.len(),
            all.join(", "),
            mb(m.frame_bytes) / p.secs,
            mb(m.frame_bytes) / c.secs,
            mb(p.written.total_bytes()),
            p.written.files,
            mb(c.written.total_bytes()),
            c.written.files,
            mb(m.frame_bytes),
        ))
        .note(format!(
            "closing (last rows, footers, sync, rename): {:.1} ms Parquet, {:.1} ms CSV; decode errors {}",
            p.close_ms, c.close_ms, p.decode_errors
        )),
    );
    out.push(
        Metric::lower(
            &format!("export.{prefix}.chunk"),
            &format!(
                "one chunk of {CHUNK} frames through the exporter into the Parquet dataset, with the flush `export_files` makes after each (a file's rows are encoded there once 16,384 are buffered: the tail; the rest when the files close, outside these samples); {input}"
            ),
            "µs/chunk",
            figure(&m.parquet_chunks, 1000.0),
        )
        .vs(FLOOR_NAME, figure(&m.floor_chunks, 1000.0), None)
        .vs(
            "csv crate chunk (formats every row as it comes: not like for like at p50)",
            figure(&m.csv_chunks, 1000.0),
            None,
        )
        .note("every full chunk of the measured passes. The dataset defers its work: its p50 is a chunk that only buffers rows, the encoding of 16,384-row batches is in the tail, and the rows left at the end are encoded at the close (frames_per_s notes); CSV formats each row as it comes, so its chunks are even. frames_per_s is the throughput; this is the stall a chunk can meet"),
    );
}

/// `export.capture.bytes.<table>` and `.all`: each table's Parquet against the capture
/// file and the same rows as CSV.
fn size_metrics(path: &Path, capture_bytes: u64, m: &Measured, out: &mut Vec<Metric>) {
    let (p, c) = (median(&m.parquet), median(&m.csv));
    let name = source_name(path);
    let cap = format!("the capture file itself ({name}, {capture_bytes} bytes)");
    let mut tables: Vec<(&str, u64, u64, u64)> = Table::ALL
        .iter()
        .map(|&t| {
            (
                t.name(),
                p.written.bytes[t as usize],
                c.written.bytes[t as usize],
                p.rows.get(t),
            )
        })
        .collect();
    tables.push((
        "all",
        p.written.total_bytes(),
        c.written.total_bytes(),
        p.rows.total(),
    ));
    for (table, pq, csv, rows) in tables {
        if pq == 0 {
            continue;
        }
        out.push(
            Metric::lower(
                &format!("export.capture.bytes.{table}"),
                &format!(
                    "bytes of the {table} table{} of {name} as Parquet (zstd {ZSTD_LEVEL}), {rows} rows; × = how many times smaller",
                    if table == "all" { "s" } else { "" }
                ),
                "bytes",
                Figure::scalar(pq as f64),
            )
            .vs(&cap, Figure::scalar(capture_bytes as f64), None)
            .vs(
                "the same rows as CSV (csv crate)",
                Figure::scalar(csv as f64),
                None,
            ),
        );
    }
}

/// The capture to export: `--capture`, else the BTCUSDT recording beside the workspace.
fn capture_path(cfg: &Config) -> (Option<PathBuf>, PathBuf) {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/captures")
        .join(CAPTURE);
    match &cfg.capture {
        Some(p) => (Some(p.clone()), shared),
        None => (shared.is_file().then(|| shared.clone()), shared),
    }
}

/// Runs the stage.
pub fn run(cfg: &Config) -> Result<Stage> {
    let t = Instant::now();
    let dir = cfg.tmp.join("export");
    let opts = ExportOptions::default();
    let mut out = Vec::new();
    let mut notes = vec![format!(
        "each sink gets the same frames, held in memory (reading the input is not timed), through its own Exporter with the defaults of `hermes export` (depth {}, a book row per publication, {} ms label horizon); files go to the scratch directory {} (tmpfs when /dev/shm exists: the figures are the CPU cost of the export, not the disk's)",
        opts.depth,
        opts.horizon_ns / 1_000_000,
        cfg.tmp.display()
    )];
    let n = cfg.size(200_000, 40_000);
    let synth = frames::synthetic(n);
    let m = measure(&synth, "synthetic", &opts, &dir, cfg.size(4, 2))?;
    rate_metrics(
        "synth",
        &format!("{n} hermes_sim::synth frames (both venues, 3 instruments each)"),
        &m,
        &mut out,
    );
    drop(synth);
    match capture_path(cfg) {
        (Some(path), _) => {
            let capture_bytes = std::fs::metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            let cap = frames::capture(&path, usize::MAX)?;
            let stamps = cap.iter().map(|f| f.recv_ts_ns).filter(|&t| t > 0);
            let (first, last) = (stamps.clone().min(), stamps.max());
            let m = measure(&cap, &source_name(&path), &opts, &dir, cfg.size(3, 2))?;
            rate_metrics(
                "capture",
                &format!("{} frames of {}", cap.len(), source_name(&path)),
                &m,
                &mut out,
            );
            size_metrics(&path, capture_bytes, &m, &mut out);
            let mut note = format!(
                "capture {}: {} frames, {capture_bytes} bytes on disk",
                path.display(),
                cap.len()
            );
            if let (Some(a), Some(b)) = (first, last) {
                let hours = (b - a) as f64 / 3.6e12;
                let pq = median(&m.parquet).written.total_bytes();
                note.push_str(&format!(
                    ", received {} to {} ({:.1} min): its tables are {:.2} MB of Parquet, ≈{:.0} MB per 24 h at this stream's rate (a linear extrapolation, not a measured day)",
                    rfc3339(a),
                    rfc3339(b),
                    hours * 60.0,
                    mb(pq),
                    if hours > 0.0 { mb(pq) * 24.0 / hours } else { 0.0 }
                ));
            }
            notes.push(note);
        }
        (None, shared) => notes.push(format!(
            "no capture: {} is absent and --capture was not given; only the synthetic frames were exported",
            shared.display()
        )),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Stage {
        name: "export".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics: out,
        notes,
        skipped: false,
        pinned: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_ingest::{Frame, FrameKind};

    #[test]
    fn csv_rows_carry_the_schema_columns_and_exact_decimals() {
        let dir = std::env::temp_dir().join(format!("hermes-bench-csv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = ExportOptions::default();
        let mut ex = Exporter::new(opts.clone(), "t");
        let mut sink = CsvSink::new(&dir, "t", opts.depth);
        let snapshot = br#"{"lastUpdateId":10,"bids":[["100.00","3"]],"asks":[["100.02","1"]]}"#;
        let trade = br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"100.01","q":"0.5","T":1,"m":false}}"#;
        for (kind, recv_ts_ns, data) in [
            (
                FrameKind::RestDepth { symbol: b"BTCUSDT" },
                1_000,
                &snapshot[..],
            ),
            (FrameKind::Ws, 2_000, &trade[..]),
        ] {
            let f = Frame {
                venue: Venue::Binance,
                kind,
                conn: 0,
                recv_ts_ns,
                data,
            };
            ex.frame(&f, true, &mut sink);
        }
        ex.finish(true, &mut sink);
        let w = sink.close().unwrap();
        assert_eq!(w.rows, ex.rows().rows);
        assert_eq!(w.rows[Table::Trades as usize], 1);
        let read = |t: Table| {
            let p = Dataset::partition_dir(&dir, t, Venue::Binance, 0).join("part-t.csv");
            let mut r = csv::Reader::from_path(&p).unwrap();
            let head: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
            let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
            (head, rows)
        };
        for t in Table::ALL {
            let (head, rows) = read(t);
            let s = schema(t, opts.decoder.scales.default, 10, opts.depth);
            let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(head, names, "{}", t.name());
            assert_eq!(rows.len() as u64, ex.rows().get(t), "{}", t.name());
        }
        let (head, rows) = read(Table::Trades);
        let col = |name: &str| &rows[0][head.iter().position(|h| h == name).unwrap()];
        assert_eq!(
            (col("price"), col("size"), col("exch_ns")),
            ("100.01", "0.5", "1000000")
        );
        let (head, rows) = read(Table::Book);
        let col = |name: &str| &rows[0][head.iter().position(|h| h == name).unwrap()];
        assert_eq!((col("bid_0_price"), col("bid_1_price")), ("100", ""));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
