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


def remove_small(pred: np.ndarray, min_area: int) -> np.ndarray:
    """Masks ``(N, H, W)`` with every tile of fewer than ``min_area`` salt pixels emptied."""
    pred = np.asarray(pred, dtype=bool)
    small = pred.reshape(len(pred), -1).sum(axis=1) < min_area
    return np.where(small[:, None, None], False, pred)


def binarization_table(
    truth: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray | None = None,
    min_areas: np.ndarray | None = None,
    min_peaks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The metric of every (threshold, minimum mask area, minimum peak) triple.

    A tile is empty when its mask (pixels above the threshold) is smaller than the area, or when
    its largest probability is below the peak: two tile-level emptiness rules, tuned with the
    threshold. A peak at or under the threshold changes nothing (no pixel passes anyway).

    Args:
        truth: binary masks ``(N, H, W)``.
        probs: probabilities ``(N, H, W)`` in [0, 1].
        thresholds: candidates; by default 0.05..0.95 in steps of 0.01.
        min_areas: candidate areas in pixels; by default 0 (off) and 10..600 in steps of 10.
        min_peaks: candidate peaks; by default 0 (off) and 0.5..0.95 in steps of 0.05.
    Returns:
        ``(thresholds, min_areas, min_peaks, table)`` with ``table[i, j, k]`` the metric at all
        three.
    """
    if thresholds is None:
        thresholds = np.round(np.arange(0.05, 0.951, 0.01), 2)
    if min_areas is None:
        min_areas = np.arange(0, 601, 10)
    if min_peaks is None:
        min_peaks = np.round(np.r_[0.0, np.arange(0.5, 0.951, 0.05)], 2)
    truth = np.asarray(truth, dtype=bool)
    truth_empty = ~truth.reshape(len(truth), -1).any(axis=1)
    peak = probs.reshape(len(probs), -1).max(axis=1)
    low_peak = peak[None, :] < np.asarray(min_peaks)[:, None]  # (P, N)
    table = np.empty((len(thresholds), len(min_areas), len(min_peaks)))
    for i, t in enumerate(thresholds):
        pred = probs > t
        scores = tile_scores(truth, pred)
        area = pred.reshape(len(pred), -1).sum(axis=1)
        small = area[None, :] < np.asarray(min_areas)[:, None]  # (A, N)
        emptied = small[:, None, :] | low_peak[None, :, :]  # (A, P, N)
        table[i] = np.where(emptied, truth_empty, scores).mean(axis=-1)
    return thresholds, min_areas, min_peaks, table


def best_cell(
    thresholds: np.ndarray, min_areas: np.ndarray, min_peaks: np.ndarray, table: np.ndarray
) -> tuple[float, int, float, float]:
    """``(threshold, min_area, min_peak, metric)`` of the best cell of
    :func:`binarization_table`; ties go to the threshold closest to 0.5, then to the smallest
    area, then to the smallest peak (the simplest rule)."""
    best = np.argwhere(table >= table.max() - 1e-12)
    i, j, k = min(
        best, key=lambda c: (abs(thresholds[c[0]] - 0.5), min_areas[c[1]], min_peaks[c[2]])
    )
    return float(thresholds[i]), int(min_areas[j]), float(min_peaks[k]), float(table[i, j, k])


def best_binarization(
    truth: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray | None = None,
    min_areas: np.ndarray | None = None,
    min_peaks: np.ndarray | None = None,
) -> tuple[float, int, float, float]:
    """The threshold, minimum mask area and minimum peak that maximise the metric (see
    :func:`binarization_table` for the arguments and :func:`best_cell` for ties)."""
    return best_cell(*binarization_table(truth, probs, thresholds, min_areas, min_peaks))


def best_threshold(
    truth: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None
) -> tuple[float, float]:
    """The probability threshold that maximises the metric, and that metric (no tile rule).

    Args:
        truth: binary masks ``(N, H, W)``.
        probs: probabilities ``(N, H, W)`` in [0, 1].
        thresholds: candidates; by default 0.05..0.95 in steps of 0.01.
    Returns:
        ``(threshold, metric)``; ties go to the threshold closest to 0.5.
    """
    threshold, _, _, metric = best_binarization(
        truth, probs, thresholds, np.array([0]), np.array([0.0])
    )
    return threshold, metric
