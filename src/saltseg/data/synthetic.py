"""Synthetic seismic sections cut into 101x101 tiles in the Kaggle TGS layout.

A section is one continuous picture: gently folded, faulted reflectors; salt bodies with a chaotic,
weakly reflective interior and a bright rim; a vertical salt wall with straight edges. One global
intensity mapping per section (no per-tile normalisation), so neighbouring tiles continue each other
and the mosaic assembler can re-find them from their borders.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from saltseg import rle
from saltseg.data import kaggle
from saltseg.data.images import write_png
from saltseg.errors import InputError
from saltseg.io import atomic_dir, write_csv

SALT_TEXTURE = 0.45  # amplitude of the salt interior, relative to the sediment reflectors
RIM = 2.2  # amplitude of the bright salt boundary
NOISE = 0.12  # amplitude of the mild, slightly smoothed random noise
MIN_TILE = 16


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std random field with features about ``scale`` pixels wide.

    Smoothed on a coarse grid and upsampled (bicubic), so large scales stay cheap.
    """
    h, w = shape
    step = max(int(scale / 4), 1)
    coarse = rng.standard_normal((h // step + 8, w // step + 8)).astype(np.float32)
    coarse = cv2.GaussianBlur(coarse, (0, 0), 4 / 3)
    size = (coarse.shape[1] * step, coarse.shape[0] * step)
    fine = cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC)[4 * step :, 4 * step :][:h, :w]
    return (fine - fine.mean()) / (fine.std() + 1e-6)


def _blur_large(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a large ``sigma``, done at 1/8 resolution and upsampled."""
    h, w = image.shape
    small = cv2.resize(image, (max(w // 8, 1), max(h // 8, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _reflectivity(rng: np.random.Generator, length: int) -> np.ndarray:
    """1-D trace in depth: sparse spikes convolved with a Ricker wavelet plus a few sinusoids."""
    spikes = rng.standard_normal(length) * (rng.random(length) < rng.uniform(0.15, 0.35))
    period = rng.uniform(6.0, 11.0)
    t = np.arange(-int(2 * period), int(2 * period) + 1)
    arg = (np.pi * t / period) ** 2
    trace = np.convolve(spikes, (1 - 2 * arg) * np.exp(-arg), mode="same")
    depth = np.arange(length)
    for _ in range(3):
        freq = 1 / rng.uniform(8.0, 40.0)
        trace += rng.uniform(0.1, 0.4) * np.sin(
            2 * np.pi * freq * depth + rng.uniform(0, 2 * np.pi)
        )
    return ((trace - trace.mean()) / (trace.std() + 1e-6)).astype(np.float32)


def _geological_depth(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Depth map of each pixel into the layer stack: dip, folds, drag up against salt, faults."""
    h, w = mask.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = y + rng.uniform(-0.08, 0.08) * x + 6.0 * _smooth_noise(rng, (h, w), 150.0)
    for _ in range(3):
        wavelength = rng.uniform(150.0, 600.0)
        amp = rng.uniform(2.0, 9.0) * (0.5 + y / h)
        depth += amp * np.sin(2 * np.pi * x / wavelength + 0.004 * y + rng.uniform(0, 2 * np.pi))
    drag = _blur_large(mask.astype(np.float32), 25.0)
    depth += rng.uniform(15.0, 35.0) * drag
    for _ in range(int(rng.integers(1, 4))):
        x0, tilt = rng.uniform(0.1, 0.9) * w, rng.uniform(-0.6, 0.6)
        throw = rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 18.0)
        side = (x - x0 - tilt * (y - h / 2)) / np.hypot(1.0, tilt)
        depth += throw * np.clip(side + 0.5, 0.0, 1.0)  # a one-pixel, anti-aliased step
    return depth


def _salt_mask(rng: np.random.Generator, h: int, w: int, tile: int) -> np.ndarray:
    """Smooth connected salt bodies plus one straight-edged vertical wall (1 = salt).

    No body enters the wall's tile columns, so every tile there has a vertical mask.
    """
    width = int(rng.integers(tile // 4, max(tile // 4 + 1, min(2 * tile, w // 2))))
    left = int(rng.integers(1, max(2, w - width)))
    left += 4 if left % tile < 4 else 0
    right = min(left + width, w - 1)
    right -= 4 if right % tile < 4 and right - 4 > left else 0
    first, last = left // tile * tile, ((right - 1) // tile + 1) * tile
    x = np.arange(w, dtype=np.float32)
    gap = np.clip(np.maximum(first - x, x - last + 1) / tile, 0, 1)
    y = np.arange(h, dtype=np.float32)[:, None] / h - 0.5
    field = _smooth_noise(rng, (h, w), tile * rng.uniform(2.5, 4.0))
    field += 0.1 * _smooth_noise(rng, (h, w), 25.0) + rng.uniform(0.0, 1.2) * y
    field -= 1.5 * (1 - gap)
    mask = (field > np.quantile(field, 1 - rng.uniform(0.22, 0.34))).astype(np.uint8)
    min_area = tile * tile // 8
    for value in (1, 0):  # drop small bodies, then fill small holes
        _, labels, stats, _ = cv2.connectedComponentsWithStats((mask == value).astype(np.uint8))
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < min_area)
        mask[np.isin(labels, small[small > 0])] = 1 - value
    _, labels = cv2.connectedComponents(mask)
    mask[np.isin(labels, np.unique(labels[:, first:last])[1:])] = 0  # keep the wall's columns clear
    mask[:, left:right] = 1
    return mask


def _check(name: str, value: float, low: float, high: float, integer: bool = True) -> None:
    """Raise ValueError naming ``name`` unless ``low <= value <= high`` (and an int if asked)."""
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise InputError(f"{name}", f"expected {what} in [{low}, {high}], got {value!r}")


def draw_section(
    rng: np.random.Generator, rows: int, cols: int, tile: int = 101
) -> tuple[np.ndarray, np.ndarray]:
    """One section of rows*tile x cols*tile pixels: (image uint8, mask uint8 0/1)."""
    for name, value in (("rows", rows), ("cols", cols)):
        _check(name, value, 1, 10_000)
    _check("tile", tile, MIN_TILE, 4096)
    h, w = rows * tile, cols * tile
    mask = _salt_mask(rng, h, w, tile)
    depth = _geological_depth(rng, mask)
    pad = 200
    trace = _reflectivity(rng, h + 2 * pad)
    flat = np.interp(depth.ravel() + pad, np.arange(trace.size), trace)
    sediment = flat.reshape(h, w).astype(np.float32)
    sediment *= 1 + 0.25 * _smooth_noise(rng, (h, w), 200.0)
    chaos = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 2.0, 1.2)
    chaos = SALT_TEXTURE * chaos / (chaos.std() + 1e-6)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)
    rim = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32)
    rim = cv2.GaussianBlur(rim, (0, 0), 0.8)
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.7)
    amp = sediment * (1 - soft) + chaos * soft + RIM * rim + NOISE * noise / (noise.std() + 1e-6)
    level = 128 + rng.uniform(-8, 8) + rng.uniform(32, 44) * (amp - amp.mean()) / amp.std()
    return np.clip(np.rint(level), 0, 255).astype(np.uint8), mask


def _blank_tiles(rng: np.random.Generator, rows: int, cols: int, count: int) -> np.ndarray:
    """Boolean (rows, cols) grid with ``count`` tiles clustered in one random corner."""
    r, c = np.mgrid[0:rows, 0:cols]
    corner = rng.integers(4)
    dist = (r if corner < 2 else rows - 1 - r) + (c if corner % 2 else cols - 1 - c)
    order = np.argsort(dist + 0.5 * rng.random((rows, cols)), axis=None, kind="stable")
    blank = np.zeros(rows * cols, bool)
    blank[order[:count]] = True
    return blank.reshape(rows, cols)


def _blank_counts(
    rng: np.random.Generator, sections: int, tiles: int, fraction: float
) -> np.ndarray:
    """Blank tiles per section: ``fraction`` of all tiles, at least one when there are >= 20."""
    total = sections * tiles
    count = round(fraction * total)
    count = max(count, 1) if fraction > 0 and total >= 20 else count
    per_section = np.full(sections, count // sections)
    per_section[rng.choice(sections, count % sections, replace=False)] += 1
    return np.minimum(per_section, tiles)


def _cut(
    rng: np.random.Generator, k: int, image: np.ndarray, mask: np.ndarray, blanks: int, tile: int
) -> list[dict]:
    """Tiles of section ``k`` as records (id, mosaic_id, x, y, z, img, msk), blanks pasted in."""
    rows, cols = image.shape[0] // tile, image.shape[1] // tile
    blank = _blank_tiles(rng, rows, cols, blanks)
    value = 0 if rng.random() < 0.5 else int(rng.integers(90, 170))
    base = int(rng.integers(20, 300))
    records = []
    for r in range(rows):
        for c in range(cols):
            cut = np.s_[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
            img, msk = image[cut], mask[cut]
            if blank[r, c]:
                img, msk = np.full_like(img, value), np.zeros_like(msk)
            z = max(1, base + r * tile + int(rng.integers(-3, 4)))
            records.append({"mosaic_id": k, "x": c, "y": r, "z": z, "img": img, "msk": msk})
    return records


def _write(out: str | Path, records: list[dict], is_train: np.ndarray) -> None:
    """Write the tiles and the four CSVs of the Kaggle layout into ``out``, atomically."""
    with atomic_dir(out) as tmp:
        train_rows, test_rows = [], []
        for rec, train in zip(records, is_train):
            row = {"id": rec["id"], "rle_mask": rle.encode(rec["msk"])}
            if train:
                write_png(tmp / "train" / "images" / f"{rec['id']}.png", rec["img"])
                write_png(tmp / "train" / "masks" / f"{rec['id']}.png", rec["msk"] * 255)
                train_rows.append(row)
            else:
                write_png(tmp / "test" / "images" / f"{rec['id']}.png", rec["img"])
                test_rows.append(row)
        table = pd.DataFrame(records).drop(columns=["img", "msk"]).sort_values("id")
        write_csv(tmp / "train.csv", pd.DataFrame(train_rows).sort_values("id"))
        write_csv(tmp / "depths.csv", table[["id", "z"]])
        write_csv(tmp / "mosaics.csv", table[["id", "mosaic_id", "x", "y"]])
        solution = pd.DataFrame(test_rows).sort_values("id")
        write_csv(tmp / "sample_submission.csv", solution.assign(rle_mask="1 1"))
        # the test truth, as Kaggle's solution file: scored by `summary`, read by nothing else
        write_csv(tmp / kaggle.SOLUTION, solution)


def generate(
    out: str | Path,
    seed: int = 0,
    sections: int = 4,
    rows: int = 8,
    cols: int = 10,
    train_fraction: float = 0.5,
    blank_fraction: float = 0.03,
    tile: int = 101,
) -> None:
    """Write the Kaggle layout into ``out`` (atomically: built in a temp dir, then renamed).

    Writes ``train/{images,masks}/<id>.png``, ``test/images/<id>.png``, ``train.csv``,
    ``depths.csv``, ``sample_submission.csv``, ``mosaics.csv`` (``id, mosaic_id, x, y`` in tile
    units, y down) and the test truth ``solution.csv`` (``id, rle_mask``, as Kaggle's solution
    file: only ``summary`` reads it). Section ``k`` is the ``k``-th
    ``draw_section(rng, rows, cols, tile)`` on ``np.random.default_rng(seed)``, drawn before
    anything else; blank tiles cover one corner.

    Raises:
        ValueError: an argument is out of range (the message names it).
    """
    _check("seed", seed, 0, 2**63 - 1)
    for name, value in (("sections", sections), ("rows", rows), ("cols", cols)):
        _check(name, value, 1, 10_000)
    _check("tile", tile, MIN_TILE, 4096)
    _check("train_fraction", train_fraction, 1e-9, 1 - 1e-9, integer=False)
    _check("blank_fraction", blank_fraction, 0.0, 0.5, integer=False)
    total = sections * rows * cols
    if total < 2:
        raise InputError("sections*rows*cols", f"expected at least 2 tiles to split, got {total}")

    rng = np.random.default_rng(seed)
    drawn = [draw_section(rng, rows, cols, tile) for _ in range(sections)]
    blanks = _blank_counts(rng, sections, rows * cols, blank_fraction)
    records = [
        rec
        for k, (image, mask) in enumerate(drawn)
        for rec in _cut(rng, k, image, mask, int(blanks[k]), tile)
    ]
    ids: set[str] = set()
    for rec in records:
        rec["id"] = rng.bytes(5).hex()
        while rec["id"] in ids:
            rec["id"] = rng.bytes(5).hex()
        ids.add(rec["id"])
    is_train = np.zeros(total, bool)
    is_train[rng.permutation(total)[: min(max(round(train_fraction * total), 1), total - 1)]] = True
    _write(out, records, is_train)
