"""Input channels computed from the tile: what a seismic interpreter reads beside the amplitude.

``cumsum`` is the running sum of the tile's centred amplitude down each trace (depth is the
image's first axis), scaled by the tile height: a layer's polarity integrated over depth, which
marks the flat, low-contrast bodies salt forms. ``depth`` is the row's position in the tile,
0 at the top and 1 at the bottom (a CoordConv channel). Both are unchanged by the horizontal
flips of augmentation and TTA.
"""

from __future__ import annotations

import torch
from torch import nn

from saltseg.errors import InputError

FEATURES = ("cumsum", "depth")


def cumsum_channel(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` → the running sum over H of ``x`` minus its tile mean, divided by H."""
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    return centred.cumsum(dim=-2) / x.shape[-2]


def depth_channel(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` → each pixel's row, 0 (top) to 1 (bottom)."""
    rows = torch.linspace(0.0, 1.0, x.shape[-2], dtype=x.dtype, device=x.device)
    return rows.view(1, 1, -1, 1).expand(x.shape[0], 1, x.shape[-2], x.shape[-1])


class InputChannels(nn.Module):
    """Append ``features`` (names of :data:`FEATURES`) to a 1-channel tile.

    Shape:
        ``(B, 1, H, W)`` → ``(B, 1 + len(features), H, W)``.
    """

    def __init__(self, features: list[str]) -> None:
        super().__init__()
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise InputError(
                "input_features", f"expected names from {', '.join(FEATURES)}, got {unknown[0]!r}"
            )
        self.features = list(features)
        self.out_channels = 1 + len(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        make = {"cumsum": cumsum_channel, "depth": depth_channel}
        return torch.cat([x, *(make[f](x) for f in self.features)], dim=1)
