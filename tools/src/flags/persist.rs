//! `PersistArgs`: PostgreSQL, journal and batching of every command that persists,
//! mapped onto [`hermes_persist::PersistOptions`]; and the persister's end-of-run report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{data_dir, EngineArgs};

/// Persistence options of the commands that run the engine.
#[derive(Args, Debug, Clone)]
pub struct PersistArgs {
    /// Persist every frame into this PostgreSQL (libpq string or postgresql:// URL);
    /// without it nothing is persisted (demo: a private cluster is started).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Journal directory: every frame is kept there before it goes to PostgreSQL
    /// [default: $XDG_DATA_HOME/hermes/journal or ~/.local/share/hermes/journal].
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Flush a COPY batch at this many rows...
    #[arg(long, default_value_t = 10_000)]
    pub batch_rows: usize,
    /// ...or this many milliseconds after its first row, whichever comes first.
    #[arg(long, default_value_t = 100)]
    pub batch_age_ms: u64,
    /// Receive-time interval between two book_snapshots rows of an instrument, ms.
    #[arg(long, default_value_t = 1000)]
    pub snapshot_interval_ms: u64,
    /// Levels per side in book_snapshots.
    #[arg(long, default_value_t = 10)]
    pub snapshot_depth: usize,
    /// Receive-time interval between two top_of_book rows of an instrument, ms.
    #[arg(long, default_value_t = 100)]
    pub tob_interval_ms: u64,
    /// At the end, how long to keep trying to reach PostgreSQL before giving up (the
    /// journal keeps the rest for the next start), seconds.
    #[arg(long, default_value_t = 30)]
    pub persist_drain_timeout: u64,
}

impl PersistArgs {
    /// `None` without a database URL. `input` names the replayed file: its contents
    /// identify the stream, so replaying it again adds no row twice.
    /// The persister options, or `None` without a database URL.
    pub fn options(
        &self,
        input: Option<&Path>,
        eng: &EngineArgs,
    ) -> Result<Option<hermes_persist::PersistOptions>> {
        let Some(url) = &self.database_url else {
            return Ok(None);
        };
        check_database_url(url)?;
        let journal = self
            .journal
            .clone()
            .unwrap_or_else(|| data_dir().join("journal"));
        let mut o = hermes_persist::PersistOptions::new(url.clone(), journal);
        if let Some(f) = input {
            o.stream = Some(
                hermes_persist::stream_id_for_file(f)
                    .with_context(|| format!("reading {}", f.display()))?,
            );
        }
        if self.batch_rows == 0 || self.batch_age_ms == 0 {
            bail!("--batch-rows and --batch-age-ms must be at least 1");
        }
        o.batch_rows = self.batch_rows;
        o.batch_age = Duration::from_millis(self.batch_age_ms);
        o.drain_timeout = Duration::from_secs(self.persist_drain_timeout);
        o.projection.decoder = eng.decoder();
        o.projection.kernels = eng.kernels.config();
        o.projection.snapshot_interval_ns = self.snapshot_interval_ms.max(1) as i64 * 1_000_000;
        o.projection.snapshot_depth = self.snapshot_depth;
        o.projection.tob_interval_ns = self.tob_interval_ms.max(1) as i64 * 1_000_000;
        Ok(Some(o))
    }
}

/// What the persister did in a run.
pub struct PersistOutcome {
    pub stats: std::sync::Arc<hermes_persist::PersistStats>,
    pub segment: PathBuf,
    pub torn: Vec<(String, hermes_ingest::capture::TornTail)>,
    pub result: std::result::Result<(), hermes_persist::PersistError>,
}

/// Waits for the persister to write everything and collects its outcome.
pub fn finish_persister(p: hermes_persist::Persister) -> PersistOutcome {
    let stats = p.stats();
    let segment = p.recovery().segment.clone();
    let torn = p.recovery().torn.clone();
    let result = p.finish().map(|_| ());
    PersistOutcome {
        stats,
        segment,
        torn,
        result,
    }
}

/// Prints the persister's summary; an error when it failed.
pub fn report_persist(p: &PersistOutcome) -> Result<()> {
    for (seg, t) in &p.torn {
        eprintln!(
            "hermes: journal {seg}: torn tail at byte {} ({}; {} trailing bytes) cut at start; everything before it was kept and written",
            t.offset, t.reason, t.trailing_bytes
        );
    }
    eprintln!("persisted ({}): {}", p.segment.display(), p.stats.summary());
    if let Err(e) = &p.result {
        bail!("persister: {e}");
    }
    Ok(())
}

/// Starts the persister when `opts` asks for one: its tap (for the ingest thread) and its
/// handle.
pub fn start_persister(
    opts: Option<hermes_persist::PersistOptions>,
) -> Result<(
    Option<hermes_persist::PersistTap>,
    Option<hermes_persist::Persister>,
)> {
    let Some(o) = opts else {
        return Ok((None, None));
    };
    let journal = o.journal_dir.clone();
    let (tap, p) = hermes_persist::start(o)
        .with_context(|| format!("starting the persister (journal {})", journal.display()))?;
    Ok((Some(tap), Some(p)))
}

/// Refuses a database URL that can never work (retrying it would look like an outage):
/// empty, or a URL whose scheme is not `postgres://` / `postgresql://`. libpq key=value
/// strings (`host=/run/postgresql dbname=hermes`) pass.
pub fn check_database_url(url: &str) -> Result<()> {
    if url.trim().is_empty() {
        bail!("DATABASE_URL (--database-url) is set but empty: unset it, or name a database");
    }
    if let Some((scheme, _)) = url.split_once("://") {
        if !matches!(scheme, "postgres" | "postgresql") {
            bail!("DATABASE_URL (--database-url) {scheme:?}:// is not a PostgreSQL URL: use postgresql://USER@HOST/DB or a libpq string such as \"host=/run/postgresql dbname=hermes\"");
        }
    }
    Ok(())
}
