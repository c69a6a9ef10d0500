//! The live sink (`hermes run|record --parquet DIR`): another reader of the persister's
//! journal, with its own committed position, writing the same tables as `hermes export`.
//!
//! # Cycles and the checkpoint
//!
//! The sink reads each journal segment in order, as the database thread does, and runs
//! its records through an [`Exporter`] (one per segment: its decoder and books start
//! empty at the segment's first record, as the engine's did). The rows of one *cycle*
//! go to hidden temporary files; a cycle ends when a record's receive time falls in the
//! next rotation interval (an hour by default), when the clock passes the interval's end
//! while the journal is quiet, or at the end of a segment. Ending a cycle:
//!
//! 1. every file of the cycle gets its footer, is synced, and is renamed to its final
//!    name `part-s<segment>-c<cycle>.parquet` (only now can a reader see it);
//! 2. the checkpoint `DIR/_hermes/checkpoint.json` (written to a temporary, synced and
//!    renamed) records, per segment, the journal offset the cycle reached, the cycles
//!    done, and whether the segment is finished.
//!
//! # After kill -9
//!
//! A restart removes every temporary file, and every final file of a cycle the
//! checkpoint does not count (a crash between steps 1 and 2: its rows are written again,
//! the same rows). It then re-reads each unfinished segment from its start without
//! writing up to the committed offset (so books, kernels, row numbers and pending labels
//! are as they were) and writes from there: exactly the missing rows, once. The rows are
//! a pure function of the journal, so nothing depends on when the crash happened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hermes_ingest::capture::{CaptureReader, FILE_HEADER_LEN};
use hermes_persist::JournalFollower;

use crate::dataset::{sync_dir, Dataset, DatasetOptions};
use crate::export::dataset_files;
use crate::rows::{ExportOptions, Exporter};
use crate::ParquetError;

/// Settings of the live sink.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// What to export.
    pub export: ExportOptions,
    /// Where and how.
    pub dataset: DatasetOptions,
    /// Length of a cycle (file rotation), ns of receive time.
    pub rotate_ns: i64,
}

/// Counters of the live sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Rows in committed files.
    pub rows: AtomicU64,
    /// Files committed.
    pub files: AtomicU64,
    /// Bytes of committed files.
    pub bytes: AtomicU64,
    /// Cycles committed.
    pub cycles: AtomicU64,
    /// Journal records read (warm-up included).
    pub records: AtomicU64,
    /// Files of uncommitted cycles removed at start.
    pub removed_at_start: AtomicU64,
    /// Frames the decoder refused.
    pub decode_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SinkStats {
    /// The last error, if the sink stopped on one.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// One line for the end of a run.
    pub fn summary(&self) -> String {
        // Relaxed: statistics, read after the sink thread was joined or for display.
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} rows in {} files ({:.1} MB) over {} cycles; {} journal records read; {} decode errors; {} files of an unfinished cycle removed at start",
            g(&self.rows),
            g(&self.files),
            g(&self.bytes) as f64 / 1e6,
            g(&self.cycles),
            g(&self.records),
            g(&self.decode_errors),
            g(&self.removed_at_start),
        )
    }
}

/// Where the sink is in one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SegmentMark {
    offset: u64,
    cycles: u64,
    finished: bool,
}

/// The committed positions, per segment name.
#[derive(Debug, Default)]
struct Checkpoint {
    path: PathBuf,
    segments: BTreeMap<String, SegmentMark>,
}

impl Checkpoint {
    fn load(dir: &Path) -> Result<Checkpoint, ParquetError> {
        let path = dir.join("checkpoint.json");
        let mut c = Checkpoint {
            path: path.clone(),
            segments: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(c),
            Err(source) => {
                return Err(ParquetError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let bad = |why: &str| ParquetError::Checkpoint {
            path: path.display().to_string(),
            reason: why.to_string(),
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
        let segs = v
            .get("segments")
            .and_then(|s| s.as_object())
            .ok_or_else(|| bad("no \"segments\" object"))?;
        for (name, m) in segs {
            let field = |k: &str| {
                m.get(k)
                    .and_then(|x| x.as_u64())
                    .ok_or_else(|| bad(&format!("segment {name}: no number \"{k}\"")))
            };
            c.segments.insert(
                name.clone(),
                SegmentMark {
                    offset: field("offset")?,
                    cycles: field("cycles")?,
                    finished: m
                        .get("finished")
                        .and_then(|x| x.as_bool())
                        .ok_or_else(|| bad(&format!("segment {name}: no bool \"finished\"")))?,
                },
            );
        }
        Ok(c)
    }

    fn save(&self) -> Result<(), ParquetError> {
        let mut segs = serde_json::Map::new();
        for (name, m) in &self.segments {
            segs.insert(
                name.clone(),
                serde_json::json!({"offset": m.offset, "cycles": m.cycles, "finished": m.finished}),
            );
        }
        let text =
            serde_json::to_string_pretty(&serde_json::json!({"version": 1, "segments": segs}))
                .unwrap_or_default();
        let tmp = self.path.with_extension("json.tmp");
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| ParquetError::Io { path: p, source }
        };
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        if let Some(d) = self.path.parent() {
            sync_dir(d)?;
        }
        Ok(())
    }

    fn mark(&self, segment: &str) -> SegmentMark {
        self.segments.get(segment).copied().unwrap_or(SegmentMark {
            offset: FILE_HEADER_LEN as u64,
            cycles: 0,
            finished: false,
        })
    }
}

/// The file stem of a cycle: `s<segment number>-c<cycle>`.
fn cycle_stem(segment: u64, cycle: u64) -> String {
    format!("s{segment:08}-c{cycle:06}")
}

/// `(segment number, cycle)` of a sink file name.
fn parse_cycle(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("part-s")?;
    let seg = rest.get(..8)?.parse().ok()?;
    let rest = rest.get(8..)?.strip_prefix("-c")?;
    let cycle = rest.get(..6)?.parse().ok()?;
    Some((seg, cycle))
}

/// Holds `DIR/_hermes/lock` while a sink runs: a second sink on the same directory is
/// refused. A lock left by a process that no longer runs (kill -9) is taken over.
#[derive(Debug)]
struct DirLock(PathBuf);

impl DirLock {
    fn take(state: &Path) -> Result<DirLock, ParquetError> {
        let path = state.join("lock");
        if let Ok(pid) = std::fs::read_to_string(&path) {
            let pid = pid.trim();
            let ours = pid == std::process::id().to_string();
            if !ours && !pid.is_empty() && Path::new("/proc").join(pid).exists() {
                return Err(ParquetError::Locked {
                    dir: state.parent().unwrap_or(state).display().to_string(),
                    pid: pid.to_string(),
                });
            }
        }
        std::fs::write(&path, std::process::id().to_string()).map_err(|source| {
            ParquetError::Io {
                path: path.display().to_string(),
                source,
            }
        })?;
        Ok(DirLock(path))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running live sink.
#[derive(Debug)]
pub struct ParquetSink {
    thread: JoinHandle<Result<(), ParquetError>>,
    stats: Arc<SinkStats>,
    stop: Arc<AtomicBool>,
}

impl ParquetSink {
    /// The counters.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// Waits until the journal is done and everything in it is in committed files.
    /// Drop the journal's tap first, or this waits for it.
    pub fn finish(self) -> Result<Arc<SinkStats>, ParquetError> {
        let r = self
            .thread
            .join()
            .map_err(|_| ParquetError::Thread("the Parquet sink thread panicked".into()))?;
        r.map(|()| self.stats)
    }

    /// Stops at the next record without committing the open cycle (its rows are written
    /// again by the next start), then waits for the thread.
    pub fn abandon(self) -> Result<Arc<SinkStats>, ParquetError> {
        // Relaxed: a request to stop; the join below orders everything after it.
        self.stop.store(true, Ordering::Relaxed);
        self.finish()
    }
}

/// Starts the live sink over `journal`: recovers the directory (removes temporaries and
/// the files of an uncommitted cycle) and starts the sink thread.
pub fn start_sink(
    journal: JournalFollower,
    opts: SinkOptions,
) -> Result<ParquetSink, ParquetError> {
    if opts.rotate_ns <= 0 {
        return Err(ParquetError::Config(format!(
            "the rotation interval must be positive, got {} ns",
            opts.rotate_ns
        )));
    }
    let dir = opts.dataset.dir.clone();
    let state = dir.join("_hermes");
    std::fs::create_dir_all(&state).map_err(|source| ParquetError::Io {
        path: state.display().to_string(),
        source,
    })?;
    let lock = DirLock::take(&state)?;
    // A dataset follows one journal: its files are named by that journal's segment
    // numbers, which another journal reuses.
    let source = state.join("journal");
    let journal_dir = std::fs::canonicalize(journal.dir())
        .unwrap_or_else(|_| journal.dir().to_path_buf())
        .display()
        .to_string();
    match std::fs::read_to_string(&source) {
        Ok(s) if s.trim() != journal_dir => {
            return Err(ParquetError::Config(format!(
                "Parquet directory {} is written from the journal {} (its _hermes/journal), not {journal_dir}: use that --journal, or another --parquet directory",
                dir.display(),
                s.trim()
            )))
        }
        Ok(_) => {}
        Err(_) => std::fs::write(&source, format!("{journal_dir}\n")).map_err(|e| {
            ParquetError::Io {
                path: source.display().to_string(),
                source: e,
            }
        })?,
    }
    let ckpt = Checkpoint::load(&state)?;
    let stats = Arc::new(SinkStats::default());
    // Recovery: a temporary is an unfinished file; a final file of a cycle past the
    // checkpoint was renamed by a run that died before recording it.
    let committed: BTreeMap<u64, u64> = journal
        .segments()
        .iter()
        .map(|s| (s.number, ckpt.mark(&s.name).cycles))
        .collect();
    for p in dataset_files(&dir) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stale = if name.starts_with('.') && name.ends_with(".tmp") {
            true
        } else if let Some((seg, cycle)) = parse_cycle(&name) {
            committed.get(&seg).is_some_and(|&c| cycle >= c)
        } else {
            false
        };
        if stale {
            std::fs::remove_file(&p).map_err(|source| ParquetError::Io {
                path: p.display().to_string(),
                source,
            })?;
            Counter::add(&stats.removed_at_start, 1);
        }
    }
    let removed = stats.removed_at_start.load(Ordering::Relaxed);
    if removed > 0 {
        tracing::warn!(
            dir = %dir.display(),
            "Parquet sink: removed {removed} file(s) of a cycle the last run did not finish; their rows are written again"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Retention deletes no segment this sink has not finished.
    let mark = journal.register_reader();
    let reader = SinkReader {
        journal,
        mark,
        opts,
        ckpt,
        stats: stats.clone(),
        stop: stop.clone(),
        _lock: lock,
    };
    let thread = std::thread::Builder::new()
        .name("hermes-parquet".into())
        .spawn(move || {
            let stats = reader.stats.clone();
            let r = reader.run();
            if let Err(e) = &r {
                tracing::error!("Parquet sink stopped: {e}");
                if let Ok(mut l) = stats.last_error.lock() {
                    *l = Some(e.to_string());
                }
            }
            r
        })
        .map_err(|e| ParquetError::Thread(e.to_string()))?;
    Ok(ParquetSink {
        thread,
        stats,
        stop,
    })
}

/// Relaxed counter updates (statistics).
struct Counter;

impl Counter {
    fn add(a: &AtomicU64, n: u64) {
        // Relaxed: a statistic, read for display and after the thread is joined.
        a.fetch_add(n, Ordering::Relaxed);
    }
}

struct SinkReader {
    journal: JournalFollower,
    mark: hermes_persist::ReaderMark,
    opts: SinkOptions,
    ckpt: Checkpoint,
    stats: Arc<SinkStats>,
    stop: Arc<AtomicBool>,
    _lock: DirLock,
}

impl SinkReader {
    fn run(mut self) -> Result<(), ParquetError> {
        let mut after = None;
        loop {
            let Some(seg) = self.journal.next_segment(after) else {
                if self.journal.is_done() {
                    return Ok(());
                }
                // Not published yet (a rotation under way).
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            if !self.ckpt.mark(&seg.name).finished && !self.segment(&seg)? {
                return Ok(());
            }
            self.mark.finished_through(seg.number);
            after = Some(seg.number);
        }
    }

    /// Commits the open cycle of `segment` at journal offset `offset`.
    fn commit(
        &mut self,
        ds: &mut Dataset,
        segment: &hermes_persist::JournalSegment,
        offset: u64,
        finished: bool,
    ) -> Result<(), ParquetError> {
        let files = ds.commit()?;
        let mut m = self.ckpt.mark(&segment.name);
        m.offset = offset;
        m.cycles += 1;
        m.finished = finished;
        self.ckpt.segments.insert(segment.name.clone(), m);
        self.ckpt.save()?;
        let st = &self.stats;
        Counter::add(&st.cycles, 1);
        Counter::add(&st.files, files.len() as u64);
        Counter::add(&st.rows, files.iter().map(|f| f.rows).sum());
        Counter::add(&st.bytes, files.iter().map(|f| f.bytes).sum());
        ds.set_stem(&cycle_stem(segment.number, m.cycles));
        Ok(())
    }

    /// Reads segment `k` to its end. `false` when stopped.
    fn segment(&mut self, seg: &hermes_persist::JournalSegment) -> Result<bool, ParquetError> {
        let mark = self.ckpt.mark(&seg.name);
        let mut reader = CaptureReader::open(&seg.path)?;
        if mark.offset > FILE_HEADER_LEN as u64 {
            tracing::info!(
                journal = %seg.name,
                "Parquet sink resuming at byte {} (cycle {}); re-reading the segment up to there to rebuild the books",
                mark.offset,
                mark.cycles
            );
        }
        let mut ds = Dataset::new(
            self.opts.dataset.clone(),
            &cycle_stem(seg.number, mark.cycles),
        );
        let mut ex = Exporter::new(self.opts.export.clone(), &seg.name);
        let rotate = self.opts.rotate_ns;
        let mut bucket: Option<i64> = None;
        let mut since_flush = 0u32;
        let mut idle = 0u32;
        let mut readable = self.journal.readable(seg);
        reader.set_end(readable.end);
        loop {
            // Relaxed: a stop request; promptness, not ordering, matters.
            if self.stop.load(Ordering::Relaxed) {
                ds.abort();
                return Ok(false);
            }
            let offset = reader.offset();
            let rec = match reader.next_record()? {
                Some(r) => r,
                None => {
                    // Read to the end known so far: ask how far it is now (once per
                    // exhausted end, not per record). Finished only when the end just
                    // read to is the final one, from the same snapshot.
                    let now = self.journal.readable(seg);
                    if now.end > readable.end {
                        readable = now;
                        reader.set_end(readable.end);
                        continue;
                    }
                    if now.sealed {
                        if let Some(t) = reader.torn() {
                            tracing::warn!(journal = %seg.name, "journal segment ends at a bad record at byte {} ({})", t.offset, t.reason);
                        }
                        // Everything this segment will ever hold: pending labels end null.
                        ex.finish(true, &mut ds);
                        self.commit(&mut ds, seg, reader.offset(), true)?;
                        return Ok(true);
                    }
                    // Quiet journal: end the cycle once its interval is over.
                    if let Some(b) = bucket {
                        let now = hermes_book::clock::unix_ns();
                        if ds.open_rows() > 0
                            && now >= (b + 1).saturating_mul(rotate) + 1_000_000_000
                        {
                            self.commit(&mut ds, seg, offset, false)?;
                        }
                    }
                    idle = (idle + 1).min(20);
                    std::thread::sleep(Duration::from_micros(100 << (idle / 4)));
                    continue;
                }
            };
            idle = 0;
            Counter::add(&self.stats.records, 1);
            let emit = offset >= mark.offset;
            if emit {
                let b = rec.recv_ts_ns.div_euclid(rotate);
                if bucket.is_some_and(|c| c != b) && ds.open_rows() > 0 {
                    self.commit(&mut ds, seg, offset, false)?;
                }
                bucket = Some(b);
            }
            let frame = rec.frame();
            let errors = ex.decode_errors();
            ex.frame(&frame, emit, &mut ds);
            Counter::add(&self.stats.decode_errors, ex.decode_errors() - errors);
            since_flush += 1;
            if since_flush >= 1024 {
                since_flush = 0;
                ds.flush()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_names_round_trip() {
        let stem = cycle_stem(3, 17);
        assert_eq!(parse_cycle(&format!("part-{stem}.parquet")), Some((3, 17)));
        assert_eq!(
            parse_cycle(&format!("part-{stem}-p2s8.parquet")),
            Some((3, 17))
        );
        assert_eq!(parse_cycle("part-foo.parquet"), None);
    }
}
