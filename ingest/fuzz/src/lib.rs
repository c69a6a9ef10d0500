//! # hermes-fuzz
//!
//! What libFuzzer drives in each fuzz target of Hermes, and the properties checked on
//! every input. A target in `fuzz_targets/` is one line that hands its bytes to a
//! function here, so the properties read as plain Rust and the seed writer
//! (`examples/seeds.rs`) shares the input formats.
//!
//! | target | parser | checked besides "never panics" |
//! |---|---|---|
//! | `coinbase`, `binance`, `futures` (Binance USD-M, and the same script as COIN-M), `exchange` (Coinbase Exchange), `webhook` | [`hermes_ingest::Decoder`] over a [`script`] of frames | see [`decoding`]: same events from fresh decoders, rejected frames emit only what the contract allows and leave no trace, accepted levels end in a commit, values round-trip through decimal text, the book takes the events; USD-M and COIN-M decode a script alike |
//! | `capture` | [`hermes_ingest::source::Source`]: native, JSON lines, `<ts> <json>`, cryptofeed 1 and 2, plain, `.gz` or `.zst` | see [`capture`]: native records written back read the same; a torn tail starts where the good records end |
//! | `config` | [`hermes_live::LiveConfig::load`] (TOML file and environment) | see [`config`]: an accepted config obeys the validation rules; loading is deterministic |
//! | `shm` | [`hermes_shm::ShmReader`] on a file of hostile bytes | see [`shm`]: directory entries point at real slots; a slot with an even sequence reads, an odd one does not; the slot JSON parses |
//! | `decimal` | [`hermes_book::parse_decimal`], the JSON scanner's fast paths, RFC 3339 times | see [`decimal`]: text → mantissa → text → mantissa is the identity; fast path = general path |
//! | `scaleout` | [`hermes_book::wire::decode_events`] (NATS MD messages) and [`hermes_book::checkpoint::decode_checkpoint`] (SNAPs) on hostile bytes | see [`scaleout`]: an accepted message re-encodes to the same bytes, a refused one emits nothing; restore ∘ checkpoint is a fixed point |
//!
//! The `shm` and `capture` targets also have a structure-aware mutator
//! ([`shm::mutate`], [`capture::mutate`]): byte flips alone almost never reach a header
//! field's extreme values in a 5-9 KB region file, and never get past a capture record's
//! checksum.
//!
//! Bounded allocation is enforced by libFuzzer (`-malloc_limit_mb`, `-rss_limit_mb`, set
//! by `scripts/fuzz.sh`): an input that makes any target allocate past the limit is a
//! finding like a panic.
//!
//! ```
//! use hermes_ingest::Venue;
//! // A Binance diff, then the REST snapshot that syncs its book: a two-line script.
//! let input = concat!(
//!     r#"{"e":"depthUpdate","s":"BTCUSDT","U":5,"u":6,"b":[["1.5","2"]],"a":[]}"#,
//!     "\n",
//!     r#"@BTCUSDT {"lastUpdateId":5,"bids":[],"asks":[]}"#,
//! );
//! hermes_fuzz::decoding::run(Venue::Binance, input.as_bytes());
//! ```

pub mod capture;
pub mod config;
pub mod decimal;
pub mod decoding;
pub mod scratch;
pub mod scaleout;
pub mod script;
pub mod shm;

/// libFuzzer's own mutation (`libfuzzer_sys::fuzzer_mutate`), handed in by a target:
/// this library does not link libFuzzer, so the seed writer can use it.
pub type Mutate = fn(&mut [u8], usize, usize) -> usize;

/// SplitMix64, seeded by libFuzzer's mutation seed: the custom mutators' choices.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u32) -> Rng {
        Rng(seed as u64)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
