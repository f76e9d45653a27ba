"""The pseudo-label step: confident test tiles of the teachers' mean maps, dealt into folds."""

from __future__ import annotations

import logging

import numpy as np

from saltseg import layout
from saltseg import probs as probs_io
from saltseg.binarize import Cut, binarize, tune
from saltseg.data import kaggle
from saltseg.errors import InputError
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
    or 0.5 without either; ``balanced``'s cap on empty labels is the empty share of the same
    train tiles (all of them with ``cut_cv``).

    Test maps that are all one fold's (``<model>/fold<k>/test.parquet``: a fold teacher) make
    fold k's labels: every row is dealt to fold k, so its students learn from all of them.
    Other maps (a stage ensemble's) are dealt into the ``n_folds`` folds.

    Given one fold's test maps of every model and the other folds' OOF maps, no model behind the
    labels saw the fold's validation tiles, and neither the cut nor the cap reads their maps or
    truth; the cut's three numbers are tuned on maps of models that did train on them.
    """
    from saltseg.pseudo import (
        FEW_LABELS,
        FEW_LABELS_HELP,
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
    cut, held = teacher_cut(train, cut_cv, cut_oof)
    masks = binarize(maps, test.images, cut)
    if method == "balanced":
        share = empty_share(held.masks, kaggle.is_blank(held.images))
        table = select_balanced(maps, masks, blank, share, n_folds, seed, min_confidence)
    elif method == "confident":
        table = select_confident(maps, blank, n_folds, seed, min_confidence)
    else:
        table = select_phalanx(maps, blank, n_folds, seed)
    own = teacher_fold(test_probs, n_folds)
    if own is not None:
        table["fold"] = own
    teacher = "the stage ensemble" if own is None else f"the fold-{own} models"
    selection = f"{method} at min_confidence {min_confidence}, {teacher} cut at {cut}"
    index = table["index"].to_numpy()
    write_pseudo(out, [test.ids[i] for i in index], masks[index], table, selection)
    kept_empty = int((~masks[index].any(axis=(1, 2))).sum())
    per_fold = np.bincount(table["fold"], minlength=n_folds)
    folds = [own] if own is not None else list(range(n_folds))
    counts = ", ".join(f"fold {f}: {per_fold[f]}" for f in folds)
    log.info(
        "%d of %d test tiles kept as pseudo-labels (%s), %d of them empty; per fold: %s",
        len(index),
        len(test),
        selection,
        kept_empty,
        counts,
    )
    if min(per_fold[folds]) < FEW_LABELS:
        log.warning(
            "pseudo-labels: fewer than %d for a fold (%s) from %s: its students learn little "
            "from them. %s",
            FEW_LABELS,
            counts,
            selection,
            FEW_LABELS_HELP,
        )


def teacher_fold(test_probs: list[str], n_folds: int) -> int | None:
    """The fold k whose models alone made ``test_probs`` (every file ``<model>/fold<k>/...``),
    else None.

    Raises:
        InputError: the fold is not one of ``n_folds``.
    """
    try:
        folds = {layout.locate(path).fold for path in test_probs}
    except InputError:
        return None
    if len(folds) != 1 or None in folds:
        return None
    (fold,) = folds
    if fold >= n_folds:
        raise InputError(test_probs[0], f"expected a fold's test maps of folds 0-{n_folds - 1}")
    return fold


def teacher_cut(
    train: kaggle.Tiles, cut_cv: str | None, cut_oof: list[str] | None
) -> tuple[Cut, kaggle.Tiles]:
    """The cut of ``cut_cv``; or tuned on the train tiles that ``cut_oof`` holds (each tile's
    maps averaged over the files that hold it); or 0.5. With it, the train tiles it stands on
    (those of ``cut_oof``, else all)."""
    if cut_cv:
        return Cut.read(cut_cv), train
    if not cut_oof:
        return Cut(), train
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
    return tune(held.masks, maps).cut, held
