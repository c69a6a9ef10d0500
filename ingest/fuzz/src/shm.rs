//! The `shm` target: [`ShmReader`] on a region file of hostile bytes, as `hermes shm
//! dump`, `hermes top` and the HTTP face read it.
//!
//! Input: the file's bytes. The reader opens it, lists the directory, reads every slot,
//! asks for the writer's status and renders each instrument's slot JSON.
//!
//! Properties, besides never panicking (and no out-of-bounds access: the fuzz build runs
//! under AddressSanitizer):
//! * Directory entries name slots inside the file, at most one entry per slot count.
//! * A slot whose sequence is even (no writer is inside it: nobody writes this file) reads
//!   at once, with that sequence, and its best bid/offer copy agrees with the full copy;
//!   a slot whose sequence is odd does not read.
//! * A writer pid of 0 or past `i32::MAX` (which `kill` would read as a process group)
//!   is never reported as a live writer.
//! * Each instrument's slot JSON ([`hermes_shm::json::tob_json`]) is valid JSON, and its
//!   best bid and offer round-trip through their decimal text when the directory's
//!   decimals are a valid scale.

use std::time::Duration;

use hermes_book::fixed::MAX_DECIMALS;
use hermes_shm::layout::{self, dir, header};
use hermes_shm::{ShmReader, SlotIndex, WriterStatus, FLAG_HAS_ASK, FLAG_HAS_BID};

use crate::decimal::assert_round_trip;
use crate::{scratch, Mutate, Rng};

/// Runs the `shm` target on `input`.
pub fn run(input: &[u8]) {
    let path = scratch::write("region", input);
    // SAFETY: the file is this process's scratch file; nothing truncates it while it is
    // mapped (it is rewritten only by the next run, after this reader is dropped).
    let Ok(reader) = (unsafe { ShmReader::open(&path) }) else {
        return;
    };
    let slots = reader.slot_count();
    let instruments = reader.instruments();
    assert!(instruments.len() <= slots as usize);
    for s in 0..slots {
        let slot = SlotIndex(s);
        let seq = reader.seq(slot);
        if seq & 1 == 1 {
            assert!(
                reader.try_read(slot).is_none(),
                "slot {s}: odd sequence read"
            );
            continue;
        }
        let t = reader
            .read(slot)
            .unwrap_or_else(|| panic!("slot {s}: even sequence {seq}, no writer, no read"));
        assert_eq!(t.seq, seq);
        let b = reader
            .read_bbo(slot)
            .expect("the same slot, best bid/offer only");
        assert_eq!(
            (
                b.seq,
                b.update_id,
                b.flags,
                b.bid_px,
                b.bid_qty,
                b.ask_px,
                b.ask_qty
            ),
            (
                t.seq,
                t.update_id,
                t.flags,
                t.bid_px,
                t.bid_qty,
                t.ask_px,
                t.ask_qty
            )
        );
        assert!(t.bid_levels().len() <= layout::DEPTH);
        assert!(t.ask_levels().len() <= layout::DEPTH);
    }
    for inst in &instruments {
        assert!(inst.slot.0 < slots, "{inst:?} outside {slots} slots");
        if reader.seq(inst.slot) & 1 == 1 {
            continue;
        }
        let t = reader.read(inst.slot).expect("even sequence reads");
        let json = hermes_shm::json::tob_json(
            inst.venue.name(),
            &inst.symbol,
            inst.price_decimals,
            inst.size_decimals,
            &t,
        );
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
            panic!("slot JSON of {inst:?} is not JSON ({e}): {json}");
        }
        let (p, q) = (inst.price_decimals, inst.size_decimals);
        if p <= MAX_DECIMALS && q <= MAX_DECIMALS {
            if t.flags & FLAG_HAS_BID != 0 {
                assert_round_trip(t.bid_px, p);
                assert_round_trip(t.bid_qty, q);
            }
            if t.flags & FLAG_HAS_ASK != 0 {
                assert_round_trip(t.ask_px, p);
                assert_round_trip(t.ask_qty, q);
            }
        }
        let _ = reader.find(inst.venue, &inst.symbol);
    }
    let pid = reader.writer_pid();
    let status = reader.writer_status(Duration::from_secs(1));
    if pid == 0 || pid > i32::MAX as u32 {
        // `kill(0 or a negative pid, 0)` asks about a process group, not the writer.
        assert!(
            !matches!(
                status,
                WriterStatus::Alive { .. } | WriterStatus::Stalled { .. }
            ),
            "writer pid {pid} reported as a live process: {status}"
        );
    }
    let _ = (reader.generation(), reader.heartbeat_ns());
    let _ = reader.is_replaced();
}

/// Boundary values for a field of `width` bytes whose current value is `current`.
fn boundary(rng: &mut Rng, width: usize, current: u64) -> u64 {
    let v = match rng.below(16) {
        0 => 0,
        1 => 1,
        2 => current.wrapping_add(1),
        3 => current.wrapping_sub(1),
        4 => current ^ (1 << rng.below(width as u64 * 8)),
        5 => i64::MIN as u64,
        6 => i64::MAX as u64,
        7 => u64::MAX,
        8 => 0x8000_0000,
        9 => 0x7fff_ffff,
        10 => 0xffff_ffff,
        11 => [18, 19, 40, 41, 48, 49, 255][rng.below(7) as usize],
        12 => 1 << rng.below(64),
        _ => rng.next(),
    };
    if width == 8 {
        v
    } else {
        v & ((1u64 << (width * 8)) - 1)
    }
}

/// The `shm` target's mutation: half the time libFuzzer's own (`fallback`); otherwise a
/// header field, a directory entry field or a slot word set to a boundary value
/// (0, ±1 around the current value, `i64::MIN`, `u32::MAX`, a decimals count past 18…),
/// or the file cut or grown to a slot boundary.
pub fn mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32, fallback: Mutate) -> usize {
    let mut rng = Rng::new(seed);
    let choice = rng.below(8);
    if choice < 4 || size < layout::HEADER_SIZE {
        return fallback(data, size, max_size);
    }
    let get = |d: &[u8], off: usize, width: usize| {
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(&d[off..off + width]);
        u64::from_le_bytes(b)
    };
    let slots = (get(data, header::SLOT_COUNT, 4) as usize).clamp(1, 64);
    if choice == 4 {
        // A file cut short or grown: at a slot boundary, or a few bytes off one.
        let n = rng.below(slots as u64 + 2) as usize;
        let new = (layout::file_size(n) as i64 + rng.below(17) as i64 - 8).max(0) as usize;
        let new = new.min(max_size).min(data.len());
        if new > size {
            data[size..new].fill(0);
        }
        return new;
    }
    const HEADER: [(usize, usize); 13] = [
        (header::VERSION, 4),
        (header::HEADER_SIZE, 4),
        (header::SLOT_SIZE, 4),
        (header::SLOT_COUNT, 4),
        (header::DIR_OFFSET, 8),
        (header::SLOTS_OFFSET, 8),
        (header::WRITER_PID, 4),
        (header::FLAGS, 4),
        (header::GENERATION, 8),
        (header::HEARTBEAT_NS, 8),
        (header::INSTRUMENT_COUNT, 4),
        (header::DEPTH, 4),
        (header::CREATED_NS, 8),
    ];
    const ENTRY: [(usize, usize); 5] = [
        (dir::VENUE, 1),
        (dir::PRICE_DECIMALS, 1),
        (dir::SIZE_DECIMALS, 1),
        (dir::SYMBOL_LEN, 1),
        (dir::SLOT_INDEX, 4),
    ];
    let k = rng.below(slots as u64) as usize;
    let (off, width) = match choice {
        5 => HEADER[rng.below(HEADER.len() as u64) as usize],
        6 => {
            let (f, w) = ENTRY[rng.below(ENTRY.len() as u64) as usize];
            (layout::dir_offset() + k * layout::DIR_ENTRY_SIZE + f, w)
        }
        _ => {
            let word = rng.below(layout::SLOT_WORDS as u64) as usize;
            (
                layout::slots_offset(slots) + k * layout::SLOT_SIZE + word * 8,
                8,
            )
        }
    };
    if off + width > size {
        return fallback(data, size, max_size);
    }
    let v = boundary(&mut rng, width, get(data, off, width));
    data[off..off + width].copy_from_slice(&v.to_le_bytes()[..width]);
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mutator_reaches_extreme_header_fields() {
        let mut file = vec![0u8; layout::file_size(2)];
        file[header::SLOT_COUNT..header::SLOT_COUNT + 4].copy_from_slice(&2u32.to_le_bytes());
        let mut extreme = 0;
        for seed in 0..20_000 {
            let mut d = file.clone();
            d.resize(16384, 0);
            let n = mutate(&mut d, file.len(), 16384, seed, |_, s, _| s);
            let hb = i64::from_le_bytes(d[56..64].try_into().unwrap());
            if n == file.len() && hb < -(1 << 62) {
                extreme += 1;
            }
        }
        assert!(extreme > 5, "{extreme}");
    }
}
