//! The capture recorder of `hermes record`: a [`FrameTap`] that writes every frame it
//! sees to native capture files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hermes_book::clock::{rfc3339, unix_ns};
use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
use hermes_ingest::{Frame, FrameKind, FrameTap};

/// Writes every frame to native capture files, rotated by size or age.
///
/// Durability: records are flushed to the OS at least once a second (a crash of the
/// process loses nothing older), and each file is fsynced when it is rotated and at the
/// end (a power loss can lose the unsynced tail of the current file).
pub struct Recorder {
    dir: PathBuf,
    writer: Option<CaptureWriter>,
    rotate_bytes: u64,
    rotate_after: Duration,
    opened: Instant,
    last_flush: Instant,
    files: Vec<PathBuf>,
    /// The first write error, if any (recording stops there).
    pub error: Option<String>,
    /// Frames recorded.
    pub frames: u64,
}

impl Recorder {
    /// A recorder writing into `dir` (created if needed).
    pub fn new(dir: &Path, rotate_bytes: u64, rotate_after: Duration) -> Result<Recorder> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut r = Recorder {
            dir: dir.to_path_buf(),
            writer: None,
            rotate_bytes,
            rotate_after,
            opened: Instant::now(),
            last_flush: Instant::now(),
            files: Vec::new(),
            error: None,
            frames: 0,
        };
        r.rotate()?;
        Ok(r)
    }

    fn rotate(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            w.sync()?;
        }
        let name = format!(
            "hermes-{}-{:04}.hcap",
            rfc3339(unix_ns())
                .replace([':', '.'], "")
                .chars()
                .take(17)
                .collect::<String>(),
            self.files.len()
        );
        let path = self.dir.join(name);
        self.writer = Some(CaptureWriter::create(&path)?);
        tracing::info!(file = %path.display(), "recording");
        self.files.push(path);
        self.opened = Instant::now();
        Ok(())
    }

    /// The files written so far.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Flushes and fsyncs the current file.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(w) = &mut self.writer {
            w.sync()?;
        }
        Ok(())
    }

    fn write(&mut self, f: &Frame<'_>) -> Result<()> {
        let (kind, tag) = match f.kind {
            FrameKind::Ws => (RecordKind::Ws, &b""[..]),
            FrameKind::RestDepth { symbol } => (RecordKind::RestDepth, symbol),
        };
        let w = self.writer.as_mut().context("recorder closed")?;
        w.append(&Record {
            recv_ts_ns: f.recv_ts_ns,
            venue: f.venue,
            kind,
            conn: f.conn,
            tag,
            data: f.data,
        })?;
        self.frames += 1;
        if w.offset() >= self.rotate_bytes || self.opened.elapsed() >= self.rotate_after {
            self.rotate()?;
        } else if self.last_flush.elapsed() >= Duration::from_secs(1) {
            self.last_flush = Instant::now();
            w.flush()?;
        }
        Ok(())
    }
}

impl FrameTap for Recorder {
    fn frame(&mut self, f: &Frame<'_>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write(f) {
            tracing::error!("recording stopped: {e:#}");
            self.error = Some(format!("{e:#}"));
        }
    }
}
