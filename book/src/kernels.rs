//! Numeric kernels over a book: the analytics the book thread computes on every
//! top-of-book change and publishes next to best bid/ask in the shm slot.
//!
//! One [`Kernels`] per instrument keeps the little state the time-based kernels need
//! (windows, the EWMA, the previous best bid/ask); [`Kernels::update`] returns a
//! [`KernelValues`]. Nothing allocates after [`Kernels::new`].
//!
//! # Inputs
//!
//! * `bid`/`ask`: the *published* best bid and ask (usually the book's best levels; on
//!   Binance possibly a newer `bookTicker`). Spread, mid, microprice, OFI and volatility
//!   use these.
//! * `book`: the full L2 book. Depth, imbalance and VWAP walk its levels.
//! * trades, fed with [`Kernels::on_trade`].
//!
//! # The kernel clock
//!
//! Time-based kernels run on *event time*, not the wall clock, so a replay computes the
//! same values however fast it runs: the caller passes the frame's receive time for book
//! changes and the trade's own time for trades. The clock never goes backwards: an event
//! older than the newest one seen counts at the newest time
//! (`clock = max(clock, event time)`).
//!
//! # Windows
//!
//! A window of length `W` is [`WINDOW_BUCKETS`] buckets of width `w = W / WINDOW_BUCKETS`
//! (integer ns) aligned to multiples of `w` since the Unix epoch. An event at clock `t`
//! falls in bucket `⌊t / w⌋`; the window at clock `t` is the buckets
//! `⌊t / w⌋ − WINDOW_BUCKETS + 1 ..= ⌊t / w⌋`, so it spans between `W − w` and `W` of
//! history. That costs O(1) memory and time per event, where an exact sliding window
//! would have to keep every event.
//!
//! # Units
//!
//! Integer math throughout, except volatility (below). Sizes are mantissas at the
//! instrument's size decimals; prices at its price decimals `p`. Prices that are averages
//! (mid, microprice, VWAP) are mantissas at `kp = min(p + 2, 18)` decimals
//! ([`KernelValues::price_decimals`]): hundredths of a price tick, so the mid is exact and
//! the others are rounded to the nearest hundredth of a tick. Every rounding is to the
//! nearest value, ties away from zero. A ratio is in parts per million (ppm, `1.0` =
//! 1,000,000); a spread in basis points is stored ×100 (`1.25 bps` = 125). A kernel whose
//! inputs are missing (an empty side, a zero denominator, a book too thin to fill the VWAP
//! size) or whose arithmetic would overflow is `None`.
//!
//! | kernel | definition | unit |
//! |---|---|---|
//! | [`spread_ticks`](KernelValues::spread_ticks) | `ask − bid` | price mantissa (ticks of `10^-p`) |
//! | [`spread_bps_x100`](KernelValues::spread_bps_x100) | `(ask − bid) / mid × 10^4`, `mid = (bid + ask) / 2` | bps × 100 |
//! | [`mid`](KernelValues::mid) | `(bid + ask) / 2` | price at `kp` decimals |
//! | [`microprice`](KernelValues::microprice) | `(bid × ask_qty + ask × bid_qty) / (bid_qty + ask_qty)` | price at `kp` decimals |
//! | [`bid_depth`](KernelValues::bid_depth), [`ask_depth`](KernelValues::ask_depth) | sum of the sizes of the top `N` levels of a side | size mantissa |
//! | [`imbalance_ppm`](KernelValues::imbalance_ppm) | `(bid_depth − ask_depth) / (bid_depth + ask_depth)` | ppm, in `[−10^6, 10^6]` |
//! | [`vwap_buy`](KernelValues::vwap_buy) | average price paid buying `Q` by walking the asks best first | price at `kp` decimals |
//! | [`vwap_sell`](KernelValues::vwap_sell) | average price received selling `Q` by walking the bids | price at `kp` decimals |
//! | [`volatility_bps`](KernelValues::volatility_bps) | EWMA of squared log mid returns, as a 1-second σ | bps (`f64`) |
//! | [`trade_buy_qty`](KernelValues::trade_buy_qty), [`trade_sell_qty`](KernelValues::trade_sell_qty) | traded size by aggressor side in the trade window | size mantissa |
//! | [`trade_imbalance_ppm`](KernelValues::trade_imbalance_ppm) | `(buy − sell) / (buy + sell)` over the trade window | ppm |
//! | [`ofi_window`](KernelValues::ofi_window), [`ofi_total`](KernelValues::ofi_total) | order-flow imbalance (Cont, Kukanov & Stoikov) summed over the trade window / since start | size mantissa |
//! | [`updates_per_s_x100`](KernelValues::updates_per_s_x100) | updates in the rate window / its length | updates/s × 100 |
//!
//! **VWAP.** `Q` is [`KernelConfig::vwap_size`] converted to the instrument's size
//! decimals (rounded up when it has more decimals than the instrument). With
//! `take_i = min(size_i, remaining)`, `vwap = Σ price_i × take_i / Q`. At most
//! [`VWAP_MAX_LEVELS`] levels are walked; a side that holds less than `Q` there gives
//! `None`.
//!
//! **Volatility** is the one `f64`: it needs a logarithm and a square root, so no integer
//! form would be exact either. With `r_i = ln(mid_i / mid_{i−1})` the log return between
//! consecutive valid mids (at clock `t_i`), half-life `H` (seconds) and the clock `t`,
//! `S = Σ r_i² × 2^(−(t − t_i)/H)` is an exponentially decayed sum of squared returns;
//! since `∫ 2^(−u/H) du = H / ln 2`, `S × ln 2 / H` estimates the variance per second, and
//! `volatility_bps = √(S × ln 2 / H) × 10^4` is the standard deviation of the log mid
//! over one second, in basis points. It decays towards 0 while the mid stays still, and
//! is `None` until a first return.
//!
//! **OFI** (Cont, Kukanov & Stoikov, "The price impact of order book events", 2014). For
//! consecutive updates `n−1`, `n` that both have a best bid `(B, q^B)` and ask `(A, q^A)`:
//! `e_n = 1{B_n ≥ B_{n−1}} q^B_n − 1{B_n ≤ B_{n−1}} q^B_{n−1}
//!      − 1{A_n ≤ A_{n−1}} q^A_n + 1{A_n ≥ A_{n−1}} q^A_{n−1}`.
//! Positive is buying pressure. An update missing a side contributes nothing and starts
//! over. [`ofi_total`](KernelValues::ofi_total) wraps around on overflow (take
//! differences of it); window sums saturate.
//!
//! **Update rate** counts calls of [`Kernels::update`] (one per slot publication) whose
//! clock falls in the rate window, divided by the window length.
//!
//! ```
//! use hermes_book::kernels::{KernelConfig, Kernels};
//! use hermes_book::{Level, OrderBook, Price, Qty, Scale, Side};
//!
//! let scale = Scale { price_decimals: 2, size_decimals: 0 };
//! let mut k = Kernels::new(&KernelConfig::default(), scale);
//! let mut book = OrderBook::default();
//! book.set(Side::Bid, Price(10_000), Qty(3)); // 100.00 × 3
//! book.set(Side::Ask, Price(10_002), Qty(1)); // 100.02 × 1
//! let v = k.update(1_000, book.best_bid(), book.best_ask(), &book);
//! assert_eq!(v.spread_ticks, Some(2));
//! assert_eq!(v.mid, Some(1_000_100)); // 100.01 at 4 decimals
//! assert_eq!(v.microprice, Some(1_000_150)); // (100.00×1 + 100.02×3) / 4 = 100.015
//! assert_eq!(v.imbalance_ppm, Some(500_000)); // (3 − 1) / 4
//! ```

use crate::event::TradeSide;
use crate::fixed::{pow10, Decimal, Scale, MAX_DECIMALS};
use crate::ladder::{Level, OrderBook};
use crate::wire::{invalid, put_f64, put_i64, put_opt_i64, put_u32, put_u64, FieldError, Reader};

/// Buckets per time window (see the module docs).
pub const WINDOW_BUCKETS: usize = 10;
/// The largest `N` for depth and imbalance.
pub const MAX_LEVELS: usize = 1_000;
/// The most levels a VWAP walks before giving up.
pub const VWAP_MAX_LEVELS: usize = 1_000;
/// Extra decimals of averaged prices (mid, microprice, VWAP) over the instrument's price
/// decimals, capped so the result stays at most [`MAX_DECIMALS`].
pub const EXTRA_PRICE_DECIMALS: u8 = 2;

/// Kernel parameters, shared by every instrument of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    /// `N`: levels per side summed by depth and imbalance (`1..=MAX_LEVELS`).
    pub levels: usize,
    /// The size the VWAPs fill, in base units (e.g. `1` BTC), converted to each
    /// instrument's size decimals. Must be > 0.
    pub vwap_size: Decimal,
    /// Half-life of the volatility EWMA, ns (> 0).
    pub vol_half_life_ns: i64,
    /// Window of the trade-flow imbalance and of the OFI window sum, ns
    /// (≥ [`WINDOW_BUCKETS`]).
    pub trade_window_ns: i64,
    /// Window of the update rate, ns (≥ [`WINDOW_BUCKETS`]).
    pub rate_window_ns: i64,
}

impl Default for KernelConfig {
    /// Top 5 levels, VWAP for 1 unit, 30 s volatility half-life, 5 s trade window, 1 s
    /// rate window.
    fn default() -> Self {
        KernelConfig {
            levels: 5,
            vwap_size: Decimal::new(1, 0),
            vol_half_life_ns: 30_000_000_000,
            trade_window_ns: 5_000_000_000,
            rate_window_ns: 1_000_000_000,
        }
    }
}

/// A [`KernelConfig`] value out of range. The message names the setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelConfigError {
    /// `levels` is 0 or above [`MAX_LEVELS`].
    #[error("kernel levels must be between 1 and {MAX_LEVELS}, got {0}")]
    Levels(usize),
    /// `vwap_size` is not positive or has more than 18 decimals.
    #[error("the VWAP size must be a positive number with at most 18 decimals, got {0}")]
    VwapSize(Decimal),
    /// The volatility half-life is not positive.
    #[error("the volatility half-life must be positive, got {0} ns")]
    HalfLife(i64),
    /// A window shorter than one ns per bucket.
    #[error("the {name} must be at least {WINDOW_BUCKETS} ns, got {ns} ns")]
    Window {
        /// Which window.
        name: &'static str,
        /// Its length.
        ns: i64,
    },
}

impl KernelConfig {
    /// Checks every value; the error names the first bad one.
    pub fn validate(&self) -> Result<(), KernelConfigError> {
        if !(1..=MAX_LEVELS).contains(&self.levels) {
            return Err(KernelConfigError::Levels(self.levels));
        }
        if self.vwap_size.mantissa <= 0 || self.vwap_size.decimals > MAX_DECIMALS {
            return Err(KernelConfigError::VwapSize(self.vwap_size));
        }
        if self.vol_half_life_ns <= 0 {
            return Err(KernelConfigError::HalfLife(self.vol_half_life_ns));
        }
        for (name, ns) in [
            ("trade window", self.trade_window_ns),
            ("rate window", self.rate_window_ns),
        ] {
            if ns < WINDOW_BUCKETS as i64 {
                return Err(KernelConfigError::Window { name, ns });
            }
        }
        Ok(())
    }
}

/// The kernels of one update. See the module docs for definitions and units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelValues {
    /// The kernel clock of this update (event time, Unix ns).
    pub time_ns: i64,
    /// Decimals `kp` of `mid`, `microprice`, `vwap_buy`, `vwap_sell`.
    pub price_decimals: u8,
    /// `ask − bid`, price mantissa. Zero is locked, negative crossed.
    pub spread_ticks: Option<i64>,
    /// Spread over mid in basis points × 100; `None` when `bid + ask ≤ 0`.
    pub spread_bps_x100: Option<i64>,
    /// Mid price at `price_decimals`.
    pub mid: Option<i64>,
    /// Size-weighted mid (microprice) at `price_decimals`.
    pub microprice: Option<i64>,
    /// Size of the top `N` bid levels (0 for an empty side).
    pub bid_depth: i64,
    /// Size of the top `N` ask levels.
    pub ask_depth: i64,
    /// Depth imbalance over the top `N` levels, ppm; `None` when both depths are 0.
    pub imbalance_ppm: Option<i64>,
    /// Average price to buy the VWAP size, at `price_decimals`.
    pub vwap_buy: Option<i64>,
    /// Average price to sell the VWAP size, at `price_decimals`.
    pub vwap_sell: Option<i64>,
    /// EWMA mid volatility over one second, bps (`f64`: see the module docs).
    pub volatility_bps: Option<f64>,
    /// Size bought by aggressors in the trade window.
    pub trade_buy_qty: i64,
    /// Size sold by aggressors in the trade window.
    pub trade_sell_qty: i64,
    /// Trade-flow imbalance over the trade window, ppm; `None` without trades.
    pub trade_imbalance_ppm: Option<i64>,
    /// Order-flow imbalance summed over the trade window, size mantissa.
    pub ofi_window: i64,
    /// Order-flow imbalance summed since the kernels started (wrapping).
    pub ofi_total: i64,
    /// Updates per second over the rate window, × 100.
    pub updates_per_s_x100: u64,
}

/// Sums of `K` values over a bucketed time window (see the module docs).
#[derive(Clone, Debug)]
struct Window<const K: usize> {
    /// Bucket width, ns.
    width: i64,
    /// Each bucket's index (`⌊t / width⌋`) and sums; `i64::MIN` = never used.
    buckets: [(i64, [i64; K]); WINDOW_BUCKETS],
}

impl<const K: usize> Window<K> {
    fn new(window_ns: i64) -> Self {
        Window {
            width: (window_ns / WINDOW_BUCKETS as i64).max(1),
            buckets: [(i64::MIN, [0; K]); WINDOW_BUCKETS],
        }
    }

    #[inline]
    fn add(&mut self, t: i64, v: [i64; K]) {
        let idx = t.div_euclid(self.width);
        let b = &mut self.buckets[idx.rem_euclid(WINDOW_BUCKETS as i64) as usize];
        if b.0 != idx {
            *b = (idx, [0; K]);
        }
        for (s, x) in b.1.iter_mut().zip(v) {
            *s = s.saturating_add(x);
        }
    }

    #[inline]
    fn sum(&self, t: i64) -> [i64; K] {
        let cur = t.div_euclid(self.width);
        let mut out = [0i64; K];
        for (idx, v) in &self.buckets {
            if *idx > cur.saturating_sub(WINDOW_BUCKETS as i64) && *idx <= cur {
                for (o, x) in out.iter_mut().zip(v) {
                    *o = o.saturating_add(*x);
                }
            }
        }
        out
    }
}

impl<const K: usize> Window<K> {
    /// Appends the buckets for a checkpoint: per bucket its index, then its `K` sums
    /// (`i64` each). The width is not written: the configuration gives it.
    fn write_buckets(&self, out: &mut Vec<u8>) {
        for (idx, sums) in &self.buckets {
            put_i64(out, *idx);
            for s in sums {
                put_i64(out, *s);
            }
        }
    }

    /// Reads what [`Window::write_buckets`] wrote.
    fn read_buckets(
        &mut self,
        r: &mut Reader<'_>,
        idx_field: &'static str,
        sum_field: &'static str,
    ) -> Result<(), FieldError> {
        for (idx, sums) in &mut self.buckets {
            *idx = r.i64(idx_field)?;
            for s in sums {
                *s = r.i64(sum_field)?;
            }
        }
        Ok(())
    }
}

/// The state of the kernels of one instrument.
#[derive(Clone, Debug)]
pub struct Kernels {
    cfg: KernelConfig,
    /// The VWAP size in size mantissa units.
    vwap_qty: i64,
    /// `kp`, and `10^(kp − p)`.
    price_decimals: u8,
    price_factor: i64,
    clock: i64,
    prev_bbo: Option<(Level, Level)>,
    ofi_total: i64,
    /// Decayed sum of squared log returns, as of `vol_time`.
    vol_sum: f64,
    vol_time: i64,
    vol_returns: u64,
    last_mid: Option<i64>,
    /// Buy size, sell size, OFI.
    flow: Window<3>,
    /// Updates.
    rate: Window<1>,
}

/// `num / den` rounded to nearest, ties away from zero; `den > 0`.
#[inline]
pub fn div_round(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    let (q, r) = (num / den, num % den);
    if 2 * r.abs() >= den {
        q + num.signum()
    } else {
        q
    }
}

/// `num / den` rounded, as an `i64`; `None` when `den ≤ 0` or the result overflows.
#[inline]
fn ratio(num: Option<i128>, den: i128) -> Option<i64> {
    if den <= 0 {
        return None;
    }
    i64::try_from(div_round(num?, den)).ok()
}

/// `size` (any decimals) as a mantissa at `decimals`, rounded up; saturates.
pub fn size_to_mantissa(size: Decimal, decimals: u8) -> i64 {
    let (m, d) = (size.mantissa as i128, size.decimals.min(MAX_DECIMALS));
    let decimals = decimals.min(MAX_DECIMALS);
    let v = if d <= decimals {
        m * pow10(decimals - d) as i128
    } else {
        let p = pow10(d - decimals) as i128;
        (m + p - 1).div_euclid(p)
    };
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Kernels {
    /// Kernels for an instrument of `scale`. Takes a config that passed
    /// [`KernelConfig::validate`]; out-of-range values are clamped rather than panicking.
    pub fn new(cfg: &KernelConfig, scale: Scale) -> Kernels {
        let p = scale.price_decimals.min(MAX_DECIMALS);
        let kp = (p + EXTRA_PRICE_DECIMALS).min(MAX_DECIMALS);
        let mut cfg = *cfg;
        cfg.levels = cfg.levels.clamp(1, MAX_LEVELS);
        cfg.vol_half_life_ns = cfg.vol_half_life_ns.max(1);
        Kernels {
            vwap_qty: size_to_mantissa(cfg.vwap_size, scale.size_decimals).max(1),
            price_decimals: kp,
            price_factor: pow10(kp - p),
            clock: i64::MIN,
            prev_bbo: None,
            ofi_total: 0,
            vol_sum: 0.0,
            vol_time: i64::MIN,
            vol_returns: 0,
            last_mid: None,
            flow: Window::new(cfg.trade_window_ns),
            rate: Window::new(cfg.rate_window_ns),
            cfg,
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &KernelConfig {
        &self.cfg
    }

    /// The VWAP size `Q` in the instrument's size mantissa.
    pub fn vwap_qty(&self) -> i64 {
        self.vwap_qty
    }

    /// Decimals of averaged prices (`kp`).
    pub fn price_decimals(&self) -> u8 {
        self.price_decimals
    }

    /// Appends the whole state for a checkpoint, in the order the
    /// [`checkpoint`](crate::checkpoint) module docs give: the configuration, then what
    /// the kernels accumulated. The VWAP size, `kp` and the window widths are not written:
    /// [`Kernels::new`] derives them from the configuration and the scale.
    pub(crate) fn write_state(&self, out: &mut Vec<u8>) {
        // Destructured so a new field does not compile until it is checkpointed.
        let Kernels {
            cfg,
            vwap_qty: _,
            price_decimals: _,
            price_factor: _,
            clock,
            prev_bbo,
            ofi_total,
            vol_sum,
            vol_time,
            vol_returns,
            last_mid,
            flow,
            rate,
        } = self;
        let KernelConfig {
            levels,
            vwap_size,
            vol_half_life_ns,
            trade_window_ns,
            rate_window_ns,
        } = *cfg;
        // `new` clamped `levels` to MAX_LEVELS.
        put_u32(out, u32::try_from(levels).unwrap_or(u32::MAX));
        put_i64(out, vwap_size.mantissa);
        out.push(vwap_size.decimals);
        put_i64(out, vol_half_life_ns);
        put_i64(out, trade_window_ns);
        put_i64(out, rate_window_ns);
        put_i64(out, *clock);
        match prev_bbo {
            None => out.push(0),
            Some((b, a)) => {
                out.push(1);
                for x in [b.price.0, b.qty.0, a.price.0, a.qty.0] {
                    put_i64(out, x);
                }
            }
        }
        put_i64(out, *ofi_total);
        put_f64(out, *vol_sum);
        put_i64(out, *vol_time);
        put_u64(out, *vol_returns);
        put_opt_i64(out, *last_mid);
        flow.write_buckets(out);
        rate.write_buckets(out);
    }

    /// Reads what [`Kernels::write_state`] wrote, for an instrument of `scale`.
    pub(crate) fn read_state(r: &mut Reader<'_>, scale: Scale) -> Result<Kernels, FieldError> {
        let at = r.pos();
        let levels = r.u32("kernel levels")?;
        if !(1..=MAX_LEVELS as u64).contains(&u64::from(levels)) {
            return Err(invalid("kernel levels", at, levels, "1 to 1000"));
        }
        let vwap_size = Decimal::new(r.i64("kernel vwap size")?, r.u8("kernel vwap decimals")?);
        let at = r.pos();
        let vol_half_life_ns = r.i64("kernel volatility half-life")?;
        if vol_half_life_ns <= 0 {
            return Err(invalid(
                "kernel volatility half-life",
                at,
                vol_half_life_ns,
                "a positive number of ns",
            ));
        }
        let cfg = KernelConfig {
            levels: levels as usize,
            vwap_size,
            vol_half_life_ns,
            trade_window_ns: r.i64("kernel trade window")?,
            rate_window_ns: r.i64("kernel rate window")?,
        };
        // In range, so `new` keeps `cfg` as it is (it clamps only levels and half-life).
        let mut k = Kernels::new(&cfg, scale);
        k.clock = r.i64("kernel clock")?;
        k.prev_bbo = match r.flag("kernel previous bbo")? {
            false => None,
            true => {
                let mut lvl = || -> Result<Level, FieldError> {
                    Ok(Level {
                        price: crate::Price(r.i64("kernel previous bbo")?),
                        qty: crate::Qty(r.i64("kernel previous bbo")?),
                    })
                };
                Some((lvl()?, lvl()?))
            }
        };
        k.ofi_total = r.i64("kernel ofi total")?;
        k.vol_sum = r.f64("kernel volatility sum")?;
        k.vol_time = r.i64("kernel volatility time")?;
        k.vol_returns = r.u64("kernel volatility returns")?;
        k.last_mid = r.opt_i64("kernel last mid")?;
        k.flow
            .read_buckets(r, "kernel trade window bucket", "kernel trade window sum")?;
        k.rate
            .read_buckets(r, "kernel rate window bucket", "kernel rate window count")?;
        Ok(k)
    }

    #[inline]
    fn tick(&mut self, t: i64) -> i64 {
        self.clock = self.clock.max(t);
        self.clock
    }

    /// Records a trade of `qty` at `ts_ns` (the trade's time).
    #[inline]
    pub fn on_trade(&mut self, ts_ns: i64, side: TradeSide, qty: crate::Qty) {
        let t = self.tick(ts_ns);
        let v = match side {
            TradeSide::Buy => [qty.0, 0, 0],
            TradeSide::Sell => [0, qty.0, 0],
            TradeSide::Unknown => return,
        };
        self.flow.add(t, v);
    }

    /// Computes every kernel for an update at `now_ns` (event time) with the published
    /// best `bid`/`ask` and the full `book`.
    #[inline]
    pub fn update(
        &mut self,
        now_ns: i64,
        bid: Option<Level>,
        ask: Option<Level>,
        book: &OrderBook,
    ) -> KernelValues {
        let t = self.tick(now_ns);
        let f = self.price_factor as i128;
        let mut v = KernelValues {
            time_ns: t,
            price_decimals: self.price_decimals,
            ..KernelValues::default()
        };

        // Best bid/ask kernels.
        if let (Some(b), Some(a)) = (bid, ask) {
            let (bp, ap) = (b.price.0 as i128, a.price.0 as i128);
            let (bq, aq) = (b.qty.0 as i128, a.qty.0 as i128);
            v.spread_ticks = a.price.0.checked_sub(b.price.0);
            v.spread_bps_x100 = ratio(Some((ap - bp) * 2_000_000), ap + bp);
            v.mid = ratio(Some((ap + bp) * f), 2);
            v.microprice = ratio(
                (bp * aq)
                    .checked_add(ap * bq)
                    .and_then(|x| x.checked_mul(f)),
                aq + bq,
            );
        }

        // Depth and imbalance over the top N levels.
        let n = self.cfg.levels;
        let bd: i128 = book.bids().take(n).map(|l| l.qty.0 as i128).sum();
        let ad: i128 = book.asks().take(n).map(|l| l.qty.0 as i128).sum();
        v.bid_depth = saturate(bd);
        v.ask_depth = saturate(ad);
        v.imbalance_ppm = ratio(Some((bd - ad) * 1_000_000), bd + ad);

        // VWAP to fill Q on each side.
        v.vwap_buy = self.vwap(book.asks());
        v.vwap_sell = self.vwap(book.bids());

        // OFI against the previous best bid/ask.
        let e = match (bid, ask) {
            (Some(b), Some(a)) => {
                let e = self.prev_bbo.map_or(0, |(pb, pa)| ofi_event(pb, pa, b, a));
                self.prev_bbo = Some((b, a));
                e
            }
            _ => {
                self.prev_bbo = None;
                0
            }
        };
        self.ofi_total = self.ofi_total.wrapping_add(e);
        self.flow.add(t, [0, 0, e]);
        let [buy, sell, ofi] = self.flow.sum(t);
        v.trade_buy_qty = buy;
        v.trade_sell_qty = sell;
        v.trade_imbalance_ppm = ratio(
            Some((buy as i128 - sell as i128) * 1_000_000),
            buy as i128 + sell as i128,
        );
        v.ofi_window = ofi;
        v.ofi_total = self.ofi_total;

        // Volatility: decay to now, then add the return since the last valid mid.
        if self.vol_time != i64::MIN && t > self.vol_time {
            let h = self.cfg.vol_half_life_ns as f64;
            self.vol_sum *= (-(t.saturating_sub(self.vol_time) as f64) / h).exp2();
        }
        self.vol_time = t;
        if let Some(m) = v.mid.filter(|m| *m > 0) {
            if let Some(pm) = self.last_mid {
                if m != pm {
                    let r = (m as f64 / pm as f64).ln();
                    self.vol_sum += r * r;
                    self.vol_returns += 1;
                }
            }
            self.last_mid = Some(m);
        }
        if self.vol_returns > 0 {
            let h_s = self.cfg.vol_half_life_ns as f64 / 1e9;
            v.volatility_bps = Some((self.vol_sum * std::f64::consts::LN_2 / h_s).sqrt() * 1e4);
        }

        // Update rate.
        self.rate.add(t, [1]);
        let [count] = self.rate.sum(t);
        let window = self.rate.width as i128 * WINDOW_BUCKETS as i128;
        v.updates_per_s_x100 = (count.max(0) as i128 * 100 * 1_000_000_000 / window) as u64;
        v
    }

    fn vwap(&self, levels: impl Iterator<Item = Level>) -> Option<i64> {
        let q = self.vwap_qty as i128;
        let mut remaining = q;
        let mut cost: i128 = 0;
        for l in levels.take(VWAP_MAX_LEVELS) {
            if l.qty.0 <= 0 {
                continue;
            }
            let take = (l.qty.0 as i128).min(remaining);
            cost = cost.checked_add((l.price.0 as i128).checked_mul(take)?)?;
            remaining -= take;
            if remaining == 0 {
                return ratio(cost.checked_mul(self.price_factor as i128), q);
            }
        }
        None
    }
}

#[inline]
fn saturate(x: i128) -> i64 {
    x.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// One OFI term `e_n` from the previous best bid/ask `(pb, pa)` to the new `(b, a)`.
#[inline]
pub fn ofi_event(pb: Level, pa: Level, b: Level, a: Level) -> i64 {
    let mut e: i64 = 0;
    if b.price >= pb.price {
        e = e.saturating_add(b.qty.0);
    }
    if b.price <= pb.price {
        e = e.saturating_sub(pb.qty.0);
    }
    if a.price <= pa.price {
        e = e.saturating_sub(a.qty.0);
    }
    if a.price >= pa.price {
        e = e.saturating_add(pa.qty.0);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Price, Qty, Side};

    fn lvl(price: i64, qty: i64) -> Level {
        Level {
            price: Price(price),
            qty: Qty(qty),
        }
    }

    fn book(bids: &[(i64, i64)], asks: &[(i64, i64)]) -> OrderBook {
        let mut b = OrderBook::default();
        for &(p, q) in bids {
            b.set(Side::Bid, Price(p), Qty(q));
        }
        for &(p, q) in asks {
            b.set(Side::Ask, Price(p), Qty(q));
        }
        b
    }

    fn cents() -> Scale {
        Scale {
            price_decimals: 2,
            size_decimals: 0,
        }
    }

    fn cfg() -> KernelConfig {
        KernelConfig {
            levels: 2,
            vwap_size: Decimal::new(4, 0),
            vol_half_life_ns: 1_000_000_000,
            trade_window_ns: 1_000,
            rate_window_ns: 1_000_000_000,
        }
    }

    /// Bids 100.00×3, 99.99×5, 99.98×10; asks 100.02×1, 100.03×2, 100.05×7.
    fn sample() -> OrderBook {
        book(
            &[(10_000, 3), (9_999, 5), (9_998, 10)],
            &[(10_002, 1), (10_003, 2), (10_005, 7)],
        )
    }

    fn update(k: &mut Kernels, t: i64, b: &OrderBook) -> KernelValues {
        k.update(t, b.best_bid(), b.best_ask(), b)
    }

    #[test]
    fn rounding_is_to_nearest_ties_away_from_zero() {
        for (n, d, want) in [
            (5, 2, 3),
            (-5, 2, -3),
            (4, 3, 1),
            (-4, 3, -1),
            (7, 4, 2),
            (-7, 4, -2),
            (0, 9, 0),
        ] {
            assert_eq!(div_round(n, d), want, "{n}/{d}");
        }
    }

    #[test]
    fn spread_mid_microprice_by_hand() {
        let mut k = Kernels::new(&cfg(), cents());
        let v = update(&mut k, 0, &sample());
        assert_eq!(v.price_decimals, 4);
        // 100.02 − 100.00 = 2 ticks of 0.01.
        assert_eq!(v.spread_ticks, Some(2));
        // 0.02 / 100.01 × 10^4 = 1.9998 bps → ×100 = 199.98 → 200.
        assert_eq!(v.spread_bps_x100, Some(200));
        // (100.00 + 100.02) / 2 = 100.01 → 1_000_100 at 4 decimals, exact.
        assert_eq!(v.mid, Some(1_000_100));
        // (100.00 × 1 + 100.02 × 3) / (3 + 1) = 100.015.
        assert_eq!(v.microprice, Some(1_000_150));
    }

    #[test]
    fn depth_and_imbalance_over_top_n_by_hand() {
        let mut k = Kernels::new(&cfg(), cents());
        let v = update(&mut k, 0, &sample());
        // N = 2: bids 3 + 5, asks 1 + 2.
        assert_eq!((v.bid_depth, v.ask_depth), (8, 3));
        // (8 − 3) / 11 = 0.4545454… → 454_545 ppm.
        assert_eq!(v.imbalance_ppm, Some(454_545));
        let mut k = Kernels::new(&KernelConfig { levels: 3, ..cfg() }, cents());
        let v = update(&mut k, 0, &sample());
        // N = 3: 18 vs 10 → 8 / 28 = 0.2857142… → 285_714.
        assert_eq!(
            (v.bid_depth, v.ask_depth, v.imbalance_ppm),
            (18, 10, Some(285_714))
        );
        let empty = OrderBook::default();
        let v = update(&mut k, 0, &empty);
        assert_eq!((v.bid_depth, v.ask_depth, v.imbalance_ppm), (0, 0, None));
        assert_eq!((v.spread_ticks, v.mid, v.microprice), (None, None, None));
    }

    #[test]
    fn vwap_by_hand() {
        let mut k = Kernels::new(&cfg(), cents());
        let v = update(&mut k, 0, &sample());
        // Buy 4: 1 @ 100.02 + 2 @ 100.03 + 1 @ 100.05 = 400.13 → 100.0325.
        assert_eq!(v.vwap_buy, Some(1_000_325));
        // Sell 4: 3 @ 100.00 + 1 @ 99.99 = 399.99 → 99.9975.
        assert_eq!(v.vwap_sell, Some(999_975));
        // 11 units: the asks hold only 10.
        let big = KernelConfig {
            vwap_size: Decimal::new(11, 0),
            ..cfg()
        };
        let mut k = Kernels::new(&big, cents());
        let v = update(&mut k, 0, &sample());
        assert_eq!(v.vwap_buy, None);
        // Sell 11: 3 @ 100 + 5 @ 99.99 + 3 @ 99.98 = 1099.89 / 11 = 99.9900 exactly.
        assert_eq!(v.vwap_sell, Some(999_900));
        // A size with more decimals than the instrument is rounded up: 1.5 → 2 units;
        // buy 2: 1 @ 100.02 + 1 @ 100.03 = 100.025.
        let frac = KernelConfig {
            vwap_size: Decimal::new(15, 1),
            ..cfg()
        };
        let mut k = Kernels::new(&frac, cents());
        assert_eq!(k.vwap_qty(), 2);
        assert_eq!(update(&mut k, 0, &sample()).vwap_buy, Some(1_000_250));
    }

    #[test]
    fn ofi_by_hand() {
        // Single terms, from (bid 100 × 3, ask 102 × 1).
        let (pb, pa) = (lvl(100, 3), lvl(102, 1));
        // Same prices, bid size 3 → 5: +5 − 3 − 1 + 1 = 2.
        assert_eq!(ofi_event(pb, pa, lvl(100, 5), lvl(102, 1)), 2);
        // Bid up (new level): +2; ask same price, 1 → 4: −4 + 1.
        assert_eq!(ofi_event(lvl(100, 5), pa, lvl(101, 2), lvl(102, 4)), -1);
        // Ask up (liquidity gone): +4 from the old ask.
        assert_eq!(
            ofi_event(lvl(101, 2), lvl(102, 4), lvl(101, 2), lvl(103, 6)),
            4
        );
        // Bid down: −2 from the old bid.
        assert_eq!(
            ofi_event(lvl(101, 2), lvl(103, 6), lvl(100, 9), lvl(103, 6)),
            -2
        );

        // The same sequence through the kernels: the total is 2 − 1 + 4 − 2 = 3.
        let mut k = Kernels::new(&cfg(), cents());
        let steps = [
            (lvl(100, 3), lvl(102, 1)),
            (lvl(100, 5), lvl(102, 1)),
            (lvl(101, 2), lvl(102, 4)),
            (lvl(101, 2), lvl(103, 6)),
            (lvl(100, 9), lvl(103, 6)),
        ];
        let empty = OrderBook::default();
        let mut v = KernelValues::default();
        for (i, (b, a)) in steps.into_iter().enumerate() {
            v = k.update(i as i64 * 100, Some(b), Some(a), &empty);
        }
        assert_eq!((v.ofi_total, v.ofi_window), (3, 3));
        // 1000-ns window of 100-ns buckets: at t = 1200 only t ≥ 300 counts: 4 − 2.
        let v = k.update(1_200, Some(lvl(100, 9)), Some(lvl(103, 6)), &empty);
        assert_eq!((v.ofi_total, v.ofi_window), (3, 2));
        // A missing side starts over: no term across it.
        k.update(1_300, Some(lvl(100, 9)), None, &empty);
        let v = k.update(1_400, Some(lvl(105, 1)), Some(lvl(106, 1)), &empty);
        assert_eq!(v.ofi_total, 3);
    }

    #[test]
    fn trade_flow_imbalance_by_hand() {
        let mut k = Kernels::new(&cfg(), cents());
        let empty = OrderBook::default();
        k.on_trade(100, TradeSide::Buy, Qty(5));
        k.on_trade(550, TradeSide::Sell, Qty(2));
        k.on_trade(600, TradeSide::Unknown, Qty(100));
        k.on_trade(950, TradeSide::Buy, Qty(1));
        // Window 1000 ns at t = 999: every bucket 0..=9. (6 − 2) / 8 = 0.5.
        let v = k.update(999, None, None, &empty);
        assert_eq!((v.trade_buy_qty, v.trade_sell_qty), (6, 2));
        assert_eq!(v.trade_imbalance_ppm, Some(500_000));
        // At t = 1100 (bucket 11) buckets 2..=11 remain: the buy at 100 left.
        let v = k.update(1_100, None, None, &empty);
        assert_eq!((v.trade_buy_qty, v.trade_sell_qty), (1, 2));
        assert_eq!(v.trade_imbalance_ppm, Some(-333_333));
        let v = k.update(2_000, None, None, &empty);
        assert_eq!((v.trade_buy_qty, v.trade_sell_qty), (0, 0));
        assert_eq!(v.trade_imbalance_ppm, None);
        // A late trade counts at the clock (2000), not at its own older time.
        k.on_trade(10, TradeSide::Sell, Qty(3));
        let v = k.update(2_050, None, None, &empty);
        assert_eq!((v.trade_sell_qty, v.time_ns), (3, 2_050));
    }

    #[test]
    fn update_rate_by_hand() {
        let mut k = Kernels::new(&cfg(), cents());
        let empty = OrderBook::default();
        let ms = 1_000_000;
        for t in [0, 50 * ms, 500 * ms] {
            k.update(t, None, None, &empty);
        }
        // Four updates in the 1 s window: 4/s.
        assert_eq!(
            k.update(950 * ms, None, None, &empty).updates_per_s_x100,
            400
        );
        // At 1.05 s the bucket [0, 100 ms) has left: 500, 950, 1050 ms remain.
        assert_eq!(
            k.update(1_050 * ms, None, None, &empty).updates_per_s_x100,
            300
        );
    }

    #[test]
    fn volatility_by_hand() {
        let scale = Scale {
            price_decimals: 0,
            size_decimals: 0,
        };
        let mut k = Kernels::new(&cfg(), scale);
        let s = 1_000_000_000;
        let at = |k: &mut Kernels, t: i64, bid: i64, ask: i64| {
            let b = book(&[(bid, 1)], &[(ask, 1)]);
            update(k, t, &b).volatility_bps.unwrap_or(-1.0)
        };
        assert_eq!(at(&mut k, 0, 99, 101), -1.0, "no return yet");
        // Mid 100 → 110 at 1 s: r = ln 1.1 = 0.0953102, S = r² = 0.00908403;
        // √(S × ln 2 / 1 s) = 0.0793509 → 793.509 bps.
        let v = at(&mut k, s, 109, 111);
        assert!((v - 793.509_296_86).abs() < 1e-6, "{v}");
        // One half-life later, unchanged mid: S halves → 793.509 / √2 = 561.096.
        let v = at(&mut k, 2 * s, 109, 111);
        assert!((v - 561.095_804_75).abs() < 1e-6, "{v}");
        // Back to 100 at 3 s: S = r²/4 + r² = 1.25 r² → 887.170 bps.
        let v = at(&mut k, 3 * s, 99, 101);
        assert!((v - 887.170_364_28).abs() < 1e-6, "{v}");
    }

    #[test]
    fn crossed_books_and_extreme_values_do_not_panic() {
        let mut k = Kernels::new(&cfg(), cents());
        let crossed = book(&[(10_005, 1)], &[(10_000, 1)]);
        let v = update(&mut k, 0, &crossed);
        assert_eq!(v.spread_ticks, Some(-5));
        // −0.05 / 100.025 × 10^4 = −4.99875 bps → −499.875 → −500.
        assert_eq!(v.spread_bps_x100, Some(-500));
        let huge = book(&[(i64::MAX - 1, i64::MAX)], &[(i64::MAX, i64::MAX)]);
        let v = update(&mut k, 1, &huge);
        assert_eq!(v.spread_ticks, Some(1));
        assert_eq!(v.mid, None, "does not fit an i64 at 4 decimals");
        assert_eq!(v.microprice, None);
        assert_eq!(v.vwap_buy, None);
        assert_eq!((v.bid_depth, v.imbalance_ppm), (i64::MAX, Some(0)));
        let neg = book(&[(-10, 1)], &[(-5, 1)]);
        let v = update(&mut k, 2, &neg);
        assert_eq!((v.spread_bps_x100, v.mid), (None, Some(-750)));
        assert_eq!(v.volatility_bps, None, "no log of a negative mid");
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let tiny = KernelConfig {
            trade_window_ns: WINDOW_BUCKETS as i64,
            rate_window_ns: WINDOW_BUCKETS as i64,
            ..cfg()
        };
        let mut k = Kernels::new(&tiny, cents());
        let b = sample();
        // A publication with no event time first (a stale flag), then real times.
        for t in [i64::MIN, i64::MIN, -5, 0, i64::MAX, i64::MIN] {
            k.on_trade(t, TradeSide::Buy, Qty(1));
            let v = update(&mut k, t, &b);
            assert!(v.time_ns >= t.min(0), "the clock never goes back");
        }
        assert_eq!(k.update(i64::MAX, None, None, &b).time_ns, i64::MAX);
    }

    #[test]
    fn price_decimals_are_capped_at_18() {
        for (p, kp, mid) in [(16, 18, 150), (17, 18, 15), (18, 18, 2)] {
            let scale = Scale {
                price_decimals: p,
                size_decimals: 0,
            };
            let mut k = Kernels::new(&cfg(), scale);
            let v = update(&mut k, 0, &book(&[(1, 1)], &[(2, 1)]));
            assert_eq!((v.price_decimals, v.mid), (kp, Some(mid)), "p = {p}");
        }
    }

    #[test]
    fn size_conversion_rounds_up() {
        assert_eq!(size_to_mantissa(Decimal::new(1, 0), 8), 100_000_000);
        assert_eq!(size_to_mantissa(Decimal::new(15, 1), 0), 2);
        assert_eq!(size_to_mantissa(Decimal::new(15, 1), 3), 1_500);
        assert_eq!(size_to_mantissa(Decimal::new(1, 0), 18), pow10(18));
        assert_eq!(size_to_mantissa(Decimal::new(i64::MAX, 0), 18), i64::MAX);
    }

    #[test]
    fn config_validation_names_the_setting() {
        assert_eq!(KernelConfig::default().validate(), Ok(()));
        let bad = [
            KernelConfig { levels: 0, ..cfg() },
            KernelConfig {
                vwap_size: Decimal::new(0, 0),
                ..cfg()
            },
            KernelConfig {
                vol_half_life_ns: 0,
                ..cfg()
            },
            KernelConfig {
                trade_window_ns: 9,
                ..cfg()
            },
            KernelConfig {
                rate_window_ns: -1,
                ..cfg()
            },
        ];
        let msgs: Vec<String> = bad
            .iter()
            .map(|c| c.validate().unwrap_err().to_string())
            .collect();
        assert!(msgs[0].contains("levels must be between 1 and 1000, got 0"));
        assert!(msgs[1].contains("VWAP size must be a positive number"));
        assert!(msgs[2].contains("half-life must be positive"));
        assert!(msgs[3].contains("trade window must be at least 10 ns, got 9"));
        assert!(msgs[4].contains("rate window"));
        // Kernels::new clamps instead of panicking on an unvalidated config.
        let k = Kernels::new(&bad[0], cents());
        assert_eq!(k.config().levels, 1);
    }
}
