"""Each GPU profile's whole DAG, run for real on tiny synthetic data on CPU.

``fast`` and ``full`` are days or hours of GPU time; a crash in their stage 3 must show up here
first. The workflow copy loads the profile as a user does (``--workflow-profile``, which reads
its ``recipe.yaml`` through ``configfile``); ``--config`` then cuts the data and the schedules
only: 2 synthetic sections of 4x5 tiles, 2 folds, every phase of every stage model one epoch at
batch 2, encoders at ``pretrained: none`` (nothing to download) and shrunk to ``resnet10t``
through each model's ``encoder_name`` override: at full size one fold of ``fast``'s ResNet34
U-Net (two one-epoch phases on 10 tiles) took about 3 minutes on a shared 2-core machine
(2026-12-07), so the 12 folds of ``full`` (ResNeXt50 at 224 px, ResNet34 at 256 px) would take
hours. Each
profile keeps the rest of its architectures (preset, geometry, stem, center, decoder,
attention, hypercolumn, deep supervision, heads), its stages, losses, optimisers, schedules,
snapshots, cycles, the data of every phase, TTA, fold stratification, blend, threshold and
pseudo-label selection (``fast``: the default ``balanced``, ``full``: ``confident``). A one-epoch
teacher is sure of no tile, so the run stops after each teacher stage's predictions and sets its
fold maps to the truth (a fixed teacher, sure of every tile) before the next stage learns from
them: every pseudo phase then trains on labels the profile's own selection kept.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from saltseg.data import kaggle
from saltseg.probs import align, read_ids, write_probs
from saltseg.pseudo import label_counts, read_pseudo

TINY_RUN = {  # run settings cut to the tiny data; none of them is part of a recipe
    "synthetic": {"sections": 2, "rows": 4, "cols": 5},
    "folds": {"n_folds": 2},
    "runtime": {"threads": 2, "workers": 0},
    "mosaic": {"draw": 1},
}


SMALL_ENCODER = {"encoder_name": "resnet10t"}  # in place of resnet34 and resnext50_32x4d


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        ["snakemake", *args], cwd=workdir, capture_output=True, text=True, env=env, timeout=3600
    )


def merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` as Snakemake merges configs: dicts merge, lists replace."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def profile_config(repo: Path, profile: str) -> dict:
    """config.yaml with the profile's recipe merged over it."""
    config = yaml.safe_load((repo / "config.yaml").read_text())
    recipe = yaml.safe_load((repo / f"workflow/profiles/{profile}/recipe.yaml").read_text())
    return merged(config, recipe)


def stage_models(config: dict) -> list[tuple[str, str]]:
    """``(stage, model)`` of every stage model, in stage order."""
    return [(f"stage{s}", name) for s in config["stages"] for name in config[f"stage{s}"]["models"]]


def cut_schedules(config: dict) -> dict:
    """``models`` overrides: every phase of every stage model one epoch at batch 2, no minutes
    budget, small encoders not pretrained; everything else as the recipe has it."""
    models = {}
    for _, name in stage_models(config):
        model = config["models"][name]
        assert "slot_minutes" not in model, f"{name}: a slot budget cannot be cut by --config"
        phases = [
            {**{k: v for k, v in phase.items() if k != "minutes"}, "epochs": 1, "batch_size": 2}
            for phase in model["phases"]
        ]
        models[name] = {"model": {**SMALL_ENCODER, "pretrained": "none"}, "phases": phases}
    return models


def fix_teacher(results: Path, stage: str, models: list[str], folds: range) -> None:
    """Set every fold's test and OOF maps of ``stage``'s ``models`` to the truth (the synthetic
    data's test truth and train masks): a teacher sure of every tile."""
    data = results / "data/synthetic"
    test_ids, test_truth = kaggle.load_test_truth(data, 101)
    train = kaggle.load_train(data, 101)
    train_truth = dict(zip(train.ids, train.masks))
    for model in models:
        for fold in folds:
            fold_dir = results / stage / model / f"fold{fold}"
            ids = read_ids(fold_dir / "test.parquet")
            write_probs(fold_dir / "test.parquet", ids, align(data, ids, test_ids, test_truth))
            ids = read_ids(fold_dir / "oof.parquet")
            write_probs(fold_dir / "oof.parquet", ids, np.stack([train_truth[i] for i in ids]))


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["fast", "full"])
def test_each_gpu_profile_runs_its_whole_dag(repo, tmp_path, profile):
    config = profile_config(repo, profile)
    expected = stage_models(config)
    assert {stage for stage, _ in expected} == {"stage1", "stage2", "stage3"}
    shutil.copy(repo / "Snakefile", tmp_path)
    shutil.copy(repo / "config.yaml", tmp_path)
    shutil.copytree(repo / "workflow", tmp_path / "workflow")
    shutil.copytree(repo / "envs", tmp_path / "envs")
    shutil.copytree(repo / "src", tmp_path / "src")  # the rules run python -m saltseg from here
    overrides = {**TINY_RUN, "models": cut_schedules(config)}
    run = [
        "--workflow-profile",
        f"workflow/profiles/{profile}",
        "--config",
        *[f"{key}={json.dumps(value)}" for key, value in overrides.items()],
        "--",
    ]
    results = tmp_path / "results"
    for teacher in ("stage1", "stage2"):  # each teacher's predictions, then fixed to the truth
        models = [name for stage, name in expected if stage == teacher]
        targets = [f"results/{teacher}/{m}/fold{f}/test.parquet" for m in models for f in (0, 1)]
        targets += [t.replace("test.parquet", "oof.parquet") for t in targets]
        result = snakemake(tmp_path, *run, *targets)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        fix_teacher(results, teacher, models, range(2))
    result = snakemake(tmp_path, *run, "submission", "results/summary.csv")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    summary = pd.read_csv(results / "summary.csv")
    stages = list(dict.fromkeys(stage for stage, _ in expected))
    assert list(zip(summary["stage"], summary["name"])) == [
        *expected,
        *[(stage, "ensemble") for stage in stages],
        ("blend", "blend"),
    ]
    assert summary["oof_tuned"].between(0, 1).all()
    sample = pd.read_csv(results / "data/synthetic/sample_submission.csv")
    sub = pd.read_csv(results / "submission.csv", keep_default_na=False)
    assert sub["id"].tolist() == sample["id"].tolist()
    for stage, name in expected:  # every phase of every fold trained, pseudo-label ones too
        recipe = config["models"][name]
        for fold in (0, 1):
            fold_dir = results / f"{stage}/{name}/fold{fold}"
            params = json.loads((fold_dir / "params.json").read_text())
            assert params["arch"] == recipe["arch"] and params["model"]["pretrained"] == "none"
            assert params["model"]["encoder_name"] == SMALL_ENCODER["encoder_name"]
            history = pd.read_csv(fold_dir / "history.csv")
            assert history["phase"].nunique() == len(recipe["phases"]), (stage, name, fold)
            data = {phase.get("data", "train") for phase in recipe["phases"]} - {"train"}
            if data:  # every label of the fold teacher's file reached the student
                labels = results / f"pseudo/stage{int(stage[-1]) - 1}/fold{fold}.parquet"
                table, masks = read_pseudo(labels)
                counts = label_counts(masks)
                assert counts["salt"] > 0 and (table["fold"] == fold).all(), labels
                metrics = json.loads((fold_dir / "metrics.json").read_text())
                assert metrics["pseudo_tiles"] == {name: counts for name in sorted(data)}
