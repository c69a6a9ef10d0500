//! `hermes persist --nats`: the persister as a JetStream consumer of the RAW stream, on a
//! host other than the ingest hosts.
//!
//! ```text
//! RAW <p>.raw.<host>.<venue> ── ordered consumer (AckNone, from offset+1) ──► reader thread
//!                                                                              │ channel
//!   PostgreSQL ◄── BatchWriter: COPY + nats_offsets + nats_segments ◄── database thread:
//!                  (one transaction)                        parts joined, frame → Record →
//!                                                           Projector of (host, segment) → Batch
//! ```
//!
//! **PostgreSQL is the truth** (`docs/scale-out.md` §2, §5.3). Every batch commits its rows
//! (through [`hermes_persist::BatchWriter`], the journal persister's own code path) and, in
//! the same transaction, `nats_offsets.seq`: the stream sequence through which every
//! message is in the tables. A start reads that offset and creates an *ephemeral ordered*
//! consumer (no acks) from the next sequence; nothing relies on a durable consumer's
//! redelivery. A message whose sequence is not the next one means messages were deleted
//! or expired before they were read (retention outran the persister): the range is logged
//! as an error and counted (`lost`), never skipped silently.
//!
//! **Frames.** A frame larger than the server's `max_payload` comes as consecutive parts
//! (`Hermes-Part: k/n`); its rows are added once all parts are in, and the committed
//! offset never passes the first part of a frame not yet whole, so a batch never splits a
//! frame. Rows are those of the journal persister for the same record: `raw_events.journal`
//! is `<host>/<segment file>`, `stream` the segment's stream id, `frame_no` `Hermes-Frame`,
//! `journal_offset` `Hermes-Offset`.
//!
//! **Books.** A [`Projector`] (its market) belongs to one journal segment of one host, as
//! the journal persister's belongs to one segment. `nats_segments` records, with the rows,
//! where each segment's first message was read and how far its frames are committed. On
//! start, the latest segment of each host is read again from its first message (a second,
//! temporary ordered consumer filtered on `<p>.raw.<host>.>`) through its last committed
//! frame, projecting without writing, so `book_snapshots` and `top_of_book` continue
//! exactly as an uninterrupted run's. A frame numbered below what a segment has committed
//! (a restarted publisher sends the unacknowledged ones again) is not projected again; its
//! `raw_events` row is offered again and skipped by the table's unique key.
//!
//! **Failures.** A database that refuses the connection for good (bad credentials, no such
//! database, a bad URL) stops the run at once; transient PostgreSQL errors are retried with
//! back-off, the batch kept (reading waits meanwhile). NATS errors are retried too: a
//! consumer that stops delivering while the stream holds more is created again from the
//! next sequence.

use std::collections::{btree_map, BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use hermes_book::Venue;
use hermes_ingest::capture::{Record, RecordKind};
use hermes_persist::rows::{Batch, Position, Projector};
use hermes_persist::{BatchError, BatchWriter, PersistError, PersistStats, ProjectionOptions};

use crate::headers as h;
use crate::{Kind, NatsOptions};

/// What to read, where to write, how to batch.
#[derive(Clone, Debug)]
pub struct Options {
    /// Servers and prefixes (`stream_prefix`, `subject_prefix`); the other publishing
    /// settings are not used.
    pub nats: NatsOptions,
    /// libpq-style connection string or URL.
    pub database_url: String,
    /// Commit a batch at this many rows (all tables together)...
    pub batch_rows: usize,
    /// ...or this long after its first message.
    pub batch_age: Duration,
    /// Row sampling and decimals: must be the engine's, as for the journal persister.
    pub projection: ProjectionOptions,
    /// Stop once no message came for this long and the stream holds nothing newer.
    pub until_idle: Option<Duration>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// When stopping, how long to keep trying to commit what was read.
    pub drain_timeout: Duration,
    /// First retry delay after a database failure (doubles up to `retry_max`).
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Bytes of messages read and not yet handled by the database thread, at most.
    pub queue_bytes: usize,
    /// How long a frame that came before an earlier frame of its segment waits for it
    /// (a publisher resends what a dying stream leader lost after newer frames went in)
    /// before its books go on without the missing ones.
    pub reorder_wait: Duration,
}

impl Options {
    /// Defaults: 10,000 rows / 100 ms batches, the default projection, no idle or time
    /// limit, a 30 s drain, retries 100 ms → 5 s, 64 MiB read ahead.
    pub fn new(nats: NatsOptions, database_url: impl Into<String>) -> Options {
        Options {
            nats,
            database_url: database_url.into(),
            batch_rows: 10_000,
            batch_age: Duration::from_millis(100),
            projection: ProjectionOptions::default(),
            until_idle: None,
            duration: None,
            drain_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            queue_bytes: 64 << 20,
            reorder_wait: Duration::from_secs(10),
        }
    }
}

/// Counters of a NATS persister. Every counter is a relaxed atomic: each is a statistic
/// one thread writes and others display; none orders other memory.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Rows per table, batches, batch latency, retries, the last error, connected.
    pub db: Arc<PersistStats>,
    /// Messages read (parts counted one by one).
    pub messages: AtomicU64,
    /// Frames whose rows were written.
    pub frames: AtomicU64,
    /// Frames read again that were already projected (a publisher's resend, or frames
    /// committed past the offset before a restart): `raw_events` offered again, nothing
    /// projected twice.
    pub seen_again: AtomicU64,
    /// Frames re-read at start to rebuild books (nothing written).
    pub warmed: AtomicU64,
    /// Messages missing from the stream (deleted, or expired before they were read).
    pub lost: AtomicU64,
    /// Frames some of whose parts never came.
    pub incomplete: AtomicU64,
    /// Messages not in the RAW format (subject, headers); counted and skipped.
    pub malformed: AtomicU64,
    /// `nats_offsets.seq`: every message through this sequence is in the tables.
    pub committed_seq: AtomicU64,
    /// The stream's last sequence, as last seen.
    pub stream_last_seq: AtomicU64,
    /// Now minus the publish time of the oldest message not committed, ms (0 when none).
    pub lag_ms: AtomicU64,
    /// Consumers created (the first, and each re-creation).
    pub consumers: AtomicU64,
    /// Connected to a NATS server (kept by the client's connection events).
    pub nats_connected: Arc<AtomicBool>,
    /// Frames waiting now for an earlier frame of their segment (stored out of order).
    pub held: AtomicU64,
    /// Frames that waited for an earlier one, in all.
    pub reordered: AtomicU64,
}

// Relaxed, all four: statistics and health flags that one thread writes and others
// display ([`SinkStats`], [`PersistStats`]); none pairs with another access or orders
// other memory.
fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn set(c: &AtomicU64, n: u64) {
    c.store(n, Ordering::Relaxed);
}

fn flag(c: &AtomicBool, v: bool) {
    c.store(v, Ordering::Relaxed);
}

impl SinkStats {
    /// Messages in the stream not committed yet.
    pub fn lag_messages(&self) -> u64 {
        get(&self.stream_last_seq).saturating_sub(get(&self.committed_seq))
    }

    /// Age of the oldest message not committed, seconds (0 when none is).
    pub fn lag_seconds(&self) -> f64 {
        if self.lag_messages() == 0 {
            0.0
        } else {
            get(&self.lag_ms) as f64 / 1000.0
        }
    }

    /// `None` when ready, else why not: NATS or PostgreSQL not connected, halted on an
    /// error that needs an operator, or more than `max_lag` behind the stream.
    pub fn not_ready(&self, max_lag: Duration) -> Option<String> {
        let mut why = Vec::new();
        // Relaxed: reported states (see `get`).
        if !self.nats_connected.load(Ordering::Relaxed) {
            why.push("persister not connected to NATS".to_string());
        }
        if self.db.halted.load(Ordering::Relaxed) {
            why.push(format!(
                "persister halted: {}",
                self.db.last_error().unwrap_or_else(|| "see logs".into())
            ));
        } else if !self.db.connected.load(Ordering::Relaxed) {
            why.push(format!(
                "persister not connected to PostgreSQL{}",
                self.db
                    .last_error()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        let lag = self.lag_seconds();
        if lag > max_lag.as_secs_f64() {
            why.push(format!(
                "persister {lag:.1} s ({} messages) behind the RAW stream (more than {} s)",
                self.lag_messages(),
                max_lag.as_secs_f64()
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Prometheus text lines of the stream side (the rows and batches are the
    /// `hermes_persist_*` metrics of [`SinkStats::db`]).
    pub fn render(&self, out: &mut String) {
        let mut put = |kind: &str, name: &str, v: String| {
            crate::stats::sample(out, kind, &format!("hermes_nats_persist_{name}"), v)
        };
        put(
            "gauge",
            "connected",
            u8::from(self.nats_connected.load(Ordering::Relaxed)).to_string(),
        );
        for (name, c) in [
            ("messages_total", &self.messages),
            ("frames_total", &self.frames),
            ("seen_again_total", &self.seen_again),
            ("warmed_total", &self.warmed),
            ("lost_total", &self.lost),
            ("incomplete_total", &self.incomplete),
            ("malformed_total", &self.malformed),
            ("consumers_total", &self.consumers),
            ("reordered_total", &self.reordered),
        ] {
            put("counter", name, get(c).to_string());
        }
        put(
            "gauge",
            "committed_seq",
            get(&self.committed_seq).to_string(),
        );
        put(
            "gauge",
            "stream_last_seq",
            get(&self.stream_last_seq).to_string(),
        );
        put("gauge", "lag_messages", self.lag_messages().to_string());
        put("gauge", "lag_seconds", self.lag_seconds().to_string());
        put("gauge", "held_frames", get(&self.held).to_string());
    }

    /// One line: frames, rows per table, batches, lag, losses.
    pub fn line(&self) -> String {
        let db = &self.db;
        let (p50, p99, _, _) = db.batch_latency_percentiles();
        let lost = get(&self.lost);
        format!(
            "{} frames ({} messages; {} seen again, {} re-read to rebuild books), rows: raw_events {}, trades {}, book_snapshots {}, top_of_book {}, funding {}, liquidations {} ({} already present); {} batches, batch write p50 {} µs, p99 {} µs; committed through #{}, lag {} messages, {:.1} s; {}{} incomplete frames, {} reordered, {} malformed, {} consumers, {} retries",
            get(&self.frames),
            get(&self.messages),
            get(&self.seen_again),
            get(&self.warmed),
            db.rows_of(0),
            db.rows_of(1),
            db.rows_of(2),
            db.rows_of(3),
            db.rows_of(4),
            db.rows_of(5),
            get(&db.duplicate_rows),
            get(&db.batches),
            p50,
            p99,
            get(&self.committed_seq),
            self.lag_messages(),
            self.lag_seconds(),
            if lost > 0 {
                format!("{lost} MESSAGES LOST, ")
            } else {
                "0 lost, ".into()
            },
            get(&self.incomplete),
            get(&self.reordered),
            get(&self.malformed),
            get(&self.consumers),
            get(&db.retries),
        )
    }
}

/// Runs until `stop`, `opts.duration` or `opts.until_idle`; commits what it read before
/// returning. An error when the database refuses for good, a row is refused, or PostgreSQL
/// stayed away past the drain timeout at the end (what was not committed is read again
/// from the stream by the next start).
pub fn run(opts: &Options, stats: &Arc<SinkStats>, stop: &AtomicBool) -> anyhow::Result<()> {
    opts.nats.validate()?;
    if opts.batch_rows == 0 || opts.batch_age.is_zero() {
        bail!("--batch-rows and --batch-age-ms must be at least 1");
    }
    let started = Instant::now();
    let mut sink = Sink::new(opts, stats, stop, started);
    // The database first: it says where to start.
    let plan = sink.start()?;
    let link = Arc::new(Link {
        quit: AtomicBool::new(false),
        queued: AtomicUsize::new(0),
    });
    let (tx, rx) = mpsc::sync_channel::<In>(4096);
    let reader = {
        let (nats, link, stats) = (opts.nats.clone(), link.clone(), stats.clone());
        let max = opts.queue_bytes.max(1 << 20);
        std::thread::Builder::new()
            .name("hermes-nats-read".into())
            .spawn(move || reader(nats, plan, tx, link, stats, max))?
    };
    let r = sink.follow(&rx, &link);
    // Relaxed: a request to stop; nothing is handed over with it.
    link.quit.store(true, Ordering::Relaxed);
    drop(rx);
    // The reader notices within a quarter of a second, unless it is inside a NATS request
    // (up to its timeout): the process does not wait for it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(10));
    }
    if reader.is_finished() {
        let _ = reader.join();
    }
    r
}

/// From the reader to the database thread.
enum In {
    Msg(RawMsg),
    /// The stream skipped these sequences: deleted or expired before they were read.
    Lost {
        from: u64,
        to: u64,
    },
    /// The re-reading of journal `key` (to rebuild its books) is over.
    WarmEnd(String),
    /// The reader stopped for good.
    Failed(String),
}

impl In {
    /// What it counts in [`Link::queued`]: added by the reader's `send`, taken off by the
    /// database thread on receipt. `Failed` is sent without `send` (the reader is ending):
    /// it counts nothing.
    fn bytes(&self) -> usize {
        match self {
            In::Msg(m) => m.payload.len() + 256,
            In::Lost { .. } | In::WarmEnd(_) => 64,
            In::Failed(_) => 0,
        }
    }
}

struct RawMsg {
    seq: u64,
    /// Messages the consumer had left after this one when it was delivered.
    pending: u64,
    subject: String,
    headers: Option<HeaderMap>,
    payload: Bytes,
    /// Re-read to rebuild books: committed already, project without writing.
    warm: bool,
}

/// A segment to re-read at start.
struct Warm {
    key: String,
    host: String,
    first_seq: u64,
    last_seq: u64,
}

/// Where the reader starts.
struct Plan {
    warm: Vec<Warm>,
    start: u64,
}

/// Shared by the two threads.
struct Link {
    quit: AtomicBool,
    /// Bytes sent to the database thread and not yet taken by it.
    queued: AtomicUsize,
}

/// A message's RAW headers and subject.
#[derive(Clone, Debug)]
struct Meta {
    host: String,
    venue: Venue,
    /// Segment file name.
    journal: String,
    /// The segment's stream id (from its name).
    stream: String,
    offset: u64,
    frame_no: u64,
    recv_ns: i64,
    kind: RecordKind,
    tag: String,
    conn: u16,
    /// `k/n` of a split frame.
    part: Option<(u32, u32)>,
}

impl Meta {
    fn key(&self) -> String {
        format!("{}/{}", self.host, self.journal)
    }

    fn record<'a>(&'a self, data: &'a [u8]) -> Record<'a> {
        Record {
            recv_ts_ns: self.recv_ns,
            venue: self.venue,
            kind: self.kind,
            conn: self.conn,
            tag: self.tag.as_bytes(),
            data,
        }
    }
}

/// The stream id of a segment named `NNNNNNNN.<stream>.hcap` (the whole name otherwise).
fn segment_stream(name: &str) -> String {
    name.strip_suffix(".hcap")
        .and_then(|s| s.split_once('.'))
        .filter(|(n, s)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty())
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Reads a RAW message's subject (`<head><host>.<venue>`, `head` = `<p>.raw.`) and headers.
fn parse_meta(head: &str, subject: &str, hd: Option<&HeaderMap>) -> Result<Meta, String> {
    let rest = subject
        .strip_prefix(head)
        .ok_or_else(|| format!("subject {subject:?} is not under {head}>"))?;
    let (host, venue) = rest
        .split_once('.')
        .filter(|(h, v)| !h.is_empty() && !v.contains('.'))
        .ok_or_else(|| format!("subject {subject:?} is not {head}<host>.<venue>"))?;
    let venue = Venue::from_name(venue)
        .ok_or_else(|| format!("subject {subject:?}: unknown venue {venue:?}"))?;
    let hd = hd.ok_or_else(|| "no headers".to_string())?;
    let text = |k: &str| {
        hd.get(k)
            .map(|v| v.as_str().to_string())
            .ok_or_else(|| format!("header {k} missing"))
    };
    let num = |k: &str| -> Result<u64, String> {
        let v = text(k)?;
        v.parse::<u64>()
            .ok()
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| format!("header {k}: {v:?} is not a number"))
    };
    let journal = text(h::JOURNAL)?;
    if journal.is_empty() || journal.contains('/') || journal.chars().any(char::is_whitespace) {
        return Err(format!(
            "header {}: {journal:?} is not a segment file name",
            h::JOURNAL
        ));
    }
    let recv = text(h::RECV_NS)?;
    let recv_ns = recv
        .parse::<i64>()
        .map_err(|_| format!("header {}: {recv:?} is not a number", h::RECV_NS))?;
    let kind = match text(h::KIND)?.as_str() {
        "ws" => RecordKind::Ws,
        "rest" => RecordKind::RestDepth,
        k => return Err(format!("header {}: {k:?} is neither ws nor rest", h::KIND)),
    };
    let tag = match kind {
        RecordKind::RestDepth => hd
            .get(h::TAG)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default(),
        RecordKind::Ws => String::new(),
    };
    let conn = text(h::CONN)?;
    let conn = conn
        .parse::<u16>()
        .map_err(|_| format!("header {}: {conn:?} is not a connection number", h::CONN))?;
    let part = match hd.get(h::PART) {
        None => None,
        Some(v) => {
            let v = v.as_str();
            let p = v
                .split_once('/')
                .and_then(|(k, n)| Some((k.parse::<u32>().ok()?, n.parse::<u32>().ok()?)))
                .filter(|(k, n)| *k >= 1 && k <= n);
            Some(p.ok_or_else(|| format!("header {}: {v:?} is not k/n", h::PART))?)
        }
    };
    Ok(Meta {
        host: host.to_string(),
        venue,
        stream: segment_stream(&journal),
        journal,
        offset: num(h::OFFSET)?,
        frame_no: num(h::FRAME)?,
        recv_ns,
        kind,
        tag,
        conn,
        part,
    })
}

/// A whole frame that came before an earlier frame of its segment, waiting for it.
struct Held {
    meta: Meta,
    data: Vec<u8>,
    first_seq: u64,
    last_seq: u64,
    since: Instant,
}

/// A frame whose parts are arriving.
struct Partial {
    meta: Meta,
    first_seq: u64,
    n: u32,
    next_k: u32,
    data: Vec<u8>,
}

/// One journal segment of one host.
struct Seg {
    host: String,
    stream: String,
    /// The first message read of it, and that frame's number.
    first_seq: u64,
    first_frame: u64,
    /// Frames below this number are committed; `committed_last` is the sequence of the
    /// last message of the last one.
    committed_next: u64,
    /// Frames below this number are projected (committed, in the batch, or re-read).
    next: u64,
    /// Sequence of the last message of the last frame in the batch.
    last_seq: u64,
    /// Has rows in the batch: its `nats_segments` row goes with them.
    dirty: bool,
    projector: Option<Projector>,
    /// Being re-read to rebuild its books.
    warming: bool,
    /// The first frame re-read was checked against `first_frame`.
    warm_checked: bool,
}

/// The database thread's state.
struct Sink<'a> {
    opts: &'a Options,
    stats: &'a SinkStats,
    stop: &'a AtomicBool,
    started: Instant,
    /// `<P>_RAW`.
    stream: String,
    /// `<p>.raw.`
    head: String,
    conn: Option<BatchWriter>,
    backoff: Duration,
    /// Set once stopping: give up on PostgreSQL after this.
    drain_deadline: Option<Instant>,
    /// `nats_offsets.seq`.
    committed: u64,
    /// Every message through this sequence was handled.
    processed: u64,
    segs: HashMap<String, Seg>,
    /// Per host, the segment its frames last came from (the only one keeping a market).
    current: HashMap<String, String>,
    partials: HashMap<String, Partial>,
    /// Frames waiting for earlier ones of their segment, by (segment, frame number).
    held: BTreeMap<(String, u64), Held>,
    batch: Batch,
    batch_since: Option<Instant>,
    last_msg: Instant,
    /// Re-readings not over yet.
    warming: usize,
    /// What the consumer had left after the last message read (`None` before the first).
    pending_after: Option<u64>,
    malformed_logged: u64,
}

impl<'a> Sink<'a> {
    fn new(
        opts: &'a Options,
        stats: &'a SinkStats,
        stop: &'a AtomicBool,
        started: Instant,
    ) -> Sink<'a> {
        Sink {
            opts,
            stats,
            stop,
            started,
            stream: opts.nats.stream(Kind::Raw),
            head: format!("{}.raw.", opts.nats.subject_prefix),
            conn: None,
            backoff: Duration::ZERO,
            drain_deadline: None,
            committed: 0,
            processed: 0,
            segs: HashMap::new(),
            current: HashMap::new(),
            partials: HashMap::new(),
            held: BTreeMap::new(),
            batch: Batch::default(),
            batch_since: None,
            last_msg: started,
            warming: 0,
            pending_after: None,
            malformed_logged: 0,
        }
    }

    /// Stop requested: the signal, or `--duration`.
    fn stopping(&self) -> bool {
        // Relaxed: a stop request (set by the signal handler); no data comes with it.
        self.stop.load(Ordering::Relaxed)
            || self
                .opts
                .duration
                .is_some_and(|d| self.started.elapsed() >= d)
    }

    /// Connects (the schema migrated, staging tables made) and takes the stream's
    /// advisory lock: one persister per stream and database.
    fn connect(&mut self) -> Result<(), PersistError> {
        let mut c = BatchWriter::connect(&self.opts.database_url, "hermes-persist-nats")?;
        // A persister killed a moment ago may still hold the lock until its server
        // process notices the closed connection: wait a little for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let key: i64 = c
            .client()
            .query_one(
                "SELECT hashtext('hermes persist --nats ' || $1)::bigint",
                &[&self.stream],
            )?
            .get(0);
        loop {
            let got: bool = c
                .client()
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
                .get(0);
            if got {
                break;
            }
            if Instant::now() >= deadline || self.stopping() {
                let holder = c
                    .client()
                    .query_opt(
                        "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local')
                           FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                            AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
                        &[&key],
                    )
                    .ok()
                    .flatten()
                    .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1), r.get::<_, String>(2)));
                let who = match holder {
                    Some((pid, app, addr)) => format!(
                        " (its session: server pid {pid}, application {app:?}, client {addr}; if that persister is gone, end the session with SELECT pg_terminate_backend({pid}))"
                    ),
                    None => String::new(),
                };
                return Err(PersistError::Conflict(format!(
                    "another `hermes persist --nats` is writing NATS stream {} into this database: it holds the stream's advisory lock{who}. Run one per stream and database",
                    self.stream
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.conn = Some(c);
        flag(&self.stats.db.connected, true);
        self.backoff = Duration::ZERO;
        Ok(())
    }

    fn fail(&mut self, what: &str, e: &dyn std::fmt::Display) {
        let msg = format!("{what}: {e}");
        let retries = get(&self.stats.db.retries);
        if retries < 5 || self.backoff >= self.opts.retry_max {
            tracing::warn!("persist: {msg}; retrying");
        }
        if let Ok(mut l) = self.stats.db.last_error.lock() {
            *l = Some(msg);
        }
        add(&self.stats.db.retries, 1);
        flag(&self.stats.db.connected, false);
        self.conn = None;
        self.backoff = if self.backoff.is_zero() {
            self.opts.retry_min
        } else {
            (self.backoff * 2).min(self.opts.retry_max)
        };
    }

    /// Waits out the back-off; an error once stopping and the drain timeout passed.
    fn wait_retry(&mut self) -> anyhow::Result<()> {
        let until = Instant::now() + self.backoff;
        loop {
            if self.stopping() && !self.has_progress() {
                bail!(
                    "stopped while PostgreSQL was unreachable ({}); nothing read is lost: the next start reads {} from #{}",
                    self.stats.db.last_error().unwrap_or_default(),
                    self.stream,
                    self.committed + 1
                );
            }
            if self.stopping() && self.drain_deadline.is_none() {
                self.drain_deadline = Some(Instant::now() + self.opts.drain_timeout);
            }
            if let Some(d) = self.drain_deadline {
                if Instant::now() >= d {
                    bail!(
                        "gave up on PostgreSQL after {:?} ({}): the messages of {} after #{} are not in the database; the next start reads them again from the stream",
                        self.opts.drain_timeout,
                        self.stats.db.last_error().unwrap_or_default(),
                        self.stream,
                        self.committed
                    );
                }
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    /// Runs `f` on a connection, connecting first, retrying transient failures with
    /// back-off. Permanent failures (refused credentials, no such database, a bad URL, a
    /// refused row) are errors.
    fn with_db<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut BatchWriter) -> Result<T, BatchError>,
    ) -> anyhow::Result<T> {
        loop {
            if self.conn.is_none() {
                match self.connect() {
                    Ok(()) => {}
                    Err(e) if hermes_persist::is_permanent(&e) => {
                        flag(&self.stats.db.halted, true);
                        bail!("PostgreSQL refuses this persister for good: {e}; fix --database-url (or create the database) and start again");
                    }
                    Err(e @ PersistError::Conflict(_)) => return Err(e.into()),
                    Err(e) => {
                        self.fail("connecting to PostgreSQL", &e);
                        self.wait_retry()?;
                        continue;
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            match f(conn) {
                Ok(v) => {
                    self.backoff = Duration::ZERO;
                    return Ok(v);
                }
                Err(BatchError::Transient(e)) => {
                    self.fail(what, &hermes_persist::BatchError::Transient(e));
                    self.wait_retry()?;
                }
                Err(e) => {
                    flag(&self.stats.db.halted, true);
                    return Err(anyhow!("{what}: {e}"));
                }
            }
        }
    }

    /// Reads the committed offset and the segments to re-read.
    fn start(&mut self) -> anyhow::Result<Plan> {
        let stream = self.stream.clone();
        let r = self.with_db("reading nats_offsets", |c| {
            let cl = c.client();
            let seq: Option<i64> = cl
                .query_opt("SELECT seq FROM nats_offsets WHERE stream = $1", &[&stream])
                .map_err(BatchError::Transient)?
                .map(|r| r.get(0));
            let segs = cl
                .query(
                    "SELECT DISTINCT ON (host) journal, host, first_seq, first_frame, last_seq, frames
                       FROM nats_segments WHERE stream = $1 ORDER BY host, last_seq DESC",
                    &[&stream],
                )
                .map_err(BatchError::Transient)?;
            let segs: Vec<(String, String, i64, i64, i64, i64)> = segs
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect();
            Ok((seq, segs))
        });
        let (seq, segs) = r?;
        self.committed = seq.unwrap_or(0).max(0) as u64;
        self.processed = self.committed;
        set(&self.stats.committed_seq, self.committed);
        let mut warm = Vec::new();
        for (key, host, first_seq, first_frame, last_seq, frames) in segs {
            let Some((_, name)) = key.split_once('/') else {
                continue;
            };
            let seg = Seg {
                host: host.clone(),
                stream: segment_stream(name),
                first_seq: first_seq as u64,
                first_frame: first_frame as u64,
                committed_next: frames as u64,
                next: 0,
                last_seq: last_seq as u64,
                dirty: false,
                projector: None,
                warming: frames > 0,
                warm_checked: false,
            };
            if seg.warming {
                warm.push(Warm {
                    key: key.clone(),
                    host: host.clone(),
                    first_seq: first_seq as u64,
                    last_seq: last_seq as u64,
                });
                tracing::info!(
                    journal = %key,
                    "persist: re-reading {key} from #{first_seq} through #{last_seq} (frames {first_frame}..{frames}) to rebuild its books"
                );
            }
            self.current.insert(host, key.clone());
            self.segs.insert(key, seg);
        }
        self.warming = warm.len();
        tracing::info!(
            "persist: reading {} from #{} ({} into PostgreSQL)",
            self.stream,
            self.committed + 1,
            if self.committed == 0 {
                "nothing committed yet".to_string()
            } else {
                format!("#{} committed", self.committed)
            }
        );
        Ok(Plan {
            warm,
            start: self.committed + 1,
        })
    }

    /// Idle: `--until-idle` passed since the last message, nothing being re-read, and
    /// nothing more to read: the consumer had nothing left after the last message (or,
    /// before any, the stream as last seen holds nothing newer). A consumer that stopped
    /// delivering with messages left is stalled, not idle: it is created again; a cluster
    /// that never answered is unreachable, not idle.
    fn idle(&self) -> bool {
        // Never idle before the stream was reached (a consumer created): a cluster that
        // does not answer is not a stream with nothing in it.
        let caught_up = get(&self.stats.consumers) > 0
            && match self.pending_after {
                Some(n) => n == 0,
                None => get(&self.stats.stream_last_seq) <= self.processed,
            };
        self.opts
            .until_idle
            .is_some_and(|d| self.last_msg.elapsed() >= d && self.warming == 0 && caught_up)
    }

    /// The offset a commit now may record: everything handled, but never past the first
    /// part of a frame still being joined.
    fn commit_point(&self) -> u64 {
        let mut c = self.processed;
        for p in self.partials.values() {
            c = c.min(p.first_seq.saturating_sub(1));
        }
        for h in self.held.values() {
            c = c.min(h.first_seq.saturating_sub(1));
        }
        c.max(self.committed)
    }

    fn has_progress(&self) -> bool {
        self.commit_point() > self.committed || self.batch.rows() > 0
    }

    fn due(&self) -> bool {
        self.has_progress()
            && (self.batch.rows() >= self.opts.batch_rows
                || self
                    .batch_since
                    .is_some_and(|t| t.elapsed() >= self.opts.batch_age))
    }

    /// The main loop: take messages, commit batches.
    fn follow(&mut self, rx: &mpsc::Receiver<In>, link: &Link) -> anyhow::Result<()> {
        let r = self.follow_inner(rx, link);
        // What was handled goes in, whatever ended the loop (a refused row excepted: it
        // committed what preceded it itself).
        let end = match &r {
            Ok(()) | Err(Stop::Reader(_)) => {
                if self.has_progress() {
                    self.commit()
                } else {
                    Ok(())
                }
            }
            Err(Stop::Fatal(_)) => Ok(()),
        };
        if !self.partials.is_empty() {
            let frames: Vec<String> = self
                .partials
                .values()
                .map(|p| {
                    format!(
                        "{} frame {} ({} of {} parts)",
                        p.meta.key(),
                        p.meta.frame_no,
                        p.next_k - 1,
                        p.n
                    )
                })
                .collect();
            tracing::info!(
                "persist: stopping with frames not whole yet ({}): the next start reads them again from #{}",
                frames.join(", "),
                self.committed + 1
            );
        }
        match r {
            Ok(()) => end,
            Err(Stop::Reader(e)) => {
                end?;
                Err(anyhow!("{e}"))
            }
            Err(Stop::Fatal(e)) => Err(e),
        }
    }

    fn follow_inner(&mut self, rx: &mpsc::Receiver<In>, link: &Link) -> Result<(), Stop> {
        loop {
            if self.stopping() {
                return Ok(());
            }
            if self.idle() {
                // Nothing more is coming: frames still waiting for earlier ones go in
                // without them.
                if !self.held.is_empty() {
                    self.release_held(true).map_err(Stop::Fatal)?;
                }
                let last = get(&self.stats.stream_last_seq);
                if last > self.processed {
                    tracing::error!(
                        "persist: {} says its last message is #{last}, but nothing after #{} came and the consumer has none left: messages #{}..=#{last} are gone (deleted); the next start counts them as lost",
                        self.stream,
                        self.processed,
                        self.processed + 1
                    );
                }
                return Ok(());
            }
            if !self.held.is_empty() {
                self.release_held(false).map_err(Stop::Fatal)?;
            }
            if self.due() {
                self.commit().map_err(Stop::Fatal)?;
                continue;
            }
            let wait = match self.batch_since {
                Some(t) => self
                    .opts
                    .batch_age
                    .saturating_sub(t.elapsed())
                    .clamp(Duration::from_millis(1), Duration::from_millis(100)),
                None => Duration::from_millis(100),
            };
            match rx.recv_timeout(wait) {
                Ok(item) => {
                    // Relaxed: flow control only; the message itself came through the
                    // channel, which orders its memory.
                    link.queued.fetch_sub(item.bytes(), Ordering::Relaxed);
                    self.take(item)?;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Stop::Reader("the NATS reader thread ended".into()))
                }
            }
        }
    }

    fn take(&mut self, item: In) -> Result<(), Stop> {
        match item {
            In::Msg(m) => {
                self.last_msg = Instant::now();
                if m.warm {
                    self.message(m).map_err(Stop::Fatal)
                } else {
                    add(&self.stats.messages, 1);
                    if self.batch_since.is_none() {
                        self.batch_since = Some(Instant::now());
                    }
                    let (seq, pending) = (m.seq, m.pending);
                    self.message(m).map_err(Stop::Fatal)?;
                    self.pending_after = Some(pending);
                    self.processed = self.processed.max(seq);
                    Ok(())
                }
            }
            In::Lost { from, to } => {
                let n = to - from + 1;
                tracing::error!(
                    "persist: messages #{from}..=#{to} of {} ({n}) are gone from the stream (deleted, or expired before this persister read them: retention outran it); their frames are NOT in the database",
                    self.stream
                );
                add(&self.stats.lost, n);
                if let Ok(mut l) = self.stats.db.last_error.lock() {
                    *l = Some(format!(
                        "{n} messages of {} lost (#{from}..=#{to})",
                        self.stream
                    ));
                }
                self.processed = self.processed.max(to);
                if self.batch_since.is_none() {
                    self.batch_since = Some(Instant::now());
                }
                Ok(())
            }
            In::WarmEnd(key) => {
                self.warming = self.warming.saturating_sub(1);
                if let Some(seg) = self.segs.get_mut(&key) {
                    seg.warming = false;
                    // Parts of the host's frames are not carried over into the main read.
                    self.partials.remove(&seg.host);
                    if seg.next < seg.committed_next {
                        tracing::warn!(
                            journal = %key,
                            "persist: {key}: its books could be rebuilt only through frame {} of the {} committed (the stream no longer has the rest): book_snapshots and top_of_book rows of its next frames may differ from an uninterrupted run's",
                            seg.next,
                            seg.committed_next
                        );
                    } else {
                        tracing::info!(journal = %key, "persist: {key}: books rebuilt from {} frames", seg.next);
                    }
                }
                Ok(())
            }
            In::Failed(e) => Err(Stop::Reader(e)),
        }
    }

    fn malformed(&mut self, seq: u64, subject: &str, why: &str) {
        add(&self.stats.malformed, 1);
        self.malformed_logged += 1;
        if self.malformed_logged <= 20 {
            tracing::error!(
                "persist: message #{seq} of {} ({subject}) is not a RAW frame: {why}; skipped{}",
                self.stream,
                if self.malformed_logged == 20 {
                    " (further ones are counted, not logged)"
                } else {
                    ""
                }
            );
        }
    }

    fn message(&mut self, m: RawMsg) -> anyhow::Result<()> {
        let meta = match parse_meta(&self.head, &m.subject, m.headers.as_ref()) {
            Ok(x) => x,
            Err(why) => {
                if !m.warm {
                    self.malformed(m.seq, &m.subject, &why);
                }
                return Ok(());
            }
        };
        let host = meta.host.clone();
        let Some((k, n)) = meta.part else {
            if let Some(p) = self.partials.remove(&host) {
                self.incomplete(&p, m.warm, "a whole frame came before its remaining parts");
            }
            return self.frame(&meta, &m.payload, m.seq, m.seq, m.warm);
        };
        if k == 1 {
            if let Some(p) = self.partials.remove(&host) {
                if !(p.meta.journal == meta.journal && p.meta.offset == meta.offset) {
                    self.incomplete(&p, m.warm, "the next frame began");
                }
            }
            let mut data = Vec::with_capacity(m.payload.len() * n as usize);
            data.extend_from_slice(&m.payload);
            self.partials.insert(
                host.clone(),
                Partial {
                    meta,
                    first_seq: m.seq,
                    n,
                    next_k: 2,
                    data,
                },
            );
        } else {
            match self.partials.get_mut(&host) {
                Some(p)
                    if p.meta.journal == meta.journal
                        && p.meta.offset == meta.offset
                        && p.next_k == k
                        && p.n == n =>
                {
                    p.data.extend_from_slice(&m.payload);
                    p.next_k += 1;
                }
                _ => {
                    if let Some(p) = self.partials.remove(&host) {
                        self.incomplete(&p, m.warm, "a part of another frame came");
                    }
                    // A frame whose first parts precede the offset was committed (the
                    // offset stopped at another host's unfinished frame): nothing to do.
                    if !m.warm && !self.is_committed(&meta)? {
                        add(&self.stats.incomplete, 1);
                        tracing::error!(
                            "persist: message #{} is part {k}/{n} of {} frame {} whose earlier parts did not come (deleted or expired?); the frame is NOT in the database",
                            m.seq,
                            meta.key(),
                            meta.frame_no
                        );
                    }
                    return Ok(());
                }
            }
        }
        let whole = self.partials.get(&host).is_some_and(|p| p.next_k > p.n);
        if whole {
            if let Some(p) = self.partials.remove(&host) {
                return self.frame(&p.meta, &p.data, p.first_seq, m.seq, m.warm);
            }
        }
        Ok(())
    }

    fn incomplete(&mut self, p: &Partial, warm: bool, why: &str) {
        if warm
            || self
                .segs
                .get(&p.meta.key())
                .is_some_and(|s| p.meta.frame_no < s.next.max(s.committed_next))
        {
            return;
        }
        add(&self.stats.incomplete, 1);
        tracing::error!(
            "persist: {} frame {} (from message #{}): only {} of its {} parts came ({why}); unless its publisher sends it again, the frame is NOT in the database",
            p.meta.key(),
            p.meta.frame_no,
            p.first_seq,
            p.next_k - 1,
            p.n
        );
    }

    /// Whether `meta`'s frame is committed (the segment's row says so).
    fn is_committed(&mut self, meta: &Meta) -> anyhow::Result<bool> {
        let key = meta.key();
        self.load_seg(&key)?;
        Ok(self
            .segs
            .get(&key)
            .is_some_and(|s| meta.frame_no < s.committed_next.max(s.next)))
    }

    /// Makes sure `segs` has segment `key` if the database knows it.
    fn load_seg(&mut self, key: &str) -> anyhow::Result<()> {
        if self.segs.contains_key(key) {
            return Ok(());
        }
        let (stream, k) = (self.stream.clone(), key.to_string());
        let row = self.with_db("reading nats_segments", |c| {
            c.client()
                .query_opt(
                    "SELECT host, first_seq, first_frame, last_seq, frames FROM nats_segments
                      WHERE stream = $1 AND journal = $2",
                    &[&stream, &k],
                )
                .map_err(BatchError::Transient)
                .map(|r| {
                    r.map(|r| {
                        (
                            r.get::<_, String>(0),
                            r.get::<_, i64>(1),
                            r.get::<_, i64>(2),
                            r.get::<_, i64>(3),
                            r.get::<_, i64>(4),
                        )
                    })
                })
        })?;
        if let Some((host, first_seq, first_frame, last_seq, frames)) = row {
            let name = key.split_once('/').map_or(key, |(_, n)| n);
            self.segs.insert(
                key.to_string(),
                Seg {
                    host,
                    stream: segment_stream(name),
                    first_seq: first_seq as u64,
                    first_frame: first_frame as u64,
                    committed_next: frames as u64,
                    next: 0,
                    last_seq: last_seq as u64,
                    dirty: false,
                    projector: None,
                    warming: false,
                    warm_checked: true,
                },
            );
        }
        Ok(())
    }

    /// A whole frame, in messages `first_seq..=last_seq`; then the frames that waited
    /// for it.
    fn frame(
        &mut self,
        meta: &Meta,
        data: &[u8],
        first_seq: u64,
        last_seq: u64,
        warm: bool,
    ) -> anyhow::Result<()> {
        self.frame_at(meta, data, first_seq, last_seq, warm, true)?;
        if !warm {
            self.drain_held(&meta.key())?;
            set(&self.stats.held, self.held.len() as u64);
        }
        Ok(())
    }

    /// Projects the held frames of segment `key` that are next in line (and drops those
    /// projected meanwhile), in order.
    fn drain_held(&mut self, key: &str) -> anyhow::Result<()> {
        while let Some(next) = self.segs.get(key).map(|s| s.next.max(s.committed_next)) {
            let Some(h) = self.take_held(key, next) else {
                break;
            };
            self.frame_at(&h.meta, &h.data, h.first_seq, h.last_seq, false, true)?;
        }
        Ok(())
    }

    /// Takes segment `key`'s held frame of the lowest number, if that is at most `upto`.
    fn take_held(&mut self, key: &str, upto: u64) -> Option<Held> {
        let range = (key.to_string(), 0)..=(key.to_string(), upto);
        let k = self.held.range(range).next()?.0.clone();
        self.held.remove(&k)
    }

    /// Frames that waited longer than `reorder_wait` (every one, with `all`) go in
    /// without the earlier frames they waited for, segment by segment, in order.
    fn release_held(&mut self, all: bool) -> anyhow::Result<()> {
        let wait = self.opts.reorder_wait;
        let due: std::collections::BTreeSet<String> = self
            .held
            .iter()
            .filter(|(_, h)| all || h.since.elapsed() >= wait)
            .map(|((key, _), _)| key.clone())
            .collect();
        for key in due {
            while let Some(h) = self.take_held(&key, u64::MAX) {
                self.frame_at(&h.meta, &h.data, h.first_seq, h.last_seq, false, false)?;
                self.drain_held(&key)?;
            }
        }
        set(&self.stats.held, self.held.len() as u64);
        Ok(())
    }

    /// A whole frame; with `hold`, a frame past a gap in its segment waits (in `held`)
    /// for the missing ones instead of going in.
    fn frame_at(
        &mut self,
        meta: &Meta,
        data: &[u8],
        first_seq: u64,
        last_seq: u64,
        warm: bool,
        hold: bool,
    ) -> anyhow::Result<()> {
        let key = meta.key();
        if warm {
            let projection = &self.opts.projection;
            let Some(seg) = self.segs.get_mut(&key) else {
                return Ok(());
            };
            if !seg.warming || meta.frame_no < seg.next || meta.frame_no >= seg.committed_next {
                return Ok(());
            }
            if !seg.warm_checked {
                seg.warm_checked = true;
                if meta.frame_no != seg.first_frame {
                    tracing::warn!(
                        journal = %key,
                        "persist: {key}: re-reading starts at frame {} instead of {} (the stream no longer has the segment's first messages): its books are rebuilt from there",
                        meta.frame_no,
                        seg.first_frame
                    );
                }
            }
            let p = seg
                .projector
                .get_or_insert_with(|| Projector::new(projection.clone()));
            let pos = Position {
                journal: &key,
                stream: &seg.stream,
                frame_no: meta.frame_no as i64,
                offset: meta.offset,
            };
            // Nothing is written without emit: the batch stays as it is.
            let _ = p.record(&meta.record(data), pos, false, &mut self.batch);
            seg.next = meta.frame_no + 1;
            add(&self.stats.warmed, 1);
            return Ok(());
        }
        self.load_seg(&key)?;
        let refused = {
            let seg = self.segs.entry(key.clone()).or_insert_with(|| Seg {
                host: meta.host.clone(),
                stream: meta.stream.clone(),
                first_seq,
                first_frame: meta.frame_no,
                committed_next: 0,
                next: 0,
                last_seq: 0,
                dirty: false,
                projector: None,
                warming: false,
                warm_checked: true,
            });
            let pos = Position {
                journal: &key,
                stream: &seg.stream,
                frame_no: meta.frame_no as i64,
                offset: meta.offset,
            };
            let rec = meta.record(data);
            let expected = seg.next.max(seg.committed_next);
            if meta.frame_no < expected {
                // Projected already: only its raw_events row, which the table skips when
                // it has it (a frame arriving late, out of order, keeps at least that).
                Projector::raw_row(&rec, pos, &mut self.batch);
                add(&self.stats.seen_again, 1);
                return Ok(());
            }
            if meta.frame_no > expected && expected > 0 && hold {
                // An earlier frame may still come (a publisher's resend after a stream
                // leader died): wait for it, up to `reorder_wait`.
                if let btree_map::Entry::Vacant(v) = self.held.entry((key.clone(), meta.frame_no)) {
                    add(&self.stats.reordered, 1);
                    v.insert(Held {
                        meta: meta.clone(),
                        data: data.to_vec(),
                        first_seq,
                        last_seq,
                        since: Instant::now(),
                    });
                }
                return Ok(());
            }
            if meta.frame_no > expected && expected > 0 {
                tracing::error!(
                    journal = %key,
                    "persist: {key}: frames {expected}..{} did not come (deleted or expired from the stream?); they are NOT in the database (should they come later, only their raw_events rows are written: the books went on without them)",
                    meta.frame_no - 1
                );
            }
            if seg.projector.is_none() && seg.committed_next > 0 {
                tracing::warn!(
                    journal = %key,
                    "persist: {key}: its books restart empty at frame {}: the frames before were committed by an earlier run and not re-read (it was not its host's latest segment then); book_snapshots and top_of_book rows may differ from an uninterrupted run's",
                    meta.frame_no
                );
            }
            let projection = &self.opts.projection;
            let p = seg
                .projector
                .get_or_insert_with(|| Projector::new(projection.clone()));
            let mark = self.batch.mark();
            match p.record(&rec, pos, true, &mut self.batch) {
                Ok(()) => {
                    seg.next = meta.frame_no + 1;
                    seg.last_seq = last_seq;
                    seg.dirty = true;
                    None
                }
                Err(e) => {
                    self.batch.truncate_to(mark);
                    Some(e)
                }
            }
        };
        if let Some(e) = refused {
            // Commit what precedes this frame, then stop there: it is never skipped.
            self.processed = first_seq.saturating_sub(1);
            let before = if self.has_progress() {
                self.commit().err()
            } else {
                None
            };
            flag(&self.stats.db.halted, true);
            bail!(
                "{key} frame {} (message #{first_seq} of {}): {}; rows before it are committed, nothing at or after it is written (it is never skipped). Fix the cause and start again: reading resumes at this message{}",
                meta.frame_no,
                self.stream,
                e.reason,
                before
                    .map(|e| format!(" (committing the rows before it failed too: {e:#})"))
                    .unwrap_or_default()
            );
        }
        add(&self.stats.frames, 1);
        // The host moved on to another segment: the previous one's market is not needed.
        let host = meta.host.clone();
        if self.current.get(&host) != Some(&key) {
            if let Some(old) = self.current.insert(host, key) {
                if let Some(s) = self.segs.get_mut(&old) {
                    s.projector = None;
                }
            }
        }
        Ok(())
    }

    /// Writes the batch, the offset and the segments' rows in one transaction.
    fn commit(&mut self) -> anyhow::Result<()> {
        let to = self.commit_point();
        let prev = self.committed;
        let dirty: Vec<(String, String, i64, i64, i64, i64)> = self
            .segs
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(k, s)| {
                (
                    k.clone(),
                    s.host.clone(),
                    s.first_seq as i64,
                    s.first_frame as i64,
                    s.last_seq as i64,
                    s.next as i64,
                )
            })
            .collect();
        let stream = self.stream.clone();
        let mut batch = std::mem::take(&mut self.batch);
        let stats = self.stats.db.clone();
        let r = self.with_db("writing a batch", |c| {
            c.write(&mut batch, &stats, |tx| {
                let n = tx
                    .execute(
                        "INSERT INTO nats_offsets (stream, seq, updated_at) VALUES ($1, $2, now())
                         ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, updated_at = now()
                         WHERE nats_offsets.seq = $3 OR nats_offsets.seq = $2",
                        &[&stream, &(to as i64), &(prev as i64)],
                    )
                    .map_err(BatchError::Transient)?;
                if n == 0 {
                    let cur: i64 = tx
                        .query_one("SELECT seq FROM nats_offsets WHERE stream = $1", &[&stream])
                        .map_err(BatchError::Transient)?
                        .get(0);
                    return Err(BatchError::Other(PersistError::Conflict(format!(
                        "nats_offsets: stream {stream} was committed through #{cur} by another writer while this persister had it at #{prev}; nothing of this batch is committed. Run one `hermes persist --nats` per stream and database"
                    ))));
                }
                for (journal, host, first_seq, first_frame, last_seq, frames) in &dirty {
                    tx.execute(
                        "INSERT INTO nats_segments (stream, journal, host, first_seq, first_frame, last_seq, frames, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                         ON CONFLICT (stream, journal) DO UPDATE SET last_seq = excluded.last_seq,
                             frames = excluded.frames, updated_at = now()
                         WHERE nats_segments.frames <= excluded.frames",
                        &[&stream, journal, host, first_seq, first_frame, last_seq, frames],
                    )
                    .map_err(BatchError::Transient)?;
                }
                Ok(())
            })
        });
        self.batch = batch;
        if let Err(e) = r {
            return Err(e.context(format!(
                "messages #{}..=#{to} of {} (nothing of them is committed; the next start reads them again)",
                prev + 1,
                self.stream
            )));
        }
        self.committed = to;
        set(&self.stats.committed_seq, to);
        for s in self.segs.values_mut().filter(|s| s.dirty) {
            s.dirty = false;
            s.committed_next = s.next;
        }
        self.batch_since = None;
        Ok(())
    }
}

/// Why the main loop ended early.
enum Stop {
    /// The reader failed: commit what was handled, then report.
    Reader(String),
    /// Nothing more can be committed.
    Fatal(anyhow::Error),
}

// ---------------------------------------------------------------------------------------
// The reader thread: NATS only.

/// No message for this long while the stream holds newer ones: the consumer is created
/// again from the next sequence.
const STALL: Duration = Duration::from_secs(6);

fn reader(
    opts: NatsOptions,
    plan: Plan,
    tx: mpsc::SyncSender<In>,
    link: Arc<Link>,
    stats: Arc<SinkStats>,
    max_queued: usize,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(In::Failed(format!("starting the NATS runtime: {e}")));
            return;
        }
    };
    let r = rt.block_on(async {
        let client = crate::connect_watched(&opts, stats.nats_connected.clone()).await?;
        let js = crate::jetstream(client, &opts);
        let name = opts.stream(Kind::Raw);
        let mut r = Reader {
            js,
            stream: None,
            name,
            head: format!("{}.raw.", opts.subject_prefix),
            tx: &tx,
            link: &link,
            stats: &stats,
            max_queued,
            probe_at: None,
        };
        r.run(plan).await
    });
    if let Err(e) = r {
        let _ = tx.send(In::Failed(format!("{e:#}")));
    }
}

/// The receiving side went away (the database thread is stopping).
struct Closed;

struct Reader<'a> {
    js: async_nats::jetstream::Context,
    stream: Option<async_nats::jetstream::stream::Stream>,
    name: String,
    head: String,
    tx: &'a mpsc::SyncSender<In>,
    link: &'a Link,
    stats: &'a SinkStats,
    max_queued: usize,
    probe_at: Option<Instant>,
}

impl Reader<'_> {
    fn quit(&self) -> bool {
        // Relaxed: a request to stop; nothing is handed over with it.
        self.link.quit.load(Ordering::Relaxed)
    }

    async fn run(&mut self, plan: Plan) -> anyhow::Result<()> {
        if self.open().await.is_err() {
            return Ok(());
        }
        self.probe().await;
        let last = get(&self.stats.stream_last_seq);
        if last + 1 < plan.start {
            tracing::error!(
                "persist: stream {} ends at #{last} but the database has it committed through #{}: was the stream deleted and created again? To read it from its start, DELETE FROM nats_offsets WHERE stream = '{}' (rows already present are skipped)",
                self.name,
                plan.start - 1,
                self.name
            );
        }
        for w in &plan.warm {
            if self.warm(w).await.is_err() {
                return Ok(());
            }
            if self.send(In::WarmEnd(w.key.clone())).await.is_err() {
                return Ok(());
            }
        }
        let _ = self.follow(plan.start).await;
        Ok(())
    }

    /// Finds the stream, waiting for it (a publisher creates it).
    async fn open(&mut self) -> Result<(), Closed> {
        loop {
            if self.quit() {
                return Err(Closed);
            }
            let (js, name) = (&self.js, &self.name);
            match crate::retry(&format!("opening stream {name}"), || async {
                tokio::time::timeout(Duration::from_secs(5), js.get_stream(name))
                    .await
                    .map_err(|_| anyhow!("timed out"))?
                    .map_err(|e| anyhow!("{e}"))
            })
            .await
            {
                Ok(s) => {
                    self.stream = Some(s);
                    return Ok(());
                }
                Err(e) => tracing::warn!("persist: {e:#}; still trying (a publisher creates it: hermes run/record/replay --nats)"),
            }
        }
    }

    /// The stream's last sequence, and the age of the oldest message not committed.
    async fn probe(&mut self) {
        if self
            .probe_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.probe_at = Some(Instant::now());
        let Some(stream) = self.stream.as_ref() else {
            return;
        };
        let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), stream.get_info()).await
        else {
            return;
        };
        let last = info.state.last_sequence;
        set(&self.stats.stream_last_seq, last);
        let committed = get(&self.stats.committed_seq);
        if committed >= last {
            set(&self.stats.lag_ms, 0);
            return;
        }
        let oldest = (committed + 1).max(info.state.first_sequence);
        let mut got = tokio::time::timeout(Duration::from_secs(2), stream.direct_get(oldest))
            .await
            .ok()
            .and_then(Result::ok);
        if got.is_none() && !info.config.allow_direct {
            got = tokio::time::timeout(Duration::from_secs(2), stream.get_raw_message(oldest))
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some(m) = got {
            let age = time::OffsetDateTime::now_utc() - m.time;
            set(
                &self.stats.lag_ms,
                age.whole_milliseconds().clamp(0, u64::MAX as i128) as u64,
            );
        }
    }

    /// Hands `item` to the database thread, waiting while it is behind (the probe keeps
    /// the lag figures current meanwhile: a PostgreSQL outage is when they matter).
    async fn send(&mut self, item: In) -> Result<(), Closed> {
        let bytes = item.bytes();
        loop {
            if self.quit() {
                return Err(Closed);
            }
            // Relaxed: flow control only (an estimate of what waits in the channel); the
            // messages travel through the channel, which orders their memory.
            if self.link.queued.load(Ordering::Relaxed) < self.max_queued {
                break;
            }
            self.probe().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Relaxed: as above.
        self.link.queued.fetch_add(bytes, Ordering::Relaxed);
        let mut item = item;
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Full(i)) => {
                    item = i;
                    if self.quit() {
                        return Err(Closed);
                    }
                    self.probe().await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(Closed),
            }
        }
    }

    /// An ordered consumer of `filter` from `start` and the messages it holds then,
    /// retried until it exists (an election makes creation time out for a few seconds).
    async fn consumer(&mut self, filter: &str, start: u64) -> Result<(pull::Ordered, u64), Closed> {
        loop {
            if self.quit() {
                return Err(Closed);
            }
            let Some(stream) = self.stream.as_ref() else {
                return Err(Closed);
            };
            let max_payload = self.js.client().server_info().max_payload;
            let r = crate::retry(
                &format!("creating a consumer of {} at #{start}", self.name),
                || async {
                    let c = tokio::time::timeout(
                        Duration::from_secs(10),
                        stream.create_consumer(pull::OrderedConfig {
                            // Pulls expire after 5 s and heartbeats come every 2.5 s, so a
                            // consumer lost with its server is noticed within seconds.
                            max_expires: Duration::from_secs(5),
                            ..crate::ordered_config(
                                filter.to_string(),
                                DeliverPolicy::ByStartSequence {
                                    start_sequence: start.max(1),
                                },
                                max_payload,
                            )
                        }),
                    )
                    .await
                    .map_err(|_| anyhow!("timed out"))?
                    .map_err(|e| anyhow!("{e}"))?;
                    let pending = c.cached_info().num_pending;
                    let m = c.messages().await.map_err(|e| anyhow!("{e}"))?;
                    Ok((m, pending))
                },
            )
            .await;
            match r {
                Ok(v) => {
                    add(&self.stats.consumers, 1);
                    return Ok(v);
                }
                Err(e) => tracing::warn!("persist: {e:#}; still trying"),
            }
        }
    }

    /// Reads segment `w` again (its host's messages from its first through its last
    /// committed one) for the database thread to rebuild its books.
    async fn warm(&mut self, w: &Warm) -> Result<(), Closed> {
        let filter = format!("{}{}.>", self.head, w.host);
        let mut next = w.first_seq;
        'consumers: while next <= w.last_seq {
            let (mut msgs, pending) = self.consumer(&filter, next).await?;
            if pending == 0 {
                break;
            }
            let mut last_msg = Instant::now();
            loop {
                if self.quit() {
                    return Err(Closed);
                }
                match tokio::time::timeout(Duration::from_millis(250), msgs.next()).await {
                    Err(_) => {
                        if last_msg.elapsed() >= STALL {
                            tracing::warn!(
                                "persist: re-reading {}: no message for {STALL:?}; creating the consumer again at #{next}",
                                w.key
                            );
                            continue 'consumers;
                        }
                    }
                    Ok(None) | Ok(Some(Err(_))) => continue 'consumers,
                    Ok(Some(Ok(m))) => {
                        last_msg = Instant::now();
                        let Ok(info) = m.info() else {
                            continue 'consumers;
                        };
                        let (seq, left) = (info.stream_sequence, info.pending);
                        if seq < next {
                            continue;
                        }
                        if seq > w.last_seq {
                            break 'consumers;
                        }
                        next = seq + 1;
                        let (msg, _) = m.split();
                        self.send(In::Msg(RawMsg {
                            seq,
                            pending: left,
                            subject: msg.subject.to_string(),
                            headers: msg.headers,
                            payload: msg.payload,
                            warm: true,
                        }))
                        .await?;
                        if seq == w.last_seq || left == 0 {
                            break 'consumers;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The main read: every message of `<p>.raw.>` from `start`, in order, each checked
    /// to be the next sequence.
    async fn follow(&mut self, start: u64) -> Result<(), Closed> {
        let filter = format!("{}>", self.head);
        let mut next = start.max(1);
        loop {
            let (mut msgs, _) = self.consumer(&filter, next).await?;
            let mut last_msg = Instant::now();
            let mut behind = 0u32;
            loop {
                if self.quit() {
                    return Err(Closed);
                }
                self.probe().await;
                match tokio::time::timeout(Duration::from_millis(250), msgs.next()).await {
                    Err(_) => {
                        let last = get(&self.stats.stream_last_seq);
                        if last >= next && last_msg.elapsed() >= STALL {
                            tracing::warn!(
                                "persist: no message for {STALL:?} although {} holds messages through #{last}: creating the consumer again at #{next}",
                                self.name
                            );
                            break;
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(
                            "persist: the consumer of {} ended; creating it again at #{next}",
                            self.name
                        );
                        break;
                    }
                    Ok(Some(Err(e))) => {
                        tracing::warn!(
                            "persist: consumer of {}: {e}; creating it again at #{next}",
                            self.name
                        );
                        break;
                    }
                    Ok(Some(Ok(m))) => {
                        last_msg = Instant::now();
                        let info = match m.info() {
                            Ok(i) => i,
                            Err(e) => {
                                tracing::warn!("persist: a message of {} without its metadata ({e}); creating the consumer again at #{next}", self.name);
                                break;
                            }
                        };
                        let (seq, pending) = (info.stream_sequence, info.pending);
                        if seq < next {
                            // Delivered again (a consumer re-created from an earlier
                            // point): already handed over.
                            behind += 1;
                            if behind >= 1000 {
                                tracing::warn!("persist: the consumer of {} went back to #{seq}; creating it again at #{next}", self.name);
                                break;
                            }
                            continue;
                        }
                        behind = 0;
                        if seq > next {
                            self.send(In::Lost {
                                from: next,
                                to: seq - 1,
                            })
                            .await?;
                        }
                        next = seq + 1;
                        let (msg, _) = m.split();
                        self.send(In::Msg(RawMsg {
                            seq,
                            pending,
                            subject: msg.subject.to_string(),
                            headers: msg.headers,
                            payload: msg.payload,
                            warm: false,
                        }))
                        .await?;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut hd = HeaderMap::new();
        for (k, v) in pairs {
            hd.insert(*k, *v);
        }
        hd
    }

    #[test]
    fn raw_headers_are_read_back() {
        let hd = headers(&[
            (h::JOURNAL, "00000003.file-1a-ab.hcap"),
            (h::OFFSET, "4096"),
            (h::FRAME, "17"),
            (h::RECV_NS, "1700000000000000000"),
            (h::KIND, "rest"),
            (h::TAG, "BTCUSDT"),
            (h::CONN, "2"),
            (h::PART, "2/3"),
        ]);
        let m = parse_meta("hermes.raw.", "hermes.raw.a.binance", Some(&hd)).unwrap();
        assert_eq!(m.host, "a");
        assert_eq!(m.venue, Venue::Binance);
        assert_eq!(m.stream, "file-1a-ab");
        assert_eq!(m.key(), "a/00000003.file-1a-ab.hcap");
        assert_eq!((m.offset, m.frame_no, m.conn), (4096, 17, 2));
        assert_eq!(m.kind, RecordKind::RestDepth);
        assert_eq!(m.tag, "BTCUSDT");
        assert_eq!(m.part, Some((2, 3)));
        let rec = m.record(b"{}");
        assert_eq!(rec.tag, b"BTCUSDT");
        assert_eq!(rec.recv_ts_ns, 1_700_000_000_000_000_000);
    }

    #[test]
    fn malformed_messages_are_named_not_panicked_on() {
        let good = [
            (h::JOURNAL, "00000001.run-1-2.hcap"),
            (h::OFFSET, "64"),
            (h::FRAME, "0"),
            (h::RECV_NS, "5"),
            (h::KIND, "ws"),
            (h::CONN, "0"),
        ];
        let ok = headers(&good);
        assert!(parse_meta("hermes.raw.", "hermes.raw.a.coinbase", Some(&ok)).is_ok());
        let cases: Vec<(&str, HeaderMap, &str)> = vec![
            ("hermes.raw.a.nowhere", ok.clone(), "unknown venue"),
            (
                "hermes.raw.a",
                ok.clone(),
                "is not hermes.raw.<host>.<venue>",
            ),
            ("other.raw.a.coinbase", ok.clone(), "is not under"),
            ("hermes.raw.a.coinbase", HeaderMap::new(), "missing"),
        ];
        for (subject, hd, want) in cases {
            let e = parse_meta("hermes.raw.", subject, Some(&hd)).unwrap_err();
            assert!(e.contains(want), "{subject}: {e}");
        }
        assert!(parse_meta("hermes.raw.", "hermes.raw.a.coinbase", None)
            .unwrap_err()
            .contains("no headers"));
        for (k, bad, want) in [
            (h::OFFSET, "-1", "not a number"),
            (h::FRAME, "x", "not a number"),
            (h::KIND, "udp", "neither ws nor rest"),
            (h::CONN, "70000", "not a connection number"),
            (h::PART, "3/2", "not k/n"),
            (h::PART, "0/2", "not k/n"),
            (h::JOURNAL, "a/b", "not a segment file name"),
        ] {
            let mut hd = headers(&good);
            hd.insert(k, bad);
            let e = parse_meta("hermes.raw.", "hermes.raw.a.coinbase", Some(&hd)).unwrap_err();
            assert!(e.contains(want) && e.contains(k), "{k}={bad}: {e}");
        }
    }

    #[test]
    fn segment_streams() {
        assert_eq!(segment_stream("00000001.file-2f-abc.hcap"), "file-2f-abc");
        assert_eq!(segment_stream("00000012.run-3-1700.hcap"), "run-3-1700");
        assert_eq!(segment_stream("odd-name"), "odd-name");
        assert_eq!(segment_stream("x1.y.hcap"), "x1.y.hcap");
    }

    /// A RAW message as the publisher sends it.
    struct Sent {
        seq: u64,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    }

    fn message(
        seq: u64,
        host: &str,
        venue: &str,
        journal: &str,
        frame: u64,
        part: Option<(u32, u32)>,
        data: &[u8],
    ) -> Sent {
        let recv = (1_786_000_000_000 + frame as i64 * 150) * 1_000_000;
        let (recv, frame_s) = (recv.to_string(), frame.to_string());
        let offset = (64 + frame * 1000).to_string();
        let mut hd = headers(&[
            (h::JOURNAL, journal),
            (h::OFFSET, &offset),
            (h::FRAME, &frame_s),
            (h::RECV_NS, &recv),
            (h::KIND, "ws"),
            (h::CONN, "0"),
        ]);
        if let Some((k, n)) = part {
            hd.insert(h::PART, format!("{k}/{n}").as_str());
        }
        Sent {
            seq,
            subject: format!("hermes.raw.{host}.{venue}"),
            headers: hd,
            payload: Bytes::copy_from_slice(data),
        }
    }

    /// Host a: a Coinbase snapshot in three parts, then updates (and, after a publisher
    /// restart, two of them again); host b: Binance trades and tickers, its messages
    /// between a's parts.
    fn stream() -> Vec<Sent> {
        let ja = "00000001.run-1-1.hcap";
        let jb = "00000004.run-2-2.hcap";
        let level = |side: &str, px: u64, q: u64| {
            format!(
                r#"{{"side":"{side}","event_time":"2026-08-09T21:05:48.210883Z","price_level":"{}.{:02}","new_quantity":"0.{q:05}"}}"#,
                px / 100,
                px % 100
            )
        };
        let cb = |kind: &str, seq: u64, levels: Vec<String>| {
            format!(
                r#"{{"channel":"l2_data","client_id":"","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":{seq},"events":[{{"type":"{kind}","product_id":"BTC-USD","updates":[{}]}}]}}"#,
                levels.join(",")
            )
        };
        let mut snap = Vec::new();
        for k in 0..60 {
            snap.push(level("bid", 6_000_000 - k, 100 + k));
            snap.push(level("offer", 6_000_100 + k, 200 + k));
        }
        let snapshot = cb("snapshot", 0, snap).into_bytes();
        let third = snapshot.len() / 3;
        let a_frame = |f: u64| {
            cb(
                "update",
                f,
                vec![level(
                    if f % 2 == 0 { "bid" } else { "offer" },
                    6_000_000 + 50 * (f % 2) - f,
                    f,
                )],
            )
            .into_bytes()
        };
        let b_frame = |f: u64| {
            if f % 2 == 0 {
                format!(
                    r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{f},"s":"BTCUSDT","t":{f},"p":"6000{f}.5","q":"0.{f}1","T":{f},"m":true}}}}"#
                )
            } else {
                format!(
                    r#"{{"stream":"btcusdt@bookTicker","data":{{"u":{f},"s":"BTCUSDT","b":"6000{f}.1","B":"1.{f}","a":"6001{f}.2","A":"2.{f}"}}}}"#
                )
            }
            .into_bytes()
        };
        let mut out = Vec::new();
        let mut seq = 0;
        let mut push = |out: &mut Vec<Sent>, m: &dyn Fn(u64) -> Sent| {
            seq += 1;
            out.push(m(seq));
        };
        let (a, b) = ("a", "b");
        push(&mut out, &|s| {
            message(s, a, "coinbase", ja, 0, Some((1, 3)), &snapshot[..third])
        });
        push(&mut out, &|s| {
            message(s, b, "binance", jb, 0, None, &b_frame(0))
        });
        push(&mut out, &|s| {
            message(
                s,
                a,
                "coinbase",
                ja,
                0,
                Some((2, 3)),
                &snapshot[third..2 * third],
            )
        });
        push(&mut out, &|s| {
            message(s, b, "binance", jb, 1, None, &b_frame(1))
        });
        push(&mut out, &|s| {
            message(s, b, "binance", jb, 2, None, &b_frame(2))
        });
        push(&mut out, &|s| {
            message(
                s,
                a,
                "coinbase",
                ja,
                0,
                Some((3, 3)),
                &snapshot[2 * third..],
            )
        });
        for f in 1..=6u64 {
            push(&mut out, &|s| {
                message(s, a, "coinbase", ja, f, None, &a_frame(f))
            });
            push(&mut out, &|s| {
                message(s, b, "binance", jb, f + 2, None, &b_frame(f + 2))
            });
            if f == 4 {
                // The publisher restarted: frames 3 and 4 again.
                for g in [3, 4] {
                    push(&mut out, &|s| {
                        message(s, a, "coinbase", ja, g, None, &a_frame(g))
                    });
                }
            }
        }
        out
    }

    /// `stream()` with host a's frames 3 and 4 (each once) moved: just after its frame 2
    /// (in order), or (`late`) after everything: a stream leader died with them in
    /// flight, frames 5 and 6 went in first, the publisher's resend brought 3 and 4.
    fn moved(late: bool) -> Vec<Sent> {
        let frame = |m: &Sent| -> u64 {
            m.headers
                .get(h::FRAME)
                .map_or(0, |v| v.as_str().parse().unwrap())
        };
        let is_a = |m: &Sent| m.subject == "hermes.raw.a.coinbase";
        let (mut three_four, mut rest): (Vec<Sent>, Vec<Sent>) = stream()
            .into_iter()
            .partition(|m| is_a(m) && matches!(frame(m), 3 | 4));
        three_four.truncate(2);
        let at = if late {
            rest.len()
        } else {
            1 + rest.iter().position(|m| is_a(m) && frame(m) == 2).unwrap()
        };
        rest.splice(at..at, three_four);
        for (k, m) in rest.iter_mut().enumerate() {
            m.seq = k as u64 + 1;
        }
        rest
    }

    /// Frames of a segment stored out of order wait for the earlier ones: every table
    /// (books sampled by time included) ends as the in-order stream's, also when killed
    /// at any point meanwhile.
    #[test]
    fn frames_stored_out_of_order_go_in_in_order() {
        if !hermes_persist::local_pg::available_or_required() {
            return;
        }
        let pg = hermes_persist::local_pg::shared().unwrap();
        let want = one_run("sink_in_order", &moved(false));
        let late = moved(true);
        let url = pg.fresh_database("sink_late").unwrap();
        // Frames 5 and 6 waited for 3 and 4; none waits at the end.
        assert_eq!(run_sink(&url, 1000, &late, None), (2, 0));
        assert_eq!(tables(&url), want);
        for kill in 1..late.len() {
            let url = pg.fresh_database("sink_late_kill").unwrap();
            run_sink(&url, 1, &late, Some(kill));
            run_sink(&url, 1, &late, None);
            assert_eq!(tables(&url), want, "killed after {kill}");
        }
    }

    fn raw(m: &Sent, warm: bool) -> In {
        In::Msg(RawMsg {
            seq: m.seq,
            pending: 0,
            subject: m.subject.clone(),
            headers: Some(m.headers.clone()),
            payload: m.payload.clone(),
            warm,
        })
    }

    /// One persister run over `msgs` as the reader would hand them over (the re-reading
    /// the plan asks for, then everything from its start), stopping after `upto` main
    /// messages without committing the rest (a kill -9), or committing at the end.
    /// Its (frames that waited for an earlier one, frames still waiting at the end).
    fn run_sink(url: &str, batch_rows: usize, msgs: &[Sent], upto: Option<usize>) -> (u64, u64) {
        let mut opts = Options::new(NatsOptions::new("nats://127.0.0.1:1"), url);
        opts.batch_rows = batch_rows;
        opts.batch_age = Duration::from_secs(3600);
        let stats = SinkStats::default();
        let stop = AtomicBool::new(false);
        let mut sink = Sink::new(&opts, &stats, &stop, Instant::now());
        let plan = sink.start().unwrap();
        for w in &plan.warm {
            let sub = format!("hermes.raw.{}.", w.host);
            for m in msgs.iter().filter(|m| {
                m.subject.starts_with(&sub) && (w.first_seq..=w.last_seq).contains(&m.seq)
            }) {
                sink.take(raw(m, true)).ok().unwrap();
            }
            sink.take(In::WarmEnd(w.key.clone())).ok().unwrap();
        }
        let main = msgs.iter().filter(|m| m.seq >= plan.start);
        for (k, m) in main.enumerate() {
            if upto.is_some_and(|u| k >= u) {
                // killed: nothing more is committed
                return (get(&stats.reordered), get(&stats.held));
            }
            sink.take(raw(m, false)).ok().unwrap();
            if sink.due() {
                sink.commit().unwrap();
            }
        }
        if sink.has_progress() {
            sink.commit().unwrap();
        }
        assert_eq!(
            get(&stats.lost) + get(&stats.incomplete) + get(&stats.malformed),
            0
        );
        (get(&stats.reordered), get(&stats.held))
    }

    /// The tables of one uninterrupted run over `msgs` into a fresh database.
    fn one_run(prefix: &str, msgs: &[Sent]) -> Vec<(String, i64, String)> {
        let url = hermes_persist::local_pg::shared()
            .unwrap()
            .fresh_database(prefix)
            .unwrap();
        run_sink(&url, 1000, msgs, None);
        tables(&url)
    }

    fn tables(url: &str) -> Vec<(String, i64, String)> {
        let mut c = BatchWriter::connect(url, "test").unwrap();
        let mut out = Vec::new();
        for t in hermes_persist::TABLES.iter().chain(&["nats_offsets"]) {
            let cols = if *t == "nats_offsets" {
                "stream, seq"
            } else {
                "*"
            };
            let r = c
                .client()
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(r::text, ',' ORDER BY r::text)), '') FROM (SELECT {cols} FROM {t}) r"
                    ),
                    &[],
                )
                .unwrap();
            out.push((t.to_string(), r.get(0), r.get(1)));
        }
        out
    }

    /// Killed after every message, with batches of one row and of four: every table
    /// (book snapshots and top of book included) ends as one uninterrupted run's, and
    /// `raw_events` has each frame once: parts of a frame never split across commits,
    /// frames committed past the offset (another host's frame was unfinished) are not
    /// projected twice, the segment's market is rebuilt from its first message.
    #[test]
    fn killed_after_any_message_the_rows_are_an_uninterrupted_runs() {
        if !hermes_persist::local_pg::available_or_required() {
            return;
        }
        let pg = hermes_persist::local_pg::shared().unwrap();
        let msgs = stream();
        let want = one_run("sink_once", &msgs);
        assert_eq!(want[0].1, 1 + 6 + 9, "raw_events: {want:?}");
        assert!(want.iter().take(4).all(|t| t.1 > 0), "{want:?}");
        let all = hermes_persist::TABLES.join(", ");
        // Every kill point with batches of one row; with batches of four, those around
        // the split frame and the resend, killed twice in a row.
        let every: Vec<usize> = (1..msgs.len()).collect();
        for (batch_rows, kills, times) in [(1, every, 1), (4, vec![2, 5, 14], 2)] {
            let url = pg.fresh_database("sink_kill").unwrap();
            for (n, &kill) in kills.iter().enumerate() {
                if n > 0 {
                    let mut c = BatchWriter::connect(&url, "test").unwrap();
                    c.client()
                        .batch_execute(&format!("TRUNCATE {all}, nats_offsets, nats_segments"))
                        .unwrap();
                }
                // Killed `kill` messages into a run (`times` runs), then a run to the end.
                for _ in 0..times {
                    run_sink(&url, batch_rows, &msgs, Some(kill));
                }
                run_sink(&url, batch_rows, &msgs, None);
                assert_eq!(
                    tables(&url),
                    want,
                    "batches of {batch_rows}, killed after {kill}"
                );
            }
        }
    }
}
