#!/usr/bin/env python3
"""Read the Hermes shared-memory region from Python (stdlib only).

Mirrors ``shm/LAYOUT.md`` (layout version 3), which is authoritative; the Rust definition is
``shm/src/layout.rs`` and the C header ``shm/include/hermes_shm.h``.

Library use::

    from hermes_shm import HermesShm
    with HermesShm("/dev/shm/hermes") as shm:
        for inst in shm.instruments():
            tob = shm.read(inst.slot)
            print(inst.symbol, format_decimal(tob.bid_px, inst.price_decimals))
            k = tob.kernels  # analytics: spread, mid, microprice, imbalance, VWAP, ...
            if k.mid_px is not None:
                print("  mid", format_decimal(k.mid_px, k.price_decimals))
            d = tob.derivs  # perpetuals and futures: mark, index, funding (else None)
            if d is not None:
                print("  mark", format_decimal(d.mark_px, DERIV_DECIMALS))

Command line: ``python3 hermes_shm.py PATH`` prints one JSON object per line per instrument,
in slot order, byte-identical to ``hermes shm dump PATH --json``::

    {"venue":"binance","symbol":"BTCUSDT","bid_px":"61837.63","bid_qty":"1.5",...}

Exit status 0, or 2 with a message on stderr when the file cannot be read.

Memory ordering: Python has no atomics or fences. The seqlock reader below relies on
x86-64's total store order (loads are not reordered with other loads, so reading ``seq``,
then the words, then ``seq`` again behaves like the acquire load / acquire fence of the C
and Rust readers) and on ``struct.unpack_from`` over an ``mmap`` reading each aligned word
with a single 8-byte load (CPython uses its native ``memcpy`` unpackers for ``<`` formats on
little-endian hosts). On weakly ordered CPUs (AArch64) use the C or Rust reader instead.
"""

import json
import mmap
import os
import struct
import sys
import time
from typing import List, NamedTuple, Optional, Tuple

MAGIC = b"HERMESHM"
VERSION = 3
HEADER_SIZE = 4096
DIR_ENTRY_SIZE = 64
SLOT_SIZE = 1024
SLOT_WORDS = 128
DEPTH = 10
MAX_SYMBOL_LEN = 48

# Header byte offsets.
HDR_MAGIC = 0
HDR_VERSION = 8
HDR_HEADER_SIZE = 12
HDR_SLOT_SIZE = 16
HDR_SLOT_COUNT = 20
HDR_DIR_OFFSET = 24
HDR_SLOTS_OFFSET = 32
HDR_WRITER_PID = 40
HDR_FLAGS = 44  # atomic
HDR_GENERATION = 48
HDR_HEARTBEAT_NS = 56  # atomic
HDR_INSTRUMENT_COUNT = 64  # atomic
HDR_DEPTH = 68
HDR_CREATED_NS = 72

HDR_FLAG_CLOSED = 1

# Directory entry byte offsets.
DIR_VENUE = 0
DIR_PRICE_DECIMALS = 1
DIR_SIZE_DECIMALS = 2
DIR_SYMBOL_LEN = 3
DIR_SLOT_INDEX = 4
DIR_SYMBOL = 8

VENUES = {
    1: "coinbase",
    2: "binance",
    3: "webhook",
    4: "binance-usdm",
    5: "binance-coinm",  # sizes in contracts
    6: "coinbase-exchange",
}

# Slot word indices.
SLOT_SEQ = 0
SLOT_UPDATE_ID = 1
SLOT_EXCH_TS_NS = 2
SLOT_RECV_TS_NS = 3
SLOT_PUBLISH_TS_NS = 4
SLOT_UPDATES = 5
SLOT_FLAGS = 6
SLOT_LEVEL_COUNTS = 7
SLOT_BID_PX = 8
SLOT_BID_QTY = 9
SLOT_ASK_PX = 10
SLOT_ASK_QTY = 11
SLOT_BIDS = 12
SLOT_ASKS = SLOT_BIDS + 2 * DEPTH
SLOT_LAST_TRADE_PX = SLOT_ASKS + 2 * DEPTH
SLOT_LAST_TRADE_QTY = SLOT_LAST_TRADE_PX + 1
SLOT_LAST_TRADE_TS_NS = SLOT_LAST_TRADE_PX + 2
SLOT_LAST_TRADE_SIDE = SLOT_LAST_TRADE_PX + 3
SLOT_TRADES = SLOT_LAST_TRADE_PX + 4
# Derivatives (layout version 3): valid only with FLAG_HAS_DERIVS in SLOT_FLAGS (0
# otherwise). Prices and the rate are mantissas at DERIV_DECIMALS, not the price decimals.
SLOT_MARK_PX = SLOT_TRADES + 1
SLOT_INDEX_PX = SLOT_TRADES + 2  # 0 when the venue gives none
SLOT_FUNDING_RATE = SLOT_TRADES + 3  # per funding interval, signed
SLOT_NEXT_FUNDING_NS = SLOT_TRADES + 4  # Unix ns; 0 when the venue gives none
SLOT_DERIVS_TS_NS = SLOT_TRADES + 5  # exchange time of the last mark price update
SLOT_LIQUIDATIONS = SLOT_TRADES + 6  # u64: forced liquidations seen (whatever the flag)
SLOT_RESERVED = SLOT_TRADES + 7  # reserved word 63
DERIV_DECIMALS = 8
# Analytics kernels (since layout version 2). Option kernels are valid only when their bit is
# set in SLOT_KERNEL_FLAGS (KVALID_*).
SLOT_KERNEL_FLAGS = 64
SLOT_KERNEL_TS_NS = 65
SLOT_SPREAD_TICKS = 66
SLOT_SPREAD_BPS_X100 = 67
SLOT_MID_PX = 68
SLOT_MICROPRICE_PX = 69
SLOT_BID_DEPTH = 70
SLOT_ASK_DEPTH = 71
SLOT_IMBALANCE_PPM = 72
SLOT_VWAP_BUY_PX = 73
SLOT_VWAP_SELL_PX = 74
SLOT_VOLATILITY_BPS = 75  # f64 bits
SLOT_TRADE_BUY_QTY = 76
SLOT_TRADE_SELL_QTY = 77
SLOT_TRADE_IMBALANCE_PPM = 78
SLOT_OFI_WINDOW = 79
SLOT_OFI_TOTAL = 80
SLOT_UPDATES_PER_S_X100 = 81
SLOT_KERNEL_PRICE_DECIMALS = 82
SLOT_KERNEL_LEVELS = 83
SLOT_VWAP_QTY = 84
SLOT_VOL_HALF_LIFE_NS = 85
SLOT_TRADE_WINDOW_NS = 86
SLOT_RATE_WINDOW_NS = 87
SLOT_DATA_END = 88  # a read copies words 1..SLOT_DATA_END-1; the rest is reserved
assert (SLOT_ASKS, SLOT_LAST_TRADE_PX, SLOT_MARK_PX, SLOT_RESERVED) == (32, 52, 57, 63)
assert SLOT_RESERVED < SLOT_KERNEL_FLAGS

# Bits of SLOT_KERNEL_FLAGS.
KVALID_SPREAD_TICKS = 1 << 0
KVALID_SPREAD_BPS = 1 << 1
KVALID_MID = 1 << 2
KVALID_MICROPRICE = 1 << 3
KVALID_IMBALANCE = 1 << 4
KVALID_VWAP_BUY = 1 << 5
KVALID_VWAP_SELL = 1 << 6
KVALID_VOLATILITY = 1 << 7
KVALID_TRADE_IMBALANCE = 1 << 8

# Slot flag bits.
FLAG_STALE = 1 << 0
FLAG_CROSSED = 1 << 1
FLAG_HAS_BID = 1 << 2
FLAG_HAS_ASK = 1 << 3
FLAG_BBO_FROM_TICKER = 1 << 4
FLAG_HAS_DERIVS = 1 << 5

# One aligned little-endian word; '<' formats use CPython's native memcpy unpackers on
# little-endian hosts, i.e. one 8-byte load per word.
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
# Words 1..87 (update_id .. rate_window_ns): unsigned where LAYOUT.md says u64, signed
# for i64; the reserved word 63 and the f64 volatility (converted in _decode) as u64.
_PAYLOAD = struct.Struct(
    "<QqqqQQQ" + "q" * 4 + "q" * (4 * DEPTH) + "qqqQQ"  # words 1-56
    + "qqqqqQ"  # 57-62, derivatives
    + "Q" * (SLOT_KERNEL_FLAGS - SLOT_RESERVED)  # 63, reserved
    + "Qq" + "q" * 9 + "Q" + "q" * 5 + "QQQ" + "q" * 4  # 64-87, kernels
)
assert _PAYLOAD.size == 8 * (SLOT_DATA_END - 1)
_F64 = struct.Struct("<d")
# The static part of the header (magic .. writer_pid), written once before publication.
_HEADER = struct.Struct("<8sIIIIQQI")
_DIR = struct.Struct("<BBBBI48s")


class ShmError(Exception):
    """The file cannot be used; the message says why and what to do."""


class Instrument(NamedTuple):
    """A directory entry."""

    venue: str  # a VENUES name: coinbase, binance, webhook, binance-usdm, ...
    symbol: str
    price_decimals: int
    size_decimals: int
    slot: int


class Kernels(NamedTuple):
    """The analytics kernels of a slot (see LAYOUT.md and the hermes-book ``kernels`` docs).
    Sizes are mantissas at the instrument's size decimals; ``mid_px``, ``microprice_px``
    and ``vwap_*_px`` are mantissas at ``price_decimals`` (the instrument's price decimals
    + 2, at most 18); ratios are parts per million. ``None``: no valid value."""

    time_ns: int  # kernel clock (event time), Unix ns
    price_decimals: int
    spread_ticks: Optional[int]  # ask - bid, price mantissa
    spread_bps_x100: Optional[int]  # basis points x 100
    mid_px: Optional[int]
    microprice_px: Optional[int]
    bid_depth: int  # size of the top `levels` bid levels
    ask_depth: int
    imbalance_ppm: Optional[int]
    vwap_buy_px: Optional[int]  # average price to buy vwap_qty
    vwap_sell_px: Optional[int]
    volatility_bps: Optional[float]  # EWMA mid volatility over 1 s (the one float)
    trade_buy_qty: int  # aggressive buys in the trade window
    trade_sell_qty: int
    trade_imbalance_ppm: Optional[int]
    ofi_window: int  # order-flow imbalance over the trade window
    ofi_total: int  # since the writer started (wrapping i64)
    updates_per_s_x100: int
    levels: int  # N
    vwap_qty: int
    vol_half_life_ns: int
    trade_window_ns: int
    rate_window_ns: int


class Derivs(NamedTuple):
    """Mark, index and funding of a perpetual or future (LAYOUT.md, "Derivatives"). Prices
    and the rate are mantissas at DERIV_DECIMALS (8): ``funding_rate == 10000`` is 0.0001
    per funding interval (0.01 %), positive when longs pay shorts."""

    mark_px: int
    index_px: int  # 0 when the venue gives none
    funding_rate: int  # signed
    next_funding_ns: int  # Unix ns; 0 when the venue gives none
    ts_ns: int  # exchange time of the last mark price update


class TopOfBook(NamedTuple):
    """A consistent copy of one slot. Prices and sizes are integer mantissas at the
    instrument's decimals; times are Unix nanoseconds."""

    seq: int  # seqlock sequence of the copy: even, +2 per publication, 0 = never written
    update_id: int
    exch_ts_ns: int
    recv_ts_ns: int
    publish_ts_ns: int
    updates: int
    flags: int
    bid_levels: int
    ask_levels: int
    bid_px: int
    bid_qty: int
    ask_px: int
    ask_qty: int
    bids: Tuple[Tuple[int, int], ...]  # all DEPTH pairs; the first bid_levels are valid
    asks: Tuple[Tuple[int, int], ...]
    last_trade_px: int
    last_trade_qty: int
    last_trade_ts_ns: int
    last_trade_side: int
    trades: int
    # The derivatives words, as stored (meaningful only with FLAG_HAS_DERIVS: see `derivs`).
    mark_px: int
    index_px: int
    funding_rate: int
    next_funding_ns: int
    derivs_ts_ns: int
    liquidations: int  # forced liquidations seen
    kernels: Kernels

    @property
    def stale(self) -> bool:
        return bool(self.flags & FLAG_STALE)

    @property
    def has_bid(self) -> bool:
        return bool(self.flags & FLAG_HAS_BID)

    @property
    def has_ask(self) -> bool:
        return bool(self.flags & FLAG_HAS_ASK)

    @property
    def has_derivs(self) -> bool:
        return bool(self.flags & FLAG_HAS_DERIVS)

    @property
    def derivs(self) -> Optional[Derivs]:
        """Mark, index and funding, or None when the slot has none (not a derivative, or
        no mark price update yet)."""
        if not self.has_derivs:
            return None
        return Derivs(self.mark_px, self.index_px, self.funding_rate, self.next_funding_ns, self.derivs_ts_ns)

    def bid_levels_valid(self) -> Tuple[Tuple[int, int], ...]:
        return self.bids[: min(self.bid_levels, DEPTH)]

    def ask_levels_valid(self) -> Tuple[Tuple[int, int], ...]:
        return self.asks[: min(self.ask_levels, DEPTH)]


def _decode(seq: int, w: tuple) -> TopOfBook:
    """Builds a TopOfBook from the unpacked payload words (w[i] is slot word i+1)."""
    level_counts = w[SLOT_LEVEL_COUNTS - 1]
    b, a = SLOT_BIDS - 1, SLOT_ASKS - 1
    return TopOfBook(
        seq=seq,
        update_id=w[SLOT_UPDATE_ID - 1],
        exch_ts_ns=w[SLOT_EXCH_TS_NS - 1],
        recv_ts_ns=w[SLOT_RECV_TS_NS - 1],
        publish_ts_ns=w[SLOT_PUBLISH_TS_NS - 1],
        updates=w[SLOT_UPDATES - 1],
        flags=w[SLOT_FLAGS - 1],
        bid_levels=level_counts & 0xFFFFFFFF,
        ask_levels=level_counts >> 32,
        bid_px=w[SLOT_BID_PX - 1],
        bid_qty=w[SLOT_BID_QTY - 1],
        ask_px=w[SLOT_ASK_PX - 1],
        ask_qty=w[SLOT_ASK_QTY - 1],
        bids=tuple((w[b + 2 * i], w[b + 2 * i + 1]) for i in range(DEPTH)),
        asks=tuple((w[a + 2 * i], w[a + 2 * i + 1]) for i in range(DEPTH)),
        last_trade_px=w[SLOT_LAST_TRADE_PX - 1],
        last_trade_qty=w[SLOT_LAST_TRADE_QTY - 1],
        last_trade_ts_ns=w[SLOT_LAST_TRADE_TS_NS - 1],
        last_trade_side=w[SLOT_LAST_TRADE_SIDE - 1],
        trades=w[SLOT_TRADES - 1],
        mark_px=w[SLOT_MARK_PX - 1],
        index_px=w[SLOT_INDEX_PX - 1],
        funding_rate=w[SLOT_FUNDING_RATE - 1],
        next_funding_ns=w[SLOT_NEXT_FUNDING_NS - 1],
        derivs_ts_ns=w[SLOT_DERIVS_TS_NS - 1],
        liquidations=w[SLOT_LIQUIDATIONS - 1],
        kernels=_decode_kernels(w),
    )


def _decode_kernels(w: tuple) -> Kernels:
    valid = w[SLOT_KERNEL_FLAGS - 1]

    def opt(word: int, bit: int) -> Optional[int]:
        return w[word - 1] if valid & bit else None

    vol = None
    if valid & KVALID_VOLATILITY:
        vol = _F64.unpack(_U64.pack(w[SLOT_VOLATILITY_BPS - 1]))[0]
    return Kernels(
        time_ns=w[SLOT_KERNEL_TS_NS - 1],
        price_decimals=min(w[SLOT_KERNEL_PRICE_DECIMALS - 1], 255),
        spread_ticks=opt(SLOT_SPREAD_TICKS, KVALID_SPREAD_TICKS),
        spread_bps_x100=opt(SLOT_SPREAD_BPS_X100, KVALID_SPREAD_BPS),
        mid_px=opt(SLOT_MID_PX, KVALID_MID),
        microprice_px=opt(SLOT_MICROPRICE_PX, KVALID_MICROPRICE),
        bid_depth=w[SLOT_BID_DEPTH - 1],
        ask_depth=w[SLOT_ASK_DEPTH - 1],
        imbalance_ppm=opt(SLOT_IMBALANCE_PPM, KVALID_IMBALANCE),
        vwap_buy_px=opt(SLOT_VWAP_BUY_PX, KVALID_VWAP_BUY),
        vwap_sell_px=opt(SLOT_VWAP_SELL_PX, KVALID_VWAP_SELL),
        volatility_bps=vol,
        trade_buy_qty=w[SLOT_TRADE_BUY_QTY - 1],
        trade_sell_qty=w[SLOT_TRADE_SELL_QTY - 1],
        trade_imbalance_ppm=opt(SLOT_TRADE_IMBALANCE_PPM, KVALID_TRADE_IMBALANCE),
        ofi_window=w[SLOT_OFI_WINDOW - 1],
        ofi_total=w[SLOT_OFI_TOTAL - 1],
        updates_per_s_x100=w[SLOT_UPDATES_PER_S_X100 - 1],
        levels=min(w[SLOT_KERNEL_LEVELS - 1], 0xFFFFFFFF),
        vwap_qty=w[SLOT_VWAP_QTY - 1],
        vol_half_life_ns=w[SLOT_VOL_HALF_LIFE_NS - 1],
        trade_window_ns=w[SLOT_TRADE_WINDOW_NS - 1],
        rate_window_ns=w[SLOT_RATE_WINDOW_NS - 1],
    )


def format_decimal(mantissa: int, decimals: int) -> str:
    """Canonical decimal text of ``mantissa × 10**-decimals``: no exponent, no trailing
    zeros after the point, no trailing '.', zero is "0", '-' for negatives.
    ``format_decimal(6183763000000, 8) == "61837.63"``."""
    digits = str(abs(mantissa))
    if decimals > 0:
        digits = digits.rjust(decimals + 1, "0")
        whole, frac = digits[:-decimals], digits[-decimals:].rstrip("0")
        digits = whole + "." + frac if frac else whole
    return "-" + digits if mantissa < 0 else digits


_yield = getattr(os, "sched_yield", lambda: time.sleep(0))

# Writer states, as the Rust `WriterStatus`.
ALIVE, CLOSED, DEAD, STALLED, REPLACED = "alive", "closed", "dead", "stalled", "replaced"


class HermesShm:
    """A read-only mapping of a Hermes shm region.

    Opening checks the magic, the layout version (only version 3 is understood; others are
    refused) and that the file is as long as its header says. Nothing may truncate the file
    while it is mapped (reading a lost page kills the process with SIGBUS); Hermes writers
    never do, a restart renames a new file into place.
    """

    def __init__(self, path: str):
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise ShmError(f"{path}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if st.st_size < HEADER_SIZE:
                head = os.pread(fd, len(MAGIC), 0)
                if head != MAGIC:
                    raise ShmError(f"{path}: not a Hermes shm file (bad magic); is the path right?")
                raise ShmError(
                    f"{path}: file is {st.st_size} bytes but its header needs {HEADER_SIZE}; "
                    "the writer may be starting or the file is damaged"
                )
            self._map = mmap.mmap(fd, st.st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except OSError as e:
            raise ShmError(f"{path}: {e.strerror or e}") from None
        finally:
            os.close(fd)  # the mapping keeps the file referenced
        self._ident = (st.st_dev, st.st_ino)
        try:
            self._check(st.st_size)
        except ShmError:
            self._map.close()
            raise

    def _check(self, size: int) -> None:
        # The static header fields are written once, before the file is renamed into place.
        magic, version, header_size, slot_size, slot_count, dir_offset, slots_offset, pid = (
            _HEADER.unpack_from(self._map, 0)
        )
        if magic != MAGIC:
            raise ShmError(f"{self.path}: not a Hermes shm file (bad magic); is the path right?")
        if version != VERSION:
            hint = (
                "the file was written by an older hermes: restart the engine with this build"
                if version < VERSION
                else "the file was written by a newer hermes: read it with that build's readers"
            )
            raise ShmError(
                f"{self.path}: shm layout version {version}, this reader understands version "
                f"{VERSION}; use a matching hermes build ({hint})"
            )
        depth = _U32.unpack_from(self._map, HDR_DEPTH)[0]
        if (header_size, slot_size, dir_offset, depth) != (HEADER_SIZE, SLOT_SIZE, HEADER_SIZE, DEPTH) or (
            slots_offset != HEADER_SIZE + DIR_ENTRY_SIZE * slot_count
        ):
            raise ShmError(f"{self.path}: the header's sizes or offsets do not match layout version {VERSION}")
        need = slots_offset + SLOT_SIZE * slot_count
        if size < need:
            raise ShmError(
                f"{self.path}: file is {size} bytes but its header needs {need}; "
                "the writer may be starting or the file is damaged"
            )
        self.slot_count = slot_count
        self.slots_offset = slots_offset
        self.writer_pid = pid
        self.generation = _U64.unpack_from(self._map, HDR_GENERATION)[0]
        self.created_ns = _U64.unpack_from(self._map, HDR_CREATED_NS)[0]

    def close(self) -> None:
        if not self._map.closed:
            self._map.close()

    def __enter__(self) -> "HermesShm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- directory ------------------------------------------------------------------------

    def instrument_count(self) -> int:
        """Published directory entries. The writer stores the count (release) after writing
        the entry; this load, ordered before the entry loads by TSO, plays the acquire."""
        return min(_U32.unpack_from(self._map, HDR_INSTRUMENT_COUNT)[0], self.slot_count)

    def instruments(self) -> List[Instrument]:
        """The published instruments in directory (= slot) order. Entries the Rust reader
        would skip (unknown venue code, slot outside the file) are skipped too."""
        out = []
        for i in range(self.instrument_count()):
            venue, pdec, sdec, slen, slot, sym = _DIR.unpack_from(self._map, HEADER_SIZE + i * DIR_ENTRY_SIZE)
            name = VENUES.get(venue)
            if name is None or slot >= self.slot_count:
                continue
            symbol = sym[: min(slen, MAX_SYMBOL_LEN)].decode("utf-8", errors="replace")
            out.append(Instrument(name, symbol, pdec, sdec, slot))
        return out

    def find(self, venue: str, symbol: str) -> Optional[Instrument]:
        for inst in self.instruments():
            if inst.venue == venue and inst.symbol == symbol:
                return inst
        return None

    # -- seqlock reader -------------------------------------------------------------------

    def _slot_offset(self, slot: int) -> int:
        if not 0 <= slot < self.slot_count:
            raise IndexError(f"slot {slot} out of range (the file has {self.slot_count})")
        return self.slots_offset + slot * SLOT_SIZE

    def seq(self, slot: int) -> int:
        """The slot's sequence (odd while the writer is inside it)."""
        return _U64.unpack_from(self._map, self._slot_offset(slot))[0]

    def try_read(self, slot: int) -> Optional[TopOfBook]:
        """One attempt at a consistent copy; None if the writer was inside the slot or
        published during the copy."""
        off = self._slot_offset(slot)
        m = self._map
        # s1: plays the reader's acquire load (pairs with the writer's release store of the
        # even sequence); under TSO the loads below cannot move above it.
        s1 = _U64.unpack_from(m, off)[0]
        if s1 & 1:
            return None
        words = _PAYLOAD.unpack_from(m, off + 8)
        # s2: under TSO loaded after the words (plays the acquire fence + relaxed load; the
        # writer's odd store precedes its word stores, so a word of a newer publication
        # implies s2 != s1).
        s2 = _U64.unpack_from(m, off)[0]
        if s1 != s2:
            return None
        return _decode(s1, words)

    def read(self, slot: int, timeout: float = 1.0) -> TopOfBook:
        """A consistent copy, retrying while the writer is inside the slot. A publication
        takes well under a microsecond, so retrying for `timeout` seconds only fails when the
        writer died mid-update; that raises ShmError rather than spinning forever."""
        deadline = None
        while True:
            for _ in range(64):
                tob = self.try_read(slot)
                if tob is not None:
                    return tob
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now > deadline:
                raise ShmError(
                    f"{self.path}: slot {slot} stayed mid-update for {timeout} s; "
                    "the writer may have died while publishing"
                )
            _yield()  # let a preempted writer run

    # -- writer liveness ------------------------------------------------------------------

    def closed(self) -> bool:
        """The writer exited cleanly (it sets the flag with release as its last act; reads
        after seeing it return its final publications)."""
        return bool(_U32.unpack_from(self._map, HDR_FLAGS)[0] & HDR_FLAG_CLOSED)

    def heartbeat_ns(self) -> int:
        """The writer's last heartbeat, Unix ns (a standalone timestamp)."""
        return _U64.unpack_from(self._map, HDR_HEARTBEAT_NS)[0]

    def heartbeat_age(self) -> float:
        """Seconds since the last heartbeat (0 if the clock went backwards)."""
        return max(0, time.time_ns() - self.heartbeat_ns()) / 1e9

    def replaced(self) -> bool:
        """A different file is now at the path (a new writer renamed its file into place)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False  # as the Rust reader: unknown, not replaced
        return (st.st_dev, st.st_ino) != self._ident

    def pid_alive(self) -> bool:
        pid = self.writer_pid
        if pid <= 0:
            return False  # kill(0 or -1) would probe a group, not a process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # exists, owned by someone else
        return True

    def writer_status(self, max_age: float = 0.5) -> str:
        """One of ALIVE, CLOSED, DEAD, STALLED (heartbeat older than `max_age` seconds) or
        REPLACED, checked in the order of the Rust reader."""
        if self.replaced():
            return REPLACED
        if self.closed():
            return CLOSED
        if not self.pid_alive():
            return DEAD
        if self.heartbeat_age() > max_age:
            return STALLED
        return ALIVE


def _side(present: bool, px: int, qty: int, inst: Instrument):
    if not present:
        return None, None
    return format_decimal(px, inst.price_decimals), format_decimal(qty, inst.size_decimals)


def dump_line(inst: Instrument, tob: TopOfBook) -> str:
    """The JSON line of ``hermes shm dump --json`` for one instrument."""
    p, s = inst.price_decimals, inst.size_decimals
    bid_px, bid_qty = _side(tob.has_bid, tob.bid_px, tob.bid_qty, inst)
    ask_px, ask_qty = _side(tob.has_ask, tob.ask_px, tob.ask_qty, inst)
    obj = {
        "venue": inst.venue,
        "symbol": inst.symbol,
        "bid_px": bid_px,
        "bid_qty": bid_qty,
        "ask_px": ask_px,
        "ask_qty": ask_qty,
        "bids": [[format_decimal(px, p), format_decimal(q, s)] for px, q in tob.bid_levels_valid()],
        "asks": [[format_decimal(px, p), format_decimal(q, s)] for px, q in tob.ask_levels_valid()],
        "seq": tob.update_id,
        "updates": tob.updates,
        "stale": tob.stale,
    }
    d = tob.derivs
    if d is not None:
        obj["derivs"] = {
            "mark_px": format_decimal(d.mark_px, DERIV_DECIMALS),
            "index_px": format_decimal(d.index_px, DERIV_DECIMALS),
            "funding_rate": format_decimal(d.funding_rate, DERIV_DECIMALS),
            "next_funding_ns": d.next_funding_ns,
            "ts_ns": d.ts_ns,
        }
    if tob.liquidations > 0:
        obj["liquidations"] = tob.liquidations
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def main(argv: List[str]) -> int:
    prog = "hermes_shm.py"
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(f"usage: {prog} PATH", file=sys.stderr)
        return 2
    try:
        with HermesShm(argv[1]) as shm:
            lines = [dump_line(inst, shm.read(inst.slot)) for inst in shm.instruments()]
    except ShmError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
