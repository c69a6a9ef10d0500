#!/usr/bin/env python3
"""The backtest's online classifier, live, from the Hermes shm file.

Polls every instrument's slot through ``shm/python/hermes_shm.py`` (stdlib-only reader),
builds the same features as ``backtest.py`` from the slot's kernels (the numbers the
``features`` table holds), and labels each sample with the mid ``--horizon-ms`` later
once that time has passed: the label arrives late, and the model (``SGDClassifier``,
``partial_fit``) only learns from labels already known. Prints each prediction's outcome
as its label arrives and, at the end, accuracy beside the majority-class baseline.

    hermes run --config hermes.toml &          # or: hermes replay FILE --speed realtime
    python3 examples/python/live_signal.py /dev/shm/hermes --seconds 60
"""

import argparse
import collections
import os
import sys
import time

import numpy as np
from sklearn.linear_model import SGDClassifier

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shm", "python"))
from hermes_shm import HermesShm  # noqa: E402


def features(tob):
    """The backtest's feature vector from a slot (mantissas scaled to floats)."""
    k = tob.kernels
    if k.mid_px is None:
        return None, None
    mid = k.mid_px
    opt = lambda v, s: 0.0 if v is None else v / s  # noqa: E731
    micro = 0.0 if k.microprice_px is None or mid <= 0 else (k.microprice_px - mid) / mid * 1e4
    x = [
        opt(k.spread_bps_x100, 100), opt(k.imbalance_ppm, 1e6), opt(k.trade_imbalance_ppm, 1e6),
        0.0 if k.volatility_bps is None else k.volatility_bps, k.updates_per_s_x100 / 100,
        float(k.ofi_window), micro,
    ]
    return np.array(x), mid


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shm", nargs="?", default="/dev/shm/hermes")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to run")
    ap.add_argument("--horizon-ms", type=float, default=500.0)
    ap.add_argument("--poll-ms", type=float, default=20.0, help="sampling period")
    ap.add_argument("--warmup", type=int, default=50)
    a = ap.parse_args(argv)
    model = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)
    waiting = collections.deque()  # (due_ns, slot, x, mid, prediction)
    mean = m2 = None
    seen, trained, counts = 0, 0, np.zeros(2)
    scored = correct = base_correct = 0
    last_seq = {}
    h = int(a.horizon_ms * 1e6)
    deadline = time.monotonic() + a.seconds
    with HermesShm(a.shm) as shm:
        while time.monotonic() < deadline:
            now = time.time_ns()
            insts = shm.instruments()
            tobs = {}
            for inst in insts:
                tob = shm.try_read(inst.slot)
                if tob is not None and tob.seq:
                    tobs[inst.slot] = tob
            # Labels whose horizon has passed: the mid now is the mid at due time.
            while waiting and waiting[0][0] <= now:
                _, slot, x, mid0, pred = waiting.popleft()
                tob = tobs.get(slot)
                if tob is None or tob.kernels.mid_px is None:
                    continue
                y = int(tob.kernels.mid_px > mid0)
                if pred is not None:
                    scored += 1
                    correct += int(pred == y)
                    base_correct += int(int(counts[1] > counts[0]) == y)
                seen += 1
                if mean is None:
                    mean, m2 = np.zeros_like(x), np.zeros_like(x)
                d = x - mean
                mean += d / seen
                m2 += d * (x - mean)
                sd = np.sqrt(m2 / max(seen - 1, 1)) + 1e-12
                model.partial_fit(((x - mean) / sd).reshape(1, -1), [y], classes=[0, 1])
                counts[y] += 1
                trained += 1
            for inst in insts:
                tob = tobs.get(inst.slot)
                if tob is None or last_seq.get(inst.slot) == tob.seq:
                    continue
                last_seq[inst.slot] = tob.seq
                x, mid = features(tob)
                if x is None:
                    continue
                pred = None
                if trained >= a.warmup:
                    sd = np.sqrt(m2 / max(seen - 1, 1)) + 1e-12
                    pred = int(model.predict_proba(((x - mean) / sd).reshape(1, -1))[0, 1] >= 0.5)
                waiting.append((now + h, inst.slot, x, mid, pred))
            time.sleep(a.poll_ms / 1000)
    acc = correct / scored if scored else float("nan")
    base = base_correct / scored if scored else float("nan")
    print(f"labelled {trained}, scored {scored}, accuracy {acc:.4f}, majority-class baseline {base:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
