//! `hermes top`: a live terminal table over a Hermes shm file, one row per instrument,
//! for operators.
//!
//! It maps the file read-only ([`hermes_shm::ShmReader`]) and copies slots with the
//! seqlock's optimistic reads, so it never slows or blocks the writer; a slot the writer
//! stays inside is shown as `BUSY` with its previous values instead of stalling the view.
//! The header tells the writer's state from the file (alive, closed, DEAD, STALLED,
//! REPLACED) and reopens the file when a new writer replaced it. When some instrument is a
//! perpetual or future with a mark price (`binance-usdm`, `binance-coinm`), the table gains
//! MARK, FUNDING (the rate per funding interval, in % with 4 decimals) and NEXT FUNDING
//! (time to it) columns, and its ladder a line with mark, index, funding, next funding and
//! the liquidations seen; a table of spot books has neither.
//!
//! Two modes:
//! * interactive (ratatui on crossterm, alternate screen): refreshes every 100 ms by
//!   default, redraws only what changed (no flicker, fine over SSH), follows resizes.
//!   Keys: `←`/`→` or `1`–`9`, `0` sort by a column (again: reverse), `r` reverse, `/`
//!   filter by text (Enter keeps it, Esc clears), `p` pause, `↑`/`↓` select a row, Enter
//!   show its top-N ladder and kernels, Esc close, `q` quit.
//! * `--once`: one plain-text table on stdout (no escape codes), for scripts. Columns are
//!   separated by at least two spaces; no cell contains two spaces in a row.
//!
//! [`feed`] reads snapshots of the file, [`rows`] formats them into cells, [`once`]
//! prints the plain table; [`view`] holds the live view's sort, filter and selection,
//! [`draw`] renders it and [`interactive`] runs the terminal loop.

mod draw;
mod feed;
mod interactive;
mod once;
mod rows;
mod view;

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

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
    /// Read a shm file that belongs to another user (refused by default: anyone can
    /// create a file in a shared directory such as /dev/shm).
    #[arg(long)]
    pub allow_other_owner: bool,
}

impl TopArgs {
    /// How the shm file is opened.
    pub fn reader_options(&self) -> hermes_shm::ReaderOptions {
        hermes_shm::ReaderOptions {
            allow_other_owner: self.allow_other_owner,
        }
    }
}

/// Runs `hermes top`.
pub fn run(args: &TopArgs) -> Result<()> {
    let max_age = Duration::from_millis(args.stall_ms);
    if args.once {
        let mut out = io::stdout().lock();
        return once::print_once(&args.shm, max_age, args.reader_options(), &mut out);
    }
    if !io::stdout().is_terminal() {
        bail!("hermes top needs a terminal (stdout is not one); use `hermes top --once` for a plain-text table");
    }
    interactive::run(args, max_age)
}
