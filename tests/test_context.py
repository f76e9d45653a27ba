"""Neighbour context: windows from the mosaic layout, the geometry that cuts them back, the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from saltseg.data.kaggle import Tiles
from saltseg.errors import InputError
from saltseg.models import build_model
from saltseg.models.geometry import Geometry
from saltseg.mosaic.context import Context, build_context, trusted_neighbours, windows

T, M = 8, 3  # tile side and margin of the hand-made mosaic


def grid(rows: int = 3, cols: int = 3, seed: int = 0):
    """A random picture cut into rows x cols tiles: (picture, ids, images, layout, pairs)."""
    picture = np.random.default_rng(seed).integers(0, 256, (rows * T, cols * T), dtype=np.uint8)
    ids, images, cells, pairs = [], [], [], []
    for y in range(rows):
        for x in range(cols):
            ids.append(f"t{y}{x}")
            images.append(picture[y * T : (y + 1) * T, x * T : (x + 1) * T])
            cells.append((f"t{y}{x}", 0, x, y))
            if x + 1 < cols:
                pairs.append((f"t{y}{x}", f"t{y}{x + 1}", "lr", 0.5))
            if y + 1 < rows:
                pairs.append((f"t{y}{x}", f"t{y + 1}{x}", "tb", 0.5))
    layout = pd.DataFrame(cells, columns=["id", "mosaic_id", "x", "y"])
    table = pd.DataFrame(pairs, columns=["id_a", "id_b", "kind", "ratio"])
    return picture, ids, np.stack(images), layout, table


def test_a_surrounded_tile_sees_the_picture_around_it():
    picture, ids, images, layout, pairs = grid()
    context = build_context(ids, images, layout, pairs, M, max_ratio=1.0)
    centre = ids.index("t11")
    assert context.windows.shape == (9, T + 2 * M, T + 2 * M)
    np.testing.assert_array_equal(
        context.windows[centre], picture[T - M : 2 * T + M, T - M : 2 * T + M]
    )
    for i in range(9):  # the centre of every window is the tile itself
        np.testing.assert_array_equal(context.windows[i, M : M + T, M : M + T], images[i])


def test_missing_sides_are_reflected_and_present_ones_sit_on_their_side():
    picture, ids, images, layout, pairs = grid()
    window = build_context(ids, images, layout, pairs, M, 1.0).windows[ids.index("t00")]
    reflected = np.pad(images[0], M, mode="reflect")
    np.testing.assert_array_equal(window[:M], reflected[:M])  # nothing above: reflected
    np.testing.assert_array_equal(window[:, :M], reflected[:, :M])  # nothing left: reflected
    np.testing.assert_array_equal(window[M:, M:], picture[: T + M, : T + M])  # right, below, corner


def test_an_untrusted_seam_is_not_used_and_corners_need_a_trusted_path():
    picture, ids, images, layout, pairs = grid()
    pairs.loc[(pairs["id_a"] == "t11") & (pairs["id_b"] == "t12"), "ratio"] = 1.5
    pairs.loc[(pairs["id_a"] == "t11") & (pairs["id_b"] == "t21"), "ratio"] = np.nan
    neighbours = trusted_neighbours(ids, layout, pairs, max_ratio=1.0)
    centre = ids.index("t11")
    assert neighbours[centre].tolist() == [
        [ids.index("t00"), ids.index("t01"), ids.index("t02")],  # t02 via t01 -> t02
        [ids.index("t10"), centre, -1],  # right seam's ratio 1.5: not trusted
        [ids.index("t20"), -1, -1],  # below has no evidence; t22 has no trusted path
    ]
    window = windows(images, neighbours, M, rows=np.array([centre]))[0]
    reflected = np.pad(images[centre], M, mode="reflect")
    np.testing.assert_array_equal(window[M : M + T, M + T :], reflected[M : M + T, M + T :])
    np.testing.assert_array_equal(window[M + T :, :M], picture[2 * T : 2 * T + M, T - M : T])


def test_label_windows_use_only_the_labelled_tiles_given():
    picture, ids, images, layout, pairs = grid()
    context = build_context(ids, images, layout, pairs, M, 1.0)
    keep = ["t11", "t12"]  # t10 is a validation tile here: its mask must not be used
    rows = [ids.index(i) for i in keep]
    tiles = Tiles(keep, images[rows], images[rows] % 2, np.zeros(2))
    out = context.apply(tiles, labels=True)
    np.testing.assert_array_equal(out.images[0], context.windows[ids.index("t11")])
    masks = picture % 2
    np.testing.assert_array_equal(
        out.masks[0][M : M + T, M + T :], masks[T : 2 * T, 2 * T : 2 * T + M]
    )
    left = np.pad(tiles.masks[0], M, mode="reflect")[:, :M]
    np.testing.assert_array_equal(out.masks[0][:, :M], left)
    assert context.apply(tiles).masks.shape == (2, T, T)  # validation masks stay tiles


def test_the_cache_round_trips_and_names_missing_tiles(tmp_path):
    _, ids, images, layout, pairs = grid()
    context = build_context(ids, images, layout, pairs, M, 0.8)
    context.write(tmp_path / "c.npz")
    back = Context.read(tmp_path / "c.npz")
    assert back.ids == ids and back.margin == M and back.max_ratio == 0.8
    np.testing.assert_array_equal(back.windows, context.windows)
    with pytest.raises(InputError, match="'nope' has none"):
        back.rows(["t00", "nope"])
    (tmp_path / "bad.npz").write_text("no")
    with pytest.raises(InputError, match="bad.npz: expected a context file"):
        Context.read(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="margin: expected 0 <= margin < 8, got 8"):
        windows(images, context.neighbours, 8)


@pytest.mark.parametrize("resize_to", [101, 64])
def test_geometry_cuts_the_window_back_to_its_tile(resize_to):
    margin = 13
    geometry = Geometry(101, resize_to, 128, 32, margin)
    window = torch.rand(2, 1, 101 + 2 * margin, 101 + 2 * margin)
    out = geometry.to_tile(geometry.to_network(window))
    assert out.shape == (2, 1, 101, 101)
    if resize_to == 101:  # no resizing: exact
        torch.testing.assert_close(out, window[..., margin:-margin, margin:-margin])
    with pytest.raises(InputError, match="expected 127 px inputs"):
        geometry.to_network(torch.rand(1, 1, 101, 101))
    with pytest.raises(InputError, match="resize_to \\+ 2 x resized margin <= pad_to"):
        Geometry(101, 101, 96, 32, 13)


def test_a_context_model_maps_windows_to_tile_logits():
    model = build_model(
        "unet",
        101,
        encoder_name="resnet10t",
        decoder_channels=[8] * 5,
        pad_to=128,
        context={"margin": 13},
    )
    model.eval()
    assert model(torch.rand(2, 1, 127, 127)).shape == (2, 1, 101, 101)
    from saltseg.inference.predict import predict_ensemble
    from saltseg.runtime.device import resolve_runtime

    windows = np.random.default_rng(0).integers(0, 256, (3, 127, 127), dtype=np.uint8)
    runtime = resolve_runtime("cpu", "false", "false")
    probs = predict_ensemble([model, model], windows, runtime, 2, ["none", "hflip"])
    assert probs.shape == (3, 101, 101) and ((probs > 0) & (probs < 1)).all()


@pytest.fixture(scope="module")
def synthetic_context(tmp_path_factory):
    """A synthetic dataset, its assembled mosaic and margin-10 windows, made through the CLI."""
    root = tmp_path_factory.mktemp("ctx")
    data = root / "data"
    run = [sys.executable, "-m", "saltseg"]
    for args in [
        ["synth", "--out", str(data), "--sections", "2", "--rows", "4", "--cols", "5"],
        [
            "mosaic",
            "--data-dir",
            str(data),
            "--tiles",
            str(root / "tiles.parquet"),
            "--pairs",
            str(root / "pairs.parquet"),
            "--png-dir",
            str(root / "png"),
            "--draw",
            "0",
        ],
        [
            "context",
            "--data-dir",
            str(data),
            "--layout",
            str(root / "tiles.parquet"),
            "--pairs",
            str(root / "pairs.parquet"),
            "--margin",
            "10",
            "--out",
            str(root / "c.npz"),
        ],
    ]:
        result = subprocess.run([*run, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    return data, Context.read(root / "c.npz")


def test_synthetic_windows_match_the_true_mosaic(synthetic_context):
    from saltseg.data import kaggle

    data, context = synthetic_context
    train, test = kaggle.load_train(data, 101), kaggle.load_test(data, 101)
    image = dict(zip(train.ids + test.ids, np.concatenate([train.images, test.images])))
    truth = pd.read_csv(data / "mosaics.csv", dtype={"id": str})
    at = {(m, x, y): i for i, m, x, y in truth.itertuples(index=False)}
    where = truth.set_index("id")
    checked = 0
    for k, tile_id in enumerate(context.ids):
        window = context.windows[k]
        np.testing.assert_array_equal(window[10:111, 10:111], image[tile_id])
        m, x, y = where.loc[tile_id, ["mosaic_id", "x", "y"]]
        for (dx, dy), part, edge in [
            ((1, 0), window[10:111, 111:], lambda n: n[:, :10]),
            ((-1, 0), window[10:111, :10], lambda n: n[:, -10:]),
            ((0, 1), window[111:, 10:111], lambda n: n[:10]),
            ((0, -1), window[:10, 10:111], lambda n: n[-10:]),
        ]:
            if context.neighbours[k, 1 + dy, 1 + dx] >= 0:  # a trusted neighbour: the true one
                np.testing.assert_array_equal(part, edge(image[at[(m, x + dx, y + dy)]]))
                checked += 1
    assert checked > 2 * len(context.ids)  # most sides come from neighbours


def test_the_context_cli_rejects_a_layout_without_the_columns(synthetic_context, tmp_path):
    data, _ = synthetic_context
    pd.DataFrame({"id": ["a"]}).to_parquet(tmp_path / "tiles.parquet")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "saltseg",
            "context",
            "--data-dir",
            str(data),
            "--layout",
            str(tmp_path / "tiles.parquet"),
            "--pairs",
            str(tmp_path / "tiles.parquet"),
            "--margin",
            "5",
            "--out",
            str(tmp_path / "c.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        "tiles.parquet: expected the mosaic rule's parquet with id, mosaic_id, x, y"
        in result.stderr
    )
    assert not (tmp_path / "c.npz").exists()


def test_training_on_windows_cuts_the_masks_to_the_tile(tmp_path):
    from saltseg.runtime.device import resolve_runtime
    from saltseg.training.loop import fit

    rng = np.random.default_rng(0)
    masks = np.zeros((8, 121, 121), np.uint8)
    masks[:, 30:90, 20:70] = 1  # the tile is [10:111]: salt inside it, none in the margin
    images = (masks * 150 + rng.integers(0, 80, masks.shape)).astype(np.uint8)
    train = Tiles([f"t{i}" for i in range(8)], images, masks, np.zeros(8))
    val = Tiles(train.ids, images, masks[:, 10:111, 10:111], np.zeros(8))
    params = {
        "arch": "unet",
        "model": {"encoder_name": "resnet10t", "decoder_channels": [8] * 5, "pad_to": 128},
        "augment": [{"name": "HorizontalFlip", "p": 0.5}, {"name": "Affine", "scale": [0.9, 1.1]}],
        "phases": [
            {"loss": "bce_dice", "optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 4}
        ],
    }
    params["model"]["context"] = {"margin": 10}
    torch.manual_seed(0)
    model = build_model("unet", 101, **params["model"])
    result = fit(model, params, train, val, resolve_runtime("cpu", "false", "false"), tmp_path, 0)
    assert [row["epoch"] for row in result["history"]] == [0, 1]
    assert np.isfinite(result["history"][-1]["val_loss"])
