import numpy as np
import pytest

from saltseg import rle
from saltseg.errors import InputError


def test_encode_is_column_major_and_one_indexed():
    mask = np.zeros((3, 3), np.uint8)
    mask[0, 0] = 1  # pixel 1
    mask[1:3, 1] = 1  # pixels 5, 6 (second column, rows 2-3)
    mask[:, 2] = 1  # pixels 7, 8, 9
    assert rle.encode(mask) == "1 1 5 5"


def test_empty_mask_is_empty_string_and_full_mask_one_run():
    assert rle.encode(np.zeros((101, 101))) == ""
    assert rle.encode(np.ones((101, 101))) == "1 10201"


@pytest.mark.parametrize("code", ["", None, float("nan")])
def test_decode_empty(code):
    assert rle.decode(code, (4, 4)).sum() == 0


def test_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = (rng.random((101, 101)) > rng.random()).astype(np.uint8)
        assert np.array_equal(rle.decode(rle.encode(mask), (101, 101)), mask)


def test_decode_known_string():
    mask = rle.decode("2 3 9 1", (3, 3))
    expected = np.array([[0, 1, 0], [1, 0, 0], [1, 0, 1]], np.uint8)
    assert np.array_equal(mask, expected)


@pytest.mark.parametrize(
    "code, message",
    [
        ("10 5", "inside the 3x3 tile"),
        ("0 2", "inside the 3x3 tile"),
        ("1 2 3", "odd count"),
        ("a b", "integer pairs"),
    ],
)
def test_decode_rejects_bad_runs(code, message):
    with pytest.raises(InputError, match=message) as err:
        rle.decode(code, (3, 3), where="train.csv id x")
    assert str(err.value).startswith("train.csv id x: ")
    assert "\n" not in str(err.value)
