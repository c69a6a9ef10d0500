//! # hermes (engine wiring)
//!
//! The library behind the `hermes` command: it wires the crates into an engine. The
//! decoding lives in `hermes-ingest`, the book in `hermes-book`, the shared memory in
//! `hermes-shm`; this crate owns the threads and rings between them ([`engine`]), the book
//! thread's state and publishing rules ([`books`]), replay pacing ([`replay`]), the JSON
//! report shape ([`report`]) and the synthetic market generator ([`synth`]).
//!
//! ```
//! use hermes::engine::{run, EngineOptions};
//! use hermes::replay::{replay, Speed};
//! use hermes_ingest::{source::{Source, SourceOptions}, Decoder};
//! # let dir = std::env::temp_dir().join(format!("hermes-lib-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("sample.jsonl");
//! # std::fs::write(&path, "{\"stream\":\"btcusdt@bookTicker\",\"data\":{\"u\":5,\"s\":\"BTCUSDT\",\"b\":\"1.5\",\"B\":\"2\",\"a\":\"1.6\",\"A\":\"3\"}}\n").unwrap();
//! let source = Source::open(&path, &SourceOptions::default()).unwrap();
//! let out = run(&EngineOptions::default(), move |sink| {
//!     let stop = std::sync::atomic::AtomicBool::new(false);
//!     replay(source, &mut Decoder::default(), Speed::Max, sink, &mut hermes_ingest::NoTap, &stop)
//! }).unwrap();
//! assert_eq!(out.books.instruments[0].last.bid_px, 150_000_000);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

pub mod analytics;
pub mod books;
pub mod engine;
pub mod http;
pub mod live;
pub mod metrics;
pub mod replay;
pub mod report;
pub mod sim;
pub mod synth;
pub mod top;
