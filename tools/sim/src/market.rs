//! The market task, single sequencer of everything clients see: it owns the books,
//! walks the source at the chosen pacing, routes each frame to the connections
//! subscribed to it, and answers subscriptions and REST snapshot requests between two
//! frames, so a snapshot is exactly consistent with the stream that follows it. What is
//! venue-specific it asks the venue's [`SimVenue`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hermes_book::market::{Instrument, Market as Books};
use hermes_ingest::{Decoder, Event, EventSink, FrameKind, Venue};
use tokio::sync::{mpsc, oneshot};

use crate::feed::{Feed, Owned};
use crate::options::Pacing;
use crate::venue::{
    self, ChannelList, Delivery, DepthQuery, Opening, Outgoing, SimVenue, Subs, View,
};
use crate::SimStats;

/// A connection's queue of frames to send.
pub(crate) type ClientTx = mpsc::Sender<Arc<Outgoing>>;

/// How far the market reads ahead in the source for the next diff of a symbol a REST
/// snapshot is asked for (futures); past it, the snapshot names the last diff instead.
const LOOKAHEAD_FRAMES: usize = 50_000;

/// The market's answer to a (un)subscription, for the connection to send once it has
/// sent the `after` frames routed to it before (so the answer sits in the stream exactly
/// where the market made it).
#[derive(Debug, Default)]
pub(crate) struct Answered {
    pub(crate) frames: Vec<String>,
    pub(crate) after: u64,
}

/// What connections ask of the market.
pub(crate) enum Control {
    /// A client subscribes (by message, or with the streams of its URL): answer with what
    /// the venue sends a new subscriber, and route matching frames to it from now on.
    Subscribe {
        client: u64,
        channels: ChannelList,
        tx: ClientTx,
        reply: oneshot::Sender<Answered>,
    },
    /// A client unsubscribes (`None`: the whole channel).
    Unsubscribe {
        client: u64,
        channels: Vec<(String, Option<Vec<String>>)>,
        reply: oneshot::Sender<Answered>,
    },
    /// A connection ended.
    Gone { client: u64 },
    /// A REST depth snapshot; `None` for an unknown symbol.
    Depth {
        symbol: String,
        limit: usize,
        reply: oneshot::Sender<Option<String>>,
    },
}

/// Events applied straight to the simulator's books.
struct Apply<'a>(&'a mut Books);

impl EventSink for Apply<'_> {
    fn push(&mut self, ev: Event) {
        self.0.apply(&ev);
    }
}

/// A connected client: its queue, its subscriptions, and how many frames were routed to
/// it.
struct Client {
    tx: ClientTx,
    subs: Subs,
    routed: u64,
}

/// The market: source, books, subscriptions.
pub(crate) struct Market {
    venue: Venue,
    sim: &'static dyn SimVenue,
    feed: Feed,
    decoder: Decoder,
    books: Books,
    clients: HashMap<u64, Client>,
    /// Client → products it waits a first book snapshot for.
    awaiting: HashMap<u64, HashSet<String>>,
    /// (route, product) → the latest frame kept for new subscribers.
    latest: HashMap<(String, String), String>,
    /// A REST snapshot went by in the source.
    saw_rest: bool,
    /// Receive time of the last frame walked, Unix ns.
    clock_ns: i64,
    stats: Arc<SimStats>,
    /// Frames read from the source but not walked yet (the opening's first frame, and a
    /// look-ahead for a futures snapshot).
    ahead: VecDeque<Owned>,
    /// A source error met while looking ahead, reported once `ahead` is walked.
    failed: Option<anyhow::Error>,
}

impl Market {
    pub(crate) fn new(
        venue: Venue,
        sim: &'static dyn SimVenue,
        feed: Feed,
        stats: Arc<SimStats>,
    ) -> Market {
        Market {
            venue,
            sim,
            feed,
            decoder: Decoder::default(),
            books: Books::default(),
            clients: HashMap::new(),
            awaiting: HashMap::new(),
            latest: HashMap::new(),
            saw_rest: false,
            clock_ns: 0,
            stats,
            ahead: VecDeque::new(),
            failed: None,
        }
    }

    /// Applies a frame to the books; returns how to route it, or `None` if clients do not
    /// get it as is (snapshots and subscription confirmations are per connection).
    fn absorb(&mut self, f: &Owned) -> Option<Outgoing> {
        let frame = hermes_ingest::Frame {
            venue: f.venue,
            kind: match &f.rest_symbol {
                Some(s) => FrameKind::RestDepth {
                    symbol: s.as_bytes(),
                },
                None => FrameKind::Ws,
            },
            conn: 0,
            recv_ts_ns: f.recv_ts_ns,
            data: f.data.as_bytes(),
        };
        let _ = self.decoder.decode(&frame, &mut Apply(&mut self.books));
        self.clock_ns = f.recv_ts_ns;
        if f.rest_symbol.is_some() || f.venue != self.venue {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&f.data).ok()?;
        let out = self.sim.route(&v, &f.data)?;
        if out.keep {
            for p in out.products.iter().flatten() {
                self.latest
                    .insert((out.route.clone(), p.clone()), out.text.clone());
            }
        }
        (out.delivery != Delivery::Keep).then_some(out)
    }

    fn book_of(&self, symbol: &str) -> Option<&Instrument> {
        self.books.find(self.venue, symbol)
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Subscribe {
                client,
                channels,
                tx,
                reply,
            } => {
                let entry = self.clients.entry(client).or_insert_with(|| Client {
                    tx,
                    subs: Subs::new(),
                    routed: 0,
                });
                for (ch, ps) in &channels {
                    entry
                        .subs
                        .entry(ch.clone())
                        .or_default()
                        .extend(ps.iter().cloned());
                }
                let view = View {
                    venue: self.venue,
                    books: &self.books,
                    latest: &self.latest,
                };
                let answer = self.sim.answer(&entry.subs, &channels, true, &view);
                if !answer.awaiting.is_empty() {
                    self.awaiting
                        .entry(client)
                        .or_default()
                        .extend(answer.awaiting);
                }
                let _ = reply.send(Answered {
                    frames: answer.frames,
                    after: entry.routed,
                });
            }
            Control::Unsubscribe {
                client,
                channels,
                reply,
            } => {
                let mut answered = Answered::default();
                if let Some(c) = self.clients.get_mut(&client) {
                    for (ch, ps) in &channels {
                        match ps {
                            Some(ps) => {
                                if let Some(set) = c.subs.get_mut(ch) {
                                    for p in ps {
                                        set.remove(p);
                                    }
                                }
                            }
                            None => {
                                c.subs.remove(ch);
                            }
                        }
                    }
                    let asked = channels
                        .iter()
                        .map(|(ch, ps)| (ch.clone(), ps.clone().unwrap_or_default()))
                        .collect();
                    let view = View {
                        venue: self.venue,
                        books: &self.books,
                        latest: &self.latest,
                    };
                    answered = Answered {
                        frames: self.sim.answer(&c.subs, &asked, false, &view).frames,
                        after: c.routed,
                    };
                }
                let _ = reply.send(answered);
            }
            Control::Gone { client } => {
                self.awaiting.remove(&client);
                self.clients.remove(&client);
            }
            Control::Depth {
                symbol,
                limit,
                reply,
            } => {
                let _ = reply.send(self.depth(&symbol, limit));
            }
        }
    }

    /// The REST depth body for `symbol`, from the books as they are between two frames.
    fn depth(&mut self, symbol: &str, limit: usize) -> Option<String> {
        let route = self.sim.rest()?;
        self.book_of(symbol)?;
        let next_first_id = if route.next_diff {
            self.next_diff_first_id(symbol)
        } else {
            None
        };
        let book = self.book_of(symbol)?;
        Some(self.sim.depth(&DepthQuery {
            symbol,
            book,
            limit,
            next_first_id,
            now_ms: self.clock_ns.div_euclid(1_000_000),
        }))
    }

    /// The `U` of the next diff of `symbol` in the source, reading ahead (the frames
    /// read stay queued, in order).
    fn next_diff_first_id(&mut self, symbol: &str) -> Option<u64> {
        if let Some(u) = self
            .ahead
            .iter()
            .find_map(|f| self.sim.diff_first_id(f, symbol))
        {
            return Some(u);
        }
        while self.failed.is_none() && self.ahead.len() < LOOKAHEAD_FRAMES {
            match self.feed.next() {
                Ok(Some(f)) => {
                    let u = self.sim.diff_first_id(&f, symbol);
                    self.ahead.push_back(f);
                    if u.is_some() {
                        return u;
                    }
                }
                Ok(None) => return None,
                Err(e) => self.failed = Some(e),
            }
        }
        None
    }

    /// The next source frame to walk.
    fn next_frame(&mut self) -> Result<Option<Owned>> {
        if let Some(f) = self.ahead.pop_front() {
            return Ok(Some(f));
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.feed.next()
    }

    fn has_clients(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Whether the source is still in its opening part, consumed before anyone
    /// connects so the books exist (the venue says what that is; REST snapshots always
    /// are).
    fn is_setup(&self, f: &Owned) -> bool {
        if f.rest_symbol.is_some() {
            return true;
        }
        let opening = Opening {
            saw_rest: self.saw_rest,
            books: &self.books,
            venue: self.venue,
        };
        venue::of(f.venue).is_some_and(|v| v.is_setup(f, &opening))
    }

    /// The connections a frame goes to.
    fn targets(&mut self, out: &Outgoing) -> Vec<(u64, ClientTx)> {
        let mut targets = Vec::new();
        let products = out.products.as_deref();
        for (id, c) in &self.clients {
            let wanted = match out.delivery {
                Delivery::FirstSnapshot => self
                    .awaiting
                    .get_mut(id)
                    .is_some_and(|set| products.unwrap_or(&[]).iter().any(|p| set.remove(p))),
                Delivery::Stream => c.subs.iter().any(|(ch, ps)| {
                    self.sim.route_of(ch) == out.route
                        && products.is_none_or(|list| list.iter().any(|p| ps.contains(p)))
                }),
                Delivery::Keep => false,
            };
            if wanted {
                targets.push((*id, c.tx.clone()));
            }
        }
        targets
    }

    /// Hands a frame to its connections; under [`Pacing::Max`] waits for each to take
    /// it, otherwise drops a connection whose queue is full.
    async fn route(&mut self, out: Outgoing, pacing: Pacing, ctrl: &mut mpsc::Receiver<Control>) {
        let out = Arc::new(out);
        for (id, tx) in self.targets(&out) {
            // Counted before it is handed over: an answer made while the market waits
            // for this client to take it comes after it.
            if let Some(c) = self.clients.get_mut(&id) {
                c.routed += 1;
            }
            let ok = if pacing == Pacing::Max {
                // Wait for the client to read, but keep answering requests meanwhile: a
                // client may be waiting for the answer to a subscription before it reads.
                let send = tx.send(out.clone());
                tokio::pin!(send);
                loop {
                    tokio::select! {
                        r = &mut send => break r.is_ok(),
                        c = ctrl.recv() => match c {
                            Some(c) => self.control(c),
                            None => break false,
                        },
                    }
                }
            } else {
                match tx.try_send(out.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Relaxed: a counter for reports.
                        self.stats.slow_clients.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            client = id,
                            "client reads too slowly for the pacing; dropping it"
                        );
                        false
                    }
                    Err(_) => false,
                }
            };
            if !ok {
                self.clients.remove(&id);
            }
        }
    }

    /// Consumes the source's opening (snapshots) so the books exist before anyone asks.
    fn open(&mut self) -> Result<()> {
        while let Some(f) = self.next_frame()? {
            if self.is_setup(&f) {
                self.saw_rest |= f.rest_symbol.is_some();
                self.absorb(&f);
                self.stats.frames.fetch_add(1, Ordering::Relaxed);
            } else {
                self.ahead.push_front(f);
                break;
            }
        }
        Ok(())
    }
}

/// The market task: runs until every sender of `ctrl` is gone.
///
/// Its atomics are counters for reports and the `done` flag, which nothing else
/// synchronises through: all `Relaxed`.
pub(crate) async fn run(
    mut m: Market,
    pacing: Pacing,
    mut ctrl: mpsc::Receiver<Control>,
) -> Result<()> {
    m.open()?;
    let mut clock: Option<(i64, Instant)> = None;
    let mut n = 0u64;
    let start = Instant::now();
    loop {
        while let Ok(c) = ctrl.try_recv() {
            m.control(c);
        }
        if !m.has_clients() || m.stats.done.load(Ordering::Relaxed) {
            // Nobody to serve (the market waits for its first client) or nothing left:
            // just answer requests.
            match ctrl.recv().await {
                Some(c) => m.control(c),
                None => return Ok(()),
            }
            continue;
        }
        let mut f = match m.next_frame()? {
            Some(f) => f,
            None => {
                m.stats.done.store(true, Ordering::Relaxed);
                tracing::info!(
                    "source exhausted after {} frames; still serving snapshots",
                    m.stats.frames.load(Ordering::Relaxed)
                );
                continue;
            }
        };
        let due = match pacing {
            Pacing::Max => None,
            Pacing::Rate(r) => Some(start + Duration::from_secs_f64(n as f64 / r)),
            Pacing::Recorded(x) => {
                let (t0, w0) = *clock.get_or_insert((f.recv_ts_ns, Instant::now()));
                Some(w0 + Duration::from_nanos(((f.recv_ts_ns - t0).max(0) as f64 / x) as u64))
            }
        };
        if let Some(due) = due {
            // Requests answered while waiting see this frame as not yet walked: it goes
            // back to the front of the queue, where a look-ahead finds it.
            m.ahead.push_front(f);
            let sleep = tokio::time::sleep_until(due.into());
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    c = ctrl.recv() => match c {
                        Some(c) => m.control(c),
                        None => return Ok(()),
                    },
                }
            }
            f = match m.ahead.pop_front() {
                Some(f) => f,
                None => continue,
            };
        }
        n += 1;
        m.stats.frames.fetch_add(1, Ordering::Relaxed);
        m.saw_rest |= f.rest_symbol.is_some();
        if let Some(out) = m.absorb(&f) {
            m.route(out, pacing, &mut ctrl).await;
        }
    }
}
