"""Binarization rules on a run's OOF maps, each tuned on two folds and scored on the third.

Usage: python -m bench binarization_rules --data-dir DATA --run RUN_DIR [--out FILE]

RUN_DIR is a finished `cpu` run (results/blend/oof.parquet, results/folds.csv). Rules: the
pipeline's threshold + minimum mask area; hysteresis (components above ``low`` kept where they
reach ``high``); small components removed; a peak gate (a tile stays empty unless its
largest probability reaches ``peak``); a learned gate (a gradient-boosted classifier of empty
tiles on per-tile features of the map, the image and the depth, fitted on the other folds); and,
as a ceiling, an oracle that knows which tiles are empty. Tuning on the other folds keeps the
comparison honest: every rule is scored on tiles its parameters never saw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from bench.common import write_result
from saltseg.binarize import remove_small
from saltseg.data import kaggle
from saltseg.metrics import tile_scores
from saltseg.probs import align, read_probs


def hysteresis(probs: np.ndarray, low: float, high: float) -> np.ndarray:
    out = np.zeros(probs.shape, bool)
    for k, p in enumerate(probs):
        n, labels = cv2.connectedComponents((p > low).astype(np.uint8), connectivity=8)
        keep = np.zeros(n, bool)
        keep[np.unique(labels[p > high])] = True
        keep[0] = False
        out[k] = keep[labels]
    return out


def without_small_parts(pred: np.ndarray, size: int) -> np.ndarray:
    out = pred.copy()
    for k, mask in enumerate(pred):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8
        )
        small = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] < size]
        out[k][np.isin(labels, small)] = False
    return out


def peak_gate(probs: np.ndarray, threshold: float, peak: float) -> np.ndarray:
    low = probs.reshape(len(probs), -1).max(1) < peak
    return np.where(low[:, None, None], False, probs > threshold)


def tile_features(probs: np.ndarray, tiles: kaggle.Tiles) -> np.ndarray:
    """Per tile: the largest probability, pixels above 0.2 / 0.5 / 0.8, the sum of the map, the
    mean probability where it exceeds 0.2, image mean and spread, and depth."""
    flat = probs.reshape(len(probs), -1)
    above = [(flat > c).sum(1) for c in (0.2, 0.5, 0.8)]
    confident = np.where(flat > 0.2, flat, 0).sum(1) / np.maximum(above[0], 1)
    image = tiles.images.reshape(len(tiles), -1).astype(float)
    columns = [flat.max(1), *above, flat.sum(1), confident, image.mean(1), image.std(1)]
    return np.stack([*columns, tiles.depths], axis=1)


def learned_empty(features: np.ndarray, empty: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """P(tile is empty) for each tile, from a classifier fitted on the other folds."""
    p_empty = np.zeros(len(features))
    for f in np.unique(fold):
        model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
        model.fit(features[fold != f], empty[fold != f])
        p_empty[fold == f] = model.predict_proba(features[fold == f])[:, 1]
    return p_empty


def cross_fold(truth, fold, make, grid) -> dict:
    """Score of ``make(*g)`` with ``g`` picked on the other folds, per fold and overall."""
    scores = {g: tile_scores(truth, make(*g)) for g in grid}
    total, picks = np.zeros(len(truth)), {}
    for f in np.unique(fold):
        best = max(grid, key=lambda g: scores[g][fold != f].mean())
        total[fold == f] = scores[best][fold == f]
        picks[int(f)] = [float(v) for v in best]
    best_all = max(grid, key=lambda g: scores[g].mean())
    return {
        "cross_fold": float(total.mean()),
        "picks_per_fold": picks,
        "best_on_all": [float(v) for v in best_all],
        "score_best_on_all": float(scores[best_all].mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    run = Path(args.run)
    oof = run / "results" / "blend" / "oof.parquet"
    tiles = kaggle.load_train(args.data_dir, 101)
    probs = align(oof, tiles.ids, *read_probs(oof))
    probs = np.where(kaggle.is_blank(tiles.images)[:, None, None], 0.0, probs)  # blank: empty
    truth = tiles.masks.astype(bool)
    folds = pd.read_csv(run / "results" / "folds.csv").set_index("id")
    fold = folds.loc[tiles.ids, "fold"].to_numpy()
    cuts = (0.42, 0.46, 0.5, 0.54)
    empty = ~truth.reshape(len(truth), -1).any(1)
    p_empty = learned_empty(tile_features(probs, tiles), empty, fold)
    gates = np.round(np.arange(0.3, 0.91, 0.05), 2)
    rules = {
        "threshold + min area": (
            lambda t, a: remove_small(probs > t, a),
            [(t, a) for t in np.round(np.arange(0.3, 0.71, 0.04), 2) for a in range(0, 401, 20)],
        ),
        "hysteresis (low, high) + min area": (
            lambda lo, hi, a: remove_small(hysteresis(probs, lo, hi), a),
            [
                (lo, hi, a)
                for lo in (0.3, 0.4, 0.5)
                for hi in (0.6, 0.7, 0.8, 0.9)
                for a in (0, 20, 40, 80)
            ],
        ),
        "small parts removed + min area": (
            lambda t, c, a: remove_small(without_small_parts(probs > t, c), a),
            [(t, c, a) for t in cuts for c in (0, 10, 20, 40, 80) for a in (0, 20, 40, 80)],
        ),
        "peak gate + min area": (
            lambda t, m, a: remove_small(peak_gate(probs, t, m), a),
            [(t, m, a) for t in cuts for m in (0.5, 0.6, 0.7, 0.8, 0.9) for a in (0, 20, 40)],
        ),
        "learned gate (P(empty) above g)": (
            lambda t, g: np.where((p_empty > g)[:, None, None], False, probs > t),
            [(t, g) for t in cuts for g in gates],
        ),
        "oracle: true empty tiles empty (ceiling)": (
            lambda t: np.where(empty[:, None, None], False, probs > t),
            [(t,) for t in cuts],
        ),
    }
    result = {
        "command": "python -m bench binarization_rules --data-dir DATA --run RUN",
        "oof": "RUN/results/blend/oof.parquet",
        "n_tiles": len(tiles),
        "rules": {name: cross_fold(truth, fold, *rule) for name, rule in rules.items()},
        "auc_empty": {
            "peak": float(roc_auc_score(empty, -probs.reshape(len(probs), -1).max(1))),
            "learned": float(roc_auc_score(empty, p_empty)),
        },
    }
    write_result("binarization_rules", result, args.out, quiet=True)
    for name, row in result["rules"].items():
        print(f"{name}: {row['cross_fold']:.4f} (best on all {row['score_best_on_all']:.4f})")


if __name__ == "__main__":
    main()
