"""Steps from the ensemble to the submission: threshold, mosaics, post-processing, RLE, summary."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saltseg import layout, rle
from saltseg import probs as probs_io
from saltseg.binarize import Cut, binarize, resolve_cut
from saltseg.data import kaggle
from saltseg.data.folds import read_folds
from saltseg.io import (
    atomic_dir,
    atomic_path,
    check_folder_output,
    read_json,
    write_csv,
    write_json,
)
from saltseg.metrics import bucket_scores, competition_metric

log = logging.getLogger(__name__)


def mosaic(data_dir: str, tile: int, tiles_out: str, pairs_out: str, png_dir: str, n_draw: int):
    """Assemble train and test tiles into mosaics; draw the largest ones with train masks."""
    from saltseg.mosaic.assemble import assemble
    from saltseg.mosaic.draw import draw_mosaic

    check_folder_output(png_dir)  # before the parquets: a refused folder leaves nothing written
    train, test = kaggle.load_train(data_dir, tile), kaggle.load_test(data_dir, tile)
    ids = train.ids + test.ids
    tiles, pairs = assemble(ids, np.concatenate([train.images, test.images]))
    for frame, out in [(tiles, tiles_out), (pairs, pairs_out)]:
        with atomic_path(out) as tmp:
            frame.to_parquet(tmp, index=False)
    images = dict(zip(ids, np.concatenate([train.images, test.images])))
    masks = dict(zip(train.ids, train.masks))
    with atomic_dir(png_dir) as tmp:
        for mosaic_id, rows in list(tiles.groupby("mosaic_id", sort=True))[:n_draw]:
            if len(rows) > 1:
                draw_mosaic(rows, images, masks, tmp / f"mosaic{mosaic_id:04d}.png")
    sizes = tiles["mosaic_id"].value_counts()
    log.info(
        "%d tiles, %d mosaics of 2+ tiles, largest %d", len(tiles), (sizes > 1).sum(), sizes.max()
    )


def context_windows(
    data_dir: str, tile: int, layout: str, pairs: str, margin: int, max_ratio: float, out: str
) -> None:
    """Cache every train and test tile's context window (margin ``margin``) from the mosaic."""
    from saltseg.mosaic.context import build_context
    from saltseg.mosaic.tables import LAYOUT, PAIRS, read_table

    train, test = kaggle.load_train(data_dir, tile), kaggle.load_test(data_dir, tile)
    tables = [read_table(layout, LAYOUT), read_table(pairs, PAIRS)]
    images = np.concatenate([train.images, test.images])
    context = build_context(train.ids + test.ids, images, *tables, margin, max_ratio)
    context.write(out)
    sides = (context.neighbours[:, [0, 1, 1, 2], [1, 0, 2, 1]] >= 0).sum()
    log.info(
        "%d windows of %d px; %d of %d sides come from a trusted neighbour (ratio < %g)",
        len(images),
        tile + 2 * margin,
        sides,
        4 * len(images),
        max_ratio,
    )


def postprocess(
    data_dir: str,
    tile: int,
    layout: str,
    folds_csv: str,
    n_folds: int,
    oof_probs: str,
    test_probs: str,
    cv_json: str,
    threshold: str,
    enabled: bool,
    masks_out: str,
    report_out: str,
    changes_out: str,
) -> None:
    """Binarise the test maps and apply the mosaic rules where they do not lower the OOF metric.

    The rules are validated on OOF predictions first: each fold's tiles play "test" and the
    other folds' true masks play "train". The rules then reach the real test tiles only when
    ``enabled`` and the OOF gain is not negative; the report says which happened.
    """
    from saltseg.mosaic.postprocess import apply
    from saltseg.mosaic.tables import LAYOUT, read_table

    cut = resolve_cut(threshold, cv_json)
    tiles = read_table(layout, LAYOUT)
    train, test = kaggle.load_train(data_dir, tile), kaggle.load_test(data_dir, tile)
    blank = {
        i
        for i, b in zip(
            train.ids + test.ids, kaggle.is_blank(np.concatenate([train.images, test.images]))
        )
        if b
    }
    oof_ids, oof = probs_io.read_probs(oof_probs)
    oof_masks = binarize(probs_io.align(oof_probs, train.ids, oof_ids, oof), train.images, cut)
    folds = read_folds(folds_csv, n_folds).set_index("id")["fold"].loc[train.ids].to_numpy()
    after, oof_log = oof_masks.copy(), []
    truth = dict(zip(train.ids, train.masks))
    for fold in range(n_folds):
        held = {i: m for i, m, f in zip(train.ids, oof_masks, folds) if f == fold}
        known = {i: m for i, m in truth.items() if i not in held}
        new, changes = apply(tiles, known, held, blank)
        for k, i in enumerate(train.ids):
            if i in new:
                after[k] = new[i]
        oof_log.append(changes)
    before_score = competition_metric(train.masks, oof_masks)
    after_score = competition_metric(train.masks, after)
    gain = after_score - before_score
    applied = enabled and gain >= 0
    buckets = bucket_scores(train.masks, after if applied else oof_masks)
    test_ids, test_maps = probs_io.read_probs(test_probs)
    test_masks = binarize(
        probs_io.align(test_probs, test.ids, test_ids, test_maps), test.images, cut
    )
    changes = pd.DataFrame(columns=["id", "source_id", "rule"])
    if applied:
        new, changes = apply(tiles, truth, dict(zip(test.ids, test_masks)), blank)
        test_masks = np.stack([new[i] for i in test.ids])
    probs_io.write_probs(masks_out, test.ids, test_masks)
    write_csv(changes_out, changes)
    write_json(
        report_out,
        {
            **asdict(cut),
            "oof_before": before_score,
            "oof_after": after_score,
            "gain": gain,
            "oof_changed_tiles": int(sum(len(c) for c in oof_log)),
            "enabled": enabled,
            "applied": applied,
            "test_changed_tiles": len(changes),
            "buckets": buckets,
        },
    )


def submit(masks_path: str, data_dir: str, tile: int, out: str) -> None:
    """Write a Kaggle submission: each ``sample_submission.csv`` id in order, blank tiles empty.

    Args:
        masks_path: binary test masks (0/1 maps in the probability format), from ``postprocess``.
    """
    ids, maps = probs_io.read_probs(masks_path)
    test = kaggle.load_test(data_dir, tile)
    masks = binarize(probs_io.align(masks_path, test.ids, ids, maps), test.images, 0.5)
    codes = [rle.encode(m) for m in masks]
    write_csv(out, pd.DataFrame({"id": test.ids, "rle_mask": codes}))
    log.info("wrote %d masks to %s", len(codes), out)


def summary(
    model_cvs: list[str],
    fold_metrics: list[str],
    ensemble_cvs: list[str],
    blend_cv: str,
    postprocess_report: str,
    out: str,
    data_dir: str | None = None,
    tile: int = 101,
    submission: str | None = None,
) -> None:
    """One row per model and stage, per stage ensemble, and for the blend.

    Columns: OOF at 0.5 and tuned, the tuned threshold, train seconds (``fold_metrics``'
    ``train_seconds`` summed per model directory), and for the blend the OOF after the mosaic
    post-processing, its gain and whether it was applied. Stage and model names come from where
    each file sits in :mod:`saltseg.layout`.

    When ``data_dir`` holds the test truth (``solution.csv``, the synthetic data's), each row is
    also scored on it: the ``test.parquet`` beside its cv.json at 0.5 and at its OOF-tuned cut
    (``test_at_0.5``, ``test_tuned``, ``test_<bucket>``), and the blend row also by the
    ``submission`` CSV (``test_submission``). Nothing else reads the truth.
    """
    seconds: dict[tuple[str, str], float] = {}
    for path in fold_metrics:
        place = layout.locate(path)
        metrics = read_json(path, keys=("train_seconds",))
        key = place.stage, place.model
        seconds[key] = seconds.get(key, 0.0) + metrics["train_seconds"]
    truth = None if data_dir is None else test_truth(data_dir, tile)

    def row(path: str, name: str, stage: str, train_seconds: float) -> dict[str, Any]:
        cv = read_json(path, keys=("metric_at_0.5", "metric_tuned", "threshold"))
        return {
            "name": name,
            "stage": stage,
            "oof_at_0.5": cv["metric_at_0.5"],
            "oof_tuned": cv["metric_tuned"],
            "threshold": cv["threshold"],
            "min_area": cv.get("min_area", 0),
            "min_peak": cv.get("min_peak", 0.0),
            **{f"score_{bucket}": b["score"] for bucket, b in cv.get("buckets", {}).items()},
            **(score_test(truth, path) if truth else {}),
            "train_seconds": round(train_seconds, 1),
        }

    rows = []
    for path in model_cvs:
        place = layout.locate(path)
        rows.append(row(path, place.model, place.stage, seconds[place.stage, place.model]))
    for path in ensemble_cvs:
        stage = layout.locate(path).stage
        rows.append(
            row(path, "ensemble", stage, sum(s for (st, _), s in seconds.items() if st == stage))
        )
    report = read_json(postprocess_report, keys=("threshold", "oof_after", "gain", "applied"))
    blend = row(blend_cv, "blend", "blend", sum(seconds.values()))
    blend.update(
        threshold=report["threshold"],
        min_area=report.get("min_area", 0),
        min_peak=report.get("min_peak", 0.0),
        oof_postprocessed=report["oof_after"],
        postprocess_gain=report["gain"],
        postprocess_applied=report["applied"],
    )
    if truth and submission:
        size = truth.images.shape[-1]
        submitted = kaggle.read_rle_masks(submission, truth.ids, size)
        blend["test_submission"] = competition_metric(truth.masks, submitted)
    write_csv(out, pd.DataFrame(rows + [blend]))


def test_truth(data_dir: str, tile: int) -> kaggle.Tiles | None:
    """The test tiles with their true masks (``solution.csv``), or None without one."""
    found = kaggle.load_test_truth(data_dir, tile)
    if found is None:
        return None
    test = kaggle.load_test(data_dir, tile)
    return kaggle.Tiles(test.ids, test.images, found[1], test.depths)


def score_test(truth: kaggle.Tiles, cv_json: str) -> dict[str, float | None]:
    """The metric of the test maps beside ``cv_json`` on the truth, at 0.5 and at the OOF-tuned
    cut of ``cv_json`` (blank tiles empty), and the tuned one per coverage bucket."""
    maps_path = str(Path(cv_json).with_name("test.parquet"))
    ids, maps = probs_io.read_probs(maps_path)
    maps = probs_io.align(maps_path, truth.ids, ids, maps)
    tuned = binarize(maps, truth.images, Cut.read(cv_json))
    buckets = bucket_scores(truth.masks, tuned)
    return {
        "test_at_0.5": competition_metric(truth.masks, binarize(maps, truth.images, 0.5)),
        "test_tuned": competition_metric(truth.masks, tuned),
        **{f"test_{bucket}": b["score"] for bucket, b in buckets.items()},
    }
