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
from saltseg.io import WriteError, atomic_dir
from saltseg.models import build_model
from saltseg.probs import read_probs, write_probs
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
