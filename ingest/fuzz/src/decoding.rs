//! The decoder targets (`coinbase`, `binance`, `webhook`): a [`Script`] of frames of one
//! venue through [`Decoder::decode`], as the live driver and replay call it.
//!
//! Properties, besides never panicking:
//! * **Deterministic**: two fresh decoders given the same script produce the same
//!   results and events, step by step.
//! * **The error contract** ([`Decoder::decode`]): a rejected frame hands the sink
//!   nothing but instrument definitions and stale marks; an action
//!   ([`Decoder::mark_stale`]) only stale marks.
//! * **Applied whole**: in an accepted frame, every level change and snapshot of an
//!   instrument is followed by a commit of that instrument (nothing is left half
//!   applied); every event comes after its instrument's definition, with dense ids.
//! * **Fixed point**: every price and size is non-negative and round-trips through its
//!   decimal text at the instrument's scale ([`crate::decimal::assert_round_trip`]).
//! * **A rejected frame leaves no trace** (Binance and webhook): a decoder given only
//!   the frames the first one accepted produces the same events for each of them
//!   (instruments named by symbol, stale marks aside). Coinbase is exempt by contract: a
//!   rejected frame whose `sequence_num` was read still consumes that number, so a later
//!   frame with it is a duplicate there and not in a run without the rejected frame.
//! * The book model ([`hermes_book::Market::apply`]) takes every event emitted.

use hermes_book::{Market, Scale};
use hermes_ingest::{
    DecodeError, Decoder, DecoderOptions, Event, Frame, FrameKind, InstId, ScaleConfig, Venue,
};

use crate::decimal::assert_round_trip;
use crate::script::{Script, Step};

/// Instrument cap of the main runs: small, so that `TooManyInstruments` is reachable.
const FEW_INSTRUMENTS: usize = 8;
/// Instrument cap of the no-trace runs: never reached, so both runs register the same.
const MANY_INSTRUMENTS: usize = 1 << 20;
/// Binance buffer cap: small, so that buffer overflows are reachable.
const MAX_BUFFER_BYTES: usize = 4096;

/// What one step produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `Some(accepted)` for a frame, `None` for an action or a step left out.
    accepted: Option<bool>,
    /// Every event the sink received during the step.
    events: Vec<Event>,
    /// The events that change books or record trades (not definitions, not stale marks),
    /// with the instrument named by symbol instead of id: comparable across decoders.
    content: Vec<(String, Event)>,
}

/// An instrument as its definition announced it.
struct Known {
    symbol: String,
    scale: Scale,
}

/// `ev` with its instrument id replaced by 0 (definitions and stale marks kept whole).
fn without_inst(ev: Event) -> Event {
    match ev {
        Event::Define { .. } | Event::Stale { .. } => ev,
        _ => ev.with_inst(InstId(0)),
    }
}

/// Checks one step's events against the decoder's contract; `result` is `None` for an
/// action. Returns the step's content events.
fn check_step(
    result: Option<&Result<(), DecodeError>>,
    events: &[Event],
    known: &mut Vec<Known>,
) -> Vec<(String, Event)> {
    for ev in events {
        if let Event::Define {
            inst,
            symbol,
            scale,
            ..
        } = ev
        {
            assert_eq!(
                inst.0 as usize,
                known.len(),
                "instrument ids are dense and in order"
            );
            known.push(Known {
                symbol: symbol.as_str().to_string(),
                scale: *scale,
            });
        } else {
            assert!(
                (ev.inst().0 as usize) < known.len(),
                "{ev:?} before its instrument's Define"
            );
        }
    }
    match result {
        Some(Ok(())) => {
            for (i, ev) in events.iter().enumerate() {
                if let Event::Level { inst, .. } | Event::Snapshot { inst } = ev {
                    assert!(
                        events[i + 1..]
                            .iter()
                            .any(|e| matches!(e, Event::Commit { inst: c, .. } if c == inst)),
                        "an accepted frame left {ev:?} without a commit: {events:?}"
                    );
                }
            }
        }
        Some(Err(e)) => {
            for ev in events {
                assert!(
                    matches!(ev, Event::Define { .. } | Event::Stale { stale: true, .. }),
                    "a rejected frame ({e}) emitted {ev:?}"
                );
            }
        }
        None => {
            for ev in events {
                assert!(
                    matches!(ev, Event::Stale { stale: true, .. }),
                    "mark_stale emitted {ev:?}"
                );
            }
        }
    }
    let mut content = Vec::new();
    for ev in events {
        let scale = known[ev.inst().0 as usize].scale;
        let (p, s) = (scale.price_decimals, scale.size_decimals);
        let values: Vec<(i64, u8)> = match *ev {
            Event::Level { price, qty, .. } | Event::Trade { price, qty, .. } => {
                vec![(price.0, p), (qty.0, s)]
            }
            Event::Quote {
                bid_px,
                bid_qty,
                ask_px,
                ask_qty,
                ..
            } => vec![(bid_px.0, p), (bid_qty.0, s), (ask_px.0, p), (ask_qty.0, s)],
            _ => Vec::new(),
        };
        for (m, d) in values {
            assert!(m >= 0, "negative mantissa {m} accepted in {ev:?}");
            assert_round_trip(m, d);
        }
        if !matches!(ev, Event::Define { .. } | Event::Stale { .. }) {
            content.push((
                known[ev.inst().0 as usize].symbol.clone(),
                without_inst(*ev),
            ));
        }
    }
    content
}

/// Runs the steps of `script` for which `keep(step index)` holds through a fresh
/// decoder, checking each step's contract; the others yield an empty outcome.
fn play(
    venue: Venue,
    script: &Script<'_>,
    max_instruments: usize,
    keep: &dyn Fn(usize) -> bool,
) -> Vec<Outcome> {
    let mut dec = Decoder::new(DecoderOptions {
        scales: ScaleConfig {
            default: script.scale,
            overrides: Default::default(),
        },
        max_instruments,
        max_buffer_bytes: MAX_BUFFER_BYTES,
    });
    let mut known = Vec::new();
    let mut out = Vec::with_capacity(script.steps.len());
    for (i, step) in script.steps.iter().enumerate() {
        let mut events: Vec<Event> = Vec::new();
        if !keep(i) {
            out.push(Outcome {
                accepted: None,
                events,
                content: Vec::new(),
            });
            continue;
        }
        let result = match *step {
            Step::Frame {
                rest_symbol,
                conn,
                data,
            } => {
                let frame = Frame {
                    venue,
                    kind: match rest_symbol {
                        Some(symbol) => FrameKind::RestDepth { symbol },
                        None => FrameKind::Ws,
                    },
                    conn,
                    recv_ts_ns: i as i64 * 1_000,
                    data,
                };
                Some(dec.decode(&frame, &mut events))
            }
            Step::MarkStale => {
                let ids: Vec<InstId> = dec.instruments().map(|(id, ..)| id).collect();
                for id in ids {
                    dec.mark_stale(id, &mut events);
                }
                None
            }
            Step::Reset(conn) => {
                dec.reset_coinbase_connection(conn);
                None
            }
        };
        let content = check_step(result.as_ref(), &events, &mut known);
        out.push(Outcome {
            accepted: result.map(|r| r.is_ok()),
            events,
            content,
        });
    }
    out
}

/// Decodes `input`, a [`Script`] of frames of `venue`, and checks the properties in the
/// module docs; panics on a violation (libFuzzer's finding).
pub fn run(venue: Venue, input: &[u8]) {
    let script = Script::parse(input);
    let first = play(venue, &script, FEW_INSTRUMENTS, &|_| true);
    let again = play(venue, &script, FEW_INSTRUMENTS, &|_| true);
    assert!(
        first == again,
        "two fresh decoders disagree on the same frames"
    );
    let mut market = Market::default();
    for ev in first.iter().flat_map(|o| &o.events) {
        market.apply(ev);
    }
    if venue == Venue::Coinbase {
        return;
    }
    let all = play(venue, &script, MANY_INSTRUMENTS, &|_| true);
    let accepted: Vec<bool> = all.iter().map(|o| o.accepted != Some(false)).collect();
    let only = play(venue, &script, MANY_INSTRUMENTS, &|i| accepted[i]);
    for (i, (a, b)) in all.iter().zip(&only).enumerate() {
        if a.accepted != Some(true) {
            continue;
        }
        assert_eq!(
            b.accepted,
            Some(true),
            "step {i} was accepted after the rejected frames and refused without them"
        );
        assert!(
            a.content == b.content,
            "step {i} decodes differently after the rejected frames (a rejected frame left state behind):\n with them:    {:?}\n without them: {:?}",
            a.content,
            b.content
        );
    }
}
