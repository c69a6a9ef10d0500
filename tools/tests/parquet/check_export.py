#!/usr/bin/env python3
"""Checks a `hermes export` dataset (tools/tests/integration/export.rs runs it).

    check_export.py DATASET CAPTURE PRINT_FINAL SHM HORIZON_NS

* trades: the rows equal the capture's Binance trades (`<ns> <json>` lines), in order, and
  every price and size equals its text exactly (as decimals, and as text at 8 decimals);
* book: the last row of each instrument equals its `hermes replay --print-final` line;
* features: the last row of each instrument equals the kernels in its shm slot;
* labels: equal a reference computed here from the exported mids;
* DuckDB reads the same rows, with exact DECIMAL types.
"""

import json
import sys
from decimal import Decimal

import duckdb
import pyarrow.dataset as ds

sys.path.insert(0, sys.argv[6] if len(sys.argv) > 6 else "shm/python")
from hermes_shm import HermesShm  # noqa: E402


def table(root, name):
    return ds.dataset(f"{root}/{name}", format="parquet", partitioning="hive").to_table().to_pylist()


def unscaled(d, decimals):
    return None if d is None else int(d.scaleb(decimals))


def as_text(value, text):
    """`value` printed with as many decimals as `text` has."""
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    return f"{value:.{decimals}f}"


def main():
    root, capture, final_path, shm_path, horizon = sys.argv[1:6]
    horizon = int(horizon)
    # trades vs the capture's text
    want = []
    for line in open(capture):
        ts, _, frame = line.partition(" ")
        j = json.loads(frame)
        d = j.get("data", {})
        if isinstance(d, dict) and d.get("e") == "trade":
            want.append((d["t"], d["p"], d["q"]))
    trades = sorted(table(root, "trades"), key=lambda r: r["row"])
    assert len(trades) == len(want) > 0, (len(trades), len(want))
    for r, (tid, p, q) in zip(trades, want):
        assert r["trade_id"] == tid, (r, tid)
        assert r["price"] == Decimal(p) and r["size"] == Decimal(q), (r, p, q)
        # Exactly the text: printed with as many decimals as the text has (8 for the
        # real capture's Binance strings, fewer for the generator's).
        assert as_text(r["price"], p) == p and as_text(r["size"], q) == q, (r, p, q)
    # book: last row per instrument vs --print-final
    book = table(root, "book")
    last = {}
    for r in sorted(book, key=lambda r: r["row"]):
        last[(r["venue"], r["symbol"])] = r
    finals = [json.loads(l) for l in open(final_path) if l.strip()]
    assert finals and len(finals) == len(last), (len(finals), len(last))
    for f in finals:
        r = last[(f["venue"], f["symbol"])]
        for side in ("bid", "ask"):
            px, qty = f[f"{side}_px"], f[f"{side}_qty"]
            assert r[f"{side}_price"] == (None if px is None else Decimal(px)), (side, r, f)
            assert r[f"{side}_size"] == (None if qty is None else Decimal(qty)), (side, r, f)
        for side, key in (("bid", "bids"), ("ask", "asks")):
            lv = [(r[f"{side}_{k}_price"], r[f"{side}_{k}_size"]) for k in range(10)]
            lv = [x for x in lv if x[0] is not None]
            assert lv == [(Decimal(p), Decimal(q)) for p, q in f[key]], (side, lv, f[key])
        assert r["update_id"] == f["seq"] and r["updates"] == f["updates"], (r, f)
        assert r["stale"] == f["stale"]
    # features: last row per instrument vs the shm slot
    feats = sorted(table(root, "features"), key=lambda r: r["row"])
    lastf = {}
    for r in feats:
        lastf[(r["venue"], r["symbol"])] = r
    with HermesShm(shm_path) as shm:
        n = 0
        for inst in shm.instruments():
            k = shm.read(inst.slot).kernels
            r = lastf[(inst.venue, inst.symbol)]
            p, s, kp = inst.price_decimals, inst.size_decimals, k.price_decimals
            pairs = [
                ("spread", k.spread_ticks, p), ("spread_bps", k.spread_bps_x100, 2),
                ("mid", k.mid_px, kp), ("microprice", k.microprice_px, kp),
                ("bid_depth", k.bid_depth, s), ("ask_depth", k.ask_depth, s),
                ("imbalance", k.imbalance_ppm, 6), ("vwap_buy", k.vwap_buy_px, kp),
                ("vwap_sell", k.vwap_sell_px, kp), ("trade_buy_size", k.trade_buy_qty, s),
                ("trade_sell_size", k.trade_sell_qty, s),
                ("trade_imbalance", k.trade_imbalance_ppm, 6), ("ofi_window", k.ofi_window, s),
                ("ofi_total", k.ofi_total, s), ("updates_per_s", k.updates_per_s_x100, 2),
            ]
            for col, slot, dec in pairs:
                assert unscaled(r[col], dec) == slot, (inst.symbol, col, r[col], slot)
            assert r["volatility_bps"] == k.volatility_bps, (r["volatility_bps"], k.volatility_bps)
            assert r["kernel_ns"] == k.time_ns
            n += 1
        assert n == len(lastf), (n, len(lastf))
    # labels vs a reference from the exported mids
    labels = {(r["source"], r["row"]): r for r in table(root, "labels")}
    assert len(labels) == len(feats)
    by_source = {}
    for r in feats:
        by_source.setdefault(r["source"], []).append(r)
    for src, rows in by_source.items():
        rows.sort(key=lambda r: r["row"])
        clock = []
        c = None
        for r in rows:
            c = r["ts_ns"] if c is None else max(c, r["ts_ns"])
            clock.append(c)
        last_mid = {}
        mids_before = []  # per row j: the symbol mids before row j
        for r in rows:
            mids_before.append(dict(last_mid))
            last_mid[r["symbol"]] = r["mid"]
        import bisect
        for i, r in enumerate(rows):
            target = r["ts_ns"] + horizon
            j = max(i + 1, bisect.bisect_right(clock, target))
            lab = labels[(src, r["row"])]
            assert lab["mid"] == r["mid"] and lab["label_ns"] == target
            if j >= len(rows):
                assert lab["label_mid"] is None and lab["labelled_at_ns"] is None and lab["label"] is None, lab
                continue
            want_mid = mids_before[j][r["symbol"]]
            assert lab["label_mid"] == want_mid, (lab, want_mid)
            assert lab["labelled_at_ns"] == rows[j]["ts_ns"], (lab, rows[j]["ts_ns"])
            if want_mid is None or r["mid"] is None:
                assert lab["label"] is None
            else:
                d = want_mid - r["mid"]
                assert lab["label"] == (d > 0) - (d < 0) and lab["mid_change"] == d, lab
    # DuckDB: the same rows, exact decimals
    con = duckdb.connect()
    q = f"read_parquet('{root}/trades/*/*/*.parquet', hive_partitioning = true)"
    cnt, total, typ = con.execute(f"SELECT count(*), sum(price * size), any_value(typeof(price)) FROM {q}").fetchone()
    assert cnt == len(trades), (cnt, len(trades))
    assert total == sum(r["price"] * r["size"] for r in trades), total
    assert typ.startswith("DECIMAL(19,8)"), typ
    print(f"ok: {len(trades)} trades, {len(book)} book rows, {len(feats)} features, {len(labels)} labels")


if __name__ == "__main__":
    main()
