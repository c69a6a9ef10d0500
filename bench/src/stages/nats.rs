//! nats: Hermes across hosts, through a real 3-node NATS JetStream cluster that the stage
//! starts on loopback (`hermes_nats::testing::NatsCluster`: Debian's `nats-server`,
//! streams with 3 replicas on file storage). At each offered rate, in the same run:
//!
//! 1. **Hermes, receive → visible in a mirror's shm.** Synthetic frames are handed to
//!    the engine (`hermes_engine::run`) at the rate, each stamped with its receive time
//!    (`CLOCK_REALTIME`) at the handoff. The book thread feeds the publisher
//!    (`hermes_nats::publish`, MD and SNAP, under the lease) through its `BusTap`; a
//!    mirror (`hermes_nats::mirror::run`, in a thread of this process) follows SNAP and MD
//!    into its own shm file and records receive → visible (`MirrorStats::recv_visible_ns`).
//!    Also: the publisher's send → ack (`PublishStats::ack_ns`) and the MD messages/s the
//!    mirror applied.
//! 2. **Baseline: bare async-nats.** The same number of messages, with the same subjects
//!    and payload sizes in the same order (read back from run 1's MD stream), spread
//!    evenly over the same time, published to a new R3 file stream of the same cluster
//!    by a bare async-nats JetStream publisher and received by a bare ordered consumer on
//!    another connection: publish → receive (a `CLOCK_REALTIME` stamp in the payload) and
//!    send → ack.
//! 3. **Baseline: the local shm path.** Run 1's engine, receive → visible in its own shm
//!    (`EngineOptions::measure_visible`, `EngineResult::visible_ns`).
//!
//! Without `nats-server` the stage is skipped with the reason in the report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use hermes_engine::{EngineOptions, EventTapSlot, IdleStrategy, RingFullPolicy};
use hermes_ingest::Decoder;
use hermes_nats::mirror::MirrorOptions;
use hermes_nats::testing::{NatsCluster, Probe};
use hermes_nats::{Kind, MirrorStats, NatsOptions};

use super::Config;
use crate::frames::{self, OwnedFrame};
use crate::report::{Figure, Metric, Stage};
use crate::util::{cpu_time, figure, hist, mono_ns, real_ns, rec};

/// How long the mirror may take to apply what was acknowledged after the engine ended.
const CATCH_UP: Duration = Duration::from_secs(15);

/// Sleeps until `CLOCK_MONOTONIC` reaches `due` (no spinning: on 2 cores the three
/// servers, the publisher and the mirror need the CPU; the receive stamp is taken at the
/// handoff, so a late wake-up delays the frame but is not charged to the path).
fn sleep_until(due: i64) {
    let left = due - mono_ns();
    if left > 0 {
        std::thread::sleep(Duration::from_nanos(left as u64));
    }
}

fn slack_1ns() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only sets this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

fn locked(h: &Mutex<Histogram<u64>>) -> Histogram<u64> {
    match h.lock() {
        Ok(h) => h.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// CPU (user + system) used so far by this process's `nats-server` children, s.
fn servers_cpu_s() -> f64 {
    let me = std::process::id().to_string();
    // SAFETY: sysconf only reads a system constant.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for e in dir.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the fields after the comm's closing parenthesis,
        // state first, so field k of proc(5) is at k - 3 (utime 14, stime 15).
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if !head.ends_with("(nats-server") || f.get(1) != Some(&me.as_str()) {
            continue;
        }
        let field = |k: usize| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += (field(11) + field(12)) / tick;
    }
    total
}

/// CPU over a window: the servers' and this process', in cores busy.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    servers: f64,
    bench: f64,
}

/// Starts a CPU window; [`Cpu::since`] ends it.
fn cpu_mark() -> (f64, f64, Instant) {
    (servers_cpu_s(), cpu_time().as_secs_f64(), Instant::now())
}

impl Cpu {
    fn since(m: (f64, f64, Instant)) -> Cpu {
        let wall = m.2.elapsed().as_secs_f64().max(1e-9);
        Cpu {
            servers: (servers_cpu_s() - m.0) / wall,
            bench: (cpu_time().as_secs_f64() - m.1) / wall,
        }
    }
}

fn rate_name(r: f64) -> String {
    if r >= 1e3 {
        format!("{}k", (r / 1e3).round())
    } else {
        format!("{}", r.round())
    }
}

/// What the ingest thread did.
#[derive(Clone, Debug, Default)]
struct Sent {
    frames: usize,
    /// First handoff → last handoff, s.
    secs: f64,
    /// Lateness of the handoffs against their schedule, ns.
    late_p50_ns: i64,
    late_max_ns: i64,
    /// When the first frame was handed over.
    first: Option<Instant>,
}

/// One Hermes run (path 1 and baseline 3).
struct HermesOut {
    sent: Sent,
    /// Receive → visible in the mirror's shm, ns.
    mirror: Histogram<u64>,
    /// Receive → visible in the engine's shm, ns.
    local: Histogram<u64>,
    /// Publisher send → ack, ns.
    ack: Histogram<u64>,
    md_acked: u64,
    snap_acked: u64,
    retries: u64,
    errors: u64,
    ring_dropped: u64,
    applied: u64,
    skipped: u64,
    gaps: u64,
    resyncs: u64,
    bad: u64,
    /// First frame handed over → the mirror's last applied MD message, s.
    mirror_secs: f64,
    /// Instruments whose mirror checkpoint equals the engine's / instruments.
    equal: (usize, usize),
    /// (subject, payload length) of every MD message in stream order.
    md: Vec<(String, usize)>,
    md_stream_bytes: u64,
    pinned: bool,
    /// CPU while the engine ran.
    cpu: Cpu,
    publisher_line: String,
    mirror_line: String,
}

/// Notes when the mirror's applied count last moved.
struct Progress {
    stop: Arc<AtomicBool>,
    last: Arc<Mutex<Instant>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(stats: Arc<MirrorStats>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(Mutex::new(Instant::now()));
        let (s, l) = (stop.clone(), last.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = 0u64;
            while !s.load(Ordering::Relaxed) {
                let a = stats.applied.load(Ordering::Relaxed);
                if a != seen {
                    seen = a;
                    if let Ok(mut t) = l.lock() {
                        *t = Instant::now();
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Progress {
            stop,
            last,
            thread: Some(thread),
        }
    }

    fn last(&self) -> Instant {
        self.last
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|_| Instant::now())
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sets the mirror's stop flag on every way out.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A client and JetStream context on a private runtime, for readiness checks.
struct Admin {
    rt: tokio::runtime::Runtime,
    js: async_nats::jetstream::Context,
}

impl Admin {
    fn connect(urls: &str) -> Result<Admin> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let opts = NatsOptions::new(urls);
        let js = rt.block_on(async {
            let c = hermes_nats::connect(&opts).await?;
            anyhow::Ok(async_nats::jetstream::new(c))
        })?;
        Ok(Admin { rt, js })
    }

    /// Consumers on `stream` (0 while it does not exist).
    fn consumers(&self, stream: &str) -> usize {
        self.rt.block_on(async {
            let Ok(s) = self.js.get_stream(stream).await else {
                return 0;
            };
            s.get_info()
                .await
                .map(|i| i.state.consumer_count)
                .unwrap_or(0)
        })
    }

    /// (messages, bytes) stored in `stream`.
    fn stored(&self, stream: &str) -> (u64, u64) {
        self.rt.block_on(async {
            let Ok(s) = self.js.get_stream(stream).await else {
                return (0, 0);
            };
            s.get_info()
                .await
                .map(|i| (i.state.messages, i.state.bytes))
                .unwrap_or((0, 0))
        })
    }
}

/// Path 1 and baseline 3: the engine publishing MD through the cluster, a mirror
/// following it, `n` frames at `rate` frames/s.
fn hermes_run(
    cfg: &Config,
    urls: &str,
    frames: &Arc<Vec<OwnedFrame>>,
    n: usize,
    rate: f64,
    tag: &str,
) -> Result<HermesOut> {
    let mut nats = NatsOptions::new(urls);
    nats.stream_prefix = format!("BENCH{tag}");
    nats.subject_prefix = format!("bench{tag}");
    nats.host = "bench".into();
    nats.raw = false;
    nats.md = true;
    let admin = Admin::connect(urls)?;
    let mirror_shm = cfg.tmp.join(format!("nats-mirror-{tag}.shm"));
    let engine_shm = cfg.tmp.join(format!("nats-engine-{tag}.shm"));
    let (tap, publisher) =
        hermes_nats::publish::start(nats.clone(), None).context("starting the publisher")?;
    let pstats = publisher.stats();
    let mstats = Arc::new(MirrorStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let mirror = {
        let opts = MirrorOptions {
            nats: nats.clone(),
            shm: Some(mirror_shm.clone()),
            shm_slots: 16,
            symbols: vec![],
            until_idle: None,
            duration: Some(Duration::from_secs(900)),
            kernels: Default::default(),
            max_buffer: 100_000,
        };
        let (ms, st) = (mstats.clone(), stop.clone());
        std::thread::Builder::new()
            .name("bench-mirror".into())
            .spawn(move || hermes_nats::mirror::run(&opts, &ms, &st))?
    };
    // Ready: the publisher holds the lease (its streams exist) and the mirror's ordered
    // consumers are on them, so that every frame's MD is followed live.
    let md_stream = nats.stream(Kind::Md);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lease = pstats.lease_held.load(Ordering::Relaxed);
        let consumers = if lease {
            admin.consumers(&md_stream)
        } else {
            0
        };
        if lease && consumers >= 1 {
            break;
        }
        if mirror.is_finished() {
            let r = mirror.join();
            anyhow::bail!(
                "the mirror ended before the run: {}",
                match r {
                    Ok(Err(e)) => format!("{e:#}"),
                    Ok(Ok(_)) => "no error".into(),
                    Err(_) => "panicked".into(),
                }
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "publisher and mirror not ready after 60 s (lease held: {lease}, consumers on {md_stream}: {consumers}); {}",
            pstats.line()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let progress = Progress::start(mstats.clone());
    let cpu0 = cpu_mark();
    let opts = EngineOptions {
        shm_path: Some(engine_shm.clone()),
        shm_slots: 16,
        ring_capacity: 1 << 16,
        // As the soak runs `hermes run` beside its servers: on 2 cores shared with three
        // nats-servers a thread pinned to a busy core waits for it while the other one
        // idles (pinned, the local shm's p50 at 5k frames/s moved between 63 and 251 µs
        // from run to run). Backoff yields rather than sleeps while frames come less than
        // 2 ms apart, so at these rates it behaves as spin-yield.
        idle: IdleStrategy::Backoff,
        ring_full: RingFullPolicy::Block,
        pin: false,
        measure_visible: true,
        event_tap: EventTapSlot::new(Box::new(tap)),
        ..EngineOptions::default()
    };
    let frames = frames.clone();
    let n = n.min(frames.len());
    let res = hermes_engine::run(&opts, move |sink| {
        slack_1ns();
        let mut dec = Decoder::default();
        let mut late = hist(60_000_000_000);
        let start = mono_ns() + 1_000_000;
        let mut first = None;
        let mut last = Instant::now();
        for (i, f) in frames[..n].iter().enumerate() {
            let due = start + (i as f64 * 1e9 / rate) as i64;
            sleep_until(due);
            rec(&mut late, mono_ns() - due);
            last = Instant::now();
            first.get_or_insert(last);
            let _ = dec.decode(&f.frame(real_ns()), sink);
        }
        Sent {
            frames: n,
            secs: first.map_or(0.0, |f: Instant| last.duration_since(f).as_secs_f64()),
            late_p50_ns: late.value_at_quantile(0.5) as i64,
            late_max_ns: late.max() as i64,
            first,
        }
    })
    .map_err(|e| anyhow::anyhow!("engine: {e}"))?;
    let cpu = Cpu::since(cpu0);
    let sent = res.ingest.clone();
    // The engine is done and its tap has sent the end: the publisher sends what is left
    // (and every instrument's final SNAP), then the mirror catches up.
    let pstats = publisher
        .finish(Duration::from_secs(30))
        .context("the NATS publisher")?;
    let md_acked = pstats.md_acked.load(Ordering::Relaxed);
    let wait = Instant::now();
    loop {
        let seen = mstats.applied.load(Ordering::Relaxed)
            + mstats.skipped.load(Ordering::Relaxed)
            + mstats.old_epoch.load(Ordering::Relaxed);
        if seen >= md_acked || wait.elapsed() >= CATCH_UP || mirror.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    let last_applied = progress.last();
    drop(progress);
    stop.store(true, Ordering::Relaxed);
    let mirror_books = mirror
        .join()
        .map_err(|_| anyhow::anyhow!("the mirror thread panicked"))?
        .context("the mirror")?;
    // The mirror's books against the engine's: every instrument's checkpoint.
    let mut equal = 0;
    let engine_insts = res.books.market().instruments();
    for i in engine_insts {
        let mut a = Vec::new();
        i.checkpoint(&mut a);
        let same = mirror_books
            .market()
            .instruments()
            .iter()
            .find(|m| m.venue == i.venue && m.symbol == i.symbol)
            .is_some_and(|m| {
                let mut b = Vec::new();
                m.checkpoint(&mut b);
                a == b
            });
        equal += usize::from(same);
    }
    let md = Probe::connect(urls)?
        .messages(&md_stream, &format!("{}.md.>", nats.subject_prefix))?
        .into_iter()
        .map(|(_, subject, _, len)| (subject, len))
        .collect();
    let (_, md_stream_bytes) = admin.stored(&md_stream);
    let mirror_secs = sent.first.map_or(0.0, |f| {
        last_applied.saturating_duration_since(f).as_secs_f64()
    });
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let out = HermesOut {
        mirror: locked(&mstats.recv_visible_ns),
        local: res.visible_ns.clone(),
        ack: locked(&pstats.ack_ns),
        md_acked,
        snap_acked: l(&pstats.snap_acked),
        retries: l(&pstats.retries),
        errors: l(&pstats.errors),
        ring_dropped: l(&pstats.ring_dropped),
        applied: l(&mstats.applied),
        skipped: l(&mstats.skipped),
        gaps: l(&mstats.gaps),
        resyncs: l(&mstats.resyncs),
        bad: l(&mstats.bad),
        mirror_secs,
        equal: (equal, engine_insts.len()),
        md,
        md_stream_bytes,
        pinned: res.pinned,
        cpu,
        publisher_line: pstats.line(),
        // Without its exchange → visible part: the synthetic frames' exchange times are
        // not this run's clock.
        mirror_line: mstats
            .line()
            .split("; exchange → visible")
            .next()
            .unwrap_or_default()
            .to_string(),
        sent,
    };
    drop(res);
    drop(mirror_books);
    let _ = std::fs::remove_file(&engine_shm);
    let _ = std::fs::remove_file(&mirror_shm);
    Ok(out)
}

/// Baseline 2's result.
struct BareOut {
    /// Publish → receive, ns.
    lat: Histogram<u64>,
    /// Send → ack, ns.
    ack: Histogram<u64>,
    sent: u64,
    received: u64,
    ack_errors: u64,
    /// First publish → last receive, s.
    secs: f64,
    /// CPU while publishing.
    cpu: Cpu,
}

/// Baseline 2: `msgs` (subject index, payload length) published at `rate` msg/s by a
/// bare async-nats JetStream publisher into a new R3 file stream, received by a bare
/// ordered consumer on another connection.
fn bare_run(
    urls: &str,
    tag: &str,
    subjects: &[String],
    msgs: &[(usize, usize)],
    rate: f64,
) -> Result<BareOut> {
    let stream = format!("BARE{tag}");
    let prefix = format!("bare{tag}");
    let subjects: Arc<Vec<String>> = Arc::new(
        subjects
            .iter()
            .map(|s| format!("{prefix}.{s}"))
            .collect::<Vec<_>>(),
    );
    let server_addrs = || -> Result<Vec<async_nats::ServerAddr>> {
        urls.split(',')
            .map(|u| u.parse().map_err(|e| anyhow::anyhow!("{u}: {e}")))
            .collect()
    };
    let n = msgs.len() as u64;
    // The publisher's thread: connects, creates the stream, then waits for the go.
    let (setup_tx, setup_rx) = mpsc::channel::<Result<()>>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (pace_tx, mut pace_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize)>();
    let addrs = server_addrs()?;
    let (st, subj) = (stream.clone(), prefix.clone());
    let publisher = std::thread::Builder::new()
        .name("bench-bare-pub".into())
        .spawn(move || -> Result<(Histogram<u64>, u64, Option<Instant>)> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let setup = rt.block_on(async {
                let client = async_nats::ConnectOptions::new()
                    .name("bench bare publisher")
                    .connect(addrs)
                    .await?;
                let js = async_nats::jetstream::new(client);
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: st.clone(),
                    subjects: vec![format!("{subj}.>")],
                    num_replicas: 3,
                    storage: async_nats::jetstream::stream::StorageType::File,
                    allow_direct: true,
                    duplicate_window: Duration::from_secs(120),
                    max_age: Duration::from_secs(86_400),
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("creating stream {st}: {e}"))?;
                anyhow::Ok(js)
            });
            let js = match setup {
                Ok(js) => {
                    let _ = setup_tx.send(Ok(()));
                    js
                }
                Err(e) => {
                    let _ = setup_tx.send(Err(anyhow::anyhow!("{e:#}")));
                    return Err(e);
                }
            };
            if go_rx.recv().is_err() {
                anyhow::bail!("no go");
            }
            rt.block_on(async move {
                let mut acks = Vec::with_capacity(n as usize);
                let mut first = None;
                while let Some((k, len)) = pace_rx.recv().await {
                    let mut p = vec![0u8; len.max(8)];
                    p[..8].copy_from_slice(&real_ns().to_le_bytes());
                    first.get_or_insert_with(Instant::now);
                    let ack = js
                        .publish(subjects[k].clone(), p.into())
                        .await
                        .map_err(|e| anyhow::anyhow!("publishing: {e}"))?;
                    let sent = Instant::now();
                    acks.push(tokio::spawn(async move {
                        ack.await.map(|_| sent.elapsed().as_nanos() as i64)
                    }));
                }
                let mut h = hist(3_600_000_000_000);
                let mut errors = 0;
                for a in acks {
                    match a.await {
                        Ok(Ok(ns)) => rec(&mut h, ns),
                        _ => errors += 1,
                    }
                }
                Ok((h, errors, first))
            })
        })?;
    setup_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the bare publisher thread ended"))??;
    // The consumer's thread: an ordered consumer from the stream's start.
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let addrs = server_addrs()?;
    let filter = format!("{prefix}.>");
    let consumer = std::thread::Builder::new()
        .name("bench-bare-sub".into())
        .spawn(move || -> Result<(Histogram<u64>, u64, Instant)> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let setup = async {
                    let client = async_nats::ConnectOptions::new()
                        .name("bench bare consumer")
                        .connect(addrs)
                        .await?;
                    let js = async_nats::jetstream::new(client);
                    let s = js
                        .get_stream(&stream)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let msgs = s
                        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                            filter_subject: filter,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .messages()
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    anyhow::Ok(msgs)
                };
                let mut msgs = match setup.await {
                    Ok(m) => {
                        let _ = ready_tx.send(Ok(()));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("{e:#}")));
                        return Err(e);
                    }
                };
                let mut h = hist(3_600_000_000_000);
                let mut got = 0u64;
                let mut last = Instant::now();
                while got < n {
                    match tokio::time::timeout(CATCH_UP, msgs.next()).await {
                        Ok(Some(Ok(m))) => {
                            let now = real_ns();
                            if let Some(b) = m.payload.get(..8) {
                                let stamp = i64::from_le_bytes(b.try_into().expect("8 bytes"));
                                rec(&mut h, now - stamp);
                            }
                            got += 1;
                            last = Instant::now();
                        }
                        Ok(Some(Err(_))) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
                Ok((h, got, last))
            })
        })?;
    ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the bare consumer thread ended"))??;
    let cpu0 = cpu_mark();
    let _ = go_tx.send(());
    // The pacer: the messages evenly spread at `rate`.
    slack_1ns();
    let start = mono_ns() + 1_000_000;
    for (i, m) in msgs.iter().enumerate() {
        sleep_until(start + (i as f64 * 1e9 / rate) as i64);
        if pace_tx.send(*m).is_err() {
            break;
        }
    }
    drop(pace_tx);
    let cpu = Cpu::since(cpu0);
    let (ack, ack_errors, first) = publisher
        .join()
        .map_err(|_| anyhow::anyhow!("the bare publisher panicked"))??;
    let (lat, received, last) = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("the bare consumer panicked"))??;
    Ok(BareOut {
        lat,
        ack,
        sent: n,
        received,
        ack_errors,
        secs: first.map_or(0.0, |f| last.saturating_duration_since(f).as_secs_f64()),
        cpu,
    })
}

fn us(h: &Histogram<u64>) -> Figure {
    figure(h, 1000.0)
}

fn nats_server_version() -> String {
    hermes_nats::testing::binary()
        .and_then(|b| std::process::Command::new(b).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "nats-server (version unknown)".into())
}

/// Runs the stage (skipped, with the reason, when `nats-server` is missing).
pub fn run(cfg: &Config) -> Result<Stage> {
    let t = Instant::now();
    if hermes_nats::testing::binary().is_none() {
        return Ok(Stage {
            name: "nats".into(),
            seconds: 0.0,
            metrics: vec![],
            notes: vec![
                "skipped: nats-server not found (PATH, /usr/sbin); install it with `apt-get install nats-server` (scripts/ci-deps.sh does)".into(),
            ],
            skipped: true,
            pinned: false,
        });
    }
    // On disk (not the tmpfs scratch directory), as a server's store would be.
    let dir = std::env::temp_dir().join(format!("hermes-bench-nats-{}", std::process::id()));
    let cluster = NatsCluster::start(&dir, 3).context("starting a 3-node nats-server cluster")?;
    let urls = cluster.urls();
    let rates: Vec<(f64, f64)> = cfg.size(
        vec![(1_000.0, 10.0), (5_000.0, 8.0)],
        vec![(1_000.0, 1.5), (5_000.0, 1.0)],
    );
    let most = rates
        .iter()
        .map(|(r, s)| (r * s) as usize)
        .max()
        .unwrap_or(0);
    let frames = Arc::new(frames::synthetic(most));
    let mut metrics = Vec::new();
    let mut pinned = false;
    let mut summary = Vec::new();
    for (k, &(rate, secs)) in rates.iter().enumerate() {
        let n = (rate * secs) as usize;
        let tag = format!("{k}");
        let h = hermes_run(cfg, &urls, &frames, n, rate, &tag)
            .with_context(|| format!("the Hermes run at {rate} frames/s"))?;
        pinned = h.pinned;
        // The same messages for the bare baseline: subjects (without the prefix), sizes.
        let mut subjects: Vec<String> = Vec::new();
        let msgs: Vec<(usize, usize)> =
            h.md.iter()
                .map(|(s, len)| {
                    let tail = s.split_once('.').map_or(s.as_str(), |(_, t)| t).to_string();
                    let k = match subjects.iter().position(|x| *x == tail) {
                        Some(k) => k,
                        None => {
                            subjects.push(tail);
                            subjects.len() - 1
                        }
                    };
                    (k, *len)
                })
                .collect();
        let md_rate = msgs.len() as f64 / h.sent.secs.max(1e-9);
        let mean_len = msgs.iter().map(|m| m.1).sum::<usize>() as f64 / msgs.len().max(1) as f64;
        let b = bare_run(&urls, &tag, &subjects, &msgs, md_rate)
            .with_context(|| format!("the bare async-nats run at {md_rate:.0} msg/s"))?;
        let applied_rate = h.applied as f64 / h.mirror_secs.max(1e-9);
        let bare_rate = b.received as f64 / b.secs.max(1e-9);
        let rn = rate_name(rate);
        let mirror_f = us(&h.mirror);
        let local_f = us(&h.local);
        let bare_f = us(&b.lat);
        summary.push(format!(
            "{rn} frames/s: mirror p50 {:.0} µs / p99 {:.0} µs, bare async-nats p50 {:.0} µs / p99 {:.0} µs, local shm p50 {:.1} µs / p99 {:.1} µs",
            mirror_f.p50.unwrap_or(0.0),
            mirror_f.p99.unwrap_or(0.0),
            bare_f.p50.unwrap_or(0.0),
            bare_f.p99.unwrap_or(0.0),
            local_f.p50.unwrap_or(0.0),
            local_f.p99.unwrap_or(0.0),
        ));
        metrics.push(
            Metric::lower(
                &format!("nats.rate.{rn}.visible"),
                &format!(
                    "frame received (handed to the engine) → visible in a mirror's shm through the 3-node JetStream cluster (R3, file), {rn} frames/s for {secs} s"
                ),
                "µs",
                mirror_f,
            )
            .with_throughput(applied_rate, "msg/s")
            .vs(
                "bare async-nats JetStream publish → ordered consumer receive (same subjects, sizes, count and time span; same cluster)",
                bare_f,
                Some(bare_rate),
            )
            .vs(
                "local shm: receive → visible in the engine's own shm (same run)",
                local_f,
                None,
            )
            .note(format!(
                "{} frames handed over in {:.2} s ({:.0}/s; wake-up lateness p50 {:.0} µs, worst {:.0} µs); {} MD messages acked ({:.0}/s, mean payload {mean_len:.0} B, {:.0} B a message stored with subject and headers), {} SNAPs; the mirror applied {} ({} skipped, {} gaps, {} resyncs, {} bad) at {applied_rate:.0} MD msg/s (first frame → last applied); {} of {} instruments' books equal to the engine's at the end (checkpoints)",
                h.sent.frames,
                h.sent.secs,
                h.sent.frames as f64 / h.sent.secs.max(1e-9),
                h.sent.late_p50_ns as f64 / 1e3,
                h.sent.late_max_ns as f64 / 1e3,
                h.md_acked,
                md_rate,
                h.md_stream_bytes as f64 / h.md.len().max(1) as f64,
                h.snap_acked,
                h.applied,
                h.skipped,
                h.gaps,
                h.resyncs,
                h.bad,
                h.equal.0,
                h.equal.1,
            ))
            .note(format!(
                "CPU, in cores busy: while the engine ran, the 3 nats-servers {:.2} and this process (engine, publisher, mirror) {:.2}; while the bare baseline published, the servers {:.2} and this process (publisher, consumer) {:.2}",
                h.cpu.servers, h.cpu.bench, b.cpu.servers, b.cpu.bench
            ))
            .note(format!(
                "samples: mirror {} (MD messages that carry a commit), local shm {} (commits), bare {} of {} received; publisher: {} resent, {} errors, {} events dropped at its ring",
                h.mirror.len(),
                h.local.len(),
                b.received,
                b.sent,
                h.retries,
                h.errors,
                h.ring_dropped,
            )),
        );
        metrics.push(
            Metric::lower(
                &format!("nats.rate.{rn}.ack"),
                &format!("publisher send → JetStream ack (PublishStats::ack_ns: MD and SNAP), {rn} frames/s"),
                "µs",
                us(&h.ack),
            )
            .vs(
                "bare async-nats JetStream send → ack (same messages)",
                us(&b.ack),
                None,
            )
            .note(format!(
                "Hermes: {}; bare: {} acks, {} failed",
                h.publisher_line,
                b.ack.len(),
                b.ack_errors
            ))
            .note(h.mirror_line.clone()),
        );
    }
    drop(cluster);
    let mut notes = vec![
        format!(
            "2 cores, 3 nats-server processes on the same 2 cores ({}; JetStream, streams R3 on file storage in {}), with the engine's two threads (not pinned, idle strategy backoff, as the soak runs `hermes run` beside its servers: the ingest thread sleeps between frames, the book thread yields while frames come less than 2 ms apart, so about one core busy at these rates), the publisher thread and the mirror thread in this process: a stand-in for three hosts, not a measure of a network",
            nats_server_version(),
            std::env::temp_dir().display()
        ),
        "frames: hermes_sim::synth (Coinbase and Binance, 3 instruments each), each stamped with CLOCK_REALTIME when handed to the engine's decoder; the mirror records (its now − that stamp) for every applied MD message that carries a commit, the engine for every commit".into(),
        "what the mirror path pays beyond bare async-nats: decode, ring and book thread on the ingest host; the BusTap ring to the publisher thread, which applies every event to its own Market and encodes the MD message (hermes_book::wire); three headers a message (Nats-Msg-Id, so the servers' dedupe, Hermes-Epoch, Hermes-Seq); SNAPs on start, every 10 s or 10,000 messages, at the end; the lease (KV, refreshed every 1 s); the publisher takes each ack as it arrives (it waits on the oldest in flight); on the mirror, decoding and applying each message to a Market (kernels included) and publishing to shm. The bare baseline sends the same subjects and payload sizes evenly spread (Hermes' messages come in bursts, one per event of a frame), without headers".into(),
    ];
    notes.extend(summary);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Stage {
        name: "nats".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics,
        notes,
        skipped: false,
        pinned,
    })
}
