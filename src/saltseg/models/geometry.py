"""Input geometry: bring 101x101 tiles to the network's size and the logits back, exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saltseg.errors import InputError


class Geometry(nn.Module):
    """Resize a tile to ``resize_to``, then reflect-pad it to ``pad_to``; invert both on the output.

    With a context ``margin`` the input is a window of ``tile + 2 * margin`` (the tile and the
    pixels of its neighbours, :mod:`saltseg.mosaic.context`): it is resized by the same factor
    (``margin`` becomes ``round(margin * resize_to / tile)``), padded to ``pad_to``, and the output
    is cut to the central tile.

    In training mode the network also takes *windows*: square crops of the tile whose side is a
    multiple of ``stride`` (a phase's ``crop``), passed through at their own size, with logits of
    that size (no resizing, padding or cutting: the tile's scale is kept).

    Args:
        tile: side of the tiles (101 in the competition).
        resize_to: side of the tile after bilinear resizing (``tile`` for no resize).
        pad_to: side after reflect padding (``None``: the resized window, no padding); must be
            a multiple of ``stride`` so every encoder stage halves cleanly.
        stride: the encoder's output stride.
        margin: context pixels on each side of the tile in the input (0: the tile alone).
    Shape:
        ``to_network``: ``(B, C, tile + 2 margin, ...) -> (B, C, pad_to, pad_to)``;
        ``to_tile``: ``(B, K, pad_to, pad_to) -> (B, K, tile, tile)``.
    """

    def __init__(
        self, tile: int, resize_to: int, pad_to: int | None, stride: int = 32, margin: int = 0
    ) -> None:
        super().__init__()
        if not 0 <= margin < tile:
            raise InputError("context.margin", f"expected 0 <= margin < {tile}, got {margin}")
        self.margin, self.scaled_margin = margin, round(margin * resize_to / tile)
        self.window = resize_to + 2 * self.scaled_margin  # the resized input's side
        pad_to = pad_to or self.window
        if resize_to < 1 or pad_to < self.window:
            raise InputError(
                "geometry",
                f"expected 1 <= resize_to + 2 x resized margin <= pad_to, got {resize_to}"
                f" + 2 x {self.scaled_margin}, {pad_to}",
            )
        if pad_to % stride:
            suggestion = -(-pad_to // stride) * stride
            raise InputError(
                "geometry.pad_to",
                f"expected a multiple of the encoder stride {stride}, got {pad_to}"
                f" (try {suggestion})",
            )
        if pad_to - self.window >= self.window:
            raise InputError(
                "geometry.pad_to", f"reflect padding needs pad_to < 2 * {self.window} ({pad_to})"
            )
        self.tile, self.resize_to, self.pad_to, self.stride = tile, resize_to, pad_to, stride
        total = pad_to - self.window
        self.pad = (total // 2, total - total // 2)

    def _resize(self, x: torch.Tensor, size: int) -> torch.Tensor:
        if x.shape[-1] == size:
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

    def check_window(self, side: int, field: str = "crop") -> None:
        """Raise unless training windows of ``side`` px can pass (see the class doc)."""
        if self.margin or self.resize_to != self.tile:
            raise InputError(field, "expected no context margin and no resize_to with crops")
        if side % self.stride or not self.stride <= side < self.tile:
            raise InputError(
                field,
                f"expected a multiple of the encoder stride {self.stride} under the tile side"
                f" {self.tile}, got {side}",
            )

    def _is_window(self, side: int) -> bool:
        """Whether a map of ``side`` px is a training window (or its logits)."""
        plain = not self.margin and self.resize_to == self.tile
        return self.training and plain and side < self.tile and side % self.stride == 0

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        if self._is_window(x.shape[-1]):
            return x
        if x.shape[-1] != self.tile + 2 * self.margin:
            raise InputError(
                "input",
                f"expected {self.tile + 2 * self.margin} px inputs (tile {self.tile} + 2 x context"
                f" margin {self.margin}), got {x.shape[-1]} (context models read the context file)",
            )
        x = self._resize(x, self.window)
        before, after = self.pad
        return F.pad(x, (before, after, before, after), mode="reflect") if after else x

    def to_tile(self, y: torch.Tensor) -> torch.Tensor:
        if self._is_window(y.shape[-1]):
            return y
        start = self.pad[0] + self.scaled_margin
        y = y[..., start : start + self.resize_to, start : start + self.resize_to]
        return self._resize(y, self.tile)
