"""A student's train step: it learns from every pseudo-label its fold's file deals it, counts them
in metrics.json, warns when they are few, and starts from its teacher's last snapshot (``--init``).

Each run is the real ``saltseg train`` on the session's synthetic tiles, at 32 px for one epoch.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import TINY_MODEL

from saltseg.cli import main
from saltseg.data import kaggle
from saltseg.data.folds import make_folds
from saltseg.models import build_model
from saltseg.pseudo import FEW_LABELS, label_counts, read_pseudo, write_pseudo
from saltseg.steps import fold_models

MODEL = {**TINY_MODEL, "resize_to": 32, "pad_to": 32}


def student_params(data: str = "train+pseudo", init: str | None = None) -> dict:
    phase = {"loss": "bce_dice", "optimizer": "adam", "lr": 0.001, "schedule": "cosine"}
    phase |= {"epochs": 1, "batch_size": 4, "snapshots": 1, "data": data}
    return {"arch": "unet", "model": MODEL, "augment": [], "phases": [phase]}


@pytest.fixture
def folds_csv(synth_dir, tmp_path):
    ids = kaggle.train_ids(synth_dir)
    folds = make_folds(ids, kaggle.read_depths(synth_dir, ids), 2, 0)
    folds.to_csv(tmp_path / "folds.csv", index=False)
    return tmp_path / "folds.csv"


def train_student(synth_dir, folds_csv, out, params, *extra: str) -> int:
    args = ["train", "--data-dir", str(synth_dir), "--folds", str(folds_csv), "--fold", "1"]
    args += ["--n-folds", "2", "--params", json.dumps(params), "--device", "cpu"]
    args += ["--threads", "1", "--out-dir", str(out), *extra]
    return main(args)


def fold_teacher_labels(synth_dir, tmp_path, fold: int) -> str:
    """The pseudo step on a fold-``fold`` teacher's test maps: the test truth, as sure as can be
    (every non-blank tile decided), at a cut tuned on OOF maps equal to the train truth."""
    from saltseg.probs import write_probs

    train = kaggle.load_train(synth_dir, 101)
    test = kaggle.load_test(synth_dir, 101)
    truth = kaggle.load_test_truth(synth_dir, 101)[1]
    maps = tmp_path / f"results/stage1/unet/fold{fold}/test.parquet"
    write_probs(maps, test.ids, truth.astype(np.float32))
    write_probs(tmp_path / "oof.parquet", train.ids, train.masks.astype(np.float32))
    out = tmp_path / "pseudo.parquet"
    args = ["pseudo", "--data-dir", str(synth_dir), "--probs", str(maps), "--n-folds", "2"]
    args += ["--cut-oof", str(tmp_path / "oof.parquet"), "--out", str(out)]
    assert main(args) == 0
    return str(out)


def test_a_fold_teachers_labels_all_reach_its_student(synth_dir, folds_csv, tmp_path):
    labels = fold_teacher_labels(synth_dir, tmp_path, fold=1)
    table, masks = read_pseudo(labels)
    truth = kaggle.load_test_truth(synth_dir, 101)[1]
    salt = int(truth.reshape(len(truth), -1).any(axis=1).sum())
    assert label_counts(masks)["salt"] == salt  # every salt tile decided, some empty ones too
    assert (table["fold"] == 1).all()  # made by fold 1's models: all fold 1's
    out = tmp_path / "student"
    assert train_student(synth_dir, folds_csv, out, student_params(), "--pseudo", labels) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    counts = label_counts(masks)
    assert counts["salt"] > 0 and counts["empty"] > 0
    assert metrics["pseudo_tiles"] == {"train+pseudo": counts}


def test_an_ensembles_labels_are_dealt_and_the_student_counts_its_share(
    synth_dir, folds_csv, tmp_path
):
    test = kaggle.load_test(synth_dir, 101)
    masks = np.zeros((12, 101, 101), np.uint8)
    masks[:7, :20] = 1  # 7 salt labels, 5 empty
    table = pd.DataFrame({"confidence": np.ones(12), "fold": np.arange(12) % 2})
    write_pseudo(tmp_path / "p.parquet", test.ids[:12], masks, table, "balanced, by hand")
    out = tmp_path / "student"
    params = student_params()
    params["phases"].insert(0, {**params["phases"][0], "data": "pseudo"})
    args = ("--pseudo", str(tmp_path / "p.parquet"))
    assert train_student(synth_dir, folds_csv, out, params, *args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pseudo_tiles"] == {
        "pseudo": {"salt": 7, "empty": 5},  # pretraining: the whole file
        "train+pseudo": {"salt": 3, "empty": 3},  # its share: rows 1, 3, 5 salt, 7, 9, 11 empty
    }


def test_a_phase_with_few_pseudo_labels_warns_naming_their_selection(
    synth_dir, folds_csv, tmp_path, caplog
):
    test = kaggle.load_test(synth_dir, 101)
    masks = np.zeros((2, 101, 101), np.uint8)
    masks[0, :20] = 1
    table = pd.DataFrame({"confidence": [1.0, 1.0], "fold": [1, 1]})
    selection = "balanced at min_confidence 0.9, the fold-1 models cut at Cut(threshold=0.5)"
    write_pseudo(tmp_path / "p.parquet", test.ids[:2], masks, table, selection)
    with caplog.at_level(logging.WARNING, logger="saltseg.steps.fold_models"):
        args = ("--pseudo", str(tmp_path / "p.parquet"))
        assert train_student(synth_dir, folds_csv, tmp_path / "s", student_params(), *args) == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "phase 1 (data: train+pseudo) learns from 2 pseudo-labels" in warning
    assert f"(1 salt, 1 empty), fewer than {FEW_LABELS}" in warning
    assert selection in warning and "Lower pseudo.min_confidence" in warning


def test_a_student_without_labels_warns_and_trains_on_its_train_tiles(
    synth_dir, folds_csv, tmp_path, caplog
):
    table = pd.DataFrame({"confidence": [], "fold": []})
    write_pseudo(tmp_path / "p.parquet", [], np.zeros((0, 101, 101), np.uint8), table, "none")
    with caplog.at_level(logging.WARNING, logger="saltseg.steps.fold_models"):
        args = ("--pseudo", str(tmp_path / "p.parquet"))
        assert train_student(synth_dir, folds_csv, tmp_path / "s", student_params(), *args) == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "learns from 0 pseudo-labels" in warning
    assert (
        f"fewer than {FEW_LABELS}: it trains on the train tiles alone; selected as: none" in warning
    )
    metrics = json.loads((tmp_path / "s/metrics.json").read_text())
    assert metrics["pseudo_tiles"] == {"train+pseudo": {"salt": 0, "empty": 0}}
    assert metrics["epochs"] == 1


def teacher_bundle(path, model: dict, seeds=(1, 2)) -> list[dict]:
    """A teacher's model.pt with one snapshot per seed (differently initialised networks)."""
    snapshots = []
    for seed in seeds:
        torch.manual_seed(seed)
        snapshots.append(build_model("unet", 101, **model).state_dict())
    torch.save({"arch": "unet", "model": model, "tile": 101, "snapshots": snapshots}, path)
    return snapshots


def test_init_starts_the_student_from_the_teachers_last_snapshot(
    synth_dir, folds_csv, tmp_path, monkeypatch
):
    first, last = teacher_bundle(tmp_path / "teacher.pt", MODEL)
    started, real_fit = [], fold_models.fit

    def recording_fit(model, *args):
        started.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_fit(model, *args)

    monkeypatch.setattr(fold_models, "fit", recording_fit)
    out = tmp_path / "student"
    params = student_params(data="train")
    status = train_student(
        synth_dir, folds_csv, out, params, "--init", str(tmp_path / "teacher.pt")
    )
    assert status == 0
    (start,) = started
    assert start.keys() == last.keys()
    assert all(torch.equal(start[k], last[k]) for k in last)
    assert not all(torch.equal(start[k], first[k]) for k in first)


def test_init_refuses_a_teacher_of_other_model_settings(synth_dir, folds_csv, tmp_path, capsys):
    other = {**MODEL, "decoder_channels": [8, 8, 8, 8, 8]}
    teacher_bundle(tmp_path / "teacher.pt", other, seeds=(1,))
    out = tmp_path / "student"
    params = student_params(data="train")
    status = train_student(
        synth_dir, folds_csv, out, params, "--init", str(tmp_path / "teacher.pt")
    )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"saltseg train: error: {tmp_path / 'teacher.pt'}: expected a unet teacher with the"
        " student's model"
    ]
    assert not (out / "model.pt").exists()
