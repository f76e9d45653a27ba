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
    inter = (truth & pred).sum(axis=1)
    union = (truth | pred).sum(axis=1)
    hits = 100 * inter[:, None] > IOU_THRESHOLDS_PERCENT[None, :] * union[:, None]
    return np.where(union == 0, 1.0, hits.mean(axis=1))


def competition_metric(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean of :func:`tile_scores` over all tiles."""
    return float(tile_scores(truth, pred).mean())


def best_threshold(
    truth: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None
) -> tuple[float, float]:
    """The probability threshold that maximises the metric, and that metric.

    Args:
        truth: binary masks ``(N, H, W)``.
        probs: probabilities ``(N, H, W)`` in [0, 1].
        thresholds: candidates; by default 0.05..0.95 in steps of 0.01.
    Returns:
        ``(threshold, metric)``; ties go to the threshold closest to 0.5.
    """
    if thresholds is None:
        thresholds = np.round(np.arange(0.05, 0.951, 0.01), 2)
    scores = np.array([competition_metric(truth, probs > t) for t in thresholds])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    pick = best[np.argmin(np.abs(thresholds[best] - 0.5))]
    return float(thresholds[pick]), float(scores[pick])
