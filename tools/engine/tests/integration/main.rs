//! The engine's integration tests, one binary (the allocation-counting test is its own
//! binary: it installs a global allocator).
//!
//! * [`kernels`]: every publication's kernels against an independent reference.
//! * [`tables`]: the persister's `top_of_book` rows in a real PostgreSQL equal the shm
//!   slot images the book thread published for the same frames.

mod kernels;
mod tables;
