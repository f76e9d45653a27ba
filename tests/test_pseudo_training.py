"""Pseudo-labels enter training only as test tiles, dealt to folds, and are averaged from models."""

import numpy as np
import pandas as pd
import pytest

from saltseg import steps
from saltseg.data import kaggle
from saltseg.errors import InputError
from saltseg.probs import write_probs
from saltseg.pseudo import read_pseudo, write_pseudo


def write_labels(path, ids, folds):
    masks = np.zeros((len(ids), 101, 101), np.uint8)
    masks[:, :10] = 1
    table = pd.DataFrame({"confidence": np.ones(len(ids)), "fold": folds})
    write_pseudo(path, ids, masks, table)


def test_pseudo_tiles_are_test_images_with_their_masks(synth_dir, tmp_path):
    test = kaggle.load_test(synth_dir, 101)
    ids = [test.ids[3], test.ids[0]]
    write_labels(tmp_path / "p.parquet", ids, [1, 0])
    tiles, folds = steps.pseudo_tiles(synth_dir, str(tmp_path / "p.parquet"), 101, set())
    assert tiles.ids == ids and folds.tolist() == [1, 0]
    assert np.array_equal(tiles.images, test.images[[3, 0]])
    assert tiles.masks[:, :10].all() and not tiles.masks[:, 10:].any()


def test_a_labelled_tile_among_pseudo_labels_is_refused(synth_dir, tmp_path):
    train = kaggle.load_train(synth_dir, 101)
    write_labels(tmp_path / "p.parquet", [train.ids[0]], [0])
    with pytest.raises(InputError, match="expected test tiles only, .* is a labelled tile"):
        steps.pseudo_tiles(synth_dir, str(tmp_path / "p.parquet"), 101, set(train.ids))


def test_pseudo_labels_come_from_the_mean_of_the_models(synth_dir, tmp_path):
    test = kaggle.load_test(synth_dir, 101)
    n = len(test)
    sure = np.zeros((n, 101, 101), np.float32)
    sure[:, :50] = 1.0
    unsure = np.full((n, 101, 101), 0.5, np.float32)
    write_probs(tmp_path / "a.parquet", test.ids, sure)
    write_probs(tmp_path / "b.parquet", test.ids, unsure)
    parts = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    # mean: 0.75 on the top half, 0.25 below: no pixel is decisive (< 0.2 or > 0.8)
    steps.pseudo_labels(synth_dir, 101, parts, "confident", 0.9, 5, 0, str(tmp_path / "p.parquet"))
    assert len(read_pseudo(tmp_path / "p.parquet")[0]) == 0
    steps.pseudo_labels(
        synth_dir, 101, parts[:1], "confident", 0.9, 5, 0, str(tmp_path / "q.parquet")
    )
    table, masks = read_pseudo(tmp_path / "q.parquet")
    blank = kaggle.is_blank(test.images)
    assert len(table) == n - blank.sum() and masks[:, :50].all() and not masks[:, 50:].any()
