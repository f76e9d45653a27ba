"""A data file edited in place, added or removed reruns the jobs that read it, and only those.

Each rule keeps the fingerprint of the data files its step reads as the param ``data_files``
(saltseg.data.fingerprint): the train side (train.csv, depths.csv, train/images, train/masks),
the test side (sample_submission.csv, depths.csv, test/images), the test truth (solution.csv,
summary only). Each case edits one file of a finished tiny run, keeping its size and time as
``touch -r`` would (only its contents tell), and reads the jobs that ``snakemake -n`` plans.
The run is finished by ``snakemake --touch --forceall`` over empty outputs: no job runs, and
Snakemake records each job's params as a real run does.
"""

from __future__ import annotations

import copy
import os
import shutil
import struct
import subprocess
import zlib
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from test_workflow import planned_jobs, planned_wildcards, snakemake

from saltseg.data import fingerprint as fingerprints
from saltseg.data.fingerprint import TEST, TRAIN
from saltseg.data.synthetic import generate

# stage 1: a plain model, one with slot_minutes (it reads the test ids) and one with neighbour
# context (its windows come from train and test tiles); stage 2 learns from stage-1 pseudo-labels
MODELS = ["unet_r10", "unet_r10_slot", "unet_r10_ctx"]
STAGE1 = {("train", f"stage=stage1, model={model}, fold={k}") for model in MODELS for k in (0, 1)}
NOTHING = "Nothing to be done"


def tiny_config(repo: Path, data_dir: str) -> dict:
    config = yaml.safe_load((repo / "config.yaml").read_text())
    config["data_dir"] = data_dir
    config["synthetic"].update(sections=2, rows=4, cols=5)
    config["folds"]["n_folds"] = 2
    config["stages"] = [1, 2]
    models = config["models"]
    models["unet_r10_slot"] = {**copy.deepcopy(models["unet_r10"]), "slot_minutes": 1}
    context = copy.deepcopy(models["unet_r10"])
    context["model"] |= {"context": {"margin": 8}, "pad_to": 96}
    models["unet_r10_ctx"] = context
    config["stage1"]["models"] = MODELS
    return config


def copy_workflow(repo: Path, workdir: Path, config: dict) -> None:
    shutil.copy(repo / "Snakefile", workdir)
    for folder in ("workflow", "envs", "src"):
        shutil.copytree(repo / folder, workdir / folder)
    (workdir / "profiles").symlink_to("workflow/profiles")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def finish_by_touch(workdir: Path) -> dict[str, int]:
    """Make every missing output of the default target empty, then mark every job done with its
    params recorded (``--touch --forceall``); return the jobs of a full rerun."""
    plan = snakemake(workdir, "-n", "--forceall")
    assert plan.returncode == 0, plan.stderr[-2000:]
    for line in plan.stdout.splitlines():
        key, _, files = line.strip().partition(": ")
        if key in ("output", "log", "benchmark"):
            for name in files.split(", "):
                path = workdir / name
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                else:  # a folder output
                    path.mkdir(parents=True, exist_ok=True)
    touched = snakemake(workdir, "--touch", "--forceall")
    assert touched.returncode == 0, touched.stderr[-2000:]
    return planned_jobs(plan)


def dry_run(workdir: Path) -> subprocess.CompletedProcess:
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def kaggle_run(repo, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A finished run on a tiny data folder of the user's (Kaggle layout, with solution.csv),
    and the jobs of a full rerun."""
    workdir = tmp_path_factory.mktemp("data_reruns")
    generate(workdir / "data", seed=3, sections=2, rows=4, cols=5, train_fraction=0.5)
    copy_workflow(repo, workdir, tiny_config(repo, "data"))
    return workdir, finish_by_touch(workdir)


@contextmanager
def restored(path: Path):
    """Put back ``path``'s bytes and times (or remove it, if new) after the block."""
    before = path.read_bytes() if path.exists() else None
    times = path.stat() if before is not None else None
    try:
        yield path
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)
            os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def edit_in_place(path: Path) -> None:
    """Rewrite ``path`` in place with its size and modification time kept, as ``touch -r``
    would (no new entry in its folder, the same size and time: only its contents tell): one
    character of a CSV's last row, one pixel of a PNG (to a value whose PNG is as long)."""
    before = path.stat()
    if path.suffix == ".csv":
        text = path.read_text()
        last = text.rstrip("\n")[-1]
        path.write_text(text.rstrip("\n")[:-1] + ("1" if last != "1" else "2") + "\n")
    else:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        first = int(image[0, 0])
        for value in [255 - first, *range(256)]:
            image[0, 0] = value
            png = png_of_size(image, before.st_size)
            if value != first and png is not None:
                break
        path.write_bytes(png)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def png_of_size(image: np.ndarray, size: int) -> bytes | None:
    """``image`` as a PNG of ``size`` bytes, if an encoding makes it at most that long: padded to
    it with a comment (a ``tEXt`` chunk) before its end."""
    for options in ([], [cv2.IMWRITE_PNG_COMPRESSION, 9]):  # OpenCV's default, the smallest
        png = cv2.imencode(".png", image, options)[1].tobytes()
        pad = size - len(png) - 12  # a chunk: length, type, data, CRC
        if pad == -12:
            return png
        if pad >= 8:
            text = b"tEXtComment\0" + b" " * (pad - 8)
            chunk = struct.pack(">I", len(text) - 4) + text + struct.pack(">I", zlib.crc32(text))
            return png[:-12] + chunk + png[-12:]  # the last 12 bytes: the IEND chunk
    return None


def planned_after_edit(workdir: Path, name: str) -> subprocess.CompletedProcess:
    """The dry run after ``name`` (in the data folder; a glob picks its first file) is edited in
    place; the file is put back afterwards."""
    data = workdir / "data"
    path = data / name if "*" not in name else sorted(data.glob(name))[0]
    with restored(path):
        edit_in_place(path)
        return dry_run(workdir)


def without(jobs: dict[str, int], *rules: str) -> dict[str, int]:
    return {rule: n for rule, n in jobs.items() if rule not in rules}


# what the test side reruns: the jobs that read test tiles (predict, pseudo-labels, mosaic,
# context, post-processing, submission, summary, the mosaics report) and what follows them,
# including stage-2 training (it reads its pseudo-labels' test images) and the stage-1 model of
# neighbour context (its windows change); never stage-1 training of a plain model
TEST_SIDE = {
    "mosaic": 1,
    "context": 1,
    "train": 4,  # unet_r10_ctx (context windows), stage 2 (pseudo-labels' images), 2 folds each
    "predict": 8,
    "report_curves": 2,
    "merge_folds": 4,
    "pseudo_fold": 2,
    "ensemble": 2,
    "pseudo": 1,
    "blend": 1,
    "postprocess": 1,
    "report_gallery": 1,
    "report_mosaics": 1,
    "submission": 1,
    "summary": 1,
    "report_runtimes": 1,
    "all": 1,
}


def test_a_finished_run_plans_nothing(kaggle_run):
    workdir, _ = kaggle_run
    assert NOTHING in dry_run(workdir).stdout


@pytest.mark.parametrize("name", ["train.csv", "depths.csv"])
def test_an_edited_table_of_the_train_side_reruns_everything(kaggle_run, name):
    """The fold split reads train.csv and depths.csv (by depth), so every job reruns."""
    workdir, everything = kaggle_run
    assert planned_jobs(planned_after_edit(workdir, name)) == everything


@pytest.mark.parametrize("name", ["train/images/*.png", "train/masks/*.png"])
def test_an_edited_train_image_or_mask_reruns_all_but_the_depth_folds(kaggle_run, name):
    workdir, everything = kaggle_run
    assert planned_jobs(planned_after_edit(workdir, name)) == without(everything, "folds")


def test_an_edited_sample_submission_reruns_the_test_side_and_slot_training(kaggle_run):
    """The test ids also size the test prediction's share of a model's slot_minutes."""
    workdir, _ = kaggle_run
    result = planned_after_edit(workdir, "sample_submission.csv")
    slot = {("train", f"stage=stage1, model=unet_r10_slot, fold={k}") for k in (0, 1)}
    assert planned_jobs(result) == {
        **TEST_SIDE,
        "train": TEST_SIDE["train"] + 2,
        "report_curves": 3,
    }
    assert planned_wildcards(result) & STAGE1 == slot | {
        ("train", f"stage=stage1, model=unet_r10_ctx, fold={k}") for k in (0, 1)
    }


def test_an_edited_test_image_reruns_the_test_side_not_stage1_training(kaggle_run):
    workdir, _ = kaggle_run
    result = planned_after_edit(workdir, "test/images/*.png")
    assert planned_jobs(result) == TEST_SIDE
    assert planned_wildcards(result) & STAGE1 == {
        ("train", f"stage=stage1, model=unet_r10_ctx, fold={k}") for k in (0, 1)
    }


def test_an_added_test_image_reruns_the_test_side_not_stage1_training(kaggle_run):
    workdir, _ = kaggle_run
    images = workdir / "data" / "test" / "images"
    with restored(images / "new_tile.png") as path:
        shutil.copy(sorted(images.glob("*.png"))[0], path)
        result = dry_run(workdir)
    assert planned_jobs(result) == TEST_SIDE
    assert planned_wildcards(result) & STAGE1 == {
        ("train", f"stage=stage1, model=unet_r10_ctx, fold={k}") for k in (0, 1)
    }


def test_an_edited_test_truth_reruns_the_summary_alone(kaggle_run):
    workdir, _ = kaggle_run
    planned = planned_jobs(planned_after_edit(workdir, "solution.csv"))
    assert planned == {"summary": 1, "report_runtimes": 1, "all": 1}  # runtimes: its benchmark


def test_a_file_that_is_not_read_reruns_nothing(kaggle_run):
    """mosaics.csv (the synthetic data's true layout) is read by no rule."""
    workdir, _ = kaggle_run
    assert NOTHING in planned_after_edit(workdir, "mosaics.csv").stdout


FOLDS = "results/folds.csv"


@pytest.fixture(scope="module")
def synthetic_run(repo, tmp_path_factory) -> tuple[Path, str]:
    """A copy whose synthetic data and folds are made for real, then made again with another
    seed, and the dry run of the folds that follows."""
    workdir = tmp_path_factory.mktemp("synthetic_reruns")
    config = tiny_config(repo, "synthetic")
    copy_workflow(repo, workdir, config)
    assert snakemake(workdir, FOLDS).returncode == 0
    config["synthetic"]["seed"] += 1
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert snakemake(workdir, FOLDS).returncode == 0
    return workdir, snakemake(workdir, "-n", FOLDS).stdout


def test_remade_synthetic_data_reruns_its_readers_once(synthetic_run):
    """The fingerprint recorded when the folds job ran is that of the data it read, made
    earlier in the same run, so the next call plans nothing."""
    _, after_remake = synthetic_run
    assert NOTHING in after_remake


@pytest.mark.parametrize("name, planned", [("train.csv", {"folds": 1}), ("test/images/*.png", {})])
def test_an_edited_synthetic_file_reruns_the_jobs_that_read_it(synthetic_run, name, planned):
    """The synthetic folder counts as the user's: the folds read train.csv, not test images."""
    workdir, _ = synthetic_run
    data = workdir / "results/data/synthetic"
    with restored(sorted(data.glob(name))[0]) as path:
        edit_in_place(path)
        result = snakemake(workdir, "-n", FOLDS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == planned
    assert (NOTHING in result.stdout) == (not planned)


def fresh(data: Path, parts: tuple[str, ...]) -> str:
    """The fingerprint as a new snakemake process computes it (no folder scan or hash kept)."""
    fingerprints.reset()
    return fingerprints.fingerprint(data, parts)


def test_the_fingerprint_follows_names_sizes_and_contents_of_the_files_read(tmp_path):
    """A PNG added, a rewrite with the same size and time, a missing part; not other files, not
    file times."""
    data = tmp_path / "data"
    generate(data, seed=1, sections=1, rows=2, cols=3)
    first = fresh(data, TRAIN)
    n_train = len(list(data.glob("train/*/*.png")))
    assert first.startswith(f"{n_train + 2} data files (depths.csv, train.csv, train/images")
    (data / "train" / "images" / "notes.txt").write_text("not read")
    assert fresh(data, TRAIN) == first
    shutil.copy(next(data.glob("train/images/*.png")), data / "train" / "images" / "new.png")
    assert fresh(data, TRAIN) not in (first, fresh(data, TEST))
    (data / "train" / "images" / "new.png").unlink()
    assert fresh(data, TRAIN) == first
    stat = (data / "train.csv").stat()
    os.utime(data / "train.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns // 10**9 * 10**9 - 1))
    assert fresh(data, TRAIN) == first
    for name in ("train.csv", "train/masks/*.png"):
        with restored(sorted(data.glob(name))[0]) as path:
            edit_in_place(path)
            assert fresh(data, TRAIN) != first
        assert fresh(data, TRAIN) == first
    shutil.rmtree(data / "train" / "masks")  # optional in the Kaggle layout: counted as absent
    assert fresh(data, TRAIN).startswith(f"{n_train // 2 + 2} data files")


def test_reliability_counts_every_case_here():
    from bench.reliability import OTHERS

    here = {name for name in globals() if name.startswith("test_")}
    assert set(OTHERS["tests/test_data_reruns.py"]) == here - {
        "test_the_fingerprint_follows_names_sizes_and_contents_of_the_files_read",
        "test_reliability_counts_every_case_here",
    }
