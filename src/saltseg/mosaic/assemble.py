"""Mosaic assembly: find the tiles that continue each other edge to edge and lay them on grids.

Pixels only (no ids, no depths). The method, after the winners' idea:

1. Seam vectors and 2. candidates: see :mod:`saltseg.mosaic.seams`.
3. Placement. Candidates are tried in order of ratio (first only those passing the ratio test,
   then all, pass after pass), joining grids kept by union-find with offsets. A join is refused
   when a cell would hold two tiles or when more than a quarter of the seams it creates are
   implausible. A join creating one seam needs the ratio test. A join creating several (closing
   a loop, or laying a strip along a strip) needs a low geometric-mean ratio over its seams and
   their typical (geometric-mean) distance clearly below that of the same join shifted by one
   tile. Seams along the outer border of a section, which have no true partner, score a ratio
   of about 1 to 2 against one another, so those tests keep sections apart.

Blank tiles (one grey value) and borders whose edge row is nearly flat carry no evidence: they are
never matched, and a blank tile is a mosaic of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from saltseg.data.kaggle import is_blank
from saltseg.errors import InputError
from saltseg.mosaic.params import AssemblyParams
from saltseg.mosaic.seams import (
    KINDS,
    SeamIndex,
    all_candidates,
    check_images,
    find_pairs,
    fit_predictor,
    seam_index,
)

__all__ = ["AssemblyParams", "assemble", "find_pairs", "fit_predictor", "is_blank", "seam_index"]

STEP = {"lr": (1, 0), "tb": (0, 1)}  # (dx, dy) of b relative to a, for each pair kind
MUTUAL = 0.99  # ratio below which a seam's two tiles are each other's clear nearest match
_AROUND = (
    ((-1, 0), "lr", False),
    ((1, 0), "lr", True),
    ((0, -1), "tb", False),
    ((0, 1), "tb", True),
)


class _Grids:
    """Union-find over grids: every tile has a root and a cell; each root keeps its cells."""

    def __init__(self, n: int) -> None:
        self.root = list(range(n))
        self.x = [0] * n
        self.y = [0] * n
        self.cells: dict[int, dict[tuple[int, int], int]] = {i: {(0, 0): i} for i in range(n)}
        self.version = [0] * n

    def shift_for(self, a: int, b: int, step: tuple[int, int]) -> tuple[int, int, int, int]:
        """(moving root, staying root, dx, dy) putting ``b`` at ``a + step``; the smaller moves."""
        ra, rb = self.root[a], self.root[b]
        dx = self.x[a] + step[0] - self.x[b]
        dy = self.y[a] + step[1] - self.y[b]
        if len(self.cells[rb]) <= len(self.cells[ra]):
            return rb, ra, dx, dy
        return ra, rb, -dx, -dy

    def new_seams(
        self, moving: int, staying: int, dx: int, dy: int, strict: bool = True
    ) -> list[tuple[int, int, str]] | None:
        """Seams (a, b, kind) that moving root ``moving`` by (dx, dy) would create.

        Returns None when a cell would hold two tiles, unless ``strict`` is False (then tiles
        landing on occupied cells are skipped: used to score shifted alternatives).
        """
        target = self.cells[staying]
        seams = []
        for (cx, cy), t in self.cells[moving].items():
            cell = (cx + dx, cy + dy)
            if cell in target:
                if strict:
                    return None
                continue
            for (ox, oy), kind, t_first in _AROUND:
                other = target.get((cell[0] + ox, cell[1] + oy))
                if other is not None:
                    seams.append((t, other, kind) if t_first else (other, t, kind))
        return seams

    def join(self, moving: int, staying: int, dx: int, dy: int) -> None:
        """Move every tile of root ``moving`` by (dx, dy) into root ``staying``."""
        target = self.cells[staying]
        for (cx, cy), t in self.cells.pop(moving).items():
            self.x[t], self.y[t] = cx + dx, cy + dy
            self.root[t] = staying
            target[(cx + dx, cy + dy)] = t
        self.version[staying] += 1


def _seam_stats(seams: list[tuple], indexes: dict[str, SeamIndex]) -> tuple[np.ndarray, ...]:
    """Distances and ratios of the seams that carry evidence."""
    dist, ratio = [np.zeros(0)], [np.zeros(0)]
    for kind in KINDS:
        pairs = np.array([(a, b) for a, b, k in seams if k == kind], np.int64).reshape(-1, 2)
        if len(pairs):
            d, r = indexes[kind].ratio(pairs[:, 0], pairs[:, 1])
            dist.append(d)
            ratio.append(r)
    d, r = np.concatenate(dist), np.concatenate(ratio)
    return d[np.isfinite(d)], r[np.isfinite(d)]


def _log_mean(x: np.ndarray) -> float:
    """Mean of log(x): a typical value that one very bad seam cannot swamp."""
    return float(np.log(np.maximum(x, 1e-9)).mean())


def _accept(
    grids: _Grids,
    join: tuple[int, int, int, int],
    edge_ratio: float,
    indexes: dict[str, SeamIndex],
    params: AssemblyParams,
) -> bool:
    """Whether moving root ``join[0]`` by ``join[2:]`` onto root ``join[1]`` is sound."""
    moving, staying, dx, dy = join
    seams = grids.new_seams(moving, staying, dx, dy)
    if seams is None:
        return False
    dist, ratio = _seam_stats(seams, indexes)
    if (ratio > params.max_seam_ratio).sum() > params.max_bad_fraction * len(ratio):
        return False
    if len(dist) < 2:
        return edge_ratio < params.ratio
    mean_ratio = float(np.exp(_log_mean(ratio)))
    if mean_ratio >= (params.max_mean_ratio if len(ratio) < 4 else params.max_mean_ratio_many):
        return False
    best_alt = np.inf
    for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        shifted = grids.new_seams(moving, staying, dx + sx, dy + sy, strict=False)
        alt, _ = _seam_stats(shifted, indexes)
        if len(alt):
            best_alt = min(best_alt, _log_mean(alt))
    return float(np.sqrt(np.exp(_log_mean(dist) - best_alt))) < params.join_ratio


def _place(
    n: int, edges: pd.DataFrame, indexes: dict[str, SeamIndex], params: AssemblyParams
) -> tuple[_Grids, set[tuple[int, int, str]]]:
    """Join tiles along ``edges`` (sorted by ratio); return the grids and the edges that joined.

    The first pass takes only the candidates passing the ratio test; later passes take all, until
    a pass joins nothing. A refused join is not retried until one of its two grids changes.
    """
    grids = _Grids(n)
    joined: set[tuple[int, int, str]] = set()
    refused: set[tuple] = set()
    rows = list(
        zip(
            edges["a"].tolist(),
            edges["b"].tolist(),
            edges["kind"].tolist(),
            edges["ratio"].tolist(),
        )
    )
    strong = [e for e in rows if e[3] < params.ratio]
    for pass_no in range(params.passes + 1):
        changed = False
        for a, b, kind, ratio in strong if pass_no == 0 else rows:
            if grids.root[a] == grids.root[b]:
                continue
            join = grids.shift_for(a, b, STEP[kind])
            key = (join, grids.version[join[0]], grids.version[join[1]])
            if key in refused:
                continue
            if not _accept(grids, join, ratio, indexes, params):
                refused.add(key)
                continue
            grids.join(*join)
            joined.add((a, b, kind))
            changed = True
        if pass_no > 0 and not changed:
            break
    return grids, joined


def _check_ids(ids: Sequence[str], n: int) -> list[str]:
    """Ids as strings, or InputError unless there is one unique id per image."""
    ids = [str(i) for i in ids]
    if len(ids) != n:
        raise InputError("ids", f"expected one id per image ({n}), got {len(ids)}")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise InputError("ids", f"expected unique ids, {i!r} appears more than once")
        seen.add(i)
    return ids


def assemble(
    ids: Sequence[str], images: np.ndarray, params: AssemblyParams | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lay the tiles out into mosaics from their pixels alone.

    Args:
        ids: one unique id per tile.
        images: (N, H, W) uint8 tiles, in the order of ``ids``.
        params: knobs (see :class:`AssemblyParams`).

    Returns:
        (tiles, pairs). ``tiles``: id, mosaic_id (int64, 0 = the largest mosaic), x, y (int64
        tile units, y down, each mosaic's minimum x and y are 0); one row per input id, sorted by
        mosaic_id, y, x; a tile without neighbours is a mosaic of its own. ``pairs``: every two
        neighbouring tiles of the layout: id_a, id_b, kind (``"lr"``: b right of a; ``"tb"``: b
        below a), score and ratio of their seam (NaN where a border carries no evidence), joined
        (True for the seam whose candidate made the join, False for seams it implied) and
        mutual. The ratio is the seam's confidence: sqrt(score over the best alternative of
        either tile), below 1 when each tile is the other's nearest match on that side;
        ``mutual`` asks for a clear margin (ratio below ``MUTUAL``, the seam 2 % closer than any
        alternative), so exact lookalikes (ratio 1 up to rounding) are not mutual. A context
        model should trust a neighbour only below a chosen ratio.

    Raises:
        InputError: the images are not (N, H, W), or the ids are not one unique id per image.
    """
    params = params or AssemblyParams()
    images = check_images(images)
    ids = _check_ids(ids, len(images))
    # A pixel-derived order makes the result independent of the order the tiles come in.
    order = sorted(
        range(len(ids)), key=lambda i: (hashlib.blake2b(images[i].tobytes()).digest(), ids[i])
    )
    images, ids = images[order], [ids[i] for i in order]
    indexes: dict[str, SeamIndex] = {}
    edges = pd.DataFrame({"a": [], "b": [], "kind": [], "ratio": []})
    if len(images) >= 2:
        indexes, edges = all_candidates(images, params)
        edges = edges[edges["ratio"] < params.loose_ratio]
    grids, joined = _place(len(images), edges, indexes, params)
    return _tables(ids, grids, joined, indexes)


def _tables(
    ids: list[str], grids: _Grids, joined: set, indexes: dict[str, SeamIndex]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tiles and pairs tables of :func:`assemble`."""
    comps = sorted(grids.cells.values(), key=lambda c: (-len(c), min(c.values())))
    tile_rows, pair_rows = [], []
    for mosaic_id, cells in enumerate(comps):
        x0, y0 = min(x for x, _ in cells), min(y for _, y in cells)
        for (x, y), t in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0])):
            tile_rows.append((ids[t], mosaic_id, x - x0, y - y0))
            for (ox, oy), kind in (((1, 0), "lr"), ((0, 1), "tb")):
                other = cells.get((x + ox, y + oy))
                if other is not None:
                    pair_rows.append((t, other, kind))
    tiles = pd.DataFrame(tile_rows, columns=["id", "mosaic_id", "x", "y"])
    tiles = tiles.astype({"id": object, "mosaic_id": np.int64, "x": np.int64, "y": np.int64})
    a = np.array([p[0] for p in pair_rows], np.int64)
    b = np.array([p[1] for p in pair_rows], np.int64)
    kinds = np.array([p[2] for p in pair_rows], object)
    score, ratio = np.full(len(a), np.nan), np.full(len(a), np.nan)
    for kind in indexes:
        sel = kinds == kind
        if sel.any():
            score[sel], ratio[sel] = indexes[kind].ratio(a[sel], b[sel])
    pairs = pd.DataFrame(
        {
            "id_a": pd.Series([ids[i] for i in a], dtype=object),
            "id_b": pd.Series([ids[i] for i in b], dtype=object),
            "kind": pd.Series(kinds, dtype=object),
            "score": score,
            "ratio": ratio,
            "joined": np.array([p in joined for p in pair_rows], bool),
            "mutual": np.nan_to_num(ratio, nan=np.inf) < MUTUAL,
        }
    )
    return tiles, pairs
