"""The pseudo-label step: confident test tiles of the teachers' mean maps, dealt into folds."""

from __future__ import annotations

import logging

from saltseg import probs as probs_io
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
) -> None:
    """Select confident test tiles of the mean of ``test_probs`` (see :mod:`saltseg.pseudo`).

    Given one fold's test maps of every model, the labels are leak-free for that fold: no model
    behind them saw its validation tiles.
    """
    from saltseg.pseudo import select_confident, select_phalanx, write_pseudo

    test = kaggle.load_test(data_dir, tile)
    ids, maps = mean_maps(test_probs)
    maps = probs_io.align(test_probs[0], test.ids, ids, maps)
    blank = kaggle.is_blank(test.images)
    if method == "confident":
        table = select_confident(maps, blank, n_folds, seed, min_confidence)
    else:
        table = select_phalanx(maps, blank, n_folds, seed)
    index = table["index"].to_numpy()
    write_pseudo(out, [test.ids[i] for i in index], maps[index] > 0.5, table)
    log.info("%d of %d test tiles kept as pseudo-labels (%s)", len(index), len(test), method)
