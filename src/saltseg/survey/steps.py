"""The survey's own versions of two steps, for data tiled by :mod:`saltseg.survey.tiling`:
the mosaic layout taken as known (``mosaics.csv``) instead of assembled from pixels, and folds
of contiguous slices instead of stratified ones. Both write what the usual steps write, so every
later step reads them unchanged."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.data import kaggle
from saltseg.data.folds import block_folds
from saltseg.errors import InputError
from saltseg.io import atomic_dir, atomic_path, check_folder_output, write_csv
from saltseg.mosaic.tables import LAYOUT
from saltseg.survey.tiling import MOSAICS

log = logging.getLogger(__name__)


def read_layout(data_dir: str | Path, ids: list[str]) -> pd.DataFrame:
    """``mosaics.csv`` (``id, mosaic_id, x, y``) of a tiled survey, rows in the order of ``ids``.

    Raises:
        InputError: no such table, or an id without a place.
    """
    path = Path(data_dir) / MOSAICS
    table = kaggle.read_table(path, LAYOUT).set_index("id")
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise InputError(path, f"expected a place for every tile, {missing[0]!r} has none")
    frame = table.loc[ids].reset_index()
    return frame.astype({"id": object, "mosaic_id": np.int64, "x": np.int64, "y": np.int64})


def known_pairs(tiles: pd.DataFrame) -> pd.DataFrame:
    """Every pair of tiles side by side (``lr``: b right of a; ``tb``: b below a) in a layout,
    as the mosaic rule's ``pairs.parquet``; a known seam scores 0 and ratio 0 (fully trusted)."""
    cell = {(m, x, y): i for i, m, x, y in tiles[LAYOUT].itertuples(index=False)}
    rows = [
        (i, cell[(m, x + dx, y + dy)], kind)
        for (m, x, y), i in cell.items()
        for dx, dy, kind in ((1, 0, "lr"), (0, 1, "tb"))
        if (m, x + dx, y + dy) in cell
    ]
    frame = pd.DataFrame(rows, columns=["id_a", "id_b", "kind"], dtype=object)
    zeros = np.zeros(len(frame))
    return frame.assign(score=zeros, ratio=zeros, joined=True, mutual=True)


def known_mosaic(
    data_dir: str, tile: int, tiles_out: str, pairs_out: str, png_dir: str, n_draw: int
) -> None:
    """The mosaic rule's tables from the survey's known layout; draw its largest slices."""
    from saltseg.mosaic.draw import draw_mosaic

    check_folder_output(png_dir)
    train, test = kaggle.load_train(data_dir, tile), kaggle.load_test(data_dir, tile)
    tiles = read_layout(data_dir, train.ids + test.ids)
    tiles = tiles.sort_values(["mosaic_id", "y", "x"], ignore_index=True)
    for frame, out in [(tiles, tiles_out), (known_pairs(tiles), pairs_out)]:
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False)
    images = dict(zip(train.ids + test.ids, np.concatenate([train.images, test.images])))
    masks = dict(zip(train.ids, train.masks))
    sizes = tiles["mosaic_id"].value_counts(sort=False).sort_index()
    largest = sizes.sort_values(ascending=False, kind="stable").index[:n_draw]
    with atomic_dir(png_dir) as tmp:
        for mosaic_id in largest:
            rows = tiles[tiles["mosaic_id"] == mosaic_id]
            draw_mosaic(rows, images, masks, tmp / f"mosaic{mosaic_id:04d}.png")
    log.info("%d tiles on %d slices (known layout)", len(tiles), len(sizes))


def survey_folds(data_dir: str, out: str, n_folds: int) -> None:
    """``folds.csv`` (id, fold) of a tiled survey: contiguous blocks of slices
    (:func:`saltseg.data.folds.block_folds`)."""
    ids = kaggle.train_ids(data_dir)
    slices = read_layout(data_dir, ids)["mosaic_id"].to_numpy()
    folds = block_folds(slices, n_folds)
    write_csv(out, pd.DataFrame({"id": ids, "fold": folds}))
    for fold in range(n_folds):
        held = np.unique(slices[folds == fold])
        log.info("fold %d: slices %d..%d, %d tiles", fold, held[0], held[-1], (folds == fold).sum())
