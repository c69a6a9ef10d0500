//! The input of the decoder targets: a script of frames and live-driver actions, one per
//! line. A mutation of one line is a mutation of one frame, and the sequences that
//! matter to a decoder (gaps, diffs before a snapshot, a reconnect, a snapshot that
//! releases buffered diffs) are a few lines apart.
//!
//! ```text
//! %P,S          first line only: the decoders' default scale (price and size decimals, 0-18)
//! !stale        the live driver marks every instrument stale (a lost connection)
//! !reset N      Coinbase connection N reconnected: its sequence starts over
//! @SYMBOL BODY  a Binance REST depth snapshot of SYMBOL (`/api/v3/depth`; futures
//!               `/fapi/v1/depth`, `/dapi/v1/depth`)
//! #N BODY       a WebSocket frame that arrived on connection N (one digit)
//! BODY          a WebSocket frame on connection 0
//! ```
//!
//! Empty lines are skipped; at most [`MAX_STEPS`] steps are read.

use hermes_book::fixed::MAX_DECIMALS;
use hermes_book::Scale;

/// Steps read from one input: bounds the time of one run.
pub const MAX_STEPS: usize = 512;

/// One line of a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A raw frame.
    Frame {
        /// `Some(symbol)` for a Binance REST depth snapshot.
        rest_symbol: Option<&'a [u8]>,
        /// Connection it arrived on.
        conn: u16,
        /// The frame's bytes.
        data: &'a [u8],
    },
    /// Every instrument is marked stale ([`hermes_ingest::Decoder::mark_stale`]).
    MarkStale,
    /// A Coinbase connection starts over
    /// ([`hermes_ingest::Decoder::reset_coinbase_connection`]).
    Reset(u16),
}

/// A parsed script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script<'a> {
    /// The decoders' default scale.
    pub scale: Scale,
    /// The steps, in order.
    pub steps: Vec<Step<'a>>,
}

fn digit(b: u8) -> Option<u16> {
    b.is_ascii_digit().then(|| (b - b'0') as u16)
}

/// `P,S` with each a number 0-18.
fn scale_of(text: &[u8]) -> Option<Scale> {
    let text = std::str::from_utf8(text).ok()?;
    let (p, s) = text.split_once(',')?;
    let (p, s) = (p.trim().parse::<u8>().ok()?, s.trim().parse::<u8>().ok()?);
    (p <= MAX_DECIMALS && s <= MAX_DECIMALS).then_some(Scale {
        price_decimals: p,
        size_decimals: s,
    })
}

impl<'a> Script<'a> {
    /// Reads a script; any bytes are a script (a line that is no directive is a frame).
    pub fn parse(input: &'a [u8]) -> Script<'a> {
        let mut scale = Scale::default();
        let mut steps = Vec::new();
        for (i, line) in input.split(|&b| b == b'\n').enumerate() {
            if steps.len() == MAX_STEPS {
                break;
            }
            if line.is_empty() {
                continue;
            }
            if i == 0 {
                if let Some(s) = line.strip_prefix(b"%").and_then(scale_of) {
                    scale = s;
                    continue;
                }
            }
            let step = if line == b"!stale" {
                Step::MarkStale
            } else if let Some(n) = line.strip_prefix(b"!reset ") {
                Step::Reset(n.first().copied().and_then(digit).unwrap_or(0))
            } else if let Some(rest) = line.strip_prefix(b"@") {
                let (symbol, data) = match rest.iter().position(|&b| b == b' ') {
                    Some(sp) => (&rest[..sp], &rest[sp + 1..]),
                    None => (rest, &b""[..]),
                };
                Step::Frame {
                    rest_symbol: Some(symbol),
                    conn: 0,
                    data,
                }
            } else if let [b'#', d, b' ', data @ ..] = line {
                match digit(*d) {
                    Some(conn) => Step::Frame {
                        rest_symbol: None,
                        conn,
                        data,
                    },
                    None => Step::Frame {
                        rest_symbol: None,
                        conn: 0,
                        data: line,
                    },
                }
            } else {
                Step::Frame {
                    rest_symbol: None,
                    conn: 0,
                    data: line,
                }
            };
            steps.push(step);
        }
        Script { scale, steps }
    }

    /// The script as text ([`Script::parse`] of it gives it back, provided no frame
    /// holds a newline): how the seed writer produces inputs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.scale != Scale::default() {
            out.extend_from_slice(
                format!(
                    "%{},{}\n",
                    self.scale.price_decimals, self.scale.size_decimals
                )
                .as_bytes(),
            );
        }
        for step in &self.steps {
            match *step {
                Step::MarkStale => out.extend_from_slice(b"!stale"),
                Step::Reset(n) => out.extend_from_slice(format!("!reset {n}").as_bytes()),
                Step::Frame {
                    rest_symbol: Some(sym),
                    data,
                    ..
                } => {
                    out.push(b'@');
                    out.extend_from_slice(sym);
                    out.push(b' ');
                    out.extend_from_slice(data);
                }
                Step::Frame {
                    rest_symbol: None,
                    conn,
                    data,
                } => {
                    if conn != 0 {
                        out.extend_from_slice(format!("#{conn} ").as_bytes());
                    }
                    out.extend_from_slice(data);
                }
            }
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let s = Script {
            scale: Scale {
                price_decimals: 2,
                size_decimals: 8,
            },
            steps: vec![
                Step::Frame {
                    rest_symbol: None,
                    conn: 3,
                    data: b"{\"a\":1}",
                },
                Step::MarkStale,
                Step::Reset(3),
                Step::Frame {
                    rest_symbol: Some(b"BTCUSDT"),
                    conn: 0,
                    data: b"{}",
                },
                Step::Frame {
                    rest_symbol: None,
                    conn: 0,
                    data: b"#x not a connection",
                },
            ],
        };
        let text = s.to_bytes();
        assert_eq!(Script::parse(&text), s);
    }
}
