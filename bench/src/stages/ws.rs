//! ws: the project's exchange simulator (`hermes_sim::serve`, Coinbase protocol, the
//! synthetic market, `--speed max`) over loopback WebSocket into the engine
//! (`hermes_live::ingest` on the engine's ingest thread), msgs/s and the latency from
//! the simulator's socket write to the frame's effect being visible in another process;
//! against a bare tokio-tungstenite client reading the same simulator.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use hermes_engine::{self, EngineOptions, IdleStrategy};
use hermes_ingest::{Decoder, Event, EventSink, NoTap, Venue};
use hermes_live::{self as live, LiveConfig, LiveStats, RunLimits};
use hermes_sim::{self as sim, Pacing, SimOptions, SimSource, SimStats};

use super::Config;
use crate::report::{Figure, Metric, Stage};
use crate::util::{figure, hist, real_ns, rec};

const PRODUCTS: [&str; 3] = ["SYN0-USD", "SYN1-USD", "SYN2-USD"];

/// A simulator on its own thread and runtime, stopped on drop.
struct SimServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimServer {
    fn start(frames: u64, pacing: Pacing) -> Result<SimServer> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = addr_tx.send(Err(anyhow::anyhow!(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let l = match sim::bind("127.0.0.1:0".parse().expect("address")).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                let addr = l.local_addr().expect("bound address");
                let _ = addr_tx.send(Ok(addr));
                let opts = SimOptions {
                    venue: Venue::Coinbase,
                    source: SimSource::Synthetic {
                        instruments: 3,
                        depth: 50,
                        seed: 7,
                        frames: Some(frames),
                    },
                    listen: addr,
                    pacing,
                    faults: vec![],
                    oversize_bytes: 1 << 20,
                    stall: Duration::ZERO,
                    seed: 1,
                    rest_per_second: 100,
                };
                tokio::select! {
                    _ = sim::serve(l, opts, Arc::new(SimStats::default())) => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().context("the simulator thread")??;
        Ok(SimServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wraps the ring sink to note when events flow.
struct Timed<'a, S: EventSink> {
    inner: &'a mut S,
    first: Option<Instant>,
    last: Instant,
}

impl<S: EventSink> EventSink for Timed<'_, S> {
    #[inline]
    fn push(&mut self, ev: Event) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = now;
        self.inner.push(ev);
    }
}

/// A TCP relay in front of the simulator that notes, for every server→client WebSocket
/// text frame carrying a Coinbase `sequence_num`, the wall time its last byte left the
/// simulator (the relay's read): the "sent" time of the latency figure.
fn relay(upstream: SocketAddr, sent: Arc<Mutex<Vec<(u64, i64)>>>) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        let Ok((client, _)) = l.accept() else { return };
        let Ok(server) = TcpStream::connect(upstream) else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (mut c_r, mut s_w) = (
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = c_r.read(&mut buf) {
                if n == 0 || s_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (mut s_r, mut c_w) = (server, client);
        let mut pending: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut buf = vec![0u8; 1 << 16];
        let mut local: Vec<(u64, i64)> = Vec::new();
        let mut upgraded = false;
        while let Ok(n) = s_r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let now = real_ns();
            if c_w.write_all(&buf[..n]).is_err() {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            if !upgraded {
                // The HTTP upgrade response ends with an empty line.
                match pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(i) => {
                        pending.drain(..i + 4);
                        upgraded = true;
                    }
                    None => continue,
                }
            }
            let mut at = 0;
            loop {
                let b = &pending[at..];
                if b.len() < 2 {
                    break;
                }
                let len7 = (b[1] & 0x7f) as usize;
                let (hdr, len) = match len7 {
                    126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
                    127 if b.len() >= 10 => (
                        10,
                        u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
                    ),
                    126 | 127 => break,
                    n => (2, n),
                };
                if b.len() < hdr + len {
                    break;
                }
                let payload = &b[hdr..hdr + len];
                if let Some(seq) = sequence_num(payload) {
                    local.push((seq, now));
                }
                at += hdr + len;
            }
            pending.drain(..at);
        }
        if let Ok(mut s) = sent.lock() {
            s.extend(local);
        }
    });
    Ok(addr)
}

fn sequence_num(p: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sequence_num\":";
    let i = p.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = p[i..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// (sequence or update id, wall time) pairs collected by a helper thread.
type Stamps = Arc<Mutex<Vec<(u64, i64)>>>;

struct EngineRun {
    frames: u64,
    secs: f64,
}

/// The engine ingesting the simulator at `url`; the book thread's publications are
/// watched by `watch` (in-process, spinning), which records (update id, wall time).
fn engine_run(url: String, shm: std::path::PathBuf, visible: Option<Stamps>) -> Result<EngineRun> {
    let opts = EngineOptions {
        shm_path: Some(shm.clone()),
        shm_slots: 8,
        idle: IdleStrategy::SpinYield,
        ..EngineOptions::default()
    };
    let done = Arc::new(AtomicBool::new(false));
    let watcher = visible.map(|v| {
        let (shm, done) = (shm.clone(), done.clone());
        std::thread::spawn(move || watch(&shm, &done, &v))
    });
    let res = hermes_engine::run(&opts, move |sink| {
        let mut cfg = LiveConfig::default();
        let feed = cfg.feed_mut(hermes_ingest::Venue::Coinbase);
        feed.ws_url = url;
        feed.symbols = PRODUCTS.iter().map(|s| s.to_string()).collect();
        let limits = RunLimits {
            duration: Some(Duration::from_secs(120)),
            until_idle: Some(Duration::from_millis(400)),
            stats_every: None,
        };
        let stats = LiveStats::default();
        let stop = AtomicBool::new(false);
        let mut timed = Timed {
            inner: sink,
            first: None,
            last: Instant::now(),
        };
        let r = live::ingest(
            &cfg,
            &limits,
            Decoder::default(),
            &mut timed,
            &mut NoTap,
            &stats,
            &stop,
            None,
        );
        let secs = timed
            .first
            .map(|f| timed.last.duration_since(f).as_secs_f64())
            .unwrap_or(0.0);
        r.map(|s| EngineRun {
            frames: s.decode.frames,
            secs,
        })
    })?;
    done.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    let _ = std::fs::remove_file(&shm);
    res.ingest
}

/// Watches every slot of the region (another thread standing in for the reader process:
/// the same `ShmReader` calls) and records (update id, wall time) of each publication.
fn watch(path: &std::path::Path, done: &AtomicBool, out: &Mutex<Vec<(u64, i64)>>) {
    let r = loop {
        // SAFETY: the engine's own file, never truncated while mapped.
        match unsafe { hermes_shm::ShmReader::open(path) } {
            Ok(r) if r.instruments().len() >= PRODUCTS.len() => break r,
            _ if done.load(Ordering::Relaxed) => return,
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let slots: Vec<_> = r.instruments().iter().map(|i| i.slot).collect();
    let mut last: Vec<u64> = vec![0; slots.len()];
    let mut local = Vec::with_capacity(1 << 20);
    let mut idle = 0u32;
    while !done.load(Ordering::Relaxed) {
        let mut found = false;
        for (k, s) in slots.iter().enumerate() {
            let q = r.seq(*s);
            if q != last[k] && q & 1 == 0 {
                if let Some(t) = r.try_read(*s) {
                    let now = real_ns();
                    last[k] = t.seq;
                    local.push((t.update_id, now));
                    found = true;
                }
            }
        }
        if found {
            idle = 0;
        } else {
            idle += 1;
            if idle > 200 {
                std::thread::yield_now();
            }
        }
    }
    if let Ok(mut o) = out.lock() {
        o.extend(local);
    }
}

/// A bare WebSocket client: subscribes like the engine, counts messages until idle.
fn raw_client(url: &str, seen: Option<&mut Vec<(u64, i64)>>) -> Result<(u64, f64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        for ch in ["level2", "market_trades", "heartbeats"] {
            let msg = format!(
                r#"{{"type":"subscribe","product_ids":{},"channel":"{ch}"}}"#,
                serde_json::to_string(&PRODUCTS)?
            );
            ws.send(tokio_tungstenite::tungstenite::Message::text(msg))
                .await?;
        }
        let mut seen = seen;
        let mut n = 0u64;
        let mut first = None;
        let mut last = Instant::now();
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(400), ws.next()).await
        {
            if m.is_text() {
                if let Some(v) = seen.as_deref_mut() {
                    if let Some(q) = sequence_num(&m.clone().into_data()) {
                        v.push((q, real_ns()));
                    }
                }
                std::hint::black_box(m.len());
                n += 1;
                last = Instant::now();
                first.get_or_insert(last);
            }
        }
        let secs = first
            .map(|f| last.duration_since(f).as_secs_f64())
            .unwrap_or(0.0);
        Ok::<_, anyhow::Error>((n, secs))
    })
}

/// Runs the stage.
pub fn run(cfg: &Config) -> Result<Stage> {
    let t = Instant::now();
    let frames = cfg.size(300_000, 30_000);
    // Throughput: the simulator as fast as the client reads.
    let sim_a = SimServer::start(frames, Pacing::Max)?;
    let ours = engine_run(
        format!("ws://{}", sim_a.addr),
        cfg.tmp.join("ws-max.shm"),
        None,
    )?;
    drop(sim_a);
    let sim_b = SimServer::start(frames, Pacing::Max)?;
    let (raw_n, raw_s) = raw_client(&format!("ws://{}", sim_b.addr), None)?;
    drop(sim_b);
    let ours_rate = ours.frames as f64 / ours.secs.max(1e-9);
    let raw_rate = raw_n as f64 / raw_s.max(1e-9);
    // Latency: paced, through the relay that stamps each frame as it leaves the simulator.
    let rate = cfg.size(20_000.0, 10_000.0);
    let paced = cfg.size(100_000, 10_000);
    let sim_c = SimServer::start(paced, Pacing::Rate(rate))?;
    let sent = Arc::new(Mutex::new(Vec::new()));
    let visible = Arc::new(Mutex::new(Vec::new()));
    let relay_addr = relay(sim_c.addr, sent.clone())?;
    let paced_run = engine_run(
        format!("ws://{relay_addr}"),
        cfg.tmp.join("ws-paced.shm"),
        Some(visible.clone()),
    )?;
    drop(sim_c);
    std::thread::sleep(Duration::from_millis(50));
    let sent = std::mem::take(&mut *sent.lock().expect("unpoisoned"));
    let visible = std::mem::take(&mut *visible.lock().expect("unpoisoned"));
    let sent_at: std::collections::HashMap<u64, i64> = sent.into_iter().collect();
    let mut h = hist(60_000_000_000);
    for (seq, at) in &visible {
        if let Some(s) = sent_at.get(seq) {
            rec(&mut h, at - s);
        }
    }
    let lat = figure(&h, 1000.0);
    // The same path without the engine: relay → bare client.
    let sim_d = SimServer::start(paced, Pacing::Rate(rate))?;
    let sent_d = Arc::new(Mutex::new(Vec::new()));
    let relay_d = relay(sim_d.addr, sent_d.clone())?;
    let mut got = Vec::new();
    raw_client(&format!("ws://{relay_d}"), Some(&mut got))?;
    drop(sim_d);
    std::thread::sleep(Duration::from_millis(50));
    let sent_d: std::collections::HashMap<u64, i64> =
        std::mem::take(&mut *sent_d.lock().expect("unpoisoned"))
            .into_iter()
            .collect();
    let mut hb = hist(60_000_000_000);
    for (seq, at) in &got {
        if let Some(s) = sent_d.get(seq) {
            rec(&mut hb, at - s);
        }
    }
    let metrics = vec![
        Metric::higher(
            "ws.throughput",
            &format!("hermes sim (Coinbase, synthetic, --speed max) → loopback WebSocket → engine → shm, {frames} frames"),
            "msg/s",
            Figure::scalar(ours_rate),
        )
        .vs(
            "bare tokio-tungstenite client reading the same simulator (no decode, no engine)",
            Figure::scalar(raw_rate),
            None,
        )
        .note(format!("engine: {} frames in {:.2} s; bare client: {raw_n} messages in {raw_s:.2} s; the simulator itself (one thread, a serde_json pass per frame) is in both paths", ours.frames, ours.secs)),
        Metric::lower(
            "ws.latency",
            &format!("simulator socket write → effect visible in the shm slot, {rate:.0} msg/s paced, level-2 frames"),
            "µs",
            lat,
        )
        .with_throughput(paced_run.frames as f64 / paced_run.secs.max(1e-9), "msg/s")
        .vs(
            "bare tokio-tungstenite client behind the same relay (receive time, no decode, no engine)",
            figure(&hb, 1000.0),
            None,
        )
        .note(format!(
            "stamped by a TCP relay between simulator and engine (one extra loopback hop included) and observed by a spinning ShmReader thread in the benchmark process; {} publications matched",
            h.len()
        )),
    ];
    Ok(Stage {
        name: "ws".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics,
        notes: vec![],
        skipped: false,
        pinned: crate::util::core_ids().len() >= 2,
    })
}
