"""The Snakemake DAG end to end on a tiny synthetic config, and what a dry run would rerun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from saltseg import rle
from saltseg.mosaic.context import Context
from saltseg.probs import read_probs
from saltseg.pseudo import label_counts, read_pseudo

STAGE_MODELS = [
    ("stage1", "unet_r10"),
    ("stage2", "unet_r10_pretrain"),
    ("stage3", "unet_r10_mix"),
]
TINY = {  # the seed-style later stages (pretraining, a share mixed in) with fixed blend weights
    "synthetic": {"sections": 2, "rows": 4, "cols": 5},
    "folds": {"n_folds": 2},
    "runtime": {"threads": 2},
    "predict": {"tta": ["none"]},
    "stage2": {"models": ["unet_r10_pretrain"]},
    "stage3": {"models": ["unet_r10_mix"]},
    "blend": {
        "method": "fixed",
        "models": [
            {"stage": 2, "model": "unet_r10_pretrain", "weight": 1.0},
            {"stage": 3, "model": "unet_r10_mix", "weight": 1.0},
        ],
    },
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        ["snakemake", *args], cwd=workdir, capture_output=True, text=True, env=env, timeout=900
    )


def write_config(workdir: Path, repo: Path, change=None) -> None:
    config = yaml.safe_load((repo / "config.yaml").read_text())
    for key, value in TINY.items():
        config[key].update(value)
    for name, data in [
        ("unet_r10", ["train"]),
        ("unet_r10_pretrain", ["pseudo", "train"]),
        ("unet_r10_mix", ["train+pseudo"]),
    ]:
        model = config["models"][name]
        model["model"] = {**model["model"], "decoder_channels": [16, 16, 8, 8, 8]}
        model["phases"] = [
            {"data": d, "loss": "bce_dice", "lr": 0.003, "epochs": 1, "batch_size": 8} for d in data
        ]
    # stage 1 reads neighbour context (8 px each side, 5 after the resize to 64, padded to 96):
    # its OOF, test maps and the pseudo-labels made from them come from windows; the blend
    # (stages 2 and 3) stays context-free, so predict-section can use it
    config["models"]["unet_r10"]["model"] |= {"context": {"margin": 8}, "pad_to": 96}
    config["pseudo"]["min_confidence"] = 0.5  # one-epoch models are rarely confident
    if change:
        change(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def workflow(repo, tmp_path_factory) -> Path:
    """A copy of the workflow with a tiny config, run once to a submission."""
    workdir = tmp_path_factory.mktemp("wf")
    shutil.copy(repo / "Snakefile", workdir)
    shutil.copytree(repo / "workflow", workdir / "workflow")
    shutil.copytree(repo / "envs", workdir / "envs")
    shutil.copytree(repo / "src", workdir / "src")  # the rules run python -m saltseg from here
    (workdir / "profiles").symlink_to("workflow/profiles")
    write_config(workdir, repo)
    result = snakemake(workdir)  # default target; cores and gpu=1 come from the default profile
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_the_dag_reaches_a_valid_submission(workflow):
    data = workflow / "results/data/synthetic"
    sample = pd.read_csv(data / "sample_submission.csv")
    sub = pd.read_csv(workflow / "results/submission.csv", keep_default_na=False)
    assert sub["id"].tolist() == sample["id"].tolist()
    assert all(rle.decode(code, (101, 101)).shape == (101, 101) for code in sub["rle_mask"])
    train = pd.read_csv(data / "train.csv")
    for stage, model in STAGE_MODELS:
        oof_ids, oof = read_probs(workflow / f"results/{stage}/{model}/oof.parquet")
        assert oof_ids == train["id"].tolist() and oof.shape == (len(train), 101, 101)
    cv = json.loads((workflow / "results/blend/cv.json").read_text())
    assert 0 <= cv["metric_at_0.5"] <= cv["metric_tuned"] <= 1
    summary = pd.read_csv(workflow / "results/summary.csv")
    assert list(zip(summary["stage"], summary["name"])) == [
        *STAGE_MODELS,
        *[(stage, "ensemble") for stage in ("stage1", "stage2", "stage3")],
        ("blend", "blend"),
    ]
    blend = summary.iloc[-1]
    assert blend["oof_tuned"] == pytest.approx(cv["metric_tuned"])
    report = json.loads((workflow / "results/postprocess/report.json").read_text())
    assert blend["oof_postprocessed"] == pytest.approx(report["oof_after"])
    assert blend["postprocess_gain"] == pytest.approx(report["oof_after"] - report["oof_before"])
    assert report["applied"] == (report["gain"] >= 0)
    for name in ["stage1", "stage2", "stage1/fold0", "stage1/fold1", "stage2/fold1"]:
        pseudo, masks = read_pseudo(workflow / f"results/pseudo/{name}.parquet")
        assert set(pseudo["id"]) <= set(sample["id"]) and len(masks) == len(pseudo)
        assert (pseudo["confidence"] >= 0.5).all() and pseudo["fold"].between(0, 1).all()
    history = pd.read_csv(workflow / "results/stage2/unet_r10_pretrain/fold0/history.csv")
    n_pseudo = len(read_pseudo(workflow / "results/pseudo/stage1/fold0.parquet")[0])
    expected = ["pseudo", "train"] if n_pseudo else ["train"]  # no pseudo tiles: phase skipped
    assert history["data"].tolist() == expected
    tiles = pd.read_parquet(workflow / "results/mosaic/tiles.parquet")
    assert sorted(tiles["id"]) == sorted(train["id"].tolist() + sample["id"].tolist())
    assert not tiles.duplicated(["mosaic_id", "x", "y"]).any()
    assert list((workflow / "results/mosaic/png").glob("mosaic*.png"))
    for fold in (0, 1):
        fold_dir = workflow / f"results/stage1/unet_r10/fold{fold}"
        metrics = json.loads((fold_dir / "metrics.json").read_text())
        params = json.loads((fold_dir / "params.json").read_text())
        assert metrics["fold"] == fold and metrics["epochs"] == 1
        assert params["phases"][0]["epochs"] == 1 and params["model"]["encoder_name"] == "resnet10t"
        assert (workflow / f"results/logs/train/stage1_unet_r10_fold{fold}.log").stat().st_size
        assert (workflow / f"results/benchmarks/train/stage1_unet_r10_fold{fold}.tsv").is_file()
        mix = json.loads(
            (workflow / f"results/stage3/unet_r10_mix/fold{fold}/metrics.json").read_text()
        )
        share, masks = read_pseudo(workflow / f"results/pseudo/stage2/fold{fold}.parquet")
        assert (share["fold"] == fold).all()  # made by fold k's models: all fold k's
        assert mix["pseudo_tiles"] == {"train+pseudo": label_counts(masks)}
    context = Context.read(workflow / "results/context/margin8.npz")
    assert sorted(context.ids) == sorted(tiles["id"]) and context.windows.shape[1:] == (117, 117)
    # a context model trains only with its windows (saltseg train refuses to start without them)
    params = json.loads((workflow / "results/stage1/unet_r10/fold0/params.json").read_text())
    assert params["model"]["context"] == {"margin": 8}


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """``{rule: count}`` from a dry run's job table."""
    counts, in_table = {}, False
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
        elif in_table and parts and parts[0] == "total":
            break
    return counts


@pytest.mark.slow
def test_the_report_holds_every_section(workflow):
    result = snakemake(workflow, "--report", "results/report.html")
    assert result.returncode == 0, result.stderr[-2000:]
    html = (workflow / "results/report.html").read_text()
    for section in ["Summary", "Training", "OOF predictions", "Mosaics", "Run time", "Submission"]:
        assert section in html, section
    for png in ["curves/stage1_unet_r10.png", "oof_gallery.png", "runtimes.png"]:
        assert (workflow / "results/report" / png).stat().st_size > 10_000, png
    counts = json.loads((workflow / "results/report/oof_counts.json").read_text())
    assert counts["tp"] + counts["fp"] + counts["fn"] + counts["tn"] == len(
        pd.read_csv(workflow / "results/data/synthetic/train.csv")
    )


@pytest.mark.slow
def test_a_configured_section_is_predicted_by_the_ensemble(workflow, repo):
    import numpy as np

    from saltseg.data.synthetic import draw_section

    image, _ = draw_section(np.random.default_rng(5), 2, 3)
    np.save(workflow / "section.npy", image.astype(np.float32) - 128)

    def change(config):
        config["sections"]["inputs"] = {"demo": "section.npy"}

    write_config(workflow, repo, change)
    try:
        result = snakemake(workflow, "sections")
    finally:
        write_config(workflow, repo)
    assert result.returncode == 0, result.stderr[-3000:]
    out = workflow / "results/sections/demo"
    probability, mask = np.load(out / "probability.npy"), np.load(out / "mask.npy")
    assert probability.shape == mask.shape == image.shape
    assert probability.dtype == np.float32 and 0 <= probability.min() <= probability.max() <= 1
    assert set(np.unique(mask)) <= {0, 1}
    assert (out / "overlay.png").stat().st_size > 0
    params = json.loads((out / "params.json").read_text())  # the blend, as the submission
    members = json.loads((workflow / "results/blend/members.json").read_text())["members"]
    blend_cv = json.loads((workflow / "results/blend/cv.json").read_text())
    assert params["threshold"] == blend_cv["threshold_pixels"]
    assert params["threshold_source"] == "results/blend/cv.json"
    assert {str(Path(m).parent.parent) for m in params["models"]} == {m["models"] for m in members}


@pytest.mark.slow
def test_nothing_to_do_after_a_run(workflow):
    result = snakemake(workflow, "-n", "submission")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_speed_settings_rerun_nothing(workflow, tmp_path):
    speed = tmp_path / "speed.yaml"
    speed.write_text(
        yaml.safe_dump({"runtime": {"threads": 1, "compile": True}, "predict": {"batch_size": 7}})
    )
    result = snakemake(workflow, "-n", "submission", "--configfile", str(speed))
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_fold_outside_n_folds_is_planned_by_no_rule(workflow):
    result = snakemake(workflow, "-n", "results/stage1/unet_r10/fold7/model.pt")
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "fold7/model.pt" in out and "Traceback" not in out
    assert not (workflow / "results/stage1/unet_r10/fold7").exists()


@pytest.mark.slow
def test_one_fold_target_rebuilds_that_fold_alone(workflow):
    target = "results/stage1/unet_r10/fold1/model.pt"
    result = snakemake(workflow, "-n", "--forcerun", target, "--", target)
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == {"train": 1}


def dry_run_after(workflow: Path, repo: Path, model: str) -> dict[str, int]:
    """The jobs ``submission`` would run after a changed lr of ``model`` (config restored)."""

    def change(config):
        config["models"][model]["phases"][0]["lr"] = 0.002

    write_config(workflow, repo, change)
    try:
        result = snakemake(workflow, "-n", "submission")
    finally:
        write_config(workflow, repo)
    assert result.returncode == 0, result.stderr[-2000:]
    return planned_jobs(result)


@pytest.mark.slow
def test_a_changed_model_value_reruns_that_model_and_what_follows(workflow, repo):
    # stage 1 feeds stage 2 (pseudo-labels) and so stage 3 and the blend of stages 2 and 3;
    # the submission needs no stage ensemble and no stage-1 fold merge
    assert dry_run_after(workflow, repo, "unet_r10") == {
        "train": 6,
        "predict": 6,
        "merge_folds": 2,
        "pseudo_fold": 4,
        "blend": 1,
        "postprocess": 1,
        "submission": 1,
    }


@pytest.mark.slow
def test_a_changed_stage3_model_leaves_earlier_stages_alone(workflow, repo):
    assert dry_run_after(workflow, repo, "unet_r10_mix") == {
        "train": 2,
        "predict": 2,
        "merge_folds": 1,
        "blend": 1,
        "postprocess": 1,
        "submission": 1,
    }


def planned_wildcards(result: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """``{(rule, wildcards)}`` of a dry run's jobs."""
    jobs, rule = set(), None
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith("rule ") or line.startswith("localrule "):
            rule = line.split()[1].rstrip(":")
        elif line.startswith("wildcards:"):
            jobs.add((rule, line.removeprefix("wildcards:").strip()))
    return jobs


@pytest.mark.slow
def test_a_fold_learns_only_from_pseudo_labels_of_models_blind_to_it(workflow):
    """Stage-2 fold 0's labels come from stage-1 fold-0 models only, cut where fold 1's OOF maps
    score best: no model that trained on a fold-0 validation tile labels its pseudo-labels and
    no fold-0 label chooses their cut, so its OOF score cannot leak."""
    target = "results/stage2/unet_r10_pretrain/fold0/model.pt"
    result = snakemake(workflow, "-n", "--forceall", "--", target)
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_wildcards(result) == {
        ("context", "margin=8"),  # the windows of every tile: images only, no labels
        ("train", "stage=stage1, model=unet_r10, fold=0"),
        ("predict", "stage=stage1, model=unet_r10, fold=0"),
        ("train", "stage=stage1, model=unet_r10, fold=1"),  # for fold 1's OOF: the cut
        ("predict", "stage=stage1, model=unet_r10, fold=1"),
        ("pseudo_fold", "stage=stage1, fold=0"),
        ("train", "stage=stage2, model=unet_r10_pretrain, fold=0"),
    }
    inputs = next(
        line.split(":", 1)[1].split(", ")
        for line in result.stdout.split("rule pseudo_fold:", 1)[1].splitlines()
        if line.strip().startswith("input:")
    )
    maps = {
        Path(path.strip()).relative_to("results/stage1/unet_r10").as_posix() for path in inputs[1:]
    }
    assert maps == {"fold0/test.parquet", "fold1/oof.parquet"}


@pytest.mark.slow
def test_users_word_order_works_with_a_double_dash(workflow):
    result = snakemake(workflow, "-n", "--cores", "2", "--resources", "gpu=1", "--", "submission")
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_bad_config_value_stops_with_one_line(repo, tmp_path):
    shutil.copy(repo / "Snakefile", tmp_path)
    shutil.copytree(repo / "workflow", tmp_path / "workflow")
    write_config(tmp_path, repo, lambda c: c["folds"].update(n_folds="five"))
    result = snakemake(tmp_path, "-n", "--cores", "1")
    assert result.returncode != 0
    assert result.stderr.strip() == "config: folds.n_folds: 'five' is not of type 'integer'"


def test_a_missing_data_dir_stops_with_one_line(repo, tmp_path):
    shutil.copy(repo / "Snakefile", tmp_path)
    shutil.copytree(repo / "workflow", tmp_path / "workflow")
    write_config(tmp_path, repo, lambda c: c.update(data_dir="no/such/dir"))
    result = snakemake(tmp_path, "-n", "--cores", "1")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("config: data_dir: expected 'synthetic' or a Kaggle")


def test_lint_is_clean(repo):
    result = snakemake(repo, "--lint", "--cores", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.parametrize("profile, n_train", [("cpu", 3), ("fast", 15), ("full", 30)])
def test_each_profile_plans_its_stages(repo, tmp_path, profile, n_train):
    """cpu: stage 1 on 3 folds (README "Profiles" says why); fast, full: three stages."""
    shutil.copy(repo / "Snakefile", tmp_path)
    shutil.copytree(repo / "workflow", tmp_path / "workflow")
    shutil.copy(repo / "config.yaml", tmp_path)
    result = snakemake(tmp_path, "-n", "--workflow-profile", f"workflow/profiles/{profile}")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    assert jobs["train"] == n_train and jobs["blend"] == 1 and jobs["submission"] == 1
