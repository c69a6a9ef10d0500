//! `hermes demo`: the whole engine on a generated market: generate, start PostgreSQL,
//! replay with the persister, ingest live from one simulator per venue, read shm back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hermes_engine::Speed;
use hermes_ingest::source::SourceOptions;
use hermes_sim::synth::SynthOptions;

use crate::cmd::generate::generate;
use crate::cmd::live::{live_run, LiveOutcome, RunArgs};
use crate::cmd::replay::{final_lines, run_replay, run_replay_with, summary_line};
use crate::flags::{data_dir, report_persist, EngineArgs, HttpArgs, PersistArgs};

/// `hermes demo` arguments.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo keeps its files (default: $XDG_DATA_HOME/hermes or ~/.local/share/hermes).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Frames in the generated sample.
    #[arg(long, default_value_t = 200_000)]
    pub frames: u64,
    /// When PostgreSQL's server binaries are missing and DATABASE_URL is unset, install
    /// them with `apt-get install postgresql` (as root, or through `sudo -n`) instead of
    /// skipping the database stages.
    #[arg(long)]
    pub install_deps: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub persist: PersistArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Where the demo's rows go: a database, or nowhere with the reason.
enum DemoDb {
    /// `DATABASE_URL` / `--database-url`, or the private cluster started here.
    Ready {
        url: String,
        local: Option<hermes_persist::local_pg::LocalPg>,
    },
    /// No server binaries and no URL: the database stages are skipped.
    Skipped { why: String },
}

/// Stage 2: PostgreSQL from the URL, else a private cluster (installing the server
/// first with `--install-deps`), else skipped with the command that adds it.
fn demo_db(a: &DemoArgs, dir: &Path) -> Result<DemoDb> {
    if let Some(u) = &a.persist.database_url {
        eprintln!("[2/6] using PostgreSQL at {u}");
        return Ok(DemoDb::Ready {
            url: u.clone(),
            local: None,
        });
    }
    if hermes_persist::local_pg::find_binaries().is_err() {
        if a.install_deps {
            install_postgresql()?;
        } else {
            let why =
                "PostgreSQL server binaries (initdb, postgres) not found and DATABASE_URL is unset"
                    .to_string();
            eprintln!("[2/6] skipped: {why}; the database stages are left out");
            return Ok(DemoDb::Skipped { why });
        }
    }
    let pg_dir = demo_pg_dir(dir);
    eprintln!(
        "[2/6] starting a private PostgreSQL in {} (reused if already running)",
        pg_dir.display()
    );
    let pg = hermes_persist::local_pg::LocalPg::start(&pg_dir)
        .context("starting the demo's PostgreSQL")?;
    let url = pg
        .create_database("hermes")
        .context("creating the demo database")?;
    Ok(DemoDb::Ready {
        url,
        local: Some(pg),
    })
}

/// `apt-get install postgresql`, as root or through sudo, saying so first.
fn install_postgresql() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        std::process::Command::new("apt-get")
    } else {
        let mut c = std::process::Command::new("sudo");
        c.arg("-n").arg("apt-get");
        c
    };
    cmd.args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "postgresql",
    ])
    .env("DEBIAN_FRONTEND", "noninteractive");
    eprintln!("[2/6] --install-deps: installing PostgreSQL ({cmd:?})");
    let status = cmd.status().context(
        "running apt-get (is this Debian or Ubuntu? run as root, or install PostgreSQL yourself)",
    )?;
    if !status.success() {
        bail!("installing PostgreSQL failed ({status}); run `apt-get install postgresql` as root, or set DATABASE_URL to an existing server");
    }
    hermes_persist::local_pg::find_binaries()
        .context("PostgreSQL was installed but initdb/postgres are still not found")?;
    Ok(())
}

/// Runs the demo.
pub fn cmd_demo(a: DemoArgs) -> Result<()> {
    let dir = a.dir.clone().unwrap_or_else(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sample = dir.join("sample.hcap");
    eprintln!("[1/6] generating a synthetic market ({} frames, 3 instruments on each venue: Coinbase Advanced Trade and Exchange, Binance spot, USD-M and COIN-M futures) into {}", a.frames, sample.display());
    generate(&sample, demo_synth(), a.frames, false)?;
    let db = demo_db(&a, &dir)?;
    let mut persist = a.persist.clone();
    persist.database_url = match &db {
        DemoDb::Ready { url, .. } => Some(url.clone()),
        DemoDb::Skipped { .. } => None,
    };
    if persist.journal.is_none() {
        persist.journal = Some(dir.join("journal").join("demo"));
    }
    let opts = persist.options(Some(&sample), &a.engine)?;
    eprintln!(
        "[3/6] replaying it through the engine (ingest thread → ring → book thread → shm {}){}",
        a.engine.shm.display(),
        if opts.is_some() {
            " with the persister (journal → PostgreSQL)"
        } else {
            ""
        }
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
        "[4/6] serving the same sample from the exchange simulator (each venue's protocol on its own local WebSocket, REST snapshots on the same port) and ingesting it live (hermes run)"
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
    eprintln!("[5/6] reading the shm file back from a separate process (hermes shm dump)");
    let exe = std::env::current_exe().context("locating the hermes binary")?;
    let status = std::process::Command::new(&exe)
        .args(["shm", "dump"])
        .arg(&a.engine.shm)
        .status()
        .context("running hermes shm dump")?;
    if !status.success() {
        bail!("hermes shm dump failed ({status})");
    }
    let nats = demo_nats(&a, &dir, &db)?;
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
    if let DemoDb::Ready { url, .. } = &db {
        let counts = hermes_persist::row_counts(url).context("counting rows")?;
        println!("Rows in PostgreSQL (SELECT count(*)):");
        for (t, n) in &counts {
            println!("  {t:<15} {n:>10}");
        }
    }
    println!("Shared memory: {shm}");
    match &db {
        DemoDb::Ready {
            local: Some(pg), ..
        } => println!(
            "PostgreSQL:    private cluster in {} (socket dir {}, port {}), database hermes, left running",
            pg.dir().display(),
            pg.socket_dir().display(),
            pg.port()
        ),
        DemoDb::Ready { url, local: None } => println!("PostgreSQL:    {url}"),
        DemoDb::Skipped { why } => {
            println!("PostgreSQL:    SKIPPED ({why}): nothing was persisted.");
            println!("               Add it with `sudo apt-get install postgresql` and run the demo again,");
            println!("               or run `hermes demo --install-deps` as root, or set DATABASE_URL.");
        }
    }
    if let (DemoDb::Ready { .. }, Some(j)) = (&db, &persist.journal) {
        let (mut n, mut bytes) = (0u64, 0u64);
        for e in std::fs::read_dir(j).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "hcap") {
                n += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        println!(
            "Journal:       {} ({n} segment{}, {:.1} MB; committed segments are deleted {} after their last write: --journal-retention)",
            j.display(),
            if n == 1 { "" } else { "s" },
            bytes as f64 / 1e6,
            match persist.journal_retention.as_secs() {
                s if s % 3600 == 0 => format!("{}h", s / 3600),
                s => format!("{s}s"),
            }
        );
    }
    println!("NATS:          {nats}");
    println!("Look further:");
    println!("  {exe} top --shm {shm} --once       # the live view (drop --once for the interactive one)");
    println!("  {exe} shm dump {shm}               # the books, from the shm file");
    println!("  {exe} shm dump {shm} --json        # the same data as JSON");
    println!("  python3 shm/python/hermes_shm.py {shm}   # the stdlib-only Python reader");
    println!("  {exe} serve --shm {shm} --http 127.0.0.1:8080   # web dashboard at http://127.0.0.1:8080/");
    println!(
        "  {exe} export {} --out {}   # research tables as Parquet",
        sample.display(),
        dir.join("parquet").display()
    );
    if let DemoDb::Ready { url, local } = db {
        println!("  psql \"{url}\" -c 'SELECT venue, symbol, count(*) FROM trades GROUP BY 1, 2'");
        println!("  psql \"{url}\" -c 'SELECT * FROM top_of_book ORDER BY ts DESC LIMIT 5'");
        if let Some(j) = &persist.journal {
            println!(
                "  {exe} db flush --journal {} --database-url \"{url}\"   # write what a journal still holds",
                j.display()
            );
        }
        if let Some(pg) = local {
            println!(
                "  kill -INT $(head -1 {}/data/postmaster.pid)   # stop the demo's PostgreSQL",
                pg.dir().display()
            );
            pg.keep_running();
        }
    }
    Ok(())
}

/// The demo's scale-out stage: a local 3-node JetStream cluster (when `nats-server` is
/// installed), a replay publishing RAW, MD and SNAP to it, and a mirror into another shm
/// file, whose books are compared with the publisher's. Returns the summary line.
fn demo_nats(a: &DemoArgs, dir: &Path, db: &DemoDb) -> Result<String> {
    let try_it = "nats-server -js … (3 nodes, see README \"Beyond one host\"), then `hermes run --nats URL,URL,URL` on the ingest host, `hermes mirror --nats URL --shm /dev/shm/hermes-mirror --http 127.0.0.1:9101` on a strategy host and `hermes persist --nats URL --database-url URL --http 127.0.0.1:9102` on a database host";
    if hermes_nats::testing::binary().is_none() {
        eprintln!("[6/6] skipped: nats-server is not installed (`apt-get install nats-server`)");
        return Ok(format!("SKIPPED (no nats-server); to try it: {try_it}"));
    }
    let ndir = dir.join("nats");
    let _ = std::fs::remove_dir_all(&ndir);
    eprintln!("[6/6] beyond one host: a 3-node NATS JetStream cluster on loopback, a replay publishing RAW/MD/SNAP to it, and `hermes mirror` into another shm file");
    let cluster = hermes_nats::testing::NatsCluster::start(&ndir.join("cluster"), 3)
        .context("starting a local nats-server cluster")?;
    let urls = cluster.urls();
    let sample = ndir.join("sample.hcap");
    generate(&sample, demo_synth(), 20_000, false)?;
    let mshm = ndir.join("mirror.shm");
    let mut mopts = hermes_nats::NatsOptions::new(urls.clone());
    mopts.host = "demo".into();
    let mirror_opts = hermes_nats::mirror::MirrorOptions {
        nats: mopts.clone(),
        shm: Some(mshm.clone()),
        shm_slots: a.engine.shm_slots,
        symbols: Vec::new(),
        until_idle: Some(Duration::from_secs(2)),
        duration: Some(Duration::from_secs(120)),
        kernels: a.engine.kernels.config(),
        max_buffer: 100_000,
    };
    let mstats = std::sync::Arc::new(hermes_nats::MirrorStats::default());
    let ms = mstats.clone();
    let mirror = std::thread::spawn(move || {
        let stop = std::sync::atomic::AtomicBool::new(false);
        hermes_nats::mirror::run(&mirror_opts, &ms, &stop).map(|b| final_lines(&b))
    });
    let mut eng = a.engine.clone();
    eng.shm = ndir.join("publisher.shm");
    let mut pa = PersistArgs {
        database_url: None,
        ..a.persist.clone()
    };
    pa.journal = Some(ndir.join("journal"));
    let r = run_replay_with(
        &sample,
        SourceOptions::default(),
        Speed::Max,
        &eng,
        None,
        None,
        Some((&crate::flags::ParquetArgs::off(), &pa, Some(mopts.clone()))),
    )?;
    let got = mirror
        .join()
        .map_err(|_| anyhow::anyhow!("the mirror thread panicked"))??;
    let (mut want, mut got) = (r.lines.clone(), got);
    want.sort();
    got.sort();
    let same = want == got;
    eprintln!("{}", mstats.line());
    if !same {
        bail!(
            "the mirror's books differ from the publisher's ({} vs {} instruments)",
            got.len(),
            want.len()
        );
    }
    let persisted = demo_nats_persist(db, mopts, r.summary.decode.frames)?;
    drop(cluster);
    Ok(format!(
        "{} frames published (RAW, MD, SNAP) to a local 3-node cluster; the mirror's {} books in {} equal the publisher's; {persisted}. {try_it}",
        r.summary.decode.frames,
        got.len(),
        mshm.display()
    ))
}

/// Stage 6's persister: RAW from the stream into a database of its own (`hermes_nats`,
/// emptied first, on the demo's private PostgreSQL), one row per frame published.
fn demo_nats_persist(db: &DemoDb, nats: hermes_nats::NatsOptions, frames: u64) -> Result<String> {
    let DemoDb::Ready {
        local: Some(pg), ..
    } = db
    else {
        return Ok("the NATS persister is left out (it needs a database of its own: the demo makes one only on its private PostgreSQL)".into());
    };
    let url = pg
        .create_database("hermes_nats")
        .context("creating the database hermes_nats")?;
    // A new cluster numbers its stream from 1: the previous demo's offsets must go.
    postgres::Client::connect(&url, postgres::NoTls)
        .and_then(|mut c| c.batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        .context("emptying the database hermes_nats")?;
    hermes_persist::migrate(&url).context("migrating hermes_nats")?;
    let mut o = hermes_nats::persist::Options::new(nats, url.clone());
    o.until_idle = Some(Duration::from_secs(2));
    o.duration = Some(Duration::from_secs(120));
    let stats = std::sync::Arc::new(hermes_nats::persist::SinkStats::default());
    let stop = std::sync::atomic::AtomicBool::new(false);
    hermes_nats::persist::run(&o, &stats, &stop).context("the NATS persister")?;
    eprintln!("persist: {}", stats.line());
    let rows: i64 = postgres::Client::connect(&url, postgres::NoTls)
        .and_then(|mut c| c.query_one("SELECT count(*) FROM raw_events", &[]))
        .map(|r| r.get(0))
        .context("counting raw_events in hermes_nats")?;
    if rows as u64 != frames {
        bail!("the NATS persister wrote {rows} raw_events rows for {frames} frames published");
    }
    Ok(format!(
        "`hermes persist --nats` wrote the {rows} frames from the RAW stream into the database hermes_nats, one row each"
    ))
}

/// The demo's market: every venue with a live protocol, three instruments each.
fn demo_synth() -> SynthOptions {
    SynthOptions {
        venues: hermes_ingest::venue::LIVE_VENUES.to_vec(),
        ..SynthOptions::default()
    }
}

/// The demo's PostgreSQL directory: under the demo directory, unless the server user
/// (as root: `postgres`) cannot reach it (e.g. under /root), then under /var/tmp.
pub fn demo_pg_dir(dir: &Path) -> PathBuf {
    let d = dir.join("pg");
    if hermes_persist::local_pg::reachable_by_server(dir) {
        d
    } else {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        PathBuf::from(format!("/var/tmp/hermes-demo-{uid}/pg"))
    }
}

/// The demo's live stage: one simulator per venue serves its part of `sample` on loopback
/// ports, and the engine ingests them until they go quiet.
pub fn demo_live(a: &DemoArgs, sample: &Path, persist: &PersistArgs) -> Result<LiveOutcome> {
    use hermes_sim::{Pacing, SimOptions, SimSource};
    let mut urls = Vec::new();
    for venue in demo_synth().venues {
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
                    if let Err(e) = hermes_sim::serve(l, opts, Default::default()).await {
                        tracing::error!("demo simulator: {e:#}");
                    }
                });
            })
            .context("starting a simulator thread")?;
        urls.push(format!("ws://{addr}"));
    }
    let synth = demo_synth();
    let mut cfg = hermes_live::LiveConfig::default();
    for (venue, url) in synth.venues.iter().zip(&urls) {
        let feed = cfg.feed_mut(*venue);
        feed.ws_url = url.clone();
        feed.rest_url = url.replacen("ws://", "http://", 1);
        feed.symbols = (0..synth.instruments)
            .map(|k| hermes_sim::synth::symbol(*venue, k))
            .collect();
        if venue.is_binance_futures() {
            // The sample has `trade` frames too (besides the default `aggTrade`): take
            // every frame the simulator serves.
            feed.channels.push("trade".into());
        }
    }
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
        parquet: crate::flags::ParquetArgs::off(),
        http: a.http.clone(),
        nats: crate::flags::NatsArgs::off(),
    };
    live_run(run, None, Some(cfg))
}
