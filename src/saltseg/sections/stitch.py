"""Cut a 2-D section into overlapping tiles; stitch per-tile probabilities back without seams.

Layout: tiles start every ``stride`` pixels, as many as it takes for every section pixel to lie
within ``stride / 2`` of some tile's centre. The section ``(H, W)`` is reflection-padded by
``tile // 2`` on the top and left, and on the bottom and right as far as the last tile reaches.
A tile's *offset* ``(y, x)`` is its top-left corner in section coordinates (negative near the top
and left edges).

Blending: each tile's probabilities are weighted by a 2-D Hann window ``w(y) * w(x)`` with
``w(i) = FLOOR + (1 - FLOOR) * sin^2(pi * (i + 0.5) / tile)``, summed, and divided by the summed
weights. The weights fall smoothly towards the tile borders, so no seams show, and the floor keeps
every pixel's weight positive. Where all tiles agree, the result is exactly their common value,
so a perfect model reproduces the section mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from saltseg.errors import InputError

FLOOR = 1e-3  # window weight at a tile's outermost pixels

Predict = Callable[[np.ndarray], np.ndarray]


def window(tile: int) -> np.ndarray:
    """The ``(tile, tile) float32`` blending weights: a 2-D Hann window with a floor."""
    i = np.arange(tile, dtype=np.float64)
    w = FLOOR + (1 - FLOOR) * np.sin(np.pi * (i + 0.5) / tile) ** 2
    return np.outer(w, w).astype(np.float32)


def _axis(length: int, tile: int, stride: int) -> tuple[int, int, int]:
    """``(tiles, pad_before, pad_after)`` along one axis of ``length`` pixels."""
    count = max(0, -(-(length - 1 - stride // 2) // stride)) + 1  # last pixel near a centre
    before = tile // 2
    after = (count - 1) * stride + tile - before - length
    if after < 0:  # (even tiles) the last tile must fit in the padded frame
        count, after = count + 1, after + stride
    return count, before, after


def count_tiles(shape: tuple[int, int], tile: int, stride: int) -> int:
    """How many tiles a section of ``shape`` is cut into."""
    return _axis(shape[0], tile, stride)[0] * _axis(shape[1], tile, stride)[0]


class Stitcher:
    """Tiles of one section, and the weighted sum of the probabilities predicted for them.

    Args:
        section: a 2-D array (any dtype), at least 2 pixels on each side.
        tile: tile side in pixels.
        stride: step between tiles, ``1 <= stride <= tile``.

    Use :meth:`batches` to get ``(offsets, tiles)``, :meth:`add` the predictions for the same
    offsets, then :meth:`result`. ``offsets`` are ``(N, 2)`` top-left corners in section
    coordinates, so a test can cut the true mask at the same places.
    """

    def __init__(self, section: np.ndarray, tile: int = 101, stride: int = 50) -> None:
        if section.ndim != 2 or min(section.shape) < 2:
            raise InputError(
                "section", f"expected a 2-D array of at least 2x2, got {section.shape}"
            )
        if not 1 <= stride <= tile:
            raise InputError("stride", f"expected 1..{tile} (the tile size), got {stride}")
        self.shape, self.tile = section.shape, tile
        (ny, top, bottom), (nx, left, right) = (_axis(n, tile, stride) for n in section.shape)
        self.padded = np.pad(section, ((top, bottom), (left, right)), mode="reflect")
        ys, xs = np.meshgrid(np.arange(ny) * stride, np.arange(nx) * stride, indexing="ij")
        self.starts = np.stack([ys.ravel(), xs.ravel()], axis=1)  # in the padded frame
        self.origin = np.array([top, left])
        self.window = window(tile)
        self.total = np.zeros(self.padded.shape, dtype=np.float32)
        self.weight = np.zeros(self.padded.shape, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def offsets(self) -> np.ndarray:
        """``(N, 2)`` top-left corners of every tile in section coordinates."""
        return self.starts - self.origin

    def cut(self, array: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Tiles of ``array`` (shaped as the section) at ``offsets``, reflection-padded alike."""
        top, left = self.origin
        bottom = self.padded.shape[0] - top - self.shape[0]
        right = self.padded.shape[1] - left - self.shape[1]
        padded = np.pad(array, ((top, bottom), (left, right)), mode="reflect")
        return _cut(padded, offsets + self.origin, self.tile)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(offsets (n, 2), tiles (n, tile, tile))`` in batches of at most ``batch_size``."""
        for i in range(0, len(self.starts), batch_size):
            starts = self.starts[i : i + batch_size]
            yield starts - self.origin, _cut(self.padded, starts, self.tile)

    def add(self, offsets: np.ndarray, probs: np.ndarray) -> None:
        """Add the predictions ``(n, tile, tile)`` for the tiles at ``offsets``."""
        t = self.tile
        for (y, x), p in zip(offsets + self.origin, probs):
            self.total[y : y + t, x : x + t] += self.window * p
            self.weight[y : y + t, x : x + t] += self.window

    def _crop(self, array: np.ndarray) -> np.ndarray:
        top, left = self.origin
        return array[top : top + self.shape[0], left : left + self.shape[1]]

    def weights(self) -> np.ndarray:
        """The summed blending weight of every section pixel so far, ``(H, W) float32``."""
        return self._crop(self.weight).copy()

    def result(self) -> np.ndarray:
        """The blended probabilities ``(H, W) float32`` (every tile must have been added)."""
        weight = self._crop(self.weight)
        if not (weight > 0).all():
            raise RuntimeError("stitch: some pixels got no prediction (not every tile added)")
        return self._crop(self.total) / weight


def _cut(padded: np.ndarray, starts: np.ndarray, tile: int) -> np.ndarray:
    return np.stack([padded[y : y + tile, x : x + tile] for y, x in starts])


def stitch(
    section: np.ndarray,
    predict: Predict,
    tile: int = 101,
    stride: int = 50,
    batch_size: int = 64,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Probabilities ``(H, W) float32`` for ``section``, predicted tile by tile and blended.

    Args:
        section: the ``(H, W) uint8`` section, in the training intensity range.
        predict: ``tiles (N, tile, tile) uint8 -> probabilities (N, tile, tile)``.
        tile: tile side in pixels (the models' input size).
        stride: step between tiles; smaller means more overlap and more tiles.
        batch_size: tiles per ``predict`` call.
        progress: called with the number of tiles done after each batch (e.g. ``tqdm.update``).
    """
    stitcher = Stitcher(section, tile, stride)
    for offsets, tiles in stitcher.batches(batch_size):
        stitcher.add(offsets, predict(tiles))
        if progress is not None:
            progress(len(tiles))
    return stitcher.result()
