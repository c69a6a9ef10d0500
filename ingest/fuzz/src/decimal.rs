//! The `decimal` target: the text-to-integer parsers every value goes through.
//!
//! Input: one byte choosing the decimals `d` (its value mod 19), then the text.
//! Properties, besides never panicking:
//! * [`hermes_book::parse_decimal`]: text it accepts at `d` decimals shows
//!   ([`Decimal`]'s `{}` and `{:#}`) as text that parses back to the same mantissa, and the
//!   canonical text is a fixed point (show ∘ parse ∘ show = show).
//! * The JSON scanner's fast paths ([`Scanner::fixed_string`], [`Scanner::fixed_pair`])
//!   agree with the general path (string, then `parse_decimal`) whenever they answer,
//!   and leave the scanner where it was when they do not.
//! * [`Scanner::u64`] agrees with `str::parse::<u64>` on the digits it consumed.
//! * [`parse_rfc3339_ns`]: a time it accepts, shown by [`hermes_book::clock::rfc3339`],
//!   parses back to the same nanosecond.

use hermes_book::fixed::MAX_DECIMALS;
use hermes_book::{parse_decimal, Decimal};
use hermes_ingest::json::{parse_rfc3339_ns, Scanner};

/// Asserts that mantissa `m` at `d` decimals (at most 18) round-trips through both of
/// [`Decimal`]'s text forms.
pub fn assert_round_trip(m: i64, d: u8) {
    assert!(d <= MAX_DECIMALS, "scale of {d} decimals");
    let canonical = Decimal::new(m, d).to_string();
    assert_eq!(
        parse_decimal(canonical.as_bytes(), d),
        Ok(m),
        "{m} at {d} decimals shows as {canonical:?}"
    );
    let full = format!("{:#}", Decimal::new(m, d));
    assert_eq!(
        parse_decimal(full.as_bytes(), d),
        Ok(m),
        "{m} at {d} decimals shows as {full:?} with every decimal"
    );
}

/// Runs the `decimal` target's checks on `input`.
pub fn run(input: &[u8]) {
    let Some((&sel, text)) = input.split_first() else {
        return;
    };
    let d = sel % (MAX_DECIMALS + 1);
    let d2 = (sel / 19) % (MAX_DECIMALS + 1);

    let general = parse_decimal(text, d);
    if let Ok(m) = general {
        assert_round_trip(m, d);
        let shown = Decimal::new(m, d).to_string();
        let again = parse_decimal(shown.as_bytes(), d).expect("shown text parses");
        assert_eq!(
            Decimal::new(again, d).to_string(),
            shown,
            "canonical text of {:?} at {d} decimals is not stable",
            String::from_utf8_lossy(text)
        );
    }

    // The fast path on the text as a JSON string.
    let mut quoted = Vec::with_capacity(text.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(text);
    quoted.push(b'"');
    let mut s = Scanner::new(&quoted);
    match s.fixed_string(d) {
        Some(v) => {
            let slow = Scanner::new(&quoted)
                .string()
                .ok()
                .map(|t| parse_decimal(t, d));
            assert_eq!(
                slow,
                Some(Ok(v)),
                "fixed_string({:?}, {d}) = {v}, the general path disagrees",
                String::from_utf8_lossy(&quoted)
            );
            assert!(v >= 0, "fast path accepted a negative value");
        }
        None => assert_eq!(s.offset(), 0, "a refused fast path moved the scanner"),
    }

    // The fast path of a Binance level, on the raw text.
    let mut s = Scanner::new(text);
    match s.fixed_pair(d, d2) {
        Some((p, q)) => {
            let mut g = Scanner::new(text);
            let mut first = true;
            let field = |g: &mut Scanner<'_>, first: &mut bool, dec: u8| {
                assert!(g.elem(first).expect("an element"));
                parse_decimal(g.string().expect("a string"), dec).expect("a decimal")
            };
            g.array_begin().expect("'['");
            let gp = field(&mut g, &mut first, d);
            let gq = field(&mut g, &mut first, d2);
            assert!(!g.elem(&mut first).expect("']'"), "a third element");
            assert_eq!(
                (gp, gq, g.offset()),
                (p, q, s.offset()),
                "fixed_pair({:?}) disagrees with the general path",
                String::from_utf8_lossy(text)
            );
        }
        None => assert_eq!(s.offset(), 0, "a refused fast path moved the scanner"),
    }

    // Integers.
    let mut s = Scanner::new(text);
    if let Ok(v) = s.u64() {
        let digits = std::str::from_utf8(&text[..s.offset()]).expect("ASCII digits");
        assert_eq!(digits.trim_start().parse::<u64>(), Ok(v));
    }

    // Times.
    if let Some(ns) = parse_rfc3339_ns(text) {
        let shown = hermes_book::clock::rfc3339(ns);
        assert_eq!(
            parse_rfc3339_ns(shown.as_bytes()),
            Some(ns),
            "{:?} is {ns} ns, shown as {shown:?}",
            String::from_utf8_lossy(text)
        );
    }
}
