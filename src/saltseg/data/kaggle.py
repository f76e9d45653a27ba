"""Read a dataset in Kaggle layout and check it on the way in.

Layout: ``train.csv`` (id, rle_mask), ``depths.csv`` (id, z), ``sample_submission.csv`` (id,
rle_mask), ``train/images/<id>.png``, ``train/masks/<id>.png`` (optional; ``train.csv`` is the
truth when absent), ``test/images/<id>.png``. Every problem raises :class:`InputError` naming the
file and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg import rle
from saltseg.data.images import read_image, read_mask
from saltseg.errors import InputError

#: the test truth beside ``sample_submission.csv`` (the synthetic data's; Kaggle's solution file):
#: read by scoring only (:func:`load_test_truth`), never by training, tuning or selection
SOLUTION = "solution.csv"


@dataclass
class Tiles:
    """Tiles: ids, images ``(N, H, W) uint8``, masks (same shape, or None), depths ``(N,)``."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None
    depths: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> Tiles:
        """The tiles at ``index`` (integer positions or a boolean mask)."""
        index = np.asarray(index)
        ids = [self.ids[i] for i in np.arange(len(self))[index]]
        masks = None if self.masks is None else self.masks[index]
        return Tiles(ids, self.images[index], masks, self.depths[index])


def read_table(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """Read a CSV whose columns must be exactly ``columns``, with unique non-empty string ids."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "expected a CSV file, found none")
    try:
        frame = pd.read_csv(path, dtype={"id": str, "rle_mask": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]  # one line
        expected = f"expected CSV with columns {','.join(columns)} ({reason})"
        raise InputError(path, expected) from None
    if list(frame.columns) != columns:
        raise InputError(
            path, f"expected columns {','.join(columns)}, got {','.join(frame.columns)}"
        )
    if frame.empty:
        raise InputError(path, "expected at least one row, got none")
    if (frame["id"] == "").any():
        raise InputError(
            path, f"expected an id on every row, row {int(np.argmax(frame['id'] == ''))} has none"
        )
    dup = frame["id"][frame["id"].duplicated()]
    if len(dup):
        raise InputError(path, f"expected unique ids, {dup.iloc[0]!r} appears more than once")
    return frame


def read_depths(data_dir: str | Path, ids: list[str]) -> np.ndarray:
    """Depths ``z`` (float) for ``ids``, from ``depths.csv``."""
    path = Path(data_dir) / "depths.csv"
    depths = read_table(path, ["id", "z"]).set_index("id")["z"]
    z = pd.to_numeric(depths, errors="coerce")
    missing = [i for i in ids if i not in z.index]
    if missing:
        raise InputError(path, f"expected a depth for every tile, id {missing[0]!r} has none")
    values = z.loc[ids].to_numpy(dtype=float)
    if np.isnan(values).any():
        raise InputError(
            path, f"expected numeric z, id {ids[int(np.argmax(np.isnan(values)))]!r} has none"
        )
    return values


def _read_images(folder: Path, ids: list[str], size: int) -> np.ndarray:
    if not folder.is_dir():
        raise InputError(folder, "expected a directory of <id>.png tiles, found none")
    return (
        np.stack([read_image(folder / f"{i}.png", size) for i in ids])
        if ids
        else np.zeros((0, size, size), np.uint8)
    )


def train_ids(data_dir: str | Path) -> list[str]:
    """The labelled ids, in ``train.csv`` order (none of them a test id, see :func:`_apart`)."""
    ids = read_table(Path(data_dir) / "train.csv", ["id", "rle_mask"])["id"].tolist()
    _apart(Path(data_dir), ids, None)
    return ids


def test_ids(data_dir: str | Path) -> list[str]:
    """The ids to predict, in ``sample_submission.csv`` order (none of them a train id)."""
    ids = read_table(Path(data_dir) / "sample_submission.csv", ["id", "rle_mask"])["id"].tolist()
    _apart(Path(data_dir), None, ids)
    return ids


def _apart(data_dir: Path, train: list[str] | None, test: list[str] | None) -> None:
    """Raise :class:`InputError` when an id is both a train id and a test id.

    Every reader of either list checks it against the other (when that one is there), so the
    first step that reads the data (the fold split) stops before anything trains, rather than a
    later step meeting the id twice.
    """
    train_csv, test_csv = data_dir / "train.csv", data_dir / "sample_submission.csv"
    try:  # the other list, when missing or broken, is named by the reader that needs it
        if train is None:
            train = read_table(train_csv, ["id", "rle_mask"])["id"].tolist()
        if test is None:
            test = read_table(test_csv, ["id", "rle_mask"])["id"].tolist()
    except InputError:
        return
    both = set(train).intersection(test)
    if both:
        first = next(i for i in train if i in both)
        raise InputError(
            train_csv,
            f"expected train and test ids apart, {first!r} is in both train.csv and the test list"
            f" ({test_csv.name}; {len(both)} such ids)",
        )


def load_train(data_dir: str | Path, size: int) -> Tiles:
    """Labelled tiles with masks; mask PNGs, when present, must match both image and RLE."""
    data_dir = _existing_dir(data_dir)
    table = read_table(data_dir / "train.csv", ["id", "rle_mask"])
    ids = table["id"].tolist()
    _apart(data_dir, ids, None)
    images = _read_images(data_dir / "train" / "images", ids, size)
    masks = np.stack(
        [
            rle.decode(code, (size, size), where=f"{data_dir / 'train.csv'} id {i}")
            for i, code in zip(ids, table["rle_mask"])
        ]
    )
    mask_dir = data_dir / "train" / "masks"
    if mask_dir.is_dir():
        for k, i in enumerate(ids):
            path = mask_dir / f"{i}.png"
            png = read_mask(path)
            if png.shape != images[k].shape:
                raise InputError(
                    path,
                    f"expected a mask of its image's size {size}x{size}, got {png.shape}",
                )
            if not np.array_equal(png, masks[k]):
                raise InputError(path, "expected the mask that train.csv encodes for this id")
    return Tiles(ids, images, masks, read_depths(data_dir, ids))


def load_test(data_dir: str | Path, size: int) -> Tiles:
    """Unlabelled tiles listed in ``sample_submission.csv``."""
    data_dir = _existing_dir(data_dir)
    ids = test_ids(data_dir)
    images = _read_images(data_dir / "test" / "images", ids, size)
    return Tiles(ids, images, None, read_depths(data_dir, ids))


def load_test_truth(data_dir: str | Path, size: int) -> tuple[list[str], np.ndarray] | None:
    """``(ids, masks)`` of ``solution.csv`` in ``sample_submission.csv`` order, or None without
    one. Only scoring reads it (``summary``, benches): no step that trains or tunes may.

    Raises:
        InputError: the file does not hold one decodable mask per test id.
    """
    path = Path(data_dir) / SOLUTION
    if not path.is_file():
        return None
    ids = test_ids(data_dir)
    return ids, read_rle_masks(path, ids, size, exact=True)


def read_rle_masks(path: str | Path, ids: list[str], size: int, exact: bool = False) -> np.ndarray:
    """The masks ``(N, size, size)`` of an ``id,rle_mask`` CSV (a submission, a solution) in the
    order of ``ids``; with ``exact`` the file may hold no other id.

    Raises:
        InputError: an id without a mask (or, with ``exact``, a mask of another id), or an RLE
            that does not decode.
    """
    table = read_table(path, ["id", "rle_mask"]).set_index("id")["rle_mask"]
    missing = [i for i in ids if i not in table.index]
    extra = [i for i in table.index if i not in set(ids)] if exact else []
    if missing or extra:
        raise InputError(
            path, f"expected one mask per test id, {(missing or extra)[0]!r} does not match"
        )
    return np.stack([rle.decode(table[i], (size, size), where=f"{path} id {i}") for i in ids])


def is_blank(images: np.ndarray) -> np.ndarray:
    """True for tiles of one single grey value (the blank tiles of the competition data)."""
    flat = images.reshape(len(images), -1)
    return flat.min(axis=1) == flat.max(axis=1)


def _existing_dir(data_dir: str | Path) -> Path:
    path = Path(data_dir)
    if not path.is_dir():
        raise InputError(path, "expected a data directory in Kaggle layout, found none")
    return path
