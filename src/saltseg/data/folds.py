"""K folds: stratified by depth or coverage (sort the tiles, deal each block of K to K folds), or
by mosaic (every mosaic inside one fold, folds balanced in size, coverage and depth)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from saltseg.data.kaggle import read_table
from saltseg.errors import InputError

STRATIFY = ("depth", "coverage", "mosaic")


def coverage_class(masks: np.ndarray, bins: int = 10) -> np.ndarray:
    """0 for empty masks, else 1..``bins`` by salt fraction."""
    fraction = masks.reshape(len(masks), -1).mean(axis=1)
    return np.where(fraction == 0, 0, np.ceil(fraction * bins)).astype(int)


def make_folds(
    ids: list[str],
    depths: np.ndarray,
    n_folds: int,
    seed: int,
    stratify: str = "depth",
    masks: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """Assign every id a fold in ``0..n_folds-1``.

    Tiles are sorted by depth (``stratify="depth"``) or by coverage class then depth
    (``"coverage"``); ties are broken by a seeded shuffle, and each consecutive block of
    ``n_folds`` sorted tiles is dealt to the folds in a seeded random order. Fold sizes therefore
    differ by at most one and the same seed gives the same folds. ``"mosaic"`` keeps each group
    (``groups``: the tile's mosaic) inside one fold: see :func:`group_folds`.

    Returns:
        DataFrame with columns ``id, fold`` in the order of ``ids``.
    """
    if n_folds < 2 or n_folds > len(ids):
        raise InputError("folds.n_folds", f"expected 2..{len(ids)} (the tile count), got {n_folds}")
    if stratify not in STRATIFY:
        raise InputError(
            "folds.stratify", f"expected one of {', '.join(STRATIFY)}, got {stratify!r}"
        )
    if stratify == "mosaic":
        if masks is None or groups is None:
            raise InputError("folds.stratify", "mosaic needs the train masks and the mosaic layout")
        return pd.DataFrame({"id": ids, "fold": group_folds(groups, depths, masks, n_folds, seed)})
    rng = np.random.default_rng(seed)
    shuffle = rng.permutation(len(ids))
    keys = [np.asarray(depths, dtype=float)[shuffle]]
    if stratify == "coverage":
        if masks is None:
            raise InputError("folds.stratify", "coverage needs the train masks")
        keys.append(coverage_class(masks)[shuffle])
    order = shuffle[np.lexsort(keys)]
    folds = np.empty(len(ids), dtype=int)
    for start in range(0, len(ids), n_folds):
        block = order[start : start + n_folds]
        folds[block] = rng.permutation(n_folds)[: len(block)]
    return pd.DataFrame({"id": ids, "fold": folds})


def balance_features(depths: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per tile, what a fold should hold its share of: one tile; an empty, small (under 10 %
    salt) or large salt mask; a depth in the lower, middle or upper third."""
    coverage = masks.reshape(len(masks), -1).mean(axis=1)
    kind = np.where(coverage == 0, 0, np.where(coverage < 0.1, 1, 2))
    depth = np.asarray(depths, dtype=float)
    third = np.searchsorted(np.quantile(depth, [1 / 3, 2 / 3]), depth, side="right")
    return np.column_stack([np.ones(len(depth)), np.eye(3)[kind], np.eye(3)[third]])


def group_folds(
    groups: np.ndarray, depths: np.ndarray, masks: np.ndarray, n_folds: int, seed: int
) -> np.ndarray:
    """Folds that keep every group (mosaic) whole and balance :func:`balance_features`.

    Groups are placed largest first (ties in a seeded order), each into the fold where it leaves
    the smallest squared deviation from the per-fold targets, every feature measured relative to
    its target; lone tiles (groups of one) then fill the folds evenly.

    Returns:
        the fold of every tile, in the order of ``groups``.
    """
    features = balance_features(depths, masks)
    labels, index = np.unique(np.asarray(groups), return_inverse=True)
    if len(labels) < n_folds:
        raise InputError(
            "folds.n_folds", f"expected at most {len(labels)} (the mosaic count), got {n_folds}"
        )
    per_group = np.zeros((len(labels), features.shape[1]))
    np.add.at(per_group, index, features)
    scale = np.maximum(per_group.sum(axis=0) / n_folds, 1.0)  # a fold's target share
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(-per_group[order, 0], kind="stable")]
    held = np.zeros((n_folds, features.shape[1]))
    fold_of_group = np.empty(len(labels), dtype=int)
    for g in order:
        after = ((held + per_group[g] - scale) / scale) ** 2
        before = ((held - scale) / scale) ** 2
        cost = after.sum(axis=1) - before.sum(axis=1)
        best = np.flatnonzero(np.isclose(cost, cost.min()))
        fold = best[np.argmin(held[best, 0])]
        fold_of_group[g] = fold
        held[fold] += per_group[g]
    return fold_of_group[index]


def read_folds(path, n_folds: int) -> pd.DataFrame:
    """Read ``folds.csv`` and check its folds lie in ``0..n_folds-1``."""
    frame = read_table(path, ["id", "fold"])
    if not frame["fold"].isin(range(n_folds)).all():
        raise InputError(
            path, f"expected folds 0..{n_folds - 1}, got {sorted(frame['fold'].unique())}"
        )
    return frame


def block_folds(positions: np.ndarray, n_folds: int) -> np.ndarray:
    """Folds of contiguous blocks: every tile at one position (a survey's slice) in one fold, and
    each fold a run of neighbouring positions, so a validation tile's nearest training tiles lie
    beyond its block's ends. Blocks are cut where the running tile count comes closest to equal
    shares; every fold gets at least one position.

    Returns:
        the fold of every tile, in the order of ``positions``; fold 0 holds the lowest positions.
    """
    labels, index, counts = np.unique(
        np.asarray(positions), return_inverse=True, return_counts=True
    )
    if not 2 <= n_folds <= len(labels):
        raise InputError(
            "folds.n_folds",
            f"expected 2..{len(labels)} (the interpreted slices), got {n_folds}",
        )
    ends = np.cumsum(counts)  # tiles in the first g + 1 positions
    fold_of_position = np.full(len(labels), n_folds - 1)
    begin = 0
    for fold in range(n_folds - 1):
        candidates = np.arange(begin + 1, len(labels) - (n_folds - fold - 1) + 1)
        target = ends[-1] * (fold + 1) / n_folds
        stop = candidates[np.argmin(np.abs(ends[candidates - 1] - target))]
        fold_of_position[begin:stop] = fold
        begin = stop
    return fold_of_position[index]
