"""Pseudo-label selection checked on hand-made probability maps, and the file read back."""

import logging

import numpy as np
import pandas as pd
import pytest

from saltseg.probs import write_probs
from saltseg.pseudo import (
    confidence,
    empty_share,
    label_counts,
    read_pseudo,
    salt_confidence,
    select_balanced,
    select_confident,
    select_phalanx,
    write_pseudo,
)


def maps(*values_and_shares) -> np.ndarray:
    """One 10x10 map per (decisive_value, share): that share of pixels decisive, rest at 0.5."""
    out = []
    for value, share in values_and_shares:
        m = np.full(100, 0.5)
        m[: int(share * 100)] = value
        out.append(m.reshape(10, 10))
    return np.stack(out)


def test_confidence_is_the_share_of_decisive_pixels():
    probs = maps((0.1, 0.95), (0.9, 0.5), (0.19, 1.0), (0.2, 1.0))
    assert confidence(probs).tolist() == [0.95, 0.5, 1.0, 0.0]  # 0.2 itself is not < 0.2


def test_confident_selection_skips_blank_and_unsure_tiles_and_balances_folds():
    probs = maps(*[(0.05, 1.0)] * 10, (0.05, 0.85), (0.95, 0.92))
    blank = np.zeros(12, bool)
    blank[3] = True
    table = select_confident(probs, blank, n_folds=3, seed=0)
    assert table["index"].tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9, 11]
    assert table["confidence"].iloc[-1] == pytest.approx(0.92)
    assert sorted(np.bincount(table["fold"], minlength=3)) == [3, 3, 4]
    again = select_confident(probs, blank, n_folds=3, seed=0)
    assert table.equals(again)


def test_phalanx_is_stricter_for_small_masks_and_drops_half_the_empty_tiles():
    probs = np.zeros((8, 100, 100))  # 10,000 px maps: a 50 px mask is "small" (20-500 px)
    probs[:4] = 0.01  # 4 empty, fully confident tiles: 2 are dropped
    probs[4, :5, :10] = 0.99  # 50 px mask, confidence 1.0: kept
    probs[5, :5, :10] = 0.99
    probs[5, 50, : 200 // 2] = 0.5  # 100 undecided px: confidence 0.99 -> still kept
    probs[6, :5, :10] = 0.99
    probs[6, 50:52, :] = 0.5  # 200 undecided px: confidence 0.98 < 0.99 for a small mask
    probs[7, :60, :] = 0.99
    probs[7, 90:92, :] = 0.5  # large mask, confidence 0.98 >= 0.97: kept
    table = select_phalanx(probs, np.zeros(8, bool), n_folds=2, seed=1)
    kept = set(table["index"])
    assert {4, 5, 7} <= kept and 6 not in kept
    assert len(kept & {0, 1, 2, 3}) == 2


def test_pseudo_file_round_trip(tmp_path):
    masks = (np.random.default_rng(0).random((3, 101, 101)) > 0.5).astype(np.uint8)
    table = select_confident(np.zeros((3, 101, 101)), np.zeros(3, bool), 2, 0)
    write_pseudo(tmp_path / "p.parquet", ["a", "b", "c"], masks, table)
    frame, back = read_pseudo(tmp_path / "p.parquet")
    assert frame["id"].tolist() == ["a", "b", "c"]
    assert frame["fold"].tolist() == table["fold"].tolist()
    assert np.array_equal(back, masks)


def test_read_masks_are_writable_arrays(tmp_path):
    masks = np.ones((2, 4, 4), np.uint8)
    table = pd.DataFrame({"confidence": [1.0, 1.0], "fold": [0, 1]})
    write_pseudo(tmp_path / "p.parquet", ["a", "b"], masks, table)
    assert read_pseudo(tmp_path / "p.parquet")[1].flags.writeable


def test_salt_confidence_counts_only_the_mask_and_its_border():
    probs = np.full((2, 40, 40), 0.01)
    masks = np.zeros((2, 40, 40), np.uint8)
    masks[0, 10:20] = 1  # a band across the tile; with a 2 px border rows 8..21 count: 560 px
    probs[0, 10:20] = 0.99
    probs[0, 20:22] = 0.5  # 80 undecided px in the border
    probs[0, 30:] = 0.5  # 400 undecided px outside it: they do not count
    probs[1, 30:, :] = 0.5  # an empty mask: the whole tile counts, 400 of 1600 px undecided
    conf = salt_confidence(probs, masks, border=2)
    assert conf[0] == pytest.approx(1 - 80 / 560)
    assert conf[1] == pytest.approx(0.75)
    assert confidence(probs)[0] == pytest.approx(1 - 480 / 1600)


def test_balanced_selection_keeps_no_more_empty_labels_than_the_labelled_share():
    n = 12
    probs = np.full((n, 30, 30), 0.02)
    masks = np.zeros((n, 30, 30), np.uint8)
    for k in range(4):  # 4 decided salt tiles
        masks[k, :10] = 1
        probs[k, :10] = 0.97
    masks[4, :10] = 1  # an undecided salt tile
    probs[4, :10] = 0.6
    for k in range(5, n):  # 7 empty tiles, tile k with k - 5 undecided px: 5 the most confident
        probs[k, 29, : k - 5] = 0.5
    blank = np.zeros(n, bool)
    blank[0] = True
    table = select_balanced(probs, masks, blank, empty_share=0.4, n_folds=2, seed=0)
    # 3 salt tiles (0 blank, 4 undecided) allow 3 * 0.4 / 0.6 = 2 empty ones, the most confident
    assert table["index"].tolist() == [1, 2, 3, 5, 6]
    sizes = masks.reshape(n, -1).sum(axis=1)[table["index"]]
    assert table["confidence"].iloc[0] == 1.0
    for size in set(sizes):  # each size bucket dealt evenly into the 2 folds
        counts = np.bincount(table["fold"][sizes == size], minlength=2)
        assert counts.max() - counts.min() <= 1


def test_the_pseudo_step_cuts_at_the_teachers_tuned_threshold(synth_dir, tmp_path):
    """Test maps of 0.4 on the true salt of the labelled tiles' OOF: the cut tuned on them
    (under 0.4) keeps the salt that 0.5 would lose."""
    from saltseg.cli import main
    from saltseg.data import kaggle

    train = kaggle.load_train(synth_dir, 101)
    test = kaggle.load_test(synth_dir, 101)
    truth = kaggle.load_test_truth(synth_dir, 101)[1]
    oof = tmp_path / "oof.parquet"
    write_probs(oof, train.ids, np.where(train.masks > 0, 0.4, 0.0))
    write_probs(tmp_path / "test.parquet", test.ids, np.where(truth > 0, 0.4, 0.0))
    out = tmp_path / "pseudo.parquet"
    args = ["pseudo", "--data-dir", str(synth_dir), "--probs", str(tmp_path / "test.parquet")]
    args += ["--n-folds", "2", "--min-confidence", "0.0", "--out", str(out)]
    assert main([*args, "--cut-oof", str(oof)]) == 0
    table, masks = read_pseudo(out)
    by_id = dict(zip(test.ids, truth))
    assert sum(m.any() for m in masks) > 0
    assert all(np.array_equal(m, by_id[i]) for i, m in zip(table["id"], masks))
    assert main(args) == 0  # no teacher cut: 0.5, every label empty, so none kept
    table, masks = read_pseudo(out)
    assert len(table) == 0


def test_the_empty_share_counts_labelled_tiles_that_are_not_blank():
    masks = np.zeros((5, 4, 4), np.uint8)
    masks[:2, 0, 0] = 1  # 2 salt tiles, 3 empty ones of which 1 blank
    blank = np.array([False, False, False, False, True])
    assert empty_share(masks, blank) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_few_labels_of_every_size_reach_every_fold(seed):
    """7 decided salt tiles, each of another size bucket (10 to 9,000 px): dealt into 5 folds,
    each fold gets one or two (a deal restarting at fold 0 per bucket gave fold 0 all 7)."""
    sizes = [10, 100, 1000, 3000, 6000, 9000, 400]
    masks = np.zeros((len(sizes), 101, 101), np.uint8)
    for k, size in enumerate(sizes):
        masks[k].reshape(-1)[:size] = 1
    probs = masks.astype(np.float32)
    table = select_balanced(probs, masks, np.zeros(len(sizes), bool), 0.0, n_folds=5, seed=seed)
    assert table["index"].tolist() == list(range(len(sizes)))
    assert sorted(np.bincount(table["fold"], minlength=5)) == [1, 1, 1, 2, 2]


def fold_teacher_run(synth_dir, tmp_path, oof_ids: list[str] | None = None, fold: int = 0):
    """The pseudo step on fold ``fold``'s test maps (the test truth), its cut tuned on OOF maps
    (the train truth) of ``oof_ids`` (default: every train tile); returns the labels' masks."""
    from saltseg.cli import main
    from saltseg.data import kaggle

    train = kaggle.load_train(synth_dir, 101)
    test = kaggle.load_test(synth_dir, 101)
    truth = kaggle.load_test_truth(synth_dir, 101)[1]
    keep = [train.ids.index(i) for i in (oof_ids or train.ids)]
    oof = tmp_path / "oof.parquet"
    write_probs(oof, [train.ids[k] for k in keep], train.masks[keep].astype(np.float32))
    maps = tmp_path / f"stage1/unet/fold{fold}/test.parquet"
    write_probs(maps, test.ids, truth.astype(np.float32))
    out = tmp_path / "pseudo.parquet"
    args = ["pseudo", "--data-dir", str(synth_dir), "--probs", str(maps), "--n-folds", "2"]
    assert main([*args, "--cut-oof", str(oof), "--out", str(out)]) == 0
    return read_pseudo(out)


def test_the_empty_label_cap_is_the_share_of_the_tiles_the_cut_stands_on(synth_dir, tmp_path):
    """The cap on empty labels counts the train tiles of the other folds' OOF maps (the tiles
    the cut is tuned on), not the labels' own fold: OOF maps of salt tiles only allow none."""
    from saltseg.data import kaggle

    train = kaggle.load_train(synth_dir, 101)
    salty = [i for i, m in zip(train.ids, train.masks) if m.any()]
    everyone = fold_teacher_run(synth_dir, tmp_path)[1]
    assert (~everyone.any(axis=(1, 2))).sum() > 0  # the labelled share allows empty labels
    salt_only = fold_teacher_run(synth_dir, tmp_path, salty)[1]
    assert len(salt_only) and salt_only.reshape(len(salt_only), -1).any(axis=1).all()


def test_a_fold_with_few_labels_is_warned_of_naming_the_selection(synth_dir, tmp_path, caplog):
    from saltseg.data import kaggle
    from saltseg.pseudo import FEW_LABELS, read_selection

    train = kaggle.load_train(synth_dir, 101)
    salty = [i for i, m in zip(train.ids, train.masks) if m.any()]  # no empty labels: fewer
    with caplog.at_level("WARNING", logger="saltseg.steps.labels"):
        table, _ = fold_teacher_run(synth_dir, tmp_path, salty, fold=1)
    assert (table["fold"] == 1).all() and 0 < len(table) < FEW_LABELS
    selection = read_selection(tmp_path / "pseudo.parquet")
    assert selection.startswith("balanced at min_confidence 0.9, the fold-1 models cut at Cut(")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"fewer than {FEW_LABELS} for a fold (fold 1: {len(table)})" in warning
    assert selection in warning and "pseudo.teacher: ensemble" in warning


def test_label_counts_of_no_labels_and_of_some():
    """A fold that gets no pseudo-labels counts none (it crashed a stage-2 job: numpy cannot
    infer -1 in a reshape of an empty array)."""
    assert label_counts(np.zeros((0, 101, 101), bool)) == {"salt": 0, "empty": 0}
    masks = np.zeros((3, 4, 4), bool)
    masks[1, 2, 2] = True
    assert label_counts(masks) == {"salt": 1, "empty": 2}
