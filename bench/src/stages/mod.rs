//! The benchmark stages. Each takes the run's [`Config`] and returns a
//! [`crate::report::Stage`] whose metrics carry their same-run baselines.

use std::path::PathBuf;

pub mod book;
pub mod decimal;
pub mod e2e;
pub mod export;
pub mod memory;
pub mod nats;
pub mod parse;
pub mod persist;
pub mod ring;
pub mod serde_types;
pub mod shm;
pub mod ws;

/// Run settings shared by the stages.
#[derive(Clone, Debug)]
pub struct Config {
    /// Smoke-test sizes (about two minutes in all).
    pub quick: bool,
    /// A capture file to parse (and export) besides the generated frames.
    pub capture: Option<PathBuf>,
    /// This executable, for the child processes (readers in another process).
    pub exe: PathBuf,
    /// Scratch directory (shm files, the PostgreSQL cluster, journals).
    pub tmp: PathBuf,
}

impl Config {
    /// `full` in a full run, `quick` in a quick one.
    pub fn size<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Stage names in run order.
pub const ALL: [&str; 11] = [
    "parse", "decimal", "book", "ring", "shm", "e2e", "ws", "nats", "persist", "export", "memory",
];
