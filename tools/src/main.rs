//! `hermes`: the command line. Argument parsing, wiring and printing only; the work is
//! done by the library crates.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hermes::engine::{self, EngineOptions, IdleStrategy, RingFullPolicy};
use hermes::replay::{self, ReplaySummary, Speed};
use hermes::report::tob_json;
use hermes::synth::{Synth, SynthOptions};
use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
use hermes_ingest::source::{Format, Source, SourceOptions};
use hermes_ingest::{Decoder, DecoderOptions, Venue};
use hermes_shm::{ShmReader, WriterStatus};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hermes: a low-latency market-data engine. Exchange frames in, exact fixed-point books
/// out, published to a shared-memory file that other processes read lock-free.
#[derive(Parser, Debug)]
#[command(name = "hermes", version, propagate_version = true)]
struct Cli {
    /// Log as JSON lines (one object per event, with its fields such as venue, symbol
    /// and connection id) instead of human-readable text.
    #[arg(long, global = true, env = "HERMES_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Replay a capture (native or JSON lines) through the engine.
    Replay(ReplayArgs),
    /// Inspect a shm file.
    #[command(subcommand)]
    Shm(ShmCmd),
    /// Write a synthetic market (random-walk books, valid venue frames) to a capture file.
    Generate(GenerateArgs),
    /// The demo: generate a sample market, replay it into shm, read it back from another
    /// process, and print a summary.
    Demo(DemoArgs),
    /// A live terminal table over the shm file (`--once`: one plain-text table).
    Top(hermes::top::TopArgs),
    /// PostgreSQL schema maintenance.
    #[command(subcommand)]
    Db(DbCmd),
    /// Live ingest from the exchanges' WebSockets (or the simulator), configured by a
    /// TOML file and COINBASE_*/BINANCE_* environment variables.
    Run(RunArgs),
    /// Like `run`, and write every received frame to rotating native capture files.
    Record(RecordArgs),
    /// The exchange simulator: serve a capture or a synthetic market over a local
    /// WebSocket with the venue's protocol, with fault injection.
    Sim(SimArgs),
}

#[derive(Subcommand, Debug)]
enum ShmCmd {
    /// Print every instrument's top of book from a shm file (from this separate process).
    Dump {
        /// The shm file.
        path: PathBuf,
        /// One JSON object per line (the same shape as `replay --print-final`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum VenueArg {
    Coinbase,
    Binance,
}

impl From<VenueArg> for Venue {
    fn from(v: VenueArg) -> Venue {
        match v {
            VenueArg::Coinbase => Venue::Coinbase,
            VenueArg::Binance => Venue::Binance,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Auto,
    Native,
    Jsonl,
}

#[derive(Args, Debug, Clone)]
struct EngineArgs {
    /// The shm file to publish into.
    #[arg(long, env = "HERMES_SHM_PATH", default_value = "/dev/shm/hermes")]
    shm: PathBuf,
    /// Slots (instruments) in the shm file.
    #[arg(long, default_value_t = 256)]
    shm_slots: u32,
    /// Make the shm file readable by its group (mode 0640 instead of 0600).
    #[arg(long)]
    shm_group: bool,
    /// How idle threads wait. spin-yield, the default, measured in the demo's live stage
    /// (2 cores): p50 receive → visible in shm 1.7 µs vs 82-158 µs for backoff and 540 µs for
    /// spin (which starves the other threads), at similar CPU for a busy feed; backoff uses
    /// almost no CPU while the feed is quiet.
    #[arg(long, value_enum, default_value_t = IdleStrategy::SpinYield)]
    idle: IdleStrategy,
    /// What the ingest thread does when the ring to the book thread is full.
    #[arg(long, value_enum, default_value_t = RingFullPolicy::Block)]
    ring_full: RingFullPolicy,
    /// Ring capacity in events.
    #[arg(long, default_value_t = 65536)]
    ring_capacity: usize,
    /// Do not pin the ingest and book threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Decimals of prices and sizes for every instrument (8 covers both venues).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=18))]
    decimals: u8,
    /// Decimals of one instrument, `VENUE:SYMBOL=PRICE_DECIMALS,SIZE_DECIMALS` (e.g.
    /// `coinbase:BTC-USD=2,8`), overriding --decimals; repeatable.
    #[arg(long = "scale", value_parser = parse_scale)]
    scales: Vec<(Venue, String, hermes_book::Scale)>,
    #[command(flatten)]
    kernels: hermes::analytics::KernelArgs,
}

impl EngineArgs {
    fn engine(&self) -> EngineOptions {
        EngineOptions {
            shm_path: Some(self.shm.clone()),
            shm_slots: self.shm_slots,
            shm_group_readable: self.shm_group,
            ring_capacity: self.ring_capacity.max(2),
            idle: self.idle,
            ring_full: self.ring_full,
            pin: !self.no_pin,
            kernels: self.kernels.config(),
            ..EngineOptions::default()
        }
    }

    fn decoder(&self) -> DecoderOptions {
        let mut d = DecoderOptions {
            max_instruments: self.shm_slots as usize,
            ..DecoderOptions::default()
        };
        d.scales.default = hermes_book::Scale {
            price_decimals: self.decimals,
            size_decimals: self.decimals,
        };
        for (v, sym, sc) in &self.scales {
            d.scales.overrides.insert((*v, sym.clone()), *sc);
        }
        d
    }
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// Capture file: native, or JSON lines (optionally `<timestamp> ` prefixed, cryptofeed
    /// recorder formats), optionally .gz or .zst.
    file: PathBuf,
    /// Venue of JSON-lines frames (detected from the first frame when absent).
    #[arg(long, value_enum)]
    venue: Option<VenueArg>,
    /// Input format.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    format: FormatArg,
    /// Symbol of REST snapshot lines that do not name one (detected when the file has one).
    #[arg(long)]
    symbol: Option<String>,
    /// Pacing: max, realtime, or a factor such as 10x.
    #[arg(long, default_value = "max")]
    speed: Speed,
    /// After the replay, print one JSON object per instrument.
    #[arg(long)]
    print_final: bool,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    persist: PersistArgs,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Output capture file.
    #[arg(long)]
    out: PathBuf,
    /// Frames to write.
    #[arg(long, default_value_t = 100_000)]
    frames: u64,
    /// Instruments per venue.
    #[arg(long, default_value_t = 3)]
    instruments: usize,
    /// Levels per side in the initial books.
    #[arg(long, default_value_t = 50)]
    depth: usize,
    /// Venues to generate.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [VenueArg::Coinbase, VenueArg::Binance])]
    venues: Vec<VenueArg>,
    /// Seed (same seed, same file).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write JSON lines (`<recv ns> <frame>`) instead of the native format. Binance REST
    /// snapshots cannot be expressed per symbol in that format, so it needs a single
    /// Binance instrument or Coinbase only.
    #[arg(long)]
    jsonl: bool,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Where the demo keeps its files (default: $XDG_DATA_HOME/hermes or ~/.local/share/hermes).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Frames in the generated sample.
    #[arg(long, default_value_t = 200_000)]
    frames: u64,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    persist: PersistArgs,
    #[command(flatten)]
    http: HttpArgs,
}

fn main() {
    let cli = Cli::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            // PostgreSQL's NOTICEs (e.g. "relation already exists, skipping" from the
            // idempotent migrations) are not events a user needs.
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"))
    };
    if cli.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter())
            .with_target(false)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter())
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let r = match cli.cmd {
        Cmd::Replay(a) => cmd_replay(a),
        Cmd::Shm(ShmCmd::Dump { path, json }) => cmd_shm_dump(&path, json),
        Cmd::Generate(a) => cmd_generate(a),
        Cmd::Demo(a) => cmd_demo(a),
        Cmd::Top(a) => hermes::top::run(&a),
        Cmd::Db(DbCmd::Migrate { database_url }) => cmd_db_migrate(&database_url),
        Cmd::Run(a) => cmd_run(a, None),
        Cmd::Record(a) => cmd_record(a),
        Cmd::Sim(a) => cmd_sim(a),
    };
    if let Err(e) = r {
        eprintln!("hermes: error: {e:#}");
        std::process::exit(1);
    }
}

struct ReplayRun {
    summary: ReplaySummary,
    lines: Vec<String>,
    elapsed: Duration,
    pinned: bool,
    ring_full_waits: u64,
    ring_dropped: u64,
    crossed: u64,
    /// The persister's outcome, when persisting.
    persist: Option<PersistOutcome>,
}

fn run_replay(
    file: &Path,
    src: SourceOptions,
    speed: Speed,
    eng: &EngineArgs,
    persist: Option<hermes_persist::PersistOptions>,
    http: Option<&HttpArgs>,
) -> Result<ReplayRun> {
    let source = Source::open(file, &src).with_context(|| format!("opening {}", file.display()))?;
    let dec_opts = eng.decoder();
    let stop = engine::shutdown_flag();
    let persist_url = persist.as_ref().map(|o| o.database_url.clone());
    let (tap, persister) = match persist {
        Some(o) => {
            let journal = o.journal_dir.clone();
            let (tap, p) = hermes_persist::start(o).with_context(|| {
                format!("starting the persister (journal {})", journal.display())
            })?;
            (Some(tap), Some(p))
        }
        None => (None, None),
    };
    let eng_opts = eng.engine();
    let db_url = persist_url;
    let _http = match http {
        Some(h) => h.start(
            None,
            &eng_opts,
            None,
            persister.as_ref().map(|p| p.stats()),
            db_url,
            None,
        )?,
        None => None,
    };
    let out = engine::run(&eng_opts, move |sink| {
        let mut decoder = Decoder::new(dec_opts);
        // The tap is dropped when the replay ends: the persister then writes the rest.
        match tap {
            Some(mut tap) => replay::replay(source, &mut decoder, speed, sink, &mut tap, &stop),
            None => replay::replay(
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
    let lines = out
        .books
        .instruments
        .iter()
        .map(|i| {
            tob_json(
                i.venue.name(),
                &i.symbol,
                i.scale.price_decimals,
                i.scale.size_decimals,
                &i.last,
            )
        })
        .collect();
    use std::sync::atomic::Ordering::Relaxed;
    Ok(ReplayRun {
        summary: out.ingest,
        lines,
        elapsed: out.elapsed,
        pinned: out.pinned,
        // Relaxed: both threads have been joined.
        ring_full_waits: out.ring.full_waits.load(Relaxed),
        ring_dropped: out.ring.dropped.load(Relaxed),
        crossed: out.books.stats.crossed,
        persist,
    })
}

fn summary_line(file: &Path, r: &ReplayRun) -> String {
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

fn cmd_replay(a: ReplayArgs) -> Result<()> {
    let src = SourceOptions {
        format: match a.format {
            FormatArg::Auto => Format::Auto,
            FormatArg::Native => Format::Native,
            FormatArg::Jsonl => Format::Jsonl,
        },
        venue: a.venue.map(Venue::from),
        symbol: a.symbol.clone(),
    };
    let persist = a.persist.options(Some(&a.file), &a.engine)?;
    let r = run_replay(&a.file, src, a.speed, &a.engine, persist, Some(&a.http))?;
    if a.print_final {
        let mut out = std::io::stdout().lock();
        for l in &r.lines {
            writeln!(out, "{l}")?;
        }
    }
    let s = &r.summary;
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
    Ok(())
}

fn writer_status_text(st: WriterStatus) -> String {
    match st {
        WriterStatus::Alive { heartbeat_age } => {
            format!("alive (heartbeat {} ms ago)", heartbeat_age.as_millis())
        }
        WriterStatus::Closed => "closed cleanly (data is its final state)".into(),
        WriterStatus::Dead { pid } => {
            format!("DEAD (pid {pid} is gone without closing; data may be old)")
        }
        WriterStatus::Stalled { heartbeat_age } => {
            format!(
                "STALLED (no heartbeat for {:.1} s)",
                heartbeat_age.as_secs_f64()
            )
        }
        WriterStatus::Replaced => "REPLACED (a newer writer recreated the file; reopen it)".into(),
    }
}

fn cmd_shm_dump(path: &Path, json: bool) -> Result<()> {
    // SAFETY: Hermes writers never truncate a published shm file (a restart renames a new
    // file into place); we only read.
    let reader = unsafe { ShmReader::open(path) }.with_context(|| {
        format!(
            "opening shm file {} (is the engine running with --shm {0}?)",
            path.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    let insts = reader.instruments();
    if !json {
        writeln!(
            out,
            "{}: writer pid {}, generation {}, {}; {} instruments in {} slots",
            path.display(),
            reader.writer_pid(),
            reader.generation(),
            writer_status_text(reader.writer_status(Duration::from_millis(500))),
            insts.len(),
            reader.slot_count()
        )?;
        writeln!(
            out,
            "{:<9} {:<14} {:>16} {:>16} {:>16} {:>16} {:>12} {:>9} {:>5}",
            "venue", "symbol", "bid_qty", "bid", "ask", "ask_qty", "seq", "updates", "stale"
        )?;
    }
    for i in &insts {
        let Some(t) = reader.read(i.slot) else {
            bail!(
                "{} {}: slot {} stayed mid-update; the writer died or stopped inside it ({})",
                i.venue.name(),
                i.symbol,
                i.slot.0,
                writer_status_text(reader.writer_status(Duration::from_millis(500)))
            );
        };
        if json {
            writeln!(
                out,
                "{}",
                tob_json(
                    i.venue.name(),
                    &i.symbol,
                    i.price_decimals,
                    i.size_decimals,
                    &t
                )
            )?;
        } else {
            let px = |v: i64, has: bool| {
                if has {
                    hermes_book::Decimal::new(v, i.price_decimals).to_string()
                } else {
                    "-".into()
                }
            };
            let sz = |v: i64, has: bool| {
                if has {
                    hermes_book::Decimal::new(v, i.size_decimals).to_string()
                } else {
                    "-".into()
                }
            };
            let hb = t.flags & hermes_shm::FLAG_HAS_BID != 0;
            let ha = t.flags & hermes_shm::FLAG_HAS_ASK != 0;
            writeln!(
                out,
                "{:<9} {:<14} {:>16} {:>16} {:>16} {:>16} {:>12} {:>9} {:>5}",
                i.venue.name(),
                i.symbol,
                sz(t.bid_qty, hb),
                px(t.bid_px, hb),
                px(t.ask_px, ha),
                sz(t.ask_qty, ha),
                t.update_id,
                t.updates,
                if t.is_stale() { "STALE" } else { "no" }
            )?;
        }
    }
    Ok(())
}

fn generate(path: &Path, opts: SynthOptions, frames: u64, jsonl: bool) -> Result<()> {
    let mut synth = Synth::new(opts);
    if jsonl {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        for _ in 0..frames {
            let fr = synth.next_frame();
            writeln!(w, "{} {}", fr.recv_ts_ns, fr.data)?;
        }
        w.flush()?;
        return Ok(());
    }
    let mut w = CaptureWriter::create(path)?;
    for _ in 0..frames {
        let fr = synth.next_frame();
        let (kind, tag) = match &fr.rest_symbol {
            Some(s) => (RecordKind::RestDepth, s.as_bytes()),
            None => (RecordKind::Ws, &b""[..]),
        };
        w.append(&Record {
            recv_ts_ns: fr.recv_ts_ns,
            venue: fr.venue,
            kind,
            conn: 0,
            tag,
            data: fr.data.as_bytes(),
        })?;
    }
    w.sync()?;
    Ok(())
}

fn cmd_generate(a: GenerateArgs) -> Result<()> {
    let venues: Vec<Venue> = a.venues.iter().map(|v| Venue::from(*v)).collect();
    if a.jsonl && venues.contains(&Venue::Binance) && (a.instruments > 1 || venues.len() > 1) {
        bail!("--jsonl holds Binance REST snapshots only for a single Binance instrument; use the native format (drop --jsonl) or --venues binance --instruments 1");
    }
    if a.instruments == 0 || a.depth == 0 {
        bail!("--instruments and --depth must be at least 1");
    }
    let opts = SynthOptions {
        venues,
        instruments: a.instruments,
        depth: a.depth,
        seed: a.seed,
        ..SynthOptions::default()
    };
    generate(&a.out, opts, a.frames, a.jsonl)?;
    eprintln!("wrote {} frames to {}", a.frames, a.out.display());
    Ok(())
}

fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("hermes");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/share/hermes");
    }
    std::env::temp_dir().join("hermes")
}

fn cmd_demo(a: DemoArgs) -> Result<()> {
    let dir = a.dir.clone().unwrap_or_else(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sample = dir.join("sample.hcap");
    eprintln!("[1/4] generating a synthetic market ({} frames, Coinbase + Binance, 3 instruments each) into {}", a.frames, sample.display());
    generate(&sample, SynthOptions::default(), a.frames, false)?;
    // PostgreSQL: DATABASE_URL / --database-url, or a private cluster started here.
    let (url, local) = match &a.persist.database_url {
        Some(u) => {
            eprintln!("[2/4] using PostgreSQL at {u}");
            (u.clone(), None)
        }
        None => {
            let pg_dir = demo_pg_dir(&dir);
            eprintln!(
                "[2/4] starting a private PostgreSQL in {} (reused if already running)",
                pg_dir.display()
            );
            let pg = hermes_persist::local_pg::LocalPg::start(&pg_dir)
                .context("starting the demo's PostgreSQL")?;
            let url = pg
                .create_database("hermes")
                .context("creating the demo database")?;
            (url, Some(pg))
        }
    };
    let mut persist = a.persist.clone();
    persist.database_url = Some(url.clone());
    if persist.journal.is_none() {
        persist.journal = Some(dir.join("journal"));
    }
    let opts = persist.options(Some(&sample), &a.engine)?;
    eprintln!(
        "[3/4] replaying it through the engine (ingest thread → ring → book thread → shm {}) with the persister (journal → PostgreSQL)",
        a.engine.shm.display()
    );
    let r = run_replay(
        &sample,
        SourceOptions::default(),
        Speed::Max,
        &a.engine,
        opts,
        None,
    )?;
    eprintln!("{}", summary_line(&sample, &r));
    if let Some(p) = &r.persist {
        report_persist(p)?;
    }
    eprintln!(
        "[4/5] serving the same sample from the exchange simulator (Coinbase and Binance protocols on local WebSockets) and ingesting it live (hermes run)"
    );
    let live = demo_live(&a, &sample, &persist)?;
    let d = &live.decode;
    let v = &live.visible_ns;
    let us = |q: f64| v.value_at_quantile(q) as f64 / 1e3;
    eprintln!(
        "live: {} frames, {} gaps, {} resyncs, {} errors; receive → visible in shm per commit ({} commits, 2 cores, threads {}): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        d.frames,
        d.gaps,
        d.resyncs,
        d.parse_errors,
        v.len(),
        if live.pinned { "pinned" } else { "not pinned" },
        us(0.5),
        us(0.99),
        us(0.999),
        v.max() as f64 / 1e3
    );
    eprintln!("[5/5] reading the shm file back from a separate process (hermes shm dump)");
    let exe = std::env::current_exe().context("locating the hermes binary")?;
    let status = std::process::Command::new(&exe)
        .args(["shm", "dump"])
        .arg(&a.engine.shm)
        .status()
        .context("running hermes shm dump")?;
    if !status.success() {
        bail!("hermes shm dump failed ({status})");
    }
    let counts = hermes_persist::row_counts(&url).context("counting rows")?;
    let exe = exe.display();
    let shm = a.engine.shm.display();
    let d = &r.summary.decode;
    println!();
    println!(
        "Demo done: {} frames replayed, {} gaps, {} errors; {} frames ingested live from the simulator, {} gaps, {} errors.",
        d.frames,
        d.gaps,
        r.summary.errors_total(),
        live.decode.frames,
        live.decode.gaps,
        live.decode.parse_errors
    );
    println!(
        "Receive → visible in shm (live, 2 cores): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs over {} commits",
        live.visible_ns.value_at_quantile(0.5) as f64 / 1e3,
        live.visible_ns.value_at_quantile(0.99) as f64 / 1e3,
        live.visible_ns.value_at_quantile(0.999) as f64 / 1e3,
        live.visible_ns.len()
    );
    println!("Rows in PostgreSQL (SELECT count(*)):");
    for (t, n) in &counts {
        println!("  {t:<15} {n:>10}");
    }
    println!("Shared memory: {shm}");
    match &local {
        Some(pg) => println!(
            "PostgreSQL:    private cluster in {} (socket dir {}, port {}), database hermes, left running",
            pg.dir().display(),
            pg.socket_dir().display(),
            pg.port()
        ),
        None => println!("PostgreSQL:    {url}"),
    }
    println!("Look further:");
    println!("  {exe} top --shm {shm} --once       # the live view (drop --once for the interactive one)");
    println!("  {exe} shm dump {shm}               # the books, from the shm file");
    println!("  {exe} shm dump {shm} --json        # the same data as JSON");
    println!("  python3 shm/python/hermes_shm.py {shm}   # the stdlib-only Python reader");
    println!("  psql \"{url}\" -c 'SELECT venue, symbol, count(*) FROM trades GROUP BY 1, 2'");
    println!("  psql \"{url}\" -c 'SELECT * FROM top_of_book ORDER BY ts DESC LIMIT 5'");
    if let Some(pg) = local {
        println!(
            "  kill -INT $(head -1 {}/data/postmaster.pid)   # stop the demo's PostgreSQL",
            pg.dir().display()
        );
        pg.keep_running();
    }
    Ok(())
}

#[derive(Args, Debug)]
struct RunArgs {
    /// TOML config file ([coinbase], [binance], [connection] tables); environment
    /// variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop once no frame arrived for this many seconds (after the first one).
    #[arg(long)]
    until_idle: Option<f64>,
    /// After the run, print one JSON object per instrument (as `replay --print-final`).
    #[arg(long)]
    print_final: bool,
    /// Print counters to stderr every second.
    #[arg(long)]
    stats: bool,
    /// First reconnect delay in ms (overrides the config file).
    #[arg(long)]
    reconnect_min_ms: Option<u64>,
    /// Largest reconnect delay in ms.
    #[arg(long)]
    reconnect_max_ms: Option<u64>,
    /// Circuit-breaker cool-down in ms.
    #[arg(long)]
    breaker_cooldown_ms: Option<u64>,
    /// Largest accepted WebSocket message in bytes.
    #[arg(long)]
    max_frame_bytes: Option<usize>,
    /// Do not serve HTTP (by default `run` serves on 127.0.0.1:9100).
    #[arg(long)]
    no_http: bool,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    persist: PersistArgs,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Args, Debug)]
struct RecordArgs {
    /// Directory of the capture files.
    #[arg(long)]
    out: PathBuf,
    /// Start a new file after this many MiB.
    #[arg(long, default_value_t = 256)]
    rotate_mb: u64,
    /// Start a new file after this many seconds.
    #[arg(long, default_value_t = 3600)]
    rotate_secs: u64,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct SimArgs {
    /// Venue protocol to speak.
    #[arg(long, value_enum)]
    venue: VenueArg,
    /// Serve this capture (native or JSON lines).
    #[arg(
        long,
        conflicts_with = "synthetic",
        required_unless_present = "synthetic"
    )]
    capture: Option<PathBuf>,
    /// Serve a synthetic random-walk market with this many instruments.
    #[arg(long)]
    synthetic: Option<usize>,
    /// Listen address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Pacing: realtime, a factor such as 10x, or max (as fast as clients read).
    #[arg(long, default_value = "realtime")]
    speed: Speed,
    /// A fixed rate in frames per second (overrides --speed).
    #[arg(long)]
    rate: Option<f64>,
    /// Fault injection: KIND=RATE (probability per frame), KIND=every:N or KIND=at:N,M;
    /// kinds disconnect, gap, duplicate, reorder, malformed, oversize, stall. Repeatable.
    #[arg(long)]
    fault: Vec<hermes::sim::Fault>,
    /// Levels per side of synthetic books.
    #[arg(long, default_value_t = 50)]
    depth: usize,
    /// Frames of the synthetic market (endless when absent).
    #[arg(long)]
    frames: Option<u64>,
    /// Seed of the synthetic market and of fault decisions.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Size of an `oversize` frame in bytes.
    #[arg(long, default_value_t = 80 << 20)]
    oversize_bytes: usize,
    /// Length of a `stall` in ms.
    #[arg(long, default_value_t = 2000)]
    stall_ms: u64,
    /// REST depth requests per second before answering 429 with Retry-After.
    #[arg(long, default_value_t = 20)]
    rest_per_second: u32,
}

fn live_config(a: &RunArgs) -> Result<hermes::live::LiveConfig> {
    let mut cfg = hermes::live::LiveConfig::load(a.config.as_deref(), &|k| std::env::var(k).ok())?;
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

fn secs(v: Option<f64>, name: &str) -> Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!("--{name} must be a non-negative number of seconds, got {s}"),
    }
}

fn cmd_run(a: RunArgs, recorder: Option<hermes::live::Recorder>) -> Result<()> {
    live_run(a, recorder, None).map(|_| ())
}

/// What a live run did, for the demo's summary.
struct LiveOutcome {
    decode: hermes_ingest::DecodeStats,
    visible_ns: hdrhistogram::Histogram<u64>,
    pinned: bool,
}

fn live_run(
    a: RunArgs,
    recorder: Option<hermes::live::Recorder>,
    cfg: Option<hermes::live::LiveConfig>,
) -> Result<LiveOutcome> {
    let cfg = match cfg {
        Some(c) => c,
        None => live_config(&a)?,
    };
    let webhook = a.http.ingest_username.is_some() && !a.no_http;
    cfg.require_feed(webhook)?;
    let limits = hermes::live::RunLimits {
        duration: secs(a.duration, "duration")?,
        until_idle: secs(a.until_idle, "until-idle")?,
        stats_every: a.stats.then_some(Duration::from_secs(1)),
    };
    let stats = std::sync::Arc::new(hermes::live::LiveStats::default());
    let dec_opts = a.engine.decoder();
    let stop = engine::shutdown_flag();
    let st = stats.clone();
    let mut eng_opts = a.engine.engine();
    eng_opts.measure_visible = true;
    let (ptap, persister) = match a.persist.options(None, &a.engine)? {
        Some(o) => {
            let journal = o.journal_dir.clone();
            let (tap, p) = hermes_persist::start(o).with_context(|| {
                format!("starting the persister (journal {})", journal.display())
            })?;
            (Some(tap), Some(p))
        }
        None => (None, None),
    };
    let mut venues = Vec::new();
    if !cfg.coinbase_products.is_empty() {
        venues.push(Venue::Coinbase);
    }
    if !cfg.binance_symbols.is_empty() {
        venues.push(Venue::Binance);
    }
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
        )?
    };
    let ticks = http.is_some().then_some(tick_rx);
    let out = engine::run(&eng_opts, move |sink| {
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
        let r = hermes::live::ingest(
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
    let (summary, rec) = out.ingest;
    let summary = summary?;
    if a.print_final {
        let mut o = std::io::stdout().lock();
        for i in &out.books.instruments {
            writeln!(
                o,
                "{}",
                tob_json(
                    i.venue.name(),
                    &i.symbol,
                    i.scale.price_decimals,
                    i.scale.size_decimals,
                    &i.last
                )
            )?;
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

fn cmd_record(a: RecordArgs) -> Result<()> {
    let rec = hermes::live::Recorder::new(
        &a.out,
        a.rotate_mb.max(1) << 20,
        Duration::from_secs(a.rotate_secs.max(1)),
    )?;
    cmd_run(a.run, Some(rec))
}

fn cmd_sim(a: SimArgs) -> Result<()> {
    use hermes::sim::{Pacing, SimOptions, SimSource};
    let source = match (&a.capture, a.synthetic) {
        (Some(p), _) => SimSource::Capture(p.clone()),
        (None, Some(n)) if n > 0 => SimSource::Synthetic {
            instruments: n,
            depth: a.depth.max(1),
            seed: a.seed,
            frames: a.frames,
        },
        _ => bail!("give --capture FILE or --synthetic N (N >= 1)"),
    };
    let pacing = match (a.rate, a.speed) {
        (Some(r), _) if r.is_finite() && r > 0.0 => Pacing::Rate(r),
        (Some(r), _) => bail!("--rate must be a positive number of frames per second, got {r}"),
        (None, Speed::Max) => Pacing::Max,
        (None, Speed::Times(x)) => Pacing::Recorded(x),
    };
    let opts = SimOptions {
        venue: a.venue.into(),
        source,
        listen: a.listen,
        pacing,
        faults: a.fault.clone(),
        oversize_bytes: a.oversize_bytes,
        stall: Duration::from_millis(a.stall_ms),
        seed: a.seed,
        rest_per_second: a.rest_per_second.max(1),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = engine::shutdown_flag();
    rt.block_on(async move {
        let listener = hermes::sim::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        // The first line says where to connect; scripts and tests read it.
        println!("ws://{addr}");
        std::io::stdout().flush()?;
        eprintln!(
            "sim: serving {} on ws://{addr}{}",
            opts.venue.name(),
            if opts.venue == Venue::Binance { format!(" (streams: ws://{addr}/stream?streams=…, REST: http://{addr}/api/v3/depth)") } else { String::new() }
        );
        let stats = std::sync::Arc::new(hermes::sim::SimStats::default());
        let serve = hermes::sim::serve(listener, opts, stats.clone());
        tokio::pin!(serve);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                r = &mut serve => return r,
                _ = tick.tick() => {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        use std::sync::atomic::Ordering::Relaxed;
                        eprintln!(
                            "sim: stopping; {} frames walked, {} sent, {} connections, {} faults, {} REST snapshots ({} throttled)",
                            stats.frames.load(Relaxed), stats.sent.load(Relaxed), stats.connections.load(Relaxed),
                            stats.faults.load(Relaxed), stats.rest.load(Relaxed), stats.rest_limited.load(Relaxed)
                        );
                        return Ok(());
                    }
                }
            }
        }
    })
}

#[derive(Subcommand, Debug)]
enum DbCmd {
    /// Apply the schema migrations (idempotent; the persister also applies them when it
    /// starts).
    Migrate {
        /// PostgreSQL (libpq string such as "host=/run/postgresql dbname=hermes", or a
        /// postgresql:// URL).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

/// Persistence options of the commands that run the engine.
#[derive(Args, Debug, Clone)]
struct PersistArgs {
    /// Persist every frame into this PostgreSQL (libpq string or postgresql:// URL);
    /// without it nothing is persisted (demo: a private cluster is started).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Journal directory: every frame is kept there before it goes to PostgreSQL
    /// [default: $XDG_DATA_HOME/hermes/journal or ~/.local/share/hermes/journal].
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Flush a COPY batch at this many rows...
    #[arg(long, default_value_t = 10_000)]
    batch_rows: usize,
    /// ...or this many milliseconds after its first row, whichever comes first.
    #[arg(long, default_value_t = 100)]
    batch_age_ms: u64,
    /// Receive-time interval between two book_snapshots rows of an instrument, ms.
    #[arg(long, default_value_t = 1000)]
    snapshot_interval_ms: u64,
    /// Levels per side in book_snapshots.
    #[arg(long, default_value_t = 10)]
    snapshot_depth: usize,
    /// Receive-time interval between two top_of_book rows of an instrument, ms.
    #[arg(long, default_value_t = 100)]
    tob_interval_ms: u64,
    /// At the end, how long to keep trying to reach PostgreSQL before giving up (the
    /// journal keeps the rest for the next start), seconds.
    #[arg(long, default_value_t = 30)]
    persist_drain_timeout: u64,
}

impl PersistArgs {
    /// `None` without a database URL. `input` names the replayed file: its contents
    /// identify the stream, so replaying it again adds no row twice.
    fn options(
        &self,
        input: Option<&Path>,
        eng: &EngineArgs,
    ) -> Result<Option<hermes_persist::PersistOptions>> {
        let Some(url) = &self.database_url else {
            return Ok(None);
        };
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
        o.projection.snapshot_interval_ns = self.snapshot_interval_ms.max(1) as i64 * 1_000_000;
        o.projection.snapshot_depth = self.snapshot_depth;
        o.projection.tob_interval_ns = self.tob_interval_ms.max(1) as i64 * 1_000_000;
        Ok(Some(o))
    }
}

/// What the persister did in a run.
struct PersistOutcome {
    stats: std::sync::Arc<hermes_persist::PersistStats>,
    segment: PathBuf,
    torn: Vec<(String, hermes_ingest::capture::TornTail)>,
    result: std::result::Result<(), hermes_persist::PersistError>,
}

fn finish_persister(p: hermes_persist::Persister) -> PersistOutcome {
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

fn report_persist(p: &PersistOutcome) -> Result<()> {
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

fn cmd_db_migrate(url: &str) -> Result<()> {
    let applied = hermes_persist::migrate(url).context("migrating the schema")?;
    if applied.is_empty() {
        println!("schema up to date");
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(())
}

/// The demo's PostgreSQL directory: under the demo directory, unless the server user
/// (as root: `postgres`) cannot reach it (e.g. under /root), then under /var/tmp.
fn demo_pg_dir(dir: &Path) -> PathBuf {
    let d = dir.join("pg");
    if hermes_persist::local_pg::reachable_by_server(dir) {
        d
    } else {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        PathBuf::from(format!("/var/tmp/hermes-demo-{uid}/pg"))
    }
}

/// The HTTP face (metrics, health, REST, SSE, webhook).
#[derive(Args, Debug, Clone)]
struct HttpArgs {
    /// Serve HTTP on this address (port 0: any free port; the address is logged).
    #[arg(long, env = "HERMES_HTTP_ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Require this `x-api-key` on public reads (/symbols, /stream).
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Webhook Basic Auth user (with INGEST_PASSWORD; webhook off without both).
    #[arg(long, env = "INGEST_USERNAME")]
    ingest_username: Option<String>,
    /// Webhook Basic Auth password.
    #[arg(long, env = "INGEST_PASSWORD", hide_env_values = true)]
    ingest_password: Option<String>,
    /// Most SSE events per second per client.
    #[arg(long, default_value_t = 20.0)]
    sse_max_hz: f64,
    /// Readiness fails when the persister lags more than this many seconds.
    #[arg(long, default_value_t = 5)]
    ready_max_lag_secs: u64,
}

impl HttpArgs {
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        default: Option<std::net::SocketAddr>,
        eng: &EngineOptions,
        live: Option<(std::sync::Arc<hermes::live::LiveStats>, Vec<Venue>)>,
        persist: Option<std::sync::Arc<hermes_persist::PersistStats>>,
        database_url: Option<String>,
        ticks: Option<tokio::sync::mpsc::Sender<hermes::live::TickRequest>>,
    ) -> Result<Option<hermes::http::HttpServer>> {
        let Some(addr) = self.http.or(default) else {
            return Ok(None);
        };
        let explicit = self.http.is_some();
        let Some(shm) = eng.shm_path.clone() else {
            return Ok(None);
        };
        let ingest_auth = match (&self.ingest_username, &self.ingest_password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => bail!(
                "set both INGEST_USERNAME and INGEST_PASSWORD (non-empty) to enable webhook ticks"
            ),
        };
        let (live, venues) = match live {
            Some((l, v)) => (Some(l), v),
            None => (None, Vec::new()),
        };
        let server = hermes::http::start(
            addr,
            hermes::http::HttpConfig {
                shm_path: shm,
                live,
                venues,
                ring: eng.ring_stats.clone(),
                engine: eng.metrics.clone(),
                persist,
                database_url,
                api_key: self.api_key.clone().filter(|k| !k.is_empty()),
                ticks: if ingest_auth.is_some() { ticks } else { None },
                ingest_auth,
                sse_max_hz: self.sse_max_hz,
                max_persist_lag: Duration::from_secs(self.ready_max_lag_secs),
            },
        );
        match server {
            Ok(s) => Ok(Some(s)),
            // The default address may be taken (another engine on this host): go on
            // without HTTP, and say how to get it.
            Err(e) if !explicit => {
                tracing::warn!(
                    "HTTP not started: {e:#}; pass --http ADDR (port 0 picks a free one)"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Several taps in a row: the recorder and the persister see every frame.
struct Tee<'a>(Vec<&'a mut dyn hermes_ingest::FrameTap>);

impl hermes_ingest::FrameTap for Tee<'_> {
    fn frame(&mut self, f: &hermes_ingest::Frame<'_>) {
        for t in self.0.iter_mut() {
            t.frame(f);
        }
    }
}

/// Parses `VENUE:SYMBOL=PRICE_DECIMALS,SIZE_DECIMALS`.
fn parse_scale(s: &str) -> std::result::Result<(Venue, String, hermes_book::Scale), String> {
    let bad = || {
        format!("bad --scale {s:?}: use VENUE:SYMBOL=PRICE_DECIMALS,SIZE_DECIMALS, e.g. coinbase:BTC-USD=2,8")
    };
    let (inst, dec) = s.split_once('=').ok_or_else(bad)?;
    let (venue, symbol) = inst.split_once(':').ok_or_else(bad)?;
    let venue = match venue {
        "coinbase" => Venue::Coinbase,
        "binance" => Venue::Binance,
        "webhook" => Venue::Webhook,
        _ => {
            return Err(format!(
                "bad --scale {s:?}: venue must be coinbase, binance or webhook"
            ))
        }
    };
    let (p, q) = dec.split_once(',').ok_or_else(bad)?;
    let d = |t: &str| {
        t.trim()
            .parse::<u8>()
            .ok()
            .filter(|d| *d <= 18)
            .ok_or_else(|| format!("bad --scale {s:?}: decimals must be 0..=18"))
    };
    if symbol.is_empty() {
        return Err(bad());
    }
    Ok((
        venue,
        symbol.to_string(),
        hermes_book::Scale {
            price_decimals: d(p)?,
            size_decimals: d(q)?,
        },
    ))
}

/// The demo's live stage: two simulators (Coinbase, Binance) serve `sample` on loopback
/// ports, and the engine ingests them until they go quiet.
fn demo_live(a: &DemoArgs, sample: &Path, persist: &PersistArgs) -> Result<LiveOutcome> {
    use hermes::sim::{Pacing, SimOptions, SimSource};
    let mut urls = Vec::new();
    for venue in [Venue::Coinbase, Venue::Binance] {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding a simulator port")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let opts = SimOptions {
            venue,
            source: SimSource::Capture(sample.to_path_buf()),
            listen: addr,
            // Paced (each venue at 40k frames/s) so the latency figure is that of a
            // busy feed, not of a saturated queue.
            pacing: Pacing::Rate(40_000.0),
            faults: Vec::new(),
            oversize_bytes: 0,
            stall: Duration::ZERO,
            seed: 7,
            rest_per_second: 100,
        };
        std::thread::Builder::new()
            .name(format!("demo-sim-{}", venue.name()))
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    if let Err(e) = hermes::sim::serve(l, opts, Default::default()).await {
                        tracing::error!("demo simulator: {e:#}");
                    }
                });
            })
            .context("starting a simulator thread")?;
        urls.push(format!("ws://{addr}"));
    }
    let synth = SynthOptions::default();
    let symbols = |v: Venue| -> Vec<String> {
        (0..synth.instruments)
            .map(|k| match v {
                Venue::Coinbase => format!("SYN{k}-USD"),
                _ => format!("SYN{k}USDT"),
            })
            .collect()
    };
    let cfg = hermes::live::LiveConfig {
        coinbase_ws_url: urls[0].clone(),
        coinbase_products: symbols(Venue::Coinbase),
        binance_ws_url: urls[1].clone(),
        binance_rest_url: urls[1].replacen("ws://", "http://", 1),
        binance_symbols: symbols(Venue::Binance),
        ..Default::default()
    };
    let run = RunArgs {
        config: None,
        duration: Some(120.0),
        until_idle: Some(1.0),
        print_final: false,
        stats: false,
        reconnect_min_ms: None,
        reconnect_max_ms: None,
        breaker_cooldown_ms: None,
        max_frame_bytes: None,
        no_http: a.http.http.is_none(),
        engine: a.engine.clone(),
        // The replay stage already persisted this sample; live frames carry new receive
        // times, so persisting them would add rows on every demo run.
        persist: PersistArgs {
            database_url: None,
            ..persist.clone()
        },
        http: a.http.clone(),
    };
    live_run(run, None, Some(cfg))
}
