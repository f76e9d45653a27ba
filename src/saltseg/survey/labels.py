"""An interpreter's label volume beside its seismic: opened, checked and read one slice at a time.

Labels have the seismic's shape and layout (the same reader, :mod:`saltseg.sections.io`, opens
both): ``1`` salt, ``0`` not salt, ``-1`` or NaN not interpreted. A SEG-Y survey must have a
geometry segyio infers (inline and crossline numbers in trace header bytes 189 and 193), so that
labels and seismic are known to line up slice for slice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saltseg.errors import InputError
from saltseg.sections.io import PERCENTILES, Section, open_section

UNINTERPRETED = -1
SALT, NOT_SALT = 1, 0


@dataclass
class Survey:
    """The seismic (scaled to uint8 as ``predict-section`` scales it) and its labels, opened."""

    seismic: Section
    labels: Section
    tile: int | None

    @property
    def n_slices(self) -> int:
        return self.seismic.n_slices

    def labels_of(self, k: int) -> np.ndarray:
        """Slice ``k``'s labels as ``int8`` (1, 0, or -1 for not interpreted), depth down rows.

        Raises:
            InputError: a value other than 0, 1, -1 or NaN.
        """
        return read_labels(self.labels, k)

    def depth_axis(self) -> tuple[float, float, str]:
        """``(first, step, unit)`` of the depth (sample) axis: the SEG-Y's sample times or depths,
        else sample indices."""
        segy = self.seismic.segy
        if segy is not None and len(segy.samples) > 1:
            samples = np.asarray(segy.samples, dtype=float)
            return float(samples[0]), float(samples[1] - samples[0]), "SEG-Y samples"
        return 0.0, 1.0, "sample index"


def read_labels(labels: Section, k: int) -> np.ndarray:
    """Slice ``k`` of a label volume as ``int8`` (NaN becomes -1); see :class:`Survey`."""
    raw = np.asarray(labels.raw(k), dtype=np.float32)
    known = np.isfinite(raw)
    bad = known & (raw != SALT) & (raw != NOT_SALT) & (raw != UNINTERPRETED)
    if bad.any():
        raise InputError(
            labels.path,
            f"expected label values 1 (salt), 0 (not salt), -1 or NaN (not interpreted),"
            f" got {raw[bad][0]:g} in slice {k}",
        )
    return np.where(known, raw, UNINTERPRETED).astype(np.int8)


@contextlib.contextmanager
def open_survey(
    seismic: str | Path,
    labels: str | Path,
    axis: str = "inline",
    tile: int | None = 101,
    percentiles=PERCENTILES,
    scale: bool = True,
) -> Iterator[Survey]:
    """Open a seismic file and its label volume and check that they fit (see :func:`check_pair`).

    ``scale`` False skips fitting the seismic's scaling (a cheap geometry check); ``tile`` None
    skips the size check (reading a volume back).

    Raises:
        InputError: either file unreadable, a SEG-Y without inferable geometry, labels of another
            shape than the seismic (naming both), or slices smaller than one tile.
    """
    with (
        open_section(seismic, axis, percentiles, scale=scale) as cube,
        open_section(labels, axis, scale=False) as marks,
    ):
        check_pair(cube, marks, tile)
        yield Survey(cube, marks, tile)


def check_pair(seismic: Section, labels: Section, tile: int | None = None) -> None:
    """Raise :class:`InputError` unless ``labels`` line up with ``seismic`` slice for slice and,
    when ``tile`` is given, every slice holds at least one tile."""
    for section in (seismic, labels):
        if section.segy is not None and section.segy.unstructured:
            raise InputError(
                section.path,
                "expected a SEG-Y whose geometry segyio can infer (inline and crossline numbers"
                " in trace header bytes 189 and 193, sorted by one of them); write those headers,"
                " or pass a .npy of shape (inlines, crosslines, samples) instead",
            )
    if seismic.shape != labels.shape or seismic.slice_axis != labels.slice_axis:
        raise InputError(
            labels.path,
            f"expected labels of the seismic's shape {seismic.shape} ({seismic.path}),"
            f" got {labels.shape}"
            + ("" if seismic.shape != labels.shape else " sorted along the other axis"),
        )
    if tile is not None and min(seismic.slice_shape) < tile:
        height, width = seismic.slice_shape
        raise InputError(
            seismic.path,
            f"expected slices of at least one tile ({tile}x{tile} samples x traces),"
            f" got {height}x{width} (shape {seismic.shape})",
        )
