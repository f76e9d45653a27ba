"""kill -9 of a real training process, then the same command again: it resumes and finishes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny import tiny_train_params

from saltseg import training
from saltseg.data.folds import make_folds
from saltseg.data.kaggle import read_depths, train_ids

SRC = Path(training.__file__).resolve().parents[2]
PARAMS = tiny_train_params(epochs=4)


def train_command(data, folds, out) -> list[str]:
    return [
        sys.executable,
        "-m",
        "saltseg",
        "train",
        "--data-dir",
        str(data),
        "--folds",
        str(folds),
        "--fold",
        "0",
        "--n-folds",
        "2",
        "--params",
        json.dumps(PARAMS),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--out-dir",
        str(out),
    ]


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint(synth_dir, tmp_path):
    ids = train_ids(synth_dir)
    make_folds(ids, read_depths(synth_dir, ids), 2, 0).to_csv(tmp_path / "folds.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = train_command(synth_dir, tmp_path / "folds.csv", tmp_path / "run")
    job = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and job.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), job.stderr.read() if job.poll() is not None else "no checkpoint"
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not (tmp_path / "run" / "model.pt").exists()
    done = torch.load(checkpoint, weights_only=False)["epoch"]
    assert 1 <= done < 4

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming at phase 0 epoch {done}" in again.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 4  # the history spans the killed and the resumed part
    assert (tmp_path / "run" / "model.pt").exists() and not checkpoint.exists()
