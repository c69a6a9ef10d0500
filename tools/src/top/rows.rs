//! One instrument as a row of the table: the columns, each cell's text (exact decimals,
//! ages, rates) and the value it sorts by, and the column widths.

use std::cmp::Ordering;

use hermes_book::Decimal;
use hermes_shm::layout::DERIV_DECIMALS;
use hermes_shm::{Instrument, TopOfBook, FLAG_HAS_ASK, FLAG_HAS_BID};

/// Column titles.
pub(super) const COLUMNS: [&str; 14] = [
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
    "MARK",
    "FUNDING",
    "NEXT FUNDING",
    "STALE",
];
/// Number of columns.
pub(super) const NCOLS: usize = COLUMNS.len();
/// Columns shown left-aligned (text); the others are numbers, right-aligned.
pub(super) const LEFT: [bool; NCOLS] = [
    true, true, false, false, false, false, false, false, false, false, false, false, false, false,
];
/// The derivatives columns (mark, funding rate, time to the next funding): shown only
/// when a row on screen is a perpetual or future with them, so a table of spot books
/// keeps its shape.
pub(super) const DERIVS_COLUMNS: [usize; 3] = [10, 11, 12];
/// The STALE column (last).
pub(super) const STALE: usize = NCOLS - 1;

/// What a column sorts by.
#[derive(Clone, Debug, PartialEq)]
enum SortKey {
    Text(String),
    Num(Option<f64>),
}

/// One instrument, formatted for display.
#[derive(Clone, Debug)]
pub(super) struct RowView {
    /// The directory entry.
    pub(super) inst: Instrument,
    /// The last consistent copy of its slot (`None` before one could be read).
    pub(super) tob: Option<TopOfBook>,
    /// The cells, in [`COLUMNS`] order.
    pub(super) cells: [String; NCOLS],
    keys: [SortKey; NCOLS],
    /// The slot is flagged stale (resyncing after a gap).
    pub(super) stale: bool,
    /// The writer was inside the slot on every attempt: the values are the previous ones.
    pub(super) busy: bool,
    /// Updates per second shown (0 when nothing was published within the rate window).
    pub(super) rate_x100: u64,
    /// The derivatives in words ([`derivs_line`]), for a perpetual or future.
    pub(super) derivs: Option<String>,
}

impl RowView {
    /// `true` when the row has derivatives to show.
    pub(super) fn has_derivs(&self) -> bool {
        self.derivs.is_some()
    }

    /// Orders two rows by `column` (`desc`: descending), values a row lacks last in both
    /// directions, ties in slot order.
    pub(super) fn cmp_by(&self, other: &RowView, column: usize, desc: bool) -> Ordering {
        let o = match (&self.keys[column], &other.keys[column]) {
            (SortKey::Text(x), SortKey::Text(y)) => x.cmp(y),
            (SortKey::Num(x), SortKey::Num(y)) => match (x, y) {
                (Some(x), Some(y)) => x.total_cmp(y),
                // Missing values last, whatever the direction.
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            _ => Ordering::Equal,
        };
        let o = if desc { o.reverse() } else { o };
        o.then(self.inst.slot.cmp(&other.inst.slot))
    }
}

/// Exact decimal text, or `?` for decimals no i64 mantissa can have (a damaged file).
pub(super) fn dec(m: i64, decimals: u8) -> String {
    if decimals > 18 {
        return "?".into();
    }
    Decimal::new(m, decimals).to_string()
}

/// `num / den` rounded half away from zero (`den > 0`).
fn round_div(num: i64, den: i64) -> i64 {
    let (n, d) = (num as i128, den as i128);
    let q = (2 * n.abs() + d) / (2 * d);
    (if n < 0 { -q } else { q }) as i64
}

/// An age as `850ms`, `4.2s`, `3m05s`, `2h07m` or `3d`.
pub(super) fn fmt_age(ns: i64) -> String {
    let ms = ns.max(0) / 1_000_000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        3_600_000..=86_399_999 => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// Updates per second (given ×100) with one decimal: `12345` is `123.5`.
pub(super) fn rate_text(rate_x100: u64) -> String {
    let tenths = round_div(rate_x100.min(i64::MAX as u64) as i64, 10);
    format!("{:#}", Decimal::new(tenths, 1))
}

/// Basis points (given ×100) with two decimals: `6` is `0.06`.
pub(super) fn bps_text(bps_x100: i64) -> String {
    format!("{:#}", Decimal::new(bps_x100, 2))
}

/// Parts per million as a signed fraction of 1 with `decimals` (≤ 6) decimals, `+` on
/// positive values: `750_000` at 3 decimals is `+0.750`.
pub(super) fn signed_fraction(ppm: i64, decimals: u8) -> String {
    debug_assert!(decimals <= 6);
    let r = round_div(ppm, 10i64.pow(6 - decimals as u32));
    format!(
        "{}{:#}",
        if r > 0 { "+" } else { "" },
        Decimal::new(r, decimals)
    )
}

/// A funding rate (mantissa at [`DERIV_DECIMALS`], a fraction per funding interval) as a
/// signed percentage with 4 decimals, rounded half away from zero: `10_000` (0.0001) is
/// `+0.0100%`, `-37_500` is `-0.0375%`.
pub(super) fn funding_pct(rate: i64) -> String {
    // The rate at 8 decimals is the percentage at 6 decimals; keep 4.
    let r = round_div(rate, 10i64.pow(DERIV_DECIMALS as u32 - 2 - 4));
    format!("{}{:#}%", if r > 0 { "+" } else { "" }, Decimal::new(r, 4))
}

/// Time from `now_ns` to the next funding at `next_ns` (`-` when the venue gives none,
/// `due` once it has passed and no newer time has come).
pub(super) fn next_funding_text(next_ns: i64, now_ns: i64) -> String {
    if next_ns == 0 {
        "-".into()
    } else if next_ns <= now_ns {
        "due".into()
    } else {
        fmt_age(next_ns - now_ns)
    }
}

/// A derivative's mark, index, funding and next funding in words, with the liquidations
/// when there were any; `None` for a slot without [`hermes_shm::FLAG_HAS_DERIVS`].
pub(super) fn derivs_line(t: &TopOfBook, now_ns: i64) -> Option<String> {
    if !t.has_derivs() {
        return None;
    }
    let mut s = format!(
        "mark {}  index {}  funding {}  next funding {}",
        dec(t.mark_px, DERIV_DECIMALS),
        if t.index_px == 0 {
            "-".to_string()
        } else {
            dec(t.index_px, DERIV_DECIMALS)
        },
        funding_pct(t.funding_rate),
        match next_funding_text(t.next_funding_ns, now_ns).as_str() {
            "-" => "-".to_string(),
            "due" => "due".to_string(),
            d => format!("in {d}"),
        }
    );
    if t.liquidations > 0 {
        s.push_str(&format!("  liquidations {}", t.liquidations));
    }
    Some(s)
}

/// The row of `inst` from its last copy `tob`; `busy` when the copy is not fresh (the
/// writer stayed inside the slot); ages are measured at `now_ns`.
pub(super) fn row_view(
    inst: Instrument,
    tob: Option<&TopOfBook>,
    busy: bool,
    now_ns: i64,
) -> RowView {
    let mut cells: [String; NCOLS] = Default::default();
    let mut keys: [SortKey; NCOLS] = std::array::from_fn(|_| SortKey::Num(None));
    cells[0] = inst.venue.name().to_string();
    keys[0] = SortKey::Text(cells[0].clone());
    cells[1] = inst.symbol.clone();
    keys[1] = SortKey::Text(inst.symbol.to_lowercase());
    let published = tob.filter(|t| t.seq != 0);
    let (stale, rate_x100) = match published {
        None => {
            for c in cells.iter_mut().skip(2) {
                *c = "-".into();
            }
            (false, 0)
        }
        Some(t) => published_cells(&inst, t, now_ns, &mut cells, &mut keys),
    };
    let derivs = published.and_then(|t| derivs_line(t, now_ns));
    cells[STALE] = if busy {
        "BUSY".into()
    } else if stale {
        "STALE".into()
    } else {
        "-".into()
    };
    keys[STALE] = SortKey::Num(Some(stale as u8 as f64 + 2.0 * busy as u8 as f64));
    RowView {
        inst,
        tob: tob.copied(),
        cells,
        keys,
        stale,
        busy,
        rate_x100,
        derivs,
    }
}

/// Fills the cells and keys of columns 2 to 12 from a published slot; returns whether it
/// is stale and the rate shown.
fn published_cells(
    inst: &Instrument,
    t: &TopOfBook,
    now_ns: i64,
    cells: &mut [String; NCOLS],
    keys: &mut [SortKey; NCOLS],
) -> (bool, u64) {
    let dash = || "-".to_string();
    let (p, s) = (inst.price_decimals, inst.size_decimals);
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
    cells[4] = k.spread_bps_x100.map_or_else(dash, bps_text);
    keys[4] = SortKey::Num(k.spread_bps_x100.map(|v| v as f64));
    cells[5] = k.mid_px.map_or_else(dash, |v| dec(v, k.price_decimals));
    keys[5] = SortKey::Num(k.mid_px.map(kpx));
    cells[6] = k.imbalance_ppm.map_or_else(dash, |v| signed_fraction(v, 3));
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
    // The rate is computed at publication; with nothing published for a whole window the
    // instrument is idle.
    let age = now_ns.saturating_sub(t.publish_ts_ns);
    let rate_x100 = if k.rate_window_ns > 0 && age > k.rate_window_ns {
        0
    } else {
        k.updates_per_s_x100
    };
    cells[8] = rate_text(rate_x100);
    keys[8] = SortKey::Num(Some(rate_x100 as f64));
    cells[9] = fmt_age(age);
    keys[9] = SortKey::Num(Some(age as f64));
    let [mark, funding, next] = DERIVS_COLUMNS;
    if t.has_derivs() {
        let d = |v: i64| v as f64 / 10f64.powi(DERIV_DECIMALS as i32);
        cells[mark] = dec(t.mark_px, DERIV_DECIMALS);
        keys[mark] = SortKey::Num(Some(d(t.mark_px)));
        cells[funding] = funding_pct(t.funding_rate);
        keys[funding] = SortKey::Num(Some(t.funding_rate as f64));
        cells[next] = next_funding_text(t.next_funding_ns, now_ns);
        keys[next] = SortKey::Num(
            (t.next_funding_ns != 0).then(|| t.next_funding_ns.saturating_sub(now_ns) as f64),
        );
    } else {
        for c in DERIVS_COLUMNS {
            cells[c] = dash();
        }
    }
    (t.is_stale(), rate_x100)
}

/// Which columns a table of `rows` has: all, but the derivatives columns only when a row
/// has derivatives.
pub(super) fn present_columns(rows: &[&RowView]) -> [bool; NCOLS] {
    let derivs = rows.iter().any(|r| r.has_derivs());
    std::array::from_fn(|c| derivs || !DERIVS_COLUMNS.contains(&c))
}

/// Column widths in characters: the widest of the title and the cells.
pub(super) fn widths(rows: &[&RowView]) -> [usize; NCOLS] {
    std::array::from_fn(|c| {
        rows.iter()
            .map(|r| r.cells[c].chars().count())
            .chain([COLUMNS[c].chars().count()])
            .max()
            .unwrap_or(0)
    })
}

/// Pads `s` to `w` characters, left- or right-aligned.
pub(super) fn align(s: &str, w: usize, left: bool) -> String {
    if left {
        format!("{s:<w$}")
    } else {
        format!("{s:>w$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(bps_text(200), "2.00");
        assert_eq!(bps_text(-5), "-0.05");
        assert_eq!(rate_text(12_345), "123.5");
        assert_eq!(rate_text(0), "0.0");
        assert_eq!(rate_text(u64::MAX), "92233720368547758.1");
        assert_eq!(signed_fraction(750_000, 3), "+0.750");
        assert_eq!(signed_fraction(-37_600, 3), "-0.038");
        assert_eq!(signed_fraction(0, 3), "0.000");
        assert_eq!(signed_fraction(-400, 3), "0.000");
        assert_eq!(signed_fraction(123_456, 4), "+0.1235");
        assert_eq!(signed_fraction(-1_000_000, 4), "-1.0000");
        assert_eq!(round_div(-1_500, 1_000), -2);
        assert_eq!(round_div(1_499, 1_000), 1);
        assert_eq!(fmt_age(850_000_000), "850ms");
        assert_eq!(fmt_age(4_250_000_000), "4.2s");
        assert_eq!(fmt_age(185_000_000_000), "3m05s");
        assert_eq!(fmt_age(7_620_000_000_000), "2h07m");
        assert_eq!(fmt_age(3 * 86_400_000_000_000), "3d");
        assert_eq!(dec(12_345, 2), "123.45");
        assert_eq!(dec(1, 200), "?");
        assert_eq!(funding_pct(10_000), "+0.0100%");
        assert_eq!(funding_pct(-37_500), "-0.0375%");
        assert_eq!(funding_pct(0), "0.0000%");
        assert_eq!(funding_pct(49), "0.0000%");
        assert_eq!(funding_pct(50), "+0.0001%");
        assert_eq!(funding_pct(-75_000_000), "-75.0000%");
        assert_eq!(funding_pct(i64::MIN), "-9223372036854.7758%");
        assert_eq!(next_funding_text(0, 5), "-");
        assert_eq!(next_funding_text(5, 5), "due");
        assert_eq!(next_funding_text(11_525_000_000_005, 5), "3h12m");
    }

    fn inst(venue: hermes_shm::Venue) -> Instrument {
        Instrument {
            venue,
            symbol: "BTCUSDT".into(),
            price_decimals: 1,
            size_decimals: 3,
            slot: hermes_shm::SlotIndex(0),
        }
    }

    #[test]
    fn derivatives_render_only_for_rows_that_have_them() {
        let now = 1_723_100_000_000_000_000;
        let perp = TopOfBook {
            seq: 2,
            flags: hermes_shm::FLAG_HAS_DERIVS,
            publish_ts_ns: now,
            mark_px: 6_185_012_000_000,
            index_px: 6_184_990_050_000,
            funding_rate: 10_000,
            next_funding_ns: now + 11_525_000_000_000,
            derivs_ts_ns: now - 1,
            liquidations: 2,
            ..TopOfBook::default()
        };
        let r = row_view(
            inst(hermes_shm::Venue::BinanceUsdm),
            Some(&perp),
            false,
            now,
        );
        assert_eq!(r.cells[0], "binance-usdm");
        assert_eq!(
            DERIVS_COLUMNS.map(|c| (COLUMNS[c], r.cells[c].as_str())),
            [
                ("MARK", "61850.12"),
                ("FUNDING", "+0.0100%"),
                ("NEXT FUNDING", "3h12m")
            ]
        );
        assert_eq!(
            r.derivs.as_deref(),
            Some(
                "mark 61850.12  index 61849.9005  funding +0.0100%  next funding in 3h12m  \
                 liquidations 2"
            )
        );
        // A COIN-M perpetual without index or next funding, negative funding, no
        // liquidations; the funding due.
        let coinm = TopOfBook {
            index_px: 0,
            funding_rate: -37_500,
            next_funding_ns: 0,
            liquidations: 0,
            ..perp
        };
        let c = row_view(
            inst(hermes_shm::Venue::BinanceCoinm),
            Some(&coinm),
            false,
            now,
        );
        assert_eq!(c.cells[0], "binance-coinm");
        assert_eq!(
            c.derivs.as_deref(),
            Some("mark 61850.12  index -  funding -0.0375%  next funding -")
        );
        assert_eq!(
            DERIVS_COLUMNS.map(|i| c.cells[i].clone()),
            ["61850.12", "-0.0375%", "-"]
        );
        let due = TopOfBook {
            next_funding_ns: now,
            ..perp
        };
        let d = row_view(inst(hermes_shm::Venue::BinanceUsdm), Some(&due), false, now);
        assert_eq!(d.cells[12], "due");
        assert!(d.derivs.unwrap().contains("next funding due"));
        // Sorting by funding: lowest first.
        assert_eq!(c.cmp_by(&r, 11, false), Ordering::Less);

        // A spot book (the words hold junk, the flag is clear): dashes, no detail line,
        // and a table of such rows has no derivatives columns.
        let spot = TopOfBook { flags: 0, ..perp };
        let s = row_view(
            inst(hermes_shm::Venue::CoinbaseExchange),
            Some(&spot),
            false,
            now,
        );
        assert_eq!(s.cells[0], "coinbase-exchange");
        assert_eq!(DERIVS_COLUMNS.map(|i| s.cells[i].clone()), ["-", "-", "-"]);
        assert_eq!(s.derivs, None);
        let never = row_view(
            inst(hermes_shm::Venue::BinanceUsdm),
            Some(&TopOfBook::default()),
            false,
            now,
        );
        assert_eq!(never.derivs, None);
        assert_eq!(never.cells[STALE], "-");
        let shown = present_columns(&[&s, &never]);
        assert_eq!(shown.iter().filter(|x| **x).count(), NCOLS - 3);
        assert!(DERIVS_COLUMNS.iter().all(|&c| !shown[c]));
        assert!(present_columns(&[&s, &r]).iter().all(|x| *x));
    }
}
