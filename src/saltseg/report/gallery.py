"""The OOF gallery: the worst out-of-fold tiles and the empty/non-empty confusion table."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from saltseg.binarize import Cut, binarize
from saltseg.data import kaggle
from saltseg.errors import InputError
from saltseg.io import write_json
from saltseg.metrics import tile_scores
from saltseg.mosaic.draw import render_mosaic
from saltseg.probs import align, read_probs
from saltseg.report.figure import new_figure, save_figure

GALLERY_PER_ROW = 4  # tiles (image | truth | prediction triplets) per gallery row


def _confusion(truth: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """Empty/non-empty confusion counts; the positive class is "tile has salt"."""
    t, p = truth.reshape(len(truth), -1).any(1), pred.reshape(len(pred), -1).any(1)
    return {
        "tp": int((t & p).sum()),
        "fp": int((~t & p).sum()),
        "fn": int((t & ~p).sum()),
        "tn": int((~t & ~p).sum()),
    }


def plot_oof_gallery(
    data_dir: str | Path,
    tile: int,
    oof_parquet: str | Path,
    threshold: Cut | float,
    out_png: str | Path,
    n: int = 24,
    counts_json: str | Path | None = None,
) -> dict[str, Any]:
    """Draw the ``n`` worst OOF tiles (image | truth | prediction) and the empty/non-empty table.

    Predictions are ``prob > threshold`` with blank tiles, and tiles under the cut's minimum
    area or peak, empty, as in the submission.
    Tiles are sorted from worst to best by the competition's tile score; ties put the tile with
    more wrong pixels first, then go by id.

    Args:
        data_dir: dataset in Kaggle layout (train images and masks).
        tile: tile side in pixels.
        oof_parquet: OOF probabilities (saltseg probability parquet, one map per train id).
        threshold: the binarisation (a :class:`~saltseg.binarize.Cut`, or a bare threshold).
        out_png: the figure to write.
        n: how many of the worst tiles to draw (all when fewer).
        counts_json: when given, the counts, threshold and mean score are written there as JSON.

    Returns:
        ``tp, fp, fn, tn`` (positive = the tile has salt: ``fp`` is an empty tile predicted with
        salt, ``fn`` a salt tile predicted empty), ``n_tiles``, ``shown``, ``mean_score``,
        ``threshold``, and ``order``: every train id from worst to best.

    Raises:
        InputError: unreadable inputs, a train id without an OOF map, or ``n < 1``.
    """
    if n < 1:
        raise InputError("n", f"expected at least 1 tile to show, got {n}")
    train = kaggle.load_train(data_dir, tile)
    maps_ids, maps = read_probs(oof_parquet)
    probs = align(oof_parquet, train.ids, maps_ids, maps)
    cut = Cut.of(threshold)
    pred = binarize(probs, train.images, cut).astype(bool)
    truth = train.masks.astype(bool)
    scores = tile_scores(truth, pred)
    wrong = (truth != pred).reshape(len(truth), -1).sum(1)
    order = np.lexsort((np.array(train.ids), -wrong, scores))
    counts = _confusion(truth, pred)
    shown = order[: min(n, len(order))]
    summary = {
        **counts,
        "n_tiles": len(train),
        "shown": len(shown),
        "mean_score": float(scores.mean()),
        **asdict(cut),
    }
    _draw_gallery(train, truth, pred, scores, shown, summary, out_png)
    if counts_json is not None:
        write_json(counts_json, summary)
    return {**summary, "order": [train.ids[k] for k in order]}


def _draw_gallery(train, truth, pred, scores, shown, summary, out_png) -> None:
    per_row = min(GALLERY_PER_ROW, len(shown))
    rows = math.ceil(len(shown) / per_row)
    fig = new_figure(3.6 * per_row, 1.45 * rows + 1.6)
    head, body = fig.subfigures(2, 1, height_ratios=[1.6, 1.45 * rows])
    head.suptitle(
        f"OOF gallery: worst {len(shown)} of {summary['n_tiles']} tiles by tile score "
        f"(threshold {summary['threshold']:.2f}, mean tile score {summary['mean_score']:.3f})",
        fontsize=12,
    )
    note, table_ax = head.subplots(1, 2, width_ratios=[1.4, 1])
    note.axis("off")
    note.text(
        0,
        0.5,
        "Each tile: image | true mask (white = salt) | prediction on the image (red).\n"
        "Tile score: share of IoU thresholds 0.50..0.95 passed; an empty truth\n"
        "scores 1 only with an empty prediction. Blank tiles are predicted empty.",
        va="center",
        fontsize=9,
    )
    table_ax.axis("off")
    c = summary
    table = table_ax.table(
        cellText=[[f"TN {c['tn']}", f"FP {c['fp']}"], [f"FN {c['fn']}", f"TP {c['tp']}"]],
        rowLabels=["truth empty", "truth salt"],
        colLabels=["predicted empty", "predicted salt"],
        cellLoc="center",
        bbox=[0.3, 0.05, 0.6, 0.7],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table_ax.text(0.6, 0.82, "tiles by emptiness (positive: salt)", ha="center", fontsize=9)
    grid = body.add_gridspec(
        rows, 4 * per_row - 1, width_ratios=([1, 1, 1, 0.2] * per_row)[:-1], wspace=0.05
    )
    for slot, k in enumerate(shown):
        r, c0 = divmod(slot, per_row)
        panels = [body.add_subplot(grid[r, 4 * c0 + j]) for j in range(3)]
        one = pd.DataFrame({"id": ["t"], "x": [0], "y": [0]})
        overlay = render_mosaic(one, {"t": train.images[k]}, {"t": pred[k].astype(np.uint8)})
        panels[0].imshow(train.images[k], cmap="gray", vmin=0, vmax=255)
        panels[1].imshow(truth[k], cmap="gray", vmin=0, vmax=1)
        panels[2].imshow(cv2.cvtColor(overlay, cv2.COLOR_BGR2RGB))
        panels[1].set_title(f"{train.ids[k]}  score {scores[k]:.2f}", fontsize=8)
        for ax in panels:
            ax.set_xticks([])
            ax.set_yticks([])
    save_figure(fig, out_png)
