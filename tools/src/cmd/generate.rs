//! `hermes generate`: a synthetic market written to a capture file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
use hermes_ingest::Venue;
use hermes_sim::synth::{Synth, SynthOptions};

use crate::flags::VenueArg;

/// `hermes generate` arguments.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Output capture file.
    #[arg(long)]
    pub out: PathBuf,
    /// Frames to write.
    #[arg(long, default_value_t = 100_000)]
    pub frames: u64,
    /// Instruments per venue.
    #[arg(long, default_value_t = 3)]
    pub instruments: usize,
    /// Levels per side in the initial books.
    #[arg(long, default_value_t = 50)]
    pub depth: usize,
    /// Venues to generate.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [VenueArg::Coinbase, VenueArg::Binance])]
    pub venues: Vec<VenueArg>,
    /// Seed (same seed, same file).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write JSON lines (`<recv ns> <frame>`) instead of the native format. A line has no
    /// venue and a Binance REST snapshot line no symbol, so it needs a single venue, and
    /// for a Binance venue (spot or futures) a single instrument.
    #[arg(long)]
    pub jsonl: bool,
}

pub fn generate(path: &Path, opts: SynthOptions, frames: u64, jsonl: bool) -> Result<()> {
    let mut synth = Synth::new(opts);
    if jsonl {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        for _ in 0..frames {
            let fr = synth.next_frame();
            writeln!(w, "{} {}", fr.recv_ts_ns, fr.data)?;
        }
        w.flush()?;
        return Ok(());
    }
    let mut w = CaptureWriter::create(path)?;
    for _ in 0..frames {
        let fr = synth.next_frame();
        let (kind, tag) = match &fr.rest_symbol {
            Some(s) => (RecordKind::RestDepth, s.as_bytes()),
            None => (RecordKind::Ws, &b""[..]),
        };
        w.append(&Record {
            recv_ts_ns: fr.recv_ts_ns,
            venue: fr.venue,
            kind,
            conn: 0,
            tag,
            data: fr.data.as_bytes(),
        })?;
    }
    w.sync()?;
    Ok(())
}

pub fn cmd_generate(a: GenerateArgs) -> Result<()> {
    let venues: Vec<Venue> = a.venues.iter().map(|v| Venue::from(*v)).collect();
    if a.jsonl {
        if let Some(bn) = venues.iter().find(|v| v.is_binance()) {
            if a.instruments > 1 || venues.len() > 1 {
                bail!("--jsonl holds Binance REST snapshots only for a single Binance instrument; use the native format (drop --jsonl) or --venues {bn} --instruments 1");
            }
        }
        let mut distinct = venues.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            bail!("--jsonl writes one venue per file (a line does not say its venue); use the native format (drop --jsonl) or a single --venues");
        }
    }
    if a.instruments == 0 || a.depth == 0 {
        bail!("--instruments and --depth must be at least 1");
    }
    let opts = SynthOptions {
        venues,
        instruments: a.instruments,
        depth: a.depth,
        seed: a.seed,
        ..SynthOptions::default()
    };
    generate(&a.out, opts, a.frames, a.jsonl)?;
    eprintln!("wrote {} frames to {}", a.frames, a.out.display());
    Ok(())
}
