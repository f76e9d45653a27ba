"""Tests for mosaic assembly: matching, conflicts, blank tiles, outputs, synthetic quality."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from saltseg.data.images import read_image
from saltseg.errors import InputError
from saltseg.mosaic.assemble import AssemblyParams, assemble, find_pairs, fit_predictor, is_blank

T = 101
STEP = {"lr": (1, 0), "tb": (0, 1)}


def _field(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A smooth picture of rows x cols tiles: tilted sinusoid layers plus blurred noise, uint8."""
    h, w = rows * T, cols * T
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.zeros((h, w), np.float32)
    for _ in range(4):
        freq, angle, phase = rng.uniform(0.03, 0.12), rng.uniform(0, np.pi), rng.uniform(0, 6.3)
        image += np.sin(freq * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 4.0)
    image += 3.0 * noise / noise.std()
    image = 128 + 40 * (image - image.mean()) / image.std()
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _cut(sections: list[np.ndarray], rng: np.random.Generator) -> tuple[list, np.ndarray, dict]:
    """Shuffled tiles of the sections: ids, images, and the true position (section, x, y)."""
    tiles, where = [], []
    for k, image in enumerate(sections):
        for r in range(image.shape[0] // T):
            for c in range(image.shape[1] // T):
                tiles.append(image[r * T : (r + 1) * T, c * T : (c + 1) * T])
                where.append((k, c, r))
    order = rng.permutation(len(tiles))
    ids = [f"t{i:04d}" for i in range(len(tiles))]
    return ids, np.stack([tiles[j] for j in order]), {ids[i]: where[j] for i, j in enumerate(order)}


def _truth(where: dict, skip: set = frozenset()) -> set:
    """True neighbour pairs (id_a, id_b, kind) between tiles not in ``skip``."""
    at = {pos: i for i, pos in where.items()}
    pairs = set()
    for i, (k, x, y) in where.items():
        for kind, (dx, dy) in STEP.items():
            j = at.get((k, x + dx, y + dy))
            if j is not None and i not in skip and j not in skip:
                pairs.add((i, j, kind))
    return pairs


def _check_layout(ids: list, tiles: pd.DataFrame) -> None:
    """The layout contract: columns, dtypes, each id once, one tile per cell, origin at 0."""
    assert list(tiles.columns) == ["id", "mosaic_id", "x", "y"]
    assert all(tiles[c].dtype == np.int64 for c in ("mosaic_id", "x", "y"))
    assert sorted(tiles["id"]) == sorted(ids)
    assert not tiles.duplicated(["mosaic_id", "x", "y"]).any()
    corner = tiles.groupby("mosaic_id")[["x", "y"]].min()
    assert (corner == 0).all().all()
    sizes = tiles.groupby("mosaic_id").size()
    assert list(sizes.index) == list(range(len(sizes)))
    assert sizes.is_monotonic_decreasing


@pytest.fixture(scope="module")
def cut() -> tuple[list, np.ndarray, dict]:
    rng = np.random.default_rng(7)
    return _cut([_field(rng, 4, 5), _field(rng, 3, 6)], rng)


def test_assemble_recovers_a_known_cut(cut):
    ids, images, where = cut
    tiles, pairs = assemble(ids, images)
    _check_layout(ids, tiles)
    found = set(zip(pairs["id_a"], pairs["id_b"], pairs["kind"]))
    assert found == _truth(where)
    assert tiles.groupby("mosaic_id").size().tolist() == [20, 18]


def test_find_pairs_are_correct_and_mutual(cut):
    ids, images, where = cut
    pairs = find_pairs(images)
    assert list(pairs.columns) == ["a", "b", "kind", "score", "ratio"]
    assert pairs["ratio"].is_monotonic_increasing and (pairs["ratio"] < 0.8).all()
    found = {(ids[a], ids[b], k) for a, b, k in zip(pairs["a"], pairs["b"], pairs["kind"])}
    truth = _truth(where)
    assert found <= truth
    assert len(found) >= 0.8 * len(truth)
    assert not pairs.duplicated(["a", "kind"]).any() and not pairs.duplicated(["b", "kind"]).any()


def test_duplicated_tiles_claim_one_cell_only(cut):
    ids, images, where = cut
    copies = [3, 11, 20]
    ids2 = ids + [f"copy{i}" for i in copies]
    images2 = np.concatenate([images, images[copies]])
    tiles, pairs = assemble(ids2, images2)
    _check_layout(ids2, tiles)
    # a copy stands for its original: each pair must be true once copies are mapped back
    back = {f"copy{i}": ids[i] for i in copies}
    truth = _truth(where)
    for a, b, kind in zip(pairs["id_a"], pairs["id_b"], pairs["kind"]):
        assert (back.get(a, a), back.get(b, b), kind) in truth
    sizes = tiles.groupby("mosaic_id").size()
    mosaic = tiles.set_index("id")["mosaic_id"]
    for i in copies:  # one of the two holds the cell, the other is left alone
        assert min(sizes[mosaic[ids[i]]], sizes[mosaic[f"copy{i}"]]) == 1
    found = set(zip(pairs["id_a"], pairs["id_b"], pairs["kind"]))
    twins = {ids[i] for i in copies}
    assert {p for p in truth if not twins & set(p[:2])} <= found  # the rest is untouched


def test_a_lookalike_competes_for_one_cell(cut):
    ids, images, where = cut
    at = {pos: i for i, pos in where.items()}
    target = ids.index(at[(0, 2, 1)])
    fake = images[target].astype(np.int16)
    fake[:, 20:80] = 255 - fake[:, 20:80]  # same borders, different inside
    ids2, images2 = ids + ["fake"], np.concatenate([images, fake[None].astype(np.uint8)])
    tiles, pairs = assemble(ids2, images2)
    _check_layout(ids2, tiles)
    cell = tiles.set_index("id").loc[[ids[target], "fake"]]
    placed = tiles.merge(cell.reset_index()[["mosaic_id", "x", "y"]], on=["mosaic_id", "x", "y"])
    assert len(placed) == 2  # two different cells: no cell holds two tiles
    sizes = tiles.groupby("mosaic_id").size()
    assert sorted(sizes[cell["mosaic_id"]].tolist()) == [1, 20]  # one wins, the other is alone
    # its left and right seams are ambiguous (the lookalike offers the same left and right
    # borders; its top and bottom rows differ): not mutual
    near = pairs["id_a"].isin([ids[target], "fake"]) | pairs["id_b"].isin([ids[target], "fake"])
    side = near & (pairs["kind"] == "lr")
    assert side.any() and not pairs.loc[side, "mutual"].any()
    assert pairs.loc[~near, "mutual"].mean() > 0.9


def test_blank_tiles_are_never_matched(cut):
    ids, images, where = cut
    blanks = np.stack([np.zeros((T, T), np.uint8), np.full((T, T), 128, np.uint8)] * 2)
    ids2 = ids + ["blank0", "blank1", "blank2", "blank3"]
    images2 = np.concatenate([images, blanks])
    assert is_blank(images2).sum() == 4
    tiles, pairs = assemble(ids2, images2)
    _check_layout(ids2, tiles)
    sizes = tiles.groupby("mosaic_id").size()
    blank_mosaics = tiles.set_index("id").loc[ids2[-4:], "mosaic_id"]
    assert (sizes[blank_mosaics] == 1).all()
    assert not set(pairs["id_a"]).union(pairs["id_b"]) & set(ids2[-4:])
    found = find_pairs(images2)
    assert not set(found["a"]).union(found["b"]) & set(range(len(ids), len(ids2)))


def test_flat_borders_carry_no_evidence():
    flat = np.full((4, T, T), 100, np.uint8)
    flat[:, 40:60, 40:60] = 200  # not blank, but every border is one grey value
    tiles, pairs = assemble(["a", "b", "c", "d"], flat)
    assert pairs.empty and tiles["mosaic_id"].nunique() == 4


def test_output_types_and_determinism(cut):
    ids, images, _ = cut
    tiles1, pairs1 = assemble(ids, images)
    tiles2, pairs2 = assemble(ids, images)
    pd.testing.assert_frame_equal(tiles1, tiles2)
    pd.testing.assert_frame_equal(pairs1, pairs2)
    assert list(pairs1.columns) == ["id_a", "id_b", "kind", "score", "ratio", "joined", "mutual"]
    assert (pairs1["mutual"] == (pairs1["ratio"] < 0.99)).all() and pairs1["mutual"].dtype == bool
    assert set(pairs1["kind"]) == {"lr", "tb"}
    assert pairs1["joined"].dtype == bool and pairs1["score"].dtype == np.float64
    assert pairs1["joined"].sum() == len(tiles1) - tiles1["mosaic_id"].nunique()  # a forest


def test_tiny_inputs():
    tiles, pairs = assemble([], np.zeros((0, T, T), np.uint8))
    assert tiles.empty and pairs.empty and list(tiles.columns) == ["id", "mosaic_id", "x", "y"]
    tiles, pairs = assemble(["only"], np.zeros((1, T, T), np.uint8))
    assert tiles.values.tolist() == [["only", 0, 0, 0]] and pairs.empty
    assert find_pairs(np.zeros((1, T, T), np.uint8)).empty


def test_bad_input_raises():
    images = np.zeros((2, T, T), np.uint8)
    with pytest.raises(InputError, match="unique"):
        assemble(["a", "a"], images)
    with pytest.raises(InputError, match="one id per image"):
        assemble(["a"], images)
    with pytest.raises(InputError, match="stack of tiles"):
        assemble(["a"], np.zeros((T, T), np.uint8))
    with pytest.raises(ValueError, match="kind"):
        fit_predictor(images, "diagonal")
    with pytest.raises(ValueError, match="neighbours"):
        find_pairs(np.zeros((3, T, T), np.uint8), AssemblyParams(k=1))


def test_predictor_falls_back_to_linear_extrapolation():
    coef = fit_predictor(np.zeros((3, T, T), np.uint8), "tb", order=4)
    assert coef.tolist() == [2.0, -1.0, 0.0, 0.0]


def _read_layout(out: Path) -> tuple[list, np.ndarray, pd.DataFrame]:
    paths = sorted(out.glob("train/images/*.png")) + sorted(out.glob("test/images/*.png"))
    images = np.stack([read_image(p, T) for p in paths])
    truth = pd.read_csv(out / "mosaics.csv", dtype={"id": str})
    return [p.stem for p in paths], images, truth


def test_synthetic_quality_targets(tmp_path):
    synthetic = pytest.importorskip("saltseg.data.synthetic")
    out = tmp_path / "data"
    synthetic.generate(out, seed=11, sections=3, rows=6, cols=8, blank_fraction=0.05)
    ids, images, truth = _read_layout(out)
    blank = {i for i, b in zip(ids, is_blank(images)) if b}
    assert blank
    where = {i: (m, x, y) for i, m, x, y in truth[["id", "mosaic_id", "x", "y"]].itertuples(False)}
    true = _truth(where, skip=blank)
    tiles, pairs = assemble(ids, images)
    _check_layout(ids, tiles)
    found = set(zip(pairs["id_a"], pairs["id_b"], pairs["kind"]))
    assert len(found & true) >= 0.99 * len(true)
    assert len(found - true) <= 0.005 * len(found)


def test_draw_an_assembled_mosaic(cut, tmp_path):
    from saltseg.mosaic.draw import draw_mosaic

    ids, images, _ = cut
    tiles, _ = assemble(ids, images)
    largest = tiles[tiles["mosaic_id"] == 0].set_index(["x", "y"])["id"]
    by_id = dict(zip(ids, images))
    salty = largest[(4, 3)]
    masks = {salty: np.pad(np.ones((T, 50), np.uint8), ((0, 0), (0, T - 50)))}
    draw_mosaic(largest.reset_index(), by_id, masks, tmp_path / "m.png")
    picture = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_COLOR)
    assert picture.shape == (4 * T, 5 * T, 3)
    np.testing.assert_array_equal(picture[:T, :T, 0], by_id[largest[(0, 0)]])
    salt = picture[3 * T + 2 : 4 * T - 2, 4 * T + 2 : 4 * T + 48].astype(int)
    assert (salt[..., 2] > salt[..., 0]).all()  # tinted red
    with pytest.raises(InputError, match="image"):
        draw_mosaic(largest.reset_index(), {}, None, tmp_path / "n.png")
    assert not (tmp_path / "n.png").exists()


def test_two_tiles_alone_are_not_matched(cut):
    _, images, _ = cut
    tiles, pairs = assemble(["a", "b"], images[:2])  # no alternative: no ratio test possible
    assert pairs.empty and tiles["mosaic_id"].tolist() == [0, 1]


def test_the_layout_does_not_depend_on_the_input_order(tmp_path):
    from saltseg.data.images import read_image
    from saltseg.data.synthetic import generate

    data = tmp_path / "data"
    generate(data, seed=4, sections=2, rows=4, cols=5, train_fraction=0.5, blank_fraction=0.05)
    paths = sorted(data.glob("*/images/*.png"))
    ids = [p.stem for p in paths]
    images = np.stack([read_image(p) for p in paths])
    tiles, pairs = assemble(ids, images)
    shuffle = np.random.default_rng(0).permutation(len(ids))
    tiles2, pairs2 = assemble([ids[i] for i in shuffle], images[shuffle])
    pd.testing.assert_frame_equal(tiles, tiles2)
    pd.testing.assert_frame_equal(pairs, pairs2)
