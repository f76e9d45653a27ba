"""K folds stratified by depth (or coverage): sort the tiles, deal each block of K to K folds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from saltseg.data.kaggle import read_table
from saltseg.errors import InputError

STRATIFY = ("depth", "coverage")


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
) -> pd.DataFrame:
    """Assign every id a fold in ``0..n_folds-1``.

    Tiles are sorted by depth (``stratify="depth"``) or by coverage class then depth
    (``"coverage"``); ties are broken by a seeded shuffle, and each consecutive block of
    ``n_folds`` sorted tiles is dealt to the folds in a seeded random order. Fold sizes therefore
    differ by at most one and the same seed gives the same folds.

    Returns:
        DataFrame with columns ``id, fold`` in the order of ``ids``.
    """
    if n_folds < 2 or n_folds > len(ids):
        raise InputError("folds.n_folds", f"expected 2..{len(ids)} (the tile count), got {n_folds}")
    if stratify not in STRATIFY:
        raise InputError(
            "folds.stratify", f"expected one of {', '.join(STRATIFY)}, got {stratify!r}"
        )
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


def read_folds(path, n_folds: int) -> pd.DataFrame:
    """Read ``folds.csv`` and check its folds lie in ``0..n_folds-1``."""
    frame = read_table(path, ["id", "fold"])
    if not frame["fold"].isin(range(n_folds)).all():
        raise InputError(
            path, f"expected folds 0..{n_folds - 1}, got {sorted(frame['fold'].unique())}"
        )
    return frame
