"""Read seismic sections and volumes one 2-D slice at a time; write SEG-Y results and overlays.

Inputs, by suffix (case-insensitive):

- ``.sgy``/``.segy``: SEG-Y read with segyio. A 3-D post-stack volume (more than one inline and
  crossline) holds its traces in file order as ``(outer lines, inner lines, samples)``, the layout
  of ``segyio.tools.cube``; slices are inlines or crosslines (``axis``). Anything else (one line, or
  a geometry segyio cannot infer) is a 2-D line ``(traces, samples)`` in file order.
- ``.npy``: a 2-D section ``(depth, traces)`` like an image, or a 3-D volume
  ``(inlines, crosslines, depth)`` (the SEG-Y cube layout), memory-mapped.
- ``.png``/``.tif``/``.tiff``: an 8/16-bit or float image; colour is reduced to grey.

Each slice is shown to the models as an image with depth (samples) down the rows. The arrays
written back have the input's shape (for an image, its height x width).

Scaling, the same for every input: the 1st and 99th percentiles of the amplitudes (all of a 2-D
input; for a volume, up to ``SAMPLE_TRACES`` evenly spaced traces) are mapped linearly onto 0 and
255 (the training tiles' uint8 range), values outside are clipped, and NaN/inf samples become the
middle grey (128). When the two percentiles coincide (mostly-constant data) the minimum and maximum
are used instead; all-NaN or constant data is refused.

Size: each side of a slice must be at least ``MIN_SIDE`` pixels. Slices smaller than one tile are
accepted: reflection padding fills the tile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import segyio

from saltseg.errors import InputError

SEGY = (".sgy", ".segy")
IMAGES = (".png", ".tif", ".tiff")
PERCENTILES = (1.0, 99.0)
SAMPLE_TRACES = 4096
MIN_SIDE = 16
AXES = ("inline", "crossline")


@dataclass(frozen=True)
class Scaling:
    """Amplitudes ``low..high`` map linearly onto 0..255 (clipped); NaN becomes 128."""

    low: float
    high: float

    def apply(self, amplitudes: np.ndarray) -> np.ndarray:
        x = (np.asarray(amplitudes, dtype=np.float32) - self.low) * (255 / (self.high - self.low))
        x = np.where(np.isfinite(x), x, 127.5)
        return np.rint(np.clip(x, 0, 255)).astype(np.uint8)


def fit_scaling(path: Path, sample: np.ndarray, percentiles=PERCENTILES) -> Scaling:
    """The :class:`Scaling` of an input from a sample of its amplitudes."""
    values = np.asarray(sample, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError(path, "expected finite amplitudes, found only NaN/inf")
    low, high = np.percentile(values, percentiles)
    if high <= low:
        low, high = values.min(), values.max()
    if high <= low:
        raise InputError(path, f"expected varying amplitudes, got the constant {low:g}")
    return Scaling(float(low), float(high))


@dataclass
class Section:
    """An opened input: ``shape``, ``n_slices`` and one slice at a time.

    Attributes:
        path: the input file.
        kind: ``segy``, ``npy`` or ``image``.
        shape: the input's shape, which the output arrays share.
        slice_axis: the array axis the slices run along (None for a 2-D input).
        depth_last: whether depth is the arrays' last axis (SEG-Y, 3-D npy), so slices transpose.
        scaling: amplitudes -> uint8.
        segy: the open SEG-Y file, for copying its headers.
    """

    path: Path
    kind: str
    shape: tuple[int, ...]
    slice_axis: int | None
    depth_last: bool
    read: Callable[[int], np.ndarray] = field(repr=False)
    scaling: Scaling | None = None
    segy: segyio.SegyFile | None = field(default=None, repr=False)

    @property
    def n_slices(self) -> int:
        return 1 if self.slice_axis is None else self.shape[self.slice_axis]

    @property
    def slice_shape(self) -> tuple[int, int]:
        """The ``(depth, traces)`` shape of one slice as an image."""
        if self.slice_axis is None:
            return self.shape[::-1] if self.depth_last else self.shape
        return self.shape[2], self.shape[1 - self.slice_axis]

    def index(self, k: int) -> tuple:
        """The index of slice ``k`` in an array of :attr:`shape`."""
        if self.slice_axis is None:
            return (Ellipsis,)
        return (slice(None),) * self.slice_axis + (k,)

    def image(self, k: int) -> np.ndarray:
        """Slice ``k`` as a scaled ``uint8`` image, depth down the rows."""
        return self.image_and_nodata(k)[0]

    def image_and_nodata(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``k`` as :meth:`image`, and where its amplitudes are NaN or inf (no data)."""
        raw = self.read(k)
        raw = raw.T if self.depth_last else raw
        return self.scaling.apply(raw), ~np.isfinite(raw)

    def raw(self, k: int) -> np.ndarray:
        """Slice ``k`` unscaled (the file's values, e.g. labels), depth down the rows."""
        raw = self.read(k)
        return raw.T if self.depth_last else raw

    def store(self, out: np.ndarray, k: int, image: np.ndarray) -> None:
        """Write an image-layout result for slice ``k`` into ``out`` (shape :attr:`shape`)."""
        out[self.index(k)] = image.T if self.depth_last else image


@contextlib.contextmanager
def open_section(
    path: str | Path, axis: str = "inline", percentiles=PERCENTILES, scale: bool = True
) -> Iterator[Section]:
    """Open ``path`` (see the module doc), check it and fit its scaling (not with ``scale``
    False: values read by :meth:`Section.raw`, e.g. a label volume).

    Raises:
        InputError: a missing or unreadable file, an unknown suffix, not 2-D or 3-D, a slice side
            under ``MIN_SIDE``, or all-NaN or constant amplitudes.
    """
    path = Path(path)
    if axis not in AXES:
        raise InputError("axis", f"expected one of {', '.join(AXES)}, got {axis!r}")
    if not path.is_file():
        raise InputError(path, "expected an existing input file")
    suffix = path.suffix.lower()
    with contextlib.ExitStack() as stack:
        if suffix in SEGY:
            segy = stack.enter_context(_open_segy(path))
            try:
                section, sample = _segy_section(path, segy, axis)
            except (RuntimeError, OSError) as err:
                raise _segy_error(path, err) from None
        elif suffix == ".npy":
            section, sample = _array_section(path, "npy", _load_npy(path), axis)
        elif suffix in IMAGES:
            section, sample = _array_section(path, "image", _load_image(path), axis)
        else:
            raise InputError(path, "expected a .sgy/.segy, .npy, .png or .tif/.tiff file")
        if min(section.slice_shape) < MIN_SIDE:
            raise InputError(
                path, f"expected slices of at least {MIN_SIDE} pixels a side, got {section.shape}"
            )
        if scale:
            section.scaling = fit_scaling(path, sample, percentiles)
        yield section


@contextlib.contextmanager
def _open_segy(path: Path) -> Iterator[segyio.SegyFile]:
    try:
        handle = segyio.open(str(path), "r", strict=False)
    except (RuntimeError, OSError, ValueError, IndexError) as err:
        raise _segy_error(path, err) from None
    with handle:
        yield handle


def _segy_error(path: Path, err: Exception) -> InputError:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return InputError(path, f"expected a readable SEG-Y file ({first})")


def _segy_section(path: Path, f: segyio.SegyFile, axis: str) -> tuple[Section, np.ndarray]:
    n = f.tracecount
    if n == 0 or len(f.samples) == 0:
        raise InputError(path, "expected SEG-Y traces with samples, found none")
    ns = len(f.samples)
    picks = np.unique(np.linspace(0, n - 1, min(n, SAMPLE_TRACES)).astype(int))
    sample = np.stack([f.trace[int(i)] for i in picks])
    if not f.unstructured and len(f.offsets) > 1:
        raise InputError(path, f"expected post-stack SEG-Y (one offset), got {len(f.offsets)}")
    if f.unstructured or min(len(f.ilines), len(f.xlines)) == 1:
        section = Section(path, "segy", (n, ns), None, True, lambda k: f.trace.raw[:], segy=f)
        return section, sample
    inline_sorted = f.sorting == segyio.TraceSortingFormat.INLINE_SORTING
    outer, inner = (f.ilines, f.xlines) if inline_sorted else (f.xlines, f.ilines)
    shape = (len(outer), len(inner), ns)
    keys, lines = (f.ilines, f.iline) if axis == "inline" else (f.xlines, f.xline)
    slice_axis = 0 if (axis == "inline") == inline_sorted else 1
    read = lambda k: lines[keys[k]]  # noqa: E731
    return Section(path, "segy", shape, slice_axis, True, read, segy=f), sample


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(path, f"expected a NumPy .npy array ({err})".splitlines()[0]) from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(path, f"expected a numeric array, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(path, f"expected real amplitudes, got dtype {array.dtype}")
    return array


def _load_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(path, "expected a readable PNG/TIFF image (corrupt or not an image)")
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code) if image.shape[2] in (3, 4) else image[..., 0]
    return image


def _array_section(path: Path, kind: str, array: np.ndarray, axis: str):
    if array.ndim == 2:
        return Section(path, kind, array.shape, None, False, lambda k: array), array
    if array.ndim != 3:
        raise InputError(
            path, f"expected a 2-D section or a 3-D volume, got {array.ndim}-D shape {array.shape}"
        )
    traces = array.reshape(-1, array.shape[-1])
    picks = np.unique(np.linspace(0, len(traces) - 1, min(len(traces), SAMPLE_TRACES)).astype(int))
    slice_axis = AXES.index(axis)
    read = lambda k: np.take(array, k, axis=slice_axis)  # noqa: E731
    return Section(path, kind, array.shape, slice_axis, True, read), traces[picks]


def write_segy_like(src: segyio.SegyFile, path: str | Path, values: np.ndarray) -> None:
    """Write ``values`` (traces in ``src``'s file order) as IEEE-float SEG-Y with ``src``'s headers.

    Text, binary and trace headers are copied; only the binary header's sample format changes (5).
    """
    spec = segyio.tools.metadata(src)
    spec.format = 5
    traces = np.asarray(values).reshape(src.tracecount, -1)
    with segyio.create(str(path), spec) as dst:
        for i in range(1 + spec.ext_headers):
            dst.text[i] = src.text[i]
        dst.bin = src.bin
        dst.bin.update({segyio.BinField.Format: 5})
        for i in range(src.tracecount):
            dst.header[i] = src.header[i]
            dst.trace[i] = np.ascontiguousarray(traces[i], dtype=np.float32)


def write_overlay(path: str | Path, image: np.ndarray, mask: np.ndarray) -> None:
    """A PNG of the section in grey with the mask tinted red and its contour drawn in red."""
    picture = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    red = np.zeros_like(picture)
    red[..., 2] = 255
    salt = mask.astype(bool)
    picture[salt] = cv2.addWeighted(picture, 0.7, red, 0.3, 0)[salt]
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(picture, contours, -1, (0, 0, 255), 1)
    if not cv2.imwrite(str(path), picture):
        raise OSError(f"{path}: could not write PNG")
