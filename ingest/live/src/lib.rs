//! # hermes-live
//!
//! Live ingest for the Hermes engine.
mod session;
pub use session::*;
