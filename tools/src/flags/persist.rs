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
    /// [default: one per database, $XDG_DATA_HOME/hermes/journal/<database>@<host>-<hash>
    /// or under ~/.local/share/hermes/journal]. A journal belongs to one database: its
    /// frames are never written into another.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Delete a journal segment this long after it was sealed and everything read from
    /// it was committed (PostgreSQL, the Parquet sink); `0s` deletes it at once. Keep
    /// recordings with `hermes record`, not in the journal. Units s, m, h, d.
    #[arg(long, default_value = "1h", value_parser = parse_span)]
    pub journal_retention: Duration,
    /// Seal a live journal segment and start a new one past this many MiB...
    #[arg(long, default_value_t = 256)]
    pub journal_segment_mib: u64,
    /// ...or this long after it began (units s, m, h, d).
    #[arg(long, default_value = "10m", value_parser = parse_span)]
    pub journal_segment_age: Duration,
}

/// How every persister (the journal's, and `hermes persist --nats`) batches its rows,
/// samples its books, and waits for PostgreSQL at the end.
#[derive(Args, Debug, Clone)]
pub struct RowArgs {
    /// Commit a COPY batch at this many rows...
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
    /// At the end, how long to keep trying to reach PostgreSQL before giving up (what is
    /// not committed is read again by the next start), seconds.
    #[arg(long, default_value_t = 30)]
    pub persist_drain_timeout: u64,
}

impl RowArgs {
    /// (batch rows, batch age, drain timeout), refusing a zero batch.
    pub fn batching(&self) -> Result<(usize, Duration, Duration)> {
        if self.batch_rows == 0 || self.batch_age_ms == 0 {
            bail!("--batch-rows and --batch-age-ms must be at least 1");
        }
        Ok((
            self.batch_rows,
            Duration::from_millis(self.batch_age_ms),
            Duration::from_secs(self.persist_drain_timeout),
        ))
    }

    /// Sets the sampling of `book_snapshots` and `top_of_book` (decoder and kernels are
    /// the caller's).
    pub fn sampling(&self, p: &mut hermes_persist::ProjectionOptions) {
        p.snapshot_interval_ns = self.snapshot_interval_ms.max(1) as i64 * 1_000_000;
        p.snapshot_depth = self.snapshot_depth;
        p.tob_interval_ns = self.tob_interval_ms.max(1) as i64 * 1_000_000;
    }
}

/// Parses a span such as `0s`, `90s`, `30m`, `1h`, `1.5h` or `7d`.
pub fn parse_span(s: &str) -> std::result::Result<Duration, String> {
    const UNITS: [(&str, i128); 4] = [
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ];
    let ns = super::kernels::duration_ns(s, &UNITS)
        .map_err(|_| format!("expected a duration such as 0s, 90s, 30m, 1h or 7d, got {s:?}"))?;
    // Up to about 317 years, as before.
    if ns > 10_000_000_000 * 1_000_000_000 {
        return Err(format!("{s:?} is too long"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

impl PersistArgs {
    /// The journal's segment and retention settings.
    pub fn segments(&self) -> Result<hermes_persist::SegmentOptions> {
        if self.journal_segment_mib == 0 || self.journal_segment_age.is_zero() {
            bail!("--journal-segment-mib and --journal-segment-age must be above zero");
        }
        Ok(hermes_persist::SegmentOptions {
            rotate_bytes: self.journal_segment_mib.saturating_mul(1 << 20),
            rotate_age: self.journal_segment_age,
            retention: self.journal_retention,
            other_readers: 0,
        })
    }
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
            .unwrap_or_else(|| default_journal(Some(url)));
        let mut o = hermes_persist::PersistOptions::new(url.clone(), journal);
        if let Some(f) = input {
            o.stream = hermes_persist::stream_id_for_file(f)
                .with_context(|| format!("reading {}", f.display()))?;
            if o.stream.is_none() {
                eprintln!(
                    "hermes: {} is not a regular file: its frames are persisted as a new stream (replaying the same data again from a pipe adds its raw_events rows again)",
                    f.display()
                );
            }
        }
        (o.batch_rows, o.batch_age, o.drain_timeout) = self.rows.batching()?;
        o.segments = self.segments()?;
        o.projection.decoder = eng.decoder();
        o.projection.kernels = eng.kernels.config();
        self.rows.sampling(&mut o.projection);
        Ok(Some(o))
    }
}

/// The default journal directory of a database URL (`None`: a journal without a
/// database, for the Parquet sink): one per database, so one database's unwritten frames
/// never reach another. Named for what the URL says (database, host) plus a hash of the
/// whole URL.
pub fn default_journal(url: Option<&str>) -> PathBuf {
    let root = data_dir().join("journal");
    let Some(url) = url else {
        return root.join("no-database");
    };
    let (db, host) = match url.parse::<postgres::Config>() {
        Ok(c) => {
            let host = match c.get_hosts().first() {
                Some(postgres::config::Host::Tcp(h)) => h.clone(),
                Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "default".into(),
            };
            let port = c.get_ports().first().copied().unwrap_or(5432);
            (
                c.get_dbname()
                    .or(c.get_user())
                    .unwrap_or("postgres")
                    .to_string(),
                format!("{host}:{port}"),
            )
        }
        Err(_) => ("unknown".into(), "unknown".into()),
    };
    // FNV-1a of the URL: tells apart URLs that name the same database differently
    // (that is harmless: the journal checks the database's identity itself).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let name: String = format!("{db}@{host}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    root.join(format!("{name}-{:08x}", h as u32))
}

/// What the persister did in a run.
pub struct PersistOutcome {
    pub stats: std::sync::Arc<hermes_persist::PersistStats>,
    pub segment: PathBuf,
    pub torn: Vec<(String, hermes_ingest::capture::TornTail)>,
    pub damage: Vec<(String, hermes_ingest::capture::Damage)>,
    pub kept_aside: Vec<PathBuf>,
    pub result: std::result::Result<(), hermes_persist::PersistError>,
}

/// Waits for the persister to write everything and collects its outcome.
pub fn finish_persister(p: hermes_persist::Persister) -> PersistOutcome {
    let stats = p.stats();
    let segment = p.recovery().segment.clone();
    let torn = p.recovery().torn.clone();
    let damage = p.recovery().damage.clone();
    let kept_aside = p.recovery().kept_aside.clone();
    let result = p.finish().map(|_| ());
    PersistOutcome {
        stats,
        segment,
        torn,
        damage,
        kept_aside,
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
    for (seg, d) in &p.damage {
        eprintln!(
            "hermes: journal {seg}: damaged region at bytes {}..{} ({} bytes; {}) skipped; every valid record after it was written",
            d.offset,
            d.offset + d.len,
            d.len,
            d.reason
        );
    }
    for f in &p.kept_aside {
        eprintln!("hermes: damaged journal bytes kept in {}", f.display());
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
    match hermes_persist::check_database(&o.database_url) {
        Err(e) => bail!("the database can never be reached this way: {e}"),
        Ok(Some(why)) => eprintln!(
            "hermes: PostgreSQL is not reachable now ({why}); every frame is journaled and written once it is"
        ),
        Ok(None) => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(parse_span("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_span("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_span("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_span("7d"), Ok(Duration::from_secs(7 * 86400)));
        for bad in ["", "5", "5x", "-1s", "1.2.3s", "s"] {
            assert!(parse_span(bad).is_err(), "{bad:?}");
        }
        assert!(parse_span("200000d").unwrap_err().contains("too long"));
    }
}
