#!/usr/bin/env python3
"""Reference (oracle) L2 order-book rebuilder for recorded exchange captures.

Independent, stdlib-only implementation used by the Hermes Rust tests to check the
engine's final books level by level.  Clarity beats speed: books are dicts of Decimal.

Input FILE (optionally .gz); line format detected per line: plain JSON frame;
"<ns> <json>" (hftbacktest; a JSON with top-level "lastUpdateId" is a Binance REST depth
snapshot for the file's single Binance symbol, or --symbol); "<epoch>: <json>" (cryptofeed
format 1: "wss://... <-> ts" and "configuration:" lines skipped, "https://...?symbol=S...
-> ts: {json}" is a REST snapshot for S).  A frame with "channel" is Coinbase Advanced
Trade; "stream"+"data", or a bare payload with "e" or "u"+"s", is Binance.

Rules.  Coinbase l2_data: snapshot clears the product's book, then levels are set; update
sets level qty; qty 0 deletes.  Binance depthUpdate (spot sync): buffer diffs until a
snapshot (lastUpdateId L); book := snapshot, id := L; drop diffs with u <= L; the first
applied diff needs U <= L+1 <= u, each next U == prev_u + 1; a violation is reported on
stderr and the symbol buffers again until a new snapshot; id := last applied u.  Binance
bookTicker (no "e"): latest (highest u) per symbol; the output BBO comes from it when its
u > the depth id (or there is no depth id), else from the depth book.  bids/asks always
come from the depth book.

Output: one JSON line per (venue, symbol) seen in l2_data/depthUpdate/bookTicker/REST
snapshot, sorted: {"venue","symbol","bid_px","bid_qty","ask_px","ask_qty","bids","asks"},
bids/asks = top 10 [px, qty] best first; canonical decimal strings (no exponent, no
trailing zeros, zero is "0"); BBO fields null for an empty side.  --venue/--symbol filter
the output (--symbol also names the symbol of URL-less snapshot lines).

Usage: python3 book_reference.py FILE [--venue coinbase|binance] [--symbol SYM]
"""
import argparse
import gzip
import json
import re
import sys
from decimal import Decimal

DEPTH = 10
TS_PREFIX = re.compile(r"^[0-9]+(?:\.[0-9]+)?:? (.*)$")           # "<ts> json" / "<ts>: json"
REST_LINE = re.compile(r"^(https?://\S+) -> [0-9.]+: (.*)$")       # cryptofeed REST line
URL_SYMBOL = re.compile(r"[?&]symbol=([A-Za-z0-9]+)")


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


class BinanceSymbol:
    """Depth book + sync state + latest bookTicker for one Binance symbol."""

    def __init__(self, symbol):
        self.symbol, self.book = symbol, Book()
        self.update_id = None     # last applied u (or L right after the snapshot)
        self.state = "buffering"  # buffering | awaiting_first | live
        self.buffer = []          # diffs held while not synced
        self.ticker = None        # latest bookTicker payload (highest u)

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
            if final <= self.update_id:
                return  # already contained in the snapshot
            if not first <= self.update_id + 1 <= final:
                return self.unsync(diff, f"first diff U={first} u={final} does not straddle "
                                         f"snapshot lastUpdateId+1={self.update_id + 1}")
        elif first != self.update_id + 1:
            return self.unsync(diff, f"gap, U={first} but previous u={self.update_id}")
        self.apply_levels(diff.get("b", []), diff.get("a", []))
        self.update_id, self.state = final, "live"

    def unsync(self, diff, why):
        err(f"binance {self.symbol}: {why}; unsynced until next snapshot")
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
    """Map a frame to ("coinbase", frame) | ("binance", payload) | (None, None)."""
    if "channel" in obj:
        return "coinbase", obj
    payload = obj["data"] if "stream" in obj and isinstance(obj.get("data"), dict) else obj
    if "e" in payload or ("u" in payload and "s" in payload):
        return "binance", payload
    return None, None


def main():
    ap = argparse.ArgumentParser(description="Reference L2 book rebuilder (oracle).")
    ap.add_argument("file")
    ap.add_argument("--venue", choices=["coinbase", "binance"])
    ap.add_argument("--symbol")
    args = ap.parse_args()

    # Pass 1: parse every line (snapshot lines may precede the file's first frame).
    records, bad = [], 0
    with open_text(args.file) as fh:
        for line in fh:
            kind, value = parse_line(line)
            if kind == "bad":
                bad += 1
            elif kind != "skip":
                records.append((kind, value))
    if bad:
        err(f"skipped {bad} line(s) that are not valid JSON frames")

    frames = [classify(value) for kind, value in records if kind == "frame"]
    seen = {str(msg["s"]).upper() for venue, msg in frames if venue == "binance" and "s" in msg}
    file_symbol = args.symbol.upper() if args.symbol else (seen.pop() if len(seen) == 1 else None)

    # Pass 2: replay in file order.
    coinbase, binance = {}, {}   # product_id -> Book ; symbol -> BinanceSymbol
    for kind, value in records:
        if kind == "rest":
            url_symbol, snap = value
            symbol = url_symbol or file_symbol
            if symbol is None:
                err("REST snapshot without a symbol (several symbols; use --symbol); skipped")
                continue
            binance.setdefault(symbol, BinanceSymbol(symbol)).on_snapshot(snap)
            continue
        venue, msg = classify(value)
        if venue == "coinbase" and msg.get("channel") == "l2_data":
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
        elif venue == "binance":
            symbol = str(msg.get("s", "")).upper()
            if msg.get("e") == "depthUpdate":
                binance.setdefault(symbol, BinanceSymbol(symbol)).on_diff(msg)
            elif msg.get("e") is None and all(k in msg for k in ("u", "b", "a")):
                binance.setdefault(symbol, BinanceSymbol(symbol)).on_ticker(msg)

    def book_bbo(bids, asks):
        return (bids[0] if bids else [None, None]) + (asks[0] if asks else [None, None])

    out = []
    for symbol, book in coinbase.items():
        bids, asks = book.top()
        out.append(("coinbase", symbol, book_bbo(bids, asks), bids, asks))
    for symbol, st in binance.items():
        if st.state != "live" and (st.buffer or st.update_id is not None):
            err(f"binance {symbol}: depth book not synced at end of file (state {st.state}, "
                f"{len(st.buffer)} buffered diff(s))")
        bids, asks = st.book.top()
        tick = st.ticker
        if tick is not None and (st.update_id is None or int(tick["u"]) > st.update_id):
            bbo = [canon(tick["b"]), canon(tick["B"]), canon(tick["a"]), canon(tick["A"])]
        else:
            bbo = book_bbo(bids, asks)
        out.append(("binance", symbol, bbo, bids, asks))

    for venue, symbol, bbo, bids, asks in sorted(out, key=lambda r: (r[0], r[1])):
        if args.venue and venue != args.venue:
            continue
        if args.symbol and symbol.upper() != args.symbol.upper():
            continue
        obj = {"venue": venue, "symbol": symbol, "bid_px": bbo[0], "bid_qty": bbo[1],
               "ask_px": bbo[2], "ask_qty": bbo[3], "bids": bids, "asks": asks}
        print(json.dumps(obj, separators=(",", ":")))


if __name__ == "__main__":
    main()
