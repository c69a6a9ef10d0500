//! # hermes-engine
//!
//! The Hermes engine as a library: an ingest thread that decodes frames into
//! [`Event`](hermes_book::Event)s and a book thread that applies them to the
//! [`Market`](hermes_book::Market) model and publishes every change into the shm region,
//! joined by an rtrb SPSC ring, each pinned to its own core where the machine has cores
//! to spare.
//!
//! Main types:
//! * [`run`] with [`EngineOptions`]: starts both threads around an ingest closure (a
//!   replay, a live session, a benchmark generator) and hands back an [`EngineResult`].
//! * [`RingSink`], the ingest side of the ring, with its [`RingFullPolicy`] and
//!   [`RingStats`]; [`IdleStrategy`] says how both threads wait.
//! * [`Publisher`]: the book thread's state, the market plus the shm writer.
//! * [`replay()`]: feeds a capture [`Source`](hermes_ingest::source::Source) through the
//!   decoder at recorded speed, N× or as fast as possible.
//! * [`metrics`]: the counters and histograms `/metrics` renders.
//!
//! Command-line parsing lives in the `hermes` binary, which maps its arguments onto these
//! typed options.
//!
//! ```
//! use hermes_engine::{replay, run, EngineOptions, Speed};
//! use hermes_ingest::{source::{Source, SourceOptions}, Decoder};
//! # let dir = std::env::temp_dir().join(format!("hermes-engine-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("sample.jsonl");
//! # std::fs::write(&path, "{\"stream\":\"btcusdt@bookTicker\",\"data\":{\"u\":5,\"s\":\"BTCUSDT\",\"b\":\"1.5\",\"B\":\"2\",\"a\":\"1.6\",\"A\":\"3\"}}\n").unwrap();
//! let source = Source::open(&path, &SourceOptions::default()).unwrap();
//! let out = run(&EngineOptions::default(), move |sink| {
//!     let stop = std::sync::atomic::AtomicBool::new(false);
//!     replay(source, &mut Decoder::default(), Speed::Max, sink, &mut hermes_ingest::NoTap, &stop)
//! }).unwrap();
//! let (inst, slot) = out.books.published().next().unwrap();
//! assert_eq!((inst.symbol.as_str(), slot.bid_px), ("BTCUSDT", 150_000_000));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

mod idle;
pub mod metrics;
mod publisher;
mod replay;
mod ring;
mod shutdown;
mod threads;

pub use idle::{Idle, IdleStrategy};
pub use publisher::{encode, slot_kernels, PublishStats, Publisher};
pub use replay::{replay, ReplaySummary, Speed};
pub use ring::{RingFullPolicy, RingSink, RingStats};
pub use shutdown::shutdown_flag;
pub use threads::{run, EngineOptions, EngineResult, EventTap, EventTapSlot};

/// Why the engine could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The shm region could not be created.
    #[error("creating the shm region {}", path.display())]
    Shm {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: hermes_shm::ShmError,
    },
    /// A thread could not be started.
    #[error("starting the {name} thread")]
    Thread {
        /// Which.
        name: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A thread panicked (a bug: please report it with the log).
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
}
