//! shm: `ShmWriter::publish` and `ShmReader::read` of one slot (seqlock, 88 words, with
//! the TopOfBook encode/decode), and cross-process visibility (the writer stamps
//! `CLOCK_MONOTONIC`, a reader in a child process spins on the slot), against a
//! `Mutex`-guarded `TopOfBook` in-process and the bare core-to-core floor.
//!
//! The child reader ([`reader_main`]) is also the end-to-end stage's observer.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hermes_shm::layout::SLOT_WORDS;
use hermes_shm::{ShmReader, ShmWriter, TopOfBook, Venue, WriterOptions};
use serde::{Deserialize, Serialize};

use super::Config;
use crate::report::{Figure, Metric, Stage};
use crate::util::{figure, hist, mono_ns, pin, rec, wait_until};

/// Which slot field carries the writer's stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `publish_ts_ns` (this stage's writer stamps it).
    Publish,
    /// `recv_ts_ns` (the engine copies the frame's receive time there).
    Recv,
}

/// Settings of a child reader.
#[derive(Clone, Debug)]
pub struct ReaderArgs {
    /// The shm file.
    pub path: PathBuf,
    /// Wait for this many instruments, then watch them all.
    pub instruments: usize,
    /// The stamp field.
    pub field: Field,
    /// Core to pin to, if any.
    pub pin: Option<usize>,
    /// Idle polls before each further idle poll yields the core (`u32::MAX`: never).
    pub yield_after: u32,
}

/// What a child reader reports on its stdout (one JSON line) when its stdin closes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReaderOut {
    /// Latency from the stamp to the reader's copy, ns.
    pub figure: Figure,
    /// Publications observed with a new stamp.
    pub samples: u64,
    /// The reader's CPU time, s.
    pub cpu_s: f64,
    /// Failed `try_read`s (the writer was inside the slot).
    pub retries: u64,
}

/// The child reader's main: maps the file, prints `ready`, then spins over the slots
/// recording `now − stamp` for each new stamp until its stdin closes.
pub fn reader_main(a: &ReaderArgs) -> Result<()> {
    match a.pin {
        Some(c) => {
            pin(c);
        }
        None => unpin(),
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        // SAFETY: the file belongs to the benchmark's writer, which never truncates it.
        if let Ok(r) = unsafe { ShmReader::open(&a.path) } {
            if r.instruments().len() >= a.instruments {
                break r;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{}: no region with {} instruments",
                a.path.display(),
                a.instruments
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let slots: Vec<_> = r.instruments().iter().map(|i| i.slot).collect();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while !matches!(stdin.read(&mut buf), Ok(0) | Err(_)) {}
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut last_seq: Vec<u64> = slots.iter().map(|s| r.seq(*s)).collect();
    let mut last_ts: Vec<i64> = slots
        .iter()
        .map(|s| r.read(*s).map_or(0, |t| stamp_of(&t, a.field)))
        .collect();
    println!("ready");
    std::io::stdout().flush()?;
    let cpu0 = crate::util::cpu_time();
    let mut h = hist(60_000_000_000);
    let mut retries = 0u64;
    let mut idle = 0u32;
    let mut n = 0u64;
    loop {
        n += 1;
        if n & 1023 == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
        let mut found = false;
        for (k, &slot) in slots.iter().enumerate() {
            let s = r.seq(slot);
            if s == last_seq[k] || s & 1 == 1 {
                continue;
            }
            match r.try_read(slot) {
                Some(t) => {
                    let now = mono_ns();
                    last_seq[k] = t.seq;
                    let ts = stamp_of(&t, a.field);
                    if ts != last_ts[k] {
                        last_ts[k] = ts;
                        rec(&mut h, now - ts);
                        found = true;
                    }
                }
                None => retries += 1,
            }
        }
        if found {
            idle = 0;
        } else {
            idle = idle.saturating_add(1);
            if idle > a.yield_after {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let out = ReaderOut {
        figure: figure(&h, 1.0),
        samples: h.len(),
        cpu_s: (crate::util::cpu_time() - cpu0).as_secs_f64(),
        retries,
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

/// Allows every online CPU again: a child forked from a pinned thread inherits its mask.
fn unpin() {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in 0..n.min(libc::CPU_SETSIZE as usize) {
        // SAFETY: `c` is below CPU_SETSIZE and `set` is a valid cpu_set_t.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is this thread; `set` is a valid cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

fn stamp_of(t: &TopOfBook, f: Field) -> i64 {
    match f {
        Field::Publish => t.publish_ts_ns,
        Field::Recv => t.recv_ts_ns,
    }
}

/// A running child reader.
pub struct Reader {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Reader {
    /// Starts `exe __reader …` and waits for its `ready`.
    pub fn start(exe: &Path, a: &ReaderArgs) -> Result<Reader> {
        let mut c = Command::new(exe);
        c.arg("__reader")
            .arg("--path")
            .arg(&a.path)
            .arg("--instruments")
            .arg(a.instruments.to_string())
            .arg("--field")
            .arg(match a.field {
                Field::Publish => "publish",
                Field::Recv => "recv",
            })
            .arg("--yield-after")
            .arg(a.yield_after.to_string());
        if let Some(p) = a.pin {
            c.arg("--pin").arg(p.to_string());
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the reader process")?;
        let mut out = BufReader::new(child.stdout.take().context("reader stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the reader process did not start: {line:?}");
        }
        Ok(Reader { child, out })
    }

    /// Stops it (closes its stdin) and returns what it measured.
    pub fn finish(mut self) -> Result<ReaderOut> {
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        self.child.wait()?;
        serde_json::from_str(line.trim()).with_context(|| format!("reader said {line:?}"))
    }
}

const BATCH: i64 = 64;

fn sample_tob(i: u64) -> TopOfBook {
    let mut t = TopOfBook {
        update_id: i,
        bid_px: 6_508_366_000_000,
        bid_qty: 20_371_215,
        ask_px: 6_508_367_000_000,
        ask_qty: 1_000_000,
        bid_levels: 10,
        ask_levels: 10,
        ..TopOfBook::default()
    };
    for k in 0..10 {
        t.bids[k] = (6_508_366_000_000 - k as i64 * 1_000_000, 1_000 + k as i64);
        t.asks[k] = (6_508_367_000_000 + k as i64 * 1_000_000, 2_000 + k as i64);
    }
    t
}

/// A cache-line-padded stamp for the floor measurement.
#[repr(align(128))]
struct Padded(AtomicI64);

/// In-process visibility: a writer thread on core 0 stores, a reader on core 1 spins.
fn in_process<S: Send + Sync + 'static>(
    shared: S,
    n: u64,
    gap_ns: i64,
    write: fn(&S, i64),
    read: fn(&S) -> i64,
) -> hdrhistogram::Histogram<u64> {
    let shared = Arc::new(shared);
    let go = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (shared, go, done) = (shared.clone(), go.clone(), done.clone());
        std::thread::spawn(move || {
            pin(1);
            go.store(true, Ordering::Release);
            let mut h = hist(60_000_000_000);
            let mut last = read(&shared);
            while !done.load(Ordering::Relaxed) {
                let ts = read(&shared);
                if ts != last {
                    rec(&mut h, mono_ns() - ts);
                    last = ts;
                }
            }
            h
        })
    };
    let writer = {
        let (shared, done) = (shared.clone(), done.clone());
        std::thread::spawn(move || {
            pin(0);
            while !go.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            let start = mono_ns() + 1_000_000;
            for i in 0..n as i64 {
                wait_until(start + i * gap_ns);
                write(&shared, mono_ns());
            }
            std::thread::sleep(Duration::from_millis(5));
            done.store(true, Ordering::Relaxed);
        })
    };
    writer.join().expect("writer");
    reader.join().expect("reader")
}

/// Runs the stage.
pub fn run(cfg: &Config) -> Result<Stage> {
    let t = Instant::now();
    let path = cfg.tmp.join("shm-stage.shm");
    let mut w = ShmWriter::create(
        &path,
        WriterOptions {
            slots: 4,
            group_readable: false,
            replace_foreign: false,
        },
    )?;
    let slot = w.add_instrument(Venue::Binance, "BTCUSDT", 8, 8)?;
    let reps = cfg.size(20_000, 4_000);
    let mut tob = sample_tob(0);

    // Publish and read, uncontended, in batches.
    let mut pub_h = hist(1_000_000_000_000);
    let mut read_h = hist(1_000_000_000_000);
    let mut raw_h = hist(1_000_000_000_000);
    let mut mw_h = hist(1_000_000_000_000);
    let mut mr_h = hist(1_000_000_000_000);
    let mut bbo_h = hist(1_000_000_000_000);
    // SAFETY: our own file, never truncated while mapped.
    let r = unsafe { ShmReader::open(&path) }?;
    let m = Mutex::new(TopOfBook::default());
    let seq = AtomicU64::new(0);
    let words: Vec<AtomicU64> = (0..SLOT_WORDS).map(|_| AtomicU64::new(7)).collect();
    let mut raw_buf = [0u64; 87];
    for i in 0..reps {
        tob.update_id = i;
        let t0 = mono_ns();
        for _ in 0..BATCH {
            w.publish(slot, black_box(&tob));
        }
        let t1 = mono_ns();
        for _ in 0..BATCH {
            black_box(r.read(black_box(slot)));
        }
        let t2 = mono_ns();
        for _ in 0..BATCH {
            black_box(r.read_bbo(black_box(slot)));
        }
        let t2b = mono_ns();
        for _ in 0..BATCH {
            black_box(hermes_shm::seqlock::try_read(
                &seq,
                &words[1..88],
                &mut raw_buf,
            ));
        }
        let t3 = mono_ns();
        for _ in 0..BATCH {
            *m.lock().expect("unpoisoned") = *black_box(&tob);
        }
        let t4 = mono_ns();
        for _ in 0..BATCH {
            black_box(*m.lock().expect("unpoisoned"));
        }
        let t5 = mono_ns();
        rec(&mut pub_h, (t1 - t0) * 1000 / BATCH);
        rec(&mut read_h, (t2 - t1) * 1000 / BATCH);
        rec(&mut bbo_h, (t2b - t2) * 1000 / BATCH);
        rec(&mut raw_h, (t3 - t2b) * 1000 / BATCH);
        rec(&mut mw_h, (t4 - t3) * 1000 / BATCH);
        rec(&mut mr_h, (t5 - t4) * 1000 / BATCH);
    }
    let mut metrics = vec![
        Metric::lower(
            "shm.publish",
            "ShmWriter::publish of one slot (TopOfBook encode + seqlock write of 87 words)",
            "ns",
            figure(&pub_h, 1000.0),
        )
        .vs("Mutex<TopOfBook> lock + store", figure(&mw_h, 1000.0), None)
        .note(format!("percentiles over means of batches of {BATCH}")),
        Metric::lower(
            "shm.read",
            "ShmReader::read of one slot, uncontended (seqlock copy of 87 words + TopOfBook decode)",
            "ns",
            figure(&read_h, 1000.0),
        )
        .vs("Mutex<TopOfBook> lock + copy", figure(&mr_h, 1000.0), None)
        .note(format!("percentiles over means of batches of {BATCH}")),
        Metric::lower(
            "shm.read_bbo",
            "ShmReader::read_bbo of one slot, uncontended (seqlock copy of the 11 hot words: best bid/ask, flags, times)",
            "ns",
            figure(&bbo_h, 1000.0),
        )
        .vs("Mutex<TopOfBook> lock + copy", figure(&mr_h, 1000.0), None)
        .target("< 20 ns", figure(&bbo_h, 1000.0).p50.unwrap_or(f64::MAX) < 20.0)
        .note(format!("percentiles over means of batches of {BATCH}")),
        Metric::lower(
            "shm.read_raw",
            "seqlock::try_read of the 87 data words alone (no decode)",
            "ns",
            figure(&raw_h, 1000.0),
        )
        .vs("Mutex<TopOfBook> lock + copy", figure(&mr_h, 1000.0), None),
    ];

    // The book thread's whole publication: Books::apply of a commit or quote (top of
    // book, the analytics kernels, encode, seqlock write), on the synthetic stream.
    {
        let path = cfg.tmp.join("books-publish.shm");
        let w = ShmWriter::create(
            &path,
            WriterOptions {
                slots: 16,
                group_readable: false,
                replace_foreign: false,
            },
        )?;
        let mut books = hermes_engine::Publisher::new(Some(w), Default::default());
        let mut events: Vec<hermes_ingest::Event> = Vec::new();
        let mut dec = hermes_ingest::Decoder::default();
        for f in crate::frames::synthetic(cfg.size(100_000, 20_000)) {
            let _ = dec.decode(&f.frame(f.recv_ts_ns), &mut events);
        }
        let timer = crate::util::timer_overhead_ns().round() as i64;
        let mut h = hist(60_000_000_000);
        let mut other = hist(60_000_000_000);
        for ev in &events {
            let t0 = mono_ns();
            books.apply(black_box(ev));
            let dt = (mono_ns() - t0 - timer).max(1);
            match ev {
                hermes_ingest::Event::Commit { .. } | hermes_ingest::Event::Quote { .. } => {
                    rec(&mut h, dt)
                }
                hermes_ingest::Event::Level { .. } => rec(&mut other, dt),
                _ => {}
            }
        }
        drop(books);
        let _ = std::fs::remove_file(&path);
        metrics.push(
            Metric::lower(
                "shm.books_publish",
                "the book thread's publication: hermes_engine::Publisher::apply of a commit or quote (top of book, analytics kernels, TopOfBook encode, seqlock write)",
                "ns",
                figure(&h, 1.0),
            )
            .vs("bare ShmWriter::publish (encode + seqlock write only)", figure(&pub_h, 1000.0), None)
            .note(format!(
                "a level event on the same thread: p50 {:.0} ns; each event timed alone, timer cost subtracted",
                other.value_at_quantile(0.5)
            )),
        );
    }

    // Cross-process visibility.
    drop(w);
    let n = cfg.size(100_000, 10_000);
    let gap = 20_000;
    let out = cross_process(cfg, n, gap)?;
    let mutex_h = in_process(
        Mutex::new(TopOfBook::default()),
        n,
        gap,
        |m, ts| {
            let mut g = m.lock().expect("unpoisoned");
            *g = sample_tob(0);
            g.publish_ts_ns = ts;
        },
        |m| m.lock().expect("unpoisoned").publish_ts_ns,
    );
    let floor_h = in_process(
        Padded(AtomicI64::new(0)),
        n,
        gap,
        // Release/Acquire: the floor of a one-word publication between cores.
        |a, ts| a.0.store(ts, Ordering::Release),
        |a| a.0.load(Ordering::Acquire),
    );
    let floor = figure(&floor_h, 1.0);
    metrics.push(
        Metric::lower(
            "shm.visibility",
            &format!(
                "cross-process visibility: writer stamps CLOCK_MONOTONIC and publishes (core 0), a reader process spins on the slot (core 1); one publication every {} µs",
                gap / 1000
            ),
            "ns",
            out.figure.clone(),
        )
        .vs("Mutex<TopOfBook> in-process, reader polling the lock", figure(&mutex_h, 1.0), None)
        .vs("bare AtomicI64 store→load between the two cores (floor)", floor, None)
        .note(format!(
            "{} of {n} publications observed; includes the reader's copy and decode of the slot and one clock_gettime",
            out.samples
        )),
    );
    let _ = std::fs::remove_file(&path);
    Ok(Stage {
        name: "shm".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics,
        notes: vec![],
        skipped: false,
        pinned: crate::util::core_ids().len() >= 2,
    })
}

/// Cross-process visibility of a bare `ShmWriter::publish` (no engine): `n`
/// publications, one every `gap_ns`, writer on core 0, reader process on core 1.
pub fn cross_process(cfg: &Config, n: u64, gap_ns: i64) -> Result<ReaderOut> {
    let path = cfg.tmp.join("shm-visibility.shm");
    let mut w = ShmWriter::create(
        &path,
        WriterOptions {
            slots: 4,
            group_readable: false,
            replace_foreign: false,
        },
    )?;
    let slot = w.add_instrument(Venue::Binance, "BTCUSDT", 8, 8)?;
    let reader = Reader::start(
        &cfg.exe,
        &ReaderArgs {
            path: path.clone(),
            instruments: 1,
            field: Field::Publish,
            pin: Some(1),
            yield_after: u32::MAX,
        },
    )?;
    let writer = std::thread::spawn(move || {
        pin(0);
        let mut tob = sample_tob(0);
        let start = mono_ns() + 2_000_000;
        for i in 0..n as i64 {
            wait_until(start + i * gap_ns);
            tob.update_id = i as u64;
            tob.publish_ts_ns = mono_ns();
            w.publish(slot, &tob);
        }
        std::thread::sleep(Duration::from_millis(5));
        w
    });
    let w = writer.join().expect("writer thread");
    let out = reader.finish()?;
    drop(w);
    let _ = std::fs::remove_file(&path);
    Ok(out)
}

/// The floor figure alone (used by the end-to-end stage as its baseline).
pub fn floor(n: u64) -> Figure {
    let h = in_process(
        Padded(AtomicI64::new(0)),
        n,
        20_000,
        // Release/Acquire: see `run`.
        |a, ts| a.0.store(ts, Ordering::Release),
        |a| a.0.load(Ordering::Acquire),
    );
    figure(&h, 1.0)
}
