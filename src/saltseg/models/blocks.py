"""Building blocks shared by centers, decoders and heads: scSE, GCN, FPA, GAU, hypercolumn."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saltseg.errors import InputError


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize to ``size`` (a no-op when ``x`` already has it)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvBnRelu(nn.Sequential):
    """``conv k x k (no bias) → BatchNorm → ReLU``, keeping the spatial size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-excitation (Roy et al. 2018): ``x·cSE + x·sSE``.

    Args:
        channels: input (and output) channels.
        reduction: channel squeeze ratio of the cSE bottleneck (at least 1 channel is kept).
    Shape:
        ``(B, C, H, W) → (B, C, H, W)``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.cse = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x·c + x·s as x·(c + s): one full-size product instead of two and a sum (faster on CPU)
        return x * (self.cse(x) + self.sse(x))


class GCN(nn.Module):
    """Global Convolutional Network block (Peng et al. 2017): ``(k x 1 → 1 x k) + (1 x k → k x 1)``.

    A large ``k x k`` receptive field at the cost of ``4 k`` weights per channel pair; no
    non-linearity inside, as in the paper.

    Args:
        in_channels, out_channels: channels in and out.
        kernel_size: ``k`` (odd).
    Shape:
        ``(B, in_channels, H, W) → (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError("gcn_kernel", f"expected an odd size >= 1, got {kernel_size}")
        k, p = kernel_size, kernel_size // 2
        self.left = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (k, 1), padding=(p, 0)),
            nn.Conv2d(out_channels, out_channels, (1, k), padding=(0, p)),
        )
        self.right = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (1, k), padding=(0, p)),
            nn.Conv2d(out_channels, out_channels, (k, 1), padding=(p, 0)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x) + self.right(x)


class FPA(nn.Module):
    """Feature Pyramid Attention (Li et al. 2018, PAN) without its 7x7 branch.

    ``out = mid(x) · up(p5 + up(p3)) + global(x)``: ``mid`` is a 1x1 conv, the pyramid pools twice
    (5x5 then 3x3 convolutions, max-pool 2 before each), and ``global`` is a pooled 1x1 conv
    broadcast back. The global branch has no BatchNorm, so it trains with any batch size.

    Args:
        in_channels, out_channels: channels in and out.
    Shape:
        ``(B, in_channels, H, W) → (B, out_channels, H, W)``; any ``H, W >= 1``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.mid = ConvBnRelu(in_channels, out_channels, 1)
        self.glob = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.down5 = ConvBnRelu(in_channels, out_channels, 5)
        self.down3 = ConvBnRelu(out_channels, out_channels, 3)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p5 = self.down5(self.pool(x))
        p3 = self.down3(self.pool(p5))
        pyramid = resize(p5 + resize(p3, p5.shape[-2:]), x.shape[-2:])
        return self.mid(x) * pyramid + self.glob(x)


class GAU(nn.Module):
    """Global Attention Upsample (PAN), the recipe's variant: scSE-like gate, GCN on the skip.

    The deep map ``x`` gates the skip: a channel gate (pooled 1x1 conv, sigmoid) and a spatial
    gate (1x1 conv to one map, sigmoid, resized), summed as in scSE; the skip goes through a
    :class:`GCN` + BatchNorm + ReLU instead of the paper's 3x3 conv. The deep map, projected by a
    1x1 conv + BN + ReLU and upsampled, is added.

    Args:
        in_channels: channels of the deep map ``x``.
        skip_channels: channels of the shallower encoder map.
        out_channels: channels out.
        kernel_size: the GCN's ``k``.
    Shape:
        ``x (B, in, h, w)``, ``skip (B, skip, H, W) → (B, out, H, W)``.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, kernel_size: int = 7
    ) -> None:
        super().__init__()
        self.skip = nn.Sequential(
            GCN(skip_channels, out_channels, kernel_size),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.channel_gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.Sigmoid()
        )
        self.spatial_gate = nn.Sequential(nn.Conv2d(in_channels, 1, 1), nn.Sigmoid())
        self.up = ConvBnRelu(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        size = skip.shape[-2:]
        low = self.skip(skip)
        gated = low * self.channel_gate(x) + low * resize(self.spatial_gate(x), size)
        return gated + resize(self.up(x), size)


class Hypercolumn(nn.Module):
    """Fuse every decoder stage at the network resolution: project, upsample, sum, BN, ReLU.

    A hypercolumn concatenates all stages upsampled to full resolution and mixes them with a
    1x1 conv. Here each stage is projected by its own 1x1 conv at its own resolution (equal to
    mixing the concatenation, as a 1x1 conv and resizing commute) and the projections are summed
    top-down, FPN-style: ``t = up(t) + p_i``, one 2x bilinear step per stage. Only one map of
    ``out_channels`` is ever upsampled to full resolution, not one per stage: on CPU this is
    about 4x cheaper than resizing every stage directly, for an interpolation kernel that is a
    little smoother on the deepest stages.

    Args:
        stage_channels: channels of each decoder stage (deepest first).
        out_channels: channels after the ``1x1 conv → BN → ReLU`` mixing.
    Shape:
        ``[(B, stage_channels[i], h_i, w_i)], size → (B, out_channels, *size)``.
    """

    def __init__(self, stage_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.project = nn.ModuleList(
            nn.Conv2d(c, out_channels, 1, bias=False) for c in stage_channels
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.out_channels = out_channels

    def forward(self, stages: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        total = None
        for conv, stage in zip(self.project, stages):
            projected = conv(stage)
            total = projected if total is None else resize(total, projected.shape[-2:]) + projected
        return F.relu(self.bn(resize(total, size)), inplace=True)


class LastStage(nn.Module):
    """The plain alternative to :class:`Hypercolumn`: the last stage, resized to ``size``."""

    def __init__(self, stage_channels: list[int]) -> None:
        super().__init__()
        self.out_channels = stage_channels[-1]

    def forward(self, stages: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return resize(stages[-1], size)
