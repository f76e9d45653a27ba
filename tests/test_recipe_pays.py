"""The default recipe end to end: every later stage, and the blend, at least as good as what
it learns from, on OOF and on the synthetic test truth (issue 40's bar for `snakemake all`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from saltseg.pseudo import label_counts, read_pseudo

TOLERANCE = 0.005  # a later stage may trail the one before by this much (a tile or two of 128)
COLLAPSE = 0.08  # the OOF at 0.5 may trail the tuned OOF by at most this much


@pytest.fixture(scope="module")
def results(repo, tmp_path_factory) -> Path:
    """``results/`` of the default config, run from a copy of the workflow."""
    workdir = tmp_path_factory.mktemp("default")
    shutil.copy(repo / "Snakefile", workdir)
    shutil.copy(repo / "config.yaml", workdir)
    for folder in ("workflow", "envs", "src"):
        shutil.copytree(repo / folder, workdir / folder)
    (workdir / "profiles").symlink_to("workflow/profiles")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        ["snakemake", "--", "results/summary.csv"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(workdir) / "results"


@pytest.fixture(scope="module")
def summary(results) -> pd.DataFrame:
    return pd.read_csv(results / "summary.csv").set_index(["stage", "name"])


def stage_rows(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.xs("ensemble", level="name")


@pytest.mark.slow
def test_each_later_stage_keeps_or_beats_the_one_before(summary):
    stages = stage_rows(summary)
    assert list(stages.index) == ["stage1", "stage2", "stage3"]
    for column in ("oof_tuned", "test_tuned"):
        scores = stages[column].to_numpy()
        assert (scores[1:] >= scores[:-1] - TOLERANCE).all(), (column, scores)
    small = stages["score_1_to_10pct"].to_numpy()  # where the old stages lost most
    assert small[1] >= small[0], small


@pytest.mark.slow
def test_the_blend_never_loses_to_its_best_member(summary):
    blend = summary.loc[("blend", "blend")]
    members = stage_rows(summary)
    assert blend["oof_tuned"] >= members["oof_tuned"].max() - 1e-9
    assert blend["test_tuned"] >= members["test_tuned"].max() - TOLERANCE
    assert blend["test_submission"] >= blend["test_tuned"] - TOLERANCE


@pytest.mark.slow
def test_no_stage_collapses_at_the_fixed_cut(summary):
    gap = summary["oof_tuned"] - summary["oof_at_0.5"]
    assert (gap <= COLLAPSE).all(), gap.to_dict()


@pytest.mark.slow
def test_the_blends_member_scores_are_the_summarys(results, summary):
    members = json.loads((results / "blend/members.json").read_text())
    blend = summary.loc[("blend", "blend")]
    assert members["oof_tuned"] == pytest.approx(blend["oof_tuned"], abs=1e-12)
    for member in members["members"] + members["dropped"]:
        row = summary.loc[(member["stage"], member["model"])]
        assert member["oof_tuned"] == pytest.approx(row["oof_tuned"], abs=1e-12), member


@pytest.mark.slow
def test_every_student_learns_from_every_label_of_its_fold(results):
    """A fold teacher's file is its fold's: each later-stage fold counts all of its labels."""
    for stage, teacher in (("stage2", "stage1"), ("stage3", "stage2")):
        for metrics_json in sorted((results / stage).glob("*/fold*/metrics.json")):
            metrics = json.loads(metrics_json.read_text())
            labels = results / f"pseudo/{teacher}/fold{metrics['fold']}.parquet"
            table, masks = read_pseudo(labels)
            assert (table["fold"] == metrics["fold"]).all(), labels
            assert metrics["pseudo_tiles"], metrics_json  # the default students use labels
            for counts in metrics["pseudo_tiles"].values():
                assert counts == label_counts(masks), metrics_json
