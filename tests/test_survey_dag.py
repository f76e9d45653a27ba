"""The survey through the workflow: `snakemake volume --configfile own.yaml` in a copy of the
workflow on the synthetic survey (slow), and the planning-time refusal of mismatched shapes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import segyio
import yaml

from saltseg.survey.synthetic import generate_survey

# run settings cut to a tiny survey; none of them is part of the recipe
TINY = {
    "folds": {"n_folds": 2},
    "runtime": {"threads": 2},
    "predict": {"tta": ["none"]},
    "stages": [1, 2],
    "sections": {"stride": 101},
    "mosaic": {"draw": 1},
    # a one-epoch teacher is sure of no tile: every test tile becomes a label, so the student
    # really learns from the uninterpreted slices
    "pseudo": {"method": "confident", "min_confidence": 0.0},
    "models": {
        name: {"phases": [{"data": data, "loss": "bce_dice", "lr": 0.003, "epochs": 1}]}
        for name, data in (("unet_r10", "train"), ("unet_r10_student", "train+pseudo"))
    },
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        ["snakemake", *args], cwd=workdir, capture_output=True, text=True, env=env, timeout=1800
    )


def copy_workflow(repo: Path, workdir: Path) -> None:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(repo / name, workdir)
    for name in ("workflow", "envs", "src"):  # the rules run python -m saltseg from src
        shutil.copytree(repo / name, workdir / name)


def test_mismatched_shapes_fail_at_planning_with_one_line(repo, tmp_path):
    copy_workflow(repo, tmp_path)
    generate_survey(tmp_path / "own", inlines=3, crosslines=120, samples=110)
    np.save(tmp_path / "labels.npy", np.zeros((3, 120, 109), np.float32))
    own = {"survey": {"seismic": "own/seismic.sgy", "labels": "labels.npy"}}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(own))
    result = snakemake(tmp_path, "-n", "volume", "--configfile", "own.yaml")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "config: survey: labels.npy: expected labels of the seismic's shape (3, 120, 110)"
        " (own/seismic.sgy), got (3, 120, 109)"
    )
    assert not (tmp_path / "results").exists()
    result = snakemake(
        tmp_path, "-n", "volume", "--configfile", "own.yaml", "--config", "data_dir=own"
    )
    assert result.stderr.strip().splitlines()[-1] == (
        "config: survey, data_dir: expected one data source, got both"
    )


@pytest.mark.slow
def test_the_synthetic_survey_runs_to_a_volume_with_its_headers(repo, tmp_path):
    copy_workflow(repo, tmp_path)
    generate_survey(tmp_path / "own", inlines=9, crosslines=180, samples=120, every=3)
    own = {
        "survey": {"seismic": "own/seismic.sgy", "labels": "own/labels.sgy", "keep_labels": True},
        **TINY,
    }
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(own))
    run = ["volume", "submission", "--cores", "2", "--configfile", "own.yaml"]
    result = snakemake(tmp_path, *run)  # the submission: post-processed on the known mosaics
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    results = tmp_path / "results"
    data = results / "data" / "survey"
    assert {p.name for p in (data / "train" / "images").iterdir()} == {
        f"s{k:05d}r{r:03d}c{c:03d}.png" for k in (0, 3, 6) for r in range(2) for c in range(2)
    }
    folds = pd.read_csv(results / "folds.csv", dtype={"id": str})
    by_slice = folds.groupby(folds["id"].str[:6])["fold"].agg(set).to_dict()
    assert by_slice == {"s00000": {0}, "s00003": {1}, "s00006": {1}}  # 4 | 8 tiles: first cut
    layout = pd.read_parquet(results / "mosaic" / "tiles.parquet")
    assert len(layout) == 9 * 4 and set(layout["mosaic_id"]) == set(range(9))
    assert "survey_mosaic" in result.stderr and "rule mosaic:" not in result.stderr
    report = yaml.safe_load((results / "postprocess" / "report.json").read_text())
    assert 0 <= report["oof_after"] <= 1 and report["enabled"]
    submission = pd.read_csv(results / "submission.csv", keep_default_na=False)
    assert len(submission) == 6 * 4  # the uninterpreted slices' tiles
    metrics = yaml.safe_load((results / "stage2/unet_r10_student/fold0/metrics.json").read_text())
    assert sum(metrics["pseudo_tiles"]["train+pseudo"].values()) == 6 * 4  # uninterpreted slices

    with (
        segyio.open(str(tmp_path / "own" / "seismic.sgy")) as src,
        segyio.open(str(tmp_path / "own" / "labels.sgy")) as marks,
        segyio.open(str(results / "volume" / "probability.sgy")) as prob,
        segyio.open(str(results / "volume" / "mask.sgy")) as mask,
    ):
        assert list(prob.ilines) == list(src.ilines) and list(mask.xlines) == list(src.xlines)
        assert dict(prob.header[100]) == dict(src.header[100]) == dict(mask.header[100])
        assert prob.text[0] == src.text[0]
        p, m, labels = segyio.tools.cube(prob), segyio.tools.cube(mask), segyio.tools.cube(marks)
    assert p.shape == (9, 180, 120) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    known = labels >= 0
    np.testing.assert_array_equal(p[known], labels[known])  # keep_labels: yours where you drew
    np.testing.assert_array_equal(m[known], labels[known])
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert (results / "report" / "volume_slices.png").stat().st_size > 10_000
