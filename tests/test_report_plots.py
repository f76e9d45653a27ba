"""Tests for the report's figures on tiny hand-made inputs (a 2x(3x4)-tile synthetic dataset)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from saltseg.data import kaggle
from saltseg.data.images import write_png
from saltseg.data.synthetic import generate
from saltseg.errors import InputError
from saltseg.io import MANIFEST
from saltseg.metrics import tile_scores
from saltseg.probs import write_probs
from saltseg.report import (
    plot_mosaics_before_after,
    plot_oof_gallery,
    plot_rule_runtimes,
    plot_training_curves,
)
from saltseg.report.mosaics import _section_panels

T = 101


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 tiles in two 3x4 sections; the first train tile is made blank (one grey value)."""
    out = tmp_path_factory.mktemp("report") / "data"
    generate(out, seed=0, sections=2, rows=3, cols=4, blank_fraction=0.0)
    first = kaggle.train_ids(out)[0]
    write_png(out / "train" / "images" / f"{first}.png", np.full((T, T), 128, np.uint8))
    return out


def _png(path) -> np.ndarray:
    picture = cv2.imread(str(path))
    assert picture is not None and picture.size > 0, path
    return picture


def _history(path, val_metric: list[float]) -> None:
    n = len(val_metric)
    frame = pd.DataFrame(
        {
            "phase": [0] * 3 + [1] * (n - 3),
            "epoch": list(range(3)) + list(range(n - 3)),
            "lr": np.geomspace(1e-2, 1e-4, n),
            "train_loss": np.linspace(1.2, 0.4, n),
            "seconds": 2.0,
            "images_per_s": 30.0,
            "val_loss": np.linspace(1.5, 0.6, n),
            "val_metric": val_metric,
        }
    )
    frame.to_csv(path, index=False)


def test_training_curves_draw_every_fold(tmp_path):
    _history(tmp_path / "h0.csv", [0.2, 0.3, 0.4, 0.5, 0.6])
    _history(tmp_path / "h1.csv", [0.1, np.nan, 0.3, 0.45, 0.5, 0.55])
    out = tmp_path / "curves.png"
    counts = plot_training_curves(
        {"fold0": tmp_path / "h0.csv", "fold1": tmp_path / "h1.csv"}, out, title="unet_r10"
    )
    assert counts == {"folds": 2, "epochs": 6}
    h, w = _png(out).shape[:2]
    assert 2.5 < w / h < 4


def test_training_curves_name_a_missing_column(tmp_path):
    pd.DataFrame({"epoch": [0], "lr": [0.1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match="bad.csv.*train_loss"):
        plot_training_curves({"fold0": tmp_path / "bad.csv"}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _oof(train: kaggle.Tiles) -> tuple[np.ndarray, dict[str, int]]:
    """Hand-made OOF maps and their empty/non-empty counts (positive: the tile has salt)."""
    probs = np.zeros((len(train), T, T), np.float32)
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    blank = kaggle.is_blank(train.images)
    for k, mask in enumerate(train.masks):
        salt = bool(mask.any())
        if blank[k]:
            probs[k] = 1.0  # forced empty: a blank tile is never predicted
            counts["fn" if salt else "tn"] += 1
        elif salt and k % 3 == 0:
            probs[k] = mask  # perfect
            counts["tp"] += 1
        elif salt and k % 3 == 1:
            counts["fn"] += 1  # salt missed (all zero)
        elif salt:
            probs[k] = 0.7 * np.roll(mask, 12, axis=1)  # shifted, a partial score
            counts["tp"] += 1
        elif k % 2:
            probs[k, 10:30, 10:30] = 0.9  # salt where there is none
            counts["fp"] += 1
        else:
            counts["tn"] += 1
    return probs, counts


def test_oof_gallery_sorts_worst_first_and_counts_empty_tiles(data, tmp_path):
    train = kaggle.load_train(data, T)
    assert kaggle.is_blank(train.images)[0]
    salt = train.masks.reshape(len(train), -1).any(1)
    assert salt.sum() >= 3 and (~salt).sum() >= 2, "the dataset should hold both kinds of tile"
    probs, expected = _oof(train)
    write_probs(tmp_path / "oof.parquet", train.ids, probs)
    out, counts_json = tmp_path / "gallery.png", tmp_path / "counts.json"
    result = plot_oof_gallery(
        data, T, tmp_path / "oof.parquet", 0.5, out, n=5, counts_json=counts_json
    )

    assert {k: result[k] for k in expected} == expected
    assert result["n_tiles"] == len(train) and result["shown"] == 5
    assert sorted(result["order"]) == sorted(train.ids)
    pred = probs > 0.5
    pred[0] = False
    scores = dict(zip(train.ids, tile_scores(train.masks, pred)))
    ordered = [scores[i] for i in result["order"]]
    assert ordered == sorted(ordered) and ordered[0] == 0 and ordered[-1] == 1
    assert result["mean_score"] == pytest.approx(np.mean(list(scores.values())))
    written = json.loads(counts_json.read_text())
    assert {k: written[k] for k in expected} == expected and "order" not in written
    h, w = _png(out).shape[:2]
    assert w > h > 100


def test_oof_gallery_needs_a_map_for_every_train_id(data, tmp_path):
    train = kaggle.load_train(data, T)
    write_probs(tmp_path / "oof.parquet", train.ids[1:], np.zeros((len(train) - 1, T, T)))
    with pytest.raises(InputError, match=train.ids[0]):
        plot_oof_gallery(data, T, tmp_path / "oof.parquet", 0.5, tmp_path / "g.png")


def test_mosaics_before_after_box_the_changed_tiles(data, tmp_path):
    layout = pd.read_csv(data / "mosaics.csv", dtype={"id": str})
    layout.to_parquet(tmp_path / "tiles.parquet", index=False)
    test = kaggle.load_test(data, T)
    before = np.zeros((len(test), T, T), np.float32)
    before[::2, :, 30:60] = 0.8  # a vertical band in every other test tile
    after = (before > 0.6).astype(np.float32)
    after[1, :, 70:] = 1.0  # post-processing filled one more tile
    write_probs(tmp_path / "before.parquet", test.ids, before)
    write_probs(tmp_path / "after.parquet", test.ids, after)
    out = tmp_path / "mosaics"
    args = (tmp_path / "tiles.parquet", data, T, tmp_path / "before.parquet")
    result = plot_mosaics_before_after(
        *args, tmp_path / "after.parquet", out, n=5, threshold_before=0.6
    )

    assert result["changed_tiles"] == 1
    assert result["mosaics"] == [0, 1]  # two sections of 12 tiles, both with test tiles
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, *result["files"]]
    h, w = _png(out / result["files"][0]).shape[:2]
    assert w > 2 * h  # two 4x3-tile panels side by side
    small = plot_mosaics_before_after(*args, tmp_path / "after.parquet", out, n=1)
    assert small["mosaics"] == [0]  # its own earlier output replaced: no png of n=5 is left
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, *small["files"]]


def test_rule_runtimes_sum_jobs_per_rule(tmp_path):
    bench = tmp_path / "benchmarks"
    for rule, name, seconds in [
        ("train", "m_fold0", [10.0]),
        ("train", "m_fold1", [4.0, 6.0]),  # repeat(): the mean counts
        ("folds", "folds", [1.5]),
    ]:
        (bench / rule).mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"s": seconds, "h:m:s": "0:00:01", "max_rss": 1.0})
        frame.to_csv(bench / rule / f"{name}.tsv", sep="\t", index=False)
    out = tmp_path / "runtimes.png"
    (bench / "stale").mkdir()  # a model no longer in config: not among the files given
    pd.DataFrame({"s": [99.0]}).to_csv(bench / "stale" / "old.tsv", sep="\t", index=False)
    totals = plot_rule_runtimes(sorted(bench.glob("[!s]*/*.tsv")), out)
    assert totals == {"train": 15.0, "folds": 1.5}
    assert list(totals) == ["train", "folds"]
    assert _png(out).shape[0] > 100
    with pytest.raises(InputError, match="got none"):
        plot_rule_runtimes([], tmp_path / "none.png")
    with pytest.raises(InputError, match="missing.tsv: expected a Snakemake benchmark TSV"):
        plot_rule_runtimes([bench / "train" / "missing.tsv"], tmp_path / "none.png")


def test_mosaics_are_drawn_as_sections_with_truth_and_oof(data, tmp_path):
    layout = pd.read_csv(data / "mosaics.csv", dtype={"id": str})
    layout.to_parquet(tmp_path / "tiles.parquet", index=False)
    train, test = kaggle.load_train(data, T), kaggle.load_test(data, T)
    write_probs(tmp_path / "test.parquet", test.ids, np.zeros((len(test), T, T), np.float32))
    oof = np.zeros((len(train), T, T), np.float32)
    oof[:, :, :50] = 0.9  # every train tile predicted salt on its left half
    write_probs(tmp_path / "oof.parquet", train.ids, oof)
    out = tmp_path / "mosaics"
    args = (tmp_path / "tiles.parquet", data, T, tmp_path / "test.parquet")
    result = plot_mosaics_before_after(
        *args, tmp_path / "test.parquet", out, n=1, oof=tmp_path / "oof.parquet"
    )
    assert result["files"] == ["mosaic0000.png", "section0000.png"]
    h, w = _png(out / "section0000.png").shape[:2]
    assert w > 3 * h  # three 4x3-tile panels side by side

    rows = layout[layout["mosaic_id"] == 0]
    images = dict(zip(train.ids + test.ids, np.concatenate([train.images, test.images])))
    predicted = {i: (oof[k] > 0.5).astype(np.uint8) for k, i in enumerate(train.ids)}
    predicted |= {i: np.zeros((T, T), np.uint8) for i in test.ids}
    plain, truth, pred = _section_panels(
        rows, images, dict(zip(train.ids, train.masks)), predicted, T, T
    )
    assert plain.shape == truth.shape == pred.shape
    x, y = rows[rows["id"].isin(train.ids)][["x", "y"]].iloc[0]
    x0, y0 = rows["x"].min(), rows["y"].min()
    cell = (
        slice((y - y0) * T + 5, (y - y0 + 1) * T - 5),
        slice((x - x0) * T + 5, (x - x0) * T + 45),
    )
    assert (pred[cell].astype(int) != plain[cell]).all(axis=-1).mean() > 0.9  # tinted cyan
    cell = (cell[0], slice((x - x0) * T + 55, (x - x0 + 1) * T - 5))
    np.testing.assert_array_equal(pred[cell], plain[cell])  # the right half: no prediction
