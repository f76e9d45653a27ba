import numpy as np
import pandas as pd
import pytest

from saltseg.data.folds import coverage_class, group_folds, make_folds, read_folds
from saltseg.errors import InputError
from saltseg.steps.fold_split import mosaic_of


def test_depth_folds_are_balanced_and_stratified():
    ids = [f"t{i:03d}" for i in range(103)]
    depths = np.random.default_rng(1).uniform(0, 1000, 103)
    folds = make_folds(ids, depths, n_folds=5, seed=0)
    assert folds["id"].tolist() == ids
    sizes = folds["fold"].value_counts().sort_index().tolist()
    assert sum(sizes) == 103 and max(sizes) - min(sizes) <= 1
    assert sorted(set(folds["fold"])) == [0, 1, 2, 3, 4]
    # every block of 5 consecutive depths holds 5 different folds
    ranked = folds["fold"].to_numpy()[np.argsort(depths)]
    for start in range(0, 100, 5):
        assert sorted(ranked[start : start + 5]) == [0, 1, 2, 3, 4]


def test_same_seed_same_folds_other_seed_differs():
    ids = [str(i) for i in range(50)]
    depths = np.arange(50.0)
    a = make_folds(ids, depths, 5, seed=7)
    b = make_folds(ids, depths, 5, seed=7)
    c = make_folds(ids, depths, 5, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_coverage_stratification_spreads_each_class():
    n = 60
    masks = np.zeros((n, 10, 10), np.uint8)
    masks[:20] = 0  # 20 empty
    masks[20:40, :5] = 1  # 20 half covered -> class 5
    masks[40:] = 1  # 20 full -> class 10
    assert coverage_class(masks)[[0, 20, 40]].tolist() == [0, 5, 10]
    folds = make_folds([str(i) for i in range(n)], np.zeros(n), 4, 0, "coverage", masks)
    for block in (slice(0, 20), slice(20, 40), slice(40, 60)):
        assert folds["fold"][block].value_counts().tolist() == [5, 5, 5, 5]


def test_bad_fold_settings():
    with pytest.raises(InputError, match="n_folds"):
        make_folds(["a", "b"], np.zeros(2), 3, 0)
    with pytest.raises(InputError, match="stratify"):
        make_folds(["a", "b"], np.zeros(2), 2, 0, "size")


def test_read_folds_checks_range(tmp_path):
    path = tmp_path / "folds.csv"
    pd.DataFrame({"id": ["a", "b"], "fold": [0, 7]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="folds 0..4"):
        read_folds(path, 5)


@pytest.mark.parametrize("fold", [7, -1])
def test_a_fold_outside_n_folds_is_refused_before_anything_is_read(tmp_path, fold):
    from saltseg.steps.fold_split import split

    with pytest.raises(
        InputError, match=rf"--fold: expected a fold in 0..4 \(n_folds 5\), got {fold}"
    ):
        split(str(tmp_path / "no-data"), str(tmp_path / "no-folds.csv"), fold, 5, 101)


def test_mosaic_folds_keep_mosaics_whole_and_balance_size_and_salt():
    rng = np.random.default_rng(4)
    sizes = [40, 30, 20, 12, 10, 8, 5, 5, 3, 2] + [1] * 85  # mosaics, then lone tiles
    groups = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(groups)
    n = len(groups)
    salt = rng.random(n) < 0.6
    masks = np.zeros((n, 10, 10), np.uint8)
    masks[salt, :, : rng.integers(1, 10)] = 1
    depths = rng.uniform(0, 1000, n)
    ids = [f"t{i}" for i in range(n)]
    folds = make_folds(ids, depths, 4, seed=0, stratify="mosaic", masks=masks, groups=groups)
    fold = folds["fold"].to_numpy()
    for g in range(len(sizes)):  # every mosaic in one fold
        assert len(set(fold[groups == g])) == 1
    counts = np.bincount(fold, minlength=4)
    assert counts.sum() == n and counts.max() - counts.min() <= 2  # 57 or so each
    salt_share = np.array([salt[fold == f].mean() for f in range(4)])
    assert np.abs(salt_share - salt.mean()).max() < 0.06
    mean_depth = np.array([depths[fold == f].mean() for f in range(4)])
    assert np.abs(mean_depth - depths.mean()).max() < 60  # of a 0..1000 spread
    again = make_folds(ids, depths, 4, seed=0, stratify="mosaic", masks=masks, groups=groups)
    pd.testing.assert_frame_equal(folds, again)


def test_mosaic_folds_by_hand():
    """Sizes 3, 2, 1, 1, 1 into 2 folds of target 4: the 3 opens fold 0, the 2 goes to fold 1,
    and the lone tiles fill fold 1, then fold 0 (every tile alike: empty, same depth)."""
    groups = np.array([0, 0, 0, 1, 1, 2, 3, 4])
    masks = np.zeros((8, 4, 4), np.uint8)
    folds = group_folds(groups, np.zeros(8), masks, n_folds=2, seed=0)
    assert folds[:5].tolist() == [0, 0, 0, 1, 1]
    assert np.bincount(folds).tolist() == [4, 4]
    with pytest.raises(InputError, match="folds.n_folds: expected at most 5 .*mosaic count"):
        group_folds(groups, np.zeros(8), masks, n_folds=6, seed=0)


def test_mosaic_folds_from_the_assembled_layout(synth_dir, tmp_path):
    """Through the CLI on synthetic data: the layout comes from the mosaic step, and no
    assembled mosaic is split across folds."""
    from saltseg.cli import main

    layout = tmp_path / "tiles.parquet"
    args = ["--data-dir", str(synth_dir)]
    mosaic = ["mosaic", *args, "--tiles", str(layout), "--pairs", str(tmp_path / "pairs.parquet")]
    assert main([*mosaic, "--png-dir", str(tmp_path / "png"), "--draw", "0"]) == 0
    out = tmp_path / "folds.csv"
    folds = ["folds", *args, "--out", str(out), "--n-folds", "2", "--stratify", "mosaic"]
    assert main([*folds, "--layout", str(layout)]) == 0
    table = pd.read_csv(out, dtype={"id": str}).merge(pd.read_parquet(layout), on="id")
    assert (table.groupby("mosaic_id")["fold"].nunique() == 1).all()
    assert sorted(table["fold"].unique()) == [0, 1]
    assert main([*folds]) == 2  # no layout: one line naming --layout
    pairs = tmp_path / "pairs.parquet"  # a mosaic table without mosaic_id: one line naming it
    assert main([*folds, "--layout", str(pairs)]) == 2
    with pytest.raises(InputError, match="pairs.parquet: expected the mosaic rule's parquet with"):
        mosaic_of(str(pairs), ["a"])
