//! Fixed-point decimals: exact conversion between decimal strings and `i64` mantissas.
//!
//! A value is a mantissa `m` and a number of decimals `d`; it stands for `m × 10^-d`.
//! Every instrument has one `d` for prices and one for sizes ([`Scale`]). Parsing goes
//! from the wire's decimal text straight to the mantissa with integer arithmetic only:
//! no float, no rounding. Text with more significant decimals than the scale allows, or
//! a value that does not fit an `i64`, is an error, never a silent truncation.

use std::fmt;

/// The most decimals a scale may have: `10^18` still fits an `i64`.
pub const MAX_DECIMALS: u8 = 18;

/// The default number of decimals for prices and sizes: 8 covers both Coinbase's and
/// Binance's published precision (Binance sends exactly 8; Coinbase at most 8).
pub const DEFAULT_DECIMALS: u8 = 8;

/// A price mantissa, in units of `10^-price_decimals` of the quote currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Price(pub i64);

/// A size (quantity) mantissa, in units of `10^-size_decimals` of the base currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Qty(pub i64);

impl Qty {
    /// Zero size; on a level update it deletes the level.
    pub const ZERO: Qty = Qty(0);
}

/// The decimal exponents of one instrument: how many decimals its price and size
/// mantissas carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scale {
    /// Decimals of a [`Price`] mantissa.
    pub price_decimals: u8,
    /// Decimals of a [`Qty`] mantissa.
    pub size_decimals: u8,
}

impl Default for Scale {
    fn default() -> Self {
        Scale {
            price_decimals: DEFAULT_DECIMALS,
            size_decimals: DEFAULT_DECIMALS,
        }
    }
}

/// Why a decimal string was refused. `Copy` and allocation-free: it is returned on the
/// hot path, and the caller adds the frame and field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// The text was empty (or only a sign).
    #[error("empty number")]
    Empty,
    /// A byte that is not a digit, a leading `-`, or a single `.`.
    #[error("unexpected byte {byte:?} at index {index} (only digits, one '.', a leading '-')")]
    InvalidByte {
        /// The offending byte.
        byte: char,
        /// Its index in the text.
        index: usize,
    },
    /// More non-zero decimals than the scale holds.
    #[error("more than {max} significant decimals")]
    TooManyDecimals {
        /// The scale's decimals.
        max: u8,
    },
    /// The mantissa does not fit an `i64`.
    #[error("value out of range for a 64-bit mantissa at {decimals} decimals")]
    Overflow {
        /// The scale's decimals.
        decimals: u8,
    },
}

const POW10: [i64; 19] = {
    let mut t = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `10^n` as an `i64`, for `n <= 18`.
#[inline]
pub fn pow10(n: u8) -> i64 {
    POW10[n as usize]
}

/// Parses decimal text such as `b"61837.63000000"` into a mantissa with `decimals`
/// decimals, exactly. Trailing zeros past the scale are accepted (`"1.50000000000"` at 8
/// decimals is fine); a non-zero digit past it is [`DecimalError::TooManyDecimals`].
#[inline]
pub fn parse_decimal(text: &[u8], decimals: u8) -> Result<i64, DecimalError> {
    debug_assert!(decimals <= MAX_DECIMALS);
    let (neg, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(DecimalError::Empty);
    }
    let offset = neg as usize;
    // Accumulate as a negative number so i64::MIN is reachable and the checks are one-sided.
    let mut acc: i64 = 0;
    let mut frac_digits: u8 = 0;
    let mut seen_dot = false;
    let mut seen_digit = false;
    let overflow = DecimalError::Overflow { decimals };
    for (i, &b) in digits.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                seen_digit = true;
                let d = (b - b'0') as i64;
                if seen_dot {
                    if frac_digits == decimals {
                        if d != 0 {
                            return Err(DecimalError::TooManyDecimals { max: decimals });
                        }
                        continue;
                    }
                    frac_digits += 1;
                }
                acc = acc
                    .checked_mul(10)
                    .and_then(|a| a.checked_sub(d))
                    .ok_or(overflow)?;
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => {
                return Err(DecimalError::InvalidByte {
                    byte: b as char,
                    index: i + offset,
                })
            }
        }
    }
    if !seen_digit {
        return Err(DecimalError::Empty);
    }
    let acc = acc
        .checked_mul(pow10(decimals - frac_digits))
        .ok_or(overflow)?;
    if neg {
        Ok(acc)
    } else {
        acc.checked_neg().ok_or(overflow)
    }
}

/// Exact decimal display of a mantissa: canonical form, no exponent, no trailing zeros
/// after the point, no trailing `.`, zero is `0`. `Decimal::new(6183763000000, 8)` shows
/// as `61837.63`. Writes without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    /// The mantissa.
    pub mantissa: i64,
    /// Its decimals.
    pub decimals: u8,
}

impl Decimal {
    /// A mantissa at `decimals` decimals.
    pub fn new(mantissa: i64, decimals: u8) -> Self {
        Decimal { mantissa, decimals }
    }
}

/// `{}` prints the canonical text; `{:#}` keeps every one of `decimals` fraction digits
/// (`Decimal::new(6183763000000, 8)` as `61837.63000000`, Binance's style).
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() && self.decimals > 0 && self.decimals <= 38 {
            let p = 10u128.pow(self.decimals as u32);
            let a = self.mantissa.unsigned_abs() as u128;
            let sign = if self.mantissa < 0 { "-" } else { "" };
            let w = self.decimals as usize;
            return write!(f, "{sign}{}.{:0w$}", a / p, a % p);
        }
        // At most 40 decimals plus one integer digit (or 20 integer digits), a sign and a
        // point: 48 bytes.
        let mut buf = [0u8; 48];
        let len = write_decimal(self.mantissa, self.decimals, &mut buf);
        // The buffer holds only ASCII digits, '-' and '.'.
        f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

/// Writes the canonical decimal text of `mantissa × 10^-decimals` into `out` and returns
/// its length. `out` must hold at least 48 bytes.
pub fn write_decimal(mantissa: i64, decimals: u8, out: &mut [u8]) -> usize {
    let neg = mantissa < 0;
    let mut abs = mantissa.unsigned_abs();
    // Any u8 of decimals is displayed (a damaged file may claim 200); past 40 the value
    // is below 10^-20 of a unit anyway and is shown as 0.
    if decimals > 40 {
        out[0] = b'0';
        return 1;
    }
    let mut digits = [0u8; 48];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (abs % 10) as u8;
        abs /= 10;
        n += 1;
        if abs == 0 {
            break;
        }
    }
    // digits[] is little-endian. Pad so there is at least one integer digit.
    let decimals = decimals as usize;
    while n <= decimals {
        digits[n] = b'0';
        n += 1;
    }
    // Trailing fraction zeros to drop.
    let mut skip = 0;
    while skip < decimals && digits[skip] == b'0' {
        skip += 1;
    }
    let mut len = 0;
    if neg {
        out[len] = b'-';
        len += 1;
    }
    for i in (decimals..n).rev() {
        out[len] = digits[i];
        len += 1;
    }
    if skip < decimals {
        out[len] = b'.';
        len += 1;
        for i in (skip..decimals).rev() {
            out[len] = digits[i];
            len += 1;
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_wire_examples_exactly() {
        assert_eq!(parse_decimal(b"61837.63000000", 8), Ok(6_183_763_000_000));
        assert_eq!(parse_decimal(b"0.00583", 8), Ok(583_000));
        assert_eq!(parse_decimal(b"1925", 8), Ok(192_500_000_000));
        assert_eq!(parse_decimal(b"0", 8), Ok(0));
        assert_eq!(parse_decimal(b"0.00000000", 8), Ok(0));
        assert_eq!(parse_decimal(b"-0.5", 2), Ok(-50));
        assert_eq!(parse_decimal(b".5", 2), Ok(50));
        assert_eq!(parse_decimal(b"5.", 2), Ok(500));
        assert_eq!(parse_decimal(b"1.2300000000000", 2), Ok(123));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert_eq!(
            parse_decimal(b"0.000000001", 8),
            Err(DecimalError::TooManyDecimals { max: 8 })
        );
        assert_eq!(
            parse_decimal(b"92233720368.54775808", 8),
            Err(DecimalError::Overflow { decimals: 8 })
        );
        assert_eq!(parse_decimal(b"92233720368.54775807", 8), Ok(i64::MAX));
        assert_eq!(parse_decimal(b"-92233720368.54775808", 8), Ok(i64::MIN));
        assert_eq!(parse_decimal(b"", 8), Err(DecimalError::Empty));
        assert_eq!(parse_decimal(b"-", 8), Err(DecimalError::Empty));
        assert_eq!(parse_decimal(b".", 8), Err(DecimalError::Empty));
        assert!(matches!(
            parse_decimal(b"1e5", 8),
            Err(DecimalError::InvalidByte {
                byte: 'e',
                index: 1
            })
        ));
        assert!(matches!(
            parse_decimal(b"1.2.3", 8),
            Err(DecimalError::InvalidByte {
                byte: '.',
                index: 3
            })
        ));
        assert!(matches!(
            parse_decimal(b"--1", 8),
            Err(DecimalError::InvalidByte {
                byte: '-',
                index: 1
            })
        ));
        assert!(parse_decimal(b"NaN", 8).is_err());
    }

    #[test]
    fn displays_padded_with_the_alternate_flag() {
        let d = |m, k| format!("{:#}", Decimal::new(m, k));
        assert_eq!(d(6_183_763_000_000, 8), "61837.63000000");
        assert_eq!(d(5, 8), "0.00000005");
        assert_eq!(d(-50, 2), "-0.50");
        assert_eq!(d(7, 0), "7");
        assert_eq!(d(i64::MIN, 8), "-92233720368.54775808");
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(Decimal::new(6_183_763_000_000, 8).to_string(), "61837.63");
        assert_eq!(Decimal::new(0, 8).to_string(), "0");
        assert_eq!(Decimal::new(583_000, 8).to_string(), "0.00583");
        assert_eq!(Decimal::new(192_500_000_000, 8).to_string(), "1925");
        assert_eq!(Decimal::new(-50, 2).to_string(), "-0.5");
        assert_eq!(Decimal::new(7, 0).to_string(), "7");
        assert_eq!(
            Decimal::new(i64::MIN, 8).to_string(),
            "-92233720368.54775808"
        );
        assert_eq!(
            Decimal::new(i64::MAX, 18).to_string(),
            "9.223372036854775807"
        );
    }

    /// A naive reference: parse with string surgery into an `i128`.
    fn reference(text: &str, decimals: u8) -> Option<i64> {
        let (neg, t) = match text.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, text),
        };
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > decimals as usize {
            return None;
        }
        let s = format!("{int}{frac:0<width$}", width = decimals as usize);
        let v: i128 = if s.is_empty() { 0 } else { s.parse().ok()? };
        i64::try_from(if neg { -v } else { v }).ok()
    }

    proptest! {
        #[test]
        fn matches_reference(int in "[0-9]{0,13}", frac in "[0-9]{0,12}", dot: bool, neg: bool, d in 0u8..=10) {
            let text = format!("{}{}{}{}", if neg { "-" } else { "" }, int, if dot { "." } else { "" }, if dot { frac.as_str() } else { "" });
            let got = parse_decimal(text.as_bytes(), d).ok();
            prop_assert_eq!(got, reference(&text, d), "text {:?} at {} decimals", text, d);
        }

        #[test]
        fn display_round_trips(m: i64, d in 0u8..=18) {
            let text = Decimal::new(m, d).to_string();
            prop_assert_eq!(parse_decimal(text.as_bytes(), d), Ok(m));
        }
    }
}
