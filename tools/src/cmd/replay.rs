//! `hermes replay`: a capture through the engine (and the persister, and HTTP).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hermes_engine::{Publisher, ReplaySummary, Speed};
use hermes_ingest::source::{Source, SourceOptions};
use hermes_ingest::{Decoder, Venue};
use hermes_shm::json::tob_json;

use crate::flags::{
    finish_parquet, finish_persister, report_persist, start_persistence, start_persister,
    EngineArgs, FormatArg, HttpArgs, NatsArgs, ParquetArgs, PersistArgs, PersistOutcome, VenueArg,
};

/// `hermes replay` arguments.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Capture: native, or JSON lines (optionally `<timestamp> ` prefixed, cryptofeed
    /// recorder formats), optionally gzip- or zstd-compressed (told by content); a file,
    /// or a FIFO / process substitution (read once).
    pub file: PathBuf,
    /// Venue of JSON-lines frames (detected from the first frame when absent).
    #[arg(long, value_enum)]
    pub venue: Option<VenueArg>,
    /// Input format.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Symbol of REST snapshot lines that do not name one (detected when the file has one).
    #[arg(long)]
    pub symbol: Option<String>,
    /// Longest JSON line accepted, bytes; longer lines are skipped (counted as bad
    /// lines) without being held in memory.
    #[arg(long, default_value_t = hermes_ingest::source::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Pacing: max, realtime, or a factor such as 10x.
    #[arg(long, default_value = "max")]
    pub speed: Speed,
    /// After the replay, print one JSON object per instrument.
    #[arg(long)]
    pub print_final: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub persist: PersistArgs,
    #[command(flatten)]
    pub parquet: ParquetArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
}

pub struct ReplayRun {
    pub summary: ReplaySummary,
    pub lines: Vec<String>,
    pub elapsed: Duration,
    pub pinned: bool,
    pub ring_full_waits: u64,
    pub ring_dropped: u64,
    pub crossed: u64,
    /// The persister's outcome, when persisting.
    pub persist: Option<PersistOutcome>,
}

pub fn run_replay(
    file: &Path,
    src: SourceOptions,
    speed: Speed,
    eng: &EngineArgs,
    persist: Option<hermes_persist::PersistOptions>,
    http: Option<&HttpArgs>,
) -> Result<ReplayRun> {
    run_replay_with(file, src, speed, eng, persist, http, None)
}

/// [`run_replay`], with the `--parquet` sink (and the journal it reads) when asked.
pub fn run_replay_with(
    file: &Path,
    src: SourceOptions,
    speed: Speed,
    eng: &EngineArgs,
    persist: Option<hermes_persist::PersistOptions>,
    http: Option<&HttpArgs>,
    parquet: Option<(&ParquetArgs, &PersistArgs, Option<hermes_nats::NatsOptions>)>,
) -> Result<ReplayRun> {
    let source = Source::open(file, &src).with_context(|| format!("opening {}", file.display()))?;
    let dec_opts = eng.decoder();
    let stop = hermes_engine::shutdown_flag();
    let persist_url = persist.as_ref().map(|o| o.database_url.clone());
    let mut eng_opts = eng.engine();
    let (tap, persister, parquet, nats_stats) = match parquet {
        Some((pq, pa, nats)) => {
            let mut p = start_persistence(persist, pq, pa, eng, Some(file), nats)?;
            p.attach(&mut eng_opts);
            (p.tap, p.persister, p.parquet, p.nats_stats)
        }
        None => {
            let (tap, p) = start_persister(persist)?;
            (tap, p, None, None)
        }
    };
    let db_url = persist_url;
    let _http = match http {
        Some(h) => h.start(
            None,
            &eng_opts,
            None,
            persister.as_ref().map(|p| p.stats()),
            db_url,
            None,
            nats_stats,
        )?,
        None => None,
    };
    let out = hermes_engine::run(&eng_opts, move |sink| {
        let mut decoder = Decoder::new(dec_opts);
        // The tap is dropped when the replay ends: the persister then writes the rest.
        match tap {
            Some(mut tap) => {
                hermes_engine::replay(source, &mut decoder, speed, sink, &mut tap, &stop)
            }
            None => hermes_engine::replay(
                source,
                &mut decoder,
                speed,
                sink,
                &mut hermes_ingest::NoTap,
                &stop,
            ),
        }
    })?;
    let persist = persister.map(finish_persister);
    finish_parquet(parquet)?;
    let lines = final_lines(&out.books);
    use std::sync::atomic::Ordering::Relaxed;
    Ok(ReplayRun {
        summary: out.ingest,
        lines,
        elapsed: out.elapsed,
        pinned: out.pinned,
        // Relaxed: both threads have been joined.
        ring_full_waits: out.ring.full_waits.load(Relaxed),
        ring_dropped: out.ring.dropped.load(Relaxed),
        crossed: out.books.stats().market.crossed,
        persist,
    })
}

pub fn summary_line(file: &Path, r: &ReplayRun) -> String {
    let s = &r.summary;
    let d = &s.decode;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    format!(
        "replayed {}: {} frames, {} events ({} levels, {} trades, {} quotes, {} snapshots), {} errors, {} gaps, {} resyncs, {} stale/duplicate frames skipped, {} crossed commits, ring full {}× (dropped {}), {:.3} s, {:.0} frames/s, {:.1} MB/s, threads {}",
        file.display(),
        d.frames,
        d.events,
        d.levels,
        d.trades,
        d.quotes,
        d.snapshots,
        s.errors_total(),
        d.gaps,
        d.resyncs,
        d.stale_frames,
        r.crossed,
        r.ring_full_waits,
        r.ring_dropped,
        secs,
        d.frames as f64 / secs,
        d.bytes as f64 / secs / 1e6,
        if r.pinned { "pinned" } else { "not pinned" },
    )
}

pub fn cmd_replay(a: ReplayArgs) -> Result<()> {
    let src = SourceOptions {
        format: a.format.into(),
        venue: a.venue.map(Venue::from),
        symbol: a.symbol.clone(),
        max_line_bytes: a.max_line_bytes,
    };
    let persist = a.persist.options(Some(&a.file), &a.engine)?;
    let r = run_replay_with(
        &a.file,
        src,
        a.speed,
        &a.engine,
        persist,
        Some(&a.http),
        Some((&a.parquet, &a.persist, a.nats.options()?)),
    )?;
    if a.print_final {
        let mut out = std::io::stdout().lock();
        for l in &r.lines {
            writeln!(out, "{l}")?;
        }
    }
    let s = &r.summary;
    for d in &s.damage {
        eprintln!(
            "hermes: {}: damaged region at bytes {}..{} ({} bytes; {}): skipped, replay resumed at the next valid record",
            a.file.display(),
            d.offset,
            d.offset + d.len,
            d.len,
            d.reason
        );
    }
    if s.damaged.0 > 0 {
        eprintln!(
            "hermes: {}: {} damaged regions ({} bytes) skipped in all; every valid record around them was replayed",
            a.file.display(),
            s.damaged.0,
            s.damaged.1
        );
    }
    if let Some(t) = &s.torn {
        eprintln!(
            "hermes: {}: torn or corrupt tail at byte {} ({}; {} trailing bytes ignored); everything before it was replayed",
            a.file.display(),
            t.offset,
            t.reason,
            t.trailing_bytes
        );
    }
    if s.untimed > 0 && a.speed != Speed::Max {
        eprintln!(
            "hermes: {} frames had no receive time and were replayed unpaced",
            s.untimed
        );
    }
    for (sym, n) in &s.unsynced {
        eprintln!("hermes: {sym}: no depth snapshot in the file; {n} diffs stayed buffered (book not built)");
    }
    for sym in &s.stale {
        eprintln!("hermes: {sym}: stale at the end (a gap without a later snapshot)");
    }
    if s.errors_total() as usize > s.errors.len() {
        eprintln!(
            "hermes: {} more errors not shown",
            s.errors_total() as usize - s.errors.len()
        );
    }
    eprintln!("{}", summary_line(&a.file, &r));
    if let Some(f) = &s.fatal {
        bail!("replay stopped early: {f}");
    }
    if let Some(p) = &r.persist {
        report_persist(p)?;
    }
    if s.interrupted {
        bail!(
            "interrupted by a signal after {} frames: the rest of {} was not replayed (what was replayed is in shm{})",
            s.decode.frames,
            a.file.display(),
            if r.persist.is_some() { " and, as the line above says, persisted" } else { "" }
        );
    }
    Ok(())
}

/// One `--print-final` line per instrument, from the engine's last slot images.
pub fn final_lines(p: &Publisher) -> Vec<String> {
    p.published()
        .map(|(i, t)| {
            tob_json(
                i.venue.name(),
                &i.symbol,
                i.scale.price_decimals,
                i.scale.size_decimals,
                t,
            )
        })
        .collect()
}
