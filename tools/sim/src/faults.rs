//! Fault injection on one connection: which faults fire on each forwarded frame, and
//! sending the frame as they bend it.

use std::sync::atomic::Ordering;

use anyhow::Result;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::options::{Fault, FaultKind, SimOptions, Trigger};
use crate::synth::Rng;
use crate::venue::{Exposure, SimVenue};
use crate::{SimStats, Ws};

/// Per-connection fault decisions.
pub(crate) struct Faults {
    sim: &'static dyn SimVenue,
    list: Vec<Fault>,
    rng: Rng,
    /// Frames forwarded so far.
    n: u64,
    /// A frame held back by `reorder`, sent after the next one.
    held: Option<String>,
}

impl Faults {
    /// The faults of `opts` for connection `id` (seeded by both) of venue `sim`.
    pub(crate) fn new(sim: &'static dyn SimVenue, opts: &SimOptions, id: u64) -> Faults {
        Faults {
            sim,
            list: opts.faults.clone(),
            rng: Rng::new(opts.seed ^ id),
            n: 0,
            held: None,
        }
    }

    /// The faults that fire on the next frame.
    fn next(&mut self) -> Vec<FaultKind> {
        self.n += 1;
        let n = self.n;
        let mut fired = Vec::new();
        for f in &self.list {
            let hit = match &f.trigger {
                Trigger::Rate(p) => (self.rng.below(1_000_000) as f64) < p * 1_000_000.0,
                Trigger::Every(k) => n % k == 0,
                Trigger::At(list) => list.contains(&n),
            };
            if hit {
                fired.push(f.kind);
            }
        }
        fired
    }

    /// Sends one forwarded frame with the faults its `exposure` allows (a `gap` drops
    /// only a frame whose loss the client can tell; `malformed` and `reorder` leave alone
    /// a frame whose tearing or moving it could not); `Ok(false)` = close the connection.
    ///
    /// The counters are for reports: `Relaxed`.
    pub(crate) async fn send(
        &mut self,
        ws: &mut Ws,
        text: String,
        exposure: Exposure,
        opts: &SimOptions,
        stats: &SimStats,
    ) -> Result<bool> {
        let mut out = vec![text];
        for f in self.next() {
            stats.faults.fetch_add(1, Ordering::Relaxed);
            match f {
                FaultKind::Disconnect => {
                    ws.close(None).await.ok();
                    return Ok(false);
                }
                FaultKind::Gap if exposure.gap => out.clear(),
                FaultKind::Gap => {}
                FaultKind::Duplicate => {
                    if let Some(t) = out.first().cloned() {
                        out.push(t);
                    }
                }
                FaultKind::Reorder if exposure.unsequenced => {}
                FaultKind::Reorder => {
                    if self.held.is_none() {
                        self.held = out.pop();
                    }
                }
                FaultKind::Malformed if exposure.unsequenced => {}
                FaultKind::Malformed => {
                    if let Some(t) = out.first_mut() {
                        t.truncate(t.len() / 2);
                    }
                }
                FaultKind::Oversize => {
                    let pad = "x".repeat(opts.oversize_bytes);
                    out.insert(0, self.sim.oversize(&pad));
                }
                FaultKind::Stall => tokio::time::sleep(opts.stall).await,
            }
        }
        if !out.is_empty() {
            if let Some(h) = self.held.take() {
                out.push(h);
            }
        }
        for t in out {
            stats.sent.fetch_add(1, Ordering::Relaxed);
            ws.feed(Message::text(t)).await?;
        }
        ws.flush().await?;
        Ok(true)
    }
}
