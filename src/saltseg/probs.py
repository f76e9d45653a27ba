"""Probability maps on disk: one parquet row per tile, shared by every predict/blend/submit step.

Schema: ``id`` (string) and ``prob`` (fixed-size list of ``uint8``, the H*W map in row-major
order, quantised as ``round(p * 255)``); the tile shape is stored in the schema metadata
(``saltseg.shape``). A 101x101 map costs 10 KB before compression; the quantisation step of 1/255
is far below what thresholds or blends resolve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from saltseg.errors import InputError
from saltseg.io import atomic_path

SCALE = 255
SHAPE_KEY = b"saltseg.shape"


def write_maps(
    path: str | Path,
    ids: list[str],
    column: str,
    maps: np.ndarray,
    extra: dict | None = None,
    meta: dict[str, str] | None = None,
) -> None:
    """Write ``uint8`` maps ``(N, H, W)`` as ``id`` + ``column`` (+ ``extra`` columns), atomically;
    ``meta`` goes into the schema metadata (:func:`read_meta`).

    The one codec of saltseg's per-tile parquets (probabilities here, pseudo-label masks in
    :mod:`saltseg.pseudo`): a fixed-size list per tile, the shape in the schema metadata.
    """
    _, h, w = maps.shape
    flat = pa.FixedSizeListArray.from_arrays(pa.array(maps.reshape(-1), pa.uint8()), h * w)
    columns = {"id": pa.array(ids, pa.string()), column: flat, **(extra or {})}
    metadata = {SHAPE_KEY: f"{h},{w}".encode()}
    metadata |= {key.encode(): value.encode() for key, value in (meta or {}).items()}
    table = pa.table(columns).replace_schema_metadata(metadata)
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


def read_meta(path: str | Path, key: str) -> str | None:
    """The ``meta`` value of ``key`` that :func:`write_maps` stored (None without it)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(path, f"expected a saltseg per-tile parquet ({err})") from None
    value = metadata.get(key.encode())
    return None if value is None else value.decode()


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
