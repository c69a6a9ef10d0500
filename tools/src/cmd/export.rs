//! `hermes export`: capture files to Parquet research tables (`hermes-parquet`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hermes_ingest::source::SourceOptions;
use hermes_ingest::Venue;
use hermes_parquet::Table;

use crate::flags::{FormatArg, KernelArgs, ScaleArgs, TableArgs, VenueArg, EXPORT_MAX_INSTRUMENTS};

/// `hermes export` arguments.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Capture files (native, or JSON lines in any format `replay` reads); each is a
    /// source of its own whose books start empty, as in a replay.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The dataset directory: DIR/<table>/venue=<venue>/date=YYYY-MM-DD/part-<file>.parquet.
    #[arg(long)]
    pub out: PathBuf,
    /// Venue of JSON-lines frames (detected from the first frame when absent).
    #[arg(long, value_enum)]
    pub input_venue: Option<VenueArg>,
    /// Input format.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Symbol of REST snapshot lines that do not name one (detected when the file has one).
    #[arg(long)]
    pub symbol: Option<String>,
    #[command(flatten)]
    pub tables: TableArgs,
    #[command(flatten)]
    pub scale: ScaleArgs,
    #[command(flatten)]
    pub kernels: KernelArgs,
}

pub fn cmd_export(a: ExportArgs) -> Result<()> {
    let src = SourceOptions {
        format: a.format.into(),
        venue: a.input_venue.map(Venue::from),
        symbol: a.symbol.clone(),
        ..SourceOptions::default()
    };
    let opts = a
        .tables
        .options(a.scale.decoder(EXPORT_MAX_INSTRUMENTS), a.kernels.config());
    let ds = a.tables.dataset(&a.out, &opts);
    let r = hermes_parquet::export_files(&a.files, &src, &opts, &ds)
        .with_context(|| format!("exporting into {}", a.out.display()))?;
    for i in &r.inputs {
        if i.damaged.0 > 0 {
            eprintln!(
                "hermes: {}: {} damaged regions ({} bytes) skipped; every valid record around them was exported",
                i.path.display(),
                i.damaged.0,
                i.damaged.1
            );
        }
        if let Some(t) = &i.torn {
            eprintln!(
                "hermes: {}: torn or corrupt tail at byte {} ({}); everything before it was exported",
                i.path.display(),
                t.offset,
                t.reason
            );
        }
        let rows: Vec<String> = opts
            .tables
            .iter()
            .map(|t| format!("{} {}", i.rows.get(*t), t.name()))
            .collect();
        eprintln!(
            "exported {}: {} frames, {} decode errors, {} bad lines; rows: {}",
            i.path.display(),
            i.frames,
            i.decode_errors,
            i.bad_lines,
            rows.join(", ")
        );
    }
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let bytes = r.parquet_bytes();
    eprintln!(
        "wrote {} Parquet files ({:.2} MB, {} replaced) into {} in {:.3} s: {:.0} frames/s, {:.1} MB/s of Parquet; {} feature rows, {} labels",
        r.files.len(),
        bytes as f64 / 1e6,
        r.replaced,
        a.out.display(),
        secs,
        r.frames() as f64 / secs,
        bytes as f64 / secs / 1e6,
        r.rows(Table::Features),
        r.rows(Table::Labels),
    );
    Ok(())
}
