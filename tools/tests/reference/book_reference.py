#!/usr/bin/env python3
"""Reference (oracle) L2 order-book rebuilder for recorded exchange captures.

Independent, stdlib-only implementation used by the Hermes Rust tests to check the
engine's final books level by level.  Clarity beats speed: books are dicts of Decimal.

Input FILE (optionally .gz); line format detected per line: plain JSON frame;
"<ns> <json>" (hftbacktest; a JSON with top-level "lastUpdateId" is a Binance REST depth
snapshot for its "symbol" field if any, else the file's single Binance symbol, or --symbol);
"<epoch>: <json>" (cryptofeed format 1: "wss://... <-> ts" connection lines, "wss://... <-
ts: {json}" sent (subscribe) lines and "configuration:" lines skipped, "https://...?symbol=S...
-> ts: {json}" is a REST snapshot for S).

Venue.  A frame with "channel" is Coinbase Advanced Trade ("coinbase").  Else a frame with
"type" and "product_id", or with type subscriptions/heartbeat/error, is the Coinbase Exchange
legacy feed ("coinbase-exchange").  Else "stream"+"data", or a bare payload with "e" or
"u"+"s", is Binance.  Binance venue, per symbol: --venue binance|binance-usdm|binance-coinm,
when given, applies to every Binance symbol of the file.  Without it, a symbol is futures
when at least one of its payloads is a depthUpdate with a "pu" key or has "e":"bookTicker";
a futures symbol containing "_" (BTCUSD_PERP) is "binance-coinm", any other futures symbol
"binance-usdm"; every other symbol is spot ("binance").  A REST snapshot takes its symbol's venue.

Rules.  Coinbase l2_data: snapshot clears the product's book, then levels are set; update
sets level qty; qty 0 deletes.  Coinbase Exchange: "snapshot" clears the product's book, then
sets its bids/asks [price, size]; "l2update" changes [side, price, size] set the level (side
buy = bid, sell = ask; size 0 deletes); l2updates before the product's first snapshot are
ignored (counted on stderr); level2 has no sequence number, so no gap check; match,
last_match, ticker, heartbeat, subscriptions and other types never touch a book ("error" is
reported on stderr).  Binance depthUpdate (spot sync): buffer diffs until a
snapshot (lastUpdateId L); book := snapshot, id := L; drop diffs with u <= L; the first
applied diff needs U <= L+1 <= u, each next U == prev_u + 1; a violation is reported on
stderr and the symbol buffers again until a new snapshot; id := last applied u.  Binance
futures depthUpdate (binance-usdm, binance-coinm): same, except: drop diffs with u < L; the
first applied diff needs U <= L <= u; each next diff needs pu == previous applied u (a
missing pu is a gap).  Binance bookTicker (spot: no "e"; futures: "e":"bookTicker"): latest
(highest u) per symbol; the output BBO comes from it when its u > the depth id (or there is
no depth id), else from the depth book.  bids/asks always come from the depth book.  trade,
aggTrade, markPriceUpdate, forceOrder and other events never touch a book.

Output: one JSON line per (venue, symbol) seen in l2_data/snapshot/l2update/depthUpdate/
bookTicker/REST snapshot, sorted: {"venue","symbol","bid_px","bid_qty","ask_px","ask_qty",
"bids","asks"}, bids/asks = top 10 [px, qty] best first; canonical decimal strings (no
exponent, no trailing zeros, zero is "0"); BBO fields null for an empty side.  --venue/--symbol
filter the output (--symbol also names the symbol of URL-less snapshot lines; a Binance
--venue also sets the Binance venue, see above).  --stats prints frame counts per (venue,
type) and sync failures per Binance symbol on stderr.

Usage: python3 book_reference.py FILE [--venue coinbase|coinbase-exchange|binance|
       binance-usdm|binance-coinm] [--symbol SYM] [--stats]
"""
import argparse
import gzip
import json
import re
import sys
from collections import Counter
from decimal import Decimal

DEPTH = 10
TS_PREFIX = re.compile(r"^[0-9]+(?:\.[0-9]+)?:? (.*)$")           # "<ts> json" / "<ts>: json"
REST_LINE = re.compile(r"^(https?://\S+) -> [0-9.]+: (.*)$")       # cryptofeed REST line
URL_SYMBOL = re.compile(r"[?&]symbol=([A-Za-z0-9_]+)")
SPOT, USDM, COINM = "binance", "binance-usdm", "binance-coinm"
BINANCE_VENUES = (SPOT, USDM, COINM)
VENUES = ("coinbase", "coinbase-exchange") + BINANCE_VENUES
CBX_NO_PRODUCT = ("subscriptions", "heartbeat", "error")   # Exchange types without product_id


def canon(value):
    """Canonical decimal string: no exponent, no trailing zeros, zero is "0"."""
    d = Decimal(value)
    if d == 0:
        return "0"
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def err(msg):
    print(f"book_reference: {msg}", file=sys.stderr)


class Book:
    """One side-pair of price levels: dict Decimal price -> Decimal qty."""

    def __init__(self):
        self.bids, self.asks = {}, {}

    def clear(self):
        self.bids, self.asks = {}, {}

    @staticmethod
    def set_level(side, price, qty):
        px, q = Decimal(price), Decimal(qty)
        if q == 0:
            side.pop(px, None)
        else:
            side[px] = q

    def top(self):
        bids = sorted(self.bids.items(), reverse=True)[:DEPTH]  # best (highest) first
        asks = sorted(self.asks.items())[:DEPTH]                 # best (lowest) first
        return ([[canon(p), canon(q)] for p, q in bids], [[canon(p), canon(q)] for p, q in asks])


class CoinbaseExchangeProduct:
    """Level-2 book of one Coinbase Exchange (legacy feed) product."""

    SIDES = {"buy": "bids", "sell": "asks"}

    def __init__(self, product):
        self.product, self.book = product, Book()
        self.has_snapshot = False
        self.early = 0            # l2updates ignored because no snapshot came before them

    def on_snapshot(self, msg):
        self.book.clear()
        for level in msg.get("bids", []):
            Book.set_level(self.book.bids, level[0], level[1])
        for level in msg.get("asks", []):
            Book.set_level(self.book.asks, level[0], level[1])
        self.has_snapshot = True

    def on_l2update(self, msg):
        if not self.has_snapshot:
            self.early += 1
            return
        for change in msg.get("changes", []):
            side, price, size = change[0], change[1], change[2]
            if side not in self.SIDES:
                err(f"coinbase-exchange {self.product}: unknown side {side!r}; level skipped")
                continue
            Book.set_level(getattr(self.book, self.SIDES[side]), price, size)


class BinanceSymbol:
    """Depth book + sync state + latest bookTicker for one Binance symbol (spot or futures)."""

    def __init__(self, symbol, venue=SPOT):
        self.symbol, self.venue, self.book = symbol, venue, Book()
        self.futures = venue != SPOT
        self.update_id = None     # last applied u (or L right after the snapshot)
        self.state = "buffering"  # buffering | awaiting_first | live
        self.buffer = []          # diffs held while not synced
        self.ticker = None        # latest bookTicker payload (highest u)
        self.failures = 0         # sync failures and gaps

    def on_snapshot(self, snap):
        self.book.clear()
        self.apply_levels(snap.get("bids", []), snap.get("asks", []))
        self.update_id, self.state = int(snap["lastUpdateId"]), "awaiting_first"
        pending, self.buffer = self.buffer, []
        for diff in pending:
            self.on_diff(diff)

    def on_diff(self, diff):
        first, final = int(diff["U"]), int(diff["u"])
        if self.state == "buffering":
            self.buffer.append(diff)
            return
        if self.state == "awaiting_first":
            if self.futures:
                if final < self.update_id:
                    return  # older than the snapshot (futures: drop u < lastUpdateId)
                if not first <= self.update_id <= final:
                    return self.unsync(diff, f"first diff U={first} u={final} does not bracket "
                                             f"snapshot lastUpdateId={self.update_id}")
            else:
                if final <= self.update_id:
                    return  # already contained in the snapshot
                if not first <= self.update_id + 1 <= final:
                    return self.unsync(diff, f"first diff U={first} u={final} does not straddle "
                                             f"snapshot lastUpdateId+1={self.update_id + 1}")
        elif self.futures:
            prev = diff.get("pu")
            if prev is None or int(prev) != self.update_id:
                return self.unsync(diff, f"gap, pu={prev} but previous u={self.update_id}")
        elif first != self.update_id + 1:
            return self.unsync(diff, f"gap, U={first} but previous u={self.update_id}")
        self.apply_levels(diff.get("b", []), diff.get("a", []))
        self.update_id, self.state = final, "live"

    def unsync(self, diff, why):
        err(f"{self.venue} {self.symbol}: {why}; unsynced until next snapshot")
        self.failures += 1
        self.state = "buffering"
        self.buffer.append(diff)

    def apply_levels(self, bids, asks):
        for price, qty in bids:
            Book.set_level(self.book.bids, price, qty)
        for price, qty in asks:
            Book.set_level(self.book.asks, price, qty)

    def on_ticker(self, tick):
        if self.ticker is None or int(tick["u"]) > int(self.ticker["u"]):
            self.ticker = tick


def open_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8")


def parse_line(line):
    """-> ("frame", obj) | ("rest", (url_symbol or None, obj)) | ("skip"|"bad", None)."""
    line = line.strip()
    if not line or line.startswith("configuration:") or line.startswith(("wss://", "ws://")):
        return "skip", None
    url_symbol = None
    rest = REST_LINE.match(line)
    if rest:
        found = URL_SYMBOL.search(rest.group(1))
        url_symbol = found.group(1).upper() if found else None
        text = rest.group(2)
    elif line.startswith("{"):
        text = line
    else:
        prefixed = TS_PREFIX.match(line)
        if not prefixed:
            return "bad", None
        text = prefixed.group(1)
    try:
        obj = json.loads(text)
    except ValueError:
        return "bad", None
    if not isinstance(obj, dict):
        return "bad", None  # counted as not a valid JSON frame
    return ("rest", (url_symbol, obj)) if "lastUpdateId" in obj else ("frame", obj)


def classify(obj):
    """Map a frame to ("coinbase"|"coinbase-exchange", frame) | ("binance", payload) | (None, None)."""
    if "channel" in obj:
        return "coinbase", obj
    if "type" in obj and ("product_id" in obj or obj["type"] in CBX_NO_PRODUCT):
        return "coinbase-exchange", obj
    payload = obj["data"] if "stream" in obj and isinstance(obj.get("data"), dict) else obj
    if "e" in payload or ("u" in payload and "s" in payload):
        return "binance", payload
    return None, None


def is_book_ticker(msg):
    """Spot bookTicker (no "e", has u/b/a) or futures bookTicker ("e":"bookTicker")."""
    if msg.get("e") == "bookTicker":
        return True
    return msg.get("e") is None and all(k in msg for k in ("u", "b", "a"))


def rebuild(lines, venue=None, symbol=None, stats=False):
    """Replay capture lines; return the output JSON lines (diagnostics go to stderr)."""
    # Pass 1: parse every line (snapshot lines may precede the file's first frame).
    records, bad = [], 0
    for line in lines:
        kind, value = parse_line(line)
        if kind == "bad":
            bad += 1
        elif kind != "skip":
            records.append((kind, value))
    if bad:
        err(f"skipped {bad} line(s) that are not valid JSON frames")

    frames = [classify(value) for kind, value in records if kind == "frame"]
    seen = {str(msg["s"]).upper() for v, msg in frames if v == "binance" and "s" in msg}
    file_symbol = symbol.upper() if symbol else (seen.pop() if len(seen) == 1 else None)

    # Binance venue per symbol (see the docstring).
    futures_marks, spot_marks = set(), set()
    for v, msg in frames:
        if v != "binance" or msg.get("e") not in (None, "depthUpdate", "bookTicker"):
            continue
        sym = str(msg.get("s", "")).upper()
        if msg.get("e") == "bookTicker" or (msg.get("e") == "depthUpdate" and "pu" in msg):
            futures_marks.add(sym)
        elif msg.get("e") == "depthUpdate" or is_book_ticker(msg):
            spot_marks.add(sym)
    if venue not in BINANCE_VENUES:
        for sym in sorted(futures_marks & spot_marks):
            err(f"binance {sym}: both spot-style and futures-style frames; treated as futures "
                f"(use --venue to choose)")

    def binance_venue(sym):
        if venue in BINANCE_VENUES:
            return venue
        if sym in futures_marks:
            return COINM if "_" in sym else USDM
        return SPOT

    # Pass 2: replay in file order.
    coinbase, exchange, binance = {}, {}, {}   # product -> Book / CoinbaseExchangeProduct ;
    counts = Counter()                         # symbol -> BinanceSymbol

    def binance_state(sym):
        if sym not in binance:
            binance[sym] = BinanceSymbol(sym, binance_venue(sym))
        return binance[sym]

    for kind, value in records:
        if kind == "rest":
            url_symbol, snap = value
            sym = url_symbol or (str(snap["symbol"]).upper() if snap.get("symbol") else None) \
                or file_symbol
            if sym is None:
                err("REST snapshot without a symbol (several symbols; use --symbol); skipped")
                continue
            counts[(binance_venue(sym), "rest snapshot")] += 1
            binance_state(sym).on_snapshot(snap)
            continue
        v, msg = classify(value)
        if v == "coinbase":
            counts[(v, str(msg.get("channel")))] += 1
            if msg.get("channel") != "l2_data":
                continue
            for event in msg.get("events", []):
                book = coinbase.setdefault(event["product_id"], Book())
                if event.get("type") == "snapshot":
                    book.clear()
                for upd in event.get("updates", []):
                    side = {"bid": book.bids, "offer": book.asks}.get(upd["side"])
                    if side is None:
                        err(f"coinbase: unknown side {upd['side']!r}; level skipped")
                        continue
                    Book.set_level(side, upd["price_level"], upd["new_quantity"])
        elif v == "coinbase-exchange":
            mtype = msg.get("type")
            counts[(v, str(mtype))] += 1
            if mtype in ("snapshot", "l2update"):
                product = msg["product_id"]
                state = exchange.setdefault(product, CoinbaseExchangeProduct(product))
                (state.on_snapshot if mtype == "snapshot" else state.on_l2update)(msg)
            elif mtype == "error":
                err(f"coinbase-exchange: error frame: {json.dumps(msg, separators=(',', ':'))}")
        elif v == "binance":
            sym = str(msg.get("s", "")).upper()
            if msg.get("e") == "depthUpdate":
                counts[(binance_venue(sym), "depthUpdate")] += 1
                binance_state(sym).on_diff(msg)
            elif is_book_ticker(msg):
                counts[(binance_venue(sym), "bookTicker")] += 1
                binance_state(sym).on_ticker(msg)
            else:
                counts[(binance_venue(sym), str(msg.get("e")))] += 1
        else:
            counts[("unknown", "frame")] += 1

    def book_bbo(bids, asks):
        return (bids[0] if bids else [None, None]) + (asks[0] if asks else [None, None])

    out = []
    for product, book in coinbase.items():
        bids, asks = book.top()
        out.append(("coinbase", product, book_bbo(bids, asks), bids, asks))
    for product, state in exchange.items():
        if state.early or not state.has_snapshot:
            err(f"coinbase-exchange {product}: {state.early} l2update(s) before the first "
                f"snapshot ignored" + ("" if state.has_snapshot else "; no snapshot in the file"))
        bids, asks = state.book.top()
        out.append(("coinbase-exchange", product, book_bbo(bids, asks), bids, asks))
    for sym, st in binance.items():
        if st.state != "live" and (st.buffer or st.update_id is not None):
            err(f"{st.venue} {sym}: depth book not synced at end of file (state {st.state}, "
                f"{len(st.buffer)} buffered diff(s))")
        bids, asks = st.book.top()
        tick = st.ticker
        if tick is not None and (st.update_id is None or int(tick["u"]) > st.update_id):
            bbo = [canon(tick["b"]), canon(tick["B"]), canon(tick["a"]), canon(tick["A"])]
        else:
            bbo = book_bbo(bids, asks)
        out.append((st.venue, sym, bbo, bids, asks))

    if stats:
        for (v, mtype), n in sorted(counts.items()):
            err(f"stats: {v} {mtype}: {n}")
        for sym, st in sorted(binance.items()):
            err(f"stats: {st.venue} {sym}: sync failures/gaps {st.failures}, final state {st.state}")

    result = []
    for v, sym, bbo, bids, asks in sorted(out, key=lambda r: (r[0], r[1])):
        if venue and v != venue:
            continue
        if symbol and sym.upper() != symbol.upper():
            continue
        obj = {"venue": v, "symbol": sym, "bid_px": bbo[0], "bid_qty": bbo[1],
               "ask_px": bbo[2], "ask_qty": bbo[3], "bids": bids, "asks": asks}
        result.append(json.dumps(obj, separators=(",", ":")))
    return result


def main():
    ap = argparse.ArgumentParser(description="Reference L2 book rebuilder (oracle).")
    ap.add_argument("file")
    ap.add_argument("--venue", choices=list(VENUES))
    ap.add_argument("--symbol")
    ap.add_argument("--stats", action="store_true",
                    help="print frame counts per (venue, type) and sync failures on stderr")
    args = ap.parse_args()
    with open_text(args.file) as fh:
        lines = rebuild(fh, args.venue, args.symbol, args.stats)
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
