//! A pull scanner over JSON text, specialised for the hot path: no allocation, no
//! unescaping, no tree. Venue parsers walk a frame key by key and read only the fields
//! they need, as raw byte slices, straight into fixed-point integers; everything else is
//! skipped with bracket matching. String bodies are found with `memchr` (SIMD).
//!
//! Cold frames (subscription confirmations, error messages) are parsed with sonic-rs
//! instead (see the Coinbase and Binance decoders).

use std::fmt;

/// Deepest nesting accepted when skipping a value.
const MAX_DEPTH: usize = 64;

/// A JSON syntax problem: what was expected and the byte offset in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// What the scanner expected.
    pub expected: &'static str,
    /// Byte offset in the frame.
    pub offset: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed JSON: expected {} at byte {}",
            self.expected, self.offset
        )
    }
}

/// Scanner result.
pub type Result<T> = std::result::Result<T, JsonError>;

/// A cursor over one JSON document.
#[derive(Clone, Debug)]
pub struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `text`.
    pub fn new(text: &'a [u8]) -> Self {
        Scanner { b: text, pos: 0 }
    }

    /// A scanner positioned at byte `offset` of `text` (to come back to a value whose
    /// offset was noted while skipping it).
    pub fn at(text: &'a [u8], offset: usize) -> Self {
        Scanner {
            b: text,
            pos: offset.min(text.len()),
        }
    }

    /// The current byte offset.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.b
    }

    #[inline]
    fn err<T>(&self, expected: &'static str) -> Result<T> {
        Err(JsonError {
            expected,
            offset: self.pos,
        })
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next non-whitespace byte, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8, what: &'static str) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// Consumes `{`.
    #[inline]
    pub fn object_begin(&mut self) -> Result<()> {
        self.eat(b'{', "'{'")
    }

    /// Consumes `[`.
    #[inline]
    pub fn array_begin(&mut self) -> Result<()> {
        self.eat(b'[', "'['")
    }

    /// The next key of the current object (raw, without quotes) with its `:` consumed,
    /// or `None` at the closing `}`. `first` must start `true` for each object.
    #[inline]
    pub fn key(&mut self, first: &mut bool) -> Result<Option<&'a [u8]>> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.pos += 1;
            }
            _ if *first => {}
            _ => return self.err("',' or '}'"),
        }
        *first = false;
        let k = self.string()?;
        self.eat(b':', "':'")?;
        Ok(Some(k))
    }

    /// Moves to the next element of the current array: `true` if there is one, `false`
    /// at the closing `]` (consumed). `first` must start `true` for each array.
    #[inline]
    pub fn elem(&mut self, first: &mut bool) -> Result<bool> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            _ => self.err("',' or ']'"),
        }
    }

    /// A string's raw contents (escapes left as they are).
    #[inline]
    pub fn string(&mut self) -> Result<&'a [u8]> {
        self.eat(b'"', "'\"'")?;
        let start = self.pos;
        let mut i = start;
        loop {
            match find_quote_or_backslash(&self.b[i.min(self.b.len())..]) {
                Some(n) if self.b[i + n] == b'"' => {
                    self.pos = i + n + 1;
                    return Ok(&self.b[start..i + n]);
                }
                Some(n) => i += n + 2,
                None => {
                    self.pos = self.b.len();
                    return self.err("closing '\"'");
                }
            }
            if i > self.b.len() {
                self.pos = self.b.len();
                return self.err("closing '\"'");
            }
        }
    }

    /// A string holding a plain non-negative decimal (`"61837.63000000"`, `"0.00583"`,
    /// `"1925"`) as a mantissa with `decimals` decimals: the venues' prices and sizes,
    /// parsed in the same pass that finds the closing quote. `Some` only when the result
    /// is exactly what [`hermes_book::parse_decimal`] gives for the string's contents;
    /// anything else (a sign, an escape, an exponent, more significant decimals than
    /// `decimals`, more than 18 digits, not a string) is `None` with the scanner left
    /// where it was, so the caller takes the general path and its error reporting.
    #[inline(always)]
    pub fn fixed_string(&mut self, decimals: u8) -> Option<i64> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let (v, end) = plain_decimal(self.b, self.pos + 1, decimals)?;
        self.pos = end;
        Some(v)
    }

    /// A `["<decimal>","<decimal>"]` pair written without whitespace (a Binance price
    /// level), both through [`Scanner::fixed_string`]'s rules, starting exactly at the
    /// scanner's position. `None` (scanner unmoved) for anything else: the caller takes
    /// the general path.
    #[inline(always)]
    pub fn fixed_pair(&mut self, first: u8, second: u8) -> Option<(i64, i64)> {
        let b = self.b;
        let i = self.pos;
        if b.get(i..i + 2) != Some(b"[\"") {
            return None;
        }
        let (p, j) = plain_decimal(b, i + 2, first)?;
        if b.get(j..j + 2) != Some(b",\"") {
            return None;
        }
        let (q, k) = plain_decimal(b, j + 2, second)?;
        if b.get(k) != Some(&b']') {
            return None;
        }
        self.pos = k + 1;
        Some((p, q))
    }

    /// `,` directly followed by a [`Scanner::fixed_pair`]: the next level of an array
    /// being walked. `None` (scanner unmoved) otherwise; the caller's array walk then
    /// takes the `,` or the `]`.
    #[inline(always)]
    pub fn next_fixed_pair(&mut self, first: u8, second: u8) -> Option<(i64, i64)> {
        if self.b.get(self.pos) != Some(&b',') {
            return None;
        }
        self.pos += 1;
        let r = self.fixed_pair(first, second);
        if r.is_none() {
            self.pos -= 1;
        }
        r
    }

    /// An unsigned integer.
    #[inline]
    pub fn u64(&mut self) -> Result<u64> {
        self.ws();
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.pos) {
            if !c.is_ascii_digit() {
                break;
            }
            v = match v
                .checked_mul(10)
                .and_then(|v| v.checked_add((c - b'0') as u64))
            {
                Some(v) => v,
                None => return self.err("an integer that fits 64 bits"),
            };
            self.pos += 1;
        }
        if self.pos == start
            || matches!(self.b.get(self.pos), Some(b'.' | b'e' | b'E' | b'-' | b'+'))
        {
            return self.err("an unsigned integer");
        }
        Ok(v)
    }

    /// `true` or `false`.
    #[inline]
    pub fn bool(&mut self) -> Result<bool> {
        self.ws();
        let rest = &self.b[self.pos..];
        if rest.starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            self.err("true or false")
        }
    }

    /// Skips one value of any type and returns its raw text.
    pub fn skip(&mut self) -> Result<&'a [u8]> {
        let start = match self.peek() {
            Some(_) => self.pos,
            None => return self.err("a value"),
        };
        match self.b[self.pos] {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => self.skip_container()?,
            b't' | b'f' => {
                self.bool()?;
            }
            b'n' => {
                if self.b[self.pos..].starts_with(b"null") {
                    self.pos += 4;
                } else {
                    return self.err("null");
                }
            }
            b'-' | b'0'..=b'9' => {
                while let Some(&c) = self.b.get(self.pos) {
                    if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
            }
            _ => return self.err("a value"),
        }
        Ok(&self.b[start..self.pos])
    }

    /// Skips a whole object or array, checking that brackets match.
    fn skip_container(&mut self) -> Result<()> {
        // Bit i of `kinds` is 1 when nesting level i is an object.
        let mut kinds: u64 = 0;
        let mut depth = 0usize;
        while self.pos < self.b.len() {
            let c = self.b[self.pos];
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => {
                    if depth == MAX_DEPTH {
                        return self.err("nesting at most 64 deep");
                    }
                    if c == b'{' {
                        kinds |= 1 << depth;
                    } else {
                        kinds &= !(1 << depth);
                    }
                    depth += 1;
                }
                b'}' | b']' => {
                    if depth == 0 {
                        return self.err("a value");
                    }
                    depth -= 1;
                    let is_obj = kinds & (1 << depth) != 0;
                    if is_obj != (c == b'}') {
                        return self.err(if is_obj { "'}'" } else { "']'" });
                    }
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        self.err("end of object or array")
    }

    /// Checks that only whitespace follows.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.err("end of input"),
        }
    }
}

/// The plain non-negative decimal whose text starts at `b[i]` and ends at a `"`, as a
/// mantissa at `decimals`, with the index after the quote; `None` when it is not plain
/// or not exact (see [`Scanner::fixed_string`]).
#[inline(always)]
fn plain_decimal(b: &[u8], start: usize, decimals: u8) -> Option<(i64, usize)> {
    if decimals > 18 {
        return None;
    }
    let mut i = start;
    let mut acc: u64 = 0;
    // At most 18 digits in all keeps every step below 10^18 < i64::MAX.
    let int_limit = start + (18 - decimals as usize);
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        if i == int_limit {
            return None;
        }
        acc = acc * 10 + (c - b'0') as u64;
        i += 1;
    }
    let mut seen = i > start;
    let mut frac = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        // Eight decimals at once (Binance sends exactly eight).
        if decimals >= 8 {
            if let Some(w) = b.get(i..i + 8) {
                let w = u64::from_le_bytes(w.try_into().ok()?);
                if eight_digits(w) {
                    acc = acc * 100_000_000 + eight_digits_value(w);
                    frac = 8;
                    seen = true;
                    i += 8;
                }
            }
        }
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            seen = true;
            if frac < decimals as u32 {
                acc = acc * 10 + (c - b'0') as u64;
                frac += 1;
            } else if c != b'0' {
                return None;
            }
            i += 1;
        }
    }
    if !seen || b.get(i) != Some(&b'"') {
        return None;
    }
    // Integer digits + decimals <= 18: the product is below 10^18.
    Some((
        (acc * POW10[(decimals as u32 - frac) as usize]) as i64,
        i + 1,
    ))
}

const POW10: [u64; 19] = {
    let mut t = [1u64; 19];
    let mut i = 1;
    while i < 19 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `true` when all eight bytes of `w` (little-endian) are ASCII digits.
#[inline]
fn eight_digits(w: u64) -> bool {
    (w & 0xF0F0_F0F0_F0F0_F0F0)
        | (((w.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0) >> 4)
        == 0x3333_3333_3333_3333
}

/// The value of eight ASCII digits, the first in the lowest byte.
#[inline]
fn eight_digits_value(w: u64) -> u64 {
    let d = w - 0x3030_3030_3030_3030;
    let d = (d * 10 + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let d = (d * 100 + (d >> 16)) & 0x0000_FFFF_0000_FFFF;
    (d * 10_000 + (d >> 32)) & 0xFFFF_FFFF
}

/// Index of the first `"` or `\\` in `b`, eight bytes at a time (strings on the hot path
/// are short: a per-call SIMD set-up costs more than it saves there).
#[inline]
fn find_quote_or_backslash(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().ok()?);
        let q = w ^ (LO * b'"' as u64);
        let s = w ^ (LO * b'\\' as u64);
        // A zero byte in q or s is a match; the lowest flagged byte is exact.
        let m = (q.wrapping_sub(LO) & !q | s.wrapping_sub(LO) & !s) & HI;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
        if i >= 64 {
            // A long string: the SIMD search pays off.
            return memchr::memchr2(b'"', b'\\', &b[i..]).map(|n| i + n);
        }
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|n| i + n)
}

/// Parses an RFC 3339 UTC timestamp (`2026-08-09T21:05:48.505350477Z`, or with a
/// `+HH:MM` offset) into Unix nanoseconds. Fractions beyond 9 digits are truncated.
pub fn parse_rfc3339_ns(t: &[u8]) -> Option<i64> {
    fn num(t: &[u8], a: usize, n: usize) -> Option<i64> {
        let s = t.get(a..a + n)?;
        let mut v = 0i64;
        for &c in s {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as i64;
        }
        Some(v)
    }
    if t.len() < 20 || t[4] != b'-' || t[7] != b'-' || !matches!(t[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(t, 0, 4)?, num(t, 5, 2)?, num(t, 8, 2)?);
    let (h, mi, s) = (num(t, 11, 2)?, num(t, 14, 2)?, num(t, 17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0i64;
    if t.get(i) == Some(&b'.') {
        i += 1;
        let mut digits = 0;
        while let Some(&c) = t.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            if digits < 9 {
                frac = frac * 10 + (c - b'0') as i64;
                digits += 1;
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            frac *= 10;
        }
    }
    let offset_s = match t.get(i) {
        Some(b'Z' | b'z') if i + 1 == t.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == t.len() && t[i + 3] == b':' => {
            let o = num(t, i + 1, 2)? * 3600 + num(t, i + 4, 2)? * 60;
            if c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_objects_and_arrays() {
        let text = br#" {"a" : [1, "x\"y", {"b": null}], "c":true, "d": -1.5e3 , "e":{}} "#;
        let mut s = Scanner::new(text);
        s.object_begin().unwrap();
        let mut first = true;
        let mut keys = vec![];
        while let Some(k) = s.key(&mut first).unwrap() {
            keys.push(String::from_utf8_lossy(k).into_owned());
            if k == b"a" {
                s.array_begin().unwrap();
                let mut f = true;
                assert!(s.elem(&mut f).unwrap());
                assert_eq!(s.u64().unwrap(), 1);
                assert!(s.elem(&mut f).unwrap());
                assert_eq!(s.string().unwrap(), br#"x\"y"#);
                assert!(s.elem(&mut f).unwrap());
                assert_eq!(s.skip().unwrap(), br#"{"b": null}"#);
                assert!(!s.elem(&mut f).unwrap());
            } else if k == b"c" {
                assert!(s.bool().unwrap());
            } else {
                s.skip().unwrap();
            }
        }
        s.end().unwrap();
        assert_eq!(keys, ["a", "c", "d", "e"]);
    }

    #[test]
    fn rejects_broken_text_without_panicking() {
        for bad in [
            &br#"{"a":[1,2}"#[..],
            br#"{"a" 1}"#,
            br#"{"a":"#,
            br#"{"a":"unterminated"#,
            br#"{"a":"x\"#,
            br#"{,"a":1}"#,
            b"\xff\xfe",
            b"",
            br#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#,
        ] {
            let mut s = Scanner::new(bad);
            let r = (|| -> Result<()> {
                s.object_begin()?;
                let mut first = true;
                while s.key(&mut first)?.is_some() {
                    s.skip()?;
                }
                s.end()
            })();
            assert!(r.is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
        assert!(Scanner::new(b"18446744073709551616").u64().is_err());
        assert!(Scanner::new(b"1.5").u64().is_err());
        assert_eq!(Scanner::new(b"18446744073709551615").u64(), Ok(u64::MAX));
    }

    #[test]
    fn fixed_strings_match_parse_decimal() {
        for (text, d) in [
            (&br#""61837.63000000""#[..], 8u8),
            (br#""0.00583""#, 8),
            (br#""1925""#, 8),
            (br#""1925.""#, 2),
            (br#"".5""#, 2),
            (br#""1.2300000000000""#, 2),
            (br#""0.000000001""#, 8),
            (br#""92233720368.54775807""#, 8),
            (br#""9223372036.85477580""#, 8),
            (br#""-1.5""#, 8),
            (br#""""#, 8),
            (br#"".""#, 8),
            (br#""1e5""#, 8),
            (br#""1\u0030""#, 8),
            (br#""12345678.12345678x""#, 8),
            (br#""12345678.1234567""#, 8),
            (br#""7""#, 0),
            (b"17", 8),
        ] {
            let mut s = Scanner::new(text);
            let fast = s.fixed_string(d);
            let slow = Scanner::new(text)
                .string()
                .ok()
                .and_then(|t| hermes_book::parse_decimal(t, d).ok())
                .filter(|v| *v >= 0);
            match fast {
                Some(v) => {
                    assert_eq!(Some(v), slow, "{:?}", String::from_utf8_lossy(text));
                    assert_eq!(s.offset(), text.len());
                }
                None => assert_eq!(s.offset(), 0, "{:?}", String::from_utf8_lossy(text)),
            }
        }
    }

    #[test]
    fn fixed_pairs_take_only_the_plain_layout() {
        let mut s = Scanner::new(br#"["61837.63000000","0.02000000"],"#);
        assert_eq!(s.fixed_pair(8, 8), Some((6_183_763_000_000, 2_000_000)));
        assert_eq!(s.offset(), 31);
        let mut s = Scanner::new(br#"["1","2"],["3.5","4"], ["5","6"]]"#);
        assert_eq!(s.fixed_pair(8, 8), Some((100_000_000, 200_000_000)));
        assert_eq!(s.next_fixed_pair(1, 0), Some((35, 4)));
        assert_eq!(
            s.next_fixed_pair(8, 8),
            None,
            "whitespace: the general path"
        );
        assert_eq!(s.offset(), 21);
        for text in [
            &br#"[ "1.5","2"]"#[..],
            br#"["1.5","2","3"]"#,
            br#"["-1.5","2"]"#,
            br#"["1.5",2]"#,
            br#"["1.000000001","2"]"#,
            br#"["1.5""#,
        ] {
            let mut s = Scanner::new(text);
            assert_eq!(
                s.fixed_pair(8, 8),
                None,
                "{:?}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(s.offset(), 0);
        }
    }

    proptest::proptest! {
        #[test]
        fn fixed_string_agrees_with_parse_decimal(int in "[0-9]{0,12}", frac in "[0-9]{0,12}", dot: bool, d in 0u8..=18, tail in "[\"x\\\\e-]") {
            let text = format!("\"{}{}{}{}", int, if dot { "." } else { "" }, if dot { frac.as_str() } else { "" }, tail);
            let mut s = Scanner::new(text.as_bytes());
            let fast = s.fixed_string(d);
            let slow = Scanner::new(text.as_bytes())
                .string()
                .ok()
                .and_then(|t| hermes_book::parse_decimal(t, d).ok());
            if let Some(v) = fast {
                proptest::prop_assert_eq!(Some(v), slow);
            } else {
                proptest::prop_assert_eq!(s.offset(), 0);
            }
        }
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(
            parse_rfc3339_ns(b"2026-08-09T21:05:48.505350477Z"),
            Some(1_786_309_548_505_350_477)
        );
        assert_eq!(parse_rfc3339_ns(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns(b"2026-08-09T21:05:48.1706Z"),
            Some(1_786_309_548_170_600_000)
        );
        assert_eq!(
            parse_rfc3339_ns(b"2026-08-09T23:05:48+02:00"),
            Some(1_786_309_548_000_000_000)
        );
        assert_eq!(parse_rfc3339_ns(b"2026-13-09T21:05:48Z"), None);
        assert_eq!(parse_rfc3339_ns(b"2026-08-09T21:05:48"), None);
        assert_eq!(parse_rfc3339_ns(b"garbage"), None);
    }
}
