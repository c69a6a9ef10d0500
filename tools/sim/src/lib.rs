//! # hermes-sim
//!
//! The exchange simulator and the synthetic market generator.
mod server;
pub mod synth;
pub use server::*;
