//! `hermes run` and `hermes record`: live ingest from the venues' WebSockets (or the
//! simulator), with the persister, the recorder and the HTTP face.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hermes_ingest::{Decoder, Venue};

use crate::cmd::replay::final_lines;
use crate::flags::{
    finish_parquet, finish_persister, report_persist, secs, start_persistence, EngineArgs,
    HttpArgs, NatsArgs, ParquetArgs, PersistArgs,
};

/// `hermes run` arguments.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// TOML config file ([coinbase], [binance], [connection] tables); environment
    /// variables override it [default: none: the environment alone].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Stop after this many seconds [default: run until SIGINT/SIGTERM].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop once no frame arrived for this many seconds (after the first one)
    /// [default: never].
    #[arg(long)]
    pub until_idle: Option<f64>,
    /// After the run, print one JSON object per instrument (as `replay --print-final`).
    #[arg(long)]
    pub print_final: bool,
    /// Print counters to stderr every second.
    #[arg(long)]
    pub stats: bool,
    /// First reconnect delay in ms, overriding the config file [default: 1000].
    #[arg(long)]
    pub reconnect_min_ms: Option<u64>,
    /// Largest reconnect delay in ms [default: 60000].
    #[arg(long)]
    pub reconnect_max_ms: Option<u64>,
    /// Circuit-breaker cool-down in ms [default: 30000].
    #[arg(long)]
    pub breaker_cooldown_ms: Option<u64>,
    /// Largest accepted WebSocket message in bytes [default: 67108864].
    #[arg(long)]
    pub max_frame_bytes: Option<usize>,
    /// Do not serve HTTP (by default `run` serves on 127.0.0.1:9100).
    #[arg(long)]
    pub no_http: bool,
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

/// `hermes record` arguments.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// Directory of the capture files.
    #[arg(long)]
    pub out: PathBuf,
    /// Start a new file after this many MiB.
    #[arg(long, default_value_t = 256)]
    pub rotate_mb: u64,
    /// Start a new file after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub rotate_secs: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn live_config(a: &RunArgs) -> Result<hermes_live::LiveConfig> {
    let mut cfg = hermes_live::LiveConfig::load(a.config.as_deref(), &|k| std::env::var(k).ok())?;
    let p = &mut cfg.policy;
    if let Some(v) = a.reconnect_min_ms {
        p.reconnect_min = Duration::from_millis(v.max(1));
    }
    if let Some(v) = a.reconnect_max_ms {
        p.reconnect_max = Duration::from_millis(v.max(1));
    }
    if let Some(v) = a.breaker_cooldown_ms {
        p.breaker_cooldown = Duration::from_millis(v);
    }
    if let Some(v) = a.max_frame_bytes {
        p.max_frame_bytes = v;
    }
    if p.reconnect_max < p.reconnect_min {
        p.reconnect_max = p.reconnect_min;
    }
    Ok(cfg)
}

pub fn cmd_run(a: RunArgs, recorder: Option<hermes_live::Recorder>) -> Result<()> {
    live_run(a, recorder, None).map(|_| ())
}

/// What a live run did, for the demo's summary.
pub struct LiveOutcome {
    pub decode: hermes_ingest::DecodeStats,
    pub visible_ns: hdrhistogram::Histogram<u64>,
    pub pinned: bool,
}

pub fn live_run(
    a: RunArgs,
    recorder: Option<hermes_live::Recorder>,
    cfg: Option<hermes_live::LiveConfig>,
) -> Result<LiveOutcome> {
    let cfg = match cfg {
        Some(c) => c,
        None => live_config(&a)?,
    };
    let webhook = a.http.ingest_username.is_some() && !a.no_http;
    cfg.require_feed(webhook)?;
    // The venues' instruments and the webhook's own allowance must fit the shm directory
    // together: webhook symbols can then never take a venue's slot.
    let venues: usize = cfg.enabled().map(|f| f.symbols.len()).sum();
    let webhook_slots = if webhook {
        a.http.webhook_max_symbols
    } else {
        0
    };
    if venues + webhook_slots > a.engine.shm_slots as usize {
        bail!(
            "{venues} configured instruments and {webhook_slots} webhook symbols (--webhook-max-symbols) do not fit {} shm slots (--shm-slots)",
            a.engine.shm_slots
        );
    }
    let limits = hermes_live::RunLimits {
        duration: secs(a.duration, "duration")?,
        until_idle: secs(a.until_idle, "until-idle")?,
        stats_every: a.stats.then_some(Duration::from_secs(1)),
    };
    let stats = std::sync::Arc::new(hermes_live::LiveStats::default());
    let dec_opts = a.engine.decoder();
    let stop = hermes_engine::shutdown_flag();
    let st = stats.clone();
    let mut eng_opts = a.engine.engine();
    eng_opts.measure_visible = true;
    let mut started = start_persistence(
        a.persist.options(None, &a.engine)?,
        &a.parquet,
        &a.persist,
        &a.engine,
        None,
        a.nats.options()?,
    )?;
    started.attach(&mut eng_opts);
    let nats_stats = started.nats_stats.clone();
    let (ptap, persister, parquet) = (started.tap, started.persister, started.parquet);
    let venues: Vec<Venue> = cfg.enabled().map(|f| f.venue).collect();
    let (tick_tx, tick_rx) = tokio::sync::mpsc::channel(1024);
    let http = if a.no_http {
        None
    } else {
        a.http.start(
            Some("127.0.0.1:9100".parse().expect("literal address")),
            &eng_opts,
            Some((stats.clone(), venues)),
            persister.as_ref().map(|p| p.stats()),
            a.persist.database_url.clone(),
            Some(tick_tx),
            nats_stats,
        )?
    };
    let ticks = http.is_some().then_some(tick_rx);
    let out = hermes_engine::run(&eng_opts, move |sink| {
        let mut recorder = recorder;
        let mut ptap = ptap;
        let mut taps: Vec<&mut dyn hermes_ingest::FrameTap> = Vec::new();
        if let Some(r) = &mut recorder {
            taps.push(r);
        }
        if let Some(t) = &mut ptap {
            taps.push(t);
        }
        let mut tee = Tee(taps);
        let r = hermes_live::ingest(
            &cfg,
            &limits,
            Decoder::new(dec_opts),
            sink,
            &mut tee,
            &st,
            &stop,
            ticks,
        );
        drop(tee);
        // The persister writes the rest once its tap is gone.
        drop(ptap);
        let rec = recorder.map(|mut r| {
            let fin = r.finish();
            (r.files().to_vec(), r.frames, r.error.clone(), fin)
        });
        (r, rec)
    })?;
    drop(http);
    let persist = persister.map(finish_persister);
    let parquet = finish_parquet(parquet);
    let (summary, rec) = out.ingest;
    let summary = summary?;
    if a.print_final {
        let mut o = std::io::stdout().lock();
        for l in final_lines(&out.books) {
            writeln!(o, "{l}")?;
        }
    }
    for s in &summary.stale {
        eprintln!("hermes: {s}: stale at the end (waiting for a rebuild)");
    }
    let d = &summary.decode;
    eprintln!(
        "run: {} frames, {} events ({} levels, {} trades, {} quotes, {} snapshots), {} errors, {} gaps, {} resyncs, {} stale/duplicate frames skipped, {:.3} s; {}",
        d.frames, d.events, d.levels, d.trades, d.quotes, d.snapshots, d.parse_errors, d.gaps, d.resyncs, d.stale_frames,
        out.elapsed.as_secs_f64(),
        stats.line()
    );
    if let Some(p) = &persist {
        report_persist(p)?;
    }
    parquet?;
    if let Some((files, frames, err, fin)) = rec {
        eprintln!(
            "recorded {frames} frames into {} file(s): {}",
            files.len(),
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        if let Some(e) = err {
            bail!("recording failed: {e}");
        }
        fin.context("closing the recording")?;
    }
    Ok(LiveOutcome {
        decode: summary.decode,
        visible_ns: out.visible_ns,
        pinned: out.pinned,
    })
}

pub fn cmd_record(a: RecordArgs) -> Result<()> {
    let rec = hermes_live::Recorder::new(
        &a.out,
        a.rotate_mb.max(1) << 20,
        Duration::from_secs(a.rotate_secs.max(1)),
    )?;
    cmd_run(a.run, Some(rec))
}

/// Several taps in a row: the recorder and the persister see every frame.
pub struct Tee<'a>(Vec<&'a mut dyn hermes_ingest::FrameTap>);

impl hermes_ingest::FrameTap for Tee<'_> {
    fn frame(&mut self, f: &hermes_ingest::Frame<'_>) {
        for t in self.0.iter_mut() {
            t.frame(f);
        }
    }
}
