//! Reading snapshots of the shm file: every slot copied once per refresh, the writer's
//! state, and reopening the file when a new writer replaces it.

use std::path::Path;
use std::time::{Duration, Instant};

use hermes_book::clock::unix_ns;
use hermes_shm::follow::{Opened, ShmFollower};
use hermes_shm::ReaderOptions;
use hermes_shm::{ShmReader, SlotIndex, TopOfBook, WriterStatus};

use super::rows::{row_view, RowView};

/// The header: who writes the file and how it is doing.
#[derive(Clone, Debug)]
pub(super) struct WriterView {
    /// The writer's pid.
    pub(super) pid: u32,
    /// The file's writer generation.
    pub(super) generation: u64,
    /// Its state.
    pub(super) status: WriterStatus,
}

/// One refresh.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshot {
    /// The file's writer, when the file could be opened.
    pub(super) writer: Option<WriterView>,
    /// One row per published instrument, in slot order.
    pub(super) rows: Vec<RowView>,
    /// Why the file could not be read (it is retried on the next refresh).
    pub(super) error: Option<String>,
    /// A recent event worth showing (the file was replaced and reopened).
    pub(super) note: Option<String>,
}

/// Reads snapshots of a shm file, reopening it when a new writer replaces it.
pub(super) struct Feed {
    shm: ShmFollower,
    max_age: Duration,
    /// Last good copy per slot index (of the file open now).
    last: Vec<Option<TopOfBook>>,
    note: Option<(String, Instant)>,
}

/// How long a note stays in the header.
const NOTE_TIME: Duration = Duration::from_secs(5);
/// `try_read` attempts per slot and refresh before showing the slot as busy.
const READ_ATTEMPTS: u32 = 256;

impl Feed {
    /// A feed over `path`; a heartbeat older than `max_age` means STALLED.
    pub(super) fn new(path: &Path, max_age: Duration, opts: ReaderOptions) -> Feed {
        Feed {
            shm: ShmFollower::with_options(path, opts),
            max_age,
            last: Vec::new(),
            note: None,
        }
    }

    /// Reads every slot once.
    pub(super) fn snapshot(&mut self) -> Snapshot {
        let mut snap = Snapshot::default();
        // SAFETY: Hermes writers never truncate a published file (a restart renames a
        // new file into place); `top` only reads.
        let (r, opened) = match unsafe { self.shm.reader() } {
            Ok(opened) => opened,
            Err(e) => {
                snap.error = Some(e.to_string());
                return snap;
            }
        };
        match opened {
            Opened::Same => {}
            Opened::First => self.last.clear(),
            Opened::Replaced { old_generation } => {
                self.last.clear();
                self.note = Some((
                    format!(
                        "generation {old_generation} was replaced by a new writer; reopened the file"
                    ),
                    Instant::now(),
                ));
            }
        }
        if let Some((_, at)) = &self.note {
            if at.elapsed() > NOTE_TIME {
                self.note = None;
            }
        }
        snap.note = self.note.as_ref().map(|(n, _)| n.clone());
        snap.writer = Some(WriterView {
            pid: r.writer_pid(),
            generation: r.generation(),
            status: r.writer_status(self.max_age),
        });
        snap.rows = read_rows(r, &mut self.last);
        snap
    }
}

/// One row per instrument of `r`; a slot that cannot be copied now shows its copy in
/// `last` (and `last` keeps every fresh copy).
fn read_rows(r: &ShmReader, last: &mut Vec<Option<TopOfBook>>) -> Vec<RowView> {
    let now = unix_ns();
    let mut rows = Vec::new();
    for inst in r.instruments() {
        let i = inst.slot.0 as usize;
        if last.len() <= i {
            last.resize(i + 1, None);
        }
        let fresh = read_slot(r, inst.slot);
        let busy = fresh.is_none();
        if fresh.is_some() {
            last[i] = fresh;
        }
        rows.push(row_view(inst, last[i].as_ref(), busy, now));
    }
    rows
}

/// A consistent copy of `slot`, or `None` when the writer was inside it on every one of
/// a bounded number of attempts (it never spins for long: the view must stay live).
fn read_slot(r: &ShmReader, slot: SlotIndex) -> Option<TopOfBook> {
    for attempt in 0..READ_ATTEMPTS {
        if let Some(t) = r.try_read(slot) {
            return Some(t);
        }
        if attempt < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    None
}
