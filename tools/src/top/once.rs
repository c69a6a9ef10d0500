//! `hermes top --once`: one plain-text table on stdout, no escape codes, for scripts.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use super::feed::{Feed, Snapshot};
use super::rows::{align, present_columns, rate_text, widths, RowView, COLUMNS, LEFT, NCOLS};

/// The header line: file, writer, state and totals of `rows` (the visible ones).
fn header_line(path: &Path, snap: &Snapshot, rows: &[&RowView]) -> String {
    let total = snap.rows.len();
    let stale = rows.iter().filter(|r| r.stale).count();
    let rate: u64 = rows.iter().map(|r| r.rate_x100).sum();
    let shown = if rows.len() == total {
        format!("{total} instruments")
    } else {
        format!("{} of {total} instruments", rows.len())
    };
    match &snap.writer {
        Some(w) => format!(
            "{}: writer pid {}, generation {}, {}; {shown}, {stale} stale, {} updates/s",
            path.display(),
            w.pid,
            w.generation,
            w.status,
            rate_text(rate)
        ),
        None => format!("{}: no data", path.display()),
    }
}

/// Prints one plain-text table of the file at `path` to `out`: a header line, the column
/// titles, one row per instrument. No escape codes. The derivatives columns (MARK,
/// FUNDING, NEXT FUNDING) are there only when an instrument has derivatives.
pub(super) fn print_once(
    path: &Path,
    max_age: Duration,
    opts: hermes_shm::ReaderOptions,
    out: &mut impl Write,
) -> Result<()> {
    let mut feed = Feed::new(path, max_age, opts);
    let snap = feed.snapshot();
    if let Some(e) = &snap.error {
        bail!(
            "cannot read the shm file: {e} (is the engine running with --shm {}?)",
            path.display()
        );
    }
    let rows: Vec<&RowView> = snap.rows.iter().collect();
    writeln!(out, "{}", header_line(path, &snap, &rows))?;
    if let Some(n) = &snap.note {
        writeln!(out, "note: {n}")?;
    }
    let widths = widths(&rows);
    let present = present_columns(&rows);
    // Columns two spaces apart, no trailing blanks.
    let line = |cells: [&str; NCOLS]| {
        let padded: Vec<String> = (0..NCOLS)
            .filter(|&c| present[c])
            .map(|c| align(cells[c], widths[c], LEFT[c]))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(COLUMNS))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line(std::array::from_fn(|c| r.cells[c].as_str()))
        )?;
    }
    out.flush()?;
    Ok(())
}
