//! The live view's state: sort column and direction, text filter, selection, pause and
//! ladder; which rows it shows, and what each key does to it.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use hermes_shm::Venue;

use super::feed::Snapshot;
use super::rows::{present_columns, RowView, NCOLS};

/// Sort, filter, selection and mode of the live view.
#[derive(Debug, Default)]
pub(super) struct ViewState {
    /// Column sorted by; `None` is slot order.
    pub(super) sort: Option<usize>,
    /// Descending.
    pub(super) desc: bool,
    /// Case-insensitive text a row's venue or symbol must contain.
    pub(super) filter: String,
    /// Typing into the filter.
    pub(super) editing: bool,
    /// Refreshes suspended.
    pub(super) paused: bool,
    /// The selected instrument (kept across sorting and refreshes).
    pub(super) selected: Option<(Venue, String)>,
    /// The ladder of the selected row is shown.
    pub(super) detail: bool,
    /// `q` was pressed.
    pub(super) quit: bool,
}

impl ViewState {
    /// The rows to show, filtered and sorted.
    pub(super) fn visible<'a>(&self, snap: &'a Snapshot) -> Vec<&'a RowView> {
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
            rows.sort_by(|a, b| a.cmp_by(b, c, self.desc));
        }
        rows
    }

    /// Where the selected instrument is in `rows`, if it is there.
    pub(super) fn select_index(&self, rows: &[&RowView]) -> Option<usize> {
        let sel = self.selected.as_ref()?;
        rows.iter()
            .position(|r| r.inst.venue == sel.0 && r.inst.symbol == sel.1)
    }

    fn select(&mut self, row: Option<&&RowView>) {
        self.selected = row.map(|r| (r.inst.venue, r.inst.symbol.clone()));
    }

    /// Applies a key; `rows` are the rows on screen.
    pub(super) fn key(&mut self, key: KeyEvent, rows: &[&RowView]) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if self.editing {
            self.edit_filter(key.code);
            return;
        }
        let cur = self.select_index(rows);
        // The arrows step over columns the table does not have (no derivatives shown).
        let present = present_columns(rows);
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
                self.sort_by(c);
            }
            KeyCode::Left => {
                self.sort = match self.sort {
                    None | Some(0) => None,
                    Some(c) => (0..c).rev().find(|&p| present[p]),
                };
                self.desc = false;
            }
            KeyCode::Right => {
                let from = self.sort.map_or(0, |c| c + 1);
                self.sort = (from..NCOLS).find(|&p| present[p]).or(self.sort);
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

    /// A key while typing into the filter: Enter keeps it, Esc clears it.
    fn edit_filter(&mut self, code: KeyCode) {
        match code {
            KeyCode::Enter => self.editing = false,
            KeyCode::Esc => {
                self.editing = false;
                self.filter.clear();
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if !c.is_control() && self.filter.len() < 64 => self.filter.push(c),
            _ => {}
        }
    }

    /// Sorts by column `c`, or reverses the order when already sorted by it.
    fn sort_by(&mut self, c: usize) {
        if self.sort == Some(c) {
            self.desc = !self.desc;
        } else {
            self.sort = Some(c);
            self.desc = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::rows::row_view;
    use hermes_shm::{Instrument, SlotIndex, TopOfBook};

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
        // The arrows step over the derivatives columns, absent from a spot table.
        press(&mut st, KeyCode::Char('0'));
        assert_eq!(st.sort, Some(9));
        press(&mut st, KeyCode::Right);
        assert_eq!(st.sort, Some(crate::top::rows::STALE));
        press(&mut st, KeyCode::Right);
        assert_eq!(st.sort, Some(crate::top::rows::STALE));
        press(&mut st, KeyCode::Left);
        assert_eq!(st.sort, Some(9));
        press(&mut st, KeyCode::Char('p'));
        assert!(st.paused);
        press(&mut st, KeyCode::Char('q'));
        assert!(st.quit);
    }
}
