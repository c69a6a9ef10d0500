//! Model-checks the seqlock with loom: every interleaving of one writer publishing twice
//! and one reader copying must never yield a mixed copy.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p hermes-shm --test loom --release`.
#![cfg(loom)]

use hermes_shm::seqlock;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;

#[test]
fn reader_never_sees_a_mixed_publication() {
    loom::model(|| {
        let seq = Arc::new(AtomicU64::new(0));
        let words: Arc<[AtomicU64; 3]> =
            Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let writer = {
            let (seq, words) = (seq.clone(), words.clone());
            loom::thread::spawn(move || {
                seqlock::write(&seq, &words[..], &[1, 1, 1]);
                seqlock::write(&seq, &words[..], &[2, 2, 2]);
            })
        };
        let mut dst = [0u64; 3];
        if let Some(s) = seqlock::try_read(&seq, &words[..], &mut dst) {
            assert!(s % 2 == 0);
            assert!(
                dst[0] == dst[1] && dst[1] == dst[2],
                "mixed copy {dst:?} at seq {s}"
            );
            assert_eq!(dst[0], s / 2, "the copy belongs to the sequence it reports");
        }
        writer.join().unwrap();
    });
}
