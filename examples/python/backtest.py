#!/usr/bin/env python3
"""Online backtest over a Hermes Parquet dataset (``hermes export``).

Reads the ``features`` and ``labels`` tables, walks the feature rows in time order and
trains scikit-learn's ``SGDClassifier`` with ``partial_fit`` to predict the sign of the
mid move ``horizon`` later (up vs not up). The model is only ever trained on labels that
were already known at the time of the row being predicted (``labelled_at_ns`` ≤ now):
the labels arrive late, as they would live.

Writes the predictions (the QuoteWatch ``predictions`` table: model id, prediction,
probability, label, labelled-at) as Parquet and prints the accuracy beside the
majority-class baseline (always predicting the label seen most often so far).

    python3 examples/python/backtest.py DATASET [--out predictions.parquet] [--symbol BTCUSDT]
"""

import argparse
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from sklearn.linear_model import SGDClassifier

FEATURES = [
    "spread_bps", "imbalance", "trade_imbalance", "volatility_bps",
    "updates_per_s", "ofi_window", "micro_minus_mid",
]


def load(path, symbol=None):
    """Features joined with their labels, in time order, as numpy arrays."""
    feats = ds.dataset(f"{path}/features", format="parquet", partitioning="hive")
    labels = ds.dataset(f"{path}/labels", format="parquet", partitioning="hive")
    flt = (ds.field("symbol") == symbol) if symbol else None
    f = feats.to_table(filter=flt, columns=[
        "venue", "source", "symbol", "row", "ts_ns", "mid", "microprice", "spread_bps",
        "imbalance", "trade_imbalance", "volatility_bps", "updates_per_s", "ofi_window"])
    lab = labels.to_table(filter=flt, columns=[
        "venue", "source", "row", "label", "labelled_at_ns"])
    t = f.join(lab, keys=["venue", "source", "row"], join_type="inner")
    t = t.sort_by([("ts_ns", "ascending"), ("row", "ascending")])

    def num(name):
        # Exact decimals become floats only here, for the model.
        return np.array(t.column(name).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=float)

    mid, micro = num("mid"), num("microprice")
    x = np.column_stack([num(c) for c in FEATURES[:-1]] + [(micro - mid) / np.where(mid > 0, mid, np.nan) * 1e4])
    label = np.array(t.column("label").to_numpy(zero_copy_only=False), dtype=float)
    labelled_at = t.column("labelled_at_ns").to_numpy(zero_copy_only=False)
    return t, x, label, np.array(labelled_at, dtype=float), t.column("ts_ns").to_numpy()


def run(t, x, label, labelled_at, ts, model_id, warmup=200):
    """Predict each row, training only on rows whose label is known by then."""
    n = len(ts)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    y = (label > 0).astype(int)  # 1 = the mid went up
    has_label = ~np.isnan(label)
    # Label arrival order: row indexes sorted by when their label became known.
    arrivals = np.argsort(np.where(has_label, labelled_at, np.inf), kind="stable")
    model = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)
    mean, m2, seen = np.zeros(x.shape[1]), np.zeros(x.shape[1]), 0
    pred = np.full(n, -1, dtype=np.int8)
    prob = np.full(n, np.nan)
    base = np.full(n, -1, dtype=np.int8)
    counts = np.zeros(2)
    nxt, fitted, trained = 0, False, 0
    for i in range(n):
        now = ts[i]
        # Every label known before this row is usable now.
        batch = []
        while nxt < n and has_label[arrivals[nxt]] and labelled_at[arrivals[nxt]] < now:
            batch.append(arrivals[nxt])
            nxt += 1
        if batch:
            xb, yb = x[batch], y[batch]
            for row in xb:  # running standardisation (Welford), on known data only
                seen += 1
                d = row - mean
                mean += d / seen
                m2 += d * (row - mean)
            sd = np.sqrt(m2 / max(seen - 1, 1)) + 1e-12
            model.partial_fit((xb - mean) / sd, yb, classes=[0, 1])
            counts += np.bincount(yb, minlength=2)
            fitted, trained = True, trained + len(batch)
        if fitted and trained >= warmup:
            sd = np.sqrt(m2 / max(seen - 1, 1)) + 1e-12
            p = model.predict_proba(((x[i] - mean) / sd).reshape(1, -1))[0, 1]
            prob[i], pred[i] = p, int(p >= 0.5)
            base[i] = int(counts[1] > counts[0])
    scored = (pred >= 0) & has_label
    out = pa.table({
        "model_id": pa.array([model_id] * n),
        "venue": t.column("venue"),
        "symbol": t.column("symbol"),
        "source": t.column("source"),
        "row": t.column("row"),
        "ts_ns": t.column("ts_ns"),
        "prediction": pa.array(np.where(pred >= 0, pred, 0), mask=pred < 0, type=pa.int8()),
        "probability": pa.array(prob, mask=np.isnan(prob)),
        "label": pa.array(np.where(has_label, y, 0), mask=~has_label, type=pa.int8()),
        "labelled_at_ns": pa.array(np.where(has_label, labelled_at, 0).astype(np.int64), mask=~has_label),
    })
    acc = float((pred[scored] == y[scored]).mean()) if scored.any() else float("nan")
    base_acc = float((base[scored] == y[scored]).mean()) if scored.any() else float("nan")
    return out, int(scored.sum()), acc, base_acc


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="the --out directory of hermes export")
    ap.add_argument("--out", default="predictions.parquet", help="where to write the predictions")
    ap.add_argument("--symbol", help="only this symbol")
    ap.add_argument("--model-id", default="sgd-logloss-v1")
    ap.add_argument("--warmup", type=int, default=200, help="labels to learn from before predicting")
    a = ap.parse_args(argv)
    t, x, label, labelled_at, ts = load(a.dataset, a.symbol)
    if len(ts) == 0:
        print("no feature rows with labels", file=sys.stderr)
        return 1
    out, scored, acc, base_acc = run(t, x, label, labelled_at, ts, a.model_id, a.warmup)
    pq.write_table(out, a.out, compression="zstd")
    print(f"rows {len(ts)}, scored {scored} (label known, model warmed up), "
          f"accuracy {acc:.4f}, majority-class baseline {base_acc:.4f}; predictions in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
