"""Input geometry: bring 101x101 tiles to the network's size and the logits back, exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saltseg.errors import InputError


class Geometry(nn.Module):
    """Resize a tile to ``resize_to``, then reflect-pad it to ``pad_to``; invert both on the output.

    Args:
        tile: side of the input tiles (101 in the competition).
        resize_to: side after bilinear resizing (``tile`` for no resize).
        pad_to: side after reflect padding (``resize_to`` for no padding); must be a multiple of
            ``stride`` so every encoder stage halves cleanly.
        stride: the encoder's output stride.
    Shape:
        ``to_network``: ``(B, C, tile, tile) -> (B, C, pad_to, pad_to)``;
        ``to_tile``: ``(B, K, pad_to, pad_to) -> (B, K, tile, tile)``.
    """

    def __init__(self, tile: int, resize_to: int, pad_to: int, stride: int = 32) -> None:
        super().__init__()
        if resize_to < 1 or pad_to < resize_to:
            raise InputError(
                "geometry", f"expected 1 <= resize_to <= pad_to, got {resize_to}, {pad_to}"
            )
        if pad_to % stride:
            suggestion = -(-pad_to // stride) * stride
            raise InputError(
                "geometry.pad_to",
                f"expected a multiple of the encoder stride {stride}, got {pad_to}"
                f" (try {suggestion})",
            )
        if pad_to - resize_to >= resize_to:
            raise InputError(
                "geometry.pad_to", f"reflect padding needs pad_to < 2 * resize_to ({pad_to})"
            )
        self.tile, self.resize_to, self.pad_to = tile, resize_to, pad_to
        total = pad_to - resize_to
        self.pad = (total // 2, total - total // 2)

    def _resize(self, x: torch.Tensor, size: int) -> torch.Tensor:
        if x.shape[-1] == size:
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        x = self._resize(x, self.resize_to)
        before, after = self.pad
        return F.pad(x, (before, after, before, after), mode="reflect") if after else x

    def to_tile(self, y: torch.Tensor) -> torch.Tensor:
        before, after = self.pad
        y = y[..., before : before + self.resize_to, before : before + self.resize_to]
        return self._resize(y, self.tile)
