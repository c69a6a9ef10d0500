//! The ingest thread's shared state: every frame, from either venue's connection or a
//! webhook, goes through the tap and the decoder into the sink here, and the books a gap
//! left stale wait here, per venue, for their session to rebuild them.

use std::sync::atomic::Ordering;
use std::time::Instant;

use hermes_book::clock::unix_ns;
use hermes_ingest::{DecodeStats, Decoder, EventSink, Frame, FrameKind, FrameTap, InstId, Venue};

use crate::stats::LiveStats;
use crate::tick::{SeenIds, TickOutcome, TickRequest};
use crate::LiveSummary;

/// Error messages kept for the summary.
const MAX_ERRORS: usize = 20;

/// Decoder, sink and tap of the one ingest thread (shared through a `RefCell` by its
/// tasks).
pub(crate) struct Pipeline<'a, S: EventSink> {
    decoder: Decoder,
    sink: &'a mut S,
    tap: &'a mut dyn FrameTap,
    stats: &'a LiveStats,
    resync_buf: Vec<InstId>,
    /// Symbols waiting for a rebuild, per venue code.
    pending: [Vec<String>; Venue::CODES],
    next_conn: u16,
    errors: Vec<String>,
    last_frame: Option<Instant>,
    seen: SeenIds,
}

impl<'a, S: EventSink> Pipeline<'a, S> {
    pub(crate) fn new(
        decoder: Decoder,
        sink: &'a mut S,
        tap: &'a mut dyn FrameTap,
        stats: &'a LiveStats,
    ) -> Self {
        Pipeline {
            decoder,
            sink,
            tap,
            stats,
            resync_buf: Vec::new(),
            pending: Default::default(),
            next_conn: 0,
            errors: Vec::new(),
            last_frame: None,
            seen: SeenIds::default(),
        }
    }

    /// The decoder's counters.
    pub(crate) fn decode_stats(&self) -> DecodeStats {
        self.decoder.stats()
    }

    /// When the last venue frame arrived.
    pub(crate) fn last_frame(&self) -> Option<Instant> {
        self.last_frame
    }

    /// Numbers a new connection (shared by both venues, wrapping).
    pub(crate) fn new_conn(&mut self) -> u16 {
        self.next_conn = self.next_conn.wrapping_add(1);
        self.next_conn
    }

    /// The venue's symbols waiting for a rebuild, now handed to its session.
    pub(crate) fn take_pending(&mut self, venue: Venue) -> Vec<String> {
        std::mem::take(&mut self.pending[venue as usize])
    }

    /// A webhook tick: applied once per `event_id`, through the tap and decoder like any
    /// frame; answered after its events are in the ring.
    pub(crate) fn tick(&mut self, req: TickRequest) {
        if self.seen.contains(&req.event_id) {
            let _ = req.reply.send(TickOutcome::Duplicate);
            return;
        }
        let f = Frame {
            venue: Venue::Webhook,
            kind: FrameKind::Ws,
            conn: 0,
            recv_ts_ns: unix_ns(),
            data: &req.frame,
        };
        self.tap.frame(&f);
        let outcome = match self.decoder.decode(&f, self.sink) {
            Ok(()) => {
                self.seen.insert(req.event_id);
                TickOutcome::Accepted
            }
            Err(e) => TickOutcome::Rejected(e.to_string()),
        };
        let _ = req.reply.send(outcome);
    }

    /// A venue frame (WebSocket message or REST snapshot), timestamped on arrival.
    pub(crate) fn frame(&mut self, venue: Venue, kind: FrameKind<'_>, conn: u16, data: &[u8]) {
        let recv_ts_ns = unix_ns();
        let f = Frame {
            venue,
            kind,
            conn,
            recv_ts_ns,
            data,
        };
        self.tap.frame(&f);
        if let Err(e) = self.decoder.decode(&f, self.sink) {
            if self.errors.len() < MAX_ERRORS {
                let venue_msg = self
                    .decoder
                    .last_venue_error()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                let msg = format!(
                    "{} frame on connection {conn}: {e}{venue_msg}",
                    venue.name()
                );
                tracing::warn!(venue = venue.name(), conn, "frame refused: {e}{venue_msg}");
                self.errors.push(msg);
            }
        }
        self.last_frame = Some(Instant::now());
        // Relaxed: reported timestamp.
        self.stats
            .last_frame_ns
            .store(recv_ts_ns as u64, Ordering::Relaxed);
        self.after_decode();
    }

    fn after_decode(&mut self) {
        self.decoder.take_resyncs(&mut self.resync_buf);
        for i in 0..self.resync_buf.len() {
            if let Some((v, sym)) = self.decoder.instrument(self.resync_buf[i]) {
                let list = &mut self.pending[v as usize];
                if !list.iter().any(|s| s == sym) {
                    list.push(sym.to_string());
                }
            }
        }
    }

    /// A connection was lost: its venue's books are stale until rebuilt.
    pub(crate) fn venue_lost(&mut self, venue: Venue, symbols: &[String]) {
        for s in symbols {
            if let Some(i) = self.decoder.find(venue, s) {
                self.decoder.mark_stale(i, self.sink);
            }
        }
        self.after_decode();
        // The new connection rebuilds everything anyway.
        self.pending[venue as usize].clear();
    }

    /// The end of the run: decoder counters, first errors, books still stale.
    pub(crate) fn into_summary(self) -> LiveSummary {
        let stale = self
            .decoder
            .stale_instruments()
            .filter_map(|i| {
                self.decoder
                    .instrument(i)
                    .map(|(v, s)| format!("{}:{}", v.name(), s))
            })
            .collect();
        LiveSummary {
            decode: self.decoder.stats(),
            errors: self.errors,
            stale,
        }
    }
}
