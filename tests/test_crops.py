"""Training on random windows of the tiles (a phase's ``crop``): the windows, the geometry that
lets them through in training only, and a phase that trains on them and validates on tiles."""

import pytest
import torch
from test_training import assert_same_weights, params, run_fit, run_killed_then_resumed

from saltseg.data.batch_augment import random_windows
from saltseg.errors import InputError
from saltseg.models.geometry import Geometry
from saltseg.training import loop


def test_random_windows_cut_the_same_window_from_image_and_mask():
    x = torch.arange(4 * 101 * 101, dtype=torch.float32).view(4, 1, 101, 101)
    y = 2 * x
    xs, ys = random_windows(x, y, 96, torch.Generator().manual_seed(0))
    assert xs.shape == ys.shape == (4, 1, 96, 96)
    assert torch.equal(ys, 2 * xs)
    for b in range(4):  # the top-left value names the window's offset
        top, left = divmod(int(xs[b, 0, 0, 0]) - b * 101 * 101, 101)
        assert 0 <= top <= 5 and 0 <= left <= 5
        assert torch.equal(xs[b], x[b, :, top : top + 96, left : left + 96])
    again, _ = random_windows(x, y, 96, torch.Generator().manual_seed(0))
    assert torch.equal(again, xs)  # replayed by the seed


def test_random_windows_reach_every_offset():
    x = torch.arange(101 * 101, dtype=torch.float32).view(1, 1, 101, 101).expand(400, 1, -1, -1)
    xs, _ = random_windows(x, x, 96, torch.Generator().manual_seed(1))
    offsets = {divmod(int(v), 101) for v in xs[:, 0, 0, 0]}
    assert {top for top, _ in offsets} == set(range(6))
    assert {left for _, left in offsets} == set(range(6))


def test_geometry_lets_windows_through_in_training_only():
    geometry = Geometry(tile=101, resize_to=101, pad_to=128)
    window = torch.randn(2, 1, 96, 96)
    geometry.train()
    assert geometry.to_network(window) is window
    assert geometry.to_tile(window) is window
    assert geometry.to_network(torch.randn(2, 1, 101, 101)).shape[-1] == 128  # tiles as before
    with pytest.raises(InputError, match="expected 101 px inputs"):
        geometry.to_network(torch.randn(2, 1, 100, 100))  # not a multiple of the stride
    geometry.eval()
    with pytest.raises(InputError, match="expected 101 px inputs"):
        geometry.to_network(window)


@pytest.mark.parametrize(
    "geometry, side, message",
    [
        (Geometry(101, 101, 128), 100, "multiple of the encoder stride 32 under the tile side 101"),
        (Geometry(101, 101, 128), 128, "under the tile side 101, got 128"),
        (Geometry(101, 64, 64), 32, "no context margin and no resize_to"),
        (Geometry(101, 101, 160, margin=8), 96, "no context margin and no resize_to"),
    ],
)
def test_windows_that_cannot_pass_are_named(geometry, side, message):
    with pytest.raises(InputError, match=f"phase 0 crop: expected .*{message}"):
        geometry.check_window(side, "phase 0 crop")


def test_a_crop_phase_trains_on_windows_and_validates_on_tiles(tmp_path, monkeypatch):
    real_step, real_validate, trained, validated = loop.train_step, loop._validate, [], []

    def recording_step(forward, x, y, *args):
        trained.append((tuple(x.shape), tuple(y.shape)))
        return real_step(forward, x, y, *args)

    def recording_validate(model, val, *args):
        validated.append(val.images.shape)
        return real_validate(model, val, *args)

    monkeypatch.setattr(loop, "train_step", recording_step)
    monkeypatch.setattr(loop, "_validate", recording_validate)
    p = params(epochs=2, crop=96)
    p["model"] = {**p["model"], "pad_to": 128}
    history = run_fit(p, tmp_path)["history"]
    assert set(trained) == {((8, 1, 96, 96), (8, 1, 96, 96))}  # 16 tiles, batch 8, 2 epochs
    assert len(trained) == 4
    assert validated == [(8, 101, 101)] * 2 and 0 <= history[-1]["val_metric"] <= 1


@pytest.mark.slow  # fast: test_a_crop_phase_trains_on_windows_and_validates_on_tiles and the
# killed-run resume of test_training
def test_a_killed_crop_phase_resumes_to_the_same_weights(tmp_path, monkeypatch):
    p = params(epochs=3, crop=64)
    p["model"] = {**p["model"], "pad_to": 128}
    straight = run_fit(p, tmp_path / "straight")
    resumed = run_killed_then_resumed(p, tmp_path / "killed", monkeypatch)
    assert_same_weights(straight["snapshots"][0], resumed["snapshots"][0])


def test_a_crop_with_resized_tiles_is_refused_naming_the_phase(tmp_path):
    p = params(epochs=1, crop=32)
    p["model"] = {**p["model"], "resize_to": 64, "pad_to": 64}
    with pytest.raises(InputError, match="phase 0 crop: expected no context margin"):
        run_fit(p, tmp_path)
