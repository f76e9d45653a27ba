"""Tests for the synthetic seismic section generator and its Kaggle layout."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from saltseg import rle
from saltseg.data import kaggle
from saltseg.data.images import read_image, read_mask
from saltseg.data.synthetic import draw_section, generate
from saltseg.errors import InputError

T = 101
SEED, SECTIONS, ROWS, COLS, BLANK = 3, 2, 4, 5, 0.1


def _tile_grid(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows*T, cols*T) -> (rows, cols, T, T)."""
    return array.reshape(rows, T, cols, T).transpose(0, 2, 1, 3)


def _is_vertical(mask: np.ndarray) -> bool:
    return bool(mask.any() and not mask.all() and (mask == mask[0]).all())


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> dict:
    """One small generated dataset, read back: tables plus every tile image and mask."""
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, seed=SEED, sections=SECTIONS, rows=ROWS, cols=COLS, blank_fraction=BLANK)
    names = ("train", "depths", "mosaics", "sample_submission")
    read = {name: pd.read_csv(out / f"{name}.csv", keep_default_na=False) for name in names}
    train_ids, test_ids = list(read["train"]["id"]), list(read["sample_submission"]["id"])
    images = {i: read_image(out / "train" / "images" / f"{i}.png", T) for i in train_ids}
    images |= {i: read_image(out / "test" / "images" / f"{i}.png", T) for i in test_ids}
    masks = {i: read_mask(out / "train" / "masks" / f"{i}.png", T) for i in train_ids}
    return {"out": out, **read, "images": images, "masks": masks, "test_ids": test_ids}


def _canvas(layout: dict, mosaic: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste one mosaic's tiles back: image, mask (-1 where test) and a tile-id grid."""
    tiles = layout["mosaics"][layout["mosaics"]["mosaic_id"] == mosaic]
    image = np.zeros((ROWS * T, COLS * T), np.uint8)
    mask = np.full((ROWS * T, COLS * T), -1, np.int16)
    grid = np.empty((ROWS, COLS), object)
    for tid, x, y in zip(tiles["id"], tiles["x"], tiles["y"]):
        image[y * T : (y + 1) * T, x * T : (x + 1) * T] = layout["images"][tid]
        if tid in layout["masks"]:
            mask[y * T : (y + 1) * T, x * T : (x + 1) * T] = layout["masks"][tid]
        grid[y, x] = tid
    return image, mask, grid


def test_draw_section_shape_range_and_determinism():
    image, mask = draw_section(np.random.default_rng(1), 3, 4)
    assert image.shape == mask.shape == (3 * T, 4 * T)
    assert image.dtype == mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    assert 100 < image.mean() < 156 and image.std() > 20
    again, again_mask = draw_section(np.random.default_rng(1), 3, 4)
    assert np.array_equal(image, again) and np.array_equal(mask, again_mask)
    assert not np.array_equal(image, draw_section(np.random.default_rng(2), 3, 4)[0])


def test_salt_is_chaotic_inside_and_has_a_bright_rim():
    image, mask = draw_section(np.random.default_rng(7), 6, 8)
    img = image.astype(np.float32)
    kernel = np.ones((11, 11), np.uint8)
    inside, outside = cv2.erode(mask, kernel), cv2.erode(1 - mask, kernel)
    shifted = img[:, 4:], img[:, :-4]  # lateral coherence: sediments continue sideways, salt not

    def coherence(region: np.ndarray) -> float:
        keep = region[:, 4:].astype(bool) & region[:, :-4].astype(bool)
        return float(np.corrcoef(shifted[0][keep], shifted[1][keep])[0, 1])

    assert coherence(inside) < 0.45 and coherence(outside) > coherence(inside) + 0.25
    rim = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    assert img[rim].mean() > img.mean() + 25


def test_salt_coverage_mix_over_sections():
    rng = np.random.default_rng(11)
    cover = np.concatenate(
        [_tile_grid(draw_section(rng, 8, 10)[1], 8, 10).mean(axis=(2, 3)).ravel() for _ in range(6)]
    )
    empty, full = np.mean(cover == 0), np.mean(cover == 1)
    assert 0.3 < empty < 0.6
    assert 0.02 < full < 0.3
    assert 1 - empty - full > 0.25


def test_every_section_has_a_vertical_wall():
    rng = np.random.default_rng(5)
    for _ in range(4):
        grid = _tile_grid(draw_section(rng, 4, 6)[1], 4, 6)
        vertical = [[_is_vertical(grid[r, c]) for c in range(6)] for r in range(4)]
        assert np.array(vertical).all(axis=0).any()  # a whole tile column of vertical masks


def test_files_and_ids(layout):
    out, total = layout["out"], SECTIONS * ROWS * COLS
    ids = list(layout["mosaics"]["id"])
    assert len(ids) == len(set(ids)) == total
    assert all(re.fullmatch(r"[0-9a-f]{10}", i) for i in ids)
    train_ids, test_ids = set(layout["train"]["id"]), set(layout["test_ids"])
    assert len(train_ids) == round(0.5 * total) and not train_ids & test_ids
    assert train_ids | test_ids == set(ids)
    assert sorted(layout["depths"]["id"]) == sorted(ids)
    assert list(layout["train"].columns) == ["id", "rle_mask"]
    assert list(layout["mosaics"].columns) == ["id", "mosaic_id", "x", "y"]
    assert (layout["sample_submission"]["rle_mask"] == "1 1").all()
    assert len(list((out / "train" / "images").glob("*.png"))) == len(train_ids)
    assert len(list((out / "train" / "masks").glob("*.png"))) == len(train_ids)
    assert len(list((out / "test" / "images").glob("*.png"))) == len(test_ids)
    assert not list(out.parent.glob(".data.*"))  # no temporary directory left behind


def test_the_test_truth_is_each_test_tiles_mask_in_submission_order(layout):
    out = layout["out"]
    solution = pd.read_csv(out / "solution.csv", keep_default_na=False)
    assert list(solution.columns) == ["id", "rle_mask"]
    assert solution["id"].tolist() == layout["sample_submission"]["id"].tolist()
    ids, masks = kaggle.load_test_truth(out, T)
    assert ids == solution["id"].tolist()
    for tile_id, mask in zip(ids, masks):  # the tile continues its mosaic: its truth is the mask
        assert np.array_equal(
            mask, rle.decode(solution.set_index("id")["rle_mask"][tile_id], (T, T))
        )
    assert 0 < masks.mean() < 1 and masks.any(axis=(1, 2)).any() and not masks.all()


def test_the_test_truth_is_optional_and_checked(tmp_path):
    generate(tmp_path / "d", sections=1, rows=2, cols=3)
    solution = tmp_path / "d" / "solution.csv"
    table = pd.read_csv(solution, keep_default_na=False)
    table.iloc[1:].to_csv(solution, index=False)
    with pytest.raises(InputError, match=r"solution.csv: expected one mask per test id"):
        kaggle.load_test_truth(tmp_path / "d", T)
    solution.unlink()
    assert kaggle.load_test_truth(tmp_path / "d", T) is None


def test_masks_are_0_255_and_match_train_rle(layout):
    for tid, code in zip(layout["train"]["id"], layout["train"]["rle_mask"]):
        raw = cv2.imread(
            str(layout["out"] / "train" / "masks" / f"{tid}.png"), cv2.IMREAD_UNCHANGED
        )
        assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 255}
        assert np.array_equal(rle.decode(code, (T, T)), layout["masks"][tid])
        assert (code == "") == (not layout["masks"][tid].any())


def test_depths_grow_down_each_mosaic(layout):
    table = layout["mosaics"].merge(layout["depths"], on="id")
    assert table["z"].dtype.kind == "i" and (table["z"] >= 1).all()
    for _, tiles in table.groupby("mosaic_id"):
        by_row = tiles.groupby("y")["z"]
        assert (by_row.max() - by_row.min()).max() <= 6  # jitter only
        assert np.allclose(np.diff(by_row.mean()), T, atol=6)


def test_tiles_paste_back_into_the_drawn_sections(layout):
    rng = np.random.default_rng(SEED)
    sections = [draw_section(rng, ROWS, COLS) for _ in range(SECTIONS)]
    blank_tiles = 0
    for k, (section, section_mask) in enumerate(sections):
        image, mask, grid = _canvas(layout, k)
        assert all(tid is not None for tid in grid.ravel())  # full rectangle, each cell once
        same = _tile_grid(image == section, ROWS, COLS).all(axis=(2, 3))
        tiles = _tile_grid(image, ROWS, COLS)
        blank = tiles.min(axis=(2, 3)) == tiles.max(axis=(2, 3))
        assert (same | blank).all()
        blank_tiles += int((~same).sum())
        known = (mask >= 0) & np.kron(same, np.ones((T, T), bool))
        assert np.array_equal(mask[known], section_mask[known])
    assert blank_tiles == round(BLANK * SECTIONS * ROWS * COLS)


def test_neighbours_continue_each_other(layout):
    rng = np.random.default_rng(0)
    true, other = [], []
    for k in range(SECTIONS):
        image, _, _ = _canvas(layout, k)
        tiles = _tile_grid(image.astype(np.float32), ROWS, COLS)
        live = [(r, c) for r in range(ROWS) for c in range(COLS) if tiles[r, c].std() > 0]
        for r, c in live:
            if (r, c + 1) in live:  # left tile's last column vs right tile's first column
                true.append(np.abs(tiles[r, c][:, -1] - tiles[r, c + 1][:, 0]).mean())
            if (r + 1, c) in live:  # upper tile's last row vs lower tile's first row
                true.append(np.abs(tiles[r, c][-1] - tiles[r + 1, c][0]).mean())
            r2, c2 = live[rng.integers(len(live))]
            if (r2, c2) not in ((r, c), (r, c + 1)):
                other.append(np.abs(tiles[r, c][:, -1] - tiles[r2, c2][:, 0]).mean())
    assert len(true) > 30 and len(other) > 20
    assert np.median(true) < 0.4 * np.median(other)


def test_blank_tiles_are_constant_with_empty_masks(layout):
    blank = [t for t, img in layout["images"].items() if img.min() == img.max()]
    assert len(blank) == round(BLANK * SECTIONS * ROWS * COLS)
    in_train = [t for t in blank if t in layout["masks"]]
    assert in_train and all(not layout["masks"][t].any() for t in in_train)
    corners = layout["mosaics"].set_index("id").loc[blank]
    for _, tiles in corners.groupby("mosaic_id"):  # clustered: touching a section corner
        assert ((tiles["x"].isin([0, COLS - 1])) & (tiles["y"].isin([0, ROWS - 1]))).any()


def test_vertical_and_mixed_masks_in_train(layout):
    masks = list(layout["masks"].values())
    assert sum(_is_vertical(m) for m in masks) >= 2
    assert any(not m.any() for m in masks) and any(m.any() and not m.all() for m in masks)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    kwargs = {"sections": 1, "rows": 2, "cols": 3}
    generate(tmp_path / "a", seed=5, **kwargs)
    generate(tmp_path / "b", seed=5, **kwargs)
    generate(tmp_path / "c", seed=6, **kwargs)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    # 3 train images + 3 masks, 3 test images, 5 CSVs (the test truth too), and the manifest
    assert len(a) == 2 * 3 + 3 + 5 + 1
    assert a == b
    assert a["mosaics.csv"] != c["mosaics.csv"] and set(a) != set(c)


def test_generate_replaces_its_own_output_but_never_a_users_file(tmp_path):
    generate(tmp_path / "d", sections=2, rows=2, cols=2)
    generate(tmp_path / "d", sections=1, rows=1, cols=2)  # its own output: replaced whole
    assert len(pd.read_csv(tmp_path / "d" / "mosaics.csv")) == 2
    assert len(list((tmp_path / "d").rglob("*.png"))) < 2 * 2 * 2
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"d: holds files this step did not write \(notes.txt\)"):
        generate(tmp_path / "d", sections=1, rows=1, cols=2)
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"


def test_draw_section_edge_sizes_and_bad_arguments():
    for rows, cols, tile in ((1, 1, 16), (1, 1, 101), (2, 1, 101), (1, 3, 40)):
        image, mask = draw_section(np.random.default_rng(0), rows, cols, tile)
        assert image.shape == mask.shape == (rows * tile, cols * tile)
        assert mask.any()  # the wall is always there
    for args, name in (((0, 2), "rows"), ((2, 0), "cols"), ((2, 2, 8), "tile")):
        with pytest.raises(ValueError, match=name):
            draw_section(np.random.default_rng(0), *args)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sections": 0}, "sections"),
        ({"rows": 0}, "rows"),
        ({"cols": -1}, "cols"),
        ({"rows": 2.5}, "rows"),
        ({"sections": True}, "sections"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"blank_fraction": -0.1}, "blank_fraction"),
        ({"blank_fraction": 0.9}, "blank_fraction"),
        ({"tile": 5}, "tile"),
        ({"seed": -1}, "seed"),
        ({"sections": 1, "rows": 1, "cols": 1}, "sections*rows*cols"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=re.escape(name)) as err:
        generate(tmp_path / "x", **kwargs)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()
