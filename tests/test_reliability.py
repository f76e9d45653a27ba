"""Reliability: every failure a long run meets leaves the results directory consistent.

Four kinds of failure, each named by the test's prefix (``bench/reliability.py`` counts them):

- ``test_corrupt_*``: bad input ends with one line naming the file and what was expected (exit
  status 2 through ``python -m saltseg``), and writes nothing. The reader's own cases (truncated
  PNG, wrong-size tile, mask/image mismatch, bad RLE, missing depth, duplicated ids, empty
  train.csv, ...) are in ``tests/test_kaggle_reader.py``; here a few of them go through the
  command line, with the cases of the later steps (model files, probability files, folds).
- ``test_disk_full_*``: a write that fails (``RLIMIT_FSIZE``: the writer gets EFBIG as on a full
  disk) stops the job with a clear message, keeps the previous file byte-identical, leaves no
  temporary, and the same command without the limit then completes.
- ``test_kill_*``: ``kill -9`` of the whole ``snakemake`` process group mid-DAG, then
  ``snakemake --unlock`` and ``--rerun-incomplete``; ``kill -9`` of a training job and its resume
  ending with the metrics of an uninterrupted run (the resume itself is
  ``tests/test_resume_kill.py``).
- ``test_invalidation_*``: a changed learning rate of one of two models reruns that model and what
  follows, not the other model (dry run; one model: ``tests/test_workflow.py``).
- ``test_user_files_*``: a step whose output is a folder never deletes a file it did not write: a
  folder holding a user's file is refused in one line, its own earlier output is replaced.
- ``test_option_*``: a bad option value (a count below its minimum, JSON that is not an object) is
  one line naming the option at parsing, exit status 2, nothing written; ``--threads`` beyond the
  CPUs a job may use is capped, and logged once.
"""

from __future__ import annotations

import copy
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from tiny import TINY_MODEL, tiny_train_params

import saltseg
from saltseg import cli, steps
from saltseg.data.folds import make_folds, read_folds
from saltseg.data.kaggle import load_test, read_depths, train_ids
from saltseg.errors import InputError
from saltseg.inference.predict import read_bundle
from saltseg.io import MANIFEST, WriteError, atomic_dir
from saltseg.models import build_model
from saltseg.probs import read_probs, write_probs
from saltseg.runtime.job import job_runtime
from saltseg.training import checkpoint

SRC = Path(saltseg.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONWARNINGS": "ignore"}
TEMP_NAME = re.compile(
    r"\..+\.[a-z0-9_]{8}(\.\w+)?"
)  # what atomic_path/atomic_dir leave when killed


# ---------------------------------------------------------------- helpers


def run_saltseg(*args: object, fsize: int | None = None) -> subprocess.CompletedProcess:
    """``python -m saltseg ARGS`` in a subprocess; ``fsize`` caps the bytes a file may hold."""

    def limit() -> None:  # runs in the child before exec: a write past the cap gets EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "saltseg", *map(str, args)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit if fsize else None,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit status 2, no traceback, and one ``saltseg <cmd>: error:`` line holding ``expected``."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1], result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def main_error(capsys, *argv: object) -> str:
    """Run the CLI's ``main`` in this process: exit status 2 and its one error line."""
    assert cli.main([str(a) for a in argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def temporaries(folder: Path) -> list[Path]:
    """Leftover temporaries of atomic writes anywhere under ``folder``."""
    return [p for p in folder.rglob(".*") if TEMP_NAME.fullmatch(p.name)]


def tiny_bundle(path: Path, fill: float | None = None) -> None:
    """A ``model.pt`` as training writes it, with tiny random (or ``fill``-valued) weights."""
    torch.manual_seed(0)
    model = build_model("unet", 101, **TINY_MODEL, pretrained="none")
    state = model.state_dict()
    if fill is not None:
        state = {k: v.fill_(fill) if v.is_floating_point() else v for k, v in state.items()}
    bundle = {"arch": "unet", "model": TINY_MODEL, "tile": 101, "snapshots": [state]}
    torch.save(bundle, path)


@pytest.fixture
def data(synth_dir, tmp_path) -> Path:
    """A private copy of the synthetic dataset that a test may break."""
    return shutil.copytree(synth_dir, tmp_path / "data")


@pytest.fixture
def folds_csv(synth_dir, tmp_path) -> Path:
    ids = train_ids(synth_dir)
    path = tmp_path / "folds.csv"
    make_folds(ids, read_depths(synth_dir, ids), 2, 0).to_csv(path, index=False)
    return path


def random_parts(data: Path, folds_csv: Path, out: Path, seed: int) -> tuple[list, list]:
    """Per-fold OOF and test probability files of random (incompressible) maps."""
    rng = np.random.default_rng(seed)
    folds = read_folds(folds_csv, 2).set_index("id")["fold"]
    train, test = train_ids(data), load_test(data, 101).ids
    oof, tst = [], []
    for k in (0, 1):
        ids = [i for i in train if folds[i] == k]
        oof.append(out / f"fold{k}_oof.parquet")
        tst.append(out / f"fold{k}_test.parquet")
        write_probs(oof[-1], ids, rng.random((len(ids), 101, 101)))
        write_probs(tst[-1], test, rng.random((len(test), 101, 101)))
    return oof, tst


# ---------------------------------------------------------------- corrupt inputs, through the CLI


def first_train_id(data: Path) -> str:
    return pd.read_csv(data / "train.csv", dtype=str)["id"][0]


def test_corrupt_truncated_png_through_the_cli(data, tmp_path):
    path = data / "train" / "images" / f"{first_train_id(data)}.png"
    path.write_bytes(path.read_bytes()[:60])
    out = tmp_path / "folds.csv"
    result = run_saltseg("folds", "--data-dir", data, "--out", out, "--stratify", "coverage")
    assert_one_line_error(result, str(path), "expected a readable PNG", "corrupt")
    assert not out.exists() and not temporaries(tmp_path)


def test_corrupt_rle_through_the_cli(data, tmp_path):
    table = pd.read_csv(data / "train.csv", keep_default_na=False, dtype=str)
    table.loc[0, "rle_mask"] = "1 2 3"
    table.to_csv(data / "train.csv", index=False)
    shutil.rmtree(data / "train" / "masks")
    out = tmp_path / "folds.csv"
    result = run_saltseg("folds", "--data-dir", data, "--out", out, "--stratify", "coverage")
    assert_one_line_error(result, f"train.csv id {table['id'][0]}", "'start length' pairs")
    assert not out.exists()


def test_corrupt_model_with_nan_weights_through_the_cli(synth_dir, folds_csv, tmp_path):
    """A diverged training run: predict stops naming model.pt and writes no probability file."""
    model = tmp_path / "model.pt"
    tiny_bundle(model, fill=float("nan"))
    oof, test = tmp_path / "oof.parquet", tmp_path / "test.parquet"
    result = run_saltseg(
        *("predict", "--model", model, "--data-dir", synth_dir, "--folds", folds_csv),
        *("--fold", 0, "--n-folds", 2, "--device", "cpu", "--threads", 1, "--tta", "none"),
        *("--oof", oof, "--test", test),
    )
    assert_one_line_error(result, str(model), "expected finite weights", "NaN")
    assert not oof.exists() and not test.exists() and not temporaries(tmp_path)


def test_corrupt_truncated_parquet_through_the_cli(synth_dir, folds_csv, tmp_path):
    oof, test = random_parts(synth_dir, folds_csv, tmp_path, seed=0)
    oof[1].write_bytes(oof[1].read_bytes()[:100])
    outs = [tmp_path / "out" / name for name in ("oof.parquet", "test.parquet", "cv.json")]
    result = run_saltseg(
        *("merge", "--data-dir", synth_dir, "--oof-parts", *oof, "--test-parts", *test),
        *("--oof", outs[0], "--test", outs[1], "--cv", outs[2]),
    )
    assert_one_line_error(result, str(oof[1]), "expected a saltseg probability parquet")
    assert not any(p.exists() for p in outs)


# ---------------------------------------------------------------- corrupt inputs, in process


def drop_first_depth(data: Path) -> str:
    depths = pd.read_csv(data / "depths.csv", dtype={"id": str})
    first = first_train_id(data)
    depths[depths["id"] != first].to_csv(data / "depths.csv", index=False)
    return f"id {first!r} has none"


def duplicate_a_row(data: Path) -> str:
    table = pd.read_csv(data / "train.csv", keep_default_na=False, dtype=str)
    pd.concat([table, table.iloc[:1]]).to_csv(data / "train.csv", index=False)
    return "expected unique ids"


def empty_train_csv(data: Path) -> str:
    (data / "train.csv").write_text("id,rle_mask\n")
    return "expected at least one row"


def wrong_size_tile(data: Path) -> str:
    import cv2

    cv2.imwrite(
        str(data / "train/images" / f"{first_train_id(data)}.png"), np.zeros((101, 96), np.uint8)
    )
    return "expected a 101x101 tile, got 101x96"


def mask_of_another_size(data: Path) -> str:
    import cv2

    cv2.imwrite(
        str(data / "train/masks" / f"{first_train_id(data)}.png"), np.zeros((50, 50), np.uint8)
    )
    return "expected a mask of its image's size"


def binary_garbage_csv(data: Path) -> str:
    (data / "train.csv").write_bytes(bytes(range(256)) * 4)
    return "train.csv: expected CSV with columns id,rle_mask"


def text_depths(data: Path) -> str:
    depths = pd.read_csv(data / "depths.csv", dtype={"id": str})
    depths["z"] = depths["z"].astype(object)
    depths.loc[depths["id"] == first_train_id(data), "z"] = "deep"
    depths.to_csv(data / "depths.csv", index=False)
    return "expected numeric z"


@pytest.mark.parametrize(
    "damage",
    [
        drop_first_depth,
        duplicate_a_row,
        empty_train_csv,
        wrong_size_tile,
        mask_of_another_size,
        binary_garbage_csv,
        text_depths,
    ],
)
def test_corrupt_input_stops_the_cli_with_one_line(damage, data, tmp_path, capsys):
    expected = damage(data)
    out = tmp_path / "folds.csv"
    line = main_error(capsys, "folds", "--data-dir", data, "--out", out, "--stratify", "coverage")
    assert line.startswith(f"saltseg folds: error: {data}") and expected in line, line
    assert not out.exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, -0.1])
def test_corrupt_probabilities_are_refused_and_the_old_file_kept(tmp_path, bad):
    path = tmp_path / "oof.parquet"
    write_probs(path, ["a", "b"], np.full((2, 101, 101), 0.25))
    before = path.read_bytes()
    maps = np.full((2, 101, 101), 0.5)
    maps[1, 7, 9] = bad
    with pytest.raises(InputError, match="expected finite probabilities in") as err:
        write_probs(path, ["a", "b"], maps)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == before and not temporaries(tmp_path)


def test_corrupt_probability_files_are_named(tmp_path):
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"id": ["a"], "prob": [0.5]}).to_parquet(plain)
    with pytest.raises(InputError, match="expected columns id, prob and saltseg.shape"):
        read_probs(plain)
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=f"{empty}: expected a saltseg probability parquet"):
        read_probs(empty)
    with pytest.raises(InputError, match="expected a saltseg probability parquet"):
        read_probs(tmp_path / "missing.parquet")


def test_corrupt_merge_parts_that_disagree(synth_dir, folds_csv, tmp_path):
    oof, test = random_parts(synth_dir, folds_csv, tmp_path, seed=1)
    ids, maps = read_probs(test[1])
    write_probs(test[1], ids[::-1], maps[::-1])  # same maps, another order
    out = tmp_path / "out"
    outs = [out / "oof.parquet", out / "test.parquet", out / "cv.json"]
    with pytest.raises(InputError, match="expected the fold OOF files to cover each train id"):
        steps.merge(str(synth_dir), 101, oof[:1], test, *outs)
    assert not out.exists() or not any(out.iterdir())
    # (the test maps are checked after the OOF file is written: Snakemake deletes a failed
    # job's outputs, so the results directory stays consistent)
    with pytest.raises(InputError, match="expected the same ids in the same order"):
        steps.merge(str(synth_dir), 101, oof, test, *outs)
    assert not outs[1].exists() and not outs[2].exists() and not temporaries(out)


def test_corrupt_folds_csv_missing_ids_or_out_of_range(synth_dir, folds_csv, tmp_path):
    table = pd.read_csv(folds_csv, dtype={"id": str})
    short = tmp_path / "short.csv"
    table.iloc[1:].to_csv(short, index=False)
    with pytest.raises(InputError, match=f"{short}: expected a fold for every train id"):
        steps.split(str(synth_dir), str(short), 0, 2, 101)
    wide = tmp_path / "wide.csv"
    table.assign(fold=table["fold"] + 1).to_csv(wide, index=False)
    with pytest.raises(InputError, match=f"{wide}: expected folds 0..1"):
        steps.split(str(synth_dir), str(wide), 0, 2, 101)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not a bundle", "missing"])
def test_corrupt_model_files_are_named_in_one_line(tmp_path, damage):
    path = tmp_path / "model.pt"
    tiny_bundle(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-4096])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint\n" * 50)
    elif damage == "not a bundle":
        torch.save([1, 2, 3], path)
    else:
        path.unlink()
    with pytest.raises(InputError, match="expected a saltseg model.pt") as err:
        read_bundle(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not a dict", "other run"])
def test_corrupt_training_checkpoint_means_start_over(tmp_path, damage):
    """resume is an optimisation: an unreadable checkpoint.pt restarts training, not crash it."""
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"key": "run", "epoch": 3, "w": torch.randn(50_000)})
    assert checkpoint.load(path, "run")["epoch"] == 3
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04garbage" * 100)
    elif damage == "not a dict":
        torch.save([1, 2], path)
    assert checkpoint.load(path, "another run" if damage == "other run" else "run") is None


# ---------------------------------------------------------------- disk full


SAVE_CHECKPOINT = """
import sys, torch
from saltseg.training import checkpoint
checkpoint.save(sys.argv[1], {"key": "run", "epoch": 2, "w": torch.randn(500_000)})
"""


def test_disk_full_while_writing_a_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"key": "run", "epoch": 1, "w": torch.randn(1_000)})
    before = path.read_bytes()

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    command = [sys.executable, "-c", SAVE_CHECKPOINT, str(path)]
    full = subprocess.run(
        command, env=ENV, capture_output=True, text=True, timeout=120, preexec_fn=limit
    )
    assert full.returncode != 0
    last = full.stderr.strip().splitlines()[-1]
    assert f"{path}: could not write" in last and "previous version" in last, full.stderr[-2000:]
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
    assert checkpoint.load(path, "run")["epoch"] == 1  # a resume would start from epoch 1

    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert checkpoint.load(path, "run")["epoch"] == 2 and sorted(tmp_path.iterdir()) == [path]


def test_disk_full_while_writing_parquets_through_the_cli(synth_dir, folds_csv, tmp_path):
    out = tmp_path / "out"
    outs = {"oof": out / "oof.parquet", "test": out / "test.parquet", "cv": out / "cv.json"}
    old_oof, old_test = random_parts(synth_dir, folds_csv, tmp_path / "old", seed=2)
    steps.merge(str(synth_dir), 101, old_oof, old_test, outs["oof"], outs["test"], outs["cv"])
    before = {k: p.read_bytes() for k, p in outs.items()}
    oof, test = random_parts(synth_dir, folds_csv, tmp_path / "new", seed=3)
    args = ["merge", "--data-dir", synth_dir, "--oof-parts", *oof, "--test-parts", *test]
    args += ["--oof", outs["oof"], "--test", outs["test"], "--cv", outs["cv"]]

    full = run_saltseg(*args, fsize=64 * 1024)  # the merged OOF maps need about 200 KB
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert f"{outs['oof']}: could not write (File too large)" in last, full.stderr[-2000:]
    assert {k: p.read_bytes() for k, p in outs.items()} == before
    assert sorted(out.iterdir()) == sorted(outs.values())  # no temporary left behind

    assert cli.main([str(a) for a in args]) == 0  # the same command without the limit
    assert sorted(out.iterdir()) == sorted(outs.values())
    ids, maps = read_probs(outs["test"])
    expected = (read_probs(test[0])[1] + read_probs(test[1])[1]) / 2
    assert ids == load_test(synth_dir, 101).ids and np.abs(maps - expected).max() <= 1 / 255
    assert read_probs(outs["oof"])[0] == train_ids(synth_dir)
    assert json.loads(outs["cv"].read_text())["n_tiles"] == len(train_ids(synth_dir))


def train_args(data: Path, folds: Path, out: Path, epochs: int) -> list:
    params = tiny_train_params(epochs)
    return [
        *("train", "--data-dir", data, "--folds", folds, "--fold", 0, "--n-folds", 2),
        *("--params", json.dumps(params), "--device", "cpu", "--threads", 1, "--out-dir", out),
    ]


@pytest.mark.slow
def test_disk_full_while_training(synth_dir, folds_csv, tmp_path):
    """The first checkpoint does not fit: the job stops, the previous model.pt stays as it was."""
    out = tmp_path / "run"
    out.mkdir()
    tiny_bundle(out / "model.pt")  # a previous good model of this fold
    before = (out / "model.pt").read_bytes()
    args = train_args(synth_dir, folds_csv, out, epochs=1)

    full = run_saltseg(*args, fsize=1024 * 1024)  # params.json fits, the checkpoint does not
    assert full.returncode != 0
    last = full.stderr.strip().splitlines()[-1]
    assert f"{out / 'checkpoint.pt'}: could not write" in last, full.stderr[-2000:]
    assert (out / "model.pt").read_bytes() == before
    assert not temporaries(out) and not (out / "checkpoint.pt").exists()
    assert not (out / "metrics.json").exists()

    again = run_saltseg(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(read_bundle(out / "model.pt")["snapshots"]) == 1
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    assert not temporaries(out) and not (out / "checkpoint.pt").exists()


# ---------------------------------------------------------------- kill -9 of a training job


@pytest.mark.slow
def test_kill_training_then_resume_gives_the_uninterrupted_metrics(synth_dir, folds_csv, tmp_path):
    """Same seed, killed after an epoch and resumed: the metrics of one uninterrupted run."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = train_args(synth_dir, folds_csv, killed, epochs=3)

    def start(arguments) -> subprocess.Popen:
        command = [sys.executable, "-m", "saltseg", *map(str, arguments)]
        return subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True)

    job = start(args)
    uninterrupted = start(train_args(synth_dir, folds_csv, straight, epochs=3))  # alongside
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists() and job.poll() is None:
        assert time.time() < deadline, "no checkpoint"
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.communicate()
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.communicate()[1][-2000:]
    if (killed / "model.pt").exists():  # a very slow machine: the kill came too late to matter
        pytest.skip("training finished before the kill")
    resumed = run_saltseg(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming at phase 0 epoch" in resumed.stderr
    a = pd.read_csv(straight / "history.csv")
    b = pd.read_csv(killed / "history.csv")
    assert len(a) == len(b) == 3
    for column in ["train_loss", "val_loss", "val_metric"]:
        np.testing.assert_allclose(b[column], a[column], rtol=1e-4, atol=1e-5, err_msg=column)
    ma = json.loads((straight / "metrics.json").read_text())
    mb = json.loads((killed / "metrics.json").read_text())
    assert mb["val_metric"] == pytest.approx(ma["val_metric"], abs=1e-4)
    assert mb["val_loss"] == pytest.approx(ma["val_loss"], rel=1e-4)
    assert not temporaries(killed) and not (killed / "checkpoint.pt").exists()


def test_kill_leftover_temporaries_are_removed_by_the_next_write(tmp_path):
    """What a writer killed mid-write leaves is never read, and goes with the next write."""
    leftovers = [tmp_path / ".oof.k1ll3d_0.parquet", tmp_path / ".png.k1ll3d_0"]
    leftovers[0].write_bytes(b"PAR1 half a file")
    (leftovers[1] / "x").mkdir(parents=True)
    others = [tmp_path / ".test.k1ll3d_0.parquet", tmp_path / ".oof.keep.parquet"]
    for path in others:
        path.write_bytes(b"another output's temporary, or a user's file")
    write_probs(tmp_path / "oof.parquet", ["a"], np.zeros((1, 101, 101)))
    with atomic_dir(tmp_path / "png") as tmp:
        (tmp / "mosaic.png").write_bytes(b"png")
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in others)
    assert read_probs(tmp_path / "oof.parquet")[0] == ["a"]


def test_disk_full_inside_torch_save_is_named(tmp_path, monkeypatch):
    """torch.save reports a failed write as a RuntimeError without errno: still one clear line."""

    def failing_save(obj, f):
        Path(f).write_bytes(b"PK half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662")

    monkeypatch.setattr(torch, "save", failing_save)
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(WriteError) as err:
        checkpoint.save(path, {"key": "run"})
    message = str(err.value)
    assert message.startswith(f"{path}: could not write (") and "disk full" in message
    assert "\n" not in message and not any(tmp_path.iterdir())


# ---------------------------------------------------------------- a user's files in a folder output


def section_models(root: Path) -> tuple[Path, Path]:
    """A model folder (one fold of a tiny U-Net) and a small 2-D section (.npy) to predict."""
    (root / "m" / "fold0").mkdir(parents=True, exist_ok=True)
    tiny_bundle(root / "m" / "fold0" / "model.pt")
    amplitudes = np.random.default_rng(0).normal(size=(101, 130)).astype(np.float32)
    np.save(root / "section.npy", amplitudes)
    return root / "m", root / "section.npy"


def folder_step(step: str, synth_dir: Path, tmp_path: Path, out: Path) -> list:
    """The command line of ``step`` writing its folder output to ``out``, and its other outputs
    (which a refused folder must leave unwritten)."""
    if step == "synth":
        return ["synth", "--out", out, "--sections", 1, "--rows", 2, "--cols", 3], []
    if step == "mosaic":
        others = [tmp_path / "tiles.parquet", tmp_path / "pairs.parquet"]
        args = ["mosaic", "--data-dir", synth_dir, "--tiles", others[0], "--pairs", others[1]]
        return [*args, "--png-dir", out, "--draw", 2], others
    models, section = section_models(tmp_path / "in")
    args = ["predict-section", "--models", models, "--input", section, "--out", out]
    return [*args, "--threshold", "fixed", "--device", "cpu", "--threads", 1, "--tta", "none"], []


@pytest.mark.parametrize(  # predict-section (44 s on a loaded 2-core machine) with the slow
    # suite: synth and mosaic keep the shared folder guard fast
    "step",
    ["synth", "mosaic", pytest.param("predict-section", marks=pytest.mark.slow)],
)
def test_user_files_a_folder_output_never_deletes_a_users_file(step, synth_dir, tmp_path):
    """``--out mydata`` where mydata/ holds notes.txt: refused in one line naming the folder and
    the file, the file kept, nothing written; the step's own earlier output is replaced whole."""
    own, mine = tmp_path / "own", tmp_path / "mydata"
    args, others = folder_step(step, synth_dir, tmp_path, own)
    first = run_saltseg(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    written = {p.relative_to(own): p.read_bytes() for p in own.rglob("*") if p.is_file()}
    assert MANIFEST in {p.name for p in own.iterdir()}
    (own / "stale.png").write_bytes(b"a user's file among the step's output")
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    for folder, name in [(mine, "notes.txt"), (own, "stale.png")]:
        kept = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        for other in others:
            other.unlink(missing_ok=True)
        result = run_saltseg(*folder_step(step, synth_dir, tmp_path, folder)[0])
        assert_one_line_error(result, f"{folder}: holds files this step did not write ({name})")
        now = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert now == kept and not any(p.exists() for p in others) and not temporaries(tmp_path)
    (own / "stale.png").unlink()  # the step's own output alone: replaced, atomically
    again = run_saltseg(*folder_step(step, synth_dir, tmp_path, own)[0])
    assert again.returncode == 0, again.stderr[-3000:]
    now = {p.relative_to(own): p.read_bytes() for p in own.rglob("*") if p.is_file()}
    assert set(now) == set(written) and not temporaries(tmp_path)
    if step != "predict-section":  # deterministic bytes (a section's timing is in params.json)
        assert now == written


def test_user_files_atomic_dir_replaces_only_what_it_wrote(tmp_path):
    """The writer's rules, case by case: an empty folder or its own output is replaced; a file, a
    link, a user's file in a subfolder, or one added while the step runs is refused, and kept."""
    out = tmp_path / "out"
    out.mkdir()  # an empty folder: nothing to lose
    with atomic_dir(out) as tmp:
        (tmp / "a" / "b").mkdir(parents=True)
        (tmp / "a" / "b" / "x.png").write_bytes(b"1")
    assert (out / MANIFEST).read_text().splitlines()[1:] == ["a/b/x.png"]
    (out / "a" / "b" / "mine.txt").write_text("mine")
    with pytest.raises(InputError, match=r"out: holds files this step did not write \(a/b/mine"):
        with atomic_dir(out) as tmp:
            raise AssertionError("the block must not run")
    (out / "a" / "b" / "mine.txt").unlink()
    with pytest.raises(InputError, match="out: holds files this step did not write"):
        with atomic_dir(out) as tmp:
            (tmp / "y.png").write_bytes(b"2")
            (out / "late.txt").write_text("written while the step ran")
    assert (out / "late.txt").is_file() and (out / "a" / "b" / "x.png").read_bytes() == b"1"
    (out / "late.txt").unlink()
    with atomic_dir(out) as tmp:
        (tmp / "y.png").write_bytes(b"2")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "y.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old output went too
    (tmp_path / "file").write_text("a user's file named like the output")
    (tmp_path / "link").symlink_to(out)
    for path in (tmp_path / "file", tmp_path / "link"):
        with pytest.raises(InputError, match="expected a folder to write, found a file or link"):
            with atomic_dir(path) as tmp:
                pass
    assert (tmp_path / "file").read_text() == "a user's file named like the output"
    assert (out / "y.png").read_bytes() == b"2"


# ---------------------------------------------------------------- JSON files the DAG wrote


def summary_inputs(results: Path) -> dict[str, Path]:
    """The JSON files ``saltseg summary`` reads, as the DAG writes them (one model, one fold)."""
    cv = {"metric_at_0.5": 0.7, "metric_tuned": 0.72, "threshold": 0.45}
    report = {"threshold": 0.45, "oof_after": 0.73, "gain": 0.01, "applied": True}
    files = {
        "model cv.json": (results / "stage1" / "unet" / "cv.json", cv),
        "metrics.json": (
            results / "stage1" / "unet" / "fold0" / "metrics.json",
            {"train_seconds": 9},
        ),
        "ensemble cv.json": (results / "stage1" / "ensemble" / "cv.json", cv),
        "blend cv.json": (results / "blend" / "cv.json", cv),
        "report.json": (results / "postprocess" / "report.json", report),
    }
    for path, content in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    return {name: path for name, (path, _) in files.items()}


def summary_args(paths: dict[str, Path], out: Path) -> list:
    return [
        *("summary", "--model-cvs", paths["model cv.json"]),
        *("--fold-metrics", paths["metrics.json"], "--ensemble-cvs", paths["ensemble cv.json"]),
        *("--blend-cv", paths["blend cv.json"], "--postprocess", paths["report.json"]),
        *("--out", out),
    ]


@pytest.mark.parametrize("damage", ["not json", "empty", "a list", "a key missing"])
@pytest.mark.parametrize(
    "name", ["model cv.json", "metrics.json", "ensemble cv.json", "blend cv.json", "report.json"]
)
def test_corrupt_json_files_the_dag_wrote_are_named_in_one_line(name, damage, tmp_path, capsys):
    """summary on a cv.json/metrics.json/report.json that is not (the expected) JSON: one line
    naming the file, exit status 2, no summary.csv."""
    paths = summary_inputs(tmp_path / "results")
    out = tmp_path / "results" / "summary.csv"
    assert cli.main([str(a) for a in summary_args(paths, out)]) == 0 and out.is_file()
    capsys.readouterr()
    out.unlink()
    path = paths[name]
    content = json.loads(path.read_text())
    path.write_text(
        {
            "not json": '{"metric_at_0.5": 0.7,',
            "empty": "",
            "a list": "[1, 2]",
            "a key missing": json.dumps(dict(list(content.items())[1:])),
        }[damage]
    )
    line = main_error(capsys, *summary_args(paths, out))
    assert line.startswith(f"saltseg summary: error: {path}: expected a JSON object with ")
    assert not out.exists() and not temporaries(tmp_path)


def test_corrupt_members_json_of_a_blend_is_named(tmp_path, capsys):
    """predict-section on a blend folder whose members.json is not JSON: one line naming it."""
    models, section = section_models(tmp_path / "in")
    blend = tmp_path / "results" / "blend"
    blend.mkdir(parents=True)
    (blend / "members.json").write_text('{"members": [{"models": ')
    line = main_error(
        capsys,
        *SECTION[:2],
        blend,
        "--input",
        section,
        "--out",
        tmp_path / "o",
        "--threshold",
        "fixed",
    )
    assert f"{blend / 'members.json'}: expected members with models and weight" in line
    assert not (tmp_path / "o").exists()


def test_corrupt_a_train_id_that_is_also_a_test_id_stops_the_data_check(data, tmp_path):
    """An id in train.csv and in the test list: the fold split (the first step to read the data,
    before anything trains) says so in one line, rather than the mosaic's 'unique ids'."""
    tile = first_train_id(data)
    submission = pd.read_csv(data / "sample_submission.csv", dtype=str, keep_default_na=False)
    extra = pd.DataFrame({"id": [tile], "rle_mask": ["1 1"]})
    pd.concat([submission, extra]).to_csv(data / "sample_submission.csv", index=False)
    shutil.copy(data / "train" / "images" / f"{tile}.png", data / "test" / "images")
    expected = f"{data / 'train.csv'}: expected train and test ids apart, {tile!r} is in both"
    out = tmp_path / "folds.csv"
    result = run_saltseg("folds", "--data-dir", data, "--out", out)
    line = assert_one_line_error(result, expected, "the test list (sample_submission.csv")
    assert not out.exists()
    outs = ["--tiles", tmp_path / "t.parquet", "--pairs", tmp_path / "p.parquet"]
    result = run_saltseg("mosaic", "--data-dir", data, *outs, "--png-dir", tmp_path / "png")
    assert (
        assert_one_line_error(result, expected).split(": error: ")[1] == line.split(": error: ")[1]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ---------------------------------------------------------------- bad option values

FOLD = ["--data-dir", "d", "--folds", "f.csv", "--fold", 0, "--n-folds", 2, "--out-dir", "o"]
SECTION = ["predict-section", "--models", "m", "--input", "s.npy", "--out", "o"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", *FOLD, "--params", "{bad json"], "argument --params: expected a JSON object"),
        (["train", *FOLD, "--params", "[1, 2]"], "argument --params: expected a JSON object"),
        (["model-summary", "unet", "--model", "{bad json"], "argument --model: expected a JSON"),
        (["model-summary", "unet", "--batch", -4], "--batch: expected an integer >= 1, got '-4'"),
        (["model-summary", "unet", "--tile-size", 0], "--tile-size: expected an integer >= 1"),
        (["model-summary", "unet", "--threads", 0], "--threads: expected an integer >= 1"),
        (["synth", "--out", "o", "--sections", 0], "--sections: expected an integer >= 1"),
        (["synth", "--out", "o", "--rows", "two"], "--rows: expected an integer >= 1, got 'two'"),
        (["synth", "--out", "o", "--cols", -1], "--cols: expected an integer >= 1"),
        (["synth", "--out", "o", "--seed", -1], "--seed: expected an integer >= 0"),
        (["synth", "--out", "o", "--train-fraction", 1.5], "--train-fraction: expected a number"),
        (["synth", "--out", "o", "--blank-fraction", "nan"], "--blank-fraction: expected a num"),
        (["folds", "--data-dir", "d", "--out", "f.csv", "--n-folds", 1], "--n-folds: expected"),
        (["train", *FOLD[:5], -1, *FOLD[6:], "--params", "{}"], "--fold: expected an integer >= 0"),
        (["train", *FOLD, "--params", "{}", "--workers", -2], "--workers: expected an integer"),
        (["train", *FOLD, "--params", "{}", "--jobs-per-gpu", 0], "--jobs-per-gpu: expected an"),
        (["train", *FOLD, "--params", "{}", "--predict-batch-size", 0], "--predict-batch-size"),
        (["train", *FOLD, "--params", "{}", "--threads", -8], "--threads: expected an integer"),
        ([*SECTION, "--stride", 0], "--stride: expected an integer >= 1, got '0'"),
        ([*SECTION, "--batch-size", -64], "--batch-size: expected an integer >= 1"),
        (
            [
                "mosaic",
                "--data-dir",
                "d",
                *("--tiles", "t", "--pairs", "p", "--png-dir", "g"),
                "--draw",
                -1,
            ],
            "--draw: expected an integer >= 0",
        ),  # fmt: skip
        (
            [
                "pseudo",
                "--data-dir",
                "d",
                "--probs",
                "p",
                "--n-folds",
                2,
                "--out",
                "o",
                "--min-confidence",
                2,
            ],
            "--min-confidence: expected a number in [0, 1]",
        ),  # fmt: skip
        (
            [
                "ensemble",
                "--data-dir",
                "d",
                *("--oof-parts", "a", "--test-parts", "b"),
                *("--oof", "o", "--test", "t", "--cv", "c"),
                "--weights",
                1,
                -1,
            ],
            "--weights: expected a number >= 0",
        ),  # fmt: skip
    ],
)
def test_option_values_below_their_minimum_are_one_line_at_parsing(argv, expected, tmp_path):
    """Each bad value: one line naming the option and what was expected, exit status 2, nothing
    written (the command runs in an empty folder that stays empty)."""
    result = subprocess.run(
        [sys.executable, "-m", "saltseg", *map(str, argv)],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = assert_one_line_error(result, expected)
    assert line.startswith(f"saltseg {argv[0]}: error: argument ") and not any(tmp_path.iterdir())


def test_option_threads_beyond_the_cpus_the_job_may_use_are_capped_and_logged_once(
    tmp_path, monkeypatch, caplog
):
    """--threads 8 on one usable CPU: torch runs 1 thread, and the job's log says so once."""
    cpu = min(os.sched_getaffinity(0))
    model = json.dumps({**TINY_MODEL, "pretrained": "none"})
    argv = ["model-summary", "unet", "--model", model, "--tile-size", 101, "--batch", 1]
    result = subprocess.run(
        [sys.executable, "-m", "saltseg", *map(str, argv), "--threads", "8"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["threads"] == 1
    capped = [line for line in result.stderr.splitlines() if "capped" in line]
    assert len(capped) == 1 and capped[0].endswith(
        "--threads 8 capped at 1: the CPUs this job may use"
    )

    # the training/prediction jobs' runtime: the same cap, logged once
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {cpu})
    args = cli._parser().parse_args([*SECTION, "--device", "cpu", "--threads", "8"])
    previous = torch.get_num_threads()
    try:
        with caplog.at_level("INFO", logger="saltseg"):
            job_runtime(args)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
    assert [r.getMessage() for r in caplog.records if "capped" in r.getMessage()] == [
        "--threads 8 capped at 1: the CPUs this job may use"
    ]


# ------------------------------------------------------- kill -9 of snakemake; invalidation


MODELS = ("unet_r10", "unet_b")  # two stage-1 models of the tiny DAG
TARGET = "results/submission.csv"


def tiny_config(repo: Path, change=None) -> dict:
    """The repository's config shrunk to 40 tiles, 2 folds and two 2-epoch stage-1 models."""
    config = yaml.safe_load((repo / "config.yaml").read_text())
    config["synthetic"].update(sections=2, rows=4, cols=5)
    config["folds"]["n_folds"] = 2
    config["runtime"]["threads"] = 1
    config["predict"]["tta"] = ["none"]
    if "stages" in config:
        config["stages"] = [1]
    model = copy.deepcopy(config["models"]["unet_r10"])
    model["model"]["decoder_channels"] = [16, 16, 8, 8, 8]
    model["phases"] = [{"loss": "bce_dice", "lr": 0.003, "epochs": 2, "batch_size": 8}]
    config["models"].update({name: copy.deepcopy(model) for name in MODELS})
    config["stage1"]["models"] = list(MODELS)
    if change:
        change(config)
    return config


def snakemake(workdir: Path, *args: str, popen: bool = False):
    env = {**ENV, "PYTHONPATH": str(workdir / "src")}
    command = ["snakemake", "--cores", "2", "--resources", "gpu=2", *args]
    if popen:  # its own process group: kill -9 of the group is the whole run
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900
    )


def live_members(pgid: int) -> list[int]:
    """Running (not zombie) processes of process group ``pgid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def check_results(results: Path) -> list[str]:
    """Every parquet, CSV and JSON under ``results`` that does not read back (should be none)."""
    bad = []
    for path in results.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            if path.suffix == ".parquet":
                pq.read_table(path)
            elif path.suffix == ".csv":
                pd.read_csv(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.name == "model.pt":
                read_bundle(path)
        except Exception as err:  # any failure is a half-written file
            bad.append(f"{path}: {err}")
    return bad


@pytest.fixture(scope="module")
def killed_dag(repo, tmp_path_factory) -> dict:
    """The tiny DAG killed (kill -9 of the process group) while a training job runs, then
    unlocked and rerun with ``--rerun-incomplete`` to the submission."""
    work = tmp_path_factory.mktemp("killed_dag")
    shutil.copy(repo / "Snakefile", work)
    for name in ["workflow", "envs", "src"]:
        shutil.copytree(repo / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "profiles").symlink_to("workflow/profiles")
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_config(repo)))
    run = snakemake(work, "--", TARGET, popen=True)
    deadline, killed_in = time.time() + 600, None
    while killed_in is None and run.poll() is None and time.time() < deadline:
        for ckpt in (work / "results").glob("stage1/*/fold*/checkpoint.pt"):
            if not (ckpt.parent / "model.pt").exists():
                killed_in = ckpt.parent  # a training job is between its epochs
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.time() + 10
    while live_members(run.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert live_members(run.pid) == []  # nothing of the run survives
    state = {"work": work, "killed_in": killed_in, "after_kill": check_results(work / "results")}
    state["locked"] = snakemake(work, "--rerun-incomplete", "--", TARGET)  # refused: the lock
    state["unlock"] = snakemake(work, "--unlock")
    state["rerun"] = snakemake(work, "--rerun-incomplete", "--", TARGET)
    return state


@pytest.mark.slow
def test_kill_snakemake_mid_dag_then_rerun_incomplete(killed_dag):
    work, results = killed_dag["work"], killed_dag["work"] / "results"
    assert killed_dag["killed_in"] is not None, "the run ended before a training job was caught"
    assert killed_dag["after_kill"] == []  # the kill left no half-written file
    locked = killed_dag["locked"]  # a kill -9 leaves snakemake's lock: it asks for --unlock
    assert locked.returncode != 0 and "--unlock" in locked.stderr, locked.stderr[-2000:]
    assert killed_dag["unlock"].returncode == 0, killed_dag["unlock"].stderr[-2000:]
    rerun = killed_dag["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    logs = [p.read_text() for p in (results / "logs" / "train").glob("*.log")]
    assert any("resuming at phase 0 epoch 1" in log for log in logs)  # the killed job resumed
    assert check_results(results) == []
    sample = pd.read_csv(results / "data/synthetic/sample_submission.csv")
    submission = pd.read_csv(work / TARGET, keep_default_na=False)
    assert submission["id"].tolist() == sample["id"].tolist()
    for name in MODELS:
        ids, maps = read_probs(results / f"stage1/{name}/oof.parquet")
        assert ids == train_ids(results / "data/synthetic") and np.isfinite(maps).all()
    assert not list(results.glob("stage1/*/fold*/checkpoint.pt"))
    assert not temporaries(results), temporaries(results)
    done = snakemake(work, "-n", "--", TARGET)
    assert "Nothing to be done" in done.stdout + done.stderr


def planned(result: subprocess.CompletedProcess) -> list[tuple[str, dict]]:
    """``[(rule, wildcards), ...]`` of the jobs a dry run lists."""
    jobs = []
    for line in result.stdout.splitlines():
        if match := re.fullmatch(r"(?:local)?rule (\w+):", line.strip()):
            jobs.append((match[1], {}))
        elif jobs and line.strip().startswith("wildcards:"):
            pairs = line.strip()[len("wildcards:") :].split(",")
            jobs[-1][1].update(p.strip().split("=", 1) for p in pairs if "=" in p)
    return jobs


@pytest.mark.slow
def test_invalidation_one_models_lr_reruns_that_model_and_what_follows(killed_dag, repo):
    work = killed_dag["work"]
    assert killed_dag["rerun"].returncode == 0, "the DAG did not complete"

    def change(config):
        config["models"]["unet_b"]["phases"][0]["lr"] = 0.001

    original = (work / "config.yaml").read_text()
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_config(repo, change)))
    try:
        result = snakemake(work, "-n", "--", TARGET)
    finally:
        (work / "config.yaml").write_text(original)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned(result)
    per_rule: dict[str, list[dict]] = {}
    for rule, wildcards in jobs:
        per_rule.setdefault(rule, []).append(wildcards)
    assert sorted(w["fold"] for w in per_rule["train"]) == ["0", "1"]
    assert sorted(w["fold"] for w in per_rule["predict"]) == ["0", "1"]
    assert len(per_rule["merge_folds"]) == 1
    models = {w["model"] for _, w in jobs if "model" in w}
    assert models == {"unet_b"}, jobs  # unet_r10's train, predict and merge stay as they are
    assert any("ensemble" in rule or "blend" in rule for rule in per_rule), per_rule
    assert "submission" in per_rule
    assert not {"synthetic_data", "folds", "mosaic"} & set(per_rule), per_rule
