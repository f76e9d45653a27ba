"""Seam matching: which tile continues which, edge to edge, from pixels alone.

1. Seam vectors. For a seam between tile ``a`` (left or top) and ``b`` (right or bottom), each
   side predicts the pixel row just beyond its edge by linear prediction from its ``order`` rows
   nearest the edge, with coefficients fitted by least squares on the tiles' own interiors
   (``order=2`` with (2, -1) is the winners' ``2*edge - next``; the fitted 6-row predictor finds
   clearly more top/bottom pairs). Each border is z-scored by its edge row, which undoes the
   per-tile contrast stretch of the competition tiles. The seam distance
   ``|pred_a - edge_b|^2 + |pred_b - edge_a|^2`` is one Euclidean distance between stacked
   vectors, so nearest neighbours come from blocked matrix products.
2. Candidates. Every border keeps its ``k`` nearest opposite borders and every opposite border its
   ``k`` nearest borders. A pair's ratio is sqrt(distance / best alternative distance) on the worse
   of its two sides: below 1 for mutual nearest neighbours, small when clearly better than the
   second best (the ratio test).

Blank tiles (one grey value) and borders whose edge row is nearly flat carry no evidence: they are
never matched, and a blank tile is a mosaic of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from saltseg.data.kaggle import is_blank
from saltseg.errors import InputError
from saltseg.mosaic.params import AssemblyParams

KINDS = ("lr", "tb")


def check_images(images: np.ndarray) -> np.ndarray:
    """Return ``images`` as an array, or raise InputError unless it is (N, H, W)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] < 8 or images.shape[2] < 8:
        raise InputError("images", f"expected an (N, H, W) stack of tiles, got {images.shape}")
    return images


def _strips(images: np.ndarray, kind: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows nearest each seam side, edge first: (of tile a, of tile b), both (N, depth, L)."""
    x = images.transpose(0, 2, 1) if kind == "lr" else images
    return x[:, : -depth - 1 : -1].astype(np.float32), x[:, :depth].astype(np.float32)


def _tile_stats(images: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile mean and std (float64), computed in chunks to bound memory."""
    mean, std = np.empty(len(images)), np.empty(len(images))
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].astype(np.float64)
        mean[start : start + chunk] = part.mean(axis=(1, 2))
        std[start : start + chunk] = part.std(axis=(1, 2))
    return mean, np.maximum(std, 1e-6)


def fit_predictor(
    images: np.ndarray, kind: str, order: int = 6, samples: int = 200_000, max_tiles: int = 2048
) -> np.ndarray:
    """Least-squares linear predictor of a pixel from the ``order`` pixels before it.

    "Before" runs across ``kind``'s seams (along rows for ``"lr"``, down columns for ``"tb"``),
    in both directions, on z-scored non-blank tiles; a fixed sample (seed 0) keeps the result
    deterministic. Falls back to ``2*edge - next`` when there is too little data.

    Args:
        images: (N, H, W) tiles.
        kind: ``"lr"`` or ``"tb"``.
        order: pixels used by the prediction.
        samples: pixel positions sampled for the fit.
        max_tiles: tiles sampled for the fit.

    Returns:
        (order,) float32 coefficients, the first for the pixel nearest the predicted one.
    """
    if kind not in KINDS:
        raise InputError("kind", f"expected one of {KINDS}, got {kind!r}")
    if order < 1:
        raise InputError("order", f"expected at least 1 pixel, got {order}")
    fallback = np.zeros(order, np.float32)
    fallback[:2] = (2.0, -1.0)[:order]
    x = check_images(images)
    x = x[~is_blank(x)]
    if kind == "lr":
        x = x.transpose(0, 2, 1)
    if len(x) == 0 or x.shape[1] <= order + 1:
        return fallback
    rng = np.random.default_rng(0)
    if len(x) > max_tiles:
        x = x[np.sort(rng.choice(len(x), max_tiles, replace=False))]
    height = x.shape[1]
    tile = rng.integers(0, len(x), samples)
    row = rng.integers(order, height, samples)  # predicted going down ...
    col = rng.integers(0, x.shape[2], samples)
    flip = rng.random(samples) < 0.5  # ... or, for half the samples, going up
    row = np.where(flip, height - 1 - row, row)
    sign = np.where(flip, 1, -1)
    mean, std = _tile_stats(x)
    past = np.stack([x[tile, row + sign * (j + 1), col] for j in range(order)], axis=1)
    past = (past - mean[tile, None]) / std[tile, None]
    target = (x[tile, row, col] - mean[tile]) / std[tile]
    coef, *_ = np.linalg.lstsq(past, target, rcond=None)
    return coef.astype(np.float32) if np.isfinite(coef).all() else fallback


@dataclass
class SeamFeatures:
    """Stacked seam vectors of one kind: distance(a, b) = mean((u[a] - v[b])^2).

    Attributes:
        u: (N, 2L) float32, every tile as the left/top side.
        v: (N, 2L) float32, every tile as the right/bottom side.
        valid_u: (N,) bool, the left/top side carries evidence.
        valid_v: (N,) bool, the right/bottom side carries evidence.
    """

    u: np.ndarray
    v: np.ndarray
    valid_u: np.ndarray
    valid_v: np.ndarray

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Mean squared z-residual of the seams ``a[i] | b[i]``."""
        diff = self.u[a] - self.v[b]
        return (diff * diff).mean(axis=-1)


def seam_features(
    images: np.ndarray, kind: str, coef: np.ndarray, min_border_std: float = 2.0
) -> SeamFeatures:
    """Seam vectors of every tile for ``kind`` (see the module docstring).

    Args:
        images: (N, H, W) tiles.
        kind: ``"lr"`` or ``"tb"``.
        coef: predictor from :func:`fit_predictor`.
        min_border_std: borders whose edge row has a smaller std (grey levels) carry no evidence.

    Returns:
        The :class:`SeamFeatures`.
    """
    images = check_images(images)
    if len(coef) >= min(images.shape[1:]):
        raise InputError("order", f"expected fewer rows ({len(coef)}) than the tile's side")
    blank = is_blank(images)
    sides = []
    for rows in _strips(images, kind, len(coef)):
        edge = rows[:, 0]
        std = edge.std(axis=1)
        z = (rows - edge.mean(axis=1)[:, None, None]) / np.maximum(std, 1e-3)[:, None, None]
        pred = np.einsum("o,nol->nl", coef, z)
        sides.append((z[:, 0], pred, (std >= min_border_std) & ~blank))
    (a_edge, a_pred, a_ok), (b_edge, b_pred, b_ok) = sides
    u = np.concatenate([a_pred, a_edge], axis=1).astype(np.float32)
    v = np.concatenate([b_edge, b_pred], axis=1).astype(np.float32)
    return SeamFeatures(u, v, a_ok, b_ok)


def _smallest(d: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` smallest of ``d`` with their ``index``, by distance then index."""
    if d.shape[1] > k:
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        d, index = np.take_along_axis(d, part, 1), np.take_along_axis(index, part, 1)
    order = np.lexsort((index, d), axis=-1)
    return np.take_along_axis(d, order, 1), np.take_along_axis(index, order, 1)


def _pad(x: np.ndarray, k: int) -> np.ndarray:
    """Pad (n, m < k) neighbour arrays to ``k`` columns with inf (distances) or -1 (indices)."""
    if x.shape[1] >= k:
        return x
    fill = np.inf if x.dtype.kind == "f" else -1
    return np.hstack([x, np.full((len(x), k - x.shape[1]), fill, x.dtype)])


def nearest(
    feats: SeamFeatures, k: int = 4, block: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` nearest right/bottom borders of every left/top border, and vice versa.

    Blocked matrix products, no Python loop over pairs. A tile is never its own neighbour;
    borders without evidence have no neighbours (distance inf, index -1).

    Args:
        feats: seam vectors of one kind.
        k: neighbours kept per border.
        block: rows of the distance matrix computed at once.

    Returns:
        (row_d, row_i, col_d, col_i): (N, k) distances and indices of the right/bottom tiles
        nearest each left/top tile, and of the left/top tiles nearest each right/bottom tile.
    """
    u, v = feats.u, feats.v
    n, dim = u.shape
    uu, vv = (u * u).sum(1), (v * v).sum(1)
    rows_d, rows_i = [np.zeros((0, k), np.float32)], [np.zeros((0, k), np.int64)]
    col_d, col_i = np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        d = u[start:stop] @ v.T
        d *= -2.0
        d += uu[start:stop, None]
        d += vv[None, :]
        np.maximum(d, 0.0, out=d)
        d /= dim
        d[:, ~feats.valid_v] = np.inf
        d[~feats.valid_u[start:stop]] = np.inf
        a = np.arange(start, stop)
        d[a - start, a] = np.inf
        best_d, best_i = _smallest(d, np.broadcast_to(np.arange(n), d.shape), k)
        rows_d.append(_pad(best_d, k))
        rows_i.append(_pad(best_i, k))
        cd, ci = _smallest(np.ascontiguousarray(d.T), np.broadcast_to(a, (n, len(a))), k)
        col_d, col_i = _smallest(np.hstack([col_d, cd]), np.hstack([col_i, ci]), k)
    row_d, row_i = np.vstack(rows_d), np.vstack(rows_i)
    col_d, col_i = _pad(col_d, k), _pad(col_i, k)
    row_i[~np.isfinite(row_d)] = -1
    col_i[~np.isfinite(col_d)] = -1
    return row_d, row_i, col_d, col_i


@dataclass
class SeamIndex:
    """Seam features of one kind with their nearest neighbours, to score any pair of tiles."""

    feats: SeamFeatures
    row_d: np.ndarray
    row_i: np.ndarray
    col_d: np.ndarray
    col_i: np.ndarray

    def ratio(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance and ratio of the seams ``a[i] | b[i]``; NaN where a side has no evidence.

        The ratio is sqrt(distance / best alternative of either side): below 1 for mutual
        nearest neighbours, 1 for exact duplicates and where neither side has an alternative.
        """
        a, b = np.atleast_1d(np.asarray(a, np.int64)), np.atleast_1d(np.asarray(b, np.int64))
        dist = self.feats.distance(a, b).astype(np.float64)
        alt_row = np.where(self.row_i[a, 0] == b, self.row_d[a, 1], self.row_d[a, 0])
        alt_col = np.where(self.col_i[b, 0] == a, self.col_d[b, 1], self.col_d[b, 0])
        alt = np.minimum(alt_row, alt_col).astype(np.float64)
        ratio = np.sqrt((dist + 1e-6) / (alt + 1e-6))
        ratio[~np.isfinite(alt)] = 1.0  # no alternative: nothing to be clearly better than
        ok = self.feats.valid_u[a] & self.feats.valid_v[b]
        return np.where(ok, dist, np.nan), np.where(ok, ratio, np.nan)


def seam_index(images: np.ndarray, kind: str, params: AssemblyParams) -> SeamIndex:
    """Fit the predictor, build the seam features and their nearest neighbours for ``kind``."""
    if params.k < 2:
        raise InputError("k", f"expected at least 2 neighbours (best and second), got {params.k}")
    coef = fit_predictor(images, kind, params.order)
    feats = seam_features(images, kind, coef, params.min_border_std)
    return SeamIndex(feats, *nearest(feats, params.k, params.block))


def candidates(index: SeamIndex, kind: str) -> pd.DataFrame:
    """Every pair in either side's neighbour list: columns a, b, kind, score, ratio."""
    n, k = index.row_i.shape
    a = np.concatenate([np.repeat(np.arange(n), k), index.col_i.ravel()])
    b = np.concatenate([index.row_i.ravel(), np.repeat(np.arange(n), k)])
    keep = (a >= 0) & (b >= 0)
    pairs = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0).reshape(-1, 2)
    score, ratio = index.ratio(pairs[:, 0], pairs[:, 1])
    return pd.DataFrame(
        {"a": pairs[:, 0], "b": pairs[:, 1], "kind": kind, "score": score, "ratio": ratio}
    )


def all_candidates(images: np.ndarray, params: AssemblyParams) -> tuple[dict, pd.DataFrame]:
    """Seam indexes of both kinds and all their candidates, sorted by ratio (ties: kind, a, b)."""
    indexes = {kind: seam_index(images, kind, params) for kind in KINDS}
    pairs = pd.concat([candidates(indexes[kind], kind) for kind in KINDS], ignore_index=True)
    pairs = pairs.sort_values(["ratio", "kind", "a", "b"], kind="stable")
    return indexes, pairs.reset_index(drop=True)


def find_pairs(
    images: np.ndarray, params: AssemblyParams | None = None, ratio: float | None = None
) -> pd.DataFrame:
    """Mutual nearest-neighbour seams that pass the ratio test (no layout).

    Args:
        images: (N, H, W) uint8 tiles.
        params: matching knobs (defaults if None).
        ratio: keep pairs below this ratio (``params.ratio`` if None).

    Returns:
        DataFrame with columns a, b (int positions in ``images``), kind (``"lr"``: b is right of
        a; ``"tb"``: b is below a), score (mean squared z-residual of the seam, lower is better)
        and ratio (sqrt of score over the best alternative of either tile, lower is surer),
        sorted by ratio.
    """
    params = params or AssemblyParams()
    images = check_images(images)
    columns = {"a": "int64", "b": "int64", "kind": "object", "score": "float64", "ratio": "float64"}
    if len(images) < 2:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    _, pairs = all_candidates(images, params)
    limit = params.ratio if ratio is None else ratio
    return pairs[pairs["ratio"] < limit].reset_index(drop=True)
