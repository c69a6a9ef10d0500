//! ring: the engine's SPSC ring (rtrb, 64-byte `Event`s) across two pinned threads,
//! push→pop latency at a paced rate and throughput flat out, against
//! `std::sync::mpsc::sync_channel` and `crossbeam_channel::bounded` of the same capacity.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use hdrhistogram::Histogram;
use hermes_ingest::{Event, InstId};

use super::Config;
use crate::report::{Metric, Stage};
use crate::util::{figure, hist, mono_ns, pin, rec, wait_until};

const CAP: usize = 4096;
const BLOCK: u64 = 16_384;

fn stamped(ts: i64) -> Event {
    Event::Commit {
        inst: InstId(0),
        update_id: 1,
        exch_ts_ns: 0,
        recv_ts_ns: ts,
    }
}

fn stamp(ev: &Event) -> i64 {
    match ev {
        Event::Commit { recv_ts_ns, .. } => *recv_ts_ns,
        _ => 0,
    }
}

struct Out {
    latency: Histogram<u64>,
    per_item: Histogram<u64>,
    items_per_s: f64,
}

/// Runs a producer on core 0 and a consumer on core 1: first `lat_n` items paced every
/// `gap_ns` (latency), then `tp_n` items flat out (throughput).
fn pair<T, R>(
    mut tx: T,
    mut rx: R,
    push: fn(&mut T, Event) -> Result<(), Event>,
    pop: fn(&mut R) -> Option<Event>,
    lat_n: u64,
    gap_ns: i64,
    tp_n: u64,
) -> Out
where
    T: Send + 'static,
    R: Send + 'static,
{
    let go = Arc::new(AtomicBool::new(false));
    let go2 = go.clone();
    let consumer = std::thread::spawn(move || {
        pin(1);
        go2.store(true, Ordering::Release);
        let mut latency = hist(10_000_000_000);
        for _ in 0..lat_n {
            let ev = loop {
                if let Some(ev) = pop(&mut rx) {
                    break ev;
                }
                std::hint::spin_loop();
            };
            rec(&mut latency, mono_ns() - stamp(&ev));
        }
        let mut per_item = hist(1_000_000_000_000);
        let mut got = 0u64;
        let start = mono_ns();
        let mut t0 = start;
        while got < tp_n {
            if let Some(ev) = pop(&mut rx) {
                black_box(&ev);
                got += 1;
                if got % BLOCK == 0 {
                    let t1 = mono_ns();
                    rec(&mut per_item, (t1 - t0) * 1000 / BLOCK as i64);
                    t0 = t1;
                }
            } else {
                std::hint::spin_loop();
            }
        }
        let rate = tp_n as f64 / ((mono_ns() - start) as f64 / 1e9);
        (latency, per_item, rate)
    });
    // The producer runs on a thread of its own: pinning the caller would narrow the
    // affinity of every thread the run starts later.
    let producer = std::thread::spawn(move || {
        pin(0);
        while !go.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let start = mono_ns() + 1_000_000;
        for i in 0..lat_n as i64 {
            let due = start + i * gap_ns;
            wait_until(due);
            let mut ev = stamped(mono_ns());
            while let Err(back) = push(&mut tx, ev) {
                ev = back;
                std::hint::spin_loop();
            }
        }
        for _ in 0..tp_n {
            let mut ev = stamped(0);
            while let Err(back) = push(&mut tx, ev) {
                ev = back;
                std::hint::spin_loop();
            }
        }
    });
    producer.join().expect("producer thread");
    let (latency, per_item, items_per_s) = consumer.join().expect("consumer thread");
    Out {
        latency,
        per_item,
        items_per_s,
    }
}

/// Runs the stage.
pub fn run(cfg: &Config) -> Result<Stage> {
    let t = Instant::now();
    let lat_n = cfg.size(500_000, 50_000);
    let tp_n = cfg.size(20_000_000, 2_000_000);
    let gap = 2_000;
    let rtrb_out = {
        let (tx, rx) = rtrb::RingBuffer::<Event>::new(CAP);
        pair(
            tx,
            rx,
            |t, e| t.push(e).map_err(|rtrb::PushError::Full(e)| e),
            |r| r.pop().ok(),
            lat_n,
            gap,
            tp_n,
        )
    };
    let mpsc_out = {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Event>(CAP);
        pair(
            tx,
            rx,
            |t, e| {
                t.try_send(e).map_err(|e| match e {
                    std::sync::mpsc::TrySendError::Full(e)
                    | std::sync::mpsc::TrySendError::Disconnected(e) => e,
                })
            },
            |r| r.try_recv().ok(),
            lat_n,
            gap,
            tp_n,
        )
    };
    let cb_out = {
        let (tx, rx) = crossbeam_channel::bounded::<Event>(CAP);
        pair(
            tx,
            rx,
            |t, e| t.try_send(e).map_err(|e| e.into_inner()),
            |r| r.try_recv().ok(),
            lat_n,
            gap,
            tp_n,
        )
    };
    let pinned = crate::util::core_ids().len() >= 2;
    let where_ = if pinned {
        "producer pinned to core 0, consumer to core 1"
    } else {
        "threads not pinned (fewer than 2 cores)"
    };
    let metrics = vec![
        Metric::lower(
            "ring.latency",
            &format!(
                "push→pop one-way latency of a 64-byte Event, one every {} µs, consumer busy-polling; {where_}",
                gap / 1000
            ),
            "ns",
            figure(&rtrb_out.latency, 1.0),
        )
        .vs("std::sync::mpsc::sync_channel", figure(&mpsc_out.latency, 1.0), None)
        .vs("crossbeam_channel::bounded", figure(&cb_out.latency, 1.0), None)
        .note("includes one clock_gettime on each side"),
        Metric::lower(
            "ring.throughput",
            &format!("flat-out transfer of {tp_n} Events (capacity {CAP}); {where_}"),
            "ns/item",
            figure(&rtrb_out.per_item, 1000.0),
        )
        .with_throughput(rtrb_out.items_per_s / 1e6, "M items/s")
        .vs(
            "std::sync::mpsc::sync_channel",
            figure(&mpsc_out.per_item, 1000.0),
            Some(mpsc_out.items_per_s / 1e6),
        )
        .vs(
            "crossbeam_channel::bounded",
            figure(&cb_out.per_item, 1000.0),
            Some(cb_out.items_per_s / 1e6),
        )
        .note(format!("percentiles over means of blocks of {BLOCK} items")),
    ];
    Ok(Stage {
        name: "ring".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics,
        notes: vec![],
        skipped: false,
        pinned,
    })
}
