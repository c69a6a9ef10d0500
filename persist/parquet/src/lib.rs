//! # hermes-parquet
//!
//! Research datasets from Hermes: trades, book levels, the shm slot's kernels
//! ("features") and delayed labels, as Hive-partitioned Parquet that pandas, Polars,
//! DuckDB and pyarrow scan at speed.
//!
//! ```text
//! capture files ─► Source ─┐                                         ┌─► DIR/trades/venue=…/date=…/part-….parquet
//!                          ├─► Exporter (Decoder + Market) ─► Dataset ┼─► DIR/book/…
//! journal ─► JournalFollower┘     (rows::RowSink)             (zstd)  ├─► DIR/features/…
//!            (live sink)                                              └─► DIR/labels/…
//! ```
//!
//! * [`Exporter`] runs frames through the project's own decoder and
//!   [`Market`](hermes_book::market::Market) — the model the engine's book thread
//!   publishes to the shm slot from — so every feature is the slot's number for the same
//!   publication, and hands rows to a [`RowSink`].
//! * [`Dataset`] is the Parquet [`RowSink`]: one file per table, venue, UTC date (and
//!   instrument scale), written under a hidden temporary name and renamed once complete.
//! * [`export_files`] is `hermes export`: capture files in, a dataset out.
//! * [`start_sink`] is `hermes run|record --parquet`: a reader of the persister's journal
//!   with its own checkpoint, rotating files per interval of receive time, exactly once
//!   through kill -9 ([`sink`] has the protocol).
//!
//! The schema of every table, the decimal types and the book layout are in
//! `persist/parquet/SCHEMA.md`.
//!
//! ```
//! use hermes_parquet::{Exporter, ExportOptions, VecSink};
//! use hermes_ingest::{Frame, FrameKind, Venue};
//!
//! let mut ex = Exporter::new(ExportOptions::default(), "example");
//! let mut rows = VecSink::default();
//! let snapshot = br#"{"lastUpdateId":10,"bids":[["100.00","3"]],"asks":[["100.02","1"]]}"#;
//! ex.frame(&Frame { venue: Venue::Binance, kind: FrameKind::RestDepth { symbol: b"BTCUSDT" }, conn: 0, recv_ts_ns: 1_000, data: snapshot }, true, &mut rows);
//! let trade = br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"100.01","q":"0.5","T":1,"m":false}}"#;
//! ex.frame(&Frame { venue: Venue::Binance, kind: FrameKind::Ws, conn: 0, recv_ts_ns: 2_000, data: trade }, true, &mut rows);
//! ex.finish(true, &mut rows);
//! assert_eq!(rows.trades.len(), 1);
//! assert_eq!(rows.trades[0].1.price, 10_001_000_000); // 100.01 at 8 decimals
//! let mid = rows.features[0].1.kernels.mid; // 100.01 at 10 decimals
//! assert_eq!(mid, Some(1_000_100_000_000));
//! // The data ends before the 500 ms horizon: the labels are null, never guessed.
//! assert!(rows.labels.iter().all(|(_, l)| l.label_mid.is_none()));
//! ```

pub mod dataset;
pub mod export;
pub mod rows;
pub mod sink;

pub use dataset::{Dataset, DatasetOptions, WrittenFile};
pub use export::{export_files, ExportReport, InputReport};
pub use rows::{
    BookRow, ExportOptions, Exporter, FeatureRow, InstrumentInfo, LabelRow, RowCounts, RowSink,
    Table, TradeRow, VecSink,
};
pub use sink::{start_sink, ParquetSink, SinkOptions, SinkStats};

/// Errors of the Parquet export. Messages say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParquetError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// An input file could not be read.
    #[error("{path}: {source}")]
    Input {
        /// The input.
        path: String,
        /// Cause.
        source: hermes_ingest::source::SourceError,
    },
    /// The journal could not be read.
    #[error("journal: {0}")]
    Journal(#[from] hermes_ingest::capture::CaptureError),
    /// The parquet crate refused to write.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow refused a batch (a value outside its column type).
    #[error("building an Arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The sink's checkpoint is unreadable.
    #[error("{path}: bad checkpoint ({reason}); move the dataset directory aside and restart to write it anew")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Another live sink writes into the directory.
    #[error("Parquet directory {dir} is in use by process {pid} (its _hermes/lock); stop it or choose another --parquet directory")]
    Locked {
        /// The directory.
        dir: String,
        /// The holder.
        pid: String,
    },
    /// A setting out of range.
    #[error("{0}")]
    Config(String),
    /// The sink thread panicked or could not start.
    #[error("Parquet sink thread: {0}")]
    Thread(String),
}
