//! The generator's frames through the real decoder, and the simulator end to end in
//! process: a synthetic market served on a loopback port, clients over real WebSockets
//! and plain HTTP, what they receive decoded by the real decoder and checked against the
//! generator that made the market (the same seed gives the same frames). The market
//! waits for its clients (`Pacing::Max`), so each run is deterministic; nothing sleeps
//! and nothing is timed (a `stall` is seen in paused virtual time).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hermes_book::market::Market as Books;
use hermes_ingest::{DecodeStats, Decoder, Event, EventSink, Frame, FrameKind, Venue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::synth::{Synth, SynthBook, SynthFrame, SynthOptions};
use crate::{Pacing, SimOptions, SimSource, SimStats};

mod faults;
mod snapshots;
mod synth;

const SEED: u64 = 5;
const DEPTH: usize = 20;
/// Size of an `oversize` frame.
const OVERSIZE: usize = 100_000;
/// Length of a `stall` (virtual time).
const STALL: Duration = Duration::from_secs(3600);

/// A simulator on a free loopback port serving a synthetic market.
struct Sim {
    addr: SocketAddr,
    venue: Venue,
    instruments: usize,
    frames: u64,
    stats: Arc<SimStats>,
}

impl Sim {
    /// `frames` synthetic frames of `venue` with `instruments` instruments, paced by the
    /// client, with `faults`.
    async fn start(venue: Venue, instruments: usize, frames: u64, faults: &[&str]) -> Sim {
        let opts = SimOptions {
            venue,
            source: SimSource::Synthetic {
                instruments,
                depth: DEPTH,
                seed: SEED,
                frames: Some(frames),
            },
            listen: "127.0.0.1:0".parse().unwrap(),
            pacing: Pacing::Max,
            faults: faults.iter().map(|f| f.parse().unwrap()).collect(),
            oversize_bytes: OVERSIZE,
            stall: STALL,
            seed: 1,
            rest_per_second: 1_000,
        };
        let listener = crate::bind(opts.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(SimStats::default());
        tokio::spawn(crate::serve(listener, opts, stats.clone()));
        Sim {
            addr,
            venue,
            instruments,
            frames,
            stats,
        }
    }

    /// The generator the simulator walks, run over the same frames.
    fn synth(&self) -> (Synth, Vec<SynthFrame>) {
        let mut s = Synth::new(SynthOptions {
            venues: vec![self.venue],
            instruments: self.instruments,
            depth: DEPTH,
            seed: SEED,
            ..SynthOptions::default()
        });
        let frames = (0..self.frames).map(|_| s.next_frame()).collect();
        (s, frames)
    }

    /// The symbols of the market.
    fn symbols(&self) -> Vec<String> {
        self.synth()
            .0
            .books
            .iter()
            .map(|b| b.symbol.clone())
            .collect()
    }

    /// A WebSocket client on `path`.
    async fn connect(&self, path: &str) -> Client {
        let url = format!("ws://{}{path}", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Client { ws }
    }

    /// A Binance client of every stream of every symbol.
    async fn connect_streams(&self) -> Client {
        let mut streams = Vec::new();
        for s in self.symbols() {
            for st in [
                "depth@100ms",
                "trade",
                "aggTrade",
                "bookTicker",
                "markPrice@1s",
                "forceOrder",
            ] {
                streams.push(format!("{}@{st}", s.to_lowercase()));
            }
        }
        self.connect(&format!("/stream?streams={}", streams.join("/")))
            .await
    }

    /// A plain HTTP GET: status and body.
    async fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    /// The last frame the generator made that a client of every channel gets as it is
    /// (Coinbase Advanced Trade frames compare without their `sequence_num`).
    fn last_streamed(&self) -> String {
        let (_, frames) = self.synth();
        let last = frames
            .iter()
            .rev()
            .find(|f| f.rest_symbol.is_none() && streamed(self.venue, &f.data))
            .expect("a streamed frame");
        unnumbered(&last.data)
    }
}

/// Whether a client subscribed to everything gets the generator's frame `data` as it is
/// (not an opening snapshot or confirmation).
fn streamed(venue: Venue, data: &str) -> bool {
    match venue {
        Venue::Coinbase => {
            !data.contains("\"channel\":\"subscriptions\"") && !data.contains("\"snapshot\"")
        }
        Venue::CoinbaseExchange => ["l2update", "match", "ticker", "heartbeat"]
            .iter()
            .any(|t| data.contains(&format!("\"type\":\"{t}\""))),
        _ => data.starts_with("{\"stream\""),
    }
}

/// `text` without its value of `sequence_num` (the simulator numbers Coinbase Advanced
/// Trade frames per connection).
fn unnumbered(text: &str) -> String {
    const KEY: &str = "\"sequence_num\":";
    match text.find(KEY) {
        Some(i) => {
            let start = i + KEY.len();
            let end = text[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(text.len(), |e| start + e);
            format!("{}{}", &text[..start], &text[end..])
        }
        None => text.to_string(),
    }
}

/// A WebSocket client.
struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text frame; `None` once the server closed.
    async fn next(&mut self) -> Option<String> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(t)) => return Some(t.as_str().to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Frames until one equal to `last` (without `sequence_num`), or the close: the frames
    /// and when each came (virtual time under a paused clock).
    async fn until(&mut self, last: &str) -> Received {
        let mut got = Received::default();
        while let Some(t) = self.next().await {
            let end = unnumbered(&t) == last;
            got.frames.push(t);
            got.at.push(tokio::time::Instant::now());
            if end {
                return got;
            }
        }
        got.closed = true;
        got
    }
}

/// What a client received.
#[derive(Debug, Default)]
struct Received {
    frames: Vec<String>,
    at: Vec<tokio::time::Instant>,
    /// The server closed before the last frame.
    closed: bool,
}

/// Events applied straight to books.
struct Apply<'a>(&'a mut Books);

impl EventSink for Apply<'_> {
    fn push(&mut self, ev: Event) {
        self.0.apply(&ev);
    }
}

/// A client's books: the real decoder applying what it received.
struct ClientBooks {
    venue: Venue,
    decoder: Decoder,
    books: Books,
}

impl ClientBooks {
    fn new(venue: Venue) -> ClientBooks {
        ClientBooks {
            venue,
            decoder: Decoder::default(),
            books: Books::default(),
        }
    }

    fn decode(&mut self, kind: FrameKind<'_>, data: &str) {
        let frame = Frame {
            venue: self.venue,
            kind,
            conn: 0,
            recv_ts_ns: 1,
            data: data.as_bytes(),
        };
        if let Err(e) = self.decoder.decode(&frame, &mut Apply(&mut self.books)) {
            panic!("{e} in {}", &data[..data.len().min(300)]);
        }
    }

    fn ws(&mut self, data: &str) {
        self.decode(FrameKind::Ws, data);
    }

    fn rest(&mut self, symbol: &str, body: &str) {
        self.decode(
            FrameKind::RestDepth {
                symbol: symbol.as_bytes(),
            },
            body,
        );
    }

    fn stats(&self) -> DecodeStats {
        self.decoder.stats()
    }

    /// Asserts the client's book of every generator book equals it, level by level.
    fn assert_equal(&self, synth: &Synth) {
        for b in &synth.books {
            let i = self
                .books
                .find(self.venue, &b.symbol)
                .unwrap_or_else(|| panic!("no book of {}", b.symbol));
            let scale = |d: u8, to: u8| 10i64.pow(u32::from(to - d));
            let (pd, sd) = b.decimals();
            let (ps, ss) = (
                scale(pd, i.scale.price_decimals),
                scale(sd, i.scale.size_decimals),
            );
            let ours = |bids: bool| -> Vec<(i64, i64)> {
                let side: Vec<hermes_book::Level> = if bids {
                    i.book.bids().collect()
                } else {
                    i.book.asks().collect()
                };
                side.iter().map(|l| (l.price.0, l.qty.0)).collect()
            };
            let want = |b: &SynthBook, bids: bool| -> Vec<(i64, i64)> {
                let scaled = |(p, q): (&i64, &i64)| (p * ps, q * ss);
                if bids {
                    b.bids.iter().rev().map(scaled).collect()
                } else {
                    b.asks.iter().map(scaled).collect()
                }
            };
            assert_eq!(ours(true), want(b, true), "{} bids", b.symbol);
            assert_eq!(ours(false), want(b, false), "{} asks", b.symbol);
        }
    }
}
