#!/usr/bin/env python3
"""Train the up/down models on the features a tickflow pipeline wrote, and export them as ONNX.

    python examples/train/train.py --features out/features --out models

Reads every Parquet file under --features (the `lake` sink of specs/examples/updown-features.yaml:
1-minute bars with ret, range, vwap_gap and log_volume), labels each bar with where the next
bar of the same symbol closes: 0 down, 1 flat (within the dead zone), 2 up, trains a
gradient-boosted tree ensemble and a logistic regression (scikit-learn), and writes them as ONNX
(skl2onnx) for the stock `onnx` plugin:

    OUT/updown-gbt.onnx     GradientBoostingClassifier  (ONNX-ML TreeEnsembleClassifier)
    OUT/updown-logit.onnx   LogisticRegression          (ONNX-ML LinearClassifier)

Both take one float tensor [batch, 4] (the FEATURES below, in order) and output `label` (int64)
and `probabilities` ([batch, 3]: down, flat, up). The dead zone is the third of the smallest
absolute next-bar returns of the training data, so the classes are about even.

Three classes rather than two: tract 0.23 (the plugin's ONNX engine) reads a binary tree
ensemble's base score once per class, where skl2onnx writes it once; with three or more classes
both agree. Needs: pip install scikit-learn skl2onnx pyarrow.
"""
import argparse
import glob
import os
import sys

import numpy as np
import pyarrow.parquet as pq
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

FEATURES = ["ret", "range", "vwap_gap", "log_volume"]


def load(folder):
    files = sorted(glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True))
    if not files:
        sys.exit(f"no Parquet files under {folder}: run the features pipeline first")
    rows = []
    for f in files:
        t = pq.read_table(f, columns=["symbol", "window_start", "close"] + FEATURES)
        rows.extend(t.to_pylist())
    return rows


def labelled(rows):
    """Features of each bar and where the symbol's next bar closes (0 down, 1 flat, 2 up)."""
    by_symbol = {}
    for r in rows:
        by_symbol.setdefault(r["symbol"], []).append(r)
    x, moves = [], []
    for bars in by_symbol.values():
        bars.sort(key=lambda r: r["window_start"])
        for bar, nxt in zip(bars, bars[1:]):
            feats = [bar[f] for f in FEATURES]
            if any(v is None or not np.isfinite(v) for v in feats):
                continue
            x.append(feats)
            moves.append(nxt["close"] / bar["close"] - 1)
    moves = np.asarray(moves)
    dead_zone = np.quantile(np.abs(moves), 1 / 3) if len(moves) else 0.0
    y = np.where(moves > dead_zone, 2, np.where(moves < -dead_zone, 0, 1))
    return np.asarray(x, dtype=np.float32), y.astype(np.int64)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", required=True, help="folder of the features Parquet files")
    p.add_argument("--out", required=True, help="folder the .onnx files are written to")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()

    x, y = labelled(load(args.features))
    if len(set(y.tolist())) < 3:
        sys.exit(f"{len(y)} labelled bars, not every class among them: run the pipeline on more data")
    os.makedirs(args.out, exist_ok=True)
    models = {
        "updown-gbt": GradientBoostingClassifier(
            n_estimators=40, max_depth=3, random_state=args.seed
        ),
        "updown-logit": LogisticRegression(max_iter=1000),
    }
    for name, model in models.items():
        model.fit(x, y)
        onx = to_onnx(
            model,
            initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
            # Probabilities as a [batch, 2] tensor (not a list of maps, which tract cannot run).
            options={id(model): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
        path = os.path.join(args.out, f"{name}.onnx")
        with open(path, "wb") as f:
            f.write(onx.SerializeToString())
        print(f"{path}: {type(model).__name__}, {len(y)} bars, accuracy {model.score(x, y):.3f}")


if __name__ == "__main__":
    main()
