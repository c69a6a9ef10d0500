//! The seqlock protocol over a slot of atomic words.
//!
//! One writer per slot, any number of readers in any process. The payload is stored as
//! `AtomicU64` words accessed with `Relaxed` ordering between fences, so a reader racing
//! the writer reads stale or mixed words (which the sequence check then rejects) but
//! never commits a data race in the Rust memory model.
//!
//! Writer: `seq ← s+1` (odd) · release fence · payload stores · `seq ← s+2` (release).
//! Reader: `s1 ← seq` (acquire) · payload loads · acquire fence · `s2 ← seq`; the copy is
//! good when `s1 == s2` and `s1` is even.

use crate::sync::{fence, AtomicU64, Ordering};

/// Publishes `src` into `words` under the sequence `seq`.
///
/// Only one thread may write a given slot at a time (the region has one writer process,
/// and within it one book thread owns each slot).
#[inline]
pub fn write(seq: &AtomicU64, words: &[AtomicU64], src: &[u64]) {
    debug_assert_eq!(words.len(), src.len());
    // Relaxed: only this writer ever stores `seq`, so it reads its own last store.
    let s = seq.load(Ordering::Relaxed);
    debug_assert!(
        s & 1 == 0,
        "a slot has one writer; odd sequence means a torn writer"
    );
    // Relaxed store of the odd value; the release fence below keeps the payload stores
    // that follow from becoming visible before it (pairs with the reader's acquire fence:
    // a reader that sees any new payload word then sees `seq != s` at its second load).
    seq.store(s.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    for (w, v) in words.iter().zip(src) {
        // Relaxed: ordered by the fence above and the release store below.
        w.store(*v, Ordering::Relaxed);
    }
    // Release: publishes the payload; pairs with the reader's acquire load of `seq`.
    seq.store(s.wrapping_add(2), Ordering::Release);
}

/// One attempt to copy a consistent snapshot of `words` into `dst`. Returns the (even)
/// sequence it read, or `None` when the writer was inside the slot or wrote during the
/// copy.
#[inline]
pub fn try_read(seq: &AtomicU64, words: &[AtomicU64], dst: &mut [u64]) -> Option<u64> {
    debug_assert_eq!(words.len(), dst.len());
    // Acquire: pairs with the writer's closing release store, so the payload of that
    // publication (and everything before it) is visible to the loads below.
    let s1 = seq.load(Ordering::Acquire);
    if s1 & 1 == 1 {
        return None;
    }
    for (d, w) in dst.iter_mut().zip(words) {
        *d = w.load(Ordering::Relaxed);
    }
    // Acquire fence: orders the payload loads before the second sequence load; pairs with
    // the writer's release fence after its odd store.
    fence(Ordering::Acquire);
    let s2 = seq.load(Ordering::Relaxed);
    (s1 == s2).then_some(s1)
}

/// Copies a consistent snapshot, retrying while the writer is active, at most
/// `max_attempts` times. Returns the sequence of the copy, or `None` if the writer stayed
/// inside the slot throughout (it died or stopped mid-update).
#[inline]
pub fn read(
    seq: &AtomicU64,
    words: &[AtomicU64],
    dst: &mut [u64],
    max_attempts: u32,
) -> Option<u64> {
    for attempt in 0..max_attempts {
        if let Some(s) = try_read(seq, words, dst) {
            return Some(s);
        }
        if attempt < 64 {
            std::hint::spin_loop();
        } else {
            // The writer was preempted mid-slot (likely on a 2-core machine): let it run.
            yield_now();
        }
    }
    None
}

#[cfg(not(loom))]
fn yield_now() {
    std::thread::yield_now();
}

#[cfg(loom)]
fn yield_now() {
    loom::thread::yield_now();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn no_torn_read_between_threads() {
        const N: usize = 40;
        let seq = Arc::new(AtomicU64::new(0));
        let words: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let w = {
            let (seq, words, stop) = (seq.clone(), words.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u64; N];
                let mut v = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    v += 1;
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = v.wrapping_mul(i as u64 + 1);
                    }
                    write(&seq, &words, &buf);
                }
                v
            })
        };
        let mut buf = [0u64; N];
        // Miri interprets every instruction: fewer rounds, same interleavings checked.
        let rounds = if cfg!(miri) { 300 } else { 200_000 };
        for _ in 0..rounds {
            let s = read(&seq, &words, &mut buf, u32::MAX).unwrap();
            let v = buf[0];
            for (i, b) in buf.iter().enumerate() {
                assert_eq!(*b, v.wrapping_mul(i as u64 + 1), "torn read at seq {s}");
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(w.join().unwrap() > 0);
    }
}
