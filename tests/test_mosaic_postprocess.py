"""Tests for the mosaic post-processing rules on hand-made mosaics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saltseg.errors import InputError
from saltseg.mosaic.postprocess import apply, is_half_vertical, is_vertical

T = 101


def _vertical(left: int, right: int) -> np.ndarray:
    """Salt in columns [left, right) on every row."""
    mask = np.zeros((T, T), np.uint8)
    mask[:, left:right] = 1
    return mask


def _half_vertical(left: int, right: int) -> np.ndarray:
    """Salt in columns [left, right) on the lower 60 rows only, plus a blob near the top."""
    mask = np.zeros((T, T), np.uint8)
    mask[41:, left:right] = 1
    mask[5:10, 70:80] = 1
    return mask


def _column(ids: list[str], x: int = 0, mosaic: int = 0) -> pd.DataFrame:
    """A mosaic column: ids[k] at (x, k)."""
    return pd.DataFrame({"id": ids, "mosaic_id": mosaic, "x": x, "y": range(len(ids))})


def _empty() -> np.ndarray:
    return np.zeros((T, T), np.uint8)


def test_mask_shapes_are_classified():
    assert is_vertical(_vertical(10, 30)) and not is_half_vertical(_vertical(10, 30))
    assert is_half_vertical(_half_vertical(10, 30)) and not is_vertical(_half_vertical(10, 30))
    assert not is_vertical(_empty()) and not is_half_vertical(_empty())
    blob = _empty()
    blob[40:60, 40:60] = 1
    assert not is_vertical(blob) and not is_half_vertical(blob)
    assert is_vertical(np.ones((T, T), np.uint8))


def test_vertical_mask_propagates_down_through_consecutive_test_tiles():
    layout = _column(["a", "s", "t1", "t2", "t3"])
    layout = pd.concat([layout, _column(["far"], x=0).assign(y=7)])  # after a gap
    train = {"s": _vertical(10, 30)}
    test = {i: _empty() for i in ("a", "t1", "t2", "t3", "far")}
    masks, log = apply(layout, train, test)
    for i in ("t1", "t2", "t3"):
        np.testing.assert_array_equal(masks[i], _vertical(10, 30))
    assert not masks["a"].any() and not masks["far"].any()  # y=1 < 3: nothing above; gap stops
    assert log.values.tolist() == [[i, "s", "vertical_below"] for i in ("t1", "t2", "t3")]


def test_half_vertical_mask_propagates_its_bottom_row_down():
    layout = _column(["s", "t1", "t2"])
    train = {"s": _half_vertical(50, 90)}
    predicted = _empty()
    predicted[0:20, 0:20] = 1
    masks, log = apply(layout, train, {"t1": predicted, "t2": _empty()})
    for i in ("t1", "t2"):
        np.testing.assert_array_equal(masks[i], _vertical(50, 90))
    assert set(log["rule"]) == {"half_vertical_below"}


def test_walk_stops_at_the_next_train_tile():
    layout = _column(["s", "t1", "u", "t2"])
    train = {"s": _vertical(0, 10), "u": _empty()}
    masks, log = apply(layout, train, {"t1": _empty(), "t2": _empty()})
    assert masks["t1"].any() and not masks["t2"].any()
    assert log["id"].tolist() == ["t1"]


def test_above_rule_needs_row_three_or_deeper():
    deep = _column(["t0", "t1", "above", "s"])  # s at y = 3
    masks, log = apply(deep, {"s": _vertical(20, 40)}, {i: _empty() for i in ("t0", "t1", "above")})
    np.testing.assert_array_equal(masks["above"], _vertical(20, 40))
    assert not masks["t1"].any() and not masks["t0"].any()  # only the single tile above
    assert log.values.tolist() == [["above", "s", "vertical_above"]]

    shallow = _column(["t0", "above", "s"])  # s at y = 2
    masks, log = apply(shallow, {"s": _vertical(20, 40)}, {"t0": _empty(), "above": _empty()})
    assert not masks["above"].any() and log.empty


def test_half_vertical_source_gives_nothing_above():
    layout = _column(["t0", "t1", "t2", "above", "s"])
    test = {i: _empty() for i in ("t0", "t1", "t2", "above")}
    masks, log = apply(layout, {"s": _half_vertical(0, 50)}, test)
    assert not masks["above"].any() and log.empty


def test_below_wins_over_above():
    layout = _column(["x0", "x1", "top", "mid", "bottom"])
    train = {"top": _vertical(0, 10), "bottom": _vertical(80, 101)}  # bottom at y = 4
    masks, log = apply(layout, train, {"x0": _empty(), "x1": _empty(), "mid": _empty()})
    np.testing.assert_array_equal(masks["mid"], _vertical(0, 10))
    assert log.values.tolist() == [["mid", "top", "vertical_below"]]


def test_blank_tiles_are_untouched_and_stop_the_walk():
    layout = _column(["s", "blank", "t1"])
    masks, log = apply(
        layout, {"s": _vertical(0, 30)}, {"blank": _empty(), "t1": _empty()}, blank_ids={"blank"}
    )
    assert not masks["blank"].any() and not masks["t1"].any() and log.empty


def test_blank_train_tile_is_no_source():
    layout = _column(["s", "t1"])
    masks, log = apply(layout, {"s": _vertical(0, 30)}, {"t1": _empty()}, blank_ids={"s"})
    assert not masks["t1"].any() and log.empty


def test_train_tiles_never_change_and_inputs_are_not_modified():
    layout = _column(["s", "u", "t"])
    train = {"s": _vertical(0, 30), "u": _empty()}
    test = {"t": _empty()}
    masks, _ = apply(layout, train, test)
    assert set(masks) == {"t"}
    assert not train["u"].any() and not test["t"].any()


def test_other_columns_and_mosaics_are_independent():
    layout = pd.concat(
        [_column(["s", "t1"]), _column(["n0", "n1"], x=1), _column(["m0", "m1"], mosaic=1)]
    )
    test = {i: _empty() for i in ("t1", "n0", "n1", "m0", "m1")}
    masks, log = apply(layout, {"s": _vertical(0, 5)}, test)
    assert log["id"].tolist() == ["t1"]
    assert not any(masks[i].any() for i in ("n0", "n1", "m0", "m1"))


def test_bad_input_raises():
    with pytest.raises(InputError, match="missing"):
        apply(pd.DataFrame({"id": ["a"], "x": [0], "y": [0]}), {}, {})
    with pytest.raises(InputError, match="once"):
        apply(pd.concat([_column(["a"]), _column(["a"], x=1)]), {}, {})
    with pytest.raises(InputError, match="cell"):
        apply(pd.concat([_column(["a"]), _column(["b"])]), {}, {})
    with pytest.raises(InputError, match="both"):
        apply(_column(["a"]), {"a": _empty()}, {"a": _empty()})
