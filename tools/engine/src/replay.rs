//! Replay: feeds a [`Source`] through the [`Decoder`] into the engine's ring, at recorded
//! speed, N× or as fast as possible.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hermes_ingest::capture::TornTail;
use hermes_ingest::source::{Position, Source, SourceError};
use hermes_ingest::{DecodeStats, Decoder, EventSink, FrameTap};

/// Replay pacing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the engine goes.
    Max,
    /// Recorded timing divided by this factor (1.0 = real time).
    Times(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("bad speed {s:?}: use max, realtime, or a factor like 10x");
        match s {
            "max" => Ok(Speed::Max),
            "realtime" => Ok(Speed::Times(1.0)),
            _ => {
                let f: f64 = s
                    .strip_suffix('x')
                    .ok_or_else(err)?
                    .parse()
                    .map_err(|_| err())?;
                if f.is_finite() && f > 0.0 {
                    Ok(Speed::Times(f))
                } else {
                    Err(err())
                }
            }
        }
    }
}

/// How many error messages are kept and logged; the rest are only counted.
const ERROR_LOG_LIMIT: usize = 20;

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// Decoder counters.
    pub decode: DecodeStats,
    /// Lines that were not frames.
    pub bad_lines: u64,
    /// The first error messages.
    pub errors: Vec<String>,
    /// Where a native capture's tail was torn.
    pub torn: Option<TornTail>,
    /// Damaged regions of a native capture that were skipped (the first
    /// [`hermes_ingest::capture::MAX_DAMAGE_KEPT`]); the records after each were replayed.
    pub damage: Vec<hermes_ingest::capture::Damage>,
    /// All damaged regions skipped, and their bytes.
    pub damaged: (u64, u64),
    /// Metadata lines skipped.
    pub meta_lines: u64,
    /// Frames without a receive time (no pacing possible for them).
    pub untimed: u64,
    /// Stopped by a signal.
    pub interrupted: bool,
    /// Fatal read error, if any.
    pub fatal: Option<String>,
    /// Binance symbols that never got a snapshot, with the diffs still buffered.
    pub unsynced: Vec<(String, usize)>,
    /// Instruments stale at the end.
    pub stale: Vec<String>,
}

impl ReplaySummary {
    /// Total malformed inputs: undecodable frames plus unusable lines.
    pub fn errors_total(&self) -> u64 {
        self.decode.parse_errors + self.bad_lines
    }

    fn note(&mut self, msg: String) {
        if self.errors.len() < ERROR_LOG_LIMIT {
            tracing::warn!("{msg}");
            self.errors.push(msg);
        }
    }
}

/// Replays `source` into `sink` until the end, a fatal read error, or `stop`. Every frame
/// goes to `tap` (the persister's journal feed) before it is decoded.
pub fn replay<S: EventSink>(
    mut source: Source,
    decoder: &mut Decoder,
    speed: Speed,
    sink: &mut S,
    tap: &mut dyn FrameTap,
    stop: &AtomicBool,
) -> ReplaySummary {
    let mut sum = ReplaySummary::default();
    let mut clock: Option<(i64, Instant)> = None;
    loop {
        // Relaxed: a shutdown request; promptness, not ordering, matters.
        if stop.load(Ordering::Relaxed) {
            sum.interrupted = true;
            break;
        }
        let position = source.position();
        let (result, venue, what) = {
            let frame = match source.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(SourceError::BadLine { path, line, reason }) => {
                    sum.bad_lines += 1;
                    sum.note(format!("{path}:{line}: skipped: {reason}"));
                    continue;
                }
                Err(e) => {
                    sum.fatal = Some(e.to_string());
                    break;
                }
            };
            if let Speed::Times(f) = speed {
                if frame.recv_ts_ns == 0 {
                    sum.untimed += 1;
                } else {
                    let (t0, w0) = *clock.get_or_insert((frame.recv_ts_ns, Instant::now()));
                    let due =
                        Duration::from_nanos(((frame.recv_ts_ns - t0).max(0) as f64 / f) as u64);
                    let now = w0.elapsed();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
            }
            let what = match frame.kind {
                hermes_ingest::FrameKind::Ws => "frame",
                hermes_ingest::FrameKind::RestDepth { .. } => "REST snapshot",
            };
            tap.frame(&frame);
            (decoder.decode(&frame, sink), frame.venue, what)
        };
        if let Err(e) = result {
            let venue_msg = match e.kind {
                hermes_ingest::ErrorKind::VenueError => decoder
                    .last_venue_error()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            // Lines are numbered once read; a native record is where reading started.
            let pos = match source.position() {
                p @ Position::Line(_) => p,
                Position::Byte(_) => position,
            };
            sum.note(format!("{pos} {what} ({}): {e}{venue_msg}", venue.name()));
        }
    }
    sum.decode = decoder.stats();
    sum.torn = source.torn().cloned();
    let (damage, regions, bytes) = source.damage();
    sum.damage = damage.to_vec();
    sum.damaged = (regions, bytes);
    sum.meta_lines = source.meta_lines();
    let names: Vec<String> = decoder
        .instruments()
        .map(|(_, v, s, _)| format!("{}:{}", v.name(), s))
        .collect();
    sum.unsynced = decoder
        .unsynced()
        .into_iter()
        .map(|(i, n)| (names[i.0 as usize].clone(), n))
        .collect();
    sum.stale = decoder
        .stale_instruments()
        .map(|i| names[i.0 as usize].clone())
        .collect();
    sum
}
