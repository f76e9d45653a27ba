import numpy as np
import pandas as pd
import pytest

from saltseg.data.folds import coverage_class, make_folds, read_folds
from saltseg.errors import InputError


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
