"""Fold-0 studies on real data: the split, the score, and the `cpu` profile's net.

A fold-0 study trains on the train tiles of fold 0 of five depth folds (2,720 of the 3,400
labelled real tiles) and scores on fold 0's 680 tiles, which it never saw. The net is read from
the `cpu` profile itself (workflow/profiles/cpu/recipe.yaml), so it has one definition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from saltseg.binarize import best_cell, binarization_table, remove_small
from saltseg.data import kaggle
from saltseg.data.folds import make_folds
from saltseg.metrics import bucket_scores, competition_metric

CPU_PROFILE = Path(__file__).resolve().parents[1] / "workflow" / "profiles" / "cpu" / "recipe.yaml"


def cpu_net(**model) -> dict:
    """The `cpu` profile's stage-1 model as the training loop takes it (arch, model, augment,
    validation), without its phases and slot; ``model`` overrides model settings (e.g.
    ``resize_to=64, pad_to=64``)."""
    recipe = yaml.safe_load(CPU_PROFILE.read_text())
    spec = recipe["models"][recipe["stage1"]["models"][0]]
    net = {k: v for k, v in spec.items() if k not in ("phases", "slot_minutes")}
    return {**net, "model": {**spec["model"], **model}}


def split(data_dir: str) -> tuple[kaggle.Tiles, kaggle.Tiles, np.ndarray]:
    """The train tiles and fold 0's tiles of ``data_dir``, and which of fold 0's are blank."""
    tiles = kaggle.load_train(data_dir, 101)
    folds = make_folds(tiles.ids, kaggle.read_depths(data_dir, tiles.ids), 5, 0, "depth")
    in_val = folds.set_index("id")["fold"].loc[tiles.ids].to_numpy() == 0
    val = tiles.subset(in_val)
    return tiles.subset(~in_val), val, kaggle.is_blank(val.images)


def score(truth: np.ndarray, blank: np.ndarray, probs: np.ndarray) -> dict:
    """The competition metric of ``probs`` (blank tiles forced empty) at 0.5, at the tuned
    threshold, with the tuned threshold and minimum area, with those and the minimum peak (the
    pipeline's cut, as in cv.json), and per coverage bucket at the tuned threshold and area."""
    probs = np.where(blank[:, None, None], 0.0, probs)
    grid = binarization_table(truth, probs)  # areas[0] and peaks[0] are 0: no tile rule
    thresholds, areas, peaks, table = grid
    threshold, _, _, tuned = best_cell(thresholds, areas[:1], peaks[:1], table[:, :1, :1])
    cut, area, _, tuned_area = best_cell(thresholds, areas, peaks[:1], table[:, :, :1])
    rules = dict(zip(["threshold", "min_area", "min_peak", "score"], best_cell(*grid)))
    return {
        "at_0.5": competition_metric(truth, probs > 0.5),
        "tuned": tuned,
        "threshold": threshold,
        "tuned_min_area": tuned_area,
        "min_area": {"threshold": cut, "min_area": area},
        "tuned_min_area_and_peak": rules,
        "buckets": bucket_scores(truth, remove_small(probs > cut, area)),
    }
