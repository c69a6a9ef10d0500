//! `hermes export`: capture files to a Parquet dataset, one source per file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hermes_ingest::capture::TornTail;
use hermes_ingest::source::{Source, SourceError, SourceOptions};

use crate::dataset::{Dataset, DatasetOptions, WrittenFile};
use crate::rows::{ExportOptions, Exporter, RowCounts, Table};
use crate::ParquetError;

/// What the export of one input did.
#[derive(Clone, Debug)]
pub struct InputReport {
    /// The file.
    pub path: PathBuf,
    /// Its `source` column.
    pub source: String,
    /// Frames read.
    pub frames: u64,
    /// Bytes of frames read.
    pub frame_bytes: u64,
    /// Frames the decoder refused (counted, as the engine counts them).
    pub decode_errors: u64,
    /// Lines that were not frames.
    pub bad_lines: u64,
    /// A native capture's torn tail.
    pub torn: Option<TornTail>,
    /// A native capture's damaged regions skipped (count, bytes); the records around
    /// them were exported.
    pub damaged: (u64, u64),
    /// Rows per table.
    pub rows: RowCounts,
}

/// What an export did.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    /// Per input, in order.
    pub inputs: Vec<InputReport>,
    /// The files written.
    pub files: Vec<WrittenFile>,
    /// Files of an earlier export of the same inputs, replaced.
    pub replaced: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl ExportReport {
    /// Frames read from every input.
    pub fn frames(&self) -> u64 {
        self.inputs.iter().map(|i| i.frames).sum()
    }

    /// Bytes of Parquet written.
    pub fn parquet_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Rows of a table, every input.
    pub fn rows(&self, t: Table) -> u64 {
        self.inputs.iter().map(|i| i.rows.get(t)).sum()
    }
}

/// The `source` column of an input file: its file name.
pub fn source_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A file-name-safe form of a source name.
pub fn file_stem(source: &str) -> String {
    source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every `*.parquet` (and temporary) file under `dir/<table>/…`, for every table.
pub(crate) fn dataset_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if depth < 3 {
                    walk(&p, depth + 1, out);
                }
            } else if depth == 3 {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for t in Table::ALL {
        walk(&dir.join(t.name()), 1, &mut out);
    }
    out.sort();
    out
}

/// Removes the files an earlier export of `stem` wrote.
fn remove_earlier(dir: &Path, stem: &str) -> Result<usize, ParquetError> {
    let exact = format!("part-{stem}.parquet");
    let scaled = format!("part-{stem}-p");
    let mut n = 0;
    for p in dataset_files(dir) {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name else { continue };
        let ours = name == exact
            || (name.starts_with(&scaled)
                && name.ends_with(".parquet")
                && name[scaled.len()..name.len() - 8]
                    .split_once('s')
                    .is_some_and(|(a, b)| {
                        a.bytes().all(|c| c.is_ascii_digit())
                            && b.bytes().all(|c| c.is_ascii_digit())
                    }));
        if ours {
            std::fs::remove_file(&p).map_err(|source| ParquetError::Io {
                path: p.display().to_string(),
                source,
            })?;
            n += 1;
        }
    }
    Ok(n)
}

/// Exports each input (a source of its own, whose decoder and books start empty as a
/// replay's do) into the dataset at `dataset.dir`. Files of an earlier export of an
/// input of the same name are replaced; an input's files become visible together once
/// it is done.
pub fn export_files(
    inputs: &[PathBuf],
    source: &SourceOptions,
    opts: &ExportOptions,
    dataset: &DatasetOptions,
) -> Result<ExportReport, ParquetError> {
    let t0 = Instant::now();
    let mut report = ExportReport::default();
    std::fs::create_dir_all(&dataset.dir).map_err(|e| ParquetError::Io {
        path: dataset.dir.display().to_string(),
        source: e,
    })?;
    for path in inputs {
        let name = source_name(path);
        let stem = file_stem(&name);
        let mut src = Source::open(path, source).map_err(|e| ParquetError::Input {
            path: path.display().to_string(),
            source: e,
        })?;
        let mut ds = Dataset::new(dataset.clone(), &stem);
        let mut ex = Exporter::new(opts.clone(), &name);
        let mut bad_lines = 0;
        loop {
            match src.next_frame() {
                Ok(Some(frame)) => ex.frame(&frame, true, &mut ds),
                Ok(None) => break,
                Err(SourceError::BadLine { .. }) => bad_lines += 1,
                Err(e) => {
                    return Err(ParquetError::Input {
                        path: path.display().to_string(),
                        source: e,
                    })
                }
            }
            if ex.frames().0 % 1024 == 0 {
                ds.flush()?;
            }
        }
        ex.finish(true, &mut ds);
        report.replaced += remove_earlier(&dataset.dir, &stem)?;
        report.files.extend(ds.commit()?);
        let (frames, frame_bytes) = ex.frames();
        report.inputs.push(InputReport {
            path: path.clone(),
            source: name,
            frames,
            frame_bytes,
            decode_errors: ex.decode_errors(),
            bad_lines,
            torn: src.torn().cloned(),
            damaged: {
                let (_, regions, bytes) = src.damage();
                (regions, bytes)
            },
            rows: ex.rows(),
        });
    }
    report.elapsed = t0.elapsed();
    Ok(report)
}
