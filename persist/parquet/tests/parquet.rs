//! hermes-parquet against the engine: every feature row is the shm slot's kernels at the
//! same publication (synthetic markets, and the real recordings in `../shared/captures`
//! when present); the Parquet files read back to the same rows; the live sink over a
//! journal resumes exactly once after a stop in the middle of a cycle.

use std::path::{Path, PathBuf};

use arrow::array::{Array, Decimal128Array, UInt64Array};
use hermes_book::kernels::KernelConfig;
use hermes_engine::{slot_kernels, Publisher};
use hermes_ingest::source::{Source, SourceOptions};
use hermes_ingest::{Decoder, Event, Frame, FrameKind, FrameTap, Venue};
use hermes_parquet::{
    export_files, DatasetOptions, ExportOptions, Exporter, SinkOptions, Table, VecSink,
};
use hermes_sim::synth::{Synth, SynthOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hermes-parquet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn synth_frames(n: usize, seed: u64) -> Vec<(Venue, Option<String>, i64, String)> {
    let mut s = Synth::new(SynthOptions {
        seed,
        ..SynthOptions::default()
    });
    (0..n)
        .map(|_| {
            let f = s.next_frame();
            (f.venue, f.rest_symbol, f.recv_ts_ns, f.data)
        })
        .collect()
}

/// Runs frames through the engine's publisher and through the exporter side by side and
/// checks every publication's slot kernels against the feature row made for it.
fn check_against_publisher<'a>(frames: impl Iterator<Item = Frame<'a>>) -> usize {
    let cfg = KernelConfig::default();
    let mut publisher = Publisher::new(None, cfg);
    let mut decoder = Decoder::default();
    let mut events: Vec<Event> = Vec::new();
    let mut ex = Exporter::new(ExportOptions::default(), "t");
    let mut rows = VecSink::default();
    let mut published = Vec::new();
    for f in frames {
        events.clear();
        let _ = decoder.decode(&f, &mut events);
        for ev in &events {
            let before = publisher.stats().publishes;
            publisher.apply(ev);
            if publisher.stats().publishes > before {
                let inst = ev.inst();
                published.push((inst, publisher.last(inst).kernels));
            }
        }
        ex.frame(&f, true, &mut rows);
    }
    assert_eq!(
        published.len(),
        rows.features.len(),
        "one feature row per publication"
    );
    for ((inst, slot), (sym, row)) in published.iter().zip(&rows.features) {
        let i = ex.market().instrument(*inst);
        assert_eq!(&*i.symbol, &**sym);
        assert_eq!(
            slot_kernels(&row.kernels, i.kernels()),
            *slot,
            "feature row {} of {sym}",
            row.row
        );
    }
    published.len()
}

#[test]
fn features_are_the_slot_kernels_on_synthetic_markets() {
    for seed in [1, 7, 42] {
        let frames = synth_frames(20_000, seed);
        let n = check_against_publisher(frames.iter().map(|(v, rest, t, d)| Frame {
            venue: *v,
            kind: match rest {
                Some(s) => FrameKind::RestDepth {
                    symbol: s.as_bytes(),
                },
                None => FrameKind::Ws,
            },
            conn: 0,
            recv_ts_ns: *t,
            data: d.as_bytes(),
        }));
        assert!(n > 10_000, "seed {seed}: only {n} publications");
    }
}

#[test]
fn features_are_the_slot_kernels_on_real_captures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/captures");
    if !dir.is_dir() {
        eprintln!("note: no {}: real recordings skipped", dir.display());
        return;
    }
    for name in [
        "binance-spot-btcusdt-20240808.txt",
        "coinbase-advtrade-btcusd-ethusd-20260809.ndjson",
        "binance-us-spot-10symbols-20210417.cryptofeed.txt",
    ] {
        let mut src = Source::open(&dir.join(name), &SourceOptions::default()).unwrap();
        let mut owned = Vec::new();
        while let Ok(Some(f)) = src.next_frame() {
            let rest = match f.kind {
                FrameKind::RestDepth { symbol } => Some(symbol.to_vec()),
                FrameKind::Ws => None,
            };
            owned.push((f.venue, rest, f.conn, f.recv_ts_ns, f.data.to_vec()));
        }
        let n = check_against_publisher(owned.iter().map(|(v, rest, c, t, d)| Frame {
            venue: *v,
            kind: match rest {
                Some(s) => FrameKind::RestDepth { symbol: s },
                None => FrameKind::Ws,
            },
            conn: *c,
            recv_ts_ns: *t,
            data: d,
        }));
        assert!(n > 100, "{name}: {n} publications");
    }
}

/// `(source, row) → (mid mantissa, price column's scale)` of every features file.
fn read_features(dir: &Path) -> Vec<(String, u64, Option<i128>)> {
    let mut out = Vec::new();
    for f in files(dir, "features") {
        let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            let b = b.unwrap();
            let src = b.column_by_name("source").unwrap();
            let src = src
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            let row = b.column_by_name("row").unwrap();
            let row = row.as_any().downcast_ref::<UInt64Array>().unwrap();
            let mid = b.column_by_name("mid").unwrap();
            let mid = mid.as_any().downcast_ref::<Decimal128Array>().unwrap();
            assert_eq!(mid.precision(), 19);
            for k in 0..b.num_rows() {
                out.push((
                    src.value(k).to_string(),
                    row.value(k),
                    (!mid.is_null(k)).then(|| mid.value(k)),
                ));
            }
        }
    }
    out.sort();
    out
}

fn files(dir: &Path, table: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join(table)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn dataset(dir: &Path) -> DatasetOptions {
    DatasetOptions {
        dir: dir.to_path_buf(),
        depth: 10,
        zstd_level: 3,
        metadata: Vec::new(),
        default_scale: hermes_ingest::DecoderOptions::default().scales.default,
    }
}

/// Frames into a journal through its tap, as the ingest thread does.
fn journal_frames(
    dir: &Path,
    frames: &[(Venue, Option<String>, i64, String)],
) -> (hermes_persist::PersistTap, hermes_persist::Journal) {
    let (mut tap, j) =
        hermes_persist::start_journal(hermes_persist::JournalOptions::new(dir)).unwrap();
    for (v, rest, t, d) in frames {
        tap.frame(&Frame {
            venue: *v,
            kind: match rest {
                Some(s) => FrameKind::RestDepth {
                    symbol: s.as_bytes(),
                },
                None => FrameKind::Ws,
            },
            conn: 0,
            recv_ts_ns: *t,
            data: d.as_bytes(),
        });
    }
    (tap, j)
}

#[test]
fn live_sink_resumes_exactly_once() {
    let root = tmp("sink");
    let (journal_dir, out) = (root.join("journal"), root.join("parquet"));
    let frames = synth_frames(30_000, 3);
    let sink_opts = SinkOptions {
        export: ExportOptions::default(),
        dataset: dataset(&out),
        // Synthetic frames are 1 ms apart: a cycle every 2,000 frames.
        rotate_ns: 2_000_000_000,
    };
    // First run: stopped before the journal is read to its end, as a crash would stop it.
    let (tap, j) = journal_frames(&journal_dir, &frames);
    let sink = hermes_parquet::start_sink(j.follower(), sink_opts.clone()).unwrap();
    let segment = j.recovery().segment.clone();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let first = sink.abandon().unwrap();
    drop(tap);
    j.finish().unwrap();
    // What a kill -9 leaves besides: a temporary of an unfinished file, and a final file
    // of a cycle the checkpoint does not count.
    let part = out.join("features/venue=binance/date=2026-08-09");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join(".part-s00000001-c999998.parquet.tmp"), b"half").unwrap();
    std::fs::write(
        part.join("part-s00000001-c999999.parquet"),
        b"renamed, not committed",
    )
    .unwrap();
    // Restart: a new (empty) segment; the sink completes the first one.
    let (tap, j) = journal_frames(&journal_dir, &[]);
    let sink = hermes_parquet::start_sink(j.follower(), sink_opts).unwrap();
    drop(tap);
    j.finish().unwrap();
    let second = sink.finish().unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    assert!(second.removed_at_start.load(Relaxed) >= 2);
    assert!(first.cycles.load(Relaxed) + second.cycles.load(Relaxed) > 2);
    // The reference: the first segment exported as a file, in one go.
    let reference = root.join("reference");
    let r = export_files(
        std::slice::from_ref(&segment),
        &SourceOptions::default(),
        &ExportOptions::default(),
        &dataset(&reference),
    )
    .unwrap();
    assert!(r.rows(Table::Features) > 20_000);
    let want = read_features(&reference);
    let got = read_features(&out);
    assert_eq!(got.len(), want.len(), "rows: no loss, no duplicate");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.1, g.2), (w.1, w.2));
    }
    let _ = std::fs::remove_dir_all(&root);
}
