"""Ablation of training levers on real fold 0 at a fixed time budget (ablation_cpu.json).

Usage: python -m bench ablation_cpu --data-dir ../shared/tgs [--variants a,b] [--threads 2]

Each variant is a model definition (the `models:` schema of config.yaml) whose phases carry a
`minutes` budget; it trains with saltseg's own loop on the train tiles of fold 0 (depth folds)
and is scored on fold 0's tiles, which it never saw. Every row records the validation metric at
0.5, with the tuned threshold, with the tuned threshold and minimum area, each with and without
flip TTA, the score per coverage bucket, and the minutes spent. Training resumes after a kill
(checkpoints and rows so far under ``--work``, default results/ablation/); finished variants
are skipped on a rerun, and the result is written once every asked variant is done.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.common import REPO, write_result
from saltseg.binarize import best_cell, binarization_table, remove_small
from saltseg.data import kaggle
from saltseg.data.folds import make_folds
from saltseg.inference.predict import predict_probs
from saltseg.metrics import bucket_scores, competition_metric
from saltseg.models import build_model
from saltseg.runtime.device import keep_freed_memory, resolve_runtime
from saltseg.training.loop import fit

EXPERIMENTS = Path(__file__).with_name("experiments") / "ablation_cpu.yaml"  # the ladder
DEFAULTS = yaml.safe_load(EXPERIMENTS.read_text())["defaults"]


def phase(minutes: float, **kw) -> dict:
    return {
        "loss": "bce_dice",
        "optimizer": "adam",
        "lr": 0.003,
        "schedule": "cosine",
        "batch_size": 16,
        "snapshots": 1,
        "minutes": minutes,
        **kw,
    }


def in_fold0(data_dir: str, tiles: kaggle.Tiles) -> np.ndarray:
    """Which of ``tiles`` lie in fold 0 of five depth folds, every ablation's validation split."""
    folds = make_folds(tiles.ids, kaggle.read_depths(data_dir, tiles.ids), 5, 0, "depth")
    return folds.set_index("id")["fold"].loc[tiles.ids].to_numpy() == 0


def unet(lever: str, phases: list[dict], augment: list[dict] | None = None, **model) -> dict:
    """A variant: the resnet10t U-Net with ``model`` overrides, flips (or ``augment``),
    validated at phase ends."""
    return {
        "lever": lever,
        "arch": "unet",
        "model": {**DEFAULTS["model"], **model},
        "augment": DEFAULTS["augment"] if augment is None else augment,
        "val_every": 1000,
        "phases": phases,
    }


def two_phases(
    budget: float,
    lrs: tuple[float, float] = (0.003, 0.001),
    lovasz_share: float = 0.3,
    lovasz_snapshots: int = 1,
    lovasz_loss: str = "lovasz_symmetric",
    crops: tuple[int | None, int | None] = (None, None),
    **kw,
) -> list[dict]:
    """BCE+Dice, then ``lovasz_loss`` (the symmetric Lovasz hinge) for ``lovasz_share`` of the
    budget, at ``lrs``, in ``lovasz_snapshots`` cosine cycles whose final weights are averaged;
    each phase on training windows of ``crops`` px (None: whole tiles).

    ``kw`` goes to both phases.
    """
    lovasz = lovasz_share * budget
    first, second = ({"crop": c} if c else {} for c in crops)
    return [
        phase(budget - lovasz, snapshots=0, lr=lrs[0], **first, **kw),
        phase(lovasz, loss=lovasz_loss, lr=lrs[1], snapshots=lovasz_snapshots, **second, **kw),
    ]


def self_trained(base: dict, lever: str, budget: float, share: float = 0.6) -> dict:
    """``base`` with its BCE+Dice phase split: the first ``share`` on train tiles makes the
    teacher, whose soft labels on test tiles join the train tiles for the rest (lr 0.002)."""
    first, lovasz = base["phases"]
    teacher = {**first, "minutes": first["minutes"] * share}
    student = {**first, "minutes": first["minutes"] - teacher["minutes"], "lr": 0.002}
    student["data"] = "train+pseudo"
    return {**base, "lever": lever, "phases": [teacher, student, lovasz], "soft_pseudo": 4000}


def soft_labels(model, tiles: kaggle.Tiles, runtime) -> kaggle.Tiles:
    """``tiles`` with the flip-TTA probabilities of ``model`` as masks (float32): pixels under
    0.05 and every tile whose largest probability is under 0.5 set to 0 (empty stays empty)."""
    probs = predict_probs(model, tiles.images, runtime, 128, ("none", "hflip"))
    probs[probs < 0.05] = 0.0
    probs[probs.reshape(len(probs), -1).max(1) < 0.5] = 0.0
    return kaggle.Tiles(tiles.ids, tiles.images, probs, tiles.depths)


def concat(a: kaggle.Tiles, b: kaggle.Tiles) -> kaggle.Tiles:
    """Tiles ``a`` then ``b``, their masks as float32 (0/1 labels beside soft ones)."""
    masks = np.concatenate([a.masks.astype(np.float32), b.masks.astype(np.float32)])
    return kaggle.Tiles(
        a.ids + b.ids,
        np.concatenate([a.images, b.images]),
        masks,
        np.concatenate([a.depths, b.depths]),
    )


def half(
    lever: str,
    budget: float,
    size: int,
    encoder_args: dict | None = None,
    empty_weight: float = 0.05,
    side_weight: float = 0.1,
    model: dict | None = None,
    amp: str | None = None,
    **kw,
) -> dict:
    """The cpu profile's net (deep supervision, scSE, hypercolumn; resnet10t at half width unless
    ``encoder_args``) on ``size`` px tiles.

    128 is full resolution (reflect-padded), smaller sizes resize; ``empty_weight`` and
    ``side_weight`` weigh the deep supervision's empty heads and side outputs; ``model``
    overrides model settings; ``amp`` (``true``/``false``) fixes the variant's precision
    instead of the run's; ``kw`` goes to :func:`two_phases`.
    """
    geometry = {"pad_to": 128} if size == 128 else {"resize_to": size, "pad_to": size}
    phases = two_phases(budget, side_weight=side_weight, empty_weight=empty_weight, **kw)
    encoder_args = encoder_args or DEFAULTS["half_encoder"]
    settings = {**geometry, "encoder_args": encoder_args, **DEFAULTS["ds_hc_scse"], **(model or {})}
    variant = unet(lever, phases, **settings)
    return variant if amp is None else {**variant, "amp": amp}


def variant(spec: dict, budget: float) -> dict:
    """One variant of bench/experiments/ablation_cpu.yaml (its header says how to read it)."""
    if "half" in spec:
        params = half(spec["lever"], budget, **spec["half"])
    else:
        phases = spec["phases"]
        phases = [phase(budget)] if phases == "one" else two_phases(budget, **phases)
        params = unet(spec["lever"], phases, spec.get("augment"), **spec.get("model", {}))
    if "self_trained" in spec:
        params = self_trained(params, spec["lever"], budget, **spec["self_trained"])
    return params


def variants(budget: float) -> dict[str, dict]:
    """The ladder of bench/experiments/ablation_cpu.yaml at ``budget`` minutes per variant."""
    table = yaml.safe_load(EXPERIMENTS.read_text())["variants"]
    return {name: variant(spec, budget) for name, spec in table.items()}


def score(truth: np.ndarray, blank: np.ndarray, probs: np.ndarray) -> dict:
    probs = np.where(blank[:, None, None], 0.0, probs)  # blank tiles are empty, as in submissions
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
        "tuned_min_area_and_peak": rules,  # the pipeline's cut (cv.json)
        "buckets": bucket_scores(truth, remove_small(probs > cut, area)),
    }


def fit_self_trained(model, params: dict, train, val, runtime, work_dir: Path, data_dir: str):
    """:func:`fit` with a teacher: the first phase trains on ``train`` alone, its soft labels on
    ``params["soft_pseudo"]`` random non-blank test tiles join ``train`` for the later phases
    whose ``data`` is ``train+pseudo``. Both halves resume after a kill."""
    first = {**params, "phases": params["phases"][:1]}
    teacher = fit(model, first, {"train": train}, val, runtime, work_dir / "teacher", 0)
    model.load_state_dict(teacher["snapshots"][-1])
    test = kaggle.load_test(data_dir, 101)
    test = test.subset(~kaggle.is_blank(test.images))
    pick = np.random.default_rng(0).choice(len(test), params["soft_pseudo"], replace=False)
    pseudo = soft_labels(model, test.subset(np.sort(pick)), runtime)
    rest = {**params, "phases": params["phases"][1:]}
    sources = {"train": train, "train+pseudo": concat(train, pseudo)}
    student = fit(model, rest, sources, val, runtime, work_dir / "student", 0)
    return {**student, "history": teacher["history"] + student["history"]}


def run_variant(
    name: str,
    params: dict,
    train,
    val,
    blank: np.ndarray,
    runtime,
    groups: dict | None = None,
    data_dir: str = "",
    work: Path = REPO / "results" / "ablation",
) -> dict:
    """Train variant ``name`` on ``train`` within its budget and score it on ``val``.

    The row holds the minutes, epochs, images/s and, with and without flip TTA, the scores of
    :func:`score`, plus those of each subset of ``groups`` (name -> boolean mask over ``val``).
    ``data_dir`` holds the test tiles of ``soft_pseudo`` variants; checkpoints go to
    ``work/<name>`` (training resumes from them after a kill).
    """
    if "amp" in params:  # the variant's own precision
        runtime = resolve_runtime("cpu", params["amp"], "auto")
    torch.manual_seed(0)
    model = build_model(params["arch"], 101, **params["model"])
    start = time.perf_counter()
    work_dir = Path(work) / name
    if "soft_pseudo" in params:
        trained = fit_self_trained(model, params, train, val, runtime, work_dir, data_dir)
    else:
        trained = fit(model, params, {"train": train}, val, runtime, work_dir, 0)
    minutes = (time.perf_counter() - start) / 60
    rows = {}
    for tta in (("none",), ("none", "hflip")):
        t0 = time.perf_counter()
        probs = np.zeros(val.masks.shape, np.float32)
        for state in trained["snapshots"]:
            model.load_state_dict(state)
            probs += predict_probs(model, val.images, runtime, 128, tta)
        probs /= len(trained["snapshots"])
        rows["+".join(tta)] = {
            **score(val.masks, blank, probs),
            "tiles_per_s": len(val) / (time.perf_counter() - t0),
        }
        for group, sel in (groups or {}).items():
            rows["+".join(tta)][group] = score(val.masks[sel], blank[sel], probs[sel])
    history = trained["history"]
    return {
        "variant": name,
        "lever": params["lever"],
        "train_minutes": round(minutes, 2),
        "epochs": len(history),
        "images_per_s": float(np.median([h["images_per_s"] for h in history])),
        "scores": rows,
        "params": params,
    }


def save(out: Path, result: dict, row: dict) -> None:
    """Write the rows so far, ``result``, to the work file ``out`` atomically and print the new
    ``row``'s tuned scores."""
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(row["variant"], json.dumps({k: v["tuned_min_area"] for k, v in row["scores"].items()}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--variants", default="")
    parser.add_argument("--minutes", type=float, default=7.0, help="training budget per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--work",
        default=str(REPO / "results" / "ablation"),
        help="checkpoints and the rows so far (rows.json), kept across reruns",
    )
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    runtime = resolve_runtime("cpu", "false", "auto")
    tiles = kaggle.load_train(args.data_dir, 101)
    in_val = in_fold0(args.data_dir, tiles)
    train, val = tiles.subset(~in_val), tiles.subset(in_val)
    blank = kaggle.is_blank(val.images)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    progress = work / "rows.json"
    result = json.loads(progress.read_text()) if progress.is_file() else {"rows": []}
    done = {row["variant"] for row in result["rows"]}
    table = variants(args.minutes)
    names = args.variants.split(",") if args.variants else list(table)
    for name in names:
        if name in done:
            continue
        row = run_variant(
            name, table[name], train, val, blank, runtime, data_dir=args.data_dir, work=work
        )
        result["rows"].append(row)
        result.update(
            {
                "command": "python -m bench ablation_cpu --data-dir DATA",
                "n_train": len(train),
                "n_val": len(val),
                "threads": args.threads,
            }
        )
        save(progress, result, row)
    write_result("ablation_cpu", result, args.out, quiet=True)


if __name__ == "__main__":
    main()
