//! `hermes top`: a live terminal table over a Hermes shm file, one row per instrument,
//! for operators.
//!
//! It maps the file read-only ([`ShmReader`]) and copies slots with the seqlock's
//! optimistic reads, so it never slows or blocks the writer; a slot the writer stays
//! inside is shown as `BUSY` with its previous values instead of stalling the view. The
//! header tells the writer's state from the file (alive, closed, DEAD, STALLED, REPLACED)
//! and reopens the file when a new writer replaced it.
//!
//! Two modes:
//! * interactive (ratatui on crossterm, alternate screen): refreshes every 100 ms by
//!   default, redraws only what changed (no flicker, fine over SSH), follows resizes.
//!   Keys: `←`/`→` or `1`–`9`, `0` sort by a column (again: reverse), `r` reverse, `/`
//!   filter by text (Enter keeps it, Esc clears), `p` pause, `↑`/`↓` select a row, Enter
//!   show its top-N ladder and kernels, Esc close, `q` quit.
//! * `--once`: one plain-text table on stdout (no escape codes), for scripts. Columns are
//!   separated by at least two spaces; no cell contains two spaces in a row.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use hermes_book::Decimal;
use hermes_shm::layout::DEPTH;
use hermes_shm::{
    Instrument, ShmReader, SlotIndex, TopOfBook, Venue, WriterStatus, FLAG_HAS_ASK, FLAG_HAS_BID,
};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::{Frame, Terminal};

/// Arguments of `hermes top`.
#[derive(clap::Args, Debug, Clone)]
pub struct TopArgs {
    /// The shm file to watch.
    #[arg(long, env = "HERMES_SHM_PATH", default_value = "/dev/shm/hermes")]
    pub shm: PathBuf,
    /// Print one plain-text table (no escape codes) and exit.
    #[arg(long)]
    pub once: bool,
    /// Refresh interval of the live view, ms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub refresh_ms: u64,
    /// A writer whose heartbeat is older than this (ms) is shown as STALLED.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_ms: u64,
}

/// Runs `hermes top`.
pub fn run(args: &TopArgs) -> Result<()> {
    let max_age = Duration::from_millis(args.stall_ms);
    if args.once {
        let mut out = io::stdout().lock();
        return print_once(&args.shm, max_age, &mut out);
    }
    if !io::stdout().is_terminal() {
        bail!("hermes top needs a terminal (stdout is not one); use `hermes top --once` for a plain-text table");
    }
    interactive(args, max_age)
}

// ---------------------------------------------------------------------------------------
// Reading the file
// ---------------------------------------------------------------------------------------

/// Column titles.
pub const COLUMNS: [&str; 11] = [
    "VENUE",
    "SYMBOL",
    "BID QTY × BID",
    "ASK × ASK QTY",
    "SPREAD BPS",
    "MID",
    "IMBAL",
    "LAST",
    "UPD/S",
    "AGE",
    "STALE",
];
const NCOLS: usize = COLUMNS.len();
/// Columns hidden first when the terminal is too narrow for all (SYMBOL and STALE stay).
const DROP_ORDER: [usize; 9] = [7, 5, 6, 0, 4, 9, 8, 3, 2];
/// Columns shown left-aligned (text); the others are numbers, right-aligned.
const LEFT: [bool; NCOLS] = [
    true, true, false, false, false, false, false, false, false, false, false,
];

/// What a column sorts by.
#[derive(Clone, Debug, PartialEq)]
enum SortKey {
    Text(String),
    Num(Option<f64>),
}

/// One instrument, formatted for display.
#[derive(Clone, Debug)]
pub struct RowView {
    /// The directory entry.
    pub inst: Instrument,
    /// The last consistent copy of its slot (`None` before one could be read).
    pub tob: Option<TopOfBook>,
    /// The cells, in [`COLUMNS`] order.
    pub cells: [String; NCOLS],
    keys: [SortKey; NCOLS],
    /// The slot is flagged stale (resyncing after a gap).
    pub stale: bool,
    /// The writer was inside the slot on every attempt: the values are the previous ones.
    pub busy: bool,
    /// Updates per second shown (0 when nothing was published within the rate window).
    pub rate_x100: u64,
}

/// The header: who writes the file and how it is doing.
#[derive(Clone, Debug)]
pub struct WriterView {
    /// The writer's pid.
    pub pid: u32,
    /// The file's writer generation.
    pub generation: u64,
    /// Its state.
    pub status: WriterStatus,
    /// Slots in the file.
    pub slots: u32,
}

/// One refresh.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The file's writer, when the file could be opened.
    pub writer: Option<WriterView>,
    /// One row per published instrument, in slot order.
    pub rows: Vec<RowView>,
    /// Why the file could not be read (it is retried on the next refresh).
    pub error: Option<String>,
    /// A recent event worth showing (the file was replaced and reopened).
    pub note: Option<String>,
}

/// Reads snapshots of a shm file, reopening it when a new writer replaces it.
pub struct Feed {
    path: PathBuf,
    reader: Option<ShmReader>,
    max_age: Duration,
    /// Last good copy per slot index.
    last: Vec<Option<TopOfBook>>,
    note: Option<(String, Instant)>,
}

/// How long a note stays in the header.
const NOTE_TIME: Duration = Duration::from_secs(5);
/// `try_read` attempts per slot and refresh before showing the slot as busy.
const READ_ATTEMPTS: u32 = 256;

fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Feed {
    /// A feed over `path`; a heartbeat older than `max_age` means STALLED.
    pub fn new(path: &Path, max_age: Duration) -> Feed {
        Feed {
            path: path.to_path_buf(),
            reader: None,
            max_age,
            last: Vec::new(),
            note: None,
        }
    }

    fn open(&mut self) -> Result<&ShmReader, String> {
        if self.reader.is_none() {
            // SAFETY: Hermes writers never truncate a published file (a restart renames a
            // new file into place); `top` only reads.
            let r = unsafe { ShmReader::open(&self.path) }.map_err(|e| e.to_string())?;
            self.last.clear();
            self.reader = Some(r);
        }
        Ok(self.reader.as_ref().expect("opened above"))
    }

    /// Reads every slot once.
    pub fn snapshot(&mut self) -> Snapshot {
        let mut snap = Snapshot::default();
        let max_age = self.max_age;
        let status = match self.open() {
            Ok(r) => r.writer_status(max_age),
            Err(e) => {
                snap.error = Some(e);
                return snap;
            }
        };
        if status == WriterStatus::Replaced {
            let old = self.reader.take().map(|r| r.generation()).unwrap_or(0);
            self.note = Some((
                format!("generation {old} was replaced by a new writer; reopened the file"),
                Instant::now(),
            ));
            if let Err(e) = self.open() {
                snap.error = Some(e);
                return snap;
            }
        }
        if let Some((_, at)) = &self.note {
            if at.elapsed() > NOTE_TIME {
                self.note = None;
            }
        }
        snap.note = self.note.as_ref().map(|(n, _)| n.clone());
        let r = self.reader.as_ref().expect("opened above");
        let status = r.writer_status(self.max_age);
        snap.writer = Some(WriterView {
            pid: r.writer_pid(),
            generation: r.generation(),
            status,
            slots: r.slot_count(),
        });
        let now = unix_ns();
        for inst in r.instruments() {
            let i = inst.slot.0 as usize;
            if self.last.len() <= i {
                self.last.resize(i + 1, None);
            }
            let fresh = read_slot(r, inst.slot);
            let busy = fresh.is_none();
            if fresh.is_some() {
                self.last[i] = fresh;
            }
            snap.rows
                .push(row_view(inst, self.last[i].as_ref(), busy, now));
        }
        snap
    }
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

/// Exact decimal text, or `?` for decimals no i64 mantissa can have (a damaged file).
fn dec(m: i64, decimals: u8) -> String {
    if decimals > 18 {
        return "?".into();
    }
    Decimal::new(m, decimals).to_string()
}

/// `v × 10^-decimals` with exactly `decimals` decimals (`fixed(200, 2)` is `2.00`).
fn fixed(v: i64, decimals: u32) -> String {
    let p = 10i128.pow(decimals);
    let a = (v as i128).abs();
    let sign = if v < 0 { "-" } else { "" };
    if decimals == 0 {
        return format!("{sign}{a}");
    }
    format!("{sign}{}.{:0w$}", a / p, a % p, w = decimals as usize)
}

/// `num / den` rounded half away from zero (`den > 0`).
fn round_div(num: i64, den: i64) -> i64 {
    let (n, d) = (num as i128, den as i128);
    let q = (2 * n.abs() + d) / (2 * d);
    (if n < 0 { -q } else { q }) as i64
}

/// An age as `850ms`, `4.2s`, `3m05s`, `2h07m` or `3d`.
pub fn fmt_age(ns: i64) -> String {
    let ms = ns.max(0) / 1_000_000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        3_600_000..=86_399_999 => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
        _ => format!("{}d", ms / 86_400_000),
    }
}

fn row_view(inst: Instrument, tob: Option<&TopOfBook>, busy: bool, now_ns: i64) -> RowView {
    let dash = || "-".to_string();
    let (p, s) = (inst.price_decimals, inst.size_decimals);
    let mut cells: [String; NCOLS] = Default::default();
    let mut keys: [SortKey; NCOLS] = std::array::from_fn(|_| SortKey::Num(None));
    cells[0] = inst.venue.name().to_string();
    keys[0] = SortKey::Text(cells[0].clone());
    cells[1] = inst.symbol.clone();
    keys[1] = SortKey::Text(inst.symbol.to_lowercase());
    let mut stale = false;
    let mut rate_x100 = 0;
    let published = tob.filter(|t| t.seq != 0);
    match published {
        None => {
            for c in cells.iter_mut().skip(2) {
                *c = dash();
            }
        }
        Some(t) => {
            let k = &t.kernels;
            let px = |v: i64| v as f64 / 10f64.powi(p as i32);
            let kpx = |v: i64| v as f64 / 10f64.powi(k.price_decimals as i32);
            if t.flags & FLAG_HAS_BID != 0 {
                cells[2] = format!("{} × {}", dec(t.bid_qty, s), dec(t.bid_px, p));
                keys[2] = SortKey::Num(Some(px(t.bid_px)));
            } else {
                cells[2] = dash();
            }
            if t.flags & FLAG_HAS_ASK != 0 {
                cells[3] = format!("{} × {}", dec(t.ask_px, p), dec(t.ask_qty, s));
                keys[3] = SortKey::Num(Some(px(t.ask_px)));
            } else {
                cells[3] = dash();
            }
            cells[4] = k.spread_bps_x100.map_or_else(dash, |v| fixed(v, 2));
            keys[4] = SortKey::Num(k.spread_bps_x100.map(|v| v as f64));
            cells[5] = k.mid_px.map_or_else(dash, |v| dec(v, k.price_decimals));
            keys[5] = SortKey::Num(k.mid_px.map(kpx));
            cells[6] = k.imbalance_ppm.map_or_else(dash, |v| {
                let r = round_div(v, 1_000);
                format!("{}{}", if r > 0 { "+" } else { "" }, fixed(r, 3))
            });
            keys[6] = SortKey::Num(k.imbalance_ppm.map(|v| v as f64));
            if t.trades > 0 {
                let side = match t.last_trade_side {
                    1 => " B",
                    2 => " S",
                    _ => "",
                };
                cells[7] = format!("{}{side}", dec(t.last_trade_px, p));
                keys[7] = SortKey::Num(Some(px(t.last_trade_px)));
            } else {
                cells[7] = dash();
            }
            // The rate is computed at publication; with nothing published for a whole
            // window the instrument is idle.
            let age = now_ns.saturating_sub(t.publish_ts_ns);
            rate_x100 = if k.rate_window_ns > 0 && age > k.rate_window_ns {
                0
            } else {
                k.updates_per_s_x100
            };
            cells[8] = fixed(round_div(rate_x100.min(i64::MAX as u64) as i64, 10), 1);
            keys[8] = SortKey::Num(Some(rate_x100 as f64));
            cells[9] = fmt_age(age);
            keys[9] = SortKey::Num(Some(age as f64));
            stale = t.is_stale();
        }
    }
    cells[10] = if busy {
        "BUSY".into()
    } else if stale {
        "STALE".into()
    } else {
        dash()
    };
    keys[10] = SortKey::Num(Some(stale as u8 as f64 + 2.0 * busy as u8 as f64));
    RowView {
        inst,
        tob: tob.copied(),
        cells,
        keys,
        stale,
        busy,
        rate_x100,
    }
}

/// The writer's state in words (`DEAD`, `STALLED` and `REPLACED` in capitals: they need
/// attention).
pub fn status_text(st: WriterStatus) -> String {
    match st {
        WriterStatus::Alive { heartbeat_age } => {
            format!("alive (heartbeat {} ms ago)", heartbeat_age.as_millis())
        }
        WriterStatus::Closed => {
            "closed (the writer exited cleanly; data is its final state)".into()
        }
        WriterStatus::Dead { pid } => {
            format!("DEAD (pid {pid} is gone without closing; data may be old)")
        }
        WriterStatus::Stalled { heartbeat_age } => format!(
            "STALLED (no heartbeat for {:.1} s)",
            heartbeat_age.as_secs_f64()
        ),
        WriterStatus::Replaced => "REPLACED (a newer writer recreated the file; reopening)".into(),
    }
}

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
            status_text(w.status),
            fixed(round_div(rate.min(i64::MAX as u64) as i64, 10), 1)
        ),
        None => format!("{}: no data", path.display()),
    }
}

/// Prints one plain-text table of the file at `path` to `out`: a header line, the column
/// titles, one row per instrument. No escape codes.
pub fn print_once(path: &Path, max_age: Duration, out: &mut impl Write) -> Result<()> {
    let mut feed = Feed::new(path, max_age);
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
    let line = |cells: [&str; NCOLS]| {
        let mut s = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c > 0 {
                s.push_str("  ");
            }
            let pad = widths[c].saturating_sub(cell.chars().count());
            if LEFT[c] {
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', pad));
            } else {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(cell);
            }
        }
        s.trim_end().to_string()
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

/// Column widths in characters: the widest of the title and the cells.
fn widths(rows: &[&RowView]) -> [usize; NCOLS] {
    std::array::from_fn(|c| {
        rows.iter()
            .map(|r| r.cells[c].chars().count())
            .chain([COLUMNS[c].chars().count()])
            .max()
            .unwrap_or(0)
    })
}

// ---------------------------------------------------------------------------------------
// The interactive view
// ---------------------------------------------------------------------------------------

/// Sort, filter, selection and mode of the live view.
#[derive(Debug, Default)]
pub struct ViewState {
    /// Column sorted by; `None` is slot order.
    pub sort: Option<usize>,
    /// Descending.
    pub desc: bool,
    /// Case-insensitive text a row's venue or symbol must contain.
    pub filter: String,
    /// Typing into the filter.
    pub editing: bool,
    /// Refreshes suspended.
    pub paused: bool,
    /// The selected instrument (kept across sorting and refreshes).
    pub selected: Option<(Venue, String)>,
    /// The ladder of the selected row is shown.
    pub detail: bool,
    /// `q` was pressed.
    pub quit: bool,
}

impl ViewState {
    /// The rows to show, filtered and sorted.
    pub fn visible<'a>(&self, snap: &'a Snapshot) -> Vec<&'a RowView> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&RowView> = snap
            .rows
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || format!("{} {}", r.inst.venue.name(), r.inst.symbol)
                        .to_lowercase()
                        .contains(&needle)
            })
            .collect();
        if let Some(c) = self.sort {
            rows.sort_by(|a, b| {
                let o = match (&a.keys[c], &b.keys[c]) {
                    (SortKey::Text(x), SortKey::Text(y)) => x.cmp(y),
                    (SortKey::Num(x), SortKey::Num(y)) => match (x, y) {
                        (Some(x), Some(y)) => x.total_cmp(y),
                        // Missing values last, whatever the direction.
                        (Some(_), None) => return std::cmp::Ordering::Less,
                        (None, Some(_)) => return std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    },
                    _ => std::cmp::Ordering::Equal,
                };
                let o = if self.desc { o.reverse() } else { o };
                o.then(a.inst.slot.cmp(&b.inst.slot))
            });
        }
        rows
    }

    fn select_index(&self, rows: &[&RowView]) -> Option<usize> {
        let sel = self.selected.as_ref()?;
        rows.iter()
            .position(|r| r.inst.venue == sel.0 && r.inst.symbol == sel.1)
    }

    fn select(&mut self, row: Option<&&RowView>) {
        self.selected = row.map(|r| (r.inst.venue, r.inst.symbol.clone()));
    }

    /// Applies a key; `rows` are the rows on screen.
    pub fn key(&mut self, key: KeyEvent, rows: &[&RowView]) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !c.is_control() && self.filter.len() < 64 => {
                    self.filter.push(c)
                }
                _ => {}
            }
            return;
        }
        let sort_by = |st: &mut ViewState, c: usize| {
            if st.sort == Some(c) {
                st.desc = !st.desc;
            } else {
                st.sort = Some(c);
                st.desc = false;
            }
        };
        let cur = self.select_index(rows);
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Char('p') => self.paused = !self.paused,
            KeyCode::Char('r') => self.desc = !self.desc,
            KeyCode::Char(d @ '0'..='9') => {
                let c = if d == '0' {
                    9
                } else {
                    d as usize - '1' as usize
                };
                sort_by(self, c);
            }
            KeyCode::Left => {
                self.sort = match self.sort {
                    None | Some(0) => None,
                    Some(c) => Some(c - 1),
                };
                self.desc = false;
            }
            KeyCode::Right => {
                self.sort = Some(self.sort.map_or(0, |c| (c + 1).min(NCOLS - 1)));
                self.desc = false;
            }
            KeyCode::Up => {
                let i = cur.map_or(0, |i| i.saturating_sub(1));
                self.select(rows.get(i));
            }
            KeyCode::Down => {
                let i = cur.map_or(0, |i| (i + 1).min(rows.len().saturating_sub(1)));
                self.select(rows.get(i));
            }
            KeyCode::PageUp => self.select(rows.get(cur.unwrap_or(0).saturating_sub(10))),
            KeyCode::PageDown => {
                let i = (cur.unwrap_or(0) + 10).min(rows.len().saturating_sub(1));
                self.select(rows.get(i));
            }
            KeyCode::Home => self.select(rows.first()),
            KeyCode::End => self.select(rows.last()),
            KeyCode::Enter => {
                if cur.is_none() {
                    self.select(rows.first());
                }
                self.detail = !self.detail && !rows.is_empty();
            }
            KeyCode::Esc => {
                if self.detail {
                    self.detail = false;
                } else {
                    self.filter.clear();
                }
            }
            _ => {}
        }
    }
}

/// Restores the terminal however the view ends (return, error or panic).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard> {
        crossterm::terminal::enable_raw_mode().context("switching the terminal to raw mode")?;
        let guard = TerminalGuard;
        crossterm::execute!(
            io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )
        .context("entering the alternate screen")?;
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        Ok(guard)
    }
}

fn restore_terminal() {
    let _ = crossterm::execute!(
        io::stdout(),
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = crossterm::terminal::disable_raw_mode();
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn interactive(args: &TopArgs, max_age: Duration) -> Result<()> {
    let refresh = Duration::from_millis(args.refresh_ms);
    let mut feed = Feed::new(&args.shm, max_age);
    let mut snap = feed.snapshot();
    let mut st = ViewState::default();
    let _guard = TerminalGuard::enter()?;
    let mut term =
        Terminal::new(CrosstermBackend::new(io::stdout())).context("setting up the terminal")?;
    let mut table = TableState::default();
    let mut next = Instant::now() + refresh;
    loop {
        if !st.paused && Instant::now() >= next {
            snap = feed.snapshot();
            next = Instant::now() + refresh;
        }
        term.draw(|f| draw(f, &args.shm, &snap, &st, &mut table))
            .context("drawing")?;
        let wait = if st.paused {
            refresh
        } else {
            next.saturating_duration_since(Instant::now())
        };
        if event::poll(wait).context("reading the terminal")? {
            // Drain everything pending so a burst of keys costs one redraw.
            loop {
                match event::read().context("reading the terminal")? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        let rows = st.visible(&snap);
                        let rows: Vec<&RowView> = rows.into_iter().collect();
                        st.key(k, &rows);
                    }
                    // The next draw resizes the buffers to the new size.
                    Event::Resize(..) => term.autoresize().context("resizing")?,
                    _ => {}
                }
                if st.quit || !event::poll(Duration::ZERO).context("reading the terminal")? {
                    break;
                }
            }
        }
        if st.quit {
            return Ok(());
        }
    }
}

fn status_style(st: Option<WriterStatus>) -> Style {
    match st {
        Some(WriterStatus::Alive { .. }) => Style::new().fg(Color::Green),
        Some(WriterStatus::Closed) => Style::new().fg(Color::Yellow),
        Some(WriterStatus::Replaced) => {
            Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD)
        }
        _ => Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD),
    }
}

fn draw(f: &mut Frame, path: &Path, snap: &Snapshot, st: &ViewState, table: &mut TableState) {
    let rows = st.visible(snap);
    let detail_h = if st.detail { DEPTH as u16 + 4 } else { 0 };
    let [head, body, detail, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(detail_h),
        Constraint::Length(1),
    ])
    .areas(f.area());

    // Header: file and writer, then totals and modes.
    let mut lines = Vec::new();
    match (&snap.writer, &snap.error) {
        (_, Some(e)) => lines.push(Line::from(vec![
            Span::styled(" NO DATA ", status_style(None)),
            Span::raw(format!(" {e} (retrying)")),
        ])),
        // The state first: a long path must not push it off a narrow screen.
        (Some(w), None) => lines.push(Line::from(vec![
            Span::styled("hermes top  ", Style::new().add_modifier(Modifier::BOLD)),
            Span::styled(status_text(w.status), status_style(Some(w.status))),
            Span::raw(format!(
                "  writer pid {}  generation {}  {}",
                w.pid,
                w.generation,
                path.display()
            )),
        ])),
        (None, None) => lines.push(Line::raw(path.display().to_string())),
    }
    let stale = rows.iter().filter(|r| r.stale).count();
    let rate: u64 = rows.iter().map(|r| r.rate_x100).sum();
    let mut info = vec![Span::raw(format!(
        "{} of {} instruments  {stale} stale  {} updates/s  sort: {}{}",
        rows.len(),
        snap.rows.len(),
        fixed(round_div(rate.min(i64::MAX as u64) as i64, 10), 1),
        st.sort.map_or("slot", |c| COLUMNS[c]),
        match (st.sort, st.desc) {
            (None, _) => "",
            (Some(_), false) => " ▲",
            (Some(_), true) => " ▼",
        }
    ))];
    if !st.filter.is_empty() || st.editing {
        info.push(Span::raw(format!("  filter: {}", st.filter)));
        if st.editing {
            info.push(Span::styled(
                "_",
                Style::new().add_modifier(Modifier::SLOW_BLINK),
            ));
        }
    }
    if st.paused {
        info.push(Span::raw("  "));
        info.push(Span::styled(
            " PAUSED ",
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    // Hide columns, least important first, until the rest fits the width.
    let mut w = widths(&rows);
    for (c, x) in w.iter_mut().enumerate() {
        *x = (*x).max(COLUMNS[c].chars().count() + 2); // room for the sort arrow
    }
    let mut shown = [true; NCOLS];
    let need = |shown: &[bool; NCOLS]| {
        let cols: Vec<usize> = (0..NCOLS).filter(|&c| shown[c]).map(|c| w[c]).collect();
        cols.iter().sum::<usize>() + 2 * cols.len().saturating_sub(1)
    };
    for c in DROP_ORDER {
        if need(&shown) <= body.width as usize {
            break;
        }
        shown[c] = false;
    }
    let hidden = shown.iter().filter(|s| !**s).count();
    if hidden > 0 {
        info.push(Span::styled(
            format!("  ({hidden} columns hidden: widen the terminal)"),
            Style::new().fg(Color::DarkGray),
        ));
    }
    lines.push(Line::from(info));
    if let Some(n) = &snap.note {
        lines.push(Line::styled(n.clone(), Style::new().fg(Color::Magenta)));
    }
    f.render_widget(Paragraph::new(lines), head);

    // The table.
    let cols: Vec<usize> = (0..NCOLS).filter(|&c| shown[c]).collect();
    let header = Row::new(cols.iter().map(|&c| {
        let mut text = COLUMNS[c].to_string();
        if st.sort == Some(c) {
            text.push_str(if st.desc { " ▼" } else { " ▲" });
        }
        Cell::from(align(&text, w[c], LEFT[c]))
    }))
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let body_rows = rows.iter().map(|r| {
        Row::new(cols.iter().map(|&c| {
            let text = &r.cells[c];
            let cell = Cell::from(align(text, w[c], LEFT[c]));
            if c == NCOLS - 1 && (r.stale || r.busy) {
                cell.style(
                    Style::new()
                        .fg(Color::White)
                        .bg(Color::Red)
                        .add_modifier(Modifier::BOLD),
                )
            } else {
                cell
            }
        }))
        .style(if r.stale {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        })
    });
    let constraints: Vec<Constraint> = cols
        .iter()
        .map(|&c| Constraint::Length(w[c] as u16))
        .collect();
    table.select(st.select_index(&rows));
    let t = Table::new(body_rows, constraints)
        .header(header)
        .column_spacing(2)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::new().borders(Borders::TOP));
    f.render_stateful_widget(t, body, table);

    if st.detail {
        draw_detail(f, detail, st.select_index(&rows).map(|i| rows[i]));
    }

    let help = if st.editing {
        "type to filter  Enter keep  Esc clear"
    } else {
        "q quit  ←/→ or 1-9,0 sort  r reverse  / filter  p pause  ↑/↓ select  Enter ladder  Esc close"
    };
    f.render_widget(
        Paragraph::new(Line::styled(help, Style::new().fg(Color::DarkGray))),
        foot,
    );
}

/// Pads `s` to `w` characters, left- or right-aligned.
fn align(s: &str, w: usize, left: bool) -> String {
    if left {
        format!("{s:<w$}")
    } else {
        format!("{s:>w$}")
    }
}

/// The selected instrument's top-N ladder and kernels.
fn draw_detail(f: &mut Frame, area: Rect, row: Option<&RowView>) {
    let Some(r) = row else { return };
    let (p, s) = (r.inst.price_decimals, r.inst.size_decimals);
    let title = format!(
        " {} {} — top {} levels ",
        r.inst.venue.name(),
        r.inst.symbol,
        DEPTH
    );
    let block = Block::new().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(t) = r.tob.filter(|t| t.seq != 0) else {
        f.render_widget(Paragraph::new("never published"), inner);
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Length(64), Constraint::Min(20)]).areas(inner);
    let bids = t.bid_levels();
    let asks = t.ask_levels();
    let n = bids.len().max(asks.len());
    let cell = |v: Option<&(i64, i64)>, price: bool| {
        v.map_or(
            String::new(),
            |&(px, q)| if price { dec(px, p) } else { dec(q, s) },
        )
    };
    let ladder = (0..n).map(|i| {
        Row::new([
            Cell::from(align(&cell(bids.get(i), false), 14, false)),
            Cell::from(align(&cell(bids.get(i), true), 14, false))
                .style(Style::new().fg(Color::Green)),
            Cell::from(align(&cell(asks.get(i), true), 14, false))
                .style(Style::new().fg(Color::Red)),
            Cell::from(align(&cell(asks.get(i), false), 14, false)),
        ])
    });
    let widths = [Constraint::Length(15); 4];
    let header =
        Row::new(["BID QTY", "BID", "ASK", "ASK QTY"].map(|h| Cell::from(align(h, 14, false))))
            .style(Style::new().add_modifier(Modifier::BOLD));
    f.render_widget(Table::new(ladder, widths).header(header), left);

    let k = &t.kernels;
    let kp = k.price_decimals;
    let opt = |v: Option<i64>, d: u8| v.map_or("-".to_string(), |v| dec(v, d));
    let ppm = |v: Option<i64>| {
        v.map_or("-".to_string(), |v| {
            let r = round_div(v, 100);
            format!("{}{}", if r > 0 { "+" } else { "" }, fixed(r, 4))
        })
    };
    let lines = vec![
        Line::raw(format!(
            "spread {} ({} bps)  mid {}",
            opt(k.spread_ticks, p),
            k.spread_bps_x100.map_or("-".into(), |v| fixed(v, 2)),
            opt(k.mid_px, kp)
        )),
        Line::raw(format!("microprice {}", opt(k.microprice_px, kp))),
        Line::raw(format!(
            "depth top {}: bid {} ask {}  imbalance {}",
            k.levels,
            dec(k.bid_depth, s),
            dec(k.ask_depth, s),
            ppm(k.imbalance_ppm)
        )),
        Line::raw(format!(
            "VWAP {}: buy {} sell {}",
            dec(k.vwap_qty, s),
            opt(k.vwap_buy_px, kp),
            opt(k.vwap_sell_px, kp)
        )),
        Line::raw(format!(
            "volatility {} bps/√s (half-life {})",
            k.volatility_bps.map_or("-".into(), |v| format!("{v:.2}")),
            fmt_age(k.vol_half_life_ns)
        )),
        Line::raw(format!(
            "trades ({}): buy {} sell {} imbalance {}",
            fmt_age(k.trade_window_ns),
            dec(k.trade_buy_qty, s),
            dec(k.trade_sell_qty, s),
            ppm(k.trade_imbalance_ppm)
        )),
        Line::raw(format!(
            "OFI window {} total {}",
            dec(k.ofi_window, s),
            dec(k.ofi_total, s)
        )),
        Line::raw(format!(
            "updates {}  trades {}  venue seq {}",
            t.updates, t.trades, t.update_id
        )),
    ];
    f.render_widget(Paragraph::new(lines), right);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(fixed(200, 2), "2.00");
        assert_eq!(fixed(-5, 2), "-0.05");
        assert_eq!(fixed(7, 0), "7");
        assert_eq!(round_div(-1_500, 1_000), -2);
        assert_eq!(round_div(1_499, 1_000), 1);
        assert_eq!(fmt_age(850_000_000), "850ms");
        assert_eq!(fmt_age(4_250_000_000), "4.2s");
        assert_eq!(fmt_age(185_000_000_000), "3m05s");
        assert_eq!(fmt_age(7_620_000_000_000), "2h07m");
        assert_eq!(fmt_age(3 * 86_400_000_000_000), "3d");
        assert_eq!(dec(12_345, 2), "123.45");
        assert_eq!(dec(1, 200), "?");
    }

    fn row(symbol: &str, slot: u32, spread: Option<i64>) -> RowView {
        let inst = Instrument {
            venue: Venue::Binance,
            symbol: symbol.into(),
            price_decimals: 2,
            size_decimals: 0,
            slot: SlotIndex(slot),
        };
        let mut t = TopOfBook {
            seq: 2,
            ..TopOfBook::default()
        };
        t.kernels.spread_bps_x100 = spread;
        row_view(inst, Some(&t), false, 0)
    }

    #[test]
    fn sorting_filtering_and_selection() {
        let snap = Snapshot {
            rows: vec![
                row("BBB", 0, Some(5)),
                row("AAA", 1, None),
                row("CCC", 2, Some(1)),
            ],
            ..Snapshot::default()
        };
        let names = |st: &ViewState| -> Vec<String> {
            st.visible(&snap)
                .iter()
                .map(|r| r.inst.symbol.clone())
                .collect()
        };
        let mut st = ViewState::default();
        assert_eq!(names(&st), ["BBB", "AAA", "CCC"]);
        let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
        let press = |st: &mut ViewState, c| {
            let rows: Vec<RowView> = st.visible(&snap).into_iter().cloned().collect();
            let rows: Vec<&RowView> = rows.iter().collect();
            st.key(key(c), &rows);
        };
        press(&mut st, KeyCode::Char('2'));
        assert_eq!(names(&st), ["AAA", "BBB", "CCC"]);
        press(&mut st, KeyCode::Char('2'));
        assert_eq!(names(&st), ["CCC", "BBB", "AAA"]);
        // Spread: missing last in both directions.
        press(&mut st, KeyCode::Char('5'));
        assert_eq!(names(&st), ["CCC", "BBB", "AAA"]);
        press(&mut st, KeyCode::Char('r'));
        assert_eq!(names(&st), ["BBB", "CCC", "AAA"]);
        for c in ['/', 'c', 'C'] {
            press(&mut st, KeyCode::Char(c));
        }
        press(&mut st, KeyCode::Enter);
        assert_eq!(names(&st), ["CCC"]);
        assert!(!st.editing);
        press(&mut st, KeyCode::Down);
        assert_eq!(st.selected, Some((Venue::Binance, "CCC".into())));
        press(&mut st, KeyCode::Enter);
        assert!(st.detail);
        press(&mut st, KeyCode::Esc);
        assert!(!st.detail);
        press(&mut st, KeyCode::Esc);
        assert_eq!(names(&st).len(), 3);
        press(&mut st, KeyCode::Char('p'));
        assert!(st.paused);
        press(&mut st, KeyCode::Char('q'));
        assert!(st.quit);
    }
}
