//! What the simulator is told: [`SimOptions`] with its [`SimSource`], [`Pacing`] and
//! the [`Fault`]s to inject (parsed from `KIND=RATE`, `KIND=every:N` or
//! `KIND=at:N[,M…]`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hermes_ingest::Venue;

/// Where the simulator's frames come from.
#[derive(Clone, Debug)]
pub enum SimSource {
    /// A capture file (native or JSON lines); frames of other venues are skipped.
    Capture(PathBuf),
    /// The synthetic random-walk market with this many instruments.
    Synthetic {
        /// Instruments.
        instruments: usize,
        /// Levels per side.
        depth: usize,
        /// Seed.
        seed: u64,
        /// Frames to emit, or endless.
        frames: Option<u64>,
    },
}

/// Pacing of the market.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// Recorded timing divided by a factor (synthetic frames are 1 ms apart).
    Recorded(f64),
    /// A fixed number of frames per second.
    Rate(f64),
    /// As fast as the slowest client reads.
    Max,
}

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Close the connection.
    Disconnect,
    /// Drop a frame whose loss the client can tell: any frame on Coinbase Advanced Trade
    /// (a `sequence_num` is skipped), a depth diff on Binance spot and futures, a `match`
    /// on Coinbase Exchange (its level-2 frames have no sequence). On another frame it
    /// does nothing.
    Gap,
    /// Send a frame twice.
    Duplicate,
    /// Swap a frame with the next one (not a Coinbase Exchange level-2 frame: nothing
    /// would tell).
    Reorder,
    /// Send broken JSON (it consumes a Coinbase sequence number; not a Coinbase Exchange
    /// level-2 frame: nothing would tell).
    Malformed,
    /// Send a frame larger than the client's limit.
    Oversize,
    /// Pause the connection.
    Stall,
}

/// When a fault fires, counted in frames forwarded on a connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// With this probability per frame.
    Rate(f64),
    /// Every N-th frame.
    Every(u64),
    /// At these frame numbers (1-based).
    At(Vec<u64>),
}

/// A fault and its trigger, parsed from `KIND=RATE`, `KIND=every:N` or `KIND=at:N,M`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// When.
    pub trigger: Trigger,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            format!("bad fault {s:?}: use KIND=RATE, KIND=every:N or KIND=at:N[,M…]")
        })?;
        let kind = match k {
            "disconnect" => FaultKind::Disconnect,
            "gap" => FaultKind::Gap,
            "duplicate" => FaultKind::Duplicate,
            "reorder" => FaultKind::Reorder,
            "malformed" => FaultKind::Malformed,
            "oversize" => FaultKind::Oversize,
            "stall" => FaultKind::Stall,
            _ => {
                return Err(format!(
                    "unknown fault {k:?}: disconnect, gap, duplicate, reorder, malformed, oversize, stall"
                ))
            }
        };
        let bad = || format!("bad trigger {v:?} for {k}: a probability 0..1, every:N or at:N[,M…]");
        let trigger = if let Some(n) = v.strip_prefix("every:") {
            Trigger::Every(n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?)
        } else if let Some(list) = v.strip_prefix("at:") {
            Trigger::At(
                list.split(',')
                    .map(|n| n.parse().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            let p: f64 = v.parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad());
            }
            Trigger::Rate(p)
        };
        Ok(Fault { kind, trigger })
    }
}

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Venue protocol to speak: any venue but the webhook.
    pub venue: Venue,
    /// Frames.
    pub source: SimSource,
    /// Listen address.
    pub listen: SocketAddr,
    /// Pacing.
    pub pacing: Pacing,
    /// Faults.
    pub faults: Vec<Fault>,
    /// Size of an `oversize` frame.
    pub oversize_bytes: usize,
    /// Length of a `stall`.
    pub stall: Duration,
    /// Seed of fault decisions.
    pub seed: u64,
    /// REST depth requests allowed per second before answering 429 with Retry-After.
    pub rest_per_second: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert_eq!(
            "gap=0.01".parse::<Fault>().unwrap(),
            Fault {
                kind: FaultKind::Gap,
                trigger: Trigger::Rate(0.01)
            }
        );
        assert_eq!(
            "disconnect=every:500".parse::<Fault>().unwrap().trigger,
            Trigger::Every(500)
        );
        assert_eq!(
            "stall=at:3,9".parse::<Fault>().unwrap().trigger,
            Trigger::At(vec![3, 9])
        );
        assert!("gap=2".parse::<Fault>().is_err());
        assert!("boom=0.1"
            .parse::<Fault>()
            .unwrap_err()
            .contains("unknown fault"));
    }
}
