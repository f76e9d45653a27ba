"""Steps of model training: one fold's training (with pseudo-labels), and its predictions."""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from saltseg import probs as probs_io
from saltseg.data import kaggle
from saltseg.errors import InputError
from saltseg.inference.predict import load_snapshots, predict_ensemble, read_bundle
from saltseg.io import atomic_path, write_csv, write_json
from saltseg.models import build_model
from saltseg.mosaic.context import Context
from saltseg.pseudo import (
    FEW_LABELS,
    FEW_LABELS_HELP,
    label_counts,
    read_pseudo,
    read_selection,
)
from saltseg.runtime.device import Runtime
from saltseg.steps.fold_split import split
from saltseg.training.budget import predict_forwards
from saltseg.training.loop import fit

log = logging.getLogger(__name__)


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
    pseudo: str | None = None,
    context: str | None = None,
    predict_tta: tuple[str, ...] = ("none", "hflip"),
    predict_batch_size: int = 64,
    init: str | None = None,
) -> None:
    """Train one fold; write ``model.pt``, ``metrics.json``, ``history.csv`` and ``params.json``.

    ``pseudo`` is this fold's pseudo-label file (test tiles only; a fold teacher's deals every
    row to its fold); phases with ``data: pseudo`` train on all of it, phases with
    ``data: train+pseudo`` on the train tiles plus its rows dealt to this fold. ``metrics.json``
    counts the salt and empty pseudo-labels each of these adds (``pseudo_tiles``), and a phase
    with fewer than :data:`saltseg.pseudo.FEW_LABELS` logs a warning. ``context`` is
    the context rule's file, for models with ``context: {margin}``: every image becomes its
    window, and every training mask its window over the labelled tiles of the same source.
    With the model's ``slot_minutes``, training leaves time for the fold's prediction of its
    validation and test tiles with ``predict_tta``; validation runs at ``predict_batch_size``,
    so that its pace is the prediction's. ``init`` (a teacher's ``model.pt`` of the same fold,
    arch and model settings) gives the starting weights: its last snapshot.
    """
    out = Path(out_dir)
    windows = context_for(params["model"], context)
    train_tiles, val_tiles = split(data_dir, folds_csv, fold, n_folds, tile)
    sources, learnt = {"train": train_tiles}, {}
    if pseudo is not None:
        labelled, dealt = pseudo_tiles(
            data_dir, pseudo, tile, set(train_tiles.ids) | set(val_tiles.ids)
        )
        learnt = {"pseudo": labelled, "train+pseudo": labelled.subset(dealt == fold)}
        sources |= {"pseudo": labelled, "train+pseudo": concat(train_tiles, learnt["train+pseudo"])}
    needed = {phase.get("data", "train") for phase in params["phases"]}
    if not needed <= set(sources):
        raise InputError(
            "--pseudo", f"expected a pseudo-label file for phases with data {sorted(needed)}"
        )
    used = {name: label_counts(learnt[name].masks) for name in sorted(needed - {"train"})}
    warn_few_labels(params["phases"], used, pseudo)
    if windows is not None:
        sources = {name: windows.apply(t, labels=True) for name, t in sources.items()}
        val_tiles = windows.apply(val_tiles)
    torch.manual_seed(seed + fold)
    model = build_model(params["arch"], tile, **params["model"])
    if init is not None:
        model.load_state_dict(teacher_weights(init, params))
    write_json(out / "params.json", {**params, "fold": fold, "seed": seed, "tile": tile})
    start = time.perf_counter()
    n_test = len(kaggle.test_ids(data_dir)) if params.get("slot_minutes") else 0
    forwards = predict_forwards(params, len(val_tiles), n_test, predict_tta)
    result = fit(
        model,
        params,
        sources,
        val_tiles,
        runtime,
        out,
        seed + fold,
        workers,
        forwards,
        predict_batch_size,
    )
    history = pd.DataFrame(result["history"])
    write_csv(out / "history.csv", history)
    last = history.iloc[-1]
    write_json(
        out / "metrics.json",
        {
            "fold": fold,
            "n_train": len(train_tiles),
            "pseudo_tiles": used,  # the pseudo-labels each data source of a phase adds
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


#: what a phase without pseudo-labels does, by its data
SKIPPED = {"pseudo": ": it is skipped", "train+pseudo": ": it trains on the train tiles alone"}


def warn_few_labels(
    phases: list[dict[str, Any]], used: dict[str, dict[str, int]], pseudo: str | None
) -> None:
    """Log a warning for every phase whose pseudo-labels (``used``: salt and empty ones per data
    source) number fewer than :data:`saltseg.pseudo.FEW_LABELS`, naming how they were selected
    and what to change."""
    for number, phase in enumerate(phases, 1):
        counts = used.get(phase.get("data", "train"))
        if counts is None or sum(counts.values()) >= FEW_LABELS:
            continue
        log.warning(
            "phase %d (data: %s) learns from %d pseudo-labels of %s (%d salt, %d empty), fewer "
            "than %d%s; selected as: %s. %s",
            number,
            phase["data"],
            sum(counts.values()),
            pseudo,
            counts["salt"],
            counts["empty"],
            FEW_LABELS,
            "" if sum(counts.values()) else SKIPPED[phase["data"]],
            read_selection(pseudo) or "not recorded",
            FEW_LABELS_HELP,
        )


def teacher_weights(model_pt: str, params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The last snapshot of ``model_pt``, to start a student of the same network from.

    Raises:
        InputError: the teacher is another architecture or has other model settings.
    """
    bundle = read_bundle(model_pt)
    if (bundle["arch"], bundle["model"]) != (params["arch"], params["model"]):
        raise InputError(model_pt, f"expected a {params['arch']} teacher with the student's model")
    return bundle["snapshots"][-1]


def context_for(model: dict[str, Any], path: str | None) -> Context | None:
    """The context windows a model needs (None without ``context``), checked against its margin.

    Raises:
        InputError: the model has a context margin but no file was given, or the file's margin
            differs.
    """
    margin = model.get("context", {}).get("margin", 0)
    if not margin:
        return None
    if path is None:
        raise InputError("--context", f"expected the context file of margin {margin}")
    windows = Context.read(path)
    if windows.margin != margin:
        raise InputError(path, f"expected windows of margin {margin}, got {windows.margin}")
    return windows


def pseudo_tiles(
    data_dir: str, pseudo: str, tile: int, labelled_ids: set[str]
) -> tuple[kaggle.Tiles, np.ndarray]:
    """Test tiles with their pseudo masks, and the fold each was dealt to.

    Raises:
        InputError: a pseudo-label id is a labelled tile or not a test tile.
    """
    table, masks = read_pseudo(pseudo)
    leaked = sorted(set(table["id"]) & labelled_ids)
    if leaked:
        raise InputError(pseudo, f"expected test tiles only, {leaked[0]!r} is a labelled tile")
    test = kaggle.load_test(data_dir, tile)
    position = {tile_id: i for i, tile_id in enumerate(test.ids)}
    unknown = [i for i in table["id"] if i not in position]
    if unknown:
        raise InputError(pseudo, f"expected ids of test tiles, {unknown[0]!r} is not one")
    rows = test.subset(np.array([position[i] for i in table["id"]], dtype=int))
    return kaggle.Tiles(rows.ids, rows.images, masks, rows.depths), table["fold"].to_numpy()


def concat(a: kaggle.Tiles, b: kaggle.Tiles) -> kaggle.Tiles:
    """Two labelled tile sets as one."""
    return kaggle.Tiles(
        a.ids + b.ids,
        np.concatenate([a.images, b.images]),
        np.concatenate([a.masks, b.masks]),
        np.concatenate([a.depths, b.depths]),
    )


def predict(
    model_pt: str,
    data_dir: str,
    folds_csv: str,
    fold: int,
    n_folds: int,
    tile: int,
    runtime: Runtime,
    tta: tuple[str, ...],
    batch_size: int,
    oof_out: str,
    test_out: str,
    context: str | None = None,
) -> None:
    """Predict one fold's model on its validation tiles (OOF) and on all test tiles (their
    context windows for a model with ``context``)."""
    models = load_snapshots(model_pt, runtime)
    windows = context_for(read_bundle(model_pt)["model"], context)
    _, val_tiles = split(data_dir, folds_csv, fold, n_folds, tile)
    test = kaggle.load_test(data_dir, tile)
    if windows is not None:
        val_tiles, test = windows.apply(val_tiles), windows.apply(test)
    probs_io.write_probs(
        oof_out, val_tiles.ids, predict_ensemble(models, val_tiles.images, runtime, batch_size, tta)
    )
    probs_io.write_probs(
        test_out, test.ids, predict_ensemble(models, test.images, runtime, batch_size, tta)
    )
