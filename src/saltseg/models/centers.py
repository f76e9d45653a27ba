"""Centers: a block between the encoder's deepest map and the decoder.

Every center has ``out_channels``; :func:`build_center` picks one by config name.
"""

from __future__ import annotations

import torch
from torch import nn

from saltseg.errors import InputError
from saltseg.models.blocks import FPA, GCN, ConvBnRelu


class NoCenter(nn.Identity):
    """The deepest map as it is (``out_channels == in_channels``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.out_channels = in_channels


class ConvGcnCenter(nn.Module):
    """``ConvBnRelu 3x3 → GCN → BatchNorm → ReLU`` (the resize128 recipe's center).

    Args:
        in_channels, out_channels: channels in and out.
        kernel_size: the GCN's ``k``.
    Shape:
        ``(B, in_channels, H, W) → (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = ConvBnRelu(in_channels, out_channels, 3)
        self.gcn = GCN(out_channels, out_channels, kernel_size)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.gcn(self.conv(x))))


CENTERS = ("none", "fpa", "gcn")


def build_center(name: str, in_channels: int, out_channels: int, gcn_kernel: int = 7) -> nn.Module:
    """The center called ``name`` (``none``, ``fpa`` or ``gcn``); ``out_channels`` is ignored for
    ``none``."""
    if name == "none":
        return NoCenter(in_channels)
    if name == "fpa":
        return FPA(in_channels, out_channels)
    if name == "gcn":
        return ConvGcnCenter(in_channels, out_channels, gcn_kernel)
    raise InputError("center", f"expected one of {', '.join(CENTERS)}, got {name!r}")
