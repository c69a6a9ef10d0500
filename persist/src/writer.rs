//! The database thread: reads the journal behind the journal thread, projects records
//! into rows, and writes them in batches, each batch with the journal offset it reached
//! in the same transaction.
//!
//! A batch is: binary `COPY` of each table's rows into a temporary staging table, then
//! `INSERT INTO t SELECT * FROM staging ON CONFLICT DO NOTHING`, then the upsert of the
//! segment's row in `ingest_offsets`, then `COMMIT`. After a crash the thread resumes
//! from the committed offset (re-projecting the segment from its start to there without
//! writing, so its books are as they were); rows of a batch whose commit was lost are
//! written again and skipped by their unique keys. Nothing is lost, nothing is doubled.
//!
//! Failures:
//! * connection loss, server shutdown, resource errors: the batch is kept and retried
//!   with jittered exponential back-off (capped); the journal keeps growing meanwhile
//!   and lag is exported; once the server is back the thread catches up.
//! * a row the schema refuses (SQLSTATE classes 22, 23, 54): the batch is bisected with
//!   rolled-back trial COPYs to find the first offending row; the rows before its record
//!   are committed, and the thread stops writing and reports the record (journal
//!   segment, offset, frame) and the server's message. It never skips the row: the
//!   operator fixes the cause and restarts, and writing resumes at that record.

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hermes_ingest::capture::{CaptureReader, FILE_HEADER_LEN};
use postgres::{Client, NoTls};

use crate::copy::copy_batch;
use crate::rows::{Batch, Position, Projector};
use crate::stats::{PersistStats, TABLES};
use crate::tap::{unpack, JournalShared};
use crate::{BadRow, JournalFollower, JournalSegment, PersistError, PersistOptions, ReaderMark};

struct Cursor {
    seg: JournalSegment,
    reader: CaptureReader,
    sync: File,
    projector: Projector,
    /// Offset committed in the database when the cursor was opened (warm-up below it).
    resume_at: u64,
    /// Records committed below `resume_at`: the number of the first record written.
    resume_records: i64,
    /// `frame_no` was set from `resume_records` (at the first record written).
    numbered: bool,
    frame_no: i64,
    /// Damaged regions of the segment already reported.
    damage_seen: u64,
}

enum Failure {
    Transient(postgres::Error),
    /// The journal could not be synced to disk.
    Sync(String),
    Data {
        table: usize,
        err: postgres::Error,
    },
    Other(PersistError),
}

fn is_data_error(e: &postgres::Error) -> bool {
    matches!(
        e.code().map(|c| &c.code()[..2]),
        Some("22") | Some("23") | Some("54")
    )
}

/// An error that retrying cannot fix: the database does not exist, or the server refuses
/// these credentials (SQLSTATE 3D000, class 28), or the URL is malformed.
pub fn is_permanent(e: &PersistError) -> bool {
    match e {
        PersistError::Postgres(e) => matches!(
            e.code().map(|c| c.code()),
            Some(c) if c == "3D000" || c.starts_with("28")
        ),
        PersistError::Url(_) => true,
        _ => false,
    }
}

/// Why a batch was not committed ([`BatchWriter::write`]); nothing of it is in the
/// database.
#[derive(Debug)]
pub enum BatchError {
    /// The connection or the server failed (lost connection, shutdown, resources): keep
    /// the batch, reconnect and write it again.
    Transient(postgres::Error),
    /// The database refused a row of table `table` ([`TABLES`] index): a data error
    /// (SQLSTATE classes 22, 23, 54) that writing again cannot fix.
    Data {
        /// Index in [`TABLES`].
        table: usize,
        /// The server's error.
        err: postgres::Error,
    },
    /// Another error (from the offsets statement, say).
    Other(PersistError),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Transient(e) => write!(f, "PostgreSQL: {}", crate::pg_message(e)),
            BatchError::Data { table, err } => write!(
                f,
                "PostgreSQL refused a {} row: {}",
                TABLES[*table],
                crate::pg_message(err)
            ),
            BatchError::Other(e) => write!(f, "{e}"),
        }
    }
}

/// A PostgreSQL connection that writes [`Batch`]es: the schema migrated, one staging
/// table per table (`hermes_stage_<t>`, temporary, emptied at each commit), day
/// partitions created ahead of the rows that need them. The journal's database thread
/// and `hermes persist --nats` write through it, so their rows take the same path.
pub struct BatchWriter {
    client: Client,
    /// Days whose partitions exist (native partitioning).
    partitions: HashSet<i32>,
    /// Native partitions (else TimescaleDB hypertables, which make their own chunks).
    partitions_native: bool,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("partitions", &self.partitions.len())
            .field("partitions_native", &self.partitions_native)
            .finish()
    }
}

impl BatchWriter {
    /// Connects (5 s connect timeout unless the URL sets one), applies the migrations,
    /// creates the staging tables and today's and tomorrow's partitions.
    pub fn connect(
        database_url: &str,
        application_name: &str,
    ) -> Result<BatchWriter, PersistError> {
        let mut cfg: postgres::Config = database_url
            .parse()
            .map_err(|e| PersistError::Url(format!("{e}")))?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(5));
        }
        cfg.application_name(application_name);
        let mut c = cfg.connect(NoTls)?;
        let (partitioning, _) = crate::schema::migrate(&mut c)?;
        let mut ddl = String::new();
        for t in TABLES {
            ddl.push_str(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS hermes_stage_{t} (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
            ));
        }
        c.batch_execute(&ddl)?;
        let mut w = BatchWriter {
            client: c,
            partitions: HashSet::new(),
            // Hypertables make their own chunks: no partition is ever created there.
            partitions_native: partitioning == crate::schema::Partitioning::Native,
        };
        // Partitions ahead: today and tomorrow exist before the first row needs them.
        let today = crate::schema::day_of_ns(crate::unix_ns());
        for d in [today, today + 1] {
            w.ensure_partition(d)?;
        }
        Ok(w)
    }

    /// The connection, for statements of the caller's own (outside [`write`](Self::write)).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn ensure_partition(&mut self, day: i32) -> Result<(), PersistError> {
        if self.partitions_native && !self.partitions.contains(&day) {
            crate::schema::ensure_partitions(&mut self.client, day)?;
            self.partitions.insert(day);
        }
        Ok(())
    }

    /// Writes `batch` in one transaction: per table, binary `COPY` into its staging
    /// table and `INSERT … SELECT … ON CONFLICT DO NOTHING`; then `offsets` (the
    /// caller's statements recording how far its input is written: they commit with the
    /// rows or not at all); then `COMMIT`. On success the batch is emptied and `stats`
    /// counts its rows (inserted, already present), the batch and its latency. On error
    /// nothing is committed and the batch is kept as it was, to be written again.
    pub fn write(
        &mut self,
        batch: &mut Batch,
        stats: &PersistStats,
        offsets: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        let days = batch.days.clone();
        for d in days {
            self.ensure_partition(d).map_err(|e| match e {
                PersistError::Postgres(e) => BatchError::Transient(e),
                e => BatchError::Other(e),
            })?;
        }
        let t0 = Instant::now();
        let mut tx = self.client.transaction().map_err(BatchError::Transient)?;
        let mut inserted = [0u64; TABLES.len()];
        let mut sent = 0u64;
        for (k, t) in TABLES.iter().enumerate() {
            if batch.tables[k].is_empty() {
                continue;
            }
            let data = batch.tables[k].finish();
            let tc = Instant::now();
            let n = copy_batch(
                &mut tx,
                &format!("COPY hermes_stage_{t} FROM STDIN (FORMAT binary)"),
                data,
            )
            .map_err(|e| classify_batch(e, k))?;
            sent += n;
            let ti = Instant::now();
            inserted[k] = tx
                .execute(
                    &format!(
                        "INSERT INTO {t} SELECT * FROM hermes_stage_{t} ON CONFLICT DO NOTHING"
                    ),
                    &[],
                )
                .map_err(|e| classify_batch(e, k))?;
            tracing::debug!(
                table = t,
                rows = n,
                bytes = data.len(),
                copy_us = (ti - tc).as_micros() as u64,
                insert_us = ti.elapsed().as_micros() as u64,
                "batch table"
            );
        }
        offsets(&mut tx)?;
        tx.commit().map_err(BatchError::Transient)?;
        let us = t0.elapsed().as_micros() as u64;
        for (k, n) in inserted.iter().enumerate() {
            PersistStats::add(&stats.rows[k], *n);
        }
        PersistStats::add(&stats.duplicate_rows, sent - inserted.iter().sum::<u64>());
        PersistStats::add(&stats.batches, 1);
        PersistStats::set(&stats.copy_latency_us_last, us);
        // Relaxed: a statistic (see PersistStats); it orders nothing.
        stats.copy_latency_us_max.fetch_max(us, Ordering::Relaxed);
        stats.record_batch_latency(us);
        batch.clear();
        Ok(())
    }
}

fn classify_batch(e: postgres::Error, table: usize) -> BatchError {
    if is_data_error(&e) {
        BatchError::Data { table, err: e }
    } else {
        BatchError::Transient(e)
    }
}

pub(crate) struct DbWriter {
    opts: PersistOptions,
    /// The segments, as last seen in the shared list.
    segments: Vec<JournalSegment>,
    /// The number of this run's first segment: older ones were journaled before.
    first_number: u64,
    /// Every segment up to this number is committed to its end.
    done_through: Option<u64>,
    follower: JournalFollower,
    mark: ReaderMark,
    /// The journal's database, not yet recorded in its directory (a full disk).
    owner_pending: Option<String>,
    shared: Arc<JournalShared>,
    stats: Arc<PersistStats>,
    conn: Option<BatchWriter>,
    offsets: Option<std::collections::HashMap<String, (u64, i64)>>,
    cursor: Option<Cursor>,
    batch: Batch,
    /// The batch covers records up to this offset of the cursor's segment.
    batch_end: u64,
    batch_records: i64,
    batch_first_frame: i64,
    batch_since: Option<Instant>,
    flush_pending: bool,
    backoff: Duration,
    next_try: Instant,
    /// (journal position, when the journal's end was seen there), oldest first: the
    /// age of the oldest uncommitted byte is the time since the first sample past the
    /// committed position. Positions order segments, then offsets.
    end_samples: std::collections::VecDeque<(u64, Instant)>,
    scratch: Vec<u8>,
    rng: u64,
}

impl DbWriter {
    pub(crate) fn new(
        opts: PersistOptions,
        first_number: u64,
        shared: Arc<JournalShared>,
        mark: ReaderMark,
        stats: Arc<PersistStats>,
    ) -> DbWriter {
        let now = Instant::now();
        DbWriter {
            opts,
            segments: shared.segments(),
            first_number,
            done_through: None,
            follower: JournalFollower {
                shared: shared.clone(),
            },
            mark,
            owner_pending: None,
            shared,
            stats,
            conn: None,
            offsets: None,
            cursor: None,
            batch: Batch::default(),
            batch_end: 0,
            batch_records: 0,
            batch_first_frame: 0,
            batch_since: None,
            flush_pending: false,
            backoff: Duration::ZERO,
            next_try: now,
            end_samples: std::collections::VecDeque::new(),
            scratch: Vec::new(),
            rng: (std::process::id() as u64) << 32 | 0x9e37_79b9,
        }
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift: a cheap spread of retry times, so several persisters do not retry in
        // lock step.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let f = 0.5 + (self.rng % 1000) as f64 / 1000.0;
        d.mul_f64(f)
    }

    fn fail(&mut self, what: &str, e: &dyn std::fmt::Display) {
        let msg = format!("{what}: {e}");
        if self.stats.retries.load(Ordering::Relaxed) < 5 || self.backoff >= self.opts.retry_max {
            tracing::warn!("persister: {msg}; retrying");
        }
        self.stats.set_error(msg);
        PersistStats::add(&self.stats.retries, 1);
        self.stats.connected.store(false, Ordering::Relaxed);
        self.conn = None;
        self.backoff = if self.backoff.is_zero() {
            self.opts.retry_min
        } else {
            (self.backoff * 2).min(self.opts.retry_max)
        };
        let wait = self.jitter(self.backoff);
        self.next_try = Instant::now() + wait;
    }

    fn connect(&mut self) -> Result<(), PersistError> {
        let mut conn = BatchWriter::connect(&self.opts.database_url, "hermes-persister")?;
        if self.offsets.is_none() {
            let c = conn.client();
            let identity = crate::schema::identity(c)?;
            self.claim_journal(&identity)?;
            let names: Vec<String> = self.segments.iter().map(|s| s.name.clone()).collect();
            let rows = conn.client().query(
                "SELECT journal, \"offset\", records FROM ingest_offsets WHERE journal = ANY($1)",
                &[&names],
            )?;
            self.offsets = Some(
                rows.iter()
                    .map(|r| (r.get::<_, String>(0), (r.get::<_, i64>(1) as u64, r.get(2))))
                    .collect(),
            );
        }
        self.conn = Some(conn);
        self.stats.connected.store(true, Ordering::Relaxed);
        self.backoff = Duration::ZERO;
        Ok(())
    }

    /// Makes the journal this database's: the journal directory records the identity
    /// of the database its frames belong to (file `database`). A journal of another
    /// database has its older segments (those not of this run) moved to
    /// `other-databases/<identity>/`, where `hermes db flush --journal` can write them
    /// into their own database; they are never written here.
    fn claim_journal(&mut self, identity: &str) -> Result<(), PersistError> {
        let dir = self.opts.journal_dir.clone();
        let io = |p: &std::path::Path, source| PersistError::Io {
            path: p.display().to_string(),
            source,
        };
        let file = dir.join("database");
        let owner = match std::fs::read_to_string(&file) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&file, e)),
        };
        if owner.as_deref() == Some(identity) {
            return Ok(());
        }
        if let Some(old) = owner {
            let safe: String = old
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let aside = dir.join("other-databases").join(safe);
            std::fs::create_dir_all(&aside).map_err(|e| io(&aside, e))?;
            write_atomic(&aside.join("database"), &old)?;
            let mut moved = Vec::new();
            if let Ok(mut segs) = self.shared.segments.lock() {
                for s in segs.iter_mut() {
                    if s.number >= self.first_number || s.foreign {
                        continue;
                    }
                    let to = aside.join(&s.name);
                    std::fs::rename(&s.path, &to).map_err(|e| io(&s.path, e))?;
                    s.path = to;
                    s.foreign = true;
                    moved.push(s.name.clone());
                }
            }
            self.segments = self.shared.segments();
            if !moved.is_empty() {
                tracing::warn!(
                    "journal {}: {} segment(s) belong to another database ({old}), not to this one ({identity}); moved to {} and NOT written here. To write them into their own database: hermes db flush --journal {} --database-url <that database>",
                    dir.display(),
                    moved.len(),
                    aside.display(),
                    aside.display()
                );
                self.stats.set_error(format!(
                    "{} journal segment(s) of another database moved to {}",
                    moved.len(),
                    aside.display()
                ));
            }
        }
        self.write_owner(identity);
        Ok(())
    }

    /// Records the journal's database in its directory. A full disk must not stop the
    /// database thread (it would stop writing what is journaled): the claim then holds
    /// in memory and is written again after each batch until it lands.
    fn write_owner(&mut self, identity: &str) {
        match write_atomic(&self.opts.journal_dir.join("database"), identity) {
            Ok(()) => self.owner_pending = None,
            Err(e) => {
                if self.owner_pending.is_none() {
                    tracing::warn!("journal: could not record its database yet ({e}); trying again after each batch");
                }
                self.owner_pending = Some(identity.to_string());
            }
        }
    }

    fn committed(&self, seg: &JournalSegment) -> (u64, i64) {
        self.offsets
            .as_ref()
            .and_then(|o| o.get(&seg.name).copied())
            .unwrap_or((FILE_HEADER_LEN as u64, 0))
    }

    /// Takes in segments the journal thread added (rotation) or retention removed.
    fn refresh(&mut self) {
        // Acquire: pairs with the journal thread's Release store of `end` after it
        // added a segment to the list.
        let (number, _) = unpack(self.shared.end.load(Ordering::Acquire));
        if self.segments.last().is_none_or(|s| s.number != number) {
            self.segments = self.shared.segments();
        }
    }

    /// This reader finished segment `number` (committed to its end).
    fn finished(&mut self, number: u64) {
        self.done_through = Some(number);
        self.mark.finished_through(number);
    }

    fn open_cursor(&mut self) -> Result<bool, PersistError> {
        let pending: Vec<JournalSegment> = self
            .segments
            .iter()
            .filter(|s| self.done_through.is_none_or(|d| s.number > d))
            .cloned()
            .collect();
        for s in pending {
            let (committed, records) = self.committed(&s);
            let r = self.follower.readable(&s);
            if s.foreign || (r.sealed && committed >= r.end) {
                self.finished(s.number);
                continue;
            }
            let mut reader = CaptureReader::open(&s.path)?;
            reader.set_end(r.end);
            let sync = File::open(&s.path).map_err(|source| PersistError::Io {
                path: s.path.display().to_string(),
                source,
            })?;
            if committed > FILE_HEADER_LEN as u64 {
                tracing::info!(
                    journal = %s.name,
                    "resuming at byte {committed} (record {records}); re-reading the segment up to there to rebuild the books"
                );
            }
            self.cursor = Some(Cursor {
                seg: s,
                reader,
                sync,
                projector: Projector::new(self.opts.projection.clone()),
                resume_at: committed,
                resume_records: records,
                numbered: false,
                frame_no: 0,
                damage_seen: 0,
            });
            self.batch_end = committed;
            self.batch_records = records;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads records into the batch until it is full or the readable end is reached.
    /// Returns (progressed, at_end).
    /// Returns (progressed, at the readable end, that end was final): one snapshot of
    /// how far the segment may be read serves both, so a rotation between two looks
    /// cannot make a segment look finished short of its end.
    fn fill(&mut self) -> Result<(bool, bool, bool), PersistError> {
        let Some(seg) = self.cursor.as_ref().map(|c| c.seg.clone()) else {
            return Ok((false, true, false));
        };
        let readable = self.follower.readable(&seg);
        let limit = readable.end;
        let (name, stream) = (seg.name.clone(), seg.stream.clone());
        let max_rows = self.opts.batch_rows;
        let cur = self.cursor.as_mut().expect("checked");
        cur.reader.set_end(limit);
        let mut progressed = false;
        loop {
            if self.batch.rows() >= max_rows {
                return Ok((progressed, false, readable.sealed));
            }
            let offset = cur.reader.offset();
            let Some(rec) = cur.reader.next_record()? else {
                break;
            };
            let emit = offset >= cur.resume_at;
            if emit && !cur.numbered {
                // Number the first record written by what the database holds, not by
                // the warm-up's count: a region damaged since it was committed must not
                // shift the numbers (the raw_events keys) of the records after it.
                cur.numbered = true;
                cur.frame_no = cur.resume_records.max(if offset == cur.resume_at {
                    0
                } else {
                    cur.frame_no
                });
            }
            let pos = Position {
                journal: &name,
                stream: &stream,
                frame_no: cur.frame_no,
                offset,
            };
            if emit && self.batch_since.is_none() {
                self.batch_since = Some(Instant::now());
                self.batch_first_frame = cur.frame_no;
            }
            let r = cur.projector.record(&rec, pos, emit, &mut self.batch);
            cur.frame_no += 1;
            progressed = true;
            if let Err(e) = r {
                let report = BadRow {
                    journal: name.clone(),
                    offset,
                    table: "trades",
                    record: describe(&rec),
                    error: e.reason,
                };
                return Err(PersistError::BadRow(Box::new(report)));
            }
            if emit {
                self.batch_end = cur.reader.offset();
                self.batch_records = cur.frame_no;
            }
        }
        if cur.reader.damaged_regions() > cur.damage_seen {
            let new = (cur.reader.damaged_regions() - cur.damage_seen) as usize;
            let kept = cur.reader.damage();
            for d in kept.iter().skip(kept.len().saturating_sub(new)) {
                let aside = hermes_ingest::capture::keep_aside(&seg.path, d.offset, d.len)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("(could not be copied: {e})"));
                tracing::info!(
                    journal = %name,
                    "damaged region at bytes {}..{} ({} bytes; {}): skipped, the records after it are written; the bytes are kept in {aside}",
                    d.offset, d.offset + d.len, d.len, d.reason
                );
                if d.offset + d.len > cur.resume_at {
                    PersistStats::add(&self.stats.damaged_regions, 1);
                    PersistStats::add(&self.stats.damaged_bytes, d.len);
                }
            }
            cur.damage_seen = cur.reader.damaged_regions();
        }
        if let Some(t) = cur.reader.torn() {
            // Only an old segment can end torn (its tail was cut at start, so this is a
            // file changed under us): report it and treat the good part as the segment.
            tracing::warn!(journal = %name, "journal segment ends at a bad record at byte {} ({})", t.offset, t.reason);
        }
        Ok((progressed, true, readable.sealed))
    }

    /// How long the oldest byte not yet in the database has been in the journal (to a
    /// few milliseconds; bytes of earlier runs count from this start).
    fn lag_age(&mut self, lag: u64) -> Duration {
        let now = Instant::now();
        // Positions order segments by number, then offsets: the packed `end` is one.
        let pos = crate::tap::pack;
        // Acquire: pairs with the journal thread's Release store after its flush.
        let end = self.shared.end.load(Ordering::Acquire);
        if self.end_samples.is_empty() {
            // Whatever older segments hold was journaled before this start at the latest.
            self.end_samples
                .push_back((pos(self.first_number, FILE_HEADER_LEN as u64), now));
        }
        if self
            .end_samples
            .back()
            .is_some_and(|&(p, t)| p < end && now.duration_since(t) >= Duration::from_millis(5))
        {
            self.end_samples.push_back((end, now));
        }
        if lag == 0 {
            self.end_samples.clear();
            self.end_samples.push_back((end, now));
            return Duration::ZERO;
        }
        let committed = match &self.cursor {
            Some(c) => pos(c.seg.number, self.committed(&c.seg).0),
            None => match self.done_through {
                Some(d) => pos(d + 1, 0),
                None => 0,
            },
        };
        while self.end_samples.len() > 1 && self.end_samples[1].0 <= committed {
            self.end_samples.pop_front();
        }
        // The first sample past the committed position: the oldest uncommitted byte
        // was journaled no later than then.
        match self.end_samples.iter().find(|&&(p, _)| p > committed) {
            Some(&(_, t)) => now.duration_since(t),
            None => Duration::ZERO,
        }
    }

    fn lag(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| !s.foreign && self.done_through.is_none_or(|d| s.number > d))
            .map(|s| {
                self.follower
                    .readable(s)
                    .end
                    .saturating_sub(self.committed(s).0)
            })
            .sum()
    }

    fn write_batch(&mut self) -> Result<(), Failure> {
        let Some(seg) = self.cursor.as_ref().map(|c| c.seg.clone()) else {
            return Ok(());
        };
        // The journal must be on disk before the database says it was written. A failed
        // fsync (a failing disk) is retried like an outage: nothing is committed.
        if let Some(c) = &self.cursor {
            if let Err(e) = c.sync.sync_data() {
                return Err(Failure::Sync(format!("{}: {e}", seg.path.display())));
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Other(PersistError::NotConnected));
        };
        let s = &seg;
        let (end, records) = (self.batch_end as i64, self.batch_records);
        conn.write(&mut self.batch, &self.stats, |tx| {
            tx.execute(
                "INSERT INTO ingest_offsets (journal, stream, \"offset\", records, updated_at)
                 VALUES ($1, $2, $3, $4, now())
                 ON CONFLICT (journal) DO UPDATE SET \"offset\" = excluded.\"offset\",
                     records = excluded.records, updated_at = now()
                 WHERE ingest_offsets.\"offset\" <= excluded.\"offset\"",
                &[&s.name, &s.stream, &end, &records],
            )
            .map(|_| ())
            .map_err(BatchError::Transient)
        })
        .map_err(|e| match e {
            BatchError::Transient(e) => Failure::Transient(e),
            BatchError::Data { table, err } => Failure::Data { table, err },
            BatchError::Other(e) => Failure::Other(e),
        })?;
        let name = s.name.clone();
        if let Some(o) = self.offsets.as_mut() {
            o.insert(name, (self.batch_end, self.batch_records));
        }
        self.batch_since = None;
        if let Some(id) = self.owner_pending.take() {
            self.write_owner(&id);
        }
        Ok(())
    }

    /// Rolled-back trial: do rows `0..n` of `table` go in?
    fn trial(&mut self, table: usize, n: usize) -> Result<bool, postgres::Error> {
        self.batch.tables[table].subset(0..n, &mut self.scratch);
        let t = TABLES[table];
        let Some(client) = self.conn.as_mut().map(|c| c.client()) else {
            return Ok(false);
        };
        let mut tx = client.transaction()?;
        let r = copy_batch(
            &mut tx,
            &format!("COPY hermes_stage_{t} FROM STDIN (FORMAT binary)"),
            &self.scratch,
        )
        .and_then(|_| {
            tx.execute(
                &format!("INSERT INTO {t} SELECT * FROM hermes_stage_{t} ON CONFLICT DO NOTHING"),
                &[],
            )
        });
        let ok = match r {
            Ok(_) => true,
            Err(e) if is_data_error(&e) => false,
            Err(e) => return Err(e),
        };
        tx.rollback()?;
        Ok(ok)
    }

    /// Finds the first row of `table` the database refuses; commits what precedes its
    /// record; returns the report. `None` when no single row fails (then retry).
    fn isolate(&mut self, table: usize, err: &postgres::Error) -> Result<Option<BadRow>, Failure> {
        let n = self.batch.tables[table].rows();
        // Invariant: rows 0..lo go in, rows 0..hi do not.
        let (mut lo, mut hi) = (0usize, n);
        if self.trial(table, n).map_err(Failure::Transient)? {
            return Ok(None);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.trial(table, mid).map_err(Failure::Transient)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let bad = hi - 1;
        let offset = self.batch.row_offsets[table][bad];
        let Some(s) = self.cursor.as_ref().map(|c| c.seg.clone()) else {
            return Ok(None);
        };
        let record = read_record_at(&s.path, offset)
            .unwrap_or_else(|e| format!("(could not re-read the record: {e})"));
        let message = err
            .as_db_error()
            .map(|d| format!("{} (SQLSTATE {})", d.message(), d.code().code()))
            .unwrap_or_else(|| err.to_string());
        // Keep everything before the bad record: commit it with the offset of that record.
        let raw_before = self.batch.row_offsets[0].partition_point(|&o| o < offset);
        self.batch.truncate_before(offset);
        self.batch_end = offset;
        self.batch_records = self.batch_first_frame + raw_before as i64;
        self.write_batch()?;
        Ok(Some(BadRow {
            journal: s.name,
            offset,
            table: TABLES[table],
            record,
            error: message,
        }))
    }

    /// The thread's body: runs until the journal thread is done and everything is
    /// committed, or until `drain_timeout` after that if the database stays away.
    pub(crate) fn run(mut self) -> Result<(), PersistError> {
        let mut drain_since: Option<Instant> = None;
        loop {
            // Acquire: pairs with the journal thread's Release store of `done`.
            let journal_done = self.shared.done.load(Ordering::Acquire);
            if journal_done && drain_since.is_none() {
                drain_since = Some(Instant::now());
            }
            // Segments rotated in since the last turn count in the lag and are next.
            self.refresh();
            let lag = self.lag();
            PersistStats::set(&self.stats.lag_bytes, lag);
            let lag_ms = self.lag_age(lag).as_millis() as u64;
            PersistStats::set(&self.stats.lag_ms, lag_ms);
            if journal_done && lag == 0 && !self.flush_pending && self.batch.rows() == 0 {
                return Ok(());
            }
            if drain_since.is_some_and(|t| t.elapsed() >= self.opts.drain_timeout) {
                let msg = format!(
                    "gave up waiting for PostgreSQL after {:?}: {lag} journal bytes are not in the database yet; the next start writes them",
                    self.opts.drain_timeout
                );
                tracing::warn!("persister: {msg}");
                return Err(PersistError::Unfinished { lag_bytes: lag });
            }
            if self.conn.is_none() {
                let now = Instant::now();
                if now >= self.next_try {
                    if let Err(e) = self.connect() {
                        if is_permanent(&e) {
                            // Retrying cannot fix it: stop writing (the journal keeps
                            // every frame) and say so.
                            let msg = format!(
                                "persister stopped: {e}; the journal keeps every frame, fix the database URL (or create the database) and start again"
                            );
                            tracing::error!("{msg}");
                            self.stats.set_error(msg);
                            self.stats.halted.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        self.fail("connecting to PostgreSQL", &e);
                    }
                }
                if self.conn.is_none() {
                    let wait = self.next_try.saturating_duration_since(Instant::now());
                    std::thread::sleep(wait.min(Duration::from_millis(20)));
                    continue;
                }
            }
            if self.flush_pending {
                self.flush()?;
                continue;
            }
            if self.cursor.is_none() && !self.open_cursor()? {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let (progressed, at_end, sealed) = match self.fill() {
                Ok(x) => x,
                Err(PersistError::BadRow(b)) => {
                    // Commit what precedes the record, then stop there.
                    self.batch.truncate_before(b.offset);
                    let raw_before = self.batch.row_offsets[0].len() as i64;
                    self.batch_end = b.offset;
                    self.batch_records = self.batch_first_frame + raw_before;
                    let committed = self.cursor.as_ref().map_or(0, |c| self.committed(&c.seg).0);
                    if self.batch_end > committed {
                        if let Err(Failure::Transient(e)) = self.write_batch() {
                            tracing::warn!("persister: could not commit the rows before the refused record: {e}");
                        }
                    }
                    return Err(self.halt(*b));
                }
                Err(e) => return Err(e),
            };
            let Some(seg) = self.cursor.as_ref().map(|c| c.seg.clone()) else {
                continue;
            };
            let (committed, _) = self.committed(&seg);
            let has_progress = self.batch_end > committed;
            let age_due = self
                .batch_since
                .is_some_and(|t| t.elapsed() >= self.opts.batch_age);
            let segment_done = at_end && sealed;
            if has_progress
                && (self.batch.rows() >= self.opts.batch_rows || age_due || segment_done)
            {
                self.flush_pending = true;
                continue;
            }
            if segment_done && !has_progress {
                // Sealed segment fully written: the next one starts with fresh state.
                self.cursor = None;
                self.finished(seg.number);
                continue;
            }
            if !progressed {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }

    fn flush(&mut self) -> Result<(), PersistError> {
        match self.write_batch() {
            Ok(()) => {
                self.flush_pending = false;
                Ok(())
            }
            Err(Failure::Transient(e)) => {
                self.fail("writing a batch", &e);
                Ok(())
            }
            Err(Failure::Sync(e)) => {
                self.fail("syncing the journal before a commit", &e);
                Ok(())
            }
            Err(Failure::Data { table, err }) => match self.isolate(table, &err) {
                Ok(Some(report)) => Err(self.halt(report)),
                Ok(None) => {
                    self.fail("writing a batch", &err);
                    Ok(())
                }
                Err(Failure::Transient(e)) => {
                    self.fail("isolating a refused row", &e);
                    Ok(())
                }
                Err(Failure::Data { err, .. }) => {
                    self.fail("isolating a refused row", &err);
                    Ok(())
                }
                Err(Failure::Sync(e)) => {
                    self.fail("syncing the journal before a commit", &e);
                    Ok(())
                }
                Err(Failure::Other(e)) => Err(e),
            },
            Err(Failure::Other(PersistError::NotConnected)) => Ok(()),
            Err(Failure::Other(e)) => Err(e),
        }
    }

    fn halt(&mut self, report: BadRow) -> PersistError {
        let e = PersistError::BadRow(Box::new(report));
        let msg = e.to_string();
        tracing::error!("persister halted: {msg}");
        self.stats.set_error(msg);
        self.stats.halted.store(true, Ordering::Relaxed);
        e
    }
}

/// Writes `text` to `path` through a synced temporary and a rename.
fn write_atomic(path: &std::path::Path, text: &str) -> Result<(), PersistError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let io = |source| PersistError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

fn describe(rec: &hermes_ingest::capture::Record<'_>) -> String {
    let text = String::from_utf8_lossy(rec.data);
    // Control characters (a NUL byte, say) are shown escaped; the rest as received.
    let mut shown = String::new();
    for c in text.chars().take(600) {
        if c.is_control() {
            shown.extend(c.escape_debug());
        } else {
            shown.push(c);
        }
    }
    format!(
        "{} conn {} recv {} ns{}: {}",
        rec.venue.name(),
        rec.conn,
        rec.recv_ts_ns,
        if rec.tag.is_empty() {
            String::new()
        } else {
            format!(" tag {}", String::from_utf8_lossy(rec.tag))
        },
        shown
    )
}

fn read_record_at(path: &std::path::Path, offset: u64) -> Result<String, PersistError> {
    let mut r = CaptureReader::open(path)?;
    loop {
        let at = r.offset();
        match r.next_record()? {
            Some(rec) if at == offset => return Ok(describe(&rec)),
            Some(_) if at < offset => continue,
            _ => return Ok(format!("(no record at byte {offset})")),
        }
    }
}
