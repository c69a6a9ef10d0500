//! `hermes persist --nats`: the persister on a host other than the ingest hosts, as a
//! NATS JetStream consumer of RAW (every journaled frame of every host) into PostgreSQL,
//! exactly once: the rows of the journal persister, the stream offset committed with them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use crate::flags::{check_database_url, secs, KernelArgs, RoleHttpArgs, RowArgs, ScaleArgs};

/// `hermes persist` arguments.
#[derive(Args, Debug)]
pub struct PersistArgs {
    /// NATS server URLs, comma-separated: the RAW stream `<PREFIX>_RAW` is read there.
    #[arg(long, env = "HERMES_NATS_URL", value_name = "URL[,URL…]")]
    pub nats: String,
    /// PostgreSQL (libpq string or postgresql:// URL).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Stop once no message came for this many seconds and the stream holds nothing newer.
    #[arg(long, value_name = "SECS")]
    pub until_idle: Option<f64>,
    /// Stop after this many seconds [default: run until SIGINT/SIGTERM].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// The publishers' stream prefix (the stream read is `<PREFIX>_RAW`).
    #[arg(long, default_value = "HERMES")]
    pub nats_stream_prefix: String,
    /// The publishers' subject prefix (subjects `<PREFIX>.raw.<host>.<venue>`).
    #[arg(long, default_value = "hermes")]
    pub nats_subject_prefix: String,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Instruments the decoder accepts per journal segment (the ingest engine's
    /// --shm-slots).
    #[arg(long, default_value_t = 256)]
    pub shm_slots: u32,
    /// How long a frame that came before an earlier frame of its segment (RAW stored out
    /// of order when a stream leader died mid-publish) waits for it before the books go
    /// on without it, ms.
    #[arg(long, default_value_t = 10_000)]
    pub reorder_wait_ms: u64,
    /// A `stats:` line on stderr every this many seconds (0: none).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub stats_every: f64,
    #[command(flatten)]
    pub scale: ScaleArgs,
    #[command(flatten)]
    pub kernels: KernelArgs,
    #[command(flatten)]
    pub http: RoleHttpArgs,
    /// With --http: readiness fails when the oldest message not committed is older than
    /// this many seconds.
    #[arg(long, default_value_t = 5)]
    pub ready_max_lag_secs: u64,
}

impl PersistArgs {
    fn options(&self) -> Result<hermes_nats::persist::Options> {
        check_database_url(&self.database_url)?;
        let mut nats = hermes_nats::NatsOptions::new(self.nats.clone());
        nats.stream_prefix = self.nats_stream_prefix.clone();
        nats.subject_prefix = self.nats_subject_prefix.clone();
        nats.validate()?;
        let mut o = hermes_nats::persist::Options::new(nats, self.database_url.clone());
        (o.batch_rows, o.batch_age, o.drain_timeout) = self.rows.batching()?;
        o.until_idle = secs(self.until_idle, "until-idle")?;
        o.reorder_wait = std::time::Duration::from_millis(self.reorder_wait_ms);
        o.duration = secs(self.duration, "duration")?;
        o.projection.decoder = self.scale.decoder(self.shm_slots as usize);
        o.projection.kernels = self.kernels.config();
        self.rows.sampling(&mut o.projection);
        Ok(o)
    }
}

pub fn cmd_persist(a: PersistArgs) -> Result<()> {
    let opts = a.options()?;
    let every = secs(Some(a.stats_every), "stats-every")?.unwrap_or_default();
    let stats = Arc::new(hermes_nats::persist::SinkStats::default());
    // `/metrics` (`hermes_nats_persist_*`, `hermes_persist_*`) and readiness.
    let _http = a.http.start(
        "persist",
        None,
        None,
        None,
        Some((
            stats.clone(),
            std::time::Duration::from_secs(a.ready_max_lag_secs),
        )),
    )?;
    let stop = hermes_engine::shutdown_flag();
    let done = Arc::new(AtomicBool::new(false));
    let printer = (!every.is_zero())
        .then(|| {
            let (stats, done) = (stats.clone(), done.clone());
            std::thread::Builder::new()
                .name("hermes-stats".into())
                .spawn(move || {
                    let mut next = Instant::now() + every;
                    // Relaxed: a request to stop; nothing is handed over with it.
                    while !done.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        if now >= next {
                            eprintln!("stats: {}", stats.line());
                            next = now + every;
                        } else {
                            std::thread::park_timeout(next - now);
                        }
                    }
                })
        })
        .transpose()?;
    tracing::info!(
        "persist: {} stream {}_RAW into PostgreSQL",
        a.nats,
        a.nats_stream_prefix
    );
    let r = hermes_nats::persist::run(&opts, &stats, &stop);
    // Relaxed: as above; the unpark wakes it.
    done.store(true, Ordering::Relaxed);
    if let Some(p) = printer {
        p.thread().unpark();
        let _ = p.join();
    }
    eprintln!("persist: {}", stats.line());
    r?;
    // Relaxed: read after the run's threads ended.
    let lost = stats.lost.load(Ordering::Relaxed);
    if lost > 0 {
        bail!(
            "{lost} RAW message(s) were gone from the stream before this persister read them (deleted, or expired: the stream's retention outran it; the ranges are logged above): their frames have no rows. The publishing hosts' journals still hold those frames (until their --journal-retention); to avoid this, run the persister more often than the RAW stream's max age (7 days)"
        );
    }
    Ok(())
}
