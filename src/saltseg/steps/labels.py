"""The pseudo-label step: confident test tiles of the teachers' mean maps, dealt into folds."""

from __future__ import annotations

import logging

import numpy as np

from saltseg import probs as probs_io
from saltseg.binarize import Cut, binarize, tune
from saltseg.data import kaggle
from saltseg.steps.ensembles import mean_maps

log = logging.getLogger(__name__)


def pseudo_labels(
    data_dir: str,
    tile: int,
    test_probs: list[str],
    method: str,
    min_confidence: float,
    n_folds: int,
    seed: int,
    out: str,
    cut_cv: str | None = None,
    cut_oof: list[str] | None = None,
) -> None:
    """Select confident test tiles of the mean of ``test_probs`` (see :mod:`saltseg.pseudo`),
    their masks cut at the teacher's tuned cut (threshold and tile-emptiness rules).

    The cut is the one of ``cut_cv`` (a teacher's cv.json), or tuned here on ``cut_oof`` (OOF
    maps of the folds other than the labels' fold, several models' maps of a tile averaged),
    or 0.5 without either. Given one fold's test maps of every model and the other folds' OOF
    maps, the labels are leak-free for that fold: no model behind them saw its validation
    tiles, and no label of its validation tiles chose the cut.
    """
    from saltseg.pseudo import (
        empty_share,
        select_balanced,
        select_confident,
        select_phalanx,
        write_pseudo,
    )

    test = kaggle.load_test(data_dir, tile)
    ids, maps = mean_maps(test_probs)
    maps = probs_io.align(test_probs[0], test.ids, ids, maps)
    blank = kaggle.is_blank(test.images)
    train = kaggle.load_train(data_dir, tile)
    cut = teacher_cut(train, cut_cv, cut_oof)
    masks = binarize(maps, test.images, cut)
    if method == "balanced":
        share = empty_share(train.masks, kaggle.is_blank(train.images))
        table = select_balanced(maps, masks, blank, share, n_folds, seed, min_confidence)
    elif method == "confident":
        table = select_confident(maps, blank, n_folds, seed, min_confidence)
    else:
        table = select_phalanx(maps, blank, n_folds, seed)
    index = table["index"].to_numpy()
    write_pseudo(out, [test.ids[i] for i in index], masks[index], table)
    kept_empty = int((~masks[index].any(axis=(1, 2))).sum())
    log.info(
        "%d of %d test tiles kept as pseudo-labels (%s, cut %s), %d of them empty",
        len(index),
        len(test),
        method,
        cut,
        kept_empty,
    )


def teacher_cut(train: kaggle.Tiles, cut_cv: str | None, cut_oof: list[str] | None) -> Cut:
    """The cut of ``cut_cv``; or tuned on the train tiles that ``cut_oof`` holds (each tile's
    maps averaged over the files that hold it); or 0.5."""
    if cut_cv:
        return Cut.read(cut_cv)
    if not cut_oof:
        return Cut()
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for path in cut_oof:
        part_ids, part_maps = probs_io.read_probs(path)
        for tile_id, tile_map in zip(part_ids, part_maps):
            sums[tile_id] = sums.get(tile_id, 0.0) + tile_map
            counts[tile_id] = counts.get(tile_id, 0) + 1
    held = train.subset(np.array([i in sums for i in train.ids]))
    maps = np.stack([sums[i] / counts[i] for i in held.ids])
    maps[kaggle.is_blank(held.images)] = 0.0
    return tune(held.masks, maps).cut
