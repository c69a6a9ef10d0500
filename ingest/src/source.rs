//! Replay inputs: native captures and the recordings people already have.
//!
//! * native capture files ([`crate::capture`]);
//! * plain JSON lines, one raw frame per line;
//! * `<timestamp> <json>` lines (hftbacktest's collector: integer ns), where lines whose
//!   JSON starts with `{"lastUpdateId"` are Binance REST depth snapshots for the file's
//!   symbol;
//! * cryptofeed's recorder format 1 (`<epoch s>: <json>`, connection lines
//!   `wss://… <-> ts`, REST lines `https://…depth?symbol=X… -> ts: {…}`) and format 2
//!   (JSON objects with `t` = header/http/connect/send/recv);
//!
//! any of them gzip- or zstd-compressed, told by the file's first bytes (not its name).
//! The input may be a regular file, a FIFO or any other stream: it is read once, front to
//! back (a JSON-lines file whose REST lines name no symbol is scanned ahead only when it
//! is a regular file). The venue is given or detected from the first frame.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::capture::{self, CaptureError, CaptureReader, TornTail};
use crate::decoder::{Frame, FrameKind};
use crate::event::Venue;

/// Input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Native if the file starts with the capture magic, JSON lines otherwise.
    Auto,
    /// Native capture.
    Native,
    /// A JSON-lines family recording.
    Jsonl,
}

/// How to open a source.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Input format.
    pub format: Format,
    /// Venue of JSON-lines frames; detected from the first frame when `None`.
    pub venue: Option<Venue>,
    /// Symbol for REST snapshot lines that do not name one; detected from the file's
    /// frames when `None`.
    pub symbol: Option<String>,
    /// Longest JSON line accepted, bytes; a longer line is skipped without being held in
    /// memory (a [`SourceError::BadLine`]).
    pub max_line_bytes: usize,
}

/// The default [`SourceOptions::max_line_bytes`]: 64 MiB, ten times the largest real
/// frame seen (a Coinbase level2 snapshot, about 5 MB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            format: Format::Auto,
            venue: None,
            symbol: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// Source errors: `Io` and `Capture` end the replay; `BadLine` is one unusable line that
/// is counted and skipped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// The native capture is unreadable.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A line that is not a frame in any known format.
    #[error("{path}:{line}: {reason}")]
    BadLine {
        /// File.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// A place in a source: a 1-based line of a JSON-lines file, or a byte offset of a
/// native capture record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Line number.
    Line(u64),
    /// Byte offset of a record.
    Byte(u64),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Byte(n) => write!(f, "record at byte {n}"),
        }
    }
}

/// A replay source.
pub enum Source {
    /// A native capture.
    Native(CaptureReader),
    /// A JSON-lines family recording.
    Lines(Box<LineSource>),
}

/// What an input turned out to be, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

/// Reads up to `n` bytes from the front of `input` and gives back a reader that still
/// yields them: a look at a stream (a FIFO) without losing what was looked at.
fn peek(mut input: Box<dyn Read + Send>, n: usize) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    let again = io::Cursor::new(head.clone()).chain(input);
    Ok((head, Box::new(again)))
}

/// Opens `path` and undoes its compression, told by its first bytes. Returns the reader,
/// the compression, and whether the file is regular (can be read again).
fn open_input(path: &Path) -> io::Result<(Box<dyn Read + Send>, Compression, bool)> {
    let f = File::open(path)?;
    let regular = f.metadata()?.is_file();
    let (head, input) = peek(Box::new(f), 4)?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        (
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(input))),
            Compression::Gzip,
            regular,
        )
    } else if head == [0x28, 0xb5, 0x2f, 0xfd] {
        let d = ruzstd::decoding::StreamingDecoder::new(BufReader::new(input))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
        (Box::new(d), Compression::Zstd, regular)
    } else {
        (input, Compression::None, regular)
    })
}

impl Source {
    /// Opens `path`: a file, a FIFO or another stream, compressed or not. It is read
    /// once from the front (nothing is read twice, so a FIFO loses nothing).
    pub fn open(path: &Path, opts: &SourceOptions) -> Result<Source, SourceError> {
        let io_err = |source| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        let (input, compression, regular) = open_input(path).map_err(io_err)?;
        let (head, input) = peek(input, capture::MAGIC.len()).map_err(io_err)?;
        let native = match opts.format {
            Format::Native => true,
            Format::Jsonl => false,
            Format::Auto => head == capture::MAGIC,
        };
        if native {
            if regular && compression == Compression::None {
                // A plain file: its length bounds the reading, for exact tail reports.
                drop(input);
                Ok(Source::Native(CaptureReader::open(path)?))
            } else {
                Ok(Source::Native(CaptureReader::from_reader(input, path)?))
            }
        } else {
            Ok(Source::Lines(Box::new(LineSource::new(
                input, path, regular, opts,
            ))))
        }
    }

    /// The next frame, `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SourceError> {
        match self {
            Source::Native(r) => Ok(r.next_record()?.map(|rec| rec.frame())),
            Source::Lines(l) => l.next_frame(),
        }
    }

    /// Where the next (native) or last read (lines) frame is, for messages.
    pub fn position(&self) -> Position {
        match self {
            Source::Native(r) => Position::Byte(r.offset()),
            Source::Lines(l) => Position::Line(l.line),
        }
    }

    /// A torn native capture tail, once reading stopped there.
    pub fn torn(&self) -> Option<&TornTail> {
        match self {
            Source::Native(r) => r.torn(),
            Source::Lines(_) => None,
        }
    }

    /// Damaged regions of a native capture skipped so far (the first
    /// [`capture::MAX_DAMAGE_KEPT`]), with their totals (regions, bytes).
    pub fn damage(&self) -> (&[capture::Damage], u64, u64) {
        match self {
            Source::Native(r) => (r.damage(), r.damaged_regions(), r.damaged_bytes()),
            Source::Lines(_) => (&[], 0, 0),
        }
    }

    /// Lines skipped as metadata (connection, header, sent-message lines).
    pub fn meta_lines(&self) -> u64 {
        match self {
            Source::Native(_) => 0,
            Source::Lines(l) => l.meta,
        }
    }
}

/// Reads the JSON-lines family.
pub struct LineSource {
    input: Box<dyn BufRead + Send>,
    path: PathBuf,
    line: u64,
    buf: Vec<u8>,
    /// Unescaped frame of a cryptofeed format 2 line.
    owned: Vec<u8>,
    symbol_buf: Vec<u8>,
    venue: Option<Venue>,
    file_symbol: Option<Vec<u8>>,
    meta: u64,
    /// A regular file: it may be read again to find the file's symbol.
    rereadable: bool,
    max_line: usize,
}

fn open_reader(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let (input, _, _) = open_input(path)?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, input)))
}

/// Parses a timestamp token: decimal seconds (`1617566591.326123`), or an integer in
/// s, ms, µs or ns judged by its magnitude. `None` when it is not a number, or its
/// nanoseconds do not fit an `i64` (past the year 2262).
fn parse_ts(tok: &[u8]) -> Option<i64> {
    if tok.contains(&b'.') {
        return hermes_book::parse_decimal(tok, 9).ok();
    }
    let v: i64 = std::str::from_utf8(tok).ok()?.parse().ok()?;
    match v {
        v if v >= 100_000_000_000_000_000 => Some(v),
        v if v >= 100_000_000_000_000 => v.checked_mul(1_000),
        v if v >= 100_000_000_000 => v.checked_mul(1_000_000),
        v => v.checked_mul(1_000_000_000),
    }
}

/// The venue of a WebSocket frame, from its first bytes: Coinbase Advanced Trade frames
/// have a `channel`, Coinbase Exchange frames a `type`; Binance frames are futures when
/// they chain depth with `pu` or carry a futures-only field or event, and COIN-M when the
/// symbol is a contract (`BTCUSD_PERP`, `ps` = pair).
fn detect_venue(frame: &[u8]) -> Option<Venue> {
    let head = &frame[..frame.len().min(256)];
    let has = |needle: &[u8]| memchr::memmem::find(head, needle).is_some();
    if has(b"\"channel\"") {
        Some(Venue::Coinbase)
    } else if head.starts_with(b"{\"type\"") || (has(b"\"type\":") && has(b"\"product_id\"")) {
        Some(Venue::CoinbaseExchange)
    } else if has(b"\"stream\"") || has(b"\"lastUpdateId\"") || has(b"\"e\":") || has(b"\"u\":") {
        let futures = has(b"\"pu\":")
            || has(b"\"e\":\"bookTicker\"")
            || has(b"\"e\":\"markPriceUpdate\"")
            || has(b"\"e\":\"forceOrder\"")
            || has(b"\"X\":\"");
        Some(match futures {
            false => Venue::Binance,
            true if has(b"\"ps\":") || has(b"_perp@") || has(b"_PERP\"") => Venue::BinanceCoinm,
            true => Venue::BinanceUsdm,
        })
    } else {
        None
    }
}

/// The venue of a REST depth snapshot line when the file's venue is not known yet:
/// futures snapshots carry the matching engine's time (`T`); COIN-M ones name a `pair`,
/// or their symbol is a contract.
fn detect_rest_venue(json: &[u8], symbol: &[u8]) -> Venue {
    let head = &json[..json.len().min(256)];
    let has = |needle: &[u8]| memchr::memmem::find(head, needle).is_some();
    if has(b"\"pair\":") || (has(b"\"T\":") && symbol.contains(&b'_')) {
        Venue::BinanceCoinm
    } else if has(b"\"T\":") {
        Venue::BinanceUsdm
    } else {
        Venue::Binance
    }
}

fn is_rest_depth(json: &[u8]) -> bool {
    json.starts_with(b"{\"lastUpdateId\"")
}

/// The `symbol=` query parameter of a URL.
fn url_symbol(url: &[u8]) -> Option<&[u8]> {
    let i = memchr::memmem::find(url, b"symbol=")? + 7;
    let rest = &url[i..];
    let end = rest
        .iter()
        .position(|&c| c == b'&' || c == b' ')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[derive(serde::Deserialize)]
struct Format2<'a> {
    t: &'a str,
    #[serde(default)]
    conn: Option<&'a str>,
    #[serde(default)]
    ts: Option<sonic_rs::LazyValue<'a>>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    exchange: Option<&'a str>,
}

enum Line {
    Frame {
        ts: i64,
        start: usize,
        end: usize,
        rest_symbol: Option<RestSym>,
        conn: u16,
    },
    Owned {
        ts: i64,
        rest_symbol: Option<RestSym>,
        conn: u16,
    },
    Meta,
    Bad(String),
}

#[derive(Clone, Copy)]
enum RestSym {
    /// The symbol is in `symbol_buf`.
    Named,
    /// The file's symbol.
    File,
}

impl LineSource {
    fn new(
        input: Box<dyn Read + Send>,
        path: &Path,
        rereadable: bool,
        opts: &SourceOptions,
    ) -> LineSource {
        LineSource {
            input: Box::new(BufReader::with_capacity(1 << 20, input)),
            path: path.to_path_buf(),
            line: 0,
            buf: Vec::with_capacity(1 << 16),
            owned: Vec::new(),
            symbol_buf: Vec::new(),
            venue: opts.venue,
            file_symbol: opts.symbol.clone().map(String::into_bytes),
            meta: 0,
            rereadable,
            max_line: opts.max_line_bytes.max(1),
        }
    }

    /// Reads the next line into `buf` (newline included), holding at most `max_line`
    /// bytes: a longer line is consumed to its end and dropped. Returns (bytes consumed,
    /// too long).
    fn read_line(&mut self) -> io::Result<(usize, bool)> {
        self.buf.clear();
        let (mut total, mut too_long) = (0usize, false);
        loop {
            let avail = match self.input.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            let (take, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > self.max_line {
                    too_long = true;
                    self.buf.clear();
                    self.buf.shrink_to(1 << 16);
                } else {
                    self.buf.extend_from_slice(&avail[..take]);
                }
            }
            self.input.consume(take);
            total += take;
            if done {
                break;
            }
        }
        Ok((total, too_long))
    }

    fn bad(&self, reason: impl Into<String>) -> SourceError {
        SourceError::BadLine {
            path: self.path.display().to_string(),
            line: self.line,
            reason: reason.into(),
        }
    }

    fn classify(&mut self) -> Line {
        let mut end = self.buf.len();
        while end > 0 && self.buf[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        let b = &self.buf[..end];
        let mut start = 0;
        while start < end && b[start].is_ascii_whitespace() {
            start += 1;
        }
        let b = &b[start..];
        if b.is_empty() {
            return Line::Meta;
        }
        match b[0] {
            b'{' if b.starts_with(b"{\"t\":") => self.format2(start, end),
            b'{' => {
                let rest = is_rest_depth(b).then_some(RestSym::File);
                Line::Frame {
                    ts: 0,
                    start,
                    end,
                    rest_symbol: rest,
                    conn: 0,
                }
            }
            b'0'..=b'9' => {
                let sep = b
                    .iter()
                    .position(|&c| c == b' ' || c == b':')
                    .unwrap_or(b.len());
                let Some(ts) = parse_ts(&b[..sep]) else {
                    return Line::Bad(
                        "leading timestamp is not a number of s, ms, µs or ns before 2262".into(),
                    );
                };
                let mut j = sep;
                while j < b.len() && (b[j] == b' ' || b[j] == b':') {
                    j += 1;
                }
                if j >= b.len() || b[j] != b'{' {
                    return Line::Bad("no JSON object after the timestamp".into());
                }
                let rest = is_rest_depth(&b[j..]).then_some(RestSym::File);
                Line::Frame {
                    ts,
                    start: start + j,
                    end,
                    rest_symbol: rest,
                    conn: 0,
                }
            }
            b'h' if b.starts_with(b"http") => {
                // cryptofeed format 1 REST line: `URL -> ts: {json}`.
                let Some(arrow) = memchr::memmem::find(b, b" -> ") else {
                    return Line::Bad("REST line without ' -> '".into());
                };
                let url = &b[..arrow];
                let Some(j) = memchr::memchr(b'{', &b[arrow..]).map(|j| arrow + j) else {
                    return Line::Bad("REST line without a JSON body".into());
                };
                let ts_tok = b[arrow + 4..j].split(|&c| c == b':').next().unwrap_or(b"");
                let ts = parse_ts(ts_tok.trim_ascii()).unwrap_or(0);
                if memchr::memmem::find(url, b"depth").is_none() {
                    return Line::Meta;
                }
                let Some(sym) = url_symbol(url) else {
                    return Line::Bad("depth URL without symbol=".into());
                };
                self.symbol_buf.clear();
                self.symbol_buf.extend_from_slice(sym);
                Line::Frame {
                    ts,
                    start: start + j,
                    end,
                    rest_symbol: Some(RestSym::Named),
                    conn: 0,
                }
            }
            b'w' if b.starts_with(b"ws") => Line::Meta,
            b'c' if b.starts_with(b"configuration:") => Line::Meta,
            _ => Line::Bad(format!(
                "not a JSON frame or a known recorder line (starts with {:?})",
                String::from_utf8_lossy(&b[..b.len().min(24)])
            )),
        }
    }

    fn format2(&mut self, start: usize, end: usize) -> Line {
        // UTF-8 first: sonic-rs makes a `LazyValue`'s text (`ts`) without checking it (a
        // debug assertion, `from_utf8_unchecked` in release) before it validates the line.
        let text = match std::str::from_utf8(&self.buf[start..end]) {
            Ok(t) => t,
            Err(e) => return Line::Bad(format!("cryptofeed format 2 line is not UTF-8: {e}")),
        };
        let rec: Format2<'_> = match sonic_rs::from_str(text) {
            Ok(r) => r,
            Err(e) => return Line::Bad(format!("cryptofeed format 2 line: {e}")),
        };
        let ts = rec
            .ts
            .as_ref()
            .and_then(|v| hermes_book::parse_decimal(v.as_raw_str().as_bytes(), 9).ok())
            .unwrap_or(0);
        let conn = rec
            .conn
            .and_then(|c| c.rsplit('.').next())
            .and_then(|n| n.parse::<u16>().ok())
            .unwrap_or(0);
        match rec.t {
            "header" => {
                if self.venue.is_none() {
                    self.venue = match rec.exchange {
                        Some(e) if e.eq_ignore_ascii_case("coinbase") => Some(Venue::Coinbase),
                        Some(e) if e.to_ascii_lowercase().starts_with("binance") => {
                            Some(Venue::Binance)
                        }
                        _ => None,
                    };
                }
                Line::Meta
            }
            "recv" => match rec.data {
                Some(d) => {
                    self.owned = d.into_bytes();
                    let rest = is_rest_depth(&self.owned).then_some(RestSym::File);
                    Line::Owned {
                        ts,
                        rest_symbol: rest,
                        conn,
                    }
                }
                None => Line::Bad("recv line without data".into()),
            },
            "http" => match (
                rec.url.as_deref().map(str::as_bytes).and_then(url_symbol),
                rec.data,
            ) {
                (Some(sym), Some(d)) if rec.url.as_deref().is_some_and(|u| u.contains("depth")) => {
                    self.symbol_buf.clear();
                    self.symbol_buf.extend_from_slice(sym);
                    self.owned = d.into_bytes();
                    Line::Owned {
                        ts,
                        rest_symbol: Some(RestSym::Named),
                        conn,
                    }
                }
                _ => Line::Meta,
            },
            _ => Line::Meta,
        }
    }

    /// Finds the single Binance symbol a file's frames name, for REST lines without one.
    fn find_file_symbol(&self) -> Result<Vec<u8>, String> {
        if !self.rereadable {
            return Err(
                "the input is not a regular file (a pipe?), so it cannot be scanned ahead for the symbol; pass --symbol"
                    .into(),
            );
        }
        let input = open_reader(&self.path).map_err(|e| e.to_string())?;
        let mut found: Option<Vec<u8>> = None;
        for line in input.split(b'\n').take(200_000) {
            let line = line.map_err(|e| e.to_string())?;
            let mut rest = &line[..];
            while let Some(i) = memchr::memmem::find(rest, b"\"s\":\"") {
                let s = &rest[i + 5..];
                let Some(e) = memchr::memchr(b'"', s) else {
                    break;
                };
                let sym = &s[..e];
                match &found {
                    None => found = Some(sym.to_vec()),
                    Some(f) if f != sym => {
                        return Err(format!(
                            "the file has several symbols ({} and {}); pass --symbol to say which one its REST snapshot lines are for",
                            String::from_utf8_lossy(f),
                            String::from_utf8_lossy(sym)
                        ))
                    }
                    _ => {}
                }
                rest = &s[e..];
            }
        }
        found.ok_or_else(|| "no symbol found in the file's frames; pass --symbol".to_string())
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SourceError> {
        loop {
            let (n, too_long) = self.read_line().map_err(|source| SourceError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if too_long {
                return Err(self.bad(format!(
                    "a {n}-byte line is longer than the {}-byte limit (--max-line-bytes); skipped",
                    self.max_line
                )));
            }
            let (ts, range, rest, conn) = match self.classify() {
                Line::Meta => {
                    self.meta += 1;
                    continue;
                }
                Line::Bad(reason) => return Err(self.bad(reason)),
                Line::Frame {
                    ts,
                    start,
                    end,
                    rest_symbol,
                    conn,
                } => (ts, Some((start, end)), rest_symbol, conn),
                Line::Owned {
                    ts,
                    rest_symbol,
                    conn,
                } => (ts, None, rest_symbol, conn),
            };
            if matches!(rest, Some(RestSym::File)) && self.file_symbol.is_none() {
                match self.find_file_symbol() {
                    Ok(s) => self.file_symbol = Some(s),
                    Err(reason) => {
                        return Err(self.bad(format!("REST depth snapshot line: {reason}")))
                    }
                }
            }
            let data: &[u8] = match range {
                Some((s, e)) => &self.buf[s..e],
                None => &self.owned,
            };
            let venue =
                match (self.venue, rest) {
                    (Some(v), _) => v,
                    (None, Some(r)) => detect_rest_venue(
                        data,
                        match r {
                            RestSym::Named => &self.symbol_buf,
                            RestSym::File => self.file_symbol.as_deref().unwrap_or(b""),
                        },
                    ),
                    (None, None) => match detect_venue(data) {
                        Some(v) => {
                            self.venue = Some(v);
                            v
                        }
                        None => return Err(self.bad(
                            "cannot tell the venue of this frame; pass --venue (coinbase, coinbase-exchange, binance, binance-usdm or binance-coinm)",
                        )),
                    },
                };
            let kind = match rest {
                None => FrameKind::Ws,
                Some(RestSym::Named) => FrameKind::RestDepth {
                    symbol: &self.symbol_buf,
                },
                Some(RestSym::File) => FrameKind::RestDepth {
                    symbol: self.file_symbol.as_deref().unwrap_or(b""),
                },
            };
            let data: &[u8] = match range {
                Some((s, e)) => &self.buf[s..e],
                None => &self.owned,
            };
            return Ok(Some(Frame {
                venue,
                kind,
                conn,
                recv_ts_ns: ts,
                data,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_by_magnitude() {
        assert_eq!(
            parse_ts(b"1723161253937085768"),
            Some(1_723_161_253_937_085_768)
        );
        assert_eq!(
            parse_ts(b"1617566591.326123"),
            Some(1_617_566_591_326_123_000)
        );
        assert_eq!(parse_ts(b"1723161255343"), Some(1_723_161_255_343_000_000));
        assert_eq!(parse_ts(b"1723161255"), Some(1_723_161_255_000_000_000));
        assert_eq!(parse_ts(b"x"), None);
        // Found by the `capture` fuzz target: a number in the seconds (or ms, µs)
        // range whose nanoseconds overflow an i64 panicked ("attempt to multiply with
        // overflow") instead of being a bad line.
        assert_eq!(parse_ts(b"17863095309548002"), None);
        assert_eq!(parse_ts(b"99999999999"), None);
        assert_eq!(parse_ts(b"-9999999999"), None);
        assert_eq!(parse_ts(b"9223372036854"), Some(9_223_372_036_854_000_000));
    }

    /// Found by the `capture` fuzz target: a cryptofeed format 2 line with a byte that is
    /// not UTF-8 in its `ts` string panicked inside sonic-rs ("invalid utf-8 in as_str",
    /// a debug assertion over an unchecked `str`) instead of being a bad line.
    #[test]
    fn a_format2_line_that_is_not_utf8_is_a_bad_line() {
        let dir = std::env::temp_dir().join(format!("hermes-src-utf8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("cf2.txt");
        let mut text = b"{\"t\":\"recv\",\"ts\":\"\xb4\",\"data\":\"{}\"}\n".to_vec();
        text.extend_from_slice(b"{\"t\":\"recv\",\"ts\":1.5,\"data\":\"{\\\"e\\\":1}\"}\n");
        std::fs::write(&p, &text).unwrap();
        let opts = SourceOptions {
            venue: Some(Venue::Binance),
            ..SourceOptions::default()
        };
        let mut s = Source::open(&p, &opts).unwrap();
        let e = s.next_frame().err().unwrap();
        assert!(
            e.to_string()
                .contains(":1: cryptofeed format 2 line is not UTF-8"),
            "{e}"
        );
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!((f.recv_ts_ns, f.data), (1_500_000_000, &b"{\"e\":1}"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_every_line_family() {
        let dir = std::env::temp_dir().join(format!("hermes-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("mixed.txt");
        let text = concat!(
            "configuration: {\"x\":1}\n",
            "wss://stream.binance.com:9443/stream?streams=btcusdt@depth <-> 1617566590.378895\n",
            "1617566591.326123: {\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"s\":\"BTCUSDT\",\"U\":1,\"u\":2,\"b\":[],\"a\":[]}}\n",
            "https://www.binance.com/api/v1/depth?symbol=BTCUSDT&limit=1000 -> 1617566592.1: {\"lastUpdateId\":1,\"bids\":[],\"asks\":[]}\n",
            "1723161254206652067 {\"lastUpdateId\":5,\"bids\":[],\"asks\":[]}\n",
            "\n",
            "garbage here\n",
        );
        std::fs::write(&p, text).unwrap();
        let mut s = Source::open(&p, &SourceOptions::default()).unwrap();
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!(
            (f.venue, f.kind, f.recv_ts_ns),
            (Venue::Binance, FrameKind::Ws, 1_617_566_591_326_123_000)
        );
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!(f.kind, FrameKind::RestDepth { symbol: b"BTCUSDT" });
        let f = s.next_frame().unwrap().unwrap();
        assert_eq!(f.kind, FrameKind::RestDepth { symbol: b"BTCUSDT" });
        assert!(f.data.starts_with(b"{\"lastUpdateId\":5"));
        let e = s.next_frame().err().unwrap();
        assert!(e.to_string().contains(":7: not a JSON frame"), "{e}");
        assert!(s.next_frame().unwrap().is_none());
        assert_eq!(s.meta_lines(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
