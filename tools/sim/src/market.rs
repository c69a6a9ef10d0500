//! The market task, single sequencer of everything clients see: it owns the books,
//! walks the source at the chosen pacing, routes each frame to the connections
//! subscribed to it, and answers subscriptions and REST snapshot requests between two
//! frames, so a snapshot is exactly consistent with the stream that follows it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hermes_book::market::{Instrument, Market as Books};
use hermes_ingest::{Decoder, Event, EventSink, FrameKind, Venue};
use tokio::sync::{mpsc, oneshot};

use crate::feed::{Feed, Owned};
use crate::options::Pacing;
use crate::{binance, coinbase, SimStats};

/// One frame the market hands to connections.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) text: String,
    /// Coinbase channel name as subscribed (`level2`, `market_trades`, …), or the Binance
    /// stream name.
    pub(crate) route: String,
    /// Coinbase products the frame concerns.
    pub(crate) products: Vec<String>,
    /// A Binance depth diff (a `gap` fault applies only to those).
    pub(crate) diff: bool,
    /// A Coinbase level-2 snapshot from the source: only for clients still waiting for
    /// their first snapshot of one of `products`.
    pub(crate) snapshot: bool,
}

/// A connection's queue of frames to send.
pub(crate) type ClientTx = mpsc::Sender<Arc<Outgoing>>;

/// What connections ask of the market.
pub(crate) enum Control {
    /// A Coinbase client subscribes: answer with the confirmation and snapshots, and
    /// route matching frames to it from now on.
    Subscribe {
        client: u64,
        channel: String,
        products: Vec<String>,
        tx: ClientTx,
        /// Frames to send, each `channel\0events`.
        reply: oneshot::Sender<Vec<String>>,
    },
    /// A Coinbase client unsubscribes.
    Unsubscribe {
        client: u64,
        channel: String,
        products: Vec<String>,
    },
    /// A Binance client with its streams.
    Streams {
        client: u64,
        streams: Vec<String>,
        tx: ClientTx,
    },
    /// A connection ended.
    Gone { client: u64 },
    /// A Binance REST depth snapshot; `None` for an unknown symbol.
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

/// The market: source, books, subscriptions.
pub(crate) struct Market {
    venue: Venue,
    feed: Feed,
    decoder: Decoder,
    books: Books,
    /// Coinbase: client → (channel → products).
    cb_subs: HashMap<u64, (ClientTx, HashMap<String, HashSet<String>>)>,
    /// Coinbase: client → level-2 products it waits a first snapshot for.
    awaiting: HashMap<u64, HashSet<String>>,
    /// Binance: a REST snapshot went by in the source.
    saw_rest: bool,
    /// Binance: client → streams.
    bn_subs: HashMap<u64, (ClientTx, HashSet<String>)>,
    stats: Arc<SimStats>,
    pending: Option<Owned>,
}

impl Market {
    pub(crate) fn new(venue: Venue, feed: Feed, stats: Arc<SimStats>) -> Market {
        Market {
            venue,
            feed,
            decoder: Decoder::default(),
            books: Books::default(),
            cb_subs: HashMap::new(),
            awaiting: HashMap::new(),
            saw_rest: false,
            bn_subs: HashMap::new(),
            stats,
            pending: None,
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
        if f.rest_symbol.is_some() || f.venue != self.venue {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&f.data).ok()?;
        match self.venue {
            Venue::Coinbase => coinbase::outgoing(&v, &f.data),
            _ => binance::outgoing(&v, &f.data),
        }
    }

    fn book_of(&self, symbol: &str) -> Option<&Instrument> {
        self.books.find(self.venue, symbol)
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Subscribe {
                client,
                channel,
                products,
                tx,
                reply,
            } => {
                let _ = reply.send(self.subscribe(client, channel, products, tx));
            }
            Control::Unsubscribe {
                client,
                channel,
                products,
            } => {
                if let Some((_, subs)) = self.cb_subs.get_mut(&client) {
                    if let Some(set) = subs.get_mut(&channel) {
                        for p in &products {
                            set.remove(p);
                        }
                    }
                }
            }
            Control::Streams {
                client,
                streams,
                tx,
            } => {
                self.bn_subs
                    .insert(client, (tx, streams.into_iter().collect()));
            }
            Control::Gone { client } => {
                self.awaiting.remove(&client);
                self.cb_subs.remove(&client);
                self.bn_subs.remove(&client);
            }
            Control::Depth {
                symbol,
                limit,
                reply,
            } => {
                let depth = self.book_of(&symbol).map(|i| binance::depth(i, limit));
                let _ = reply.send(depth);
            }
        }
    }

    /// A Coinbase subscription: the frames to answer with (`channel\0events`), the
    /// confirmation first, then a `level2` snapshot of each product whose book exists;
    /// the others get the source's first snapshot when it comes.
    fn subscribe(
        &mut self,
        client: u64,
        channel: String,
        products: Vec<String>,
        tx: ClientTx,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if channel == "level2" {
            for p in &products {
                match self.book_of(p).map(|i| coinbase::snapshot(p, i)) {
                    Some(s) => out.push(("l2_data".to_string(), s)),
                    None => {
                        self.awaiting.entry(client).or_default().insert(p.clone());
                    }
                }
            }
        }
        let entry = self
            .cb_subs
            .entry(client)
            .or_insert_with(|| (tx, HashMap::new()));
        entry
            .1
            .entry(channel.clone())
            .or_default()
            .extend(products.iter().cloned());
        let confirm = coinbase::confirmation(&entry.1);
        let mut frames = vec![format!("subscriptions\u{0}{confirm}")];
        frames.extend(out.into_iter().map(|(ch, ev)| format!("{ch}\u{0}{ev}")));
        frames
    }

    fn has_clients(&self) -> bool {
        !self.cb_subs.is_empty() || !self.bn_subs.is_empty()
    }

    /// Whether the source is still in its opening part, consumed before anyone
    /// connects so the books exist: Coinbase subscription confirmations and snapshots up
    /// to the first level-2 update; Binance frames until a first REST snapshot, REST
    /// snapshots, and diffs of symbols not yet synced.
    fn is_setup(&self, f: &Owned) -> bool {
        match f.venue {
            _ if f.rest_symbol.is_some() => true,
            Venue::Coinbase => {
                !f.data.contains("\"type\":\"update\"")
                    || !f.data.contains("\"channel\":\"l2_data\"")
            }
            _ => {
                if !self.saw_rest {
                    return true;
                }
                if !f.data.contains("depthUpdate") {
                    return false;
                }
                let sym = f
                    .data
                    .split("\"s\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("");
                self.book_of(sym).is_none_or(|i| i.top.update_id == 0)
            }
        }
    }

    /// The connections a frame goes to.
    fn targets(&mut self, out: &Outgoing) -> Vec<(u64, ClientTx)> {
        let mut targets = Vec::new();
        match self.venue {
            Venue::Coinbase if out.snapshot => {
                for (id, (tx, _)) in &self.cb_subs {
                    if let Some(set) = self.awaiting.get_mut(id) {
                        if out.products.iter().any(|p| set.remove(p)) {
                            targets.push((*id, tx.clone()));
                        }
                    }
                }
            }
            Venue::Coinbase => {
                for (id, (tx, subs)) in &self.cb_subs {
                    if let Some(ps) = subs.get(&out.route) {
                        if out.route == "heartbeats" || out.products.iter().any(|p| ps.contains(p))
                        {
                            targets.push((*id, tx.clone()));
                        }
                    }
                }
            }
            _ => {
                for (id, (tx, streams)) in &self.bn_subs {
                    if streams.contains(&out.route) {
                        targets.push((*id, tx.clone()));
                    }
                }
            }
        }
        targets
    }

    /// Hands a frame to its connections; under [`Pacing::Max`] waits for each to take
    /// it, otherwise drops a connection whose queue is full.
    async fn route(&mut self, out: Outgoing, pacing: Pacing, ctrl: &mut mpsc::Receiver<Control>) {
        let out = Arc::new(out);
        for (id, tx) in self.targets(&out) {
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
                self.cb_subs.remove(&id);
                self.bn_subs.remove(&id);
            }
        }
    }

    /// Consumes the source's opening (snapshots) so the books exist before anyone asks.
    fn open(&mut self) -> Result<()> {
        while let Some(f) = self.feed.next()? {
            if self.is_setup(&f) {
                self.saw_rest |= f.rest_symbol.is_some();
                self.absorb(&f);
                self.stats.frames.fetch_add(1, Ordering::Relaxed);
            } else {
                self.pending = Some(f);
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
        let f = match m.pending.take() {
            Some(f) => f,
            None => match m.feed.next()? {
                Some(f) => f,
                None => {
                    m.stats.done.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "source exhausted after {} frames; still serving snapshots",
                        m.stats.frames.load(Ordering::Relaxed)
                    );
                    continue;
                }
            },
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
        }
        n += 1;
        m.stats.frames.fetch_add(1, Ordering::Relaxed);
        m.saw_rest |= f.rest_symbol.is_some();
        if let Some(out) = m.absorb(&f) {
            m.route(out, pacing, &mut ctrl).await;
        }
    }
}
