"""The config's augmentation list applied to whole batches on the training device.

Each transform of the list keeps its albumentations 2 meaning: it acts on a tile with
probability ``p``, in list order, with its parameters drawn per tile from the same ranges.

- ``HorizontalFlip``, ``VerticalFlip``;
- ``RandomBrightnessContrast``: ``x * alpha + beta`` clipped to [0, 1], with
  ``alpha = 1 + U(contrast_limit)`` and ``beta = U(brightness_limit)`` (times the tile's mean
  when ``brightness_by_max`` is false);
- ``Affine``: scale (per axis unless ``keep_ratio``), ``translate_percent`` (whole pixels,
  truncated as albumentations does), rotation and shear about the tile centre, resampled with
  ``grid_sample``; borders ``BORDER_CONSTANT`` (0), ``BORDER_REPLICATE`` (1), ``BORDER_REFLECT``
  (2) and ``BORDER_REFLECT_101`` (4, the default list's); the image is interpolated bilinearly
  (or nearest, bicubic), the mask by nearest neighbour.

:func:`build_batch_augment` returns None when a transform (or one of its arguments) has no batch
form here; training then keeps the per-tile albumentations path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor

#: cv2 border mode -> (grid_sample padding mode, align_corners)
BORDERS = {
    0: ("zeros", True),
    1: ("border", True),
    2: ("reflection", False),
    4: ("reflection", True),
}
INTERPOLATIONS = {0: "nearest", 1: "bilinear", 2: "bicubic"}


def _range(value: Any, around: float = 0.0) -> tuple[float, float]:
    """albumentations' range convention: a number ``v`` means ``(around - v, around + v)``."""
    if isinstance(value, (int, float)):
        return (around - value, around + value) if around == 0.0 else (float(value),) * 2
    low, high = value
    return float(low), float(high)


def _axes(value: Any, around: float = 0.0) -> tuple[tuple[float, float], tuple[float, float]]:
    """A range for x and one for y (a dict with ``x``/``y`` keys, or one range for both)."""
    if isinstance(value, dict):
        return _range(value.get("x", around), around), _range(value.get("y", around), around)
    return _range(value, around), _range(value, around)


class BatchAugment:
    """Apply the augmentation list to a batch ``x (B, 1, H, W)`` in [0, 1] and masks ``y``."""

    def __init__(self, steps: list[tuple[str, float, dict[str, Any]]]) -> None:
        self.steps = steps

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        for name, p, args in self.steps:
            chosen = torch.rand(len(x), generator=generator) < p
            if not chosen.any():
                continue
            index = chosen.nonzero().squeeze(1).to(x.device)
            xs, ys = x.index_select(0, index), y.index_select(0, index)
            draw = _Draw(len(index), generator, x.device)
            xs, ys = getattr(self, f"_{name}")(xs, ys, draw, **args)
            x, y = x.index_copy(0, index, xs), y.index_copy(0, index, ys)
        return x, y

    @staticmethod
    def _HorizontalFlip(x: Tensor, y: Tensor, draw: _Draw) -> tuple[Tensor, Tensor]:
        return x.flip(-1), y.flip(-1)

    @staticmethod
    def _VerticalFlip(x: Tensor, y: Tensor, draw: _Draw) -> tuple[Tensor, Tensor]:
        return x.flip(-2), y.flip(-2)

    @staticmethod
    def _RandomBrightnessContrast(
        x: Tensor, y: Tensor, draw: _Draw, brightness, contrast, by_max: bool
    ) -> tuple[Tensor, Tensor]:
        alpha = 1 + draw.uniform(contrast)
        beta = draw.uniform(brightness)
        if not by_max:
            beta = beta * x.mean(dim=(1, 2, 3))
        return (x * alpha.view(-1, 1, 1, 1) + beta.view(-1, 1, 1, 1)).clamp_(0, 1), y

    @staticmethod
    def _Affine(x: Tensor, y: Tensor, draw: _Draw, **args) -> tuple[Tensor, Tensor]:
        h, w = x.shape[-2:]
        sx = draw.uniform(args["scale_x"])
        sy = sx if args["keep_ratio"] else draw.uniform(args["scale_y"])
        dx = torch.trunc(draw.uniform(args["tx"]) * w)  # albumentations: int(percent * width)
        dy = torch.trunc(draw.uniform(args["ty"]) * h)
        angle = draw.uniform(args["rotate"])
        shear = -draw.uniform(args["shear_x"]), -draw.uniform(args["shear_y"])
        inverse = affine_inverse(h, w, (sx, sy), (dx, dy), angle, shear)
        return warp(x, y, inverse, args["mode"], args["border_mode"])


def warp(
    x: Tensor, y: Tensor, inverse: Tensor, mode: str, border_mode: int
) -> tuple[Tensor, Tensor]:
    """Resample images ``x`` (``mode``) and masks ``y`` (nearest) through per-tile pixel maps."""
    padding, align = BORDERS[border_mode]
    grid = _sampling_grid(inverse, *x.shape[-2:], align)
    image = F.grid_sample(x, grid, mode, padding, align)
    return image.clamp_(0, 1), F.grid_sample(y, grid, "nearest", padding, align)


def affine_inverse(
    h: int,
    w: int,
    scale: tuple[Tensor, Tensor],
    translate: tuple[Tensor, Tensor],
    angle: Tensor,
    shear: tuple[Tensor, Tensor],
) -> Tensor:
    """Per tile, the ``(2, 3)`` map from output pixel to source pixel: the inverse of
    albumentations' ``shift_center @ translate @ shear @ rotate @ scale @ shift_topleft``.

    ``scale`` and ``translate`` (pixels) are per axis, ``angle`` and ``shear`` in degrees, each
    a ``(B,)`` tensor, as albumentations' ``create_affine_transformation_matrix`` takes them.
    """
    (sx, sy), (dx, dy) = scale, translate
    angle = torch.deg2rad(angle)
    hx, hy = torch.tan(torch.deg2rad(shear[0])), torch.tan(torch.deg2rad(shear[1]))
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    cos, sin = torch.cos(angle), torch.sin(angle)
    # the forward linear part A = shear @ rotate @ scale
    a11, a12 = (cos - hx * sin) * sx, (sin + hx * cos) * sy
    a21, a22 = (hy * cos - sin) * sx, (hy * sin + cos) * sy
    det = a11 * a22 - a12 * a21
    i11, i12, i21, i22 = a22 / det, -a12 / det, -a21 / det, a11 / det
    # source = A^-1 (out - c - t) + c
    ox, oy = -cx - dx, -cy - dy
    b1, b2 = i11 * ox + i12 * oy + cx, i21 * ox + i22 * oy + cy
    return torch.stack([torch.stack([i11, i12, b1], 1), torch.stack([i21, i22, b2], 1)], 1)


class _Draw:
    """Uniform draws for ``n`` tiles from the batch's generator, placed on ``device``."""

    def __init__(self, n: int, generator: torch.Generator, device: torch.device) -> None:
        self.n, self.generator, self.device = n, generator, device

    def uniform(self, bounds: tuple[float, float]) -> Tensor:
        low, high = bounds
        u = torch.rand(self.n, generator=self.generator, dtype=torch.float64)
        return (low + (high - low) * u).to(self.device, torch.float32)


def _sampling_grid(inverse: Tensor, h: int, w: int, align_corners: bool) -> Tensor:
    """``grid_sample``'s normalised grid ``(B, H, W, 2)`` for per-tile pixel maps ``inverse``."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=inverse.dtype, device=inverse.device),
        torch.arange(w, dtype=inverse.dtype, device=inverse.device),
        indexing="ij",
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, h * w, 3)
    source = pixels @ inverse.transpose(1, 2)  # (B, H*W, 2) source pixel coordinates
    size = torch.tensor([w, h], dtype=inverse.dtype, device=inverse.device)
    if align_corners:  # pixel centres 0 and size-1 map to -1 and 1
        normalised = 2 * source / (size - 1) - 1
    else:  # pixel edges -0.5 and size-0.5 map to -1 and 1
        normalised = (2 * source + 1) / size - 1
    return normalised.view(-1, h, w, 2)


def _affine_args(item: dict[str, Any]) -> dict[str, Any] | None:
    """``Affine``'s arguments in batch form, or None when one has no batch form here."""
    supported = {
        "scale",
        "translate_percent",
        "rotate",
        "shear",
        "interpolation",
        "mask_interpolation",
        "keep_ratio",
        "border_mode",
        "fill",
        "fill_mask",
    }
    if set(item) - supported or item.get("border_mode", 0) not in BORDERS:
        return None
    if item.get("interpolation", 1) not in INTERPOLATIONS or item.get("mask_interpolation", 0):
        return None
    if item.get("border_mode", 0) == 0 and (item.get("fill", 0) or item.get("fill_mask", 0)):
        return None
    scale_x, scale_y = _axes(item.get("scale", 1.0), around=1.0)
    tx, ty = _axes(item.get("translate_percent") or 0.0)
    shear_x, shear_y = _axes(item.get("shear", 0.0))
    return {
        "scale_x": scale_x,
        "scale_y": scale_y,
        "keep_ratio": bool(item.get("keep_ratio", False)),
        "tx": tx,
        "ty": ty,
        "rotate": _range(item.get("rotate", 0.0)),
        "shear_x": shear_x,
        "shear_y": shear_y,
        "border_mode": item.get("border_mode", 0),
        "mode": INTERPOLATIONS[item.get("interpolation", 1)],
    }


def build_batch_augment(spec: list[dict[str, Any]]) -> BatchAugment | None:
    """The batch form of an ``augment`` list (see the module doc), or None when it has none.

    An empty list gives an augmentation that changes nothing.
    """
    steps = []
    for item in spec:
        item = dict(item)
        name, p = item.pop("name", None), float(item.pop("p", 0.5))
        if name in ("HorizontalFlip", "VerticalFlip") and not item:
            steps.append((name, p, {}))
        elif name == "RandomBrightnessContrast" and set(item) <= {
            "brightness_limit",
            "contrast_limit",
            "brightness_by_max",
        }:
            args = {
                "brightness": _range(item.get("brightness_limit", 0.2)),
                "contrast": _range(item.get("contrast_limit", 0.2)),
                "by_max": bool(item.get("brightness_by_max", True)),
            }
            steps.append((name, p, args))
        elif name == "Affine" and (args := _affine_args(item)) is not None:
            steps.append((name, p, args))
        else:
            return None
    return BatchAugment(steps)


def random_windows(
    x: Tensor, y: Tensor, side: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The same random ``side`` x ``side`` window of each image of ``x`` and mask of ``y``
    (``(B, C, H, W)``), its offsets drawn uniformly per tile from ``generator``."""
    h, w = x.shape[-2:]
    top = torch.randint(0, h - side + 1, (len(x),), generator=generator).tolist()
    left = torch.randint(0, w - side + 1, (len(x),), generator=generator).tolist()
    windows = list(zip(top, left))
    return tuple(
        torch.stack([t[..., i : i + side, j : j + side] for t, (i, j) in zip(maps, windows)])
        for maps in (x, y)
    )


class DeviceBatches:
    """Shuffled, augmented training batches from tiles held as one tensor on the device.

    Replaces a DataLoader over per-tile albumentations: the tiles are moved once, each batch is
    gathered, scaled to [0, 1] and augmented as a whole. Batch order and augmentations follow
    :meth:`set_seed` (called every epoch), so a resumed run replays them.

    Args:
        images, masks: ``(N, H, W) uint8`` tiles and their 0/1 masks.
        batch_size: tiles per batch; the last partial batch is dropped when there is more than one.
        device: where the tiles live and the batches are made.
        augment: the batch augmentation (:func:`build_batch_augment`).
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        batch_size: int,
        device: torch.device,
        augment: BatchAugment,
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device).unsqueeze(1)
        self.masks = torch.from_numpy(np.ascontiguousarray(masks)).to(device).unsqueeze(1)
        self.batch_size, self.augment = batch_size, augment
        self.generator = torch.Generator()
        self.drop_last = len(images) > batch_size

    def set_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(self.images), generator=self.generator)
        for k in range(len(self)):
            index = order[k * self.batch_size : (k + 1) * self.batch_size].to(self.images.device)
            x = self.images.index_select(0, index).float().div_(255)
            y = self.masks.index_select(0, index).float()
            yield self.augment(x, y, self.generator)
