//! The publisher: RAW from the journal, MD and SNAP from the book thread, under a lease.
//!
//! ```text
//! book thread ── BusTap (EventTap; rtrb ring, never blocks) ──► publisher thread
//!                                                                  │ own Market (same events)
//! journal ── JournalFollower (a registered reader) ─────────────►  ├─ RAW  (every record)
//!                                                                  ├─ MD   (lease holder only)
//!                                                                  └─ SNAP (lease holder only)
//! ```
//!
//! **Publishing.** Publishes are pipelined: up to `max_inflight` wait for their ack.
//! When an ack fails (a timeout while the stream elects a leader, a lost connection),
//! the publisher stops, drops the acks it was waiting for, and sends every unacknowledged
//! message again, in order, with the same `Nats-Msg-Id`, one at a time until each is
//! acknowledged: JetStream's dedupe absorbs the ones it had stored. MD cannot land out of
//! order either: when a stream's leader dies with messages k… in flight, messages sent
//! after the election would otherwise be stored before k's resend; each MD message names
//! the one sent before it (`Nats-Expected-Last-Msg-Id`), so the stream refuses them until
//! k is in, and they are sent again after it. (A new epoch starts the chain afresh; a
//! resend refused only because another publisher's message is last starts it again; MD
//! of an epoch no longer held is dropped from the resend.)
//!
//! **RAW** follows the journal as one more registered reader: retention keeps a segment
//! until RAW has been acknowledged through its end. Every message carries
//! `Hermes-Acked-Through`, the position before which everything was acknowledged when
//! it was sent; a restart reads the last message of each of its subjects and resumes at
//! the largest such position (what was in flight then is sent again: dedupe drops it
//! within the 2-minute window, and a consumer that keys rows by journal position stays
//! exact beyond it).
//!
//! **MD** groups one frame's changes to an instrument (levels up to its commit) into one
//! message, and sends each standalone event (quote, trade, mark price, liquidation,
//! stale flag) as one; `Hermes-Seq` counts messages per symbol and epoch from 1.
//!
//! **SNAP** checkpoints the publisher's own copy of the instrument (it applies the same
//! events to its own [`Market`]) every `snap_every` or `snap_every_msgs` messages, once the
//! MD message it includes is acknowledged, so it can name that message's stream
//! sequence; on taking the lease, and at the end, every instrument.
//!
//! **The lease.** A key in a JetStream KV bucket whose max age is the lease TTL: the
//! holder refreshes it every third of the TTL by compare-and-set on its revision; the
//! others try to create it. The revision of a successful create is the new epoch. The
//! holder stops MD the moment a refresh fails or the TTL passes since the last good one;
//! a new holder publishes SNAPs of every instrument first.
//!
//! **The ring.** When it is full the book thread drops the event (it never waits) and, as
//! soon as there is room, hands over a checkpoint of every instrument of its market; the
//! publisher restores them, publishes SNAPs, and skips an MD sequence number so mirrors
//! resync from those SNAPs.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::future::{maybe_done, MaybeDone};
use hermes_book::market::Applied;
use hermes_book::{Event, InstId, Market, Venue};
use hermes_engine::EventTap;
use hermes_persist::JournalFollower;

use crate::headers as h;
use crate::{Kind, NatsOptions, PublishStats};

/// What the book thread hands the publisher.
enum Item {
    Event(Event),
    /// After dropped events: every instrument of the engine's market, by engine id.
    Resync(Vec<Vec<u8>>),
    End,
}

struct Shared {
    /// The publisher is about to wait: the tap must wake it.
    parked: AtomicBool,
    wake: tokio::sync::Notify,
    stats: Arc<PublishStats>,
}

/// The book thread's side: an [`EventTap`] pushing into the publisher's ring.
pub struct BusTap {
    tx: rtrb::Producer<Item>,
    shared: Arc<Shared>,
    lost: bool,
}

impl BusTap {
    fn wake(&self) {
        // SeqCst: pairs with the publisher's SeqCst store of `parked` before its last
        // look at the ring; one of the two sees the other (no lost wake-up).
        if self.shared.parked.load(Ordering::SeqCst) {
            self.shared.wake.notify_one();
        }
    }

    fn recover(&mut self, market: &Market) {
        if self.tx.slots() < 2 {
            return;
        }
        let cps = market
            .instruments()
            .iter()
            .map(|i| {
                let mut b = Vec::new();
                i.checkpoint(&mut b);
                b
            })
            .collect();
        if self.tx.push(Item::Resync(cps)).is_ok() {
            self.lost = false;
            self.wake();
        }
    }
}

impl EventTap for BusTap {
    #[inline]
    fn event(&mut self, ev: &Event, market: &Market) {
        if self.lost {
            self.recover(market);
            if self.lost {
                PublishStats::add(&self.shared.stats.ring_dropped, 1);
                return;
            }
        }
        if self.tx.push(Item::Event(*ev)).is_err() {
            self.lost = true;
            PublishStats::add(&self.shared.stats.ring_dropped, 1);
        }
        self.wake();
    }

    fn idle(&mut self, market: &Market) {
        if self.lost {
            self.recover(market);
        }
    }

    fn finish(&mut self, market: &Market) {
        // The end may wait: the engine is done, and the publisher must see everything.
        while self.lost {
            self.recover(market);
            if self.lost {
                self.wake();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let mut item = Item::End;
        loop {
            match self.tx.push(item) {
                Ok(()) => break,
                Err(rtrb::PushError::Full(i)) => {
                    item = i;
                    self.wake();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        self.wake();
    }
}

/// A running publisher thread.
pub struct Publisher {
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
    stats: Arc<PublishStats>,
    stop: Arc<AtomicBool>,
}

impl Publisher {
    /// Its counters.
    pub fn stats(&self) -> Arc<PublishStats> {
        self.stats.clone()
    }

    /// Waits until everything handed over is published and acknowledged (the engine must
    /// have finished: the tap sent its end), the lease released.
    ///
    /// After `drain` with a cluster that does not answer, it stops trying: what was not
    /// acknowledged stays in the journal, and the next start sends RAW again from the
    /// last acknowledged position.
    pub fn finish(self, drain: Duration) -> anyhow::Result<Arc<PublishStats>> {
        let deadline = Instant::now() + drain;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !self.thread.is_finished() {
            tracing::warn!(
                "NATS: not everything was acknowledged within {drain:?}; giving up (RAW resumes from the journal at the next start)"
            );
            self.stop.store(true, Ordering::Relaxed);
        }
        let r = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the NATS publisher thread panicked"))?;
        r?;
        Ok(self.stats)
    }
}

/// Starts the publisher thread: MD and SNAP from the returned tap (put it in
/// [`hermes_engine::EngineOptions::event_tap`]) when `opts.md`, RAW from `journal` when
/// given and `opts.raw`.
pub fn start(
    opts: NatsOptions,
    journal: Option<JournalFollower>,
) -> anyhow::Result<(BusTap, Publisher)> {
    opts.validate()?;
    let stats = Arc::new(PublishStats::default());
    let (tx, rx) = rtrb::RingBuffer::new(opts.ring_events.max(16));
    let shared = Arc::new(Shared {
        parked: AtomicBool::new(false),
        wake: tokio::sync::Notify::new(),
        stats: stats.clone(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mark = journal
        .as_ref()
        .filter(|_| opts.raw)
        .map(|j| (j.clone(), j.register_reader()));
    let (sh, st) = (shared.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("hermes-nats".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let stats = sh.stats.clone();
            let r = rt.block_on(run(opts, rx, sh, mark, st));
            if let Err(e) = &r {
                tracing::error!("NATS publisher stopped: {e:#}");
                stats.error(format!("{e:#}"));
            }
            r
        })?;
    Ok((
        BusTap {
            tx,
            shared,
            lost: false,
        },
        Publisher {
            thread,
            stats,
            stop,
        },
    ))
}

/// An ack on its way, holding its result once it arrived (polled by
/// [`Pipe::head_acked`] without being taken off the queue).
type AckFut = MaybeDone<Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>>>>>;

/// A message that may have to be sent again.
#[derive(Clone)]
struct Msg {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    /// `Nats-Expected-Last-Msg-Id`: the id of the MD message sent before this one (MD
    /// only): the stream stores it only right after that one, so a message sent while an
    /// earlier one was lost (a leader dying with messages in flight) is refused instead
    /// of landing before it.
    expect_last: Option<String>,
}

impl Msg {
    fn publish(&self) -> PublishMessage {
        let mut headers = self.headers.clone();
        if let Some(id) = &self.expect_last {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
                id.as_str(),
            );
        }
        PublishMessage::build()
            .payload(self.payload.clone())
            .headers(headers)
    }
}

/// What an acknowledged message means to its sender.
#[derive(Clone, Copy)]
enum Meta {
    /// A RAW record (its position: segment, offset; whether the last part of its frame).
    Raw { seg: u64, offset: u64, last: bool },
    /// An MD message of engine instrument `inst`, sequence `seq`, epoch `epoch`.
    Md { inst: u32, seq: u64, epoch: u64 },
    /// A SNAP.
    Snap,
}

/// In-order pipelined publishing with resend on error (see the module docs).
struct Pipe {
    js: async_nats::jetstream::Context,
    stop: Arc<AtomicBool>,
    max: usize,
    inflight: VecDeque<(AckFut, Msg, Meta, i64, Instant)>,
    stats: Arc<PublishStats>,
    /// The epoch MD is published under now (0: none); a resend drops MD of another.
    md_epoch: u64,
}

impl Pipe {
    fn new(
        js: async_nats::jetstream::Context,
        max: usize,
        stats: Arc<PublishStats>,
        stop: Arc<AtomicBool>,
    ) -> Pipe {
        Pipe {
            js,
            stop,
            max: max.max(1),
            inflight: VecDeque::new(),
            stats,
            md_epoch: 0,
        }
    }

    /// Sends `m`; acknowledgments that arrived meanwhile are passed to `done`.
    async fn send(
        &mut self,
        m: Msg,
        meta: Meta,
        recv_ns: i64,
        done: &mut impl FnMut(Meta, &PublishAck),
    ) {
        while self.inflight.len() >= self.max {
            self.wait_one(done).await;
        }
        match self.js.send_publish(m.subject.clone(), m.publish()).await {
            Ok(ack) => {
                let fut: AckFut = maybe_done(Box::pin(IntoFuture::into_future(ack)));
                self.inflight
                    .push_back((fut, m, meta, recv_ns, Instant::now()));
            }
            Err(e)
                if e.kind()
                    == async_nats::jetstream::context::PublishErrorKind::MaxPayloadExceeded =>
            {
                // Never sendable: say so, drop it (RAW frames and MD are split to fit;
                // this is a SNAP of a book too large for the server's max_payload).
                self.stats.error(format!(
                    "{} ({} bytes) is over the server's max_payload: set max_payload (e.g. 8MB) in the nats-server configuration; not published",
                    m.subject,
                    m.payload.len()
                ));
                tracing::error!(subject = %m.subject, bytes = m.payload.len(), "NATS: a message over the server's max_payload was not published (raise max_payload in nats-server.conf)");
            }
            Err(e) => {
                // Not sent: everything in flight and this one go again, in order.
                self.stats
                    .error(format!("publishing to {}: {e}", m.subject));
                let mut again: Vec<_> = self.drain_unacked();
                again.push((m, meta, recv_ns));
                self.resend(again, done).await;
            }
        }
        self.service(done).await;
    }

    fn drain_unacked(&mut self) -> Vec<(Msg, Meta, i64)> {
        self.inflight
            .drain(..)
            .map(|(_, m, meta, t, _)| (m, meta, t))
            .collect()
    }

    /// Takes the acks that already arrived, in order. On a failed one, returns every
    /// unacknowledged message from it on (its completed future is dropped: a future is
    /// never polled again after it finished).
    #[allow(clippy::type_complexity)]
    fn poll_ready(
        &mut self,
        done: &mut impl FnMut(Meta, &PublishAck),
    ) -> Option<Vec<(Msg, Meta, i64)>> {
        use futures_util::FutureExt;
        while let Some((fut, ..)) = self.inflight.front_mut() {
            if fut.now_or_never().is_none() {
                break;
            }
            match Pin::new(fut)
                .take_output()
                .expect("a finished ack has its result")
            {
                Ok(ack) => {
                    let (_, _, meta, t, sent) = self.inflight.pop_front().expect("front");
                    self.acked(meta, t, sent, &ack, done);
                }
                Err(e) => {
                    let (_, m, meta, t, _) = self.inflight.pop_front().expect("front");
                    self.stats
                        .error(format!("publish ack for {}: {e}", m.subject));
                    let mut again = vec![(m, meta, t)];
                    again.extend(self.drain_unacked());
                    return Some(again);
                }
            }
        }
        None
    }

    fn acked(
        &self,
        meta: Meta,
        recv_ns: i64,
        sent: Instant,
        ack: &PublishAck,
        done: &mut impl FnMut(Meta, &PublishAck),
    ) {
        let st = &self.stats;
        if ack.duplicate {
            PublishStats::add(&st.duplicates, 1);
        }
        match meta {
            Meta::Raw { .. } => PublishStats::add(&st.raw_acked, 1),
            Meta::Md { .. } => PublishStats::add(&st.md_acked, 1),
            Meta::Snap => PublishStats::add(&st.snap_acked, 1),
        }
        if let Ok(mut hg) = st.ack_ns.lock() {
            hg.saturating_record((sent.elapsed().as_nanos() as u64).max(1_000));
        }
        // Receive → ack only for frames received by this run (a replay's receive times
        // are the recording's).
        let age = hermes_book::clock::unix_ns() - recv_ns;
        if recv_ns > 0 && (0..60_000_000_000).contains(&age) {
            if let Ok(mut hg) = st.recv_ack_ns.lock() {
                hg.saturating_record((age as u64).max(1_000));
            }
        }
        done(meta, ack);
    }

    /// Waits for the oldest ack; on an error resends everything unacknowledged.
    async fn wait_one(&mut self, done: &mut impl FnMut(Meta, &PublishAck)) {
        let Some((mut fut, m, meta, t, sent)) = self.inflight.pop_front() else {
            return;
        };
        (&mut fut).await;
        match Pin::new(&mut fut)
            .take_output()
            .expect("a finished ack has its result")
        {
            Ok(ack) => self.acked(meta, t, sent, &ack, done),
            Err(e) => {
                self.stats
                    .error(format!("publish ack for {}: {e}", m.subject));
                let mut again = vec![(m, meta, t)];
                again.extend(self.drain_unacked());
                self.resend(again, done).await;
            }
        }
    }

    /// Sends each message alone until acknowledged, in order.
    async fn resend(
        &mut self,
        msgs: Vec<(Msg, Meta, i64)>,
        done: &mut impl FnMut(Meta, &PublishAck),
    ) {
        tracing::warn!(
            "NATS: sending {} unacknowledged message(s) again, in order",
            msgs.len()
        );
        for (mut m, meta, t) in msgs {
            let mut wait = Duration::from_millis(50);
            let sent = Instant::now();
            loop {
                // Relaxed: a stop request.
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Meta::Md { epoch, .. } = meta {
                    if epoch != self.md_epoch {
                        // The lease was lost meanwhile: mirrors follow the newer epoch
                        // (and this one's SNAPs), not this.
                        PublishStats::add(&self.stats.md_dropped, 1);
                        break;
                    }
                }
                PublishStats::add(&self.stats.retries, 1);
                let r = match self.js.send_publish(m.subject.clone(), m.publish()).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(ack) => {
                        self.acked(meta, t, sent, &ack, done);
                        break;
                    }
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::context::PublishErrorKind::WrongLastMessageId
                            && m.expect_last.is_some() =>
                    {
                        // Resent one at a time, so everything before it is stored: the
                        // last message is another publisher's (a host that lost the
                        // lease, still flushing). Start the chain again from here.
                        PublishStats::add(&self.stats.chain_restarts, 1);
                        m.expect_last = None;
                    }
                    Err(e) => {
                        self.stats.error(format!("resending to {}: {e}", m.subject));
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }

    /// Resolves once the oldest ack in flight has arrived (never, with none in flight).
    /// Cancel-safe: the result stays in the queue for [`Pipe::poll_ready`], so a loop can
    /// wait for it beside other wake-ups instead of polling on a timer.
    async fn head_acked(&mut self) {
        std::future::poll_fn(|cx| match self.inflight.front_mut() {
            Some((fut, ..)) => Pin::new(fut).poll(cx),
            None => std::task::Poll::Pending,
        })
        .await
    }

    /// Waits for every ack.
    async fn flush(&mut self, done: &mut impl FnMut(Meta, &PublishAck)) {
        while !self.inflight.is_empty() && !self.stop.load(Ordering::Relaxed) {
            self.wait_one(done).await;
        }
        self.stats.inflight.store(0, Ordering::Relaxed);
    }

    /// Checks the acks that arrived; resends on an error.
    async fn service(&mut self, done: &mut impl FnMut(Meta, &PublishAck)) {
        if let Some(again) = self.poll_ready(done) {
            self.resend(again, done).await;
        }
        self.stats
            .inflight
            .store(self.inflight.len() as u64, Ordering::Relaxed);
    }
}

async fn run(
    opts: NatsOptions,
    rx: rtrb::Consumer<Item>,
    shared: Arc<Shared>,
    journal: Option<(JournalFollower, hermes_persist::ReaderMark)>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let stats = shared.stats.clone();
    let client = crate::connect_watched(&opts, stats.connected.clone()).await?;
    let js = crate::jetstream(client.clone(), &opts);
    crate::ensure_streams(&js, &opts).await?;
    stats.streams_ready.store(true, Ordering::Relaxed);
    tracing::info!(
        urls = %opts.urls,
        host = %opts.host,
        "NATS: publishing{}{} to streams {}_*",
        if opts.raw && journal.is_some() { " RAW" } else { "" },
        if opts.md { " MD+SNAP" } else { "" },
        opts.stream_prefix
    );
    let lease = Rc::new(Lease::default());
    let md_done = Rc::new(Cell::new(false));
    let md = async {
        let r = md_loop(&opts, &js, rx, &shared, &lease, &stop).await;
        md_done.set(true);
        r
    };
    let raw = async {
        match journal {
            Some((j, mark)) => raw_loop(&opts, &js, &client, j, mark, &stats, &stop).await,
            None => Ok(()),
        }
    };
    let lease_task = async {
        if opts.md {
            lease_loop(&opts, &js, &lease, &stats, &md_done).await
        } else {
            Ok(())
        }
    };
    let (a, b, c) = tokio::join!(md, raw, lease_task);
    client.flush().await.ok();
    a.and(b).and(c)
}

/// The lease as the MD loop sees it.
#[derive(Default)]
struct Lease {
    /// The epoch held, 0 when none.
    epoch: Cell<u64>,
    /// Held until then at the latest (the last good refresh plus the TTL).
    until: Cell<Option<Instant>>,
    /// The first attempt to take it was answered (taken or refused).
    tried: Cell<bool>,
}

impl Lease {
    fn held(&self) -> u64 {
        match self.until.get() {
            Some(t) if Instant::now() < t => self.epoch.get(),
            _ => 0,
        }
    }
}

async fn lease_loop(
    opts: &NatsOptions,
    js: &async_nats::jetstream::Context,
    lease: &Lease,
    stats: &PublishStats,
    done: &Cell<bool>,
) -> anyhow::Result<()> {
    let bucket = opts.lease_bucket();
    // The bucket's stream is created here with the key-value conventions (what
    // `create_key_value` makes), since that call asks for account information first,
    // which async-nats cannot parse from a 2.9 server.
    let kv = crate::retry(&format!("opening the lease bucket {bucket}"), || async {
        if js.get_stream(format!("KV_{bucket}")).await.is_err() {
            use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
            js.create_stream(Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age: opts.lease_ttl,
                duplicate_window: opts.lease_ttl,
                storage: StorageType::File,
                num_replicas: opts.replicas,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        js.get_key_value(&bucket)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await?;
    let tick = opts.lease_ttl / 3;
    let value = Bytes::from(opts.host.clone());
    let mut rev = 0u64;
    loop {
        if done.get() {
            if rev != 0 {
                // Released for the next holder at once (not after the TTL).
                let _ = kv.delete("md").await;
                lease.until.set(None);
                stats.lease_held.store(false, Ordering::Relaxed);
            }
            return Ok(());
        }
        let asked = Instant::now();
        if rev == 0 {
            let r = tokio::time::timeout(tick, kv.create("md", value.clone())).await;
            lease.tried.set(true);
            if let Ok(Ok(r)) = r {
                rev = r;
                lease.epoch.set(r);
                lease.until.set(Some(asked + opts.lease_ttl));
                stats.epoch.store(r, Ordering::Relaxed);
                stats.lease_held.store(true, Ordering::Relaxed);
                PublishStats::add(&stats.lease_acquired, 1);
                tracing::info!(epoch = r, host = %opts.host, "NATS: took the MD lease");
                continue;
            }
        } else {
            match tokio::time::timeout(tick, kv.update("md", value.clone(), rev)).await {
                Ok(Ok(r)) => {
                    rev = r;
                    lease.until.set(Some(asked + opts.lease_ttl));
                }
                other => {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer within a third of the TTL".into(),
                    };
                    tracing::warn!(
                        epoch = lease.epoch.get(),
                        "NATS: lost the MD lease ({why}); MD stops"
                    );
                    lease.until.set(None);
                    rev = 0;
                    stats.lease_held.store(false, Ordering::Relaxed);
                    PublishStats::add(&stats.lease_lost, 1);
                }
            }
        }
        tokio::time::sleep(tick.saturating_sub(asked.elapsed())).await;
    }
}

/// One instrument as the MD loop keeps it.
struct Inst {
    own: InstId,
    venue: Venue,
    md_subject: String,
    snap_subject: String,
    /// Records of the frame being grouped (up to its commit).
    group: Vec<u8>,
    seq: u64,
    epoch: u64,
    since_snap: u64,
    snap_at: Instant,
    /// The stream sequence of MD message `seq` once acknowledged: (seq, stream seq).
    acked: (u64, u64),
    /// A SNAP waiting for the ack of the MD message it includes: (seq, checkpoint).
    pending_snap: Option<(u64, Vec<u8>)>,
    symbol: String,
}

struct MdState<'a> {
    opts: &'a NatsOptions,
    market: Market,
    /// Engine instrument id → ours.
    insts: Vec<Option<Inst>>,
    /// The epoch MD is published under now (0: not holding the lease).
    epoch: u64,
    /// SNAPs to publish (after an ack named their MD message).
    ready_snaps: Vec<u32>,
    /// Largest MD payload: the server's max_payload less room for headers.
    md_limit: usize,
    /// The id of the last MD message sent under this epoch (the next one expects it).
    md_chain: Option<String>,
}

impl MdState<'_> {
    fn inst_mut(&mut self, engine: InstId) -> Option<&mut Inst> {
        self.insts.get_mut(engine.0 as usize)?.as_mut()
    }

    fn define(&mut self, engine: u32, own: InstId) {
        let i = self.market.instrument(own);
        let idx = engine as usize;
        if self.insts.len() <= idx {
            self.insts.resize_with(idx + 1, || None);
        }
        let (venue, symbol) = (i.venue, i.symbol.clone());
        self.insts[idx] = Some(Inst {
            own,
            venue,
            md_subject: self.opts.subject(Kind::Md, venue, &symbol),
            snap_subject: self.opts.subject(Kind::Snap, venue, &symbol),
            group: Vec::new(),
            seq: 0,
            epoch: 0,
            since_snap: 0,
            snap_at: Instant::now(),
            acked: (0, 0),
            pending_snap: None,
            symbol,
        });
    }

    fn snap_msg(&self, engine: u32, seq: u64, stream_seq: Option<u64>, cp: Vec<u8>) -> Option<Msg> {
        let i = self.insts.get(engine as usize)?.as_ref()?;
        let mut hd = HeaderMap::new();
        hd.insert(h::EPOCH, i.epoch.to_string().as_str());
        hd.insert(h::SEQ, seq.to_string().as_str());
        if let Some(s) = stream_seq {
            hd.insert(h::MD_STREAM_SEQ, s.to_string().as_str());
        }
        Some(Msg {
            expect_last: None,
            subject: i.snap_subject.clone(),
            headers: hd,
            payload: Bytes::from(cp),
        })
    }

    fn checkpoint(&self, own: InstId) -> Vec<u8> {
        let mut b = Vec::new();
        self.market.instrument(own).checkpoint(&mut b);
        b
    }
}

async fn md_loop(
    opts: &NatsOptions,
    js: &async_nats::jetstream::Context,
    mut rx: rtrb::Consumer<Item>,
    shared: &Shared,
    lease: &Lease,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let stats = shared.stats.clone();
    let mut pipe = Pipe::new(js.clone(), opts.max_inflight, stats.clone(), stop.clone());
    let mut st = MdState {
        opts,
        market: Market::default(),
        insts: Vec::new(),
        epoch: 0,
        ready_snaps: Vec::new(),
        md_limit: (js.client().server_info().max_payload.max(64 << 10) - (16 << 10)).max(32 << 10),
        md_chain: None,
    };
    // Acks of MD messages name their stream sequence; a SNAP waiting for one goes next.
    let acks: RefCell<Vec<(u32, u64, u64, u64)>> = RefCell::new(Vec::new());
    let mut on_ack = |meta: Meta, ack: &PublishAck| {
        if let Meta::Md { inst, seq, epoch } = meta {
            acks.borrow_mut().push((inst, seq, epoch, ack.sequence));
        }
    };
    // Whether this host publishes MD is known once the lease was asked for (the ring
    // holds the events meanwhile): a single host publishes from its first event.
    if opts.md {
        let asked = Instant::now();
        while !lease.tried.get() && asked.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut last_tick = Instant::now();
    let mut ended = false;
    while !ended {
        // Relaxed: a stop request.
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut n = 0;
        while let Ok(item) = rx.pop() {
            n += 1;
            match item {
                Item::End => {
                    ended = true;
                    break;
                }
                Item::Resync(cps) => {
                    resync(&mut st, cps, &mut pipe, &mut on_ack).await;
                }
                Item::Event(ev) => {
                    on_event(&mut st, &ev, &mut pipe, &mut on_ack).await;
                }
            }
            if n % 256 == 0 {
                break; // service acks and the lease now and then
            }
        }
        // The lease: stop at once when lost; SNAPs of everything first when taken.
        let held = if opts.md { lease.held() } else { 0 };
        if held != st.epoch {
            st.epoch = held;
            pipe.md_epoch = held;
            if held != 0 {
                take_over(&mut st, &mut pipe, &mut on_ack).await;
            }
        }
        pipe.service(&mut on_ack).await;
        for (inst, seq, epoch, sseq) in acks.borrow_mut().drain(..) {
            if let Some(i) = st.insts.get_mut(inst as usize).and_then(|i| i.as_mut()) {
                if epoch == i.epoch {
                    i.acked = (seq, sseq);
                    if i.pending_snap.as_ref().is_some_and(|(s, _)| *s == seq) {
                        st.ready_snaps.push(inst);
                    }
                }
            }
        }
        for inst in std::mem::take(&mut st.ready_snaps) {
            let Some(i) = st.insts.get_mut(inst as usize).and_then(|i| i.as_mut()) else {
                continue;
            };
            let Some((seq, cp)) = i.pending_snap.take() else {
                continue;
            };
            let sseq = (i.acked.0 == seq).then_some(i.acked.1);
            if let Some(m) = st.snap_msg(inst, seq, sseq, cp) {
                if st.epoch != 0 {
                    pipe.send(m, Meta::Snap, 0, &mut on_ack).await;
                }
            }
        }
        if last_tick.elapsed() >= Duration::from_millis(100) {
            last_tick = Instant::now();
            if st.epoch != 0 {
                due_snaps(&mut st);
            }
        }
        if n == 0 && !ended {
            // SeqCst: pairs with the tap's SeqCst load (see BusTap::wake).
            shared.parked.store(true, Ordering::SeqCst);
            if rx.is_empty() {
                // Until an event, the oldest ack, or the next lease/SNAP check.
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = pipe.head_acked() => {}
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            shared.parked.store(false, Ordering::SeqCst);
        }
    }
    // A host that held the lease and lost it to an election (not to another host, which
    // would keep it) takes it back to publish its final state: up to the TTL plus an
    // election's few seconds.
    if opts.md
        && !stop.load(Ordering::Relaxed)
        && lease.held() == 0
        && shared.stats.lease_acquired.load(Ordering::Relaxed) > 0
    {
        let asked = Instant::now();
        while lease.held() == 0 && asked.elapsed() < opts.lease_ttl * 2 + Duration::from_secs(5) {
            pipe.service(&mut on_ack).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let held = lease.held();
        if held != 0 && held != st.epoch {
            st.epoch = held;
            pipe.md_epoch = held;
            take_over(&mut st, &mut pipe, &mut on_ack).await;
        }
    }
    // The end: every instrument's final state, then every ack.
    if st.epoch != 0 && lease.held() != 0 {
        pipe.flush(&mut on_ack).await;
        for (inst, seq, epoch, sseq) in acks.borrow_mut().drain(..) {
            if let Some(i) = st.insts.get_mut(inst as usize).and_then(|i| i.as_mut()) {
                if epoch == i.epoch {
                    i.acked = (seq, sseq);
                }
            }
        }
        let ids: Vec<u32> = (0..st.insts.len() as u32).collect();
        for e in ids {
            let Some(i) = st.insts[e as usize].as_mut() else {
                continue;
            };
            i.pending_snap = None;
            let (own, seq) = (i.own, i.seq);
            let sseq = (i.acked.0 == seq && seq > 0).then_some(i.acked.1);
            let cp = st.checkpoint(own);
            if let Some(m) = st.snap_msg(e, seq, sseq, cp) {
                pipe.send(m, Meta::Snap, 0, &mut on_ack).await;
            }
        }
    }
    pipe.flush(&mut on_ack).await;
    Ok(())
}

/// Standalone events are one MD message each; levels wait for their commit.
fn ends_message(ev: &Event) -> bool {
    !matches!(
        ev,
        Event::Snapshot { .. } | Event::Level { .. } | Event::Define { .. }
    )
}

async fn on_event(
    st: &mut MdState<'_>,
    ev: &Event,
    pipe: &mut Pipe,
    on_ack: &mut impl FnMut(Meta, &PublishAck),
) {
    let e = ev.inst().0;
    let own = match ev {
        Event::Define { .. } => match st.market.apply(ev) {
            Applied::Defined(own) => {
                st.define(e, own);
                // A mirror starts an instrument from a SNAP: this one's is empty, seq 0.
                if st.epoch != 0 {
                    let epoch = st.epoch;
                    if let Some(i) = st.inst_mut(InstId(e)) {
                        i.epoch = epoch;
                    }
                    let cp = st.checkpoint(own);
                    if let Some(m) = st.snap_msg(e, 0, None, cp) {
                        pipe.send(m, Meta::Snap, 0, on_ack).await;
                    }
                }
                return;
            }
            // Already known (after a resync restored it).
            _ => return,
        },
        _ => match st.inst_mut(InstId(e)) {
            Some(i) => i.own,
            None => return, // its definition was dropped; a resync follows
        },
    };
    st.market.apply(&ev.with_inst(own));
    let epoch = st.epoch;
    let (every_msgs, every) = (st.opts.snap_every_msgs, st.opts.snap_every);
    let md_limit = st.md_limit;
    let Some(i) = st.inst_mut(InstId(e)) else {
        return;
    };
    hermes_book::wire::encode_event(ev, &mut i.group);
    // A frame's levels up to its commit are one message, unless that passes the
    // server's max_payload (a Coinbase snapshot of a whole book): then consecutive
    // messages, which the mirror's market stages until the commit, like the engine's.
    if !ends_message(ev) && i.group.len() < md_limit {
        return;
    }
    let payload = std::mem::take(&mut i.group);
    if epoch == 0 {
        return; // not holding the lease: the market is kept, nothing published
    }
    i.seq += 1;
    i.since_snap += 1;
    let seq = i.seq;
    let mut hd = HeaderMap::new();
    let id = format!("{epoch}:{}:{}:{seq}", i.venue.name(), i.symbol);
    hd.insert(h::MSG_ID, id.as_str());
    hd.insert(h::EPOCH, epoch.to_string().as_str());
    hd.insert(h::SEQ, seq.to_string().as_str());
    let mut body = Vec::with_capacity(payload.len() + 2);
    hermes_book::wire::begin_message(&mut body);
    body.extend_from_slice(&payload);
    hermes_book::wire::end_message(&mut body);
    let mut m = Msg {
        subject: i.md_subject.clone(),
        headers: hd,
        payload: Bytes::from(body),
        expect_last: None,
    };
    let recv = match ev {
        Event::Commit { recv_ts_ns, .. } | Event::Quote { recv_ts_ns, .. } => *recv_ts_ns,
        _ => 0,
    };
    let due =
        i.pending_snap.is_none() && (i.since_snap >= every_msgs || i.snap_at.elapsed() >= every);
    if due {
        let cp = st.checkpoint(own);
        let i = st.inst_mut(InstId(e)).expect("present");
        i.pending_snap = Some((seq, cp));
        i.since_snap = 0;
        i.snap_at = Instant::now();
    }
    m.expect_last = st.md_chain.replace(id);
    pipe.send(
        m,
        Meta::Md {
            inst: e,
            seq,
            epoch,
        },
        recv,
        on_ack,
    )
    .await;
}

/// Instruments whose SNAP is due by time (a quiet instrument's last change included).
fn due_snaps(st: &mut MdState<'_>) {
    let every = st.opts.snap_every;
    let ids: Vec<u32> = (0..st.insts.len() as u32).collect();
    for e in ids {
        let Some(i) = st.insts[e as usize].as_ref() else {
            continue;
        };
        if i.pending_snap.is_some()
            || i.since_snap == 0
            || i.snap_at.elapsed() < every
            || !i.group.is_empty()
        {
            continue;
        }
        let (own, seq) = (i.own, i.seq);
        let cp = st.checkpoint(own);
        let i = st.insts[e as usize].as_mut().expect("present");
        i.pending_snap = Some((seq, cp));
        i.since_snap = 0;
        i.snap_at = Instant::now();
        if i.acked.0 == seq {
            st.ready_snaps.push(e);
        }
    }
}

/// The lease was just taken: every instrument starts over at sequence 0 of the new
/// epoch, with a SNAP first.
async fn take_over(
    st: &mut MdState<'_>,
    pipe: &mut Pipe,
    on_ack: &mut impl FnMut(Meta, &PublishAck),
) {
    let epoch = st.epoch;
    // A new epoch's first MD message expects nothing before it (another host's, or this
    // host's older epoch, may be last in the stream).
    st.md_chain = None;
    let ids: Vec<u32> = (0..st.insts.len() as u32).collect();
    for e in ids {
        let Some(i) = st.insts[e as usize].as_mut() else {
            continue;
        };
        i.epoch = epoch;
        i.seq = 0;
        i.since_snap = 0;
        i.snap_at = Instant::now();
        i.acked = (0, 0);
        i.pending_snap = None;
        let own = i.own;
        let cp = st.checkpoint(own);
        if let Some(m) = st.snap_msg(e, 0, None, cp) {
            pipe.send(m, Meta::Snap, 0, on_ack).await;
        }
    }
    tracing::info!(
        epoch,
        instruments = st.insts.len(),
        "NATS: publishing MD under epoch {epoch} (SNAPs first)"
    );
}

/// After dropped events: take the engine's instruments whole, SNAP them, and skip a
/// sequence number so mirrors wait for these SNAPs.
async fn resync(
    st: &mut MdState<'_>,
    cps: Vec<Vec<u8>>,
    pipe: &mut Pipe,
    on_ack: &mut impl FnMut(Meta, &PublishAck),
) {
    tracing::warn!(
        instruments = cps.len(),
        "NATS: the book thread's ring overflowed; events were dropped: re-sending every instrument whole"
    );
    for (e, cp) in cps.into_iter().enumerate() {
        let Ok(c) = hermes_book::checkpoint::decode_checkpoint(&cp) else {
            continue;
        };
        let own = st.market.restore(c);
        let e = e as u32;
        if st.insts.get(e as usize).and_then(|i| i.as_ref()).is_none() {
            st.define(e, own);
        }
        let epoch = st.epoch;
        let i = st.insts[e as usize].as_mut().expect("defined");
        i.group.clear();
        i.epoch = epoch;
        if epoch == 0 {
            continue;
        }
        // The skipped number: mirrors see a gap and take this SNAP.
        i.seq += 2;
        i.pending_snap = None;
        i.since_snap = 0;
        i.snap_at = Instant::now();
        let seq = i.seq;
        if let Some(m) = st.snap_msg(e, seq, None, cp) {
            pipe.send(m, Meta::Snap, 0, on_ack).await;
        }
    }
}

/// A position in the journal: (segment number, byte offset).
type Pos = (u64, u64);

/// `<segment number>:<offset>:<segment name>` (the name ties the position to one
/// journal: numbers start again in a new journal directory).
fn parse_pos(s: &str) -> Option<(Pos, &str)> {
    let mut it = s.splitn(3, ':');
    let n = it.next()?.parse().ok()?;
    let o = it.next()?.parse().ok()?;
    Some(((n, o), it.next()?))
}

async fn raw_loop(
    opts: &NatsOptions,
    js: &async_nats::jetstream::Context,
    client: &async_nats::Client,
    journal: JournalFollower,
    mark: hermes_persist::ReaderMark,
    stats: &Arc<PublishStats>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    use hermes_ingest::capture::CaptureReader;
    // Resume: the largest "acknowledged through" of the last message of each subject.
    let stream = crate::retry("opening the RAW stream", || async {
        js.get_stream(opts.stream(Kind::Raw))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await?;
    let mut last: Option<(Pos, String)> = None;
    for v in Venue::ALL {
        let subject = opts.raw_subject(v);
        if let Ok(m) = stream.get_last_raw_message_by_subject(&subject).await {
            if let Some((p, name)) = m
                .headers
                .get(h::ACKED_THROUGH)
                .and_then(|x| parse_pos(x.as_str()))
            {
                if last.as_ref().is_none_or(|(q, _)| p > *q) {
                    last = Some((p, name.to_string()));
                }
            }
        }
    }
    let mut resume: Pos = (0, 0);
    if let Some((p, name)) = last {
        let here = journal
            .segments()
            .iter()
            .any(|s| s.number == p.0 && s.name == name);
        if here {
            resume = p;
            tracing::info!(
                "NATS RAW: resuming after segment {} byte {} (acknowledged through there by the last run)",
                p.0,
                p.1
            );
        } else {
            tracing::warn!(
                host = %opts.host,
                "NATS RAW: the last RAW of this host came from journal segment {name}, which this journal ({}) does not have: publishing this journal from its start (another journal, or a host name used twice?)",
                journal.dir().display()
            );
        }
    }
    // Names of the segments read, for the positions in Acked-Through.
    let mut names: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    // Room for the headers within the server's max_payload.
    let chunk = (client.server_info().max_payload.max(64 << 10) - (16 << 10)).max(32 << 10);
    let mut pipe = Pipe::new(js.clone(), opts.max_inflight, stats.clone(), stop.clone());
    // Records sent and not yet acknowledged, oldest first.
    let unacked: RefCell<VecDeque<Pos>> = RefCell::new(VecDeque::new());
    let mut on_ack = |meta: Meta, _: &PublishAck| {
        if let Meta::Raw { seg, offset, last } = meta {
            if last {
                let mut u = unacked.borrow_mut();
                if let Some(k) = u.iter().position(|p| *p == (seg, offset)) {
                    u.remove(k);
                }
            }
        }
    };
    let mut after = None;
    // Through where everything sent is acknowledged (the next position when none is out).
    let mut sent_through: Pos = resume;
    loop {
        // Relaxed: a stop request.
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(seg) = journal.next_segment(after) else {
            if journal.is_done() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        if seg.foreign || seg.number < resume.0 {
            mark.finished_through(seg.number);
            after = Some(seg.number);
            continue;
        }
        names.insert(seg.number, seg.name.clone());
        let stem = seg.name.trim_end_matches(".hcap").to_string();
        let mut reader = match CaptureReader::open(&seg.path) {
            Ok(r) => r,
            Err(e) => anyhow::bail!(
                "NATS RAW: opening journal segment {}: {e}",
                seg.path.display()
            ),
        };
        let mut readable = journal.readable(&seg);
        reader.set_end(readable.end);
        let mut frame_no: u64 = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let offset = reader.offset();
            let rec = match reader.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let now = journal.readable(&seg);
                    if now.end > readable.end {
                        readable = now;
                        reader.set_end(readable.end);
                        continue;
                    }
                    if now.sealed {
                        break;
                    }
                    pipe.service(&mut on_ack).await;
                    // The journal is polled every millisecond; an ack is taken at once.
                    tokio::select! {
                        () = pipe.head_acked() => {}
                        () = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                    continue;
                }
                Err(e) => anyhow::bail!(
                    "NATS RAW: reading journal segment {}: {e}",
                    seg.path.display()
                ),
            };
            let no = frame_no;
            frame_no += 1;
            let pos = (seg.number, offset);
            if pos < resume {
                continue;
            }
            let acked_through = unacked.borrow().front().copied().unwrap_or(sent_through);
            let frame = rec.frame();
            let subject = opts.raw_subject(frame.venue);
            let data = frame.data;
            let parts = data.len().div_ceil(chunk).max(1);
            unacked.borrow_mut().push_back(pos);
            for k in 0..parts {
                let body = &data[(k * chunk).min(data.len())..((k + 1) * chunk).min(data.len())];
                let mut hd = HeaderMap::new();
                let id = if parts == 1 {
                    format!("{}:{stem}:{offset}", opts.host)
                } else {
                    format!("{}:{stem}:{offset}:{k}", opts.host)
                };
                hd.insert(h::MSG_ID, id.as_str());
                hd.insert(h::JOURNAL, seg.name.as_str());
                hd.insert(h::OFFSET, offset.to_string().as_str());
                hd.insert(h::FRAME, no.to_string().as_str());
                hd.insert(h::RECV_NS, frame.recv_ts_ns.to_string().as_str());
                match rec.kind {
                    hermes_ingest::capture::RecordKind::Ws => hd.insert(h::KIND, "ws"),
                    hermes_ingest::capture::RecordKind::RestDepth => {
                        hd.insert(h::KIND, "rest");
                        hd.insert(h::TAG, String::from_utf8_lossy(rec.tag).as_ref());
                    }
                }
                hd.insert(h::CONN, frame.conn.to_string().as_str());
                hd.insert(
                    h::ACKED_THROUGH,
                    format!(
                        "{}:{}:{}",
                        acked_through.0,
                        acked_through.1,
                        names.get(&acked_through.0).map_or("", String::as_str)
                    )
                    .as_str(),
                );
                if parts > 1 {
                    hd.insert(h::PART, format!("{}/{parts}", k + 1).as_str());
                }
                let m = Msg {
                    expect_last: None,
                    subject: subject.clone(),
                    headers: hd,
                    payload: Bytes::copy_from_slice(body),
                };
                let meta = Meta::Raw {
                    seg: seg.number,
                    offset,
                    last: k + 1 == parts,
                };
                pipe.send(m, meta, frame.recv_ts_ns, &mut on_ack).await;
            }
            sent_through = (seg.number, reader.offset());
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Retention may delete the segment once all of it is acknowledged.
        pipe.flush(&mut on_ack).await;
        mark.finished_through(seg.number);
        after = Some(seg.number);
    }
    pipe.flush(&mut on_ack).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{available_or_required, NatsCluster, Probe};
    use std::sync::atomic::AtomicU64;

    fn md(seq: u64, expect: Option<&str>) -> Msg {
        let mut hd = HeaderMap::new();
        hd.insert(h::MSG_ID, format!("1:binance:X:{seq}").as_str());
        Msg {
            subject: "hermes.md.binance.X".into(),
            headers: hd,
            payload: Bytes::from_static(b"x"),
            expect_last: expect.map(str::to_string),
        }
    }

    fn meta(seq: u64, epoch: u64) -> Meta {
        Meta::Md {
            inst: 0,
            seq,
            epoch,
        }
    }

    /// Against a real server: an MD message whose predecessor is not last in the stream
    /// is refused, and so is the one pipelined after it; the resend sends them in order,
    /// starting the chain again when the message last in the stream is another
    /// publisher's; MD of an epoch no longer held is dropped from a resend.
    #[test]
    fn md_is_stored_in_order_and_the_chain_restarts_after_a_foreign_message() {
        if !available_or_required() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("hermes-nats-chain-{}", std::process::id()));
        let cluster = NatsCluster::start(&dir, 1).unwrap();
        let opts = NatsOptions::new(cluster.urls());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stats = Arc::new(PublishStats::default());
        let acked = rt.block_on(async {
            let js = crate::jetstream(crate::connect(&opts).await.unwrap(), &opts);
            crate::ensure_streams(&js, &opts).await.unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let mut pipe = Pipe::new(js.clone(), 16, stats.clone(), stop);
            pipe.md_epoch = 1;
            let mut acked = Vec::new();
            let mut done = |m: Meta, _: &PublishAck| {
                if let Meta::Md { seq, .. } = m {
                    acked.push(seq);
                }
            };
            pipe.send(md(1, None), meta(1, 1), 0, &mut done).await;
            pipe.flush(&mut done).await;
            // Another publisher's message is last now.
            js.publish("hermes.md.binance.Y", Bytes::from_static(b"y"))
                .await
                .unwrap()
                .await
                .unwrap();
            pipe.send(md(2, Some("1:binance:X:1")), meta(2, 1), 0, &mut done)
                .await;
            pipe.send(md(3, Some("1:binance:X:2")), meta(3, 1), 0, &mut done)
                .await;
            pipe.flush(&mut done).await;
            // The lease moved on: a refused message of epoch 1 is not sent again.
            pipe.md_epoch = 2;
            pipe.send(md(4, Some("1:binance:X:9")), meta(4, 1), 0, &mut done)
                .await;
            pipe.flush(&mut done).await;
            acked
        });
        assert_eq!(acked, [1, 2, 3]);
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(l(&stats.chain_restarts), 1);
        assert_eq!(l(&stats.md_dropped), 1);
        let p = Probe::connect(&cluster.urls()).unwrap();
        let order: Vec<String> = p
            .messages("HERMES_MD", "hermes.md.>")
            .unwrap()
            .into_iter()
            .map(|(_, subject, hd, _)| {
                hd.into_iter()
                    .find(|(k, _)| k == h::MSG_ID)
                    .map_or(subject, |(_, v)| v)
            })
            .collect();
        assert_eq!(
            order,
            [
                "1:binance:X:1",
                "hermes.md.binance.Y",
                "1:binance:X:2",
                "1:binance:X:3"
            ]
        );
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
