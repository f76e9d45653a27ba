"""The competition metric: mean over tiles of the mean hit rate over IoU thresholds 0.50..0.95."""

from __future__ import annotations

import numpy as np

IOU_THRESHOLDS_PERCENT = np.arange(50, 100, 5)


def tile_scores(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-tile score for binary masks of shape ``(N, H, W)``.

    A tile scores the fraction of IoU thresholds t its IoU strictly exceeds (Kaggle's "hit"); an
    empty truth with an empty prediction scores 1, and an empty truth with any predicted pixel (or
    the reverse) scores 0. IoU > t is tested in integers (100 * inter > t% * union): no float error.
    """
    truth = np.asarray(truth, dtype=bool).reshape(len(truth), -1)
    pred = np.asarray(pred, dtype=bool).reshape(len(pred), -1)
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    return scores_from_counts((truth & pred).sum(axis=1), (truth | pred).sum(axis=1))


def scores_from_counts(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """:func:`tile_scores` from each tile's intersection and union pixel counts ``(N,)``."""
    hits = 100 * inter[:, None] > IOU_THRESHOLDS_PERCENT[None, :] * union[:, None]
    return np.where(union == 0, 1.0, hits.mean(axis=1))


def competition_metric(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean of :func:`tile_scores` over all tiles."""
    return float(tile_scores(truth, pred).mean())


#: coverage buckets (share of salt pixels): name -> (low, high], "empty" is exactly 0
COVERAGE_BUCKETS = {
    "empty": (-1.0, 0.0),
    "under_1pct": (0.0, 0.01),
    "1_to_10pct": (0.01, 0.10),
    "over_10pct": (0.10, 1.0),
}


def coverage_bucket(truth: np.ndarray) -> np.ndarray:
    """The :data:`COVERAGE_BUCKETS` name of every mask ``(N, H, W)``."""
    coverage = np.asarray(truth, dtype=bool).reshape(len(truth), -1).mean(axis=1)
    names = np.empty(len(coverage), dtype=object)
    for name, (low, high) in COVERAGE_BUCKETS.items():
        names[(coverage > low) & (coverage <= high)] = name
    return names


def bucket_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    """Metric per coverage bucket of the truth: ``{bucket: {"n": tiles, "score": mean}}``.

    ``salt`` (every non-empty tile) is added, so a reader sees whether empty tiles or salt tiles
    lose the score. Buckets without tiles have score None.
    """
    scores, buckets = tile_scores(truth, pred), coverage_bucket(truth)
    out = {}
    for name in [*COVERAGE_BUCKETS, "salt"]:
        pick = buckets != "empty" if name == "salt" else buckets == name
        n = int(pick.sum())
        out[name] = {"n": n, "score": float(scores[pick].mean()) if n else None}
    return out
