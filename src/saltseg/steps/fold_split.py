"""Steps on the fold split: write ``folds.csv``, and split the labelled tiles by it."""

from __future__ import annotations

from saltseg.data import kaggle
from saltseg.data.folds import make_folds, read_folds
from saltseg.errors import InputError
from saltseg.io import write_csv


def folds(data_dir: str, out: str, n_folds: int, seed: int, stratify: str, tile: int) -> None:
    """Write ``folds.csv`` (id, fold) for the labelled tiles."""
    masks = None
    if stratify == "coverage":
        masks = kaggle.load_train(data_dir, tile).masks
    ids = kaggle.train_ids(data_dir)
    frame = make_folds(ids, kaggle.read_depths(data_dir, ids), n_folds, seed, stratify, masks)
    write_csv(out, frame)


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
