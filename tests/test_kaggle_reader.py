"""The Kaggle-layout reader: real files read back, and each kind of bad input named in one line."""

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from saltseg import rle
from saltseg.data import kaggle
from saltseg.data.images import read_image
from saltseg.errors import InputError


@pytest.fixture
def data(synth_dir, tmp_path):
    """A private copy of the synthetic dataset that a test may break."""
    return shutil.copytree(synth_dir, tmp_path / "data")


def one_line_error(func, *args) -> str:
    with pytest.raises(InputError) as err:
        func(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_train_and_test_read_back(data):
    train = kaggle.load_train(data, 101)
    table = pd.read_csv(data / "train.csv", keep_default_na=False)
    assert train.ids == table["id"].tolist()
    assert train.images.shape == (len(table), 101, 101) and train.images.dtype == np.uint8
    for i, code in enumerate(table["rle_mask"]):
        assert np.array_equal(train.masks[i], rle.decode(code, (101, 101)))
    test = kaggle.load_test(data, 101)
    assert test.ids == pd.read_csv(data / "sample_submission.csv")["id"].tolist()
    assert test.masks is None and len(test.depths) == len(test)


def test_rgb_and_16_bit_pngs_read_as_the_same_grey(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (101, 101), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([grey] * 3))
    cv2.imwrite(str(tmp_path / "deep.png"), grey.astype(np.uint16) * 257)
    assert np.array_equal(read_image(tmp_path / "rgb.png", 101), grey)
    assert np.array_equal(read_image(tmp_path / "deep.png", 101), grey)


def test_a_colour_tile_becomes_its_luminance_not_one_channel(tmp_path):
    bgr = np.zeros((101, 101, 3), np.uint8)
    bgr[..., 1], bgr[..., 2] = 100, 200  # blue 0, green 100, red 200
    cv2.imwrite(str(tmp_path / "colour.png"), bgr)
    grey = read_image(tmp_path / "colour.png", 101)
    luminance = 0.299 * 200 + 0.587 * 100 + 0.114 * 0  # ITU-R BT.601, 118.5
    assert np.all(np.abs(grey.astype(float) - luminance) <= 1)  # not 0, the blue channel


def test_missing_data_dir(tmp_path):
    message = one_line_error(kaggle.load_train, tmp_path / "nowhere", 101)
    assert "nowhere" in message and "Kaggle layout" in message


def test_extra_and_missing_columns(data):
    table = pd.read_csv(data / "train.csv", keep_default_na=False)
    table.assign(extra=1).to_csv(data / "train.csv", index=False)
    assert "expected columns id,rle_mask, got id,rle_mask,extra" in one_line_error(
        kaggle.load_train, data, 101
    )
    pd.read_csv(data / "depths.csv")[["id"]].to_csv(data / "depths.csv", index=False)
    assert "depths.csv: expected columns id,z" in one_line_error(kaggle.load_test, data, 101)


def test_missing_depth(data):
    depths = pd.read_csv(data / "depths.csv")
    first_test = pd.read_csv(data / "sample_submission.csv")["id"][0]
    depths[depths["id"] != first_test].to_csv(data / "depths.csv", index=False)
    assert f"id {first_test!r} has none" in one_line_error(kaggle.load_test, data, 101)


def test_duplicated_id(data):
    table = pd.read_csv(data / "train.csv", keep_default_na=False)
    pd.concat([table, table.iloc[:1]]).to_csv(data / "train.csv", index=False)
    assert "unique ids" in one_line_error(kaggle.load_train, data, 101)


def test_wrong_size_tile(data):
    first = pd.read_csv(data / "sample_submission.csv")["id"][0]
    cv2.imwrite(str(data / "test" / "images" / f"{first}.png"), np.zeros((100, 101), np.uint8))
    message = one_line_error(kaggle.load_test, data, 101)
    assert f"{first}.png" in message and "expected a 101x101 tile, got 100x101" in message


def test_corrupt_png(data):
    first = pd.read_csv(data / "train.csv")["id"][0]
    path = data / "train" / "images" / f"{first}.png"
    path.write_bytes(path.read_bytes()[:60])
    assert "corrupt" in one_line_error(kaggle.load_train, data, 101)


def test_mask_that_does_not_match_its_image(data):
    first = pd.read_csv(data / "train.csv")["id"][0]
    cv2.imwrite(str(data / "train" / "masks" / f"{first}.png"), np.zeros((50, 50), np.uint8))
    message = one_line_error(kaggle.load_train, data, 101)
    assert f"masks/{first}.png" in message and "its image's size" in message


def test_mask_png_that_disagrees_with_rle(data):
    table = pd.read_csv(data / "train.csv", keep_default_na=False)
    first = table["id"][0]
    flipped = 1 - rle.decode(table["rle_mask"][0], (101, 101))
    cv2.imwrite(str(data / "train" / "masks" / f"{first}.png"), flipped * 255)
    assert "the mask that train.csv encodes" in one_line_error(kaggle.load_train, data, 101)


def test_rle_that_runs_out_of_the_tile(data):
    table = pd.read_csv(data / "train.csv", keep_default_na=False)
    table.loc[0, "rle_mask"] = "10200 5"
    table.to_csv(data / "train.csv", index=False)
    shutil.rmtree(data / "train" / "masks")
    message = one_line_error(kaggle.load_train, data, 101)
    assert f"train.csv id {table['id'][0]}" in message and "inside the 101x101 tile" in message


def test_empty_train_csv(data):
    (data / "train.csv").write_text("id,rle_mask\n")
    assert "at least one row" in one_line_error(kaggle.load_train, data, 101)


def test_blank_tiles_are_detected():
    images = np.stack([np.full((4, 4), 7), np.eye(4) * 9]).astype(np.uint8)
    assert kaggle.is_blank(images).tolist() == [True, False]
