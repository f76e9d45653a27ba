"""Killed runs resume to the same weights with an EMA, a minutes budget or crops: the fast
versions of the slow suite's resumes (test_training_levers, test_crops), on 4 train and 2
validation tiles with the network at 32 px (crops: 32 px windows of the 101 px tiles)."""

from __future__ import annotations

import pytest
import torch
from test_training import assert_same_weights, params, run_killed_then_resumed, toy_tiles

from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
from saltseg.training import budget, loop

SMALL = {"resize_to": 32, "pad_to": 32}  # the tiles resized: the network sees 32 px


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: at this size two threads only wait on each other (8x slower on a loaded
    2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit_small(p: dict, work_dir) -> dict:
    torch.manual_seed(0)
    model = build_model("unet", 101, **p["model"])
    runtime = resolve_runtime("cpu", "false", "false")
    return loop.fit(model, p, toy_tiles(4, 0), toy_tiles(2, 1), runtime, work_dir, 0)


def small(p: dict, **model) -> dict:
    """``p`` (test_training's params, batch 2) with its model settings updated."""
    p["phases"][0]["batch_size"] = 2
    return {**p, "model": {**p["model"], **model}}


def test_a_killed_ema_run_resumes_to_the_same_average(tmp_path, monkeypatch):
    p = small(params(epochs=3, ema=0.5), **SMALL)
    straight = fit_small(p, tmp_path / "straight")
    resumed = run_killed_then_resumed(p, tmp_path / "killed", monkeypatch, fit=fit_small)
    assert [row["epoch"] for row in resumed["history"]] == [0, 1, 2]
    assert_same_weights(straight["snapshots"][0], resumed["snapshots"][0])


def test_a_budget_run_resumes_with_the_epochs_it_measured(tmp_path, monkeypatch):
    sized = []
    monkeypatch.setattr(
        budget, "budget_epochs", lambda phase, done, spent, pace: sized.append((done, spent)) or 3
    )
    p = small(params(minutes=5, schedule="cosine", snapshots=1), **SMALL)
    straight = fit_small(p, tmp_path / "straight")
    resumed = run_killed_then_resumed(p, tmp_path / "killed", monkeypatch, saves=1, fit=fit_small)
    # every epoch re-sizes a one-cycle phase; the resumed run counts the killed run's epoch 0
    assert [done for done, _ in sized] == [1, 2, 3, 1, 2, 3]
    assert sized[4][1] >= resumed["history"][0]["seconds"] > 0
    assert [row["epoch"] for row in resumed["history"]] == [0, 1, 2]
    assert_same_weights(straight["snapshots"][0], resumed["snapshots"][0])


def test_a_killed_crop_phase_resumes_to_the_same_weights(tmp_path, monkeypatch):
    p = small(params(epochs=3, crop=32), pad_to=128)
    straight = fit_small(p, tmp_path / "straight")
    resumed = run_killed_then_resumed(p, tmp_path / "killed", monkeypatch, fit=fit_small)
    assert [row["epoch"] for row in resumed["history"]] == [0, 1, 2]
    assert_same_weights(straight["snapshots"][0], resumed["snapshots"][0])
