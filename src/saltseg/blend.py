"""Blend weights fitted on OOF maps: non-negative, summing to one, a member that only costs at 0.

:func:`fit_weights` is greedy ensemble selection with replacement (Caruana et al., 2004): start
from the best member, then add, one step of ``1 / steps`` at a time, the member whose addition
raises the OOF metric most, and stop when no addition raises it. The blend of the fitted
weights is never worse than its best member on the tiles it was fitted on, and a member that
never raised the metric keeps weight 0. :func:`fit_within_folds` fits on all folds but one and
blends that fold with those weights: how well fitted weights do on tiles they were not fitted on.

The metric is :func:`blend_score`: the competition metric with the tuned cut (threshold, minimum
area and minimum peak, :func:`saltseg.binarize.tune`), blank tiles empty: the ``metric_tuned`` of
a ``cv.json`` and the ``oof_tuned`` of the summary, so a member's score here is its score there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saltseg.binarize import tune


def blend_score(truth: np.ndarray, maps: np.ndarray) -> float:
    """The metric of ``maps`` (blank tiles already zero) with its tuned cut."""
    return tune(truth, maps).metric


@dataclass(frozen=True)
class Fit:
    """Fitted ``weights`` (one per member, summing to one), the blend's ``score`` on the fitting
    tiles and each member's ``member_scores`` there."""

    weights: np.ndarray
    score: float
    member_scores: np.ndarray


def fit_weights(truth: np.ndarray, members: list[np.ndarray], steps: int = 10) -> Fit:
    """Greedy selection with replacement of ``members`` (maps ``(N, H, W)`` each) against
    ``truth``; ties go to the earlier member."""
    scores = np.array([blend_score(truth, m) for m in members])
    counts = np.zeros(len(members), int)
    first = int(np.argmax(scores))
    counts[first], blend, score = 1, members[first].astype(np.float32), float(scores[first])
    for _ in range(steps - 1):
        n = counts.sum()
        candidates = [(blend * n + m) / (n + 1) for m in members]
        gains = np.array([blend_score(truth, c) for c in candidates])
        best = int(np.argmax(gains))
        if gains[best] <= score + 1e-9:
            break
        counts[best] += 1
        blend, score = candidates[best], float(gains[best])
    return Fit(counts / counts.sum(), score, scores)


def weighted(members: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``sum(w * m)`` of the members with a weight above 0."""
    total = np.zeros_like(members[0], dtype=np.float32)
    for member, weight in zip(members, weights):
        if weight > 0:
            total += np.float32(weight) * member
    return total


def fit_within_folds(
    truth: np.ndarray, members: list[np.ndarray], folds: np.ndarray, steps: int = 10
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The blended OOF maps, each fold's tiles blended with weights fitted on the other folds,
    and those weights per fold."""
    blended = np.zeros_like(members[0], dtype=np.float32)
    by_fold = {}
    for fold in np.unique(folds):
        held = folds == fold
        fit = fit_weights(truth[~held], [m[~held] for m in members], steps)
        blended[held] = weighted([m[held] for m in members], fit.weights)
        by_fold[int(fold)] = fit.weights
    return blended, by_fold
