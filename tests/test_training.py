"""The training loop on CPU: it learns, resumes after a kill, runs the AMP/channels-last paths."""

import copy
import platform

import numpy as np
import pytest
import torch
import yaml
from tiny import TINY_MODEL

from saltseg.config import model_params, validate_config
from saltseg.data.augment import build_augment
from saltseg.data.kaggle import Tiles
from saltseg.models import build_model
from saltseg.runtime.device import cpu_has_amx, keep_freed_memory, resolve_runtime
from saltseg.training import checkpoint, loop


def toy_tiles(n: int, seed: int) -> Tiles:
    """Bright squares (salt) on dark noise: separable, so a few epochs visibly learn."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 80, (n, 101, 101), dtype=np.uint8)
    masks = np.zeros((n, 101, 101), np.uint8)
    for i in range(n):
        if i % 4:
            x, y, s = rng.integers(0, 60, 3)
            masks[i, y : y + s + 20, x : x + s + 20] = 1
    images[masks == 1] += 150
    return Tiles([f"t{i}" for i in range(n)], images, masks, np.arange(n, dtype=float))


def params(**phase) -> dict:
    base = {
        "loss": "bce_dice",
        "optimizer": "adam",
        "lr": 0.01,
        "schedule": "constant",
        "epochs": 2,
        "batch_size": 8,
        "snapshots": 0,
    }
    return {"arch": "unet", "model": TINY_MODEL, "augment": [], "phases": [{**base, **phase}]}


def run_fit(p, work_dir, runtime=None, seed=0):
    torch.manual_seed(seed)
    model = build_model("unet", 101, **p["model"])
    runtime = runtime or resolve_runtime("cpu", "false", "false")
    return loop.fit(model, p, toy_tiles(16, 0), toy_tiles(8, 1), runtime, work_dir, seed)


def test_training_lowers_the_loss_and_records_history(tmp_path):
    result = run_fit(params(epochs=4), tmp_path)
    history = result["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert {"lr", "val_loss", "val_metric", "images_per_s"} <= set(history[0])
    assert len(result["snapshots"]) == 1  # no snapshot phase: the final weights


@pytest.mark.slow  # fast: test_snapshots_are_the_last_cycles_of_a_phase and the schedule test
def test_cosine_snapshots_are_kept_per_cycle(tmp_path):
    result = run_fit(params(epochs=4, schedule="cosine", snapshots=2), tmp_path)
    assert len(result["snapshots"]) == 2
    lrs = [row["lr"] for row in result["history"]]
    assert lrs[0] == pytest.approx(0.01) and lrs[1] < lrs[0] and lrs[2] == pytest.approx(0.01)


def run_killed_then_resumed(p, work_dir, monkeypatch, saves: int = 2, fit=None) -> dict:
    """Run ``p`` with ``fit(p, work_dir)`` (default :func:`run_fit`) as if killed right after
    its ``saves``-th checkpoint, then run it again."""
    fit = fit or run_fit
    real_save, done = checkpoint.save, []

    def save_then_die(path, state):
        real_save(path, state)
        done.append(path)
        if len(done) == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(p, work_dir)
    monkeypatch.setattr(checkpoint, "save", real_save)
    return fit(p, work_dir)


def assert_same_weights(a: dict, b: dict) -> None:
    for key, value in a.items():
        assert torch.allclose(value.float(), b[key].float(), atol=1e-5), key


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    p = params(epochs=3)
    straight = run_fit(p, tmp_path / "straight")
    resumed = run_killed_then_resumed(p, tmp_path / "killed", monkeypatch)
    assert [row["epoch"] for row in resumed["history"]] == [0, 1, 2]
    assert_same_weights(straight["snapshots"][0], resumed["snapshots"][0])


def test_a_checkpoint_of_other_parameters_is_ignored(tmp_path):
    run_fit(params(epochs=1), tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    other = checkpoint.params_key({"params": params(epochs=2), "seed": 0, "n_train": 16})
    assert checkpoint.load(tmp_path / "checkpoint.pt", other) is None
    assert checkpoint.load(tmp_path / "checkpoint.pt", state["key"])["epoch"] == 1


@pytest.mark.parametrize("older", [False, True])
def test_a_checkpoint_of_an_older_format_is_not_resumed(older, tmp_path, monkeypatch, caplog):
    """A run killed after one epoch resumes, unless the state's layout (``FORMAT``) changed."""
    real_save, fmt = checkpoint.save, checkpoint.FORMAT

    def save_then_die(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    monkeypatch.setattr(checkpoint, "FORMAT", fmt - 1 if older else fmt)
    with pytest.raises(KeyboardInterrupt):
        run_fit(params(epochs=2), tmp_path)
    monkeypatch.undo()
    with caplog.at_level("INFO", logger="saltseg.training.loop"):
        history = run_fit(params(epochs=2), tmp_path)["history"]
    assert ("resuming" in caplog.text) is not older
    assert [row["epoch"] for row in history] == [0, 1]


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path):
    runtime = resolve_runtime("cpu", "true", "true")
    assert runtime.amp_dtype == torch.bfloat16 and runtime.channels_last
    result = run_fit(params(epochs=1), tmp_path, runtime)
    assert np.isfinite(result["history"][0]["train_loss"])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_cpu_runs_keep_freed_memory_and_still_train(tmp_path):
    assert keep_freed_memory()  # glibc accepted both mallopt settings
    result = run_fit(params(epochs=1), tmp_path, resolve_runtime("cpu"))
    assert np.isfinite(result["history"][0]["train_loss"])


@pytest.mark.slow  # a real torch.compile: over a minute on 2 cores; fast: the test below
def test_torch_compile_path_trains_on_cpu(tmp_path):
    runtime = resolve_runtime("cpu", "false", "false", compile=True)
    result = run_fit(params(epochs=1), tmp_path, runtime)
    assert np.isfinite(result["history"][0]["train_loss"])
    assert not any(k.startswith("_orig_mod") for k in result["snapshots"][0])


def test_compile_runs_the_training_through_torch_compile_and_keeps_plain_weights(
    tmp_path, monkeypatch
):
    """The compile path without compiling: torch.compile's wrapper (``_orig_mod``) trains and
    the snapshots keep the plain module's keys."""
    calls = []

    class Compiled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self._orig_mod = model

        def forward(self, *args, **kwargs):
            calls.append(1)
            return self._orig_mod(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", Compiled)
    runtime = resolve_runtime("cpu", "false", "false", compile=True)
    result = run_fit(params(epochs=1), tmp_path, runtime)
    assert calls and np.isfinite(result["history"][0]["train_loss"])
    assert not any(k.startswith("_orig_mod") for k in result["snapshots"][0])


def test_runtime_choices():
    auto = resolve_runtime()
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert auto.amp_dtype == (torch.bfloat16 if cpu_has_amx() else None)
        assert auto.channels_last
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_runtime("cuda")
    assert resolve_runtime("cpu", "true").amp_dtype == torch.bfloat16
    assert resolve_runtime("cpu", "false").amp_dtype is None
    with pytest.raises(ValueError, match="amp: expected auto, true or false"):
        resolve_runtime("cpu", "yes")


def test_cpu_amx_probe_follows_torch(monkeypatch):
    """amp: auto turns bf16 on for a CPU exactly when torch reports AMX tiles."""
    for has_amx, dtype in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=has_amx: v)
        assert cpu_has_amx() is has_amx
        assert resolve_runtime("cpu", "auto").amp_dtype == dtype
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not cpu_has_amx()


def test_default_augmentations_keep_image_and_mask_aligned(repo):
    config = validate_config(
        yaml.safe_load((repo / "config.yaml").read_text()),
        repo / "workflow/schemas/config.schema.yaml",
    )
    augment = build_augment(model_params(config, config["stage1"]["models"][0])["augment"])
    augment.set_random_seed(0)
    tiles = toy_tiles(8, 2)
    for image, mask in zip(tiles.images, tiles.masks):
        for _ in range(5):
            out = augment(image=image, mask=mask)
            bright, salt = out["image"] > 115, out["mask"] == 1
            if salt.any():
                assert (bright & salt).sum() / (bright | salt).sum() > 0.9
            else:
                assert bright.mean() < 0.01


def test_unknown_transform_is_named():
    with pytest.raises(ValueError, match="'Blur2' is not an albumentations transform"):
        build_augment([{"name": "Blur2"}])


def test_phase_validation_errors(tmp_path):
    bad = copy.deepcopy(params())
    bad["phases"][0]["optimizer"] = "lamb"
    with pytest.raises(ValueError, match="optimizer: expected one of adam, adamw, rmsprop, sgd"):
        run_fit(bad, tmp_path)


def test_imagenet_weights_offline_fail_fast_in_one_line(tmp_path):
    """A fresh process with an empty cache and no network: one line within seconds, no hang."""
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import saltseg

    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "PYTHONPATH": str(Path(saltseg.__file__).resolve().parents[1]),
    }
    env.pop("HF_HUB_OFFLINE", None)
    model = json.dumps({"encoder_name": "resnet10t", "pretrained": "imagenet"})
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "saltseg", "model-summary", "unet", "--model", model],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode == 0:
        pytest.skip("this machine reaches the Hugging Face hub")
    assert time.perf_counter() - start < 30
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()
    assert len(message) == 1
    assert message[0].startswith(
        "saltseg model-summary: error: pretrained: could not load ImageNet weights for resnet10t"
    )
    assert "local weights path" in message[0]


def test_schedules_give_the_lr_expected_at_chosen_epochs():
    import math

    from saltseg.training.optim import build_optimizer, build_schedule

    def lrs(phase, epochs, losses=None):
        model = torch.nn.Linear(1, 1)
        optimizer = build_optimizer(model, phase)
        schedule = build_schedule(optimizer, phase)
        seen = []
        for epoch in range(epochs):
            seen.append(optimizer.param_groups[0]["lr"])
            if losses is None:
                schedule.step()
            else:
                schedule.step(losses[epoch])
        return seen

    # phalanx: 0.01 -> 0.001 cosine over 50-epoch cycles, restarting for each snapshot
    sgdr = {
        "optimizer": "sgd",
        "lr": 0.01,
        "min_lr": 0.001,
        "schedule": "cosine",
        "epochs": 150,
        "snapshots": 3,
    }
    got = lrs(sgdr, 150)
    expected = [0.001 + 0.009 * (1 + math.cos(math.pi * (e % 50) / 50)) / 2 for e in range(150)]
    assert got == pytest.approx(expected)
    assert got[0] == got[50] == got[100] == pytest.approx(0.01)
    # b.e.s.: plateau halves the lr once the validation loss stalls for `patience` epochs
    plateau = {
        "optimizer": "rmsprop",
        "lr": 1e-4,
        "schedule": "plateau",
        "patience": 2,
        "epochs": 8,
    }
    got = lrs(plateau, 8, losses=[1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert got[:5] == pytest.approx([1e-4] * 5)
    assert got[5] == pytest.approx(5e-5)
    assert lrs({"optimizer": "adam", "lr": 0.003, "schedule": "constant"}, 3) == [0.003] * 3


def test_adamw_decays_weights_apart_from_the_gradient_and_adam_through_it():
    """One step from w = 2 with a zero loss gradient, lr 0.1, weight decay 0.01, by hand.

    AdamW shrinks w by lr * wd * w (2 -> 1.998); Adam adds wd * w to the gradient, which its
    normalised step turns into a full lr step (2 -> 1.9).
    """
    from saltseg.training.optim import build_optimizer

    def one_step(name: str) -> float:
        model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.constant_(model.weight, 2.0)
        optimizer = build_optimizer(model, {"optimizer": name, "lr": 0.1, "weight_decay": 0.01})
        (model.weight * 0.0).sum().backward()
        optimizer.step()
        return model.weight.item()

    assert one_step("adamw") == pytest.approx(2.0 - 0.1 * 0.01 * 2.0)
    assert one_step("adam") == pytest.approx(1.9, abs=1e-5)


def test_each_phase_trains_on_its_data_source(tmp_path):
    p = params(epochs=1)
    p["phases"] = [{**p["phases"][0], "data": "pseudo"}, {**p["phases"][0], "data": "train"}]
    model = build_model("unet", 101, **p["model"])
    runtime = resolve_runtime("cpu", "false", "false")
    sources = {"train": toy_tiles(16, 0), "pseudo": toy_tiles(8, 2)}
    history = loop.fit(model, p, sources, toy_tiles(8, 1), runtime, tmp_path, 0)["history"]
    assert [row["data"] for row in history] == ["pseudo", "train"]
    # batches of 8 with drop_last: 8 pseudo tiles make one step, 16 train tiles two
    assert [round(row["images_per_s"] * row["seconds"]) for row in history] == [8, 16]


def test_a_phase_without_tiles_is_skipped_and_a_missing_source_named(tmp_path):
    p = params(epochs=1)
    p["phases"] = [{**p["phases"][0], "data": "pseudo"}, p["phases"][0]]
    model = build_model("unet", 101, **p["model"])
    runtime = resolve_runtime("cpu", "false", "false")
    empty = toy_tiles(8, 2).subset(np.zeros(8, bool))
    sources = {"train": toy_tiles(16, 0), "pseudo": empty}
    history = loop.fit(model, p, sources, toy_tiles(8, 1), runtime, tmp_path / "a", 0)["history"]
    assert [row["data"] for row in history] == ["train"]
    with pytest.raises(ValueError, match="phase 0: data: expected one of \\['train'\\]"):
        loop.fit(model, p, toy_tiles(16, 0), toy_tiles(8, 1), runtime, tmp_path / "b", 0)


def test_snapshots_are_the_last_cycles_of_a_phase():
    from saltseg.training.optim import cycle_epochs, takes_snapshot

    # 3 cycles of 4 epochs, the last 2 kept: snapshots after epochs 8 and 12 (1-based)
    phase = {"epochs": 12, "cycles": 3, "snapshots": 2, "schedule": "cosine"}
    assert cycle_epochs(phase) == 4
    assert [e + 1 for e in range(12) if takes_snapshot(phase, e)] == [8, 12]
    # pretraining: 3 cosine cycles, no snapshot kept
    assert not any(takes_snapshot({**phase, "snapshots": 0}, e) for e in range(12))
    # the default: one cycle per snapshot
    assert [e + 1 for e in range(6) if takes_snapshot({"epochs": 6, "snapshots": 3}, e)] == [
        2,
        4,
        6,
    ]


def test_a_diverged_loss_stops_training_naming_the_epoch(tmp_path):
    p = params(epochs=1, lr=1e30, optimizer="sgd")
    with pytest.raises(ValueError, match="phase 0 epoch 0: the training loss is (nan|inf)"):
        run_fit(p, tmp_path)


def test_a_checkpoint_of_a_reshaped_network_starts_over(tmp_path):
    """Same config, but code changed the network: the old checkpoint must not be loaded."""
    p = params(epochs=1)
    runtime = resolve_runtime("cpu", "false", "false")
    train, val = toy_tiles(16, 0), toy_tiles(8, 1)
    loop.fit(build_model("unet", 101, **p["model"]), p, train, val, runtime, tmp_path, 0)
    reshaped = build_model("unet", 101, **{**p["model"], "decoder_channels": [8, 8, 8, 8, 8]})
    history = loop.fit(reshaped, p, train, val, runtime, tmp_path, 0)["history"]
    assert [row["epoch"] for row in history] == [0]  # trained afresh, not resumed or crashed
