"""Draw one mosaic as a PNG: tiles pasted at their cells, salt outlined in red."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from saltseg.errors import InputError
from saltseg.io import atomic_path

RED = (0, 0, 255)  # BGR, as OpenCV writes it
GAP_GREY = 40


def render_mosaic(
    layout_rows: pd.DataFrame,
    images: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray] | None = None,
    tint: float = 0.25,
) -> np.ndarray:
    """Paste a mosaic's tiles into one BGR picture, salt tinted and outlined in red.

    Args:
        layout_rows: rows of one mosaic with columns id, x, y (tile units, y down).
        images: 2-D uint8 tile per id (all the same shape).
        masks: 0/1 mask per id; tiles without one get no overlay.
        tint: opacity of the red tint over salt.

    Returns:
        (rows*H, cols*W, 3) uint8 picture; empty cells are dark grey.

    Raises:
        InputError: a column is missing, the layout is empty, or an id has no image.
    """
    missing = {"id", "x", "y"} - set(layout_rows.columns)
    if missing:
        raise InputError("layout", f"expected columns id, x, y; missing {sorted(missing)}")
    if layout_rows.empty:
        raise InputError("layout", "expected at least one tile to draw, got none")
    absent = [i for i in layout_rows["id"] if i not in images]
    if absent:
        raise InputError("images", f"expected an image for every tile, id {absent[0]!r} has none")
    h, w = np.asarray(images[layout_rows["id"].iloc[0]]).shape
    x0, y0 = int(layout_rows["x"].min()), int(layout_rows["y"].min())
    cols = int(layout_rows["x"].max()) - x0 + 1
    rows = int(layout_rows["y"].max()) - y0 + 1
    grey = np.full((rows * h, cols * w), GAP_GREY, np.uint8)
    salt = np.zeros((rows * h, cols * w), np.uint8)
    for tid, x, y in zip(layout_rows["id"], layout_rows["x"], layout_rows["y"]):
        cell = np.s_[(y - y0) * h : (y - y0 + 1) * h, (x - x0) * w : (x - x0 + 1) * w]
        grey[cell] = images[tid]
        if masks is not None and tid in masks:
            salt[cell] = np.asarray(masks[tid]) > 0
    picture = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if salt.any():
        red = np.zeros_like(picture)
        red[:] = RED
        on = salt.astype(bool)
        picture[on] = (picture[on] * (1 - tint) + red[on] * tint).astype(np.uint8)
        contours, _ = cv2.findContours(salt, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, contours, -1, RED, 1)
    return picture


def draw_mosaic(
    layout_rows: pd.DataFrame,
    images: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray] | None,
    path: str | Path,
) -> None:
    """Write :func:`render_mosaic` of ``layout_rows`` to the PNG ``path``, atomically.

    Args:
        layout_rows: rows of one mosaic with columns id, x, y.
        images: 2-D uint8 tile per id.
        masks: 0/1 mask per id, or None for no overlay.
        path: output ``.png``.
    """
    picture = render_mosaic(layout_rows, images, masks)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), picture):
            raise OSError(f"{path}: could not write PNG")
