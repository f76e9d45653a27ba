"""Tile a labelled survey into the Kaggle layout that the rest of the workflow reads.

Every slice along ``axis`` (depth down the rows, scaled to uint8 as ``predict-section`` scales
it) is reflection-padded on the bottom and right to whole tiles and cut into ``tile`` x ``tile``
tiles, one slice at a time (memory: a slice, not the survey). The labels are padded the same way,
so a tile at the edge is as interpreted as the samples it holds. A tile is

- a train tile when every pixel is interpreted (0 or 1): ``train/images``, ``train/masks`` and
  ``train.csv`` (RLE);
- a test tile when no pixel is (all -1/NaN), on every ``test_every``-th slice (slice index
  divisible by it): ``test/images`` and ``sample_submission.csv``;
- otherwise (partly interpreted) dropped: it is neither trained on nor a pseudo-label source.
  The volume prediction still covers its pixels.

Also written: ``depths.csv`` (the tile centre's depth in the survey's units: SEG-Y sample times
or depths, else sample indices), ``mosaics.csv`` (``id, mosaic_id, x, y``: the slice index and
the tile's column and row in it, the exact layout) and ``survey.json`` (what was made, and how).
Tile ids are ``s<slice>r<row>c<col>``, zero-padded.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from saltseg import rle
from saltseg.errors import InputError
from saltseg.io import WriteError, atomic_dir, write_csv, write_json
from saltseg.sections.io import PERCENTILES
from saltseg.survey.labels import UNINTERPRETED, Survey, open_survey

MOSAICS = "mosaics.csv"
SURVEY_JSON = "survey.json"


def pad_to_tiles(array: np.ndarray, tile: int) -> np.ndarray:
    """``array`` (H, W) reflection-padded on the bottom and right to whole tiles."""
    h, w = array.shape
    return np.pad(array, ((0, -h % tile), (0, -w % tile)), mode="reflect")


def tile_id(k: int, row: int, col: int) -> str:
    """The id of the tile at ``row``, ``col`` of slice ``k``."""
    return f"s{k:05d}r{row:03d}c{col:03d}"


def cut_tiles(array: np.ndarray, tile: int) -> np.ndarray:
    """``(rows, cols, tile, tile)`` tiles of a padded slice (a view)."""
    rows, cols = array.shape[0] // tile, array.shape[1] // tile
    return array.reshape(rows, tile, cols, tile).swapaxes(1, 2)


def tile_survey(
    seismic: str | Path,
    labels: str | Path,
    out: str | Path,
    axis: str = "inline",
    tile: int = 101,
    test_every: int = 1,
    percentiles: tuple[float, float] = PERCENTILES,
) -> dict[str, Any]:
    """Write the Kaggle layout of a labelled survey into ``out`` (atomically; see module doc).

    Returns:
        ``survey.json``'s content plus ``seconds`` and ``samples_per_s``.

    Raises:
        InputError: bad input (see :func:`saltseg.survey.labels.open_survey`), a label value
            other than 0/1/-1/NaN, no fully interpreted tile or no uninterpreted one; nothing
            is written then.
    """
    if test_every < 1:
        raise InputError("survey.test_every", f"expected an integer >= 1, got {test_every}")
    start = time.perf_counter()
    with open_survey(seismic, labels, axis, tile, percentiles) as survey, atomic_dir(out) as tmp:
        counts, tables = _write_tiles(survey, tmp, test_every)
        if not counts["train"]:
            raise InputError(
                labels,
                f"expected at least one fully interpreted {tile}x{tile} tile (labels 0/1"
                f" throughout), found none ({counts['partial']} partly interpreted)",
            )
        if not counts["test"]:
            raise InputError(
                labels,
                "expected at least one uninterpreted tile (all -1/NaN) to predict and learn"
                " pseudo-labels from, found none",
            )
        train, test, depths, mosaics = (pd.DataFrame(rows) for rows in tables)
        write_csv(tmp / "train.csv", train)
        write_csv(tmp / "sample_submission.csv", test)
        write_csv(tmp / "depths.csv", depths)
        write_csv(tmp / MOSAICS, mosaics)
        first, step, unit = survey.depth_axis()
        info = {
            "seismic": str(seismic),
            "labels": str(labels),
            "shape": list(survey.seismic.shape),
            "axis": None if survey.seismic.slice_axis is None else axis,
            "slices": survey.n_slices,
            "slice_shape": list(survey.seismic.slice_shape),
            "tile": tile,
            "test_every": test_every,
            "scaling": {"percentiles": list(percentiles), **asdict(survey.seismic.scaling)},
            "depth": {"first": first, "step": step, "unit": unit},
            "tiles": counts,
        }
        write_json(tmp / SURVEY_JSON, info)
        samples = int(np.prod(survey.seismic.shape))
    seconds = time.perf_counter() - start
    return {**info, "seconds": seconds, "samples_per_s": samples / seconds}


def _write_png(path: Path, image: np.ndarray) -> None:
    """One tile PNG, written in place: the folder being written is the unit of atomicity (a
    temporary name per file would list the growing folder at every write)."""
    if not cv2.imwrite(str(path), np.ascontiguousarray(image, dtype=np.uint8)):
        raise WriteError(path, OSError("cv2.imwrite failed"))


def _write_tiles(survey: Survey, out: Path, test_every: int) -> tuple[dict, tuple[list, ...]]:
    """Tile every slice into ``out``; return the counts and the four tables' rows."""
    for folder in ("train/images", "train/masks", "test/images"):
        (out / folder).mkdir(parents=True)
    tile = survey.tile
    first, step, _ = survey.depth_axis()
    counts = {"train": 0, "test": 0, "partial": 0, "uninterpreted_skipped": 0}
    train, test, depths, mosaics = [], [], [], []
    for k in range(survey.n_slices):
        images = cut_tiles(pad_to_tiles(survey.seismic.image(k), tile), tile)
        marks = cut_tiles(pad_to_tiles(survey.labels_of(k), tile), tile)
        known = (marks != UNINTERPRETED).reshape(*marks.shape[:2], -1)
        for row, col in np.ndindex(*images.shape[:2]):
            name = tile_id(k, row, col)
            if known[row, col].all():
                mask = marks[row, col].astype(np.uint8)
                _write_png(out / "train" / "images" / f"{name}.png", images[row, col])
                _write_png(out / "train" / "masks" / f"{name}.png", mask * 255)
                train.append({"id": name, "rle_mask": rle.encode(mask)})
                counts["train"] += 1
            elif known[row, col].any():
                counts["partial"] += 1
                continue
            elif k % test_every:
                counts["uninterpreted_skipped"] += 1
                continue
            else:
                _write_png(out / "test" / "images" / f"{name}.png", images[row, col])
                test.append({"id": name, "rle_mask": "1 1"})
                counts["test"] += 1
            depths.append({"id": name, "z": first + (row * tile + tile // 2) * step})
            mosaics.append({"id": name, "mosaic_id": k, "x": col, "y": row})
    return counts, (train, test, depths, mosaics)
