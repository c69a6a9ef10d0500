//! The `scaleout` target: the two binary codecs that cross hosts (NATS MD messages,
//! `hermes_book::wire`, and SNAP checkpoints, `hermes_book::checkpoint`), fed bytes a
//! broken or hostile publisher could send a mirror.
//!
//! Input: one selector byte (even: an MD message, odd: a checkpoint), then the bytes.
//! Properties, besides never panicking:
//! * an MD message that decodes re-encodes (begin, each event, end) to the same bytes,
//!   and decoding is all or nothing (a refused message emits no event);
//! * a checkpoint that decodes restores into a fresh market, and the restored
//!   instrument's checkpoint decodes again and restores to the same bytes (restore ∘
//!   checkpoint is a fixed point).

use hermes_book::checkpoint::decode_checkpoint;
use hermes_book::wire::{begin_message, decode_events, encode_event, end_message};
use hermes_book::{InstId, Market};

/// Runs the `scaleout` target's checks on `input`.
pub fn run(input: &[u8]) {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    if sel % 2 == 0 {
        let mut events = Vec::new();
        match decode_events(data, InstId(0), |e| events.push(e)) {
            Ok(n) => {
                assert_eq!(n, events.len());
                let mut again = Vec::new();
                begin_message(&mut again);
                for e in &events {
                    assert!(encode_event(e, &mut again), "{e:?} decoded but is not a record");
                }
                end_message(&mut again);
                assert_eq!(again, data, "an accepted MD message re-encodes differently");
            }
            Err(_) => assert!(events.is_empty(), "a refused MD message emitted events"),
        }
    } else if let Ok(cp) = decode_checkpoint(data) {
        let mut m = Market::default();
        let id = m.restore(cp);
        let mut first = Vec::new();
        m.instrument(id).checkpoint(&mut first);
        let cp2 = decode_checkpoint(&first).expect("a restored instrument's checkpoint decodes");
        let mut m2 = Market::default();
        let id2 = m2.restore(cp2);
        let mut second = Vec::new();
        m2.instrument(id2).checkpoint(&mut second);
        assert_eq!(first, second, "restore ∘ checkpoint is not a fixed point");
    }
}
