//! `TableArgs` (what `hermes export` writes) and `ParquetArgs` (`--parquet DIR` of the
//! commands that run the engine), mapped onto [`hermes_parquet::ExportOptions`]; and
//! [`start_persistence`], which starts the journal with its readers (PostgreSQL, the
//! Parquet sink) for `run`, `record` and `replay`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hermes_book::Venue;
use hermes_parquet::{DatasetOptions, ExportOptions, Table};

use super::{EngineArgs, PersistArgs, VenueArg};

/// Instruments the decoder of an export accepts: `--shm-slots`' default, so an export
/// defines the instruments a default engine publishes.
pub const EXPORT_MAX_INSTRUMENTS: usize = 256;

/// The tables and their sampling, for `hermes export`.
#[derive(Args, Debug, Clone)]
pub struct TableArgs {
    /// Tables to write, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "trades,book,features,labels", value_parser = parse_table)]
    pub tables: Vec<Table>,
    /// Only this venue's instruments (repeatable; all when absent).
    #[arg(long = "venue", value_enum)]
    pub venues: Vec<VenueArg>,
    /// Levels per side in the book table.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub depth: u16,
    /// Book rows: 0 = at every publication; else at the first publication of an
    /// instrument in each interval of this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub every_ms: u64,
    /// The label horizon: each feature row's label is the mid this many ms later.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub label_horizon_ms: u64,
    /// zstd compression level of the Parquet pages (1-22).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: i32,
}

/// `--tables` values.
fn parse_table(s: &str) -> std::result::Result<Table, String> {
    Table::from_name(s.trim()).ok_or_else(|| {
        let names: Vec<_> = Table::ALL.iter().map(|t| t.name()).collect();
        format!("unknown table {s:?}: use {}", names.join(", "))
    })
}

impl TableArgs {
    /// The export options, with the engine's decoder and kernel settings.
    pub fn options(
        &self,
        decoder: hermes_ingest::DecoderOptions,
        kernels: hermes_book::kernels::KernelConfig,
    ) -> ExportOptions {
        let mut tables = self.tables.clone();
        tables.sort();
        tables.dedup();
        ExportOptions {
            decoder,
            kernels,
            tables,
            venues: self.venues.iter().map(|v| Venue::from(*v)).collect(),
            depth: self.depth as usize,
            every_ns: self.every_ms.saturating_mul(1_000_000) as i64,
            horizon_ns: self.label_horizon_ms.saturating_mul(1_000_000) as i64,
        }
    }

    /// The dataset layout in `dir`, its footers recording the settings.
    pub fn dataset(&self, dir: &Path, o: &ExportOptions) -> DatasetOptions {
        let k = &o.kernels;
        DatasetOptions {
            dir: dir.to_path_buf(),
            depth: o.depth,
            zstd_level: self.zstd_level,
            default_scale: o.decoder.scales.default,
            metadata: vec![
                ("hermes.version".into(), env!("CARGO_PKG_VERSION").into()),
                ("hermes.depth".into(), o.depth.to_string()),
                ("hermes.book_every_ns".into(), o.every_ns.to_string()),
                ("hermes.label_horizon_ns".into(), o.horizon_ns.to_string()),
                ("hermes.kernel_levels".into(), k.levels.to_string()),
                ("hermes.vwap_size".into(), k.vwap_size.to_string()),
                (
                    "hermes.vol_half_life_ns".into(),
                    k.vol_half_life_ns.to_string(),
                ),
                (
                    "hermes.trade_window_ns".into(),
                    k.trade_window_ns.to_string(),
                ),
                ("hermes.rate_window_ns".into(), k.rate_window_ns.to_string()),
            ],
        }
    }
}

/// `--parquet DIR` of `run`, `record` and `replay`.
#[derive(Args, Debug, Clone)]
pub struct ParquetArgs {
    /// Also write the research tables (trades, book, features, labels) as Parquet into
    /// this directory, continuously, from the journal (`--journal`); see `hermes export`.
    #[arg(long)]
    pub parquet: Option<PathBuf>,
    /// Start a new set of Parquet files every this many seconds of receive time.
    #[arg(long, default_value_t = 3600.0)]
    pub parquet_rotate_secs: f64,
    /// Tables the Parquet sink writes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "trades,book,features,labels", value_parser = parse_table)]
    pub parquet_tables: Vec<Table>,
    /// Levels per side in the Parquet book table.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub parquet_depth: u16,
    /// Parquet book rows: 0 = every publication, else the first per instrument in each
    /// interval of this many ms.
    #[arg(long, default_value_t = 0)]
    pub parquet_every_ms: u64,
    /// The Parquet labels' horizon, ms.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub parquet_label_horizon_ms: u64,
}

impl ParquetArgs {
    /// No Parquet sink (the defaults of every other flag).
    pub fn off() -> ParquetArgs {
        ParquetArgs {
            parquet: None,
            parquet_rotate_secs: 3600.0,
            parquet_tables: Table::ALL.to_vec(),
            parquet_depth: 10,
            parquet_every_ms: 0,
            parquet_label_horizon_ms: 500,
        }
    }

    /// The sink's options, or `None` without `--parquet`.
    pub fn options(&self, eng: &EngineArgs) -> Result<Option<hermes_parquet::SinkOptions>> {
        let Some(dir) = &self.parquet else {
            return Ok(None);
        };
        let r = self.parquet_rotate_secs;
        if !(r.is_finite() && r >= 0.001) {
            bail!("--parquet-rotate-secs must be at least 0.001, got {r}");
        }
        let t = TableArgs {
            tables: self.parquet_tables.clone(),
            venues: Vec::new(),
            depth: self.parquet_depth,
            every_ms: self.parquet_every_ms,
            label_horizon_ms: self.parquet_label_horizon_ms,
            zstd_level: 3,
        };
        let export = t.options(eng.decoder(), eng.kernels.config());
        Ok(Some(hermes_parquet::SinkOptions {
            dataset: t.dataset(dir, &export),
            export,
            rotate_ns: (r * 1e9) as i64,
        }))
    }
}

/// The journal and its readers for one run.
pub struct Persistence {
    /// The ingest side's tap (when anything reads the journal).
    pub tap: Option<hermes_persist::PersistTap>,
    /// The PostgreSQL persister (with `--database-url`).
    pub persister: Option<hermes_persist::Persister>,
    /// The other readers (Parquet, NATS) and the journal they read when no persister
    /// owns one; finish them with [`finish_parquet`].
    pub parquet: Option<ParquetRun>,
    /// The NATS publisher's tap, for the book thread
    /// ([`hermes_engine::EngineOptions::event_tap`]).
    pub bus: Option<hermes_nats::publish::BusTap>,
    /// The NATS publisher's counters.
    pub nats_stats: Option<std::sync::Arc<hermes_nats::PublishStats>>,
}

impl Persistence {
    /// Puts the NATS publisher's tap on the book thread of `eng`.
    pub fn attach(&mut self, eng: &mut hermes_engine::EngineOptions) {
        if let Some(b) = self.bus.take() {
            eng.event_tap = hermes_engine::EventTapSlot::new(Box::new(b));
        }
    }
}

/// The journal's readers besides PostgreSQL, and the journal they read when no persister
/// owns one.
pub struct ParquetRun {
    journal: Option<hermes_persist::Journal>,
    sink: Option<(PathBuf, hermes_parquet::ParquetSink)>,
    nats: Option<hermes_nats::publish::Publisher>,
}

/// Starts the journal when PostgreSQL, Parquet or NATS RAW reads it: the persister
/// (which owns the journal) with `--database-url`, else the journal alone; then the
/// Parquet sink and the NATS publisher as other readers. `input` is the replayed file
/// (its contents name the stream).
pub fn start_persistence(
    persist: Option<hermes_persist::PersistOptions>,
    parquet: &ParquetArgs,
    persist_args: &PersistArgs,
    eng: &EngineArgs,
    input: Option<&Path>,
    nats: Option<hermes_nats::NatsOptions>,
) -> Result<Persistence> {
    let sink_opts = parquet.options(eng)?;
    let raw = nats.as_ref().is_some_and(|n| n.raw);
    let others = usize::from(sink_opts.is_some()) + usize::from(raw);
    let mut persist = persist;
    if let Some(p) = persist.as_mut() {
        // Retention waits for the other readers too, from the first moment.
        p.segments.other_readers = others;
    }
    let (tap, persister) = super::start_persister(persist)?;
    if others == 0 && nats.is_none() {
        return Ok(Persistence {
            tap,
            persister,
            parquet: None,
            bus: None,
            nats_stats: None,
        });
    }
    let (tap, journal, follower) = match (tap, &persister) {
        (Some(tap), Some(p)) => (Some(tap), None, Some(p.follower())),
        (tap, _) if others == 0 => (tap, None, None),
        _ => {
            let dir = persist_args
                .journal
                .clone()
                .unwrap_or_else(|| super::persist::default_journal(None));
            let mut jo = hermes_persist::JournalOptions::new(&dir);
            jo.segments = persist_args.segments()?;
            jo.segments.other_readers = others;
            if let Some(f) = input {
                jo.stream = hermes_persist::stream_id_for_file(f)
                    .with_context(|| format!("reading {}", f.display()))?;
            }
            let (tap, j) = hermes_persist::start_journal(jo)
                .with_context(|| format!("starting the journal ({})", dir.display()))?;
            let f = j.follower();
            (Some(tap), Some(j), Some(f))
        }
    };
    let sink = match (sink_opts, &follower) {
        (Some(o), Some(f)) => {
            let dir = o.dataset.dir.clone();
            let sink = hermes_parquet::start_sink(f.clone(), o)
                .with_context(|| format!("starting the Parquet sink ({})", dir.display()))?;
            Some((dir, sink))
        }
        _ => None,
    };
    let (bus, publisher) = match nats {
        Some(n) => {
            let (b, p) = hermes_nats::publish::start(n, follower.filter(|_| raw))
                .context("starting the NATS publisher")?;
            (Some(b), Some(p))
        }
        None => (None, None),
    };
    let nats_stats = publisher.as_ref().map(|p| p.stats());
    Ok(Persistence {
        tap,
        persister,
        parquet: Some(ParquetRun {
            journal,
            sink,
            nats: publisher,
        }),
        bus,
        nats_stats,
    })
}

/// Waits for the Parquet sink (and its journal) once the tap was dropped, and prints the
/// sink's summary; an error when either failed.
pub fn finish_parquet(run: Option<ParquetRun>) -> Result<()> {
    let Some(r) = run else {
        return Ok(());
    };
    if let Some(j) = r.journal {
        j.finish().context("journal")?;
    }
    if let Some((dir, sink)) = r.sink {
        let stats = sink.finish().context("Parquet sink")?;
        eprintln!("parquet ({}): {}", dir.display(), stats.summary());
    }
    if let Some(p) = r.nats {
        let stats = p
            .finish(std::time::Duration::from_secs(30))
            .context("NATS publisher")?;
        eprintln!("{}", stats.line());
    }
    Ok(())
}
