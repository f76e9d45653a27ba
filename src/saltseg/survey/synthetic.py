"""A small synthetic survey to start from: a SEG-Y cube, a sparse label volume and the truth.

The cube's inlines are windows onto one wide synthetic section
(:func:`saltseg.data.synthetic.draw_section`), each ``shift`` traces further along, so
neighbouring inlines continue each other as in a real survey. Every ``every``-th inline (from
the first) is interpreted: its labels are the true mask, the others' are -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import segyio

from saltseg.data.synthetic import draw_section
from saltseg.errors import InputError
from saltseg.io import atomic_dir, write_json
from saltseg.survey.labels import UNINTERPRETED

FIRST_INLINE, FIRST_CROSSLINE = 1000, 2000
SAMPLE_US = 4000  # 4 ms between samples


def write_segy_cube(
    path: str | Path,
    cube: np.ndarray,
    first_inline: int = FIRST_INLINE,
    first_crossline: int = FIRST_CROSSLINE,
    interval_us: int = SAMPLE_US,
) -> None:
    """Write ``cube`` ``(inlines, crosslines, samples)`` as inline-sorted IEEE-float SEG-Y with
    inline/crossline numbers in trace header bytes 189/193 and coordinates from them."""
    n_il, n_xl, ns = cube.shape
    spec = segyio.spec()
    spec.format, spec.sorting = 5, segyio.TraceSortingFormat.INLINE_SORTING
    spec.ilines = np.arange(first_inline, first_inline + n_il)
    spec.xlines = np.arange(first_crossline, first_crossline + n_xl)
    spec.samples = np.arange(ns) * interval_us / 1000
    with segyio.create(str(path), spec) as f:
        f.bin.update({segyio.BinField.Interval: interval_us, segyio.BinField.Samples: ns})
        f.text[0] = segyio.tools.create_text_header({1: "saltseg synthetic survey"})
        for i in range(n_il):
            for j in range(n_xl):
                f.header[i * n_xl + j] = {
                    segyio.TraceField.INLINE_3D: int(spec.ilines[i]),
                    segyio.TraceField.CROSSLINE_3D: int(spec.xlines[j]),
                    segyio.TraceField.CDP_X: 25 * int(spec.xlines[j]),
                    segyio.TraceField.CDP_Y: 25 * int(spec.ilines[i]),
                    segyio.TraceField.TRACE_SAMPLE_COUNT: ns,
                    segyio.TraceField.TRACE_SAMPLE_INTERVAL: interval_us,
                }
                f.trace[i * n_xl + j] = np.ascontiguousarray(cube[i, j], dtype=np.float32)


def generate_survey(
    out: str | Path,
    seed: int = 0,
    inlines: int = 24,
    crosslines: int = 250,
    samples: int = 150,
    every: int = 3,
    shift: int = 4,
) -> None:
    """Write ``seismic.sgy``, ``labels.sgy`` (every ``every``-th inline interpreted),
    ``truth.sgy`` (the mask of every inline) and ``survey.json`` into ``out``, atomically.

    Raises:
        InputError: an argument out of range (named).
    """
    for name, value, low in (
        ("inlines", inlines, 2),
        ("crosslines", crosslines, 2),
        ("samples", samples, 2),
        ("every", every, 1),
        ("shift", shift, 0),
    ):
        if value < low:
            raise InputError(name, f"expected an integer >= {low}, got {value}")
    rng = np.random.default_rng(seed)
    tile = 101
    width = crosslines + shift * (inlines - 1)
    image, mask = draw_section(rng, -(-samples // tile), -(-width // tile), tile)
    windows = [np.s_[:samples, k * shift : k * shift + crosslines] for k in range(inlines)]
    amplitudes = np.stack([(image[w].T.astype(np.float32) - 128) / 40 for w in windows])
    truth = np.stack([mask[w].T for w in windows]).astype(np.float32)
    labels = np.full_like(truth, UNINTERPRETED)
    labels[::every] = truth[::every]
    with atomic_dir(out) as tmp:
        for name, cube in (("seismic", amplitudes), ("labels", labels), ("truth", truth)):
            write_segy_cube(tmp / f"{name}.sgy", cube)
        write_json(
            tmp / "survey.json",
            {
                "seed": seed,
                "shape": [inlines, crosslines, samples],
                "every": every,
                "shift": shift,
                "interpreted_inlines": list(range(FIRST_INLINE, FIRST_INLINE + inlines, every)),
            },
        )
