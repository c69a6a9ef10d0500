//! The book thread's state: the [`Market`] model plus the shm writer. Every change the
//! market reports is encoded into the instrument's [`TopOfBook`] (top-of-book, the top
//! [`DEPTH`] levels, the last trade, the derivatives (mark, index, funding, liquidations)
//! and the kernels) and written to its seqlock slot.
//!
//! What is shown (which best bid/ask, flags, kernels) is decided by
//! [`hermes_book::market`]; this module only adds what belongs to the slot: the levels
//! copied from the book, the publication time and the slot's publication count.

use hermes_book::clock::unix_ns;
use hermes_book::kernels::{KernelConfig, KernelValues, Kernels};
use hermes_book::market::{Applied, Instrument, Market, MarketStats};
use hermes_book::{Event, InstId};
use hermes_shm::{layout::DEPTH, ShmWriter, SlotIndex, SlotKernels, TopOfBook};

/// Counters of the publisher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// The market's counters (events, changes, crossed commits).
    pub market: MarketStats,
    /// Slot publications.
    pub publishes: u64,
    /// Instruments that found no free shm slot.
    pub unpublished_instruments: u64,
}

/// The market and what was last published of each instrument.
pub struct Publisher {
    market: Market,
    /// Per instrument: its slot (when the region had room) and its last slot image.
    slots: Vec<(Option<SlotIndex>, TopOfBook)>,
    shm: Option<ShmWriter>,
    publishes: u64,
    unpublished_instruments: u64,
    now_ns: fn() -> i64,
}

impl Publisher {
    /// A publisher writing into `shm` (or nowhere), its instruments computing their
    /// kernels with `kernel_config`.
    pub fn new(shm: Option<ShmWriter>, kernel_config: KernelConfig) -> Publisher {
        Publisher {
            market: Market::new(kernel_config),
            slots: Vec::new(),
            shm,
            publishes: 0,
            unpublished_instruments: 0,
            now_ns: unix_ns,
        }
    }

    /// The market model.
    pub fn market(&self) -> &Market {
        &self.market
    }

    /// The last slot image of an instrument (what the shm slot holds, or would hold
    /// without shm).
    pub fn last(&self, inst: InstId) -> &TopOfBook {
        &self.slots[inst.0 as usize].1
    }

    /// The instruments with their last slot images, in [`InstId`] order.
    pub fn published(&self) -> impl Iterator<Item = (&Instrument, &TopOfBook)> {
        self.market
            .instruments()
            .iter()
            .zip(self.slots.iter().map(|(_, t)| t))
    }

    /// Counters.
    pub fn stats(&self) -> PublishStats {
        PublishStats {
            market: self.market.stats(),
            publishes: self.publishes,
            unpublished_instruments: self.unpublished_instruments,
        }
    }

    /// Refreshes the shm heartbeat.
    pub fn heartbeat(&self) {
        if let Some(w) = &self.shm {
            w.heartbeat();
        }
    }

    /// Applies one event and publishes the instrument's slot when the market reports a
    /// change.
    #[inline]
    pub fn apply(&mut self, ev: &Event) {
        match self.market.apply(ev) {
            Applied::Staged => {}
            Applied::Defined(inst) => self.define(inst),
            Applied::Changed(inst) => self.publish(inst),
        }
    }

    /// Restores an instrument whole from a checkpoint (a mirror loading a SNAP): its
    /// state replaces what the market had of it (or defines it), and its slot is
    /// published.
    pub fn restore(&mut self, cp: hermes_book::checkpoint::Checkpoint) -> InstId {
        let known = self.market.instruments().len();
        let inst = self.market.restore(cp);
        if inst.0 as usize >= known {
            self.define(inst);
        }
        self.publish(inst);
        inst
    }

    fn define(&mut self, inst: InstId) {
        debug_assert_eq!(inst.0 as usize, self.slots.len());
        let i = self.market.instrument(inst);
        let slot = match &mut self.shm {
            Some(w) => match w.add_instrument(
                i.venue,
                &i.symbol,
                i.scale.price_decimals,
                i.scale.size_decimals,
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(
                        venue = i.venue.name(),
                        symbol = i.symbol,
                        "not published to shm: {e}"
                    );
                    self.unpublished_instruments += 1;
                    None
                }
            },
            None => None,
        };
        self.slots.push((slot, TopOfBook::default()));
    }

    /// Encodes the instrument's state into its slot image and writes it to shm.
    fn publish(&mut self, inst: InstId) {
        let now = (self.now_ns)();
        let i = self.market.instrument(inst);
        let (slot, t) = &mut self.slots[inst.0 as usize];
        encode(i, t);
        t.publish_ts_ns = now;
        self.publishes += 1;
        if let (Some(w), &mut Some(slot)) = (&mut self.shm, slot) {
            w.publish(slot, t);
        }
    }
}

/// Writes an instrument's state into a slot image (all but `seq` and
/// `publish_ts_ns`).
#[inline]
pub fn encode(i: &Instrument, t: &mut TopOfBook) {
    let top = &i.top;
    t.update_id = top.update_id;
    t.exch_ts_ns = top.exch_ts_ns;
    t.recv_ts_ns = top.recv_ts_ns;
    t.flags = top.flags;
    (t.bid_px, t.bid_qty, t.ask_px, t.ask_qty) = (top.bid_px, top.bid_qty, top.ask_px, top.ask_qty);
    t.bid_levels = copy_levels(i.book.bids(), &mut t.bids);
    t.ask_levels = copy_levels(i.book.asks(), &mut t.asks);
    t.last_trade_px = top.last_trade_px;
    t.last_trade_qty = top.last_trade_qty;
    t.last_trade_ts_ns = top.last_trade_ts_ns;
    t.last_trade_side = top.last_trade_side as u8;
    t.trades = top.trades;
    t.mark_px = top.mark_px;
    t.index_px = top.index_px;
    t.funding_rate = top.funding_rate;
    t.next_funding_ns = top.next_funding_ns;
    t.derivs_ts_ns = top.derivs_ts_ns;
    t.liquidations = top.liquidations;
    t.updates = top.updates;
    t.kernels = slot_kernels(&top.kernels, i.kernels());
}

#[inline]
fn copy_levels(
    levels: impl Iterator<Item = hermes_book::Level>,
    out: &mut [(i64, i64); DEPTH],
) -> u32 {
    let mut n = 0;
    for l in levels.take(DEPTH) {
        out[n] = (l.price.0, l.qty.0);
        n += 1;
    }
    out[n..].fill((0, 0));
    n as u32
}

/// The slot form of one computation of `kernels`.
#[inline]
pub fn slot_kernels(v: &KernelValues, kernels: &Kernels) -> SlotKernels {
    let cfg = kernels.config();
    SlotKernels {
        time_ns: v.time_ns,
        price_decimals: v.price_decimals,
        spread_ticks: v.spread_ticks,
        spread_bps_x100: v.spread_bps_x100,
        mid_px: v.mid,
        microprice_px: v.microprice,
        bid_depth: v.bid_depth,
        ask_depth: v.ask_depth,
        imbalance_ppm: v.imbalance_ppm,
        vwap_buy_px: v.vwap_buy,
        vwap_sell_px: v.vwap_sell,
        volatility_bps: v.volatility_bps,
        trade_buy_qty: v.trade_buy_qty,
        trade_sell_qty: v.trade_sell_qty,
        trade_imbalance_ppm: v.trade_imbalance_ppm,
        ofi_window: v.ofi_window,
        ofi_total: v.ofi_total,
        updates_per_s_x100: v.updates_per_s_x100,
        levels: cfg.levels as u32,
        vwap_qty: kernels.vwap_qty(),
        vol_half_life_ns: cfg.vol_half_life_ns,
        trade_window_ns: cfg.trade_window_ns,
        rate_window_ns: cfg.rate_window_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_book::event::Symbol;
    use hermes_book::{Price, Qty, Scale, TradeSide, Venue};
    use hermes_shm::FLAG_HAS_DERIVS;

    #[test]
    fn derivs_and_liquidations_reach_the_slot_image() {
        let mut p = Publisher::new(None, KernelConfig::default());
        let inst = InstId(0);
        p.apply(&Event::Define {
            inst,
            venue: Venue::BinanceUsdm,
            symbol: Symbol::new(b"BTCUSDT").unwrap(),
            scale: Scale {
                price_decimals: 2,
                size_decimals: 3,
            },
        });
        assert_eq!(p.last(inst).flags & FLAG_HAS_DERIVS, 0);
        p.apply(&Event::Derivs {
            inst,
            mark_px: 6_185_012_000_000,
            index_px: 6_184_990_050_000,
            funding_rate: -37_500,
            next_funding_ns: 1_723_104_000_000_000_000,
            ts_ns: 1_723_100_000_123_000_000,
        });
        p.apply(&Event::Liquidation {
            inst,
            side: TradeSide::Sell,
            price: Price(6_180_000),
            qty: Qty(5),
            ts_ns: 1_723_100_000_200_000_000,
        });
        let t = p.last(inst);
        assert_ne!(t.flags & FLAG_HAS_DERIVS, 0);
        assert_eq!(
            (
                t.mark_px,
                t.index_px,
                t.funding_rate,
                t.next_funding_ns,
                t.derivs_ts_ns,
                t.liquidations
            ),
            (
                6_185_012_000_000,
                6_184_990_050_000,
                -37_500,
                1_723_104_000_000_000_000,
                1_723_100_000_123_000_000,
                1
            )
        );
    }
}
