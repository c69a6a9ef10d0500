//! The interactive mode: the terminal switched to raw mode and the alternate screen (and
//! restored however the view ends), and the loop of refreshes, draws and keys.

use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyEventKind};
use ratatui::backend::CrosstermBackend;
use ratatui::widgets::TableState;
use ratatui::Terminal;

use super::draw::draw;
use super::feed::Feed;
use super::rows::RowView;
use super::view::ViewState;
use super::TopArgs;

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

/// Runs the live view until `q` (or Ctrl-C); a heartbeat older than `max_age` means
/// STALLED.
pub(super) fn run(args: &TopArgs, max_age: Duration) -> Result<()> {
    let refresh = Duration::from_millis(args.refresh_ms);
    let mut feed = Feed::new(&args.shm, max_age, args.reader_options());
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
                        let rows: Vec<&RowView> = st.visible(&snap);
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
