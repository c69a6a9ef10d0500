"""Unit tests for book_reference.py (stdlib unittest, hand-written frames).

Run from the repository root:  python3 -m unittest tools/tests/reference/test_book_reference.py
"""
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("book_reference.py")
_spec = importlib.util.spec_from_file_location("book_reference", SCRIPT)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def j(obj):
    return json.dumps(obj, separators=(",", ":"))


def run(lines, **kwargs):
    """-> (list of output dicts, stderr text)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        out = ref.rebuild(lines, **kwargs)
    return [json.loads(line) for line in out], err.getvalue()


def only(rows):
    assert len(rows) == 1, rows
    return rows[0]


# ---------------------------------------------------------------- Coinbase Exchange (legacy)

def cbx_snapshot(product="BTC-USD", bids=(("100.00", "1.0"), ("99.5", "2")),
                 asks=(("101", "3"), ("102.50", "4"))):
    return j({"type": "snapshot", "product_id": product,
              "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]})


def cbx_update(changes, product="BTC-USD"):
    return j({"type": "l2update", "product_id": product, "changes": [list(c) for c in changes],
              "time": "2021-04-17T16:43:37.075687Z"})


class CoinbaseExchangeTest(unittest.TestCase):
    def test_snapshot_then_l2update(self):
        rows, err = run([
            cbx_snapshot(),
            cbx_update([("buy", "100.5", "0.5"), ("sell", "101", "0"), ("sell", "102.50", "7.10"),
                        ("buy", "99.5", "0.0")]),
        ])
        row = only(rows)
        self.assertEqual(row["venue"], "coinbase-exchange")
        self.assertEqual(row["symbol"], "BTC-USD")
        self.assertEqual(row["bids"], [["100.5", "0.5"], ["100", "1"]])   # buy = bid, 0 removes
        self.assertEqual(row["asks"], [["102.5", "7.1"]])                  # sell = ask
        self.assertEqual([row["bid_px"], row["bid_qty"], row["ask_px"], row["ask_qty"]],
                         ["100.5", "0.5", "102.5", "7.1"])
        self.assertEqual(err, "")

    def test_snapshot_replaces_book(self):
        rows, _ = run([cbx_snapshot(), cbx_update([("buy", "100.7", "1")]),
                       cbx_snapshot(bids=(("98", "1"),), asks=(("99", "1"),))])
        row = only(rows)
        self.assertEqual((row["bids"], row["asks"]), ([["98", "1"]], [["99", "1"]]))

    def test_non_book_types_are_ignored(self):
        tick = j({"type": "ticker", "sequence": 5, "product_id": "BTC-USD", "price": "100",
                  "best_bid": "50", "best_ask": "60", "side": "buy", "time": "t", "trade_id": 1,
                  "last_size": "1"})
        match = j({"type": "match", "trade_id": 2, "side": "sell", "size": "1", "price": "100",
                   "product_id": "BTC-USD", "sequence": 9, "time": "t"})
        hb = j({"type": "heartbeat", "sequence": 90, "last_trade_id": 20,
                "product_id": "BTC-USD", "time": "t"})
        subs = j({"type": "subscriptions", "channels": [{"name": "level2",
                                                         "product_ids": ["BTC-USD"]}]})
        base, _ = run([cbx_snapshot()])
        rows, err = run([subs, cbx_snapshot(), tick, match, hb,
                         match.replace('"match"', '"last_match"')])
        self.assertEqual(rows, base)           # ticker best_bid/best_ask do not set the BBO
        self.assertEqual(err, "")
        # Frames that never touch a book produce no output line.
        rows, err = run([subs, tick, match, hb])
        self.assertEqual((rows, err), ([], ""))

    def test_error_frame_reported(self):
        rows, err = run([j({"type": "error", "message": "Failed to subscribe"})])
        self.assertEqual(rows, [])
        self.assertIn("error frame", err)

    def test_l2update_before_snapshot_ignored(self):
        rows, err = run([cbx_update([("buy", "1000", "9")]), cbx_snapshot()])
        self.assertEqual(only(rows)["bids"][0], ["100", "1"])
        self.assertIn("1 l2update(s) before the first snapshot ignored", err)

    def test_cryptofeed_lines(self):
        lines = [
            "wss://ws-feed.pro.coinbase.com <-> 1618677816.8434298",
            'wss://ws-feed.pro.coinbase.com <- 1618677817.020616: {"type":"subscribe",'
            '"product_ids":["BTC-USD"],"channels":["level2"]}',
            "1618677817.061845: " + cbx_snapshot(),
            "1618677817.07: " + cbx_update([("sell", "100.9", "1")]),
        ]
        rows, err = run(lines)
        self.assertEqual(only(rows)["ask_px"], "100.9")
        self.assertEqual(err, "")                       # no "not valid JSON" line count


# ---------------------------------------------------------------- Binance futures

def diff(U, u, pu=None, bids=(), asks=(), symbol="BTCUSDT", stream=True):
    payload = {"e": "depthUpdate", "E": 1, "T": 1, "s": symbol, "U": U, "u": u}
    if pu is not None:
        payload["pu"] = pu
    payload["b"], payload["a"] = [list(b) for b in bids], [list(a) for a in asks]
    if not stream:
        return j(payload)
    return "1 " + j({"stream": symbol.lower() + "@depth@0ms", "data": payload})


def snapshot(L, bids=(("100", "1"),), asks=(("101", "1"),), **extra):
    body = {"lastUpdateId": L, "E": 1, "T": 1}
    body.update(extra)
    body["bids"], body["asks"] = [list(b) for b in bids], [list(a) for a in asks]
    return "2 " + j(body)


def fticker(u, b="100", B="1", a="101", A="1", symbol="BTCUSDT"):
    return "3 " + j({"stream": symbol.lower() + "@bookTicker",
                     "data": {"e": "bookTicker", "u": u, "s": symbol, "b": b, "B": B,
                              "a": a, "A": A, "T": 1, "E": 1}})


class BinanceFuturesTest(unittest.TestCase):
    def test_pu_chain_no_false_gap(self):
        # U is not prev u + 1 on futures: continuity is pu == previous u.
        rows, err = run([diff(96, 105, pu=95, bids=[("100", "2")]), snapshot(100),
                         diff(110, 120, pu=105, bids=[("99", "3")]),
                         diff(131, 140, pu=120, asks=[("101", "0"), ("102", "5")])])
        row = only(rows)
        self.assertEqual(row["venue"], "binance-usdm")
        self.assertEqual(row["bids"], [["100", "2"], ["99", "3"]])
        self.assertEqual(row["asks"], [["102", "5"]])
        self.assertEqual(err, "")

    def test_pu_chain_break_is_gap_then_resync(self):
        lines = [snapshot(100), diff(96, 105, pu=95, bids=[("100", "2")]),
                 diff(110, 120, pu=106, bids=[("50", "9")])]        # pu != previous u (105)
        rows, err = run(lines)
        self.assertIn("gap, pu=106 but previous u=105", err)
        self.assertIn("not synced at end of file (state buffering, 1 buffered diff(s))", err)
        self.assertEqual(only(rows)["bids"], [["100", "2"]])      # last synced book kept
        # A new snapshot re-syncs using the buffered diff (U <= L <= u).
        rows, err2 = run(lines + [snapshot(115, bids=[("98", "1")])])
        self.assertEqual(only(rows)["bids"], [["98", "1"], ["50", "9"]])
        self.assertEqual(err2.count("gap"), 1)
        self.assertNotIn("not synced", err2)

    def test_missing_pu_is_gap_when_futures(self):
        rows, err = run([snapshot(100), diff(96, 105, pu=95), diff(106, 110)],
                        venue="binance-usdm")
        self.assertIn("gap, pu=None", err)

    def test_u_below_last_update_id_dropped(self):
        rows, err = run([diff(80, 90, pu=70, bids=[("1", "1")]),       # u < L: dropped
                         diff(91, 99, pu=90, bids=[("2", "1")]),       # u < L: dropped
                         snapshot(100),
                         diff(99, 100, pu=99, bids=[("3", "1")])])      # u == L: applied
        self.assertEqual(only(rows)["bids"], [["100", "1"], ["3", "1"]])
        self.assertEqual(err, "")

    def test_spot_rule_unchanged(self):
        # Spot drops u <= L and needs U <= L+1 <= u: the u == L diff is dropped there.
        rows, err = run([snapshot(100), diff(99, 100, bids=[("3", "1")]),
                         diff(101, 105, bids=[("4", "1")])])
        row = only(rows)
        self.assertEqual(row["venue"], "binance")
        self.assertEqual(row["bids"], [["100", "1"], ["4", "1"]])
        self.assertEqual(err, "")

    def test_first_diff_must_bracket_last_update_id(self):
        # U = L+1 is fine for spot, but futures need U <= L <= u.
        rows, err = run([snapshot(100), diff(101, 110, pu=100, bids=[("7", "1")])])
        self.assertIn("first diff U=101 u=110 does not bracket snapshot lastUpdateId=100", err)
        self.assertEqual(only(rows)["bids"], [["100", "1"]])
        rows, err = run([snapshot(100), diff(100, 110, pu=90, bids=[("7", "1")])])
        self.assertEqual(only(rows)["bids"], [["100", "1"], ["7", "1"]])
        self.assertEqual(err, "")

    def test_book_ticker_bbo_precedence(self):
        base = [snapshot(100), diff(95, 110, pu=90)]               # depth id 110
        rows, _ = run(base + [fticker(111, b="100.5", B="2.50", a="100.6", A="3")])
        row = only(rows)
        self.assertEqual([row["bid_px"], row["bid_qty"], row["ask_px"], row["ask_qty"]],
                         ["100.5", "2.5", "100.6", "3"])          # ticker u > depth id
        self.assertEqual(row["bids"], [["100", "1"]])             # levels from the depth book
        rows, _ = run(base + [fticker(110, b="100.5", a="100.6")])
        self.assertEqual(only(rows)["bid_px"], "100")             # ticker u == depth id: book
        # The highest-u ticker wins even when an older one arrives later.
        rows, _ = run([fticker(200, b="5"), fticker(150, b="4")])
        row = only(rows)
        self.assertEqual((row["venue"], row["bid_px"], row["bids"]), ("binance-usdm", "5", []))

    def test_venue_detection(self):
        rows, _ = run([diff(1, 2, pu=0, symbol="BTCUSD_PERP")])
        self.assertEqual(only(rows)["venue"], "binance-coinm")
        rows, _ = run([fticker(5, symbol="ETHUSDT")])
        self.assertEqual(only(rows)["venue"], "binance-usdm")
        rows, _ = run([diff(1, 2, pu=0, stream=False)])           # bare payload
        self.assertEqual(only(rows)["venue"], "binance-usdm")
        rows, _ = run([diff(1, 2)])                               # no pu: spot
        self.assertEqual(only(rows)["venue"], "binance")
        # --venue forces the Binance venue (and filters the output).
        rows, _ = run([snapshot(100), diff(95, 110, pu=90)], venue="binance-coinm")
        self.assertEqual(only(rows)["venue"], "binance-coinm")
        rows, _ = run([snapshot(100), diff(95, 110, pu=90)], venue="binance-usdm")
        self.assertEqual(only(rows)["venue"], "binance-usdm")
        # Forced spot rules on futures-looking frames: u == L is dropped (spot drops u <= L).
        frames = [snapshot(100), diff(99, 100, pu=98, bids=[("3", "1")])]
        rows, _ = run(frames, venue="binance")
        self.assertEqual((only(rows)["venue"], only(rows)["bids"]), ("binance", [["100", "1"]]))
        rows, _ = run(frames)
        self.assertEqual(only(rows)["bids"], [["100", "1"], ["3", "1"]])
        # A COIN-M snapshot names its symbol.
        rows, _ = run([diff(95, 110, pu=90, symbol="BTCUSD_PERP"),
                       snapshot(100, symbol="BTCUSD_PERP", pair="BTCUSD",
                                bids=[("61000.1", "35")]),
                       fticker(1, symbol="BTCUSD_PERP")])
        row = only(rows)
        self.assertEqual((row["venue"], row["symbol"], row["bids"]),
                         ("binance-coinm", "BTCUSD_PERP", [["61000.1", "35"]]))

    def test_other_events_have_no_effect(self):
        extra = [
            "4 " + j({"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "s": "BTCUSDT",
                                                              "a": 1, "p": "1", "q": "1"}}),
            "5 " + j({"stream": "btcusdt@markPrice", "data": {"e": "markPriceUpdate",
                                                               "s": "BTCUSDT", "p": "1"}}),
            "6 " + j({"stream": "btcusdt@forceOrder", "data": {"e": "forceOrder",
                                                                "o": {"s": "BTCUSDT"}}}),
            "7 " + j({"stream": "btcusdt@trade", "data": {"e": "trade", "s": "BTCUSDT",
                                                           "t": 1, "p": "1", "q": "1", "X": "MARKET"}}),
        ]
        base = [snapshot(100), diff(95, 110, pu=90, asks=[("101", "2")])]
        self.assertEqual(run(base + extra), run(base))
        self.assertEqual(run(extra), ([], ""))


class CliTest(unittest.TestCase):
    def test_cli_accepts_new_venues(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cap.txt")
            with open(path, "w") as fh:
                fh.write("\n".join([snapshot(100), diff(95, 110, pu=90), cbx_snapshot()]) + "\n")
            for venue, expect in (("binance-usdm", "binance-usdm"),
                                  ("binance-coinm", "binance-coinm"),
                                  ("coinbase-exchange", "coinbase-exchange")):
                res = subprocess.run([sys.executable, str(SCRIPT), path, "--venue", venue],
                                     capture_output=True, text=True, check=True)
                self.assertEqual([json.loads(l)["venue"] for l in res.stdout.splitlines()],
                                 [expect])
            res = subprocess.run([sys.executable, str(SCRIPT), path, "--stats"],
                                 capture_output=True, text=True, check=True)
            self.assertIn("stats: binance-usdm depthUpdate: 1", res.stderr)
            self.assertIn("stats: coinbase-exchange snapshot: 1", res.stderr)


if __name__ == "__main__":
    unittest.main()
