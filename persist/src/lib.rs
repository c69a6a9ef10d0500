//! # hermes-persist
//!
//! The persister of Hermes: every raw frame the engine receives goes to a journal (a
//! native capture file), and from the journal into PostgreSQL in binary `COPY` batches,
//! exactly once through crashes and database outages.
//!
//! ```text
//! ingest thread ──PersistTap──► byte ring ──► journal thread ──► journal segment (capture file)
//!                                                                   │ (read back)
//!                                  PostgreSQL ◄── COPY batches ◄── database thread
//! ```
//!
//! * [`PersistTap`] is the ingest side: a [`hermes_ingest::FrameTap`] that copies each frame
//!   into the persister's own SPSC byte ring (no allocation, no I/O; waits, never drops,
//!   when the ring is full).
//! * The journal thread appends every frame to the journal: a directory of segments, one
//!   per persister start, each a native capture file (`ingest/CAPTURE.md`).
//! * The database thread reads the journal behind it, turns records into rows
//!   ([`rows::Projector`]: `raw_events`, `trades`, `book_snapshots`, `top_of_book`,
//!   `funding`, `liquidations`) and writes them in batches flushed on size or age, each
//!   batch committing the journal offset it reached in `ingest_offsets` in the same
//!   transaction ([`schema`] has the tables). The database is a projection of the journal: a restart resumes at the
//!   committed offset, and every insert is idempotent on its unique key.
//! * [`PersistStats`] has the counters: rows per table, batches, COPY latency, lag in
//!   bytes and time, retries, readiness, the last error.
//! * [`BatchWriter`] writes one [`rows::Batch`] and the caller's offsets in one transaction:
//!   the database thread and `hermes persist --nats` (`hermes_nats::persist`) share it.
//! * [`copy`] is the binary COPY encoder ([`copy::CopyBuffer`], [`copy::copy_batch`]);
//!   [`local_pg`] starts a private PostgreSQL cluster (for `hermes demo` and every test).
//!
//! ```no_run
//! use hermes_persist::{start, PersistOptions};
//! use hermes_ingest::{Frame, FrameKind, FrameTap, Venue};
//! let opts = PersistOptions::new("host=/tmp/pg port=5432 user=postgres dbname=hermes", "/tmp/journal");
//! let (mut tap, persister) = start(opts)?;
//! tap.frame(&Frame { venue: Venue::Binance, kind: FrameKind::Ws, conn: 0, recv_ts_ns: 1, data: br#"{"stream":"x@trade","data":{}}"# });
//! drop(tap); // no more frames: the persister writes what is left and stops
//! let report = persister.finish()?;
//! println!("{}", report.stats.summary());
//! # Ok::<(), hermes_persist::PersistError>(())
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hermes_ingest::capture::{CaptureError, CaptureWriter, Damage, TornTail};

pub mod copy;
pub mod local_pg;
pub mod rows;
pub mod schema;
mod stats;
mod tap;
#[doc(hidden)]
pub mod testing;
mod writer;

pub use rows::ProjectionOptions;
pub use stats::{PersistStats, TABLES};
pub use tap::PersistTap;
pub use writer::{is_permanent, BatchError, BatchWriter};

/// Persister errors. Messages say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The journal (a capture file).
    #[error("journal: {0}")]
    Capture(#[from] CaptureError),
    /// PostgreSQL.
    #[error("PostgreSQL: {}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// A database URL the driver does not understand.
    #[error("bad database URL: {0} (use postgresql://user@host:port/db or \"host=... port=... dbname=...\")")]
    Url(String),
    /// A migration failed.
    #[error("schema migration {version} failed: {}", pg_message(.source))]
    Migration {
        /// Its version.
        version: i32,
        /// Cause.
        source: postgres::Error,
    },
    /// PostgreSQL refused a row: the persister stopped writing there.
    #[error("{0}")]
    BadRow(Box<BadRow>),
    /// The database stayed unreachable past the drain timeout at shutdown.
    #[error("{lag_bytes} journal bytes are not in PostgreSQL yet (it stayed unreachable); they are safe in the journal and the next start writes them")]
    Unfinished {
        /// Bytes of journal not written.
        lag_bytes: u64,
    },
    /// Internal: a batch was attempted without a connection.
    #[error("not connected to PostgreSQL")]
    NotConnected,
    /// Another persister holds the journal directory.
    #[error("journal directory {dir} is in use by another persister (lock file {dir}/lock); stop it or use another --journal directory")]
    Locked {
        /// The directory.
        dir: String,
    },
    /// A persister thread panicked or could not start.
    #[error("persister thread: {0}")]
    Thread(String),
    /// Frames reached the persister but could not be journaled (the journal's disk was
    /// full or failing): they were published to shm, but are not in the database.
    #[error("{frames} frames were NOT kept: the journal {dir} could not be written ({by_venue}); they were published to shm but are not in the journal or the database. Free space on that disk or use another --journal")]
    NotKept {
        /// The journal directory.
        dir: String,
        /// Frames not journaled.
        frames: u64,
        /// Per venue, as text.
        by_venue: String,
    },
    /// The journal holds frames of another database, or the database could not say who
    /// it is.
    #[error("{0}")]
    Identity(String),
    /// Another writer changed what this one was about to commit (its offsets moved
    /// meanwhile): nothing was committed.
    #[error("{0}")]
    Conflict(String),
}

fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} (SQLSTATE {})", d.message(), d.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(c) = src {
                s.push_str(": ");
                s.push_str(&c.to_string());
                src = c.source();
            }
            s
        }
    }
}

/// A row PostgreSQL refused, with the journal record it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// Journal segment.
    pub journal: String,
    /// Byte offset of the record in the segment.
    pub offset: u64,
    /// The table.
    pub table: &'static str,
    /// The record: venue, connection, receive time and the frame text.
    pub record: String,
    /// The database's message.
    pub error: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PostgreSQL refused a {} row from journal segment {} at byte {}: {}; the record: {}. \
             Rows before this record are committed; nothing at or after it is written (it is never skipped). \
             Fix the cause (schema or data) and restart: writing resumes at this record.",
            self.table, self.journal, self.offset, self.error, self.record
        )
    }
}

/// Persister settings.
#[derive(Clone, Debug)]
pub struct PersistOptions {
    /// libpq-style connection string or URL.
    pub database_url: String,
    /// Directory of journal segments.
    pub journal_dir: PathBuf,
    /// Identity of the input (see [`stream_id_for_file`]); `None` = a new stream per
    /// start (live ingest). `raw_events` rows are unique on (stream, record index), so
    /// replaying the same file again adds no `raw_events` rows twice.
    pub stream: Option<String>,
    /// Flush a batch at this many rows (all tables together).
    pub batch_rows: usize,
    /// Flush a batch this long after its first row at the latest.
    pub batch_age: Duration,
    /// Capacity of the byte ring between the tap and the journal thread.
    pub ring_bytes: usize,
    /// First retry delay after a database failure (doubles up to `retry_max`, jittered).
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// After the tap is dropped, how long to keep trying to reach the database.
    pub drain_timeout: Duration,
    /// Row sampling.
    pub projection: ProjectionOptions,
    /// Journal segments and their retention.
    pub segments: SegmentOptions,
}

/// How journal segments rotate and how long committed ones are kept.
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    /// A live stream's segment is sealed and a new one begun past this many bytes...
    pub rotate_bytes: u64,
    /// ...or this long after it began. (A replayed file is one segment.)
    pub rotate_age: Duration,
    /// A sealed segment that every reader of the run has finished with (committed to
    /// PostgreSQL, written to Parquet) is deleted this long after its last write; zero
    /// deletes it as soon as it is committed.
    pub retention: Duration,
    /// Readers of the journal besides the database thread that will register (the
    /// Parquet sink): retention deletes nothing until all of them have.
    pub other_readers: usize,
}

impl Default for SegmentOptions {
    /// 256 MiB or 10 minutes a segment; committed segments kept 1 hour.
    fn default() -> Self {
        SegmentOptions {
            rotate_bytes: 256 << 20,
            rotate_age: Duration::from_secs(600),
            retention: Duration::from_secs(3600),
            other_readers: 0,
        }
    }
}

impl PersistOptions {
    /// Defaults: 10,000 rows / 100 ms batches, 64 MiB ring, retries 100 ms → 5 s, 30 s
    /// drain timeout, snapshots every second (10 levels), top of book every 100 ms.
    pub fn new(database_url: impl Into<String>, journal_dir: impl Into<PathBuf>) -> Self {
        PersistOptions {
            database_url: database_url.into(),
            journal_dir: journal_dir.into(),
            stream: None,
            batch_rows: 10_000,
            batch_age: Duration::from_millis(100),
            ring_bytes: 64 << 20,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            projection: ProjectionOptions::default(),
            segments: SegmentOptions::default(),
        }
    }
}

/// What happened at start: torn journal tails that were cut, damaged regions skipped.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// (segment, where it was cut).
    pub torn: Vec<(String, TornTail)>,
    /// (segment, region): damaged regions in the middle of the newest segment, skipped
    /// by every reader (the records after each are written).
    pub damage: Vec<(String, Damage)>,
    /// Where damaged bytes and a corrupt tail were copied (`<segment>.<offset>.corrupt`).
    pub kept_aside: Vec<PathBuf>,
    /// The segment this run appends to.
    pub segment: PathBuf,
}

/// A running persister: its journal and database threads.
#[derive(Debug)]
pub struct Persister {
    journal: JoinHandle<Result<(), PersistError>>,
    db: JoinHandle<Result<(), PersistError>>,
    stats: Arc<PersistStats>,
    recovery: Recovery,
    follower: JournalFollower,
    retention: Duration,
    dir: PathBuf,
    _lock: File,
}

/// What a finished persister reports.
#[derive(Debug)]
pub struct PersistReport {
    /// Final counters.
    pub stats: Arc<PersistStats>,
    /// Torn tails cut at start, and the segment written.
    pub recovery: Recovery,
}

impl Persister {
    /// The live counters.
    pub fn stats(&self) -> Arc<PersistStats> {
        self.stats.clone()
    }

    /// What start-up recovered.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// A handle for another reader of the journal (the Parquet sink).
    pub fn follower(&self) -> JournalFollower {
        self.follower.clone()
    }

    /// Waits until the tap is dropped, everything journaled is in PostgreSQL (or the
    /// drain timeout passed with the database unreachable), and both threads ended.
    /// Drop the [`PersistTap`] first, or this waits for it. An error when frames could
    /// not be journaled ([`PersistError::NotKept`]), after everything journaled is written.
    pub fn finish(self) -> Result<PersistReport, PersistError> {
        let j = self
            .journal
            .join()
            .map_err(|_| PersistError::Thread("the journal thread panicked".into()))?;
        let d = self
            .db
            .join()
            .map_err(|_| PersistError::Thread("the database thread panicked".into()))?;
        j?;
        d?;
        // The database thread committed what it could: retention may delete now.
        tap::prune(&self.follower.shared, &self.stats, self.retention, None);
        if let Some(e) = not_kept_error(&self.dir, &self.stats) {
            return Err(e);
        }
        Ok(PersistReport {
            stats: self.stats,
            recovery: self.recovery,
        })
    }
}

pub(crate) use hermes_book::clock::unix_ns;

/// A stable identity for an input file, from its contents: its length and SHA-256 (a
/// native capture's header, which holds its creation time, is left out). The same
/// recording replayed again, even regenerated byte for byte, is the same stream, and its
/// `raw_events` rows are recognised as already present; a different file cannot be made
/// to look like it (the hash is cryptographic, so the identity cannot be forged by
/// crafting a file). `None` for an input that is not a regular file (a FIFO can be read
/// only once: its frames become a new stream, as live ingest's are).
pub fn stream_id_for_file(path: &Path) -> Result<Option<String>, PersistError> {
    use sha2::Digest;
    use std::io::Read;
    let io = |source| PersistError::Io {
        path: path.display().to_string(),
        source,
    };
    // A stat, not an open: opening a FIFO would block for a writer and eat its data.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Ok(None);
    }
    let mut f = File::open(path).map_err(io)?;
    let skip = if hermes_ingest::capture::is_capture(path) {
        hermes_ingest::capture::FILE_HEADER_LEN
    } else {
        0
    };
    let mut h = sha2::Sha256::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut first = true;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if first {
            chunk = &chunk[skip.min(chunk.len())..];
            first = false;
        }
        len += chunk.len() as u64;
        h.update(chunk);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(format!("file-{len:x}-{hex}")))
}

fn lock_dir(dir: &Path) -> Result<File, PersistError> {
    use std::os::fd::AsRawFd;
    let p = dir.join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|source| PersistError::Io {
            path: p.display().to_string(),
            source,
        })?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(PersistError::Locked {
            dir: dir.display().to_string(),
        });
    }
    Ok(f)
}

/// Lists journal segments (`NNNNNNNN.<stream>.hcap`) in order: (number, stream, path).
fn list_segments(dir: &Path) -> Result<Vec<(u64, String, PathBuf)>, PersistError> {
    let rd = std::fs::read_dir(dir).map_err(|source| PersistError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".hcap") else {
            continue;
        };
        let Some((num, stream)) = stem.split_once('.') else {
            continue;
        };
        if num.len() == 8 && num.bytes().all(|b| b.is_ascii_digit()) && !stream.is_empty() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            if len < hermes_ingest::capture::FILE_HEADER_LEN as u64 {
                // Created but never given its header (a crash or a full disk at that
                // moment): it holds no record.
                tracing::warn!(
                    "journal: removing {} ({len} bytes, no header: it holds no record)",
                    e.path().display()
                );
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            if let Ok(n) = num.parse() {
                out.push((n, stream.to_string(), e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What [`open_journal`] set up: the journal thread's inputs and the segment list.
struct OpenedJournal {
    lock: File,
    stats: Arc<PersistStats>,
    torn: Vec<(String, TornTail)>,
    damage: Vec<(String, Damage)>,
    kept_aside: Vec<PathBuf>,
    path: PathBuf,
    writer: CaptureWriter,
    number: u64,
    rotation: tap::Rotation,
    shared: Arc<tap::JournalShared>,
}

/// Locks and recovers the journal directory (cuts a torn tail left by a crash) and
/// creates this start's segment.
fn open_journal(
    dir: &Path,
    stream: Option<&str>,
    seg: &SegmentOptions,
    with_db: bool,
) -> Result<OpenedJournal, PersistError> {
    std::fs::create_dir_all(dir).map_err(|source| PersistError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let lock = lock_dir(dir)?;
    let stats = Arc::new(PersistStats::default());
    let existing = list_segments(dir)?;
    let mut torn = Vec::new();
    let mut damage = Vec::new();
    let mut kept_aside = Vec::new();
    if let Some((_, _, last)) = existing.last() {
        // Only the newest segment can have been cut short by a crash: every older one
        // was closed by the start that created its successor.
        let (_, found) = CaptureWriter::open_append(last)?;
        let name = last
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for d in &found.damage {
            tracing::warn!(
                journal = %name,
                "journal segment has a damaged region at bytes {}..{} ({} bytes; {}): skipped, everything after it is kept and written; the bytes are kept aside",
                d.offset,
                d.offset + d.len,
                d.len,
                d.reason
            );
            damage.push((name.clone(), d.clone()));
        }
        kept_aside.extend(found.kept_aside);
        if let Some(t) = found.torn {
            tracing::warn!(
                journal = %name,
                "journal segment had a torn tail at byte {} ({}; {} trailing bytes): cut there; everything before it is kept",
                t.offset,
                t.reason,
                t.trailing_bytes
            );
            PersistStats::add(&stats.torn_tails, 1);
            torn.push((name, t));
        }
    }
    let seq = existing.last().map_or(1, |(n, _, _)| n + 1);
    let rotate = stream.is_none();
    let stream = match stream {
        Some(s) => s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        None => format!("run-{seq}-{}", unix_ns() / 1_000_000),
    };
    let name = format!("{seq:08}.{stream}.hcap");
    let path = dir.join(&name);
    let writer = CaptureWriter::create(&path)?;
    let mut segments: Vec<JournalSegment> = existing
        .into_iter()
        .map(|(number, s, p)| JournalSegment {
            number,
            name: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: p,
            stream: s,
            foreign: false,
        })
        .collect();
    segments.push(JournalSegment {
        number: seq,
        name,
        path: path.clone(),
        stream,
        foreign: false,
    });
    let shared = Arc::new(tap::JournalShared {
        end: std::sync::atomic::AtomicU64::new(tap::pack(
            seq,
            hermes_ingest::capture::FILE_HEADER_LEN as u64,
        )),
        segments: std::sync::Mutex::new(segments),
        expected_readers: std::sync::atomic::AtomicUsize::new(
            seg.other_readers + usize::from(with_db),
        ),
        dir: dir.to_path_buf(),
        ..Default::default()
    });
    Ok(OpenedJournal {
        lock,
        stats,
        torn,
        damage,
        kept_aside,
        path,
        writer,
        number: seq,
        rotation: tap::Rotation {
            dir: dir.to_path_buf(),
            rotate,
            max_bytes: seg.rotate_bytes.max(1 << 16),
            max_age: seg.rotate_age.max(Duration::from_secs(1)),
            retention: seg.retention,
        },
        shared,
    })
}

fn spawn_journal_thread(
    ring_bytes: usize,
    j: &mut Option<(CaptureWriter, u64, tap::Rotation)>,
    shared: &Arc<tap::JournalShared>,
    stats: &Arc<PersistStats>,
) -> Result<(PersistTap, JoinHandle<Result<(), PersistError>>), PersistError> {
    let (tx, rx) = rtrb::RingBuffer::<u8>::new(ring_bytes.max(4096));
    let (writer, number, rotation) = j
        .take()
        .ok_or_else(|| PersistError::Thread("journal writer taken twice".into()))?;
    let journal = {
        let (shared, stats) = (shared.clone(), stats.clone());
        std::thread::Builder::new()
            .name("hermes-journal".into())
            .spawn(move || tap::journal_thread(rx, writer, number, rotation, shared, stats))
            .map_err(|e| PersistError::Thread(e.to_string()))?
    };
    Ok((PersistTap::new(tx, stats.clone()), journal))
}

/// The error a run ends with when frames could not be journaled.
fn not_kept_error(dir: &Path, stats: &PersistStats) -> Option<PersistError> {
    let n = stats.not_kept();
    (n > 0).then(|| PersistError::NotKept {
        dir: dir.display().to_string(),
        frames: n,
        by_venue: stats.not_kept_by_venue(),
    })
}

/// Starts a persister: recovers the journal directory (cuts a torn tail left by a
/// crash), opens a new segment, and starts the journal and database threads. The
/// database may be down: frames are journaled and written once it is reachable.
pub fn start(opts: PersistOptions) -> Result<(PersistTap, Persister), PersistError> {
    let j = open_journal(
        &opts.journal_dir,
        opts.stream.as_deref(),
        &opts.segments,
        true,
    )?;
    let mut w = Some((j.writer, j.number, j.rotation.clone()));
    let follower = JournalFollower {
        shared: j.shared.clone(),
    };
    // The database thread is a reader retention waits for: registered before the
    // journal thread can prune anything.
    let mark = follower.register_reader();
    let (tap, journal) = spawn_journal_thread(opts.ring_bytes, &mut w, &j.shared, &j.stats)?;
    let retention = j.rotation.retention;
    let dir = opts.journal_dir.clone();
    let db = {
        let w = writer::DbWriter::new(opts, j.number, j.shared.clone(), mark, j.stats.clone());
        std::thread::Builder::new()
            .name("hermes-persist-db".into())
            .spawn(move || w.run())
            .map_err(|e| PersistError::Thread(e.to_string()))?
    };
    Ok((
        tap,
        Persister {
            journal,
            db,
            stats: j.stats,
            recovery: Recovery {
                torn: j.torn,
                damage: j.damage,
                kept_aside: j.kept_aside,
                segment: j.path,
            },
            follower,
            retention,
            dir,
            _lock: j.lock,
        },
    ))
}

/// Settings of a journal without a database ([`start_journal`]).
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Directory of journal segments.
    pub journal_dir: PathBuf,
    /// Identity of the input, as [`PersistOptions::stream`].
    pub stream: Option<String>,
    /// Capacity of the byte ring between the tap and the journal thread.
    pub ring_bytes: usize,
    /// Journal segments and their retention.
    pub segments: SegmentOptions,
}

impl JournalOptions {
    /// Defaults: a new stream per start, a 64 MiB ring, [`SegmentOptions::default`].
    pub fn new(journal_dir: impl Into<PathBuf>) -> JournalOptions {
        JournalOptions {
            journal_dir: journal_dir.into(),
            stream: None,
            ring_bytes: 64 << 20,
            segments: SegmentOptions::default(),
        }
    }
}

/// Starts the journal alone, for readers other than PostgreSQL (the Parquet sink): the
/// same recovery, segment and tap as [`start`], without the database thread.
pub fn start_journal(opts: JournalOptions) -> Result<(PersistTap, Journal), PersistError> {
    let j = open_journal(
        &opts.journal_dir,
        opts.stream.as_deref(),
        &opts.segments,
        false,
    )?;
    let mut w = Some((j.writer, j.number, j.rotation.clone()));
    let (tap, journal) = spawn_journal_thread(opts.ring_bytes, &mut w, &j.shared, &j.stats)?;
    let follower = JournalFollower {
        shared: j.shared.clone(),
    };
    let retention = j.rotation.retention;
    Ok((
        tap,
        Journal {
            journal,
            stats: j.stats,
            recovery: Recovery {
                torn: j.torn,
                damage: j.damage,
                kept_aside: j.kept_aside,
                segment: j.path,
            },
            follower,
            retention,
            dir: opts.journal_dir.clone(),
            _lock: j.lock,
        },
    ))
}

/// A running journal without a database ([`start_journal`]).
#[derive(Debug)]
pub struct Journal {
    journal: JoinHandle<Result<(), PersistError>>,
    stats: Arc<PersistStats>,
    recovery: Recovery,
    follower: JournalFollower,
    retention: Duration,
    dir: PathBuf,
    _lock: File,
}

impl Journal {
    /// The journal's counters (frames in, bytes, ring waits).
    pub fn stats(&self) -> Arc<PersistStats> {
        self.stats.clone()
    }

    /// What start-up recovered.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// A handle for another reader of the journal.
    pub fn follower(&self) -> JournalFollower {
        self.follower.clone()
    }

    /// Waits until the tap is dropped and everything it took is in the journal. Drop the
    /// [`PersistTap`] first, or this waits for it. Call it after the journal's readers
    /// finished (the Parquet sink): retention then deletes what they are done with. An
    /// error when frames could not be journaled ([`PersistError::NotKept`]).
    pub fn finish(self) -> Result<Recovery, PersistError> {
        self.journal
            .join()
            .map_err(|_| PersistError::Thread("the journal thread panicked".into()))??;
        tap::prune(&self.follower.shared, &self.stats, self.retention, None);
        if let Some(e) = not_kept_error(&self.dir, &self.stats) {
            return Err(e);
        }
        Ok(self.recovery)
    }
}

/// One journal segment as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSegment {
    /// Its number (segments are read in this order).
    pub number: u64,
    /// File name, `NNNNNNNN.<stream>.hcap`.
    pub name: String,
    /// Path.
    pub path: PathBuf,
    /// Stream id.
    pub stream: String,
    /// Another database's segment, moved aside (`other-databases/`): the database
    /// thread does not write it, retention does not delete it.
    pub foreign: bool,
}

/// How far a segment may be read now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readable {
    /// Records up to this offset are whole and in the file.
    pub end: u64,
    /// No more records will come: an older segment, or the last one once the journal
    /// ended.
    pub sealed: bool,
}

/// A reader's view of a running journal: its segments (new ones appear as live segments
/// rotate), and how far each may be read. Each reader (the database thread, the Parquet
/// sink, …) keeps its own committed position and reads behind the journal thread.
#[derive(Clone, Debug)]
pub struct JournalFollower {
    shared: Arc<tap::JournalShared>,
}

/// A reader's mark for retention ([`JournalFollower::register_reader`]).
#[derive(Clone, Debug)]
pub struct ReaderMark(Arc<std::sync::atomic::AtomicU64>);

impl ReaderMark {
    /// Says the reader finished (committed) every segment up to number `n`.
    pub fn finished_through(&self, n: u64) {
        // Release: pairs with the journal thread's Acquire load before it deletes; the
        // reader's commit happened before.
        self.0.fetch_max(n, std::sync::atomic::Ordering::Release);
    }
}

impl JournalFollower {
    /// The segments now, oldest first; the last one is the one being written.
    pub fn segments(&self) -> Vec<JournalSegment> {
        self.shared.segments()
    }

    /// The first segment numbered above `after` (`None`: the first of all), if any yet.
    pub fn next_segment(&self, after: Option<u64>) -> Option<JournalSegment> {
        let segs = self.shared.segments.lock().ok()?;
        segs.iter()
            .find(|s| after.is_none_or(|a| s.number > a))
            .cloned()
    }

    /// How far segment `seg` may be read now.
    pub fn readable(&self, seg: &JournalSegment) -> Readable {
        // Acquire: pairs with the journal thread's Release stores of `done` (after its
        // last store of `end`) and of `end` (after its flush, or after a rotation).
        let done = self.shared.done.load(std::sync::atomic::Ordering::Acquire);
        let (number, offset) =
            tap::unpack(self.shared.end.load(std::sync::atomic::Ordering::Acquire));
        if seg.number == number {
            return Readable {
                end: offset,
                sealed: done,
            };
        }
        // Sealed: its length is final. Looked up by number, since the database thread
        // may have moved it aside (another database's) since the reader opened it.
        let path = self
            .shared
            .segments
            .lock()
            .ok()
            .and_then(|s| {
                s.iter()
                    .find(|x| x.number == seg.number)
                    .map(|x| x.path.clone())
            })
            .unwrap_or_else(|| seg.path.clone());
        match std::fs::metadata(&path) {
            Ok(m) => Readable {
                end: m.len(),
                sealed: true,
            },
            // Never "finished at 0" for a file that cannot be seen: wait instead.
            Err(_) => Readable {
                end: 0,
                sealed: false,
            },
        }
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// `true` once the tap was dropped and the journal thread wrote everything.
    pub fn is_done(&self) -> bool {
        // Acquire: pairs with the journal thread's Release store of `done`.
        self.shared.done.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Registers a reader that retention must wait for: a segment is deleted only once
    /// every registered reader said it [`finished_through`](ReaderMark::finished_through)
    /// it. Register before reading.
    pub fn register_reader(&self) -> ReaderMark {
        let m = ReaderMark(Arc::new(std::sync::atomic::AtomicU64::new(0)));
        if let Ok(mut r) = self.shared.readers.lock() {
            r.push(m.0.clone());
        }
        m
    }
}

/// Tries the database once: an error when it can never work (the database does not
/// exist, the credentials are refused, the URL is malformed); `Ok(Some(reason))` when it
/// is unreachable now (the persister journals and retries); `Ok(None)` when it answers.
pub fn check_database(database_url: &str) -> Result<Option<String>, PersistError> {
    let mut cfg: postgres::Config = database_url
        .parse()
        .map_err(|e| PersistError::Url(format!("{e}")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    match cfg.connect(postgres::NoTls) {
        Ok(_) => Ok(None),
        Err(e) => {
            let e = PersistError::Postgres(e);
            if writer::is_permanent(&e) {
                Err(e)
            } else {
                Ok(Some(e.to_string()))
            }
        }
    }
}

/// Connects and applies the migrations (what `hermes db migrate` runs); returns the
/// versions applied now (empty when the schema was current).
pub fn migrate(database_url: &str) -> Result<Vec<i32>, PersistError> {
    let mut cfg: postgres::Config = database_url
        .parse()
        .map_err(|e| PersistError::Url(format!("{e}")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    let mut c = cfg.connect(postgres::NoTls)?;
    let (partitioning, applied) = schema::migrate(&mut c)?;
    if partitioning == schema::Partitioning::Native {
        let today = schema::day_of_ns(unix_ns());
        schema::ensure_partitions(&mut c, today)?;
        schema::ensure_partitions(&mut c, today + 1)?;
    }
    Ok(applied)
}

/// Rows per table (`SELECT count(*)`), in [`TABLES`] order then `ingest_offsets`: for
/// summaries and checks.
pub fn row_counts(database_url: &str) -> Result<Vec<(&'static str, i64)>, PersistError> {
    let mut cfg: postgres::Config = database_url
        .parse()
        .map_err(|e| PersistError::Url(format!("{e}")))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    let mut c = cfg.connect(postgres::NoTls)?;
    let mut out = Vec::new();
    for t in TABLES.iter().chain(&["ingest_offsets"]) {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])?
            .get(0);
        out.push((*t, n));
    }
    Ok(out)
}
