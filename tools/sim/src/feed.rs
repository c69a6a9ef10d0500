//! The simulator's source of frames, a capture file or the synthetic market, yielding
//! owned frames one at a time.

use anyhow::{Context, Result};
use hermes_ingest::source::{Source, SourceError, SourceOptions};
use hermes_ingest::{FrameKind, Venue};

use crate::options::{SimOptions, SimSource};
use crate::synth::{Synth, SynthOptions};

/// Frames from the source, owned.
pub(crate) enum Feed {
    Capture(Box<Source>),
    /// The generator and how many frames it may still emit (`None`: endless).
    Synth(Box<Synth>, Option<u64>),
}

/// One frame of the source.
pub(crate) struct Owned {
    pub(crate) venue: Venue,
    /// The symbol of a REST depth snapshot; `None` for a WebSocket message.
    pub(crate) rest_symbol: Option<String>,
    pub(crate) recv_ts_ns: i64,
    pub(crate) data: String,
}

impl Feed {
    /// Opens the source `opts` names; a synthetic market speaks `opts.venue` only.
    pub(crate) fn open(opts: &SimOptions) -> Result<Feed> {
        Ok(match &opts.source {
            SimSource::Capture(p) => Feed::Capture(Box::new(
                Source::open(p, &SourceOptions::default())
                    .with_context(|| format!("opening {}", p.display()))?,
            )),
            SimSource::Synthetic {
                instruments,
                depth,
                seed,
                frames,
            } => Feed::Synth(
                Box::new(Synth::new(SynthOptions {
                    venues: vec![opts.venue],
                    instruments: *instruments,
                    depth: *depth,
                    seed: *seed,
                    ..SynthOptions::default()
                })),
                *frames,
            ),
        })
    }

    /// The next frame, or `None` at the end; unreadable capture lines are skipped.
    pub(crate) fn next(&mut self) -> Result<Option<Owned>> {
        match self {
            Feed::Synth(s, left) => {
                if let Some(n) = left {
                    if *n == 0 {
                        return Ok(None);
                    }
                    *n -= 1;
                }
                let f = s.next_frame();
                Ok(Some(Owned {
                    venue: f.venue,
                    rest_symbol: f.rest_symbol,
                    recv_ts_ns: f.recv_ts_ns,
                    data: f.data,
                }))
            }
            Feed::Capture(src) => loop {
                match src.next_frame() {
                    Ok(Some(f)) => {
                        return Ok(Some(Owned {
                            venue: f.venue,
                            rest_symbol: match f.kind {
                                FrameKind::RestDepth { symbol } => {
                                    Some(String::from_utf8_lossy(symbol).into_owned())
                                }
                                FrameKind::Ws => None,
                            },
                            recv_ts_ns: f.recv_ts_ns,
                            data: String::from_utf8_lossy(f.data).into_owned(),
                        }))
                    }
                    Ok(None) => return Ok(None),
                    Err(SourceError::BadLine { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            },
        }
    }
}
