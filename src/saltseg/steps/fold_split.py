"""Steps on the fold split: write ``folds.csv``, and split the labelled tiles by it."""

from __future__ import annotations

import numpy as np

from saltseg.data import kaggle
from saltseg.data.folds import make_folds, read_folds
from saltseg.errors import InputError
from saltseg.io import write_csv
from saltseg.mosaic.tables import read_table


def folds(
    data_dir: str,
    out: str,
    n_folds: int,
    seed: int,
    stratify: str,
    tile: int,
    layout: str | None = None,
) -> None:
    """Write ``folds.csv`` (id, fold) for the labelled tiles.

    ``stratify="mosaic"`` reads the mosaic of every tile from ``layout`` (the mosaic rule's
    ``tiles.parquet``).
    """
    masks, groups = None, None
    if stratify in ("coverage", "mosaic"):
        masks = kaggle.load_train(data_dir, tile).masks
    ids = kaggle.train_ids(data_dir)
    if stratify == "mosaic":
        groups = mosaic_of(layout, ids)
    depths = kaggle.read_depths(data_dir, ids)
    write_csv(out, make_folds(ids, depths, n_folds, seed, stratify, masks, groups))


def mosaic_of(layout: str | None, ids: list[str]) -> np.ndarray:
    """The mosaic id of every tile of ``ids``, from a mosaic ``tiles.parquet``."""
    if layout is None:
        raise InputError("--layout", "expected the mosaic tiles.parquet for stratify mosaic")
    table = read_table(layout, ["id", "mosaic_id"]).set_index("id")["mosaic_id"]
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise InputError(layout, f"expected a mosaic for every train id, {missing[0]!r} has none")
    return table.loc[ids].to_numpy()


def split(data_dir: str, folds_csv: str, fold: int, n_folds: int, tile: int):
    """The labelled tiles of every fold but ``fold`` (train) and of ``fold`` (validation)."""
    if not 0 <= fold < n_folds:
        raise InputError(
            "--fold", f"expected a fold in 0..{n_folds - 1} (n_folds {n_folds}), got {fold}"
        )
    tiles = kaggle.load_train(data_dir, tile)
    table = read_folds(folds_csv, n_folds).set_index("id")["fold"]
    missing = [i for i in tiles.ids if i not in table.index]
    if missing:
        raise InputError(folds_csv, f"expected a fold for every train id, {missing[0]!r} has none")
    in_val = table.loc[tiles.ids].to_numpy() == fold
    return tiles.subset(~in_val), tiles.subset(in_val)
