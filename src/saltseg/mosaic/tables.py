"""The mosaic rule's tables (tiles.parquet, pairs.parquet), read back with one clear error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from saltseg.errors import InputError

#: columns of ``tiles.parquet`` that place a tile: its mosaic and its cell in it
LAYOUT = ["id", "mosaic_id", "x", "y"]
#: columns of ``pairs.parquet`` that describe a seam and how far it stands out
PAIRS = ["id_a", "id_b", "kind", "ratio"]


def read_table(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the mosaic parquet ``path``; unreadable or short of a column: one line."""
    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError, KeyError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(
            path, f"expected the mosaic rule's parquet with {', '.join(columns)} ({reason})"
        ) from None
