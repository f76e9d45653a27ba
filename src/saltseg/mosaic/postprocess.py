"""The winners' mosaic post-processing: carry vertical train masks into the test tiles beside them.

Rules, on a layout ``id, mosaic_id, x, y`` (y grows downward):

- A train mask is *vertical* when it is non-empty and all its rows are equal (a fully salt tile
  counts), and *half-vertical* when it is not vertical but its lower ``HALF`` rows all equal one
  non-empty row.
- ``below``: from such a train tile, walk down its mosaic column through the tiles directly below
  (y + 1, y + 2, ...). Every test tile reached gets the source's bottom row repeated as its mask.
  The walk stops at the first empty cell, train tile (its own truth wins, and it is a source of
  its own when vertical), blank tile or tile of unknown split, as the winners' chain did through
  consecutive tiles only.
- ``above``: a *vertical* source at row ``y >= MIN_ROW_FOR_ABOVE`` (y as given; :func:`assemble`
  puts each mosaic's top row at 0) also gives its top row, repeated, to the single test tile
  directly above it, unless a ``below`` walk already set that tile (``below`` has precedence).
  Walks never overlap, since each stops at the next train tile.

Only test tiles change; blank test tiles (constant images) keep their masks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from saltseg.errors import InputError

HALF = 50
MIN_ROW_FOR_ABOVE = 3
LOG_COLUMNS = ["id", "source_id", "rule"]


def is_vertical(mask: np.ndarray) -> bool:
    """True when ``mask`` is non-empty and every row equals the first."""
    mask = np.asarray(mask)
    return bool(mask.any() and (mask == mask[:1]).all())


def is_half_vertical(mask: np.ndarray, rows: int = HALF) -> bool:
    """True when the lower ``rows`` rows equal one non-empty row but the mask is not vertical."""
    lower = np.asarray(mask)[-rows:]
    return bool(lower[-1].any() and (lower == lower[-1:]).all() and not is_vertical(mask))


def _repeat(row: np.ndarray, height: int) -> np.ndarray:
    """A mask of ``height`` copies of ``row`` (uint8 0/1)."""
    return np.repeat((np.asarray(row) > 0).astype(np.uint8)[None, :], height, axis=0)


def _grid(layout: pd.DataFrame) -> dict[tuple[int, int, int], str]:
    """(mosaic_id, x, y) -> id, checking the layout's columns and uniqueness."""
    missing = {"id", "mosaic_id", "x", "y"} - set(layout.columns)
    if missing:
        raise InputError(
            "layout", f"expected columns id, mosaic_id, x, y; missing {sorted(missing)}"
        )
    if layout["id"].duplicated().any():
        dup = layout["id"][layout["id"].duplicated()].iloc[0]
        raise InputError("layout", f"expected each id once, {dup!r} appears more than once")
    keys = list(
        zip(layout["mosaic_id"].astype(int), layout["x"].astype(int), layout["y"].astype(int))
    )
    if len(set(keys)) != len(keys):
        raise InputError("layout", "expected at most one tile per (mosaic_id, x, y) cell")
    return dict(zip(keys, layout["id"].astype(str)))


def apply(
    layout: pd.DataFrame,
    train_masks: Mapping[str, np.ndarray],
    test_masks: Mapping[str, np.ndarray],
    blank_ids: set[str] | frozenset[str] = frozenset(),
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Apply the ``below`` and ``above`` rules (module docstring) to the test masks.

    Args:
        layout: mosaic layout with columns id, mosaic_id, x, y.
        train_masks: 2-D 0/1 mask per train id (the truth).
        test_masks: 2-D 0/1 predicted mask per test id.
        blank_ids: ids of blank tiles (never changed, never sources, stop a walk).

    Returns:
        (masks, log): a new dict with every test mask (uint8 0/1; unchanged ones copied), and a
        DataFrame with columns id, source_id, rule (``"vertical_below"``,
        ``"half_vertical_below"`` or ``"vertical_above"``), one row per changed test tile, in
        layout order.

    Raises:
        InputError: a layout column is missing, an id or cell repeats, or an id is both train
            and test.
    """
    both = set(train_masks) & set(test_masks)
    if both:
        raise InputError("masks", f"expected train and test ids apart, {sorted(both)[0]!r} is both")
    grid = _grid(layout)
    out = {i: (np.asarray(m) > 0).astype(np.uint8) for i, m in test_masks.items()}
    changed: dict[str, tuple[str, str]] = {}

    def open_test(tile: str | None) -> bool:
        return tile is not None and tile in out and tile not in blank_ids

    sources = sorted(
        (cell, tid) for cell, tid in grid.items() if tid in train_masks and tid not in blank_ids
    )
    for (m, x, y), src in sources:
        mask = np.asarray(train_masks[src])
        if not (is_vertical(mask) or is_half_vertical(mask)):
            continue
        rule = "vertical_below" if is_vertical(mask) else "half_vertical_below"
        below = y + 1
        while open_test(grid.get((m, x, below))):
            tile = grid[(m, x, below)]
            out[tile] = _repeat(mask[-1], mask.shape[0])
            changed[tile] = (src, rule)
            below += 1
    for (m, x, y), src in sources:
        mask = np.asarray(train_masks[src])
        above = grid.get((m, x, y - 1))
        if is_vertical(mask) and y >= MIN_ROW_FOR_ABOVE and open_test(above):
            if above not in changed:
                out[above] = _repeat(mask[0], mask.shape[0])
                changed[above] = (src, "vertical_above")
    order = {tid: k for k, tid in enumerate(layout["id"].astype(str))}
    rows = sorted(
        ((tid, src, rule) for tid, (src, rule) in changed.items()), key=lambda r: order[r[0]]
    )
    return out, pd.DataFrame(rows, columns=LOG_COLUMNS)
