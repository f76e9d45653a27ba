"""Kaggle run-length encoding: column-major, 1-indexed ``start length`` pairs, ``""`` if empty."""

from __future__ import annotations

import numpy as np

from saltseg.errors import InputError


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D binary mask as a Kaggle RLE string (pixels numbered down columns, from 1)."""
    pixels = np.asarray(mask).astype(bool).flatten(order="F")
    padded = np.concatenate([[False], pixels, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1]) + 1
    starts, ends = edges[::2], edges[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends))


def decode(rle: str | float | None, shape: tuple[int, int], where: object = "rle") -> np.ndarray:
    """Decode a Kaggle RLE string into a ``uint8`` mask of ``shape`` (1 = salt).

    An empty string, ``None`` or NaN (how pandas reads an empty CSV cell) is an empty mask.

    Raises:
        InputError: the string is not integer pairs, or a run falls outside the tile.
    """
    size = shape[0] * shape[1]
    flat = np.zeros(size, dtype=np.uint8)
    if rle is None or (isinstance(rle, float) and np.isnan(rle)) or not str(rle).strip():
        return flat.reshape(shape, order="F")
    try:
        numbers = np.array(str(rle).split(), dtype=np.int64)
    except ValueError:
        raise InputError(
            where, f"expected 'start length' integer pairs, got {str(rle)[:40]!r}"
        ) from None
    if numbers.size % 2:
        raise InputError(where, "expected 'start length' pairs, got an odd count of numbers")
    starts, lengths = numbers[0::2], numbers[1::2]
    if (starts < 1).any() or (lengths < 1).any() or (starts + lengths - 1 > size).any():
        raise InputError(where, f"expected runs inside the {shape[0]}x{shape[1]} tile (1..{size})")
    for start, length in zip(starts - 1, lengths):
        flat[start : start + length] = 1
    return flat.reshape(shape, order="F")
