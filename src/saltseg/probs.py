"""Probability maps on disk: one parquet row per tile, shared by every predict/blend/submit step.

Schema: ``id`` (string) and ``prob`` (fixed-size list of ``uint8``, the H*W map in row-major
order, quantised as ``round(p * 255)``); the tile shape is stored in the schema metadata
(``saltseg.shape``). A 101x101 map costs 10 KB before compression; the quantisation step of 1/255
is far below what thresholds or blends resolve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from saltseg.data.kaggle import is_blank
from saltseg.errors import InputError
from saltseg.io import atomic_path, read_json
from saltseg.metrics import remove_small

SCALE = 255
SHAPE_KEY = b"saltseg.shape"


def write_maps(
    path: str | Path, ids: list[str], column: str, maps: np.ndarray, extra: dict | None = None
) -> None:
    """Write ``uint8`` maps ``(N, H, W)`` as ``id`` + ``column`` (+ ``extra`` columns), atomically.

    The one codec of saltseg's per-tile parquets (probabilities here, pseudo-label masks in
    :mod:`saltseg.pseudo`): a fixed-size list per tile, the shape in the schema metadata.
    """
    _, h, w = maps.shape
    flat = pa.FixedSizeListArray.from_arrays(pa.array(maps.reshape(-1), pa.uint8()), h * w)
    columns = {"id": pa.array(ids, pa.string()), column: flat, **(extra or {})}
    table = pa.table(columns).replace_schema_metadata({SHAPE_KEY: f"{h},{w}".encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_maps(path: str | Path, columns: list[str], what: str) -> tuple[pa.Table, np.ndarray]:
    """Read a :func:`write_maps` file with exactly ``columns`` (``id`` and the map first).

    Returns the table and the maps ``(N, H, W) uint8`` (a writable copy).

    Raises:
        InputError: not a parquet, or not ``what`` (other columns, no shape metadata).
    """
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(path, f"expected a saltseg {what} parquet ({err})") from None
    meta = table.schema.metadata or {}
    if table.column_names != columns or SHAPE_KEY not in meta:
        raise InputError(path, f"expected columns {', '.join(columns)} and saltseg.shape metadata")
    h, w = (int(v) for v in meta[SHAPE_KEY].decode().split(","))
    flat = table.column(columns[1]).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return table, flat.reshape(-1, h, w).copy()  # writable: torch warns on read-only arrays


def read_ids(path: str | Path) -> list[str]:
    """The tile ids of a :func:`write_maps` file, without reading its maps."""
    try:
        return pq.read_table(path, columns=["id"]).column("id").to_pylist()
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(path, f"expected a saltseg per-tile parquet with ids ({err})") from None


def write_probs(path: str | Path, ids: list[str], probs: np.ndarray) -> None:
    """Write probabilities ``(N, H, W)`` in [0, 1] for ``ids``, atomically.

    Raises:
        InputError: NaN or out-of-range probabilities, or a count that does not match ``ids``.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or len(probs) != len(ids):
        raise InputError(path, f"expected {len(ids)} maps of shape (H, W), got {probs.shape}")
    if not np.isfinite(probs).all() or probs.min(initial=0) < 0 or probs.max(initial=0) > 1:
        raise InputError(path, "expected finite probabilities in [0, 1] (the model produced NaN?)")
    write_maps(path, ids, "prob", np.rint(probs * SCALE).astype(np.uint8))


def read_probs(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read ``(ids, probs)`` with probs ``(N, H, W) float32`` in [0, 1]."""
    table, codes = read_maps(path, ["id", "prob"], "probability")
    return table.column("id").to_pylist(), codes.astype(np.float32) / SCALE


def align(path: str | Path, ids: list[str], maps_ids: list[str], maps: np.ndarray) -> np.ndarray:
    """``maps`` (read from ``path`` for ``maps_ids``) reordered to ``ids``; each id needs a map."""
    position = {i: k for k, i in enumerate(maps_ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise InputError(path, f"expected a map for every tile id, {missing[0]!r} has none")
    return maps[[position[i] for i in ids]]


@dataclass(frozen=True)
class Cut:
    """How maps become masks: pixels above ``threshold``; a tile is empty when fewer than
    ``min_area`` pixels pass, or when its largest probability is under ``min_peak`` (the
    tile-level emptiness rules, tuned on OOF with the threshold)."""

    threshold: float = 0.5
    min_area: int = 0
    min_peak: float = 0.0

    @classmethod
    def of(cls, cut: Cut | float) -> Cut:
        """A cut as is, or a bare threshold as a cut without tile rules."""
        return cut if isinstance(cut, Cut) else cls(float(cut))

    @classmethod
    def read(cls, cv_json: str | Path, pixels: bool = False) -> Cut:
        """The OOF-tuned cut of a ``cv.json``: threshold, minimum area and minimum peak for
        tiles, or with ``pixels`` the threshold tuned without tile rules (``threshold_pixels``,
        for maps without tiles such as whole sections).

        Raises:
            InputError: the file is missing or holds no threshold.
        """
        cv = read_json(cv_json, ("threshold",), what="a cv.json with a tuned threshold")
        try:
            if pixels:
                return cls(float(cv.get("threshold_pixels", cv["threshold"])))
            return cls(
                float(cv["threshold"]), int(cv.get("min_area", 0)), float(cv.get("min_peak", 0.0))
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(cv_json, "expected a cv.json with a tuned threshold") from None


def binarize(maps: np.ndarray, images: np.ndarray, cut: Cut | float) -> np.ndarray:
    """``maps > cut`` as uint8 masks; blank tiles (one grey value), tiles whose mask is smaller
    than the cut's ``min_area`` and tiles whose largest probability is under its ``min_peak``
    are empty."""
    cut = Cut.of(cut)
    masks = remove_small(maps > cut.threshold, cut.min_area).astype(np.uint8)
    masks[is_blank(images) | (maps.max(axis=(1, 2)) < cut.min_peak)] = 0
    return masks
