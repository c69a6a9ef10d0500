//! A reader that follows the file at a path across writer restarts: when a new writer
//! replaces the file (a new generation renamed into place), the next call reopens it.
//! `hermes top`, the HTTP face and `hermes serve` read through it.

use crate::{ReaderOptions, ShmError, ShmReader};
use std::path::{Path, PathBuf};

/// The reader of the file currently at a path.
pub struct ShmFollower {
    path: PathBuf,
    opts: ReaderOptions,
    reader: Option<ShmReader>,
}

impl std::fmt::Debug for ShmFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmFollower")
            .field("path", &self.path)
            .field("open", &self.reader.is_some())
            .finish()
    }
}

/// What [`ShmFollower::reader`] did to get its reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The reader of the previous call, still current.
    Same,
    /// The file was opened for the first time (or again after an error).
    First,
    /// A new writer replaced the file of this generation; the new one was opened.
    Replaced {
        /// The generation that was replaced.
        old_generation: u64,
    },
}

impl ShmFollower {
    /// A follower of `path`; nothing is opened until the first [`reader`](Self::reader).
    pub fn new(path: &Path) -> ShmFollower {
        ShmFollower::with_options(path, ReaderOptions::default())
    }

    /// A follower that opens the file with `opts` (see [`ShmReader::open_with`]).
    pub fn with_options(path: &Path, opts: ReaderOptions) -> ShmFollower {
        ShmFollower {
            path: path.to_path_buf(),
            opts,
            reader: None,
        }
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The reader of the file at the path now, reopening it if it was replaced.
    ///
    /// # Safety
    /// As [`ShmReader::open_with`]: no process may truncate the file while it is mapped.
    /// Hermes writers never do (a restart renames a new file into place).
    pub unsafe fn reader(&mut self) -> Result<(&ShmReader, Opened), ShmError> {
        let opened = match &self.reader {
            None => Opened::First,
            Some(r) if r.is_replaced() => Opened::Replaced {
                old_generation: r.generation(),
            },
            Some(_) => Opened::Same,
        };
        if opened != Opened::Same {
            self.reader = None;
            // SAFETY: the caller upholds `ShmReader::open`'s contract (see above).
            self.reader = Some(unsafe { ShmReader::open_with(&self.path, &self.opts) }?);
        }
        Ok((self.reader.as_ref().expect("opened above"), opened))
    }

    /// Forgets the reader: the next call opens the file again.
    pub fn close(&mut self) {
        self.reader = None;
    }
}
