"""One function per pipeline step: read the step's inputs, call the library, write its outputs.

Each function is what one ``saltseg`` subcommand (and so one Snakemake rule) runs. Outputs are
written atomically; nothing here knows the DAG around it.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from saltseg import probs as probs_io
from saltseg import rle
from saltseg.data import kaggle
from saltseg.data.folds import make_folds, read_folds
from saltseg.errors import InputError
from saltseg.inference.predict import load_snapshots, predict_ensemble
from saltseg.io import atomic_dir, atomic_path, write_csv, write_json
from saltseg.metrics import best_threshold, competition_metric
from saltseg.models import build_model
from saltseg.training.device import Runtime
from saltseg.training.loop import fit

log = logging.getLogger(__name__)


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
    tiles = kaggle.load_train(data_dir, tile)
    table = read_folds(folds_csv, n_folds).set_index("id")["fold"]
    missing = [i for i in tiles.ids if i not in table.index]
    if missing:
        raise InputError(folds_csv, f"expected a fold for every train id, {missing[0]!r} has none")
    in_val = table.loc[tiles.ids].to_numpy() == fold
    return tiles.subset(~in_val), tiles.subset(in_val)


def train(
    data_dir: str,
    folds_csv: str,
    fold: int,
    n_folds: int,
    params: dict[str, Any],
    tile: int,
    seed: int,
    runtime: Runtime,
    out_dir: str,
    workers: int = 0,
) -> None:
    """Train one fold; write ``model.pt``, ``metrics.json``, ``history.csv`` and ``params.json``."""
    out = Path(out_dir)
    train_tiles, val_tiles = split(data_dir, folds_csv, fold, n_folds, tile)
    torch.manual_seed(seed + fold)
    model = build_model(params["arch"], tile, **params["model"])
    write_json(out / "params.json", {**params, "fold": fold, "seed": seed, "tile": tile})
    start = time.perf_counter()
    result = fit(model, params, train_tiles, val_tiles, runtime, out, seed + fold, workers)
    history = pd.DataFrame(result["history"])
    write_csv(out / "history.csv", history)
    last = history.iloc[-1]
    write_json(
        out / "metrics.json",
        {
            "fold": fold,
            "n_train": len(train_tiles),
            "n_val": len(val_tiles),
            "epochs": len(history),
            "snapshots": len(result["snapshots"]),
            "val_metric": float(last["val_metric"]),
            "val_loss": float(last["val_loss"]),
            "train_seconds": time.perf_counter() - start,
            "train_images_per_s": float(history["images_per_s"].mean()),
            "device": str(runtime.device),
            "amp": str(runtime.amp_dtype),
            "torch": torch.__version__,
            "machine": platform.machine(),
        },
    )
    bundle = {"arch": params["arch"], "model": params["model"], "tile": tile}
    with atomic_path(out / "model.pt") as tmp:
        torch.save({**bundle, "snapshots": result["snapshots"]}, tmp)
    (out / "checkpoint.pt").unlink(missing_ok=True)


def predict(
    model_pt: str,
    data_dir: str,
    folds_csv: str,
    fold: int,
    n_folds: int,
    tile: int,
    runtime: Runtime,
    tta: list[str],
    batch_size: int,
    oof_out: str,
    test_out: str,
) -> None:
    """Predict one fold's model on its validation tiles (OOF) and on all test tiles."""
    models = load_snapshots(model_pt, runtime)
    _, val_tiles = split(data_dir, folds_csv, fold, n_folds, tile)
    probs_io.write_probs(
        oof_out, val_tiles.ids, predict_ensemble(models, val_tiles.images, runtime, batch_size, tta)
    )
    test = kaggle.load_test(data_dir, tile)
    probs_io.write_probs(
        test_out, test.ids, predict_ensemble(models, test.images, runtime, batch_size, tta)
    )


def merge(
    data_dir: str,
    tile: int,
    oof_parts: list[str],
    test_parts: list[str],
    oof_out: str,
    test_out: str,
    cv_out: str,
) -> None:
    """Join per-fold OOF maps (each train tile once), average test maps, score the OOF.

    ``cv.json`` holds the metric at 0.5 and at the OOF-tuned threshold, with blank tiles forced
    empty as in the final submission.
    """
    ids, maps = [], []
    for part in oof_parts:
        part_ids, part_maps = probs_io.read_probs(part)
        ids += part_ids
        maps.append(part_maps)
    train = kaggle.load_train(data_dir, tile)
    if len(set(ids)) != len(ids) or set(ids) != set(train.ids):
        raise InputError(oof_parts[0], "expected the fold OOF files to cover each train id once")
    oof = probs_io.align(oof_parts[0], train.ids, ids, np.concatenate(maps))
    probs_io.write_probs(oof_out, train.ids, oof)
    test_ids, test_mean = _mean_maps(test_parts)
    probs_io.write_probs(test_out, test_ids, test_mean)
    write_json(cv_out, score_oof(train, oof))


def score_oof(train: kaggle.Tiles, oof: np.ndarray) -> dict[str, Any]:
    """The OOF metric at 0.5 and at the best threshold, blank tiles forced empty."""
    oof = np.where(kaggle.is_blank(train.images)[:, None, None], 0.0, oof)
    threshold, tuned = best_threshold(train.masks, oof)
    return {
        "n_tiles": len(train),
        "metric_at_0.5": competition_metric(train.masks, oof > 0.5),
        "threshold": threshold,
        "metric_tuned": tuned,
    }


def _mean_maps(
    parts: list[str], weights: list[float] | None = None
) -> tuple[list[str], np.ndarray]:
    """The (weighted) mean of probability files that hold the same ids in the same order."""
    weights = weights or [1.0] * len(parts)
    ids, total = probs_io.read_probs(parts[0])
    total *= weights[0]
    for part, weight in zip(parts[1:], weights[1:]):
        part_ids, maps = probs_io.read_probs(part)
        if part_ids != ids:
            raise InputError(part, f"expected the same ids in the same order as {parts[0]}")
        total += weight * maps
    return ids, total / sum(weights)


def ensemble(
    data_dir: str,
    tile: int,
    oof_parts: list[str],
    test_parts: list[str],
    weights: list[float] | None,
    oof_out: str,
    test_out: str,
    cv_out: str,
) -> None:
    """Weighted average of several models' OOF and test maps, and the OOF score of the average."""
    if weights is not None and len(weights) != len(oof_parts):
        raise InputError("weights", f"expected {len(oof_parts)} weights, got {len(weights)}")
    train = kaggle.load_train(data_dir, tile)
    oof_ids, oof = _mean_maps(oof_parts, weights)
    if oof_ids != train.ids:
        raise InputError(oof_parts[0], "expected one map per train id, in train.csv order")
    probs_io.write_probs(oof_out, oof_ids, oof)
    test_ids, test = _mean_maps(test_parts, weights)
    probs_io.write_probs(test_out, test_ids, test)
    write_json(cv_out, score_oof(train, oof))


def threshold_for(mode: str, cv_json: str) -> float:
    """The binarisation threshold: ``fixed`` is 0.5 (the winners), ``tuned`` the OOF-best."""
    if mode == "fixed":
        return 0.5
    return float(json.loads(Path(cv_json).read_text())["threshold"])


def binarize(maps: np.ndarray, images: np.ndarray, cut: float) -> np.ndarray:
    """``maps > cut`` as uint8 masks, with blank tiles (one grey value) forced empty."""
    masks = (maps > cut).astype(np.uint8)
    masks[kaggle.is_blank(images)] = 0
    return masks


def mosaic(data_dir: str, tile: int, tiles_out: str, pairs_out: str, png_dir: str, n_draw: int):
    """Assemble train and test tiles into mosaics; draw the largest ones with train masks."""
    from saltseg.mosaic.assemble import assemble
    from saltseg.mosaic.draw import draw_mosaic

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

    cut = threshold_for(threshold, cv_json)
    tiles = pd.read_parquet(layout)
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
            "threshold": cut,
            "oof_before": before_score,
            "oof_after": after_score,
            "gain": gain,
            "oof_changed_tiles": int(sum(len(c) for c in oof_log)),
            "enabled": enabled,
            "applied": applied,
            "test_changed_tiles": len(changes),
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
    ensemble_cv: str,
    postprocess_report: str,
    out: str,
) -> None:
    """One row per model and for the ensemble: OOF at 0.5 and tuned, post-processing, time.

    ``model_cvs`` are ``results/stage1/<model>/cv.json``; ``fold_metrics`` every fold's
    ``metrics.json`` (their ``train_seconds`` are summed per model directory).
    """
    seconds: dict[str, float] = {}
    for path in fold_metrics:
        model = str(Path(path).parent.parent)
        seconds[model] = (
            seconds.get(model, 0.0) + json.loads(Path(path).read_text())["train_seconds"]
        )
    rows = []
    for path in model_cvs:
        cv = json.loads(Path(path).read_text())
        model = Path(path).parent
        rows.append(
            {
                "name": model.name,
                "stage": 1,
                "oof_at_0.5": cv["metric_at_0.5"],
                "oof_tuned": cv["metric_tuned"],
                "threshold": cv["threshold"],
                "train_seconds": round(seconds.get(str(model), float("nan")), 1),
            }
        )
    cv = json.loads(Path(ensemble_cv).read_text())
    report = json.loads(Path(postprocess_report).read_text())
    rows.append(
        {
            "name": "ensemble",
            "stage": 1,
            "oof_at_0.5": cv["metric_at_0.5"],
            "oof_tuned": cv["metric_tuned"],
            "threshold": report["threshold"],
            "oof_postprocessed": report["oof_after"],
            "postprocess_gain": report["gain"],
            "postprocess_applied": report["applied"],
            "train_seconds": round(sum(seconds.values()), 1),
        }
    )
    write_csv(out, pd.DataFrame(rows))


def pseudo_labels(
    data_dir: str,
    tile: int,
    test_probs: str,
    method: str,
    min_confidence: float,
    n_folds: int,
    seed: int,
    out: str,
) -> None:
    """Select confident test tiles as pseudo-labels (see :mod:`saltseg.pseudo`)."""
    from saltseg.pseudo import select_confident, select_phalanx, write_pseudo

    test = kaggle.load_test(data_dir, tile)
    ids, maps = probs_io.read_probs(test_probs)
    maps = probs_io.align(test_probs, test.ids, ids, maps)
    blank = kaggle.is_blank(test.images)
    if method == "confident":
        table = select_confident(maps, blank, n_folds, seed, min_confidence)
    else:
        table = select_phalanx(maps, blank, n_folds, seed)
    index = table["index"].to_numpy()
    write_pseudo(out, [test.ids[i] for i in index], maps[index] > 0.5, table)
    log.info("%d of %d test tiles kept as pseudo-labels (%s)", len(index), len(test), method)
