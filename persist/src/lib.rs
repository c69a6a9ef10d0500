//! # hermes-persist
//!
//! The persister of Hermes: it will drain its own SPSC ring, append every raw frame to a
//! journal (a native capture file), and write batches to PostgreSQL with binary `COPY`,
//! committing the journal offset in the same transaction so a restart resumes exactly
//! once.
//!
//! Nothing is implemented here yet: this crate only reserves its place in the workspace
//! until its issue is worked on. It exposes no API on purpose, so nothing can depend on
//! behaviour that does not exist.
