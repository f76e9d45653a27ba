"""Confident pseudo-labels from test predictions, and how they are dealt into folds.

Confidence of a tile is the share of its pixels whose probability is decisive (``p < low`` or
``p > high``). Two selections, from the winners' write-up:

- ``confident`` (b.e.s.): keep tiles with confidence >= ``min_confidence`` (0.9), never blank
  tiles; folds are dealt round-robin in a seeded order.
- ``phalanx``: confidence >= 0.97, and >= 0.99 for small masks (20-500 px); tiles are bucketed by
  mask size and each bucket dealt evenly into the folds, after dropping half of the empty tiles.

On disk (one row per tile): ``id``, ``mask`` (fixed-size list of uint8 0/1, row-major, shape in
the schema metadata: :func:`saltseg.probs.write_maps`), ``confidence`` and ``fold``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from saltseg.probs import read_maps, write_maps

SMALL_MASK = (20, 500)
SIZE_BUCKETS = (0, 1, 20, 500, 2000, 5000, 10_000)


def confidence(probs: np.ndarray, low: float = 0.2, high: float = 0.8) -> np.ndarray:
    """Share of each tile's pixels with ``p < low`` or ``p > high``; shape ``(N,)``."""
    flat = probs.reshape(len(probs), -1)
    return ((flat < low) | (flat > high)).mean(axis=1)


def select_confident(
    probs: np.ndarray, blank: np.ndarray, n_folds: int, seed: int, min_confidence: float = 0.9
) -> pd.DataFrame:
    """b.e.s.: confident non-blank tiles (``index, confidence, fold``), folds dealt round-robin."""
    conf = confidence(probs)
    keep = np.flatnonzero((conf >= min_confidence) & ~blank)
    order = np.random.default_rng(seed).permutation(len(keep))
    folds = np.empty(len(keep), int)
    folds[order] = np.arange(len(keep)) % n_folds
    return pd.DataFrame({"index": keep, "confidence": conf[keep], "fold": folds})


def select_phalanx(
    probs: np.ndarray,
    blank: np.ndarray,
    n_folds: int,
    seed: int,
    min_confidence: float = 0.97,
    small_confidence: float = 0.99,
) -> pd.DataFrame:
    """phalanx: stricter confidence, half the empty tiles dropped, sizes dealt evenly to folds."""
    rng = np.random.default_rng(seed)
    conf = confidence(probs)
    size = (probs > 0.5).reshape(len(probs), -1).sum(axis=1)
    small = (size >= SMALL_MASK[0]) & (size <= SMALL_MASK[1])
    ok = ~blank & (conf >= np.where(small, small_confidence, min_confidence))
    empty = np.flatnonzero(ok & (size == 0))
    ok[rng.permutation(empty)[: len(empty) // 2]] = False
    keep = np.flatnonzero(ok)
    bucket = np.digitize(size[keep], SIZE_BUCKETS)
    folds = np.empty(len(keep), int)
    for b in np.unique(bucket):
        members = rng.permutation(np.flatnonzero(bucket == b))
        folds[members] = np.arange(len(members)) % n_folds
    return pd.DataFrame({"index": keep, "confidence": conf[keep], "fold": folds})


def write_pseudo(path: str | Path, ids: list[str], masks: np.ndarray, table: pd.DataFrame) -> None:
    """Write the selected tiles' masks with their confidence and fold, atomically."""
    extra = {
        "confidence": pa.array(table["confidence"].to_numpy(float)),
        "fold": pa.array(table["fold"].to_numpy(np.int64)),
    }
    write_maps(path, ids, "mask", masks.astype(np.uint8), extra)


def read_pseudo(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """``(table with id, confidence, fold; masks (N, H, W) uint8)``."""
    table, masks = read_maps(path, ["id", "mask", "confidence", "fold"], "pseudo-label")
    return table.select(["id", "confidence", "fold"]).to_pandas(), masks
