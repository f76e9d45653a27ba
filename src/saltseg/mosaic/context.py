"""Neighbour context: each tile with a margin of ``m`` px taken from its neighbours in the mosaic.

A window is the tile reflect-padded by ``m`` (as without context), with every side and corner
overwritten by the neighbour that the mosaic layout puts there, when that neighbour is trusted:

- a side neighbour is trusted when its seam in ``pairs.parquet`` has a ratio below
  ``max_ratio`` (a sure match; NaN ratios, seams without evidence, are not trusted);
- a corner neighbour is trusted when one of the two side paths to it is trusted on both seams.

Only neighbour *images* go into the model's input. :func:`windows` also lays labels out the same
way (``masks`` of the training tiles), so that an augmentation that shifts the window keeps the
labels aligned with it; the loss is cut to the central tile.

The cache (``Context``) holds, for every tile id, its window and the positions of its trusted
neighbours (``neighbours[i, dy + 1, dx + 1]``, -1 where there is none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from saltseg.data.kaggle import Tiles
from saltseg.errors import InputError
from saltseg.io import atomic_path
from saltseg.mosaic.assemble import STEP


def trusted_neighbours(
    ids: list[str], layout: pd.DataFrame, pairs: pd.DataFrame, max_ratio: float
) -> np.ndarray:
    """``(N, 3, 3)`` positions in ``ids`` of each tile's trusted neighbours (-1: none).

    Args:
        ids: the tiles, in the order of the result.
        layout: the mosaic rule's ``tiles.parquet`` (id, mosaic_id, x, y).
        pairs: the mosaic rule's ``pairs.parquet`` (id_a, id_b, kind, ratio, ...).
        max_ratio: a side seam is trusted when its ratio is below this.
    """
    index = {tile_id: i for i, tile_id in enumerate(ids)}
    placed = set(layout["id"])
    missing = [i for i in ids if i not in placed]
    if missing:
        raise InputError(
            "layout", f"expected a mosaic cell for every tile, {missing[0]!r} has none"
        )
    sure = pairs[np.nan_to_num(pairs["ratio"].to_numpy(float), nan=np.inf) < max_ratio]
    side = np.full((len(ids), 3, 3), -1, np.int64)
    for a, b, kind in zip(sure["id_a"], sure["id_b"], sure["kind"]):
        if a not in index or b not in index:
            continue
        dx, dy = STEP[kind]
        side[index[a], 1 + dy, 1 + dx] = index[b]
        side[index[b], 1 - dy, 1 - dx] = index[a]
    cell = {
        (m, x, y): index[i]
        for i, m, x, y in layout[["id", "mosaic_id", "x", "y"]].itertuples(index=False)
        if i in index
    }
    where = layout.set_index("id").loc[ids, ["mosaic_id", "x", "y"]].to_numpy()
    out = side.copy()
    out[:, 1, 1] = np.arange(len(ids))
    for i, (m, x, y) in enumerate(where):
        for dy in (-1, 1):
            for dx in (-1, 1):
                corner = cell.get((m, x + dx, y + dy), -1)
                via_x, via_y = side[i, 1, 1 + dx], side[i, 1 + dy, 1]
                if corner < 0:
                    continue
                if (via_x >= 0 and side[via_x, 1 + dy, 1] == corner) or (
                    via_y >= 0 and side[via_y, 1, 1 + dx] == corner
                ):
                    out[i, 1 + dy, 1 + dx] = corner
    return out


def windows(
    arrays: np.ndarray, neighbours: np.ndarray, margin: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """``(len(rows), T + 2m, T + 2m)`` windows of ``arrays[rows]`` from their neighbours.

    Args:
        arrays: ``(N, T, T)`` images or masks, in the order of ``neighbours``.
        neighbours: :func:`trusted_neighbours` over the same N tiles.
        margin: ``m`` in pixels, ``0 <= m < T``.
        rows: the tiles to window (default all).
    """
    side = arrays.shape[-1]
    if not 0 <= margin < side:
        raise InputError("context.margin", f"expected 0 <= margin < {side}, got {margin}")
    rows = np.arange(len(arrays)) if rows is None else np.asarray(rows)
    pad = ((0, 0), (margin, margin), (margin, margin))
    out = np.pad(arrays[rows], pad, mode="reflect")
    if not margin:
        return out
    # for an offset d: the neighbour's pixels and where they land in the window, per axis
    spans = {
        -1: (slice(side - margin, side), slice(0, margin)),
        0: (slice(0, side), slice(margin, margin + side)),
        1: (slice(0, margin), slice(margin + side, 2 * margin + side)),
    }
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx == dy == 0:
                continue
            source = neighbours[rows, 1 + dy, 1 + dx]
            have = np.flatnonzero(source >= 0)
            (src_y, dst_y), (src_x, dst_x) = spans[dy], spans[dx]
            out[have, dst_y, dst_x] = arrays[source[have]][:, src_y, src_x]
    return out


@dataclass
class Context:
    """The cached windows of one dataset: ids, windows ``(N, W, W) uint8``, neighbours, margin."""

    ids: list[str]
    windows: np.ndarray
    neighbours: np.ndarray
    margin: int
    max_ratio: float

    def write(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    ids=np.array(self.ids, dtype=str),
                    windows=self.windows,
                    neighbours=self.neighbours,
                    margin=self.margin,
                    max_ratio=self.max_ratio,
                )

    @classmethod
    def read(cls, path: str | Path) -> Context:
        try:
            with np.load(path) as f:
                return cls(
                    [str(i) for i in f["ids"]],
                    f["windows"],
                    f["neighbours"],
                    int(f["margin"]),
                    float(f["max_ratio"]),
                )
        except (OSError, ValueError, KeyError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise InputError(
                path, f"expected a context file of the context rule ({reason})"
            ) from None

    def rows(self, ids: list[str]) -> np.ndarray:
        """Positions of ``ids`` in the cache."""
        position = {tile_id: i for i, tile_id in enumerate(self.ids)}
        missing = [i for i in ids if i not in position]
        if missing:
            raise InputError(
                "context", f"expected a window for every tile, {missing[0]!r} has none"
            )
        return np.array([position[i] for i in ids], np.int64)

    def apply(self, tiles: Tiles, labels: bool = False) -> Tiles:
        """``tiles`` with their windows as images, and, with ``labels``, their masks as windows
        whose margins come from the neighbours among ``tiles`` itself (reflected elsewhere)."""
        rows = self.rows(tiles.ids)
        masks = tiles.masks
        if labels and masks is not None:
            local = {r: i for i, r in enumerate(rows)}  # cache position -> position in tiles
            own = np.vectorize(lambda r: local.get(r, -1), otypes=[np.int64])
            neighbours = own(self.neighbours[rows]) if len(rows) else self.neighbours[rows]
            masks = windows(masks, neighbours, self.margin)
        return Tiles(tiles.ids, self.windows[rows], masks, tiles.depths)


def build_context(
    ids: list[str],
    images: np.ndarray,
    layout: pd.DataFrame,
    pairs: pd.DataFrame,
    margin: int,
    max_ratio: float,
) -> Context:
    """Windows of every tile from the mosaic layout and its trusted seams."""
    neighbours = trusted_neighbours(ids, layout, pairs, max_ratio)
    return Context(ids, windows(images, neighbours, margin), neighbours, margin, max_ratio)
