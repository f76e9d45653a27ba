"""A labelled survey tiled into the Kaggle layout: round trips, depths, the known mosaic layout,
folds of contiguous slices, the volume written with kept labels, and each bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import segyio
import torch
from tiny import TINY_MODEL

from saltseg import rle
from saltseg.data import kaggle
from saltseg.data.folds import block_folds
from saltseg.data.synthetic import draw_section
from saltseg.errors import InputError
from saltseg.models import build_model
from saltseg.runtime.device import resolve_runtime
from saltseg.sections import predict_section
from saltseg.sections.io import open_section
from saltseg.survey.steps import known_mosaic, known_pairs, survey_folds
from saltseg.survey.synthetic import write_segy_cube
from saltseg.survey.tiling import tile_survey

T = 101
# segyio's own from_array2D passes Python lists to its C layer and warns about it
pytestmark = pytest.mark.filterwarnings("ignore:Implicit conversion:RuntimeWarning")


@pytest.fixture(scope="module")
def drawn():
    return draw_section(np.random.default_rng(3), 3, 4)  # 303 x 404 image, mask


def cube_of(drawn, inlines=4, crosslines=130, samples=205):
    """``(amplitudes, mask)`` cubes (inlines, crosslines, samples): windows onto one section."""
    image, mask = drawn
    windows = [np.s_[:samples, 20 * k : 20 * k + crosslines] for k in range(inlines)]
    amp = np.stack([(image[w].T.astype(np.float32) - 128) / 40 for w in windows])
    return amp, np.stack([mask[w].T for w in windows]).astype(np.float32)


def labelled(mask):
    """Labels: inline 0 all interpreted, 1 none, 2 half (NaN on the right), 3 none."""
    labels = np.full_like(mask, -1)
    labels[0] = mask[0]
    labels[2] = mask[2]
    labels[2, 60:] = np.nan
    return labels


def reassemble(data, k, shape, side):
    """Slice ``k`` of ``side`` (train images, masks or test images) put back from its tiles."""
    layout = pd.read_csv(data / "mosaics.csv", dtype={"id": str})
    rows = layout[layout["mosaic_id"] == k]
    picture = np.full((-(-shape[0] // T) * T, -(-shape[1] // T) * T), 7, np.uint8)
    for name, x, y in rows[["id", "x", "y"]].itertuples(index=False):
        tile = cv2.imread(str(data / side / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        picture[y * T : (y + 1) * T, x * T : (x + 1) * T] = tile
    return picture[: shape[0], : shape[1]]


@pytest.mark.parametrize("form", ["npy", "sgy"])
def test_tiles_round_trip_on_sides_not_multiples_of_101(tmp_path, drawn, form):
    """Slices of 205 samples x 130 traces: the train tiles of inline 0 put back are its scaled
    image and its labels; inline 1 comes back as test tiles; inline 2 (half interpreted) keeps
    only its fully interpreted tiles; padding reflects, so edge tiles count as interpreted."""
    amp, mask = cube_of(drawn)
    labels = labelled(mask)
    if form == "npy":
        np.save(tmp_path / "seismic.npy", amp)
        np.save(tmp_path / "labels.npy", labels)
    else:
        write_segy_cube(tmp_path / "seismic.sgy", amp)
        write_segy_cube(tmp_path / "labels.sgy", labels)
    seismic, marks = tmp_path / f"seismic.{form}", tmp_path / f"labels.{form}"
    info = tile_survey(seismic, marks, tmp_path / "data")
    data = tmp_path / "data"
    # 205 x 130 -> 3 x 2 tiles a slice; inline 2 is known on traces 0..59 only, and its
    # second column of tiles reflects back to trace 57: all six of its tiles are partial
    assert info["tiles"] == {"train": 6, "test": 12, "partial": 6, "uninterpreted_skipped": 0}
    with open_section(seismic) as section:
        image = section.image(0)
    np.testing.assert_array_equal(reassemble(data, 0, (205, 130), "train/images"), image)
    np.testing.assert_array_equal(
        reassemble(data, 0, (205, 130), "train/masks"), mask[0].T.astype(np.uint8) * 255
    )
    with open_section(seismic) as section:
        np.testing.assert_array_equal(
            reassemble(data, 1, (205, 130), "test/images"), section.image(1)
        )
    train = kaggle.load_train(data, T)
    assert train.ids == [f"s00000r{r:03d}c{c:03d}" for r in range(3) for c in range(2)]
    padded = np.pad(mask[0].T, ((0, 98), (0, 72)), mode="reflect")  # 303 x 202
    np.testing.assert_array_equal(train.masks[-1], padded[202:, 101:])
    assert kaggle.test_ids(data)[0] == "s00001r000c000" and len(kaggle.test_ids(data)) == 12


def test_depths_are_tile_centres_in_the_surveys_units(tmp_path, drawn):
    amp, mask = cube_of(drawn, inlines=2)
    labels = np.stack([mask[0], np.full_like(mask[1], -1)])
    write_segy_cube(tmp_path / "s.sgy", amp, interval_us=2000)
    write_segy_cube(tmp_path / "l.sgy", labels, interval_us=2000)
    tile_survey(tmp_path / "s.sgy", tmp_path / "l.sgy", tmp_path / "sgy")
    depths = pd.read_csv(tmp_path / "sgy" / "depths.csv", dtype={"id": str}).set_index("id")["z"]
    assert depths["s00000r000c000"] == 50 * 2.0 and depths["s00001r002c001"] == 252 * 2.0
    np.save(tmp_path / "s.npy", amp)
    np.save(tmp_path / "l.npy", labels)
    tile_survey(tmp_path / "s.npy", tmp_path / "l.npy", tmp_path / "npy")
    depths = pd.read_csv(tmp_path / "npy" / "depths.csv", dtype={"id": str}).set_index("id")["z"]
    assert depths["s00000r001c000"] == 151.0  # sample index


def test_a_single_section_png_and_every_nth_test_slice(tmp_path, drawn):
    image, mask = drawn
    cv2.imwrite(str(tmp_path / "section.png"), image)
    labels = np.full(image.shape, -1, np.float32)
    labels[:, :202] = mask[:, :202]
    np.save(tmp_path / "labels.npy", labels)
    info = tile_survey(tmp_path / "section.png", tmp_path / "labels.npy", tmp_path / "d")
    assert info["tiles"]["train"] == 6 and info["tiles"]["test"] == 6
    with open_section(tmp_path / "section.png") as section:  # scaled as predict-section scales
        scaled = section.image(0)
    np.testing.assert_array_equal(kaggle.load_train(tmp_path / "d", T).images[0], scaled[:T, :T])
    amp, cube_mask = cube_of(drawn, inlines=6)
    labels = np.full_like(cube_mask, -1)
    labels[0] = cube_mask[0]
    np.save(tmp_path / "s.npy", amp)
    np.save(tmp_path / "l.npy", labels)
    info = tile_survey(tmp_path / "s.npy", tmp_path / "l.npy", tmp_path / "e", test_every=2)
    assert info["tiles"]["test"] == 2 * 6 and info["tiles"]["uninterpreted_skipped"] == 3 * 6
    assert {i[:6] for i in kaggle.test_ids(tmp_path / "e")} == {"s00002", "s00004"}


def test_known_layout_pairs_and_mosaic_tables(tmp_path, drawn):
    tiles = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "mosaic_id": [0, 0, 0, 1],
            "x": [0, 1, 0, 1],
            "y": [0, 0, 1, 0],
        }
    )
    pairs = known_pairs(tiles)
    assert sorted(zip(pairs["id_a"], pairs["id_b"], pairs["kind"])) == [
        ("a", "b", "lr"),
        ("a", "c", "tb"),
    ]
    assert (pairs["ratio"] == 0).all()
    amp, mask = cube_of(drawn, inlines=3)
    np.save(tmp_path / "s.npy", amp)
    np.save(tmp_path / "l.npy", np.stack([mask[0], np.full_like(mask[1], -1), mask[2]]))
    tile_survey(tmp_path / "s.npy", tmp_path / "l.npy", tmp_path / "d")
    m = tmp_path / "m"
    known_mosaic(str(tmp_path / "d"), T, m / "t.parquet", m / "p.parquet", m / "png", 2)
    table = pd.read_parquet(m / "t.parquet")
    assert len(table) == 18 and set(table["mosaic_id"]) == {0, 1, 2}
    row = table.set_index("id").loc["s00001r002c001"]
    assert (row["mosaic_id"], row["x"], row["y"]) == (1, 1, 2)
    assert len(pd.read_parquet(m / "p.parquet")) == 3 * 7  # 3x2 grid: 3 lr + 4 tb pairs
    assert sorted(p.name for p in (m / "png").glob("*.png")) == ["mosaic0000.png", "mosaic0001.png"]


def test_block_folds_keep_slices_whole_and_contiguous():
    slices = np.repeat(np.arange(0, 30, 3), 6)[np.random.default_rng(0).permutation(60)]
    folds = block_folds(slices, 5)
    for fold in range(5):  # two slices of six tiles each: 12 tiles, a contiguous run
        held = np.unique(slices[folds == fold])
        assert list(held) == [6 * fold, 6 * fold + 3]
    uneven = block_folds(np.array([9, 9, 9, 9, 1, 2, 5, 5]), 3)
    assert list(uneven) == [2, 2, 2, 2, 0, 0, 1, 1]  # cut nearest to 8/3 and 16/3 tiles
    assert sorted(set(block_folds(np.arange(4), 4))) == [0, 1, 2, 3]
    with pytest.raises(InputError, match="folds.n_folds: expected 2..3 .the interpreted slices"):
        block_folds(np.array([1, 1, 2, 3]), 4)


def test_survey_folds_group_neighbouring_slices(tmp_path, drawn):
    amp, mask = cube_of(drawn, inlines=9, crosslines=110, samples=101)
    labels = np.full_like(mask, -1)
    labels[::2] = mask[::2]  # inlines 0, 2, 4, 6, 8 interpreted, 2 tiles each
    np.save(tmp_path / "s.npy", amp)
    np.save(tmp_path / "l.npy", labels)
    tile_survey(tmp_path / "s.npy", tmp_path / "l.npy", tmp_path / "d")
    survey_folds(str(tmp_path / "d"), tmp_path / "folds.csv", 2)
    folds = pd.read_csv(tmp_path / "folds.csv", dtype={"id": str})
    by_slice = folds.groupby(folds["id"].str[:6])["fold"].agg(set).to_dict()
    assert by_slice == {"s00000": {0}, "s00002": {0}, "s00004": {1}, "s00006": {1}, "s00008": {1}}


@pytest.fixture(scope="module")
def blend(tmp_path_factory):
    """One tiny model fold at 32 px."""
    root = tmp_path_factory.mktemp("models") / "stage1"
    small = {**TINY_MODEL, "resize_to": 32, "pad_to": 32}
    torch.manual_seed(0)
    bundle = {
        "arch": "unet",
        "model": small,
        "tile": T,
        "snapshots": [build_model("unet", T, **small).state_dict()],
    }
    (root / "tiny" / "fold0").mkdir(parents=True)
    torch.save(bundle, root / "tiny" / "fold0" / "model.pt")
    return root


def test_volume_keeps_the_interpreters_labels_with_the_inputs_headers(tmp_path, drawn, blend):
    """predict-section with keep_labels: interpreted pixels are their labels in probability and
    mask, the rest predicted; the SEG-Y outputs carry the input's geometry and headers."""
    amp, mask = cube_of(drawn, inlines=3, crosslines=20, samples=24)
    labels = np.full_like(mask, -1)
    labels[0] = mask[0]
    labels[2, :5] = 1 - mask[2, :5]  # a part of an inline, opposite to the truth
    write_segy_cube(tmp_path / "s.sgy", amp)
    write_segy_cube(tmp_path / "l.sgy", labels)
    kw = {"stride": T, "threshold": 0.5, "runtime": resolve_runtime("cpu", "false", "false")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predict_section(blend, tmp_path / "s.sgy", tmp_path / "plain", **kw)
        predict_section(
            blend, tmp_path / "s.sgy", tmp_path / "kept", keep_labels=tmp_path / "l.sgy", **kw
        )
    finally:
        torch.set_num_threads(threads)
    plain = np.load(tmp_path / "plain" / "probability.npy")
    prob = np.load(tmp_path / "kept" / "probability.npy")
    known = labels >= 0
    np.testing.assert_array_equal(prob[known], labels[known])
    np.testing.assert_array_equal(prob[~known], plain[~known])
    kept_mask = np.load(tmp_path / "kept" / "mask.npy")
    np.testing.assert_array_equal(kept_mask[known], labels[known].astype(np.uint8))
    with (
        segyio.open(str(tmp_path / "s.sgy")) as src,
        segyio.open(str(tmp_path / "kept" / "probability.sgy")) as p,
        segyio.open(str(tmp_path / "kept" / "mask.sgy")) as m,
    ):
        assert list(p.ilines) == list(src.ilines) and list(m.xlines) == list(src.xlines)
        assert dict(p.header[25]) == dict(src.header[25]) == dict(m.header[25])
        assert p.text[0] == src.text[0]
        np.testing.assert_array_equal(segyio.tools.cube(p), prob)
        np.testing.assert_array_equal(segyio.tools.cube(m), kept_mask)
    params = json.loads((tmp_path / "kept" / "params.json").read_text())
    assert params["keep_labels"] == str(tmp_path / "l.sgy")


def bad_inputs(tmp_path, drawn):
    """``{case: (seismic, labels, expected message)}``, each input written under ``tmp_path``."""
    amp, mask = cube_of(drawn, inlines=3)
    np.save(tmp_path / "s.npy", amp)
    labels = np.full_like(mask, -1)
    labels[0] = mask[0]
    np.save(tmp_path / "shape.npy", labels[:, :100])
    value = labels.copy()
    value[1, 3, 4] = 2
    np.save(tmp_path / "value.npy", value)
    partial = np.full_like(mask, -1)
    partial[:, :50] = 0
    np.save(tmp_path / "partial.npy", partial)
    np.save(tmp_path / "small.npy", amp[:, :, :90])
    np.save(tmp_path / "small_l.npy", labels[:, :, :90])
    segyio.tools.from_array2D(str(tmp_path / "line.sgy"), amp[0])
    with segyio.open(str(tmp_path / "line.sgy"), "r+", ignore_geometry=True) as f:
        for i in range(f.tracecount):  # inline/crossline headers that repeat: no geometry
            f.header[i] = {segyio.TraceField.INLINE_3D: i % 3, segyio.TraceField.CROSSLINE_3D: 1}
    np.save(tmp_path / "line_l.npy", labels[0])
    s = tmp_path / "s.npy"
    return {
        "shape": (
            s,
            tmp_path / "shape.npy",
            r"shape.npy: expected labels of the seismic's shape"
            r" \(3, 130, 205\) .*s.npy\), got \(3, 100, 205\)",
        ),
        "value": (
            s,
            tmp_path / "value.npy",
            r"value.npy: expected label values 1 \(salt\), 0 \(not"
            r" salt\), -1 or NaN \(not interpreted\), got 2 in slice 1",
        ),
        "no train tile": (
            s,
            tmp_path / "partial.npy",
            "partial.npy: expected at least one fully"
            r" interpreted 101x101 tile .* found none \(9 partly interpreted\)",
        ),
        "small": (
            tmp_path / "small.npy",
            tmp_path / "small_l.npy",
            r"small.npy: expected slices"
            r" of at least one tile \(101x101 samples x traces\), got 90x130",
        ),
        "geometry": (
            tmp_path / "line.sgy",
            tmp_path / "line_l.npy",
            "line.sgy: expected a SEG-Y whose geometry segyio can infer .* or pass a .npy of shape",
        ),
    }


def test_each_bad_input_stops_with_one_line_and_writes_nothing(tmp_path, drawn):
    for case, (seismic, labels, message) in bad_inputs(tmp_path, drawn).items():
        with pytest.raises(InputError, match=message):
            tile_survey(seismic, labels, tmp_path / case)
        assert not (tmp_path / case).exists(), case
    seismic, labels, message = bad_inputs(tmp_path, drawn)["shape"]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "saltseg",
            "survey-tiles",
            "--seismic",
            str(seismic),
            "--labels",
            str(labels),
            "--out",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "saltseg survey-tiles: error:" in run.stderr and "(3, 100, 205)" in run.stderr
    assert not (tmp_path / "cli").exists()


def test_rle_of_train_csv_matches_the_mask_pngs(tmp_path, drawn):
    amp, mask = cube_of(drawn, inlines=2)
    np.save(tmp_path / "s.npy", amp)
    np.save(tmp_path / "l.npy", np.stack([mask[0], np.full_like(mask[1], -1)]))
    tile_survey(tmp_path / "s.npy", tmp_path / "l.npy", tmp_path / "d")
    table = pd.read_csv(tmp_path / "d" / "train.csv", dtype=str, keep_default_na=False)
    salt = [rle.decode(code, (T, T)).sum() for code in table["rle_mask"]]
    assert sum(salt) == int(np.pad(mask[0].T, ((0, 98), (0, 72)), mode="reflect").sum())


def test_the_synthetic_survey_labels_every_third_inline(tmp_path):
    from saltseg.survey.synthetic import generate_survey

    generate_survey(tmp_path / "own", seed=1, inlines=7, crosslines=40, samples=30, shift=3)
    with (
        segyio.open(str(tmp_path / "own" / "seismic.sgy")) as seismic,
        segyio.open(str(tmp_path / "own" / "labels.sgy")) as labels,
        segyio.open(str(tmp_path / "own" / "truth.sgy")) as truth,
    ):
        assert list(seismic.ilines) == list(range(1000, 1007)) and len(seismic.xlines) == 40
        assert list(seismic.samples[:2]) == [0.0, 4.0]
        marks, true = segyio.tools.cube(labels), segyio.tools.cube(truth)
        amp = segyio.tools.cube(seismic)
    assert marks.shape == (7, 40, 30) and set(np.unique(true)) == {0.0, 1.0}
    np.testing.assert_array_equal(marks[[0, 3, 6]], true[[0, 3, 6]])
    assert (marks[[1, 2, 4, 5]] == -1).all()
    np.testing.assert_array_equal(amp[1, :-3], amp[0, 3:])  # each inline 3 traces further on
    info = json.loads((tmp_path / "own" / "survey.json").read_text())
    assert info["interpreted_inlines"] == [1000, 1003, 1006]


def test_tiling_and_the_planning_check_import_no_torch():
    """The workflow checks the survey at every planning and the tiling runs in its own job:
    neither should pay torch's import (seconds, about 0.8 GB resident)."""
    code = (
        "import sys, saltseg.survey.tiling, saltseg.survey.steps, saltseg.survey.labels;"
        " print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_the_volume_report_draws_an_interpreted_slice_and_uninterpreted_ones(tmp_path, drawn):
    from saltseg.survey.report import pick_slices, plot_volume_slices

    assert pick_slices(np.array([1, 0, 0, 1, 0, 0, 1, 0, 0], bool), 3) == [3, 4, 5]
    assert pick_slices(np.zeros(4, bool), 2) == [1, 2]
    assert pick_slices(np.ones(4, bool), 3) == [2]
    amp, mask = cube_of(drawn, inlines=3, crosslines=120, samples=110)
    labels = np.full_like(mask, -1)
    labels[1] = mask[1]
    np.save(tmp_path / "s.npy", amp)
    np.save(tmp_path / "l.npy", labels)
    (tmp_path / "v").mkdir()
    np.save(tmp_path / "v" / "probability.npy", mask * 0.8)
    np.save(tmp_path / "v" / "mask.npy", mask.astype(np.uint8))
    plot_volume_slices(tmp_path / "s.npy", tmp_path / "l.npy", tmp_path / "v", tmp_path / "r.png")
    picture = cv2.imread(str(tmp_path / "r.png"))
    assert picture.shape[1] == 12 * 110 and picture.shape[0] > 3 * 1.5 * 110  # 3 rows
    np.save(tmp_path / "v" / "mask.npy", mask[:2].astype(np.uint8))
    with pytest.raises(InputError, match=r"mask.npy: expected the seismic's shape \(3, 120, 110\)"):
        plot_volume_slices(tmp_path / "s.npy", tmp_path / "l.npy", tmp_path / "v", tmp_path / "x")
