"""The postprocess step's OOF check on a hand-made mosaic: applied when it helps, never when not."""

import json

import numpy as np
import pandas as pd
import pytest

from saltseg import rle, steps
from saltseg.data.images import write_png
from saltseg.probs import read_probs, write_probs

VERTICAL = np.zeros((101, 101), np.uint8)
VERTICAL[:, :40] = 1  # every row the same: a vertical salt wall


def make_dataset(root, truths: dict[str, np.ndarray], test_ids: list[str]):
    """A Kaggle-layout directory with noise images, the given train masks and test ids."""
    rng = np.random.default_rng(0)
    for split, ids in [("train", list(truths)), ("test", test_ids)]:
        for i in ids:
            write_png(root / split / "images" / f"{i}.png", rng.integers(0, 255, (101, 101)))
    pd.DataFrame({"id": list(truths), "rle_mask": [rle.encode(m) for m in truths.values()]}).to_csv(
        root / "train.csv", index=False
    )
    ids = list(truths) + test_ids
    pd.DataFrame({"id": ids, "z": range(len(ids))}).to_csv(root / "depths.csv", index=False)
    pd.DataFrame({"id": test_ids, "rle_mask": "1 1"}).to_csv(
        root / "sample_submission.csv", index=False
    )


def run(tmp_path, truths, oof, folds, layout, test_maps, enabled=True):
    data = tmp_path / "data"
    make_dataset(data, truths, list(test_maps))
    write_probs(tmp_path / "oof.parquet", list(truths), np.stack([oof[i] for i in truths]))
    write_probs(tmp_path / "test.parquet", list(test_maps), np.stack(list(test_maps.values())))
    pd.DataFrame({"id": list(folds), "fold": list(folds.values())}).to_csv(
        tmp_path / "folds.csv", index=False
    )
    pd.DataFrame(layout, columns=["id", "mosaic_id", "x", "y"]).to_parquet(
        tmp_path / "tiles.parquet"
    )
    (tmp_path / "cv.json").write_text('{"threshold": 0.5}')
    out = tmp_path / "out"
    steps.postprocess(
        data,
        101,
        tmp_path / "tiles.parquet",
        tmp_path / "folds.csv",
        2,
        tmp_path / "oof.parquet",
        tmp_path / "test.parquet",
        tmp_path / "cv.json",
        "fixed",
        enabled,
        out / "masks.parquet",
        out / "report.json",
        out / "changes.csv",
    )
    report = json.loads((out / "report.json").read_text())
    ids, masks = read_probs(out / "masks.parquet")
    return report, dict(zip(ids, masks)), pd.read_csv(out / "changes.csv")


def test_rules_apply_when_they_help_the_oof(tmp_path):
    # column: a (vertical, train) above b (vertical truth, predicted empty) above t (test)
    truths = {"a": VERTICAL, "b": VERTICAL}
    oof = {"a": VERTICAL * 0.9, "b": np.zeros((101, 101))}
    layout = [("a", 0, 0, 0), ("b", 0, 0, 1), ("t", 0, 0, 2)]
    report, masks, changes = run(
        tmp_path, truths, oof, {"a": 0, "b": 1}, layout, {"t": np.zeros((101, 101))}
    )
    assert report["oof_before"] == pytest.approx(0.5) and report["oof_after"] == 1.0
    assert report["gain"] == pytest.approx(0.5) and report["applied"]
    assert np.array_equal(masks["t"], VERTICAL)  # the wall carried down into the test tile
    assert changes[["id", "source_id", "rule"]].values.tolist() == [["t", "b", "vertical_below"]]


def test_rules_never_apply_when_they_lower_the_oof(tmp_path):
    # b's truth is empty under a vertical a: carrying the wall down would be wrong
    truths = {"a": VERTICAL, "b": np.zeros((101, 101), np.uint8)}
    oof = {"a": VERTICAL * 0.9, "b": np.zeros((101, 101))}
    layout = [("a", 0, 0, 0), ("b", 0, 0, 1), ("t", 1, 0, 0), ("u", 1, 0, 1)]
    truths["c"] = VERTICAL
    oof["c"] = VERTICAL * 0.9
    layout += [("c", 2, 0, 0), ("t2", 2, 0, 1)]
    test = {"t": np.zeros((101, 101)), "u": np.zeros((101, 101)), "t2": np.zeros((101, 101))}
    report, masks, changes = run(tmp_path, truths, oof, {"a": 0, "b": 1, "c": 0}, layout, test)
    assert report["gain"] < 0 and not report["applied"]
    assert report["test_changed_tiles"] == 0 and changes.empty
    assert masks["t2"].sum() == 0  # would have been changed had the rules been applied


def test_switched_off_rules_only_binarise(tmp_path):
    truths = {"a": VERTICAL, "b": VERTICAL}
    oof = {"a": VERTICAL * 0.9, "b": np.zeros((101, 101))}
    layout = [("a", 0, 0, 0), ("b", 0, 0, 1), ("t", 0, 0, 2)]
    report, masks, _ = run(
        tmp_path,
        truths,
        oof,
        {"a": 0, "b": 1},
        layout,
        {"t": np.full((101, 101), 0.7)},
        enabled=False,
    )
    assert report["gain"] > 0 and not report["applied"]
    assert masks["t"].min() == 1.0  # 0.7 > 0.5, untouched by the rules
