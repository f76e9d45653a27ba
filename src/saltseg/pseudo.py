"""Confident pseudo-labels from test predictions, and how they are dealt into folds.

Confidence of a tile is the share of its pixels whose probability is decisive (``p < low`` or
``p > high``). Three selections:

- ``balanced`` (ours): a salt tile's confidence is counted where its mask is decided, within the
  predicted mask and a border around it (:func:`salt_confidence`), so that a small, sure mask is
  not outvoted by the empty sea around it; tiles predicted empty are then capped so that their
  share among the labels is no higher than among the labelled tiles (the most confident kept).
  Sizes are dealt evenly into the folds (:func:`_deal_by_size`).
- ``confident`` (b.e.s.): keep tiles with confidence >= ``min_confidence`` (0.9), never blank
  tiles; folds are dealt round-robin in a seeded order.
- ``phalanx``: confidence >= 0.97, and >= 0.99 for small masks (20-500 px); tiles are bucketed by
  mask size and each bucket dealt evenly into the folds, after dropping half of the empty tiles.

The winners' two keep most of their labels empty: on a teacher of our strength 87 % of
``confident``'s labels were empty and a student learnt "empty" from them
(bench/records/pseudo_quality.json).

On disk (one row per tile): ``id``, ``mask`` (fixed-size list of uint8 0/1, row-major, shape in
the schema metadata: :func:`saltseg.probs.write_maps`), ``confidence`` and ``fold``: the fold
whose students learn from the label (in a fold teacher's file every row's is that fold).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa

from saltseg.probs import read_maps, read_meta, write_maps

SMALL_MASK = (20, 500)
SIZE_BUCKETS = (0, 1, 20, 500, 2000, 5000, 10_000)
#: fewer pseudo tiles than this for one fold, and the pseudo step and the training warn
FEW_LABELS = 10
#: what those warnings say to change
FEW_LABELS_HELP = (
    "Lower pseudo.min_confidence, train the teacher longer, or take pseudo.teacher: ensemble "
    "(the stage ensemble is the stronger teacher)."
)
SELECTION_KEY = "saltseg.selection"


def confidence(probs: np.ndarray, low: float = 0.2, high: float = 0.8) -> np.ndarray:
    """Share of each tile's pixels with ``p < low`` or ``p > high``; shape ``(N,)``."""
    flat = probs.reshape(len(probs), -1)
    return ((flat < low) | (flat > high)).mean(axis=1)


def salt_confidence(
    probs: np.ndarray, masks: np.ndarray, border: int = 8, low: float = 0.2, high: float = 0.8
) -> np.ndarray:
    """Share of decisive pixels within each predicted mask grown by ``border`` px (the whole
    tile where the mask is empty); shape ``(N,)``."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * border + 1, 2 * border + 1))
    region = np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in masks]).astype(bool)
    region[~region.any(axis=(1, 2))] = True
    decisive = (probs < low) | (probs > high)
    return (decisive & region).sum(axis=(1, 2)) / region.sum(axis=(1, 2))


def empty_share(masks: np.ndarray, blank: np.ndarray) -> float:
    """The share of empty ``masks`` among the tiles that are not ``blank``: the labelled set's,
    which caps :func:`select_balanced`'s empty labels."""
    return float((~masks[~blank].any(axis=(1, 2))).mean())


def select_balanced(
    probs: np.ndarray,
    masks: np.ndarray,
    blank: np.ndarray,
    empty_share: float,
    n_folds: int,
    seed: int,
    min_confidence: float = 0.9,
) -> pd.DataFrame:
    """Tiles whose mask (``masks``: the teacher's, at its tuned cut) is decided: salt tiles with
    :func:`salt_confidence` >= ``min_confidence``; of the equally confident empty tiles the most
    confident, no more than makes their share ``empty_share`` (the labelled tiles' share); never
    blank tiles. Sizes are dealt evenly into the folds (as :func:`select_phalanx`)."""
    conf = salt_confidence(probs, masks)
    size = masks.reshape(len(masks), -1).sum(axis=1)
    ok = ~blank & (conf >= min_confidence)
    salt = np.flatnonzero(ok & (size > 0))
    empty = np.flatnonzero(ok & (size == 0))
    cap = int(np.floor(len(salt) * empty_share / max(1.0 - empty_share, 1e-9) + 1e-9))
    empty = empty[np.argsort(-conf[empty], kind="stable")][:cap]
    keep = np.sort(np.concatenate([salt, empty]))
    folds = _deal_by_size(size[keep], n_folds, np.random.default_rng(seed))
    return pd.DataFrame({"index": keep, "confidence": conf[keep], "fold": folds})


def _deal_by_size(size: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Folds for tiles of mask ``size``: the size buckets in turn, each in a seeded order, dealt
    round-robin from a seeded fold on, the deal going on where the bucket before stopped; so the
    folds' counts differ by at most one, within every bucket and overall, and every fold gets a
    label once there are ``n_folds`` (a deal restarting at fold 0 in each bucket gave fold 0 one
    of every bucket and the last fold none of the small ones)."""
    bucket = np.digitize(size, SIZE_BUCKETS)
    folds = np.empty(len(size), int)
    dealt = int(rng.integers(n_folds))
    for b in np.unique(bucket):
        members = rng.permutation(np.flatnonzero(bucket == b))
        folds[members] = (dealt + np.arange(len(members))) % n_folds
        dealt += len(members)
    return folds


def label_counts(masks: np.ndarray) -> dict[str, int]:
    """``{"salt": n, "empty": n}``: how many of the label ``masks`` hold salt and how many none."""
    flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:])))  # -1 fails on no labels
    empty = int((~flat.any(axis=1)).sum())
    return {"salt": len(masks) - empty, "empty": empty}


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
    folds = _deal_by_size(size[keep], n_folds, rng)
    return pd.DataFrame({"index": keep, "confidence": conf[keep], "fold": folds})


def write_pseudo(
    path: str | Path, ids: list[str], masks: np.ndarray, table: pd.DataFrame, selection: str = ""
) -> None:
    """Write the selected tiles' masks with their confidence and fold, atomically, and how they
    were selected (``selection``, for :func:`read_selection`)."""
    extra = {
        "confidence": pa.array(table["confidence"].to_numpy(float)),
        "fold": pa.array(table["fold"].to_numpy(np.int64)),
    }
    write_maps(path, ids, "mask", masks.astype(np.uint8), extra, {SELECTION_KEY: selection})


def read_selection(path: str | Path) -> str:
    """How the labels of a :func:`write_pseudo` file were selected ("" when not recorded)."""
    return read_meta(path, SELECTION_KEY) or ""


def read_pseudo(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """``(table with id, confidence, fold; masks (N, H, W) uint8)``."""
    table, masks = read_maps(path, ["id", "mask", "confidence", "fold"], "pseudo-label")
    return table.select(["id", "confidence", "fold"]).to_pandas(), masks
