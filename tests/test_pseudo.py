"""Pseudo-label selection checked on hand-made probability maps, and the file read back."""

import numpy as np
import pandas as pd
import pytest

from saltseg.pseudo import (
    confidence,
    read_pseudo,
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
