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
from saltseg.io import atomic_path, write_csv, write_json
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
    position = {i: k for k, i in enumerate(ids)}
    if len(position) != len(ids) or set(position) != set(train.ids):
        raise InputError(oof_parts[0], "expected the fold OOF files to cover each train id once")
    oof = np.concatenate(maps)[[position[i] for i in train.ids]]
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


def submit(
    test_probs: str, cv_json: str, data_dir: str, tile: int, threshold: str, out: str
) -> None:
    """Write a Kaggle submission: each ``sample_submission.csv`` id in order, blank tiles empty.

    Args:
        threshold: ``fixed`` (0.5, as the winners) or ``tuned`` (the OOF-best from ``cv_json``).
    """
    cut = 0.5 if threshold == "fixed" else float(json.loads(Path(cv_json).read_text())["threshold"])
    ids, maps = probs_io.read_probs(test_probs)
    test = kaggle.load_test(data_dir, tile)
    position = {i: k for k, i in enumerate(ids)}
    missing = [i for i in test.ids if i not in position]
    if missing:
        raise InputError(test_probs, f"expected a map for every test id, {missing[0]!r} has none")
    masks = maps[[position[i] for i in test.ids]] > cut
    masks[kaggle.is_blank(test.images)] = False
    codes = [rle.encode(m) for m in masks]
    write_csv(out, pd.DataFrame({"id": test.ids, "rle_mask": codes}))
    log.info("wrote %d masks at threshold %.2f to %s", len(codes), cut, out)
