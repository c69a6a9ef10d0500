//! Drawing the live view with ratatui: the header (writer state, totals, modes), the
//! table (columns hidden least important first when the terminal is narrow), the
//! selected instrument's ladder and kernels, and the key help.

use std::path::Path;

use hermes_shm::layout::DEPTH;
use hermes_shm::{TopOfBook, WriterStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::feed::Snapshot;
use super::rows::{
    align, bps_text, dec, fmt_age, present_columns, rate_text, signed_fraction, widths, RowView,
    COLUMNS, LEFT, NCOLS, STALE,
};
use super::view::ViewState;

/// Columns hidden first when the terminal is too narrow for all (SYMBOL and STALE stay):
/// NEXT FUNDING, MARK, LAST, MID, IMBAL, VENUE, SPREAD BPS, FUNDING, AGE, UPD/S, ASK, BID.
const DROP_ORDER: [usize; 12] = [12, 10, 7, 5, 6, 0, 4, 11, 9, 8, 3, 2];

/// Draws the whole screen.
pub(super) fn draw(
    f: &mut Frame,
    path: &Path,
    snap: &Snapshot,
    st: &ViewState,
    table: &mut TableState,
) {
    let rows = st.visible(snap);
    let detail_h = if st.detail { DEPTH as u16 + 4 } else { 0 };
    let [head, body, detail, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(detail_h),
        Constraint::Length(1),
    ])
    .areas(f.area());

    let mut w = widths(&rows);
    for (c, x) in w.iter_mut().enumerate() {
        *x = (*x).max(COLUMNS[c].chars().count() + 2); // room for the sort arrow
    }
    let present = present_columns(&rows);
    let shown = fitting_columns(&w, &present, body.width as usize);
    let hidden = (0..NCOLS).filter(|&c| present[c] && !shown[c]).count();
    f.render_widget(
        Paragraph::new(header_lines(path, snap, st, &rows, hidden)),
        head,
    );
    draw_table(f, body, &rows, st, &w, &shown, table);
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

/// Which of the `present` columns, of widths `w`, fit in `width`, hiding the least
/// important first.
fn fitting_columns(w: &[usize; NCOLS], present: &[bool; NCOLS], width: usize) -> [bool; NCOLS] {
    let mut shown = *present;
    let need = |shown: &[bool; NCOLS]| {
        let cols: Vec<usize> = (0..NCOLS).filter(|&c| shown[c]).map(|c| w[c]).collect();
        cols.iter().sum::<usize>() + 2 * cols.len().saturating_sub(1)
    };
    for c in DROP_ORDER {
        if need(&shown) <= width {
            break;
        }
        shown[c] = false;
    }
    shown
}

/// The header: file and writer, then totals and modes, then the note if any.
fn header_lines(
    path: &Path,
    snap: &Snapshot,
    st: &ViewState,
    rows: &[&RowView],
    hidden: usize,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    match (&snap.writer, &snap.error) {
        (_, Some(e)) => lines.push(Line::from(vec![
            Span::styled(" NO DATA ", status_style(None)),
            Span::raw(format!(" {e} (retrying)")),
        ])),
        // The state first: a long path must not push it off a narrow screen.
        (Some(w), None) => lines.push(Line::from(vec![
            Span::styled("hermes top  ", Style::new().add_modifier(Modifier::BOLD)),
            Span::styled(w.status.to_string(), status_style(Some(w.status))),
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
        rate_text(rate),
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
    lines
}

/// The table of `rows`, the `shown` columns at widths `w`, the selection highlighted.
fn draw_table(
    f: &mut Frame,
    area: Rect,
    rows: &[&RowView],
    st: &ViewState,
    w: &[usize; NCOLS],
    shown: &[bool; NCOLS],
    table: &mut TableState,
) {
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
            if c == STALE && (r.stale || r.busy) {
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
    table.select(st.select_index(rows));
    let t = Table::new(body_rows, constraints)
        .header(header)
        .column_spacing(2)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::new().borders(Borders::TOP));
    f.render_stateful_widget(t, area, table);
}

/// The selected instrument's top-N ladder and kernels.
fn draw_detail(f: &mut Frame, area: Rect, row: Option<&RowView>) {
    let Some(r) = row else { return };
    let (p, s) = (r.inst.price_decimals, r.inst.size_decimals);
    let unit = match r.inst.venue.size_unit() {
        "base" => String::new(),
        u => format!(" (sizes in {u})"),
    };
    let title = format!(
        " {} {} — top {} levels{unit} ",
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
    let mut lines = kernel_lines(&t, p, s);
    if let Some(d) = &r.derivs {
        lines.push(Line::styled(d.clone(), Style::new().fg(Color::Cyan)));
    }
    f.render_widget(Paragraph::new(lines), right);
}

/// The kernels of a published slot in words; `p` and `s` are the instrument's price and
/// size decimals.
fn kernel_lines(t: &TopOfBook, p: u8, s: u8) -> Vec<Line<'static>> {
    let k = &t.kernels;
    let kp = k.price_decimals;
    let opt = |v: Option<i64>, d: u8| v.map_or("-".to_string(), |v| dec(v, d));
    let ppm = |v: Option<i64>| v.map_or("-".to_string(), |v| signed_fraction(v, 4));
    vec![
        Line::raw(format!(
            "spread {} ({} bps)  mid {}",
            opt(k.spread_ticks, p),
            k.spread_bps_x100.map_or("-".into(), bps_text),
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
    ]
}
