//! `hermes mirror`: the books of another host, in a local shm file.
//!
//! 1. An ordered consumer on the SNAP stream delivers the last SNAP of every subject
//!    (then every new one); each is restored into this host's [`Market`] and published
//!    to shm.
//! 2. An ordered consumer on the MD stream starts just after the MD messages those SNAPs
//!    include (`Hermes-MD-Stream-Seq`; without one, 10 s before the oldest SNAP), and
//!    every message whose `Hermes-Seq` is the next of its symbol and epoch is applied
//!    through the same market model into shm.
//! 3. A sequence gap (a lost or deleted message, a consumer recreated past one) or a
//!    new epoch (another host took the lease) marks the instrument stale in shm; its
//!    messages are buffered until the next SNAP, which it is restored from, and the
//!    buffer is replayed after it. Messages of an older epoch than the newest seen are
//!    ignored (a host that lost the lease).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::DeliverPolicy;
use bytes::Bytes;
use futures_util::StreamExt;
use hermes_book::kernels::KernelConfig;
use hermes_book::{Event, InstId};
use hermes_engine::Publisher;
use hermes_shm::{ShmWriter, WriterOptions};

use crate::headers as h;
use crate::{Kind, MirrorStats, NatsOptions};

/// What to mirror and where.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// Servers and prefixes (the publisher's).
    pub nats: NatsOptions,
    /// The local shm file (none: only `--print-final`).
    pub shm: Option<PathBuf>,
    /// Slots in it.
    pub shm_slots: u32,
    /// Only these symbols (`SYMBOL` or `venue:SYMBOL`); empty = all.
    pub symbols: Vec<String>,
    /// Stop after this long without a message.
    pub until_idle: Option<Duration>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// The kernels' settings (must be the publisher's for equal analytics).
    pub kernels: KernelConfig,
    /// Messages buffered per instrument while it waits for a SNAP.
    pub max_buffer: usize,
}

/// One instrument as the mirror follows it.
#[derive(Default)]
struct Follow {
    own: Option<InstId>,
    /// Synced: applying MD of (epoch, after seq).
    synced: bool,
    epoch: u64,
    seq: u64,
    /// The newest epoch seen for it.
    max_epoch: u64,
    /// Was synced once (a later sync is a resync).
    was_synced: bool,
    buffer: VecDeque<(u64, u64, Bytes)>,
}

struct Mirror<'a> {
    opts: &'a MirrorOptions,
    books: Publisher,
    insts: HashMap<String, Follow>,
    stats: &'a MirrorStats,
}

/// Runs the mirror until idle, the duration, or `stop`; returns the books.
pub fn run(
    opts: &MirrorOptions,
    stats: &MirrorStats,
    stop: &AtomicBool,
) -> anyhow::Result<Publisher> {
    opts.nats.validate()?;
    let shm = match &opts.shm {
        Some(p) => Some(
            ShmWriter::create(
                p,
                WriterOptions {
                    slots: opts.shm_slots,
                    group_readable: false,
                    replace_foreign: false,
                },
            )
            .map_err(|e| anyhow::anyhow!("creating the shm file {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let mut m = Mirror {
        opts,
        books: Publisher::new(shm, opts.kernels),
        insts: HashMap::new(),
        stats,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(m.follow(stop))?;
    Ok(m.books)
}

fn epoch_seq(hd: Option<&async_nats::HeaderMap>) -> Option<(u64, u64)> {
    Some((h::num(hd, h::EPOCH)?, h::num(hd, h::SEQ)?))
}

impl Mirror<'_> {
    fn wanted(&self, key: &str) -> bool {
        if self.opts.symbols.is_empty() {
            return true;
        }
        let (venue, sym) = key.split_once('.').unwrap_or(("", key));
        let sym = crate::token_symbol(sym).unwrap_or_default();
        self.opts
            .symbols
            .iter()
            .any(|s| *s == sym || *s == format!("{venue}:{sym}"))
    }

    /// `<venue>.<token>` of a subject `<p>.<kind>.<venue>.<token>`.
    fn key(subject: &str) -> Option<String> {
        let mut it = subject.splitn(3, '.');
        it.next()?;
        it.next()?;
        Some(it.next()?.to_string())
    }

    async fn follow(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        let nats = &self.opts.nats;
        let client = crate::connect_watched(nats, self.stats.connected.clone()).await?;
        let js = crate::jetstream(client, nats);
        let (snap_name, md_name) = (nats.stream(Kind::Snap), nats.stream(Kind::Md));
        let started = Instant::now();
        // The streams appear when a publisher first runs: wait for them.
        let (snap_stream, md_stream) = loop {
            match (
                js.get_stream(&snap_name).await,
                js.get_stream(&md_name).await,
            ) {
                (Ok(a), Ok(b)) => break (a, b),
                (a, _) => {
                    // The shm file's readers see a live writer that has nothing yet.
                    self.books.heartbeat();
                    if stop.load(Ordering::Relaxed) || self.out_of_time(started, started) {
                        return Ok(());
                    }
                    tracing::info!(
                        "mirror: waiting for the streams {snap_name} and {md_name} ({})",
                        a.err()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "MD missing".into())
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        // Known once connected (the streams were found through the server).
        let max_payload = js.client().server_info().max_payload;
        // 1. The last SNAP of every subject, then each new one.
        let snaps_stored = snap_stream
            .get_info()
            .await
            .map(|i| i.state.messages)
            .unwrap_or(0);
        let mut snaps = crate::retry("creating the SNAP consumer", || {
            let filter = format!("{}.snap.>", nats.subject_prefix);
            crate::ordered(
                &snap_stream,
                filter,
                DeliverPolicy::LastPerSubject,
                max_payload,
            )
        })
        .await?;
        let mut start_seq: Option<u64> = None;
        let mut start_time: Option<i128> = None;
        let mut all_have_seq = true;
        if snaps_stored > 0 {
            while let Some(msg) =
                tokio::time::timeout(Duration::from_secs(10), snaps.next()).await?
            {
                let msg = msg.map_err(|e| anyhow::anyhow!("SNAP consumer: {e}"))?;
                let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
                let pending = info.pending;
                let t = info.published.unix_timestamp_nanos();
                match h::num(msg.headers.as_ref(), h::MD_STREAM_SEQ) {
                    Some(s) => start_seq = Some(start_seq.map_or(s, |x| x.min(s))),
                    None => all_have_seq = false,
                }
                start_time = Some(start_time.map_or(t, |x| x.min(t)));
                self.on_snap(&msg.subject, msg.headers.as_ref(), &msg.payload);
                if pending == 0 {
                    break;
                }
            }
        }
        // 2. MD just after what the SNAPs include.
        let policy = match (start_seq, start_time) {
            (Some(s), _) if all_have_seq => DeliverPolicy::ByStartSequence {
                start_sequence: s + 1,
            },
            (_, Some(t)) => DeliverPolicy::ByStartTime {
                start_time: time_from_ns(t - 10_000_000_000),
            },
            _ => DeliverPolicy::All,
        };
        tracing::info!(
            instruments = self.insts.len(),
            "mirror: {} SNAP(s) loaded; following MD from {policy:?}",
            self.stats.snaps.load(Ordering::Relaxed)
        );
        let mut md = crate::retry("creating the MD consumer", || {
            let filter = format!("{}.md.>", nats.subject_prefix);
            crate::ordered(&md_stream, filter, policy, max_payload)
        })
        .await?;
        self.stats.following.store(true, Ordering::Relaxed);
        let mut last_msg = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                m = md.next() => match m {
                    Some(Ok(msg)) => {
                        last_msg = Instant::now();
                        if let Ok(info) = msg.info() {
                            self.stats.md_pending.store(info.pending, Ordering::Relaxed);
                        }
                        self.on_md(&msg.subject, msg.headers.as_ref(), msg.payload.clone());
                    }
                    Some(Err(e)) => {
                        // The ordered consumer recreates itself; a gap it causes is seen
                        // in the sequence numbers.
                        tracing::warn!("mirror: MD consumer: {e}");
                    }
                    None => anyhow::bail!("mirror: the MD consumer ended"),
                },
                m = snaps.next() => match m {
                    Some(Ok(msg)) => {
                        last_msg = Instant::now();
                        self.on_snap(&msg.subject, msg.headers.as_ref(), &msg.payload);
                    }
                    Some(Err(e)) => tracing::warn!("mirror: SNAP consumer: {e}"),
                    None => anyhow::bail!("mirror: the SNAP consumer ended"),
                },
                _ = tick.tick() => {
                    self.books.heartbeat();
                    if stop.load(Ordering::Relaxed) || self.out_of_time(started, last_msg) {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn out_of_time(&self, started: Instant, last: Instant) -> bool {
        self.opts.until_idle.is_some_and(|d| last.elapsed() >= d)
            || self.opts.duration.is_some_and(|d| started.elapsed() >= d)
    }

    /// Publishes the instrument counts, the names of those waiting for a SNAP and the
    /// newest epoch to the stats (on every change of sync state).
    fn counts(&self) {
        let mut unsynced: Vec<String> = self
            .insts
            .iter()
            .filter(|(_, f)| !f.synced)
            .map(|(k, _)| match k.split_once('.') {
                Some((venue, tok)) => {
                    format!("{venue}:{}", crate::token_symbol(tok).unwrap_or_default())
                }
                None => k.clone(),
            })
            .collect();
        unsynced.sort();
        let epoch = self.insts.values().map(|f| f.max_epoch).max().unwrap_or(0);
        let s = self.stats;
        s.synced.store(
            (self.insts.len() - unsynced.len()) as u64,
            Ordering::Relaxed,
        );
        s.instruments
            .store(self.insts.len() as u64, Ordering::Relaxed);
        s.epoch.store(epoch, Ordering::Relaxed);
        if let Ok(mut u) = s.unsynced.lock() {
            *u = unsynced;
        }
    }

    fn on_snap(&mut self, subject: &str, hd: Option<&async_nats::HeaderMap>, payload: &[u8]) {
        let Some(key) = Self::key(subject) else {
            return;
        };
        if !self.wanted(&key) {
            return;
        }
        let Some((epoch, seq)) = epoch_seq(hd) else {
            MirrorStats::add(&self.stats.bad, 1);
            tracing::warn!(
                subject,
                "mirror: a SNAP without Hermes-Epoch/Hermes-Seq: ignored"
            );
            return;
        };
        let f = self.insts.entry(key.clone()).or_default();
        if epoch < f.max_epoch || (f.synced && epoch == f.epoch && seq <= f.seq) {
            return; // older than what is applied
        }
        if epoch > f.max_epoch && f.max_epoch != 0 {
            MirrorStats::add(&self.stats.epoch_changes, 1);
            tracing::info!(
                symbol = key,
                epoch,
                "mirror: a new epoch (another publisher holds the lease)"
            );
        }
        let cp = match hermes_book::checkpoint::decode_checkpoint(payload) {
            Ok(c) => c,
            Err(e) => {
                MirrorStats::add(&self.stats.bad, 1);
                tracing::warn!(subject, "mirror: a SNAP could not be decoded: {e}");
                return;
            }
        };
        let own = self.books.restore(cp);
        MirrorStats::add(&self.stats.snaps, 1);
        let f = self.insts.get_mut(&key).expect("present");
        if f.was_synced && !f.synced {
            MirrorStats::add(&self.stats.resyncs, 1);
        }
        f.own = Some(own);
        f.synced = true;
        f.was_synced = true;
        f.epoch = epoch;
        f.seq = seq;
        f.max_epoch = f.max_epoch.max(epoch);
        // What arrived while waiting, after the SNAP.
        let buffered: Vec<_> = f.buffer.drain(..).collect();
        for (e, s, p) in buffered {
            self.md(&key, e, s, p);
        }
        self.counts();
    }

    fn on_md(&mut self, subject: &str, hd: Option<&async_nats::HeaderMap>, payload: Bytes) {
        let Some(key) = Self::key(subject) else {
            return;
        };
        if !self.wanted(&key) {
            return;
        }
        let Some((epoch, seq)) = epoch_seq(hd) else {
            MirrorStats::add(&self.stats.bad, 1);
            return;
        };
        self.md(&key, epoch, seq, payload);
    }

    fn md(&mut self, key: &str, epoch: u64, seq: u64, payload: Bytes) {
        let max_buffer = self.opts.max_buffer;
        let new = !self.insts.contains_key(key);
        let f = self.insts.entry(key.to_string()).or_default();
        if epoch < f.max_epoch {
            MirrorStats::add(&self.stats.old_epoch, 1);
            return;
        }
        if epoch > f.max_epoch {
            if f.max_epoch != 0 {
                MirrorStats::add(&self.stats.epoch_changes, 1);
                tracing::info!(
                    symbol = key,
                    epoch,
                    "mirror: a new epoch: waiting for its SNAP"
                );
            }
            f.max_epoch = epoch;
        }
        if f.synced && epoch == f.epoch {
            if seq <= f.seq {
                MirrorStats::add(&self.stats.skipped, 1);
                return;
            }
            if seq == f.seq + 1 {
                f.seq = seq;
                let own = f.own.expect("synced has an instrument");
                self.apply(own, &payload, key);
                return;
            }
            MirrorStats::add(&self.stats.gaps, 1);
            tracing::warn!(
                symbol = key,
                expected = f.seq + 1,
                got = seq,
                "mirror: MD gap: stale until the next SNAP"
            );
        }
        if f.synced {
            // A gap, or the epoch changed under a synced instrument.
            f.synced = false;
            if let Some(own) = f.own {
                self.books.apply(&Event::Stale {
                    inst: own,
                    stale: true,
                });
            }
            self.counts();
        }
        let f = self.insts.get_mut(key).expect("present");
        f.buffer.push_back((epoch, seq, payload));
        if f.buffer.len() > max_buffer {
            f.buffer.pop_front();
        }
        if new {
            // MD before any SNAP of it: known, waiting.
            self.counts();
        }
    }

    fn apply(&mut self, own: InstId, payload: &[u8], key: &str) {
        let books = &mut self.books;
        let stats = self.stats;
        let mut last_commit = (0i64, 0i64);
        let r = hermes_book::wire::decode_events(payload, own, |ev| {
            books.apply(&ev);
            if let Event::Commit {
                exch_ts_ns,
                recv_ts_ns,
                ..
            } = ev
            {
                last_commit = (exch_ts_ns, recv_ts_ns);
            }
        });
        match r {
            Ok(_) => {
                MirrorStats::add(&stats.applied, 1);
                let (exch, recv) = last_commit;
                let now = hermes_book::clock::unix_ns();
                // Only what this run saw live (a replay publishes a recording's times).
                if recv > 0 && (0..60_000_000_000).contains(&(now - recv)) {
                    if let Ok(mut hg) = stats.recv_visible_ns.lock() {
                        hg.saturating_record((now - recv).max(1_000) as u64);
                    }
                    if exch > 0 {
                        if let Ok(mut hg) = stats.exch_visible_ns.lock() {
                            hg.saturating_record((now - exch).max(1_000) as u64);
                        }
                    }
                }
            }
            Err(e) => {
                MirrorStats::add(&stats.bad, 1);
                tracing::warn!(
                    symbol = key,
                    "mirror: an MD message could not be decoded ({e}): stale until the next SNAP"
                );
                let f = self.insts.get_mut(key).expect("present");
                f.synced = false;
                self.books.apply(&Event::Stale {
                    inst: own,
                    stale: true,
                });
                self.counts();
            }
        }
    }
}

fn time_from_ns(ns: i128) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
