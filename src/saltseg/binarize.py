"""Binarisation, in one place: how probability maps become masks (the :class:`Cut`), how the cut is
tuned on OOF maps (:func:`tune`), and which cut a step uses (:func:`resolve_cut`: ``fixed``,
``tuned`` or a number).

The competition metric it is tuned for lives in :mod:`saltseg.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saltseg.data.kaggle import is_blank
from saltseg.errors import InputError
from saltseg.io import read_json
from saltseg.metrics import scores_from_counts

#: the ways to choose a cut: ``fixed`` (0.5, no tile rules: the winners') and ``tuned`` (OOF-best)
MODES = ("fixed", "tuned")


@dataclass(frozen=True)
class Cut:
    """How maps become masks: pixels above ``threshold``; a tile is empty when fewer than
    ``min_area`` pixels pass, or when its largest probability is under ``min_peak`` (the
    tile-level emptiness rules, tuned on OOF with the threshold)."""

    threshold: float = 0.5
    min_area: int = 0
    min_peak: float = 0.0

    @classmethod
    def of(cls, cut: Cut | float) -> Cut:
        """A cut as is, or a bare threshold as a cut without tile rules."""
        return cut if isinstance(cut, Cut) else cls(float(cut))

    @classmethod
    def read(cls, cv_json: str | Path, pixels: bool = False) -> Cut:
        """The OOF-tuned cut of a ``cv.json``: threshold, minimum area and minimum peak for
        tiles, or with ``pixels`` the threshold tuned without tile rules (``threshold_pixels``,
        for maps without tiles such as whole sections).

        Raises:
            InputError: the file is missing or holds no threshold.
        """
        cv = read_json(cv_json, ("threshold",), what="a cv.json with a tuned threshold")
        try:
            if pixels:
                return cls(float(cv.get("threshold_pixels", cv["threshold"])))
            return cls(
                float(cv["threshold"]), int(cv.get("min_area", 0)), float(cv.get("min_peak", 0.0))
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(cv_json, "expected a cv.json with a tuned threshold") from None


def resolve_cut(threshold: str | float, cv_json: str | Path | None, pixels: bool = False) -> Cut:
    """The cut a step applies: ``fixed`` is 0.5 with no tile rules (the winners), ``tuned`` the
    OOF-best cut of ``cv_json`` (with ``pixels``: its threshold without tile rules, for maps
    without tiles), a number in [0, 1] that threshold alone.

    Raises:
        InputError: a threshold that is none of these, or a ``cv_json`` that holds no tuned cut.
    """
    if threshold == "fixed":
        return Cut()
    if threshold == "tuned":
        if cv_json is None:
            raise InputError("--cv", "expected the cv.json whose tuned threshold to use")
        return Cut.read(cv_json, pixels=pixels)
    try:
        value = float(threshold)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise InputError(
            "--threshold", f"expected tuned, fixed or a number in [0, 1], got {threshold!r}"
        )
    return Cut(value)


def binarize(maps: np.ndarray, images: np.ndarray, cut: Cut | float) -> np.ndarray:
    """``maps > cut`` as uint8 masks; blank tiles (one grey value), tiles whose mask is smaller
    than the cut's ``min_area`` and tiles whose largest probability is under its ``min_peak``
    are empty."""
    cut = Cut.of(cut)
    # compared in float64, as binarization_table tunes it: a float32 map at a quantisation level
    # equal to the threshold (0.4 is 102/255) would otherwise pass in tuning and fail here
    masks = remove_small(maps > np.float64(cut.threshold), cut.min_area).astype(np.uint8)
    masks[is_blank(images) | (maps.max(axis=(1, 2)) < np.float64(cut.min_peak))] = 0
    return masks


def remove_small(pred: np.ndarray, min_area: int) -> np.ndarray:
    """Masks ``(N, H, W)`` with every tile of fewer than ``min_area`` salt pixels emptied."""
    pred = np.asarray(pred, dtype=bool)
    small = pred.reshape(len(pred), -1).sum(axis=1) < min_area
    return np.where(small[:, None, None], False, pred)


@dataclass(frozen=True)
class Tuned:
    """What :func:`tune` finds: the best ``cut`` and its ``metric``, and the best threshold
    without tile rules (``threshold_pixels``, for maps without tiles such as whole sections)."""

    cut: Cut
    metric: float
    threshold_pixels: float


def tune(truth: np.ndarray, probs: np.ndarray) -> Tuned:
    """The best cut of ``probs`` against ``truth`` on the default grid of
    :func:`binarization_table` (ties as in :func:`best_cell`), and the best threshold alone."""
    thresholds, min_areas, min_peaks, table = binarization_table(truth, probs)
    threshold, min_area, min_peak, metric = best_cell(thresholds, min_areas, min_peaks, table)
    # min_areas[0] and min_peaks[0] are 0: the tile rules off
    pixels = best_cell(thresholds, min_areas[:1], min_peaks[:1], table[:, :1, :1])[0]
    return Tuned(Cut(threshold, min_area, min_peak), metric, pixels)


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
    truth = np.asarray(truth, dtype=bool).reshape(len(truth), -1)
    truth_empty = ~truth.any(axis=1)
    flat = np.asarray(probs).reshape(len(probs), -1)
    peak = flat.max(axis=1)
    low = (peak[None, :] < np.asarray(min_peaks)[:, None]).astype(np.float64)  # (P, N)
    area, inter = _counts_above(flat, truth, np.asarray(thresholds, dtype=np.float64))
    union = area + truth.sum(axis=1)[None, :] - inter
    table = np.empty((len(thresholds), len(min_areas), len(min_peaks)))
    for i in range(len(thresholds)):
        # in tenths of a tile, integers: a tile's score is a count of 10 IoU thresholds
        tenths = np.rint(10 * scores_from_counts(inter[i], union[i]))
        gain = 10.0 * truth_empty - tenths  # what emptying each tile changes
        small = (area[i][None, :] < np.asarray(min_areas)[:, None]).astype(np.float64)  # (A, N)
        # emptied = small or low peak: count both, less the tiles that are both
        change = (small @ gain)[:, None] + (low @ gain)[None, :] - (small * gain) @ low.T
        table[i] = (tenths.sum() + change) / (10 * len(tenths))
    return thresholds, min_areas, min_peaks, table


def _counts_above(
    flat: np.ndarray, truth: np.ndarray, thresholds: np.ndarray, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """``(area, inter)``, each ``(T, N)``: per threshold and tile, the pixels of ``flat`` (tiles
    ``(N, H*W)``) above it, and those of them in ``truth``.

    One pass over the maps instead of one per threshold: a pixel's rank is how many thresholds
    lie below it (compared in float64, as :func:`binarize` does); a tile's count of ranks,
    summed from the top, gives every threshold's count at once.
    """
    order = np.argsort(thresholds, kind="stable")
    bins = len(thresholds) + 1
    ranks = np.zeros((2, len(flat), bins), np.int64)  # all pixels, truth pixels
    for start in range(0, len(flat), chunk):  # float64 copies of a chunk of tiles at a time
        part = slice(start, start + chunk)
        rank = np.searchsorted(thresholds[order], flat[part].astype(np.float64), side="left")
        cell = np.arange(len(rank))[:, None] * bins + rank
        for k, pick in enumerate([cell.ravel(), cell[truth[part]]]):
            ranks[k, part] = np.bincount(pick, minlength=len(rank) * bins).reshape(-1, bins)
    # above the j-th smallest threshold: ranks j + 1 and up
    above = np.cumsum(ranks[:, :, ::-1], axis=2)[:, :, ::-1][:, :, 1:]
    area, inter = above.transpose(0, 2, 1)[:, np.argsort(order)]
    return area, inter


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
