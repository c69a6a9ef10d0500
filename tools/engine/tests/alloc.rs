//! Proves the hot path allocates nothing per message: a counting global allocator wraps
//! the system one, and after a warm-up (instrument discovery, snapshots, buffers reaching
//! their working size) a replay of a native capture through the source reader, decoder,
//! books and shm writer must not allocate at all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hermes_engine::Publisher;
use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
use hermes_ingest::source::{Source, SourceOptions};
use hermes_ingest::{Decoder, Event, EventSink};
use hermes_shm::{ShmWriter, WriterOptions};
use hermes_sim::synth::{Synth, SynthOptions};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a counter read after the measured section, on the same thread.
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Relaxed: as in `alloc`.
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Applies events straight to the books, as the book thread does.
struct Direct(Publisher);

impl EventSink for Direct {
    fn push(&mut self, ev: Event) {
        self.0.apply(&ev);
    }
}

#[test]
fn steady_state_replay_does_not_allocate() {
    let dir = std::env::temp_dir().join(format!("hermes-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cap = dir.join("sample.hcap");
    let mut synth = Synth::new(SynthOptions::default());
    let mut w = CaptureWriter::create(&cap).unwrap();
    const WARMUP: u64 = 60_000;
    const MEASURED: u64 = 60_000;
    for _ in 0..WARMUP + MEASURED {
        let f = synth.next_frame();
        let (kind, tag) = match &f.rest_symbol {
            Some(s) => (RecordKind::RestDepth, s.as_bytes()),
            None => (RecordKind::Ws, &b""[..]),
        };
        w.append(&Record {
            recv_ts_ns: f.recv_ts_ns,
            venue: f.venue,
            kind,
            conn: 0,
            tag,
            data: f.data.as_bytes(),
        })
        .unwrap();
    }
    w.flush().unwrap();
    drop(w);

    let shm = ShmWriter::create(&dir.join("shm"), WriterOptions::default()).unwrap();
    let mut sink = Direct(Publisher::new(Some(shm), Default::default()));
    let mut decoder = Decoder::default();
    let mut source = Source::open(&cap, &SourceOptions::default()).unwrap();
    let mut n = 0u64;
    while n < WARMUP {
        let f = source.next_frame().unwrap().unwrap();
        decoder.decode(&f, &mut sink).unwrap();
        n += 1;
    }
    let before = decoder.stats();
    COUNTING.store(true, Ordering::Relaxed);
    while let Some(f) = source.next_frame().unwrap() {
        decoder.decode(&f, &mut sink).unwrap();
        n += 1;
    }
    COUNTING.store(false, Ordering::Relaxed);
    let after = decoder.stats();
    let allocs = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(n, WARMUP + MEASURED);
    let measured_events = after.events - before.events;
    assert!(
        measured_events > MEASURED,
        "the measured part must do real work: {measured_events} events"
    );
    assert!(
        after.levels > before.levels
            && after.trades > before.trades
            && after.quotes > before.quotes
    );
    assert_eq!(
        allocs, 0,
        "{allocs} allocations over {MEASURED} frames / {measured_events} events"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
