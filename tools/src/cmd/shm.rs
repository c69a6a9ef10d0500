//! `hermes shm dump`: every instrument of a shm file, from this separate process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use hermes_shm::json::tob_json;
use hermes_shm::ShmReader;

/// `hermes shm` subcommands.
#[derive(Subcommand, Debug)]
pub enum ShmCmd {
    /// Print every instrument's top of book from a shm file (from this separate process).
    Dump {
        /// The shm file.
        path: PathBuf,
        /// One JSON object per line (the same shape as `replay --print-final`).
        #[arg(long)]
        json: bool,
        /// Read a file that belongs to another user (refused by default: anyone can
        /// create a file in a shared directory such as /dev/shm).
        #[arg(long)]
        allow_other_owner: bool,
    },
}

/// Runs a `hermes shm` subcommand.
pub fn run(cmd: ShmCmd) -> Result<()> {
    match cmd {
        ShmCmd::Dump {
            path,
            json,
            allow_other_owner,
        } => cmd_shm_dump(&path, json, allow_other_owner),
    }
}

pub fn cmd_shm_dump(path: &Path, json: bool, allow_other_owner: bool) -> Result<()> {
    let opts = hermes_shm::ReaderOptions { allow_other_owner };
    // SAFETY: Hermes writers never truncate a published shm file (a restart renames a new
    // file into place); we only read.
    let reader = unsafe { ShmReader::open_with(path, &opts) }.with_context(|| {
        format!(
            "opening shm file {} (is the engine running with --shm {0}?)",
            path.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    let insts = reader.instruments();
    if !json {
        writeln!(
            out,
            "{}: writer pid {}, generation {}, {}; {} instruments in {} slots",
            path.display(),
            reader.writer_pid(),
            reader.generation(),
            reader.writer_status(Duration::from_millis(500)),
            insts.len(),
            reader.slot_count()
        )?;
        writeln!(
            out,
            "{:<17} {:<14} {:>16} {:>16} {:>16} {:>16} {:>12} {:>9} {:>5}",
            "venue", "symbol", "bid_qty", "bid", "ask", "ask_qty", "seq", "updates", "stale"
        )?;
    }
    for i in &insts {
        let Some(t) = reader.read(i.slot) else {
            bail!(
                "{} {}: slot {} stayed mid-update; the writer died or stopped inside it ({})",
                i.venue.name(),
                i.symbol,
                i.slot.0,
                reader.writer_status(Duration::from_millis(500))
            );
        };
        if json {
            writeln!(
                out,
                "{}",
                tob_json(
                    i.venue.name(),
                    &i.symbol,
                    i.price_decimals,
                    i.size_decimals,
                    &t
                )
            )?;
        } else {
            let px = |v: i64, has: bool| {
                if has {
                    hermes_book::Decimal::new(v, i.price_decimals).to_string()
                } else {
                    "-".into()
                }
            };
            let sz = |v: i64, has: bool| {
                if has {
                    hermes_book::Decimal::new(v, i.size_decimals).to_string()
                } else {
                    "-".into()
                }
            };
            let hb = t.flags & hermes_shm::FLAG_HAS_BID != 0;
            let ha = t.flags & hermes_shm::FLAG_HAS_ASK != 0;
            writeln!(
                out,
                "{:<17} {:<14} {:>16} {:>16} {:>16} {:>16} {:>12} {:>9} {:>5}",
                i.venue.name(),
                i.symbol,
                sz(t.bid_qty, hb),
                px(t.bid_px, hb),
                px(t.ask_px, ha),
                sz(t.ask_qty, ha),
                t.update_id,
                t.updates,
                if t.is_stale() { "STALE" } else { "no" }
            )?;
        }
    }
    Ok(())
}
